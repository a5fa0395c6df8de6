"""DriveSession on the real default map: instructions ahead of handovers, off-route and
measurement-contradiction re-plans, input checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from commap.errors import InvalidInputError
from commap.map.comm_map import CommMap
from commap.radio.quality import QOUT_SINR_DB, Provenance
from commap.service.drive_session import (
    DriveOptions,
    DriveSession,
    Fix,
    Replan,
    ReplanReason,
    _Track,
    with_measurements,
)
from commap.service.planning import PlanRequest, PlanResult, plan_route

ORIGIN = (1.5218, 42.5063)  # Andorra la Vella
DESTINATION = (1.7330, 42.5430)  # Pas de la Casa
T0 = 1737633600.0


@pytest.fixture(scope="module")
def request_() -> PlanRequest:
    return PlanRequest(origin=ORIGIN, destination=DESTINATION, departure_s=T0)


@pytest.fixture(scope="module")
def result(andorra: CommMap, request_: PlanRequest) -> PlanResult:
    return plan_route(andorra, request_)


def session(
    andorra: CommMap, request_: PlanRequest, result: PlanResult, **options: float
) -> DriveSession:
    return DriveSession(andorra, request_, result, options=DriveOptions(**options))  # type: ignore[arg-type]


def drive_fixes(
    result: PlanResult, rate_hz: float, start_s: float = 0.0, end_s: float | None = None
) -> list[Fix]:
    """Fixes along the planned route at the planned times (position interpolated on the route)."""
    plan = result.plan
    centre_t = plan.eta_s + plan.duration_s / 2
    end = float(plan.eta_s[-1] + plan.duration_s[-1]) if end_s is None else end_s
    times = np.arange(start_s, end, 1.0 / rate_hz)
    lon = np.interp(times, centre_t, plan.lon)
    lat = np.interp(times, centre_t, plan.lat)
    return [Fix(T0 + float(t), float(x), float(y)) for t, x, y in zip(times, lon, lat, strict=True)]


@pytest.mark.parametrize("rate_hz", [1.0, 10.0])
def test_every_handover_is_announced_once_with_lead_time(
    andorra: CommMap, request_: PlanRequest, result: PlanResult, rate_hz: float
) -> None:
    drive = session(andorra, request_, result, lead_time_s=10.0)
    announced = []
    for fix in drive_fixes(result, rate_hz):
        update = drive.observe(fix)
        assert update.replan is None
        assert update.progress.off_route_m < 30.0
        announced += [(fix.t_s - T0, i) for i in update.instructions]
    handovers = result.plan.handovers
    assert len(handovers) >= 5
    assert [i.handover for _, i in announced] == list(handovers)
    for t_s, instruction in announced:
        h = instruction.handover
        if h.eta_s >= 16.0:  # later than the announcement horizon after departure
            assert instruction.time_to_go_s >= 10.0, (h, instruction.time_to_go_s)
            # ... and not absurdly early either: the horizon is 15 s at the faster of the
            # current and the planned speed, so slower roads ahead stretch it a little
            assert h.eta_s - t_s <= 45.0
        assert instruction.expected_t_s == pytest.approx(T0 + t_s + instruction.time_to_go_s)
        assert instruction.distance_to_go_m == pytest.approx(
            h.distance_m - (h.distance_m - instruction.distance_to_go_m)
        )


def test_progress_follows_the_plan(
    andorra: CommMap, request_: PlanRequest, result: PlanResult
) -> None:
    drive = session(andorra, request_, result)
    plan = result.plan
    networks = plan.segment_networks
    for i in range(0, len(plan), 25):
        fix = Fix(
            T0 + float(plan.eta_s[i] + plan.duration_s[i] / 2),
            float(plan.lon[i]),
            float(plan.lat[i]),
        )
        progress = drive.observe(fix).progress
        assert progress.distance_m == pytest.approx(
            plan.distance_m[i] + plan.length_m[i] / 2, abs=15.0
        )
        assert progress.network_id == networks[i]


def test_single_gps_jump_is_not_off_route(
    andorra: CommMap, request_: PlanRequest, result: PlanResult
) -> None:
    drive = session(andorra, request_, result, off_route_distance_m=60.0, off_route_persist_s=2.0)
    fixes = drive_fixes(result, 1.0, 100.0, 130.0)
    for k, fix in enumerate(fixes):
        if k == 10:  # one fix 300 m north of the road
            fix = dataclasses.replace(fix, lat=fix.lat + 0.0027)
        assert drive.observe(fix).replan is None


def test_off_route_replans_from_the_vehicle_to_the_destination(
    andorra: CommMap, request_: PlanRequest, result: PlanResult
) -> None:
    drive = session(andorra, request_, result, off_route_distance_m=60.0, off_route_persist_s=2.0)
    fixes = drive_fixes(result, 1.0, 200.0, 260.0)
    for fix in fixes[:30]:
        assert drive.observe(fix).replan is None
    # the vehicle takes a side road: 250 m east of its route, for several seconds
    last = fixes[29]
    replan = None
    for k in range(1, 6):
        fix = Fix(last.t_s + k, last.lon + 0.003 + 0.0001 * k, last.lat)
        update = drive.observe(fix)
        assert update.progress.off_route_m > 60.0
        if update.replan is not None:
            replan = update.replan
            break
    assert replan is not None and replan.reason is ReplanReason.OFF_ROUTE
    assert k >= 3  # persisted at least off_route_persist_s
    assert "from the planned route" in replan.explanation
    new = drive.replan(replan)
    assert drive.plan_version == 1 and drive.reason is ReplanReason.OFF_ROUTE
    assert new.plan.departure_s == replan.fix.t_s
    start_gap_m = math.hypot(
        (new.route.lon[0] - replan.fix.lon) * 82_000, (new.route.lat[0] - replan.fix.lat) * 111_000
    )
    assert start_gap_m < 1000.0  # the new route starts at the road nearest the vehicle
    end = (new.route.lon[-1], new.route.lat[-1])
    assert abs(end[0] - DESTINATION[0]) < 0.01 and abs(end[1] - DESTINATION[1]) < 0.01
    # the new plan starts on the network the vehicle was on when it left its route
    assert new.plan.segment_networks[0] == result.plan.segment_networks[segment_at(result, last)]
    # a fix where the vehicle now is lies on the new route
    assert (
        drive.observe(
            Fix(replan.fix.t_s + 1, float(new.route.lon[0]), float(new.route.lat[0]))
        ).progress.off_route_m
        < 20
    )


def segment_at(result: PlanResult, fix: Fix) -> int:
    """Index of the plan segment nearest a fix."""
    plan = result.plan
    return int(np.argmin(np.hypot(plan.lon - fix.lon, plan.lat - fix.lat)))


def test_replan_starts_on_the_current_network(
    andorra: CommMap, request_: PlanRequest, result: PlanResult
) -> None:
    drive = session(andorra, request_, result, off_route_persist_s=0.0)
    assert drive.current_network() == result.plan.segment_networks[0]  # before any fix
    plan = result.plan
    # a stretch planned on a network other than the first one, then off route from there
    i = next(k for k in range(len(plan)) if plan.segment_networks[k] != plan.segment_networks[0])
    fix = Fix(
        T0 + float(plan.eta_s[i] + plan.duration_s[i] / 2), float(plan.lon[i]), float(plan.lat[i])
    )
    drive.observe(fix)
    assert drive.current_network() == plan.segment_networks[i]
    away = Fix(fix.t_s + 1, fix.lon + 0.01, fix.lat)
    replan = drive.observe(away).replan
    assert replan is not None
    assert drive.replan_request(replan).initial_network == plan.segment_networks[i]
    new = drive.replan(replan)
    assert new.plan.segment_networks[0] == plan.segment_networks[i]


def test_replan_on_a_map_without_the_current_network_starts_free(
    andorra: CommMap, request_: PlanRequest, result: PlanResult
) -> None:
    drive = session(andorra, request_, result, off_route_persist_s=0.0)
    seen: list[str | None] = []

    def planner(cmap: CommMap, request: PlanRequest) -> PlanResult:
        seen.append(request.initial_network)
        return result

    drive._planner = planner  # a map reloaded without the vehicle's network
    fix = drive_fixes(result, 1.0, 100.0, 101.0)[0]
    replan = drive.observe(Fix(fix.t_s, fix.lon + 0.01, fix.lat)).replan
    assert replan is not None
    current = drive.current_network()
    from commap.networks import NetworkCatalogue

    reduced = andorra.replaced(
        catalogue=NetworkCatalogue([n for n in andorra.catalogue.networks if n.id != current]),
        layers={k: v for k, v in andorra.layers.items() if k != current},
    )
    drive.replan(replan, cmap=reduced)
    drive.replan(replan, cmap=andorra)
    assert seen == [None, current]


def _contradiction_spot(result: PlanResult, andorra: CommMap) -> int:
    """A segment mid-route on ad-lte that the map rates clearly usable, far from handovers."""
    plan = result.plan
    j = andorra.catalogue.index("ad-lte")
    switches = np.array([h.segment for h in plan.handovers])
    for i in range(len(plan) // 3, len(plan)):
        usable = result.matrix.sinr_db[i, j] > QOUT_SINR_DB + 10
        if plan.assignment[i] == j and usable and np.min(np.abs(switches - i)) > 20:
            return i
    raise AssertionError("no spot on ad-lte")


def _report(
    andorra: CommMap, lon: float, lat: float, t_s: float, network_id: str, sinr_db: float
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime([t_s], unit="s", utc=True),
            "lat": [lat],
            "lon": [lon],
            "network_id": [network_id],
            "sinr_db": [sinr_db],
            "connected": pd.array([sinr_db > QOUT_SINR_DB], dtype="boolean"),
        }
    )


def test_measurements_contradicting_the_map_trigger_a_replan_that_uses_them(
    andorra: CommMap, request_: PlanRequest, result: PlanResult
) -> None:
    i = _contradiction_spot(result, andorra)
    plan = result.plan
    drive = session(andorra, request_, result, contradiction_samples=3)
    t_s = T0 + float(plan.eta_s[i])
    replan: Replan | None = None
    for k in range(5):
        seg = i + k
        fix = Fix(
            T0 + float(plan.eta_s[seg] + plan.duration_s[seg] / 2),
            float(plan.lon[seg]),
            float(plan.lat[seg]),
        )
        update = drive.observe(fix, _report(andorra, fix.lon, fix.lat, fix.t_s, "ad-lte", -15.0))
        if update.replan is not None:
            replan = update.replan
            break
    assert replan is not None and k == 2  # the third disagreeing report
    assert replan.reason is ReplanReason.MEASUREMENT_CONTRADICTION
    assert "ad-lte" not in replan.explanation or "planned network" in replan.explanation
    new = drive.replan(replan)
    assert drive.plan_version == 1 and drive.explanation == replan.explanation
    # same road: the rest of the original route
    assert new.corridor.total_length_m == pytest.approx(
        float(plan.distance_m[-1] + plan.length_m[-1]) - drive_distance(plan, i + 2), abs=60.0
    )
    # the new plan starts on the network the vehicle is on (a switch away would be a handover
    # the plan must contain), and it trusts the measurements: ad-lte is measured, and failing,
    # where the vehicle is
    j = andorra.catalogue.index("ad-lte")
    assert new.plan.segment_networks[0] == "ad-lte"
    assert new.matrix.provenance[0, j] == Provenance.MEASURED
    assert new.matrix.sinr_db[0, j] < QOUT_SINR_DB and new.plan.outage_risk[0] > 0.5
    assert t_s < new.plan.departure_s


def drive_distance(plan: object, i: int) -> float:
    return float(plan.distance_m[i] + plan.length_m[i] / 2)  # type: ignore[attr-defined]


def test_agreeing_measurements_do_not_replan(
    andorra: CommMap, request_: PlanRequest, result: PlanResult
) -> None:
    i = _contradiction_spot(result, andorra)
    plan = result.plan
    drive = session(andorra, request_, result)
    for k in range(10):
        seg = i + k
        fix = Fix(
            T0 + float(plan.eta_s[seg] + plan.duration_s[seg] / 2),
            float(plan.lon[seg]),
            float(plan.lat[seg]),
        )
        assert (
            drive.observe(fix, _report(andorra, fix.lon, fix.lat, fix.t_s, "ad-lte", 15.0)).replan
            is None
        )


def test_replans_are_rate_limited(
    andorra: CommMap, request_: PlanRequest, result: PlanResult
) -> None:
    drive = session(andorra, request_, result, off_route_persist_s=0.0, min_replan_interval_s=30.0)
    fix = drive_fixes(result, 1.0, 100.0, 101.0)[0]
    away = Fix(fix.t_s, fix.lon + 0.01, fix.lat)
    replan = drive.observe(away).replan
    assert replan is not None
    drive.replan(replan)
    assert drive.observe(Fix(away.t_s + 1, away.lon + 0.02, away.lat + 0.02)).replan is None


@pytest.mark.parametrize(
    ("fix", "field"),
    [
        (Fix(math.nan, 1.5, 42.5), "fix.t_s"),
        (Fix(T0, 1.5, math.inf), "fix.lat"),
        (Fix(T0, 1.5, 91.0), "fix.position"),
    ],
)
def test_bad_fixes(
    andorra: CommMap, request_: PlanRequest, result: PlanResult, fix: Fix, field: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        session(andorra, request_, result).observe(fix)
    assert info.value.field == field


def test_out_of_order_fix_is_rejected(
    andorra: CommMap, request_: PlanRequest, result: PlanResult
) -> None:
    drive = session(andorra, request_, result)
    drive.observe(Fix(T0 + 10, *ORIGIN))
    for t_s in (T0 + 10, T0 + 9):
        with pytest.raises(InvalidInputError, match="time order") as info:
            drive.observe(Fix(t_s, *ORIGIN))
        assert info.value.field == "fix.time"


def test_a_route_driven_twice_is_followed_in_order(andorra: CommMap) -> None:
    # forth and back on the same road: positions repeat, the along-route distance must not jump
    forth = plan_route(
        andorra, PlanRequest(origin=ORIGIN, destination=(1.5580, 42.5200), departure_s=T0)
    )
    lon = np.concatenate([forth.route.lon, forth.route.lon[::-1][1:]])
    lat = np.concatenate([forth.route.lat, forth.route.lat[::-1][1:]])
    from commap.geo.corridor import route_from_polyline

    request = PlanRequest(route=route_from_polyline(lon, lat), departure_s=T0)
    result = plan_route(andorra, request)
    drive = DriveSession(andorra, request, result)
    distances = [drive.observe(f).progress.distance_m for f in drive_fixes(result, 1.0)]
    assert np.all(np.diff(distances) > -5.0)
    assert distances[-1] > 0.9 * result.corridor.total_length_m


def test_with_measurements_fuses_only_measured_networks(andorra: CommMap) -> None:
    records = pd.concat(
        [_report(andorra, ORIGIN[0], ORIGIN[1], T0 + k, "ad-nr", -4.0) for k in range(3)]
    )
    fused = with_measurements(andorra, records, dense_min_samples=3)
    assert fused.layers["ad-lte"] is andorra.layers["ad-lte"]
    q = fused.quality_at([ORIGIN[0]], [ORIGIN[1]], [T0])
    j = fused.catalogue.index("ad-nr")
    assert q.provenance[0, j] == Provenance.MEASURED and q.sinr_db[0, j] == pytest.approx(-4.0)
    sparse = with_measurements(andorra, records.iloc[:2], dense_min_samples=3)
    assert sparse.quality_at([ORIGIN[0]], [ORIGIN[1]], [T0]).provenance[0, j] != Provenance.MEASURED
    with pytest.raises(InvalidInputError):
        with_measurements(andorra, records.assign(network_id="nope"))


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"lead_time_s": -1.0}, "lead_time_s"),
        ({"off_route_distance_m": 0.0}, "off_route_distance_m"),
        ({"announce_margin_s": math.nan}, "announce_margin_s"),
    ],
)
def test_bad_options(options: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        DriveOptions(**options)  # type: ignore[arg-type]
    assert info.value.field == field


def _reference_locate(
    track: _Track, lon: float, lat: float, hint_m: float, near_m: float
) -> tuple[float, float]:
    """The route search as numpy over every leg of the window (then of the route)."""
    n_legs = track.leg_m.shape[0]
    lo = max(int(np.searchsorted(track.cum_m, hint_m - 300.0, "right")) - 1, 0)
    hi = min(int(np.searchsorted(track.cum_m, hint_m + 3000.0, "left")) + 1, n_legs)
    along, off = track._nearest(lon, lat, lo, max(hi, lo + 1), hint_m)
    if off <= near_m or (lo == 0 and hi == n_legs):
        return along, off
    far_along, far_off = track._nearest(lon, lat, 0, n_legs, hint_m)
    return (far_along, far_off) if far_off < off else (along, off)


@pytest.mark.parametrize("laps", [1, 2, 3])  # one way; there and back (a U-turn); a loop
def test_route_search_from_the_last_position_equals_the_full_search(
    andorra: CommMap, laps: int
) -> None:
    """Noisy fixes, GPS gaps that jump ahead, back and off the road: the same answers."""
    from commap.geo.geodesy import from_local_m

    there = andorra.routes(ORIGIN, (1.5580, 42.5200))[0]
    lon, lat = [np.asarray(there.lon)], [np.asarray(there.lat)]
    for k in range(1, laps):
        lon.append((there.lon[::-1] if k % 2 else there.lon)[1:])
        lat.append((there.lat[::-1] if k % 2 else there.lat)[1:])
    track = _Track(np.concatenate(lon), np.concatenate(lat))
    rng = np.random.default_rng(laps)
    along_m, hint_m, checked = 0.0, 0.0, 0
    while along_m < track.length_m:
        kind = rng.random()
        step_m = 2_000.0 if kind < 0.01 else (-500.0 if kind < 0.02 else rng.uniform(0, 30))
        along_m = max(along_m + step_m, 0.0)
        x0 = float(np.interp(along_m, track.cum_m, track.lon))
        y0 = float(np.interp(along_m, track.cum_m, track.lat))
        noise_m = 200.0 if rng.random() < 0.02 else 5.0  # now and then a fix far off the road
        east, north = rng.normal(0.0, noise_m, 2)
        x, y = from_local_m([east], [north], lat0=y0)
        fix_lon, fix_lat = x0 + float(x[0]), y0 + float(y[0])
        got = track.locate(fix_lon, fix_lat, hint_m, 60.0)
        assert got == pytest.approx(_reference_locate(track, fix_lon, fix_lat, hint_m, 60.0))
        hint_m = got[0]
        checked += 1
    assert checked > 100
