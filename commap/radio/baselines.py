"""Baselines a learned map is measured against: the network-wide constant and k nearest records.

Both answer like :class:`commap.radio.learned.KpiModel` (``predict(lon, lat) ->
KpiPrediction``) so that validation treats every model alike.

* :class:`ConstantModel`: the training p10/p50/p90 of the network and its outage rate,
  everywhere.
* :class:`NearestModel`: the ``k`` nearest training records, however far: k = 1 gives their
  value (p10 = p50 = p90) and 0/1 outage; k = 5 their empirical p10/p50/p90 and outage share.
  P(outage) is clipped to [0.001, 0.999] like the learned map's.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"lon": [0.0, 0.001, 0.002], "lat": [0.0] * 3,
...                    "sinr_db": [-9.0, 4.0, 10.0]})
>>> fit_constant(df, kpi="sinr_db").predict([5.0], [5.0]).p50.tolist()
[4.0]
>>> near = fit_nearest(df, kpi="sinr_db", k=1).predict([0.0], [0.0])
>>> near.p50.tolist(), near.p_outage.tolist()
([-9.0], [0.999])
>>> len(fit_nearest(df, kpi="sinr_db", k=5).predict([], []))
0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree

from commap.errors import InvalidInputError
from commap.geo.geodesy import to_local_m
from commap.radio.learned import (
    KPIS,
    LEVELS,
    MIN_PROBABILITY,
    UNKNOWN_BEYOND_M,
    KpiPrediction,
    OutageRule,
    kpi_rows,
    normalise_records,
)

__all__ = ["ConstantModel", "NearestModel", "fit_constant", "fit_nearest"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class _Training:
    """Projected training points, values and outage labels of one KPI."""

    lat0: float
    xy: FloatArray
    values: FloatArray
    labels: FloatArray
    tree: cKDTree = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tree", cKDTree(self.xy))

    def query(self, lon: ArrayLike, lat: ArrayLike, k: int) -> tuple[FloatArray, FloatArray]:
        lon_a = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        lat_a = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        if lon_a.shape != lat_a.shape:
            raise InvalidInputError("lon and lat must have the same length")
        x, y = to_local_m(lon_a, lat_a, lat0=self.lat0)
        k = min(k, self.values.shape[0])
        dist, idx = self.tree.query(np.column_stack([x, y]), k=k)
        return np.asarray(dist, np.float64).reshape(-1, k), np.asarray(idx).reshape(-1, k)


def _training(records: pd.DataFrame, kpi: str, outage: OutageRule | None) -> _Training:
    if kpi not in KPIS:
        raise InvalidInputError(f"unknown KPI {kpi!r}; known KPIs: {', '.join(KPIS)}", field="kpi")
    recs = kpi_rows(normalise_records(records), kpi)
    if len(recs) == 0:
        raise InvalidInputError(f"no {kpi} records to learn from", field=kpi)
    rule = KPIS[kpi].outage if outage is None else outage
    values = np.asarray(recs[kpi], dtype=np.float64)
    lat0 = float(recs["lat"].mean())
    x, y = to_local_m(recs["lon"].to_numpy(np.float64), recs["lat"].to_numpy(np.float64), lat0=lat0)
    return _Training(lat0, np.column_stack([x, y]), values, rule(values))


@dataclass(frozen=True, eq=False)
class ConstantModel:
    """The network-wide distribution everywhere (``unknown`` still says where no data is near)."""

    training: _Training

    def predict(self, lon: ArrayLike, lat: ArrayLike) -> KpiPrediction:
        """The training quantiles and outage rate at every point."""
        dist, _ = self.training.query(lon, lat, 1)
        n = dist.shape[0]
        q = np.quantile(self.training.values, LEVELS)
        rate = float(np.clip(self.training.labels.mean(), MIN_PROBABILITY, 1 - MIN_PROBABILITY))
        return KpiPrediction(
            p10=np.full(n, q[0]),
            p50=np.full(n, q[1]),
            p90=np.full(n, q[2]),
            p_outage=np.full(n, rate),
            n_drives_near=np.zeros(n),
            distance_m=dist[:, 0],
            unknown=dist[:, 0] > UNKNOWN_BEYOND_M,
        )


@dataclass(frozen=True, eq=False)
class NearestModel:
    """The ``k`` nearest training records, at any distance."""

    training: _Training
    k: int

    def predict(self, lon: ArrayLike, lat: ArrayLike) -> KpiPrediction:
        """Empirical p10/p50/p90 and outage share of the ``k`` nearest records."""
        dist, idx = self.training.query(lon, lat, self.k)
        values = self.training.values[idx]
        q = np.quantile(values, LEVELS, axis=1) if len(values) else np.zeros((3, 0))
        p = self.training.labels[idx].mean(axis=1) if len(values) else np.zeros(0)
        return KpiPrediction(
            p10=q[0],
            p50=q[1],
            p90=q[2],
            p_outage=np.clip(p, MIN_PROBABILITY, 1 - MIN_PROBABILITY),
            n_drives_near=np.full(dist.shape[0], float(idx.shape[1])),
            distance_m=dist[:, 0],
            unknown=dist[:, 0] > UNKNOWN_BEYOND_M,
        )


def fit_constant(
    records: pd.DataFrame, *, kpi: str, outage: OutageRule | None = None
) -> ConstantModel:
    """The constant baseline of one network's ``kpi`` records."""
    return ConstantModel(_training(records, kpi, outage))


def fit_nearest(
    records: pd.DataFrame, *, kpi: str, k: int = 5, outage: OutageRule | None = None
) -> NearestModel:
    """The k-nearest-records baseline of one network's ``kpi`` records.

    Raises
    ------
    InvalidInputError
        ``k`` < 1, unknown KPI or no records.
    """
    if k < 1:
        raise InvalidInputError("k must be >= 1", field="k")
    return NearestModel(_training(records, kpi, outage), int(k))
