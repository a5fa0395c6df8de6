"""The route timeline: the presentation model plots, the viewer, reports and exports read.

A :class:`RouteTimeline` holds what is shown of a plan, independent of the solver's classes:
the corridor, the quality of every network per segment, the serving network, the drop risk and
the handovers. It is built from a solver plan (:func:`timeline_from_plan`) or from a plan file
(:func:`read_plan`), and split into stretches on one network (:func:`runs`,
:func:`stretch_geometry`).

The map side of the same model: the road graph as lines (:func:`road_edges`), cut into pieces of
about ``spacing_m`` metres (:func:`road_pieces`) and sampled at one time
(:func:`sample_pieces`), with every value put into a quality class (:func:`classify`). How
classes, networks and sources look is :mod:`commap.out.style`; the GIS files are
:mod:`commap.out.gis`.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray
from shapely.geometry import LineString, Point
from shapely.ops import substring

from commap.arrays import FloatArray
from commap.errors import InvalidInputError
from commap.geo.geodesy import utm_crs
from commap.networks import NetworkKind
from commap.out.style import CLASSES, PROVENANCE_NAMES
from commap.radio.quality import (
    NO_SATELLITE_ELEVATION_DEG,
    NO_SIGNAL_RSRP_DBM,
    USABLE_SINR_DB,
    Provenance,
    QualityMatrix,
)

if TYPE_CHECKING:
    import networkx as nx

    from commap.geo.corridor import Corridor
    from commap.map.comm_map import CommMap
    from commap.plan import Plan
    from commap.service.planning import PlanResult

__all__ = [
    "CRS",
    "RouteTimeline",
    "class_names",
    "classify",
    "read_plan",
    "road_edges",
    "road_pieces",
    "route_line",
    "runs",
    "sample_pieces",
    "stretch_geometry",
    "timeline_from_plan",
    "with_map_quality",
]

log = logging.getLogger(__name__)

CRS = "EPSG:4326"


# -- quality classes ---------------------------------------------------------------------------


def classify(metric: str, values: Any) -> NDArray[np.int8]:
    """Index of the quality class (in ``CLASSES[metric]``, 0 = best) of every value.

    NaN (not applicable) gets -1. For ``rsrp_dbm`` the no-signal value falls into the last
    class; for ``elevation_deg`` so does the no-satellite value (-90 deg).

    Raises
    ------
    InvalidInputError
        For an unknown metric.

    Examples
    --------
    >>> classify("sinr_db", [25.0, 5.0, -6.0, float("nan")]).tolist()
    [0, 2, 4, -1]
    >>> classify("rsrp_dbm", []).tolist()
    []
    """
    try:
        classes = CLASSES[metric]
    except KeyError:
        raise InvalidInputError(
            f"unknown quality metric {metric!r}; known: {', '.join(CLASSES)}", field="metric"
        ) from None
    v = np.atleast_1d(np.asarray(values, dtype=np.float64))
    # bounds best first: the class is the number of lower bounds the value does not reach
    lowers = np.array([c.lower for c in classes[:-1]])
    out = (v[:, None] < lowers[None, :]).sum(axis=1).astype(np.int8)
    if metric == "rsrp_dbm":
        out[v <= NO_SIGNAL_RSRP_DBM] = len(classes) - 1
    if metric == "elevation_deg":
        out[v <= NO_SATELLITE_ELEVATION_DEG] = len(classes) - 1
    out[np.isnan(v)] = -1
    return out


def class_names(metric: str, codes: NDArray[np.int8]) -> list[str]:
    """The class name of every class index of :func:`classify` (``""`` for -1).

    Examples
    --------
    >>> class_names("sinr_db", classify("sinr_db", [25.0, float("nan")]))
    ['excellent', '']
    """
    names = [c.name for c in CLASSES[metric]]
    return [names[c] if c >= 0 else "" for c in codes.tolist()]


# -- roads -------------------------------------------------------------------------------------

_EDGE_COLUMNS = ("highway", "name", "ref", "tunnel", "bridge", "length_m", "osm_id")


def road_edges(graph: nx.MultiDiGraph) -> gpd.GeoDataFrame:
    """The road graph as lines, one per road piece (the two directions of a road merged).

    Parameters
    ----------
    graph : networkx.MultiDiGraph
        A road graph of :mod:`commap.geo.roads` (edges with ``geometry`` and attributes).

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``u``, ``v``, ``highway``, ``name``, ``ref``, ``tunnel``, ``bridge``,
        ``length_m``, ``osm_id``, ``oneway`` and ``geometry`` (EPSG:4326), in graph order.

    Raises
    ------
    InvalidInputError
        An edge without a LineString geometry.

    Examples
    --------
    >>> import networkx as nx
    >>> len(road_edges(nx.MultiDiGraph(crs="EPSG:4326")))
    0
    """
    rows: list[dict[str, Any]] = []
    seen: set[tuple[int, int, int, float]] = set()
    for u, v, data in graph.edges(data=True):
        geom = data.get("geometry")
        if not isinstance(geom, LineString):
            raise InvalidInputError(f"road edge {u}->{v} has no LineString geometry", field="roads")
        # the reverse direction of a two-way road has the same nodes, way and length
        key = (min(u, v), max(u, v), int(data.get("osm_id", 0)), round(data.get("length_m", 0), 1))
        if key in seen:
            continue
        seen.add(key)
        row = {c: data.get(c) for c in _EDGE_COLUMNS}
        row.update(u=u, v=v, oneway=not graph.has_edge(v, u), geometry=geom)
        rows.append(row)
    columns = ["u", "v", *_EDGE_COLUMNS, "oneway", "geometry"]
    frame = pd.DataFrame(rows, columns=columns)
    for col in ("tunnel", "bridge", "oneway"):
        frame[col] = frame[col].fillna(False).astype(bool)
    for col in ("highway", "name", "ref"):
        frame[col] = frame[col].fillna("").astype(str)
    frame["length_m"] = frame["length_m"].astype(np.float64)
    frame["osm_id"] = frame["osm_id"].fillna(0).astype(np.int64)
    return gpd.GeoDataFrame(frame, geometry="geometry", crs=CRS)


def road_pieces(graph: nx.MultiDiGraph, *, spacing_m: float = 200.0) -> gpd.GeoDataFrame:
    """Cut every road of :func:`road_edges` into pieces of about ``spacing_m`` metres.

    A road of length ``L`` becomes ``max(1, round(L / spacing_m))`` equal pieces, so pieces
    stay between 2/3 and 2 times ``spacing_m`` (shorter only for roads shorter than that).

    Returns
    -------
    geopandas.GeoDataFrame
        ``piece_id`` (0..n-1, consecutive along each road), ``edge_id`` (the road's row in
        :func:`road_edges`), ``highway``, ``name``, ``tunnel``, ``bridge``, ``length_m``,
        ``lon``/``lat`` of the piece midpoint and the piece ``geometry`` (EPSG:4326).

    Raises
    ------
    InvalidInputError
        ``spacing_m`` not a positive finite number.

    Examples
    --------
    >>> import networkx as nx
    >>> len(road_pieces(nx.MultiDiGraph(crs="EPSG:4326")))
    0
    """
    if not (math.isfinite(spacing_m) and spacing_m > 0):
        raise InvalidInputError(f"spacing_m must be > 0, got {spacing_m}", field="spacing_m")
    edges = road_edges(graph)
    columns = [
        "piece_id",
        "edge_id",
        "highway",
        "name",
        "tunnel",
        "bridge",
        "length_m",
        "lon",
        "lat",
    ]
    if edges.empty:
        return gpd.GeoDataFrame(
            pd.DataFrame(columns=[*columns, "geometry"]), geometry="geometry", crs=CRS
        )
    lon0, lat0, lon1, lat1 = edges.total_bounds
    utm = utm_crs((lon0 + lon1) / 2.0, (lat0 + lat1) / 2.0)
    metric = edges.geometry.to_crs(utm)
    parts: list[LineString] = []
    owner: list[int] = []
    for i, line in enumerate(metric):
        n = max(1, round(line.length / spacing_m))
        cuts = np.linspace(0.0, line.length, n + 1)
        parts.extend(substring(line, a, b) for a, b in itertools.pairwise(cuts))
        owner.extend([i] * n)
    pieces_utm = gpd.GeoSeries(parts, crs=utm)
    mid = gpd.GeoSeries(shapely.line_interpolate_point(parts, 0.5, normalized=True), crs=utm)
    mid_ll = mid.to_crs(CRS)
    src = edges.iloc[owner].reset_index(drop=True)
    # share each edge's geodesic length out over its pieces (the planar length is a UTM estimate)
    share = pieces_utm.length.to_numpy() / np.maximum(metric.length.to_numpy()[owner], 1e-9)
    frame = pd.DataFrame(
        {
            "piece_id": np.arange(len(parts), dtype=np.int64),
            "edge_id": np.asarray(owner, dtype=np.int64),
            "highway": src["highway"],
            "name": src["name"],
            "tunnel": src["tunnel"],
            "bridge": src["bridge"],
            "length_m": src["length_m"].to_numpy() * share,
            "lon": mid_ll.x.to_numpy(),
            "lat": mid_ll.y.to_numpy(),
        }
    )
    return gpd.GeoDataFrame(frame, geometry=pieces_utm.to_crs(CRS).values, crs=CRS)


def sample_pieces(
    cmap: CommMap,
    pieces: pd.DataFrame,
    *,
    t_s: float | None = None,
    network_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Quality of every network at the midpoint of every road piece, at one time.

    Tunnels block every signal as the layers define it; bridges above a piece are not
    considered (the pieces carry no under-bridge flag).

    Parameters
    ----------
    cmap : CommMap
        The map whose layers are sampled.
    pieces : DataFrame
        From :func:`road_pieces` (needs ``piece_id``, ``lon``, ``lat``, ``tunnel``).
    t_s : float, optional
        Epoch seconds (satellite geometry); default the map's default departure.
    network_ids : sequence of str, optional
        Networks to sample (default all, catalogue order).

    Returns
    -------
    pandas.DataFrame
        One row per piece and network: ``piece_id``, ``network_id``, ``kind``, ``operator``,
        ``technology``, ``rsrp_dbm``, ``sinr_db``, ``elevation_deg``, ``confidence``,
        ``sample_count``, ``provenance`` (name), ``rsrp_class``, ``sinr_class``,
        ``visibility_class`` (class names, empty where not applicable), ``usable``
        (SINR at or above ``USABLE_SINR_DB``, Qin).

    Raises
    ------
    InvalidInputError
        Unknown network id or pieces without the needed columns.
    """
    missing = {"piece_id", "lon", "lat", "tunnel"} - set(pieces.columns)
    if missing:
        raise InvalidInputError(f"road pieces lack columns {sorted(missing)}", field="pieces")
    ids = tuple(network_ids) if network_ids is not None else cmap.catalogue.ids
    time_s = cmap.default_departure_s if t_s is None else float(t_s)
    lon = pieces["lon"].to_numpy(dtype=np.float64)
    lat = pieces["lat"].to_numpy(dtype=np.float64)
    tunnel = pieces["tunnel"].to_numpy(dtype=bool)
    frames = []
    for nid in ids:
        net = cmap.catalogue[nid]
        q = cmap.layers[nid].sample(lon, lat, np.full(lon.shape, time_s), in_tunnel=tunnel)
        sat = net.kind is not NetworkKind.TERRESTRIAL
        frame = pd.DataFrame(
            {
                "piece_id": pieces["piece_id"].to_numpy(),
                "network_id": nid,
                "kind": net.kind.value,
                "operator": net.operator,
                "technology": net.technology,
                "rsrp_dbm": q.rsrp_dbm,
                "sinr_db": q.sinr_db,
                "elevation_deg": q.elevation_deg,
                "confidence": q.confidence,
                "sample_count": q.sample_count.astype(np.int64),
                "provenance": [PROVENANCE_NAMES.get(int(p), "none") for p in q.provenance],
                "rsrp_class": [""] * len(lon)
                if sat
                else class_names("rsrp_dbm", classify("rsrp_dbm", q.rsrp_dbm)),
                "sinr_class": class_names("sinr_db", classify("sinr_db", q.sinr_db)),
                "visibility_class": class_names(
                    "elevation_deg", classify("elevation_deg", q.elevation_deg)
                )
                if sat
                else [""] * len(lon),
                "usable": q.sinr_db >= USABLE_SINR_DB,
            }
        )
        frames.append(frame)
    if not frames:
        raise InvalidInputError("no network to sample", field="network_ids")
    return pd.concat(frames, ignore_index=True)


# -- plans -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteTimeline:
    """What exports, plots and reports need of a plan, independent of the solver's classes.

    Attributes
    ----------
    corridor : the route cut into segments.
    matrix : quality of every network per segment.
    serving : network id per segment (``""`` where the vehicle has no network).
    drop_prob : probability that the serving link drops within each segment (0..1); NaN when
        unknown.
    handovers : one mapping per switch with ``segment`` (index of the first segment on the new
        network), ``from_network``, ``to_network``, ``kind`` (a :class:`~commap.networks.SwitchKind`
        value), ``distance_m``, ``eta_s``, ``lon``, ``lat``.
    name : label of the route or plan.
    totals : the plan's own totals (the fields of :class:`commap.plan.PlanTotals`:
        ``expected_drops`` counts the outage drops and the failed handovers, ``handovers``,
        ``outage_s``, ...), what titles and summaries state; None for a timeline of no plan.
    app : the application class the plan was made for (``""`` when unknown).
    """

    corridor: Corridor
    matrix: QualityMatrix
    serving: tuple[str, ...]
    drop_prob: FloatArray
    handovers: tuple[Mapping[str, Any], ...]
    name: str = ""
    totals: Mapping[str, Any] | None = None
    app: str = ""

    def __post_init__(self) -> None:
        n = len(self.corridor)
        if len(self.serving) != n or self.drop_prob.shape != (n,) or self.matrix.shape[0] != n:
            raise InvalidInputError(
                f"route timeline: serving ({len(self.serving)}), drop_prob "
                f"{self.drop_prob.shape} and matrix rows ({self.matrix.shape[0]}) must match "
                f"the corridor's {n} segments",
                field="plan",
            )

    @property
    def segment_end_m(self) -> FloatArray:
        """Distance along the route at the end of each segment."""
        return np.asarray(self.corridor.distance_m + self.corridor.length_m, dtype=np.float64)


def _bare_corridor(
    lon: Any,
    lat: Any,
    distance_m: Any,
    length_m: Any,
    eta_s: Any,
    duration_s: Any,
    departure_s: float,
) -> Corridor:
    """A corridor from per-segment arrays (no route polyline, no tunnel or bridge flags)."""
    from commap.geo.corridor import Corridor

    arrays = [
        np.asarray(v, dtype=np.float64) for v in (lon, lat, distance_m, length_m, eta_s, duration_s)
    ]
    n = arrays[0].shape[0]
    if any(a.shape != (n,) for a in arrays):
        raise InvalidInputError("plan segment arrays differ in length", field="plan")
    flags = np.zeros(n, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = np.where(arrays[5] > 0, arrays[3] / arrays[5], 0.0)
    return Corridor(
        lon=arrays[0],
        lat=arrays[1],
        distance_m=arrays[2],
        length_m=arrays[3],
        eta_s=arrays[4],
        duration_s=arrays[5],
        speed_mps=speed,
        in_tunnel=flags,
        on_bridge=flags.copy(),
        under_bridge=flags.copy(),
        departure_s=float(departure_s),
    )


def _nan_matrix(
    ids: tuple[str, ...],
    n: int,
    provenance: NDArray[np.int8] | None,
    unknown: NDArray[np.bool_] | None = None,
) -> QualityMatrix:
    """A quality matrix without values (plans read from files carry no signal levels)."""
    k = len(ids)
    return QualityMatrix(
        network_ids=ids,
        rsrp_dbm=np.full((n, k), np.nan),
        sinr_db=np.full((n, k), np.nan),
        elevation_deg=np.full((n, k), np.nan),
        confidence=np.zeros((n, k)),
        provenance=np.zeros((n, k), dtype=np.int8) if provenance is None else provenance,
        sample_count=np.zeros((n, k), dtype=np.int32),
        unknown=unknown,
    )


def timeline_from_plan(
    plan: Plan | PlanResult,
    *,
    corridor: Corridor | None = None,
    matrix: QualityMatrix | None = None,
    name: str = "",
) -> RouteTimeline:
    """A :class:`RouteTimeline` of a :class:`commap.plan.Plan`.

    Parameters
    ----------
    plan : Plan or PlanResult
        The solver's plan, or the planning facade's result (:func:`commap.service.planning.plan_route`),
        whose corridor and quality matrix are then used.
    corridor : Corridor, optional
        The corridor the plan was made on (gives the exact route line and the tunnel flags);
        default rebuilt from the plan's segment arrays.
    matrix : QualityMatrix, optional
        The quality the plan was made on (signal levels for the strip chart); without it the
        values are NaN and the provenance is the chosen network's.
    name : str
        Label of the route (default the corridor's route name).

    Raises
    ------
    InvalidInputError
        A corridor or matrix whose length differs from the plan's.
    """
    from commap.service.planning import PlanResult

    if isinstance(plan, PlanResult):
        corridor = plan.corridor if corridor is None else corridor
        matrix = plan.matrix if matrix is None else matrix
        plan = plan.plan
    n = len(plan)
    if corridor is None:
        corridor = _bare_corridor(
            plan.lon,
            plan.lat,
            plan.distance_m,
            plan.length_m,
            plan.eta_s,
            plan.duration_s,
            plan.departure_s,
        )
    if matrix is None:
        prov = np.zeros((n, len(plan.network_ids)), dtype=np.int8)
        prov[np.arange(n), plan.assignment] = plan.provenance
        matrix = _nan_matrix(tuple(plan.network_ids), n, prov, plan.unknown_matrix)
    handovers = tuple({k: getattr(h, k) for k in _HANDOVER_KEYS} for h in plan.handovers)
    label = name or (corridor.route.name if corridor.route is not None else "")
    return RouteTimeline(
        corridor=corridor,
        matrix=matrix,
        serving=tuple(plan.segment_networks),
        drop_prob=np.asarray(plan.outage_risk, dtype=np.float64),
        handovers=handovers,
        name=label,
        totals=dataclasses.asdict(plan.totals),
        app=plan.app,
    )


def with_map_quality(timeline: RouteTimeline, cmap: CommMap) -> RouteTimeline:
    """The timeline with every network's quality sampled from ``cmap`` at its segments.

    For plans read from files (no signal levels): the strip chart then shows each network's
    SINR. The file's segments carry no tunnel flags, so tunnels count as open road here.

    Raises
    ------
    InvalidInputError
        Segments outside the map, or a plan naming networks the map does not have.
    """
    missing = set(timeline.matrix.network_ids) - set(cmap.catalogue.ids)
    if missing:
        raise InvalidInputError(
            f"plan networks {sorted(missing)} are not in map {cmap.name}", field="plan"
        )
    c = timeline.corridor
    cmap.check_inside(c.lon, c.lat, field="plan")
    fresh = cmap.quality(c)
    matrix = fresh.take(columns=timeline.matrix.network_ids)
    return dataclasses.replace(timeline, matrix=matrix)


_HANDOVER_KEYS = (
    "segment",
    "from_network",
    "to_network",
    "kind",
    "distance_m",
    "eta_s",
    "lon",
    "lat",
)


def read_plan(path: str | os.PathLike[str]) -> RouteTimeline:
    """A plan file written by :func:`commap.plan.write_plan` (``.json``, ``.geojson``, ``.gpkg``).

    Every format holds the whole plan (:func:`commap.plan.plan.read_plan_document`): every
    segment, the handovers and the plan's own totals. The route line is rebuilt from the segment
    centres and signal levels are unknown (NaN; :func:`with_map_quality` samples them).

    Raises
    ------
    InvalidInputError
        Unreadable file, not a commap plan, or missing fields (named).

    Examples
    --------
    >>> read_plan("missing.json")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: missing.json: cannot read plan (file does not exist)
    """
    from commap.plan.plan import read_plan_document

    source = Path(path)
    doc = read_plan_document(source)
    try:
        seg = doc["segments"]
        ids = tuple(str(i) for i in doc["network_ids"])
        serving = tuple(str(v) for v in seg["network_id"])
        corridor = _bare_corridor(
            seg["lon"],
            seg["lat"],
            seg["distance_m"],
            seg["length_m"],
            seg["eta_s"],
            seg["duration_s"],
            float(doc["departure_s"]),
        )
        risk = np.array([np.nan if v is None else v for v in seg["outage_risk"]], dtype=np.float64)
        handovers = tuple({k: h[k] for k in _HANDOVER_KEYS} for h in doc["handovers"])
        codes = {p.name.lower(): int(p) for p in Provenance}
        prov = np.zeros((len(serving), len(ids)), dtype=np.int8)
        for i, (nid, p) in enumerate(zip(serving, seg["provenance"], strict=True)):
            if nid in ids:
                prov[i, ids.index(nid)] = codes.get(str(p), 0)
        totals = dict(doc["totals"])
        blind = seg.get("unknown", {})  # plans written before unknown was kept: all known
        unknown = np.zeros((len(serving), len(ids)), dtype=np.bool_)
        for j, nid in enumerate(ids):
            if nid in blind:
                unknown[:, j] = np.asarray(blind[nid], dtype=np.bool_)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{source}: plan field missing or malformed: {exc}", field="plan"
        ) from None
    return RouteTimeline(
        corridor=corridor,
        matrix=_nan_matrix(ids, len(serving), prov, unknown),
        serving=serving,
        drop_prob=risk,
        handovers=handovers,
        name=source.stem,
        totals=totals,
        app=str(doc.get("app", "")),
    )


def runs(labels: Sequence[Any]) -> list[tuple[int, int]]:
    """``[start, end)`` index ranges of consecutive equal labels (the stretches of a plan).

    Examples
    --------
    >>> runs(["a", "a", "b", "a"])
    [(0, 2), (2, 3), (3, 4)]
    >>> runs([])
    []
    """
    out: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            out.append((start, i))
            start = i
    return out


def route_line(timeline: RouteTimeline) -> LineString | None:
    """The route polyline of a timeline (None for plans read from files, which have none)."""
    route = timeline.corridor.route
    if route is None:
        return None
    return LineString(np.column_stack([route.lon, route.lat]))


def stretch_geometry(
    timeline: RouteTimeline, line: LineString | None, start: int, end: int
) -> LineString | Point:
    """Geometry of segments ``[start, end)``: the route between their ends, else their centres."""
    c = timeline.corridor
    a_m = float(c.distance_m[start])
    b_m = float(c.distance_m[end - 1] + c.length_m[end - 1])
    if line is not None:
        total_m = max(c.total_length_m, 1e-9)
        # geodesic distances mapped to the polyline's planar parameter (same proportion)
        return substring(line, a_m / total_m, b_m / total_m, normalized=True)
    pts = np.column_stack([c.lon[start:end], c.lat[start:end]])
    return LineString(pts) if len(pts) > 1 else Point(pts[0])
