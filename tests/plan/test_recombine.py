"""Recombined plans: the knapsack over the stretches where plans differ is solved exactly."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from commap.plan import Constraints, HandoverProblem, evaluate_plan, solve_cpsat
from commap.plan.dp import Weights, single_units, viterbi
from commap.plan.recombine import recombine
from tests.support import plan_synthetic as syn


def _problem(seed: int) -> tuple[HandoverProblem, list[np.ndarray]]:
    """A route, and DP plans at several handover and satellite prices (their limits between
    what the cheapest and the dearest plan use)."""
    rng = np.random.default_rng(seed)
    n_seg = int(rng.integers(150, 400))
    cor = syn.corridor(n_seg, speed_mps=rng.choice([14.0, 25.0], size=n_seg))
    nets = syn.random_networks(rng, int(rng.integers(3, len(syn.NETWORKS) + 1)))
    m = syn.matrix(cor, rng, networks=nets, gap_rate=0.3, run_lo=1, run_hi=8)
    free = HandoverProblem.build(cor, m, syn.CATALOGUE, app="infotainment")
    steps = np.array([0.0, 0.3, 1.0, 3.0]) * rng.uniform(0.5, 2.0)
    w = Weights.of(1.0, 0.1 * steps, steps)
    plans = list(viterbi(single_units(free), free.switch_cost, w).assignment)
    used = [evaluate_plan(free, p) for p in plans]
    h = sorted(ev.handovers for ev in used)
    mb = sorted(ev.sat_mb for ev in used)
    cons = Constraints(max_handovers=int(np.mean(h[1:3])), sat_budget_mb=float(np.mean(mb[1:3])))
    return dataclasses.replace(free, constraints=cons), plans


def _stretches(plans: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    differs = (np.stack(plans) != plans[0]).any(axis=0)
    edges = np.diff(np.concatenate([[0], differs.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _best_choice(problem: HandoverProblem, plans: list[np.ndarray]) -> float:
    """Least feasible cost over every way to pick one plan's version of each stretch."""
    stack = np.stack(plans)
    start, stop = _stretches(plans)
    best = np.inf
    for choice in itertools.product(range(len(plans)), repeat=len(start)):
        plan = stack[0].copy()
        for k, a, b in zip(choice, start, stop, strict=True):
            plan[a:b] = stack[k, a:b]
        ev = evaluate_plan(problem, plan)
        if ev.feasible:
            best = min(best, ev.cost)
    return best


@pytest.mark.parametrize("seed", range(30))
def test_recombination_is_the_best_choice_of_stretches(seed: int) -> None:
    problem, plans = _problem(seed)
    while len(plans) > 2 and len(plans) ** len(_stretches(plans)[0]) > 3000:
        plans = plans[:-1]  # keep the enumeration small
    best = _best_choice(problem, plans)
    plan = recombine(problem, plans)
    if not np.isfinite(best) or len(_stretches(plans)[0]) == 0:
        assert plan is None
        return
    assert plan is not None
    ev = evaluate_plan(problem, plan)
    assert ev.feasible, ev.violations
    assert ev.cost == pytest.approx(best, abs=1e-9)


def test_most_of_these_routes_have_stretches_to_choose() -> None:
    counts = [len(_stretches(_problem(seed)[1])[0]) for seed in range(30)]
    assert sum(c >= 1 for c in counts) >= 20
    assert sum(c >= 3 for c in counts) >= 8


def test_plans_that_do_not_differ_give_nothing() -> None:
    problem, plans = _problem(0)
    assert recombine(problem, [plans[0], plans[0].copy()]) is None
    assert recombine(problem, plans[:1]) is None


def test_long_constrained_route_is_planned_within_a_tenth_of_a_percent() -> None:
    # the planner benchmark's route, shortened: dwell, satellite budget and handover limit at
    # 80 % of what the free plan uses; the gap is to a bound valid for the whole problem
    from bench.bench_plan import synthetic_corridor

    cor, matrix, catalogue = synthetic_corridor(n_seg=3000, seed=1)
    dwell = Constraints(min_dwell_s=10.0)
    free = HandoverProblem.build(cor, matrix, catalogue, app="infotainment", constraints=dwell)
    ref = evaluate_plan(free, solve_cpsat(free).assignment)
    cons = dataclasses.replace(
        dwell, max_handovers=int(0.8 * ref.handovers), sat_budget_mb=round(0.8 * ref.sat_mb, 1)
    )
    problem = dataclasses.replace(free, constraints=cons)
    res = solve_cpsat(problem, time_limit_s=30.0, seed=0, num_workers=2, gap_limit=1e-3)
    ev = evaluate_plan(problem, res.assignment)
    assert ev.feasible, ev.violations
    assert res.gap <= 1e-3
    assert res.bound <= res.cost + 1e-9
