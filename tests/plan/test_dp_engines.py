"""The compiled DP passes against the blocked numpy passes, on random routes.

Both are exact, so every plan they return costs the same to 1e-9 (and what the evaluator
finds), with and without run compression (switch costs that break the triangle inequality),
dwell, arrival rules, batches of weightings and the handover limit in the state. Without numba
the compiled passes run as plain Python: the comparison holds either way.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from commap.errors import InvalidInputError
from commap.plan import HandoverProblem, compress, evaluate_plan, kernels, solve_dp
from commap.plan.dp import DPResult, Weights, single_units, viterbi, viterbi_dwell, viterbi_limited
from commap.plan.problem import dwell_end_index, next_disallowed_index
from tests.support import plan_synthetic as syn

APPS = ("telemetry", "teleoperation", "infotainment")


def _problem(seed: int, *, dwell: bool) -> HandoverProblem:
    return syn.random_problem(
        seed,
        dwell=dwell,
        segments=(40, 260),
        longest_tunnel=15,
        tunnel_room=20,
        longest_run=12,
        vary_reregistration=True,
    )


def _weights(rng: np.random.Generator) -> Weights:
    return Weights.of(1.0, rng.uniform(0.0, 0.05, 3) * [0, 1, 1], rng.uniform(0.0, 2.0, 3))


def _same_costs(problem: HandoverProblem, w: Weights, fast: DPResult, ref: DPResult) -> None:
    """Both passes find the same optimum per weighting, and each plan costs its value."""
    assert fast.value == pytest.approx(ref.value, abs=1e-9)
    for k, plan in enumerate(fast.assignment):
        ev = evaluate_plan(problem, plan)
        weighted = w.alpha[k] * ev.cost + w.beta[k] * ev.sat_mb + w.gamma[k] * ev.handovers
        assert weighted == pytest.approx(float(fast.value[k]), abs=1e-9)


@pytest.mark.parametrize("seed", range(40))
def test_plain_passes_agree(seed: int) -> None:
    problem = _problem(5000 + seed, dwell=False)
    w = _weights(np.random.default_rng(seed))
    for units in (compress(problem), single_units(problem)):
        fast = viterbi(units, problem.switch_cost, w, engine="compiled")
        ref = viterbi(units, problem.switch_cost, w, engine="numpy")
        _same_costs(problem, w, fast, ref)
        for plan in fast.assignment:
            assert evaluate_plan(problem, plan).feasible


@pytest.mark.parametrize("seed", range(40))
def test_dwell_passes_agree(seed: int) -> None:
    problem = _problem(6000 + seed, dwell=True)
    c = problem.constraints
    units = single_units(problem)
    w = _weights(np.random.default_rng(seed))
    fast = viterbi_dwell(
        units, problem.switch_cost, c.min_dwell_s, c.min_dwell_m, w, engine="compiled"
    )
    ref = viterbi_dwell(units, problem.switch_cost, c.min_dwell_s, c.min_dwell_m, w, engine="numpy")
    _same_costs(problem, w, fast, ref)
    for plan in fast.assignment:  # every weighting's plan keeps the dwell and the arrival rule
        assert evaluate_plan(problem, plan).feasible


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("dwell", [False, True])
def test_handover_limit_passes_agree(seed: int, dwell: bool) -> None:
    free = _problem(7000 + seed, dwell=dwell)
    c = free.constraints
    used = evaluate_plan(free, solve_dp(free).assignment[0]).handovers
    limit = max(used // 2, 0)
    p = dataclasses.replace(free, constraints=dataclasses.replace(c, max_handovers=limit))
    units = single_units(p) if dwell else compress(p)
    runs = [
        viterbi_limited(units, p.switch_cost, limit, c.min_dwell_s, c.min_dwell_m, engine=e)
        for e in ("compiled", "numpy")
    ]
    assert runs[0].value[0] == pytest.approx(runs[1].value[0], abs=1e-9)
    if np.isfinite(runs[0].value[0]):
        ev = evaluate_plan(p, runs[0].assignment[0])
        assert ev.feasible, ev.violations
        assert ev.cost == pytest.approx(float(runs[0].value[0]), abs=1e-9)


def test_unknown_engine_is_refused() -> None:
    problem = _problem(1, dwell=False)
    with pytest.raises(InvalidInputError):
        viterbi(compress(problem), problem.switch_cost, engine="fortran")


@pytest.mark.parametrize("seed", range(20))
def test_block_ends_match_the_dwell_rule(seed: int) -> None:
    problem = _problem(8000 + seed, dwell=True)
    c = problem.constraints
    units = single_units(problem)
    dwell_end = dwell_end_index(units.t_s, units.distance_m, c.min_dwell_s, c.min_dwell_m)
    expected = np.minimum(dwell_end[:, None], next_disallowed_index(units.allowed)) - 1
    land = kernels.block_ends(
        units.t_s, units.distance_m, (c.min_dwell_s, c.min_dwell_m), units.allowed
    )
    np.testing.assert_array_equal(land, expected)
    assert (land >= np.arange(len(units))[:, None]).all()  # a block holds its entry unit
