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


def test_widen_generator_draws_the_same_images_and_trains_the_new_channels():
    torch.manual_seed(0)
    G = N.Generator(z_dim=16, w_dim=16, resolution=16, channels={4: 16, 8: 8, 16: 4})
    wide = common.widen_generator(G, {8: 12, 16: 8})
    assert wide.config["channels"] == {4: 16, 8: 12, 16: 8}
    z = torch.randn(4, 16)
    with torch.no_grad():
        assert torch.allclose(wide(z), G(z), atol=1e-5)
    # the weights from the new channels start at zero but have a gradient
    wide(z).square().mean().backward()
    conv = wide.synthesis.blocks[-1].conv1.conv.weight  # 16px: 8 inputs, 4 of them new
    assert torch.count_nonzero(conv.detach()[:, 4:]) == 0
    assert conv.grad[:, 4:].abs().sum() > 0
    try:
        common.widen_generator(G, {16: 2})
    except ValueError as err:
        assert "only grow" in str(err)
    else:
        raise AssertionError("narrowing must be refused")


def test_prefetched_batches_equal_the_ones_rendered_in_the_loop():
    """Inside ``prefetching`` the batches come from worker processes, rendered ahead, and
    equal what the loop renders itself, per stream (seed, size, backdrops ...)."""
    want = [common.real_batch(5, it, 3, size=16, backdrops=b) for it in range(4) for b in (0, 2)]
    with common.prefetching(2) as pool:
        got = [common.real_batch(5, it, 3, size=16, backdrops=b) for it in range(4) for b in (0, 2)]
        hits = pool.hits
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            assert torch.equal(a, b)
    assert hits == 4  # each stream's first two batches rendered on demand, the rest ahead
    with common.prefetching(1) as pool:
        common.real_batch(6, 0, 2, size=16)  # a one-off batch (a preview's) queues nothing
        assert not pool.pending
        common.real_batch(6, 4, 2, size=16)  # a stream asked for every 4th iteration
        assert sorted(it for _, it in pool.pending) == [8, 12]
        every_fourth = common.real_batch(6, 8, 2, size=16)
    assert pool.hits == 1
    assert torch.equal(every_fourth[0], common.real_batch(6, 8, 2, size=16)[0])
    assert common._prefetch is None  # the block closed its pool
    with common.prefetching(0) as none:
        assert none is None and torch.equal(common.real_batch(5, 0, 3, size=16)[0], want[0][0])
