"""``commap.v1.CommapService``: a thin adapter from gRPC to the commap library.

Handlers validate and convert (``server.convert``), run blocking library work in the bounded
solve pool (``server.pool``), and raise library errors; ``server.interceptors`` turns those into
status codes. Nothing here catches an error to pick a status.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pandas as pd
from grpc import aio

from commap.drive_session import DriveOptions, DriveSession, ReplanReason
from commap.errors import InvalidInputError, SolverTimeoutError
from commap.planning import plan_route
from commap.v1 import commap_service_pb2 as pb
from commap.v1 import commap_service_pb2_grpc as pb_grpc
from server import convert
from server.config import ServerConfig
from server.maps import MapStore
from server.pool import ServerOverloadedError, SolvePool

__all__ = ["CommapServicer"]

log = logging.getLogger(__name__)

Context = aio.ServicerContext[Any, Any]

# Share of the remaining call time the solver may use: routing, sampling the map and sending
# the answer need the rest.
_SOLVER_SHARE = 0.5
# Below this much remaining time a plan cannot be made: fail fast instead of starting work.
_MIN_BUDGET_S = 0.05
# Margin kept before the deadline so that the server, not the transport, reports the timeout.
_DEADLINE_MARGIN_S = 0.02

_PLAN_REASON = {
    ReplanReason.INITIAL: pb.PLAN_REASON_INITIAL,
    ReplanReason.OFF_ROUTE: pb.PLAN_REASON_OFF_ROUTE,
    ReplanReason.MEASUREMENT_CONTRADICTION: pb.PLAN_REASON_MEASUREMENT_CONTRADICTION,
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
    config : server configuration (limits, drive options).
    maps : the loaded maps.
    pool : where blocking library calls run.
    """

    def __init__(self, config: ServerConfig, maps: MapStore, pool: SolvePool) -> None:
        self._config = config
        self._maps = maps
        self._pool = pool
        self._drives = 0
        self.draining = False

    # -- maps ----------------------------------------------------------------------------------
    async def ListMaps(self, request: pb.ListMapsRequest, context: Context) -> pb.ListMapsResponse:  # noqa: N802 (gRPC name)
        """The served maps."""
        infos = []
        for name in self._maps.names:
            served = self._maps.get(name)
            infos.append(
                convert.map_info(served.current, measurement_count=served.measurement_count)
            )
        return pb.ListMapsResponse(maps=infos, default_map_name=self._maps.default_name)

    async def GetMap(self, request: pb.GetMapRequest, context: Context) -> pb.GetMapResponse:  # noqa: N802 (gRPC name)
        """One served map."""
        served = self._maps.get(request.map_name)
        return pb.GetMapResponse(
            map=convert.map_info(served.current, measurement_count=served.measurement_count)
        )

    # -- coverage ------------------------------------------------------------------------------
    async def QueryCoverage(  # noqa: N802 (gRPC name)
        self, request: pb.QueryCoverageRequest, context: Context
    ) -> pb.QueryCoverageResponse:
        """Quality of every (requested) network at the given points."""
        cmap = self._maps.get(request.map_name).current
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
            lambda: cmap.quality_at(lon, lat, t_s), timeout_s=timeout_s, what="coverage query"
        )
        return convert.coverage_response(cmap.name, lon, lat, t_s, quality, network_ids)

    # -- planning ------------------------------------------------------------------------------
    async def PlanRoute(  # noqa: N802 (gRPC name)
        self, request: pb.PlanRouteRequest, context: Context
    ) -> pb.PlanRouteResponse:
        """Plan the networks along a route."""
        cmap = self._maps.get(request.map_name).current
        time_limit_s, timeout_s = _budget(
            context, convert.requested_time_limit_s(request, self._config)
        )
        plan_request = convert.plan_request(request, config=self._config, time_limit_s=time_limit_s)
        result = await self._pool.run(
            lambda: plan_route(cmap, plan_request), timeout_s=timeout_s, what="plan"
        )
        return convert.plan_response(
            result,
            map_name=cmap.name,
            time_limit_s=time_limit_s,
            segment_m=cmap.segment_m,
            include_segments=not request.omit_segments,
        )

    # -- measurements --------------------------------------------------------------------------
    async def ReportMeasurements(  # noqa: N802 (gRPC name)
        self, request_iterator: AsyncIterator[pb.ReportMeasurementsRequest], context: Context
    ) -> pb.ReportMeasurementsResponse:
        """Store a stream of measurements as one batch (all or nothing)."""
        frames: list[pd.DataFrame] = []
        map_name: str | None = None
        last_t_s: dict[str, float] = {}
        count = 0
        index = 0
        async for message in request_iterator:
            if map_name is None:
                map_name = message.map_name
            elif message.map_name != map_name:
                raise InvalidInputError(
                    f"map_name: changed within the stream ({map_name!r} -> {message.map_name!r})",
                    field="map_name",
                )
            count += len(message.measurements)
            if count > self._config.max_measurements_per_stream:
                raise InvalidInputError(
                    f"measurements: more than {self._config.max_measurements_per_stream} in one stream",
                    field="measurements",
                )
            frame = convert.measurements_frame(
                message.measurements, vehicle_id=message.vehicle_id, first_index=index
            )
            _check_order(frame, message.vehicle_id, last_t_s, index)
            frames.append(frame)
            index += len(message.measurements)
        if map_name is None or count == 0:
            raise InvalidInputError(
                "measurements: the stream carried no measurements", field="measurements"
            )
        served = self._maps.get(map_name)
        records = pd.concat(frames, ignore_index=True)
        from commap.measurements import validate_records

        records = validate_records(
            records, source="measurements", known_networks=served.base.catalogue.ids
        )
        batch_id, stored = await self._pool.run(
            lambda: self._maps.store_measurements(served.name, records), what="measurement store"
        )
        return pb.ReportMeasurementsResponse(
            accepted_count=len(records), batch_id=batch_id, stored_count=stored
        )

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
        served = self._maps.get(start.plan.map_name)
        cmap = served.current
        asked = convert.requested_time_limit_s(start.plan, self._config)
        time_limit_s, timeout_s = _budget(context, asked)
        plan_request = convert.plan_request(
            start.plan, config=self._config, time_limit_s=time_limit_s
        )
        options = self._drive_options(start)
        session = await self._pool.run(
            lambda: DriveSession.start(cmap, plan_request, options=options),
            timeout_s=timeout_s,
            what="drive plan",
        )
        yield self._plan_message(session, start, time_limit_s)
        async for message in request_iterator:
            if self.draining:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "server shutting down: reconnect")
            if message.WhichOneof("message") != "update":
                raise InvalidInputError("start: only the first message may be start", field="start")
            fix = convert.position_fix(message.update.fix)
            measurements = None
            if len(message.update.measurements):
                measurements = convert.measurements_frame(
                    message.update.measurements,
                    vehicle_id=start.vehicle_id,
                    field="update.measurements",
                )
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
            for instruction in update.instructions:
                yield convert.instruction_response(
                    instruction, update.progress, session.result.plan.departure_s
                )
            if update.replan is not None:
                # re-plans use the map as it is now (fleet measurements stored since the start)
                current = self._maps.get(served.name).current
                await self._pool.run(
                    functools.partial(session.replan, update.replan, cmap=current),
                    timeout_s=self._config.max_solver_time_limit_s * 2,
                    what="re-plan",
                )
                yield self._plan_message(
                    session, start, session.request.time_limit_s, update.progress
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
            )
        )
        if progress is not None:
            response.progress.CopyFrom(convert.progress_message(progress))
        return response


def _check_order(
    frame: pd.DataFrame, vehicle_id: str, last_t_s: dict[str, float], first_index: int
) -> None:
    """Reject measurements that go back in time for one vehicle within a stream."""
    times = frame["timestamp"].to_numpy(dtype="datetime64[ns]").astype("int64") / 1e9
    previous = last_t_s.get(vehicle_id, -math.inf)
    for k, t_s in enumerate(times):
        if t_s < previous:
            field = f"measurements[{first_index + k}].time"
            raise InvalidInputError(
                f"{field}: out of order for vehicle {vehicle_id!r} ({t_s:.3f} s after a record at {previous:.3f} s)",
                field=field,
            )
        previous = float(t_s)
    last_t_s[vehicle_id] = previous
