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
