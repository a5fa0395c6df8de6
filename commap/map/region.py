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
import datetime
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyproj

from commap.errors import InvalidInputError
from commap.files import atomic_path, write_json_atomic
from commap.map.manifest import MANIFEST, Manifest, resolve_map_dir
from commap.map.parts import (
    EDGES_DIR,
    GEOMETRY,
    PARTS_DIR,
    PROVENANCE_NAMES,
    PartStats,
    PartSummary,
    hilbert_order,
    numpy_column,
    part_path,
    read_part_table,
    summarize_part,
    table_columns,
    write_geoparquet_table,
)

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
    "merge_region",
    "part_path",
    "read_coverage_stats",
    "read_edge_table",
    "read_gaps",
    "read_part",
    "region_writer",
    "summarize_part",
    "summary_lines",
]


EDGES_FORMAT = "commap-edges/1"
GAPS_FILE = f"{EDGES_DIR}/gaps.parquet"
STATS_FILE = f"{EDGES_DIR}/stats.json"
GPKG_FILE = f"{EDGES_DIR}/edges.gpkg"
CRS = pyproj.CRS.from_epsg(4326)  # parsed once: every GeoDataFrame shares it


def read_part(path: Path) -> gpd.GeoDataFrame:
    """A part (:func:`commap.map.parts.write_geoparquet_table`) as ``geopandas.read_parquet`` reads it.

    Every part is in :data:`CRS`: taking that CRS instead of parsing the file's PROJJSON saves
    ~20 ms per part (pyproj), a third of the read.

    Examples
    --------
    >>> import tempfile, shapely
    >>> from commap.map.parts import geo_table, write_geoparquet_table
    >>> path = Path(tempfile.mkdtemp()) / "part.parquet"
    >>> write_geoparquet_table(geo_table({"a": np.array([1])}, np.array([shapely.Point(1, 2)])), path)
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
            nid: dict.fromkeys(PROVENANCE_NAMES.values(), 0.0) for nid in self.ids
        }

    def add(self, part: PartStats) -> None:
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


class _GpkgWriter:
    """GeoPackage export into ``path`` (a temporary file the caller renames when complete).

    Reproducible bytes: GDAL stamps ``last_change`` with OGR_CURRENT_DATE (set to the reference
    time while writing). SQLite does not sync while writing: the caller's atomic_path syncs the
    finished file. Segment rows are buffered into large batches: every write call costs a
    transaction, whatever its size. Rows go to GDAL as the Arrow tables the parts were read as
    (no DataFrame on the way: the columns, types and geometries GDAL gets are the same).
    """

    def __init__(self, path: Path, reference_s: float) -> None:
        import pyogrio
        from pyogrio.raw import write_arrow

        self.pyogrio = pyogrio
        self.write_arrow = write_arrow
        self.path = path
        when = datetime.datetime.fromtimestamp(reference_s, tz=datetime.UTC)
        self.date = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.layers: set[str] = set()
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    def add_segments(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.pending_rows += table.num_rows
        if self.pending_rows >= _GPKG_BATCH_ROWS:
            self.flush_segments()

    def flush_segments(self) -> None:
        if self.pending:
            self.write(pa.concat_tables(self.pending), "segments", "LineString")
        self.pending, self.pending_rows = [], 0

    def write(self, table: pa.Table, layer: str, geometry_type: str) -> None:
        options = {
            "OGR_CURRENT_DATE": self.date,
            # SQLite syncs every transaction (~30 ms each, most of a small layer's write);
            # the file is a temporary one that atomic_path fsyncs before renaming it into
            # place, so those syncs bought nothing. The bytes are the same.
            "OGR_SQLITE_SYNCHRONOUS": "OFF",
        }
        previous = {k: self.pyogrio.get_gdal_config_option(k) for k in options}
        self.pyogrio.set_gdal_config_options(options)
        try:
            self.write_arrow(
                table,
                self.path,
                layer=layer,
                driver="GPKG",
                geometry_name=GEOMETRY,
                geometry_type=geometry_type,
                crs=f"EPSG:{CRS.to_epsg()}",
                append=layer in self.layers,
            )
        finally:
            self.pyogrio.set_gdal_config_options(previous)
        self.layers.add(layer)


# Each GeoPackage write call costs ~15 ms besides its rows: batches of this many rows keep that
# small, and leave most segments of a large region written before its last tile arrives.
_GPKG_BATCH_ROWS = 50_000


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
        table = read_part_table(part_path(self.root, tile))
        summary = self.arrived.pop(tile)
        self.summaries[tile] = summary or summarize_part(table_columns(table), self.network_ids)
        self.gpkg.add_segments(table)

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
        gaps = _hilbert_gaps([self.summaries[t].gaps for t in tiles], bounds)
        handovers = pa.concat_tables([self.summaries[t].handovers for t in tiles])
        self.gpkg.flush_segments()
        self.gpkg.write(gaps, "gaps", "LineString")
        self.gpkg.write(handovers, "handovers", "Point")
        write_geoparquet_table(gaps, self.root / GAPS_FILE)
        totals = stats.as_dict(gaps=gaps.num_rows)
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


def _hilbert_gaps(gaps: Sequence[pa.Table], bounds: tuple[float, float, float, float]) -> pa.Table:
    """Every part's gap stretches in one table, in Hilbert order (ties by their start)."""
    table = pa.concat_tables(gaps)
    ties = [numpy_column(table[c]) for c in ("from_u", "from_v", "from_key", "from_m")]
    geometry = table_columns(table.select([GEOMETRY]))[GEOMETRY]
    order = hilbert_order(geometry, bounds, ties=ties)
    return table.take(pa.array(order)) if len(order) else table


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
