"""A3 against reality: the 3GPP A3 model calibrated on some Cork drives, scored on the others.

``python -m bench --only a3cal``. Every shipped Cork drive test (``maps/cork/data`` and the
held-out trace in ``tests/data/measured``) is replayed with the other drives as neighbour-cell
reference; the hysteresis (+ offset) / time-to-trigger grid (:data:`commap.sim.replay.A3_GRID`)
is chosen by F1 on one month's drives and scored on the other month's (grouped, never on the
drives it was chosen on). A serving-cell change matches a real one within 5 s and 100 m.
The report goes to ``bench/results/a3_calibration/``.

Figures: per held-out month the chosen setting and its precision / recall, the 3GPP default's
on the same drives, and both pooled over every held-out drive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from commap.files import write_text_atomic
from commap.sim.replay import RealTraces, calibrate_cork

__all__ = ["run"]

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "a3_calibration"


def run() -> dict[str, Any]:
    """Calibrate on each month, score on the other; write the report; return the figures."""
    calibration = calibrate_cork(RealTraces.in_repository(REPO))
    OUT.mkdir(parents=True, exist_ok=True)
    write_text_atomic(OUT / "summary.md", calibration.markdown())
    write_text_atomic(OUT / "summary.csv", calibration.table().to_csv(index=False))
    figures: dict[str, Any] = {}
    for fold in calibration.folds:
        p, r = fold.precision_recall
        dp, dr = fold.default_precision_recall
        key = f"held_out_{fold.held_out}"
        figures[f"{key}.drives"] = len(fold.traces)
        figures[f"{key}.chosen"] = fold.chosen.label
        figures[f"{key}.precision"] = round(p, 3)
        figures[f"{key}.recall"] = round(r, 3)
        figures[f"{key}.default_precision"] = round(dp, 3)
        figures[f"{key}.default_recall"] = round(dr, 3)
    p, r = calibration.pooled()
    dp, dr = calibration.pooled(default=True)
    figures.update(
        {
            "pooled_precision": round(p, 3),
            "pooled_recall": round(r, 3),
            "pooled_default_precision": round(dp, 3),
            "pooled_default_recall": round(dr, 3),
        }
    )
    return figures
