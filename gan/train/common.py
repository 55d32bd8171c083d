"""What several recipes share: the training data, the R1 penalty, PSNR, encoder re-centring,
widening a trained generator."""

from __future__ import annotations

import math

import numpy as np
import torch

from stylegate.gan import data
from stylegate.gan import networks as N

# The discriminator mirrors the generator's widths: a first run with 32 channels at 64px
# let D win from the first thousands of images and G collapsed to one face.
D_CHANNELS = {4: 128, 8: 128, 16: 64, 32: 32, 64: 16}


def batch_seeds(seed: int, it: int, n: int) -> np.ndarray:
    """The renderer seeds of iteration ``it``'s batch (never a held-out one)."""
    return np.random.default_rng([seed, it]).integers(0, data.HELDOUT_SEED_BASE, size=n)


def render(seeds: np.ndarray, *, style: str = "photo", size: int = 64, device=None):
    """Renders as tensors: (images [N, 3, H, W] in [-1, 1], labels [N, A], yaw [N])."""
    images, labels, yaw = data.render_batch(seeds, style=style, size=size)
    return (
        torch.from_numpy(data.to_tensor_range(images)).to(device),
        torch.from_numpy(labels).to(device),
        torch.from_numpy(yaw).to(device),
    )


def real_batch(seed: int, it: int, n: int, *, style: str = "photo", size: int = 64, device=None):
    """Iteration ``it``'s batch of real renders: (images, labels, yaw) as in ``render``."""
    return render(batch_seeds(seed, it, n), style=style, size=size, device=device)


def r1_penalty(D: torch.nn.Module, real: torch.Tensor) -> torch.Tensor:
    """Squared gradient norm of D at the real images (R1), averaged over the batch."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()


def psnr_db(mse: float) -> float:
    """PSNR of a pixel MSE on images in [-1, 1] (peak-to-peak 2)."""
    return 10 * math.log10(4.0 / max(mse, 1e-10))


def recenter_encoder(E: torch.nn.Module, w_avg: torch.Tensor) -> None:
    """Give the encoder a new ``w_avg`` centre without changing what it outputs (the offset
    head's bias absorbs the difference)."""
    with torch.no_grad():
        shift = (E.w_avg - w_avg).repeat(E.num_ws) / E.out.bias_gain
        E.out.bias.add_(shift)
        E.w_avg.copy_(w_avg)


@torch.no_grad()
def widen_generator(G: N.Generator, channels: dict[int, int]) -> N.Generator:
    """A copy of ``G`` with more channels at some resolutions that draws the same images.

    Every trained tensor is copied into the corner of the wider one; the new channels keep
    their fresh random weights, and every convolution's weights *from* a new channel are
    zero, so nothing reaches the image until training moves them (the gradient of those
    zero weights is not zero: the new channels are already active). Demodulation is
    unchanged, as zero weights add nothing to a filter's norm; a conv's weight gain falls
    with its fan-in, so the copied weights are scaled up to match."""
    for res, ch in channels.items():
        if res not in G.config["channels"] or ch < G.config["channels"][res]:
            have = G.config["channels"].get(res)
            raise ValueError(f"widen {res}:{ch}: {res}px has {have} channels; it can only grow")
    config = {**G.config, "channels": {**G.config["channels"], **channels}}
    wide = N.Generator(**config)
    old = G.state_dict()
    for name, t in wide.state_dict().items():
        o = old[name]
        if t.ndim == 4 and o.shape[1] < t.shape[1]:  # a conv's inputs grew: new inputs unheard
            t[:, o.shape[1] :] = 0
            o = o * math.sqrt(t.shape[1] / o.shape[1])
        t[tuple(slice(0, n) for n in o.shape)] = o
    return wide
