"""Building a small real map from its spec: checksums in the manifest, quality from the loaded map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from commap.files import sha256_file
from commap.geo.corridor import Route
from commap.map.build import TileParams, build_map
from commap.map.comm_map import CommMap
from commap.map.manifest import MANIFEST, Manifest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "maps" / "andorra" / "data"
BBOX = (1.52, 42.50, 1.55, 42.52)


def _spec(directory: Path) -> Path:
    """A small spec over real Andorra data: roads, terrain, one terrestrial and one GEO network."""
    text = f"""
name = "andorra-tiny"
bbox = {list(BBOX)}
segment_m = 100.0
seed = 3
default_departure = "2025-01-23T12:00:00Z"

[roads]
file = "{DATA / "andorra.osm.pbf"}"

[terrain]
files = ["{DATA / "N42E001.hgt.zip"}"]

[[networks]]
id = "ad-lte"
kind = "terrestrial"
operator = "ad"
technology = "lte"
latency_ms = 35.0
frequency_mhz = 800.0
[networks.layer]
type = "terrestrial"
sites = "generated"
country = "AD"
site_spacing_m = 3000.0

[[networks]]
id = "geo"
kind = "geo"
operator = "geo"
technology = "geo"
latency_ms = 600.0
min_elevation_deg = 10.0
orbital_longitude_deg = 9.0
[networks.layer]
type = "geo"
"""
    path = directory / "map.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    return build_map(_spec(root), root / "built", tile_params=TileParams(resolution=8))


def test_manifest_checksums_match_the_files(built: Path) -> None:
    manifest = Manifest.read(built / MANIFEST)
    on_disk = {
        str(p.relative_to(built)) for p in built.rglob("*") if p.is_file() and p.name != MANIFEST
    }
    assert set(manifest.files) == on_disk
    for rel, digest in manifest.files.items():
        assert sha256_file(built / rel) == digest, rel
    assert manifest.network_ids == ("ad-lte", "geo")
    assert manifest.edges is not None and manifest.edges["tiles"]
    assert manifest.inputs is not None and manifest.build_key
    assert not list(built.parent.glob(".*"))  # no partial directory, lock or temporary left


def test_loaded_map_answers_a_quality_query(built: Path) -> None:
    cmap = CommMap.load(built)
    assert cmap.name == "andorra-tiny" and cmap.has_edge_table
    route = Route(
        lon=np.array([1.530, 1.540]),
        lat=np.array([42.510, 42.510]),
        speed_mps=np.array([15.0]),
        in_tunnel=np.array([False]),
        on_bridge=np.array([False]),
    )
    corridor = cmap.corridor(route)
    quality = cmap.quality(corridor)
    assert quality.network_ids == ("ad-lte", "geo")
    assert quality.sinr_db.shape == (len(corridor), 2)
    assert np.isfinite(quality.sinr_db).all()
    fixed = cmap.quality(corridor, reference_s=cmap.default_departure_s)
    assert fixed.sinr_db.shape == quality.sinr_db.shape
