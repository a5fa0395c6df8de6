"""A client in another language: the Node.js rig (clients/node/rig.mjs) against the real server."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.support.paths import REPO
from tests.support.server_harness import ServerProcess

pytestmark = [pytest.mark.interop, pytest.mark.integration]


def test_node_rig_plans_drives_and_gets_invalid_argument(grpc_server: ServerProcess) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is required for the interop test"
    assert (REPO / "node_modules" / "@grpc" / "grpc-js").is_dir(), "run `make setup` (npm ci) first"
    run = subprocess.run(
        [node, "clients/node/rig.mjs", "--target", grpc_server.target, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, f"rig failed:\n{run.stdout}\n{run.stderr}"
    checks = json.loads(run.stdout.strip().splitlines()[-1])
    assert checks["ok"] is True
    assert checks["map"] == "andorra"
    assert checks["plan_segments"] > 500 and checks["plan_handovers"] >= 5
    assert checks["plan_solver_status"] == "SOLVER_STATUS_OPTIMAL"
    assert checks["drive_status"] == "OK"
    assert checks["drive_instructions"] == checks["plan_handovers"]
    assert checks["drive_min_lead_s"] >= 7.5
    assert checks["invalid_status"] == "INVALID_ARGUMENT"
    assert checks["invalid_details"].startswith("endpoints.origin.latitude_deg")
