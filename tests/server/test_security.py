"""Access control of the real server: TLS, mutual TLS, bearer tokens, reflection off, no secrets
in logs. Certificates are made for the test with the ``openssl`` command line (the
``cryptography`` package is not installed in the project environment)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.support.paths import REPO
from tests.support.server_harness import ServerProcess, ensure_stubs, start_server

ensure_stubs()

from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from commap.v1 import commap_service_pb2 as pb  # noqa: E402
from commap.v1 import commap_service_pb2_grpc as pb_grpc  # noqa: E402
from server.auth import token_digest  # noqa: E402

pytestmark = pytest.mark.integration

T0 = 1737633600
# distinct, greppable secrets (token68 characters, >= 16 long)
RIG_TOKEN = "rig-token-7Q2vX9LmP4sT8wZ1"  # env: PlanRoute, GetMap, ListMaps, QueryCoverage
ADMIN_TOKEN = "adm-token-K3nB6yR0cF5hJ2uE"  # env: every RPC, every map
CORK_TOKEN = "cork-token-W8aD1gN7qV4mS6tY"  # file (plain): every non-admin RPC, map cork only
HASHED_TOKEN = "hash-token-P9eL3zC2xU7oI5rA"  # file (sha256 only): default permissions
WRONG_TOKEN = "not-a-token-Z1xY2wV3uT4sR5qP"
SECRETS = (RIG_TOKEN, ADMIN_TOKEN, CORK_TOKEN, HASHED_TOKEN, WRONG_TOKEN)


# -- certificates -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    """A test CA with a server and a client certificate, and a rogue CA with a client."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_client_cert: Path
    rogue_client_key: Path

    def credentials(self, *, client: bool = False, rogue: bool = False) -> grpc.ChannelCredentials:
        """Client credentials trusting the test CA (with a client certificate if asked)."""
        chain = key = None
        if client or rogue:
            chain = (self.rogue_client_cert if rogue else self.client_cert).read_bytes()
            key = (self.rogue_client_key if rogue else self.client_key).read_bytes()
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(), private_key=key, certificate_chain=chain
        )


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
        "-subj", f"/CN=commap test {name}", cwd=directory,
    )  # fmt: skip


def _leaf(directory: Path, name: str, ca: str, extensions: str) -> None:
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory,
    )  # fmt: skip
    (directory / f"{name}.ext").write_text(extensions + "\n", encoding="ascii")
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _ca(d, "rogue-ca")
    _leaf(
        d, "server", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
    )
    _leaf(d, "client", "ca", "extendedKeyUsage=clientAuth")
    _leaf(d, "rogue-client", "rogue-ca", "extendedKeyUsage=clientAuth")
    return Pki(
        ca=d / "ca.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        rogue_client_cert=d / "rogue-client.pem",
        rogue_client_key=d / "rogue-client.key",
    )


# -- servers ------------------------------------------------------------------------------------
def _token_file(directory: Path) -> Path:
    path = directory / "tokens.toml"
    path.write_text(
        f"""
[[client]]
name = "cork-rig"
token = "{CORK_TOKEN}"
maps = ["cork"]

[[client]]
name = "hashed"
token_sha256 = "{token_digest(HASHED_TOKEN)}"
""",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def _env_tokens() -> str:
    return (
        f"rig-1:{RIG_TOKEN}:PlanRoute+GetMap+ListMaps+QueryCoverage:andorra,ops:{ADMIN_TOKEN}:*:*"
    )


@pytest.fixture(scope="module")
def tls_server(
    andorra_dir: Path, tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[ServerProcess]:
    """TLS, tokens from the environment and a file, reflection off, DEBUG logging."""
    work = tmp_path_factory.mktemp("tls-server")
    server = start_server(
        andorra_dir,
        work,
        extra_args=(
            "--tls-cert",
            str(pki.server_cert),
            "--tls-key",
            str(pki.server_key),
            "--tokens-file",
            str(_token_file(work)),
            "--no-reflection",
            "--log-level",
            "DEBUG",
        ),
        env={"COMMAP_TOKENS": _env_tokens()},
        credentials=pki.credentials(),
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls_server(
    andorra_dir: Path, tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[ServerProcess]:
    """Mutual TLS, tokens, reflection on."""
    server = start_server(
        andorra_dir,
        tmp_path_factory.mktemp("mtls-server"),
        extra_args=(
            "--tls-cert",
            str(pki.server_cert),
            "--tls-key",
            str(pki.server_key),
            "--tls-client-ca",
            str(pki.ca),
        ),
        env={"COMMAP_TOKENS": _env_tokens()},
        credentials=pki.credentials(client=True),
    )
    yield server
    server.stop()


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _code(call: object, *args: object, **kwargs: object) -> grpc.StatusCode:
    try:
        call(*args, **kwargs)  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _plan_request(map_name: str = "") -> pb.PlanRouteRequest:
    return pb.PlanRouteRequest(
        map_name=map_name,
        endpoints=pb.Endpoints(
            origin=pb.LatLon(latitude_deg=42.5063, longitude_deg=1.5218),
            destination=pb.LatLon(latitude_deg=42.5100, longitude_deg=1.5600),
        ),
        departure_time=Timestamp(seconds=T0),
        omit_segments=True,
    )


# -- TLS ----------------------------------------------------------------------------------------
def test_tls_server_answers_tls_clients_only(tls_server: ServerProcess) -> None:
    with tls_server.channel() as channel:
        stub = pb_grpc.CommapServiceStub(channel)
        maps = stub.ListMaps(pb.ListMapsRequest(), timeout=10, metadata=_bearer(ADMIN_TOKEN))
        assert [m.map_name for m in maps.maps] == ["andorra"]
    with grpc.insecure_channel(tls_server.target) as plain:
        stub = pb_grpc.CommapServiceStub(plain)
        code = _code(stub.ListMaps, pb.ListMapsRequest(), timeout=5, metadata=_bearer(ADMIN_TOKEN))
        assert code is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_needs_a_client_certificate_from_the_ca(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    with mtls_server.channel() as channel:  # client certificate signed by the CA
        stub = pb_grpc.CommapServiceStub(channel)
        assert stub.GetMap(pb.GetMapRequest(), timeout=10, metadata=_bearer(RIG_TOKEN)).map.networks
    options = [("grpc.ssl_target_name_override", "localhost")]
    for credentials in (pki.credentials(), pki.credentials(rogue=True)):
        with grpc.secure_channel(mtls_server.target, credentials, options=options) as channel:
            stub = pb_grpc.CommapServiceStub(channel)
            code = _code(stub.GetMap, pb.GetMapRequest(), timeout=5, metadata=_bearer(RIG_TOKEN))
            assert code is grpc.StatusCode.UNAVAILABLE


# -- tokens -------------------------------------------------------------------------------------
def test_missing_or_bad_token_is_unauthenticated(tls_server: ServerProcess) -> None:
    with tls_server.channel() as channel:
        stub = pb_grpc.CommapServiceStub(channel)
        for metadata in (
            (),
            _bearer(WRONG_TOKEN),
            (("authorization", WRONG_TOKEN),),  # no scheme
            (("authorization", f"Basic {RIG_TOKEN}"),),
        ):
            with pytest.raises(grpc.RpcError) as info:
                stub.GetMap(pb.GetMapRequest(), timeout=10, metadata=metadata)
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert WRONG_TOKEN not in (info.value.details() or "")
        # streams too: rejected before the first message is read
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Drive(iter(()), timeout=10, metadata=_bearer(WRONG_TOKEN)))
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_tokens_from_env_and_file_with_their_permissions(tls_server: ServerProcess) -> None:
    with tls_server.channel() as channel:
        stub = pb_grpc.CommapServiceStub(channel)
        # rig-1: four RPCs, map andorra
        assert stub.PlanRoute(_plan_request(), timeout=60, metadata=_bearer(RIG_TOKEN)).plan
        denied = grpc.StatusCode.PERMISSION_DENIED
        drive = stub.Drive(iter(()), timeout=10, metadata=_bearer(RIG_TOKEN))
        assert _code(lambda: list(drive)) is denied
        # the file's plain-token client: every non-admin RPC, only map cork (not even listed)
        cork = _bearer(CORK_TOKEN)
        assert stub.ListMaps(pb.ListMapsRequest(), timeout=10, metadata=cork).maps == []
        with pytest.raises(grpc.RpcError) as info:
            stub.PlanRoute(_plan_request("andorra"), timeout=10, metadata=cork)
        assert info.value.code() is denied and "cork-rig" in (info.value.details() or "")
        # a map the client may use but that is not served: NOT_FOUND; others: PERMISSION_DENIED
        assert _code(stub.GetMap, pb.GetMapRequest(map_name="cork"), timeout=10, metadata=cork) is (
            grpc.StatusCode.NOT_FOUND
        )
        rig = _bearer(RIG_TOKEN)
        assert _code(stub.GetMap, pb.GetMapRequest(map_name="cork"), timeout=10, metadata=rig) is (
            denied
        )
        # the file's hashed-token client: default permissions (every RPC but ReloadMaps)
        hashed = _bearer(HASHED_TOKEN)
        assert stub.GetMap(pb.GetMapRequest(map_name="andorra"), timeout=10, metadata=hashed)
        assert _code(stub.ReloadMaps, pb.ReloadMapsRequest(), timeout=30, metadata=hashed) is denied
        # the admin ("*"): ReloadMaps too
        reload = stub.ReloadMaps(pb.ReloadMapsRequest(), timeout=60, metadata=_bearer(ADMIN_TOKEN))
        assert [r.outcome for r in reload.maps] == [pb.RELOAD_OUTCOME_UNCHANGED]


def test_python_client_with_tls_and_token(tls_server: ServerProcess, pki: Pki) -> None:
    from commap.errors import CommapError
    from commap.service.planning import PlanRequest
    from server.client import plan_remote

    request = PlanRequest(origin=(1.5218, 42.5063), destination=(1.5600, 42.5100))
    target = tls_server.target.replace("127.0.0.1", "localhost")
    remote = plan_remote(target, "", request, credentials=pki.credentials(), token=RIG_TOKEN)
    assert len(remote.plan) > 50
    with pytest.raises(CommapError, match="UNAUTHENTICATED"):
        plan_remote(target, "", request, credentials=pki.credentials())


def test_health_needs_no_token_and_reflection_can_be_off(
    tls_server: ServerProcess, mtls_server: ServerProcess
) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with tls_server.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        code = _code(
            lambda: list(
                stub.ServerReflectionInfo(iter([request]), timeout=5, metadata=_bearer(ADMIN_TOKEN))
            )
        )
        assert code is grpc.StatusCode.UNIMPLEMENTED  # --no-reflection
    with mtls_server.channel() as channel:  # reflection on: needs a token like any RPC
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        code = _code(lambda: list(stub.ServerReflectionInfo(iter([request]), timeout=5)))
        assert code is grpc.StatusCode.UNAUTHENTICATED
        answers = list(
            stub.ServerReflectionInfo(iter([request]), timeout=5, metadata=_bearer(RIG_TOKEN))
        )
        names = {s.name for s in answers[0].list_services_response.service}
        assert "commap.v1.CommapService" in names


def test_secrets_never_reach_the_log(tls_server: ServerProcess, pki: Pki) -> None:
    # run after the other tests of this module (the log holds their calls); make sure there
    # were calls with every secret, good and bad
    with tls_server.channel() as channel:
        stub = pb_grpc.CommapServiceStub(channel)
        for token in SECRETS:
            _code(stub.GetMap, pb.GetMapRequest(map_name="x"), timeout=10, metadata=_bearer(token))
    text = tls_server.log_text()
    assert "status=UNAUTHENTICATED" in text and "status=PERMISSION_DENIED" in text
    assert "bearer-token authentication on: clients rig-1, ops, cork-rig, hashed" in text
    for secret in SECRETS:
        assert secret not in text
        assert token_digest(secret) not in text
    key_body = [
        line
        for line in pki.server_key.read_text().splitlines()
        if line and not line.startswith("-----")
    ]
    assert key_body and not any(line in text for line in key_body)


# -- configuration errors name the problem, never the secret ------------------------------------
def _run_server(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "server", "--port", "0", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_bad_token_configuration_is_refused_without_echoing_the_token(tmp_path: Path) -> None:
    from commap.errors import InvalidInputError
    from server.config import load_config

    short = "tiny-Secret9"
    run = _run_server(env={"COMMAP_TOKENS": f"rig:{short}"})  # the real process: exit 2
    assert run.returncode == 2 and "at least 16 characters" in run.stderr
    assert short not in run.stderr + run.stdout
    bad_toml = tmp_path / "tokens.toml"
    bad_toml.write_text(f'[[client]]\nname = "a"\ntoken = "{RIG_TOKEN}\n', encoding="utf-8")
    for argv, env, message in (
        (["--tokens-file", str(bad_toml)], {}, "not valid TOML"),
        ([], {"COMMAP_TOKENS": f"rig:{RIG_TOKEN}:Teleport"}, r"unknown RPC\(s\) Teleport"),
        ([], {"COMMAP_TOKENS": f"a:{RIG_TOKEN},b:{RIG_TOKEN}"}, "share one token"),
    ):
        with pytest.raises(InvalidInputError, match=message) as info:
            load_config(argv, env)
        assert RIG_TOKEN not in str(info.value)


def test_bad_tls_files_are_refused_without_echoing_the_key(tmp_path: Path, pki: Pki) -> None:
    from commap.errors import InvalidInputError
    from server.app import server_credentials
    from server.config import ServerConfig

    with pytest.raises(InvalidInputError, match="tls_key"):
        ServerConfig(tls_cert=pki.server_cert)
    not_pem = tmp_path / "key.pem"
    not_pem.write_text("secret-key-material-1234\n", encoding="ascii")
    with pytest.raises(InvalidInputError, match="no PEM PRIVATE KEY") as info:
        server_credentials(ServerConfig(tls_cert=pki.server_cert, tls_key=not_pem))
    assert "secret-key-material" not in str(info.value)
    with pytest.raises(InvalidInputError, match="no PEM CERTIFICATE"):
        server_credentials(ServerConfig(tls_cert=not_pem, tls_key=pki.server_key))
    assert server_credentials(ServerConfig(tls_cert=pki.server_cert, tls_key=pki.server_key))


def test_tls_key_of_another_certificate_is_named_as_such(pki: Pki) -> None:
    run = _run_server("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.client_key))
    assert run.returncode == 1, run.stderr
    assert f"{pki.client_key} is not the private key of the certificate in {pki.server_cert}" in (
        run.stderr
    )
    assert "Failed to bind" not in run.stderr and "Traceback" not in run.stderr


# -- who may reach the server, and reload it ------------------------------------------------------
def test_a_non_loopback_host_without_tokens_needs_insecure() -> None:
    from commap.errors import InvalidInputError
    from server.config import load_config

    run = _run_server("--host", "0.0.0.0")
    assert run.returncode == 2 and "pass --insecure" in run.stderr, run.stderr
    assert load_config(["--host", "0.0.0.0", "--insecure"], {}).insecure
    assert load_config(["--host", "0.0.0.0"], {"COMMAP_INSECURE": "1"}).insecure
    assert load_config(["--host", "0.0.0.0"], {"COMMAP_TOKENS": f"rig:{RIG_TOKEN}"}).auth
    assert not load_config(["--host", "localhost"], {}).insecure  # loopback: nothing to allow
    with pytest.raises(InvalidInputError, match=r"host 192\.0\.2\.7 is reachable"):
        load_config(["--host", "192.0.2.7"], {})


def _own_address() -> str:
    """A non-loopback IPv4 address of this machine (the test is skipped without one)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            address = str(probe.getsockname()[0])
        except OSError:
            address = ""
    if not address or address.startswith("127.") or address == "0.0.0.0":
        pytest.skip("no non-loopback IPv4 address")
    return address


def test_without_tokens_only_loopback_callers_may_reload(andorra_dir: Path, tmp_path: Path) -> None:
    address = _own_address()
    server = start_server(andorra_dir, tmp_path, extra_args=("--host", "0.0.0.0", "--insecure"))
    port = server.target.rsplit(":", 1)[1]
    request = pb.ReloadMapsRequest(map_names=["andorra"])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.CommapServiceStub(channel)
            assert stub.ReloadMaps(request, timeout=60).maps[0].map_name == "andorra"
        with grpc.insecure_channel(f"{address}:{port}") as channel:
            stub = pb_grpc.CommapServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.ReloadMaps(request, timeout=60)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "loopback" in str(info.value.details())
            assert stub.GetMap(pb.GetMapRequest(), timeout=10).map.map_name == "andorra"
    finally:
        server.stop()


def test_map_permission_is_checked_before_the_stream_is_read(tls_server: ServerProcess) -> None:
    """A client that may not use the map is refused at the first message, not after the
    whole upload (the rest of this stream never comes: the refusal cannot wait for it)."""
    import threading
    import time

    first = pb.ReportMeasurementsRequest(
        map_name="andorra",
        vehicle_id="cork-rig-van",
        measurements=[
            pb.Measurement(
                time=Timestamp(seconds=T0),
                position=pb.LatLon(latitude_deg=42.5063, longitude_deg=1.5218),
                network_id="ad-lte",
                sinr_db=5.0,
            )
        ],
    )
    release = threading.Event()

    def stream() -> Iterator[pb.ReportMeasurementsRequest]:
        yield first
        release.wait(60)  # a long upload still on its way

    with tls_server.channel() as channel:
        stub = pb_grpc.CommapServiceStub(channel)
        began = time.monotonic()
        try:
            with pytest.raises(grpc.RpcError) as info:
                stub.ReportMeasurements(stream(), timeout=30, metadata=_bearer(CORK_TOKEN))
        finally:
            release.set()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "may not use map 'andorra'" in str(info.value.details())
    assert time.monotonic() - began < 10
