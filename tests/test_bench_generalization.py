"""``bench.generalization``'s command in a reduced mode (2 faces a set, 5 steps) on the
shipped models: the report's structure and that its figures are finite and plausible.
Goals are printed, never asserted (the shipped models may be short of them)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from bench.generalization import GOALS, METHODS, SETS, main


def test_reduced_generalization_bench(shipped_repository: Path, tmp_path: Path) -> None:
    out, pic = tmp_path / "gen.json", tmp_path / "gen.png"
    # in this process (torch is imported already); the gateway is a real subprocess
    result = CliRunner().invoke(
        main,
        ["--n", "2", "--steps", "5", "--concurrency", "2"]
        + ["--model-repository", str(shipped_repository)]
        + ["--json", str(out), "--picture", str(pic)],
    )
    assert result.exit_code == 0, result.output[-4000:]
    report = json.loads(out.read_text())
    assert report["n"] == 2 and report["steps"] == 5
    assert list(report["sets"]) == list(SETS)
    for name, entry in report["sets"].items():
        assert list(entry["methods"]) == list(METHODS)
        assert 0 <= entry["classifier_accuracy"] <= 1
        assert 0 <= entry["in_domain_attributes_kept"] <= 1
        assert set(entry["in_domain_attributes_kept_by_attribute"]) == set(
            entry["classifier_accuracy_by_attribute"]
        )
        for method, m in entry["methods"].items():
            where = f"{name}/{method}"
            assert len(m["psnr_db"]) == 2, where
            for p in (*m["psnr_db"], m["psnr_mean_db"], m["psnr_p10_db"]):
                assert math.isfinite(p) and 10 < p < 60, where
            assert m["psnr_p10_db"] <= m["psnr_mean_db"] + 0.01, where
            assert 0 < m["ssim_mean"] <= 1 and m["seconds"] > 0, where
            assert m["mean_steps"] == 0 if method == "encoder" else 1 <= m["mean_steps"] <= 5
            assert m["goal_psnr_db"] == GOALS.get((name, method)), where
            assert (m["met"] is None) == (m["goal_psnr_db"] is None), where
    # the printed table names every set and method, with the goals beside them
    for word in (*SETS, *METHODS, ">= 24 dB", ">= 26 dB", "classifier accuracy"):
        assert word in result.output, word
    # per set: input / encoder / in_domain rows of 2 faces at 2x, a label column
    w, h = Image.open(pic).size
    assert w == 130 + 2 * 128 and h == 6 * 128 + 6
