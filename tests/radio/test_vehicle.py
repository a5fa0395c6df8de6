"""Vehicle set-ups: what a switch costs on one modem, two modems, a bonded pair, a satellite."""

from __future__ import annotations

import pytest

from commap.errors import InvalidInputError
from commap.networks import Network, NetworkKind
from commap.radio.vehicle import VEHICLE_SETUPS, VehicleSetup, vehicle_setup


def net(nid: str, operator: str, kind: NetworkKind = NetworkKind.TERRESTRIAL) -> Network:
    return Network(id=nid, kind=kind, operator=operator, technology="lte", latency_ms=30.0)


A_LTE, A_NR, B_LTE = net("a-lte", "a"), net("a-nr", "a"), net("b-lte", "b")
LEO = net("leo", "sat", NetworkKind.LEO)


def test_switch_interruption_by_kind_and_set_up() -> None:
    one, two = vehicle_setup("single_modem"), vehicle_setup("dual_modem")
    assert one.switch_s(A_LTE, A_NR) == two.switch_s(A_LTE, A_NR) == 0.05  # a handover
    assert one.switch_s(A_LTE, B_LTE) == one.switch_s(A_LTE, B_LTE, standby=True) == 10.0
    assert two.switch_s(A_LTE, B_LTE, standby=True) == 0.5  # route change to the standby
    assert two.switch_s(A_LTE, B_LTE) == 10.0  # the standby was elsewhere: attach
    on, woken = vehicle_setup("satellite_always_on"), vehicle_setup("satellite_on_demand")
    assert on.switch_s(A_LTE, LEO) == 0.5 and on.switch_s(LEO, A_LTE) == 0.5
    assert woken.switch_s(A_LTE, LEO) == 120.0  # acquisition when woken on demand
    assert woken.switch_s(A_LTE, LEO, standby=True) == 0.5  # woken ahead of time
    with pytest.raises(InvalidInputError, match="no satellite terminal"):
        one.switch_s(A_LTE, LEO)


def test_presets_and_validation() -> None:
    assert VEHICLE_SETUPS["bonded"].bonded and not VEHICLE_SETUPS["dual_modem"].bonded
    assert (
        VEHICLE_SETUPS["dual_modem"].has_standby and not VEHICLE_SETUPS["single_modem"].has_standby
    )
    with pytest.raises(InvalidInputError, match="active_links"):
        VehicleSetup(name="x", modems=1, active_links=2)
    with pytest.raises(InvalidInputError, match="operator_switch_s"):
        VehicleSetup(name="x", operator_switch_s=-1.0)
    with pytest.raises(InvalidInputError, match="unknown vehicle set-up"):
        vehicle_setup("truck")
