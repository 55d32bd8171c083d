"""Parity of the shipped models in model_repository/ (exported from checkpoints/ by the
``shipped_repository`` fixture) against their PyTorch modules at batch 1, 3, 8.

Tolerances as in test_export.py: forward outputs 1e-4 absolute (plus 1e-4 relative),
losses 1e-4 relative, gradients relative L2 <= 1e-3.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from stylegate.export import graphs, onnx_export
from stylegate.export.blend import blend_generators
from stylegate.gan import checkpoint as ckpt
from stylegate.service.signatures import METADATA_FILE, SIGNATURES

pytestmark = pytest.mark.slow
BATCHES = (1, 3, 8)


@pytest.fixture(scope="module")
def shipped(shipped_repository):
    meta = json.loads((shipped_repository / METADATA_FILE).read_text())
    ck = shipped_repository.parent / "checkpoints"
    src = ckpt.load(ck / "base.pt")
    base = ckpt.generator_from(src["G_ema"])
    transfer = ckpt.load_generator(ck / "transfer.pt")
    b = meta["generators"]["blend"]["blend"]
    modules = {
        "base": base,
        "transfer": transfer,
        "blend": blend_generators(
            base, transfer, swap_resolution=b["swap_resolution"], blend_width=b["blend_width"]
        ),
        "encoder": ckpt.encoder_from(src["encoder"]),
        "classifier": ckpt.load_classifier(ck / "classifier.pt"),
    }
    sessions = {}

    def session(name):
        if name not in sessions:
            sessions[name] = ort.InferenceSession(
                str(shipped_repository / name / "1" / "model.onnx"),
                providers=["CPUExecutionProvider"],
            )
        return sessions[name]

    return meta, modules, session


def _feeds(network, dims, batch, seed):
    tensors = onnx_export.example_inputs(SIGNATURES[network], dims, batch, seed=seed)
    return tensors, {s.name: t.numpy() for s, t in zip(SIGNATURES[network].inputs, tensors)}


@pytest.mark.parametrize("batch", BATCHES)
def test_shipped_generators(shipped, batch):
    meta, modules, session = shipped
    for gen in ("base", "transfer", "blend"):
        g, dims = modules[gen], meta["generators"][gen]
        (z,), feeds = _feeds("mapping", dims, batch, batch)
        (w,) = session(dims["models"]["mapping"]).run(None, feeds)
        np.testing.assert_allclose(
            w, (modules["base"] if gen == "blend" else g).mapping(z).numpy(), atol=1e-4, rtol=1e-4
        )
        (ws, _), feeds = _feeds("synthesis", dims, batch, batch)
        feeds["noise_gain"] = np.ones_like(feeds["noise_gain"])
        (img,) = session(dims["models"]["synthesis"]).run(None, feeds)
        np.testing.assert_allclose(
            img, g.synthesis(ws, noise_mode="const").numpy(), atol=1e-4, rtol=1e-4
        )


@pytest.mark.parametrize("batch", BATCHES)
def test_shipped_encoder_features_and_step(shipped, batch):
    meta, m, session = shipped
    dims = meta["generators"]["base"]
    (img,), feeds = _feeds("encoder", dims, batch, batch)
    np.testing.assert_allclose(
        session("encoder").run(None, feeds)[0], m["encoder"](img).numpy(), atol=1e-4, rtol=1e-4
    )
    np.testing.assert_allclose(
        session("features").run(None, feeds)[0],
        m["classifier"].features(img).numpy(),
        atol=1e-4,
        rtol=1e-4,
    )
    step = graphs.InversionStep(m["base"].synthesis, m["encoder"], m["classifier"])
    tensors, feeds = _feeds("inversion_step", dims, batch, batch)
    want = [t.numpy() for t in step(*tensors)]
    got = session("inversion_step").run(None, feeds)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-6)
    assert np.linalg.norm(got[2] - want[2]) <= 1e-3 * np.linalg.norm(want[2])
    np.testing.assert_allclose(got[3], want[3], atol=1e-4)


def test_shipped_directions(shipped):
    meta, _, _ = shipped
    dirs = meta["generators"]["base"]["directions"]
    for d in dirs.values():
        assert abs(np.linalg.norm(d["vector"]) - 1) < 1e-5 and d["std"] > 0
    accs = {k: d["accuracy"] for k, d in dirs.items() if d["method"] == "interfacegan"}
    assert accs and np.mean(list(accs.values())) > 0.75, accs
