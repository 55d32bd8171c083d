"""Offline validation of k8s/: every overlay renders with kustomize, every object
validates against the Kubernetes schemas (CRDs structurally), and the checks a schema
cannot make: selectors, ports, probes, the gateway's Triton URL, pinned images, limits,
network reachability, autoscaling targets, the dashboard's metric names."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re

import kubernetes_validate
import kubernetes_validate.utils
import pytest
from support.k8s_manifests import (
    CRD_KINDS,
    OVERLAYS,
    adapter_rules,
    container,
    container_argv,
    container_port,
    containers,
    dashboard,
    dashboard_queries,
    dockerfile_stages,
    env,
    find,
    flag_values,
    metric_names,
    one,
    pod_labels,
    pod_template,
    probe_port,
    probes,
    project_image_target,
    render,
    selected_workloads,
    selector_matches,
    shell_words,
    split_image,
    workloads,
)

# kubernetes-validate re-reads its schema files (megabytes of JSON) on every call.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
    kubernetes_validate.utils.schema_contents
)

# Oldest Kubernetes the manifests support (native gRPC probes GA in 1.27, policy/v1,
# autoscaling/v2) and the newest schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.29", kubernetes_validate.latest_version())
NAMESPACE = "stylegate"
GATEWAY, TRITON = "stylegate-gateway", "stylegate-triton"
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver"
TENSORRT_IMAGE = "nvcr.io/nvidia/tensorrt"


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> str:
    return request.param


@pytest.fixture
def objects(overlay) -> list[dict]:
    return render(overlay)


def test_overlays_exist():
    assert set(OVERLAYS) >= {"cpu", "gpu"}


def test_renders_unique_namespaced_objects(objects):
    keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), "duplicate objects"
    for kind, namespace, name in keys:
        if kind != "Namespace":
            assert namespace == NAMESPACE, f"{kind}/{name} is not in {NAMESPACE}"
    kinds = {k for k, _, _ in keys}
    assert kinds >= {
        "Namespace",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "PodMonitor",
        "ConfigMap",
    }


# --- schemas ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_objects_validate_against_kubernetes_schemas(objects, version):
    """Strict schemas (unknown fields rejected). A kind without a schema is an error here,
    not the CLI's warning: only the known CRD kinds are exempt (checked below)."""
    failures = []
    for o in objects:
        if (o["apiVersion"], o["kind"]) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(
                f"{o['kind']}/{o['metadata']['name']}: {exc.message} at {list(exc.path)}"
            )
        except kubernetes_validate.SchemaNotFoundError as exc:
            failures.append(f"{o['kind']}/{o['metadata']['name']}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_schema_validation_catches_mistakes():
    """The validator really rejects a misspelt field and a removed API version."""
    deployment = one(render("cpu"), "Deployment", GATEWAY)
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)
    hpa = one(render("cpu"), "HorizontalPodAutoscaler", GATEWAY)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(
            {**hpa, "apiVersion": "autoscaling/v2beta1"}, "1.29", strict=True
        )


def test_monitors_structure(objects):
    """ServiceMonitor/PodMonitor (CRDs, no bundled schema): the fields the Prometheus
    Operator needs, selectors that pick our objects, ports that exist."""
    services = find(objects, "Service")
    for monitor in find(objects, "ServiceMonitor") + find(objects, "PodMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        spec = monitor["spec"]
        assert set(spec) <= {
            "selector",
            "endpoints",
            "podMetricsEndpoints",
            "namespaceSelector",
            "jobLabel",
        }
        assert spec["selector"].get("matchLabels"), "a monitor needs a label selector"
        if monitor["kind"] == "ServiceMonitor":
            targets = [
                s for s in services if selector_matches(spec["selector"], s["metadata"]["labels"])
            ]
            assert len(targets) == 1, (
                f"ServiceMonitor {monitor['metadata']['name']} picks {len(targets)} Services"
            )
            port_names = {p["name"] for p in targets[0]["spec"]["ports"]}
            endpoints = spec["endpoints"]
        else:
            pods = selected_workloads(objects, spec["selector"], NAMESPACE)
            assert len(pods) == 1
            port_names = {
                p.get("name") for c in containers(pods[0], init=False) for p in c.get("ports", [])
            }
            endpoints = spec["podMetricsEndpoints"]
        assert endpoints
        for endpoint in endpoints:
            assert set(endpoint) <= {
                "port",
                "path",
                "interval",
                "scrapeTimeout",
                "scheme",
                "relabelings",
            }
            assert endpoint["port"] in port_names
            assert endpoint.get("path", "/metrics").startswith("/")
            assert re.fullmatch(r"\d+[smh]", endpoint.get("interval", "30s"))


# --- selectors, ports, probes -------------------------------------------------------------


def test_workload_selectors_match_their_pods(objects):
    for w in workloads(objects):
        selector = w["spec"].get("selector")
        if w["kind"] == "Job" and selector is None:
            continue  # generated by the API server
        assert selector_matches(selector, pod_labels(w)), w["metadata"]["name"]


def test_selectors_do_not_overlap(objects):
    """Each Deployment's selector picks only its own pods (no rollout fights)."""
    deployments = find(objects, "Deployment")
    for a, b in itertools.permutations(deployments, 2):
        assert not selector_matches(a["spec"]["selector"], pod_labels(b))


def test_services_select_pods_and_target_container_ports(objects):
    for service in find(objects, "Service"):
        pods = selected_workloads(objects, service["spec"]["selector"], NAMESPACE)
        assert len(pods) == 1, (
            f"Service {service['metadata']['name']} selects {len(pods)} workloads"
        )
        for port in service["spec"]["ports"]:
            assert container_port(pods[0], port["targetPort"]), (
                f"Service {service['metadata']['name']} port {port['name']}:"
                f" targetPort {port['targetPort']} is not a container port"
            )


def test_pdbs_select_deployments(objects):
    for pdb in find(objects, "PodDisruptionBudget"):
        pods = selected_workloads(objects, pdb["spec"]["selector"], NAMESPACE)
        assert [w["kind"] for w in pods] == ["Deployment"], pdb["metadata"]["name"]


def test_probes_target_container_ports(objects):
    for w in workloads(objects):
        for c in containers(w):
            for kind, probe in probes(c):
                port = probe_port(probe)
                names = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
                assert port in names or port in names.values(), (
                    f"{w['metadata']['name']}/{c['name']} {kind} port {port} "
                    "is not a container port"
                )


def test_triton_probes_and_ports(objects):
    triton = container(one(objects, "Deployment", TRITON), "tritonserver")
    flags = flag_values(container_argv(triton))
    ports = {p["name"]: p["containerPort"] for p in triton["ports"]}
    assert ports == {
        "http": int(flags["http-port"]),
        "grpc": int(flags["grpc-port"]),
        "metrics": int(flags["metrics-port"]),
    }
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    for kind in ("readinessProbe", "startupProbe"):
        assert triton[kind]["httpGet"]["path"] == "/v2/health/ready"
        assert triton[kind]["httpGet"]["port"] in ("http", 8000)
    assert flags.get("strict-readiness") == "true"
    # the model repository volume is where --model-repository points
    mounts = {m["mountPath"]: m["name"] for m in triton["volumeMounts"]}
    assert mounts.get(flags["model-repository"].rstrip("/")) == "model-repository"


def test_gateway_probes_are_native_grpc_on_the_health_port(objects):
    """The serving port speaks TLS, which kubelet gRPC probes cannot: they ask the
    plaintext health-only port (STYLEGATE_HEALTH_PORT)."""
    gateway = container(one(objects, "Deployment", GATEWAY), "gateway")
    port = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert port == {"grpc": 50051, "metrics": 9090, "health": 8081}
    assert int(env(gateway)["STYLEGATE_HEALTH_PORT"]) == port["health"]
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert gateway[kind]["grpc"]["port"] == port["health"], kind
    # liveness and start-up ask for the server as a whole; readiness for the StyleGate
    # service, which follows the backend (NOT_SERVING while Triton is down)
    assert gateway["livenessProbe"]["grpc"].get("service", "") == ""
    assert gateway["startupProbe"]["grpc"].get("service", "") == ""
    assert gateway["readinessProbe"]["grpc"]["service"] == "stylegate.v1.StyleGate"


# --- the gateway's configuration ----------------------------------------------------------


def _settings_cls():
    settings = pytest.importorskip("stylegate.service.settings")
    return settings.Settings


def test_gateway_env_is_real_settings(objects):
    """Every STYLEGATE_* variable is a field of the gateway's settings object and parses;
    the settings it yields agree with the container's ports."""
    settings_cls = _settings_cls()
    gateway = container(one(objects, "Deployment", GATEWAY), "gateway")
    variables = env(gateway)
    fields = {f.name for f in dataclasses.fields(settings_cls)}
    for name in variables:
        assert name.startswith("STYLEGATE_")
        assert name.removeprefix("STYLEGATE_").lower() in fields, f"{name} is no gateway setting"
    settings = settings_cls.load(env=variables)
    assert settings.backend == "triton"
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert settings.port == ports["grpc"] and settings.metrics_port == ports["metrics"]
    assert settings.host in ("0.0.0.0", "[::]", "::"), "the pod must listen on its pod IP"
    assert container_argv(gateway)[:2] == ["stylegate", "serve"]


def test_gateway_serves_tls_from_a_secret(objects):
    """STYLEGATE_TLS_CERT / _KEY are files of a mounted kubernetes.io/tls Secret (readable by
    the pod's group, read-only), and the load test trusts that Secret's ca.crt."""
    import yaml
    from support.k8s_manifests import K8S, _render_text

    deployment = one(objects, "Deployment", GATEWAY)
    gateway = container(deployment, "gateway")
    variables = env(gateway)
    volumes = {v["name"]: v for v in pod_template(deployment)["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in gateway["volumeMounts"]}
    secrets = set()
    for name in ("STYLEGATE_TLS_CERT", "STYLEGATE_TLS_KEY"):
        directory, file = variables[name].rsplit("/", 1)
        mount = mounts[directory]
        assert mount.get("readOnly") is True
        secret = volumes[mount["name"]]["secret"]
        assert secret["defaultMode"] & 0o040 and not secret["defaultMode"] & 0o007
        assert file in ("tls.crt", "tls.key")
        secrets.add(secret["secretName"])
    (secret_name,) = secrets
    (job,) = [d for d in yaml.safe_load_all(_render_text(str(K8S / "loadtest"))) if d]
    (c,) = pod_template(job)["spec"]["containers"]
    directory, file = env(c)["STYLEGATE_TLS_CA"].rsplit("/", 1)
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == directory]
    (volume,) = [v for v in pod_template(job)["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == secret_name and file == "ca.crt"


def test_gateway_triton_url_resolves_to_triton_grpc(objects):
    settings_cls = _settings_cls()
    gateway = container(one(objects, "Deployment", GATEWAY), "gateway")
    settings = settings_cls.load(env=env(gateway))
    host, port = settings.triton_url.rsplit(":", 1)
    service_name = host.split(".")[0]
    if "." in host:  # name.namespace[.svc[.cluster.local]]
        assert host.split(".")[1] == NAMESPACE
    service = one(objects, "Service", service_name)
    (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    (triton,) = selected_workloads(objects, service["spec"]["selector"], NAMESPACE)
    c, p = container_port(triton, service_port["targetPort"])
    assert c["name"] == "tritonserver"
    assert p["containerPort"] == int(flag_values(container_argv(c))["grpc-port"])


def test_gateway_gets_model_metadata_where_it_reads_it(objects):
    """The init container copies stylegate.json into the volume the gateway reads as its
    model repository."""
    deployment = one(objects, "Deployment", GATEWAY)
    gateway = container(deployment, "gateway")
    settings = _settings_cls().load(env=env(gateway))
    mounts = {m["mountPath"]: m for m in gateway["volumeMounts"]}
    mount = mounts[settings.model_repository]
    assert mount.get("readOnly")
    (init,) = [
        c
        for c in pod_template(deployment)["spec"]["initContainers"]
        if c["name"] == "model-metadata"
    ]
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    argv = shell_words(container_argv(init))
    assert argv[0] == "cp" and argv[-1].startswith(init_mounts[mount["name"]])
    assert argv[-1].endswith("stylegate.json")


def test_graceful_termination_outlasts_the_drain(objects):
    deployment = one(objects, "Deployment", GATEWAY)
    gateway = container(deployment, "gateway")
    settings = _settings_cls().load(env=env(gateway))
    pre_stop = gateway["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = pod_template(deployment)["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings.drain_grace_s + float(pre_stop[1])
    # an inversion of max_steps steps must fit in the drain at a pessimistic step time
    # (CPU Triton under load: ~100 ms per batched step)
    assert settings.max_steps * 0.1 <= settings.drain_grace_s


# --- images, resources, security ---------------------------------------------------------


def test_images_pinned(objects):
    for w in workloads(objects):
        for c in containers(w):
            _, tag, digest = split_image(c["image"])
            assert digest or (tag and tag != "latest"), (
                f"{c['name']}: image {c['image']} not pinned"
            )
            assert c.get("imagePullPolicy", "IfNotPresent") != "Always"


def test_triton_image_is_ngc_tritonserver(objects):
    triton = container(one(objects, "Deployment", TRITON), "tritonserver")
    repo, tag, _ = split_image(triton["image"])
    assert repo == TRITON_IMAGE and re.fullmatch(r"\d\d\.\d\d-py3", tag)


def test_project_images_are_built_by_the_dockerfile(objects):
    stages = dockerfile_stages()
    for w in workloads(objects):
        for c in containers(w):
            if not c["image"].startswith("nvcr.io/"):
                assert project_image_target(c["image"]) in stages, c["image"]


def test_dockerfile_base_images_pinned_and_gateway_non_root():
    stages = dockerfile_stages()
    for name, stage in stages.items():
        if stage["base"] in stages:
            continue
        _, tag, digest = split_image(stage["base"])
        assert digest or (tag and tag != "latest"), f"stage {name}: {stage['base']}"
    gateway = stages["gateway"]
    assert list(stages)[-1] == "gateway", "plain `docker build .` must build the gateway"
    assert gateway["user"] and gateway["user"].split(":")[0] not in ("0", "root")
    assert gateway["entrypoint"] + gateway["cmd"] == ["stylegate", "serve"]
    # serving dependencies only: no extras, no torch
    build = "\n".join(stages["build"]["instructions"])
    assert re.search(r"pip install \.(\s|$)", build) and "torch" not in build.replace(
        '"import torch"', ""
    )


def test_resources_requests_and_limits(objects):
    for w in workloads(objects):
        for c in containers(w):
            resources = c.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), (
                    f"{w['metadata']['name']}/{c['name']} lacks {part}"
                )


def test_gateway_security_context(objects):
    deployment = one(objects, "Deployment", GATEWAY)
    pod = pod_template(deployment)["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    for c in containers(deployment):
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]


def test_no_pod_runs_as_root(objects):
    for w in workloads(objects):
        sc = pod_template(w)["spec"].get("securityContext", {})
        assert sc.get("runAsNonRoot") is True and sc.get("runAsUser", 1) != 0, w["metadata"]["name"]


# --- network policy -----------------------------------------------------------------------


def _allowed(
    objects: list[dict], source_labels: dict, source_namespace: str, target: dict, port: int
) -> bool:
    """Would the NetworkPolicies admit a connection from a pod with ``source_labels`` in
    ``source_namespace`` to ``target``'s pods on ``port``? (Namespace labels: only the
    automatic kubernetes.io/metadata.name.)"""
    labels = pod_labels(target)
    policies = [
        p
        for p in find(objects, "NetworkPolicy")
        if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and selector_matches(p["spec"]["podSelector"], labels)
    ]
    if not policies:
        return True
    namespace_labels = {"kubernetes.io/metadata.name": source_namespace}
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports and not any(p.get("port") == port for p in ports):
                continue
            peers = rule.get("from")
            if not peers:
                return True
            for peer in peers:
                ns_ok = (
                    selector_matches(peer["namespaceSelector"], namespace_labels)
                    if "namespaceSelector" in peer
                    else source_namespace == policy["metadata"]["namespace"]
                )
                pod_ok = (
                    selector_matches(peer["podSelector"], source_labels)
                    if "podSelector" in peer
                    else True
                )
                if ns_ok and pod_ok and "ipBlock" not in peer:
                    return True
    return False


PROMETHEUS_POD = ({"app.kubernetes.io/name": "prometheus"}, "monitoring")


def test_only_the_gateway_reaches_triton_inference_ports(objects):
    triton = one(objects, "Deployment", TRITON)
    gateway = one(objects, "Deployment", GATEWAY)
    strangers = [(pod_labels(w), NAMESPACE) for w in workloads(objects) if w is not gateway]
    strangers += [({"app": "client"}, NAMESPACE), ({"app": "client"}, "default"), PROMETHEUS_POD]
    for port in (8000, 8001):
        assert _allowed(objects, pod_labels(gateway), NAMESPACE, triton, port)
        for labels, namespace in strangers:
            assert not _allowed(objects, labels, namespace, triton, port), (labels, namespace, port)
    assert _allowed(objects, *PROMETHEUS_POD, triton, 8002)
    assert not _allowed(objects, {"app": "client"}, "default", triton, 8002)


def test_gateway_open_to_clients_metrics_to_prometheus(objects):
    gateway = one(objects, "Deployment", GATEWAY)
    assert _allowed(objects, {"app": "client"}, "default", gateway, 50051)
    assert _allowed(objects, *PROMETHEUS_POD, gateway, 9090)
    assert not _allowed(objects, {"app": "client"}, "default", gateway, 9090)


# --- autoscaling --------------------------------------------------------------------------


def test_hpas_target_deployments_on_adapter_metrics(objects):
    rules = {r["name"]["as"]: r for r in adapter_rules()}
    hpas = {h["metadata"]["name"]: h for h in find(objects, "HorizontalPodAutoscaler")}
    assert set(hpas) == {GATEWAY, TRITON}
    for name, hpa in hpas.items():
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", name)
        one(objects, "Deployment", name)
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        for metric in hpa["spec"]["metrics"]:
            assert metric["type"] == "Pods"
            assert metric["pods"]["metric"]["name"] in rules
    gateway_metric = hpas[GATEWAY]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert gateway_metric == "stylegate_inversions_in_flight"
    # the HPAs own the replica counts: `kubectl apply` must not reset them
    for name in hpas:
        assert "replicas" not in one(objects, "Deployment", name)["spec"], name
    assert hpas[GATEWAY]["spec"]["minReplicas"] >= 2  # the PDB's maxUnavailable 1 keeps one


def test_adapter_rules_read_real_metrics():
    """Each rule's series is a gateway metric defined in service/metrics.py or a Triton
    metric, and maps the namespace/pod labels to resources."""
    gateway_metrics = _gateway_metric_names()
    for rule in adapter_rules():
        assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
        assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}
        for name in metric_names(rule["seriesQuery"]) | metric_names(
            rule["metricsQuery"].replace("<<.Series>>", "x").replace("<<.LabelMatchers>>", "")
        ) - {"x"}:
            assert name.startswith("nv_inference_") or name in gateway_metrics, name


def _gateway_metric_names() -> set[str]:
    metrics = pytest.importorskip("stylegate.service.metrics")
    from prometheus_client.metrics import MetricWrapperBase

    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            base = value._name
            kind = value._type
            if kind == "counter":
                names |= {base, base + "_total"}
            elif kind == "histogram":
                names |= {base + "_bucket", base + "_sum", base + "_count"}
            else:
                names.add(base)
    return names


# --- dashboard ----------------------------------------------------------------------------


KEY_PANELS = (
    "Request rate",
    "p95 inversion latency",
    "In-flight inversions",
    "Triton queue time per request",
    "Triton batch size",
)


def test_dashboard_panels_query_real_metrics():
    board = dashboard()
    assert board["uid"] and board["title"]
    queries = dashboard_queries()
    assert set(KEY_PANELS) <= set(queries)
    known = _gateway_metric_names() | {"up"}
    for title, exprs in queries.items():
        assert exprs, title
        for expr in exprs:
            assert expr.count("(") == expr.count(")"), expr
            for name in metric_names(expr):
                assert name.startswith("nv_inference_") or name in known, f"{title}: {name}"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_is_delivered_as_configmap(objects):
    cm = one(objects, "ConfigMap", "stylegate-grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    import json

    assert json.loads(cm["data"]["stylegate.json"]) == dashboard()


# --- overlays -----------------------------------------------------------------------------


def _gpu_requests(c: dict) -> str | None:
    return c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")


def test_cpu_overlay_uses_no_gpu():
    for w in workloads(render("cpu")):
        for c in containers(w):
            assert _gpu_requests(c) is None


def test_gpu_overlay_triton_on_gpus_with_tensorrt_plans():
    objects = render("gpu")
    triton = one(objects, "Deployment", TRITON)
    server = container(triton, "tritonserver")
    assert _gpu_requests(server) == "1"
    assert server["resources"]["requests"]["nvidia.com/gpu"] == "1"
    spec = pod_template(triton)["spec"]
    assert spec["nodeSelector"] and spec["tolerations"]
    # the repository volume is the PVC the TensorRT build Job writes
    (volume,) = [v for v in spec["volumes"] if v["name"] == "model-repository"]
    claim = volume["persistentVolumeClaim"]["claimName"]
    one(objects, "PersistentVolumeClaim", claim)
    # Triton waits for the Job's completion mark
    (wait,) = spec["initContainers"]
    assert ".tensorrt-complete" in " ".join(container_argv(wait))


def test_gpu_overlay_tensorrt_build_job():
    objects = render("gpu")
    (job,) = find(objects, "Job")
    spec = pod_template(job)["spec"]
    assert spec["restartPolicy"] == "Never"
    (build,) = spec["containers"]
    assert _gpu_requests(build) == "1"
    script = " ".join(container_argv(build))
    assert "stylegate export --tensorrt" in script and ".tensorrt-complete" in script
    # it writes into the volume Triton serves from
    (volume,) = [v for v in spec["volumes"] if v["name"] == "model-repository"]
    triton = pod_template(one(objects, "Deployment", TRITON))["spec"]
    (triton_volume,) = [v for v in triton["volumes"] if v["name"] == "model-repository"]
    assert (
        volume["persistentVolumeClaim"]["claimName"]
        == triton_volume["persistentVolumeClaim"]["claimName"]
    )
    assert spec["nodeSelector"] == triton["nodeSelector"]  # built on the GPUs that serve
    # NVIDIA's TensorRT container of the same NGC release as tritonserver: a plan only
    # loads in the TensorRT version that built it.
    stage = dockerfile_stages()[project_image_target(build["image"])]
    trt_repo, trt_tag, _ = split_image(stage["base"])
    _, triton_tag, _ = split_image(
        container(one(objects, "Deployment", TRITON), "tritonserver")["image"]
    )
    assert trt_repo == TENSORRT_IMAGE and trt_tag == triton_tag


def test_init_containers_copy_from_the_model_image(objects):
    """Init containers that deliver the repository copy from the model-repository image's
    own directory (the Dockerfile's COPY destination) into a mounted volume."""
    copy_dest = next(
        line.split()[-1].rstrip("/")
        for line in dockerfile_stages()["model-repository"]["instructions"]
        if line.startswith("COPY")
    )
    for w in workloads(objects):
        for c in pod_template(w)["spec"].get("initContainers", []):
            assert project_image_target(c["image"]) == "model-repository"
            words = shell_words(container_argv(c))
            if "cp" in words:
                source = words[
                    words.index("cp")
                    + 1
                    + (1 if words[words.index("cp") + 1].startswith("-") else 0)
                ]
                assert source.startswith(copy_dest + "/"), source
                assert any(words[-1].startswith(m["mountPath"]) for m in c["volumeMounts"])


# --- load test Job ------------------------------------------------------------------------


def test_loadtest_job_targets_the_gateway_service():
    import yaml
    from support.k8s_manifests import K8S, _render_text

    (job,) = [d for d in yaml.safe_load_all(_render_text(str(K8S / "loadtest"))) if d]
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    assert job["metadata"]["namespace"] == NAMESPACE
    (c,) = pod_template(job)["spec"]["containers"]
    assert project_image_target(c["image"]) == "gateway"
    assert (
        split_image(c["image"])[1]
        == split_image(container(one(render("cpu"), "Deployment", GATEWAY), "gateway")["image"])[1]
    ), "the load test runs the deployed gateway's CLI version"
    host, port = env(c)["STYLEGATE_SERVER"].rsplit(":", 1)
    service = one(render("cpu"), "Service", host)
    assert int(port) in [p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"]
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])


def test_gateway_waits_for_triton_readiness_through_its_service(objects):
    """The gateway's wait-for-triton init container polls Triton's readiness endpoint
    through the Triton Service, on a port the NetworkPolicy lets the gateway reach."""
    import urllib.parse

    deployment = one(objects, "Deployment", GATEWAY)
    (wait,) = [
        c
        for c in pod_template(deployment)["spec"]["initContainers"]
        if c["name"] == "wait-for-triton"
    ]
    assert "wget" in shell_words(container_argv(wait))
    url = urllib.parse.urlsplit(env(wait)["TRITON_READY_URL"])
    service = one(objects, "Service", url.hostname)
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == url.port]
    (triton,) = selected_workloads(objects, service["spec"]["selector"], NAMESPACE)
    c, entry = container_port(triton, port["targetPort"])
    assert url.path == c["readinessProbe"]["httpGet"]["path"]
    assert entry["name"] == c["readinessProbe"]["httpGet"]["port"]
    assert _allowed(objects, pod_labels(deployment), NAMESPACE, triton, entry["containerPort"])


def test_gpu_onnx_overlay_uses_the_gpu_configs_and_engine_cache():
    """Triton picks each model's configs/gpu.pbtxt (TensorRT execution accelerator) and
    has a writable volume where those configs cache their engines."""
    triton_config = pytest.importorskip("stylegate.export.triton_config")
    repository = pytest.importorskip("stylegate.export.repository")
    objects = render("gpu-onnx")
    server = container(one(objects, "Deployment", TRITON), "tritonserver")
    name = flag_values(container_argv(server))["model-config-name"]
    assert repository.GPU_CONFIG == f"configs/{name}.pbtxt"
    assert _gpu_requests(server) == "1"
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    cache = mounts[triton_config.TRT_ENGINE_CACHE_DIR]
    assert not cache.get("readOnly")
