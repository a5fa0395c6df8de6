"""The one place that maps commap's error tree to gRPC status codes, plus the access log.

:class:`ErrorMappingInterceptor` wraps every handler of ``commap.v1.CommapService``:

=============================================  =====================================
exception                                      status
=============================================  =====================================
:class:`~commap.errors.InvalidInputError`      INVALID_ARGUMENT (field in the message
                                               and in trailing metadata ``commap-field``)
:class:`~commap.errors.MapNotFoundError`       NOT_FOUND
:class:`~commap.errors.NoFeasiblePlanError`    FAILED_PRECONDITION (constraint named)
:class:`~commap.errors.SolverTimeoutError`,    DEADLINE_EXCEEDED
``TimeoutError``
:class:`~server.pool.ServerOverloadedError`    RESOURCE_EXHAUSTED
anything else                                  INTERNAL, with an incident id only (the
                                               traceback goes to the server log)
=============================================  =====================================

Every call is logged once (method, peer, status, latency) at INFO on ``server.access``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from commap.errors import (
    CommapError,
    InvalidInputError,
    MapNotFoundError,
    NoFeasiblePlanError,
    SolverTimeoutError,
)
from server.pool import ServerOverloadedError

__all__ = ["FIELD_METADATA_KEY", "ErrorMappingInterceptor", "status_for"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("server.access")

SERVICE_PREFIX = "/commap.v1.CommapService/"
FIELD_METADATA_KEY = "commap-field"


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """Status code, client-facing message and trailing metadata for an exception.

    Examples
    --------
    >>> status_for(InvalidInputError("must be finite", field="origin.latitude_deg"))[:2]
    (<StatusCode.INVALID_ARGUMENT: (3, 'invalid argument')>, 'origin.latitude_deg: must be finite')
    >>> status_for(KeyError("secret"))[0]
    <StatusCode.INTERNAL: (13, 'internal')>
    """
    if isinstance(exc, InvalidInputError):
        message = str(exc)
        if exc.field and not message.startswith(exc.field):
            message = f"{exc.field}: {message}"
        metadata = ((FIELD_METADATA_KEY, exc.field),) if exc.field else ()
        return grpc.StatusCode.INVALID_ARGUMENT, message, metadata
    if isinstance(exc, MapNotFoundError):
        return grpc.StatusCode.NOT_FOUND, str(exc), ()
    if isinstance(exc, NoFeasiblePlanError):
        message = str(exc)
        if exc.constraint and exc.constraint not in message:
            message = f"{message} (constraint {exc.constraint})"
        return grpc.StatusCode.FAILED_PRECONDITION, message, ()
    if isinstance(exc, SolverTimeoutError | TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(exc) or "deadline exceeded", ()
    if isinstance(exc, ServerOverloadedError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), ()
    incident = uuid.uuid4().hex[:12]
    kind = "library error" if isinstance(exc, CommapError) else "internal error"
    return (
        grpc.StatusCode.INTERNAL,
        f"{kind}, incident {incident}",
        (("commap-incident", incident),),
    )


class _CallLog:
    """Latency and final status of one call, logged once."""

    def __init__(self, method: str, context: aio.ServicerContext[Any, Any], enabled: bool) -> None:
        self.method = method.removeprefix(SERVICE_PREFIX)
        self.context = context
        self.enabled = enabled
        self.start = time.perf_counter()
        self.code = grpc.StatusCode.OK
        self.messages_out = 0

    def finish(self) -> None:
        if not self.enabled:
            return
        latency_ms = (time.perf_counter() - self.start) * 1000.0
        access_log.info(
            "%s peer=%s status=%s latency_ms=%.1f messages_out=%d",
            self.method,
            self.context.peer(),
            self.code.name,
            latency_ms,
            self.messages_out,
        )


async def _fail(call: _CallLog, exc: BaseException) -> None:
    """Log ``exc`` and abort the call with its mapped status (raises)."""
    code, message, metadata = status_for(exc)
    call.code = code
    if code is grpc.StatusCode.INTERNAL:
        log.error("%s failed (%s)", call.method, message, exc_info=exc)
    else:
        log.info("%s: %s %s", call.method, code.name, message)
    await call.context.abort(code, message, metadata)


def _cancelled_code(context: aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


class ErrorMappingInterceptor(aio.ServerInterceptor):
    """Map exceptions of commap handlers to status codes and log every call.

    Parameters
    ----------
    access_log_enabled : write the per-call access log line.
    """

    def __init__(self, *, access_log_enabled: bool = True) -> None:
        self._access = access_log_enabled

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Wrap the handler of a commap method (others, e.g. health, pass through)."""
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(SERVICE_PREFIX):
            return handler
        return self._wrap(handler, method)

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        enabled = self._access
        common = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary, method, enabled), **common
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _unary(handler.stream_unary, method, enabled), **common
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream, method, enabled), **common
            )
        return grpc.stream_stream_rpc_method_handler(
            _streaming(handler.stream_stream, method, enabled), **common
        )


def _unary(
    behaviour: Any,  # the servicer's coroutine function (request or request iterator, context)
    method: str,
    enabled: bool,
) -> Callable[[Any, aio.ServicerContext[Any, Any]], Awaitable[Any]]:
    async def handle(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        call = _CallLog(method, context, enabled)
        try:
            response = await behaviour(request, context)
            call.messages_out = 1
            return response
        except aio.AbortError:
            call.code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except asyncio.CancelledError:
            call.code = _cancelled_code(context)
            raise
        except Exception as exc:
            await _fail(call, exc)
        finally:
            call.finish()

    return handle


def _streaming(
    behaviour: Any,  # the servicer's async generator function (request or iterator, context)
    method: str,
    enabled: bool,
) -> Callable[[Any, aio.ServicerContext[Any, Any]], AsyncIterator[Any]]:
    async def handle(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        call = _CallLog(method, context, enabled)
        try:
            async for response in behaviour(request, context):
                call.messages_out += 1
                yield response
        except aio.AbortError:
            call.code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except (asyncio.CancelledError, GeneratorExit):
            call.code = _cancelled_code(context)
            raise
        except Exception as exc:
            await _fail(call, exc)
        finally:
            call.finish()

    return handle
