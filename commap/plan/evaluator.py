"""The one independent evaluator: scores any assignment and checks every constraint.

Every plan, whatever solver made it, goes through :func:`evaluate_plan`. It recomputes the cost from
the link-model quantities of the problem (drop probabilities, handover failure and interruption,
satellite MB, latency violations), not from the solvers' cost arrays, and checks the constraints
directly on segment times and distances.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from commap.arrays import IntArray
from commap.errors import InvalidInputError
from commap.networks import SwitchKind
from commap.plan.problem import HandoverProblem
from commap.radio.link import SWITCH_KINDS

__all__ = ["Evaluation", "evaluate_plan"]


_EPS = 1e-9  # tolerance on dwell (s, m) and budget (MB) comparisons
_MAX_REPORTED = 5  # violations listed per constraint


@dataclass(frozen=True)
class Evaluation:
    """Scores and constraint check of one assignment.

    Attributes
    ----------
    cost : float
        Weighted objective (:class:`commap.radio.link.Objective`).
    cost_terms : dict
        Weighted contribution of each objective term.
    expected_drops : float
        ``outage_drops + handover_drops``.
    outage_drops : float
        Sum of the segment drop probabilities of the serving networks.
    handover_drops : float
        Sum of the handover failure probabilities.
    handovers : int
        Number of switches.
    handovers_by_kind : dict
        Switch counts by :class:`commap.networks.SwitchKind` value (kinds with zero omitted).
    switch_at : (H,) int array
        Segments where a new network starts.
    outage_s : float
        Expected seconds out of coverage on the serving networks (networks fast enough for the
        application; the others count in ``latency_violation_s``).
    loss_events : float
        Expected gaps the application notices: link failures (each outlasts radio link failure
        detection, 1 s) plus switches interrupting the link for at least the application's
        ``tolerated_gap_s``.
    expected_loss_s : float
        Expected seconds without the application's service: the weighted service terms of the
        cost (outage, link-failure recovery, interruption, latency violation); in seconds with
        the default weights.
    interruption_s : float
        Planned interruption: handover execution and LEO reconfiguration.
    sat_mb : float
        Megabytes over satellite networks.
    latency_violation_s : float
        Seconds on networks slower than the application allows.
    time_share : dict
        Fraction of the travel time on each used network.
    violations : tuple of str
        One message per broken constraint occurrence (``"<constraint>: ..."``); empty if none.
    """

    cost: float
    cost_terms: dict[str, float]
    expected_drops: float
    outage_drops: float
    handover_drops: float
    handovers: int
    handovers_by_kind: dict[str, int]
    switch_at: IntArray = field(repr=False)
    outage_s: float
    expected_loss_s: float
    loss_events: float
    interruption_s: float
    sat_mb: float
    latency_violation_s: float
    time_share: dict[str, float]
    violations: tuple[str, ...]

    @property
    def feasible(self) -> bool:
        """True when no constraint is broken."""
        return not self.violations


# The cost terms that are seconds of lost service (the rest are prices: switches, satellite MB).
_LOSS_TERMS = ("outage_s", "drops", "interruption_s", "latency_violation_s")


def evaluate_plan(problem: HandoverProblem, assignment: object) -> Evaluation:
    """Score ``assignment`` (network column per segment) and check every constraint.

    Raises
    ------
    InvalidInputError
        If the assignment has the wrong length or names no valid column.

    Examples
    --------
    >>> evaluate_plan.__name__
    'evaluate_plan'
    """
    a = _check(problem, assignment)
    rows = np.arange(a.shape[0])
    switch_at = np.flatnonzero(a[1:] != a[:-1]) + 1
    prev, new = a[switch_at - 1], a[switch_at]
    link, w, table = problem.link, problem.objective, problem.switch
    outage_drops = float(problem.drop_onsets[rows, a].sum())
    # the recovery of failures already counted as measured outage seconds is not paid twice
    recovery_drops = float(problem.recovery_onsets[rows, a].sum())
    handover_drops = float(
        (
            table.failure_prob[prev, new]
            + link.target_outage_failure_gain * problem.point_outage[switch_at, new]
        ).sum()
    )
    interruption = float(
        table.interruption_s[prev, new].sum() + problem.reconfiguration_s[rows, a].sum()
    )
    sat_mb = float(problem.sat_mb[rows, a].sum())
    latency_s = float(problem.latency_violation_s[rows, a].sum())
    outage_s = float(problem.outage_s[rows, a].sum())
    terms = {
        "outage_s": w.outage_s * outage_s,
        "drops": w.drops * (recovery_drops + handover_drops),
        "handovers": w.handovers * float(switch_at.size),
        "interruption_s": w.interruption_s * interruption,
        "sat_mb": w.sat_mb * sat_mb,
        "latency_violation_s": w.latency_violation_s * latency_s,
    }
    duration = np.asarray(problem.corridor.duration_s, dtype=np.float64)
    return Evaluation(
        cost=float(sum(terms.values())),
        cost_terms=terms,
        expected_drops=outage_drops + handover_drops,
        outage_drops=outage_drops,
        handover_drops=handover_drops,
        handovers=int(switch_at.size),
        handovers_by_kind=_by_kind(table.kind_code[prev, new]),
        switch_at=switch_at,
        outage_s=outage_s,
        expected_loss_s=sum(terms[k] for k in _LOSS_TERMS),
        loss_events=outage_drops
        + handover_drops
        + float(np.count_nonzero(table.interruption_s[prev, new] >= problem.app.tolerated_gap_s)),
        interruption_s=interruption,
        sat_mb=sat_mb,
        latency_violation_s=latency_s,
        time_share=_time_share(problem, a, duration),
        violations=tuple(_violations(problem, a, switch_at, sat_mb)),
    )


def _check(problem: HandoverProblem, assignment: object) -> IntArray:
    n_seg, n_net = problem.shape
    try:
        a = np.asarray(assignment)
    except (TypeError, ValueError):
        raise InvalidInputError("assignment must be an array of network columns") from None
    if a.shape != (n_seg,):
        raise InvalidInputError(
            f"assignment has shape {a.shape}, expected ({n_seg},)", field="assignment"
        )
    if n_seg and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= n_net):
        raise InvalidInputError(
            f"assignment must hold network columns 0..{n_net - 1}", field="assignment"
        )
    return a.astype(np.int64)


def _by_kind(codes: NDArray[np.int8]) -> dict[str, int]:
    counts = np.bincount(codes.astype(np.int64), minlength=len(SWITCH_KINDS))
    return {
        str(kind.value): int(c)
        for kind, c in zip(SWITCH_KINDS, counts, strict=True)
        if c and kind is not SwitchKind.NONE
    }


def _time_share(
    problem: HandoverProblem, a: IntArray, duration: NDArray[np.float64]
) -> dict[str, float]:
    total = float(duration.sum())
    per = np.bincount(a, weights=duration, minlength=problem.shape[1])
    if total <= 0:
        per = np.bincount(a, minlength=problem.shape[1]).astype(np.float64)
        total = float(max(a.size, 1))
    return {nid: float(v / total) for nid, v in zip(problem.network_ids, per, strict=True) if v > 0}


def _violations(
    problem: HandoverProblem, a: IntArray, switch_at: IntArray, sat_mb: float
) -> list[str]:
    c = problem.constraints
    out: list[str] = []
    if c.max_handovers is not None and switch_at.size > c.max_handovers:
        out.append(f"max_handovers: {switch_at.size} handovers > limit {c.max_handovers}")
    if c.sat_budget_mb is not None and sat_mb > c.sat_budget_mb + _EPS:
        out.append(f"sat_budget_mb: {sat_mb:.3f} MB > budget {c.sat_budget_mb:.3f} MB")
    out += _rule_violations(problem, a)
    if c.has_dwell:
        out += _dwell_violations(problem, a, switch_at)
    return out


def _rule_violations(problem: HandoverProblem, a: IntArray) -> list[str]:
    """Latency, initial network and unusable-network rules, recomputed from their inputs."""
    c, ids = problem.constraints, problem.network_ids
    rows = np.arange(a.shape[0])
    out: list[str] = []
    if c.strict_latency:
        slow = np.array([n.latency_ms > problem.app.max_latency_ms for n in problem.networks])
        for i in np.flatnonzero(slow[a])[:_MAX_REPORTED]:
            out.append(
                f"strict_latency: {ids[a[i]]} at segment {i} is slower than {problem.app.name} allows"
            )
    if c.initial_network is not None and a.size and ids[a[0]] != c.initial_network:
        out.append(f"initial_network: plan starts on {ids[a[0]]}, not {c.initial_network}")
    # a vehicle without a satellite terminal cannot use a satellite network
    no_terminal = problem.vehicle is not None and not problem.vehicle.has_terminal
    unreachable = np.array([no_terminal and n.is_satellite for n in problem.networks], dtype=bool)
    for i in np.flatnonzero(unreachable[a])[:_MAX_REPORTED]:
        out.append(f"vehicle: {ids[a[i]]} at segment {i} needs a satellite terminal")
    if c.avoid_unusable:
        usable = (problem.point_outage < problem.link.unusable_outage_prob) & ~unreachable
        if c.strict_latency:
            usable &= ~np.array(
                [n.latency_ms > problem.app.max_latency_ms for n in problem.networks]
            )
        bad = ~usable[rows, a] & usable.any(axis=1)
        if c.initial_network is not None:
            bad[:1] = False
        for i in np.flatnonzero(bad)[:_MAX_REPORTED]:
            out.append(
                f"avoid_unusable: {ids[a[i]]} is unusable at segment {i} while another network is usable"
            )
    return out


def _dwell_violations(problem: HandoverProblem, a: IntArray, switch_at: IntArray) -> list[str]:
    c = problem.constraints
    eta = np.asarray(problem.corridor.eta_s, dtype=np.float64)
    dist = np.asarray(problem.corridor.distance_m, dtype=np.float64)
    out: list[str] = []
    for i, j in zip(switch_at[:-1].tolist(), switch_at[1:].tolist(), strict=True):
        short = eta[j] - eta[i] < c.min_dwell_s - _EPS or dist[j] - dist[i] < c.min_dwell_m - _EPS
        forced = not problem.allowed[j, a[i]]
        if short and not forced:
            out.append(
                f"min_dwell: switch at segment {j} comes {eta[j] - eta[i]:.1f} s / "
                f"{dist[j] - dist[i]:.0f} m after the switch at segment {i}"
            )
            if len(out) >= _MAX_REPORTED:
                break
    if switch_at.size and len(out) < _MAX_REPORTED:
        # the arrival counts as the next switch: the last network entered must dwell too
        i = int(switch_at[-1])
        end_s = float(eta[-1] + problem.corridor.duration_s[-1])
        end_m = float(dist[-1] + problem.corridor.length_m[-1])
        short = end_s - eta[i] < c.min_dwell_s - _EPS or end_m - dist[i] < c.min_dwell_m - _EPS
        forced = not problem.allowed[i, a[i - 1]]
        leaves = not problem.allowed[i:, a[i]].all()
        if short and not forced and not leaves:
            out.append(
                f"min_dwell: switch at segment {i} comes {end_s - eta[i]:.1f} s / "
                f"{end_m - dist[i]:.0f} m before the end of the route"
            )
    return out
