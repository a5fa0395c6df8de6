"""Constrained plans: CP-SAT on run-compressed units, bounded by a Lagrangian DP.

Global constraints (handover limit, satellite budget), with minimum dwell and the hard rules:

1. **Infeasibility proofs.** The fewest handovers the coverage rules force and the least
   satellite data the terrestrial gaps force are exact DPs; a limit below them raises
   :class:`~commap.errors.NoFeasiblePlanError` naming the constraint.
   With a handover limit alone (no satellite budget), the DP with the switch count in its
   state (:func:`commap.plan.dp.viterbi_limited`) finds the optimum outright when it fits
   (units x (networks x (limit + 1))^2 within a cap); the steps below are skipped.
2. **Lower bound.** The Lagrangian dual of the global constraints, maximised by cutting planes
   over exact run-compressed DPs (:func:`commap.plan.dp.lagrangian_search`); with a dwell, exact
   dwell DPs at the best multipliers tighten it. Valid for the unrestricted problem.
3. **First plan.** DP plans near the best multipliers bracket the limits (some under, some over);
   splicing a prefix of one to the suffix of another at the best point (checked for limits and
   dwell) gives a feasible plan close to the bound.
4. **CP-SAT** over run-compressed units capped at ``max_run`` segments (plus cuts at the first
   plan's switches, so that it can be the hint), with change literals per boundary per group of
   networks (network, operator, domain) when the switch costs decompose over groups (``O(N)``
   per boundary), else one literal per network pair; always a time limit and a seed; stopped
   once within ``gap_limit`` of the bound. On two workers the ``max_lp`` subsolver is added (the
   default 2-worker portfolio hardly moves the bound).

Units restrict switches to unit starts, so with a dwell or a budget CP-SAT's own bound holds only
for the restricted model; the reported gap is always against a bound valid for the whole problem.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np

from commap.arrays import BoolArray, FloatArray, IntArray
from commap.errors import CommapError, InvalidInputError, NoFeasiblePlanError, SolverTimeoutError
from commap.plan import defaults
from commap.plan.cancel import StopWatcher, check_stop
from commap.plan.dp import (
    LagrangianResult,
    Weights,
    lagrangian_search,
    limited_dp_fits,
    max_batch,
    single_units,
    solve_dp,
    viterbi,
    viterbi_dwell,
    viterbi_limited,
)
from commap.plan.evaluator import evaluate_plan
from commap.plan.problem import (
    Constraints,
    HandoverProblem,
    Units,
    compress,
    dwell_end_index,
    next_disallowed_index,
)
from commap.plan.recombine import recombine

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

# OR-Tools and scipy.optimize are imported where the model is built and solved: a request that
# the DP decides (or a plain one: commap.plan.plan imports this module) does not wait for them.

__all__ = ["CpSatResult", "SwitchGroups", "solve_cpsat", "switch_groups"]

log = logging.getLogger(__name__)


_COST_SCALE = 1e6  # objective integer units per cost unit (a microsecond of lost service)
# Integer costs are rounded down, so CP-SAT's bound is a bound on the real cost too; a plan
# within this relative gap of it is reported OPTIMAL (the rest is rounding).
_OPTIMAL_GAP = 1e-5
_MB_SCALE = 1000.0  # budget in kB
_MB_EPS = 1e-9
_POOL = 6  # DP plans nearest the bound that get spliced (pairs: quadratic)
_NEAR = 12  # DP plans nearest the bound that get recombined
# Python time to write one unit's literals and clauses per network pair into the model proto
# (19 s for 20,000 units x 8 networks with pair literals and dwell, measured)
_BUILD_S_PER_PAIR = 1.5e-5
_SMALL_MODEL = 2000  # segments x networks up to which CP-SAT gets the exact model at once


@dataclass(frozen=True)
class CpSatResult:
    """A constrained plan and its quality certificate.

    Attributes
    ----------
    assignment : (S,) int array
        Network column per segment.
    status : str
        ``"OPTIMAL"`` (proven) or ``"FEASIBLE"`` (with ``gap`` to ``bound``).
    cost : float
        Objective of the plan (from the evaluator).
    bound : float
        Best proven lower bound on the optimum.
    gap : float
        ``(cost - bound) / cost`` (0 when proven optimal).
    cp_status : str
        Raw CP-SAT status name (``"NOT_RUN"`` when the first plan already met ``gap_limit``).
    source : str
        ``"cp-sat"``, ``"splice"`` or ``"dp"``: what produced the returned plan.
    units : int
        Units in the CP-SAT model (0 if not run).
    wall_s : float
        Total time.
    """

    assignment: IntArray
    status: str
    cost: float
    bound: float
    gap: float
    cp_status: str
    source: str
    units: int
    wall_s: float


# -- switch-cost decomposition -------------------------------------------------------------------
@dataclass(frozen=True)
class SwitchGroups:
    """Switch costs as group changes.

    ``cost(m -> n) = sum over groups g of enter[g] [n in g, m not in g]
    + leave[g] [m in g, n not in g]``. One "entered" literal per boundary and group suffices:
    leaving telescopes into end terms. Groups whose ``enter + leave`` is negative (a discount
    for staying inside the group) need their literal pinned both ways.
    """

    members: tuple[tuple[int, ...], ...]
    enter: FloatArray
    leave: FloatArray


def switch_groups(problem: HandoverProblem) -> SwitchGroups | None:
    """Decompose the switch costs over network / operator / domain groups, if exactly possible.

    Returns None when no exact decomposition exists (the model then uses pair literals).

    Examples
    --------
    >>> switch_groups.__name__
    'switch_groups'
    """
    nets = problem.networks
    n = len(nets)
    groups: list[tuple[int, ...]] = [(i,) for i in range(n)]
    for key in (
        [x.operator for x in nets],
        [str(x.kind) for x in nets],
        ["sat" if x.is_satellite else "ter" for x in nets],
    ):
        for value in sorted(set(key)):
            members = tuple(i for i in range(n) if key[i] == value)
            if 1 < len(members) < n and members not in groups:
                groups.append(members)
    g = len(groups)
    if n < 2:
        return SwitchGroups(tuple(groups), np.zeros(g), np.zeros(g))
    rows, target = [], []
    for m in range(n):
        for k in range(n):
            if m != k:
                into = [float(k in grp and m not in grp) for grp in groups]
                out = [float(m in grp and k not in grp) for grp in groups]
                # unknowns: total = enter + leave (>= 0), then leave (free)
                rows.append(into + [o - i for o, i in zip(out, into, strict=True)])
                target.append(problem.switch_cost[m, k])
    a, b = np.asarray(rows), np.asarray(target)
    fit = _nonnegative_fit(a, b, g)
    if fit is None:
        fit = np.linalg.lstsq(a, b, rcond=None)[0]
    if np.abs(a @ fit - b).max() > 1e-9 * max(1.0, float(np.abs(b).max())):
        return None
    fit[np.abs(fit) < 1e-12] = 0.0  # numerical dust would add needless terms
    total, leave = fit[:g], fit[g:]
    return SwitchGroups(tuple(groups), total - leave, leave)


def _nonnegative_fit(a: FloatArray, b: FloatArray, n_groups: int) -> FloatArray | None:
    """An exact decomposition with every ``enter + leave >= 0``, if one exists.

    Non-negative group totals make the switch cost a tree metric, whose group literals have a
    tight LP relaxation; the least-squares fit may pick negative totals among many exact ones.
    """
    from scipy.optimize import linprog

    n = a.shape[1]
    bounds = [(0.0, None)] * n_groups + [(None, None)] * (n - n_groups)
    res = linprog(
        np.r_[np.ones(n_groups), np.zeros(n - n_groups)],
        A_eq=a,
        b_eq=b,
        bounds=bounds,
        method="highs",
    )
    return np.asarray(res.x, dtype=np.float64) if res.status == 0 else None


# -- entry point --------------------------------------------------------------------------------
def solve_cpsat(
    problem: HandoverProblem,
    *,
    time_limit_s: float = defaults.SOLVER_TIME_LIMIT_S,
    seed: int = defaults.SEED,
    num_workers: int | None = None,
    max_run: int = 25,
    gap_limit: float = 1e-3,
    use_hint: bool = True,
    encoding: str = "auto",
    limited_dp: bool = True,
) -> CpSatResult:
    """Best plan under every constraint, with its gap to a proven lower bound.

    Parameters
    ----------
    problem : HandoverProblem
        The request (without global constraints CP-SAT re-checks the DP optimum).
    time_limit_s : float
        Wall-clock limit of the whole solve (DP phases and CP-SAT).
    seed : int
        CP-SAT random seed (same input and seed, same plan).
    num_workers : int, optional
        CP-SAT workers; default the CPU count (at most 8).
    max_run : int
        Cap on segments per unit in the CP-SAT model.
    gap_limit : float
        Stop once the plan is within this relative gap of the bound (0: run CP-SAT to the end).
    use_hint : bool
        Hint CP-SAT with the first plan (else CP-SAT starts cold; for tests).
    encoding : {"auto", "groups", "pairs"}
        Switch encoding; ``auto`` uses groups when they represent the costs exactly with
        non-negative group costs (a tree metric), else pairs.
    limited_dp : bool
        Let the exact handover-limit DP decide a request whose only global constraint is the
        handover limit (else the Lagrangian search and CP-SAT do; for tests).

    Raises
    ------
    NoFeasiblePlanError
        No plan meets the constraints; ``constraint`` names the one that cannot be met.
    SolverTimeoutError
        No plan found within the time limit.

    Examples
    --------
    >>> solve_cpsat.__name__
    'solve_cpsat'
    """
    start = time.perf_counter()
    _check_params(time_limit_s, gap_limit, max_run, encoding)
    if problem.shape[0] == 0:
        return CpSatResult(np.zeros(0, np.int64), "OPTIMAL", 0.0, 0.0, 0.0, "NOT_RUN", "dp", 0, 0.0)
    search = _Search(problem, gap_limit, start + time_limit_s)
    exact_units = compress(problem)
    _check_forced(problem, exact_units)
    if limited_dp and search.decide_by_dp(exact_units):
        return search.result("NOT_RUN", 0, time.perf_counter() - start)
    pool = search.bound_and_pool(exact_units)
    search.recombine(pool)
    if not search.good_enough():
        for plan in splice_pool(problem, pool[:_POOL]):
            search.offer(plan, "splice")
        search.recombine(pool, with_best=True)
    for plan in pool:
        search.offer(plan, "dp")
    cp_status, n_units = "NOT_RUN", 0
    for run_cap in _refinements(max_run, problem.shape):
        if use_hint and search.good_enough():
            break
        check_stop("CP-SAT")
        cuts = _switches(search.best[1]) if search.best is not None and use_hint else None
        units = compress(problem, max_run=run_cap, cuts=cuts)
        if len(units) == n_units:
            continue  # the same partition as the last run: nothing new to find
        if not search.time_for(len(units)) and search.best is not None:
            break  # building the model alone would take the rest of the time
        n_units = len(units)
        cp_status = search.run_cpsat(units, seed, num_workers, use_hint, encoding)
        if search.best is None and cp_status == "INFEASIBLE":
            search.diagnose_infeasible(units, seed, num_workers, encoding)
        if cp_status != "OPTIMAL" or units.exact_for(problem.constraints):
            break  # out of time, or nothing finer to gain
    if search.best is None:
        raise SolverTimeoutError(
            f"no plan met the constraints within {time_limit_s:g} s; raise the time limit"
        )
    return search.result(cp_status, n_units, time.perf_counter() - start)


def _check_params(time_limit_s: float, gap_limit: float, max_run: int, encoding: str) -> None:
    if not (math.isfinite(time_limit_s) and time_limit_s > 0):
        raise InvalidInputError("time_limit_s must be a positive number", field="time_limit_s")
    if not (math.isfinite(gap_limit) and gap_limit >= 0):
        raise InvalidInputError("gap_limit must be >= 0", field="gap_limit")
    if max_run < 1:
        raise InvalidInputError("max_run must be >= 1", field="max_run")
    if encoding not in ("auto", "groups", "pairs"):
        raise InvalidInputError("encoding must be auto, groups or pairs", field="encoding")


def _check_forced(problem: HandoverProblem, units: Units) -> None:
    """Raise when a global limit is below what the plan rules force (exact DPs).

    The fewest handovers ignore dwell safely: switching to the network that stays allowed the
    longest is optimal and only ever leaves a network when it stops being allowed, which dwell
    permits.
    """
    c = problem.constraints
    if c.max_handovers is not None:
        fewest = viterbi(units, problem.switch_cost, Weights.of(0.0, 0.0, 1.0)).value[0]
        forced = round(float(fewest))
        if forced > c.max_handovers:
            raise NoFeasiblePlanError(
                f"max_handovers={c.max_handovers} cannot be met: coverage gaps and the plan "
                f"rules force at least {forced} handovers on this route",
                constraint="max_handovers",
            )
    if c.sat_budget_mb is not None:
        forced_mb = float(viterbi(units, problem.switch_cost, Weights.of(0.0, 1.0)).value[0])
        if forced_mb > c.sat_budget_mb + _MB_EPS:
            raise NoFeasiblePlanError(
                f"sat_budget_mb={c.sat_budget_mb:g} cannot be met: terrestrial gaps force at "
                f"least {forced_mb:.3f} MB over satellite networks for {problem.app.name}",
                constraint="sat_budget_mb",
            )


def _refinements(max_run: int, shape: tuple[int, int]) -> list[int]:
    """Unit caps to try in turn: each CP-SAT run proven optimal on its units may leave a gap
    that finer units (more places to switch) can close; one segment per unit is exact, and
    small problems start there."""
    if shape[0] * shape[1] <= _SMALL_MODEL:
        return [1]
    return [max_run] + [c for c in (5, 1) if c < max_run]


def _switches(plan: IntArray) -> IntArray:
    return (np.flatnonzero(plan[1:] != plan[:-1]) + 1).astype(np.int64)


# -- splicing -----------------------------------------------------------------------------------
def splice_pool(problem: HandoverProblem, pool: list[IntArray], rounds: int = 2) -> list[IntArray]:
    """Feasible plans made of a prefix of one pool plan and the suffix of another.

    Lagrangian plans near the best multipliers straddle the limits; the best splice point of
    two of them (cheapest among those meeting the limits and the dwell) is usually close to the
    constrained optimum. Returns the best splice of every ordered pair, then of the best one
    with every plan again (``rounds``), cheapest first.

    Examples
    --------
    >>> splice_pool.__name__
    'splice_pool'
    """
    if len(pool) < 2:
        return []
    stats = [_PlanStats(problem, p) for p in pool]
    found: list[tuple[float, IntArray]] = []
    for a in stats:
        for b in stats:
            if a is not b and (hit := _best_splice(problem, a, b)) is not None:
                found.append(hit)
    for _ in range(rounds - 1):
        if not found:
            break
        best = _PlanStats(problem, min(found, key=lambda f: f[0])[1])
        for other in stats:
            for a, b in ((best, other), (other, best)):
                if (hit := _best_splice(problem, a, b)) is not None:
                    found.append(hit)
    found.sort(key=lambda f: f[0])
    return [plan for _, plan in found[:4]]


class _PlanStats:
    """Prefix sums of one plan's cost, handovers and satellite MB, and its switch positions."""

    def __init__(self, problem: HandoverProblem, plan: IntArray) -> None:
        n_seg = plan.shape[0]
        rows = np.arange(n_seg)
        self.plan = plan
        switched = np.zeros(n_seg, dtype=bool)
        switched[1:] = plan[1:] != plan[:-1]
        prev = np.concatenate([[plan[0]], plan[:-1]])
        self.switch_cost = np.where(
            switched, problem.switch_cost[prev, plan] + problem.entry_cost[rows, plan], 0.0
        )
        self.cost = np.concatenate(
            [[0.0], np.cumsum(problem.node_cost[rows, plan] + self.switch_cost)]
        )
        self.handovers = np.concatenate([[0], np.cumsum(switched)])
        self.mb = np.concatenate([[0.0], np.cumsum(problem.sat_mb[rows, plan])])
        self.switched = switched
        idx = np.where(switched, rows, -1)
        self.last_switch = np.maximum.accumulate(idx)  # last switch at or before i
        after = np.where(switched, rows, n_seg)
        at_or_after = np.minimum.accumulate(after[::-1])[::-1]
        self.next_switch = np.concatenate([at_or_after[1:], [n_seg]])  # first switch after i


def _best_splice(
    problem: HandoverProblem, a: _PlanStats, b: _PlanStats
) -> tuple[float, IntArray] | None:
    """Cheapest feasible plan ``a[:j] + b[j:]`` over every cut ``j`` (None if there is none)."""
    c = problem.constraints
    n_seg = a.plan.shape[0]
    if n_seg < 2:
        return None
    j = np.arange(1, n_seg)
    left, right = a.plan[j - 1], b.plan[j]
    joint = left != right
    junction = np.where(joint, problem.switch_cost[left, right] + problem.entry_cost[j, right], 0.0)
    cost = a.cost[j] + (b.cost[n_seg] - b.cost[j]) - b.switch_cost[j] + junction
    handovers = a.handovers[j] + (b.handovers[n_seg] - b.handovers[j + 1]) + joint
    mb = a.mb[j] + (b.mb[n_seg] - b.mb[j])
    ok = np.ones(j.shape[0], dtype=bool)
    if c.max_handovers is not None:
        ok &= handovers <= c.max_handovers
    if c.sat_budget_mb is not None:
        ok &= mb <= c.sat_budget_mb + _MB_EPS
    if c.has_dwell:
        ok &= _splice_dwell_ok(problem, a, b, j, joint)
    if not ok.any():
        return None
    k = int(np.argmin(np.where(ok, cost, np.inf)))
    cut = int(j[k])
    return float(cost[k]), np.concatenate([a.plan[:cut], b.plan[cut:]])


def _splice_dwell_ok(
    problem: HandoverProblem, a: _PlanStats, b: _PlanStats, j: IntArray, joint: BoolArray
) -> BoolArray:
    """Dwell holds across cut ``j`` (each plan alone already meets it)."""
    n_seg = a.plan.shape[0]
    end = problem.dwell_end
    allowed = problem.allowed
    before = a.last_switch[j - 1]  # switch into the network a is on at the cut
    after = b.next_switch[j]  # b's next switch after the cut
    has_before = before >= 0
    has_after = after < n_seg
    safe_before = np.maximum(before, 0)
    safe_after = np.minimum(after, n_seg - 1)
    right = b.plan[j]
    forced_after = ~allowed[safe_after, right]
    # no switch at the cut: the network entered at `before` now leaves at `after`
    # (or stays to the end: a's own switch at `before` met the end rule in a)
    same_ok = ~has_before | ~has_after | (after >= end[safe_before]) | forced_after
    # a switch at the cut: a's network must have dwelt, b's network must dwell after it (or
    # before the end of the route when b does not switch again)
    left_ok = ~has_before | (j >= end[safe_before]) | ~allowed[j, a.plan[j - 1]]
    at_end = problem.switch_ok_at_end[j, right, a.plan[j - 1]]
    right_ok = np.where(has_after, (after >= end[j]) | forced_after, at_end)
    return np.where(joint, left_ok & right_ok, same_ok)


# -- search state -------------------------------------------------------------------------------
class _Search:
    """Best plan so far, the bound, and the CP-SAT runs that try to close the gap."""

    def __init__(self, problem: HandoverProblem, gap_limit: float, deadline: float) -> None:
        self.problem = problem
        self.bound = -math.inf
        self.best: tuple[float, IntArray] | None = None
        self.source = "dp"
        self.gap_limit = gap_limit
        self.deadline = deadline
        self.seconds_per_unit = 0.0  # model build time per unit, measured on the first model
        self.runs = 0

    def time_for(self, n_units: int) -> bool:
        """True when a model over ``n_units`` units can be built and given time: the build
        time per unit is measured on the first model, estimated before it."""
        remaining = self.deadline - time.perf_counter()
        per_unit = self.seconds_per_unit
        if self.runs == 0:
            per_unit = _BUILD_S_PER_PAIR * self.problem.shape[1] ** 2
        return remaining > 3.0 * per_unit * n_units + 0.05

    def decide_by_dp(self, exact_units: Units) -> bool:
        """With a handover limit alone: solve it exactly by DP, if that fits; True if solved.

        The unconstrained optimum decides when it meets the limit; otherwise the DP with the
        switch count in its state does (over single segments with a dwell, else over the
        exact run-compressed units).
        """
        p, c = self.problem, self.problem.constraints
        if c.max_handovers is None or c.sat_budget_mb is not None:
            return False
        units = single_units(p) if c.has_dwell else exact_units
        free = solve_dp(
            dataclasses.replace(p, constraints=dataclasses.replace(c, max_handovers=None))
        )
        plan = free.assignment[0]
        value = float(free.value[0])
        if np.count_nonzero(plan[1:] != plan[:-1]) > c.max_handovers:
            if not limited_dp_fits(units, c.max_handovers):
                return False
            limited = viterbi_limited(
                units, p.switch_cost, c.max_handovers, c.min_dwell_s, c.min_dwell_m
            )
            plan, value = limited.assignment[0], float(limited.value[0])
        if not math.isfinite(value):
            return False  # no plan meets the limit: the search below names the reason
        self.offer(plan, "dp")
        if self.best is None:
            return False
        self.bound = max(self.bound, value)
        return True

    def bound_and_pool(self, exact_units: Units) -> list[IntArray]:
        """Set the Lagrangian bound; return the DP plans nearest it."""
        p, c = self.problem, self.problem.constraints
        if not c.is_global:
            plan = solve_dp(p).assignment[0]  # exact: the bound is the optimum itself
            self.bound = evaluate_plan(p, plan).cost
            return [plan]
        budget = self.deadline - time.perf_counter()
        # with a dwell the Lagrangian runs the exact dwell DP over single segments: its bound
        # holds the dwell too (the relaxed one is looser by about the dwell's own cost)
        units = single_units(p) if c.has_dwell else exact_units
        # a small handover limit stays exact in the DP's state: only the budget is relaxed
        in_state = (
            c.max_handovers is not None
            and c.sat_budget_mb is not None
            # the search runs two weightings a call: the cap with room for both (and more)
            and limited_dp_fits(units, 2 * c.max_handovers + 1)
        )
        deadline = time.perf_counter() + 0.4 * budget
        lag = lagrangian_search(
            p, units, dwell=c.has_dwell, deadline=deadline, limit_in_state=in_state
        )
        if in_state and not math.isfinite(lag.bound):
            lag = lagrangian_search(p, units, dwell=c.has_dwell, deadline=deadline)
        self.bound = lag.bound
        near = lag.near_best(1e-3)
        order = np.argsort(
            lag.objective[near]
            + lag.lambda_ho * lag.handovers[near]
            + lag.lambda_mb * lag.sat_mb[near],
            kind="stable",
        )
        pool = [lag.plans[i] for i in near[order][:_NEAR]]
        if not any(self._within_limits(plan) for plan in pool):
            # Every plan near the multipliers breaks a limit, so no splice can meet both: add
            # plans at steeper multipliers, which trade cost for fewer switches and less data.
            pool += self._steep_plans(units, lag)
        return pool

    def _steep_plans(self, units: Units, lag: LagrangianResult) -> list[IntArray]:
        """DP plans at multipliers 2 to 256 times the best ones (each at least a floor)."""
        p, c = self.problem, self.problem.constraints
        steep = np.array([2.0, 4.0, 16.0, 64.0, 256.0])[: min(5, max_batch(units))]
        floor_ho = 1.0 if c.max_handovers is not None else 0.0
        floor_mb = 1e-3 if c.sat_budget_mb is not None else 0.0
        w = Weights.of(
            1.0,
            np.maximum(lag.lambda_mb, floor_mb) * steep,
            np.maximum(lag.lambda_ho, floor_ho) * steep,
        )
        if c.has_dwell:
            extra = viterbi_dwell(units, p.switch_cost, c.min_dwell_s, c.min_dwell_m, w)
        else:
            extra = viterbi(units, p.switch_cost, w)
        return list(extra.assignment)

    def recombine(self, pool: list[IntArray], *, with_best: bool = False) -> None:
        """Offer the best recombination of the pool's plans; ``with_best``: then of the best
        plan so far with each of them in turn (fewer stretches, each smaller)."""
        remaining = self.deadline - time.perf_counter()
        if not with_best:
            plan = recombine(
                self.problem, pool, time_limit_s=0.25 * remaining, gap_limit=self._knapsack_gap()
            )
            if plan is not None:
                self.offer(plan, "recombined")
            return
        for other in pool:
            if self.good_enough() or self.best is None:
                return
            remaining = self.deadline - time.perf_counter()
            plan = recombine(
                self.problem,
                [self.best[1], other],
                time_limit_s=0.1 * remaining,
                gap_limit=self._knapsack_gap(),
            )
            if plan is not None:
                self.offer(plan, "recombined")

    def _knapsack_gap(self) -> float:
        """The recombination knapsack's own gap: a quarter of the plan's gap limit. Its bound is
        at least the Lagrangian one (its LP is the dual over fewer plans), so a plan it stops
        at is within the limit whenever the best recombination is within three quarters."""
        return 0.25 * self.gap_limit

    def _within_limits(self, plan: IntArray) -> bool:
        c, p = self.problem.constraints, self.problem
        handovers = int(np.count_nonzero(plan[1:] != plan[:-1]))
        mb = float(p.sat_mb[np.arange(plan.shape[0]), plan].sum())
        return (c.max_handovers is None or handovers <= c.max_handovers) and (
            c.sat_budget_mb is None or mb <= c.sat_budget_mb + 1e-9
        )

    def gap(self) -> float:
        if self.best is None:
            return math.inf
        cost = self.best[0]
        return max(0.0, cost - self.bound) / max(abs(cost), 1e-12)

    def good_enough(self) -> bool:
        return self.best is not None and self.gap() <= self.gap_limit

    def offer(self, plan: IntArray, source: str) -> None:
        """Keep ``plan`` if the evaluator finds it feasible and cheaper than the best so far."""
        ev = evaluate_plan(self.problem, plan)
        if ev.feasible and (self.best is None or ev.cost < self.best[0] - 1e-12):
            self.best, self.source = (ev.cost, np.asarray(plan, dtype=np.int64)), source

    def run_cpsat(
        self, units: Units, seed: int, num_workers: int | None, use_hint: bool, encoding: str
    ) -> str:
        built = time.perf_counter()
        model = _CpModel(self.problem, units, encoding)
        self.seconds_per_unit = (time.perf_counter() - built) / max(len(units), 1)
        self.runs += 1
        if use_hint and self.best is not None and units.fits(self.best[1]):
            model.hint(units.restrict(self.best[1]))
        target = self.bound + self.gap_limit * abs(self.bound)
        remaining = max(self.deadline - time.perf_counter(), 0.05)
        status, plan, cp_bound = model.solve(remaining, seed, num_workers, target, self.gap_limit)
        if plan is not None:
            self.offer(units.expand(plan), "cp-sat")
        if units.exact_for(self.problem.constraints) and cp_bound is not None:
            self.bound = max(self.bound, cp_bound)
        return status

    def diagnose_infeasible(
        self, units: Units, seed: int, num_workers: int | None, encoding: str
    ) -> None:
        """The restricted model has no plan: find the reason on the exact problem."""
        p, c = self.problem, self.problem.constraints
        if c.sat_budget_mb is not None and c.has_dwell:
            least = viterbi_dwell(
                single_units(p), p.switch_cost, c.min_dwell_s, c.min_dwell_m, Weights.of(0.0, 1.0)
            ).value[0]
            if least > c.sat_budget_mb + _MB_EPS:
                raise NoFeasiblePlanError(
                    f"sat_budget_mb={c.sat_budget_mb:g} cannot be met with a minimum dwell of "
                    f"{c.min_dwell_s:g} s / {c.min_dwell_m:g} m: at least {least:.3f} MB go "
                    "over satellite networks",
                    constraint="sat_budget_mb",
                )
        if units.single or self.run_cpsat(single_units(p), seed, num_workers, False, encoding) == (
            "INFEASIBLE"
        ):
            raise _joint_infeasible(c)

    def result(self, cp_status: str, n_units: int, wall_s: float) -> CpSatResult:
        assert self.best is not None
        cost, plan = self.best
        gap = self.gap()
        optimal = gap <= _OPTIMAL_GAP
        return CpSatResult(
            assignment=plan,
            status="OPTIMAL" if optimal else "FEASIBLE",
            cost=cost,
            bound=cost if optimal else self.bound,
            gap=0.0 if optimal else gap,
            cp_status=cp_status,
            source=self.source,
            units=n_units,
            wall_s=wall_s,
        )


def _joint_infeasible(c: Constraints) -> NoFeasiblePlanError:
    names = [
        name
        for name, active in (
            ("max_handovers", c.max_handovers is not None),
            ("sat_budget_mb", c.sat_budget_mb is not None),
            ("min_dwell", c.has_dwell),
        )
        if active
    ]
    return NoFeasiblePlanError(
        f"no plan meets {', '.join(names)} together (each alone can be met)",
        constraint="+".join(names),
    )


# -- the CP-SAT model ---------------------------------------------------------------------------
def _stop_at_target(target: int) -> cp_model.CpSolverSolutionCallback:
    """A callback that stops the search once a solution is within the target objective."""
    from ortools.sat.python import cp_model

    class StopAtTarget(cp_model.CpSolverSolutionCallback):
        def on_solution_callback(self) -> None:
            if self.objective_value <= target:
                self.stop_search()

    return StopAtTarget()


def _neg(index: int) -> int:
    """CP-SAT literal for the negation of Boolean variable ``index``."""
    return -index - 1


class _CpModel:
    """CP-SAT model over units, written straight into the model proto (fast for large routes).

    Variables: ``x[u, n]`` (unit ``u`` on network ``n``, only where allowed) and, per boundary,
    one "entered" literal per group (or per network pair). Clauses push each entered literal up
    when its group is entered; where its cost is non-negative the optimum sets it exactly, where
    it is negative more clauses pin it down.
    """

    def __init__(self, problem: HandoverProblem, units: Units, encoding: str) -> None:
        from ortools.sat.python import cp_model

        self.problem, self.units = problem, units
        self.model = cp_model.CpModel()
        self.proto = self.model.proto
        groups = None if encoding == "pairs" else switch_groups(problem)
        if encoding == "auto" and groups is not None and (groups.enter + groups.leave < 0).any():
            # not a tree metric (e.g. a re-registration dearer than a detour over a satellite
            # terminal): the pinned group literals relax badly, pair literals with flow rows don't
            groups = None
        if encoding == "groups" and groups is None:
            raise InvalidInputError(
                "switch costs do not decompose over network groups; use encoding='pairs'",
                field="encoding",
            )
        self.groups = groups
        self.n_vars = 0
        self.obj: dict[int, int] = {}
        self.x = self._variables()
        self.lits: list[tuple[int, int, tuple[int, ...]]] = []  # (var, boundary, members)
        handovers = self._group_switches(groups) if groups is not None else self._pair_switches()
        self._global(handovers)
        self._dwell()
        objective = self.proto.objective
        items = [(v, k) for v, k in self.obj.items() if k]
        objective.vars.extend([v for v, _ in items])
        objective.coeffs.extend([k for _, k in items])

    def _new_vars(self, count: int) -> IntArray:
        first = self.n_vars
        for _ in range(count):
            self.proto.variables.add().domain.extend([0, 1])
        self.n_vars += count
        return np.arange(first, first + count, dtype=np.int64)

    def _cost(self, var: int, coef: float) -> None:
        value = math.floor(coef * _COST_SCALE)
        if value:
            self.obj[var] = self.obj.get(var, 0) + value

    def _clause(self, literals: list[int]) -> None:
        self.proto.constraints.add().bool_or.literals.extend(literals)

    def _variables(self) -> IntArray:
        allowed = self.units.allowed
        x = np.full(allowed.shape, -1, dtype=np.int64)
        x[allowed] = self._new_vars(int(allowed.sum()))
        rows = cast(list[list[int]], x.tolist())
        for row in rows:
            self.proto.constraints.add().exactly_one.literals.extend([v for v in row if v >= 0])
        cost = np.floor(self.units.node_cost * _COST_SCALE).astype(np.int64)
        for v, k in zip(x[allowed].tolist(), cost[allowed].tolist(), strict=True):
            if k:
                self.obj[v] = k
        return x

    def _group_switches(self, groups: SwitchGroups) -> list[int]:
        """Entered literal per boundary and group; leaving costs telescope into end terms."""
        x, entry = self.x, self.units.entry_cost
        n_units = x.shape[0]
        total = groups.enter + groups.leave
        handovers: list[int] = []
        xs = x.tolist()
        for g, members in enumerate(groups.members):
            check_stop("building the CP-SAT model")
            for u in range(1, n_units):
                now = [xs[u][k] for k in members if xs[u][k] >= 0]
                if not now:
                    continue
                before = [xs[u - 1][k] for k in members if xs[u - 1][k] >= 0]
                lit = int(self._new_vars(1)[0])
                # entering the group forces the literal: lit >= sum(now) - sum(before). One
                # linear row, not a clause per member: its LP relaxation is the transport cost
                # between the rows' fractional assignments, which keeps the bound tight when
                # switches cost as much as many segments do.
                self._linear_ge([lit, *now, *before], [1] + [-1] * len(now) + [1] * len(before), 0)
                if total[g] < 0:  # a negative cost would lure the literal up: pin it down too
                    self._clause([_neg(lit), *now])
                    for v in before:
                        self._clause([_neg(lit), _neg(v)])
                extra = float(entry[u, members[0]]) if len(members) == 1 else 0.0
                self._cost(lit, float(total[g]) + extra)
                self.lits.append((lit, u, members))
                if len(members) == 1:
                    handovers.append(lit)
            # sum over boundaries of leave[g] * (in - out) telescopes to the end-point terms
            for k in members:
                if xs[n_units - 1][k] >= 0:
                    self._cost(xs[n_units - 1][k], -float(groups.leave[g]))
                if xs[0][k] >= 0:
                    self._cost(xs[0][k], float(groups.leave[g]))
        return handovers

    def _pair_switches(self) -> list[int]:
        """One literal per boundary and network pair, forced up by both endpoints."""
        x, entry, sw = self.x, self.units.entry_cost, self.problem.switch_cost
        handovers: list[int] = []
        xs = x.tolist()
        for u in range(1, x.shape[0]):
            if u % 64 == 0:  # building N^2 literals per boundary takes seconds on long routes
                check_stop("building the CP-SAT model")
            leaving: list[list[int]] = [[] for _ in range(x.shape[1])]
            entering: list[list[int]] = [[] for _ in range(x.shape[1])]
            for a, va in enumerate(xs[u - 1]):
                for b, vb in enumerate(xs[u]):
                    if a == b or va < 0 or vb < 0:
                        continue
                    lit = int(self._new_vars(1)[0])
                    self._clause([lit, _neg(va), _neg(vb)])
                    self._cost(lit, float(sw[a, b] + entry[u, b]))
                    self.lits.append((lit, u, (a, b)))
                    handovers.append(lit)
                    leaving[a].append(lit)
                    entering[b].append(lit)
            # flow rows (leaving a needs a switch out of a, entering b one into b) tighten the
            # LP bound the pair clauses alone leave loose
            for k in range(x.shape[1]):
                if xs[u - 1][k] >= 0 and leaving[k]:
                    now = [xs[u][k]] if xs[u][k] >= 0 else []
                    self._linear_ge(
                        [*leaving[k], xs[u - 1][k], *now],
                        [1] * len(leaving[k]) + [-1, *[1] * len(now)],
                        0,
                    )
                if xs[u][k] >= 0 and entering[k]:
                    before = [xs[u - 1][k]] if xs[u - 1][k] >= 0 else []
                    self._linear_ge(
                        [*entering[k], xs[u][k], *before],
                        [1] * len(entering[k]) + [-1, *[1] * len(before)],
                        0,
                    )
        return handovers

    def _linear_ge(self, variables: list[int], coefs: list[int], low: int) -> None:
        linear = self.proto.constraints.add().linear
        linear.vars.extend(variables)
        linear.coeffs.extend(coefs)
        linear.domain.extend([low, 2**62])

    def _linear_le(self, variables: list[int], coefs: list[int], cap: int) -> None:
        linear = self.proto.constraints.add().linear
        linear.vars.extend(variables)
        linear.coeffs.extend(coefs)
        linear.domain.extend([-(2**62), cap])

    def _global(self, handovers: list[int]) -> None:
        c = self.problem.constraints
        if c.max_handovers is not None and handovers:
            self._linear_le(handovers, [1] * len(handovers), int(c.max_handovers))
        if c.sat_budget_mb is not None:
            # data rounded up and the budget down: a CP-SAT plan always fits the real budget
            kb = np.ceil(self.units.sat_mb * _MB_SCALE - 1e-9).astype(np.int64)
            use = (self.x >= 0) & (kb > 0)
            if use.any():
                cap = math.floor(c.sat_budget_mb * _MB_SCALE + 1e-9)
                self._linear_le(self.x[use].tolist(), kb[use].tolist(), cap)

    def _dwell(self) -> None:
        """After entering ``n`` at ``u``, stay on it through ``land[u, n]`` (clauses)."""
        c = self.problem.constraints
        if not c.has_dwell:
            return
        units, xs = self.units, self.x.tolist()
        end = dwell_end_index(units.t_s, units.distance_m, c.min_dwell_s, c.min_dwell_m)
        land = (np.minimum(end[:, None], next_disallowed_index(units.allowed)) - 1).tolist()
        # [u, n, m]: a switch m -> n at unit u respects the dwell before the route's end
        at_end = self.problem.switch_ok_at_end[units.start]
        for u in range(1, len(xs)):
            for n, here in enumerate(xs[u]):
                if here < 0:
                    continue
                before = xs[u - 1][n]
                tail = [before] if before >= 0 else []
                for v in range(u + 1, land[u][n] + 1):
                    self._clause([xs[v][n], _neg(here), *tail])
                if not at_end[u, n].all():
                    # entering n here is fine only from a network that may not stay
                    exempt = [x for m, x in enumerate(xs[u - 1]) if x >= 0 and at_end[u, n, m]]
                    self._clause([_neg(here), *tail, *exempt])

    def hint(self, unit_plan: IntArray) -> None:
        """Hint every variable with the value ``unit_plan`` gives it."""
        plan = np.asarray(unit_plan, dtype=np.int64)
        allowed = self.x >= 0
        values = (np.arange(self.x.shape[1])[None, :] == plan[:, None])[allowed].astype(int)
        variables = self.x[allowed].tolist()
        hint = self.proto.solution_hint
        hint.vars.extend(variables)
        hint.values.extend(values.tolist())
        lit_vars, lit_values = [], []
        for lit, u, members in self.lits:
            a, b = int(plan[u - 1]), int(plan[u])
            grouped = self.groups is not None
            on = (b in members and a not in members) if grouped else (a, b) == members
            lit_vars.append(lit)
            lit_values.append(int(on))
        hint.vars.extend(lit_vars)
        hint.values.extend(lit_values)

    def solve(
        self,
        time_limit_s: float,
        seed: int,
        num_workers: int | None,
        target_cost: float,
        gap_limit: float,
    ) -> tuple[str, IntArray | None, float | None]:
        """Run CP-SAT; return status name, unit plan (OPTIMAL/FEASIBLE only), bound in cost."""
        from ortools.sat.python import cp_model

        solver = cp_model.CpSolver()
        prm = solver.parameters
        prm.max_time_in_seconds = float(time_limit_s)
        prm.random_seed = int(seed)
        workers = num_workers or min(os.cpu_count() or 1, 8)
        prm.num_workers = int(workers)
        if workers == 1:
            prm.linearization_level = 2  # the single worker needs the full LP to move the bound
        elif workers == 2:
            prm.extra_subsolvers.append("max_lp")
        prm.relative_gap_limit = float(gap_limit)
        # stop at the external bound's target, unless asked to run to the end (gap_limit 0)
        callback = _stop_at_target(math.floor(target_cost * _COST_SCALE)) if gap_limit > 0 else None
        with StopWatcher(solver.stop_search):  # a cancelled request stops the search
            status = solver.solve(self.model, callback)
        check_stop("CP-SAT")
        name = solver.status_name(status)
        log.info(
            "cp-sat %s in %.2f s over %d units: objective %.6g, bound %.6g",
            name,
            solver.wall_time,
            len(self.units),
            solver.objective_value / _COST_SCALE,
            solver.best_objective_bound / _COST_SCALE,
        )
        if status == cp_model.MODEL_INVALID:
            raise CommapError(
                f"internal error: CP-SAT rejected the model ({self.model.validate()})"
            )
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return name, None, None
        values = np.asarray(solver.response_proto.solution, dtype=np.int64)
        picked = np.where(self.x >= 0, values[np.maximum(self.x, 0)], 0)
        plan = picked.argmax(axis=1).astype(np.int64)
        # every integer cost was rounded down: the integer bound bounds the real cost
        return name, plan, solver.best_objective_bound / _COST_SCALE
