"""The synthetic truth second by second: every vehicle set-up and every map-free baseline.

The drive simulator (:mod:`commap.sim.drive`) drives one vehicle (one modem with a SIM per
operator and a satellite terminal) at 100 ms steps with 3GPP radio-link monitoring. To judge
the plan on every vehicle set-up against the same map-free baselines as the real drives, the
truth field is also put on a one-second grid (:func:`truth_seconds`) and scored by the real
truth's own machinery (:func:`commap.sim.multidrive.policy_choices`,
:func:`commap.sim.failover.score_choice`): one implementation of each baseline for both
truths.

An **outage second** of a network is a second in which the median of the UE's samples
(slow truth and fast fading) over its 100 ms steps fails an outage rule of the real drives
(:data:`commap.sim.seconds.OUTAGE_RULES`: SINR below Qout, -5 dB, or RSRP below -115 dBm).
The map-free rules rank networks by that median RSRP (SINR where a network has none, as the
satellites).

Per route and seed (:func:`judge_truth`), each set-up drives on the networks it can use (a
set-up without a satellite terminal on the terrestrial networks only): ``commap`` is the plan
made on the planner's map for the set-up, ``oracle`` the same planner on the truth's segment
matrix (:meth:`commap.sim.truth.TruthField.segment_matrix`), both executed in closed loop with
the set-up's failover rule, the failed link going to the network their map ranks next (on one
modem the rule asks their map which outages it foresaw, on two modems where the standby
registers and whether to attach where no standby is up:
:func:`commap.sim.failover.planned_failover_policy`); ``rules_without_plan`` the same rule
without a plan or a map. :class:`SecondsTotals` adds the routes
and seeds up (pooled seconds: every seed drives every route once).

Examples
--------
>>> SYNTHETIC_SETUPS
('single_modem', 'dual_modem', 'bonded', 'satellite_always_on')
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd

from commap.arrays import FloatArray, IntArray
from commap.errors import InvalidInputError
from commap.geo.corridor import Corridor
from commap.networks import Network
from commap.radio.link import LinkModel
from commap.radio.quality import QualityMatrix
from commap.radio.vehicle import VehicleSetup
from commap.sim.failover import LossBreakdown, PolicyScore, loss_breakdown, score_choice
from commap.sim.multidrive import (
    breakdown_rows,
    policy_choices,
    rank_by_outage,
    summary_frame,
    versus_frame,
)
from commap.sim.seconds import OUTAGE_RULES, DriveSeconds
from commap.sim.truth import TruthField

__all__ = [
    "SYNTHETIC_SETUPS",
    "SecondsTotals",
    "SetupPlanner",
    "judge_truth",
    "setup_network_ids",
    "truth_seconds",
]

log = logging.getLogger(__name__)

# every vehicle set-up the synthetic truth is judged on
# (not satellite_on_demand: the scorer does not wake the terminal ahead of a planned switch, as
# the plan does, so every planned change to the satellite would pay the acquisition)
SYNTHETIC_SETUPS: tuple[str, ...] = ("single_modem", "dual_modem", "bonded", "satellite_always_on")

# plans a quality matrix (the columns a set-up can use) for a set-up: network column per segment
SetupPlanner = Callable[[QualityMatrix, VehicleSetup], IntArray]


def setup_network_ids(networks: Sequence[Network], setup: VehicleSetup) -> tuple[str, ...]:
    """The ids of the networks a set-up can use (:meth:`VehicleSetup.usable`)."""
    return tuple(n.id for n in setup.usable(networks))


def _per_second_median(values: FloatArray, second: IntArray, n: int) -> FloatArray:
    """``(n, k)``: the median of each second's steps (NaN where a column has none)."""
    frame = pd.DataFrame(values)
    frame["second"] = second
    return frame.groupby("second").median().reindex(range(n)).to_numpy(np.float64)


def truth_seconds(
    truth: TruthField, corridor: Corridor, network_ids: Sequence[str] | None = None
) -> DriveSeconds:
    """The truth field on a one-second grid, as a multi-network drive (module docstring).

    Parameters
    ----------
    truth : the field (100 ms steps).
    corridor : the corridor it was made on (each second's position).
    network_ids : the columns to keep, in order (default: every network of the field).

    Raises
    ------
    InvalidInputError
        A network the field does not have, fewer than two networks, or an empty field.
    """
    ids = tuple(network_ids) if network_ids is not None else truth.network_ids
    missing = [n for n in ids if n not in truth.network_ids]
    if missing:
        raise InvalidInputError(f"network {missing[0]} is not in the truth", field="network_ids")
    if len(ids) < 2 or len(truth) == 0:
        raise InvalidInputError("a second-by-second truth needs two networks and steps")
    cols = [truth.network_ids.index(n) for n in ids]
    second = np.floor(truth.t_s - truth.t_s[0] + 1e-9).astype(np.int64)
    n = int(second[-1]) + 1
    sinr = _per_second_median(truth.sample_sinr_db[:, cols], second, n)
    rsrp = _per_second_median(truth.sample_rsrp_dbm[:, cols], second, n)
    outage = np.zeros(sinr.shape, dtype=bool)
    for kpi, values in (("sinr_db", sinr), ("rsrp_dbm", rsrp)):
        outage |= np.nan_to_num(OUTAGE_RULES[kpi](values), nan=0.0) > 0
    rank = np.where(np.isfinite(rsrp), rsrp, sinr)
    first = np.searchsorted(second, np.arange(n))
    centre_m = corridor.distance_m + corridor.length_m / 2.0
    at_m = truth.distance_m[first]
    return DriveSeconds(
        network_ids=ids,
        t_s=truth.t_s[first] - truth.t_s[0],
        lon=np.interp(at_m, centre_m, corridor.lon),
        lat=np.interp(at_m, centre_m, corridor.lat),
        piece=np.zeros(n, dtype=np.int64),
        outage=outage,
        rank=np.where(outage, -np.inf, rank),
    )


@dataclass
class SecondsTotals:
    """Scores and loss breakdowns per vehicle set-up and policy, added over routes and seeds.

    Attributes
    ----------
    scores : per set-up and policy, the pooled :class:`~commap.sim.failover.PolicyScore`
        (counts added, the longest loss the longest of any run).
    breakdowns : per set-up and single-link policy, the pooled loss breakdown.
    seeds : the seeds added (satellite MB is reported per seed, as a drive of every route).
    """

    scores: dict[str, dict[str, PolicyScore]] = field(default_factory=dict)
    breakdowns: dict[str, dict[str, LossBreakdown]] = field(default_factory=dict)
    seeds: int = 1

    def add(
        self,
        scores: Mapping[str, Mapping[str, PolicyScore]],
        breakdowns: Mapping[str, Mapping[str, LossBreakdown]],
    ) -> None:
        """Add one run's scores and breakdowns."""
        for vehicle, by_policy in scores.items():
            mine = self.scores.setdefault(vehicle, {})
            for policy, s in by_policy.items():
                mine[policy] = _add_score(mine[policy], s) if policy in mine else s
        for vehicle, splits in breakdowns.items():
            split = self.breakdowns.setdefault(vehicle, {})
            for policy, b in splits.items():
                split[policy] = _add_breakdown(split[policy], b) if policy in split else b

    def summary(self) -> pd.DataFrame:
        """One row per set-up and policy (:func:`commap.sim.multidrive.summary_frame`;
        ``satellite_mb`` per seed)."""
        frame = summary_frame(self.scores, "synthetic")
        if len(frame):
            frame["satellite_mb"] = (frame["satellite_mb"] / max(self.seeds, 1)).round(3)
        return frame

    def versus(self) -> pd.DataFrame:
        """The bar per set-up (:func:`commap.sim.multidrive.versus_frame`)."""
        return versus_frame(self.scores)

    def breakdown(self) -> pd.DataFrame:
        """Per set-up and single-link policy, lost seconds per hour by what lost them, and the
        row ``commap - oracle`` (where commap's excess comes from)."""
        rows = []
        for vehicle, by_policy in self.breakdowns.items():
            rows += breakdown_rows(vehicle, {p: b.per_hour() for p, b in by_policy.items()})
        return pd.DataFrame(rows)


def _add_score(a: PolicyScore, b: PolicyScore) -> PolicyScore:
    return replace(
        a,
        outage_s=a.outage_s + b.outage_s,
        switches=a.switches + b.switches,
        interruption_s=a.interruption_s + b.interruption_s,
        scored_s=a.scored_s + b.scored_s,
        loss_events=a.loss_events + b.loss_events,
        longest_loss_s=max(a.longest_loss_s, b.longest_loss_s),
        satellite_mb=round(a.satellite_mb + b.satellite_mb, 3),
    )


def _add_breakdown(a: LossBreakdown, b: LossBreakdown) -> LossBreakdown:
    counts = {
        f.name: getattr(a, f.name) + getattr(b, f.name) for f in fields(a) if f.name.endswith("_s")
    }
    return replace(a, **counts)


def judge_truth(
    truth: TruthField,
    corridor: Corridor,
    matrix: QualityMatrix,
    networks: Sequence[Network],
    *,
    setups: Sequence[VehicleSetup],
    planner: SetupPlanner,
    commap_plans: MutableMapping[str, IntArray],
    link: LinkModel | None = None,
    tolerance_s: float = 1.0,
    mb_per_s: float = 0.0,
) -> tuple[dict[str, dict[str, PolicyScore]], dict[str, dict[str, LossBreakdown]]]:
    """Every policy on every set-up on one truth, second by second (module docstring).

    Parameters
    ----------
    truth : the truth field of one route and seed.
    corridor, matrix : the route's corridor and the planner's map on it (every network).
    networks : one per column of ``matrix`` (the catalogue's order).
    setups : the vehicle set-ups to judge.
    planner : plans a matrix (the set-up's columns) for a set-up.
    commap_plans : per set-up name, commap's plan on this route (filled when missing, so that
        the plan is made once per route for every seed).
    link : the link model that ranks networks for a failed link (default: the default model).
    tolerance_s, mb_per_s : see :func:`commap.sim.failover.score_choice`.

    Returns
    -------
    scores, breakdowns : per set-up name and policy.
    """
    link = link or LinkModel()
    by_id = {n.id: n for n in networks}
    truth_matrix = truth.segment_matrix(len(corridor))
    made: dict[tuple[str, ...], DriveSeconds] = {}
    scores: dict[str, dict[str, PolicyScore]] = {}
    splits: dict[str, dict[str, LossBreakdown]] = {}
    for setup in setups:
        ids = setup_network_ids(networks, setup)
        if ids not in made:
            made[ids] = truth_seconds(truth, corridor, ids)
        seconds = made[ids]
        nets = [by_id[n] for n in ids]
        planned: dict[str, IntArray] = {}
        ranked: dict[str, IntArray] = {}
        foreseen: dict[str, FloatArray] = {}
        if not setup.bonded:
            segment = truth.segment[np.searchsorted(truth.t_s - truth.t_s[0], seconds.t_s)]
            segment = np.clip(segment, 0, len(corridor) - 1)
            on_map, on_truth = matrix.take(columns=ids), truth_matrix.take(columns=ids)
            if setup.name not in commap_plans:
                commap_plans[setup.name] = planner(on_map, setup)
            for policy, plan, m in (
                ("commap", commap_plans[setup.name], on_map),
                ("oracle", planner(on_truth, setup), on_truth),
            ):
                point = link.point_outage(m, nets)
                planned[policy] = plan[segment]
                ranked[policy] = rank_by_outage(point, segment)
                foreseen[policy] = point[segment]
        choices = policy_choices(setup, seconds, nets, planned, ranked, foreseen=foreseen)
        scores[setup.name] = {
            p: score_choice(
                seconds, c, nets, setup, policy=p, tolerance_s=tolerance_s, mb_per_s=mb_per_s
            )
            for p, c in choices.items()
        }
        splits[setup.name] = {
            p: loss_breakdown(seconds, c, nets, setup, policy=p)
            for p, c in choices.items()
            if not c.bonded
        }
    return scores, splits
