"""The gateway end to end: a real grpc.aio server on a loopback port, the real
EmbeddedBackend (onnxruntime + micro-batcher) over a model repository, and the client
library over a real channel. Covers every RPC, streaming, cancellation, deadlines, error
codes, metrics, health and draining."""

from __future__ import annotations

import asyncio
import io
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image
from prometheus_client import REGISTRY
from support.gateway_fakes import FakeNetworks, write_onnx_repository
from support.gateway_harness import running_gateway

from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.service.backends.embedded import EmbeddedBackend
from stylegate.service.client import image_array, tensor_to_array, to_tensor
from stylegate.service.metadata import RepositoryInfo, load_repository


@pytest.fixture(scope="module")
def repository(request, tmp_path_factory) -> RepositoryInfo:
    """The export engineer's random-weight repository when its fixture exists, else the
    ONNX fake (same contract, smaller)."""
    try:
        tiny = request.getfixturevalue("tiny_repository")
    except pytest.FixtureLookupError:
        return write_onnx_repository(tmp_path_factory.mktemp("gateway_repo"))
    return tiny if isinstance(tiny, RepositoryInfo) else load_repository(tiny)


def embedded(repository: RepositoryInfo, **options) -> EmbeddedBackend:
    return EmbeddedBackend(repository, intra_op_threads=1, **options)


class SlowBackend:
    """The real backend with a pause before each call: makes in-flight work observable."""

    def __init__(self, inner, delay: float):
        self.inner, self.delay, self.name = inner, delay, inner.name
        self.calls: dict[str, int] = {}

    @property
    def ready(self):
        return self.inner.ready

    async def load(self):
        await self.inner.load()

    async def healthy(self):
        return self.up and await self.inner.healthy()

    up = True  # tests flip this to play a backend that went down

    async def infer(self, model, inputs, **kw):
        self.calls[model] = self.calls.get(model, 0) + 1
        await asyncio.sleep(self.delay)
        return await self.inner.infer(model, inputs, **kw)

    async def reload(self, repository):
        await self.inner.reload(repository)

    async def refresh_metrics(self):
        await self.inner.refresh_metrics()

    async def release_memory(self):
        await self.inner.release_memory()

    async def close(self):
        await self.inner.close()


@pytest.fixture(scope="module")
def gateway(repository):
    with running_gateway(
        repository, embedded(repository), max_steps=200, max_image_side=512, max_generate=16
    ) as gw:
        yield gw


@pytest.fixture(scope="module")
def client(gateway):
    with gateway.client(timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def info(client) -> pb.ModelInfoResponse:
    return client.model_info()


@pytest.fixture(scope="module")
def face_png(client) -> bytes:
    """A generated face (a stand-in for a real photo) as PNG bytes, at a larger size and
    non-square, so the resize path runs."""
    img = Image.fromarray(image_array(client.generate([11])[0].image))
    buf = io.BytesIO()
    img.resize((img.width * 3, img.height * 2)).save(buf, format="PNG")
    return buf.getvalue()


def rpc_error(fn) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        result = fn()
        if hasattr(result, "__next__"):
            list(result)
    return err.value


# -- models ---------------------------------------------------------------------------


def test_list_models_and_model_info(client, repository, info):
    models = client.list_models()
    assert models.default_model == repository.default_generator
    names = {m.name for m in models.models}
    assert names == set(repository.generators)
    gen = repository.generator()
    assert (info.name, info.resolution, info.num_ws, info.w_dim, info.z_dim) == (
        gen.name,
        gen.resolution,
        gen.num_ws,
        gen.w_dim,
        gen.z_dim,
    )
    assert info.can_invert and info.is_default and info.backend == "embedded"
    assert set(info.networks) >= {"mapping", "synthesis", "encoder", "features", "inversion_step"}
    assert {d.name for d in info.directions} == set(gen.directions)
    assert list(info.inversion_methods) == ["encoder", "optimize", "in_domain"]
    assert info.c_dim == 0
    plain = [m for m in models.models if not repository.generator(m.name).can_invert]
    assert all(not m.can_invert and not m.inversion_methods for m in plain)


def test_list_directions(client, repository):
    dirs = client.list_directions()
    assert {d.name for d in dirs} == set(repository.generator().directions)
    for d in dirs:
        assert d.std > 0 and 0 <= d.layer_start < d.layer_stop


# -- generation -----------------------------------------------------------------------


def test_generate_is_deterministic_and_honours_options(client, info):
    a = client.generate([0, 1], return_latents=True)
    b = client.generate([0, 1])
    assert [i.seed for i in a] == [0, 1]
    assert a[0].image.data == b[0].image.data and a[0].image.data != a[1].image.data
    assert image_array(a[0].image).shape == (info.resolution, info.resolution, 3)
    assert list(a[0].ws.shape) == [info.num_ws, info.w_dim]
    raw = client.generate([0], fmt="raw")[0].image
    x = tensor_to_array(raw.tensor)
    assert x.shape == (3, info.resolution, info.resolution) and x.dtype == np.float32
    # psi 0 puts every seed on w_avg
    flat = client.generate([3, 4], truncation=0.0, fmt="raw")
    np.testing.assert_allclose(
        tensor_to_array(flat[0].image.tensor), tensor_to_array(flat[1].image.tensor), atol=1e-5
    )
    jpeg = client.generate([0], fmt="jpeg")[0].image
    assert jpeg.data[:2] == b"\xff\xd8" and jpeg.format == pb.IMAGE_FORMAT_JPEG


def test_explicit_z_matches_the_seed(client, info):
    z = np.random.RandomState(5).standard_normal(info.z_dim).astype(np.float32)
    by_z = client.stub.Generate(
        pb.GenerateRequest(z=[to_tensor(z)], output=pb.OutputOptions(format=pb.IMAGE_FORMAT_RAW))
    )
    by_seed = client.generate([5], fmt="raw")
    assert by_z.images[0].seed == -1
    np.testing.assert_array_equal(
        tensor_to_array(by_z.images[0].image.tensor), tensor_to_array(by_seed[0].image.tensor)
    )


def test_batch_generate_streams_chunks_and_resumes(client):
    chunks = list(client.batch_generate(range(10, 21), chunk_size=4))
    assert [len(c.images) for c in chunks] == [4, 4, 3]
    assert [c.done for c in chunks] == [4, 8, 11] and chunks[-1].total == 11
    seeds = [i.seed for c in chunks for i in c.images]
    assert seeds == list(range(10, 21))
    # resume after the first chunk, by token and by seed: the same images follow
    resumed = list(
        client.batch_generate(range(10, 21), chunk_size=4, resume_token=chunks[0].resume_token)
    )
    assert [i.seed for c in resumed for i in c.images] == seeds[4:]
    assert resumed[0].images[0].image.data == chunks[1].images[0].image.data
    req = pb.BatchGenerateRequest(list=pb.SeedList(seeds=[7, 3, 9]), start_after=3)
    assert [i.seed for c in client.stub.BatchGenerate(req) for i in c.images] == [9]


# -- inversion ------------------------------------------------------------------------


def test_invert_streams_progress_then_the_result(client, face_png, info):
    progress = []
    result = client.invert(
        face_png, steps=12, early_stop_tol=0.0, preview_every=4, on_progress=progress.append
    )
    assert [p.step for p in progress] == list(range(1, 13))
    assert all(p.total_steps == 12 and np.isfinite(p.loss) for p in progress)
    assert [p.step for p in progress if p.HasField("preview")] == [4, 8, 12]
    assert result.method == "in_domain" and result.space == "w_plus" and result.steps == 12
    assert tensor_to_array(result.ws).shape == (info.num_ws, info.w_dim)
    assert image_array(result.reconstruction).shape == (info.resolution, info.resolution, 3)
    q = result.quality
    assert np.isfinite([q.psnr, q.ssim, q.perceptual_distance, q.in_domain_score]).all()
    assert q.psnr > 0 and -1 <= q.ssim <= 1 and q.in_domain_score >= 0
    assert result.loss <= progress[0].loss + 1e-6  # the best latent is returned


def test_invert_methods_and_spaces(client, face_png):
    enc = client.invert(face_png, method="encoder")
    assert enc.steps == 0 and enc.method == "encoder"
    opt = client.invert(face_png, method="optimize", steps=5, early_stop_tol=0.0)
    assert opt.space == "w" and opt.steps == 5
    ws = tensor_to_array(opt.ws)
    np.testing.assert_array_equal(ws, np.broadcast_to(ws[0], ws.shape))
    wp = client.invert(face_png, method="optimize", steps=3, space="w_plus")
    assert wp.space == "w_plus"


def test_invert_raw_tensor_and_mask(client, info):
    target = tensor_to_array(client.generate([2], fmt="raw")[0].image.tensor)
    mask = np.zeros((1, info.resolution, info.resolution), np.float32)
    mask[:, : info.resolution // 2] = 1
    r = client.invert(target, steps=3, mask=mask, fmt="raw")
    assert tensor_to_array(r.reconstruction.tensor).shape == target.shape


def test_concurrent_inversions_share_batched_backend_runs(gateway, face_png):
    stats = gateway.server.backend.batcher.stats
    runs0, calls0 = stats.runs["inversion_step"], stats.calls["inversion_step"]
    n, steps = 8, 10
    with gateway.client(timeout=120) as c, ThreadPoolExecutor(n) as pool:
        results = list(
            pool.map(lambda _: c.invert(face_png, steps=steps, early_stop_tol=0.0), range(n))
        )
    runs = stats.runs["inversion_step"] - runs0
    calls = stats.calls["inversion_step"] - calls0
    assert calls == n * (steps + 1)
    assert runs < calls / 2, f"{calls} step calls ran in {runs} runs"
    # batching changes nothing in the results but float rounding (a batched convolution sums
    # in another order; L-BFGS's dot products over the latent carry that to ~1e-6)
    ref = tensor_to_array(results[0].ws)
    for r in results[1:]:
        np.testing.assert_allclose(tensor_to_array(r.ws), ref, rtol=1e-5, atol=1e-5)


# -- editing --------------------------------------------------------------------------


def test_edit_latent_named_and_raw(client, info, repository):
    ws = tensor_to_array(client.generate([4], return_latents=True)[0].ws)
    name = next(iter(repository.generator().directions))
    zero = client.edit(ws, [(name, 0.0)], include_original=True, fmt="raw", return_latent=True)
    np.testing.assert_array_equal(
        tensor_to_array(zero.image.tensor), tensor_to_array(zero.original.tensor)
    )
    strong = client.edit(ws, [(name, 3.0, (0, 2))], return_latent=True)
    moved = tensor_to_array(strong.ws) - ws
    assert np.abs(moved[:2]).max() > 0 and not moved[2:].any()
    vec = np.zeros(info.w_dim, np.float32)
    vec[0] = 1
    raw = client.edit(4, [(vec, 1.5)], return_latent=True)
    np.testing.assert_allclose(
        tensor_to_array(raw.ws) - tensor_to_array(raw.source_ws),
        np.tile(1.5 * vec, (info.num_ws, 1)),
        atol=1e-5,
    )


def test_edit_an_image_and_render_it_with_another_generator(client, face_png, repository):
    name = next(iter(repository.generator().directions))
    r = client.edit(
        face_png,
        [(name, 2.0)],
        invert_options={"steps": 3},
        return_latent=True,
        include_original=True,
    )
    assert r.HasField("image") and r.HasField("original") and r.HasField("source_ws")
    others = [g for g in repository.generators if g != repository.default_generator]
    if others:
        toon = client.edit(tensor_to_array(r.source_ws), [], model=others[0])
        assert toon.model == others[0] and toon.image.data != r.original.data


def test_style_mix_and_interpolate(client, info):
    a, b = (tensor_to_array(x.ws) for x in client.generate([1, 2], return_latents=True))
    mixed = client.style_mix(1, 2, layers=(0, 2), return_latent=True)
    np.testing.assert_allclose(tensor_to_array(mixed.ws)[:2], b[:2], atol=1e-6)
    np.testing.assert_allclose(tensor_to_array(mixed.ws)[2:], a[2:], atol=1e-6)
    for mode in ("lerp", "slerp"):
        r = client.interpolate(1, 2, frames=5, mode=mode, return_latents=True)
        assert len(r.frames) == 5 and len(r.ws) == 5
        np.testing.assert_allclose(tensor_to_array(r.ws[0]), a, atol=1e-5)
        np.testing.assert_allclose(tensor_to_array(r.ws[-1]), b, atol=1e-5)


# -- errors ---------------------------------------------------------------------------


def _big_png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side)).save(buf, format="PNG")
    return buf.getvalue()


BAD_REQUESTS = {
    "undecodable image": (lambda c, i: c.invert(b"not an image"), "INVALID_ARGUMENT", "image.data"),
    "empty image": (lambda c, i: c.stub.Invert(pb.InvertRequest()), "INVALID_ARGUMENT", "image"),
    "image over the size cap": (
        lambda c, i: c.invert(_big_png(600)),
        "INVALID_ARGUMENT",
        "image.data",
    ),
    "wrong tensor shape": (
        lambda c, i: c.invert(np.zeros((3, 5, 5), np.float32)),
        "INVALID_ARGUMENT",
        "image.tensor",
    ),
    "tensor bytes and shape disagree": (
        lambda c, i: c.stub.Invert(
            pb.InvertRequest(image=pb.Image(tensor=pb.Tensor(shape=[3, 4], data=b"x")))
        ),
        "INVALID_ARGUMENT",
        "image.tensor",
    ),
    "NaN latent": (
        lambda c, i: c.edit(np.full((i.num_ws, i.w_dim), np.nan, np.float32), []),
        "INVALID_ARGUMENT",
        "latent.ws",
    ),
    "wrong latent shape": (
        lambda c, i: c.edit(np.zeros((i.num_ws + 1, i.w_dim), np.float32), []),
        "INVALID_ARGUMENT",
        "latent.ws",
    ),
    "Inf in a raw edit vector": (
        lambda c, i: c.edit(1, [(np.full(i.w_dim, np.inf, np.float32), 1.0)]),
        "INVALID_ARGUMENT",
        "edits[0].vector",
    ),
    "unknown model": (lambda c, i: c.generate([0], model="nope"), "NOT_FOUND", "model"),
    "unknown direction": (lambda c, i: c.edit(1, [("frown", 1.0)]), "NOT_FOUND", "edits[0].name"),
    "bad layer range": (
        lambda c, i: c.style_mix(1, 2, layers=(3, 1)),
        "INVALID_ARGUMENT",
        "layer_start",
    ),
    "steps over the cap": (
        lambda c, i: c.invert(np.zeros((3, i.resolution, i.resolution), np.float32), steps=100_000),
        "INVALID_ARGUMENT",
        "steps",
    ),
    "too many seeds": (lambda c, i: c.generate(range(100)), "INVALID_ARGUMENT", "seeds"),
    "negative seed": (lambda c, i: c.generate([-5]), "INVALID_ARGUMENT", "seeds[0]"),
    "no seeds": (lambda c, i: c.generate([]), "INVALID_ARGUMENT", "seeds"),
    "bad truncation": (
        lambda c, i: c.generate([0], truncation=float("nan")),
        "INVALID_ARGUMENT",
        "truncation.psi",
    ),
    "too many frames": (
        lambda c, i: c.interpolate(1, 2, frames=1000),
        "INVALID_ARGUMENT",
        "frames",
    ),
    "bad resume token": (
        lambda c, i: list(c.batch_generate(range(3), resume_token="garbage")),
        "INVALID_ARGUMENT",
        "resume_token",
    ),
    "negative loss weight": (
        lambda c, i: c.invert(
            np.zeros((3, i.resolution, i.resolution), np.float32), loss_weights={"domain": -1.0}
        ),
        "INVALID_ARGUMENT",
        "loss_weights.domain",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_the_right_code_and_name_the_field(client, info, case):
    call, code, field = BAD_REQUESTS[case]
    err = rpc_error(lambda: call(client, info))
    assert err.code().name == code, err.details()
    assert err.details().startswith(field + ":"), err.details()


def test_inverting_with_a_generator_without_encoder_names_the_model(client, repository):
    plain = [g.name for g in repository.generators.values() if not g.can_invert]
    if not plain:
        pytest.skip("every generator can invert")
    err = rpc_error(lambda: client.invert(b"x", model=plain[0]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("model:")


# -- streams, deadlines, capacity, failures ----------------------------------------------


@pytest.fixture
def slow_gateway(repository):
    backend = SlowBackend(embedded(repository), delay=0.05)
    with running_gateway(repository, backend, max_concurrent_inversions=1) as gw:
        yield gw, backend


def _target(info) -> np.ndarray:
    return np.zeros((3, info.resolution, info.resolution), np.float32)


def test_cancellation_stops_the_loop_within_a_step(slow_gateway, info):
    gw, backend = slow_gateway
    with gw.client() as c:
        stream = c.invert_stream(_target(info), steps=1000, early_stop_tol=0.0)
        for message in stream:
            if message.progress.step == 3:
                break
        stream.cancel()
        time.sleep(0.2)
        at_cancel = backend.calls["inversion_step"]
        time.sleep(0.5)
        assert backend.calls["inversion_step"] - at_cancel <= 1
        assert at_cancel < 10
        assert gw.server.servicer.inversion_slots.count == 0  # the slot was released
        # and a new inversion can start right away
        assert c.invert(_target(info), steps=1).steps == 1


def test_deadline_exceeded_stops_the_loop(slow_gateway, info):
    gw, backend = slow_gateway
    with gw.client() as c:
        err = rpc_error(
            lambda: c.invert(_target(info), steps=1000, early_stop_tol=0.0, timeout=0.5)
        )
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.2)
        before = backend.calls["inversion_step"]
        time.sleep(0.4)
        assert backend.calls["inversion_step"] - before <= 1


def test_over_capacity_is_resource_exhausted(slow_gateway, info):
    gw, _ = slow_gateway
    with gw.client() as c:
        stream = c.invert_stream(_target(info), steps=1000, early_stop_tol=0.0)
        next(stream)
        err = rpc_error(lambda: c.invert(_target(info), steps=1))
        stream.cancel()
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "inversions" in err.details()


def test_backend_down_is_unavailable(repository):
    backend = embedded(repository)
    with running_gateway(repository, backend) as gw, gw.client() as c:
        gw.run(backend.close())
        err = rpc_error(lambda: c.generate([0]))
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_unknown_errors_are_internal_without_details(repository, caplog):
    class Broken(SlowBackend):
        async def infer(self, model, inputs, **kw):
            raise RuntimeError("secret stack detail")

    with running_gateway(repository, Broken(embedded(repository), 0)) as gw, gw.client() as c:
        err = rpc_error(lambda: c.generate([0]))
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in err.details() and "id " in err.details()
    assert any("secret stack detail" in (r.exc_text or str(r.exc_info)) for r in caplog.records)


# -- operations -----------------------------------------------------------------------


def test_metrics_are_exposed_over_http_after_traffic(client, face_png):
    from prometheus_client import start_http_server

    client.generate([0])
    client.invert(face_png, steps=2)
    rpc_error(lambda: client.generate([0], model="nope"))
    server, _ = start_http_server(0, addr="127.0.0.1")
    try:
        body = (
            urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10)
            .read()
            .decode()
        )
    finally:
        server.shutdown()
    for needle in (
        'stylegate_rpc_requests_total{code="OK",method="Generate"}',
        'stylegate_rpc_requests_total{code="NOT_FOUND",method="Generate"}',
        'stylegate_rpc_duration_seconds_bucket{le="30.0",method="Invert"}',
        "stylegate_rpc_in_flight",
        "stylegate_inversions_in_flight",
        'stylegate_inversion_steps_total{method="in_domain"}',
        'stylegate_inversion_final_loss_count{method="in_domain"}',
        'stylegate_backend_request_duration_seconds_count{backend="embedded",model="inversion_step"}',
        'stylegate_backend_batch_size_bucket{le="1.0",model="inversion_step"}',
        'stylegate_backend_queue_wait_seconds_count{model="inversion_step"}',
        'stylegate_images_generated_total{method="Generate"}',
    ):
        assert needle in body, needle


def _list_services(channel) -> set[str]:
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    (resp,) = list(
        refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    )
    return {s.name for s in resp.list_services_response.service}


def test_health_and_reflection(gateway, repository):
    with grpc.insecure_channel(gateway.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "stylegate.v1.StyleGate"):
            assert (
                health.Check(health_pb2.HealthCheckRequest(service=service)).status
                == health_pb2.HealthCheckResponse.SERVING
            )
        with pytest.raises(grpc.RpcError) as off:  # reflection is off unless asked for
            _list_services(channel)
        assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with (
        running_gateway(repository, reflection=True) as gw,
        grpc.insecure_channel(gw.address) as channel,
    ):
        assert {"stylegate.v1.StyleGate", "grpc.health.v1.Health"} <= _list_services(channel)


def test_health_follows_the_backend_and_exports_backend_up(repository):
    """A backend that stops answering its health probe turns the gateway NOT_SERVING (so
    probes and load balancers move traffic away) and SERVING again once it is back."""
    backend = SlowBackend(embedded(repository), delay=0.0)
    backend.name = "embedded-flaky"  # its own gauge label: other gateways in this process probe too
    with (
        running_gateway(repository, backend, health_interval_s=0.1) as gw,
        grpc.insecure_channel(gw.address) as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)

        def status():
            return health.Check(
                health_pb2.HealthCheckRequest(service="stylegate.v1.StyleGate")
            ).status

        def wait_for(want):
            deadline = time.monotonic() + 10
            while status() != want and time.monotonic() < deadline:
                time.sleep(0.05)
            return status()

        def backend_up():
            return REGISTRY.get_sample_value("stylegate_backend_up", {"backend": backend.name})

        assert status() == health_pb2.HealthCheckResponse.SERVING and backend_up() == 1
        backend.up = False
        assert (
            wait_for(health_pb2.HealthCheckResponse.NOT_SERVING)
            == health_pb2.HealthCheckResponse.NOT_SERVING
        )
        assert backend_up() == 0
        backend.up = True
        assert (
            wait_for(health_pb2.HealthCheckResponse.SERVING)
            == health_pb2.HealthCheckResponse.SERVING
        )
        assert backend_up() == 1


def test_drain_reports_not_serving_and_finishes_in_flight_streams(repository, info):
    backend = SlowBackend(embedded(repository), delay=0.05)
    with running_gateway(repository, backend) as gw, gw.client() as c:
        results = {}

        def invert():
            results["r"] = c.invert(_target(info), steps=20, early_stop_tol=0.0)

        worker = threading.Thread(target=invert)
        worker.start()
        while backend.calls.get("inversion_step", 0) < 3:
            time.sleep(0.01)
        stopping = gw.submit(gw.server.stop(grace=30))
        with grpc.insecure_channel(gw.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            status = health.Check(health_pb2.HealthCheckRequest(service="")).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert worker.is_alive()  # still draining
            err = rpc_error(lambda: c.generate([0]))
            assert err.code() == grpc.StatusCode.UNAVAILABLE
        worker.join(30)
        stopping.result(30)
    assert results["r"].steps == 20  # the in-flight stream completed


# -- reload, class labels, method availability, gateway mistakes --------------------------


def _inversions(method: str, outcome: str) -> float:
    labels = {"method": method, "outcome": outcome}
    return REGISTRY.get_sample_value("stylegate_inversions_total", labels) or 0.0


def test_reload_serves_a_re_exported_repository_and_keeps_it_when_broken(tmp_path):
    repo = write_onnx_repository(tmp_path)
    with running_gateway(repo, embedded(repo)) as gw, gw.client(timeout=30) as c:
        assert {m.name for m in c.list_models().models} == {"base", "blend"}
        # a re-export: a new generator with a model of its own
        import json
        import shutil

        shutil.copytree(tmp_path / "blend_synthesis", tmp_path / "night_synthesis")
        meta = json.loads((tmp_path / "stylegate.json").read_text())
        meta["generators"]["night"] = dict(
            meta["generators"]["blend"],
            models={"mapping": "mapping", "synthesis": "night_synthesis"},
        )
        (tmp_path / "stylegate.json").write_text(json.dumps(meta))
        reloaded = c.reload()
        assert set(reloaded.models) == {"base", "blend", "night"}
        assert {m.name for m in c.list_models().models} == {"base", "blend", "night"}
        assert len(c.generate([3], model="night")) == 1
        # a broken one: FAILED_PRECONDITION, and the previous repository stays served
        (tmp_path / "stylegate.json").write_text("{ not json")
        err = rpc_error(lambda: c.reload())
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "previous repository" in err.details()
        assert {m.name for m in c.list_models().models} == {"base", "blend", "night"}
        assert len(c.generate([3], model="night")) == 1


def test_class_conditional_generation(tmp_path, client):
    repo = write_onnx_repository(tmp_path, FakeNetworks(c_dim=3))
    with running_gateway(repo, embedded(repo)) as gw, gw.client(timeout=30) as c:
        assert c.model_info().c_dim == 3
        one = c.generate([5], class_label=1, fmt="raw", return_latents=True)[0]
        two = c.generate([5], class_label=2, fmt="raw", return_latents=True)[0]
        assert not np.allclose(tensor_to_array(one.ws), tensor_to_array(two.ws))
        again = c.generate([5], class_label=1, fmt="raw", return_latents=True)[0]
        np.testing.assert_array_equal(tensor_to_array(one.ws), tensor_to_array(again.ws))
        chunks = list(c.batch_generate(range(3), class_label=1, chunk_size=2))
        assert sum(len(ch.images) for ch in chunks) == 3
        for call, field in (
            (lambda: c.generate([5]), "class_label"),
            (lambda: c.generate([5], class_label=3), "class_label"),
            (lambda: list(c.batch_generate(range(3))), "class_label"),
        ):
            err = rpc_error(call)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.details().startswith(field + ":"), err.details()
    # an unconditional generator refuses a label, naming the field
    err = rpc_error(lambda: client.generate([5], class_label=0))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("class_label:")


def test_a_generator_without_encoder_inverts_with_optimize_only(tmp_path, info):
    import json

    repo = write_onnx_repository(tmp_path)
    meta = json.loads((tmp_path / "stylegate.json").read_text())
    del meta["generators"]["base"]["models"]["encoder"]
    (tmp_path / "stylegate.json").write_text(json.dumps(meta))
    repo = load_repository(tmp_path)
    target = np.zeros((3, 8, 8), np.float32)
    with running_gateway(repo, embedded(repo)) as gw, gw.client(timeout=30) as c:
        model = c.model_info()
        assert model.can_invert and list(model.inversion_methods) == ["optimize"]
        err = rpc_error(lambda: c.invert(target, steps=2))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.details().startswith("method:")
        assert "stylegate train encoder --model base" in err.details()
        assert c.invert(target, steps=2, method="optimize").method == "optimize"


def test_inversions_inside_edit_are_counted(client, info):
    target = np.zeros((3, info.resolution, info.resolution), np.float32)
    before = _inversions("encoder", "ok")
    request = client.invert_request(target, method="encoder")
    response = client.stub.Edit(pb.EditRequest(invert=request, edits=[]), timeout=60)
    assert response.image.width == info.resolution
    assert _inversions("encoder", "ok") == before + 1
    before = _inversions("in_domain", "ok")
    assert client.invert(target, steps=2).steps == 2
    assert _inversions("in_domain", "ok") == before + 1


def test_gateway_mistakes_are_internal_with_an_error_id(repository, caplog):
    from stylegate.service.errors import GatewayError

    class Mistaken(SlowBackend):
        async def infer(self, model, inputs, **kw):
            raise GatewayError(f"model {model!r}: input 'ws' has shape (1, 2), expected [1, 4, 8]")

    with running_gateway(repository, Mistaken(embedded(repository), 0)) as gw, gw.client() as c:
        err = rpc_error(lambda: c.generate([0]))
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "id " in err.details() and "ws" not in err.details()
    assert any("input 'ws' has shape" in (r.exc_text or str(r.exc_info)) for r in caplog.records)
