"""service/similarity.py: the quality figures."""

from __future__ import annotations

import numpy as np
import pytest

from stylegate.service import similarity


def test_psnr_and_ssim():
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (3, 16, 16)).astype(np.float32)
    assert similarity.psnr(x, x) == float("inf")
    assert similarity.ssim(x, x) == pytest.approx(1.0)
    noisy = np.clip(x + rng.normal(0, 0.2, x.shape), -1, 1).astype(np.float32)
    very = np.clip(x + rng.normal(0, 0.6, x.shape), -1, 1).astype(np.float32)
    assert similarity.psnr(x, noisy) > similarity.psnr(x, very) > 0
    assert 1 > similarity.ssim(x, noisy) > similarity.ssim(x, very)
    # 0.1 mean squared error on [0, 1] scale -> 10 dB
    assert similarity.psnr(
        np.zeros((3, 4, 4)), np.full((3, 4, 4), 2 * np.sqrt(0.1))
    ) == pytest.approx(10.0)
