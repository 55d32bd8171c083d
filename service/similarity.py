"""Reconstruction quality figures in numpy: PSNR and SSIM on images in [-1, 1] (computed
on the [0, 1] scale)."""

from __future__ import annotations

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two images in [-1, 1] (peak 1 on [0, 1])."""
    mse = float(np.mean(((a - b) / 2.0) ** 2, dtype=np.float64))
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def _gaussian(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def _filter(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering over the last two axes."""
    n = len(k)
    h, w = x.shape[-2] - n + 1, x.shape[-1] - n + 1
    rows = sum(k[i] * x[..., i : i + h, :] for i in range(n))
    return sum(k[i] * rows[..., :, i : i + w] for i in range(n))


def ssim(a: np.ndarray, b: np.ndarray, *, window: int = 7, sigma: float = 1.5) -> float:
    """Mean structural similarity of two [C, H, W] images in [-1, 1], Gaussian window
    (7x7, sigma 1.5: small images are only 16-64 px), averaged over channels."""
    x = (a.astype(np.float64) + 1.0) / 2.0
    y = (b.astype(np.float64) + 1.0) / 2.0
    window = min(window, x.shape[-1], x.shape[-2])
    k = _gaussian(window, sigma)
    c1, c2 = 0.01**2, 0.03**2
    mx, my = _filter(x, k), _filter(y, k)
    sxx = _filter(x * x, k) - mx * mx
    syy = _filter(y * y, k) - my * my
    sxy = _filter(x * y, k) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))
