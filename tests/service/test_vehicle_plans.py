"""Plans for a vehicle set-up on the default map: what each switch costs on that hardware, what
the vehicle must prepare ahead of it, and which networks it can use at all."""

from __future__ import annotations

from typing import Any

import pytest

from commap.errors import InvalidInputError
from commap.map.comm_map import CommMap
from commap.networks import Network
from commap.radio.link import LinkModel
from commap.service.planning import PlanRequest, PlanResult, plan_route

TRIP: dict[str, Any] = {"origin": (1.5218, 42.5063), "destination": (1.7330, 42.5430)}


@pytest.fixture(scope="module")
def plans(andorra: CommMap) -> dict[str, PlanResult]:
    vehicles = ("single_modem", "dual_modem", "satellite_always_on", "satellite_on_demand")
    return {v: plan_route(andorra, PlanRequest(**TRIP, vehicle=v)) for v in vehicles}


def _satellite_share(result: PlanResult, andorra: CommMap) -> float:
    shares = result.plan.totals.time_share
    return sum(s for n, s in shares.items() if andorra.catalogue[n].is_satellite)


def test_a_vehicle_without_a_satellite_terminal_is_never_planned_on_a_satellite(
    plans: dict[str, PlanResult], andorra: CommMap
) -> None:
    assert _satellite_share(plans["single_modem"], andorra) == 0.0
    assert _satellite_share(plans["dual_modem"], andorra) == 0.0
    # the trip crosses the Envalira pass, where a terminal pays for itself
    assert _satellite_share(plans["satellite_always_on"], andorra) > 0.0


def test_a_change_of_operator_costs_the_set_ups_interruption(
    plans: dict[str, PlanResult],
) -> None:
    one, two = plans["single_modem"].plan, plans["dual_modem"].plan
    # into French roaming on one modem: a detach / attach, nothing to prepare
    changes = [h for h in one.handovers if h.kind == "inter_operator"]
    assert changes and all(h.interruption_s == 10.0 and h.prepare_s == 0.0 for h in changes)
    # (a planned change to a registered standby: tests/plan/test_vehicle_problem.py)
    # the standby carries the service through the active link's gaps
    assert two.totals.expected_loss_s < one.totals.expected_loss_s


def test_no_set_up_rides_a_network_usable_nowhere_on_the_route(
    plans: dict[str, PlanResult], andorra: CommMap
) -> None:
    # the Spanish operator reaches nowhere on this trip inside Andorra: a plan on it carries
    # nothing (with two modems, the standby would carry the whole route uncounted)
    link = LinkModel()  # the one a plan uses when the request names none
    outage = link.point_outage(plans["dual_modem"].matrix, _networks(andorra, plans))
    nowhere = [
        nid
        for j, nid in enumerate(plans["dual_modem"].plan.network_ids)
        if (outage[:, j] >= link.unusable_outage_prob).all()
    ]
    assert "es-lte" in nowhere
    for vehicle, result in plans.items():
        planned = set(result.plan.segment_networks)
        assert not planned & set(nowhere), vehicle


def test_a_more_capable_set_up_never_expects_more_loss(plans: dict[str, PlanResult]) -> None:
    loss = {v: r.plan.totals.expected_loss_s for v, r in plans.items()}
    assert loss["dual_modem"] <= loss["single_modem"]
    assert loss["satellite_always_on"] <= loss["satellite_on_demand"] <= loss["single_modem"]


def _networks(andorra: CommMap, plans: dict[str, PlanResult]) -> tuple[Network, ...]:
    return tuple(andorra.catalogue[n] for n in plans["dual_modem"].plan.network_ids)


def test_an_on_demand_terminal_is_woken_ahead_of_each_switch_to_the_satellite(
    plans: dict[str, PlanResult], andorra: CommMap
) -> None:
    on_demand = plans["satellite_on_demand"].plan
    always_on = plans["satellite_always_on"].plan
    to_satellite = [h for h in on_demand.handovers if andorra.catalogue[h.to_network].is_satellite]
    assert to_satellite and all(h.prepare_s == 120.0 for h in to_satellite)
    assert all(h.prepare_s == 0.0 for h in always_on.handovers)
    assert on_demand.to_dict()["handovers"][0]["prepare_s"] == on_demand.handovers[0].prepare_s


@pytest.mark.parametrize(("vehicle", "message"), [("bonded", "bonded pair"), ("car", "unknown")])
def test_a_vehicle_the_planner_cannot_plan_for_is_refused(vehicle: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        PlanRequest(**TRIP, vehicle=vehicle)
    assert caught.value.field == "vehicle"
