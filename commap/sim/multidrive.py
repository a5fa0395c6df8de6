"""Real multi-network drives as truth: score network-selection policies second by second.

A *multi-network drive* is a drive on which several networks were measured at the same time
(one modem per operator; e.g. the Hamburg - Bremen drive tests, three operators' LTE every
second). :func:`drive_seconds` puts its records on a one-second grid: per second and network
the network's record of that second (a record is held for up to ``hold_s`` seconds over
logging gaps; seconds where a network has no record even then are not scored), and whether
that second is an **outage second** of the network (:data:`OUTAGE_RULES`: SINR below Qout,
RSRP below -115 dBm, RSRQ below -16 dB, a downlink rate of at most 0.5 Mbit/s, or no serving
cell at all; the rules of :data:`commap.radio.learned.KPIS`).

Each policy picks a network for every second (:func:`replay_drive`):

``commap``
    The commap plan made on a built map (learned from earlier drives) along the recorded route
    (:func:`commap.service.planning.plan_route` with the drive's positions and times), executed
    open loop: the network the plan gives the second's position.
``best_single``
    The one network with the fewest outage seconds on this drive (chosen in hindsight).
``reactive``
    Start on the network with the best value in the first second and stay; on an outage
    second (not during a switch interruption) switch to the network with the best value that
    second among those not in outage (RSRP, else SINR, else downlink rate).
``oracle``
    The same planner with the same request on the truth (:class:`TruthLayer`: each segment's
    outage probability is the share of the drive's outage seconds of the network near it),
    executed open loop.

A second is an outage second of a policy when its serving network is in outage that second or
a switch interrupts the link (the link model's interruption of the switch's kind,
:meth:`commap.radio.link.LinkModel.switch`: 10 s of re-registration between operators without
an inter-operator handover agreement), rounded up to whole seconds. Handover failures are not
drawn: the replay is deterministic.

Examples
--------
>>> t = pd.to_datetime([0, 1, 2], unit="s", utc=True)
>>> records = pd.DataFrame({"timestamp": list(t) * 2, "lon": [8.8] * 6, "lat": [53.0] * 6,
...                         "network_id": ["a"] * 3 + ["b"] * 3,
...                         "rsrp_dbm": [-90.0, -120.0, -90.0, -100.0, -100.0, -100.0]})
>>> s = drive_seconds(records)
>>> s.network_ids, s.outage.sum(axis=0).tolist()
(('a', 'b'), [1, 0])
>>> reactive_policy(s).tolist()
[0, 1, 1]
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
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
from commap.radio.learned import KPIS, MIN_PROBABILITY, OutageRule, normalise_records
from commap.radio.link import LinkModel
from commap.radio.quality import Provenance, Quality, QualityMatrix, as_points

__all__ = [
    "OUTAGE_RULES",
    "POLICIES",
    "DriveSeconds",
    "Planned",
    "Planner",
    "PolicyScore",
    "Replay",
    "TruthLayer",
    "best_single_policy",
    "drive_seconds",
    "reactive_policy",
    "replay_drive",
    "score_policy",
]

log = logging.getLogger(__name__)

# the outage second of a network: any of these rules holds for its record of that second
OUTAGE_RULES: dict[str, OutageRule] = {
    kpi: KPIS[kpi].outage
    for kpi in ("sinr_db", "rsrp_dbm", "rsrq_db", "throughput_dl_mbps", "connected")
}
# the value the reactive rule ranks networks by (higher is better): the first present
_RANK_KPIS = ("rsrp_dbm", "sinr_db", "throughput_dl_mbps")
POLICIES = ("commap", "best_single", "reactive", "oracle")


@dataclass(frozen=True, eq=False)
class DriveSeconds:
    """A multi-network drive on a one-second grid (``n`` scored seconds, ``k`` networks).

    Attributes
    ----------
    network_ids : the networks, in column order.
    t_s : epoch seconds.
    lon, lat : position of each second (WGS84 degrees).
    piece : leg of each second (a new leg at a drive change or a pause over ``max_gap_s``).
    outage : ``(n, k)``, the network's record fails an outage rule.
    rank : ``(n, k)``, the value the reactive rule compares (higher is better; NaN unknown).
    unscored_s : seconds dropped because a network had no record.
    """

    network_ids: tuple[str, ...]
    t_s: FloatArray
    lon: FloatArray
    lat: FloatArray
    piece: IntArray
    outage: BoolArray
    rank: FloatArray
    unscored_s: int = 0

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    def pieces(self) -> list[slice]:
        """Index ranges of the legs, in time order."""
        if len(self) == 0:
            return []
        edges = np.flatnonzero(np.diff(self.piece)) + 1
        bounds = np.concatenate(([0], edges, [len(self)]))
        return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds.tolist())]


def _epoch_s(timestamps: pd.Series) -> FloatArray:
    t = pd.to_datetime(timestamps, utc=True)
    return np.asarray((t - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1), dtype=np.float64)


def drive_seconds(
    records: pd.DataFrame,
    *,
    network_ids: Sequence[str] | None = None,
    hold_s: int = 2,
    max_gap_s: float = 30.0,
) -> DriveSeconds:
    """Put a multi-network drive's records on a one-second grid (see the module docstring).

    Parameters
    ----------
    records : measurement records (``timestamp``, ``lon``, ``lat``, ``network_id``, KPIs;
        ``drive_id`` optional) of several networks measured at the same time.
    network_ids : the networks to score (default: every network of the records, sorted).
    hold_s : a network's record stands for up to this many following seconds without one.
    max_gap_s : a pause longer than this starts a new leg.

    Raises
    ------
    InvalidInputError
        No timestamps, fewer than two networks, a named network without records, or no second
        at which every network has a record.
    """
    recs = normalise_records(records)
    if "timestamp" not in recs or len(recs) == 0:
        raise InvalidInputError("a multi-network drive needs timestamped records", field="drive")
    found = sorted(pd.unique(recs["network_id"].astype(str)))
    ids = tuple(network_ids) if network_ids else tuple(found)
    missing = [n for n in ids if n not in found]
    if missing:
        raise InvalidInputError(
            f"network {missing[0]} has no record in the drive (found: {', '.join(found)})",
            field="network_ids",
        )
    if len(ids) < 2:
        raise InvalidInputError("a multi-network drive needs at least two networks", field="drive")
    recs = recs[recs["network_id"].astype(str).isin(ids)].copy()
    recs["second"] = np.floor(_epoch_s(recs["timestamp"])).astype(np.int64)
    recs = recs.sort_values(["second", "network_id"], kind="stable")
    grid = np.unique(recs["second"].to_numpy())
    drive = (
        recs.drop_duplicates("second").set_index("second")["drive_id"].astype(str).reindex(grid)
        if "drive_id" in recs
        else pd.Series("", index=grid)
    )
    new_piece = np.r_[
        True, (np.diff(grid) > max_gap_s) | (drive.to_numpy()[1:] != drive.to_numpy()[:-1])
    ]
    piece = np.cumsum(new_piece) - 1
    n, k = grid.size, len(ids)
    outage = np.zeros((n, k), dtype=bool)
    rank = np.full((n, k), np.nan)
    seen = np.zeros((n, k), dtype=bool)
    lon = np.zeros(n)
    lat = np.zeros(n)
    weight = np.zeros(n)
    for j, nid in enumerate(ids):
        rows = recs[recs["network_id"].astype(str) == nid].drop_duplicates("second")
        rows = rows.set_index("second").reindex(grid)
        rows["piece"] = piece
        has = rows["lon"].notna().to_numpy()
        lon += np.where(has, rows["lon"].fillna(0.0).to_numpy(), 0.0)
        lat += np.where(has, rows["lat"].fillna(0.0).to_numpy(), 0.0)
        weight += has
        held = rows.groupby("piece", sort=False).ffill(limit=hold_s)
        seen[:, j] = held["lon"].notna().to_numpy()
        for kpi, rule in OUTAGE_RULES.items():
            if kpi in held:
                outage[:, j] |= np.nan_to_num(rule(held[kpi].to_numpy(np.float64)), nan=0.0) > 0
        for kpi in _RANK_KPIS:
            if kpi in held and held[kpi].notna().any():
                rank[:, j] = held[kpi].to_numpy(np.float64)
                break
    keep = seen.all(axis=1)
    if not keep.any():
        raise InvalidInputError(
            f"no second at which every network ({', '.join(ids)}) has a record", field="drive"
        )
    rank = np.where(outage, -np.inf, rank)
    _, piece_codes = np.unique(piece[keep], return_inverse=True)
    result = DriveSeconds(
        network_ids=ids,
        t_s=grid[keep].astype(np.float64),
        lon=lon[keep] / weight[keep],
        lat=lat[keep] / weight[keep],
        piece=piece_codes.astype(np.int64),
        outage=outage[keep],
        rank=rank[keep],
        unscored_s=int((~keep).sum()),
    )
    log.info(
        "multi-network drive: %d seconds scored in %d legs, %d not (a network without a record)",
        len(result),
        len(result.pieces()),
        result.unscored_s,
    )
    return result


# ---------------------------------------------------------------------------------------------
# policies
# ---------------------------------------------------------------------------------------------
def best_single_policy(seconds: DriveSeconds) -> IntArray:
    """The one network with the fewest outage seconds (ties: the first), every second."""
    best = int(np.argmin(seconds.outage.sum(axis=0)))
    return np.full(len(seconds), best, dtype=np.int64)


def _interruptions_s(networks: Sequence[Network], link: LinkModel) -> FloatArray:
    return link.switch_table(networks).interruption_s


def reactive_policy(
    seconds: DriveSeconds,
    *,
    networks: Sequence[Network] | None = None,
    link: LinkModel | None = None,
) -> IntArray:
    """Stay; on an outage second switch to the best other network (see the module docstring).

    Without ``networks`` every switch is taken as instantaneous (no interruption blocks the
    rule).
    """
    k = len(seconds.network_ids)
    pause = (
        _interruptions_s(networks, link or LinkModel())
        if networks is not None
        else np.zeros((k, k))
    )
    serving = np.zeros(len(seconds), dtype=np.int64)
    for part in seconds.pieces():
        rank = seconds.rank[part]
        out = seconds.outage[part]
        current = int(np.nanargmax(np.nan_to_num(rank[0], nan=-np.inf))) if k else 0
        busy_until = -1
        for i in range(rank.shape[0]):
            if out[i, current] and i > busy_until:
                options = np.where(out[i], -np.inf, np.nan_to_num(rank[i], nan=-1e9))
                options[current] = -np.inf
                best = int(np.argmax(options))
                if np.isfinite(options[best]):
                    busy_until = i + math.ceil(float(pause[current, best])) - 1
                    current = best
            serving[part.start + i] = current
    return serving


@dataclass(frozen=True)
class PolicyScore:
    """One policy on one drive."""

    policy: str
    outage_s: int  # seconds in outage (own outage or switch interruption)
    switches: int
    interruption_s: int  # seconds of switch interruption (part of outage_s)
    scored_s: int

    @property
    def outage_share(self) -> float:
        """Outage seconds / scored seconds."""
        return self.outage_s / self.scored_s if self.scored_s else float("nan")


def score_policy(
    seconds: DriveSeconds,
    serving: IntArray,
    networks: Sequence[Network],
    *,
    policy: str,
    link: LinkModel | None = None,
) -> PolicyScore:
    """Outage seconds of a policy's network per second (see the module docstring).

    Examples
    --------
    >>> from commap.networks import NetworkKind
    >>> nets = [Network(id=i, kind=NetworkKind.TERRESTRIAL, operator=i, technology="lte",
    ...                 latency_ms=30) for i in ("a", "b")]
    >>> s = DriveSeconds(("a", "b"), np.arange(12.0), np.zeros(12), np.zeros(12),
    ...                  np.zeros(12, np.int64), np.zeros((12, 2), bool), np.zeros((12, 2)))
    >>> score = score_policy(s, np.r_[np.zeros(2, np.int64), np.ones(10, np.int64)], nets,
    ...                      policy="x")
    >>> score.switches, score.interruption_s, score.outage_s
    (1, 10, 10)
    """
    serving = np.asarray(serving, dtype=np.int64)
    if serving.shape != (len(seconds),):
        raise InvalidInputError("one serving network per second is required", field="serving")
    pause = _interruptions_s(networks, link or LinkModel())
    own = seconds.outage[np.arange(len(seconds)), serving]
    interrupted = np.zeros(len(seconds), dtype=bool)
    switches = 0
    for part in seconds.pieces():
        s = serving[part]
        for i in np.flatnonzero(s[1:] != s[:-1]) + 1:
            switches += 1
            span = math.ceil(float(pause[s[i - 1], s[i]]))
            interrupted[part.start + i : min(part.start + i + span, part.stop)] = True
    return PolicyScore(
        policy=policy,
        outage_s=int((own | interrupted).sum()),
        switches=switches,
        interruption_s=int(interrupted.sum()),
        scored_s=len(seconds),
    )


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
    return CommMap(
        directory=cmap.directory,
        manifest=cmap.manifest,
        catalogue=NetworkCatalogue([cmap.catalogue[n] for n in seconds.network_ids]),
        layers=layers,
        roads=cmap.roads,
        terrain=cmap.terrain,
    )


class Planned(Protocol):
    """What a planner returns (:class:`commap.service.planning.PlanResult` is one)."""

    @property
    def plan(self) -> Plan: ...

    @property
    def corridor(self) -> Corridor: ...

    @property
    def matrix(self) -> QualityMatrix: ...


# plans a recorded route on a map (the CLI passes commap.service.planning.plan_route)
Planner = Callable[[CommMap, Route], Planned]


@dataclass(frozen=True, eq=False)
class Replay:
    """Every policy on one multi-network drive.

    Attributes
    ----------
    seconds : the drive on its one-second grid.
    serving : per policy, the network column of every second.
    scores : per policy, its :class:`PolicyScore`.
    unknown_share : share of the drive's seconds where the map had no data near (per network).
    """

    seconds: DriveSeconds
    serving: dict[str, IntArray]
    scores: dict[str, PolicyScore]
    unknown_share: dict[str, float] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """One row per policy: outage seconds and share, switches, interruption seconds."""
        rows = [
            {
                "policy": s.policy,
                "outage_s": s.outage_s,
                "outage_share": round(s.outage_share, 5),
                "switches": s.switches,
                "interruption_s": s.interruption_s,
                "scored_s": s.scored_s,
            }
            for s in self.scores.values()
        ]
        return pd.DataFrame(rows)


def replay_drive(
    cmap: CommMap,
    records: pd.DataFrame,
    *,
    planner: Planner,
    network_ids: Sequence[str] | None = None,
    link: LinkModel | None = None,
    hold_s: int = 2,
    max_gap_s: float = 30.0,
) -> Replay:
    """Score commap's plan, the best single network, the reactive rule and the oracle.

    Parameters
    ----------
    cmap : a built map that does not hold the drive (learned from earlier drives).
    records : the drive's records (several networks measured at the same time).
    planner : plans a recorded route on the map (``sim`` sits below ``service``: the caller
        passes :func:`commap.service.planning.plan_route` with its request defaults).
    network_ids : networks to choose from (default: the map's networks found in the drive).
    link : link model of the switch interruptions (give the planner the same).
    hold_s, max_gap_s : see :func:`drive_seconds`.

    Raises
    ------
    InvalidInputError
        A network not in the map, a drive without seconds inside the map.
    """
    link = link or LinkModel()
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
    planned = {p: np.zeros(len(seconds), dtype=np.int64) for p in ("commap", "oracle")}
    unknown = np.zeros((len(seconds), len(networks)), dtype=bool)
    for part in seconds.pieces():
        leg = _leg_route(seconds, part)
        if leg is None:  # standing still: keep the last network
            for p in planned:
                planned[p][part] = planned[p][part.start - 1] if part.start else 0
            continue
        route, distance = leg
        result = planner(_restricted(cmap, seconds.network_ids), route)
        segment = _segment_of(result.corridor, distance)
        planned["commap"][part] = result.plan.assignment[segment]
        unknown[part] = np.asarray(result.matrix.unknown, dtype=bool)[segment]
        oracle = planner(_truth_map(cmap, seconds, part, cmap.segment_m / 2.0), route)
        planned["oracle"][part] = oracle.plan.assignment[_segment_of(oracle.corridor, distance)]
    serving = {
        "commap": planned["commap"],
        "best_single": best_single_policy(seconds),
        "reactive": reactive_policy(seconds, networks=networks, link=link),
        "oracle": planned["oracle"],
    }
    scores = {
        p: score_policy(seconds, s, networks, policy=p, link=link) for p, s in serving.items()
    }
    for s in scores.values():
        log.info("replay %s: %d outage s, %d switches", s.policy, s.outage_s, s.switches)
    shares = {nid: float(unknown[:, j].mean()) for j, nid in enumerate(seconds.network_ids)}
    return Replay(seconds, serving, scores, shares)


def _restricted(cmap: CommMap, network_ids: Sequence[str]) -> CommMap:
    """The map with only ``network_ids`` (in that order)."""
    if tuple(network_ids) == cmap.catalogue.ids:
        return cmap
    return CommMap(
        directory=cmap.directory,
        manifest=cmap.manifest,
        catalogue=NetworkCatalogue([cmap.catalogue[n] for n in network_ids]),
        layers={n: cmap.layers[n] for n in network_ids},
        roads=cmap.roads,
        terrain=cmap.terrain,
    )
