"""Python client of the commap gRPC service: ``commap plan --server HOST:PORT`` calls this.

:func:`plan_remote` sends a :class:`~commap.service.planning.PlanRequest` to a server and rebuilds the
answer as the same :class:`~commap.plan.plan.Plan` the library returns locally, so a front door
prints, writes (``write_plan``) and compares remote plans exactly like local ones. gRPC errors
come back as the library's own errors (INVALID_ARGUMENT -> InvalidInputError, ...).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from commap.errors import (
    CommapError,
    InvalidInputError,
    MapNotFoundError,
    NoFeasiblePlanError,
    SolverTimeoutError,
)
from commap.geo.corridor import Route
from commap.geo.geodesy import GEOD
from commap.plan.plan import Handover, Plan, PlanTotals, SolverReport
from commap.plan.routes import RouteChoice, RouteOption
from commap.radio.quality import Provenance
from commap.service.planning import PlanRequest
from commap.v1 import commap_service_pb2 as pb
from commap.v1 import commap_service_pb2_grpc as pb_grpc
from server.convert import SWITCH_KIND_FROM_PB, seconds, timestamp

__all__ = ["RemotePlanResult", "plan_from_message", "plan_remote", "plan_request_message"]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_PROVENANCE_FROM_PB = {
    pb.PROVENANCE_NONE: int(Provenance.NONE),
    pb.PROVENANCE_MODELLED: int(Provenance.MODELLED),
    pb.PROVENANCE_MEASURED: int(Provenance.MEASURED),
}
_STATUS_FROM_PB = {pb.SOLVER_STATUS_OPTIMAL: "OPTIMAL", pb.SOLVER_STATUS_FEASIBLE: "FEASIBLE"}


@dataclass(frozen=True)
class RemotePlanResult:
    """A plan made by a server, as library objects.

    Attributes
    ----------
    plan : the chosen plan (the same type and values as a local ``plan_route(...).plan``).
    route : the planned route (vertices, and per-leg speed and tunnel flags from the plan).
    choice : the route trade-off (as :class:`commap.plan.RouteChoice`) when alternatives were
        asked for, else None; alternative routes' plans come without segments.
    """

    plan: Plan
    route: Route
    choice: RouteChoice | None = None

    def summary(self) -> dict[str, Any]:
        """The same summary as :meth:`commap.service.planning.PlanResult.summary`."""
        return {
            "route": self.route.name,
            "length_m": self.plan.totals.length_m,
            "travel_time_s": self.plan.totals.duration_s,
            "segments": len(self.plan),
            "handovers": len(self.plan.handovers),
            "totals": asdict(self.plan.totals),
        }


def _latlon(lon: float, lat: float) -> pb.LatLon:
    return pb.LatLon(latitude_deg=float(lat), longitude_deg=float(lon))


def plan_request_message(request: PlanRequest, *, map_name: str = "") -> pb.PlanRouteRequest:
    """The PlanRouteRequest of a library request.

    Raises
    ------
    InvalidInputError
        For a polyline whose legs have different speeds and no timestamps (the API carries
        one speed per polyline).

    Examples
    --------
    >>> m = plan_request_message(PlanRequest(origin=(1.52, 42.50), destination=(1.73, 42.54)))
    >>> m.endpoints.origin.latitude_deg, m.constraints.min_dwell_s
    (42.5, 10.0)
    """
    message = pb.PlanRouteRequest(
        map_name=map_name,
        application_class=request.app,
        alternatives=request.alternatives,
        seed=request.seed,
        solver_time_limit_s=request.time_limit_s,
        weights=dict(request.weights),
        seconds_per_drop=request.seconds_per_drop,
        allow_stale_elements=request.allow_stale_elements,
        vehicle=request.vehicle or "",
        constraints=pb.Constraints(
            min_dwell_s=request.min_dwell_s, min_dwell_m=request.min_dwell_m
        ),
    )
    if request.max_handovers is not None:
        message.constraints.max_handovers = request.max_handovers
    if request.sat_budget_mb is not None:
        message.constraints.satellite_budget_mb = request.sat_budget_mb
    if request.departure_s is not None:
        message.departure_time.CopyFrom(timestamp(request.departure_s))
    if request.route is not None:
        message.polyline.CopyFrom(_polyline(request))
    else:
        assert request.origin is not None and request.destination is not None
        message.endpoints.CopyFrom(
            pb.Endpoints(
                origin=_latlon(*request.origin),
                destination=_latlon(*request.destination),
                waypoints=[_latlon(*w) for w in request.waypoints],
            )
        )
    return message


def _polyline(request: PlanRequest) -> pb.Polyline:
    route = request.route
    assert route is not None
    poly = pb.Polyline(
        points=[_latlon(x, y) for x, y in zip(route.lon.tolist(), route.lat.tolist(), strict=True)]
    )
    if route.t_s is not None:
        poly.times.extend(timestamp(float(t)) for t in route.t_s)
        return poly
    speeds = np.unique(np.asarray(route.speed_mps, dtype=np.float64))
    if speeds.size > 1:
        raise InvalidInputError(
            "route: a polyline sent to a server needs timestamps or one speed for every leg",
            field="route",
        )
    poly.speed_mps = float(speeds[0]) if speeds.size else 0.0
    return poly


def _handover(h: pb.Handover) -> Handover:
    return Handover(
        segment=h.segment_index,
        lat=h.position.latitude_deg,
        lon=h.position.longitude_deg,
        distance_m=h.distance_m,
        eta_s=h.eta_s,
        from_network=h.from_network_id,
        to_network=h.to_network_id,
        kind=SWITCH_KIND_FROM_PB[h.kind].value if h.kind in SWITCH_KIND_FROM_PB else "",
        failure_prob=h.failure_probability,
        interruption_s=h.interruption_s,
        prepare_s=h.prepare_s,
    )


def _totals(t: pb.PlanTotals) -> PlanTotals:
    by_kind = {SWITCH_KIND_FROM_PB[c.kind].value: int(c.count) for c in t.handovers_by_kind}
    return PlanTotals(
        cost=t.objective,
        expected_drops=t.expected_drops,
        outage_drops=t.outage_drops,
        handover_drops=t.handover_drops,
        handovers=t.handover_count,
        handovers_by_kind=by_kind,
        outage_s=t.outage_s,
        interruption_s=t.interruption_s,
        sat_mb=t.satellite_mb,
        latency_violation_s=t.latency_violation_s,
        time_share=dict(t.time_share),
        length_m=t.length_m,
        duration_s=t.duration_s,
        expected_loss_s=t.expected_loss_s,
        loss_events=t.loss_events,
    )


def _constraints(c: pb.Constraints) -> dict[str, Any]:
    out: dict[str, Any] = {
        "min_dwell_s": c.min_dwell_s,
        "min_dwell_m": c.min_dwell_m,
        "strict_latency": False,
        "avoid_unusable": False,
    }
    if c.HasField("max_handovers"):
        out["max_handovers"] = c.max_handovers
    if c.HasField("satellite_budget_mb"):
        out["sat_budget_mb"] = c.satellite_budget_mb
    return out


def plan_from_message(message: pb.Plan, network_ids: tuple[str, ...]) -> Plan:
    """Rebuild a library :class:`Plan` from a Plan message.

    ``network_ids`` is the map's catalogue order (the plan's column order).
    """
    segments = message.segments
    column = {nid: i for i, nid in enumerate(network_ids)}
    s = message.solver
    return Plan(
        network_ids=network_ids,
        assignment=np.array([column[seg.network_id] for seg in segments], dtype=np.int64),
        lon=np.array([seg.position.longitude_deg for seg in segments], dtype=np.float64),
        lat=np.array([seg.position.latitude_deg for seg in segments], dtype=np.float64),
        distance_m=np.array([seg.distance_m for seg in segments], dtype=np.float64),
        length_m=np.array([seg.length_m for seg in segments], dtype=np.float64),
        eta_s=np.array([seg.eta_s for seg in segments], dtype=np.float64),
        duration_s=np.array([seg.duration_s for seg in segments], dtype=np.float64),
        provenance=np.array(
            [_PROVENANCE_FROM_PB.get(seg.provenance, 0) for seg in segments], dtype=np.int8
        ),
        outage_risk=np.array([seg.outage_probability for seg in segments], dtype=np.float64),
        handovers=tuple(_handover(h) for h in message.handovers),
        totals=_totals(message.totals),
        solver=SolverReport(
            name=s.solver,
            status=_STATUS_FROM_PB.get(s.status, "UNKNOWN"),
            objective=s.objective,
            bound=s.bound,
            gap=s.gap,
            time_s=s.wall_time_s,
            detail=s.detail,
        ),
        app=message.application_class,
        departure_s=seconds(message.departure_time, field="plan.departure_time"),
        constraints=_constraints(message.constraints),
        element_epochs={
            nid: seconds(ts, field=f"plan.element_epochs[{nid}]")
            for nid, ts in sorted(message.element_epochs.items())
        },
    )


def _library_error(error: grpc.RpcError) -> CommapError:
    """The library error matching a gRPC status (front doors report them the same way)."""
    code = error.code()
    details = error.details() or code.name
    pairs: Any = error.trailing_metadata() or ()  # (key, value) tuples
    metadata = {str(k): str(v) for k, v in pairs}
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidInputError(details, field=metadata.get("commap-field"))
    if code is grpc.StatusCode.NOT_FOUND:
        return MapNotFoundError(details)
    if code is grpc.StatusCode.FAILED_PRECONDITION:
        return NoFeasiblePlanError(details)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return SolverTimeoutError(details)
    return CommapError(f"server error {code.name}: {details}")


def _route(message: pb.Plan, plan: Plan) -> Route:
    """The route of a plan message; per-leg speed and tunnel flags from the plan's segments."""
    points = message.route.points
    lon = np.array([p.longitude_deg for p in points], dtype=np.float64)
    lat = np.array([p.latitude_deg for p in points], dtype=np.float64)
    legs = max(len(lon) - 1, 0)
    if legs == 0 or len(plan) == 0:
        return Route(
            lon=lon, lat=lat, speed_mps=np.zeros(legs), in_tunnel=np.zeros(legs, bool),
            on_bridge=np.zeros(legs, bool), name=message.route.name,
        )  # fmt: skip
    _, _, leg_m = GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
    cum = np.concatenate(([0.0], np.cumsum(leg_m)))
    mid = (cum[:-1] + cum[1:]) / 2
    seg = np.clip(np.searchsorted(plan.distance_m, mid, side="right") - 1, 0, len(plan) - 1)
    speed = plan.length_m / np.maximum(plan.duration_s, 1e-9)
    tunnel = np.array([s.in_tunnel for s in message.segments], dtype=bool)
    return Route(
        lon=lon,
        lat=lat,
        speed_mps=speed[seg],
        in_tunnel=tunnel[seg],
        on_bridge=np.zeros(legs, dtype=bool),  # not carried by the API
        name=message.route.name,
    )


def _choice(
    response: pb.PlanRouteResponse,
    plan: Plan,
    network_ids: tuple[str, ...],
    seconds_per_drop: float,
) -> RouteChoice | None:
    if not response.alternatives:
        return None
    options = []
    best = 0
    for a in response.alternatives:
        if a.picked:
            best = a.index
        option_plan = (
            plan if a.picked else (plan_from_message(a.plan, network_ids) if a.feasible else None)
        )
        options.append(
            RouteOption(
                index=a.index,
                name=a.name,
                length_m=a.length_m,
                travel_time_s=a.travel_time_s,
                expected_drops=a.expected_drops if a.feasible else math.nan,
                handovers=a.handover_count,
                outage_s=a.outage_s if a.feasible else math.nan,
                sat_mb=a.satellite_mb if a.feasible else math.nan,
                score_s=a.score_s if a.feasible else math.inf,
                feasible=a.feasible,
                reason=a.reason,
                plan=option_plan,
            )
        )
    return RouteChoice(tuple(options), best, seconds_per_drop)


def plan_remote(
    target: str,
    map_name: str,
    request: PlanRequest,
    *,
    timeout_s: float = 120.0,
    credentials: grpc.ChannelCredentials | None = None,
    token: str | None = None,
) -> RemotePlanResult:
    """Plan on a commap server.

    Parameters
    ----------
    target : ``HOST:PORT`` of the server.
    map_name : map to plan on (empty: the server's default map).
    request : what to plan (as for :func:`commap.service.planning.plan_route`).
    timeout_s : call deadline; it also bounds the server's solver time.
    credentials : TLS credentials (``grpc.ssl_channel_credentials``) for a TLS server.
    token : bearer token for a server with token authentication.

    Raises
    ------
    InvalidInputError, MapNotFoundError, NoFeasiblePlanError, SolverTimeoutError
        As the server reports them.
    CommapError
        Server unreachable or another server error.
    """
    message = plan_request_message(request, map_name=map_name)
    options = [("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES)]
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    channel = (
        grpc.secure_channel(target, credentials, options=options)
        if credentials is not None
        else grpc.insecure_channel(target, options=options)
    )
    with channel:
        stub = pb_grpc.CommapServiceStub(channel)
        try:
            response = stub.PlanRoute(message, timeout=timeout_s, metadata=metadata)
            info = stub.GetMap(
                pb.GetMapRequest(map_name=response.plan.map_name),
                timeout=timeout_s,
                metadata=metadata,
            )
        except grpc.RpcError as exc:
            raise _library_error(exc) from None
    network_ids = tuple(n.network_id for n in info.map.networks)
    plan = plan_from_message(response.plan, network_ids)
    return RemotePlanResult(
        plan=plan,
        route=_route(response.plan, plan),
        choice=_choice(response, plan, network_ids, request.seconds_per_drop),
    )
