"""Exact dynamic programming (Viterbi) over segments x networks.

Two forward passes, both vectorised over networks and over a batch of cost weightings (so one
pass scores many Lagrange multipliers at once):

* :func:`viterbi`: no dwell. Over run-compressed units it is exact when the switch costs obey
  the triangle inequality (see :mod:`commap.plan.problem`).
* :func:`viterbi_dwell`: minimum dwell in the state, exact over single-segment units. A switch
  into ``n`` at unit ``u`` books the whole dwell block ``[u, land[u, n]]`` at once ("pending"
  values that land where the dwell ends or where ``n`` stops being allowed), so the state stays
  ``(network, free)`` and memory stays ``O(units x networks)``.
* :func:`viterbi_limited`: a handover limit ``K`` in the state (network, switches so far), with
  or without dwell: exact for the limit, at about ``K`` times the work of the dwell pass (which
  moves each switch one layer up itself), ``(K + 1)^2`` times that of :func:`viterbi`.

A weighting ``(alpha, beta, gamma)`` scores a plan as
``alpha * objective + beta * satellite_mb + gamma * handovers``: ``(1, 0, 0)`` is the plain
objective, ``(1, lambda_mb, lambda_ho)`` the Lagrangian of the global constraints, ``(0, 1, 0)``
the least satellite data, ``(0, 0, 1)`` the fewest handovers.

:func:`solve_dp` is the fast path for requests without global constraints;
:func:`viterbi_limited` decides those with a handover limit alone where it fits;
:func:`lagrangian_search` gives lower bounds (and candidate plans) for the others.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from commap.arrays import BoolArray, FloatArray, IntArray
from commap.errors import InvalidInputError
from commap.plan import kernels
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
    "viterbi_limited",
    "warm_up_for",
]

log = logging.getLogger(__name__)


_INF = np.inf
# units between two checks of the request's stop flag (commap.plan.cancel): ~1 ms of work
STOP_CHECK_STEPS = 16  # blocked steps between stop checks (each advances every block)
# Memory cap for the batched (units x weightings x networks^2) step tables, float64 elements.
_CUBE_ELEMENTS = 24_000_000
# Largest units x (networks x (limit + 1))^2 the handover-limit DP takes on: about 0.1 s on one
# core (656 segments, 7 networks, limit 21); larger requests go to the Lagrangian search and
# CP-SAT. Below _CUBE_ELEMENTS, which the passes check against the same product.
LIMITED_DP_ELEMENTS = 16_000_000


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


def viterbi(
    units: Units,
    switch_cost: FloatArray,
    weights: Weights | None = None,
    *,
    engine: str = "auto",
) -> DPResult:
    """Best plan over ``units`` for each weighting, switches only at unit starts.

    Parameters
    ----------
    units : Units
        From :func:`commap.plan.problem.compress`.
    switch_cost : (N, N) array
        Switch costs (zero diagonal).
    weights : Weights, optional
        Batch of weightings; default the plain objective.
    engine : {"auto", "compiled", "numpy"}
        The compiled pass (:mod:`commap.plan.kernels`), the blocked numpy pass, or
        (``auto``) the compiled one where numba is installed and loaded (the server loads it
        at start; a constrained solve on a long route does too) or worth loading for this
        pass alone. Both are exact; among plans of equal cost they may pick different ones.

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
    if _compiled(engine, n_units * n_net * n_net * n_w):
        check_stop("the DP")
        value, plans = kernels.viterbi_pass(
            _raw_costs(units), units.entry_cost, (w.alpha, w.beta), _lane_switch(switch_cost, w)
        )
        return DPResult(np.stack([units.expand(row) for row in plans]), value, plans)
    cube = _node_cube(units, w)
    stay = (cube + _mask(units)[:, None, :]).transpose(0, 2, 1)  # (U, N, L)
    blocks = _Blocks.plan(n_units - 1, n_w)
    # steps[row, from, to, lane]: cost of reaching `to` from `from` at that step (unit m + 1),
    # node cost included; the diagonal is staying. Padding steps: staying is free, nothing else.
    stays = blocks.split(stay[1:], 0.0)  # (rows, N, lanes)
    entries = blocks.split(units.entry_cost[1:, :, None] * w.alpha, _INF)
    switch = _switch_table(switch_cost, w)
    switch_lanes = np.broadcast_to(
        switch[:, :, None, :], (n_net, n_net, blocks.n_blocks, n_w)
    ).reshape(n_net, n_net, blocks.lanes)
    steps = switch_lanes[None] + (entries + stays)[:, None, :, :]
    diag = np.arange(n_net)
    steps[:, diag, diag, :] = stays
    state = blocks.first_state(stay[0])
    if blocks.warm == 0:
        state = blocks.settle_start(state)
    reached = np.empty((blocks.rows, n_net, n_net, blocks.lanes))
    add, smallest, warm = np.add, np.minimum.reduce, blocks.warm

    def run(steps: FloatArray, reached: FloatArray, value: FloatArray, first: int) -> FloatArray:
        for k in range(first, blocks.rows):  # the hot loop: two numpy calls per step
            if (k - first) % STOP_CHECK_STEPS == 0:
                check_stop("the DP")
            add(value[:, None, :], steps[k], out=reached[k])
            value = smallest(reached[k], axis=0)
            if k == warm - 1:
                value = blocks.settle_start(value)
        return value

    redo = blocks.next_round(run(steps, reached, state, 0))
    while redo.size:  # lanes that started off: again, from the end of the block before
        lane = blocks.lanes_to_run(redo)
        again = reached[..., lane]
        end = run(steps[..., lane], again, blocks.start[:, lane], warm)
        if isinstance(lane, np.ndarray):  # a gathered copy: put the results back
            reached[..., lane] = again
        redo = blocks.next_round(end, lane)
    back = blocks.join(reached[blocks.warm :].argmin(axis=1))  # [m, to, l] -> from
    total, ends = blocks.total()
    out = np.stack([_backtrack(back[:, :, k], int(ends[k])) for k in range(n_w)])
    expanded = np.stack([units.expand(row) for row in out])
    return DPResult(expanded, total, out)


_ENGINES = ("auto", "compiled", "numpy")
# Units x networks^2 x weightings from which one numpy pass (about 50 ns a cell) takes longer
# than importing numba and loading the kernels' cached machine code (about 1.5 s).
WORTH_LOADING_CELLS = 30_000_000


def _raw_costs(units: Units) -> tuple[FloatArray, FloatArray, BoolArray]:
    """The units' node costs, satellite MB and allowed mask, as the kernels take them."""
    return (
        np.ascontiguousarray(units.node_cost, dtype=np.float64),
        np.ascontiguousarray(units.sat_mb, dtype=np.float64),
        np.ascontiguousarray(units.allowed, dtype=np.bool_),
    )


def _lane_switch(switch_cost: FloatArray, w: Weights) -> FloatArray:
    """``(L, N_from, N_to)`` weighted switch costs (the kernels' layout)."""
    return np.ascontiguousarray(_switch_table(switch_cost, w).transpose(2, 0, 1))


def _compiled(engine: str, cells: int) -> bool:
    """True when a pass of ``cells`` (units x networks^2 x weightings) runs the compiled
    kernel (``engine`` as in :func:`viterbi`). ``auto`` takes it where numba is installed and
    its machine code is loaded, or where this pass alone would take the numpy passes longer
    than loading it."""
    if engine not in _ENGINES:
        raise InvalidInputError(f"engine must be one of {_ENGINES}", field="engine")
    if engine == "auto":
        return kernels.COMPILED and (kernels.loaded() or cells >= WORTH_LOADING_CELLS)
    return engine == "compiled"


def warm_up_for(units: Units, passes: int) -> None:
    """Load the compiled kernels when ``passes`` DP passes over ``units`` would take the
    numpy passes longer than loading them (a constrained solve runs dozens).

    Examples
    --------
    >>> warm_up_for.__name__
    'warm_up_for'
    """
    n_units, n_net = units.node_cost.shape
    if kernels.COMPILED and n_units * n_net * n_net * passes >= WORTH_LOADING_CELLS:
        kernels.warm_up()


def _switch_table(switch_cost: FloatArray, w: Weights) -> FloatArray:
    """``(N_from, N_to, L)`` weighted switch costs, +inf on the diagonal (staying is apart)."""
    n = switch_cost.shape[0]
    off = 1.0 - np.eye(n)
    s = switch_cost[:, :, None] * w.alpha + off[:, :, None] * w.gamma
    s[np.arange(n), np.arange(n), :] = _INF
    return s


def _identity_step(n_net: int) -> FloatArray:
    """A padding step: staying costs nothing, switching is impossible."""
    step = np.full((n_net, n_net, 1), _INF)
    step[np.arange(n_net), np.arange(n_net), 0] = 0.0
    return step


class _Blocks:
    """The DP's steps cut into blocks that run side by side, each block a numpy lane.

    A forward DP is sequential in its steps, and numpy pays per call; so the ``M`` steps are
    cut into ``B`` blocks of ``K`` steps and one numpy call advances every block by a step
    (lane ``b * L + l``: block ``b``, weighting ``l``). A block needs the state at its start,
    the end state of the block before. In min-plus algebra a state matters only up to a
    constant (values are its entries plus path costs), and a DP forgets where it started
    within a few dozen steps, once every state's best path passes through one state. So:

    1. the first round starts each block ``W`` steps early (its *warm-up*, the last steps of
       the block before) from all-zero values: by the block's own first step its state is,
       up to a constant, the true one;
    2. every start (less its least value, the ``shift``) is checked against the end of the
       block before (also less its least value); the blocks where one differs by more than
       ``tol`` run again from the ends before them, and so on. Block 0 starts from the
       first unit, so the first block that runs again has an exact start: every round
       settles at least one more block, and the result is exact in every case.

    A start that differs from the truth by at most ``tol`` changes any plan's cost by at
    most ``tol`` at each block border: the plan found is within ``2 B tol`` of the optimum,
    and ``tol = 1e-11 / B``. The plan's value is the sum of the shifts and the last block's
    least end value.
    """

    def __init__(self, n_steps: int, n_w: int, per_block: int, warm: int) -> None:
        self.n_steps, self.n_w, self.per_block, self.warm = n_steps, n_w, per_block, warm
        self.n_blocks = max(1, -(-n_steps // per_block))
        self.rows = warm + per_block
        self.lanes = self.n_blocks * n_w
        self.tol = 1e-11 / self.n_blocks
        self.shift = np.zeros(self.lanes)
        self.start = np.empty((0, self.lanes))
        self.end = np.empty((0, self.lanes))
        # the dwell DP's pending values ``(D, N, lanes)`` cross block borders with the state
        self.start_extra: FloatArray | None = None
        self.end_extra: FloatArray | None = None

    @classmethod
    def plan(cls, n_steps: int, n_w: int, min_len: int = 1) -> _Blocks:
        """About ``sqrt(M)`` steps per block (at least ``min_len``), warm-ups of half a
        block.

        Examples
        --------
        >>> b = _Blocks.plan(2789, 1)
        >>> b.per_block, b.n_blocks, b.warm
        (53, 53, 27)
        >>> b = _Blocks.plan(5, 2)
        >>> b.per_block, b.n_blocks, b.warm, b.lanes
        (5, 1, 0, 2)
        """
        per_block = max(min_len, _MIN_BLOCK, int(np.ceil(np.sqrt(n_steps))))
        per_block = max(1, min(per_block, max(n_steps, min_len)))
        n_blocks = max(1, -(-n_steps // per_block))
        warm = 0 if n_blocks == 1 else -(-per_block // 2)
        return cls(n_steps, n_w, per_block, warm)

    def split(self, x: NDArray[Any], fill: Any) -> NDArray[Any]:
        """``(M, *inner, L)`` in step order -> ``(W + K, *inner, B * L)``.

        Row ``W + k`` of block ``b`` is step ``b * K + k``; rows ``0 .. W - 1`` repeat the
        block before's last steps (the warm-up). Padding (before step 0, after step M - 1)
        holds ``fill``, broadcast to ``(*inner, L)``.
        """
        inner, n_w = x.shape[1:-1], x.shape[-1]
        k, w, b = self.per_block, self.warm, self.n_blocks
        padded = np.empty((w + b * k, *inner, n_w), dtype=x.dtype)
        padded[:w] = fill
        padded[w : w + self.n_steps] = x
        padded[w + self.n_steps :] = fill
        index = np.arange(b)[:, None] * k + np.arange(self.rows)[None, :]
        order = (1, *range(2, 2 + len(inner)), 0, 2 + len(inner))
        return np.ascontiguousarray(padded[index].transpose(order)).reshape(
            self.rows, *inner, b * n_w
        )

    def join(self, y: NDArray[Any]) -> NDArray[Any]:
        """Inverse of :meth:`split` without the warm-up rows: ``(K, *inner, B * L)`` ->
        ``(M, *inner, L)``."""
        inner = y.shape[1:-1]
        split = y.reshape(self.per_block, *inner, self.n_blocks, self.n_w)
        k = len(inner)
        order = (1 + k, 0, *range(1, 1 + k), 2 + k)
        return split.transpose(order).reshape(-1, *inner, self.n_w)[: self.n_steps]

    def step_at(self, m: int, lane: int) -> tuple[int, int]:
        """``(row, lane)`` of step ``m`` of weighting ``lane`` in the split tables."""
        return self.warm + m % self.per_block, (m // self.per_block) * self.n_w + lane

    def places(self, step: IntArray) -> list[tuple[IntArray, IntArray, BoolArray]]:
        """``(row, block, which)`` of steps in the split tables: every step's own place, and
        the warm-up copies in the next block of those (``which``) that have one."""
        at, block = step % self.per_block, step // self.per_block
        back = at - (self.per_block - self.warm)
        copy = (back >= 0) & (block + 1 < self.n_blocks)
        return [
            (self.warm + at, block, np.ones(step.shape, bool)),
            (back[copy], block[copy] + 1, copy),
        ]

    def first_state(self, state0: FloatArray) -> FloatArray:
        """``(N, lanes)`` state before the first row: block 0 from the first unit, every other
        block from zeros (its warm-up does the rest)."""
        state = np.zeros((state0.shape[0], self.lanes))
        state[:, : self.n_w] = state0
        return state

    def settle_start(self, state: FloatArray, extra: FloatArray | None = None) -> FloatArray:
        """Round 1, end of the warm-ups: normalise every block's state (block 0's constant
        goes into its shift) and keep it as the block's start; ``extra`` is normalised in
        place and kept too."""
        least = _least(state)
        state = state - least
        self.shift[: self.n_w] = least[: self.n_w]
        self.start = state.copy()
        if extra is not None:
            extra -= least
            self.start_extra = extra.copy()
            self.end_extra = np.full_like(extra, _INF)
        self.end = np.empty_like(state)
        return state

    def next_round(
        self,
        end: FloatArray,
        lanes: IntArray | slice | None = None,
        extra_end: FloatArray | None = None,
    ) -> IntArray:
        """Record the end states of ``lanes`` (default all); give every lane whose start is
        off the end of the block before that end as its start, and return those lanes (to run
        again; empty when every start holds)."""
        n_w = self.n_w
        at = slice(None) if lanes is None else lanes
        self.end[:, at] = end
        if self.end_extra is not None and extra_end is not None:
            self.end_extra[:, :, at] = extra_end
        if self.lanes == n_w:
            return np.zeros(0, dtype=np.int64)
        prev = self.end[:, :-n_w]
        least = _least(prev)
        proposal = prev - least
        self.shift[n_w:] = least
        off = _differs(proposal, self.start[:, n_w:], self.tol).any(axis=0)
        extra = None
        if self.start_extra is not None and self.end_extra is not None:
            extra = self.end_extra[:, :, :-n_w] - least
            off |= _differs(extra, self.start_extra[:, :, n_w:], self.tol).any(axis=(0, 1))
        redo = np.flatnonzero(off) + n_w
        self.start[:, redo] = proposal[:, redo - n_w]
        if extra is not None and self.start_extra is not None:
            self.start_extra[:, :, redo] = extra[:, :, redo - n_w]
        return redo

    def lanes_to_run(self, redo: IntArray) -> IntArray | slice:
        """The lanes a round runs: ``redo`` gathered when they are few, else every lane from
        the first of them on (views of the tables, no copies)."""
        if redo.size * 4 > self.lanes:
            return slice(int(redo[0]), None)
        return redo

    def offsets(self) -> FloatArray:
        """``(lanes,)``: what turns each block's values into values from the route's start."""
        return np.cumsum(self.shift.reshape(self.n_blocks, self.n_w), axis=0).ravel()

    def total(self) -> tuple[FloatArray, IntArray]:
        """The optimal value of each weighting and its best last state."""
        last = self.end[:, -self.n_w :]
        ends = last.argmin(axis=0)
        value = self.shift.reshape(self.n_blocks, self.n_w).sum(axis=0)
        return value + last[ends, np.arange(self.n_w)], ends


_MIN_BLOCK = 16


def _least(state: FloatArray) -> FloatArray:
    """Least value per lane over the first axis (0 where every value is infinite)."""
    least = state.min(axis=0)
    return np.where(np.isfinite(least), least, 0.0)


def _differs(a: FloatArray, b: FloatArray, tol: float) -> BoolArray:
    """Where ``a`` and ``b`` differ by more than ``tol`` (equal infinities agree)."""
    with np.errstate(invalid="ignore"):
        return ~((a == b) | (np.abs(a - b) <= tol))


def _backtrack(back: IntArray, end: int) -> IntArray:
    """Walk the back pointers ``back[m, to]`` (``from`` at unit ``m`` for ``to`` at ``m + 1``)
    from ``end`` at the last unit, one jump per switch."""
    n_steps, n_net = back.shape
    steps = np.arange(n_steps)[:, None]
    switched = np.where(back != np.arange(n_net)[None, :], steps, -1)
    last = np.maximum.accumulate(switched, axis=0) if n_steps else switched
    out = np.empty(n_steps + 1, dtype=np.int64)
    state, m = end, n_steps - 1
    while m >= 0:
        j = int(last[m, state])
        out[j + 1 : m + 2] = state
        if j < 0:
            return out
        state, m = int(back[j, state]), j - 1
    out[0] = state
    return out


def viterbi_dwell(
    units: Units,
    switch_cost: FloatArray,
    min_dwell_s: float,
    min_dwell_m: float,
    weights: Weights | None = None,
    *,
    layers: int | None = None,
    engine: str = "auto",
) -> DPResult:
    """Best plan with a minimum dwell after every switch (exact over the given units).

    After a switch into ``n`` at unit ``u`` the plan stays on ``n`` until the dwell time and
    distance have passed (measured between unit starts), unless ``n`` stops being allowed
    earlier (a forced exit). The route's end (``units.end_s``/``end_m``) counts as a switch: no
    switch within the dwell before it unless forced (see
    :func:`commap.plan.problem.end_switch_ok`).

    With ``layers`` given the units' columns are ``layers`` copies of the ``N`` networks of
    ``switch_cost`` (column ``k * N + n``, the same rows in every copy) and a switch leads from
    copy ``k`` to copy ``k + 1`` only (:func:`viterbi_limited`); the pass then costs
    ``layers - 1`` times an ``N``-network one, not ``layers^2`` times (the compiled pass,
    ``engine`` as in :func:`viterbi`, takes the whole layered switch table).

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
    base = switch_cost.shape[0]  # networks per layer
    if base * (layers or 1) != n_net:
        raise InvalidInputError(
            f"{n_net} unit columns are not {layers} layers of {base} networks", field="layers"
        )
    if n_units == 0:
        return _empty(n_w)
    if _compiled(engine, n_units * n_net * n_net * n_w):
        return _dwell_compiled(units, switch_cost, (min_dwell_s, min_dwell_m), w, layers)
    dwell_end = dwell_end_index(units.t_s, units.distance_m, min_dwell_s, min_dwell_m)
    land = np.minimum(dwell_end[:, None], next_disallowed_index(units.allowed)) - 1  # (U, N)
    cube = _node_cube(units, w)
    stay = (cube + _mask(units)[:, None, :]).transpose(0, 2, 1)  # (U, N, L)
    prefix = np.zeros((n_units + 1, n_w, n_net))
    np.cumsum(cube, axis=0, out=prefix[1:])
    # block[u, l, n]: cost of the dwell block entered at u (the entry unit's mask is apart)
    block = np.take_along_axis(prefix, (land + 1)[:, None, :], axis=0) - prefix[:-1]
    column = block.transpose(0, 2, 1) + (
        units.entry_cost[:, :, None] * w.alpha + _mask(units)[:, :, None]
    )  # (U, N_to, L): what entering `to` at u costs besides the switch itself
    n_steps = n_units - 1
    offset = land[1:] - np.arange(1, n_units)[:, None]  # dwell block length - 1, per step
    reach = int(offset.max(initial=0))
    blocks = _Blocks.plan(n_steps, n_w, min_len=reach + 1)
    rows, lanes, warm = blocks.rows, blocks.lanes, blocks.warm
    n_blocks = blocks.n_blocks
    # switching from -> to costs the switch, then (column) the entry and the dwell block
    switch = _switch_table(switch_cost, w)  # (F, T, L) within one layer
    switch_lanes = np.ascontiguousarray(
        np.broadcast_to(switch[:, :, None, :], (base, base, n_blocks, n_w))
    ).reshape(base, base, lanes)
    columns = blocks.split(column[1:], _INF)  # (rows, N_to, lanes)
    stays = blocks.split(stay[1:], 0.0)  # (rows, N, lanes)
    # near the arrival some switches are banned: +inf added at those rows
    ban_step, ban_to, ban_from = _arrival_bans(units, min_dwell_s, min_dwell_m)
    # every layer has the same rows, so the bans between the first layer's networks hold in all
    first = (ban_to < base) & (ban_from < base)
    bans: dict[int, FloatArray] = {}
    for rows_at, block, which in blocks.places(ban_step[first]):
        to, frm = ban_to[first][which], ban_from[first][which]
        for row, b, t, f in zip(rows_at, block, to, frm, strict=True):
            ban = bans.setdefault(int(row), np.zeros((base, base, lanes)))
            ban[f, t, b * n_w : (b + 1) * n_w] = _INF
    # the pending table's row where each step's booking lands (row + offset)
    lands = np.arange(rows)[:, None, None] + blocks.split(offset[:, :, None], 0).repeat(n_w, 2)
    pend = np.full((rows + reach, n_net, lanes), _INF)
    booked = np.empty((rows, n_net, lanes))
    stayed = np.empty((rows, n_net, lanes))
    add, smallest, minimum = np.add, np.minimum.reduce, np.minimum

    def run(lane: IntArray | slice, pend: FloatArray, free: FloatArray, first: int) -> FloatArray:
        """Rows ``first ..`` of the lanes ``lane``; ``pend`` (contiguous) holds just those."""
        width = pend.shape[-1]
        target = (lands[..., lane] * n_net + np.arange(n_net)[None, :, None]) * width
        target += np.arange(width)
        flat = pend.reshape(-1)
        switch_l, columns_l, stays_l = switch_lanes[..., lane], columns[..., lane], stays[..., lane]
        booked_l, stayed_l = booked[..., lane], stayed[..., lane]
        if layers is None:
            entering = np.empty((base, base, width))
        else:  # (from layer, from, to, lane): the least over `from` enters the next layer
            entering = np.empty((layers - 1, base, base, width))
            entered = np.empty((layers - 1, base, width))
        for k in range(first, rows):  # the hot loop: eight numpy calls per step
            if (k - first) % STOP_CHECK_STEPS == 0:
                check_stop("the DP")
            if layers is None:
                add(free[:, None, :], switch_l, out=entering)
                if k in bans:
                    add(entering, bans[k][..., lane], out=entering)
                smallest(entering, axis=0, out=booked_l[k])
            else:  # from layer k' (all but the last) into layer k' + 1; nothing enters layer 0
                add(free[:-base].reshape(layers - 1, base, 1, width), switch_l, out=entering)
                if k in bans:
                    add(entering, bans[k][..., lane], out=entering)
                smallest(entering, axis=1, out=entered)
                booked_l[k][:base] = _INF
                booked_l[k][base:] = entered.reshape(-1, width)
            add(booked_l[k], columns_l[k], out=booked_l[k])
            into = target[k]
            flat[into] = minimum(flat[into], booked_l[k])
            add(free, stays_l[k], out=stayed_l[k])
            free = minimum(pend[k], stayed_l[k])
            if k == warm - 1:
                free = blocks.settle_start(free, pend[warm : warm + reach])
        if isinstance(lane, np.ndarray):  # a gathered copy: put the results back
            booked[..., lane], stayed[..., lane] = booked_l, stayed_l
        return free

    free = blocks.first_state(stay[0])
    if warm == 0:
        free = blocks.settle_start(free, pend[:reach])
    redo = blocks.next_round(run(slice(None), pend, free, 0), None, pend[rows:])
    while redo.size:  # lanes that started off: again, from the end of the block before
        assert blocks.start_extra is not None
        lane = blocks.lanes_to_run(redo)
        again = np.full((rows + reach, n_net, blocks.start[:, lane].shape[-1]), _INF)
        again[warm : warm + reach] = blocks.start_extra[..., lane]
        end = run(lane, again, blocks.start[:, lane], warm)
        pend[warm:, :, lane] = again[warm:]
        redo = blocks.next_round(end, lane, again[rows:])
    total, ends = blocks.total()
    unit_pend = blocks.join(pend[warm:rows])  # (M, N, L)
    unit_stayed = blocks.join(stayed[warm:])
    unit_booked = blocks.join(booked[warm:] + blocks.offsets())  # entries of two blocks meet
    banned = {int(m): (ban_to[ban_step == m], ban_from[ban_step == m]) for m in set(ban_step)}
    if layers is not None:  # the whole switch table, for the walk back
        switch = _switch_table(_layered_switch_cost(switch_cost, layers), w)

    def before(m: int, n: int, lane: int) -> int:
        """The network before a switch into ``n`` at step ``m`` (unit ``m + 1``)."""
        if m == 0:
            free = stay[0, :, lane]
        else:
            free = np.minimum(unit_pend[m - 1, :, lane], unit_stayed[m - 1, :, lane])
        cost = free + switch[:, n, lane]
        if m in banned:
            to, frm = banned[m]
            cost[frm[to == n]] = _INF
        return int(cost.argmin())

    out = np.stack(
        [
            _backtrack_dwell(
                unit_pend[:, :, k],
                unit_stayed[:, :, k],
                unit_booked[:, :, k],
                functools.partial(before, lane=k),
                land[1:],
                int(ends[k]),
            )
            for k in range(n_w)
        ]
    )
    expanded = np.stack([units.expand(row) for row in out])
    return DPResult(expanded, total, out)


def _dwell_compiled(
    units: Units,
    switch_cost: FloatArray,
    dwell: tuple[float, float],
    w: Weights,
    layers: int | None,
) -> DPResult:
    """:func:`viterbi_dwell` by the compiled passes."""
    check_stop("the DP")
    raw = _raw_costs(units)
    land = kernels.block_ends(
        np.ascontiguousarray(units.t_s, dtype=np.float64),
        np.ascontiguousarray(units.distance_m, dtype=np.float64),
        (float(dwell[0]), float(dwell[1])),
        raw[2],
    )
    full = switch_cost if layers is None else _layered_switch_cost(switch_cost, layers)
    ban_step, ban_to, ban_from = _arrival_bans(units, *dwell)
    first = int(ban_step.min(initial=0)) + 1  # steps count from unit 1
    span = int(ban_step.max()) + 2 - first if ban_step.size else 0
    banned = np.zeros((span, full.shape[0], full.shape[0]), dtype=np.bool_)
    banned[ban_step + 1 - first, ban_to, ban_from] = True
    value, plans = kernels.dwell_pass(
        raw, units.entry_cost, (w.alpha, w.beta), _lane_switch(full, w), land, (first, banned)
    )
    return DPResult(np.stack([units.expand(row) for row in plans]), value, plans)


def _arrival_bans(
    units: Units, min_dwell_s: float, min_dwell_m: float
) -> tuple[IntArray, IntArray, IntArray]:
    """``(step, to, from)`` of the switches the arrival forbids (steps count from unit 1).

    The rule binds only near the end: it is evaluated from a unit at or before the first one
    whose dwell would end after the arrival (start times and distances only grow).
    """
    eps = 1e-6  # wider than the rule's own tolerance: one unit early is only slower
    by_time = np.searchsorted(units.t_s, units.end_s - min_dwell_s - eps, side="left")
    by_dist = np.searchsorted(units.distance_m, units.end_m - min_dwell_m - eps, side="left")
    tail = max(0, int(min(by_time, by_dist)) - 1)
    ok = end_switch_ok(
        units.t_s[tail:],
        units.distance_m[tail:],
        (units.end_s, units.end_m),
        units.allowed[tail:],
        min_dwell_s,
        min_dwell_m,
    )
    unit, to, frm = np.nonzero(~ok)
    step = unit + tail - 1
    keep = step >= 0
    return step[keep], to[keep], frm[keep]


def _backtrack_dwell(
    pend: FloatArray,
    stayed: FloatArray,
    booked: FloatArray,
    before: Callable[[int, int], int],
    land: IntArray,
    end: int,
) -> IntArray:
    """Walk back over the steps (units ``1 ..``), one jump per switch.

    A state reached by a dwell block came from the entry whose booked value is least among
    the entries landing there (the first such entry); ``before(m, n)`` is the network before
    an entry into ``n`` at step ``m``. Arrays are per step ``(M, N)``; ``land`` holds unit
    indices.
    """
    n_steps, n_net = pend.shape
    out = np.empty(n_steps + 1, dtype=np.int64)
    net, step = np.nonzero((pend < stayed).T)  # steps reached by a landing block, per network
    bounds = np.searchsorted(net, np.arange(n_net + 1)).tolist()
    landing = np.ascontiguousarray((land - 1).T)  # step where each entry's block ends
    by_net = np.ascontiguousarray(booked.T)
    m, n = n_steps - 1, end
    while m >= 0:
        lo_n, hi_n = bounds[n], bounds[n + 1]
        i = int(np.searchsorted(step[lo_n:hi_n], m, side="right")) - 1
        if i < 0:
            break
        j = int(step[lo_n + i])
        lo, hi = np.searchsorted(landing[n], (j, j + 1)).tolist()
        entry = lo + int(np.argmin(by_net[n, lo:hi]))
        out[entry + 1 : m + 2] = n
        m, n = entry - 1, before(entry, n)
    out[: m + 2] = n
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


def limited_dp_fits(units: Units, max_handovers: int) -> bool:
    """True when :func:`viterbi_limited` over ``units`` stays within its work cap.

    Examples
    --------
    >>> limited_dp_fits.__name__
    'limited_dp_fits'
    """
    n_units, n_net = units.node_cost.shape
    return n_units * (n_net * (max_handovers + 1)) ** 2 <= LIMITED_DP_ELEMENTS


def viterbi_limited(
    units: Units,
    switch_cost: FloatArray,
    max_handovers: int,
    min_dwell_s: float = 0.0,
    min_dwell_m: float = 0.0,
    *,
    weights: Weights | None = None,
    engine: str = "auto",
) -> DPResult:
    """Best plan with at most ``max_handovers`` switches (and a minimum dwell, if given).

    The count of switches so far joins the state: network ``n`` after ``k`` switches is column
    ``k * N + n`` of a layered problem where every switch leads from layer ``k`` to ``k + 1``
    and no switch leaves the last layer, solved by :func:`viterbi` (or :func:`viterbi_dwell`
    with a dwell; a dwell block never switches, so it stays in its layer). Exact over the
    units wherever those passes are; the value is ``inf`` when no plan meets the limit.
    ``weights`` and ``engine`` as in :func:`viterbi` (a weight on handovers changes nothing
    the limit does not already decide only where it is 0).

    Examples
    --------
    >>> import numpy as np
    >>> from commap.plan.problem import Units
    >>> node = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    >>> u = Units(start=np.arange(3), stop=np.arange(1, 4), node_cost=node,
    ...           entry_cost=np.zeros((3, 2)), sat_mb=np.zeros((3, 2)),
    ...           allowed=np.ones((3, 2), bool), t_s=np.arange(3) * 2.0,
    ...           distance_m=np.arange(3) * 50.0)
    >>> sw = np.array([[0.0, 0.1], [0.1, 0.0]])
    >>> viterbi_limited(u, sw, 2).assignment.tolist()  # two switches: follow the cheap side
    [[0, 1, 0]]
    >>> viterbi_limited(u, sw, 1).assignment.tolist()  # one switch: stay
    [[0, 0, 0]]
    >>> viterbi_limited(u, sw, 0, min_dwell_s=3.0).value.tolist()
    [1.0]
    """
    n_net = units.node_cost.shape[1]
    layers = int(max_handovers) + 1

    def tiled(a: NDArray[Any]) -> NDArray[Any]:
        return np.ascontiguousarray(np.tile(a, (1, layers)))

    layered = Units(
        start=units.start,
        stop=units.stop,
        node_cost=tiled(units.node_cost),
        entry_cost=tiled(units.entry_cost),
        sat_mb=tiled(units.sat_mb),
        allowed=tiled(units.allowed),
        t_s=units.t_s,
        distance_m=units.distance_m,
        end_s=units.end_s,
        end_m=units.end_m,
    )
    if min_dwell_s > 0 or min_dwell_m > 0:
        result = viterbi_dwell(
            layered, switch_cost, min_dwell_s, min_dwell_m, weights, layers=layers, engine=engine
        )
    else:
        result = viterbi(layered, _layered_switch_cost(switch_cost, layers), weights, engine=engine)
    return DPResult(result.assignment % n_net, result.value, result.unit_assignment % n_net)


def _layered_switch_cost(switch_cost: FloatArray, layers: int) -> FloatArray:
    """Switch costs over ``layers`` copies of the networks: each switch goes one copy up."""
    n_net = switch_cost.shape[0]
    one_switch = np.where(np.eye(n_net, dtype=bool), _INF, switch_cost)
    layered = np.full((n_net * layers, n_net * layers), _INF)
    for k in range(layers - 1):
        layered[k * n_net : (k + 1) * n_net, (k + 1) * n_net : (k + 2) * n_net] = one_switch
    np.fill_diagonal(layered, 0.0)  # staying (the passes treat the diagonal apart)
    return layered


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
    limit_in_state: bool = False,
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
    limit_in_state : bool
        Keep the handover limit exact in the DP (:func:`viterbi_limited`) and relax only the
        satellite budget: a tighter bound where the limit is small enough for that DP.

    Examples
    --------
    >>> lagrangian_search.__name__
    'lagrangian_search'
    """
    c = problem.constraints
    k_ho = float(c.max_handovers) if c.max_handovers is not None else 0.0
    b_mb = float(c.sat_budget_mb) if c.sat_budget_mb is not None else 0.0
    box = _box(problem, units)
    layers = 1
    if limit_in_state:
        box, k_ho = (0.0, box[1]), 0.0  # the limit holds in every plan: no multiplier
        layers = int(c.max_handovers or 0) + 1
    warm_up_for(units, 2 * max_iter * layers * layers)
    cuts = _Cuts(k_ho, b_mb)
    lam = np.zeros((1, 2))
    best_l = (-_INF, 0.0, 0.0)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (reported below)
        check_stop("the Lagrangian search")
        result = _run(problem, units, Weights.of(1.0, lam[:, 1], lam[:, 0]), dwell, limit_in_state)
        if not np.isfinite(result.value).any():
            break  # no plan at all (the limit in the state cannot be met with the dwell)
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
        from scipy.optimize import linprog  # scipy.optimize takes a while to import

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


def _run(
    problem: HandoverProblem, units: Units, w: Weights, dwell: bool, limited: bool = False
) -> DPResult:
    c = problem.constraints
    if limited:
        on = dwell and c.has_dwell
        return viterbi_limited(
            units,
            problem.switch_cost,
            int(c.max_handovers or 0),
            c.min_dwell_s if on else 0.0,
            c.min_dwell_m if on else 0.0,
            weights=w,
        )
    if dwell and c.has_dwell:
        return viterbi_dwell(units, problem.switch_cost, c.min_dwell_s, c.min_dwell_m, w)
    return viterbi(units, problem.switch_cost, w)


def _unit_counts(units: Units, unit_plans: IntArray) -> tuple[IntArray, FloatArray]:
    """Handovers and satellite MB of each plan of a ``(P, U)`` batch of unit plans."""
    a = np.atleast_2d(unit_plans)
    h = (a[:, 1:] != a[:, :-1]).sum(axis=1)
    mb = units.sat_mb[np.arange(a.shape[1])[None, :], a].sum(axis=1)
    return h.astype(np.int64), mb
