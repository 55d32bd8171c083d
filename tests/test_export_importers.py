"""Users' checkpoints: rosinality ``.pt`` and NVlabs stylegan2-ada ``.pkl`` fixtures in their
exact key layouts, converted and compared with reference forwards written here from the
two repositories' documented math (fused per-sample weights / upfirdn2d), independently of
gan.networks. Malicious pickles are refused without running anything."""

from __future__ import annotations

import argparse
import collections
import math
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylegate.export import convert, safe_pickle

RES, W_DIM, N_MLP = 16, 16, 2
CH = {4: 8, 8: 8, 16: 6}
SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------- reference math


def fir(gain: float) -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[:, None] * k[None, :]
    return k / k.sum() * gain


def upfirdn(x, k, *, up=1, pad=(0, 0)):
    """upfirdn2d: zero-insert by strided assignment, pad, convolve (flipped-kernel correlation)."""
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(n, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, torch.flip(k, [0, 1])[None, None].repeat(c, 1, 1, 1), groups=c)


def mapping_ref(z, layers):
    x = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
    for w, b in layers:
        x = F.leaky_relu(F.linear(x, w * (0.01 / math.sqrt(w.shape[1]))) + b * 0.01, 0.2) * SQRT2
    return x


def rosinality_modconv(x, weight, style, *, demodulate, upsample):
    """rosinality ModulatedConv2d (fused: per-sample weights, groups=batch)."""
    n, cin, h, w = x.shape
    _, cout, _, k, _ = weight.shape
    wt = weight / math.sqrt(cin * k * k) * style[:, None, :, None, None]  # [N, out, in, k, k]
    if demodulate:
        wt = wt * torch.rsqrt(wt.pow(2).sum([2, 3, 4]) + 1e-8)[:, :, None, None, None]
    if upsample:
        wt = wt.transpose(1, 2).reshape(n * cin, cout, k, k)
        out = F.conv_transpose2d(x.reshape(1, n * cin, h, w), wt, stride=2, groups=n)
        out = out.reshape(n, cout, *out.shape[-2:])
        return upfirdn(out, fir(4.0), pad=(1, 1))
    out = F.conv2d(
        x.reshape(1, n * cin, h, w), wt.reshape(n * cout, cin, k, k), padding=k // 2, groups=n
    )
    return out.reshape(n, cout, h, w)


def rosinality_forward(sd, ws):
    def lin(prefix, s):
        return F.linear(
            s,
            sd[f"{prefix}.weight"] / math.sqrt(sd[f"{prefix}.weight"].shape[1]),
            sd[f"{prefix}.bias"],
        )

    def styled(prefix, x, s, noise, up=False):
        out = rosinality_modconv(
            x,
            sd[f"{prefix}.conv.weight"],
            lin(f"{prefix}.conv.modulation", s),
            demodulate=True,
            upsample=up,
        )
        out = out + sd[f"{prefix}.noise.weight"] * sd[f"noises.{noise}"]
        return F.leaky_relu(out + sd[f"{prefix}.activate.bias"].view(1, -1, 1, 1), 0.2) * SQRT2

    def to_rgb(prefix, x, s, skip=None):
        out = (
            rosinality_modconv(
                x,
                sd[f"{prefix}.conv.weight"],
                lin(f"{prefix}.conv.modulation", s),
                demodulate=False,
                upsample=False,
            )
            + sd[f"{prefix}.bias"]
        )
        return out if skip is None else out + upfirdn(skip, fir(4.0), up=2, pad=(2, 1))

    out = sd["input.input"].repeat(ws.shape[0], 1, 1, 1)
    out = styled("conv1", out, ws[:, 0], "noise_0")
    skip = to_rgb("to_rgb1", out, ws[:, 1])
    i = 1
    for j in range(int(math.log2(RES)) - 2):
        out = styled(f"convs.{2 * j}", out, ws[:, i], f"noise_{2 * j + 1}", up=True)
        out = styled(f"convs.{2 * j + 1}", out, ws[:, i + 1], f"noise_{2 * j + 2}")
        skip = to_rgb(f"to_rgbs.{j}", out, ws[:, i + 2], skip)
        i += 2
    return skip


def ada_forward(sd, ws):
    """stylegan2-ada-pytorch SynthesisNetwork, 'skip' architecture, non-fused modconv."""

    def fc(prefix, s):
        return F.linear(
            s,
            sd[f"{prefix}.weight"] / math.sqrt(sd[f"{prefix}.weight"].shape[1]),
            sd[f"{prefix}.bias"],
        )

    def layer(prefix, x, s, up):
        weight = sd[f"{prefix}.weight"]
        styles = fc(f"{prefix}.affine", s)
        dcoefs = (
            (weight[None] * styles[:, None, :, None, None])
            .square()
            .sum([2, 3, 4])
            .add(1e-8)
            .rsqrt()
        )
        x = x * styles[:, :, None, None]
        if up:  # conv2d_resample(up=2): transposed conv stride 2, then upfirdn2d pad 1, gain 4
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            x = upfirdn(x, sd[f"{prefix}.resample_filter"] * 4, pad=(1, 1))
        else:
            x = F.conv2d(x, weight, padding=1)
        x = (
            x * dcoefs[:, :, None, None]
            + sd[f"{prefix}.noise_const"] * sd[f"{prefix}.noise_strength"]
        )
        return F.leaky_relu(x + sd[f"{prefix}.bias"].view(1, -1, 1, 1), 0.2) * SQRT2

    def torgb(prefix, x, s):
        weight = sd[f"{prefix}.weight"]
        styles = fc(f"{prefix}.affine", s) / math.sqrt(weight.shape[1])
        return F.conv2d(x * styles[:, :, None, None], weight) + sd[f"{prefix}.bias"].view(
            1, -1, 1, 1
        )

    img = None
    idx = 0
    for r in sorted(CH):
        b = f"synthesis.b{r}"
        if r == 4:
            x = sd[f"{b}.const"][None].repeat(ws.shape[0], 1, 1, 1)
            x = layer(f"{b}.conv1", x, ws[:, idx], False)
            y = torgb(f"{b}.torgb", x, ws[:, idx + 1])
            idx += 1
        else:
            x = layer(f"{b}.conv0", x, ws[:, idx], True)
            x = layer(f"{b}.conv1", x, ws[:, idx + 1], False)
            y = torgb(f"{b}.torgb", x, ws[:, idx + 2])
            idx += 2
        img = (
            y if img is None else upfirdn(img, sd[f"{b}.resample_filter"] * 4, up=2, pad=(2, 1)) + y
        )
    return img


# --------------------------------------------------------------------------- fixtures in their layouts


def rosinality_state(seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0, offset=0.0):
        return torch.randn(shape, generator=g) * scale + offset

    sd = {}
    for i in range(1, N_MLP + 1):
        sd[f"style.{i}.weight"] = r(W_DIM, W_DIM, scale=100.0)  # EqualLinear stores weight / lr_mul
        sd[f"style.{i}.bias"] = r(W_DIM, scale=10.0)

    def styled(prefix, cin, cout, up):
        sd[f"{prefix}.conv.weight"] = r(1, cout, cin, 3, 3)
        sd[f"{prefix}.conv.modulation.weight"] = r(cin, W_DIM)
        sd[f"{prefix}.conv.modulation.bias"] = r(cin, scale=0.2, offset=1.0)
        if up:
            sd[f"{prefix}.conv.blur.kernel"] = fir(4.0)
        sd[f"{prefix}.noise.weight"] = r(1, scale=0.3)
        sd[f"{prefix}.activate.bias"] = r(cout, scale=0.2)

    def to_rgb(prefix, cin, up):
        sd[f"{prefix}.conv.weight"] = r(1, 3, cin, 1, 1)
        sd[f"{prefix}.conv.modulation.weight"] = r(cin, W_DIM)
        sd[f"{prefix}.conv.modulation.bias"] = r(cin, scale=0.2, offset=1.0)
        sd[f"{prefix}.bias"] = r(1, 3, 1, 1, scale=0.2)
        if up:
            sd[f"{prefix}.upsample.kernel"] = fir(4.0)

    sd["input.input"] = r(1, CH[4], 4, 4)
    styled("conv1", CH[4], CH[4], False)
    to_rgb("to_rgb1", CH[4], False)
    res = sorted(CH)[1:]
    for j, rr in enumerate(res):
        styled(f"convs.{2 * j}", CH[rr // 2], CH[rr], True)
        styled(f"convs.{2 * j + 1}", CH[rr], CH[rr], False)
        to_rgb(f"to_rgbs.{j}", CH[rr], True)
    sd["noises.noise_0"] = r(1, 1, 4, 4)
    for j, rr in enumerate(res):
        sd[f"noises.noise_{2 * j + 1}"] = r(1, 1, rr, rr)
        sd[f"noises.noise_{2 * j + 2}"] = r(1, 1, rr, rr)
    return sd


def ada_state(seed=1):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0, offset=0.0):
        return torch.randn(shape, generator=g) * scale + offset

    sd = {}
    for i in range(N_MLP):
        sd[f"mapping.fc{i}.weight"] = r(W_DIM, W_DIM, scale=100.0)
        sd[f"mapping.fc{i}.bias"] = r(W_DIM, scale=10.0)
    sd["mapping.w_avg"] = r(W_DIM)
    filt = fir(1.0)

    def layer(prefix, cin, cout, res):
        sd[f"{prefix}.weight"] = r(cout, cin, 3, 3)
        sd[f"{prefix}.noise_strength"] = r(scale=0.3)
        sd[f"{prefix}.bias"] = r(cout, scale=0.2)
        sd[f"{prefix}.resample_filter"] = filt.clone()
        sd[f"{prefix}.noise_const"] = r(res, res)
        sd[f"{prefix}.affine.weight"] = r(cin, W_DIM)
        sd[f"{prefix}.affine.bias"] = r(cin, scale=0.2, offset=1.0)

    for rr in sorted(CH):
        b = f"synthesis.b{rr}"
        sd[f"{b}.resample_filter"] = filt.clone()
        if rr == 4:
            sd[f"{b}.const"] = r(CH[4], 4, 4)
        else:
            layer(f"{b}.conv0", CH[rr // 2], CH[rr], rr)
        layer(f"{b}.conv1", CH[rr], CH[rr], rr)
        sd[f"{b}.torgb.weight"] = r(3, CH[rr], 1, 1)
        sd[f"{b}.torgb.bias"] = r(3, scale=0.2)
        sd[f"{b}.torgb.affine.weight"] = r(CH[rr], W_DIM)
        sd[f"{b}.torgb.affine.bias"] = r(CH[rr], scale=0.2, offset=1.0)
    return sd


class _Persistent:
    """Pickles like a torch_utils.persistence object: (_reconstruct_persistent_obj, (meta,)),
    with the module source in meta (which a safe loader must never execute)."""

    def __init__(self, class_name, state):
        self.class_name, self.state = class_name, state

    def __reduce__(self):
        meta = {
            "type": "class",
            "version": 4,
            "class_name": self.class_name,
            "state": self.state,
            "module_src": "import os\nos.system('touch /tmp/stylegate-pwned-by-module-src')\n",
        }
        return (sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (meta,))


def _module_tree(sd, prefix=""):
    """Nested pickled-module states (``_parameters``/``_buffers``/``_modules``) from flat keys."""
    params, buffers, children = (
        collections.OrderedDict(),
        collections.OrderedDict(),
        collections.OrderedDict(),
    )
    names = sorted(
        {
            k[len(prefix) :].split(".")[0]
            for k in sd
            if k.startswith(prefix) and "." in k[len(prefix) :]
        }
    )
    for k, v in sd.items():
        if k.startswith(prefix) and "." not in k[len(prefix) :]:
            name = k[len(prefix) :]
            if name in ("noise_const", "resample_filter", "w_avg"):
                buffers[name] = v
            else:
                params[name] = torch.nn.Parameter(v, requires_grad=False)
    for n in names:
        children[n] = _module_tree(sd, f"{prefix}{n}.")
    return _Persistent(
        prefix or "Generator",
        {
            "_parameters": params,
            "_buffers": buffers,
            "_modules": children,
            "training": False,
            "init_kwargs": {"z_dim": W_DIM},
        },
    )


def write_ada_pickle(path, sd):
    fake = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - only its name is pickled
        raise AssertionError

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = (
        "_reconstruct_persistent_obj"  # pickle looks it up by this
    )
    fake._reconstruct_persistent_obj = _reconstruct_persistent_obj
    sys.modules["torch_utils"] = types.ModuleType("torch_utils")
    sys.modules["torch_utils.persistence"] = fake
    try:
        data = {
            "G": _module_tree(sd),
            "D": _Persistent("Discriminator", {"_modules": {}}),
            "G_ema": _module_tree(sd),
            "augment_pipe": None,
            "training_set_kwargs": {"resolution": RES, "use_labels": False},
        }
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=4)
    finally:
        del sys.modules["torch_utils.persistence"], sys.modules["torch_utils"]


@pytest.fixture(scope="module")
def rosinality_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("rosinality") / "stylegan2-16.pt"
    sd = rosinality_state()
    latent_avg = torch.randn(W_DIM)
    torch.save(
        {"g_ema": sd, "latent_avg": latent_avg, "args": argparse.Namespace(size=RES, n_mlp=N_MLP)},
        path,
    )
    return path, sd, latent_avg


@pytest.fixture(scope="module")
def ada_pkl(tmp_path_factory):
    path = tmp_path_factory.mktemp("nvlabs") / "network-snapshot-000000.pkl"
    sd = ada_state()
    write_ada_pickle(path, sd)
    return path, sd


def _ws(batch, num_ws, seed=3):
    return torch.randn(batch, num_ws, W_DIM, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- tests


def test_rosinality_converts_to_the_reference(rosinality_ckpt):
    path, sd, latent_avg = rosinality_ckpt
    G = convert.load_generator("rosinality", path)
    assert (G.resolution, G.num_ws, G.w_dim, G.z_dim) == (
        RES,
        2 * int(math.log2(RES)) - 2,
        W_DIM,
        W_DIM,
    )
    assert G.config["resample"] == "fir"
    ws = _ws(4, G.num_ws)
    want = rosinality_forward(sd, ws)
    got = G.synthesis(ws, noise_mode="const")
    assert want.abs().max() > 0.1
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    z = torch.randn(4, W_DIM)
    layers = [(sd[f"style.{i}.weight"], sd[f"style.{i}.bias"]) for i in range(1, N_MLP + 1)]
    torch.testing.assert_close(G.mapping(z), mapping_ref(z, layers), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(G.mapping.w_avg, latent_avg)


def test_nvlabs_pickle_converts_to_the_reference(ada_pkl):
    path, sd = ada_pkl
    G = convert.load_generator("nvlabs", path)
    assert not os.path.exists("/tmp/stylegate-pwned-by-module-src")
    assert (G.resolution, G.num_ws) == (RES, 6)
    ws = _ws(3, G.num_ws)
    want = ada_forward(sd, ws)
    torch.testing.assert_close(G.synthesis(ws, noise_mode="const"), want, atol=1e-4, rtol=1e-4)
    z = torch.randn(3, W_DIM)
    layers = [(sd[f"mapping.fc{i}.weight"], sd[f"mapping.fc{i}.bias"]) for i in range(N_MLP)]
    torch.testing.assert_close(G.mapping(z), mapping_ref(z, layers), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(G.mapping.w_avg, sd["mapping.w_avg"])


def test_converted_generator_roundtrips_through_a_checkpoint(ada_pkl, tmp_path):
    from stylegate.gan import checkpoint as ckpt

    G = convert.load_generator("nvlabs", ada_pkl[0])
    ckpt.atomic_save({"G_ema": ckpt.pack_module(G, fp16=False)}, tmp_path / "g.pt")
    G2 = ckpt.load_generator(tmp_path / "g.pt")
    ws = _ws(2, G.num_ws)
    torch.testing.assert_close(G2.synthesis(ws), G.synthesis(ws))


def test_default_generator_keeps_nearest_resampling():
    from stylegate.gan import networks as N

    g = N.Generator(resolution=8, channels={4: 8, 8: 8}, z_dim=8, w_dim=8)
    assert "resample" not in g.config
    assert all(b.resample == "nearest" for b in g.synthesis.blocks)


class _Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


@pytest.mark.parametrize("fn", [os.system, eval, exec])
def test_malicious_pickle_is_refused(tmp_path, fn):
    marker = tmp_path / "pwned"
    payload = f"touch {marker}" if fn is os.system else f"open({str(marker)!r}, 'w').close()"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"G_ema": _Evil(fn, payload)}, f)
    with pytest.raises(safe_pickle.UnsafePickleError, match="refusing to load .*evil.pkl"):
        convert.load_generator("nvlabs", path)
    assert not marker.exists()


def test_malicious_rosinality_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": _Evil(os.system, f"touch {marker}")}, path)
    with pytest.raises(pickle.UnpicklingError):
        convert.load_generator("rosinality", path)
    assert not marker.exists()


def test_unsupported_layouts_have_clear_errors(ada_pkl):
    sd = dict(ada_state())
    sd["mapping.embed.weight"] = torch.zeros(W_DIM, 10)
    with pytest.raises(convert.ConversionError, match="conditional"):
        convert.from_nvlabs(sd)
    sd = ada_state()
    sd["synthesis.b8.conv0.resample_filter"] = torch.ones(4, 4) / 16
    with pytest.raises(convert.ConversionError, match="blur"):
        convert.from_nvlabs(sd)
    with pytest.raises(convert.ConversionError, match="rosinality"):
        convert.from_rosinality({"foo": torch.zeros(1)})


@pytest.mark.slow
def test_cli_exports_a_converted_pickle(ada_pkl, tmp_path):
    """`stylegate export --from nvlabs X.pkl`: a servable repository reproducing the fixture."""
    import json

    import onnxruntime as ort
    from click.testing import CliRunner

    from stylegate.export.cli import export

    out = tmp_path / "repo"
    result = CliRunner().invoke(
        export, ["--out", str(out), "--from", "nvlabs", str(ada_pkl[0]), "--samples", "500"]
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "stylegate.json").read_text())
    g = meta["generators"]["base"]
    assert g["models"] == {"mapping": "mapping", "synthesis": "synthesis"} and g["num_ws"] == 6
    ws = _ws(3, 6)
    s = ort.InferenceSession(str(out / "synthesis" / "1" / "model.onnx"))
    (img,) = s.run(None, {"ws": ws.numpy(), "noise_gain": np.ones((3, 1), np.float32)})
    np.testing.assert_allclose(img, ada_forward(ada_pkl[1], ws).numpy(), atol=1e-4, rtol=1e-4)
