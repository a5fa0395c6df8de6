"""Handover planning: problem, solvers (exact DP, CP-SAT), evaluator, plans and route choice.

Typical use::

    from commap.plan import Constraints, plan_corridor, write_plan
    plan = plan_corridor(corridor, matrix, catalogue, app="teleoperation",
                      constraints=Constraints(min_dwell_s=10, max_handovers=5))
    write_plan(plan, "plan.geojson")
"""

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
