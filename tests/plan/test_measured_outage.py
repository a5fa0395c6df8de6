"""Plans on a map that predicts outage seconds from drive records: a failure's recovery is
already among those seconds, so a switch must save more measured outage than it interrupts."""

from __future__ import annotations

import numpy as np

from commap.networks import Network, NetworkCatalogue, NetworkKind
from commap.plan import Constraints, HandoverProblem, evaluate_plan, solve
from commap.radio.quality import Quality, QualityMatrix
from commap.radio.vehicle import vehicle_setup
from tests.support import plan_synthetic as syn

A, B = (
    Network(id=i, kind=NetworkKind.TERRESTRIAL, operator=i, technology="lte", latency_ms=30.0)
    for i in ("a", "b")
)
N_SEG = 200  # 50 m at 25 m/s: 2 s per segment
GAPS = (30, 80, 130, 170)  # a is out on these four segments: 8 s of outage, four failures


def _column(outage_prob: np.ndarray, *, measured: bool) -> Quality:
    q = Quality.empty(N_SEG)
    q.rsrp_dbm[:] = -90.0
    q.confidence[:] = 1.0
    q.provenance[:] = 2
    if measured:  # the layer predicts the outage share itself (a learned map)
        q.outage_prob[:] = outage_prob
    else:  # the same outage from signal levels: in outage below Qout
        q.sinr_db[:] = np.where(outage_prob > 0.5, -30.0, 20.0)
    return q


def _problem(*, measured: bool) -> HandoverProblem:
    a = np.full(N_SEG, 0.0)
    a[list(GAPS)] = 1.0
    cols = [_column(a, measured=measured), _column(np.zeros(N_SEG), measured=measured)]
    return HandoverProblem.build(
        syn.corridor(N_SEG),
        QualityMatrix.from_columns(("a", "b"), cols),
        NetworkCatalogue([A, B]),
        constraints=Constraints(initial_network="a"),
        vehicle=vehicle_setup("single_modem"),
    )


def test_measured_short_gaps_are_ridden_out_rather_than_paid_a_detach_for() -> None:
    measured = _problem(measured=True)
    plan = solve(measured)
    # 8 s of measured outage on a against a 10 s change of operator: stay
    assert plan.handovers == ()
    assert plan.totals.expected_loss_s == measured.outage_s[:, 0].sum()
    # the failures are still counted as loss events, only not paid a second recovery
    assert plan.totals.outage_drops == measured.drop_onsets[:, 0].sum() > 3.9
    switched = np.ones(N_SEG, dtype=np.int64)
    switched[0] = 0
    assert evaluate_plan(measured, switched).expected_loss_s > plan.totals.expected_loss_s


def test_signal_level_failures_still_cost_their_recovery() -> None:
    modelled = _problem(measured=False)
    np.testing.assert_allclose(modelled.recovery_onsets, modelled.drop_onsets)
    # four failures with 5 s of re-establishment each: leaving a pays for itself
    assert [(h.from_network, h.to_network) for h in solve(modelled).handovers] == [("a", "b")]
