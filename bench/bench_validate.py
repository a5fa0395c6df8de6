"""Learned-map benchmark: ``commap validate --map indianapolis --group block --block-m 300 --folds 5``.

Spatial-block cross-validation (300 m blocks, 5 folds) of the learned map against the
constant and k-nearest baselines on the three Indianapolis operators (throughput; RSRP for
T-Mobile). The report folder goes to ``bench/results/validate/`` (``summary.md``,
``summary.csv``, reliability PNGs).

Figures: MAE, Brier and [p10, p90] coverage of every model per network and KPI, the learned
map's MAE relative to the best baseline, and the wall time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from commap.map.comm_map import CommMap
from commap.map.validate import validate_map
from commap.out.validation_report import write_validation_report

__all__ = ["run"]

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "validate"


def run() -> dict[str, Any]:
    """Validate the Indianapolis map and return its figures."""
    start = time.perf_counter()
    result = validate_map(CommMap.load("indianapolis"), folds=5, group="block", block_m=300.0)
    wall_s = time.perf_counter() - start
    write_validation_report(result, OUT)
    figures: dict[str, Any] = {"wall_s": round(wall_s, 2)}
    for (network, kpi), rows in result.summary.groupby(["network", "kpi"], sort=False):
        by_model = rows.set_index("model")
        for model, row in by_model.iterrows():
            prefix = f"{network}.{kpi}.{model}"
            figures[f"{prefix}.mae"] = round(float(row["mae"]), 4)
            figures[f"{prefix}.brier"] = round(float(row["brier"]), 5)
            figures[f"{prefix}.coverage80"] = round(float(row["coverage80"]), 3)
        best_baseline = by_model.drop(index="learned")["mae"].min()
        figures[f"{network}.{kpi}.learned_mae_vs_best_baseline"] = round(
            float(by_model.loc["learned", "mae"] / best_baseline), 3
        )
    return figures
