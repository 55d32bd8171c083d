"""The classifier recipe trains and resumes."""

from stylegate.gan.train import Classifier, ClassifierConfig
from tests.support.gan_train import fit, state


def test_classifier_training_reduces_loss_and_resumes(tmp_path):
    run = tmp_path / "cls"
    fit(run, Classifier, ClassifierConfig(iters=3, batch=8))
    assert state(run)["it"] == 3
    fit(run, Classifier, ClassifierConfig(iters=5, batch=8))
    assert state(run)["it"] == 5
