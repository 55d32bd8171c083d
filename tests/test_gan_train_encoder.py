"""The IDInvert encoder recipe."""

import torch

from stylegate.gan import checkpoint as ckpt
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


def test_init_encoder_starts_from_another_checkpoints_encoder(tmp_path):
    """``--init-encoder`` fine-tunes that checkpoint's encoder, not the one the base ships."""
    base = tiny_base(tmp_path / "base.pt", encoder=True)
    other = tmp_path / "other.pt"
    src = ckpt.load(base)
    E = ckpt.encoder_from(src["encoder"])
    with torch.no_grad():
        for p in E.parameters():
            p.add_(torch.randn_like(p))
    ckpt.atomic_save({**src, "encoder": ckpt.pack_module(E)}, other)
    cls = tiny_classifier(tmp_path / "cls.pt")
    kw = {"base": base, "classifier": cls, "batch": 4, "synthetic": 4, "iters": 1}
    picked = Encoder(EncoderConfig(init_encoder=other, **kw), device=torch.device("cpu")).E
    default = Encoder(EncoderConfig(**kw), device=torch.device("cpu")).E
    want = ckpt.encoder_from(ckpt.load(other)["encoder"])
    trunk = [n for n, _ in want.named_parameters() if not n.startswith("out.")]
    assert trunk, "the encoder has a trunk outside its output layer"
    got, ref, alt = (dict(m.named_parameters()) for m in (picked, want, default))
    for name in trunk:  # recentring moves only the output layer's bias
        torch.testing.assert_close(got[name], ref[name])
    assert any(not torch.equal(got[n], alt[n]) for n in trunk)
