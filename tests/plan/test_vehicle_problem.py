"""The handover problem on a vehicle set-up: what a switch costs on that hardware, what the
vehicle prepares ahead of it, and what a registered standby modem saves."""

from __future__ import annotations

import numpy as np
import pytest

from commap.networks import Network, NetworkCatalogue, NetworkKind
from commap.plan import HandoverProblem, solve
from commap.radio.quality import Quality, QualityMatrix
from commap.radio.vehicle import vehicle_setup
from tests.support import plan_synthetic as syn

A, B = (
    Network(id=i, kind=NetworkKind.TERRESTRIAL, operator=i, technology="lte", latency_ms=30.0)
    for i in ("a", "b")
)
SAT = Network(id="sat", kind=NetworkKind.LEO, operator="sat", technology="leo", latency_ms=40.0)
N_SEG = 200


def _quality(sinr_db: np.ndarray, *, satellite: bool = False) -> Quality:
    q = Quality.empty(N_SEG, satellite=satellite)
    q.sinr_db[:] = sinr_db
    if satellite:
        q.elevation_deg[:] = 60.0
    else:
        q.rsrp_dbm[:] = -90.0
    q.confidence[:] = 0.9
    q.provenance[:] = 1
    return q


def _problem(vehicle: str | None, *, satellite: bool = False) -> HandoverProblem:
    """Operator a is good on the first half and out on the second; b the other way round,
    with a patchy first half (-6 dB: often out)."""
    half = np.arange(N_SEG) < N_SEG // 2
    cols = [_quality(np.where(half, 12.0, -20.0)), _quality(np.where(half, -6.0, 12.0))]
    nets = [A, B]
    if satellite:  # b never comes: the satellite covers the second half
        cols[1] = _quality(np.full(N_SEG, -20.0))
        cols.append(_quality(np.full(N_SEG, 10.0), satellite=True))
        nets.append(SAT)
    matrix = QualityMatrix.from_columns(tuple(n.id for n in nets), cols)
    return HandoverProblem.build(
        syn.corridor(N_SEG),
        matrix,
        NetworkCatalogue(nets),
        vehicle=vehicle_setup(vehicle) if vehicle else None,
    )


def test_one_modem_detaches_and_two_modems_change_route_to_the_registered_standby() -> None:
    one, two = solve(_problem("single_modem")), solve(_problem("dual_modem"))
    assert [(h.from_network, h.to_network) for h in one.handovers] == [("a", "b")]
    assert [(h.from_network, h.to_network) for h in two.handovers] == [("a", "b")]
    assert (one.handovers[0].interruption_s, one.handovers[0].prepare_s) == (10.0, 0.0)
    # register the standby on b ten seconds (its attach) before the switch
    assert (two.handovers[0].interruption_s, two.handovers[0].prepare_s) == (0.5, 10.0)


def test_a_standby_modem_covers_the_active_links_gaps() -> None:
    problem = _problem("dual_modem")
    alone = _problem(None)
    # on b's patchy half the service is lost only when a is out as well
    both_out = problem.point_outage[:, 1] * problem.point_outage[:, 0]
    expected = both_out * np.asarray(problem.corridor.duration_s)
    np.testing.assert_allclose(problem.outage_s[:, 1], expected)
    assert problem.outage_s[:50, 1].sum() < 0.01 * alone.outage_s[:50, 1].sum()
    # each failure of the active link is detected (T310, 1 s), then the route changes (0.5 s)
    failovers = problem.reconfiguration_s - alone.reconfiguration_s
    np.testing.assert_allclose(failovers, alone.drop_onsets * 1.5)
    assert solve(problem).totals.expected_loss_s < solve(alone).totals.expected_loss_s


def test_an_on_demand_terminal_is_woken_ahead_and_no_terminal_means_no_satellite() -> None:
    woken = solve(_problem("satellite_on_demand", satellite=True))
    assert [(h.to_network, h.prepare_s) for h in woken.handovers] == [("sat", 120.0)]
    always = solve(_problem("satellite_always_on", satellite=True))
    assert [(h.to_network, h.prepare_s) for h in always.handovers] == [("sat", 0.0)]
    grounded = solve(_problem("single_modem", satellite=True))
    assert "sat" not in grounded.segment_networks  # one modem and no terminal: rides the gap
    assert grounded.totals.expected_loss_s > woken.totals.expected_loss_s


def test_a_bonded_pair_is_not_planned() -> None:
    with pytest.raises(Exception, match="bonded pair"):
        _problem("bonded")
