"""Exact dynamic programming (Viterbi) over segments x networks.

Two forward passes, both vectorised over networks and over a batch of cost weightings (so one
pass scores many Lagrange multipliers at once):

* :func:`viterbi`: no dwell. Over run-compressed units it is exact when the switch costs obey
  the triangle inequality (see :mod:`commap.plan.problem`).
* :func:`viterbi_dwell`: minimum dwell in the state, exact over single-segment units. A switch
  into ``n`` at unit ``u`` books the whole dwell block ``[u, land[u, n]]`` at once ("pending"
  values that land where the dwell ends or where ``n`` stops being allowed), so the state stays
  ``(network, free)`` and memory stays ``O(units x networks)``.

A weighting ``(alpha, beta, gamma)`` scores a plan as
``alpha * objective + beta * satellite_mb + gamma * handovers``: ``(1, 0, 0)`` is the plain
objective, ``(1, lambda_mb, lambda_ho)`` the Lagrangian of the global constraints, ``(0, 1, 0)``
the least satellite data, ``(0, 0, 1)`` the fewest handovers.

:func:`solve_dp` is the fast path for requests without global constraints;
:func:`lagrangian_search` gives lower bounds (and candidate plans) for those with them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from commap.errors import InvalidInputError
from commap.plan.problem import (
    HandoverProblem,
    Units,
    compress,
    dwell_end_index,
    next_disallowed_index,
)

__all__ = [
    "DPResult",
    "LagrangianResult",
    "Weights",
    "lagrangian_search",
    "single_units",
    "solve_dp",
    "viterbi",
    "viterbi_dwell",
]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_INF = np.inf
# Memory cap for the batched (units x weightings x networks^2) step tables, float64 elements.
_CUBE_ELEMENTS = 24_000_000


@dataclass(frozen=True)
class Weights:
    """A batch of ``L`` cost weightings (see module docstring); arrays of shape ``(L,)``."""

    alpha: FloatArray
    beta: FloatArray
    gamma: FloatArray

    @classmethod
    def of(cls, alpha: object, beta: object = 0.0, gamma: object = 0.0) -> Weights:
        """Broadcast scalars or sequences to a batch.

        Examples
        --------
        >>> Weights.of(1.0, [0.0, 1.0]).alpha.tolist()
        [1.0, 1.0]
        """
        a, b, g = np.broadcast_arrays(
            np.atleast_1d(np.asarray(alpha, dtype=np.float64)),
            np.atleast_1d(np.asarray(beta, dtype=np.float64)),
            np.atleast_1d(np.asarray(gamma, dtype=np.float64)),
        )
        if ((a < 0) | (b < 0) | (g < 0)).any():
            raise InvalidInputError("DP weights must be >= 0")
        return cls(alpha=a.copy(), beta=b.copy(), gamma=g.copy())

    def __len__(self) -> int:
        return int(self.alpha.shape[0])


@dataclass(frozen=True)
class DPResult:
    """Best plans of a batch: ``assignment`` ``(L, S)`` per segment, ``value`` ``(L,)``."""

    assignment: IntArray
    value: FloatArray


def single_units(problem: HandoverProblem) -> Units:
    """One unit per segment (exact under any constraint).

    Examples
    --------
    >>> single_units.__name__
    'single_units'
    """
    return compress(problem, max_run=1) if problem.triangle_ok else compress(problem)


def _switch_batch(switch_cost: FloatArray, w: Weights) -> FloatArray:
    """``(L, N_to, N_from)`` switch costs, +inf on the diagonal (staying is handled apart)."""
    n = switch_cost.shape[0]
    off = 1.0 - np.eye(n)
    s = w.alpha[:, None, None] * switch_cost.T[None] + w.gamma[:, None, None] * off[None]
    s[:, np.arange(n), np.arange(n)] = _INF
    return s


def _node_cube(units: Units, w: Weights) -> FloatArray:
    """``(U, L, N)`` weighted unit costs without the mask."""
    return (
        w.alpha[None, :, None] * units.node_cost[:, None, :]
        + w.beta[None, :, None] * units.sat_mb[:, None, :]
    )


def _mask(units: Units) -> FloatArray:
    return np.where(units.allowed, 0.0, _INF)


def _check_size(units: Units, w: Weights) -> None:
    n_units, n_net = units.node_cost.shape
    if n_units * len(w) * n_net * n_net > _CUBE_ELEMENTS:
        raise InvalidInputError(
            f"DP batch too large ({n_units} units x {len(w)} weightings x {n_net}^2 networks); "
            "use fewer weightings per call",
            field="weights",
        )


def viterbi(units: Units, switch_cost: FloatArray, weights: Weights | None = None) -> DPResult:
    """Best plan over ``units`` for each weighting, switches only at unit starts.

    Parameters
    ----------
    units : Units
        From :func:`commap.plan.problem.compress`.
    switch_cost : (N, N) array
        Switch costs (zero diagonal).
    weights : Weights, optional
        Batch of weightings; default the plain objective.

    Returns
    -------
    DPResult
        Per-segment assignments (expanded from units) and optimal values.

    Examples
    --------
    >>> import numpy as np
    >>> from commap.plan.problem import Units
    >>> u = Units(start=np.array([0, 1]), stop=np.array([1, 2]),
    ...           node_cost=np.array([[0.0, 1.0], [1.0, 0.0]]), entry_cost=np.zeros((2, 2)),
    ...           sat_mb=np.zeros((2, 2)), allowed=np.ones((2, 2), bool), t_s=np.zeros(2),
    ...           distance_m=np.zeros(2))
    >>> r = viterbi(u, np.array([[0.0, 0.5], [0.5, 0.0]]))
    >>> r.assignment.tolist(), r.value.tolist()
    ([[0, 1]], [0.5])
    >>> viterbi(Units(*(np.zeros(0, int),) * 2, *(np.zeros((0, 2)),) * 3,
    ...               np.zeros((0, 2), bool), np.zeros(0), np.zeros(0)),
    ...         np.zeros((2, 2))).assignment.shape
    (1, 0)
    """
    w = weights or Weights.of(1.0)
    n_units, n_net = units.node_cost.shape
    n_w = len(w)
    if n_units == 0:
        return DPResult(np.zeros((n_w, 0), dtype=np.int64), np.zeros(n_w))
    _check_size(units, w)
    cube = _node_cube(units, w)
    mask = _mask(units)
    # step[u, l, to, from]: cost of reaching `to` at unit u from `from` at u-1, node cost
    # included; the diagonal is staying.
    step = _switch_batch(switch_cost, w)[None] + (
        w.alpha[None, :, None, None] * units.entry_cost[:, None, :, None]
    )
    diag = np.arange(n_net)
    step[:, :, diag, diag] = 0.0
    step += (cube + mask[:, None, :])[:, :, :, None]
    reached = np.empty_like(step)
    value = cube[0] + mask[0]
    add, smallest = np.add, np.minimum.reduce
    for u in range(1, n_units):  # the hot loop: two numpy calls per unit
        add(value[:, None, :], step[u], out=reached[u])
        smallest(reached[u], axis=2, out=value)
    back = reached.argmin(axis=3)  # back[u, l, to] = best `from`
    ends = value.argmin(axis=1)
    out = np.stack([_backtrack(back[:, k], int(ends[k])) for k in range(n_w)])
    expanded = np.stack([units.expand(row) for row in out])
    return DPResult(expanded, value[np.arange(n_w), ends])


def _backtrack(back: IntArray, end: int) -> IntArray:
    rows = back.tolist()
    out = [0] * len(rows)
    state = end
    for u in range(len(rows) - 1, -1, -1):
        out[u] = state
        state = rows[u][state]
    return np.asarray(out, dtype=np.int64)


def viterbi_dwell(
    units: Units,
    switch_cost: FloatArray,
    min_dwell_s: float,
    min_dwell_m: float,
    weights: Weights | None = None,
) -> DPResult:
    """Best plan with a minimum dwell after every switch (exact over the given units).

    After a switch into ``n`` at unit ``u`` the plan stays on ``n`` until the dwell time and
    distance have passed (measured between unit starts), unless ``n`` stops being allowed
    earlier (a forced exit) or the route ends.

    Examples
    --------
    >>> import numpy as np
    >>> from commap.plan.problem import Units
    >>> node = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> u = Units(start=np.arange(4), stop=np.arange(1, 5), node_cost=node,
    ...           entry_cost=np.zeros((4, 2)), sat_mb=np.zeros((4, 2)),
    ...           allowed=np.ones((4, 2), bool), t_s=np.arange(4) * 2.0,
    ...           distance_m=np.arange(4) * 50.0)
    >>> sw = np.array([[0.0, 0.1], [0.1, 0.0]])
    >>> viterbi_dwell(u, sw, 0.0, 0.0).assignment.tolist()  # ping-pong is cheapest
    [[0, 1, 0, 0]]
    >>> viterbi_dwell(u, sw, 3.0, 0.0).assignment.tolist()  # 3 s dwell forbids it
    [[0, 0, 0, 0]]
    """
    w = weights or Weights.of(1.0)
    n_units, n_net = units.node_cost.shape
    n_w = len(w)
    if n_units == 0:
        return DPResult(np.zeros((n_w, 0), dtype=np.int64), np.zeros(n_w))
    _check_size(units, w)
    dwell_end = dwell_end_index(units.t_s, units.distance_m, min_dwell_s, min_dwell_m)
    land = np.minimum(dwell_end[:, None], next_disallowed_index(units.allowed)) - 1  # (U, N)
    cube = _node_cube(units, w)
    mask = _mask(units)
    prefix = np.zeros((n_units + 1, n_w, n_net))
    np.cumsum(cube, axis=0, out=prefix[1:])
    # block[u, l, n]: cost of the dwell block entered at u (the entry unit's mask is in `enter`)
    block = np.take_along_axis(prefix, (land + 1)[:, None, :], axis=0) - prefix[:-1]
    enter = _switch_batch(switch_cost, w)[None] + (
        w.alpha[None, :, None, None] * units.entry_cost[:, None, :, None]
        + mask[:, None, :, None]
    )
    stay_cost = cube + mask[:, None, :]
    lanes = np.arange(n_w * n_net)
    land_lane = np.tile(land, (1, n_w))  # (U, L*N): lane = l * N + n
    pend = np.full((n_units, n_w * n_net), _INF)
    booked = np.empty((n_units, n_w, n_net))  # value of the block entered at u
    booked[0] = _INF  # no switch into the first unit
    entering = np.empty_like(enter)
    stayed = np.empty((n_units, n_w, n_net))
    free = stay_cost[0].copy()
    stayed[0] = free
    add, smallest, minimum = np.add, np.minimum.reduce, np.minimum
    for u in range(1, n_units):
        add(free[:, None, :], enter[u], out=entering[u])
        smallest(entering[u], axis=2, out=booked[u])
        booked[u] += block[u]
        to = land_lane[u]
        pend[to, lanes] = minimum(pend[to, lanes], booked[u].ravel())
        add(free, stay_cost[u], out=stayed[u])
        minimum(pend[u].reshape(n_w, n_net), stayed[u], out=free)
    ends = free.argmin(axis=1)
    pend3 = pend.reshape(n_units, n_w, n_net)
    out = np.stack(
        [
            _backtrack_dwell(
                pend3[:, k], stayed[:, k], booked[:, k], entering[:, k], land, int(ends[k])
            )
            for k in range(n_w)
        ]
    )
    expanded = np.stack([units.expand(row) for row in out])
    return DPResult(expanded, free[np.arange(n_w), ends])


def _backtrack_dwell(
    pend: FloatArray,
    stayed: FloatArray,
    booked: FloatArray,
    entering: FloatArray,
    land: IntArray,
    end: int,
) -> IntArray:
    """Walk back: a state reached by a block came from the entry whose booked value is least
    among the entries landing there; the network before is that entry's best predecessor."""
    n_units = pend.shape[0]
    out = np.empty(n_units, dtype=np.int64)
    u, n = n_units - 1, end
    while u >= 0:
        if pend[u, n] < stayed[u, n]:
            lo = int(np.searchsorted(land[:, n], u, side="left"))
            hi = int(np.searchsorted(land[:, n], u, side="right"))
            start = lo + int(np.argmin(booked[lo:hi, n]))
            prev = int(np.argmin(entering[start, n]))
            out[start : u + 1] = n
            u, n = start - 1, prev
        else:
            out[u] = n
            u -= 1
    return out


def solve_dp(problem: HandoverProblem) -> DPResult:
    """Optimal plan for a request without global constraints (dwell and masks included).

    Runs over run-compressed units without dwell, over single segments with it.

    Raises
    ------
    InvalidInputError
        If the request carries a handover limit or a satellite budget.

    Examples
    --------
    >>> solve_dp.__name__
    'solve_dp'
    """
    c = problem.constraints
    if c.is_global:
        raise InvalidInputError(
            "the DP solver handles no handover limit or satellite budget; use solver='cpsat'",
            field="solver",
        )
    if c.has_dwell:
        return viterbi_dwell(
            single_units(problem), problem.switch_cost, c.min_dwell_s, c.min_dwell_m
        )
    return viterbi(compress(problem), problem.switch_cost)


@dataclass(frozen=True)
class LagrangianResult:
    """Outcome of :func:`lagrangian_search`.

    Attributes
    ----------
    bound : float
        Best proven lower bound on the constrained optimum (``-inf`` if none).
    lambda_ho, lambda_mb : float
        Multipliers that gave it.
    plans : (P, S) int array
        Every distinct plan the search met (feasible or not), for the caller to evaluate.
    """

    bound: float
    lambda_ho: float
    lambda_mb: float
    plans: IntArray


def lagrangian_search(
    problem: HandoverProblem,
    units: Units,
    *,
    dwell: bool,
    rounds: int = 3,
    grid: int = 6,
) -> LagrangianResult:
    """Maximise the Lagrangian dual of the handover limit and satellite budget by grid refinement.

    ``L(l_ho, l_mb) = min_plan objective + l_ho (H - K) + l_mb (MB - B)`` is a lower bound on the
    constrained optimum for every ``l >= 0``, as long as the DP is exact over ``units`` for the
    relaxed problem (run-compressed units without dwell; single segments with it).

    Parameters
    ----------
    problem : HandoverProblem
        Request with ``max_handovers`` and/or ``sat_budget_mb``.
    units : Units
        Units the DP runs over.
    dwell : bool
        Keep the minimum dwell in the DP (else it is relaxed, still a valid bound).
    rounds, grid : int
        Refinement rounds and grid points per multiplier per round.

    Examples
    --------
    >>> lagrangian_search.__name__
    'lagrangian_search'
    """
    c = problem.constraints
    k_ho = float(c.max_handovers) if c.max_handovers is not None else None
    b_mb = float(c.sat_budget_mb) if c.sat_budget_mb is not None else None
    scale_ho = max(float(problem.switch_cost.max(initial=0.0)), problem.objective.drops, 1e-6)
    scale_mb = max(problem.objective.sat_mb, 1e-6) * 10.0
    axis_ho = _axis(k_ho is not None, scale_ho, grid)
    axis_mb = _axis(b_mb is not None, scale_mb, grid)
    best = (-_INF, 0.0, 0.0)
    plans: list[IntArray] = []
    for _ in range(rounds):
        lam_ho, lam_mb = (a.ravel() for a in np.meshgrid(axis_ho, axis_mb, indexing="ij"))
        result = _run(problem, units, Weights.of(1.0, lam_mb, lam_ho), dwell)
        h, mb = _counts(problem, result.assignment)
        # absent constraints keep a zero multiplier, so their terms vanish
        bound = result.value - lam_ho * (k_ho or 0.0) - lam_mb * (b_mb or 0.0)
        k = int(np.argmax(bound))
        if bound[k] > best[0]:
            best = (float(bound[k]), float(lam_ho[k]), float(lam_mb[k]))
        plans.extend(result.assignment)
        axis_ho = _refine(axis_ho, best[1], grid) if k_ho is not None else axis_ho
        axis_mb = _refine(axis_mb, best[2], grid) if b_mb is not None else axis_mb
        log.debug("lagrangian round: bound %.6f at (%g, %g); h %s mb %s", *best, h, mb)
    unique = np.unique(np.stack(plans), axis=0) if plans else np.zeros((0, problem.shape[0]))
    return LagrangianResult(best[0], best[1], best[2], unique.astype(np.int64))


def _axis(active: bool, scale: float, grid: int) -> FloatArray:
    if not active:
        return np.zeros(1)
    return np.concatenate([[0.0], scale * np.geomspace(1e-4, 10.0, grid - 1)])


def _refine(axis: FloatArray, centre: float, grid: int) -> FloatArray:
    """A finer grid around ``centre`` between its neighbours on the current axis."""
    below = axis[axis < centre]
    above = axis[axis > centre]
    lo = float(below.max()) if below.size else 0.0
    hi = float(above.min()) if above.size else max(2.0 * centre, 1e-9)
    return np.unique(np.concatenate([[centre], np.linspace(lo, hi, grid)]))


def _run(problem: HandoverProblem, units: Units, w: Weights, dwell: bool) -> DPResult:
    c = problem.constraints
    if dwell and c.has_dwell:
        return viterbi_dwell(units, problem.switch_cost, c.min_dwell_s, c.min_dwell_m, w)
    return viterbi(units, problem.switch_cost, w)


def _counts(problem: HandoverProblem, assignment: IntArray) -> tuple[IntArray, FloatArray]:
    """Handovers and satellite MB of each plan in a ``(P, S)`` batch."""
    a = np.atleast_2d(assignment)
    h = (a[:, 1:] != a[:, :-1]).sum(axis=1)
    rows = np.arange(a.shape[1])
    mb = problem.sat_mb[rows[None, :], a].sum(axis=1)
    return h.astype(np.int64), mb
