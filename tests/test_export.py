"""The exported tiny repository against its torch modules: parity at batch 1, 3, 8, ONNX
validity, Triton configs vs the signatures, metadata and directions, determinism.

Tolerances (fp32 on CPU, onnxruntime vs eager torch): forward outputs to 1e-4 absolute
(images and latents are O(1)); losses to 1e-4 relative; gradients by relative L2 error
<= 1e-3 (docs/design.md: elementwise comparison is too strict for gradients through ReLUs).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from stylegate.export import graphs, onnx_export
from stylegate.service.signatures import METADATA_FILE, SIGNATURES

BATCHES = (1, 3, 8)
ATOL = 1e-4


@pytest.fixture(scope="module")
def meta(tiny_repository):
    return json.loads((tiny_repository / METADATA_FILE).read_text())


@pytest.fixture(scope="module")
def sessions(tiny_repository):
    cache = {}

    def get(name):
        if name not in cache:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            cache[name] = ort.InferenceSession(
                str(tiny_repository / name / "1" / "model.onnx"),
                opts,
                providers=["CPUExecutionProvider"],
            )
        return cache[name]

    return get


def _inputs(network, dims, batch, seed):
    tensors = onnx_export.example_inputs(SIGNATURES[network], dims, batch, seed=seed)
    return tensors, {s.name: t.numpy() for s, t in zip(SIGNATURES[network].inputs, tensors)}


def _all_models(meta):
    return sorted(
        {
            (name, network, gen)
            for gen, g in meta["generators"].items()
            for network, name in g["models"].items()
        }
    )


# --------------------------------------------------------------------------- files and configs


def test_repository_layout(tiny_repository, meta):
    assert meta["format_version"] == 1 and meta["default_generator"] == "base"
    assert set(meta["generators"]) == {"base", "transfer", "blend"}
    assert meta["generators"]["base"]["models"] == {n: n for n in SIGNATURES}
    assert meta["generators"]["transfer"]["models"] == {
        "mapping": "transfer_mapping",
        "synthesis": "transfer_synthesis",
    }
    assert meta["generators"]["blend"]["models"] == {
        "mapping": "mapping",
        "synthesis": "blend_synthesis",
    }
    assert meta["generators"]["blend"]["blend"] == {"swap_resolution": 8, "blend_width": None}
    for name, _, _ in _all_models(meta):
        assert (tiny_repository / name / "1" / "model.onnx").is_file()


def test_onnx_checker(tiny_repository, meta):
    for name, _, _ in _all_models(meta):
        onnx.checker.check_model(str(tiny_repository / name / "1" / "model.onnx"), full_check=True)


def test_onnx_io_matches_signatures(sessions, meta):
    for name, network, gen in _all_models(meta):
        dims = meta["generators"][gen]
        sig = SIGNATURES[network]
        s = sessions(name)
        for spec, io in [*zip(sig.inputs, s.get_inputs()), *zip(sig.outputs, s.get_outputs())]:
            assert io.name == spec.name
            assert io.type == "tensor(float)"
            assert isinstance(io.shape[0], str), f"{name}.{io.name}: batch dim is not dynamic"
            assert tuple(io.shape[1:]) == spec.shape(dims), f"{name}.{io.name}"
        assert len(s.get_inputs()) == len(sig.inputs) and len(s.get_outputs()) == len(sig.outputs)


@pytest.mark.parametrize("config", ["config.pbtxt", "configs/gpu.pbtxt"])
def test_configs_parse_and_match_signatures(tiny_repository, meta, config):
    for name, network, gen in _all_models(meta):
        cfg = text_format.Parse(
            (tiny_repository / name / config).read_text(), model_config_pb2.ModelConfig()
        )
        sig, dims = SIGNATURES[network], meta["generators"][gen]
        assert cfg.name == name and cfg.platform == "onnxruntime_onnx"
        assert cfg.max_batch_size >= 8
        assert [t.name for t in cfg.input] == [t.name for t in sig.inputs]
        assert [t.name for t in cfg.output] == [t.name for t in sig.outputs]
        for t, spec in [*zip(cfg.input, sig.inputs), *zip(cfg.output, sig.outputs)]:
            assert model_config_pb2.DataType.Name(t.data_type) == f"TYPE_{spec.dtype}"
            assert tuple(t.dims) == spec.shape(dims)
        assert cfg.dynamic_batching.max_queue_delay_microseconds > 0
        assert cfg.dynamic_batching.default_queue_policy.max_queue_size > 0
        assert cfg.model_warmup and cfg.model_warmup[0].batch_size == 1
        kind = cfg.instance_group[0].kind
        if config == "config.pbtxt":
            assert kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
        else:
            assert kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
            acc = cfg.optimization.execution_accelerators.gpu_execution_accelerator[0]
            assert acc.name == "tensorrt"
            assert acc.parameters["precision_mode"] == "FP16"
            assert int(acc.parameters["max_workspace_size_bytes"]) > 0
            assert acc.parameters["trt_engine_cache_enable"] == "1"


def test_python_backend_flavour_has_same_io():
    from stylegate.export.triton_config import model_config

    dims = {
        "num_ws": 6,
        "w_dim": 32,
        "resolution": 16,
        "z_dim": 32,
        "feature_channels": 16,
        "feature_resolution": 4,
    }
    onnx_cfg = text_format.Parse(
        model_config("inversion_step", "inversion_step", dims), model_config_pb2.ModelConfig()
    )
    py_cfg = text_format.Parse(
        model_config(
            "inversion_step",
            "inversion_step",
            dims,
            runtime="python",
            parameters={"onnx_path": "1/model.onnx"},
        ),
        model_config_pb2.ModelConfig(),
    )
    assert py_cfg.backend == "python" and not py_cfg.platform
    assert py_cfg.input == onnx_cfg.input and py_cfg.output == onnx_cfg.output
    assert py_cfg.parameters["onnx_path"].string_value == "1/model.onnx"


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("batch", BATCHES)
def test_parity_mapping(sessions, meta, tiny_models, batch):
    for gen, G in (("base", tiny_models["base"]), ("transfer", tiny_models["transfer"])):
        (z,), feeds = _inputs("mapping", meta["generators"][gen], batch, seed=batch)
        (w,) = sessions(meta["generators"][gen]["models"]["mapping"]).run(None, feeds)
        np.testing.assert_allclose(w, G.mapping(z).numpy(), atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("batch", BATCHES)
def test_parity_synthesis(sessions, meta, tiny_models, batch):
    from stylegate.export.blend import blend_generators

    blend = blend_generators(tiny_models["base"], tiny_models["transfer"], swap_resolution=8)
    for gen, G in (
        ("base", tiny_models["base"]),
        ("transfer", tiny_models["transfer"]),
        ("blend", blend),
    ):
        (ws, _), feeds = _inputs("synthesis", meta["generators"][gen], batch, seed=batch)
        s = sessions(meta["generators"][gen]["models"]["synthesis"])
        gain = np.ones((batch, 1), np.float32)
        (img,) = s.run(None, {**feeds, "noise_gain": gain})
        np.testing.assert_allclose(
            img, G.synthesis(ws, noise_mode="const").numpy(), atol=ATOL, rtol=1e-4
        )
        (img0,) = s.run(None, {**feeds, "noise_gain": 0 * gain})
        np.testing.assert_allclose(
            img0, G.synthesis(ws, noise_mode="none").numpy(), atol=ATOL, rtol=1e-4
        )
        assert np.abs(img - img0).max() > 1e-3, "noise_gain has no effect"


@pytest.mark.parametrize("batch", BATCHES)
def test_parity_encoder_and_features(sessions, meta, tiny_models, batch):
    dims = meta["generators"]["base"]
    (img,), feeds = _inputs("encoder", dims, batch, seed=batch)
    (ws,) = sessions("encoder").run(None, feeds)
    np.testing.assert_allclose(ws, tiny_models["encoder"](img).numpy(), atol=ATOL, rtol=1e-4)
    (f,) = sessions("features").run(None, feeds)
    np.testing.assert_allclose(
        f, tiny_models["classifier"].features(img).numpy(), atol=ATOL, rtol=1e-4
    )


def _rel_l2(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


@pytest.mark.parametrize("batch", BATCHES)
def test_parity_inversion_step(sessions, meta, tiny_models, batch):
    dims = meta["generators"]["base"]
    step = graphs.InversionStep(
        tiny_models["base"].synthesis, tiny_models["encoder"], tiny_models["classifier"]
    )
    tensors, feeds = _inputs("inversion_step", dims, batch, seed=batch)
    ws, _, _, weights, mask = tensors
    if batch > 1:  # one sample with an all-ones mask and only the domain term
        mask[0] = 1.0
        weights[0] = torch.tensor([0.0, 0.0, 1.0])
        feeds["mask"], feeds["loss_weights"] = mask.numpy(), weights.numpy()
    ref = [t.numpy() for t in step(*tensors)]
    out = sessions("inversion_step").run(None, feeds)
    names = [t.name for t in SIGNATURES["inversion_step"].outputs]
    got = dict(zip(names, out))
    want = dict(zip(names, ref))
    assert got["loss"].shape == (batch, 1) and got["grad"].shape == ws.shape
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["loss_terms"], want["loss_terms"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["image"], want["image"], atol=ATOL)
    assert _rel_l2(got["grad"], want["grad"]) <= 1e-3
    for i in range(batch):  # per sample too: batching must not mix samples
        assert _rel_l2(got["grad"][i], want["grad"][i]) <= 1e-3


def test_inversion_step_has_no_accumulating_scatter(tiny_repository, meta):
    """onnxruntime runs ScatterND/ScatterElements with a reduction on several threads
    without ordering repeated indices (lost updates: a batch-32 step's gradient came out
    different in about one run in 20 on 2 threads). The step must not contain one; the
    nearest upsampling's gradient is a sum pool (gan.networks.upsample_nearest2x)."""
    name = meta["generators"]["base"]["models"]["inversion_step"]
    graph = onnx.load(str(tiny_repository / name / "1" / "model.onnx")).graph
    accumulating = [
        n.name
        for n in graph.node
        if n.op_type in ("ScatterND", "ScatterElements")
        and any(a.name == "reduction" and a.s != b"none" for a in n.attribute)
    ]
    assert accumulating == []
    # and on 2 threads the same inputs give the same gradient, run after run
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    session = ort.InferenceSession(
        str(tiny_repository / name / "1" / "model.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    _, feeds = _inputs("inversion_step", meta["generators"]["base"], 16, seed=3)
    first = session.run(["grad"], feeds)[0]
    for _ in range(10):
        got = session.run(["grad"], feeds)[0]
        np.testing.assert_allclose(got, first, rtol=0, atol=1e-6 * np.abs(first).max())


def test_inversion_step_terms_are_the_documented_objective(tiny_models):
    """The eager reference itself: terms as in signatures.py, gradient = autograd of the sum."""
    G, E, C = tiny_models["base"], tiny_models["encoder"], tiny_models["classifier"]
    step = graphs.InversionStep(G.synthesis, E, C)
    gen = torch.Generator().manual_seed(0)
    ws = torch.randn(2, G.num_ws, G.w_dim, generator=gen)
    target = torch.randn(2, 3, 16, 16, generator=gen)
    tf = C.features(target)
    mask = torch.ones(2, 1, 16, 16)
    mask[1, :, :8] = 0  # top half ignored
    weights = torch.tensor([[1.0, 0.5, 2.0], [0.3, 0.0, 1.0]])
    loss, terms, grad, image = step(ws, target, tf, weights, mask)
    x = G.synthesis(ws, noise_mode="const")
    torch.testing.assert_close(image, x)
    pix0 = (x[0] - target[0]).square().mean()
    pix1 = (x[1, :, 8:] - target[1, :, 8:]).square().mean()
    torch.testing.assert_close(terms[:, 0], torch.stack([pix0, pix1]))
    feat1 = (C.features(x)[1, :, 2:] - tf[1, :, 2:]).square().mean()  # mask at 4x4: bottom two rows
    torch.testing.assert_close(terms[1, 1], feat1)
    dom = (ws - E(x)).square().mean(dim=(1, 2))
    torch.testing.assert_close(terms[:, 2], dom)
    torch.testing.assert_close(loss[:, 0], (terms * weights).sum(1))
    w = ws.clone().requires_grad_(True)
    xw = G.synthesis(w, noise_mode="const")
    l0 = (
        (xw[0] - target[0]).square().mean()
        + 0.5 * (C.features(xw[:1]) - tf[:1]).square().mean()
        + 2.0 * (w[0] - E(xw[:1])[0]).square().mean()
    )
    (g,) = torch.autograd.grad(l0, w)
    torch.testing.assert_close(grad[0], g[0], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------ metadata and directions


def test_metadata_describes_the_models(meta, tiny_models):
    base = meta["generators"]["base"]
    G = tiny_models["base"]
    assert (base["resolution"], base["num_ws"], base["w_dim"], base["z_dim"]) == (
        16,
        G.num_ws,
        32,
        32,
    )
    assert (base["feature_channels"], base["feature_resolution"]) == (16, 4)
    assert base["layer_resolutions"] == G.synthesis.layer_resolutions
    np.testing.assert_allclose(base["w_avg"], G.mapping.w_avg.numpy(), rtol=1e-6)
    with torch.no_grad():  # w_std: RMS distance of sampled w from w_avg
        w = G.mapping(torch.randn(4000, G.z_dim, generator=torch.Generator().manual_seed(1)))
        rms = float(((w - G.mapping.w_avg) ** 2).sum(1).mean().sqrt())
    assert base["w_std"] == pytest.approx(rms, rel=0.05)
    assert base["attributes"][0] == "smile"


def test_directions_are_unit_with_std_and_layers(meta):
    for gen, g in meta["generators"].items():
        dirs = g["directions"]
        methods = {d["method"] for d in dirs.values()}
        assert methods == {"sefa", "ganspace", "interfacegan"}, gen
        for name, d in dirs.items():
            v = np.array(d["vector"])
            assert v.shape == (g["w_dim"],)
            assert abs(np.linalg.norm(v) - 1) < 1e-5, name
            assert d["std"] > 0
            start, stop = d["layers"]
            assert 0 <= start < stop <= g["num_ws"]
        assert {"sefa_0", "sefa_coarse_0", "sefa_middle_0", "ganspace_0", "smile", "pose"} <= set(
            dirs
        )
        assert dirs["sefa_coarse_0"]["layers"] == [0, 3]


def test_interfacegan_separates_better_than_chance(meta):
    dirs = meta["generators"]["base"]["directions"]
    accs = [d["accuracy"] for d in dirs.values() if d["method"] == "interfacegan"]
    assert len(accs) == 8
    assert (
        np.mean(accs) > 0.6
    )  # random-weight nets, 60 samples a side: well above chance (0.5) on average


def test_directions_math(tiny_models):
    from stylegate.export import directions as D

    G = tiny_models["base"]
    vecs, evals = D.sefa(G.synthesis, (0, G.num_ws), 3)
    np.testing.assert_allclose(vecs @ vecs.T, np.eye(3), atol=1e-8)
    assert evals[0] >= evals[1] >= evals[2]
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4000, 8)) * np.array([5, 1, 1, 1, 1, 1, 1, 1.0])
    comps, std, _ = D.ganspace(w, 2)
    assert abs(abs(comps[0, 0]) - 1) < 1e-2 and abs(std[0] - 5) < 0.3
    # InterFaceGAN on a known linear label recovers its normal
    truth = np.ones(8) / np.sqrt(8)
    normal, acc = D.interfacegan(w, w @ truth, fraction=0.2)
    assert normal @ truth > 0.95 and acc > 0.95
    other = np.eye(8)[0]
    cond = D.condition(normal, [other])
    assert abs(cond @ other) < 1e-9 and abs(np.linalg.norm(cond) - 1) < 1e-9


# --------------------------------------------------------------------------- determinism


def test_export_is_deterministic(tmp_path, tiny_repository, meta, tiny_models):
    """Re-exporting gives the same bytes (cheap models; the step graph shares the code path)."""
    dims = {k: v for k, v in meta["generators"]["base"].items() if isinstance(v, int)}
    for network, module in (
        ("mapping", onnx_export.wrap("mapping", generator=tiny_models["base"])),
        ("features", onnx_export.wrap("features", feature_net=tiny_models["classifier"])),
    ):
        path = onnx_export.export_onnx(module, network, dims, tmp_path / network / "model.onnx")
        assert path.read_bytes() == (tiny_repository / network / "1" / "model.onnx").read_bytes(), (
            network
        )
