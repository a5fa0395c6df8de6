"""Real traces as truth: the A3 model on measured drives, satellites under real bridges.

**Cork drive tests** (:func:`replay_cork`). A G-NetTrack trace logs only the serving cell's
RSRP. To replay the A3 model on measured RSRP, every other cell's RSRP along the trace is taken
from *reference* traces (other drives on the same streets): the median of that cell's
reference samples within ``radius_m`` of the position (NaN where it was never measured there).
The serving cell keeps its own measured value. The 1 Hz trace is held at the simulator's
100 ms steps, the A3 chain (:func:`commap.sim.a3.a3_serving`, L1 200 ms, L3 k=4, hysteresis,
TTT) runs from the real first cell, and its serving-cell changes are compared with the real
ones: counts, and a one-to-one match within ``tolerance_s`` (precision, recall).

**Starlink on the Autobahn** (:func:`starlink_bridges`). The measured 1 Hz run is cut into a
corridor with the bridges of ``Bridges.csv`` as overpasses (:func:`commap.geo.corridor.cut`, the
same "under a bridge" test that blocks the satellite layer); every second whose position falls
in an ``under_bridge`` segment is *blocked*. Blocked seconds are compared with the measured
zero-throughput seconds (downlink below ``zero_mbps``): a per-second contingency table, and per
event (a bridge passage, an outage) whether the other comes within ``tolerance_s``. As a
bridge blocks the sky for well under a second at motorway speed, the share of *dips* (downlink
below half its 21 s rolling median) in blocked and in open seconds is reported too.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.spatial import cKDTree
from shapely.geometry import LineString

from commap.arrays import BoolArray, FloatArray, IntArray
from commap.errors import InvalidInputError
from commap.geo.corridor import cut, route_from_polyline
from commap.geo.geodesy import GEOD, to_local_m
from commap.radio.measurements import read_gnettrack
from commap.sim.a3 import DEFAULT_STEP_S, A3Params, a3_serving

__all__ = [
    "A3_GRID",
    "A3Calibration",
    "CalibrationFold",
    "CorkReplay",
    "CorkTrace",
    "RealTraces",
    "StarlinkBridges",
    "calibrate_a3",
    "calibrate_cork",
    "cork_trace",
    "cork_traces",
    "match_events",
    "month_groups",
    "read_autobahn_bridges",
    "read_autobahn_throughput",
    "replay_cork",
    "replay_trace",
    "run_replays",
    "starlink_bridges",
]

log = logging.getLogger(__name__)


def match_events(
    real_s: FloatArray,
    predicted_s: FloatArray,
    tolerance_s: float,
    *,
    real_xy: FloatArray | None = None,
    predicted_xy: FloatArray | None = None,
    tolerance_m: float = math.inf,
) -> int:
    """One-to-one matching of events within ``tolerance_s`` (and ``tolerance_m`` where positions
    are given): each real event in time order takes the earliest unmatched predicted one.

    Examples
    --------
    >>> match_events(np.array([10.0, 50.0]), np.array([12.0, 13.0, 90.0]), 5.0)
    1
    >>> match_events(np.zeros(0), np.array([1.0]), 5.0)
    0
    >>> xy = np.array([[0.0, 0.0]]); far = np.array([[0.0, 150.0]])
    >>> match_events(np.array([1.0]), np.array([2.0]), 5.0, real_xy=xy, predicted_xy=far,
    ...              tolerance_m=100.0)
    0
    """
    real = np.asarray(real_s, dtype=np.float64)
    pred = np.asarray(predicted_s, dtype=np.float64)
    r_order, p_order = np.argsort(real, kind="stable"), np.argsort(pred, kind="stable")
    taken = np.zeros(pred.size, dtype=bool)
    near = (
        np.hypot(*(real_xy[:, None, :] - predicted_xy[None, :, :]).transpose(2, 0, 1))
        if real_xy is not None and predicted_xy is not None
        else np.zeros((real.size, pred.size))
    )
    matched = 0
    for i in r_order.tolist():
        for j in p_order.tolist():
            if taken[j] or abs(real[i] - pred[j]) > tolerance_s:
                continue
            if near[i, j] > tolerance_m:
                continue
            taken[j] = True
            matched += 1
            break
    return matched


@dataclass(frozen=True)
class CorkReplay:
    """A3 on a measured trace vs the real network (per 1 Hz sample of the trace)."""

    trace: str
    params: A3Params
    t_s: FloatArray  # seconds after the first sample
    serving_rsrp_dbm: FloatArray
    real_cell: IntArray
    predicted_cell: IntArray
    real_changes: IntArray  # sample indices where the real serving cell changes
    predicted_changes: IntArray  # sample indices where the A3 model changes cell
    tolerance_s: float
    matched: int
    mean_candidates: float  # cells with an RSRP value per sample
    tolerance_m: float = math.inf

    @property
    def precision(self) -> float:
        """Matched predicted changes / predicted changes (1 when none predicted)."""
        return self.matched / self.predicted_changes.size if self.predicted_changes.size else 1.0

    @property
    def recall(self) -> float:
        """Matched real changes / real changes (1 when there are none)."""
        return self.matched / self.real_changes.size if self.real_changes.size else 1.0


def _local_xy(
    lon: NDArray[np.float64], lat: NDArray[np.float64], lat0: float
) -> NDArray[np.float64]:
    """Local metres around ``lat0`` as ``(n, 2)`` rows, for nearest-point look-ups."""
    return np.column_stack(to_local_m(lon, lat, lat0=lat0))


def _reference_field(
    reference: pd.DataFrame, xy: FloatArray, lat0: float, radius_m: float
) -> tuple[list[int], FloatArray]:
    """Per trace position and reference cell: median reference RSRP within ``radius_m``."""
    ref = reference.dropna(subset=["cell_id", "rsrp_dbm"])
    cells = sorted(int(c) for c in ref["cell_id"].unique())
    out = np.full((xy.shape[0], len(cells)), np.nan)
    for ci, cell in enumerate(cells):
        rows = ref[ref["cell_id"] == cell]
        tree = cKDTree(_local_xy(rows["lon"].to_numpy(), rows["lat"].to_numpy(), lat0))
        values = rows["rsrp_dbm"].to_numpy(dtype=np.float64)
        for i, near in enumerate(tree.query_ball_point(xy, r=radius_m)):
            if near:
                out[i, ci] = float(np.median(values[near]))
    return cells, out


@dataclass(frozen=True, eq=False)
class CorkTrace:
    """A measured trace ready for A3 replays: its samples and every cell's RSRP along it.

    ``field`` is ``(samples, cells)``: the serving cell's own measurement, the other cells'
    median reference RSRP within the radius (NaN where never measured there).
    """

    name: str
    t_s: FloatArray  # seconds after the first sample
    xy_m: FloatArray  # (samples, 2) local metres
    rsrp_dbm: FloatArray  # the serving cell's measured RSRP
    real_cell: IntArray
    cells: tuple[int, ...]
    field: FloatArray
    first_column: int


def cork_trace(test: pd.DataFrame, reference: pd.DataFrame, *, radius_m: float = 50.0) -> CorkTrace:
    """Prepare one trace's records (``test``) with the other traces' records as reference.

    Raises
    ------
    InvalidInputError
        Fewer than two samples with a serving cell.
    """
    test = test.dropna(subset=["cell_id", "rsrp_dbm"])
    name = str(test["drive_id"].iloc[0]) if len(test) else "?"
    if len(test) < 2:
        raise InvalidInputError(f"trace {name}: fewer than 2 samples with a serving cell")
    lat0 = float(test["lat"].mean())
    xy = _local_xy(test["lon"].to_numpy(), test["lat"].to_numpy(), lat0)
    cells, field = _reference_field(reference, xy, lat0, radius_m)
    real = test["cell_id"].to_numpy(dtype=np.int64)
    for cell in dict.fromkeys(real.tolist()):
        if cell not in cells:
            cells.append(cell)
            field = np.column_stack([field, np.full(len(test), np.nan)])
    column = np.array([cells.index(c) for c in real])
    rsrp = test["rsrp_dbm"].to_numpy(dtype=np.float64)
    field[np.arange(len(test)), column] = rsrp  # the serving cell: its own measurement
    t = (test["timestamp"] - test["timestamp"].iloc[0]).dt.total_seconds().to_numpy()
    return CorkTrace(name, t, xy, rsrp, real, tuple(cells), field, int(column[0]))


def replay_trace(
    trace: CorkTrace,
    params: A3Params,
    *,
    tolerance_s: float = 5.0,
    tolerance_m: float = 100.0,
    step_s: float = DEFAULT_STEP_S,
) -> CorkReplay:
    """A3 on a prepared trace; changes matched within ``tolerance_s`` and ``tolerance_m``."""
    t = trace.t_s
    steps = np.arange(0.0, t[-1] + 1.0 - 1e-9, step_s)
    hold = np.clip(np.searchsorted(t, steps + 1e-9, side="right") - 1, 0, len(t) - 1)
    serving, at = a3_serving(trace.field[hold], params, step_s=step_s, initial=trace.first_column)
    # cell at the end of each sample's second, changes located in the sample they fall in
    sample_end = np.clip(np.searchsorted(steps, t + 1.0 - 1e-9, side="left") - 1, 0, steps.size - 1)
    predicted_cell = np.array(trace.cells, dtype=np.int64)[serving[sample_end]]
    predicted_changes = np.unique(np.clip(hold[at], 0, len(t) - 1))
    real = trace.real_cell
    real_changes = np.flatnonzero(real[1:] != real[:-1]) + 1
    matched = match_events(
        t[real_changes],
        t[predicted_changes],
        tolerance_s,
        real_xy=trace.xy_m[real_changes],
        predicted_xy=trace.xy_m[predicted_changes],
        tolerance_m=tolerance_m,
    )
    return CorkReplay(
        trace=trace.name,
        params=params,
        t_s=t,
        serving_rsrp_dbm=trace.rsrp_dbm,
        real_cell=real,
        predicted_cell=predicted_cell,
        real_changes=real_changes,
        predicted_changes=predicted_changes,
        tolerance_s=tolerance_s,
        matched=matched,
        mean_candidates=float(np.isfinite(trace.field).sum(axis=1).mean()),
        tolerance_m=tolerance_m,
    )


def replay_cork(
    trace_path: str | Path,
    reference_path: str | Path,
    *,
    trace: str | None = None,
    params: A3Params | None = None,
    radius_m: float = 50.0,
    tolerance_s: float = 5.0,
    tolerance_m: float = 100.0,
    network_modes: Sequence[str] = ("LTE", "5G"),
    step_s: float = DEFAULT_STEP_S,
) -> CorkReplay:
    """Replay A3 on a measured G-NetTrack trace (see module docstring).

    Parameters
    ----------
    trace_path : path
        G-NetTrack CSV or zip holding the trace to replay (held out from ``reference_path``).
    reference_path : path
        G-NetTrack traces that give the other cells' RSRP.
    trace : str, optional
        Trace name inside ``trace_path`` (default: the first).
    params : A3Params, optional
        A3 parameters (default 3 dB / 256 ms).
    radius_m : float
        Neighbourhood of a position in the reference traces.
    tolerance_s, tolerance_m : float
        A predicted change matches a real one within this time and this distance.
    network_modes : sequence of str
        Rows kept (LTE and 5G NSA rows carry LTE serving cells and RSRP).
    step_s : float
        Simulator step.

    Raises
    ------
    InvalidInputError
        Unreadable files, an unknown trace name, or a trace without serving cells.

    Examples
    --------
    >>> replay_cork("missing.zip", "missing.zip")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: missing.zip: file does not exist
    """
    params = params or A3Params()
    records = read_gnettrack(trace_path, network_id="cork", network_modes=network_modes)
    names = list(dict.fromkeys(records["drive_id"]))
    name = trace or names[0]
    if name not in names:
        raise InvalidInputError(
            f"{trace_path}: no trace {name!r}; traces: {', '.join(names)}", field="trace"
        )
    reference = read_gnettrack(reference_path, network_id="cork", network_modes=network_modes)
    prepared = cork_trace(
        records[records["drive_id"] == name],
        reference[reference["drive_id"] != name],
        radius_m=radius_m,
    )
    result = replay_trace(
        prepared, params, tolerance_s=tolerance_s, tolerance_m=tolerance_m, step_s=step_s
    )
    log.info(
        "cork replay %s: %d real vs %d A3 changes, %d matched",
        name,
        result.real_changes.size,
        result.predicted_changes.size,
        result.matched,
    )
    return result


# -- A3 calibrated on some Cork drives, reported on the others ------------------------------------

# Hysteresis and a3-Offset enter the model's entering condition as one sum (no leaving
# condition is modelled), so the grid runs over that sum and the time to trigger.
A3_GRID: tuple[A3Params, ...] = tuple(
    A3Params(hysteresis_db=h, ttt_s=t)
    for h in (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)
    for t in (0.0, 0.256, 0.64, 1.28)
)


def _counts(replays: Sequence[CorkReplay]) -> tuple[int, int, int]:
    return (
        sum(r.matched for r in replays),
        sum(r.predicted_changes.size for r in replays),
        sum(r.real_changes.size for r in replays),
    )


def _pr(matched: int, predicted: int, real: int) -> tuple[float, float, float]:
    precision = matched / predicted if predicted else 1.0
    recall = matched / real if real else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


@dataclass(frozen=True)
class CalibrationFold:
    """A3 chosen on the drives of the other groups, scored on this group's drives."""

    held_out: str  # group name
    traces: tuple[str, ...]
    chosen: A3Params
    train_f1: float
    counts: tuple[int, int, int]  # matched, predicted, real changes on the held-out drives
    default_counts: tuple[int, int, int]  # the same with the 3GPP default parameters

    @property
    def precision_recall(self) -> tuple[float, float]:
        """Held-out precision and recall of the chosen parameters."""
        return _pr(*self.counts)[:2]

    @property
    def default_precision_recall(self) -> tuple[float, float]:
        """Held-out precision and recall of the default parameters."""
        return _pr(*self.default_counts)[:2]


@dataclass(frozen=True)
class A3Calibration:
    """A3 parameters calibrated on some Cork drives and reported on the others (grouped)."""

    folds: tuple[CalibrationFold, ...]
    grid: tuple[A3Params, ...]
    tolerance_s: float
    tolerance_m: float
    default: A3Params

    def pooled(self, *, default: bool = False) -> tuple[float, float]:
        """Precision and recall over every held-out drive (the chosen or default params)."""
        c = [f.default_counts if default else f.counts for f in self.folds]
        return _pr(*(sum(x[i] for x in c) for i in range(3)))[:2]

    def table(self) -> pd.DataFrame:
        """One row per held-out group: chosen parameters and held-out figures."""
        rows = []
        for f in self.folds:
            p, r = f.precision_recall
            dp, dr = f.default_precision_recall
            rows.append(
                {
                    "held_out": f.held_out,
                    "drives": len(f.traces),
                    "chosen": f.chosen.label,
                    "train_f1": round(f.train_f1, 3),
                    "real_changes": f.counts[2],
                    "precision": round(p, 3),
                    "recall": round(r, 3),
                    "default_precision": round(dp, 3),
                    "default_recall": round(dr, 3),
                }
            )
        return pd.DataFrame(rows)

    def markdown(self) -> str:
        """The calibration as a Markdown section."""
        t = self.table()
        p, r = self.pooled()
        dp, dr = self.pooled(default=True)
        lines = [
            "## A3 against reality: calibrated on some Cork drives, scored on the others",
            "",
            f"Serving-cell changes matched within {self.tolerance_s:g} s and "
            f"{self.tolerance_m:g} m. Grid: {len(self.grid)} settings of hysteresis + offset "
            "(one sum in the entering condition) and time to trigger, chosen by F1 on the "
            "drives of the other group(s), never on the drives scored.",
            "",
            "| " + " | ".join(t.columns) + " |",
            "|" + "---|" * len(t.columns),
            *("| " + " | ".join(str(v) for v in row) + " |" for row in t.itertuples(index=False)),
            "",
            f"Pooled over the held-out drives: precision **{p:.2f}**, recall **{r:.2f}** "
            f"(3GPP default {self.default.label}: precision {dp:.2f}, recall {dr:.2f}).",
            "",
        ]
        return "\n".join(lines)


def cork_traces(
    paths: Sequence[str | Path],
    *,
    radius_m: float = 50.0,
    network_modes: Sequence[str] = ("LTE", "5G"),
) -> list[CorkTrace]:
    """Every trace of the G-NetTrack files, each with all the other traces as reference."""
    records = pd.concat(
        [read_gnettrack(p, network_id="cork", network_modes=network_modes) for p in paths],
        ignore_index=True,
    )
    names = sorted(dict.fromkeys(records["drive_id"].astype(str)))
    return [
        cork_trace(
            records[records["drive_id"] == n], records[records["drive_id"] != n], radius_m=radius_m
        )
        for n in names
    ]


def month_groups(traces: Sequence[CorkTrace]) -> dict[str, tuple[str, ...]]:
    """Traces grouped by the month in their G-NetTrack name (``B_2019.11.20_...`` -> 2019-11).

    Examples
    --------
    >>> t = [CorkTrace(n, *([np.zeros(0)] * 4), (), np.zeros((0, 0)), 0)
    ...      for n in ("B_2019.11.20_1", "B_2019.12.03_2", "B_2019.11.23_3")]
    >>> month_groups(t)
    {'2019-11': ('B_2019.11.20_1', 'B_2019.11.23_3'), '2019-12': ('B_2019.12.03_2',)}
    """
    groups: dict[str, list[str]] = {}
    for t in traces:
        parts = t.name.split("_")[1].split(".") if "_" in t.name else [t.name]
        key = "-".join(parts[:2]) if len(parts) >= 2 else t.name
        groups.setdefault(key, []).append(t.name)
    return {k: tuple(v) for k, v in sorted(groups.items())}


def calibrate_a3(
    traces: Sequence[CorkTrace],
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    grid: Sequence[A3Params] = A3_GRID,
    tolerance_s: float = 5.0,
    tolerance_m: float = 100.0,
    step_s: float = DEFAULT_STEP_S,
) -> A3Calibration:
    """Choose A3 parameters on some groups of drives and score them on the held-out group.

    For each group, the grid setting with the best F1 (pooled matched / predicted / real
    changes) on the drives of all the other groups is replayed on the group's drives.

    Raises
    ------
    InvalidInputError
        Fewer than two groups, or a group naming an unknown trace.
    """
    groups = dict(groups) if groups is not None else month_groups(traces)
    by_name = {t.name: t for t in traces}
    if len(groups) < 2:
        raise InvalidInputError("calibration needs at least two groups of drives", field="groups")
    for members in groups.values():
        for name in members:
            if name not in by_name:
                raise InvalidInputError(f"no trace {name!r} to calibrate on", field="groups")
    default = A3Params()
    settings = list(dict.fromkeys([*grid, default]))
    runs = {
        (name, p): replay_trace(
            by_name[name], p, tolerance_s=tolerance_s, tolerance_m=tolerance_m, step_s=step_s
        )
        for members in groups.values()
        for name in members
        for p in settings
    }
    folds = []
    for group, members in groups.items():
        train = [n for g, m in groups.items() if g != group for n in m]
        f1 = {p: _pr(*_counts([runs[(n, p)] for n in train]))[2] for p in grid}
        chosen = max(grid, key=lambda p: f1[p])  # the first of equals: the grid's order
        folds.append(
            CalibrationFold(
                held_out=group,
                traces=tuple(members),
                chosen=chosen,
                train_f1=f1[chosen],
                counts=_counts([runs[(n, chosen)] for n in members]),
                default_counts=_counts([runs[(n, default)] for n in members]),
            )
        )
        log.info("A3 calibration: held out %s, chose %s", group, chosen.label)
    return A3Calibration(tuple(folds), tuple(grid), tolerance_s, tolerance_m, default)


def calibrate_cork(traces: RealTraces, *, grid: Sequence[A3Params] = A3_GRID) -> A3Calibration:
    """:func:`calibrate_a3` on every Cork drive shipped (grouped by month)."""
    return calibrate_a3(cork_traces([traces.cork_trace, traces.cork_reference]), grid=grid)


# -- Starlink on the Autobahn ---------------------------------------------------------------------


def _zip_csv(path: Path, member: str, **kwargs: object) -> pd.DataFrame:
    if not path.is_file():
        raise InvalidInputError(f"{path}: file does not exist")
    try:
        with zipfile.ZipFile(path) as z:
            data = z.read(member)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise InvalidInputError(f"{path}: cannot read {member} ({exc})") from None
    try:
        return pd.read_csv(io.BytesIO(data), **kwargs)  # type: ignore[call-overload]
    except (ValueError, pd.errors.ParserError) as exc:
        raise InvalidInputError(f"{path}:{member}: not a readable CSV ({exc})") from None


def read_autobahn_throughput(path: str | Path) -> pd.DataFrame:
    """The Autobahn run: ``t_s`` (epoch s), ``lon``, ``lat``, ``download_mbps``; one row a second.

    Rows without a GPS fix are dropped, and of a repeated second the first is kept.

    Examples
    --------
    >>> read_autobahn_throughput("missing.zip")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: missing.zip: file does not exist
    """
    path = Path(path)
    raw = _zip_csv(path, "throughput.csv")
    need = ("timestamp_gmt_iphone", "Latitude", "Longitude", "download")
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise InvalidInputError(f"{path}: throughput.csv lacks columns {missing}")
    t = pd.to_datetime(raw["timestamp_gmt_iphone"], utc=True, errors="coerce")
    df = pd.DataFrame(
        {
            "t_s": (t - pd.Timestamp(0, tz="UTC")).dt.total_seconds(),
            "lon": pd.to_numeric(raw["Longitude"], errors="coerce"),
            "lat": pd.to_numeric(raw["Latitude"], errors="coerce"),
            "download_mbps": pd.to_numeric(raw["download"], errors="coerce"),
        }
    )
    df = df.dropna(subset=["t_s", "lon", "lat"]).sort_values("t_s", kind="stable")
    return df.drop_duplicates(subset="t_s", keep="first").reset_index(drop=True)


def read_autobahn_bridges(path: str | Path) -> list[LineString]:
    """Bridges over the route as lon/lat segments (``Start Koordinate`` -> ``End Koordinate``).

    Examples
    --------
    >>> read_autobahn_bridges("missing.zip")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: missing.zip: file does not exist
    """
    path = Path(path)
    raw = _zip_csv(path, "Bridges.csv", sep=";", decimal=",", thousands=".")
    lines = []
    for i, row in raw.iterrows():
        try:
            lat0, lon0 = (float(v) for v in str(row["Start Koordinate"]).split(","))
            lat1, lon1 = (float(v) for v in str(row["End Koordinate"]).split(","))
        except (KeyError, ValueError):
            raise InvalidInputError(
                f"{path}: Bridges.csv row {int(str(i)) + 2}: coordinates are not 'lat, lon'"
            ) from None
        lines.append(LineString([(lon0, lat0), (lon1, lat1)]))
    return lines


@dataclass(frozen=True)
class StarlinkBridges:
    """Bridge-blocked seconds vs measured zero-throughput seconds of the Autobahn run."""

    t_s: FloatArray
    lon: FloatArray
    lat: FloatArray
    download_mbps: FloatArray
    zero: BoolArray
    blocked: BoolArray
    tolerance_s: float
    contingency: tuple[tuple[int, int], tuple[int, int]]  # [blocked, open] x [zero, > 0]
    passages: int  # contiguous blocked stretches
    passages_confirmed: int  # ... with a zero second within the tolerance
    outages: int  # contiguous zero-throughput stretches
    outages_explained: int  # ... with a blocked second within the tolerance
    bridges: int
    dip_share_blocked: float  # blocked seconds with downlink < half the 21 s rolling median
    dip_share_open: float  # the same share for the other seconds

    @property
    def precision(self) -> float:
        """Bridge passages that show an outage, among all passages."""
        return self.passages_confirmed / self.passages if self.passages else float("nan")

    @property
    def recall(self) -> float:
        """Outages explained by a bridge passage, among all outages."""
        return self.outages_explained / self.outages if self.outages else float("nan")


def _pieces(t_s: FloatArray, max_gap_s: float) -> list[slice]:
    breaks = np.flatnonzero(np.diff(t_s) > max_gap_s) + 1
    edges = np.concatenate(([0], breaks, [t_s.size]))
    return [slice(a, b) for a, b in itertools.pairwise(edges.tolist()) if b - a >= 2]


def _blocked_piece(
    lon: FloatArray,
    lat: FloatArray,
    t_s: FloatArray,
    bridges: Sequence[LineString],
    segment_m: float,
    under_bridge_m: float,
) -> BoolArray:
    """``under_bridge`` of the corridor segment each sample falls in."""
    _, _, leg_m = GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
    if not (np.asarray(leg_m) > 1e-6).any():
        return np.zeros(lon.size, dtype=bool)
    route = route_from_polyline(lon, lat, t_s=t_s)
    corridor = cut(
        route,
        segment_m=segment_m,
        departure_s=float(t_s[0]),
        overpasses=bridges,
        under_bridge_m=under_bridge_m,
    )
    distance = np.concatenate(([0.0], np.cumsum(leg_m)))
    seg = np.clip(
        np.searchsorted(corridor.distance_m, distance, side="right") - 1, 0, len(corridor) - 1
    )
    return np.asarray(corridor.under_bridge, dtype=bool)[seg]


def _share(values: BoolArray, among: BoolArray) -> float:
    return float(values[among].mean()) if among.any() else float("nan")


def _runs(mask: BoolArray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _near(runs: list[tuple[int, int]], t_s: FloatArray, other: BoolArray, tol_s: float) -> int:
    """Runs with a True of ``other`` within ``tol_s`` of their time span."""
    other_t = t_s[other]
    count = 0
    for a, b in runs:
        lo, hi = t_s[a] - tol_s, t_s[b - 1] + tol_s
        i = np.searchsorted(other_t, lo, side="left")
        if i < other_t.size and other_t[i] <= hi:
            count += 1
    return count


def starlink_bridges(
    throughput_zip: str | Path,
    bridges_zip: str | Path,
    *,
    zero_mbps: float = 0.1,
    segment_m: float = 50.0,
    under_bridge_m: float = 10.0,
    tolerance_s: float = 2.0,
    max_gap_s: float = 10.0,
) -> StarlinkBridges:
    """Do the layer's bridge-blocked positions coincide with measured zero throughput?

    Parameters
    ----------
    throughput_zip, bridges_zip : path
        ``throughput.zip`` and ``Bridges.zip`` of the Starlink-on-the-Autobahn data set.
    zero_mbps : float
        A second below this downlink rate is a zero-throughput second.
    segment_m, under_bridge_m : float
        Corridor segment length and the "under a bridge" distance (the map's defaults).
    tolerance_s : float
        Time tolerance of the event comparison (GPS and iperf intervals are not aligned).
    max_gap_s : float
        The run is split where the log pauses longer than this.

    Examples
    --------
    >>> starlink_bridges("missing.zip", "missing.zip")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: missing.zip: file does not exist
    """
    run = read_autobahn_throughput(throughput_zip)
    bridges = read_autobahn_bridges(bridges_zip)
    t = run["t_s"].to_numpy(dtype=np.float64)
    lon = run["lon"].to_numpy(dtype=np.float64)
    lat = run["lat"].to_numpy(dtype=np.float64)
    blocked = np.zeros(t.size, dtype=bool)
    for part in _pieces(t, max_gap_s):
        blocked[part] = _blocked_piece(
            lon[part], lat[part], t[part], bridges, segment_m, under_bridge_m
        )
    download = run["download_mbps"].to_numpy(dtype=np.float64)
    measured = np.isfinite(download)
    zero = measured & (download < zero_mbps)
    b, z = blocked[measured], zero[measured]
    table = ((int((b & z).sum()), int((b & ~z).sum())), (int((~b & z).sum()), int((~b & ~z).sum())))
    passages, outages = _runs(blocked), _runs(zero)
    local = pd.Series(download).rolling(21, center=True, min_periods=5).median().to_numpy()
    dip = measured & (download < 0.5 * local)
    result = StarlinkBridges(
        t_s=t,
        lon=lon,
        lat=lat,
        download_mbps=download,
        zero=zero,
        blocked=blocked,
        tolerance_s=tolerance_s,
        contingency=table,
        passages=len(passages),
        passages_confirmed=_near(passages, t, zero, tolerance_s),
        outages=len(outages),
        outages_explained=_near(outages, t, blocked, tolerance_s),
        bridges=len(bridges),
        dip_share_blocked=_share(dip, blocked & measured),
        dip_share_open=_share(dip, ~blocked & measured),
    )
    log.info(
        "starlink bridges: %d passages (%d with an outage), %d outages (%d at a bridge)",
        result.passages,
        result.passages_confirmed,
        result.outages,
        result.outages_explained,
    )
    return result


@dataclass(frozen=True)
class RealTraces:
    """Where the real traces are (files in the repository, never downloaded).

    Attributes
    ----------
    cork_trace : G-NetTrack zip with the held-out drive test to replay.
    cork_reference : G-NetTrack zip of the other drives (neighbour cells' RSRP).
    autobahn_dir : folder with ``throughput.zip`` and ``Bridges.zip``.
    """

    cork_trace: Path
    cork_reference: Path
    autobahn_dir: Path

    @classmethod
    def in_repository(cls, root: str | Path) -> RealTraces:
        """The copies shipped with commap (``tests/data``, ``maps/cork/data``) under ``root``.

        Examples
        --------
        >>> RealTraces.in_repository("/repo").autobahn_dir.as_posix()
        '/repo/tests/data/starlink_autobahn'
        """
        base = Path(root)
        return cls(
            cork_trace=base / "tests" / "data" / "measured" / "ucc5g_cork_heldout.zip",
            cork_reference=base / "maps" / "cork" / "data" / "ucc5g_cork_driving.zip",
            autobahn_dir=base / "tests" / "data" / "starlink_autobahn",
        )


def run_replays(traces: RealTraces) -> tuple[CorkReplay, StarlinkBridges]:
    """Both replays with their default parameters.

    Examples
    --------
    >>> run_replays(RealTraces.in_repository("/nowhere"))
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: /nowhere/tests/data/measured/ucc5g_cork_heldout.zip: file does not exist
    """
    cork = replay_cork(traces.cork_trace, traces.cork_reference)
    sky = starlink_bridges(
        traces.autobahn_dir / "throughput.zip", traces.autobahn_dir / "Bridges.zip"
    )
    return cork, sky
