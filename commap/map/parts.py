"""Edge-table parts on pyarrow and shapely: written, read back and summarized without pandas.

A tile task (:mod:`commap.map.tile`) runs in batch workers that start fresh (a dask worker),
where importing pandas and geopandas would cost more CPU than a small tile. This module writes a
part as GeoParquet 1.1 (WKB geometry, the ``geo`` metadata, a ``bbox`` covering column: what
geopandas, dask-geopandas and QGIS read) from numpy columns and shapely geometries, orders rows
along a Hilbert curve, reads parts back into numpy columns, and makes the summary the region
merge (:mod:`commap.map.region`) takes from each part: the sums of the coverage statistics, the
gap stretches and the handover points, as Arrow tables.

pyarrow imports pandas whenever it converts a numpy array or a Python list (``pa.array``) or
converts a column to numpy (``to_numpy``); columns go in and out through their Arrow buffers here
(:func:`arrow_column`, :func:`numpy_column`).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import shapely
from numpy.typing import NDArray

from commap import __version__
from commap.arrays import BoolArray
from commap.files import atomic_path
from commap.radio.quality import USABLE_SINR_DB, Provenance

__all__ = [
    "EDGES_DIR",
    "GEOMETRY",
    "PARTS_DIR",
    "PROVENANCE_NAMES",
    "Columns",
    "PartStats",
    "PartSummary",
    "arrow_column",
    "geo_table",
    "hilbert_distance",
    "hilbert_order",
    "numpy_column",
    "part_path",
    "read_part_columns",
    "read_part_table",
    "summarize_part",
    "table_columns",
    "write_geoparquet_table",
]

EDGES_DIR = "edges"
PARTS_DIR = f"{EDGES_DIR}/parts"
GEOMETRY = "geometry"
# Numpy columns by name; strings and geometries as object arrays.
Columns = Mapping[str, NDArray[Any]]


def part_path(map_dir: str | os.PathLike[str], tile: str) -> Path:
    """Where the part of ``tile`` lives in a (partial or built) map directory.

    Examples
    --------
    >>> part_path("built", "86396238fffffff").as_posix()
    'built/edges/parts/86396238fffffff.parquet'
    """
    return Path(map_dir) / PARTS_DIR / f"{tile}.parquet"


# -- columns in and out of Arrow without pandas ---------------------------------------------------

_ARROW_OF_NUMPY: dict[np.dtype[Any], pa.DataType] = {
    np.dtype(np.float64): pa.float64(),
    np.dtype(np.float32): pa.float32(),
    np.dtype(np.int8): pa.int8(),
    np.dtype(np.int16): pa.int16(),
    np.dtype(np.int32): pa.int32(),
    np.dtype(np.int64): pa.int64(),
    np.dtype(np.uint8): pa.uint8(),
}


def _offsets_array(kind: pa.DataType, items: Sequence[bytes], offset_dtype: type) -> pa.Array:
    lengths: NDArray[Any] = np.fromiter(
        (len(b) for b in items), dtype=offset_dtype, count=len(items)
    )
    offsets: NDArray[Any] = np.concatenate(
        (np.zeros(1, dtype=offset_dtype), np.cumsum(lengths, dtype=offset_dtype))
    )
    data = b"".join(items)
    return pa.Array.from_buffers(
        kind, len(items), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def arrow_column(values: NDArray[Any]) -> pa.Array:
    """An Arrow array of a numpy column (numbers, booleans, ``str`` or ``bytes`` objects).

    Strings become ``large_string`` (as pandas writes them), bytes ``binary``; no nulls.

    Examples
    --------
    >>> arrow_column(np.array([1, 2], dtype=np.int32)).to_pylist()
    [1, 2]
    >>> arrow_column(np.array([True, False, True])).to_pylist()
    [True, False, True]
    >>> arrow_column(np.array(["a", ""], dtype=object)).type
    DataType(large_string)
    >>> len(arrow_column(np.array([], dtype=object)))
    0
    """
    values = np.asarray(values)
    if values.dtype == bool:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    if values.dtype in _ARROW_OF_NUMPY:
        data = np.ascontiguousarray(values)
        return pa.Array.from_buffers(
            _ARROW_OF_NUMPY[values.dtype], len(data), [None, pa.py_buffer(data)]
        )
    items = values.tolist()
    if items and isinstance(items[0], bytes):
        return _offsets_array(pa.binary(), items, np.int32)
    return _offsets_array(pa.large_string(), [str(s).encode() for s in items], np.int64)


def numpy_column(column: pa.ChunkedArray | pa.Array) -> NDArray[Any]:
    """A null-free Arrow column as numpy (strings and binaries as object arrays).

    Examples
    --------
    >>> numpy_column(arrow_column(np.array([False, True]))).tolist()
    [False, True]
    >>> numpy_column(arrow_column(np.array(["x"], dtype=object))).tolist()
    ['x']
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(array)
    if pa.types.is_boolean(array.type):
        bits = np.frombuffer(array.buffers()[1], dtype=np.uint8)
        flags: BoolArray = np.unpackbits(bits, bitorder="little", count=array.offset + n)[
            array.offset :
        ].astype(bool)
        return flags
    for dtype, kind in _ARROW_OF_NUMPY.items():
        if array.type == kind:
            return np.frombuffer(
                array.buffers()[1], dtype=dtype, count=n, offset=array.offset * dtype.itemsize
            )
    out = np.empty(n, dtype=object)
    out[:] = array.to_pylist()
    return out


# -- GeoParquet -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _crs_json() -> dict[str, Any]:
    """PROJJSON of EPSG:4326 as GeoParquet writers store it (ensemble members without ids)."""
    import pyproj

    crs: dict[str, Any] = pyproj.CRS.from_epsg(4326).to_json_dict()
    for member in crs.get("datum_ensemble", {}).get("members", []):
        member.pop("id", None)
    return crs


def geo_table(columns: Columns, geometry: NDArray[np.object_]) -> pa.Table:
    """An Arrow table of ``columns`` and a WKB ``geometry`` column (EPSG:4326) after them.

    Examples
    --------
    >>> table = geo_table({"a": np.array([1])}, np.array([shapely.Point(1, 2)]))
    >>> table.column_names, shapely.from_wkb(table["geometry"][0].as_py()).wkt
    (['a', 'geometry'], 'POINT (1 2)')
    """
    wkb = np.asarray(shapely.to_wkb(np.asarray(geometry, dtype=object)), dtype=object)
    field_meta = {
        b"ARROW:extension:name": b"geoarrow.wkb",
        b"ARROW:extension:metadata": json.dumps({"crs": _crs_json()}).encode(),
    }
    arrays = [arrow_column(v) for v in columns.values()]
    fields = [pa.field(name, a.type) for name, a in zip(columns, arrays, strict=True)]
    fields.append(pa.field(GEOMETRY, pa.binary(), metadata=field_meta))
    arrays.append(_offsets_array(pa.binary(), wkb.tolist(), np.int32))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_geoparquet_table(table: pa.Table, path: Path) -> None:
    """Write a :func:`geo_table` as GeoParquet 1.1 with a ``bbox`` covering column, atomically.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "part.parquet"
    >>> write_geoparquet_table(geo_table({"a": np.array([1])}, np.array([shapely.Point(1, 2)])), path)
    >>> read_part_columns(path)["geometry"][0].wkt
    'POINT (1 2)'
    """
    import pyarrow.parquet as pq

    geometries = shapely.from_wkb(numpy_column(table[GEOMETRY]))
    bounds = shapely.bounds(geometries).reshape(-1, 4)
    covering = pa.StructArray.from_arrays(
        [arrow_column(np.ascontiguousarray(bounds[:, i])) for i in range(4)],
        names=["xmin", "ymin", "xmax", "ymax"],
    )
    column: dict[str, Any] = {
        "encoding": "WKB",
        "crs": _crs_json(),
        "geometry_types": _geometry_types(geometries),
    }
    total = shapely.total_bounds(geometries).tolist()
    if np.isfinite(total).all():  # no bbox for an empty column
        column["bbox"] = total
    column["covering"] = {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}
    geo = {
        "primary_column": GEOMETRY,
        "columns": {GEOMETRY: column},
        "version": "1.1.0",
        "creator": {"library": "commap", "version": __version__},
    }
    out = table.append_column("bbox", covering)
    out = out.replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(out, tmp, compression="snappy")


def _geometry_types(geometries: NDArray[np.object_]) -> list[str]:
    names = shapely.get_type_id(geometries)
    return sorted({_TYPE_NAMES[int(t)] for t in np.unique(names)})


_TYPE_NAMES = {
    0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint",
    5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection",
}  # fmt: skip


def read_part_table(path: Path) -> pa.Table:
    """A part's columns (without the ``bbox`` covering) as an Arrow table."""
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(path)
    return handle.read(columns=[n for n in handle.schema_arrow.names if n != "bbox"])


def read_part_columns(path: Path) -> dict[str, NDArray[Any]]:
    """A part's columns as numpy (geometry as shapely objects), without its ``bbox``."""
    return table_columns(read_part_table(path))


def table_columns(table: pa.Table) -> dict[str, NDArray[Any]]:
    """Every column of a :func:`geo_table` as numpy, the geometry as shapely objects."""
    columns = {name: numpy_column(table[name]) for name in table.column_names}
    columns[GEOMETRY] = shapely.from_wkb(columns[GEOMETRY])
    return columns


# -- Hilbert order --------------------------------------------------------------------------------

_HILBERT_LEVEL = 16


def _hilbert_index(x: NDArray[np.uint32], y: NDArray[np.uint32]) -> NDArray[np.uint32]:
    """Distance along the level-16 Hilbert curve of integer cells ``x``, ``y`` (0 .. 2**16 - 1).

    The curve is walked from the largest quadrant down: each level adds the quadrant's rank
    along the curve, then turns the coordinates so the next level sees its sub-square in the
    curve's base orientation.

    The curve starts in one corner, passes the two beside it and ends in the fourth:

    >>> top = 2**16 - 1
    >>> x, y = np.array([0, 0, top, top], np.uint32), np.array([0, top, top, 0], np.uint32)
    >>> (_hilbert_index(x, y) / (2**32 - 1)).round(3).tolist()
    [0.0, 0.333, 0.667, 1.0]
    """
    side = 1 << _HILBERT_LEVEL
    x, y = x.astype(np.int64), y.astype(np.int64)
    distance = np.zeros(x.shape, dtype=np.int64)
    half = side >> 1
    while half:
        right, top = (x & half) > 0, (y & half) > 0
        distance += half * half * ((3 * right) ^ top)
        mirror = right & ~top
        x = np.where(mirror, side - 1 - x, x)
        y = np.where(mirror, side - 1 - y, y)
        x, y = np.where(top, x, y), np.where(top, y, x)
        half >>= 1
    return distance.astype(np.uint32)


def _discrete(values: NDArray[np.float64], low: float, high: float) -> NDArray[np.uint32]:
    side = 2**_HILBERT_LEVEL - 1
    if high - low == 0:
        return np.zeros(values.shape, dtype=np.uint32)
    scaled = (values - low) * (side / (high - low))
    return np.clip(scaled, 0, side).astype(np.uint32)


def hilbert_distance(
    geometries: NDArray[np.object_], bounds: tuple[float, float, float, float]
) -> NDArray[np.uint32]:
    """Distance of each geometry's bbox centre along a Hilbert curve spanning ``bounds``.

    The same values as geopandas' ``GeoSeries.hilbert_distance(total_bounds=bounds)``.

    Examples
    --------
    >>> hilbert_distance(np.array([shapely.Point(0, 0), shapely.Point(1, 0)]), (0, 0, 1, 1)).tolist()
    [0, 4294967295]
    """
    box = shapely.bounds(np.asarray(geometries, dtype=object)).reshape(-1, 4)
    x = _discrete((box[:, 0] + box[:, 2]) / 2.0, bounds[0], bounds[2])
    y = _discrete((box[:, 1] + box[:, 3]) / 2.0, bounds[1], bounds[3])
    return _hilbert_index(x, y)


def hilbert_order(
    geometries: NDArray[np.object_],
    bounds: tuple[float, float, float, float],
    ties: Sequence[NDArray[Any]] = (),
) -> NDArray[np.intp]:
    """Row order along the Hilbert curve (spatial locality), ties broken by ``ties`` in turn.

    Examples
    --------
    >>> points = np.array([shapely.Point(1, 1), shapely.Point(0, 0), shapely.Point(0, 0)])
    >>> hilbert_order(points, (0.0, 0.0, 1.0, 1.0), ties=[np.array([2, 1, 0])]).tolist()
    [2, 1, 0]
    >>> hilbert_order(points[:0], (0.0, 0.0, 1.0, 1.0)).tolist()
    []
    """
    distance = hilbert_distance(geometries, bounds)
    return np.lexsort((*reversed(list(ties)), distance))


# -- the summary of a part ------------------------------------------------------------------------

PROVENANCE_NAMES = {int(p): p.name.lower() for p in Provenance}


@dataclass(frozen=True)
class PartStats:
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
    def of(cls, columns: Columns, network_ids: Sequence[str]) -> PartStats:
        """The sums of a part's ``columns`` (as :func:`read_part_columns` gives them)."""
        length = columns["length_m"]
        kinds = columns["handover_kind"]
        recommended = columns["network"]
        covered_m: dict[str, float] = {}
        recommended_m: dict[str, float] = {}
        by_provenance: dict[str, dict[str, float]] = {}
        for nid in network_ids:
            covered = columns[f"{nid}_sinr_db"] >= USABLE_SINR_DB
            covered_m[nid] = float(length[covered].sum())
            recommended_m[nid] = float(length[recommended == nid].sum())
            provenance = columns[f"{nid}_provenance"]
            by_provenance[nid] = {
                name: float(length[covered & (provenance == code)].sum())
                for code, name in PROVENANCE_NAMES.items()
            }
        return cls(
            edge_m=float(length.sum()),
            tunnel_m=float(length[columns["in_tunnel"]].sum()),
            segments=len(length),
            gap_m=float(length[columns["gap"]].sum()),
            handovers={
                kind: int((kinds == kind).sum()) for kind in sorted(set(kinds.tolist()) - {""})
            },
            covered_m=covered_m,
            recommended_m=recommended_m,
            by_provenance=by_provenance,
        )


@dataclass(frozen=True)
class PartSummary:
    """What the region outputs take from one part, besides its segments for the GeoPackage.

    Computed where the part was built (:func:`summarize_part`), so that a parallel build does
    this work in its workers rather than in a serial merge at the end. ``gaps`` and
    ``handovers`` are :func:`geo_table` tables (Arrow: pickled cheaply, no pandas).
    """

    segments: int
    stats: PartStats
    gaps: pa.Table
    handovers: pa.Table


def summarize_part(columns: Columns, network_ids: Sequence[str]) -> PartSummary:
    """Sums, gap stretches and handover points of one part (:func:`read_part_columns`)."""
    return PartSummary(
        segments=len(columns["length_m"]),
        stats=PartStats.of(columns, network_ids),
        gaps=_gaps(columns),
        handovers=_handover_points(columns),
    )


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


GAP_TYPES: dict[str, Any] = {
    "tile": object, "chain": np.int32, "from_u": np.int64, "from_v": np.int64,
    "from_key": np.int64, "from_m": np.float64, "to_u": np.int64, "to_v": np.int64,
    "to_key": np.int64, "to_m": np.float64, "length_m": np.float64, "tunnel_m": np.float64,
    "segments": np.int32,
}  # fmt: skip


def _gaps(columns: Columns) -> pa.Table:
    """Stretches of consecutive gap segments along each chain of one part."""
    order = np.lexsort((columns["chain_pos"], columns["chain"]))
    col = {name: np.asarray(values)[order] for name, values in columns.items()}
    runs = _runs(col["gap"], col["chain"].astype(np.int64))
    starts = np.array([s for s, _ in runs], dtype=np.intp)
    lasts = np.array([e - 1 for _, e in runs], dtype=np.intp)
    lines = np.empty(len(runs), dtype=object)
    length = np.zeros(len(runs))
    tunnel = np.zeros(len(runs))
    for i, (start, stop) in enumerate(runs):
        coords = shapely.get_coordinates(col[GEOMETRY][start:stop])
        keep = np.concatenate(([True], np.any(np.diff(coords, axis=0) != 0, axis=1)))
        lines[i] = shapely.linestrings(coords[keep] if keep.sum() >= 2 else coords[:2])
        metres = col["length_m"][start:stop]
        length[i] = metres.sum()
        tunnel[i] = metres[col["in_tunnel"][start:stop]].sum()
    rows = {
        "tile": col["tile"][starts],
        "chain": col["chain"][starts],
        "from_u": col["u"][starts],
        "from_v": col["v"][starts],
        "from_key": col["key"][starts],
        "from_m": col["start_m"][starts],
        "to_u": col["u"][lasts],
        "to_v": col["v"][lasts],
        "to_key": col["key"][lasts],
        "to_m": col["end_m"][lasts],
        "length_m": length,
        "tunnel_m": tunnel,
        "segments": (lasts - starts + 1),
    }
    return geo_table({k: np.asarray(v).astype(GAP_TYPES[k]) for k, v in rows.items()}, lines)


HANDOVER_TYPES: dict[str, Any] = {
    "tile": object, "chain": np.int32, "u": np.int64, "v": np.int64, "key": np.int64,
    "at_m": np.float64, "from_network": object, "to_network": object, "kind": object,
}  # fmt: skip


def _handover_points(columns: Columns) -> pa.Table:
    """The first point of every segment that starts with a planned switch."""
    switched = np.flatnonzero(columns["handover_kind"] != "")
    source = {
        "tile": "tile", "chain": "chain", "u": "u", "v": "v", "key": "key", "at_m": "start_m",
        "from_network": "handover_from", "to_network": "network", "kind": "handover_kind",
    }  # fmt: skip
    rows = {
        name: np.asarray(columns[column])[switched].astype(HANDOVER_TYPES[name])
        for name, column in source.items()
    }
    first = shapely.get_point(np.asarray(columns[GEOMETRY])[switched], 0)
    return geo_table(rows, shapely.points(shapely.get_coordinates(first)))
