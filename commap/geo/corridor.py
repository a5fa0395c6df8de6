"""Corridors: a route cut into fixed-length segments.

A :class:`Route` is a polyline with per-leg speed and tunnel/bridge flags (from the road graph,
or an explicit polyline such as a GPS trace, optionally with timestamps). :func:`cut` turns it
into a :class:`Corridor` of segments of ``segment_m`` metres.

Lengths are geodesic (WGS84 ellipsoid, ``pyproj.Geod``), the same measure as the road graph's
``length_m``, so a corridor's length equals the sum of its edges' lengths even for a route that
spans several UTM zones; segment centres are placed along the geodesic of their leg. The
"under a bridge" test, which needs planar geometry, works in the UTM zone of the route centre.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyproj
import shapely
from numpy.typing import ArrayLike, NDArray
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry

from commap.arrays import BoolArray, FloatArray
from commap.errors import InvalidInputError
from commap.geo.geodesy import GEOD, offset_deg, utm_epsg

__all__ = ["DEFAULT_SPEED_MPS", "Corridor", "Route", "cut", "depart", "route_from_polyline"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """A route as a polyline with per-leg attributes (WGS84).

    ``lon``/``lat`` have one entry per vertex (``n``); ``speed_mps``, ``in_tunnel``,
    ``on_bridge`` one per leg (``n - 1``). ``t_s`` (epoch seconds per vertex) is set for
    recorded drives and then gives the segment times. ``edges`` lists the road-graph edges
    ``(u, v, key)`` the route follows (empty for explicit polylines).
    """

    lon: FloatArray
    lat: FloatArray
    speed_mps: FloatArray
    in_tunnel: BoolArray
    on_bridge: BoolArray
    t_s: FloatArray | None = None
    edges: tuple[tuple[int, int, int], ...] = ()
    name: str = ""

    @functools.cached_property
    def geodesic_legs(self) -> tuple[FloatArray, FloatArray]:
        """Geodesic length (m) and forward azimuth (deg) of every leg, computed once.

        Checking, estimating and cutting a route all need them: tens of milliseconds for a
        polyline of tens of thousands of points, paid once per route.
        """
        lon = np.asarray(self.lon, dtype=np.float64)
        lat = np.asarray(self.lat, dtype=np.float64)
        return _leg_lengths_m(lon, lat)


@dataclass(frozen=True)
class Corridor:
    """A route cut into segments; every array has one entry per segment.

    Attributes
    ----------
    lon, lat : segment centre, WGS84 degrees.
    distance_m : distance along the route at the segment start.
    length_m : segment length (the last one may be shorter).
    eta_s : seconds after departure at the segment start.
    duration_s : time spent in the segment.
    speed_mps : speed in the segment.
    in_tunnel, on_bridge, under_bridge : flags at the segment centre.
    departure_s : departure time, epoch seconds (UTC).
    """

    lon: FloatArray
    lat: FloatArray
    distance_m: FloatArray
    length_m: FloatArray
    eta_s: FloatArray
    duration_s: FloatArray
    speed_mps: FloatArray
    in_tunnel: BoolArray
    on_bridge: BoolArray
    under_bridge: BoolArray
    departure_s: float
    route: Route | None = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return int(self.lon.shape[0])

    @property
    def t_s(self) -> FloatArray:
        """Epoch seconds at each segment centre."""
        return self.departure_s + self.eta_s + self.duration_s / 2.0

    @property
    def total_length_m(self) -> float:
        """Route length covered by the corridor."""
        return float(self.length_m.sum())

    @property
    def total_duration_s(self) -> float:
        """Travel time over the corridor."""
        return float(self.duration_s.sum())


_MIN_LEG_M = 1e-6  # legs shorter than this are repeated positions (a GPS fix while stopped)
_MIN_CROSSING_DEG = 20.0  # a trace wobbling along a bridge is not passing under it
_MIN_OVERHANG_M = 2.0  # an overpass reaches at least this far beyond the road under it
DEFAULT_SPEED_MPS = 13.9  # 50 km/h


# -- validation -------------------------------------------------------------------------------


def _float_array(values: ArrayLike, name: str) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name}: values must be numbers", field=name) from None
    if array.ndim != 1:
        raise InvalidInputError(
            f"{name}: expected a 1-D sequence, got shape {array.shape}", field=name
        )
    if not np.isfinite(array).all():
        raise InvalidInputError(
            f"{name}: value at index {int(np.argmax(~np.isfinite(array)))} is not finite",
            field=name,
        )
    return array


def _check_positions(lon: FloatArray, lat: FloatArray) -> None:
    if lon.shape != lat.shape:
        raise InvalidInputError(
            f"lon and lat differ in length ({lon.shape[0]} vs {lat.shape[0]})", field="lon"
        )
    if lon.shape[0] < 2:
        raise InvalidInputError(f"a route needs at least 2 points, got {lon.shape[0]}", field="lon")
    for values, name, limit in ((lon, "lon", 180.0), (lat, "lat", 90.0)):
        out = np.abs(values) > limit
        if out.any():
            i = int(np.argmax(out))
            raise InvalidInputError(
                f"{name}[{i}] = {values[i]} is outside -{limit:.0f}..{limit:.0f}", field=name
            )


def _check_times(t_s: FloatArray, n: int) -> None:
    if t_s.shape[0] != n:
        raise InvalidInputError(f"t_s has {t_s.shape[0]} values for {n} points", field="t_s")
    steps = np.diff(t_s)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0)) + 1
        kind = "duplicate" if steps[i - 1] == 0 else "out of order"
        raise InvalidInputError(
            f"timestamps must increase strictly: t_s[{i}] = {t_s[i]} is {kind} "
            f"(previous {t_s[i - 1]})",
            field="t_s",
        )


def _leg_lengths_m(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Geodesic length and forward azimuth of every leg."""
    azimuth, _, length_m = GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
    return np.asarray(length_m, dtype=np.float64), np.asarray(azimuth, dtype=np.float64)


def route_from_polyline(
    lon: ArrayLike,
    lat: ArrayLike,
    *,
    t_s: ArrayLike | None = None,
    speed_mps: float = DEFAULT_SPEED_MPS,
    name: str = "",
) -> Route:
    """A :class:`Route` from an explicit polyline, e.g. a GPS trace (no road graph needed).

    Parameters
    ----------
    lon, lat : array_like
        Vertices, WGS84 degrees (at least 2).
    t_s : array_like, optional
        Epoch seconds per vertex for a recorded drive (strictly increasing); leg speeds then
        follow from the trace and :func:`cut` takes times from it.
    speed_mps : float
        Constant speed when there are no timestamps (default 13.9 m/s = 50 km/h).
    name : str
        Label of the route.

    Raises
    ------
    InvalidInputError
        Fewer than 2 points, NaN or out-of-range coordinates, lengths that differ, duplicate or
        unordered timestamps, a non-positive speed, or a route of zero length.

    Examples
    --------
    >>> route = route_from_polyline([1.50, 1.51], [42.50, 42.50])
    >>> route.speed_mps.tolist(), route.in_tunnel.tolist()
    ([13.9], [False])
    >>> route_from_polyline([1.5], [42.5])
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: a route needs at least 2 points, got 1
    """
    lon_a, lat_a = _float_array(lon, "lon"), _float_array(lat, "lat")
    _check_positions(lon_a, lat_a)
    length_m, azimuth = _leg_lengths_m(lon_a, lat_a)
    if not (length_m > _MIN_LEG_M).any():
        raise InvalidInputError("route has zero length: all points coincide", field="lon")
    times: FloatArray | None = None
    if t_s is not None:
        times = _float_array(t_s, "t_s")
        _check_times(times, lon_a.shape[0])
        speed = length_m / np.diff(times)
    else:
        if not (math.isfinite(speed_mps) and speed_mps > 0):
            raise InvalidInputError(f"speed_mps must be > 0, got {speed_mps}", field="speed_mps")
        speed = np.full(lon_a.shape[0] - 1, float(speed_mps))
    legs = lon_a.shape[0] - 1
    route = Route(
        lon=lon_a,
        lat=lat_a,
        speed_mps=speed,
        in_tunnel=np.zeros(legs, dtype=bool),
        on_bridge=np.zeros(legs, dtype=bool),
        t_s=times,
        name=name,
    )
    route.__dict__["geodesic_legs"] = (length_m, azimuth)  # the cached property, known already
    return route


# -- cutting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Legs:
    """A validated route: geometry without zero-length legs, clock with every vertex.

    ``knot_m``/``knot_s`` keep repeated positions (a stop: same distance, later time) so that
    :func:`_time_at` can put the whole stop at the place where it happened.
    """

    lon: FloatArray
    lat: FloatArray
    length_m: FloatArray
    azimuth_deg: FloatArray
    cum_m: FloatArray  # distance at each vertex
    in_tunnel: BoolArray
    on_bridge: BoolArray
    knot_m: FloatArray  # distance at every original vertex (non-decreasing)
    knot_s: FloatArray  # time after departure at every original vertex (increasing)


def _legs(route: Route) -> _Legs:
    lon, lat = _float_array(route.lon, "route.lon"), _float_array(route.lat, "route.lat")
    _check_positions(lon, lat)
    n_legs = lon.shape[0] - 1
    for name in ("speed_mps", "in_tunnel", "on_bridge"):
        if np.shape(getattr(route, name)) != (n_legs,):
            raise InvalidInputError(
                f"route.{name} needs one value per leg ({n_legs}), got shape "
                f"{np.shape(getattr(route, name))}",
                field=f"route.{name}",
            )
    length_m, azimuth = route.geodesic_legs
    keep = length_m > _MIN_LEG_M
    if not keep.any():
        raise InvalidInputError("route has zero length: all points coincide", field="route")
    kept_m = np.where(keep, length_m, 0.0)
    if route.t_s is not None:
        t_s = _float_array(route.t_s, "route.t_s")
        _check_times(t_s, lon.shape[0])
        knot_s = t_s - t_s[0]
    else:
        speed = _float_array(route.speed_mps, "route.speed_mps")
        if (speed[keep] <= 0).any():
            raise InvalidInputError(
                "route.speed_mps must be > 0 on every leg", field="route.speed_mps"
            )
        leg_s = np.divide(kept_m, speed, out=np.zeros_like(kept_m), where=keep)
        knot_s = np.concatenate(([0.0], np.cumsum(leg_s)))
    vertex = np.concatenate(([True], keep))  # a repeated position keeps its first vertex
    return _Legs(
        lon=lon[vertex],
        lat=lat[vertex],
        length_m=length_m[keep],
        azimuth_deg=azimuth[keep],
        cum_m=np.concatenate(([0.0], np.cumsum(length_m[keep]))),
        in_tunnel=np.asarray(route.in_tunnel, dtype=bool)[keep],
        on_bridge=np.asarray(route.on_bridge, dtype=bool)[keep],
        knot_m=np.concatenate(([0.0], np.cumsum(kept_m))),
        knot_s=knot_s,
    )


def _time_at(legs: _Legs, x_m: FloatArray) -> FloatArray:
    """Time (after departure) when the vehicle first reaches distance ``x_m``.

    Linear within a leg; a stop at distance ``d`` (several vertices at ``d``) counts after
    the arrival at ``d``, so it falls into the segment that starts at or contains ``d``.
    """
    knots, times = legs.knot_m, legs.knot_s
    last = knots.size - 1
    # indices are bounded with minimum/maximum: np.clip's Python wrappers cost more than the
    # search on a short route (a map build cuts every edge alone)
    j = np.minimum(np.searchsorted(knots, x_m, side="left"), last)
    prev = np.maximum(j - 1, 0)  # the last vertex before x: the departure after a stop
    span = knots[j] - knots[prev]
    frac = np.divide(x_m - knots[prev], span, out=np.ones_like(span), where=span > 0)
    between = times[prev] + frac * (times[j] - times[prev])
    return np.where(knots[j] == x_m, times[j], between)


def _departure(route: Route, departure_s: float | None) -> float:
    if route.t_s is not None:
        first = float(np.asarray(route.t_s, dtype=np.float64)[0])
        if departure_s is not None and departure_s != first:
            log.debug(
                "recorded route: departure %s replaced by first timestamp %s", departure_s, first
            )
        return first
    if departure_s is None or not math.isfinite(departure_s):
        raise InvalidInputError(
            "departure_s (epoch seconds) is required for a route without timestamps",
            field="departure_s",
        )
    return float(departure_s)


def cut(
    route: Route,
    *,
    segment_m: float = 50.0,
    departure_s: float | None = None,
    overpasses: Sequence[BaseGeometry] | NDArray[np.object_] | None = None,
    under_bridge_m: float = 10.0,
) -> Corridor:
    """Cut a route into segments of ``segment_m`` metres (the last one may be shorter).

    Parameters
    ----------
    route : Route
        Road-graph route or polyline. Repeated positions (zero-length legs) are skipped.
    segment_m : float
        Segment length in metres (> 0).
    departure_s : float, optional
        Departure, epoch seconds. Required without ``route.t_s``; for a recorded drive the
        first timestamp is the departure and segment times are interpolated from the trace.
    overpasses : sequence of shapely geometries, optional
        Bridges (lon/lat), e.g. :func:`commap.geo.roads.bridge_geometries`. A segment is
        ``under_bridge`` when the route passes beneath one of them inside the segment or
        within ``under_bridge_m`` of its centre. Passing beneath means crossing the bridge
        line at more than 20 degrees, at least 2 m from its ends, while the route is not on a
        bridge itself; so the route's own bridges (it runs along them) and ramps that join
        it (they end on it) do not count.
    under_bridge_m : float
        Distance along the route from a crossing within which segment centres count as under
        it (a deck is about 10 to 30 m wide).

    Returns
    -------
    Corridor
        Per segment: centre ``lon``/``lat``, ``distance_m`` at its start, ``length_m``,
        ``eta_s`` (after departure) at its start, ``duration_s``, mean ``speed_mps``, and
        ``in_tunnel``/``on_bridge`` of the leg under its centre.

    Raises
    ------
    InvalidInputError
        ``segment_m <= 0``, a malformed route (see :func:`route_from_polyline`), a zero-length
        route, or a missing departure.

    Examples
    --------
    >>> route = route_from_polyline([1.5000, 1.5025], [42.5, 42.5])  # 205.5 m
    >>> c = cut(route, departure_s=0.0)
    >>> len(c), c.distance_m.tolist(), round(float(c.length_m[-1]), 1)
    (5, [0.0, 50.0, 100.0, 150.0, 200.0], 5.5)
    >>> short = cut(route_from_polyline([1.5, 1.5001], [42.5, 42.5]), departure_s=0.0)
    >>> len(short), round(float(short.length_m[0]), 2), round(float(short.duration_s[0]), 2)
    (1, 8.22, 0.59)
    >>> cut(route, segment_m=0.0, departure_s=0.0)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: segment_m must be > 0, got 0.0
    """
    if not (math.isfinite(segment_m) and segment_m > 0):
        raise InvalidInputError(f"segment_m must be > 0, got {segment_m}", field="segment_m")
    legs = _legs(route)
    departure = _departure(route, departure_s)
    total_m = float(legs.cum_m[-1])
    # a float remainder of a micrometre is not a segment
    n_segments = max(1, math.ceil((total_m - 1e-6) / segment_m))
    start_m = np.arange(n_segments, dtype=np.float64) * segment_m
    end_m = np.minimum(start_m + segment_m, total_m)
    end_m[-1] = total_m
    length_m = end_m - start_m
    centre_m = start_m + length_m / 2.0
    leg = np.minimum(
        np.maximum(np.searchsorted(legs.cum_m, centre_m, side="right") - 1, 0),
        legs.length_m.size - 1,
    )
    lon, lat, _ = GEOD.fwd(
        legs.lon[leg], legs.lat[leg], legs.azimuth_deg[leg], centre_m - legs.cum_m[leg]
    )
    # both ends in one call (element by element: the same values as two calls)
    times_s = _time_at(legs, np.concatenate((start_m, end_m)))
    eta_s = times_s[:n_segments]
    duration_s = times_s[n_segments:] - eta_s
    under = _under_bridge(legs, start_m, centre_m, overpasses, under_bridge_m)
    return Corridor(
        lon=np.asarray(lon, dtype=np.float64),
        lat=np.asarray(lat, dtype=np.float64),
        distance_m=start_m,
        length_m=length_m,
        eta_s=eta_s,
        duration_s=duration_s,
        speed_mps=length_m / duration_s,
        in_tunnel=legs.in_tunnel[leg],
        on_bridge=legs.on_bridge[leg],
        under_bridge=under,
        departure_s=departure,
        route=route,
    )


def depart(corridor: Corridor, departure_s: float | None) -> Corridor:
    """``corridor`` leaving at ``departure_s``: what :func:`cut` returns for that departure.

    A corridor's segments, distances and durations do not depend on the departure (only its
    times do, through ``departure_s``), so a route cut once serves every later departure
    without cutting it again. A recorded drive keeps its own first timestamp, as in
    :func:`cut`.

    Raises
    ------
    InvalidInputError
        A missing or non-finite departure for a route without timestamps.

    Examples
    --------
    >>> c = cut(route_from_polyline([1.5000, 1.5025], [42.5, 42.5]), departure_s=0.0)
    >>> later = depart(c, 60.0)
    >>> later.departure_s, bool(np.allclose(later.t_s - c.t_s, 60.0)), later.lon is c.lon
    (60.0, True, True)
    >>> depart(c, None)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: departure_s (epoch seconds) is required for a route without timestamps
    """
    if corridor.route is not None:
        departure = _departure(corridor.route, departure_s)
    elif departure_s is None or not math.isfinite(departure_s):
        raise InvalidInputError(
            "departure_s (epoch seconds) is required for a route without timestamps",
            field="departure_s",
        )
    else:
        departure = float(departure_s)
    if departure == corridor.departure_s:
        return corridor
    return dataclasses.replace(corridor, departure_s=departure)


# -- under a bridge -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _utm_transformer(epsg: int) -> Transformer:
    # keyed by the EPSG code: hashing a CRS writes its WKT, a tenth of a millisecond per edge
    # of a map build
    return Transformer.from_crs("EPSG:4326", pyproj.CRS.from_epsg(epsg), always_xy=True)


def _utm_for(lon: FloatArray, lat: FloatArray) -> Transformer:
    """Transformer to the standard UTM zone of the bbox centre (WGS 84 / UTM)."""
    lon_c = (float(lon.min()) + float(lon.max())) / 2.0
    lat_c = (float(lat.min()) + float(lat.max())) / 2.0
    return _utm_transformer(utm_epsg(lon_c, lat_c))


def _near_route(geoms: NDArray[np.object_], legs: _Legs, margin_m: float) -> NDArray[np.object_]:
    """The geometries whose bbox touches the route's bbox widened by ``margin_m``."""
    bounds = shapely.bounds(geoms)
    # widened for the route's highest latitude, capped where a degree of longitude is 1 % of
    # one of latitude (a bound even at the poles)
    lat_far = min(float(np.abs(legs.lat).max()), 89.4)
    dlon, dlat = (float(d) for d in offset_deg(margin_m, margin_m, lat0=lat_far))
    near = (
        (bounds[:, 0] <= legs.lon.max() + dlon)
        & (bounds[:, 2] >= legs.lon.min() - dlon)
        & (bounds[:, 1] <= legs.lat.max() + dlat)
        & (bounds[:, 3] >= legs.lat.min() - dlat)
    )
    return geoms[near]


def _crossings_m(legs: _Legs, overpasses: Any) -> FloatArray:
    """Distances along the route where it crosses an overpass (sorted)."""
    geoms = np.empty(len(overpasses), dtype=object)
    geoms[:] = list(overpasses)
    if geoms.size == 0:
        return np.zeros(0)
    if not all(isinstance(g, BaseGeometry) for g in geoms):
        raise InvalidInputError("overpasses must be shapely geometries", field="overpasses")
    geoms = _near_route(geoms[~shapely.is_empty(geoms)], legs, 100.0)
    if geoms.size == 0:
        return np.zeros(0)
    to_utm = _utm_for(legs.lon, legs.lat)
    x, y = to_utm.transform(legs.lon, legs.lat)
    xy = np.column_stack((x, y))
    n_legs = legs.length_m.size
    lines = shapely.linestrings(
        np.repeat(xy, 2, axis=0)[1:-1], indices=np.repeat(np.arange(n_legs), 2)
    )

    def project(coords: FloatArray) -> FloatArray:
        px, py = to_utm.transform(coords[:, 0], coords[:, 1])
        return np.column_stack((px, py))

    bridges = shapely.transform(geoms, project)
    leg_i, bridge_i = shapely.STRtree(bridges).query(lines, predicate="crosses")
    # on a bridge itself the route is above whatever it crosses
    leg_i, bridge_i = leg_i[~legs.on_bridge[leg_i]], bridge_i[~legs.on_bridge[leg_i]]
    if leg_i.size == 0:
        return np.zeros(0)
    points, which = shapely.get_parts(
        shapely.intersection(lines[leg_i], bridges[bridge_i]), return_index=True
    )
    leg_i, bridge_i = leg_i[which], bridge_i[which]
    keep = shapely.get_type_id(points) == 0  # points only (collinear overlaps are not crossings)
    points, leg_i, bridge_i = points[keep], leg_i[keep], bridge_i[keep]
    crossed = bridges[bridge_i]
    at_m = shapely.line_locate_point(crossed, points)
    # an overpass spans the road below; a bridge that merely ends on the route (a ramp
    # joining it, or a GPS fix a metre off) does not
    spans = np.minimum(at_m, shapely.length(crossed) - at_m) >= _MIN_OVERHANG_M
    keep = spans & (_crossing_angle_deg(xy, leg_i, crossed, at_m) >= _MIN_CROSSING_DEG)
    points, leg_i = points[keep], leg_i[keep]
    # planar offset along the leg, rescaled to the leg's geodesic length
    offset = shapely.line_locate_point(lines[leg_i], points, normalized=True)
    return np.sort(legs.cum_m[leg_i] + offset * legs.length_m[leg_i])


def _crossing_angle_deg(
    xy: FloatArray, leg_i: NDArray[np.intp], bridges: NDArray[np.object_], at: FloatArray
) -> FloatArray:
    """Angle (0..90 deg) between each route leg and the bridge it crosses, at the crossing."""
    leg_dir = xy[leg_i + 1] - xy[leg_i]
    a = shapely.get_coordinates(shapely.line_interpolate_point(bridges, np.maximum(at - 1.0, 0.0)))
    b = shapely.get_coordinates(shapely.line_interpolate_point(bridges, at + 1.0))
    bridge_dir = b - a
    norm = np.linalg.norm(leg_dir, axis=1) * np.linalg.norm(bridge_dir, axis=1)
    cos = np.abs(np.einsum("ij,ij->i", leg_dir, bridge_dir)) / np.maximum(norm, 1e-12)
    return np.degrees(np.arccos(np.clip(cos, 0.0, 1.0)))


def _under_bridge(
    legs: _Legs,
    start_m: FloatArray,
    centre_m: FloatArray,
    overpasses: Any,
    under_bridge_m: float,
) -> BoolArray:
    under = np.zeros(start_m.shape[0], dtype=bool)
    if overpasses is None:
        return under
    if not (math.isfinite(under_bridge_m) and under_bridge_m >= 0):
        raise InvalidInputError(
            f"under_bridge_m must be >= 0, got {under_bridge_m}", field="under_bridge_m"
        )
    crossing_m = _crossings_m(legs, overpasses)
    if crossing_m.size == 0:
        return under
    # the segment that contains the crossing ...
    under[np.clip(np.searchsorted(start_m, crossing_m, side="right") - 1, 0, under.size - 1)] = True
    # ... and every segment whose centre is within under_bridge_m of it
    lo = np.searchsorted(centre_m, crossing_m - under_bridge_m, side="left")
    hi = np.searchsorted(centre_m, crossing_m + under_bridge_m, side="right")
    marks = np.zeros(under.size + 1, dtype=np.int64)
    np.add.at(marks, lo, 1)
    np.add.at(marks, hi, -1)
    return under | (np.cumsum(marks[:-1]) > 0)
