"""``python -m stylegate.gan.train``: options read from the configs, one-line user errors."""

import dataclasses

import pytest
import torch
from click.testing import CliRunner

from stylegate.gan import checkpoint as ckpt
from stylegate.gan.train import RECIPES, Trainer
from stylegate.gan.train.cli import cli
from tests.support.gan_train import tiny_base


def _defaults(cls):
    return {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_option_default_is_the_config_default(name):
    command = cli.commands[name]
    got = {p.name: p.default for p in command.params}
    want = _defaults(RECIPES[name].Config) | _defaults(Trainer)
    assert {k: got[k] for k in want} == want
    fields = {f.name for f in dataclasses.fields(RECIPES[name].Config)}
    assert fields | {f.name for f in dataclasses.fields(Trainer)} == set(got)


def test_train_then_ship_from_the_command_line(tmp_path):
    run, out = tmp_path / "cls", tmp_path / "classifier.pt"
    args = ["classifier", "--run", run, "--iters", "2", "--batch", "2", "--threads", "1"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "'iterations': 2" in result.output
    result = CliRunner().invoke(cli, ["ship", "--run", str(run), "--out", str(out)])
    assert result.exit_code == 0 and f"wrote {out}" in result.output
    assert ckpt.load(out)["classifier"]["config"]["width"] == 16


def _one_line_error(args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_user_mistakes_are_one_line_errors(tmp_path):
    base = tiny_base(tmp_path / "base.pt")
    line = _one_line_error(["transfer", "--run", tmp_path / "t", "--base", base])
    assert "--classifier" in line
    assert "no state.pt" in _one_line_error(["ship", "--run", tmp_path, "--out", tmp_path / "o"])
    if not torch.cuda.is_available():
        line = _one_line_error(["classifier", "--run", tmp_path / "c", "--device", "cuda"])
        assert "CUDA is not available" in line
