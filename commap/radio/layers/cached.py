"""Road-point cache for time-invariant layers.

Modelled terrestrial coverage does not change with time, and vehicles only drive on roads, so a
map build samples such layers once at points every ``spacing_m`` along every road and stores the
table (``cache/<network>.parquet``). :class:`CachedLayer` answers from the nearest cached point
when one lies within ``max_distance_m``, and asks the wrapped layer for everything else (points
off the roads and points in tunnels, whose quality depends on the tunnel flag).
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from commap.errors import InvalidInputError
from commap.files import atomic_path
from commap.radio.quality import CoverageLayer, Quality

__all__ = ["CachedLayer", "road_sample_points", "write_cache"]

_EARTH_M_PER_DEG = 111_320.0
_COLUMNS = ("rsrp_dbm", "sinr_db", "elevation_deg", "confidence", "provenance", "sample_count")


def _local_xy(
    lon: NDArray[np.float64], lat: NDArray[np.float64], lat0: float
) -> NDArray[np.float64]:
    """Equirectangular metres around ``lat0``: exact enough for nearest-point look-ups."""
    return np.column_stack(
        (lon * _EARTH_M_PER_DEG * np.cos(np.radians(lat0)), lat * _EARTH_M_PER_DEG)
    )


def road_sample_points(
    graph: nx.MultiDiGraph, *, spacing_m: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Points every ``spacing_m`` along every road (each two-way road once), ``(lon, lat)``.

    Examples
    --------
    >>> lon, lat = road_sample_points(nx.MultiDiGraph(), spacing_m=25.0)
    >>> lon.shape
    (0,)
    """
    if spacing_m <= 0:
        raise InvalidInputError("spacing_m must be > 0", field="spacing_m")
    seen: set[tuple[int, int]] = set()
    lons: list[NDArray[np.float64]] = []
    lats: list[NDArray[np.float64]] = []
    for u, v, data in graph.edges(data=True):
        key = (min(u, v), max(u, v))
        if key in seen:
            continue
        seen.add(key)
        coords = np.asarray(data["geometry"].coords, dtype=np.float64)
        xy = _local_xy(coords[:, 0], coords[:, 1], float(coords[:, 1].mean()))
        along = np.concatenate(([0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))))
        stations = np.arange(spacing_m / 2.0, max(along[-1], spacing_m / 2.0) + 1e-9, spacing_m)
        stations = np.minimum(stations, along[-1])
        lons.append(np.interp(stations, along, coords[:, 0]))
        lats.append(np.interp(stations, along, coords[:, 1]))
    if not lons:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(lons), np.concatenate(lats)


def write_cache(
    layer: CoverageLayer, lon: NDArray[np.float64], lat: NDArray[np.float64], path: Path
) -> None:
    """Sample ``layer`` at the points (open road, t = 0) and write the table atomically."""
    quality = layer.sample(lon, lat, np.zeros_like(lon))
    frame = pd.DataFrame({"lon": lon, "lat": lat} | {c: getattr(quality, c) for c in _COLUMNS})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


class CachedLayer:
    """A time-invariant layer answered from road-point samples where possible.

    Parameters
    ----------
    inner : the layer the cache was sampled from (asked for every point the cache cannot answer).
    path : the cache table written by :func:`write_cache`.
    max_distance_m : farthest a cached point may lie from the query point.
    """

    def __init__(self, inner: CoverageLayer, path: Path, *, max_distance_m: float = 20.0) -> None:
        self.inner = inner
        self.network_id = inner.network_id
        self.max_distance_m = max_distance_m
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path}: unreadable coverage cache ({exc})") from None
        self._lat0 = float(frame["lat"].mean()) if len(frame) else 0.0
        self._tree = cKDTree(
            _local_xy(frame["lon"].to_numpy(), frame["lat"].to_numpy(), self._lat0)
        )
        self._values = {c: frame[c].to_numpy() for c in _COLUMNS}

    def sample(
        self,
        lon: NDArray[np.float64],
        lat: NDArray[np.float64],
        t_s: NDArray[np.float64],
        *,
        in_tunnel: NDArray[np.bool_] | None = None,
        under_bridge: NDArray[np.bool_] | None = None,
    ) -> Quality:
        """Quality from the cache where a road point is near, from the wrapped layer elsewhere."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        n = lon.shape[0]
        tunnel = np.zeros(n, bool) if in_tunnel is None else np.asarray(in_tunnel, bool)
        bridge = np.zeros(n, bool) if under_bridge is None else np.asarray(under_bridge, bool)
        if self._tree.n == 0 or n == 0:
            return self.inner.sample(lon, lat, t_s, in_tunnel=tunnel, under_bridge=bridge)
        distance_m, index = self._tree.query(_local_xy(lon, lat, self._lat0))
        hit = (distance_m <= self.max_distance_m) & ~tunnel
        out = {c: self._values[c][np.where(hit, index, 0)].copy() for c in _COLUMNS}
        miss = ~hit
        if miss.any():
            live = self.inner.sample(
                lon[miss],
                lat[miss],
                np.asarray(t_s)[miss],
                in_tunnel=tunnel[miss],
                under_bridge=bridge[miss],
            )
            for c in _COLUMNS:
                out[c][miss] = getattr(live, c)
        return Quality(
            rsrp_dbm=out["rsrp_dbm"].astype(np.float64),
            sinr_db=out["sinr_db"].astype(np.float64),
            elevation_deg=out["elevation_deg"].astype(np.float64),
            confidence=out["confidence"].astype(np.float64),
            provenance=out["provenance"].astype(np.int8),
            sample_count=out["sample_count"].astype(np.int32),
        )
