"""Corridors: a route cut into fixed-length segments.

A :class:`Route` is a polyline with per-leg speed and tunnel/bridge flags (from the road graph,
or an explicit polyline such as a GPS trace, optionally with timestamps). :func:`cut` turns it
into a :class:`Corridor` of segments of ``segment_m`` metres measured in a metric CRS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["Corridor", "Route"]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


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
