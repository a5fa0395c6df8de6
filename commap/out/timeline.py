"""Maps and plans as GIS layers: GeoPackage, GeoJSON and KML files for QGIS and Google Earth.

A map is exported as two layers:

``roads``
    The drivable road graph, one line per road piece in both directions (WGS84).
``coverage``
    The quality of every network sampled along the roads: the roads are cut into pieces of
    about ``spacing_m`` metres (:func:`road_pieces`), each piece is sampled at its midpoint at
    one time (:func:`sample_pieces`), one row per piece and network with the values, their
    provenance (``measured`` / ``modelled`` / ``none``) and a quality class
    (:func:`classify`) for styling.

A plan (anything with a corridor, a serving network per segment and handovers; see
:func:`plan_layers`) is exported as ``route`` (one line per run of segments on one network),
``handovers`` (points) and ``drop_risk`` (stretches where the serving link is likely to drop).

Every file is written atomically: into a temporary file beside the target, then renamed, so a
reader never sees a half-written export. The format follows the suffix: ``.gpkg`` (one table
per layer), ``.geojson``/``.json`` (one collection, a ``layer`` property names the layer) and
``.kml`` (one folder per layer, written by GDAL's LIBKML or KML driver).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from numpy.typing import NDArray
from shapely.geometry import LineString, Point
from shapely.ops import substring

from commap.errors import InvalidInputError
from commap.networks import NetworkKind
from commap.radio.quality import (
    NO_SATELLITE_ELEVATION_DEG,
    NO_SIGNAL_RSRP_DBM,
    QOUT_SINR_DB,
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
    "CLASSES",
    "FORMATS",
    "PROVENANCE_NAMES",
    "QualityClass",
    "RouteTimeline",
    "classify",
    "export_map",
    "export_plan",
    "map_layers",
    "network_colors",
    "plan_layers",
    "read_plan",
    "read_plan_layers",
    "road_edges",
    "road_pieces",
    "sample_pieces",
    "timeline_from_plan",
    "with_map_quality",
    "write_layers",
]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
CRS = "EPSG:4326"

# suffix -> GDAL driver
FORMATS: dict[str, str] = {
    ".gpkg": "GPKG",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".kml": "LIBKML",
}
PROVENANCE_NAMES: dict[int, str] = {int(p): p.name.lower() for p in Provenance}
PROVENANCE_NAMES[int(Provenance.MODELLED)] = "modelled"


# -- quality classes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityClass:
    """One legend entry: values ``>= lower`` (and below the previous class) fall into it.

    Attributes
    ----------
    label : short text for legends, e.g. ``">= -80 dBm"``.
    name : word for the class, e.g. ``"excellent"``.
    lower : lower bound in the metric's unit (``-inf`` for the last class).
    color : ``#rrggbb``.
    """

    label: str
    name: str
    lower: float
    color: str


# Classes best first. RSRP and SINR steps are the usual drive-test buckets; the SINR floor is
# the radio-link-monitoring out-of-sync threshold Qout. Colours run blue (good) to red (bad),
# readable with the common colour-vision deficiencies; grey means no signal at all.
CLASSES: dict[str, tuple[QualityClass, ...]] = {
    "rsrp_dbm": (
        QualityClass(">= -80 dBm", "excellent", -80.0, "#2c7bb6"),
        QualityClass("-90 to -80 dBm", "good", -90.0, "#74add1"),
        QualityClass("-100 to -90 dBm", "fair", -100.0, "#fee090"),
        QualityClass("-110 to -100 dBm", "poor", -110.0, "#f46d43"),
        QualityClass("-120 to -110 dBm", "very poor", -120.0, "#a50026"),
        QualityClass("no signal", "none", -math.inf, "#595959"),
    ),
    "sinr_db": (
        QualityClass(">= 20 dB", "excellent", 20.0, "#2c7bb6"),
        QualityClass("13 to 20 dB", "good", 13.0, "#74add1"),
        QualityClass("0 to 13 dB", "fair", 0.0, "#fee090"),
        QualityClass(f"{QOUT_SINR_DB:g} to 0 dB", "poor", QOUT_SINR_DB, "#f46d43"),
        QualityClass(f"< {QOUT_SINR_DB:g} dB (out of sync)", "unusable", -math.inf, "#595959"),
    ),
    "elevation_deg": (
        QualityClass("satellite >= 60 deg", "high", 60.0, "#3f007d"),
        QualityClass("satellite 40 to 60 deg", "mid", 40.0, "#807dba"),
        QualityClass("satellite < 40 deg", "low", -89.0, "#bcbddc"),
        QualityClass("no satellite usable", "none", -math.inf, "#595959"),
    ),
}


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


# Okabe-Ito colours (distinguishable with colour-vision deficiencies), most visible first.
_NETWORK_PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#F0E442",
)
DROP_RISK_COLOR = "#d7191c"
NO_NETWORK_COLOR = "#595959"
ROAD_COLOR = "#9e9e9e"


def network_colors(network_ids: Sequence[str]) -> dict[str, str]:
    """A stable colour per network, by position in ``network_ids`` (catalogue order).

    Examples
    --------
    >>> network_colors(["a", "b"])
    {'a': '#0072B2', 'b': '#D55E00'}
    >>> network_colors([])
    {}
    """
    out = {}
    for i, nid in enumerate(network_ids):
        base = _NETWORK_PALETTE[i % len(_NETWORK_PALETTE)]
        if i >= len(_NETWORK_PALETTE):  # darken repeats so that they differ from the first round
            rgb = [int(base[k : k + 2], 16) * 2 // 3 for k in (1, 3, 5)]
            base = "#{:02X}{:02X}{:02X}".format(*rgb)
        out[nid] = base
    return out


def _labels(metric: str, codes: NDArray[np.int8]) -> list[str]:
    names = [c.name for c in CLASSES[metric]]
    return [names[c] if c >= 0 else "" for c in codes.tolist()]


# -- roads -------------------------------------------------------------------------------------

_EDGE_COLUMNS = ("highway", "name", "ref", "tunnel", "bridge", "length_m", "osm_id")


def _check_graph(graph: nx.MultiDiGraph | None, what: str) -> nx.MultiDiGraph:
    if graph is None:
        raise InvalidInputError(f"{what}: the map has no road graph", field="roads")
    return graph


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
        ``piece_id`` (0..n-1), ``highway``, ``name``, ``tunnel``, ``bridge``, ``length_m``,
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
    columns = ["piece_id", "highway", "name", "tunnel", "bridge", "length_m", "lon", "lat"]
    if edges.empty:
        return gpd.GeoDataFrame(
            pd.DataFrame(columns=[*columns, "geometry"]), geometry="geometry", crs=CRS
        )
    utm = edges.estimate_utm_crs()
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
        (SINR at or above Qout).

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
                else _labels("rsrp_dbm", classify("rsrp_dbm", q.rsrp_dbm)),
                "sinr_class": _labels("sinr_db", classify("sinr_db", q.sinr_db)),
                "visibility_class": _labels(
                    "elevation_deg", classify("elevation_deg", q.elevation_deg)
                )
                if sat
                else [""] * len(lon),
                "usable": q.sinr_db >= QOUT_SINR_DB,
            }
        )
        frames.append(frame)
    if not frames:
        raise InvalidInputError("no network to sample", field="network_ids")
    return pd.concat(frames, ignore_index=True)


def map_layers(
    cmap: CommMap,
    *,
    spacing_m: float = 200.0,
    t_s: float | None = None,
    network_ids: Sequence[str] | None = None,
) -> dict[str, gpd.GeoDataFrame]:
    """The ``roads`` and ``coverage`` layers of a map (see the module docstring).

    Raises
    ------
    InvalidInputError
        The map has no road graph (coverage is sampled along roads), or a bad option.
    """
    graph = _check_graph(cmap.roads, f"map {cmap.name}")
    roads = road_edges(graph)
    pieces = road_pieces(graph, spacing_m=spacing_m)
    values = sample_pieces(cmap, pieces, t_s=t_s, network_ids=network_ids)
    geometry = pieces.set_index("piece_id").geometry
    attrs = pieces[["piece_id", "highway", "name", "tunnel", "bridge", "length_m"]]
    coverage = values.merge(attrs, on="piece_id", how="left")
    coverage["label"] = coverage["network_id"] + ": " + _class_text(coverage)
    coverage["color"] = _class_color(coverage)
    coverage = gpd.GeoDataFrame(
        coverage, geometry=geometry.loc[coverage["piece_id"]].values, crs=CRS
    )
    roads = roads.drop(columns=["u", "v"]).assign(label=roads["name"], color=ROAD_COLOR)
    return {"roads": roads, "coverage": coverage}


def _class_text(coverage: pd.DataFrame) -> pd.Series:
    sat = coverage["kind"] != NetworkKind.TERRESTRIAL.value
    return coverage["visibility_class"].where(sat, "SINR " + coverage["sinr_class"])


def _class_color(coverage: pd.DataFrame) -> pd.Series:
    """Satellites by visibility class, terrestrial networks by SINR class."""
    by_name = {metric: {c.name: c.color for c in classes} for metric, classes in CLASSES.items()}
    sat = coverage["kind"] != NetworkKind.TERRESTRIAL.value
    sinr = coverage["sinr_class"].map(by_name["sinr_db"])
    vis = coverage["visibility_class"].map(by_name["elevation_deg"])
    return vis.where(sat, sinr).fillna(NO_NETWORK_COLOR)


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
    """

    corridor: Corridor
    matrix: QualityMatrix
    serving: tuple[str, ...]
    drop_prob: FloatArray
    handovers: tuple[Mapping[str, Any], ...]
    name: str = ""

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


def _nan_matrix(ids: tuple[str, ...], n: int, provenance: NDArray[np.int8] | None) -> QualityMatrix:
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
        matrix = _nan_matrix(tuple(plan.network_ids), n, prov)
    handovers = tuple({k: getattr(h, k) for k in _HANDOVER_KEYS} for h in plan.handovers)
    label = name or (corridor.route.name if corridor.route is not None else "")
    return RouteTimeline(
        corridor=corridor,
        matrix=matrix,
        serving=tuple(plan.segment_networks),
        drop_prob=np.asarray(plan.outage_risk, dtype=np.float64),
        handovers=handovers,
        name=label,
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
    keep = np.array([fresh.network_ids.index(n) for n in timeline.matrix.network_ids], dtype=int)
    matrix = QualityMatrix(
        network_ids=timeline.matrix.network_ids,
        rsrp_dbm=fresh.rsrp_dbm[:, keep],
        sinr_db=fresh.sinr_db[:, keep],
        elevation_deg=fresh.elevation_deg[:, keep],
        confidence=fresh.confidence[:, keep],
        provenance=fresh.provenance[:, keep],
        sample_count=fresh.sample_count[:, keep],
    )
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
    """A plan written by :func:`commap.plan.write_plan` as JSON (``commap-plan/1``).

    The JSON file holds every segment; the route line is rebuilt from the segment centres and
    signal levels are unknown (NaN).

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
    import json

    source = Path(path)
    if not source.is_file():
        raise InvalidInputError(f"{source}: cannot read plan (file does not exist)", field="plan")
    try:
        doc = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{source}: cannot read plan ({exc})", field="plan") from None
    if not isinstance(doc, dict) or doc.get("format") != "commap-plan/1":
        raise InvalidInputError(
            f"{source}: not a commap plan JSON (format commap-plan/1); write one with "
            "`commap plan ... --out plan.json`",
            field="plan",
        )
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
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{source}: plan field missing or malformed: {exc}", field="plan"
        ) from None
    return RouteTimeline(
        corridor=corridor,
        matrix=_nan_matrix(ids, len(serving), prov),
        serving=serving,
        drop_prob=risk,
        handovers=handovers,
        name=source.stem,
    )


def read_plan_layers(
    path: str | os.PathLike[str], *, drop_risk_prob: float = 0.05
) -> dict[str, gpd.GeoDataFrame]:
    """The ``route``/``handovers``/``drop_risk`` layers of any plan file.

    Accepts the plan JSON of :func:`commap.plan.write_plan` (full detail), its GeoJSON and
    GeoPackage (stretches and handovers; drop-risk stretches are then whole stretches whose
    worst segment reaches ``drop_risk_prob``), and the files of :func:`export_plan`.

    Raises
    ------
    InvalidInputError
        Unknown suffix, unreadable file or a file that is not a plan.
    """
    source = Path(path)
    suffix = source.suffix.lower()
    if suffix == ".json":
        return plan_layers(read_plan(source), drop_risk_prob=drop_risk_prob)
    if suffix not in (".geojson", ".gpkg"):
        raise InvalidInputError(
            f"{source}: unknown plan format {suffix!r}; use .json, .geojson or .gpkg", field="plan"
        )
    if not source.is_file():
        raise InvalidInputError(f"{source}: cannot read plan (file does not exist)", field="plan")
    try:
        layers = (
            {
                name: gpd.read_file(source, layer=name, engine="pyogrio")
                for name in pyogrio.list_layers(source)[:, 0]
            }
            if suffix == ".gpkg"
            else {"all": gpd.read_file(source, engine="pyogrio")}
        )
    except Exception as exc:  # GDAL's errors are many; the user needs the file and the reason
        raise InvalidInputError(f"{source}: cannot read plan ({exc})", field="plan") from None
    frames = list(layers.values())
    merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return _layers_from_features(
        gpd.GeoDataFrame(merged, geometry="geometry", crs=CRS), source, drop_risk_prob
    )


def _layers_from_features(
    frame: gpd.GeoDataFrame, source: Path, drop_risk_prob: float
) -> dict[str, gpd.GeoDataFrame]:
    if "layer" in frame.columns:  # written by export_plan
        return {
            name: frame[frame["layer"] == name].drop(columns="layer").reset_index(drop=True)
            for name in ("route", "handovers", "drop_risk")
        }
    if "feature" not in frame.columns:
        raise InvalidInputError(
            f"{source}: not a commap plan (no stretch/handover features)", field="plan"
        )
    ids = tuple(dict.fromkeys(frame.loc[frame["feature"] == "stretch", "network_id"].astype(str)))
    colors = network_colors(ids)
    st = frame[frame["feature"] == "stretch"].reset_index(drop=True)
    route = gpd.GeoDataFrame(
        {
            "network_id": st["network_id"].astype(str),
            "start_m": st["start_distance_m"].astype(float),
            "end_m": st["end_distance_m"].astype(float),
            "start_eta_s": st["start_eta_s"].astype(float),
            "end_eta_s": st["end_eta_s"].astype(float),
            "drop_expected": st["expected_drops"].astype(float),
            "label": st["network_id"].astype(str),
            "color": st["network_id"].astype(str).map(colors),
        },
        geometry=st.geometry.values,
        crs=CRS,
    )
    ho = frame[frame["feature"] == "handover"].reset_index(drop=True)
    hand = gpd.GeoDataFrame(
        {
            "from_network": ho["from_network"].astype(str),
            "to_network": ho["to_network"].astype(str),
            "kind": ho["kind"].astype(str),
            "distance_m": ho["distance_m"].astype(float),
            "eta_s": ho["eta_s"].astype(float),
            "label": ho["from_network"].astype(str) + " -> " + ho["to_network"].astype(str),
            "color": ho["to_network"].astype(str).map(colors).fillna(NO_NETWORK_COLOR),
        },
        geometry=ho.geometry.values,
        crs=CRS,
    )
    risky = st[st["max_outage_risk"].astype(float) >= drop_risk_prob].reset_index(drop=True)
    drop = gpd.GeoDataFrame(
        {
            "start_m": risky["start_distance_m"].astype(float),
            "end_m": risky["end_distance_m"].astype(float),
            "max_drop_prob": risky["max_outage_risk"].astype(float),
            "drop_expected": risky["expected_drops"].astype(float),
            "network_id": risky["network_id"].astype(str),
            "label": "drop risk",
            "color": DROP_RISK_COLOR,
        },
        geometry=risky.geometry.values,
        crs=CRS,
    )
    return {"route": route, "handovers": hand, "drop_risk": drop}


def _runs(labels: Sequence[Any]) -> list[tuple[int, int]]:
    """``[start, end)`` index ranges of consecutive equal labels."""
    out: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            out.append((start, i))
            start = i
    return out


def _route_line(timeline: RouteTimeline) -> LineString | None:
    route = timeline.corridor.route
    if route is None:
        return None
    return LineString(np.column_stack([route.lon, route.lat]))


def _stretch(
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


def plan_layers(
    timeline: RouteTimeline, *, drop_risk_prob: float = 0.05
) -> dict[str, gpd.GeoDataFrame]:
    """The ``route``, ``handovers`` and ``drop_risk`` layers of a plan.

    Parameters
    ----------
    timeline : RouteTimeline
        The plan (see :func:`commap.out.route_report.timeline_from_plan` to convert a solver plan).
    drop_risk_prob : float
        Segments whose serving link drops with at least this probability form the
        ``drop_risk`` stretches (default 5 %).

    Returns
    -------
    dict of GeoDataFrame
        ``route``: one line per run on one network (``network_id``, ``start_m``, ``end_m``,
        ``start_eta_s``, ``end_eta_s``, ``segments``, ``mean_sinr_db``, ``drop_expected``).
        ``handovers``: points with ``from_network``, ``to_network``, ``kind``, ``distance_m``,
        ``eta_s``. ``drop_risk``: lines with ``start_m``, ``end_m``, ``max_drop_prob``,
        ``drop_expected``, ``network_id``. Every layer has a ``label`` and a ``color``.

    Raises
    ------
    InvalidInputError
        ``drop_risk_prob`` outside (0, 1].
    """
    if not (0.0 < drop_risk_prob <= 1.0):
        raise InvalidInputError("drop_risk_prob must be in (0, 1]", field="drop_risk_prob")
    colors = network_colors(timeline.matrix.network_ids)
    line = _route_line(timeline)
    return {
        "route": _route_layer(timeline, line, colors),
        "handovers": _handover_layer(timeline, colors),
        "drop_risk": _drop_layer(timeline, line, drop_risk_prob),
    }


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> gpd.GeoDataFrame:
    """Rows as a GeoDataFrame; the empty frame keeps the columns (readers want the schema)."""
    frame = pd.DataFrame(rows, columns=[*columns, "label", "color", "geometry"])
    return gpd.GeoDataFrame(frame, geometry="geometry", crs=CRS)


def _route_layer(
    timeline: RouteTimeline, line: LineString | None, colors: Mapping[str, str]
) -> gpd.GeoDataFrame:
    c = timeline.corridor
    end_m = timeline.segment_end_m
    ids = timeline.matrix.network_ids
    rows = []
    for a, b in _runs(timeline.serving):
        nid = timeline.serving[a]
        sinr = timeline.matrix.sinr_db[a:b, ids.index(nid)] if nid in ids else np.array([np.nan])
        rows.append(
            {
                "network_id": nid,
                "start_m": float(c.distance_m[a]),
                "end_m": float(end_m[b - 1]),
                "start_eta_s": float(c.eta_s[a]),
                "end_eta_s": float(c.eta_s[b - 1] + c.duration_s[b - 1]),
                "segments": b - a,
                "mean_sinr_db": float(np.mean(sinr)),
                "drop_expected": float(np.nansum(timeline.drop_prob[a:b])),
                "label": nid or "no network",
                "color": colors.get(nid, NO_NETWORK_COLOR),
                "geometry": _stretch(timeline, line, a, b),
            }
        )
    columns = ["network_id", "start_m", "end_m", "start_eta_s", "end_eta_s", "segments"]
    return _frame(rows, [*columns, "mean_sinr_db", "drop_expected"])


def _handover_layer(timeline: RouteTimeline, colors: Mapping[str, str]) -> gpd.GeoDataFrame:
    rows = [
        {
            "from_network": str(h["from_network"]),
            "to_network": str(h["to_network"]),
            "kind": str(h["kind"]),
            "distance_m": float(h["distance_m"]),
            "eta_s": float(h["eta_s"]),
            "label": f"{h['from_network']} -> {h['to_network']}",
            "color": colors.get(str(h["to_network"]), NO_NETWORK_COLOR),
            "geometry": Point(float(h["lon"]), float(h["lat"])),
        }
        for h in timeline.handovers
    ]
    return _frame(rows, ["from_network", "to_network", "kind", "distance_m", "eta_s"])


def _drop_layer(
    timeline: RouteTimeline, line: LineString | None, drop_risk_prob: float
) -> gpd.GeoDataFrame:
    c = timeline.corridor
    end_m = timeline.segment_end_m
    risky = np.nan_to_num(timeline.drop_prob) >= drop_risk_prob
    rows = []
    for a, b in _runs(risky.tolist()):
        if not risky[a]:
            continue
        worst = float(np.max(timeline.drop_prob[a:b]))
        rows.append(
            {
                "start_m": float(c.distance_m[a]),
                "end_m": float(end_m[b - 1]),
                "max_drop_prob": worst,
                "drop_expected": float(np.sum(timeline.drop_prob[a:b])),
                "network_id": ",".join(dict.fromkeys(timeline.serving[a:b])),
                "label": f"drop risk up to {100 * worst:.0f} % per segment",
                "color": DROP_RISK_COLOR,
                "geometry": _stretch(timeline, line, a, b),
            }
        )
    columns = ["start_m", "end_m", "max_drop_prob", "drop_expected", "network_id"]
    return _frame(rows, columns)


# -- writing -----------------------------------------------------------------------------------


def _driver(path: Path, driver: str | None) -> str:
    if driver is not None:
        return driver
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInputError(
            f"{path}: unknown export format {suffix!r}; use one of {', '.join(sorted(FORMATS))}",
            field="out",
        )
    wanted = FORMATS[suffix]
    available = pyogrio.list_drivers(write=True)
    if wanted == "LIBKML" and wanted not in available:
        wanted = "KML"
    if wanted not in available:
        raise InvalidInputError(f"{path}: GDAL has no {wanted} driver for writing", field="out")
    return wanted


_KML_WIDTH_PX = {"roads": 1, "coverage": 3, "route": 5, "drop_risk": 9}


def _for_gdal(frame: gpd.GeoDataFrame, *, kml: bool, layer: str = "") -> gpd.GeoDataFrame:
    """Booleans as 0/1 integers; for KML a style per feature from ``color`` and a name."""
    out = frame.copy()
    for col in out.columns:
        if col != out.geometry.name and out[col].dtype == bool:
            out[col] = out[col].astype(np.int32)
    if kml and "color" in out.columns:
        points = out.geometry.geom_type == "Point"
        width = _KML_WIDTH_PX.get(layer, 3)
        # GDAL feature style strings; a SYMBOL without an id crashes LIBKML, so points get a
        # coloured label instead of an icon
        pen = "PEN(c:" + out["color"].astype(str) + f",w:{width}px)"
        label = "LABEL(c:" + out["color"].astype(str) + ")"
        out["OGR_STYLE"] = label.where(points, pen)
    if kml and "label" in out.columns and "name" not in out.columns:
        out = out.rename(columns={"label": "name"})
    return out


def write_layers(
    layers: Mapping[str, gpd.GeoDataFrame],
    path: str | os.PathLike[str],
    *,
    driver: str | None = None,
) -> Path:
    """Write named layers to one file, atomically (format from the suffix, see :data:`FORMATS`).

    GeoPackage and KML keep one table / folder per layer; GeoJSON holds one collection, so
    the layers are stacked with a ``layer`` column naming each feature's layer.

    Raises
    ------
    InvalidInputError
        Unknown suffix, no layer, or a layer that is not in EPSG:4326.

    Examples
    --------
    >>> write_layers({}, "out.gpkg")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: out.gpkg: nothing to export (no layers)
    """
    target = Path(path)
    if not layers:
        raise InvalidInputError(f"{target}: nothing to export (no layers)", field="layers")
    drv = _driver(target, driver)
    for name, frame in layers.items():
        if frame.crs is None or not frame.crs.equals(CRS):
            raise InvalidInputError(f"layer {name}: CRS must be EPSG:4326", field=name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
    try:
        if drv == "GeoJSON":
            stacked = pd.concat(
                [f.assign(layer=name) for name, f in layers.items()], ignore_index=True
            )
            frame = gpd.GeoDataFrame(stacked, geometry="geometry", crs=CRS)
            pyogrio.write_dataframe(
                _for_gdal(frame, kml=False),
                tmp,
                driver=drv,
                layer=target.stem,
                COORDINATE_PRECISION=7,
            )
        else:
            for i, (name, frame) in enumerate(layers.items()):
                kml = drv in ("KML", "LIBKML")
                pyogrio.write_dataframe(
                    _for_gdal(frame, kml=kml, layer=name), tmp, driver=drv, layer=name, append=i > 0
                )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("wrote %s (%s, layers %s)", target, drv, ", ".join(layers))
    return target


def export_map(
    cmap: CommMap,
    path: str | os.PathLike[str],
    *,
    spacing_m: float = 200.0,
    t_s: float | None = None,
    network_ids: Sequence[str] | None = None,
) -> Path:
    """Write a map's ``roads`` and ``coverage`` layers (see :func:`map_layers`) to ``path``.

    Returns
    -------
    Path
        The written file.
    """
    layers = map_layers(cmap, spacing_m=spacing_m, t_s=t_s, network_ids=network_ids)
    return write_layers(layers, path)


def export_plan(
    timeline: RouteTimeline,
    path: str | os.PathLike[str],
    *,
    drop_risk_prob: float = 0.05,
) -> Path:
    """Write a plan's ``route``, ``handovers`` and ``drop_risk`` layers to ``path``.

    Returns
    -------
    Path
        The written file.
    """
    return write_layers(plan_layers(timeline, drop_risk_prob=drop_risk_prob), path)
