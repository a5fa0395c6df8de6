"""Feasible plans recombined from the stretches where DP plans differ.

Lagrangian DP plans near the best multipliers (:func:`commap.plan.dp.lagrangian_search`) agree on
most of a route and differ in short stretches, each trading a little cost for fewer switches or
less satellite data. Where every plan agrees around a stretch, the cost, switches and data of a
plan are sums over the stretches, so choosing one plan's version of each stretch is a
multiple-choice knapsack with two capacities (the handover limit and the satellite budget):
a small integer program (CP-SAT) whose LP relaxation has at most two fractional stretches, so its optimum
is close to the Lagrangian bound. Stretches closer together than the minimum dwell are one
stretch (a choice in one must not break the dwell of the next).

Examples
--------
>>> recombine.__name__
'recombine'
"""

from __future__ import annotations

import logging
import math

import numpy as np

from commap.arrays import BoolArray, FloatArray, IntArray
from commap.plan.evaluator import evaluate_plan
from commap.plan.problem import HandoverProblem

__all__ = ["recombine"]

log = logging.getLogger(__name__)

_MB_EPS = 1e-9
_MB_UNITS = 1e9  # satellite data in the knapsack: integers of a nano-MB
_COST_SCALE = 1e6  # knapsack cost units per cost unit


def recombine(
    problem: HandoverProblem,
    plans: list[IntArray],
    *,
    time_limit_s: float = 1.0,
    gap_limit: float = 0.0,
) -> IntArray | None:
    """Cheapest plan made of one of ``plans``' versions of every stretch where they differ,
    within the handover limit and satellite budget.

    Parameters
    ----------
    problem : HandoverProblem
        The request (its global constraints are the knapsack's capacities).
    plans : list of (S,) int arrays
        Per-segment plans, each meeting the dwell and the hard rules.
    time_limit_s : float
        Limit of the knapsack's solve.
    gap_limit : float
        The solve stops within this gap (relative to the plan's cost) of its own bound (0: at
        the best choice).

    Returns
    -------
    (S,) int array or None
        The plan (check it with the evaluator: dwell across stretches is kept by merging close
        stretches, not proven), or None when the plans do not differ or no choice fits.

    Examples
    --------
    >>> recombine.__name__
    'recombine'
    """
    if len(plans) < 2 or problem.shape[0] < 2:
        return None
    stack = np.stack([np.asarray(p, dtype=np.int64) for p in plans])
    differs = (stack != stack[0]).any(axis=0)
    if not differs.any():
        return None
    start, stop = _stretches(problem, differs)
    cost, handovers, mb = _stretch_sums(problem, stack, start, stop)
    first = stack[0]
    rows = np.arange(first.shape[0])
    totals = (
        float(evaluate_plan(problem, first).cost),
        float(np.count_nonzero(first[1:] != first[:-1])),
        float(problem.sat_mb[rows, first].sum()),
    )
    choice = _knapsack(problem, (cost, handovers, mb), totals, (time_limit_s, gap_limit))
    if choice is None:
        return None
    out = stack[0].copy()
    for r in range(start.shape[0]):
        out[start[r] : stop[r]] = stack[choice[r], start[r] : stop[r]]
    return out


def _stretches(problem: HandoverProblem, differs: BoolArray) -> tuple[IntArray, IntArray]:
    """``[start, stop)`` of the runs where the plans differ, runs less than a dwell apart
    merged."""
    edges = np.diff(np.concatenate([[0], differs.astype(np.int8), [0]]))
    start, stop = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if problem.constraints.has_dwell and start.shape[0] > 1:
        # the common stretch from stop[r] on must outlast a dwell before the next differing run
        gap_ok = start[1:] >= problem.dwell_end[stop[:-1]]
        keep = np.concatenate([[True], gap_ok])
        start = start[keep]
        stop = stop[np.concatenate([gap_ok, [True]])]
    return start.astype(np.int64), stop.astype(np.int64)


def _stretch_sums(
    problem: HandoverProblem, stack: IntArray, start: IntArray, stop: IntArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(R, P)`` cost, switches and satellite MB of each plan over each stretch, the
    switches into the stretch and out of it (into the common segment after) included."""
    n_plans, n_seg = stack.shape
    rows = np.arange(n_seg)
    switched = np.zeros(stack.shape, dtype=bool)
    switched[:, 1:] = stack[:, 1:] != stack[:, :-1]
    prev = np.concatenate([stack[:, :1], stack[:, :-1]], axis=1)
    step = problem.node_cost[rows, stack] + np.where(
        switched, problem.switch_cost[prev, stack] + problem.entry_cost[rows, stack], 0.0
    )
    sums = []
    for per_segment in (step, switched.astype(np.float64)):
        prefix = np.zeros((n_plans, n_seg + 2))
        np.cumsum(per_segment, axis=1, out=prefix[:, 1 : n_seg + 1])
        prefix[:, n_seg + 1] = prefix[:, n_seg]
        # segments start .. stop - 1, and the step into segment stop (if any)
        sums.append((prefix[:, stop + 1] - prefix[:, start]).T)
    mb = np.zeros((n_plans, n_seg + 1))
    np.cumsum(problem.sat_mb[rows, stack], axis=1, out=mb[:, 1:])
    return sums[0], sums[1], (mb[:, stop] - mb[:, start]).T


def _undominated(sums: tuple[FloatArray, FloatArray, FloatArray]) -> BoolArray:
    """``(R, P)``: the versions of each stretch no other version beats on cost, switches and
    MB at once (of equal ones the first); the others can be left out of the knapsack."""
    stacked = np.stack(sums, axis=-1)  # (R, P, 3)
    n_plans = stacked.shape[1]
    a, b = stacked[:, :, None, :], stacked[:, None, :, :]  # [r, j, k]: does j beat k?
    no_worse = (a <= b).all(axis=-1)
    better = (a < b).any(axis=-1) | (np.arange(n_plans)[:, None] < np.arange(n_plans)[None, :])
    beaten = (no_worse & better).any(axis=1)
    return np.asarray(~beaten, dtype=np.bool_)


def _knapsack(
    problem: HandoverProblem,
    sums: tuple[FloatArray, FloatArray, FloatArray],
    totals: tuple[float, float, float],
    limits: tuple[float, float],
) -> IntArray | None:
    """Plan index per stretch: least total cost within the limits. ``sums``: ``(R, P)``
    cost, switches and MB per stretch and plan; ``totals``: plan 0's cost, switches and MB;
    ``limits``: time limit and relative gap.

    Data goes in as integers of a nano-MB (rounded to nearest), against the budget loosened
    by the rounding's largest sum; where the choice then breaks the real budget, it is made
    again against the budget tightened by as much.
    """
    c = problem.constraints
    mb = sums[2]
    room = None
    if c.sat_budget_mb is not None:
        room = c.sat_budget_mb + _MB_EPS - (totals[2] - float(mb[:, 0].sum()))
    # first with the budget loosened by the most the rounding can add: every choice within
    # the real budget is in, so a choice that also keeps it is the best
    n_reg = mb.shape[0]
    choice = _choose(sums, totals, limits, c.max_handovers, room, -n_reg)
    if choice is None or room is None:
        return choice
    if float(mb[np.arange(n_reg), choice].sum()) > room:
        choice = _choose(sums, totals, limits, c.max_handovers, room, n_reg)
    return choice


def _choose(
    sums: tuple[FloatArray, FloatArray, FloatArray],
    totals: tuple[float, float, float],
    limits: tuple[float, float],
    max_handovers: int | None,
    room_mb: float | None,
    margin: int,
) -> IntArray | None:
    """The knapsack by CP-SAT (one worker, seeded: the same choice every time); ``margin``
    nano-MB come off the data room. Costs are integers of a millionth, rounded down."""
    from ortools.sat.python import cp_model

    cost, handovers, mb = sums
    n_reg = cost.shape[0]
    model = cp_model.CpModel()
    regions, versions = np.nonzero(_undominated(sums))
    chosen = [
        (r, k, model.new_bool_var(f"y{r}_{k}"))
        for r, k in zip(regions.tolist(), versions.tolist(), strict=True)
    ]
    by_region: list[list[cp_model.IntVar]] = [[] for _ in range(n_reg)]
    for r, _, v in chosen:
        by_region[r].append(v)
    for options in by_region:
        model.add_exactly_one(options)
    if max_handovers is not None:
        spare = max_handovers - (totals[1] - float(handovers[:, 0].sum()))
        model.add(sum(round(handovers[r, k]) * v for r, k, v in chosen) <= round(spare))
    if room_mb is not None:
        units = np.rint(mb * _MB_UNITS).astype(np.int64)
        model.add(
            sum(int(units[r, k]) * v for r, k, v in chosen)
            <= math.floor(room_mb * _MB_UNITS) - margin
        )
    scaled = np.floor((cost - cost[:, :1]) * _COST_SCALE).astype(np.int64)
    model.minimize(sum(int(scaled[r, k]) * v for r, k, v in chosen))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(limits[0], 0.01)
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = 0
    # the gap is relative to the plan's whole cost, not to the change from plan 0
    solver.parameters.absolute_gap_limit = limits[1] * abs(totals[0]) * _COST_SCALE
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        log.debug("recombination: no choice fits (%s)", solver.status_name(status))
        return None
    out = np.zeros(n_reg, dtype=np.int64)
    for r, k, v in chosen:
        if solver.boolean_value(v):
            out[r] = k
    return out
