"""Availability probes shared by ``tests/server/test_availability.py`` and the reliability bench.

* :func:`zigzag_request`: a PlanRoute on a ~2,400 km polyline that zig-zags across Andorra
  (under the server's length limit, far too much work for a short deadline);
* :func:`normal_request`: the 33 km trip Andorra la Vella - Pas de la Casa;
* :func:`seed_store`: a fleet store holding ``count`` records before a server starts;
* :func:`upload`: one ReportMeasurements stream, with an optional client batch id;
* :func:`retry_kill_cycles`: SIGKILL cycles under writers that retry with their batch ids.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
from google.protobuf.timestamp_pb2 import Timestamp

from commap.map.store import FleetStore
from commap.v1 import commap_service_pb2 as pb
from commap.v1 import commap_service_pb2_grpc as pb_grpc
from tests.support.server_harness import ServerProcess

T0 = 1737633600  # 2025-01-23T12:00:00Z, the map's default departure
ORIGIN = (1.5218, 42.5063)  # Andorra la Vella (lon, lat)
DESTINATION = (1.7330, 42.5430)  # Pas de la Casa
_ZIG = ((1.45, 42.45), (1.70, 42.60))  # ~27 km apart, both inside the map


def latlon(lon: float, lat: float) -> pb.LatLon:
    return pb.LatLon(latitude_deg=lat, longitude_deg=lon)


def zigzag_request(legs: int = 91) -> pb.PlanRouteRequest:
    """A polyline going back and forth ``legs`` times (91: about 2,400 km)."""
    points = [latlon(*_ZIG[i % 2]) for i in range(legs + 1)]
    return pb.PlanRouteRequest(
        polyline=pb.Polyline(points=points, speed_mps=25.0),
        departure_time=Timestamp(seconds=T0),
        omit_segments=True,
    )


def normal_request() -> pb.PlanRouteRequest:
    return pb.PlanRouteRequest(
        endpoints=pb.Endpoints(origin=latlon(*ORIGIN), destination=latlon(*DESTINATION)),
        departure_time=Timestamp(seconds=T0),
        omit_segments=True,
    )


def timed_plan(stub: pb_grpc.CommapServiceStub, timeout_s: float = 60.0) -> float:
    """Seconds one normal plan takes."""
    began = time.perf_counter()
    stub.PlanRoute(normal_request(), timeout=timeout_s)
    return time.perf_counter() - began


def seed_store(measurements_dir: Path, count: int, *, batches: int = 20, seed: int = 3) -> None:
    """Store ``count`` plausible records of map andorra in ``batches`` batches."""
    rng = np.random.default_rng(seed)
    store = FleetStore(measurements_dir)
    per = count // batches
    for b in range(batches):
        n = per if b < batches - 1 else count - per * (batches - 1)
        store.append(
            "andorra",
            pd.DataFrame(
                {
                    "timestamp": pd.to_datetime(T0 + b * per + np.arange(n), unit="s", utc=True),
                    "lat": 42.45 + 0.15 * rng.random(n),
                    "lon": 1.45 + 0.25 * rng.random(n),
                    "network_id": rng.choice(["ad-lte", "ad-nr"], n),
                    "sinr_db": np.clip(rng.normal(8.0, 6.0, n), -20.0, 40.0),
                    "drive_id": f"seed-{b}",
                }
            ),
        )


def measurement(t_s: float, *, lon: float = 1.53, lat: float = 42.508) -> pb.Measurement:
    return pb.Measurement(
        time=Timestamp(seconds=int(t_s)),
        position=latlon(lon, lat),
        network_id="ad-lte",
        sinr_db=7.5,
    )


def upload(
    stub: pb_grpc.CommapServiceStub,
    vehicle_id: str,
    measurements: list[pb.Measurement],
    *,
    batch_id: str = "",
    timeout_s: float = 30.0,
) -> pb.ReportMeasurementsResponse:
    """One ReportMeasurements stream of one message."""
    message = pb.ReportMeasurementsRequest(
        map_name="andorra",
        vehicle_id=vehicle_id,
        measurements=measurements,
        client_batch_id=batch_id,
    )
    response: pb.ReportMeasurementsResponse = stub.ReportMeasurements(
        iter([message]), timeout=timeout_s
    )
    return response


# -- SIGKILL cycles with client retries ------------------------------------------------------------
RECORDS_PER_BATCH = 15


@dataclass
class RetryReport:
    """What kill-and-restart cycles with retrying clients left in the store."""

    cycles: int = 0
    batches: int = 0  # batches the writers acknowledged in the end (each retried until acked)
    retried: int = 0  # batches sent more than once (an attempt cut by a kill)
    stored_before_ack: int = 0  # retries answered "already stored": stored, then the kill
    duplicates: int = 0  # batches stored more than once (must be 0)
    missing: int = 0  # acknowledged batches not stored (must be 0)


class _RetryWriter:
    """Sends numbered batches; an attempt cut by a kill is retried, same key, on the next server."""

    def __init__(self, index: int, report: RetryReport, lock: threading.Lock) -> None:
        self.index = index
        self.next = 0
        self.attempts: dict[int, int] = {}
        self.report = report
        self.lock = lock

    def key(self, n: int) -> str:
        return f"w{self.index}-b{n}"

    def run(self, target: str, stop: threading.Event) -> None:
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.CommapServiceStub(channel)
            while not stop.is_set():
                n = self.next
                self.attempts[n] = self.attempts.get(n, 0) + 1
                t0 = T0 + 1_000 * (100 * self.index + n)
                try:
                    ack = upload(
                        stub,
                        self.key(n),
                        [measurement(t0 + k) for k in range(RECORDS_PER_BATCH)],
                        batch_id=self.key(n),
                        timeout_s=10,
                    )
                except grpc.RpcError:
                    return  # the server died: retry this batch on the next one
                with self.lock:
                    self.report.batches += 1
                    self.report.retried += self.attempts[n] > 1
                    self.report.stored_before_ack += ack.already_stored
                self.next += 1


def retry_kill_cycles(
    start: Callable[[], ServerProcess],
    measurements_dir: Path,
    *,
    cycles: int,
    writers: int = 4,
    seed: int = 8,
) -> RetryReport:
    """SIGKILL the server at random moments under retrying writers, ``cycles`` times.

    Each writer retries a batch cut by a kill with the same client batch id on the restarted
    server; at the end every acknowledged batch must be stored exactly once.
    """
    rng = random.Random(seed)
    report = RetryReport(cycles=cycles)
    lock = threading.Lock()
    team = [_RetryWriter(w, report, lock) for w in range(writers)]
    server = start()
    try:
        for _ in range(cycles + 1):
            stop = threading.Event()
            threads = [
                threading.Thread(target=w.run, args=(server.target, stop), daemon=True)
                for w in team
            ]
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(0.5, 2.0))
            if _ < cycles:
                server.kill()
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
            if _ < cycles:
                server = start()
    finally:
        server.stop()
    stored = FleetStore(measurements_dir).read("andorra")
    counts = stored["drive_id"].astype(str).value_counts().to_dict() if len(stored) else {}
    for w in team:
        for n in range(w.next):  # acknowledged batches
            copies = int(counts.get(w.key(n), 0)) // RECORDS_PER_BATCH
            report.duplicates += copies > 1
            report.missing += copies == 0
    return report
