"""Users' StyleGAN2 checkpoints -> stylegate's ``Generator``.

Two community layouts (key lists in DESIGN.md, "Community checkpoints"):
- rosinality/stylegan2-pytorch ``.pt`` (``g_ema`` + ``latent_avg``), loaded with
  ``torch.load(weights_only=True)``;
- NVlabs stylegan2-ada-pytorch ``.pkl`` (``G_ema``), loaded with ``export.safe_pickle``
  (a restricted unpickler: tensors and containers only, no code).

What maps exactly: the mapping network (pixel norm, equalized-lr FC layers with lr 0.01 and
scaled leaky ReLU), style affines, modulated/demodulated 3x3 convs, constant input, noise
(const buffers x strength, added before bias + activation), toRGB and W+ indexing.

What does not map onto our default networks: both repositories upsample by a stride-2
transposed convolution followed by a [1,3,3,1] FIR blur (and the skip images by zero
insertion + the same FIR), where ours uses nearest-neighbour copies. A converted generator
is therefore built with ``Generator(resample="fir")``, which implements their resampling
exactly, so conversion is numerically faithful (fp32 rounding only).

Approximations, documented: NVlabs' ``conv_clamp`` (activations clamped to +-256, only hit
by pathological inputs) is not applied; their fp16 layers run in fp32 here; rosinality's
demodulation epsilon sits inside the same rsqrt as ours (identical). Refused with a clear
error: conditional models (``mapping.embed``), non-skip architectures (``orig``, ``resnet``),
other blur kernels, StyleGAN3 and TensorFlow pickles.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import torch

from stylegate.export import safe_pickle
from stylegate.gan import networks as N

FORMATS = ("rosinality", "nvlabs")
MAX_RESOLUTION = 1024


class ConversionError(ValueError):
    """The checkpoint is not a supported StyleGAN2 layout."""


def _fir_kernel(gain: float) -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[:, None] * k[None, :]
    return k / k.sum() * gain


def _check_kernel(t: torch.Tensor, gain: float, key: str) -> None:
    t = t.float()
    if t.shape != (4, 4) or not torch.allclose(t, _fir_kernel(gain), atol=1e-6):
        raise ConversionError(f"{key}: only the [1,3,3,1] blur is supported")


def _build(
    sd_ours: dict[str, torch.Tensor],
    *,
    z_dim: int,
    w_dim: int,
    resolution: int,
    channels: dict[int, int],
    mapping_layers: int,
    img_channels: int,
) -> N.Generator:
    if resolution > MAX_RESOLUTION or resolution < 4 or resolution & (resolution - 1):
        raise ConversionError(
            f"unsupported resolution {resolution} (powers of two, 4..{MAX_RESOLUTION})"
        )
    g = N.Generator(
        z_dim=z_dim,
        w_dim=w_dim,
        resolution=resolution,
        channels=channels,
        mapping_layers=mapping_layers,
        img_channels=img_channels,
        resample="fir",
    )
    expected = g.state_dict()
    missing = sorted(set(expected) - set(sd_ours))
    if missing:
        raise ConversionError(
            f"checkpoint lacks tensors for {missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    for k, v in sd_ours.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ConversionError(
                f"{k}: shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
            )
    g.load_state_dict({k: v.float() for k, v in sd_ours.items()})
    return g.eval().requires_grad_(False)


def _fill_w_avg(g: N.Generator, n: int = 4096) -> None:
    with torch.no_grad():
        z = torch.randn(n, g.z_dim, generator=torch.Generator().manual_seed(0))
        g.mapping.w_avg.copy_(g.mapping(z).mean(0))


# --------------------------------------------------------------------------- rosinality


def from_rosinality(
    sd: dict[str, torch.Tensor], latent_avg: torch.Tensor | None = None
) -> N.Generator:
    """A rosinality ``g_ema`` state dict -> Generator(resample="fir")."""
    n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
    n_up = len([k for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
    if n_mlp == 0 or "input.input" not in sd or "conv1.conv.weight" not in sd:
        raise ConversionError(
            "not a rosinality stylegan2-pytorch generator (no style.*, input.input, conv1.*)"
        )
    resolution = 2 ** (n_up + 2)
    w_dim, z_dim = sd["style.1.weight"].shape
    channels = {4: int(sd["input.input"].shape[1])}
    for j in range(n_up):
        channels[2 ** (j + 3)] = int(sd[f"convs.{2 * j}.conv.weight"].shape[1])
    out: dict[str, torch.Tensor] = {}
    for i in range(n_mlp):
        out[f"mapping.layers.{i}.weight"] = sd[f"style.{i + 1}.weight"]
        out[f"mapping.layers.{i}.bias"] = sd[f"style.{i + 1}.bias"]

    def styled(src: str, dst: str, noise: str) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.conv.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.conv.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape([])
        out[f"{dst}.noise_const"] = sd[f"noises.{noise}"].reshape(sd[f"noises.{noise}"].shape[-2:])
        if f"{src}.conv.blur.kernel" in sd:
            _check_kernel(sd[f"{src}.conv.blur.kernel"], 4.0, f"{src}.conv.blur.kernel")

    def to_rgb(src: str, dst: str) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.conv.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.conv.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(-1)
        if f"{src}.upsample.kernel" in sd:
            _check_kernel(sd[f"{src}.upsample.kernel"], 4.0, f"{src}.upsample.kernel")

    out["synthesis.blocks.0.const"] = sd["input.input"][0]
    styled("conv1", "synthesis.blocks.0.conv1", "noise_0")
    to_rgb("to_rgb1", "synthesis.blocks.0.torgb")
    for j in range(n_up):
        styled(f"convs.{2 * j}", f"synthesis.blocks.{j + 1}.conv0", f"noise_{2 * j + 1}")
        styled(f"convs.{2 * j + 1}", f"synthesis.blocks.{j + 1}.conv1", f"noise_{2 * j + 2}")
        to_rgb(f"to_rgbs.{j}", f"synthesis.blocks.{j + 1}.torgb")
    out["mapping.w_avg"] = (latent_avg if latent_avg is not None else torch.zeros(w_dim)).reshape(
        -1
    )
    g = _build(
        out,
        z_dim=int(z_dim),
        w_dim=int(w_dim),
        resolution=resolution,
        channels=channels,
        mapping_layers=n_mlp,
        img_channels=int(sd["to_rgb1.conv.weight"].shape[1]),
    )
    if latent_avg is None:
        _fill_w_avg(g)
    return g


def load_rosinality(path: str | os.PathLike) -> N.Generator:
    """Load a rosinality ``.pt`` (data only: ``weights_only=True``; their training
    checkpoints also pickle an ``argparse.Namespace``, which is allowed as plain data)."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    sd = ckpt.get("g_ema", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise ConversionError(f"{path}: expected a dict with 'g_ema'")
    return from_rosinality(sd, ckpt.get("latent_avg"))


# --------------------------------------------------------------------------- NVlabs (ADA)


def from_nvlabs(sd: dict[str, torch.Tensor]) -> N.Generator:
    """A stylegan2-ada-pytorch ``G_ema`` state dict -> Generator(resample="fir")."""
    if any(k.startswith(("synthesis.L0", "synthesis.input.")) for k in sd):
        raise ConversionError("StyleGAN3 networks are not supported (StyleGAN2-ADA only)")
    if "mapping.embed.weight" in sd:
        raise ConversionError("conditional networks (mapping.embed, c_dim > 0) are not supported")
    n_fc = len([k for k in sd if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
    res = sorted(
        int(m.group(1)) for k in sd if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k))
    )
    if n_fc == 0 or not res or res[0] != 4:
        raise ConversionError(
            "not a stylegan2-ada-pytorch generator (no mapping.fc*, synthesis.b4.*)"
        )
    if any(".skip." in k for k in sd) or any(f"synthesis.b{r}.torgb.weight" not in sd for r in res):
        raise ConversionError(
            "only the 'skip' synthesis architecture (StyleGAN2 default) is supported"
        )
    w_dim, z_dim = sd["mapping.fc0.weight"].shape
    out: dict[str, torch.Tensor] = {}
    for i in range(n_fc):
        out[f"mapping.layers.{i}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"mapping.layers.{i}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["mapping.w_avg"] = sd["mapping.w_avg"]
    channels = {}
    for i, r in enumerate(res):
        src, dst = f"synthesis.b{r}", f"synthesis.blocks.{i}"
        channels[r] = int(sd[f"{src}.conv1.weight"].shape[0])
        if r == 4:
            out[f"{dst}.const"] = sd[f"{src}.const"]
        for layer in ("conv0", "conv1") if r > 4 else ("conv1",):
            s, d = f"{src}.{layer}", f"{dst}.{layer}"
            out[f"{d}.conv.weight"] = sd[f"{s}.weight"]
            out[f"{d}.conv.affine.weight"] = sd[f"{s}.affine.weight"]
            out[f"{d}.conv.affine.bias"] = sd[f"{s}.affine.bias"]
            out[f"{d}.bias"] = sd[f"{s}.bias"]
            out[f"{d}.noise_strength"] = sd[f"{s}.noise_strength"].reshape([])
            out[f"{d}.noise_const"] = sd[f"{s}.noise_const"]
            if f"{s}.resample_filter" in sd:
                _check_kernel(sd[f"{s}.resample_filter"], 1.0, f"{s}.resample_filter")
        for key in ("weight", "bias"):
            out[f"{dst}.torgb.{'conv.' if key == 'weight' else ''}{key}"] = sd[f"{src}.torgb.{key}"]
        out[f"{dst}.torgb.conv.affine.weight"] = sd[f"{src}.torgb.affine.weight"]
        out[f"{dst}.torgb.conv.affine.bias"] = sd[f"{src}.torgb.affine.bias"]
        if f"{src}.resample_filter" in sd:
            _check_kernel(sd[f"{src}.resample_filter"], 1.0, f"{src}.resample_filter")
    return _build(
        out,
        z_dim=int(z_dim),
        w_dim=int(w_dim),
        resolution=res[-1],
        channels=channels,
        mapping_layers=n_fc,
        img_channels=int(sd[f"synthesis.b{res[-1]}.torgb.weight"].shape[0]),
    )


def load_nvlabs(path: str | os.PathLike, key: str = "G_ema") -> N.Generator:
    """Load a stylegan2-ada-pytorch network pickle with the restricted unpickler."""
    data = safe_pickle.load(path)
    if not isinstance(data, dict) or key not in data:
        raise ConversionError(f"{path}: expected a network pickle with {key!r}")
    net = data[key]
    if isinstance(net, dict) and all(isinstance(v, torch.Tensor) for v in net.values()):
        sd = net  # already a state dict
    else:
        try:
            sd = safe_pickle.module_state_dict(net)
        except ValueError as e:
            raise ConversionError(f"{path}: {key} is not a pickled network ({e})") from e
    return from_nvlabs(sd)


def load_generator(fmt: str, path: str | os.PathLike) -> N.Generator:
    """``fmt``: "rosinality" (.pt) or "nvlabs" (.pkl)."""
    if fmt == "rosinality":
        return load_rosinality(Path(path))
    if fmt == "nvlabs":
        return load_nvlabs(Path(path))
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
