"""service/security.py over real loopback channels: TLS and mutual TLS on the gateway's
port (certificates re-read when they change), TLS to Triton, bearer-token and client-
certificate authorization per RPC, the health-only plaintext port, reflection off by
default, and the CLI's one-line refusals. Certificates are made here, thrown away after."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.gateway_fakes import FakeBackend, FakeNetworks
from support.gateway_harness import running_gateway
from support.pki import CA

from stylegate.ops.triton_local import free_port
from stylegate.service import security
from stylegate.service.client import StylegateClient

TOKEN_ALICE = "alice-7f3c9a1e5b2d4c6e8f0a"
TOKEN_BATCH = "batch-0d9e8c7b6a5f4e3d2c1b"
TOKEN_OPS = "ops-1a2b3c4d5e6f7a8b9c0d"
STYLEGATE = [sys.executable, "-c", "from stylegate.cli.main import main; main()"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    ca, other = CA(root, "ca"), CA(root, "other-ca")
    return {
        "root": root,
        "ca": ca,
        "other": other,
        "server": ca.issue("localhost", server=True),
        "alice": ca.issue("alice", server=False),
        "mallory": ca.issue("mallory", server=False),
        "stranger": other.issue("alice", server=False),  # the right name, the wrong CA
    }


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    nets = FakeNetworks()
    return nets, nets.write(tmp_path_factory.mktemp("repo"))


def _gateway(repository, **settings):
    nets, info = repository
    return running_gateway(info, FakeBackend(nets), **settings)


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


def _error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


def _health(address: str, credentials=None) -> str:
    channel = (
        grpc.secure_channel(address, credentials)
        if credentials is not None
        else grpc.insecure_channel(address)
    )
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


# --- TLS on the gateway's port ------------------------------------------------------------


def test_tls_port_serves_tls_only(repository, pki):
    cert, key = pki["server"]
    with _gateway(repository, tls_cert=cert, tls_key=key) as gw:
        with gw.client(tls_ca=pki["ca"].path, timeout=5) as c:
            assert [m.name for m in c.list_models().models]
            assert len(c.generate([1])) == 1
        with gw.client(timeout=3) as plain:  # plaintext to a TLS port: no connection
            assert _code(plain.list_models) == grpc.StatusCode.UNAVAILABLE
        with gw.client(tls_ca=pki["other"].path, timeout=3) as wrong:  # untrusted server cert
            assert _code(wrong.list_models) == grpc.StatusCode.UNAVAILABLE
        # health needs no credentials beyond TLS itself
        assert _health(gw.address, grpc.ssl_channel_credentials(Path(pki["ca"].path).read_bytes()))


def test_mutual_tls_needs_a_client_certificate_of_the_ca(repository, pki):
    cert, key = pki["server"]
    with _gateway(repository, tls_cert=cert, tls_key=key, tls_client_ca=pki["ca"].path) as gw:
        ca = pki["ca"].path
        with gw.client(tls_ca=ca, timeout=3) as anonymous:
            assert _code(anonymous.list_models) == grpc.StatusCode.UNAVAILABLE
        s_cert, s_key = pki["stranger"]
        with gw.client(tls_ca=ca, tls_cert=s_cert, tls_key=s_key, timeout=3) as stranger:
            assert _code(stranger.list_models) == grpc.StatusCode.UNAVAILABLE
        a_cert, a_key = pki["alice"]
        with gw.client(tls_ca=ca, tls_cert=a_cert, tls_key=a_key, timeout=5) as alice:
            assert len(alice.generate([3])) == 1


def test_renewed_certificate_is_served_without_a_restart(repository, pki, tmp_path):
    """The files are replaced (as a Secret update or a renewal does): the next connection
    gets the new certificate; a half-written file keeps the old one in service."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    old_cert, old_key = pki["server"]
    cert.write_bytes(Path(old_cert).read_bytes())
    key.write_bytes(Path(old_key).read_bytes())
    with _gateway(repository, tls_cert=str(cert), tls_key=str(key)) as gw:
        with gw.client(tls_ca=pki["ca"].path, timeout=5) as c:
            assert c.list_models().models
        cert.write_text("-----BEGIN CERTIFICATE-----\ntruncated")  # mid-rotation
        with gw.client(tls_ca=pki["ca"].path, timeout=5) as c:
            assert c.list_models().models, "a half-written certificate broke the port"
        new_cert, new_key = pki["other"].issue("localhost", server=True)
        os.replace(new_key, key)
        os.replace(new_cert, cert)
        with gw.client(tls_ca=pki["other"].path, timeout=5) as c:
            assert c.list_models().models
        with gw.client(tls_ca=pki["ca"].path, timeout=3) as c:
            assert _code(c.list_models) == grpc.StatusCode.UNAVAILABLE


def test_health_port_is_plaintext_and_health_only(repository, pki):
    cert, key = pki["server"]
    port = free_port()
    with _gateway(
        repository, tls_cert=cert, tls_key=key, tls_client_ca=pki["ca"].path, health_port=port
    ):
        assert _health(f"127.0.0.1:{port}") == "SERVING"
        with StylegateClient(f"127.0.0.1:{port}", timeout=3) as c:
            assert _code(c.list_models) == grpc.StatusCode.UNIMPLEMENTED


# --- authorization ------------------------------------------------------------------------


@pytest.fixture
def access_file(tmp_path):
    path = tmp_path / "access"
    digest = hashlib.sha256(TOKEN_BATCH.encode()).hexdigest()
    path.write_text(
        "# name    credential        grants\n"
        f"alice     token:{TOKEN_ALICE}   interactive\n"
        f"batcher   token-sha256:{digest}   bulk\n"
        f"ops       token:{TOKEN_OPS}   admin,Generate\n"
        "alice-tls cert:alice        interactive\n"
    )
    return path


def test_tokens_grant_groups_and_never_leak(repository, access_file, caplog):
    caplog.set_level(logging.DEBUG)
    with _gateway(repository, auth_file=str(access_file)) as gw:
        with gw.client(timeout=5) as anonymous:
            err = _error(anonymous.list_models)
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "bearer token" in err.details()
            assert _health(gw.address) == "SERVING"  # probes need no token
        wrong = TOKEN_ALICE[:-1] + "x"
        with gw.client(token=wrong, timeout=5) as c:
            err = _error(c.list_models)
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            assert wrong not in err.details() and "invalid bearer token" in err.details()
        with gw.client(token=TOKEN_ALICE, timeout=5) as alice:
            assert len(alice.generate([1])) == 1
            assert alice.list_models().models
            err = _error(lambda: list(alice.batch_generate(range(2))))
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "'alice'" in err.details() and "BatchGenerate" in err.details()
            assert _code(alice.reload) == grpc.StatusCode.PERMISSION_DENIED
        with gw.client(token=TOKEN_BATCH, timeout=5) as batcher:  # stored as a digest
            assert sum(len(ch.images) for ch in batcher.batch_generate(range(3))) == 3
            assert _code(lambda: batcher.generate([1])) == grpc.StatusCode.PERMISSION_DENIED
        with gw.client(token=TOKEN_OPS, timeout=5) as ops:
            ops.reload()
            assert len(ops.generate([2])) == 1  # a single RPC granted by name
            assert _code(lambda: ops.invert(b"x")) == grpc.StatusCode.PERMISSION_DENIED
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert "PERMISSION_DENIED" in logged
    for token in (TOKEN_ALICE, TOKEN_BATCH, TOKEN_OPS, wrong):
        assert token not in logged


def test_client_certificate_identity_is_granted_like_a_token(repository, pki, access_file):
    cert, key = pki["server"]
    ca = pki["ca"].path
    settings = {"tls_cert": cert, "tls_key": key, "tls_client_ca": ca}
    settings["auth_file"] = str(access_file)
    with _gateway(repository, **settings) as gw:
        a_cert, a_key = pki["alice"]
        with gw.client(tls_ca=ca, tls_cert=a_cert, tls_key=a_key, timeout=5) as alice:
            assert len(alice.generate([4])) == 1
            err = _error(lambda: list(alice.batch_generate(range(2))))
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "'alice-tls'" in err.details()
        m_cert, m_key = pki["mallory"]  # a valid certificate, but not in the access file
        with gw.client(tls_ca=ca, tls_cert=m_cert, tls_key=m_key, timeout=5) as mallory:
            err = _error(mallory.list_models)
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "mallory" in err.details()
            # a token decides over the certificate
        with gw.client(tls_ca=ca, tls_cert=m_cert, tls_key=m_key, token=TOKEN_BATCH) as both:
            assert sum(len(ch.images) for ch in both.batch_generate(range(2))) == 2


def test_access_file_changes_apply_and_a_broken_one_is_ignored(
    repository, access_file, monkeypatch
):
    monkeypatch.setattr(security, "REFRESH_S", 0.0)
    with (
        _gateway(repository, auth_file=str(access_file)) as gw,
        gw.client(token=TOKEN_ALICE, timeout=5) as alice,
    ):
        assert _code(lambda: list(alice.batch_generate(range(1)))) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        access_file.write_text(f"alice token:{TOKEN_ALICE} interactive,bulk\n")
        assert sum(len(ch.images) for ch in alice.batch_generate(range(1))) == 1
        access_file.write_text(f"alice token:{TOKEN_ALICE} interactive,superuser\n")
        assert sum(len(ch.images) for ch in alice.batch_generate(range(1))) == 1


def test_access_file_errors_are_one_line_without_the_token(tmp_path):
    path = tmp_path / "access"
    path.write_text(f"alice token:{TOKEN_ALICE} everything\n")
    with pytest.raises(security.SecurityConfigError) as err:
        security.AccessPolicy.load(path)
    assert "line 1" in str(err.value) and TOKEN_ALICE not in str(err.value)
    path.write_text(f"alice password:{TOKEN_ALICE} bulk\n")
    with pytest.raises(security.SecurityConfigError, match="not token") as err:
        security.AccessPolicy.load(path)
    assert TOKEN_ALICE not in str(err.value)


# --- who is calling (per-client admission keys on it) -------------------------------------


async def _identity_server(interceptor, credentials=None):
    async def who(request: bytes, context) -> bytes:
        from stylegate.service import admission  # its per-client limits key on the same

        return f"{security.client_identity(context)}|{admission.client_identity(context)}".encode()

    handler = grpc.method_handlers_generic_handler(
        "test.Who", {"Get": grpc.unary_unary_rpc_method_handler(who)}
    )
    server = grpc.aio.server(interceptors=[interceptor])
    server.add_generic_rpc_handlers((handler,))
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, port


def test_client_identity_names_the_caller(pki, access_file):
    async def scenario():
        plain, plain_port = await _identity_server(security.AccessInterceptor(None))
        cert, key = pki["server"]
        tls = security.ServerTLS(cert, key, pki["ca"].path)
        mtls, mtls_port = await _identity_server(
            security.AccessInterceptor(security.AccessFile(str(access_file))), tls.credentials()
        )
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{plain_port}") as ch:
                by_address = await ch.unary_unary("/test.Who/Get")(b"", timeout=5)
            a_cert, a_key = pki["alice"]
            creds = security.channel_credentials(pki["ca"].path, a_cert, a_key)
            async with grpc.aio.secure_channel(f"127.0.0.1:{mtls_port}", creds) as ch:
                get = ch.unary_unary("/test.Who/Get")
                by_cert = await get(b"", timeout=5)
                auth = [("authorization", f"Bearer {TOKEN_OPS}")]
                by_token = await get(b"", timeout=5, metadata=auth)
            return by_address, by_cert, by_token
        finally:
            await plain.stop(0)
            await mtls.stop(0)

    assert asyncio.run(scenario()) == (
        b"127.0.0.1|ipv4:127.0.0.1",
        b"alice-tls|client:alice-tls",
        b"ops|client:ops",
    )


# --- reflection, TLS to Triton ------------------------------------------------------------


def test_reflection_is_off_unless_asked_for(repository):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    def services(address: str) -> list[str]:
        with grpc.insecure_channel(address) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        return [s.name for s in response.list_services_response.service]

    with _gateway(repository) as gw:
        assert _code(lambda: services(gw.address)) == grpc.StatusCode.UNIMPLEMENTED
    with _gateway(repository, reflection=True) as gw:
        assert "stylegate.v1.StyleGate" in services(gw.address)


def test_triton_channel_speaks_mutual_tls(repository, pki):
    """The gateway's Triton client over mutual TLS to a GRPCInferenceService endpoint
    (tritonclient's own service definition) that requires a client certificate."""
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from stylegate.service.backends.triton import TritonBackend

    class Ready(service_pb2_grpc.GRPCInferenceServiceServicer):
        async def ServerReady(self, request, context):
            return service_pb2.ServerReadyResponse(ready=True)

    async def scenario(credentials) -> bool:
        server = grpc.aio.server()
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Ready(), server)
        cert, key = pki["server"]
        tls = security.ServerTLS(cert, key, pki["ca"].path)
        port = server.add_secure_port("127.0.0.1:0", tls.credentials())
        await server.start()
        backend = TritonBackend(
            repository[1], f"localhost:{port}", credentials=credentials, connect_timeout_s=3
        )
        try:
            return await backend.healthy()
        finally:
            await backend.close()
            await server.stop(0)

    a_cert, a_key = pki["alice"]
    with_cert = security.triton_credentials(True, pki["ca"].path, a_cert, a_key)
    without = security.triton_credentials(True, pki["ca"].path)
    assert asyncio.run(scenario(with_cert)) is True
    assert asyncio.run(scenario(without)) is False
    assert asyncio.run(scenario(None)) is False  # plaintext to a TLS endpoint


# --- command line -------------------------------------------------------------------------


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("STYLEGATE_")}
    return subprocess.run(
        [*STYLEGATE, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**variables, **(env or {})},
    )


def test_cli_refuses_bad_files_in_one_line(tmp_path, pki):
    missing = str(tmp_path / "nope.pem")
    runs = [
        _cli("generate", "--seeds", "1", "--out", str(tmp_path), "--tls-ca", missing),
        _cli("batch", "--seeds", "1", "--out", str(tmp_path), "--tls-ca", pki["alice"][1]),
        _cli("generate", "--seeds", "1", "--out", str(tmp_path), "--token-file", missing),
        _cli("serve", "--tls-cert", pki["server"][0], "--tls-key", missing, "--port", "0"),
        _cli("serve", "--tls-client-ca", pki["ca"].path, "--port", "0"),
    ]
    for run in runs:
        assert run.returncode == 2, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
        assert "Traceback" not in run.stderr
    assert "nope.pem: no such file" in runs[0].stderr
    assert "is not a PEM certificate" in runs[1].stderr
    # a latent file that would need unpickling is refused, not loaded, and not a traceback
    import numpy as np

    evil = tmp_path / "evil.npy"
    np.save(evil, np.array([object()], dtype=object), allow_pickle=True)
    run = _cli("mix", "--a", str(evil), "--b", "1", "--out", str(tmp_path))
    assert run.returncode == 2 and "not a readable latent" in run.stderr
    assert "Traceback" not in run.stderr


def test_cli_client_over_mutual_tls_with_a_token(repository, pki, access_file, tmp_path):
    cert, key = pki["server"]
    ca = pki["ca"].path
    settings = {"tls_cert": cert, "tls_key": key, "tls_client_ca": ca}
    settings["auth_file"] = str(access_file)
    a_cert, a_key = pki["alice"]
    with _gateway(repository, **settings) as gw:
        address = gw.address
        tls = ["--server", address, "--tls-ca", ca, "--tls-cert", a_cert, "--tls-key", a_key]
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN_OPS + "\n")
        started = time.monotonic()
        ok = _cli(
            "generate", "--seeds", "5", "--out", str(tmp_path / "out"), *tls, "--token-file",
            str(token_file),
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        assert (tmp_path / "out" / "seed0005.png").is_file()
        denied = _cli(
            "batch", "--seeds", "0-1", "--out", str(tmp_path / "b"), *tls,
            env={"STYLEGATE_TOKEN": TOKEN_OPS},
        )  # fmt: skip
        assert denied.returncode == 1
        # one error line (after the progress bar's carriage returns)
        assert denied.stderr.count("error: ") == 1, denied.stderr
        assert "error: PERMISSION_DENIED: client 'ops' is not granted BatchGenerate" in (
            denied.stderr
        )
        assert "Traceback" not in denied.stderr
        assert TOKEN_OPS not in denied.stderr + denied.stdout
        assert time.monotonic() - started < 60
