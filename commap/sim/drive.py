"""Drive simulator: a vehicle on a truth field at 100 ms steps, under one handover policy.

Per step the simulator keeps the serving network and its radio link monitoring (RLM), asks the
policy whether to switch, executes switches and recovers from failures:

* **Measurements** (:class:`Measurements`, shared by every policy on one truth): the UE's
  samples (slow truth + fast fading), L1-averaged over 200 ms and L3-filtered (``k = 4``).
* **RLM** (TS 36.331 5.3.11, TS 36.133 7.6): the L1 SINR of the serving network below Qout
  (-5 dB) gives out-of-sync indications, above Qin (-3.9 dB) in-sync indications, one per
  ``indication_period_s`` (10 ms radio frames when not in DRX). ``N310`` consecutive
  out-of-sync indications start ``T310``; ``N311`` consecutive in-sync indications stop it;
  ``T310`` expiring is a **radio link failure** (RLF).
* **Handover execution**: a switch ``a -> b`` interrupts service for the interruption time of
  its kind, taken from :meth:`commap.radio.link.LinkModel.switch` (so planner and simulator agree).
  It is a **handover failure** (HOF) when the target's L1 SINR is below Qout at execution;
  the failure is detected after ``min(interruption, t304_s)``.
* **Recovery**: after an RLF or HOF the policy picks the network to re-attach to
  (:meth:`Policy.recover`); on the failed network's operator that takes ``reestablishment_s``
  (RRC re-establishment), on another network the interruption of that kind of switch (for two
  terrestrial operators without a handover agreement: re-registration). With nothing usable
  the vehicle stays without service until something is.

Service is lost (``outage_s`` of a step) during interruptions and while the serving link is
below Qout. The result, :class:`DriveLog`, holds the serving network per step and every event;
:mod:`commap.sim.metrics` turns it into figures.

Steps in which nothing can happen (link in sync, no timer running, policy idle) are skipped in
one slice: policies report their next possible decision (:meth:`Policy.next_check`) and the
simulator knows the next out-of-sync step of every network.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from commap.arrays import BoolArray, FloatArray, IntArray
from commap.errors import InvalidInputError
from commap.networks import Network, SwitchKind, switch_kind
from commap.radio.link import LinkModel
from commap.radio.quality import QIN_SINR_DB, QOUT_SINR_DB
from commap.sim.a3 import DEFAULT_STEP_S, l1_average, l3_filter
from commap.sim.truth import TruthField

__all__ = [
    "DriveContext",
    "DriveLog",
    "Event",
    "Measurements",
    "Policy",
    "SimConfig",
    "next_true",
    "simulate",
]

log = logging.getLogger(__name__)


EventKind = Literal["handover", "hof", "rlf", "recovery"]
_EPS = 1e-9


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """Radio link monitoring and recovery parameters (3GPP defaults of DESIGN.md).

    Examples
    --------
    >>> SimConfig().n310, SimConfig().t310_s
    (6, 1.0)
    >>> SimConfig(n310=0)
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: sim n310 must be >= 1, got 0
    """

    step_s: float = DEFAULT_STEP_S
    qout_sinr_db: float = QOUT_SINR_DB
    qin_sinr_db: float = QIN_SINR_DB
    n310: int = 6
    t310_s: float = 1.0
    n311: int = 2
    indication_period_s: float = 0.01  # one L1 indication per 10 ms radio frame (no DRX)
    l1_window_s: float = 0.2
    l3_k: int = 4
    t304_s: float = 1.0  # handover failure detection (36.331 T304, typical 1000 ms)
    reestablishment_s: float = 1.0  # RRC re-establishment on the same operator after a failure

    def __post_init__(self) -> None:
        for name in ("n310", "n311"):
            if getattr(self, name) < 1:
                raise InvalidInputError(
                    f"sim {name} must be >= 1, got {getattr(self, name)}", field=name
                )
        for name in ("step_s", "indication_period_s"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise InvalidInputError(f"sim {name} must be > 0", field=name)
        for name in ("t310_s", "l1_window_s", "t304_s", "reestablishment_s"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise InvalidInputError(f"sim {name} must be >= 0", field=name)
        if not self.qin_sinr_db >= self.qout_sinr_db:
            raise InvalidInputError("sim qin_sinr_db must be >= qout_sinr_db", field="qin_sinr_db")

    @property
    def indications_per_step(self) -> int:
        """L1 indications delivered in one step (at least one)."""
        return max(1, round(self.step_s / self.indication_period_s))


def next_true(mask: ArrayLike) -> IntArray:
    """``[k]``: the first index ``>= k`` where ``mask`` is True along axis 0, else ``len``.

    The result has one extra row (index ``len``) so that ``out[len] == len``.

    Examples
    --------
    >>> next_true(np.array([False, True, False])).tolist()
    [1, 1, 3, 3]
    >>> next_true(np.zeros(0, bool)).tolist()
    [0]
    """
    m = np.asarray(mask, dtype=bool)
    n = m.shape[0]
    idx = np.arange(n).reshape((n,) + (1,) * (m.ndim - 1))
    marks = np.where(m, idx, n)
    out = np.full((n + 1, *m.shape[1:]), n, dtype=np.int64)
    if n:
        out[:n] = np.minimum.accumulate(marks[::-1], axis=0)[::-1]
    return out


class Measurements:
    """The UE's filtered measurements of every network on one truth (shared by policies).

    A network without any signal at a step (the truth's NO_SIGNAL) is not measurable there: its
    sample is NaN, not a very low number, so that the L1 average of a network that has just
    appeared holds only its own samples and its L3 filter restarts (``F_0 = M_1``).

    Attributes
    ----------
    l1_sinr_db, l3_sinr_db, l3_rsrp_dbm : (T, N) arrays
        L1-averaged SINR, L3-filtered SINR and RSRP (NaN where not measurable; RSRP NaN for
        satellites). NaN counts as below every threshold.
    suitable : (T, N) bool
        L1 SINR at or above Qin (a network the UE may attach to).
    """

    def __init__(self, truth: TruthField, config: SimConfig) -> None:
        if abs(truth.step_s - config.step_s) > 1e-12:
            raise InvalidInputError(
                f"truth step {truth.step_s} s differs from the simulator step {config.step_s} s"
            )
        self.truth = truth
        self.config = config
        step = config.step_s
        dead = truth.dead
        sinr = np.where(dead, np.nan, truth.sample_sinr_db)
        rsrp = np.where(dead, np.nan, truth.sample_rsrp_dbm)
        self.l1_sinr_db = l1_average(sinr, window_s=config.l1_window_s, step_s=step)
        self.l3_sinr_db = l3_filter(self.l1_sinr_db, k=config.l3_k, step_s=step)
        self.l3_rsrp_dbm = l3_filter(
            l1_average(rsrp, window_s=config.l1_window_s, step_s=step),
            k=config.l3_k,
            step_s=step,
        )
        with np.errstate(invalid="ignore"):
            self.oos: BoolArray = np.asarray(~(self.l1_sinr_db >= config.qout_sinr_db))
            self.suitable: BoolArray = np.asarray(self.l1_sinr_db >= config.qin_sinr_db)
        self._entering: dict[tuple[int, float, tuple[int, ...]], IntArray] = {}

    def __len__(self) -> int:
        return int(self.l1_sinr_db.shape[0])

    @cached_property
    def next_oos(self) -> IntArray:
        """``(T + 1, N)``: next out-of-sync step of each network."""
        return next_true(self.oos)

    @cached_property
    def next_any_suitable(self) -> IntArray:
        """``(T + 1,)``: next step where some network is suitable."""
        return next_true(self.suitable.any(axis=1))

    def next_entering(
        self, serving: int, margin_db: float, candidates: tuple[int, ...]
    ) -> IntArray:
        """``(T + 1,)``: next step where a candidate's L3 RSRP exceeds the serving one by margin.

        Cached per ``(serving, margin, candidates)``; used to skip idle A3 steps.
        """
        key = (serving, round(margin_db, 9), candidates)
        if key not in self._entering:
            others = [c for c in candidates if c != serving]
            if not others:
                self._entering[key] = np.full(len(self) + 1, len(self), dtype=np.int64)
            else:
                rsrp = np.nan_to_num(self.l3_rsrp_dbm, nan=-np.inf)
                base = rsrp[:, serving]
                base = np.where(np.isfinite(base), base, -np.inf)
                cond = (rsrp[:, others] > base[:, None] + margin_db).any(axis=1)
                self._entering[key] = next_true(cond)
        return self._entering[key]


@dataclass(frozen=True)
class DriveContext:
    """What a policy may look at: the measurements, the networks, the link model, the clock."""

    measurements: Measurements
    networks: tuple[Network, ...]
    link: LinkModel
    config: SimConfig

    @property
    def truth(self) -> TruthField:
        """The truth field (policies must only use :attr:`measurements`; metrics use truth)."""
        return self.measurements.truth

    @property
    def n_steps(self) -> int:
        """Number of steps."""
        return len(self.measurements)


class Policy(ABC):
    """A handover policy. One instance drives one run; :meth:`bind` is called first."""

    name: str = "policy"

    def bind(self, ctx: DriveContext) -> None:
        """Attach the run's context (override to precompute; call ``super().bind``)."""
        self.ctx = ctx

    @abstractmethod
    def start(self) -> int:
        """Network at step 0 (``-1``: none usable yet)."""

    def decide(self, k: int, serving: int) -> int | None:
        """Network to switch to at step ``k`` (``None``: stay)."""
        return None

    def next_check(self, k: int, serving: int) -> int:
        """Earliest step ``>= k`` at which :meth:`decide` may return a switch."""
        return self.ctx.n_steps

    @abstractmethod
    def recover(self, k: int, failed: int) -> int:
        """Network to re-attach to at step ``k`` after a failure on ``failed`` (-1: none)."""

    def on_connect(self, k: int, network: int) -> None:  # noqa: B027 - optional hook
        """Called when service on ``network`` starts (after a switch or a recovery)."""


@dataclass(frozen=True)
class Event:
    """One event of a drive.

    ``kind``: ``handover`` (successful switch), ``hof`` (failed switch attempt), ``rlf``
    (radio link failure), ``recovery`` (service re-established after a failure).
    ``avoidable`` (failures only): some network was usable in the truth at that step.
    """

    kind: EventKind
    step: int
    t_s: float
    distance_m: float
    source: int
    target: int
    switch_kind: SwitchKind
    interruption_s: float = 0.0
    avoidable: bool = False


@dataclass
class DriveLog:
    """Outcome of one drive (:func:`simulate`).

    Attributes
    ----------
    policy : policy name.
    serving : (T,) network per step (-1: no service during the whole step).
    outage_s : (T,) seconds without service in each step (0..step_s).
    events : every event in time order.
    """

    policy: str
    network_ids: tuple[str, ...]
    step_s: float
    serving: IntArray
    outage_s: FloatArray
    events: list[Event] = field(default_factory=list)

    def count(self, kind: EventKind) -> int:
        """Number of events of ``kind``."""
        return sum(1 for e in self.events if e.kind == kind)


class _Run:
    """State of one simulation (kept apart from the loop to keep functions short)."""

    def __init__(self, ctx: DriveContext, policy: Policy) -> None:
        self.ctx = ctx
        self.policy = policy
        self.m = ctx.measurements
        self.cfg = ctx.config
        self.step = ctx.config.step_s
        self.n = ctx.n_steps
        self.t = ctx.truth.t_s
        self.serving = np.full(self.n, -1, dtype=np.int64)
        self.outage = np.zeros(self.n)
        self.events: list[Event] = []
        self.l1 = self.m.l1_sinr_db
        self.usable_any: BoolArray = np.asarray(ctx.truth.usable.any(axis=1))
        self._reset_rlm()

    def _reset_rlm(self) -> None:
        self.n_oos = 0
        self.n_in = 0
        self.t310_start: float | None = None

    def event(
        self, kind: EventKind, k: int, source: int, target: int, interruption_s: float
    ) -> None:
        nets = self.ctx.networks
        sk = (
            switch_kind(nets[source], nets[target])
            if source >= 0 and target >= 0
            else (SwitchKind.NONE)
        )
        k_at = min(k, self.n - 1)
        self.events.append(
            Event(
                kind=kind,
                step=k_at,
                t_s=float(self.t[k_at]),
                distance_m=float(self.ctx.truth.distance_m[k_at]),
                source=source,
                target=target,
                switch_kind=sk,
                interruption_s=interruption_s,
                avoidable=bool(self.usable_any[k_at]) if kind in ("rlf", "hof") else False,
            )
        )

    def interrupt(self, k: int, duration_s: float) -> int:
        """No service from step ``k`` for ``duration_s``; returns the step service resumes in."""
        full = math.floor(duration_s / self.step + _EPS)
        stop = min(k + full, self.n)
        self.outage[k:stop] = self.step
        self.serving[k:stop] = -1
        rest = duration_s - full * self.step
        if stop < self.n and rest > _EPS:
            self.outage[stop] += rest
        return stop

    def rlm(self, k: int, s: int) -> bool:
        """Radio link monitoring at step ``k``; True when T310 expires (RLF)."""
        cfg = self.cfg
        sinr = self.l1[k, s]
        per = cfg.indications_per_step
        if not sinr >= cfg.qout_sinr_db:  # NaN (nothing measurable) is out of sync too
            self.n_in = 0
            if self.t310_start is None:
                before = self.n_oos
                self.n_oos += per
                if self.n_oos >= cfg.n310:
                    self.t310_start = self.t[k] + (cfg.n310 - before) * cfg.indication_period_s
        elif sinr > cfg.qin_sinr_db:
            self.n_oos = 0
            if self.t310_start is not None:
                self.n_in += per
                if self.n_in >= cfg.n311:
                    self.t310_start, self.n_in = None, 0
        return self.t310_start is not None and (
            self.t[k] + self.step >= self.t310_start + cfg.t310_s - _EPS
        )

    @property
    def quiet(self) -> bool:
        return self.n_oos == 0 and self.t310_start is None


def _recovery_delay(ctx: DriveContext, failed: int, target: int) -> float:
    nets = ctx.networks
    if failed < 0 or nets[failed].operator == nets[target].operator:
        return ctx.config.reestablishment_s
    return ctx.link.switch(nets[failed], nets[target])[2]


def simulate(
    truth: TruthField,
    policy: Policy,
    networks: Sequence[Network],
    *,
    link: LinkModel | None = None,
    config: SimConfig | None = None,
    measurements: Measurements | None = None,
) -> DriveLog:
    """Drive the truth field under ``policy`` (see module docstring).

    Parameters
    ----------
    truth : TruthField
        The field the vehicle meets.
    policy : Policy
        A fresh policy instance (it is bound to this run).
    networks : sequence of Network
        One per truth column.
    link : LinkModel, optional
        Interruption times per kind of switch (the planner's link model).
    config : SimConfig, optional
        RLM and recovery parameters.
    measurements : Measurements, optional
        Precomputed measurements of ``truth`` (share them between the policies of one truth).

    Returns
    -------
    DriveLog

    Examples
    --------
    >>> simulate.__name__
    'simulate'
    """
    cfg = config or SimConfig()
    nets = tuple(networks)
    if tuple(n.id for n in nets) != truth.network_ids:
        raise InvalidInputError("networks must name the truth columns in order", field="networks")
    m = measurements if measurements is not None else Measurements(truth, cfg)
    ctx = DriveContext(measurements=m, networks=nets, link=link or LinkModel(), config=cfg)
    policy.bind(ctx)
    run = _Run(ctx, policy)
    _loop(run)
    _mark_link_outage(run)
    return DriveLog(
        policy=policy.name,
        network_ids=truth.network_ids,
        step_s=cfg.step_s,
        serving=run.serving,
        outage_s=run.outage,
        events=run.events,
    )


def _loop(run: _Run) -> None:
    policy, n = run.policy, run.n
    s = policy.start()
    failed = -1
    if s >= 0:
        policy.on_connect(0, s)
    k = 0
    while k < n:
        if s < 0:
            k, s = _attach(run, k, failed)
            continue
        if run.quiet:
            nxt = min(int(run.m.next_oos[k, s]), policy.next_check(k, s), n)
            if nxt > k:
                run.serving[k:nxt] = s
                k = nxt
                continue
        run.serving[k] = s
        if run.rlm(k, s):
            run.event("rlf", k, s, s, 0.0)
            failed, s = s, -1
            run.outage[k] = run.step
            run.serving[k] = -1
            k += 1
            continue
        target = policy.decide(k, s)
        if target is None or target == s:
            k += 1
            continue
        k, s, failed = _switch(run, k, s, target)


def _switch(run: _Run, k: int, s: int, target: int) -> tuple[int, int, int]:
    """Execute ``s -> target`` at step ``k``: returns (next step, serving, failed network)."""
    nets = run.ctx.networks
    _, _, interruption = run.ctx.link.switch(nets[s], nets[target])
    if not run.l1[k, target] >= run.cfg.qout_sinr_db:
        lost = min(interruption, run.cfg.t304_s)
        run.event("hof", k, s, target, lost)
        resume = run.interrupt(k, max(lost, run.step))
        return resume, -1, s
    run.event("handover", k, s, target, interruption)
    resume = run.interrupt(k, interruption)
    run._reset_rlm()
    run.policy.on_connect(resume, target)
    if resume < run.n:
        run.serving[resume] = target
    return resume, target, -1


def _attach(run: _Run, k: int, failed: int) -> tuple[int, int]:
    """No service at step ``k``: attach to the policy's choice, or wait for a usable network."""
    target = run.policy.recover(k, failed)
    if target < 0:
        nxt = max(k + 1, min(int(run.m.next_any_suitable[k + 1]), run.n))
        run.outage[k:nxt] = run.step
        run.serving[k:nxt] = -1
        return nxt, -1
    delay = _recovery_delay(run.ctx, failed, target)
    run.event("recovery", k, failed, target, delay)
    resume = run.interrupt(k, delay)
    run._reset_rlm()
    run.policy.on_connect(resume, target)
    return resume, target


def _mark_link_outage(run: _Run) -> None:
    """Steps served by a link below Qout carry no traffic: full-step outage."""
    served = run.serving >= 0
    idx = np.flatnonzero(served)
    below = ~(run.l1[idx, run.serving[idx]] >= run.cfg.qout_sinr_db)
    run.outage[idx[below]] = run.step
