"""Road-point cache for time-invariant layers.

Modelled terrestrial coverage does not change with time, and vehicles only drive on roads, so a
map build samples such layers once at points every ``spacing_m`` along every road and stores the
table (``cache/<network>.parquet``). :class:`CachedLayer` answers from the nearest cached point
when one lies within ``max_distance_m``, and asks the wrapped layer for everything else (points
off the roads and points in tunnels, whose quality depends on the tunnel flag).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import weakref
from collections import OrderedDict
from pathlib import Path

import networkx as nx
import numpy as np
from numpy.typing import NDArray

from commap.arrays import RecentArrays, read_parquet_columns
from commap.errors import InvalidInputError
from commap.files import atomic_path
from commap.radio.quality import CoverageLayer, Quality

__all__ = [
    "RECENT_MAX_BYTES",
    "CachedLayer",
    "NearestWithin",
    "road_sample_points",
    "write_cache",
]

_EARTH_M_PER_DEG = 111_320.0
_COLUMNS = ("rsrp_dbm", "sinr_db", "elevation_deg", "confidence", "provenance", "sample_count")
_ROW = 1 << 32  # grid cell key: column * _ROW + row (rows and columns well inside +-2^31)
# indexes of identical point sets (NearestWithin.shared); weak values: a dropped map frees its own
_SHARED: weakref.WeakValueDictionary[tuple[str, int, float], NearestWithin] = (
    weakref.WeakValueDictionary()
)
_SHARED_LOCK = threading.Lock()
# answers an index keeps: a 1,000 km corridor's slices (512 segments each) and some more
_RECENT_QUERIES = 64
# a layer's answers kept for the points it was asked last (a 1,000 km corridor takes 1 MB)
RECENT_MAX_BYTES = 4 << 20


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
    import pandas as pd

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
            read, _ = read_parquet_columns(path, ["lon", "lat", *_COLUMNS])
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidInputError(f"{path}: unreadable coverage cache ({exc})") from None
        columns = {name: np.asarray(values) for name, values in read.items()}
        lon, lat = columns["lon"], columns["lat"]
        self._lat0 = float(lat.mean()) if lat.size else 0.0
        self._near = NearestWithin.shared(_local_xy(lon, lat, self._lat0), max_distance_m)
        self._values = {c: columns[c] for c in _COLUMNS}
        self._recent = RecentArrays(max_bytes=RECENT_MAX_BYTES)

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
        # the layer does not change with time: the points asked last are answered again
        key = RecentArrays.key("quality", lon, lat, tunnel, bridge)
        kept = self._recent.get(key, lambda: self._sample(lon, lat, t_s, tunnel, bridge))
        # copies: callers may change their answer in place (a fused layer writes over it)
        return Quality(
            **{
                f.name: value.copy() if isinstance(value, np.ndarray) else value
                for f in dataclasses.fields(Quality)
                for value in (getattr(kept, f.name),)
            }
        )

    def _sample(
        self,
        lon: NDArray[np.float64],
        lat: NDArray[np.float64],
        t_s: NDArray[np.float64],
        tunnel: NDArray[np.bool_],
        bridge: NDArray[np.bool_],
    ) -> Quality:
        n = lon.shape[0]
        if len(self._near) == 0 or n == 0:
            return self.inner.sample(lon, lat, t_s, in_tunnel=tunnel, under_bridge=bridge)
        distance_m, index = self._near.query(_local_xy(lon, lat, self._lat0))
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


class NearestWithin:
    """The nearest of a set of points within ``radius_m`` of each query point.

    Points are bucketed in square cells of ``radius_m``: any point within the radius of a query
    lies in the query's cell or one of the eight around it, so those nine cells hold the answer.
    (A k-d tree answers the same, but importing scipy.spatial would cost every command that
    loads a map a sixth of a second.) Ties go to the point given first.

    Examples
    --------
    >>> near = NearestWithin(np.array([[0.0, 0.0], [30.0, 0.0]]), 20.0)
    >>> d, i = near.query(np.array([[25.0, 1.0], [100.0, 0.0]]))
    >>> [round(x, 3) for x in d.tolist()], i.tolist()  # none within 20 m of the second
    ([5.099, inf], [1, 0])
    >>> len(NearestWithin(np.zeros((0, 2)), 20.0).query(np.zeros((0, 2)))[0])
    0
    """

    def __init__(self, xy: NDArray[np.float64], radius_m: float) -> None:
        if not radius_m > 0:
            raise InvalidInputError("radius_m must be > 0", field="radius_m")
        self.radius_m = float(radius_m)
        self._xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        keys = self._keys(self._xy)
        self._order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[self._order]
        self._recent: OrderedDict[bytes, tuple[NDArray[np.float64], NDArray[np.int64]]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, xy: NDArray[np.float64], radius_m: float) -> NearestWithin:
        """One index for every caller with the same points and radius.

        A map's terrestrial caches are sampled at the same road points, so their layers share
        one index, and the index answers a query it has just answered (the next network of
        a corridor's slices) without searching again.
        """
        xy = np.ascontiguousarray(xy, dtype=np.float64).reshape(-1, 2)
        key = (hashlib.sha256(xy.tobytes()).hexdigest(), xy.shape[0], float(radius_m))
        with _SHARED_LOCK:
            found = _SHARED.get(key)
            if found is None:
                found = _SHARED[key] = cls(xy, radius_m)
            return found

    def __len__(self) -> int:
        return int(self._xy.shape[0])

    def _keys(self, xy: NDArray[np.float64]) -> NDArray[np.int64]:
        cells = np.floor(xy / self.radius_m).astype(np.int64)
        return cells[:, 0] * _ROW + cells[:, 1]

    def query(self, xy: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """``(distance_m, index)`` of the nearest point within the radius of each query point
        (``inf`` and 0 where there is none)."""
        xy = np.ascontiguousarray(xy, dtype=np.float64).reshape(-1, 2)
        asked = xy.tobytes()
        with self._lock:
            known = self._recent.get(asked)
        if known is not None:
            return known[0].copy(), known[1].copy()
        answer = self._search(xy)
        with self._lock:
            self._recent[asked] = (answer[0].copy(), answer[1].copy())
            while len(self._recent) > _RECENT_QUERIES:
                self._recent.popitem(last=False)
        return answer

    def _search(self, xy: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        n = xy.shape[0]
        distance = np.full(n, np.inf)
        index = np.zeros(n, dtype=np.int64)
        if n == 0 or len(self) == 0:
            return distance, index
        keys = self._keys(xy)
        owners, candidates = [], []
        for offset in (dx * _ROW + dy for dx in (-1, 0, 1) for dy in (-1, 0, 1)):
            lo = np.searchsorted(self._sorted_keys, keys + offset, side="left")
            hi = np.searchsorted(self._sorted_keys, keys + offset, side="right")
            count = hi - lo
            starts = np.repeat(lo - (np.cumsum(count) - count), count)
            owners.append(np.repeat(np.arange(n), count))
            candidates.append(self._order[starts + np.arange(int(count.sum()))])
        owner, candidate = np.concatenate(owners), np.concatenate(candidates)
        d = np.sqrt(((self._xy[candidate] - xy[owner]) ** 2).sum(axis=1))
        within = d <= self.radius_m
        owner, candidate, d = owner[within], candidate[within], d[within]
        order = np.lexsort((candidate, d, owner))  # per query: nearest first, then first given
        first = order[np.flatnonzero(np.diff(owner[order], prepend=-1))]
        distance[owner[first]] = d[first]
        index[owner[first]] = candidate[first]
        return distance, index
