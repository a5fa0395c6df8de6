"""The per-tile job of a map build, importable without pandas (batch workers load only this).

The drivable edges of a built map are split into tiles (H3 cells at
:attr:`TileParams.resolution`; an edge belongs to the cell of its midpoint). :func:`build_tile`
is a pure function of ``(map directory, tile, parameters)``: for every directed edge of the
tile it cuts the edge into the map's segments, samples the quality of every network at each
segment (satellites at one fixed reference time, the map's default departure), plans the
recommended network with the exact DP planner, flags coverage gaps, and writes one GeoParquet
part (one LineString row per segment, EPSG:4326, Hilbert-sorted; :mod:`commap.map.parts`)
under a temporary name that is then renamed into place. The same inputs give a byte-identical
part, whichever process runs it. :func:`summarized_tile` is the task the executors run: the
part, its checksum and its summary for the region merge.

A fresh batch worker (a dask worker) imports this module before its first tile: it imports
no pandas, geopandas or map-spec readers, whose import would cost more CPU than a small tile.

Planning unit: **through-chains inside a tile**. At
every node a directed edge continues onto the out-edge of the same tile that turns least
(at most :data:`MAX_THROUGH_TURN_DEG`, no U-turn); where several edges would continue onto one,
the straightest wins. The chains partition the tile's directed edges; each chain is planned as
one corridor, so the recommended network and the handover points on an edge take the traffic
coming from upstream and going downstream into account (planning each edge alone would put a
plan restart at every junction). A chain ends at the tile boundary: a vehicle crossing it gets a
fresh plan there. With H3 resolution 6 (cells of about 36 km^2) such breaks are a few per
through road.

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

import functools
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h3
import networkx as nx
import numpy as np
import shapely
from numpy.typing import NDArray

from commap.arrays import FloatArray
from commap.errors import InvalidInputError
from commap.files import sha256_file
from commap.geo.corridor import Corridor, Route, cut
from commap.map.comm_map import CommMap
from commap.map.manifest import MANIFEST
from commap.map.parts import (
    GEOMETRY,
    PartSummary,
    geo_table,
    hilbert_order,
    part_path,
    summarize_part,
    write_geoparquet_table,
)
from commap.networks import NetworkCatalogue
from commap.radio.link import APP_PROFILES, LinkModel, Objective
from commap.radio.quality import USABLE_SINR_DB, QualityMatrix

if TYPE_CHECKING:
    from commap.plan import Constraints

__all__ = [
    "DEFAULT_TILE_RESOLUTION",
    "MAX_THROUGH_TURN_DEG",
    "TileParams",
    "assign_tiles",
    "build_tile",
    "clear_state",
    "load_state",
    "map_version",
    "summarized_tile",
    "through_chains",
]

log = logging.getLogger(__name__)

EdgeKey = tuple[int, int, int]

# H3 resolution 6: cells of ~36 km^2, 17 tiles for Andorra, ~10,000 for Germany.
DEFAULT_TILE_RESOLUTION = 6
# A road continues "through" a junction onto an edge turning at most this much.
MAX_THROUGH_TURN_DEG = 60.0

# Bridges searched around an edge (~160 m of longitude at 42 deg N): more than the 100 m cut
# looks for overpasses
_BRIDGE_SEARCH_DEG = 0.002


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
        the map's default departure (:func:`commap.map.build.run_batch` resolves it before it hands it out).

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


def map_version(map_dir: Path) -> tuple[str, str]:
    """Resolved map directory and the SHA-256 of its manifest: the key of the caches below."""
    manifest = Path(map_dir).resolve() / MANIFEST
    try:
        return str(manifest.parent), sha256_file(manifest)
    except OSError:
        raise InvalidInputError(f"{map_dir} is not a built map (no {MANIFEST})") from None


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
    return _map_state(*map_version(map_dir), resolution)


def clear_state() -> None:
    """Forget the maps this process loaded for tiles (the next tile loads its map again)."""
    _map_state.cache_clear()


# -- one tile -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _EdgeCut:
    edge: EdgeKey
    corridor: Corridor
    lines: NDArray[np.object_]


def _segment_lines(route: Route, start_m: FloatArray, end_m: FloatArray) -> NDArray[np.object_]:
    """LineString of every segment: the route between ``start_m`` and ``end_m``.

    Each line is the point at ``start_m``, the route's vertices strictly inside the segment and
    the point at ``end_m``, all lines filled into one coordinate array at once.
    """
    lon, lat = route.lon, route.lat
    leg_m, _ = route.geodesic_legs  # cut() measured them already
    cum = np.concatenate(([0.0], np.cumsum(leg_m)))
    lo = np.searchsorted(cum, start_m, side="right")
    inner = np.maximum(np.searchsorted(cum, end_m, side="left") - lo, 0)
    counts = inner + 2
    first = np.cumsum(counts) - counts  # row of each line's first point
    coords = np.empty((int(counts.sum()), 2), dtype=np.float64)
    ends = np.concatenate((first, first + counts - 1))  # first and last point of every line
    ends_m = np.concatenate((start_m, end_m))
    coords[ends, 0], coords[ends, 1] = np.interp(ends_m, cum, lon), np.interp(ends_m, cum, lat)
    # vertex k of a line's inside: route vertex lo + k at row first + 1 + k
    k = np.arange(int(inner.sum())) - np.repeat(np.cumsum(inner) - inner, inner)
    vertex = np.repeat(lo, inner) + k
    rows = np.repeat(first + 1, inner) + k
    coords[rows, 0], coords[rows, 1] = lon[vertex], lat[vertex]
    lines: NDArray[np.object_] = shapely.linestrings(
        coords, indices=np.repeat(np.arange(start_m.size), counts)
    )
    return lines


def _near_bridges(state: _MapState, edges: Sequence[EdgeKey]) -> list[NDArray[np.intp]]:
    """Per edge, the sorted indices of the bridges in its box widened by _BRIDGE_SEARCH_DEG.

    Candidates only (cut keeps the overpasses within 100 m of the route): that box holds every
    bridge a buffer of that radius would find. One tree query for all the edges of a tile.
    """
    bounds = shapely.bounds([state.roads.edges[e]["geometry"] for e in edges])
    d = _BRIDGE_SEARCH_DEG
    boxes = shapely.box(bounds[:, 0] - d, bounds[:, 1] - d, bounds[:, 2] + d, bounds[:, 3] + d)
    edge_i, bridge_i = state.bridge_tree.query(boxes)
    order = np.lexsort((bridge_i, edge_i))
    edge_i, bridge_i = edge_i[order], bridge_i[order]
    ends = np.searchsorted(edge_i, np.arange(len(edges) + 1), side="left")
    return [bridge_i[ends[i] : ends[i + 1]] for i in range(len(edges))]


def _cut_edge(
    state: _MapState, edge: EdgeKey, reference_s: float, near: NDArray[np.intp]
) -> _EdgeCut:
    """The edge cut into the map's segments; ``near``: bridges that may pass over it."""
    from commap.geo import roads as roads_mod

    route = roads_mod.route_from_edges(state.roads, [edge])
    corridor = cut(
        route,
        segment_m=state.cmap.segment_m,
        departure_s=reference_s,
        overpasses=state.bridges[near],
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
    corridor: Corridor,
    matrix: QualityMatrix,
    catalogue: NetworkCatalogue,
    app: str,
    settings: tuple[LinkModel, Objective, Constraints],
) -> _ChainPlan:
    from commap.plan import HandoverProblem, solve

    link, objective, constraints = settings
    problem = HandoverProblem.build(
        corridor,
        matrix,
        catalogue,
        app=app,
        link=link,
        objective=objective,
        constraints=constraints,
    )
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
    from commap.plan import Constraints

    # the defaults every chain plans with, made (and validated) once per tile
    settings = (LinkModel(), Objective(), Constraints())
    plans: list[_ChainPlan] = []
    start = 0
    for corridor in chains:
        rows = slice(start, start + len(corridor))
        plans.append(_plan_chain(corridor, matrix.take(rows), catalogue, app, settings))
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


def _tile_columns(
    state: _MapState, tile: str, edges: Sequence[EdgeKey], params: TileParams
) -> dict[str, NDArray[Any]]:
    """Every column of the tile's part (geometry last), rows in Hilbert order."""
    cmap = state.cmap
    reference_s = float(
        params.reference_s if params.reference_s is not None else cmap.default_departure_s
    )
    chains = through_chains(cmap.roads, edges)
    in_order = [e for chain in chains for e in chain]
    near = iter(_near_bridges(state, in_order))
    cuts = [[_cut_edge(state, e, reference_s, next(near)) for e in chain] for chain in chains]
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
    columns[GEOMETRY] = np.concatenate([c.lines for c in flat])
    # spatial locality; ties by edge and segment
    ties = [columns[name] for name in ("u", "v", "key", "seg")]
    order = hilbert_order(columns[GEOMETRY], state.bounds, ties=ties)
    return {name: np.asarray(values)[order] for name, values in columns.items()}


def _write_tile(
    map_dir: str | os.PathLike[str], tile_id: str, params: TileParams
) -> tuple[Path, dict[str, NDArray[Any]]]:
    """:func:`build_tile`, and the columns it wrote."""
    state = _state(Path(map_dir), params.resolution)
    edges = state.tiles.get(tile_id)
    if not edges:
        raise InvalidInputError(
            f"tile {tile_id!r} holds no edge of map {state.cmap.name} at H3 resolution "
            f"{params.resolution}",
            field="tile_id",
        )
    columns = _tile_columns(state, tile_id, edges, params)
    path = part_path(map_dir, tile_id)
    try:
        # never with parents: a task still running after its build was abandoned (and its
        # directory removed) must not bring the directory back
        path.parent.parent.mkdir(exist_ok=True)
        path.parent.mkdir(exist_ok=True)
    except FileNotFoundError:
        raise InvalidInputError(f"map directory {map_dir} no longer exists") from None
    geometry = columns[GEOMETRY]
    write_geoparquet_table(
        geo_table({k: v for k, v in columns.items() if k != GEOMETRY}, geometry), path
    )
    log.debug("tile %s: %d edges, %d segments -> %s", tile_id, len(edges), len(geometry), path)
    return path, columns


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
    return _write_tile(map_dir, tile_id, params)[0]


def summarized_tile(
    map_dir: str, tile_id: str, params: TileParams
) -> tuple[Path, str, PartSummary]:
    """The batch task: :func:`build_tile`, the part's checksum and the summary the region merge
    takes from it.

    Both are computed where the tile was built, which spreads that work over the workers and
    leaves the calling process only the merge. The summary is made of the columns written,
    which read back equal (Parquet and WKB keep every value), so it is the one the merge would
    make of the file.
    """
    path, columns = _write_tile(map_dir, tile_id, params)
    network_ids = _state(Path(map_dir), params.resolution).cmap.catalogue.ids
    return path, sha256_file(path), summarize_part(columns, network_ids)


def load_state(map_dir: Path, resolution: int) -> None:
    """Load the map of the tile tasks in this process (forked pool workers inherit it)."""
    _state(map_dir, resolution)
