"""A stylegate generator's weights in the state-dict keys of NVlabs' and rosinality's
networks: the inverse of ``stylegate.export.importers``, for round-trip tests and the
imported-model benchmarks (a user's checkpoint that we know the answer for).

A generator keeps its exact function only when it was built with ``resample="fir"`` (the
upsampling both repositories use); ours are ``"nearest"`` unless built otherwise, and their
weights in another repository's structure draw a different image. Discriminators map onto
the trunks the feature networks read (fromRGB and the residual blocks); the rest of a
repository's discriminator (its epilogue) stays as the writer made it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stylegate.gan import networks as N
from tests.support import nvlabs_pickle, rosinality_ckpt


def _float(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().clone() for k, v in module.state_dict().items()}


def fir4(gain: float = 1.0) -> torch.Tensor:
    """The [1,3,3,1] blur both repositories resample with: outer product, normalized."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[:, None] * k[None, :]
    return k / k.sum() * gain


def nvlabs_channels(G: N.Generator) -> tuple[int, int]:
    """(channel_base, channel_max) that give G's widths by NVlabs' rule
    ``min(channel_base // res, channel_max)``; ValueError when none does."""
    channels = G.config["channels"]
    top = max(channels)
    base, cmax = channels[top] * top, max(channels.values())
    if any(min(base // r, cmax) != c for r, c in channels.items()):
        raise ValueError(f"widths {channels} do not follow NVlabs' channel_base rule")
    return base, cmax


def nvlabs_generator_state(G: N.Generator) -> dict[str, torch.Tensor]:
    """G's weights in stylegan2-ada-pytorch's ``Generator`` keys (resample filters too)."""
    sd = _float(G)
    out: dict[str, torch.Tensor] = {"mapping.w_avg": sd["mapping.w_avg"]}
    for i in range(len(G.mapping.layers)):
        out[f"mapping.fc{i}.weight"] = sd[f"mapping.layers.{i}.weight"]
        out[f"mapping.fc{i}.bias"] = sd[f"mapping.layers.{i}.bias"]
    for i, r in enumerate(sorted(G.config["channels"])):
        src, dst = f"synthesis.blocks.{i}", f"synthesis.b{r}"
        if r == 4:
            out[f"{dst}.const"] = sd[f"{src}.const"]
        out[f"{dst}.resample_filter"] = fir4()
        for layer in ("conv0", "conv1") if r > 4 else ("conv1",):
            s, d = f"{src}.{layer}", f"{dst}.{layer}"
            out[f"{d}.weight"] = sd[f"{s}.conv.weight"]
            out[f"{d}.affine.weight"] = sd[f"{s}.conv.affine.weight"]
            out[f"{d}.affine.bias"] = sd[f"{s}.conv.affine.bias"]
            out[f"{d}.bias"] = sd[f"{s}.bias"]
            out[f"{d}.noise_strength"] = sd[f"{s}.noise_strength"].reshape([])
            out[f"{d}.noise_const"] = sd[f"{s}.noise_const"]
            out[f"{d}.resample_filter"] = fir4()
        out[f"{dst}.torgb.weight"] = sd[f"{src}.torgb.conv.weight"]
        out[f"{dst}.torgb.bias"] = sd[f"{src}.torgb.bias"]
        out[f"{dst}.torgb.affine.weight"] = sd[f"{src}.torgb.conv.affine.weight"]
        out[f"{dst}.torgb.affine.bias"] = sd[f"{src}.torgb.conv.affine.bias"]
    return out


def nvlabs_discriminator_trunk(D: N.Discriminator) -> dict[str, torch.Tensor]:
    """Our residual discriminator's trunk in stylegan2-ada-pytorch's resnet-D keys."""
    sd = _float(D)
    r = D.config["resolution"]
    out = {
        f"b{r}.fromrgb.weight": sd["trunk.fromrgb.weight"],
        f"b{r}.fromrgb.bias": sd["trunk.fromrgb.bias"],
    }
    for i in range(len(D.trunk.blocks)):
        p = f"trunk.blocks.{i}"
        for key in ("conv0.weight", "conv0.bias", "conv1.weight", "conv1.bias", "skip.weight"):
            out[f"b{r}.{key}"] = sd[f"{p}.{key}"]
        r //= 2
    return out


def rosinality_generator_state(G: N.Generator) -> dict[str, torch.Tensor]:
    """G's weights in rosinality's ``Generator`` keys (``g_ema``), blur kernels too."""
    sd = _float(G)
    out: dict[str, torch.Tensor] = {}
    for i in range(len(G.mapping.layers)):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.layers.{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.layers.{i}.bias"]

    def styled(src: str, dst: str, noise: int, up: bool) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.conv.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.conv.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.conv.affine.bias"]
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"noises.noise_{noise}"] = sd[f"{src}.noise_const"][None, None]
        if up:
            out[f"{dst}.conv.blur.kernel"] = fir4(4.0)

    def to_rgb(src: str, dst: str, up: bool) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.conv.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.conv.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.conv.affine.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)
        if up:
            out[f"{dst}.upsample.kernel"] = fir4(4.0)

    out["input.input"] = sd["synthesis.blocks.0.const"][None]
    styled("synthesis.blocks.0.conv1", "conv1", 0, False)
    to_rgb("synthesis.blocks.0.torgb", "to_rgb1", False)
    for j in range(len(G.synthesis.blocks) - 1):
        b = f"synthesis.blocks.{j + 1}"
        styled(f"{b}.conv0", f"convs.{2 * j}", 2 * j + 1, True)
        styled(f"{b}.conv1", f"convs.{2 * j + 1}", 2 * j + 2, False)
        to_rgb(f"{b}.torgb", f"to_rgbs.{j}", True)
    return out


def rosinality_discriminator_trunk(D: N.Discriminator) -> dict[str, torch.Tensor]:
    """Our residual discriminator's fromRGB and blocks in rosinality's ``Discriminator`` keys
    (``convs.0`` a 1x1 ConvLayer, ``convs.{i}`` ResBlocks with their blur kernels)."""
    sd = _float(D)
    out = {
        "convs.0.0.weight": sd["trunk.fromrgb.weight"],
        "convs.0.1.bias": sd["trunk.fromrgb.bias"],
    }
    for i in range(len(D.trunk.blocks)):
        p, q = f"convs.{i + 1}", f"trunk.blocks.{i}"
        out[f"{p}.conv1.0.weight"] = sd[f"{q}.conv0.weight"]
        out[f"{p}.conv1.1.bias"] = sd[f"{q}.conv0.bias"]
        out[f"{p}.conv2.0.kernel"] = fir4()
        out[f"{p}.conv2.1.weight"] = sd[f"{q}.conv1.weight"]
        out[f"{p}.conv2.2.bias"] = sd[f"{q}.conv1.bias"]
        out[f"{p}.skip.0.kernel"] = fir4()
        out[f"{p}.skip.1.weight"] = sd[f"{q}.skip.weight"]
    return out


def write_nvlabs_snapshot(G: N.Generator, D: N.Discriminator, path: Path) -> Path:
    """G (and D's trunk) as a stylegan2-ada training snapshot: fp16 in the top two
    resolutions and conv_clamp 256, as its ``--cfg=auto`` writes them."""
    base, cmax = nvlabs_channels(G)
    nvlabs_pickle.write_snapshot(
        path,
        resolution=G.resolution,
        z_dim=G.z_dim,
        w_dim=G.w_dim,
        mapping_layers=len(G.mapping.layers),
        channel_base=base,
        channel_max=cmax,
        num_fp16_res=2,
        conv_clamp=256,
        g_ema_state=nvlabs_generator_state(G),
        d_state=nvlabs_discriminator_trunk(D),
    )
    return Path(path)


def write_rosinality_checkpoint(G: N.Generator, D: N.Discriminator, path: Path) -> Path:
    """G (and D's trunk) as a checkpoint of rosinality's train.py."""
    rosinality_ckpt.write_checkpoint(
        path,
        size=G.resolution,
        channels=G.config["channels"],
        style_dim=G.w_dim,
        n_mlp=len(G.mapping.layers),
        g_ema=rosinality_generator_state(G),
        d_state=rosinality_discriminator_trunk(D),
    )
    return Path(path)
