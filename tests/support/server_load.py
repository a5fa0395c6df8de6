"""Load on a running server: clients mixing PlanRoute, QueryCoverage and Drive for a fixed time,
and a burst beyond the server's capacity.

Used by ``tests/server/test_load.py`` (seconds) and ``bench/bench_reliability.py`` (a minute).
Clients are closed-loop (each waits for its answer before the next call), so the rate they
reach is the rate the server sustains; every call has a deadline. The server's resident memory
is read from ``/proc`` after a warm-up and at the end.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from commap.v1 import commap_service_pb2 as pb
from commap.v1 import commap_service_pb2_grpc as pb_grpc
from tests.support.server_harness import ServerProcess

T0 = 1737633600
ORIGIN = (1.5218, 42.5063)
DESTINATIONS = ((1.5600, 42.5100), (1.5440, 42.6210), (1.7330, 42.5430))
DEADLINE_S = 60.0
DRIVE_RATE_HZ = 10.0
DRIVE_TIME_LAPSE = 5.0  # vehicle seconds per wall-clock second


def _latlon(lon: float, lat: float) -> pb.LatLon:
    return pb.LatLon(latitude_deg=lat, longitude_deg=lon)


def trip(k: int, *, alternatives: int = 0) -> pb.PlanRouteRequest:
    """The k-th trip of the mix (three destinations, 6 to 48 km)."""
    return pb.PlanRouteRequest(
        endpoints=pb.Endpoints(
            origin=_latlon(*ORIGIN), destination=_latlon(*DESTINATIONS[k % len(DESTINATIONS)])
        ),
        departure_time=Timestamp(seconds=T0 + 60 * k),
        omit_segments=True,
        alternatives=alternatives,
    )


def _coverage(k: int) -> pb.QueryCoverageRequest:
    rng = np.random.default_rng(k)
    lon = rng.uniform(1.45, 1.75, 5)
    lat = rng.uniform(42.45, 42.62, 5)
    return pb.QueryCoverageRequest(
        points=[
            pb.CoveragePoint(position=_latlon(x, y), time=Timestamp(seconds=T0 + k))
            for x, y in zip(lon, lat, strict=True)
        ]
    )


@dataclass
class LoadReport:
    """Figures of one load run."""

    duration_s: float
    clients: int
    latencies_s: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    drive_updates: int = 0
    rss_before_bytes: int = 0
    rss_after_bytes: int = 0

    @property
    def calls(self) -> int:
        """Calls (and Drive streams) completed without error."""
        return sum(len(v) for v in self.latencies_s.values())

    @property
    def error_count(self) -> int:
        """Calls that ended in an error."""
        return sum(self.errors.values())

    @property
    def rss_growth(self) -> float:
        """Relative growth of the server's resident memory over the run."""
        return self.rss_after_bytes / self.rss_before_bytes - 1.0

    def figures(self, prefix: str = "load_") -> dict[str, float | int]:
        """Flat figures: throughput, p50/p99 per RPC, errors, memory."""
        out: dict[str, float | int] = {
            f"{prefix}clients": self.clients,
            f"{prefix}duration_s": round(self.duration_s, 1),
            f"{prefix}calls": self.calls,
            f"{prefix}calls_per_s": round(self.calls / self.duration_s, 1),
            f"{prefix}drive_updates_per_s": round(self.drive_updates / self.duration_s, 1),
            f"{prefix}errors": self.error_count,
            f"{prefix}rss_before_mb": round(self.rss_before_bytes / 2**20, 1),
            f"{prefix}rss_after_mb": round(self.rss_after_bytes / 2**20, 1),
            f"{prefix}rss_growth_pct": round(100 * self.rss_growth, 2),
        }
        for rpc, samples in sorted(self.latencies_s.items()):
            if samples:
                ms = np.asarray(samples) * 1000.0
                out[f"{prefix}{rpc}_per_s"] = round(len(samples) / self.duration_s, 1)
                out[f"{prefix}{rpc}_p50_ms"] = round(float(np.percentile(ms, 50)), 1)
                out[f"{prefix}{rpc}_p99_ms"] = round(float(np.percentile(ms, 99)), 1)
        return out


class _Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = {}
        self.errors: Counter[str] = Counter()
        self.updates = 0
        self.recording = False

    def ok(self, rpc: str, seconds: float) -> None:
        if self.recording:
            with self.lock:
                self.latencies.setdefault(rpc, []).append(seconds)

    def error(self, rpc: str, exc: grpc.RpcError) -> None:
        with self.lock:  # errors count during warm-up too
            self.errors[f"{rpc}:{exc.code().name}"] += 1


def _unary_client(
    stub: pb_grpc.CommapServiceStub, rpc: str, index: int, rec: _Recorder, stop: threading.Event
) -> None:
    k = index
    while not stop.is_set():
        request = trip(k) if rpc == "PlanRoute" else _coverage(k)
        began = time.perf_counter()
        try:
            getattr(stub, rpc)(request, timeout=DEADLINE_S)
        except grpc.RpcError as exc:
            rec.error(rpc, exc)
        else:
            rec.ok(rpc, time.perf_counter() - began)
        k += 7


def _requests(messages: queue.Queue[pb.DriveRequest | None]) -> Iterator[pb.DriveRequest]:
    while (item := messages.get()) is not None:
        yield item


def _drain(responses: Iterator[pb.DriveResponse]) -> None:
    try:
        for _ in responses:
            pass
    except grpc.RpcError:
        pass  # the stream's status is read (and counted) by the sender


def _one_drive(
    stub: pb_grpc.CommapServiceStub,
    index: int,
    rec: _Recorder,
    stop: threading.Event,
    stream_s: float,
) -> None:
    """One Drive stream along a planned trip, 10 fixes a second, for ``stream_s`` at most."""
    messages: queue.Queue[pb.DriveRequest | None] = queue.Queue()
    messages.put(pb.DriveRequest(start=pb.DriveStart(plan=trip(index), vehicle_id=f"load-{index}")))
    began = time.perf_counter()
    responses = stub.Drive(_requests(messages), timeout=DEADLINE_S * 10)
    reader: threading.Thread | None = None
    try:
        first = next(responses)
        rec.ok("Drive_start", time.perf_counter() - began)
        reader = threading.Thread(target=_drain, args=(responses,), daemon=True)
        reader.start()
        route = first.plan.plan.route.points
        lon = np.array([p.longitude_deg for p in route])
        lat = np.array([p.latitude_deg for p in route])
        # positions on the route's vertices, from start to end over the planned duration
        t_s, k = float(T0 + 60 * index), 0
        period = 1.0 / DRIVE_RATE_HZ
        steps = int(first.plan.plan.totals.duration_s * DRIVE_RATE_HZ / DRIVE_TIME_LAPSE)
        while not stop.is_set() and k < min(steps, stream_s * DRIVE_RATE_HZ):
            i = min(int(len(lon) * k / max(steps, 1)), len(lon) - 1)
            t_s += period * DRIVE_TIME_LAPSE
            whole = int(t_s)
            fix = pb.PositionFix(
                time=Timestamp(seconds=whole, nanos=int((t_s - whole) * 1e9)),
                position=_latlon(float(lon[i]), float(lat[i])),
            )
            messages.put(pb.DriveRequest(update=pb.PositionUpdate(fix=fix)))
            with rec.lock:
                rec.updates += rec.recording
            k += 1
            stop.wait(period)
    except grpc.RpcError:
        pass  # counted below, from the stream's status
    finally:
        messages.put(None)
        if reader is not None:
            reader.join(timeout=DEADLINE_S)
    if responses.code() is not grpc.StatusCode.OK:
        rec.error("Drive", responses)


def _drive_client(
    stub: pb_grpc.CommapServiceStub,
    index: int,
    rec: _Recorder,
    stop: threading.Event,
    stream_s: float,
) -> None:
    k = index
    while not stop.is_set():
        _one_drive(stub, k, rec, stop, stream_s)
        k += 5


def run_load(
    server: ServerProcess,
    *,
    duration_s: float,
    warmup_s: float = 3.0,
    planners: int = 3,
    coverage: int = 3,
    drivers: int = 4,
    drive_stream_s: float = 20.0,
) -> LoadReport:
    """Hold ``planners + coverage + drivers`` clients on ``server`` for ``duration_s``.

    Each driver opens Drive streams one after the other, each ``drive_stream_s`` long (or
    the trip, when shorter), so that stream starts (a plan each) are part of the mix.
    """
    rec = _Recorder()
    stop = threading.Event()
    with server.channel() as channel:
        stub = pb_grpc.CommapServiceStub(channel)
        clients = (
            [(_unary_client, (stub, "PlanRoute", i, rec, stop)) for i in range(planners)]
            + [(_unary_client, (stub, "QueryCoverage", i, rec, stop)) for i in range(coverage)]
            + [(_drive_client, (stub, i, rec, stop, drive_stream_s)) for i in range(drivers)]
        )
        with ThreadPoolExecutor(len(clients)) as pool:
            futures = [pool.submit(func, *args) for func, args in clients]
            time.sleep(warmup_s)
            rss_before = server.rss_bytes()
            rec.recording = True
            began = time.perf_counter()
            time.sleep(duration_s)
            rec.recording = False
            elapsed = time.perf_counter() - began
            rss_after = server.rss_bytes()
            stop.set()
            for future in futures:
                future.result()
    return LoadReport(
        duration_s=elapsed,
        clients=len(clients),
        latencies_s=rec.latencies,
        errors=rec.errors,
        drive_updates=rec.updates,
        rss_before_bytes=rss_before,
        rss_after_bytes=rss_after,
    )


@dataclass
class BurstReport:
    """A burst of slow calls beyond the server's capacity."""

    sent: int
    admitted: int
    rejected: int
    other: Counter[str]
    reject_s: list[float]  # time to RESOURCE_EXHAUSTED of each rejected call
    first_admitted_done_s: float  # time until the first admitted call finished

    def figures(self, prefix: str = "overload_") -> dict[str, float | int]:
        """Flat figures: counts and time-to-reject."""
        ms = np.asarray(self.reject_s or [np.nan]) * 1000.0
        return {
            f"{prefix}sent": self.sent,
            f"{prefix}admitted": self.admitted,
            f"{prefix}rejected": self.rejected,
            f"{prefix}other_errors": sum(self.other.values()),
            f"{prefix}reject_p50_ms": round(float(np.percentile(ms, 50)), 1),
            f"{prefix}reject_max_ms": round(float(np.max(ms)), 1),
            f"{prefix}first_admitted_done_ms": round(1000 * self.first_admitted_done_s, 1),
        }


def burst(server: ServerProcess, calls: int) -> BurstReport:
    """Send ``calls`` slow plans (three route alternatives each) at once."""
    barrier = threading.Barrier(calls)
    results: list[tuple[grpc.StatusCode, float]] = []
    lock = threading.Lock()
    with server.channel() as channel:
        stub = pb_grpc.CommapServiceStub(channel)
        stub.ListMaps(pb.ListMapsRequest(), timeout=10)  # connected before the burst

        def call(k: int) -> None:
            request = trip(2, alternatives=3)
            barrier.wait()
            began = time.perf_counter()
            try:
                stub.PlanRoute(request, timeout=DEADLINE_S)
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code = exc.code()
            with lock:
                results.append((code, time.perf_counter() - began))

        with ThreadPoolExecutor(calls) as pool:
            list(pool.map(call, range(calls)))
    ok = [t for c, t in results if c is grpc.StatusCode.OK]
    rejected = [t for c, t in results if c is grpc.StatusCode.RESOURCE_EXHAUSTED]
    other = Counter(
        c.name
        for c, _ in results
        if c not in (grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED)
    )
    return BurstReport(
        sent=calls,
        admitted=len(ok),
        rejected=len(rejected),
        other=other,
        reject_s=rejected,
        first_admitted_done_s=min(ok) if ok else float("nan"),
    )
