"""``commap.v1.CommapService``: a thin adapter from gRPC to the commap library.

Handlers validate and convert (``server.convert``), run blocking library work in the bounded
solve pool (``server.pool``), and raise library errors; ``server.interceptors`` turns those into
status codes. Nothing here catches an error to pick a status.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import math
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from grpc import aio

from commap.errors import InvalidInputError, SolverTimeoutError
from commap.geo.geodesy import GEOD
from commap.service.drive_session import DriveOptions, DriveSession, Replan, ReplanReason
from commap.service.plan_cache import PlanInputsCache
from commap.service.planning import (
    PlanRequest,
    PlanResult,
    plan_route,
    plan_route_once,
    request_key,
)
from commap.v1 import commap_service_pb2 as pb
from commap.v1 import commap_service_pb2_grpc as pb_grpc
from server import convert
from server.auth import AuthClient, PermissionDeniedError
from server.config import ServerConfig
from server.ingest import check_batch_key, check_plausible, check_stream, store_stream
from server.live import LiveView
from server.maps import MapStore, ReloadOutcome, ReloadResult, ServedMap, freeze_long_lived_objects
from server.pool import ServerOverloadedError, SolvePool, WorkTooLargeError
from server.processes import WorkerProcess

__all__ = ["CommapServicer", "is_local_peer"]

log = logging.getLogger(__name__)

Context = aio.ServicerContext[Any, Any]

# Share of the remaining call time the solver may use: routing, sampling the map and sending
# the answer need the rest.
_SOLVER_SHARE = 0.5
# Below this much remaining time a plan cannot be made: fail fast instead of starting work.
_MIN_BUDGET_S = 0.05
# Margin kept before the deadline so that the server, not the transport, reports the timeout.
_DEADLINE_MARGIN_S = 0.02
# A plan of more segment-networks (about 350 km on a map of 7 networks, a few seconds of work)
# runs on the long-solve threads (server.pool).
_LONG_PLAN_WORK = 50_000
# Road distance over straight-line distance, for estimating a plan between endpoints.
_ROAD_DETOUR = 1.4

_PLAN_REASON = {
    ReplanReason.INITIAL: pb.PLAN_REASON_INITIAL,
    ReplanReason.OFF_ROUTE: pb.PLAN_REASON_OFF_ROUTE,
    ReplanReason.MEASUREMENT_CONTRADICTION: pb.PLAN_REASON_MEASUREMENT_CONTRADICTION,
}
_RELOAD_OUTCOME = {
    ReloadOutcome.RELOADED: pb.RELOAD_OUTCOME_RELOADED,
    ReloadOutcome.UNCHANGED: pb.RELOAD_OUTCOME_UNCHANGED,
    ReloadOutcome.REJECTED: pb.RELOAD_OUTCOME_REJECTED,
}


def _budget(context: Context, asked_s: float) -> tuple[float, float | None]:
    """Solver time limit and overall wait timeout, from the request and the call deadline."""
    remaining = context.time_remaining()
    if remaining is None or not math.isfinite(remaining):
        return asked_s, None
    if remaining < _MIN_BUDGET_S:
        raise SolverTimeoutError(
            f"deadline too short: {remaining * 1000:.0f} ms left, nothing started"
        )
    return min(asked_s, remaining * _SOLVER_SHARE), max(remaining - _DEADLINE_MARGIN_S, 0.0)


class CommapServicer(pb_grpc.CommapServiceServicer):
    """Async implementation of every RPC of ``commap.v1.CommapService``.

    Parameters
    ----------
    config : server configuration (limits, drive options, token policy).
    maps : the loaded maps.
    pool : where blocking library calls run.
    live : the live viewer, if the server runs one (Drive streams on its map show there).
    """

    def __init__(
        self, config: ServerConfig, maps: MapStore, pool: SolvePool, live: LiveView | None = None
    ) -> None:
        self._config = config
        self._maps = maps
        self._pool = pool
        self._auth = config.auth
        self._drives = 0
        # routes, corridors and sampled quality of recent plans, per map version: a fleet plans
        # the same trips again and again
        self.plan_inputs = PlanInputsCache()
        self._reload_lock = asyncio.Lock()
        # checks and stores upload batches, one at a time: never shares the GIL with solves
        self.uploads = WorkerProcess("upload", niceness=5, preload=("server.ingest",))
        self.live = live
        self.draining = False

    def _planner(self, cmap: Any, request: PlanRequest) -> PlanResult:
        """:func:`plan_route` through this server's plan inputs cache (drive sessions' planner)."""
        return plan_route(cmap, request, cache=self.plan_inputs)

    def _start_planner(self, cmap: Any, request: PlanRequest) -> PlanResult:
        """A drive's first plan: a fleet starts the same trips at once, each is solved once."""
        return plan_route_once(cmap, request, cache=self.plan_inputs)

    # -- access ----------------------------------------------------------------------------------
    def _client(self, context: Context) -> AuthClient | None:
        """The calling client (the interceptor has already authenticated it); None: no auth."""
        if self._auth is None:
            return None
        return self._auth.authenticate(context.invocation_metadata())

    def _served(self, name: str, context: Context) -> ServedMap:
        """The served map ``name`` (empty: default), if the caller may use it.

        Permission is checked before existence, so a client learns nothing about maps it may
        not use; the name is only ever a key, never a path.
        """
        key = name or self._maps.default_name
        client = self._client(context)
        if client is not None and not client.may_use_map(key):
            raise PermissionDeniedError(
                f"client {client.name!r} may not use map {convert.shown(key)}"
            )
        return self._maps.get(key)

    def _client_key(self, context: Context) -> str:
        """Who a call counts against for the per-client limits: its token's name, else its host."""
        client = self._client(context)
        if client is not None:
            return f"token:{client.name}"
        peer = context.peer() or ""
        return "peer:" + (peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer)

    def _work_check(self, timeout_s: float | None) -> Callable[[int], None] | None:
        """A plan's admission check: refuse work its estimate says cannot finish in time."""
        cost_us = self._config.plan_cost_us_per_segment_network
        if cost_us <= 0:
            return None
        limit_s = timeout_s if timeout_s is not None else self._config.max_work_s
        limit = "the call's deadline" if timeout_s is not None else "the server's work budget"
        started = time.monotonic()

        def admit(work: int) -> None:
            estimate_s = work * cost_us * 1e-6
            left_s = limit_s - (time.monotonic() - started)
            if estimate_s > left_s:
                raise WorkTooLargeError(
                    f"plan too large for its time: {work} segment-networks need about "
                    f"{estimate_s:.1f} s of work, {max(left_s, 0.0):.1f} s are left of "
                    f"{limit} ({limit_s:.1f} s); shorten the route or allow more time"
                )

        return admit

    # -- maps ----------------------------------------------------------------------------------
    async def ListMaps(self, request: pb.ListMapsRequest, context: Context) -> pb.ListMapsResponse:  # noqa: N802 (gRPC name)
        """The served maps (those the caller may use)."""
        client = self._client(context)
        infos = []
        for name in self._maps.names:
            if client is not None and not client.may_use_map(name):
                continue
            served = self._maps.get(name)
            infos.append(
                convert.map_info(served.current, measurement_count=served.measurement_count)
            )
        return pb.ListMapsResponse(maps=infos, default_map_name=self._maps.default_name)

    async def GetMap(self, request: pb.GetMapRequest, context: Context) -> pb.GetMapResponse:  # noqa: N802 (gRPC name)
        """One served map."""
        served = self._served(request.map_name, context)
        return pb.GetMapResponse(
            map=convert.map_info(served.current, measurement_count=served.measurement_count)
        )

    async def ReloadMaps(  # noqa: N802 (gRPC name)
        self, request: pb.ReloadMapsRequest, context: Context
    ) -> pb.ReloadMapsResponse:
        """Load maps again from disk; each is swapped in only if it passes its checks.

        No names: every served map the caller may use. Every name is checked (permission,
        then existence) before any map is loaded. Without tokens only a caller on the server's
        own host (loopback) may reload: anyone else could make the server load maps at will.
        """
        client = self._client(context)
        if client is None and not is_local_peer(context.peer()):
            raise PermissionDeniedError(
                "ReloadMaps: the server has no tokens, so maps are reloaded from its own host "
                "only (loopback, or SIGHUP); configure a token allowed ReloadMaps to reload "
                "from elsewhere"
            )
        names = list(dict.fromkeys(request.map_names)) or [
            n for n in self._maps.names if client is None or client.may_use_map(n)
        ]
        keys = [self._served(name, context).name for name in names]
        results = await self.reload(keys)
        return pb.ReloadMapsResponse(
            maps=[
                pb.MapReload(
                    map_name=r.map_name,
                    outcome=_RELOAD_OUTCOME[r.outcome],
                    error=r.error,
                    manifest_sha256=r.manifest_sha256,
                    generation=r.generation,
                )
                for r in results
            ]
        )

    async def reload(self, names: Sequence[str] = ()) -> list[ReloadResult]:
        """Reload served maps (all when ``names`` is empty), one reload at a time.

        Used by ``ReloadMaps`` and by SIGHUP. Loading runs in a thread, not in the solve pool:
        an overloaded server can still take a new map.
        """
        async with self._reload_lock:
            results = []
            for name in dict.fromkeys(names or self._maps.names):
                results.append(await asyncio.to_thread(self._maps.reload, name))
            # a replaced map's objects in reference cycles were frozen with it: freed here
            await asyncio.to_thread(freeze_long_lived_objects)
            return results

    # -- coverage ------------------------------------------------------------------------------
    async def QueryCoverage(  # noqa: N802 (gRPC name)
        self, request: pb.QueryCoverageRequest, context: Context
    ) -> pb.QueryCoverageResponse:
        """Quality of every (requested) network at the given points."""
        cmap = self._served(request.map_name, context).current
        lon, lat, t_s = convert.coverage_points(
            request,
            default_time_s=cmap.default_departure_s,
            max_points=self._config.max_coverage_points,
        )
        network_ids = convert.network_selection(list(request.network_ids), cmap.catalogue.ids)
        for i in range(len(lon)):
            cmap.check_inside([lon[i]], [lat[i]], field=f"points[{i}].position")
        _, timeout_s = _budget(context, self._config.max_solver_time_limit_s)
        quality = await self._pool.run(
            lambda: cmap.quality_at(lon, lat, t_s),
            timeout_s=timeout_s,
            what="coverage query",
            client=self._client_key(context),
        )
        return convert.coverage_response(cmap.name, lon, lat, t_s, quality, network_ids)

    # -- planning ------------------------------------------------------------------------------
    async def PlanRoute(  # noqa: N802 (gRPC name)
        self, request: pb.PlanRouteRequest, context: Context
    ) -> pb.PlanRouteResponse:
        """Plan the networks along a route."""
        cmap = self._served(request.map_name, context).current
        time_limit_s, timeout_s = _budget(
            context, convert.requested_time_limit_s(request, self._config)
        )
        plan_request = convert.plan_request(request, config=self._config, time_limit_s=time_limit_s)
        admit = self._work_check(timeout_s)
        work = _expected_work(plan_request, cmap.segment_m, len(cmap.catalogue))
        if admit is not None and plan_request.route is not None:
            admit(work)  # the route is known: refuse before taking a worker
        long = work > _LONG_PLAN_WORK

        def plan_and_answer() -> pb.PlanRouteResponse:
            # the answer is built in the worker too: thousands of messages, not on the event loop
            result = plan_route(cmap, plan_request, admit=admit, cache=self.plan_inputs)
            return convert.plan_response(
                result,
                map_name=cmap.name,
                time_limit_s=time_limit_s,
                segment_m=cmap.segment_m,
                include_segments=not request.omit_segments,
            )

        return await self._pool.run(
            plan_and_answer,
            timeout_s=timeout_s,
            what="plan",
            client=self._client_key(context),
            long=long,
        )

    # -- measurements --------------------------------------------------------------------------
    async def ReportMeasurements(  # noqa: N802 (gRPC name)
        self, request_iterator: AsyncIterator[pb.ReportMeasurementsRequest], context: Context
    ) -> pb.ReportMeasurementsResponse:
        """Store a stream of measurements as one batch (all or nothing).

        Here, on the event loop, only each message's header (map, vehicle, batch key, the
        stream's size) is checked and its bytes kept; the upload process decodes, checks and
        stores the records (:func:`server.ingest.store_stream`).
        """
        messages: list[bytes] = []
        map_name: str | None = None
        batch_key = ""
        count = 0
        try:
            async for message in request_iterator:
                if map_name is None:
                    map_name = message.map_name
                    self._served(map_name, context)  # may the caller use it? before reading on
                elif message.map_name != map_name:
                    raise InvalidInputError(
                        f"map_name: changed within the stream ({map_name!r} -> {message.map_name!r})",
                        field="map_name",
                    )
                convert.vehicle_id(message.vehicle_id, field="vehicle_id")
                if message.client_batch_id:
                    if batch_key and message.client_batch_id != batch_key:
                        raise InvalidInputError(
                            "client_batch_id: changed within the stream", field="client_batch_id"
                        )
                    batch_key = check_batch_key(message.client_batch_id)
                count += len(message.measurements)
                if count > self._config.max_measurements_per_stream:
                    raise InvalidInputError(
                        f"measurements: more than {self._config.max_measurements_per_stream} in one stream",
                        field="measurements",
                    )
                messages.append(message.SerializeToString())
        except (InvalidInputError, DecodeError):
            if count and messages:  # a bad record earlier in the stream is the first error
                await self.uploads.run(check_stream, messages)
            raise
        if map_name is None or count == 0:
            raise InvalidInputError(
                "measurements: the stream carried no measurements", field="measurements"
            )
        served = self._served(map_name, context)
        stored = await self.uploads.run(
            store_stream, self._maps.upload_target(served), messages, batch_key
        )
        outcome = self._maps.record_stored(served, stored)
        return pb.ReportMeasurementsResponse(
            accepted_count=stored.record_count,
            batch_id=outcome.batch_id,
            stored_count=outcome.stored_count,
            already_stored=outcome.already_stored,
        )

    def shutdown(self) -> None:
        """Stop taking uploads; the one running finishes on its own."""
        self.uploads.shutdown()

    # -- live drive ----------------------------------------------------------------------------
    async def Drive(  # noqa: N802 (gRPC name)
        self, request_iterator: AsyncIterator[pb.DriveRequest], context: Context
    ) -> AsyncIterator[pb.DriveResponse]:
        """Follow a vehicle along its plan: instructions ahead of handovers, re-plans with reasons."""
        if self._drives >= self._config.max_drive_streams:
            raise ServerOverloadedError(
                f"server busy: {self._drives} drive streams open (limit {self._config.max_drive_streams})"
            )
        self._drives += 1
        try:
            async for response in self._drive(request_iterator, context):
                yield response
        finally:
            self._drives -= 1

    async def _drive(
        self, request_iterator: AsyncIterator[pb.DriveRequest], context: Context
    ) -> AsyncIterator[pb.DriveResponse]:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            raise InvalidInputError(
                "start: the stream ended before its start message", field="start"
            )
        if first.WhichOneof("message") != "start":
            raise InvalidInputError(
                "start: the first message of a drive must be start", field="start"
            )
        start = first.start
        convert.vehicle_id(start.vehicle_id, field="start.vehicle_id")
        served = self._served(start.plan.map_name, context)
        cmap = served.current
        asked = convert.requested_time_limit_s(start.plan, self._config)
        time_limit_s, timeout_s = _budget(context, asked)
        plan_request = convert.plan_request(
            start.plan, config=self._config, time_limit_s=time_limit_s
        )
        options = self._drive_options(start)
        live = self.live if self.live is not None and self.live.map_name == served.name else None
        key = live.acquire(start.vehicle_id) if live is not None else ""
        try:

            def open_session() -> tuple[DriveSession, pb.DriveResponse]:
                # the plan message is built in the worker too, not on the event loop
                session = _open_session(
                    cmap, plan_request, options, live, self._planner, self._start_planner
                )
                return session, self._start_message(session, start, time_limit_s)

            session, plan_message = await self._pool.run(
                open_session,
                timeout_s=timeout_s,
                what="drive plan",
                client=self._client_key(context),
            )
            yield plan_message
            async for response in self._follow(
                session, request_iterator, context, start, served, live, key
            ):
                yield response
        finally:
            if live is not None:
                live.release(key)

    async def _follow(
        self,
        session: DriveSession,
        request_iterator: AsyncIterator[pb.DriveRequest],
        context: Context,
        start: pb.DriveStart,
        served: ServedMap,
        live: LiveView | None,
        key: str,
    ) -> AsyncIterator[pb.DriveResponse]:
        """The position updates of a drive: instructions, and plans after re-plans."""
        async for message in request_iterator:
            if self.draining:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "server shutting down: reconnect")
            if message.WhichOneof("message") != "update":
                raise InvalidInputError("start: only the first message may be start", field="start")
            fix = convert.position_fix(message.update.fix)
            measurements = None
            if len(message.update.measurements):
                measurements = convert.checked_measurements(
                    convert.measurements_frame(
                        message.update.measurements,
                        vehicle_id=start.vehicle_id,
                        field="update.measurements",
                    ),
                    known_networks=session.cmap.catalogue.ids,
                    field="update.measurements",
                )
                # the same plausibility rule as uploads: not from the future, nor far off the map
                check_plausible(measurements, bbox=session.cmap.bbox, field="update.measurements")
            try:
                if measurements is None:
                    update = session.observe(fix)  # cheap: stays on the event loop
                else:
                    # checking measurements samples the map's layers: off the loop
                    update = await self._pool.run(
                        functools.partial(session.observe, fix, measurements),
                        what="measurement check",
                    )
            except InvalidInputError as exc:  # name the field as it is in the stream message
                raise convert.prefixed(exc, "update") from None
            if live is not None:
                live.vehicle(
                    key,
                    lon=fix.lon,
                    lat=fix.lat,
                    t_s=fix.t_s,
                    network_id=update.progress.network_id,
                )
            for instruction in update.instructions:
                yield convert.instruction_response(
                    instruction, update.progress, session.result.plan.departure_s
                )
            if update.replan is not None:
                # re-plans use the map as it is now (fleet measurements, reloads since the start)
                current = self._maps.get(served.name).current

                def replan(
                    replan: Replan = update.replan,
                    progress: Any = update.progress,
                    cmap: Any = current,
                ) -> pb.DriveResponse:
                    # the new plan's message is built in the worker too, not on the event loop
                    _replan(session, replan, cmap, live)
                    return self._plan_message(
                        session, start, session.request.time_limit_s, progress
                    )

                yield await self._pool.run(
                    replan,
                    timeout_s=self._config.max_solver_time_limit_s * 2,
                    what="re-plan",
                )

    def _drive_options(self, start: pb.DriveStart) -> DriveOptions:
        lead = convert.positive_or_default(
            start.lead_time_s, self._config.lead_time_s, "lead_time_s"
        )
        off = convert.positive_or_default(
            start.off_route_distance_m, self._config.off_route_distance_m, "off_route_distance_m"
        )
        return DriveOptions(
            lead_time_s=lead,
            off_route_distance_m=off,
            min_replan_interval_s=self._config.min_replan_interval_s,
        )

    def _start_message(
        self, session: DriveSession, start: pb.DriveStart, time_limit_s: float
    ) -> pb.DriveResponse:
        """A drive's first plan message: equal starts share their plan, and its message too.

        Tens of kilobytes built in milliseconds under the GIL: a fleet connecting at once
        would build the same one hundreds of times while its streams wait.
        """
        key = ("drive start", request_key(session.request), start.plan.omit_segments)
        result, message = self.plan_inputs.get(
            session.cmap,
            key,
            lambda: (session.result, self._plan_message(session, start, time_limit_s)),
        )
        if result is not session.result:  # the plan was solved again since: its own message
            return self._plan_message(session, start, time_limit_s)
        return message

    def _plan_message(
        self,
        session: DriveSession,
        start: pb.DriveStart,
        time_limit_s: float,
        progress: Any = None,
    ) -> pb.DriveResponse:
        plan = convert.plan_response(
            session.result,
            map_name=session.cmap.name,
            time_limit_s=time_limit_s,
            segment_m=session.cmap.segment_m,
            include_segments=not start.plan.omit_segments,
        ).plan
        response = pb.DriveResponse(
            plan=pb.DrivePlan(
                plan_version=session.plan_version,
                reason=_PLAN_REASON[session.reason],
                explanation=session.explanation,
                plan=plan,
                execution_rules=convert.execution_rules_message(),
            )
        )
        if progress is not None:
            response.progress.CopyFrom(convert.progress_message(progress))
        return response


def is_local_peer(peer: str) -> bool:
    """True for a gRPC peer on this host (``ipv4:127.0.0.1:port``, ``ipv6:[::1]:port``, unix).

    Examples
    --------
    >>> is_local_peer("ipv4:127.0.0.1:50000"), is_local_peer("ipv6:[::1]:50000")
    (True, True)
    >>> is_local_peer("unix:/run/commap.sock"), is_local_peer("ipv4:192.0.2.7:50000")
    (True, False)
    >>> is_local_peer("ipv6:%5B::1%5D:50000"), is_local_peer("ipv6:[::ffff:127.0.0.1]:1")
    (True, True)
    >>> is_local_peer(""), is_local_peer("ipv6:%5B2001:db8::1%5D:50000")
    (False, False)
    """
    kind, _, address = peer.partition(":")
    address = urllib.parse.unquote(address)  # grpc escapes the brackets of IPv6 peers
    if kind in ("unix", "unix-abstract"):
        return True
    if kind not in ("ipv4", "ipv6"):
        return False
    host = address.rpartition(":")[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _expected_work(request: PlanRequest, segment_m: float, networks: int) -> int:
    """Segment-networks a plan will sample and solve, from its route (or its endpoints)."""
    if request.route is not None:  # its legs are measured once, for every use
        return int(float(np.sum(request.route.geodesic_legs[0])) / segment_m) * networks
    assert request.origin is not None and request.destination is not None
    stops = [request.origin, *request.waypoints, request.destination]
    lon = np.array([p[0] for p in stops])
    lat = np.array([p[1] for p in stops])
    detour = _ROAD_DETOUR * request.alternatives
    _, _, legs_m = GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
    return int(float(np.sum(legs_m)) * detour / segment_m) * networks


def _open_session(
    cmap: Any,
    request: PlanRequest,
    options: DriveOptions,
    live: LiveView | None,
    planner: Callable[[Any, PlanRequest], PlanResult],
    start_planner: Callable[[Any, PlanRequest], PlanResult],
) -> DriveSession:
    """Plan the trip and open its session; show the plan live (blocking: a pool job)."""
    session = DriveSession(
        cmap, request, start_planner(cmap, request), options=options, planner=planner
    )
    if live is not None:
        live.plan(session.result)
    return session


def _replan(session: DriveSession, replan: Replan, cmap: Any, live: LiveView | None) -> None:
    """Re-plan a drive on ``cmap`` and show the new plan live (blocking: a pool job)."""
    session.replan(replan, cmap=cmap)
    if live is not None:
        live.plan(session.result)
