"""Feasible plans recombined from the stretches where DP plans differ.

Lagrangian DP plans near the best multipliers (:func:`commap.plan.dp.lagrangian_search`) agree on
most of a route and differ in short stretches, each trading a little cost for fewer switches or
less satellite data. Where every plan agrees around a stretch, the cost, switches and data of a
plan are sums over the stretches, so choosing one plan's version of each stretch is a
multiple-choice knapsack with two capacities (the handover limit and the satellite budget):
a small MILP (HiGHS) whose LP relaxation has at most two fractional stretches, so its optimum
is close to the Lagrangian bound. Stretches closer together than the minimum dwell are one
stretch (a choice in one must not break the dwell of the next).

Examples
--------
>>> recombine.__name__
'recombine'
"""

from __future__ import annotations

import logging

import numpy as np

from commap.arrays import BoolArray, FloatArray, IntArray
from commap.plan.problem import HandoverProblem

__all__ = ["recombine"]

log = logging.getLogger(__name__)

_MB_EPS = 1e-9


def recombine(
    problem: HandoverProblem, plans: list[IntArray], *, time_limit_s: float = 1.0
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
        Limit of the MILP.

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
    totals = (
        float(np.count_nonzero(first[1:] != first[:-1])),
        float(problem.sat_mb[np.arange(first.shape[0]), first].sum()),
    )
    choice = _knapsack(problem, (cost, handovers, mb), totals, time_limit_s)
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


def _knapsack(
    problem: HandoverProblem,
    sums: tuple[FloatArray, FloatArray, FloatArray],
    totals: tuple[float, float],
    time_limit_s: float,
) -> IntArray | None:
    """Plan index per stretch: least total cost within the limits. ``sums``: ``(R, P)``
    cost, switches and MB per stretch and plan; ``totals``: plan 0's switches and MB."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_array, eye_array, kron, vstack

    c = problem.constraints
    cost, handovers, mb = sums
    n_reg, n_plans = cost.shape
    base = cost[:, 0]
    rows = [kron(eye_array(n_reg), np.ones((1, n_plans)), format="csr")]
    low, high = [np.ones(n_reg)], [np.ones(n_reg)]
    if c.max_handovers is not None:
        rows.append(csr_array((handovers - handovers[:, :1]).reshape(1, -1)))
        low.append(np.array([-np.inf]))
        high.append(np.array([c.max_handovers - totals[0]]))
    if c.sat_budget_mb is not None:
        rows.append(csr_array((mb - mb[:, :1]).reshape(1, -1)))
        low.append(np.array([-np.inf]))
        high.append(np.array([c.sat_budget_mb + _MB_EPS - totals[1]]))
    res = milp(
        (cost - base[:, None]).ravel(),
        constraints=LinearConstraint(
            vstack(rows, format="csr"), np.concatenate(low), np.concatenate(high)
        ),
        integrality=np.ones(n_reg * n_plans),
        bounds=Bounds(0, 1),
        options={"time_limit": max(time_limit_s, 0.01)},
    )
    if res.x is None:
        log.debug("recombination: no choice fits (%s)", res.message)
        return None
    return np.asarray(res.x.reshape(n_reg, n_plans).argmax(axis=1), dtype=np.int64)
