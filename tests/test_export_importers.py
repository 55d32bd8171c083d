"""Users' checkpoints: rosinality ``.pt`` and NVlabs ``.pkl`` files written with their real
structure (tests/support/rosinality_ckpt.py, tests/support/nvlabs_pickle.py), imported and
compared with reference forwards written from the two repositories' math (fused per-sample
weights, upfirdn2d), independently of gan.networks. Malicious files are refused without
running anything; every refusal reaches the CLI as one line and exit code 2."""

from __future__ import annotations

import math
import os
import pickle
import pickletools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylegate.export import importers, safe_pickle
from tests.support import nvlabs_pickle as NP
from tests.support import rosinality_ckpt as RC

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
    for j in range(ws.shape[1] // 2 - 1):  # num_ws = 2 log2(R) - 2
        out = styled(f"convs.{2 * j}", out, ws[:, i], f"noise_{2 * j + 1}", up=True)
        out = styled(f"convs.{2 * j + 1}", out, ws[:, i + 1], f"noise_{2 * j + 2}")
        skip = to_rgb(f"to_rgbs.{j}", out, ws[:, i + 2], skip)
        i += 2
    return skip


# --------------------------------------------------------------------------- fixtures

ROS_CH = {4: 16, 8: 16, 16: 8, 32: 8}


@pytest.fixture(scope="module")
def rosinality_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("rosinality") / "000800.pt"
    return RC.write_checkpoint(
        path, size=32, channels=ROS_CH, style_dim=16, n_mlp=8, latent_avg=True
    )


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    path = tmp_path_factory.mktemp("nvlabs") / "network-snapshot-000200.pkl"
    return NP.write_snapshot(path, resolution=32, mapping_layers=8, conv_clamp=256)


def _ws(batch, num_ws, w_dim, seed=3):
    return torch.randn(batch, num_ws, w_dim, generator=torch.Generator().manual_seed(seed))


def _globals(data: bytes) -> set[tuple[str, str, str]]:
    """(module, name, the opcode that consumes the global) for every global of a pickle,
    following the memo so that STACK_GLOBAL's memoized strings resolve."""
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    memo, pushed, out = {}, [], set()
    for i, (name, arg) in enumerate(ops):
        if name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            pushed.append(arg)
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            pushed.append(memo.get(arg))
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
            continue
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            module, attr = arg.split(" ") if name == "GLOBAL" else pushed[-2:]
            nxt = next(n for n, _ in ops[i + 1 :] if n not in ("MEMOIZE", "EMPTY_TUPLE"))
            out.add((module, attr, nxt))
            pushed.append(f"{module}.{attr}")
        else:
            pushed.append(None)
    return out


# --------------------------------------------------------------------------- rosinality


def test_rosinality_fixture_has_the_training_checkpoint_structure(rosinality_ckpt):
    ckpt = torch.load(rosinality_ckpt.path, weights_only=False)
    assert set(ckpt) == {"g", "d", "g_ema", "g_optim", "d_optim", "args", "ada_aug_p", "latent_avg"}
    assert ckpt["args"].n_mlp == 8 and ckpt["g_optim"]["param_groups"][0]["betas"][
        1
    ] == pytest.approx(0.99**0.8)
    assert {"convs.1.conv2.0.kernel", "final_linear.1.weight"} <= set(ckpt["d"])
    assert ckpt["g_ema"]["convs.0.conv.weight"].shape == (1, 16, 16, 3, 3)


def test_rosinality_converts_to_the_reference(rosinality_ckpt):
    ck = importers.load_checkpoint(rosinality_ckpt.path)
    G, sd = ck.generator, rosinality_ckpt.g_ema
    assert ck.source_format == "rosinality" and ck.c_dim == 0
    assert (G.resolution, G.num_ws, G.w_dim, G.z_dim) == (32, 8, 16, 16)
    assert G.config["resample"] == "fir"
    ws = _ws(4, G.num_ws, 16)
    want = rosinality_forward(sd, ws)
    got = G.synthesis(ws, noise_mode="const")
    assert want.abs().max() > 0.1
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    z = torch.randn(4, 16)
    layers = [(sd[f"style.{i}.weight"], sd[f"style.{i}.bias"]) for i in range(1, 9)]
    torch.testing.assert_close(G.mapping(z), mapping_ref(z, layers), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(G.mapping.w_avg, rosinality_ckpt.latent_avg)
    assert ck.discriminator.keys() == rosinality_ckpt.d.keys()


def test_rosinality_without_latent_avg_estimates_it(tmp_path):
    ck = RC.write_checkpoint(tmp_path / "a.pt", size=8, channels={4: 8, 8: 8}, style_dim=8)
    G = importers.load_checkpoint(ck.path, "rosinality").generator
    layers = [(ck.g_ema[f"style.{i}.weight"], ck.g_ema[f"style.{i}.bias"]) for i in range(1, 9)]
    z = torch.randn(4096, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(G.mapping.w_avg, mapping_ref(z, layers).mean(0), atol=1e-3, rtol=0)


# --------------------------------------------------------------------------- NVlabs


def test_snapshot_fixture_has_nvlabs_opcodes(snapshot):
    """What a real snapshot pickles: persistence records by REDUCE, EasyDict by NEWOBJ,
    tensors through torch._utils, nothing else."""
    data = snapshot.path.read_bytes()
    found = _globals(data)
    names = {(m, n) for m, n, _ in found}
    assert ("dnnlib.util", "EasyDict", "NEWOBJ") in found  # a class, rebuilt by NEWOBJ
    assert ("torch_utils.persistence", "_reconstruct_persistent_obj") in names
    # dozens of records, but each module's source is one string, written once then memo refs
    assert data.count(b"class SynthesisLayer") <= 2 < data.count(b"SynthesisLayer")
    assert names <= {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"),
        ("dnnlib.util", "EasyDict"),
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch.storage", "_load_from_bytes"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "dtype"),
    }, names
    raw = safe_pickle.load(snapshot.path)
    assert list(raw) == ["training_set_kwargs", "G", "D", "G_ema", "augment_pipe"]
    g = raw["G_ema"]
    assert isinstance(g, safe_pickle.PersistentObject) and g.class_name == "Generator"
    assert g.version == 6 and "class SynthesisLayer" in g.module_src
    kw = g.init_kwargs
    assert isinstance(kw["synthesis_kwargs"], safe_pickle.EasyDict)
    assert kw["synthesis_kwargs"].conv_clamp == 256 and kw["mapping_kwargs"].num_layers == 8
    assert raw["augment_pipe"].class_name == "AugmentPipe"


@pytest.mark.parametrize(
    "repo, resolution, mapping_layers, c_dim, conv_clamp, num_fp16_res",
    [
        ("stylegan2-ada", 32, 8, 0, 256, 4),
        ("stylegan3", 64, 2, 0, None, 0),
        ("stylegan2-ada", 256, 2, 5, 256, 4),
        ("stylegan3", 32, 8, 3, 0.5, 2),  # a clamp that bites
    ],
)
def test_nvlabs_snapshot_matches_nvlabs_fp32_forward(
    tmp_path, repo, resolution, mapping_layers, c_dim, conv_clamp, num_fp16_res
):
    snap = NP.write_snapshot(
        tmp_path / "network-snapshot-000040.pkl",
        repo=repo,
        resolution=resolution,
        mapping_layers=mapping_layers,
        c_dim=c_dim,
        conv_clamp=conv_clamp,
        num_fp16_res=num_fp16_res,
        channel_base=512 if resolution <= 64 else 1024,
        channel_max=32 if resolution <= 64 else 16,
    )
    ck = importers.load_checkpoint(snap.path)
    assert not os.path.exists("/tmp/stylegate-pwned-by-module-src")
    G = ck.generator
    assert (ck.source_format, ck.c_dim, G.c_dim) == ("nvlabs", c_dim, c_dim)
    assert (G.resolution, G.num_ws) == (resolution, snap.num_ws)
    assert G.config.get("conv_clamp") == conv_clamp
    torch.testing.assert_close(G.mapping.w_avg, snap.state["mapping.w_avg"])
    z = torch.randn(3, snap.z_dim)
    c = F.one_hot(torch.tensor([0, 1, 2]) % max(c_dim, 1), c_dim).float() if c_dim else None
    with torch.no_grad():
        torch.testing.assert_close(
            G.mapping(z, c), NP.reference_mapping(snap.state, z, c), atol=1e-5, rtol=1e-5
        )
        ws = _ws(2, G.num_ws, G.w_dim)
        want = NP.reference_synthesis(snap.state, ws, conv_clamp=conv_clamp)
        got = G.synthesis(ws, noise_mode="const")
    assert want.abs().max() > 0.1
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
    if conv_clamp == 0.5:  # the clamp is exercised, not vacuous
        unclamped = NP.reference_synthesis(snap.state, ws, conv_clamp=None)
        assert (unclamped - want).abs().max() > 0.1
    assert ck.discriminator.keys() == snap.d_state.keys()
    for k, v in snap.d_state.items():
        torch.testing.assert_close(ck.discriminator[k], v)


def test_nvlabs_1024_structure(tmp_path):
    snap = NP.write_snapshot(
        tmp_path / "n.pkl", resolution=1024, channel_base=1024, channel_max=8, mapping_layers=2
    )
    G = importers.load_checkpoint(snap.path).generator
    assert (G.resolution, G.num_ws, len(G.synthesis.blocks)) == (1024, 18, 9)
    assert {k: tuple(v.shape) for k, v in G.state_dict().items() if "torgb.conv.weight" in k}[
        "synthesis.blocks.8.torgb.conv.weight"
    ] == (3, 1, 1, 1)


def test_imports_g_ema_not_g(snapshot):
    G = importers.load_checkpoint(snapshot.path).generator
    torch.testing.assert_close(
        G.synthesis.blocks[0].const, snapshot.state["synthesis.b4.const"], atol=0, rtol=0
    )


def test_converted_generator_roundtrips_through_a_checkpoint(snapshot, tmp_path):
    from stylegate.gan import checkpoint as ckpt

    G = importers.load_checkpoint(snapshot.path).generator
    ckpt.atomic_save({"G_ema": ckpt.pack_module(G, fp16=False)}, tmp_path / "g.pt")
    G2 = ckpt.load_generator(tmp_path / "g.pt")
    ws = _ws(2, G.num_ws, G.w_dim)
    torch.testing.assert_close(G2.synthesis(ws), G.synthesis(ws))
    assert G2.config == G.config


def test_default_generator_keeps_nearest_resampling():
    from stylegate.gan import networks as N

    g = N.Generator(resolution=8, channels={4: 8, 8: 8}, z_dim=8, w_dim=8)
    assert not {"resample", "conv_clamp", "c_dim"} & set(g.config)
    assert all(b.resample == "nearest" for b in g.synthesis.blocks)


def test_stylegan3_and_tensorflow_pickles_are_refused_with_what_to_do(tmp_path):
    sg3 = NP.write_stylegan3_snapshot(tmp_path / "sg3.pkl")
    with pytest.raises(importers.ConversionError, match=r"sg3\.pkl: found a StyleGAN3.*stylegan2"):
        importers.load_checkpoint(sg3)
    tf = NP.write_tensorflow_pickle(tmp_path / "tf.pkl")
    with pytest.raises(importers.ConversionError, match=r"tf\.pkl: found a TensorFlow.*legacy\.py"):
        importers.load_checkpoint(tf)


def test_unsupported_layouts_have_clear_errors(snapshot):
    sd = dict(snapshot.state)
    sd["synthesis.b8.conv0.resample_filter"] = torch.ones(4, 4) / 16
    with pytest.raises(importers.ConversionError, match="blur"):
        importers.from_nvlabs(sd)
    sd = dict(snapshot.state)
    sd["synthesis.b8.skip.weight"] = torch.zeros(1)
    with pytest.raises(importers.ConversionError, match="skip"):
        importers.from_nvlabs(sd)
    with pytest.raises(importers.ConversionError, match="rosinality"):
        importers.from_rosinality({"foo": torch.zeros(1)})


# --------------------------------------------------------------------------- safety


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
    with pytest.raises(importers.UnsafeCheckpointError, match=r"evil\.pkl: found .*references"):
        importers.load_checkpoint(path)
    with pytest.raises(safe_pickle.UnsafePickleError):
        safe_pickle.load(path)
    assert not marker.exists()


def test_persistence_record_source_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = NP.write_malicious_persistent(tmp_path / "record.pkl", marker)
    obj = safe_pickle.load(path)["G_ema"]
    assert "pathlib" in obj.module_src
    with pytest.raises(importers.ConversionError, match="no StyleGAN2 generator"):
        importers.load_checkpoint(path)
    assert not marker.exists()


def test_malicious_torch_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": _Evil(os.system, f"touch {marker}")}, path)
    with pytest.raises(importers.UnsafeCheckpointError, match=r"evil\.pt: .*references .*system"):
        importers.load_checkpoint(path)
    assert not marker.exists()


# --------------------------------------------------------------------------- CLI


def _bad_files(tmp, snapshot, rosinality_ckpt):
    marker = tmp / "pwned"
    evil_pkl, evil_pt = tmp / "evil.pkl", tmp / "evil.pt"
    with open(evil_pkl, "wb") as f:
        pickle.dump({"G_ema": _Evil(os.system, f"touch {marker}")}, f)
    torch.save({"g_ema": _Evil(os.system, f"touch {marker}")}, evil_pt)
    trunc_pkl, trunc_pt = tmp / "cut.pkl", tmp / "cut.pt"
    trunc_pkl.write_bytes(snapshot.path.read_bytes()[:5000])
    trunc_pt.write_bytes(rosinality_ckpt.path.read_bytes()[:5000])
    (tmp / "notes.txt").write_text("hello")
    return marker, [
        (["auto", tmp / "missing.pkl"], "no such file"),
        (["auto", tmp / "notes.txt"], "found neither a pickle nor a torch.save zip"),
        (["nvlabs", rosinality_ckpt.path], "found a torch.save checkpoint .*expected an NVlabs"),
        (["rosinality", snapshot.path], "found a raw pickle.*expected a rosinality"),
        (["auto", trunc_pkl], "truncated pickle"),
        (["auto", trunc_pt], "truncated"),
        (["auto", evil_pkl], "references posix.system"),
        (["rosinality", evil_pt], "references .*system"),
        (["auto", NP.write_stylegan3_snapshot(tmp / "sg3.pkl")], "StyleGAN3"),
        (["nvlabs", NP.write_tensorflow_pickle(tmp / "tf.pkl")], "TensorFlow"),
    ]


def test_cli_refusals_are_one_line_with_exit_code_2(tmp_path, snapshot, rosinality_ckpt):
    import re

    from click.testing import CliRunner

    from stylegate.export.cli import export

    marker, cases = _bad_files(tmp_path, snapshot, rosinality_ckpt)
    for (fmt, path), pattern in cases:
        args = ["--out", str(tmp_path / "repo"), "--from", *([fmt] if fmt != "auto" else []), path]
        result = CliRunner().invoke(export, [str(a) for a in args])
        out = result.output.strip()
        assert result.exit_code == 2, (args, out, result.exception)
        assert "Traceback" not in out and len(out.splitlines()) == 1, out
        assert out.startswith(f"error: {path}: ") and re.search(pattern, out), out
    assert not marker.exists() and not (tmp_path / "repo" / "stylegate.json").exists()


def test_cli_from_accepts_an_optional_format(snapshot, tmp_path):
    """`--from PATH` and `--from FORMAT PATH` parse; a format word alone is a usage error."""
    from click.testing import CliRunner

    from stylegate.export.cli import export

    r = CliRunner().invoke(export, ["--from", "rosinality"])
    assert r.exit_code == 2 and "without a checkpoint PATH" in r.output


@pytest.mark.slow
def test_cli_exports_a_conditional_snapshot(tmp_path):
    """`stylegate export --from X.pkl`: a servable repository reproducing NVlabs' forward, the
    mapping with the class-label input of the conditional contract."""
    import json

    import onnxruntime as ort
    from click.testing import CliRunner

    from stylegate.export.cli import export
    from stylegate.service.signatures import signature

    snap = NP.write_snapshot(tmp_path / "cond.pkl", resolution=16, c_dim=4, mapping_layers=2)
    out = tmp_path / "repo"
    result = CliRunner().invoke(
        export, ["--out", str(out), "--from", str(snap.path), "--no-directions"]
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "stylegate.json").read_text())
    g = meta["generators"]["base"]
    assert g["c_dim"] == 4 and g["num_ws"] == snap.num_ws
    m = ort.InferenceSession(str(out / "mapping" / "1" / "model.onnx"))
    assert [i.name for i in m.get_inputs()] == [t.name for t in signature("mapping", g).inputs]
    z = np.random.default_rng(0).standard_normal((3, snap.z_dim)).astype(np.float32)
    c = np.eye(4, dtype=np.float32)[[0, 3, 1]]
    (w,) = m.run(None, {"z": z, "c": c})
    want = NP.reference_mapping(snap.state, torch.from_numpy(z), torch.from_numpy(c))
    np.testing.assert_allclose(w, want.numpy(), atol=1e-5, rtol=1e-5)
    ws = _ws(3, snap.num_ws, 32)
    s = ort.InferenceSession(str(out / "synthesis" / "1" / "model.onnx"))
    (img,) = s.run(None, {"ws": ws.numpy(), "noise_gain": np.ones((3, 1), np.float32)})
    want = NP.reference_synthesis(snap.state, ws, conv_clamp=256)
    np.testing.assert_allclose(img, want.numpy(), atol=1e-4, rtol=1e-4)
