"""The live viewer inside the server (``--viewer-port``): a Drive stream's vehicle and plan are
served by the viewer's JSON endpoints while the stream is open, and gone after it ends."""

from __future__ import annotations

import json
import queue
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.server_harness import ServerProcess, ensure_stubs, start_server

ensure_stubs()

from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402

from commap.v1 import commap_service_pb2 as pb  # noqa: E402
from commap.v1 import commap_service_pb2_grpc as pb_grpc  # noqa: E402

pytestmark = pytest.mark.integration

T0 = 1737633600


@pytest.fixture(scope="module")
def viewer_server(
    andorra_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = start_server(
        andorra_dir, tmp_path_factory.mktemp("viewer-server"), extra_args=("--viewer-port", "0")
    )
    yield server
    server.stop()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _requests(messages: queue.Queue[pb.DriveRequest | None]) -> Iterator[pb.DriveRequest]:
    while (item := messages.get()) is not None:
        yield item


def _until(check: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_drive_stream_shows_live_in_the_viewer(viewer_server: ServerProcess) -> None:
    url = viewer_server.viewer_url
    assert url.startswith("http://127.0.0.1:")
    assert _get(url + "api/meta")["name"] == "andorra"
    assert _get(url + "api/vehicles")["vehicles"] == []
    version0 = _get(url + "api/vehicles")["plan_version"]
    messages: queue.Queue[pb.DriveRequest | None] = queue.Queue()
    trip = pb.PlanRouteRequest(
        endpoints=pb.Endpoints(
            origin=pb.LatLon(latitude_deg=42.5063, longitude_deg=1.5218),
            destination=pb.LatLon(latitude_deg=42.5100, longitude_deg=1.5600),
        ),
        departure_time=Timestamp(seconds=T0),
    )
    messages.put(pb.DriveRequest(start=pb.DriveStart(plan=trip, vehicle_id="viewer-car")))
    with viewer_server.channel() as channel:
        responses = pb_grpc.CommapServiceStub(channel).Drive(_requests(messages), timeout=120)
        plan = next(responses).plan.plan
        segment = plan.segments[len(plan.segments) // 2]
        for k, s in enumerate((plan.segments[0], plan.segments[5], segment)):
            fix = pb.PositionFix(time=Timestamp(seconds=T0 + 10 * k + 1), position=s.position)
            messages.put(pb.DriveRequest(update=pb.PositionUpdate(fix=fix)))

        def at_last_fix() -> list[dict[str, Any]]:
            vehicles = _get(url + "api/vehicles")["vehicles"]
            return [v for v in vehicles if v["t_s"] == T0 + 21]

        vehicles = _until(at_last_fix)
        assert len(vehicles) == 1, _get(url + "api/vehicles")
        car = vehicles[0]
        assert car["id"] == "viewer-car"
        assert car["lon"] == pytest.approx(segment.position.longitude_deg)
        assert car["lat"] == pytest.approx(segment.position.latitude_deg)
        assert car["network_id"] == segment.network_id
        # the drive's plan is the viewer's plan
        assert _get(url + "api/vehicles")["plan_version"] > version0
        route = [
            f for f in _get(url + "api/plan")["features"] if f["properties"]["layer"] == "route"
        ]
        assert {f["properties"]["network_id"] for f in route} == {
            s.network_id for s in plan.segments
        }
        messages.put(None)
        assert all(r.WhichOneof("event") == "instruction" for r in responses)
    # the stream ended: the vehicle is gone
    assert _until(lambda: _get(url + "api/vehicles")["vehicles"] == [])


def test_viewer_stops_with_the_server(viewer_server: ServerProcess) -> None:
    # the module's last test: stops the module's server
    url = viewer_server.viewer_url
    assert _get(url + "api/vehicles")["vehicles"] == []
    assert viewer_server.stop() == 0
    with pytest.raises(OSError):
        _get(url + "api/vehicles")
