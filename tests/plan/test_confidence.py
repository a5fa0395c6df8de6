"""A planned stretch is kept only where the map can vouch for its saving."""

from __future__ import annotations

import numpy as np

from commap.networks import Network, NetworkCatalogue, NetworkKind
from commap.plan import Constraints, HandoverProblem, evaluate_plan, solve, solve_dp
from commap.plan.confidence import outage_seconds_var, vouched_assignment
from commap.radio.link import Objective
from commap.radio.quality import Quality, QualityMatrix
from commap.radio.vehicle import vehicle_setup
from tests.support import plan_synthetic as syn

A, B = (
    Network(id=i, kind=NetworkKind.TERRESTRIAL, operator=i, technology="lte", latency_ms=30.0)
    for i in ("a", "b")
)
N_SEG = 200  # 50 m at 25 m/s: 2 s per segment, one look each
LATER = slice(50, None)  # the last 300 s, where b may be better


def _column(outage_prob: np.ndarray) -> Quality:
    q = Quality.empty(N_SEG)
    q.rsrp_dbm[:] = -90.0
    q.confidence[:] = 1.0
    q.provenance[:] = 2
    q.outage_prob[:] = outage_prob  # a learned map's outage share
    return q


def _problem(a_later: float, b_later: float, sd: float = 1.0) -> HandoverProblem:
    a, b = np.full(N_SEG, 0.001), np.full(N_SEG, 0.999)
    a[LATER], b[LATER] = a_later, b_later
    return HandoverProblem.build(
        syn.corridor(N_SEG),
        QualityMatrix.from_columns(("a", "b"), [_column(a), _column(b)]),
        NetworkCatalogue([A, B]),
        objective=Objective(switch_confidence_sd=sd),
        constraints=Constraints(initial_network="a", min_dwell_s=10.0),
        vehicle=vehicle_setup("single_modem"),
    )


def test_a_small_saving_inside_the_maps_spread_is_not_worth_a_change_of_operator() -> None:
    # the map expects a out half the time and b 43 %: 21 s saved for a 10 s detach, but the
    # saving's spread over 150 coin-flip segments is 17 s
    problem = _problem(0.50, 0.43)
    optimum = solve_dp(problem).assignment[0]
    assert (optimum[1:] != optimum[:-1]).sum() == 1  # the expected-cost optimum changes
    plan = solve(problem)
    assert plan.handovers == ()
    assert "cannot vouch for" in plan.solver.detail
    assert plan.totals.cost == evaluate_plan(problem, plan.assignment).cost > plan.solver.bound
    # without the rule the plan is the optimum
    assert len(solve(_problem(0.50, 0.43, sd=0.0)).handovers) == 1


def test_a_clear_saving_keeps_its_switch() -> None:
    plan = solve(_problem(0.90, 0.05))
    assert [(h.from_network, h.to_network) for h in plan.handovers] == [("a", "b")]
    assert plan.solver.status == "OPTIMAL" and "cannot vouch" not in plan.solver.detail


def test_the_spread_is_that_of_the_outage_seconds_under_the_map() -> None:
    problem = _problem(0.50, 0.43)
    var = outage_seconds_var(problem.outage_s, problem.corridor.duration_s, np.ones(N_SEG))
    np.testing.assert_allclose(var[LATER], [[1.0, 0.43 * 0.57 * 4.0]] * 150)
    optimum = solve_dp(problem).assignment[0]
    np.testing.assert_array_equal(vouched_assignment(problem, optimum, 0.0), optimum)


def _merge_by_definition(problem: HandoverProblem, a: np.ndarray, z: float) -> np.ndarray:
    """The merge rule of the module docstring, each stretch summed segment by segment."""
    a = a.copy()
    cor, link = problem.corridor, problem.link
    looks = np.maximum(cor.length_m / link.decorrelation_m, cor.duration_s / link.decorrelation_s)
    var = outage_seconds_var(problem.outage_s, cor.duration_s, looks)

    def switch(i: int, m: int, n: int) -> float:
        ok = m >= 0 and n >= 0 and m != n
        return float(problem.switch_cost[m, n] + problem.entry_cost[i, n]) if ok else 0.0

    while True:
        cuts = np.flatnonzero(a[1:] != a[:-1]) + 1
        worst = None
        for i, j in zip(np.r_[0, cuts].tolist(), np.r_[cuts, a.size].tolist(), strict=True):
            n, m, o = int(a[i]), int(a[i - 1]) if i else -1, int(a[j]) if j < a.size else -1
            kept = problem.node_cost[i:j, n].sum() + switch(i, m, n) + switch(j, n, o)
            for alt in (m, o):
                if alt < 0 or not problem.allowed[i:j, alt].all():
                    continue
                merged = problem.node_cost[i:j, alt].sum() + switch(i, m, alt) + switch(j, alt, o)
                margin = merged - kept - z * np.sqrt(var[i:j, n].sum() + var[i:j, alt].sum())
                if margin < 0 and (worst is None or margin < worst[0]):
                    worst = (margin, i, j, alt)
        if worst is None:
            return a
        a[worst[1] : worst[2]] = worst[3]


def test_merges_equal_the_rule_summed_stretch_by_stretch() -> None:
    # the merge loop works on prefix sums; it must merge exactly what the rule says
    merged_any = 0
    for seed in range(40):
        problem = syn.random_problem(
            seed, dwell=False, segments=(60, 300), longest_tunnel=20, tunnel_room=40,
            longest_run=30,
        )  # fmt: skip
        n_seg, n_net = problem.shape
        runs = np.random.default_rng(seed).integers(0, n_net, size=n_seg // 5 + 1)
        start = np.repeat(runs, 5)[:n_seg]
        for z in (0.5, 1.0, 3.0):
            got = vouched_assignment(problem, start, z)
            np.testing.assert_array_equal(got, _merge_by_definition(problem, start, z))
            merged_any += int(not np.array_equal(got, start))
    assert merged_any > 0
