"""Evaluation: truth field, drive simulator, 3GPP reactive baseline, policies, metrics, replays.

Typical use (the ``commap evaluate`` command)::

    from commap.map.comm_map import CommMap
    from commap.sim import evaluate_map
    result = evaluate_map(CommMap.load("andorra"), seeds=20, sigma_db=6.0)
    print(result.bar)

Modules: :mod:`~commap.sim.a3` (measurement chain and A3 event), :mod:`~commap.sim.truth`
(seeded truth field), :mod:`~commap.sim.drive` (100 ms simulator with RLF/HOF),
:mod:`~commap.sim.policies`, :mod:`~commap.sim.metrics`, :mod:`~commap.sim.evaluate`,
:mod:`~commap.sim.replay` (Cork drive tests and the A3 calibration, Starlink on the Autobahn),
:mod:`~commap.sim.seconds`, :mod:`~commap.sim.failover` and :mod:`~commap.sim.multidrive`
(real multi-network drives: map-free baselines per vehicle set-up) and
:mod:`~commap.out.evaluation_report` (CSV, Markdown, PNG).
"""

from commap.sim.a3 import A3Params, A3Trigger, a3_serving, two_cell_handover_m
from commap.sim.drive import DriveLog, Event, Measurements, Policy, SimConfig, simulate
from commap.sim.evaluate import (
    DEFAULT_ROUTES,
    EvaluationConfig,
    EvaluationResult,
    check_bar,
    default_routes,
    evaluate_map,
)
from commap.sim.metrics import aggregate, run_metrics
from commap.sim.policies import (
    A3_DEFAULT,
    A3_SWEEP,
    EXTRA_POLICY_NAMES,
    POLICY_NAMES,
    A3Policy,
    FallbackPlanPolicy,
    GreedyPolicy,
    PlanPolicy,
    StickyPolicy,
)
from commap.sim.replay import (
    CorkReplay,
    RealTraces,
    StarlinkBridges,
    replay_cork,
    starlink_bridges,
)
from commap.sim.truth import TruthConfig, TruthField, make_truth

__all__ = [
    "A3_DEFAULT",
    "A3_SWEEP",
    "DEFAULT_ROUTES",
    "EXTRA_POLICY_NAMES",
    "POLICY_NAMES",
    "A3Params",
    "A3Policy",
    "A3Trigger",
    "CorkReplay",
    "DriveLog",
    "EvaluationConfig",
    "EvaluationResult",
    "Event",
    "FallbackPlanPolicy",
    "GreedyPolicy",
    "Measurements",
    "PlanPolicy",
    "Policy",
    "RealTraces",
    "SimConfig",
    "StarlinkBridges",
    "StickyPolicy",
    "TruthConfig",
    "TruthField",
    "a3_serving",
    "aggregate",
    "check_bar",
    "default_routes",
    "evaluate_map",
    "make_truth",
    "replay_cork",
    "run_metrics",
    "simulate",
    "starlink_bridges",
    "two_cell_handover_m",
]
