"""A real tritonserver on this machine, without Docker: ``stylegate triton``.

The nvidia-pytriton wheel ships tritonserver 2.51 with the python backend only (no
onnxruntime or TensorRT backend). So the model repository is served through a CPU
flavour built in a work directory: same model names, tensors, batching and queue policy,
but ``backend: "python"`` with ``export/triton_python_model.py`` as each model's
``1/model.py``, running onnxruntime on a link to the original ``model.onnx``. The
production configs (``onnxruntime_onnx`` / ``tensorrt_plan``) are read, never changed.

Torch-free on purpose: this runs where the gateway runs. Python API for tests and
benchmarks::

    with TritonServer("model_repository", grpc_port=0) as server:
        client = tritonclient.grpc.InferenceServerClient(server.grpc_url)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import click
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from stylegate.export import triton_config
from stylegate.service.backends.embedded import PAIRED_NETWORKS, SPINNING_NETWORKS
from stylegate.service.errors import BackendUnavailable
from stylegate.service.metadata import load_repository
from stylegate.service.signatures import METADATA_FILE, SIGNATURES

MODEL_TEMPLATE = Path(__file__).parents[1] / "export" / "triton_python_model.py"
CONFIG_FILE = "config.pbtxt"
# Priority levels a served model gets when its config has none (a repository written by an
# older export): Triton rejects a priority above the model's priority_levels.
from stylegate.export.triton_config import DEFAULT_PRIORITY_LEVEL, PRIORITY_LEVELS


class TritonStartError(RuntimeError):
    """tritonserver could not be started or did not become ready (log tail included)."""


@dataclasses.dataclass(frozen=True)
class TritonDistribution:
    """Where the wheel keeps the server, its libraries and the python backend."""

    root: Path  # .../site-packages/pytriton/tritonserver

    @classmethod
    def find(cls) -> TritonDistribution:
        try:
            import pytriton
        except ImportError as exc:
            raise TritonStartError(
                "nvidia-pytriton is not installed (pip install 'nvidia-pytriton==0.7.0'):"
                " it provides the tritonserver binary"
            ) from exc
        return cls(Path(pytriton.__file__).parent / "tritonserver")

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.root / "backends" / "python"

    @property
    def libs(self) -> Path:
        return self.root.parent.parent / "nvidia_pytriton.libs"

    def stub(self, version: str | None = None) -> Path:
        version = version or f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.root / "python_backend_stubs" / version / "triton_python_backend_stub"


# ---------------------------------------------------------------------------------------
# The CPU flavour of a model repository


def _networks(source: Path) -> dict[str, tuple[str, dict[str, int]]]:
    """model name -> (network, dims) from the repository's stylegate.json (empty if none)."""
    if not (source / METADATA_FILE).is_file():
        return {}
    try:
        repo = load_repository(source)
    except BackendUnavailable:  # unreadable metadata: every config is copied as it is
        return {}
    found = {}
    for generator in repo.generators.values():
        for network, model in generator.models.items():
            found.setdefault(model, (network, generator.dims))
    return found


def _io(config) -> list:
    return [list(config.input), list(config.output)]


def cpu_flavour_config(
    text: str,
    *,
    network: str | None = None,
    dims: Mapping[str, int] | None = None,
    parameters: Mapping[str, str] | None = None,
    min_instances: int = 1,
) -> str:
    """The python-backend twin of a production ``config.pbtxt`` (``text``).

    Rendered by ``export.triton_config.model_config(runtime="python")`` with the
    production config's batching and instance count, when the model's ``network`` and
    ``dims`` are known and that rendering has the production inputs and outputs.
    Otherwise (a repository written by other means, or hand-edited) the production config
    itself is converted: backend -> python, GPU instances -> CPU, accelerators dropped.
    Either way: priority levels added when missing (the gateway sends two), and at least
    ``min_instances`` model instances.
    """
    production = text_format.Parse(text, model_config_pb2.ModelConfig())
    config = None
    if network in SIGNATURES and dims is not None:
        batching = production.dynamic_batching
        rendered = triton_config.model_config(
            production.name,
            network,
            dims,
            runtime="python",
            device="cpu",
            batching=triton_config.Batching(
                max_batch_size=production.max_batch_size,
                preferred_batch_sizes=tuple(batching.preferred_batch_size),
                max_queue_delay_microseconds=batching.max_queue_delay_microseconds,
                max_queue_size=batching.default_queue_policy.max_queue_size,
                instance_count=max((g.count for g in production.instance_group), default=1),
            ),
            parameters=parameters,
        )
        candidate = text_format.Parse(rendered, model_config_pb2.ModelConfig())
        if _io(candidate) == _io(production):
            config = candidate
    if config is None:
        config = model_config_pb2.ModelConfig()
        config.CopyFrom(production)
        config.ClearField("platform")
        config.ClearField("default_model_filename")
        config.backend = "python"
        config.optimization.ClearField("execution_accelerators")
        for group in config.instance_group:
            if group.kind in (group.KIND_GPU, group.KIND_AUTO):
                group.kind = group.KIND_CPU
            group.ClearField("gpus")
        for key, value in (parameters or {}).items():
            config.parameters[key].string_value = value
    if sum(g.count for g in config.instance_group) < min_instances:
        del config.instance_group[:]
        config.instance_group.add(
            count=min_instances, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU
        )
    if config.HasField("dynamic_batching") and config.dynamic_batching.priority_levels == 0:
        config.dynamic_batching.priority_levels = PRIORITY_LEVELS
        config.dynamic_batching.default_priority_level = DEFAULT_PRIORITY_LEVEL
    return text_format.MessageToString(config)


def build_cpu_repository(source: Path, dest: Path, *, intra_op_threads: int = 0) -> list[str]:
    """Write the CPU flavour of the repository ``source`` into ``dest`` (created, must
    not exist). Returns the model names. Model files are linked, not copied."""
    source = Path(source).resolve()
    if not source.is_dir():
        raise TritonStartError(f"model repository {source} is not a directory")
    dest.mkdir(parents=True)
    networks = _networks(source)
    # this interpreter's onnxruntime and numpy, whatever python the stub finds
    parameters = {"sys_path": sysconfig.get_paths()["purelib"]}
    if intra_op_threads:
        parameters["intra_op_threads"] = str(intra_op_threads)
    models = []
    for model_dir in sorted(p for p in source.iterdir() if (p / CONFIG_FILE).is_file()):
        out = dest / model_dir.name
        out.mkdir()
        network, dims = networks.get(model_dir.name, (None, None))
        text = (model_dir / CONFIG_FILE).read_text()
        own, instances = dict(parameters), 1
        if network not in SPINNING_NETWORKS:  # as the embedded backend's sessions
            own["allow_spinning"] = "0"
        if network in PAIRED_NETWORKS and intra_op_threads >= 2:
            # as the embedded backend's narrow lanes: two instances, each half the threads
            # (with the gateway's small step requests, docs/design.md "Small batches of the
            # inversion step")
            own["intra_op_threads"], instances = str(intra_op_threads // 2), 2
            own["run_batch"] = "2"  # as the embedded lanes' runs
        (out / CONFIG_FILE).write_text(
            cpu_flavour_config(
                text, network=network, dims=dims, parameters=own, min_instances=instances
            )
        )
        for entry in model_dir.iterdir():
            if entry.name == CONFIG_FILE:
                continue
            if entry.is_dir() and entry.name.isdigit():  # a version: link its files
                (out / entry.name).mkdir()
                for item in entry.iterdir():
                    (out / entry.name / item.name).symlink_to(item)
                shutil.copyfile(MODEL_TEMPLATE, out / entry.name / "model.py")
            else:  # other configs, warmup data, ...
                (out / entry.name).symlink_to(entry)
        models.append(model_dir.name)
    if not models:
        raise TritonStartError(f"no model (<name>/{CONFIG_FILE}) in {source}")
    for extra in source.iterdir():  # stylegate.json and friends
        if extra.is_file():
            (dest / extra.name).symlink_to(extra)
    return models


def prepare_backends(dest: Path, dist: TritonDistribution) -> Path:
    """A backend directory with the python backend and the stub of this Python."""
    python = dest / "python"
    shutil.copytree(dist.python_backend, python, ignore=shutil.ignore_patterns("__pycache__"))
    stub = dist.stub()
    if not stub.is_file():
        raise TritonStartError(f"no python backend stub for Python {sys.version_info[:2]}: {stub}")
    shutil.copy2(stub, python / stub.name)
    return dest


def server_env(dist: TritonDistribution) -> dict[str, str]:
    """libpython + the wheel's libraries on LD_LIBRARY_PATH; this interpreter's bin dir
    first on PATH (the stub runs the first ``python`` there, and needs numpy < 2)."""
    env = dict(os.environ)
    libdirs = [sysconfig.get_config_var("LIBDIR") or "", str(dist.libs)]
    if env.get("LD_LIBRARY_PATH"):
        libdirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(d for d in libdirs if d)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("PYTHONHOME", None)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def end_orphaned_stubs(server_pid: int) -> list[int]:
    """SIGKILL the python-backend stubs of a tritonserver that is gone (``server_pid``) and
    remove their shared-memory regions; returns their pids. A stub busy with a request
    when its server was killed outlives it for minutes, holding its memory. Linux only
    (reads /proc); a no-op elsewhere."""
    ended = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # stub argv: binary, model.py, shm region, shm sizes (2), parent pid, ...
        if len(argv) < 6 or not argv[0].endswith(b"triton_python_backend_stub"):
            continue
        if argv[5] != str(server_pid).encode():
            continue
        try:
            os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue
        ended.append(int(entry.name))
        region = Path("/dev/shm") / os.fsdecode(argv[2])
        if "/" not in os.fsdecode(argv[2]):
            region.unlink(missing_ok=True)
    deadline = time.monotonic() + 5.0  # gone (a zombie's cmdline is empty) before returning
    while time.monotonic() < deadline and any(_has_cmdline(pid) for pid in ended):
        time.sleep(0.02)
    return ended


def _has_cmdline(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


# ---------------------------------------------------------------------------------------
# The server process


class TritonServer:
    """tritonserver on loopback serving the CPU flavour of ``model_repository``.

    Ports given as 0 are picked free. ``start()`` returns once the server is ready (all
    models loaded) or raises ``TritonStartError`` with the log's tail; ``stop()`` sends
    SIGTERM and waits (SIGKILL after ``grace`` seconds). Models are loaded with
    ``--model-control-mode=explicit --load-model=*`` so that clients (tests) can unload
    and load them through the repository API.
    """

    def __init__(
        self,
        model_repository: str | os.PathLike,
        *,
        grpc_port: int = 8001,
        http_port: int = 8000,
        metrics_port: int = 8002,
        host: str = "127.0.0.1",
        workdir: str | os.PathLike | None = None,  # None: a temporary directory
        intra_op_threads: int = 0,  # onnxruntime threads per model instance (0: default)
        log_verbose: int = 0,
        extra_args: tuple[str, ...] = (),
        stdout: int | None = None,  # None: log to <workdir>/tritonserver.log
    ):
        self.model_repository = Path(model_repository)
        self.host = host
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.intra_op_threads = intra_op_threads
        self.log_verbose = log_verbose
        self.extra_args = tuple(extra_args)
        self._stdout = stdout
        self._given_workdir = Path(workdir) if workdir is not None else None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.workdir: Path | None = None
        self.process: subprocess.Popen | None = None
        self.models: list[str] = []
        self._log = None

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "tritonserver.log"

    def prepare(self) -> list[str]:
        """Build the work directory (CPU repository + backends); idempotent."""
        if self.workdir is not None:
            return self.models
        if self._given_workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="stylegate-triton-")
            self.workdir = Path(self._tmp.name)
        else:
            self.workdir = self._given_workdir
            for sub in ("repository", "backends"):
                shutil.rmtree(self.workdir / sub, ignore_errors=True)
            self.workdir.mkdir(parents=True, exist_ok=True)
        dist = TritonDistribution.find()
        self._dist = dist
        self.models = build_cpu_repository(
            self.model_repository,
            self.workdir / "repository",
            intra_op_threads=self.intra_op_threads,
        )
        prepare_backends(self.workdir / "backends", dist)
        return self.models

    def command(self) -> list[str]:
        assert self.workdir is not None
        # A shm prefix of our own: several servers (and the stubs of each) may share /dev/shm.
        shm_prefix = f"stylegate_{os.getpid()}_{self.grpc_port}_"
        return [
            str(self._dist.binary),
            f"--model-repository={self.workdir / 'repository'}",
            f"--backend-directory={self.workdir / 'backends'}",
            "--model-control-mode=explicit",
            "--load-model=*",
            "--disable-auto-complete-config",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            f"--log-verbose={self.log_verbose}",
            *self.extra_args,
        ]

    def start(self, timeout: float = 180.0) -> TritonServer:
        if self.running:
            return self
        self.prepare()
        env = server_env(self._dist)
        if self._stdout is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command(),
            env=env,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log if self._stdout is None else self._stdout,
            stderr=subprocess.STDOUT,
        )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def is_ready(self) -> bool:
        try:
            url = f"http://{self.http_url}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                code = self.process.returncode if self.process else None
                raise TritonStartError(f"tritonserver exited with {code}:\n{self.log_tail()}")
            if self.is_ready():
                return
            time.sleep(0.2)
        raise TritonStartError(f"tritonserver not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if self.workdir is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        if self.running:
            self.process.send_signal(signum)

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM (Triton finishes in-flight requests and unloads), SIGKILL past ``grace``.
        After a server that did not stop cleanly (killed), its leftover python stubs are
        ended and their shared memory removed."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(grace)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            code = self.process.returncode
            if code != 0:
                end_orphaned_stubs(self.process.pid)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def cleanup(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.workdir = None

    def __enter__(self) -> TritonServer:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


def start_triton(model_repository: str | os.PathLike, **kwargs) -> TritonServer:
    """Start a server (see ``TritonServer``); the caller stops it with ``cleanup()``."""
    return TritonServer(model_repository, **kwargs).start()


# ---------------------------------------------------------------------------------------
# CLI


@click.command()
@click.option(
    "--model-repository",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("model_repository"),
    show_default=True,
    help="Production model repository (served through its CPU flavour).",
)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--metrics-port", type=int, default=8002, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to build the CPU-flavour repository (default: a temporary directory).",
)
@click.option("--intra-op-threads", type=int, default=0, help="onnxruntime threads per model.")
@click.option("--log-verbose", type=int, default=0)
@click.option("--startup-timeout", type=float, default=300.0, show_default=True)
# TLS on the gRPC port: tritonserver's own flags, passed through (k8s/base/triton.yaml)
@click.option("--grpc-use-ssl", type=click.BOOL, default=False, help="TLS on the gRPC port.")
@click.option(
    "--grpc-use-ssl-mutual", type=click.BOOL, default=False, help="Require client certificates."
)
@click.option("--grpc-server-cert", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--grpc-server-key", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option(
    "--grpc-root-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="CA of the client certificates (mutual TLS).",
)
def triton(
    model_repository: Path,
    grpc_port: int,
    http_port: int,
    metrics_port: int,
    host: str,
    workdir: Path | None,
    intra_op_threads: int,
    log_verbose: int,
    startup_timeout: float,
    grpc_use_ssl: bool,
    grpc_use_ssl_mutual: bool,
    grpc_server_cert: str | None,
    grpc_server_key: str | None,
    grpc_root_cert: str | None,
) -> None:
    """Run a real tritonserver (from nvidia-pytriton) in the foreground on the model
    repository, through its python-backend CPU flavour. Stops on SIGINT/SIGTERM."""
    if grpc_use_ssl and not (grpc_server_cert and grpc_server_key):
        raise click.UsageError("--grpc-use-ssl needs --grpc-server-cert and --grpc-server-key")
    if grpc_use_ssl_mutual and not (grpc_use_ssl and grpc_root_cert):
        raise click.UsageError("--grpc-use-ssl-mutual needs --grpc-use-ssl and --grpc-root-cert")
    tls: list[str] = []
    if grpc_use_ssl:
        tls += ["--grpc-use-ssl=true", f"--grpc-server-cert={grpc_server_cert}"]
        tls += [f"--grpc-server-key={grpc_server_key}"]
        if grpc_root_cert:
            tls.append(f"--grpc-root-cert={grpc_root_cert}")
        if grpc_use_ssl_mutual:
            tls.append("--grpc-use-ssl-mutual=true")
    server = TritonServer(
        model_repository,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        host=host,
        workdir=workdir,
        intra_op_threads=intra_op_threads,
        log_verbose=log_verbose,
        stdout=sys.stderr.fileno(),  # the server's log is the command's log
        extra_args=tuple(tls),
    )
    models = server.prepare()
    click.echo(f"stylegate triton: serving {', '.join(models)} from {server.workdir}", err=True)

    stopping = []

    def forward(signum, _frame):
        stopping.append(signum)
        server.signal(signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    try:
        server.start(timeout=startup_timeout)
    except TritonStartError as exc:
        server.cleanup()
        if stopping:  # stopped while starting
            click.echo("stylegate triton: stopped", err=True)
            return
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"stylegate triton: ready, grpc {server.grpc_url}  http {server.http_url}"
        f"  metrics {server.metrics_url}",
        err=True,
    )
    code = server.wait()
    server.cleanup()
    if not stopping and code != 0:
        raise click.ClickException(f"tritonserver exited with {code}")
    click.echo("stylegate triton: stopped", err=True)
