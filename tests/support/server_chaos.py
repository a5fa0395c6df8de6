"""Faults: crash the server while vehicles report measurements; damage a map on disk.

Used by ``tests/server/test_faults.py`` (a few cycles) and ``bench/bench_reliability.py`` (20).

Crashes:
Each cycle starts the server on the same measurements directory, runs writer threads that send
ReportMeasurements streams (several messages each, with pauses, so that some are open when the
server dies), and SIGKILLs the server either right after an acknowledgement or in the middle of
the streams. After a restart, every acknowledged stream must be on disk, and complete; a stream
that was not acknowledged must be there completely or not at all.

Damaged maps (:data:`DAMAGE`): each function damages a built map directory and returns the
function that repairs it.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from commap.map.store import FleetStore
from commap.v1 import commap_service_pb2 as pb
from commap.v1 import commap_service_pb2_grpc as pb_grpc
from tests.support.server_harness import ServerProcess

T0 = 1737633600
SPOT = (1.5300, 42.5080)  # on the road out of Andorra la Vella
MESSAGES_PER_STREAM = 3
RECORDS_PER_MESSAGE = 5
RECORDS_PER_STREAM = MESSAGES_PER_STREAM * RECORDS_PER_MESSAGE


@dataclass
class CycleReport:
    """What one kill-and-restart cycle saw."""

    kill: str  # "after ack" or "mid-stream"
    acknowledged: int = 0  # streams acknowledged before the kill
    unacknowledged: int = 0  # streams cut by the kill
    lost_records: int = 0  # acknowledged records missing after the restart
    partial_streams: int = 0  # streams stored in part (must be 0: all or nothing)
    restart_s: float = 0.0


@dataclass
class _Writers:
    """Writer threads' shared state."""

    cycle: int
    acked: dict[str, int] = field(default_factory=dict)
    attempted: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    kill_after_acks: int = 1
    enough_acks: threading.Event = field(default_factory=threading.Event)


def _stream(vehicle: str, t0: int, pause_s: float) -> list[pb.ReportMeasurementsRequest]:
    messages = []
    for m in range(MESSAGES_PER_STREAM):
        records = [
            pb.Measurement(
                time=Timestamp(seconds=t0 + m * RECORDS_PER_MESSAGE + k),
                position=pb.LatLon(latitude_deg=SPOT[1], longitude_deg=SPOT[0] + 1e-5 * k),
                network_id="ad-lte",
                sinr_db=5.0 + k,
            )
            for k in range(RECORDS_PER_MESSAGE)
        ]
        messages.append(
            pb.ReportMeasurementsRequest(
                map_name="andorra", vehicle_id=vehicle, measurements=records
            )
        )
    return messages


def _paced(
    messages: list[pb.ReportMeasurementsRequest], pause_s: float, stop: threading.Event
) -> Iterator[pb.ReportMeasurementsRequest]:
    for message in messages:
        yield message
        if stop.wait(pause_s):  # the server is being killed: stop feeding
            return


def _writer(server: ServerProcess, state: _Writers, index: int, pause_s: float) -> None:
    with server.channel() as channel:
        stub = pb_grpc.CommapServiceStub(channel)
        n = 0
        while not state.stop.is_set():
            vehicle = f"chaos-c{state.cycle}-w{index}-s{n}"
            n += 1
            with state.lock:
                state.attempted.add(vehicle)
            messages = _stream(vehicle, T0 + 1000 * n, pause_s)
            try:
                ack = stub.ReportMeasurements(_paced(messages, pause_s, state.stop), timeout=30)
            except grpc.RpcError:
                return  # the server died (or the stream was cut): not acknowledged
            with state.lock:
                state.acked[vehicle] = int(ack.accepted_count)
                if len(state.acked) >= state.kill_after_acks:
                    state.enough_acks.set()


def run_cycle(
    server: ServerProcess,
    cycle: int,
    *,
    writers: int = 4,
    after_ack: bool,
    pause_s: float = 0.02,
    rng: random.Random,
) -> tuple[_Writers, str]:
    """Write to a running server and SIGKILL it; returns what the writers saw."""
    state = _Writers(cycle=cycle, kill_after_acks=rng.randint(1, 8))
    threads = [
        threading.Thread(target=_writer, args=(server, state, w, pause_s), daemon=True)
        for w in range(writers)
    ]
    for thread in threads:
        thread.start()
    if after_ack:  # right after the n-th acknowledgement (others are in flight)
        state.enough_acks.wait(timeout=60)
    else:  # at a random moment: in the middle of whatever is in flight
        time.sleep(rng.uniform(0.3, 2.0))
    server.kill()
    state.stop.set()
    for thread in threads:
        thread.join(timeout=60)
    return state, "after ack" if after_ack else "mid-stream"


def check_stored(measurements_dir: Path, state: _Writers, report: CycleReport) -> None:
    """Count acknowledged records missing, and streams stored in part."""
    records = FleetStore(measurements_dir).read("andorra")
    counts = records["drive_id"].astype(str).value_counts().to_dict() if len(records) else {}
    report.acknowledged = len(state.acked)
    report.unacknowledged = len(state.attempted) - len(state.acked)
    for vehicle, accepted in state.acked.items():
        report.lost_records += max(accepted - int(counts.get(vehicle, 0)), 0)
    for vehicle in state.attempted:
        stored = int(counts.get(vehicle, 0))
        if stored not in (0, RECORDS_PER_STREAM):
            report.partial_streams += 1


def kill_restart_cycles(
    start: Callable[[], ServerProcess], measurements_dir: Path, cycles: int, seed: int = 8
) -> list[CycleReport]:
    """Run ``cycles`` kill-and-restart cycles (each restart is the next cycle's server).

    ``measurements_dir`` is the root of the servers' fleet store (the map is ``andorra``).
    """
    rng = random.Random(seed)
    reports = []
    server = start()
    try:
        for cycle in range(cycles):
            state, kill = run_cycle(server, cycle, after_ack=cycle % 2 == 0, rng=rng)
            began = time.perf_counter()
            server = start()  # reads every stored part, like a real restart
            report = CycleReport(kill=kill, restart_s=time.perf_counter() - began)
            check_stored(measurements_dir, state, report)
            with server.channel() as channel:  # and the restarted server serves all of it
                info = pb_grpc.CommapServiceStub(channel).GetMap(pb.GetMapRequest(), timeout=30)
            on_disk = len(FleetStore(measurements_dir).read("andorra"))
            report.lost_records += abs(on_disk - int(info.map.measurement_count))
            reports.append(report)
    finally:
        server.stop()
    return reports


# -- damaged maps ---------------------------------------------------------------------------------
PROBE = pb.QueryCoverageRequest(
    points=[
        pb.CoveragePoint(position=pb.LatLon(latitude_deg=42.5063, longitude_deg=1.5218)),
        pb.CoveragePoint(position=pb.LatLon(latitude_deg=42.5430, longitude_deg=1.7330)),
    ]
)


def read_manifest(map_dir: Path) -> dict[str, object]:
    manifest: dict[str, object] = json.loads((map_dir / "manifest.json").read_text("utf-8"))
    return manifest


def write_manifest(map_dir: Path, manifest: dict[str, object]) -> None:
    (map_dir / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def reload_map(stub: pb_grpc.CommapServiceStub) -> pb.MapReload:
    response = stub.ReloadMaps(pb.ReloadMapsRequest(map_names=["andorra"]), timeout=60)
    assert len(response.maps) == 1
    return response.maps[0]


def served_title(stub: pb_grpc.CommapServiceStub) -> str:
    return str(stub.GetMap(pb.GetMapRequest(), timeout=10).map.title)


def retitle(map_dir: Path, title: str) -> None:
    manifest = read_manifest(map_dir)
    manifest["title"] = title
    write_manifest(map_dir, manifest)


# -- damage done to a map on disk, and undone ------------------------------------------------------
def truncate(path: Path) -> Callable[[], object]:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return lambda: path.write_bytes(data)


def truncate_parquet(map_dir: Path) -> Callable[[], object]:
    return truncate(map_dir / "cache" / "ad-lte.parquet")


def bad_checksum(map_dir: Path) -> Callable[[], object]:
    original = (map_dir / "manifest.json").read_bytes()
    manifest = read_manifest(map_dir)
    files = manifest["files"]
    assert isinstance(files, dict)
    files["roads/roads_edges.parquet"] = "0" * 64
    write_manifest(map_dir, manifest)
    return lambda: (map_dir / "manifest.json").write_bytes(original)


def missing_file(map_dir: Path) -> Callable[[], object]:
    path = map_dir / "roads" / "roads_nodes.parquet"
    data = path.read_bytes()
    path.unlink()
    return lambda: path.write_bytes(data)


def half_written_manifest(map_dir: Path) -> Callable[[], object]:
    return truncate(map_dir / "manifest.json")


def unchecked_truncated_table(map_dir: Path) -> Callable[[], object]:
    """A manifest without checksums (older maps) over a truncated table: fails when read."""
    original = (map_dir / "manifest.json").read_bytes()
    manifest = read_manifest(map_dir)
    manifest.pop("files")
    write_manifest(map_dir, manifest)
    restore_table = truncate(map_dir / "roads" / "roads_edges.parquet")

    def restore() -> None:
        restore_table()
        (map_dir / "manifest.json").write_bytes(original)

    return restore


def renamed(map_dir: Path) -> Callable[[], object]:
    original = (map_dir / "manifest.json").read_bytes()
    manifest = read_manifest(map_dir)
    manifest["name"] = "cork"
    write_manifest(map_dir, manifest)
    return lambda: (map_dir / "manifest.json").write_bytes(original)


def _edited(map_dir: Path, edit: Callable[[dict[str, Any]], object]) -> Callable[[], object]:
    """The manifest changed by ``edit`` (in place); returns the function that restores it."""
    original = (map_dir / "manifest.json").read_bytes()
    manifest = read_manifest(map_dir)
    edit(manifest)
    write_manifest(map_dir, manifest)
    return lambda: (map_dir / "manifest.json").write_bytes(original)


def zero_segments(map_dir: Path) -> Callable[[], object]:
    return _edited(map_dir, lambda m: m.update(segment_m=0))


def no_networks_key(map_dir: Path) -> Callable[[], object]:
    return _edited(map_dir, lambda m: m.pop("networks"))


def repeated_network_id(map_dir: Path) -> Callable[[], object]:
    def repeat(manifest: dict[str, Any]) -> None:
        manifest["networks"][1]["id"] = manifest["networks"][0]["id"]

    return _edited(map_dir, repeat)


def path_as_name(map_dir: Path) -> Callable[[], object]:
    return _edited(map_dir, lambda m: m.update(name="../../evil"))


def cache_outside(map_dir: Path) -> Callable[[], object]:
    """A network's table taken from another map's directory (which would pass its checks)."""

    def elsewhere(manifest: dict[str, Any]) -> None:
        manifest["networks"][0]["cache"] = "../../cork/built/cache/ie-a-lte.parquet"

    return _edited(map_dir, elsewhere)


DAMAGE = {
    "truncated parquet": (truncate_parquet, "does not match its checksum"),
    "bad manifest checksum": (bad_checksum, "does not match its checksum"),
    "missing file": (missing_file, "is missing"),
    "half-written manifest": (half_written_manifest, "unreadable manifest"),
    "truncated table, no checksums": (unchecked_truncated_table, ""),
    "other map's manifest": (renamed, "names map 'cork'"),
    "segment_m 0": (zero_segments, "manifest.json: key 'segment_m' must be above 0, got 0.0"),
    "no networks key": (no_networks_key, "manifest.json: missing key 'networks'"),
    "repeated network id": (repeated_network_id, "key 'networks[1].id' repeats network id"),
    "a path as map name": (path_as_name, "key 'name' must be a map identifier"),
    "a table outside the map": (cache_outside, "key 'networks[0].cache' must be a path inside"),
}
