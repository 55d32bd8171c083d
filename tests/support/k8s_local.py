"""Run the k8s/ manifests' gateway and Triton on this machine, as the pods would run them.

From a rendered overlay this takes each container's argv (Kubernetes ``command``/``args``
over the image's ENTRYPOINT/CMD from the Dockerfile), its env, its ports, its volumes
and its init containers, and maps only what a pod has and this machine lacks:

- images -> local commands: the gateway image's ``stylegate ...`` -> this checkout's
  ``stylegate`` CLI; NGC's ``tritonserver`` -> ``stylegate triton`` (the wheel's real
  tritonserver on the CPU flavour of the same repository). A tritonserver flag this
  mapping does not know fails the launch, so a manifest change cannot slip past.
- volumes -> temporary directories; the model-repository image's files -> the model
  repository given (the init containers' ``cp`` commands run for real on those paths);
  a Secret volume -> a directory of the files the test made for that Secret;
- Service DNS names -> 127.0.0.1, and every process binds loopback only;
- ports: the manifest's numbers when free here, else one free port per manifest port,
  applied consistently to args, env, probes and Services.

Then ``probe`` runs a container's probes as the kubelet would (gRPC health, HTTP GET).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from support.k8s_manifests import (
    ROOT,
    container_argv,
    container_port,
    containers,
    dockerfile_stages,
    env,
    flag_values,
    one,
    pod_template,
    project_image_target,
    selected_workloads,
    shell_words,
)

LOOPBACK = "127.0.0.1"
STYLEGATE = [sys.executable, "-m", "stylegate.cli.main"]  # this checkout's `stylegate` command
# tritonserver flags of the manifests that `stylegate triton` always applies itself, with
# the value it applies: the manifest must ask for the same.
TRITON_IMPLIED_FLAGS = {"strict-readiness": "true", "exit-on-error": "true"}


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class PortMap(dict):
    """Manifest port -> local port (identical when free here)."""

    def local(self, port: int) -> int:
        port = int(port)
        if port not in self:
            self[port] = port if port_is_free(port) and port not in self.values() else free_port()
        return self[port]


@dataclass
class LocalPod:
    """One workload's pod, run locally: its main container's process and volume dirs."""

    workload: dict
    container: dict
    volumes: dict[str, Path]
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def name(self) -> str:
        return self.workload["metadata"]["name"]

    def local_path(self, path: str, container: dict | None = None) -> str:
        """A path inside the container -> the local directory of the volume mounted there."""
        for mount in (container or self.container).get("volumeMounts", []):
            root = mount["mountPath"].rstrip("/")
            if path == root or path.startswith(root + "/"):
                return str(self.volumes[mount["name"]]) + path[len(root) :]
        raise AssertionError(f"{self.name}: {path} is on no mounted volume")

    def log_tail(self, lines: int = 60) -> str:
        if self.log is None or not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class LocalCluster:
    """The rendered objects of one overlay, with the pods started so far."""

    def __init__(
        self,
        objects: list[dict],
        model_repository: Path,
        workdir: Path,
        secrets: dict[str, dict[str, bytes]] | None = None,  # Secret name -> key -> data
    ):
        self.objects = objects
        self.secrets = secrets or {}
        self.model_repository = Path(model_repository)
        self.workdir = workdir
        self.ports = PortMap()
        self.pods: dict[str, LocalPod] = {}

    # --- images -> local files --------------------------------------------------------

    def image_path(self, image: str, path: str) -> str | None:
        """A path inside a project image that the Dockerfile fills with the model
        repository -> the local model repository; None for other paths."""
        if project_image_target(image) != "model-repository":
            return None
        for line in dockerfile_stages()["model-repository"]["instructions"]:
            words = line.split()
            if words[0] == "COPY" and words[1].rstrip("/") == "model_repository":
                root = words[-1].rstrip("/")
                if path == root or path.startswith(root + "/"):
                    return str(self.model_repository) + path[len(root) :]
        return None

    # --- pods -------------------------------------------------------------------------

    def prepare(self, deployment: str, container_name: str) -> LocalPod:
        workload = one(self.objects, "Deployment", deployment)
        (main,) = [c for c in containers(workload, init=False) if c["name"] == container_name]
        volumes = {}
        for volume in pod_template(workload)["spec"].get("volumes", []):
            volumes[volume["name"]] = self.workdir / deployment / volume["name"]
            volumes[volume["name"]].mkdir(parents=True)
            if "secret" in volume:
                self._fill_secret(volume, volumes[volume["name"]])
                continue
            assert "emptyDir" in volume, f"{deployment}: volume {volume['name']} is not an emptyDir"
        pod = LocalPod(workload, main, volumes)
        for init in pod_template(workload)["spec"].get("initContainers", []):
            self._run_init(pod, init)
        self.pods[deployment] = pod
        return pod

    def _fill_secret(self, volume: dict, directory: Path) -> None:
        """The Secret's keys as files (only its ``items`` when listed), as the kubelet
        mounts them; the test must have made that Secret."""
        name = volume["secret"]["secretName"]
        assert name in self.secrets, f"the test made no Secret {name}"
        data = self.secrets[name]
        items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            assert item["key"] in data, f"Secret {name} has no key {item['key']}"
            path = directory / item["path"]
            path.write_bytes(data[item["key"]])
            path.chmod(volume["secret"].get("defaultMode", 0o644) & 0o777)

    def _run_init(self, pod: LocalPod, init: dict) -> None:
        """Run an init container: a ``cp`` runs on the local paths; a wait for a URL
        (``until wget ... "$X_URL"``) polls that URL, its Service resolved locally."""
        words = shell_words(container_argv(init))
        if "wget" in words:
            (url,) = [v for k, v in env(init).items() if k.endswith("_URL")]
            self.wait_url(self.resolve_url(url), timeout=300)
            return
        assert words[0] == "cp", (
            f"{pod.name}/{init['name']}: only cp and wget-wait init containers run here"
        )
        local = []
        for word in words[1:]:
            if word.startswith("-"):
                local.append(word)
                continue
            mapped = self.image_path(init["image"], word)
            local.append(mapped if mapped is not None else pod.local_path(word, init))
        subprocess.run(["cp", *local], check=True)

    def resolve_service(self, host_port: str) -> str:
        """``<service>[.<namespace>...]:<port>`` -> ``127.0.0.1:<local port>`` of the
        container port the Service sends that port to."""
        host, port = host_port.rsplit(":", 1)
        name = host.split(".")[0]
        service = one(self.objects, "Service", name)
        namespace = service["metadata"]["namespace"]
        if "." in host:
            assert host.split(".")[1] == namespace, f"{host} is not in namespace {namespace}"
        (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
        (workload,) = selected_workloads(self.objects, service["spec"]["selector"], namespace)
        _, target = container_port(workload, service_port["targetPort"])
        return f"{LOOPBACK}:{self.ports.local(target['containerPort'])}"

    def resolve_url(self, url: str) -> str:
        """``http://<service>:<port>/path`` -> the same URL on the local port."""
        parsed = urllib.parse.urlsplit(url)
        netloc = self.resolve_service(f"{parsed.hostname}:{parsed.port or 80}")
        return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, parsed.query, ""))

    @staticmethod
    def wait_url(url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} not ready after {timeout} s")
            time.sleep(0.5)

    def triton_command(self, pod: LocalPod) -> list[str]:
        argv = container_argv(pod.container)
        assert argv[0] == "tritonserver", argv
        flags = flag_values(argv[1:])
        command = [*STYLEGATE, "triton", "--host", LOOPBACK]
        for name, value in flags.items():
            if name == "model-repository":
                command += ["--model-repository", pod.local_path(value)]
            elif name in ("http-port", "grpc-port", "metrics-port"):
                command += [f"--{name}", str(self.ports.local(int(value)))]
            elif name in ("log-verbose", "grpc-use-ssl", "grpc-use-ssl-mutual"):
                command += [f"--{name}", value]
            elif name in ("grpc-server-cert", "grpc-server-key", "grpc-root-cert"):
                command += [f"--{name}", pod.local_path(value)]
            elif name in TRITON_IMPLIED_FLAGS:
                assert value == TRITON_IMPLIED_FLAGS[name], f"--{name}={value}"
            else:
                raise AssertionError(f"tritonserver flag --{name} has no local mapping")
        return command

    def gateway_command(self, pod: LocalPod) -> tuple[list[str], dict[str, str]]:
        argv = container_argv(pod.container)
        assert argv[0] == "stylegate", argv
        variables = env(pod.container)
        local = dict(variables)
        for name, value in variables.items():
            if name == "STYLEGATE_TRITON_URL":
                local[name] = self.resolve_service(value)
            elif name in ("STYLEGATE_PORT", "STYLEGATE_METRICS_PORT", "STYLEGATE_HEALTH_PORT"):
                local[name] = str(self.ports.local(int(value)))
            elif value.startswith("/"):  # a path in the container: model repository, TLS files
                local[name] = pod.local_path(value)
        local["STYLEGATE_HOST"] = LOOPBACK  # a pod listens on its pod IP; here, loopback only
        return [*STYLEGATE, *argv[1:]], local

    def start(
        self, pod: LocalPod, argv: list[str], extra_env: dict[str, str] | None = None
    ) -> None:
        process_env = {k: v for k, v in os.environ.items() if not k.startswith("STYLEGATE_")}
        process_env.update(extra_env or {})
        process_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), process_env.get("PYTHONPATH")])
        )
        pod.argv, pod.env = argv, process_env
        pod.log = self.workdir / f"{pod.name}.log"
        with open(pod.log, "ab") as log:
            pod.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=process_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, pod: LocalPod, grace: float) -> int | None:
        """SIGTERM, then SIGKILL of the process group past ``grace`` seconds."""
        process = pod.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        for pod in reversed(list(self.pods.values())):
            grace = pod_template(pod.workload)["spec"].get("terminationGracePeriodSeconds", 30)
            self.stop(pod, min(grace, 30))

    # --- probes -----------------------------------------------------------------------

    def probe_target(self, pod: LocalPod, probe: dict) -> tuple[str, int]:
        for handler in ("httpGet", "grpc", "tcpSocket"):
            if handler in probe:
                port = probe[handler]["port"]
                _, entry = container_port(pod.workload, port)
                return handler, self.ports.local(entry["containerPort"])
        raise AssertionError(f"unknown probe {probe}")

    def probe(self, pod: LocalPod, probe: dict) -> bool:
        """One probe attempt, as the kubelet makes it."""
        handler, port = self.probe_target(pod, probe)
        timeout = probe.get("timeoutSeconds", 1)
        if handler == "httpGet":
            url = f"http://{LOOPBACK}:{port}{probe['httpGet'].get('path', '/')}"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    return 200 <= response.status < 400
            except (urllib.error.URLError, OSError):
                return False
        if handler == "grpc":
            return (
                grpc_health(f"{LOOPBACK}:{port}", probe["grpc"].get("service", ""), timeout)
                == "SERVING"
            )
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout):
            return True
        return False

    def wait_probe(self, pod: LocalPod, probe: dict) -> float:
        """Probe until success within the kubelet's budget (initial delay + period x
        failure threshold); returns the seconds it took. Polls faster than the period."""
        budget = probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get(
            "failureThreshold", 3
        )
        started = time.monotonic()
        while True:
            if pod.process is not None and pod.process.poll() is not None:
                raise AssertionError(
                    f"{pod.name} exited with {pod.process.returncode}:\n{pod.log_tail()}"
                )
            if self.probe(pod, probe):
                return time.monotonic() - started
            if time.monotonic() - started > budget:
                raise AssertionError(
                    f"{pod.name}: probe {probe} failed for {budget} s:\n{pod.log_tail()}"
                )
            time.sleep(0.25)


def grpc_health(address: str, service: str = "", timeout: float = 1.0) -> str:
    """grpc.health.v1 Check -> status name, or the error code's name."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


@contextlib.contextmanager
def local_stack(
    objects: list[dict],
    model_repository: Path,
    secrets: dict[str, dict[str, bytes]] | None = None,  # Secret name -> key -> data
) -> Iterator[LocalCluster]:
    """Triton and the gateway of ``objects`` started from their manifests, both past their
    startup probes. Stopped (SIGTERM) on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="stylegate-k8s-local-"))
    cluster = LocalCluster(objects, model_repository, workdir, secrets)
    try:
        triton = cluster.prepare("stylegate-triton", "tritonserver")
        cluster.start(triton, cluster.triton_command(triton))
        cluster.wait_probe(triton, triton.container["startupProbe"])
        gateway = cluster.prepare("stylegate-gateway", "gateway")
        argv, variables = cluster.gateway_command(gateway)
        cluster.start(gateway, argv, variables)
        cluster.wait_probe(gateway, gateway.container["startupProbe"])
        yield cluster
    finally:
        cluster.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
