"""Constrained plans: CP-SAT on run-compressed units, bounded by a Lagrangian DP.

Global constraints (handover limit, satellite budget) with minimum dwell and the hard rules:

1. Proofs of infeasibility first: the fewest handovers the coverage rules force and the least
   satellite data terrestrial gaps force are exact DPs; a limit below them raises
   :class:`~commap.errors.NoFeasiblePlanError` naming the constraint.
2. Lower bound: the Lagrangian dual of the global constraints, maximised over a refined grid of
   multipliers by batched DPs (:func:`commap.plan.dp.lagrangian_search`); with a dwell, one more
   exact dwell DP at the best multipliers tightens it.
3. Hint: the best feasible plan among the DP plans met on the way (dwell DPs over the CP-SAT units
   near the best multipliers).
4. CP-SAT over run-compressed units capped at ``max_run`` segments, with change literals per
   boundary per group of networks (network, operator, domain) when the switch costs decompose
   over groups (``O(N)`` per boundary), else one literal per network pair; hinted, with a time
   limit and a seed, stopped once within ``gap_limit`` of the bound. On two workers the
   ``max_lp`` subsolver is added (the default 2-worker portfolio hardly moves the bound).

Units restrict switches to unit starts, so with a dwell or a budget the CP-SAT optimum is only an
upper bound; the gap is always measured against a bound valid for the unrestricted problem.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from ortools.sat.python import cp_model

from commap.errors import CommapError, InvalidInputError, NoFeasiblePlanError, SolverTimeoutError
from commap.plan.dp import (
    Weights,
    lagrangian_search,
    single_units,
    solve_dp,
    viterbi,
    viterbi_dwell,
)
from commap.plan.evaluate import evaluate
from commap.plan.problem import HandoverProblem, Units, compress, dwell_end_index
from commap.plan.problem import next_disallowed_index as _next_disallowed

__all__ = ["CpSatResult", "SwitchGroups", "solve_cpsat", "switch_groups"]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_COST_SCALE = 1e6  # objective integer units per cost unit (1e-6 of an expected drop)
_MB_SCALE = 1000.0  # budget in kB
_MB_EPS = 1e-9


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
        Raw CP-SAT status name (``"NOT_RUN"`` if CP-SAT was skipped).
    source : str
        ``"cp-sat"`` or ``"dp"``: which method produced the returned plan.
    units : int
        Units in the CP-SAT model.
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


@dataclass(frozen=True)
class SwitchGroups:
    """Switch costs as group changes: ``cost(m -> n) = sum over groups g of in_cost[g] *
    [n in g, m not in g] + out_cost[g] * [m in g, n not in g]``."""

    members: tuple[tuple[int, ...], ...]
    in_cost: FloatArray
    out_cost: FloatArray


def switch_groups(problem: HandoverProblem) -> SwitchGroups | None:
    """Decompose the switch costs over network / operator / domain groups, if exact.

    Returns None when no exact decomposition exists (the model then uses pair literals).

    Examples
    --------
    >>> switch_groups.__name__
    'switch_groups'
    """
    nets = problem.networks
    n = len(nets)
    candidates: list[tuple[int, ...]] = [(i,) for i in range(n)]
    keys = [
        [x.operator for x in nets],
        [str(x.kind) for x in nets],
        ["sat" if x.is_satellite else "ter" for x in nets],
    ]
    for key in keys:
        for value in sorted(set(key)):
            members = tuple(i for i in range(n) if key[i] == value)
            if 1 < len(members) < n and members not in candidates:
                candidates.append(members)
    if n < 2:
        return SwitchGroups(tuple(candidates), np.zeros(len(candidates)), np.zeros(len(candidates)))
    rows, target = [], []
    for m in range(n):
        for k in range(n):
            if m != k:
                rows.append(
                    [float(k in g and m not in g) for g in candidates]
                    + [float(m in g and k not in g) for g in candidates]
                )
                target.append(problem.switch_cost[m, k])
    a, b = np.asarray(rows), np.asarray(target)
    x = np.linalg.lstsq(a, b, rcond=None)[0]
    if np.abs(a @ x - b).max() > 1e-9 * max(1.0, float(np.abs(b).max())):
        return None
    g = len(candidates)
    return SwitchGroups(tuple(candidates), x[:g], x[g:])


def solve_cpsat(
    problem: HandoverProblem,
    *,
    time_limit_s: float = 10.0,
    seed: int = 0,
    num_workers: int | None = None,
    max_run: int = 25,
    gap_limit: float = 1e-3,
    use_hint: bool = True,
    encoding: str = "auto",
) -> CpSatResult:
    """Best plan under every constraint, with its gap to a proven lower bound.

    Parameters
    ----------
    problem : HandoverProblem
        The request (global constraints optional: without them CP-SAT checks the DP optimum).
    time_limit_s : float
        Wall-clock limit of the whole solve (DP phases and CP-SAT).
    seed : int
        CP-SAT random seed (same input and seed, same plan).
    num_workers : int, optional
        CP-SAT workers; default the CPU count (at most 8).
    max_run : int
        Cap on segments per unit in the CP-SAT model.
    gap_limit : float
        Stop once the plan is within this relative gap of the bound.
    use_hint : bool
        Hint CP-SAT with the best DP plan.
    encoding : {"auto", "groups", "pairs"}
        Switch encoding; ``auto`` uses groups when they represent the costs exactly.

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
    deadline = start + time_limit_s
    if problem.shape[0] == 0:
        return CpSatResult(np.zeros(0, np.int64), "OPTIMAL", 0.0, 0.0, 0.0, "NOT_RUN", "dp", 0, 0.0)
    exact_units = compress(problem)
    cp_units = compress(problem, max_run=max_run)
    _check_forced(problem, exact_units)
    bound, candidates = _bound_and_candidates(problem, exact_units, cp_units)
    best = _best_feasible(problem, candidates)
    state = _Search(problem, bound, best, gap_limit, deadline)
    cp_status = "NOT_RUN"
    if not state.good_enough():
        cp_status = state.run_cpsat(cp_units, seed, num_workers, use_hint, encoding)
        if state.best is None and cp_status == "INFEASIBLE":
            state.diagnose_infeasible(cp_units, seed, num_workers, encoding)
    if state.best is None:
        raise SolverTimeoutError(
            f"no plan met the constraints within {time_limit_s:g} s; raise the time limit"
        )
    return state.result(cp_status, len(cp_units), time.perf_counter() - start)


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
    """Raise when a global limit is below what the coverage rules force (exact DPs)."""
    c = problem.constraints
    if c.max_handovers is not None:
        forced = int(round(viterbi(units, problem.switch_cost, Weights.of(0.0, 0.0, 1.0)).value[0]))
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


def _bound_and_candidates(
    problem: HandoverProblem, exact_units: Units, cp_units: Units
) -> tuple[float, list[IntArray]]:
    """Proven lower bound and candidate plans from the DPs."""
    c = problem.constraints
    if not c.is_global:
        plan = solve_dp(problem).assignment[0]  # exact: the bound is the optimum itself
        return evaluate(problem, plan).cost, [plan]
    lag = lagrangian_search(problem, exact_units, dwell=False)
    bound = lag.bound
    candidates: list[IntArray] = [] if c.has_dwell else list(lag.plans)
    if c.has_dwell:
        k_ho = float(c.max_handovers or 0)
        b_mb = float(c.sat_budget_mb or 0.0)
        at_best = Weights.of(1.0, lag.lambda_mb, lag.lambda_ho)
        exact = viterbi_dwell(
            single_units(problem), problem.switch_cost, c.min_dwell_s, c.min_dwell_m, at_best
        )
        bound = max(bound, float(exact.value[0]) - lag.lambda_ho * k_ho - lag.lambda_mb * b_mb)
        candidates.append(exact.assignment[0])
        near = _near(lag.lambda_ho, lag.lambda_mb, c.max_handovers is not None,
                     c.sat_budget_mb is not None)
        restricted = viterbi_dwell(
            cp_units, problem.switch_cost, c.min_dwell_s, c.min_dwell_m, near
        )
        candidates.extend(restricted.assignment)
    return bound, candidates


def _near(lam_ho: float, lam_mb: float, has_ho: bool, has_mb: bool) -> Weights:
    """Multipliers around the best ones (larger ones push plans towards feasibility)."""
    factors = np.array([1.0, 1.1, 1.3, 1.7, 2.5, 4.0])
    base_ho = lam_ho if lam_ho > 0 else 1e-3
    base_mb = lam_mb if lam_mb > 0 else 1e-6
    ho = base_ho * factors if has_ho else np.zeros(1)
    mb = base_mb * factors if has_mb else np.zeros(1)
    if has_ho and has_mb:
        return Weights.of(1.0, np.concatenate([mb, mb]), np.concatenate([ho, ho[::-1]]))
    return Weights.of(1.0, mb if has_mb else 0.0, ho if has_ho else 0.0)


def _best_feasible(problem: HandoverProblem, plans: list[IntArray]) -> tuple[float, IntArray] | None:
    """Cheapest candidate meeting the global limits, confirmed by the evaluator."""
    if not plans:
        return None
    a = np.unique(np.stack(plans), axis=0)
    c = problem.constraints
    rows = np.arange(a.shape[1])
    h = (a[:, 1:] != a[:, :-1]).sum(axis=1)
    mb = problem.sat_mb[rows[None, :], a].sum(axis=1)
    ok = np.ones(a.shape[0], dtype=bool)
    if c.max_handovers is not None:
        ok &= h <= c.max_handovers
    if c.sat_budget_mb is not None:
        ok &= mb <= c.sat_budget_mb + _MB_EPS
    best: tuple[float, IntArray] | None = None
    for plan in a[ok]:
        ev = evaluate(problem, plan)
        if ev.feasible and (best is None or ev.cost < best[0]):
            best = (ev.cost, plan)
    return best


class _Search:
    """Best plan so far, the bound, and the CP-SAT runs that try to close the gap."""

    def __init__(
        self,
        problem: HandoverProblem,
        bound: float,
        best: tuple[float, IntArray] | None,
        gap_limit: float,
        deadline: float,
    ) -> None:
        self.problem = problem
        self.bound = bound
        self.best = best
        self.source = "dp"
        self.gap_limit = gap_limit
        self.deadline = deadline
        self.proven = False

    def gap(self) -> float:
        if self.best is None:
            return math.inf
        cost = self.best[0]
        return max(0.0, cost - self.bound) / max(abs(cost), 1e-12)

    def good_enough(self) -> bool:
        return self.best is not None and self.gap() <= self.gap_limit

    def offer(self, plan: IntArray, source: str) -> None:
        ev = evaluate(self.problem, plan)
        if not ev.feasible:
            log.warning("%s plan rejected by the evaluator: %s", source, "; ".join(ev.violations))
            return
        if self.best is None or ev.cost < self.best[0] - 1e-12:
            self.best, self.source = (ev.cost, plan), source

    def run_cpsat(
        self,
        units: Units,
        seed: int,
        num_workers: int | None,
        use_hint: bool,
        encoding: str,
    ) -> str:
        remaining = self.deadline - time.perf_counter()
        model = _CpModel(self.problem, units, encoding)
        if use_hint and self.best is not None and units.fits(self.best[1]):
            model.hint(units.restrict(self.best[1]))
        target = self.bound + self.gap_limit * abs(self.bound)
        status, plan, cp_bound = model.solve(
            max(remaining, 0.05), seed, num_workers, target, self.gap_limit
        )
        if plan is not None:
            self.offer(units.expand(plan), "cp-sat")
        exact = units.exact_for(self.problem.constraints)
        if exact and cp_bound is not None:
            self.bound = max(self.bound, cp_bound)
            self.proven = self.proven or (status == "OPTIMAL" and self.source == "cp-sat")
        return status

    def diagnose_infeasible(
        self, units: Units, seed: int, num_workers: int | None, encoding: str
    ) -> None:
        """The restricted model has no plan: find the reason on the exact problem."""
        p, c = self.problem, self.problem.constraints
        if c.sat_budget_mb is not None and c.has_dwell:
            least = viterbi_dwell(
                single_units(p), p.switch_cost, c.min_dwell_s, c.min_dwell_m,
                Weights.of(0.0, 1.0),
            ).value[0]
            if least > c.sat_budget_mb + _MB_EPS:
                raise NoFeasiblePlanError(
                    f"sat_budget_mb={c.sat_budget_mb:g} cannot be met with a minimum dwell of "
                    f"{c.min_dwell_s:g} s / {c.min_dwell_m:g} m: at least {least:.3f} MB go "
                    "over satellite networks",
                    constraint="sat_budget_mb",
                )
        if units.single:
            raise _joint_infeasible(c)
        exact_units = single_units(p)
        status = self.run_cpsat(exact_units, seed, num_workers, False, encoding)
        if status == "INFEASIBLE":
            raise _joint_infeasible(c)

    def result(self, cp_status: str, n_units: int, wall_s: float) -> CpSatResult:
        assert self.best is not None
        cost, plan = self.best
        gap = self.gap()
        optimal = self.proven or gap <= 1e-9
        return CpSatResult(
            assignment=np.asarray(plan, dtype=np.int64),
            status="OPTIMAL" if optimal else "FEASIBLE",
            cost=cost,
            bound=cost if optimal else self.bound,
            gap=0.0 if optimal else gap,
            cp_status=cp_status,
            source=self.source,
            units=n_units,
            wall_s=wall_s,
        )


def _joint_infeasible(c: object) -> NoFeasiblePlanError:
    names = [
        name
        for name, active in (
            ("max_handovers", getattr(c, "max_handovers", None) is not None),
            ("sat_budget_mb", getattr(c, "sat_budget_mb", None) is not None),
            ("min_dwell", getattr(c, "has_dwell", False)),
        )
        if active
    ]
    joined = "+".join(names)
    return NoFeasiblePlanError(
        f"no plan meets {', '.join(names)} together (each alone can be met)", constraint=joined
    )


class _StopAtTarget(cp_model.CpSolverSolutionCallback):
    """Stop the search once a solution is within the target objective."""

    def __init__(self, target: int) -> None:
        super().__init__()
        self.target = target

    def on_solution_callback(self) -> None:
        if self.objective_value <= self.target:
            self.stop_search()


class _CpModel:
    """The CP-SAT model over units (see module docstring)."""

    def __init__(self, problem: HandoverProblem, units: Units, encoding: str) -> None:
        self.problem = problem
        self.units = units
        self.model = cp_model.CpModel()
        n_units, n_net = units.node_cost.shape
        self.x = np.full((n_units, n_net), -1, dtype=np.int64)  # proto index, -1 = not allowed
        self.vars: dict[int, cp_model.IntVar] = {}
        groups = None if encoding == "pairs" else switch_groups(problem)
        if encoding == "groups" and groups is None:
            raise InvalidInputError(
                "switch costs do not decompose over network groups; use encoding='pairs'",
                field="encoding",
            )
        self._variables()
        terms = self._node_terms()
        switch_terms, handovers = (
            self._group_switches(groups) if groups is not None else self._pair_switches()
        )
        self._global(handovers)
        self._dwell()
        every = terms + switch_terms
        self.model.minimize(
            cp_model.LinearExpr.weighted_sum([v for v, _ in every], [k for _, k in every])
        )
        # terms a solution can switch on: one node per unit plus the switch literals per boundary
        per_boundary = 2 * len(groups.members) if groups is not None else 1
        self.max_terms = n_units + max(n_units - 1, 0) * per_boundary

    # -- variables and objective --------------------------------------------------------------
    def _variables(self) -> None:
        m = self.model
        for u, row in enumerate(self.units.allowed):
            lits = []
            for n in np.flatnonzero(row):
                var = m.new_bool_var(f"x_{u}_{n}")
                self.x[u, n] = var.index
                self.vars[var.index] = var
                lits.append(var)
            m.add_exactly_one(lits)

    def var(self, u: int, n: int) -> cp_model.IntVar | None:
        idx = int(self.x[u, n])
        return self.vars[idx] if idx >= 0 else None

    def _node_terms(self) -> list[tuple[cp_model.IntVar, int]]:
        cost = np.rint(self.units.node_cost * _COST_SCALE).astype(np.int64)
        return [
            (self.vars[int(i)], int(cost[u, n]))
            for (u, n), i in np.ndenumerate(self.x)
            if i >= 0 and cost[u, n] != 0
        ]

    def _group_switches(
        self, groups: SwitchGroups
    ) -> tuple[list[tuple[cp_model.IntVar, int]], list[cp_model.IntVar]]:
        """Per boundary and group: enter/leave literals fixed by the membership change."""
        m, units = self.model, self.units
        n_units = len(units)
        entry = np.rint(units.entry_cost * _COST_SCALE).astype(np.int64)
        cin = np.rint(groups.in_cost * _COST_SCALE).astype(np.int64)
        cout = np.rint(groups.out_cost * _COST_SCALE).astype(np.int64)
        terms: list[tuple[cp_model.IntVar, int]] = []
        handovers: list[cp_model.IntVar] = []
        self.group_lits: list[list[tuple[cp_model.IntVar, cp_model.IntVar, tuple[int, ...]]]] = []
        for u in range(1, n_units):
            here = []
            for g, members in enumerate(groups.members):
                now = [v for k in members if (v := self.var(u, k)) is not None]
                before = [v for k in members if (v := self.var(u - 1, k)) is not None]
                if not now and not before:
                    continue
                enter, leave = m.new_bool_var(f"in_{u}_{g}"), m.new_bool_var(f"out_{u}_{g}")
                m.add(enter - leave == sum(now) - sum(before))
                m.add_at_most_one(enter, leave)
                here.append((enter, leave, members))
                extra = int(entry[u, members[0]]) if len(members) == 1 else 0
                if cin[g] + extra:
                    terms.append((enter, int(cin[g]) + extra))
                if cout[g]:
                    terms.append((leave, int(cout[g])))
                if len(members) == 1:
                    handovers.append(enter)
            self.group_lits.append(here)
        return terms, handovers

    def _pair_switches(self) -> tuple[list[tuple[cp_model.IntVar, int]], list[cp_model.IntVar]]:
        """One literal per boundary and network pair, pushed up by both endpoints."""
        m, units, p = self.model, self.units, self.problem
        entry = np.rint(units.entry_cost * _COST_SCALE).astype(np.int64)
        sw = np.rint(p.switch_cost * _COST_SCALE).astype(np.int64)
        terms: list[tuple[cp_model.IntVar, int]] = []
        handovers: list[cp_model.IntVar] = []
        self.pair_lits: list[tuple[int, int, int, cp_model.IntVar]] = []
        for u in range(1, len(units)):
            for a in np.flatnonzero(units.allowed[u - 1]):
                for b in np.flatnonzero(units.allowed[u]):
                    if a == b:
                        continue
                    y = m.new_bool_var(f"y_{u}_{a}_{b}")
                    va, vb = self.var(u - 1, int(a)), self.var(u, int(b))
                    assert va is not None and vb is not None
                    m.add_bool_or(y, ~va, ~vb)
                    terms.append((y, int(sw[a, b] + entry[u, b])))
                    handovers.append(y)
                    self.pair_lits.append((u, int(a), int(b), y))
        return terms, handovers

    # -- constraints --------------------------------------------------------------------------
    def _global(self, handovers: list[cp_model.IntVar]) -> None:
        c = self.problem.constraints
        if c.max_handovers is not None:
            self.model.add(sum(handovers, cp_model.LinearExpr.constant(0)) <= c.max_handovers)
        if c.sat_budget_mb is not None:
            # round data up and the budget down: a CP-SAT plan always fits the real budget
            kb = np.ceil(self.units.sat_mb * _MB_SCALE - 1e-9).astype(np.int64)
            used = [
                (self.vars[int(i)], int(kb[u, n]))
                for (u, n), i in np.ndenumerate(self.x)
                if i >= 0 and kb[u, n] > 0
            ]
            cap = math.floor(c.sat_budget_mb * _MB_SCALE + 1e-9)
            if used:
                self.model.add(sum((k * v for v, k in used), cp_model.LinearExpr.constant(0)) <= cap)

    def _dwell(self) -> None:
        c = self.problem.constraints
        if not c.has_dwell:
            return
        units = self.units
        end = dwell_end_index(units.t_s, units.distance_m, c.min_dwell_s, c.min_dwell_m)
        land = np.minimum(end[:, None], _next_disallowed(units.allowed)) - 1
        for (u, n), i in np.ndenumerate(self.x):
            if u == 0 or i < 0 or land[u, n] <= u:
                continue
            here, before = self.vars[int(i)], self.var(u - 1, n)
            for v in range(u + 1, int(land[u, n]) + 1):
                later = self.var(v, n)
                assert later is not None  # allowed up to land by construction
                if before is None:
                    self.model.add_implication(here, later)
                else:
                    self.model.add(later - here + before >= 0)

    # -- hint and solve -----------------------------------------------------------------------
    def hint(self, unit_plan: IntArray) -> None:
        """Hint every literal with the values ``unit_plan`` gives them."""
        m = self.model
        for (u, n), i in np.ndenumerate(self.x):
            if i >= 0:
                m.add_hint(self.vars[int(i)], int(unit_plan[u] == n))
        for u, lits in enumerate(getattr(self, "group_lits", []), start=1):
            a, b = int(unit_plan[u - 1]), int(unit_plan[u])
            for enter, leave, members in lits:
                m.add_hint(enter, int(b in members and a not in members))
                m.add_hint(leave, int(a in members and b not in members))
        for u, a, b, y in getattr(self, "pair_lits", []):
            m.add_hint(y, int(unit_plan[u - 1] == a and unit_plan[u] == b))

    def solve(
        self,
        time_limit_s: float,
        seed: int,
        num_workers: int | None,
        target_cost: float,
        gap_limit: float,
    ) -> tuple[str, IntArray | None, float | None]:
        """Run CP-SAT; return status name, unit plan (OPTIMAL/FEASIBLE only), bound in cost."""
        solver = cp_model.CpSolver()
        prm = solver.parameters
        prm.max_time_in_seconds = float(time_limit_s)
        prm.random_seed = int(seed)
        workers = num_workers or min(os.cpu_count() or 1, 8)
        prm.num_workers = int(workers)
        if workers <= 2:
            prm.extra_subsolvers.append("max_lp")
        prm.relative_gap_limit = float(gap_limit)
        callback = _StopAtTarget(math.floor(target_cost * _COST_SCALE))
        status = solver.solve(self.model, callback)
        name = solver.status_name(status)
        log.info(
            "cp-sat %s in %.2f s: objective %s, bound %s",
            name, solver.wall_time, solver.objective_value, solver.best_objective_bound,
        )
        if status == cp_model.MODEL_INVALID:
            raise CommapError(f"internal error: CP-SAT rejected the model ({self.model.validate()})")
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return name, None, None
        values = np.asarray(solver.response_proto.solution, dtype=np.int64)
        picked = np.where(self.x >= 0, values[np.maximum(self.x, 0)], 0)
        plan = picked.argmax(axis=1).astype(np.int64)
        # objective integers were rounded per term: widen the bound by the rounding slack
        slack = 0.5 * self.max_terms / _COST_SCALE
        bound = solver.best_objective_bound / _COST_SCALE - slack
        return name, plan, bound
