"""The real gRPC server on port 0: every RPC, streaming, health, reflection, errors, limits.

The server runs as a subprocess (``python -m server``) on the built default map; plans made over
gRPC are compared with plans the library makes in this process for the same request.
"""

from __future__ import annotations

import math
import queue
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.support.server_harness import ServerProcess, ensure_stubs, start_server

ensure_stubs()

from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from commap.map.comm_map import CommMap  # noqa: E402
from commap.map.store import FleetStore  # noqa: E402
from commap.plan.execution import DEFAULT_EXECUTION_RULES  # noqa: E402
from commap.radio.quality import USABLE_SINR_DB  # noqa: E402
from commap.service.planning import PlanRequest, plan_route  # noqa: E402
from commap.v1 import commap_service_pb2 as pb  # noqa: E402
from commap.v1 import commap_service_pb2_grpc as pb_grpc  # noqa: E402

pytestmark = pytest.mark.integration

ORIGIN = (1.5218, 42.5063)  # Andorra la Vella (lon, lat)
DESTINATION = (1.7330, 42.5430)  # Pas de la Casa, through the Envalira tunnel
T0 = 1737633600  # 2025-01-23T12:00:00Z, the map's default departure


def latlon(lon: float, lat: float) -> pb.LatLon:
    return pb.LatLon(latitude_deg=lat, longitude_deg=lon)


def trip(**kw: object) -> pb.PlanRouteRequest:
    return pb.PlanRouteRequest(
        endpoints=pb.Endpoints(origin=latlon(*ORIGIN), destination=latlon(*DESTINATION)),
        departure_time=Timestamp(seconds=T0),
        **kw,  # type: ignore[arg-type]
    )


def assert_serving(channel: grpc.Channel) -> None:
    """The server still answers health and a real RPC."""
    health = health_pb2_grpc.HealthStub(channel)
    assert (
        health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    assert pb_grpc.CommapServiceStub(channel).ListMaps(pb.ListMapsRequest(), timeout=5).maps


def details(error: grpc.RpcError) -> str:
    """The status details of a failed call ('' when none)."""
    return error.details() or ""


def rpc_error(call: object, *args: object, **kwargs: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        result = call(*args, **kwargs)  # type: ignore[operator]
        if hasattr(result, "__iter__") and not isinstance(result, pb.ReportMeasurementsResponse):
            list(result)
    return info.value


# -- health and reflection ----------------------------------------------------------------------
def test_health_is_serving_for_server_and_service(grpc_channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(grpc_channel)
    for service in ("", "commap.v1.CommapService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_and_describes_the_service(grpc_channel: grpc.Channel) -> None:
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    database = ProtoReflectionDescriptorDatabase(grpc_channel)
    services = set(database.get_services())
    assert {"commap.v1.CommapService", "grpc.health.v1.Health"} <= services
    service = DescriptorPool(database).FindServiceByName("commap.v1.CommapService")
    assert {m.name for m in service.methods} == {
        "ListMaps",
        "GetMap",
        "QueryCoverage",
        "PlanRoute",
        "Drive",
        "ReportMeasurements",
        "ReloadMaps",
    }


# -- maps ------------------------------------------------------------------------------------------
def test_list_maps_and_get_map(stub: pb_grpc.CommapServiceStub, andorra: CommMap) -> None:
    listing = stub.ListMaps(pb.ListMapsRequest(), timeout=10)
    assert listing.default_map_name == "andorra"
    assert [m.map_name for m in listing.maps] == ["andorra"]
    info = stub.GetMap(pb.GetMapRequest(map_name="andorra"), timeout=10).map
    assert [n.network_id for n in info.networks] == list(andorra.catalogue.ids)
    kinds = {n.network_id: n.kind for n in info.networks}
    assert (
        kinds["ad-lte"] == pb.NETWORK_KIND_TERRESTRIAL and kinds["starlink"] == pb.NETWORK_KIND_LEO
    )
    assert kinds["geo"] == pb.NETWORK_KIND_GEO
    assert {n.layer_type for n in info.networks} == {"terrestrial", "leo", "geo"}
    assert (info.extent.min_longitude_deg, info.extent.max_latitude_deg) == (1.40, 42.68)
    assert info.road_edge_count > 1000 and info.road_length_m > 100_000
    assert info.default_departure_time.seconds == T0
    assert any("OpenStreetMap" in a for a in info.attributions)
    # empty name: the default map
    assert stub.GetMap(pb.GetMapRequest(), timeout=10).map.map_name == "andorra"


def test_unknown_map_is_not_found(
    stub: pb_grpc.CommapServiceStub, grpc_channel: grpc.Channel
) -> None:
    error = rpc_error(stub.GetMap, pb.GetMapRequest(map_name="atlantis"), timeout=10)
    assert error.code() is grpc.StatusCode.NOT_FOUND and "atlantis" in details(error)
    error = rpc_error(stub.PlanRoute, trip(map_name="atlantis"), timeout=10)
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert_serving(grpc_channel)


# -- coverage --------------------------------------------------------------------------------------
def test_query_coverage_equals_library(stub: pb_grpc.CommapServiceStub, andorra: CommMap) -> None:
    lon = np.array([1.5218, 1.6000, 1.7330])
    lat = np.array([42.5063, 42.5400, 42.5430])
    t_s = np.array([T0, T0 + 600, T0 + 1200], dtype=np.float64)
    request = pb.QueryCoverageRequest(
        points=[
            pb.CoveragePoint(position=latlon(x, y), time=Timestamp(seconds=int(t)))
            for x, y, t in zip(lon, lat, t_s, strict=True)
        ]
    )
    response = stub.QueryCoverage(request, timeout=30)
    expected = andorra.quality_at(lon, lat, t_s)
    assert len(response.points) == 3
    for i, point in enumerate(response.points):
        assert [n.network_id for n in point.networks] == list(expected.network_ids)
        for j, quality in enumerate(point.networks):
            assert quality.sinr_db == pytest.approx(expected.sinr_db[i, j])
            assert quality.confidence == pytest.approx(expected.confidence[i, j])
            assert quality.usable == (expected.sinr_db[i, j] >= USABLE_SINR_DB)
            rsrp = expected.rsrp_dbm[i, j]
            assert quality.HasField("rsrp_dbm") == bool(np.isfinite(rsrp))
            if np.isfinite(rsrp):
                assert quality.rsrp_dbm == pytest.approx(rsrp)
            sat = andorra.catalogue[quality.network_id].is_satellite
            assert quality.HasField("elevation_deg") == sat
            assert quality.provenance in (
                pb.PROVENANCE_MODELLED,
                pb.PROVENANCE_NONE,
                pb.PROVENANCE_MEASURED,
            )


def test_query_coverage_says_unknown_where_the_learned_map_has_no_data(
    cork_dir: Path, tmp_path: Path
) -> None:
    from tests.support.routes import CORK_FAR_CORNER

    server = start_server(cork_dir, tmp_path)
    channel = server.channel()
    try:
        lon = np.array([-8.387911, CORK_FAR_CORNER[0]])  # on the drives; far from every drive
        lat = np.array([51.935522, CORK_FAR_CORNER[1]])
        request = pb.QueryCoverageRequest(
            map_name="cork",
            points=[pb.CoveragePoint(position=latlon(x, y)) for x, y in zip(lon, lat, strict=True)],
            network_ids=["ie-b-lte", "ie-mno1-3g"],
        )
        response = pb_grpc.CommapServiceStub(channel).QueryCoverage(request, timeout=30)
        lte = [p.networks[0] for p in response.points]
        assert [q.unknown for q in lte] == [False, True]
        assert lte[1].provenance == pb.PROVENANCE_NONE and not lte[1].usable
        assert lte[1].sinr_db > -30.0  # the prior, not the no-signal value
        assert lte[0].provenance == pb.PROVENANCE_MEASURED
        assert not any(p.networks[1].unknown for p in response.points)  # modelled 3G
    finally:
        channel.close()
        server.stop()


def test_query_coverage_network_filter_and_default_time(stub: pb_grpc.CommapServiceStub) -> None:
    request = pb.QueryCoverageRequest(
        points=[pb.CoveragePoint(position=latlon(*ORIGIN))], network_ids=["starlink", "ad-lte"]
    )
    point = stub.QueryCoverage(request, timeout=30).points[0]
    assert [n.network_id for n in point.networks] == ["starlink", "ad-lte"]
    assert point.time.seconds == T0


# -- bad requests: right status, and the server keeps serving -------------------------------------
def _poly(n: int) -> pb.Polyline:
    lon = 1.50 + 0.2 * np.arange(n) / max(n, 1)
    return pb.Polyline(points=[latlon(float(x), 42.5) for x in lon])


BAD_UNARY = [
    ("no route", "PlanRoute", pb.PlanRouteRequest(), grpc.StatusCode.INVALID_ARGUMENT, "route"),
    (
        "latitude 91",
        "PlanRoute",
        pb.PlanRouteRequest(
            endpoints=pb.Endpoints(origin=latlon(1.52, 91.0), destination=latlon(*DESTINATION))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "endpoints.origin.latitude_deg",
    ),
    (
        "NaN longitude",
        "PlanRoute",
        pb.PlanRouteRequest(
            endpoints=pb.Endpoints(origin=latlon(math.nan, 42.5), destination=latlon(*DESTINATION))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "endpoints.origin.longitude_deg",
    ),
    (
        "outside the map",
        "PlanRoute",
        pb.PlanRouteRequest(
            endpoints=pb.Endpoints(origin=latlon(2.35, 48.85), destination=latlon(*DESTINATION))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "origin",
    ),
    (
        "huge polyline (over the point limit)",
        "PlanRoute",
        pb.PlanRouteRequest(polyline=_poly(150_000)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "polyline.points",
    ),
    (
        "bonded vehicle (the planner picks one network per segment)",
        "PlanRoute",
        pb.PlanRouteRequest(
            endpoints=pb.Endpoints(origin=latlon(*ORIGIN), destination=latlon(*DESTINATION)),
            vehicle="bonded",
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "vehicle",
    ),
    (
        "NaN in coverage",
        "QueryCoverage",
        pb.QueryCoverageRequest(points=[pb.CoveragePoint(position=latlon(1.5, math.nan))]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "points[0].position.latitude_deg",
    ),
    (
        "unknown network",
        "QueryCoverage",
        pb.QueryCoverageRequest(
            points=[pb.CoveragePoint(position=latlon(*ORIGIN))], network_ids=["x"]
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "network_ids[0]",
    ),
    (
        "unknown map",
        "QueryCoverage",
        pb.QueryCoverageRequest(map_name="nowhere"),
        grpc.StatusCode.NOT_FOUND,
        "",
    ),
]


@pytest.mark.parametrize(
    ("label", "method", "request_", "code", "field"), BAD_UNARY, ids=[b[0] for b in BAD_UNARY]
)
def test_bad_unary_requests(
    stub: pb_grpc.CommapServiceStub,
    grpc_channel: grpc.Channel,
    label: str,
    method: str,
    request_: object,
    code: grpc.StatusCode,
    field: str,
) -> None:
    error = rpc_error(getattr(stub, method), request_, timeout=30)
    assert error.code() is code, details(error)
    if field:
        assert details(error).startswith(field), details(error)
        assert ("commap-field", field) in tuple(error.trailing_metadata() or ())
    assert_serving(grpc_channel)


def test_polyline_over_the_message_size_limit_is_resource_exhausted(
    stub: pb_grpc.CommapServiceStub, grpc_channel: grpc.Channel
) -> None:
    request = pb.PlanRouteRequest(polyline=_poly(600_000))  # ~13 MB > the 8 MiB receive limit
    assert request.ByteSize() > 8 * 1024 * 1024
    error = rpc_error(stub.PlanRoute, request, timeout=30)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_serving(grpc_channel)


def _measurement(
    i: int, t_s: float, *, network_id: str = "ad-lte", sinr_db: float = 3.0
) -> pb.Measurement:
    return pb.Measurement(
        time=Timestamp(seconds=int(t_s), nanos=int((t_s % 1) * 1e9)),
        position=latlon(1.5218 + 1e-5 * i, 42.5063),
        network_id=network_id,
        sinr_db=sinr_db,
    )


def test_report_measurements_empty_stream(
    stub: pb_grpc.CommapServiceStub, grpc_channel: grpc.Channel
) -> None:
    error = rpc_error(stub.ReportMeasurements, iter(()), timeout=10)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and details(error).startswith(
        "measurements"
    )
    error = rpc_error(
        stub.ReportMeasurements, iter([pb.ReportMeasurementsRequest(vehicle_id="v")]), timeout=10
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert_serving(grpc_channel)


def test_report_measurements_out_of_order_stores_nothing(
    stub: pb_grpc.CommapServiceStub, grpc_channel: grpc.Channel, grpc_server: ServerProcess
) -> None:
    before = sorted(grpc_server.measurements_dir.rglob("*.parquet"))
    batches = [
        pb.ReportMeasurementsRequest(
            vehicle_id="v-ooo", measurements=[_measurement(0, T0 + 10), _measurement(1, T0 + 11)]
        ),
        pb.ReportMeasurementsRequest(vehicle_id="v-ooo", measurements=[_measurement(2, T0 + 5)]),
    ]
    error = rpc_error(stub.ReportMeasurements, iter(batches), timeout=10)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert details(error).startswith("measurements[2].time") and "out of order" in details(error)
    assert sorted(grpc_server.measurements_dir.rglob("*.parquet")) == before  # all or nothing
    assert_serving(grpc_channel)


def test_report_measurements_bad_values_name_the_row(stub: pb_grpc.CommapServiceStub) -> None:
    batch = pb.ReportMeasurementsRequest(
        vehicle_id="v", measurements=[_measurement(0, T0), _measurement(1, T0 + 1, sinr_db=500.0)]
    )
    error = rpc_error(stub.ReportMeasurements, iter([batch]), timeout=10)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and "row 1" in details(error)
    unknown = pb.ReportMeasurementsRequest(
        vehicle_id="v", measurements=[_measurement(0, T0, network_id="zz")]
    )
    error = rpc_error(stub.ReportMeasurements, iter([unknown]), timeout=10)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and "zz" in details(error)


def test_reported_measurements_are_stored_and_used(
    stub: pb_grpc.CommapServiceStub, grpc_server: ServerProcess
) -> None:
    # a spot in Arinsal (off the trip the plan tests use, so their map stays the library's)
    # where the fleet finds ad-lte far worse than the model says
    spot = (1.4846, 42.5722)
    before = (
        stub.QueryCoverage(
            pb.QueryCoverageRequest(
                points=[pb.CoveragePoint(position=latlon(*spot))], network_ids=["ad-lte"]
            ),
            timeout=30,
        )
        .points[0]
        .networks[0]
    )
    assert before.provenance != pb.PROVENANCE_MEASURED
    records = [
        pb.Measurement(
            time=Timestamp(seconds=T0 + k),
            position=latlon(*spot),
            network_id="ad-lte",
            sinr_db=-12.0 - 0.1 * k,
            rsrp_dbm=-121.0,
        )
        for k in range(8)
    ]
    half = len(records) // 2
    stream = [
        pb.ReportMeasurementsRequest(
            map_name="andorra", vehicle_id="fleet-7", measurements=records[:half]
        ),
        pb.ReportMeasurementsRequest(
            map_name="andorra", vehicle_id="fleet-7", measurements=records[half:]
        ),
    ]
    ack = stub.ReportMeasurements(iter(stream), timeout=30)
    assert ack.accepted_count == 8 and ack.stored_count >= 8 and ack.batch_id
    stored = FleetStore(grpc_server.measurements_dir).read("andorra")
    mine = stored[stored["drive_id"] == "fleet-7"]
    assert len(mine) == 8 and mine["sinr_db"].max() == pytest.approx(-12.0)
    # the map requests use takes stored batches in apart from the upload, within its interval
    query = pb.QueryCoverageRequest(
        points=[pb.CoveragePoint(position=latlon(*spot))], network_ids=["ad-lte"]
    )
    deadline = time.monotonic() + 30
    after = stub.QueryCoverage(query, timeout=30).points[0].networks[0]
    while after.provenance != pb.PROVENANCE_MEASURED and time.monotonic() < deadline:
        time.sleep(0.2)
        after = stub.QueryCoverage(query, timeout=30).points[0].networks[0]
    assert after.provenance == pb.PROVENANCE_MEASURED and after.sample_count >= 8
    assert after.sinr_db < -5.0 and not after.usable
    info = stub.GetMap(pb.GetMapRequest(), timeout=10).map
    assert info.measurement_count >= 8


# -- planning --------------------------------------------------------------------------------------
def test_plan_over_grpc_equals_library_plan(
    stub: pb_grpc.CommapServiceStub, andorra: CommMap
) -> None:
    from server.client import plan_from_message

    response = stub.PlanRoute(trip(application_class="teleoperation"), timeout=60)
    local = plan_route(
        andorra,
        PlanRequest(origin=ORIGIN, destination=DESTINATION, departure_s=T0, app="teleoperation"),
    )
    remote = plan_from_message(response.plan, andorra.catalogue.ids)
    expected = local.plan
    assert remote.segment_networks == expected.segment_networks
    assert len(remote) == len(expected) > 500
    for name in ("lon", "lat", "distance_m", "length_m", "eta_s", "duration_s", "outage_risk"):
        np.testing.assert_allclose(
            getattr(remote, name), getattr(expected, name), rtol=1e-12, atol=1e-9
        )
    np.testing.assert_array_equal(remote.provenance, expected.provenance)
    assert remote.handovers == expected.handovers
    assert remote.totals == expected.totals
    assert (remote.solver.name, remote.solver.status) == (
        expected.solver.name,
        expected.solver.status,
    )
    assert remote.solver.objective == pytest.approx(expected.solver.objective)
    assert remote.app == "teleoperation" and remote.departure_s == T0
    # the route and its tunnels come along
    plan = response.plan
    assert plan.route.name == local.route.name and len(plan.route.points) == len(local.route.lon)
    assert plan.route.tunnel_length_m == pytest.approx(
        float(local.corridor.length_m[local.corridor.in_tunnel].sum())
    )
    assert sum(s.in_tunnel for s in plan.segments) == int(local.corridor.in_tunnel.sum()) > 0
    assert plan.segment_m == 50.0 and plan.map_name == "andorra"
    assert plan.handovers[0].time.seconds == int(T0 + expected.handovers[0].eta_s)


def test_the_vehicle_set_up_travels_with_a_plan_request(
    grpc_server: ServerProcess, andorra: CommMap
) -> None:
    from commap.plan import kernels
    from server.client import plan_remote

    # the server plans with the compiled DP; so does this process, so that a switch between
    # two networks that cost exactly the same (both perfect) is placed alike
    kernels.warm_up()
    plans = {}
    for vehicle in ("single_modem", "dual_modem", "satellite_on_demand"):
        request = PlanRequest(
            origin=ORIGIN, destination=DESTINATION, departure_s=T0, vehicle=vehicle
        )
        remote = plan_remote(grpc_server.target, "andorra", request, timeout_s=120)
        local = plan_route(andorra, request)
        assert remote.plan.handovers == local.plan.handovers
        assert remote.plan.totals == local.plan.totals
        plans[vehicle] = remote.plan
    # a standby modem covers the active link's gaps: the server planned for it
    one, two = plans["single_modem"].totals, plans["dual_modem"].totals
    assert two.expected_loss_s < one.expected_loss_s
    # the lead time crosses the wire: wake the terminal 120 s before each switch to it
    woken = [h.prepare_s for h in plans["satellite_on_demand"].handovers if h.prepare_s]
    assert woken and set(woken) == {120.0}


def test_commap_plan_prints_a_plan_made_by_the_server(grpc_server: ServerProcess) -> None:
    """The README's ``commap plan --server``: the same tables as a local plan, no traceback."""
    from typer.testing import CliRunner

    from commap.cli import app

    done = CliRunner().invoke(
        app,
        ["plan", "--server", grpc_server.target, "--map", "andorra",
         "--from", "42.5063,1.5218", "--to", "42.5430,1.7330"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "networks along the route" in done.output and "handovers" in done.output
    assert "expected service loss" in done.output


def test_python_client_returns_the_library_plan(
    grpc_server: ServerProcess, andorra: CommMap
) -> None:
    from server.client import plan_remote

    request = PlanRequest(origin=ORIGIN, destination=DESTINATION, departure_s=T0, max_handovers=6)
    remote = plan_remote(grpc_server.target, "andorra", request, timeout_s=120)
    local = plan_route(andorra, request)
    assert remote.plan.segment_networks == local.plan.segment_networks
    assert remote.plan.handovers == local.plan.handovers
    assert remote.plan.totals == local.plan.totals
    assert remote.plan.totals.handovers <= 6 and remote.plan.solver.name == "cp-sat"
    assert remote.plan.to_dict()["segments"] == local.plan.to_dict()["segments"]
    assert remote.summary() == {**local.summary(), "length_m": remote.summary()["length_m"]}
    assert remote.summary()["length_m"] == pytest.approx(local.summary()["length_m"])
    assert remote.route.name == local.route.name and remote.choice is None
    # the reply names the orbital element epoch of every satellite network it planned with
    assert local.plan.element_epochs and remote.plan.element_epochs.keys() == (
        local.plan.element_epochs.keys()
    )
    for nid, epoch_s in local.plan.element_epochs.items():
        assert remote.plan.element_epochs[nid] == pytest.approx(epoch_s, abs=1e-6)
    np.testing.assert_allclose(remote.route.lon, local.route.lon)
    assert (
        remote.route.in_tunnel.any() and remote.route.speed_mps.shape == local.route.speed_mps.shape
    )


def test_python_client_asks_for_stale_elements_only_when_told(grpc_server: ServerProcess) -> None:
    from commap.errors import InvalidInputError
    from server.client import plan_remote

    late = T0 + 60 * 86400.0  # two months after the map's orbital elements
    request = PlanRequest(origin=ORIGIN, destination=DESTINATION, departure_s=late)
    with pytest.raises(InvalidInputError, match="stale"):
        plan_remote(grpc_server.target, "andorra", request, timeout_s=120)
    told = PlanRequest(
        origin=ORIGIN, destination=DESTINATION, departure_s=late, allow_stale_elements=True
    )
    plan = plan_remote(grpc_server.target, "andorra", told, timeout_s=120).plan
    assert plan.departure_s == late and plan.element_epochs


def test_python_client_alternatives_table(grpc_server: ServerProcess, andorra: CommMap) -> None:
    from server.client import plan_remote

    request = PlanRequest(origin=ORIGIN, destination=DESTINATION, departure_s=T0, alternatives=3)
    remote = plan_remote(grpc_server.target, "", request, timeout_s=120)
    local = plan_route(andorra, request)
    assert remote.choice is not None and local.choice is not None
    assert remote.choice.best == local.choice.best
    for r, e in zip(remote.choice.table(), local.choice.table(), strict=True):
        assert r == pytest.approx(e)


def test_python_client_maps_statuses_to_library_errors(grpc_server: ServerProcess) -> None:
    from commap.errors import InvalidInputError, MapNotFoundError
    from server.client import plan_remote

    request = PlanRequest(origin=ORIGIN, destination=DESTINATION)
    with pytest.raises(MapNotFoundError):
        plan_remote(grpc_server.target, "atlantis", request)
    with pytest.raises(InvalidInputError) as info:
        plan_remote(
            grpc_server.target, "", PlanRequest(origin=(2.35, 48.85), destination=DESTINATION)
        )
    assert info.value.field == "origin"


def test_plan_route_alternatives(stub: pb_grpc.CommapServiceStub) -> None:
    response = stub.PlanRoute(trip(alternatives=3, omit_segments=True), timeout=120)
    alternatives = response.alternatives
    assert len(alternatives) >= 2 and sum(a.picked for a in alternatives) == 1
    picked = next(a for a in alternatives if a.picked)
    feasible = [a for a in alternatives if a.feasible]
    assert picked.score_s == min(a.score_s for a in feasible)
    assert response.plan.totals.length_m == pytest.approx(picked.length_m)
    assert not response.plan.segments and all(not a.plan.segments for a in alternatives)
    assert all(a.plan.totals.handover_count == a.handover_count for a in feasible)


def test_a_plan_without_handovers_is_made_not_refused(
    stub: pb_grpc.CommapServiceStub, grpc_channel: grpc.Channel
) -> None:
    # the Envalira tunnel and the valleys leave gaps; one network throughout is still a plan,
    # and it says what it loses
    free = stub.PlanRoute(trip(), timeout=120).plan
    still = stub.PlanRoute(trip(constraints=pb.Constraints(max_handovers=0)), timeout=120).plan
    assert len(still.handovers) == 0 and len({s.network_id for s in still.segments}) == 1
    assert still.totals.expected_loss_s > free.totals.expected_loss_s
    assert_serving(grpc_channel)


def test_unknown_application_class_names_the_field(stub: pb_grpc.CommapServiceStub) -> None:
    error = rpc_error(stub.PlanRoute, trip(application_class="karaoke"), timeout=30)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert details(error).startswith("application_class") and "teleoperation" in details(error)


def test_too_short_deadline_is_deadline_exceeded_not_a_hang(
    stub: pb_grpc.CommapServiceStub, grpc_channel: grpc.Channel
) -> None:
    for timeout_s in (0.001, 0.05, 0.2):
        start = time.monotonic()
        error = rpc_error(stub.PlanRoute, trip(alternatives=3), timeout=timeout_s)
        # out of time, or refused at once because its estimated work cannot fit in it
        refused = error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED or (
            refused and "deadline" in details(error)
        ), details(error)
        assert time.monotonic() - start < timeout_s + 2.0
    assert_serving(grpc_channel)


# -- live drive ------------------------------------------------------------------------------------
def _ts(t_s: float) -> Timestamp:
    whole = math.floor(t_s)
    return Timestamp(seconds=whole, nanos=min(round((t_s - whole) * 1e9), 999_999_999))


def _update(
    t_s: float, lon: float, lat: float, measurements: tuple[pb.Measurement, ...] = ()
) -> pb.DriveRequest:
    return pb.DriveRequest(
        update=pb.PositionUpdate(
            fix=pb.PositionFix(time=_ts(t_s), position=latlon(lon, lat)), measurements=measurements
        )
    )


class DriveCall:
    """A Drive stream fed from a queue so that the test can react to what the server says."""

    def __init__(
        self, stub: pb_grpc.CommapServiceStub, start: pb.DriveStart, timeout_s: float = 120.0
    ) -> None:
        self._queue: queue.Queue[pb.DriveRequest | None] = queue.Queue()
        self._queue.put(pb.DriveRequest(start=start))
        self.responses = stub.Drive(iter(self._queue.get, None), timeout=timeout_s)

    def send(self, request: pb.DriveRequest) -> None:
        self._queue.put(request)

    def close(self) -> list[pb.DriveResponse]:
        self._queue.put(None)
        return list(self.responses)


def _segment_fixes(plan: pb.Plan) -> list[tuple[float, float, float]]:
    """(t_s, lon, lat) at every segment centre, at the planned times."""
    departure = plan.departure_time.seconds + plan.departure_time.nanos * 1e-9
    return [
        (departure + s.eta_s + s.duration_s / 2, s.position.longitude_deg, s.position.latitude_deg)
        for s in plan.segments
    ]


def test_drive_announces_every_handover_ahead_of_time(stub: pb_grpc.CommapServiceStub) -> None:
    call = DriveCall(stub, pb.DriveStart(plan=trip(), vehicle_id="car-1", lead_time_s=8.0))
    first = next(call.responses)
    assert first.WhichOneof("event") == "plan"
    assert first.plan.plan_version == 0 and first.plan.reason == pb.PLAN_REASON_INITIAL
    plan = first.plan.plan
    for t_s, lon, lat in _segment_fixes(plan):
        call.send(_update(t_s, lon, lat))
    rest = call.close()
    instructions = [r for r in rest if r.WhichOneof("event") == "instruction"]
    assert all(
        r.WhichOneof("event") == "instruction" for r in rest
    )  # no re-plan on the planned route
    assert [i.instruction.handover.distance_m for i in instructions] == [
        h.distance_m for h in plan.handovers
    ]
    # the closed-loop rules the evaluation drives plans with travel with the plan
    rules = first.plan.execution_rules
    assert rules.min_target_sinr_db == pytest.approx(DEFAULT_EXECUTION_RULES.min_target_sinr_db)
    assert rules.weak_sinr_db == pytest.approx(DEFAULT_EXECUTION_RULES.weak_sinr_db)
    assert rules.weak_ttt_s == pytest.approx(DEFAULT_EXECUTION_RULES.weak_ttt_s)
    assert rules.weak_ttt_per_interruption == pytest.approx(
        DEFAULT_EXECUTION_RULES.weak_ttt_per_interruption
    )
    for r in instructions:
        ins = r.instruction
        assert ins.plan_version == 0
        assert ins.min_target_sinr_db == pytest.approx(rules.min_target_sinr_db)
        assert ins.handover.from_network_id != ins.handover.to_network_id
        assert r.progress.off_route_m < 30.0
        assert ins.distance_to_go_m == pytest.approx(
            ins.handover.distance_m - r.progress.distance_m
        )
        if ins.handover.eta_s > 15.0:
            assert ins.time_to_go_s >= 8.0
    assert call.responses.code() is grpc.StatusCode.OK


def test_a_fleet_of_concurrent_drives_all_get_their_plans_and_instructions(
    stub: pb_grpc.CommapServiceStub, grpc_server: ServerProcess
) -> None:
    """Forty vehicles start the same trip at once and drive it, their streams interleaved."""
    import asyncio

    alone = stub.PlanRoute(trip(), timeout=120).plan
    vehicles = 40

    async def drive(fleet: pb_grpc.CommapServiceStub, index: int) -> list[pb.DriveResponse]:
        start = pb.DriveRequest(start=pb.DriveStart(plan=trip(), vehicle_id=f"fleet-{index}"))
        while True:  # a refused start is retried, as a client does
            call = fleet.Drive(timeout=120)
            await call.write(start)
            try:
                responses = [await call.read()]
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
                await asyncio.sleep(0.1)
        for k, (t_s, lon, lat) in enumerate(_segment_fixes(responses[0].plan.plan)):
            await call.write(_update(t_s, lon, lat))
            if k % 20 == 0:
                await asyncio.sleep(0)  # let the other vehicles' fixes in between
        await call.done_writing()
        while (response := await call.read()) is not grpc.aio.EOF:
            responses.append(response)
        assert await call.code() is grpc.StatusCode.OK
        return responses

    async def fleet() -> list[list[pb.DriveResponse]]:
        async with grpc.aio.insecure_channel(grpc_server.target) as channel:
            fleet_stub = pb_grpc.CommapServiceStub(channel)
            return await asyncio.gather(*(drive(fleet_stub, i) for i in range(vehicles)))

    handovers = [h.distance_m for h in alone.handovers]
    assert handovers  # the trip has switches to announce
    for first, *rest in asyncio.run(fleet()):
        assert first.plan.plan.totals == alone.totals  # the plan a lone vehicle gets
        assert [h.distance_m for h in first.plan.plan.handovers] == handovers
        assert [r.WhichOneof("event") for r in rest] == ["instruction"] * len(handovers)
        assert [r.instruction.handover.distance_m for r in rest] == handovers


def test_drive_replans_when_the_vehicle_leaves_its_route(stub: pb_grpc.CommapServiceStub) -> None:
    call = DriveCall(stub, pb.DriveStart(plan=trip(omit_segments=False), off_route_distance_m=80.0))
    plan = next(call.responses).plan.plan
    fixes = _segment_fixes(plan)[100:140]
    for t_s, lon, lat in fixes:
        call.send(_update(t_s, lon, lat))
    t_s, lon, lat = fixes[-1]
    for k in range(1, 8):  # 400 m east of the road, for 7 s
        call.send(_update(t_s + k, lon + 0.005, lat))
    rest = call.close()
    plans = [r for r in rest if r.WhichOneof("event") == "plan"]
    assert len(plans) == 1, [r.WhichOneof("event") for r in rest]
    new = plans[0].plan
    assert new.plan_version == 1 and new.reason == pb.PLAN_REASON_OFF_ROUTE
    assert "from the planned route" in new.explanation
    assert plans[0].progress.off_route_m > 80.0
    assert new.plan.departure_time.seconds >= int(t_s)
    end = new.plan.route.points[-1]
    assert (
        abs(end.longitude_deg - DESTINATION[0]) < 0.01
        and abs(end.latitude_deg - DESTINATION[1]) < 0.01
    )


def test_drive_replans_when_measurements_contradict_the_map(
    stub: pb_grpc.CommapServiceStub, andorra: CommMap
) -> None:
    call = DriveCall(stub, pb.DriveStart(plan=trip()))
    plan = next(call.responses).plan.plan
    j = andorra.catalogue.index("ad-lte")
    fixes = _segment_fixes(plan)
    # a stretch mid-route that the plan covers with ad-lte and the map rates clearly usable
    spot = next(
        i
        for i in range(len(fixes) // 3, len(fixes) - 5)
        if all(plan.segments[i + k].network_id == "ad-lte" for k in range(5))
        and andorra.quality_at([fixes[i][1]], [fixes[i][2]], [fixes[i][0]]).sinr_db[0, j] > 5.0
    )
    for t_s, lon, lat in fixes[spot - 10 : spot]:
        call.send(_update(t_s, lon, lat))
    for t_s, lon, lat in fixes[spot : spot + 4]:
        bad = pb.Measurement(
            time=_ts(t_s),
            position=latlon(lon, lat),
            network_id="ad-lte",
            sinr_db=-14.0,
            connected=False,
        )
        call.send(_update(t_s, lon, lat, (bad,)))
    rest = call.close()
    plans = [r.plan for r in rest if r.WhichOneof("event") == "plan"]
    assert len(plans) == 1
    assert plans[0].reason == pb.PLAN_REASON_MEASUREMENT_CONTRADICTION
    assert "contradict the map" in plans[0].explanation
    # the new plan starts where the vehicle is, on the network it is on (leaving it would be a
    # handover of the new plan), and believes the vehicle: ad-lte measured failing there
    first = plans[0].plan.segments[0]
    assert first.network_id == "ad-lte" and first.provenance == pb.PROVENANCE_MEASURED
    assert first.outage_probability > 0.5


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ((), "start"),
        ((_update(T0, *ORIGIN),), "start"),
        (
            (
                pb.DriveRequest(start=pb.DriveStart(plan=trip())),
                pb.DriveRequest(start=pb.DriveStart(plan=trip())),
            ),
            "start",
        ),
        (
            (
                pb.DriveRequest(start=pb.DriveStart(plan=trip())),
                _update(T0 + 10, *ORIGIN),
                _update(T0 + 5, *ORIGIN),
            ),
            "update.fix.time",
        ),
        (
            (pb.DriveRequest(start=pb.DriveStart(plan=trip())), _update(T0 + 10, math.nan, 42.5)),
            "update.fix.position.longitude_deg",
        ),
        ((pb.DriveRequest(start=pb.DriveStart(plan=pb.PlanRouteRequest())),), "route"),
    ],
    ids=["empty stream", "no start", "second start", "out-of-order fixes", "NaN fix", "no route"],
)
def test_bad_drive_streams(
    stub: pb_grpc.CommapServiceStub,
    grpc_channel: grpc.Channel,
    messages: tuple[pb.DriveRequest, ...],
    field: str,
) -> None:
    error = rpc_error(stub.Drive, iter(messages), timeout=60)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, details(error)
    assert details(error).startswith(field), details(error)
    assert_serving(grpc_channel)


# -- limits and shutdown (a small server of its own) ----------------------------------------------
@pytest.fixture(scope="module")
def small_server(
    andorra_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = start_server(
        andorra_dir,
        tmp_path_factory.mktemp("small-server"),
        extra_args=("--solve-workers", "1", "--solve-queue", "0", "--max-drive-streams", "1"),
        env={"COMMAP_SHUTDOWN_GRACE_S": "5"},
    )
    yield server
    server.stop()


def test_overload_is_resource_exhausted_and_the_server_recovers(
    small_server: ServerProcess,
) -> None:
    with small_server.channel() as channel:
        stub = pb_grpc.CommapServiceStub(channel)

        def plan() -> grpc.StatusCode:
            try:
                stub.PlanRoute(trip(alternatives=3, omit_segments=True), timeout=120)
            except grpc.RpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda _: plan(), range(6)))
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and grpc.StatusCode.OK in codes
        assert set(codes) <= {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OK}
        assert plan() is grpc.StatusCode.OK  # capacity is back once the solves finished
        assert_serving(channel)


def test_drive_stream_limit(small_server: ServerProcess) -> None:
    with small_server.channel() as channel:
        stub = pb_grpc.CommapServiceStub(channel)
        first = DriveCall(stub, pb.DriveStart(plan=trip(omit_segments=True)))
        assert next(first.responses).WhichOneof("event") == "plan"
        error = rpc_error(
            stub.Drive, iter([pb.DriveRequest(start=pb.DriveStart(plan=trip()))]), timeout=30
        )
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        first.close()
        assert first.responses.code() is grpc.StatusCode.OK


def test_sigterm_stops_gracefully(small_server: ServerProcess) -> None:
    """Health turns NOT_SERVING, an open drive is told to reconnect, the process exits 0."""
    with small_server.channel() as channel:
        stub = pb_grpc.CommapServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        drive = DriveCall(stub, pb.DriveStart(plan=trip(omit_segments=True)))
        plan = next(drive.responses).plan.plan
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        small_server.process.send_signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        drive.send(_update(T0 + 1, *ORIGIN))
        with pytest.raises(grpc.RpcError) as info:
            drive.close()
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE, details(info.value)
        assert plan.segments == []
    assert small_server.process.wait(timeout=30) == 0
    log = small_server.log_text()
    assert "shutting down" in log and "stopped" in log


def test_ctrl_c_stops_server_and_children_without_traceback(
    andorra_dir: Path, tmp_path: Path
) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it): a clean exit."""
    import os

    server = start_server(andorra_dir, tmp_path, new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "upload process" not in server.log_text():  # the child has started
            assert time.monotonic() < deadline, server.log_text()
            time.sleep(0.1)
        os.killpg(server.pid, signal.SIGINT)
        assert server.process.wait(timeout=60) == 0
    finally:
        server.kill()
    log = server.log_text()
    assert "stopped" in log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log


def test_access_log_has_one_line_per_call_with_latency(
    stub: pb_grpc.CommapServiceStub, grpc_server: ServerProcess
) -> None:
    stub.GetMap(pb.GetMapRequest(), timeout=10)
    rpc_error(stub.GetMap, pb.GetMapRequest(map_name="nowhere-for-the-log"), timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [line for line in grpc_server.log_text().splitlines() if "server.access" in line]
        if any("status=NOT_FOUND" in line for line in lines):
            break
        time.sleep(0.05)
    assert any(
        "GetMap peer=ipv4:127.0.0.1" in line and "status=OK latency_ms=" in line for line in lines
    )
    assert any("GetMap" in line and "status=NOT_FOUND" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [(("--port", "99999"), 2, "port"), (("--port", "0", "--map", "atlantis"), 1, "atlantis")],
)
def test_server_refuses_to_start_misconfigured(
    args: tuple[str, ...], status: int, message: str
) -> None:
    import subprocess
    import sys

    from tests.support.paths import REPO

    run = subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == status
    assert message in run.stderr
