"""The planner on the default map: real roads, modelled operators, real LEO constellations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from commap.map.comm_map import CommMap
from commap.plan import Constraints, HandoverProblem, Plan, evaluate_plan, solve, solve_cpsat

ANDORRA_LA_VELLA = (1.5218, 42.5063)  # (lon, lat)
ENVALIRA_EAST_PORTAL = (1.7331, 42.5468)  # through the Envalira road tunnel
DWELL_S = 10.0


def _problem(andorra: CommMap, constraints: Constraints) -> HandoverProblem:
    route = andorra.routes(ANDORRA_LA_VELLA, ENVALIRA_EAST_PORTAL)[0]
    corridor = andorra.corridor(route)
    return HandoverProblem.build(
        corridor, andorra.quality(corridor), andorra.catalogue, constraints=constraints
    )


@pytest.fixture(scope="module")
def envalira(andorra: CommMap) -> tuple[HandoverProblem, Plan]:
    # with the hard rule: an unusable network is left wherever another is usable
    problem = _problem(andorra, Constraints(min_dwell_s=DWELL_S, avoid_unusable=True))
    return problem, solve(problem)


def _usable(problem: HandoverProblem) -> np.ndarray:
    return problem.point_outage < problem.link.unusable_outage_prob


def test_route_has_a_tunnel_and_coverage_gaps(envalira: tuple[HandoverProblem, Plan]) -> None:
    problem, _ = envalira
    usable = _usable(problem)
    sat = np.array([n.is_satellite for n in problem.networks])
    assert problem.corridor.in_tunnel.sum() >= 10
    assert not usable[problem.corridor.in_tunnel].any()  # nothing reaches into the tunnel
    gap = ~usable[:, ~sat].any(axis=1) & usable[:, sat].any(axis=1)
    assert gap.sum() >= 3  # stretches with no terrestrial cover but a satellite in view


def test_plan_switches_before_a_coverage_gap(envalira: tuple[HandoverProblem, Plan]) -> None:
    problem, plan = envalira
    usable = _usable(problem)
    a = plan.assignment
    rows = np.arange(a.size)
    # wherever some network is usable, the plan is on a usable one
    assert usable[rows, a][usable.any(axis=1)].all()
    sat = np.array([n.is_satellite for n in problem.networks])
    gap = np.asarray(~usable[:, ~sat].any(axis=1) & usable[:, sat].any(axis=1), dtype=bool)
    starts = np.flatnonzero(gap & ~np.concatenate([[False], gap[:-1]]))
    assert starts.size
    for s in starts.tolist():
        # already on a satellite at the first segment of the gap: the switch came before it
        assert problem.networks[a[s]].is_satellite, f"gap at segment {s}"


def test_no_useless_switch_in_the_tunnel(envalira: tuple[HandoverProblem, Plan]) -> None:
    problem, plan = envalira
    inside = np.flatnonzero(problem.corridor.in_tunnel)
    dead = set(inside.tolist())
    # a switch inside the tunnel buys nothing: every network is out there
    assert not [h for h in plan.handovers if h.segment in dead and h.segment - 1 in dead]


def test_dwell_is_respected_on_the_map(envalira: tuple[HandoverProblem, Plan]) -> None:
    problem, plan = envalira
    assert evaluate_plan(problem, plan.assignment).feasible
    for h, nxt in itertools.pairwise(plan.handovers):
        if nxt.eta_s - h.eta_s < DWELL_S:
            # only a forced exit: the network entered at h stops being allowed at nxt
            assert not problem.allowed[nxt.segment, problem.network_ids.index(h.to_network)]


def test_constrained_plan_on_the_map(
    andorra: CommMap, envalira: tuple[HandoverProblem, Plan]
) -> None:
    _, free = envalira
    limit = max(free.totals.handovers // 2, 1)
    problem = _problem(andorra, Constraints(min_dwell_s=DWELL_S, max_handovers=limit))
    plan = solve(problem, time_limit_s=10.0)
    assert plan.totals.handovers <= limit < free.totals.handovers
    assert plan.solver.name == "cp-sat" and plan.solver.gap < 0.05
    assert plan.totals.cost >= free.totals.cost - 1e-9  # a limit never makes the plan cheaper


@pytest.mark.parametrize("solver", ["dp", "cpsat"])
def test_readme_plan_keeps_the_dwell_up_to_arrival(andorra: CommMap, solver: str) -> None:
    # the README's plan: teleoperation, 10 s dwell (at most 6 handovers with CP-SAT)
    route = andorra.routes((1.5218, 42.5063), (1.7330, 42.5430))[0]
    corridor = andorra.corridor(route)
    constraints = Constraints(min_dwell_s=DWELL_S, max_handovers=6 if solver == "cpsat" else None)
    problem = HandoverProblem.build(
        corridor,
        andorra.quality(corridor),
        andorra.catalogue,
        app="teleoperation",
        constraints=constraints,
    )
    plan = solve(problem, solver=solver)
    assert evaluate_plan(problem, plan.assignment).feasible
    arrival_s = float(corridor.eta_s[-1] + corridor.duration_s[-1])
    a = plan.assignment
    for i in (np.flatnonzero(a[1:] != a[:-1]) + 1).tolist():
        forced = not problem.allowed[i, a[i - 1]]
        if not forced and problem.allowed[i:, a[i]].all():
            assert arrival_s - corridor.eta_s[i] >= DWELL_S - 1e-9, f"switch at segment {i}"


def test_readme_handover_limit_is_decided_by_the_dp(andorra: CommMap) -> None:
    # the README's teleoperation request: the exact handover-limit DP answers without CP-SAT,
    # and CP-SAT run to the end finds nothing cheaper
    route = andorra.routes((1.5218, 42.5063), (1.7330, 42.5430))[0]
    corridor = andorra.corridor(route)
    problem = HandoverProblem.build(
        corridor,
        andorra.quality(corridor),
        andorra.catalogue,
        app="teleoperation",
        constraints=Constraints(min_dwell_s=DWELL_S, max_handovers=6),
    )
    by_dp = solve_cpsat(problem, time_limit_s=60.0)
    by_cpsat = solve_cpsat(problem, time_limit_s=60.0, gap_limit=0.0, limited_dp=False)
    assert (by_dp.source, by_dp.cp_status, by_dp.status) == ("dp", "NOT_RUN", "OPTIMAL")
    ev = evaluate_plan(problem, by_dp.assignment)
    assert ev.feasible and ev.handovers <= 6
    assert ev.cost == pytest.approx(by_dp.cost, abs=1e-12)
    assert by_cpsat.status == "OPTIMAL"
    assert by_dp.cost <= by_cpsat.cost + 1e-9
