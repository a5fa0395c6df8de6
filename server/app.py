"""The commap gRPC server on ``grpc.aio``: assembly, start-up, readiness and graceful shutdown.

Start-up: bind (port 0 picks a free port), start with health NOT_SERVING, load the maps in a
thread, then report SERVING. Shutdown (SIGTERM/SIGINT or :meth:`CommapServer.stop`): health
NOT_SERVING at once, Drive streams told to reconnect elsewhere, calls in flight given
``shutdown_grace_s`` to finish, then the server stops.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from commap.v1 import commap_service_pb2 as pb
from commap.v1 import commap_service_pb2_grpc as pb_grpc
from server.config import ServerConfig
from server.interceptors import ErrorMappingInterceptor
from server.maps import MapStore
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
        self.pool = SolvePool(config.solve_workers, config.solve_queue)
        self.health = HealthServicer()
        self.servicer = CommapServicer(config, self.maps, self.pool)
        self.port = 0
        self._server: aio.Server | None = None
        self._stopped = asyncio.Event()

    def _build(self) -> aio.Server:
        server = aio.server(
            interceptors=[ErrorMappingInterceptor(access_log_enabled=self.config.access_log)],
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
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        return server

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
            self.port = self._server.add_insecure_port(self.config.address)
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
            try:
                await asyncio.to_thread(self.maps.load_all)
            except BaseException:
                await self.stop(grace_s=0)
                raise
            await self._set_health(health_pb2.HealthCheckResponse.SERVING)
            log.info(
                "SERVING maps %s on %s:%d", ", ".join(self.maps.names), self.config.host, self.port
            )
        return self.port

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
        self._stopped.set()
        log.info("stopped")

    async def wait_closed(self) -> None:
        """Wait until :meth:`stop` has finished."""
        await self._stopped.wait()


async def serve(config: ServerConfig, *, on_ready: Callable[[int], None] | None = None) -> None:
    """Run a server until SIGTERM or SIGINT, then shut it down gracefully.

    Parameters
    ----------
    config : server configuration.
    on_ready : called with the bound port once the maps are loaded.
    """
    server = CommapServer(config)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    port = await server.start()
    if on_ready is not None:
        on_ready(port)
    await stop_requested.wait()
    log.info("signal received")
    await server.stop()


def channel_ready_hint(host: str, port: int) -> str:
    """How to query a running server (printed by ``python -m server``)."""
    target = f"{host}:{port}"
    return (
        f"commap gRPC server ready on {target}\n"
        f"  health:  grpcurl -plaintext {target} grpc.health.v1.Health/Check\n"
        f"  maps:    grpcurl -plaintext {target} commap.v1.CommapService/ListMaps\n"
        f"  plan:    commap plan --server {target} --from 42.5063,1.5218 --to 42.5430,1.7330\n"
        f"  Node:    node clients/node/rig.mjs --target {target}"
    )


_ = grpc  # grpc is imported for its side effect of initialising the core before aio
