"""Lagrangian bounds: never above the constrained optimum; the limit in the state tightens."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from commap.plan import Constraints, HandoverProblem, evaluate_plan, solve_dp
from commap.plan.dp import lagrangian_search, single_units
from tests.support import plan_synthetic as syn


def _problem(seed: int) -> HandoverProblem:
    rng = np.random.default_rng(seed)
    n_seg, n_net = int(rng.integers(3, 7)), int(rng.integers(2, 4))
    cor, m = syn.random_instance(rng, n_seg, n_net)
    dwell = float(rng.choice([0.0, 3.0]))
    free = HandoverProblem.build(
        cor, m, syn.CATALOGUE, app="infotainment", constraints=Constraints(min_dwell_s=dwell)
    )
    used = evaluate_plan(free, solve_dp(free).assignment[0])
    cons = Constraints(
        min_dwell_s=dwell,
        max_handovers=max(used.handovers - 1, 0),
        sat_budget_mb=round(float(rng.uniform(0.3, 1.0)) * used.sat_mb, 3),
    )
    return dataclasses.replace(free, constraints=cons)


@pytest.mark.parametrize("seed", range(60))
def test_bounds_hold_and_the_limit_in_the_state_tightens(seed: int) -> None:
    p = _problem(9000 + seed)
    best, _ = syn.brute_force(p)
    units = single_units(p)
    relaxed = lagrangian_search(p, units, dwell=True)
    exact_limit = lagrangian_search(p, units, dwell=True, limit_in_state=True)
    if not np.isfinite(best):
        return  # nothing to bound
    scale = max(1.0, abs(best))
    assert relaxed.bound <= best + 1e-9 * scale
    assert exact_limit.bound <= best + 1e-9 * scale
    assert exact_limit.bound >= relaxed.bound - 1e-6 * scale
    for k in range(len(exact_limit.handovers)):  # every plan it met keeps the limit
        assert exact_limit.handovers[k] <= (p.constraints.max_handovers or 0)


def test_the_limit_in_the_state_is_strictly_tighter_on_some_routes() -> None:
    tighter = 0
    for seed in range(60):
        p = _problem(9000 + seed)
        units = single_units(p)
        relaxed = lagrangian_search(p, units, dwell=True).bound
        exact_limit = lagrangian_search(p, units, dwell=True, limit_in_state=True).bound
        tighter += exact_limit > relaxed + 1e-9
    assert tighter >= 1
