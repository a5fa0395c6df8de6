"""Maps and plans as GIS layers: GeoPackage, GeoJSON and KML files for QGIS and Google Earth.

A map is exported as two layers:

``roads``
    The drivable road graph, one line per road piece in both directions (WGS84).
``coverage``
    The quality of every network sampled along the roads: the roads are cut into pieces of
    about ``spacing_m`` metres (:func:`commap.out.timeline.road_pieces`), each piece is sampled
    at its midpoint at one time (:func:`commap.out.timeline.sample_pieces`), one row per piece
    and network with the values, their provenance (``measured`` / ``modelled`` / ``none``)
    and a quality class for styling.

A plan (a :class:`~commap.out.timeline.RouteTimeline`; see :func:`plan_layers`) is exported as
``route`` (one line per run of segments on one network), ``handovers`` (points) and
``drop_risk`` (stretches where the serving link is likely to drop).

Every file is written atomically (:func:`commap.files.atomic_path`), so a reader never sees a
half-written export. The format follows the suffix: ``.gpkg`` (one table per layer),
``.geojson``/``.json`` (one collection, a ``layer`` property names the layer) and ``.kml``
(one folder per layer, written by GDAL's LIBKML or KML driver).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from shapely.geometry import LineString, MultiLineString, Point

from commap.errors import InvalidInputError
from commap.files import atomic_path
from commap.geo.geodesy import utm_crs
from commap.networks import NetworkKind
from commap.out.style import (
    CLASSES,
    DROP_RISK_COLOR,
    NO_NETWORK_COLOR,
    ROAD_COLOR,
    network_colors,
)
from commap.out.timeline import (
    CRS,
    RouteTimeline,
    read_plan,
    road_edges,
    road_pieces,
    route_line,
    runs,
    sample_pieces,
    stretch_geometry,
)

if TYPE_CHECKING:
    from commap.map.comm_map import CommMap

__all__ = [
    "FORMATS",
    "export_map",
    "export_plan",
    "kml_map_layers",
    "map_layers",
    "plan_layers",
    "read_plan_layers",
    "write_layers",
]

log = logging.getLogger(__name__)

# suffix -> GDAL driver
FORMATS: dict[str, str] = {
    ".gpkg": "GPKG",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".kml": "LIBKML",
}


# -- maps --------------------------------------------------------------------------------------


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
    graph = cmap.roads
    if graph is None:
        raise InvalidInputError(f"map {cmap.name}: the map has no road graph", field="roads")
    roads = road_edges(graph)
    pieces = road_pieces(graph, spacing_m=spacing_m)
    values = sample_pieces(cmap, pieces, t_s=t_s, network_ids=network_ids)
    geometry = pieces.set_index("piece_id").geometry
    attrs = pieces[["piece_id", "edge_id", "highway", "name", "tunnel", "bridge", "length_m"]]
    coverage = values.merge(attrs, on="piece_id", how="left")
    coverage["label"] = coverage["network_id"] + ": " + _class_text(coverage)
    coverage["color"] = _class_color(coverage)
    coverage = gpd.GeoDataFrame(
        coverage, geometry=geometry.loc[coverage["piece_id"]].values, crs=CRS
    )
    roads = roads.drop(columns=["u", "v"]).assign(label=roads["name"], color=ROAD_COLOR)
    return {"roads": roads, "coverage": coverage}


KML_TOLERANCE_M = 10.0  # geometry simplification of the KML export


def kml_map_layers(
    layers: Mapping[str, gpd.GeoDataFrame], *, tolerance_m: float = KML_TOLERANCE_M
) -> dict[str, gpd.GeoDataFrame]:
    """The map's layers made light for Google Earth (the GeoPackage keeps every value).

    Coverage becomes one folder per network (``coverage <network>``) holding one line set per
    quality class: consecutive pieces of a road in the same class are merged, then every road
    of the class; lines are simplified to about ``tolerance_m`` metres and carry only their
    name (``network: class``) and colour. Roads keep their name, class and colour.

    Examples
    --------
    >>> kml_map_layers({})
    {}
    """
    out: dict[str, gpd.GeoDataFrame] = {}
    for name, frame in layers.items():
        if frame.empty:
            out[name] = frame
        elif name == "coverage":
            for network_id, part in frame.groupby("network_id", sort=False):
                out[f"coverage {network_id}"] = _simplified(_merge_classes(part), tolerance_m)
        else:
            keep = [c for c in ("label", "highway", "color") if c in frame]
            out[name] = _simplified(frame[[*keep, "geometry"]], tolerance_m)
    return out


def _merge_classes(coverage: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """One network's pieces as one (multi)line per class: runs of consecutive pieces of a road
    in one class joined end to end, then the runs of a class merged where they touch."""
    c = coverage.sort_values("piece_id", kind="stable").reset_index(drop=True)
    key = c["edge_id"].astype(str) + "|" + c["label"]
    starts = np.flatnonzero((key != key.shift()).to_numpy())
    ends = np.append(starts[1:], len(c))
    coords = [np.asarray(g.coords) for g in c.geometry]
    # pieces of one road follow each other: each starts where the previous one ends
    runs = [
        LineString(np.concatenate([coords[a]] + [p[1:] for p in coords[a + 1 : b]]))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    ]
    firsts = c.iloc[starts].reset_index(drop=True)
    rows = []
    for label, group in firsts.groupby("label", sort=False):
        lines = [runs[i] for i in group.index]
        rows.append(
            {
                "label": label,
                "color": group["color"].iloc[0],
                "geometry": shapely.line_merge(MultiLineString(lines)),
            }
        )
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=CRS)


def _simplified(frame: gpd.GeoDataFrame, tolerance_m: float) -> gpd.GeoDataFrame:
    lon0, lat0, lon1, lat1 = frame.total_bounds
    utm = utm_crs((lon0 + lon1) / 2.0, (lat0 + lat1) / 2.0)
    geometry = frame.geometry.to_crs(utm).simplify(tolerance_m).to_crs(CRS)
    return frame.set_geometry(geometry.values).reset_index(drop=True)


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
    line = route_line(timeline)
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
    for a, b in runs(timeline.serving):
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
                "geometry": stretch_geometry(timeline, line, a, b),
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
    for a, b in runs(risky.tolist()):
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
                "geometry": stretch_geometry(timeline, line, a, b),
            }
        )
    columns = ["start_m", "end_m", "max_drop_prob", "drop_expected", "network_id"]
    return _frame(rows, columns)


def read_plan_layers(
    path: str | os.PathLike[str], *, drop_risk_prob: float = 0.05
) -> dict[str, gpd.GeoDataFrame]:
    """The ``route``/``handovers``/``drop_risk`` layers of any plan file.

    Accepts every file of :func:`commap.plan.write_plan` (full detail), and GeoJSON and
    GeoPackage files of stretches and handovers only, such as those of :func:`export_plan`
    (drop-risk stretches are then whole stretches whose worst segment reaches
    ``drop_risk_prob``).

    Raises
    ------
    InvalidInputError
        Unknown suffix, unreadable file or a file that is not a plan.
    """
    source = Path(path)
    suffix = source.suffix.lower()
    try:
        return plan_layers(read_plan(source), drop_risk_prob=drop_risk_prob)
    except InvalidInputError:
        if suffix not in (".geojson", ".gpkg") or not source.is_file():
            raise
    # a GeoJSON or GeoPackage without the whole plan: the files of export_plan, older plans
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
        out = out.drop(columns="color")  # the style holds it
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
    with atomic_path(target, keep_suffix=True) as tmp:
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

    GeoPackage and GeoJSON hold every value; KML holds the light layers of
    :func:`kml_map_layers`, which Google Earth opens at once.

    Returns
    -------
    Path
        The written file.
    """
    layers = map_layers(cmap, spacing_m=spacing_m, t_s=t_s, network_ids=network_ids)
    if Path(path).suffix.lower() == ".kml":
        layers = kml_map_layers(layers)
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
