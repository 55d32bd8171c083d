"""rosinality/stylegan2-pytorch training checkpoints as its ``train.py`` saves them.

``torch.save`` of a dict: ``g``, ``d``, ``g_ema`` (state dicts of its ``model.Generator`` /
``model.Discriminator``, with their key names, shapes and buffers: ``noises.noise_k``, the
blur kernels), ``g_optim`` / ``d_optim`` (real ``torch.optim.Adam`` state dicts after a step),
``args`` (an ``argparse.Namespace``) and ``ada_aug_p``. ``convert_weight.py`` outputs also
carry ``latent_avg``: ``latent_avg=True`` adds it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import torch


def real_channels(size: int, channel_multiplier: int = 2) -> dict[int, int]:
    """model.py's channel table."""
    cm = channel_multiplier
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm}
    table.update({512: 32 * cm, 1024: 16 * cm})
    return {r: c for r, c in table.items() if r <= size}


def _fir(gain: float) -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[:, None] * k[None, :]
    return k / k.sum() * gain


def generator_state(
    size: int, channels: dict[int, int], *, style_dim: int, n_mlp: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A ``Generator(size, style_dim, n_mlp)`` state dict with random trained-looking values."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0, offset=0.0):
        return torch.randn(shape, generator=g) * scale + offset

    sd = {}
    for i in range(1, n_mlp + 1):  # style.0 is PixelNorm (no tensors)
        sd[f"style.{i}.weight"] = r(style_dim, style_dim, scale=100.0)  # EqualLinear: w / lr_mul
        sd[f"style.{i}.bias"] = r(style_dim, scale=10.0)
    sd["input.input"] = r(1, channels[4], 4, 4)

    def styled(prefix, cin, cout, up):
        sd[f"{prefix}.conv.weight"] = r(1, cout, cin, 3, 3)
        sd[f"{prefix}.conv.modulation.weight"] = r(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = r(cin, scale=0.2, offset=1.0)
        if up:
            sd[f"{prefix}.conv.blur.kernel"] = _fir(4.0)
        sd[f"{prefix}.noise.weight"] = r(1, scale=0.3)
        sd[f"{prefix}.activate.bias"] = r(cout, scale=0.2)

    def to_rgb(prefix, cin, up):
        sd[f"{prefix}.bias"] = r(1, 3, 1, 1, scale=0.2)
        if up:
            sd[f"{prefix}.upsample.kernel"] = _fir(4.0)
        sd[f"{prefix}.conv.weight"] = r(1, 3, cin, 1, 1)
        sd[f"{prefix}.conv.modulation.weight"] = r(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = r(cin, scale=0.2, offset=1.0)

    styled("conv1", channels[4], channels[4], False)
    to_rgb("to_rgb1", channels[4], False)
    res = [2**i for i in range(3, int(math.log2(size)) + 1)]
    for j, rr in enumerate(res):
        styled(f"convs.{2 * j}", channels[rr // 2], channels[rr], True)
        styled(f"convs.{2 * j + 1}", channels[rr], channels[rr], False)
        to_rgb(f"to_rgbs.{j}", channels[rr], True)
    sd["noises.noise_0"] = r(1, 1, 4, 4)
    for j, rr in enumerate(res):
        sd[f"noises.noise_{2 * j + 1}"] = r(1, 1, rr, rr)
        sd[f"noises.noise_{2 * j + 2}"] = r(1, 1, rr, rr)
    return sd


def discriminator_state(
    size: int, channels: dict[int, int], *, seed: int = 1
) -> dict[str, torch.Tensor]:
    """A ``Discriminator(size)`` state dict: ConvLayer/ResBlock sequences, blur kernels."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(shape, generator=g)

    sd = {"convs.0.0.weight": r(channels[size], 3, 1, 1), "convs.0.1.bias": r(channels[size])}
    cin = channels[size]
    for i, res in enumerate(range(int(math.log2(size)), 2, -1), start=1):
        cout = channels[2 ** (res - 1)]
        p = f"convs.{i}"
        sd[f"{p}.conv1.0.weight"] = r(cin, cin, 3, 3)
        sd[f"{p}.conv1.1.bias"] = r(cin)
        sd[f"{p}.conv2.0.kernel"] = _fir(1.0)
        sd[f"{p}.conv2.1.weight"] = r(cout, cin, 3, 3)
        sd[f"{p}.conv2.2.bias"] = r(cout)
        sd[f"{p}.skip.0.kernel"] = _fir(1.0)
        sd[f"{p}.skip.1.weight"] = r(cout, cin, 1, 1)
        cin = cout
    sd["final_conv.0.weight"] = r(channels[4], cin + 1, 3, 3)
    sd["final_conv.1.bias"] = r(channels[4])
    sd["final_linear.0.weight"] = r(channels[4], channels[4] * 16)
    sd["final_linear.0.bias"] = r(channels[4])
    sd["final_linear.1.weight"] = r(1, channels[4])
    sd["final_linear.1.bias"] = r(1)
    return sd


def _adam_state(sd: dict[str, torch.Tensor], lr: float, ratio: float) -> dict:
    """A real Adam state dict over the parameters of ``sd`` (not its buffers), after a step."""
    buffers = ("kernel", "noise_0")
    params = [
        torch.nn.Parameter(v.clone())
        for k, v in sd.items()
        if not k.endswith(buffers) and not k.startswith("noises.")
    ]
    opt = torch.optim.Adam(params, lr=lr * ratio, betas=(0**ratio, 0.99**ratio))
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()
    return opt.state_dict()


@dataclasses.dataclass
class Checkpoint:
    path: Path
    g_ema: dict[str, torch.Tensor]
    d: dict[str, torch.Tensor]
    latent_avg: torch.Tensor | None
    size: int
    style_dim: int
    n_mlp: int


def write_checkpoint(
    path: str | Path,
    *,
    size: int = 32,
    channels: dict[int, int] | None = None,  # None: model.py's table (channel_multiplier 2)
    style_dim: int = 512,
    n_mlp: int = 8,
    latent_avg: bool = False,
    seed: int = 0,
    g_ema: dict[str, torch.Tensor] | None = None,  # the generator's weights; None: random
    d_state: dict[str, torch.Tensor] | None = None,  # some of d's weights; None: random
) -> Checkpoint:
    """Write ``checkpoint/NNNNNN.pt`` as rosinality's train.py does. ``g_ema`` must hold
    every tensor of the generator ``generator_state`` would make; ``d_state`` replaces the
    discriminator tensors it names."""
    channels = channels or real_channels(size)
    made = generator_state(size, channels, style_dim=style_dim, n_mlp=n_mlp, seed=seed)
    if g_ema is not None:
        wrong = {k for k in made if k not in g_ema or g_ema[k].shape != made[k].shape}
        if wrong or set(g_ema) - set(made):
            raise KeyError(f"g_ema does not match rosinality's generator: {sorted(wrong)[:4]}")
    g_ema = made if g_ema is None else g_ema
    g = {k: v + 0.05 * torch.randn_like(v) for k, v in g_ema.items()}  # G drifts from g_ema
    d = discriminator_state(size, channels, seed=seed + 1)
    if d_state is not None:
        if set(d_state) - set(d):
            raise KeyError(
                f"not tensors of rosinality's discriminator: {sorted(set(d_state) - set(d))[:4]}"
            )
        d.update(d_state)
    args = argparse.Namespace(
        path="lmdb/faces",
        arch="stylegan2",
        iter=800000,
        batch=16,
        n_sample=64,
        size=size,
        r1=10.0,
        path_regularize=2.0,
        path_batch_shrink=2,
        d_reg_every=16,
        g_reg_every=4,
        mixing=0.9,
        ckpt=None,
        lr=0.002,
        channel_multiplier=2,
        wandb=False,
        local_rank=0,
        augment=False,
        augment_p=0.0,
        ada_target=0.6,
        ada_length=500000,
        ada_every=256,
        latent=style_dim,
        n_mlp=n_mlp,
        start_iter=0,
        distributed=False,
    )
    ckpt = {
        "g": g,
        "d": d,
        "g_ema": g_ema,
        "g_optim": _adam_state(g, 0.002, 4 / 5),
        "d_optim": _adam_state(d, 0.002, 16 / 17),
        "args": args,
        "ada_aug_p": 0.0,
    }
    avg = None
    if latent_avg:
        avg = torch.randn(style_dim, generator=torch.Generator().manual_seed(seed + 2))
        ckpt["latent_avg"] = avg
    path = Path(path)
    torch.save(ckpt, path)
    return Checkpoint(path, g_ema, d, avg, size, style_dim, n_mlp)
