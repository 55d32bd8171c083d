"""The adversarial recipe: resumes to the same weights as an uninterrupted run; fine-tunes
the mapping network alone."""

import pytest
import torch

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import networks as N
from stylegate.gan.train import ConfigError, Gan, GanConfig
from stylegate.gan.train.ship import ship
from tests.support.gan_train import TINY, fit, state, tiny_base, tiny_classifier


def test_gan_resume_matches_uninterrupted_run(tmp_path):
    cfg = {"batch": 4, "seed": 5, "resolution": 16}
    fit(tmp_path / "straight", Gan, GanConfig(kimg=0.016, **cfg))  # 4 iterations
    fit(tmp_path / "resumed", Gan, GanConfig(kimg=0.008, **cfg))  # 2 iterations, "interrupted"
    first = state(tmp_path / "resumed")
    assert first["it"] == 2
    fit(tmp_path / "resumed", Gan, GanConfig(kimg=0.016, **cfg))  # resumes at 2, runs to 4
    a, b = state(tmp_path / "straight"), state(tmp_path / "resumed")
    assert a["it"] == b["it"] == 4
    for key in ("G", "D", "G_ema"):
        for name, t in a[key].items():
            assert torch.allclose(t, b[key][name], atol=1e-6), (key, name)
    # and training moved the weights at all
    assert any(not torch.equal(first["G"][k], b["G"][k]) for k in first["G"])
    assert (tmp_path / "resumed" / "progress.png").exists()


def test_mapping_only_fine_tune_ships_into_base_and_transfer(tmp_path):
    """--train mapping: the synthesis stays as it was, the mapping moves; shipped into the
    base it keeps the encoder's outputs (recentred on the new w_avg); --mapping-only gives
    a generator sharing the latent space (the transfer model) the same mapping."""
    base = tiny_base(tmp_path / "base.pt", encoder=True)
    before = ckpt.load_generator(base)
    E0 = ckpt.encoder_from(ckpt.load(base)["encoder"])
    cfg = GanConfig(
        kimg=0.008, batch=4, seed=2, init=base, train="mapping", mapping_lr=0.05, ema_kimg=0.001
    )
    recipe = Gan(cfg, device=torch.device("cpu"))
    recipe.schedules[0].apply(0.0)
    assert [g["lr"] for g in recipe.opt_g.param_groups] == [0.05]  # the mapping alone learns
    fit(tmp_path / "run", Gan, cfg)  # 2 iterations
    s = state(tmp_path / "run")
    for name, t in before.state_dict().items():
        if name.startswith("synthesis."):
            assert torch.equal(s["G"][name], t) and torch.equal(s["G_ema"][name], t), name
    assert any(
        not torch.equal(s["G_ema"][k], t)
        for k, t in before.mapping.state_dict(prefix="mapping.").items()
    )

    shipped = ckpt.load(ship(tmp_path / "run", base))
    G = ckpt.generator_from(shipped["G_ema"])
    E = ckpt.encoder_from(shipped["encoder"])
    assert torch.equal(E.w_avg, G.mapping.w_avg) and not torch.equal(E.w_avg, E0.w_avg)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    assert torch.allclose(E(x), E0(x), atol=2e-3)  # only its centre moved (fp16 rounding)

    torch.manual_seed(9)  # another synthesis, the same architecture: a "transfer" model
    other = N.Generator(z_dim=32, w_dim=32, resolution=16, channels=TINY)
    ckpt.atomic_save({"G_ema": ckpt.pack_module(other)}, tmp_path / "transfer.pt")
    moved = ckpt.load_generator(ship(tmp_path / "run", tmp_path / "transfer.pt", mapping_only=True))
    other = ckpt.generator_from(ckpt.pack_module(other))  # as stored: fp16
    for name, t in moved.state_dict().items():
        want = (G if name.startswith("mapping.") else other).state_dict()[name]
        assert torch.equal(t, want), name


def test_mapping_only_needs_a_generator_to_fine_tune(tmp_path):
    with pytest.raises(ConfigError, match="--init"):
        Gan(GanConfig(train="mapping", resolution=16), device=torch.device("cpu"))
    fit(tmp_path / "run", Gan, GanConfig(kimg=0.004, batch=4, resolution=16))
    ckpt.atomic_save({"encoder": {}}, tmp_path / "no-generator.pt")
    with pytest.raises(ConfigError, match="mapping-only"):
        ship(tmp_path / "run", tmp_path / "no-generator.pt", mapping_only=True)


@pytest.mark.parametrize("noise", ["random", "const"])
def test_samples_draw_the_noise_the_config_names(tmp_path, noise):
    """``--noise const`` draws G's samples with the constant buffers the service uses (a
    generator trained with them, the autoencoder's, keeps its inputs); random is StyleGAN's."""
    base = tiny_base(tmp_path / "base.pt")
    cfg = GanConfig(kimg=0.004, batch=4, seed=2, init=base, noise=noise, mixing_prob=0.0)
    recipe = Gan(cfg, device=torch.device("cpu"))
    modes = []
    synthesis = recipe.G.synthesis.forward

    def record(ws, noise_mode="random", *args, **kw):
        modes.append(noise_mode)
        return synthesis(ws, noise_mode, *args, **kw)

    recipe.G.synthesis.forward = record
    from stylegate.gan.train.trainer import iteration_generator

    recipe.step(0, iteration_generator(cfg.seed, 0))
    assert modes == [noise]


def test_an_anchored_fine_tune_redraws_real_faces_through_the_frozen_encoder(tmp_path):
    """``--anchor``: beside the GAN loss G redraws real renders from --init's encoder's codes;
    the encoder stays as it was (and is shipped as it was, recentred), and the
    reconstruction changes what G learns."""
    base = tiny_base(tmp_path / "base.pt", encoder=True)
    cls = tiny_classifier(tmp_path / "cls.pt")
    cfg = {"kimg": 0.008, "batch": 4, "seed": 2, "init": base, "ema_kimg": 0.001}
    E0 = ckpt.encoder_from(ckpt.load(base)["encoder"])
    recipe = Gan(GanConfig(anchor=cls, **cfg), device=torch.device("cpu"))
    from stylegate.gan.train.trainer import iteration_generator

    recipe.step(0, iteration_generator(2, 0))
    for name, t in E0.state_dict().items():
        assert torch.equal(recipe.joint.E.state_dict()[name], t), name
    fit(tmp_path / "anchored", Gan, GanConfig(anchor=cls, **cfg))
    fit(tmp_path / "plain", Gan, GanConfig(**cfg))
    a, b = state(tmp_path / "anchored"), state(tmp_path / "plain")
    assert "E" not in a and "E_config" not in a
    assert any(not torch.equal(a["G"][k], b["G"][k]) for k in a["G"])
    E = ckpt.encoder_from(ckpt.load(ship(tmp_path / "anchored", base))["encoder"])
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.allclose(E(x), E0(x), atol=2e-3)  # the same encoder, recentred
    with pytest.raises(ConfigError, match="has no encoder"):
        Gan(
            GanConfig(anchor=cls, **{**cfg, "init": tiny_base(tmp_path / "bare.pt")}),
            device=torch.device("cpu"),
        )
