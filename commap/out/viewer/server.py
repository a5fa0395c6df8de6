"""A small local web server for the map viewer (standard library ``http.server``, loopback only).

Routes (GET only):

``/``                      the page (``static/index.html``)
``/static/<file>``         the page's script and style sheet
``/leaflet/<file>``        Leaflet from the npm package (``node_modules/leaflet/dist``)
``/api/meta``              map name, extent, networks, legend classes, attribution
``/api/roads``             the road graph (GeoJSON)
``/api/coverage``          per network quality classes along the roads
``/api/plan``              the plan's route, handovers and drop-risk stretches (GeoJSON)
``/api/quality?lat=&lon=`` quality of every network at a point (click for details)
``/api/vehicles``          live vehicle positions and the plan version (polled by the page)

Every request is logged (``logging`` and :attr:`ViewerServer.requests`), so tests and users
can check that the page asked nothing from anywhere but this server. Nothing here reaches out
to the network: the page references no external URL and draws no background tiles.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import math
import mimetypes
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from commap.config import REPO_DIR
from commap.errors import CommapError, InvalidInputError
from commap.out.gis import plan_layers
from commap.out.style import network_colors
from commap.out.timeline import RouteTimeline, timeline_from_plan
from commap.out.viewer import data

if TYPE_CHECKING:
    import geopandas as gpd

    from commap.map.comm_map import CommMap
    from commap.plan import Plan
    from commap.service.planning import PlanResult

    PlanLike = Plan | PlanResult | RouteTimeline | Mapping[str, gpd.GeoDataFrame]

__all__ = ["LoggedRequest", "ViewerServer", "find_leaflet_dir"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
_LEAFLET_ENV = "COMMAP_LEAFLET_DIR"
_STATIC_FILES = frozenset({"viewer.js", "viewer.css"})


def find_leaflet_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Directory of Leaflet's ``leaflet.js`` / ``leaflet.css``.

    Looked up in order: ``explicit``, ``$COMMAP_LEAFLET_DIR``, ``node_modules/leaflet/dist``
    in the repository holding this package, then in the working directory.

    Raises
    ------
    InvalidInputError
        Leaflet is not installed (run ``make setup`` or ``npm ci``).

    Examples
    --------
    >>> find_leaflet_dir("/nonexistent")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: /nonexistent: no leaflet.js; run `make setup` to get Leaflet
    """
    if explicit is not None:
        candidates = [Path(explicit)]
    else:
        env = os.environ.get(_LEAFLET_ENV)
        candidates = [Path(env)] if env else []
        rel = Path("node_modules") / "leaflet" / "dist"
        candidates += [REPO_DIR / rel, Path.cwd() / rel]
    for path in candidates:
        if (path / "leaflet.js").is_file() and (path / "leaflet.css").is_file():
            return path.resolve()
    raise InvalidInputError(
        f"{candidates[0]}: no leaflet.js; run `make setup` to get Leaflet",
        field="leaflet_dir",
    )


@dataclass(frozen=True)
class LoggedRequest:
    """One request the server answered."""

    client: str
    method: str
    path: str
    status: int


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.client_address[0], format % args)

    def do_GET(self) -> None:
        viewer = self.server.viewer
        url = urlsplit(self.path)
        status, body, ctype = viewer.respond(url.path, parse_qs(url.query))
        viewer.record(LoggedRequest(self.client_address[0], "GET", self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        # the page may only talk to this server (defence in depth for "nothing leaves")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
        )
        self.end_headers()
        self.wfile.write(body)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], viewer: ViewerServer) -> None:
        self.viewer = viewer
        super().__init__(address, _Handler)


def _json(payload: Any, status: int = 200) -> tuple[int, bytes, str]:
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return status, body, "application/json; charset=utf-8"


def _error(status: HTTPStatus, message: str) -> tuple[int, bytes, str]:
    return _json({"error": message}, int(status))


class ViewerServer:
    """The viewer of one map, served on ``http://127.0.0.1:<port>/``.

    Parameters
    ----------
    cmap : CommMap
        The map to show.
    plan : Plan, RouteTimeline or mapping of GeoDataFrame, optional
        A plan (see :meth:`set_plan`).
    host : str
        A loopback address (default ``127.0.0.1``); other addresses are refused.
    port : int
        TCP port; 0 picks a free one (see :attr:`port`).
    spacing_m : float
        Length of the road pieces coverage is drawn with.
    t_s : float, optional
        Time of the coverage (satellite geometry), epoch seconds; default the map's default
        departure.
    leaflet_dir : path, optional
        Leaflet's ``dist`` directory (see :func:`find_leaflet_dir`).
    live : bool
        Poll :meth:`update_vehicle` positions every second (the gRPC server's live view).

    Examples
    --------
    >>> ViewerServer.__name__
    'ViewerServer'
    """

    def __init__(
        self,
        cmap: CommMap,
        *,
        plan: PlanLike | None = None,
        host: str = "127.0.0.1",
        port: int = 8765,
        spacing_m: float = 200.0,
        t_s: float | None = None,
        leaflet_dir: str | os.PathLike[str] | None = None,
        live: bool = False,
    ) -> None:
        if not _is_loopback(host):
            raise InvalidInputError(
                f"host {host!r} is not a loopback address (127.0.0.1 only)",
                field="host",
            )
        if not (0 <= int(port) <= 65535):
            raise InvalidInputError(f"port {port} is outside 0..65535", field="port")
        if not (math.isfinite(spacing_m) and spacing_m > 0):
            raise InvalidInputError(f"spacing_m must be > 0, got {spacing_m}", field="spacing_m")
        self.cmap = cmap
        self.spacing_m = float(spacing_m)
        self.t_s = cmap.default_departure_s if t_s is None else float(t_s)
        self.live = live
        self.leaflet_dir = find_leaflet_dir(leaflet_dir)
        self.requests: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, bytes, str]] = {}
        self._cache_lock = threading.Lock()
        self._vehicles: dict[str, dict[str, Any]] = {}
        self._plan_layers: Mapping[str, gpd.GeoDataFrame] | None = None
        self._plan_version = 0
        self.set_plan(plan)
        self._httpd = _HTTPServer((host, int(port)), self)
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound TCP port."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The page's address."""
        host = str(self._httpd.server_address[0])
        return f"http://{host}:{self.port}/"

    def start(self) -> ViewerServer:
        """Serve in a background (daemon) thread; returns ``self``."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, name="commap-viewer", daemon=True
            )
            self._thread.start()
            log.info("viewer of map %s at %s", self.cmap.name, self.url)
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` (or Ctrl-C)."""
        log.info("viewer of map %s at %s", self.cmap.name, self.url)
        self._httpd.serve_forever()

    def serve_until_interrupted(self) -> None:
        """Serve in the calling thread until Ctrl-C, then :meth:`stop`."""
        try:
            with contextlib.suppress(KeyboardInterrupt):
                self.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:  # shutdown() blocks unless serve_forever is running
            self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ViewerServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- live data ------------------------------------------------------------------------------
    def set_plan(self, plan: PlanLike | None) -> None:
        """Show ``plan`` (replaces the previous one; a live page reloads it within a second).

        ``plan`` is a :class:`commap.plan.Plan`, a :class:`commap.service.planning.PlanResult` (e.g. a
        drive session's ``result``), a :class:`commap.out.timeline.RouteTimeline` or plan layers
        (:func:`commap.out.gis.read_plan_layers`); None removes the plan.
        """
        from commap.plan import Plan
        from commap.service.planning import PlanResult

        if isinstance(plan, Plan | PlanResult):
            plan = timeline_from_plan(plan)
        layers = plan_layers(plan) if isinstance(plan, RouteTimeline) else plan
        with self._lock:
            self._plan_layers = layers
            self._plan_version += 1
        with self._cache_lock:
            self._cache.pop("/api/plan", None)

    def update_vehicle(
        self,
        vehicle_id: str,
        *,
        lon: float,
        lat: float,
        t_s: float | None = None,
        network_id: str = "",
        note: str = "",
    ) -> None:
        """Record a vehicle's latest position (e.g. from a gRPC ``Drive`` stream).

        Raises
        ------
        InvalidInputError
            A position that is not a finite WGS84 coordinate.
        """
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            raise InvalidInputError(f"vehicle {vehicle_id}: bad position {lat}, {lon}")
        with self._lock:
            self._vehicles[str(vehicle_id)] = {
                "id": str(vehicle_id),
                "lon": float(lon),
                "lat": float(lat),
                "t_s": float(time.time() if t_s is None else t_s),
                "network_id": network_id,
                "note": note,
            }

    def remove_vehicle(self, vehicle_id: str) -> None:
        """Forget a vehicle (its stream ended)."""
        with self._lock:
            self._vehicles.pop(str(vehicle_id), None)

    # -- requests -------------------------------------------------------------------------------
    def record(self, request: LoggedRequest) -> None:
        """Log one answered request."""
        with self._lock:
            self.requests.append(request)
        log.info("%s %s %s -> %d", request.client, request.method, request.path, request.status)

    def respond(self, path: str, query: Mapping[str, list[str]]) -> tuple[int, bytes, str]:
        """Status, body and content type for a GET of ``path``."""
        try:
            return self._route(path, query)
        except InvalidInputError as exc:
            return _error(HTTPStatus.BAD_REQUEST, str(exc))
        except CommapError as exc:
            return _error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
        except Exception:  # the page gets a status, the log gets the traceback
            log.exception("viewer: %s failed", path)
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    def _route(self, path: str, query: Mapping[str, list[str]]) -> tuple[int, bytes, str]:
        if path in ("/", "/index.html"):
            return self._file(STATIC_DIR / "index.html")
        if path.startswith("/static/"):
            name = path.removeprefix("/static/")
            if name not in _STATIC_FILES:
                return _error(HTTPStatus.NOT_FOUND, "no such file")
            return self._file(STATIC_DIR / name)
        if path.startswith("/leaflet/"):
            return self._leaflet(path.removeprefix("/leaflet/"))
        if path == "/api/quality":
            return _json(self._quality(query))
        if path == "/api/vehicles":
            with self._lock:
                vehicles = sorted(self._vehicles.values(), key=lambda v: v["id"])
                version = self._plan_version
            return _json({"vehicles": vehicles, "plan_version": version})
        builders: dict[str, Callable[[], Any]] = {
            "/api/meta": self._meta,
            "/api/roads": lambda: data.roads_payload(self.cmap),
            "/api/coverage": lambda: data.coverage_payload(
                self.cmap, spacing_m=self.spacing_m, t_s=self.t_s
            ),
            "/api/plan": self._plan,
        }
        if path in builders:
            return self._cached(path, builders[path])
        return _error(HTTPStatus.NOT_FOUND, "no such path")

    def _cached(self, key: str, build: Callable[[], Any]) -> tuple[int, bytes, str]:
        # one build per payload even when the page asks for several at once
        with self._cache_lock:
            if key not in self._cache:
                self._cache[key] = _json(build())
            return self._cache[key]

    def _meta(self) -> dict[str, Any]:
        with self._lock:
            has_plan = self._plan_layers is not None
        return data.meta_payload(self.cmap, t_s=self.t_s, has_plan=has_plan, live=self.live)

    def _plan(self) -> dict[str, Any]:
        with self._lock:
            layers = self._plan_layers
        return data.plan_payload(layers, network_colors(self.cmap.catalogue.ids))

    def _quality(self, query: Mapping[str, list[str]]) -> dict[str, Any]:
        try:
            lat = float(query["lat"][0])
            lon = float(query["lon"][0])
        except (KeyError, IndexError, ValueError):
            raise InvalidInputError("give lat and lon as numbers", field="lat") from None
        return data.quality_payload(self.cmap, lon, lat, self.t_s)

    @staticmethod
    def _file(path: Path) -> tuple[int, bytes, str]:
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        return 200, path.read_bytes(), ctype

    def _leaflet(self, name: str) -> tuple[int, bytes, str]:
        target = (self.leaflet_dir / name).resolve()
        # only files inside Leaflet's dist directory (no ../ escapes)
        if not target.is_relative_to(self.leaflet_dir) or not target.is_file():
            return _error(HTTPStatus.NOT_FOUND, "no such file")
        return self._file(target)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
