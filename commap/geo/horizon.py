"""Terrain horizon: the elevation angle of the skyline per azimuth, for satellite visibility.

The horizon at a point is, for each azimuth ``a`` (degrees clockwise from north), the largest
elevation angle under which terrain is seen along the ray from the observer out to
``max_distance_m``::

    horizon(a) = max_d atan((h(d) - h_obs - d**2 / (2 R)) / d)

with ``h_obs`` the ground height plus the antenna height (1.5 m, a car roof) and the
``d**2 / (2 R)`` term the drop of the curved earth. Satellite visibility is a geometric (optical)
question, so ``R`` is the true mean earth radius (6,371 km): the ``k = 4/3`` effective radius of
terrestrial radio paths models refraction near the ground and would bend the horizon down by
about ``d**2 / (8 R)``, which does not apply to a path leaving the atmosphere at 25 deg or more.

Two ways to get it:

* :func:`horizon_profile_deg` ray-marches :class:`commap.geo.terrain.Terrain` (bilinear heights)
  for arbitrary points: exact but about 1 ms per point.
* :func:`compute_horizon_grid` computes a :class:`HorizonGrid` once over a map's bounding box
  (done at map build time, about 1 s for Andorra) by shifting the height raster itself along
  each azimuth; :meth:`HorizonGrid.profile_deg` then looks points up by bilinear interpolation
  in microseconds.

:class:`Horizon` combines both (grid inside its box, ray-marching outside, 0 without terrain);
:func:`horizon_at_azimuth_deg` interpolates a profile linearly between its azimuths.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from commap.arrays import FloatArray
from commap.errors import InvalidInputError
from commap.geo.geodesy import EARTH_RADIUS_M, offset_deg
from commap.geo.terrain import Terrain

__all__ = [
    "ANTENNA_HEIGHT_M",
    "Horizon",
    "HorizonGrid",
    "compute_horizon_grid",
    "horizon_at_azimuth_deg",
    "horizon_profile_deg",
    "ray_distances_m",
]

log = logging.getLogger(__name__)


ANTENNA_HEIGHT_M = 1.5  # vehicle roof antenna above the ground
DEFAULT_AZIMUTHS = 36  # 10 deg sectors
DEFAULT_MAX_DISTANCE_M = 20_000.0
_GRID_FORMAT = 1  # bump when the npz layout changes


def ray_distances_m(
    max_distance_m: float = DEFAULT_MAX_DISTANCE_M, *, step_m: float = 90.0, growth: float = 1.02
) -> FloatArray:
    """Sample distances along a horizon ray: every ``step_m`` near the observer, then growing.

    Near terrain decides steep horizons and needs the raster spacing; far away the angle a
    ridge subtends shrinks with distance, so the step may grow geometrically by ``growth``.

    Examples
    --------
    >>> d = ray_distances_m(1000.0)
    >>> float(d[0]), float(d[-1])
    (90.0, 1000.0)
    >>> ray_distances_m(10.0).tolist()
    [10.0]
    """
    if not (max_distance_m > 0 and step_m > 0 and growth >= 1.0):
        raise InvalidInputError("horizon ray needs max_distance_m > 0, step_m > 0, growth >= 1")
    out: list[float] = []
    d = step_m
    while d < max_distance_m:
        out.append(d)
        d += max(step_m, d * (growth - 1.0))
    out.append(max_distance_m)
    return np.asarray(out, dtype=np.float64)


def horizon_profile_deg(
    terrain: Terrain | None,
    lon: ArrayLike,
    lat: ArrayLike,
    *,
    n_azimuths: int = DEFAULT_AZIMUTHS,
    max_distance_m: float = DEFAULT_MAX_DISTANCE_M,
    antenna_height_m: float = ANTENNA_HEIGHT_M,
) -> FloatArray:
    """Horizon elevation angle per azimuth at points, by ray-marching the terrain.

    Parameters
    ----------
    terrain : Terrain or None
        Elevation model; None gives a flat 0 deg horizon.
    lon, lat : array_like
        WGS84 degrees, shape ``(n,)``.
    n_azimuths : int
        Rays at azimuths ``0, 360/n, ...`` degrees clockwise from north.
    max_distance_m : float
        How far each ray looks.
    antenna_height_m : float
        Observer height above the ground.

    Returns
    -------
    ndarray
        Shape ``(n, n_azimuths)``, degrees (negative where the land falls away).

    Examples
    --------
    >>> horizon_profile_deg(None, np.array([1.5]), np.array([42.5]), n_azimuths=4).tolist()
    [[0.0, 0.0, 0.0, 0.0]]
    >>> horizon_profile_deg(None, np.array([]), np.array([])).shape
    (0, 36)
    """
    lon = np.asarray(lon, dtype=np.float64).reshape(-1)
    lat = np.asarray(lat, dtype=np.float64).reshape(-1)
    _check_azimuths(n_azimuths)
    if terrain is None or lon.size == 0:
        return np.zeros((lon.size, n_azimuths))
    az = np.radians(_azimuths_deg(n_azimuths))
    h_obs = terrain.elevation_m(lon, lat) + antenna_height_m
    out = np.empty((lon.size, n_azimuths))
    for i in range(lon.size):  # one point at a time keeps memory at n_az * n_d
        dist = ray_distances_m(max_distance_m, step_m=_raster_step_m(terrain, lat[i]))
        dnorth = np.cos(az)[:, None] * dist[None, :]  # (n_az, n_d)
        deast = np.sin(az)[:, None] * dist[None, :]
        # local flat offsets: within 20 km the lon/lat error is far below one raster cell
        dlon, dlat = offset_deg(deast, dnorth, lat0=float(lat[i]))
        lon_r, lat_r = lon[i] + dlon, lat[i] + dlat
        rise_m = terrain.elevation_m(lon_r, lat_r) - h_obs[i] - dist**2 / (2 * EARTH_RADIUS_M)
        out[i] = np.degrees(np.arctan((rise_m / dist).max(axis=1)))
    return out


def horizon_at_azimuth_deg(
    profile_deg: FloatArray, azimuth_deg: ArrayLike, rows: ArrayLike | None = None
) -> FloatArray:
    """Horizon in the direction ``azimuth_deg``, interpolated between a profile's azimuths.

    Parameters
    ----------
    profile_deg : ndarray
        Shape ``(n, n_azimuths)`` from :func:`horizon_profile_deg` or :class:`Horizon`.
    azimuth_deg : ndarray
        Shape ``(n,)``, degrees clockwise from north (any value; wrapped); with ``rows``, shape
        ``(m,)``.
    rows : ndarray of int, optional
        The profile row of each azimuth (many looks from one point without copying its
        profile for each); default: azimuth ``i`` looks from row ``i``.

    Examples
    --------
    >>> p = np.array([[0.0, 10.0, 20.0, 30.0]])
    >>> horizon_at_azimuth_deg(p, np.array([45.0])).tolist()
    [5.0]
    >>> horizon_at_azimuth_deg(p, np.array([315.0])).tolist()
    [15.0]
    >>> horizon_at_azimuth_deg(np.zeros((0, 4)), np.array([])).shape
    (0,)
    """
    n_az = profile_deg.shape[1]
    pos = np.mod(np.asarray(azimuth_deg, dtype=np.float64), 360.0) * (n_az / 360.0)
    i0 = np.floor(pos).astype(np.int64) % n_az
    frac = pos - np.floor(pos)
    rows = np.arange(profile_deg.shape[0]) if rows is None else np.asarray(rows, dtype=np.intp)
    lo = profile_deg[rows, i0]
    hi = profile_deg[rows, (i0 + 1) % n_az]
    return np.asarray(lo + (hi - lo) * frac, dtype=np.float64)


@dataclass(frozen=True)
class HorizonGrid:
    """Horizon profiles on a regular lon/lat grid (node ``[i, j]`` at ``lat0 + i*dlat``).

    ``horizon_cdeg`` holds centi-degrees as int16 (shape ``(n_lat, n_lon, n_azimuths)``),
    which keeps the Andorra grid near 12 MB in memory; 0.01 deg is far below its accuracy.
    """

    lon0: float
    lat0: float
    dlon: float
    dlat: float
    horizon_cdeg: NDArray[np.int16]
    max_distance_m: float = DEFAULT_MAX_DISTANCE_M
    antenna_height_m: float = ANTENNA_HEIGHT_M

    @property
    def n_azimuths(self) -> int:
        """Number of azimuths per profile."""
        return int(self.horizon_cdeg.shape[2])

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """``(lon_min, lat_min, lon_max, lat_max)`` covered by the nodes."""
        n_lat, n_lon = self.horizon_cdeg.shape[:2]
        return (
            self.lon0,
            self.lat0,
            self.lon0 + (n_lon - 1) * self.dlon,
            self.lat0 + (n_lat - 1) * self.dlat,
        )

    def contains(self, lon: ArrayLike, lat: ArrayLike) -> NDArray[np.bool_]:
        """True where a point lies inside the grid (lookups there need no ray-marching)."""
        lon_min, lat_min, lon_max, lat_max = self.bbox
        x, y = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        return np.asarray((x >= lon_min) & (x <= lon_max) & (y >= lat_min) & (y <= lat_max))

    def profile_deg(self, lon: ArrayLike, lat: ArrayLike) -> FloatArray:
        """Bilinear horizon profiles at points (clamped to the grid edge outside it).

        Returns
        -------
        ndarray
            Shape ``(n, n_azimuths)``, degrees.
        """
        n_lat, n_lon = self.horizon_cdeg.shape[:2]
        row = np.clip((np.asarray(lat) - self.lat0) / self.dlat, 0.0, n_lat - 1.0)
        col = np.clip((np.asarray(lon) - self.lon0) / self.dlon, 0.0, n_lon - 1.0)
        r0 = np.minimum(np.floor(row).astype(np.int64), max(n_lat - 2, 0))
        c0 = np.minimum(np.floor(col).astype(np.int64), max(n_lon - 2, 0))
        r1 = np.minimum(r0 + 1, n_lat - 1)
        c1 = np.minimum(c0 + 1, n_lon - 1)
        fr = (row - r0)[:, None]
        fc = (col - c0)[:, None]
        h = self.horizon_cdeg
        cdeg = (
            h[r0, c0] * ((1 - fr) * (1 - fc))
            + h[r0, c1] * ((1 - fr) * fc)
            + h[r1, c0] * (fr * (1 - fc))
            + h[r1, c1] * (fr * fc)
        )
        return np.asarray(cdeg, dtype=np.float64) / 100.0

    def save(self, path: str | Path) -> None:
        """Write the grid as an ``.npz`` file, uncompressed: compression saves a sixth of the
        size and costs every map load (each command, each server start) 60 ms to undo."""
        np.savez(
            Path(path),
            format=np.int64(_GRID_FORMAT),
            origin=np.array([self.lon0, self.lat0, self.dlon, self.dlat]),
            params=np.array([self.max_distance_m, self.antenna_height_m]),
            horizon_cdeg=self.horizon_cdeg,
        )

    @classmethod
    def load(cls, path: str | Path) -> HorizonGrid:
        """Read a grid written by :meth:`save`.

        Raises
        ------
        InvalidInputError
            If the file is missing, unreadable or not a horizon grid.
        """
        path = Path(path)
        try:
            with np.load(path) as data:
                if int(data["format"]) != _GRID_FORMAT:
                    raise InvalidInputError(f"{path}: horizon grid format {int(data['format'])}")
                lon0, lat0, dlon, dlat = (float(v) for v in data["origin"])
                max_distance_m, antenna_height_m = (float(v) for v in data["params"])
                horizon = np.asarray(data["horizon_cdeg"], dtype=np.int16)
        except (OSError, KeyError, ValueError) as exc:
            if isinstance(exc, InvalidInputError):
                raise
            raise InvalidInputError(f"{path}: not a readable horizon grid ({exc})") from exc
        if horizon.ndim != 3 or min(horizon.shape) < 1 or dlon <= 0 or dlat <= 0:
            raise InvalidInputError(f"{path}: horizon grid has a bad shape or spacing")
        return cls(lon0, lat0, dlon, dlat, horizon, max_distance_m, antenna_height_m)


def compute_horizon_grid(
    terrain: Terrain,
    bbox: tuple[float, float, float, float],
    *,
    step_deg: float | None = None,
    n_azimuths: int = DEFAULT_AZIMUTHS,
    max_distance_m: float = DEFAULT_MAX_DISTANCE_M,
    antenna_height_m: float = ANTENNA_HEIGHT_M,
) -> HorizonGrid:
    """Horizon profiles at every raster node of ``bbox``.

    The terrain is sampled once on a raster covering ``bbox`` plus ``max_distance_m``; for
    each azimuth and ray distance the whole raster is shifted by that (fractional, bilinear)
    offset and the elevation angle to the shifted heights is maxed in: the same rays and
    samples as :func:`horizon_profile_deg` at the nodes, vectorised over the raster.
    Distances in metres use the bbox's middle latitude; for regional maps (a degree or two)
    the scale error stays below about 2 %.

    Parameters
    ----------
    terrain : Terrain
        Elevation model (0 m outside its tiles).
    bbox : tuple of float
        ``(lon_min, lat_min, lon_max, lat_max)``, WGS84.
    step_deg : float, optional
        Raster spacing; default the finest tile spacing but at least 3 arc-seconds.
    n_azimuths, max_distance_m, antenna_height_m
        As in :func:`horizon_profile_deg`.

    Examples
    --------
    A single node over sea-level ground sees the dip of the horizon from 1.5 m, -0.04 deg:

    >>> g = compute_horizon_grid(Terrain([]), (1.5, 42.5, 1.5, 42.5))
    >>> g.horizon_cdeg.shape, int(g.horizon_cdeg.max())
    ((1, 1, 36), -4)
    """
    lon_min, lat_min, lon_max, lat_max = (float(v) for v in bbox)
    if not (lon_min <= lon_max and lat_min <= lat_max):
        raise InvalidInputError(f"bbox {bbox} must be (lon_min, lat_min, lon_max, lat_max)")
    _check_azimuths(n_azimuths)
    if step_deg is None:
        step_deg = _raster_step_deg(terrain)
    # align nodes to multiples of the step so they fall on the SRTM samples themselves
    eps = 1e-9  # 1.5 / (1 / 1200) is 1800.0000000000002 in floating point
    i_lat0, i_lat1 = math.floor(lat_min / step_deg + eps), math.ceil(lat_max / step_deg - eps)
    i_lon0, i_lon1 = math.floor(lon_min / step_deg + eps), math.ceil(lon_max / step_deg - eps)
    lat_mid = math.radians((lat_min + lat_max) / 2)
    dy_m = EARTH_RADIUS_M * math.radians(step_deg)
    dx_m = dy_m * math.cos(lat_mid)
    pad_r = math.ceil(max_distance_m / dy_m) + 2  # + 2: the bilinear neighbour of the last cell
    pad_c = math.ceil(max_distance_m / dx_m) + 2
    rows = np.arange(i_lat0 - pad_r, i_lat1 + pad_r + 1, dtype=np.float64) * step_deg
    cols = np.arange(i_lon0 - pad_c, i_lon1 + pad_c + 1, dtype=np.float64) * step_deg
    dem = terrain.elevation_m(cols[None, :], rows[:, None]).astype(np.float32)
    n_r, n_c = i_lat1 - i_lat0 + 1, i_lon1 - i_lon0 + 1
    h_obs = dem[pad_r : pad_r + n_r, pad_c : pad_c + n_c] + np.float32(antenna_height_m)
    dist = ray_distances_m(max_distance_m, step_m=dx_m)
    drop_m = dist**2 / (2 * EARTH_RADIUS_M)
    out = np.empty((n_r, n_c, n_azimuths), dtype=np.int16)
    for k, az in enumerate(np.radians(_azimuths_deg(n_azimuths))):
        best = np.full((n_r, n_c), -np.inf, dtype=np.float32)
        for d_m, dr_m in zip(dist, drop_m, strict=True):
            shifted = _shifted_bilinear(
                dem, pad_r + d_m * math.cos(az) / dy_m, pad_c + d_m * math.sin(az) / dx_m, n_r, n_c
            )
            rise = shifted - h_obs - np.float32(dr_m)
            np.maximum(best, rise * np.float32(1.0 / d_m), out=best)
        out[:, :, k] = np.round(np.degrees(np.arctan(best)) * 100.0).astype(np.int16)
    log.info("horizon grid %d x %d x %d computed", n_r, n_c, n_azimuths)
    return HorizonGrid(
        lon0=i_lon0 * step_deg,
        lat0=i_lat0 * step_deg,
        dlon=step_deg,
        dlat=step_deg,
        horizon_cdeg=out,
        max_distance_m=max_distance_m,
        antenna_height_m=antenna_height_m,
    )


class Horizon:
    """Horizon lookups for a layer: a precomputed grid where it covers, ray-marching elsewhere.

    Parameters
    ----------
    terrain : Terrain or None
        Elevation model; None means a flat 0 deg horizon everywhere.
    grid : HorizonGrid or None
        Precomputed profiles (from the map build); points outside it are ray-marched.
    n_azimuths : int
        Profile resolution when there is no grid.

    Examples
    --------
    >>> Horizon(None).profile_deg(np.array([1.5]), np.array([42.5])).shape
    (1, 36)
    """

    def __init__(
        self,
        terrain: Terrain | None,
        grid: HorizonGrid | None = None,
        *,
        n_azimuths: int = DEFAULT_AZIMUTHS,
    ) -> None:
        self.terrain = terrain
        self.grid = grid
        self.n_azimuths = grid.n_azimuths if grid is not None else n_azimuths
        _check_azimuths(self.n_azimuths)

    def profile_deg(self, lon: ArrayLike, lat: ArrayLike) -> FloatArray:
        """Horizon profiles ``(n, n_azimuths)`` in degrees at WGS84 points."""
        lon = np.asarray(lon, dtype=np.float64).reshape(-1)
        lat = np.asarray(lat, dtype=np.float64).reshape(-1)
        if self.grid is None:
            return horizon_profile_deg(self.terrain, lon, lat, n_azimuths=self.n_azimuths)
        inside = self.grid.contains(lon, lat)
        out = self.grid.profile_deg(lon, lat)
        if not inside.all():  # ray-march outside the grid (flat 0 deg without terrain)
            out[~inside] = horizon_profile_deg(
                self.terrain,
                lon[~inside],
                lat[~inside],
                n_azimuths=self.n_azimuths,
                max_distance_m=self.grid.max_distance_m,
                antenna_height_m=self.grid.antenna_height_m,
            )
        return out


def _raster_step_deg(terrain: Terrain) -> float:
    """Finest tile spacing, but no finer than SRTM3 (3 arc-seconds) to bound the work."""
    finest = max((t.samples_per_deg for t in terrain.tiles), default=1200)
    return 1.0 / min(finest, 1200)


def _raster_step_m(terrain: Terrain, lat_deg: float) -> float:
    """Ray step: the east-west raster spacing at ``lat_deg`` (the finer of the two axes)."""
    step = EARTH_RADIUS_M * math.radians(_raster_step_deg(terrain))
    return step * max(math.cos(math.radians(lat_deg)), 0.01)


def _shifted_bilinear(
    dem: NDArray[np.float32], row: float, col: float, n_r: int, n_c: int
) -> NDArray[np.float32]:
    """The ``(n_r, n_c)`` window of ``dem`` starting at fractional cell ``(row, col)``."""
    r0, c0 = math.floor(row), math.floor(col)
    fr, fc = np.float32(row - r0), np.float32(col - c0)
    out = dem[r0 : r0 + n_r, c0 : c0 + n_c] * ((1 - fr) * (1 - fc))
    if fc > 0:
        out += dem[r0 : r0 + n_r, c0 + 1 : c0 + 1 + n_c] * ((1 - fr) * fc)
    if fr > 0:
        out += dem[r0 + 1 : r0 + 1 + n_r, c0 : c0 + n_c] * (fr * (1 - fc))
        if fc > 0:
            out += dem[r0 + 1 : r0 + 1 + n_r, c0 + 1 : c0 + 1 + n_c] * (fr * fc)
    return out


def _azimuths_deg(n_azimuths: int) -> FloatArray:
    return np.arange(n_azimuths, dtype=np.float64) * (360.0 / n_azimuths)


def _check_azimuths(n_azimuths: int) -> None:
    if not 4 <= n_azimuths <= 3600:
        raise InvalidInputError(f"n_azimuths must be within [4, 3600], got {n_azimuths}")
