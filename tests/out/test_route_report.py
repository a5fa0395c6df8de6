"""Route connectivity test report: scores, the held-out Cork drive test, deterministic files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from commap.errors import InvalidInputError
from commap.geo.corridor import cut, route_from_polyline
from commap.map.comm_map import CommMap
from commap.out.route_report import (
    compare_trace,
    coverage_by_provenance,
    measured_network,
    read_trace,
    route_report,
    score_plan,
    score_trace,
    trace_route,
    write_route_report,
)
from commap.out.timeline import RouteTimeline, timeline_from_plan
from commap.radio.measurements import read_gnettrack
from commap.radio.quality import USABLE_SINR_DB, Quality, QualityMatrix
from commap.service.planning import PlanRequest, plan_route
from tests.support.paths import TEST_DATA


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


HELD_OUT = TEST_DATA / "measured" / "ucc5g_cork_heldout.zip"


@pytest.fixture(scope="module")
def trace() -> pd.DataFrame:
    return read_gnettrack(HELD_OUT, network_id="ie-b-lte", network_modes=["LTE", "5G"])


@pytest.fixture(scope="module")
def cork_timeline(cork: CommMap, trace: pd.DataFrame) -> RouteTimeline:
    return timeline_from_plan(plan_route(cork, PlanRequest(route=trace_route(trace))))


# -- scores on a small hand-made plan ------------------------------------------------------------


def small_timeline(serving: list[str], sinr_a: list[float]) -> RouteTimeline:
    """Segments of 100 m at 10 m/s along a parallel; networks a (given SINR) and b (10 dB)."""
    n = len(serving)
    lon = np.linspace(1.50, 1.50 + 0.0012215 * n, n + 1)  # ~100 m per leg at 42.5 N
    route = route_from_polyline(lon, np.full(n + 1, 42.5), speed_mps=10.0)
    total_m = cut(route, segment_m=1e6, departure_s=0.0).total_length_m
    corridor = cut(route, segment_m=total_m / n, departure_s=0.0)
    assert len(corridor) == n

    def column(sinr: list[float]) -> Quality:
        q = Quality.empty(n)
        return Quality(
            q.rsrp_dbm,
            np.array(sinr),
            q.elevation_deg,
            q.confidence,
            np.full(n, 1, np.int8),
            q.sample_count,
        )

    matrix = QualityMatrix.from_columns(("a", "b"), [column(sinr_a), column([10.0] * n)])
    handovers = tuple(
        {
            "segment": i,
            "from_network": serving[i - 1],
            "to_network": serving[i],
            "kind": "inter_operator",
            "distance_m": float(corridor.distance_m[i]),
            "eta_s": float(corridor.eta_s[i]),
            "lon": float(corridor.lon[i]),
            "lat": float(corridor.lat[i]),
        }
        for i in range(1, n)
        if serving[i] != serving[i - 1]
    )
    return RouteTimeline(
        corridor=corridor,
        matrix=matrix,
        serving=tuple(serving),
        drop_prob=np.full(n, 0.01),
        handovers=handovers,
        name="small",
    )


def test_score_plan_counts_outage_handovers_and_data() -> None:
    t = small_timeline(["a", "a", "a", "b", "a", "a"], [10.0, -10.0, -10.0, 10.0, 10.0, -6.0])
    s = score_plan(t, data_rate_mbps=8.0, ping_pong_s=20.0)
    assert s["length_km"] == pytest.approx(t.corridor.total_length_m / 1000.0)
    # drops: entries into outage, segments 1-2 and segment 5; the link model's figure beside
    assert s["drops"] == 2
    assert s["expected_drops"] == pytest.approx(0.06)
    # outages: segments 1-2 (20 s) and segment 5 (10 s); b at segment 3 is fine
    assert s["outage_s"] == pytest.approx(30.0, rel=1e-2)
    assert s["longest_outage_s"] == pytest.approx(20.0, rel=1e-2)
    assert s["handovers"] == 2 and s["handovers_by_kind"] == {"inter_operator": 2}
    # a -> b -> a within 10 s: one ping-pong with a 20 s window, none with 1 s
    assert s["ping_pong"] == 1 and s["ping_pong_ratio"] == 0.5
    assert score_plan(t, data_rate_mbps=8.0, ping_pong_s=1.0)["ping_pong"] == 0
    assert s["time_s_by_network"]["b"] == pytest.approx(10.0, rel=1e-2)
    assert s["data_mb_by_network"]["b"] == pytest.approx(10.0, rel=1e-2)  # 10 s x 8 Mbit/s / 8
    with pytest.raises(InvalidInputError, match="data_rate_mbps"):
        score_plan(t, data_rate_mbps=-1.0)


# -- the held-out Cork drive test ----------------------------------------------------------------


def test_score_trace_of_the_held_out_drive(trace: pd.DataFrame) -> None:
    s = score_trace(trace)
    cell = trace["cell_id"].astype(str)
    changes = int((cell != cell.shift()).sum()) - 1
    assert s["handovers"] == changes == 56
    assert set(s["handovers_by_kind"]) == {"cell_change", "technology_change"}
    low = int((trace["sinr_db"] < USABLE_SINR_DB).sum())
    # every sample below usable is out of service for at least the 1 s it stands for
    assert low <= s["outage_s"] <= 5 * low
    assert 0 < s["drops"] <= low
    assert 10.0 < s["length_km"] < 11.5 and s["duration_s"] == pytest.approx(1773.0)
    assert sum(s["time_s_by_network"].values()) == pytest.approx(s["duration_s"])
    assert set(s["time_s_by_network"]) == {"ie-b-lte/LTE", "ie-b-lte/5G"}
    received = float((trace["throughput_dl_mbps"].fillna(0.0)).sum()) / 8.0
    assert sum(s["data_mb_by_network"].values()) == pytest.approx(received, rel=0.3)


def test_trace_errors(trace: pd.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match="at least 2 samples"):
        score_trace(trace.iloc[:1])
    two = pd.concat([trace, trace.assign(drive_id="other")], ignore_index=True)
    with pytest.raises(InvalidInputError, match="several traces"):
        score_trace(two)
    with pytest.raises(InvalidInputError, match="lacks columns"):
        score_trace(trace.drop(columns=["lat"]))


def test_map_against_the_held_out_drive(cork: CommMap, trace: pd.DataFrame) -> None:
    c = compare_trace(cork, trace)
    assert c["network_id"] == "ie-b-lte" and c["samples"] == len(trace)
    # the measured layer (other drives of the same streets) predicts the held-out drive
    assert c["rsrp_dbm"]["n"] > 1000 and c["rsrp_dbm"]["mae_db"] < 8.0
    assert abs(c["rsrp_dbm"]["bias_db"]) < 4.0
    assert 0.6 < c["usable_agreement"] <= 1.0
    assert sum(c["usable_confusion"].values()) == len(trace)
    assert c["measured_provenance_share"] > 0.8


def test_coverage_by_provenance_on_cork(cork_timeline: RouteTimeline) -> None:
    shares = coverage_by_provenance(cork_timeline)
    assert shares["ie-b-lte"]["measured"] > 0.8
    assert shares["ie-mno1-3g"]["modelled"] == pytest.approx(1.0)
    for s in shares.values():
        assert sum(s.values()) == pytest.approx(1.0)


def test_report_files_are_complete_and_deterministic(
    cork: CommMap, cork_timeline: RouteTimeline, trace: pd.DataFrame, tmp_path: Path
) -> None:
    a = write_route_report(cork, cork_timeline, tmp_path / "a", trace=trace)
    b = write_route_report(cork, cork_timeline, tmp_path / "b", trace=trace)
    for fa, fb in zip([a.html, a.json, *a.figures], [b.html, b.json, *b.figures], strict=True):
        assert fa.read_bytes() == fb.read_bytes(), fa.name
    assert sorted(p.name for p in a.figures) == ["comparison.png", "map.png", "strip.png"]
    data = json.loads(a.json.read_text(encoding="utf-8"))
    assert {"plan", "measured", "plan_vs_measured", "coverage_by_provenance"} <= set(data)
    assert data["generated_at"] is None
    assert data["measured"]["handovers"] == 56
    page = a.html.read_text(encoding="utf-8")
    # self-contained: three embedded PNGs, no reference to another file or site
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 3
    assert not re.search(r'(src|href)="(?!data:)', page)
    # the plan and the trace side by side on equal terms: drops counted by the same rule, the
    # plan's link-model figure and planned interruptions on rows of their own
    assert isinstance(data["measured"]["drops"], int) and isinstance(data["plan"]["drops"], int)
    assert data["measured"]["expected_drops"] is None
    assert data["plan"]["interruption_s"] is not None
    for label in (
        "drops (entries into outage)",
        "expected drops (plan, link model)",
        "planned interruptions (in outage)",
        "drops per 100 km",
        "outage share",
        "longest outage",
        "ping-pong ratio",
        "Handovers by kind",
        "Time and data per network",
        "Plan versus measured",
    ):
        assert label in page
    assert "Raca" in page  # the drive-test data's citation


def plan_outage(result: Any) -> np.ndarray:
    """Segments whose planned network is not usable (the report's outage rule)."""
    ids = result.matrix.network_ids
    cols = np.array([ids.index(n) for n in result.plan.segment_networks])
    sinr = result.matrix.sinr_db[np.arange(len(cols)), cols]
    return np.asarray(sinr < USABLE_SINR_DB)


def test_report_of_a_plan_only(andorra: CommMap, tmp_path: Path) -> None:
    request = PlanRequest(
        origin=(1.5218, 42.5063), destination=(1.7330, 42.5430), app="infotainment"
    )
    result = plan_route(andorra, request)
    files = route_report(andorra, tmp_path, request=request, generated_at="2025-01-23")
    data = json.loads(files.json.read_text(encoding="utf-8"))
    assert "measured" not in data and data["generated_at"] == "2025-01-23"
    assert data["app"]["name"] == "infotainment"
    assert data["plan"]["handovers"] == len(result.plan.handovers)
    # the plan's own expected drops, and its drops counted as a trace's are
    plan = data["plan"]
    assert plan["expected_drops"] == pytest.approx(result.plan.totals.expected_drops, rel=1e-5)
    assert plan["drops"] == len(_runs(np.asarray(plan_outage(result))))
    # planned interruptions are not hidden: they count in the outage
    interruption_s = result.plan.totals.interruption_s
    assert interruption_s > 0 and plan["interruption_s"] == pytest.approx(interruption_s, rel=1e-5)
    no_link_s = float(result.corridor.duration_s[plan_outage(result)].sum())
    assert plan["outage_s"] == pytest.approx(no_link_s + interruption_s, rel=1e-5)
    # tunnels have no network at all: the longest outage is at least the longest tunnel
    corridor = result.corridor
    tunnel_s = max(
        (float(corridor.duration_s[a:b].sum()) for a, b in _runs(corridor.in_tunnel)), default=0.0
    )
    assert tunnel_s > 0.0
    assert data["plan"]["longest_outage_s"] >= tunnel_s - 1e-6
    assert "Generated 2025-01-23" in files.html.read_text(encoding="utf-8")
    with pytest.raises(InvalidInputError, match="application"):
        write_route_report(andorra, timeline_from_plan(result), tmp_path / "x", app="gaming")
    with pytest.raises(InvalidInputError, match="request or a drive-test trace"):
        route_report(andorra, tmp_path / "y")


def test_route_report_of_a_trace(cork: CommMap, trace: pd.DataFrame, tmp_path: Path) -> None:
    files = route_report(cork, tmp_path, trace=trace)
    data = json.loads(files.json.read_text(encoding="utf-8"))
    assert data["route"] == "B_2019.12.03_07.29.22"
    assert data["departure_utc"] == "2019-12-03T07:29:22Z"
    assert data["plan_vs_measured"]["network_id"] == "ie-b-lte"


def test_read_trace_and_measured_network(cork: CommMap, andorra: CommMap) -> None:
    assert measured_network(cork) == "ie-b-lte"
    with pytest.raises(InvalidInputError, match="no measured network"):
        measured_network(andorra)
    records = read_trace(HELD_OUT, network_id="ie-b-lte")
    assert set(records["network_mode"]) == {"LTE", "5G"} and len(records) > 1500
    with pytest.raises(InvalidInputError, match="no trace 'B_1999'"):
        read_trace(HELD_OUT, network_id="ie-b-lte", trace_name="B_1999")
