"""Run the real gRPC server (``python -m server``) on a free port, for tests.

The server runs as a subprocess on a built map, with fleet measurements written to a temporary
directory; :meth:`ServerProcess.stop` stops it with SIGTERM (the graceful path). The pytest
fixtures built on this live in ``conftest_server.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]


def ensure_stubs() -> None:
    """Generate the gRPC stubs when ``make proto`` has not (or protos changed since)."""
    from server import protogen

    if not protogen.stubs_are_current():
        protogen.generate()


@dataclass
class ServerProcess:
    """A running server: its address, process and log file."""

    target: str
    process: subprocess.Popen[str]
    log_path: Path
    measurements_dir: Path

    def channel(self) -> grpc.Channel:
        """A new insecure channel to the server (close it when done)."""
        return grpc.insecure_channel(
            self.target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        )

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


def start_server(
    map_dir: Path,
    work_dir: Path,
    *,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """Start ``python -m server --port 0`` on ``map_dir`` and wait until it is SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    ensure_stubs()
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / "server.log"
    measurements_dir = work_dir / "measurements"
    args = [
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
            args, cwd=REPO, stdout=subprocess.PIPE, stderr=log_file, text=True, env=full_env
        )
    assert process.stdout is not None
    target = ""
    for line in process.stdout:  # blocks until the server prints its address (maps loaded)
        if line.startswith("LISTENING "):
            target = line.split()[1]
            break
    if not target:
        process.wait(timeout=10)
        raise RuntimeError(f"server did not start:\n{log_path.read_text(encoding='utf-8')}")
    server = ServerProcess(
        target=target, process=process, log_path=log_path, measurements_dir=measurements_dir
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
