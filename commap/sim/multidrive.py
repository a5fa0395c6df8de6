"""Real multi-network drives as truth: score network-selection policies second by second.

A *multi-network drive* is a drive on which several networks were measured at the same time
(:mod:`commap.sim.seconds` puts it on a one-second grid with each network's outage seconds).
Each policy picks a network for every second, on every vehicle set-up
(:mod:`commap.radio.vehicle`) it applies to, and :func:`commap.sim.failover.score_choice`
says what the user felt: seconds of lost service (own outage or switch interruption), loss
events (runs of lost seconds at least ``tolerance_s`` long), the longest loss, switches and
satellite MB (:func:`replay_drive`).

``commap``
    The commap plan made on a built map (learned from earlier drives) along the recorded route
    (:func:`commap.service.planning.plan_route` with the drive's positions and times), executed
    in closed loop as a vehicle does (:func:`commap.sim.failover.planned_failover_policy`): the
    network the plan gives the second's position, and where that link fails the set-up's
    failover rule (one modem: the link's own state, an outage left at once where the map
    expects it to outlast the attach, else after :data:`commap.sim.failover.LEAVE_AFTER_S`
    outage seconds the map did not foresee; two modems: the registered standby, as
    ``hot_standby``, else an attach where the map expects the outage to outlast it), to the
    network the map ranks next. With two modems the standby registers on the plan's next
    network ahead of each switch, between switches on the network the map ranks next, moved
    off it while it is in an outage the map expects to outlast a registration.
``commap_open_loop``
    The same plan without the failover rule.
``rules_without_plan``
    The same failover rule as ``commap`` without the map: the first network of the map-free
    baselines' order all the way, a failed link to the next of that order
    (:func:`commap.sim.failover.map_free_plan_seconds`), every outage second unforeseen. With
    ``commap`` it is the ablation: the share of the plan and of what its map foresaw.
``oracle``
    The same planner with the same request on the truth (:class:`TruthLayer`: each segment's
    outage probability is the share of the drive's outage seconds of the network near it),
    executed as ``commap`` with the truth as the map the rule consults (it foresees the
    outages it planned on, so it does not flee them).
``best_single`` / ``best_pair``
    The network (bonded pair) with the fewest lost seconds on this drive, in hindsight.
``a3_failover``, ``probe_failover``, ``probe_failover_fast``, ``greedy_hysteresis``,
``hot_standby``, ``bonding``
    The map-free baselines of :mod:`commap.sim.failover`, each at its documented defaults.

Which policies a set-up runs: :data:`POLICIES_BY_SETUP` (a bonded pair is scored with the
pair policies only: the planner does not choose pairs yet). Handover failures are not drawn:
the replay is deterministic.

Examples
--------
>>> t = pd.to_datetime([0, 1, 2], unit="s", utc=True)
>>> records = pd.DataFrame({"timestamp": list(t) * 2, "lon": [8.8] * 6, "lat": [53.0] * 6,
...                         "network_id": ["a"] * 3 + ["b"] * 3,
...                         "rsrp_dbm": [-90.0, -120.0, -90.0, -100.0, -100.0, -100.0]})
>>> s = drive_seconds(records)
>>> s.network_ids, s.outage.sum(axis=0).tolist()
(('a', 'b'), [1, 0])
>>> a3_failover_policy(s).serving.tolist()
[0, 1, 1]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from commap.arrays import BoolArray, FloatArray, IntArray
from commap.errors import InvalidInputError
from commap.geo.corridor import Corridor, Route, route_from_polyline
from commap.geo.geodesy import GEOD, to_local_m
from commap.map.comm_map import CommMap
from commap.networks import Network, NetworkCatalogue
from commap.plan import Plan
from commap.radio.learned import MIN_PROBABILITY
from commap.radio.link import LinkModel
from commap.radio.quality import Provenance, Quality, QualityMatrix, as_points
from commap.radio.vehicle import TERRESTRIAL_SETUPS, VehicleSetup, vehicle_setup
from commap.sim.failover import (
    FAST_PROBES,
    NONE,
    PEPLINK_PROBES,
    Choice,
    PolicyScore,
    a3_failover_policy,
    best_pair_policy,
    best_single_policy,
    bonding_policy,
    greedy_policy,
    hot_standby_policy,
    loss_breakdown,
    map_free_plan_seconds,
    next_switch,
    planned_failover_policy,
    probe_failover_policy,
    score_choice,
)
from commap.sim.seconds import OUTAGE_RULES, DriveSeconds, drive_seconds

__all__ = [
    "MAP_FREE",
    "OUTAGE_RULES",
    "POLICIES_BY_SETUP",
    "DriveSeconds",
    "Planned",
    "Planner",
    "PolicyScore",
    "Replay",
    "TruthLayer",
    "a3_failover_policy",
    "best_single_policy",
    "breakdown_rows",
    "drive_seconds",
    "policy_choices",
    "rank_by_outage",
    "replay_drive",
    "summary_frame",
    "versus_frame",
]

log = logging.getLogger(__name__)

_SINGLE_LINK = (
    "commap",
    "commap_open_loop",
    "oracle",
    "best_single",
    "a3_failover",
    "probe_failover",
    "probe_failover_fast",
    "greedy_hysteresis",
    "rules_without_plan",
)
# the window over which the map ranks the networks a failed link or the standby goes to (s)
_AHEAD_S = 300
# the map-free baselines (hindsight choices such as best_single are not among them)
MAP_FREE: tuple[str, ...] = (
    "a3_failover",
    "probe_failover",
    "probe_failover_fast",
    "greedy_hysteresis",
    "hot_standby",
    "bonding",
)
POLICIES_BY_SETUP: dict[str, tuple[str, ...]] = {
    "single_modem": _SINGLE_LINK,
    "dual_modem": (*_SINGLE_LINK, "hot_standby"),
    "bonded": ("best_pair", "bonding"),
    "satellite_always_on": _SINGLE_LINK,
    "satellite_on_demand": _SINGLE_LINK,
}


# ---------------------------------------------------------------------------------------------
# planned policies: the plan's network at each second's position
# ---------------------------------------------------------------------------------------------
def _leg_route(seconds: DriveSeconds, part: slice) -> tuple[Any, FloatArray] | None:
    """The leg as a route (consecutive duplicate positions merged) and each second's distance."""
    lon, lat, t = seconds.lon[part], seconds.lat[part], seconds.t_s[part]
    _, _, step = GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
    distance = np.concatenate(([0.0], np.cumsum(np.asarray(step, dtype=np.float64))))
    moved = np.r_[True, np.asarray(step) > 0.5]
    if moved.sum() < 2 or distance[-1] < 1.0:
        return None  # a leg standing still: no route to plan
    route = route_from_polyline(lon[moved], lat[moved], t_s=t[moved], name="drive leg")
    return route, distance


def rank_by_outage(point: FloatArray, segment: IntArray, ahead_s: int = _AHEAD_S) -> IntArray:
    """Per second, the network columns by a map's mean point outage probability over the next
    ``ahead_s`` seconds, lowest first (a window, so that a standby is not re-registered after
    every segment's estimate).

    Parameters
    ----------
    point : ``(segments, k)`` the map's outage probability per segment and network.
    segment : ``(n,)`` the segment of each second.
    ahead_s : the window (s).

    Examples
    --------
    >>> point = np.array([[0.1, 0.5], [0.9, 0.0]])
    >>> rank_by_outage(point, np.array([0, 0, 1]), ahead_s=1).tolist()
    [[0, 1], [0, 1], [1, 0]]
    >>> rank_by_outage(point, np.zeros(0, np.int64)).shape
    (0, 2)
    """
    per_second = point[segment]
    total = np.vstack((np.zeros((1, per_second.shape[1])), np.cumsum(per_second, axis=0)))
    i = np.arange(per_second.shape[0])
    end = np.minimum(i + ahead_s, per_second.shape[0])
    mean = (total[end] - total[i]) / (end - i)[:, None]
    return np.argsort(mean, axis=1, kind="stable").astype(np.int64)


def _segment_of(corridor: Corridor, distance_m: FloatArray) -> IntArray:
    idx = np.searchsorted(corridor.distance_m, distance_m, side="right") - 1
    return np.clip(idx, 0, len(corridor) - 1).astype(np.int64)


class TruthLayer:
    """A network's truth on a drive leg as a coverage layer (the oracle plans on it).

    At a point, ``outage_prob`` is the share of the leg's outage seconds of the network within
    ``radius_m`` (the nearest second where none is that near), clipped to
    ``[MIN_PROBABILITY, 1 - MIN_PROBABILITY]``; the signal fields are neutral (the link model
    believes the predicted outage).

    Examples
    --------
    >>> layer = TruthLayer("a", [8.8, 8.8001], [53.0, 53.0], [True, False], radius_m=1.0)
    >>> layer.sample([8.8, 8.8001], [53.0, 53.0], 0.0).outage_prob.round(3).tolist()
    [0.999, 0.001]
    """

    def __init__(
        self, network_id: str, lon: Any, lat: Any, outage: Any, *, radius_m: float = 25.0
    ) -> None:
        self.network_id = network_id
        self._lat0 = float(np.mean(lat))
        self._tree = cKDTree(np.column_stack(to_local_m(lon, lat, lat0=self._lat0)))
        self._outage = np.asarray(outage, dtype=np.float64)
        self._radius_m = float(radius_m)

    def sample(
        self,
        lon: Any,
        lat: Any,
        t_s: Any,
        *,
        in_tunnel: Any = None,
        under_bridge: Any = None,
    ) -> Quality:
        """The truth's outage share near each point."""
        lon_a, lat_a, _ = as_points(lon, lat, t_s)
        xy = np.column_stack(to_local_m(lon_a, lat_a, lat0=self._lat0))
        near = self._tree.query_ball_point(xy, r=self._radius_m)
        _, nearest = self._tree.query(xy)
        share = np.array(
            [
                self._outage[idx].mean() if idx else self._outage[j]
                for idx, j in zip(near, np.atleast_1d(nearest).tolist(), strict=True)
            ],
            dtype=np.float64,
        )
        n = lon_a.shape[0]
        return Quality(
            rsrp_dbm=np.full(n, np.nan),
            sinr_db=np.zeros(n),
            elevation_deg=np.full(n, np.nan),
            confidence=np.ones(n),
            provenance=np.full(n, Provenance.MEASURED, dtype=np.int8),
            sample_count=np.ones(n, dtype=np.int32),
            outage_prob=np.clip(share, MIN_PROBABILITY, 1.0 - MIN_PROBABILITY),
        )


def _truth_map(cmap: CommMap, seconds: DriveSeconds, part: slice, radius_m: float) -> CommMap:
    """The map with every network's layer replaced by its truth on the leg."""
    layers = {
        nid: TruthLayer(
            nid, seconds.lon[part], seconds.lat[part], seconds.outage[part, j], radius_m=radius_m
        )
        for j, nid in enumerate(seconds.network_ids)
    }
    catalogue = NetworkCatalogue([cmap.catalogue[n] for n in seconds.network_ids])
    return cmap.replaced(catalogue=catalogue, layers=layers)


class Planned(Protocol):
    """What a planner returns (:class:`commap.service.planning.PlanResult` is one)."""

    @property
    def plan(self) -> Plan: ...

    @property
    def corridor(self) -> Corridor: ...

    @property
    def matrix(self) -> QualityMatrix: ...


# plans a recorded route on a map for a vehicle set-up (by name; the CLI passes
# commap.service.planning.plan_route)
Planner = Callable[[CommMap, Route, str], Planned]


@dataclass(frozen=True, eq=False)
class Replay:
    """Every policy on every vehicle set-up on one multi-network drive.

    Attributes
    ----------
    seconds : the drive on its one-second grid.
    serving : per vehicle set-up and policy, its :class:`~commap.sim.failover.Choice`.
    scores : per vehicle set-up and policy, its :class:`PolicyScore`.
    unknown_share : share of the drive's seconds where the map had no data near (per network).
    truth : ``"real"`` (measured drives).
    networks : one per network column (what a switch between them costs).
    unknown : ``(n,)`` the map had no data near the second's position (for any network).
    columns : per vehicle set-up, the networks it can use (a set-up without a satellite
        terminal drives the terrestrial ones only): its choices index these (default: all).
    """

    seconds: DriveSeconds
    serving: dict[str, dict[str, Choice]]
    scores: dict[str, dict[str, PolicyScore]]
    unknown_share: dict[str, float] = field(default_factory=dict)
    truth: str = "real"
    networks: tuple[Network, ...] = ()
    unknown: BoolArray | None = None
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def setup_view(self, vehicle: str) -> tuple[DriveSeconds, tuple[Network, ...]]:
        """The drive's seconds and networks as ``vehicle``'s choices index them."""
        ids = self.columns.get(vehicle, self.seconds.network_ids)
        if ids == self.seconds.network_ids:
            return self.seconds, self.networks
        by_id = {n.id: n for n in self.networks}
        return self.seconds.columns(ids), tuple(by_id[n] for n in ids)

    def score(self, vehicle: str, policy: str) -> PolicyScore:
        """The score of ``policy`` on ``vehicle``."""
        return self.scores[vehicle][policy]

    def summary(self) -> pd.DataFrame:
        """One row per vehicle set-up and policy (:func:`summary_frame`)."""
        return summary_frame(self.scores, self.truth)

    def breakdown(self) -> pd.DataFrame:
        """One row per single-link policy and set-up: its lost seconds per hour by what lost
        them (:func:`commap.sim.failover.loss_breakdown`), ``on_unknown_s`` those of them
        where the map had no data near, and the same for commap's excess over the oracle
        (policy ``commap - oracle``): where the plan falls short."""
        if not self.networks:
            raise InvalidInputError("the replay does not say its networks", field="networks")
        rows = []
        for vehicle, by_policy in self.serving.items():
            setup = vehicle_setup(vehicle)
            seconds, networks = self.setup_view(vehicle)
            parts: dict[str, dict[str, float]] = {}
            for policy, choice in by_policy.items():
                if choice.bonded:
                    continue
                split = loss_breakdown(seconds, choice, networks, setup, policy=policy)
                parts[policy] = split.per_hour()
                if self.unknown is not None:
                    blind = loss_breakdown(
                        seconds, choice, networks, setup, policy=policy,
                        within=self.unknown,
                    )  # fmt: skip
                    parts[policy]["on_unknown_s"] = blind.per_hour()["lost_s"]
            rows += breakdown_rows(vehicle, parts)
        return pd.DataFrame(rows)

    def versus(self) -> pd.DataFrame:
        """Per set-up with a plan: commap and the oracle against the best map-free baseline
        (:func:`versus_frame`)."""
        return versus_frame(self.scores)


def breakdown_rows(vehicle: str, parts: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """One set-up's rows of a loss-breakdown table (seconds per hour by what lost them), with
    the row ``commap - oracle`` (where commap's excess comes from) when both are given.

    Examples
    --------
    >>> rows = breakdown_rows("single_modem", {"commap": {"lost_s": 12.04},
    ...                                        "oracle": {"lost_s": 10.0}})
    >>> [(r["policy"], r["lost_s"]) for r in rows]
    [('commap', 12.0), ('oracle', 10.0), ('commap - oracle', 2.0)]
    """
    if "commap" in parts and "oracle" in parts:
        parts = dict(parts)
        parts["commap - oracle"] = {k: v - parts["oracle"][k] for k, v in parts["commap"].items()}
    return [
        {"vehicle": vehicle, "policy": p, **{k: round(v, 1) for k, v in split.items()}}
        for p, split in parts.items()
    ]


def summary_frame(scores: Mapping[str, Mapping[str, PolicyScore]], truth: str) -> pd.DataFrame:
    """One row per vehicle set-up and policy: user-felt figures first, counts after.

    Examples
    --------
    >>> s = PolicyScore("x", outage_s=36, switches=2, interruption_s=20, scored_s=3600)
    >>> row = summary_frame({"single_modem": {"x": s}}, "real").iloc[0]
    >>> row["truth"], row["vehicle"], row["policy"], float(row["service_loss_s_per_hour"])
    ('real', 'single_modem', 'x', 36.0)
    """
    rows = [
        {
            "truth": truth,
            "vehicle": s.vehicle,
            "policy": s.policy,
            "service_loss_s_per_hour": round(s.service_loss_s_per_hour, 2),
            "loss_events_per_hour": round(s.loss_events_per_hour, 2),
            "longest_loss_s": s.longest_loss_s,
            "switches_per_hour": round(s.switches_per_hour, 2),
            "satellite_mb": s.satellite_mb,
            "outage_s": s.outage_s,
            "outage_share": round(s.outage_share, 5),
            "loss_events": s.loss_events,
            "switches": s.switches,
            "interruption_s": s.interruption_s,
            "scored_s": s.scored_s,
        }
        for by_policy in scores.values()
        for s in by_policy.values()
    ]
    return pd.DataFrame(rows)


def versus_frame(scores: Mapping[str, Mapping[str, PolicyScore]]) -> pd.DataFrame:
    """Per set-up with a plan: commap and the oracle against the best map-free baseline.

    ``excess_ratio`` is commap's lost seconds in excess of the oracle's over the best
    map-free baseline's excess (NaN where the baseline loses no more than the oracle);
    ``met`` is the product's bar: ratio at most 0.5 and no more switches than the baseline.
    ``rules_without_plan_loss_s_per_hour`` is the same closed-loop rules without the plan
    (the ablation), where scored.

    Examples
    --------
    >>> def score(policy, lost, switches):
    ...     return PolicyScore(policy, outage_s=lost, switches=switches, interruption_s=0,
    ...                        scored_s=3600)
    >>> row = versus_frame({"single_modem": {p: score(p, lost, sw) for p, lost, sw in (
    ...     ("commap", 12, 3), ("oracle", 10, 3), ("probe_failover", 20, 4))}}).iloc[0]
    >>> row["best_map_free"], float(row["excess_ratio"]), bool(row["met"])
    ('probe_failover', 0.2, True)
    """
    rows = []
    for vehicle, by_policy in scores.items():
        if "commap" not in by_policy:
            continue
        free = [by_policy[p] for p in MAP_FREE if p in by_policy]
        best = min(free, key=lambda s: s.outage_s)
        commap, oracle = by_policy["commap"], by_policy["oracle"]
        base_excess = best.outage_s - oracle.outage_s
        ratio = (commap.outage_s - oracle.outage_s) / base_excess if base_excess > 0 else math.nan
        row = {
            "vehicle": vehicle,
            "commap_loss_s_per_hour": round(commap.service_loss_s_per_hour, 1),
            "oracle_loss_s_per_hour": round(oracle.service_loss_s_per_hour, 1),
            "best_map_free": best.policy,
            "best_map_free_loss_s_per_hour": round(best.service_loss_s_per_hour, 1),
            "excess_ratio": round(ratio, 2),
            "commap_switches_per_hour": round(commap.switches_per_hour, 1),
            "best_map_free_switches_per_hour": round(best.switches_per_hour, 1),
            "met": bool(ratio <= 0.5 and commap.switches <= best.switches),
        }
        if "rules_without_plan" in by_policy:
            rules = by_policy["rules_without_plan"]
            row["rules_without_plan_loss_s_per_hour"] = round(rules.service_loss_s_per_hour, 1)
            row["rules_without_plan_switches_per_hour"] = round(rules.switches_per_hour, 1)
        rows.append(row)
    return pd.DataFrame(rows)


def _next_planned(serving: IntArray, seconds: DriveSeconds) -> IntArray:
    """Per second, the plan's next different network in the leg (``-1`` none): the standby."""
    ahead = np.full(serving.shape, NONE, dtype=np.int64)
    for part in seconds.pieces():
        ahead[part] = next_switch(serving[part])[1]
    return ahead


def policy_choices(
    setup: VehicleSetup,
    seconds: DriveSeconds,
    networks: Sequence[Network],
    planned: Mapping[str, IntArray],
    ranked: Mapping[str, IntArray],
    priority: Sequence[int] | None = None,
    foreseen: Mapping[str, FloatArray] | None = None,
) -> dict[str, Choice]:
    """Every policy of :data:`POLICIES_BY_SETUP` on ``setup``.

    Parameters
    ----------
    setup : the vehicle set-up.
    seconds : the drive (the truth, second by second).
    networks : one per network column.
    planned : per planned policy (``commap``, ``oracle``; not needed on a bonded set-up) the
        plan's network column at each second.
    ranked : per planned policy, ``(n, k)`` the network columns best first by its map.
    priority : the map-free rules' configured order (default: by signal at each leg's start).
    foreseen : per planned policy, ``(n, k)`` its map's outage probability of each network at
        each second (the one-modem rule rides out the outages the map foresaw; default: none
        foreseen, every outage second counts).
    """
    free_plan, free_order = map_free_plan_seconds(seconds, priority)
    known = foreseen or {}
    made: dict[str, Callable[[], Choice]] = {
        "commap": lambda: planned_failover_policy(
            seconds,
            networks,
            setup,
            planned["commap"],
            ranked["commap"],
            foreseen=known.get("commap"),
        ),
        "commap_open_loop": lambda: Choice(
            planned["commap"], _next_planned(planned["commap"], seconds)
        ),
        "rules_without_plan": lambda: planned_failover_policy(
            seconds, networks, setup, free_plan, free_order
        ),
        "oracle": lambda: planned_failover_policy(
            seconds,
            networks,
            setup,
            planned["oracle"],
            ranked["oracle"],
            foreseen=known.get("oracle"),
        ),
        "best_single": lambda: best_single_policy(seconds),
        "best_pair": lambda: best_pair_policy(seconds),
        "a3_failover": lambda: a3_failover_policy(seconds, networks, setup, priority=priority),
        "probe_failover": lambda: probe_failover_policy(
            seconds, networks, setup, PEPLINK_PROBES, priority=priority
        ),
        "probe_failover_fast": lambda: probe_failover_policy(
            seconds, networks, setup, FAST_PROBES, priority=priority
        ),
        "greedy_hysteresis": lambda: greedy_policy(seconds, networks, setup, priority=priority),
        "hot_standby": lambda: hot_standby_policy(seconds, networks, setup, priority=priority),
        "bonding": lambda: bonding_policy(seconds, priority=priority),
    }
    return {p: made[p]() for p in POLICIES_BY_SETUP[setup.name]}


def replay_drive(
    cmap: CommMap,
    records: pd.DataFrame,
    *,
    planner: Planner,
    network_ids: Sequence[str] | None = None,
    vehicles: Sequence[str] | None = None,
    priority: Sequence[str] | None = None,
    hold_s: int = 2,
    max_gap_s: float = 30.0,
    tolerance_s: float = 1.0,
    mb_per_s: float = 0.0,
) -> Replay:
    """Score commap's plan, the map-free baselines and the oracle on each vehicle set-up.

    Parameters
    ----------
    cmap : a built map that does not hold the drive (learned from earlier drives).
    records : the drive's records (several networks measured at the same time).
    planner : plans a recorded route on the map for a vehicle set-up, given by name (``sim``
        sits below ``service``: the caller passes :func:`commap.service.planning.plan_route`
        with its request defaults and that ``vehicle``).
    network_ids : networks to choose from (default: the map's networks found in the drive).
    vehicles : vehicle set-ups (:data:`commap.radio.vehicle.VEHICLE_SETUPS` names); a
        satellite set-up needs a satellite network, and every set-up two networks it can use
        (one without a satellite terminal drives the terrestrial networks only). Default: the
        terrestrial set-ups, and ``satellite_always_on`` where the drive has a satellite network.
    priority : the map-free baselines' configured order of networks (primary first; e.g. by
        their outage share on earlier drives); default: by signal at the start of each leg.
    hold_s, max_gap_s : see :func:`commap.sim.seconds.drive_seconds`.
    tolerance_s : a loss event is a run of lost seconds at least this long.
    mb_per_s : the application's data rate (satellite MB).

    Raises
    ------
    InvalidInputError
        A network not in the map, a drive without seconds inside the map, an unknown vehicle
        set-up, a satellite set-up without a satellite network, or a priority that does not
        name every network once.
    """
    if not tolerance_s > 0:
        raise InvalidInputError(f"tolerance_s {tolerance_s}: must be > 0", field="tolerance_s")
    if vehicles is not None and not vehicles:
        raise InvalidInputError("give at least one vehicle set-up", field="vehicle")
    for name in vehicles or ():
        vehicle_setup(name)  # an unknown name fails before any work
    found = set(pd.unique(records["network_id"].astype(str)))
    ids = list(network_ids) if network_ids else [n for n in cmap.catalogue.ids if n in found]
    for nid in ids:
        if nid not in cmap.catalogue.ids:
            raise InvalidInputError(
                f"network {nid} is not in map {cmap.name} (networks: "
                f"{', '.join(cmap.catalogue.ids)})",
                field="network_ids",
            )
    lon0, lat0, lon1, lat1 = cmap.bbox
    inside = records["lon"].between(lon0, lon1) & records["lat"].between(lat0, lat1)
    if not inside.any():
        raise InvalidInputError(
            f"no record of the drive lies inside map {cmap.name}", field="drive"
        )
    seconds = drive_seconds(records[inside], network_ids=ids, hold_s=hold_s, max_gap_s=max_gap_s)
    networks = [cmap.catalogue[n] for n in seconds.network_ids]
    if vehicles is None:
        with_terminal = ("satellite_always_on",) if any(n.is_satellite for n in networks) else ()
        vehicles = TERRESTRIAL_SETUPS + with_terminal
    setups = [vehicle_setup(v) for v in dict.fromkeys(vehicles)]
    if priority is not None and sorted(priority) != sorted(seconds.network_ids):
        raise InvalidInputError(
            f"priority {', '.join(priority)} must name each of "
            f"{', '.join(seconds.network_ids)} once",
            field="priority",
        )
    columns = {setup.name: _setup_columns(setup, seconds, networks) for setup in setups}
    unknown = np.zeros((len(seconds), len(networks)), dtype=bool)
    legs: list[_Leg] = []  # routes and truths of the legs, made once for every set-up
    serving: dict[str, dict[str, Choice]] = {}
    scores: dict[str, dict[str, PolicyScore]] = {}
    for setup in setups:
        # a set-up without a satellite terminal drives the terrestrial networks only
        own = seconds.columns(columns[setup.name])
        own_networks = [cmap.catalogue[n] for n in own.network_ids]
        order = None if priority is None else [own.network_ids.index(n) for n in priority
                                               if n in own.network_ids]  # fmt: skip
        drive = _PlannedDrive({}, {}, {})
        if not setup.bonded:  # the planner plans for this set-up's switch times
            legs = legs or _legs(cmap, seconds)
            drive, own_unknown = _plan_drive(cmap, own, own_networks, planner, setup.name, legs)
            unknown[:, [seconds.network_ids.index(n) for n in own.network_ids]] |= own_unknown
        serving[setup.name] = policy_choices(
            setup, own, own_networks, drive.planned, drive.ranked, order, drive.foreseen
        )
        scores[setup.name] = {
            p: score_choice(
                own,
                c,
                own_networks,
                setup,
                policy=p,
                tolerance_s=tolerance_s,
                mb_per_s=mb_per_s,
            )
            for p, c in serving[setup.name].items()
        }
        for sc in scores[setup.name].values():
            log.info(
                "replay %s on %s: %d lost s, %d switches", sc.policy, sc.vehicle, sc.outage_s,
                sc.switches,
            )  # fmt: skip
    shares = {nid: float(unknown[:, j].mean()) for j, nid in enumerate(seconds.network_ids)}
    blind: BoolArray = np.asarray(unknown.any(axis=1), dtype=bool)
    return Replay(
        seconds, serving, scores, shares, networks=tuple(networks), unknown=blind, columns=columns
    )


def _setup_columns(
    setup: VehicleSetup, seconds: DriveSeconds, networks: Sequence[Network]
) -> tuple[str, ...]:
    """The drive's networks ``setup`` can use; an error where they cannot make its policies."""
    ids = tuple(n.id for n in setup.usable(networks))
    if setup.has_terminal and not any(n.is_satellite for n in networks):
        raise InvalidInputError(
            f"vehicle {setup.name} needs a satellite network among "
            f"{', '.join(seconds.network_ids)}",
            field="vehicle",
        )
    if len(ids) < 2:
        raise InvalidInputError(
            f"vehicle {setup.name} can use only {', '.join(ids) or 'none'} of "
            f"{', '.join(seconds.network_ids)}: a replay needs two networks it can use",
            field="vehicle",
        )
    return ids


@dataclass(frozen=True)
class _Leg:
    """A leg of the drive: its seconds and, when it moves, its route, each second's distance
    along it and the truth map the oracle plans on."""

    part: slice
    route: Route | None = None
    distance_m: FloatArray | None = None
    truth: CommMap | None = None


def _legs(cmap: CommMap, seconds: DriveSeconds) -> list[_Leg]:
    legs = []
    for part in seconds.pieces():
        leg = _leg_route(seconds, part)
        if leg is None:  # standing still
            legs.append(_Leg(part))
            continue
        truth = _truth_map(cmap, seconds, part, cmap.segment_m / 2.0)
        legs.append(_Leg(part, leg[0], leg[1], truth))
    return legs


@dataclass(frozen=True)
class _PlannedDrive:
    """Per planned policy (``commap``, ``oracle``), per second of the drive: the plan's
    network, the networks best first by the policy's map (where a failed link goes) and that
    map's outage probability of each network."""

    planned: dict[str, IntArray]
    ranked: dict[str, IntArray]
    foreseen: dict[str, FloatArray]


def _plan_drive(
    cmap: CommMap,
    seconds: DriveSeconds,
    networks: Sequence[Network],
    planner: Planner,
    vehicle: str,
    legs: Sequence[_Leg],
) -> tuple[_PlannedDrive, BoolArray]:
    """Plan every leg on the map (``commap``) and on the truth (``oracle``) for ``vehicle``.

    Returns the plans per second (:class:`_PlannedDrive`) and where the map had no data near.
    """
    planned = {p: np.zeros(len(seconds), dtype=np.int64) for p in ("commap", "oracle")}
    ranked = {p: np.tile(np.arange(len(networks)), (len(seconds), 1)) for p in planned}
    # standing still there is no plan, and no outage foreseen
    foreseen = {p: np.zeros((len(seconds), len(networks))) for p in planned}
    unknown = np.zeros((len(seconds), len(networks)), dtype=bool)
    only = _restricted(cmap, seconds.network_ids)
    for leg in legs:
        part = leg.part
        if leg.route is None or leg.distance_m is None or leg.truth is None:
            for p in planned:  # standing still: keep the last network
                planned[p][part] = planned[p][part.start - 1] if part.start else 0
            continue
        truth = _restricted(leg.truth, seconds.network_ids)
        for policy, on_map in (("commap", only), ("oracle", truth)):
            result = planner(on_map, leg.route, vehicle)
            segment = _segment_of(result.corridor, leg.distance_m)
            point = LinkModel().point_outage(result.matrix, networks)
            planned[policy][part] = result.plan.assignment[segment]
            ranked[policy][part] = rank_by_outage(point, segment)
            foreseen[policy][part] = point[segment]
            if policy == "commap":
                unknown[part] = np.asarray(result.matrix.unknown, dtype=bool)[segment]
    return _PlannedDrive(planned, ranked, foreseen), unknown


def _restricted(cmap: CommMap, network_ids: Sequence[str]) -> CommMap:
    """The map with only ``network_ids`` (in that order)."""
    if tuple(network_ids) == cmap.catalogue.ids:
        return cmap
    return cmap.replaced(
        catalogue=NetworkCatalogue([cmap.catalogue[n] for n in network_ids]),
        layers={n: cmap.layers[n] for n in network_ids},
    )
