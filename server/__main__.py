"""``python -m server [--host H] [--port P] [--map NAME ...]``: run the commap gRPC server.

Every flag can also be given as a ``COMMAP_*`` environment variable (``--port`` ->
``COMMAP_PORT``); see ``python -m server --help``. ``--port 0`` picks a free port and logs it.
Prints ``LISTENING host:port`` once serving (and, with ``--viewer-port``, ``VIEWER <url>`` just
before). SIGHUP reloads the maps. Exit status: 0 after a graceful shutdown, 2 for a bad
configuration, 1 when a map (or the TLS files, or the viewer) cannot be loaded.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from commap.errors import CommapError, InvalidInputError

__all__ = ["main"]

log = logging.getLogger("server")


def main(argv: list[str] | None = None) -> int:
    """Parse the configuration, serve until SIGTERM/SIGINT, and return the exit status."""
    from server.config import load_config
    from server.processes import LOG_FORMAT, limit_malloc_arenas

    limit_malloc_arenas()  # before any solve thread allocates

    try:
        config = load_config(sys.argv[1:] if argv is None else argv)
    except InvalidInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format=LOG_FORMAT,  # the server's child processes log alike
        stream=sys.stderr,
    )
    from server.app import CommapServer, channel_ready_hint, serve

    def started(server: CommapServer) -> None:
        if server.viewer_url:  # parseable, before LISTENING (scripts read up to that line)
            print(f"VIEWER {server.viewer_url}", flush=True)

    def ready(port: int) -> None:
        # one parseable line for scripts and tests, then how to query
        print(f"LISTENING {config.host}:{port}", flush=True)
        print(channel_ready_hint(config.host, port, tls=config.tls), flush=True)

    try:
        asyncio.run(serve(config, on_ready=ready, on_started=started))
    except CommapError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except (RuntimeError, OSError) as exc:  # cannot bind, storage refused: one line, no traceback
        log.error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
