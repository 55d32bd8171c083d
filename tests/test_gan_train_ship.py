"""ship: a run's state -> the compact fp16 checkpoint, packed by the run's own recipe."""

import pytest
import torch

from stylegate.gan import checkpoint as ckpt
from stylegate.gan.train import ConfigError, Encoder, EncoderConfig, Gan, GanConfig
from stylegate.gan.train.ship import ship
from tests.support.gan_train import fit, state, tiny_base, tiny_classifier


def test_ship_packs_a_gan_run_in_fp16_with_the_images_its_batch_showed(tmp_path):
    fit(tmp_path / "run", Gan, GanConfig(kimg=0.006, batch=3, resolution=16))  # 2 iterations
    out = ship(tmp_path / "run", tmp_path / "out.pt")
    shipped, s = ckpt.load(out), state(tmp_path / "run")
    assert shipped["kimg"] == 2 * 3 / 1000 and shipped["style"] == "photo"
    assert shipped["G_ema"]["config"] == s["G_config"]
    for name, t in s["G_ema"].items():
        got = shipped["G_ema"]["state_dict"][name]
        assert got.dtype == (torch.float16 if t.is_floating_point() else t.dtype), name
        assert torch.equal(got, t.half() if t.is_floating_point() else t), name
    assert "encoder" not in shipped
    ckpt.load_generator(out)  # and it loads without training code


def test_ship_adds_an_encoder_and_the_discriminator_it_trained_against(tmp_path):
    base = tiny_base(tmp_path / "base.pt")
    cfg = EncoderConfig(base=base, classifier=tiny_classifier(tmp_path / "c.pt"), iters=1)
    fit(tmp_path / "enc", Encoder, EncoderConfig(**{**vars(cfg), "batch": 2, "synthetic": 2}))
    s = state(tmp_path / "enc")
    alone = ckpt.load(ship(tmp_path / "enc", tmp_path / "alone.pt"))
    assert set(alone) == {"encoder"}  # no D to replace in a new file
    shipped = ckpt.load(ship(tmp_path / "enc", base))
    assert set(shipped) == {"G_ema", "D", "encoder"}
    for name, t in s["D"].items():
        assert torch.equal(shipped["D"]["state_dict"][name], t.half()), name


def test_ship_refuses_what_is_not_a_run_of_this_trainer(tmp_path):
    with pytest.raises(ConfigError, match="no state.pt"):
        ship(tmp_path, tmp_path / "out.pt")
    ckpt.atomic_save({"C": {}, "it": 3}, tmp_path / "old" / "state.pt")
    with pytest.raises(ConfigError, match="older trainer"):
        ship(tmp_path / "old", tmp_path / "out.pt")
