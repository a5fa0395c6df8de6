"""Handover policies scored by the drive simulator on identical truth.

* :class:`A3Policy` -- the **reactive 3GPP baseline**. On a terrestrial network it runs the A3
  event (L3-filtered RSRP, hysteresis, time-to-trigger) among the networks of its serving
  operator (intra-operator handovers only). It changes operator, or goes to a satellite, only
  after a failure: network selection then tries the failed network's operator, the home
  operator, the other terrestrial operators (best SINR), and last the satellites (lowest latency
  first). Away from home it looks for the home operator every ``return_home_s`` (3GPP
  higher-priority PLMN search, 6 min by default; TS 23.122) and returns when a home network is
  suitable. ``a3_default`` is 3 dB / 256 ms; ``a3_tuned`` is the best of a hysteresis x TTT
  sweep (:data:`A3_SWEEP`).
* :class:`GreedyPolicy` -- always the best L3-filtered SINR among the suitable networks, no
  hysteresis.
* :class:`StickyPolicy` -- stays until a failure, then takes the best suitable network.
* :class:`PlanPolicy` -- executes a plan (network per corridor segment): switches at the planned
  points (the first step of each planned run), whatever the radio says. After a failure it
  re-attaches to the planned network if suitable, else to the best suitable one, and comes
  back to the plan when the planned network is ``rejoin_margin_db`` above Qin after a
  ``min_dwell_s`` dwell and its planned run lasts at least that dwell more (or at the next
  planned switch). ``commap`` executes the plan made on the planner's map, ``oracle`` the
  plan made on the truth.
* :class:`FallbackPlanPolicy` -- the same plan in a closed loop (what the gRPC ``Drive`` stream
  is for: act when the measurements contradict the map): a planned switch waits until the
  target measures well, and a weak serving link is left before it fails (the vehicle then
  stays off the plan, on a link that measures well, until the plan's next switch).
  This is how commap executes a plan (the rules travel with the plan to the vehicle), so
  ``commap`` and ``oracle`` drive the commap and the oracle plans this way, and
  ``commap_open_loop`` and ``oracle_open_loop`` (:data:`EXTRA_POLICY_NAMES`) drive the same
  plans open loop, to show what the closed loop adds.
* ``rules_without_plan`` -- the ablation: the very same closed-loop rules following a plan made
  without any map (:func:`map_free_plan`: the home operator's first terrestrial network all the
  way), so the difference to ``commap`` is what the plan itself adds.

"Suitable" is the UE's L1 SINR at or above Qin: policies see measurements, never the truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from commap.arrays import IntArray
from commap.errors import InvalidInputError
from commap.networks import Network, NetworkKind
from commap.plan import defaults
from commap.plan.execution import DEFAULT_EXECUTION_RULES
from commap.sim.a3 import A3Params, A3Trigger
from commap.sim.drive import DriveContext, Policy, next_true

__all__ = [
    "A3_DEFAULT",
    "A3_SWEEP",
    "EXTRA_POLICY_NAMES",
    "POLICY_NAMES",
    "SWITCH_CAUSES",
    "A3Policy",
    "FallbackPlanPolicy",
    "GreedyPolicy",
    "PlanPolicy",
    "StickyPolicy",
    "home_operator",
    "map_free_plan",
]


POLICY_NAMES: tuple[str, ...] = ("a3_default", "a3_tuned", "greedy", "sticky", "commap", "oracle")
# Optional policies (not in the default evaluation): the plan with a measured safety net.
EXTRA_POLICY_NAMES: tuple[str, ...] = ("commap_open_loop", "oracle_open_loop", "rules_without_plan")
A3_DEFAULT = A3Params()  # hysteresis 3 dB, TTT 256 ms, L1 200 ms, L3 k = 4 (DESIGN.md)
# Sweep of the tuned baseline: RRC hysteresis values x RRC time-to-trigger values.
A3_SWEEP: tuple[A3Params, ...] = tuple(
    A3Params(hysteresis_db=h, ttt_s=t)
    for h in (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)
    for t in (0.0, 0.128, 0.256, 0.512, 1.024, 2.56)
)
# Why the closed loop switched: the plan's switch, rule 2 (leaving a weak link), rule 3 (back to
# the plan before its next switch), re-attaching to another network after a link failure.
SWITCH_CAUSES: tuple[str, ...] = ("planned", "weak_link", "return", "recovery")
_KIND_RANK = {NetworkKind.TERRESTRIAL: 0, NetworkKind.LEO: 1, NetworkKind.GEO: 2}


def home_operator(ctx: DriveContext) -> str:
    """The operator of the first terrestrial network (else of the first network).

    Examples
    --------
    >>> home_operator.__name__
    'home_operator'
    """
    for net in ctx.networks:
        if not net.is_satellite:
            return net.operator
    if not ctx.networks:
        raise InvalidInputError("no networks to drive on", field="networks")
    return ctx.networks[0].operator


def map_free_plan(networks: Sequence[Network], n_segments: int) -> IntArray:
    """The plan a vehicle follows without a map: its home network on every segment.

    The home network is the first terrestrial network of the catalogue (the first network when
    there is none); the closed-loop rules then do all the work.

    Examples
    --------
    >>> from commap.networks import Network, NetworkKind
    >>> sat = Network(id="s", kind=NetworkKind.LEO, operator="s", technology="leo", latency_ms=40)
    >>> lte = Network(id="a", kind=NetworkKind.TERRESTRIAL, operator="a", technology="lte",
    ...               latency_ms=30)
    >>> map_free_plan([sat, lte], 3).tolist()
    [1, 1, 1]
    """
    if not networks:
        raise InvalidInputError("no networks to drive on", field="networks")
    home = next((j for j, n in enumerate(networks) if not n.is_satellite), 0)
    return np.full(n_segments, home, dtype=np.int64)


def _best(values: NDArray[np.float64], candidates: Sequence[int]) -> int:
    """Candidate with the highest finite value (-1 if none)."""
    best, best_value = -1, -math.inf
    for c in candidates:
        v = float(values[c])
        if math.isfinite(v) and v > best_value:
            best, best_value = c, v
    return best


class _BestSuitable:
    """Per step: the suitable network with the best L3 SINR (-1 where none)."""

    def __init__(self, ctx: DriveContext) -> None:
        m = ctx.measurements
        score = np.where(m.suitable, np.nan_to_num(m.l3_sinr_db, nan=-np.inf), -np.inf)
        choice = np.argmax(score, axis=1).astype(np.int64) if score.size else np.zeros(0, np.int64)
        self.choice = np.where(m.suitable.any(axis=1), choice, -1)
        self._next_other: dict[int, IntArray] = {}

    def next_other(self, serving: int) -> IntArray:
        """``(T + 1,)``: next step whose best suitable network is another one than ``serving``."""
        if serving not in self._next_other:
            self._next_other[serving] = next_true((self.choice != serving) & (self.choice >= 0))
        return self._next_other[serving]


class A3Policy(Policy):
    """Reactive 3GPP baseline (see module docstring).

    Examples
    --------
    >>> A3Policy().name, A3Policy(A3Params(hysteresis_db=1.0), name="x").params.hysteresis_db
    ('a3_default', 1.0)
    """

    def __init__(
        self,
        params: A3Params = A3_DEFAULT,
        *,
        name: str = "a3_default",
        home: str | None = None,
        return_home_s: float = 360.0,
    ) -> None:
        if not return_home_s > 0:
            raise InvalidInputError("return_home_s must be > 0", field="return_home_s")
        self.params = params
        self.name = name
        self.home = home
        self.return_home_s = return_home_s

    def bind(self, ctx: DriveContext) -> None:
        """Precompute per-operator candidate sets and masked RSRP."""
        super().bind(ctx)
        self.home = self.home or home_operator(ctx)
        self.trigger = A3Trigger(self.params, step_s=ctx.config.step_s)
        self.groups: dict[str, tuple[int, ...]] = {}
        for j, net in enumerate(ctx.networks):
            if not net.is_satellite:
                self.groups.setdefault(net.operator, ())
                self.groups[net.operator] += (j,)
        rsrp = ctx.measurements.l3_rsrp_dbm
        self.values: dict[str, NDArray[np.float64]] = {}
        for op, cols in self.groups.items():
            masked = np.full_like(rsrp, np.nan)
            masked[:, cols] = rsrp[:, cols]
            self.values[op] = masked
        self.period_steps = max(1, round(self.return_home_s / ctx.config.step_s))
        self.next_home_check = ctx.n_steps

    def start(self) -> int:
        """Best suitable network by the selection order (home first)."""
        return self._select(0, -1)

    def _select(self, k: int, failed: int) -> int:
        nets = self.ctx.networks
        m = self.ctx.measurements
        suitable = np.flatnonzero(m.suitable[k]).tolist()
        if not suitable:
            return -1
        ops: list[str] = []
        if failed >= 0 and not nets[failed].is_satellite:
            ops.append(nets[failed].operator)
        if self.home is not None and self.home not in ops:
            ops.append(self.home)
        for op in ops:
            choice = _best(
                m.l3_rsrp_dbm[k],
                [c for c in suitable if nets[c].operator == op and not nets[c].is_satellite],
            )
            if choice >= 0:
                return choice
        terrestrial = [c for c in suitable if not nets[c].is_satellite]
        if terrestrial:
            return _best(m.l3_sinr_db[k], terrestrial)
        rank = min(_KIND_RANK[nets[c].kind] for c in suitable)
        tier = [c for c in suitable if _KIND_RANK[nets[c].kind] == rank]
        fastest = min(nets[c].latency_ms for c in tier)
        return _best(m.l3_sinr_db[k], [c for c in tier if nets[c].latency_ms == fastest])

    def decide(self, k: int, serving: int) -> int | None:
        """A3 within the serving operator; the periodic search for home when away."""
        net = self.ctx.networks[serving]
        if k >= self.next_home_check:
            self.next_home_check += self.period_steps
            home = self._best_home(k)
            if home >= 0:
                return home
        if net.is_satellite:
            return None
        return self.trigger.step(k, serving, self.values[net.operator][k])

    def _best_home(self, k: int) -> int:
        m = self.ctx.measurements
        cols = [c for c in self.groups.get(self.home or "", ()) if m.suitable[k, c]]
        return _best(m.l3_rsrp_dbm[k], cols)

    def next_check(self, k: int, serving: int) -> int:
        """Running TTT: now; else the next A3 entering step or the next search for home."""
        if self.trigger.running:
            return k
        net = self.ctx.networks[serving]
        nxt = self.next_home_check
        if not net.is_satellite:
            margin = self.params.hysteresis_db + self.params.offset_db
            entering = self.ctx.measurements.next_entering(
                serving, margin, self.groups[net.operator]
            )
            nxt = min(nxt, int(entering[k]))
        return max(nxt, k)

    def recover(self, k: int, failed: int) -> int:
        """Network selection after a failure (see module docstring)."""
        return self._select(k, failed)

    def on_connect(self, k: int, network: int) -> None:
        """Reset TTT timers; schedule the search for home when away from it."""
        self.trigger.reset()
        away = self.ctx.networks[network].operator != self.home
        self.next_home_check = k + self.period_steps if away else self.ctx.n_steps


class _BestSuitablePolicy(Policy):
    """Starts on, and recovers to, the best suitable network; never switches on its own."""

    def bind(self, ctx: DriveContext) -> None:
        """Precompute the best suitable network per step."""
        super().bind(ctx)
        self.best = _BestSuitable(ctx)

    def start(self) -> int:
        """Best suitable network at step 0."""
        return int(self.best.choice[0])

    def recover(self, k: int, failed: int) -> int:
        """Best suitable network now."""
        return int(self.best.choice[k])


class GreedyPolicy(_BestSuitablePolicy):
    """Always the best L3 SINR among suitable networks (no hysteresis, no TTT).

    Examples
    --------
    >>> GreedyPolicy().name
    'greedy'
    """

    name = "greedy"

    def decide(self, k: int, serving: int) -> int | None:
        """The best suitable network when it beats the serving one."""
        c = int(self.best.choice[k])
        l3 = self.ctx.measurements.l3_sinr_db[k]
        if c >= 0 and c != serving and not l3[serving] >= l3[c]:
            return c
        return None

    def next_check(self, k: int, serving: int) -> int:
        """Next step where another network is the best suitable one."""
        return int(self.best.next_other(serving)[k])


class StickyPolicy(_BestSuitablePolicy):
    """Stay until a failure, then take the best suitable network.

    Examples
    --------
    >>> StickyPolicy().name
    'sticky'
    """

    name = "sticky"


class PlanPolicy(Policy):
    """Execute a plan: network per corridor segment (see module docstring).

    Parameters
    ----------
    assignment : (S,) int array
        Network column per corridor segment.
    name : str
        ``"commap"`` or ``"oracle"``.
    min_dwell_s : float
        Time on a recovery network before coming back to the plan.
    rejoin_margin_db : float
        L3 SINR margin over Qin the planned network needs before coming back to it.

    Examples
    --------
    >>> PlanPolicy(np.array([0, 0, 1]), name="commap_open_loop").name
    'commap_open_loop'
    """

    def __init__(
        self,
        assignment: Sequence[int] | IntArray,
        *,
        name: str = "commap_open_loop",
        min_dwell_s: float = defaults.EXECUTION_MIN_DWELL_S,
        rejoin_margin_db: float = 3.0,
    ) -> None:
        self.assignment = np.asarray(assignment, dtype=np.int64)
        if self.assignment.ndim != 1 or self.assignment.size == 0:
            raise InvalidInputError("a plan needs one network per segment", field="assignment")
        self.name = name
        self.min_dwell_s = min_dwell_s
        self.rejoin_margin_db = rejoin_margin_db

    def bind(self, ctx: DriveContext) -> None:
        """Map the plan onto the steps."""
        super().bind(ctx)
        segment = ctx.truth.segment
        if int(segment.max(initial=0)) >= self.assignment.size:
            raise InvalidInputError(
                f"plan has {self.assignment.size} segments, the truth needs "
                f"{int(segment.max()) + 1}",
                field="assignment",
            )
        if int(self.assignment.max()) >= len(ctx.networks) or int(self.assignment.min()) < 0:
            raise InvalidInputError("plan names a network column that does not exist")
        self.plan = self.assignment[segment]
        change = np.concatenate(([True], self.plan[1:] != self.plan[:-1]))
        self.run_id = np.cumsum(change) - 1
        self.run_start = np.flatnonzero(change)
        self.run_stop = np.append(self.run_start[1:], self.plan.size)
        m = ctx.measurements
        rows = np.arange(self.plan.size)
        ok = m.l3_sinr_db[rows, self.plan] >= ctx.config.qin_sinr_db + self.rejoin_margin_db
        self.next_plan_ok = next_true(ok & m.suitable[rows, self.plan])
        self.best = _BestSuitable(ctx)
        self.dwell_steps = max(0, math.ceil(self.min_dwell_s / ctx.config.step_s - 1e-9))
        self.handled = -1
        self.off_since = -1

    def start(self) -> int:
        """The planned network at step 0."""
        self.handled = 0
        return int(self.plan[0])

    def decide(self, k: int, serving: int) -> int | None:
        """The planned switch at the start of each planned run; rejoin the plan after recovery."""
        desired = int(self.plan[k])
        rid = int(self.run_id[k])
        if rid != self.handled:
            self.handled = rid
            return desired if desired != serving else None
        rejoin = serving != desired and k >= self.off_since + self.dwell_steps
        # not for a planned run that ends within the dwell (that would be a ping-pong)
        rejoin = rejoin and self.run_stop[rid] - k >= self.dwell_steps
        return desired if rejoin and int(self.next_plan_ok[k]) == k else None

    def next_check(self, k: int, serving: int) -> int:
        """The next planned switch (or the next chance to rejoin the plan)."""
        rid = int(self.run_id[k])
        if rid != self.handled:
            return k
        nxt = int(self.run_start[rid + 1]) if rid + 1 < self.run_start.size else self.ctx.n_steps
        if serving != int(self.plan[k]):
            earliest = min(max(k, self.off_since + self.dwell_steps), self.ctx.n_steps)
            nxt = min(nxt, int(self.next_plan_ok[earliest]))
        return nxt

    def recover(self, k: int, failed: int) -> int:
        """The planned network if suitable, else the best suitable one."""
        desired = int(self.plan[k])
        self.handled = int(self.run_id[k])
        if self.ctx.measurements.suitable[k, desired]:
            return desired
        return int(self.best.choice[k])

    def on_connect(self, k: int, network: int) -> None:
        """Remember when the vehicle left the plan."""
        if k < self.plan.size and network != int(self.plan[k]):
            self.off_since = k


class FallbackPlanPolicy(PlanPolicy):
    """A plan with a measured safety net: :mod:`commap.plan.execution`, as vehicles execute plans.

    Executes the plan like :class:`PlanPolicy`, with two rules for when the measurements
    contradict the map: a planned switch waits until the target's L3 SINR is
    ``rejoin_margin_db`` over Qin (and is dropped if its planned run would then last less than
    the dwell); and when the serving network's L3 SINR stays below ``weak_sinr_db`` for
    ``weak_ttt_s``, it switches before the link fails to the suitable network with that margin
    that costs the shortest interruption (then the best SINR); unless the serving link is out
    of sync, the weak link must last ``weak_ttt_per_interruption`` times that interruption
    longer (a fade shorter than the switch's cost is ridden out). Off the plan (after such a
    fallback or a recovery) it stays on a link that measures well and comes back to the plan
    at the plan's next switch, or earlier once that link turns weak and the planned network,
    after the dwell, measures well. Within the dwell after a switch it leaves again only a
    link that is out of sync (no ping-pong on a merely weak link).

    Every switch it asks for, and every re-attachment to another network, is noted in
    :attr:`switches` as ``(step, from, to, cause)`` with a cause of :data:`SWITCH_CAUSES`;
    :meth:`cause_counts` counts them.

    Examples
    --------
    >>> FallbackPlanPolicy(np.array([0, 1]), name="commap").weak_sinr_db
    -3.0
    """

    def __init__(
        self,
        assignment: Sequence[int] | IntArray,
        *,
        name: str = "commap",
        min_dwell_s: float = DEFAULT_EXECUTION_RULES.min_dwell_s,
        rejoin_margin_db: float = DEFAULT_EXECUTION_RULES.rejoin_margin_db,
        weak_sinr_db: float = DEFAULT_EXECUTION_RULES.weak_sinr_db,
        weak_ttt_s: float = DEFAULT_EXECUTION_RULES.weak_ttt_s,
        weak_ttt_per_interruption: float = DEFAULT_EXECUTION_RULES.weak_ttt_per_interruption,
    ) -> None:
        super().__init__(
            assignment, name=name, min_dwell_s=min_dwell_s, rejoin_margin_db=rejoin_margin_db
        )
        self.weak_sinr_db = weak_sinr_db
        self.weak_ttt_s = weak_ttt_s
        self.weak_ttt_per_interruption = weak_ttt_per_interruption
        self.switches: list[tuple[int, int, int, str]] = []

    def bind(self, ctx: DriveContext) -> None:
        """Precompute weak-link steps and the fallback candidates."""
        super().bind(ctx)
        m = ctx.measurements
        with np.errstate(invalid="ignore"):
            self.weak = ~(m.l3_sinr_db >= self.weak_sinr_db)
            self.good = m.suitable & (
                m.l3_sinr_db >= ctx.config.qin_sinr_db + self.rejoin_margin_db
            )
        self.next_weak = next_true(self.weak)
        self.weak_steps = math.ceil(self.weak_ttt_s / ctx.config.step_s - 1e-9)
        nets = ctx.networks
        self.interruption = np.array([[ctx.link.switch(a, b)[2] for b in nets] for a in nets])
        self.weak_since = -1
        self.connected_at = 0
        self.switches = []

    def cause_counts(self) -> dict[str, int]:
        """Switches of the run so far per cause (every cause of :data:`SWITCH_CAUSES`)."""
        counts = dict.fromkeys(SWITCH_CAUSES, 0)
        for *_, cause in self.switches:
            counts[cause] += 1
        return counts

    def decide(self, k: int, serving: int) -> int | None:
        """The plan's switch once the target measures well, else a fallback on a weak link."""
        desired = int(self.plan[k])
        rid = int(self.run_id[k])
        if rid != self.handled and desired != serving:
            if self.run_stop[rid] - k < self.dwell_steps:
                # held too long: the planned run ends within the dwell, skip this switch
                self.handled, self.off_since = rid, k
            elif self.good[k, desired]:
                self.handled = rid
                return self._note(k, serving, desired, "planned")
            # else: the planned target measures badly, hold the switch (checked every step)
        elif serving == desired or self.weak[k, serving]:
            # off the plan on a link that measures well, the vehicle stays: coming back mid-run
            # costs a second switch for a gain the measurements do not show (it comes back at
            # the plan's next switch, or here once that link turns weak)
            new_run = rid != self.handled
            planned = super().decide(k, serving)
            if planned is not None:
                return self._note(k, serving, planned, "planned" if new_run else "return")
        target = self._fallback(k, serving)
        return None if target is None else self._note(k, serving, target, "weak_link")

    def _note(self, k: int, source: int, target: int, cause: str) -> int:
        self.switches.append((k, source, target, cause))
        return target

    def _fallback(self, k: int, serving: int) -> int | None:
        if not self.weak[k, serving]:
            self.weak_since = -1
            return None
        if self.weak_since < 0:
            self.weak_since = k
        weak_steps = k - self.weak_since
        if weak_steps < self.weak_steps:
            return None
        failing = bool(self.ctx.measurements.oos[k, serving])
        if k - self.connected_at < self.dwell_steps and not failing:
            return None  # just arrived: leave again only if the link is really failing
        candidates = [c for c in np.flatnonzero(self.good[k]).tolist() if c != serving]
        if not candidates:
            return None
        l3 = self.ctx.measurements.l3_sinr_db[k]
        target = min(candidates, key=lambda c: (self.interruption[serving, c], -float(l3[c])))
        # a time-to-trigger sized to the switch: a fade shorter than the interruption it would
        # cost is cheaper to ride out (a link out of sync is heading for a failure: leave now)
        extra_s = self.weak_ttt_per_interruption * float(self.interruption[serving, target])
        extra_steps = math.ceil(extra_s / self.ctx.config.step_s - 1e-9)
        if weak_steps < self.weak_steps + extra_steps and not failing:
            return None
        return target

    def next_check(self, k: int, serving: int) -> int:
        """As the plan, or now while the serving link is weak or a planned switch waits."""
        rid = int(self.run_id[k])
        if self.weak_since >= 0 or rid != self.handled:
            return k
        if serving == int(self.plan[k]):
            nxt = super().next_check(k, serving)
        else:  # off the plan: the next planned switch (a weak link is checked below)
            nxt = (
                int(self.run_start[rid + 1]) if rid + 1 < self.run_start.size else self.ctx.n_steps
            )
        return min(nxt, int(self.next_weak[k, serving]))

    def recover(self, k: int, failed: int) -> int:
        """As the plan; a re-attachment to another network is noted as a switch."""
        target = super().recover(k, failed)
        if failed >= 0 and target >= 0 and target != failed:
            self._note(k, failed, target, "recovery")
        return target

    def on_connect(self, k: int, network: int) -> None:
        """Reset the weak-link timer."""
        super().on_connect(k, network)
        self.weak_since = -1
        self.connected_at = k
