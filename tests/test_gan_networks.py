"""Shapes, dtypes and latent-space behaviour of every network (tiny random weights)."""

import numpy as np
import pytest
import torch

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import data
from stylegate.gan import networks as N

TINY = {4: 32, 8: 32, 16: 16}


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return N.Generator(z_dim=32, w_dim=32, resolution=16, channels=TINY).eval()


def test_generator_shapes_and_layer_map(G):
    z = torch.randn(3, 32)
    w = G.mapping(z)
    assert w.shape == (3, 32) and w.dtype == torch.float32
    ws = G.ws(z)
    assert ws.shape == (3, G.num_ws, 32)
    assert G.num_ws == 2 * int(np.log2(16)) - 2  # StyleGAN2's count: 6 at 16px
    assert G.synthesis.layer_resolutions == [4, 8, 8, 16, 16, 16]
    img = G.synthesis(ws)
    assert img.shape == (3, 3, 16, 16) and img.dtype == torch.float32
    assert N.Generator().num_ws == 10  # the shipped 64px configuration


def test_truncation_pulls_towards_w_avg(G):
    G.mapping.w_avg.normal_()
    w = G.mapping(torch.randn(4, 32))
    assert torch.allclose(G.mapping.truncate(w, 0.0), G.mapping.w_avg.expand_as(w))
    assert torch.equal(G.mapping.truncate(w, 1.0), w)
    half = G.mapping.truncate(w, 0.5)
    assert torch.allclose(half, (w + G.mapping.w_avg) / 2, atol=1e-6)
    ws = w[:, None].expand(-1, G.num_ws, -1)
    cut = G.mapping.truncate(ws, 0.0, cutoff=2)
    assert torch.allclose(cut[:, :2], G.mapping.w_avg.expand(4, 2, -1))
    assert torch.equal(cut[:, 2:], ws[:, 2:])


def test_w_vs_w_plus(G):
    """W is one w on every layer; W+ lets layers differ and changes the image."""
    z = torch.randn(2, 32)
    ws = G.ws(z)
    assert torch.equal(ws[:, 0], ws[:, -1])
    wplus = ws.clone()
    wplus[:, -2:] += 3.0
    assert not torch.allclose(G.synthesis(ws), G.synthesis(wplus))
    # coarse layers only change the image, fine layers too, independently
    coarse = ws.clone()
    coarse[:, :2] += 3.0
    assert not torch.allclose(G.synthesis(coarse), G.synthesis(wplus))


def test_fused_and_unfused_modconv_agree(G):
    ws = G.ws(torch.randn(3, 32))
    assert torch.allclose(G.synthesis(ws), G.synthesis(ws, fused=True), atol=1e-4)


def test_noise_modes(G):
    for layer in G.modules():
        if isinstance(layer, N.SynthesisLayer):
            layer.noise_strength.data.fill_(0.5)
    ws = G.ws(torch.randn(2, 32))
    assert torch.equal(G.synthesis(ws, "const"), G.synthesis(ws, "const"))
    assert not torch.allclose(G.synthesis(ws, "const"), G.synthesis(ws, "none"))
    torch.manual_seed(1)
    a = G.synthesis(ws, "random")
    assert not torch.allclose(a, G.synthesis(ws, "random"))


def test_discriminator_encoder_classifier_shapes():
    img = torch.randn(4, 3, 16, 16)
    D = N.Discriminator(resolution=16, channels=TINY)
    assert D(img).shape == (4, 1)
    E = N.Encoder(num_ws=6, w_dim=32, resolution=16, channels=TINY)
    E.w_avg.fill_(0.25)
    ws = E(img)
    assert ws.shape == (4, 6, 32) and ws.dtype == torch.float32
    C = N.AttributeClassifier(resolution=16, num_binary=len(data.ATTRIBUTES), width=8)
    assert C(img).shape == (4, len(data.ATTRIBUTES) + 1)
    f = C.features(img)
    assert f.shape == (4, 32, 4, 4)
    # channel-normalized: unit RMS over channels at every location
    assert torch.allclose(f.square().mean(1), torch.ones(4, 4, 4), atol=1e-3)
    assert C.embed(img).shape == (4, 256)


def test_vgg16_features_load_torchvision_layout():
    vgg = N.VGG16Features()
    sd = {}
    for idx, conv in vgg.convs.items():
        sd[f"features.{idx}.weight"] = torch.randn_like(conv.weight)
        sd[f"features.{idx}.bias"] = torch.randn_like(conv.bias)
    vgg.load_torchvision(sd)
    assert torch.equal(vgg.convs["21"].weight, sd["features.21.weight"])
    assert vgg.features(torch.randn(1, 3, 32, 32)).shape == (1, 512, 4, 4)
    del sd["features.21.bias"]
    with pytest.raises(KeyError, match="features.21.bias"):
        vgg.load_torchvision(sd)


def test_checkpoint_round_trip(tmp_path, G):
    G.mapping.w_avg.normal_()
    E = N.Encoder(num_ws=G.num_ws, w_dim=32, resolution=16, channels=TINY)
    path = tmp_path / "model.pt"
    ckpt.atomic_save({"G_ema": ckpt.pack_module(G), "encoder": ckpt.pack_module(E)}, path)
    G2 = ckpt.load_generator(path)
    E2 = ckpt.load_encoder(path)
    assert G2.num_ws == G.num_ws and G2.config == G.config
    ws = G.ws(torch.randn(2, 32))
    # stored in fp16: equal up to half precision
    assert torch.allclose(G2.synthesis(ws), G.synthesis(ws), atol=2e-2)
    assert torch.allclose(G2.mapping.w_avg, G.mapping.w_avg, atol=1e-2)
    img = torch.randn(2, 3, 16, 16)
    assert torch.allclose(E2(img), E(img), atol=2e-2)
    assert not path.with_suffix(".pt.tmp").exists()
