"""The validation report folder of ``commap validate``: tables and reliability diagrams.

Files written by :func:`write_validation_report`:

``summary.csv``
    one row per network, KPI and model (:data:`commap.map.validate.SUMMARY_COLUMNS`).
``summary.md``
    the same as Markdown tables, one per network and KPI, with the settings and notes.
``reliability_<network>_<kpi>.png``
    mean predicted P(outage) against the observed outage rate per probability decile, one
    line per model (matplotlib Agg, through :func:`commap.files.atomic_path`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from commap.files import atomic_path, write_text_atomic
from commap.map.validate import SUMMARY_COLUMNS, Validation

__all__ = ["plot_reliability", "validation_markdown", "write_validation_report"]

log = logging.getLogger(__name__)

_MODEL_COLOURS = {
    "learned": "#1b9e77",
    "constant": "#7570b3",
    "knn1": "#d95f02",
    "knn5": "#e7298a",
    "modelled": "#666666",
}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def validation_markdown(validation: Validation) -> str:
    """The summary as Markdown: settings, one table per network and KPI, notes.

    Examples
    --------
    >>> v = Validation("m", {"folds": 5}, pd.DataFrame(columns=list(SUMMARY_COLUMNS)),
    ...                pd.DataFrame(), ["nothing measured"])
    >>> print(validation_markdown(v).splitlines()[0])
    # Validation of the learned map: m
    """
    s = validation.settings
    lines = [
        f"# Validation of the learned map: {validation.map_name}",
        "",
        "Settings: " + ", ".join(f"{k} = {v}" for k, v in s.items()),
        "",
        "Out-of-fold figures: `mae` of p50, mean `pinball` loss of p10/p50/p90, `coverage80` "
        "of [p10, p90] (nominal 0.80), `brier` and `log_loss` of P(outage), "
        "`reliability_max_dev` (largest |mean predicted - observed| over probability deciles "
        "with at least 100 rows), `unknown_share` (no training record within 300 m).",
        "",
    ]
    table = validation.summary
    columns = [c for c in SUMMARY_COLUMNS if c not in ("network", "kpi")]
    for (network, kpi), rows in table.groupby(["network", "kpi"], sort=False):
        lines += [f"## {network} / {kpi}", ""]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for _, row in rows.iterrows():
            cells = [
                str(row[c])
                if c in ("model", "n")
                else ("" if pd.isna(row[c]) else f"{float(row[c]):.4g}")
                for c in columns
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if validation.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in validation.notes] + [""]
    return "\n".join(lines)


def plot_reliability(bins: pd.DataFrame, title: str, path: Path) -> Path:
    """Reliability diagram of every model in ``bins`` (rows of one network and KPI)."""
    fig = Figure(figsize=(5.0, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#bbbbbb", linestyle="--", linewidth=1, label="perfect")
    for model, rows in bins.groupby("model", sort=False):
        ax.plot(
            rows["mean_predicted"],
            rows["observed"],
            marker="o",
            markersize=4,
            color=_MODEL_COLOURS.get(str(model), "#000000"),
            label=str(model),
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted P(outage)")
    ax.set_ylabel("observed outage rate")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    return path


def write_validation_report(validation: Validation, out_dir: Path) -> list[Path]:
    """Write ``summary.csv``, ``summary.md`` and the reliability PNGs into ``out_dir``.

    Returns
    -------
    list of Path
        The files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "summary.csv", out_dir / "summary.md"
    write_text_atomic(csv_path, validation.summary.to_csv(index=False, float_format="%.6g"))
    write_text_atomic(md_path, validation_markdown(validation))
    files = [csv_path, md_path]
    if len(validation.reliability):
        for (network, kpi), rows in validation.reliability.groupby(["network", "kpi"], sort=False):
            name = f"reliability_{_safe(str(network))}_{_safe(str(kpi))}.png"
            files.append(plot_reliability(rows, f"{network} {kpi}", out_dir / name))
    log.info("validation report written to %s (%d files)", out_dir, len(files))
    return files
