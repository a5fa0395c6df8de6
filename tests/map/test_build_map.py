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
from tests.support.specs import subregion_spec

# A corner of Andorra la Vella: a few tiles, every kind of layer the default map has.
BBOX = (1.52, 42.50, 1.55, 42.52)
NETWORKS = ("ad-lte", "ad-nr", "starlink", "geo")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    spec = subregion_spec(root, name="andorra-tiny", bbox=BBOX)
    return build_map(spec, root / "built", tile_params=TileParams(resolution=8))


def test_manifest_checksums_match_the_files(built: Path) -> None:
    manifest = Manifest.read(built / MANIFEST)
    on_disk = {
        str(p.relative_to(built)) for p in built.rglob("*") if p.is_file() and p.name != MANIFEST
    }
    assert set(manifest.files) == on_disk
    for rel, digest in manifest.files.items():
        assert sha256_file(built / rel) == digest, rel
    assert manifest.network_ids == NETWORKS
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
    assert quality.network_ids == NETWORKS
    assert quality.sinr_db.shape == (len(corridor), len(NETWORKS))
    assert np.isfinite(quality.sinr_db).all()
    fixed = cmap.quality(corridor, reference_s=cmap.default_departure_s)
    assert fixed.sinr_db.shape == quality.sinr_db.shape


def test_spec_of_any_name_without_terrain(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # two OSM-mapped antennas stand at 1.568-1.571 E, 42.521-42.522 N
    spec = subregion_spec(
        tmp_path, name="encamp-flat", bbox=(1.55, 42.51, 1.58, 42.53), terrain=None
    )
    renamed = spec.rename(tmp_path / "encamp-flat.toml")
    messages: list[str] = []
    with caplog.at_level("WARNING", logger="commap.map.build"):
        built = build_map(
            renamed,
            tmp_path / "built",
            tile_params=TileParams(resolution=8),
            progress=messages.append,
        )
    # flat earth is said once (through the log, which the CLI shows), with the tile to add
    assert "no [terrain]" in caplog.text and "N42E001.hgt" in caplog.text
    assert caplog.text.count("flat earth") == 1
    assert not any("flat earth" in m for m in messages)  # not a second time as progress
    # the masts were read although the spec is not called map.toml
    manifest = Manifest.read(built / MANIFEST)
    layer = next(n.layer for n in manifest.networks if n.network().id == "ad-lte")
    assert layer["placement"]["osm_file"] == "andorra.osm.pbf"
    assert layer["placement"]["osm_sites"] >= 1


def test_measured_map_carries_its_learned_models_under_checksum(hamburg_dir: Path) -> None:
    from commap.radio.layers.measured import LearnedLayer

    manifest = Manifest.read(hamburg_dir / MANIFEST)
    models = sorted(f for f in manifest.files if f.startswith("learned/"))
    assert models == [
        f"learned/{nid}/rsrp_dbm.npz" for nid in ("de-telefonica", "de-telekom", "de-vodafone")
    ]
    for rel in models:
        assert manifest.files[rel] == sha256_file(hamburg_dir / rel)
    entry = next(n for n in manifest.networks if n.id == "de-vodafone")
    assert entry.layer["learned"]["link_kpis"] == ["rsrp_dbm"]  # the extract carries RSRP only
    cmap = CommMap.load(hamburg_dir)
    assert all(isinstance(layer, LearnedLayer) for layer in cmap.layers.values())
    # a point of the map far from every drive: unknown, with the prior, not dead
    far = cmap.quality_at([8.86], [53.065])
    assert far.unknown is not None and far.unknown.all() and (far.sinr_db > -30.0).all()
