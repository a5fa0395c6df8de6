"""Adversarial ``commap.v1`` requests (hypothesis strategies) and a judge of the answers.

Used by ``tests/server/test_fuzz.py`` (a few hundred examples) and
``bench/bench_reliability.py`` (tens of thousands). Every strategy mixes plausible values (real
places on the default map, valid times) with hostile ones: NaN and infinities, out-of-range
and extreme coordinates and timestamps, empty and long lists, duplicate and unordered times,
unknown names where the API takes enumeration-like strings (application class, network ids,
weight names), unicode, NUL and path-like map ids, and raw bytes that are not valid messages
(including unknown field numbers and wire types, which is how an unknown enum value looks on
the wire).

A call's answer is *clear* when it has a status a client can act on (OK, INVALID_ARGUMENT,
NOT_FOUND, FAILED_PRECONDITION, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED reported by the server,
PERMISSION_DENIED, UNAUTHENTICATED) with a message; INTERNAL, UNKNOWN or UNAVAILABLE is a
*crash*, a client-side deadline a *hang*.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st

from commap.v1 import commap_service_pb2 as pb

T0 = 1737633600  # the default map's default departure
ORIGIN = (1.5218, 42.5063)  # Andorra la Vella (lon, lat)
NEARBY = (1.5600, 42.5100)  # 6 km away by road
DESTINATION = (1.7330, 42.5430)  # Pas de la Casa
PLACES = (ORIGIN, NEARBY, DESTINATION, (1.5440, 42.6210), (1.4846, 42.5722))
BBOX = (1.40, 42.38, 1.80, 42.68)
NETWORK_IDS = ("ad-lte", "ad-nr", "es-lte", "fr-lte", "starlink", "oneweb", "geo")
APPS = ("", "telemetry", "infotainment", "teleoperation")
WEIGHTS = ("drops", "handovers", "interruption_s", "sat_mb", "latency_violation_s")
RPCS = ("ListMaps", "GetMap", "QueryCoverage", "PlanRoute", "Drive", "ReportMeasurements")
STREAMING_REQUESTS = frozenset({"Drive", "ReportMeasurements"})
MAX_LIST = 12

CLEAR = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)
_CLIENT_DEADLINE_DETAILS = "Deadline Exceeded"  # what grpc says when the client gives up


# -- scalars ------------------------------------------------------------------------------------
def mostly(
    good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], tenths: int = 8
) -> st.SearchStrategy[Any]:
    """``good`` in ``tenths`` of ten draws, else ``bad``: requests fail late, not at field one."""
    return st.integers(0, 9).flatmap(lambda k: good if k < tenths else bad)


SPECIAL_FLOATS = st.sampled_from(
    [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1e308, 5e-324, 1e-300, 90.0, -90.0,
     180.0, -180.0, 90.0000001, 180.0000001, -1.0, 2**53 + 1.0]
)  # fmt: skip
any_float = st.one_of(SPECIAL_FLOATS, st.floats(allow_nan=True, allow_infinity=True))
lat_in_map = st.floats(BBOX[1], BBOX[3])
lon_in_map = st.floats(BBOX[0], BBOX[2])

MAP_NAMES = (
    "../andorra", "../../etc/passwd", "/etc/passwd", "/work/main/maps/andorra/built",
    "andorra\x00", "andorra\x00../../etc", "ａｎｄｏｒｒａ", "ANDORRA", "andorra/../andorra",
    ".", "..", "~", "%2e%2e%2f", "C:\\maps\\andorra", "andorra ", "\u202eandorra", "🗺️",
    "andorra\n", "x" * 5000, "maps", "built", "cork",
)  # fmt: skip
text = st.text(st.characters(codec="utf-8"), max_size=40)
map_names = mostly(st.sampled_from(("", "andorra")), st.one_of(st.sampled_from(MAP_NAMES), text))


def _ts(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


any_timestamps = st.builds(
    _ts,
    seconds=st.one_of(
        st.integers(T0 - 30 * 86400, T0 + 30 * 86400),
        st.sampled_from([0, -62_135_596_800, -62_135_596_801, 253_402_300_799, 253_402_300_800]),
        st.integers(-(2**63), 2**63 - 1),
    ),
    nanos=st.one_of(st.just(0), st.integers(0, 999_999_999), st.integers(-(2**31), 2**31 - 1)),
)


timestamps = mostly(
    st.builds(_ts, st.integers(T0 - 3 * 86400, T0 + 3 * 86400), st.integers(0, 999_999_999)),
    any_timestamps,
)


def _latlon(lon: float, lat: float) -> pb.LatLon:
    return pb.LatLon(latitude_deg=lat, longitude_deg=lon)


# a real place, a place near it, anywhere on the map, or anything at all
good_points = st.one_of(
    st.sampled_from(PLACES).map(lambda p: _latlon(*p)),
    st.builds(
        lambda p, dx, dy: _latlon(p[0] + dx, p[1] + dy),
        st.sampled_from(PLACES),
        st.floats(-0.01, 0.01),
        st.floats(-0.01, 0.01),
    ),
)
points = mostly(
    good_points,
    st.one_of(
        st.builds(_latlon, lon_in_map, lat_in_map),
        st.builds(_latlon, st.one_of(lon_in_map, any_float), st.one_of(lat_in_map, any_float)),
    ),
    tenths=9,
)


# -- unary requests -------------------------------------------------------------------------------
@st.composite
def constraints(draw: st.DrawFn) -> pb.Constraints:
    c = pb.Constraints()
    if draw(st.booleans()):
        c.min_dwell_s = draw(mostly(st.floats(0, 60), any_float))
    if draw(st.booleans()):
        c.max_handovers = draw(mostly(st.integers(0, 20), st.integers(-(2**31), 2**31 - 1)))
    if draw(st.booleans()):
        c.satellite_budget_mb = draw(mostly(st.floats(0, 500), any_float))
    if draw(st.booleans()):
        c.min_dwell_m = draw(mostly(st.floats(0, 2000), any_float))
    return c


@st.composite
def polylines(draw: st.DrawFn) -> pb.Polyline:
    n = draw(st.integers(0, MAX_LIST))
    base = draw(st.sampled_from(PLACES))
    step = draw(st.floats(-0.002, 0.002))
    pts = [_latlon(base[0] + step * k, base[1] + step * k / 2) for k in range(n)]
    for k in draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=2)) if n else []:
        pts[k] = draw(points)  # a few hostile vertices
    speed = draw(mostly(st.sampled_from([0.0, 8.0, 25.0]), any_float))
    poly = pb.Polyline(points=pts, speed_mps=speed)
    times = draw(
        mostly(
            st.sampled_from(["none", "increasing"]),
            st.sampled_from(["duplicate", "unordered", "wrong count", "any"]),
            tenths=6,
        )
    )
    if times == "increasing":
        poly.times.extend(_ts(T0 + 10 * k) for k in range(n))
    elif times == "duplicate":
        poly.times.extend(_ts(T0 + 10 * (k // 2)) for k in range(n))
    elif times == "unordered":
        poly.times.extend(_ts(T0 + 10 * ((k * 7) % max(n, 1))) for k in range(n))
    elif times == "wrong count":
        poly.times.extend(_ts(T0 + k) for k in range(n + 1))
    elif times == "any":
        poly.times.extend(draw(st.lists(any_timestamps, min_size=n, max_size=n)))
    return poly


@st.composite
def plan_requests(draw: st.DrawFn) -> pb.PlanRouteRequest:
    request = pb.PlanRouteRequest(
        map_name=draw(map_names), omit_segments=draw(mostly(st.just(True), st.just(False)))
    )
    route = draw(st.sampled_from(["endpoints", "endpoints", "polyline", "none"]))
    if route == "endpoints":
        request.endpoints.CopyFrom(
            pb.Endpoints(
                origin=draw(points),
                destination=draw(points),
                waypoints=draw(mostly(st.just([]), st.lists(points, max_size=3), tenths=7)),
            )
        )
    elif route == "polyline":
        request.polyline.CopyFrom(draw(polylines()))
    if draw(st.booleans()):
        request.departure_time.CopyFrom(draw(timestamps))
    request.application_class = draw(mostly(st.sampled_from(APPS), text, tenths=9))
    if draw(st.booleans()):
        request.constraints.CopyFrom(draw(constraints()))
    weights = mostly(
        st.dictionaries(st.sampled_from(WEIGHTS), st.floats(0, 100), max_size=2),
        st.dictionaries(st.one_of(st.sampled_from(WEIGHTS), text), any_float, max_size=3),
    )
    request.weights.update(draw(weights))
    request.alternatives = draw(
        mostly(st.integers(0, 3), st.one_of(st.integers(9, 11), st.integers(-(2**31), 2**31 - 1)))
    )
    request.seed = draw(st.integers(-(2**63), 2**63 - 1))
    request.solver_time_limit_s = draw(mostly(st.sampled_from([0.0, 0.5, 2.0]), any_float))
    if draw(st.booleans()):
        request.seconds_per_drop = draw(mostly(st.floats(0, 600), any_float))
    return request


@st.composite
def coverage_requests(draw: st.DrawFn) -> pb.QueryCoverageRequest:
    request = pb.QueryCoverageRequest(map_name=draw(map_names))
    for point in draw(st.lists(points, max_size=MAX_LIST)):
        item = request.points.add(position=point)
        if draw(st.booleans()):
            item.time.CopyFrom(draw(timestamps))
    ids = mostly(
        st.lists(st.sampled_from(NETWORK_IDS), max_size=4),
        st.lists(st.one_of(st.sampled_from(NETWORK_IDS), text), max_size=4),
    )
    request.network_ids.extend(draw(ids))
    return request


get_map_requests = st.builds(pb.GetMapRequest, map_name=map_names)
list_maps_requests = st.just(pb.ListMapsRequest())


# -- streams ------------------------------------------------------------------------------------
@st.composite
def measurements(draw: st.DrawFn, t_s: int = T0) -> pb.Measurement:
    network = mostly(
        st.sampled_from(NETWORK_IDS[:4]), st.one_of(st.sampled_from(NETWORK_IDS), text)
    )
    m = pb.Measurement(network_id=draw(network))
    if draw(st.integers(0, 19)):
        m.time.CopyFrom(draw(mostly(st.just(_ts(t_s)), timestamps, tenths=9)))
    if draw(st.integers(0, 19)):
        m.position.CopyFrom(draw(points))
    for name, plausible in (
        ("rsrp_dbm", st.floats(-140, -44)),
        ("sinr_db", st.floats(-20, 30)),
        ("throughput_mbps", st.floats(0, 300)),
    ):
        if draw(st.booleans()):
            setattr(m, name, draw(mostly(plausible, any_float, tenths=9)))
    if draw(st.booleans()):
        m.connected = draw(st.booleans())
    return m


@st.composite
def report_streams(draw: st.DrawFn) -> list[pb.ReportMeasurementsRequest]:
    name = draw(map_names)
    vehicle = draw(mostly(st.just("fuzz-vehicle"), text, tenths=5))
    messages = []
    for k in range(draw(st.integers(0, 3))):
        # ordered, repeated, going back
        times = T0 + 10 * k + draw(mostly(st.just(0), st.sampled_from([-10, -10 * k, -1])))
        messages.append(
            pb.ReportMeasurementsRequest(
                map_name=name if draw(st.integers(0, 19)) else draw(map_names),
                vehicle_id=vehicle,
                measurements=draw(st.lists(measurements(times), min_size=1, max_size=6)),
            )
        )
    return messages


def _trip() -> pb.PlanRouteRequest:
    return pb.PlanRouteRequest(
        endpoints=pb.Endpoints(origin=_latlon(*ORIGIN), destination=_latlon(*NEARBY)),
        departure_time=_ts(T0),
        omit_segments=True,
    )


@st.composite
def drive_streams(draw: st.DrawFn) -> list[pb.DriveRequest]:
    messages: list[pb.DriveRequest] = []
    start = draw(mostly(st.just("valid"), st.sampled_from(["fuzzed", "none"]), tenths=7))
    if start != "none":
        plan = _trip() if start == "valid" else draw(plan_requests())
        messages.append(
            pb.DriveRequest(
                start=pb.DriveStart(
                    plan=plan,
                    vehicle_id=draw(mostly(st.just("fuzz-car"), text, tenths=5)),
                    lead_time_s=draw(mostly(st.sampled_from([0.0, 8.0]), any_float, tenths=9)),
                    off_route_distance_m=draw(
                        mostly(st.sampled_from([0.0, 80.0]), any_float, tenths=9)
                    ),
                )
            )
        )
    t_s = T0
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(mostly(st.just("update"), st.sampled_from(["start", "empty"]), tenths=9))
        if kind == "start":
            messages.append(pb.DriveRequest(start=pb.DriveStart(plan=_trip())))
            continue
        if kind == "empty":
            messages.append(pb.DriveRequest())
            continue
        # on time, repeated, back in time, a jump
        t_s += draw(mostly(st.just(1), st.sampled_from([0, -1, 3600]), tenths=9))
        fix = pb.PositionFix(position=draw(points))
        if draw(st.integers(0, 19)):
            fix.time.CopyFrom(draw(mostly(st.just(_ts(t_s)), timestamps, tenths=9)))
        if draw(st.booleans()):
            fix.speed_mps = draw(mostly(st.floats(0, 40), any_float, tenths=9))
        update = pb.PositionUpdate(fix=fix)
        update.measurements.extend(
            draw(mostly(st.just([]), st.lists(measurements(t_s), max_size=2), tenths=7))
        )
        messages.append(pb.DriveRequest(update=update))
    return messages


REQUESTS: dict[str, st.SearchStrategy[Any]] = {
    "ListMaps": list_maps_requests,
    "GetMap": get_map_requests,
    "QueryCoverage": coverage_requests(),
    "PlanRoute": plan_requests(),
    "Drive": drive_streams(),
    "ReportMeasurements": report_streams(),
}


# -- raw bytes: not valid messages, unknown fields and wire types -------------------------------
def _mutate(data: bytes, edits: Sequence[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        if out:
            out[position % len(out)] = value
        else:
            out.append(value)
    return bytes(out)


@st.composite
def raw_messages(draw: st.DrawFn, rpc: str) -> bytes:
    """Bytes for ``rpc``: random, a valid message with edits, or with unknown fields appended."""
    kind = draw(st.sampled_from(["random", "mutated", "unknown field"]))
    if kind == "random":
        return bytes(draw(st.binary(max_size=64)))
    sample = REQUESTS[rpc]
    message = draw(sample)
    if rpc in STREAMING_REQUESTS:
        message = message[0] if message else pb.DriveRequest()
    data = message.SerializeToString()
    if kind == "mutated":
        edits = draw(st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), max_size=4))
        return _mutate(data, edits)
    # field number 2^29 - 1 / 99 / an enum-like varint far beyond any defined value
    tag = draw(st.sampled_from([b"\xf8\xff\xff\xff\x0f", b"\x98\x06", b"\x18"]))
    return data + tag + draw(st.sampled_from([b"\xff\xff\xff\xff\x07", b"\x01", b"\x80"]))


# -- calling and judging ------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """How one call ended."""

    rpc: str
    code: grpc.StatusCode
    details: str
    elapsed_s: float

    @property
    def problem(self) -> str:
        """'' for a clear answer, else 'crash', 'hang' or 'no message'."""
        if self.code not in CLEAR:
            return "crash"
        if (
            self.code is grpc.StatusCode.DEADLINE_EXCEEDED
            and self.details == _CLIENT_DEADLINE_DETAILS
        ):
            return "hang"
        if self.code is not grpc.StatusCode.OK and not self.details.strip():
            return "no message"
        return ""


def _identity(data: bytes) -> bytes:
    return data


class Caller:
    """Sends requests to one server, each with a deadline, and reports the :class:`Outcome`.

    Parameters
    ----------
    channel : a channel to the server.
    deadline_s : every call's deadline.
    metadata : sent with every call (e.g. a bearer token).
    """

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        deadline_s: float,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.deadline_s = deadline_s
        self.metadata = tuple(metadata)
        self._methods: dict[str, Callable[..., Any]] = {}
        prefix = "/commap.v1.CommapService/"
        for rpc in (*RPCS, "ReloadMaps"):
            factory: Callable[..., Any] = channel.unary_unary
            if rpc == "ReportMeasurements":
                factory = channel.stream_unary
            elif rpc == "Drive":
                factory = channel.stream_stream
            self._methods[rpc] = factory(
                prefix + rpc, request_serializer=_identity, response_deserializer=_identity
            )

    def call(self, rpc: str, request: Any) -> Outcome:
        """Send ``request`` (a message, a list of messages for streams, or raw bytes)."""
        method = self._methods[rpc]
        payload = _serialized(request)
        if rpc in STREAMING_REQUESTS and isinstance(payload, bytes):
            payload = [payload]
        start = time.perf_counter()
        code, details = grpc.StatusCode.OK, ""
        try:
            if rpc == "Drive":
                for _ in method(iter(payload), timeout=self.deadline_s, metadata=self.metadata):
                    pass
            elif rpc == "ReportMeasurements":
                method(iter(payload), timeout=self.deadline_s, metadata=self.metadata)
            else:
                method(payload, timeout=self.deadline_s, metadata=self.metadata)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
        return Outcome(rpc, code, details, time.perf_counter() - start)


def _serialized(request: Any) -> Any:
    if isinstance(request, bytes):
        return request
    if isinstance(request, list):
        return [r if isinstance(r, bytes) else r.SerializeToString() for r in request]
    return request.SerializeToString()
