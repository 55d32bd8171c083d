"""The `stylegate` entry point lists and loads every subcommand."""

import subprocess
import sys
from pathlib import Path

from stylegate.cli.main import COMMANDS

STYLEGATE = Path(sys.executable).parent / "stylegate"


def test_help_lists_every_command():
    out = subprocess.run(
        [str(STYLEGATE), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    for name in COMMANDS:
        assert name in out.stdout
    assert "unavailable here" not in out.stdout  # the dev environment has every extra


def test_each_command_has_help():
    for name in ("serve", "generate", "invert", "edit", "export", "triton"):
        out = subprocess.run(
            [str(STYLEGATE), name, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert "Usage:" in out.stdout


def test_edit_refuses_a_condition_list_with_unconditioned(tmp_path):
    out = subprocess.run(
        [str(STYLEGATE), "edit", "7", "--direction", "smile", "--condition-on", "beard"]
        + ["--unconditioned", "--out", str(tmp_path / "e"), "--server", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2 and "not both" in out.stderr
    assert "Traceback" not in out.stderr
