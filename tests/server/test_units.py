"""Server parts without a running server: configuration, conversions, error mapping, solve pool."""

from __future__ import annotations

import asyncio
import math
import os
import threading
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest

from tests.support.paths import TEST_DATA
from tests.support.server_harness import ensure_stubs

ensure_stubs()

from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402

from commap.errors import (  # noqa: E402
    CommapError,
    InvalidInputError,
    MapNotFoundError,
    NoFeasiblePlanError,
    SolverTimeoutError,
)
from commap.map.comm_map import CommMap  # noqa: E402
from commap.v1 import commap_service_pb2 as pb  # noqa: E402
from server import convert  # noqa: E402
from server.app import channel_ready_hint  # noqa: E402
from server.config import ServerConfig, load_config  # noqa: E402
from server.interceptors import status_for  # noqa: E402
from server.maps import MapStore  # noqa: E402
from server.pool import ServerOverloadedError, SolvePool  # noqa: E402


# -- configuration --------------------------------------------------------------------------------
def test_flags_override_environment_override_defaults() -> None:
    env = {"COMMAP_PORT": "6000", "COMMAP_LEAD_TIME_S": "7", "COMMAP_MAPS": "andorra, cork"}
    config = load_config(["--port", "0"], env)
    assert config.port == 0  # flag wins
    assert config.lead_time_s == 7.0  # environment
    assert config.maps == ("andorra", "cork")
    assert config.solve_workers == ServerConfig().solve_workers  # default


def test_map_flag_repeats_and_default_map() -> None:
    config = load_config(["--map", "a", "--map", "b", "--default-map", "b"], {})
    assert config.map_names == ("a", "b")
    assert config.settings.default_map == "b"
    # no --map: every built map of the repository, the default one first
    assert load_config([], {}).map_names == ("andorra", "cork", "indianapolis")


def test_without_map_flags_every_built_map_is_served(tmp_path: Path) -> None:
    (tmp_path / "alps" / "built").mkdir(parents=True)
    (tmp_path / "alps" / "built" / "manifest.json").write_text("{}")
    (tmp_path / "coast").mkdir()
    (tmp_path / "coast" / "manifest.json").write_text("{}")
    (tmp_path / "unbuilt").mkdir()  # a spec folder without a build is not served
    config = load_config(["--maps-dir", str(tmp_path), "--default-map", "coast"], {})
    assert config.map_names == ("coast", "alps")
    # nothing built: the default map alone, so that the server says how to build it
    empty = load_config(["--maps-dir", str(tmp_path / "unbuilt")], {})
    assert empty.map_names == ("andorra",)


def test_ready_hint_names_the_process_to_signal() -> None:
    assert f"kill -HUP {os.getpid()}," in channel_ready_hint("127.0.0.1", 50051)
    assert f"kill -HUP {os.getpid()}" in channel_ready_hint("127.0.0.1", 50051, tls=True)


@pytest.mark.parametrize(
    ("argv", "env", "field"),
    [
        (["--port", "70000"], {}, "port"),
        (["--port", "abc"], {}, "port"),
        ([], {"COMMAP_SOLVE_WORKERS": "0"}, "solve_workers"),
        (["--lead-time-s", "nan"], {}, "lead_time_s"),
        (["--off-route-distance-m", "-5"], {}, "off_route_distance_m"),
        (["--log-level", "LOUD"], {}, "log_level"),
        (["--default-solver-time-limit-s", "90"], {}, "default_solver_time_limit_s"),
        (["--fleet-executor", "processes"], {}, "fleet_executor"),
        (["--fleet-scheduler", "tcp://127.0.0.1:8786"], {}, "fleet_scheduler"),
    ],
)
def test_bad_configuration_names_the_field(
    argv: list[str], env: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        load_config(argv, env)
    assert info.value.field == field


def test_env_error_names_the_variable() -> None:
    with pytest.raises(InvalidInputError, match="COMMAP_PORT"):
        load_config([], {"COMMAP_PORT": "eighty"})


def test_config_is_frozen() -> None:
    config = ServerConfig()
    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]


def test_ipv6_address_is_bracketed() -> None:
    assert ServerConfig(host="::1", port=5).address == "[::1]:5"


# -- error mapping --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (InvalidInputError("bad", field="x"), grpc.StatusCode.INVALID_ARGUMENT),
        (MapNotFoundError("no map"), grpc.StatusCode.NOT_FOUND),
        (
            NoFeasiblePlanError("no plan", constraint="max_handovers"),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (SolverTimeoutError("slow"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (TimeoutError(), grpc.StatusCode.DEADLINE_EXCEEDED),
        (ServerOverloadedError("busy"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (CommapError("odd"), grpc.StatusCode.INTERNAL),
        (KeyError("/secret/path"), grpc.StatusCode.INTERNAL),
        (ZeroDivisionError(), grpc.StatusCode.INTERNAL),
    ],
)
def test_status_for_every_branch_of_the_error_tree(
    exc: BaseException, code: grpc.StatusCode
) -> None:
    assert status_for(exc)[0] is code


def test_internal_errors_hide_internals() -> None:
    _code, message, metadata = status_for(KeyError("/secret/path"))
    assert "secret" not in message and "KeyError" not in message
    assert "incident" in message and metadata[0][0] == "commap-incident"


def test_invalid_argument_names_field_in_message_and_metadata() -> None:
    _code, message, metadata = status_for(InvalidInputError("must be finite", field="fix.time"))
    assert message.startswith("fix.time:")
    assert ("commap-field", "fix.time") in metadata
    assert (
        "max_handovers" in status_for(NoFeasiblePlanError("no plan", constraint="max_handovers"))[1]
    )


# -- conversions ----------------------------------------------------------------------------------
def test_timestamp_round_trip() -> None:
    for t_s in (0.0, 1737633600.25, 1.999999999, -1.5):
        assert convert.seconds(convert.timestamp(t_s), field="t") == pytest.approx(t_s, abs=1e-9)


@pytest.mark.parametrize(
    ("lat", "lon", "field"),
    [
        (91.0, 1.5, "p.latitude_deg"),
        (-90.5, 1.5, "p.latitude_deg"),
        (42.5, 181.0, "p.longitude_deg"),
        (math.nan, 1.5, "p.latitude_deg"),
        (42.5, math.inf, "p.longitude_deg"),
    ],
)
def test_latlon_rejects_out_of_range_and_non_finite(lat: float, lon: float, field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        convert.latlon(pb.LatLon(latitude_deg=lat, longitude_deg=lon), field="p")
    assert info.value.field == field


def test_latlon_accepts_the_edges() -> None:
    assert convert.latlon(pb.LatLon(latitude_deg=90.0, longitude_deg=-180.0), field="p") == (
        -180.0,
        90.0,
    )


def _request(**kw: object) -> pb.PlanRouteRequest:
    return pb.PlanRouteRequest(**kw)  # type: ignore[arg-type]


def _ends() -> pb.Endpoints:
    return pb.Endpoints(
        origin=pb.LatLon(latitude_deg=42.5063, longitude_deg=1.5218),
        destination=pb.LatLon(latitude_deg=42.5430, longitude_deg=1.7330),
    )


def test_plan_request_from_endpoints() -> None:
    request = _request(
        endpoints=_ends(),
        departure_time=Timestamp(seconds=1737633600),
        application_class="teleoperation",
        constraints=pb.Constraints(min_dwell_s=5, max_handovers=3, satellite_budget_mb=10.0),
        weights={"handovers": 0.1},
        alternatives=2,
        seed=7,
    )
    plan = convert.plan_request(request, config=ServerConfig(), time_limit_s=2.0)
    assert plan.origin == (1.5218, 42.5063) and plan.destination == (1.7330, 42.5430)
    assert plan.departure_s == 1737633600.0 and plan.app == "teleoperation"
    assert (plan.min_dwell_s, plan.max_handovers, plan.sat_budget_mb) == (5.0, 3, 10.0)
    assert plan.weights == {"handovers": 0.1} and plan.alternatives == 2 and plan.seed == 7
    assert plan.time_limit_s == 2.0


def test_plan_request_unset_optionals_stay_unset() -> None:
    plan = convert.plan_request(
        _request(endpoints=_ends()), config=ServerConfig(), time_limit_s=1.0
    )
    assert plan.max_handovers is None and plan.sat_budget_mb is None and plan.departure_s is None
    assert plan.alternatives == 1


def test_plan_request_from_polyline_with_times() -> None:
    poly = pb.Polyline(
        points=[
            pb.LatLon(latitude_deg=42.50, longitude_deg=1.50),
            pb.LatLon(latitude_deg=42.50, longitude_deg=1.51),
        ],
        times=[Timestamp(seconds=100), Timestamp(seconds=160)],
    )
    plan = convert.plan_request(_request(polyline=poly), config=ServerConfig(), time_limit_s=1.0)
    assert plan.route is not None and plan.route.t_s is not None
    assert plan.route.t_s.tolist() == [100.0, 160.0]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.PlanRouteRequest(), "route"),
        (pb.PlanRouteRequest(endpoints=pb.Endpoints(origin=pb.LatLon())), "endpoints.destination"),
        (pb.PlanRouteRequest(polyline=pb.Polyline(points=[pb.LatLon()])), "polyline.points"),
        (
            pb.PlanRouteRequest(
                polyline=pb.Polyline(
                    points=[
                        pb.LatLon(latitude_deg=42.5, longitude_deg=1.5),
                        pb.LatLon(latitude_deg=42.5, longitude_deg=1.51),
                    ],
                    times=[Timestamp(seconds=5), Timestamp(seconds=4)],
                )
            ),
            "polyline.times",
        ),
        (pb.PlanRouteRequest(endpoints=_ends(), alternatives=11), "alternatives"),
        (pb.PlanRouteRequest(endpoints=_ends(), weights={"drops": -1.0}), "weights[drops]"),
        (
            pb.PlanRouteRequest(
                endpoints=_ends(), constraints=pb.Constraints(min_dwell_s=math.nan)
            ),
            "constraints.min_dwell_s",
        ),
        (
            pb.PlanRouteRequest(endpoints=_ends(), departure_time=Timestamp(nanos=-5)),
            "departure_time",
        ),
    ],
)
def test_plan_request_errors_name_the_field(request_: pb.PlanRouteRequest, field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        convert.plan_request(request_, config=ServerConfig(), time_limit_s=1.0)
    assert info.value.field == field


def test_a_polyline_sent_again_is_read_once_and_a_bad_one_always_refused() -> None:
    # a fleet sends its routes again with each departure: the route read before is reused
    lon = 1.5 + np.arange(500) * 1e-4
    points = [
        pb.LatLon(latitude_deg=42.5 + (i % 3) * 1e-5, longitude_deg=x) for i, x in enumerate(lon)
    ]
    points[7] = pb.LatLon(latitude_deg=42.5)  # longitude 0 is left out: read one by one
    bad = pb.Polyline(points=[*points[:3], pb.LatLon(latitude_deg=91.0, longitude_deg=1.5)])
    for speed in (0.0, 20.0):
        poly = pb.Polyline(points=points, speed_mps=speed)
        first = convert.plan_request(
            _request(polyline=poly), config=ServerConfig(), time_limit_s=1.0
        )
        again = convert.plan_request(
            _request(polyline=poly), config=ServerConfig(), time_limit_s=1.0
        )
        assert first.route is not None and again.route is first.route
        assert first.route.lon.tolist() == [p.longitude_deg for p in points]
        assert first.route.lon[7] == 0.0 and first.route.speed_mps[0] == (speed or 13.9)
        for _ in range(2):
            with pytest.raises(InvalidInputError, match=r"polyline.points\[3\]"):
                convert.plan_request(
                    _request(polyline=bad), config=ServerConfig(), time_limit_s=1.0
                )


def test_polyline_point_limit() -> None:
    points = [pb.LatLon(latitude_deg=42.5, longitude_deg=1.5 + i * 1e-4) for i in range(11)]
    with pytest.raises(InvalidInputError, match="limit of 10") as info:
        convert.plan_request(
            _request(polyline=pb.Polyline(points=points)),
            config=ServerConfig(max_polyline_points=10),
            time_limit_s=1.0,
        )
    assert info.value.field == "polyline.points"


def test_measurements_frame_keeps_unset_values_missing() -> None:
    m = [
        pb.Measurement(
            time=Timestamp(seconds=1737633600),
            position=pb.LatLon(latitude_deg=42.5, longitude_deg=1.5),
            network_id="ad-lte",
            sinr_db=3.5,
        ),
        pb.Measurement(
            time=Timestamp(seconds=1737633601),
            position=pb.LatLon(latitude_deg=42.5, longitude_deg=1.5),
            network_id="ad-lte",
            connected=False,
        ),
    ]
    frame = convert.measurements_frame(m, vehicle_id="car-1")
    assert frame["sinr_db"].iloc[0] == 3.5 and np.isnan(frame["rsrp_dbm"].iloc[0])
    assert frame["connected"].isna().iloc[0] and not bool(frame["connected"].iloc[1])
    assert frame["drive_id"].tolist() == ["car-1", "car-1"]
    assert frame["timestamp"].iloc[0].isoformat() == "2025-01-23T12:00:00+00:00"


def test_every_field_round_trips_through_the_measurement_message(tmp_path: Path) -> None:
    from commap.map.store import FleetStore
    from commap.radio.measurements import read_gnettrack, validate_records
    from tests.support.paths import TEST_DATA

    held = read_gnettrack(TEST_DATA / "measured" / "ucc5g_cork_heldout.zip", network_id="b")
    records = held.iloc[:50].assign(rtt_ms=np.linspace(20.0, 60.0, 50)).reset_index(drop=True)
    records.loc[:2, "connected"] = pd.NA
    messages = []
    row: dict[Any, Any]
    for row in records.to_dict("records"):
        m = pb.Measurement(
            time=convert.timestamp(row["timestamp"].timestamp()),
            position=pb.LatLon(latitude_deg=row["lat"], longitude_deg=row["lon"]),
            network_id=str(row["network_id"]),
            network_mode=str(row["network_mode"]),
            drive_id=str(row["drive_id"]),
            throughput_ul_mbps=float(row["throughput_ul_mbps"]),
            rtt_ms=float(row["rtt_ms"]),
            cell_id=int(row["cell_id"]),
        )
        for name in ("rsrp_dbm", "rsrq_db", "sinr_db", "throughput_dl_mbps"):
            if not np.isnan(row[name]):
                setattr(m, name, float(row[name]))
        if not pd.isna(row["connected"]):
            m.connected = bool(row["connected"])
        messages.append(pb.Measurement.FromString(m.SerializeToString()))  # over the wire
    frame = validate_records(convert.measurements_frame(messages, vehicle_id="car"))
    pd.testing.assert_frame_equal(frame, records)
    fleet = FleetStore(tmp_path)
    fleet.append("cork", frame)
    pd.testing.assert_frame_equal(fleet.read("cork"), records)
    # the older throughput_mbps is read as the downlink rate; one of the two only
    old = pb.Measurement(
        time=convert.timestamp(1.6e9), position=pb.LatLon(latitude_deg=1.0), network_id="b"
    )
    old.throughput_mbps = 12.5
    assert convert.measurements_frame([old], vehicle_id="v")["throughput_dl_mbps"][0] == 12.5
    old.throughput_dl_mbps = 12.5
    with pytest.raises(InvalidInputError, match="not both"):
        convert.measurements_frame([old], vehicle_id="v")


def test_measurement_without_any_value_is_rejected() -> None:
    m = pb.Measurement(
        time=Timestamp(seconds=1),
        position=pb.LatLon(latitude_deg=42.5, longitude_deg=1.5),
        network_id="x",
    )
    with pytest.raises(InvalidInputError) as info:
        convert.measurements_frame([m], vehicle_id="v", first_index=4)
    assert info.value.field == "measurements[4]"


# -- solve pool -----------------------------------------------------------------------------------
def test_pool_refuses_work_beyond_capacity_and_recovers() -> None:
    release = threading.Event()

    async def scenario() -> tuple[int, bool, int]:
        pool = SolvePool(workers=1, queue=1)
        blocked = [asyncio.ensure_future(pool.run(release.wait)) for _ in range(2)]
        await asyncio.sleep(0.05)
        refused = False
        try:
            await pool.run(lambda: 1)
        except ServerOverloadedError:
            refused = True
        release.set()
        await asyncio.gather(*blocked)
        value = await pool.run(lambda: 42)
        pool.shutdown()
        return pool.in_flight, refused, value

    in_flight, refused, value = asyncio.run(scenario())
    assert refused and value == 42 and in_flight == 0


def test_pool_timeout_keeps_the_slot_until_the_thread_ends() -> None:
    release = threading.Event()

    async def scenario() -> tuple[bool, int, int]:
        pool = SolvePool(workers=1, queue=0)
        timed_out = False
        try:
            await pool.run(release.wait, timeout_s=0.05)
        except SolverTimeoutError:
            timed_out = True
        held = pool.in_flight  # the abandoned solve still occupies its worker
        release.set()
        for _ in range(100):
            if pool.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        pool.shutdown()
        return timed_out, held, pool.in_flight

    assert asyncio.run(scenario()) == (True, 1, 0)


def test_protogen_stubs_are_importable_as_package_modules() -> None:
    from commap.v1 import commap_service_pb2_grpc

    assert hasattr(commap_service_pb2_grpc, "CommapServiceStub")
    assert (Path(pb.__file__).parent / "__init__.py").is_file()


# -- access control, malformed requests, live viewer, stale temp parts ------------------------------
TOKEN = "unit-test-token-0123456789"


def test_token_entries_from_the_environment() -> None:
    from server.auth import ADMIN_RPCS, parse_token_entries, rpc_names, token_digest

    a, b, c = parse_token_entries(
        f"a:{TOKEN}, b:{TOKEN}x:PlanRoute+Drive:andorra+cork ,c:{TOKEN}y:*:*", "COMMAP_TOKENS"
    )
    assert a.token_sha256 == token_digest(TOKEN) and TOKEN not in repr(a)
    assert a.rpcs == frozenset(rpc_names()) - ADMIN_RPCS and a.maps is None
    assert b.rpcs == {"PlanRoute", "Drive"} and b.maps == {"andorra", "cork"}
    assert "ReloadMaps" in c.rpcs and c.maps is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nocolon", "expected NAME:TOKEN"),
        (f"bad name:{TOKEN}", "client name"),
        ("a:short", "at least 16 characters"),
        ("a:has space inside token", "bearer token"),
        (f"a:{TOKEN}:Fly", r"unknown RPC\(s\) Fly"),
    ],
)
def test_bad_token_entries_never_echo_the_token(text: str, message: str) -> None:
    from server.auth import parse_token_entries

    with pytest.raises(InvalidInputError, match=message) as info:
        parse_token_entries(text, "COMMAP_TOKENS")
    secret = text.split(":")[1] if ":" in text else text
    assert secret not in str(info.value)


def test_token_file(tmp_path: Path) -> None:
    from server.auth import read_token_file, token_digest

    path = tmp_path / "tokens.toml"
    path.write_text(
        f'[[client]]\nname = "a"\ntoken = "{TOKEN}"\nmaps = ["andorra"]\n'
        f'[[client]]\nname = "b"\ntoken_sha256 = "{token_digest("other-token-123456").upper()}"\n'
        'rpcs = ["GetMap"]\n',
        encoding="utf-8",
    )
    a, b = read_token_file(path)
    assert (a.name, a.maps, b.rpcs) == ("a", {"andorra"}, {"GetMap"})
    assert b.token_sha256 == token_digest("other-token-123456")
    for body, message in (
        ("", "no \\[\\[client\\]\\] tables"),
        (
            f'[[client]]\nname = "a"\ntoken = "{TOKEN}"\ntoken_sha256 = "{"0" * 64}"\n',
            "exactly one",
        ),
        ('[[client]]\nname = "a"\ntoken_sha256 = "xyz"\n', "64 hex digits"),
        (f'[[client]]\nname = "a"\ntoken = "{TOKEN}"\nrole = "root"\n', "unknown key"),
        (f'[[client]]\nname = "a"\ntoken = "{TOKEN}\n', "not valid TOML"),
    ):
        path.write_text(body, encoding="utf-8")
        with pytest.raises(InvalidInputError, match=message) as info:
            read_token_file(path)
        assert TOKEN not in str(info.value)


def test_policy_authenticates_and_refuses() -> None:
    from server.auth import AuthPolicy, UnauthenticatedError, parse_token_entries

    policy = AuthPolicy(parse_token_entries(f"a:{TOKEN},b:{TOKEN}-b", "env"))
    assert policy.authenticate([("authorization", f"Bearer {TOKEN}")]).name == "a"
    assert policy.authenticate([("Authorization", f"bearer  {TOKEN}-b ")]).name == "b"
    for metadata in (
        [],
        [("authorization", f"Bearer {TOKEN}-c")],
        [("authorization", TOKEN)],
        [("authorization", "Bearer ")],
        [("authorization", f"Bearer {TOKEN}"), ("authorization", f"Bearer {TOKEN}")],
    ):
        with pytest.raises(UnauthenticatedError) as info:
            policy.authenticate(metadata)
        assert TOKEN not in str(info.value)
    with pytest.raises(InvalidInputError, match="share one token"):
        AuthPolicy(parse_token_entries(f"a:{TOKEN},b:{TOKEN}", "env"))
    with pytest.raises(InvalidInputError, match="configured twice"):
        AuthPolicy(parse_token_entries(f"a:{TOKEN},a:{TOKEN}-b", "env"))


def test_security_configuration(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x", encoding="ascii")
    key.write_text("x", encoding="ascii")
    config = load_config(
        ["--tls-cert", str(cert), "--tls-key", str(key), "--no-reflection", "--viewer-port", "0"],
        {"COMMAP_TOKENS": f"a:{TOKEN}"},
    )
    assert config.tls and not config.reflection and config.viewer_port == 0
    assert config.auth is not None and [c.name for c in config.auth.clients] == ["a"]
    assert TOKEN not in repr(config)
    assert load_config([], {"COMMAP_REFLECTION": "0"}).reflection is False
    assert load_config([], {}).auth is None and load_config([], {}).viewer_port is None
    env = {"COMMAP_TLS_CERT": str(cert), "COMMAP_TLS_KEY": str(key)}
    assert load_config([], env).tls_key == key
    for argv, field in (
        (["--tls-cert", str(cert)], "tls_key"),
        (["--tls-client-ca", str(cert)], "tls_client_ca"),
        (["--tls-cert", str(cert), "--tls-key", str(tmp_path / "none.pem")], "tls_key"),
        (["--viewer-port", "70000"], "viewer_port"),
    ):
        with pytest.raises(InvalidInputError) as info:
            load_config(argv, {})
        assert info.value.field == field


def test_new_statuses_and_bounded_details() -> None:
    from google.protobuf.message import DecodeError

    from server.auth import PermissionDeniedError, UnauthenticatedError
    from server.interceptors import FIELD_METADATA_KEY

    assert status_for(UnauthenticatedError("no"))[0] is grpc.StatusCode.UNAUTHENTICATED
    assert status_for(PermissionDeniedError("no"))[0] is grpc.StatusCode.PERMISSION_DENIED
    code, message, metadata = status_for(DecodeError("bad"))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and message.startswith("request:")
    assert metadata == ((FIELD_METADATA_KEY, "request"),)
    code, message, metadata = status_for(
        InvalidInputError("unknown", field="weights[ü\x00" + "x" * 500 + "]")
    )
    assert len(message) <= 1000
    value = dict(metadata)[FIELD_METADATA_KEY]
    assert value.isascii() and value.isprintable() and len(value) <= 200
    assert value.startswith("weights[\\xfc\\x00")


def test_malformed_request_marker() -> None:
    from server.interceptors import MalformedRequest, _checked_request, _tolerant

    deserialize = _tolerant(pb.GetMapRequest.FromString)
    assert deserialize is not None
    assert deserialize(pb.GetMapRequest(map_name="a").SerializeToString()).map_name == "a"
    marker = deserialize(b"\xff\xff")
    assert isinstance(marker, MalformedRequest) and marker.type_name == "commap.v1.GetMapRequest"
    from google.protobuf.message import DecodeError

    with pytest.raises(DecodeError):
        _checked_request(marker)

    async def stream() -> list[object]:
        async def items():  # type: ignore[no-untyped-def]
            yield pb.GetMapRequest()
            yield marker

        out = []
        with pytest.raises(DecodeError):
            async for item in _checked_request(items()):
                out.append(item)
        return out

    assert len(asyncio.run(stream())) == 1


def test_stale_temp_parts_of_dead_writers_are_removed(tmp_path: Path) -> None:
    import os
    import subprocess

    from commap.map.store import FleetStore

    finished = subprocess.Popen(["true"])  # a writer that has died: its pid is free
    finished.wait()
    day = tmp_path / "map=andorra" / "network=ad-lte" / "day=2025-01-23"
    day.mkdir(parents=True)
    stale = day / f".part-x.parquet.tmp-{finished.pid}-abcdef12"
    alive = day / f".part-y.parquet.tmp-{os.getpid()}-abcdef12"
    part = day / "part-z.parquet"
    for path in (stale, alive, part):
        path.write_text("x", encoding="utf-8")
    assert FleetStore(tmp_path).remove_stale_temp_parts("andorra") == 1
    assert not stale.exists() and alive.exists() and part.exists()


def test_temp_parts_of_killed_writers_not_yet_reaped_are_removed(tmp_path: Path) -> None:
    import subprocess
    import time

    from commap.map.store import FleetStore

    # a writer killed with its server lingers as a zombie until its new parent reaps it
    killed = subprocess.Popen(["sleep", "60"])
    killed.kill()
    stat = Path(f"/proc/{killed.pid}/stat")
    while stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z":  # dead, not reaped
        time.sleep(0.01)
    day = tmp_path / "map=andorra" / "network=ad-lte" / "day=2025-01-23"
    day.mkdir(parents=True)
    stale = day / f".part-x.parquet.tmp-{killed.pid}-abcdef12"
    stale.write_text("x", encoding="utf-8")
    try:
        assert FleetStore(tmp_path).remove_stale_temp_parts("andorra") == 1
    finally:
        killed.wait()
    assert not stale.exists()


def test_live_view_survives_viewer_failures(caplog: pytest.LogCaptureFixture) -> None:
    from server.live import LiveView

    class Broken:
        class cmap:  # noqa: N801 (stands for a map object)
            name = "andorra"

        url = "http://127.0.0.1:1/"

        def set_plan(self, plan: object) -> None:
            raise RuntimeError("viewer down")

        def update_vehicle(self, vehicle_id: str, **kw: object) -> None:
            raise RuntimeError("viewer down")

        def remove_vehicle(self, vehicle_id: str) -> None:
            raise RuntimeError("viewer down")

        def stop(self) -> None:
            raise RuntimeError("viewer down")

    live = LiveView(Broken())  # type: ignore[arg-type]
    key = live.acquire("")
    live.plan(None)  # type: ignore[arg-type]
    live.vehicle(key, lon=1.5, lat=42.5, t_s=0.0, network_id="ad-lte")
    live.release(key)
    live.stop()
    assert caplog.text.count("live viewer:") == 4 and live.map_name == "andorra"


# -- found by fuzzing (bench_reliability): each was an INTERNAL error or a poisoned store --------
def test_seed_must_fit_the_solver() -> None:
    config = ServerConfig(port=0)
    request = pb.PlanRouteRequest(
        endpoints=pb.Endpoints(
            origin=pb.LatLon(latitude_deg=42.5, longitude_deg=1.52),
            destination=pb.LatLon(latitude_deg=42.54, longitude_deg=1.73),
        ),
    )
    for seed in (-(2**31), 0, 2**31 - 1):
        request.seed = seed
        assert convert.plan_request(request, config=config, time_limit_s=1.0).seed == seed
    for seed in (2**31, -(2**31) - 1, -4331230718):
        request.seed = seed
        with pytest.raises(InvalidInputError) as info:
            convert.plan_request(request, config=config, time_limit_s=1.0)
        assert info.value.field == "seed"


def test_measurement_times_must_fit_the_records() -> None:
    def measurement(seconds: int) -> pb.Measurement:
        return pb.Measurement(
            time=Timestamp(seconds=seconds),
            position=pb.LatLon(latitude_deg=42.5, longitude_deg=1.52),
            network_id="ad-lte",
            sinr_db=1.0,
        )

    frame = convert.measurements_frame([measurement(9_000_000_000)], vehicle_id="v")
    assert frame["timestamp"].iloc[0].year == 2255
    for seconds in (58_270_000_000, -10_000_000_000):  # years 3816 and 1653
        with pytest.raises(InvalidInputError) as info:
            convert.measurements_frame([measurement(seconds)], vehicle_id="v")
        assert info.value.field == "measurements[0].time"


@pytest.mark.parametrize("bad", ["a\rb", "a\nb", "\x00", "\x1b[31m", "a\u2028b", "x" * 129])
def test_vehicle_ids_that_would_break_records_or_logs(bad: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        convert.vehicle_id(bad, field="vehicle_id")
    assert info.value.field == "vehicle_id"
    assert convert.vehicle_id("Fahrzeug-Ü 7 (test rig)", field="vehicle_id")


def _target(andorra: CommMap, directory: Path) -> Any:
    from server.ingest import UploadTarget

    return UploadTarget("andorra", str(directory), tuple(andorra.catalogue.ids), andorra.bbox)


def _records(drive_id: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime([1737633600.0, 1737633601.0], unit="s", utc=True),
            "lat": [42.5063, 42.5063],
            "lon": [1.5218, 1.5219],
            "network_id": ["ad-lte", "ad-lte"],
            "sinr_db": [3.0, 4.0],
            "drive_id": pd.Series([drive_id, drive_id], dtype="string"),
        }
    )


def test_text_with_line_breaks_is_stored_and_reads_back(andorra: CommMap, tmp_path: Path) -> None:
    from commap.map.store import FleetStore
    from server.ingest import BatchWriter

    stored = BatchWriter().store(_target(andorra, tmp_path), _records("a\rb\nc"), "")
    assert stored.record_count == 2 and not stored.already_stored
    back = FleetStore(tmp_path).read_batch("andorra", stored.batch_id)
    assert list(back["drive_id"]) == ["a\rb\nc", "a\rb\nc"]


def test_later_batches_are_read_incrementally(
    andorra: CommMap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from commap.map.store import FleetStore, Part
    from server.maps import FusionJob, fleet_layers

    fleet = FleetStore(tmp_path)
    first = fleet.append("andorra", _records("one")).batch_id
    job = FusionJob("andorra", str(tmp_path), tuple(andorra.catalogue.ids))
    fused = fleet_layers(job)  # what the fusion process does at start
    assert fused.last_batch_id == first and fused.record_count == 2
    assert fused.layers is not None and list(fused.layers) == ["ad-lte"]
    second = fleet.append("andorra", _records("two")).batch_id
    asked: list[str] = []
    read_parts = FleetStore.read_parts

    def spy(self: FleetStore, parts: list[Part], **kwargs: Any) -> pd.DataFrame:
        asked.extend(part.batch_id for part in parts)
        return read_parts(self, parts, **kwargs)

    monkeypatch.setattr(FleetStore, "read", None)  # never every stored record again
    monkeypatch.setattr(FleetStore, "read_parts", spy)
    fused = fleet_layers(FusionJob("andorra", str(tmp_path), job.known_networks, since=first))
    assert asked == [second]  # only the batch stored since was read
    assert fused.last_batch_id == second and fused.record_count == 4
    assert fused.layers is not None and fused.layers["ad-lte"].cell_count >= 1
    # nothing stored since the newest batch served: nothing to fuse again
    again = fleet_layers(FusionJob("andorra", str(tmp_path), job.known_networks, since=second))
    assert again.layers is None and again.record_count == 4


@pytest.mark.distributed
def test_a_refresh_on_a_dask_cluster_serves_the_layers_of_one_in_process(
    andorra: CommMap, tmp_path: Path
) -> None:
    from dask.distributed import LocalCluster

    from commap.map.store import FleetStore
    from server.maps import FusionJob, close_fleet_runners, fleet_layers

    fleet = FleetStore(tmp_path)
    for drive in ("one", "two"):
        fleet.append("andorra", _records(drive).assign(sinr_db=[3.0, 9.0]))
    known = tuple(andorra.catalogue.ids)
    local = fleet_layers(FusionJob("andorra", str(tmp_path), known))
    config = load_config(["--fleet-executor", "dask"], {})
    assert config.fleet_executor == "dask"
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        # another map name: a fusion state of its own, all parts read on the cluster
        other = FleetStore(tmp_path / "other")
        for drive in ("one", "two"):
            other.append("andorra", _records(drive).assign(sinr_db=[3.0, 9.0]))
        job = FusionJob(
            "andorra",
            str(tmp_path / "other"),
            known,
            executor=config.fleet_executor,
            scheduler=cluster.scheduler_address,
        )
        on_dask = fleet_layers(job)
        close_fleet_runners()
    assert local.layers is not None and on_dask.layers is not None
    assert on_dask.record_count == local.record_count == 4
    pd.testing.assert_frame_equal(on_dask.layers["ad-lte"].table, local.layers["ad-lte"].table)


def test_stored_batches_count_at_once_and_once_per_key(andorra: CommMap, tmp_path: Path) -> None:
    from commap.map.store import FleetStore
    from server.ingest import StoredBatch
    from server.maps import ServedMap

    store = MapStore(ServerConfig(port=0, fleet_refresh_interval_s=3600.0))
    served = ServedMap(base=andorra, store=FleetStore(tmp_path), current=andorra, fused_count=10)
    try:
        first = store.record_stored(served, StoredBatch("b1", 2))
        assert first.stored_count == 12  # counted at once, fused in by the next refresh
        again = store.record_stored(served, StoredBatch("b1", 2, already_stored=True))
        assert again.already_stored and again.stored_count == 12
    finally:
        store.close()


def test_a_batch_fused_before_its_upload_is_counted_is_counted_once(
    andorra: CommMap, tmp_path: Path
) -> None:
    """A refresh may read a batch the upload process stored before the server counts it."""
    from commap.map.store import FleetStore
    from server.ingest import StoredBatch
    from server.maps import FleetLayers, ServedMap

    store = MapStore(ServerConfig(port=0, fleet_refresh_interval_s=3600.0))
    served = ServedMap(base=andorra, store=FleetStore(tmp_path), current=andorra)
    try:
        assert store.record_stored(served, StoredBatch("b1", 3)).stored_count == 3
        # a refresh fuses b1 and b2 (just stored, not yet counted)
        assert store._swap(served, andorra, andorra, FleetLayers(None, "b2", 5))
        assert served.measurement_count == 5
        assert store.record_stored(served, StoredBatch("b2", 2)).stored_count == 5
        assert store.record_stored(served, StoredBatch("b3", 4)).stored_count == 9
        # a refresh that read up to b2 only leaves b3 counted as unfused
        assert store._swap(served, andorra, andorra, FleetLayers(None, "b2", 5))
        assert served.measurement_count == 9
    finally:
        store.close()


def test_a_retried_batch_key_is_acknowledged_without_storing_again(
    andorra: CommMap, tmp_path: Path
) -> None:
    from commap.map.store import FleetStore
    from server.ingest import BatchWriter

    target = _target(andorra, tmp_path)
    first = BatchWriter().store(target, _records("car"), "car/1")
    writer = BatchWriter()  # a new upload process: the key index is read from the parts
    again = writer.store(target, _records("car"), "car/1")
    assert again.already_stored and again.batch_id == first.batch_id
    assert writer.store(target, _records("car"), "car/1").already_stored
    assert FleetStore(tmp_path).batch_for_key("andorra", "car/1") == first.batch_id
    assert len(FleetStore(tmp_path).read("andorra")) == 2


def test_a_new_writer_removes_what_a_killed_one_left_half_written(
    andorra: CommMap, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from commap.map.store import FleetStore
    from server.ingest import BatchWriter

    target = _target(andorra, tmp_path)
    first = BatchWriter().store(target, _records("before"), "")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    part_dir = Path(FleetStore(tmp_path).parts("andorra")[0].path).parent
    assert first.record_count == 2
    half = part_dir / f".part-x-1of1.parquet.tmp-{dead}-0badc0de"
    half.write_bytes(b"PAR1 half")
    BatchWriter().store(target, _records("after"), "")  # the next upload process
    assert not half.exists()
    assert len(FleetStore(tmp_path).read("andorra")) == 4


def test_a_batch_that_does_not_read_back_is_not_acknowledged(
    andorra: CommMap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from commap.map.store import FleetStore
    from server.ingest import BatchWriter

    writer, target = BatchWriter(), _target(andorra, tmp_path)
    stored = writer.store(target, _records("fine"), "")
    assert [p.batch_id for p in FleetStore(tmp_path).parts("andorra")] == [stored.batch_id]

    def truncated(self: FleetStore, batch: object) -> pd.DataFrame:
        return _records("half").iloc[:1]  # as if a record had been lost on the way to the disk

    monkeypatch.setattr(FleetStore, "read_stored", truncated)
    with pytest.raises(InvalidInputError, match="nothing stored"):
        writer.store(target, _records("lost"), "")
    monkeypatch.undo()
    assert [p.batch_id for p in FleetStore(tmp_path).parts("andorra")] == [stored.batch_id]


def test_unreadable_parts_are_set_aside_and_the_rest_served(
    andorra: CommMap, tmp_path: Path
) -> None:
    from commap.map.store import FleetStore
    from server.maps import FusionJob, fleet_layers

    fleet = FleetStore(tmp_path)
    good = fleet.append("andorra", _records("good"))
    bad = fleet.append("andorra", _records("torn"))
    Path(bad.parts[0]).write_bytes(b"PAR1 torn on the way to the disk")
    other = fleet.append("andorra", _records("gone-network").assign(network_id="xx-5g"))
    fused = fleet_layers(FusionJob("andorra", str(tmp_path), tuple(andorra.catalogue.ids)))
    assert fused.record_count == 2 and fused.layers is not None and list(fused.layers) == ["ad-lte"]
    assert fused.last_batch_id == other.batch_id
    assert not Path(bad.parts[0]).exists() and Path(bad.parts[0] + ".unreadable").is_file()
    assert Path(good.parts[0]).is_file() and Path(other.parts[0]).is_file()  # kept


CORK_ROUTE = TEST_DATA / "measured" / "cork_heldout_route"


@pytest.mark.parametrize(("suffix", "fmt"), [(".gpx", "gpx"), (".geojson", ""), (".polyline", "")])
def test_plan_request_from_a_route_file(suffix: str, fmt: str) -> None:
    content = CORK_ROUTE.with_suffix(suffix).read_bytes()
    request = _request(route_file=pb.RouteFile(format=fmt, content=content))
    plan = convert.plan_request(request, config=ServerConfig(), time_limit_s=1.0)
    assert plan.route is not None and plan.route.lon.size == 314
    assert (plan.route.t_s is None) == (suffix == ".polyline")


@pytest.mark.parametrize(
    ("route_file", "field", "match"),
    [
        (pb.RouteFile(format="kml", content=b"<kml/>"), "route_file.format", "not one of"),
        (pb.RouteFile(content=b"<gpx><trk>"), "route_file.content", "invalid GPX"),
        (pb.RouteFile(format="polyline", content=b"_p~iF"), "route_file.content", "truncated"),
        (pb.RouteFile(content=b"x" * 200), "route_file.content", "exceed the limit"),
    ],
)
def test_bad_route_files_name_their_field(route_file: pb.RouteFile, field: str, match: str) -> None:
    config = ServerConfig(max_polyline_points=1)
    with pytest.raises(InvalidInputError, match=match) as raised:
        convert.plan_request(_request(route_file=route_file), config=config, time_limit_s=1.0)
    assert raised.value.field == field


def test_plan_request_may_allow_stale_elements() -> None:
    config = ServerConfig()
    plain = convert.plan_request(_request(endpoints=_ends()), config=config, time_limit_s=1.0)
    allowed = convert.plan_request(
        _request(endpoints=_ends(), allow_stale_elements=True), config=config, time_limit_s=1.0
    )
    assert not plain.allow_stale_elements and allowed.allow_stale_elements


# -- plan messages in bulk ----------------------------------------------------------------------
@pytest.mark.parametrize("app", ["telemetry", "teleoperation"])
def test_plan_message_equals_the_message_built_field_by_field(andorra: CommMap, app: str) -> None:
    from commap.service.planning import PlanRequest, plan_route

    result = plan_route(
        andorra,
        PlanRequest(origin=(1.5218, 42.5063), destination=(1.7330, 42.5430), app=app),
    )
    plan, corridor, route = result.plan, result.corridor, result.route
    message = convert.plan_message(
        plan, map_name="andorra", time_limit_s=5.0, route=route, corridor=corridor, segment_m=50.0
    )
    expected = [
        pb.PlanSegment(
            position=pb.LatLon(latitude_deg=plan.lat[i], longitude_deg=plan.lon[i]),
            distance_m=plan.distance_m[i],
            length_m=plan.length_m[i],
            eta_s=plan.eta_s[i],
            duration_s=plan.duration_s[i],
            network_id=plan.segment_networks[i],
            provenance=convert.PROVENANCE_TO_PB[int(plan.provenance[i])],
            outage_probability=plan.outage_risk[i],
            in_tunnel=bool(corridor.in_tunnel[i]),
        )
        for i in range(len(plan))
    ]
    assert list(message.segments) == expected
    assert sum(s.in_tunnel for s in message.segments) > 0
    assert list(message.route.points) == [
        pb.LatLon(latitude_deg=y, longitude_deg=x)
        for x, y in zip(route.lon, route.lat, strict=True)
    ]
    # what goes on the wire parses back to the same message
    assert pb.Plan.FromString(message.SerializeToString()) == message
