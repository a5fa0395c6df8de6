"""Batch map generation: the per-edge communication table of a whole region, tile by tile.

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

:func:`run_batch` runs the missing tiles with an executor (``serial``, ``processes``: a
``concurrent.futures`` process pool, ``dask``: ``dask.distributed``, a ``LocalCluster`` or an
existing scheduler; dask is imported only there), skips parts whose checksum is already
recorded (resume after a crash), and merges the region outputs: the gap list
(``edges/gaps.parquet``), per-network coverage statistics (``edges/stats.json``) and a
GeoPackage for QGIS (``edges/edges.gpkg``: layers ``segments``, ``gaps``, ``handovers``).
:func:`commap.map.comm_map.build_map` calls it as the last stage of a map build.

Part columns (one row per segment of a directed edge; lengths along the edge):
``tile``, ``chain``, ``chain_pos`` (segment order along the chain), ``u``, ``v``, ``key``,
``osm_id``, ``highway``, ``name``, ``ref``, ``seg`` (segment index on the edge), ``start_m``,
``end_m``, ``length_m``, ``in_tunnel``, ``on_bridge``, ``under_bridge``, ``network`` (the
recommended one), ``outage_risk`` (its drop probability in the segment), ``handover_from`` and
``handover_kind`` (a planned switch at the start of the segment, else ``""``),
``usable_networks`` (networks with SINR >= :data:`commap.radio.quality.QOUT_SINR_DB`), ``gap`` (no
usable network), and per network ``<id>_sinr_db``, ``<id>_rsrp_dbm`` (terrestrial) or
``<id>_elevation_deg`` (satellite), ``<id>_confidence`` (float32) and ``<id>_provenance``
(:class:`commap.radio.quality.Provenance` code).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import h3
import networkx as nx
import numpy as np
import pandas as pd
import pyproj
import shapely
from numpy.typing import NDArray

from commap.errors import InvalidInputError
from commap.geo.corridor import Corridor, Route, cut
from commap.geo.geodesy import GEOD
from commap.networks import NetworkCatalogue
from commap.progress import ProgressArg, as_progress
from commap.radio.link import APP_PROFILES
from commap.radio.quality import QOUT_SINR_DB, Provenance, QualityMatrix

__all__ = [
    "DEFAULT_TILE_RESOLUTION",
    "EDGES_DIR",
    "EDGES_FORMAT",
    "EXECUTORS",
    "MAX_THROUGH_TURN_DEG",
    "TileParams",
    "assign_tiles",
    "build_tile",
    "check_executor",
    "part_path",
    "read_coverage_stats",
    "read_edge_table",
    "read_gaps",
    "run_batch",
    "summary_lines",
    "through_chains",
]

log = logging.getLogger(__name__)

EdgeKey = tuple[int, int, int]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

EXECUTORS = ("serial", "processes", "dask")
EDGES_FORMAT = "commap-edges/1"
EDGES_DIR = "edges"
PARTS_DIR = f"{EDGES_DIR}/parts"
GAPS_FILE = f"{EDGES_DIR}/gaps.parquet"
STATS_FILE = f"{EDGES_DIR}/stats.json"
GPKG_FILE = f"{EDGES_DIR}/edges.gpkg"
# Completion log of a running build (tile + checksum per line); deleted once the map is whole.
PART_LOG = f"{EDGES_DIR}/parts.log"
# H3 resolution 6: cells of ~36 km^2, 17 tiles for Andorra, ~10,000 for Germany.
DEFAULT_TILE_RESOLUTION = 6
# A road continues "through" a junction onto an edge turning at most this much.
MAX_THROUGH_TURN_DEG = 60.0
CRS = pyproj.CRS.from_epsg(4326)  # parsed once: every GeoDataFrame shares it

_PLANNER = "exact DP (commap.plan.solve, solver='dp') per through-chain of directed edges in a tile"


# -- parameters and progress --------------------------------------------------------------------


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


def check_executor(executor: str, workers: int | None, scheduler: str | None) -> int:
    """Validate executor options; return the number of workers to start.

    Raises
    ------
    InvalidInputError
        Unknown executor, fewer than one worker, or a scheduler address without ``dask``.

    Examples
    --------
    >>> check_executor("serial", None, None)
    1
    >>> check_executor("processes", 2, None)
    2
    >>> check_executor("threads", None, None)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: unknown executor 'threads'; expected serial, processes, dask
    """
    if executor not in EXECUTORS:
        raise InvalidInputError(
            f"unknown executor {executor!r}; expected {', '.join(EXECUTORS)}", field="executor"
        )
    if workers is not None and (
        isinstance(workers, bool) or int(workers) != workers or workers < 1
    ):
        raise InvalidInputError(f"workers must be an integer >= 1, got {workers}", field="workers")
    if scheduler and executor != "dask":
        raise InvalidInputError("a scheduler address needs the dask executor", field="scheduler")
    if executor == "serial":
        return 1
    return int(workers) if workers is not None else (os.cpu_count() or 1)


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


def _stamp(map_dir: Path) -> tuple[str, tuple[int, int]]:
    """Resolved map directory and its manifest's (mtime, size): the key of the caches below."""
    from commap.map.comm_map import MANIFEST

    manifest = Path(map_dir).resolve() / MANIFEST
    try:
        info = manifest.stat()
    except OSError:
        raise InvalidInputError(f"{map_dir} is not a built map (no {MANIFEST})") from None
    return str(manifest.parent), (info.st_mtime_ns, info.st_size)


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
def _cached_index(map_dir: str, stamp: tuple[int, int], resolution: int) -> _Index:
    from commap.geo.roads import EDGES_FILE
    from commap.map.comm_map import MANIFEST

    del stamp  # cache key only
    root = Path(map_dir)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        roads = manifest.get("roads")
        if not roads:
            raise InvalidInputError(f"map {map_dir} has no road graph: no edge table to build")
        frame = gpd.read_parquet(
            root / roads["dir"] / EDGES_FILE, columns=["u", "v", "key", "length_m", "geometry"]
        )
        ids = tuple(str(n["id"]) for n in manifest["networks"])
        facts = (str(manifest["name"]), float(manifest["segment_m"]), list(manifest["bbox"]))
        departure_s = float(manifest["default_departure_s"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(
            f"map {map_dir}: unreadable manifest or road table ({exc})"
        ) from None
    keys = list(zip(*(frame[c].astype(np.int64).tolist() for c in ("u", "v", "key")), strict=True))
    geometries = list(frame.geometry)
    tiles = _tiles_of(keys, geometries, resolution)
    length = dict(zip(keys, frame["length_m"].astype(float).tolist(), strict=True))
    return _Index(
        name=facts[0],
        network_ids=ids,
        segment_m=facts[1],
        default_departure_s=departure_s,
        tiles=tiles,
        tile_km={t: sum(length[e] for e in edges) / 1000.0 for t, edges in tiles.items()},
        bounds=_map_bounds(geometries, facts[2]),
    )


def _index(map_dir: Path, resolution: int) -> _Index:
    return _cached_index(*_stamp(map_dir), resolution)


@dataclass(frozen=True)
class _MapState:
    """A loaded map plus what every tile of it needs (built once per worker process)."""

    cmap: Any  # commap.map.comm_map.CommMap (imported lazily: comm_map imports this module)
    tiles: dict[str, list[EdgeKey]]
    bounds: tuple[float, float, float, float]
    bridges: NDArray[np.object_]
    bridge_tree: shapely.STRtree


@functools.lru_cache(maxsize=2)
def _map_state(map_dir: str, stamp: tuple[int, int], resolution: int) -> _MapState:
    from commap.geo import roads as roads_mod
    from commap.map.comm_map import CommMap

    del stamp  # cache key only
    cmap = CommMap.load(Path(map_dir))
    if cmap.roads is None:
        raise InvalidInputError(f"map {map_dir} has no road graph: no edge table to build")
    found = roads_mod.bridge_geometries(cmap.roads)
    bridges = np.empty(len(found), dtype=object)
    bridges[:] = found
    return _MapState(
        cmap=cmap,
        tiles=assign_tiles(cmap.roads, resolution),
        bounds=_map_bounds([g for _, _, g in cmap.roads.edges(data="geometry")], cmap.bbox),
        bridges=bridges,
        bridge_tree=shapely.STRtree(bridges),
    )


def _state(map_dir: Path, resolution: int) -> _MapState:
    return _map_state(*_stamp(map_dir), resolution)


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
    _, _, leg_m = GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
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

    graph = state.cmap.roads
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


def _rows(matrix: QualityMatrix, rows: slice) -> QualityMatrix:
    return QualityMatrix(
        network_ids=matrix.network_ids,
        rsrp_dbm=matrix.rsrp_dbm[rows],
        sinr_db=matrix.sinr_db[rows],
        elevation_deg=matrix.elevation_deg[rows],
        confidence=matrix.confidence[rows],
        provenance=matrix.provenance[rows],
        sample_count=matrix.sample_count[rows],
    )


def _quality(cmap: Any, corridor: Corridor, reference_s: float) -> QualityMatrix:
    """Quality of every network at every segment, all at the reference time."""
    t_s = np.full(len(corridor), reference_s)
    columns = [
        cmap.layers[nid].sample(
            corridor.lon,
            corridor.lat,
            t_s,
            in_tunnel=corridor.in_tunnel,
            under_bridge=corridor.under_bridge,
        )
        for nid in cmap.catalogue.ids
    ]
    return QualityMatrix.from_columns(cmap.catalogue.ids, columns)


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
        plans.append(_plan_chain(corridor, _rows(matrix, rows), catalogue, app))
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
    matrix = _quality(cmap, everything, reference_s)
    plans = _plan_chains(joined, matrix, cmap.catalogue, params.app)
    flat = [cut_ for chain in cuts for cut_ in chain]
    usable = (matrix.sinr_db >= QOUT_SINR_DB).sum(axis=1).astype(np.int8)
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
    return _hilbert_sorted(frame, state.bounds)


def _hilbert_sorted(
    frame: gpd.GeoDataFrame, bounds: tuple[float, float, float, float]
) -> gpd.GeoDataFrame:
    """Rows in Hilbert order of their geometry (ties by edge and segment): spatial locality."""
    distance = frame.geometry.hilbert_distance(total_bounds=bounds).to_numpy()
    order = np.lexsort(
        (
            frame["seg"].to_numpy(),
            frame["key"].to_numpy(),
            frame["v"].to_numpy(),
            frame["u"].to_numpy(),
            distance,
        )
    )
    return frame.iloc[order].reset_index(drop=True)


def _write_atomic_parquet(frame: gpd.GeoDataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        frame.to_parquet(tmp, index=False, write_covering_bbox=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def part_path(map_dir: str | os.PathLike[str], tile: str) -> Path:
    """Where the part of ``tile`` lives in a (partial or built) map directory."""
    return Path(map_dir) / PARTS_DIR / f"{tile}.parquet"


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
    _write_atomic_parquet(frame, path)
    log.debug("tile %s: %d edges, %d segments -> %s", tile_id, len(edges), len(frame), path)
    return path


# -- executors ------------------------------------------------------------------------------------

_Done = Callable[[str, Path], None]


def _run_serial(map_dir: Path, todo: Sequence[str], params: TileParams, done: _Done) -> None:
    for tile in todo:
        done(tile, build_tile(map_dir, tile, params))


def _run_processes(
    map_dir: Path, todo: Sequence[str], params: TileParams, workers: int, done: _Done
) -> None:
    # spawn, not fork: workers start clean (no inherited threads or locks of the caller)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context) as pool:
        futures: dict[Future[Path], str] = {
            pool.submit(build_tile, str(map_dir), tile, params): tile for tile in todo
        }
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=lambda f: futures[f]):
                    done(futures[future], future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


_SCHEDULER_TIMEOUT_S = 20.0  # connecting to an existing scheduler


def _dask_client(workers: int, scheduler: str | None) -> Any:
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=_SCHEDULER_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise InvalidInputError(
                f"cannot reach the dask scheduler at {scheduler}: {exc}", field="scheduler"
            ) from None
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    return Client(cluster)


def _run_dask(
    map_dir: Path,
    todo: Sequence[str],
    params: TileParams,
    workers: int,
    scheduler: str | None,
    done: _Done,
) -> None:
    from dask.distributed import as_completed

    client = _dask_client(workers, scheduler)
    cluster = None if scheduler else client.cluster
    try:
        # pure=False: random task keys, so two builds on one shared cluster never share results
        futures = [client.submit(build_tile, str(map_dir), t, params, pure=False) for t in todo]
        tiles = {f.key: t for f, t in zip(futures, todo, strict=True)}
        try:
            for future in as_completed(futures):
                done(tiles[future.key], Path(future.result()))
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# -- resumable build ------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _PartLog:
    """Append-only record of finished parts (``tile sha256`` per line, fsynced).

    Appending keeps the cost per tile constant for any number of tiles; a line torn by a kill
    is ignored (its tile is built again).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, str] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                fields = line.split()
                if len(fields) == 2 and len(fields[1]) == 64:
                    self.done[fields[0]] = fields[1]

    def add(self, tile: str, sha256: str) -> None:
        self.done[tile] = sha256
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(f"{tile} {sha256}\n")
            f.flush()
            os.fsync(f.fileno())


def _finished(map_dir: Path, tiles: Iterable[str], record: _PartLog) -> set[str]:
    """Tiles whose part exists and matches its recorded checksum."""
    ok = set()
    for tile in tiles:
        path = part_path(map_dir, tile)
        if tile in record.done and path.is_file() and _sha256(path) == record.done[tile]:
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
    record = _PartLog(root / PART_LOG)
    _clean_parts(root, tiles)
    finished = _finished(root, tiles, record)
    # largest tiles first: the last tile to start is a small one, so workers finish together
    todo = sorted((t for t in tiles if t not in finished), key=lambda t: (-index.tile_km[t], t))
    report.message(
        f"edges: {len(tiles)} tiles ({len(finished)} already built), executor {executor}"
    )
    report.total(len(tiles), done=len(finished))

    def done(tile: str, path: Path) -> None:
        record.add(tile, _sha256(path))
        report.advance(1)

    if todo:
        if executor == "serial":
            _run_serial(root, todo, params, done)
        elif executor == "processes":
            _run_processes(root, todo, params, workers_n, done)
        else:
            _run_dask(root, todo, params, workers_n, scheduler, done)
    report.message("edges: merging gaps, statistics and the GeoPackage")
    section = _merge(root, index, params, record)
    (root / PART_LOG).unlink(missing_ok=True)
    _clear_state()
    return section


# -- region outputs -------------------------------------------------------------------------------

_PROVENANCE_NAMES = {int(p): p.name.lower() for p in Provenance}


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

    def add(self, frame: pd.DataFrame) -> None:
        length = frame["length_m"].to_numpy()
        self.edge_m += float(length.sum())
        self.tunnel_m += float(length[frame["in_tunnel"].to_numpy()].sum())
        self.segments += len(frame)
        self.gap_m += float(length[frame["gap"].to_numpy()].sum())
        kinds = frame["handover_kind"].to_numpy()
        for kind in sorted(set(kinds.tolist()) - {""}):
            self.handovers[kind] = self.handovers.get(kind, 0) + int((kinds == kind).sum())
        recommended = frame["network"].to_numpy()
        for nid in self.ids:
            covered = frame[f"{nid}_sinr_db"].to_numpy() >= QOUT_SINR_DB
            self.covered_m[nid] += float(length[covered].sum())
            self.recommended_m[nid] += float(length[recommended == nid].sum())
            provenance = frame[f"{nid}_provenance"].to_numpy()
            for code, name in _PROVENANCE_NAMES.items():
                self.by_provenance[nid][name] += float(length[covered & (provenance == code)].sum())

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
    """GeoPackage export, written beside its target and renamed when complete.

    Reproducible bytes: GDAL stamps ``last_change`` with OGR_CURRENT_DATE (set to the reference
    time while writing). Segment rows are buffered into large batches: every write call costs a
    transaction, whatever its size.
    """

    def __init__(self, path: Path, reference_s: float) -> None:
        import pyogrio

        self.pyogrio = pyogrio
        self.path = path
        self.tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
        self.tmp.unlink(missing_ok=True)
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
                self.tmp,
                layer=layer,
                driver="GPKG",
                append=layer in self.layers,
                geometry_type=geometry_type,
            )
        finally:
            self.pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})
        self.layers.add(layer)

    def commit(self) -> None:
        self.flush_segments()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


_GPKG_BATCH_ROWS = 200_000


def _write_json_atomic(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _merge(root: Path, index: _Index, params: TileParams, record: _PartLog) -> dict[str, Any]:
    """Gap list, statistics and GeoPackage from the parts; the manifest's ``edges`` section."""
    assert params.reference_s is not None
    stats = _Stats(index.network_ids)
    gaps: list[gpd.GeoDataFrame] = []
    handovers: list[gpd.GeoDataFrame] = []
    tiles: list[dict[str, Any]] = []
    gpkg = _GpkgWriter(root / GPKG_FILE, params.reference_s)
    try:
        for tile in index.tiles:
            path = part_path(root, tile)
            frame = gpd.read_parquet(path)
            stats.add(frame)
            gaps.append(_gaps(frame))
            handovers.append(_handover_points(frame))
            gpkg.add_segments(frame)
            tiles.append(
                {
                    "id": tile,
                    "part": str(path.relative_to(root)),
                    "edges": len(index.tiles[tile]),
                    "segments": len(frame),
                    "sha256": record.done[tile],
                }
            )
        gap_frame = _hilbert_gaps(gaps, index.bounds)
        gpkg.flush_segments()
        gpkg.write(gap_frame, "gaps", "LineString")
        gpkg.write(pd.concat(handovers, ignore_index=True), "handovers", "Point")
        gpkg.commit()
    finally:
        gpkg.discard()
    _write_atomic_parquet(gap_frame, root / GAPS_FILE)
    totals = stats.as_dict(gaps=len(gap_frame))
    _write_json_atomic(root / STATS_FILE, totals)
    return {
        "format": EDGES_FORMAT,
        "parameters": {
            **params.as_dict(),
            "segment_m": index.segment_m,
            "usable_sinr_db": QOUT_SINR_DB,
            "through_turn_deg": MAX_THROUGH_TURN_DEG,
            "planner": _PLANNER,
        },
        "outputs": {"parts": PARTS_DIR, "gaps": GAPS_FILE, "stats": STATS_FILE, "gpkg": GPKG_FILE},
        "totals": {k: totals[k] for k in ("edge_km", "segments", "gap_km", "gaps", "handovers")},
        "tiles": tiles,
    }


def _hilbert_gaps(
    gaps: Sequence[gpd.GeoDataFrame], bounds: tuple[float, float, float, float]
) -> gpd.GeoDataFrame:
    frame = gpd.GeoDataFrame(pd.concat(gaps, ignore_index=True), geometry="geometry", crs=CRS)
    if frame.empty:
        return frame
    distance = frame.geometry.hilbert_distance(total_bounds=bounds).to_numpy()
    order = np.lexsort(
        (
            frame["from_m"].to_numpy(),
            frame["from_key"].to_numpy(),
            frame["from_v"].to_numpy(),
            frame["from_u"].to_numpy(),
            distance,
        )
    )
    return frame.iloc[order].reset_index(drop=True)


# -- reading a built map's edge table ---------------------------------------------------------------


def _section(map_dir: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    from commap.map.comm_map import MANIFEST, resolve_map_dir

    directory = resolve_map_dir(Path(map_dir))
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{directory / MANIFEST}: unreadable manifest ({exc})") from None
    section = manifest.get("edges") if isinstance(manifest, dict) else None
    if not isinstance(section, dict) or section.get("format") != EDGES_FORMAT:
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
    directory, section = _section(map_dir)
    try:
        return gpd.read_parquet(directory / section["outputs"]["gaps"])
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInputError(f"map {directory}: unreadable gap list ({exc})") from None


def read_coverage_stats(map_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Per-network coverage statistics of a built map's region (``edges/stats.json``).

    Raises
    ------
    InvalidInputError
        The map has no edge table.
    """
    directory, section = _section(map_dir)
    try:
        payload: dict[str, Any] = json.loads(
            (directory / section["outputs"]["stats"]).read_text(encoding="utf-8")
        )
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInputError(f"map {directory}: unreadable statistics ({exc})") from None
    return payload


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
