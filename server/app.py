"""The commap gRPC server on ``grpc.aio``: assembly, start-up, readiness and graceful shutdown.

Start-up: bind (port 0 picks a free port; TLS or mutual TLS when configured, then there is no
plaintext port), start with health NOT_SERVING, load the maps in a thread while the upload
process starts (:mod:`server.processes`), start the live viewer if asked, then report SERVING.
SIGHUP reloads every map (:meth:`CommapServer.reload`: atomic, a map that fails its checks
keeps its previous version). Shutdown (SIGTERM/SIGINT or
:meth:`CommapServer.stop`): health NOT_SERVING at once, Drive streams told to reconnect
elsewhere, calls in flight given ``shutdown_grace_s`` to finish, then the server stops.

Access control: with bearer tokens configured (:mod:`server.auth`) every call but health needs
a token; reflection can be switched off (``--no-reflection``). Health always answers without
a token, so probes work; it reveals only SERVING / NOT_SERVING. Without tokens the server listens
on loopback unless ``--insecure`` says otherwise, and ``ReloadMaps`` answers loopback callers
only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from commap.errors import InvalidInputError
from commap.plan import kernels
from commap.v1 import commap_service_pb2 as pb
from commap.v1 import commap_service_pb2_grpc as pb_grpc
from server.auth import AuthInterceptor
from server.config import ServerConfig, is_loopback
from server.interceptors import ErrorMappingInterceptor
from server.live import LiveView
from server.maps import MapStore, ReloadResult, freeze_long_lived_objects
from server.pool import SolvePool
from server.servicer import CommapServicer

__all__ = ["SERVICE_NAME", "CommapServer", "serve"]

log = logging.getLogger(__name__)

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["CommapService"].full_name
# health reports for the whole server ("") and for the commap service
_HEALTH_SERVICES = ("", SERVICE_NAME)


class CommapServer:
    """One gRPC server serving the configured maps.

    Parameters
    ----------
    config : validated server configuration.

    Examples
    --------
    >>> import asyncio
    >>> async def main() -> int:
    ...     server = CommapServer(ServerConfig(port=0))
    ...     port = await server.start(load_maps=False)
    ...     await server.stop(grace_s=0)
    ...     return port
    >>> asyncio.run(main()) > 0
    True
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.maps = MapStore(config)
        self.pool = SolvePool(
            config.solve_workers,
            config.solve_queue,
            per_client=config.max_solves_per_client,
            max_work_s=config.max_work_s,
        )
        self.health = HealthServicer()
        self.servicer = CommapServicer(config, self.maps, self.pool)
        self.port = 0
        self.live: LiveView | None = None
        self._server: aio.Server | None = None
        self._stopped = asyncio.Event()

    def _interceptors(self) -> list[aio.ServerInterceptor]:
        # error mapping first (outermost): calls the auth check rejects are access-logged too
        interceptors: list[aio.ServerInterceptor] = [
            ErrorMappingInterceptor(access_log_enabled=self.config.access_log)
        ]
        policy = self.config.auth
        if policy is not None:
            interceptors.append(AuthInterceptor(policy))
            log.info(
                "bearer-token authentication on: clients %s",
                ", ".join(c.name for c in policy.clients),
            )
        return interceptors

    def _build(self) -> aio.Server:
        server = aio.server(
            interceptors=self._interceptors(),
            options=[
                ("grpc.max_receive_message_length", self.config.max_receive_message_bytes),
                ("grpc.max_send_message_length", self.config.max_send_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
            # bounds the RPCs the transport hands over at once (streams count while open)
            maximum_concurrent_rpcs=self.config.max_drive_streams + 4 * (self.pool.capacity + 16),
        )
        pb_grpc.add_CommapServiceServicer_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if self.config.reflection:
            reflection.enable_server_reflection(
                (
                    SERVICE_NAME,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ),
                server,
            )
        return server

    def _listen(self, server: aio.Server) -> int:
        """Add the one listening port: TLS when configured, plaintext otherwise."""
        if not self.config.tls:
            if self.config.auth is not None and not is_loopback(self.config.host):
                log.warning("bearer tokens over plaintext on %s: configure TLS", self.config.host)
            return server.add_insecure_port(self.config.address)
        credentials = server_credentials(self.config)
        mode = "mutual TLS" if self.config.tls_client_ca is not None else "TLS"
        port = server.add_secure_port(self.config.address, credentials)
        log.info("%s on %s", mode, self.config.address)
        return port

    async def _set_health(self, status: int) -> None:
        for service in _HEALTH_SERVICES:
            await self.health.set(service, status)

    async def start(self, *, load_maps: bool = True) -> int:
        """Bind, start serving (NOT_SERVING until the maps are loaded) and load the maps.

        Returns
        -------
        int
            The bound port (the chosen one when the configuration says 0).

        Raises
        ------
        MapNotFoundError, InvalidInputError
            A configured map cannot be loaded (the server is stopped again).
        RuntimeError
            The address cannot be bound.
        """
        self._server = self._build()
        try:
            self.port = self._listen(self._server)
        except RuntimeError as exc:
            raise RuntimeError(f"cannot listen on {self.config.address}: {exc}") from None
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.start()
        log.info(
            "listening on %s:%d (health NOT_SERVING until maps are loaded)",
            self.config.host,
            self.port,
        )
        if load_maps:
            self.servicer.uploads.start()  # spawning takes a second: not at the first upload
            try:
                await asyncio.to_thread(self.maps.load_all)
                # the planner's compiled DP and the map's compiled sampling passes: loaded
                # now, not by the first request (a fresh install compiles them once)
                warm_s = await asyncio.to_thread(kernels.warm_up)
                log.info("compiled kernels loaded in %.2f s", warm_s)
                await self.servicer.uploads.ready()
                if self.config.viewer_port is not None:
                    await asyncio.to_thread(self._start_viewer, self.config.viewer_port)
            except BaseException:
                await self.stop(grace_s=0)
                raise
            await asyncio.to_thread(freeze_long_lived_objects)
            await self._set_health(health_pb2.HealthCheckResponse.SERVING)
            log.info(
                "SERVING maps %s on %s:%d", ", ".join(self.maps.names), self.config.host, self.port
            )
        return self.port

    def _start_viewer(self, port: int) -> None:
        """Serve the live viewer of the default map (blocking: call in a thread)."""
        served = self.maps.get("")
        self.live = LiveView.start(served.current, port=port)
        self.servicer.live = self.live
        log.info("live viewer of map %s at %s", self.live.map_name, self.live.url)

    @property
    def viewer_url(self) -> str:
        """The live viewer's address ('' without a viewer)."""
        return self.live.url if self.live is not None else ""

    async def reload(self) -> list[ReloadResult]:
        """Reload every served map from disk (SIGHUP); rejected maps keep their version."""
        return await self.servicer.reload()

    async def stop(self, *, grace_s: float | None = None) -> None:
        """Graceful shutdown: NOT_SERVING, drain streams, stop (idempotent)."""
        if self._server is None or self._stopped.is_set():
            return
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        log.info("shutting down: health NOT_SERVING, draining for up to %.1f s", grace)
        await self.health.enter_graceful_shutdown()
        self.servicer.draining = True
        await self._server.stop(grace)
        self.pool.shutdown()
        self.servicer.shutdown()
        self.maps.close()
        if self.live is not None:
            await asyncio.to_thread(self.live.stop)
        self._stopped.set()
        log.info("stopped")

    async def wait_closed(self) -> None:
        """Wait until :meth:`stop` has finished."""
        await self._stopped.wait()


async def serve(
    config: ServerConfig,
    *,
    on_ready: Callable[[int], None] | None = None,
    on_started: Callable[[CommapServer], None] | None = None,
) -> None:
    """Run a server until SIGTERM or SIGINT, then shut it down gracefully; SIGHUP reloads maps.

    Parameters
    ----------
    config : server configuration.
    on_ready : called with the bound port once the maps are loaded.
    on_started : called with the server once the maps are loaded (before ``on_ready``).
    """
    server = CommapServer(config)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    reloads: set[asyncio.Task[list[ReloadResult]]] = set()

    def reload_requested() -> None:
        log.info("SIGHUP: reloading maps")
        task = loop.create_task(server.reload())
        reloads.add(task)  # keep a reference until it is done
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_requested)
    port = await server.start()
    if on_started is not None:
        on_started(server)
    if on_ready is not None:
        on_ready(port)
    await stop_requested.wait()
    log.info("signal received")
    await server.stop()


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials:
    """TLS (or, with a client CA, mutual TLS) credentials from the configured PEM files.

    Raises
    ------
    InvalidInputError
        A file cannot be read or is not PEM, or the key is not the certificate's (the message
        names the files, never their content).
    """
    assert config.tls_cert is not None and config.tls_key is not None
    cert = _pem(config.tls_cert, "tls_cert", b"CERTIFICATE")
    key = _pem(config.tls_key, "tls_key", b"PRIVATE KEY")
    _check_key_pair(config.tls_cert, config.tls_key)
    ca = None
    if config.tls_client_ca is not None:
        ca = _pem(config.tls_client_ca, "tls_client_ca", b"CERTIFICATE")
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


def _pem(path: Path, field: str, kind: bytes) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(
            f"{field}: cannot read {path} ({exc.strerror})", field=field
        ) from None
    if b"-----BEGIN " not in data or kind not in data:
        raise InvalidInputError(
            f"{field}: {path} holds no PEM {kind.decode()}", field=field
        ) from None
    return data


def _check_key_pair(cert: Path, key: Path) -> None:
    """Refuse a private key that is not the certificate's (grpc would say "Failed to bind")."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:  # an encrypted key gets an empty passphrase (grpc cannot read one either)
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        mismatch = "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc)
        problem = (
            f"{key} is not the private key of the certificate in {cert}"
            if mismatch
            else f"{key} is no unencrypted private key for the certificate in {cert} ({exc})"
        )
        raise InvalidInputError(f"tls_key: {problem}", field="tls_key") from None


def channel_ready_hint(host: str, port: int, *, tls: bool = False, pid: int | None = None) -> str:
    """How to query a running server (printed by ``python -m server``).

    ``pid`` is the server's process id for the reload hint (default this process).

    Examples
    --------
    >>> print(channel_ready_hint("127.0.0.1", 50051, pid=4242).splitlines()[4])
      reload:  kill -HUP 4242, or grpcurl -plaintext 127.0.0.1:50051 commap.v1.CommapService/ReloadMaps
    """
    target = f"{host}:{port}"
    pid = os.getpid() if pid is None else pid
    if tls:
        return (
            f"commap gRPC server ready on {target} (TLS)\n"
            f"  health:  grpcurl -cacert CA.pem {target} grpc.health.v1.Health/Check\n"
            f"  maps:    grpcurl -cacert CA.pem -H 'authorization: Bearer TOKEN' {target} "
            "commap.v1.CommapService/ListMaps\n"
            f"  reload:  kill -HUP {pid}"
        )
    return (
        f"commap gRPC server ready on {target}\n"
        f"  health:  grpcurl -plaintext {target} grpc.health.v1.Health/Check\n"
        f"  maps:    grpcurl -plaintext {target} commap.v1.CommapService/ListMaps\n"
        f"  plan:    commap plan --server {target} --from 42.5063,1.5218 --to 42.5430,1.7330\n"
        f"  reload:  kill -HUP {pid}, or grpcurl -plaintext {target} "
        "commap.v1.CommapService/ReloadMaps\n"
        f"  Node:    node clients/node/rig.mjs --target {target}"
    )


_ = grpc  # grpc is imported for its side effect of initialising the core before aio
