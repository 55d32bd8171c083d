"""A real Prometheus (Debian's package) scrapes the gateway and tritonserver, both run from
the cpu overlay's manifests on loopback, with the targets, paths and labels the
ServiceMonitor/PodMonitor give them. After traffic through the gateway (Generate,
short inversions, one bad request), every panel query of the Grafana dashboard and
every prometheus-adapter rule behind the HPAs returns data through Prometheus' HTTP API."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from support.k8s_local import LOOPBACK, free_port, local_stack
from support.k8s_manifests import (
    adapter_query,
    adapter_rules,
    container_port,
    dashboard_queries,
    find,
    render,
    selected_workloads,
    selector_matches,
)
from support.pki import CA, stack_secrets

pytestmark = pytest.mark.triton

NAMESPACE = "stylegate"
SCRAPE_INTERVAL = "1s"
RATE_WINDOW = "1m"  # stands in for Grafana's $__rate_interval
INVERSION_STEPS = 8


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        message = "prometheus not installed: run scripts/install-system-deps.sh (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> CA:
    return CA(tmp_path_factory.mktemp("pki"), "ca")


@pytest.fixture(scope="module")
def stack(tiny_repository, ca):
    with local_stack(render("cpu"), tiny_repository, stack_secrets(ca)) as cluster:
        yield cluster


def scrape_configs(cluster) -> list[dict]:
    """The scrape jobs the Prometheus Operator derives from our monitors, pointed at the
    local ports, with the target labels it sets (job, namespace, pod, service)."""
    jobs = []
    for monitor in find(cluster.objects, "ServiceMonitor"):
        (service,) = [
            s
            for s in find(cluster.objects, "Service")
            if selector_matches(monitor["spec"]["selector"], s["metadata"]["labels"])
        ]
        (workload,) = selected_workloads(cluster.objects, service["spec"]["selector"], NAMESPACE)
        for endpoint in monitor["spec"]["endpoints"]:
            (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
            _, entry = container_port(workload, port["targetPort"])
            jobs.append(
                _job(
                    cluster,
                    service["metadata"]["name"],
                    endpoint,
                    entry,
                    workload,
                    service=service["metadata"]["name"],
                )
            )
    for monitor in find(cluster.objects, "PodMonitor"):
        (workload,) = selected_workloads(cluster.objects, monitor["spec"]["selector"], NAMESPACE)
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            _, entry = container_port(workload, endpoint["port"])
            jobs.append(
                _job(
                    cluster, f"{NAMESPACE}/{monitor['metadata']['name']}", endpoint, entry, workload
                )
            )
    return jobs


def _job(cluster, job: str, endpoint: dict, port: dict, workload: dict, **labels) -> dict:
    return {
        "job_name": job,
        "metrics_path": endpoint.get("path", "/metrics"),
        "scrape_interval": SCRAPE_INTERVAL,
        "static_configs": [
            {
                "targets": [f"{LOOPBACK}:{cluster.ports.local(port['containerPort'])}"],
                "labels": {
                    "namespace": NAMESPACE,
                    "pod": f"{workload['metadata']['name']}-local-0",
                    **labels,
                },
            }
        ],
    }


class Prometheus:
    def __init__(self, url: str):
        self.url = url

    def get(self, path: str, **params) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, predicate, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while True:
            value = self.value(expr)
            if value is not None and predicate(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr} = {value} after {timeout} s")
            time.sleep(0.25)


@pytest.fixture(scope="module")
def prometheus(stack, tmp_path_factory):
    binary = prometheus_binary()
    workdir = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": scrape_configs(stack),
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (workdir / "prometheus.log").read_text()
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "prometheus not ready"
            time.sleep(0.2)
        yield Prometheus(url)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _traffic_wave(address: str, ca: CA, inversions: int) -> None:
    """Generate, ``inversions`` concurrent short inversions, one NOT_FOUND request."""
    import grpc

    from stylegate.protos.v1 import stylegate_pb2 as pb
    from stylegate.protos.v1 import stylegate_pb2_grpc as pb_grpc

    credentials = grpc.ssl_channel_credentials(Path(ca.path).read_bytes())
    with grpc.secure_channel(address, credentials) as channel:
        stub = pb_grpc.StyleGateStub(channel)
        generated = stub.Generate(pb.GenerateRequest(seeds=list(range(inversions))), timeout=60)
        assert len(generated.images) == inversions

        def invert(image: pb.Image) -> pb.InvertResult:
            request = pb.InvertRequest(
                image=pb.Image(data=image.data),
                steps=INVERSION_STEPS,
                early_stop_tol=0.0,
                method=pb.INVERSION_METHOD_IN_DOMAIN,
                progress_every=INVERSION_STEPS,
            )
            results = [r.result for r in stub.Invert(request, timeout=120) if r.HasField("result")]
            assert len(results) == 1
            return results[0]

        with ThreadPoolExecutor(inversions) as pool:
            for result in pool.map(invert, [g.image for g in generated.images]):
                assert result.steps == INVERSION_STEPS
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfo(pb.ModelInfoRequest(model="no-such-model"), timeout=10)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def traffic(stack, prometheus, ca):
    """Two waves, each seen by a scrape: the first creates the labelled series, the second
    makes them increase (rate() needs two samples of a series)."""
    address = f"{LOOPBACK}:{stack.ports.local(50051)}"
    count = 'sum(stylegate_rpc_duration_seconds_count{method="Invert"})'
    _traffic_wave(address, ca, inversions=1)
    prometheus.wait_for(count, lambda v: v >= 1)
    _traffic_wave(address, ca, inversions=4)
    prometheus.wait_for(count, lambda v: v >= 5)
    time.sleep(2.5)  # a couple more scrapes: gauges back at rest, Triton counters current
    return prometheus


def test_targets_scraped(prometheus, stack):
    deadline = time.monotonic() + 20
    while True:
        targets = prometheus.get("/api/v1/targets")["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        if len(health) == 2 and set(health.values()) == {"up"}:
            break
        assert time.monotonic() < deadline, targets
        time.sleep(0.5)
    assert set(health) == {"stylegate-gateway", f"{NAMESPACE}/stylegate-triton"}


def _finite(result: list[dict]) -> list[float]:
    return [float(s["value"][1]) for s in result if math.isfinite(float(s["value"][1]))]


def test_dashboard_queries_return_data(traffic):
    empty = []
    for title, exprs in dashboard_queries(rate_interval=RATE_WINDOW, namespace=NAMESPACE).items():
        for expr in exprs:
            if not _finite(traffic.query(expr)):
                empty.append(f"{title}: {expr}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)


def test_key_figures(traffic):
    queries = dashboard_queries(rate_interval=RATE_WINDOW, namespace=NAMESPACE)
    rates = {
        (s["metric"]["method"], s["metric"]["code"]): float(s["value"][1])
        for s in traffic.query(queries["Request rate"][0])
    }
    assert rates[("Invert", "OK")] > 0 and rates[("Generate", "OK")] > 0
    assert rates[("ModelInfo", "NOT_FOUND")] > 0
    (p95,) = _finite(traffic.query(queries["p95 inversion latency"][0]))
    assert 0 < p95 < 120
    queue = {
        s["metric"]["model"]: float(s["value"][1])
        for s in traffic.query(queries["Triton queue time per request"][0])
    }
    assert "inversion_step" in queue and queue["inversion_step"] >= 0
    batch = {
        s["metric"]["model"]: float(s["value"][1])
        for s in traffic.query(queries["Triton batch size"][0])
    }
    assert batch["inversion_step"] >= 1
    (in_flight,) = _finite(traffic.query(queries["In-flight inversions"][1]))
    assert in_flight == 0  # all finished
    print(f"\np95 inversion {p95:.3f} s, queue {queue}, batch {batch}, rates {rates}")


def test_adapter_rules_serve_the_hpa_metrics(traffic, stack):
    """What prometheus-adapter would ask Prometheus for each HPA metric, per pod."""
    hpa_metrics = {
        m["pods"]["metric"]["name"]
        for h in find(stack.objects, "HorizontalPodAutoscaler")
        for m in h["spec"]["metrics"]
    }
    served = {}
    for rule in adapter_rules():
        expr = adapter_query(
            rule, label_matchers=f'namespace="{NAMESPACE}",pod=~".+"', group_by="pod"
        )
        result = traffic.query(expr)
        assert _finite(result), f"{rule['name']['as']}: {expr}"
        served[rule["name"]["as"]] = {s["metric"]["pod"] for s in result}
    assert hpa_metrics <= set(served)
    assert served["stylegate_inversions_in_flight"] == {"stylegate-gateway-local-0"}
    assert served["stylegate_triton_queue_seconds_per_request"] == {"stylegate-triton-local-0"}
