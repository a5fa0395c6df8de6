"""SRTM terrain: elevation lookups and profiles from ``.hgt`` tiles (plain or zipped).

SRTM3 tiles hold 1201 x 1201 big-endian int16 heights (metres above the EGM96 geoid); row 0
is the northern edge, column 0 the western edge, spacing 1/1200 deg. Voids (-32768) are filled
with the mean of the valid neighbours' tile mean so that profiles stay finite.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from commap.errors import InvalidInputError

__all__ = ["HgtTile", "Terrain", "load_hgt", "srtm_tile_names"]

log = logging.getLogger(__name__)

_VOID = -32768
_NAME = re.compile(r"([NS])(\d{2})([EW])(\d{3})", re.IGNORECASE)
# guards the first read of on-demand tiles (a served map is sampled from several threads); a
# module lock keeps Terrain objects picklable
_READ_LOCK = threading.Lock()


def srtm_tile_names(bbox: tuple[float, float, float, float]) -> list[str]:
    """Names of the SRTM tiles (``N42E001.hgt``) covering ``(lon_min, lat_min, lon_max, lat_max)``.

    A tile is named after its south-west corner; a box edge on a whole degree needs no tile
    beyond it.

    Examples
    --------
    >>> srtm_tile_names((1.40, 42.38, 1.80, 42.68))
    ['N42E001.hgt']
    >>> srtm_tile_names((-0.5, -1.0, 0.5, 0.0))
    ['S01W001.hgt', 'S01E000.hgt']
    >>> srtm_tile_names((2.0, 42.0, 2.0, 42.0))  # a degenerate box still has its tile
    ['N42E002.hgt']
    """
    lon0, lat0, lon1, lat1 = bbox

    def cells(low: float, high: float) -> range:
        first = math.floor(low)
        last = max(math.ceil(high) - 1, first)
        return range(first, last + 1)

    return [
        f"{'N' if lat >= 0 else 'S'}{abs(lat):02d}{'E' if lon >= 0 else 'W'}{abs(lon):03d}.hgt"
        for lat in cells(lat0, lat1)
        for lon in cells(lon0, lon1)
    ]


@dataclass(frozen=True)
class HgtTile:
    """One SRTM tile: heights in metres, south-west corner, samples per degree."""

    lat0: int
    lon0: int
    heights_m: NDArray[np.float32]  # (n, n), row 0 = north edge

    @property
    def samples_per_deg(self) -> int:
        """Samples per degree (1200 for SRTM3, 3600 for SRTM1)."""
        return int(self.heights_m.shape[0]) - 1


def load_hgt(path: str | Path) -> HgtTile:
    """Read one ``.hgt`` or ``.hgt.zip`` tile.

    Raises
    ------
    InvalidInputError
        If the file name carries no tile corner or the data are not a square SRTM grid.
    """
    path = Path(path)
    match = _NAME.search(path.name)
    if match is None:
        raise InvalidInputError(f"{path}: terrain tile name must look like N42E001.hgt(.zip)")
    lat0 = int(match.group(2)) * (1 if match.group(1).upper() == "N" else -1)
    lon0 = int(match.group(4)) * (1 if match.group(3).upper() == "E" else -1)
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.lower().endswith(".hgt")]
                if not names:
                    raise InvalidInputError(f"{path}: zip holds no .hgt file")
                raw = archive.read(names[0])
        else:
            raw = path.read_bytes()
    except (OSError, zipfile.BadZipFile) as exc:
        raise InvalidInputError(f"{path}: cannot read terrain tile ({exc})") from exc
    n = round((len(raw) // 2) ** 0.5)
    if n * n * 2 != len(raw) or n not in (1201, 3601):
        raise InvalidInputError(f"{path}: {len(raw)} bytes is not an SRTM1/SRTM3 tile")
    heights = np.frombuffer(raw, ">i2").reshape(n, n).astype(np.float32)
    voids = heights == _VOID
    if voids.any():
        heights[voids] = float(heights[~voids].mean()) if (~voids).any() else 0.0
        log.debug("%s: filled %d void samples", path.name, int(voids.sum()))
    return HgtTile(lat0=lat0, lon0=lon0, heights_m=heights)


class Terrain:
    """Elevation model over a set of SRTM tiles; 0 m (sea level) outside every tile.

    Examples
    --------
    >>> Terrain([]).elevation_m(np.array([1.5]), np.array([42.5])).tolist()
    [0.0]
    """

    def __init__(self, tiles: list[HgtTile]) -> None:
        self._loaded = {(t.lat0, t.lon0): t for t in tiles}
        self._pending: tuple[Path, ...] = ()

    @classmethod
    def from_files(cls, paths: list[str | Path]) -> Terrain:
        """Load every tile in ``paths``."""
        return cls([load_hgt(p) for p in paths])

    @classmethod
    def on_demand(cls, paths: list[str | Path]) -> Terrain:
        """Terrain over the tiles in ``paths``, read when heights are first asked for.

        For a built map, whose tiles were checked when it was built: most answers take
        their terrain from tables made at build time, and unzipping a tile costs a map load
        more than the rest of it.

        Examples
        --------
        >>> terrain = Terrain.on_demand(["maps/andorra/data/N42E001.hgt.zip"])
        >>> round(float(terrain.elevation_m(np.array([1.5218]), np.array([42.5063]))[0]))
        1017
        """
        terrain = cls([])
        terrain._pending = tuple(Path(p) for p in paths)
        return terrain

    @property
    def _tiles(self) -> dict[tuple[int, int], HgtTile]:
        if self._pending:
            with _READ_LOCK:
                for path in self._pending:
                    tile = load_hgt(path)
                    self._loaded[(tile.lat0, tile.lon0)] = tile
                self._pending = ()
        return self._loaded

    @property
    def tiles(self) -> list[HgtTile]:
        """The loaded tiles."""
        return list(self._tiles.values())

    def elevation_m(
        self, lon: NDArray[np.float64], lat: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """Bilinear elevation at WGS84 points (metres; 0 outside the tiles)."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        out = np.zeros(np.broadcast(lon, lat).shape, dtype=np.float64)
        lon_b, lat_b = np.broadcast_arrays(lon, lat)
        lat_key = np.floor(lat_b).astype(np.int64)
        lon_key = np.floor(lon_b).astype(np.int64)
        for (lat0, lon0), tile in self._tiles.items():
            mask = (lat_key == lat0) & (lon_key == lon0)
            if not mask.any():
                continue
            spd = tile.samples_per_deg
            row = (lat0 + 1 - lat_b[mask]) * spd
            col = (lon_b[mask] - lon0) * spd
            r0 = np.clip(np.floor(row).astype(np.int64), 0, spd - 1)
            c0 = np.clip(np.floor(col).astype(np.int64), 0, spd - 1)
            fr = np.clip(row - r0, 0.0, 1.0)
            fc = np.clip(col - c0, 0.0, 1.0)
            h = tile.heights_m
            out[mask] = (
                h[r0, c0] * (1 - fr) * (1 - fc)
                + h[r0, c0 + 1] * (1 - fr) * fc
                + h[r0 + 1, c0] * fr * (1 - fc)
                + h[r0 + 1, c0 + 1] * fr * fc
            )
        return out

    def profile_m(
        self,
        lon_a: NDArray[np.float64],
        lat_a: NDArray[np.float64],
        lon_b: NDArray[np.float64],
        lat_b: NDArray[np.float64],
        n_samples: int,
    ) -> NDArray[np.float64]:
        """Terrain heights along straight lines a -> b, shape ``(len(a), n_samples)``.

        Sample 0 is at ``a`` and sample ``n_samples - 1`` at ``b`` (linear in lon/lat, which is
        accurate to well under a sample spacing over the tens of kilometres a cell reaches).
        """
        frac = np.linspace(0.0, 1.0, n_samples)
        lons = np.asarray(lon_a)[:, None] + (np.asarray(lon_b) - np.asarray(lon_a))[:, None] * frac
        lats = np.asarray(lat_a)[:, None] + (np.asarray(lat_b) - np.asarray(lat_a))[:, None] * frac
        return self.elevation_m(lons, lats)
