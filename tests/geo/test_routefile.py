"""Route files: CSV, GPX, GeoJSON and encoded polylines, with and without timestamps, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from commap.errors import InvalidInputError
from commap.geo import roads
from commap.geo.routefile import (
    decode_polyline,
    encode_polyline,
    load_route,
    parse_route,
    read_route_file,
)
from tests.support.paths import TEST_DATA

TRACE_CSV = TEST_DATA / "corridor" / "autobahn_a30_trace.csv"

LINE = [[1.50, 42.50], [1.51, 42.50], [1.52, 42.51]]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_real_trace_csv() -> None:
    route = read_route_file(TRACE_CSV)
    assert route.lon.size == 1200
    assert route.t_s is not None
    assert route.t_s[0] == 1713543780.0  # 2024-04-19T16:23:00Z
    assert np.all(np.diff(route.t_s) >= 1.0)
    assert 7.5 < route.lon.min() < route.lon.max() < 8.01  # westward from Osnabrück
    assert 52.2 < route.lat.min() < route.lat.max() < 52.3
    # 1 Hz GPS on the A30: leg speeds up to ~145 km/h
    assert float(np.percentile(route.speed_mps, 95)) * 3.6 < 160.0
    assert route.name == "autobahn_a30_trace"
    assert not route.in_tunnel.any() and not route.on_bridge.any()


def test_roads_module_reexports_the_readers() -> None:
    assert roads.read_route_file is read_route_file
    assert roads.route_from_polyline(*zip(*LINE, strict=True)).lon.size == 3


@pytest.mark.parametrize(
    "doc",
    [
        {"type": "LineString", "coordinates": LINE},
        {
            "type": "Feature",
            "properties": None,
            "geometry": {"type": "LineString", "coordinates": LINE},
        },
        {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": {},
                    "geometry": {"type": "Point", "coordinates": LINE[0]},
                },
                {
                    "type": "Feature",
                    "properties": {},
                    "geometry": {"type": "LineString", "coordinates": LINE},
                },
            ],
        },
    ],
)
def test_geojson_variants(tmp_path: Path, doc: dict) -> None:
    route = read_route_file(_write(tmp_path, "r.geojson", json.dumps(doc)), speed_mps=20.0)
    assert route.lon.tolist() == [1.50, 1.51, 1.52]
    assert route.lat.tolist() == [42.50, 42.50, 42.51]
    assert route.t_s is None
    assert route.speed_mps.tolist() == [20.0, 20.0]


def test_geojson_times_and_elevation(tmp_path: Path) -> None:
    doc = {
        "type": "Feature",
        "properties": {"coordTimes": ["2025-01-23T12:00:00Z", "2025-01-23T12:01:00Z", 1737633720]},
        "geometry": {"type": "LineString", "coordinates": [[*p, 1000.0] for p in LINE]},
    }
    route = read_route_file(_write(tmp_path, "r.json", json.dumps(doc)))
    assert route.t_s is not None
    assert route.t_s.tolist() == [1737633600.0, 1737633660.0, 1737633720.0]


def test_csv_aliases_and_epoch_times(tmp_path: Path) -> None:
    text = "Latitude,Longitude,time\n42.50,1.50,100\n42.50,1.51,160.5\n\n"
    route = read_route_file(_write(tmp_path, "r.csv", text))
    assert route.t_s is not None
    assert route.t_s.tolist() == [100.0, 160.5]
    assert route.lon.tolist() == [1.50, 1.51]


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("r.csv", "", "empty CSV"),
        ("r.csv", "x,y\n1,2\n3,4\n", "no 'lat' column"),
        ("r.csv", "lat,lon\n42.5,1.5\n", "at least 2 points"),
        ("r.csv", "lat,lon\n42.5,1.5\n42.5,abc\n", "row 3 lon: 'abc' is not a number"),
        ("r.csv", "lat,lon\n42.5,1.5\n42.5\n", "row 3 has 1 fields"),
        ("r.csv", "lat,lon\n42.5,1.5\nnan,1.6\n", "not finite"),
        ("r.csv", "lat,lon\n42.5,1.5\n95,1.6\n", "outside"),
        ("r.csv", "lat,lon,timestamp\n42.5,1.5,10\n42.5,1.6,10\n", "duplicate"),
        ("r.csv", "lat,lon,timestamp\n42.5,1.5,10\n42.5,1.6,5\n", "out of order"),
        ("r.csv", "lat,lon,timestamp\n42.5,1.5,10\n42.5,1.6,yesterday\n", "row 3 timestamp"),
        ("r.geojson", "{not json", "invalid JSON"),
        ("r.geojson", json.dumps({"type": "Point", "coordinates": [1, 2]}), "GeoJSON type 'Point'"),
        ("r.geojson", json.dumps({"type": "FeatureCollection", "features": []}), "0 LineString"),
        (
            "r.geojson",
            json.dumps({"type": "LineString", "coordinates": [[1.5]]}),
            r"coordinates\[0\]",
        ),
        ("r.geojson", json.dumps([1, 2]), "must be an object"),
        (
            "r.geojson",
            json.dumps(
                {
                    "type": "Feature",
                    "properties": {"times": [0, 1]},
                    "geometry": {"type": "LineString", "coordinates": LINE},
                }
            ),
            "t_s has 2 values for 3 points",
        ),
        ("r.gpx", "<gpx/>", "at least 2 points, got 0"),
        ("r.gpx", "<gpx><trk>", "invalid GPX"),
        ("r.kml", "<kml/>", "root element is <kml>, not <gpx>"),
        ("r.gpx", '<!DOCTYPE gpx [<!ENTITY a "b">]><gpx/>', "DOCTYPE"),
        (
            "r.gpx",
            '<gpx><trk><trkseg><trkpt lat="42.5" lon="1.5"><time>2024-01-01T00:00:00Z</time>'
            '</trkpt><trkpt lat="42.5" lon="1.6"/></trkseg></trk></gpx>',
            "1 of 2 track points have a <time>",
        ),
        ("r.gpx", '<gpx><rte><rtept lat="x" lon="1.5"/></rte></gpx>', "point 1 lat"),
        ("r.polyline", "_p~iF", "truncated"),
        ("r.txt", "_p~iF ~ps|U", "is not part of an encoded polyline"),
    ],
)
def test_bad_route_files(tmp_path: Path, name: str, text: str, match: str) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(InvalidInputError, match=match) as info:
        read_route_file(path)
    assert str(path) in str(info.value)


def test_missing_route_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read route file"):
        read_route_file(tmp_path / "nope.csv")


def test_duplicate_second_in_a_real_trace(tmp_path: Path) -> None:
    lines = TRACE_CSV.read_text(encoding="utf-8").splitlines()
    lines.insert(10, lines[9])  # the logger wrote one second twice (as in the full data set)
    path = _write(tmp_path, "dup.csv", "\n".join(lines) + "\n")
    with pytest.raises(InvalidInputError, match=r"t_s\[9\] .* is duplicate"):
        read_route_file(path)


CORK = TEST_DATA / "measured" / "cork_heldout_route"


@pytest.mark.parametrize("suffix", [".gpx", ".geojson", ".polyline"])
def test_one_real_drive_in_every_format(suffix: str) -> None:
    csv_route = read_route_file(CORK.with_suffix(".csv"))
    route = read_route_file(CORK.with_suffix(suffix))
    assert route.name == "cork_heldout_route"
    assert route.lon.size == csv_route.lon.size == 314
    # the polyline keeps 5 decimals (about a metre)
    tolerance = 0.6e-5 if suffix == ".polyline" else 1e-12
    assert np.abs(route.lon - csv_route.lon).max() <= tolerance
    assert np.abs(route.lat - csv_route.lat).max() <= tolerance
    if suffix == ".polyline":
        assert route.t_s is None
    else:
        assert route.t_s is not None and csv_route.t_s is not None
        assert route.t_s.tolist() == csv_route.t_s.tolist()


def test_formats_are_recognised_by_content(tmp_path: Path) -> None:
    for suffix in (".csv", ".gpx", ".geojson", ".polyline"):
        unnamed = tmp_path / f"drive-{suffix[1:]}.dat"
        unnamed.write_bytes(CORK.with_suffix(suffix).read_bytes())
        assert read_route_file(unnamed).lon.size == 314
    text = CORK.with_suffix(".gpx").read_bytes()
    assert parse_route(text).lon.size == 314  # bytes, e.g. from a gRPC request


def test_polyline_string_or_file_name() -> None:
    text = CORK.with_suffix(".polyline").read_text().strip()
    assert load_route(text).lon.size == 314
    assert load_route(str(CORK.with_suffix(".gpx"))).t_s is not None
    with pytest.raises(InvalidInputError, match="no such route file"):
        load_route("drive.gpx")


def test_polyline_round_trip() -> None:
    route = read_route_file(CORK.with_suffix(".csv"))
    lat, lon = decode_polyline(encode_polyline(route.lat.tolist(), route.lon.tolist()))
    assert np.abs(np.array(lat) - route.lat).max() <= 0.5e-5 + 1e-12
    assert np.abs(np.array(lon) - route.lon).max() <= 0.5e-5 + 1e-12
    assert decode_polyline(encode_polyline([-0.00001, 89.99999], [179.99999, -180.0])) == (
        [-1e-05, 89.99999],
        [179.99999, -180.0],
    )
