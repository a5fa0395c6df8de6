"""The one place commap measures the Earth: ellipsoid, sphere and local metric projections.

``GEOD``
    The WGS84 ellipsoid (:class:`pyproj.Geod`): every geodesic length, bearing and forward
    step in commap uses it, so that roads, corridors, plans and traces agree to the millimetre.
``EARTH_RADIUS_M``
    The mean Earth radius (6371 km). Radio geometry (Earth bulge, horizon dip) and the local
    projection below use this sphere.
:func:`to_local_m` / :func:`from_local_m`
    An equirectangular projection true to scale along one parallel: metres for neighbour
    searches, grids and short offsets over a city-sized area (scale error well under 1 %
    within about 100 km of that parallel).
:func:`utm_crs`
    The WGS 84 / UTM zone of a point, for planar work on lines (cutting roads into pieces,
    crossing tests).

Examples
--------
>>> _, _, distance_m = GEOD.inv(1.5, 42.5, 1.5, 42.6)
>>> round(distance_m)
11108
>>> x_m, y_m = to_local_m([1.5], [42.5], lat0=42.5)
>>> [round(float(v[0]), 9) for v in from_local_m(x_m, y_m, lat0=42.5)]
[1.5, 42.5]
"""

from __future__ import annotations

import functools
import math
from typing import Any, Final

import numpy as np
import pyproj
from numpy.typing import ArrayLike

from commap.arrays import FloatArray
from commap.errors import InvalidInputError

__all__ = [
    "EARTH_RADIUS_M",
    "GEOD",
    "from_local_m",
    "offset_deg",
    "to_local_m",
    "utm_crs",
    "utm_epsg",
]


GEOD: Final = pyproj.Geod(ellps="WGS84")
EARTH_RADIUS_M: Final = 6_371_000.0


def _parallel_scale(lat0: float) -> Any:
    """cos(lat0): how much shorter a degree of longitude is than one of latitude at ``lat0``."""
    if not -90.0 < lat0 < 90.0:
        raise InvalidInputError(f"reference latitude {lat0} must lie strictly between the poles")
    return np.cos(np.radians(lat0))


def to_local_m(lon: ArrayLike, lat: ArrayLike, *, lat0: float) -> tuple[FloatArray, FloatArray]:
    """Equirectangular metres east (``x_m``) and north (``y_m``), true to scale along ``lat0``.

    ``x_m = R * radians(lon) * cos(lat0)`` and ``y_m = R * radians(lat)`` with the mean Earth
    radius ``R``. The origin is fixed at (0, 0) degrees, so grids laid on these coordinates do
    not move with the data; for offsets from a point subtract its projection.

    Parameters
    ----------
    lon, lat : array_like
        WGS84 degrees (same shape).
    lat0 : float
        Latitude (degrees) along which the projection is true to scale: the middle of the area.

    Returns
    -------
    x_m, y_m : ndarray of float64
        Same shape as the input.

    Raises
    ------
    InvalidInputError
        ``lat0`` at or beyond a pole.

    Examples
    --------
    >>> x_m, y_m = to_local_m([0.0, 1.0], [0.0, 0.0], lat0=60.0)
    >>> round(float(x_m[1] - x_m[0]), 1)  # a degree of longitude at 60 deg is half as long
    55597.5
    >>> to_local_m([], [], lat0=42.5)[0].shape
    (0,)
    """
    scale = _parallel_scale(lat0)
    x_m = np.radians(np.asarray(lon, dtype=np.float64)) * scale * EARTH_RADIUS_M
    y_m = np.radians(np.asarray(lat, dtype=np.float64)) * EARTH_RADIUS_M
    return np.asarray(x_m, dtype=np.float64), np.asarray(y_m, dtype=np.float64)


def from_local_m(x_m: ArrayLike, y_m: ArrayLike, *, lat0: float) -> tuple[FloatArray, FloatArray]:
    """The inverse of :func:`to_local_m`: ``(lon, lat)`` degrees of local metres.

    Examples
    --------
    >>> lon, lat = from_local_m([0.0], [EARTH_RADIUS_M * np.pi / 4], lat0=45.0)
    >>> round(float(lon[0]), 9), round(float(lat[0]), 9)
    (0.0, 45.0)
    """
    scale = _parallel_scale(lat0)
    lon = np.degrees(np.asarray(x_m, dtype=np.float64) / EARTH_RADIUS_M / scale)
    lat = np.degrees(np.asarray(y_m, dtype=np.float64) / EARTH_RADIUS_M)
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


def offset_deg(
    east_m: ArrayLike, north_m: ArrayLike, *, lat0: float
) -> tuple[FloatArray, FloatArray]:
    """Degrees of longitude and latitude spanned by a short offset in metres at ``lat0``.

    Examples
    --------
    >>> dlon, dlat = offset_deg(1000.0, 1000.0, lat0=60.0)
    >>> round(float(dlon), 5), round(float(dlat), 5)
    (0.01799, 0.00899)
    """
    dlat = np.degrees(np.asarray(north_m, dtype=np.float64) / EARTH_RADIUS_M)
    dlon = np.degrees(np.asarray(east_m, dtype=np.float64) / EARTH_RADIUS_M)
    return np.asarray(dlon / _parallel_scale(lat0), dtype=np.float64), np.asarray(dlat)


def utm_crs(lon: float, lat: float) -> pyproj.CRS:
    """The WGS 84 / UTM CRS of the standard 6-degree zone containing ``(lon, lat)``.

    The zone the EPSG database gives for the point (what
    :meth:`geopandas.GeoSeries.estimate_utm_crs` picks for data centred there), computed
    rather than queried: corridors ask for it on every plan.

    Raises
    ------
    InvalidInputError
        A coordinate that is not finite.

    Examples
    --------
    >>> utm_crs(1.5, 42.5).to_epsg()
    32631
    >>> utm_crs(-58.4, -34.6).to_epsg()
    32721
    """
    return _utm_zone_crs(utm_epsg(lon, lat))


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of :func:`utm_crs`: a plain int, a cheap cache key (a CRS hashes its WKT).

    Raises
    ------
    InvalidInputError
        A coordinate that is not finite.

    Examples
    --------
    >>> utm_epsg(1.5, 42.5), utm_epsg(-58.4, -34.6)
    (32631, 32721)
    """
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise InvalidInputError(f"no UTM zone for ({lon}, {lat})")
    zone = min(60, max(1, int((lon + 180.0) // 6.0) + 1))
    return (32600 if lat >= 0.0 else 32700) + zone


@functools.lru_cache(maxsize=16)
def _utm_zone_crs(epsg: int) -> pyproj.CRS:
    return pyproj.CRS.from_epsg(epsg)
