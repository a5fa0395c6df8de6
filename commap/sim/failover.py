"""Map-free network selection on a multi-network drive, and what each choice costs the user.

Every policy here sees only what a vehicle could see at that second (its links' signal and
outage now, or its health probes' answers, which come late); none looks ahead. Where a rule
needs a configured order of networks (the primary SIM or WAN, the standby, the bonded pair) it
takes ``priority`` (network columns, e.g. the fleet's experience of the operators on earlier
drives); without one, the order of the networks' signal at the start of each leg. Each returns a
:class:`Choice`: the serving network of every second (a pair of networks on a bonded set-up)
and, with two modems, the network the second modem aims to stay registered on (the standby).

``a3_failover`` (:func:`a3_failover_policy`)
    Stay; in an outage second switch to the best other network not in outage (RSRP, else
    SINR, else downlink rate; with two modems the standby first, when it is not in outage).
    The radio-link-failure triggered failover of today.
``probe_failover`` (:func:`probe_failover_policy`)
    Health-probe failover as multi-WAN routers do it, at the Peplink / Pepwave defaults
    (:data:`PEPLINK_PROBES`: a probe every 5 s, timeout 5 s, a link down after 3 consecutive
    failed probes, up again after 3 consecutive successes; WAN priority with fail-back to the
    higher priority; Pepwave MAX / Peplink Balance user manuals, "Other Health Check
    Settings"), and the tuned variant ``probe_failover_fast`` (:data:`FAST_PROBES`: 1 s, down
    after 2, up after 2). A probe sent in a second the link is in outage fails, and the
    router learns it ``timeout_s`` later; a success is known at once. On one modem only the
    active SIM can be probed: a link declared down hands over to the next SIM in priority
    order, which is then probed, and there is no fail-back (the primary cannot be probed
    without leaving the active link). With two modems the first two networks of the priority
    are probed all the time.
``greedy_hysteresis`` (:func:`greedy_policy`)
    The network with the best signal, changed when another is ``hysteresis_db`` better for
    ``ttt_s``, or at once when the serving network is in outage (:data:`GREEDY_DEFAULT`). No
    product documents defaults for this rule between operators: it takes the 3GPP A3 defaults
    (3 dB; the 256 ms time to trigger is below the 1 s grid, so 1 s).
``hot_standby`` (:func:`hot_standby_policy`, two modems)
    The first two networks of the priority as for probes; the modem's own link state (an outage second) moves the
    traffic to the registered standby when the standby is not in outage; it stays there
    (sticky) until that link fails in turn.
``bonding`` (:func:`bonding_policy`, two active links)
    The first two networks of the priority, both carrying traffic all the time.
``best_single`` / ``best_pair``
    The network (pair) with the fewest lost seconds on the drive, chosen in hindsight.

A plan executed in closed loop (:func:`planned_failover_policy`) follows a per-second plan and
applies the failover rule of the set-up where the plan's network fails. On one modem, from the
modem's own link state and the map the plan was made on, a link in outage is left for the
first network of the map's ranking not in outage

* at once where the map expects the outage to go on for at least the interruption of that
  change (:func:`outage_run_ahead_s`: a dead stretch the map knows, as a tunnel), and
* otherwise once its outage has lasted :data:`LEAVE_AFTER_S` seconds more than the map
  expected: each outage second counts by the map's probability that the link was up then. An
  outage the map foresaw is one the plan priced when it chose the link, and leaving it costs
  a 10 s attach for outages that on real drives mostly end within a few seconds; an outage the
  map did not foresee says the map is wrong there. Without a map every outage second counts.

(The health probes of ``probe_failover`` learn of a failure 15-20 s late: on the synthetic
truth, whose dead stretches last, that lost 75 s/h more on held-out seeds; a shorter wait, as
``a3_failover``'s one second, leaves links for the short outages of real drives at 10 s an
attach each.) On two modems the rule is the modem's own link state and the registered standby,
as ``hot_standby``, with the standby registered ahead on the plan's next network, between
planned switches on the first other network of the map's ranking, and the map's foreseen
outages decide two more moves:

* a standby in outage where the map expects that outage to outlast a registration (10 s) is
  re-registered on the first other network of the ranking not in outage, and
* a link in outage with no registered standby up is left at once for the first usable network
  of the ranking (an attach) where the map expects its outage to last at least that attach,
  as on one modem.

An outage the map did not foresee changes neither (on real drives most end within seconds; a
standby re-registered on every outage second lost 71 s/h instead of 48 from 13 to 17 Sep).
After a failover the vehicle stays on the network it fled to until the plan's next switch. The plan,
the fallback order and what the map foresaw are the map's; the constants are not tuned per map.

:func:`score_choice` turns a choice into what the user feels on a :class:`VehicleSetup`: a
second is lost when the serving network is in outage or a switch interrupts it (rounded up to
whole seconds; on a bonded pair, when both links are out or re-attaching). With two modems the
standby is registered on a network once the second modem has aimed at it for
``operator_switch_s`` seconds; a change to the registered standby is a route change, any other
change a detach / attach; the modem left behind stays registered on the old network.

Examples
--------
>>> from commap.networks import Network, NetworkKind
>>> nets = [Network(id=i, kind=NetworkKind.TERRESTRIAL, operator=i, technology="lte",
...                 latency_ms=30) for i in "ab"]
>>> out = np.zeros((20, 2), bool); out[5:15, 0] = True
>>> s = DriveSeconds(("a", "b"), np.arange(20.0), np.zeros(20), np.zeros(20),
...                  np.zeros(20, np.int64), out, np.where(out, -np.inf, -90.0))
>>> score_choice(s, a3_failover_policy(s, nets), nets, vehicle_setup("single_modem"),
...              policy="a3_failover").outage_s
10
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from commap.arrays import BoolArray, FloatArray, IntArray
from commap.errors import InvalidInputError
from commap.networks import Network
from commap.radio.vehicle import VehicleSetup, vehicle_setup
from commap.sim.seconds import DriveSeconds

__all__ = [
    "FAST_PROBES",
    "GREEDY_DEFAULT",
    "LEAVE_AFTER_S",
    "PEPLINK_PROBES",
    "Choice",
    "HysteresisParams",
    "LossBreakdown",
    "PolicyScore",
    "ProbeParams",
    "a3_failover_policy",
    "best_pair_policy",
    "best_single_policy",
    "bonding_policy",
    "greedy_policy",
    "hot_standby_policy",
    "loss_breakdown",
    "loss_runs",
    "map_free_plan_seconds",
    "next_switch",
    "outage_run_ahead_s",
    "planned_failover_policy",
    "probe_failover_policy",
    "score_choice",
]

NONE = -1  # no standby network


@dataclass(frozen=True, eq=False)
class Choice:
    """A policy's networks on a drive.

    Attributes
    ----------
    serving : ``(n,)`` network column per second, or ``(n, 2)`` for a bonded pair.
    standby : ``(n,)`` network the second modem aims at (``-1``: none, keep what it has).
    """

    serving: IntArray
    standby: IntArray | None = None

    @property
    def bonded(self) -> bool:
        """A pair of networks per second."""
        return self.serving.ndim == 2


@dataclass(frozen=True, kw_only=True)
class ProbeParams:
    """Health-probe failover settings (see the module docstring)."""

    interval_s: int = 5
    timeout_s: int = 5
    failures_to_down: int = 3
    successes_to_up: int = 3
    failback: bool = True

    def __post_init__(self) -> None:
        if min(self.interval_s, self.failures_to_down, self.successes_to_up) < 1:
            raise InvalidInputError("probe interval and counts must be >= 1", field="probes")
        if self.timeout_s < 0:
            raise InvalidInputError("probe timeout must be >= 0", field="probes")


PEPLINK_PROBES = ProbeParams()  # Pepwave / Peplink manual defaults
FAST_PROBES = ProbeParams(interval_s=1, timeout_s=1, failures_to_down=2, successes_to_up=2)


@dataclass(frozen=True, kw_only=True)
class HysteresisParams:
    """Best-signal rule: margin (dB) and time (s) another network must lead by."""

    hysteresis_db: float = 3.0
    ttt_s: int = 1


GREEDY_DEFAULT = HysteresisParams()
# one modem executing a plan: outage seconds of its own link, each counted by the map's
# probability that the link was up then, before it leaves it (chosen on synthetic truth seeds
# 100-119 from 1, 2, 3, 5 s and the Peplink probes, counting every outage second in full)
LEAVE_AFTER_S = 5
_EPS_S = 1e-9  # unforeseen seconds are sums of probabilities: compare with a tolerance


# ---------------------------------------------------------------------------------------------
# the link state the scorer and the policies share
# ---------------------------------------------------------------------------------------------
class _Modems:
    """The standby modem's registration and the interruption of each change."""

    def __init__(self, setup: VehicleSetup, networks: Sequence[Network]) -> None:
        self.setup = setup
        self.networks = networks
        self.standby = NONE
        self.ready_at = math.inf

    def reset(self) -> None:
        self.standby, self.ready_at = NONE, math.inf

    def change(self, i: int, a: int, b: int) -> int:
        """Whole seconds the service is interrupted by a change ``a -> b`` at second ``i``."""
        ready = self.setup.has_standby and self.ready(i, b)
        pause = self.setup.switch_s(self.networks[a], self.networks[b], standby=ready)
        if self.setup.has_standby:  # the modem left behind stays registered on a
            self.standby, self.ready_at = a, i
        return math.ceil(pause - 1e-9)

    def ready(self, i: int, network: int) -> bool:
        """The second modem is registered on ``network`` at second ``i``."""
        return network != NONE and self.standby == network and i >= self.ready_at

    def aim(self, i: int, target: int, serving: int) -> None:
        """The second modem registers on ``target`` (ready ``operator_switch_s`` later)."""
        if not self.setup.has_standby or target in (NONE, serving, self.standby):
            return
        self.standby, self.ready_at = target, i + self.setup.operator_switch_s


def _by_signal(rank_row: np.ndarray) -> list[int]:
    """Network columns, best signal first (unknown last)."""
    return [int(j) for j in np.argsort(-np.nan_to_num(rank_row, nan=-1e9), kind="stable")]


def _order(seconds: DriveSeconds, part: slice, priority: Sequence[int] | None) -> list[int]:
    """The configured priority, else the networks by signal at the start of the leg."""
    if priority is not None:
        order = [int(j) for j in priority]
        k = len(seconds.network_ids)
        if sorted(order) != list(range(k)):
            raise InvalidInputError(
                f"priority must order every network column 0..{k - 1} once", field="priority"
            )
        return order
    return _by_signal(seconds.rank[part][0])


def _ranks(rank: np.ndarray) -> np.ndarray:
    """Signal ranks with unknown (NaN) ranked last, cleaned once per leg (not every second)."""
    return np.nan_to_num(rank, nan=-1e9)


def _best_other(rank_row: np.ndarray, out_row: BoolArray, current: int) -> int:
    """The best ranked network other than ``current`` not in outage (``rank_row`` from
    :func:`_ranks`; -1: none)."""
    options = np.where(out_row, -np.inf, rank_row)
    options[current] = -np.inf
    best = int(np.argmax(options))
    return best if np.isfinite(options[best]) else NONE


def _keep_standby(standby: int, rank_row: np.ndarray, out_row: BoolArray, current: int) -> int:
    """The standby a signal rule keeps: the same network unless it is now serving or out, else
    the best other network not in outage (a re-registration costs the standby modem an attach:
    it is not chased after every dB)."""
    if standby not in (NONE, current) and not out_row[standby]:
        return standby
    return _best_other(rank_row, out_row, current)


# ---------------------------------------------------------------------------------------------
# policies
# ---------------------------------------------------------------------------------------------
def best_single_policy(seconds: DriveSeconds) -> Choice:
    """The one network with the fewest outage seconds (ties: the first), every second."""
    best = int(np.argmin(seconds.outage.sum(axis=0)))
    return Choice(np.full(len(seconds), best, dtype=np.int64))


def best_pair_policy(seconds: DriveSeconds) -> Choice:
    """The bonded pair with the fewest seconds where both are out, chosen in hindsight."""
    k = len(seconds.network_ids)
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    lost = [int((seconds.outage[:, a] & seconds.outage[:, b]).sum()) for a, b in pairs]
    a, b = pairs[int(np.argmin(lost))]
    return Choice(np.tile(np.array([a, b], dtype=np.int64), (len(seconds), 1)))


def a3_failover_policy(
    seconds: DriveSeconds,
    networks: Sequence[Network] | None = None,
    setup: VehicleSetup | None = None,
    *,
    priority: Sequence[int] | None = None,
) -> Choice:
    """Stay; in an outage second switch to the best other network (module docstring).

    Without ``networks`` every switch is taken as instantaneous. With two modems the second
    modem stays registered on its network until that network serves or fails, then moves to
    the best other network not in outage.
    """
    setup = setup or vehicle_setup("single_modem")
    n = len(seconds)
    serving = np.zeros(n, dtype=np.int64)
    standby = np.full(n, NONE, dtype=np.int64)
    modems = _Modems(setup, networks) if networks is not None else None
    for part in seconds.pieces():
        rank, out = _ranks(seconds.rank[part]), seconds.outage[part]
        current = _order(seconds, part, priority)[0]
        busy_until, other = -1, NONE
        if modems:
            modems.reset()
        for i in range(rank.shape[0]):
            if out[i, current] and i > busy_until:
                standby_up = setup.has_standby and other != NONE and not out[i, other]
                best = other if standby_up else _best_other(rank[i], out[i], current)
                if best != NONE:
                    pause = modems.change(i, current, best) if modems else 0
                    busy_until = i + pause - 1
                    current = best
            other = _keep_standby(other, rank[i], out[i], current)
            if modems:
                modems.aim(i, other, current)
            serving[part.start + i] = current
            standby[part.start + i] = other
    return Choice(serving, standby if setup.has_standby else None)


def _probe(
    params: ProbeParams, i: int, phase: int, out: bool, pending: list[tuple[int, bool]]
) -> None:
    if (i - phase) % params.interval_s == 0:
        pending.append((i + (params.timeout_s if out else 0), not out))


class _Health:
    """One link's probe state: consecutive results and the up / down verdict."""

    def __init__(self, params: ProbeParams) -> None:
        self.params = params
        self.up = True
        self.fails = self.oks = 0
        self.pending: list[tuple[int, bool]] = []

    def step(self, i: int, phase: int, out: bool) -> None:
        """Send this second's probe (if due) and take in the answers known by now."""
        _probe(self.params, i, phase, out, self.pending)
        known = sorted(p for p in self.pending if p[0] <= i)
        self.pending = [p for p in self.pending if p[0] > i]
        for _, ok in known:
            self.fails = 0 if ok else self.fails + 1
            self.oks = self.oks + 1 if ok else 0
            if self.up and self.fails >= self.params.failures_to_down:
                self.up = False
            elif not self.up and self.oks >= self.params.successes_to_up:
                self.up = True


def probe_failover_policy(
    seconds: DriveSeconds,
    networks: Sequence[Network],
    setup: VehicleSetup,
    params: ProbeParams = PEPLINK_PROBES,
    *,
    priority: Sequence[int] | None = None,
) -> Choice:
    """Health-probe failover (module docstring): only what the probes have answered so far."""
    n = len(seconds)
    serving = np.zeros(n, dtype=np.int64)
    standby = np.full(n, NONE, dtype=np.int64)
    modems = _Modems(setup, networks)
    for part in seconds.pieces():
        out = seconds.outage[part]
        order = _order(seconds, part, priority)
        links = order[:2] if setup.has_standby else order
        health = {j: _Health(params) for j in links}
        current, busy_until, phase = links[0], -1, {j: 0 for j in links}
        modems.reset()
        for i in range(out.shape[0]):
            probed = links if setup.has_standby else [current]
            if i > busy_until:
                for j in probed:
                    health[j].step(i, phase[j], bool(out[i, j]))
            target = current
            if setup.has_standby:
                up = [j for j in links if health[j].up]
                if up and (params.failback or not health[current].up):
                    target = up[0]  # the highest priority link that is up
            elif not health[current].up:  # next SIM in priority order, probed from now on
                target = links[(links.index(current) + 1) % len(links)]
            if target != current and i > busy_until:
                busy_until = i + modems.change(i, current, target) - 1
                current = target
                if not setup.has_standby:
                    health[current] = _Health(params)
                    phase[current] = busy_until + 1
            other = next((j for j in links if j != current), NONE) if setup.has_standby else NONE
            modems.aim(i, other, current)
            serving[part.start + i] = current
            standby[part.start + i] = other
    return Choice(serving, standby if setup.has_standby else None)


def greedy_policy(
    seconds: DriveSeconds,
    networks: Sequence[Network],
    setup: VehicleSetup,
    params: HysteresisParams = GREEDY_DEFAULT,
    *,
    priority: Sequence[int] | None = None,
) -> Choice:
    """Best signal with hysteresis and time to trigger (module docstring)."""
    n = len(seconds)
    serving = np.zeros(n, dtype=np.int64)
    standby = np.full(n, NONE, dtype=np.int64)
    modems = _Modems(setup, networks)
    for part in seconds.pieces():
        rank, out = _ranks(seconds.rank[part]), seconds.outage[part]
        current = _order(seconds, part, priority)[0]
        busy_until, lead, leader, other = -1, 0, NONE, NONE
        modems.reset()
        for i in range(rank.shape[0]):
            best = _best_other(rank[i], out[i], current)
            ahead = best != NONE and (
                out[i, current] or rank[i, best] > rank[i, current] + params.hysteresis_db
            )
            lead = lead + 1 if ahead and best == leader else (1 if ahead else 0)
            leader = best if ahead else NONE
            if i > busy_until and ahead and (out[i, current] or lead >= params.ttt_s):
                busy_until = i + modems.change(i, current, best) - 1
                current, lead, leader = best, 0, NONE
            other = _keep_standby(other, rank[i], out[i], current)
            modems.aim(i, other, current)
            serving[part.start + i] = current
            standby[part.start + i] = other
    return Choice(serving, standby if setup.has_standby else None)


def hot_standby_policy(
    seconds: DriveSeconds,
    networks: Sequence[Network],
    setup: VehicleSetup,
    *,
    priority: Sequence[int] | None = None,
) -> Choice:
    """Two modems: on an outage second move to the registered standby, and stay there."""
    if not setup.has_standby:
        raise InvalidInputError(
            f"hot standby needs two modems; vehicle {setup.name} has one", field="vehicle"
        )
    n = len(seconds)
    serving = np.zeros(n, dtype=np.int64)
    standby = np.zeros(n, dtype=np.int64)
    for part in seconds.pieces():
        out = seconds.outage[part]
        pair = _order(seconds, part, priority)[:2]
        current, busy_until = pair[0], -1
        modems = _Modems(setup, networks)
        for i in range(out.shape[0]):
            other = pair[1] if current == pair[0] else pair[0]
            if i > busy_until and out[i, current] and not out[i, other]:
                busy_until = i + modems.change(i, current, other) - 1
                current, other = other, current
            modems.aim(i, other, current)
            serving[part.start + i] = current
            standby[part.start + i] = other
    return Choice(serving, standby)


def bonding_policy(seconds: DriveSeconds, *, priority: Sequence[int] | None = None) -> Choice:
    """Two active links: the first two of the priority (default: best signal at leg start)."""
    pair = np.zeros((len(seconds), 2), dtype=np.int64)
    for part in seconds.pieces():
        pair[part] = _order(seconds, part, priority)[:2]
    return Choice(pair)


def next_switch(planned: IntArray) -> tuple[IntArray, IntArray]:
    """Per second of a leg: the index of the plan's next switch (``len``: none) and its network
    (``-1``: none).

    Examples
    --------
    >>> at, to = next_switch(np.array([0, 0, 1, 1]))
    >>> at.tolist(), to.tolist()
    ([2, 2, 4, 4], [1, 1, -1, -1])
    """
    n = planned.shape[0]
    at = np.full(n, n, dtype=np.int64)
    to = np.full(n, NONE, dtype=np.int64)
    for i in range(n - 2, -1, -1):
        if planned[i + 1] != planned[i]:
            at[i], to[i] = i + 1, planned[i + 1]
        else:
            at[i], to[i] = at[i + 1], to[i + 1]
    return at, to


def map_free_plan_seconds(
    seconds: DriveSeconds, priority: Sequence[int] | None = None
) -> tuple[IntArray, IntArray]:
    """The plan and fallback order a vehicle has without a map, per second.

    The plan is the first network of the map-free baselines' order (the configured
    ``priority``, else the networks by signal at the start of each leg) all the way, and a
    failed link goes to the next of that order: :func:`planned_failover_policy` on it is the
    closed-loop rules without the plan (the ablation).

    Examples
    --------
    >>> out = np.zeros((3, 2), bool)
    >>> s = DriveSeconds(("a", "b"), np.arange(3.0), np.zeros(3), np.zeros(3),
    ...                  np.zeros(3, np.int64), out, np.array([[-100.0, -90.0]] * 3))
    >>> plan, order = map_free_plan_seconds(s)
    >>> plan.tolist(), order[0].tolist()
    ([1, 1, 1], [1, 0])
    >>> map_free_plan_seconds(s, priority=[0, 1])[0].tolist()
    [0, 0, 0]
    """
    k = len(seconds.network_ids)
    plan = np.zeros(len(seconds), dtype=np.int64)
    order = np.zeros((len(seconds), k), dtype=np.int64)
    for part in seconds.pieces():
        leg = _order(seconds, part, priority)
        plan[part] = leg[0]
        order[part] = leg
    return plan, order


def _first_usable(order_row: IntArray, out_row: BoolArray, current: int) -> int:
    """The first network of a ranking that is neither ``current`` nor in outage (-1: none)."""
    return next((int(j) for j in order_row if j != current and not out_row[j]), NONE)


def _first_other(order_row: IntArray, current: int) -> int:
    """The first network of a ranking that is not ``current``."""
    return next(int(j) for j in order_row if j != current)


def _outlasts_change(
    setup: VehicleSetup,
    networks: Sequence[Network],
    current: int,
    usable: int,
    outage_ahead_s: float,
) -> bool:
    """The map expects the outage of ``current`` to last at least the interruption of a change
    to ``usable`` (an attach, ``usable`` not registered): leaving it at once pays."""
    if usable == NONE:
        return False
    attach_s = setup.switch_s(networks[current], networks[usable])
    return 0 < attach_s <= outage_ahead_s


def _standby(
    setup: VehicleSetup,
    order_row: IntArray,
    out_row: BoolArray,
    outage_ahead_s: FloatArray,
    current: int,
) -> int:
    """The network the second modem registers on between planned switches: the first other
    network of the map's ranking, unless that network is in outage now and the map expects the
    outage to outlast a registration (``operator_switch_s``): then the first other network of
    the ranking not in outage, registered before the first comes back. An outage the map did not
    foresee keeps the standby (on real drives most end within seconds, before a new
    registration would be ready)."""
    first = _first_other(order_row, current)
    if out_row[first] and outage_ahead_s[first] >= setup.operator_switch_s:
        usable = _first_usable(order_row, out_row, current)
        return first if usable == NONE else usable
    return first


def outage_run_ahead_s(outage_prob: FloatArray) -> FloatArray:
    """Per second, the outage seconds a map expects to follow it without a break.

    Each second is taken as out with its probability on its own (``sum over m of the product
    of p[i + 1 .. i + m]``): a floor, as real outages come in runs.

    Parameters
    ----------
    outage_prob : ``(n, ...)`` outage probability per second (and network).

    Examples
    --------
    >>> outage_run_ahead_s(np.array([0.5, 1.0, 1.0, 0.5, 0.0])).tolist()
    [2.5, 1.5, 0.5, 0.0, 0.0]
    """
    prob = np.asarray(outage_prob, dtype=np.float64)
    run = np.zeros((prob.shape[0] + 1, *prob.shape[1:]))
    for i in range(prob.shape[0] - 1, -1, -1):
        run[i] = prob[i] * (1.0 + run[i + 1])
    return run[1:]


def _up_prob(seconds: DriveSeconds, foreseen: FloatArray | None) -> FloatArray:
    """Per second and network, the map's probability that the link is up (1 without a map)."""
    shape = (len(seconds), len(seconds.network_ids))
    if foreseen is None:
        return np.ones(shape)
    prob = np.asarray(foreseen, dtype=np.float64)
    if prob.shape != shape:
        raise InvalidInputError(
            f"foreseen must be one outage probability per second and network {shape}, "
            f"got {prob.shape}",
            field="foreseen",
        )
    return np.clip(1.0 - np.nan_to_num(prob, nan=0.0), 0.0, 1.0)


def planned_failover_policy(
    seconds: DriveSeconds,
    networks: Sequence[Network],
    setup: VehicleSetup,
    planned: IntArray,
    fallback: IntArray,
    params: ProbeParams = PEPLINK_PROBES,
    *,
    leave_after_s: int | None = LEAVE_AFTER_S,
    foreseen: FloatArray | None = None,
) -> Choice:
    """A plan executed with the set-up's failover rule (module docstring).

    Parameters
    ----------
    seconds : the drive.
    networks : one per network column.
    setup : the vehicle set-up (one modem: probe failover; two modems: the standby).
    planned : ``(n,)`` the plan's network column at each second.
    fallback : ``(n, k)`` network columns at each second, best first by the map (where a failed
        link goes, and what the standby holds between planned switches).
    params : health-probe settings on one modem, with ``leave_after_s=None``.
    leave_after_s : one modem: unforeseen outage seconds of the link (see ``foreseen``) in one
        run before it is left for the first network of ``fallback`` not in outage; ``None``:
        the health probes instead, to the first other network of ``fallback``.
    foreseen : ``(n, k)`` the outage probability of each network at each second on the map
        the plan was made on. One modem: an outage second of the link counts towards
        ``leave_after_s`` by the map's probability that the link was up then, so an outage
        the map foresaw (and the plan priced) is ridden out, an unforeseen one is left; and a
        link is left at once where the map expects its outage to last at least the
        interruption of the change (:func:`outage_run_ahead_s`). Two modems: that change is
        made where no registered standby is up, and a standby in an outage the map expects to
        outlast a registration is moved to the first network of ``fallback`` not in outage.
        ``None`` (no map): every outage second counts in full, and neither happens.

    Examples
    --------
    >>> from commap.networks import NetworkKind
    >>> nets = [Network(id=i, kind=NetworkKind.TERRESTRIAL, operator=i, technology="lte",
    ...                 latency_ms=30) for i in "ab"]
    >>> out = np.zeros((40, 2), bool); out[5:35, 0] = True
    >>> s = DriveSeconds(("a", "b"), np.arange(40.0), np.zeros(40), np.zeros(40),
    ...                  np.zeros(40, np.int64), out, np.where(out, -np.inf, -90.0))
    >>> plan, order = np.zeros(40, np.int64), np.tile([0, 1], (40, 1))
    >>> c = planned_failover_policy(s, nets, vehicle_setup("single_modem"), plan, order)
    >>> int(np.argmax(c.serving == 1))  # out from 5 s: left after 5 outage seconds
    9
    >>> probes = planned_failover_policy(s, nets, vehicle_setup("single_modem"), plan, order,
    ...                                  leave_after_s=None)
    >>> int(np.argmax(probes.serving == 1))  # probes every 5 s, down after 3 failures (5 s timeout)
    20
    >>> two = planned_failover_policy(s, nets, vehicle_setup("dual_modem"), plan, order)
    >>> int(np.argmax(two.serving == 1))  # the standby, once registered (10 s after the start)
    10
    >>> known = np.where(out, 0.9, 0.01)  # a map that foresaw the outage of a
    >>> ride = planned_failover_policy(s, nets, vehicle_setup("single_modem"), plan, order,
    ...                                foreseen=known)
    >>> bool((ride.serving == 0).all())  # 30 outage seconds count as 3 unforeseen ones
    True
    """
    n = len(seconds)
    serving = np.zeros(n, dtype=np.int64)
    standby = np.full(n, NONE, dtype=np.int64)
    modems = _Modems(setup, networks)
    lead_s = 2.0 * setup.operator_switch_s  # register the standby this long before a switch
    up_prob = _up_prob(seconds, foreseen)
    for part in seconds.pieces():
        out, plan, order = seconds.outage[part], planned[part], fallback[part]
        up = up_prob[part]
        ahead = outage_run_ahead_s(1.0 - up)
        at, to = next_switch(plan)
        current, busy_until, other = int(plan[0]), -1, NONE
        follow = True  # on the plan (False after a failover, until the plan's next switch)
        health, phase = _Health(params), 0
        down_s = 0.0  # unforeseen outage seconds of the current link's ongoing outage
        modems.reset()
        for i in range(out.shape[0]):
            if i and plan[i] != plan[i - 1]:
                follow = True
            target, failover = current, False
            if follow and plan[i] != current:
                target = int(plan[i])
                if setup.has_standby and out[i, target] and not out[i, current]:
                    target = current  # the standby modem sees the target down: wait
            elif setup.has_standby:
                if out[i, current] and modems.ready(i, other) and not out[i, other]:
                    target, failover = other, True  # a standby still registering costs an attach
                elif out[i, current]:  # no standby to take over: attach where the map says so
                    usable = _first_usable(order[i], out[i], current)
                    if _outlasts_change(setup, networks, current, usable, ahead[i, current]):
                        target, failover = usable, True
            elif leave_after_s is not None:
                down_s = down_s + float(up[i, current]) if out[i, current] else 0.0
                usable = _first_usable(order[i], out[i], current)
                waited = down_s >= leave_after_s - _EPS_S
                may_leave = bool(out[i, current]) and usable != NONE
                if may_leave and (waited or _outlasts_change(setup, networks, current, usable,
                                                             ahead[i, current])):  # fmt: skip
                    target, failover = usable, True
            else:
                if i > busy_until:
                    health.step(i, phase, bool(out[i, current]))
                if not health.up:
                    target, failover = _first_other(order[i], current), True
            if target != current and i > busy_until:
                busy_until = i + modems.change(i, current, target) - 1
                current, follow = target, not failover
                health, phase, down_s = _Health(params), busy_until + 1, 0.0
            if setup.has_standby:
                soon = at[i] - i <= lead_s and to[i] not in (NONE, current)
                other = int(to[i]) if soon else _standby(setup, order[i], out[i], ahead[i], current)
                modems.aim(i, other, current)
            serving[part.start + i] = current
            standby[part.start + i] = other
    return Choice(serving, standby if setup.has_standby else None)


# ---------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PolicyScore:
    """One policy on one vehicle set-up on one drive.

    ``outage_s`` is the service-loss seconds (the serving link in outage, or interrupted by
    a switch); a *loss event* is a run of lost seconds at least ``tolerance_s`` long.
    """

    policy: str
    outage_s: int  # seconds of lost service (own outage or switch interruption)
    switches: int
    interruption_s: int  # seconds lost to switch interruptions alone (part of outage_s)
    scored_s: int
    vehicle: str = "single_modem"
    loss_events: int = 0
    longest_loss_s: int = 0
    satellite_mb: float = 0.0

    @property
    def outage_share(self) -> float:
        """Lost seconds / scored seconds."""
        return self.outage_s / self.scored_s if self.scored_s else float("nan")

    def per_hour(self, value: float) -> float:
        """``value`` per hour of scored driving."""
        return 3600.0 * value / self.scored_s if self.scored_s else float("nan")

    @property
    def service_loss_s_per_hour(self) -> float:
        """Lost seconds per hour."""
        return self.per_hour(self.outage_s)

    @property
    def loss_events_per_hour(self) -> float:
        """Loss events per hour."""
        return self.per_hour(self.loss_events)

    @property
    def switches_per_hour(self) -> float:
        """Switches per hour."""
        return self.per_hour(self.switches)


def loss_runs(lost: BoolArray, pieces: Sequence[slice]) -> list[int]:
    """Lengths (s) of the runs of lost seconds, each leg on its own.

    Examples
    --------
    >>> loss_runs(np.array([1, 1, 0, 1, 1, 1, 0], bool), [slice(0, 4), slice(4, 7)])
    [2, 1, 2]
    """
    runs: list[int] = []
    for part in pieces:
        x = np.r_[0, np.asarray(lost[part], dtype=np.int8), 0]
        edges = np.flatnonzero(np.diff(x))
        runs += (edges[1::2] - edges[::2]).tolist()
    return runs


def score_choice(
    seconds: DriveSeconds,
    choice: Choice | IntArray,
    networks: Sequence[Network],
    setup: VehicleSetup | None = None,
    *,
    policy: str,
    tolerance_s: float = 1.0,
    mb_per_s: float = 0.0,
) -> PolicyScore:
    """What a choice costs the user on a vehicle set-up (see the module docstring).

    Examples
    --------
    >>> from commap.networks import NetworkKind
    >>> nets = [Network(id=i, kind=NetworkKind.TERRESTRIAL, operator=i, technology="lte",
    ...                 latency_ms=30) for i in ("a", "b")]
    >>> s = DriveSeconds(("a", "b"), np.arange(12.0), np.zeros(12), np.zeros(12),
    ...                  np.zeros(12, np.int64), np.zeros((12, 2), bool), np.zeros((12, 2)))
    >>> flip = np.r_[np.zeros(2, np.int64), np.ones(10, np.int64)]
    >>> one = score_choice(s, flip, nets, policy="x")
    >>> one.switches, one.interruption_s, one.outage_s, one.loss_events, one.longest_loss_s
    (1, 10, 10, 1, 10)
    >>> score_choice(s, Choice(flip, np.zeros(12, np.int64) + 1), nets,
    ...              vehicle_setup("dual_modem"), policy="x").outage_s  # standby not ready
    10
    """
    setup = setup or vehicle_setup("single_modem")
    if not isinstance(choice, Choice):
        choice = Choice(np.asarray(choice, dtype=np.int64))
    serving = np.asarray(choice.serving, dtype=np.int64)
    n = len(seconds)
    if serving.shape[0] != n or serving.ndim != (2 if setup.bonded else 1):
        raise InvalidInputError(
            "one serving network per second is required"
            + (" (a pair on a bonded set-up)" if setup.bonded else ""),
            field="serving",
        )
    if serving.ndim == 2:
        lost, interrupted, switches = _score_pair(seconds, serving, setup)
    else:
        lost, interrupted, switches = _score_single(seconds, choice, networks, setup)
    runs = [r for r in loss_runs(lost, seconds.pieces()) if r >= tolerance_s]
    columns = serving if serving.ndim == 2 else serving[:, None]
    on_satellite = np.array([networks[j].is_satellite for j in range(len(networks))])
    satellite_s = int(on_satellite[columns].any(axis=1).sum()) if len(networks) else 0
    return PolicyScore(
        policy=policy,
        outage_s=int(lost.sum()),
        switches=switches,
        interruption_s=int(interrupted.sum()),
        scored_s=n,
        vehicle=setup.name,
        loss_events=len(runs),
        longest_loss_s=max(loss_runs(lost, seconds.pieces()), default=0),
        satellite_mb=round(satellite_s * mb_per_s, 3),
    )


def _score_single(
    seconds: DriveSeconds, choice: Choice, networks: Sequence[Network], setup: VehicleSetup
) -> tuple[BoolArray, BoolArray, int]:
    serving = choice.serving
    aim = choice.standby if choice.standby is not None else np.full(len(seconds), NONE)
    own = seconds.outage[np.arange(len(seconds)), serving]
    interrupted = np.zeros(len(seconds), dtype=bool)
    switches = 0
    modems = _Modems(setup, networks)
    for part in seconds.pieces():
        s, target = serving[part], aim[part]
        modems.reset()
        for i in range(s.shape[0]):
            if i and s[i] != s[i - 1]:
                switches += 1
                span = modems.change(i, int(s[i - 1]), int(s[i]))
                interrupted[part.start + i : min(part.start + i + span, part.stop)] = True
            modems.aim(i, int(target[i]), int(s[i]))
    return own | interrupted, interrupted, switches


@dataclass(frozen=True)
class LossBreakdown:
    """Where one single-link policy's lost seconds go, second by second (a partition of
    :attr:`PolicyScore.outage_s`; see :func:`loss_breakdown`)."""

    policy: str
    vehicle: str
    reactive_switch_s: int  # interrupted by a change away from a link in outage
    proactive_switch_s: int  # interrupted by a change away from a working link
    all_out_s: int  # the serving link out, and every other network out too
    standby_fine_s: int  # the serving link out while the standby's network was not
    other_fine_s: int  # the serving link out, the standby (if any) too, another network not
    scored_s: int

    @property
    def lost_s(self) -> int:
        """All lost seconds (the score's ``outage_s``)."""
        return (
            self.reactive_switch_s
            + self.proactive_switch_s
            + self.all_out_s
            + self.standby_fine_s
            + self.other_fine_s
        )

    def per_hour(self) -> dict[str, float]:
        """Every part in seconds per hour of scored driving."""
        parts = ("reactive_switch_s", "proactive_switch_s", "all_out_s", "standby_fine_s")
        names = (*parts, "other_fine_s", "lost_s")
        scale = 3600.0 / self.scored_s if self.scored_s else math.nan
        return {name: getattr(self, name) * scale for name in names}


def loss_breakdown(
    seconds: DriveSeconds,
    choice: Choice,
    networks: Sequence[Network],
    setup: VehicleSetup,
    *,
    policy: str,
    detect_s: int | None = None,
    within: BoolArray | None = None,
) -> LossBreakdown:
    """Split a single-link choice's lost seconds by what lost them.

    A second lost to a switch's interruption is *reactive* when the link left was in outage at
    the switch or in the ``detect_s`` seconds before it (a failover), else *proactive* (a
    planned switch, a return to the plan). ``detect_s`` defaults to how late the set-up's
    failover rule learns of a failure: 1 s with two modems (the modem's own link state), the
    Peplink health probes' worst case on one modem. A second lost to the serving link's own
    outage is split by what the vehicle could have used instead: nothing (``all_out_s``), the
    standby's network (two modems: it was still registering, or the rule did not move), or
    only a network it was not registered on (``other_fine_s``). ``within`` (``(n,)`` bool)
    counts only the lost seconds it marks (e.g. where the map had no data); ``scored_s``
    stays the whole drive's, so the parts of complementary masks add up.

    Examples
    --------
    >>> from commap.networks import NetworkKind
    >>> nets = [Network(id=i, kind=NetworkKind.TERRESTRIAL, operator=i, technology="lte",
    ...                 latency_ms=30) for i in "ab"]
    >>> out = np.zeros((20, 2), bool); out[12:15, 0] = True; out[14, 1] = True
    >>> s = DriveSeconds(("a", "b"), np.arange(20.0), np.zeros(20), np.zeros(20),
    ...                  np.zeros(20, np.int64), out, np.where(out, -np.inf, -90.0))
    >>> two = vehicle_setup("dual_modem")
    >>> b = loss_breakdown(s, hot_standby_policy(s, nets, two), nets, two, policy="x")
    >>> b.reactive_switch_s, b.proactive_switch_s, b.all_out_s, b.lost_s  # b is out at 14 too
    (1, 0, 1, 2)
    >>> stay = loss_breakdown(s, Choice(np.zeros(20, np.int64)), nets, two, policy="y")
    >>> stay.all_out_s, stay.other_fine_s  # no standby registered: b was there for 2 s
    (1, 2)
    """
    if choice.bonded:
        raise InvalidInputError("a bonded pair has no single serving link", field="serving")
    lost, interrupted, _ = _score_single(seconds, choice, networks, setup)
    look_s = _detect_s(setup) if detect_s is None else int(detect_s)
    serving = np.asarray(choice.serving, dtype=np.int64)
    rows = np.arange(len(seconds))
    reactive = np.zeros(len(seconds), dtype=bool)
    for part in seconds.pieces():
        s = serving[part]
        for i in np.flatnonzero(s[1:] != s[:-1]) + 1:
            at = part.start + int(i)
            left = int(s[i - 1])
            if seconds.outage[max(part.start, at - look_s) : at + 1, left].any():
                # the whole interruption of this change is the failover's
                stop = at + 1
                while stop < part.stop and interrupted[stop] and serving[stop] == serving[at]:
                    stop += 1
                reactive[at:stop] = True
    own = lost & ~interrupted
    all_out = own & seconds.outage.all(axis=1)
    aim = choice.standby if choice.standby is not None else np.full(len(seconds), NONE)
    has_aim = (aim != NONE) & (aim != serving)
    aim_fine = has_aim & ~seconds.outage[rows, np.where(has_aim, aim, 0)]
    standby_fine = own & ~all_out & aim_fine
    if within is not None:
        mask = np.asarray(within, dtype=bool)
        if mask.shape != lost.shape:
            raise InvalidInputError("within must mark every second of the drive", field="within")
        interrupted, own, all_out = interrupted & mask, own & mask, all_out & mask
        reactive, standby_fine = reactive & mask, standby_fine & mask
    return LossBreakdown(
        policy=policy,
        vehicle=setup.name,
        reactive_switch_s=int((interrupted & reactive).sum()),
        proactive_switch_s=int((interrupted & ~reactive).sum()),
        all_out_s=int(all_out.sum()),
        standby_fine_s=int(standby_fine.sum()),
        other_fine_s=int((own & ~all_out & ~standby_fine).sum()),
        scored_s=len(seconds),
    )


def _detect_s(setup: VehicleSetup, params: ProbeParams = PEPLINK_PROBES) -> int:
    """Seconds after a failure that a set-up's failover rule may still be acting on it."""
    if setup.has_standby:
        return 1
    return params.interval_s * params.failures_to_down + params.timeout_s


def _score_pair(
    seconds: DriveSeconds, pair: IntArray, setup: VehicleSetup
) -> tuple[BoolArray, BoolArray, int]:
    n = len(seconds)
    rows = np.arange(n)
    down = np.zeros((n, 2), dtype=bool)  # a member re-attaching
    switches = 0
    span = math.ceil(setup.operator_switch_s - 1e-9)
    for part in seconds.pieces():
        p = pair[part]
        for slot in range(2):
            for i in np.flatnonzero(p[1:, slot] != p[:-1, slot]) + 1:
                switches += 1
                down[part.start + i : min(part.start + i + span, part.stop), slot] = True
    out = seconds.outage[rows[:, None], pair] | down
    lost: BoolArray = np.asarray(out.all(axis=1), dtype=bool)
    interrupted: BoolArray = lost & ~seconds.outage[rows[:, None], pair].all(axis=1)
    return lost, interrupted, switches
