"""Drive simulator: RLF timing (N310/T310/N311), handover execution and failure, recovery."""

from __future__ import annotations

import numpy as np
import pytest

from commap.errors import InvalidInputError
from commap.networks import Network, NetworkKind, SwitchKind
from commap.radio.link import LinkModel
from commap.sim.a3 import A3Params
from commap.sim.drive import Measurements, SimConfig, next_true, simulate
from commap.sim.policies import (
    A3Policy,
    FallbackPlanPolicy,
    GreedyPolicy,
    PlanPolicy,
    StickyPolicy,
)
from commap.sim.truth import TruthField

STEP_S = 0.1
NETS = (
    Network(
        id="x-lte", kind=NetworkKind.TERRESTRIAL, operator="x", technology="lte", latency_ms=30
    ),
    Network(id="x-nr", kind=NetworkKind.TERRESTRIAL, operator="x", technology="nr", latency_ms=20),
    Network(
        id="y-lte", kind=NetworkKind.TERRESTRIAL, operator="y", technology="lte", latency_ms=40
    ),
    Network(
        id="sat",
        kind=NetworkKind.LEO,
        operator="s",
        technology="leo",
        latency_ms=40,
        min_elevation_deg=25.0,
    ),
)
DEAD = -30.0


def field(sinr: np.ndarray, rsrp: np.ndarray | None = None) -> TruthField:
    """A hand-made truth: 2 m per step (20 m/s), 50 m segments, no fading."""
    sinr = np.asarray(sinr, dtype=np.float64)
    n_steps, n = sinr.shape
    if rsrp is None:
        rsrp = np.where(sinr <= DEAD, -160.0, sinr - 90.0)
    rsrp = rsrp.copy()
    rsrp[:, 3:] = np.nan
    return TruthField(
        network_ids=tuple(net.id for net in NETS[:n]),
        step_s=STEP_S,
        t_s=np.arange(n_steps) * STEP_S,
        distance_m=np.arange(n_steps) * 2.0,
        segment=np.arange(n_steps) // 25,
        rsrp_dbm=rsrp,
        sinr_db=sinr,
        elevation_deg=np.full((n_steps, n), np.nan),
        fading_db=np.zeros((n_steps, n)),
        seed=0,
    )


def columns(*cols: np.ndarray) -> np.ndarray:
    return np.stack(cols, axis=1)


def drive(truth: TruthField, policy, **config):  # type: ignore[no-untyped-def]
    nets = NETS[: len(truth.network_ids)]
    return simulate(truth, policy, nets, config=SimConfig(**config))


def link_drop(n_steps: int = 300, at: int = 100, until: int | None = None) -> np.ndarray:
    sinr = np.full(n_steps, 10.0)
    sinr[at:until] = -20.0
    return sinr


def test_rlf_fires_t310_after_n310_out_of_sync_indications() -> None:
    truth = field(columns(link_drop()))
    # L1 (200 ms) first reads below Qout at step 101; 10 ms indications reach N310 = 6 after
    # 60 ms, T310 = 1 s expires 1.06 s later, inside step 111
    log = drive(truth, StickyPolicy())
    rlf = [e for e in log.events if e.kind == "rlf"]
    assert rlf[0].step == 111
    # one indication per 100 ms step: N310 after 6 steps (0.6 s), then T310: step 116
    log = drive(truth, StickyPolicy(), indication_period_s=0.1)
    assert next(e for e in log.events if e.kind == "rlf").step == 116
    # a longer T310 delays the failure by exactly the difference
    log = drive(truth, StickyPolicy(), t310_s=2.0)
    assert next(e for e in log.events if e.kind == "rlf").step == 121


def test_n311_in_sync_indications_stop_t310() -> None:
    short = drive(field(columns(link_drop(at=100, until=108))), StickyPolicy())
    assert short.count("rlf") == 0  # back in sync 0.8 s into the dip: T310 stopped
    assert short.outage_s[101:108].sum() == pytest.approx(0.7)  # below Qout: no service
    long = drive(field(columns(link_drop(at=100, until=115))), StickyPolicy())
    assert long.count("rlf") == 1


def test_recovery_after_rlf_reestablishes_on_the_same_operator() -> None:
    sinr = link_drop(n_steps=400, at=100, until=200)
    log = drive(field(columns(sinr)), StickyPolicy(), reestablishment_s=1.0)
    kinds = [e.kind for e in log.events]
    assert kinds == ["rlf", "recovery"]
    recovery = log.events[1]
    # back at step 200; the 200 ms L1 average first clears Qin one step later
    assert recovery.step == 201
    assert recovery.target == 0 and recovery.interruption_s == 1.0
    assert (log.serving[201:211] == -1).all() and log.serving[211] == 0
    assert not log.events[0].avoidable  # nothing was usable: an unavoidable drop


def test_a3_changes_operator_only_after_a_failure() -> None:
    home = link_drop(n_steps=400, at=100)
    other = np.full(400, 20.0)  # the other operator is excellent all along
    log = drive(field(columns(home, np.full(400, DEAD), other)), A3Policy())
    kinds = [(e.kind, e.target) for e in log.events]
    assert kinds == [("rlf", 0), ("recovery", 2)]
    rlf, recovery = log.events
    assert rlf.avoidable  # y-lte was usable: the drop was avoidable
    # different operators without a handover agreement: re-registration from the link model
    assert recovery.interruption_s == LinkModel().reregistration_s == 10.0
    assert recovery.switch_kind is SwitchKind.INTER_OPERATOR


def test_a3_hands_over_within_the_operator_with_hysteresis_and_ttt() -> None:
    t = np.arange(400)
    lte = np.full(400, 10.0)
    nr = np.full(400, 10.0)
    rsrp = columns(-80.0 - 0.1 * t, -100.0 + 0.1 * t)  # they cross at step 100
    log = drive(field(columns(lte, nr), rsrp=rsrp), A3Policy(A3Params()))
    handovers = [e for e in log.events if e.kind == "handover"]
    assert len(handovers) == 1 and handovers[0].target == 1
    assert handovers[0].switch_kind is SwitchKind.INTRA_OPERATOR
    # 3 dB at 0.2 dB/step: 15 steps after the crossing, then the L3 lag and 256 ms TTT
    assert 118 <= handovers[0].step <= 128
    zero = drive(
        field(columns(lte, nr), rsrp=rsrp), A3Policy(A3Params(hysteresis_db=0.0, ttt_s=0.0))
    )
    assert next(e for e in zero.events if e.kind == "handover").step < handovers[0].step - 15


def test_planned_switch_into_a_dead_target_is_a_handover_failure() -> None:
    a = np.full(300, 10.0)
    c = np.full(300, 10.0)
    c[125:175] = DEAD  # dead exactly where the plan switches (segment 5 = step 125)
    plan = np.array([0] * 5 + [2] * 7)
    log = drive(field(columns(a, np.full(300, DEAD), c)), PlanPolicy(plan, name="commap"))
    hof = [e for e in log.events if e.kind == "hof"]
    assert len(hof) == 1 and hof[0].step == 125 and hof[0].source == 0 and hof[0].target == 2
    assert hof[0].avoidable
    recovery = next(e for e in log.events if e.kind == "recovery")
    assert recovery.target == 0  # the planned network is dead: back to the best suitable one


def test_fallback_leaves_a_failing_link_and_holds_a_switch_into_a_dead_target() -> None:
    a = link_drop(n_steps=300, at=100)  # the planned network dies (a missing site)
    c = np.full(300, 10.0)
    plan = np.zeros(12, dtype=int)
    open_loop = drive(field(columns(a, np.full(300, DEAD), c)), PlanPolicy(plan))
    assert open_loop.count("rlf") == 1
    closed = drive(field(columns(a, np.full(300, DEAD), c)), FallbackPlanPolicy(plan))
    assert closed.count("rlf") == 0 and closed.count("hof") == 0
    (switch,) = [e for e in closed.events if e.kind == "handover"]
    assert switch.target == 2 and 101 <= switch.step <= 106  # weak for 256 ms: leave
    # a planned switch into a target that measures dead waits until it is good
    c = np.full(300, 10.0)
    c[125:175] = DEAD
    plan = np.array([0] * 5 + [2] * 7)
    log = drive(field(columns(np.full(300, 10.0), np.full(300, DEAD), c)), FallbackPlanPolicy(plan))
    assert log.count("hof") == 0
    (switch,) = [e for e in log.events if e.kind == "handover"]
    assert switch.step == 175


def test_after_a_fallback_the_vehicle_stays_on_a_good_link_until_it_turns_weak() -> None:
    a = link_drop(n_steps=300, at=100, until=120)  # the planned network fades for 2 s
    b = link_drop(n_steps=300, at=220)  # the fallback network fades later
    plan = np.zeros(12, dtype=int)
    log = drive(field(columns(a, b)), FallbackPlanPolicy(plan))
    leave, back = [e for e in log.events if e.kind == "handover"]
    assert (leave.target, back.target) == (1, 0)
    # no return to the plan while the fallback link measures well: one switch each way, and
    # the way back only once the link the vehicle fell back to fades
    assert 101 <= leave.step <= 106 and 220 <= back.step <= 226
    assert log.count("rlf") == 0 and log.count("hof") == 0


def test_a_fade_shorter_than_the_switch_costs_is_ridden_out() -> None:
    # the planned network sags to -4 dB for 1.2 s (weak, still in sync: no service lost); the
    # satellite measures well until it is blocked later
    a = np.full(600, 10.0)
    a[100:112] = -4.0
    sat = np.full(600, 10.0)
    sat[300:] = -4.0
    dead = np.full(600, DEAD)
    plan = np.zeros(24, dtype=int)
    log = drive(field(columns(a, dead, dead, sat)), FallbackPlanPolicy(plan))
    # leaving for the satellite (0.5 s) and coming back (0.5 s) would cost more than the fade
    assert log.count("handover") == 0
    assert (log.serving == 0).all() and log.outage_s.sum() == 0.0
    # the rule without the time-to-trigger sized to the switch ping-pongs, and loses service
    rule = FallbackPlanPolicy(plan, weak_ttt_per_interruption=0.0)
    pingpong = drive(field(columns(a, dead, dead, sat)), rule)
    assert [e.target for e in pingpong.events if e.kind == "handover"] == [3, 0]
    assert pingpong.outage_s.sum() == pytest.approx(2 * LinkModel().terrestrial_leo_interruption_s)


def test_the_closed_loop_notes_why_it_switched() -> None:
    a = link_drop(n_steps=300, at=100, until=120)
    b = link_drop(n_steps=300, at=220)
    policy = FallbackPlanPolicy(np.zeros(12, dtype=int))
    drive(field(columns(a, b)), policy)
    assert policy.cause_counts() == {"planned": 0, "weak_link": 1, "return": 1, "recovery": 0}
    assert [(src, dst) for _, src, dst, _ in policy.switches] == [(0, 1), (1, 0)]


def test_interruption_times_come_from_the_link_model() -> None:
    a = np.full(300, 10.0)
    for target, interruption_s in (
        (1, LinkModel().intra_operator_interruption_s),
        (2, LinkModel().reregistration_s),
    ):
        plan = np.array([0] * 5 + [target] * 7)
        log = drive(field(columns(a, a, a)), PlanPolicy(plan, name="commap"))
        (ho,) = [e for e in log.events if e.kind == "handover"]
        assert ho.interruption_s == interruption_s
        assert log.outage_s.sum() == pytest.approx(interruption_s)


def test_greedy_follows_the_best_signal() -> None:
    t = np.arange(300)
    a = 10.0 + 5 * np.sin(t / 20.0)
    b = 10.0 - 5 * np.sin(t / 20.0)
    log = drive(field(columns(a, b)), GreedyPolicy())
    assert log.count("handover") >= 4
    best = np.argmax(Measurements(field(columns(a, b)), SimConfig()).l3_sinr_db, axis=1)
    served = log.serving >= 0
    assert (log.serving[served] == best[served]).mean() > 0.9


def test_measurements_treat_no_signal_as_unmeasurable() -> None:
    sinr = columns(np.r_[np.full(10, DEAD), np.full(10, 10.0)])
    m = Measurements(field(sinr), SimConfig())
    assert np.isnan(m.l1_sinr_db[:10, 0]).all()
    assert m.l1_sinr_db[10, 0] == 10.0  # a network that appears: its own sample, no ramp
    assert m.oos[:10, 0].all() and not m.suitable[:10, 0].any()


def test_skipping_idle_steps_gives_the_same_drive() -> None:
    rng = np.random.default_rng(3)
    sinr = np.cumsum(rng.normal(0, 1.5, (3000, 3)), axis=0) / 3 + 3.0
    truth = field(sinr)
    fast = drive(truth, A3Policy())

    # the same run with a policy that asks to be consulted at every step
    class EveryStep(A3Policy):
        def next_check(self, k: int, serving: int) -> int:
            return k

    slow = drive(truth, EveryStep())
    assert [(e.kind, e.step, e.target) for e in fast.events] == [
        (e.kind, e.step, e.target) for e in slow.events
    ]
    assert np.array_equal(fast.serving, slow.serving)


def test_next_true_and_bad_inputs() -> None:
    assert next_true(np.array([[False, True], [True, False]])).tolist() == [[1, 0], [1, 2], [2, 2]]
    with pytest.raises(InvalidInputError, match="n310"):
        SimConfig(n310=0)
    with pytest.raises(InvalidInputError, match="networks"):
        simulate(field(columns(np.zeros(5))), StickyPolicy(), NETS[1:2])
    with pytest.raises(InvalidInputError, match="segments"):
        drive(field(columns(np.zeros(100))), PlanPolicy(np.zeros(2, dtype=int)))
