"""Feature networks for imported generators (export/features.py) and the inversion step
exported with them and no encoder (issue 10, item 3).

The discriminator state dicts are built here with the real key names and shapes of the
NVlabs (stylegan2-ada-pytorch ``Discriminator``, resnet architecture) and rosinality
(``model.Discriminator``) layouts; VGG16 weights are random with torchvision's keys and
shapes (no download is possible), both as a state dict file and as a TorchScript archive
written by ``torch.jit.save``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as TF
from torch import nn

from stylegate.export import api, features, graphs, onnx_export
from stylegate.gan import networks as N
from stylegate.service.signatures import INVERSION_STEP

# --------------------------------------------------------------------------- fixtures


def _fir() -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[:, None] * k[None, :]
    return k / k.sum()


def nvlabs_d_state_dict(resolution: int, channels: dict[int, int], seed: int = 0) -> dict:
    """A stylegan2-ada-pytorch resnet ``Discriminator`` state dict (random weights):
    ``b{R}.fromrgb`` on the first block, ``b{r}.conv0/conv1/skip`` and resample filters per
    block, the ``b4`` epilogue."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g)

    sd = {}
    r = resolution
    sd[f"b{r}.fromrgb.weight"] = rnd(channels[r], 3, 1, 1)
    sd[f"b{r}.fromrgb.bias"] = rnd(channels[r]) * 0.1
    while r > 4:
        tmp, out = channels[r], channels[r // 2]
        sd[f"b{r}.resample_filter"] = _fir()
        sd[f"b{r}.conv0.weight"] = rnd(tmp, tmp, 3, 3)
        sd[f"b{r}.conv0.bias"] = rnd(tmp) * 0.1
        sd[f"b{r}.conv1.weight"] = rnd(out, tmp, 3, 3)
        sd[f"b{r}.conv1.bias"] = rnd(out) * 0.1
        sd[f"b{r}.conv1.resample_filter"] = _fir()
        sd[f"b{r}.skip.weight"] = rnd(out, tmp, 1, 1)
        sd[f"b{r}.skip.resample_filter"] = _fir()
        r //= 2
    c4 = channels[4]
    sd["b4.conv.weight"] = rnd(c4, c4 + 1, 3, 3)
    sd["b4.conv.bias"] = rnd(c4)
    sd["b4.fc.weight"] = rnd(c4, c4 * 16)
    sd["b4.fc.bias"] = rnd(c4)
    sd["b4.out.weight"] = rnd(1, c4)
    sd["b4.out.bias"] = rnd(1)
    return sd


def rosinality_from_nvlabs(sd: dict, resolution: int) -> dict:
    """The same weights in rosinality's ``Discriminator`` keys: ``convs.0`` = ConvLayer 1x1
    (EqualConv2d + FusedLeakyReLU), ``convs.{i}`` = ResBlock (conv1, conv2 with Blur, skip)."""
    out = {
        "convs.0.0.weight": sd[f"b{resolution}.fromrgb.weight"],
        "convs.0.1.bias": sd[f"b{resolution}.fromrgb.bias"],
    }
    r, i = resolution, 1
    while r > 4:
        p = f"convs.{i}"
        out[f"{p}.conv1.0.weight"] = sd[f"b{r}.conv0.weight"]
        out[f"{p}.conv1.1.bias"] = sd[f"b{r}.conv0.bias"]
        out[f"{p}.conv2.0.kernel"] = _fir()
        out[f"{p}.conv2.1.weight"] = sd[f"b{r}.conv1.weight"]
        out[f"{p}.conv2.2.bias"] = sd[f"b{r}.conv1.bias"]
        out[f"{p}.skip.0.kernel"] = _fir()
        out[f"{p}.skip.1.weight"] = sd[f"b{r}.skip.weight"]
        r //= 2
        i += 1
    c4 = sd["b4.conv.bias"].shape[0]
    out["final_conv.0.weight"] = sd["b4.conv.weight"]
    out["final_conv.1.bias"] = sd["b4.conv.bias"]
    out["final_linear.0.weight"] = sd["b4.fc.weight"]
    out["final_linear.0.bias"] = sd["b4.fc.bias"]
    out["final_linear.1.weight"] = sd["b4.out.weight"][:, :c4]
    out["final_linear.1.bias"] = sd["b4.out.bias"]
    return out


def upfirdn_down2(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Reference: pad, correlate with the flipped FIR (upfirdn2d's convention), keep even
    pixels; written independently of the code under test."""
    c = x.shape[1]
    f = _fir().flip([0, 1])
    y = TF.conv2d(TF.pad(x, [pad] * 4), f[None, None].repeat(c, 1, 1, 1), groups=c)
    return y[:, :, ::2, ::2]


def reference_nvlabs_features(sd, img, resolution, blocks, conv_clamp=None):
    """NVlabs Conv2dLayer/bias_act/DiscriminatorBlock semantics, spelled out."""

    def layer(x, w, b, *, down=False, act=True, gain=1.0):
        wg = 1 / math.sqrt(w.shape[1] * w.shape[2] * w.shape[3])
        if down and w.shape[-1] == 1:
            x = upfirdn_down2(x, 1)
            x = TF.conv2d(x, w * wg)
        elif down:
            c = x.shape[1]
            f = _fir()
            x = TF.conv2d(TF.pad(x, [2] * 4), f[None, None].repeat(c, 1, 1, 1), groups=c)
            x = TF.conv2d(x, w * wg, stride=2)
        else:
            x = TF.conv2d(x, w * wg, padding=w.shape[-1] // 2)
        if b is not None:
            x = x + b.view(1, -1, 1, 1)
        if act:
            x = TF.leaky_relu(x, 0.2)
        g = (math.sqrt(2) if act else 1.0) * gain
        x = x * g
        if conv_clamp is not None and act:
            x = x.clamp(-conv_clamp * gain, conv_clamp * gain)
        return x

    r = resolution
    x = layer(img, sd[f"b{r}.fromrgb.weight"], sd[f"b{r}.fromrgb.bias"])
    for _ in range(blocks):
        h = math.sqrt(0.5)
        y = layer(x, sd[f"b{r}.skip.weight"], None, down=True, act=False, gain=h)
        x = layer(x, sd[f"b{r}.conv0.weight"], sd[f"b{r}.conv0.bias"])
        x = layer(x, sd[f"b{r}.conv1.weight"], sd[f"b{r}.conv1.bias"], down=True, gain=h)
        x = y + x
        r //= 2
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-6)


def vgg16_state_dict(seed: int = 0) -> dict:
    """torchvision ``vgg16().state_dict()`` keys and shapes (features + classifier), random."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for idx, cin, cout in features.VGG16_CONVS:
        sd[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * math.sqrt(
            2 / (cin * 9)
        )
        sd[f"features.{idx}.bias"] = torch.randn(cout, generator=g) * 0.01
    sd["classifier.0.weight"] = torch.zeros(4, 8)  # shapes trimmed: never read
    sd["classifier.0.bias"] = torch.zeros(4)
    return sd


def tiny_generator(resolution: int = 16, seed: int = 0) -> N.Generator:
    torch.manual_seed(seed)
    ch = {r: 16 for r in (2**i for i in range(2, resolution.bit_length()))}
    g = N.Generator(
        z_dim=16, w_dim=16, resolution=resolution, channels=ch, mapping_layers=2, resample="fir"
    )
    with torch.no_grad():
        g.mapping.w_avg.copy_(g.mapping(torch.randn(256, 16)).mean(0))
        for m in g.modules():
            if isinstance(m, N.SynthesisLayer):
                m.noise_strength.fill_(0.1)
    return g.eval().requires_grad_(False)


D_CHANNELS = {16: 8, 8: 12, 4: 16}


# --------------------------------------------------------------------------- discriminator


@pytest.mark.parametrize("conv_clamp", [None, 0.5])
def test_nvlabs_discriminator_features_match_reference(conv_clamp):
    sd = nvlabs_d_state_dict(16, D_CHANNELS)
    img = torch.rand(3, 3, 16, 16) * 2 - 1
    net = features.discriminator_features(sd, num_blocks=2, conv_clamp=conv_clamp)
    got = net.features(img)
    want = reference_nvlabs_features(sd, img, 16, 2, conv_clamp)
    assert got.shape == (3, D_CHANNELS[4], 4, 4)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert "b16, b8" in net.description


def test_rosinality_discriminator_features_equal_nvlabs_on_same_weights():
    sd = nvlabs_d_state_dict(16, D_CHANNELS, seed=1)
    ros = rosinality_from_nvlabs(sd, 16)
    assert features.discriminator_layout(ros) == "rosinality"
    img = torch.rand(2, 3, 16, 16) * 2 - 1
    a = features.discriminator_features(sd, num_blocks=1).features(img)
    b = features.discriminator_features(ros, num_blocks=1).features(img)
    assert a.shape == (2, D_CHANNELS[8], 8, 8)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(a, reference_nvlabs_features(sd, img, 16, 1), atol=1e-5, rtol=1e-5)


def test_discriminator_features_refuse_other_layouts_and_filters():
    with pytest.raises(features.FeatureNetworkError, match="not a StyleGAN2 discriminator"):
        features.discriminator_features({"trunk.fromrgb.weight": torch.zeros(4, 3, 1, 1)})
    sd = nvlabs_d_state_dict(16, D_CHANNELS)
    sd["b16.conv1.resample_filter"] = torch.full((4, 4), 1 / 16)
    with pytest.raises(features.FeatureNetworkError, match=r"\[1,3,3,1\]"):
        features.discriminator_features(sd)
    sd = nvlabs_d_state_dict(16, D_CHANNELS)
    del sd["b16.conv0.bias"]
    with pytest.raises(features.FeatureNetworkError, match="b16.conv0.bias"):
        features.discriminator_features(sd)


# --------------------------------------------------------------------------- VGG16 and none


def test_vgg16_state_dict_file_loads_and_refuses_wrong_keys_and_shapes(tmp_path):
    sd = vgg16_state_dict()
    path = tmp_path / "vgg16.pth"
    torch.save(sd, path)
    net = features.vgg16_features(path, resolution=16)
    assert net.layer == "conv3_3"
    f = net.features(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert f.shape == (2, 256, 4, 4)
    torch.testing.assert_close(net.weights[4], sd["features.10.weight"])

    bad = dict(sd)
    bad["features.12.weight"] = torch.zeros(256, 128, 3, 3)
    torch.save(bad, path)
    with pytest.raises(features.FeatureNetworkError, match=r"features\.12\.weight has shape"):
        features.load_vgg16_weights(path)
    torch.save({k: v for k, v in sd.items() if k != "features.7.bias"}, path)
    with pytest.raises(features.FeatureNetworkError, match=r"lacks 'features\.7\.bias'"):
        features.load_vgg16_weights(path)
    torch.save({"conv.weight": torch.zeros(3)}, path)
    with pytest.raises(features.FeatureNetworkError, match="not a torchvision vgg16"):
        features.load_vgg16_weights(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(features.FeatureNetworkError, match="not a torch state dict"):
        features.load_vgg16_weights(path)


class _ScriptedVGG(nn.Module):
    """A VGG16 conv stack under other attribute names, with a traced constant (like a
    projector's normalization), saved by ``torch.jit.save``."""

    def __init__(self, sd):
        super().__init__()
        self.layers = nn.ModuleList()
        for idx, cin, cout in features.VGG16_CONVS:
            conv = nn.Conv2d(cin, cout, 3, padding=1)
            conv.weight.data.copy_(sd[f"features.{idx}.weight"])
            conv.bias.data.copy_(sd[f"features.{idx}.bias"])
            self.layers.append(conv)
        self.lin0 = nn.Conv2d(64, 1, 1, bias=False)  # an LPIPS-like linear head: not a conv3x3

    def forward(self, x):
        x = x * torch.tensor([2.0, 2.0, 2.0]).view(1, 3, 1, 1)
        for conv in self.layers:
            x = torch.relu(conv(x))
        return x


def test_vgg16_torchscript_archive_read_as_data(tmp_path):
    sd = vgg16_state_dict(seed=3)
    path = tmp_path / "vgg16.pt"
    with pytest.warns(torch.jit.TracerWarning):
        torch.jit.trace(_ScriptedVGG(sd), torch.zeros(1, 3, 4, 4)).save(str(path))
    assert features.is_torchscript(path)
    weights = features.load_vgg16_weights(path)
    assert len(weights) == 13
    for (w, b), (idx, _, _) in zip(weights, features.VGG16_CONVS):
        torch.testing.assert_close(w, sd[f"features.{idx}.weight"])
        torch.testing.assert_close(b, sd[f"features.{idx}.bias"])


def test_torchscript_reader_refuses_unknown_globals(tmp_path):
    import pickle
    import zipfile

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(Evil(), protocol=2))
        z.writestr("evil/code/__torch__.py", "")
    with pytest.raises(features.FeatureNetworkError, match=r"refusing to load (posix|os)\.system"):
        features.load_vgg16_weights(path)


def test_structure_features_measure_ssim_structure():
    net = features.StructureFeatures()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    f = net.features(x)
    assert f.shape == (1, 3, 32, 32)
    # Invariant to brightness and (mostly) contrast changes, sensitive to structure.
    same = (net.features(0.5 * x + 0.2) - f).square().mean()
    other = (net.features(torch.rand(1, 3, 32, 32, generator=g) * 2 - 1) - f).square().mean()
    assert same < 0.05 * other
    assert other > 1.0  # ~2 (1 - correlation) for unrelated images


# --------------------------------------------------------------------------- the step, no encoder


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


@pytest.fixture(scope="module")
def imported_repo(tmp_path_factory):
    """A tiny "imported" generator exported with its own D's features (no encoder)."""
    out = tmp_path_factory.mktemp("imported")
    G = tiny_generator(16)
    dsd = nvlabs_d_state_dict(16, D_CHANNELS)
    meta = api.export_generator(out, G, discriminator=dsd, directions=None)
    return out, meta, G, features.discriminator_features(dsd)


def _check_step_parity(sess, step, G, feat, dims):
    for batch in (1, 3, 7):
        inputs = onnx_export.example_inputs(INVERSION_STEP, dims, batch, seed=batch)
        want = step(*inputs)
        got = sess.run(None, {s.name: t.numpy() for s, t in zip(INVERSION_STEP.inputs, inputs)})
        loss, terms, grad, image = (t.numpy() for t in want)
        np.testing.assert_allclose(got[0], loss, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got[1], terms, rtol=1e-4, atol=1e-6)
        assert (terms[:, 2] == 0).all() and (got[1][:, 2] == 0).all()  # no domain term
        assert terms[:, 1].min() > 0  # the feature term is live
        assert _rel(got[2], grad) < 1e-3
        np.testing.assert_allclose(got[3], image, atol=1e-4)
        # The gradient is torch autograd's of the pixel and feature terms alone.
        ws = inputs[0].clone().requires_grad_(True)
        loss2, _, _ = graphs.inversion_objective(G.synthesis, None, feat, ws, *inputs[1:])
        (g2,) = torch.autograd.grad(loss2.sum(), ws)
        assert _rel(got[2], g2.numpy()) < 1e-3


def test_imported_step_with_discriminator_features_matches_autograd(imported_repo):
    out, meta, G, feat = imported_repo
    entry = meta["generators"]["base"]
    sess = ort.InferenceSession(
        str(out / entry["models"]["inversion_step"] / "1" / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )
    step = graphs.InversionStep(G.synthesis, None, feat)
    dims = {k: entry[k] for k in ("resolution", "num_ws", "w_dim", "z_dim")}
    dims.update(feature_channels=entry["feature_channels"], feature_resolution=4)
    _check_step_parity(sess, step, G, feat, dims)


def test_imported_step_with_structure_features_matches_autograd(tmp_path):
    G = tiny_generator(16, seed=1)
    feat = features.build_feature_net("none", resolution=16)
    dims = {"resolution": 16, "num_ws": G.num_ws, "w_dim": G.w_dim, "z_dim": G.z_dim}
    dims.update(feature_channels=3, feature_resolution=16)
    step = onnx_export.wrap("inversion_step", generator=G, encoder=None, feature_net=feat)
    path = onnx_export.export_onnx(step, "inversion_step", dims, tmp_path / "step.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _check_step_parity(sess, step, G, feat, dims)


def test_export_generator_serves_features_and_step_without_encoder(imported_repo, tmp_path):
    out, meta, G, _ = imported_repo
    entry = json.loads((out / "stylegate.json").read_text())["generators"]["base"]
    assert entry == meta["generators"]["base"]
    assert set(entry["models"]) == {"mapping", "synthesis", "features", "inversion_step"}
    assert entry["feature_channels"] == D_CHANNELS[4] and entry["feature_resolution"] == 4
    assert entry["feature_network"].startswith("NVlabs discriminator b16, b8")
    assert (out / "inversion_step" / "1" / "model.onnx").exists()
    with pytest.raises(features.FeatureNetworkError, match="no discriminator"):
        api.export_generator(tmp_path / "x", G, features="discriminator", directions=None)
