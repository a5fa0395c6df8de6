"""Plans and their files: handover events, totals, JSON / GeoJSON / GeoPackage, route choice."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import LineString, Point

from commap.errors import InvalidInputError, NoFeasiblePlanError
from commap.geo.corridor import Route
from commap.map.comm_map import CommMap
from commap.plan import (
    Constraints,
    HandoverProblem,
    Plan,
    RouteCandidate,
    choose_route,
    evaluate_plan,
    plan_corridor,
    solve,
    write_plan,
)
from commap.radio.link import Objective
from tests.support import plan_synthetic as syn


@pytest.fixture(scope="module")
def plan() -> Plan:
    rng = np.random.default_rng(21)
    cor = syn.corridor(400, tunnel=(150, 170))
    m = syn.matrix(cor, rng)
    return plan_corridor(
        cor,
        m,
        syn.CATALOGUE,
        app="infotainment",
        constraints=Constraints(min_dwell_s=10.0, max_handovers=12),
        # the expected-cost optimum, handovers and all: these tests read the plan's files
        objective=Objective(switch_confidence_sd=0.0),
    )


def test_plan_segments_handovers_and_totals(plan: Plan) -> None:
    n = len(plan)
    assert n == 400 and plan.assignment.shape == plan.outage_risk.shape == (n,)
    assert set(plan.segment_networks) <= set(plan.network_ids)
    assert plan.totals.handovers == len(plan.handovers) <= 12
    assert sum(plan.totals.handovers_by_kind.values()) == plan.totals.handovers
    assert sum(plan.totals.time_share.values()) == pytest.approx(1.0)
    assert plan.totals.expected_drops == pytest.approx(
        plan.totals.outage_drops + plan.totals.handover_drops
    )
    # a stretch of outage is one failure, not one per segment it spans
    assert plan.totals.outage_drops < plan.outage_risk.sum()
    assert plan.totals.length_m == pytest.approx(400 * 50.0)
    for h in plan.handovers:
        i = h.segment
        assert plan.segment_networks[i - 1] == h.from_network != h.to_network
        assert plan.segment_networks[i] == h.to_network
        assert h.distance_m == plan.distance_m[i] and h.eta_s == plan.eta_s[i]
        assert min(plan.lat[i - 1], plan.lat[i]) <= h.lat <= max(plan.lat[i - 1], plan.lat[i])
        assert 0.0 < h.failure_prob < 1.0 and h.interruption_s > 0
    assert plan.solver.name == "cp-sat" and plan.solver.status in ("OPTIMAL", "FEASIBLE")
    # every number in the plan is the evaluator's
    rebuilt = HandoverProblem.build(
        syn.corridor(400, tunnel=(150, 170)),
        syn.matrix(syn.corridor(400, tunnel=(150, 170)), np.random.default_rng(21)),
        syn.CATALOGUE,
        app="infotainment",
        constraints=Constraints(min_dwell_s=10.0, max_handovers=12),
    )
    assert evaluate_plan(rebuilt, plan.assignment).cost == pytest.approx(plan.totals.cost)
    rows = np.arange(n)
    onsets = rebuilt.drop_onsets[rows, plan.assignment].sum()
    assert plan.totals.outage_drops == pytest.approx(onsets)


def test_json_round_trip(plan: Plan, tmp_path: Path) -> None:
    out = write_plan(plan, tmp_path / "plan.json")
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["format"] == "commap-plan/1"
    assert data["segments"]["network_id"] == plan.segment_networks
    assert len(data["segments"]["outage_risk"]) == len(plan)
    assert set(data["segments"]["provenance"]) <= {"none", "modelled", "measured"}
    assert data["totals"]["handovers"] == plan.totals.handovers
    assert [h["to_network"] for h in data["handovers"]] == [h.to_network for h in plan.handovers]
    assert data["solver"]["status"] == plan.solver.status
    assert data["constraints"]["max_handovers"] == 12
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_geojson_readable_by_geopandas(plan: Plan, tmp_path: Path) -> None:
    out = write_plan(plan, tmp_path / "plan.geojson")
    frame = gpd.read_file(out)
    assert frame.crs is not None and frame.crs.to_epsg() == 4326
    stretches = frame[frame["feature"] == "stretch"]
    handovers = frame[frame["feature"] == "handover"]
    assert len(stretches) == plan.totals.handovers + 1
    assert len(handovers) == plan.totals.handovers
    assert all(isinstance(g, LineString) and g.is_valid for g in stretches.geometry)
    assert all(isinstance(g, Point) for g in handovers.geometry)
    # stretches tile the route: each ends where the next begins
    ends = stretches["end_distance_m"].to_numpy()[:-1]
    assert np.allclose(ends, stretches["start_distance_m"].to_numpy()[1:])
    raw = json.loads(out.read_text(encoding="utf-8"))
    assert raw["commap"]["totals"]["handovers"] == plan.totals.handovers


def test_geopackage_layers(plan: Plan, tmp_path: Path) -> None:
    out = write_plan(plan, tmp_path / "plan.gpkg")
    stretches = gpd.read_file(out, layer="stretches")
    handovers = gpd.read_file(out, layer="handovers")
    assert stretches.crs.to_epsg() == 4326 and handovers.crs.to_epsg() == 4326
    assert len(stretches) == len(handovers) + 1
    assert set(handovers["to_network"]) <= set(plan.network_ids)
    assert stretches["length_m"].sum() == pytest.approx(plan.totals.length_m)
    write_plan(plan, out)  # overwriting works and stays readable
    assert len(gpd.read_file(out, layer="stretches")) == len(stretches)


def test_one_segment_plan_writes_every_format(tmp_path: Path) -> None:
    cor = syn.corridor(1)
    p = plan_corridor(cor, syn.matrix(cor, np.random.default_rng(0)), syn.CATALOGUE)
    assert len(p) == 1 and not p.handovers
    for suffix in ("json", "geojson", "gpkg"):
        write_plan(p, tmp_path / f"one.{suffix}")
    assert len(gpd.read_file(tmp_path / "one.gpkg", layer="stretches")) == 1
    assert len(gpd.read_file(tmp_path / "one.gpkg", layer="handovers")) == 0


def test_unknown_format_and_solver_raise(plan: Plan, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown plan format"):
        write_plan(plan, tmp_path / "plan.kml")
    cor = syn.corridor(5)
    problem = HandoverProblem.build(
        cor,
        syn.matrix(cor, np.random.default_rng(0)),
        syn.CATALOGUE,
        constraints=Constraints(max_handovers=2),
    )
    with pytest.raises(InvalidInputError, match="unknown solver"):
        solve(problem, solver="magic")
    with pytest.raises(InvalidInputError):
        solve(problem, solver="dp")
    assert solve(problem, solver="auto").solver.name == "cp-sat"


def _candidate(
    n_seg: int, speed: float, gap_rate: float, seed: int, networks: tuple = syn.NETWORKS
) -> RouteCandidate:
    cor = syn.corridor(n_seg, speed_mps=speed)
    route = Route(
        lon=cor.lon,
        lat=cor.lat,
        speed_mps=np.full(n_seg - 1, speed),
        in_tunnel=np.zeros(n_seg - 1, bool),
        on_bridge=np.zeros(n_seg - 1, bool),
        name=f"{n_seg}x{speed:g}",
    )
    m = syn.matrix(cor, np.random.default_rng(seed), gap_rate=gap_rate, networks=networks)
    return RouteCandidate(route, cor, m)


def test_route_choice_trades_time_for_drops() -> None:
    # terrestrial networks only: a satellite would cover the gaps of either route alike
    cellular = tuple(n for n in syn.NETWORKS if not n.is_satellite)
    fast_patchy = _candidate(300, 30.0, 0.5, 1, cellular)  # 500 s, many gaps
    slow_covered = _candidate(300, 25.0, 0.0, 2, cellular)  # 600 s, good coverage
    choice = choose_route([fast_patchy, slow_covered], syn.CATALOGUE, seconds_per_drop=60.0)
    table = choice.table()
    assert [r["index"] for r in table] == [0, 1] and sum(r["picked"] for r in table) == 1
    drops = [r["expected_drops"] for r in table]
    assert drops[0] > drops[1]
    best = min(range(2), key=lambda i: table[i]["travel_time_s"] + 60.0 * drops[i])
    assert choice.best == best
    # time only: the fastest route wins
    assert choose_route([fast_patchy, slow_covered], syn.CATALOGUE, seconds_per_drop=0.0).best == 0


def test_route_choice_skips_infeasible_routes() -> None:
    fine = _candidate(200, 25.0, 0.0, 3)
    # terrestrial networks only, with gaps: handovers are forced
    forced = _candidate(200, 30.0, 0.6, 4, networks=syn.NETWORKS[:4])
    none = Constraints(max_handovers=0, avoid_unusable=True)  # gaps must be left: switches forced
    choice = choose_route([forced, fine], syn.CATALOGUE, constraints=none)
    assert choice.best == 1 and choice.picked.feasible
    assert not choice.options[0].feasible and choice.options[0].plan is None
    assert choice.table()[0]["reason"].startswith("max_handovers")
    with pytest.raises(NoFeasiblePlanError) as err:
        choose_route([forced], syn.CATALOGUE, constraints=none)
    assert err.value.constraint == "max_handovers"
    with pytest.raises(InvalidInputError):
        choose_route([fine], syn.CATALOGUE, seconds_per_drop=-1.0)


def test_plan_files_carry_unknown_per_network(cork: CommMap, tmp_path: Path) -> None:
    from commap.service.planning import PlanRequest, plan_route
    from tests.support.routes import cork_drive_with_blind_leg

    blind = plan_route(cork, PlanRequest(route=cork_drive_with_blind_leg())).plan
    doc = json.loads(write_plan(blind, tmp_path / "plan.json").read_text())
    unknown = doc["segments"]["unknown"]
    assert sorted(unknown) == sorted(blind.network_ids)
    assert len(unknown["ie-b-lte"]) == len(blind)
    assert unknown["ie-b-lte"][-1] is True and unknown["ie-b-lte"][0] is False
    assert not any(unknown["ie-mno1-3g"])  # modelled: always known
    collection = json.loads(write_plan(blind, tmp_path / "plan.geojson").read_text())
    stretches = [f for f in collection["features"] if f["properties"]["feature"] == "stretch"]
    flags = np.asarray(unknown["ie-b-lte"], dtype=float)
    for f in stretches:  # each stretch reports the share of its segments that are unknown
        props = f["properties"]
        own = flags[props["start_segment"] : props["end_segment"] + 1]
        assert props["unknown_share"]["ie-b-lte"] == pytest.approx(own.mean())
    assert stretches[-1]["properties"]["unknown_share"]["ie-b-lte"] == 1.0
    # a plan read back for the viewer and plots keeps the flags
    from commap.out.timeline import read_plan

    timeline = read_plan(tmp_path / "plan.json")
    assert timeline.matrix.unknown is not None
    assert timeline.matrix.unknown[:, 0].tolist() == unknown["ie-b-lte"]
