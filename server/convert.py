"""Conversions between ``commap.v1`` messages and library objects.

Every request field is validated here before the library sees it, so that errors name the
field as the client wrote it (``endpoints.origin.latitude_deg``, ``points[3].time``). Proto
optional numbers stand for "not applicable" (e.g. the RSRP of a satellite network), never NaN.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from google.protobuf.timestamp_pb2 import Timestamp
from numpy.typing import NDArray

from commap.arrays import RecentArrays
from commap.errors import InvalidInputError
from commap.geo.corridor import DEFAULT_SPEED_MPS, Corridor, Route, route_from_polyline
from commap.geo.routefile import parse_route
from commap.map.comm_map import CommMap
from commap.networks import NetworkKind, SwitchKind
from commap.plan import defaults
from commap.plan.execution import DEFAULT_EXECUTION_RULES, ExecutionRules
from commap.plan.plan import Handover, Plan, PlanTotals, SolverReport
from commap.plan.routes import RouteOption
from commap.radio.quality import USABLE_SINR_DB, Provenance, QualityMatrix
from commap.service.drive_session import Fix, Instruction, RouteProgress
from commap.service.planning import PlanRequest, PlanResult
from commap.v1 import commap_service_pb2 as pb
from server import wire
from server.config import ServerConfig

__all__ = [
    "PROVENANCE_TO_PB",
    "SWITCH_KIND_FROM_PB",
    "SWITCH_KIND_TO_PB",
    "checked_measurements",
    "coverage_points",
    "coverage_response",
    "latlon",
    "map_info",
    "measurements_frame",
    "plan_request",
    "seconds",
    "shown",
    "timestamp",
    "vehicle_id",
]

FloatArray = NDArray[np.float64]

NETWORK_KIND_TO_PB = {
    NetworkKind.TERRESTRIAL: pb.NETWORK_KIND_TERRESTRIAL,
    NetworkKind.LEO: pb.NETWORK_KIND_LEO,
    NetworkKind.GEO: pb.NETWORK_KIND_GEO,
}
PROVENANCE_TO_PB = {
    int(Provenance.NONE): pb.PROVENANCE_NONE,
    int(Provenance.MODELLED): pb.PROVENANCE_MODELLED,
    int(Provenance.MEASURED): pb.PROVENANCE_MEASURED,
}
SWITCH_KIND_TO_PB = {
    SwitchKind.NONE: pb.SWITCH_KIND_UNSPECIFIED,
    SwitchKind.INTRA_OPERATOR: pb.SWITCH_KIND_INTRA_OPERATOR,
    SwitchKind.INTER_OPERATOR: pb.SWITCH_KIND_INTER_OPERATOR,
    SwitchKind.TERRESTRIAL_LEO: pb.SWITCH_KIND_TERRESTRIAL_LEO,
    SwitchKind.TERRESTRIAL_GEO: pb.SWITCH_KIND_TERRESTRIAL_GEO,
    SwitchKind.SATELLITE_SATELLITE: pb.SWITCH_KIND_SATELLITE_SATELLITE,
}
SWITCH_KIND_FROM_PB = {v: k for k, v in SWITCH_KIND_TO_PB.items()}

# google.protobuf.Timestamp range: 0001-01-01 .. 9999-12-31
_MIN_TS_S = -62_135_596_800
_MAX_TS_S = 253_402_300_799
# measurement records are stored with nanosecond timestamps: 1677-09-22 .. 2262-04-11
_MIN_RECORD_S = -9_223_286_400
_MAX_RECORD_S = 9_223_286_400
# CP-SAT takes a 32-bit random seed
_SEED_RANGE = (-(2**31), 2**31 - 1)
MAX_VEHICLE_ID_CHARS = 128


# -- scalars --------------------------------------------------------------------------------------
_SHOWN_CHARS = 64


def shown(text: str) -> str:
    """A client-supplied string as error messages quote it: ``repr``, at most 64 characters.

    Examples
    --------
    >>> shown("andorra")
    "'andorra'"
    >>> shown("x" * 100)
    "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... (100 characters)"
    >>> shown("")
    "''"
    """
    if len(text) <= _SHOWN_CHARS:
        return repr(text)
    return f"{text[:_SHOWN_CHARS]!r}... ({len(text)} characters)"


def seconds(ts: Timestamp, *, field: str) -> float:
    """Epoch seconds of a Timestamp, validated.

    Examples
    --------
    >>> seconds(Timestamp(seconds=10, nanos=500_000_000), field="time")
    10.5
    >>> seconds(Timestamp(seconds=0, nanos=-1), field="time")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: time: nanos -1 outside 0..999999999
    """
    if not 0 <= ts.nanos <= 999_999_999:
        raise InvalidInputError(f"{field}: nanos {ts.nanos} outside 0..999999999", field=field)
    if not _MIN_TS_S <= ts.seconds <= _MAX_TS_S:
        raise InvalidInputError(
            f"{field}: seconds {ts.seconds} outside the Timestamp range", field=field
        )
    return ts.seconds + ts.nanos * 1e-9


def timestamp(t_s: float) -> Timestamp:
    """Timestamp of epoch seconds (nanosecond resolution).

    Examples
    --------
    >>> ts = timestamp(10.25)
    >>> (ts.seconds, ts.nanos)
    (10, 250000000)
    """
    whole = math.floor(t_s)
    nanos = round((t_s - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return Timestamp(seconds=int(whole), nanos=nanos)


def vehicle_id(value: str, *, field: str) -> str:
    """A vehicle id, checked: at most 128 characters, no control characters.

    Ids are stored with measurement records (CSV) and written to logs: a line break or an
    escape sequence in one must not split a record or forge a log line.

    Examples
    --------
    >>> vehicle_id("car-7 (Ü)", field="vehicle_id")
    'car-7 (Ü)'
    >>> vehicle_id("", field="vehicle_id")
    ''
    >>> vehicle_id("a\\rb", field="vehicle_id")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: vehicle_id: control character U+000D at position 1
    """
    if len(value) > MAX_VEHICLE_ID_CHARS:
        raise InvalidInputError(
            f"{field}: {len(value)} characters, at most {MAX_VEHICLE_ID_CHARS}", field=field
        )
    for i, char in enumerate(value):
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            raise InvalidInputError(
                f"{field}: control character U+{ord(char):04X} at position {i}", field=field
            )
    return value


def _finite(value: float, field: str) -> float:
    if not math.isfinite(value):
        raise InvalidInputError(f"{field}: {value} is not a finite number", field=field)
    return float(value)


def latlon(msg: pb.LatLon, *, field: str) -> tuple[float, float]:
    """``(lon, lat)`` of a LatLon message, validated (finite, within WGS84 ranges).

    Examples
    --------
    >>> latlon(pb.LatLon(latitude_deg=42.5, longitude_deg=1.5), field="origin")
    (1.5, 42.5)
    >>> latlon(pb.LatLon(latitude_deg=91.0, longitude_deg=1.5), field="origin")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: origin.latitude_deg: 91.0 is outside -90..90
    """
    lat = _finite(msg.latitude_deg, f"{field}.latitude_deg")
    lon = _finite(msg.longitude_deg, f"{field}.longitude_deg")
    if abs(lat) > 90.0:
        raise InvalidInputError(
            f"{field}.latitude_deg: {lat} is outside -90..90", field=f"{field}.latitude_deg"
        )
    if abs(lon) > 180.0:
        raise InvalidInputError(
            f"{field}.longitude_deg: {lon} is outside -180..180", field=f"{field}.longitude_deg"
        )
    return lon, lat


def _latlon_arrays(
    points: Sequence[pb.LatLon], *, field: str, wire_bytes: bytes | None = None
) -> tuple[FloatArray, FloatArray]:
    """``(lon, lat)`` arrays of many LatLon messages, validated as :func:`latlon` does each.

    Checked in bulk (a route has tens of thousands of points); the first bad point is
    converted on its own, for :func:`latlon`'s error naming it. ``wire_bytes``, the encoded
    message whose field 1 holds ``points``, is read in bulk where it is laid out as usual
    (:func:`wire.read_latlon_points`), instead of asking every message for its fields.
    """
    n = len(points)
    columns = None if wire_bytes is None else wire.read_latlon_points(wire_bytes, n)
    if columns is not None:
        lon, lat = columns
    else:
        lon = np.fromiter((p.longitude_deg for p in points), dtype=float, count=n)
        lat = np.fromiter((p.latitude_deg for p in points), dtype=float, count=n)
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(lat) <= 90.0) | ~(np.abs(lon) <= 180.0)  # NaN fails both
    if bad.any():
        i = int(np.argmax(bad))
        latlon(points[i], field=f"{field}[{i}]")  # raises, naming the point and its field
    return lon, lat


def to_latlon(lon: float, lat: float) -> pb.LatLon:
    """LatLon message of a ``(lon, lat)`` position."""
    return pb.LatLon(latitude_deg=float(lat), longitude_deg=float(lon))


# -- maps -----------------------------------------------------------------------------------------
def map_info(cmap: CommMap, *, measurement_count: int = 0) -> pb.MapInfo:
    """MapInfo of a loaded map."""
    lon0, lat0, lon1, lat1 = cmap.bbox
    manifest = cmap.manifest
    layer_types = {entry.id: entry.layer_type for entry in manifest.networks}
    info = pb.MapInfo(
        map_name=cmap.name,
        title=manifest.display_title,
        description=manifest.description,
        extent=pb.BoundingBox(
            min_longitude_deg=lon0,
            min_latitude_deg=lat0,
            max_longitude_deg=lon1,
            max_latitude_deg=lat1,
        ),
        attributions=list(manifest.attribution),
        segment_m=cmap.segment_m,
        default_departure_time=timestamp(cmap.default_departure_s),
        road_node_count=manifest.roads.nodes if manifest.roads else 0,
        road_edge_count=manifest.roads.edges if manifest.roads else 0,
        road_length_m=manifest.roads.edge_length_km * 1000.0 if manifest.roads else 0.0,
        measurement_count=measurement_count,
    )
    for net in cmap.catalogue.networks:
        info.networks.append(
            pb.Network(
                network_id=net.id,
                kind=NETWORK_KIND_TO_PB[net.kind],
                operator=net.operator,
                technology=net.technology,
                display_name=net.display_name or net.id,
                latency_ms=net.latency_ms,
                cost_per_mb=net.cost_per_mb,
                frequency_mhz=net.frequency_mhz,
                min_elevation_deg=net.min_elevation_deg,
                layer_type=layer_types.get(net.id, ""),
            )
        )
    return info


# -- coverage -------------------------------------------------------------------------------------
def coverage_points(
    request: pb.QueryCoverageRequest, *, default_time_s: float, max_points: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(lon, lat, t_s)`` arrays of a coverage query, validated.

    Raises
    ------
    InvalidInputError
        No points, too many points, or a bad position or time (naming ``points[i]``).
    """
    n = len(request.points)
    if n == 0:
        raise InvalidInputError("points: at least one point is required", field="points")
    if n > max_points:
        raise InvalidInputError(
            f"points: {n} points exceed the limit of {max_points}", field="points"
        )
    lon = np.empty(n)
    lat = np.empty(n)
    t_s = np.empty(n)
    for i, point in enumerate(request.points):
        lon[i], lat[i] = latlon(point.position, field=f"points[{i}].position")
        has_time = point.HasField("time")
        t_s[i] = seconds(point.time, field=f"points[{i}].time") if has_time else default_time_s
    return lon, lat, t_s


def _optional(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def coverage_response(
    map_name: str,
    lon: FloatArray,
    lat: FloatArray,
    t_s: FloatArray,
    quality: QualityMatrix,
    network_ids: Sequence[str],
) -> pb.QueryCoverageResponse:
    """QueryCoverageResponse of a quality matrix (rows = points), restricted to ``network_ids``."""
    columns = [quality.network_ids.index(nid) for nid in network_ids]
    unknown = np.asarray(quality.unknown, dtype=bool).reshape(quality.sinr_db.shape)
    response = pb.QueryCoverageResponse(map_name=map_name)
    for i in range(len(lon)):
        point = response.points.add(
            position=to_latlon(lon[i], lat[i]), time=timestamp(float(t_s[i]))
        )
        for j in columns:
            sinr = float(quality.sinr_db[i, j])
            point.networks.append(
                pb.NetworkQuality(
                    network_id=quality.network_ids[j],
                    rsrp_dbm=_optional(float(quality.rsrp_dbm[i, j])),
                    sinr_db=sinr,
                    elevation_deg=_optional(float(quality.elevation_deg[i, j])),
                    confidence=float(quality.confidence[i, j]),
                    provenance=PROVENANCE_TO_PB.get(
                        int(quality.provenance[i, j]), pb.PROVENANCE_UNSPECIFIED
                    ),
                    sample_count=int(quality.sample_count[i, j]),
                    usable=bool(sinr >= USABLE_SINR_DB and not unknown[i, j]),
                    unknown=bool(unknown[i, j]),
                )
            )
    return response


def network_selection(requested: Sequence[str], known: Sequence[str]) -> list[str]:
    """The requested network ids (all when empty), validated against the map's catalogue."""
    if not requested:
        return list(known)
    for i, nid in enumerate(requested):
        if nid not in known:
            raise InvalidInputError(
                f"network_ids[{i}]: unknown network {shown(nid)}; known: {', '.join(known)}",
                field=f"network_ids[{i}]",
            )
    return list(dict.fromkeys(requested))


# -- planning -------------------------------------------------------------------------------------
_POLYLINE_FIELDS = {
    "lon": "polyline.points",
    "lat": "polyline.points",
    "t_s": "polyline.times",
    "speed_mps": "polyline.speed_mps",
}


# polylines read lately, by a digest of their encoding: a fleet sends the same routes again
# (a trip per departure), and reading and measuring 30,000 points takes tens of milliseconds
_RECENT_POLYLINES = RecentArrays(max_bytes=16 << 20)


def _polyline_route(poly: pb.Polyline, *, max_points: int, max_route_m: float) -> Route:
    n = len(poly.points)
    if n > max_points:
        raise InvalidInputError(
            f"polyline.points: {n} points exceed the limit of {max_points}", field="polyline.points"
        )
    if n < 2:
        raise InvalidInputError(
            f"polyline.points: a route needs at least 2 points, got {n}", field="polyline.points"
        )
    wire = poly.SerializeToString()
    digest = hashlib.blake2b(wire, digest_size=20).digest()
    return _RECENT_POLYLINES.get(
        ("polyline", digest, max_points, max_route_m),
        lambda: _read_polyline(poly, wire, max_route_m=max_route_m),
    )


def _read_polyline(poly: pb.Polyline, wire: bytes, *, max_route_m: float) -> Route:
    """The route of a polyline (``wire``: its encoding), checked (its size is, already)."""
    n = len(poly.points)
    lon, lat = _latlon_arrays(poly.points, field="polyline.points", wire_bytes=wire)
    t_s: FloatArray | None = None
    if len(poly.times):
        if len(poly.times) != n:
            raise InvalidInputError(
                f"polyline.times: {len(poly.times)} times for {n} points (give one per point or none)",
                field="polyline.times",
            )
        t_s = np.array(
            [seconds(ts, field=f"polyline.times[{i}]") for i, ts in enumerate(poly.times)]
        )
    speed = _finite(poly.speed_mps, "polyline.speed_mps") or DEFAULT_SPEED_MPS
    try:
        route = route_from_polyline(lon, lat, t_s=t_s, speed_mps=speed, name="polyline")
    except InvalidInputError as exc:
        field = _POLYLINE_FIELDS.get(exc.field or "", "polyline")
        raise InvalidInputError(f"{field}: {exc}", field=field) from None
    length_m = float(np.sum(route.geodesic_legs[0]))
    if length_m > max_route_m:
        raise InvalidInputError(
            f"polyline.points: route of {length_m / 1000:.0f} km exceeds the limit of "
            f"{max_route_m / 1000:.0f} km",
            field="polyline.points",
        )
    return route


_ROUTE_FILE_FORMATS = ("csv", "gpx", "geojson", "polyline")


def _file_route(rf: pb.RouteFile, *, max_bytes: int, max_points: int, max_route_m: float) -> Route:
    """The route of a RouteFile message, under the same limits as a polyline."""
    fmt = rf.format.strip().lower() or None
    if fmt is not None and fmt not in _ROUTE_FILE_FORMATS:
        raise InvalidInputError(
            f"route_file.format: {rf.format!r} is not one of {', '.join(_ROUTE_FILE_FORMATS)}",
            field="route_file.format",
        )
    if len(rf.content) > max_bytes:
        raise InvalidInputError(
            f"route_file.content: {len(rf.content)} bytes exceed the limit of {max_bytes}",
            field="route_file.content",
        )
    speed = _finite(rf.speed_mps, "route_file.speed_mps") or DEFAULT_SPEED_MPS
    route = parse_route(
        rf.content, fmt=fmt, name="route file", source="route_file.content", speed_mps=speed
    )
    if route.lon.size > max_points:
        raise InvalidInputError(
            f"route_file.content: {route.lon.size} points exceed the limit of {max_points}",
            field="route_file.content",
        )
    length_m = float(np.sum(route.geodesic_legs[0]))
    if length_m > max_route_m:
        raise InvalidInputError(
            f"route_file.content: route of {length_m / 1000:.0f} km exceeds the limit of "
            f"{max_route_m / 1000:.0f} km",
            field="route_file.content",
        )
    return route


def _endpoints(ends: pb.Endpoints, *, max_points: int) -> dict[str, Any]:
    if not ends.HasField("origin") or not ends.HasField("destination"):
        missing = "endpoints.origin" if not ends.HasField("origin") else "endpoints.destination"
        raise InvalidInputError(f"{missing}: required", field=missing)
    if len(ends.waypoints) > max_points:
        raise InvalidInputError(
            f"endpoints.waypoints: {len(ends.waypoints)} exceed the limit of {max_points}",
            field="endpoints.waypoints",
        )
    return {
        "origin": latlon(ends.origin, field="endpoints.origin"),
        "destination": latlon(ends.destination, field="endpoints.destination"),
        "waypoints": tuple(
            latlon(w, field=f"endpoints.waypoints[{i}]") for i, w in enumerate(ends.waypoints)
        ),
    }


def _constraints(c: pb.Constraints) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if c.HasField("min_dwell_s"):
        dwell = _finite(c.min_dwell_s, "constraints.min_dwell_s")
        if dwell < 0:
            raise InvalidInputError(
                "constraints.min_dwell_s: must be >= 0", field="constraints.min_dwell_s"
            )
        out["min_dwell_s"] = dwell
    if c.HasField("min_dwell_m"):
        dwell_m = _finite(c.min_dwell_m, "constraints.min_dwell_m")
        if dwell_m < 0:
            raise InvalidInputError(
                "constraints.min_dwell_m: must be >= 0", field="constraints.min_dwell_m"
            )
        out["min_dwell_m"] = dwell_m
    if c.HasField("max_handovers"):
        if c.max_handovers < 0:
            raise InvalidInputError(
                "constraints.max_handovers: must be >= 0", field="constraints.max_handovers"
            )
        out["max_handovers"] = int(c.max_handovers)
    if c.HasField("satellite_budget_mb"):
        budget = _finite(c.satellite_budget_mb, "constraints.satellite_budget_mb")
        if budget < 0:
            raise InvalidInputError(
                "constraints.satellite_budget_mb: must be >= 0",
                field="constraints.satellite_budget_mb",
            )
        out["sat_budget_mb"] = budget
    return out


def _weights(weights: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for name, value in sorted(weights.items()):
        out[name] = _finite(value, f"weights[{name}]")
        if out[name] < 0:
            raise InvalidInputError(f"weights[{name}]: must be >= 0", field=f"weights[{name}]")
    return out


def plan_request(
    request: pb.PlanRouteRequest,
    *,
    config: ServerConfig,
    time_limit_s: float,
) -> PlanRequest:
    """The library request of a PlanRouteRequest, validated.

    Parameters
    ----------
    request : the gRPC request.
    config : server limits (polyline points, alternatives).
    time_limit_s : solver time limit already derived from the request and the call deadline.

    Raises
    ------
    InvalidInputError
        Naming the offending field: no route, bad positions, bad times, limits exceeded.
    """
    which = request.WhichOneof("route")
    if which is None:
        raise InvalidInputError("route: give endpoints, a polyline or a route file", field="route")
    kwargs: dict[str, Any] = {}
    if which == "endpoints":
        kwargs.update(_endpoints(request.endpoints, max_points=config.max_polyline_points))
    elif which == "route_file":
        kwargs["route"] = _file_route(
            request.route_file,
            # a CSV row or GPX point takes well under 128 bytes
            max_bytes=128 * config.max_polyline_points,
            max_points=config.max_polyline_points,
            max_route_m=config.max_route_m,
        )
    else:
        kwargs["route"] = _polyline_route(
            request.polyline, max_points=config.max_polyline_points, max_route_m=config.max_route_m
        )
    if request.HasField("departure_time"):
        kwargs["departure_s"] = seconds(request.departure_time, field="departure_time")
    if request.application_class:
        kwargs["app"] = request.application_class
    if request.HasField("constraints"):
        kwargs.update(_constraints(request.constraints))
    alternatives = request.alternatives or defaults.ALTERNATIVES
    if not 1 <= alternatives <= defaults.MAX_ALTERNATIVES:
        raise InvalidInputError(
            f"alternatives: {alternatives} is not within 1..{defaults.MAX_ALTERNATIVES}",
            field="alternatives",
        )
    kwargs["alternatives"] = alternatives
    kwargs["weights"] = _weights(request.weights)
    kwargs["allow_stale_elements"] = bool(request.allow_stale_elements)
    if request.vehicle:
        kwargs["vehicle"] = request.vehicle
    if request.HasField("seconds_per_drop"):
        kwargs["seconds_per_drop"] = _finite(request.seconds_per_drop, "seconds_per_drop")
    kwargs["time_limit_s"] = time_limit_s
    if not _SEED_RANGE[0] <= request.seed <= _SEED_RANGE[1]:
        raise InvalidInputError(
            f"seed: {request.seed} does not fit in 32 bits ({_SEED_RANGE[0]}..{_SEED_RANGE[1]})",
            field="seed",
        )
    kwargs["seed"] = int(request.seed)
    try:
        return PlanRequest(**kwargs)
    except InvalidInputError as exc:  # name the field as the client wrote it
        field = _REQUEST_FIELDS.get((exc.field or "").split(".")[0], exc.field or "")
        message = str(exc)
        raise InvalidInputError(
            message if message.startswith(field) else f"{field}: {message}", field=field
        ) from None


# PlanRequest field -> PlanRouteRequest field, for error messages
_REQUEST_FIELDS = {
    "app": "application_class",
    "min_dwell_s": "constraints.min_dwell_s",
    "min_dwell_m": "constraints.min_dwell_m",
    "max_handovers": "constraints.max_handovers",
    "sat_budget_mb": "constraints.satellite_budget_mb",
    "time_limit_s": "solver_time_limit_s",
    "destination": "endpoints.destination",
    "origin": "endpoints.origin",
    "waypoints": "endpoints.waypoints",
}


def requested_time_limit_s(request: pb.PlanRouteRequest, config: ServerConfig) -> float:
    """Solver time the request asks for, within the server's bounds (before the deadline cap)."""
    asked = _finite(request.solver_time_limit_s, "solver_time_limit_s")
    if asked < 0:
        raise InvalidInputError("solver_time_limit_s: must be >= 0", field="solver_time_limit_s")
    return min(asked or config.default_solver_time_limit_s, config.max_solver_time_limit_s)


# -- measurements ---------------------------------------------------------------------------------
_OPTIONAL_QUALITY = (
    "rsrp_dbm",
    "rsrq_db",
    "sinr_db",
    "throughput_dl_mbps",
    "throughput_ul_mbps",
    "rtt_ms",
)


def _measured(m: pb.Measurement, name: str, where: str) -> float:
    """The value of one optional field (NaN when unset); the older ``throughput_mbps`` is DL."""
    if name == "throughput_dl_mbps" and not m.HasField(name) and m.HasField("throughput_mbps"):
        name = "throughput_mbps"
    if not m.HasField(name):
        return np.nan
    return _finite(getattr(m, name), f"{where}.{name}")


def measurements_frame(
    measurements: Sequence[pb.Measurement],
    *,
    vehicle_id: str,
    field: str = "measurements",
    first_index: int = 0,
) -> pd.DataFrame:
    """Measurement records (commap.radio.measurements schema) of Measurement messages.

    Positions, times (within the records' nanosecond range, 1677..2262) and the vehicle id are
    validated here (naming ``measurements[i]``); value ranges and network ids by
    :func:`checked_measurements`, the same for every RPC that carries measurements. A measurement without a ``drive_id``
    belongs to the drive of ``vehicle_id``.
    """
    cols: dict[str, list[Any]] = {
        name: []
        for name in (
            "timestamp",
            "lat",
            "lon",
            "network_id",
            *_OPTIONAL_QUALITY,
            "connected",
            "cell_id",
            "network_mode",
            "drive_id",
        )
    }
    for k, m in enumerate(measurements):
        where = f"{field}[{first_index + k}]"
        if not m.HasField("time"):
            raise InvalidInputError(f"{where}.time: required", field=f"{where}.time")
        if not m.HasField("position"):
            raise InvalidInputError(f"{where}.position: required", field=f"{where}.position")
        if not m.network_id:
            raise InvalidInputError(f"{where}.network_id: required", field=f"{where}.network_id")
        if m.HasField("throughput_mbps") and m.HasField("throughput_dl_mbps"):
            raise InvalidInputError(
                f"{where}: set throughput_dl_mbps or its older name throughput_mbps, not both",
                field=f"{where}.throughput_mbps",
            )
        lon, lat = latlon(m.position, field=f"{where}.position")
        t_s = seconds(m.time, field=f"{where}.time")
        if not _MIN_RECORD_S <= t_s <= _MAX_RECORD_S:
            raise InvalidInputError(
                f"{where}.time: {t_s:.0f} s is outside the measurement range (1677..2262)",
                field=f"{where}.time",
            )
        cols["timestamp"].append(t_s)
        cols["lat"].append(lat)
        cols["lon"].append(lon)
        cols["network_id"].append(m.network_id)
        values = [_measured(m, name, where) for name in _OPTIONAL_QUALITY]
        for name, value in zip(_OPTIONAL_QUALITY, values, strict=True):
            cols[name].append(value)
        cols["connected"].append(m.connected if m.HasField("connected") else pd.NA)
        if all(np.isnan(values)) and not m.HasField("connected"):
            raise InvalidInputError(
                f"{where}: carries no value ({', '.join(_OPTIONAL_QUALITY)} or connected)",
                field=where,
            )
        cols["cell_id"].append(m.cell_id if m.HasField("cell_id") else pd.NA)
        cols["network_mode"].append(m.network_mode or pd.NA)
        cols["drive_id"].append(m.drive_id or vehicle_id)
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(
                np.asarray(cols["timestamp"], dtype=np.float64), unit="s", utc=True
            ),
            "lat": np.asarray(cols["lat"], dtype=np.float64),
            "lon": np.asarray(cols["lon"], dtype=np.float64),
            "network_id": pd.Series(cols["network_id"], dtype="str"),
            **{name: np.asarray(cols[name], dtype=np.float64) for name in _OPTIONAL_QUALITY},
            "connected": pd.array(cols["connected"], dtype="boolean"),
            "cell_id": pd.array(cols["cell_id"], dtype="Int64"),
            "network_mode": pd.Series(cols["network_mode"], dtype="string"),
            "drive_id": pd.Series(cols["drive_id"], dtype="string"),
        }
    )
    return frame


def checked_measurements(
    records: pd.DataFrame, *, known_networks: Collection[str], field: str = "measurements"
) -> pd.DataFrame:
    """Records of :func:`measurements_frame`, range-checked: the one check of every measurement
    a client sends (``ReportMeasurements`` and ``Drive``), so that a value refused in an upload
    is refused in a drive too.

    Returns the records with the schema's dtypes (:func:`commap.radio.measurements.validate_records`).

    Raises
    ------
    InvalidInputError
        The first bad value (out of range, unknown network), naming ``field``, row and column.

    Examples
    --------
    >>> from google.protobuf.timestamp_pb2 import Timestamp
    >>> m = pb.Measurement(time=Timestamp(seconds=1737633600), network_id="ad-lte",
    ...                    position=pb.LatLon(latitude_deg=42.5, longitude_deg=1.5), sinr_db=1e6)
    >>> frame = measurements_frame([m], vehicle_id="v", field="update.measurements")
    >>> checked_measurements(frame, known_networks=["ad-lte"], field="update.measurements")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: update.measurements: row 0, column 'sinr_db': 1e+06 is outside [-50, 60]
    >>> checked_measurements(frame.iloc[:0], known_networks=["ad-lte"])
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: measurements: holds no records
    """
    from commap.radio.measurements import validate_records

    return validate_records(records, source=field, known_networks=known_networks)


# -- plans ----------------------------------------------------------------------------------------
_SOLVER_STATUS = {"OPTIMAL": pb.SOLVER_STATUS_OPTIMAL, "FEASIBLE": pb.SOLVER_STATUS_FEASIBLE}


def _switch_kind(value: str) -> pb.SwitchKind:
    try:
        return SWITCH_KIND_TO_PB[SwitchKind(value)]
    except ValueError:
        return pb.SWITCH_KIND_UNSPECIFIED


def handover_message(handover: Handover, departure_s: float) -> pb.Handover:
    """Handover message of a plan's handover."""
    return pb.Handover(
        position=to_latlon(handover.lon, handover.lat),
        distance_m=handover.distance_m,
        eta_s=handover.eta_s,
        time=timestamp(departure_s + handover.eta_s),
        from_network_id=handover.from_network,
        to_network_id=handover.to_network,
        kind=_switch_kind(handover.kind),
        failure_probability=handover.failure_prob,
        interruption_s=handover.interruption_s,
        segment_index=handover.segment,
        prepare_s=handover.prepare_s,
    )


def _totals(totals: PlanTotals) -> pb.PlanTotals:
    by_kind = [
        pb.HandoverCount(kind=_switch_kind(kind), count=int(count))
        for kind, count in sorted(totals.handovers_by_kind.items())
    ]
    return pb.PlanTotals(
        length_m=totals.length_m,
        duration_s=totals.duration_s,
        handover_count=int(totals.handovers),
        handovers_by_kind=by_kind,
        expected_drops=totals.expected_drops,
        outage_drops=totals.outage_drops,
        handover_drops=totals.handover_drops,
        outage_s=totals.outage_s,
        interruption_s=totals.interruption_s,
        satellite_mb=totals.sat_mb,
        latency_violation_s=totals.latency_violation_s,
        objective=totals.cost,
        time_share={str(k): float(v) for k, v in totals.time_share.items()},
        expected_loss_s=totals.expected_loss_s,
        loss_events=totals.loss_events,
    )


def _solver(report: SolverReport, time_limit_s: float) -> pb.SolverReport:
    return pb.SolverReport(
        solver=report.name,
        status=_SOLVER_STATUS.get(report.status.upper(), pb.SOLVER_STATUS_UNSPECIFIED),
        gap=report.gap if math.isfinite(report.gap) else 0.0,
        wall_time_s=report.time_s,
        time_limit_s=time_limit_s,
        objective=report.objective,
        bound=report.bound if math.isfinite(report.bound) else 0.0,
        detail=report.detail,
    )


def _plan_constraints(values: Mapping[str, Any]) -> pb.Constraints:
    out = pb.Constraints(
        min_dwell_s=float(values.get("min_dwell_s", 0.0)),
        min_dwell_m=float(values.get("min_dwell_m", 0.0)),
    )
    if values.get("max_handovers") is not None:
        out.max_handovers = int(values["max_handovers"])
    if values.get("sat_budget_mb") is not None:
        out.satellite_budget_mb = float(values["sat_budget_mb"])
    return out


def _route_summary(route: Route | None, corridor: Corridor | None, plan: Plan) -> pb.RouteSummary:
    summary = pb.RouteSummary(length_m=plan.totals.length_m, duration_s=plan.totals.duration_s)
    if corridor is not None and len(corridor):
        summary.tunnel_length_m = float(corridor.length_m[corridor.in_tunnel].sum())
    if route is not None:
        summary.name = route.name
        summary.MergeFromString(
            wire.latlon_points(
                pb.RouteSummary.POINTS_FIELD_NUMBER,
                np.asarray(route.lon, dtype=np.float64),
                np.asarray(route.lat, dtype=np.float64),
            )
        )
    return summary


def plan_message(
    plan: Plan,
    *,
    map_name: str,
    time_limit_s: float,
    route: Route | None = None,
    corridor: Corridor | None = None,
    segment_m: float = 0.0,
    include_segments: bool = True,
) -> pb.Plan:
    """Plan message of a library plan (segments only when ``include_segments``)."""
    message = pb.Plan(
        map_name=map_name,
        departure_time=timestamp(plan.departure_s),
        application_class=plan.app,
        route=_route_summary(route, corridor, plan),
        segment_m=segment_m,
        handovers=[handover_message(h, plan.departure_s) for h in plan.handovers],
        totals=_totals(plan.totals),
        solver=_solver(plan.solver, time_limit_s),
        constraints=_plan_constraints(plan.constraints),
    )
    for nid, epoch_s in plan.element_epochs.items():
        message.element_epochs[nid].CopyFrom(timestamp(epoch_s))
    if include_segments:
        tunnel = (
            corridor.in_tunnel
            if corridor is not None and len(corridor) == len(plan)
            else np.zeros(len(plan), bool)
        )
        ids = plan.segment_networks
        provenance = [
            PROVENANCE_TO_PB.get(int(p), pb.PROVENANCE_UNSPECIFIED)
            for p in plan.provenance.tolist()
        ]
        encoded = wire.plan_segments(
            pb.Plan.SEGMENTS_FIELD_NUMBER,
            lon=np.asarray(plan.lon, dtype=np.float64),
            lat=np.asarray(plan.lat, dtype=np.float64),
            distance_m=np.asarray(plan.distance_m, dtype=np.float64),
            length_m=np.asarray(plan.length_m, dtype=np.float64),
            eta_s=np.asarray(plan.eta_s, dtype=np.float64),
            duration_s=np.asarray(plan.duration_s, dtype=np.float64),
            network_ids=ids,
            provenance=np.asarray(provenance, dtype=np.int64),
            outage_probability=np.asarray(plan.outage_risk, dtype=np.float64),
            in_tunnel=np.asarray(tunnel, dtype=bool),
        )
        if encoded is not None:  # in bulk (thousands of segments): see server.wire
            message.MergeFromString(encoded)
            return message
        message.segments.extend(
            pb.PlanSegment(
                position=pb.LatLon(latitude_deg=lat, longitude_deg=lon),
                distance_m=d,
                length_m=length,
                eta_s=eta,
                duration_s=dur,
                network_id=nid,
                provenance=prov,
                outage_probability=risk,
                in_tunnel=tun,
            )
            for lon, lat, d, length, eta, dur, nid, prov, risk, tun in zip(
                plan.lon.tolist(),
                plan.lat.tolist(),
                plan.distance_m.tolist(),
                plan.length_m.tolist(),
                plan.eta_s.tolist(),
                plan.duration_s.tolist(),
                ids,
                provenance,
                plan.outage_risk.tolist(),
                np.asarray(tunnel, dtype=bool).tolist(),
                strict=True,
            )
        )
    return message


def _alternative(
    option: RouteOption, *, picked: int, map_name: str, time_limit_s: float
) -> pb.RouteAlternative:
    message = pb.RouteAlternative(
        index=option.index,
        name=option.name,
        length_m=option.length_m,
        travel_time_s=option.travel_time_s,
        expected_drops=_or_zero(option.expected_drops),
        handover_count=option.handovers,
        outage_s=_or_zero(option.outage_s),
        satellite_mb=_or_zero(option.sat_mb),
        score_s=_or_zero(option.score_s),
        feasible=option.feasible,
        reason=option.reason,
        picked=option.index == picked,
    )
    if option.plan is not None:
        message.plan.CopyFrom(
            plan_message(
                option.plan, map_name=map_name, time_limit_s=time_limit_s, include_segments=False
            )
        )
    return message


def _or_zero(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0


def plan_response(
    result: PlanResult,
    *,
    map_name: str,
    time_limit_s: float,
    segment_m: float,
    include_segments: bool = True,
) -> pb.PlanRouteResponse:
    """PlanRouteResponse of a planning result: the chosen plan, and the alternatives table."""
    response = pb.PlanRouteResponse(
        plan=plan_message(
            result.plan,
            map_name=map_name,
            time_limit_s=time_limit_s,
            route=result.route,
            corridor=result.corridor,
            segment_m=segment_m,
            include_segments=include_segments,
        )
    )
    if result.choice is not None:
        response.alternatives.extend(
            _alternative(o, picked=result.choice.best, map_name=map_name, time_limit_s=time_limit_s)
            for o in result.choice.options
        )
    return response


# -- live drive -----------------------------------------------------------------------------------
def positive_or_default(value: float, default: float, field: str) -> float:
    """A client override of a positive setting (0: the server default)."""
    value = _finite(value, field)
    if value < 0:
        raise InvalidInputError(f"{field}: must be >= 0 (0: server default)", field=field)
    return value or default


def position_fix(fix: pb.PositionFix, *, field: str = "update.fix") -> Fix:
    """Library fix of a PositionFix message, validated.

    Examples
    --------
    >>> fix = pb.PositionFix(time=Timestamp(seconds=10, nanos=500_000_000),
    ...                      position=pb.LatLon(latitude_deg=42.5, longitude_deg=1.5))
    >>> position_fix(fix)
    Fix(t_s=10.5, lon=1.5, lat=42.5, speed_mps=None)
    >>> position_fix(pb.PositionFix(time=Timestamp(seconds=10)))
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: update.fix.position: required
    """
    # a Drive stream sends ten of these a second per vehicle: a valid fix is read without
    # building the field names its errors would need; anything else takes the checks below
    if fix.HasField("time") and fix.HasField("position") and not fix.HasField("speed_mps"):
        position, stamp = fix.position, fix.time
        lon, lat = position.longitude_deg, position.latitude_deg
        whole_s, nanos = stamp.seconds, stamp.nanos
        if (
            abs(lat) <= 90.0  # False for NaN
            and abs(lon) <= 180.0
            and 0 <= nanos <= 999_999_999
            and _MIN_TS_S <= whole_s <= _MAX_TS_S
        ):
            return Fix(t_s=whole_s + nanos * 1e-9, lon=lon, lat=lat)
    return _checked_position_fix(fix, field)


def _checked_position_fix(fix: pb.PositionFix, field: str) -> Fix:
    if not fix.HasField("time"):
        raise InvalidInputError(f"{field}.time: required", field=f"{field}.time")
    if not fix.HasField("position"):
        raise InvalidInputError(f"{field}.position: required", field=f"{field}.position")
    lon, lat = latlon(fix.position, field=f"{field}.position")
    speed = None
    if fix.HasField("speed_mps"):
        speed = _finite(fix.speed_mps, f"{field}.speed_mps")
        if speed < 0:
            raise InvalidInputError(f"{field}.speed_mps: must be >= 0", field=f"{field}.speed_mps")
    return Fix(t_s=seconds(fix.time, field=f"{field}.time"), lon=lon, lat=lat, speed_mps=speed)


def progress_message(progress: RouteProgress) -> pb.DriveProgress:
    """DriveProgress of the session's progress."""
    return pb.DriveProgress(
        fix_time=timestamp(progress.t_s),
        distance_m=progress.distance_m,
        off_route_m=progress.off_route_m,
        network_id=progress.network_id,
    )


def instruction_response(
    instruction: Instruction, progress: RouteProgress, departure_s: float
) -> pb.DriveResponse:
    """DriveResponse carrying one handover instruction."""
    return pb.DriveResponse(
        progress=progress_message(progress),
        instruction=pb.HandoverInstruction(
            plan_version=instruction.plan_version,
            handover=handover_message(instruction.handover, departure_s),
            distance_to_go_m=instruction.distance_to_go_m,
            time_to_go_s=instruction.time_to_go_s,
            expected_time=timestamp(instruction.expected_t_s),
            min_target_sinr_db=DEFAULT_EXECUTION_RULES.min_target_sinr_db,
        ),
    )


def execution_rules_message(rules: ExecutionRules = DEFAULT_EXECUTION_RULES) -> pb.ExecutionRules:
    """The closed-loop execution rules sent with every Drive plan."""
    return pb.ExecutionRules(
        min_dwell_s=rules.min_dwell_s,
        min_target_sinr_db=rules.min_target_sinr_db,
        weak_sinr_db=rules.weak_sinr_db,
        weak_ttt_s=rules.weak_ttt_s,
        weak_ttt_per_interruption=rules.weak_ttt_per_interruption,
    )


def prefixed(exc: InvalidInputError, prefix: str) -> InvalidInputError:
    """``exc`` with its field named under ``prefix`` (``fix.time`` -> ``update.fix.time``).

    Examples
    --------
    >>> prefixed(InvalidInputError("late", field="fix.time"), "update").field
    'update.fix.time'
    """
    field = f"{prefix}.{exc.field}" if exc.field else prefix
    message = str(exc)
    if exc.field and message.startswith(exc.field):
        message = message[len(exc.field) :].lstrip(": ")
    return InvalidInputError(f"{field}: {message}", field=field)
