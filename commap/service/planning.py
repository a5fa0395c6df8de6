"""Planning facade: one request in, a plan (and its route alternatives) out.

Front doors (CLI, gRPC server) call :func:`plan_route`; it resolves the route (origin ->
destination on the road graph, explicit waypoints or a polyline), cuts the corridor, samples
the map and runs the solver; with ``alternatives > 1`` it plans each alternative route and
picks by the travel-time / expected-drops trade-off.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from commap.errors import InvalidInputError
from commap.geo.corridor import Corridor, Route, depart
from commap.map.comm_map import CommMap
from commap.plan import (
    Constraints,
    Plan,
    RouteCandidate,
    RouteChoice,
    choose_route,
    defaults,
    plan_corridor,
)
from commap.radio.link import LinkModel, Objective, app_profile
from commap.radio.quality import QualityMatrix
from commap.radio.vehicle import vehicle_setup
from commap.service.plan_cache import PlanInputsCache, route_key
from commap.timeutil import check_trip_times

T = TypeVar("T")

__all__ = [
    "PlanRequest",
    "PlanResult",
    "plan_route",
    "plan_route_once",
    "request_key",
    "resolve_routes",
]


@dataclass(frozen=True, kw_only=True)
class PlanRequest:
    """What a user asks for. Positions are ``(lon, lat)`` WGS84 degrees.

    Exactly one of ``origin``+``destination`` (optionally with ``waypoints`` between them) or
    ``route`` (an explicit polyline / recorded drive) must be given. ``departure_s`` defaults
    to the recorded drive's first timestamp, else the map's default departure (its own, else
    now). A departure more than a month from a constellation's orbital elements is refused
    unless ``allow_stale_elements``.
    ``weights`` overrides :class:`commap.radio.link.Objective` fields by name. ``initial_network`` is
    the network the vehicle is on at the start (re-plans during a drive). ``vehicle`` names a
    set-up of :data:`commap.radio.vehicle.VEHICLE_SETUPS` (its switch interruptions, whether it
    carries a satellite terminal); None plans with the link model's times. Unset options take
    the planning defaults of :mod:`commap.plan.defaults`.

    Examples
    --------
    >>> request = PlanRequest(origin=(1.52, 42.51), destination=(1.73, 42.54))
    >>> request.min_dwell_s, request.time_limit_s, request.alternatives
    (10.0, 5.0, 1)
    """

    origin: tuple[float, float] | None = None
    destination: tuple[float, float] | None = None
    waypoints: tuple[tuple[float, float], ...] = ()
    route: Route | None = None
    departure_s: float | None = None
    app: str = defaults.APP
    min_dwell_s: float = defaults.MIN_DWELL_S
    min_dwell_m: float = defaults.MIN_DWELL_M
    max_handovers: int | None = defaults.MAX_HANDOVERS
    sat_budget_mb: float | None = defaults.SAT_BUDGET_MB
    alternatives: int = defaults.ALTERNATIVES
    seconds_per_drop: float = defaults.SECONDS_PER_DROP
    weights: dict[str, float] = field(default_factory=dict)
    time_limit_s: float = defaults.SOLVER_TIME_LIMIT_S
    seed: int = defaults.SEED
    initial_network: str | None = None
    allow_stale_elements: bool = False
    vehicle: str | None = None

    def __post_init__(self) -> None:
        has_od = self.origin is not None or self.destination is not None
        if has_od == (self.route is not None):
            raise InvalidInputError(
                "give either origin and destination (with optional waypoints) or a route polyline",
                field="route",
            )
        if has_od and (self.origin is None or self.destination is None):
            raise InvalidInputError(
                "origin and destination must both be given", field="destination"
            )
        if self.route is not None and self.waypoints:
            raise InvalidInputError(
                "waypoints go with origin/destination, not a polyline", field="waypoints"
            )
        _check_number(self.min_dwell_s, "min_dwell_s", low=0.0)
        _check_number(self.min_dwell_m, "min_dwell_m", low=0.0)
        _check_number(self.seconds_per_drop, "seconds_per_drop", low=0.0)
        _check_number(self.time_limit_s, "time_limit_s", low=1e-3)
        if self.sat_budget_mb is not None:
            _check_number(self.sat_budget_mb, "sat_budget_mb", low=0.0)
        if self.max_handovers is not None and self.max_handovers < 0:
            raise InvalidInputError("max_handovers must be >= 0", field="max_handovers")
        if not 1 <= self.alternatives <= defaults.MAX_ALTERNATIVES:
            raise InvalidInputError(
                f"alternatives must be within 1..{defaults.MAX_ALTERNATIVES}", field="alternatives"
            )
        if self.alternatives > 1 and (self.route is not None or self.waypoints):
            raise InvalidInputError(
                "route alternatives need origin and destination without waypoints",
                field="alternatives",
            )
        app_profile(self.app)  # raises for an unknown class
        if self.vehicle is not None and vehicle_setup(self.vehicle).bonded:
            raise InvalidInputError(
                f"vehicle {self.vehicle}: the planner chooses one network per segment, not a "
                "bonded pair; plan with dual_modem",
                field="vehicle",
            )
        self.objective()  # raises for unknown weight names

    def objective(self) -> Objective:
        """The objective with this request's weight overrides."""
        known = {f.name for f in dataclasses.fields(Objective)}
        unknown = sorted(set(self.weights) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown objective weight(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                field="weights",
            )
        for name, value in self.weights.items():
            _check_number(value, f"weights.{name}", low=0.0)
        return Objective(**self.weights)

    def constraints(self) -> Constraints:
        """The hard constraints of this request."""
        return Constraints(
            min_dwell_s=self.min_dwell_s,
            min_dwell_m=self.min_dwell_m,
            max_handovers=self.max_handovers,
            sat_budget_mb=self.sat_budget_mb,
            initial_network=self.initial_network,
        )


def _check_number(value: float, name: str, *, low: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < low:
        raise InvalidInputError(f"{name} must be a finite number >= {low}", field=name)


@dataclass(frozen=True)
class PlanResult:
    """The chosen plan with what it was made from, and the route trade-off when asked."""

    plan: Plan
    route: Route
    corridor: Corridor
    matrix: QualityMatrix
    choice: RouteChoice | None = None
    notices: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """Short JSON-ready summary (route length, time, totals, solver)."""
        return {
            "route": self.route.name,
            "length_m": self.corridor.total_length_m,
            "travel_time_s": self.corridor.total_duration_s,
            "segments": len(self.corridor),
            "handovers": len(self.plan.handovers),
            "totals": dataclasses.asdict(self.plan.totals),
        }


def _join(routes: list[Route]) -> Route:
    """Concatenate consecutive legs into one route (shared vertices dropped)."""
    if len(routes) == 1:
        return routes[0]
    keep = [slice(None)] + [slice(1, None)] * (len(routes) - 1)
    return Route(
        lon=np.concatenate([r.lon[k] for r, k in zip(routes, keep, strict=True)]),
        lat=np.concatenate([r.lat[k] for r, k in zip(routes, keep, strict=True)]),
        speed_mps=np.concatenate([r.speed_mps for r in routes]),
        in_tunnel=np.concatenate([r.in_tunnel for r in routes]),
        on_bridge=np.concatenate([r.on_bridge for r in routes]),
        edges=tuple(e for r in routes for e in r.edges),
        name=" / ".join(r.name for r in routes if r.name),
    )


def resolve_routes(
    cmap: CommMap, request: PlanRequest, *, cache: PlanInputsCache | None = None
) -> list[Route]:
    """The candidate routes of a request (one, or up to ``alternatives``).

    With ``cache``, routes between endpoints found before on the same map are reused.
    """
    if request.route is None and cache is not None:
        key = (
            "routes",
            request.origin,
            request.destination,
            request.waypoints,
            request.alternatives,
        )
        return list(cache.get(cmap, key, lambda: tuple(resolve_routes(cmap, request))))
    if request.route is not None:
        cmap.check_inside(request.route.lon, request.route.lat, field="route")
        return [request.route]
    assert request.origin is not None and request.destination is not None
    if request.alternatives > 1:
        return cmap.routes(request.origin, request.destination, k=request.alternatives)
    stops = [request.origin, *request.waypoints, request.destination]
    legs = [cmap.routes(a, b)[0] for a, b in itertools.pairwise(stops)]
    return [_join(legs)]


def plan_route(
    cmap: CommMap,
    request: PlanRequest,
    *,
    link: LinkModel | None = None,
    admit: Callable[[int], None] | None = None,
    cache: PlanInputsCache | None = None,
) -> PlanResult:
    """Resolve the route(s), sample the map and plan.

    ``admit``, if given, is called with the work ahead (corridor segments times networks, over
    every candidate route) once the routes are cut and before the map is sampled; it raises to
    refuse a request too large for its time. ``cache``, if given, keeps the routes, corridors
    and sampled quality of the plan for later plans on the same map (the plan is the same with
    or without it).

    Raises
    ------
    InvalidInputError
        Bad request (positions outside the map, unknown app, trip times past year 9999, ...).
    NoFeasiblePlanError
        The constraints cannot be met on any candidate route.
    SolverTimeoutError
        No plan within ``time_limit_s``.
    """
    routes = resolve_routes(cmap, request, cache=cache)
    settings: dict[str, Any] = {
        "link": link,
        "app": request.app,
        "objective": request.objective(),
        "constraints": request.constraints(),
        "time_limit_s": request.time_limit_s,
        "seed": request.seed,
        "vehicle": vehicle_setup(request.vehicle) if request.vehicle else None,
    }
    corridors = []
    for route in routes:
        departure_s = request.departure_s
        if departure_s is None and route.t_s is None:
            departure_s = cmap.default_departure_s
        # a route's corridor and quality depend on nothing else of the request; its segments
        # not even on the departure: a new trip on a route cut before only shifts the times
        route_id = route_key(route) if cache is not None else ""
        key = (route_id, departure_s) if cache is not None else ()
        corridor = depart(
            _through(
                cache, cmap, ("corridor", route_id),
                functools.partial(cmap.corridor, route, departure_s=departure_s),
            ),
            departure_s,
        )  # fmt: skip
        check_trip_times(
            corridor.departure_s, corridor.t_s
        )  # every time of the answer must be a date
        # refuse before sampling: positions from month-old elements are fiction
        cmap.check_elements(corridor.t_s, allow_stale=request.allow_stale_elements, used=())
        corridors.append((route, corridor, key))
    if admit is not None:
        admit(sum(len(corridor) for _, corridor, _ in corridors) * len(cmap.catalogue))
    candidates = [
        RouteCandidate(
            route,
            corridor,
            _through(cache, cmap, ("quality", *key), functools.partial(cmap.quality, corridor)),
            name=route.name,
        )
        for route, corridor, key in corridors
    ]
    epochs = cmap.element_epochs()
    if len(candidates) == 1:
        only = candidates[0]
        plan = plan_corridor(only.corridor, only.matrix, cmap.catalogue, **settings)
        plan = dataclasses.replace(plan, element_epochs=epochs)
        notices = _element_notices(cmap, request, plan, only.corridor)
        return PlanResult(plan, only.route, only.corridor, only.matrix, notices=notices)
    choice = choose_route(
        candidates, cmap.catalogue, seconds_per_drop=request.seconds_per_drop, **settings
    )
    picked = candidates[choice.best]
    assert choice.picked.plan is not None
    plan = dataclasses.replace(choice.picked.plan, element_epochs=epochs)
    notices = _element_notices(cmap, request, plan, picked.corridor)
    return PlanResult(plan, picked.route, picked.corridor, picked.matrix, choice, notices)


def _through(
    cache: PlanInputsCache | None, cmap: CommMap, key: tuple[Any, ...], make: Callable[[], T]
) -> T:
    """``make()``, through ``cache`` if given."""
    return make() if cache is None else cache.get(cmap, key, make)


def _element_notices(
    cmap: CommMap, request: PlanRequest, plan: Plan, corridor: Corridor
) -> tuple[str, ...]:
    """Stale-element notices for the constellations the plan uses (the others do not matter)."""
    used = set(plan.segment_networks)
    return tuple(
        cmap.check_elements(corridor.t_s, allow_stale=request.allow_stale_elements, used=used)
    )


def request_key(request: PlanRequest) -> tuple[Any, ...]:
    """A hashable digest of every field of ``request`` (equal requests, equal keys).

    Examples
    --------
    >>> a = PlanRequest(origin=(1.52, 42.51), destination=(1.73, 42.54), weights={"handovers": 2.0})
    >>> request_key(a) == request_key(dataclasses.replace(a))
    True
    >>> request_key(a) == request_key(dataclasses.replace(a, departure_s=1.0))
    False
    """
    values: list[Any] = []
    for f in dataclasses.fields(request):
        value = getattr(request, f.name)
        if isinstance(value, Route):
            value = route_key(value)
        elif isinstance(value, dict):
            value = tuple(sorted(value.items()))
        values.append((f.name, value))
    return tuple(values)


def plan_route_once(cmap: CommMap, request: PlanRequest, *, cache: PlanInputsCache) -> PlanResult:
    """:func:`plan_route`, or the plan of an equal request made before on the same map object.

    A fleet starting its drives from a depot asks for the same trip hundreds of times within
    seconds: each would take a solve (tens of milliseconds of CPU) for the same plan. The
    answer is kept in ``cache`` (read-only arrays, shared by every caller: do not change it).
    Requests that differ in any field (a departure time, a deadline's time limit) are planned.
    A request without a departure is keyed by the one it gets (the map's own, else now), so a
    trip "from now" is never answered with the plan of an earlier one.
    """
    if request.departure_s is None and (request.route is None or request.route.t_s is None):
        request = dataclasses.replace(request, departure_s=cmap.default_departure_s)
    return cache.get(
        cmap, ("plan", request_key(request)), lambda: plan_route(cmap, request, cache=cache)
    )
