"""Availability: deadlines stop the work, uploads stay cheap and apart from planning, retried
batches are stored once, implausible measurements are refused. Real servers on real ports.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.support.server_harness import (
    ServerProcess,
    ensure_stubs,
    restarting_server,
    start_server,
)

ensure_stubs()

from commap.map.comm_map import CommMap  # noqa: E402
from commap.map.store import FleetStore  # noqa: E402
from commap.v1 import commap_service_pb2 as pb  # noqa: E402
from commap.v1 import commap_service_pb2_grpc as pb_grpc  # noqa: E402
from tests.support.server_availability import (  # noqa: E402
    T0,
    measurement,
    normal_request,
    seed_store,
    timed_plan,
    upload,
    zigzag_request,
)

pytestmark = pytest.mark.integration


def _error(call: object, *args: object, **kwargs: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    return info.value


@pytest.fixture(scope="module")
def unestimated(
    andorra_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server that starts every plan (no work estimate): only the stop flags bound the work."""
    server = start_server(
        andorra_dir,
        tmp_path_factory.mktemp("unestimated"),
        extra_args=("--plan-cost-us-per-segment-network", "0", "--no-access-log"),
    )
    yield server
    server.stop()


# -- cancellation and fairness -----------------------------------------------------------------
def test_expired_plans_stop_and_a_normal_plan_answers_soon(unestimated: ServerProcess) -> None:
    with unestimated.channel() as channel:
        stub = pb_grpc.CommapServiceStub(channel)
        idle_s = min(timed_plan(stub) for _ in range(3))
        codes: list[grpc.StatusCode] = []

        def long_plan() -> None:
            codes.append(_error(stub.PlanRoute, zigzag_request(), timeout=3.0).code())

        threads = [threading.Thread(target=long_plan) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        during_s = timed_plan(stub)  # long plans run apart: they never hold every worker
        for thread in threads:
            thread.join(timeout=60)
        assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 2
        # both solves were told to stop at their deadline: the workers are free again
        loaded_s = timed_plan(stub)
    assert during_s < 3.0, f"normal plan took {during_s:.2f} s beside two long plans"
    assert loaded_s < 3.0, (
        f"normal plan took {loaded_s:.2f} s after two expired plans (idle {idle_s:.2f} s)"
    )


def test_cancelled_library_work_stops_within_a_fraction_of_a_second(andorra: CommMap) -> None:
    from commap.errors import SolverTimeoutError
    from commap.plan.cancel import stop_when
    from commap.service.planning import PlanRequest, plan_route
    from server.config import ServerConfig
    from server.convert import plan_request
    from server.pool import StopFlag

    request: PlanRequest = plan_request(zigzag_request(), config=ServerConfig(), time_limit_s=60.0)
    late_s = []
    for budget_s in (0.5, 2.0):
        flag = StopFlag(budget_s)
        began = time.monotonic()
        with pytest.raises(SolverTimeoutError, match="stopped"), stop_when(flag):
            plan_route(andorra, request)
        late_s.append(time.monotonic() - began - budget_s)
    assert max(late_s) < 0.3, f"work ran on {max(late_s) * 1000:.0f} ms after its stop"


def test_a_plan_too_large_for_its_deadline_is_refused_at_once(
    stub: pb_grpc.CommapServiceStub,
) -> None:
    began = time.perf_counter()
    error = _error(stub.PlanRoute, zigzag_request(), timeout=5.0)
    took_s = time.perf_counter() - began
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "deadline" in (error.details() or "") and "s of work" in (error.details() or "")
    assert took_s < 2.5


def test_one_client_cannot_take_every_solve(andorra_dir: Path, tmp_path: Path) -> None:
    server = start_server(
        andorra_dir,
        tmp_path,
        extra_args=(
            "--plan-cost-us-per-segment-network",
            "0",
            "--max-solves-per-client",
            "1",
            "--no-access-log",
        ),
    )
    try:
        with server.channel() as channel:
            stub = pb_grpc.CommapServiceStub(channel)
            first = stub.PlanRoute.future(zigzag_request(), timeout=4.0)
            time.sleep(0.5)
            error = _error(stub.PlanRoute, normal_request(), timeout=30)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit 1 per client" in (error.details() or "")
            with pytest.raises(grpc.RpcError):
                first.result()
            # the stopped solve gives its slot back within a fraction of a second
            deadline = time.monotonic() + 1.0
            while True:
                try:
                    assert stub.PlanRoute(normal_request(), timeout=30).plan
                    break
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    assert time.monotonic() < deadline, "the stopped solve kept its slot"
                    time.sleep(0.05)
    finally:
        server.stop()


# -- uploads -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_uploads_cost_o_batch_with_200k_records_stored(andorra_dir: Path, tmp_path: Path) -> None:
    measurements = tmp_path / "measurements"
    seed_store(measurements, 200_000)
    server = start_server(
        andorra_dir, tmp_path, measurements_dir=measurements, extra_args=("--no-access-log",)
    )
    try:
        with server.channel() as channel:
            stub = pb_grpc.CommapServiceStub(channel)
            assert stub.GetMap(pb.GetMapRequest(), timeout=10).map.measurement_count == 200_000
            took = []
            for k in range(10):
                began = time.perf_counter()
                ack = upload(stub, "one-record", [measurement(T0 + 10 * k)])
                took.append(time.perf_counter() - began)
                assert ack.accepted_count == 1
            assert ack.stored_count == 200_010
    finally:
        server.stop()
    assert statistics.median(took) < 0.5, f"1-record upload median {statistics.median(took):.3f} s"


# -- the upload process ------------------------------------------------------------------------
def _upload_process(server: ServerProcess, other_than: int = 0) -> int:
    """The pid of the server's upload process (logged when it starts), once it is running."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = [int(p) for p in re.findall(r"upload process (\d+) started", server.log_text())]
        if pids and pids[-1] != other_than:
            return pids[-1]
        time.sleep(0.05)
    raise AssertionError(f"no upload process started:\n{server.log_text()}")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_killed_upload_process_is_unavailable_and_loses_nothing_acknowledged(
    andorra_dir: Path, tmp_path: Path
) -> None:
    server = start_server(andorra_dir, tmp_path, extra_args=("--no-access-log",))
    big = [measurement(T0 + 1_000 + k) for k in range(50_000)]
    try:
        with server.channel() as channel:
            stub = pb_grpc.CommapServiceStub(channel)
            for k in range(3):
                upload(stub, "car-1", [measurement(T0 + k)], batch_id=f"car-1/{k}")
            worker = _upload_process(server)
            assert worker != server.pid  # uploads are stored apart from the planning process
            # killed while it checks a large batch: that uploader is told to retry
            busy_from = _cpu_s(worker)
            call = stub.ReportMeasurements.future(
                iter(
                    [
                        pb.ReportMeasurementsRequest(
                            map_name="andorra",
                            vehicle_id="big",
                            measurements=big,
                            client_batch_id="big/1",
                        )
                    ]
                ),
                timeout=60,
            )
            while _cpu_s(worker) < busy_from + 0.2 and not call.done():
                time.sleep(0.01)
            os.kill(worker, signal.SIGKILL)
            with pytest.raises(grpc.RpcError) as info:
                call.result()
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE, info.value.details()
            assert "retry" in (info.value.details() or "")
            assert server.process.poll() is None  # the server itself goes on serving
            # the retry goes to a new upload process and is stored once
            retry = upload(stub, "big", big, batch_id="big/1", timeout_s=60)
            assert retry.accepted_count == 50_000
            assert upload(stub, "big", big, batch_id="big/1", timeout_s=60).already_stored
            replaced = _upload_process(server, other_than=worker)
            # killed while idle: the next upload is stored (at once or at its retry)
            os.kill(replaced, signal.SIGKILL)
            try:
                upload(stub, "car-2", [measurement(T0)], batch_id="car-2/1")
            except grpc.RpcError as exc:
                assert exc.code() is grpc.StatusCode.UNAVAILABLE, exc.details()
                upload(stub, "car-2", [measurement(T0)], batch_id="car-2/1")
            assert stub.GetMap(pb.GetMapRequest(), timeout=10).map.measurement_count == 50_004
    finally:
        server.stop()
    stored = FleetStore(server.measurements_dir).read("andorra")["drive_id"].value_counts()
    assert stored.to_dict() == {"big": 50_000, "car-1": 3, "car-2": 1}


# -- exactly once ------------------------------------------------------------------------------
def test_a_retried_batch_is_stored_once_also_across_a_kill(
    andorra_dir: Path, tmp_path: Path
) -> None:
    measurements = tmp_path / "measurements"
    records = [measurement(T0 + k) for k in range(5)]
    # stored, then the server died before the acknowledgement reached the client
    pre = FleetStore(measurements)
    import pandas as pd

    pre.append(
        "andorra",
        pd.DataFrame(
            {
                "timestamp": pd.to_datetime(T0 + np.arange(3), unit="s", utc=True),
                "lat": [42.508] * 3,
                "lon": [1.53] * 3,
                "network_id": ["ad-lte"] * 3,
                "sinr_db": [7.5] * 3,
                "drive_id": ["crashed"] * 3,
            }
        ),
        batch_key="crashed/1",
    )

    def start() -> ServerProcess:
        return start_server(
            andorra_dir, tmp_path, measurements_dir=measurements, extra_args=("--no-access-log",)
        )

    server = start()
    try:
        with server.channel() as channel:
            stub = pb_grpc.CommapServiceStub(channel)
            retry = upload(stub, "crashed", records[:3], batch_id="crashed/1")
            assert retry.already_stored
            first = upload(stub, "car-1", records, batch_id="car-1/1")
            again = upload(stub, "car-1", records, batch_id="car-1/1")
            assert not first.already_stored and again.already_stored
            assert again.batch_id == first.batch_id
        server.kill()
        server = start()
        with server.channel() as channel:
            stub = pb_grpc.CommapServiceStub(channel)
            after_kill = upload(stub, "car-1", records, batch_id="car-1/1")
            assert after_kill.already_stored and after_kill.batch_id == first.batch_id
            other = upload(stub, "car-1", records, batch_id="car-1/2")  # a new batch is stored
            assert not other.already_stored
    finally:
        server.stop()
    stored = FleetStore(measurements).read("andorra")["drive_id"].value_counts().to_dict()
    assert stored == {"car-1": 10, "crashed": 3}


# -- plausibility and identifiers --------------------------------------------------------------
@pytest.mark.parametrize(
    ("record", "field"),
    [
        (measurement(7_258_118_400), "measurements[0].time"),  # 2200-01-01
        (measurement(315_532_800), "measurements[0].time"),  # 1980-01-01
        (measurement(T0, lon=9.0, lat=48.0), "measurements[0].position"),  # Stuttgart
    ],
    ids=["year 2200", "year 1980", "far outside the map"],
)
def test_implausible_measurements_are_refused(
    stub: pb_grpc.CommapServiceStub, grpc_server: ServerProcess, record: pb.Measurement, field: str
) -> None:
    error = _error(upload, stub, "implausible", [record])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(field)
    stored = FleetStore(grpc_server.measurements_dir).read("andorra")
    assert "implausible" not in set(stored["drive_id"].astype(str))


def test_vehicle_ids_that_look_like_missing_values_are_kept(
    stub: pb_grpc.CommapServiceStub, grpc_server: ServerProcess
) -> None:
    names = ["null", "NA", "none"]
    for k, name in enumerate(names):
        upload(stub, name, [measurement(T0 + 100 + k)])
    stored = FleetStore(grpc_server.measurements_dir).read("andorra")
    ids = set(stored["drive_id"].dropna().astype(str))
    assert set(names) <= ids


@pytest.mark.slow
def test_kill_cycles_with_retries_store_every_batch_exactly_once(
    andorra_dir: Path, tmp_path: Path
) -> None:
    from tests.support.server_availability import retry_kill_cycles

    measurements = tmp_path / "measurements"
    start = restarting_server(andorra_dir, tmp_path, measurements)

    report = retry_kill_cycles(start, measurements, cycles=3)
    assert report.batches > 10 and report.retried >= 1
    assert (report.duplicates, report.missing) == (0, 0)
