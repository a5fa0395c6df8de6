"""Satellite coverage layers: LEO constellations from TLE files, GEO satellites by longitude.

A satellite network is usable at a point when a satellite stands at or above the network's
minimum elevation (Starlink 25 deg) *and* above the terrain horizon in its azimuth
(:mod:`commap.geo.horizon`), and the point is neither in a tunnel nor under a bridge.

LEO (:class:`LeoLayer`)
    TLEs are checked line by line (format and mod-10 checksum) and parsed with skyfield
    (``load.timescale(builtin=True)``: nothing is downloaded). Sampling uses vectorised SGP4
    (:class:`sgp4.api.SatrecArray`) with a two-stage prefilter. Points are grouped by time
    interval and 5 deg cell. Every satellite is propagated on a coarse grid
    (``COARSE_STEP_S``); per coarse interval, then per node interval (``NODE_STEP_S``), only
    satellites that can reach the group's sky stay (footprint at the minimum elevation +
    motion over the half interval + the group's radius: a conservative spherical bound).
    The survivors (about twice the visible count) are propagated exactly at the two nodes
    around the group and interpolated to each point's time by cubic Hermite interpolation
    of SGP4 position and velocity (error under 2 m at 90 s, 0.0002 deg of elevation), then
    rotated TEME -> earth-fixed by GMST 1982 with UT1 (polar motion, under 20 m, is
    neglected, as skyfield does by default) and turned into topocentric elevation and
    azimuth above the WGS84 ellipsoid.
    A map's layers know its region (``region``, the map's bbox): the candidates of each node
    interval are then those of a sky cap holding the whole region, kept for the layer's life
    with their exact node states (:class:`_RegionSky`), and every point of a call is evaluated
    at once. Route alternatives and repeated plans around the same departure reuse them; the
    values are the same as the per-group path's. Where numba is loaded (the server), the
    looks at the candidates and the choice of the best usable one run as compiled loops
    (:mod:`commap.compiled`), the arc sines and tangents still numpy's: the same values to the
    bit. Observers and horizon profiles, which depend on the points alone, are kept for the
    points a layer was asked last.
GEO (:class:`GeoLayer`)
    Closed-form look angles of a geostationary satellite on a spherical earth (see
    :func:`geo_look_angles_deg`).

Link budget (both): the equivalent SINR of the best (highest) usable satellite follows the
free-space path loss of its slant range ``d`` relative to a reference range ``d_ref``::

    sinr_db = sinr_ref_db - 20 * log10(d / d_ref)

For LEO ``d_ref`` is the constellation's median altitude (the zenith range) and
``sinr_ref_db`` 12 dB (spec key ``sinr_zenith_db``): Starlink at 550 km then gives 12 dB at the
zenith and 5.8 dB at 25 deg (1,124 km). For GEO ``d_ref`` = 35,786 km and 10 dB (spec key
``sinr_db``). Rain fade, beam scheduling and capacity are not modelled: values are MODELLED
with confidence 0.8 (LEO; halved 14 days away from the TLEs' median epoch, linearly from 3
days, as SGP4 errors grow by kilometres per day) and 0.9 (GEO geometry is exact).

Only the visibility count of usable satellites does not fit :class:`commap.radio.quality.Quality`;
:meth:`LeoLayer.sample_detail` returns it with the quality in a :class:`SatelliteSample`.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sgp4.api import Satrec, SatrecArray
from skyfield.api import EarthSatellite, load

from commap.arrays import FloatArray, RecentArrays, median
from commap.compiled import compiled, loaded
from commap.errors import InvalidInputError
from commap.files import atomic_path
from commap.geo.horizon import (
    ANTENNA_HEIGHT_M,
    Horizon,
    HorizonGrid,
    compute_horizon_grid,
    horizon_at_azimuth_deg,
)
from commap.networks import Network, NetworkKind
from commap.radio.layers import LayerContext, layer_number
from commap.radio.quality import (
    NO_SATELLITE_ELEVATION_DEG,
    NO_SIGNAL_SINR_DB,
    Provenance,
    Quality,
    as_sample_points,
)

__all__ = [
    "ELEMENTS_SUFFIX",
    "GEOMETRY_MAX_BYTES",
    "GEO_RADIUS_KM",
    "ElementTable",
    "GeoLayer",
    "LeoLayer",
    "SatelliteSample",
    "geo_look_angles_deg",
    "load_layer",
    "prepare_layer",
    "read_tle_file",
    "tle_checksum",
    "warm_up_kernels",
    "write_elements_beside",
]

log = logging.getLogger(__name__)


WGS84_A_KM = 6378.137
WGS84_F = 1.0 / 298.257223563
_E2 = WGS84_F * (2.0 - WGS84_F)
GEO_RADIUS_KM = 42_164.17  # geostationary orbit radius
GEO_ALTITUDE_KM = GEO_RADIUS_KM - WGS84_A_KM
EARTH_ROTATION_RAD_S = 7.292115e-5
NODE_STEP_S = 90.0  # exact-SGP4 node spacing for Hermite interpolation (module doc: error)
COARSE_STEP_S = 900.0  # all-satellite grid behind the prefilter
CELL_DEG = 5.0  # spatial grouping cell: keeps each group's sky cap small
STALE_TLE_DAYS = 7.0
_UNIX_EPOCH_JD = 2440587.5
_DAY_S = 86_400.0
_MIN_EARTH_RADIUS_KM = 6350.0  # below the polar radius: a conservative footprint bound
_PREFILTER_MARGIN_RAD = math.radians(0.5)
_MAX_PAIRS = 2_000_000  # points x candidates per chunk (memory bound)
_REGION_MAX_PAIRS = 250_000  # the same for a whole call in a region: arrays of a few MB
_REGION_GRID = 9  # points per side of the lon/lat grid a region's sky cap is fitted to
# between the grid points a lon/lat box bulges out of the cap by metres: well inside this
_REGION_CAP_MARGIN_RAD = 1e-4
_REGION_INTERVALS = 2048  # node intervals a region keeps (about 15 kB each, 2 days of time)
_REGION_SPLIT = 12  # sub-intervals (7.5 s) a region's node interval is narrowed to
_SUB_ELEVATION_MARGIN_DEG = 0.25  # geodetic vs geocentric vertical, UT1 (see _within)
_SUB_ANGLE_MARGIN_RAD = math.radians(0.05)
# observers and horizon profiles a layer keeps for the points it was asked about last
GEOMETRY_MAX_BYTES = 12 << 20

DEFAULT_LEO_SINR_ZENITH_DB = 12.0
DEFAULT_GEO_SINR_DB = 10.0
DEFAULT_LEO_CONFIDENCE = 0.8
DEFAULT_GEO_CONFIDENCE = 0.9

_TS = load.timescale(builtin=True)  # bundled UT1/leap-second tables: never downloads


# ---------------------------------------------------------------------------------- TLE files


def tle_checksum(line: str) -> int:
    """Mod-10 checksum of a TLE line: digits count their value, ``-`` counts 1.

    Only the first 68 characters count; column 69 holds the checksum itself.

    Examples
    --------
    >>> tle_checksum("1 44714U 19074B   25023.74741757 -.00000020  00000+0  17545-4 0  999")
    3
    >>> tle_checksum("")
    0
    """
    total = sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in line[:68])
    return total % 10


def _check_tle_line(line: str, number: int, lineno: int, source: str) -> None:
    """Shape of a TLE line (its checksum is checked by :func:`_check_checksums`)."""
    if len(line) != 69 or line[0] != str(number) or line[1] != " ":
        raise InvalidInputError(
            f"{source} line {lineno}: expected TLE line {number} (69 characters starting {number!r}), "
            f"got {line[:20]!r}... ({len(line)} characters)",
            field=source,
        )


def _check_checksums(lines: list[str], linenos: list[int], source: str) -> None:
    """The checksums of many 69-character TLE lines at once (as :func:`tle_checksum`)."""
    if not lines:
        return
    chars = np.frombuffer("".join(lines).encode("ascii"), dtype=np.uint8).reshape(len(lines), 69)
    body = chars[:, :68].astype(np.int64)
    digit = (body >= ord("0")) & (body <= ord("9"))
    total = np.where(digit, body - ord("0"), 0).sum(axis=1) + (body == ord("-")).sum(axis=1)
    stated = chars[:, 68].astype(np.int64) - ord("0")
    bad = np.flatnonzero((stated < 0) | (stated > 9) | (total % 10 != stated))
    if bad.size:
        line = lines[int(bad[0])]
        raise InvalidInputError(
            f"{source} line {linenos[int(bad[0])]}: TLE checksum mismatch (line says "
            f"{line[68]!r}, computed {tle_checksum(line)})",
            field=source,
        )


def _split_tle(text: str, source: str) -> list[tuple[str, str, str]]:
    """Validated ``(name, line1, line2)`` records of a 2- or 3-line TLE text."""
    lines = [ln.rstrip() for ln in text.splitlines()]
    records: list[tuple[str, str, str]] = []
    checked: list[str] = []
    linenos: list[int] = []
    i, name = 0, ""
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if not line.startswith("1 "):
            if line.startswith("2 "):
                raise InvalidInputError(
                    f"{source} line {i + 1}: TLE line 2 without a line 1 before it", field=source
                )
            if i + 1 >= len(lines) or not lines[i + 1].startswith("1 "):  # a name, then line 1
                raise InvalidInputError(
                    f"{source} line {i + 2}: expected TLE line 1 after the name {line.strip()!r}",
                    field=source,
                )
            name, i = line.strip(), i + 1
            continue
        if i + 1 >= len(lines):
            raise InvalidInputError(f"{source} line {i + 1}: TLE line 2 is missing", field=source)
        _check_tle_line(line, 1, i + 1, source)
        _check_tle_line(lines[i + 1], 2, i + 2, source)
        if line[2:7] != lines[i + 1][2:7]:
            raise InvalidInputError(
                f"{source} line {i + 2}: catalogue number {lines[i + 1][2:7]!r} differs from "
                f"line 1 ({line[2:7]!r})",
                field=source,
            )
        records.append((name or line[2:7].strip(), line, lines[i + 1]))
        checked += [line, lines[i + 1]]
        linenos += [i + 1, i + 2]
        i, name = i + 2, ""
    _check_checksums(checked, linenos, source)
    return records


def read_tle_file(path: str | Path) -> list[EarthSatellite]:
    """Read a TLE file (2- or 3-line format) with explicit format and checksum checks.

    Parameters
    ----------
    path : str or Path
        Text file of element sets (CelesTrak format).

    Returns
    -------
    list of skyfield.api.EarthSatellite
        One per element set, in file order.

    Raises
    ------
    InvalidInputError
        If the file is unreadable or empty, or a line is malformed or fails its checksum
        (the message names the file and line number).

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
    ...     _ = f.write("")
    >>> try:
    ...     read_tle_file(f.name)
    ... except InvalidInputError as exc:
    ...     print(str(exc).endswith("holds no TLE records"))
    True
    >>> os.unlink(f.name)
    """
    path = Path(path)
    return list(_satellites(_read_tle_records(path), path))


def _read_tle_records(path: Path) -> list[tuple[str, str, str]]:
    """The validated ``(name, line1, line2)`` records of a TLE file (at least one)."""
    try:
        text = path.read_bytes().decode("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: cannot read TLE file ({exc})", field=str(path)) from exc
    records = _split_tle(text, str(path))
    if not records:
        raise InvalidInputError(f"{path}: holds no TLE records", field=str(path))
    return records


def _satellites(records: Sequence[tuple[str, str, str]], path: Path) -> list[_TleSatellite]:
    """One satellite per validated record (``path`` names the file in errors)."""
    try:
        return [_TleSatellite(n, a, b) for n, a, b in records]
    except ValueError as exc:  # sgp4 rejects fields it cannot parse
        raise InvalidInputError(f"{path}: bad TLE field ({exc})", field=str(path)) from exc


class _TleSatellite(EarthSatellite):
    """A skyfield satellite whose ``epoch`` (a skyfield Time, slow to make) is made when first
    read: the layers need only the SGP4 model, and a constellation has thousands."""

    def __init__(self, name: str, line1: str, line2: str) -> None:  # as skyfield's, lazily
        name = name.rstrip()
        self.name = (name[2:] if name.startswith("0 ") else name).strip()  # 3-line format
        self.model = Satrec.twoline2rv(line1, line2)
        self._setup(self.model)

    @classmethod
    def from_model(cls, name: str, model: Satrec) -> _TleSatellite:
        """A satellite of an already parsed SGP4 model and its final name."""
        satellite = cls.__new__(cls)
        satellite.name = name
        satellite.model = model
        satellite._setup(model)
        return satellite

    @functools.cached_property
    def epoch(self) -> Any:
        """The element set's epoch (skyfield Time), as :class:`skyfield.api.EarthSatellite`."""
        year = self.model.epochyr + (2000 if self.model.epochyr < 57 else 1900)
        return _TS.utc(year, 1, self.model.epochdays)


# The stored form of a constellation's elements, written beside its TLE file in a built map
# (``ELEMENTS_SUFFIX``): the lines validated at build time and the figures a layer needs before
# it propagates anything, read memory-mapped. Loading a map then neither splits nor checks the
# text again (half a second for a large constellation), and the SGP4 models are made from the
# same lines by the same parser only when the layer first propagates.
ELEMENTS_SUFFIX = ".elements.npy"
_ELEMENT_FIELDS = ("name", "line1", "line2", "epoch_s", "altitude_km", "apogee_km")


def _orbit_figures(models: Sequence[Satrec]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Epoch (Unix seconds), mean altitude (km) and highest orbit radius (km) of each model."""
    epochs_s = np.array([(m.jdsatepoch - _UNIX_EPOCH_JD + m.jdsatepochF) * _DAY_S for m in models])
    altitude_km = np.array([(m.alta + m.altp) / 2.0 * m.radiusearthkm for m in models])
    # highest orbit radius (mean-element apogee + short-period perturbations), footprints
    apogee_km = np.array([(1.0 + m.alta) * m.radiusearthkm + 25.0 for m in models])
    return epochs_s, altitude_km, apogee_km


@dataclass(frozen=True)
class ElementTable:
    """A constellation's element sets as one structured array, one row per satellite.

    Fields: ``name``, ``line1``, ``line2`` (ASCII bytes, the validated TLE lines), ``epoch_s``
    (Unix seconds), ``altitude_km`` (mean altitude) and ``apogee_km`` (highest orbit radius
    with a margin). :meth:`read` maps a stored table into memory; :meth:`models` parses the
    lines with the parser of :func:`read_tle_file`, so positions equal the TLE file's.

    Examples
    --------
    >>> table = ElementTable.from_tle_file("maps/andorra/data/oneweb.txt")
    >>> len(table), table.names[0]
    (651, 'ONEWEB-0012')
    >>> bool(np.all(table.epochs_s == _orbit_figures(table.models())[0]))
    True
    """

    rows: NDArray[np.void]

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @classmethod
    def from_tle_file(cls, path: str | Path) -> ElementTable:
        """The element sets of a TLE file, validated as by :func:`read_tle_file`.

        Raises
        ------
        InvalidInputError
            As :func:`read_tle_file`.
        """
        path = Path(path)
        records = _read_tle_records(path)
        satellites = _satellites(records, path)
        names = [s.name.encode("ascii") for s in satellites]
        dtype = np.dtype(
            [
                ("name", f"S{max(1, *(len(n) for n in names))}"),
                ("line1", "S69"),
                ("line2", "S69"),
                ("epoch_s", "<f8"),
                ("altitude_km", "<f8"),
                ("apogee_km", "<f8"),
            ]
        )
        rows = np.empty(len(satellites), dtype=dtype)
        rows["name"] = names
        rows["line1"] = [line1.encode("ascii") for _, line1, _ in records]
        rows["line2"] = [line2.encode("ascii") for _, _, line2 in records]
        figures = _orbit_figures([s.model for s in satellites])
        for field, values in zip(_ELEMENT_FIELDS[3:], figures, strict=True):
            rows[field] = values
        return cls(rows)

    @classmethod
    def read(cls, path: str | Path) -> ElementTable:
        """A stored table (see :meth:`write`), memory-mapped.

        Raises
        ------
        InvalidInputError
            The file is missing, unreadable or not an element table.
        """
        try:
            rows = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path}: cannot read element table ({exc})") from exc
        if rows.ndim != 1 or rows.dtype.names != _ELEMENT_FIELDS or rows.shape[0] == 0:
            raise InvalidInputError(f"{path}: not an element table of commap")
        return cls(rows)

    def write(self, path: str | Path) -> None:
        """Store the table (NumPy ``.npy``, atomically)."""
        with atomic_path(path, keep_suffix=True) as tmp:  # numpy appends .npy to other names
            np.save(tmp, np.asarray(self.rows), allow_pickle=False)

    @property
    def names(self) -> tuple[str, ...]:
        """The satellites' names, in file order."""
        return tuple(name.decode("ascii") for name in self.rows["name"].tolist())

    @property
    def epochs_s(self) -> FloatArray:
        """Epoch of every element set (Unix seconds)."""
        return np.array(self.rows["epoch_s"], dtype=np.float64)

    @property
    def altitude_km(self) -> FloatArray:
        """Mean altitude of every orbit (km)."""
        return np.array(self.rows["altitude_km"], dtype=np.float64)

    @property
    def apogee_km(self) -> FloatArray:
        """Highest orbit radius of every satellite (km, with short-period margin)."""
        return np.array(self.rows["apogee_km"], dtype=np.float64)

    def models(self) -> list[Satrec]:
        """The SGP4 model of every element set, parsed from its lines."""
        lines = zip(self.rows["line1"].tolist(), self.rows["line2"].tolist(), strict=True)
        return [Satrec.twoline2rv(a.decode("ascii"), b.decode("ascii")) for a, b in lines]


# ---------------------------------------------------------------------------------- geometry


def _jd_split(t_s: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Unix seconds -> (whole Julian date at 0h, day fraction), for full float precision."""
    days = np.floor(t_s / _DAY_S)
    return _UNIX_EPOCH_JD + days, (t_s - days * _DAY_S) / _DAY_S


def _gmst_rad(t_s: FloatArray, dut1_s: float) -> FloatArray:
    """Greenwich mean sidereal time (IAU 1982, as SGP4's TEME frame and skyfield use)."""
    whole, frac = _jd_split(np.asarray(t_s, dtype=np.float64) + dut1_s)
    t_cent = (whole - 2451545.0 + frac) / 36525.0
    g = 67310.54841 + (8640184.812866 + (0.093104 + (-6.2e-6) * t_cent) * t_cent) * t_cent
    return np.asarray(np.mod(np.mod(whole, 1.0) + frac + g / _DAY_S, 1.0) * 2.0 * np.pi)


def _dut1_s(t_s: float) -> float:
    """UT1 - UTC at ``t_s`` from skyfield's bundled tables (under 0.9 s by definition)."""
    days = math.floor(t_s / _DAY_S)
    t = _TS.utc(1970, 1, 1 + days, 0, 0, t_s - days * _DAY_S)
    return float(t.dut1)


def _teme_to_ecef(r_teme: FloatArray, gmst_rad: FloatArray) -> FloatArray:
    """Rotate TEME vectors (..., 3) about z by GMST (broadcast over leading axes)."""
    c, s = np.cos(gmst_rad), np.sin(gmst_rad)
    x, y = r_teme[..., 0], r_teme[..., 1]
    return np.stack([c * x + s * y, c * y - s * x, r_teme[..., 2]], axis=-1)


@dataclass(frozen=True)
class _Observers:
    """Observer positions (ECEF km) and local east/north/up unit vectors, shape (n, 3)."""

    ecef_km: FloatArray
    east: FloatArray
    north: FloatArray
    up: FloatArray

    @classmethod
    def at(cls, lon: FloatArray, lat: FloatArray, height_m: FloatArray) -> _Observers:
        lam, phi = np.radians(lon), np.radians(lat)
        sl, cl, sp, cp = np.sin(lam), np.cos(lam), np.sin(phi), np.cos(phi)
        n_km = WGS84_A_KM / np.sqrt(1.0 - _E2 * sp * sp)
        h_km = height_m / 1000.0
        ecef = np.stack(
            [(n_km + h_km) * cp * cl, (n_km + h_km) * cp * sl, (n_km * (1 - _E2) + h_km) * sp], -1
        )
        east = np.stack([-sl, cl, np.zeros_like(sl)], -1)
        north = np.stack([-sp * cl, -sp * sl, cp], -1)
        up = np.stack([cp * cl, cp * sl, sp], -1)
        return cls(ecef, east, north, up)


def geo_look_angles_deg(
    lon: ArrayLike, lat: ArrayLike, orbital_longitude_deg: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Elevation, azimuth and slant range of a geostationary satellite (closed form).

    With ``gamma`` the earth-central angle between the observer (latitude ``phi``) and the
    sub-satellite point, ``cos(gamma) = cos(phi) * cos(lon_sat - lon)``, a spherical earth of
    radius ``R`` = 6,378.137 km and the orbit radius ``r`` = 42,164.17 km (Pratt, Bostian and
    Allnutt, *Satellite Communications*, 2nd ed., Wiley 2003, section 2.2 "look angle
    determination"; Maral and Bousquet, *Satellite Communications Systems*, 5th ed., 8.3)::

        elevation = atan2(cos(gamma) - R / r, sin(gamma))
        azimuth   = atan2(sin(dlon), -sin(phi) * cos(dlon))      (clockwise from north)
        range     = sqrt(R**2 + r**2 - 2 * R * r * cos(gamma))

    The spherical earth and the observer height (neglected) shift the elevation by under
    0.2 deg against a WGS84 computation.

    Examples
    --------
    >>> el, az, d = geo_look_angles_deg(np.array([9.0]), np.array([0.0]), 9.0)
    >>> round(float(el[0]), 6), round(float(d[0]), 2)
    (90.0, 35786.03)
    >>> [a.shape for a in geo_look_angles_deg(np.array([]), np.array([]), 0.0)]
    [(0,), (0,), (0,)]
    """
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    dlon = np.radians(orbital_longitude_deg - np.asarray(lon, dtype=np.float64))
    cos_g = np.cos(phi) * np.cos(dlon)
    sin_g = np.sqrt(np.clip(1.0 - cos_g**2, 0.0, None))
    ratio = WGS84_A_KM / GEO_RADIUS_KM
    el = np.degrees(np.arctan2(cos_g - ratio, sin_g))
    az = np.mod(np.degrees(np.arctan2(np.sin(dlon), -np.sin(phi) * np.cos(dlon))), 360.0)
    range_km = GEO_RADIUS_KM * np.sqrt(1.0 + ratio**2 - 2.0 * ratio * cos_g)
    return el, az, range_km


# ---------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SatelliteSample:
    """A satellite layer's answer at ``n`` points.

    Attributes
    ----------
    quality : Quality
        What :meth:`sample` returns.
    visible_count : ndarray of int32
        Usable satellites per point (above minimum elevation and terrain, sky not blocked).
    azimuth_deg : ndarray
        Azimuth of the best usable satellite (NaN where there is none).
    range_km : ndarray
        Slant range to the best usable satellite (NaN where there is none).
    """

    quality: Quality
    visible_count: NDArray[np.int32]
    azimuth_deg: FloatArray
    range_km: FloatArray


def _result(
    n: int,
    best_el: FloatArray,
    best_az: FloatArray,
    best_range_km: FloatArray,
    count: NDArray[np.int32],
    sinr_db: FloatArray,
    confidence: FloatArray,
) -> SatelliteSample:
    """Assemble a sample; points without a usable satellite get the no-signal constants."""
    usable = count > 0
    quality = Quality(
        rsrp_dbm=np.full(n, np.nan),
        sinr_db=np.where(usable, sinr_db, NO_SIGNAL_SINR_DB),
        elevation_deg=np.where(usable, best_el, NO_SATELLITE_ELEVATION_DEG),
        confidence=np.asarray(confidence, dtype=np.float64),
        provenance=np.full(n, int(Provenance.MODELLED), dtype=np.int8),
        sample_count=np.zeros(n, dtype=np.int32),
    )
    return SatelliteSample(
        quality=quality,
        visible_count=count.astype(np.int32),
        azimuth_deg=np.where(usable, best_az, np.nan),
        range_km=np.where(usable, best_range_km, np.nan),
    )


def _fspl_sinr_db(range_km: FloatArray, ref_range_km: float, ref_sinr_db: float) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(ref_sinr_db - 20.0 * np.log10(range_km / ref_range_km))


class _SatelliteLayerBase:
    """Shared plumbing: point validation, observer heights, horizon, blocking."""

    def __init__(self, network: Network, horizon: Horizon, confidence: float) -> None:
        if not 0.0 <= confidence <= 1.0:
            raise InvalidInputError(
                f"network {network.id}: confidence must be within [0, 1]", field="confidence"
            )
        self.network = network
        self.network_id = network.id
        self.min_elevation_deg = float(network.min_elevation_deg)
        self.horizon = horizon
        self.confidence = confidence
        # where the points are depends on no time: a new trip on a road sampled before finds
        # its observers and horizons here (a 1,000 km corridor takes about 8 MB)
        self._recent = RecentArrays(max_bytes=GEOMETRY_MAX_BYTES)

    def _observers(self, lon: FloatArray, lat: FloatArray) -> _Observers:
        """Observers at the points (kept for the points asked last: trips on known roads)."""
        return self._recent.get(
            RecentArrays.key("observers", lon, lat), lambda: self._observers_at(lon, lat)
        )

    def _profile_deg(self, lon: FloatArray, lat: FloatArray) -> FloatArray:
        """The horizon profiles at the points (kept as :meth:`_observers` are)."""
        return self._recent.get(
            RecentArrays.key("profile", lon, lat), lambda: self.horizon.profile_deg(lon, lat)
        )

    def _observers_at(self, lon: FloatArray, lat: FloatArray) -> _Observers:
        terrain = self.horizon.terrain
        ground_m = terrain.elevation_m(lon, lat) if terrain is not None else np.zeros_like(lon)
        # SRTM heights are above the geoid, not the ellipsoid: the ~50 m undulation moves
        # elevations by under 0.005 deg, so it is not corrected
        return _Observers.at(lon, lat, ground_m + ANTENNA_HEIGHT_M)

    def sample_detail(
        self,
        lon: ArrayLike,
        lat: ArrayLike,
        t_s: ArrayLike,
        *,
        in_tunnel: ArrayLike | None = None,
        under_bridge: ArrayLike | None = None,
    ) -> SatelliteSample:
        """Quality plus visible-satellite count and best-satellite geometry at points.

        Parameters
        ----------
        lon, lat : array_like
            WGS84 degrees, shape ``(n,)``.
        t_s : array_like
            Unix epoch seconds (UTC) per point, or a scalar for all.
        in_tunnel, under_bridge : array_like of bool, optional
            Points whose sky is blocked.
        """
        lon_a, lat_a, t_a, tunnel, bridge = as_sample_points(
            lon, lat, t_s, in_tunnel=in_tunnel, under_bridge=under_bridge
        )
        n = lon_a.size
        open_sky = ~(tunnel | bridge)
        best_el = np.full(n, NO_SATELLITE_ELEVATION_DEG)
        best_az = np.full(n, np.nan)
        best_range = np.full(n, np.nan)
        count = np.zeros(n, dtype=np.int32)
        idx = np.flatnonzero(open_sky)
        if idx.size:
            el, az, rng, cnt = self._best(lon_a[idx], lat_a[idx], t_a[idx])
            best_el[idx], best_az[idx], best_range[idx], count[idx] = el, az, rng, cnt
        return _result(
            n,
            best_el,
            best_az,
            best_range,
            count,
            self._sinr_db(best_range),
            self._confidence(t_a),
        )

    def sample(
        self,
        lon: ArrayLike,
        lat: ArrayLike,
        t_s: ArrayLike,
        *,
        in_tunnel: ArrayLike | None = None,
        under_bridge: ArrayLike | None = None,
    ) -> Quality:
        """Quality of this satellite network at points (see :meth:`sample_detail`)."""
        detail = self.sample_detail(lon, lat, t_s, in_tunnel=in_tunnel, under_bridge=under_bridge)
        return detail.quality

    def visible_count(
        self,
        lon: ArrayLike,
        lat: ArrayLike,
        t_s: ArrayLike,
        *,
        in_tunnel: ArrayLike | None = None,
        under_bridge: ArrayLike | None = None,
    ) -> NDArray[np.int32]:
        """Number of usable satellites at points (see :meth:`sample_detail`)."""
        detail = self.sample_detail(lon, lat, t_s, in_tunnel=in_tunnel, under_bridge=under_bridge)
        return detail.visible_count

    # subclasses: best usable satellite (elevation, azimuth, range, count) at open-sky points
    def _best(
        self, lon: FloatArray, lat: FloatArray, t_s: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.int32]]:
        raise NotImplementedError

    def _sinr_db(self, range_km: FloatArray) -> FloatArray:
        raise NotImplementedError

    def _confidence(self, t_s: FloatArray) -> FloatArray:
        return np.full(t_s.shape, self.confidence)


# ---------------------------------------------------------------------------------- GEO


class GeoLayer(_SatelliteLayerBase):
    """A geostationary satellite at ``network.orbital_longitude_deg``.

    Parameters
    ----------
    network : Network
        Kind GEO; its ``min_elevation_deg`` and ``orbital_longitude_deg`` are used.
    horizon : Horizon, optional
        Terrain horizon (default: none, a flat 0 deg horizon).
    sinr_db : float
        SINR at the reference range of 35,786 km (the sub-satellite point).
    confidence : float
        Confidence of every value.

    Examples
    --------
    >>> net = Network(id="geo", kind=NetworkKind.GEO, operator="g", technology="geo",
    ...               latency_ms=600, min_elevation_deg=10, orbital_longitude_deg=9.0)
    >>> q = GeoLayer(net).sample([9.0, 1.5], [0.0, 42.5], 0.0, in_tunnel=[False, True])
    >>> q.elevation_deg.round(1).tolist(), q.sinr_db.round(1).tolist()
    ([90.0, -90.0], [10.0, -30.0])
    >>> len(GeoLayer(net).sample([], [], []))
    0
    """

    def __init__(
        self,
        network: Network,
        horizon: Horizon | None = None,
        *,
        sinr_db: float = DEFAULT_GEO_SINR_DB,
        confidence: float = DEFAULT_GEO_CONFIDENCE,
    ) -> None:
        super().__init__(network, horizon if horizon is not None else Horizon(None), confidence)
        self.orbital_longitude_deg = float(network.orbital_longitude_deg)
        if not -180.0 <= self.orbital_longitude_deg <= 360.0:
            raise InvalidInputError(
                f"network {network.id}: orbital_longitude_deg out of range",
                field="orbital_longitude_deg",
            )
        self.sinr_ref_db = float(sinr_db)

    def _best(
        self, lon: FloatArray, lat: FloatArray, t_s: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.int32]]:
        # a geostationary satellite stands still in the sky: the points decide alone
        return self._recent.get(RecentArrays.key("best", lon, lat), lambda: self._best_at(lon, lat))

    def _best_at(
        self, lon: FloatArray, lat: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.int32]]:
        el, az, range_km = geo_look_angles_deg(lon, lat, self.orbital_longitude_deg)
        floor_deg = np.maximum(
            self.min_elevation_deg,
            horizon_at_azimuth_deg(self._profile_deg(lon, lat), az),
        )
        return el, az, range_km, (el >= floor_deg).astype(np.int32)

    def _sinr_db(self, range_km: FloatArray) -> FloatArray:
        return _fspl_sinr_db(range_km, GEO_ALTITUDE_KM, self.sinr_ref_db)


# ---------------------------------------------------------------------------------- LEO


class LeoLayer(_SatelliteLayerBase):
    """A LEO constellation from TLE element sets (see the module doc for the method).

    Parameters
    ----------
    network : Network
        Kind LEO; its ``min_elevation_deg`` is used.
    satellites : list of skyfield.api.EarthSatellite, or ElementTable
        The constellation (e.g. from :func:`read_tle_file`), or its stored element table
        (:meth:`ElementTable.read`), whose SGP4 models are then made when first needed.
    horizon : Horizon, optional
        Terrain horizon (default: none, a flat 0 deg horizon).
    sinr_zenith_db : float
        SINR at the constellation's median altitude (a satellite at the zenith).
    confidence : float
        Confidence near the TLE epochs.
    region : tuple of float, optional
        ``(lon_min, lat_min, lon_max, lat_max)`` of the map the layer serves. Calls whose
        points all lie inside it take their candidate satellites and exact node states from a
        cache of node intervals kept for the layer's life (:class:`_RegionSky`), and evaluate
        every point of the call at once: the same values as the per-group path, without its
        propagation and per-group overhead for times seen before.

    Examples
    --------
    >>> net = Network(id="leo", kind=NetworkKind.LEO, operator="x", technology="leo",
    ...               latency_ms=40, min_elevation_deg=25)
    >>> layer = LeoLayer(net, [])
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: network leo: a LEO layer needs at least one satellite
    """

    def __init__(
        self,
        network: Network,
        satellites: Sequence[EarthSatellite] | ElementTable,
        horizon: Horizon | None = None,
        *,
        sinr_zenith_db: float = DEFAULT_LEO_SINR_ZENITH_DB,
        confidence: float = DEFAULT_LEO_CONFIDENCE,
        region: tuple[float, float, float, float] | None = None,
    ) -> None:
        super().__init__(network, horizon if horizon is not None else Horizon(None), confidence)
        if not len(satellites):
            raise InvalidInputError(
                f"network {network.id}: a LEO layer needs at least one satellite"
            )
        self._elements: ElementTable | None = None
        if isinstance(satellites, ElementTable):
            self._elements = satellites
            self.epochs_s = satellites.epochs_s
            altitude_km, self._apogee_km = satellites.altitude_km, satellites.apogee_km
        else:  # the cached properties below, filled now
            self.satellites = list(satellites)
            self._models = [s.model for s in self.satellites]
            self.epochs_s, altitude_km, self._apogee_km = _orbit_figures(self._models)
        self.reference_range_km = median(altitude_km)
        self.sinr_ref_db = float(sinr_zenith_db)
        self._warned_stale = False
        self._sky = _RegionSky(self, region) if region is not None else None

    @functools.cached_property
    def satellites(self) -> list[EarthSatellite]:
        """The constellation as skyfield satellites, in file order."""
        names = self.names
        return [_TleSatellite.from_model(n, m) for n, m in zip(names, self._models, strict=True)]

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        """The satellites' names, in file order."""
        if self._elements is not None:
            return self._elements.names
        return tuple(str(s.name) for s in self.satellites)

    @functools.cached_property
    def _models(self) -> list[Satrec]:
        # only a layer made from an element table gets here: the other fills it at once
        assert self._elements is not None
        return self._elements.models()

    @functools.cached_property
    def _array(self) -> SatrecArray:
        return SatrecArray(self._models)

    def _sinr_db(self, range_km: FloatArray) -> FloatArray:
        return _fspl_sinr_db(range_km, self.reference_range_km, self.sinr_ref_db)

    def _confidence(self, t_s: FloatArray) -> FloatArray:
        """Base confidence within 3 days of the median epoch, linearly down to 0.5x at 14."""
        age_days = np.abs(t_s - self.epoch_s) / _DAY_S
        factor = np.clip(1.0 - 0.5 * (age_days - 3.0) / 11.0, 0.5, 1.0)
        return np.asarray(self.confidence * factor)

    @functools.cached_property
    def epoch_s(self) -> float:
        """The elements' epoch: the median epoch of the constellation's TLEs (Unix seconds)."""
        return median(self.epochs_s)

    def _warn_if_stale(self, t_s: FloatArray) -> None:
        # the front doors tell the user once per request (commap.map.comm_map.CommMap
        # .check_elements); here only a debug trace, or a served map would log it every time
        worst_days = float(np.abs(t_s - self.epoch_s).max(initial=0.0)) / _DAY_S
        if worst_days > STALE_TLE_DAYS and not self._warned_stale:
            self._warned_stale = True
            log.debug("%s: times up to %.1f days from the TLE epoch", self.network_id, worst_days)

    def _best(
        self, lon: FloatArray, lat: FloatArray, t_s: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.int32]]:
        self._warn_if_stale(t_s)
        obs = self._observers(lon, lat)
        profile = self._profile_deg(lon, lat)
        gmst = _gmst_rad(t_s, _dut1_s(median(t_s)))
        if self._sky is not None and self._sky.contains(lon, lat):
            return self._best_in_region(self._sky, obs, t_s, gmst, profile)
        n = lon.size
        best = (np.full(n, NO_SATELLITE_ELEVATION_DEG), np.full(n, np.nan), np.full(n, np.nan))
        count = np.zeros(n, dtype=np.int32)
        prop = _Propagator(self._models, self._array)
        every = np.arange(self.epochs_s.size)
        for kc, block in _groups(lon, lat, t_s, COARSE_STEP_S):
            # two-stage prefilter: per coarse interval over all satellites, then per node
            # interval over the survivors; only the final candidates are propagated exactly
            superset = self._reachable(prop, every, kc, COARSE_STEP_S, _cap(obs.ecef_km[block]))
            for k, sub in _groups(lon[block], lat[block], t_s[block], NODE_STEP_S):
                rows = block[sub]
                cand = self._reachable(prop, superset, k, NODE_STEP_S, _cap(obs.ecef_km[rows]))
                if cand.size:
                    self._sample_group(prop, cand, k, rows, obs, t_s, gmst, profile, best, count)
        return best[0], best[1], best[2], count

    def _best_in_region(
        self,
        sky: _RegionSky,
        obs: _Observers,
        t_s: FloatArray,
        gmst: FloatArray,
        profile: FloatArray,
    ) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.int32]]:
        """Best usable satellite at points inside the layer's region, all node intervals at once.

        Each point takes the candidates of its sub-interval (padded with NaN states, never
        usable) and the arithmetic of :meth:`_sample_group`, laid out one coordinate at a time.
        """
        n = t_s.size
        k = np.floor(t_s / NODE_STEP_S).astype(np.int64)
        sub = (t_s - k * NODE_STEP_S) * (_REGION_SPLIT / NODE_STEP_S)
        sub_i = np.clip(sub.astype(np.int64), 0, _REGION_SPLIT - 1)
        keys, inverse = np.unique(k, return_inverse=True)
        intervals = sky.intervals(keys)
        width = max(iv.pick.shape[1] for iv in intervals)
        el, az, rng = np.full(n, NO_SATELLITE_ELEVATION_DEG), np.full(n, np.nan), np.full(n, np.nan)
        count = np.zeros(n, dtype=np.int32)
        if width == 0:
            return el, az, rng, count
        # one table of every interval's states, and per (interval, sub-interval) the columns
        # of its candidates in it, padded with the interval's NaN column
        offsets = np.cumsum([0] + [iv.states.shape[2] for iv in intervals])
        table = np.concatenate([iv.states for iv in intervals], axis=2).reshape(12, -1)
        columns = np.empty((keys.size, _REGION_SPLIT, width), dtype=np.intp)
        columns[...] = (offsets[1:] - 1)[:, None, None]
        for i, iv in enumerate(intervals):
            columns[i, :, : iv.pick.shape[1]] = iv.pick + offsets[i]
        counts = np.stack([iv.counts for iv in intervals])
        inverse = inverse.reshape(-1)
        # where numba is in the process already (a server), the looks are one compiled pass
        fused = loaded()
        # chunks of points in time order: each as wide as its own sub-intervals need
        for chunk in np.array_split(np.arange(n), n * width // _REGION_MAX_PAIRS + 1):
            need = int(counts[inverse[chunk], sub_i[chunk]].max(initial=0))
            s = (t_s[chunk] - k[chunk] * NODE_STEP_S) / NODE_STEP_S
            if fused and chunk.size:
                turn = (np.cos(gmst[chunk]), np.sin(gmst[chunk]))
                span = (int(chunk[0]), int(chunk[-1]) + 1, need)
                looks = _looks_compiled(
                    table, columns, (inverse, sub_i), span, s, turn, obs.ecef_km, obs.up
                )
                best = _best_of_looks_compiled(obs, chunk, *looks, profile, self.min_elevation_deg)
            else:
                cols = columns[inverse[chunk], sub_i[chunk], :need]  # (points, need)
                # np.take keeps the (points, candidates) planes contiguous, as the arithmetic
                # needs
                states = np.take(table, cols.ravel(), axis=1).reshape(4, 3, chunk.size, need)
                best = _best_usable_components(
                    obs, chunk, states, s, gmst[chunk], profile, self.min_elevation_deg
                )
            el[chunk], az[chunk], rng[chunk], count[chunk] = best
        return el, az, rng, count

    def _sample_group(
        self,
        prop: _Propagator,
        cand: NDArray[np.intp],
        k: int,
        rows: NDArray[np.intp],
        obs: _Observers,
        t_s: FloatArray,
        gmst: FloatArray,
        profile: FloatArray,
        best: tuple[FloatArray, FloatArray, FloatArray],
        count: NDArray[np.int32],
    ) -> None:
        """Exact candidates at node interval k, Hermite to each point's time, fill results."""
        r, v = prop.exact(cand, np.array([k, k + 1]) * NODE_STEP_S)
        for chunk in np.array_split(rows, rows.size * cand.size // _MAX_PAIRS + 1):
            s = (t_s[chunk] - k * NODE_STEP_S) / NODE_STEP_S
            r_teme = _hermite(s, r[:, 0], v[:, 0], r[:, 1], v[:, 1], NODE_STEP_S)
            sat_ecef = _teme_to_ecef(r_teme, gmst[chunk][:, None])
            el, az, rng, cnt = _best_usable(obs, chunk, sat_ecef, profile, self.min_elevation_deg)
            best[0][chunk], best[1][chunk], best[2][chunk], count[chunk] = el, az, rng, cnt

    def _reachable(
        self,
        prop: _Propagator,
        sats: NDArray[np.intp],
        k: int,
        step_s: float,
        cap: tuple[FloatArray, float],
    ) -> NDArray[np.intp]:
        """Those of ``sats`` that may rise above the minimum elevation over a sky cap.

        ``cap`` (unit centre, angular radius in rad, see :func:`_cap`) holds the points, whose
        times lie in ``[k * step_s, (k + 1) * step_s]``. A satellite at radius
        ``r`` (at most its apogee radius) is above elevation ``e`` for an observer at radius
        ``R`` only within the earth-central angle ``acos(R cos(e) / r) - e`` of it; during the
        interval it moves at most ``(|v| / r + earth rotation) * step / 2`` from its midpoint
        position (itself known to the coarse interpolation's error), and the points lie
        within the radius of their cap around its centre.
        """
        t_mid = (k + 0.5) * step_s
        mid_teme, speed, error_km = prop.approx(t_mid, sats)
        # UT1 - UTC (< 0.9 s, 0.004 deg of earth rotation) does not matter for this bound
        mid = _teme_to_ecef(mid_teme, _gmst_rad(np.array(t_mid), 0.0))
        r_mid = np.linalg.norm(mid, axis=1)
        e_min = math.radians(self.min_elevation_deg) - _PREFILTER_MARGIN_RAD
        r_max = self._apogee_km[sats]
        with np.errstate(invalid="ignore"):
            reach = (
                np.arccos(np.clip(_MIN_EARTH_RADIUS_KM * math.cos(e_min) / r_max, -1, 1)) - e_min
            )
            motion = (speed / r_mid + EARTH_ROTATION_RAD_S) * step_s / 2.0 + error_km / r_mid
            centre, radius = cap
            bound = np.minimum(reach + motion + radius + _PREFILTER_MARGIN_RAD, np.pi)
            cos_sep = mid @ centre / r_mid
            return sats[cos_sep >= np.cos(bound)]  # NaN (decayed) compares False


@dataclass(frozen=True)
class _Interval:
    """A region's candidate satellites over one node interval and their exact SGP4 states
    (TEME km and km/s, shape (candidates, 3)) at the interval's two nodes."""

    sats: NDArray[np.intp]
    states: FloatArray  # (r0, v0, r1, v1) x (x, y, z) x (candidates + 1): a last NaN column
    pick: NDArray[np.intp]  # (_REGION_SPLIT, width): each sub-interval's candidate columns,
    # padded with the NaN column

    @functools.cached_property
    def counts(self) -> NDArray[np.intp]:
        """Candidates of each sub-interval (the columns of ``pick`` before the padding)."""
        return np.asarray((self.pick < self.sats.size).sum(axis=1), dtype=np.intp)


class _RegionSky:
    """A LEO layer's candidates over a fixed region, per node interval, kept across calls.

    Node intervals are absolute (``[k, k + 1] * NODE_STEP_S`` Unix seconds), so every call
    whose times fall in an interval seen before (route alternatives, the same departure planned
    again, a fleet planning around now) reuses its candidates and their exact node states. The
    candidates pass the same two-stage prefilter as the per-group path, for a sky cap holding
    the whole region instead of the group's points: a superset of every group's candidates,
    whose extra satellites lie below the minimum elevation at every point and change no value.
    Least recently used intervals are dropped beyond ``_REGION_INTERVALS``.
    """

    def __init__(self, layer: LeoLayer, bbox: tuple[float, float, float, float]) -> None:
        self._layer = layer
        self.bbox = tuple(float(b) for b in bbox)
        lon_min, lat_min, lon_max, lat_max = self.bbox
        lon, lat = np.meshgrid(
            np.linspace(lon_min, lon_max, _REGION_GRID),
            np.linspace(lat_min, lat_max, _REGION_GRID),
        )
        corners = _Observers.at(lon.ravel(), lat.ravel(), np.zeros(lon.size)).ecef_km
        centre, radius = _cap(corners)
        self.cap = (centre, radius + _REGION_CAP_MARGIN_RAD)
        self._ratio = round(COARSE_STEP_S / NODE_STEP_S)  # node intervals per coarse one
        self._supersets: OrderedDict[int, NDArray[np.intp]] = OrderedDict()
        self._intervals: OrderedDict[int, _Interval] = OrderedDict()
        self._lock = threading.Lock()  # the server samples one map from several threads

    @functools.cached_property
    def _prop(self) -> _Propagator:
        # made on the first interval (under the lock): a layer parses its elements when used
        return _Propagator(self._layer._models, self._layer._array)

    def contains(self, lon: FloatArray, lat: FloatArray) -> bool:
        """True when every point lies inside the region."""
        lon_min, lat_min, lon_max, lat_max = self.bbox
        inside = (lon >= lon_min) & (lon <= lon_max) & (lat >= lat_min) & (lat <= lat_max)
        return bool(inside.all())

    def intervals(self, keys: NDArray[np.int64]) -> list[_Interval]:
        """The intervals ``keys`` (ascending), computed where not kept yet."""
        with self._lock:
            out = []
            for key in keys.tolist():
                interval = self._intervals.get(key)
                if interval is None:
                    interval = self._intervals[key] = self._interval(key)
                self._intervals.move_to_end(key)
                out.append(interval)
            while len(self._intervals) > _REGION_INTERVALS:
                self._intervals.popitem(last=False)
            return out

    def _superset(self, kc: int) -> NDArray[np.intp]:
        """Satellites that may reach the region's sky during coarse interval ``kc``."""
        superset = self._supersets.get(kc)
        if superset is None:
            every = np.arange(self._layer.epochs_s.size)
            superset = self._layer._reachable(self._prop, every, kc, COARSE_STEP_S, self.cap)
            self._supersets[kc] = superset
            while len(self._supersets) > _REGION_INTERVALS // self._ratio:
                self._supersets.popitem(last=False)
        return superset

    def _interval(self, k: int) -> _Interval:
        # node interval k lies inside coarse interval k // ratio (900 s = 10 x 90 s)
        superset = self._superset(k // self._ratio)
        sats = self._layer._reachable(self._prop, superset, k, NODE_STEP_S, self.cap)
        states = np.full((4, 3, sats.size + 1), np.nan)
        if sats.size == 0:
            return _Interval(sats, states, np.zeros((_REGION_SPLIT, 0), dtype=np.intp))
        r, v = self._prop.exact(sats, np.array([k, k + 1]) * NODE_STEP_S)
        r0, v0, r1, v1 = r[:, 0], v[:, 0], r[:, 1], v[:, 1]
        for j, state in enumerate((r0, v0, r1, v1)):
            states[j, :, :-1] = state.T
        within = self._within(k, sats, r0, v0, r1, v1)
        pick = np.full((_REGION_SPLIT, int(within.sum(axis=1).max())), sats.size, dtype=np.intp)
        for j in range(_REGION_SPLIT):
            columns = np.flatnonzero(within[j])
            pick[j, : columns.size] = columns
        return _Interval(sats, states, pick)

    def _within(
        self,
        k: int,
        sats: NDArray[np.intp],
        r0: FloatArray,
        v0: FloatArray,
        r1: FloatArray,
        v1: FloatArray,
    ) -> NDArray[np.bool_]:
        """Which candidates may rise above the minimum elevation in each sub-interval.

        The bound of :meth:`LeoLayer._reachable` on the interpolated positions themselves (the
        ones the points are evaluated on) at each sub-interval's middle, so tighter: the
        motion over half a sub-interval (0.25 deg instead of the node interval's 3 deg), the
        satellite's own radius (plus 1 km: a near-circular orbit climbs metres in seconds)
        instead of its apogee's, and margins for what the spherical bound leaves out: the
        geodetic vertical (up to 0.19 deg off the geocentric one) and UT1 - UTC (under 0.9 s,
        0.004 deg of earth rotation). Each point is then evaluated against about a third more
        satellites than it sees, instead of about three times as many.
        """
        half_s = NODE_STEP_S / _REGION_SPLIT / 2.0
        s = np.arange(_REGION_SPLIT, dtype=np.float64) * (2.0 * half_s / NODE_STEP_S)
        s += half_s / NODE_STEP_S
        mid_teme = _hermite(s, r0, v0, r1, v1, NODE_STEP_S)  # (sub-intervals, candidates, 3)
        mid = _teme_to_ecef(mid_teme, _gmst_rad(k * NODE_STEP_S + s * NODE_STEP_S, 0.0)[:, None])
        r_mid = np.linalg.norm(mid, axis=2)
        # the interpolant's speed stays within a few per mille of its end speeds: 1 % is ample
        speed = 1.01 * np.maximum(np.linalg.norm(v0, axis=1), np.linalg.norm(v1, axis=1))
        e_min = math.radians(self._layer.min_elevation_deg - _SUB_ELEVATION_MARGIN_DEG)
        centre, radius = self.cap
        with np.errstate(invalid="ignore"):
            cos_reach = _MIN_EARTH_RADIUS_KM * math.cos(e_min) / (r_mid + 1.0)
            reach = np.arccos(np.clip(cos_reach, -1, 1)) - e_min
            motion = (speed / r_mid + EARTH_ROTATION_RAD_S) * half_s
            bound = np.minimum(reach + motion + radius + _SUB_ANGLE_MARGIN_RAD, np.pi)
            return np.asarray(mid @ centre / r_mid >= np.cos(bound))


def _propagate(array: SatrecArray, t_s: FloatArray) -> tuple[FloatArray, FloatArray]:
    """SGP4 TEME positions (km) and velocities (km/s), shape (satellites, times, 3).

    Decayed or diverged element sets (SGP4 error codes) come back as NaN.
    """
    whole, frac = _jd_split(np.asarray(t_s, dtype=np.float64))
    err, r, v = array.sgp4(whole, frac)
    bad = err != 0
    r[bad] = np.nan
    v[bad] = np.nan
    return r, v


class _Propagator:
    """A constellation's SGP4: every satellite on a coarse time grid, candidates exactly."""

    def __init__(self, models: list[Satrec], array: SatrecArray) -> None:
        self._models = models
        self._array = array
        self._coarse: dict[int, tuple[FloatArray, FloatArray]] = {}

    def _node(self, kc: int) -> tuple[FloatArray, FloatArray]:
        if kc not in self._coarse:
            # groups come in time order; a region's propagator also serves later calls
            for old in [j for j in self._coarse if not kc - 1 <= j <= kc + 1]:
                del self._coarse[old]
            r, v = _propagate(self._array, np.array([kc * COARSE_STEP_S]))
            self._coarse[kc] = (r[:, 0], v[:, 0])
        return self._coarse[kc]

    def approx(
        self, t_s: float, sats: NDArray[np.intp]
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Satellites ``sats`` at ``t_s`` by Hermite interpolation of the coarse grid.

        Returns TEME positions (km), speeds (km/s) and an error bound (km): the cubic Hermite
        remainder ``step**4 / 384 * max|d4x/dt4|`` with ``|d4x/dt4| = r * (v / r)**4`` on a
        circular orbit, doubled for perturbations (about 35 km for Starlink at 900 s).
        """
        kc = math.floor(t_s / COARSE_STEP_S)
        (r0, v0), (r1, v1) = self._node(kc), self._node(kc + 1)
        r0, v0, r1, v1 = r0[sats], v0[sats], r1[sats], v1[sats]
        s = np.array([(t_s - kc * COARSE_STEP_S) / COARSE_STEP_S])
        pos = _hermite(s, r0, v0, r1, v1, COARSE_STEP_S)[0]
        speed = np.maximum(np.linalg.norm(v0, axis=1), np.linalg.norm(v1, axis=1))
        radius = np.linalg.norm(r0, axis=1)
        error_km = 2.0 * COARSE_STEP_S**4 / 384.0 * radius * (speed / radius) ** 4
        return pos, speed, error_km

    def exact(self, sats: NDArray[np.intp], t_s: FloatArray) -> tuple[FloatArray, FloatArray]:
        """SGP4 of the satellites ``sats`` at times ``t_s``: (satellites, times, 3) each."""
        return _propagate(SatrecArray([self._models[i] for i in sats]), t_s)


def _groups(
    lon: FloatArray, lat: FloatArray, t_s: FloatArray, step_s: float
) -> list[tuple[int, NDArray[np.intp]]]:
    """Point indices grouped by time interval ``k`` (of ``step_s``) and 5 deg cell, by time."""
    k = np.floor(t_s / step_s).astype(np.int64)
    cell = np.floor((lat + 90.0) / CELL_DEG) * 1000 + np.floor((lon + 180.0) / CELL_DEG)
    keys = np.stack([k, cell.astype(np.int64)], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(uniq)))[:-1]
    return [(int(u[0]), g) for u, g in zip(uniq, np.split(order, bounds), strict=True)]


def _cap(ecef_km: FloatArray) -> tuple[FloatArray, float]:
    """Unit centre and angular radius (rad) of a spherical cap holding the points."""
    unit = ecef_km / np.linalg.norm(ecef_km, axis=1, keepdims=True)
    centre = unit.sum(axis=0)
    centre /= np.linalg.norm(centre)
    radius = float(np.arccos(np.clip(unit @ centre, -1.0, 1.0)).max())
    return centre, radius


def _hermite(
    s: FloatArray, r0: FloatArray, v0: FloatArray, r1: FloatArray, v1: FloatArray, step_s: float
) -> FloatArray:
    """Cubic Hermite positions (times, satellites, 3) at interval fractions ``s``."""
    s2, s3 = s * s, s * s * s
    h00 = (2 * s3 - 3 * s2 + 1)[:, None, None]
    h10 = ((s3 - 2 * s2 + s) * step_s)[:, None, None]
    h01 = (3 * s2 - 2 * s3)[:, None, None]
    h11 = ((s3 - s2) * step_s)[:, None, None]
    return np.asarray(h00 * r0 + h10 * v0 + h01 * r1 + h11 * v1)


def _best_usable(
    obs: _Observers,
    rows: NDArray[np.intp],
    sat_ecef: FloatArray,
    profile: FloatArray,
    min_elevation_deg: float,
) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.int32]]:
    """Best usable satellite per point from (points, candidates, 3) positions."""
    n_p, n_c = sat_ecef.shape[:2]
    count = np.zeros(n_p, dtype=np.int32)
    if n_c == 0:
        nan = np.full(n_p, np.nan)
        return np.full(n_p, NO_SATELLITE_ELEVATION_DEG), nan, nan.copy(), count
    rho = sat_ecef - obs.ecef_km[rows][:, None, :]
    range_km = np.sqrt(np.einsum("pcj,pcj->pc", rho, rho))
    el = np.degrees(np.arcsin(np.einsum("pcj,pj->pc", rho, obs.up[rows]) / range_km))
    # the horizon only matters for satellites above the minimum: look up those few
    p_idx, c_idx = np.nonzero(el >= min_elevation_deg)
    vec = rho[p_idx, c_idx]
    at = rows[p_idx]
    az = np.degrees(
        np.arctan2(
            np.einsum("ij,ij->i", vec, obs.east[at]), np.einsum("ij,ij->i", vec, obs.north[at])
        )
    )
    az = np.mod(az, 360.0)
    ok = el[p_idx, c_idx] >= horizon_at_azimuth_deg(profile, az, rows=at)
    usable_el = np.full((n_p, n_c), -np.inf)
    usable_el[p_idx[ok], c_idx[ok]] = el[p_idx[ok], c_idx[ok]]
    az_full = np.full((n_p, n_c), np.nan)
    az_full[p_idx, c_idx] = az
    best = np.argmax(usable_el, axis=1)
    count += np.bincount(p_idx[ok], minlength=n_p).astype(np.int32)
    ar = np.arange(n_p)
    return el[ar, best], az_full[ar, best], range_km[ar, best], count


def _best_usable_components(
    obs: _Observers,
    rows: NDArray[np.intp],
    states: FloatArray,
    s: FloatArray,
    gmst_rad: FloatArray,
    profile: FloatArray,
    min_elevation_deg: float,
) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.int32]]:
    """:func:`_hermite`, :func:`_teme_to_ecef` and :func:`_best_usable` on states laid out
    (r0, v0, r1, v1) x (x, y, z) x (points, candidates): the same operations in the same
    order, on contiguous (points, candidates) arrays instead of 3-vectors."""
    s2, s3 = s * s, s * s * s
    h00 = (2 * s3 - 3 * s2 + 1)[:, None]
    h10 = ((s3 - 2 * s2 + s) * NODE_STEP_S)[:, None]
    h01 = (3 * s2 - 2 * s3)[:, None]
    h11 = ((s3 - s2) * NODE_STEP_S)[:, None]
    x, y, z = (
        h00 * states[0, j] + h10 * states[1, j] + h01 * states[2, j] + h11 * states[3, j]
        for j in range(3)
    )
    c, sn = np.cos(gmst_rad)[:, None], np.sin(gmst_rad)[:, None]
    pos = obs.ecef_km[rows]
    rho = (c * x + sn * y - pos[:, 0:1], c * y - sn * x - pos[:, 1:2], z - pos[:, 2:3])
    range_km = np.sqrt(rho[0] * rho[0] + rho[1] * rho[1] + rho[2] * rho[2])
    up = obs.up[rows]
    dot = rho[0] * up[:, 0:1] + rho[1] * up[:, 1:2] + rho[2] * up[:, 2:3]
    return _best_of_looks(obs, rows, rho, range_km, dot / range_km, profile, min_elevation_deg)


@compiled
def _looks_compiled(
    table: FloatArray,
    columns: NDArray[np.intp],
    at: tuple[NDArray[np.intp], NDArray[np.intp]],
    span: tuple[int, int, int],
    s: FloatArray,
    turn: tuple[FloatArray, FloatArray],
    ecef_km: FloatArray,
    up: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The looks of :func:`_best_usable_components` in one compiled pass, without gathering
    the candidates' states first: the same operations in the same order (no fused
    multiply-adds), so the same values to the bit.

    ``table`` (12, states) and ``columns`` (intervals, sub-intervals, width) are those of
    :meth:`LeoLayer._best_in_region`, ``at`` each point's interval and sub-interval,
    ``span`` the points ``lo:hi`` and the candidates ``need`` to look at, ``s`` the points'
    interval fractions, ``turn`` cos and sin of their GMST. Returns the looks
    ``rho (3, points, need)``, their ``range_km`` and the sine of their elevation.
    """
    inverse, sub_i = at
    lo, hi, need = span
    cos_g, sin_g = turn
    n = hi - lo
    rho = np.empty((3, n, need))
    range_km = np.empty((n, need))
    sine = np.empty((n, need))
    for p in range(n):
        g = lo + p
        sp = s[p]
        s2 = sp * sp
        s3 = sp * sp * sp
        h00 = 2 * s3 - 3 * s2 + 1
        h10 = (s3 - 2 * s2 + sp) * NODE_STEP_S
        h01 = 3 * s2 - 2 * s3
        h11 = (s3 - s2) * NODE_STEP_S
        c, sn = cos_g[p], sin_g[p]
        for q in range(need):
            col = columns[inverse[g], sub_i[g], q]
            x = (
                h00 * table[0, col]
                + h10 * table[3, col]
                + h01 * table[6, col]
                + h11 * table[9, col]
            )
            y = (
                h00 * table[1, col]
                + h10 * table[4, col]
                + h01 * table[7, col]
                + h11 * table[10, col]
            )
            z = (
                h00 * table[2, col]
                + h10 * table[5, col]
                + h01 * table[8, col]
                + h11 * table[11, col]
            )
            r0 = c * x + sn * y - ecef_km[g, 0]
            r1 = c * y - sn * x - ecef_km[g, 1]
            r2 = z - ecef_km[g, 2]
            rng = np.sqrt(r0 * r0 + r1 * r1 + r2 * r2)
            rho[0, p, q], rho[1, p, q], rho[2, p, q] = r0, r1, r2
            range_km[p, q] = rng
            sine[p, q] = (r0 * up[g, 0] + r1 * up[g, 1] + r2 * up[g, 2]) / rng
    return rho, range_km, sine


def warm_up_kernels() -> None:
    """Load (or, in a fresh install, compile) the compiled pass of the LEO layers now.

    Examples
    --------
    >>> warm_up_kernels()
    """
    table, columns = np.zeros((12, 1)), np.zeros((1, 1, 1), dtype=np.intp)
    at = (np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
    turn = (np.ones(1), np.zeros(1))
    observer = np.ones((1, 3))
    observer.flags.writeable = False  # as the layers keep them (numba types read-only apart)
    rho, range_km, _ = _looks_compiled(
        table, columns, at, (0, 1, 1), np.zeros(1), turn, observer, observer
    )
    el, frame = np.zeros((1, 1)), (observer, observer)
    p_idx, c_idx, _, _ = _horizon_looks_compiled(el, 25.0, np.ones(1), rho, frame, 0)
    looked = (p_idx, c_idx, np.zeros(p_idx.size, dtype=np.bool_))
    _best_looks_compiled(el, 25.0, looked, range_km, rho, frame, 0)


def _best_of_looks(
    obs: _Observers,
    rows: NDArray[np.intp],
    rho: Sequence[FloatArray] | FloatArray,
    range_km: FloatArray,
    sine: FloatArray,
    profile: FloatArray,
    min_elevation_deg: float,
) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.int32]]:
    """Best usable satellite per point from its looks (x, y, z) x (points, candidates) at the
    candidates, their ranges and the sines of their elevations."""
    n_p = range_km.shape[0]
    el = np.degrees(np.arcsin(sine))
    # the horizon only matters for satellites above the minimum and below the highest
    # horizon around the point (any horizon interpolated from its profile is lower): look up
    # those few
    usable = el >= min_elevation_deg
    p_idx, c_idx = np.nonzero(usable & (el < profile[rows].max(axis=1)[:, None]))
    az = _azimuth_deg(obs, rows, rho, p_idx, c_idx)
    usable[p_idx, c_idx] = el[p_idx, c_idx] >= horizon_at_azimuth_deg(profile, az, rows=rows[p_idx])
    usable_el = np.where(usable, el, -np.inf)
    best = np.argmax(usable_el, axis=1)
    count = usable.sum(axis=1, dtype=np.int32)
    ar = np.arange(n_p)
    best_az = np.full(n_p, np.nan)
    hit = np.flatnonzero(count)  # azimuths only where a satellite is up
    best_az[hit] = _azimuth_deg(obs, rows, rho, hit, best[hit])
    return el[ar, best], best_az, range_km[ar, best], count


def _best_of_looks_compiled(
    obs: _Observers,
    rows: NDArray[np.intp],
    rho: FloatArray,
    range_km: FloatArray,
    sine: FloatArray,
    profile: FloatArray,
    min_elevation_deg: float,
) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.int32]]:
    """:func:`_best_of_looks` with its per-look loops compiled (``rows`` consecutive): numpy
    still takes the arc sines and tangents (its own vectorised functions, whose last bits
    libm's do not always match), so the values are the same to the bit."""
    el = np.degrees(np.arcsin(sine))
    lo, frame = int(rows[0]) if rows.size else 0, (obs.east, obs.north)
    peak = profile[rows].max(axis=1)  # no horizon around a point is higher
    p_idx, c_idx, east, north = _horizon_looks_compiled(el, min_elevation_deg, peak, rho, frame, lo)
    az = np.mod(np.degrees(np.arctan2(east, north)), 360.0)
    ok = el[p_idx, c_idx] >= horizon_at_azimuth_deg(profile, az, rows=rows[p_idx])
    best_el, best_range, count, east, north = _best_looks_compiled(
        el, min_elevation_deg, (p_idx, c_idx, ok), range_km, rho, frame, lo
    )
    best_az = np.full(count.size, np.nan)
    hit = np.flatnonzero(count)  # azimuths only where a satellite is up
    best_az[hit] = np.mod(np.degrees(np.arctan2(east[hit], north[hit])), 360.0)
    return best_el, best_az, best_range, count


@compiled
def _horizon_looks_compiled(
    el: FloatArray,
    min_elevation_deg: float,
    peak: FloatArray,
    rho: FloatArray,
    frame: tuple[FloatArray, FloatArray],
    lo: int,
) -> tuple[NDArray[np.intp], NDArray[np.intp], FloatArray, FloatArray]:
    """The looks whose elevation is at least the minimum and below the point's highest
    horizon, in ``np.nonzero`` order, and their east and north components (as
    :func:`_azimuth_deg` computes them; the observers' frame from row ``lo``)."""
    east, north = frame
    n, need = el.shape
    p_idx = np.empty(n * need, dtype=np.intp)
    c_idx = np.empty(n * need, dtype=np.intp)
    e_dot = np.empty(n * need)
    n_dot = np.empty(n * need)
    m = 0
    for p in range(n):
        g = lo + p
        for q in range(need):
            e = el[p, q]
            if e >= min_elevation_deg and e < peak[p]:
                v0, v1, v2 = rho[0, p, q], rho[1, p, q], rho[2, p, q]
                e_dot[m] = v0 * east[g, 0] + v1 * east[g, 1] + v2 * east[g, 2]
                n_dot[m] = v0 * north[g, 0] + v1 * north[g, 1] + v2 * north[g, 2]
                p_idx[m], c_idx[m] = p, q
                m += 1
    return p_idx[:m].copy(), c_idx[:m].copy(), e_dot[:m].copy(), n_dot[:m].copy()


@compiled
def _best_looks_compiled(
    el: FloatArray,
    min_elevation_deg: float,
    looked: tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.bool_]],
    range_km: FloatArray,
    rho: FloatArray,
    frame: tuple[FloatArray, FloatArray],
    lo: int,
) -> tuple[FloatArray, FloatArray, NDArray[np.int32], FloatArray, FloatArray]:
    """Per point: the highest usable look (the first of equals, as ``np.argmax``), its
    range, the usable count and the best look's east and north components. A look is usable
    at or above the minimum elevation, and for the looks in ``looked`` (point, candidate,
    above its horizon) where it clears the horizon."""
    p_idx, c_idx, ok = looked
    east, north = frame
    n, need = el.shape
    usable = np.empty((n, need), dtype=np.bool_)
    for p in range(n):
        for q in range(need):
            usable[p, q] = el[p, q] >= min_elevation_deg
    for i in range(p_idx.shape[0]):
        usable[p_idx[i], c_idx[i]] = ok[i]
    best_el = np.empty(n)
    best_range = np.empty(n)
    count = np.zeros(n, dtype=np.int32)
    e_dot = np.full(n, np.nan)
    n_dot = np.full(n, np.nan)
    for p in range(n):
        best, top = 0, -np.inf
        for q in range(need):
            if usable[p, q]:
                count[p] += 1
                if el[p, q] > top:
                    best, top = q, el[p, q]
        best_el[p], best_range[p] = el[p, best], range_km[p, best]
        if count[p] > 0:
            g = lo + p
            v0, v1, v2 = rho[0, p, best], rho[1, p, best], rho[2, p, best]
            e_dot[p] = v0 * east[g, 0] + v1 * east[g, 1] + v2 * east[g, 2]
            n_dot[p] = v0 * north[g, 0] + v1 * north[g, 1] + v2 * north[g, 2]
    return best_el, best_range, count, e_dot, n_dot


def _azimuth_deg(
    obs: _Observers,
    rows: NDArray[np.intp],
    rho: Sequence[FloatArray] | FloatArray,
    p_idx: NDArray[np.intp],
    c_idx: NDArray[np.intp],
) -> FloatArray:
    """Azimuths of the looks ``rho[:, p_idx, c_idx]`` (as :func:`_best_usable` computes them)."""
    at = rows[p_idx]
    vec = [r[p_idx, c_idx] for r in rho]
    east, north = obs.east[at], obs.north[at]
    az = np.degrees(
        np.arctan2(
            vec[0] * east[:, 0] + vec[1] * east[:, 1] + vec[2] * east[:, 2],
            vec[0] * north[:, 0] + vec[1] * north[:, 1] + vec[2] * north[:, 2],
        )
    )
    return np.asarray(np.mod(az, 360.0))


# ---------------------------------------------------------------------------------- registry


_HORIZON_FILE = "satellite/horizon.npz"


@functools.lru_cache(maxsize=4)
def _cached_grid(path: str, mtime_ns: int) -> HorizonGrid:
    """One in-memory copy of a map's horizon grid for all its satellite layers."""
    del mtime_ns  # part of the cache key only: a rebuilt file is read again
    return HorizonGrid.load(path)


def _horizon_for(ctx: LayerContext, spec: Mapping[str, Any]) -> Horizon:
    name = str(spec.get("horizon_file") or "")
    if not name:
        return Horizon(ctx.terrain)
    path = ctx.built_dir / name
    try:
        mtime_ns = path.stat().st_mtime_ns
    except OSError as exc:
        raise InvalidInputError(
            f"{path}: horizon grid missing ({exc})", field="layer.horizon_file"
        ) from exc
    return Horizon(ctx.terrain, _cached_grid(str(path), mtime_ns))


def _prepare_horizon(ctx: LayerContext) -> str:
    """Compute the map's horizon grid once (shared by every satellite layer); its file name."""
    if ctx.terrain is None:
        return ""
    path = ctx.built_dir / _HORIZON_FILE
    if path.exists():
        try:
            lon_min, lat_min, lon_max, lat_max = HorizonGrid.load(path).bbox
            b, tol = ctx.bbox, 1e-6  # node positions carry floating-point noise
            covered = lon_min <= b[0] + tol and lat_min <= b[1] + tol
            if covered and lon_max >= b[2] - tol and lat_max >= b[3] - tol:
                return _HORIZON_FILE
        except InvalidInputError:
            log.warning("%s: unreadable horizon grid, recomputing", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = compute_horizon_grid(ctx.terrain, ctx.bbox)
    with atomic_path(path, keep_suffix=True) as tmp:  # numpy appends .npz to other names
        grid.save(tmp)
    return _HORIZON_FILE


def _tle_source(network: Network, spec: Mapping[str, Any], ctx: LayerContext) -> Path:
    name = str(spec.get("tle_file") or network.tle_file or "")
    if not name:
        raise InvalidInputError(
            f"network {network.id}: a LEO layer needs layer.tle_file", field="layer.tle_file"
        )
    path = ctx.source_dir / name
    if not path.is_file():
        raise InvalidInputError(
            f"network {network.id}: TLE file {path} not found", field="layer.tle_file"
        )
    return path


def prepare_layer(network: Network, spec: Mapping[str, Any], ctx: LayerContext) -> dict[str, Any]:
    """Build time: validate and copy the TLE file, compute the shared horizon grid.

    Returns
    -------
    dict
        The spec as built: ``tle_file`` and ``elements_file`` (LEO, relative to
        ``ctx.built_dir``: the TLE file and its :class:`ElementTable`), ``horizon_file``
        (``""`` without terrain) and the other keys unchanged.
    """
    kind = _kind(network, spec)
    out = dict(spec)
    if kind == "leo":
        source = _tle_source(network, spec, ctx)
        elements = ElementTable.from_tle_file(source)  # fail at build time, not when served
        out["satellites"] = len(elements)
        target = ctx.built_dir / "satellite" / f"{network.id}.tle"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        out["tle_file"] = target.relative_to(ctx.built_dir).as_posix()
        out["elements_file"] = write_elements_beside(elements, target, ctx.built_dir)
    else:
        out["orbital_longitude_deg"] = network.orbital_longitude_deg
    out["horizon_file"] = _prepare_horizon(ctx)
    return out


def load_layer(network: Network, spec: Mapping[str, Any], ctx: LayerContext) -> LeoLayer | GeoLayer:
    """Load time: the layer of ``network`` from a prepared spec (see :func:`prepare_layer`)."""
    kind = _kind(network, spec)
    horizon = _horizon_for(ctx, spec)
    if kind == "geo":
        return GeoLayer(
            network,
            horizon,
            sinr_db=layer_number(network, spec, "sinr_db", DEFAULT_GEO_SINR_DB),
            confidence=layer_number(network, spec, "confidence", DEFAULT_GEO_CONFIDENCE),
        )
    sinr_zenith_db = layer_number(network, spec, "sinr_zenith_db", DEFAULT_LEO_SINR_ZENITH_DB)
    confidence = layer_number(network, spec, "confidence", DEFAULT_LEO_CONFIDENCE)
    return LeoLayer(
        network,
        _built_elements(network, spec, ctx),
        horizon,
        sinr_zenith_db=sinr_zenith_db,
        confidence=confidence,
        region=ctx.bbox,
    )


def write_elements_beside(elements: ElementTable, tle_path: Path, built_dir: Path) -> str:
    """Store ``elements`` beside their TLE file in a built map; the stored file's name
    (relative to ``built_dir``, as the layer spec's ``elements_file``)."""
    target = tle_path.with_name(tle_path.stem + ELEMENTS_SUFFIX)
    elements.write(target)
    return target.relative_to(built_dir).as_posix()


def _built_elements(
    network: Network, spec: Mapping[str, Any], ctx: LayerContext
) -> ElementTable | list[EarthSatellite]:
    """A built LEO layer's elements: its stored table, or for a map built before tables were
    stored (no ``elements_file``), its TLE file parsed."""
    stored = str(spec.get("elements_file") or "")
    if stored:
        return ElementTable.read(ctx.built_dir / stored)
    path = ctx.built_dir / str(spec.get("tle_file") or "")
    if not spec.get("tle_file") or not path.is_file():
        raise InvalidInputError(
            f"network {network.id}: prepared TLE file {path} not found", field="layer.tle_file"
        )
    return read_tle_file(path)


def _kind(network: Network, spec: Mapping[str, Any]) -> str:
    kind = str(spec.get("type", ""))
    expected = {NetworkKind.LEO: "leo", NetworkKind.GEO: "geo"}.get(network.kind)
    if kind not in ("leo", "geo") or kind != expected:
        raise InvalidInputError(
            f"network {network.id} of kind {network.kind.value!r} cannot use a "
            f"satellite layer of type {kind!r}",
            field="layer.type",
        )
    return kind
