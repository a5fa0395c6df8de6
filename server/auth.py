"""Optional bearer-token authentication and per-client permissions for the gRPC server.

A client sends ``authorization: Bearer <token>`` metadata with every call. The token maps to a
client name, the RPCs it may call and the maps it may use. Missing or unknown tokens get
UNAUTHENTICATED, known clients calling what they may not get PERMISSION_DENIED. Health
(``grpc.health.v1.Health``) always answers without a token, so load balancers and
orchestrators can probe the server; reflection needs a valid token when tokens are configured.

Tokens come from a TOML file (``--tokens-file`` / ``COMMAP_TOKENS_FILE``) and/or the
``COMMAP_TOKENS`` environment variable; never from the command line, where ``ps`` shows them.
Only their SHA-256 digests are kept in memory, and no token (nor part of one) is ever logged or
put into an error message.

Token file::

    [[client]]
    name = "rig-1"
    token_sha256 = "9f86d0...c15d"        # or: token = "...", at least 16 characters
    rpcs = ["PlanRoute", "QueryCoverage"]  # optional; default: every RPC but ReloadMaps; "*": all
    maps = ["andorra"]                     # optional; default: every map

``COMMAP_TOKENS``: ``NAME:TOKEN[:RPC+RPC...[:MAP+MAP...]]`` entries separated by commas
(``*`` for all), e.g. ``rig-1:Zm9vYmFyYmF6cXV4MTIz:PlanRoute+Drive:andorra,ops:...:*``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import tomllib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from commap.errors import CommapError, InvalidInputError

__all__ = [
    "ADMIN_RPCS",
    "AuthClient",
    "AuthInterceptor",
    "AuthPolicy",
    "PermissionDeniedError",
    "UnauthenticatedError",
    "parse_token_entries",
    "read_token_file",
    "rpc_names",
    "token_digest",
]

log = logging.getLogger(__name__)

SERVICE_PREFIX = "/commap.v1.CommapService/"
HEALTH_PREFIX = "/grpc.health.v1.Health/"
# RPCs a client may call only when its entry names them (or "*")
ADMIN_RPCS = frozenset({"ReloadMaps"})
MIN_TOKEN_CHARS = 16
# RFC 6750 token68: what a bearer token may contain (also keeps ':' and ',' free as separators)
_TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
# client names go into logs: printable, short, no separators
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class UnauthenticatedError(CommapError):
    """A call carried no bearer token, or one the server does not know (UNAUTHENTICATED)."""


class PermissionDeniedError(CommapError):
    """A known client asked for an RPC or a map it may not use (PERMISSION_DENIED)."""


def rpc_names() -> tuple[str, ...]:
    """Method names of ``commap.v1.CommapService`` (from the generated descriptor)."""
    from commap.v1 import commap_service_pb2 as pb

    return tuple(pb.DESCRIPTOR.services_by_name["CommapService"].methods_by_name)


def token_digest(token: str) -> str:
    """Hex SHA-256 of a token (what token files may store instead of the token).

    Examples
    --------
    >>> token_digest("test")[:12]
    '9f86d081884c'
    >>> len(token_digest(""))
    64
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuthClient:
    """One client: its name, its token's digest, what it may call and use.

    Parameters
    ----------
    name : shown in logs.
    token_sha256 : hex SHA-256 of the token (the token itself is never kept).
    rpcs : RPC method names the client may call.
    maps : map names the client may use; None: every map.

    Examples
    --------
    >>> c = AuthClient("rig", token_digest("x" * 16), frozenset({"PlanRoute"}), None)
    >>> c.may_call("PlanRoute"), c.may_call("ReloadMaps"), c.may_use_map("andorra")
    (True, False, True)
    >>> "x" * 16 in repr(c)
    False
    """

    name: str
    token_sha256: str = field(repr=False)
    rpcs: frozenset[str]
    maps: frozenset[str] | None

    def may_call(self, rpc: str) -> bool:
        """True if the client may call the RPC ``rpc`` (method name)."""
        return rpc in self.rpcs

    def may_use_map(self, name: str) -> bool:
        """True if the client may use the map ``name``."""
        return self.maps is None or name in self.maps


@dataclass(frozen=True)
class AuthPolicy:
    """The configured clients; authenticates calls from their metadata.

    Examples
    --------
    >>> policy = AuthPolicy(parse_token_entries("rig:abcdefghijklmnop1234", "env"))
    >>> policy.authenticate((("authorization", "Bearer abcdefghijklmnop1234"),)).name
    'rig'
    >>> policy.authenticate(())
    Traceback (most recent call last):
    ...
    server.auth.UnauthenticatedError: missing bearer token: send metadata 'authorization: Bearer <token>'
    """

    clients: tuple[AuthClient, ...]

    def __post_init__(self) -> None:
        if not self.clients:
            raise InvalidInputError("authentication needs at least one client", field="tokens")
        names = [c.name for c in self.clients]
        for name in names:
            if names.count(name) > 1:
                raise InvalidInputError(f"client {name!r} is configured twice", field="tokens")
        digests = [c.token_sha256 for c in self.clients]
        if len(set(digests)) != len(digests):
            raise InvalidInputError("two clients share one token", field="tokens")

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> AuthClient:
        """The client whose token the call's ``authorization`` metadata carries.

        Raises
        ------
        UnauthenticatedError
            No ``authorization: Bearer`` metadata, or an unknown token (the message never
            repeats the token).
        """
        token = _bearer_token(metadata)
        digest = token_digest(token).encode("ascii")
        found: AuthClient | None = None
        for client in self.clients:  # every entry compared, in constant time: no early exit
            if hmac.compare_digest(digest, client.token_sha256.encode("ascii")):
                found = client
        if found is None:
            raise UnauthenticatedError("invalid bearer token")
        return found


def _bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    values = [v for k, v in (metadata or ()) if k.lower() == "authorization"]
    if not values:
        raise UnauthenticatedError(
            "missing bearer token: send metadata 'authorization: Bearer <token>'"
        )
    if len(values) > 1:
        raise UnauthenticatedError("more than one authorization header")
    value = values[0]
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    scheme, _, token = text.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthenticatedError("authorization metadata is not 'Bearer <token>'")
    return token.strip()


# -- configuration -----------------------------------------------------------------------------
def _rpc_set(values: Sequence[str] | None, where: str) -> frozenset[str]:
    known = rpc_names()
    if values is None:
        return frozenset(known) - ADMIN_RPCS
    if "*" in values:
        return frozenset(known)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown RPC(s) {', '.join(unknown)}; known: {', '.join(known)}",
            field="tokens",
        )
    return frozenset(values)


def _map_set(values: Sequence[str] | None) -> frozenset[str] | None:
    if values is None or "*" in values:
        return None
    return frozenset(values)


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(
            f"{where}: client name must be 1-64 letters, digits or _.@- (starting with a letter "
            "or digit)",
            field="tokens",
        )
    return name


def _digest_of_token(token: Any, where: str) -> str:
    # messages name the client and the rule, never the token
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise InvalidInputError(
            f"{where}: the token must be a bearer token (letters, digits and -._~+/, "
            "optionally ending in =)",
            field="tokens",
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise InvalidInputError(
            f"{where}: the token must be at least {MIN_TOKEN_CHARS} characters", field="tokens"
        )
    return token_digest(token)


def parse_token_entries(text: str, source: str) -> tuple[AuthClient, ...]:
    """Clients of a ``COMMAP_TOKENS`` value: ``NAME:TOKEN[:RPCS[:MAPS]]``, comma-separated.

    Raises
    ------
    InvalidInputError
        A malformed entry (named by its position and client, never by its token).

    Examples
    --------
    >>> [c.name for c in parse_token_entries("a:abcdefghijklmnop1234, b:qrstuvwxyz0123456789:*", "env")]
    ['a', 'b']
    >>> parse_token_entries("", "env")
    ()
    >>> parse_token_entries("a:short", "COMMAP_TOKENS")
    Traceback (most recent call last):
    ...
    commap.errors.InvalidInputError: COMMAP_TOKENS entry 1 (client 'a'): the token must be at least 16 characters
    """
    clients = []
    for k, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        parts = entry.split(":")
        where = f"{source} entry {k}"
        if not 2 <= len(parts) <= 4:
            raise InvalidInputError(
                f"{where}: expected NAME:TOKEN[:RPC+RPC...[:MAP+MAP...]]", field="tokens"
            )
        name = _check_name(parts[0], where)
        where = f"{where} (client {name!r})"
        rpcs = parts[2].split("+") if len(parts) > 2 and parts[2] else None
        maps = parts[3].split("+") if len(parts) > 3 and parts[3] else None
        clients.append(
            AuthClient(
                name=name,
                token_sha256=_digest_of_token(parts[1], where),
                rpcs=_rpc_set(rpcs, where),
                maps=_map_set(maps),
            )
        )
    return tuple(clients)


def _string_list(entry: Mapping[str, Any], key: str, where: str) -> list[str] | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInputError(f"{where}: {key} must be a list of strings", field="tokens")
    return value


def _file_client(entry: Any, where: str) -> AuthClient:
    if not isinstance(entry, Mapping):
        raise InvalidInputError(f"{where}: must be a table", field="tokens")
    name = _check_name(entry.get("name"), where)
    where = f"{where} (client {name!r})"
    unknown = sorted(set(entry) - {"name", "token", "token_sha256", "rpcs", "maps"})
    if unknown:
        raise InvalidInputError(f"{where}: unknown key(s) {', '.join(unknown)}", field="tokens")
    if ("token" in entry) == ("token_sha256" in entry):
        raise InvalidInputError(f"{where}: give exactly one of token, token_sha256", field="tokens")
    if "token" in entry:
        digest = _digest_of_token(entry["token"], where)
    else:
        digest = str(entry["token_sha256"]).lower()
        if not _HEX_DIGEST.match(digest):
            raise InvalidInputError(f"{where}: token_sha256 must be 64 hex digits", field="tokens")
    return AuthClient(
        name=name,
        token_sha256=digest,
        rpcs=_rpc_set(_string_list(entry, "rpcs", where), where),
        maps=_map_set(_string_list(entry, "maps", where)),
    )


def read_token_file(path: Path) -> tuple[AuthClient, ...]:
    """Clients of a TOML token file (``[[client]]`` tables, see the module docstring).

    Raises
    ------
    InvalidInputError
        Unreadable file, bad TOML or a bad entry (named by position and client).
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError(
            f"{path}: cannot read the token file ({exc.strerror})", field="tokens_file"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        # the parser's message may quote the offending line, which may hold a token
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise InvalidInputError(f"{path}: not valid TOML{where}", field="tokens_file") from None
    entries = raw.get("client", [])
    if not isinstance(entries, list) or not entries:
        raise InvalidInputError(f"{path}: no [[client]] tables", field="tokens_file")
    if path.stat().st_mode & 0o077 and any("token" in e for e in entries if isinstance(e, dict)):
        log.warning("%s holds plain tokens and is readable by others: chmod 600 it", path)
    return tuple(_file_client(e, f"{path} client {k}") for k, e in enumerate(entries, start=1))


# -- interceptor ---------------------------------------------------------------------------------
def _rejecting_handler(
    handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that aborts every call with ``code``."""

    async def unary(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    async def streaming(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - abort raises; this makes the function a generator

    common = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary, **common)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary, **common)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(streaming, **common)
    return grpc.stream_stream_rpc_method_handler(streaming, **common)


class AuthInterceptor(aio.ServerInterceptor):
    """Reject calls without a valid token, or to an RPC the client may not call.

    Health is exempt. Place it after :class:`server.interceptors.ErrorMappingInterceptor`
    in the interceptor list, so that rejected calls still get their access-log line.
    """

    def __init__(self, policy: AuthPolicy) -> None:
        self._policy = policy

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Pass the handler through, or swap in one that aborts the call."""
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(HEALTH_PREFIX):
            return handler
        try:
            client = self._policy.authenticate(handler_call_details.invocation_metadata)
        except UnauthenticatedError as exc:
            return _rejecting_handler(handler, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if method.startswith(SERVICE_PREFIX):
            rpc = method.removeprefix(SERVICE_PREFIX)
            if not client.may_call(rpc):
                log.info("client %s may not call %s", client.name, rpc)
                return _rejecting_handler(
                    handler,
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"client {client.name!r} may not call {rpc}",
                )
        return handler
