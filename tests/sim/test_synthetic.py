"""The synthetic truth second by second: hand-made truths through the real drives' baselines."""

from __future__ import annotations

import numpy as np
import pytest

from commap.errors import InvalidInputError
from commap.geo.corridor import cut, route_from_polyline
from commap.networks import Network, NetworkKind
from commap.radio.quality import NO_SIGNAL_RSRP_DBM, NO_SIGNAL_SINR_DB, Provenance, QualityMatrix
from commap.radio.vehicle import vehicle_setup
from commap.sim.failover import (
    PEPLINK_PROBES,
    a3_failover_policy,
    hot_standby_policy,
    probe_failover_policy,
    score_choice,
)
from commap.sim.synthetic import SecondsTotals, judge_truth, setup_network_ids, truth_seconds
from commap.sim.truth import TruthField

NETS = [
    Network(id=i, kind=NetworkKind.TERRESTRIAL, operator=i, technology="lte", latency_ms=30)
    for i in "ab"
]
ONE, TWO = vehicle_setup("single_modem"), vehicle_setup("dual_modem")
SECONDS = 60


def _corridor():  # type: ignore[no-untyped-def]
    # 60 s at 10 m/s along a parallel: 600 m, one 50 m segment every 5 s
    route = route_from_polyline([1.5, 1.5 + 600 / 82_000], [42.5, 42.5], speed_mps=10.0)
    return cut(route, segment_m=50.0, departure_s=0.0)


def _truth(dead_a: tuple[int, int], *, dead_b: tuple[int, int] = (0, 0)) -> TruthField:
    """100 ms steps; network a dead over ``dead_a`` (s), b over ``dead_b``, else both good."""
    t = np.arange(SECONDS * 10) * 0.1
    sinr = np.full((t.size, 2), 12.0)
    rsrp = np.full((t.size, 2), -90.0)
    sinr[:, 1], rsrp[:, 1] = 8.0, -95.0  # b a little weaker: a is the primary
    for j, (start, stop) in enumerate((dead_a, dead_b)):
        steps = (t >= start) & (t < stop)
        sinr[steps, j], rsrp[steps, j] = NO_SIGNAL_SINR_DB, NO_SIGNAL_RSRP_DBM
    distance = t * 10.0
    return TruthField(
        network_ids=("a", "b"),
        step_s=0.1,
        t_s=t,
        distance_m=distance,
        segment=np.minimum((distance // 50.0).astype(np.int64), 11),
        rsrp_dbm=rsrp,
        sinr_db=sinr,
        elevation_deg=np.full((t.size, 2), np.nan),
        fading_db=np.zeros((t.size, 2)),
        seed=0,
    )


def test_an_outage_second_is_one_whose_median_step_fails_the_real_drives_rules() -> None:
    truth = _truth((10.0, 40.35))  # 40.0-40.3 dead: 4 of the second's 10 steps, not the median
    s = truth_seconds(truth, _corridor())
    assert s.network_ids == ("a", "b") and len(s) == SECONDS
    assert np.flatnonzero(s.outage[:, 0]).tolist() == list(range(10, 40))
    assert not s.outage[:, 1].any()
    assert s.rank[5].tolist() == [-90.0, -95.0] and s.rank[20, 0] == -np.inf
    # each second at its place along the route, eastwards
    assert np.all(np.diff(s.lon) >= 0) and s.lon[-1] > s.lon[0] and np.allclose(s.lat, 42.5)
    with pytest.raises(InvalidInputError, match="not in the truth"):
        truth_seconds(truth, _corridor(), ["a", "x"])


def test_probe_failover_at_the_peplink_defaults_on_a_synthetic_truth() -> None:
    s = truth_seconds(_truth((10.0, 40.0)), _corridor())
    serving = probe_failover_policy(s, NETS, ONE, PEPLINK_PROBES).serving
    # probes every 5 s: those at 10, 15 and 20 s fail, the third is known at its 5 s timeout:
    # the router declares a down after 3 failures and leaves it at 25 s
    assert (serving[:25] == 0).all() and (serving[25:] == 1).all()
    lost = score_choice(s, serving, NETS, ONE, policy="probe_failover")
    assert lost.outage_s == 15 + 10  # a's outage until the switch, then the 10 s attach to b
    # the modem's own link state (a3_failover) moves at the first outage second
    assert np.argmax(a3_failover_policy(s, NETS, ONE).serving == 1) == 10
    # two modems: the registered standby takes over at once and keeps the traffic
    two = hot_standby_policy(s, NETS, TWO)
    assert np.argmax(two.serving == 1) == 10 and (two.serving[10:] == 1).all()
    assert score_choice(s, two, NETS, TWO, policy="hot_standby").outage_s == 1


def _flat_map(n: int, sinr_db: float) -> QualityMatrix:
    shape = (n, 2)
    return QualityMatrix(
        network_ids=("a", "b"),
        rsrp_dbm=np.full(shape, -90.0),
        sinr_db=np.full(shape, sinr_db),
        elevation_deg=np.full(shape, np.nan),
        confidence=np.ones(shape),
        provenance=np.full(shape, Provenance.MODELLED, dtype=np.int8),
        sample_count=np.ones(shape, dtype=np.int32),
    )


def test_every_set_up_runs_every_policy_and_commap_plans_once_per_route() -> None:
    corridor = _corridor()
    truth = _truth((10.0, 40.0), dead_b=(45.0, 50.0))
    calls: list[tuple[str, int]] = []

    def planner(matrix: QualityMatrix, setup):  # type: ignore[no-untyped-def]
        calls.append((setup.name, matrix.shape[1]))
        # a plan that knows the truth: b over a's dead stretch (segments 2..7), else a
        plan = np.zeros(matrix.shape[0], dtype=np.int64)
        plan[2:8] = 1
        return plan

    plans: dict[str, np.ndarray] = {}
    totals = SecondsTotals(seeds=2)
    setups = [vehicle_setup(v) for v in ("single_modem", "dual_modem", "bonded")]
    for _ in range(2):  # two seeds of one route
        scores, splits = judge_truth(
            truth,
            corridor,
            _flat_map(len(corridor), 10.0),
            NETS,
            setups=setups,
            planner=planner,
            commap_plans=plans,
        )
        totals.add(scores, splits)
    # commap's plan once per set-up with a plan, the oracle's on every truth
    assert calls.count(("single_modem", 2)) == 3 and calls.count(("dual_modem", 2)) == 3
    assert sorted(plans) == ["dual_modem", "single_modem"]
    summary = totals.summary()
    assert set(summary["vehicle"]) == {"single_modem", "dual_modem", "bonded"}
    by = summary.set_index(["vehicle", "policy"])
    # the bonded pair is lost only where both are out: never
    assert by.loc[("bonded", "bonding"), "outage_s"] == 0
    # planned ahead of the outage, commap loses only the planned switches' interruptions
    single = by.loc["single_modem"]
    assert single.loc["commap", "outage_s"] < single.loc["rules_without_plan", "outage_s"]
    assert single.loc["commap", "scored_s"] == 2 * SECONDS
    versus = totals.versus().set_index("vehicle")
    assert (
        versus.loc["single_modem", "rules_without_plan_loss_s_per_hour"]
        > (versus.loc["single_modem", "commap_loss_s_per_hour"])
    )
    split = totals.breakdown().set_index(["vehicle", "policy"])
    assert ("single_modem", "commap - oracle") in split.index
    assert split.loc[("single_modem", "commap"), "lost_s"] == pytest.approx(
        single.loc["commap", "service_loss_s_per_hour"], abs=0.1
    )


def test_a_set_up_without_a_terminal_drives_the_terrestrial_networks_only() -> None:
    sat = Network(id="s", kind=NetworkKind.LEO, operator="s", technology="leo", latency_ms=40)
    assert setup_network_ids([*NETS, sat], ONE) == ("a", "b")
    assert setup_network_ids([*NETS, sat], vehicle_setup("satellite_always_on")) == (
        "a",
        "b",
        "s",
    )
