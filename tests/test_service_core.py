"""The gateway's pure core (editing, quality, inversion loop, settings, metadata) on the
numpy fake networks: fast, no onnxruntime, no gRPC."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from support.gateway_fakes import NUM_WS, FakeBackend, FakeNetworks, W

from stylegate.service import editing, generation, inversion, similarity
from stylegate.service.errors import BackendUnavailable, InvalidInput, NotFound
from stylegate.service.generation import Call
from stylegate.service.metadata import load_repository
from stylegate.service.settings import Settings


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    nets = FakeNetworks()
    repo = nets.write(tmp_path_factory.mktemp("fake_repo"))
    return nets, repo, repo.generator()


def target_of(nets, gen, seed: int = 3) -> np.ndarray:
    z = generation.z_from_seed(seed, gen.z_dim)[None]
    w = editing.broadcast(z @ nets.M, gen.num_ws)
    return nets.synth(w, np.ones((1, 1), np.float32))[0]


# -- editing ----------------------------------------------------------------------------


def test_truncation_pulls_towards_w_avg_only_below_cutoff():
    ws = np.random.RandomState(0).standard_normal((2, 6, 4)).astype(np.float32)
    w_avg = np.ones(4, np.float32)
    out = editing.truncate(ws, w_avg, psi=0.5, cutoff=3)
    np.testing.assert_allclose(out[:, :3], w_avg + 0.5 * (ws[:, :3] - w_avg), rtol=1e-6)
    np.testing.assert_array_equal(out[:, 3:], ws[:, 3:])
    assert editing.truncate(ws, w_avg, psi=1.0) is ws


def test_named_edit_moves_only_its_layers_by_strength_times_std(fake):
    _, _, gen = fake
    ws = np.zeros((1, NUM_WS, W), np.float32)
    e = editing.named_edit(gen, "smile", 3.0, layers=(1, 3))
    out = editing.apply_edits(ws, [e])
    d = gen.directions["smile"]
    np.testing.assert_allclose(out[0, 1:3], np.tile(3.0 * d.std * d.vector, (2, 1)), rtol=1e-6)
    assert not out[0, 0].any() and not out[0, 3:].any()
    assert not ws.any()  # input untouched


def test_conditional_edit_is_orthogonal_to_the_conditioned_boundaries(fake):
    _, _, gen = fake
    e = editing.named_edit(gen, "smile", 1.0, condition_on=["eyeglasses", "sefa_0"])
    for other in ("eyeglasses", "sefa_0"):
        assert abs(float(e.vector @ gen.directions[other].vector)) < 1e-5
    assert abs(np.linalg.norm(e.vector) - 1) < 1e-5
    with pytest.raises(InvalidInput) as err:
        editing.vector_edit(
            gen, gen.directions["eyeglasses"].vector * 2, 1.0, condition_on=["eyeglasses"]
        )
    assert err.value.field == "edits.condition_on"


def test_edit_errors_name_the_field(fake):
    _, _, gen = fake
    with pytest.raises(NotFound) as err:
        editing.named_edit(gen, "frown", 1.0, field="edits[2]")
    assert err.value.field == "edits[2].name"
    with pytest.raises(InvalidInput) as err:
        editing.named_edit(gen, "smile", 1.0, layers=(3, 2), field="edits[0]")
    assert err.value.field == "edits[0].layer_start"
    with pytest.raises(InvalidInput) as err:
        editing.vector_edit(gen, np.zeros(W + 1, np.float32), 1.0)
    assert err.value.field == "edits.vector"


def test_style_mix_and_interpolation_endpoints():
    rng = np.random.RandomState(1)
    a, b = rng.standard_normal((2, 6, 5)).astype(np.float32)
    mixed = editing.style_mix(a, b, start=0, stop=2)
    np.testing.assert_array_equal(mixed[:2], b[:2])
    np.testing.assert_array_equal(mixed[2:], a[2:])
    for mode in ("lerp", "slerp"):
        path = editing.interpolate(a, b, 7, mode=mode, center=np.full(5, 0.3, np.float32))
        assert path.shape == (7, 6, 5)
        np.testing.assert_allclose(path[0], a, atol=1e-5)
        np.testing.assert_allclose(path[-1], b, atol=1e-5)
    # slerp keeps the distance to the pivot between the end points' (norms lerp)
    c = np.zeros(5, np.float32)
    mid = editing.interpolate(a, b, 3, mode="slerp", center=c)[1]
    expected = (np.linalg.norm(a, axis=1) + np.linalg.norm(b, axis=1)) / 2
    np.testing.assert_allclose(np.linalg.norm(mid, axis=1), expected, rtol=1e-5)


# -- quality ----------------------------------------------------------------------------


def test_psnr_and_ssim():
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (3, 16, 16)).astype(np.float32)
    assert similarity.psnr(x, x) == float("inf")
    assert similarity.ssim(x, x) == pytest.approx(1.0)
    noisy = np.clip(x + rng.normal(0, 0.2, x.shape), -1, 1).astype(np.float32)
    very = np.clip(x + rng.normal(0, 0.6, x.shape), -1, 1).astype(np.float32)
    assert similarity.psnr(x, noisy) > similarity.psnr(x, very) > 0
    assert 1 > similarity.ssim(x, noisy) > similarity.ssim(x, very)
    # 0.1 mean squared error on [0, 1] scale -> 10 dB
    assert similarity.psnr(
        np.zeros((3, 4, 4)), np.full((3, 4, 4), 2 * np.sqrt(0.1))
    ) == pytest.approx(10.0)


# -- inversion loop ---------------------------------------------------------------------


def test_learning_rate_schedule_warms_up_then_decays():
    lrs = [inversion.learning_rate_at(t, 100, peak=0.1) for t in range(100)]
    assert lrs[0] < lrs[4] == pytest.approx(0.1)
    assert lrs[50] < lrs[10] and lrs[-1] == pytest.approx(0.01, rel=0.05)


def test_converged_uses_relative_improvement_over_the_window():
    assert not inversion.converged([1.0, 0.5, 0.4], tol=0.01, window=5)
    assert inversion.converged([1.0] + [0.5] * 6, tol=0.01, window=5)
    assert not inversion.converged([1.0, 0.9, 0.8, 0.7], tol=0.01, window=2)
    assert not inversion.converged([1.0] * 20, tol=0.0, window=5)  # tol 0 disables


def test_methods_rank_as_expected_on_the_fake(fake):
    nets, _, gen = fake
    target = target_of(nets, gen)

    async def run(**kw):
        return await inversion.invert(FakeBackend(nets), gen, target, **kw)

    enc = asyncio.run(run(method="encoder"))
    ind = asyncio.run(run(method="in_domain", steps=100))
    assert enc.steps == 0 and enc.ws.shape == (NUM_WS, W)
    assert ind.quality.psnr > enc.quality.psnr + 3
    assert ind.loss < enc.loss
    # the figures are those of the returned latent and reconstruction
    assert similarity.psnr(ind.reconstruction, target) == pytest.approx(ind.quality.psnr)
    recon = nets.synth(ind.ws[None], np.ones((1, 1), np.float32))[0]
    np.testing.assert_allclose(recon, ind.reconstruction, atol=1e-4)


def test_early_stopping_ends_before_the_cap_and_counts_steps(fake):
    nets, _, gen = fake
    target = target_of(nets, gen)
    seen = []
    r = asyncio.run(
        inversion.invert(
            FakeBackend(nets),
            gen,
            target,
            method="in_domain",
            steps=1000,
            early_stop_tol=0.01,
            early_stop_window=5,
            on_progress=lambda p: seen.append(p.step),
        )
    )
    assert r.early_stopped and 5 < r.steps < 1000
    assert seen == list(range(1, r.steps + 1))
    # one features + one encoder call, then one inversion_step call per evaluation
    assert nets.calls["inversion_step"] >= r.steps + 1


def test_w_space_keeps_every_layer_equal(fake):
    nets, _, gen = fake
    r = asyncio.run(
        inversion.invert(
            FakeBackend(nets),
            gen,
            target_of(nets, gen),
            method="optimize",
            steps=20,
            early_stop_tol=0,
        )
    )
    assert r.space == "w" and r.steps == 20
    np.testing.assert_array_equal(r.ws, np.broadcast_to(r.ws[0], r.ws.shape))


def test_mask_and_weights_reach_the_step(fake):
    nets, _, gen = fake
    seen = {}
    backend = FakeBackend(nets)
    original = nets.run

    def spy(model, inputs):
        if model == "inversion_step":
            seen.update(inputs)
        return original(model, inputs)

    nets.run = spy
    try:
        mask = np.zeros((1, gen.resolution, gen.resolution), np.float32)
        mask[:, :4] = 1
        asyncio.run(
            inversion.invert(
                backend,
                gen,
                target_of(nets, gen),
                steps=2,
                mask=mask,
                loss_weights={"feature": 0.25, "pixel": None},
            )
        )
    finally:
        nets.run = original
    np.testing.assert_array_equal(seen["mask"][0], mask)
    np.testing.assert_allclose(
        seen["loss_weights"][0], [1.0, 0.25, inversion.DEFAULTS["in_domain"].weights.domain]
    )


def test_invalid_options_name_the_field():
    with pytest.raises(InvalidInput) as err:
        inversion.resolve_options("magic", learning_rate=None, weights=None, space=None)
    assert err.value.field == "method"
    with pytest.raises(InvalidInput) as err:
        inversion.resolve_options(
            "in_domain", learning_rate=None, weights={"domain": -1.0}, space=None
        )
    assert err.value.field == "loss_weights.domain"
    _, w, space = inversion.resolve_options(
        "optimize", learning_rate=None, weights=None, space=None
    )
    assert space == "w" and w.domain == 0.0


def test_deadline_stops_the_loop(fake):
    import time

    from stylegate.service.errors import DeadlineExceeded

    nets, _, gen = fake
    backend = FakeBackend(nets, delay=0.02)
    with pytest.raises(DeadlineExceeded):
        asyncio.run(
            inversion.invert(
                backend,
                gen,
                target_of(nets, gen),
                steps=1000,
                early_stop_tol=0,
                call=Call(deadline=time.monotonic() + 0.3),
            )
        )


def test_seeds_resolve_like_gan_generate(fake):
    _, _, gen = fake
    z = generation.z_from_seed(7, 8)
    np.testing.assert_array_equal(z, np.random.RandomState(7).standard_normal(8).astype(np.float32))
    with pytest.raises(InvalidInput) as err:
        generation.z_from_seed(-1, 8, field="seeds[3]")
    assert err.value.field == "seeds[3]"
    with pytest.raises(InvalidInput) as err:
        generation.check_latent(np.full((NUM_WS, W), np.nan, np.float32), gen, field="latent.ws")
    assert "NaN" in str(err.value) and err.value.field == "latent.ws"


# -- settings and metadata ----------------------------------------------------------------


def test_settings_from_env_and_flags():
    s = Settings.load(
        env={
            "STYLEGATE_PORT": "6000",
            "STYLEGATE_LOG_JSON": "false",
            "STYLEGATE_BATCH_WINDOW_MS": "0.5",
        },
        metrics_port=0,
        port=None,
    )
    assert (s.port, s.log_json, s.batch_window_ms, s.metrics_port) == (6000, False, 0.5, 0)
    with pytest.raises(ValueError, match="STYLEGATE_MAX_STEPS"):
        Settings.load(env={"STYLEGATE_MAX_STEPS": "many"})


def test_repository_metadata_validation(tmp_path, fake):
    nets, _, _ = fake
    with pytest.raises(BackendUnavailable, match="stylegate export"):
        load_repository(tmp_path)
    meta = nets.metadata()
    meta["generators"]["base"]["w_avg"] = [0.0]
    (tmp_path / "stylegate.json").write_text(json.dumps(meta))
    with pytest.raises(BackendUnavailable, match="w_avg"):
        load_repository(tmp_path)
    repo = nets.write(tmp_path)
    assert repo.generator().can_invert and not repo.generator("blend").can_invert
    with pytest.raises(NotFound) as err:
        repo.generator("nope")
    assert err.value.field == "model"
