"""Region outputs of a map's edge table, and the readers of a built map's edge table.

The tile parts (``edges/parts/<tile>.parquet``, written by :func:`commap.map.build.build_tile`)
are merged into the gap list (``edges/gaps.parquet``: stretches of consecutive segments with no
usable network), per-network coverage statistics (``edges/stats.json``), handover points and a
GeoPackage for QGIS (``edges/edges.gpkg``: layers ``segments``, ``gaps``, ``handovers``).
:func:`read_edge_table`, :func:`read_gaps`, :func:`read_coverage_stats` and
:func:`summary_lines` read them back from a built map.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from numpy.typing import NDArray

from commap.arrays import BoolArray
from commap.errors import InvalidInputError
from commap.files import atomic_path, write_json_atomic
from commap.map.manifest import MANIFEST, Manifest, resolve_map_dir
from commap.radio.quality import USABLE_SINR_DB, Provenance

__all__ = [
    "CRS",
    "EDGES_DIR",
    "EDGES_FORMAT",
    "GAPS_FILE",
    "GPKG_FILE",
    "PARTS_DIR",
    "STATS_FILE",
    "PartSummary",
    "RegionWriter",
    "hilbert_sorted",
    "merge_region",
    "part_path",
    "read_coverage_stats",
    "read_edge_table",
    "read_gaps",
    "read_part",
    "region_writer",
    "summarize_part",
    "summary_lines",
    "write_geoparquet",
]


EDGES_FORMAT = "commap-edges/1"
EDGES_DIR = "edges"
PARTS_DIR = f"{EDGES_DIR}/parts"
GAPS_FILE = f"{EDGES_DIR}/gaps.parquet"
STATS_FILE = f"{EDGES_DIR}/stats.json"
GPKG_FILE = f"{EDGES_DIR}/edges.gpkg"
CRS = pyproj.CRS.from_epsg(4326)  # parsed once: every GeoDataFrame shares it


def part_path(map_dir: str | os.PathLike[str], tile: str) -> Path:
    """Where the part of ``tile`` lives in a (partial or built) map directory.

    Examples
    --------
    >>> part_path("built", "86396238fffffff").as_posix()
    'built/edges/parts/86396238fffffff.parquet'
    """
    return Path(map_dir) / PARTS_DIR / f"{tile}.parquet"


def write_geoparquet(frame: gpd.GeoDataFrame, path: Path) -> None:
    """Write ``frame`` as GeoParquet with a bbox covering column, atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, write_covering_bbox=True)


def read_part(path: Path) -> gpd.GeoDataFrame:
    """A part written by :func:`write_geoparquet`, as ``geopandas.read_parquet`` reads it.

    Every part is in :data:`CRS`: taking that CRS instead of parsing the file's PROJJSON saves
    ~20 ms per part (pyproj), a third of the read.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "part.parquet"
    >>> write_geoparquet(gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.Point(1, 2)], crs=CRS), path)
    >>> frame = read_part(path)
    >>> list(frame.columns), frame.crs == CRS, frame.geometry[0].wkt
    (['a', 'geometry'], True, 'POINT (1 2)')
    """
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    table = pq.read_table(path, columns=[n for n in names if n != "bbox"])
    frame = table.drop(["geometry"]).to_pandas()
    geometry = gpd.array.from_wkb(np.asarray(table["geometry"]), crs=CRS)
    frame.insert(table.column_names.index("geometry"), "geometry", geometry)
    return gpd.GeoDataFrame(frame, geometry="geometry")


# -- region outputs -------------------------------------------------------------------------------

_PROVENANCE_NAMES = {int(p): p.name.lower() for p in Provenance}


@dataclass(frozen=True)
class _PartStats:
    """The sums of one part that the region totals add up (lengths in metres)."""

    edge_m: float
    tunnel_m: float
    segments: int
    gap_m: float
    handovers: dict[str, int]
    covered_m: dict[str, float]
    recommended_m: dict[str, float]
    by_provenance: dict[str, dict[str, float]]

    @classmethod
    def of(cls, frame: pd.DataFrame, network_ids: Sequence[str]) -> _PartStats:
        length = frame["length_m"].to_numpy()
        kinds = frame["handover_kind"].to_numpy()
        recommended = frame["network"].to_numpy()
        covered_m: dict[str, float] = {}
        recommended_m: dict[str, float] = {}
        by_provenance: dict[str, dict[str, float]] = {}
        for nid in network_ids:
            covered = frame[f"{nid}_sinr_db"].to_numpy() >= USABLE_SINR_DB
            covered_m[nid] = float(length[covered].sum())
            recommended_m[nid] = float(length[recommended == nid].sum())
            provenance = frame[f"{nid}_provenance"].to_numpy()
            by_provenance[nid] = {
                name: float(length[covered & (provenance == code)].sum())
                for code, name in _PROVENANCE_NAMES.items()
            }
        return cls(
            edge_m=float(length.sum()),
            tunnel_m=float(length[frame["in_tunnel"].to_numpy()].sum()),
            segments=len(frame),
            gap_m=float(length[frame["gap"].to_numpy()].sum()),
            handovers={
                kind: int((kinds == kind).sum()) for kind in sorted(set(kinds.tolist()) - {""})
            },
            covered_m=covered_m,
            recommended_m=recommended_m,
            by_provenance=by_provenance,
        )


class _Stats:
    """Region totals accumulated part by part (in tile order, so sums are reproducible)."""

    def __init__(self, network_ids: Sequence[str]) -> None:
        self.ids = tuple(network_ids)
        self.edge_m = 0.0
        self.tunnel_m = 0.0
        self.segments = 0
        self.gap_m = 0.0
        self.handovers: dict[str, int] = {}
        self.covered_m = dict.fromkeys(self.ids, 0.0)
        self.recommended_m = dict.fromkeys(self.ids, 0.0)
        self.by_provenance = {
            nid: dict.fromkeys(_PROVENANCE_NAMES.values(), 0.0) for nid in self.ids
        }

    def add(self, part: _PartStats) -> None:
        """Add one part's sums (parts in tile order: the float sums are reproducible)."""
        self.edge_m += part.edge_m
        self.tunnel_m += part.tunnel_m
        self.segments += part.segments
        self.gap_m += part.gap_m
        for kind, count in part.handovers.items():
            self.handovers[kind] = self.handovers.get(kind, 0) + count
        for nid in self.ids:
            self.covered_m[nid] += part.covered_m[nid]
            self.recommended_m[nid] += part.recommended_m[nid]
            for name, metres in part.by_provenance[nid].items():
                self.by_provenance[nid][name] += metres

    def as_dict(self, gaps: int) -> dict[str, Any]:
        def km(metres: float) -> float:
            return round(metres / 1000.0, 3)

        total = max(self.edge_m, 1e-9)
        return {
            "length_unit": "directed edge-km (a two-way road counts once per direction)",
            "edge_km": km(self.edge_m),
            "tunnel_km": km(self.tunnel_m),
            "segments": self.segments,
            "gap_km": km(self.gap_m),
            "gap_share": round(self.gap_m / total, 4),
            "gaps": gaps,
            "handovers": sum(self.handovers.values()),
            "handovers_by_kind": dict(sorted(self.handovers.items())),
            "networks": {
                nid: {
                    "covered_km": km(self.covered_m[nid]),
                    "covered_share": round(self.covered_m[nid] / total, 4),
                    "covered_km_by_provenance": {
                        name: km(m) for name, m in self.by_provenance[nid].items()
                    },
                    "recommended_km": km(self.recommended_m[nid]),
                    "recommended_share": round(self.recommended_m[nid] / total, 4),
                }
                for nid in self.ids
            },
        }


def _runs(flags: BoolArray, groups: NDArray[np.int64]) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of True within one group (rows already in order)."""
    if flags.size == 0:
        return []
    new_group = np.concatenate(([True], groups[1:] != groups[:-1]))
    starts = flags & (new_group | ~np.concatenate(([False], flags[:-1])))
    last = np.concatenate((new_group[1:], [True]))
    stops = flags & (last | ~np.concatenate((flags[1:], [False])))
    return list(
        zip(np.flatnonzero(starts).tolist(), (np.flatnonzero(stops) + 1).tolist(), strict=True)
    )


def _gaps(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Stretches of consecutive gap segments along each chain of one part."""
    ordered = frame.sort_values(["chain", "chain_pos"], kind="stable").reset_index(drop=True)
    runs = _runs(ordered["gap"].to_numpy(), ordered["chain"].to_numpy().astype(np.int64))
    rows: list[dict[str, Any]] = []
    lines = []
    for start, stop in runs:
        first, last = ordered.iloc[start], ordered.iloc[stop - 1]
        part = ordered.iloc[start:stop]
        coords = shapely.get_coordinates(part.geometry.to_numpy())
        keep = np.concatenate(([True], np.any(np.diff(coords, axis=0) != 0, axis=1)))
        lines.append(
            shapely.linestrings(coords[keep])
            if keep.sum() >= 2
            else shapely.linestrings(coords[:2])
        )
        length = part["length_m"].to_numpy()
        rows.append(
            {
                "tile": first["tile"],
                "chain": int(first["chain"]),
                "from_u": int(first["u"]),
                "from_v": int(first["v"]),
                "from_key": int(first["key"]),
                "from_m": float(first["start_m"]),
                "to_u": int(last["u"]),
                "to_v": int(last["v"]),
                "to_key": int(last["key"]),
                "to_m": float(last["end_m"]),
                "length_m": float(length.sum()),
                "tunnel_m": float(length[part["in_tunnel"].to_numpy()].sum()),
                "segments": stop - start,
            }
        )
    table = pd.DataFrame(rows, columns=list(_GAP_TYPES)).astype(_GAP_TYPES)
    return gpd.GeoDataFrame(table, geometry=lines, crs=CRS)


_GAP_TYPES = {
    "tile": str, "chain": np.int32, "from_u": np.int64, "from_v": np.int64,
    "from_key": np.int64, "from_m": np.float64, "to_u": np.int64, "to_v": np.int64,
    "to_key": np.int64, "to_m": np.float64, "length_m": np.float64, "tunnel_m": np.float64,
    "segments": np.int32,
}  # fmt: skip


def _handover_points(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    switched = frame[frame["handover_kind"] != ""]
    columns = [
        "tile",
        "chain",
        "u",
        "v",
        "key",
        "start_m",
        "handover_from",
        "network",
        "handover_kind",
    ]
    points = shapely.points(
        shapely.get_coordinates(shapely.get_point(switched.geometry.to_numpy(), 0))
    )
    table = pd.DataFrame(switched[columns].to_numpy(), columns=columns).rename(
        columns={
            "start_m": "at_m",
            "handover_from": "from_network",
            "network": "to_network",
            "handover_kind": "kind",
        }
    )
    return gpd.GeoDataFrame(table.astype(_HANDOVER_TYPES), geometry=points, crs=CRS)


_HANDOVER_TYPES = {
    "tile": str, "chain": np.int32, "u": np.int64, "v": np.int64, "key": np.int64,
    "at_m": np.float64, "from_network": str, "to_network": str, "kind": str,
}  # fmt: skip


class _GpkgWriter:
    """GeoPackage export into ``path`` (a temporary file the caller renames when complete).

    Reproducible bytes: GDAL stamps ``last_change`` with OGR_CURRENT_DATE (set to the reference
    time while writing). Segment rows are buffered into large batches: every write call costs a
    transaction, whatever its size. Rows go to GDAL as an Arrow stream: half the time of the
    row-by-row path for the same table read back (columns, types, geometries).
    """

    def __init__(self, path: Path, reference_s: float) -> None:
        import pyogrio

        self.pyogrio = pyogrio
        self.path = path
        self.date = pd.Timestamp(reference_s, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
        self.layers: set[str] = set()
        self.pending: list[gpd.GeoDataFrame] = []
        self.pending_rows = 0

    def add_segments(self, frame: gpd.GeoDataFrame) -> None:
        self.pending.append(frame)
        self.pending_rows += len(frame)
        if self.pending_rows >= _GPKG_BATCH_ROWS:
            self.flush_segments()

    def flush_segments(self) -> None:
        if self.pending:
            self.write(pd.concat(self.pending, ignore_index=True), "segments", "LineString")
        self.pending, self.pending_rows = [], 0

    def write(self, frame: gpd.GeoDataFrame, layer: str, geometry_type: str) -> None:
        previous = self.pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
        self.pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": self.date})
        try:
            self.pyogrio.write_dataframe(
                frame,
                self.path,
                layer=layer,
                driver="GPKG",
                append=layer in self.layers,
                geometry_type=geometry_type,
                use_arrow=True,
            )
        finally:
            self.pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})
        self.layers.add(layer)


# Each GeoPackage write call costs ~15 ms besides its rows: batches of this many rows keep that
# small, and leave most segments of a large region written before its last tile arrives.
_GPKG_BATCH_ROWS = 50_000


@dataclass(frozen=True)
class PartSummary:
    """What the region outputs take from one part, besides its segments for the GeoPackage.

    Computed where the part was built (:func:`summarize_part`), so that a parallel build does
    this work in its workers rather than in a serial merge at the end.
    """

    segments: int
    stats: _PartStats
    gaps: gpd.GeoDataFrame
    handovers: gpd.GeoDataFrame


def summarize_part(frame: gpd.GeoDataFrame, network_ids: Sequence[str]) -> PartSummary:
    """Sums, gap stretches and handover points of one part (as read by :func:`read_part`)."""
    return PartSummary(
        segments=len(frame),
        stats=_PartStats.of(frame, network_ids),
        gaps=_gaps(frame),
        handovers=_handover_points(frame),
    )


class RegionWriter:
    """Region outputs of a map's parts, the GeoPackage's segments written while parts arrive.

    Create it with :func:`region_writer`. Segments go to the GeoPackage in one fixed tile order
    (``order``), in batches of :data:`_GPKG_BATCH_ROWS` rows, as soon as every tile before them
    in that order has arrived: the file has the same bytes whatever the order of arrival (a
    parallel build, a resumed one), and with the order of a build's schedule most of it is
    written while later tiles are still being computed. The gap list, the handover points and
    the statistics are assembled in tile id order by :meth:`finish`.
    """

    def __init__(
        self,
        root: Path,
        gpkg: _GpkgWriter,
        order: Sequence[str],
        network_ids: Sequence[str],
    ) -> None:
        self.root = root
        self.gpkg = gpkg
        self.order = list(order)
        self.network_ids = tuple(network_ids)
        self.summaries: dict[str, PartSummary] = {}
        self.arrived: dict[str, PartSummary | None] = {}
        self.next = 0  # index in ``order`` of the first tile whose segments are not written

    def add(self, tile: str, summary: PartSummary | None = None) -> None:
        """Take the part of ``tile`` (on disk), with its :func:`summarize_part` if known."""
        self.arrived[tile] = summary
        while self.next < len(self.order) and self.order[self.next] in self.arrived:
            self._write(self.order[self.next])
            self.next += 1

    def _write(self, tile: str) -> None:
        frame = read_part(part_path(self.root, tile))
        summary = self.arrived.pop(tile)
        self.summaries[tile] = summary or summarize_part(frame, self.network_ids)
        self.gpkg.add_segments(frame)

    def finish(
        self,
        *,
        tiles: Mapping[str, int],
        checksums: Mapping[str, str],
        bounds: tuple[float, float, float, float],
    ) -> dict[str, Any]:
        """Write the gap list, the other GeoPackage layers and the statistics.

        Parameters
        ----------
        tiles : mapping of str to int
            Tile id -> number of directed edges in it, in tile id order (every tile of
            ``order`` must have arrived).
        checksums : mapping of str to str
            Tile id -> SHA-256 of its part (recorded in the manifest).
        bounds : (lon_min, lat_min, lon_max, lat_max)
            Fixed Hilbert-curve bounds (the map's extent with every edge).

        Returns
        -------
        dict
            ``outputs`` (file names), ``totals`` (region totals) and ``tiles`` (part, counts
            and checksum per tile) of the manifest's ``edges`` section.
        """
        if self.next < len(self.order):
            raise ValueError(f"tile {self.order[self.next]} has not arrived")
        stats = _Stats(self.network_ids)
        records: list[dict[str, Any]] = []
        for tile, edges in tiles.items():
            summary = self.summaries[tile]
            stats.add(summary.stats)
            records.append(
                {
                    "id": tile,
                    "part": str(part_path(self.root, tile).relative_to(self.root)),
                    "edges": edges,
                    "segments": summary.segments,
                    "sha256": checksums[tile],
                }
            )
        gap_frame = _hilbert_gaps([self.summaries[t].gaps for t in tiles], bounds)
        handovers = pd.concat([self.summaries[t].handovers for t in tiles], ignore_index=True)
        self.gpkg.flush_segments()
        self.gpkg.write(gap_frame, "gaps", "LineString")
        self.gpkg.write(handovers, "handovers", "Point")
        write_geoparquet(gap_frame, self.root / GAPS_FILE)
        totals = stats.as_dict(gaps=len(gap_frame))
        write_json_atomic(self.root / STATS_FILE, totals, indent=2)
        return {
            "outputs": {
                "parts": PARTS_DIR,
                "gaps": GAPS_FILE,
                "stats": STATS_FILE,
                "gpkg": GPKG_FILE,
            },
            "totals": {
                k: totals[k] for k in ("edge_km", "segments", "gap_km", "gaps", "handovers")
            },
            "tiles": records,
        }


@contextlib.contextmanager
def region_writer(
    root: Path, *, order: Sequence[str], network_ids: Sequence[str], reference_s: float
) -> Iterator[RegionWriter]:
    """A :class:`RegionWriter` whose GeoPackage replaces ``edges/edges.gpkg`` when the block ends.

    Parameters
    ----------
    root : Path
        The (partial) map directory holding the parts.
    order : sequence of str
        Every tile of the map, in the order their segments go to the GeoPackage.
    network_ids : sequence of str
        The map's networks (catalogue order).
    reference_s : float
        Reference time (GeoPackage timestamps).

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / EDGES_DIR).mkdir()
    >>> with region_writer(root, order=["t1"], network_ids=[], reference_s=0.0) as writer:
    ...     writer.finish(tiles={}, checksums={}, bounds=(0.0, 0.0, 1.0, 1.0))
    Traceback (most recent call last):
    ...
    ValueError: tile t1 has not arrived
    """
    with atomic_path(root / GPKG_FILE, keep_suffix=True) as gpkg_tmp:
        yield RegionWriter(root, _GpkgWriter(gpkg_tmp, reference_s), order, network_ids)


def merge_region(
    root: Path,
    *,
    tiles: Mapping[str, int],
    checksums: Mapping[str, str],
    network_ids: Sequence[str],
    bounds: tuple[float, float, float, float],
    reference_s: float,
    summaries: Mapping[str, PartSummary] | None = None,
) -> dict[str, Any]:
    """Gap list, statistics and GeoPackage from the parts of ``tiles`` (in their order).

    Parameters
    ----------
    root : Path
        The (partial) map directory holding the parts.
    tiles : mapping of str to int
        Tile id -> number of directed edges in it.
    checksums : mapping of str to str
        Tile id -> SHA-256 of its part (recorded in the manifest).
    network_ids : sequence of str
        The map's networks (catalogue order).
    bounds : (lon_min, lat_min, lon_max, lat_max)
        Fixed Hilbert-curve bounds (the map's extent with every edge).
    reference_s : float
        Reference time (GeoPackage timestamps).
    summaries : mapping of str to PartSummary, optional
        :func:`summarize_part` of the parts already summarized where they were built; the
        others are summarized here. The outputs are the same either way.

    Returns
    -------
    dict
        ``outputs`` (file names), ``totals`` (region totals) and ``tiles`` (part, counts and
        checksum per tile) of the manifest's ``edges`` section.
    """
    summaries = summaries or {}
    with region_writer(
        root, order=list(tiles), network_ids=network_ids, reference_s=reference_s
    ) as writer:
        for tile in tiles:
            writer.add(tile, summaries.get(tile))
        return writer.finish(tiles=tiles, checksums=checksums, bounds=bounds)


def _hilbert_gaps(
    gaps: Sequence[gpd.GeoDataFrame], bounds: tuple[float, float, float, float]
) -> gpd.GeoDataFrame:
    frame = gpd.GeoDataFrame(pd.concat(gaps, ignore_index=True), geometry="geometry", crs=CRS)
    if frame.empty:
        return frame
    return hilbert_sorted(frame, bounds, ties=("from_u", "from_v", "from_key", "from_m"))


def hilbert_sorted(
    frame: gpd.GeoDataFrame,
    bounds: tuple[float, float, float, float],
    *,
    ties: Sequence[str] = (),
) -> gpd.GeoDataFrame:
    """Rows in Hilbert order of their geometry (spatial locality), ties broken by columns.

    Parameters
    ----------
    frame : GeoDataFrame
        Rows to order (not changed).
    bounds : (lon_min, lat_min, lon_max, lat_max)
        The extent the Hilbert curve spans.
    ties : sequence of str
        Columns that order rows of equal Hilbert distance, most significant first.

    Returns
    -------
    GeoDataFrame
        The rows in that order, with a fresh index.

    Examples
    --------
    >>> from shapely.geometry import Point
    >>> frame = gpd.GeoDataFrame({"k": [2, 1, 0]}, geometry=[Point(1, 1), Point(0, 0), Point(0, 0)])
    >>> hilbert_sorted(frame, (0.0, 0.0, 1.0, 1.0), ties=("k",))["k"].tolist()
    [0, 1, 2]
    >>> len(hilbert_sorted(frame.iloc[:0], (0.0, 0.0, 1.0, 1.0)))
    0
    """
    distance = frame.geometry.hilbert_distance(total_bounds=bounds).to_numpy()
    order = np.lexsort((*(frame[c].to_numpy() for c in reversed(ties)), distance))
    return frame.iloc[order].reset_index(drop=True)


# -- reading a built map's edge table ---------------------------------------------------------------


def _section(map_dir: str | os.PathLike[str]) -> tuple[Path, Mapping[str, Any]]:
    directory = resolve_map_dir(Path(map_dir))
    section = Manifest.read(directory / MANIFEST).edges
    if section is None or section.get("format") != EDGES_FORMAT:
        raise InvalidInputError(
            f"map {directory} has no edge table (built without roads or before batch builds); "
            "rebuild it with `commap build-map`",
            field="edges",
        )
    return directory, section


def read_edge_table(
    map_dir: str | os.PathLike[str],
    *,
    bbox: tuple[float, float, float, float] | None = None,
    columns: Sequence[str] | None = None,
) -> gpd.GeoDataFrame:
    """The per-segment edge table of a built map (all parts, in tile order).

    Parameters
    ----------
    map_dir : path-like
        A built map (name or directory).
    bbox : (lon_min, lat_min, lon_max, lat_max), optional
        Only segments whose bounding box intersects it (read with the parts' bbox covering).
    columns : sequence of str, optional
        Columns to read (the geometry is always read).

    Raises
    ------
    MapNotFoundError
        ``map_dir`` is no built map.
    InvalidInputError
        The map has no edge table, or a part is unreadable.

    Examples
    --------
    >>> read_edge_table("no/such/map")
    Traceback (most recent call last):
    ...
    commap.errors.MapNotFoundError: no/such/map is not a built map (no manifest.json)
    """
    directory, section = _section(map_dir)
    wanted = None if columns is None else [*columns, "geometry"]
    frames = []
    for tile in section["tiles"]:
        path = directory / tile["part"]
        try:
            frames.append(gpd.read_parquet(path, columns=wanted, bbox=bbox))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path}: unreadable edge table part ({exc})") from None
    if not frames:
        return gpd.GeoDataFrame(geometry=[], crs=CRS)
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=CRS)


def read_gaps(map_dir: str | os.PathLike[str]) -> gpd.GeoDataFrame:
    """The coverage-gap list of a built map (stretches where no network is usable).

    Raises
    ------
    InvalidInputError
        The map has no edge table.
    """
    frame: gpd.GeoDataFrame = _read_output(map_dir, "gaps", "gap list", gpd.read_parquet)
    return frame


def read_coverage_stats(map_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Per-network coverage statistics of a built map's region (``edges/stats.json``).

    Raises
    ------
    InvalidInputError
        The map has no edge table.
    """
    payload: dict[str, Any] = _read_output(
        map_dir, "stats", "statistics", lambda path: json.loads(path.read_text(encoding="utf-8"))
    )
    return payload


def _read_output(
    map_dir: str | os.PathLike[str], key: str, what: str, read: Callable[[Path], Any]
) -> Any:
    """``read`` applied to the edge-table output ``key`` of a built map."""
    directory, section = _section(map_dir)
    try:
        return read(directory / section["outputs"][key])
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInputError(f"map {directory}: unreadable {what} ({exc})") from None


def summary_lines(stats: Mapping[str, Any]) -> list[str]:
    """Human-readable summary of :func:`read_coverage_stats` output (for CLIs).

    Examples
    --------
    >>> summary_lines({"edge_km": 0.0, "segments": 0, "gap_km": 0.0, "gaps": 0,
    ...                "handovers": 0, "networks": {}})
    ['0.0 edge-km in 0 segments; 0 gaps over 0.0 km; 0 planned handovers']
    """
    lines = [
        f"{stats['edge_km']} edge-km in {stats['segments']} segments; {stats['gaps']} gaps "
        f"over {stats['gap_km']} km; {stats['handovers']} planned handovers"
    ]
    for nid, net in stats["networks"].items():
        lines.append(
            f"{nid}: covers {net['covered_km']} km ({net['covered_share']:.0%}), "
            f"recommended on {net['recommended_km']} km"
        )
    return lines
