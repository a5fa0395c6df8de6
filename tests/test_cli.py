"""The ``commap`` command line on the real maps: output people read, and errors they can act on."""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pytest
from typer.testing import CliRunner

from commap.cli import app
from tests.support.paths import MAPS, REPO
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


def test_coverage_table_fits_80_columns_and_shows_no_sentinels(andorra_dir: Path) -> None:
    code, out = _run("coverage", "--map", str(andorra_dir), "--at", LA_VELLA)
    assert code == 0, out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out
    # es-lte and fr-lte have no signal in La Vella: "none", not the -160 dBm / -30 dB fill values
    assert "-160" not in out and "-30.0" not in out
    assert "es-lte" in out and "none" in out
    assert "usable: SINR >= -3.9 dB" in out


def test_coverage_without_data_says_unknown(cork_dir: Path) -> None:
    code, out = _run("coverage", "--map", str(cork_dir), "--at", "51.87,-8.575")
    assert code == 0, out
    row = next(line for line in out.splitlines() if "ie-b-lte" in line)  # no drive test there
    assert row.split()[2:] == ["unknown", "unknown", "-", "unknown", "unknown"]


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


def test_the_default_plans_report_keeps_the_solvers_status_and_says_what_the_merge_cost(
    andorra_dir: Path, tmp_path: Path
) -> None:
    out_file = tmp_path / "plan.geojson"
    args = ("plan", "--map", str(andorra_dir), "--from", LA_VELLA, "--to", PAS_DE_LA_CASA)
    code, out = _run(*args, "--out", str(out_file))
    assert code == 0, out
    status = re.search(r"solver (\S+) (\S+) \(gap ([0-9.]+) %", out)
    assert status is not None, out
    # OPTIMAL is said of the solver's own plan, whose gap is 0; the README's route loses
    # switches the map cannot vouch for after the solver, and a line says what that cost
    assert status.group(2) != "OPTIMAL" or float(status.group(3)) == 0.0, out
    merged = re.search(r"(\d+) switches the map cannot vouch for merged away: \+([0-9.]+) s", out)
    assert merged is not None and int(merged.group(1)) > 0, out
    solver = json.loads(out_file.read_text(encoding="utf-8"))["commap"]["solver"]
    assert solver["merged_switches"] == int(merged.group(1))
    assert solver["merge_loss_s"] == pytest.approx(float(merged.group(2)), abs=0.005)
    assert solver["merge_loss_s"] > 0 and solver["merge_loss_share"] > 0
    assert solver["gap"] == pytest.approx(
        (solver["objective"] - solver["bound"]) / solver["objective"], abs=1e-12
    )


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
    assert code == 2  # a wrong argument, as every other bad input
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


# pydantic: typer 0.29 coerces every option through it (0.4 s before an argument error)
HEAVY_MODULES = (
    "pandas",
    "networkx",
    "scipy",
    "ortools",
    "numpy",
    "geopandas",
    "pydantic",
    "commap.map",
)


def _modules_after(code: str) -> list[str]:
    """The heavy modules loaded once ``code`` has run in a fresh interpreter (even after exit)."""
    probe = (
        "import atexit, sys\n"
        f"heavy = {HEAVY_MODULES!r}\n"
        "atexit.register(lambda: print('LOADED', sorted(m for m in heavy if m in sys.modules)))\n"
        f"{code}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("LOADED"))
    return list(ast.literal_eval(line.removeprefix("LOADED ")))


def test_importing_the_cli_loads_no_heavy_library() -> None:
    assert _modules_after("import commap.cli") == []


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["plan", "--help"],
        ["plan", "--bogus"],
        ["plan", "--from", "91,1.5", "--to", PAS_DE_LA_CASA],
        ["route", "--from", "x", "--to", PAS_DE_LA_CASA],
    ],
)
def test_help_and_argument_errors_load_no_heavy_library(args: list[str]) -> None:
    code = f"import sys; sys.argv = ['commap', *{args!r}]; from commap.cli import run; run()"
    assert _modules_after(code) == []


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ([], "plan.json"),
        (
            [
                "--app",
                "teleoperation",
                "--min-dwell-s",
                "10",
                "--max-handovers",
                "6",
                "--alternatives",
                "3",
            ],
            "plan.geojson",
        ),
    ],
)
def test_planning_on_the_default_map_imports_no_pandas(
    andorra_dir: Path, tmp_path: Path, options: list[str], name: str
) -> None:
    # the README's plan lines: map load, routing, tunnel sampling of the terrestrial layers,
    # the solver and the written plan all work on arrays (pandas costs a third of a second)
    out_file = tmp_path / name
    args = ["plan", "--map", str(andorra_dir), "--from", LA_VELLA, "--to", PAS_DE_LA_CASA]
    args += [*options, "--out", str(out_file)]
    code = f"import sys; sys.argv = ['commap', *{args!r}]; from commap.cli import run; run()"
    loaded = _modules_after(code)
    assert out_file.stat().st_size > 0
    assert "pandas" not in loaded and "geopandas" not in loaded


def test_plot_draws_the_plan_file_it_is_given(andorra_dir: Path, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.geojson"
    code, out = _run(
        "plan",
        "--map",
        str(andorra_dir),
        "--from",
        LA_VELLA,
        "--to",
        PAS_DE_LA_CASA,
        "--app",
        "teleoperation",
        "--max-handovers",
        "6",
        "--format",
        "json",
        "--out",
        str(plan_file),
    )
    assert code == 0, out
    totals = json.loads(out[out.index("{") :])["totals"]
    png = tmp_path / "plan.png"
    code, out = _run(
        "plot",
        "--map",
        str(andorra_dir),
        "--plan",
        str(plan_file),
        "--kind",
        "strip",
        "--out",
        str(png),
    )
    assert code == 0, out
    assert png.stat().st_size > 10_000
    # the title states the plan's own figures: the teleoperation plan, not a new default one
    assert "(teleoperation)" in out
    assert f"{totals['handovers']} handovers, {totals['expected_drops']:.2f} expected drops" in out


def test_evaluate_reports_the_whole_run_wall_time(andorra_dir: Path, tmp_path: Path) -> None:
    start = time.perf_counter()
    code, out = _run(
        "evaluate", "--map", str(andorra_dir), "--seeds", "1", "--out", str(tmp_path / "ev")
    )
    elapsed_s = time.perf_counter() - start
    assert code == 0, out
    found = re.search(r"whole\s+run\s+([\d.]+)\s+s", out)
    assert found is not None, out
    # printed to 0.1 s: allow the rounding either way
    assert 0.9 * elapsed_s - 0.05 <= float(found.group(1)) <= elapsed_s + 0.05


def test_evaluate_judges_on_a_real_drive_too(andorra_dir: Path, tmp_path: Path) -> None:
    from commap.map.build import build_map
    from commap.radio.measurements import read_records, write_records_csv
    from tests.support.specs import HAMBURG_EXTRACT, hamburg_spec

    # the map learned from the first day, the drive of the second as the truth
    spec = hamburg_spec(tmp_path / "hamburg-13sep", window=("2021-09-13", "2021-09-14"))
    earlier = build_map(spec, spec.parent / "built")
    records = read_records(HAMBURG_EXTRACT)
    later = tmp_path / "later.csv"
    write_records_csv(records[records["timestamp"] >= pd.Timestamp("2021-09-17", tz="UTC")], later)
    out = tmp_path / "ev"
    code, text = _run(
        "evaluate", "--map", str(andorra_dir), "--seeds", "1", "--out", str(out),
        "--real-map", str(earlier), "--real-drive", str(later),
    )  # fmt: skip
    assert code == 0, text
    summary = pd.read_csv(out / "summary.csv")
    assert summary.columns.tolist()[:4] == ["truth", "vehicle", "policy", "service_loss_s_per_hour"]
    rows = set(zip(summary["truth"], summary["vehicle"], summary["policy"], strict=True))
    assert ("synthetic", "single_modem", "commap") in rows
    for vehicle in ("single_modem", "dual_modem"):
        assert ("real", vehicle, "commap") in rows and ("real", vehicle, "probe_failover") in rows
    assert ("real", "dual_modem", "hot_standby") in rows and ("real", "bonded", "bonding") in rows
    assert (out / "real" / "summary.md").is_file()
    code, text = _run("evaluate", "--map", str(andorra_dir), "--real-map", str(earlier))
    assert code != 0 and "--real-drive" in text


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
    assert row.count("unknown") == 4  # RSRP, SINR, usable and source: no value is claimed
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
    cells = [c.strip() for c in re.split(r"\s{2,}", mixed["ie-b-lte"]) if c.strip()]
    assert cells[4] != "0 %" and cells[5] != "unknown"  # partly unknown, median of the rest
    lon, lat = CORK_FAR_CORNER
    blind = rows(route_from_polyline([lon, lon + 0.003], [lat, lat - 0.002]))
    assert blind["ie-b-lte"].rstrip().endswith("unknown")
    assert "100 %" in blind["ie-b-lte"] and "unknown" not in blind["ie-mno1-3g"]


@pytest.mark.parametrize("vehicle", [[], ["--vehicle", "satellite_on_demand"]])
def test_plan_tables_fit_80_columns_and_cut_no_cell(
    andorra_dir: Path, tmp_path: Path, vehicle: list[str]
) -> None:
    plan_file = tmp_path / "plan.json"
    trip = ("--from", LA_VELLA, "--to", PAS_DE_LA_CASA, "--alternatives", "3")
    code, out = _run(
        "plan", "--map", str(andorra_dir), *trip, "--out", str(plan_file), *vehicle
    )  # fmt: skip
    assert code == 0, out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out
    handovers = json.loads(plan_file.read_text())["handovers"]
    assert handovers
    rows = [line for line in out.splitlines() if re.match(r"\s*\d+\.\d\d\s+\d+\.\d\s", line)]
    for h, row in zip(handovers, rows, strict=True):
        # every handover's row with its networks whole; its kind in words, wrapped or not
        assert row.split()[0] == f"{h['distance_m'] / 1000:.2f}"
        assert h["from_network"] in row and h["to_network"] in row
        assert all(word in out for word in h["kind"].split("_"))
    if vehicle:  # how long before the switch to wake the terminal: a column of its own
        assert "prep s" in out and "120" in out


def test_build_map_prints_spec_sections_as_written(tmp_path: Path) -> None:
    spec_dir = tmp_path / "flat"
    (spec_dir / "data").mkdir(parents=True)
    pbf = (MAPS / "andorra" / "data" / "andorra.osm.pbf").read_bytes()
    (spec_dir / "data" / "andorra.osm.pbf").write_bytes(pbf[: len(pbf) // 3])  # stops the build
    spec = default_spec(spec_dir, name="flat", data_dir=None)
    text = spec.read_text()
    start = text.index("[terrain]")
    spec.write_text(text[:start] + text[text.index("[[networks]]", start) :])  # no terrain
    # a real process: the warning comes through the log, which the test runner does not capture
    done = subprocess.run(
        [sys.executable, "-m", "commap.cli", "build-map", str(spec), "--out", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    flat = " ".join(out.split())  # rich wraps long lines
    # the flat-earth warning names the section to add, not an empty pair of brackets
    assert "no [terrain]: coverage is modelled over flat earth" in flat
    assert "under [terrain])" in flat and "no :" not in flat
    assert "progress.py" not in out
    assert flat.count("coverage is modelled over flat earth") == 1  # said once


def test_build_map_names_the_spec_network_and_key_of_a_missing_sites_file(tmp_path: Path) -> None:
    spec = default_spec(tmp_path / "m", name="m")
    spec.write_text(spec.read_text().replace('sites = "generated"', 'sites = "towers.csv"', 1))
    code, out = _run("build-map", str(spec), "--out", str(tmp_path / "built"))
    assert code == 2, out
    flat = " ".join(out.split())  # rich wraps long lines
    assert f"{spec}: network ad-lte: layer.sites = 'towers.csv'" in flat
    assert "does not exist" in flat and "Traceback" not in out


# Options of the tour whose value is a file the command reads.
_INPUT_OPTIONS = ("--route", "--trace", "--drive", "--plan", "--real-drive", "--tle")


def _tour_commands() -> list[list[str]]:
    """The ``commap`` lines of the README's tour, continuation lines joined, comments cut."""
    import shlex

    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("## A short tour")
    block = text[text.index("```bash", start) + len("```bash") : text.index("```\n", start + 10)]
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "commap":
            commands.append(words[1:])
    return commands


def _placeholder(value: str) -> bool:
    """An upper-case name the reader replaces (``M``, ``LATER.csv``, ``FILE``)."""
    stem = value.split(".")[0]
    return stem.isupper() and stem.replace("_", "").isalpha()


def test_every_tour_command_reads_what_a_fresh_clone_has() -> None:
    commands = _tour_commands()
    assert len(commands) >= 10
    written: set[str] = set()
    for words in commands:
        given = dict(itertools.pairwise(words))
        reads = [given[o] for o in _INPUT_OPTIONS if o in given]
        reads = [v.partition("=")[2] or v for v in reads]  # --tle NETWORK=FILE
        if words[0] == "build-map":
            reads.append(words[1])
        for value in ([given["--map"]] if "--map" in given else []) + reads:
            if _placeholder(value) or value in written:
                continue
            on_disk = (MAPS / value / "map.toml").is_file() or (REPO / value).is_file()
            assert on_disk, f"README tour: `commap {' '.join(words)}` needs {value!r}"
        if "--out" in given:
            written.add(given["--out"])


def test_stale_elements_refusal_names_a_time_of_the_request(andorra_dir: Path) -> None:
    code, out = _run(
        "coverage", "--map", str(andorra_dir), "--at", LA_VELLA, "--time", "2025-03-10T00:00:00Z"
    )
    assert code == 2
    assert "2025-03-10T00:00:00Z (of this request) is 45 days from the starlink" in out
    depart = ("--depart", "2025-03-10T00:00:00Z")
    code, out = _run("route", "--map", str(andorra_dir), "--from", LA_VELLA, "--to", PAS_DE_LA_CASA, *depart)  # fmt: skip
    assert code == 2
    flat = " ".join(out.split())
    # the trip's last time, in whole seconds; never a segment's time called the departure
    assert re.search(r"2025-03-10T00:\d\d:\d\dZ \(of this request\) is 45 days from", flat), flat
    assert "departure 2025-03-10" not in flat


def test_far_points_are_named_by_their_option_and_warned_about_plainly(andorra_dir: Path) -> None:
    code, out = _run("coverage", "--map", str(andorra_dir), "--at", "48.85,2.35")  # Paris
    assert code == 2
    assert out.startswith("error: --at: point (48.85000, 2.35000) lies outside map andorra")
    # on a mountainside 810 m from the road: one plain warning line, as the errors are
    cli = [sys.executable, "-m", "commap.cli", "route", "--map", str(andorra_dir)]
    done = subprocess.run(
        [*cli, "--from", "42.4637,1.4913", "--to", "42.47,1.46"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith("warning: destination (42.47000, 1.46000) is 8"), first
    assert "m from the nearest connected road" in first
    assert "commap.geo.roads" not in done.stderr


ENVALIRA_EAST_PORTAL = "42.5468,1.7331"


def test_route_says_which_networks_reach_inside_its_tunnels(
    andorra_dir: Path, tmp_path: Path
) -> None:
    trip = ("--from", LA_VELLA, "--to", ENVALIRA_EAST_PORTAL)  # through the Envalira tunnel
    code, out = _run("route", "--map", str(andorra_dir), *trip)
    assert code == 0, out
    flat = " ".join(out.split())
    assert "tunnels 3.1 km, usable inside: no network" in flat
    # the same map with a distributed antenna system of ad-lte in every tunnel
    das = tmp_path / "andorra-das"
    shutil.copytree(andorra_dir, das)
    manifest = json.loads((das / "manifest.json").read_text())
    entry = next(n for n in manifest["networks"] if n["id"] == "ad-lte")
    entry["layer"]["tunnel_coverage"] = {"mode": "das", "rsrp_dbm": -95.0, "sinr_db": 10.0}
    (das / "manifest.json").write_text(json.dumps(manifest))
    code, out = _run("route", "--map", str(das), *trip)
    assert code == 0, out
    assert "tunnels 3.1 km, usable inside: ad-lte 100 %" in " ".join(out.split())
    # and the plan says it too, for the map it planned on
    for built, inside in ((andorra_dir, "no network"), (das, "ad-lte 100 %")):
        code, out = _run("plan", "--map", str(built), *trip)
        assert code == 0, out
        assert f"tunnels 3.1 km, usable inside: {inside}" in " ".join(out.split())


def test_plot_of_a_map_without_roads_draws_the_route(hamburg_dir: Path, tmp_path: Path) -> None:
    from commap.radio.measurements import read_records
    from tests.support.specs import HAMBURG_EXTRACT

    # a measured-only map (no road graph) and a recorded drive as the route
    drive = read_records(HAMBURG_EXTRACT)
    drive = drive[drive["network_id"] == "de-telekom"].drop_duplicates(["lat", "lon"]).iloc[:300]
    route = tmp_path / "drive.csv"
    drive[["lat", "lon"]].to_csv(route, index=False)
    plan_file = tmp_path / "plan.geojson"
    code, out = _run(
        "plan", "--map", str(hamburg_dir), "--route", str(route), "--out", str(plan_file)
    )
    assert code == 0, out
    png = tmp_path / "plan.png"
    code, out = _run("plot", "--map", str(hamburg_dir), "--plan", str(plan_file), "--out", str(png))
    assert code == 0, out
    assert png.stat().st_size > 0 and (tmp_path / "plan-strip.png").stat().st_size > 0
    assert not (tmp_path / "plan-coverage.png").exists() and "no road graph" in out
    code, out = _run(
        "plot", "--map", str(hamburg_dir), "--plan", str(plan_file), "--kind", "coverage",
        "--out", str(tmp_path / "coverage.png"),
    )  # fmt: skip
    assert code != 0 and "has no road graph to draw" in out
