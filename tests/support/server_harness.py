"""Run the real gRPC server (``python -m server``) on a free port, for tests.

The server runs as a subprocess on a built map, with fleet measurements written to a temporary
directory; :meth:`ServerProcess.stop` stops it with SIGTERM (the graceful path),
:meth:`ServerProcess.kill` with SIGKILL (a crash). TLS servers are reached with the
``credentials`` given to :func:`start_server`. The pytest fixtures built on this live in
``tests/support/conftest_server.py``.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from tests.support.paths import REPO


def ensure_stubs() -> None:
    """Generate the gRPC stubs when ``make proto`` has not (or protos changed since)."""
    from server import protogen

    if not protogen.stubs_are_current():
        protogen.generate()


CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


@dataclass
class ServerProcess:
    """A running server: its address, process and log file."""

    target: str
    process: subprocess.Popen[str]
    log_path: Path
    measurements_dir: Path
    credentials: grpc.ChannelCredentials | None = None
    viewer_url: str = ""

    def channel(self) -> grpc.Channel:
        """A new channel to the server (TLS with ``credentials``; close it when done)."""
        if self.credentials is not None:
            return grpc.secure_channel(
                self.target,
                self.credentials,
                options=[*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", "localhost")],
            )
        return grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)

    @property
    def pid(self) -> int:
        """Process id of the server."""
        return int(self.process.pid)

    def rss_bytes(self) -> int:
        """Resident memory of the server process (Linux ``/proc``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    def kill(self) -> None:
        """SIGKILL (a crash: no shutdown code runs) and reap the process."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)

    def log_text(self) -> str:
        """Everything the server logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait, and return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def restarting_server(
    map_dir: Path, work_dir: Path, measurements_dir: Path
) -> Callable[[], ServerProcess]:
    """A function that starts a fresh server on the same map and measurements each call.

    For kill-and-restart cycles: every start logs to its own ``server-<n>.log`` in ``work_dir``.
    """
    counter = itertools.count()

    def start() -> ServerProcess:
        return start_server(
            map_dir,
            work_dir,
            measurements_dir=measurements_dir,
            extra_args=("--no-access-log",),
            log_name=f"server-{next(counter)}.log",
        )

    return start


def start_server(
    map_dir: Path,
    work_dir: Path,
    *,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    measurements_dir: Path | None = None,
    log_name: str = "server.log",
    wrapper: tuple[str, ...] = (),
    new_session: bool = False,
) -> ServerProcess:
    """Start ``python -m server --port 0`` on ``map_dir`` and wait until it is SERVING.

    ``credentials``: how to reach a TLS server. ``measurements_dir``: default
    ``work_dir/measurements`` (give the same one to a restarted server). ``wrapper``: a command
    the server command line is appended to, which must ``exec`` it (e.g. one that mounts the
    measurements directory read-only first; see ``tests/support/storage.py``). ``new_session``:
    the server and its children in a process group of their own (a terminal's Ctrl-C reaches the
    whole group: ``os.killpg(server.pid, signal.SIGINT)``).
    """
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    ensure_stubs()
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / log_name
    measurements_dir = measurements_dir or work_dir / "measurements"
    args = [
        *wrapper,
        sys.executable,
        "-m",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--map",
        str(map_dir),
        "--measurements-dir",
        str(measurements_dir),
        *extra_args,
    ]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log_path.open("w", encoding="utf-8") as log_file:
        process = subprocess.Popen(
            args,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            env=full_env,
            start_new_session=new_session,
        )
    assert process.stdout is not None
    target = viewer_url = ""
    for line in process.stdout:  # blocks until the server prints its address (maps loaded)
        if line.startswith("VIEWER "):
            viewer_url = line.split()[1]
        if line.startswith("LISTENING "):
            target = line.split()[1]
            break
    if not target:
        process.wait(timeout=10)
        raise RuntimeError(f"server did not start:\n{log_path.read_text(encoding='utf-8')}")
    server = ServerProcess(
        target=target,
        process=process,
        log_path=log_path,
        measurements_dir=measurements_dir,
        credentials=credentials,
        viewer_url=viewer_url,
    )
    with server.channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while True:
            status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("server never reported SERVING")
            time.sleep(0.1)
    return server
