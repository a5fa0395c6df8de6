"""The evaluation report folder: tables (CSV, Markdown) and charts (PNG, matplotlib Agg).

:func:`write_evaluation_report` writes, for an :class:`commap.sim.evaluate.EvaluationResult`:

* ``summary.csv``: one row per truth, vehicle set-up and policy, the truth judged second by
  second (:mod:`commap.sim.synthetic`; ``truth``, ``vehicle``, ``policy``,
  ``service_loss_s_per_hour``, ``loss_events_per_hour``, ``longest_loss_s``,
  ``switches_per_hour``, ``satellite_mb``, then the counts); without set-ups to judge, the
  drive simulator's table below;
* ``drops_3gpp.csv``: the drive simulator's table (100 ms steps, one modem with a SIM per
  operator and an always-on satellite terminal): one row per policy (``policy``,
  ``rlf_per_hour``, ``hof_per_hour``, ``avoidable_drops_per_hour``, ``handovers_per_hour``,
  ``ping_pong_ratio``, ``outage_s_per_hour``, ``longest_outage_s``, ``satellite_mb`` first, then
  every other figure with its ``_ci95`` half-width and the paired comparison against
  ``a3_default``);
* ``runs.csv``: every run (policy x route x seed); ``a3_sweep.csv``: the tuned-A3 sweep;
* ``summary.md``: the setup, the per-set-up tables, the bar and the ablation per set-up, where
  the lost seconds go, the simulator's table with 95 % intervals, its targets and the tuned A3
  choice;
* ``drops_per_policy.png``, ``strip_chart.png``, ``outage_cdf.png``.

Charts are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas (no pyplot
state, no display needed). Every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray

from commap.arrays import FloatArray
from commap.files import atomic_path, write_text_atomic
from commap.out.style import network_colors, policy_color

if TYPE_CHECKING:
    from commap.sim.evaluate import EvaluationResult, StripData
    from commap.sim.replay import CorkReplay, StarlinkBridges

__all__ = [
    "evaluation_markdown",
    "plot_cork_replay",
    "plot_drops",
    "plot_evaluation_strip",
    "plot_outage_cdf",
    "plot_starlink_bridges",
    "summary_rows",
    "write_evaluation_report",
]

log = logging.getLogger(__name__)


_TABLE = (
    ("rlf_per_hour", "RLF/h"),
    ("hof_per_hour", "HOF/h"),
    ("avoidable_drops_per_hour", "avoidable drops/h"),
    ("unavoidable_drops_per_hour", "unavoidable/h"),
    ("avoidable_drops_per_100km", "avoidable/100 km"),
    ("handovers_per_hour", "handovers/h"),
    ("ping_pong_ratio", "ping-pong 1 s"),
    ("ping_pong_ratio_5s", "ping-pong 5 s"),
    ("outage_s_per_hour", "outage s/h"),
    ("longest_outage_s", "longest outage s"),
    ("satellite_mb", "satellite MB"),
)


def _write_text(path: Path, text: str) -> Path:
    write_text_atomic(path, text)
    return path


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    return path


def write_evaluation_report(result: EvaluationResult, out_dir: Path) -> list[Path]:
    """Write every report file into ``out_dir`` (created); returns their paths.

    Examples
    --------
    >>> write_evaluation_report.__name__
    'write_evaluation_report'
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [
        _write_text(
            out_dir / "summary.csv", summary_rows(result).to_csv(index=False, float_format="%.6g")
        ),
        _write_text(
            out_dir / "drops_3gpp.csv", result.summary.to_csv(index=False, float_format="%.6g")
        ),
        _write_text(out_dir / "runs.csv", result.runs.to_csv(index=False, float_format="%.6g")),
        _write_text(
            out_dir / "a3_sweep.csv", result.sweep.to_csv(index=False, float_format="%.6g")
        ),
        _write_text(out_dir / "summary.md", evaluation_markdown(result)),
        plot_drops(result.summary, out_dir / "drops_per_policy.png"),
        plot_outage_cdf(result.outage_durations_s, out_dir / "outage_cdf.png"),
    ]
    if result.strip is not None:
        files.append(plot_evaluation_strip(result.strip, out_dir / "strip_chart.png"))
    if result.cork is not None:
        files.append(plot_cork_replay(result.cork, out_dir / "cork_a3_replay.png"))
    if result.a3_calibration is not None:
        table = result.a3_calibration.table().to_csv(index=False)
        files.append(_write_text(out_dir / "a3_calibration.csv", table))
    if result.autobahn is not None:
        files.append(plot_starlink_bridges(result.autobahn, out_dir / "starlink_bridges.png"))
    log.info("evaluation report written to %s (%d files)", out_dir, len(files))
    return files


def summary_rows(result: EvaluationResult) -> pd.DataFrame:
    """The rows of ``summary.csv``: the truth second by second on every vehicle set-up, or
    the drive simulator's table where no set-up was judged that way.

    Examples
    --------
    >>> summary_rows.__name__
    'summary_rows'
    """
    rows = result.seconds.summary()
    return rows if len(rows) else result.summary


def _fmt(value: Any, ci: Any = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{float(value):.3g}" if abs(float(value)) < 1000 else f"{float(value):.0f}"
    if ci is not None and isinstance(ci, float) and math.isfinite(ci):
        # float noise of identical values (e.g. the same tunnel in every seed) is no spread
        text += f" ± {ci:.2g}" if ci > 1e-9 * max(1.0, abs(float(value))) else " ± 0"
    return text


def evaluation_markdown(result: EvaluationResult) -> str:
    """The Markdown summary (setup, table with 95 % intervals, targets, tuned A3).

    Examples
    --------
    >>> evaluation_markdown.__name__
    'evaluation_markdown'
    """
    cfg = result.config
    lines = [
        f"# Drops benchmark: map `{result.map_name}`",
        "",
        f"{result.seeds} seeds x {len(result.scenarios)} routes, truth shadowing sigma "
        f"{result.sigma_db:g} dB (decorrelation {cfg.truth.decorrelation_m:g} m), map "
        f"over-reporting {cfg.truth.over_report_db:g} dB, application `{cfg.app}`, plans with "
        f"a {cfg.min_dwell_s:g} s minimum dwell. Values: mean over seeds ± 95 % CI half-width; a "
        "seed drives every route once. Wall time "
        f"{result.wall_s:.0f} s.",
        "",
        "| route | km | min | segments | commap plan switches |",
        "|---|---:|---:|---:|---:|",
    ]
    for sc in result.scenarios:
        switches = int((sc.plan[1:] != sc.plan[:-1]).sum())
        lines.append(
            f"| {sc.name} | {sc.length_km:.1f} | "
            f"{sc.corridor.total_duration_s / 60:.1f} | {len(sc.corridor)} | {switches} |"
        )
    lines += _seconds_lines(result)
    lines += [
        "",
        "## Results of the drive simulator (3GPP counts)",
        "",
        "The same truths driven at 100 ms steps with 3GPP radio-link monitoring, one modem with "
        "a SIM per operator and an always-on satellite terminal (`drops_3gpp.csv`).",
        "",
    ]
    head = "| policy | " + " | ".join(label for _, label in _TABLE) + " | avoidable vs A3 |"
    lines += [head, "|---" * (len(_TABLE) + 2) + "|"]
    for _, row in result.summary.iterrows():
        cells = [_fmt(row.get(c), row.get(f"{c}_ci95")) for c, _ in _TABLE]
        vs = row.get("avoidable_vs_a3_pct")
        vs_text = "-" if row["policy"] == "a3_default" or vs is None else f"{float(vs):+.0f} %"
        lines.append(f"| {row['policy']} | " + " | ".join(cells) + f" | {vs_text} |")
    lines += _loss_lines(result.summary)
    lines += ["", "## Targets", ""]
    lines += _bar_lines(result.bar)
    if not result.sweep.empty and "chosen" in result.sweep.columns:
        lines += [
            "",
            "## Tuned A3 (best of the hysteresis x TTT sweep per route)",
            "",
            "| route | hysteresis dB | TTT ms | avoidable drops per run | handovers per run |",
            "|---|---:|---:|---:|---:|",
        ]
        for _, row in result.sweep[result.sweep["chosen"]].iterrows():
            lines.append(
                f"| {row['route']} | {row['hysteresis_db']:g} | {row['ttt_ms']:g} | "
                f"{row['avoidable_drops']:.2f} | {row['handovers']:.1f} |"
            )
    lines += _replay_lines(result)
    files = [
        "summary.csv",
        "drops_3gpp.csv",
        "runs.csv",
        "a3_sweep.csv",
        "drops_per_policy.png",
        "strip_chart.png",
        "outage_cdf.png",
    ]
    files += ["cork_a3_replay.png"] if result.cork is not None else []
    files += ["a3_calibration.csv"] if result.a3_calibration is not None else []
    files += ["starlink_bridges.png"] if result.autobahn is not None else []
    lines += ["", "Files: " + ", ".join(f"`{name}`" for name in files) + ".", ""]
    return "\n".join(lines)


_LOSS_TABLE = (
    ("service_loss_s_per_hour", "service loss s/h"),
    ("loss_events_per_hour", "loss events/h"),
    ("longest_outage_s", "longest loss s"),
    ("switches_per_hour", "switches/h"),
    ("satellite_mb", "satellite MB"),
)


def _loss_lines(summary: pd.DataFrame) -> list[str]:
    """The service-loss table and what the plan adds over the same rules without it."""
    lines = ["", "## Service loss (what the application feels)", ""]
    lines += ["| policy | " + " | ".join(label for _, label in _LOSS_TABLE) + " |"]
    lines += ["|---" * (len(_LOSS_TABLE) + 1) + "|"]
    for _, row in summary.iterrows():
        cells = [_fmt(row.get(c), row.get(f"{c}_ci95")) for c, _ in _LOSS_TABLE]
        lines.append(f"| {row['policy']} | " + " | ".join(cells) + " |")
    figures: dict[str, dict[str, float]] = {
        str(row["policy"]): {c: float(row[c]) for c, _ in _LOSS_TABLE if c in row}
        for row in summary.to_dict("records")
    }
    if "commap" in figures and "rules_without_plan" in figures:
        plan, rules = figures["commap"], figures["rules_without_plan"]
        loss, events, switches = (
            "service_loss_s_per_hour",
            "loss_events_per_hour",
            "switches_per_hour",
        )
        saved = rules[loss] - plan[loss]
        lines += [
            "",
            "What the plan adds: `rules_without_plan` drives the same closed-loop rules as "
            "`commap` on a plan made without a map (the home network all the way). With the "
            f"plan the vehicle loses {plan[loss]:.1f} s of service per hour instead of "
            f"{rules[loss]:.1f} s ({'saves' if saved >= 0 else 'costs'} {abs(saved):.1f} s/h), "
            f"in {plan[events]:.1f} instead of {rules[events]:.1f} noticeable gaps per hour, "
            f"with {plan[switches]:.1f} instead of {rules[switches]:.1f} switches per hour.",
        ]
    return lines


def _table(frame: pd.DataFrame) -> list[str]:
    return [
        "| " + " | ".join(str(c) for c in frame.columns) + " |",
        "|" + "---|" * len(frame.columns),
        *("| " + " | ".join(_cell(v) for v in r) + " |" for r in frame.itertuples(index=False)),
    ]


def _cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "-" if math.isnan(value) else f"{float(value):.3g}"
    return str(value)


def _seconds_lines(result: EvaluationResult) -> list[str]:
    """Every set-up second by second: the table, the bar, the ablation, where the loss goes."""
    summary = result.seconds.summary()
    if not len(summary):
        return []
    lines = [
        "",
        "## Every vehicle set-up, second by second",
        "",
        "Each truth on a one-second grid, scored by the same policies and rules as the real "
        "drives (`commap replay`): an outage second is one whose median SINR is below Qout "
        "(-5 dB) or RSRP below -115 dBm; a lost second is the serving link's outage or a "
        "switch's interruption on that set-up. Set-ups without a satellite terminal drive the "
        "terrestrial networks only. Figures per hour of all routes and seeds; satellite MB per "
        "seed.",
        "",
    ]
    columns = [
        "vehicle",
        "policy",
        "service_loss_s_per_hour",
        "loss_events_per_hour",
        "longest_loss_s",
        "switches_per_hour",
        "satellite_mb",
    ]
    lines += _table(summary[columns])
    versus = result.seconds.versus()
    if len(versus):
        lines += ["", "### The bar per set-up", ""]
        records = [{str(k): v for k, v in row.items()} for row in versus.to_dict("records")]
        lines += [_bar_line(row) for row in records]
        lines += _unplanned_lines(summary, {str(r["vehicle"]) for r in records})
        lines += ["", "### What the plan adds", ""]
        lines += [_ablation_line(row) for row in records]
    split = result.seconds.breakdown()
    if len(split):
        lines += [
            "",
            "### Where the lost seconds go (per hour)",
            "",
            *_table(split),
            "",
            "`reactive_switch_s`: interrupted by a failover; `proactive_switch_s`: by a change "
            "off a working link (a planned switch); `all_out_s`: every network the set-up can "
            "use out; `standby_fine_s`: the standby's network up; `other_fine_s`: only a "
            "network the vehicle was not registered on up. `commap - oracle`: where commap's "
            "excess comes from.",
        ]
    return lines


def _unplanned_lines(summary: pd.DataFrame, planned: set[str]) -> list[str]:
    """The set-ups without a plan (a bonded pair): their policies' loss, best first."""
    lines = []
    for vehicle, rows in summary.groupby("vehicle", sort=False):
        if vehicle in planned:
            continue
        ranked = rows.sort_values("service_loss_s_per_hour")
        figures = ", ".join(
            f"`{r['policy']}` {float(r['service_loss_s_per_hour']):.1f} s/h"
            for r in ranked.to_dict("records")
        )
        lines.append(f"* {vehicle}: no plan (the planner picks one network per segment); {figures}")
    return lines


def _bar_line(row: dict[str, Any]) -> str:
    """One set-up's bar: excess over the oracle vs the best map-free baseline's, switches."""
    commap, oracle = row["commap_loss_s_per_hour"], row["oracle_loss_s_per_hour"]
    best, base = row["best_map_free"], row["best_map_free_loss_s_per_hour"]
    ratio = row["excess_ratio"]
    fewer = row["commap_switches_per_hour"] <= row["best_map_free_switches_per_hour"]
    ratio_text = (
        f"{ratio:.2f} of the baseline's {base - oracle:.1f}"
        if not math.isnan(ratio)
        else f"undefined: the baseline loses {base - oracle:+.1f} s/h against the oracle"
    )
    return (
        f"* {row['vehicle']}: commap {commap:.1f} s/h, oracle {oracle:.1f}, best map-free "
        f"`{best}` {base:.1f}; commap's excess {commap - oracle:.1f} s/h is {ratio_text} "
        f"(at most 0.5: {'yes' if ratio <= 0.5 else '**no**'}); switches per hour "
        f"{row['commap_switches_per_hour']:.1f} vs {row['best_map_free_switches_per_hour']:.1f}"
        f" (no more: {'yes' if fewer else '**no**'}); "
        f"bar met: {'yes' if row['met'] else '**no**'}"
    )


def _ablation_line(row: dict[str, Any]) -> str:
    """What the plan adds on one set-up: commap against the same rules without the plan."""
    if "rules_without_plan_loss_s_per_hour" not in row:
        return f"* {row['vehicle']}: no rules-without-plan row"
    plan, rules = row["commap_loss_s_per_hour"], row["rules_without_plan_loss_s_per_hour"]
    saved = rules - plan
    return (
        f"* {row['vehicle']}: with the plan the same closed-loop rules lose {plan:.1f} s/h "
        f"instead of {rules:.1f} ({'saves' if saved >= 0 else 'costs'} {abs(saved):.1f} s/h), "
        f"with {row['commap_switches_per_hour']:.1f} instead of "
        f"{row['rules_without_plan_switches_per_hour']:.1f} switches per hour"
    )


def _replay_lines(result: EvaluationResult) -> list[str]:
    lines: list[str] = []
    if result.cork is not None:
        c = result.cork
        lines += [
            "",
            "## Real traces: A3 on the Cork drive test",
            "",
            f"Trace `{c.trace}` ({c.t_s[-1] / 60:.0f} min), A3 {c.params.label} on measured "
            f"RSRP (neighbours from the other drives): **{c.predicted_changes.size}** "
            f"serving-cell changes predicted vs **{c.real_changes.size}** real; "
            f"{c.matched} matched within {c.tolerance_s:g} s and {c.tolerance_m:g} m "
            f"(precision {c.precision:.2f}, recall {c.recall:.2f}). Chart: `cork_a3_replay.png`.",
        ]
    if result.a3_calibration is not None:
        lines += ["", result.a3_calibration.markdown().rstrip()]
    if result.autobahn is not None:
        a = result.autobahn
        (bz, bn), (oz, on) = a.contingency
        lines += [
            "",
            "## Real traces: Starlink under Autobahn bridges",
            "",
            "| seconds | zero throughput | > 0 |",
            "|---|---:|---:|",
            f"| under a bridge (layer) | {bz} | {bn} |",
            f"| open sky | {oz} | {on} |",
            "",
            f"{a.passages} bridge passages, {a.passages_confirmed} with a zero second within "
            f"±{a.tolerance_s:g} s (precision {a.precision:.2f}); {a.outages} outages, "
            f"{a.outages_explained} at a bridge (recall {a.recall:.2f}). Downlink dips below "
            f"half its local median in {100 * a.dip_share_blocked:.0f} % of bridge seconds vs "
            f"{100 * a.dip_share_open:.0f} % elsewhere: bridges cost well under a second at "
            "motorway speed. Chart: `starlink_bridges.png`. Data CC BY-SA 4.0, Laniewski et al. "
            "2025.",
        ]
    return lines


def _bar_lines(bar: dict[str, Any]) -> list[str]:
    if not bar:
        return ["(commap or a3_default was not evaluated)"]
    lines = [
        "The targets are about `commap`: the plan made on the planner's map, executed the way",
        "commap executes it (closed loop: a planned switch waits until the target measures well, a",
        "weak link is left before it fails), against `oracle`, the plan made on the truth, executed",
        "alike:",
        "",
    ]
    lines += _pair_lines(bar, "commap_", "", "commap", "oracle")
    if "open_loop_passed" in bar:
        lines += [
            "",
            "The same figures open loop (switches at the planned points only),",
            "`commap_open_loop` against `oracle_open_loop`:",
            "",
        ]
        lines += _pair_lines(
            bar, "open_loop_", "open_loop_", "commap_open_loop", "oracle_open_loop"
        )
    return lines


def _pair_lines(
    bar: dict[str, Any], value_prefix: str, flag_prefix: str, plan: str, oracle: str
) -> list[str]:
    def mark(key: str) -> str:
        return "yes" if bar.get(flag_prefix + key) else "**no**"

    def num(key: str) -> float:
        return float(bar[value_prefix + key])

    reduction = float(bar[flag_prefix + "avoidable_reduction_pct"])
    lines = [
        f"* avoidable RLF+HOF per hour: {plan} {num('avoidable_drops_per_hour'):.3g} vs A3 "
        f"{bar['a3_avoidable_drops_per_hour']:.3g}: {reduction:.0f} % fewer (>= 50 %: "
        f"{mark('fewer_avoidable_drops_50pct')})",
        f"* handovers per hour: {plan} {num('handovers_per_hour'):.3g} vs A3 "
        f"{bar['a3_handovers_per_hour']:.3g} (no more: {mark('no_more_handovers_than_a3')})",
        f"* ping-pong ratio (1 s): {plan} {num('ping_pong_ratio'):.3g}, 5 s: "
        f"{num('ping_pong_ratio_5s'):.3g} (none within 1 s: {mark('no_ping_pong')})",
    ]
    if flag_prefix + "oracle_avoidable_drops_per_hour" in bar:
        lines.append(
            f"* {oracle}: {bar[flag_prefix + 'oracle_avoidable_drops_per_hour']:.3g} avoidable "
            f"drops per hour; {plan} {num('over_oracle_pct'):+.0f} % (within 10 %: "
            f"{mark('within_10pct_of_oracle')})"
        )
    lines.append(f"* all criteria met: {mark('passed')}")
    return lines


def plot_drops(summary: pd.DataFrame, path: Path) -> Path:
    """Bar chart: avoidable and unavoidable drops per hour per policy, 95 % CI error bars.

    Examples
    --------
    >>> plot_drops.__name__
    'plot_drops'
    """
    fig = Figure(figsize=(8, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(summary))
    width = 0.38
    for offset, column, label, hatch in (
        (-width / 2, "avoidable_drops_per_hour", "avoidable", ""),
        (width / 2, "unavoidable_drops_per_hour", "unavoidable", "//"),
    ):
        values = summary[column].to_numpy(dtype=np.float64)
        ci = np.nan_to_num(
            summary.get(f"{column}_ci95", pd.Series(np.zeros(len(summary)))).to_numpy(
                dtype=np.float64
            )
        )
        ax.bar(
            x + offset,
            values,
            width,
            yerr=ci,
            capsize=3,
            label=label,
            hatch=hatch,
            color=[policy_color(p) for p in summary["policy"]],
            edgecolor="black",
            linewidth=0.5,
            alpha=1.0 if not hatch else 0.45,
        )
    ax.set_xticks(x, list(summary["policy"]), rotation=25, ha="right")
    ax.set_ylabel("RLF + HOF per hour")
    ax.set_ylim(bottom=0.0)  # a rate cannot be negative; wide CIs of few seeds are cut at 0
    ax.set_title("Connection drops per policy (mean over seeds, 95 % CI)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_outage_cdf(durations: dict[str, FloatArray], path: Path) -> Path:
    """Empirical CDF of outage durations (every outage of every run) per policy.

    Examples
    --------
    >>> plot_outage_cdf.__name__
    'plot_outage_cdf'
    """
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for policy, values in durations.items():
        v = np.sort(np.asarray(values, dtype=np.float64))
        if v.size == 0:
            continue
        ax.step(
            v,
            np.arange(1, v.size + 1) / v.size,
            where="post",
            color=policy_color(policy),
            label=f"{policy} ({v.size})",
        )
    ax.set_xscale("log")
    ax.set_xlabel("outage duration (s)")
    ax.set_ylabel("fraction of outages <= x")
    ax.set_title("Outage durations (all routes and seeds)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_evaluation_strip(strip: StripData, path: Path) -> Path:
    """Strip chart along one route: truth (and map) SINR per network; serving network per policy.

    Examples
    --------
    >>> plot_evaluation_strip.__name__
    'plot_evaluation_strip'
    """
    fig = Figure(figsize=(11, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    km = strip.distance_m / 1000.0
    thin = max(1, km.size // 4000)  # keep the PNG light on long routes
    by_id = network_colors(strip.network_ids)
    colors = [by_id[nid] for nid in strip.network_ids]  # serving codes index networks
    for j, nid in enumerate(strip.network_ids):
        top.plot(
            km[::thin],
            np.maximum(strip.sinr_db[::thin, j], -32),
            lw=0.7,
            color=colors[j],
            label=f"{nid} (truth)",
        )
        top.plot(
            strip.segment_distance_m / 1000.0,
            np.maximum(strip.planned_sinr_db[:, j], -32),
            lw=0.6,
            ls="--",
            color=colors[j],
            alpha=0.6,
        )
    top.axhline(-5.0, color="black", lw=0.8, ls=":", label="Qout -5 dB")
    top.set_ylabel("SINR dB (dashed: map)")
    top.set_title(f"Route {strip.route}, seed {strip.seed}: quality and serving network")
    top.legend(fontsize=7, ncol=4, loc="upper right")
    top.grid(alpha=0.3)
    policies = list(strip.serving)
    for row, policy in enumerate(policies):
        serving = strip.serving[policy]
        _draw_serving(bottom, km, serving, row, colors)
        fails = strip.failures.get(policy, np.zeros(0)) / 1000.0
        bottom.plot(fails, np.full(fails.size, row), "kx", ms=5)
    bottom.set_yticks(range(len(policies)), policies)
    bottom.set_ylim(-0.6, len(policies) - 0.4)
    bottom.set_xlabel("distance along the route (km); x: RLF/HOF, white: no service")
    return _save(fig, path)


def _draw_serving(
    ax: Any, km: FloatArray, serving: NDArray[np.int64], row: int, colors: list[str]
) -> None:
    if serving.size == 0:
        return
    change = np.flatnonzero(np.diff(serving)) + 1
    starts = np.concatenate(([0], change))
    stops = np.concatenate((change, [serving.size]))
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        net = int(serving[a])
        if net < 0:
            continue
        end = km[b] if b < km.size else km[-1]
        ax.barh(row, end - km[a], left=km[a], height=0.7, color=colors[net], linewidth=0)


def plot_cork_replay(replay: CorkReplay, path: Path) -> Path:
    """Measured serving RSRP with real and A3-predicted serving-cell changes along the trace.

    Examples
    --------
    >>> plot_cork_replay.__name__
    'plot_cork_replay'
    """
    fig = Figure(figsize=(11, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    t_min = replay.t_s / 60.0
    ax.plot(t_min, replay.serving_rsrp_dbm, lw=0.7, color="#555555", label="serving RSRP")
    low, high = float(np.nanmin(replay.serving_rsrp_dbm)), float(np.nanmax(replay.serving_rsrp_dbm))
    ax.vlines(
        replay.t_s[replay.real_changes] / 60.0,
        high,
        high + 4,
        color="#1f77b4",
        label=f"real changes ({replay.real_changes.size})",
    )
    ax.vlines(
        replay.t_s[replay.predicted_changes] / 60.0,
        low - 4,
        low,
        color="#d62728",
        label=f"A3-predicted ({replay.predicted_changes.size})",
    )
    ax.set_xlabel("minutes into the trace")
    ax.set_ylabel("RSRP dBm")
    ax.set_title(
        f"Cork drive test {replay.trace}: serving-cell changes, real vs A3 "
        f"(matched within {replay.tolerance_s:g} s: precision {replay.precision:.2f}, "
        f"recall {replay.recall:.2f})"
    )
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_starlink_bridges(result: StarlinkBridges, path: Path) -> Path:
    """Measured Starlink downlink along the Autobahn run with bridge-blocked and zero seconds.

    Examples
    --------
    >>> plot_starlink_bridges.__name__
    'plot_starlink_bridges'
    """
    fig = Figure(figsize=(11, 5))
    ax, tab = fig.subplots(1, 2, gridspec_kw={"width_ratios": [4, 1.3]})
    minutes = (result.t_s - result.t_s[0]) / 60.0
    gap = np.r_[False, np.diff(result.t_s) > 10.0]  # no line across logging pauses
    line = np.where(gap, np.nan, result.download_mbps)
    ax.plot(minutes, line, lw=0.4, color="#555555", label="downlink Mbit/s")
    zero = result.zero
    ax.plot(
        minutes[zero],
        np.zeros(zero.sum()),
        "o",
        ms=3,
        color="#d62728",
        label=f"zero-throughput seconds ({int(zero.sum())})",
    )
    blocked = result.blocked
    ax.plot(
        minutes[blocked],
        np.full(blocked.sum(), -15.0),
        "|",
        ms=8,
        color="#1f77b4",
        label=f"layer: under a bridge ({int(blocked.sum())})",
    )
    ax.set_xlabel("minutes into the run (blank: logging paused)")
    ax.set_ylabel("Mbit/s")
    ax.set_title("Starlink on the Autobahn: bridges vs measured zero throughput")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    tab.axis("off")
    table = result.contingency
    cells = [[str(table[0][0]), str(table[0][1])], [str(table[1][0]), str(table[1][1])]]
    t = tab.table(
        cellText=cells, rowLabels=["blocked", "open"], colLabels=["zero", "> 0"], loc="center"
    )
    t.scale(1.0, 1.6)
    tab.set_title(
        f"±{result.tolerance_s:g} s: precision {result.precision:.2f}\nrecall {result.recall:.2f}",
        fontsize=9,
    )
    return _save(fig, path)
