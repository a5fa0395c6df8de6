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
import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from commap.arrays import FloatArray, IntArray
from commap.errors import InvalidInputError
from commap.plan.cancel import check_stop
from commap.plan.problem import (
    HandoverProblem,
    Units,
    compress,
    dwell_end_index,
    end_switch_ok,
    next_disallowed_index,
)

__all__ = [
    "DPResult",
    "LagrangianResult",
    "Weights",
    "lagrangian_search",
    "max_batch",
    "single_units",
    "solve_dp",
    "viterbi",
    "viterbi_dwell",
]

log = logging.getLogger(__name__)


_INF = np.inf
# units between two checks of the request's stop flag (commap.plan.cancel): ~1 ms of work
STOP_CHECK_UNITS = 256
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
    """Best plans of a batch.

    Attributes
    ----------
    assignment : (L, S) int array
        Network column per segment, one row per weighting.
    value : (L,) float array
        Optimal weighted cost of each row.
    unit_assignment : (L, U) int array
        The same plans per unit.
    """

    assignment: IntArray
    value: FloatArray
    unit_assignment: IntArray


def _empty(n_w: int) -> DPResult:
    none = np.zeros((n_w, 0), dtype=np.int64)
    return DPResult(none, np.zeros(n_w), none.copy())


def single_units(problem: HandoverProblem) -> Units:
    """One unit per segment (exact under any constraint).

    Examples
    --------
    >>> single_units.__name__
    'single_units'
    """
    return compress(problem, max_run=1)


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


def max_batch(units: Units) -> int:
    """Largest batch of weightings one DP call over ``units`` may take (memory cap)."""
    n_units, n_net = units.node_cost.shape
    return max(1, _CUBE_ELEMENTS // max(n_units * n_net * n_net, 1))


def _checked_weights(units: Units, weights: Weights | None) -> Weights:
    """The weightings of a DP call (default the plain objective), within the batch size limit."""
    w = weights or Weights.of(1.0)
    n_units, n_net = units.node_cost.shape
    if n_units * len(w) * n_net * n_net > _CUBE_ELEMENTS:
        raise InvalidInputError(
            f"DP batch too large ({n_units} units x {len(w)} weightings x {n_net}^2 networks); "
            "use fewer weightings per call",
            field="weights",
        )
    return w


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
    w = _checked_weights(units, weights)
    n_units, n_net = units.node_cost.shape
    n_w = len(w)
    if n_units == 0:
        return _empty(n_w)
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
        if u % STOP_CHECK_UNITS == 0:
            check_stop("the DP")
        add(value[:, None, :], step[u], out=reached[u])
        smallest(reached[u], axis=2, out=value)
    back = np.ascontiguousarray(reached.argmin(axis=3).transpose(1, 0, 2))  # [l, u, to] -> from
    ends = value.argmin(axis=1)
    out = np.stack([_backtrack(back[k], int(ends[k])) for k in range(n_w)])
    expanded = np.stack([units.expand(row) for row in out])
    return DPResult(expanded, value[np.arange(n_w), ends], out)


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
    earlier (a forced exit). The route's end (``units.end_s``/``end_m``) counts as a switch: no
    switch within the dwell before it unless forced (see
    :func:`commap.plan.problem.end_switch_ok`).

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
    >>> import dataclasses
    >>> late = dataclasses.replace(u, node_cost=np.array([[0.0, 1.0]] * 3 + [[1.0, 0.0]]),
    ...                            end_s=8.0, end_m=200.0)
    >>> viterbi_dwell(late, sw, 0.0, 0.0).assignment.tolist()  # switch for the last step
    [[0, 0, 0, 1]]
    >>> viterbi_dwell(late, sw, 3.0, 0.0).assignment.tolist()  # 2 s before arrival: no
    [[0, 0, 0, 0]]
    """
    w = _checked_weights(units, weights)
    n_units, n_net = units.node_cost.shape
    n_w = len(w)
    if n_units == 0:
        return _empty(n_w)
    dwell_end = dwell_end_index(units.t_s, units.distance_m, min_dwell_s, min_dwell_m)
    land = np.minimum(dwell_end[:, None], next_disallowed_index(units.allowed)) - 1  # (U, N)
    cube = _node_cube(units, w)
    mask = _mask(units)
    prefix = np.zeros((n_units + 1, n_w, n_net))
    np.cumsum(cube, axis=0, out=prefix[1:])
    # block[u, l, n]: cost of the dwell block entered at u (the entry unit's mask is in `enter`)
    block = np.take_along_axis(prefix, (land + 1)[:, None, :], axis=0) - prefix[:-1]
    enter = _switch_batch(switch_cost, w)[None] + (
        w.alpha[None, :, None, None] * units.entry_cost[:, None, :, None] + mask[:, None, :, None]
    )
    at_end = end_switch_ok(
        units.t_s,
        units.distance_m,
        (units.end_s, units.end_m),
        units.allowed,
        min_dwell_s,
        min_dwell_m,
    )
    enter += np.where(at_end, 0.0, _INF)[:, None, :, :]
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
        if u % STOP_CHECK_UNITS == 0:
            check_stop("the DP")
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
    return DPResult(expanded, free[np.arange(n_w), ends], out)


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
        Best proven lower bound on the constrained optimum.
    lambda_ho, lambda_mb : float
        Multipliers that gave it.
    plans : (P, S) int array
        Every distinct plan the search met, feasible or not.
    objective, handovers, sat_mb : (P,) arrays
        Plain objective, switch count and satellite MB of each plan.
    iterations : int
        Cutting-plane iterations run.
    """

    bound: float
    lambda_ho: float
    lambda_mb: float
    plans: IntArray
    objective: FloatArray
    handovers: IntArray
    sat_mb: FloatArray
    iterations: int

    def near_best(self, tolerance: float) -> IntArray:
        """Indices of plans whose Lagrangian value at the best multipliers is within
        ``tolerance`` (relative) of the bound: the plans an optimal mix is made of."""
        c = self.objective + self.lambda_ho * self.handovers + self.lambda_mb * self.sat_mb
        best = float(c.min(initial=np.inf))
        return np.flatnonzero(c <= best + tolerance * max(abs(best), 1.0))


def lagrangian_search(
    problem: HandoverProblem,
    units: Units,
    *,
    dwell: bool = False,
    max_iter: int = 40,
    tolerance: float = 1e-6,
    deadline: float | None = None,
) -> LagrangianResult:
    """Maximise the Lagrangian dual of the handover limit and satellite budget.

    ``L(l_ho, l_mb) = min over plans of objective + l_ho (H - K) + l_mb (MB - B)`` is a lower
    bound on the constrained optimum for every ``l >= 0``, as long as the DP is exact over
    ``units`` for the relaxed problem (run-compressed units without dwell; single segments with
    it). ``L`` is concave and piecewise linear; Kelley's cutting-plane method maximises it: every
    DP plan is a cut, a small LP over the cuts proposes the next multipliers (plus the midpoint
    towards the best so far, for stability), until the LP's optimistic value meets the best
    bound found.

    Parameters
    ----------
    problem : HandoverProblem
        Request with ``max_handovers`` and/or ``sat_budget_mb``.
    units : Units
        Units the DP runs over.
    dwell : bool
        Keep the minimum dwell in the DP (else it is relaxed: still a valid bound).
    max_iter : int
        Cutting-plane iterations at most.
    tolerance : float
        Stop when the LP's value is within this relative distance of the best bound.
    deadline : float, optional
        ``time.perf_counter()`` value at which to stop early.

    Examples
    --------
    >>> lagrangian_search.__name__
    'lagrangian_search'
    """
    c = problem.constraints
    k_ho = float(c.max_handovers) if c.max_handovers is not None else 0.0
    b_mb = float(c.sat_budget_mb) if c.sat_budget_mb is not None else 0.0
    box = _box(problem, units)
    cuts = _Cuts(k_ho, b_mb)
    lam = np.zeros((1, 2))
    best_l = (-_INF, 0.0, 0.0)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (reported below)
        check_stop("the Lagrangian search")
        result = _run(problem, units, Weights.of(1.0, lam[:, 1], lam[:, 0]), dwell)
        h, mb = _unit_counts(units, result.unit_assignment)
        objective = result.value - lam[:, 0] * h - lam[:, 1] * mb
        cuts.add(result.assignment, objective, h, mb)
        bound = result.value - lam[:, 0] * k_ho - lam[:, 1] * b_mb
        k = int(np.argmax(bound))
        if bound[k] > best_l[0]:
            best_l = (float(bound[k]), float(lam[k, 0]), float(lam[k, 1]))
        proposal, optimistic = cuts.propose(box)
        if optimistic - best_l[0] <= tolerance * max(1.0, abs(best_l[0])):
            break
        if deadline is not None and time.perf_counter() > deadline:
            break
        centre = np.array([best_l[1], best_l[2]])
        lam = np.stack([proposal, 0.5 * (proposal + centre)])
    plans, objective, h, mb = cuts.arrays()
    log.debug("lagrangian bound %.6f at %s after %d iterations", best_l[0], best_l[1:], iterations)
    return LagrangianResult(best_l[0], best_l[1], best_l[2], plans, objective, h, mb, iterations)


def _box(problem: HandoverProblem, units: Units) -> tuple[float, float]:
    """Multipliers above these change nothing: no switch or MB can save more cost."""
    c = problem.constraints
    node = np.where(units.allowed, units.node_cost, np.nan)
    spread = (
        float(np.nansum(np.nanmax(node, axis=1) - np.nanmin(node, axis=1))) if len(units) else 0.0
    )
    most = (
        spread
        + float(problem.switch_cost.max(initial=0.0))
        + float(units.entry_cost.max(initial=0.0))
        + 1.0
    )
    positive = units.sat_mb[units.sat_mb > 0]
    ho = most if c.max_handovers is not None else 0.0
    mb = most / float(positive.min()) if c.sat_budget_mb is not None and positive.size else 0.0
    return ho, mb


class _Cuts:
    """Plans met so far as cuts ``t <= objective + l_ho (H - K) + l_mb (MB - B)``."""

    def __init__(self, k_ho: float, b_mb: float) -> None:
        self.k_ho, self.b_mb = k_ho, b_mb
        self.seen: dict[bytes, int] = {}
        self.plans: list[IntArray] = []
        self.rows: list[tuple[float, int, float]] = []

    def add(self, plans: IntArray, objective: FloatArray, h: IntArray, mb: FloatArray) -> None:
        for k in range(plans.shape[0]):
            key = plans[k].tobytes()
            if key not in self.seen:
                self.seen[key] = len(self.plans)
                self.plans.append(plans[k])
                self.rows.append((float(objective[k]), int(h[k]), float(mb[k])))

    def propose(self, box: tuple[float, float]) -> tuple[FloatArray, float]:
        """Maximiser of the cutting-plane model over the box, and the model's value there."""
        rows = np.asarray(self.rows)
        # variables (l_ho, l_mb, t): maximise t subject to t - l.g_i <= objective_i
        a_ub = np.column_stack(
            [-(rows[:, 1] - self.k_ho), -(rows[:, 2] - self.b_mb), np.ones(len(rows))]
        )
        res = linprog(
            c=[0.0, 0.0, -1.0],
            A_ub=a_ub,
            b_ub=rows[:, 0],
            bounds=[(0.0, box[0]), (0.0, box[1]), (None, None)],
            method="highs",
        )
        if res.status != 0:  # cannot happen with a bounded box; fall back to the origin
            return np.zeros(2), _INF
        return np.asarray(res.x[:2], dtype=np.float64), float(-res.fun)

    def arrays(self) -> tuple[IntArray, FloatArray, IntArray, FloatArray]:
        rows = np.asarray(self.rows).reshape(-1, 3)
        plans = np.stack(self.plans) if self.plans else np.zeros((0, 0), dtype=np.int64)
        return plans, rows[:, 0], rows[:, 1].astype(np.int64), rows[:, 2]


def _run(problem: HandoverProblem, units: Units, w: Weights, dwell: bool) -> DPResult:
    c = problem.constraints
    if dwell and c.has_dwell:
        return viterbi_dwell(units, problem.switch_cost, c.min_dwell_s, c.min_dwell_m, w)
    return viterbi(units, problem.switch_cost, w)


def _unit_counts(units: Units, unit_plans: IntArray) -> tuple[IntArray, FloatArray]:
    """Handovers and satellite MB of each plan of a ``(P, U)`` batch of unit plans."""
    a = np.atleast_2d(unit_plans)
    h = (a[:, 1:] != a[:, :-1]).sum(axis=1)
    mb = units.sat_mb[np.arange(a.shape[1])[None, :], a].sum(axis=1)
    return h.astype(np.int64), mb
