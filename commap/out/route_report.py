"""Route connectivity test report: one score for the whole vehicle's connectivity on a route.

The industry has no common way to score whole-vehicle connectivity on a route; this report
gives one, for a plan (what commap expects) and, for a drive-test trace, for what was measured:

``drops``, ``drops_per_100km``
    The same rule for the plan and the trace: entries into outage (a segment or sample without
    a usable link after one with it, or at the start).
``expected_drops``, ``expected_drops_per_100km`` (plan only)
    The plan's own figure: expected drops of its links (the link model's drop probabilities
    and failed handovers), what ``commap plan`` prints. A trace has no such figure.
``interruption_s`` (plan only)
    The plan's planned interruptions: the time each planned switch leaves the vehicle without
    a link. They count in the plan's outage, as real interruptions count in the trace's.
``outage_share``, ``outage_s``, ``longest_outage_s``
    Time without a usable link: serving SINR below ``USABLE_SINR_DB`` (Qin, -3.9 dB) or no
    serving network (plan:
    per segment on the map; trace: per sample, a sample lasting until the next one, gaps capped
    at ``max_gap_s``).
``handovers_per_km`` (and by kind)
    Plan: switches of network by :class:`~commap.networks.SwitchKind`. Trace: serving-cell
    changes (``cell_change``) and radio-technology changes (``technology_change``, e.g.
    LTE <-> 5G NSA).
``ping_pong_ratio``
    Share of handovers that return to the previous network (cell) within ``ping_pong_s``
    (default 1 s, as in the evaluation of DESIGN.md).
``time_s`` / ``data_mb`` per network
    Plan: time on each network and the application's data volume there. Trace: time per
    network mode and the data actually received (``throughput_dl_mbps``).
``coverage by provenance``
    Share of the route where each network's value is measured, modelled or unknown.
``plan versus measured`` (trace only)
    The map's SINR/RSRP of the traced network at the trace's positions against the measured
    values (bias, mean absolute error, agreement on usable / unusable), and the scores side
    by side.

:func:`write_route_report` writes ``report.html`` (self-contained: figures embedded as PNG data
URIs), ``report.json`` (every number of the page) and the figures as PNG files. The output
depends only on the inputs: no clock is read (pass ``generated_at`` to print a date).
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import logging
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from commap.arrays import FloatArray
from commap.errors import InvalidInputError
from commap.files import write_bytes_atomic, write_text_atomic
from commap.geo.corridor import Route, route_from_polyline
from commap.geo.geodesy import GEOD
from commap.out import plot
from commap.out.style import PROVENANCE_NAMES
from commap.out.timeline import RouteTimeline
from commap.radio.quality import USABLE_SINR_DB
from commap.timeutil import format_time

if TYPE_CHECKING:
    from commap.map.comm_map import CommMap
    from commap.service.planning import PlanRequest

__all__ = [
    "DEFAULT_MAX_GAP_S",
    "DEFAULT_PING_PONG_S",
    "ReportFiles",
    "compare_trace",
    "coverage_by_provenance",
    "measured_network",
    "read_trace",
    "route_report",
    "score_plan",
    "score_trace",
    "trace_route",
    "write_route_report",
]

log = logging.getLogger(__name__)

DEFAULT_PING_PONG_S = 1.0
DEFAULT_MAX_GAP_S = 5.0
# Without a SINR value a measured sample is taken as out of service below this RSRP (the
# lower end of the RSRP range where LTE still holds a link, cf. TS 36.133 reporting range).
UNUSABLE_RSRP_DBM = -125.0
_FIGURE_SIZE_PX = (1400, 900)


# -- scores ------------------------------------------------------------------------------------


def _runs(flags: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """``[start, end)`` of every run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _ping_pongs(changes: Sequence[tuple[float, str, str]], window_s: float) -> int:
    """Changes ``b -> a`` within ``window_s`` of the change ``a -> b`` before them."""
    count = 0
    for (t1, a1, b1), (t2, a2, b2) in itertools.pairwise(changes):
        if a2 == b1 and b2 == a1 and t2 - t1 <= window_s + 1e-9:
            count += 1
    return count


def _score(
    *,
    length_m: float,
    duration_s: FloatArray,
    outage: NDArray[np.bool_],
    expected_drops: float | None,
    interruption_s: float | None,
    changes: Sequence[tuple[float, str, str, str]],
    time_key: Sequence[str],
    data_mb: Mapping[str, float],
    ping_pong_s: float,
) -> dict[str, Any]:
    """The common score from per-interval arrays (segments of a plan, samples of a trace)."""
    total_s = float(duration_s.sum())
    km = length_m / 1000.0
    outage_runs = [float(duration_s[a:b].sum()) for a, b in _runs(outage)]
    drops = len(outage_runs)  # entries into outage: one rule for plans and traces
    outage_s = float(sum(outage_runs)) + (interruption_s or 0.0)
    by_kind: dict[str, int] = {}
    for _, _, _, kind in changes:
        by_kind[kind] = by_kind.get(kind, 0) + 1
    handovers = len(changes)
    pp = _ping_pongs([(t, a, b) for t, a, b, _ in changes], ping_pong_s)
    time_s: dict[str, float] = {}
    for key, d in zip(time_key, duration_s.tolist(), strict=True):
        time_s[key] = time_s.get(key, 0.0) + d
    return {
        "length_km": km,
        "duration_s": total_s,
        "drops": drops,
        "drops_per_100km": drops / km * 100.0 if km > 0 else math.nan,
        "expected_drops": expected_drops,
        "expected_drops_per_100km": (
            None if expected_drops is None else expected_drops / km * 100.0 if km > 0 else math.nan
        ),
        "interruption_s": interruption_s,
        "outage_s": outage_s,
        "outage_share": outage_s / total_s if total_s > 0 else math.nan,
        "longest_outage_s": max(outage_runs, default=0.0),
        "handovers": handovers,
        "handovers_per_km": handovers / km if km > 0 else math.nan,
        "handovers_by_kind": dict(sorted(by_kind.items())),
        "handovers_per_km_by_kind": {
            k: (v / km if km > 0 else math.nan) for k, v in sorted(by_kind.items())
        },
        "ping_pong": pp,
        "ping_pong_ratio": pp / handovers if handovers else 0.0,
        "ping_pong_window_s": ping_pong_s,
        "time_s_by_network": dict(sorted(time_s.items())),
        "data_mb_by_network": dict(sorted(data_mb.items())),
    }


def score_plan(
    timeline: RouteTimeline,
    *,
    data_rate_mbps: float,
    ping_pong_s: float = DEFAULT_PING_PONG_S,
) -> dict[str, Any]:
    """Connectivity score of a plan (see the module docstring for the definitions).

    Parameters
    ----------
    timeline : RouteTimeline
        The plan.
    data_rate_mbps : float
        The application's data rate (data volume per network = time there x rate).
    ping_pong_s : float
        Ping-pong window.

    Returns
    -------
    dict
        ``length_km``, ``duration_s``, ``drops``, ``drops_per_100km``, ``expected_drops``,
        ``expected_drops_per_100km``, ``interruption_s``, ``outage_s``,
        ``outage_share``, ``longest_outage_s``, ``handovers``, ``handovers_per_km``,
        ``handovers_by_kind``, ``handovers_per_km_by_kind``, ``ping_pong``,
        ``ping_pong_ratio``, ``ping_pong_window_s``, ``time_s_by_network``,
        ``data_mb_by_network``.

    Raises
    ------
    InvalidInputError
        Negative data rate or ping-pong window.
    """
    _check_nonneg(data_rate_mbps=data_rate_mbps, ping_pong_s=ping_pong_s)
    c = timeline.corridor
    ids = timeline.matrix.network_ids
    rows = np.arange(len(c))
    cols = np.array([ids.index(s) if s in ids else -1 for s in timeline.serving], dtype=np.int64)
    sinr = np.where(cols >= 0, timeline.matrix.sinr_db[rows, np.maximum(cols, 0)], -np.inf)
    # NaN SINR (unknown) is not counted as an outage
    outage = (cols < 0) | (sinr < USABLE_SINR_DB)
    changes = [
        (float(h["eta_s"]), str(h["from_network"]), str(h["to_network"]), str(h["kind"]))
        for h in timeline.handovers
    ]
    duration = np.asarray(c.duration_s, dtype=np.float64)
    keys = [s or "none" for s in timeline.serving]
    data: dict[str, float] = {}
    for key, d in zip(keys, duration.tolist(), strict=True):
        if key != "none":
            data[key] = data.get(key, 0.0) + d * data_rate_mbps / 8.0
    totals = timeline.totals or {}
    return _score(
        length_m=c.total_length_m,
        duration_s=duration,
        outage=outage,
        expected_drops=float(totals.get("expected_drops", np.nansum(timeline.drop_prob))),
        interruption_s=float(totals.get("interruption_s", 0.0)),
        changes=changes,
        time_key=keys,
        data_mb=data,
        ping_pong_s=ping_pong_s,
    )


def _check_nonneg(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value >= 0):
            raise InvalidInputError(f"{name} must be a finite number >= 0", field=name)


def _trace_arrays(records: pd.DataFrame, max_gap_s: float) -> tuple[FloatArray, FloatArray]:
    """Seconds each sample stands for, and the distance from the previous sample."""
    t = records["timestamp"].astype("int64").to_numpy() / 1e9
    step = np.diff(t)
    # a sample lasts until the next one; the last lasts as long as the typical step
    last = float(np.median(step)) if step.size else 1.0
    duration = np.minimum(np.concatenate([step, [last]]), max_gap_s)
    lon = records["lon"].to_numpy(dtype=np.float64)
    lat = records["lat"].to_numpy(dtype=np.float64)
    _, _, leg = GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
    return duration, np.concatenate([[0.0], np.asarray(leg, dtype=np.float64)])


def _measured_outage(records: pd.DataFrame) -> NDArray[np.bool_]:
    """No usable link: not connected, SINR below usable, or (without SINR) RSRP below -125 dBm."""
    n = len(records)
    out = np.zeros(n, dtype=bool)
    if "connected" in records:
        out |= records["connected"].astype("boolean").fillna(True).to_numpy(dtype=bool) == False  # noqa: E712
    if "sinr_db" in records:
        sinr = records["sinr_db"].to_numpy(dtype=np.float64, na_value=np.nan)
        out |= sinr < USABLE_SINR_DB
        no_sinr = np.isnan(sinr)
    else:
        no_sinr = np.ones(n, dtype=bool)
    if "rsrp_dbm" in records:
        rsrp = records["rsrp_dbm"].to_numpy(dtype=np.float64, na_value=np.nan)
        out |= no_sinr & (rsrp < UNUSABLE_RSRP_DBM)
    return out


def _check_trace(records: pd.DataFrame) -> pd.DataFrame:
    need = {"timestamp", "lat", "lon", "network_id"}
    missing = need - set(records.columns)
    if missing:
        raise InvalidInputError(f"trace lacks columns {sorted(missing)}", field="trace")
    if len(records) < 2:
        raise InvalidInputError(
            f"a trace needs at least 2 samples, got {len(records)}", field="trace"
        )
    if "drive_id" in records and records["drive_id"].nunique() > 1:
        names = ", ".join(sorted(map(str, records["drive_id"].unique())))
        raise InvalidInputError(
            f"the records hold several traces ({names}); pick one", field="trace"
        )
    return records.sort_values("timestamp", kind="stable").reset_index(drop=True)


def score_trace(
    records: pd.DataFrame,
    *,
    ping_pong_s: float = DEFAULT_PING_PONG_S,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
) -> dict[str, Any]:
    """Connectivity score of a measured drive (records of one trace, see the module docstring).

    Parameters
    ----------
    records : DataFrame
        Measurement records (:mod:`commap.radio.measurements`) of one trace: ``timestamp``,
        ``lat``, ``lon``, ``network_id`` and any of ``connected``, ``sinr_db``, ``rsrp_dbm``,
        ``throughput_dl_mbps``, ``cell_id``, ``network_mode``.
    ping_pong_s : float
        Ping-pong window.
    max_gap_s : float
        Longest time one sample may stand for (logging gaps).

    Returns
    -------
    dict
        The keys of :func:`score_plan`; ``time_s_by_network`` is keyed ``<network>/<mode>``.

    Raises
    ------
    InvalidInputError
        Fewer than 2 samples, missing key columns, several traces, bad options.
    """
    _check_nonneg(ping_pong_s=ping_pong_s, max_gap_s=max_gap_s)
    df = _check_trace(records)
    duration, leg_m = _trace_arrays(df, max_gap_s)
    outage = _measured_outage(df)
    t = df["timestamp"].astype("int64").to_numpy() / 1e9
    mode = df["network_mode"].astype(str).to_numpy() if "network_mode" in df else None
    changes: list[tuple[float, str, str, str]] = []
    if "cell_id" in df:
        cell = df["cell_id"].astype("Int64").astype(str).to_numpy()
        for i in np.flatnonzero(cell[1:] != cell[:-1]) + 1:
            kind = "cell_change"
            if mode is not None and mode[i] != mode[i - 1]:
                kind = "technology_change"
            changes.append((float(t[i]), str(cell[i - 1]), str(cell[i]), kind))
    net = df["network_id"].astype(str).to_numpy()
    keys = [f"{n}/{m}" for n, m in zip(net, mode, strict=True)] if mode is not None else net
    data: dict[str, float] = {}
    if "throughput_dl_mbps" in df:
        rate = df["throughput_dl_mbps"].to_numpy(dtype=np.float64, na_value=np.nan)
        for key, mb in zip(keys, np.nan_to_num(rate) * duration / 8.0, strict=True):
            data[key] = data.get(key, 0.0) + float(mb)
    return _score(
        length_m=float(leg_m.sum()),
        duration_s=duration,
        outage=outage,
        expected_drops=None,
        interruption_s=None,
        changes=changes,
        time_key=list(keys),
        data_mb=data,
        ping_pong_s=ping_pong_s,
    )


def coverage_by_provenance(timeline: RouteTimeline) -> dict[str, dict[str, float]]:
    """Per network, the share of the route length by provenance (measured / modelled / none).

    Examples
    --------
    >>> coverage_by_provenance.__name__
    'coverage_by_provenance'
    """
    length = np.asarray(timeline.corridor.length_m, dtype=np.float64)
    total = max(float(length.sum()), 1e-9)
    out: dict[str, dict[str, float]] = {}
    for j, nid in enumerate(timeline.matrix.network_ids):
        codes = timeline.matrix.provenance[:, j].astype(int)
        shares = {name: 0.0 for name in ("measured", "modelled", "none")}
        for code, name in PROVENANCE_NAMES.items():
            shares[name] = float(length[codes == code].sum() / total)
        out[nid] = shares
    return out


# -- trace against the map ---------------------------------------------------------------------


def measured_network(cmap: CommMap) -> str:
    """The first network of ``cmap`` with a measured layer (what a drive test of it measured).

    Raises
    ------
    InvalidInputError
        The map has no measured network (name the network explicitly).
    """
    for entry in cmap.manifest.networks:
        if entry.layer_type == "measured" or entry.measured:
            return entry.id
    raise InvalidInputError(
        f"map {cmap.name} has no measured network; name the network the trace measured",
        field="network_id",
    )


def read_trace(
    path: str | os.PathLike[str],
    *,
    network_id: str,
    trace_name: str | None = None,
    network_modes: Sequence[str] | None = ("LTE", "5G"),
) -> pd.DataFrame:
    """One drive-test trace from a G-NetTrack CSV or zip (:func:`commap.radio.measurements.read_gnettrack`).

    Parameters
    ----------
    path : path
        G-NetTrack ``.csv`` or ``.zip`` of them.
    network_id : str
        The map network the trace measured.
    trace_name : str, optional
        Which trace of a zip (file name without ``.csv``); needed when it holds several.
    network_modes : sequence of str, optional
        Rows kept (default LTE and 5G NSA: in 3G rows the RSRP column holds RSCP); None keeps all.

    Raises
    ------
    InvalidInputError
        Unreadable file, unknown trace name, or several traces and no name.
    """
    from commap.radio.measurements import read_gnettrack

    records = read_gnettrack(
        Path(path),
        network_id=network_id,
        network_modes=None if network_modes is None else list(network_modes),
    )
    names = sorted(map(str, records["drive_id"].unique()))
    if trace_name is None:
        if len(names) > 1:
            raise InvalidInputError(
                f"{path} holds {len(names)} traces; pick one: {', '.join(names)}", field="trace"
            )
        return records.reset_index(drop=True)
    if trace_name not in names:
        raise InvalidInputError(
            f"{path}: no trace {trace_name!r}; traces: {', '.join(names)}", field="trace"
        )
    return records[records["drive_id"] == trace_name].reset_index(drop=True)


def trace_route(records: pd.DataFrame, *, name: str = "") -> Route:
    """The route driven in a trace (positions and timestamps), for planning on it.

    Raises
    ------
    InvalidInputError
        See :func:`score_trace` and :func:`commap.geo.corridor.route_from_polyline`.
    """
    df = _check_trace(records)
    t = df["timestamp"].astype("int64").to_numpy() / 1e9
    label = name or (str(df["drive_id"].iloc[0]) if "drive_id" in df else "trace")
    return route_from_polyline(
        df["lon"].to_numpy(dtype=np.float64),
        df["lat"].to_numpy(dtype=np.float64),
        t_s=t,
        name=label,
    )


def compare_trace(
    cmap: CommMap, records: pd.DataFrame, *, network_id: str | None = None
) -> dict[str, Any]:
    """The map's quality of the traced network at the trace's positions against the measurements.

    Parameters
    ----------
    cmap : CommMap
        The map.
    records : DataFrame
        One trace (see :func:`score_trace`).
    network_id : str, optional
        The map network the trace measured (default the records' ``network_id``).

    Returns
    -------
    dict
        ``network_id``, ``samples``, per metric (``sinr_db``, ``rsrp_dbm``) ``n``,
        ``bias_db`` (map minus measured), ``mae_db``; ``usable_agreement`` (share of samples
        where map and measurement agree on usable, SINR >= ``USABLE_SINR_DB``) and the confusion counts; and the
        per-sample arrays ``distance_m``, ``measured_*``, ``map_*`` for the strip chart.

    Raises
    ------
    InvalidInputError
        Unknown network, or trace positions outside the map.
    """
    df = _check_trace(records)
    nid = network_id or str(df["network_id"].iloc[0])
    cmap.catalogue[nid]  # raises for an unknown network
    t = df["timestamp"].astype("int64").to_numpy() / 1e9
    qm = cmap.quality_at(df["lon"].to_numpy(), df["lat"].to_numpy(), t)
    q = qm.column(nid)
    _, leg_m = _trace_arrays(df, DEFAULT_MAX_GAP_S)
    out: dict[str, Any] = {"network_id": nid, "samples": len(df)}
    for metric, map_values in (("sinr_db", q.sinr_db), ("rsrp_dbm", q.rsrp_dbm)):
        measured = (
            df[metric].to_numpy(dtype=np.float64, na_value=np.nan)
            if metric in df
            else np.full(len(df), np.nan)
        )
        ok = np.isfinite(measured) & np.isfinite(map_values)
        diff = map_values[ok] - measured[ok]
        out[metric] = {
            "n": int(ok.sum()),
            "bias_db": float(diff.mean()) if diff.size else math.nan,
            "mae_db": float(np.abs(diff).mean()) if diff.size else math.nan,
        }
        out[f"measured_{metric}"] = measured
        out[f"map_{metric}"] = np.asarray(map_values, dtype=np.float64)
    measured_ok = ~_measured_outage(df)
    map_ok = q.sinr_db >= USABLE_SINR_DB
    out["usable_agreement"] = float(np.mean(measured_ok == map_ok))
    out["usable_confusion"] = {
        "both_usable": int(np.sum(measured_ok & map_ok)),
        "map_usable_measured_not": int(np.sum(~measured_ok & map_ok)),
        "measured_usable_map_not": int(np.sum(measured_ok & ~map_ok)),
        "both_unusable": int(np.sum(~measured_ok & ~map_ok)),
    }
    out["measured_provenance_share"] = float(np.mean(q.provenance == 2))
    out["distance_m"] = np.cumsum(leg_m)
    return out


# -- writing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_route_report` wrote."""

    html: Path
    json: Path
    figures: tuple[Path, ...]


def _clean(value: Any) -> Any:
    """JSON-ready: NaN/inf -> None, numpy -> python, floats rounded to 6 significant digits."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_clean(v) for v in value.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        return None if not math.isfinite(v) else float(f"{v:.6g}")
    return value


def write_route_report(
    cmap: CommMap,
    timeline: RouteTimeline,
    out_dir: str | os.PathLike[str],
    *,
    trace: pd.DataFrame | None = None,
    trace_network_id: str | None = None,
    app: str = "telemetry",
    title: str | None = None,
    generated_at: str | None = None,
    ping_pong_s: float = DEFAULT_PING_PONG_S,
    drop_risk_prob: float = 0.05,
) -> ReportFiles:
    """Write the route connectivity test report of a plan (and a measured trace) to ``out_dir``.

    Parameters
    ----------
    cmap : CommMap
        The map the plan was made on.
    timeline : RouteTimeline
        The plan (for a trace: the plan on the trace's route, see :func:`trace_route`).
    out_dir : path
        Directory for ``report.html``, ``report.json`` and the PNG figures (created).
    trace : DataFrame, optional
        The measured drive (records of one trace); adds the measured score and the plan
        versus measured comparison.
    trace_network_id : str, optional
        Map network the trace measured (default the records' ``network_id``).
    app : str
        Application class (:data:`commap.radio.link.APP_PROFILES`): its data rate gives the data per
        network of the plan.
    title : str, optional
        Page title (default from the map and the route).
    generated_at : str, optional
        Text printed as the report date; nothing is printed when omitted (the files then
        depend on the inputs only).
    ping_pong_s, drop_risk_prob : float
        Ping-pong window; drop probability per segment marked as risky on the pictures.

    Returns
    -------
    ReportFiles
        Paths of the files written.

    Raises
    ------
    InvalidInputError
        Unknown application, a trace that does not fit (see :func:`score_trace`), bad options.
    """
    from commap.radio.link import app_profile

    profile = app_profile(app)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    route_name = timeline.name or "route"
    title = title or f"Route connectivity test: {route_name} ({cmap.name})"
    data: dict[str, Any] = {
        "title": title,
        "map": cmap.name,
        "map_title": cmap.manifest.display_title,
        "route": route_name,
        "departure_utc": format_time(timeline.corridor.departure_s),
        "app": {"name": profile.name, "data_rate_mbps": profile.data_rate_mbps},
        "generated_at": generated_at,
        "definitions": _definitions(ping_pong_s),
        "plan": score_plan(
            timeline, data_rate_mbps=profile.data_rate_mbps, ping_pong_s=ping_pong_s
        ),
        "coverage_by_provenance": coverage_by_provenance(timeline),
        "attribution": list(cmap.manifest.attribution),
    }
    figures: dict[str, bytes] = {}
    figures["map"] = _png(
        lambda p: plot.plot_route_map(
            cmap, timeline, p, size_px=_FIGURE_SIZE_PX, drop_risk_prob=drop_risk_prob
        ),
        out,
    )
    figures["strip"] = _png(
        lambda p: plot.plot_strip(
            timeline, p, size_px=_FIGURE_SIZE_PX, drop_risk_prob=drop_risk_prob
        ),
        out,
    )
    if trace is not None:
        data["measured"] = score_trace(trace, ping_pong_s=ping_pong_s)
        comparison = compare_trace(cmap, trace, network_id=trace_network_id)
        data["plan_vs_measured"] = {
            k: v for k, v in comparison.items() if not isinstance(v, np.ndarray)
        }
        figures["comparison"] = _png(
            lambda p: plot.plot_trace_comparison(comparison, p, size_px=(1400, 800)), out
        )
    paths = []
    for name, png in figures.items():
        path = out / f"{name}.png"
        write_bytes_atomic(path, png)
        paths.append(path)
    clean = _clean(data)
    json_path = out / "report.json"
    write_text_atomic(
        json_path, json.dumps(clean, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    )
    html_path = out / "report.html"
    write_text_atomic(html_path, _html(clean, figures))
    log.info("report written to %s", out)
    return ReportFiles(html=html_path, json=json_path, figures=tuple(paths))


def _png(draw: Any, out: Path) -> bytes:
    """Draw into a temporary PNG in ``out`` and return its bytes."""
    tmp = out / f".figure-{uuid.uuid4().hex[:8]}.png"
    try:
        draw(tmp)
        return tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)


def _definitions(ping_pong_s: float) -> dict[str, str]:
    return {
        "drops": "plan and measured alike: entries into outage (a segment or sample without a "
        "usable link after one with it)",
        "expected_drops": "plan only: the plan's expected drops (link model: drop probabilities "
        "of its links and failed handovers), what `commap plan` prints",
        "interruption_s": "plan only: planned interruptions, the time each planned switch "
        "leaves the vehicle without a link; counted in the plan's outage (the trace's outage "
        "holds its real interruptions)",
        "outage": f"no usable link: serving SINR below {USABLE_SINR_DB:g} dB (Qin) or no serving "
        "network; measured "
        f"samples without SINR count as out below {UNUSABLE_RSRP_DBM:g} dBm RSRP",
        "handovers": "plan: switches of network by kind; measured: serving-cell changes "
        "(cell_change) and radio-technology changes (technology_change)",
        "ping_pong_ratio": f"share of handovers back to the previous network or cell within "
        f"{ping_pong_s:g} s",
        "data_mb": "plan: time on the network times the application's data rate; measured: "
        "received data (throughput x time)",
    }


# -- HTML --------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,"DejaVu Sans",sans-serif;color:#222;max-width:1180px;
  margin:24px auto;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.sub{color:#555;margin:0 0 12px}table{border-collapse:collapse;margin:6px 0 10px}
th,td{padding:4px 10px;border-bottom:1px solid #e4e4e4;text-align:right}
th.t,td.t{text-align:left}thead th{background:#f3f3f3}
img{max-width:100%;border:1px solid #ddd}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px}
dt{font-weight:600}footer{margin-top:32px;color:#666;font-size:12px}
"""

_SCORE_ROWS = (
    ("length_km", "route length", "km", 2),
    ("duration_s", "duration", "s", 0),
    ("drops", "drops (entries into outage)", "", 0),
    ("drops_per_100km", "drops per 100 km", "", 2),
    ("expected_drops", "expected drops (plan, link model)", "", 2),
    ("expected_drops_per_100km", "expected drops per 100 km", "", 2),
    ("interruption_s", "planned interruptions (in outage)", "s", 1),
    ("outage_share", "outage share", "%", 2),
    ("outage_s", "outage", "s", 1),
    ("longest_outage_s", "longest outage", "s", 1),
    ("handovers", "handovers", "", 0),
    ("handovers_per_km", "handovers per km", "", 3),
    ("ping_pong_ratio", "ping-pong ratio", "%", 1),
)


def _fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "&ndash;"
    if unit == "%":
        return f"{100.0 * float(value):.{digits}f} %"
    text = (
        f"{float(value):,.{digits}f}" if isinstance(value, float | int) else html.escape(str(value))
    )
    return f"{text} {unit}".strip()


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, text_cols: int = 1) -> str:
    """An HTML table; the first ``text_cols`` columns hold text (left-aligned)."""

    def cell(tag: str, i: int, content: str) -> str:
        return (
            f'<{tag} class="t">{content}</{tag}>' if i < text_cols else f"<{tag}>{content}</{tag}>"
        )

    head = "".join(cell("th", i, html.escape(h)) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _score_table(data: Mapping[str, Any]) -> str:
    sources = [("plan", "plan (map)")] + (
        [("measured", "measured (trace)")] if "measured" in data else []
    )
    rows = [
        [html.escape(label)] + [_fmt(data[s][key], unit, digits) for s, _ in sources]
        for key, label, unit, digits in _SCORE_ROWS
    ]
    return _table(["metric", *[label for _, label in sources]], rows)


def _kind_table(data: Mapping[str, Any]) -> str:
    rows = []
    for source in ("plan", "measured"):
        if source not in data:
            continue
        for kind, n in data[source]["handovers_by_kind"].items():
            per_km = data[source]["handovers_per_km_by_kind"][kind]
            rows.append([source, html.escape(kind.replace("_", " ")), str(n), _fmt(per_km, "", 3)])
    if not rows:
        return "<p>No handovers.</p>"
    return _table(["source", "kind", "handovers", "per km"], rows, text_cols=2)


def _network_table(data: Mapping[str, Any]) -> str:
    rows = []
    for source in ("plan", "measured"):
        if source not in data:
            continue
        s = data[source]
        for key in sorted(set(s["time_s_by_network"]) | set(s["data_mb_by_network"])):
            t = s["time_s_by_network"].get(key, 0.0)
            share = t / s["duration_s"] if s["duration_s"] else None
            rows.append(
                [
                    source,
                    html.escape(key),
                    _fmt(t, "s", 0),
                    _fmt(share, "%", 1),
                    _fmt(s["data_mb_by_network"].get(key), "MB", 2),
                ]
            )
    return _table(["source", "network", "time", "time share", "data"], rows, text_cols=2)


def _provenance_table(data: Mapping[str, Any]) -> str:
    rows = [
        [
            html.escape(nid),
            _fmt(s["measured"], "%", 1),
            _fmt(s["modelled"], "%", 1),
            _fmt(s["none"], "%", 1),
        ]
        for nid, s in data["coverage_by_provenance"].items()
    ]
    return _table(["network", "measured", "modelled", "none"], rows)


def _comparison_html(data: Mapping[str, Any]) -> str:
    if "plan_vs_measured" not in data:
        return ""
    c = data["plan_vs_measured"]
    rows = [
        [label, str(c[m]["n"]), _fmt(c[m]["bias_db"], "dB", 1), _fmt(c[m]["mae_db"], "dB", 1)]
        for m, label in (("sinr_db", "SINR"), ("rsrp_dbm", "RSRP"))
    ]
    conf = c["usable_confusion"]
    return (
        f"<h2>Plan versus measured ({html.escape(c['network_id'])}, {c['samples']} samples)</h2>"
        "<p>The map's value of the traced network at every trace position against the "
        "measured value (bias = map &minus; measured).</p>"
        + _table(["quantity", "samples", "bias", "mean abs. error"], rows)
        + _table(
            [f"usable (SINR ≥ {USABLE_SINR_DB:g} dB)", "samples"],
            [[html.escape(k.replace("_", " ")), str(v)] for k, v in conf.items()]
            + [["agreement", _fmt(c["usable_agreement"], "%", 1)]],
        )
        + f"<p>Share of the trace where the map's value is measured: "
        f"{_fmt(c['measured_provenance_share'], '%', 1)}.</p>"
    )


def _img(name: str, png: bytes, alt: str) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<figure><img src="{uri}" alt="{html.escape(alt)}" id="fig-{name}"></figure>'


def _html(data: Mapping[str, Any], figures: Mapping[str, bytes]) -> str:
    e = html.escape
    sub = (
        f"Map <b>{e(data['map'])}</b> ({e(data['map_title'])}); route <b>{e(data['route'])}</b>;"
        f" departure {e(data['departure_utc'])}; application {e(data['app']['name'])} "
        f"({data['app']['data_rate_mbps']:g} Mbit/s)."
    )
    if data.get("generated_at"):
        sub += f" Generated {e(str(data['generated_at']))}."
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(data['title'])}</title><style>{_CSS}</style></head><body>",
        f'<h1>{e(data["title"])}</h1><p class="sub">{sub}</p>',
        "<h2>Connectivity score</h2>",
        _score_table(data),
        "<h2>Handovers by kind</h2>",
        _kind_table(data),
        "<h2>Time and data per network</h2>",
        _network_table(data),
        "<h2>Coverage by provenance along the route</h2>",
        _provenance_table(data),
        _comparison_html(data),
        "<h2>Map</h2>",
        _img("map", figures["map"], "route coloured by serving network"),
        "<h2>Quality along the route</h2>",
        _img("strip", figures["strip"], "SINR per network and serving network along the route"),
    ]
    if "comparison" in figures:
        parts += [
            "<h2>Measured versus map along the trace</h2>",
            _img("comparison", figures["comparison"], "measured versus map"),
        ]
    defs = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in data["definitions"].items())
    parts += [
        f"<h2>Definitions</h2><dl>{defs}</dl>",
        "<footer>Data: "
        + " &middot; ".join(e(a) for a in data["attribution"])
        + ". Made with commap; the same numbers are in report.json.</footer></body></html>\n",
    ]
    return "".join(parts)


def route_report(
    cmap: CommMap,
    out_dir: str | os.PathLike[str],
    *,
    request: PlanRequest | None = None,
    trace: pd.DataFrame | None = None,
    trace_network_id: str | None = None,
    title: str | None = None,
    generated_at: str | None = None,
    ping_pong_s: float = DEFAULT_PING_PONG_S,
) -> ReportFiles:
    """Plan a route with :func:`commap.service.planning.plan_route` and write its report.

    Give a ``request`` (origin/destination or a route; its application is used), or a
    ``trace``: the plan is then made on the trace's own route and departure (the default
    request, telemetry application) and compared with what the trace measured.

    Raises
    ------
    InvalidInputError
        Neither a request nor a trace, or any error of planning and :func:`write_route_report`.
    """
    from commap.out.timeline import timeline_from_plan
    from commap.service.planning import PlanRequest, plan_route

    if request is None:
        if trace is None:
            raise InvalidInputError("give a plan request or a drive-test trace", field="trace")
        request = PlanRequest(route=trace_route(trace))
    result = plan_route(cmap, request)
    return write_route_report(
        cmap,
        timeline_from_plan(result),
        out_dir,
        trace=trace,
        trace_network_id=trace_network_id,
        app=request.app,
        title=title,
        generated_at=generated_at,
        ping_pong_s=ping_pong_s,
    )
