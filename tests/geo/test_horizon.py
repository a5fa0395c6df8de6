"""Terrain horizon: synthetic walls with known answers, and real SRTM valleys and summits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from commap.errors import InvalidInputError
from commap.geo.geodesy import EARTH_RADIUS_M
from commap.geo.horizon import (
    ANTENNA_HEIGHT_M,
    Horizon,
    HorizonGrid,
    compute_horizon_grid,
    horizon_at_azimuth_deg,
    horizon_profile_deg,
    ray_distances_m,
)
from commap.geo.terrain import HgtTile, Terrain
from tests.support.paths import MAPS

ANDORRA_HGT = MAPS / "andorra" / "data" / "N42E001.hgt.zip"
VALLEY = (1.5218, 42.5063)  # Andorra la Vella, Gran Valira valley floor, ~1,020 m
SUMMIT = (1.44333, 42.59167)  # Coma Pedrosa, 2,911 m in SRTM3 (highest point of Andorra)
# the dip of the sea horizon from 1.5 m over a smooth earth: sqrt(2 h / R)
DIP_DEG = -math.degrees(math.sqrt(2 * ANTENNA_HEIGHT_M / EARTH_RADIUS_M))


def _tile(lat0: int, lon0: int, base_m: float = 1000.0) -> tuple[HgtTile, np.ndarray]:
    heights = np.full((1201, 1201), base_m, dtype=np.float32)
    return HgtTile(lat0=lat0, lon0=lon0, heights_m=heights), heights


def _wall_terrain(wall_m: float = 3000.0) -> Terrain:
    """Flat 1,000 m plateau around (50.5 N, 10.5 E) with an east-west wall ~2 km south."""
    tile, heights = _tile(50, 10)
    heights[622:625, 450:751] = wall_m  # row 600 = 50.5 N; +22 rows = 2.04 km south
    return Terrain([tile])


@pytest.fixture(scope="module")
def andorra() -> Terrain:
    return Terrain.from_files([ANDORRA_HGT])


def test_ray_distances_grow_and_end_at_max() -> None:
    d = ray_distances_m(20_000.0, step_m=70.0)
    assert d[0] == 70.0 and d[-1] == 20_000.0
    assert np.all(np.diff(d) > 0)
    assert np.allclose(np.diff(d[:10]), 70.0)  # raster spacing near the observer
    assert np.diff(d)[-2] > 300.0  # growing steps far away
    with pytest.raises(InvalidInputError):
        ray_distances_m(0.0)


def test_flat_terrain_horizon_is_the_curvature_dip() -> None:
    tile, _ = _tile(50, 10)
    profile = horizon_profile_deg(Terrain([tile]), np.array([10.5]), np.array([50.5]))
    assert profile.shape == (1, 36)
    assert np.allclose(profile, DIP_DEG, atol=0.003)


def test_no_terrain_and_empty_input() -> None:
    assert np.all(horizon_profile_deg(None, np.array([1.5, 2.0]), np.array([42.5, 43.0])) == 0)
    assert horizon_profile_deg(None, np.array([]), np.array([])).shape == (0, 36)
    assert Horizon(None).profile_deg(np.array([1.5]), np.array([42.5])).tolist() == [[0.0] * 36]


def test_wall_to_the_south_sets_the_southern_horizon() -> None:
    profile = horizon_profile_deg(_wall_terrain(), np.array([10.5]), np.array([50.5]))[0]
    # wall top 1,998.5 m above the antenna at 2.04 km: atan(1998.5 / 2037) = 44.5 deg
    assert 43.0 < profile[18] < 46.0
    assert abs(profile[0] - DIP_DEG) < 0.003  # north: open plateau
    assert profile[18] > profile[15] > profile[9]  # falls off towards the wall's ends


def test_grid_matches_ray_marching_at_nodes_and_wall() -> None:
    terrain = _wall_terrain()
    grid = compute_horizon_grid(terrain, (10.49, 50.49, 10.51, 50.51), max_distance_m=5000.0)
    lon = np.array([10.5, 10.495, 10.5 + 3 / 1200])
    lat = np.array([50.5, 50.5 + 2 / 1200, 50.495])
    exact = horizon_profile_deg(terrain, lon, lat, max_distance_m=5000.0)
    assert np.abs(grid.profile_deg(lon, lat) - exact).max() < 0.1


def test_valley_sees_a_higher_horizon_than_the_summit(andorra: Terrain) -> None:
    lon = np.array([VALLEY[0], SUMMIT[0]])
    lat = np.array([VALLEY[1], SUMMIT[1]])
    valley, summit = horizon_profile_deg(andorra, lon, lat)
    assert valley.mean() > 15.0 and valley.max() > 25.0  # walls above Starlink's 25 deg
    assert summit.max() < 2.0 and summit.mean() < 0.0  # the summit looks down on everything
    assert np.all(valley > summit)


def test_andorra_grid_lookup_agrees_with_ray_marching(andorra: Terrain, tmp_path: Path) -> None:
    bbox = (1.50, 42.49, 1.54, 42.52)
    grid = compute_horizon_grid(andorra, bbox)
    assert grid.bbox[0] <= bbox[0] and grid.bbox[3] >= bbox[3]
    path = tmp_path / "horizon.npz"
    grid.save(path)
    loaded = HorizonGrid.load(path)
    assert np.array_equal(loaded.horizon_cdeg, grid.horizon_cdeg)
    # at nodes: the same rays, so equal up to the int16 centi-degree rounding
    lon_n = loaded.lon0 + np.arange(5, 40, 7) * loaded.dlon
    lat_n = loaded.lat0 + np.arange(5, 40, 7) * loaded.dlat
    exact = horizon_profile_deg(andorra, lon_n, lat_n)
    assert np.abs(loaded.profile_deg(lon_n, lat_n) - exact).max() < 0.1
    # between nodes: bilinear lookup, close on the median
    rng = np.random.default_rng(1)
    lon = rng.uniform(bbox[0], bbox[2], 40)
    lat = rng.uniform(bbox[1], bbox[3], 40)
    err = np.abs(loaded.profile_deg(lon, lat) - horizon_profile_deg(andorra, lon, lat))
    assert np.median(err) < 0.5


def test_horizon_falls_back_to_ray_marching_outside_the_grid(andorra: Terrain) -> None:
    grid = compute_horizon_grid(andorra, (1.52, 42.50, 1.525, 42.505))
    horizon = Horizon(andorra, grid)
    lon = np.array([1.5225, SUMMIT[0]])
    lat = np.array([42.5025, SUMMIT[1]])
    out = horizon.profile_deg(lon, lat)
    assert np.allclose(out[1], horizon_profile_deg(andorra, lon[1:], lat[1:])[0])
    assert np.allclose(out[0], grid.profile_deg(lon[:1], lat[:1])[0])


def test_azimuth_interpolation_wraps() -> None:
    profile = np.array([[0.0, 10.0, 20.0, 30.0], [5.0, 5.0, 5.0, 5.0]])
    assert horizon_at_azimuth_deg(profile, np.array([45.0, 123.0])).tolist() == [5.0, 5.0]
    assert horizon_at_azimuth_deg(profile[:1], np.array([315.0])).tolist() == [15.0]
    assert horizon_at_azimuth_deg(profile[:1], np.array([-90.0])).tolist() == [30.0]
    assert horizon_at_azimuth_deg(profile[:1], np.array([360.0])).tolist() == [0.0]


def test_bad_inputs_raise(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="bbox"):
        compute_horizon_grid(Terrain([]), (2.0, 42.0, 1.0, 43.0))
    with pytest.raises(InvalidInputError, match="n_azimuths"):
        horizon_profile_deg(None, np.array([1.0]), np.array([42.0]), n_azimuths=2)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InvalidInputError, match=r"bad\.npz"):
        HorizonGrid.load(bad)
    with pytest.raises(InvalidInputError, match=r"missing\.npz"):
        HorizonGrid.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(InvalidInputError, match=r"other\.npz"):
        HorizonGrid.load(tmp_path / "other.npz")
