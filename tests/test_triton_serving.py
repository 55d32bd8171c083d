"""The networks served by a REAL tritonserver (nvidia-pytriton's, through the CPU flavour
that ``stylegate triton`` builds) and the gateway's ``TritonBackend`` in front of it.

One server for the module (started once, on free loopback ports): served outputs equal
onnxruntime in-process for every model, Triton's dynamic batcher forms batches from
concurrent inversion steps, the backend's start-up checks, priorities, deadlines,
unavailability with recovery after a restart, and kill -9 with Invert streams in flight
(every stream gets a status; the same gateway recovers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from stylegate.ops.triton_local import (
    TritonServer,
    build_cpu_repository,
    end_orphaned_stubs,
    free_port,
)
from stylegate.service.backends.base import Priority
from stylegate.service.backends.triton import TritonBackend, expected_models
from stylegate.service.errors import BackendUnavailable, DeadlineExceeded, GatewayError
from stylegate.service.metadata import RepositoryInfo, load_repository
from stylegate.service.signatures import METADATA_FILE

pytestmark = pytest.mark.triton

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def repository(tiny_repository) -> RepositoryInfo:
    return load_repository(tiny_repository)


@pytest.fixture(scope="module")
def server(repository):
    triton = TritonServer(
        repository.root, grpc_port=0, http_port=0, metrics_port=0, intra_op_threads=1
    )
    triton.start(timeout=300)
    yield triton
    code = triton.stop()
    log = triton.log_tail(80)
    triton.cleanup()
    assert code == 0, f"tritonserver exited with {code}:\n{log}"


@pytest.fixture
def client(server):
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        yield c


def run(coro):
    return asyncio.run(coro)


def random_inputs(
    repository: RepositoryInfo, model: str, batch: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Inputs of ``model`` in range: images in [-1, 1], loss weights and masks positive."""
    rng = np.random.default_rng(seed)
    expected = expected_models(repository)[model]
    inputs = {}
    for name, (_, shape) in expected.inputs.items():
        if name == "loss_weights":
            value = rng.uniform(0.1, 1.0, (batch, *shape))
        elif name == "mask":
            value = (rng.uniform(size=(batch, *shape)) > 0.3).astype(np.float32)
        elif name == "noise_gain":
            value = rng.uniform(0, 1, (batch, *shape))
        elif name in ("image", "target"):
            value = rng.uniform(-1, 1, (batch, *shape))
        else:
            value = rng.standard_normal((batch, *shape))
        inputs[name] = value.astype(np.float32)
    return inputs


def infer_inputs(inputs: dict[str, np.ndarray]) -> list[grpcclient.InferInput]:
    """A request's tensors for ``tritonclient``'s ``infer``."""
    request = []
    for name, value in inputs.items():
        tensor = grpcclient.InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(value)
        request.append(tensor)
    return request


def onnxruntime_outputs(repository: RepositoryInfo, model: str, inputs) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(
        str(repository.model_path(model)), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    feed = {i.name: inputs[i.name] for i in session.get_inputs()}
    return dict(zip(names, session.run(names, feed)))


def assert_close(model: str, name: str, got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape, f"{model}.{name}: {got.shape} != {want.shape}"
    if name == "grad":  # relative L2, as docs/design.md says for gradients
        err = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12)
        assert err < 1e-4, f"{model}.{name}: relative L2 error {err:.2e}"
    else:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{model}.{name}")


# ---------------------------------------------------------------------------------------
# the CPU flavour


def test_cpu_flavour_keeps_names_tensors_and_batching(repository, tmp_path):
    models = build_cpu_repository(repository.root, tmp_path / "cpu")
    assert set(models) >= repository.served_models
    for model in models:
        production = text_format.Parse(
            (repository.root / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
        )
        flavour = text_format.Parse(
            (tmp_path / "cpu" / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
        )
        assert production.platform in ("onnxruntime_onnx", "tensorrt_plan") or production.backend
        assert flavour.backend == "python" and not flavour.platform
        assert flavour.name == production.name == model
        assert list(flavour.input) == list(production.input)
        assert list(flavour.output) == list(production.output)
        assert flavour.max_batch_size == production.max_batch_size > 0
        fb, pb = flavour.dynamic_batching, production.dynamic_batching
        assert fb.max_queue_delay_microseconds == pb.max_queue_delay_microseconds
        assert list(fb.preferred_batch_size) == list(pb.preferred_batch_size)
        assert fb.default_queue_policy.max_queue_size == pb.default_queue_policy.max_queue_size
        assert fb.priority_levels >= 2
        assert all(g.kind == g.KIND_CPU for g in flavour.instance_group)
        version = tmp_path / "cpu" / model / "1"
        assert (version / "model.py").is_file()
        assert (version / "model.onnx").resolve() == (
            repository.root / model / "1" / "model.onnx"
        ).resolve()
    # the production repository is read, never written
    assert not (repository.root / models[0] / "1" / "model.py").exists()


def test_cpu_flavour_gives_the_step_two_narrow_instances(repository, tmp_path):
    """As the embedded backend's narrow lanes: with 2 threads the inversion step gets two
    instances of one thread each; every other model one instance of both threads."""
    build_cpu_repository(repository.root, tmp_path / "cpu", intra_op_threads=2)
    steps = repository.models_of("inversion_step")
    assert steps
    for model in repository.served_models:
        flavour = text_format.Parse(
            (tmp_path / "cpu" / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
        )
        instances = sum(g.count for g in flavour.instance_group)
        threads = flavour.parameters["intra_op_threads"].string_value
        run_batch = flavour.parameters["run_batch"].string_value
        want = (2, "1", "2") if model in steps else (1, "2", "")
        assert (instances, threads, run_batch) == want, model


# ---------------------------------------------------------------------------------------
# served outputs


def test_every_model_served_equals_onnxruntime(repository, server, client):
    for model in sorted(repository.served_models):
        for batch in (1, 3):
            inputs = random_inputs(repository, model, batch, seed=batch)
            result = client.infer(model, infer_inputs(inputs))
            want = onnxruntime_outputs(repository, model, inputs)
            for name, value in want.items():
                assert_close(model, name, result.as_numpy(name), value)


def test_narrow_step_instances_run_a_batch_in_runs_of_two_with_the_same_outputs(repository):
    """A server started with 2 threads (the step on two single-thread instances that run
    at most 2 samples per onnxruntime call): one request of 5 steps, run as 2 + 2 + 1 in
    the stub, gives onnxruntime's outputs for the 5 at once."""
    triton = TritonServer(
        repository.root, grpc_port=0, http_port=0, metrics_port=0, intra_op_threads=2
    )
    triton.start(timeout=300)
    try:
        with grpcclient.InferenceServerClient(triton.grpc_url) as c:
            for model in sorted(repository.models_of("inversion_step")):
                inputs = random_inputs(repository, model, 5, seed=5)
                result = c.infer(model, infer_inputs(inputs))
                for name, value in onnxruntime_outputs(repository, model, inputs).items():
                    assert_close(model, name, result.as_numpy(name), value)
    finally:
        assert triton.stop() == 0, triton.log_tail(80)
        triton.cleanup()


def test_backend_infer_equals_onnxruntime_and_splits_large_batches(repository, server):
    async def main():
        backend = TritonBackend(repository, server.grpc_url)
        await backend.load()
        try:
            assert backend.ready and await backend.healthy()
            for model in sorted(repository.served_models):
                inputs = random_inputs(repository, model, 2, seed=7)
                got = await backend.infer(model, inputs, timeout=60)
                want = onnxruntime_outputs(repository, model, inputs)
                assert set(got) == set(want)
                for name in want:
                    assert_close(model, name, got[name], want[name])
                    assert got[name].flags.writeable
            # a call larger than Triton's max_batch_size is split and reassembled
            limit = backend._max_batch["synthesis"]
            inputs = random_inputs(repository, "synthesis", limit + 3, seed=8)
            got = await backend.infer("synthesis", inputs, timeout=120)
            want = onnxruntime_outputs(repository, "synthesis", inputs)
            assert_close("synthesis", "image", got["image"], want["image"])
            # a tensor the gateway built wrongly is its own mistake (INTERNAL), not the client's
            with pytest.raises(GatewayError, match="ws"):
                await backend.infer("synthesis", {**inputs, "ws": inputs["ws"][:, :1]})
        finally:
            await backend.close()

    run(main())


def test_concurrent_inversion_steps_are_batched(repository, server):
    callers = 32

    async def main():
        backend = TritonBackend(repository, server.grpc_url)
        await backend.load()
        try:
            before = (await backend.batch_statistics(["inversion_step"]))["inversion_step"]
            inputs = [
                random_inputs(repository, "inversion_step", 1, seed=i) for i in range(callers)
            ]
            results = await asyncio.gather(
                *(backend.infer("inversion_step", x, timeout=120) for x in inputs)
            )
            after = (await backend.batch_statistics(["inversion_step"]))["inversion_step"]
        finally:
            await backend.close()
        return inputs, results, before, after

    inputs, results, before, after = run(main())
    samples = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    assert samples == callers
    assert executions < callers, f"{executions} executions for {callers} concurrent steps"
    new = {
        b: n - before.executions_by_batch_size.get(b, 0)
        for b, n in after.executions_by_batch_size.items()
    }
    assert max(b for b, n in new.items() if n > 0) > 1, new
    assert after.mean_batch_size > 1
    # batching does not mix up the samples
    for x, got in zip(inputs[:4], results[:4]):
        want = onnxruntime_outputs(repository, "inversion_step", x)
        for name in want:
            assert_close("inversion_step", name, got[name], want[name])


# ---------------------------------------------------------------------------------------
# the backend's start-up checks


def test_signature_mismatch_is_caught_naming_model_and_tensor(repository, server, tmp_path):
    # a gateway whose metadata disagrees with what Triton serves: num_ws one larger
    meta = json.loads((repository.root / METADATA_FILE).read_text())
    generator = meta["generators"][meta.get("default_generator", "base")]
    generator["num_ws"] += 1
    if "layer_resolutions" in generator:
        generator["layer_resolutions"].append(generator["layer_resolutions"][-1])
    (tmp_path / METADATA_FILE).write_text(json.dumps(meta))
    backend = TritonBackend(load_repository(tmp_path), server.grpc_url)
    with pytest.raises(BackendUnavailable) as excinfo:
        run(backend.load())
    message = str(excinfo.value)
    synthesis = generator["models"]["synthesis"]
    assert f"model {synthesis!r} (synthesis): input 'ws' has shape" in message
    assert "num_ws" in message
    assert not backend.ready


def test_missing_model_is_caught(repository, server, tmp_path):
    meta = json.loads((repository.root / METADATA_FILE).read_text())
    generator = meta["generators"][meta.get("default_generator", "base")]
    generator["models"]["mapping"] = "no_such_mapping"
    (tmp_path / METADATA_FILE).write_text(json.dumps(meta))
    backend = TritonBackend(load_repository(tmp_path), server.grpc_url)
    with pytest.raises(BackendUnavailable, match="no_such_mapping"):
        run(backend.load())


def test_unreachable_triton_fails_load():
    backend = TritonBackend(_single_model_repository(), f"127.0.0.1:{free_port()}", retries=1)
    with pytest.raises(BackendUnavailable, match="127.0.0.1"):
        run(backend.load())


def _single_model_repository() -> RepositoryInfo:
    from stylegate.service.metadata import GeneratorInfo

    generator = GeneratorInfo(
        name="g",
        description="",
        resolution=8,
        num_ws=2,
        w_dim=4,
        z_dim=4,
        feature_channels=0,
        feature_resolution=0,
        layer_resolutions=(),
        w_avg=np.zeros(4, np.float32),
        models={"mapping": "mapping"},
        attributes=(),
        directions={},
    )
    return RepositoryInfo(root=Path("."), default_generator="g", generators={"g": generator})


# ---------------------------------------------------------------------------------------
# priority and deadlines


def test_interactive_requests_overtake_queued_bulk_ones(repository, server):
    model = repository.generator().models["inversion_step"]

    async def main():
        backend = TritonBackend(repository, server.grpc_url)
        await backend.load()
        full = backend._max_batch[model]
        bulk_inputs = random_inputs(repository, model, full)  # one whole batch per request
        one = random_inputs(repository, model, 1, seed=1)
        try:
            started = time.perf_counter()
            for _ in range(2):
                await backend.infer(model, bulk_inputs, priority=Priority.BULK, timeout=120)
            per_batch = (time.perf_counter() - started) / 2
            # enough queued bulk work (about 0.6 s) that a FIFO queue would make an
            # interactive call wait for all of it
            bulk = int(min(64, max(12, 0.6 / per_batch)))
            order = []

            async def call(tag, inputs, priority):
                await backend.infer(model, inputs, priority=priority, timeout=300)
                order.append(tag)

            tasks = [
                asyncio.create_task(call("bulk", bulk_inputs, Priority.BULK)) for _ in range(bulk)
            ]
            await asyncio.sleep(min(0.1, 2 * per_batch))  # Triton is working through them
            tasks.append(asyncio.create_task(call("interactive", one, Priority.INTERACTIVE)))
            await asyncio.gather(*tasks)
        finally:
            await backend.close()
        return order, bulk

    order, bulk = run(main())
    position = order.index("interactive")
    # FIFO: last. Priority queue: in the next batch Triton forms after it arrives.
    assert position < bulk * 3 // 4, f"interactive finished {position + 1}th of {bulk + 1}"


def test_deadline_exceeded(repository, server):
    async def main():
        backend = TritonBackend(repository, server.grpc_url)
        await backend.load()
        try:
            inputs = random_inputs(repository, "inversion_step", 8)
            with pytest.raises(DeadlineExceeded):
                await backend.infer("inversion_step", inputs, timeout=1e-4)
            # and the next call, with time to spare, is fine
            await backend.infer("inversion_step", inputs, timeout=60)
        finally:
            await backend.close()

    run(main())


# ---------------------------------------------------------------------------------------
# the gateway on both backends


def test_gateway_gives_the_same_results_on_triton_and_embedded(repository, server):
    from support.gateway_harness import running_gateway

    from stylegate.service.backends.embedded import EmbeddedBackend
    from stylegate.service.client import image_array, tensor_to_array

    def requests(client) -> dict[str, np.ndarray]:
        out = {}
        for i, image in enumerate(client.generate([0, 1, 2], fmt="raw", return_latents=True)):
            out[f"generate{i}.image"] = tensor_to_array(image.image.tensor)
            out[f"generate{i}.ws"] = tensor_to_array(image.ws)
        target = client.generate([7], fmt="png")[0].image
        result = client.invert(target.data, steps=4, fmt="raw")
        out["invert.ws"] = tensor_to_array(result.ws)
        out["invert.reconstruction"] = tensor_to_array(result.reconstruction.tensor)
        out["invert.loss"] = np.float32([result.loss])
        direction = min(repository.generator().directions)
        edited = client.edit(3, [(direction, 2.0)], fmt="raw", return_latent=True)
        out["edit.image"] = tensor_to_array(edited.image.tensor)
        out["edit.ws"] = tensor_to_array(edited.ws)
        out["png"] = image_array(target)
        return out

    results = {}
    backends = {
        "triton": TritonBackend(repository, server.grpc_url),
        "embedded": EmbeddedBackend(repository, intra_op_threads=1),
    }
    for name, backend in backends.items():
        with running_gateway(repository, backend) as gw, gw.client(timeout=120) as client:
            assert client.model_info().backend == name
            results[name] = requests(client)
            assert gw.run(gw.server.probe_backend(), timeout=30)  # SERVING; statistics exported
    # Triton's own batch statistics reach the gateway's /metrics through the health probe
    from prometheus_client import REGISTRY

    step = repository.generator().models["inversion_step"]
    assert REGISTRY.get_sample_value("stylegate_triton_inference_count", {"model": step}) >= 4
    assert REGISTRY.get_sample_value("stylegate_triton_mean_batch_size", {"model": step}) >= 1
    for key, want in results["embedded"].items():
        got = results["triton"][key]
        assert got.shape == want.shape, key
        if key == "png":  # 8-bit images: allow one level of rounding
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, key
        elif key.startswith("invert"):  # 4 Adam steps amplify float noise a little
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3, err_msg=key)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=key)


# ---------------------------------------------------------------------------------------
# unavailability and recovery (restarts the module's server: keep these last)


def test_unloaded_model_is_unavailable_until_loaded_again(repository, server, client):
    model = repository.generator().models["mapping"]

    async def call(backend):
        return await backend.infer(model, random_inputs(repository, model, 1), timeout=30)

    async def main():
        backend = TritonBackend(repository, server.grpc_url)
        await backend.load()
        try:
            await call(backend)
            client.unload_model(model)
            with pytest.raises(BackendUnavailable, match=model):
                await call(backend)
            client.load_model(model)
            await call(backend)
        finally:
            if not client.is_model_ready(model):
                client.load_model(model)
            await backend.close()

    run(main())


KILL_TRIALS = 3
STREAMS = 6
STATUS_BOUND_S = 10.0  # the requirement: every stream hears of the failure within this


def _drain(stream, ended: dict, index: int) -> None:
    """Read an Invert stream to its end; record (status code, monotonic time) it ended."""
    code = grpc.StatusCode.OK
    try:
        for _ in stream:
            pass
    except grpc.RpcError as exc:
        code = exc.code()
    ended[index] = (code, time.monotonic())


def _inversions_in_flight(client, target: bytes, n: int):
    """``n`` long Invert streams (no early stop), each with a step done, read by threads
    that record how each ended: (streams, ended, readers)."""
    streams = [client.invert_stream(target, steps=1000, early_stop_tol=0.0) for _ in range(n)]
    for stream in streams:
        assert next(stream).HasField("progress")
    ended: dict[int, tuple[grpc.StatusCode, float]] = {}
    readers = [
        threading.Thread(target=_drain, args=(s, ended, i), daemon=True)
        for i, s in enumerate(streams)
    ]
    for reader in readers:
        reader.start()
    return streams, ended, readers


def _health(channel) -> int:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from stylegate.service.server import SERVICE_NAME

    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5).status


@contextlib.contextmanager
def _restarted_after(server: TritonServer):
    """The module's server running again however the block ends (later tests need it)."""
    try:
        yield
    finally:
        if not server.running:
            server.stop()
            server.start(300)


def _wait_for(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what} not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_kill_9_ends_every_stream_with_unavailable_and_the_gateway_recovers(repository, server):
    """kill -9 of tritonserver with Invert streams in flight, KILL_TRIALS times: every
    stream ends with UNAVAILABLE within STATUS_BOUND_S (none silent, none counted as a
    client's cancellation), health goes NOT_SERVING, and after tritonserver is started
    again on the same ports the same gateway serves Generate and Invert and is SERVING."""
    from grpc_health.v1 import health_pb2
    from prometheus_client import REGISTRY
    from support.gateway_harness import running_gateway

    def counted(code: str) -> float:
        labels = {"method": "Invert", "code": code}
        return REGISTRY.get_sample_value("stylegate_rpc_requests_total", labels) or 0.0

    def inversions(outcome: str) -> float:
        labels = {"method": "in_domain", "outcome": outcome}
        return REGISTRY.get_sample_value("stylegate_inversions_total", labels) or 0.0

    backend = TritonBackend(repository, server.grpc_url)
    figures = []
    with (
        running_gateway(repository, backend, health_interval_s=0.5) as gw,
        gw.client(timeout=120) as client,
        _restarted_after(server),
    ):
        target = client.generate([7], fmt="png")[0].image.data
        for trial in range(KILL_TRIALS):
            before = {code: counted(code) for code in ("CANCELLED", "UNAVAILABLE")}
            cancelled = inversions("cancelled")
            # long inversions, each with a step done: in flight at the kill
            streams, ended, readers = _inversions_in_flight(client, target, STREAMS)
            killed, pid = time.monotonic(), server.process.pid
            os.kill(pid, signal.SIGKILL)
            for reader in readers:
                reader.join(max(0.0, killed + STATUS_BOUND_S + 5 - time.monotonic()))
            hung = [i for i in range(STREAMS) if i not in ended]
            for i in hung:
                streams[i].cancel()
            assert not hung, f"trial {trial}: streams {hung} got no status"
            waits = sorted(t - killed for _, t in ended.values())
            codes = sorted({code.name for code, _ in ended.values()})
            assert codes == ["UNAVAILABLE"], f"trial {trial}: {codes}"
            assert waits[-1] < STATUS_BOUND_S, f"trial {trial}: {waits}"
            # the gateway counted them as failures of the backend, not as cancellations
            assert counted("CANCELLED") == before["CANCELLED"]
            assert counted("UNAVAILABLE") - before["UNAVAILABLE"] >= STREAMS
            assert inversions("cancelled") == cancelled
            with grpc.insecure_channel(gw.address) as channel:
                _wait_for(
                    lambda ch=channel: _health(ch) == health_pb2.HealthCheckResponse.NOT_SERVING,
                    STATUS_BOUND_S,
                    "NOT_SERVING",
                )
                not_serving = time.monotonic() - killed
                with pytest.raises(grpc.RpcError) as refused:
                    client.generate([1], timeout=30)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                # tritonserver back on the same ports; the gateway is not restarted
                server.stop()  # reaps the killed process and ends its orphaned stubs
                assert not server.running
                assert end_orphaned_stubs(pid) == []
                server.start(300)
                back = time.monotonic()
                assert len(client.generate([0, 1], timeout=30)) == 2
                generate = time.monotonic() - back
                result = client.invert(target, steps=3, timeout=60)
                assert result.steps == 3
                serving = time.monotonic() - back
                serving += _wait_for(
                    lambda ch=channel: _health(ch) == health_pb2.HealthCheckResponse.SERVING,
                    STATUS_BOUND_S,
                    "SERVING",
                )
            figures.append((waits[0], waits[-1], not_serving, generate, serving))
    print("\nkill -9 trials: after the kill, then after tritonserver is ready again")
    for first, last, down, generate, serving in figures:
        print(
            f"  status {first:.2f}-{last:.2f} s, NOT_SERVING {down:.2f} s;"
            f" restarted: Generate {generate:.2f} s, Invert+SERVING {serving:.2f} s"
        )
    assert server.running


HUNG_CAP_S = 2.0  # the backend's call cap in the hung-Triton test


def test_a_hung_triton_ends_streams_with_unavailable_within_the_call_cap(repository, server):
    """SIGSTOP of tritonserver with Invert streams in flight: its connections stay open and
    nothing answers, which keepalive would notice only after 30 + 10 s. Every stream ends
    UNAVAILABLE within the backend's call cap (plus slack), and after SIGCONT the same
    gateway serves again."""
    from support.gateway_harness import running_gateway

    backend = TritonBackend(repository, server.grpc_url, call_timeout_s=HUNG_CAP_S)
    with (
        running_gateway(repository, backend, health_interval_s=0.5) as gw,
        gw.client(timeout=120) as client,
    ):
        target = client.generate([7], fmt="png")[0].image.data
        streams, ended, readers = _inversions_in_flight(client, target, 4)
        pid = server.process.pid
        stopped = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            for reader in readers:
                reader.join(max(0.0, stopped + HUNG_CAP_S + 10 - time.monotonic()))
        finally:
            os.kill(pid, signal.SIGCONT)
        hung = [i for i in range(len(streams)) if i not in ended]
        for i in hung:
            streams[i].cancel()
        assert not hung, f"streams {hung} got no status"
        waits = sorted(t - stopped for _, t in ended.values())
        assert sorted({code.name for code, _ in ended.values()}) == ["UNAVAILABLE"]
        assert waits[-1] < HUNG_CAP_S + 5, waits
        print(f"\nhung Triton: streams ended UNAVAILABLE {waits[0]:.2f}-{waits[-1]:.2f} s")

        def serves() -> bool:
            try:
                return len(client.generate([0], timeout=10)) == 1
            except grpc.RpcError:
                return False

        _wait_for(serves, 60, "Generate after SIGCONT")
        assert client.invert(target, steps=3, timeout=60).steps == 3
    # A fresh server for the tests after this one: once in CI, a SIGSTOP episode left a
    # python-backend model that never unloaded, so the next SIGTERM ran into Triton's 30 s
    # exit timeout and a SIGKILL (not reproduced in 5 tries under load; the CPU flavour's
    # stubs, not the gateway, are what a SIGSTOP can leave in an odd state)
    code = server.stop()
    print(f"tritonserver after SIGSTOP/SIGCONT exited with {code}")
    server.start(300)


def test_triton_down_is_unavailable_and_backend_recovers_after_restart(repository, server):
    model = repository.generator().models["synthesis"]
    inputs = random_inputs(repository, model, 2)

    async def main():
        backend = TritonBackend(repository, server.grpc_url, retries=2)
        await backend.load()
        try:
            want = await backend.infer(model, inputs, timeout=30)
            code = server.stop()
            assert code == 0, f"tritonserver exited with {code}:\n{server.log_tail(120)}"
            with pytest.raises(BackendUnavailable, match="Triton at"):
                await backend.infer(model, inputs, timeout=10)
            assert not await backend.healthy()
            assert not backend.ready
            await asyncio.to_thread(server.start, 300)
            # the same backend object, no reload: a new channel, the model checked again
            got = await backend.infer(model, inputs, timeout=30)
            np.testing.assert_array_equal(got["image"], want["image"])
            assert await backend.healthy() and backend.ready
        finally:
            await backend.close()

    run(main())
    assert server.running


# ---------------------------------------------------------------------------------------
# the command


def test_stylegate_triton_command_serves_and_stops_on_sigint(repository, tmp_path):
    ports = {"grpc": free_port(), "http": free_port(), "metrics": free_port()}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stylegate.cli.main",
            "triton",
            "--model-repository",
            str(repository.root),
            "--grpc-port",
            str(ports["grpc"]),
            "--http-port",
            str(ports["http"]),
            "--metrics-port",
            str(ports["metrics"]),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while not any("stylegate triton: ready" in line for line in lines):
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
            time.sleep(0.2)
        with grpcclient.InferenceServerClient(f"127.0.0.1:{ports['grpc']}") as c:
            assert c.is_server_ready()
            assert all(c.is_model_ready(m) for m in repository.served_models)
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=5) as r:
            assert b"nv_inference_count" in r.read()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        reader.join(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = "".join(lines)
    assert process.returncode == 0, text[-3000:]
    assert "stylegate triton: stopped" in text
    with (
        grpcclient.InferenceServerClient(f"127.0.0.1:{ports['grpc']}") as c,
        pytest.raises(InferenceServerException),
    ):
        c.is_server_live(client_timeout=2)
