"""The ``commap`` command line on the real maps: output people read, and errors they can act on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import pytest
from typer.testing import CliRunner

from commap.cli import app
from tests.support.paths import MAPS
from tests.support.specs import default_spec

runner = CliRunner()

LA_VELLA = "42.5063,1.5218"
PAS_DE_LA_CASA = "42.5430,1.7330"


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_route_prints_summary_and_coverage_share(andorra_dir: Path) -> None:
    code, out = _run("route", "--map", str(andorra_dir), "--from", LA_VELLA, "--to", PAS_DE_LA_CASA)
    assert code == 0, out
    assert "route 1" in out and "km" in out
    for network in ("ad-lte", "fr-lte", "starlink", "geo"):
        assert network in out
    assert "no network usable on" in out


def test_coverage_at_a_point_names_provenance(andorra_dir: Path) -> None:
    code, out = _run("coverage", "--map", str(andorra_dir), "--at", LA_VELLA)
    assert code == 0, out
    assert "modelled" in out
    assert "ad-lte" in out


def test_plan_json_and_geojson_file(andorra_dir: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "plan.geojson"
    code, out = _run(
        "plan",
        "--map",
        str(andorra_dir),
        "--from",
        LA_VELLA,
        "--to",
        PAS_DE_LA_CASA,
        "--format",
        "json",
        "--out",
        str(out_file),
    )
    assert code == 0, out
    payload = json.loads(out[out.index("{") :])
    networks = payload["segments"]["network_id"]
    assert len(networks) > 500  # 33 km in 50 m segments
    assert set(networks) <= {"ad-lte", "ad-nr", "es-lte", "fr-lte", "starlink", "oneweb", "geo"}
    frame = gpd.read_file(out_file)
    assert frame.crs is not None and frame.crs.to_epsg() == 4326
    assert {"LineString", "Point"} <= set(frame.geometry.geom_type)


def test_plan_from_a_csv_polyline(andorra_dir: Path, tmp_path: Path) -> None:
    route_csv = tmp_path / "route.csv"
    route_csv.write_text("lat,lon\n42.5063,1.5218\n42.5080,1.5300\n42.5120,1.5400\n")
    code, out = _run("plan", "--map", str(andorra_dir), "--route", str(route_csv))
    assert code == 0, out
    assert "expected drops" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["route", "--from", "91,1.5", "--to", PAS_DE_LA_CASA], "--from"),
        (["route", "--from", "abc", "--to", PAS_DE_LA_CASA], "expected LAT,LON"),
        (["route", "--from", "48.85,2.35", "--to", PAS_DE_LA_CASA], "outside map"),
        (["coverage", "--at", "nan,1.5"], "not a valid latitude"),
        (
            ["plan", "--from", LA_VELLA, "--to", PAS_DE_LA_CASA, "--app", "warp"],
            "unknown application",
        ),
        (["plan", "--from", LA_VELLA, "--to", PAS_DE_LA_CASA, "--format", "xml"], "--format"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    andorra_dir: Path, args: list[str], message: str
) -> None:
    code, out = _run(*args[:1], "--map", str(andorra_dir), *args[1:])
    assert code == 2, out
    assert "error:" in out and message in out
    assert "Traceback" not in out


def test_unknown_map_lists_the_known_ones() -> None:
    code, out = _run("coverage", "--map", "atlantis", "--at", LA_VELLA)
    assert code == 1
    assert "unknown map 'atlantis'" in out and "andorra" in out


def test_malformed_route_file_is_named(andorra_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("lat,lon\n42.5,1.5\nnot,a number\n")
    code, out = _run("plan", "--map", str(andorra_dir), "--route", str(bad))
    assert code == 2
    assert "bad.csv" in out


def test_build_map_with_a_truncated_pbf_fails_cleanly(tmp_path: Path) -> None:
    spec_dir = tmp_path / "broken"
    (spec_dir / "data").mkdir(parents=True)
    source = MAPS / "andorra"
    pbf = (source / "data" / "andorra.osm.pbf").read_bytes()
    (spec_dir / "data" / "andorra.osm.pbf").write_bytes(pbf[: len(pbf) // 3])
    shutil.copy(source / "data" / "N42E001.hgt.zip", spec_dir / "data")
    default_spec(spec_dir, name="broken", data_dir=None)  # reads the broken copies in data/
    out_dir = tmp_path / "built"
    code, out = _run("build-map", str(spec_dir / "map.toml"), "--out", str(out_dir))
    assert code == 2, out
    assert "andorra.osm.pbf" in out
    assert not out_dir.exists()  # no half-written map


def test_route_between_points_whose_nearest_nodes_are_cut_off(andorra_dir: Path) -> None:
    # Sant Julia de Loria -> Pas de la Casa, both on main roads
    code, out = _run(
        "route", "--map", str(andorra_dir), "--from", "42.4637,1.4913", "--to", "42.5426,1.7332"
    )
    assert code == 0, out
    assert "route 1" in out
    assert "node" not in out


CORK_ROUTE = Path(__file__).resolve().parent / "data" / "measured" / "cork_heldout_route"


@pytest.mark.parametrize("suffix", [".gpx", ".geojson", ".polyline"])
def test_route_and_plan_take_every_route_format(cork_dir: Path, suffix: str) -> None:
    path = str(CORK_ROUTE.with_suffix(suffix))
    code, out = _run("route", "--map", str(cork_dir), "--route", path)
    assert code == 0, out
    assert "route 1: 10.6 km" in out
    code, out = _run("plan", "--map", str(cork_dir), "--route", path, "--format", "json")
    assert code == 0, out
    assert json.loads(out[out.index("{") :])["handovers"] is not None


def test_plan_takes_an_encoded_polyline_string(cork_dir: Path) -> None:
    polyline = CORK_ROUTE.with_suffix(".polyline").read_text().strip()
    code, out = _run("plan", "--map", str(cork_dir), "--route", polyline)
    assert code == 0, out
    assert "10.6 km" in out


def test_element_epochs_are_stated_and_month_old_ones_refused(andorra_dir: Path) -> None:
    code, out = _run("coverage", "--map", str(andorra_dir), "--at", LA_VELLA)
    assert code == 0, out
    assert "orbital elements: oneweb 2025-01-05" in out and "starlink 2025-01-23" in out
    late = ("--time", "2025-03-15T12:00:00Z")
    code, out = _run("coverage", "--map", str(andorra_dir), "--at", LA_VELLA, *late)
    assert code == 2 and "--allow-stale-elements" in out
    code, out = _run(
        "coverage", "--map", str(andorra_dir), "--at", LA_VELLA, *late, "--allow-stale-elements"
    )
    assert code == 0, out
    assert out.count("note:") >= 1


def test_update_elements_loads_fresh_tles(andorra_dir: Path, tmp_path: Path) -> None:
    built = tmp_path / "built"
    shutil.copytree(andorra_dir, built)
    starlink = MAPS / "andorra" / "data" / "starlink.txt"
    code, out = _run("update-elements", "--map", str(built), "--tle", f"starlink={starlink}")
    assert code == 0, out
    assert "starlink:" in out and "satellites loaded" in out
    code, out = _run("update-elements", "--map", str(built), "--tle", "starlink")
    assert code == 2 and "NETWORK=FILE" in out
