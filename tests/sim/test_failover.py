"""Map-free baselines on small hand-made drives: what each rule does second by second, and what
it costs on each vehicle set-up."""

from __future__ import annotations

import numpy as np
import pytest

from commap.errors import InvalidInputError
from commap.networks import Network, NetworkKind
from commap.radio.vehicle import vehicle_setup
from commap.sim.failover import (
    FAST_PROBES,
    PEPLINK_PROBES,
    Choice,
    HysteresisParams,
    a3_failover_policy,
    best_pair_policy,
    bonding_policy,
    greedy_policy,
    hot_standby_policy,
    loss_breakdown,
    planned_failover_policy,
    probe_failover_policy,
    score_choice,
)
from commap.sim.seconds import DriveSeconds

NETS = [
    Network(id=i, kind=NetworkKind.TERRESTRIAL, operator=i, technology="lte", latency_ms=30.0)
    for i in ("a", "b", "c")
]
ONE, TWO, PAIR = (vehicle_setup(v) for v in ("single_modem", "dual_modem", "bonded"))


def drive(outage: np.ndarray, rsrp: np.ndarray | None = None) -> DriveSeconds:
    """A one-leg drive: ``outage`` (n, k); RSRP -90 dBm for a, -95 for b, -100 for c."""
    n, k = outage.shape
    rank = np.tile(np.array([-90.0, -95.0, -100.0][:k]), (n, 1)) if rsrp is None else rsrp
    z = np.zeros(n)
    return DriveSeconds(
        tuple("abc"[:k]), np.arange(float(n)), z, z, np.zeros(n, np.int64), outage,
        np.where(outage, -np.inf, rank),
    )  # fmt: skip


def outage_of_a(n: int, start: int, stop: int, k: int = 3) -> np.ndarray:
    out = np.zeros((n, k), dtype=bool)
    out[start:stop, 0] = True
    return out


def test_probe_failover_declares_down_only_after_three_failed_probes() -> None:
    s = drive(outage_of_a(80, 10, 60))
    serving = probe_failover_policy(s, NETS, ONE, PEPLINK_PROBES).serving
    # probes at 10, 15, 20 fail; the third times out at 25 s: the router leaves a at 25
    assert serving[:25].tolist() == [0] * 25 and serving[25] == 1
    assert (serving[25:] == 1).all()  # one modem: no fail-back (a cannot be probed from b)
    score = score_choice(s, probe_failover_policy(s, NETS, ONE), NETS, ONE, policy="p")
    assert score.switches == 1 and score.interruption_s == 10  # detach / attach on one modem
    assert score.outage_s == 15 + 10  # 15 s unnoticed on a, 10 s re-attaching
    # the tuned probes: every second, down after 2 (timeout 1 s) -> leaves a at 12 s
    fast = probe_failover_policy(s, NETS, ONE, FAST_PROBES).serving
    assert fast[:12].tolist() == [0] * 12 and fast[12] == 1


def test_probe_failover_ignores_an_outage_shorter_than_its_probes() -> None:
    s = drive(outage_of_a(60, 10, 18))  # 8 s: probes at 10 and 15 fail, 20 succeeds
    assert (probe_failover_policy(s, NETS, ONE).serving == 0).all()
    assert (probe_failover_policy(s, NETS, TWO).serving == 0).all()


def test_probe_failover_on_two_modems_fails_back_to_the_primary() -> None:
    s = drive(outage_of_a(120, 10, 40))
    serving = probe_failover_policy(s, NETS, TWO).serving
    assert serving[24] == 0 and serving[25] == 1  # down after 3 failures, as on one modem
    # a answers again from 40 s: probes at 40, 45, 50 succeed -> back on a at 50 s
    assert serving[49] == 1 and serving[50] == 0 and (serving[50:] == 0).all()
    score = score_choice(s, probe_failover_policy(s, NETS, TWO), NETS, TWO, policy="p")
    assert score.switches == 2 and score.interruption_s == 2  # two route changes of 0.5 s


def test_hot_standby_switch_costs_the_dual_modem_route_change() -> None:
    s = drive(outage_of_a(60, 20, 30))
    choice = hot_standby_policy(s, NETS, TWO)
    assert choice.serving[19] == 0 and (choice.serving[20:] == 1).all()  # sticky on b
    hot = score_choice(s, choice, NETS, TWO, policy="hot_standby")
    assert hot.switches == 1 and hot.interruption_s == 1 and hot.outage_s == 1
    # the same failover on one modem is a detach / attach
    one = score_choice(s, a3_failover_policy(s, NETS, ONE), NETS, ONE, policy="a3")
    assert one.switches == 1 and one.outage_s == 10
    with pytest.raises(InvalidInputError, match="two modems"):
        hot_standby_policy(s, NETS, ONE)


def test_a_standby_is_registered_only_after_an_attach() -> None:
    s = drive(outage_of_a(40, 5, 40, k=2))
    # at 5 s the second modem has aimed at b for 5 s only: the change costs an attach
    early = score_choice(s, hot_standby_policy(s, NETS, TWO), NETS, TWO, policy="x")
    assert early.interruption_s == 10
    late = drive(outage_of_a(40, 12, 40, k=2))
    assert score_choice(late, hot_standby_policy(late, NETS, TWO), NETS, TWO,
                        policy="x").interruption_s == 1  # fmt: skip


def test_bonding_loses_service_only_when_both_links_are_out() -> None:
    out = np.zeros((30, 3), dtype=bool)
    out[5:15, 0] = True  # a out 10 s
    out[10:20, 1] = True  # b out 10 s, 5 of them with a
    out[:, 2] = True  # c never works
    s = drive(out, rsrp=np.tile([-90.0, -95.0, -100.0], (30, 1)))
    choice = bonding_policy(s)
    assert choice.bonded and (choice.serving == [0, 1]).all()
    score = score_choice(s, choice, NETS, PAIR, policy="bonding")
    assert score.outage_s == 5 and score.switches == 0 and score.loss_events == 1
    assert (best_pair_policy(s).serving == [0, 1]).all()
    # changing a member re-attaches that modem; the other keeps the service meanwhile
    swap = choice.serving.copy()
    swap[3:, 1] = 2  # b -> c at 3 s: c is dead, so only a carries 3..29
    moved = score_choice(s, Choice(swap), NETS, PAIR, policy="swap")
    assert moved.switches == 1 and moved.outage_s == 10  # a's own 10 s outage
    with pytest.raises(InvalidInputError, match="pair on a bonded set-up"):
        score_choice(s, np.zeros(30, np.int64), NETS, PAIR, policy="bad")


def test_greedy_changes_after_the_lead_holds_for_the_time_to_trigger() -> None:
    rsrp = np.tile([-90.0, -95.0, -120.0], (30, 1))
    rsrp[10:, 1] = -86.0  # b leads a by 4 dB from 10 s
    s = drive(np.zeros((30, 3), dtype=bool), rsrp=rsrp)
    serving = greedy_policy(s, NETS, ONE, HysteresisParams(hysteresis_db=3.0, ttt_s=3)).serving
    assert serving[11] == 0 and serving[12] == 1  # led at 10, 11, 12: triggers at 12 s
    lazy = greedy_policy(s, NETS, ONE, HysteresisParams(hysteresis_db=5.0, ttt_s=1)).serving
    assert (lazy == 0).all()  # a 4 dB lead never beats a 5 dB hysteresis


def test_loss_events_count_runs_at_least_the_tolerance() -> None:
    out = np.zeros((30, 2), dtype=bool)
    out[[2, 3, 10, 20, 21, 22, 23], 0] = True  # runs of 2, 1 and 4 s
    s = drive(out)
    always_a = np.zeros(30, np.int64)
    one = score_choice(s, always_a, NETS, ONE, policy="a")
    assert (one.outage_s, one.loss_events, one.longest_loss_s) == (7, 3, 4)
    assert score_choice(s, always_a, NETS, ONE, policy="a", tolerance_s=2).loss_events == 2
    assert one.service_loss_s_per_hour == pytest.approx(7 * 3600 / 30)


def test_a_configured_priority_names_the_primary_and_the_standby() -> None:
    s = drive(outage_of_a(60, 20, 30))
    # without a priority the best signal (a) is primary; with one, b first and c standby
    assert hot_standby_policy(s, NETS, TWO).serving[0] == 0
    choice = hot_standby_policy(s, NETS, TWO, priority=[1, 2, 0])
    assert (choice.serving == 1).all() and (choice.standby == 2).all()
    assert (bonding_policy(s, priority=[2, 0, 1]).serving == [2, 0]).all()
    assert probe_failover_policy(s, NETS, ONE, priority=[1, 0, 2]).serving[0] == 1
    with pytest.raises(InvalidInputError, match="every network column"):
        a3_failover_policy(s, NETS, ONE, priority=[0, 0, 1])


def test_a3_failover_on_two_modems_moves_to_the_kept_standby() -> None:
    rsrp = np.tile([-90.0, -95.0, -100.0], (60, 1))
    rsrp[15:, 2] = -93.0  # c edges past b: the standby modem stays on b (no re-attach)
    s = drive(outage_of_a(60, 20, 30), rsrp=rsrp)
    choice = a3_failover_policy(s, NETS, TWO)
    assert (choice.standby[:20] == 1).all() and choice.serving[20] == 1
    score = score_choice(s, choice, NETS, TWO, policy="a3_failover")
    assert score.switches == 1 and score.outage_s == 1  # a route change, not an attach
    assert score_choice(s, a3_failover_policy(s, NETS, ONE), NETS, ONE, policy="a3").outage_s == 10


def test_a_plan_in_closed_loop_leaves_a_failed_link_for_the_network_the_map_ranks_next() -> None:
    # the plan says a throughout; a fails for 50 s; the map ranks c before b (b fails too)
    out = outage_of_a(120, 40, 90)
    out[40:90, 1] = True
    s = drive(out)
    plan = np.zeros(120, dtype=np.int64)
    order = np.tile(np.array([0, 2, 1]), (120, 1))
    blind = score_choice(s, plan, NETS, TWO, policy="open loop")
    closed = planned_failover_policy(s, NETS, TWO, plan, order)
    assert (closed.standby[:40] == 2).all()  # the standby registers on c ahead
    assert closed.serving[40] == 2 and (closed.serving[40:] == 2).all()  # then stays there
    two = score_choice(s, closed, NETS, TWO, policy="closed loop")
    assert two.outage_s == 1 < blind.outage_s == 50  # a route change to the registered c
    # one modem: the link is left after 5 outage seconds, and c costs an attach, still a gain
    one_modem = planned_failover_policy(s, NETS, ONE, plan, order)
    assert (one_modem.serving[:44] == 0).all() and (one_modem.serving[44:] == 2).all()
    one = score_choice(s, one_modem, NETS, ONE, policy="closed loop")
    assert one.outage_s == 4 + 10 < blind.outage_s
    # the health probes instead find the failure late
    probes = planned_failover_policy(s, NETS, ONE, plan, order, leave_after_s=None)
    late = score_choice(s, probes, NETS, ONE, policy="probes")
    assert late.outage_s == 15 + 10 > one.outage_s


def test_one_modem_leaves_its_plan_only_for_an_outage_of_five_seconds() -> None:
    # a blinks out for 4 s (a real drive's short outage): the modem rides it through; then a
    # is out for 20 s with b out too: the modem goes to c, the first usable network of the map
    out = outage_of_a(80, 10, 14)
    out[40:60, 0] = out[40:60, 1] = True
    s = drive(out)
    plan, order = np.zeros(80, np.int64), np.tile(np.array([0, 1, 2]), (80, 1))
    closed = planned_failover_policy(s, NETS, ONE, plan, order)
    assert (closed.serving[:44] == 0).all() and (closed.serving[44:] == 2).all()
    assert score_choice(s, closed, NETS, ONE, policy="x").switches == 1
    # with nothing usable the modem stays
    dead = drive(np.ones((20, 3), dtype=bool))
    stay = planned_failover_policy(dead, NETS, ONE, np.zeros(20, np.int64), order[:20])
    assert (stay.serving == 0).all()


def test_one_modem_rides_out_an_outage_its_map_foresaw_and_leaves_an_unforeseen_one() -> None:
    # a is out for 9 s where the map gave it P(outage) 0.9: the plan priced that outage, and
    # riding it out costs its 9 s, where leaving after 5 s costs 4 s and a 10 s attach
    s = drive(outage_of_a(60, 20, 29))
    plan, order = np.zeros(60, np.int64), np.tile(np.array([0, 1, 2]), (60, 1))
    foreseen = np.zeros((60, 3))
    foreseen[15:35, 0] = 0.9
    ride = planned_failover_policy(s, NETS, ONE, plan, order, foreseen=foreseen)
    assert (ride.serving == 0).all()
    knowing = score_choice(s, ride, NETS, ONE, policy="map")
    assert (knowing.outage_s, knowing.switches) == (9, 0)
    # an outage the map did not foresee (or no map) is left after 5 s, as before
    for unforeseen in (np.zeros((60, 3)), None):
        fled = planned_failover_policy(s, NETS, ONE, plan, order, foreseen=unforeseen)
        assert (fled.serving[:24] == 0).all() and (fled.serving[24:] == 1).all()
        lost = score_choice(s, fled, NETS, ONE, policy="no map")
        assert (lost.outage_s, lost.switches) == (4 + 10, 1)
    with pytest.raises(InvalidInputError, match="per second and network"):
        planned_failover_policy(s, NETS, ONE, plan, order, foreseen=foreseen[:10])


def test_one_modem_leaves_at_once_an_outage_its_map_expects_to_outlast_an_attach() -> None:
    # a is out for 40 s where the map gave it P(outage) 0.95 (a tunnel): the map expects the
    # outage to go on for longer than the 10 s attach, so the modem leaves at its first second
    s = drive(outage_of_a(80, 20, 60))
    plan, order = np.zeros(80, np.int64), np.tile(np.array([0, 1, 2]), (80, 1))
    foreseen = np.zeros((80, 3))
    foreseen[20:60, 0] = 0.95
    early = planned_failover_policy(s, NETS, ONE, plan, order, foreseen=foreseen)
    assert (early.serving[:20] == 0).all() and (early.serving[20:] == 1).all()
    assert score_choice(s, early, NETS, ONE, policy="map").outage_s == 10
    late = planned_failover_policy(s, NETS, ONE, plan, order)  # no map: after 5 s
    assert score_choice(s, late, NETS, ONE, policy="no map").outage_s == 4 + 10


def test_two_modems_re_register_a_standby_the_map_expects_to_stay_out() -> None:
    # the plan holds a; the map ranks b as the standby, but b goes out at 15 s where the map
    # expects a long outage of b (P 0.95): the second modem registers on c instead, which is
    # ready when a fails at 30 s, and the failover is a route change, not a lost outage
    out = outage_of_a(80, 30, 60)
    out[15:60, 1] = True
    s = drive(out)
    plan, order = np.zeros(80, np.int64), np.tile(np.array([0, 1, 2]), (80, 1))
    foreseen = np.zeros((80, 3))
    foreseen[15:60, :2] = 0.95
    closed = planned_failover_policy(s, NETS, TWO, plan, order, foreseen=foreseen)
    assert (closed.standby[:15] == 1).all() and (closed.standby[15:30] == 2).all()
    assert (closed.serving[:30] == 0).all() and (closed.serving[30:] == 2).all()
    assert score_choice(s, closed, NETS, TWO, policy="map").outage_s == 1
    # an outage of b the map did not foresee keeps b (a real drive's outages are short)
    kept = planned_failover_policy(s, NETS, TWO, plan, order, foreseen=np.zeros((80, 3)))
    assert (kept.standby[:30] == 1).all() and (kept.serving == 0).all()
    assert score_choice(s, kept, NETS, TWO, policy="no map").outage_s == 30


def test_two_modems_attach_where_the_map_expects_the_link_and_the_standby_out() -> None:
    # a and its standby b fail together at 20 s, for 40 s, where the map expects both out:
    # with no standby to take over, the modem attaches to c at once (a 10 s attach) rather
    # than sit out the 40 s; without the map it waits on a
    out = outage_of_a(80, 20, 60)
    out[20:60, 1] = True
    s = drive(out)
    plan, order = np.zeros(80, np.int64), np.tile(np.array([0, 1, 2]), (80, 1))
    foreseen = np.zeros((80, 3))
    foreseen[20:60, :2] = 0.95
    closed = planned_failover_policy(s, NETS, TWO, plan, order, foreseen=foreseen)
    assert (closed.serving[:20] == 0).all() and (closed.serving[20:] == 2).all()
    assert score_choice(s, closed, NETS, TWO, policy="map").outage_s == 10
    blind = planned_failover_policy(s, NETS, TWO, plan, order)
    assert (blind.serving == 0).all()
    assert score_choice(s, blind, NETS, TWO, policy="no map").outage_s == 40


def test_a_planned_switch_waits_while_the_standby_sees_its_target_down() -> None:
    out = np.zeros((60, 3), dtype=bool)
    out[30:35, 1] = True  # the planned target b is down when the switch is due
    s = drive(out)
    plan = np.r_[np.zeros(30, np.int64), np.ones(30, np.int64)]
    order = np.tile(np.array([1, 0, 2]), (60, 1))
    closed = planned_failover_policy(s, NETS, TWO, plan, order)
    assert (closed.serving[:35] == 0).all()  # the switch waits while the target is down...
    assert (closed.serving[35:] == 1).all()  # ...and is made once it is up
    made = score_choice(s, closed, NETS, TWO, policy="x")
    assert made.outage_s == made.interruption_s == 1  # to the registered b: a route change


def test_loss_breakdown_says_which_lost_seconds_a_failover_and_a_planned_switch_cost() -> None:
    # a fails at 20-24 and b at 22-23 (both out at 22-23; c is up); the plan switches to b at 40
    out = outage_of_a(60, 20, 25)
    out[22:24, 1] = True
    s = drive(out)
    plan = np.r_[np.zeros(40, np.int64), np.ones(20, np.int64)]
    order = np.tile(np.array([0, 1, 2]), (60, 1))
    closed = planned_failover_policy(s, NETS, TWO, plan, order)
    split = loss_breakdown(s, closed, NETS, TWO, policy="commap")
    # the failover to the registered b at 20 costs the second a was out anyway; b is out at
    # 22-23 with a out too and c up, but c is not registered; the planned switch at 40 is a
    # route change off a working link
    assert (split.reactive_switch_s, split.other_fine_s, split.all_out_s) == (1, 2, 0)
    assert split.proactive_switch_s == 0  # already on b when the plan switches to it
    assert split.lost_s == score_choice(s, closed, NETS, TWO, policy="commap").outage_s == 3
    blind = loss_breakdown(s, Choice(plan, np.where(plan == 0, 1, 0)), NETS, TWO, policy="plan")
    assert (blind.proactive_switch_s, blind.standby_fine_s, blind.other_fine_s) == (1, 3, 2)
    per_hour = blind.per_hour()
    assert per_hour["lost_s"] == pytest.approx(3600.0 * 6 / 60)
    # seconds counted where a mask says (e.g. the map's unknown stretches): the two halves add up
    first = np.arange(60) < 30
    early = loss_breakdown(s, closed, NETS, TWO, policy="commap", within=first)
    late = loss_breakdown(s, closed, NETS, TWO, policy="commap", within=~first)
    assert (early.lost_s, late.lost_s) == (3, 0) and early.scored_s == 60
    with pytest.raises(InvalidInputError, match="every second"):
        loss_breakdown(s, closed, NETS, TWO, policy="commap", within=first[:10])


def test_loss_breakdown_counts_a_late_probe_failover_as_reactive_on_one_modem() -> None:
    # the probes declare a down at 20 s, when its outage (5-19 s) is over: still a failover
    s = drive(outage_of_a(60, 5, 20))
    plan, order = np.zeros(60, np.int64), np.tile(np.array([0, 1, 2]), (60, 1))
    closed = planned_failover_policy(s, NETS, ONE, plan, order, leave_after_s=None)
    split = loss_breakdown(s, closed, NETS, ONE, policy="commap")
    assert split.reactive_switch_s == 10 and split.proactive_switch_s == 0
    assert closed.serving[19] == 0 and closed.serving[20] == 1
    assert split.other_fine_s == 15  # the outage itself, b and c up all along
    assert loss_breakdown(s, closed, NETS, ONE, policy="x", detect_s=0).proactive_switch_s == 10
    with pytest.raises(InvalidInputError, match="bonded"):
        loss_breakdown(s, bonding_policy(s), NETS, PAIR, policy="bonding")
