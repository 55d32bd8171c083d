"""Helpers the recipes share."""

import torch

from stylegate.gan import networks as N
from stylegate.gan.train import common


def test_recenter_encoder_keeps_its_output():
    E = N.Encoder(num_ws=4, w_dim=8, resolution=16, channels={4: 16, 8: 8, 16: 8})
    x = torch.randn(3, 3, 16, 16)
    before = E(x)
    common.recenter_encoder(E, torch.randn(8))
    assert torch.allclose(E(x), before, atol=1e-5)


def test_real_batches_are_drawn_from_seed_and_iteration():
    a, _, _ = common.real_batch(3, 7, 2, size=16)
    b, _, _ = common.real_batch(3, 7, 2, size=16)
    c, _, _ = common.real_batch(3, 8, 2, size=16)
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
