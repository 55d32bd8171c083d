"""What several recipes share: the training data, the R1 penalty, PSNR, encoder re-centring."""

from __future__ import annotations

import math

import numpy as np
import torch

from stylegate.gan import data

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
