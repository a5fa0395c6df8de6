"""Plans through the plan inputs cache: the same plans as without it, entries per map version,
bounded memory, and cached arrays nobody can change in place."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from commap.geo.corridor import route_from_polyline
from commap.map.comm_map import CommMap
from commap.service.plan_cache import PlanInputsCache
from commap.service.planning import PlanRequest, PlanResult, plan_route, plan_route_once

LA_VELLA = (1.5218, 42.5063)  # (lon, lat)
PAS_DE_LA_CASA = (1.7330, 42.5430)
T0 = 1737633600


def _same_plan(a: PlanResult, b: PlanResult) -> None:
    assert a.plan.segment_networks == b.plan.segment_networks
    assert abs(a.plan.totals.cost - b.plan.totals.cost) <= 1e-9
    assert a.plan.totals == b.plan.totals
    assert a.plan.handovers == b.plan.handovers
    np.testing.assert_array_equal(a.corridor.distance_m, b.corridor.distance_m)


@pytest.mark.parametrize(
    "request_fields",
    [
        {"origin": LA_VELLA, "destination": PAS_DE_LA_CASA},
        {"origin": LA_VELLA, "destination": PAS_DE_LA_CASA, "alternatives": 3},
        {"origin": LA_VELLA, "destination": PAS_DE_LA_CASA, "app": "teleoperation"},
    ],
    ids=["one route", "alternatives", "another application"],
)
def test_cached_plans_equal_uncached_plans(
    andorra: CommMap, request_fields: dict[str, Any]
) -> None:
    request = PlanRequest(departure_s=T0, **request_fields)
    cache = PlanInputsCache()
    expected = plan_route(andorra, request)
    first = plan_route(andorra, request, cache=cache)
    misses = cache.misses
    again = plan_route(andorra, request, cache=cache)
    assert cache.misses == misses and cache.hits > 0  # the second plan found its inputs cached
    _same_plan(first, expected)
    _same_plan(again, expected)


def test_another_departure_is_sampled_again(andorra: CommMap) -> None:
    cache = PlanInputsCache()
    noon = PlanRequest(origin=LA_VELLA, destination=PAS_DE_LA_CASA, departure_s=T0)
    evening = PlanRequest(origin=LA_VELLA, destination=PAS_DE_LA_CASA, departure_s=T0 + 6 * 3600)
    plan_route(andorra, noon, cache=cache)
    later = plan_route(andorra, evening, cache=cache)
    _same_plan(later, plan_route(andorra, evening))
    assert later.corridor.departure_s == T0 + 6 * 3600


def test_new_trips_on_a_known_route_reuse_its_corridor_and_plan_as_if_cut_afresh(
    andorra: CommMap,
) -> None:
    """A new departure on a route cut before shifts that corridor's times, no more: the same
    plans as without the cache, for a road route and a polyline driven again."""
    polyline = plan_route(
        andorra, PlanRequest(origin=LA_VELLA, destination=PAS_DE_LA_CASA, departure_s=T0)
    ).route
    trips = [
        {"origin": LA_VELLA, "destination": PAS_DE_LA_CASA},
        {"route": route_from_polyline(polyline.lon[::-1], polyline.lat[::-1], speed_mps=20.0)},
    ]
    cache = PlanInputsCache()
    for fields in trips:
        first = plan_route(andorra, PlanRequest(departure_s=T0, **fields), cache=cache)
        for minutes in (1, 7, 95):
            request = PlanRequest(departure_s=T0 + 60 * minutes, **fields)
            later = plan_route(andorra, request, cache=cache)
            assert later.corridor.lon is first.corridor.lon  # not cut again
            assert later.corridor.departure_s == T0 + 60 * minutes
            fresh = plan_route(andorra, request)
            _same_plan(later, fresh)
            np.testing.assert_array_equal(later.corridor.t_s, fresh.corridor.t_s)
            np.testing.assert_array_equal(later.matrix.sinr_db, fresh.matrix.sinr_db)


def test_entries_belong_to_one_map_object(andorra: CommMap, andorra_dir: Any) -> None:
    """A reloaded (or fleet-refreshed) map is a new object: it never gets the old one's inputs."""
    cache = PlanInputsCache()
    request = PlanRequest(origin=LA_VELLA, destination=PAS_DE_LA_CASA, departure_s=T0)
    plan_route(andorra, request, cache=cache)
    reloaded = CommMap.load(andorra_dir)
    misses = cache.misses
    plan_route(reloaded, request, cache=cache)
    assert cache.misses > misses


def test_cached_arrays_cannot_be_changed_in_place(andorra: CommMap) -> None:
    cache = PlanInputsCache()
    request = PlanRequest(origin=LA_VELLA, destination=PAS_DE_LA_CASA, departure_s=T0)
    result = plan_route(andorra, request, cache=cache)
    with pytest.raises(ValueError, match="read-only"):
        result.matrix.sinr_db[0, 0] = 99.0
    with pytest.raises(ValueError, match="read-only"):
        result.corridor.eta_s[0] = 0.0


def test_the_cache_is_bounded_in_bytes(andorra: CommMap) -> None:
    request = PlanRequest(origin=LA_VELLA, destination=PAS_DE_LA_CASA, departure_s=T0)
    unbounded = PlanInputsCache()
    plan_route(andorra, request, cache=unbounded)
    one_plan = unbounded.nbytes
    cache = PlanInputsCache(max_bytes=int(one_plan * 1.5))
    for hour in range(6):  # six departures: six corridors and quality matrices
        later = dataclasses.replace(request, departure_s=T0 + hour * 3600)
        plan_route(andorra, later, cache=cache)
    assert 0 < cache.nbytes <= int(one_plan * 1.5)
    too_small = PlanInputsCache(max_bytes=1)
    _same_plan(plan_route(andorra, request, cache=too_small), plan_route(andorra, request))
    assert too_small.nbytes == 0 and len(too_small) == 0


def test_a_trip_from_now_is_not_answered_with_an_earlier_plan(andorra: CommMap) -> None:
    # a map whose spec sets no departure plans requests without one from now
    own = dataclasses.replace(andorra.manifest, default_departure_s=None)
    cmap = andorra.replaced(manifest=own)
    request = PlanRequest(
        origin=LA_VELLA, destination=PAS_DE_LA_CASA, allow_stale_elements=True
    )  # the map's elements are old: its own departure is what they are good for
    cache = PlanInputsCache()
    first = plan_route_once(cmap, request, cache=cache)
    later = plan_route_once(cmap, request, cache=cache)
    assert later.plan.departure_s > first.plan.departure_s
    # an equal request with its departure given is still solved once
    fixed = dataclasses.replace(request, departure_s=T0)
    assert plan_route_once(cmap, fixed, cache=cache) is plan_route_once(cmap, fixed, cache=cache)
