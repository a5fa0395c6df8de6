"""Fixtures that run the real gRPC server on port 0 (loaded for every test by
``pytest_plugins`` in ``tests/conftest.py``; the server starts only when a test asks for it).

``grpc_server`` serves the built default map for the whole test run; ``grpc_channel`` and
``stub`` talk to it. The helpers behind them are in ``server_harness.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support.server_harness import ServerProcess, ensure_stubs, start_server


@pytest.fixture(scope="session")
def grpc_server(
    andorra_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The real server on the default map, for the whole test run."""
    server = start_server(andorra_dir, tmp_path_factory.mktemp("grpc-server"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def grpc_channel(grpc_server: ServerProcess) -> Iterator[grpc.Channel]:
    """A channel to :func:`grpc_server`."""
    with grpc_server.channel() as channel:
        yield channel


@pytest.fixture(scope="session")
def stub(grpc_channel: grpc.Channel):  # type: ignore[no-untyped-def]
    """A ``commap.v1.CommapService`` stub on :func:`grpc_channel`."""
    ensure_stubs()
    from commap.v1 import commap_service_pb2_grpc as pb_grpc

    return pb_grpc.CommapServiceStub(grpc_channel)
