"""The adversarial recipe resumes to the same weights as an uninterrupted run."""

import torch

from stylegate.gan.train import Gan, GanConfig
from tests.support.gan_train import fit, state


def test_gan_resume_matches_uninterrupted_run(tmp_path):
    cfg = {"batch": 4, "seed": 5, "resolution": 16}
    fit(tmp_path / "straight", Gan, GanConfig(kimg=0.016, **cfg))  # 4 iterations
    fit(tmp_path / "resumed", Gan, GanConfig(kimg=0.008, **cfg))  # 2 iterations, "interrupted"
    first = state(tmp_path / "resumed")
    assert first["it"] == 2
    fit(tmp_path / "resumed", Gan, GanConfig(kimg=0.016, **cfg))  # resumes at 2, runs to 4
    a, b = state(tmp_path / "straight"), state(tmp_path / "resumed")
    assert a["it"] == b["it"] == 4
    for key in ("G", "D", "G_ema"):
        for name, t in a[key].items():
            assert torch.allclose(t, b[key][name], atol=1e-6), (key, name)
    # and training moved the weights at all
    assert any(not torch.equal(first["G"][k], b["G"][k]) for k in first["G"])
    assert (tmp_path / "resumed" / "progress.png").exists()
