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
storage that cannot take writes                UNAVAILABLE (retryable: the call had no
(:func:`~commap.errors.is_storage_fault`:       effect; the path goes to the server log
read-only, full, failing)                      only)
:class:`~server.processes.WorkerLostError`     UNAVAILABLE (retryable: the upload process
                                               died; a retry with the same batch key is
                                               stored once)
:class:`~server.auth.UnauthenticatedError`     UNAUTHENTICATED
:class:`~server.auth.PermissionDeniedError`    PERMISSION_DENIED
a request that is not a valid message          INVALID_ARGUMENT (field ``request``)
(``DecodeError``)
anything else                                  INTERNAL, with an incident id only (the
                                               traceback goes to the server log)
=============================================  =====================================

Requests that do not parse as their message type reach the handler as a marker, not as a
transport error, so that they too get INVALID_ARGUMENT (grpc itself would answer UNKNOWN
and name the exception class).

Every call is logged once (method, peer, status, latency) at INFO on ``server.access``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from commap.errors import (
    CommapError,
    InvalidInputError,
    MapNotFoundError,
    NoFeasiblePlanError,
    SolverTimeoutError,
    is_storage_fault,
)
from server.auth import PermissionDeniedError, UnauthenticatedError
from server.pool import ServerOverloadedError
from server.processes import WorkerLostError

__all__ = ["FIELD_METADATA_KEY", "ErrorMappingInterceptor", "MalformedRequest", "status_for"]

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
    >>> import errno
    >>> status_for(OSError(errno.EROFS, "Read-only file system", "/srv/fleet/map=a"))[:2]
    (<StatusCode.UNAVAILABLE: (14, 'unavailable')>, 'server storage unavailable (Read-only file system): nothing was stored; retry later')
    """
    code, message, metadata = _status_for(exc)
    return code, _bounded(message, MAX_DETAILS_CHARS), metadata


# Status details and metadata echo client input (names, ids): bounded, so that a huge or
# binary field cannot make the answer itself fail (header size limits, ASCII-only metadata).
MAX_DETAILS_CHARS = 1000
_MAX_FIELD_CHARS = 200


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _metadata_value(text: str) -> str:
    """Printable ASCII (non-ASCII and control characters escaped), bounded."""
    escaped = text.encode("ascii", "backslashreplace").decode("ascii")
    escaped = "".join(c if 32 <= ord(c) < 127 else f"\\x{ord(c):02x}" for c in escaped)
    return _bounded(escaped, _MAX_FIELD_CHARS)


def _status_for(
    exc: BaseException,
) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    if isinstance(exc, InvalidInputError):
        message = str(exc)
        if exc.field and not message.startswith(exc.field):
            message = f"{exc.field}: {message}"
        metadata = ((FIELD_METADATA_KEY, _metadata_value(exc.field)),) if exc.field else ()
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
    if is_storage_fault(exc):
        reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
        return (
            grpc.StatusCode.UNAVAILABLE,
            f"server storage unavailable ({reason}): nothing was stored; retry later",
            (),
        )
    if isinstance(exc, WorkerLostError):
        return grpc.StatusCode.UNAVAILABLE, str(exc), ()
    if isinstance(exc, UnauthenticatedError):
        return grpc.StatusCode.UNAUTHENTICATED, str(exc), ()
    if isinstance(exc, PermissionDeniedError):
        return grpc.StatusCode.PERMISSION_DENIED, str(exc), ()
    if isinstance(exc, DecodeError):
        return (
            grpc.StatusCode.INVALID_ARGUMENT,
            "request: not a valid protobuf message of this method's request type",
            ((FIELD_METADATA_KEY, "request"),),
        )
    incident = uuid.uuid4().hex[:12]
    kind = "library error" if isinstance(exc, CommapError) else "internal error"
    return (
        grpc.StatusCode.INTERNAL,
        f"{kind}, incident {incident}",
        (("commap-incident", incident),),
    )


class MalformedRequest:
    """Stands for a request message that did not parse (the handler raises for it).

    Examples
    --------
    >>> MalformedRequest("commap.v1.GetMapRequest").check()
    Traceback (most recent call last):
    ...
    google.protobuf.message.DecodeError: request is not a valid commap.v1.GetMapRequest
    """

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def check(self) -> None:
        """Raise the decode error this marker stands for."""
        raise DecodeError(f"request is not a valid {self.type_name}")


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer`` returning a :class:`MalformedRequest` instead of raising."""
    if deserializer is None:
        return None
    type_name = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = type_name.full_name if type_name is not None else "request message"

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return MalformedRequest(name)

    return deserialize


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A request stream that raises at the first malformed message."""
    async for request in requests:
        if isinstance(request, MalformedRequest):
            request.check()
        yield request


def _checked_request(request: Any) -> Any:
    """The request, or a checking stream of it; raises for a malformed unary request."""
    if isinstance(request, MalformedRequest):
        request.check()
    if hasattr(request, "__aiter__"):
        return _checked(request)
    return request


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
    elif code is grpc.StatusCode.UNAVAILABLE:  # the operator must act: say where
        log.error("%s: %s: %s", call.method, message, exc)
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
            "request_deserializer": _tolerant(handler.request_deserializer),
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
            response = await behaviour(_checked_request(request), context)
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
            async for response in behaviour(_checked_request(request), context):
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
