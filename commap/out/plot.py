"""Pictures for reports: coverage maps, the planned route, strip charts and evaluation charts.

Every function draws with matplotlib's Agg renderer through the object API
(:class:`matplotlib.figure.Figure` + ``FigureCanvasAgg``): no pyplot, no GUI backend, no global
state, safe from threads. PNGs have exactly ``size_px`` pixels, carry no timestamp (the same
inputs give the same bytes) and are written atomically.

Maps are drawn in longitude/latitude with the aspect ratio of the map's latitude, a kilometre
scale bar and the data attribution (OpenStreetMap roads, SRTM terrain, ...).
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import patheffects
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from commap.arrays import BoolArray, FloatArray
from commap.errors import InvalidInputError
from commap.files import write_bytes_atomic
from commap.geo.geodesy import to_local_m
from commap.out.style import (
    CLASSES,
    DROP_RISK_COLOR,
    NO_NETWORK_COLOR,
    PROVENANCE_COLORS,
    PROVENANCE_NAMES,
    ROAD_COLOR,
    TUNNEL_COLOR,
    UNKNOWN,
    UNKNOWN_COLOR,
    network_colors,
)
from commap.out.timeline import RouteTimeline, classify, road_edges, road_pieces, runs
from commap.radio.quality import USABLE_SINR_DB, Provenance

if TYPE_CHECKING:
    import geopandas as gpd

    from commap.map.comm_map import CommMap

__all__ = [
    "DEFAULT_SIZE_PX",
    "figure_png",
    "plot_coverage",
    "plot_evaluation",
    "plot_route_map",
    "plot_strip",
    "plot_trace_comparison",
    "route_title",
]

_USABLE_LABEL = f"usable from {USABLE_SINR_DB:g} dB"
_MEASURED_EDGE = PROVENANCE_COLORS[Provenance.MEASURED]
_MODELLED = PROVENANCE_COLORS[Provenance.MODELLED]

log = logging.getLogger(__name__)

DEFAULT_SIZE_PX = (1600, 1000)
_DPI = 100
_OSM_SRTM = "Roads © OpenStreetMap contributors (ODbL). Terrain: SRTM, NASA/USGS."
_METRIC_TITLE = {"sinr_db": "SINR", "rsrp_dbm": "RSRP", "elevation_deg": "satellite visibility"}


# -- figure plumbing ---------------------------------------------------------------------------


def _figure(size_px: tuple[int, int]) -> Figure:
    w, h = size_px
    if not (100 <= w <= 10000 and 100 <= h <= 10000):
        raise InvalidInputError(
            f"size_px must be between 100 and 10000 pixels per side, got {size_px}",
            field="size_px",
        )
    fig = Figure(figsize=(w / _DPI, h / _DPI), dpi=_DPI, layout="constrained")
    # keep a strip at the bottom free for the attribution footer
    fig.get_layout_engine().set(rect=(0.0, 0.022, 1.0, 0.978))  # type: ignore[union-attr,call-arg]
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """The PNG bytes of ``fig`` at its own size, without a timestamp or software tag.

    Examples
    --------
    >>> png = figure_png(Figure(figsize=(1, 1), dpi=100))
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    buf = io.BytesIO()
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=fig.dpi, metadata={"Software": None})
    return buf.getvalue()


def _write(png: bytes, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(target, png)
    log.info("wrote %s", target)
    return target


def _check_png_path(path: str | os.PathLike[str]) -> None:
    if Path(path).suffix.lower() != ".png":
        raise InvalidInputError(f"{path}: plots are written as .png files", field="out")


def _route_figure(
    timeline: RouteTimeline, out: str | os.PathLike[str], size_px: tuple[int, int]
) -> Figure:
    """The empty figure of a route picture, once the output name and the route are checked."""
    _check_png_path(out)
    if len(timeline.corridor) == 0:
        raise InvalidInputError("the route has no segments to draw", field="plan")
    return _figure(size_px)


# -- map helpers -------------------------------------------------------------------------------


def _geo_axes(ax: Axes, bbox: Sequence[float]) -> None:
    """Longitude/latitude axes with the map's aspect and limits."""
    lon0, lat0, lon1, lat1 = bbox
    ax.set_xlim(lon0, lon1)
    ax.set_ylim(lat0, lat1)
    ax.set_aspect(1.0 / math.cos(math.radians((lat0 + lat1) / 2.0)))
    ax.set_facecolor("#f4f2ee")
    ax.tick_params(labelsize=8)
    ax.set_xlabel("longitude [deg]", fontsize=8)
    ax.set_ylabel("latitude [deg]", fontsize=8)


def _scale_bar(ax: Axes) -> None:
    """A 1-2-5 kilometre bar in the lower right corner."""
    lon0, lon1 = ax.get_xlim()
    lat0, lat1 = ax.get_ylim()
    x_m, _ = to_local_m(1.0, 0.0, lat0=(lat0 + lat1) / 2.0)  # one degree of longitude
    km_per_deg = float(x_m) / 1000.0
    width_km = (lon1 - lon0) * km_per_deg
    target = width_km / 5.0
    step = 10 ** math.floor(math.log10(target))
    length_km = max(s * step for s in (1, 2, 5) if s * step <= target)
    x1 = lon1 - 0.04 * (lon1 - lon0)
    x0 = x1 - length_km / km_per_deg
    y = lat0 + 0.04 * (lat1 - lat0)
    ax.plot([x0, x1], [y, y], color="black", linewidth=3, solid_capstyle="butt", zorder=20)
    label = f"{length_km:g} km"
    ax.text((x0 + x1) / 2, y, label, ha="center", va="bottom", fontsize=8, zorder=20)


def _padded_bbox(lon: FloatArray, lat: FloatArray, pad: float = 0.08) -> tuple[float, ...]:
    lon0, lon1 = float(np.min(lon)), float(np.max(lon))
    lat0, lat1 = float(np.min(lat)), float(np.max(lat))
    dx = max(lon1 - lon0, 0.005) * pad
    dy = max(lat1 - lat0, 0.005) * pad
    return (lon0 - dx, lat0 - dy, lon1 + dx, lat1 + dy)


def _lines(geoms: Any) -> list[FloatArray]:
    return [np.asarray(g.coords)[:, :2] for g in geoms]


def _draw_roads(ax: Axes, edges: gpd.GeoDataFrame, *, color: str = ROAD_COLOR) -> None:
    major = edges["highway"].isin(["motorway", "trunk", "primary", "secondary"]).to_numpy()
    widths = np.where(major, 1.1, 0.5)
    ax.add_collection(
        LineCollection(_lines(edges.geometry), colors=color, linewidths=widths, zorder=1)
    )


def _attribution(cmap: CommMap | None) -> str:
    """The map's data credits, short: up to the first comma or bracket of each."""
    if cmap is None:
        return _OSM_SRTM
    found = []
    for text in cmap.manifest.attribution:
        short = str(text).split(" (http")[0]
        # long citations: keep the source and authors' first name, the page footer has the rest
        short = short if len(short) <= 70 else short.split(",")[0] + " et al."
        found.append(short)
    return "Data: " + "; ".join(found) if found else _OSM_SRTM


def _footer(fig: Figure, text: str) -> None:
    # about 5.5 px per character at 7 pt: shorten what would run off the picture
    width = int(fig.get_figwidth() * fig.dpi / 5.5)
    line = text if len(text) <= width else text[: width - 3] + "..."
    fig.text(0.995, 0.004, line, ha="right", va="bottom", fontsize=7, color="#444444")


def _class_legend(metric: str) -> list[Patch]:
    return [Patch(facecolor=c.color, edgecolor="none", label=c.label) for c in CLASSES[metric]]


# -- coverage ----------------------------------------------------------------------------------


def plot_coverage(
    cmap: CommMap,
    out: str | os.PathLike[str],
    *,
    network_ids: Sequence[str] | None = None,
    metric: str = "sinr_db",
    spacing_m: float = 200.0,
    t_s: float | None = None,
    timeline: RouteTimeline | None = None,
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
) -> Path:
    """Coverage along the roads, one panel per network (small multiples).

    Terrestrial networks are coloured by ``metric`` class (``"sinr_db"`` or ``"rsrp_dbm"``),
    modelled satellites by visibility (best elevation), measured ones (a terminal's own records,
    no elevation) by ``metric``. Modelled values are drawn thin, measured ones
    thick with a dark edge. A route, if given, is drawn in black on every panel.

    Parameters
    ----------
    cmap : CommMap
        The map (needs a road graph).
    out : path
        PNG file to write.
    network_ids : sequence of str, optional
        Networks to show (default all, catalogue order).
    metric : {"sinr_db", "rsrp_dbm"}
        Class scale of terrestrial networks.
    spacing_m : float
        Length of the road pieces that are sampled.
    t_s : float, optional
        Time (epoch seconds) of the satellite geometry; default the map's default departure.
    timeline : RouteTimeline, optional
        A route to draw on top.
    size_px : (int, int)
        Picture size in pixels.

    Returns
    -------
    Path
        The written PNG.

    Raises
    ------
    InvalidInputError
        No road graph, unknown metric or network, bad size or a file name not ending in .png.
    """
    _check_png_path(out)
    if metric not in ("sinr_db", "rsrp_dbm"):
        raise InvalidInputError(
            f"metric must be sinr_db or rsrp_dbm, got {metric!r}", field="metric"
        )
    if cmap.roads is None:
        raise InvalidInputError(f"map {cmap.name} has no road graph to draw", field="roads")
    ids = tuple(network_ids) if network_ids is not None else cmap.catalogue.ids
    if not ids:
        raise InvalidInputError("no network to plot", field="network_ids")
    time_s = cmap.default_departure_s if t_s is None else float(t_s)
    pieces = road_pieces(cmap.roads, spacing_m=spacing_m)
    lon = pieces["lon"].to_numpy(dtype=np.float64)
    lat = pieces["lat"].to_numpy(dtype=np.float64)
    lines = _lines(pieces.geometry)
    fig = _figure(size_px)
    cols = min(len(ids), 4 if len(ids) > 6 else 3)
    rows = math.ceil(len(ids) / cols)
    # the legend has a grid row of its own: a figure legend "outside" the axes would ignore the
    # strip the layout keeps free for the attribution footer, and cover it
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[*([1.0] * rows), 0.12])
    axes = np.array([[fig.add_subplot(grid[r, c]) for c in range(cols)] for r in range(rows)])
    legend_ax = fig.add_subplot(grid[rows, :])
    legend_ax.set_axis_off()
    for ax, nid in zip(axes.flat, ids, strict=False):
        net = cmap.catalogue[nid]
        q = cmap.layers[nid].sample(
            lon, lat, np.full(lon.shape, time_s), in_tunnel=pieces["tunnel"].to_numpy(bool)
        )
        # a modelled satellite by its elevation; a measured one (no elevation) by its signal
        by_sky = net.is_satellite and bool(np.isfinite(q.elevation_deg).any())
        m = "elevation_deg" if by_sky else metric
        values = q.elevation_deg if by_sky else getattr(q, metric)
        codes = classify(m, values)
        unknown = np.asarray(q.unknown, dtype=bool)
        colors = [
            UNKNOWN_COLOR if u else CLASSES[m][c].color if c >= 0 else NO_NETWORK_COLOR
            for c, u in zip(codes.tolist(), unknown.tolist(), strict=True)
        ]
        measured = (q.provenance == Provenance.MEASURED) & ~unknown
        _geo_axes(ax, cmap.bbox)
        if measured.any():
            ax.add_collection(
                LineCollection(
                    [ln for ln, k in zip(lines, measured, strict=True) if k],
                    colors=_MEASURED_EDGE,
                    linewidths=3.2,
                    zorder=2,
                )
            )
        widths = np.where(measured, 2.0, 0.9)
        ax.add_collection(LineCollection(lines, colors=colors, linewidths=widths, zorder=3))
        if timeline is not None:
            ax.plot(timeline.corridor.lon, timeline.corridor.lat, color="black", lw=1.2, zorder=5)
        usable = float(
            np.sum(pieces["length_m"].to_numpy()[(q.sinr_db >= USABLE_SINR_DB) & ~unknown])
        )
        share = usable / max(float(pieces["length_m"].sum()), 1e-9)
        ax.set_title(
            f"{net.display_name or nid}\nusable on {100 * share:.0f} % of roads", fontsize=9
        )
    for ax in list(axes.flat)[len(ids) :]:
        ax.set_axis_off()
    _scale_bar(axes.flat[0])
    handles: list[Artist] = list(_class_legend(metric))
    if any(cmap.catalogue[n].is_satellite for n in ids):
        handles += _class_legend("elevation_deg")
    handles += [
        Line2D([], [], color=_MODELLED, lw=1, label=PROVENANCE_NAMES[Provenance.MODELLED]),
        Line2D(
            [],
            [],
            color=_MODELLED,
            lw=2.0,
            path_effects=[
                patheffects.Stroke(linewidth=3.6, foreground=_MEASURED_EDGE),
                patheffects.Normal(),
            ],
            label=PROVENANCE_NAMES[Provenance.MEASURED],
        ),
        Line2D([], [], color=UNKNOWN_COLOR, lw=2.0, label=f"{UNKNOWN} (no data near)"),
    ]
    legend_ax.legend(
        handles=handles,
        loc="center",
        ncols=min(len(handles), 6),
        fontsize=8,
        frameon=False,
    )
    when = _utc(time_s)
    fig.suptitle(
        f"{cmap.manifest.display_title}: {_METRIC_TITLE[metric]} coverage along the roads ({when})",
        fontsize=12,
    )
    _footer(fig, _attribution(cmap))
    return _write(figure_png(fig), out)


def _utc(t_s: float) -> str:
    from commap.timeutil import format_time

    return format_time(t_s)


# -- route map ---------------------------------------------------------------------------------


def plot_route_map(
    cmap: CommMap | None,
    timeline: RouteTimeline,
    out: str | os.PathLike[str],
    *,
    title: str | None = None,
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
    drop_risk_prob: float = 0.05,
) -> Path:
    """The route coloured by serving network, with handovers and drop-risk stretches.

    Roads around the route are drawn grey for context (when ``cmap`` has a road graph), the
    route with a dark casing, each handover as a numbered dot (fill: the new network),
    stretches where the serving link drops with at least ``drop_risk_prob`` per segment in red.

    Returns
    -------
    Path
        The written PNG.

    Raises
    ------
    InvalidInputError
        An empty route, bad size or a file name not ending in .png.
    """
    fig = _route_figure(timeline, out, size_px)
    ax = fig.add_subplot()
    route_lon, route_lat = _route_xy(timeline)
    bbox = _padded_bbox(route_lon, route_lat)
    _geo_axes(ax, bbox)
    if cmap is not None and cmap.roads is not None:
        _draw_roads(ax, road_edges(cmap.roads))
    colors = network_colors(timeline.matrix.network_ids)
    _draw_drop_risk(ax, timeline, drop_risk_prob)
    ax.add_collection(
        LineCollection(
            _route_pieces(timeline), colors="#111111", linewidths=6.5, zorder=6, capstyle="round"
        )
    )
    pieces = _route_pieces(timeline)
    piece_colors = [colors.get(s, NO_NETWORK_COLOR) for s in timeline.serving]
    ax.add_collection(
        LineCollection(pieces, colors=piece_colors, linewidths=3.8, zorder=7, capstyle="round")
    )
    for k, h in enumerate(timeline.handovers, start=1):
        ax.scatter(
            [h["lon"]],
            [h["lat"]],
            s=70,
            color=colors.get(str(h["to_network"]), "#fff"),
            edgecolors="black",
            linewidths=1.5,
            zorder=9,
        )
        ax.annotate(
            str(k),
            (h["lon"], h["lat"]),
            xytext=(5, 5),
            textcoords="offset points",
            fontsize=7,
            zorder=10,
            color="#111111",
        )
    ax.scatter(
        [route_lon[0]],
        [route_lat[0]],
        marker="o",
        s=120,
        color="white",
        edgecolors="black",
        linewidths=2,
        zorder=11,
    )
    ax.scatter([route_lon[-1]], [route_lat[-1]], marker="s", s=110, color="black", zorder=11)
    _scale_bar(ax)
    used = list(dict.fromkeys(s for s in timeline.serving))
    handles: list[Any] = [
        Line2D([], [], color=colors.get(n, NO_NETWORK_COLOR), lw=4, label=n or "no network")
        for n in used
    ]
    handles += [
        Line2D(
            [],
            [],
            marker="o",
            ls="",
            mfc="white",
            mec="black",
            ms=8,
            label="handover (fill: new network)",
        ),
        Line2D(
            [],
            [],
            color=DROP_RISK_COLOR,
            lw=9,
            alpha=0.45,
            label=f"drop risk >= {100 * drop_risk_prob:g} % per segment",
        ),
        Line2D([], [], marker="o", ls="", mfc="white", mec="black", ms=9, mew=2, label="start"),
        Line2D([], [], marker="s", ls="", color="black", ms=8, label="destination"),
    ]
    ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.92)
    ax.set_title(title or route_title(timeline), fontsize=11)
    _footer(fig, _attribution(cmap))
    return _write(figure_png(fig), out)


def route_title(t: RouteTimeline) -> str:
    """Title of a route's pictures: the plan's own figures, those ``commap plan`` prints.

    A timeline without plan totals states the drop risk of its serving links instead.

    Examples
    --------
    >>> from commap.out.timeline import timeline_from_plan
    >>> from commap.plan.plan import _empty_plan
    >>> route_title(timeline_from_plan(_empty_plan()))
    '0.0 km (telemetry), 0 handovers, 0.00 expected drops, outage 0.0 s'
    """
    km = t.corridor.total_length_m / 1000.0
    name = f"{t.name}: " if t.name else ""
    app = f" ({t.app})" if t.app else ""
    if t.totals is not None:
        return (
            f"{name}{km:.1f} km{app}, {int(t.totals['handovers'])} handovers, "
            f"{float(t.totals['expected_drops']):.2f} expected drops, "
            f"outage {float(t.totals['outage_s']):.1f} s"
        )
    drops = float(np.nansum(t.drop_prob))
    return (
        f"{name}{km:.1f} km, {len(t.handovers)} handovers, "
        f"{drops:.2f} expected drops on the serving links"
    )


def _route_xy(t: RouteTimeline) -> tuple[FloatArray, FloatArray]:
    route = t.corridor.route
    if route is not None:
        return np.asarray(route.lon, np.float64), np.asarray(route.lat, np.float64)
    return t.corridor.lon, t.corridor.lat


def _route_pieces(t: RouteTimeline) -> list[FloatArray]:
    """One short line per segment: from the previous centre's midpoint to the next one's."""
    lon, lat = t.corridor.lon, t.corridor.lat
    mid_lon = np.concatenate([[lon[0]], (lon[:-1] + lon[1:]) / 2.0, [lon[-1]]])
    mid_lat = np.concatenate([[lat[0]], (lat[:-1] + lat[1:]) / 2.0, [lat[-1]]])
    return [
        np.array([[mid_lon[i], mid_lat[i]], [lon[i], lat[i]], [mid_lon[i + 1], mid_lat[i + 1]]])
        for i in range(len(lon))
    ]


def _draw_drop_risk(ax: Axes, t: RouteTimeline, prob: float) -> None:
    risky = np.nan_to_num(t.drop_prob) >= prob
    if risky.any():
        pieces = [p for p, r in zip(_route_pieces(t), risky, strict=True) if r]
        ax.add_collection(
            LineCollection(
                pieces,
                colors=DROP_RISK_COLOR,
                linewidths=16,
                alpha=0.45,
                zorder=5,
                capstyle="round",
            )
        )


# -- strip chart -------------------------------------------------------------------------------


def plot_strip(
    timeline: RouteTimeline,
    out: str | os.PathLike[str],
    *,
    title: str | None = None,
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
    drop_risk_prob: float = 0.05,
) -> Path:
    """Quality of every network and the chosen network along the route distance.

    Three rows share the distance axis: SINR of every network (the usable threshold dashed,
    tunnels shaded), the serving network as a coloured band with the handovers, and the drop
    probability of the serving link per segment.

    Returns
    -------
    Path
        The written PNG.

    Raises
    ------
    InvalidInputError
        An empty route, bad size or a file name not ending in .png.
    """
    c = timeline.corridor
    fig = _route_figure(timeline, out, size_px)
    ax_q, ax_n, ax_d = fig.subplots(3, 1, sharex=True, height_ratios=[3.0, 1.0, 1.3])
    x_km = (c.distance_m + c.length_m / 2.0) / 1000.0
    colors = network_colors(timeline.matrix.network_ids)
    _shade_tunnels(ax_q, timeline)
    unknown = np.asarray(timeline.matrix.unknown, dtype=bool).reshape(timeline.matrix.shape)
    for j, nid in enumerate(timeline.matrix.network_ids):
        measured = float(np.mean(timeline.matrix.provenance[:, j] == Provenance.MEASURED))
        source = "measured" if measured >= 0.5 else "modelled"
        sinr = timeline.matrix.sinr_db[:, j]
        ax_q.plot(
            x_km,
            np.where(unknown[:, j], np.nan, sinr),  # no value drawn where the map knows nothing
            color=colors[nid],
            lw=1.2,
            ls="-" if source == "measured" else (0, (5, 1.5)),
            label=f"{nid} ({source})",
        )
        if unknown[:, j].any():  # the prior where the map knows nothing: its own colour
            ax_q.plot(
                x_km,
                np.where(unknown[:, j], sinr, np.nan),
                color=UNKNOWN_COLOR,
                lw=3.0,
                label=f"{UNKNOWN} (prior)" if not unknown[:, :j].any() else None,
            )
    ax_q.axhline(USABLE_SINR_DB, color="black", ls="--", lw=1, label=_USABLE_LABEL)
    ax_q.set_ylabel("SINR [dB]")
    finite = timeline.matrix.sinr_db[np.isfinite(timeline.matrix.sinr_db)]
    low = min(float(finite.min()) if finite.size else -30.0, USABLE_SINR_DB) - 3.0
    high = max(float(finite.max()) if finite.size else 30.0, 0.0) + 8.0  # room for the legend
    ax_q.set_ylim(max(low, -33.0), min(high, 50.0))
    ax_q.grid(alpha=0.3)
    ax_q.legend(loc="upper right", ncols=min(4, len(colors) + 1), fontsize=8, framealpha=0.9)
    _serving_band(ax_n, timeline, colors, unknown=unknown)
    drop = np.nan_to_num(timeline.drop_prob)
    ax_d.fill_between(x_km, drop, step="mid", color=DROP_RISK_COLOR, alpha=0.6, lw=0)
    ax_d.axhline(
        drop_risk_prob,
        color="black",
        ls=":",
        lw=1,
        label=f"drop-risk level {100 * drop_risk_prob:g} %",
    )
    ax_d.set_ylim(0, max(0.1, float(drop.max()) * 1.1 if drop.size else 0.1))
    ax_d.set_ylabel("drop prob.\nper segment")
    ax_d.set_xlabel("distance along the route [km]")
    ax_d.legend(loc="upper right", fontsize=8)
    ax_d.grid(alpha=0.3)
    ax_d.set_xlim(0, c.total_length_m / 1000.0)
    fig.suptitle(title or route_title(timeline), fontsize=11)
    minutes = c.total_duration_s / 60.0
    _footer(fig, f"{len(c)} segments, {minutes:.1f} min travel time. Quality: commap map layers.")
    return _write(figure_png(fig), out)


def _unknown_stretches(t: RouteTimeline, unknown: BoolArray) -> list[tuple[int, int]]:
    """``[start, stop)`` segment runs where the serving network's quality is unknown."""
    ids = t.matrix.network_ids
    flags = [s in ids and bool(unknown[i, ids.index(s)]) for i, s in enumerate(t.serving)]
    return [(a, b) for a, b in runs(flags) if flags[a]]


def _shade_tunnels(ax: Axes, t: RouteTimeline) -> None:
    c = t.corridor
    start = c.distance_m / 1000.0
    end = (c.distance_m + c.length_m) / 1000.0
    first = True
    for i in np.flatnonzero(c.in_tunnel):
        ax.axvspan(
            start[i], end[i], color=TUNNEL_COLOR, alpha=0.3, lw=0, label="tunnel" if first else None
        )
        first = False


def _serving_band(
    ax: Axes,
    t: RouteTimeline,
    colors: Mapping[str, str],
    *,
    unknown: BoolArray | None = None,
) -> None:
    c = t.corridor
    start = c.distance_m / 1000.0
    width = c.length_m / 1000.0
    order = list(dict.fromkeys(t.serving))
    ax.bar(
        start,
        1.0,
        width=width,
        align="edge",
        bottom=0,
        color=[colors.get(s, NO_NETWORK_COLOR) for s in t.serving],
        lw=0,
    )
    for h in t.handovers:
        ax.axvline(float(h["distance_m"]) / 1000.0, color="black", lw=0.8)
    ax.set_yticks([])
    ax.set_ylim(0, 1)
    ax.set_ylabel("serving\nnetwork")
    handles: list[Artist] = [
        Patch(color=colors.get(n, NO_NETWORK_COLOR), label=n or "none") for n in order
    ]
    handles.append(Line2D([], [], color="black", lw=0.8, label=f"handover ({len(t.handovers)})"))
    # stretches where the serving network's quality is unknown: hatched, in their own colour
    blind = _unknown_stretches(t, unknown) if unknown is not None else []
    for a, b in blind:
        ax.axvspan(
            start[a],
            start[b - 1] + width[b - 1],
            ymax=0.4,
            facecolor=UNKNOWN_COLOR,
            edgecolor="black",
            hatch="//",
            lw=0,
        )
    if blind:
        handles.append(Patch(facecolor=UNKNOWN_COLOR, edgecolor="black", hatch="//", label=UNKNOWN))
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False
    )


# -- measured versus map ----------------------------------------------------------------------


def plot_trace_comparison(
    comparison: Mapping[str, Any],
    out: str | os.PathLike[str],
    *,
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
) -> Path:
    """Measured versus map SINR and RSRP along a drive-test trace.

    Parameters
    ----------
    comparison : mapping
        From :func:`commap.out.route_report.compare_trace` (``distance_m``, ``measured_sinr_db``,
        ``map_sinr_db``, ``measured_rsrp_dbm``, ``map_rsrp_dbm``, ``network_id`` and the
        per-metric ``bias_db`` / ``mae_db``).

    Returns
    -------
    Path
        The written PNG.

    Raises
    ------
    InvalidInputError
        Missing arrays, bad size or a file name not ending in .png.
    """
    _check_png_path(out)
    try:
        x_km = np.asarray(comparison["distance_m"], dtype=np.float64) / 1000.0
        series = {
            m: (
                np.asarray(comparison[f"measured_{m}"], dtype=np.float64),
                np.asarray(comparison[f"map_{m}"], dtype=np.float64),
            )
            for m in ("sinr_db", "rsrp_dbm")
        }
    except KeyError as exc:
        raise InvalidInputError(f"comparison lacks {exc.args[0]!r}", field="comparison") from None
    fig = _figure(size_px)
    axes = fig.subplots(2, 1, sharex=True)
    labels = {"sinr_db": "SINR [dB]", "rsrp_dbm": "RSRP [dBm]"}
    for ax, (metric, (measured, mapped)) in zip(axes, series.items(), strict=True):
        ax.plot(x_km, mapped, color="#0072B2", lw=1.6, label="map")
        ax.scatter(x_km, measured, s=6, color="#D55E00", label="measured", zorder=3)
        if metric == "sinr_db":
            ax.axhline(USABLE_SINR_DB, color="black", ls="--", lw=1, label=_USABLE_LABEL)
        stats = comparison.get(metric, {})
        bias, mae = stats.get("bias_db", math.nan), stats.get("mae_db", math.nan)
        ax.set_title(
            f"{labels[metric].split()[0]}: bias (map - measured) {bias:+.1f} dB, "
            f"mean abs. error {mae:.1f} dB",
            fontsize=10,
        )
        ax.set_ylabel(labels[metric])
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    axes[-1].set_xlabel("distance along the trace [km]")
    fig.suptitle(f"Measured versus map: {comparison.get('network_id', '')}", fontsize=12)
    _footer(fig, "Measured: drive-test trace. Map: commap layers at the trace positions.")
    return _write(figure_png(fig), out)


# -- evaluation --------------------------------------------------------------------------------


def plot_evaluation(
    results: Mapping[str, Mapping[str, float]],
    out: str | os.PathLike[str],
    *,
    metrics: Sequence[tuple[str, str]] | None = None,
    title: str = "Connectivity by policy",
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
) -> Path:
    """Bar charts comparing policies (or plans, or drives) metric by metric.

    Parameters
    ----------
    results : mapping
        ``{policy name: {metric name: value}}``, e.g. ``{"plan": {"drops_per_100km": 1.2}}``.
    metrics : sequence of (key, axis label), optional
        Which metrics to chart (default: every key of the first policy, in order).
    title : str
        Figure title.

    Returns
    -------
    Path
        The written PNG.

    Raises
    ------
    InvalidInputError
        No policy, no metric, or a metric missing from a policy.

    Examples
    --------
    >>> plot_evaluation({}, "x.png")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: nothing to compare: no policy results
    """
    _check_png_path(out)
    if not results:
        raise InvalidInputError("nothing to compare: no policy results", field="results")
    names = list(results)
    chosen = (
        list(metrics)
        if metrics is not None
        else [(k, k.replace("_", " ").replace("100km", "100 km")) for k in results[names[0]]]
    )
    if not chosen:
        raise InvalidInputError("no metric to chart", field="metrics")
    for name in names:
        for key, _ in chosen:
            if key not in results[name]:
                raise InvalidInputError(f"policy {name!r} has no metric {key!r}", field="results")
    fig = _figure(size_px)
    cols = min(len(chosen), 3)
    axes = fig.subplots(math.ceil(len(chosen) / cols), cols, squeeze=False)
    palette = network_colors(names)
    for ax, (key, label) in zip(axes.flat, chosen, strict=False):
        values = [float(results[n][key]) for n in names]
        bars = ax.bar(names, values, color=[palette[n] for n in names])
        ax.bar_label(bars, labels=[_short(v) for v in values], fontsize=8, padding=2)
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.15)
    for ax in list(axes.flat)[len(chosen) :]:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=12)
    return _write(figure_png(fig), out)


def _short(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.3g}"
