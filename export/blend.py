"""Layer swapping (Pinkney & Adler, "Resolution Dependent GAN Interpolation"): a generator
whose synthesis takes the transfer model's weights at low resolutions and the base
model's above, with the base mapping (so the blend shares the base's W space)."""

from __future__ import annotations

import copy
import math
import os

import torch

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import networks as N

# The served blend: transfer (style) up to 16x16, base (detail) above.
DEFAULT_SWAP_RESOLUTION = 16


def transfer_fraction(resolution: int, swap_resolution: int, blend_width: float | None) -> float:
    """How much of the transfer model a block at ``resolution`` takes.

    ``blend_width`` None: a hard swap, 1 at resolutions <= swap_resolution, 0 above.
    Otherwise a logistic in log2(resolution), centred half an octave above the swap
    resolution, ``blend_width`` octaves wide: 1 / (1 + exp((log2 r - log2 R - 0.5) / K)).
    As K -> 0 it becomes the hard swap.
    """
    if blend_width is None:
        return 1.0 if resolution <= swap_resolution else 0.0
    if blend_width <= 0:
        raise ValueError("blend_width must be positive (or None for a hard swap)")
    x = (math.log2(resolution) - math.log2(swap_resolution) - 0.5) / blend_width
    return 1.0 / (1.0 + math.exp(x))


def blend_generators(
    base: N.Generator,
    transfer: N.Generator,
    *,
    swap_resolution: int,
    blend_width: float | None = None,
) -> N.Generator:
    """A new generator: per synthesis block, lerp(base, transfer, transfer_fraction(block
    resolution)) of every parameter and buffer (constant noise included); mapping and
    w_avg from the base."""
    if base.config != transfer.config:
        raise ValueError("base and transfer generators have different architectures")
    if swap_resolution not in base.synthesis.block_resolutions:
        raise ValueError(
            f"swap resolution {swap_resolution} is not one of {base.synthesis.block_resolutions}"
        )
    out = copy.deepcopy(base)
    tsd = transfer.synthesis.state_dict()
    with torch.no_grad():
        for i, block in enumerate(out.synthesis.blocks):
            t = transfer_fraction(block.resolution, swap_resolution, blend_width)
            for name, tensor in block.state_dict(keep_vars=True).items():
                tensor.lerp_(tsd[f"blocks.{i}.{name}"].to(tensor.dtype), t)
    return out.eval().requires_grad_(False)


def blend_checkpoints(
    base: str | os.PathLike,
    transfer: str | os.PathLike,
    out: str | os.PathLike,
    *,
    swap_resolution: int = DEFAULT_SWAP_RESOLUTION,
    blend_width: float | None = None,
) -> N.Generator:
    """Blend two checkpoints' ``G_ema`` and write ``{"G_ema", "style": "blend", "blend"}``
    (fp32) to ``out``. Returns the blended generator."""
    g = blend_generators(
        ckpt.load_generator(base),
        ckpt.load_generator(transfer),
        swap_resolution=swap_resolution,
        blend_width=blend_width,
    )
    ckpt.atomic_save(
        {
            "G_ema": ckpt.pack_module(g, fp16=False),
            "style": "blend",
            "blend": {
                "base": str(base),
                "transfer": str(transfer),
                "swap_resolution": swap_resolution,
                "blend_width": blend_width,
            },
        },
        out,
    )
    return g
