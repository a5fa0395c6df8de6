"""Run every benchmark module and write the figures to ``<out>/results.json`` and ``results.md``.

Usage: ``python -m bench --out bench/results [--only NAME ...]`` (with ``--only`` the other
benchmarks' figures of the earlier run are kept, each with the time it ran). Each ``bench/bench_<name>.py``
exposes ``run() -> dict[str, float | str]``; figures are medians of repeats measured in one run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from commap.files import write_text_atomic


def _earlier(path: Path) -> dict[str, Any]:
    """The benchmarks of an earlier run, kept when only some run again (``--only``)."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    benchmarks = earlier.get("benchmarks", {}) if isinstance(earlier, dict) else {}
    for entry in benchmarks.values():
        entry.setdefault("when", earlier.get("when", ""))
    return dict(benchmarks)


def _modules(only: list[str]) -> list[str]:
    package_dir = Path(__file__).parent
    names = sorted(
        m.name for m in pkgutil.iter_modules([str(package_dir)]) if m.name.startswith("bench_")
    )
    if only:
        names = [n for n in names if n.removeprefix("bench_") in only or n in only]
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--only", nargs="*", default=[])
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "benchmarks": _earlier(args.out / "results.json") if args.only else {},
    }
    failed = 0
    for name in _modules(args.only):
        print(f"[bench] {name} ...", flush=True)
        start = time.perf_counter()
        try:
            figures = importlib.import_module(f"bench.{name}").run()
            status = "ok"
        except Exception:  # a failing benchmark is reported, the others still run
            traceback.print_exc()
            figures, status = {}, "failed"
            failed += 1
        results["benchmarks"][name] = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "status": status,
            "wall_s": round(time.perf_counter() - start, 2),
            "figures": figures,
        }
        for key, value in figures.items():
            print(f"    {key}: {value}", flush=True)
    write_text_atomic(args.out / "results.json", json.dumps(results, indent=2) + "\n")
    lines = [f"# commap benchmarks ({results['when']}, {results['machine']['cpus']} cpus)", ""]
    for name, entry in results["benchmarks"].items():
        lines += [
            f"## {name} ({entry['status']}, {entry['wall_s']} s, {entry.get('when', '')})",
            "",
            "| figure | value |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v} |" for k, v in entry["figures"].items()]
        lines.append("")
    write_text_atomic(args.out / "results.md", "\n".join(lines))
    print(f"[bench] results in {args.out}/results.json and results.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
