"""The offline web viewer: its JSON API, its local server and the page in headless Chromium."""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from commap.errors import InvalidInputError
from commap.map.comm_map import CommMap
from commap.out.style import network_colors
from commap.out.timeline import RouteTimeline, timeline_from_plan
from commap.out.viewer import ViewerServer, find_leaflet_dir, serve_viewer
from commap.plan import Plan, plan_corridor
from commap.service.planning import PlanRequest, plan_route
from tests.support.browser import PageRun, chromium_path, load_page
from tests.support.paths import REPO

pytestmark = pytest.mark.viewer

ORIGIN = (1.5218, 42.5063)  # Andorra la Vella
DESTINATION = (1.7330, 42.5430)  # Pas de la Casa
WINDOW = (1280, 800)


@pytest.fixture(scope="module")
def plan_timeline(andorra: CommMap) -> tuple[Plan, RouteTimeline]:
    corridor = andorra.corridor(andorra.routes(ORIGIN, DESTINATION)[0])
    matrix = andorra.quality(corridor)
    plan = plan_corridor(corridor, matrix, andorra.catalogue, app="infotainment")
    return plan, timeline_from_plan(plan, corridor=corridor, matrix=matrix)


@pytest.fixture(scope="module")
def server(andorra: CommMap, plan_timeline: tuple[Plan, RouteTimeline]) -> Iterator[ViewerServer]:
    with serve_viewer(andorra, plan=plan_timeline[1], port=0, spacing_m=500.0, live=True) as srv:
        yield srv


def get(server: ViewerServer, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=30) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


# -- API -----------------------------------------------------------------------------------------


def test_meta_lists_networks_classes_and_attribution(
    server: ViewerServer, andorra: CommMap
) -> None:
    status, body = get(server, "/api/meta")
    meta = json.loads(body)
    assert status == 200
    assert [n["id"] for n in meta["networks"]] == list(andorra.catalogue.ids)
    assert {"rsrp_dbm", "sinr_db", "elevation_deg"} <= set(meta["classes"])
    assert any("OpenStreetMap" in a for a in meta["attribution"])
    assert meta["has_plan"] and meta["live"]


def test_coverage_has_one_value_per_piece_and_network(server: ViewerServer) -> None:
    cov = json.loads(get(server, "/api/coverage")[1])
    n = len(cov["pieces"])
    assert n > 500
    for values in cov["networks"].values():
        assert len(values["sinr_class"]) == len(values["provenance"]) == n
    # satellites have no RSRP class, terrestrial networks no visibility class
    assert set(cov["networks"]["starlink"]["rsrp_class"]) == {-1}
    assert set(cov["networks"]["ad-lte"]["visibility_class"]) == {-1}
    # tunnel pieces are out of sync for every network
    tunnel = np.array(cov["tunnel"], dtype=bool)
    assert tunnel.any()
    for values in cov["networks"].values():
        assert (np.array(values["sinr_class"])[tunnel] == 4).all()


def test_plan_payload_matches_plan(
    server: ViewerServer, plan_timeline: tuple[Plan, RouteTimeline]
) -> None:
    plan, _ = plan_timeline
    fc = json.loads(get(server, "/api/plan")[1])
    layers = [f["properties"]["layer"] for f in fc["features"]]
    assert layers.count("handovers") == len(plan.handovers)
    assert layers.count("route") == len(list(plan.stretches()))
    assert layers.count("drop_risk") >= 1


def test_quality_at_a_point_and_bad_queries(server: ViewerServer) -> None:
    status, body = get(server, "/api/quality?lat=42.5063&lon=1.5218")
    assert status == 200
    rows = {r["id"]: r for r in json.loads(body)["networks"]}
    assert rows["ad-lte"]["usable"] and rows["ad-lte"]["provenance"] == "modelled"
    assert get(server, "/api/quality?lat=x&lon=1")[0] == 400
    assert get(server, "/api/quality?lat=48.0&lon=2.0")[0] == 400  # Paris is outside the map
    assert get(server, "/nope")[0] == 404
    assert get(server, "/leaflet/../../package.json")[0] == 404
    assert get(server, "/static/../server.py")[0] == 404


def test_live_vehicles(server: ViewerServer) -> None:
    server.update_vehicle("car-1", lon=1.55, lat=42.51, t_s=1.0, network_id="ad-lte")
    vehicles = json.loads(get(server, "/api/vehicles")[1])["vehicles"]
    assert vehicles == [
        {"id": "car-1", "lon": 1.55, "lat": 42.51, "t_s": 1.0, "network_id": "ad-lte", "note": ""}
    ]
    server.remove_vehicle("car-1")
    assert json.loads(get(server, "/api/vehicles")[1])["vehicles"] == []
    with pytest.raises(InvalidInputError):
        server.update_vehicle("car-2", lon=200.0, lat=0.0)


def test_set_plan_accepts_a_plan_and_bumps_the_version(
    andorra: CommMap, plan_timeline: tuple[Plan, RouteTimeline]
) -> None:
    srv = ViewerServer(andorra, port=0)
    try:
        assert json.loads(srv.respond("/api/plan", {})[1])["features"] == []
        srv.set_plan(plan_timeline[0])
        assert json.loads(srv.respond("/api/vehicles", {})[1])["plan_version"] == 2
        assert json.loads(srv.respond("/api/plan", {})[1])["features"]
        # a planning result (what a drive session holds) is accepted as well
        result = plan_route(andorra, PlanRequest(origin=ORIGIN, destination=DESTINATION))
        srv.set_plan(result)
        handovers = [
            f
            for f in json.loads(srv.respond("/api/plan", {})[1])["features"]
            if f["properties"]["layer"] == "handovers"
        ]
        assert len(handovers) == len(result.plan.handovers)
    finally:
        srv.stop()


def test_refuses_non_loopback_hosts_and_missing_leaflet(andorra: CommMap, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="loopback"):
        ViewerServer(andorra, host="0.0.0.0", port=0)
    with pytest.raises(InvalidInputError, match="leaflet"):
        find_leaflet_dir(tmp_path)


def test_page_references_only_its_own_server(server: ViewerServer) -> None:
    page = get(server, "/")[1].decode()
    js = get(server, "/static/viewer.js")[1].decode()
    assert '<script src="/leaflet/leaflet.js">' in page
    for text in (page, js, get(server, "/leaflet/leaflet.css")[1].decode()):
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text)
        assert not re.search(r"url\(\s*[\"']?(https?:)?//", text)


# -- the page in a browser -----------------------------------------------------------------------


def requested_host(first_bytes: bytes) -> str:
    """Host of a proxied request line: ``CONNECT host:443`` or ``GET http://host/...``."""
    line = first_bytes.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    if len(parts) < 2:
        return line
    target = parts[1]
    if parts[0] == "CONNECT":
        return target.rsplit(":", 1)[0]
    return re.sub(r"^[a-z]+://", "", target).split("/", 1)[0].split(":", 1)[0]


class _ProxyTrap:
    """A TCP listener standing in for a proxy: any request to leave 127.0.0.1 arrives here."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    self.connections.append(conn.recv(512))
                except OSError:
                    self.connections.append(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


NO_CHROMIUM = "headless Chromium is not installed (Debian package `chromium`)"
READY_JS = "document.getElementById('status')?.dataset.ready === '1'"


def foreign_requests(run: PageRun, origin: str) -> list[str]:
    """The page's own requests that went anywhere but ``origin`` (data: and blob: URLs aside)."""
    return [
        url
        for url in run.request_urls
        if not url.startswith((origin, "data:", "blob:")) and url != "about:blank"
    ]


@pytest.mark.skipif(chromium_path() is None, reason=NO_CHROMIUM)
def test_page_draws_route_and_markers_offline(
    andorra: CommMap, plan_timeline: tuple[Plan, RouteTimeline], tmp_path: Path
) -> None:
    plan, timeline = plan_timeline
    trap = _ProxyTrap()
    try:
        with serve_viewer(andorra, plan=timeline, port=0, spacing_m=500.0, live=True) as srv:
            # a live vehicle (as the gRPC Drive stream feeds it) at the route start
            srv.update_vehicle("car-1", lon=ORIGIN[0], lat=ORIGIN[1], network_id="ad-lte")
            run = load_page(
                srv.url,
                tmp_path / "profile",
                proxy_port=trap.port,
                window=WINDOW,
                ready_js=READY_JS,
            )
            requests = list(srv.requests)
    finally:
        trap.close()
    html = run.html
    # the page finished: every layer drawn, the counts match the plan
    status = re.search(r'<p id="status"([^>]*)>([^<]*)</p>', html)
    assert status is not None and run.ready, html[-2000:]
    assert 'data-ready="1"' in status.group(1), status.group(2)
    assert f'data-handovers="{len(plan.handovers)}"' in status.group(1)
    assert f'data-route-pieces="{len(list(plan.stretches()))}"' in status.group(1)
    # SVG paths: roads, coverage, the route (casing + colour per stretch) and one per handover
    route_pane = re.search(r'leaflet-route-pane".*?</svg>', html, re.S)
    marks_pane = re.search(r'leaflet-marks-pane".*?</svg>', html, re.S)
    assert route_pane and route_pane.group(0).count("<path") == 2 * len(list(plan.stretches()))
    # one circle per handover and one for the live vehicle
    assert marks_pane and marks_pane.group(0).count("<path") == len(plan.handovers) + 1
    assert "OpenStreetMap contributors" in html  # attribution in the corner
    # the page's own requests (its DevTools session; the browser's own traffic is not the
    # page's) all went to the local server, and the server saw them come from 127.0.0.1
    origin = srv.url.rstrip("/")
    assert run.request_urls and foreign_requests(run, origin) == []
    assert requests and {r.client for r in requests} == {"127.0.0.1"}
    paths = {r.path for r in requests}
    assert {"/", "/leaflet/leaflet.js", "/api/roads", "/api/coverage", "/api/plan"} <= paths
    assert "/api/vehicles" in paths
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    # the screenshot shows a drawn map, with the route in its networks' colours
    shot = tmp_path / "viewer.png"
    shot.write_bytes(run.screenshot_png)
    px = np.asarray(mpimg.imread(shot))[:, :, :3]
    assert px.shape[:2] == (WINDOW[1], WINDOW[0])
    assert px.std() > 0.1
    colors = network_colors(timeline.matrix.network_ids)
    main = max(set(timeline.serving), key=timeline.serving.count)
    rgb = np.array([int(colors[main][i : i + 2], 16) / 255 for i in (1, 3, 5)])
    assert (np.abs(px - rgb).max(axis=2) < 0.05).mean() > 0.003
    dark = (px.max(axis=2) < 0.12).mean()  # the route's dark casing and marker outlines
    assert dark > 0.003


@pytest.mark.skipif(chromium_path() is None, reason=NO_CHROMIUM)
def test_a_page_that_reaches_out_is_caught(tmp_path: Path) -> None:
    """The checks above can fail: a page loading a tile from the internet is seen in its own
    requests, and the request ends in the proxy trap instead of the internet."""
    trap = _ProxyTrap()
    try:
        page = "data:text/html,<img src='http://tile.openstreetmap.org/0/0/0.png'>"
        run = load_page(
            page, tmp_path / "p", proxy_port=trap.port, window=WINDOW, ready_js="document.images[0]"
        )
    finally:
        trap.close()
    assert foreign_requests(run, "http://127.0.0.1") == ["http://tile.openstreetmap.org/0/0/0.png"]
    assert "tile.openstreetmap.org" in {requested_host(c) for c in trap.connections}


def test_quality_payload_marks_unknown(cork: CommMap) -> None:
    from commap.out.viewer.data import meta_payload, quality_payload
    from tests.support.routes import CORK_FAR_CORNER

    far = quality_payload(cork, CORK_FAR_CORNER[0], CORK_FAR_CORNER[1], cork.default_departure_s)
    rows = {n["id"]: n for n in far["networks"]}
    assert rows["ie-b-lte"]["unknown"] and not rows["ie-b-lte"]["usable"]
    assert rows["ie-b-lte"]["provenance"] == "none"
    assert not rows["ie-mno1-3g"]["unknown"]
    near = quality_payload(cork, -8.387911, 51.935522, cork.default_departure_s)
    assert not {n["id"]: n for n in near["networks"]}["ie-b-lte"]["unknown"]
    style = meta_payload(cork, t_s=0.0, has_plan=False, live=False)["style"]
    assert style["unknown"] not in (style["measured"], style["modelled"], style["no_network"])


def test_leaflet_is_found_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `commap view` run from outside the checkout finds the npm package `make setup` installed
    monkeypatch.delenv("COMMAP_LEAFLET_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    found = find_leaflet_dir()
    assert (found / "leaflet.js").is_file() and found.is_relative_to(REPO)
