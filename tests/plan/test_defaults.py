"""Every front door plans with the same defaults: the CLI, the gRPC server and the Python API."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import pytest
import typer

from tests.support.server_harness import ensure_stubs

ensure_stubs()

from commap import cli  # noqa: E402
from commap.errors import InvalidInputError  # noqa: E402
from commap.plan import defaults  # noqa: E402
from commap.plan.execution import ExecutionRules  # noqa: E402
from commap.service.planning import PlanRequest  # noqa: E402
from commap.v1 import commap_service_pb2 as pb  # noqa: E402
from server import convert  # noqa: E402
from server.config import ServerConfig  # noqa: E402

ORIGIN = (1.5218, 42.5063)
DESTINATION = (1.7330, 42.5430)

# PlanRequest field -> the planning default it must start from
EXPECTED: dict[str, Any] = {
    "app": defaults.APP,
    "min_dwell_s": defaults.MIN_DWELL_S,
    "min_dwell_m": defaults.MIN_DWELL_M,
    "max_handovers": defaults.MAX_HANDOVERS,
    "sat_budget_mb": defaults.SAT_BUDGET_MB,
    "alternatives": defaults.ALTERNATIVES,
    "seconds_per_drop": defaults.SECONDS_PER_DROP,
    "time_limit_s": defaults.SOLVER_TIME_LIMIT_S,
    "seed": defaults.SEED,
}
# ``commap plan`` option -> PlanRequest field
CLI_OPTIONS = {
    "app_class": "app",
    "min_dwell_s": "min_dwell_s",
    "max_handovers": "max_handovers",
    "sat_budget_mb": "sat_budget_mb",
    "alternatives": "alternatives",
    "time_limit_s": "time_limit_s",
}


def _values(request: PlanRequest) -> dict[str, Any]:
    return {name: getattr(request, name) for name in EXPECTED}


def test_the_documented_values() -> None:
    assert defaults.MIN_DWELL_S == 10.0
    assert defaults.SOLVER_TIME_LIMIT_S == 5.0
    assert defaults.MAX_ALTERNATIVES == 10


def test_python_api_request_starts_from_the_defaults() -> None:
    assert _values(PlanRequest(origin=ORIGIN, destination=DESTINATION)) == EXPECTED


def test_cli_option_defaults_are_the_planning_defaults() -> None:
    # typer takes an option's default from the parameter default of the command function
    params = inspect.signature(cli.plan).parameters
    for option, field in CLI_OPTIONS.items():
        assert params[option].default == EXPECTED[field], option
    hints = typing.get_type_hints(cli.plan, include_extras=True)
    (alternatives,) = (m for m in hints["alternatives"].__metadata__ if hasattr(m, "max"))
    assert isinstance(alternatives, typer.models.OptionInfo)
    assert alternatives.max == defaults.MAX_ALTERNATIVES


def test_grpc_request_with_unset_fields_gets_the_defaults() -> None:
    request = pb.PlanRouteRequest(
        endpoints=pb.Endpoints(
            origin=pb.LatLon(longitude_deg=ORIGIN[0], latitude_deg=ORIGIN[1]),
            destination=pb.LatLon(longitude_deg=DESTINATION[0], latitude_deg=DESTINATION[1]),
        ),
        constraints=pb.Constraints(),  # present, every field unset
    )
    config = ServerConfig()
    time_limit_s = convert.requested_time_limit_s(request, config)
    plan = convert.plan_request(request, config=config, time_limit_s=time_limit_s)
    assert _values(plan) == EXPECTED


@pytest.mark.parametrize("surface", ["python", "grpc"])
def test_alternatives_cap_is_the_same_everywhere(surface: str) -> None:
    ends = pb.Endpoints(
        origin=pb.LatLon(longitude_deg=ORIGIN[0], latitude_deg=ORIGIN[1]),
        destination=pb.LatLon(longitude_deg=DESTINATION[0], latitude_deg=DESTINATION[1]),
    )

    def ask(k: int) -> PlanRequest:
        if surface == "python":
            return PlanRequest(origin=ORIGIN, destination=DESTINATION, alternatives=k)
        request = pb.PlanRouteRequest(endpoints=ends, alternatives=k)
        return convert.plan_request(request, config=ServerConfig(), time_limit_s=1.0)

    assert ask(defaults.MAX_ALTERNATIVES).alternatives == defaults.MAX_ALTERNATIVES
    with pytest.raises(InvalidInputError, match="alternatives"):
        ask(defaults.MAX_ALTERNATIVES + 1)


def test_execution_rules_keep_their_own_dwell() -> None:
    assert ExecutionRules().min_dwell_s == defaults.EXECUTION_MIN_DWELL_S


def test_execution_rules_wait_on_a_weak_link_in_proportion_to_the_switch() -> None:
    assert ExecutionRules().weak_ttt_per_interruption == 4.0
    with pytest.raises(InvalidInputError, match="weak_ttt_per_interruption"):
        ExecutionRules(weak_ttt_per_interruption=-1.0)
