"""Building a map: spec -> built map directory, and the per-edge table of its region, tile by tile.

:func:`build_map` reads the spec (``map.toml``, :func:`read_spec`), builds the base tables (roads,
terrain, one layer per network, road-sample caches) and the edge table, and writes the
:class:`~commap.map.manifest.Manifest`; the directory appears only complete.

The drivable edges of a built map are split into tiles (H3 cells at
:attr:`TileParams.resolution`; an edge belongs to the cell of its midpoint). :func:`build_tile`
is a pure function of ``(map directory, tile, parameters)``: for every directed edge of the
tile it cuts the edge into the map's segments, samples the quality of every network at each
segment (satellites at one fixed reference time, the map's default departure), plans the
recommended network with the exact DP planner, flags coverage gaps, and writes one GeoParquet
part (one LineString row per segment, EPSG:4326, Hilbert-sorted) under a temporary name that is
then renamed into place. The same inputs give a byte-identical part, whichever process runs it.

Planning unit: **through-chains inside a tile**. At
every node a directed edge continues onto the out-edge of the same tile that turns least
(at most :data:`MAX_THROUGH_TURN_DEG`, no U-turn); where several edges would continue onto one,
the straightest wins. The chains partition the tile's directed edges; each chain is planned as
one corridor, so the recommended network and the handover points on an edge take the traffic
coming from upstream and going downstream into account (planning each edge alone would put a
plan restart at every junction). A chain ends at the tile boundary: a vehicle crossing it gets a
fresh plan there. With H3 resolution 6 (cells of about 36 km^2) such breaks are a few per
through road.

:func:`run_batch` runs the missing tiles with an executor (:mod:`commap.map.executors`),
skips parts whose checksum is already recorded (resume after a crash), and merges the region
outputs (:mod:`commap.map.region`) as tiles arrive: the gap list, per-network coverage
statistics and a GeoPackage. A worker process loads the map once for all its tiles, and keeps
it for later builds of the same map version (a long-lived dask cluster). :func:`build_map` calls it as the last stage of a map build.

Part columns (one row per segment of a directed edge; lengths along the edge):
``tile``, ``chain``, ``chain_pos`` (segment order along the chain), ``u``, ``v``, ``key``,
``osm_id``, ``highway``, ``name``, ``ref``, ``seg`` (segment index on the edge), ``start_m``,
``end_m``, ``length_m``, ``in_tunnel``, ``on_bridge``, ``under_bridge``, ``network`` (the
recommended one), ``outage_risk`` (its drop probability in the segment), ``handover_from`` and
``handover_kind`` (a planned switch at the start of the segment, else ``""``),
``usable_networks`` (networks with SINR >= :data:`commap.radio.quality.USABLE_SINR_DB`), ``gap`` (no
usable network), and per network ``<id>_sinr_db``, ``<id>_rsrp_dbm`` (terrestrial) or
``<id>_elevation_deg`` (satellite), ``<id>_confidence`` (float32) and ``<id>_provenance``
(:class:`commap.radio.quality.Provenance` code).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import h3
import networkx as nx
import numpy as np
import shapely
from numpy.typing import NDArray
from pyproj import Geod

from commap import __version__
from commap.arrays import FloatArray
from commap.errors import CommapError, InvalidInputError
from commap.files import fsync_dir, sha256_file
from commap.geo.corridor import Corridor, Route, cut
from commap.geo.terrain import Terrain, srtm_tile_names
from commap.map.comm_map import CommMap, verify_files
from commap.map.executors import PartLog, check_executor, run_tiles
from commap.map.manifest import (
    FORMAT,
    MANIFEST,
    NETWORK_FIELDS,
    BuildInputs,
    IngestCount,
    Manifest,
    NetworkEntry,
    RoadsSource,
    TerrainSource,
)
from commap.map.region import (
    CRS,
    EDGES_DIR,
    EDGES_FORMAT,
    PARTS_DIR,
    PartSummary,
    hilbert_sorted,
    part_path,
    read_part,
    region_writer,
    summarize_part,
    write_geoparquet,
)
from commap.networks import NetworkCatalogue
from commap.progress import ProgressArg, as_progress
from commap.radio.layers import LayerContext, load_layer, prepare_layer
from commap.radio.layers.cached import road_sample_points, write_cache
from commap.radio.link import APP_PROFILES
from commap.radio.quality import USABLE_SINR_DB, QualityMatrix

__all__ = [
    "CACHED_LAYER_TYPES",
    "DEFAULT_TILE_RESOLUTION",
    "MAX_THROUGH_TURN_DEG",
    "TileParams",
    "assign_tiles",
    "build_map",
    "build_tile",
    "run_batch",
    "through_chains",
]

if TYPE_CHECKING:  # the spec module imports every layer's reader (scipy, ...): tile tasks
    # in fresh workers need none of them, and import this module before their first tile
    from commap.map.spec import MapSpec

log = logging.getLogger(__name__)

EdgeKey = tuple[int, int, int]
# A status-line callback of the build steps (Progress.message).
_Say = Callable[[str], None]

# Completion log of a running build (tile + checksum per line); deleted once the map is whole.
PART_LOG = f"{EDGES_DIR}/parts.log"
# H3 resolution 6: cells of ~36 km^2, 17 tiles for Andorra, ~10,000 for Germany.
DEFAULT_TILE_RESOLUTION = 6
# A road continues "through" a junction onto an edge turning at most this much.
MAX_THROUGH_TURN_DEG = 60.0
# Time-invariant layers sampled once along every road at build time (see layers/cached.py).
CACHED_LAYER_TYPES = frozenset({"terrestrial"})

_GEOD = Geod(ellps="WGS84")
_PLANNER = "exact DP (commap.plan.solve, solver='dp') per through-chain of directed edges in a tile"


# -- the edge table: parameters ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TileParams:
    """What a tile computation depends on besides the map (recorded in the manifest).

    Parameters
    ----------
    resolution : int
        H3 resolution of the tiles (0..15).
    app : str
        Application class the recommended network is planned for (see
        :data:`commap.radio.link.APP_PROFILES`).
    reference_s : float, optional
        Epoch seconds at which satellite visibility is evaluated for every segment; None takes
        the map's default departure (:func:`run_batch` resolves it before it hands it out).

    Examples
    --------
    >>> TileParams().resolution
    6
    >>> TileParams(resolution=16)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: tile resolution must be an integer in 0..15, got 16
    """

    resolution: int = DEFAULT_TILE_RESOLUTION
    app: str = "telemetry"
    reference_s: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.resolution, bool) or self.resolution not in range(16):
            raise InvalidInputError(
                f"tile resolution must be an integer in 0..15, got {self.resolution}",
                field="resolution",
            )
        if self.app not in APP_PROFILES:
            raise InvalidInputError(
                f"unknown app {self.app!r}; expected one of {', '.join(APP_PROFILES)}",
                field="app",
            )
        if self.reference_s is not None and not math.isfinite(self.reference_s):
            raise InvalidInputError("reference_s must be finite", field="reference_s")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (what the build key and the manifest record)."""
        return {"tiling": "h3", **asdict(self)}


# -- tiles and chains -----------------------------------------------------------------------------


def _midpoint(geometry: shapely.LineString) -> tuple[float, float]:
    point = shapely.line_interpolate_point(geometry, 0.5, normalized=True)
    return float(point.x), float(point.y)


def assign_tiles(graph: nx.MultiDiGraph, resolution: int) -> dict[str, list[EdgeKey]]:
    """Tile id (H3 cell) -> sorted directed edges whose midpoint lies in it.

    Examples
    --------
    >>> assign_tiles(nx.MultiDiGraph(), 6)
    {}
    >>> g = nx.MultiDiGraph()
    >>> g.add_edge(1, 2, key=0, geometry=shapely.LineString([(1.50, 42.50), (1.51, 42.50)]))
    0
    >>> assign_tiles(g, 6)
    {'86396238fffffff': [(1, 2, 0)]}
    """
    keys = [(int(u), int(v), int(k)) for u, v, k in graph.edges(keys=True)]
    return _tiles_of(keys, [g for _, _, g in graph.edges(data="geometry")], resolution)


def _tiles_of(
    keys: Sequence[EdgeKey], geometries: Sequence[shapely.LineString], resolution: int
) -> dict[str, list[EdgeKey]]:
    tiles: dict[str, list[EdgeKey]] = {}
    for key, geometry in zip(keys, geometries, strict=True):
        lon, lat = _midpoint(geometry)
        tiles.setdefault(h3.latlng_to_cell(lat, lon, resolution), []).append(key)
    return {tile: sorted(edges) for tile, edges in sorted(tiles.items())}


def _map_bounds(
    geometries: Sequence[shapely.LineString], bbox: Sequence[float]
) -> tuple[float, float, float, float]:
    """The map bbox widened to every edge (edges are kept whole): fixed Hilbert bounds."""
    lon0, lat0, lon1, lat1 = shapely.total_bounds(geometries) if len(geometries) else bbox
    return (min(lon0, bbox[0]), min(lat0, bbox[1]), max(lon1, bbox[2]), max(lat1, bbox[3]))


def _bearing_deg(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Planar bearing from ``a`` to ``b`` (lon/lat, longitude scaled by cos(lat))."""
    dx = (b[0] - a[0]) * math.cos(math.radians((a[1] + b[1]) / 2.0))
    return math.degrees(math.atan2(dx, b[1] - a[1]))


def _end_bearings(graph: nx.MultiDiGraph, edge: EdgeKey) -> tuple[float, float]:
    """Bearing of an edge's first leg and of its last leg."""
    xy = shapely.get_coordinates(graph.edges[edge]["geometry"])
    return _bearing_deg(xy[0], xy[1]), _bearing_deg(xy[-2], xy[-1])


def _turn_deg(out_bearing: float, in_bearing: float) -> float:
    return abs((in_bearing - out_bearing + 180.0) % 360.0 - 180.0)


def _successors(graph: nx.MultiDiGraph, edges: Sequence[EdgeKey]) -> dict[EdgeKey, EdgeKey]:
    """The through continuation of each edge inside ``edges`` (one-to-one, deterministic)."""
    inside = set(edges)
    bearings = {e: _end_bearings(graph, e) for e in edges}
    best: dict[EdgeKey, tuple[float, EdgeKey]] = {}  # successor -> (turn, predecessor)
    for edge in edges:
        u, v, _ = edge
        following = sorted((v, w, k) for w in graph[v] for k in graph[v][w])
        options = [
            (_turn_deg(bearings[edge][1], bearings[nxt][0]), nxt)
            for nxt in following
            if nxt in inside and nxt != edge and nxt[1] != u  # no U-turn
        ]
        if not options:
            continue
        turn, succ = min(options)
        if turn <= MAX_THROUGH_TURN_DEG and (succ not in best or (turn, edge) < best[succ]):
            best[succ] = (turn, edge)
    return {pred: succ for succ, (_, pred) in best.items()}


def through_chains(graph: nx.MultiDiGraph, edges: Sequence[EdgeKey]) -> list[list[EdgeKey]]:
    """Partition directed ``edges`` into through-chains (see the module docstring).

    Every edge lies in exactly one chain; consecutive edges of a chain join at a node. Chains
    come in a deterministic order (by their first edge); a closed loop starts at its smallest
    edge.

    Examples
    --------
    >>> through_chains(nx.MultiDiGraph(), [])
    []
    >>> g = nx.MultiDiGraph()
    >>> for u, v, x in ((1, 2, 0.0), (2, 3, 0.01), (3, 4, 0.02)):
    ...     _ = g.add_edge(u, v, key=0, geometry=shapely.LineString(
    ...         [(1.50 + x, 42.5), (1.51 + x, 42.5)]))
    >>> through_chains(g, [(1, 2, 0), (2, 3, 0), (3, 4, 0)])
    [[(1, 2, 0), (2, 3, 0), (3, 4, 0)]]
    """
    ordered = sorted(edges)
    succ = _successors(graph, ordered)
    has_pred = set(succ.values())
    chains: list[list[EdgeKey]] = []
    seen: set[EdgeKey] = set()
    # open chains first (they start at an edge nobody continues onto), then closed loops
    for start in [e for e in ordered if e not in has_pred] + ordered:
        if start in seen:
            continue
        chain = [start]
        seen.add(start)
        while chain[-1] in succ and succ[chain[-1]] not in seen:
            chain.append(succ[chain[-1]])
            seen.add(chain[-1])
        chains.append(chain)
    return chains


# -- per-process state ----------------------------------------------------------------------------
#
# A worker process (pool or dask) loads a map once and keeps it for every later tile, and for
# every later build on the same worker (a long-lived dask cluster): the caches below are keyed by
# the map's resolved directory and its version, the checksum of its manifest. The manifest lists
# the checksum of every table, so a map rebuilt or replaced at the same path has another key and
# is loaded afresh, whatever the file times say.


def _version(map_dir: Path) -> tuple[str, str]:
    """Resolved map directory and the SHA-256 of its manifest: the key of the caches below."""
    manifest = Path(map_dir).resolve() / MANIFEST
    try:
        return str(manifest.parent), sha256_file(manifest)
    except OSError:
        raise InvalidInputError(f"{map_dir} is not a built map (no {MANIFEST})") from None


@dataclass(frozen=True)
class _Index:
    """What the coordinating process needs: tiles and map facts, without loading the layers."""

    name: str
    network_ids: tuple[str, ...]
    segment_m: float
    default_departure_s: float
    tiles: dict[str, list[EdgeKey]]
    tile_km: dict[str, float]
    bounds: tuple[float, float, float, float]


@functools.lru_cache(maxsize=2)
def _cached_index(map_dir: str, version: str, resolution: int) -> _Index:
    from commap.geo.roads import EDGES_FILE

    del version  # cache key only
    root = Path(map_dir)
    manifest = Manifest.read(root / MANIFEST)
    if manifest.roads is None:
        raise InvalidInputError(f"map {map_dir} has no road graph: no edge table to build")
    try:
        frame = gpd.read_parquet(
            root / manifest.roads.dir / EDGES_FILE,
            columns=["u", "v", "key", "length_m", "geometry"],
        )
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"map {map_dir}: unreadable road table ({exc})") from None
    keys = list(zip(*(frame[c].astype(np.int64).tolist() for c in ("u", "v", "key")), strict=True))
    geometries = list(frame.geometry)
    tiles = _tiles_of(keys, geometries, resolution)
    length = dict(zip(keys, frame["length_m"].astype(float).tolist(), strict=True))
    return _Index(
        name=manifest.name,
        network_ids=manifest.network_ids,
        segment_m=manifest.segment_m,
        # a map without a departure of its own: the edge table is a snapshot at build time
        default_departure_s=(
            manifest.default_departure_s
            if manifest.default_departure_s is not None
            else float(math.floor(time.time() / 3600.0) * 3600.0)
        ),
        tiles=tiles,
        tile_km={t: sum(length[e] for e in edges) / 1000.0 for t, edges in tiles.items()},
        bounds=_map_bounds(geometries, manifest.bbox),
    )


def _index(map_dir: Path, resolution: int) -> _Index:
    return _cached_index(*_version(map_dir), resolution)


@dataclass(frozen=True)
class _MapState:
    """A loaded map plus what every tile of it needs (built once per worker process)."""

    cmap: CommMap
    roads: nx.MultiDiGraph  # cmap.roads, known to be there
    tiles: dict[str, list[EdgeKey]]
    bounds: tuple[float, float, float, float]
    bridges: NDArray[np.object_]
    bridge_tree: shapely.STRtree


@functools.lru_cache(maxsize=2)
def _map_state(map_dir: str, version: str, resolution: int) -> _MapState:
    from commap.geo import roads as roads_mod

    del version  # cache key only
    cmap = CommMap.load(Path(map_dir))
    if cmap.roads is None:
        raise InvalidInputError(f"map {map_dir} has no road graph: no edge table to build")
    found = roads_mod.bridge_geometries(cmap.roads)
    bridges = np.empty(len(found), dtype=object)
    bridges[:] = found
    return _MapState(
        cmap=cmap,
        roads=cmap.roads,
        tiles=assign_tiles(cmap.roads, resolution),
        bounds=_map_bounds([g for _, _, g in cmap.roads.edges(data="geometry")], cmap.bbox),
        bridges=bridges,
        bridge_tree=shapely.STRtree(bridges),
    )


def _state(map_dir: Path, resolution: int) -> _MapState:
    return _map_state(*_version(map_dir), resolution)


def _clear_state() -> None:
    _map_state.cache_clear()
    _cached_index.cache_clear()


# -- one tile -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _EdgeCut:
    edge: EdgeKey
    corridor: Corridor
    lines: NDArray[np.object_]


def _segment_lines(route: Route, start_m: FloatArray, end_m: FloatArray) -> NDArray[np.object_]:
    """LineString of every segment: the route between ``start_m`` and ``end_m``."""
    lon, lat = route.lon, route.lat
    _, _, leg_m = _GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
    cum = np.concatenate(([0.0], np.cumsum(leg_m)))
    a = np.column_stack((np.interp(start_m, cum, lon), np.interp(start_m, cum, lat)))
    b = np.column_stack((np.interp(end_m, cum, lon), np.interp(end_m, cum, lat)))
    lo = np.searchsorted(cum, start_m, side="right")
    hi = np.searchsorted(cum, end_m, side="left")
    vertices = np.column_stack((lon, lat))
    coords: list[FloatArray] = []
    index: list[NDArray[np.int64]] = []
    for i in range(start_m.size):
        part = np.vstack((a[i : i + 1], vertices[lo[i] : max(lo[i], hi[i])], b[i : i + 1]))
        coords.append(part)
        index.append(np.full(part.shape[0], i, dtype=np.int64))
    lines: NDArray[np.object_] = shapely.linestrings(
        np.vstack(coords), indices=np.concatenate(index)
    )
    return lines


def _cut_edge(state: _MapState, edge: EdgeKey, reference_s: float) -> _EdgeCut:
    from commap.geo import roads as roads_mod

    graph = state.roads
    route = roads_mod.route_from_edges(graph, [edge])
    near = state.bridge_tree.query(graph.edges[edge]["geometry"].buffer(0.002))
    corridor = cut(
        route,
        segment_m=state.cmap.segment_m,
        departure_s=reference_s,
        overpasses=state.bridges[np.sort(near)],
    )
    end_m = corridor.distance_m + corridor.length_m
    return _EdgeCut(edge, corridor, _segment_lines(route, corridor.distance_m, end_m))


def _join(cuts: Sequence[_EdgeCut], departure_s: float) -> Corridor:
    """One corridor along consecutive edges (each keeps its own segments)."""
    offset_m = np.cumsum([0.0] + [c.corridor.total_length_m for c in cuts[:-1]])
    offset_s = np.cumsum([0.0] + [c.corridor.total_duration_s for c in cuts[:-1]])

    def joined(name: str) -> NDArray[Any]:
        return np.concatenate([getattr(c.corridor, name) for c in cuts])

    return Corridor(
        lon=joined("lon"),
        lat=joined("lat"),
        distance_m=np.concatenate(
            [c.corridor.distance_m + m for c, m in zip(cuts, offset_m, strict=True)]
        ),
        length_m=joined("length_m"),
        eta_s=np.concatenate([c.corridor.eta_s + s for c, s in zip(cuts, offset_s, strict=True)]),
        duration_s=joined("duration_s"),
        speed_mps=joined("speed_mps"),
        in_tunnel=joined("in_tunnel"),
        on_bridge=joined("on_bridge"),
        under_bridge=joined("under_bridge"),
        departure_s=departure_s,
    )


@dataclass(frozen=True)
class _ChainPlan:
    network: NDArray[np.object_]
    outage_risk: FloatArray
    handover_from: NDArray[np.object_]
    handover_kind: NDArray[np.object_]


def _plan_chain(
    corridor: Corridor, matrix: QualityMatrix, catalogue: NetworkCatalogue, app: str
) -> _ChainPlan:
    from commap.plan import HandoverProblem, solve

    problem = HandoverProblem.build(corridor, matrix, catalogue, app=app)
    plan = solve(problem, solver="dp")
    n = len(plan)
    ids = np.asarray(plan.network_ids, dtype=object)
    frm = np.full(n, "", dtype=object)
    kind = np.full(n, "", dtype=object)
    for h in plan.handovers:
        frm[h.segment], kind[h.segment] = h.from_network, h.kind
    return _ChainPlan(ids[plan.assignment], plan.outage_risk, frm, kind)


def _plan_chains(
    chains: Sequence[Corridor], matrix: QualityMatrix, catalogue: NetworkCatalogue, app: str
) -> list[_ChainPlan]:
    """Plan every chain on its rows of the tile's quality matrix (chains in row order)."""
    plans: list[_ChainPlan] = []
    start = 0
    for corridor in chains:
        rows = slice(start, start + len(corridor))
        plans.append(_plan_chain(corridor, matrix.take(rows), catalogue, app))
        start = rows.stop
    return plans


def _edge_columns(graph: nx.MultiDiGraph, cuts: Sequence[_EdgeCut]) -> dict[str, Any]:
    counts = [len(c.corridor) for c in cuts]

    def per_edge(values: Iterable[Any], dtype: Any) -> NDArray[Any]:
        return np.repeat(np.asarray(list(values), dtype=dtype), counts)

    data = [graph.edges[c.edge] for c in cuts]
    return {
        "u": per_edge((c.edge[0] for c in cuts), np.int64),
        "v": per_edge((c.edge[1] for c in cuts), np.int64),
        "key": per_edge((c.edge[2] for c in cuts), np.int64),
        "osm_id": per_edge((int(d.get("osm_id", 0)) for d in data), np.int64),
        "highway": per_edge((str(d.get("highway", "")) for d in data), object),
        "name": per_edge((str(d.get("name", "")) for d in data), object),
        "ref": per_edge((str(d.get("ref", "")) for d in data), object),
        "seg": np.concatenate([np.arange(n, dtype=np.int32) for n in counts]),
        "start_m": np.concatenate([c.corridor.distance_m for c in cuts]),
        "length_m": np.concatenate([c.corridor.length_m for c in cuts]),
    }


def _network_columns(matrix: QualityMatrix, catalogue: NetworkCatalogue) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for j, network in enumerate(catalogue.networks):
        nid = network.id
        columns[f"{nid}_sinr_db"] = matrix.sinr_db[:, j].astype(np.float32)
        if network.is_satellite:
            columns[f"{nid}_elevation_deg"] = matrix.elevation_deg[:, j].astype(np.float32)
        else:
            columns[f"{nid}_rsrp_dbm"] = matrix.rsrp_dbm[:, j].astype(np.float32)
        columns[f"{nid}_confidence"] = matrix.confidence[:, j].astype(np.float32)
        columns[f"{nid}_provenance"] = matrix.provenance[:, j].astype(np.int8)
    return columns


def _tile_frame(
    state: _MapState, tile: str, edges: Sequence[EdgeKey], params: TileParams
) -> gpd.GeoDataFrame:
    cmap = state.cmap
    reference_s = float(
        params.reference_s if params.reference_s is not None else cmap.default_departure_s
    )
    chains = through_chains(cmap.roads, edges)
    cuts = [[_cut_edge(state, e, reference_s) for e in chain] for chain in chains]
    joined = [_join(c, reference_s) for c in cuts]
    everything = _join([cut_ for chain in cuts for cut_ in chain], reference_s)
    matrix = cmap.quality(everything, reference_s=reference_s)
    plans = _plan_chains(joined, matrix, cmap.catalogue, params.app)
    flat = [cut_ for chain in cuts for cut_ in chain]
    usable = (matrix.sinr_db >= USABLE_SINR_DB).sum(axis=1).astype(np.int8)
    columns: dict[str, Any] = {
        "tile": np.full(len(everything), tile, dtype=object),
        "chain": np.repeat(np.arange(len(joined), dtype=np.int32), [len(c) for c in joined]),
        "chain_pos": np.concatenate([np.arange(len(c), dtype=np.int32) for c in joined]),
        **_edge_columns(cmap.roads, flat),
    }
    columns["end_m"] = columns["start_m"] + columns["length_m"]
    columns.update(
        in_tunnel=everything.in_tunnel,
        on_bridge=everything.on_bridge,
        under_bridge=everything.under_bridge,
        network=np.concatenate([p.network for p in plans]),
        outage_risk=np.concatenate([p.outage_risk for p in plans]).astype(np.float32),
        handover_from=np.concatenate([p.handover_from for p in plans]),
        handover_kind=np.concatenate([p.handover_kind for p in plans]),
        usable_networks=usable,
        gap=usable == 0,
        **_network_columns(matrix, cmap.catalogue),
    )
    frame = gpd.GeoDataFrame(columns, geometry=np.concatenate([c.lines for c in flat]), crs=CRS)
    # spatial locality; ties by edge and segment
    return hilbert_sorted(frame, state.bounds, ties=("u", "v", "key", "seg"))


def build_tile(map_dir: str | os.PathLike[str], tile_id: str, params: TileParams) -> Path:
    """Compute one tile's edge table and write its GeoParquet part (atomically).

    Parameters
    ----------
    map_dir : path-like
        A map directory with its base tables (roads, layers) and ``manifest.json``; the map is
        loaded once per process and cached.
    tile_id : str
        An H3 cell at ``params.resolution`` holding at least one edge midpoint.
    params : TileParams
        Tiling, application and reference time (``reference_s`` None: the map's departure).

    Returns
    -------
    Path
        ``<map_dir>/edges/parts/<tile_id>.parquet``; the same inputs give the same bytes.

    Raises
    ------
    InvalidInputError
        The map is missing or has no roads, or ``tile_id`` holds no edge of it.

    Examples
    --------
    >>> build_tile("maps/andorra/built", "not-a-tile", TileParams())
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: tile 'not-a-tile' holds no edge of map andorra at H3 resolution 6
    """
    state = _state(Path(map_dir), params.resolution)
    edges = state.tiles.get(tile_id)
    if not edges:
        raise InvalidInputError(
            f"tile {tile_id!r} holds no edge of map {state.cmap.name} at H3 resolution "
            f"{params.resolution}",
            field="tile_id",
        )
    frame = _tile_frame(state, tile_id, edges, params)
    path = part_path(map_dir, tile_id)
    try:
        # never with parents: a task still running after its build was abandoned (and its
        # directory removed) must not bring the directory back
        path.parent.parent.mkdir(exist_ok=True)
        path.parent.mkdir(exist_ok=True)
    except FileNotFoundError:
        raise InvalidInputError(f"map directory {map_dir} no longer exists") from None
    write_geoparquet(frame, path)
    log.debug("tile %s: %d edges, %d segments -> %s", tile_id, len(edges), len(frame), path)
    return path


def _summarized_tile(
    map_dir: str, tile_id: str, params: TileParams
) -> tuple[Path, str, PartSummary]:
    """The batch task: :func:`build_tile`, the part's checksum and the summary the region merge
    takes from it.

    Both are computed where the tile was built, which spreads that work over the workers and
    leaves the calling process only the merge; the summary is made of the part read back, so it
    is the one the merge would make of the file.
    """
    path = build_tile(map_dir, tile_id, params)
    network_ids = _state(Path(map_dir), params.resolution).cmap.catalogue.ids
    return path, sha256_file(path), summarize_part(read_part(path), network_ids)


def _load_state(map_dir: Path, resolution: int) -> None:
    """Load the map of the tile tasks in this process (forked pool workers inherit it)."""
    _state(map_dir, resolution)


# -- the edge stage: every tile, resumable --------------------------------------------------------


def _finished(map_dir: Path, tiles: Iterable[str], record: PartLog) -> set[str]:
    """Tiles whose part exists and matches its recorded checksum."""
    ok = set()
    for tile in tiles:
        path = part_path(map_dir, tile)
        if tile in record.done and path.is_file() and sha256_file(path) == record.done[tile]:
            ok.add(tile)
    return ok


def _clean_parts(map_dir: Path, tiles: Iterable[str]) -> None:
    """Remove temporaries of killed writers and parts of tiles this build does not have."""
    for stale in (map_dir / EDGES_DIR).glob(".*.tmp-*"):
        stale.unlink()
    parts = map_dir / PARTS_DIR
    if not parts.is_dir():
        return
    wanted = {f"{t}.parquet" for t in tiles}
    for path in parts.iterdir():
        if path.name not in wanted:
            path.unlink()


def run_batch(
    map_dir: str | os.PathLike[str],
    params: TileParams | None = None,
    *,
    executor: str = "serial",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: ProgressArg = None,
) -> dict[str, Any]:
    """Build every missing tile of a map and merge the region outputs.

    Parts already present with a matching checksum in the build's part log are kept, so a
    build killed midway resumes where it stopped and ends with the same bytes as a clean one.

    Parameters
    ----------
    map_dir : path-like
        Map directory with its base tables and ``manifest.json`` (during :func:`build_map`, the
        partial directory). Executors on other machines must see it at the same path.
    params : TileParams, optional
        Tiling and planning parameters (defaults: :class:`TileParams`).
    executor : {"serial", "processes", "dask"}
        Where tiles run; every executor gives identical output.
    workers : int, optional
        Worker processes for ``processes`` and a dask ``LocalCluster`` (default: CPU count).
    scheduler : str, optional
        Address of an existing dask scheduler (``tcp://host:port``), dask only.
    progress : commap.progress.Progress or callable(str), optional
        Progress callbacks; a plain callable receives status lines. Default: the log.

    Returns
    -------
    dict
        The ``edges`` section of the manifest: format, parameters, tiles with checksums, output
        files and region totals.

    Raises
    ------
    InvalidInputError
        Bad executor options, a map without roads, or an input a tile cannot use.
    """
    workers_n = check_executor(executor, workers, scheduler)
    report = as_progress(progress, label="edges", unit="tiles")
    root = Path(map_dir).resolve()
    params = params or TileParams()
    index = _index(root, params.resolution)
    if params.reference_s is None:
        params = TileParams(
            resolution=params.resolution, app=params.app, reference_s=index.default_departure_s
        )
    tiles = list(index.tiles)
    (root / PARTS_DIR).mkdir(parents=True, exist_ok=True)
    record = PartLog(root / PART_LOG)
    _clean_parts(root, tiles)
    finished = _finished(root, tiles, record)
    # largest tiles first: the last tile to start is a small one, so workers finish together;
    # the GeoPackage takes the segments in this order too, most of them while tiles still run
    order = sorted(tiles, key=lambda t: (-index.tile_km[t], t))
    todo = [t for t in order if t not in finished]
    report.message(
        f"edges: {len(tiles)} tiles ({len(finished)} already built), executor {executor}"
    )
    report.total(len(tiles), done=len(finished))
    assert params.reference_s is not None
    with region_writer(
        root, order=order, network_ids=index.network_ids, reference_s=params.reference_s
    ) as merge:
        for tile in order:
            if tile in finished:
                merge.add(tile)

        def done(tile: str, result: tuple[Path, str, PartSummary]) -> None:
            _, sha256, summary = result
            record.add(tile, sha256)
            merge.add(tile, summary)
            report.advance(1)

        run_tiles(
            _summarized_tile,
            root,
            todo,
            params,
            executor=executor,
            workers=workers_n,
            scheduler=scheduler,
            done=done,
            warm=functools.partial(_load_state, root, params.resolution),
        )
        report.message("edges: merging gaps, statistics and the GeoPackage")
        region = merge.finish(
            tiles={tile: len(index.tiles[tile]) for tile in index.tiles},
            checksums=record.done,
            bounds=index.bounds,
        )
    section = {
        "format": EDGES_FORMAT,
        "parameters": {
            **params.as_dict(),
            "segment_m": index.segment_m,
            "usable_sinr_db": USABLE_SINR_DB,
            "through_turn_deg": MAX_THROUGH_TURN_DEG,
            "planner": _PLANNER,
        },
        **region,
    }
    (root / PART_LOG).unlink(missing_ok=True)
    _clear_state()
    return section


# -- the whole map --------------------------------------------------------------------------------


def build_map(
    spec_path: str | Path,
    out_dir: str | Path,
    *,
    progress: ProgressArg = None,
    executor: str = "serial",
    workers: int | None = None,
    scheduler: str | None = None,
    edges: bool = True,
    tile_params: TileParams | None = None,
) -> Path:
    """Build a map from its spec into ``out_dir`` (replaced atomically when complete).

    The build runs in a partial directory beside ``out_dir``, ``.<name>.partial-<key>``, whose
    key hashes the spec, every input file it names, the commap code and the batch parameters.
    A build that was killed resumes from it: the base tables (roads, layers, caches) when they
    were complete, and every edge-table part already recorded. A failure on bad input
    (:class:`~commap.errors.CommapError`) removes it; ``out_dir`` appears only complete.

    Parameters
    ----------
    spec_path : path of ``map.toml``.
    out_dir : the built map directory.
    progress : called with a short message at each step (for CLIs), or a
        :class:`commap.progress.Progress` (tile counts for a progress bar as well).
    executor : ``serial``, ``processes`` or ``dask``: where the edge-table tiles run.
    workers : worker processes for ``processes`` and a dask ``LocalCluster`` (default: CPUs).
    scheduler : address of an existing dask scheduler (``tcp://host:port``; dask only).
    edges : build the per-edge table for maps with roads.
    tile_params : tiling and planning parameters of the edge table (default
        :class:`TileParams`).

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    InvalidInputError
        A bad spec, a missing or corrupt input file, bad executor options, or another build
        writing ``out_dir`` at the same time.

    Examples
    --------
    >>> build_map("no/such/map.toml", "built")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: map spec no/such/map.toml does not exist
    """
    report = as_progress(progress, label="edges", unit="tiles")
    from commap.map.spec import read_spec

    spec = read_spec(spec_path)
    check_executor(executor, workers, scheduler)
    params = tile_params or TileParams()
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs = _inputs(spec)
    key = _build_key(inputs, params.as_dict() if edges else None)
    partial = out.parent / f".{out.name}.partial-{key[:16]}"
    with _exclusive(out):
        _drop_stale_partials(out, keep=partial)
        try:
            manifest = _base_stage(spec, partial, key, inputs, report.message)
            if edges and manifest.roads is not None:
                section = run_batch(
                    partial,
                    params,
                    executor=executor,
                    workers=workers,
                    scheduler=scheduler,
                    progress=report,
                )
                manifest = replace(manifest, edges=section)
            replace(manifest, files=_file_checksums(partial)).write(partial / MANIFEST)
            _replace_dir(partial, out)
        except CommapError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        except BaseException:
            log.warning("build of %s stopped; run it again to resume from %s", out, partial)
            raise
    report.message(f"map {spec.name} built in {out}")
    return out


def _inputs(spec: MapSpec) -> BuildInputs:
    """The spec and every file (or directory of files) its values name, with checksums."""
    found: dict[str, str] = {}

    def visit(value: Any) -> None:
        if isinstance(value, Mapping):
            for item in value.values():
                visit(item)
        elif isinstance(value, list | tuple):
            for item in value:
                visit(item)
        elif isinstance(value, str) and value and "\n" not in value and len(value) < 1024:
            path = spec.source_dir / value
            try:
                if path.is_file():
                    found[value] = sha256_file(path)
                elif path.is_dir() and value not in (".", ".."):
                    for item in sorted(p for p in path.rglob("*") if p.is_file()):
                        found[f"{value}/{item.relative_to(path)}"] = sha256_file(item)
            except OSError:  # a text value that is no file name (too long, ...)
                pass

    visit(spec.raw)
    return BuildInputs(
        spec_file=spec.path.name,
        spec_sha256=sha256_file(spec.path),
        files=dict(sorted(found.items())),
    )


def _code_digest() -> str:
    """Checksum of the commap sources: a partial build of other code is never resumed."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent  # the whole commap package
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _build_key(inputs: BuildInputs, edge_params: Mapping[str, Any] | None) -> str:
    payload = {
        "format": FORMAT,
        "commap": __version__,
        "code": _code_digest(),
        "inputs": inputs.to_dict(),
        "edges": edge_params,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# Descriptors of the build locks this process holds. A forked pool worker closes its copies:
# an flock lasts while any descriptor of it is open, and a worker left behind by a killed
# build must not keep the lock from the build that resumes it.
_HELD_LOCKS: set[int] = set()


def _close_held_locks() -> None:
    for fd in _HELD_LOCKS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_close_held_locks)


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``out``: one build of a directory at a time."""
    lock = out.parent / f".{out.name}.lock"
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidInputError(
                f"{out}: another build is writing this map (lock {lock})", field="out"
            ) from None
        _HELD_LOCKS.add(handle.fileno())
        try:
            yield
        finally:
            _HELD_LOCKS.discard(handle.fileno())
            lock.unlink(missing_ok=True)  # still held: no other build got it in between


def _drop_stale_partials(out: Path, *, keep: Path) -> None:
    """Partial builds of other inputs or code can never be resumed: remove them."""
    for path in out.parent.glob(f".{out.name}.partial-*"):
        if path != keep:
            log.info("removing stale partial build %s", path)
            shutil.rmtree(path, ignore_errors=True)


def _base_stage(spec: MapSpec, partial: Path, key: str, inputs: BuildInputs, say: _Say) -> Manifest:
    """The map without its edge table, reused from ``partial`` when complete there."""
    manifest_path = partial / MANIFEST
    if manifest_path.is_file():
        try:
            previous = Manifest.read(manifest_path)
            if previous.build_key == key:
                verify_files(partial, previous.files)
                say(f"resuming the partial build in {partial}")
                return replace(previous, edges=None, files={})
        except (OSError, CommapError) as exc:
            log.info("partial build %s is not reusable (%s): starting again", partial, exc)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    manifest = replace(_build_into(spec, partial, say), inputs=inputs, build_key=key)
    # loadable from here on (batch workers open it); also marks the base stage as complete
    manifest.write(manifest_path)
    return replace(manifest, files={})


def _file_checksums(built: Path) -> dict[str, str]:
    files = sorted(p for p in built.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {str(p.relative_to(built)): sha256_file(p) for p in files}


def _copy_sources(spec: MapSpec, files: Sequence[str], built: Path, subdir: str) -> list[str]:
    out: list[str] = []
    (built / subdir).mkdir(exist_ok=True)
    for name in files:
        src = spec.source_dir / name
        if not src.is_file():
            raise InvalidInputError(f"{spec.path}: source file {name} does not exist")
        dst = built / subdir / src.name
        shutil.copyfile(src, dst)
        out.append(f"{subdir}/{src.name}")
    return out


def _build_networks(spec: MapSpec, ctx: LayerContext, progress: _Say) -> list[NetworkEntry]:
    points: list[tuple[NDArray[np.float64], NDArray[np.float64]]] = []

    def road_points() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        if not points:  # computed once, for the first cached layer
            assert ctx.roads is not None
            points.append(road_sample_points(ctx.roads, spacing_m=spec.segment_m / 2.0))
        return points[0]

    built_networks: list[NetworkEntry] = []
    for raw in spec.networks:
        entry = NetworkEntry(fields={k: raw[k] for k in NETWORK_FIELDS if k in raw}, layer={})
        network = entry.network()
        progress(f"network {network.id}: preparing {raw['layer'].get('type')} layer")
        try:
            layer = prepare_layer(network, raw["layer"], ctx)
        except InvalidInputError as exc:  # name the spec file whose layer is wrong
            raise InvalidInputError(f"{spec.path}: {exc}", field=exc.field) from exc
        cache = None
        if ctx.roads is not None and layer.get("type") in CACHED_LAYER_TYPES:
            progress(f"network {network.id}: sampling coverage along every road")
            cache = f"cache/{network.id}.parquet"
            write_cache(load_layer(network, layer, ctx), *road_points(), ctx.built_dir / cache)
        measured = None
        if "measured" in raw:
            from commap.radio.layers.measured import prepare_measured

            measured = prepare_measured(network, raw["measured"], ctx)
        report = layer.pop("ingest", None) or (measured or {}).pop("ingest", None)
        ingest = None
        if report is not None:
            ingest = IngestCount.parse_report(report, f"network {network.id}")
            for name, counts in ingest.items():
                dropped = ", ".join(f"{n} {why}" for why, n in counts.dropped.items()) or "none"
                progress(
                    f"network {network.id}: {name}: {counts.used} records used, dropped: {dropped}"
                )
        built_networks.append(
            replace(entry, layer=layer, cache=cache, measured=measured, ingest=ingest)
        )
    return built_networks


def _build_into(spec: MapSpec, built: Path, say: _Say) -> Manifest:
    from commap.geo import roads as roads_mod

    terrain = None
    terrain_source = None
    if not spec.terrain:
        tiles = srtm_tile_names(spec.bbox)
        warning = (
            f"{spec.path}: no [terrain]: coverage is modelled over flat earth (no hills, no "
            f"terrain shadow); in mountains add the SRTM tiles {', '.join(tiles)} "
            "(files = [...] under [terrain])"
        )
        # the CLI shows warnings as "warning: ..." lines: said once, through the log
        log.warning("%s", warning)
    if spec.terrain:
        say("terrain: loading SRTM tiles")
        tiles = _copy_sources(spec, list(spec.terrain.get("files", [])), built, "terrain")
        terrain = Terrain.from_files([built / f for f in tiles])
        terrain_source = TerrainSource(tuple(tiles), str(spec.terrain.get("attribution", "")))
    graph = None
    roads_source = None
    if spec.roads:
        say(f"roads: reading {spec.roads['file']}")
        graph = roads_mod.load_road_graph(spec.source_dir / spec.roads["file"], bbox=spec.bbox)
        roads_mod.write_road_graph(graph, built / "roads")
        length_km = sum(d["length_m"] for _, _, d in graph.edges(data=True)) / 1000.0
        roads_source = RoadsSource(
            dir="roads",
            source=Path(spec.roads["file"]).name,
            attribution=str(spec.roads.get("attribution", "")),
            nodes=graph.number_of_nodes(),
            edges=graph.number_of_edges(),
            edge_length_km=round(length_km, 3),
        )
        say(f"roads: {graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges")
    ctx = LayerContext(
        source_dir=spec.source_dir,
        built_dir=built,
        bbox=spec.bbox,
        terrain=terrain,
        roads=graph,
        seed=spec.seed,
        osm_file=spec.source_dir / spec.roads["file"] if spec.roads else None,
    )
    networks = _build_networks(spec, ctx, say)
    return Manifest(
        commap_version=__version__,
        name=spec.name,
        title=spec.title,
        description=spec.description,
        bbox=spec.bbox,
        segment_m=spec.segment_m,
        seed=spec.seed,
        default_departure_s=spec.default_departure_s,
        roads=roads_source,
        terrain=terrain_source,
        networks=tuple(networks),
        attribution=tuple(_attributions(spec)),
        files=_file_checksums(built),
    )


def _attributions(spec: MapSpec) -> list[str]:
    found: list[str] = []
    tables: list[Any] = [spec.roads, spec.terrain]
    for net in spec.networks:
        tables += [net.get("layer"), net.get("measured")]
    for table in tables:
        if isinstance(table, Mapping) and table.get("attribution"):
            text = str(table["attribution"])
            if text not in found:
                found.append(text)
    return found


def _replace_dir(new: Path, target: Path) -> None:
    """Swap the complete ``new`` directory in for ``target`` (two renames, then clean up)."""
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)
