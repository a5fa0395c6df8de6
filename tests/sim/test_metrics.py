"""Metrics on a hand-made drive: counts, avoidable drops, ping-pong, outages, aggregation."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from commap.errors import InvalidInputError
from commap.networks import Network, NetworkKind, SwitchKind
from commap.radio.link import AppProfile
from commap.sim.drive import DriveLog, Event
from commap.sim.metrics import (
    SUMMARY_COLUMNS,
    aggregate,
    ci95_halfwidth,
    network_changes,
    outage_durations_s,
    ping_pong_count,
    run_metrics,
)
from commap.sim.truth import TruthField

NETS = (
    Network(id="a", kind=NetworkKind.TERRESTRIAL, operator="a", technology="lte", latency_ms=30),
    Network(id="b", kind=NetworkKind.TERRESTRIAL, operator="b", technology="lte", latency_ms=30),
    Network(id="s", kind=NetworkKind.LEO, operator="s", technology="leo", latency_ms=40),
)
APP = AppProfile("test", max_latency_ms=1000.0, data_rate_mbps=8.0)  # 1 MB/s


def ev(kind: str, step: int, source: int, target: int, avoidable: bool = False) -> Event:
    return Event(
        kind=kind,
        step=step,
        t_s=step * 0.1,
        distance_m=step * 2.0,
        source=source,  # type: ignore[arg-type]
        target=target,
        switch_kind=SwitchKind.NONE,
        avoidable=avoidable,
    )


def hand_made() -> tuple[DriveLog, TruthField]:
    """100 s at 20 m/s: a -> b (t=10 s), b -> a (t=10.8 s: ping-pong), RLF on a at 30 s
    (avoidable), recovery on s after 2 s, HOF s -> b at 60 s (unavoidable), recovery on s."""
    n = 1000
    serving = np.zeros(n, dtype=np.int64)
    serving[100:108] = 1
    serving[300:320] = -1
    serving[320:] = 2
    serving[600:605] = -1
    outage = np.zeros(n)
    outage[300:320] = 0.1
    outage[600:605] = 0.1
    outage[100] = 0.05
    events = [
        ev("handover", 100, 0, 1),
        ev("handover", 108, 1, 0),
        ev("rlf", 300, 0, 0, avoidable=True),
        ev("recovery", 300, 0, 2),
        ev("hof", 600, 2, 1, avoidable=False),
        ev("recovery", 600, 2, 2),
    ]
    log = DriveLog("p", tuple(n.id for n in NETS), 0.1, serving, outage, events)
    truth = TruthField(
        ("a", "b", "s"),
        0.1,
        np.arange(n) * 0.1,
        np.arange(n) * 2.0,
        np.arange(n) // 25,
        np.zeros((n, 3)),
        np.zeros((n, 3)),
        np.zeros((n, 3)),
        np.zeros((n, 3)),
        0,
    )
    return log, truth


def test_run_metrics_on_a_hand_made_drive() -> None:
    log, truth = hand_made()
    row = run_metrics(log, truth, NETS, app=APP, route="r", seed=4)
    assert (row["policy"], row["route"], row["seed"]) == ("p", "r", 4)
    assert row["duration_s"] == pytest.approx(100.0)
    assert row["distance_km"] == pytest.approx(1.998)
    assert (row["rlf"], row["hof"], row["drops"]) == (1, 1, 2)
    assert (row["avoidable_drops"], row["unavoidable_drops"]) == (1, 1)
    # two switches, one failed attempt, one recovery onto another network
    assert row["handovers"] == 4
    assert row["handovers_inter_operator"] == 2  # a -> b -> a
    assert row["handovers_terrestrial_leo"] == 2  # a -> s (recovery), s -> b (failed)
    assert (row["ping_pong_1s"], row["ping_pong_2s"], row["ping_pong_5s"]) == (1, 1, 1)
    assert row["outage_s"] == pytest.approx(2.55)
    assert row["longest_outage_s"] == pytest.approx(2.0)
    # gaps of 0.05, 2 and 0.5 s: the application notices those as long as its tolerance
    assert row["loss_events"] == 1  # tolerates 1 s
    strict = dataclasses.replace(APP, tolerated_gap_s=0.1)
    assert run_metrics(log, truth, NETS, app=strict)["loss_events"] == 2
    # on the satellite from step 320 with 5 steps out: 67.5 s at 1 MB/s
    assert row["satellite_mb"] == pytest.approx(67.5)
    assert row["time_s_b"] == pytest.approx(0.75)
    assert row["time_s_a"] + row["time_s_b"] + row["time_s_s"] + row["time_s_none"] == (
        pytest.approx(100.0)
    )


def test_ping_pong_windows() -> None:
    changes = [(0.0, 0, 1), (1.5, 1, 0), (10.0, 0, 1), (14.0, 1, 0), (20.0, 0, 2)]
    assert ping_pong_count(changes, 1.0) == 0
    assert ping_pong_count(changes, 2.0) == 1
    assert ping_pong_count(changes, 5.0) == 2
    assert ping_pong_count([(0.0, 0, 1), (0.5, 1, 2)], 5.0) == 0  # not a return
    log, _ = hand_made()
    assert network_changes(log) == [(10.0, 0, 1), (10.8, 1, 0), (30.0, 0, 2)]


def test_outage_durations() -> None:
    assert outage_durations_s(np.array([0.1, 0.0, 0.1, 0.1, 0.05, 0.0])).round(3).tolist() == [
        0.1,
        0.25,
    ]


def test_ci95() -> None:
    assert math.isnan(ci95_halfwidth([]))
    assert ci95_halfwidth([2.0, 2.0, 2.0]) == 0.0
    # t(0.975, 9) = 2.262
    x = np.arange(10.0)
    assert ci95_halfwidth(x) == pytest.approx(2.262 * x.std(ddof=1) / np.sqrt(10), rel=1e-3)


def runs_table() -> pd.DataFrame:
    rows = []
    for seed in range(5):
        for policy, drops in (("a3_default", 6 + seed), ("commap", 2 + seed % 2)):
            for route in ("r1", "r2"):
                rows.append(
                    {
                        "policy": policy,
                        "route": route,
                        "seed": seed,
                        "duration_s": 1800.0,
                        "distance_km": 25.0,
                        "rlf": drops,
                        "hof": 0,
                        "drops": drops,
                        "avoidable_rlf": drops,
                        "avoidable_hof": 0,
                        "avoidable_drops": drops,
                        "unavoidable_drops": 0,
                        "handovers": 10,
                        "loss_events": drops,
                        "handovers_inter_operator": 10,
                        "ping_pong_1s": 1,
                        "ping_pong_2s": 2,
                        "ping_pong_5s": 3,
                        "outage_s": 30.0,
                        "longest_outage_s": 10.0 + seed,
                        "satellite_mb": 1.0,
                        "time_s_a": 1770.0,
                        "time_s_none": 30.0,
                    }
                )
    return pd.DataFrame(rows)


def test_aggregate_rates_intervals_and_paired_comparison() -> None:
    summary = aggregate(runs_table()).set_index("policy")
    assert list(aggregate(runs_table()).columns[: len(SUMMARY_COLUMNS)]) == list(SUMMARY_COLUMNS)
    a3, cm = summary.loc["a3_default"], summary.loc["commap"]
    # a seed drives both routes: 1 hour, 50 km; A3 drops 2 x (6..10) per hour
    assert a3["avoidable_drops_per_hour"] == pytest.approx(16.0)
    assert a3["avoidable_drops_per_100km"] == pytest.approx(32.0)
    assert a3["handovers_per_hour"] == pytest.approx(20.0)
    assert a3["ping_pong_ratio"] == pytest.approx(0.1)
    assert a3["ping_pong_ratio_5s"] == pytest.approx(0.3)
    assert a3["longest_outage_s"] == pytest.approx(12.0)  # max over routes, mean over seeds
    assert a3["satellite_mb"] == pytest.approx(2.0)
    # service loss: 2 x 30 s without service per hour, in as many gaps as drops
    assert a3["service_loss_s_per_hour"] == pytest.approx(60.0)
    assert a3["loss_events_per_hour"] == pytest.approx(16.0)
    assert a3["switches_per_hour"] == a3["handovers_per_hour"]
    assert a3["avoidable_drops_per_hour_ci95"] == pytest.approx(
        ci95_halfwidth(2.0 * (6 + np.arange(5)))
    )
    assert cm["avoidable_drops_per_hour"] == pytest.approx(4.8)
    assert cm["avoidable_vs_a3_pct"] == pytest.approx(-70.0)
    assert cm["avoidable_diff_per_hour"] == pytest.approx(-11.2)
    assert cm["avoidable_paired_p"] < 0.1
    assert a3["avoidable_paired_p"] == 1.0
    assert cm["seeds"] == 5


def test_bad_inputs() -> None:
    with pytest.raises(InvalidInputError, match="no runs"):
        aggregate(pd.DataFrame())
    log, _truth = hand_made()
    short = TruthField(
        ("a", "b", "s"),
        0.1,
        np.zeros(3),
        np.zeros(3),
        np.zeros(3, int),
        *(np.zeros((3, 3)),) * 4,
        0,
    )
    with pytest.raises(InvalidInputError, match="length"):
        run_metrics(log, short, NETS, app=APP)
