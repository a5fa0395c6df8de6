"""The report folder of ``commap replay``: policies scored second by second on a real drive.

Files written by :func:`write_replay_report`:

``summary.csv``
    one row per vehicle set-up and policy (:meth:`commap.sim.multidrive.Replay.summary`):
    ``truth``, ``vehicle``, ``policy``, service-loss seconds, loss events and switches per
    hour, the longest loss, satellite MB, then the counts (lost seconds, switches,
    switch-interruption seconds, scored seconds).
``summary.md``
    the same as a Markdown table, with the drive's seconds, legs and per-network outage
    seconds, and the share of the drive where the map had no data near (``unknown``).
``serving.csv``
    per scored second: time, position, each network's outage flag and, per set-up and policy
    (column ``vehicle/policy``), its network (``a+b`` for a bonded pair).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from commap.files import write_text_atomic
from commap.sim.multidrive import Replay

__all__ = ["replay_markdown", "write_replay_report"]

log = logging.getLogger(__name__)


def replay_markdown(replay: Replay, *, title: str = "Replay of a multi-network drive") -> str:
    """The summary as Markdown (see the module docstring)."""
    s = replay.seconds
    table = replay.summary()
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "---|" * len(table.columns)
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    per_network = ", ".join(
        f"{nid} {int(n)} s" for nid, n in zip(s.network_ids, s.outage.sum(axis=0), strict=True)
    )
    unknown = ", ".join(f"{nid} {100 * v:.0f} %" for nid, v in replay.unknown_share.items())
    versus = replay.versus()
    bar: list[str] = []
    if len(versus):
        bar = [
            "## Commap against the best map-free baseline on each set-up",
            "",
            *_frame_rows(versus),
            "",
            "`excess_ratio`: commap's lost seconds in excess of the oracle's over the best "
            "map-free baseline's (nan: the oracle loses no fewer seconds than that baseline); "
            "`met`: ratio at most 0.5 with no more switches than the baseline.",
            "",
        ]
    split = replay.breakdown()
    if len(split):
        bar += [
            "## Where the lost seconds go (per hour)",
            "",
            *_frame_rows(split),
            "",
            "`reactive_switch_s`: interrupted by a change away from a link in outage (a "
            "failover); `proactive_switch_s`: by a change away from a working link (a planned "
            "switch, a return to the plan); `all_out_s`: every network out; `standby_fine_s`: "
            "the standby's network was up (still registering, or no failover); "
            "`other_fine_s`: only a network the vehicle was not registered on was up; "
            "`on_unknown_s`: the lost seconds where the map had no data near. "
            "`commap - oracle`: where commap's excess over the oracle comes from.",
            "",
        ]
    lines = [
        f"# {title}",
        "",
        f"{len(s)} seconds scored in {len(s.pieces())} legs ({s.unscored_s} seconds without a "
        "record of every network not scored).",
        f"Outage seconds per network: {per_network}.",
        f"Map unknown (no data near) along the drive: {unknown or 'none'}.",
        "",
        header,
        rule,
        *rows,
        "",
        *bar,
    ]
    return "\n".join(lines)


def write_replay_report(replay: Replay, out_dir: str | Path, *, serving: bool = True) -> Path:
    """Write ``summary.csv``, ``summary.md`` and (``serving``) ``serving.csv`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "summary.csv", replay.summary().to_csv(index=False))
    write_text_atomic(out / "summary.md", replay_markdown(replay))
    if serving:
        _write_serving(replay, out / "serving.csv")
    log.info("replay report written to %s", out)
    return out


def _write_serving(replay: Replay, path: Path) -> None:
    s = replay.seconds
    frame = pd.DataFrame(
        {
            "t": pd.to_datetime(s.t_s, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lat": s.lat.round(6),
            "lon": s.lon.round(6),
            "leg": s.piece,
        }
    )
    for j, nid in enumerate(s.network_ids):
        frame[f"outage_{nid}"] = s.outage[:, j].astype(int)
    for vehicle, by_policy in replay.serving.items():
        ids = replay.setup_view(vehicle)[0].network_ids
        for policy, choice in by_policy.items():
            rows = choice.serving if choice.bonded else choice.serving[:, None]
            frame[f"{vehicle}/{policy}"] = ["+".join(ids[i] for i in row) for row in rows.tolist()]
    write_text_atomic(path, frame.to_csv(index=False))


def _frame_rows(frame: pd.DataFrame) -> list[str]:
    """The lines of a Markdown table of ``frame``: header, rule, one line per row."""
    return [
        "| " + " | ".join(str(c) for c in frame.columns) + " |",
        "|" + "---|" * len(frame.columns),
        *("| " + " | ".join(str(v) for v in r) + " |" for r in frame.itertuples(index=False)),
    ]
