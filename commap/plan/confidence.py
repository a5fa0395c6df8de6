"""Switches the map can vouch for: a planned stretch is kept only where its gain is sure enough.

The solvers minimise the *expected* cost on the map. A switch is chosen because the map's
expected outage seconds say it saves more than it costs; among the many stretches a solver
weighs, the ones it picks are those whose gain the map over-estimates most (the optimizer's
curse: Smith and Winkler, "The Optimizer's Curse", Management Science 52(3), 2006). Over a
stretch the outage seconds are random under the map's own predictive distribution: each
segment holds ``looks`` independent looks at the field (:meth:`commap.radio.link.LinkModel.
segment_drop`), each out with the segment's outage probability ``q`` for ``duration / looks``
seconds, so a segment's outage seconds have variance ``q (1 - q) duration**2 / looks``; two
networks are taken as independent.

:func:`vouched_assignment` keeps a stretch on a network only where the seconds it saves over
the better neighbour (the network before or after it, with the switches that change) are at
least ``switch_confidence_sd`` standard deviations of that saving. Stretches that fail are
merged into that neighbour, the one with the smallest margin first, until every stretch
passes. A merge only removes switches, so the minimum dwell and the handover limit still
hold; a merge that breaks a satellite budget or enters a network not allowed there is not
made.

The default stays at 1 standard deviation. On truth seeds the published evaluation never uses
(``commap evaluate --map andorra``, seeds 100-119, the default routes, closed-loop execution;
rule fixed beforehand: least service loss, then among the values within 1 s/h of it the
fewest switches) 3 would be chosen. Service loss s/h (switches/h):

====  ============  ============
 sd    commap        oracle
====  ============  ============
 0     275.6 (45.7)  272.5 (37.5)
 1     272.2 (29.4)  268.9 (28.6)
 1.5   271.8 (27.2)  266.7 (21.2)
 2     269.9 (20.2)  265.8 (17.8)
 2.5   269.6 (19.5)  265.7 (17.1)
 3     269.7 (19.3)  265.7 (16.6)
====  ============  ============

A larger value helps the oracle too (its plan is made on the truth's expected cost): what it
merges are terrestrial stretches inside a satellite run. On the three default routes, going
from 1 to 3 removes 11 LTE stretches (median 169 s) and 4 NR stretches (median 55 s), each
entered and left by a 0.5 s terrestrial <-> LEO switch, whose expected saving over the
satellite lies within the spread of the terrestrial network's outage seconds; where the
satellite fails instead, the closed-loop rules (:mod:`commap.plan.execution`) fall back at the
cost of one switch. It is not the default because the plans it makes are a different product:
on the Andorra map the default trips ride the LEO satellite all the way with no handover
(the roaming operator and the handover announcements of a drive go), and on the real
Hamburg - Bremen drives (three LTE operators, one modem) it costs the oracle 12 / 32 s/h
(99.1 -> 111.3, 90.0 -> 122.4) while commap's own figures do not move (130.1 / 150.0 on one
modem, 48.1 / 50.6 on two, at 1, 2.5 and 3).

Examples
--------
>>> import numpy as np
>>> outage_seconds_var(np.array([[1.0, 0.0]]), np.array([2.0]), np.array([2.0])).tolist()  # half out
[[0.5, 0.0]]
"""

from __future__ import annotations

import numpy as np

from commap.arrays import FloatArray, IntArray
from commap.plan.problem import HandoverProblem

__all__ = ["outage_seconds_var", "vouched_assignment"]


def outage_seconds_var(
    outage_s: FloatArray, duration_s: FloatArray, looks: FloatArray
) -> FloatArray:
    """Variance of each segment's outage seconds under the map (module docstring).

    Parameters
    ----------
    outage_s : (S, N) expected outage seconds per segment and network.
    duration_s : (S,) segment durations.
    looks : (S,) independent looks per segment (at least one is used).
    """
    d = np.asarray(duration_s, dtype=np.float64)
    safe_d = np.where(d > 0, d, 1.0)
    q = np.clip(np.asarray(outage_s, dtype=np.float64) / safe_d[:, None], 0.0, 1.0)
    per_look = d * d / np.maximum(np.asarray(looks, dtype=np.float64), 1.0)
    return np.asarray(q * (1.0 - q) * per_look[:, None], dtype=np.float64)


class _Sums:
    """Prefix sums along the route (one row more than segments), so that a stretch's node
    cost, variance, satellite data and count of segments where a network is not allowed are
    each two lookups, and every stretch of a plan is scored at once: the merge loop costs a
    few array operations per merge however long the route (a 1,000 km plan has 20,000
    segments and hundreds of stretches)."""

    def __init__(self, problem: HandoverProblem, var: FloatArray) -> None:
        def cumulative(values: FloatArray) -> FloatArray:
            out = np.zeros((values.shape[0] + 1, values.shape[1]), dtype=np.float64)
            np.cumsum(values, axis=0, out=out[1:])
            return out

        self.node = cumulative(np.asarray(problem.node_cost, dtype=np.float64))
        self.var = cumulative(np.asarray(var, dtype=np.float64))
        self.sat_mb = cumulative(np.asarray(problem.sat_mb, dtype=np.float64))
        self.barred = cumulative((~np.asarray(problem.allowed, dtype=bool)).astype(np.float64))

    @staticmethod
    def over(table: FloatArray, i: IntArray, j: IntArray, n: IntArray) -> FloatArray:
        """Sums of column ``n`` over segments ``i..j-1``, one per stretch."""
        return np.asarray(table[j, n] - table[i, n], dtype=np.float64)


def _switches(problem: HandoverProblem, at: IntArray, m: IntArray, n: IntArray) -> FloatArray:
    """Cost of each switch ``m -> n`` at segment ``at`` (0 for none or at the route's ends)."""
    real = (m >= 0) & (n >= 0) & (m != n)
    mm, nn = np.where(real, m, 0), np.where(real, n, 0)
    row = np.minimum(at, problem.entry_cost.shape[0] - 1)  # the route's end: no switch there
    cost = problem.switch_cost[mm, nn] + problem.entry_cost[row, nn]
    return np.where(real, cost, 0.0)


def _worst_stretch(
    problem: HandoverProblem, a: IntArray, sums: _Sums, z: float
) -> tuple[int, int, int] | None:
    """The stretch whose saving falls furthest below ``z`` standard deviations, and the
    neighbour it merges into; None when every stretch is vouched for. Ties go to the first
    stretch along the route, the neighbour before it first."""
    n_seg = a.shape[0]
    cuts = np.flatnonzero(a[1:] != a[:-1]) + 1
    i, j = np.r_[0, cuts], np.r_[cuts, n_seg]
    n = a[i]
    m = np.where(i > 0, a[np.maximum(i - 1, 0)], -1)
    o = np.where(j < n_seg, a[np.minimum(j, n_seg - 1)], -1)
    over = _Sums.over
    kept = over(sums.node, i, j, n) + _switches(problem, i, m, n) + _switches(problem, j, n, o)
    margins = []
    for alt in (m, o):
        safe = np.maximum(alt, 0)
        merged = (
            over(sums.node, i, j, safe)
            + _switches(problem, i, m, alt)
            + _switches(problem, j, alt, o)
        )
        spread = np.sqrt(over(sums.var, i, j, n) + over(sums.var, i, j, safe))
        margin = (merged - kept) - z * spread
        possible = (alt >= 0) & (over(sums.barred, i, j, safe) <= 0)
        margins.append(np.where(possible & (margin < 0), margin, np.inf))
    both = np.column_stack(margins).ravel()  # stretch by stretch, the neighbour before first
    best = int(np.argmin(both))
    if not np.isfinite(both[best]):
        return None
    k, side = divmod(best, 2)
    alt_k = m[k] if side == 0 else o[k]
    return int(i[k]), int(j[k]), int(alt_k)


def vouched_assignment(
    problem: HandoverProblem, assignment: IntArray, switch_confidence_sd: float
) -> IntArray:
    """``assignment`` with the stretches the map cannot vouch for merged away.

    Parameters
    ----------
    problem : the request.
    assignment : (S,) a plan's network column per segment (a solver's optimum).
    switch_confidence_sd : standard deviations of its saving a stretch must clear (0: keep
        the assignment).

    Returns
    -------
    (S,) int array: the same plan, or one with fewer switches (deterministic).
    """
    a = np.asarray(assignment, dtype=np.int64).copy()
    if switch_confidence_sd <= 0 or a.shape[0] == 0 or (a[1:] == a[0]).all():
        return a  # nothing to merge: no switch, one stretch without a neighbour
    corridor, link = problem.corridor, problem.link
    looks = np.maximum(
        np.asarray(corridor.length_m, dtype=np.float64) / link.decorrelation_m,
        np.asarray(corridor.duration_s, dtype=np.float64) / link.decorrelation_s,
    )
    var = outage_seconds_var(problem.outage_s, corridor.duration_s, looks)
    sums = _Sums(problem, var)
    budget = problem.constraints.sat_budget_mb
    rows = np.arange(a.shape[0])
    sat_mb = float(np.asarray(problem.sat_mb, dtype=np.float64)[rows, a].sum())
    while (step := _worst_stretch(problem, a, sums, switch_confidence_sd)) is not None:
        i, j, alt = step
        n = int(a[i])  # a stretch is on one network
        merged_mb = sat_mb - float(sums.sat_mb[j, n] - sums.sat_mb[i, n])
        merged_mb += float(sums.sat_mb[j, alt] - sums.sat_mb[i, alt])
        if budget is not None and merged_mb > budget + 1e-9:
            break  # the merge would spend satellite data the budget does not have
        a[i:j] = alt
        sat_mb = merged_mb
    return a
