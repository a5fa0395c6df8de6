"""Constrained plans: CP-SAT against DP and brute force, constraints, infeasibility, bounds."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest

from commap.errors import NoFeasiblePlanError
from commap.geo.corridor import Corridor
from commap.networks import NetworkCatalogue
from commap.plan import (
    Constraints,
    HandoverProblem,
    evaluate_plan,
    lagrangian_search,
    solve,
    solve_cpsat,
    solve_dp,
)
from commap.plan.cpsat import switch_groups
from commap.plan.problem import compress
from commap.radio.quality import NO_SIGNAL_RSRP_DBM, NO_SIGNAL_SINR_DB, Quality, QualityMatrix
from tests.support import plan_synthetic as syn

AD_LTE, ES_LTE, STARLINK = syn.NETWORKS[0], syn.NETWORKS[2], syn.NETWORKS[4]


def _instance(seed: int, n_seg: int, **kw: object) -> tuple[Corridor, QualityMatrix]:
    rng = np.random.default_rng(seed)
    cor = syn.corridor(n_seg, speed_mps=rng.choice([14.0, 25.0], size=n_seg))
    return cor, syn.matrix(cor, rng, shared_runs=True, **kw)  # type: ignore[arg-type]


def _recount(problem: HandoverProblem, a: np.ndarray) -> tuple[int, float]:
    """Handovers and satellite MB counted directly from the plan and the corridor."""
    switches = int((a[1:] != a[:-1]).sum())
    sat = np.array([problem.networks[i].is_satellite for i in a])
    mb = float((problem.corridor.duration_s[sat] * problem.app.data_rate_mbps / 8.0).sum())
    return switches, mb


def _dwell_ok(problem: HandoverProblem, a: np.ndarray) -> bool:
    c, cor = problem.constraints, problem.corridor
    switches = (np.flatnonzero(a[1:] != a[:-1]) + 1).tolist()
    for i, j in itertools.pairwise(switches):
        soon = (
            cor.eta_s[j] - cor.eta_s[i] < c.min_dwell_s - 1e-9
            or cor.distance_m[j] - cor.distance_m[i] < c.min_dwell_m - 1e-9
        )
        if soon and problem.allowed[j, a[i]]:
            return False
    return True


@pytest.mark.parametrize(
    ("seed", "encoding"), [*((s, "auto") for s in range(6)), *((s, "pairs") for s in range(3))]
)
def test_cpsat_equals_dp_when_constraints_are_slack(seed: int, encoding: str) -> None:
    cor, m = _instance(seed, 120)
    dwell = 8.0 if seed % 2 else 0.0
    plain = HandoverProblem.build(
        cor, m, syn.CATALOGUE, app="infotainment", constraints=Constraints(min_dwell_s=dwell)
    )
    slack = HandoverProblem.build(
        cor,
        m,
        syn.CATALOGUE,
        app="infotainment",
        constraints=Constraints(min_dwell_s=dwell, max_handovers=10_000, sat_budget_mb=1e9),
    )
    best = evaluate_plan(plain, solve_dp(plain).assignment[0]).cost
    res = solve_cpsat(
        slack, use_hint=False, gap_limit=0.0, encoding=encoding, seed=seed, time_limit_s=60.0
    )
    assert res.cp_status == "OPTIMAL"  # CP-SAT solved it cold, without the DP plan
    assert res.cost == pytest.approx(best, rel=1e-9)
    assert res.status == "OPTIMAL" and res.gap == 0.0


@pytest.mark.parametrize("seed", range(40))
def test_cpsat_equals_brute_force_under_binding_constraints(seed: int) -> None:
    rng = np.random.default_rng(500 + seed)
    n_seg, n_net = int(rng.integers(2, 7)), int(rng.integers(2, 4))
    cor, m = syn.random_instance(rng, n_seg, n_net)
    free = HandoverProblem.build(cor, m, syn.CATALOGUE, app="infotainment")
    ref = evaluate_plan(free, solve_dp(free).assignment[0])
    cons = Constraints(
        max_handovers=max(ref.handovers - 1, 0) if seed % 3 != 1 else None,
        sat_budget_mb=round(0.6 * ref.sat_mb, 3) if seed % 3 != 0 else None,
        min_dwell_s=4.0 if seed % 4 == 0 else 0.0,
    )
    p = HandoverProblem.build(cor, m, syn.CATALOGUE, app="infotainment", constraints=cons)
    cost, _ = syn.brute_force(p)
    if not np.isfinite(cost):
        with pytest.raises(NoFeasiblePlanError):
            solve_cpsat(p, gap_limit=0.0, time_limit_s=30.0)
        return
    res = solve_cpsat(p, gap_limit=0.0, time_limit_s=30.0)
    assert res.cost == pytest.approx(cost, abs=1e-9)
    assert res.status == "OPTIMAL"
    assert res.bound <= res.cost + 1e-12


@pytest.mark.parametrize("seed", range(8))
def test_every_constrained_plan_meets_every_constraint(seed: int) -> None:
    cor, m = _instance(100 + seed, 600)
    free = HandoverProblem.build(cor, m, syn.CATALOGUE, app="teleoperation")
    ref = evaluate_plan(free, solve_dp(free).assignment[0])
    cons = Constraints(
        min_dwell_s=10.0 if seed % 2 else 0.0,
        min_dwell_m=200.0 if seed % 4 == 3 else 0.0,
        max_handovers=int(0.7 * ref.handovers),
        sat_budget_mb=round(0.7 * ref.sat_mb, 1),
        strict_latency=seed % 3 == 0,
    )
    app = "teleoperation" if cons.strict_latency else "infotainment"
    p = HandoverProblem.build(cor, m, syn.CATALOGUE, app=app, constraints=cons)
    plan = solve(p, time_limit_s=1.5, seed=seed, gap_limit=0.01)
    a = plan.assignment
    ev = evaluate_plan(p, a)
    assert ev.feasible, ev.violations
    handovers, mb = _recount(p, a)
    assert cons.max_handovers is not None and cons.sat_budget_mb is not None
    assert handovers <= cons.max_handovers
    assert mb <= cons.sat_budget_mb + 1e-9
    assert _dwell_ok(p, a)
    assert p.allowed[np.arange(a.size), a].all()
    if cons.strict_latency:
        slow = {n.id for n in p.networks if n.latency_ms > p.app.max_latency_ms}
        assert slow and not slow & set(plan.segment_networks)
    assert plan.totals.handovers == handovers and len(plan.handovers) == handovers
    # the plan carries its certificate: a bound below it and the gap between them
    s = plan.solver
    assert s.name == "cp-sat" and s.status in ("OPTIMAL", "FEASIBLE")
    assert s.bound <= s.objective + 1e-9
    assert s.gap == pytest.approx(max(0.0, s.objective - s.bound) / s.objective, abs=1e-12)


def test_lagrangian_bound_is_below_the_optimum() -> None:
    for seed in range(10):
        rng = np.random.default_rng(900 + seed)
        cor, m = syn.random_instance(rng, 6, 3)
        free = HandoverProblem.build(cor, m, syn.CATALOGUE, app="infotainment")
        ref = evaluate_plan(free, solve_dp(free).assignment[0])
        p = HandoverProblem.build(
            cor,
            m,
            syn.CATALOGUE,
            app="infotainment",
            constraints=Constraints(
                max_handovers=max(ref.handovers - 1, 0), sat_budget_mb=0.5 * ref.sat_mb
            ),
        )
        cost, _ = syn.brute_force(p)
        lag = lagrangian_search(p, compress(p))
        assert lag.bound <= cost + 1e-9


def _columns(n_seg: int, usable: dict[str, Sequence[int]]) -> QualityMatrix:
    """Two terrestrial operators and Starlink; each usable only over its range."""
    cols = []
    for net in (AD_LTE, ES_LTE, STARLINK):
        q = Quality.empty(n_seg, satellite=net.is_satellite)
        on = np.zeros(n_seg, dtype=bool)
        on[list(usable.get(net.id, range(0)))] = True
        if net.is_satellite:
            q.elevation_deg[on] = 60.0
            q.sinr_db[:] = np.where(on, 9.0, NO_SIGNAL_SINR_DB)
        else:
            q.sinr_db[:] = np.where(on, 12.0, NO_SIGNAL_SINR_DB)
            q.rsrp_dbm[:] = np.where(on, -85.0, NO_SIGNAL_RSRP_DBM)
        q.confidence[:] = 0.9
        q.provenance[:] = 1
        cols.append(q)
    return QualityMatrix.from_columns((AD_LTE.id, ES_LTE.id, STARLINK.id), cols)


CAT3 = NetworkCatalogue([AD_LTE, ES_LTE, STARLINK])


def test_handover_limit_below_forced_switches_raises() -> None:
    cor = syn.corridor(20)
    m = _columns(20, {"ad-lte": range(0, 10), "es-lte": range(10, 20)})
    # the hard rule: an unusable network is left where another is usable, whatever it costs
    forced = Constraints(max_handovers=0, avoid_unusable=True)
    p = HandoverProblem.build(cor, m, CAT3, constraints=forced)
    with pytest.raises(NoFeasiblePlanError, match="force at least 1 handover") as err:
        solve(p)
    assert err.value.constraint == "max_handovers"


def test_budget_below_gap_data_raises() -> None:
    cor = syn.corridor(30)  # 2 s per segment; infotainment 5 Mbit/s = 1.25 MB per segment
    m = _columns(30, {"ad-lte": [*range(0, 10), *range(20, 30)], "starlink": range(30)})
    p = HandoverProblem.build(
        cor,
        m,
        CAT3,
        app="infotainment",
        constraints=Constraints(sat_budget_mb=10.0, avoid_unusable=True),
    )
    with pytest.raises(NoFeasiblePlanError, match=r"12\.500 MB") as err:
        solve(p)
    assert err.value.constraint == "sat_budget_mb"
    ok = HandoverProblem.build(
        cor,
        m,
        CAT3,
        app="infotainment",
        constraints=Constraints(sat_budget_mb=12.5, avoid_unusable=True),
    )
    assert solve(ok).totals.sat_mb == pytest.approx(12.5)


def test_budget_below_gap_data_with_dwell_raises() -> None:
    cor = syn.corridor(30)
    m = _columns(30, {"ad-lte": [*range(0, 10), *range(12, 30)], "starlink": range(30)})
    # 2 segments without terrestrial cover: 2.5 MB; but a 20 s dwell keeps Starlink 10 segments
    cons = Constraints(sat_budget_mb=5.0, min_dwell_s=20.0, avoid_unusable=True)
    p = HandoverProblem.build(cor, m, CAT3, app="infotainment", constraints=cons)
    with pytest.raises(NoFeasiblePlanError, match="dwell") as err:
        solve(p)
    assert err.value.constraint == "sat_budget_mb"


def test_limits_that_only_fail_together_raise_with_both_names() -> None:
    cor = syn.corridor(30)
    m = _columns(
        30,
        {"ad-lte": [*range(0, 10), *range(20, 30)], "es-lte": range(8, 22), "starlink": range(30)},
    )
    # alone: 0 handovers on Starlink, or 0 MB with ad -> es -> ad; together: impossible
    p = HandoverProblem.build(
        cor,
        m,
        CAT3,
        app="infotainment",
        constraints=Constraints(max_handovers=1, sat_budget_mb=10.0, avoid_unusable=True),
    )
    with pytest.raises(NoFeasiblePlanError) as err:
        solve(p)
    assert err.value.constraint == "max_handovers+sat_budget_mb"


def test_strict_latency_without_a_fast_network_raises() -> None:
    cor = syn.corridor(5)
    geo_only = (syn.NETWORKS[6],)
    m = syn.matrix(cor, np.random.default_rng(0), networks=geo_only)
    with pytest.raises(NoFeasiblePlanError) as err:
        HandoverProblem.build(
            cor, m, syn.CATALOGUE, app="teleoperation", constraints=Constraints(strict_latency=True)
        )
    assert err.value.constraint == "strict_latency"


def test_same_input_same_plan() -> None:
    cor, m = _instance(43, 80)
    free = HandoverProblem.build(cor, m, syn.CATALOGUE, app="infotainment")
    ref = evaluate_plan(free, solve_dp(free).assignment[0])
    cons = Constraints(
        min_dwell_s=6.0, max_handovers=ref.handovers - 2, sat_budget_mb=round(0.7 * ref.sat_mb, 1)
    )
    results = [
        solve_cpsat(
            HandoverProblem.build(cor, m, syn.CATALOGUE, app="infotainment", constraints=cons),
            seed=3,
            num_workers=1,
            time_limit_s=60.0,
            gap_limit=0.0,
        )
        for _ in range(2)
    ]
    assert results[0].cp_status == "OPTIMAL"  # CP-SAT ran and finished: no time limit involved
    assert results[0].source == "cp-sat"
    assert (results[0].assignment == results[1].assignment).all()


def test_default_switch_costs_decompose_over_groups() -> None:
    cor, m = _instance(1, 10)
    p = HandoverProblem.build(cor, m, syn.CATALOGUE)
    groups = switch_groups(p)
    assert groups is not None
    n = len(p.networks)
    for a in range(n):
        for b in range(n):
            if a != b:
                cost = sum(
                    (b in g and a not in g) * groups.enter[k]
                    + (a in g and b not in g) * groups.leave[k]
                    for k, g in enumerate(groups.members)
                )
                assert cost == pytest.approx(p.switch_cost[a, b], abs=1e-12)


@pytest.mark.parametrize("limited_dp", [True, False])
@pytest.mark.parametrize("seed", range(12))
def test_cpsat_keeps_the_dwell_before_arrival(seed: int, limited_dp: bool) -> None:
    # with a handover limit alone the exact DP decides; without it CP-SAT must agree
    rng = np.random.default_rng(4000 + seed)
    cor, m = syn.random_instance(rng, int(rng.integers(3, 7)), int(rng.integers(2, 4)))
    cons = Constraints(min_dwell_s=8.0, max_handovers=2)
    p = HandoverProblem.build(cor, m, syn.CATALOGUE, constraints=cons)
    cost, _ = syn.brute_force(p)
    res = solve_cpsat(p, gap_limit=0.0, time_limit_s=30.0, limited_dp=limited_dp)
    assert evaluate_plan(p, res.assignment).feasible
    assert res.cost == pytest.approx(cost, abs=1e-9)


@pytest.mark.parametrize("seed", range(2))
def test_handover_limit_dp_equals_cpsat_on_long_routes(seed: int) -> None:
    # long enough for the DP to run in many blocks side by side; CP-SAT run to the end agrees
    cor, m = _instance(700 + seed, 300)
    free = HandoverProblem.build(
        cor, m, syn.CATALOGUE, app="infotainment", constraints=Constraints(min_dwell_s=10.0)
    )
    limit = max(evaluate_plan(free, solve_dp(free).assignment[0]).handovers // 2, 1)
    cons = Constraints(min_dwell_s=10.0, max_handovers=limit)
    p = HandoverProblem.build(cor, m, syn.CATALOGUE, app="infotainment", constraints=cons)
    by_dp = solve_cpsat(p, time_limit_s=60.0)
    by_cpsat = solve_cpsat(p, time_limit_s=60.0, gap_limit=0.0, limited_dp=False)
    assert by_dp.source == "dp" and by_dp.status == "OPTIMAL"
    ev = evaluate_plan(p, by_dp.assignment)
    assert ev.feasible and ev.handovers <= limit
    assert _dwell_ok(p, by_dp.assignment)
    # CP-SAT run to the end (or to its time limit) brackets the optimum: the exact DP plan is
    # no dearer than its plan and no cheaper than its proven bound
    assert by_dp.cost <= by_cpsat.cost + 1e-9
    assert by_dp.cost >= by_cpsat.bound - 1e-5 * abs(by_dp.cost)
    if by_cpsat.status == "OPTIMAL":
        assert by_dp.cost == pytest.approx(by_cpsat.cost, rel=1e-5)  # CP-SAT's optimality gap
