"""The IDInvert encoder recipe."""

import torch

from stylegate.gan import networks as N
from stylegate.gan.train import Encoder, EncoderConfig
from tests.support.gan_train import fit, state, tiny_base, tiny_classifier


def test_encoder_training_resumes_and_fits_its_generator(tmp_path):
    """The IDInvert encoder objective runs end to end on a tiny generator and resumes."""
    base, cls = tiny_base(tmp_path / "base.pt"), tiny_classifier(tmp_path / "cls.pt")
    kw = {"base": base, "classifier": cls, "batch": 4, "synthetic": 4}
    fit(tmp_path / "enc", Encoder, EncoderConfig(iters=2, **kw))
    fit(tmp_path / "enc", Encoder, EncoderConfig(iters=4, **kw))
    s = state(tmp_path / "enc")
    assert s["it"] == 4
    E = N.Encoder(**s["E_config"])
    E.load_state_dict(s["E"])
    assert E(torch.randn(2, 3, 16, 16)).shape == (2, 6, 32)  # the tiny G's num_ws, w_dim
