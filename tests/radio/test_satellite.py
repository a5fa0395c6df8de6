"""Satellite layers against independent references: skyfield for LEO, closed forms for GEO.

The references never use commap's geometry: LEO elevations come from skyfield's own
``(satellite - topos).at(t).altaz()`` on element sets parsed here, GEO from a differently
written closed form and from plain vectors on a sphere.
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from skyfield.api import EarthSatellite, load, wgs84
from skyfield.iokit import parse_tle_file

from commap.errors import InvalidInputError
from commap.geo.horizon import (
    ANTENNA_HEIGHT_M,
    Horizon,
    horizon_at_azimuth_deg,
    horizon_profile_deg,
)
from commap.geo.terrain import HgtTile, Terrain
from commap.networks import Network, NetworkKind
from commap.plan import kernels
from commap.radio.layers import LayerContext, load_layer, prepare_layer
from commap.radio.layers.satellite import (
    GEO_RADIUS_KM,
    GeoLayer,
    LeoLayer,
    geo_look_angles_deg,
    read_tle_file,
    tle_checksum,
)
from commap.radio.quality import (
    NO_SATELLITE_ELEVATION_DEG,
    NO_SIGNAL_SINR_DB,
    CoverageLayer,
    Provenance,
)
from tests.support.paths import MAPS, REPO
from tests.support.specs import read_default_spec

MAP_DIR = MAPS / "andorra"
STARLINK = MAP_DIR / "data" / "starlink.txt"
ONEWEB = MAP_DIR / "data" / "oneweb.txt"
HGT = MAP_DIR / "data" / "N42E001.hgt.zip"
T0 = 1737633600.0  # 2025-01-23T12:00:00Z, the Starlink TLE date
T_ONEWEB = 1736078400.0  # 2025-01-05T12:00:00Z, the OneWeb TLE date
CORK = (-8.4756, 51.8985)
VALLEY = (1.5218, 42.5063)  # Andorra la Vella, valley floor
R_EQ_KM = 6378.137
TS = load.timescale(builtin=True)

STARLINK_NET = Network(
    id="starlink",
    kind=NetworkKind.LEO,
    operator="starlink",
    technology="leo",
    latency_ms=45.0,
    min_elevation_deg=25.0,
)
ONEWEB_NET = Network(
    id="oneweb",
    kind=NetworkKind.LEO,
    operator="oneweb",
    technology="leo",
    latency_ms=70.0,
    min_elevation_deg=35.0,
)
GEO_NET = Network(
    id="geo",
    kind=NetworkKind.GEO,
    operator="geo",
    technology="geo",
    latency_ms=600.0,
    min_elevation_deg=10.0,
    orbital_longitude_deg=9.0,
)


# ------------------------------------------------------------------------------- references


def _sky_times(t_s: np.ndarray) -> Any:
    days = np.floor(t_s / 86400.0)
    return TS.utc(1970, 1, 1 + days, 0, 0, t_s - days * 86400.0)


def skyfield_look(
    sats: list[EarthSatellite], lon: float, lat: float, height_m: float, t_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Elevation and azimuth (deg), shape (satellites, times), straight from skyfield."""
    topos = wgs84.latlon(lat, lon, elevation_m=height_m)
    t = _sky_times(np.asarray(t_s, dtype=np.float64))
    el, az = [], []
    for sat in sats:
        alt, azi, _ = (sat - topos).at(t).altaz()
        el.append(alt.degrees)
        az.append(azi.degrees)
    return np.array(el), np.array(az)


def _read_sky(path: Path) -> list[EarthSatellite]:
    with path.open("rb") as f:
        return list(parse_tle_file(f, TS))


@pytest.fixture(scope="module")
def starlink_sats() -> list[EarthSatellite]:
    return _read_sky(STARLINK)


@pytest.fixture(scope="module")
def starlink() -> LeoLayer:
    return LeoLayer(STARLINK_NET, read_tle_file(STARLINK))


@pytest.fixture(scope="module")
def andorra_terrain() -> Terrain:
    return Terrain.from_files([HGT])


def _wall_terrain() -> Terrain:
    """Flat 1,000 m plateau around (50.5 N, 10.5 E) with a 3,000 m wall ~2 km south of it."""
    heights = np.full((1201, 1201), 1000.0, dtype=np.float32)
    heights[622:625, 450:751] = 3000.0  # rows run north -> south; row 600 is 50.5 N
    return Terrain([HgtTile(lat0=50, lon0=10, heights_m=heights)])


# ------------------------------------------------------------------------------- TLE files


def test_reads_the_real_constellations() -> None:
    starlink = read_tle_file(STARLINK)
    oneweb = read_tle_file(ONEWEB)
    assert len(starlink) == 6909 and len(oneweb) == 651
    assert starlink[0].name == "STARLINK-1008"
    assert starlink[0].model.satnum == 44714


def test_checksum_of_a_real_line() -> None:
    line1 = STARLINK.read_text().splitlines()[1]
    assert tle_checksum(line1) == int(line1[68]) == 3
    assert tle_checksum("1 -" + " " * 66) == 2  # '1' counts 1, '-' counts 1


def _copy_with(tmp_path: Path, lineno: int, col: int, char: str) -> Path:
    lines = STARLINK.read_text().splitlines()[:30]
    line = lines[lineno - 1]
    lines[lineno - 1] = line[:col] + char + line[col + 1 :]
    path = tmp_path / "edited.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_checksum_names_file_and_line(tmp_path: Path) -> None:
    line = STARLINK.read_text().splitlines()[8]  # line 9: line 2 of the third record
    digit = "7" if line[10] != "7" else "8"  # one digit of the inclination
    path = _copy_with(tmp_path, 9, 10, digit)
    with pytest.raises(InvalidInputError, match=r"edited\.txt line 9: TLE checksum mismatch"):
        read_tle_file(path)


@pytest.mark.parametrize(
    ("lineno", "col", "char", "message"),
    [
        (2, 0, "3", r"line 2: expected TLE line 1 after the name 'STARLINK-1008'"),
        (5, 0, "2", r"line 5: expected TLE line 1 after the name 'STARLINK-1009'"),
        (3, 0, "1", r"line 3: expected TLE line 2"),
        (6, 2, "9", r"line 6: catalogue number"),
    ],
)
def test_malformed_records_name_the_line(
    tmp_path: Path, lineno: int, col: int, char: str, message: str
) -> None:
    path = _copy_with(tmp_path, lineno, col, char)
    if lineno == 6:  # keep line 2 valid apart from its catalogue number
        text = path.read_text().splitlines()
        body = text[5][:68]
        text[5] = body + str(tle_checksum(body))
        path.write_text("\n".join(text) + "\n")
    with pytest.raises(InvalidInputError, match=message):
        read_tle_file(path)


def test_truncated_and_empty_files(tmp_path: Path) -> None:
    lines = STARLINK.read_text().splitlines()
    short = tmp_path / "short.txt"
    short.write_text("\n".join([*lines[:3], lines[3], lines[4][:40]]) + "\n")
    with pytest.raises(InvalidInputError, match=r"short\.txt line 5"):
        read_tle_file(short)
    missing_line2 = tmp_path / "missing.txt"
    missing_line2.write_text("\n".join(lines[:5]) + "\n")
    with pytest.raises(InvalidInputError, match=r"line 5: TLE line 2 is missing"):
        read_tle_file(missing_line2)
    orphan = tmp_path / "orphan.txt"
    orphan.write_text(lines[2] + "\n")
    with pytest.raises(InvalidInputError, match=r"line 1: TLE line 2 without a line 1"):
        read_tle_file(orphan)
    for text in ("", "\n  \n"):
        empty = tmp_path / "empty.txt"
        empty.write_text(text)
        with pytest.raises(InvalidInputError, match="holds no TLE records"):
            read_tle_file(empty)
    with pytest.raises(InvalidInputError, match="cannot read"):
        read_tle_file(tmp_path / "nope.txt")


def test_two_line_format_without_names(tmp_path: Path) -> None:
    lines = STARLINK.read_text().splitlines()[:9]
    path = tmp_path / "two_line.txt"
    path.write_text("\n".join(ln for i, ln in enumerate(lines) if i % 3) + "\n")
    sats = read_tle_file(path)
    assert [s.model.satnum for s in sats] == [44714, 44715, 44716]


# ------------------------------------------------------------------------------- LEO vs skyfield


def test_starlink_over_cork_matches_readme_and_skyfield(
    starlink: LeoLayer, starlink_sats: list[EarthSatellite]
) -> None:
    detail = starlink.sample_detail([CORK[0]], [CORK[1]], [T0])
    el, az = skyfield_look(starlink_sats, *CORK, ANTENNA_HEIGHT_M, np.array([T0]))
    assert int(detail.visible_count[0]) == int((el[:, 0] >= 25.0).sum()) == 44
    assert detail.quality.elevation_deg[0] == pytest.approx(el[:, 0].max(), abs=0.01)
    assert detail.azimuth_deg[0] == pytest.approx(az[np.argmax(el[:, 0]), 0], abs=0.05)


def test_starlink_matches_skyfield_at_places_and_times(
    starlink: LeoLayer, starlink_sats: list[EarthSatellite]
) -> None:
    places = [CORK, VALLEY, (18.42, -33.92), (-70.0, 60.0)]  # + Cape Town, northern Canada
    times = T0 + np.array([-5000.0, 0.5, 1234.5, 4321.0, 0.37 * 86400])
    lon = np.repeat([p[0] for p in places], times.size)
    lat = np.repeat([p[1] for p in places], times.size)
    t_s = np.tile(times, len(places))
    detail = starlink.sample_detail(lon, lat, t_s)  # one call: several groups and cells
    for i, (plon, plat) in enumerate(places):
        el, _ = skyfield_look(starlink_sats, plon, plat, ANTENNA_HEIGHT_M, times)
        rows = slice(i * times.size, (i + 1) * times.size)
        assert detail.visible_count[rows].tolist() == (el >= 25.0).sum(axis=0).tolist()
        best = np.where((el >= 25.0).any(axis=0), el.max(axis=0), NO_SATELLITE_ELEVATION_DEG)
        assert np.allclose(detail.quality.elevation_deg[rows], best, atol=0.01)


def test_starlink_along_a_75_minute_drive_matches_skyfield(
    starlink: LeoLayer, starlink_sats: list[EarthSatellite]
) -> None:
    times = T0 + np.linspace(0.0, 4500.0, 61)  # crosses every prefilter interval
    detail = starlink.sample_detail(np.full(61, VALLEY[0]), np.full(61, VALLEY[1]), times)
    el, _ = skyfield_look(starlink_sats, *VALLEY, ANTENNA_HEIGHT_M, times)
    assert detail.visible_count.tolist() == (el >= 25.0).sum(axis=0).tolist()
    assert np.abs(detail.quality.elevation_deg - el.max(axis=0)).max() < 0.01


def test_oneweb_matches_skyfield_near_its_epoch() -> None:
    layer = LeoLayer(ONEWEB_NET, read_tle_file(ONEWEB))
    times = T_ONEWEB + np.linspace(-3600.0, 3600.0, 9)
    sats = _read_sky(ONEWEB)
    for plon, plat in (CORK, VALLEY):
        detail = layer.sample_detail(np.full(9, plon), np.full(9, plat), times)
        el, _ = skyfield_look(sats, plon, plat, ANTENNA_HEIGHT_M, times)
        assert detail.visible_count.tolist() == (el >= 35.0).sum(axis=0).tolist()
        seen = detail.visible_count > 0
        assert np.allclose(detail.quality.elevation_deg[seen], el.max(axis=0)[seen], atol=0.01)
        assert np.all(detail.quality.elevation_deg[~seen] == NO_SATELLITE_ELEVATION_DEG)


# ------------------------------------------------------------------------------- LEO behaviour


def test_tunnels_and_bridges_block_the_sky(starlink: LeoLayer) -> None:
    lon = np.full(4, VALLEY[0])
    lat = np.full(4, VALLEY[1])
    tunnel = np.array([True, False, False, True])
    bridge = np.array([False, True, False, True])
    open_sky = starlink.sample_detail(lon, lat, T0)
    blocked = starlink.sample_detail(lon, lat, T0, in_tunnel=tunnel, under_bridge=bridge)
    shut = tunnel | bridge
    assert np.all(blocked.visible_count[shut] == 0)
    assert np.all(blocked.quality.elevation_deg[shut] == NO_SATELLITE_ELEVATION_DEG)
    assert np.all(blocked.quality.sinr_db[shut] == NO_SIGNAL_SINR_DB)
    assert np.all(np.isnan(blocked.azimuth_deg[shut]))
    assert blocked.visible_count[2] == open_sky.visible_count[2] > 0
    assert np.all(starlink.visible_count(lon, lat, T0, in_tunnel=tunnel)[tunnel] == 0)
    with pytest.raises(InvalidInputError, match="in_tunnel"):
        starlink.sample(lon, lat, T0, in_tunnel=np.array([True]))


def test_quality_conventions_and_link_budget(starlink: LeoLayer) -> None:
    assert isinstance(starlink, CoverageLayer)
    lon = np.array([CORK[0], VALLEY[0], 1.6])
    lat = np.array([CORK[1], VALLEY[1], 42.55])
    detail = starlink.sample_detail(lon, lat, T0 + np.array([0.0, 600.0, 1200.0]))
    q = detail.quality
    assert np.all(np.isnan(q.rsrp_dbm))
    assert np.all(q.provenance == Provenance.MODELLED)
    assert np.all(q.sample_count == 0)
    assert np.allclose(q.confidence, 0.8)
    # free-space loss of the slant range against the median altitude (540 km): 12 dB there
    assert starlink.reference_range_km == pytest.approx(540.0, abs=5.0)
    expected = 12.0 - 20 * np.log10(detail.range_km / starlink.reference_range_km)
    assert np.allclose(q.sinr_db, expected)
    assert np.all((q.sinr_db > 5.0) & (q.sinr_db < 14.0))
    # a 550 km satellite at 25 deg is 1,124 km away: about 5.8 dB (module docstring)
    slant_km = math.sqrt(6921.0**2 - (6371.0 * math.cos(math.radians(25))) ** 2)
    slant_km -= 6371.0 * math.sin(math.radians(25))
    assert slant_km == pytest.approx(1124.0, abs=2.0)
    assert len(starlink.sample([], [], [])) == 0


def test_times_far_from_the_epochs_lose_confidence_without_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the front doors say it once per request (CommMap.check_elements); the layer stays quiet
    layer = LeoLayer(ONEWEB_NET, read_tle_file(ONEWEB))
    with caplog.at_level(logging.WARNING, logger="commap.radio.layers.satellite"):
        near = layer.sample([CORK[0]], [CORK[1]], [T_ONEWEB])
        q = layer.sample([CORK[0]], [CORK[1]], [T_ONEWEB + 30 * 86400.0])
        layer.sample([CORK[0]], [CORK[1]], [T_ONEWEB + 30 * 86400.0])
    assert not caplog.records
    assert abs(layer.epoch_s - T_ONEWEB) < 2 * 86400.0
    assert near.confidence[0] == pytest.approx(0.8)
    assert q.confidence[0] == pytest.approx(0.4)


def test_terrain_blocks_satellites_behind_andorran_ridges(
    starlink_sats: list[EarthSatellite], andorra_terrain: Terrain
) -> None:
    layer = LeoLayer(STARLINK_NET, read_tle_file(STARLINK), Horizon(andorra_terrain))
    flat = LeoLayer(STARLINK_NET, read_tle_file(STARLINK))
    times = T0 + np.arange(8) * 450.0
    lon, lat = np.full(8, VALLEY[0]), np.full(8, VALLEY[1])
    with_terrain = layer.visible_count(lon, lat, times)
    without = flat.visible_count(lon, lat, times)
    ground_m = float(andorra_terrain.elevation_m(lon[:1], lat[:1])[0])
    el, az = skyfield_look(starlink_sats, *VALLEY, ground_m + ANTENNA_HEIGHT_M, times)
    profile = horizon_profile_deg(andorra_terrain, lon[:1], lat[:1])
    floor = np.maximum(25.0, horizon_at_azimuth_deg(np.repeat(profile, az.size, 0), az.ravel()))
    expected = (el >= floor.reshape(el.shape)).sum(axis=0)
    assert with_terrain.tolist() == expected.tolist()
    assert np.all(with_terrain <= without)
    assert (without - with_terrain).sum() > 0  # some satellites above 25 deg sit behind a ridge


def test_low_satellites_behind_a_wall_are_blocked(starlink_sats: list[EarthSatellite]) -> None:
    terrain = _wall_terrain()
    layer = LeoLayer(STARLINK_NET, read_tle_file(STARLINK), Horizon(terrain))
    times = T0 + np.arange(6) * 600.0
    lon, lat = np.full(6, 10.5), np.full(6, 50.5)
    detail = layer.sample_detail(lon, lat, times)
    el, az = skyfield_look(starlink_sats, 10.5, 50.5, 1000.0 + ANTENNA_HEIGHT_M, times)
    south = (az > 160) & (az < 200) & (el >= 25.0)
    behind_wall = south & (el < 40.0)  # the wall rises to about 44 deg due south
    assert behind_wall.sum() > 0
    open_sky = (el >= 25.0) & ~((az > 100) & (az < 260) & (el < 47.0))  # clear of the wall
    counts = detail.visible_count
    assert np.all(counts <= (el >= 25.0).sum(axis=0) - behind_wall.sum(axis=0))
    assert np.all(counts >= open_sky.sum(axis=0))


# ------------------------------------------------------------------------------- GEO


def test_geo_closed_form_matches_an_independent_form() -> None:
    lat_grid, lon_grid = np.meshgrid(np.linspace(-75, 75, 16), np.linspace(-70, 90, 17))
    lat, lon = lat_grid.ravel(), lon_grid.ravel()
    el, az, range_km = geo_look_angles_deg(lon, lat, 9.0)
    # Pratt & Bostian's cosine form: cos(El) = sin(g) / sqrt(1 + q^2 - 2 q cos(g)), q = R / r
    q = R_EQ_KM / GEO_RADIUS_KM
    cos_g = np.cos(np.radians(lat)) * np.cos(np.radians(9.0 - lon))
    sin_g = np.sqrt(1 - cos_g**2)
    cos_el = sin_g / np.sqrt(1 + q**2 - 2 * q * cos_g)
    above = cos_g > q
    assert np.allclose(np.cos(np.radians(el[above])), cos_el[above], atol=1e-12)
    assert np.all((el >= 0) == above)
    # plain vectors on a sphere: observer u, satellite s, elevation = asin(rho . u / |rho|)
    phi, lam, lam_s = np.radians(lat), np.radians(lon), np.radians(9.0)
    u = np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], -1)
    sat = GEO_RADIUS_KM * np.array([np.cos(lam_s), np.sin(lam_s), 0.0])
    rho = sat - R_EQ_KM * u
    dist = np.linalg.norm(rho, axis=1)
    east = np.stack([-np.sin(lam), np.cos(lam), np.zeros_like(lam)], -1)
    north = np.stack([-np.sin(phi) * np.cos(lam), -np.sin(phi) * np.sin(lam), np.cos(phi)], -1)
    el_v = np.degrees(np.arcsin(np.einsum("ij,ij->i", rho, u) / dist))
    az_v = np.degrees(
        np.arctan2(np.einsum("ij,ij->i", rho, east), np.einsum("ij,ij->i", rho, north))
    )
    assert np.allclose(el, el_v, atol=1e-9)
    assert np.allclose(range_km, dist, rtol=1e-12)
    az_diff = (az - az_v + 180.0) % 360.0 - 180.0
    assert np.abs(az_diff[np.abs(lat) > 0.1]).max() < 1e-9


def test_geo_hand_checks() -> None:
    el, _, range_km = geo_look_angles_deg(np.array([9.0]), np.array([0.0]), 9.0)
    assert el[0] == pytest.approx(90.0) and range_km[0] == pytest.approx(35786.03, abs=0.01)
    edge = math.degrees(math.acos(R_EQ_KM / GEO_RADIUS_KM))  # 81.3 deg: on the horizon
    el, _, _ = geo_look_angles_deg(np.array([9.0 + edge, 9.0 - edge]), np.zeros(2), 9.0)
    assert np.allclose(el, 0.0, atol=1e-9)
    el, az, _ = geo_look_angles_deg(np.array([9.0, 9.0, VALLEY[0]]), np.array([45, -45, 42.5]), 9.0)
    assert az[0] == pytest.approx(180.0) and az[1] == pytest.approx(0.0)  # due south / north
    assert el[0] == pytest.approx(el[1]) == pytest.approx(38.2, abs=0.1)
    assert 160.0 < az[2] < 180.0 and 38.0 < el[2] < 42.0  # Andorra: south-south-east


def test_geo_layer_minimum_elevation_blocking_and_budget() -> None:
    layer = GeoLayer(GEO_NET)
    lon = np.array([9.0, VALLEY[0], 9.0, 9.0])
    lat = np.array([0.0, VALLEY[1], 78.0, 45.0])  # 78 N: GEO at 3.3 deg, below the 10 deg floor
    detail = layer.sample_detail(lon, lat, T0, under_bridge=np.array([False, False, False, True]))
    q = detail.quality
    assert detail.visible_count.tolist() == [1, 1, 0, 0]
    assert q.elevation_deg[0] == pytest.approx(90.0)
    assert q.elevation_deg[2] == NO_SATELLITE_ELEVATION_DEG == q.elevation_deg[3]
    assert q.sinr_db[0] == pytest.approx(10.0)
    assert q.sinr_db[1] == pytest.approx(10.0 - 20 * math.log10(detail.range_km[1] / 35786.03))
    assert q.sinr_db[2] == NO_SIGNAL_SINR_DB
    assert np.all(q.provenance == Provenance.MODELLED) and np.all(np.isnan(q.rsrp_dbm))


def test_geo_behind_a_wall_is_blocked() -> None:
    net = Network(
        id="geo",
        kind=NetworkKind.GEO,
        operator="g",
        technology="geo",
        latency_ms=600.0,
        min_elevation_deg=10.0,
        orbital_longitude_deg=10.5,
    )
    lon, lat = np.array([10.5, 10.5]), np.array([50.5, 50.45])  # behind / in front of the wall
    el, az, _ = geo_look_angles_deg(lon, lat, 10.5)
    assert az[0] == pytest.approx(180.0) and el[0] == pytest.approx(32.1, abs=0.2)
    walled = GeoLayer(net, Horizon(_wall_terrain())).visible_count(lon, lat, T0)
    assert walled.tolist() == [0, 1]
    assert GeoLayer(net).visible_count(lon, lat, T0).tolist() == [1, 1]


# ------------------------------------------------------------------------------- registry


def _specs() -> dict[str, dict[str, Any]]:
    return {n["id"]: n["layer"] for n in read_default_spec()["networks"]}


def test_prepare_and_load_through_the_registry(tmp_path: Path, andorra_terrain: Terrain) -> None:
    bbox = (1.50, 42.49, 1.54, 42.52)  # small: keeps the horizon grid quick to build
    ctx = LayerContext(MAP_DIR, tmp_path / "built", bbox, terrain=andorra_terrain)
    specs = _specs()
    built = prepare_layer(STARLINK_NET, specs["starlink"], ctx)
    assert built["tle_file"] == "satellite/starlink.tle"
    assert built["satellites"] == 6909
    assert built["horizon_file"] == "satellite/horizon.npz"
    assert (ctx.built_dir / built["tle_file"]).read_bytes() == STARLINK.read_bytes()
    grid_path = ctx.built_dir / built["horizon_file"]
    mtime = grid_path.stat().st_mtime_ns
    built_geo = prepare_layer(GEO_NET, specs["geo"], ctx)
    assert built_geo["horizon_file"] == built["horizon_file"]
    assert grid_path.stat().st_mtime_ns == mtime  # the grid is shared, not recomputed
    leo = load_layer(STARLINK_NET, built, ctx)
    geo = load_layer(GEO_NET, built_geo, ctx)
    assert isinstance(leo, LeoLayer) and isinstance(geo, GeoLayer)
    assert leo.horizon.grid is not None and leo.horizon.grid is geo.horizon.grid
    q = leo.sample([VALLEY[0]], [VALLEY[1]], [T0])
    assert q.elevation_deg[0] > 25.0
    # the map works without /work/shared or the sources once built
    moved = LayerContext(tmp_path / "elsewhere", ctx.built_dir, bbox, terrain=andorra_terrain)
    reloaded = load_layer(STARLINK_NET, built, moved)
    assert isinstance(reloaded, LeoLayer) and len(reloaded.satellites) == 6909


def test_registry_rejects_bad_specs(tmp_path: Path) -> None:
    ctx = LayerContext(MAP_DIR, tmp_path / "built", (1.5, 42.5, 1.51, 42.51))
    with pytest.raises(InvalidInputError, match=r"layer\.tle_file"):
        prepare_layer(STARLINK_NET, {"type": "leo"}, ctx)
    with pytest.raises(InvalidInputError, match="not found"):
        prepare_layer(STARLINK_NET, {"type": "leo", "tle_file": "data/none.txt"}, ctx)
    with pytest.raises(InvalidInputError, match="cannot use a satellite layer of type 'geo'"):
        prepare_layer(STARLINK_NET, {"type": "geo"}, ctx)
    with pytest.raises(InvalidInputError, match="sinr_zenith_db"):
        load_layer(
            STARLINK_NET,
            {"type": "leo", "tle_file": "x.tle", "sinr_zenith_db": "loud"},
            LayerContext(MAP_DIR, MAP_DIR / "data", (1.5, 42.5, 1.51, 42.51)),
        )
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    shutil.copyfile(STARLINK, src / "data" / "starlink.txt")
    text = (src / "data" / "starlink.txt").read_text().splitlines()
    text[1] = text[1][:68] + str((int(text[1][68]) + 1) % 10)
    (src / "data" / "starlink.txt").write_text("\n".join(text) + "\n")
    bad_ctx = LayerContext(src, tmp_path / "built2", (1.5, 42.5, 1.51, 42.51))
    with pytest.raises(InvalidInputError, match=r"starlink\.txt line 2: TLE checksum"):
        prepare_layer(STARLINK_NET, {"type": "leo", "tle_file": "data/starlink.txt"}, bad_ctx)


# ------------------------------------------------------------------------------- map region


ANDORRA_BBOX = (1.40, 42.38, 1.80, 42.68)  # maps/andorra/map.toml


def _drive_across_andorra(n: int = 1500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Andorra la Vella -> Pas de la Casa and back, one point every ~60 m over 2.5 hours."""
    s = np.concatenate([np.linspace(0.0, 1.0, n // 2), np.linspace(1.0, 0.0, n - n // 2)])
    lon = VALLEY[0] + s * (1.7330 - VALLEY[0])
    lat = VALLEY[1] + s * (42.5430 - VALLEY[1]) + 0.01 * np.sin(7.0 * s)
    times = T0 + 137.0 + np.sort(np.random.default_rng(5).uniform(0.0, 9000.0, n))
    return lon, lat, times


def test_region_layer_matches_the_per_group_path(andorra_terrain: Terrain) -> None:
    # the map's layers keep candidates per node interval for the whole region; points in the
    # region must get exactly what the per-group path gives them, from a cold and a warm cache
    sats = read_tle_file(STARLINK)
    horizon = Horizon(andorra_terrain)
    region = LeoLayer(STARLINK_NET, sats, horizon, region=ANDORRA_BBOX)
    groups = LeoLayer(STARLINK_NET, sats, horizon)
    lon, lat, times = _drive_across_andorra()
    tunnel = np.zeros(lon.size, dtype=bool)
    tunnel[100:130] = True
    reference = groups.sample_detail(lon, lat, times, in_tunnel=tunnel)
    assert region._sky is not None and region._sky.contains(lon, lat)
    for _ in range(2):  # cold, then every interval from the cache
        got = region.sample_detail(lon, lat, times, in_tunnel=tunnel)
        assert got.visible_count.tolist() == reference.visible_count.tolist()
        for name in ("elevation_deg", "sinr_db", "confidence"):
            want = getattr(reference.quality, name)
            assert np.allclose(
                getattr(got.quality, name), want, rtol=0.0, atol=1e-9, equal_nan=True
            )
        assert np.allclose(got.azimuth_deg, reference.azimuth_deg, atol=1e-9, equal_nan=True)
        assert np.allclose(got.range_km, reference.range_km, atol=1e-9, equal_nan=True)
    assert (
        reference.visible_count[~tunnel].min() > 0 and (reference.visible_count[tunnel] == 0).all()
    )
    # a later call overlapping in time reuses the kept intervals and still agrees
    part = slice(400, 900)
    again = region.sample_detail(lon[part], lat[part], times[part] + 30.0)
    want = groups.sample_detail(lon[part], lat[part], times[part] + 30.0)
    assert np.allclose(again.quality.elevation_deg, want.quality.elevation_deg, atol=1e-9)


_NUMPY_PASS = """
import sys
import numpy as np
from commap import compiled
from commap.geo.horizon import Horizon
from commap.geo.terrain import Terrain
from commap.radio.layers.satellite import LeoLayer, read_tle_file
from tests.radio.test_satellite import (
    ANDORRA_BBOX, HGT, STARLINK, STARLINK_NET, _drive_across_andorra,
)
layer = LeoLayer(STARLINK_NET, read_tle_file(STARLINK), Horizon(Terrain.from_files([HGT])),
                 region=ANDORRA_BBOX)
lon, lat, times = _drive_across_andorra()
got = layer.sample_detail(lon, lat, times)
assert not compiled.loaded()  # numba never came into this process: the numpy passes ran
np.savez(sys.argv[1], elevation=got.quality.elevation_deg, sinr=got.quality.sinr_db,
         count=got.visible_count, azimuth=got.azimuth_deg, range=got.range_km)
"""


def test_the_compiled_pass_gives_the_numpy_values_to_the_bit(
    andorra_terrain: Terrain, tmp_path: Path
) -> None:
    # a server (numba loaded) and a one-shot command (numpy passes) must plan alike
    out = tmp_path / "numpy.npz"
    subprocess.run([sys.executable, "-c", _NUMPY_PASS, str(out)], cwd=REPO, check=True)
    kernels.warm_up()
    layer = LeoLayer(
        STARLINK_NET, read_tle_file(STARLINK), Horizon(andorra_terrain), region=ANDORRA_BBOX
    )
    lon, lat, times = _drive_across_andorra()
    got = layer.sample_detail(lon, lat, times)
    want = np.load(out)
    assert got.visible_count.tolist() == want["count"].tolist()
    for name, values in (
        ("elevation", got.quality.elevation_deg),
        ("sinr", got.quality.sinr_db),
        ("azimuth", got.azimuth_deg),
        ("range", got.range_km),
    ):
        np.testing.assert_array_equal(values, want[name], err_msg=name)


def test_region_layer_outside_its_region_takes_the_per_group_path(
    starlink_sats: list[EarthSatellite],
) -> None:
    layer = LeoLayer(STARLINK_NET, read_tle_file(STARLINK), region=ANDORRA_BBOX)
    times = np.array([T0, T0 + 600.0])
    lon, lat = np.array([VALLEY[0], CORK[0]]), np.array([VALLEY[1], CORK[1]])
    assert layer._sky is not None and not layer._sky.contains(lon, lat)
    detail = layer.sample_detail(lon, lat, times)
    for i in range(2):
        el, _ = skyfield_look(starlink_sats, lon[i], lat[i], ANTENNA_HEIGHT_M, times[i : i + 1])
        assert detail.visible_count[i] == int((el >= 25.0).sum())
        assert abs(detail.quality.elevation_deg[i] - el.max()) < 0.01


def test_region_layer_matches_skyfield_along_a_drive(starlink_sats: list[EarthSatellite]) -> None:
    layer = LeoLayer(STARLINK_NET, read_tle_file(STARLINK), region=ANDORRA_BBOX)
    times = T0 + np.linspace(0.0, 4500.0, 61)
    detail = layer.sample_detail(np.full(61, VALLEY[0]), np.full(61, VALLEY[1]), times)
    el, _ = skyfield_look(starlink_sats, *VALLEY, ANTENNA_HEIGHT_M, times)
    assert detail.visible_count.tolist() == (el >= 25.0).sum(axis=0).tolist()
    assert np.abs(detail.quality.elevation_deg - el.max(axis=0)).max() < 0.01
