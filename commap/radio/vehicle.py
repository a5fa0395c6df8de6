"""Vehicle connectivity set-ups: how many modems, which links are up at once, and what a switch
between networks costs the service on each.

A :class:`VehicleSetup` says what hardware the vehicle carries and, per kind of switch, how many
seconds the application's traffic is interrupted:

``single_modem``
    One cellular modem with several SIMs (or eSIM profiles), one active. A handover inside the
    operator is a 3GPP handover; a change of operator is a detach from one PLMN and an attach
    (PLMN selection, attach, default bearer) to the other: seconds.
``dual_modem``
    Two modems, the active one and a registered *standby* on another operator. Changing to the
    standby is a route change on the router (sub-second). Changing to an operator the standby
    is not registered on costs the attach, as on one modem.
``bonded``
    Two modems, both carrying traffic (multipath, MPTCP-like). Service is lost only when both
    links fail; changing one member of the pair re-attaches that modem while the other keeps
    the service. The pair is the choice.
``satellite_always_on`` / ``satellite_on_demand``
    One modem plus a satellite terminal. An always-on terminal is tracking and registered: a
    change between the cellular link and the satellite is a route change. A terminal woken on
    demand first acquires the constellation (:attr:`VehicleSetup.satellite_acquisition_s`).

Interruption times and their sources (each a field, overridable):

* ``intra_operator_s`` = 0.05 s: intra-frequency LTE handover interruption, 3GPP TS 36.133
  section 5.1 (interruption time of an E-UTRAN handover, tens of ms); the value the link model
  already uses. Not re-checked against the specification text in this change.
* ``operator_switch_s`` = 10 s: detach / PLMN selection / attach on one modem. Product
  literature on dual-SIM vehicle terminals describes SIM switching "in seconds" to "half a
  minute" (commercialdashcam.com, "How dual SIM primary backup switches seamlessly"); eSIM
  profile switches take longer still (KORE Wireless help centre: "up to 10 minutes"; Ericsson
  IoT Accelerator tutorial: "more than 1 minute"). No peer-reviewed measurement of a physical
  SIM switch was found: the 10 s figure is the link model's re-registration time and is an
  assumption within that published range, not a measured value.
* ``route_change_s`` = 0.5 s: moving traffic to an already registered modem (policy route
  change, SD-WAN failover). Unverified: no published measurement was found; the figure is
  the link model's terrestrial <-> LEO path switch.
* bonded member change: 0 s while the other member is up. That a multipath connection
  survives the loss of one subflow is MPTCP's design (RFC 8684), not a measured figure here;
  Mohan et al., "Is two greater than one?: Analyzing Multipath TCP over Dual-LTE in the Wild"
  (2019) measured MPTCP over two carriers' LTE at low and high speed (performance drops at speed
  with signal drops and handovers) but their interruption figures were not checked for this
  value. The modem being re-attached is unavailable for ``operator_switch_s``.
* ``failover_detection_s`` = 1 s: with two modems, the time the active modem takes to declare
  its link failed before the traffic moves to the standby (radio link failure detection, T310
  = 1 s by default, 3GPP TS 36.331; the link model's ``drops`` recovery starts with the same
  timer). A planned change to the standby skips it.
* ``satellite_route_change_s`` = 0.5 s (always-on terminal, as ``route_change_s``; unverified).
* ``satellite_acquisition_s`` = 120 s: a terminal powered on demand boots, finds its position
  and acquires the constellation before it carries traffic. Unverified (no published
  measurement found); Starlink documentation and user reports speak of minutes. LEO beam
  reconfiguration once tracking (every 15 s, Zhao et al., "Demystifying Starlink Network
  Performance under Vehicular Mobility with Dynamic Beam Switching", arXiv 2601.13790) is
  part of the link model, not of the set-up.

Examples
--------
>>> vehicle_setup("dual_modem").route_change_s
0.5
>>> vehicle_setup("bonded").active_links
2
>>> sorted(VEHICLE_SETUPS)  # doctest: +NORMALIZE_WHITESPACE
['bonded', 'dual_modem', 'satellite_always_on', 'satellite_on_demand', 'single_modem']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import StrEnum

from commap.errors import InvalidInputError
from commap.networks import Network, SwitchKind, switch_kind
from commap.radio.link import LinkModel

__all__ = [
    "TERRESTRIAL_SETUPS",
    "VEHICLE_SETUPS",
    "SatelliteTerminal",
    "VehicleSetup",
    "vehicle_setup",
]


class SatelliteTerminal(StrEnum):
    """Whether and how the vehicle carries a satellite terminal."""

    NONE = "none"
    ALWAYS_ON = "always_on"  # tracking and registered all the time
    ON_DEMAND = "on_demand"  # powered up when needed: acquisition before service


@dataclass(frozen=True, kw_only=True)
class VehicleSetup:
    """A vehicle's connectivity hardware and the interruption of each kind of switch.

    Parameters
    ----------
    name : str
        Preset or user name, e.g. ``"dual_modem"``.
    modems : int
        Cellular modems (1 or 2).
    active_links : int
        Links carrying traffic at once: 1, or 2 for a bonded pair.
    satellite : SatelliteTerminal
        The satellite terminal, if any.
    intra_operator_s, operator_switch_s, route_change_s : float
        Interruption (s) of a handover inside an operator, of a change of operator on one modem
        (detach / attach), and of a change to an already registered modem.
    satellite_route_change_s, satellite_acquisition_s : float
        Interruption (s) of a change to or from an always-on terminal, and the acquisition
        time of a terminal woken on demand.
    failover_detection_s : float
        With two modems, seconds until a failed active link is declared down and the traffic
        moves to the standby (an unplanned change costs this plus ``route_change_s``).

    Examples
    --------
    >>> VehicleSetup(name="x", modems=0)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: vehicle x: modems must be 1 or 2, got 0
    """

    name: str
    modems: int = 1
    active_links: int = 1
    satellite: SatelliteTerminal = SatelliteTerminal.NONE
    # the link model's interruption times are the one source of these figures
    intra_operator_s: float = LinkModel.intra_operator_interruption_s
    operator_switch_s: float = LinkModel.reregistration_s
    route_change_s: float = LinkModel.terrestrial_leo_interruption_s  # a path switch between modems
    satellite_route_change_s: float = LinkModel.terrestrial_leo_interruption_s
    satellite_acquisition_s: float = 120.0
    failover_detection_s: float = 1.0  # T310, 3GPP TS 36.331 default

    def __post_init__(self) -> None:
        if self.modems not in (1, 2):
            raise InvalidInputError(
                f"vehicle {self.name}: modems must be 1 or 2, got {self.modems}", field="modems"
            )
        if self.active_links not in (1, 2) or self.active_links > self.modems:
            raise InvalidInputError(
                f"vehicle {self.name}: active_links must be 1, or 2 with two modems",
                field="active_links",
            )
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_s") and not (math.isfinite(value) and value >= 0):
                raise InvalidInputError(
                    f"vehicle {self.name}: {f.name} must be a finite number >= 0", field=f.name
                )

    @property
    def bonded(self) -> bool:
        """Two links carry traffic at once (service lost only when both fail)."""
        return self.active_links == 2

    @property
    def has_terminal(self) -> bool:
        """The vehicle carries a satellite terminal (always on or woken on demand)."""
        return self.satellite is not SatelliteTerminal.NONE

    @property
    def has_standby(self) -> bool:
        """A second modem can stay registered on another operator."""
        return self.modems == 2

    def usable(self, networks: Sequence[Network]) -> tuple[Network, ...]:
        """The networks this set-up can use: all with a satellite terminal, else the
        terrestrial ones (a satellite network needs the terminal).

        Examples
        --------
        >>> from commap.networks import NetworkKind
        >>> nets = [Network(id="a", kind=NetworkKind.TERRESTRIAL, operator="a",
        ...                 technology="lte", latency_ms=30),
        ...         Network(id="s", kind=NetworkKind.LEO, operator="s", technology="leo",
        ...                 latency_ms=40)]
        >>> [n.id for n in vehicle_setup("dual_modem").usable(nets)]
        ['a']
        >>> [n.id for n in vehicle_setup("satellite_on_demand").usable(nets)]
        ['a', 's']
        """
        return tuple(n for n in networks if self.has_terminal or not n.is_satellite)

    def switch_s(self, a: Network, b: Network, *, standby: bool = False) -> float:
        """Interruption (s) of the service link changing from ``a`` to ``b``.

        ``standby`` says ``b`` is already registered on the second modem (or, for a satellite,
        that an on-demand terminal was woken in time).

        Examples
        --------
        >>> from commap.networks import NetworkKind
        >>> x, y = (Network(id=i, kind=NetworkKind.TERRESTRIAL, operator=i, technology="lte",
        ...                 latency_ms=30) for i in "xy")
        >>> one, two = vehicle_setup("single_modem"), vehicle_setup("dual_modem")
        >>> one.switch_s(x, y), one.switch_s(x, y, standby=True), two.switch_s(x, y, standby=True)
        (10.0, 10.0, 0.5)
        >>> one.switch_s(x, x)
        0.0
        """
        kind = switch_kind(a, b)
        if kind is SwitchKind.NONE:
            return 0.0
        if kind is SwitchKind.INTRA_OPERATOR:
            return self.intra_operator_s
        if kind is SwitchKind.INTER_OPERATOR:
            return self.route_change_s if standby and self.has_standby else self.operator_switch_s
        if not self.has_terminal:
            raise InvalidInputError(
                f"vehicle {self.name} has no satellite terminal ({a.id} -> {b.id})",
                field="vehicle",
            )
        to_satellite = b.is_satellite and not a.is_satellite
        if self.satellite is SatelliteTerminal.ON_DEMAND and to_satellite and not standby:
            return self.satellite_acquisition_s
        return self.satellite_route_change_s


VEHICLE_SETUPS: dict[str, VehicleSetup] = {
    "single_modem": VehicleSetup(name="single_modem"),
    "dual_modem": VehicleSetup(name="dual_modem", modems=2),
    "bonded": VehicleSetup(name="bonded", modems=2, active_links=2),
    "satellite_always_on": VehicleSetup(
        name="satellite_always_on", satellite=SatelliteTerminal.ALWAYS_ON
    ),
    "satellite_on_demand": VehicleSetup(
        name="satellite_on_demand", satellite=SatelliteTerminal.ON_DEMAND
    ),
}
# the set-ups that need no satellite network (every multi-operator drive can score them)
TERRESTRIAL_SETUPS: tuple[str, ...] = ("single_modem", "dual_modem", "bonded")


def vehicle_setup(name: str) -> VehicleSetup:
    """The preset set-up ``name``.

    Raises
    ------
    InvalidInputError
        For an unknown name.

    Examples
    --------
    >>> vehicle_setup("single_modem").modems
    1
    >>> vehicle_setup("car")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: unknown vehicle set-up 'car'; known: bonded, dual_modem, satellite_always_on, satellite_on_demand, single_modem
    """
    try:
        return VEHICLE_SETUPS[name]
    except KeyError:
        known = ", ".join(sorted(VEHICLE_SETUPS))
        raise InvalidInputError(
            f"unknown vehicle set-up {name!r}; known: {known}", field="vehicle"
        ) from None
