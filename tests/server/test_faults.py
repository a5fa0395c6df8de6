"""Faults: hot reload of a map (SIGHUP and ``ReloadMaps``) is atomic and rejects corrupt or
half-written maps; measurements survive SIGKILL of the server (every acknowledged record is on
disk after a restart, unacknowledged streams are all or nothing).

The map served here is a copy of the built default map, so that the tests can damage it.
Kills of batch map builds are covered by the batch tests (``tests/map/test_build.py``).
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support.server_harness import (
    ServerProcess,
    ensure_stubs,
    restarting_server,
    start_server,
)

ensure_stubs()

from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402

from commap.v1 import commap_service_pb2 as pb  # noqa: E402
from commap.v1 import commap_service_pb2_grpc as pb_grpc  # noqa: E402
from tests.support.server_chaos import (  # noqa: E402
    DAMAGE,
    PROBE,
    kill_restart_cycles,
    reload_map,
    retitle,
    served_title,
    truncate_parquet,
)

pytestmark = pytest.mark.integration

T0 = 1737633600


@pytest.fixture(scope="module")
def map_copy(andorra_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("reload-map") / "andorra" / "built"
    shutil.copytree(andorra_dir, target)
    return target


@pytest.fixture(scope="module")
def reload_server(
    map_copy: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = start_server(map_copy, tmp_path_factory.mktemp("reload-server"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stub(reload_server: ServerProcess) -> Iterator[pb_grpc.CommapServiceStub]:
    with reload_server.channel() as channel:
        yield pb_grpc.CommapServiceStub(channel)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_map_is_rejected_and_the_old_one_keeps_serving(
    damage: str, map_copy: Path, stub: pb_grpc.CommapServiceStub, reload_server: ServerProcess
) -> None:
    before = stub.QueryCoverage(PROBE, timeout=30)
    title = served_title(stub)
    generation = reload_map(stub).generation
    make, reason = DAMAGE[damage]
    # the damaged version also carries a new title: were it served, the title would show it
    retitle(map_copy, "new title")
    restore = make(map_copy)
    try:
        result = reload_map(stub)
    finally:
        restore()
        retitle(map_copy, title)
    assert result.outcome == pb.RELOAD_OUTCOME_REJECTED, result
    assert reason in result.error and result.generation == generation
    assert served_title(stub) == title
    assert stub.QueryCoverage(PROBE, timeout=30) == before
    assert "reload rejected" in reload_server.log_text()


def test_reload_by_rpc_and_by_sighup_swaps_in_a_new_version(
    map_copy: Path, stub: pb_grpc.CommapServiceStub, reload_server: ServerProcess
) -> None:
    original = served_title(stub)
    first = reload_map(stub)
    assert reload_map(stub).outcome == pb.RELOAD_OUTCOME_UNCHANGED  # same files: same version
    retitle(map_copy, "rebuilt by RPC")
    result = reload_map(stub)
    assert result.outcome == pb.RELOAD_OUTCOME_RELOADED and not result.error
    assert result.generation == first.generation + 1
    assert result.manifest_sha256 != first.manifest_sha256
    assert served_title(stub) == "rebuilt by RPC"
    retitle(map_copy, "rebuilt, SIGHUP")
    reload_server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while served_title(stub) != "rebuilt, SIGHUP" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert served_title(stub) == "rebuilt, SIGHUP"
    retitle(map_copy, original)
    assert reload_map(stub).generation == first.generation + 3


def test_reload_keeps_fleet_measurements(stub: pb_grpc.CommapServiceStub, map_copy: Path) -> None:
    spot = pb.LatLon(latitude_deg=42.5722, longitude_deg=1.4846)
    records = [
        pb.Measurement(
            time=Timestamp(seconds=T0 + k), position=spot, network_id="ad-nr", sinr_db=-15.0
        )
        for k in range(6)
    ]
    stub.ReportMeasurements(
        iter([pb.ReportMeasurementsRequest(vehicle_id="keep", measurements=records)]), timeout=30
    )
    query = pb.QueryCoverageRequest(points=[pb.CoveragePoint(position=spot)], network_ids=["ad-nr"])
    deadline = time.monotonic() + 30  # stored batches reach the served map within its interval
    while time.monotonic() < deadline and (
        stub.QueryCoverage(query, timeout=30).points[0].networks[0].provenance
        != pb.PROVENANCE_MEASURED
    ):
        time.sleep(0.2)
    assert (
        stub.QueryCoverage(query, timeout=30).points[0].networks[0].provenance
        == pb.PROVENANCE_MEASURED
    )
    count = stub.GetMap(pb.GetMapRequest(), timeout=10).map.measurement_count
    title = served_title(stub)
    retitle(map_copy, "with measurements")
    try:
        assert reload_map(stub).outcome == pb.RELOAD_OUTCOME_RELOADED
    finally:
        retitle(map_copy, title)
    assert stub.GetMap(pb.GetMapRequest(), timeout=10).map.measurement_count == count
    assert (
        stub.QueryCoverage(query, timeout=30).points[0].networks[0].provenance
        == pb.PROVENANCE_MEASURED
    )
    reload_map(stub)


def test_calls_in_flight_see_one_version_or_the_other(
    stub: pb_grpc.CommapServiceStub, map_copy: Path
) -> None:
    """Queries running while maps are swapped (and damaged versions rejected) all succeed."""
    title = served_title(stub)
    stop = threading.Event()
    errors: list[grpc.StatusCode] = []
    answers = 0

    def query() -> None:
        nonlocal answers
        while not stop.is_set():
            try:
                stub.QueryCoverage(PROBE, timeout=30)
                stub.PlanRoute(
                    pb.PlanRouteRequest(
                        endpoints=pb.Endpoints(
                            origin=pb.LatLon(latitude_deg=42.5063, longitude_deg=1.5218),
                            destination=pb.LatLon(latitude_deg=42.5100, longitude_deg=1.5600),
                        ),
                        omit_segments=True,
                    ),
                    timeout=60,
                )
                answers += 1
            except grpc.RpcError as exc:
                errors.append(exc.code())

    threads = [threading.Thread(target=query) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        outcomes = []
        for k in range(3):
            retitle(map_copy, f"version {k}")
            outcomes.append(reload_map(stub).outcome)
            restore = truncate_parquet(map_copy)
            outcomes.append(reload_map(stub).outcome)
            restore()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        retitle(map_copy, title)
    assert outcomes == [pb.RELOAD_OUTCOME_RELOADED, pb.RELOAD_OUTCOME_REJECTED] * 3
    assert errors == [] and answers > 0
    reload_map(stub)


# -- kill and restart -------------------------------------------------------------------------------
def test_acknowledged_measurements_survive_sigkill(andorra_dir: Path, tmp_path: Path) -> None:
    measurements = tmp_path / "measurements"
    start = restarting_server(andorra_dir, tmp_path, measurements)

    reports = kill_restart_cycles(start, measurements, cycles=2)
    assert [r.kill for r in reports] == ["after ack", "mid-stream"]
    assert sum(r.acknowledged for r in reports) > 0
    assert sum(r.lost_records for r in reports) == 0
    assert sum(r.partial_streams for r in reports) == 0
    # crashed writers' temporary files are cleaned up at the next start, never read as data
    assert not list((measurements / "map=andorra").rglob(".*.tmp-*"))
