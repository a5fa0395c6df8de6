"""Compiled inner loops of the exact DPs (numba, cached on disk).

A forward DP is sequential in its steps; numpy pays per call, so the numpy passes of
:mod:`commap.plan.dp` cut the steps into blocks that run side by side. A compiled loop pays
nothing per step and needs no blocks: one pass over ``units x networks^2`` and a walk back.
These kernels are that loop, for the plain Viterbi and for the minimum-dwell DP, over a batch of
cost weightings prepared by :mod:`commap.plan.dp` (which owns their meaning).

Without numba the same functions run as plain Python (slow; the DP then keeps its numpy passes,
:data:`COMPILED` tells which). The first call in a fresh install compiles them (2-3 s);
``cache=True`` keeps the machine code beside the module (or in the user's cache where the
install is read-only), so a later process only loads it: 1-2 s with numba's own import, paid
once per process (:func:`warm_up`, :func:`commap.plan.dp.warm_up_for`).

Examples
--------
>>> import numpy as np
>>> node = np.array([[0.0, 1.0], [1.0, 0.0]])  # two units, two networks
>>> costs = (node, np.zeros((2, 2)), np.ones((2, 2), bool))
>>> switch = np.array([[[np.inf, 0.5], [0.5, np.inf]]])  # one weighting
>>> weights = (np.ones(1), np.zeros(1))
>>> value, plan = viterbi_pass(costs, np.zeros((2, 2)), weights, switch)
>>> value.tolist(), plan.tolist()
([0.5], [[0, 1]])
"""

from __future__ import annotations

import time

import numpy as np

from commap.arrays import BoolArray, FloatArray, IntArray
from commap.compiled import COMPILED, loaded
from commap.compiled import compiled as _compiled
from commap.plan.problem import _TIME_EPS as TIME_EPS  # the dwell rule's own tolerance

__all__ = ["COMPILED", "block_ends", "dwell_pass", "loaded", "viterbi_pass", "warm_up"]


@_compiled
def viterbi_pass(
    costs: tuple[FloatArray, FloatArray, BoolArray],
    entry: FloatArray,
    weights: tuple[FloatArray, FloatArray],
    switch: FloatArray,
) -> tuple[FloatArray, IntArray]:
    """Best plan of each weighting over units.

    ``costs``: the units' ``(U, N)`` node costs, satellite MB and allowed mask; ``entry (U,
    N)``: the entry cost at each unit (unit 0 unused); ``weights``: ``(L,)`` alpha and beta
    (the unit cost is ``alpha node + beta mb``, entries cost ``alpha entry``); ``switch (L, N,
    N)``: weighted switch costs, ``+inf`` on the diagonal. Returns the optimal values ``(L,)``
    and unit plans ``(L, U)``; among equal costs staying wins, then the lowest network index.
    """
    alpha, beta = weights
    n_units, n_net = costs[0].shape
    n_w = alpha.shape[0]
    values = np.zeros(n_w)
    plans = np.zeros((n_w, n_units), dtype=np.int64)
    if n_units == 0:
        return values, plans
    stay = np.empty((n_units, n_net))
    back = np.empty((n_units, n_net), dtype=np.int16)
    value = np.empty(n_net)
    nxt = np.empty(n_net)
    node, mb, allowed = costs
    for lane in range(n_w):
        a = alpha[lane]
        for u in range(n_units):
            for n in range(n_net):
                stay[u, n] = a * node[u, n] + beta[lane] * mb[u, n] if allowed[u, n] else np.inf
        sw = switch[lane]
        for n in range(n_net):
            value[n] = stay[0, n]
        for u in range(1, n_units):
            for n in range(n_net):
                best = np.inf  # the cheapest switch into n (the diagonal is +inf)
                frm = n
                for m in range(n_net):
                    c = value[m] + sw[m, n]
                    if c < best:
                        best = c
                        frm = m
                best += a * entry[u, n]
                if value[n] <= best:  # staying wins ties
                    best = value[n]
                    frm = n
                nxt[n] = best + stay[u, n]
                back[u, n] = frm
            for n in range(n_net):
                value[n] = nxt[n]
        end = 0
        for n in range(1, n_net):
            if value[n] < value[end]:
                end = n
        values[lane] = value[end]
        net = end
        for u in range(n_units - 1, 0, -1):
            plans[lane, u] = net
            net = back[u, net]
        plans[lane, 0] = net
    return values, plans


@_compiled
def block_ends(
    t_s: FloatArray, distance_m: FloatArray, dwell: tuple[float, float], allowed: BoolArray
) -> IntArray:
    """``(U, N)``: the last unit of the dwell block entered at each unit on each network.

    The block ends before the first later unit at least the dwell time and distance on
    (:func:`commap.plan.problem.dwell_end_index`, the same comparisons) or before the first
    later unit where the network is not allowed, whichever comes first (start times and
    distances are non-decreasing, so both are one forward and one backward scan).
    """
    n_units, n_net = allowed.shape
    land = np.empty((n_units, n_net), dtype=np.int64)
    ends = np.empty(n_units, dtype=np.int64)
    by_time, by_dist = 0, 0
    for i in range(n_units):
        due_s = t_s[i] + dwell[0] - TIME_EPS
        due_m = distance_m[i] + dwell[1] - TIME_EPS
        while by_time < n_units and t_s[by_time] < due_s:
            by_time += 1
        while by_dist < n_units and distance_m[by_dist] < due_m:
            by_dist += 1
        ends[i] = max(by_time, by_dist, i + 1)
    for n in range(n_net):
        leaves = n_units  # the first unit after i where n is not allowed
        for i in range(n_units - 1, -1, -1):
            land[i, n] = min(ends[i], leaves) - 1
            if not allowed[i, n]:
                leaves = i
    return land


@_compiled
def dwell_pass(
    costs: tuple[FloatArray, FloatArray, BoolArray],
    entry: FloatArray,
    weights: tuple[FloatArray, FloatArray],
    switch: FloatArray,
    land: IntArray,
    bans: tuple[int, BoolArray],
) -> tuple[FloatArray, IntArray]:
    """Best plan of each weighting with a minimum dwell after every switch.

    ``costs``, ``entry``, ``weights`` and ``switch`` as in :func:`viterbi_pass`; ``land (U,
    N)``: the last unit of the dwell block entered at a unit; ``bans = (first, banned)`` with
    ``banned[u - first, to, from]``: switches the arrival forbids. State: the least cost of
    being on ``n`` at the end of a unit and free to switch; a switch into ``n`` at ``u`` books
    the whole block (entry, its units) and lands as free at ``land[u, n]``. Ties go to
    staying, then to the earliest entry, then to the lowest network index.
    """
    alpha, beta = weights
    ban_first, banned = bans
    n_units, n_net = costs[0].shape
    n_w = alpha.shape[0]
    values = np.zeros(n_w)
    plans = np.zeros((n_w, n_units), dtype=np.int64)
    if n_units == 0:
        return values, plans
    n_banned = banned.shape[0]
    stay = np.empty((n_units, n_net))
    prefix = np.zeros((n_units + 1, n_net))
    came_from = np.empty((n_units, n_net), dtype=np.int16)
    landed_from = np.empty((n_units, n_net), dtype=np.int64)
    pend = np.empty((n_units, n_net))
    free = np.empty(n_net)
    node, mb, allowed = costs
    for lane in range(n_w):
        a = alpha[lane]
        for u in range(n_units):  # block costs from prefix sums of the unmasked unit costs
            for n in range(n_net):
                cost = a * node[u, n] + beta[lane] * mb[u, n]
                stay[u, n] = cost if allowed[u, n] else np.inf
                prefix[u + 1, n] = prefix[u, n] + cost
        sw = switch[lane]
        pend[:] = np.inf
        landed_from[:] = -1
        for n in range(n_net):
            free[n] = stay[0, n]
        for u in range(1, n_units):
            b = u - ban_first
            ban_here = 0 <= b < n_banned  # only the last units before the arrival
            for n in range(n_net):
                if not allowed[u, n]:
                    continue  # no entry here: no block to book
                best = np.inf
                frm = 0
                for m in range(n_net):
                    if ban_here and banned[b, n, m]:
                        continue
                    c = free[m] + sw[m, n]
                    if c < best:
                        best = c
                        frm = m
                came_from[u, n] = frm
                at = land[u, n]
                booked = best + ((prefix[at + 1, n] - prefix[u, n]) + a * entry[u, n])
                if booked < pend[at, n]:
                    pend[at, n] = booked
                    landed_from[at, n] = u
            for n in range(n_net):
                stayed = free[n] + stay[u, n]
                if pend[u, n] < stayed:
                    free[n] = pend[u, n]
                else:
                    free[n] = stayed
                    landed_from[u, n] = -1  # reached by staying: no block lands here
        end = 0
        for n in range(1, n_net):
            if free[n] < free[end]:
                end = n
        values[lane] = free[end]
        net, u = end, n_units - 1
        while u > 0:
            entered = landed_from[u, net]
            if entered < 0:
                plans[lane, u] = net
                u -= 1
                continue
            for v in range(entered, u + 1):
                plans[lane, v] = net
            net = came_from[entered, net]
            u = entered - 1
        if u == 0:
            plans[lane, 0] = net
    return values, plans


def warm_up() -> float:
    """Load (or, in a fresh install, compile) every kernel now; seconds it took.

    A long-running process (the server) calls it at start, so that no request waits for it.
    Without numba it does nothing.

    Examples
    --------
    >>> warm_up() >= 0.0
    True
    """
    if not COMPILED:
        return 0.0
    start = time.perf_counter()
    costs = (np.zeros((2, 1)), np.zeros((2, 1)), np.ones((2, 1), dtype=np.bool_))
    weights, switch = (np.ones(1), np.zeros(1)), np.full((1, 1, 1), np.inf)
    viterbi_pass(costs, np.zeros((2, 1)), weights, switch)
    land = block_ends(np.zeros(2), np.zeros(2), (1.0, 0.0), costs[2])
    dwell_pass(costs, np.zeros((2, 1)), weights, switch, land, (0, np.zeros((0, 1, 1), np.bool_)))
    # the radio layer's compiled passes too: the process that plans also samples the map and
    # turns quality into outage (imported here, not with this module: a short plan imports no
    # satellite code for it)
    from commap.radio import link
    from commap.radio.layers import satellite

    satellite.warm_up_kernels()
    link.warm_up_kernels()
    return time.perf_counter() - start
