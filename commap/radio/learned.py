"""The learned coverage map: a predictive distribution of each KPI anywhere, ``unknown`` far from data.

Where the measured layer (:mod:`commap.radio.layers.measured`) answers "no signal" wherever it
has no sample, a learned model answers everywhere with a distribution: the 10th, 50th and 90th
percentile of the KPI and the probability of an outage, plus how much evidence lies near and
whether the point is ``unknown`` (no training record within :data:`UNKNOWN_BEYOND_M`), in which
case the answer is the network-wide prior, never a no-signal value.

The estimator (``shrink``: the winner of the comparison written up in ``docs/learned-map.md``)
---------------------------------------------------------------------------------------------
For every query point, the training records of the network within three discs (by default
50, 150 and 500 m, at most 32/48/64 records each) form three empirical distributions. Evidence
is counted in *drives*, not rows: a record weighs ``1 / (its drive's records in the disc)``, so
``n`` is the number of distinct drives (passes) in the disc; inside a disc the weights taper with
distance (``1 / (1 + (d / (DISC_TAPER r))^2)``, rescaled to add up to ``n``), so the nearest
records shape the distribution. The discs are blended from the finest down toward the
network-wide prior (51 quantile atoms of every training value)::

    a1 = n1 / (n1 + k)        a2 = (1 - a1) n2 / (n2 + k)        a3 = (1 - a1 - a2) n3 / (n3 + k)
    predictive = a1 Emp(50 m) + a2 Emp(150 m) + a3 Emp(500 m) + (1 - a1 - a2 - a3) Prior

and ``p50`` is the median of that weighted mixture; ``p10`` and ``p90`` are quantiles of the
same mixture with its own, stronger shrinkage ``k_tails >= k``; ``P(outage)`` is the same
cascade of the discs' outage rates (with its own ``k_outage >= k``) over the network's outage
rate, then recalibrated. With little nearby evidence the prior dominates, so the model is never much
worse than the network-wide constant, and it moves to the local distribution where drives agree.

Where the records carry times and the inner cross-validation finds that it helps (RSRQ, which
falls with cell load), the model also weighs the *time of day*: a record ``dt`` hours of the day
from the query's time counts ``1 / (1 + (dt / 3 h)^2)`` times as much in every disc (a drive at
another time is a fraction of a drive of evidence), and the prior is the network's at the
query's hour (:meth:`KpiModel.predict` with ``t_s``; without it every time of day counts alike).

Fitting runs an inner cross-validation on the training records only (grouped by drive, by
10-minute pass, or by 300 m block for gridded data) to (i) choose the disc radii and ``k``
(pinball loss), then whether to weigh the time of day (only if the pinball loss it saves
over the inner folds passes a one-sided paired t test at 90 %, :func:`clear_gain`), (ii)
choose ``k_outage`` from ``k`` up to 1000 (Brier score; 0/1 outcomes are noisier than
values, so P(outage) may lean on the prior harder, never less), (iii) choose ``k_tails``
from ``k`` up to 1000: the strongest shrinkage whose pinball loss at the 10th and 90th
percentiles is within one standard error (over inner folds) of the least (tails rest on a few
extreme values), (iv) recalibrate the quantile levels so that [p10, p90] covers 80 % of
held-out values (levels from the out-of-fold mixture CDF at the observed values: ``P(X <= y)``
for p10, ``P(X < y)`` for p90, which is exact when values tie, e.g. zero rates) and (v)
recalibrate ``P(outage)`` by Platt scaling of the out-of-fold probabilities (two parameters,
increasing; an uninformative local rate maps to the network rate). Ties between candidates go
to the stronger shrinkage.

Records
-------
A pandas DataFrame with ``lon``, ``lat`` (WGS84 degrees), ``network_id``, optionally
``timestamp`` (UTC) and ``drive_id``, and KPI columns named as in :data:`KPIS`. Today's record
names are accepted too (:func:`normalise_records`: ``throughput_mbps`` is the downlink rate,
``trace`` the drive).

Examples
--------
>>> import pandas as pd
>>> records = pd.DataFrame({"lon": [-8.47, -8.4701, -8.4702], "lat": [51.89] * 3,
...                         "network_id": "b", "drive_id": ["d1", "d2", "d3"],
...                         "rsrp_dbm": [-90.0, -92.0, -95.0]})
>>> model = fit_kpi(records, kpi="rsrp_dbm")
>>> p = model.predict([-8.4701, 0.0], [51.89, 0.0])
>>> p.unknown.tolist(), p.n_drives_near.tolist()
([False, True], [3.0, 0.0])
>>> bool(p.p10[0] <= p.p50[0] <= p.p90[0])
True
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree
from scipy.special import stdtrit

from commap.errors import InvalidInputError
from commap.files import atomic_path
from commap.geo.geodesy import to_local_m

__all__ = [
    "ADOPT_CONFIDENCE",
    "DEFAULT_RADII_M",
    "DISC_TAPER",
    "KPIS",
    "LEVELS",
    "MIN_PROBABILITY",
    "OUTAGE_SHRINK_GRID",
    "RADII_CANDIDATES_M",
    "SHRINK_GRID",
    "TIME_SCALE_GRID_H",
    "UNKNOWN_BEYOND_M",
    "Kpi",
    "KpiModel",
    "KpiPrediction",
    "LearnedNetwork",
    "OutageRule",
    "clear_gain",
    "evidence_units",
    "fit_kpi",
    "fit_network",
    "group_folds",
    "kpi_rows",
    "normalise_records",
    "spatial_blocks",
]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

LEVELS: tuple[float, float, float] = (0.1, 0.5, 0.9)
DEFAULT_RADII_M: tuple[float, float, float] = (50.0, 150.0, 500.0)
# disc radii the inner cross-validation chooses from (the default first: it wins ties)
RADII_CANDIDATES_M: tuple[tuple[float, float, float], ...] = (
    DEFAULT_RADII_M,
    (100.0, 300.0, 1000.0),
)
MAX_NEIGHBOURS: tuple[int, int, int] = (32, 48, 64)
UNKNOWN_BEYOND_M = 300.0
# a record at distance d in a disc of radius r weighs 1 / (1 + (d / (DISC_TAPER r))^2)
DISC_TAPER = 0.25
PASS_MINUTES = 10.0
BLOCK_M = 300.0
PRIOR_ATOMS = 51
SHRINK_GRID = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
# P(outage) may lean on the prior harder than the quantiles: 0/1 outcomes are noisier
OUTAGE_SHRINK_GRID = (*SHRINK_GRID, 200.0, 500.0, 1000.0)
MIN_PROBABILITY = 1e-3
# widths (hours) of the time-of-day kernel the inner cross-validation chooses from; inf = off
TIME_SCALE_GRID_H = (np.inf, 3.0)
# an option the inner cross-validation may add (the time-of-day kernel) must show its gain over
# the inner folds at this one-sided confidence (paired Student t test, see clear_gain)
ADOPT_CONFIDENCE = 0.90
_DAY_S = 86_400.0
_MIN_OUTCOMES = 10  # outages and non-outages needed to recalibrate P(outage)
_INNER_FOLDS = 5
_INNER_MAX_ROWS = 40_000
_CHUNK = 20_000


# ---------------------------------------------------------------------------------------------
# KPIs and their outage rules
# ---------------------------------------------------------------------------------------------
_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}


@dataclass(frozen=True)
class OutageRule:
    """When a KPI value counts as an outage: ``value <op> threshold``.

    Parameters
    ----------
    op : one of ``<``, ``<=``, ``>``, ``>=``, ``==``.
    threshold : in the KPI's unit (``connected``: 0 for False).

    Examples
    --------
    >>> rule = OutageRule("<", -5.0)
    >>> rule([-8.0, 3.0, float("nan")]).tolist()
    [1.0, 0.0, nan]
    >>> str(rule)
    '< -5'
    >>> rule([]).shape
    (0,)
    >>> OutageRule("~", 1.0)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: outage rule: operator '~' must be one of <, <=, >, >=, ==
    """

    op: str
    threshold: float

    def __post_init__(self) -> None:
        if self.op not in _OPERATORS:
            raise InvalidInputError(
                f"outage rule: operator {self.op!r} must be one of {', '.join(_OPERATORS)}",
                field="outage",
            )
        if not np.isfinite(self.threshold):
            raise InvalidInputError("outage rule: threshold must be finite", field="outage")

    def __call__(self, values: ArrayLike) -> FloatArray:
        """1.0 where a value is an outage, 0.0 where not, NaN where the value is missing."""
        v = np.atleast_1d(np.asarray(values, dtype=np.float64))
        hit = _OPERATORS[self.op](v, self.threshold).astype(np.float64)
        return np.where(np.isnan(v), np.nan, hit)

    def __str__(self) -> str:
        return f"{self.op} {self.threshold:g}"


@dataclass(frozen=True)
class Kpi:
    """A key performance indicator a learned map predicts.

    Attributes
    ----------
    name : record column (with its unit).
    unit : unit of the values.
    description : what is measured.
    outage : default outage rule.
    why : where the outage threshold comes from.
    """

    name: str
    unit: str
    description: str
    outage: OutageRule
    why: str


KPIS: Mapping[str, Kpi] = {
    k.name: k
    for k in (
        Kpi(
            "sinr_db",
            "dB",
            "serving-cell SINR (or SNR)",
            OutageRule("<", -5.0),
            "Qout: below about -5 dB the UE's radio link monitoring declares out of sync "
            "(3GPP TS 36.133 section 7.6; commap.radio.quality.QOUT_SINR_DB)",
        ),
        Kpi(
            "rsrp_dbm",
            "dBm",
            "serving-cell RSRP",
            OutageRule("<", -115.0),
            "cell edge: operators plan LTE coverage to about -115 dBm RSRP (indoor-loss free "
            "outdoor edge); below it attach and handover fail often",
        ),
        Kpi(
            "rsrq_db",
            "dB",
            "serving-cell RSRQ",
            OutageRule("<", -16.0),
            "heavy load or interference: below about -16 dB RSRQ throughput collapses and "
            "handovers fail (the weak-second rule of the Hamburg - Bremen drive tests)",
        ),
        Kpi(
            "throughput_dl_mbps",
            "Mbit/s",
            "downlink rate",
            OutageRule("<=", 0.5),
            "a 0.5 Mbit/s floor: less cannot carry a low-rate video or a teleoperation feed",
        ),
        Kpi(
            "throughput_ul_mbps",
            "Mbit/s",
            "uplink rate",
            OutageRule("<=", 0.5),
            "as the downlink: less than 0.5 Mbit/s cannot carry a camera feed",
        ),
        Kpi(
            "rtt_ms",
            "ms",
            "round-trip time",
            OutageRule(">", 1000.0),
            "commap's convention: no standard defines an RTT outage; above one second "
            "interactive applications and remote driving stop (TCP's initial RTO is 1 s, "
            "RFC 6298)",
        ),
        Kpi(
            "connected",
            "",
            "the UE had a serving cell (1 true, 0 false)",
            OutageRule("==", 0.0),
            "no serving cell is an outage by definition",
        ),
    )
}


def _kpi(name: str) -> Kpi:
    if name not in KPIS:
        raise InvalidInputError(f"unknown KPI {name!r}; known KPIs: {', '.join(KPIS)}", field="kpi")
    return KPIS[name]


# ---------------------------------------------------------------------------------------------
# records, groups and folds
# ---------------------------------------------------------------------------------------------
_RENAMES = {"throughput_mbps": "throughput_dl_mbps", "trace": "drive_id"}


def normalise_records(records: pd.DataFrame) -> pd.DataFrame:
    """Records with today's column names mapped to the learned map's.

    ``throughput_mbps`` becomes ``throughput_dl_mbps`` and ``trace`` becomes ``drive_id``
    (unless those columns exist already); ``connected`` becomes 1.0/0.0 (NaN when unknown).

    Examples
    --------
    >>> df = pd.DataFrame({"lon": [1.0], "lat": [2.0], "throughput_mbps": [3.0],
    ...                    "trace": ["t"], "connected": [True]})
    >>> sorted(normalise_records(df).columns)
    ['connected', 'drive_id', 'lat', 'lon', 'throughput_dl_mbps']
    >>> len(normalise_records(df.iloc[:0]))
    0
    """
    out = records.copy()
    for old, new in _RENAMES.items():
        if old in out and new not in out:
            out = out.rename(columns={old: new})
    if "connected" in out:
        out["connected"] = out["connected"].astype("Float64").astype(np.float64)
    return out


def kpi_rows(records: pd.DataFrame, kpi: str) -> pd.DataFrame:
    """The records that carry a finite value of ``kpi`` (fresh index).

    Examples
    --------
    >>> kpi_rows(pd.DataFrame({"lon": [0.0, 0.0], "lat": [0.0, 0.0],
    ...                        "sinr_db": [1.0, None]}), "sinr_db")["sinr_db"].tolist()
    [1.0]
    >>> len(kpi_rows(pd.DataFrame({"lon": [0.0], "lat": [0.0]}), "sinr_db"))
    0
    """
    _kpi(kpi)
    if kpi not in records:
        return records.iloc[:0].reset_index(drop=True)
    values = pd.to_numeric(records[kpi], errors="coerce").astype(np.float64)
    keep = np.isfinite(values.to_numpy()) & np.isfinite(records["lon"].to_numpy(np.float64))
    return records[keep].reset_index(drop=True)


def _codes(values: Any) -> IntArray:
    codes, _ = pd.factorize(pd.Series(values).astype(str), sort=False)
    return np.asarray(codes, dtype=np.int64)


def _epoch_s(timestamps: pd.Series) -> FloatArray:
    """Seconds since 1970 of timestamps of any resolution (naive ones are UTC)."""
    t = pd.to_datetime(timestamps, utc=True)
    seconds = (t - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return np.asarray(seconds, dtype=np.float64)


def evidence_units(
    records: pd.DataFrame,
    *,
    group_column: str = "drive_id",
    pass_minutes: float | None = PASS_MINUTES,
) -> IntArray:
    """The unit of evidence of each record: its drive, cut into passes of ``pass_minutes``.

    The drive is ``group_column`` where the records have it, else the UTC day of
    ``timestamp``; records without either (gridded squares) are each their own unit. With
    timestamps, a drive is cut into ``pass_minutes`` blocks, so a road driven out and back, or
    twice in one drive, counts as separate passes.

    Returns
    -------
    ndarray of int64
        A code per record; equal codes are one unit.

    Examples
    --------
    >>> t = pd.to_datetime(["2021-09-13T10:00Z", "2021-09-13T10:05Z", "2021-09-13T10:30Z"])
    >>> df = pd.DataFrame({"lon": [0.0] * 3, "lat": [0.0] * 3, "timestamp": t})
    >>> evidence_units(df).tolist()
    [0, 0, 1]
    >>> evidence_units(df, pass_minutes=None).tolist()
    [0, 0, 0]
    >>> evidence_units(df.drop(columns="timestamp")).tolist()
    [0, 1, 2]
    >>> evidence_units(df.iloc[:0]).tolist()
    []
    """
    n = len(records)
    has_time = "timestamp" in records and records["timestamp"].notna().all()
    if group_column in records and records[group_column].notna().all():
        base = records[group_column].astype(str).to_numpy()
    elif has_time:
        base = pd.to_datetime(records["timestamp"], utc=True).dt.strftime("%Y-%m-%d").to_numpy()
    else:
        return np.arange(n, dtype=np.int64)
    if has_time and pass_minutes is not None and n:
        t_s = _epoch_s(records["timestamp"])
        block = np.floor(t_s / (pass_minutes * 60.0)).astype(np.int64)
        return _codes(pd.Series(base).str.cat(block.astype(str), sep="/"))
    return _codes(base)


def spatial_blocks(lon: ArrayLike, lat: ArrayLike, *, block_m: float = BLOCK_M) -> IntArray:
    """Square blocks of ``block_m`` metres (local projection) holding each point.

    Examples
    --------
    >>> spatial_blocks([-86.150, -86.1501, -86.10], [39.77, 39.77, 39.77]).tolist()
    [0, 0, 1]
    >>> spatial_blocks([], []).tolist()
    []
    """
    if not block_m > 0:
        raise InvalidInputError("block size must be > 0 m", field="block_m")
    lon_a = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    lat_a = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    if lon_a.size == 0:
        return np.zeros(0, dtype=np.int64)
    x, y = to_local_m(lon_a, lat_a, lat0=float(np.mean(lat_a)))
    bx = np.floor(x / block_m).astype(np.int64)
    by = np.floor(y / block_m).astype(np.int64)
    return _codes(pd.Series(bx.astype(str)).str.cat(by.astype(str), sep=","))


def group_folds(
    groups: ArrayLike, *, folds: int = 5, seed: int = 0
) -> list[tuple[IntArray, IntArray]]:
    """Split rows into ``folds`` (train, test) index pairs; a group never straddles two folds.

    Groups go to folds at random (``seed``), the largest first, each to the fold holding the
    fewest rows so far, so folds are about equal in size. Fewer groups than folds give one fold
    per group.

    Examples
    --------
    >>> [test.tolist() for _, test in group_folds(["a", "a", "b", "c"], folds=2)]
    [[0, 1], [2, 3]]
    >>> group_folds([], folds=3)
    []
    """
    if folds < 2:
        raise InvalidInputError("folds must be >= 2", field="folds")
    codes = _codes(np.asarray(groups).astype(str)) if np.size(groups) else np.zeros(0, np.int64)
    if codes.size == 0:
        return []
    counts = np.bincount(codes)
    k = min(folds, counts.size)
    order = np.random.default_rng(seed).permutation(counts.size)
    order = order[np.argsort(-counts[order], kind="stable")]
    load = np.zeros(k)
    fold_of = np.empty(counts.size, dtype=np.int64)
    for g in order:
        f = int(np.argmin(load))
        fold_of[g] = f
        load[f] += counts[g]
    fold = fold_of[codes]
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def _inner_groups(records: pd.DataFrame, units: IntArray, group_column: str) -> IntArray:
    """Groups of the inner cross-validation: drives, else passes, else 300 m blocks."""
    if group_column in records and records[group_column].notna().all():
        drives = _codes(records[group_column])
        if np.unique(drives).size >= _INNER_FOLDS:
            return drives
    if np.unique(units).size >= _INNER_FOLDS and np.unique(units).size < len(units):
        return units
    return spatial_blocks(records["lon"], records["lat"])


# ---------------------------------------------------------------------------------------------
# predictions
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class KpiPrediction:
    """A KPI's predictive distribution at query points (one entry per point).

    Attributes
    ----------
    p10, p50, p90 : percentiles of the KPI (its unit).
    p_outage : probability that the KPI is an outage under the model's rule.
    n_drives_near : distinct drives (passes) with a record within the finest disc.
    distance_m : distance to the nearest training record.
    unknown : no training record within the model's unknown radius: the values are the
        network-wide prior.
    """

    p10: FloatArray
    p50: FloatArray
    p90: FloatArray
    p_outage: FloatArray
    n_drives_near: FloatArray
    distance_m: FloatArray
    unknown: NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.p50.shape[0])

    def to_frame(self) -> pd.DataFrame:
        """One row per point, one column per attribute."""
        return pd.DataFrame({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def concat(cls, parts: Sequence[KpiPrediction]) -> KpiPrediction:
        """Predictions of several point sets, one after the other."""
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )


def _points(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    lon_a = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    lat_a = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    if lon_a.shape != lat_a.shape or lon_a.ndim != 1:
        raise InvalidInputError("lon and lat must be 1-D arrays of the same length")
    if not (np.isfinite(lon_a).all() and np.isfinite(lat_a).all()):
        raise InvalidInputError("lon and lat must be finite")
    return lon_a, lat_a


# ---------------------------------------------------------------------------------------------
# neighbourhoods and weighted mixtures
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Neighbourhood:
    """The atoms of the predictive mixture at Q query points, sorted by value per point.

    ``level`` says where an atom comes from (0..L-1: disc, L: prior); ``base`` is its weight
    inside its level (1 / drive multiplicity for records, 1 / atoms for the prior), so the
    mixture weight of an atom is ``coefficient[level] * base / n[level]``.
    """

    values: FloatArray  # (Q, A), sorted; +inf for empty slots (weight 0)
    level: IntArray  # (Q, A), flat: row * (L + 1) + level, an index into a raveled (Q, L + 1)
    base: FloatArray  # (Q, A)
    n: FloatArray  # (Q, L) distinct drives per disc
    rate: FloatArray  # (Q, L) drive-weighted outage rate per disc
    nearest_m: FloatArray  # (Q,)
    prior_rate: FloatArray  # (Q,) the prior's outage rate


@dataclass(frozen=True, eq=False)
class _TimeOfDay:
    """A time-of-day kernel: how much each training record weighs for each query point.

    Cell load, and with it interference, follows the day: a record taken at another time of
    day than the query's says less about the query. The weight of a record ``dt`` hours of the
    day away (the shorter way round the clock) is ``1 / (1 + (dt / scale_h)^2)``.

    Examples
    --------
    >>> when = _TimeOfDay(np.array([7.0, 19.0]) * 3600.0, np.array([8.0]) * 3600.0, 1.0)
    >>> when.weights(np.array([[0, 1]])).round(3).tolist()
    [[0.5, 0.008]]
    """

    record_s: FloatArray  # seconds of the UTC day of each training record
    query_s: FloatArray  # seconds of the UTC day of each query point
    scale_h: float

    def weights(self, records: IntArray) -> FloatArray:
        """Kernel weights of ``records`` (Q, K indices into the training records)."""
        gap_s = np.abs(self.record_s[records] - self.query_s[:, None]) % _DAY_S
        gap_h = np.minimum(gap_s, _DAY_S - gap_s) / 3600.0
        result: FloatArray = 1.0 / (1.0 + (gap_h / self.scale_h) ** 2)
        return result


def _timed_prior(
    values: FloatArray, labels: FloatArray, record_s: FloatArray, scale_h: float
) -> tuple[FloatArray, FloatArray]:
    """The network-wide prior per hour of the UTC day: (24, atoms) quantiles and (24,) rates.

    The prior of hour ``h`` weighs every record by the time-of-day kernel at ``h:30``: the
    quantile atoms are weighted quantiles of all values, the rate the weighted outage rate.
    """
    order = np.argsort(values, kind="stable")
    sorted_values, sorted_labels = values[order], labels[order]
    everyone = np.arange(values.shape[0])[None, :]
    levels = (np.arange(PRIOR_ATOMS) + 0.5) / PRIOR_ATOMS
    atoms = np.empty((24, PRIOR_ATOMS))
    rates = np.empty(24)
    for hour in range(24):
        centre_s = np.array([hour * 3600.0 + 1800.0])
        weights = _TimeOfDay(record_s[order], centre_s, scale_h).weights(everyone)[0]
        cumulative = np.cumsum(weights) / weights.sum()
        index = np.minimum(np.searchsorted(cumulative, levels), values.shape[0] - 1)
        atoms[hour] = sorted_values[index]
        rates[hour] = float(weights @ sorted_labels / weights.sum())
    return atoms, rates


def _seconds_of_day(t_s: FloatArray) -> FloatArray:
    result: FloatArray = np.mod(t_s, _DAY_S)
    return result


def _disc(
    tree: cKDTree,
    xy: FloatArray,
    values: FloatArray,
    labels: FloatArray,
    units: IntArray,
    radius_m: float,
    max_records: int,
    when: _TimeOfDay | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Values and weights of the records within ``radius_m`` (padded with inf / 0).

    A record weighs 1 / (its drive's records in the disc), tapered by distance
    (:data:`DISC_TAPER`) and rescaled so that the weights add up to ``n``, the drives in the
    disc: nearer records shape the distribution, every drive counts once as evidence. With a
    time-of-day kernel (``when``), a record also weighs its kernel weight, so ``n`` counts a
    drive at another time of day as a fraction of a drive.
    """
    q = xy.shape[0]
    k = min(max_records, values.shape[0])
    dist, idx = tree.query(xy, k=k, distance_upper_bound=radius_m)
    dist, idx = dist.reshape(q, k), idx.reshape(q, k)
    ok = np.isfinite(dist)
    safe = np.where(ok, idx, 0)
    # one drive = one unit of evidence: weight 1 / (its records in this disc)
    key = np.where(ok, units[safe], -1) + np.arange(q, dtype=np.int64)[:, None] * (
        int(units.max()) + 2
    )
    _, inverse, counts = np.unique(key.ravel(), return_inverse=True, return_counts=True)
    weight = np.where(ok, 1.0 / counts[inverse].reshape(q, k), 0.0)
    if when is not None:
        weight = weight * when.weights(safe)
    n = weight.sum(axis=1)
    # nearer records weigh more inside the disc; the disc's total weight stays its drive count
    taper = 1.0 / (1.0 + (np.where(ok, dist, 0.0) / (DISC_TAPER * radius_m)) ** 2)
    weight = weight * taper
    weight *= (n / np.maximum(weight.sum(axis=1), 1e-12))[:, None]
    rate = (np.where(ok, labels[safe], 0.0) * weight).sum(axis=1) / np.maximum(n, 1e-12)
    return np.where(ok, values[safe], np.inf), weight, n, rate


def _neighbourhood(
    tree: cKDTree,
    xy: FloatArray,
    values: FloatArray,
    labels: FloatArray,
    units: IntArray,
    prior_atoms: FloatArray,
    prior_rate: FloatArray,
    radii_m: Sequence[float],
    max_neighbours: Sequence[int],
    when: _TimeOfDay | None = None,
) -> _Neighbourhood:
    """The mixture's atoms at the points; ``prior_atoms`` (Q, M) and ``prior_rate`` (Q,)."""
    q = xy.shape[0]
    parts_v, parts_w, parts_l, ns, rates = [], [], [], [], []
    for level, (radius, cap) in enumerate(zip(radii_m, max_neighbours, strict=True)):
        v, w, n, rate = _disc(tree, xy, values, labels, units, radius, cap, when)
        parts_v.append(v)
        parts_w.append(w)
        parts_l.append(np.full(v.shape, level, dtype=np.int64))
        ns.append(n)
        rates.append(rate)
    m = prior_atoms.shape[1]
    parts_v.append(prior_atoms)
    parts_w.append(np.full((q, m), 1.0 / m))
    parts_l.append(np.full((q, m), len(radii_m), dtype=np.int64))
    values_a = np.concatenate(parts_v, axis=1)
    order = np.argsort(values_a, axis=1, kind="stable")
    nearest, _ = tree.query(xy, k=1)
    return _Neighbourhood(
        values=np.take_along_axis(values_a, order, axis=1),
        level=np.take_along_axis(np.concatenate(parts_l, axis=1), order, axis=1)
        + np.arange(q, dtype=np.int64)[:, None] * (len(radii_m) + 1),
        base=np.take_along_axis(np.concatenate(parts_w, axis=1), order, axis=1),
        n=np.column_stack(ns),
        rate=np.column_stack(rates),
        nearest_m=np.asarray(nearest, dtype=np.float64).reshape(q),
        prior_rate=prior_rate,
    )


def _cascade(n: FloatArray, k: float) -> FloatArray:
    """Mixture coefficients of the discs (finest first) and, last, of the prior: (Q, L + 1)."""
    rest = np.ones(n.shape[0])
    coefficients = []
    for level in range(n.shape[1]):
        a = rest * n[:, level] / (n[:, level] + k)
        coefficients.append(a)
        rest = rest - a
    coefficients.append(rest)
    return np.column_stack(coefficients)


def _weights(hood: _Neighbourhood, k: float) -> FloatArray:
    coefficient = _cascade(hood.n, k)
    per_unit = coefficient / np.concatenate(
        [np.maximum(hood.n, 1e-12), np.ones((len(hood.n), 1))], 1
    )
    result: FloatArray = hood.base * np.take(per_unit.ravel(), hood.level)
    return result


def _mixture_quantiles(hood: _Neighbourhood, k: float, levels: Sequence[float]) -> FloatArray:
    w = _weights(hood, k)
    cumulative = np.cumsum(w, axis=1)
    cumulative /= cumulative[:, -1:]
    last = hood.values.shape[1] - 1
    out = np.empty((w.shape[0], len(levels)))
    for j, level in enumerate(levels):
        idx = np.minimum((cumulative < level - 1e-12).sum(axis=1), last)
        out[:, j] = np.take_along_axis(hood.values, idx[:, None], axis=1)[:, 0]
    return out


def _mixture_pit(hood: _Neighbourhood, k: float, y: FloatArray) -> FloatArray:
    """The mixture's CDF at the observed values (ties count half)."""
    w = _weights(hood, k)
    below = (w * (hood.values < y[:, None])).sum(axis=1)
    equal = (w * (hood.values == y[:, None])).sum(axis=1)
    result: FloatArray = (below + 0.5 * equal) / w.sum(axis=1)
    return result


def _mixture_cdf(hood: _Neighbourhood, k: float, y: FloatArray, *, inclusive: bool) -> FloatArray:
    """The mixture's CDF at the observed values: ``P(X <= y)`` or ``P(X < y)``.

    ``p10 <= y`` holds exactly when ``P(X <= y)`` reaches p10's level, and ``y <= p90``
    exactly when ``P(X < y)`` stays below p90's; with atoms (many zero rates) the two differ.

    Examples
    --------
    >>> hood = _Neighbourhood(values=np.array([[0.0, 0.0, 1.0, 2.0]]),
    ...                       level=np.zeros((1, 4), dtype=np.int64), base=np.ones((1, 4)),
    ...                       n=np.ones((1, 0)), rate=np.zeros((1, 0)), nearest_m=np.zeros(1),
    ...                       prior_rate=np.zeros(1))
    >>> [float(_mixture_cdf(hood, 1.0, np.array([0.0]), inclusive=i)[0]) for i in (True, False)]
    [0.5, 0.0]
    """
    w = _weights(hood, k)
    hit = hood.values <= y[:, None] if inclusive else hood.values < y[:, None]
    result: FloatArray = (w * hit).sum(axis=1) / w.sum(axis=1)
    return result


def _outage_probability(hood: _Neighbourhood, k: float) -> FloatArray:
    coefficient = _cascade(hood.n, k)
    result: FloatArray = (coefficient[:, :-1] * hood.rate).sum(axis=1) + coefficient[
        :, -1
    ] * hood.prior_rate
    return result


def _pinball(y: FloatArray, q: FloatArray, levels: Sequence[float] = LEVELS) -> float:
    lv = np.asarray(levels)
    e = y[:, None] - q
    return float(np.mean(np.maximum(lv * e, (lv - 1.0) * e)))


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class KpiModel:
    """A fitted learned map of one KPI of one network (see the module docstring).

    Build it with :func:`fit_kpi`; save it with :meth:`write` and load it with :meth:`read`.
    The training records are part of the model (projected metres, values, outage labels,
    drive codes): the model *is* its neighbourhood statistics.
    """

    kpi: str
    network_id: str
    outage: OutageRule
    lat0: float
    x_m: FloatArray
    y_m: FloatArray
    values: FloatArray
    labels: FloatArray
    units: IntArray
    prior_atoms: FloatArray
    prior_rate: float
    radii_m: tuple[float, ...] = DEFAULT_RADII_M
    max_neighbours: tuple[int, ...] = MAX_NEIGHBOURS
    shrink_drives: float = 5.0
    shrink_outage: float = 5.0
    shrink_tails: float = 5.0
    levels: tuple[float, ...] = LEVELS
    calibration_x: FloatArray = field(default_factory=lambda: np.zeros(0))
    calibration_y: FloatArray = field(default_factory=lambda: np.zeros(0))
    unknown_beyond_m: float = UNKNOWN_BEYOND_M
    seconds_of_day: FloatArray = field(default_factory=lambda: np.zeros(0))
    time_scale_h: float = np.inf
    _tree: cKDTree = field(init=False, repr=False)
    _hourly_prior: tuple[FloatArray, FloatArray] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.values.shape[0] == 0:
            raise InvalidInputError(f"{self.network_id}: no {self.kpi} records to learn from")
        object.__setattr__(self, "_tree", cKDTree(np.column_stack([self.x_m, self.y_m])))
        hourly = None
        if self.uses_time_of_day:
            hourly = _timed_prior(self.values, self.labels, self.seconds_of_day, self.time_scale_h)
        object.__setattr__(self, "_hourly_prior", hourly)

    def __getstate__(self) -> dict[str, Any]:  # the tree is rebuilt, not pickled
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        self.__post_init__()

    @property
    def n_records(self) -> int:
        """Training records."""
        return int(self.values.shape[0])

    @property
    def prior_quantiles(self) -> FloatArray:
        """p10, p50, p90 of the network-wide prior at the recalibrated levels."""
        result: FloatArray = np.quantile(self.prior_atoms, self.levels)
        return result

    def _xy(self, lon: FloatArray, lat: FloatArray) -> FloatArray:
        x, y = to_local_m(lon, lat, lat0=self.lat0)
        return np.column_stack([x, y])

    @property
    def uses_time_of_day(self) -> bool:
        """Whether predictions weigh records by their time of day (see :meth:`predict`)."""
        return bool(np.isfinite(self.time_scale_h) and self.seconds_of_day.shape[0])

    def _prior_at(self, q: int, t_s: FloatArray | None) -> tuple[FloatArray, FloatArray]:
        """Prior atoms (Q, M) and outage rates (Q,) of ``q`` points at times ``t_s``.

        The prior of the points' hour of the day when the model weighs the time of day and
        ``t_s`` is given, else the network-wide prior.
        """
        if t_s is not None and self._hourly_prior is not None:
            hour = (_seconds_of_day(t_s) // 3600.0).astype(np.int64) % 24
            return self._hourly_prior[0][hour], self._hourly_prior[1][hour]
        atoms = np.broadcast_to(self.prior_atoms, (q, self.prior_atoms.shape[0]))
        return atoms, np.full(q, self.prior_rate)

    def _hood(self, xy: FloatArray, t_s: FloatArray | None) -> _Neighbourhood:
        """The mixture at points ``xy`` (local metres), at UTC times ``t_s`` if given."""
        atoms, rate = self._prior_at(xy.shape[0], t_s)
        when = None
        if t_s is not None and self.uses_time_of_day:
            when = _TimeOfDay(self.seconds_of_day, _seconds_of_day(t_s), self.time_scale_h)
        return _neighbourhood(
            self._tree, xy, self.values, self.labels, self.units, atoms, rate, self.radii_m,
            self.max_neighbours, when,
        )  # fmt: skip

    def _calibrate(self, p: FloatArray) -> FloatArray:
        if self.calibration_x.shape[0] >= 2:
            p = np.interp(p, self.calibration_x, self.calibration_y)
        return np.clip(p, MIN_PROBABILITY, 1.0 - MIN_PROBABILITY)

    def predict(
        self, lon: ArrayLike, lat: ArrayLike, t_s: ArrayLike | None = None
    ) -> KpiPrediction:
        """The KPI's distribution at points (WGS84 degrees), at times ``t_s`` if given.

        Parameters
        ----------
        lon, lat : the points.
        t_s : UTC seconds since 1970 of each point (or one for all). A model whose inner
            cross-validation chose a time-of-day kernel (:attr:`uses_time_of_day`) weighs
            records taken near the same time of day more; without ``t_s``, or for other models,
            every time of day counts alike.

        Raises
        ------
        InvalidInputError
            Arrays of different lengths or non-finite coordinates or times.
        """
        lon_a, lat_a = _points(lon, lat)
        t_a = None
        if t_s is not None:
            t_a = np.broadcast_to(np.asarray(t_s, dtype=np.float64), lon_a.shape)
            if not np.isfinite(t_a).all():
                raise InvalidInputError("t_s must be finite")
        parts = [
            self._predict(
                lon_a[s : s + _CHUNK],
                lat_a[s : s + _CHUNK],
                None if t_a is None else t_a[s : s + _CHUNK],
            )
            for s in range(0, lon_a.shape[0], _CHUNK)
        ]
        return KpiPrediction.concat(parts) if parts else self._predict(lon_a, lat_a, t_a)

    def _predict(self, lon: FloatArray, lat: FloatArray, t_s: FloatArray | None) -> KpiPrediction:
        hood = self._hood(self._xy(lon, lat), t_s)
        q = _mixture_quantiles(hood, self.shrink_tails, self.levels)
        q[:, 1] = _mixture_quantiles(hood, self.shrink_drives, self.levels[1:2])[:, 0]
        q[:, 0] = np.minimum(q[:, 0], q[:, 1])
        q[:, 2] = np.maximum(q[:, 2], q[:, 1])
        p = self._calibrate(_outage_probability(hood, self.shrink_outage))
        unknown = hood.nearest_m > self.unknown_beyond_m
        if unknown.any():  # far from data: the prior alone (at the query's time of day)
            atoms, rate = self._prior_at(unknown.sum(), None if t_s is None else t_s[unknown])
            q[unknown] = np.quantile(atoms, self.levels, axis=1).T
            p[unknown] = np.clip(rate, MIN_PROBABILITY, 1.0 - MIN_PROBABILITY)
        return KpiPrediction(
            p10=q[:, 0],
            p50=q[:, 1],
            p90=q[:, 2],
            p_outage=p,
            n_drives_near=hood.n[:, 0],
            distance_m=hood.nearest_m,
            unknown=unknown,
        )

    def write(self, path: str | Path) -> None:
        """Save the model as one ``.npz`` file (atomically, through :mod:`commap.files`)."""
        target = Path(path)
        if target.suffix != ".npz":
            raise InvalidInputError(f"{target}: a model file must end in .npz", field="path")
        arrays: dict[str, Any] = {}
        for f in fields(self):
            if not f.init:
                continue
            value = getattr(self, f.name)
            if isinstance(value, OutageRule):
                arrays["outage_op"] = np.array(value.op)
                arrays["outage_threshold"] = np.array(value.threshold)
            else:
                arrays[f.name] = np.asarray(value)
        with atomic_path(target, keep_suffix=True) as tmp:
            np.savez_compressed(tmp, **arrays)

    @classmethod
    def read(cls, path: str | Path) -> KpiModel:
        """Load a model saved by :meth:`write`.

        Raises
        ------
        InvalidInputError
            Missing, unreadable or incomplete file.
        """
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except FileNotFoundError:
            raise InvalidInputError(f"{path}: model file does not exist") from None
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path}: not a learned model file ({exc})") from None
        if "shrink_tails" not in arrays and "shrink_drives" in arrays:
            # files written before the tails had their own shrinkage used one for all
            arrays["shrink_tails"] = arrays["shrink_drives"]
        # files written before the time-of-day kernel: every time of day counts alike
        arrays.setdefault("seconds_of_day", np.zeros(0))
        arrays.setdefault("time_scale_h", np.array(np.inf))
        try:
            kwargs: dict[str, Any] = {
                "outage": OutageRule(
                    str(arrays.pop("outage_op")), float(arrays.pop("outage_threshold"))
                )
            }
            for f in fields(cls):
                if not f.init or f.name == "outage":
                    continue
                value = arrays[f.name]
                if f.name in ("kpi", "network_id"):
                    kwargs[f.name] = str(value)
                elif f.name in (
                    "lat0",
                    "prior_rate",
                    "shrink_drives",
                    "shrink_outage",
                    "shrink_tails",
                    "unknown_beyond_m",
                    "time_scale_h",
                ):
                    kwargs[f.name] = float(value)
                elif f.name in ("radii_m", "levels"):
                    kwargs[f.name] = tuple(float(v) for v in value)
                elif f.name == "max_neighbours":
                    kwargs[f.name] = tuple(int(v) for v in value)
                else:
                    kwargs[f.name] = value
        except KeyError as exc:
            raise InvalidInputError(f"{path}: model file lacks {exc.args[0]!r}") from None
        return cls(**kwargs)


def _label_values(
    records: pd.DataFrame, kpi: str, rule: OutageRule
) -> tuple[FloatArray, FloatArray]:
    values = np.asarray(records[kpi], dtype=np.float64)
    return values, rule(values)


def _model(
    kpi: str,
    network_id: str,
    rule: OutageRule,
    lat0: float,
    xy: FloatArray,
    values: FloatArray,
    labels: FloatArray,
    units: IntArray,
    **options: Any,
) -> KpiModel:
    atoms = np.quantile(values, (np.arange(PRIOR_ATOMS) + 0.5) / PRIOR_ATOMS)
    return KpiModel(
        kpi=kpi,
        network_id=network_id,
        outage=rule,
        lat0=lat0,
        x_m=xy[:, 0].copy(),
        y_m=xy[:, 1].copy(),
        values=values,
        labels=labels,
        units=units,
        prior_atoms=atoms,
        prior_rate=float(np.mean(labels)),
        **options,
    )


def _network_of(records: pd.DataFrame) -> str:
    if "network_id" not in records or len(records) == 0:
        return ""
    ids = pd.unique(records["network_id"].astype(str))
    if len(ids) > 1:
        raise InvalidInputError(
            f"records hold several networks ({', '.join(sorted(ids))}): fit one at a time",
            field="network_id",
        )
    return str(ids[0])


def fit_kpi(
    records: pd.DataFrame,
    *,
    kpi: str,
    outage: OutageRule | None = None,
    group_column: str = "drive_id",
    pass_minutes: float | None = PASS_MINUTES,
    radii_m: Sequence[Sequence[float]] = RADII_CANDIDATES_M,
    unknown_beyond_m: float = UNKNOWN_BEYOND_M,
    tune: bool = True,
    seed: int = 0,
) -> KpiModel:
    """Fit the learned map of one KPI of one network.

    Parameters
    ----------
    records : one network's records (see the module docstring); rows without a finite
        ``kpi`` value are ignored.
    kpi : a name of :data:`KPIS`.
    outage : outage rule (default: the KPI's).
    group_column : the drive of each record (else the UTC day; see :func:`evidence_units`).
    pass_minutes : drives are cut into passes of this length (None: whole drives).
    radii_m : candidate disc radii (finest first); the inner cross-validation picks one set.
    unknown_beyond_m : points farther than this from every record are ``unknown``.
    tune : run the inner cross-validation (tuning and recalibration); False keeps the
        defaults (``k = 5``, nominal levels, raw outage rates, first radii).
    seed : fold assignment of the inner cross-validation.

    Raises
    ------
    InvalidInputError
        Unknown KPI, no usable records, records of several networks.

    Examples
    --------
    >>> df = pd.DataFrame({"lon": [0.0, 0.001], "lat": [0.0, 0.0], "sinr_db": [2.0, -9.0]})
    >>> m = fit_kpi(df, kpi="sinr_db", outage=OutageRule("<", 0.0))
    >>> m.n_records, m.prior_rate, str(m.outage)
    (2, 0.5, '< 0')
    >>> fit_kpi(df.iloc[:0], kpi="sinr_db")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: no sinr_db records to learn from
    """
    spec = _kpi(kpi)
    rule = spec.outage if outage is None else outage
    if not radii_m or any(len(r) != len(MAX_NEIGHBOURS) for r in radii_m):
        raise InvalidInputError(
            f"radii_m: give sets of {len(MAX_NEIGHBOURS)} radii", field="radii_m"
        )
    if not unknown_beyond_m > 0:
        raise InvalidInputError("unknown_beyond_m must be > 0", field="unknown_beyond_m")
    recs = kpi_rows(normalise_records(records), kpi)
    if len(recs) == 0:
        raise InvalidInputError(f"no {kpi} records to learn from", field=kpi)
    network_id = _network_of(recs)
    values, labels = _label_values(recs, kpi, rule)
    units = evidence_units(recs, group_column=group_column, pass_minutes=pass_minutes)
    lat0 = float(recs["lat"].mean())
    x, y = to_local_m(recs["lon"].to_numpy(np.float64), recs["lat"].to_numpy(np.float64), lat0=lat0)
    xy = np.column_stack([x, y])
    fixed = {"unknown_beyond_m": float(unknown_beyond_m), "max_neighbours": MAX_NEIGHBOURS}
    timed = "timestamp" in recs and bool(recs["timestamp"].notna().all())
    day_s = _seconds_of_day(_epoch_s(recs["timestamp"])) if timed else None

    def make(rows: IntArray | slice, **options: Any) -> KpiModel:
        if day_s is not None and np.isfinite(options.get("time_scale_h", np.inf)):
            options["seconds_of_day"] = day_s[rows]  # kept only by a model that weighs them
        return _model(
            kpi, network_id, rule, lat0, xy[rows], values[rows], labels[rows], units[rows],
            **fixed, **options,
        )  # fmt: skip

    candidates = [tuple(float(r) for r in radii) for radii in radii_m]
    groups = _inner_groups(recs, units, group_column)
    if not tune or np.unique(groups).size < 2:
        return make(slice(None), radii_m=candidates[0])
    tuned = _tune(make, xy, values, labels, groups, candidates, seed, day_s)
    log.info(
        "%s %s: %d records, radii %s m, time of day %s h, k %.2g, k_outage %.2g, k_tails %.2g, "
        "levels %s",
        network_id,
        kpi,
        len(values),
        tuned["radii_m"],
        tuned["time_scale_h"],
        tuned["shrink_drives"],
        tuned["shrink_outage"],
        tuned["shrink_tails"],
        tuned["levels"],
    )
    return make(slice(None), **tuned)


def _tune(
    make: Callable[..., KpiModel],
    xy: FloatArray,
    values: FloatArray,
    labels: FloatArray,
    groups: IntArray,
    candidates: Sequence[tuple[float, ...]],
    seed: int,
    day_s: FloatArray | None = None,
) -> dict[str, Any]:
    """Inner cross-validation: radii, time of day, k, k_outage, k_tails, levels, calibration.

    Every inner fold's model sees its training rows only; its held-out rows (at most
    ``_INNER_MAX_ROWS`` in all) give out-of-fold pinball losses (radii and ``k``, then, with
    the radii chosen and records that carry times, the time-of-day kernel,
    :func:`_time_of_day`; ``k_tails``,
    :func:`_tails_shrinkage`), Brier scores (``k_outage``, never below ``k``), the mixture's
    CDF at the held-out values (quantile levels) and raw outage probabilities (Platt's
    recalibration, :func:`_platt`). Ties go to the stronger shrinkage.
    """
    rng = np.random.default_rng(seed)
    folds = group_folds(groups, folds=_INNER_FOLDS, seed=seed)
    cap = _INNER_MAX_ROWS // len(folds)
    splits = [
        (train, np.sort(rng.choice(test, cap, replace=False)) if len(test) > cap else test)
        for train, test in folds
    ]
    best: _Trial | None = None
    for radii in candidates:
        trial = _inner_fits(make, xy, values, splits, None, radii_m=radii)
        if best is None or trial.loss < best.loss - 1e-9:  # a tie goes to the first radii
            best = trial
    assert best is not None
    if day_s is not None:
        best = _time_of_day(make, xy, values, splits, day_s, best)
    k_index, fits = best.k_index, best.fits
    k = SHRINK_GRID[k_index]
    radii = fits[0][1].radii_m
    time_scale_h = fits[0][1].time_scale_h
    observed = np.concatenate([labels[t] for _, _, t in fits])
    briers = np.array(
        [
            np.mean(
                (np.concatenate([_outage_probability(h, k_o) for h, _, _ in fits])
                 - observed) ** 2
            )
            for k_o in OUTAGE_SHRINK_GRID[k_index:]
        ]
    )  # fmt: skip
    k_outage = OUTAGE_SHRINK_GRID[k_index + _least_loss(briers)]
    k_tails = _tails_shrinkage(fits, values, k_index)
    pit = np.concatenate([_mixture_pit(h, k, values[t]) for h, _, t in fits])
    # p10 <= y exactly when the mixture's CDF at y (atoms at y included) reaches the level,
    # y <= p90 exactly when the CDF below y stays under it: with ties (zero rates) the
    # two differ, and only these make [p10, p90] cover the share the levels promise
    at_or_below = np.concatenate(
        [_mixture_cdf(h, k_tails, values[t], inclusive=True) for h, _, t in fits]
    )
    below = np.concatenate(
        [_mixture_cdf(h, k_tails, values[t], inclusive=False) for h, _, t in fits]
    )
    levels = (
        float(np.clip(np.quantile(at_or_below, LEVELS[0]), 0.002, 0.998)),
        float(np.clip(np.quantile(pit, LEVELS[1]), 0.002, 0.998)),
        float(np.clip(np.quantile(below, LEVELS[2]), 0.002, 0.998)),
    )
    raw = np.concatenate([_outage_probability(h, k_outage) for h, _, _ in fits])
    cal_x, cal_y = _platt(raw, observed)
    return {
        "radii_m": radii,
        "time_scale_h": float(time_scale_h),
        "shrink_drives": float(k),
        "shrink_outage": float(k_outage),
        "shrink_tails": float(k_tails),
        "levels": levels,
        "calibration_x": cal_x,
        "calibration_y": cal_y,
    }


_Fit = tuple[_Neighbourhood, KpiModel, IntArray]


@dataclass(frozen=True, eq=False)
class _Trial:
    """Inner out-of-fold fits of one option: the ``k`` of least pinball loss and its losses."""

    fits: list[_Fit]
    k_index: int
    loss: float  # pinball loss at k, summed over inner test rows
    fold_losses: FloatArray  # mean pinball loss at k per inner fold


def _inner_fits(
    make: Callable[..., KpiModel],
    xy: FloatArray,
    values: FloatArray,
    splits: Sequence[tuple[IntArray, IntArray]],
    day_s: FloatArray | None,
    **option: Any,
) -> _Trial:
    """Fit ``make(train, **option)`` on every inner fold and score it on the fold's test rows."""
    fits = []
    for train, test in splits:
        sub = make(train, **option)
        fits.append((sub._hood(xy[test], None if day_s is None else day_s[test]), sub, test))
    losses = np.array(
        [
            [_pinball(values[t], _mixture_quantiles(h, k, LEVELS)) for h, _, t in fits]
            for k in SHRINK_GRID
        ]
    )  # (shrinkages, folds)
    sizes = np.array([len(t) for _, _, t in fits], dtype=np.float64)
    k_index = _least_loss(losses @ sizes)
    return _Trial(fits, k_index, float(losses[k_index] @ sizes), losses[k_index])


def _time_of_day(
    make: Callable[..., KpiModel],
    xy: FloatArray,
    values: FloatArray,
    splits: Sequence[tuple[IntArray, IntArray]],
    day_s: FloatArray,
    without: _Trial,
) -> _Trial:
    """The time-of-day kernel's trial if it earns its place over the folds, else ``without``.

    Each width of :data:`TIME_SCALE_GRID_H` (at the radii chosen without it) is scored on the
    inner folds with the held-out rows' own times of day. A width is adopted only when its gain
    over the folds is clear (:func:`clear_gain`: few drives share a time of day, so a lucky
    fold must not decide); of those, the lowest loss wins.
    """
    radii = without.fits[0][1].radii_m
    best = without
    for scale_h in TIME_SCALE_GRID_H:
        if not np.isfinite(scale_h):
            continue
        trial = _inner_fits(make, xy, values, splits, day_s, radii_m=radii, time_scale_h=scale_h)
        if clear_gain(without.fold_losses - trial.fold_losses) and trial.loss < best.loss:
            best = trial
    return best


def clear_gain(fold_gains: ArrayLike, *, confidence: float = ADOPT_CONFIDENCE) -> bool:
    """Whether an option's loss gains over the inner folds show that it helps.

    The one-sided paired Student t test over the folds: adopt when the mean gain exceeds
    ``t(confidence, folds - 1)`` standard errors (1.53 at 5 folds and 90 %). An option that does
    not help wins by chance in a share ``1 - confidence`` of fits. The rule used before, a mean
    gain above one standard error, is a t of 1, which at 5 folds adopts a useless option in 19 %
    of fits; on the Cork drives it adopted the time-of-day kernel for SINR in one outer fold
    (gains 0.169, 0.049, 0.020, 0.009 and -0.029 dB of pinball loss: t = 1.28) whose held-out
    drives it served worse. Counting wins ("better on every fold", "on a clear majority") reads
    the same gains more coarsely: a fold lost by a little vetoes as much as one lost by a lot.

    Parameters
    ----------
    fold_gains : per inner fold, the loss without the option minus the loss with it.
    confidence : the one-sided confidence the gain must show.

    Examples
    --------
    >>> clear_gain([0.169, 0.049, 0.020, 0.009, -0.029])  # one fold carries it
    False
    >>> clear_gain([0.038, 0.046, 0.095, 0.138, 0.069])
    True
    >>> clear_gain([0.01])  # one fold gives no spread to judge by
    False
    """
    gain = np.asarray(fold_gains, dtype=np.float64)
    if gain.shape[0] < 2:
        return False
    se = float(gain.std(ddof=1)) / np.sqrt(gain.shape[0])
    # stdtrit: the Student t quantile (scipy.special, which scipy.spatial loads anyway; the
    # same function in scipy.stats would add its import time to every process that tunes)
    return bool(gain.mean() > float(stdtrit(gain.shape[0] - 1, confidence)) * se)


def _tails_shrinkage(
    fits: Sequence[tuple[_Neighbourhood, KpiModel, IntArray]], values: FloatArray, k_index: int
) -> float:
    """The shrinkage of p10 and p90: the strongest within one standard error of the best.

    Candidates run from the ``k`` the medians chose up to 1000; the loss is the pinball loss
    at the nominal tail levels, per inner fold. Tails are fitted on the few extreme values
    near a point, so they are noisier than the median: of the candidates whose mean
    fold loss is within one standard error (over folds) of the least, the strongest
    shrinkage wins, which leans the intervals on the network prior where local tails say
    little more than it.
    """
    tails = (LEVELS[0], LEVELS[-1])
    grid = OUTAGE_SHRINK_GRID[k_index:]
    per_fold = np.array(
        [
            [_pinball(values[t], _mixture_quantiles(h, k_t, tails), tails) for h, _, t in fits]
            for k_t in grid
        ]
    )  # (candidates, folds)
    best = int(np.argmin(per_fold.mean(axis=1)))
    gap = per_fold - per_fold[best]
    se = gap.std(axis=1, ddof=1) / np.sqrt(gap.shape[1])
    within = np.flatnonzero(gap.mean(axis=1) <= se + 1e-12)
    return float(grid[int(within.max())])


def _least_loss(losses: FloatArray) -> int:
    """Index of the least loss; among (near) ties the last, i.e. the strongest shrinkage.

    Examples
    --------
    >>> _least_loss(np.array([2.0, 1.0, 1.0, 3.0]))
    2
    """
    return int(np.flatnonzero(losses <= losses.min() + 1e-12).max())


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, MIN_PROBABILITY, 1.0 - MIN_PROBABILITY)
    result: FloatArray = np.log(q / (1.0 - q))
    return result


def _sigmoid(z: FloatArray) -> FloatArray:
    result: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * z))
    return result


def _platt(p: FloatArray, outcome: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Knots of Platt's recalibration ``sigmoid(a logit(p) + b)``, ``a >= 0``.

    ``p`` are out-of-fold raw outage probabilities, ``outcome`` the 0/1 outages. Two
    parameters, fitted by Newton's method on the log loss: unlike an isotonic step function
    they cannot chase the noise of a few dozen outages, and an uninformative ``p`` gives
    ``a = 0``, i.e. the observed rate everywhere (shrinkage all the way to the prior). The
    knots lie on a logit-spaced grid so that :func:`numpy.interp` reproduces the curve. Empty
    knots (no recalibration) with fewer than :data:`_MIN_OUTCOMES` outages or non-outages.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0.0, 1.0, 4000)
    >>> x, y = _platt(p, (rng.uniform(size=4000) < 0.2).astype(float))  # p says nothing
    >>> bool(np.ptp(y) < 0.05 and abs(float(np.median(y)) - 0.2) < 0.03)
    True
    >>> x, y = _platt(p, (rng.uniform(size=4000) < p).astype(float))  # p is calibrated
    >>> bool(np.abs(np.interp([0.1, 0.5, 0.9], x, y) - [0.1, 0.5, 0.9]).max() < 0.05)
    True
    >>> _platt(p[:5], np.zeros(5))[0].size
    0
    """
    if min(outcome.sum(), (1.0 - outcome).sum()) < _MIN_OUTCOMES:
        return np.zeros(0), np.zeros(0)
    design = np.column_stack([_logit(p), np.ones(p.shape[0])])
    rate_logit = float(_logit(np.array([outcome.mean()]))[0])
    theta = np.array([0.0, rate_logit])
    for _ in range(50):
        fitted = _sigmoid(design @ theta)
        gradient = design.T @ (fitted - outcome)
        hessian = (design * (fitted * (1.0 - fitted))[:, None]).T @ design + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta = theta - step
        if np.abs(step).max() < 1e-9:
            break
    if not (np.isfinite(theta).all() and theta[0] >= 0.0):
        theta = np.array([0.0, rate_logit])  # a calibration never turns the ranking round
    z = np.linspace(_logit(np.zeros(1))[0], _logit(np.ones(1))[0], 201)
    y = _sigmoid(theta[0] * z + theta[1])
    knots = np.concatenate([[0.0], _sigmoid(z), [1.0]])
    fitted_p = np.concatenate([[y[0]], y, [y[-1]]])
    return knots, np.clip(fitted_p, MIN_PROBABILITY, 1.0 - MIN_PROBABILITY)


# ---------------------------------------------------------------------------------------------
# every KPI of a network
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LearnedNetwork:
    """The learned maps of one network: one :class:`KpiModel` per KPI its records carry.

    Examples
    --------
    >>> df = pd.DataFrame({"lon": [0.0], "lat": [0.0], "network_id": "n", "rsrp_dbm": [-90.0]})
    >>> net = fit_network(df, "n")
    >>> sorted(net.models), float(net.predict([0.0], [0.0])["rsrp_dbm"].p50[0])
    (['rsrp_dbm'], -90.0)
    """

    network_id: str
    models: Mapping[str, KpiModel]

    def predict(self, lon: ArrayLike, lat: ArrayLike) -> dict[str, KpiPrediction]:
        """Every KPI's prediction at the points."""
        return {kpi: model.predict(lon, lat) for kpi, model in self.models.items()}


def fit_network(
    records: pd.DataFrame,
    network_id: str,
    *,
    kpis: Sequence[str] | None = None,
    outage: Mapping[str, OutageRule] | None = None,
    **options: Any,
) -> LearnedNetwork:
    """Fit one :class:`KpiModel` per KPI of ``network_id``'s records (KPIs without data absent).

    Parameters
    ----------
    records : records of one or more networks (``network_id`` column; all rows if absent).
    network_id : the network to learn.
    kpis : KPIs to fit (default: every KPI of :data:`KPIS` present in the records).
    outage : outage rules overriding the KPIs' defaults.
    options : passed to :func:`fit_kpi`.

    Raises
    ------
    InvalidInputError
        No records of the network, or none of its records carries a KPI.
    """
    recs = normalise_records(records)
    if "network_id" in recs:
        recs = recs[recs["network_id"].astype(str) == network_id]
    wanted = list(KPIS) if kpis is None else list(kpis)
    for name in wanted:
        _kpi(name)
    rules = dict(outage or {})
    models = {
        name: fit_kpi(recs, kpi=name, outage=rules.get(name), **options)
        for name in wanted
        if len(kpi_rows(recs, name))
    }
    if not models:
        raise InvalidInputError(
            f"network {network_id}: no records with any of {', '.join(wanted)}",
            field="network_id",
        )
    return LearnedNetwork(network_id, models)
