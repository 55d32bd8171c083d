"""The resample recipe: the base generator distilled into NVlabs/rosinality resampling."""

import torch
import torch.nn.functional as F

from stylegate.gan import checkpoint as ckpt
from stylegate.gan.train.resample import Resample, ResampleConfig
from stylegate.gan.train.ship import ship
from tests.support.gan_train import fit, state, tiny_base


def _gap(teacher, student, z: torch.Tensor) -> float:
    with torch.no_grad():
        return F.mse_loss(student(z), teacher(z)).item()


def test_the_student_draws_the_teachers_images_with_fir_resampling(tmp_path):
    base = tiny_base(tmp_path / "base.pt")
    cfg = ResampleConfig(base=base, kimg=1.6, batch=8, lr=2e-3, ema_kimg=0.05)
    fit(tmp_path / "r", Resample, cfg)
    s = state(tmp_path / "r")
    assert s["it"] == 200 and s["G_config"]["resample"] == "fir"
    teacher = ckpt.load_generator(base)
    for name, t in s["G"].items():  # one latent space: the mapping is the teacher's
        if name.startswith("mapping."):
            torch.testing.assert_close(t, teacher.state_dict()[name])

    out = tmp_path / "fir.pt"
    ship(tmp_path / "r", out)
    student = ckpt.load_generator(out)
    assert student.config["resample"] == "fir"
    untrained = ckpt.generator_from({"config": s["G_config"], "state_dict": teacher.state_dict()})
    z = torch.randn(16, teacher.z_dim, generator=torch.Generator().manual_seed(9))
    assert _gap(teacher, student, z) < 0.75 * _gap(teacher, untrained, z)
