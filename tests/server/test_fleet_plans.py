"""A fleet on one server: many concurrent plans of the same trips (served from the server's plan
inputs cache) equal the library's plan, and a plan made after fleet measurements reached the
served map uses them, not the quality sampled before.

The server is one of this module's own: the measurements reported here must not reach the map
other tests compare plans on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.server_harness import ServerProcess, ensure_stubs, start_server

ensure_stubs()

from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402

from commap.geo.corridor import Route, route_from_polyline  # noqa: E402
from commap.map.comm_map import CommMap  # noqa: E402
from commap.service.planning import PlanRequest, PlanResult, plan_route  # noqa: E402
from commap.v1 import commap_service_pb2 as pb  # noqa: E402
from commap.v1 import commap_service_pb2_grpc as pb_grpc  # noqa: E402
from server.client import plan_from_message  # noqa: E402

pytestmark = pytest.mark.integration

ORIGIN = (1.5218, 42.5063)  # Andorra la Vella (lon, lat)
DESTINATION = (1.7330, 42.5430)  # Pas de la Casa
T0 = 1737633600


@pytest.fixture(scope="module")
def fleet_server(
    andorra_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = start_server(
        andorra_dir, tmp_path_factory.mktemp("fleet-server"), extra_args=("--no-access-log",)
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stub(fleet_server: ServerProcess) -> Iterator[pb_grpc.CommapServiceStub]:
    with fleet_server.channel() as channel:
        yield pb_grpc.CommapServiceStub(channel)


def _trip(departure_s: int = T0) -> pb.PlanRouteRequest:
    return pb.PlanRouteRequest(
        endpoints=pb.Endpoints(
            origin=pb.LatLon(latitude_deg=ORIGIN[1], longitude_deg=ORIGIN[0]),
            destination=pb.LatLon(latitude_deg=DESTINATION[1], longitude_deg=DESTINATION[0]),
        ),
        departure_time=Timestamp(seconds=departure_s),
    )


def test_concurrent_plans_equal_the_library_plan(
    stub: pb_grpc.CommapServiceStub, andorra: CommMap
) -> None:
    departures = [T0, T0 + 3 * 3600]
    expected = {
        t: plan_route(andorra, PlanRequest(origin=ORIGIN, destination=DESTINATION, departure_s=t))
        for t in departures
    }
    # 24 plans, 8 at a time: the first of each trip fills the cache, the others read it
    calls = [departures[k % 2] for k in range(24)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda t: (t, stub.PlanRoute(_trip(t), timeout=120)), calls))
    for t, response in responses:
        remote = plan_from_message(response.plan, andorra.catalogue.ids)
        local = expected[t].plan
        assert remote.segment_networks == local.segment_networks
        assert abs(remote.totals.cost - local.totals.cost) <= 1e-9
        assert remote.totals == local.totals
        assert remote.handovers == local.handovers
        np.testing.assert_array_equal(remote.provenance, local.provenance)
        assert len(response.plan.route.points) == len(expected[t].route.lon)
    assert expected[departures[0]].plan.totals != expected[departures[1]].plan.totals


def _polyline_trip(route: Route, departure_s: int) -> pb.PlanRouteRequest:
    points = [
        pb.LatLon(latitude_deg=y, longitude_deg=x)
        for x, y in zip(route.lon, route.lat, strict=True)
    ]
    return pb.PlanRouteRequest(
        polyline=pb.Polyline(points=points), departure_time=Timestamp(seconds=departure_s)
    )


def _assert_library_plan(response: pb.PlanRouteResponse, local: PlanResult, ids: Any) -> None:
    remote = plan_from_message(response.plan, ids)
    assert remote.segment_networks == local.plan.segment_networks
    assert abs(remote.totals.cost - local.plan.totals.cost) <= 1e-9
    assert remote.totals == local.plan.totals
    assert remote.handovers == local.plan.handovers


def test_new_trips_equal_the_library_plans_before_and_after_a_reload(
    stub: pb_grpc.CommapServiceStub, andorra: CommMap
) -> None:
    """Trips no cache can answer (each at a departure of its own) on roads the server has
    planned before: what the server keeps of those roads (corridors, observers, horizons)
    and its compiled passes give the plans the library makes from scratch, and so does the
    map it reloads."""
    road = plan_route(
        andorra, PlanRequest(origin=ORIGIN, destination=DESTINATION, departure_s=T0)
    ).route
    polyline = route_from_polyline(road.lon, road.lat)
    for round_s in (0, 7200):  # then again on the reloaded map
        for minutes in (11, 12, 50):
            t = T0 + round_s + 60 * minutes
            local = plan_route(
                andorra, PlanRequest(origin=ORIGIN, destination=DESTINATION, departure_s=t)
            )
            _assert_library_plan(
                stub.PlanRoute(_trip(t), timeout=120), local, andorra.catalogue.ids
            )
            local = plan_route(andorra, PlanRequest(route=polyline, departure_s=t + 30))
            response = stub.PlanRoute(_polyline_trip(road, t + 30), timeout=120)
            _assert_library_plan(response, local, andorra.catalogue.ids)
        if not round_s:
            reload = stub.ReloadMaps(pb.ReloadMapsRequest(map_names=["andorra"]), timeout=120)
            assert reload.maps[0].map_name == "andorra"


def _longest_run_middle(networks: list[str]) -> int:
    """The middle segment of the longest stretch on one network (far from any handover)."""
    best, best_len, start = 0, 0, 0
    for i in range(1, len(networks) + 1):
        if i == len(networks) or networks[i] != networks[start]:
            if i - start > best_len:
                best, best_len = (start + i) // 2, i - start
            start = i
    return best


def test_a_plan_after_fleet_measurements_uses_them(
    stub: pb_grpc.CommapServiceStub, andorra: CommMap
) -> None:
    before = stub.PlanRoute(_trip(), timeout=120).plan  # its route, corridor, quality: cached
    segments = before.segments
    i = _longest_run_middle([s.network_id for s in segments])
    spot, network = segments[i].position, segments[i].network_id
    assert network in andorra.catalogue.ids and segments[i].provenance != pb.PROVENANCE_MEASURED
    records = [
        pb.Measurement(
            time=Timestamp(seconds=T0 + k),
            position=spot,
            network_id=network,
            sinr_db=25.0,
            rsrp_dbm=-75.0,
        )
        for k in range(8)
    ]
    stub.ReportMeasurements(
        iter([pb.ReportMeasurementsRequest(vehicle_id="fleet-1", measurements=records)]),
        timeout=30,
    )
    query = pb.QueryCoverageRequest(points=[pb.CoveragePoint(position=spot)], network_ids=[network])
    deadline = time.monotonic() + 30  # stored batches reach the served map within its interval
    while (
        stub.QueryCoverage(query, timeout=30).points[0].networks[0].provenance
        != pb.PROVENANCE_MEASURED
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    after = stub.PlanRoute(_trip(), timeout=120).plan
    # the same trip, planned again on the map that now holds the fleet's measurements there
    assert len(after.segments) == len(segments)
    assert after.segments[i].network_id == network
    assert after.segments[i].provenance == pb.PROVENANCE_MEASURED
