"""The handover problem: per-segment and per-switch costs, constraints and run compression.

A :class:`HandoverProblem` holds everything a solver needs, computed once from a corridor, its
quality matrix, the network catalogue, a :class:`~commap.radio.link.LinkModel`, an application class
and the objective weights:

* ``node_cost[i, n]``: cost of using network ``n`` on segment ``i``: the expected seconds
  without service there (outage, and the recovery of the link failures expected to start
  there: a long stretch of outage is one failure, :meth:`LinkModel.drop_onsets`; where the
  outage probability is a share of measured outage seconds, a learned map's or a drive's, the
  recovery is already among those seconds and is not added again), interruptions
  while on it (LEO reconfiguration, failovers to a standby modem), seconds on a network too slow for the application, satellite MB;
* ``entry_cost[i, n]``: extra cost of switching *into* ``n`` at the start of segment ``i`` (the
  handover fails more often when the target is weak there);
* ``switch_cost[m, n]``: cost of a switch ``m -> n`` (its interruption in seconds, the recovery
  of its base failure risk, and the per-switch price);

With the default :class:`~commap.radio.link.Objective` every service term is in seconds of
service lost, so the optimal plan switches only where a switch saves more seconds than it
costs.
The vehicle set-up (:class:`~commap.radio.vehicle.VehicleSetup`, optional) sets the
interruption of each switch: the plan registers the standby modem, or wakes an on-demand
satellite terminal, ahead of each switch (:attr:`Handover.prepare_s` says how long before), so a
change of operator with two modems is a route change; a set-up without a satellite terminal
never plans a satellite network. With two modems the vehicle fails over to the registered
standby where its active link fails (as a dual-modem router does), so a segment's outage seconds
are those of the active network *and* the best cellular network of another operator (the
standby, taken as independent); each failure of the active link costs its detection and a route
change where the standby is up, its recovery where not (a planned change to the standby only
the route change), and while the active link is out the standby's own failures cost their
recovery. The active network is the one carrying the service: it is not allowed where it is
unusable while another cellular network is usable (else the standby would carry the route
alone, its changes of network uncounted). Without a set-up, the link model's times (one modem,
an always-on satellite terminal).

* ``allowed[i, n]``: hard rules. With ``Constraints.strict_latency`` networks slower than the
  application are never allowed; with ``Constraints.avoid_unusable`` a network that is
  unusable (outage probability at least ``LinkModel.unusable_outage_prob``) is not allowed
  where another allowed network is usable. That rule is off by default: an unusable stretch
  already costs its seconds, and fleeing a two-second gap by a ten-second change of operator
  loses more service than it saves.

A plan is an assignment ``a[i]`` (network column per segment); its cost is
``sum node_cost[i, a[i]] + sum over switches (switch_cost[a[i-1], a[i]] + entry_cost[i, a[i]])``.

Minimum dwell: after switching into ``n`` at segment ``i``, the next switch may come only at a
segment ``j`` with ``eta_s[j] - eta_s[i] >= min_dwell_s`` and ``distance_m[j] - distance_m[i] >=
min_dwell_m``, unless ``n`` is not allowed at ``j`` (a forced exit). :meth:`HandoverProblem.dwell_end`
gives that earliest ``j``. The route's end counts as the next switch: a switch ``m -> n`` at ``i``
needs the dwell before the arrival too, unless it is forced (``m`` is not allowed at ``i``) or
``n`` stops being allowed before the end anyway (:meth:`HandoverProblem.switch_ok_at_end`).

Run compression (:func:`compress`) merges consecutive segments whose rows are identical into
units. Without dwell and satellite budget it is exact when the switch costs obey the triangle
inequality (checked, :attr:`HandoverProblem.triangle_ok`): an optimal plan then switches only at
the first segment of a run, or at its last segment when the next run makes entering dearer; the
last segment is split off as its own unit in that case.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from commap.arrays import BoolArray, FloatArray, IntArray
from commap.errors import InvalidInputError, NoFeasiblePlanError
from commap.geo.corridor import Corridor
from commap.networks import Network, NetworkCatalogue
from commap.plan import defaults
from commap.radio.link import APP_PROFILES, AppProfile, LinkModel, Objective, SwitchTable
from commap.radio.quality import QualityMatrix
from commap.radio.vehicle import VehicleSetup

__all__ = ["Constraints", "HandoverProblem", "Units", "compress", "end_switch_ok"]

log = logging.getLogger(__name__)


_TIME_EPS = 1e-9  # tolerance on dwell comparisons (seconds and metres)
# network sets whose switch costs were reported breaking the triangle inequality: a server
# plans on the same map all day, so the notice comes once per map's networks, then at DEBUG
_TRIANGLE_REPORTED: set[tuple[str, ...]] = set()
_TRIANGLE_LOCK = threading.Lock()


@dataclass(frozen=True, kw_only=True)
class Constraints:
    """Hard requirements on a plan.

    Parameters
    ----------
    min_dwell_s, min_dwell_m : float
        Minimum time and distance on a network after switching into it (0: none); a forced exit
        (the network becomes not allowed) is always permitted.
    max_handovers : int, optional
        Largest number of switches over the route.
    sat_budget_mb : float, optional
        Largest satellite data volume over the route.
    strict_latency : bool
        Never use a network slower than the application's ``max_latency_ms``.
    avoid_unusable : bool
        Do not use an unusable network where another allowed network is usable, even where
        the switch costs more seconds than the gap (off by default).
    initial_network : str, optional
        The network the vehicle is on at the first segment.

    Examples
    --------
    >>> Constraints().is_global
    False
    >>> Constraints(max_handovers=0).is_global
    True
    """

    min_dwell_s: float = 0.0
    min_dwell_m: float = 0.0
    max_handovers: int | None = None
    sat_budget_mb: float | None = None
    strict_latency: bool = False
    avoid_unusable: bool = False
    initial_network: str | None = None

    def __post_init__(self) -> None:
        for name in ("min_dwell_s", "min_dwell_m"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise InvalidInputError(f"{name} must be a finite number >= 0", field=name)
        if self.max_handovers is not None and (
            isinstance(self.max_handovers, bool)
            or not isinstance(self.max_handovers, int | np.integer)
            or self.max_handovers < 0
        ):
            raise InvalidInputError("max_handovers must be an integer >= 0", field="max_handovers")
        if self.sat_budget_mb is not None and not (
            np.isfinite(self.sat_budget_mb) and self.sat_budget_mb >= 0
        ):
            raise InvalidInputError(
                "sat_budget_mb must be a finite number >= 0", field="sat_budget_mb"
            )

    @property
    def has_dwell(self) -> bool:
        """True when a minimum dwell is set."""
        return self.min_dwell_s > 0 or self.min_dwell_m > 0

    @property
    def is_global(self) -> bool:
        """True when a constraint couples the whole route (handover limit or budget)."""
        return self.max_handovers is not None or self.sat_budget_mb is not None


@dataclass(frozen=True, eq=False)
class HandoverProblem:
    """Costs and rules of one planning request; build with :meth:`build`.

    Every ``(S, N)`` array has one row per corridor segment and one column per network (in
    :attr:`network_ids` order).
    """

    corridor: Corridor
    networks: tuple[Network, ...]
    link: LinkModel
    app: AppProfile
    objective: Objective
    constraints: Constraints
    provenance: NDArray[np.int8]
    point_outage: FloatArray
    drop_prob: FloatArray  # (S, N): P(the link fails somewhere in the segment), for display
    drop_onsets: FloatArray  # (S, N): expected failures starting there, staying on the network
    recovery_onsets: FloatArray  # (S, N): those failures whose recovery is not in outage_s
    sat_mb: FloatArray
    reconfiguration_s: FloatArray  # (S, N): interruption while on it (LEO, failovers to a standby)
    latency_violation_s: FloatArray
    outage_s: FloatArray  # (S, N): expected seconds out, on networks fast enough for the app
    allowed: BoolArray
    switch: SwitchTable
    node_cost: FloatArray = field(repr=False)
    entry_cost: FloatArray = field(repr=False)
    switch_cost: FloatArray = field(repr=False)
    unknown: BoolArray | None = None  # (S, N): no data near, the quality is a prior
    vehicle: VehicleSetup | None = None  # None: the link model's times

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        corridor: Corridor,
        matrix: QualityMatrix,
        catalogue: NetworkCatalogue,
        *,
        link: LinkModel | None = None,
        app: AppProfile | str = defaults.APP,
        objective: Objective | None = None,
        constraints: Constraints | None = None,
        vehicle: VehicleSetup | None = None,
    ) -> HandoverProblem:
        """Compute every cost array of a planning request.

        Parameters
        ----------
        corridor : Corridor
            The route cut into segments.
        matrix : QualityMatrix
            Quality per segment and network; its columns name networks of ``catalogue``.
        catalogue : NetworkCatalogue
            Network properties (kind, operator, latency).
        link, objective, constraints : optional
            Defaults when omitted.
        app : AppProfile or str
            Application class (a name from :data:`commap.radio.link.APP_PROFILES`).
        vehicle : VehicleSetup, optional
            The vehicle's modems and satellite terminal (module docstring).

        Raises
        ------
        InvalidInputError
            Mismatched shapes, unknown networks, empty network set, a bonded set-up (the
            planner chooses one network per segment), only satellite networks for a vehicle
            without a satellite terminal.
        NoFeasiblePlanError
            ``strict_latency`` with no network fast enough (``constraint="strict_latency"``),
            or an ``initial_network`` that does not exist in the matrix.

        Examples
        --------
        >>> from commap.networks import Network, NetworkKind, NetworkCatalogue
        >>> from commap.radio.quality import Quality
        >>> cat = NetworkCatalogue([Network(id="a", kind=NetworkKind.TERRESTRIAL, operator="a",
        ...                                 technology="lte", latency_ms=30)])
        >>> empty = Corridor(*(np.zeros(0) for _ in range(7)), *(np.zeros(0, bool) for _ in
        ...                  range(3)), departure_s=0.0)
        >>> HandoverProblem.build(empty, QualityMatrix.from_columns(("a",), [Quality.empty(0)]),
        ...                       cat).shape
        (0, 1)
        """
        link = link or LinkModel()
        objective = objective or Objective()
        constraints = constraints or Constraints()
        if isinstance(app, str):
            app = APP_PROFILES.get(app) or _unknown_app(app)
        networks = _networks(matrix, catalogue, len(corridor))
        point = link.point_outage(matrix, networks)
        drop = link.segment_drop(point, corridor.length_m, corridor.duration_s)
        onsets = link.drop_onsets(point, corridor.length_m, corridor.duration_s)
        duration = np.asarray(corridor.duration_s, dtype=np.float64)
        is_sat = np.array([n.is_satellite for n in networks])
        sat_mb = np.outer(duration * app.mb_per_s, is_sat.astype(np.float64))
        reconf = np.outer(duration, [link.reconfiguration_s_per_s(n) for n in networks])
        too_slow = np.array([n.latency_ms > app.max_latency_ms for n in networks])
        latency_s = np.outer(duration, too_slow.astype(np.float64))
        allowed = _allowed(point, link, constraints, too_slow, matrix.network_ids)
        table = link.switch_table(networks)
        if vehicle is not None:
            table = _on_vehicle(table, networks, vehicle)
            allowed = _with_terminal(allowed, networks, vehicle)
        w = objective
        # A network too slow for the application misses its service whatever the signal:
        # those seconds count once, as latency violation, not again as outage.
        outage_s = point * duration[:, None] * (~too_slow)[None, :]
        if vehicle is not None and vehicle.has_standby:
            outage_s, reconf, onsets = _on_standby(
                point, onsets, outage_s, reconf, networks, vehicle
            )
            allowed = _active_carries(allowed, point, link, networks, constraints)
        # a drop costs its recovery once per failure, not once per segment it spans, and only
        # where the outage probability leaves the recovery out (module docstring)
        recovery = onsets * ~_outage_holds_recovery(matrix)
        node = w.outage_s * outage_s + w.drops * recovery + w.interruption_s * reconf
        node = node + w.latency_violation_s * latency_s + w.sat_mb * sat_mb
        entry = w.drops * link.target_outage_failure_gain * point
        off = 1.0 - np.eye(len(networks))
        switch = (
            w.drops * table.failure_prob
            + w.handovers * off
            + w.interruption_s * (table.interruption_s)
        )
        return cls(
            corridor=corridor,
            networks=networks,
            link=link,
            app=app,
            objective=objective,
            constraints=constraints,
            provenance=np.asarray(matrix.provenance, dtype=np.int8).reshape(point.shape),
            point_outage=point,
            drop_prob=drop,
            drop_onsets=onsets,
            recovery_onsets=recovery,
            sat_mb=sat_mb,
            reconfiguration_s=reconf,
            latency_violation_s=latency_s,
            outage_s=outage_s,
            allowed=allowed,
            switch=table,
            node_cost=node,
            entry_cost=entry,
            switch_cost=switch * off,
            unknown=np.asarray(matrix.unknown, dtype=np.bool_).reshape(point.shape),
            vehicle=vehicle,
        )

    # -- derived properties -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(segments, networks)``."""
        return (int(self.node_cost.shape[0]), len(self.networks))

    @property
    def network_ids(self) -> tuple[str, ...]:
        """Network ids in column order."""
        return tuple(n.id for n in self.networks)

    @cached_property
    def triangle_ok(self) -> bool:
        """True when ``switch_cost[a, c] <= switch_cost[a, b] + switch_cost[b, c]`` everywhere."""
        s = self.switch_cost
        if s.size == 0:
            return True
        via = (s[:, :, None] + s[None, :, :]).min(axis=1)  # best two-step a -> b -> c
        return bool((s <= via + 1e-12).all())

    @cached_property
    def dwell_end(self) -> IntArray:
        """For a switch at segment ``i``: the first segment where the next switch may come."""
        return dwell_end_index(
            np.asarray(self.corridor.eta_s, dtype=np.float64),
            np.asarray(self.corridor.distance_m, dtype=np.float64),
            self.constraints.min_dwell_s,
            self.constraints.min_dwell_m,
        )

    @cached_property
    def switch_ok_at_end(self) -> BoolArray:
        """``[i, n, m]``: a switch ``m -> n`` at segment ``i`` respects the dwell at the end.

        True when the dwell from ``i`` fits before the arrival, when the switch is forced
        (``m`` not allowed at ``i``), or when ``n`` stops being allowed before the end.
        """
        c = self.constraints
        return end_switch_ok(
            np.asarray(self.corridor.eta_s, dtype=np.float64),
            np.asarray(self.corridor.distance_m, dtype=np.float64),
            _end_of(self.corridor),
            self.allowed,
            c.min_dwell_s,
            c.min_dwell_m,
        )

    @cached_property
    def next_disallowed(self) -> IntArray:
        """``[i, n]``: first segment ``j > i`` where ``n`` is not allowed (``S`` if none)."""
        return next_disallowed_index(self.allowed)


def _unknown_app(name: str) -> AppProfile:
    known = ", ".join(sorted(APP_PROFILES))
    raise InvalidInputError(f"unknown application class {name!r}; known: {known}", field="app")


def _networks(
    matrix: QualityMatrix, catalogue: NetworkCatalogue, n_segments: int
) -> tuple[Network, ...]:
    if not matrix.network_ids:
        raise InvalidInputError("the quality matrix has no network columns", field="matrix")
    networks = tuple(catalogue[nid] for nid in matrix.network_ids)
    rows, cols = matrix.shape
    if rows != n_segments:
        raise InvalidInputError(
            f"quality matrix has {rows} rows but the corridor has {n_segments} segments",
            field="matrix",
        )
    for name in ("rsrp_dbm", "sinr_db", "elevation_deg", "confidence", "provenance"):
        if getattr(matrix, name).shape != (rows, cols):
            raise InvalidInputError(
                f"quality matrix field {name} has shape {getattr(matrix, name).shape}, "
                f"expected {(rows, cols)}",
                field=f"matrix.{name}",
            )
    return networks


def _on_vehicle(
    table: SwitchTable, networks: Sequence[Network], vehicle: VehicleSetup
) -> SwitchTable:
    """The switch interruptions on ``vehicle``, with the standby or terminal prepared ahead.

    The set-up decides the changes between terrestrial networks (a detach / attach on one
    modem, a route change to a registered standby); where the link model knows a shorter
    interruption (operators that hand over to each other), it stands. A change to or from a
    satellite keeps the link model's path switch time: an on-demand terminal is woken ahead
    (:attr:`commap.plan.plan.Handover.prepare_s`).
    """
    if vehicle.bonded:
        raise InvalidInputError(
            f"vehicle {vehicle.name}: the planner chooses one network per segment, not a bonded "
            "pair; plan with dual_modem",
            field="vehicle",
        )
    interruption = table.interruption_s.copy()
    for i, a in enumerate(networks):
        for j, b in enumerate(networks):
            if i != j and not (a.is_satellite or b.is_satellite):
                prepared = vehicle.switch_s(a, b, standby=True)
                interruption[i, j] = min(interruption[i, j], prepared)
    return replace(table, interruption_s=interruption)


def _outage_holds_recovery(matrix: QualityMatrix) -> BoolArray:
    """``(S, N)``: True where the outage probability is a share of measured outage seconds.

    A layer that predicts the outage itself (a map learned from drive records, a drive's
    truth) counts every second a record was out, and the seconds a failed link takes to come
    back (T310, re-establishment, "no serving cell") are outage seconds of those records: its
    failures cost no recovery on top. A signal-level model's outage is only the time below
    Qout; the recovery after a failure comes on top of it.
    """
    predicted = np.asarray(matrix.outage_prob, dtype=np.float64).reshape(matrix.shape)
    return np.isfinite(predicted)


def _on_standby(
    point: FloatArray,
    onsets: FloatArray,
    outage_s: FloatArray,
    reconf_s: FloatArray,
    networks: Sequence[Network],
    vehicle: VehicleSetup,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Outage seconds, interruption seconds and unrecovered failures with a registered standby.

    The standby (:func:`_standby_column`) carries the service while the active link is out, so
    a second is lost only where both are out. A failure of the active link costs its detection
    and a route change where the standby is up, and its recovery where it is out too. While
    the active link is out the standby carries the service alone: its own failures then have
    nothing to fail over to and cost their recovery. Without that term a network that is out
    everywhere would be the cheapest "active" link: it never fails, and the standby would
    carry the whole route for free.
    """
    rows = np.arange(point.shape[0])[:, None]
    standby = _standby_column(point, networks)
    has = standby >= 0
    standby_out = np.where(has, point[rows, np.maximum(standby, 0)], 1.0)
    standby_onsets = np.where(has, onsets[rows, np.maximum(standby, 0)], 0.0)
    failover_s = vehicle.failover_detection_s + vehicle.route_change_s
    reconf = reconf_s + onsets * (1.0 - standby_out) * failover_s
    unrecovered = onsets * standby_out + standby_onsets * point
    return outage_s * standby_out, reconf, unrecovered


def _standby_column(point: FloatArray, networks: Sequence[Network]) -> IntArray:
    """``(S, N)``: per segment and active network, the column of the standby: the cellular
    network of another operator with the least point outage (-1: none). The second modem
    holds a registration on another operator (:class:`~commap.radio.vehicle.VehicleSetup`);
    operators' outages are taken as independent."""
    out = np.full(point.shape, -1, dtype=np.int64)
    for j, active in enumerate(networks):
        others = np.array(
            [not n.is_satellite and n.operator != active.operator for n in networks], dtype=bool
        )
        if others.any():
            cols = np.flatnonzero(others)
            out[:, j] = cols[np.argmin(point[:, cols], axis=1)]
    return out


def _active_carries(
    allowed: BoolArray,
    point: FloatArray,
    link: LinkModel,
    networks: Sequence[Network],
    constraints: Constraints,
) -> BoolArray:
    """With two modems, no active network where it is unusable while a cellular network the
    vehicle can use is usable there.

    The plan names the link that carries the service; the standby carries it only through the
    active link's gaps (:func:`_on_standby`). An active network that is out where another is
    usable carries nothing: the standby would carry the service alone, and its own changes of
    network would go uncounted. Where no cellular network is usable (a tunnel) every allowed
    one stays allowed; so does the network the vehicle starts on.
    """
    cellular = np.array([not n.is_satellite for n in networks], dtype=bool)
    usable = allowed & (point < link.unusable_outage_prob)
    some_cellular = (usable & cellular[None, :]).any(axis=1, keepdims=True)
    kept = np.where(some_cellular & cellular[None, :], usable, allowed)
    if constraints.initial_network is not None and kept.shape[0] > 0:
        kept[0] = allowed[0]
    return np.ascontiguousarray(kept)


def _with_terminal(
    allowed: BoolArray, networks: Sequence[Network], vehicle: VehicleSetup
) -> BoolArray:
    """No satellite network for a vehicle without a satellite terminal."""
    if vehicle.has_terminal:
        return allowed
    satellite = np.array([n.is_satellite for n in networks], dtype=bool)
    if satellite.all():
        raise InvalidInputError(
            f"vehicle {vehicle.name} has no satellite terminal and every network is a "
            "satellite network",
            field="vehicle",
        )
    kept = allowed & ~satellite[None, :]
    # where only a satellite was allowed (the rest unusable), every terrestrial network is
    none_left = ~kept.any(axis=1, keepdims=True)
    return np.ascontiguousarray(np.where(none_left, ~satellite[None, :], kept))


def _allowed(
    point: FloatArray,
    link: LinkModel,
    constraints: Constraints,
    too_slow: BoolArray,
    ids: tuple[str, ...],
) -> BoolArray:
    base = np.ones(point.shape, dtype=bool)
    if constraints.strict_latency:
        if too_slow.all():
            raise NoFeasiblePlanError(
                "strict latency: no network is fast enough for the application",
                constraint="strict_latency",
            )
        base &= ~too_slow[None, :]
    allowed = base
    if constraints.avoid_unusable:
        usable = base & (point < link.unusable_outage_prob)
        # Where no allowed network is usable every allowed one stays allowed (tunnels).
        allowed = np.where(usable.any(axis=1, keepdims=True), usable, base)
    if constraints.initial_network is not None and point.shape[0] > 0:
        if constraints.initial_network not in ids:
            raise InvalidInputError(
                f"initial network {constraints.initial_network!r} is not in the quality matrix",
                field="initial_network",
            )
        first = np.zeros(len(ids), dtype=bool)
        first[ids.index(constraints.initial_network)] = True
        allowed = allowed.copy()
        allowed[0] = first  # the vehicle is on it, usable or not
    return np.ascontiguousarray(allowed)


def dwell_end_index(
    t_s: FloatArray, distance_m: FloatArray, min_dwell_s: float, min_dwell_m: float
) -> IntArray:
    """For each start index ``i``: the first ``j > i`` at least the dwell time and distance on.

    ``t_s`` and ``distance_m`` are non-decreasing start times and distances of the units. The
    result is at most ``len(t_s)`` (the dwell runs past the end of the route).

    Examples
    --------
    >>> dwell_end_index(np.array([0., 2., 4., 6.]), np.array([0., 50., 100., 150.]), 3.0,
    ...                 0.0).tolist()
    [2, 3, 4, 4]
    >>> dwell_end_index(np.zeros(0), np.zeros(0), 5.0, 0.0).tolist()
    []
    """
    idx = np.arange(t_s.shape[0])
    by_time = np.searchsorted(t_s, t_s + min_dwell_s - _TIME_EPS, side="left")
    by_dist = np.searchsorted(distance_m, distance_m + min_dwell_m - _TIME_EPS, side="left")
    return np.maximum(np.maximum(by_time, by_dist), idx + 1).astype(np.int64)


def end_switch_ok(
    t_s: FloatArray,
    distance_m: FloatArray,
    end: tuple[float, float],
    allowed: BoolArray,
    min_dwell_s: float,
    min_dwell_m: float,
) -> BoolArray:
    """``[i, n, m]``: whether a switch ``m -> n`` at step ``i`` respects the dwell at the end.

    ``t_s``/``distance_m`` are the steps' start times and distances, ``end`` the route's
    ``(arrival time, length)``. A switch is fine when the dwell fits before the arrival, when
    it is forced (``m`` not allowed at ``i``) or when ``n`` stops being allowed before the end.

    Examples
    --------
    >>> ok = end_switch_ok(np.array([0., 8.]), np.array([0., 100.]), (10.0, 125.0),
    ...                    np.ones((2, 2), bool), 5.0, 0.0)
    >>> ok[0].all(), ok[1].any()  # 10 s left at step 0; only 2 s left at step 1
    (np.True_, np.False_)
    >>> end_switch_ok(np.zeros(0), np.zeros(0), (0.0, 0.0), np.ones((0, 2), bool), 5.0,
    ...               0.0).shape
    (0, 2, 2)
    """
    end_s, end_m = end
    fits = (end_s - t_s >= min_dwell_s - _TIME_EPS) & (
        end_m - distance_m >= min_dwell_m - _TIME_EPS
    )
    leaves = next_disallowed_index(allowed) < allowed.shape[0]
    return fits[:, None, None] | leaves[:, :, None] | ~allowed[:, None, :]


def _end_of(corridor: Corridor) -> tuple[float, float]:
    """``(arrival, length)`` of a corridor, seconds after departure and metres."""
    if len(corridor) == 0:
        return 0.0, 0.0
    return (
        float(corridor.eta_s[-1] + corridor.duration_s[-1]),
        float(corridor.distance_m[-1] + corridor.length_m[-1]),
    )


def next_disallowed_index(allowed: BoolArray) -> IntArray:
    """``[i, n]``: the first ``j > i`` with ``allowed[j, n]`` False, else ``len(allowed)``.

    Examples
    --------
    >>> next_disallowed_index(np.array([[True], [False], [True]])).ravel().tolist()
    [1, 3, 3]
    """
    n_rows = allowed.shape[0]
    marks = np.where(allowed, n_rows, np.arange(n_rows)[:, None])
    # first disallowed at or after i, then shift by one to get "after i"
    at_or_after = np.minimum.accumulate(marks[::-1], axis=0)[::-1]
    out = np.full_like(at_or_after, n_rows)
    out[:-1] = at_or_after[1:]
    return out.astype(np.int64)


@dataclass(frozen=True)
class Units:
    """Consecutive segment groups a solver treats as one step.

    Attributes
    ----------
    start, stop : (U,) int
        Segment range ``[start, stop)`` of each unit.
    node_cost, sat_mb : (U, N)
        Sums over the unit's segments.
    entry_cost : (U, N)
        Entry cost at the unit's first segment.
    allowed : (U, N)
        Allowed on every segment of the unit.
    t_s, distance_m : (U,)
        Start time and distance of each unit (for dwell).
    end_s, end_m : float
        Arrival time and route length (the dwell must fit before them; infinite: no end rule).

    Solving over units is exact for the objective and the handover limit (units are single
    segments, or runs of identical rows under the triangle inequality); with a dwell or a
    satellite budget it is exact only when every unit is one segment (:meth:`exact_for`).
    """

    start: IntArray
    stop: IntArray
    node_cost: FloatArray
    entry_cost: FloatArray
    sat_mb: FloatArray
    allowed: BoolArray
    t_s: FloatArray
    distance_m: FloatArray
    end_s: float = np.inf
    end_m: float = np.inf

    def __len__(self) -> int:
        return int(self.start.shape[0])

    @property
    def single(self) -> bool:
        """True when every unit is one segment."""
        return bool((self.stop - self.start == 1).all())

    def exact_for(self, constraints: Constraints) -> bool:
        """True when an optimum over units is an optimum over segments under ``constraints``."""
        return self.single or not (constraints.has_dwell or constraints.sat_budget_mb is not None)

    def expand(self, unit_assignment: IntArray) -> IntArray:
        """Per-segment assignment from a per-unit one."""
        return np.repeat(np.asarray(unit_assignment, dtype=np.int64), self.stop - self.start)

    def restrict(self, assignment: IntArray) -> IntArray:
        """Per-unit assignment from a per-segment one (network at each unit's first segment)."""
        return np.asarray(assignment, dtype=np.int64)[self.start]

    def fits(self, assignment: IntArray) -> bool:
        """True when a per-segment assignment switches only at unit boundaries."""
        a = np.asarray(assignment)
        return bool((self.expand(a[self.start]) == a).all())


def compress(
    problem: HandoverProblem, *, max_run: int | None = None, cuts: IntArray | None = None
) -> Units:
    """Merge runs of identical cost rows into units.

    Parameters
    ----------
    problem : HandoverProblem
        The request.
    max_run : int, optional
        Cap on segments per unit (finer units give constrained solvers room to place switches).
    cuts : int array, optional
        Extra segments where a unit must start (e.g. the switch points of a plan to hint with).

    Notes
    -----
    When the switch costs break the triangle inequality, merging is not exact and every segment
    stays its own unit.

    Examples
    --------
    >>> from commap.networks import Network, NetworkKind, NetworkCatalogue
    >>> from commap.radio.quality import Quality
    >>> cat = NetworkCatalogue([Network(id="a", kind=NetworkKind.TERRESTRIAL, operator="a",
    ...                                 technology="lte", latency_ms=30)])
    >>> z = np.zeros(4)
    >>> c = Corridor(z, z, np.arange(4) * 50.0, z + 50, np.arange(4) * 2.0, z + 2, z + 25,
    ...              *(np.zeros(4, bool),) * 3, departure_s=0.0)
    >>> p = HandoverProblem.build(c, QualityMatrix.from_columns(("a",), [Quality.empty(4)]), cat)
    >>> len(compress(p)), len(compress(p, max_run=2))  # the first segment: a failure starts
    (2, 3)
    """
    n_seg = problem.shape[0]
    if max_run is not None and max_run < 1:
        raise InvalidInputError("max_run must be >= 1", field="max_run")
    if n_seg == 0 or not problem.triangle_ok:
        if not problem.triangle_ok:
            _report_no_compression(problem.network_ids)
        return _units(problem, np.arange(n_seg, dtype=np.int64))
    differs = problem.allowed[1:] != problem.allowed[:-1]
    for arr in (problem.node_cost, problem.entry_cost, problem.sat_mb):
        differs |= arr[1:] != arr[:-1]
    # rows that differ anywhere (a matrix product: numpy's any() along short rows is slow)
    changes = np.flatnonzero(differs.astype(np.float32) @ np.ones(differs.shape[1], np.float32))
    changes += 1
    run_start = np.concatenate([[0], changes]).astype(np.int64)
    run_stop = np.concatenate([changes, [n_seg]]).astype(np.int64)
    starts = _unit_starts(problem.entry_cost, run_start, run_stop, max_run)
    if cuts is not None and len(cuts):
        extra = np.asarray(cuts, dtype=np.int64)
        if extra.min() < 0 or extra.max() >= n_seg:
            raise InvalidInputError("unit cuts must be segment indices", field="cuts")
        starts = np.union1d(starts, extra).astype(np.int64)
    return _units(problem, starts)


def _report_no_compression(network_ids: tuple[str, ...]) -> None:
    """Say (at INFO the first time for these networks, then at DEBUG) that runs stay unmerged."""
    with _TRIANGLE_LOCK:
        first = network_ids not in _TRIANGLE_REPORTED
        _TRIANGLE_REPORTED.add(network_ids)
    log.log(
        logging.INFO if first else logging.DEBUG,
        "switch costs of %s break the triangle inequality: no run compression%s",
        ", ".join(network_ids),
        " (said once for these networks)" if first else "",
    )


def _unit_starts(
    entry_cost: FloatArray, run_start: IntArray, run_stop: IntArray, max_run: int | None
) -> IntArray:
    """Unit starts: each run cut into chunks of at most ``max_run`` segments, and its last
    segment on its own when entering at the next run may cost more than entering here."""
    length = run_stop - run_start
    nxt = np.minimum(run_stop, entry_cost.shape[0] - 1)
    dearer = (entry_cost[nxt] > entry_cost[run_start]).any(axis=1)
    tail = (length >= 2) & (run_stop < entry_cost.shape[0]) & dearer
    body = length - tail
    step = body if max_run is None else np.minimum(body, max_run)
    chunks = -(-body // step)  # ceil
    offsets = np.arange(int(chunks.sum())) - np.repeat(np.cumsum(chunks) - chunks, chunks)
    body_starts = np.repeat(run_start, chunks) + offsets * np.repeat(step, chunks)
    starts = np.concatenate([body_starts, (run_stop - 1)[tail]])
    return np.sort(starts, kind="stable").astype(np.int64)


def _units(problem: HandoverProblem, start: IntArray) -> Units:
    n_seg = problem.shape[0]
    end_s, end_m = _end_of(problem.corridor)
    stop = np.concatenate([start[1:], [n_seg]]).astype(np.int64)
    if len(start) == n_seg:  # no merging: avoid the reduction
        node, mb, allowed = problem.node_cost, problem.sat_mb, problem.allowed
    else:
        node = np.add.reduceat(problem.node_cost, start, axis=0)
        mb = np.add.reduceat(problem.sat_mb, start, axis=0)
        allowed = np.logical_and.reduceat(problem.allowed, start, axis=0)
    return Units(
        start=np.asarray(start, dtype=np.int64),
        stop=np.asarray(stop, dtype=np.int64),
        node_cost=np.ascontiguousarray(node),
        entry_cost=np.ascontiguousarray(problem.entry_cost[start]),
        sat_mb=np.ascontiguousarray(mb),
        allowed=np.ascontiguousarray(allowed),
        t_s=np.asarray(problem.corridor.eta_s, dtype=np.float64)[start],
        distance_m=np.asarray(problem.corridor.distance_m, dtype=np.float64)[start],
        end_s=end_s,
        end_m=end_m,
    )
