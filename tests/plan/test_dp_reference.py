"""The blocked DP against a straightforward segment-by-segment DP on random routes.

The planner's DP runs its steps in blocks side by side and checks every block's start (see
:class:`commap.plan.dp._Blocks`); these routes are long enough for many blocks, with run
compression, dwell, tunnels, arrival rules and an initial network, and the plans must cost
what the plain reference finds, to 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest

from commap.plan import HandoverProblem, evaluate_plan, solve_dp
from commap.plan.dp import Weights, single_units, viterbi, viterbi_dwell
from tests.support import plan_synthetic as syn

APPS = ("telemetry", "teleoperation", "infotainment")


def _problem(seed: int, *, dwell: bool) -> HandoverProblem:
    return syn.random_problem(
        seed, dwell=dwell, segments=(150, 700), longest_tunnel=30, tunnel_room=40, longest_run=20
    )


def _reference(problem: HandoverProblem) -> float:
    """Least plan cost by a forward DP over segments and (network, last switch) states.

    A switch into ``n`` at segment ``k`` locks ``n`` until ``problem.dwell_end[k]`` unless
    ``n`` stops being allowed (a forced exit); a switch must also respect the arrival
    (``problem.switch_ok_at_end``). Without a dwell every state is free.
    """
    node, entry, switch = problem.node_cost, problem.entry_cost, problem.switch_cost
    allowed = problem.allowed
    n_seg, n_net = problem.shape
    dwell = problem.constraints.has_dwell
    dwell_end = problem.dwell_end.tolist()
    end_ok = problem.switch_ok_at_end if dwell else np.ones((n_seg, n_net, n_net), bool)
    # state: (network, segment of the last switch into it while still locked, else -1)
    states = {(n, -1): float(node[0, n]) for n in range(n_net) if allowed[0, n]}
    for i in range(1, n_seg):
        nxt: dict[tuple[int, int], float] = {}
        for (m, k), cost in states.items():
            moves = []
            if allowed[i, m]:
                moves.append(((m, -1 if k < 0 or i + 1 >= dwell_end[k] else k), node[i, m]))
            if k < 0 or i >= dwell_end[k] or not allowed[i, m]:  # free, or a forced exit
                locked = dwell and i + 1 < dwell_end[i]
                moves += [
                    ((n, i if locked else -1), node[i, n] + switch[m, n] + entry[i, n])
                    for n in range(n_net)
                    if n != m and allowed[i, n] and end_ok[i, n, m]
                ]
            for key, price in moves:
                if cost + price < nxt.get(key, np.inf):
                    nxt[key] = cost + price
        states = nxt
    return min(states.values())


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("dwell", [False, True])
def test_plans_cost_what_the_reference_finds(seed: int, dwell: bool) -> None:
    problem = _problem(300 + seed, dwell=dwell)
    result = solve_dp(problem)
    ev = evaluate_plan(problem, result.assignment[0])
    assert ev.feasible, ev.violations
    best = _reference(problem)
    assert ev.cost == pytest.approx(best, abs=1e-9)
    assert result.value[0] == pytest.approx(ev.cost, abs=1e-9)


def test_batched_weightings_match_one_at_a_time_on_long_routes() -> None:
    problem = _problem(77, dwell=True)
    c = problem.constraints
    units = single_units(problem)
    lam_mb, lam_ho = np.array([0.0, 2e-3, 0.0]), np.array([0.0, 0.05, 0.4])

    def plain(w: Weights) -> np.ndarray:
        return viterbi(units, problem.switch_cost, w).value

    def dwell(w: Weights) -> np.ndarray:
        return viterbi_dwell(units, problem.switch_cost, c.min_dwell_s, c.min_dwell_m, w).value

    for solve in (plain, dwell):
        batch = solve(Weights.of(1.0, lam_mb, lam_ho))
        one = [solve(Weights.of(1.0, lam_mb[k], lam_ho[k]))[0] for k in range(3)]
        assert batch == pytest.approx(one, abs=1e-9)
        assert len(set(np.round(batch, 6))) == 3  # the weightings do differ
