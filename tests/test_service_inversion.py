"""service/inversion.py: options, the optimization loop and its outcomes, on the numpy fake
networks (no onnxruntime, no gRPC)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import numpy as np
import pytest
from support.gateway_fakes import NUM_WS, FakeBackend, FakeNetworks, W

from stylegate.service import editing, generation, inversion, similarity
from stylegate.service.backends.base import Call
from stylegate.service.errors import InvalidInput


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    nets = FakeNetworks()
    repo = nets.write(tmp_path_factory.mktemp("fake_repo"))
    return nets, repo, repo.generator()


def target_of(nets, gen, seed: int = 3) -> np.ndarray:
    z = generation.z_from_seed(seed, gen.z_dim)[None]
    w = editing.broadcast(z @ nets.M, gen.num_ws)
    return nets.synth(w, np.ones((1, 1), np.float32))[0]


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
        return await inversion.invert(FakeBackend(nets), gen, target, inversion.options(**kw))

    enc = asyncio.run(run(method="encoder"))
    ind = asyncio.run(run(method="in_domain", steps=100))
    assert enc.steps == 0 and enc.ws.shape == (NUM_WS, W) and enc.optimizer == ""
    assert ind.quality.psnr > enc.quality.psnr + 3
    assert ind.loss < enc.loss
    # the figures are those of the returned latent and reconstruction
    assert similarity.psnr(ind.reconstruction, target) == pytest.approx(ind.quality.psnr)
    recon = nets.synth(ind.ws[None], np.ones((1, 1), np.float32))[0]
    np.testing.assert_allclose(recon, ind.reconstruction, atol=1e-4)


def test_in_domain_defaults_to_lbfgs_which_beats_adam_at_equal_steps(fake):
    nets, _, gen = fake
    target = target_of(nets, gen, seed=5)
    default = inversion.options("in_domain")
    assert (default.optimizer, default.steps, default.learning_rate) == ("lbfgs", 45, 1.0)
    adam = inversion.options("in_domain", optimizer="adam")
    assert (adam.steps, adam.learning_rate) == (100, inversion.DEFAULTS["in_domain"].learning_rate)
    assert inversion.options("optimize").optimizer == "adam"
    # the default is capped by the server's max_steps, not refused
    assert inversion.options("in_domain", max_steps=30).steps == 30

    def run(optimizer: str) -> inversion.Inversion:
        opts = inversion.options("in_domain", steps=30, early_stop_tol=0, optimizer=optimizer)
        return asyncio.run(inversion.invert(FakeBackend(nets), gen, target, opts))

    lbfgs, adam_run = run("lbfgs"), run("adam")
    assert lbfgs.optimizer == "lbfgs" and adam_run.optimizer == "adam"
    assert lbfgs.steps == adam_run.steps == 30
    assert lbfgs.loss < adam_run.loss
    assert run("lbfgs").loss == lbfgs.loss  # deterministic


def test_lbfgs_on_w_space_and_without_noise(fake):
    nets, _, gen = fake
    opts = inversion.options("optimize", optimizer="lbfgs", steps=20, early_stop_tol=0)
    assert opts.noise_ramp == 0.0  # noise would make L-BFGS's loss comparisons meaningless
    backend = _Recording(nets)
    r = asyncio.run(inversion.invert(backend, gen, target_of(nets, gen), opts))
    assert r.space == "w" and r.steps == 20
    np.testing.assert_array_equal(r.ws, np.broadcast_to(r.ws[0], r.ws.shape))
    np.testing.assert_array_equal(backend.evaluated[0][0], gen.w_avg)
    assert r.loss < backend_loss_at_start(nets, gen, target_of(nets, gen))


def backend_loss_at_start(nets, gen, target) -> float:
    opts = inversion.options("optimize", steps=0)
    return asyncio.run(inversion.invert(FakeBackend(nets), gen, target, opts)).loss


def test_an_unknown_optimizer_names_the_field():
    with pytest.raises(InvalidInput) as err:
        inversion.options("in_domain", optimizer="sgd")
    assert err.value.field == "optimizer"


def test_early_stopping_ends_before_the_cap_and_counts_steps(fake):
    nets, _, gen = fake
    target = target_of(nets, gen)
    seen = []
    r = asyncio.run(
        inversion.invert(
            FakeBackend(nets),
            gen,
            target,
            inversion.options("in_domain", steps=1000, early_stop_tol=0.01, early_stop_window=5),
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
            inversion.options("optimize", steps=20, early_stop_tol=0),
        )
    )
    assert r.space == "w" and r.steps == 20
    np.testing.assert_array_equal(r.ws, np.broadcast_to(r.ws[0], r.ws.shape))


class _Recording(FakeBackend):
    """The fake backend, keeping every latent the inversion step was asked to evaluate."""

    def __init__(self, nets):
        super().__init__(nets)
        self.evaluated: list[np.ndarray] = []

    async def infer(self, model, inputs, **kwargs):
        if model.endswith("inversion_step"):
            self.evaluated.append(np.array(inputs["ws"][0]))
        return await super().infer(model, inputs, **kwargs)


class _Overflowing(_Recording):
    """The fake backend, answering one inversion step (a call number) with a NaN loss."""

    def __init__(self, nets, bad_call: int):
        super().__init__(nets)
        self.bad_call = bad_call

    async def infer(self, model, inputs, **kwargs):
        out = await super().infer(model, inputs, **kwargs)
        if model.endswith("inversion_step") and len(self.evaluated) == self.bad_call:
            out = {**out, "loss": np.full_like(out["loss"], np.nan)}
        return out


def test_an_lbfgs_trial_that_overflows_is_shortened_not_the_end(fake):
    nets, _, gen = fake
    target = target_of(nets, gen, seed=6)
    opts = inversion.options("in_domain", steps=12, early_stop_tol=0)
    backend = _Overflowing(nets, bad_call=4)
    r = asyncio.run(inversion.invert(backend, gen, target, opts))
    assert len(backend.evaluated) == 13 and not r.early_stopped and np.isfinite(r.loss)
    # the point after the bad one lies on the segment from the last accepted point to it
    before, bad, after = (backend.evaluated[i] for i in (2, 3, 4))
    shift, cut = bad - before, after - before
    ratio = float((cut * shift).sum() / (shift * shift).sum())
    assert 0.09 <= ratio <= 0.11  # the shortest cut: NaN gives no curvature to interpolate
    np.testing.assert_allclose(cut, ratio * shift, atol=1e-5)
    # Adam has no step to shorten: it returns the best latent so far
    adam = inversion.options("in_domain", steps=12, early_stop_tol=0, optimizer="adam")
    r = asyncio.run(inversion.invert(_Overflowing(nets, bad_call=4), gen, target, adam))
    assert r.early_stopped and r.steps == 2


def test_optimize_adds_decaying_noise_to_w_and_returns_a_clean_latent(fake):
    nets, _, gen = fake
    opts = inversion.options("optimize", steps=20, early_stop_tol=0)
    assert opts.noise_at(0, 2.0) == pytest.approx(0.1)  # 5% of w_std at the start
    assert opts.noise_at(15, 2.0) == opts.noise_at(20, 2.0) == 0.0  # gone after 75%
    assert inversion.options("in_domain").noise_at(0, 2.0) == 0.0

    def run(w_std: float) -> tuple[inversion.Inversion, list[np.ndarray]]:
        backend = _Recording(nets)
        noisy = dataclasses.replace(gen, w_std=w_std)
        result = asyncio.run(inversion.invert(backend, noisy, target_of(nets, gen), opts))
        return result, backend.evaluated

    clean, clean_points = run(0.0)
    noisy, noisy_points = run(2.0)
    np.testing.assert_array_equal(clean_points[0][0], gen.w_avg)  # no noise: starts at w_avg
    first = noisy_points[0][0] - gen.w_avg
    assert 0.05 < float(np.sqrt(np.mean(first**2))) < 0.2  # about 0.1 per element
    # the result is one of the noise-free evaluations, and the same request gives it again
    assert any(np.array_equal(noisy.ws, p) for p in noisy_points[15:])
    again, _ = run(2.0)
    np.testing.assert_array_equal(again.ws, noisy.ws)
    assert not np.array_equal(noisy.ws, clean.ws)


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
                inversion.options(
                    steps=2, mask=mask, loss_weights={"feature": 0.25, "pixel": None}
                ),
            )
        )
    finally:
        nets.run = original
    np.testing.assert_array_equal(seen["mask"][0], mask)
    np.testing.assert_allclose(
        seen["loss_weights"][0], [1.0, 0.25, inversion.DEFAULTS["in_domain"].weights["domain"]]
    )


def test_invalid_options_name_the_field():
    with pytest.raises(InvalidInput) as err:
        inversion.options("magic")
    assert err.value.field == "method"
    with pytest.raises(InvalidInput) as err:
        inversion.options("in_domain", loss_weights={"domain": -1.0})
    assert err.value.field == "loss_weights.domain"
    opts = inversion.options("optimize")
    assert opts.space == "w" and opts.loss_weights["domain"] == 0.0


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
                inversion.options(steps=1000, early_stop_tol=0),
                call=Call(deadline=time.monotonic() + 0.3),
            )
        )


# -- outcomes, names, availability ---------------------------------------------------------


def _count(method: str, outcome: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(
        "stylegate_inversions_total", {"method": method, "outcome": outcome}
    )
    return value or 0.0


def test_every_outcome_is_counted(fake):
    from stylegate.service.errors import DeadlineExceeded

    nets, _, gen = fake
    target = target_of(nets, gen)
    before = {o: _count("optimize", o) for o in ("ok", "deadline", "cancelled", "invalid")}

    asyncio.run(inversion.invert(FakeBackend(nets), gen, target, inversion.options("optimize")))
    assert _count("optimize", "ok") == before["ok"] + 1

    with pytest.raises(DeadlineExceeded):
        asyncio.run(
            inversion.invert(
                FakeBackend(nets, delay=0.02),
                gen,
                target,
                inversion.options("optimize", steps=1000, early_stop_tol=0),
                call=Call(deadline=time.monotonic() + 0.1),
            )
        )
    assert _count("optimize", "deadline") == before["deadline"] + 1

    async def cancel_midway():
        task = asyncio.ensure_future(
            inversion.invert(
                FakeBackend(nets, delay=0.01),
                gen,
                target,
                inversion.options("optimize", steps=1000, early_stop_tol=0),
            )
        )
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    assert _count("optimize", "cancelled") == before["cancelled"] + 1

    async def stop_reading_after_two_steps():
        steps = inversion.invert_steps(
            FakeBackend(nets), gen, target, inversion.options("optimize", steps=50)
        )
        async for event in steps:
            if event.step == 2:
                break
        await steps.aclose()

    asyncio.run(stop_reading_after_two_steps())
    assert _count("optimize", "cancelled") == before["cancelled"] + 2

    nan_target = np.full_like(target, np.nan)
    with pytest.raises(InvalidInput):
        asyncio.run(
            inversion.invert(FakeBackend(nets), gen, nan_target, inversion.options("optimize"))
        )
    assert _count("optimize", "invalid") == before["invalid"] + 1


def test_loss_terms_travel_by_name(fake):
    from stylegate.service.signatures import LOSS_TERMS

    nets, _, gen = fake
    seen = []
    r = asyncio.run(
        inversion.invert(
            FakeBackend(nets),
            gen,
            target_of(nets, gen),
            inversion.options("in_domain", steps=3, loss_weights={"feature": 0.0}),
            on_progress=seen.append,
        )
    )
    assert list(r.terms) == list(LOSS_TERMS) and all(
        list(p.terms) == list(LOSS_TERMS) for p in seen
    )
    weighted = sum(r.terms[t] * inversion.DEFAULTS["in_domain"].weights[t] for t in LOSS_TERMS)
    assert r.loss == pytest.approx(weighted - 0.5 * r.terms["feature"], rel=1e-4)
    assert r.quality.perceptual_distance == r.terms["feature"]
    with pytest.raises(InvalidInput) as err:
        inversion.options(loss_weights={"style": 1.0})
    assert err.value.field == "loss_weights.style"


def test_unavailable_methods_name_the_fix(tmp_path):
    from stylegate.service.errors import FailedPrecondition
    from stylegate.service.metadata import load_repository

    nets = FakeNetworks()
    meta = nets.metadata()
    del meta["generators"]["base"]["models"]["encoder"]  # an imported generator: no encoder
    (tmp_path / "stylegate.json").write_text(json.dumps(meta))
    gen = load_repository(tmp_path).generator("base")
    assert gen.inversion_methods == ("optimize",) and gen.can_invert
    inversion.require_networks(gen, "optimize")
    with pytest.raises(FailedPrecondition) as err:
        inversion.require_networks(gen, "in_domain")
    assert "stylegate train encoder --model base" in str(err.value)
    assert err.value.field == "method" and "optimize" in str(err.value)
