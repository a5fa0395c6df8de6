"""Metrics of drives: per run (:func:`run_metrics`) and per policy over seeds (:func:`aggregate`).

Per run (one policy, one route, one seed):

* ``rlf`` / ``hof``: radio link failures and handover failures; ``avoidable_*`` where some
  network was usable in the truth (slow SINR >= Qin) at that place and time, ``unavoidable_drops``
  where none was (a tunnel without coverage: every policy drops there).
* ``handovers``: changes of network: successful switches, failed attempts (HOF) and recoveries
  onto another network than the failed one; ``handovers_<kind>`` by
  :class:`commap.networks.SwitchKind`.
* ``ping_pong_<T>s``: network changes ``b -> a`` within ``T`` seconds (1, 2, 5) of the change
  ``a -> b`` before them.
* ``outage_s``, ``longest_outage_s``: seconds without service (interruptions and a serving link
  below Qout) and the longest contiguous stretch of them. They are the application's service
  loss: ``service_loss_s_per_hour`` is ``outage_s`` per hour of driving.
* ``loss_events``: stretches without service lasting at least the application's
  ``tolerated_gap_s`` (the gaps its user notices).
* ``satellite_mb``: megabytes carried over satellite networks at the application's data rate.
* ``time_s_<network>``: seconds of service on each network (``time_s_none``: without).

:func:`aggregate` sums each seed's runs over the routes (a seed is one campaign driving every
route), turns them into rates per hour and per 100 km, and reports per policy the mean over
seeds with the half-width of its 95 % confidence interval (Student t), plus a paired comparison
against ``a3_default`` (same seeds, same truth): mean difference, its interval, the relative
change and a Wilcoxon signed-rank p-value.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from commap.arrays import FloatArray
from commap.errors import InvalidInputError
from commap.networks import Network, SwitchKind
from commap.radio.link import AppProfile
from commap.sim.drive import DriveLog
from commap.sim.truth import TruthField

__all__ = [
    "PING_PONG_WINDOWS_S",
    "SUMMARY_COLUMNS",
    "aggregate",
    "ci95_halfwidth",
    "network_changes",
    "outage_durations_s",
    "ping_pong_count",
    "run_metrics",
]


PING_PONG_WINDOWS_S: tuple[float, ...] = (1.0, 2.0, 5.0)
SWITCH_COLUMNS = tuple(f"handovers_{k.value}" for k in SwitchKind if k is not SwitchKind.NONE)
# The leading columns of summary.csv, in this order (more follow them).
SUMMARY_COLUMNS: tuple[str, ...] = (
    "policy",
    "service_loss_s_per_hour",
    "loss_events_per_hour",
    "switches_per_hour",
    "satellite_mb",
    "rlf_per_hour",
    "hof_per_hour",
    "avoidable_drops_per_hour",
    "handovers_per_hour",
    "ping_pong_ratio",
    "outage_s_per_hour",
    "longest_outage_s",
)
_COUNTS = (
    "rlf",
    "hof",
    "drops",
    "avoidable_rlf",
    "avoidable_hof",
    "avoidable_drops",
    "unavoidable_drops",
    "handovers",
    "loss_events",
    *SWITCH_COLUMNS,
    *(f"ping_pong_{w:g}s" for w in PING_PONG_WINDOWS_S),
)


def network_changes(log: DriveLog) -> list[tuple[float, int, int]]:
    """``(t_s, from, to)`` of every change of serving network (switches and recoveries).

    Examples
    --------
    >>> from commap.sim.drive import DriveLog
    >>> network_changes(DriveLog("p", ("a",), 0.1, np.zeros(0, np.int64), np.zeros(0)))
    []
    """
    out = []
    for e in log.events:
        if e.kind == "handover" or (
            e.kind == "recovery" and e.source >= 0 and e.target != e.source
        ):
            out.append((e.t_s, e.source, e.target))
    return out


def ping_pong_count(changes: Sequence[tuple[float, int, int]], window_s: float) -> int:
    """Changes ``b -> a`` that come within ``window_s`` of the change ``a -> b`` before them.

    Examples
    --------
    >>> ping_pong_count([(0.0, 0, 1), (0.8, 1, 0), (3.0, 0, 1)], 1.0)
    1
    >>> ping_pong_count([(0.0, 0, 1), (1.5, 1, 0)], 1.0), ping_pong_count([], 1.0)
    (0, 0)
    """
    count = 0
    for (t1, a1, b1), (t2, a2, b2) in itertools.pairwise(changes):
        if a2 == b1 and b2 == a1 and t2 - t1 <= window_s + 1e-9:
            count += 1
    return count


def outage_durations_s(outage_s: FloatArray) -> FloatArray:
    """Durations of contiguous outages (runs of steps with some outage), seconds.

    Examples
    --------
    >>> outage_durations_s(np.array([0.0, 0.1, 0.1, 0.0, 0.05])).round(2).tolist()
    [0.2, 0.05]
    >>> outage_durations_s(np.zeros(0)).tolist()
    []
    """
    x = np.asarray(outage_s, dtype=np.float64)
    on = x > 0
    if not on.any():
        return np.zeros(0)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], on.astype(np.int8), [0]))))
    csum = np.concatenate(([0.0], np.cumsum(x)))
    return csum[edges[1::2]] - csum[edges[::2]]


def _handovers(log: DriveLog, networks: Sequence[Network]) -> dict[str, int]:
    from commap.networks import switch_kind

    by_kind = dict.fromkeys(SWITCH_COLUMNS, 0)
    total = 0
    for e in log.events:
        counted = e.kind in ("handover", "hof") or (
            e.kind == "recovery" and e.source >= 0 and e.target != e.source
        )
        if counted:
            total += 1
            kind = switch_kind(networks[e.source], networks[e.target])
            by_kind[f"handovers_{kind.value}"] += 1
    return {"handovers": total, **by_kind}


def run_metrics(
    log: DriveLog,
    truth: TruthField,
    networks: Sequence[Network],
    *,
    app: AppProfile,
    route: str = "",
    seed: int = 0,
) -> dict[str, Any]:
    """Figures of one drive (see module docstring); one row of ``runs.csv``.

    Examples
    --------
    >>> run_metrics.__name__
    'run_metrics'
    """
    if len(log.serving) != len(truth):
        raise InvalidInputError("drive log and truth differ in length")
    step = log.step_s
    failures = [e for e in log.events if e.kind in ("rlf", "hof")]
    avoidable_rlf = sum(1 for e in failures if e.kind == "rlf" and e.avoidable)
    avoidable_hof = sum(1 for e in failures if e.kind == "hof" and e.avoidable)
    rlf, hof = log.count("rlf"), log.count("hof")
    changes = network_changes(log)
    durations = outage_durations_s(log.outage_s)
    served_s = step - log.outage_s
    row: dict[str, Any] = {
        "policy": log.policy,
        "route": route,
        "seed": seed,
        "duration_s": float(len(truth) * step),
        "distance_km": float(truth.distance_m[-1] / 1000.0) if len(truth) else 0.0,
        "rlf": rlf,
        "hof": hof,
        "drops": rlf + hof,
        "avoidable_rlf": avoidable_rlf,
        "avoidable_hof": avoidable_hof,
        "avoidable_drops": avoidable_rlf + avoidable_hof,
        "unavoidable_drops": rlf + hof - avoidable_rlf - avoidable_hof,
        **_handovers(log, networks),
    }
    for w in PING_PONG_WINDOWS_S:
        row[f"ping_pong_{w:g}s"] = ping_pong_count(changes, w)
    row["outage_s"] = float(log.outage_s.sum())
    row["longest_outage_s"] = float(durations.max()) if durations.size else 0.0
    row["loss_events"] = int(np.count_nonzero(durations >= app.tolerated_gap_s - 1e-9))
    sat = np.array([n.is_satellite for n in networks])
    on_sat = (log.serving >= 0) & sat[np.maximum(log.serving, 0)]
    row["satellite_mb"] = float(served_s[on_sat].sum() * app.mb_per_s)
    for j, nid in enumerate(log.network_ids):
        row[f"time_s_{nid}"] = float(served_s[log.serving == j].sum())
    row["time_s_none"] = float(log.outage_s.sum())
    return row


def ci95_halfwidth(values: Sequence[float] | FloatArray) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student t; NaN below 2 values).

    Examples
    --------
    >>> round(ci95_halfwidth([1.0, 2.0, 3.0]), 3)
    2.484
    >>> math.isnan(ci95_halfwidth([1.0]))
    True
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))


def _per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (policy, seed): counts and times summed over routes, then rates."""
    sums = [c for c in runs.columns if c in _COUNTS or c.startswith("time_s_")]
    sums += ["duration_s", "distance_km", "outage_s", "satellite_mb"]
    g = runs.groupby(["policy", "seed"], sort=False)
    seed = g[sums].sum()
    seed["longest_outage_s"] = g["longest_outage_s"].max()
    hours = seed["duration_s"] / 3600.0
    per100 = seed["distance_km"] / 100.0
    for name in (
        "rlf",
        "hof",
        "drops",
        "avoidable_drops",
        "unavoidable_drops",
        "handovers",
        "loss_events",
        *SWITCH_COLUMNS,
    ):
        if name in seed.columns:
            seed[f"{name}_per_hour"] = seed[name] / hours
    for name in ("rlf", "hof", "drops", "avoidable_drops"):
        seed[f"{name}_per_100km"] = seed[name] / per100
    seed["outage_s_per_hour"] = seed["outage_s"] / hours
    seed["service_loss_s_per_hour"] = seed["outage_s_per_hour"]
    seed["switches_per_hour"] = seed["handovers_per_hour"]
    for w in PING_PONG_WINDOWS_S:
        ratio = seed[f"ping_pong_{w:g}s"] / seed["handovers"].where(seed["handovers"] > 0)
        suffix = "" if w == 1.0 else f"_{w:g}s"
        seed[f"ping_pong_ratio{suffix}"] = ratio.fillna(0.0)
    for c in [c for c in seed.columns if c.startswith("time_s_")]:
        seed["share_" + c.removeprefix("time_s_")] = seed[c] / seed["duration_s"]
    return seed.reset_index()


def aggregate(runs: pd.DataFrame, *, baseline: str = "a3_default") -> pd.DataFrame:
    """Per policy: mean over seeds and 95 % CI half-width of every rate, plus the paired test.

    Parameters
    ----------
    runs : DataFrame
        Rows of :func:`run_metrics` (``policy``, ``route``, ``seed`` and the figures).
    baseline : str
        Policy of the paired comparison.

    Returns
    -------
    DataFrame
        One row per policy (in order of appearance) with :data:`SUMMARY_COLUMNS` first; every
        figure ``x`` has ``x_ci95``; ``avoidable_vs_a3_pct``, ``avoidable_diff_per_hour``
        (+ ``_ci95``), ``avoidable_paired_p`` and ``handovers_vs_a3_pct`` compare with the
        baseline seed by seed.

    Examples
    --------
    >>> aggregate(pd.DataFrame())
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: no runs to aggregate
    """
    if runs.empty:
        raise InvalidInputError("no runs to aggregate")
    seed = _per_seed(runs)
    figures = [c for c in seed.columns if c not in ("policy", "seed")]
    rows = []
    base = seed[seed["policy"] == baseline].set_index("seed")
    for policy, group in seed.groupby("policy", sort=False):
        row: dict[str, Any] = {"policy": policy, "seeds": int(group["seed"].nunique())}
        for c in figures:
            row[c] = float(group[c].mean())
            row[f"{c}_ci95"] = ci95_halfwidth(group[c].to_numpy())
        row.update(_paired(group.set_index("seed"), base))
        rows.append(row)
    table = pd.DataFrame(rows)
    first = [c for c in SUMMARY_COLUMNS if c in table.columns]
    return table[first + [c for c in table.columns if c not in first]]


def _paired(policy: pd.DataFrame, base: pd.DataFrame) -> dict[str, float]:
    common = policy.index.intersection(base.index)
    if len(common) == 0:
        return {}
    a = policy.loc[common, "avoidable_drops_per_hour"].to_numpy(dtype=np.float64)
    b = base.loc[common, "avoidable_drops_per_hour"].to_numpy(dtype=np.float64)
    diff = a - b
    ha = policy.loc[common, "handovers_per_hour"].to_numpy(dtype=np.float64)
    hb = base.loc[common, "handovers_per_hour"].to_numpy(dtype=np.float64)
    return {
        "avoidable_vs_a3_pct": _pct(a.mean(), b.mean()),
        "avoidable_diff_per_hour": float(diff.mean()),
        "avoidable_diff_per_hour_ci95": ci95_halfwidth(diff),
        "avoidable_paired_p": _wilcoxon_p(diff),
        "handovers_vs_a3_pct": _pct(ha.mean(), hb.mean()),
    }


def _pct(value: float, reference: float) -> float:
    if reference == 0:
        return 0.0 if value == 0 else math.inf
    return float(100.0 * (value - reference) / reference)


def _wilcoxon_p(diff: FloatArray) -> float:
    if diff.size < 2 or np.allclose(diff, 0.0):
        return 1.0
    return float(stats.wilcoxon(diff, zero_method="zsplit").pvalue)
