"""The manifests' containers, run here: tritonserver and the gateway launched with the
very argv, env, ports and volumes the cpu overlay gives them (tests/support/k8s_local.py maps
images to local commands), then the manifests' own probes run against them, the
Services' ports answer, and the gateway drains on SIGTERM within its grace period. The
gateway's TLS Secret is made here (a throwaway CA and server certificate)."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from support.k8s_local import LOOPBACK, grpc_health, local_stack
from support.k8s_manifests import container_port, pod_template, probes, render, selected_workloads
from support.pki import CA, stack_secrets

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return CA(tmp_path_factory.mktemp("pki"), "ca")


@pytest.fixture(scope="module")
def stack(tiny_repository, ca):
    with local_stack(render("cpu"), tiny_repository, stack_secrets(ca)) as cluster:
        yield cluster


def _channel(stack, ca):
    """A TLS channel to the gateway's Service port (the manifests serve TLS there)."""
    import grpc

    credentials = grpc.ssl_channel_credentials(Path(ca.path).read_bytes())
    return grpc.secure_channel(f"{LOOPBACK}:{stack.ports.local(50051)}", credentials)


def test_triton_runs_with_the_manifest_flags(stack):
    triton = stack.pods["stylegate-triton"]
    argv = triton.argv
    assert argv[argv.index("triton") + 1 :].count("--model-repository") == 1
    # the repository the init container copied is what it serves
    served = argv[argv.index("--model-repository") + 1]
    assert (stack.model_repository / "stylegate.json").read_bytes() == (
        triton.volumes["model-repository"] / "stylegate.json"
    ).read_bytes()
    assert served == str(triton.volumes["model-repository"])


@pytest.mark.parametrize("deployment", ["stylegate-triton", "stylegate-gateway"])
def test_every_probe_passes(stack, deployment):
    pod = stack.pods[deployment]
    kinds = []
    for kind, probe in probes(pod.container):
        stack.wait_probe(pod, probe)
        kinds.append(kind)
    assert {"startupProbe", "readinessProbe"} <= set(kinds)


def test_services_reach_listening_ports(stack):
    for service in (s for s in stack.objects if s["kind"] == "Service"):
        (workload,) = selected_workloads(stack.objects, service["spec"]["selector"], "stylegate")
        for port in service["spec"]["ports"]:
            _, entry = container_port(workload, port["targetPort"])
            local = stack.ports.local(entry["containerPort"])
            with socket.create_connection((LOOPBACK, local), timeout=2):
                pass


def test_metrics_ports_serve_prometheus_text(stack):
    gateway_metrics = stack.ports.local(9090)
    triton_metrics = stack.ports.local(8002)
    with urllib.request.urlopen(f"http://{LOOPBACK}:{gateway_metrics}/metrics", timeout=5) as r:
        assert "stylegate_inversions_in_flight" in r.read().decode()
    with urllib.request.urlopen(f"http://{LOOPBACK}:{triton_metrics}/metrics", timeout=5) as r:
        assert "nv_inference_request_success" in r.read().decode()


def test_triton_grpc_takes_only_the_gateway_certificate(stack, ca):
    """Triton's gRPC port, as the manifest starts it, speaks mutual TLS: plaintext and a
    client without the gateway's certificate get nothing; with it ServerLive answers."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    address = f"{LOOPBACK}:{stack.ports.local(8001)}"
    client = stack_secrets(ca)["stylegate-triton-client-tls"]
    anonymous = grpc.ssl_channel_credentials(client["ca.crt"])
    mutual = grpc.ssl_channel_credentials(client["ca.crt"], client["tls.key"], client["tls.crt"])
    for refused in (grpc.insecure_channel(address), grpc.secure_channel(address, anonymous)):
        with refused, pytest.raises(grpc.RpcError):
            stub = service_pb2_grpc.GRPCInferenceServiceStub(refused)
            stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=5)
    with grpc.secure_channel(address, mutual) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live


def test_gateway_serves_through_triton(stack, ca):
    """The gateway, configured by the manifest's env, answers an RPC through Triton, over
    TLS with the Secret's certificate; plaintext is refused."""
    import grpc

    from stylegate.protos.v1 import stylegate_pb2 as pb
    from stylegate.protos.v1 import stylegate_pb2_grpc as pb_grpc

    port = stack.ports.local(50051)
    with grpc.insecure_channel(f"{LOOPBACK}:{port}") as plain:
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.StyleGateStub(plain).ListModels(pb.ListModelsRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with _channel(stack, ca) as channel:
        stub = pb_grpc.StyleGateStub(channel)
        info = stub.ListModels(pb.ListModelsRequest(), timeout=10)
        assert info.models and all(m.backend == "triton" for m in info.models)
        generated = stub.Generate(pb.GenerateRequest(seeds=[1, 2]), timeout=30)
        assert len(generated.images) == 2


def test_sigterm_drains_in_flight_inversion_within_grace(stack, ca):
    """Last: SIGTERM during an inversion -> health NOT_SERVING (readiness fails, the pod
    leaves the endpoints), the inversion still completes, exit 0 inside the pod's
    terminationGracePeriodSeconds."""

    from stylegate.protos.v1 import stylegate_pb2 as pb
    from stylegate.protos.v1 import stylegate_pb2_grpc as pb_grpc

    pod = stack.pods["stylegate-gateway"]
    grace = pod_template(pod.workload)["spec"]["terminationGracePeriodSeconds"]
    (readiness,) = [p for kind, p in probes(pod.container) if kind == "readinessProbe"]
    health = f"{LOOPBACK}:{stack.ports.local(8081)}"  # the probes' plaintext port
    assert grpc_health(health) == "SERVING"
    assert stack.probe(pod, readiness)

    with _channel(stack, ca) as channel:
        stub = pb_grpc.StyleGateStub(channel)
        (image,) = stub.Generate(pb.GenerateRequest(seeds=[7]), timeout=30).images
        request = pb.InvertRequest(
            image=pb.Image(data=image.image.data), steps=50, early_stop_tol=0.0
        )
        stream = stub.Invert(request, timeout=grace)
        first = next(stream)
        assert first.HasField("progress")
        started = time.monotonic()
        pod.process.send_signal(signal.SIGTERM)
        deadline = started + 10
        while stack.probe(pod, readiness):
            assert time.monotonic() < deadline, "still SERVING after SIGTERM"
            time.sleep(0.05)
        updates = list(stream)  # the in-flight inversion drains to its end
        assert updates and updates[-1].HasField("result"), "the inversion did not complete"
        assert updates[-1].result.steps == 50
    code = stack.stop(pod, grace)
    assert code == 0, pod.log_tail()
    assert time.monotonic() - started < grace
    assert grpc_health(health) != "SERVING"
