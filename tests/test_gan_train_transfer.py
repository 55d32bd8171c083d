"""The woodblock transfer recipe: paired fine-tune, or the GAN recipe with --adversarial."""

import pytest
import torch

from stylegate.gan import checkpoint as ckpt
from stylegate.gan.train import ConfigError, Gan, Transfer, TransferConfig
from tests.support.gan_train import fit, state, tiny_base, tiny_classifier


def test_paired_transfer_fine_tunes_synthesis_only(tmp_path):
    base = tiny_base(tmp_path / "base.pt", encoder=True)
    kw = {"base": base, "classifier": tiny_classifier(tmp_path / "cls.pt"), "batch": 4}
    fit(tmp_path / "t", Transfer, TransferConfig(kimg=0.008, **kw))
    fit(tmp_path / "t", Transfer, TransferConfig(kimg=0.016, **kw))
    s = state(tmp_path / "t")
    assert s["it"] == 4 and s["style"] == "woodblock"
    base = ckpt.load_generator(tmp_path / "base.pt").state_dict()
    for name, t in s["G"].items():
        moved = not torch.allclose(t, base[name], atol=1e-3)
        if name.startswith("mapping."):
            assert not moved, name  # one latent space for base and transfer
    assert any(
        not torch.allclose(t, base[n], atol=1e-3)
        for n, t in s["G"].items()
        if n.startswith("synthesis.")
    )


def test_adversarial_transfer_is_the_gan_recipe_on_woodblock_renders(tmp_path):
    cfg = TransferConfig(base=tiny_base(tmp_path / "base.pt"), adversarial=True, kimg=0.004)
    recipe = Transfer.build(cfg, device=torch.device("cpu"))
    assert isinstance(recipe, Gan)
    assert recipe.cfg.style == "woodblock" and recipe.cfg.init == cfg.base
    assert recipe.cfg.r1_gamma == cfg.adversarial_r1_gamma
    assert recipe.cfg.ema_kimg == cfg.adversarial_ema_kimg


def test_paired_transfer_without_a_classifier_is_a_config_error(tmp_path):
    cfg = TransferConfig(base=tiny_base(tmp_path / "base.pt"))
    with pytest.raises(ConfigError, match="--classifier"):
        Transfer.build(cfg, device=torch.device("cpu"))
