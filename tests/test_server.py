"""The real gRPC server on port 0: every RPC, streaming, health, reflection, errors, limits.

The server runs as a subprocess (``python -m server``) on the built default map; plans made over
gRPC are compared with plans the library makes in this process for the same request.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest_server import (  # noqa: F401  (fixtures)
    ServerProcess,
    ensure_stubs,
    grpc_channel,
    grpc_server,
    start_server,
    stub,
)

ensure_stubs()

from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from commap.comm_map import CommMap  # noqa: E402
from commap.measurements import read_records_dir  # noqa: E402
from commap.planning import PlanRequest, plan_route  # noqa: E402
from commap.quality import Provenance  # noqa: E402
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
    assert error.code() is grpc.StatusCode.NOT_FOUND and "atlantis" in error.details()
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
            assert quality.usable == (expected.sinr_db[i, j] >= -5.0)
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
    assert error.code() is code, error.details()
    if field:
        assert error.details().startswith(field), error.details()
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
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith(
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
    before = sorted(grpc_server.measurements_dir.rglob("*.csv"))
    batches = [
        pb.ReportMeasurementsRequest(
            vehicle_id="v-ooo", measurements=[_measurement(0, T0 + 10), _measurement(1, T0 + 11)]
        ),
        pb.ReportMeasurementsRequest(vehicle_id="v-ooo", measurements=[_measurement(2, T0 + 5)]),
    ]
    error = rpc_error(stub.ReportMeasurements, iter(batches), timeout=10)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("measurements[2].time") and "out of order" in error.details()
    assert sorted(grpc_server.measurements_dir.rglob("*.csv")) == before  # all or nothing
    assert_serving(grpc_channel)


def test_report_measurements_bad_values_name_the_row(stub: pb_grpc.CommapServiceStub) -> None:
    batch = pb.ReportMeasurementsRequest(
        vehicle_id="v", measurements=[_measurement(0, T0), _measurement(1, T0 + 1, sinr_db=500.0)]
    )
    error = rpc_error(stub.ReportMeasurements, iter([batch]), timeout=10)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and "row 1" in error.details()
    unknown = pb.ReportMeasurementsRequest(
        vehicle_id="v", measurements=[_measurement(0, T0, network_id="zz")]
    )
    error = rpc_error(stub.ReportMeasurements, iter([unknown]), timeout=10)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and "zz" in error.details()


def test_reported_measurements_are_stored_and_used(
    stub: pb_grpc.CommapServiceStub, grpc_server: ServerProcess
) -> None:
    # a spot near Soldeu where the fleet finds ad-lte far worse than the model says
    spot = (1.6690, 42.5766)
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
    stored = read_records_dir(grpc_server.measurements_dir / "andorra")
    mine = stored[stored["trace"] == "fleet-7"]
    assert len(mine) == 8 and mine["sinr_db"].max() == pytest.approx(-12.0)
    after = (
        stub.QueryCoverage(
            pb.QueryCoverageRequest(
                points=[pb.CoveragePoint(position=latlon(*spot))], network_ids=["ad-lte"]
            ),
            timeout=30,
        )
        .points[0]
        .networks[0]
    )
    assert after.provenance == pb.PROVENANCE_MEASURED and after.sample_count >= 8
    assert after.sinr_db < -5.0 and not after.usable
    info = stub.GetMap(pb.GetMapRequest(), timeout=10).map
    assert info.measurement_count >= 8
