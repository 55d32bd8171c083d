"""The one loop: time limit and resume, schedules, EMA, and what it refuses."""

import math

import pytest
import torch

from stylegate.gan.train import Classifier, ClassifierConfig, ConfigError, Gan, GanConfig
from stylegate.gan.train import trainer as T
from tests.support.gan_train import fit, state


def test_a_run_stopped_by_its_time_limit_resumes_where_it_stopped(tmp_path, capsys):
    run, cfg = tmp_path / "cls", ClassifierConfig(iters=4, batch=4)
    stopped = fit(run, Classifier, cfg, minutes=0)  # the limit is up after one iteration
    assert stopped["iterations"] == 1 and state(run)["it"] == 1
    finished = fit(run, Classifier, cfg)
    assert "at iteration 1 " in capsys.readouterr().out
    assert finished["iterations"] == 4 and finished["kimg"] == 4 * 4 / 1000
    s = state(run)
    assert s["it"] == 4 and s["recipe"] == "classifier" and s["config"]["batch"] == 4
    again = fit(run, Classifier, cfg)  # a finished run returns at once
    assert again["iterations"] == 4


def test_a_run_directory_belongs_to_one_recipe(tmp_path):
    fit(tmp_path / "run", Classifier, ClassifierConfig(iters=1, batch=2))
    with pytest.raises(ConfigError, match="'classifier' run"):
        fit(tmp_path / "run", Gan, GanConfig(kimg=0.002, batch=2, resolution=16))


def test_cosine_schedule_decays_to_its_floor_and_resets_a_resumed_lr():
    assert T.cosine(0.0) == 1.0 and math.isclose(T.cosine(1.0, floor=0.05), 0.05)
    assert math.isclose(T.cosine(0.5, floor=0.05), 0.525)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=123.0)  # as resumed
    T.Schedule(opt, 2e-3).apply(0.7)
    assert opt.param_groups[0]["lr"] == 2e-3
    T.Schedule(opt, 2e-3, decay_to=0.0).apply(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)


def test_ema_averages_parameters_and_copies_the_named_ones():
    src = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    ema = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    before = [p.clone() for p in ema.parameters()]
    T.ema_update(ema, src, 0.75, copied=("1.",))
    got, want = list(ema.parameters()), list(src.parameters())
    assert torch.allclose(got[0], 0.75 * before[0] + 0.25 * want[0])
    assert torch.equal(got[2], want[2]) and torch.equal(got[3], want[3])


def test_the_trainer_refuses_a_config_of_another_recipe(tmp_path):
    with pytest.raises(TypeError):
        T.Trainer(run=tmp_path).fit(Gan, ClassifierConfig())


def test_rendering_ahead_in_workers_trains_the_same_weights(tmp_path):
    """``render_workers`` moves the renderer out of the loop, not the data: the same run
    with and without it ends with the same weights."""
    cfg = ClassifierConfig(iters=3, batch=4)
    fit(tmp_path / "loop", Classifier, cfg)
    fit(tmp_path / "ahead", Classifier, cfg, render_workers=2)
    a, b = state(tmp_path / "loop"), state(tmp_path / "ahead")
    assert a["it"] == b["it"] == 3
    for name, tensor in a["C"].items():
        assert torch.equal(tensor, b["C"][name]), name
