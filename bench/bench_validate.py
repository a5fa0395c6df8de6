"""Learned-map benchmark: ``commap validate`` on the three measured maps, with place-oracle bounds.

- Indianapolis: ``commap validate --map indianapolis --group block --block-m 300 --folds 5``
  (three operators, throughput; RSRP for T-Mobile), report in ``bench/results/validate/``.
- Cork: ``commap validate --map cork --group drive --folds 5`` (8 drives of operator B), report
  in ``bench/results/validate/cork/``.
- Hamburg - Bremen extract: ``commap validate --map <hamburg> --group day`` (three operators,
  one day -> the other; the map of ``tests.support.specs.hamburg_spec``), report in
  ``bench/results/validate/hamburg/``.

Figures: MAE, Brier and [p10, p90] coverage of every model per network and KPI, the learned
map's MAE and Brier relative to the constant (``learned_mae_vs_constant``,
``learned_brier_vs_constant``: 0.8 is the bar of "20 % better") and to the best baseline, the
learned MAE relative to the constant on rows within the unknown radius of training data
(``known_mae_vs_constant``), the wall time, and for the drive and day maps two references that
are not maps:

``other_groups``
    at every held-out record, the median value and outage rate of the records of *all other*
    drives (days) within 50 m, unshrunk (the constant where there are none): a place-only
    estimator given every other drive, i.e. more training data than a fold has.
``same_group``
    the same from the held-out drive's (day's) own records within 50 m, the record itself
    included: what a map that knew the test drive at every place would score, a bound no map
    learned from other drives can pass.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from commap.geo.geodesy import to_local_m
from commap.map.build import build_map
from commap.map.comm_map import CommMap
from commap.map.validate import Validation, cross_validate, measured_sources, validate_map
from commap.out.validation_report import write_validation_report

__all__ = ["run"]

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "validate"
ORACLE_RADIUS_M = 50.0


def _figures(name: str, result: Validation) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for (network, kpi), rows in result.summary.groupby(["network", "kpi"], sort=False):
        by_model = rows.set_index("model")
        prefix = f"{name}{network}.{kpi}"
        for model, row in by_model.iterrows():
            figures[f"{prefix}.{model}.mae"] = round(float(row["mae"]), 4)
            figures[f"{prefix}.{model}.brier"] = round(float(row["brier"]), 5)
            figures[f"{prefix}.{model}.coverage80"] = round(float(row["coverage80"]), 3)
        learned, constant = by_model.loc["learned"], by_model.loc["constant"]
        best_baseline = by_model.drop(index="learned")["mae"].min()
        figures[f"{prefix}.learned_mae_vs_best_baseline"] = round(
            float(learned["mae"] / best_baseline), 3
        )
        figures[f"{prefix}.learned_mae_vs_constant"] = round(
            float(learned["mae"] / constant["mae"]), 3
        )
        if constant["brier"] > 1e-5:  # a network without outages has no Brier to beat
            figures[f"{prefix}.learned_brier_vs_constant"] = round(
                float(learned["brier"] / constant["brier"]), 3
            )
    return figures


def _place_oracles(
    rows: pd.DataFrame, kpi: str, groups: np.ndarray
) -> dict[str, tuple[float, float]]:
    """MAE and Brier of the ``other_groups`` and ``same_group`` references (module docstring)."""
    x, y = to_local_m(rows["lon"].to_numpy(), rows["lat"].to_numpy(), lat0=rows["lat"].mean())
    xy = np.column_stack([x, y])
    values = rows[kpi].to_numpy(np.float64)
    outage = rows["outage"].to_numpy(np.float64)
    out: dict[str, tuple[float, float]] = {}
    for name, same in (("other_groups", False), ("same_group", True)):
        p50 = np.empty(len(rows))
        rate = np.empty(len(rows))
        for g in np.unique(groups):
            test = groups == g
            pool = test if same else ~test
            near = cKDTree(xy[pool]).query_ball_point(xy[test], ORACLE_RADIUS_M)
            v, o = values[pool], outage[pool]
            p50[test] = [np.median(v[i]) if i else np.median(v) for i in near]
            rate[test] = [o[i].mean() if i else o.mean() for i in near]
        p = np.clip(rate, 1e-3, 1.0 - 1e-3)
        out[name] = (float(np.mean(np.abs(values - p50))), float(np.mean((p - outage) ** 2)))
    return out


def _references(name: str, cmap: CommMap, group: str, kpis: dict[str, list[str]]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for source in measured_sources(cmap):
        for kpi in kpis.get(source.network_id, []):
            rows, predictions = cross_validate(source, kpi=kpi, group=group)
            values = rows[kpi].to_numpy(np.float64)
            learned, constant = predictions["learned"], predictions["constant"]
            known = ~learned.unknown
            prefix = f"{name}{source.network_id}.{kpi}"
            figures[f"{prefix}.known_share"] = round(float(known.mean()), 3)
            figures[f"{prefix}.known_mae_vs_constant"] = round(
                float(
                    np.abs(values - learned.p50)[known].mean()
                    / np.abs(values - constant.p50)[known].mean()
                ),
                3,
            )
            if group == "drive":
                groups = rows["drive_id"].astype(str).to_numpy()
            else:
                groups = rows["timestamp"].dt.strftime("%Y-%m-%d").to_numpy()
            constant_brier = float(
                np.mean((np.clip(constant.p_outage, 1e-3, 1 - 1e-3) - rows["outage"]) ** 2)
            )
            constant_mae = float(np.abs(values - constant.p50).mean())
            # the learned map told each held-out drive's (day's) own median offset afterwards
            residual = pd.Series(values - learned.p50)
            offset = residual.groupby(groups).transform("median").to_numpy()
            figures[f"{prefix}.learned_plus_group_offset.mae_vs_constant"] = round(
                float(np.abs(residual.to_numpy() - offset).mean()) / constant_mae, 3
            )
            for ref, (mae, brier) in _place_oracles(rows, kpi, groups).items():
                figures[f"{prefix}.{ref}.mae_vs_constant"] = round(mae / constant_mae, 3)
                if constant_brier > 1e-5:
                    figures[f"{prefix}.{ref}.brier_vs_constant"] = round(brier / constant_brier, 3)
    return figures


def _hamburg(folder: Path) -> CommMap:
    from tests.support.specs import hamburg_spec

    spec = hamburg_spec(folder / "hamburg")
    return CommMap.load(build_map(spec, spec.parent / "built"))


def run() -> dict[str, Any]:
    """Validate the three measured maps and return their figures."""
    start = time.perf_counter()
    result = validate_map(CommMap.load("indianapolis"), folds=5, group="block", block_m=300.0)
    figures: dict[str, Any] = {"wall_s": round(time.perf_counter() - start, 2)}
    write_validation_report(result, OUT)
    figures.update(_figures("", result))
    with tempfile.TemporaryDirectory() as tmp:
        maps = {
            "cork": (CommMap.load("cork"), "drive", {"ie-b-lte": ["sinr_db", "rsrq_db"]}),
            "hamburg": (
                _hamburg(Path(tmp)),
                "day",
                {n: ["rsrp_dbm"] for n in ("de-telekom", "de-vodafone", "de-telefonica")},
            ),
        }
        for name, (cmap, group, kpis) in maps.items():
            start = time.perf_counter()
            result = validate_map(cmap, folds=5, group=group)
            figures[f"{name}.wall_s"] = round(time.perf_counter() - start, 2)
            write_validation_report(result, OUT / name)
            figures.update(_figures(f"{name}.", result))
            figures.update(_references(f"{name}.", cmap, group, kpis))
    return figures
