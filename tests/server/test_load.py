"""Load, short version: clients mixing PlanRoute, QueryCoverage and Drive streams for a few
seconds get no error and the server's memory does not grow; a burst beyond capacity gets
RESOURCE_EXHAUSTED at once instead of waiting in a queue. ``bench/bench_reliability.py`` holds
the load for a minute and reports the figures (throughput, p50/p99, time to reject)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server_harness import ServerProcess, ensure_stubs, start_server

ensure_stubs()

from tests.support.server_load import burst, run_load  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def small_server(
    andorra_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One solve at a time and one waiting: a burst overloads it."""
    server = start_server(
        andorra_dir,
        tmp_path_factory.mktemp("small-load-server"),
        extra_args=("--solve-workers", "1", "--solve-queue", "1", "--no-access-log"),
    )
    yield server
    server.stop()


def test_mixed_load_has_no_errors_and_bounded_memory(grpc_server: ServerProcess) -> None:
    report = run_load(
        grpc_server,
        duration_s=5.0,
        warmup_s=1.5,
        planners=2,
        coverage=2,
        drivers=3,
        drive_stream_s=3.0,
    )
    assert report.error_count == 0, report.errors
    for rpc in ("PlanRoute", "QueryCoverage", "Drive_start"):
        assert len(report.latencies_s.get(rpc, [])) > 0, rpc
    assert report.drive_updates > 0
    assert report.rss_growth < 0.10, report.figures()


def test_overload_is_rejected_without_queueing(small_server: ServerProcess) -> None:
    report = burst(small_server, calls=10)
    assert report.other == {}, report.other
    assert report.admitted >= 1 and report.rejected >= 1
    assert report.admitted <= 2 + 1  # 1 worker + 1 waiting (+1 that started after a slot freed)
    # rejected calls were answered while the admitted ones were still solving: no queue
    assert max(report.reject_s) < report.first_admitted_done_s, report.figures()
