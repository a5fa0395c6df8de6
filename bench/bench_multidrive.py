"""Real multi-network drive replay: the full Hamburg - Bremen drive tests, one day -> the other.

``python -m bench --only multidrive``. Reads the published data set shipped in
``tests/data/measured_multi/hh_bremen_3mno_drive_2021.csv.gz`` (or the file named by
``COMMAP_HAMBURG_BREMEN``). For each direction (train 13 Sep, test 17 Sep,
and the reverse) a measured-only map of the training day is built (three operators' LTE RSRP
and RSRQ, learned) and the test day's drive is replayed with ``commap replay``'s library call
on the three terrestrial vehicle set-ups (one modem, two modems, a bonded pair): commap's plan
(default objective), the oracle, the best single network (pair) in hindsight and the map-free
baselines at their documented defaults, configured with the fleet's experience of the training
day (the operators in order of their outage seconds on it: primary SIM / WAN first). Reports (summaries; the per-second table is left out)
go to ``bench/results/multidrive/<train>-to-<test>/``.

Figures, per direction, set-up and policy: service-loss seconds, loss events and switches per
hour; per direction and set-up, commap's loss in excess of the oracle as a share of the
best map-free baseline's (the bar of the product: at most 0.5), and that excess split by what
lost the seconds (``excess.*``: :meth:`commap.sim.multidrive.Replay.breakdown`; the full
split of every policy is in each direction's ``summary.md``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from commap.geo.corridor import Route
from commap.map.build import build_map
from commap.map.comm_map import CommMap
from commap.out.replay_report import write_replay_report
from commap.radio.measurements import HAMBURG_BREMEN_NETWORKS, read_hamburg_bremen
from commap.service.planning import PlanRequest, PlanResult, plan_route
from commap.sim.multidrive import MAP_FREE, replay_drive
from commap.sim.seconds import drive_seconds

__all__ = ["run"]

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "multidrive"
SOURCE = Path(
    os.environ.get(
        "COMMAP_HAMBURG_BREMEN",
        str(REPO / "tests" / "data" / "measured_multi" / "hh_bremen_3mno_drive_2021.csv.gz"),
    )
)
DAYS = {
    "13sep": ("2021-09-13T00:00:00Z", "2021-09-14T00:00:00Z"),
    "17sep": ("2021-09-17T00:00:00Z", "2021-09-18T00:00:00Z"),
}


def _spec(folder: Path, records_file: str, train: str) -> Path:
    start, end = DAYS[train]
    networks = "".join(
        f"""
[[networks]]
id = "{nid}"
kind = "terrestrial"
operator = "{nid}"
technology = "lte"
latency_ms = 35.0
[networks.layer]
type = "measured"
format = "records"
files = ["{records_file}"]
start = "{start}"
end = "{end}"
attribution = "Drive tests: ENQT GmbH / HAW Hamburg (CC BY-NC 4.0)"
"""
        for nid in HAMBURG_BREMEN_NETWORKS.values()
    )
    text = f"""name = "hamburg-bremen-{train}"
title = "Hamburg - Bremen, three operators measured on {train}"
bbox = [8.5, 52.7, 10.2, 53.6]
segment_m = 50.0
seed = 2021
default_departure = "{start}"
{networks}"""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "map.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run() -> dict[str, Any]:
    """Replay both days on the other day's map and return the figures."""
    if not SOURCE.is_file():
        return {"skipped": f"{SOURCE} not found"}
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        records = read_hamburg_bremen(SOURCE)
        records = records[records["drive_id"].str.startswith(("Messfahrt1", "Messfahrt2"))]
        records.to_parquet(root / "records.parquet")
        t = pd.to_datetime(records["timestamp"], utc=True)
        for train, test in (("13sep", "17sep"), ("17sep", "13sep")):
            spec = _spec(root / train, str(root / "records.parquet"), train)
            cmap = CommMap.load(build_map(spec, spec.parent / "built"))
            start, end = DAYS[test]
            drive = records[(t >= pd.Timestamp(start)) & (t < pd.Timestamp(end))]
            known = drive_seconds(records[(t >= pd.Timestamp(DAYS[train][0]))
                                          & (t < pd.Timestamp(DAYS[train][1]))])  # fmt: skip
            order = np.argsort(known.outage.sum(axis=0), kind="stable")
            priority = [known.network_ids[j] for j in order]

            def planner(m: CommMap, r: Route, vehicle: str) -> PlanResult:
                return plan_route(m, PlanRequest(route=r, vehicle=vehicle))

            replay = replay_drive(cmap, drive, planner=planner, priority=priority)
            key = f"{train}_to_{test}"
            write_replay_report(replay, OUT / f"{train}-to-{test}", serving=False)
            figures[f"{key}.priority"] = ",".join(priority)
            for vehicle, by_policy in replay.scores.items():
                for policy, score in by_policy.items():
                    k = f"{key}.{vehicle}.{policy}"
                    figures[f"{k}.loss_s_per_h"] = round(score.service_loss_s_per_hour, 1)
                    figures[f"{k}.events_per_h"] = round(score.loss_events_per_hour, 2)
                    figures[f"{k}.longest_s"] = score.longest_loss_s
                    figures[f"{k}.switches_per_h"] = round(score.switches_per_hour, 2)
            split = replay.breakdown()
            for row in split[split["policy"] == "commap - oracle"].to_dict("records"):
                for part in ("reactive_switch_s", "proactive_switch_s", "all_out_s",
                             "standby_fine_s", "other_fine_s", "on_unknown_s"):  # fmt: skip
                    figures[f"{key}.{row['vehicle']}.excess.{part}_per_h"] = row[part]
            for row in replay.versus().itertuples(index=False):
                k = f"{key}.{row.vehicle}"
                figures[f"{k}.best_map_free"] = row.best_map_free
                figures[f"{k}.commap_excess_ratio"] = row.excess_ratio
                figures[f"{k}.bar_met"] = row.met
            assert all(p in MAP_FREE or p in ("commap", "commap_open_loop", "oracle", "best_single", "best_pair", "rules_without_plan")
                       for v in replay.scores.values() for p in v)  # fmt: skip
            figures[f"{key}.scored_s"] = len(replay.seconds)
            figures[f"{key}.unknown_share"] = round(max(replay.unknown_share.values()), 3)
    return figures
