"""Drops benchmark: every policy on the default map's routes, plus the real traces.

* The evaluation of ``commap evaluate --map andorra --seeds 20 --sigma-db 6``: three routes
  (about 75 km, 66 min per seed), 20 seeds, the drive simulator's policies and the 36-entry A3
  sweep, and the same truths second by second on every vehicle set-up with every map-free
  baseline. The report folder goes to ``bench/results/evaluate/`` (``summary.md``,
  ``summary.csv``, ``drops_3gpp.csv``, ``runs.csv``, ``a3_sweep.csv`` and the PNG charts).
* The real traces (``EvaluationConfig.real_traces``): A3 replayed on the held-out Cork drive
  test (serving-cell changes predicted vs real, ``cork_a3_replay.png``) and the Starlink
  Autobahn run (bridge-blocked seconds vs measured zero-throughput seconds,
  ``starlink_bridges.png``), in the same report.

Figures: per set-up and policy the service-loss seconds and switches per hour second by second
and the bar (``seconds.*``), the simulator's targets (avoidable RLF+HOF per hour, handovers,
ping-pong, distance to the oracle), its main rates per policy, the replay figures and wall times.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from commap.map.comm_map import CommMap
from commap.out.evaluation_report import write_evaluation_report
from commap.sim.evaluate import EvaluationConfig, EvaluationResult, evaluate_map
from commap.sim.replay import CorkReplay, RealTraces, StarlinkBridges

__all__ = ["run"]

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "evaluate"
SEEDS = 20
SIGMA_DB = 6.0


def _evaluation(out: Path) -> dict[str, Any]:
    cmap = CommMap.load("andorra")
    config = EvaluationConfig(real_traces=RealTraces.in_repository(REPO))
    result = evaluate_map(cmap, seeds=SEEDS, sigma_db=SIGMA_DB, config=config)
    write_evaluation_report(result, out)
    figures: dict[str, Any] = {
        "seeds": SEEDS,
        "routes_km": round(sum(s.length_km for s in result.scenarios), 1),
        "evaluate_wall_s": round(result.wall_s, 1),
    }
    for key, value in result.bar.items():
        figures[f"bar_{key}"] = round(value, 3) if isinstance(value, float) else value
    rows = result.summary.set_index("policy")
    for policy in rows.index:
        for column in (
            "avoidable_drops_per_hour",
            "rlf_per_hour",
            "hof_per_hour",
            "handovers_per_hour",
            "outage_s_per_hour",
        ):
            figures[f"{policy}_{column}"] = round(float(rows.loc[policy, column]), 3)
    figures.update(_seconds_figures(result))
    if result.cork is not None and result.autobahn is not None:
        figures.update(_replay_figures(result.cork, result.autobahn))
    return figures


def _seconds_figures(result: EvaluationResult) -> dict[str, Any]:
    """Per set-up and policy, loss and switches per hour; per set-up with a plan, the bar."""
    figures: dict[str, Any] = {}
    for row in result.seconds.summary().to_dict("records"):
        key = f"seconds.{row['vehicle']}.{row['policy']}"
        figures[f"{key}.loss_s_per_h"] = round(float(row["service_loss_s_per_hour"]), 1)
        figures[f"{key}.switches_per_h"] = round(float(row["switches_per_hour"]), 2)
    for row in result.seconds.versus().to_dict("records"):
        key = f"seconds.{row['vehicle']}"
        figures[f"{key}.best_map_free"] = row["best_map_free"]
        figures[f"{key}.commap_excess_ratio"] = row["excess_ratio"]
        figures[f"{key}.bar_met"] = row["met"]
    return figures


def _replay_figures(cork: CorkReplay, sky: StarlinkBridges) -> dict[str, Any]:
    (bz, bn), (oz, on) = sky.contingency
    return {
        "cork_real_cell_changes": int(cork.real_changes.size),
        "cork_a3_predicted_changes": int(cork.predicted_changes.size),
        "cork_matched_within_5s": cork.matched,
        "cork_precision": round(cork.precision, 3),
        "cork_recall": round(cork.recall, 3),
        "autobahn_bridge_passages": sky.passages,
        "autobahn_passages_with_zero_s": sky.passages_confirmed,
        "autobahn_zero_outages": sky.outages,
        "autobahn_outages_at_bridges": sky.outages_explained,
        "autobahn_contingency_blocked_zero_open_zero": f"{bz}/{bn} | {oz}/{on}",
        "autobahn_dip_share_blocked": round(sky.dip_share_blocked, 3),
        "autobahn_dip_share_open": round(sky.dip_share_open, 3),
    }


def run() -> dict[str, Any]:
    """Run the evaluation with the replays; write the report folder; return the figures."""
    OUT.mkdir(parents=True, exist_ok=True)
    return _evaluation(OUT)


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
