"""Layer swapping and the export CLI's cheap paths (no ONNX export here)."""

from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner

from stylegate.export import blend as B
from stylegate.export.cli import export
from stylegate.gan import checkpoint as ckpt


def _block_index(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[2]) if name.startswith("synthesis.blocks.") else None


def test_hard_swap_takes_transfer_up_to_the_swap_resolution(tiny_models):
    base, transfer = tiny_models["base"], tiny_models["transfer"]
    g = B.blend_generators(base, transfer, swap_resolution=8)
    bs, ts, gs = base.state_dict(), transfer.state_dict(), g.state_dict()
    for k, v in gs.items():
        i = _block_index(k)
        if i is None:  # mapping and w_avg: base
            torch.testing.assert_close(v, bs[k], rtol=0, atol=0)
        else:
            res = base.synthesis.blocks[i].resolution
            torch.testing.assert_close(v, ts[k] if res <= 8 else bs[k], rtol=0, atol=0)
    assert any(
        not torch.equal(bs[k], ts[k]) for k in bs if _block_index(k) == 2
    )  # the test can fail


def test_logistic_blend_interpolates_per_resolution(tiny_models):
    base, transfer = tiny_models["base"], tiny_models["transfer"]
    g = B.blend_generators(base, transfer, swap_resolution=8, blend_width=0.5)
    bs, ts, gs = base.state_dict(), transfer.state_dict(), g.state_dict()
    for k, v in gs.items():
        i = _block_index(k)
        if i is not None:
            t = 1 / (1 + math.exp((math.log2(base.synthesis.blocks[i].resolution) - 3 - 0.5) / 0.5))
            torch.testing.assert_close(v, bs[k] + t * (ts[k] - bs[k]), rtol=1e-5, atol=1e-6)
    assert B.transfer_fraction(4, 16, 0.5) > 0.9
    assert B.transfer_fraction(64, 16, 0.5) < 0.1
    assert B.transfer_fraction(16, 16, None) == 1.0 and B.transfer_fraction(32, 16, None) == 0.0


def test_blend_rejects_bad_arguments(tiny_models):
    with pytest.raises(ValueError, match="swap resolution"):
        B.blend_generators(tiny_models["base"], tiny_models["transfer"], swap_resolution=12)
    with pytest.raises(ValueError, match="blend_width"):
        B.blend_generators(
            tiny_models["base"], tiny_models["transfer"], swap_resolution=8, blend_width=0
        )


def test_blend_cli_writes_a_loadable_checkpoint(tmp_path):
    from stylegate.export.api import random_checkpoints

    paths = random_checkpoints(tmp_path, resolution=16)
    out = tmp_path / "blend.pt"
    r = CliRunner().invoke(
        export,
        [
            "blend",
            "--base",
            str(paths["base"]),
            "--transfer",
            str(paths["transfer"]),
            "--swap-resolution",
            "8",
            "--blend-width",
            "0.3",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    data = ckpt.load(out)
    assert data["blend"]["swap_resolution"] == 8 and data["blend"]["blend_width"] == 0.3
    g = ckpt.generator_from(data["G_ema"])
    want = B.blend_generators(
        ckpt.load_generator(paths["base"]),
        ckpt.load_generator(paths["transfer"]),
        swap_resolution=8,
        blend_width=0.3,
    )
    ws = torch.randn(2, g.num_ws, g.w_dim)
    torch.testing.assert_close(g.synthesis(ws), want.synthesis(ws))
    r = CliRunner().invoke(
        export,
        [
            "blend",
            "--base",
            str(paths["base"]),
            "--transfer",
            str(paths["transfer"]),
            "--swap-resolution",
            "5",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code != 0 and "swap resolution" in r.output


def test_tensorrt_without_a_gpu_says_so(tmp_path, monkeypatch):
    from stylegate.export import tensorrt

    monkeypatch.setattr(tensorrt, "_gpu_present", lambda: False)
    r = CliRunner().invoke(export, ["--tensorrt", "--out", str(tmp_path)])
    assert r.exit_code != 0
    assert "no NVIDIA GPU" in r.output
