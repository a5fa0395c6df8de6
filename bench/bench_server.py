"""gRPC server benchmark: PlanRoute latency, throughput, and Drive streams under load.

Starts the real server (``python -m server --port 0``) on the built default map and measures,
from clients in this process:

* PlanRoute latency p50 / p99 for a ~50 km route (road-graph endpoints) and a
  ~1,000 km route (a polyline driving the valleys back and forth), and each one's first call
  (``*_first_ms``: the server's caches cold);
* PlanRoute throughput with 16 concurrent clients (plans per second);
* the same for new trips (``*_new_trip_*``): every request departs at a minute no request
  before it did, so the server's plan-inputs cache (routes, corridors, sampled quality per
  request) cannot answer and each plan samples the map again; the figures above repeat one
  request, as a fleet on one road does, and meet that cache warm;
* Drive: 500 vehicles (a fleet; figures ``drive_*``) and 50 vehicles (``drive50_*``) streaming
  10 position updates per second each (vehicle time runs 10x, so each vehicle covers kilometres
  and meets real handovers), p50 / p99 instruction latency = time from sending the fix to
  receiving the instruction it triggered. Vehicles connect over the first seconds (a fleet does
  not start in one millisecond) and retry a refused start like a real client.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

T0 = 1737633600  # the map's default departure (2025-01-23T12:00:00Z)
# ~50 km (48.5 km): El Serrat (north end of the Ordino valley) -> Pas de la Casa (French border)
ORIGIN_50 = (1.5440, 42.6210)
DESTINATION_50 = (1.7330, 42.5430)
# the long route is built from the trip across the country, driven forth and back
ORIGIN_LONG = (1.5218, 42.5063)
DESTINATION_LONG = (1.7330, 42.5430)
LONG_ROUTE_M = 1_000_000.0

PLAN_REPEATS_50 = 30
PLAN_REPEATS_LONG = 5
THROUGHPUT_CLIENTS = 16
THROUGHPUT_S = 15.0
DRIVE_VEHICLES = 500
DRIVE_VEHICLES_SMALL = 50
DRIVE_CONNECT_S = 5.0  # vehicles connect spread over this long
DRIVE_RATE_HZ = 10.0
DRIVE_S = 30.0
DRIVE_TIME_LAPSE = 10.0  # vehicle seconds per wall-clock second


def _built_map() -> Path:
    from commap.errors import MapNotFoundError
    from commap.map.build import build_map
    from commap.map.manifest import resolve_map_dir

    try:
        return resolve_map_dir("andorra")
    except MapNotFoundError:
        out = Path(tempfile.mkdtemp(prefix="bench-map-")) / "built"
        return build_map(REPO / "maps" / "andorra" / "map.toml", out)


class _Server:
    """The server subprocess."""

    def __init__(self, map_dir: Path, work: Path) -> None:
        from server import protogen

        if not protogen.stubs_are_current():
            protogen.generate()
        self.log = (work / "server.log").open("w", encoding="utf-8")
        args = [
            sys.executable, "-m", "server", "--port", "0", "--map", str(map_dir),
            "--measurements-dir", str(work / "measurements"),
            # a queue for every vehicle's start: the fleet connects within seconds
            "--solve-queue", str(DRIVE_VEHICLES + 16),
            # every simulated vehicle connects from this one host: lift the per-client limit
            "--max-solves-per-client", str(2 * DRIVE_VEHICLES),
            "--max-drive-streams", str(DRIVE_VEHICLES + 16),
            "--no-access-log", "--log-level", "WARNING",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, cwd=REPO, stdout=subprocess.PIPE, stderr=self.log, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert self.process.stdout is not None
        self.target = ""
        for line in self.process.stdout:
            if line.startswith("LISTENING "):
                self.target = line.split()[1]
                break
        if not self.target:
            raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.log.close()


def _percentiles_ms(samples_s: list[float]) -> tuple[float, float]:
    values = np.asarray(samples_s) * 1000.0
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def _long_polyline(map_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A ~1,000 km polyline: the road route across Andorra driven forth and back."""
    from commap.map.comm_map import CommMap

    cmap = CommMap.load(map_dir)
    route = cmap.routes(ORIGIN_LONG, DESTINATION_LONG)[0]
    corridor = cmap.corridor(route, departure_s=T0)
    lon, lat = np.asarray(route.lon), np.asarray(route.lat)
    laps = int(np.ceil(LONG_ROUTE_M / corridor.total_length_m))
    parts_lon, parts_lat = [lon], [lat]
    for k in range(1, laps):
        parts_lon.append(lon[::-1][1:] if k % 2 else lon[1:])
        parts_lat.append(lat[::-1][1:] if k % 2 else lat[1:])
    return np.concatenate(parts_lon), np.concatenate(parts_lat)


def _time_calls(call: Callable[[], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def _plan_figures(
    stub: Any, pb: Any, long_lon: np.ndarray, long_lat: np.ndarray
) -> dict[str, float]:
    from google.protobuf.timestamp_pb2 import Timestamp

    def ll(p: tuple[float, float]) -> Any:
        return pb.LatLon(latitude_deg=p[1], longitude_deg=p[0])

    req50 = pb.PlanRouteRequest(
        endpoints=pb.Endpoints(origin=ll(ORIGIN_50), destination=ll(DESTINATION_50)),
        departure_time=Timestamp(seconds=T0),
    )
    req_long = pb.PlanRouteRequest(
        polyline=pb.Polyline(
            points=[
                pb.LatLon(latitude_deg=y, longitude_deg=x)
                for x, y in zip(long_lon, long_lat, strict=True)
            ]
        ),
        departure_time=Timestamp(seconds=T0),
        omit_segments=True,
    )
    # the first calls meet the server's caches cold (satellite candidates per node interval,
    # road-point answers): timed on their own, the repeats measure the warm server
    start = time.perf_counter()
    first50 = stub.PlanRoute(req50, timeout=120)
    first50_ms = (time.perf_counter() - start) * 1000.0
    start = time.perf_counter()
    first_long = stub.PlanRoute(req_long, timeout=600)
    first_long_ms = (time.perf_counter() - start) * 1000.0
    lat50 = _time_calls(lambda: stub.PlanRoute(req50, timeout=120), PLAN_REPEATS_50)
    lat_long = _time_calls(lambda: stub.PlanRoute(req_long, timeout=600), PLAN_REPEATS_LONG)
    p50_50, p99_50 = _percentiles_ms(lat50)
    p50_long, p99_long = _percentiles_ms(lat_long)
    count, elapsed = _throughput(stub, lambda: req50)
    minutes = itertools.count(1)
    minute_lock = threading.Lock()

    def new_trip(request: Any) -> Any:
        with minute_lock:
            k = next(minutes)
        trip = type(request)()
        trip.CopyFrom(request)
        trip.departure_time.seconds = T0 + 60 * k
        return trip

    new50 = _time_calls(lambda: stub.PlanRoute(new_trip(req50), timeout=120), PLAN_REPEATS_50)
    new_long = _time_calls(
        lambda: stub.PlanRoute(new_trip(req_long), timeout=600), PLAN_REPEATS_LONG
    )
    new_count, new_elapsed = _throughput(stub, lambda: new_trip(req50))
    new_p50_50, new_p99_50 = _percentiles_ms(new50)
    new_p50_long, new_p99_long = _percentiles_ms(new_long)
    return {
        "plan_50km_length_km": round(first50.plan.totals.length_m / 1000, 1),
        "plan_50km_segments": len(first50.plan.segments),
        "plan_50km_first_ms": round(first50_ms, 1),
        "plan_50km_p50_ms": round(p50_50, 1),
        "plan_50km_p99_ms": round(p99_50, 1),
        "plan_long_length_km": round(first_long.plan.totals.length_m / 1000, 1),
        "plan_long_polyline_points": len(long_lon),
        "plan_long_first_ms": round(first_long_ms, 1),
        "plan_long_p50_ms": round(p50_long, 1),
        "plan_long_p99_ms": round(p99_long, 1),
        "throughput_16_clients_plans_per_s": round(count / elapsed, 2),
        "plan_50km_new_trip_p50_ms": round(new_p50_50, 1),
        "plan_50km_new_trip_p99_ms": round(new_p99_50, 1),
        "plan_long_new_trip_p50_ms": round(new_p50_long, 1),
        "plan_long_new_trip_p99_ms": round(new_p99_long, 1),
        "throughput_16_clients_new_trips_plans_per_s": round(new_count / new_elapsed, 2),
    }


def _throughput(stub: Any, next_request: Callable[[], Any]) -> tuple[int, float]:
    import grpc

    stop_at = time.perf_counter() + THROUGHPUT_S
    lock = threading.Lock()
    done = [0]

    def client() -> None:
        while time.perf_counter() < stop_at:
            try:
                stub.PlanRoute(next_request(), timeout=120)
            except grpc.RpcError as exc:  # RESOURCE_EXHAUSTED: back off like a real client
                if exc.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                time.sleep(0.05)
                continue
            with lock:
                done[0] += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(THROUGHPUT_CLIENTS) as pool:
        for future in [pool.submit(client) for _ in range(THROUGHPUT_CLIENTS)]:
            future.result()
    return done[0], time.perf_counter() - start


# a start refused (server busy) or dropped (a busy machine's transport) is tried again
_START_RETRY = ("RESOURCE_EXHAUSTED", "CANCELLED", "UNAVAILABLE")


async def _start_drive(
    stub: Any, pb: Any, index: int, counts: dict[str, float]
) -> tuple[Any, asyncio.Queue[Any], Any]:
    """Open a Drive stream and read its plan; a refused or dropped start is retried."""
    import grpc
    from google.protobuf.timestamp_pb2 import Timestamp

    trip = pb.PlanRouteRequest(
        endpoints=pb.Endpoints(
            origin=pb.LatLon(latitude_deg=ORIGIN_LONG[1], longitude_deg=ORIGIN_LONG[0]),
            destination=pb.LatLon(
                latitude_deg=DESTINATION_LONG[1], longitude_deg=DESTINATION_LONG[0]
            ),
        ),
        departure_time=Timestamp(seconds=T0),
    )
    while True:
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def requests(queue: asyncio.Queue[Any] = queue) -> Any:
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item

        start = pb.DriveStart(plan=trip, vehicle_id=f"bench-{index}")
        await queue.put(pb.DriveRequest(start=start))
        call = stub.Drive(requests())
        try:
            return call, queue, await call.read()
        except grpc.aio.AioRpcError as exc:  # back off like a real client
            if exc.code().name not in _START_RETRY:
                raise
            counts["start_retries"] += 1
            call.cancel()
            await queue.put(None)  # ends the refused call's request stream
            await asyncio.sleep(0.2)


async def _vehicle(
    stub: Any,
    pb: Any,
    index: int,
    vehicles: int,
    latencies: list[float],
    counts: dict[str, float],
    rates: list[float],
) -> None:
    import grpc
    from google.protobuf.timestamp_pb2 import Timestamp

    sent_at: dict[int, float] = {}
    await asyncio.sleep(DRIVE_CONNECT_S * index / vehicles)
    call, queue, first = await _start_drive(stub, pb, index, counts)
    segments = first.plan.plan.segments
    departure = first.plan.plan.departure_time.seconds
    # vehicles start spread along the route so that instructions keep coming
    start = int(len(segments) * (index / vehicles) * 0.8)
    eta = np.array([s.eta_s for s in segments])
    lon = np.array([s.position.longitude_deg for s in segments])
    lat = np.array([s.position.latitude_deg for s in segments])

    async def reader() -> None:
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:  # type: ignore[attr-defined]
                return
            if response.WhichOneof("event") == "instruction":
                key = (
                    response.progress.fix_time.seconds * 1000
                    + response.progress.fix_time.nanos // 1_000_000
                )
                if key in sent_at:
                    latencies.append(time.perf_counter() - sent_at[key])
                counts["instructions"] += 1

    read_task = asyncio.create_task(reader())
    period = 1.0 / DRIVE_RATE_HZ
    t_vehicle = float(eta[start])
    wall0 = time.perf_counter()
    n = int(DRIVE_S * DRIVE_RATE_HZ)
    for k in range(n):
        t_vehicle += period * DRIVE_TIME_LAPSE
        i = min(int(np.searchsorted(eta, t_vehicle)), len(eta) - 1)
        t_s = departure + t_vehicle
        ms = round(t_s * 1000)
        sent_at[ms] = time.perf_counter()
        await queue.put(
            pb.DriveRequest(
                update=pb.PositionUpdate(
                    fix=pb.PositionFix(
                        time=Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000),
                        position=pb.LatLon(latitude_deg=float(lat[i]), longitude_deg=float(lon[i])),
                    )
                )
            )
        )
        counts["updates"] += 1
        delay = wall0 + (k + 1) * period - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    await queue.put(None)
    await read_task
    sends = sorted(sent_at.values())
    rates.append((len(sends) - 1) / (sends[-1] - sends[0]))  # this vehicle's update rate


async def _drive_figures(target: str, vehicles: int, prefix: str) -> dict[str, float]:
    import grpc

    from commap.v1 import commap_service_pb2 as pb
    from commap.v1 import commap_service_pb2_grpc as pb_grpc

    latencies: list[float] = []
    rates: list[float] = []
    counts: dict[str, float] = {"instructions": 0, "updates": 0, "start_retries": 0}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.CommapServiceStub(channel)
        await asyncio.gather(
            *(_vehicle(stub, pb, i, vehicles, latencies, counts, rates) for i in range(vehicles))
        )
    p50, p99 = _percentiles_ms(latencies) if latencies else (float("nan"), float("nan"))
    return {
        f"{prefix}_vehicles": vehicles,
        f"{prefix}_updates": int(counts["updates"]),
        f"{prefix}_updates_per_s_all_vehicles": round(sum(rates), 1),
        f"{prefix}_updates_per_s_slowest_vehicle": round(min(rates), 2),
        f"{prefix}_instructions": int(counts["instructions"]),
        f"{prefix}_start_retries": int(counts["start_retries"]),
        f"{prefix}_instruction_p50_ms": round(p50, 2),
        f"{prefix}_instruction_p99_ms": round(p99, 2),
    }


def run() -> dict[str, float | str]:
    """Start a server, measure, stop it; figures as a flat dict."""
    import grpc

    from commap.v1 import commap_service_pb2 as pb
    from commap.v1 import commap_service_pb2_grpc as pb_grpc

    map_dir = _built_map()
    long_lon, long_lat = _long_polyline(map_dir)
    with tempfile.TemporaryDirectory(prefix="bench-server-") as work:
        server = _Server(map_dir, Path(work))
        try:
            options = [
                ("grpc.max_send_message_length", 64 << 20),
                ("grpc.max_receive_message_length", 64 << 20),
            ]
            with grpc.insecure_channel(server.target, options=options) as channel:
                figures: dict[str, float | str] = dict(
                    _plan_figures(pb_grpc.CommapServiceStub(channel), pb, long_lon, long_lat)
                )
            figures.update(asyncio.run(_drive_figures(server.target, DRIVE_VEHICLES, "drive")))
            figures.update(
                asyncio.run(_drive_figures(server.target, DRIVE_VEHICLES_SMALL, "drive50"))
            )
        finally:
            server.stop()
    figures["cpus"] = os.cpu_count() or 0
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
