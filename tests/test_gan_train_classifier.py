"""The classifier recipe trains and resumes."""

from stylegate.gan.train import Classifier, ClassifierConfig
from tests.support.gan_train import fit, state


def test_classifier_training_reduces_loss_and_resumes(tmp_path):
    run = tmp_path / "cls"
    fit(run, Classifier, ClassifierConfig(iters=3, batch=8))
    assert state(run)["it"] == 3
    fit(run, Classifier, ClassifierConfig(iters=5, batch=8))
    assert state(run)["it"] == 5


def test_classifier_fine_tunes_a_checkpoint(tmp_path):
    import torch

    from stylegate.gan import checkpoint as ckpt
    from stylegate.gan import networks as N
    from stylegate.gan.train import Classifier, ClassifierConfig
    from tests.support.gan_train import fit, state

    torch.manual_seed(3)
    C = N.AttributeClassifier(num_binary=7, width=4)
    ckpt.atomic_save({"classifier": ckpt.pack_module(C)}, tmp_path / "c.pt")
    cfg = ClassifierConfig(iters=1, batch=2, lr=1e-12, width=16, init=tmp_path / "c.pt")
    fit(tmp_path / "run", Classifier, cfg)
    s = state(tmp_path / "run")
    assert s["C_config"]["width"] == 4  # the checkpoint's network, not a new one
    start = ckpt.load(tmp_path / "c.pt")["classifier"]["state_dict"]
    for name, t in s["C"].items():
        assert torch.allclose(t, start[name].float(), atol=1e-3), name
