"""`scripts/train-on-device.sh`: issue 12's legs for a lent GPU, run here on the CPU at a
scale of seconds so the command a device session sends is known to work end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stylegate.gan import checkpoint as ckpt

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_device_script_trains_every_leg_and_ships_checkpoints(tmp_path):
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OUT": str(out),
        "PY": sys.executable,
        "DEVICE": "cpu",
        "WORKERS": "1",
        "SCALE": "0.005",  # each leg stops after its first iteration
        "QUALITY_N": "8",
    }
    shipped = (ROOT / "checkpoints" / "base.pt").read_bytes()
    done = subprocess.run(
        ["bash", "scripts/train-on-device.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,  # the assertion shows its stderr
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (ROOT / "checkpoints" / "base.pt").read_bytes() == shipped  # written to OUT only
    names = {p.name for p in out.iterdir()}
    assert {"base.pt", "transfer.pt", "quality.json", "progress-gan.png"} <= names
    assert len(names) <= 8  # what one device call brings back
    new, old = ckpt.load(out / "base.pt"), ckpt.load(ROOT / "checkpoints" / "base.pt")
    for key in ("G_ema", "encoder"):  # every leg moved its network
        a, b = new[key]["state_dict"], old[key]["state_dict"]
        assert any(not torch.equal(a[k], b[k]) for k in a), key
    transfer = ckpt.load(out / "transfer.pt")["G_ema"]["state_dict"]
    mapping = [k for k in transfer if k.startswith("mapping.")]
    assert all(torch.equal(transfer[k], new["G_ema"]["state_dict"][k]) for k in mapping)
    quality = json.loads((out / "quality.json").read_text())
    assert quality["encoder"]["psnr_db"] > 15
