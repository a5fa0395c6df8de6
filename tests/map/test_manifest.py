"""The typed manifest of a built map: round trip, and errors that name the file and the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from commap.errors import InvalidInputError
from commap.map.manifest import MANIFEST, Manifest

REPO = Path(__file__).resolve().parents[2]
BUILT = REPO / "maps" / "andorra" / "built"


def _valid() -> dict[str, Any]:
    return {
        "format": "commap-map/1",
        "commap_version": "0.1.0",
        "name": "tiny",
        "title": "Tiny",
        "description": "",
        "bbox": [1.0, 42.0, 1.1, 42.1],
        "segment_m": 50.0,
        "seed": 1,
        "default_departure_s": 0.0,
        "roads": {
            "dir": "roads",
            "source": "x.osm.pbf",
            "attribution": "OSM",
            "nodes": 2,
            "edges": 2,
            "edge_length_km": 0.5,
        },
        "terrain": None,
        "networks": [
            {"id": "lte", "kind": "terrestrial", "layer": {"type": "terrestrial"}},
            {"id": "geo", "kind": "geo", "layer": {"type": "geo"}, "cache": "cache/geo.parquet"},
        ],
        "attribution": ["OSM"],
        "inputs": {"spec": {"file": "map.toml", "sha256": "0" * 64}, "files": {}},
        "build_key": "k",
        "files": {"roads/roads_edges.parquet": "1" * 64},
    }


def _write(tmp_path: Path, payload: Any) -> Path:
    path = tmp_path / MANIFEST
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    manifest = Manifest.read(_write(tmp_path, _valid()))
    assert manifest.name == "tiny" and manifest.segment_m == 50.0
    assert manifest.network_ids == ("lte", "geo")
    assert manifest.roads is not None and manifest.roads.edge_length_km == 0.5
    assert manifest.networks[1].cache == "cache/geo.parquet"
    again = tmp_path / "again.json"
    manifest.write(again)
    assert Manifest.read(again) == manifest
    assert json.loads(again.read_text(encoding="utf-8")) == _valid()


def test_built_map_reads_and_writes_the_same_json(tmp_path: Path) -> None:
    if not (BUILT / MANIFEST).is_file():
        pytest.skip("the default map is not built")
    manifest = Manifest.read(BUILT / MANIFEST)
    manifest.write(tmp_path / MANIFEST)
    on_disk = json.loads((BUILT / MANIFEST).read_text(encoding="utf-8"))
    written = json.loads((tmp_path / MANIFEST).read_text(encoding="utf-8"))
    assert written == on_disk
    assert list(written) == list(on_disk)  # same field names, same order


def _without(key: str) -> dict[str, Any]:
    payload = _valid()
    del payload[key]
    return payload


def _with(key: str, value: Any) -> dict[str, Any]:
    return {**_valid(), key: value}


def _bad_network() -> dict[str, Any]:
    payload = _valid()
    payload["networks"][1] = {"id": "geo", "kind": "geo"}
    return payload


def _duplicate_network() -> dict[str, Any]:
    payload = _valid()
    payload["networks"][1]["id"] = "lte"
    return payload


def _network_path(key: str, value: Any) -> dict[str, Any]:
    payload = _valid()
    payload["networks"][1][key] = value
    return payload


def test_source_files_of_a_layer_may_lie_anywhere(tmp_path: Path) -> None:
    payload = _network_path("layer", {"type": "measured", "sources": ["/data/drive.csv.gz"]})
    (tmp_path / MANIFEST).write_text(json.dumps(payload), encoding="utf-8")
    assert Manifest.read(tmp_path / MANIFEST).networks[1].layer["sources"] == ["/data/drive.csv.gz"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (_without("networks"), "missing key 'networks'"),
        (_without("name"), "missing key 'name'"),
        (_without("segment_m"), "missing key 'segment_m'"),
        (_with("name", 7), "key 'name' must be str, got int"),
        (_with("name", "../../evil"), "key 'name' must be a map identifier ([a-z0-9_-]+)"),
        (_with("name", "Andorra"), "key 'name' must be a map identifier"),
        (_with("name", "a" * 65), "key 'name' must be a map identifier"),
        (_with("roads", {"dir": "../../roads"}), "key 'roads.dir' must be a path inside the map"),
        (_with("terrain", {"files": ["/etc/x.hgt"]}), "key 'terrain.files' must be a path inside"),
        (_with("files", {"../../x.parquet": "0" * 64}), "key 'files' must be a path inside"),
        (_network_path("cache", "../other/cache/x.parquet"), "key 'networks[1].cache' must be"),
        (
            _network_path("layer", {"type": "leo", "tle_file": "~/.ssh/id_rsa"}),
            "key 'networks[1].layer.tle_file' must be a path inside the map directory",
        ),
        (
            _network_path("layer", {"type": "x", "learned": {"models": {"rsrp": "a/../../b"}}}),
            "key 'networks[1].layer.learned.models.rsrp' must be a path inside the map directory",
        ),
        (_with("segment_m", "50"), "key 'segment_m' must be number, got str"),
        (_with("segment_m", 0), "key 'segment_m' must be above 0"),
        (_with("segment_m", -5.0), "key 'segment_m' must be above 0"),
        (_with("networks", {}), "key 'networks' must be list, got dict"),
        (_with("bbox", [1, 2, 3]), "key 'bbox' must be"),
        (_with("files", {"a": 1}), "key 'files' must map names to strings"),
        (_with("roads", {"source": "x"}), "missing key 'roads.dir'"),
        (_with("format", "commap-map/0"), "key 'format' must be 'commap-map/1'"),
        (_bad_network(), "missing key 'networks[1].layer'"),
        (_duplicate_network(), "key 'networks[1].id' repeats network id 'lte'"),
        ([], "the manifest must be a JSON object"),
    ],
)
def test_invalid_manifest_names_file_and_key(tmp_path: Path, payload: Any, message: str) -> None:
    path = _write(tmp_path, payload)
    with pytest.raises(InvalidInputError) as raised:
        Manifest.read(path)
    text = str(raised.value)
    assert text.startswith(f"{path}: ")
    assert message in text


def test_unreadable_manifest(tmp_path: Path) -> None:
    path = tmp_path / MANIFEST
    path.write_text('{"format": "commap-map/1", "na', encoding="utf-8")
    with pytest.raises(InvalidInputError, match="unreadable manifest"):
        Manifest.read(path)


def test_typed_view_matches_the_json(tmp_path: Path) -> None:
    manifest = Manifest.read(_write(tmp_path, _valid()))
    assert manifest.roads is not None and manifest.roads.nodes == 2
    assert manifest.edges is None
    assert manifest.to_dict() == _valid()
