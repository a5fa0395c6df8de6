"""Multi-network drives as truth: the Hamburg - Bremen extract, a map learned on 13 Sep, replayed
on 17 Sep (three operators' RSRP measured every second by three modems at once)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from commap.errors import InvalidInputError
from commap.geo.corridor import Route, route_from_polyline
from commap.map.build import build_map
from commap.map.comm_map import CommMap
from commap.networks import Network, NetworkKind
from commap.radio.link import LinkModel
from commap.radio.measurements import read_records
from commap.radio.vehicle import vehicle_setup
from commap.service.planning import PlanRequest, PlanResult, plan_route
from commap.sim.failover import greedy_policy, score_choice
from commap.sim.multidrive import (
    Replay,
    a3_failover_policy,
    best_single_policy,
    drive_seconds,
    replay_drive,
)
from tests.support.specs import HAMBURG_EXTRACT, hamburg_spec

DAY1 = ("2021-09-13T00:00:00Z", "2021-09-14T00:00:00Z")


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    return read_records(HAMBURG_EXTRACT)


@pytest.fixture(scope="module")
def later_drive(records: pd.DataFrame) -> pd.DataFrame:
    return records[records["timestamp"] >= pd.Timestamp("2021-09-17", tz="UTC")]


@pytest.fixture(scope="module")
def earlier_map(tmp_path_factory: pytest.TempPathFactory) -> CommMap:
    spec = hamburg_spec(tmp_path_factory.mktemp("maps") / "hamburg-13sep", window=DAY1)
    return CommMap.load(build_map(spec, spec.parent / "built"))


def _planner(cmap: CommMap, route: Route, vehicle: str) -> PlanResult:
    return plan_route(cmap, PlanRequest(route=route, vehicle=vehicle))


@pytest.fixture(scope="module")
def replay(earlier_map: CommMap, later_drive: pd.DataFrame) -> Replay:
    return replay_drive(earlier_map, later_drive, planner=_planner)


def test_seconds_and_outages_match_a_hand_count(later_drive: pd.DataFrame) -> None:
    s = drive_seconds(later_drive, hold_s=0)
    assert s.network_ids == ("de-telefonica", "de-telekom", "de-vodafone")
    second = later_drive["timestamp"].astype("int64") // 10**9
    first = later_drive.assign(second=second).drop_duplicates(["network_id", "second"])
    table = first.pivot(index="second", columns="network_id", values="rsrp_dbm").dropna()
    assert len(s) == len(table) and s.t_s.tolist() == table.index.astype(float).tolist()
    hand = (table[list(s.network_ids)] < -115.0).sum().tolist()
    assert s.outage.sum(axis=0).tolist() == hand
    assert hand[2] > 100  # Vodafone loses the cell edge often; the replay has something to do
    assert len(s.pieces()) >= 2  # legs split at pauses and drive changes
    held = drive_seconds(later_drive)  # holding a record over 2 s gaps scores more seconds
    assert len(held) > len(s) and held.unscored_s < s.unscored_s


def test_best_single_and_reactive_rules(later_drive: pd.DataFrame) -> None:
    s = drive_seconds(later_drive)
    best = best_single_policy(s).serving
    assert (best == int(np.argmin(s.outage.sum(axis=0)))).all()
    reactive = a3_failover_policy(s).serving
    # the rule leaves a network only in a second it is out
    moves = np.flatnonzero(reactive[1:] != reactive[:-1]) + 1
    legs_start = {p.start for p in s.pieces()}
    assert all(s.outage[i, reactive[i - 1]] for i in moves if i not in legs_start)


def test_switch_interruptions_are_outage_seconds(
    earlier_map: CommMap, later_drive: pd.DataFrame
) -> None:
    s = drive_seconds(later_drive)
    nets = [earlier_map.catalogue[n] for n in s.network_ids]
    always = np.zeros(len(s), dtype=np.int64)
    flip = always.copy()
    flip[len(s) // 2 :] = 1
    stay = score_choice(s, always, nets, policy="stay")
    moved = score_choice(s, flip, nets, policy="flip")
    pause = vehicle_setup("single_modem").switch_s(nets[0], nets[1])  # detach / attach: 10 s
    assert moved.switches == 1 and moved.interruption_s == pause == 10.0
    half = len(s) // 2
    own = int(s.outage[:half, 0].sum() + s.outage[half:, 1].sum())
    extra = int((~s.outage[half : half + 10, 1]).sum())
    assert moved.outage_s == own + extra and stay.outage_s == int(s.outage[:, 0].sum())
    with pytest.raises(InvalidInputError, match="one serving network per second"):
        score_choice(s, always[:-1], nets, policy="bad")


def test_commap_on_the_earlier_days_map_beats_the_reactive_rule(replay: Replay) -> None:
    assert list(replay.scores) == ["single_modem", "dual_modem", "bonded"]
    scores = replay.scores["single_modem"]
    assert list(scores)[:5] == [
        "commap", "commap_open_loop", "oracle", "best_single", "a3_failover"
    ]  # fmt: skip
    assert scores["commap"].outage_s <= scores["best_single"].outage_s
    assert scores["a3_failover"].switches > 0 and scores["a3_failover"].outage_s > 0
    assert scores["commap"].outage_s <= 0.5 * scores["a3_failover"].outage_s
    # two modems make a failover cheap, and a bonded pair loses less than either link
    dual, pair = replay.scores["dual_modem"], replay.scores["bonded"]
    assert dual["a3_failover"].outage_s < scores["a3_failover"].outage_s
    assert pair["best_pair"].outage_s <= min(s.outage_s for s in dual.values())
    # the extract keeps the roads driven on both days: the map knows the whole drive
    assert all(v == 0.0 for v in replay.unknown_share.values())
    summary = replay.summary()
    assert summary["scored_s"].nunique() == 1 and (summary["outage_s"] >= 0).all()
    assert (summary["truth"] == "real").all()


def test_choosing_among_two_networks(earlier_map: CommMap, later_drive: pd.DataFrame) -> None:
    pair = ["de-vodafone", "de-telefonica"]
    result = replay_drive(earlier_map, later_drive, planner=_planner, network_ids=pair)
    assert result.seconds.network_ids == tuple(pair)
    s = result.scores["single_modem"]
    assert s["commap"].outage_s <= s["best_single"].outage_s < s["a3_failover"].outage_s
    with pytest.raises(InvalidInputError, match="not in map"):
        replay_drive(earlier_map, later_drive, planner=_planner, network_ids=["de-o2"])


def test_oracle_plans_on_the_truth(replay: Replay) -> None:
    # on the truth, the planner's own outage seconds (without its switches) are never more
    # than those of the best network in hindsight
    s = replay.score("single_modem", "oracle")
    assert s.outage_s - s.interruption_s <= replay.score("single_modem", "best_single").outage_s


def test_drive_needs_two_networks_at_once(later_drive: pd.DataFrame) -> None:
    one = later_drive[later_drive["network_id"] == "de-telekom"]
    with pytest.raises(InvalidInputError, match="at least two networks"):
        drive_seconds(one)
    with pytest.raises(InvalidInputError, match="no record in the drive"):
        drive_seconds(later_drive, network_ids=["de-telekom", "de-o2"])


def test_cli_replay_writes_the_summary(
    earlier_map: CommMap, later_drive: pd.DataFrame, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from commap.cli import app
    from commap.radio.measurements import write_records_csv

    drive = tmp_path / "drive.csv"
    write_records_csv(later_drive, drive)
    out = tmp_path / "replay"
    result = CliRunner().invoke(
        app,
        ["replay", "--map", str(earlier_map.directory), "--drive", str(drive), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "summary.csv")
    columns = ["truth", "vehicle", "policy", "service_loss_s_per_hour", "loss_events_per_hour",
               "longest_loss_s", "switches_per_hour", "satellite_mb"]  # fmt: skip
    assert summary.columns.tolist()[: len(columns)] == columns
    rows = set(zip(summary["vehicle"], summary["policy"], strict=True))
    for policy in ("commap", "oracle", "a3_failover", "probe_failover", "greedy_hysteresis"):
        assert ("single_modem", policy) in rows and ("dual_modem", policy) in rows
    assert ("dual_modem", "hot_standby") in rows and ("bonded", "bonding") in rows
    assert ("single_modem", "hot_standby") not in rows  # one modem has no standby
    assert (summary["truth"] == "real").all() and (summary["satellite_mb"] == 0).all()
    hours = summary["scored_s"] / 3600.0
    assert np.allclose(summary["service_loss_s_per_hour"], summary["outage_s"] / hours, atol=0.01)
    assert np.allclose(summary["loss_events_per_hour"], summary["loss_events"] / hours, atol=0.01)
    assert "| commap |" in (out / "summary.md").read_text()
    serving = pd.read_csv(out / "serving.csv")
    assert len(serving) == int(summary["scored_s"].iloc[0])
    assert serving["bonded/bonding"].str.contains("+", regex=False).all()
    one = CliRunner().invoke(
        app,
        ["replay", "--map", str(earlier_map.directory), "--drive", str(drive), "--out",
         str(tmp_path / "one"), "--vehicle", "dual_modem", "--tolerance-s", "5",
         "--priority", "de-telefonica,de-telekom,de-vodafone"],
    )  # fmt: skip
    assert one.exit_code == 0, one.output
    dual = pd.read_csv(tmp_path / "one" / "summary.csv")
    assert set(dual["vehicle"]) == {"dual_modem"}
    same = summary[summary["vehicle"] == "dual_modem"].set_index("policy")
    # a longer tolerance counts fewer loss events over the same lost seconds (the priority
    # changes only the map-free baselines)
    planned = ["commap", "oracle", "best_single"]
    tolerant = dual.set_index("policy").loc[planned]
    assert (tolerant["outage_s"] == same.loc[planned, "outage_s"]).all()
    assert (tolerant["loss_events"] <= same.loc[planned, "loss_events"]).all()
    text = (tmp_path / "one" / "summary.md").read_text()
    assert "Commap against the best map-free baseline" in text and "| dual_modem |" in text
    sat = CliRunner().invoke(
        app,
        ["replay", "--map", str(earlier_map.directory), "--drive", str(drive), "--out",
         str(tmp_path / "sat"), "--vehicle", "satellite_on_demand"],
    )  # fmt: skip
    assert sat.exit_code != 0 and "needs a satellite network" in sat.output
    bad = CliRunner().invoke(
        app, ["replay", "--map", str(earlier_map.directory), "--drive", str(drive),
              "--weight", "interruption_s"],
    )  # fmt: skip
    assert bad.exit_code == 2 and "NAME=NUMBER" in bad.output


def test_the_plan_is_executed_with_the_set_ups_failover_rule(replay: Replay) -> None:
    # in closed loop the vehicle leaves a failed planned link (never losing more than the plan
    # followed blindly), and the second modem holds another network than the serving one
    for vehicle in ("single_modem", "dual_modem"):
        closed, blind = replay.score(vehicle, "commap"), replay.score(vehicle, "commap_open_loop")
        assert closed.outage_s <= blind.outage_s
    standby = replay.serving["dual_modem"]["commap"].standby
    assert standby is not None and (standby != replay.serving["dual_modem"]["commap"].serving).all()


def test_the_breakdown_says_where_commaps_excess_over_the_oracle_comes_from(
    replay: Replay,
) -> None:
    split = replay.breakdown().set_index(["vehicle", "policy"])
    parts = ["reactive_switch_s", "proactive_switch_s", "all_out_s", "standby_fine_s",
             "other_fine_s"]  # fmt: skip
    for (vehicle, policy), row in split.iterrows():
        if policy == "commap - oracle":
            commap, oracle = split.loc[(vehicle, "commap")], split.loc[(vehicle, "oracle")]
            assert row["lost_s"] == pytest.approx(commap["lost_s"] - oracle["lost_s"], abs=0.2)
            continue
        score = replay.score(vehicle, policy)
        assert row["lost_s"] == pytest.approx(score.service_loss_s_per_hour, abs=0.1)
        assert row[parts].sum() == pytest.approx(row["lost_s"], abs=0.3)
        assert row["on_unknown_s"] == 0  # the map knows the whole drive (see above)
    assert "bonded" not in split.index.get_level_values("vehicle")  # a pair has no single link
    assert ("single_modem", "hot_standby") not in split.index
    # a map-free rule never plans a switch: its changes are failovers
    assert split.loc[("dual_modem", "hot_standby"), "proactive_switch_s"] == 0


# --- a satellite terminal measured beside the operators -------------------------------------------
_DISH = "starlink-dish"
_DISH_SECTION = """
[[networks]]
id = "{nid}"
kind = "leo"
operator = "starlink"
technology = "starlink"
latency_ms = 45.0
[networks.layer]
type = "measured"
format = "records"
files = ["{path}"]
network_id = "{nid}"
start = "{start}"
end = "{end}"
"""


def _dish_records(records: pd.DataFrame) -> pd.DataFrame:
    """A dish on the car beside the three modems: throughput and connection state only (what
    a terminal reports), out for the first 20 s of every 5 minutes (obstructions)."""
    rows = records[records["network_id"] == "de-telekom"]
    out = (rows["timestamp"].astype("int64") // 10**9) % 300 < 20
    return pd.DataFrame(
        {
            "timestamp": rows["timestamp"],
            "lat": rows["lat"],
            "lon": rows["lon"],
            "network_id": _DISH,
            "throughput_mbps": np.where(out, 0.0, 80.0),
            "connected": np.where(out, 0, 1),
        }
    )


def test_a_measured_satellite_terminal_is_planned_and_replayed(
    records: pd.DataFrame, later_drive: pd.DataFrame, tmp_path: Path
) -> None:
    dish = _dish_records(records)
    dish.to_csv(tmp_path / "dish.csv", index=False)
    spec = hamburg_spec(tmp_path / "with-dish", window=DAY1)
    section = _DISH_SECTION.format(
        nid=_DISH, path=(tmp_path / "dish.csv").as_posix(), start=DAY1[0], end=DAY1[1]
    )
    spec.write_text(spec.read_text(encoding="utf-8") + section, encoding="utf-8")
    cmap = CommMap.load(build_map(spec, tmp_path / "built"))  # no orbital elements needed
    assert cmap.catalogue[_DISH].is_satellite

    drive = pd.concat([later_drive, dish[dish["timestamp"] >= later_drive["timestamp"].min()]])
    replay = replay_drive(cmap, drive, planner=_planner)
    # the terminal adds its set-up; a vehicle without one drives the operators only
    assert list(replay.scores) == ["single_modem", "dual_modem", "bonded", "satellite_always_on"]
    for vehicle, by_policy in replay.serving.items():
        ids = replay.setup_view(vehicle)[0].network_ids
        used = {ids[i] for c in by_policy.values() for i in np.unique(c.serving)}
        assert (_DISH in used) == (vehicle == "satellite_always_on"), vehicle
    # one more network to choose from never loses more seconds in hindsight
    with_dish, without = (
        replay.score(v, "best_single") for v in ("satellite_always_on", "single_modem")
    )
    assert with_dish.outage_s <= without.outage_s
    # the measured dish is judged by its records, not as a satellite out of sight
    track = later_drive[later_drive["network_id"] == "de-telekom"].drop_duplicates(["lon", "lat"])
    route = route_from_polyline(track["lon"].iloc[:300], track["lat"].iloc[:300])
    planned = _planner(cmap, route, "satellite_always_on")
    j = planned.matrix.network_ids.index(_DISH)
    assert np.isnan(planned.matrix.elevation_deg[:, j]).all()
    outage = LinkModel().point_outage(
        planned.matrix, [cmap.catalogue[n] for n in planned.matrix.network_ids]
    )
    assert float(np.median(outage[:, j])) < 0.5


def test_a_hysteresis_in_db_is_a_ratio_of_rates() -> None:
    # two operators reporting only their rate, 100 and 104 Mbit/s by turns: 4 Mbit/s is not
    # 3 dB, so the best-signal rule stays where it is
    t = pd.to_datetime(np.repeat(np.arange(60), 2), unit="s", utc=True)
    rate = np.where(np.arange(60) % 2 == 0, 100.0, 104.0)
    records = pd.DataFrame(
        {
            "timestamp": t,
            "lon": 8.9,
            "lat": 53.0,
            "network_id": ["a", "b"] * 60,
            "throughput_mbps": np.column_stack([rate, rate[::-1]]).ravel(),
        }
    )
    s = drive_seconds(records)
    nets = [Network(id=i, kind=NetworkKind.TERRESTRIAL, operator=i, technology="lte",
                    latency_ms=30) for i in s.network_ids]  # fmt: skip
    choice = greedy_policy(s, nets, vehicle_setup("single_modem"))
    assert len(np.unique(choice.serving)) == 1
