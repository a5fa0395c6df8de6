"""The planning facade (what the CLI and the server call): bad requests named by field, plans on
the real default map (origin -> destination, waypoints, route alternatives) and a recorded drive.

The trip is the README's: Andorra la Vella (42.5063, 1.5218) to Pas de la Casa (42.5430, 1.7330),
over the Envalira pass into French roaming coverage.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from commap.errors import InvalidInputError, NoFeasiblePlanError
from commap.geo.routefile import read_route_file
from commap.map.comm_map import CommMap
from commap.plan import defaults, evaluate_plan
from commap.plan.problem import HandoverProblem
from commap.radio.pathloss import ground_distance_m
from commap.service.planning import PlanRequest, PlanResult, plan_route
from commap.timeutil import parse_time
from tests.support.paths import TEST_DATA

LA_VELLA = (1.5218, 42.5063)  # (lon, lat)
PAS_DE_LA_CASA = (1.7330, 42.5430)
OFF_ROUTE = (1.5930, 42.5305)  # end of Carrer de la Plana, 650 m off the direct route
TRIP: dict[str, Any] = {"origin": LA_VELLA, "destination": PAS_DE_LA_CASA}
CORK_DRIVE = TEST_DATA / "measured" / "cork_heldout_route.csv"
AUTOBAHN_TRACE = TEST_DATA / "corridor" / "autobahn_a30_trace.csv"  # in Germany


@pytest.fixture(scope="module")
def trip(andorra: CommMap) -> PlanResult:
    """The README trip with the default request."""
    return plan_route(andorra, PlanRequest(**TRIP))


def _distance_m(a: tuple[float, float], lon: float, lat: float) -> float:
    return float(ground_distance_m(a[0], a[1], lon, lat))


# ------------------------------------------------------------------------- request validation


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({}, "route"),  # neither endpoints nor a route
        ({"origin": LA_VELLA}, "destination"),
        ({"destination": PAS_DE_LA_CASA}, "destination"),
        ({**TRIP, "min_dwell_s": -1.0}, "min_dwell_s"),
        ({**TRIP, "min_dwell_s": math.nan}, "min_dwell_s"),
        ({**TRIP, "min_dwell_m": math.inf}, "min_dwell_m"),
        ({**TRIP, "seconds_per_drop": -60.0}, "seconds_per_drop"),
        ({**TRIP, "time_limit_s": 0.0}, "time_limit_s"),
        ({**TRIP, "sat_budget_mb": -0.5}, "sat_budget_mb"),
        ({**TRIP, "max_handovers": -1}, "max_handovers"),
        ({**TRIP, "alternatives": 0}, "alternatives"),
        ({**TRIP, "alternatives": 11}, "alternatives"),
        ({**TRIP, "alternatives": 2, "waypoints": (OFF_ROUTE,)}, "alternatives"),
        ({**TRIP, "app": "video-call"}, "app"),
        ({**TRIP, "weights": {"drop": 1.0}}, "weights"),  # the weight is called "drops"
        ({**TRIP, "weights": {"drops": -1.0}}, "weights.drops"),
    ],
)
def test_bad_request_names_its_field(request_fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        PlanRequest(**request_fields)
    assert caught.value.field == field
    assert str(caught.value)  # with a message a user can act on


def test_a_route_excludes_endpoints_and_waypoints() -> None:
    route = read_route_file(CORK_DRIVE)
    with pytest.raises(InvalidInputError) as both:
        PlanRequest(origin=LA_VELLA, destination=PAS_DE_LA_CASA, route=route)
    assert both.value.field == "route"
    with pytest.raises(InvalidInputError) as waypoints:
        PlanRequest(route=route, waypoints=(OFF_ROUTE,))
    assert waypoints.value.field == "waypoints"


def test_unknown_weight_lists_the_known_ones() -> None:
    with pytest.raises(
        InvalidInputError, match=r"unknown objective weight\(s\) drop; known: .*drops"
    ):
        PlanRequest(origin=LA_VELLA, destination=PAS_DE_LA_CASA, weights={"drop": 1.0})


def test_positions_outside_the_map_are_named(andorra: CommMap) -> None:
    paris = (2.35, 48.85)
    with pytest.raises(InvalidInputError, match="outside map andorra") as origin:
        plan_route(andorra, PlanRequest(origin=paris, destination=PAS_DE_LA_CASA))
    assert origin.value.field == "origin"
    with pytest.raises(InvalidInputError) as destination:
        plan_route(andorra, PlanRequest(origin=LA_VELLA, destination=paris))
    assert destination.value.field == "destination"
    with pytest.raises(InvalidInputError) as route:
        plan_route(andorra, PlanRequest(route=read_route_file(AUTOBAHN_TRACE)))
    assert route.value.field == "route"


# ------------------------------------------------------------------- origin -> destination


def test_trip_runs_from_origin_to_destination(trip: PlanResult) -> None:
    route = trip.route
    assert _distance_m(LA_VELLA, route.lon[0], route.lat[0]) < 150.0  # snapped to the nearest road
    assert _distance_m(PAS_DE_LA_CASA, route.lon[-1], route.lat[-1]) < 150.0
    assert "CG-2" in route.name  # the main road over the pass
    assert 25_000.0 < trip.corridor.total_length_m < 45_000.0  # 23 km as the crow flies
    assert len(trip.corridor) == trip.matrix.shape[0] == len(trip.plan.assignment)


def test_trip_departs_at_the_map_default_and_keeps_the_request(
    trip: PlanResult, andorra: CommMap
) -> None:
    assert trip.plan.departure_s == andorra.default_departure_s
    assert trip.plan.app == "telemetry"
    assert trip.plan.constraints["min_dwell_s"] == defaults.MIN_DWELL_S


def test_trip_plan_is_feasible_and_uses_the_roaming_operator(trip: PlanResult) -> None:
    plan = trip.plan
    assert plan.solver.status == "OPTIMAL"
    networks = {plan.network_ids[i] for i in plan.assignment}
    assert "fr-lte" in networks  # French coverage at Pas de la Casa
    assert networks <= set(trip.matrix.network_ids)
    distances = [h.distance_m for h in plan.handovers]
    assert distances == sorted(distances)
    assert plan.handovers[-1].to_network == plan.network_ids[plan.assignment[-1]]


def test_trip_summary_agrees_with_the_plan(trip: PlanResult) -> None:
    summary = trip.summary()
    assert summary["route"] == trip.route.name
    assert summary["length_m"] == pytest.approx(trip.corridor.total_length_m)
    assert summary["segments"] == len(trip.corridor)
    assert summary["handovers"] == len(trip.plan.handovers) == trip.plan.totals.handovers
    assert summary["totals"]["expected_drops"] == pytest.approx(trip.plan.totals.expected_drops)


def test_same_request_same_plan(trip: PlanResult, andorra: CommMap) -> None:
    again = plan_route(andorra, PlanRequest(origin=LA_VELLA, destination=PAS_DE_LA_CASA))
    np.testing.assert_array_equal(again.plan.assignment, trip.plan.assignment)


def test_departure_and_handover_cap_are_applied(trip: PlanResult, andorra: CommMap) -> None:
    evening_s = parse_time("2025-01-23T18:00:00Z")
    request = PlanRequest(
        origin=LA_VELLA,
        destination=PAS_DE_LA_CASA,
        departure_s=evening_s,
        app="teleoperation",
        max_handovers=3,
    )
    capped = plan_route(andorra, request)
    assert capped.plan.departure_s == evening_s
    assert capped.corridor.t_s[0] == pytest.approx(evening_s, abs=5.0)
    assert len(capped.plan.handovers) <= 3 < len(trip.plan.handovers)
    problem = HandoverProblem.build(
        capped.corridor,
        capped.matrix,
        andorra.catalogue,
        app="teleoperation",
        constraints=request.constraints(),
    )
    assert evaluate_plan(problem, capped.plan.assignment).feasible


def test_a_plan_without_handovers_stays_on_one_network_and_states_what_it_loses(
    andorra: CommMap, trip: PlanResult
) -> None:
    # the pass has coverage gaps: staying on one network is possible, and costs service
    still = plan_route(andorra, PlanRequest(**TRIP, max_handovers=0)).plan
    assert still.totals.handovers == 0 and len(set(still.segment_networks)) == 1
    assert still.totals.expected_loss_s > trip.plan.totals.expected_loss_s


def test_impossible_constraints_raise(andorra: CommMap) -> None:
    # a satellite budget of 0 MB with a handover limit of 0, starting on a satellite
    request = PlanRequest(**TRIP, max_handovers=0, sat_budget_mb=0.0, initial_network="starlink")
    with pytest.raises(NoFeasiblePlanError) as caught:
        plan_route(andorra, request)
    assert "sat_budget_mb" in caught.value.constraint


# ------------------------------------------------------------------------------- waypoints


def test_waypoint_is_visited_and_legs_are_joined(trip: PlanResult, andorra: CommMap) -> None:
    via = plan_route(
        andorra, PlanRequest(origin=LA_VELLA, destination=PAS_DE_LA_CASA, waypoints=(OFF_ROUTE,))
    )
    route = via.route
    nearest_m = ground_distance_m(OFF_ROUTE[0], OFF_ROUTE[1], route.lon, route.lat).min()
    assert nearest_m < 20.0  # a dead end: the route goes there and back
    assert " / " in route.name  # one name per leg
    assert via.corridor.total_length_m > trip.corridor.total_length_m  # a detour
    assert _distance_m(PAS_DE_LA_CASA, route.lon[-1], route.lat[-1]) < 150.0
    assert len(via.plan.assignment) == len(via.corridor)


# ---------------------------------------------------------------------------- alternatives


def test_alternatives_are_planned_and_the_best_trade_off_is_chosen(andorra: CommMap) -> None:
    request = PlanRequest(origin=LA_VELLA, destination=PAS_DE_LA_CASA, alternatives=3)
    result = plan_route(andorra, request)
    choice = result.choice
    assert choice is not None
    assert 2 <= len(choice.options) <= 3
    assert len({round(o.length_m) for o in choice.options}) == len(choice.options)  # distinct
    feasible = [o for o in choice.options if o.feasible]
    best = choice.options[choice.best]
    assert best.score_s == min(o.score_s for o in feasible)
    # score: travel time plus the request's price of an expected drop
    assert best.score_s == pytest.approx(best.travel_time_s + 60.0 * best.expected_drops)
    assert result.route.name == best.name
    assert result.corridor.total_length_m == pytest.approx(best.length_m)
    assert result.plan.totals.expected_drops == pytest.approx(best.expected_drops)


def test_one_route_has_no_choice(trip: PlanResult) -> None:
    assert trip.choice is None


# --------------------------------------------------------------------------- recorded drive


def test_recorded_drive_departs_at_its_first_timestamp(cork: CommMap) -> None:
    route = read_route_file(CORK_DRIVE)
    result = plan_route(cork, PlanRequest(route=route))
    assert result.route is route  # planned as driven, not re-routed
    assert route.t_s is not None
    first_s = parse_time("2019-12-03T07:29:22Z")
    assert result.plan.departure_s == first_s == route.t_s[0]
    assert first_s <= result.corridor.t_s.min() and result.corridor.t_s.max() <= route.t_s[-1]
    assert set(result.plan.totals.time_share) <= set(cork.catalogue.ids)
    assert len(result.plan.assignment) == len(result.corridor)
