"""Handover planning: problem, solvers (exact DP, CP-SAT), evaluator, plans and route choice.

Typical use::

    from commap.plan import Constraints, plan_corridor, write_plan
    plan = plan_corridor(corridor, matrix, catalogue, app="teleoperation",
                      constraints=Constraints(min_dwell_s=10, max_handovers=5))
    write_plan(plan, "plan.geojson")

The names below load their module on first use, so ``import commap.plan.defaults`` (what the
command line needs to show its options) does not pull in the solvers (scipy, OR-Tools).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from commap.plan.cpsat import CpSatResult, solve_cpsat
    from commap.plan.dp import DPResult, LagrangianResult, lagrangian_search, solve_dp
    from commap.plan.evaluator import Evaluation, evaluate_plan
    from commap.plan.plan import (
        SOLVERS,
        Handover,
        Plan,
        PlanTotals,
        SolverReport,
        make_plan,
        plan_corridor,
        solve,
        write_plan,
    )
    from commap.plan.problem import Constraints, HandoverProblem, Units, compress
    from commap.plan.routes import RouteCandidate, RouteChoice, RouteOption, choose_route

_HOME = {
    "CpSatResult": "cpsat",
    "solve_cpsat": "cpsat",
    "DPResult": "dp",
    "LagrangianResult": "dp",
    "lagrangian_search": "dp",
    "solve_dp": "dp",
    "Evaluation": "evaluator",
    "evaluate_plan": "evaluator",
    "SOLVERS": "plan",
    "Handover": "plan",
    "Plan": "plan",
    "PlanTotals": "plan",
    "SolverReport": "plan",
    "make_plan": "plan",
    "plan_corridor": "plan",
    "solve": "plan",
    "write_plan": "plan",
    "Constraints": "problem",
    "HandoverProblem": "problem",
    "Units": "problem",
    "compress": "problem",
    "RouteCandidate": "routes",
    "RouteChoice": "routes",
    "RouteOption": "routes",
    "choose_route": "routes",
}

__all__ = [
    "SOLVERS",
    "Constraints",
    "CpSatResult",
    "DPResult",
    "Evaluation",
    "Handover",
    "HandoverProblem",
    "LagrangianResult",
    "Plan",
    "PlanTotals",
    "RouteCandidate",
    "RouteChoice",
    "RouteOption",
    "SolverReport",
    "Units",
    "choose_route",
    "compress",
    "evaluate_plan",
    "lagrangian_search",
    "make_plan",
    "plan_corridor",
    "solve",
    "solve_cpsat",
    "solve_dp",
    "write_plan",
]


def __getattr__(name: str) -> Any:
    """Load the module that defines ``name`` on first use."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
