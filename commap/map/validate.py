"""Cross-validation of learned maps on a built map's own measurements (``commap validate``).

For every measured network of a map (a ``type = "measured"`` layer or a ``[networks.measured]``
overlay), the records its spec points at are read again (records CSV, G-NetTrack, or the
Indianapolis grid), split into folds by **drive**, **day** or **spatial block** (never random
rows: neighbouring 1 Hz rows of one drive would leak into the test), and every model is fitted
on the training folds and scored on the held-out fold:

``learned``
    :func:`commap.radio.learned.fit_kpi` (the shrinkage estimator), told the held-out records'
    times (it weighs the time of day where its inner cross-validation chose to).
``constant``, ``knn1``, ``knn5``
    :mod:`commap.radio.baselines`.
``modelled``
    the map's modelled layer alone (networks with a ``[networks.measured]`` overlay only),
    sampled at the held-out points; it was never fitted to the measurements, so every row
    is held out. Its value is a point estimate: p10 = p50 = p90, P(outage) 0 or 1 (clipped).

Gridded measurements are already aggregated: each grid square becomes one record at its centre
with the square's median RSRP and median downlink rate (``sample_count`` kept), and the outage
label is the rule applied to that median. The records are read by the map build's own reader
(:func:`commap.radio.layers.measured.read_layer_records`). The grid's SINR is not a measurement (a Shannon
inversion of the rate), so it is not validated. Squares have no drive and no time: validate them
with ``group="block"``.

Metrics per network, KPI and model (:data:`SUMMARY_COLUMNS`): MAE of p50, mean pinball loss of
p10/p50/p90, coverage of [p10, p90] (80 % nominal), Brier score and log loss of P(outage),
the largest gap between mean predicted P(outage) and the observed rate over probability deciles
holding at least :data:`RELIABILITY_MIN_BIN` rows, the share of ``unknown`` points, and the
observed outage rate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from commap.config import Settings
from commap.errors import InvalidInputError
from commap.files import sha256_file
from commap.map.comm_map import CommMap
from commap.map.spec import MapSpec, read_spec
from commap.radio.baselines import fit_constant, fit_nearest
from commap.radio.layers import LayerContext
from commap.radio.layers.measured import FusedLayer, read_layer_records
from commap.radio.learned import (
    KPIS,
    LEVELS,
    MIN_PROBABILITY,
    KpiPrediction,
    fit_kpi,
    group_folds,
    kpi_rows,
    spatial_blocks,
)
from commap.radio.quality import CoverageLayer

__all__ = [
    "GROUPS",
    "MODELS",
    "RELIABILITY_MIN_BIN",
    "SUMMARY_COLUMNS",
    "MeasuredSource",
    "Validation",
    "cross_validate",
    "measured_sources",
    "reliability_bins",
    "score",
    "validate_map",
]

log = logging.getLogger(__name__)

GROUPS = ("drive", "day", "block")
MODELS = ("learned", "constant", "knn1", "knn5", "modelled")
SUMMARY_COLUMNS = (
    "network",
    "kpi",
    "model",
    "n",
    "mae",
    "pinball",
    "coverage80",
    "brier",
    "log_loss",
    "reliability_max_dev",
    "unknown_share",
    "outage_rate",
)
RELIABILITY_MIN_BIN = 100
_MODELLED_KPIS = ("rsrp_dbm", "sinr_db")

FloatArray = NDArray[np.float64]
Progress = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# the measurements of a map
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MeasuredSource:
    """The measurement records of one network of a map.

    Attributes
    ----------
    network_id : the network.
    records : normalised records (:func:`commap.radio.learned.normalise_records`).
    gridded : the records are grid squares (no drives, no times).
    modelled : the network's modelled layer when measurements overlay one, else None.
    """

    network_id: str
    records: pd.DataFrame
    gridded: bool
    modelled: CoverageLayer | None


def _spec_of(cmap: CommMap) -> MapSpec:
    """The map.toml the map was built from: beside the built directory, as the manifest says."""
    inputs = cmap.manifest.inputs
    if inputs is None:
        raise InvalidInputError(f"map {cmap.name}: its manifest does not name its spec file")
    # beside the built directory (maps/<name>/built), else in the maps directory
    candidates = [
        cmap.directory.parent / inputs.spec_file,
        Settings().maps_dir / cmap.name / inputs.spec_file,
    ]
    path = next((p for p in candidates if p.is_file()), candidates[0])
    if not path.is_file():
        raise InvalidInputError(
            f"map {cmap.name}: its spec {inputs.spec_file} is not beside the built map "
            f"({path}); the measurements cannot be found"
        )
    if sha256_file(path) != inputs.spec_sha256:
        log.warning("map %s: %s changed since the map was built", cmap.name, path)
    return read_spec(path)


def measured_sources(
    cmap: CommMap, *, networks: Sequence[str] | None = None
) -> list[MeasuredSource]:
    """The measurement records of every measured network of a built map (catalogue order).

    Parameters
    ----------
    cmap : a built map whose spec (``map.toml``) sits beside its built directory.
    networks : only these networks (each must be measured).

    Raises
    ------
    InvalidInputError
        Unknown or unmeasured network named, the map has no measured network, its spec or a
        measurement file is missing.
    """
    spec = _spec_of(cmap)
    tables = {str(n["id"]): n for n in spec.networks}
    measured = {
        nid: dict(table["measured"] if "measured" in table else table["layer"])
        for nid, table in tables.items()
        if "measured" in table or table["layer"].get("type") == "measured"
    }
    if networks:
        for nid in networks:
            if nid not in tables:
                raise InvalidInputError(
                    f"--network {nid}: map {cmap.name} has no such network "
                    f"(networks: {', '.join(tables)})",
                    field="network",
                )
            if nid not in measured:
                raise InvalidInputError(
                    f"--network {nid}: network {nid} of map {cmap.name} has no measurements "
                    f"(measured: {', '.join(measured) or 'none'})",
                    field="network",
                )
    wanted = [nid for nid in cmap.catalogue.ids if nid in measured]
    if networks:
        wanted = [nid for nid in wanted if nid in networks]
    if not wanted:
        raise InvalidInputError(f"map {cmap.name} has no measured network to validate")
    ctx = LayerContext(source_dir=spec.source_dir, built_dir=cmap.directory, bbox=cmap.bbox)
    sources = []
    for nid in wanted:
        where = "measured" if "measured" in tables[nid] else "layer"
        source = read_layer_records(cmap.catalogue[nid], measured[nid], ctx, where=where)
        layer = cmap.layers.get(nid)
        modelled = layer.modelled if isinstance(layer, FusedLayer) else None
        log.info("network %s: %d measurement records", nid, len(source.records))
        sources.append(MeasuredSource(nid, source.records, source.gridded, modelled))
    return sources


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------
def reliability_bins(p_outage: Any, outage: Any, *, bins: int = 10) -> pd.DataFrame:
    """Mean predicted P(outage) against the observed rate per probability bin.

    Returns
    -------
    pandas.DataFrame
        ``bin_low``, ``bin_high``, ``n``, ``mean_predicted``, ``observed`` (bins holding rows).

    Examples
    --------
    >>> reliability_bins([0.05, 0.07, 0.95], [0.0, 0.0, 1.0])[["n", "observed"]].values.tolist()
    [[2.0, 0.0], [1.0, 1.0]]
    >>> len(reliability_bins([], []))
    0
    """
    p = np.asarray(p_outage, dtype=np.float64)
    o = np.asarray(outage, dtype=np.float64)
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    rows = []
    for b in np.unique(index):
        m = index == b
        rows.append((b / bins, (b + 1) / bins, float(m.sum()), p[m].mean(), o[m].mean()))
    return pd.DataFrame(rows, columns=["bin_low", "bin_high", "n", "mean_predicted", "observed"])


def score(values: Any, outage: Any, prediction: KpiPrediction) -> dict[str, float]:
    """Every metric of one model's predictions against the held-out values and outage labels.

    Examples
    --------
    >>> pred = KpiPrediction(p10=np.array([0.0, 0.0]), p50=np.array([1.0, 1.0]),
    ...                      p90=np.array([2.0, 2.0]), p_outage=np.array([0.5, 0.5]),
    ...                      n_drives_near=np.zeros(2), distance_m=np.zeros(2),
    ...                      unknown=np.array([False, True]))
    >>> s = score([1.0, 3.0], [0.0, 1.0], pred)
    >>> s["mae"], s["coverage80"], s["brier"], s["unknown_share"]
    (1.0, 0.5, 0.25, 0.5)
    >>> score([1.0], [0.0], pred)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: 1 values for 2 predictions
    """
    y = np.asarray(values, dtype=np.float64)
    o = np.asarray(outage, dtype=np.float64)
    if y.shape[0] != len(prediction) or o.shape != y.shape:
        raise InvalidInputError(f"{y.shape[0]} values for {len(prediction)} predictions")
    q = np.column_stack([prediction.p10, prediction.p50, prediction.p90])
    e = y[:, None] - q
    lv = np.asarray(LEVELS)
    p = np.clip(prediction.p_outage, MIN_PROBABILITY, 1.0 - MIN_PROBABILITY)
    table = reliability_bins(p, o)
    dense = table[table["n"] >= RELIABILITY_MIN_BIN]
    gaps = (dense["mean_predicted"] - dense["observed"]).abs()
    return {
        "n": float(y.shape[0]),
        "mae": float(np.mean(np.abs(e[:, 1]))),
        "pinball": float(np.mean(np.maximum(lv * e, (lv - 1.0) * e))),
        "coverage80": float(np.mean((y >= q[:, 0]) & (y <= q[:, 2]))),
        "brier": float(np.mean((p - o) ** 2)),
        "log_loss": float(-np.mean(o * np.log(p) + (1.0 - o) * np.log(1.0 - p))),
        "reliability_max_dev": float(gaps.max()) if len(gaps) else float("nan"),
        "unknown_share": float(np.mean(prediction.unknown)),
        "outage_rate": float(np.mean(o)),
    }


# ---------------------------------------------------------------------------------------------
# cross-validation
# ---------------------------------------------------------------------------------------------
def _groups(source: MeasuredSource, records: pd.DataFrame, group: str, block_m: float) -> Any:
    if group == "block":
        return spatial_blocks(records["lon"], records["lat"], block_m=block_m)
    if source.gridded:
        raise InvalidInputError(
            f"network {source.network_id}: grid squares have no drives or days; use --group block",
            field="group",
        )
    if group == "drive":
        if "drive_id" not in records or records["drive_id"].isna().any():
            raise InvalidInputError(
                f"network {source.network_id}: records without a drive (trace) column; "
                "use --group day or block",
                field="group",
            )
        return records["drive_id"].astype(str).to_numpy()
    times = pd.to_datetime(records["timestamp"], utc=True)
    return times.dt.strftime("%Y-%m-%d").to_numpy()


def _modelled_prediction(
    layer: CoverageLayer, records: pd.DataFrame, kpi: str, default_s: float
) -> KpiPrediction:
    lon = records["lon"].to_numpy(np.float64)
    lat = records["lat"].to_numpy(np.float64)
    if "timestamp" in records:
        t_s = (records["timestamp"] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        t = np.asarray(t_s, dtype=np.float64)
    else:
        t = np.full(len(records), default_s)
    quality = layer.sample(lon, lat, t)
    value = np.asarray(getattr(quality, kpi), dtype=np.float64)
    p = np.clip(KPIS[kpi].outage(value), MIN_PROBABILITY, 1.0 - MIN_PROBABILITY)
    n = len(records)
    return KpiPrediction(value, value, value, p, np.zeros(n), np.full(n, np.nan), np.zeros(n, bool))


def cross_validate(
    source: MeasuredSource,
    *,
    kpi: str,
    folds: int = 5,
    group: str = "drive",
    block_m: float = 300.0,
    seed: int = 0,
    default_s: float = 0.0,
) -> tuple[pd.DataFrame, dict[str, KpiPrediction]]:
    """Out-of-fold predictions of every model for one network's ``kpi``.

    Returns
    -------
    rows : the held-out records (value column ``kpi``, ``outage`` label), in prediction order.
    predictions : model name -> predictions aligned with ``rows``.

    Raises
    ------
    InvalidInputError
        Unknown group, fewer than two groups, grid squares grouped by drive or day.
    """
    if group not in GROUPS:
        raise InvalidInputError(
            f"--group {group!r} must be one of {', '.join(GROUPS)}", field="group"
        )
    records = kpi_rows(source.records, kpi)
    groups = _groups(source, records, group, block_m)
    splits = group_folds(groups, folds=folds, seed=seed)
    if len(splits) < 2:
        raise InvalidInputError(
            f"network {source.network_id}, {kpi}: one {group} only; "
            "cross-validation needs at least two",
            field="group",
        )
    # the learned map may weigh records by time of day: it is told when each held-out row was
    times_s = None
    if "timestamp" in records and records["timestamp"].notna().all():
        since = pd.to_datetime(records["timestamp"], utc=True) - pd.Timestamp(0, tz="UTC")
        times_s = np.asarray(since / pd.Timedelta(seconds=1), dtype=np.float64)
    held_out: list[NDArray[np.int64]] = []
    parts: dict[str, list[KpiPrediction]] = {m: [] for m in MODELS if m != "modelled"}
    for train, test in splits:
        fit_on = records.iloc[train]
        lon, lat = records["lon"].to_numpy()[test], records["lat"].to_numpy()[test]
        models: dict[str, Any] = {
            "learned": fit_kpi(fit_on, kpi=kpi, seed=seed),
            "constant": fit_constant(fit_on, kpi=kpi),
            "knn1": fit_nearest(fit_on, kpi=kpi, k=1),
            "knn5": fit_nearest(fit_on, kpi=kpi, k=5),
        }
        for name, model in models.items():
            if name == "learned" and times_s is not None:
                parts[name].append(model.predict(lon, lat, times_s[test]))
            else:
                parts[name].append(model.predict(lon, lat))
        held_out.append(test)
    order = np.concatenate(held_out)
    rows = records.iloc[order].reset_index(drop=True)
    rows["outage"] = KPIS[kpi].outage(rows[kpi].to_numpy(np.float64))
    predictions = {name: KpiPrediction.concat(p) for name, p in parts.items()}
    if source.modelled is not None and kpi in _MODELLED_KPIS:
        predictions["modelled"] = _modelled_prediction(source.modelled, rows, kpi, default_s)
    return rows, predictions


@dataclass(frozen=True, eq=False)
class Validation:
    """What :func:`validate_map` found.

    Attributes
    ----------
    map_name : the map.
    settings : folds, group, block size, seed.
    summary : one row per network, KPI and model (:data:`SUMMARY_COLUMNS`).
    reliability : :func:`reliability_bins` rows with ``network``, ``kpi``, ``model``.
    notes : what was skipped and why, how records were read.
    """

    map_name: str
    settings: dict[str, Any]
    summary: pd.DataFrame
    reliability: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def validate_map(
    cmap: CommMap,
    *,
    folds: int = 5,
    group: str = "drive",
    block_m: float = 300.0,
    networks: Sequence[str] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> Validation:
    """Cross-validate every model on every measured network and KPI of a built map.

    Parameters
    ----------
    cmap : the built map (its spec must sit beside the built directory).
    folds : number of folds (fewer when there are fewer groups: ``day`` with two days gives
        train-one-day, test-the-other in both directions).
    group : ``drive``, ``day`` or ``block`` (squares of ``block_m`` metres).
    networks : only these networks.
    seed : fold assignment.
    progress : called with a short message per network and KPI.

    Raises
    ------
    InvalidInputError
        Bad folds, group or block size; see also :func:`measured_sources`, :func:`cross_validate`.
    """
    if folds < 2:
        raise InvalidInputError(f"--folds {folds}: need at least 2 folds", field="folds")
    if group not in GROUPS:
        raise InvalidInputError(
            f"--group {group!r} must be one of {', '.join(GROUPS)}", field="group"
        )
    if not block_m > 0:
        raise InvalidInputError(f"--block-m {block_m}: must be > 0", field="block_m")
    say = progress or (lambda _msg: None)
    notes: list[str] = []
    summary, reliability = [], []
    for source in measured_sources(cmap, networks=networks):
        if source.gridded:
            notes.append(
                f"{source.network_id}: grid squares read as one record each at the square's "
                "centre (median RSRP and median downlink rate; the outage label is the rule "
                "applied to the median; the grid's SINR is derived from the rate, not validated)"
            )
        if source.modelled is None:
            notes.append(f"{source.network_id}: no modelled layer, model 'modelled' skipped")
        for kpi in KPIS:
            values = kpi_rows(source.records, kpi)
            if len(values) == 0:
                continue
            if values[kpi].nunique() < 2:
                notes.append(f"{source.network_id}: {kpi} takes one value only, skipped")
                continue
            say(f"{source.network_id} {kpi}: {len(values)} records")
            rows, predictions = cross_validate(
                source,
                kpi=kpi,
                folds=folds,
                group=group,
                block_m=block_m,
                seed=seed,
                default_s=cmap.default_departure_s,
            )
            for model, pred in predictions.items():
                figures = score(rows[kpi], rows["outage"], pred)
                summary.append(
                    {"network": source.network_id, "kpi": kpi, "model": model, **figures}
                )
                bins = reliability_bins(
                    np.clip(pred.p_outage, MIN_PROBABILITY, 1 - MIN_PROBABILITY), rows["outage"]
                )
                reliability.append(bins.assign(network=source.network_id, kpi=kpi, model=model))
    table = pd.DataFrame(summary, columns=list(SUMMARY_COLUMNS))
    table["n"] = table["n"].astype(np.int64)
    bins_table = pd.concat(reliability, ignore_index=True) if reliability else pd.DataFrame()
    return Validation(
        map_name=cmap.name,
        settings={"folds": folds, "group": group, "block_m": block_m, "seed": seed},
        summary=table,
        reliability=bins_table,
        notes=notes,
    )
