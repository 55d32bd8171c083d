"""service/backends/embedded.py: onnxruntime sessions checked against the contract at
start-up, reloaded in place, and the class-conditional mapping, on tiny real ONNX models."""

from __future__ import annotations

import asyncio
import json
import shutil

import numpy as np
import pytest
from support.gateway_fakes import FakeNetworks, write_onnx_repository

from stylegate.service import admission, generation
from stylegate.service.backends.base import Call
from stylegate.service.backends.embedded import EmbeddedBackend
from stylegate.service.errors import BackendUnavailable
from stylegate.service.metadata import load_repository


def _backend(repo) -> EmbeddedBackend:
    return EmbeddedBackend(repo, intra_op_threads=1)


def test_a_model_that_does_not_fit_the_contract_fails_load(tmp_path):
    repo = write_onnx_repository(tmp_path)
    meta = json.loads((tmp_path / "stylegate.json").read_text())
    meta["generators"]["base"]["num_ws"] += 1
    meta["generators"]["base"]["layer_resolutions"].append(8)
    (tmp_path / "stylegate.json").write_text(json.dumps(meta))
    backend = _backend(load_repository(tmp_path))
    with pytest.raises(BackendUnavailable) as err:
        asyncio.run(backend.load())
    message = str(err.value)
    assert "model 'synthesis' (synthesis of 'base'): input 'ws' has shape" in message
    assert "num_ws" in message and not backend.ready
    assert repo.generator().num_ws + 1 == meta["generators"]["base"]["num_ws"]


def test_reload_serves_new_models_and_keeps_the_old_on_failure(tmp_path):
    repo = write_onnx_repository(tmp_path)
    backend = _backend(repo)

    async def main():
        await backend.load()
        before = dict(backend._models)
        # a re-export adds a generator with a model of its own
        shutil.copytree(tmp_path / "synthesis", tmp_path / "extra_synthesis")
        meta = json.loads((tmp_path / "stylegate.json").read_text())
        extra = dict(
            meta["generators"]["blend"],
            models={"mapping": "mapping", "synthesis": "extra_synthesis"},
        )
        meta["generators"]["extra"] = extra
        (tmp_path / "stylegate.json").write_text(json.dumps(meta))
        await backend.reload(load_repository(tmp_path))
        assert backend._models["synthesis"] is before["synthesis"]  # unchanged: kept
        ws = np.zeros((1, 4, 8), np.float32)
        out = await backend.infer("extra_synthesis", {"ws": ws, "noise_gain": np.ones((1, 1))})
        assert out["image"].shape == (1, 3, 8, 8)
        # a broken re-export: the old models stay served
        meta["generators"]["extra"]["models"]["synthesis"] = "missing_synthesis"
        (tmp_path / "stylegate.json").write_text(json.dumps(meta))
        with pytest.raises(BackendUnavailable, match="missing_synthesis"):
            await backend.reload(load_repository(tmp_path))
        out = await backend.infer("extra_synthesis", {"ws": ws, "noise_gain": np.ones((1, 1))})
        assert out["image"].shape == (1, 3, 8, 8)
        await backend.close()

    asyncio.run(main())


def test_the_conditional_mapping_gets_a_one_hot_class(tmp_path):
    nets = FakeNetworks(c_dim=3)
    repo = write_onnx_repository(tmp_path, nets)
    gen = repo.generator()
    assert gen.c_dim == 3 and gen.dims["c_dim"] == 3
    backend = _backend(repo)
    z = np.stack([generation.z_from_seed(s, gen.z_dim) for s in (1, 2)])

    async def main():
        await backend.load()
        try:
            return await generation.mapping(backend, gen, z, class_labels=[2, 0], call=Call())
        finally:
            await backend.close()

    w = asyncio.run(main())
    np.testing.assert_allclose(w, z @ nets.M + nets.C[[2, 0]], rtol=1e-5, atol=1e-5)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def test_release_memory_gives_back_the_arena_of_a_large_batch(shipped_repository):
    """onnxruntime keeps the buffers of the largest batch a session ran (its arena) until a
    run asks it to shrink; ``release_memory`` (the gateway calls it when idle) does, and a
    batch after it still gives the same results (to onnxruntime's run-to-run rounding)."""
    repo = load_repository(shipped_repository)
    gen = repo.generator()
    model = gen.model("inversion_step")

    async def scenario() -> tuple[float, float, float, np.ndarray, np.ndarray]:
        backend = EmbeddedBackend(repo, intra_op_threads=2)
        await backend.load()
        session = backend._models[model].session
        rng = np.random.RandomState(0)
        feed = {
            a.name: rng.uniform(-1, 1, [32, *a.shape[1:]]).astype(np.float32)
            for a in session.get_inputs()
        }
        # a mask and weights as the gateway sends them: a random +-1 mask sums to near zero
        # in the masked mean, which made gradients of ~1e8 that moved with summation order
        feed["mask"] = rng.uniform(0.5, 1, feed["mask"].shape).astype(np.float32)
        feed["loss_weights"] = np.abs(feed["loss_weights"])
        before = _rss_mb()
        first = (await backend.infer(model, feed))["grad"].copy()
        grown = _rss_mb()
        await backend.release_memory()
        admission.release_memory()  # what the gateway does next (service/rpc.py, InFlight)
        released = _rss_mb()
        again = await backend.infer(model, feed)
        await backend.close()
        return before, grown, released, first, again["grad"]

    before, grown, released, first, again = asyncio.run(scenario())
    print(f"RSS {before:.0f} MB, after a batch of 32 {grown:.0f}, released {released:.0f}")
    assert grown - before > 100  # the arena of a batch of 32 steps (~290 MB measured)
    assert released < before + (grown - before) / 3
    # the same up to onnxruntime's threaded summation order
    np.testing.assert_allclose(again, first, rtol=0, atol=1e-4 * np.abs(first).max())
