"""Server configuration: command-line flags, else ``COMMAP_*`` environment variables, else defaults.

:func:`load_config` parses both into one frozen, validated :class:`ServerConfig`; every other
server module reads its limits from that object only.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from commap.config import DEFAULT_MAP, Settings
from commap.errors import InvalidInputError
from commap.map.manifest import MANIFEST, MAP_NAME
from commap.plan import defaults
from server.auth import AuthClient, AuthPolicy, parse_token_entries, read_token_file

__all__ = ["ServerConfig", "build_parser", "is_loopback", "load_config"]

_MIB = 1 << 20


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Everything the server needs to start, validated once.

    Parameters
    ----------
    host, port : where to listen; port 0 picks a free port (logged at start).
    maps : names (or built-map directories) to serve; empty: every built map under the maps
        directory (the default map first), or the default map when none is built.
    settings : library settings (maps directory, default map).
    measurements_dir : root of the fleet store (a directory or an fsspec URL; partitions
        ``map=<name>/...``); None: ``maps/<name>/measurements`` beside the built map, which
        survives map rebuilds.
    solve_workers : solves (plans, re-plans, coverage batches) running at once, in threads.
    solve_queue : solves allowed to wait for a worker; beyond it calls get RESOURCE_EXHAUSTED.
    max_solves_per_client : solves one client (its token's name, else its address) may have
        admitted at once; beyond it its calls get RESOURCE_EXHAUSTED, so others still get served.
    max_work_s : time budget of a solve whose call has no deadline; the work is stopped then.
    plan_cost_us_per_segment_network : estimated work of a plan per route segment and network
        (microseconds); a plan whose estimate exceeds the call's remaining time (or
        ``max_work_s``) is refused at once with RESOURCE_EXHAUSTED; 0: no estimate.
    fleet_refresh_interval_s : least time between two refreshes of the map requests use with
        newly stored measurements (a refresh reads the new batches only and computes again
        only the cells they fall in: :mod:`commap.map.fleet`).
    fleet_executor : where a refresh reads and aggregates the new parts: ``serial`` (in the
        server's fusion process) or ``dask`` (a ``LocalCluster`` started by the fusion
        process, or the cluster at ``fleet_scheduler``; the store must then be reachable from
        its workers: a shared directory or an object-storage URL).
    fleet_scheduler : address of a dask scheduler for ``fleet_executor = "dask"``.
    max_drive_streams : concurrent Drive streams; beyond it RESOURCE_EXHAUSTED.
    max_receive_message_bytes, max_send_message_bytes : gRPC message-size limits.
    max_polyline_points, max_coverage_points, max_measurements_per_stream : request limits.
    max_route_m : longest route a plan may cover.
    default_solver_time_limit_s, max_solver_time_limit_s : solver time when the request gives
        none, and the cap on what a request may ask for (the call deadline caps it too).
    lead_time_s : minimum lead of a Drive handover instruction before its point.
    off_route_distance_m : Drive re-plans when the vehicle is farther than this from its route.
    min_replan_interval_s : fewest seconds (vehicle time) between two re-plans of one drive.
    shutdown_grace_s : on SIGTERM, time given to running calls and streams before they are cut.
    access_log : log one line per call (method, peer, status, latency).
    log_level : root log level of the server process.
    tls_cert, tls_key : PEM certificate chain and private key; both given: TLS only (no
        plaintext port).
    tls_client_ca : PEM CA bundle; given: mutual TLS (clients must present a certificate
        signed by it).
    auth_clients : bearer-token clients (see :mod:`server.auth`); empty: no authentication.
    reflection : serve gRPC server reflection.
    viewer_port : serve the live web viewer of the default map on 127.0.0.1 at this port
        (0: any free port); None: no viewer.
    insecure : allow a host other machines can reach without tokens (anyone who reaches the
        port may plan, upload and read maps; ``ReloadMaps`` stays loopback-only without tokens).
    """

    host: str = "127.0.0.1"
    port: int = 50051
    maps: tuple[str, ...] = ()
    settings: Settings = field(default_factory=Settings)
    measurements_dir: Path | str | None = None
    solve_workers: int = 2
    solve_queue: int = 32
    max_solves_per_client: int = 16
    max_work_s: float = 120.0
    plan_cost_us_per_segment_network: float = 40.0
    fleet_refresh_interval_s: float = 5.0
    fleet_executor: str = "serial"
    fleet_scheduler: str | None = None
    max_drive_streams: int = 256
    max_receive_message_bytes: int = 8 * _MIB
    max_send_message_bytes: int = 64 * _MIB
    max_polyline_points: int = 100_000
    max_coverage_points: int = 10_000
    max_measurements_per_stream: int = 200_000
    max_route_m: float = 2_500_000.0
    default_solver_time_limit_s: float = defaults.SOLVER_TIME_LIMIT_S
    max_solver_time_limit_s: float = 60.0
    lead_time_s: float = 10.0
    off_route_distance_m: float = 60.0
    min_replan_interval_s: float = 5.0
    shutdown_grace_s: float = 10.0
    access_log: bool = True
    log_level: str = "INFO"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    auth_clients: tuple[AuthClient, ...] = ()
    reflection: bool = True
    viewer_port: int | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if not self.host:
            raise InvalidInputError("host must not be empty", field="host")
        if not self.auth_clients and not self.insecure and not is_loopback(self.host):
            raise InvalidInputError(
                f"host {self.host} is reachable from other machines and no tokens are "
                "configured: configure tokens (--tokens-file, COMMAP_TOKENS), listen on "
                "127.0.0.1, or pass --insecure to serve anyone who reaches the port",
                field="host",
            )
        if not 0 <= self.port <= 65535:
            raise InvalidInputError(f"port {self.port} is not within 0..65535", field="port")
        for name in (
            "solve_workers",
            "max_solves_per_client",
            "max_drive_streams",
            "max_receive_message_bytes",
            "max_send_message_bytes",
            "max_polyline_points",
            "max_coverage_points",
            "max_measurements_per_stream",
        ):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be at least 1", field=name)
        if self.solve_queue < 0:
            raise InvalidInputError("solve_queue must be >= 0", field="solve_queue")
        for name in (
            "max_route_m",
            "default_solver_time_limit_s",
            "max_solver_time_limit_s",
            "lead_time_s",
            "off_route_distance_m",
            "max_work_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InvalidInputError(f"{name} must be a positive number", field=name)
        for name in (
            "min_replan_interval_s",
            "shutdown_grace_s",
            "plan_cost_us_per_segment_network",
            "fleet_refresh_interval_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidInputError(f"{name} must be >= 0", field=name)
        if self.default_solver_time_limit_s > self.max_solver_time_limit_s:
            raise InvalidInputError(
                "default_solver_time_limit_s exceeds max_solver_time_limit_s",
                field="default_solver_time_limit_s",
            )
        if self.fleet_executor not in ("serial", "dask"):
            raise InvalidInputError(
                f"fleet_executor {self.fleet_executor!r} must be serial or dask",
                field="fleet_executor",
            )
        if self.fleet_scheduler and self.fleet_executor != "dask":
            raise InvalidInputError(
                "fleet_scheduler needs fleet_executor dask", field="fleet_scheduler"
            )
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise InvalidInputError(f"unknown log level {self.log_level!r}", field="log_level")
        self._check_tls()
        if self.auth_clients:
            AuthPolicy(self.auth_clients)  # duplicate names or tokens
        if self.viewer_port is not None and not 0 <= self.viewer_port <= 65535:
            raise InvalidInputError(
                f"viewer_port {self.viewer_port} is not within 0..65535", field="viewer_port"
            )

    def _check_tls(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidInputError(
                "TLS needs both tls_cert and tls_key",
                field="tls_cert" if self.tls_key else "tls_key",
            )
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise InvalidInputError(
                "mutual TLS (tls_client_ca) needs tls_cert and tls_key", field="tls_client_ca"
            )
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise InvalidInputError(f"{name}: {path} is not a file", field=name)

    @property
    def tls(self) -> bool:
        """True when the server listens with TLS."""
        return self.tls_cert is not None

    @property
    def auth(self) -> AuthPolicy | None:
        """The token policy, or None when calls need no token."""
        return AuthPolicy(self.auth_clients) if self.auth_clients else None

    @property
    def map_names(self) -> tuple[str, ...]:
        """The maps to serve: ``maps`` or, when empty, every built map under the maps directory.

        The default map comes first; with no built map at all it is the default map alone (so
        that the server says how to build it).
        """
        if self.maps:
            return self.maps
        default = self.settings.default_map
        built = sorted(
            p.name
            for p in self.settings.maps_dir.glob("*")
            if MAP_NAME.match(p.name)
            and ((p / "built" / MANIFEST).is_file() or (p / MANIFEST).is_file())
        )
        return (default, *(name for name in built if name != default))

    @property
    def address(self) -> str:
        """``host:port`` to bind (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"


def is_loopback(host: str) -> bool:
    """True for a host only this machine can reach (``localhost``, 127.0.0.0/8, ``::1``).

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("[::1]"), is_loopback("localhost")
    (True, True, True)
    >>> is_loopback("0.0.0.0"), is_loopback("192.0.2.7"), is_loopback("example.org")
    (False, False, False)
    """
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# flag / env name -> (field, type); the env name is COMMAP_ + the upper-cased flag name.
_SCALARS: dict[str, tuple[str, type]] = {
    "host": ("host", str),
    "port": ("port", int),
    "solve-workers": ("solve_workers", int),
    "solve-queue": ("solve_queue", int),
    "max-solves-per-client": ("max_solves_per_client", int),
    "max-work-s": ("max_work_s", float),
    "plan-cost-us-per-segment-network": ("plan_cost_us_per_segment_network", float),
    "fleet-refresh-interval-s": ("fleet_refresh_interval_s", float),
    "fleet-executor": ("fleet_executor", str),
    "fleet-scheduler": ("fleet_scheduler", str),
    "max-drive-streams": ("max_drive_streams", int),
    "max-receive-message-bytes": ("max_receive_message_bytes", int),
    "max-send-message-bytes": ("max_send_message_bytes", int),
    "max-polyline-points": ("max_polyline_points", int),
    "max-coverage-points": ("max_coverage_points", int),
    "max-measurements-per-stream": ("max_measurements_per_stream", int),
    "max-route-m": ("max_route_m", float),
    "default-solver-time-limit-s": ("default_solver_time_limit_s", float),
    "max-solver-time-limit-s": ("max_solver_time_limit_s", float),
    "lead-time-s": ("lead_time_s", float),
    "off-route-distance-m": ("off_route_distance_m", float),
    "min-replan-interval-s": ("min_replan_interval_s", float),
    "shutdown-grace-s": ("shutdown_grace_s", float),
    "log-level": ("log_level", str),
    "viewer-port": ("viewer_port", int),
}
# path options: flag -> field (env COMMAP_<FLAG>)
_PATHS: dict[str, str] = {
    "tls-cert": "tls_cert",
    "tls-key": "tls_key",
    "tls-client-ca": "tls_client_ca",
    "tokens-file": "tokens_file",
}


def _env_name(flag: str) -> str:
    return "COMMAP_" + flag.upper().replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m server`` argument parser (every flag also reads ``COMMAP_<FLAG>``)."""
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="Serve commap maps and plans over gRPC.",
        epilog="Every option can also be set as COMMAP_<OPTION> (e.g. COMMAP_PORT=0).",
    )
    for flag, (name, kind) in _SCALARS.items():
        default = next(f.default for f in fields(ServerConfig) if f.name == name)
        parser.add_argument(
            f"--{flag}", type=str, default=None, help=f"{kind.__name__}, default {default}"
        )
    helps = {
        "tls-cert": "PEM certificate chain: serve TLS only (with --tls-key)",
        "tls-key": "PEM private key of --tls-cert",
        "tls-client-ca": "PEM CA bundle: require client certificates signed by it (mutual TLS)",
        "tokens-file": "TOML file of bearer-token clients (see server/auth.py); tokens are "
        "also read from COMMAP_TOKENS, never from the command line",
    }
    for flag, text in helps.items():
        parser.add_argument(f"--{flag}", default=None, help=text)
    parser.add_argument(
        "--no-reflection",
        action="store_true",
        default=None,
        help="do not serve gRPC server reflection",
    )
    parser.add_argument(
        "--map",
        dest="maps",
        action="append",
        default=None,
        help="map to serve (name under the maps directory, or a built-map directory); repeatable",
    )
    parser.add_argument("--maps-dir", default=None, help="directory holding one folder per map")
    parser.add_argument("--default-map", default=None, help="map used when a request names none")
    parser.add_argument(
        "--measurements-dir",
        default=None,
        help="root of the fleet store: a directory or an fsspec URL",
    )
    parser.add_argument(
        "--no-access-log", action="store_true", default=None, help="do not log one line per call"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="serve a non-loopback --host without tokens (anyone who reaches the port may call "
        "every RPC but ReloadMaps)",
    )
    return parser


def _convert(raw: str, kind: type, source: str, name: str) -> Any:
    try:
        return kind(raw)
    except ValueError:
        raise InvalidInputError(
            f"{source}: {raw!r} is not a valid {kind.__name__}", field=name
        ) from None


def load_config(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> ServerConfig:
    """Build the server configuration from flags, then ``COMMAP_*`` variables, then defaults.

    Parameters
    ----------
    argv : command-line arguments without the program name (``[]``: none).
    environ : environment (default ``os.environ``).

    Raises
    ------
    InvalidInputError
        A value does not parse or is out of range (the message names the flag or variable).

    Examples
    --------
    >>> load_config(["--port", "0"], {}).port
    0
    >>> load_config([], {"COMMAP_LEAD_TIME_S": "7.5"}).lead_time_s
    7.5
    >>> load_config([], {}).map_names[0]
    'andorra'
    >>> load_config(["--map", "cork"], {}).map_names
    ('cork',)
    """
    env = dict(os.environ if environ is None else environ)
    try:
        args = build_parser().parse_args(list(argv or []))
    except SystemExit as exc:  # argparse already printed the problem
        raise InvalidInputError(f"bad command line: {' '.join(argv or [])}") from exc
    values: dict[str, Any] = {}
    for flag, (name, kind) in _SCALARS.items():
        raw = getattr(args, flag.replace("-", "_"))
        source = f"--{flag}"
        if raw is None and _env_name(flag) in env:
            raw, source = env[_env_name(flag)], _env_name(flag)
        if raw is not None:
            values[name] = _convert(raw, kind, source, name)
    maps = args.maps if args.maps is not None else _split(env.get("COMMAP_MAPS", ""))
    values["maps"] = tuple(maps)
    settings_kw: dict[str, Any] = {}
    maps_dir = args.maps_dir or env.get("COMMAP_MAPS_DIR")
    if maps_dir:
        settings_kw["maps_dir"] = Path(maps_dir)
    settings_kw["default_map"] = args.default_map or env.get("COMMAP_MAP") or DEFAULT_MAP
    values["settings"] = Settings(**settings_kw)
    measurements_dir = args.measurements_dir or env.get("COMMAP_MEASUREMENTS_DIR")
    if measurements_dir:
        # a directory, or an fsspec URL of the fleet store (kept as text: a Path drops "//")
        is_url = "://" in measurements_dir
        values["measurements_dir"] = measurements_dir if is_url else Path(measurements_dir)
    if args.no_access_log:
        values["access_log"] = False
    elif "COMMAP_ACCESS_LOG" in env:
        values["access_log"] = _truthy(env["COMMAP_ACCESS_LOG"])
    if args.insecure:
        values["insecure"] = True
    elif "COMMAP_INSECURE" in env:
        values["insecure"] = _truthy(env["COMMAP_INSECURE"])
    if args.no_reflection:
        values["reflection"] = False
    elif "COMMAP_REFLECTION" in env:
        values["reflection"] = _truthy(env["COMMAP_REFLECTION"])
    paths = {
        name: Path(raw)
        for flag, name in _PATHS.items()
        if (raw := getattr(args, flag.replace("-", "_")) or env.get(_env_name(flag)))
    }
    tokens_file = paths.pop("tokens_file", None)
    values.update(paths)
    values["auth_clients"] = _auth_clients(tokens_file, env.get("COMMAP_TOKENS", ""))
    return ServerConfig(**values)


def _truthy(text: str) -> bool:
    return text.strip().lower() not in ("0", "false", "no", "off")


def _auth_clients(tokens_file: Path | None, env_tokens: str) -> tuple[AuthClient, ...]:
    clients = parse_token_entries(env_tokens, "COMMAP_TOKENS")
    if tokens_file is not None:
        clients += read_token_file(tokens_file)
    return clients


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
