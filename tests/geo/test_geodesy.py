"""The one geodesy: WGS84 distances, the mean-radius sphere and the local metric projection."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Point

from commap.errors import InvalidInputError
from commap.geo.geodesy import (
    EARTH_RADIUS_M,
    GEOD,
    from_local_m,
    offset_deg,
    to_local_m,
    utm_crs,
    utm_epsg,
)


def _dms(deg: float, minutes: float, seconds: float) -> float:
    sign = -1.0 if deg < 0 else 1.0
    return sign * (abs(deg) + minutes / 60.0 + seconds / 3600.0)


@pytest.mark.parametrize(
    ("lon1", "lat1", "lon2", "lat2", "expected_m", "tol_m"),
    [
        # one degree along the equator: 2 pi a / 360 with a = 6378137 m
        (0.0, 0.0, 1.0, 0.0, 111_319.491, 0.001),
        # one degree along the meridian from the equator (WGS84 meridian arc)
        (0.0, 0.0, 0.0, 1.0, 110_574.389, 0.001),
        # Flinders Peak -> Buninyong, the classic Vincenty test line (54 972.271 m)
        (
            _dms(144, 25, 29.52440),
            _dms(-37, 57, 3.72030),
            _dms(143, 55, 35.38390),
            _dms(-37, 39, 10.15610),
            54_972.271,
            0.001,
        ),
    ],
)
def test_geodesic_distances_match_known_values(
    lon1: float, lat1: float, lon2: float, lat2: float, expected_m: float, tol_m: float
) -> None:
    _, _, distance_m = GEOD.inv(lon1, lat1, lon2, lat2)
    assert distance_m == pytest.approx(expected_m, abs=tol_m)


def test_geod_is_the_wgs84_ellipsoid() -> None:
    assert GEOD.a == 6_378_137.0
    assert 1.0 / GEOD.f == pytest.approx(298.257223563)


def test_earth_radius_is_the_mean_radius() -> None:
    assert EARTH_RADIUS_M == 6_371_000.0


def test_local_projection_round_trip() -> None:
    rng = np.random.default_rng(7)
    lon = rng.uniform(1.4, 1.8, 500)
    lat = rng.uniform(42.38, 42.68, 500)
    x_m, y_m = to_local_m(lon, lat, lat0=42.53)
    back_lon, back_lat = from_local_m(x_m, y_m, lat0=42.53)
    np.testing.assert_allclose(back_lon, lon, rtol=0, atol=1e-12)
    np.testing.assert_allclose(back_lat, lat, rtol=0, atol=1e-12)


def test_local_projection_is_close_to_geodesic_over_a_city() -> None:
    lon = np.array([1.50, 1.55])
    lat = np.array([42.50, 42.53])
    x_m, y_m = to_local_m(lon, lat, lat0=42.515)
    planar_m = math.hypot(x_m[1] - x_m[0], y_m[1] - y_m[0])
    _, _, geodesic_m = GEOD.inv(lon[0], lat[0], lon[1], lat[1])
    assert planar_m == pytest.approx(geodesic_m, rel=0.01)


def test_local_projection_keeps_the_sphere_scale() -> None:
    # a degree of latitude is R * pi / 180 on the mean sphere
    _, y_m = to_local_m([0.0, 0.0], [10.0, 11.0], lat0=10.5)
    assert y_m[1] - y_m[0] == pytest.approx(EARTH_RADIUS_M * math.pi / 180.0)


def test_local_projection_of_empty_arrays() -> None:
    x_m, y_m = to_local_m(np.zeros(0), np.zeros(0), lat0=42.5)
    assert x_m.shape == y_m.shape == (0,)
    lon, lat = from_local_m(np.zeros(0), np.zeros(0), lat0=42.5)
    assert lon.shape == lat.shape == (0,)
    dlon, dlat = offset_deg(np.zeros(0), np.zeros(0), lat0=42.5)
    assert dlon.shape == dlat.shape == (0,)


def test_local_projection_of_a_single_point() -> None:
    x_m, y_m = to_local_m(1.5, 42.5, lat0=42.5)
    assert x_m.shape == y_m.shape == ()
    lon, lat = from_local_m(x_m, y_m, lat0=42.5)
    assert float(lon) == pytest.approx(1.5, abs=1e-12)
    assert float(lat) == pytest.approx(42.5, abs=1e-12)


def test_offset_deg_matches_the_projection() -> None:
    dlon, dlat = offset_deg(250.0, -400.0, lat0=42.5)
    x0, y0 = to_local_m(1.5, 42.5, lat0=42.5)
    x1, y1 = to_local_m(1.5 + dlon, 42.5 + dlat, lat0=42.5)
    assert float(x1 - x0) == pytest.approx(250.0, abs=1e-6)
    assert float(y1 - y0) == pytest.approx(-400.0, abs=1e-6)


@pytest.mark.parametrize("lat0", [90.0, -90.0, 95.0, float("nan")])
def test_reference_latitude_at_a_pole_is_refused(lat0: float) -> None:
    with pytest.raises(InvalidInputError):
        to_local_m([0.0], [0.0], lat0=lat0)


@pytest.mark.parametrize(
    ("lon", "lat"), [(1.5, 42.5), (-58.4, -34.6), (139.7, 35.7), (-179.9, 10.0), (179.9, -10.0)]
)
def test_utm_crs_matches_geopandas_estimate(lon: float, lat: float) -> None:
    expected = gpd.GeoSeries([Point(lon, lat)], crs="EPSG:4326").estimate_utm_crs()
    assert utm_crs(lon, lat) == expected


@pytest.mark.parametrize(
    ("lon", "lat"), [(1.5, 42.5), (-58.4, -34.6), (139.7, 35.7), (-179.9, 10.0), (180.0, -10.0)]
)
def test_utm_epsg_is_the_code_of_utm_crs(lon: float, lat: float) -> None:
    assert utm_epsg(lon, lat) == utm_crs(lon, lat).to_epsg()


def test_utm_epsg_refuses_non_finite_points() -> None:
    with pytest.raises(InvalidInputError):
        utm_epsg(1.5, float("inf"))


def test_utm_crs_refuses_non_finite_points() -> None:
    with pytest.raises(InvalidInputError):
        utm_crs(float("nan"), 42.0)
