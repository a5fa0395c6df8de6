"""How fast the ``commap`` command answers, timed as whole processes (median of 5 runs).

* ``commap --help``, ``commap plan --help`` and an argument error (``--from 91,1.5``): the
  target is < 0.3 s on an idle machine; they import no heavy library (tests/test_cli.py).
* The README's two ``commap plan`` lines on the default map, end to end (target < 1.5 s each):
  the plain one (defaults: telemetry, 10 s dwell, no global limit: the exact DP) and the
  teleoperation one (10 s dwell, at most 6 handovers, 3 route alternatives, written to a
  GeoJSON file: the constrained solver). The solver status and gap of the written plan are
  reported with it (the target: OPTIMAL or a gap under 0.1 %).

* ``map_load_s``: ``CommMap.load`` of the default map in a warm process (its imports done, the
  map loaded once before), the median of 7 loads (target < 0.1 s): what a server or a batch
  worker pays per map, and the map's share of every command.

Each command runs once first so that its bytecode is compiled, as it is for an installed
package (into a temporary ``PYTHONPYCACHEPREFIX``: the shared virtualenv is left untouched).
Figures: the median wall time ``*_s`` and the median CPU time of the process ``*_cpu_s`` (user +
system), which is what the wall time is on an idle machine when the machine is shared.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["run"]

REPO = Path(__file__).resolve().parents[1]
REPEATS = 5
PLAIN_PLAN_ARGS = ["plan", "--map", "andorra", "--from", "42.5063,1.5218", "--to", "42.5430,1.7330"]
PLAN_ARGS = [
    *PLAIN_PLAN_ARGS,
    "--app",
    "teleoperation",
    "--min-dwell-s",
    "10",
    "--max-handovers",
    "6",
    "--alternatives",
    "3",
]


def _command() -> list[str]:
    script = Path(sys.executable).with_name("commap")
    return [str(script)] if script.exists() else [sys.executable, "-m", "commap.cli"]


def _time(args: list[str], env: dict[str, str], *, expect: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``commap ARGS`` over REPEATS runs (after one warm-up)."""
    walls: list[float] = []
    cpus: list[float] = []
    for i in range(REPEATS + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            [*_command(), *args], env=env, cwd=REPO, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != expect:
            raise RuntimeError(f"commap {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
        if i:  # the first run compiles the bytecode
            walls.append(wall)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


_MAP_LOAD = """
import statistics, time
from commap.map.comm_map import CommMap
CommMap.load("andorra")
times = []
for _ in range(7):
    start = time.perf_counter()
    CommMap.load("andorra")
    times.append(time.perf_counter() - start)
print(statistics.median(times))
"""


def _map_load_s(env: dict[str, str]) -> float:
    """Median seconds of ``CommMap.load`` of the default map in a warm process."""
    done = subprocess.run(
        [sys.executable, "-c", _MAP_LOAD], env=env, cwd=REPO, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"map load: exit {done.returncode}\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


def run() -> dict[str, Any]:
    """Time the instant commands and the README's plan line; return the figures."""
    with tempfile.TemporaryDirectory(prefix="commap-bench-cli-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPATH"] = str(REPO)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        plan_file = Path(tmp) / "plan.geojson"
        cases = {
            "help": (["--help"], 0),
            "plan_help": (["plan", "--help"], 0),
            "bad_argument": (
                ["plan", "--map", "andorra", "--from", "91,1.5", "--to", "42.5,1.7"],
                2,
            ),
            "plain_plan": (PLAIN_PLAN_ARGS, 0),
            "readme_plan": ([*PLAN_ARGS, "--out", str(plan_file)], 0),
        }
        figures: dict[str, Any] = {"repeats": REPEATS}
        for name, (args, expect) in cases.items():
            wall_s, cpu_s = _time(args, env, expect=expect)
            figures[f"{name}_s"] = round(wall_s, 3)
            figures[f"{name}_cpu_s"] = round(cpu_s, 3)
        solver = json.loads(plan_file.read_text(encoding="utf-8"))["commap"]["solver"]
        figures["readme_plan_status"] = solver["status"]
        figures["readme_plan_gap"] = solver["gap"]
        figures["readme_plan_cost"] = solver["objective"]
        figures["map_load_s"] = round(_map_load_s(env), 3)
        figures["load_average_1min"] = round(os.getloadavg()[0], 2)
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
