"""Road graph from OpenStreetMap, snapping and routing.

:func:`load_road_graph` reads an OSM extract (``.pbf``, ``.osm``, ``.osm.gz``, ``.osm.bz2``) with
pyosmium and keeps the drivable ways, like the OSMnx/pyrosm "drive" network: the classes in
:data:`DRIVABLE_HIGHWAYS` (no ``service``, ``track``, ``footway``, ...), without
``access``/``motor_vehicle``/``motorcar`` = ``no``/``private``, parking aisles and driveways
(``service=*``) and ``area=yes``. Ways are
split at every node they share with another drivable way (intersections) and at their ends; every
piece becomes one directed edge per allowed direction of a ``networkx.MultiDiGraph``.

Graph attributes: ``crs`` (always ``"EPSG:4326"``), ``source`` (file name). Node attributes:
``x`` (lon), ``y`` (lat). Edge attributes:

``geometry``  shapely ``LineString`` in lon/lat, oriented in the direction of travel
``length_m``  geodesic length on the WGS84 ellipsoid (``pyproj.Geod``)
``speed_mps`` from ``maxspeed`` (``maxspeed:forward``/``:backward`` per direction; units
              ``km/h`` (default), ``mph``, ``knots``; ``none``; lists ``a;b`` are averaged;
              implicit values such as ``FR:urban``), else :data:`DEFAULT_SPEED_KMH` of the class
``travel_time_s`` ``length_m / speed_mps``
``highway``, ``name``, ``ref`` (empty string when untagged), ``osm_id``, ``oneway``,
``tunnel``, ``bridge`` (bool)

One-way rules: ``oneway`` = ``yes``/``true``/``1`` (forward only), ``-1``/``reverse`` (backward
only), ``no``/``false``/``0``/``reversible``/``alternating`` (both: the direction of a reversible
way changes over the day, so either may be used, as in OSMnx); untagged roundabouts
(``junction=roundabout``/``circular``) and motorways (``motorway``, ``motorway_link``) are one-way.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import logging
import math
import os
import re
import weakref
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np
import pyarrow.parquet as pq
import shapely
from numpy.typing import NDArray
from pyproj import Transformer
from shapely.geometry import LineString

from commap.arrays import read_parquet_columns
from commap.errors import InvalidInputError

if TYPE_CHECKING:
    import geopandas as gpd

# pyosmium, geopandas and pandas (reading OSM, writing the graph) are imported where a map is
# built: loading a built map and routing on it need none of them.
from commap.files import atomic_path
from commap.geo.corridor import Route, route_from_polyline
from commap.geo.geodesy import GEOD
from commap.geo.routefile import read_route_file

__all__ = [
    "DEFAULT_SPEED_KMH",
    "DRIVABLE_HIGHWAYS",
    "FAR_FROM_ROAD_M",
    "EdgeKey",
    "RoadPoint",
    "bridge_geometries",
    "k_routes",
    "load_road_graph",
    "read_road_graph",
    "read_route_file",
    "route_from_edges",
    "route_from_polyline",
    "shortest_route",
    "snap",
    "snap_to_road",
    "write_road_graph",
]

log = logging.getLogger(__name__)

EdgeKey = tuple[int, int, int]
Weight = str | Callable[[Any, Any, dict[Any, Any]], float | None]

CRS = "EPSG:4326"
NODES_FILE = "roads_nodes.parquet"
EDGES_FILE = "roads_edges.parquet"
_GRAPH_META_KEY = b"commap.graph"

# Default speeds (km/h) per highway class where a way has no usable maxspeed: typical
# European limits, lowered for classes that are mostly urban or narrow.
DEFAULT_SPEED_KMH: dict[str, float] = {
    "motorway": 110.0,
    "motorway_link": 60.0,
    "trunk": 90.0,
    "trunk_link": 50.0,
    "primary": 70.0,
    "primary_link": 50.0,
    "secondary": 60.0,
    "secondary_link": 45.0,
    "tertiary": 50.0,
    "tertiary_link": 40.0,
    "unclassified": 40.0,
    "residential": 30.0,
    "living_street": 10.0,
    "road": 30.0,
}
DRIVABLE_HIGHWAYS: frozenset[str] = frozenset(DEFAULT_SPEED_KMH)

_EXCLUDED_ACCESS = frozenset({"no", "private"})
# service=* values that mark parking lots and driveways even on a public road class (OSMnx "drive")
_EXCLUDED_SERVICE = frozenset(
    {"alley", "driveway", "emergency_access", "parking", "parking_aisle", "private"}
)
_ONEWAY_FORWARD = frozenset({"yes", "true", "1"})
_ONEWAY_BACKWARD = frozenset({"-1", "reverse"})
_ONEWAY_BOTH = frozenset({"no", "false", "0", "reversible", "alternating"})
_IMPLIED_ONEWAY_HIGHWAYS = frozenset({"motorway", "motorway_link"})
_ROUNDABOUTS = frozenset({"roundabout", "circular"})
# tunnel=culvert is a pipe under the road, not the road in a tunnel
_NOT_FLAG = frozenset({"no", "false", "0", "culvert"})

_KMH_PER_MPH = 1.609344
_KMH_PER_KNOT = 1.852
_NO_LIMIT_KMH = 130.0  # "maxspeed=none": cruise at the German advisory speed
_WALK_KMH = 7.0
# implicit limits "CC:zone" (https://wiki.openstreetmap.org/wiki/Key:maxspeed#Implicit_maxspeed_values)
_IMPLICIT_KMH: dict[str, float] = {
    "urban": 50.0,
    "rural": 90.0,
    "trunk": 110.0,
    "motorway": 130.0,
    "living_street": 20.0,
    "walk": _WALK_KMH,
    "de:rural": 100.0,
    "at:rural": 100.0,
    "fr:rural": 80.0,
    "gb:nsl_single": 60.0 * _KMH_PER_MPH,
    "gb:nsl_dual": 70.0 * _KMH_PER_MPH,
    "gb:motorway": 70.0 * _KMH_PER_MPH,
}
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z/]*)\s*$")
_ZONE = re.compile(r"zone:?(\d+)$")


# -- loading ------------------------------------------------------------------------------------


@dataclass
class _Way:
    """A drivable way with its node refs and coordinates copied out of pyosmium."""

    osm_id: int
    tags: dict[str, str]
    refs: NDArray[np.int64]
    lon: NDArray[np.float64]
    lat: NDArray[np.float64]


# Tag values that mark a missing name rather than name a road (OSM mappers' to-do notes).
_PLACEHOLDER_LABELS = frozenset({"FIXME", "TODO", "?"})


def _is_drivable(tags: Mapping[str, str]) -> bool:
    if tags.get("highway") not in DRIVABLE_HIGHWAYS or tags.get("area") == "yes":
        return False
    if tags.get("service") in _EXCLUDED_SERVICE:
        return False
    return not any(
        tags.get(key) in _EXCLUDED_ACCESS for key in ("access", "motor_vehicle", "motorcar")
    )


def _read_ways(path: Path) -> list[_Way]:
    """All drivable ways of the file, with node locations; invalid locations become NaN."""
    import osmium

    processor = (
        osmium.FileProcessor(str(path), osmium.osm.NODE | osmium.osm.WAY)
        .with_locations()
        .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY))
        .with_filter(osmium.filter.KeyFilter("highway"))
    )
    ways: list[_Way] = []
    # pyosmium reports truncated or corrupt input as RuntimeError while iterating (some
    # format errors as ValueError/OSError)
    try:
        for way in processor:
            if not isinstance(way, osmium.osm.Way):  # the entity filter passes ways only
                continue
            tags = {tag.k: tag.v for tag in way.tags}
            if not _is_drivable(tags):
                continue
            refs = np.fromiter((n.ref for n in way.nodes), dtype=np.int64)
            lonlat = np.array(
                [(n.lon, n.lat) if n.location.valid() else (math.nan, math.nan) for n in way.nodes],
                dtype=np.float64,
            ).reshape(-1, 2)
            ways.append(_Way(way.id, tags, refs, lonlat[:, 0], lonlat[:, 1]))
    except (RuntimeError, ValueError, OSError) as exc:
        raise InvalidInputError(f"{path}: cannot read OSM data ({exc})", field=str(path)) from None
    return ways


def _parse_number_kmh(text: str) -> float | None:
    match = _NUMBER.match(text)
    if match is None:
        return None
    value, unit = float(match.group(1)), match.group(2)
    if unit in ("", "km/h", "kmh", "kph"):
        return value
    if unit == "mph":
        return value * _KMH_PER_MPH
    if unit == "knots":
        return value * _KMH_PER_KNOT
    return None


def _parse_maxspeed_kmh(value: str | None) -> float | None:
    """Parse an OSM ``maxspeed`` value to km/h; None when it carries no usable number.

    Examples
    --------
    >>> _parse_maxspeed_kmh("50"), _parse_maxspeed_kmh("90;30")
    (50.0, 60.0)
    >>> round(_parse_maxspeed_kmh("30 mph"), 2), _parse_maxspeed_kmh("none")
    (48.28, 130.0)
    >>> _parse_maxspeed_kmh("signals") is None, _parse_maxspeed_kmh(None) is None
    (True, True)
    """
    if value is None:
        return None
    speeds: list[float] = []
    for part in value.lower().split(";"):
        text = part.strip()
        kmh = _parse_number_kmh(text)
        if kmh is None:
            if text == "none":
                kmh = _NO_LIMIT_KMH
            elif text == "walk":
                kmh = _WALK_KMH
            elif (zone := _ZONE.search(text)) is not None:
                kmh = float(zone.group(1))
            elif text in _IMPLICIT_KMH:
                kmh = _IMPLICIT_KMH[text]
            elif ":" in text:
                kmh = _IMPLICIT_KMH.get(text.split(":", 1)[1])
        if kmh is not None and kmh > 0:
            speeds.append(kmh)
    return sum(speeds) / len(speeds) if speeds else None


def _speeds_mps(tags: Mapping[str, str]) -> tuple[float, float]:
    """Forward and backward speed of a way in m/s."""
    default = DEFAULT_SPEED_KMH[tags["highway"]]
    both = _parse_maxspeed_kmh(tags.get("maxspeed"))
    forward = _parse_maxspeed_kmh(tags.get("maxspeed:forward")) or both or default
    backward = _parse_maxspeed_kmh(tags.get("maxspeed:backward")) or both or default
    return forward / 3.6, backward / 3.6


def _directions(tags: Mapping[str, str], osm_id: int) -> tuple[bool, bool]:
    """Whether the way may be driven forward and backward."""
    oneway = tags.get("oneway", "").strip().lower()
    if oneway in _ONEWAY_FORWARD:
        return True, False
    if oneway in _ONEWAY_BACKWARD:
        return False, True
    if oneway in _ONEWAY_BOTH:
        return True, True
    if oneway:
        log.debug("way %d: unknown oneway=%r, taken as two-way", osm_id, oneway)
    implied = tags.get("junction") in _ROUNDABOUTS or tags["highway"] in _IMPLIED_ONEWAY_HIGHWAYS
    return True, not implied


def _flag(tags: Mapping[str, str], key: str) -> bool:
    value = tags.get(key)
    return value is not None and value.strip().lower() not in _NOT_FLAG


def _split_points(ways: Sequence[_Way]) -> set[int]:
    """Node ids where ways are split: shared by two ways (or twice in one) and way ends."""
    counts: Counter[int] = Counter()
    for way in ways:
        counts.update(way.refs.tolist())
    split = {node for node, count in counts.items() if count > 1}
    for way in ways:
        split.add(int(way.refs[0]))
        split.add(int(way.refs[-1]))
    return split


def _valid_runs(way: _Way) -> list[slice]:
    """Runs of consecutive nodes with a known location (extracts clip ways at their border)."""
    ok = np.isfinite(way.lon) & np.isfinite(way.lat)
    if ok.all():
        return [slice(0, len(ok))]
    edges = np.flatnonzero(np.diff(np.concatenate(([0], ok.astype(np.int8), [0]))))
    return [slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _in_bbox(lon: NDArray[np.float64], lat: NDArray[np.float64], bbox: Sequence[float]) -> bool:
    lon0, lat0, lon1, lat1 = bbox
    return bool(((lon >= lon0) & (lon <= lon1) & (lat >= lat0) & (lat <= lat1)).any())


def _label(tags: Mapping[str, str], key: str) -> str:
    """A ``name``/``ref`` tag, or "" for mappers' placeholders such as ``name=FIXME``.

    Examples
    --------
    >>> _label({"name": "FIXME"}, "name"), _label({"ref": "CG-2"}, "ref"), _label({}, "name")
    ('', 'CG-2', '')
    """
    value = tags.get(key, "").strip()
    return "" if value.upper() in _PLACEHOLDER_LABELS else value


def _add_way(
    graph: nx.MultiDiGraph, way: _Way, split: set[int], bbox: Sequence[float] | None
) -> None:
    """Add the edges of one way, split at ``split`` nodes and at unknown locations."""
    tags = way.tags
    forward_ok, backward_ok = _directions(tags, way.osm_id)
    forward_mps, backward_mps = _speeds_mps(tags)
    common = {
        "osm_id": way.osm_id,
        "highway": tags["highway"],
        "name": _label(tags, "name"),
        "ref": _label(tags, "ref"),
        "oneway": forward_ok != backward_ok,
        "tunnel": _flag(tags, "tunnel"),
        "bridge": _flag(tags, "bridge"),
    }
    for run in _valid_runs(way):
        refs, lon, lat = way.refs[run], way.lon[run], way.lat[run]
        if len(refs) < 2:
            continue
        _, _, leg_m = GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
        cum_m = np.concatenate(([0.0], np.cumsum(leg_m)))
        cuts = [0] + [i for i in range(1, len(refs) - 1) if int(refs[i]) in split] + [len(refs) - 1]
        for a, b in itertools.pairwise(cuts):
            if bbox is not None and not _in_bbox(lon[a : b + 1], lat[a : b + 1], bbox):
                continue
            u, v = int(refs[a]), int(refs[b])
            graph.add_node(u, x=float(lon[a]), y=float(lat[a]))
            graph.add_node(v, x=float(lon[b]), y=float(lat[b]))
            coords = np.column_stack((lon[a : b + 1], lat[a : b + 1]))
            length_m = float(cum_m[b] - cum_m[a])
            if forward_ok:
                _add_edge(graph, u, v, LineString(coords), length_m, forward_mps, common)
            if backward_ok:
                _add_edge(graph, v, u, LineString(coords[::-1]), length_m, backward_mps, common)


def _add_edge(
    graph: nx.MultiDiGraph,
    u: int,
    v: int,
    geometry: LineString,
    length_m: float,
    speed_mps: float,
    common: Mapping[str, Any],
) -> None:
    graph.add_edge(
        u,
        v,
        geometry=geometry,
        length_m=length_m,
        speed_mps=speed_mps,
        travel_time_s=length_m / speed_mps,
        **common,
    )


def _check_bbox(bbox: Sequence[float] | None) -> None:
    if bbox is None:
        return
    values = [float(b) for b in bbox]
    if (
        len(values) != 4
        or not all(math.isfinite(b) for b in values)
        or not (values[0] < values[2] and values[1] < values[3])
    ):
        raise InvalidInputError(
            f"bbox {bbox!r} must be (lon_min, lat_min, lon_max, lat_max) with min < max",
            field="bbox",
        )


def load_road_graph(
    path: str | os.PathLike[str], *, bbox: Sequence[float] | None = None
) -> nx.MultiDiGraph:
    """Read the drivable road network of an OSM file into a directed multigraph.

    Parameters
    ----------
    path : str or PathLike
        OSM extract: ``.pbf``, ``.osm``, ``.osm.gz`` or ``.osm.bz2``.
    bbox : (lon_min, lat_min, lon_max, lat_max), optional
        Keep only edges with at least one vertex inside (kept whole, not clipped).

    Returns
    -------
    networkx.MultiDiGraph
        Nodes are OSM node ids; attributes as described in the module docstring.

    Raises
    ------
    InvalidInputError
        Missing, truncated or corrupt file, or no drivable road (inside ``bbox``).

    Examples
    --------
    >>> graph = load_road_graph("maps/andorra/data/andorra.osm.pbf")
    >>> graph.graph["crs"], graph.number_of_nodes() > 1000
    ('EPSG:4326', True)
    >>> load_road_graph("maps/andorra/data/andorra.osm.pbf", bbox=(0.0, 0.0, 0.1, 0.1))
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: maps/andorra/data/andorra.osm.pbf: no drivable road ...
    """
    path = Path(path)
    _check_bbox(bbox)
    if not path.is_file():
        raise InvalidInputError(f"{path}: road file not found", field=str(path))
    ways = _read_ways(path)
    split = _split_points(ways)
    graph = nx.MultiDiGraph(crs=CRS, source=path.name)
    for way in ways:
        _add_way(graph, way, split, bbox)
    if graph.number_of_edges() == 0:
        where = "" if bbox is None else f" inside bbox {tuple(bbox)}"
        raise InvalidInputError(f"{path}: no drivable road{where}", field=str(path))
    log.info(
        "%s: %d drivable ways -> %d nodes, %d edges",
        path.name,
        len(ways),
        graph.number_of_nodes(),
        graph.number_of_edges(),
    )
    return graph


# -- GeoParquet ---------------------------------------------------------------------------------


def _json_graph_attrs(graph: nx.MultiDiGraph) -> dict[str, Any]:
    """Graph attributes that survive JSON (private ``_*`` caches are skipped)."""
    attrs: dict[str, Any] = {}
    for key, value in graph.graph.items():
        if str(key).startswith("_"):
            continue
        try:
            json.dumps(value)
        except TypeError:
            log.warning("graph attribute %r is not JSON serialisable; not written", key)
            continue
        attrs[str(key)] = value
    return attrs


def _write_parquet_atomic(frame: gpd.GeoDataFrame, target: Path, meta: bytes) -> None:
    with atomic_path(target, keep_suffix=True) as tmp:
        frame.to_parquet(tmp, index=False)
        # add the graph attributes to the schema metadata (geopandas keeps its "geo" entry)
        table = pq.read_table(tmp)
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), _GRAPH_META_KEY: meta}
        )
        pq.write_table(table, tmp)


def write_road_graph(graph: nx.MultiDiGraph, directory: str | os.PathLike[str]) -> None:
    """Write a road graph as GeoParquet ``roads_nodes.parquet`` and ``roads_edges.parquet``.

    Each file is written under a temporary name and moved into place, so readers never see a
    half-written file. Every edge attribute becomes a column; graph attributes go to the
    schema metadata.

    Raises
    ------
    InvalidInputError
        If an edge has no ``geometry`` or a node no ``x``/``y``.

    Examples
    --------
    >>> import tempfile
    >>> graph = load_road_graph("tests/data/roads/monaco.osm.gz")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_road_graph(graph, d)
    ...     read_road_graph(d).number_of_edges() == graph.number_of_edges()
    True
    """
    import geopandas as gpd

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = json.dumps(_json_graph_attrs(graph)).encode()
    try:
        node_ids = list(graph.nodes)
        xs = [float(graph.nodes[n]["x"]) for n in node_ids]
        ys = [float(graph.nodes[n]["y"]) for n in node_ids]
        rows = [{"u": u, "v": v, "key": k, **d} for u, v, k, d in graph.edges(keys=True, data=True)]
        geoms = [row.pop("geometry") for row in rows]
    except KeyError as exc:
        raise InvalidInputError(f"road graph lacks attribute {exc} needed to write it") from None
    nodes = gpd.GeoDataFrame(
        {"node_id": np.asarray(node_ids, dtype=np.int64), "x": xs, "y": ys},
        geometry=shapely.points(xs, ys),
        crs=graph.graph.get("crs", CRS),
    )
    import pandas as pd

    table = (
        pd.DataFrame(rows) if rows else pd.DataFrame({"u": [], "v": [], "key": []}, dtype=np.int64)
    )
    edges = gpd.GeoDataFrame(table, geometry=geoms, crs=graph.graph.get("crs", CRS))
    _write_parquet_atomic(nodes, directory / NODES_FILE, meta)
    _write_parquet_atomic(edges, directory / EDGES_FILE, meta)


def _read_frame(path: Path, required: Iterable[str]) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """A road table as one list per column, its geometry (WKB, as geopandas writes it) decoded
    to shapely objects.

    Read with pyarrow and shapely directly: geopandas would also parse the table's CRS, which
    costs more than the rest of the read (the graph keeps its CRS in its own attributes), and
    pandas alone costs a third of a second to import.
    """
    try:
        columns, metadata = read_parquet_columns(path)
        attrs = json.loads(metadata.get(_GRAPH_META_KEY, b"{}"))
        frame = {
            name: list(values) if isinstance(values, list) else values.tolist()
            for name, values in columns.items()
        }
        if "geometry" in frame:
            frame["geometry"] = shapely.from_wkb(frame["geometry"]).tolist()
    except (
        OSError,
        ValueError,
        shapely.errors.GEOSException,
    ) as exc:  # pyarrow: OSError/ValueError
        raise InvalidInputError(f"{path}: unreadable road table ({exc})", field=str(path)) from None
    missing = [c for c in required if c not in frame]
    if missing:
        raise InvalidInputError(f"{path}: missing columns {missing}", field=str(path))
    return frame, attrs


def read_road_graph(directory: str | os.PathLike[str]) -> nx.MultiDiGraph:
    """Read a road graph written by :func:`write_road_graph` (exact round trip).

    Raises
    ------
    InvalidInputError
        If a file is missing, unreadable or lacks a required column.
    """
    directory = Path(directory)
    nodes, attrs = _read_frame(directory / NODES_FILE, ("node_id", "x", "y"))
    edges, _ = _read_frame(directory / EDGES_FILE, ("u", "v", "key", "geometry"))
    graph = nx.MultiDiGraph(**attrs)
    graph.graph.setdefault("crs", CRS)
    graph.add_nodes_from(
        (int(n), {"x": x, "y": y})
        for n, x, y in zip(nodes["node_id"], nodes["x"], nodes["y"], strict=True)
    )
    columns = [c for c in edges if c not in ("u", "v", "key")]
    values = edges
    for i, (u, v, k) in enumerate(zip(edges["u"], edges["v"], edges["key"], strict=True)):
        if u not in graph or v not in graph:
            raise InvalidInputError(
                f"{directory / EDGES_FILE}: edge ({u}, {v}) references an unknown node"
            )
        graph.add_edge(u, v, key=k, **{c: values[c][i] for c in columns})
    return graph


# -- snapping -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SnapIndex:
    n_nodes: int
    node_ids: NDArray[np.int64]
    xy: NDArray[np.float64]  # (nodes, 2) local metres
    to_local: Transformer


# one index per graph object; weak keys so that a dropped graph frees its tree
_SNAP_CACHE: weakref.WeakKeyDictionary[nx.MultiDiGraph, _SnapIndex] = weakref.WeakKeyDictionary()


def _snap_index(graph: nx.MultiDiGraph) -> _SnapIndex:
    cached = _SNAP_CACHE.get(graph)
    if cached is not None and cached.n_nodes == graph.number_of_nodes():
        return cached
    if graph.number_of_nodes() == 0:
        raise InvalidInputError("road graph has no nodes to snap to")
    node_ids = np.fromiter(graph.nodes, dtype=np.int64, count=graph.number_of_nodes())
    x = np.array([graph.nodes[n]["x"] for n in node_ids.tolist()], dtype=np.float64)
    y = np.array([graph.nodes[n]["y"] for n in node_ids.tolist()], dtype=np.float64)
    lon0 = (float(x.min()) + float(x.max())) / 2.0
    lat0 = (float(y.min()) + float(y.max())) / 2.0
    # azimuthal equidistant around the graph centre: metric and accurate over a region
    to_local = Transformer.from_crs(
        CRS, f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +datum=WGS84 +units=m", always_xy=True
    )
    px, py = to_local.transform(x, y)
    index = _SnapIndex(graph.number_of_nodes(), node_ids, np.column_stack((px, py)), to_local)
    _SNAP_CACHE[graph] = index
    return index


def _check_lonlat(lon: float, lat: float, field: str) -> tuple[float, float]:
    try:
        lon_f, lat_f = float(lon), float(lat)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"{field}: ({lon!r}, {lat!r}) is not a position", field=field
        ) from None
    if not (math.isfinite(lon_f) and math.isfinite(lat_f)):
        raise InvalidInputError(f"{field}: coordinates must be finite", field=field)
    if not (-180.0 <= lon_f <= 180.0 and -90.0 <= lat_f <= 90.0):
        raise InvalidInputError(
            f"{field}: lon {lon_f} / lat {lat_f} out of range (lon -180..180, lat -90..90)",
            field=field,
        )
    return lon_f, lat_f


def snap(
    graph: nx.MultiDiGraph,
    lon: float,
    lat: float,
    *,
    max_distance_m: float = 1000.0,
    field: str = "position",
) -> int:
    """Id of the graph node nearest to ``(lon, lat)``.

    A k-d tree over the nodes in a local metric projection is built on first use and cached
    per graph object (rebuilt if the node count changes).

    Parameters
    ----------
    graph : networkx.MultiDiGraph
        Road graph with node attributes ``x`` (lon) and ``y`` (lat).
    lon, lat : float
        Position, WGS84 degrees.
    max_distance_m : float
        Largest accepted geodesic distance to the nearest node.
    field : str
        Name of the position in error messages (``"origin"``, ...).

    Raises
    ------
    InvalidInputError
        Bad coordinates, or no node within ``max_distance_m``.

    Examples
    --------
    >>> graph = load_road_graph("maps/andorra/data/andorra.osm.pbf")
    >>> node = snap(graph, 1.5218, 42.5063)
    >>> abs(graph.nodes[node]["x"] - 1.5218) < 0.01
    True
    >>> snap(graph, 0.0, 0.0)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: position: (0.00000, 0.00000) is ... km from the nearest ...
    """
    lon_f, lat_f = _check_lonlat(lon, lat, field)
    if not max_distance_m > 0:
        raise InvalidInputError(f"max_distance_m must be > 0, got {max_distance_m}")
    index = _snap_index(graph)
    px, py = index.to_local.transform(lon_f, lat_f)
    # one position against every node: a scan is as quick as a tree query for one point
    i = int(np.argmin((index.xy[:, 0] - px) ** 2 + (index.xy[:, 1] - py) ** 2))
    node = int(index.node_ids[i])
    _, _, distance_m = GEOD.inv(lon_f, lat_f, graph.nodes[node]["x"], graph.nodes[node]["y"])
    if distance_m > max_distance_m:
        raise InvalidInputError(
            f"{field}: ({lat_f:.5f}, {lon_f:.5f}) is {distance_m / 1000:.1f} km from the nearest "
            f"road node (limit {max_distance_m:.0f} m)",
            field=field,
        )
    return node


# Beyond this distance from the road, a snapped position is reported to the user.
FAR_FROM_ROAD_M = 200.0


@dataclass(frozen=True)
class RoadPoint:
    """A position snapped onto a road: an edge, how far along it, and how far off the road.

    ``fraction`` runs from 0 at the edge's start node to 1 at its end node (along the edge's
    geometry); ``distance_m`` is from the requested position to the snapped one.
    """

    edge: EdgeKey
    fraction: float
    distance_m: float


@dataclass(frozen=True)
class _EdgeTree:
    keys: list[EdgeKey]
    lines: list[Any]  # shapely LineStrings in the local metric projection
    tree: shapely.STRtree


@dataclass(frozen=True)
class _EdgeIndex:
    n_edges: int
    by_role: dict[str, _EdgeTree]
    to_local: Transformer


_EDGE_CACHE: weakref.WeakKeyDictionary[nx.MultiDiGraph, _EdgeIndex] = weakref.WeakKeyDictionary()
_ROLES = ("origin", "destination")


def _edge_count(graph: nx.MultiDiGraph) -> int:
    """``graph.number_of_edges()`` without its degree views: some 5x faster, and it is asked
    on every route to see whether a cached index still fits the graph."""
    return sum(len(keys) for nbrs in graph._succ.values() for keys in nbrs.values())


def _edge_index(graph: nx.MultiDiGraph) -> _EdgeIndex:
    """Spatial indexes of the edges a route may start on and end on.

    Routes run in the largest strongly connected component: an origin edge must lead into it
    (its end node in it), a destination edge must be reached from it (its start node in it).
    So every snapped origin reaches every snapped destination, and the small islands of an OSM
    extract (car parks, clipped ways, one-way stubs) are never snapped to.
    """
    cached = _EDGE_CACHE.get(graph)
    if cached is not None and cached.n_edges == _edge_count(graph):
        return cached
    if graph.number_of_edges() == 0:
        raise InvalidInputError("road graph has no roads to snap to")
    main = max(nx.strongly_connected_components(graph), key=len)
    keys = [(int(u), int(v), int(k)) for u, v, k in graph.edges(keys=True)]
    keys = [e for e in keys if e[0] in main or e[1] in main]
    if not keys:
        raise InvalidInputError("road graph has no connected roads to snap to")
    to_local = _snap_index(graph).to_local
    geoms = [graph.edges[e]["geometry"] for e in keys]
    coords = shapely.get_coordinates(geoms)
    counts = shapely.get_num_coordinates(geoms)
    px, py = to_local.transform(coords[:, 0], coords[:, 1])
    lines = shapely.linestrings(
        np.column_stack((px, py)), indices=np.repeat(np.arange(len(keys)), counts)
    ).tolist()
    by_role = {}
    for role, end in zip(_ROLES, (1, 0), strict=True):
        pick = [i for i, e in enumerate(keys) if e[end] in main]
        chosen = [lines[i] for i in pick]
        by_role[role] = _EdgeTree([keys[i] for i in pick], chosen, shapely.STRtree(chosen))
    index = _EdgeIndex(graph.number_of_edges(), by_role, to_local)
    _EDGE_CACHE[graph] = index
    return index


def _road_points(
    graph: nx.MultiDiGraph,
    lon: float,
    lat: float,
    *,
    max_distance_m: float,
    field: str,
    role: str,
) -> list[RoadPoint]:
    """The nearest road position on every lane of the nearest road (both directions)."""
    lon_f, lat_f = _check_lonlat(lon, lat, field)
    if not max_distance_m > 0:
        raise InvalidInputError(f"max_distance_m must be > 0, got {max_distance_m}")
    if role not in _ROLES:
        raise InvalidInputError(f"role must be origin or destination, not {role!r}", field="role")
    index = _edge_index(graph)
    edges = index.by_role[role]
    point = shapely.Point(*index.to_local.transform(lon_f, lat_f))
    found, distance = edges.tree.query_nearest(point, all_matches=True, return_distance=True)
    distance_m = float(distance[0])
    if distance_m > max_distance_m:
        raise InvalidInputError(
            f"{field}: ({lat_f:.5f}, {lon_f:.5f}) is {distance_m / 1000:.1f} km from the nearest "
            f"connected road (limit {max_distance_m:.0f} m)",
            field=field,
        )
    points = []
    for i in found.tolist():
        line = edges.lines[i]
        fraction = float(line.project(point, normalized=True)) if line.length > 0 else 0.0
        points.append(RoadPoint(edges.keys[i], fraction, distance_m))
    if distance_m > FAR_FROM_ROAD_M:
        log.warning(
            "%s (%.5f, %.5f) is %.0f m from the nearest connected road; the route starts or "
            "ends on that road",
            field,
            lat_f,
            lon_f,
            distance_m,
        )
    return points


def snap_to_road(
    graph: nx.MultiDiGraph,
    lon: float,
    lat: float,
    *,
    max_distance_m: float = 1000.0,
    field: str = "position",
    role: str = "origin",
) -> RoadPoint:
    """The nearest position on a road connected to the largest strongly connected part.

    Unlike :func:`snap` (nearest node, anywhere), this projects onto the nearest *edge*, and
    only onto edges leading into the largest strongly connected component (``role="origin"``)
    or reached from it (``role="destination"``): the islands of the graph that cannot be driven
    into and out of again are ignored, so routes between snapped positions always exist. A position more than :data:`FAR_FROM_ROAD_M`
    from the road is reported with a warning (the log of the command line shows it).

    Parameters
    ----------
    graph : networkx.MultiDiGraph
        Road graph from :func:`load_road_graph`.
    lon, lat : float
        Position, WGS84 degrees.
    max_distance_m : float
        Largest accepted distance to the road.
    field : str
        Name of the position in messages (``"origin"``, ...).
    role : {"origin", "destination"}
        Where a route starts or where it ends.

    Raises
    ------
    InvalidInputError
        Bad coordinates, or no connected road within ``max_distance_m``.

    Examples
    --------
    >>> graph = load_road_graph("maps/andorra/data/andorra.osm.pbf")
    >>> point = snap_to_road(graph, 1.5218, 42.5063)
    >>> 0.0 <= point.fraction <= 1.0, point.distance_m < 50.0
    (True, True)
    >>> snap_to_road(graph, 1.0, 42.0)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: position: (42.00000, 1.00000) is ... km from the nearest ...
    """
    return _road_points(graph, lon, lat, max_distance_m=max_distance_m, field=field, role=role)[0]


# -- routing ------------------------------------------------------------------------------------


def _weight_function(
    graph: nx.MultiDiGraph, weight: Weight
) -> Callable[[Any, Any, dict[Any, Any]], float]:
    """networkx-style weight -> ``f(u, v, {key: attrs})``, the minimum over parallel edges."""
    if callable(weight):
        func = weight

        def from_callable(u: Any, v: Any, data: dict[Any, Any]) -> float:
            value = func(u, v, data)
            return math.inf if value is None else float(value)

        return from_callable
    name = str(weight)
    sample = next(iter(graph.edges(data=True)), None)
    if sample is not None and name not in sample[2]:
        raise InvalidInputError(f"edges have no attribute {name!r} to route by", field="weight")

    def by_attribute(u: Any, v: Any, data: dict[Any, Any]) -> float:
        return min(float(attrs[name]) for attrs in data.values())

    return by_attribute


def _best_key(graph: nx.MultiDiGraph, u: int, v: int, weight: Weight) -> int:
    """Key of the parallel edge ``u -> v`` that a shortest path takes."""
    parallel = graph[u][v]
    if len(parallel) == 1:
        return int(next(iter(parallel)))
    func = _weight_function(graph, weight)
    return int(min(parallel, key=lambda k: func(u, v, {k: parallel[k]})))


def route_from_edges(graph: nx.MultiDiGraph, edges: Sequence[EdgeKey], *, name: str = "") -> Route:
    """Build a :class:`~commap.geo.corridor.Route` from consecutive graph edges ``(u, v, key)``.

    Vertices are the edges' geometries joined end to end; each leg carries its edge's
    ``speed_mps``, ``tunnel`` and ``bridge``.

    Raises
    ------
    InvalidInputError
        No edges, an unknown edge, or edges that do not join up.

    Examples
    --------
    >>> graph = load_road_graph("tests/data/roads/monaco.osm.gz")
    >>> u, v, k = next(iter(graph.edges(keys=True)))
    >>> route = route_from_edges(graph, [(u, v, k)])
    >>> len(route.lon) >= 2, route.edges == ((u, v, k),)
    (True, True)
    >>> route_from_edges(graph, [])
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: a route needs at least one edge
    """
    if not edges:
        raise InvalidInputError("a route needs at least one edge")
    coords: list[NDArray[np.float64]] = []
    speed, tunnel, bridge = [], [], []
    for i, (u, v, k) in enumerate(edges):
        if not graph.has_edge(u, v, k):
            raise InvalidInputError(f"edge ({u}, {v}, {k}) is not in the road graph")
        if i and edges[i - 1][1] != u:
            raise InvalidInputError(f"edge {i} ({u}, {v}) does not start where edge {i - 1} ends")
        data = graph.edges[u, v, k]
        xy = shapely.get_coordinates(data["geometry"])
        coords.append(xy if i == 0 else xy[1:])  # drop the shared junction vertex
        legs = len(xy) - 1
        speed.append(np.full(legs, float(data["speed_mps"])))
        tunnel.append(np.full(legs, bool(data["tunnel"])))
        bridge.append(np.full(legs, bool(data["bridge"])))
    xy = np.concatenate(coords)
    return Route(
        lon=xy[:, 0].copy(),
        lat=xy[:, 1].copy(),
        speed_mps=np.concatenate(speed),
        in_tunnel=np.concatenate(tunnel),
        on_bridge=np.concatenate(bridge),
        edges=tuple((int(u), int(v), int(k)) for u, v, k in edges),
        name=name,
    )


def _route_name(graph: nx.MultiDiGraph, edges: Sequence[EdgeKey], most: int = 3) -> str:
    """The longest-driven road refs/names, e.g. ``"CG-2, CG-3"``."""
    by_name: dict[str, float] = {}
    for u, v, k in edges:
        data = graph.edges[u, v, k]
        label = data.get("ref") or data.get("name") or ""
        if label:
            by_name[label] = by_name.get(label, 0.0) + float(data["length_m"])
    ranked = sorted(by_name, key=lambda label: -by_name[label])
    return ", ".join(ranked[:most])


@dataclass(frozen=True)
class _Adjacency:
    """A road graph's successors with the least of one edge attribute over parallel edges."""

    n_edges: int
    successors: dict[int, list[tuple[int, float]]]


_ADJACENCY_CACHE: weakref.WeakKeyDictionary[nx.MultiDiGraph, dict[str, _Adjacency]] = (
    weakref.WeakKeyDictionary()
)


def _adjacency(graph: nx.MultiDiGraph, name: str) -> _Adjacency | None:
    """The graph's ``name`` weights as successor lists, kept per graph; None where an edge
    lacks them (networkx's path then says why)."""
    n_edges = _edge_count(graph)
    cached = _ADJACENCY_CACHE.get(graph, {}).get(name)
    if cached is not None and cached.n_edges == n_edges:
        return cached
    successors: dict[int, list[tuple[int, float]]] = {}
    try:
        for u, nbrs in graph._succ.items():
            successors[u] = [
                (v, min(float(attrs[name]) for attrs in keys.values())) for v, keys in nbrs.items()
            ]
    except KeyError:
        return None
    found = _Adjacency(n_edges, successors)
    _ADJACENCY_CACHE.setdefault(graph, {})[name] = found
    return found


def _heap_paths(
    adjacency: _Adjacency, source: int, targets: Collection[int]
) -> dict[int, list[int]]:
    """Least-weight node paths from ``source`` to each reachable target, by Dijkstra with a
    binary heap stopped once every target is settled (a settled node's path is final, so each
    path is the one a search for that target alone finds)."""
    best = {source: 0.0}
    previous: dict[int, int] = {}
    done: set[int] = set()
    left = set(targets)
    found: dict[int, list[int]] = {}
    heap = [(0.0, source)]
    successors = adjacency.successors
    while heap and left:
        dist, node = heapq.heappop(heap)
        if node in done:
            continue
        done.add(node)
        if node in left:
            left.discard(node)
            path = [node]
            while path[-1] != source:
                path.append(previous[path[-1]])
            found[node] = path[::-1]
        for nxt, weight in successors[node]:
            candidate = dist + weight
            if candidate < best.get(nxt, math.inf):
                best[nxt] = candidate
                previous[nxt] = node
                heapq.heappush(heap, (candidate, nxt))
    return found


def _path_edges(
    graph: nx.MultiDiGraph,
    source: int,
    target: int,
    weight: Weight,
    paths: Mapping[int, list[int]] | None = None,
) -> list[EdgeKey]:
    """Edges of the least-``weight`` path; ``paths`` (by target) from :func:`_heap_paths`
    answers instead of a search of its own."""
    if source == target:
        return []
    if paths is not None:
        if target not in paths:
            raise InvalidInputError(
                "no drivable route between the origin and the destination", field="destination"
            )
        pairs = itertools.pairwise(paths[target])
        return [(u, v, _best_key(graph, u, v, weight)) for u, v in pairs]
    func = _weight_function(graph, weight)
    try:
        _, path = nx.bidirectional_dijkstra(graph, source, target, weight=func)
    except nx.NetworkXNoPath:
        raise InvalidInputError(
            "no drivable route between the origin and the destination", field="destination"
        ) from None
    return [(u, v, _best_key(graph, u, v, weight)) for u, v in itertools.pairwise(path)]


@dataclass(frozen=True)
class _Trip:
    """Whole edges from the origin's edge to the destination's, and where to cut the ends."""

    edges: list[EdgeKey]
    start: RoadPoint
    end: RoadPoint


def _best_trip(
    graph: nx.MultiDiGraph,
    origins: Sequence[RoadPoint],
    destinations: Sequence[RoadPoint],
    weight: Weight,
) -> _Trip:
    """The cheapest way from one of the origin lanes to one of the destination lanes."""
    best: tuple[float, _Trip] | None = None
    func = _weight_function(graph, weight)
    # an edge attribute: one Dijkstra per origin node over successor lists kept per graph,
    # to every destination node at once, some 3x faster than networkx's (which calls a weight
    # function on every edge it relaxes); a weight function (the penalties of route
    # alternatives) goes to networkx
    adjacency = _adjacency(graph, weight) if isinstance(weight, str) else None
    searched: dict[int, dict[int, list[int]]] = {}
    if adjacency is not None:
        targets = {d.edge[0] for d in destinations}
        for source in {o.edge[1] for o in origins}:
            searched[source] = _heap_paths(adjacency, source, targets)

    def edge_weight(edge: EdgeKey) -> float:
        return func(edge[0], edge[1], {edge[2]: graph.edges[edge]})

    for o, d in itertools.product(origins, destinations):
        w_o, w_d = edge_weight(o.edge), edge_weight(d.edge)
        if o.edge == d.edge and o.fraction <= d.fraction:
            cost, edges = (d.fraction - o.fraction) * w_o, [o.edge]
        else:
            try:
                paths = searched.get(o.edge[1])
                middle = _path_edges(graph, o.edge[1], d.edge[0], weight, paths)
            except InvalidInputError:
                continue
            inner = sum(edge_weight(e) for e in middle)
            cost = (1.0 - o.fraction) * w_o + inner + d.fraction * w_d
            edges = [o.edge, *middle, d.edge]
        if best is None or cost < best[0]:
            best = (cost, _Trip(edges, o, d))
    if best is None:
        raise InvalidInputError(
            "no drivable route between the origin and the destination", field="destination"
        )
    return best[1]


def _trim(route: Route, start_m: float, end_m: float) -> Route:
    """The part of ``route`` from ``start_m`` to ``end_m`` along it (geodesic metres)."""
    _, _, legs_m = GEOD.inv(route.lon[:-1], route.lat[:-1], route.lon[1:], route.lat[1:])
    cum = np.concatenate(([0.0], np.cumsum(legs_m)))
    n_legs = legs_m.size
    i0 = int(np.clip(np.searchsorted(cum, start_m, side="right") - 1, 0, n_legs - 1))
    i1 = int(np.clip(np.searchsorted(cum, end_m, side="left") - 1, i0, n_legs - 1))

    def at(i: int, along_m: float) -> tuple[float, float]:
        f = 0.0 if legs_m[i] <= 0 else min(max((along_m - cum[i]) / legs_m[i], 0.0), 1.0)
        if f in (0.0, 1.0):  # on a vertex: exactly it
            j = i + int(f)
            return float(route.lon[j]), float(route.lat[j])
        return (
            float(route.lon[i] + f * (route.lon[i + 1] - route.lon[i])),
            float(route.lat[i] + f * (route.lat[i + 1] - route.lat[i])),
        )

    (lon0, lat0), (lon1, lat1) = at(i0, start_m), at(i1, end_m)
    legs = slice(i0, i1 + 1)
    return dataclasses.replace(
        route,
        lon=np.concatenate(([lon0], route.lon[i0 + 1 : i1 + 1], [lon1])),
        lat=np.concatenate(([lat0], route.lat[i0 + 1 : i1 + 1], [lat1])),
        speed_mps=route.speed_mps[legs].copy(),
        in_tunnel=route.in_tunnel[legs].copy(),
        on_bridge=route.on_bridge[legs].copy(),
    )


def _trip_route(graph: nx.MultiDiGraph, trip: _Trip) -> Route:
    """The trip's edges as a route that starts and ends at the snapped positions."""
    # a position on a junction snaps to every edge there: drop the zero-length ends
    if len(trip.edges) > 1 and trip.end.fraction <= 0.0:
        end = RoadPoint(trip.edges[-2], 1.0, trip.end.distance_m)
        trip = _Trip(trip.edges[:-1], trip.start, end)
    if len(trip.edges) > 1 and trip.start.fraction >= 1.0:
        start = RoadPoint(trip.edges[1], 0.0, trip.start.distance_m)
        trip = _Trip(trip.edges[1:], start, trip.end)
    route = route_from_edges(graph, trip.edges, name=_route_name(graph, trip.edges))
    total_m = _length_m(graph, trip.edges)
    first_m = float(graph.edges[trip.edges[0]]["length_m"])
    last_m = float(graph.edges[trip.edges[-1]]["length_m"])
    start_m = trip.start.fraction * first_m
    if len(trip.edges) == 1:
        end_m = trip.end.fraction * first_m
    else:
        end_m = total_m - (1.0 - trip.end.fraction) * last_m
    return _trim(route, start_m, end_m)


def _endpoints(
    graph: nx.MultiDiGraph,
    origin: tuple[float, float],
    destination: tuple[float, float],
    max_snap_m: float,
) -> tuple[list[RoadPoint], list[RoadPoint]]:
    starts = _road_points(
        graph, origin[0], origin[1], max_distance_m=max_snap_m, field="origin", role="origin"
    )
    ends = _road_points(
        graph,
        destination[0],
        destination[1],
        max_distance_m=max_snap_m,
        field="destination",
        role="destination",
    )
    for a, b in itertools.product(starts, ends):
        length_m = float(graph.edges[a.edge]["length_m"])
        if a.edge == b.edge and abs(a.fraction - b.fraction) * length_m < _SAME_POINT_M:
            raise InvalidInputError(
                "origin and destination snap to the same point on the road: the route would "
                "be empty",
                field="destination",
            )
    return starts, ends


# Snapped positions closer than this count as the same point.
_SAME_POINT_M = 1.0


def shortest_route(
    graph: nx.MultiDiGraph,
    origin_lonlat: tuple[float, float],
    destination_lonlat: tuple[float, float],
    *,
    weight: Weight = "travel_time_s",
    max_snap_m: float = 1000.0,
) -> Route:
    """Fastest (or least-``weight``) route between two positions.

    The route starts and ends where the positions project onto the nearest road of the
    graph's largest strongly connected part (:func:`snap_to_road`); ``edges`` lists every
    edge it drives on, the first and last possibly in part.

    Parameters
    ----------
    graph : networkx.MultiDiGraph
        Road graph from :func:`load_road_graph`.
    origin_lonlat, destination_lonlat : (lon, lat)
        Snapped to the nearest connected road (:func:`snap_to_road`).
    weight : str or callable
        Edge attribute to minimise, or a networkx weight function ``f(u, v, {key: attrs})``.
    max_snap_m : float
        Largest accepted snapping distance.

    Raises
    ------
    InvalidInputError
        Positions too far from the roads, snapping to the same point, or no path.

    Examples
    --------
    >>> graph = load_road_graph("maps/andorra/data/andorra.osm.pbf")
    >>> route = shortest_route(graph, (1.5218, 42.5063), (1.7330, 42.5430))
    >>> bool(route.in_tunnel.any())
    True
    >>> shortest_route(graph, (1.5218, 42.5063), (1.5218, 42.5063))
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: origin and destination snap to the same point on the road: ...
    """
    starts, ends = _endpoints(graph, origin_lonlat, destination_lonlat, max_snap_m)
    return _trip_route(graph, _best_trip(graph, starts, ends, weight))


def _edge_set(edges: Iterable[EdgeKey]) -> set[tuple[int, int]]:
    """Undirected node pairs of the edges (both lanes of a road count as the same road)."""
    return {(min(u, v), max(u, v)) for u, v, _ in edges}


def _length_m(graph: nx.MultiDiGraph, edges: Iterable[EdgeKey]) -> float:
    return float(sum(graph.edges[e]["length_m"] for e in edges))


def _overlap(
    graph: nx.MultiDiGraph, candidate: Sequence[EdgeKey], other: Sequence[EdgeKey]
) -> float:
    """Share of the candidate's length that it drives on roads of ``other``."""
    shared = _edge_set(other)
    common = [e for e in candidate if (min(e[0], e[1]), max(e[0], e[1])) in shared]
    return _length_m(graph, common) / max(_length_m(graph, candidate), 1e-9)


def k_routes(
    graph: nx.MultiDiGraph,
    origin: tuple[float, float],
    destination: tuple[float, float],
    k: int = 3,
    *,
    weight: str = "travel_time_s",
    penalty: float = 1.4,
    max_overlap: float = 0.9,
    max_ratio: float = 1.6,
    max_snap_m: float = 1000.0,
) -> list[Route]:
    """Up to ``k`` meaningfully different routes, fastest first.

    Penalty method: after each route found, the weight of its roads (both directions) is
    multiplied by ``penalty`` and the search repeated. A candidate is kept when at most
    ``max_overlap`` of its length runs on the roads of any kept route and its true
    ``weight`` is at most ``max_ratio`` times the best. Sparse networks (mountain valleys)
    may have fewer than ``k`` such routes; then fewer are returned.

    Parameters
    ----------
    graph, origin, destination, weight, max_snap_m
        As for :func:`shortest_route` (``weight`` must be an edge attribute here).
    k : int
        Number of routes wanted (>= 1).
    penalty : float
        Weight factor (> 1) applied to the roads of every route found.
    max_overlap : float
        Largest accepted shared length fraction (0..1) with a kept route.
    max_ratio : float
        Largest accepted total weight relative to the best route (>= 1).

    Returns
    -------
    list of Route
        Sorted by total ``weight``; the first is :func:`shortest_route`.

    Raises
    ------
    InvalidInputError
        Bad parameters, or as :func:`shortest_route`.

    Examples
    --------
    >>> graph = load_road_graph("maps/andorra/data/andorra.osm.pbf")
    >>> routes = k_routes(graph, (1.5218, 42.5063), (1.7330, 42.5430), k=3)
    >>> 1 <= len(routes) <= 3
    True
    >>> k_routes(graph, (1.5218, 42.5063), (1.7330, 42.5430), k=0)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: k must be >= 1, got 0
    """
    if k < 1:
        raise InvalidInputError(f"k must be >= 1, got {k}", field="k")
    if not (penalty > 1.0 and 0.0 < max_overlap <= 1.0 and max_ratio >= 1.0):
        raise InvalidInputError(
            "k_routes needs penalty > 1, 0 < max_overlap <= 1 and max_ratio >= 1", field="penalty"
        )
    _weight_function(graph, weight)  # validates the attribute name
    starts, ends = _endpoints(graph, origin, destination, max_snap_m)
    first = _best_trip(graph, starts, ends, weight)
    if len(first.edges) == 1:  # both on one stretch of road: nothing to vary
        return [_trip_route(graph, first)]
    head, tail = first.edges[0], first.edges[-1]
    factor: dict[tuple[int, int], float] = {}

    def penalised(u: Any, v: Any, data: dict[Any, Any]) -> float:
        scale = factor.get((min(u, v), max(u, v)), 1.0)
        return scale * min(float(attrs[weight]) for attrs in data.values())

    kept: list[list[EdgeKey]] = [first.edges]
    best = _total(graph, kept[0], weight)
    seen = {tuple(kept[0])}
    last = kept[0]
    for _ in range(6 * k):  # enough rounds to push the search into a few other corridors
        if len(kept) == k:
            break
        for pair in _edge_set(last):
            factor[pair] = factor.get(pair, 1.0) * penalty
        last = [head, *_path_edges(graph, head[1], tail[0], penalised), tail]
        if tuple(last) in seen:
            continue
        seen.add(tuple(last))
        if _total(graph, last, weight) > max_ratio * best:
            continue
        if all(_overlap(graph, last, other) <= max_overlap for other in kept):
            kept.append(last)
    kept.sort(key=lambda edges: _total(graph, edges, weight))
    return [_trip_route(graph, _Trip(edges, first.start, first.end)) for edges in kept]


def _total(graph: nx.MultiDiGraph, edges: Iterable[EdgeKey], weight: str) -> float:
    return float(sum(float(graph.edges[e][weight]) for e in edges))


# -- bridges ------------------------------------------------------------------------------------


# every corridor asks for them: kept per graph (and its edge count)
_BRIDGE_CACHE: weakref.WeakKeyDictionary[nx.MultiDiGraph, tuple[int, tuple[LineString, ...]]] = (
    weakref.WeakKeyDictionary()
)


def bridge_geometries(graph: nx.MultiDiGraph) -> list[LineString]:
    """Geometries (lon/lat) of the bridge edges, one per road (both lanes counted once).

    Used by :func:`commap.geo.corridor.cut` to find roads passing under a bridge.

    Examples
    --------
    >>> graph = load_road_graph("tests/data/roads/monaco.osm.gz")
    >>> len(bridge_geometries(graph)) > 0
    True
    >>> bridge_geometries(nx.MultiDiGraph())
    []
    """
    n_edges = _edge_count(graph)
    cached = _BRIDGE_CACHE.get(graph)
    if cached is not None and cached[0] == n_edges:
        return list(cached[1])
    seen: set[tuple[Hashable, int, int]] = set()
    found: list[LineString] = []
    for u, v, data in graph.edges(data=True):
        if not data.get("bridge"):
            continue
        key = (data.get("osm_id"), min(u, v), max(u, v))
        if key not in seen:
            seen.add(key)
            found.append(data["geometry"])
    _BRIDGE_CACHE[graph] = (n_edges, tuple(found))
    return found
