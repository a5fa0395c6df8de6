"""Planning defaults: the one table every front door plans with.

The CLI (``commap plan``), the gRPC server (a request's unset fields) and the Python API
(:class:`commap.service.planning.PlanRequest`, the solvers of :mod:`commap.plan`) take their
defaults from here, so a plan asked for without options is the same plan everywhere.

==========================  =============  =====================================================
Name                        Value          Meaning
==========================  =============  =====================================================
``APP``                     ``telemetry``  application class planned for
``MIN_DWELL_S``             10 s           minimum time on a network after switching to it
``MIN_DWELL_M``             0 m            minimum distance on it (none)
``MAX_HANDOVERS``           None           no limit on the number of handovers
``SAT_BUDGET_MB``           None           no satellite data budget
``ALTERNATIVES``            1              route alternatives planned (just the fastest route)
``MAX_ALTERNATIVES``        10             most route alternatives a request may ask for
``SECONDS_PER_DROP``        60 s           travel time one avoided expected drop is worth
``SOLVER``                  ``auto``       exact DP, CP-SAT with a handover limit or budget
``SOLVER_TIME_LIMIT_S``     5 s            wall-clock limit of one solve (per route)
``SEED``                    0              solver random seed
``EXECUTION_MIN_DWELL_S``   5 s            dwell of the closed-loop execution rules
==========================  =============  =====================================================

Why these values:

* ``MIN_DWELL_S``: 10 s is the documented default (the gRPC interface and the README); a return
  within 1 s counts as ping-pong, and 10 s keeps a plan well clear of it.
* ``SOLVER_TIME_LIMIT_S`` and ``MAX_ALTERNATIVES``: the values the CLI documents
  (``--time-limit-s`` 5, ``--alternatives`` 1..10). They were already what the CLI, the server
  and :class:`~commap.service.planning.PlanRequest` used for the time limit; only direct
  solver calls waited 10 s. The server allowed 5 alternatives where the CLI and the library
  allowed 10, so a CLI plan sent to a server could be refused; the call deadline and the solve
  queue bound the server's work either way.
* ``EXECUTION_MIN_DWELL_S`` is not the planning dwell: it is how long the vehicle stays on a
  network it moved to by itself (a recovery, or leaving a weak link early) before it returns
  to the plan (:class:`commap.plan.execution.ExecutionRules`). The drops evaluation
  (``commap evaluate``) plans and executes with it, and its published figures are measured
  with it: with 10 s there, the evaluated plans let a few returns within 1 s through.
* :class:`~commap.plan.problem.Constraints` itself defaults to no dwell: it is the record of a
  request's hard constraints, and the per-edge table of a built map plans without a dwell.

Examples
--------
>>> MIN_DWELL_S, SOLVER_TIME_LIMIT_S, MAX_ALTERNATIVES
(10.0, 5.0, 10)
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALTERNATIVES",
    "APP",
    "EXECUTION_MIN_DWELL_S",
    "MAX_ALTERNATIVES",
    "MAX_HANDOVERS",
    "MIN_DWELL_M",
    "MIN_DWELL_S",
    "SAT_BUDGET_MB",
    "SECONDS_PER_DROP",
    "SEED",
    "SOLVER",
    "SOLVER_TIME_LIMIT_S",
]

APP: Final = "telemetry"
MIN_DWELL_S: Final = 10.0
MIN_DWELL_M: Final = 0.0
MAX_HANDOVERS: Final[int | None] = None
SAT_BUDGET_MB: Final[float | None] = None
ALTERNATIVES: Final = 1
MAX_ALTERNATIVES: Final = 10
SECONDS_PER_DROP: Final = 60.0
SOLVER: Final = "auto"
SOLVER_TIME_LIMIT_S: Final = 5.0
SEED: Final = 0
EXECUTION_MIN_DWELL_S: Final = 5.0
