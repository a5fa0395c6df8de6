"""The ``commap`` command line on the real maps: output people read, and errors they can act on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
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


def test_validate_writes_summary_and_reliability_diagrams(
    hamburg_dir: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "validation"
    code, out = _run(
        "validate", "--map", str(hamburg_dir), "--group", "day", "--network", "de-telekom",
        "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, out
    assert "de-telekom / rsrp_dbm" in out
    summary = pd.read_csv(out_dir / "summary.csv")
    assert {"network", "kpi", "model", "mae", "brier", "pinball", "coverage80", "n"} <= set(
        summary.columns
    )
    assert set(summary["model"]) == {"learned", "constant", "knn1", "knn5"}
    assert (out_dir / "summary.md").read_text().startswith("# Validation of the learned map")
    png = out_dir / "reliability_de-telekom_rsrp_dbm.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--group", "week"], "--group 'week' must be one of drive, day, block"),
        (["--folds", "1"], "--folds 1: need at least 2 folds"),
        (["--network", "nope"], "--network nope"),
        (["--block-m", "-5"], "--block-m -5.0: must be > 0"),
    ],
)
def test_validate_bad_arguments_are_one_line(
    hamburg_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    code, out = _run("validate", "--map", str(hamburg_dir), *args, "--out", str(tmp_path / "v"))
    line = " ".join(out.split())  # rich wraps the one message at the terminal width
    assert code == 2, out
    assert line.startswith("error:") and line.count("error:") == 1
    assert message in line
    assert "Traceback" not in out


def _run_wide(*args: str) -> tuple[int, str]:
    """As :func:`_run`, on a terminal wide enough for every table column."""
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_coverage_prints_unknown_where_the_map_has_no_data(cork_dir: Path) -> None:
    from tests.support.routes import CORK_FAR_CORNER

    far = f"{CORK_FAR_CORNER[1]},{CORK_FAR_CORNER[0]}"
    code, out = _run_wide("coverage", "--map", str(cork_dir), "--at", far)
    assert code == 0, out
    row = next(line for line in out.splitlines() if "ie-b-lte" in line)
    assert row.count("unknown") == 3  # RSRP, SINR and usable: no value is claimed
    assert "unknown" not in next(line for line in out.splitlines() if "ie-mno1-3g" in line)
    code, out = _run_wide("coverage", "--map", str(cork_dir), "--at", "51.935522,-8.387911")
    row = next(line for line in out.splitlines() if "ie-b-lte" in line)
    assert code == 0 and "unknown" not in row and "measured" in row


def test_route_table_prints_unknown_share_and_unknown_median(cork_dir: Path) -> None:
    from rich.console import Console

    from commap.cli import route_coverage_table
    from commap.geo.corridor import route_from_polyline
    from commap.map.comm_map import CommMap
    from tests.support.routes import CORK_FAR_CORNER, cork_drive_with_blind_leg

    cmap = CommMap.load(cork_dir)

    def rows(route: Any) -> dict[str, str]:
        corridor = cmap.corridor(route)
        console = Console(record=True, width=200)
        console.print(route_coverage_table(corridor, cmap.quality(corridor), cmap.catalogue))
        text = console.export_text()
        return {n: next(x for x in text.splitlines() if n in x) for n in cmap.catalogue.ids}

    mixed = rows(cork_drive_with_blind_leg())
    cells = [c.strip() for c in mixed["ie-b-lte"].split("│") if c.strip()]
    assert cells[4] != "0 %" and cells[5] != "unknown"  # partly unknown, median of the rest
    lon, lat = CORK_FAR_CORNER
    blind = rows(route_from_polyline([lon, lon + 0.003], [lat, lat - 0.002]))
    assert blind["ie-b-lte"].rstrip(" │").endswith("unknown")
    assert "100 %" in blind["ie-b-lte"] and "unknown" not in blind["ie-mno1-3g"]
