"""Status codes that mean what they say, on the real server: values out of range are
INVALID_ARGUMENT, storage that cannot take writes is UNAVAILABLE (retryable, nothing stored),
INTERNAL is left for bugs; a damaged store in read-only storage stops start-up with one line;
``Drive`` refuses the measurements ``ReportMeasurements`` refuses."""

from __future__ import annotations

import calendar
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support.paths import REPO
from tests.support.server_harness import ServerProcess, ensure_stubs, start_server
from tests.support.storage import full, read_only, require_mount_namespaces

ensure_stubs()

from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402

from commap.map.store import FleetStore  # noqa: E402
from commap.v1 import commap_service_pb2 as pb  # noqa: E402
from commap.v1 import commap_service_pb2_grpc as pb_grpc  # noqa: E402

pytestmark = pytest.mark.integration

T0 = 1737633600
ORIGIN = pb.LatLon(latitude_deg=42.5063, longitude_deg=1.5218)
DESTINATION = pb.LatLon(latitude_deg=42.5430, longitude_deg=1.7330)
LAST_MINUTE = calendar.timegm((9999, 12, 31, 23, 59, 0))  # a trip from here ends in year 10000


def _error(call: object, *args: object, **kwargs: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        result = call(*args, **kwargs)  # type: ignore[operator]
        if hasattr(result, "__iter__") and not isinstance(result, pb.PlanRouteResponse):
            list(result)  # a response stream fails when read
    return info.value


def _polyline(**kw: object) -> pb.PlanRouteRequest:
    return pb.PlanRouteRequest(
        polyline=pb.Polyline(points=[ORIGIN, DESTINATION], **kw),  # type: ignore[arg-type]
        omit_segments=True,
    )


# -- values out of range ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "request_",
    [
        _polyline(speed_mps=1e-300),
        _polyline(speed_mps=1e-9),
        pb.PlanRouteRequest(
            polyline=pb.Polyline(points=[ORIGIN, DESTINATION]),
            departure_time=Timestamp(seconds=LAST_MINUTE),
            allow_stale_elements=True,
        ),
    ],
    ids=["speed 1e-300 m/s", "speed 1e-9 m/s", "departure 9999-12-31T23:59"],
)
def test_a_trip_past_the_last_date_is_invalid_argument(
    stub: pb_grpc.CommapServiceStub, request_: pb.PlanRouteRequest
) -> None:
    for error in (
        _error(stub.PlanRoute, request_, timeout=60),
        _error(
            stub.Drive,
            iter([pb.DriveRequest(start=pb.DriveStart(plan=request_, vehicle_id="late"))]),
            timeout=60,
        ),
    ):
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert "ends past 9999-12-31T23:59:59Z" in str(error.details())
        assert dict(error.trailing_metadata() or ())["commap-field"] == "departure"


def test_a_trip_ending_on_the_last_day_is_planned(stub: pb_grpc.CommapServiceStub) -> None:
    departure = LAST_MINUTE - 3 * 3600
    request = pb.PlanRouteRequest(
        polyline=pb.Polyline(points=[ORIGIN, DESTINATION]),
        departure_time=Timestamp(seconds=departure),
        allow_stale_elements=True,
    )
    plan = stub.PlanRoute(request, timeout=60).plan
    assert plan.departure_time.seconds == departure and plan.segments
    assert all(h.time.ToDatetime().year == 9999 for h in plan.handovers)


# -- Drive and ReportMeasurements: one check ---------------------------------------------------------
def _measurement(**values: object) -> pb.Measurement:
    fields: dict[str, object] = {"network_id": "ad-lte", "sinr_db": 5.0, **values}
    return pb.Measurement(time=Timestamp(seconds=T0), position=ORIGIN, **fields)  # type: ignore[arg-type]


def _drive_with(stub: pb_grpc.CommapServiceStub, measurement: pb.Measurement) -> list[str]:
    start = pb.DriveStart(plan=_polyline(), vehicle_id="checked")
    start.plan.departure_time.CopyFrom(Timestamp(seconds=T0))
    update = pb.DriveRequest(
        update=pb.PositionUpdate(
            fix=pb.PositionFix(time=Timestamp(seconds=T0), position=ORIGIN),
            measurements=[measurement],
        )
    )
    responses = stub.Drive(iter([pb.DriveRequest(start=start), update]), timeout=60)
    return [r.WhichOneof("event") for r in responses]


def _report_with(
    stub: pb_grpc.CommapServiceStub, measurement: pb.Measurement
) -> pb.ReportMeasurementsResponse:
    request = pb.ReportMeasurementsRequest(vehicle_id="checked", measurements=[measurement])
    response: pb.ReportMeasurementsResponse = stub.ReportMeasurements(iter([request]), timeout=60)
    return response


@pytest.mark.parametrize(
    ("values", "column"),
    [
        ({"sinr_db": 1e6}, "sinr_db"),
        ({"rsrp_dbm": 20.0}, "rsrp_dbm"),
        ({"rtt_ms": -1.0}, "rtt_ms"),
        ({"network_id": "no-such-net"}, "network_id"),
    ],
    ids=["sinr 1e6 dB", "rsrp +20 dBm", "negative rtt", "unknown network"],
)
def test_drive_refuses_the_measurements_report_refuses(
    stub: pb_grpc.CommapServiceStub, values: dict[str, object], column: str
) -> None:
    bad = _measurement(**values)
    report = _error(_report_with, stub, bad)
    drive = _error(_drive_with, stub, bad)
    for error in (report, drive):
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert column in str(error.details())
    # the same words, under each RPC's own field name
    assert str(report.details()).split(": ", 1)[1].replace("measurements", "M") == str(
        drive.details()
    ).split(": ", 1)[1].replace("update.measurements", "M")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"time": Timestamp(seconds=4_102_444_800)}, "time"),  # 2100
        ({"position": pb.LatLon(latitude_deg=48.85, longitude_deg=2.35)}, "position"),  # Paris
    ],
    ids=["from the future", "far outside the map"],
)
def test_drive_refuses_implausible_measurements_as_uploads_do(
    stub: pb_grpc.CommapServiceStub, change: dict[str, object], field: str
) -> None:
    bad = _measurement()
    for name, value in change.items():
        getattr(bad, name).CopyFrom(value)
    for error in (_error(_report_with, stub, bad), _error(_drive_with, stub, bad)):
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert f"[0].{field}" in str(error.details())


def test_drive_and_report_accept_the_same_good_measurement(
    stub: pb_grpc.CommapServiceStub,
) -> None:
    good = _measurement(sinr_db=12.0, rsrp_dbm=-90.0)
    assert _report_with(stub, good).accepted_count == 1
    assert _drive_with(stub, good)[0] == "plan"


# -- storage that cannot take writes -----------------------------------------------------------------
def _report(server: ServerProcess, vehicle: str, n: int = 5) -> pb.ReportMeasurementsResponse:
    records = [
        pb.Measurement(
            time=Timestamp(seconds=T0 + k),
            position=pb.LatLon(latitude_deg=42.5080, longitude_deg=1.5300 + 1e-5 * k),
            network_id="ad-lte",
            sinr_db=5.0 + k,
        )
        for k in range(n)
    ]
    with server.channel() as channel:
        response: pb.ReportMeasurementsResponse = pb_grpc.CommapServiceStub(
            channel
        ).ReportMeasurements(
            iter([pb.ReportMeasurementsRequest(vehicle_id=vehicle, measurements=records)]),
            timeout=60,
        )
    return response


def _stored_count(server: ServerProcess) -> int:
    with server.channel() as channel:
        stub = pb_grpc.CommapServiceStub(channel)
        return int(stub.GetMap(pb.GetMapRequest(), timeout=30).map.measurement_count)


def _plans(server: ServerProcess) -> bool:
    with server.channel() as channel:
        stub = pb_grpc.CommapServiceStub(channel)
        return bool(stub.PlanRoute(_polyline(), timeout=60).plan.route.length_m > 0)


@pytest.fixture
def filled_store(andorra_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """A measurements directory holding two acknowledged batches (10 records)."""
    measurements = tmp_path / "measurements"
    server = start_server(andorra_dir, tmp_path / "writer", measurements_dir=measurements)
    try:
        _report(server, "before-1")
        _report(server, "before-2")
    finally:
        server.stop()
    yield measurements


def test_a_read_only_store_serves_what_it_holds_and_refuses_uploads_as_unavailable(
    andorra_dir: Path, tmp_path: Path, filled_store: Path
) -> None:
    require_mount_namespaces()
    server = start_server(
        andorra_dir,
        tmp_path / "reader",
        measurements_dir=filled_store,
        wrapper=read_only(filled_store),
    )
    try:
        assert _stored_count(server) == 10
        with pytest.raises(grpc.RpcError) as info:
            _report(server, "refused")
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE, info.value.details()
        assert str(info.value.details()) == (
            "server storage unavailable (Read-only file system): nothing was stored; retry later"
        )
        assert _stored_count(server) == 10 and _plans(server)
    finally:
        server.stop()
    log = server.log_text()
    assert "Read-only file system" in log and str(filled_store) in log  # the operator is told
    assert "Traceback" not in log and "incident" not in log


def test_a_full_store_refuses_uploads_as_unavailable_and_loses_no_acknowledged_record(
    andorra_dir: Path, tmp_path: Path
) -> None:
    require_mount_namespaces()
    measurements = tmp_path / "measurements"
    measurements.mkdir()
    server = start_server(
        andorra_dir,
        tmp_path / "server",
        measurements_dir=measurements,
        wrapper=full(measurements, 64 * 1024),
    )
    acknowledged = 0
    try:
        for k in range(200):
            try:
                acknowledged += _report(server, f"fill-{k}").accepted_count
            except grpc.RpcError as exc:
                assert exc.code() is grpc.StatusCode.UNAVAILABLE, exc.details()
                assert "No space left on device" in str(exc.details())
                assert "retry later" in str(exc.details())
                break
        else:
            pytest.fail("64 KiB never filled up")
        assert acknowledged > 0
        assert _stored_count(server) == acknowledged and _plans(server)
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()


def test_a_damaged_part_in_a_read_only_store_stops_start_up_with_one_line(
    andorra_dir: Path, tmp_path: Path, filled_store: Path
) -> None:
    require_mount_namespaces()
    part = Path(FleetStore(filled_store).parts("andorra")[0].path)
    part.write_bytes(part.read_bytes()[:40])  # damaged: no longer Parquet
    with pytest.raises(RuntimeError, match="server did not start"):
        start_server(
            andorra_dir,
            tmp_path / "reader",
            measurements_dir=filled_store,
            wrapper=read_only(filled_store),
        )
    log = (tmp_path / "reader" / "server.log").read_text(encoding="utf-8")
    assert "Traceback" not in log, log
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert errors[-1].endswith("move the named file away"), errors
    assert "cannot start: map andorra: fleet store" in errors[-1]
    assert "Read-only file system" in errors[-1] and part.name in errors[-1]


def test_a_built_map_named_like_a_path_is_refused_at_start(
    andorra_dir: Path, tmp_path: Path
) -> None:
    built = tmp_path / "maps" / "x" / "built"
    shutil.copytree(andorra_dir, built)
    manifest = json.loads((built / "manifest.json").read_text(encoding="utf-8"))
    manifest["name"] = "../../evil"
    (built / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    run = subprocess.run(  # measurements where they go by default: beside the built map
        [sys.executable, "-m", "server", "--port", "0", "--map", str(built)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert "key 'name' must be a map identifier ([a-z0-9_-]+), got '../../evil'" in run.stderr
    assert sorted(p.name for p in tmp_path.rglob("*evil*")) == []
