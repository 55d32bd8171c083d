"""``python -m bench.suite --quick`` end to end on the shipped models: the benchmark command
the lead runs in full must not rot between runs. Timings are never checked against targets
(benchmarks do not fail on speed); the report's structure and arithmetic are."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("inversion", "step", "latency", "flops", "generation", "loadtest")
# Rows whose value may be zero or negative by nature (a PSNR difference in dB).
SIGNED_UNITS = {"dB"}


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_quick_suite_end_to_end(shipped_repository: Path, tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text(
        "# Benchmarks\n\n<!-- bench.suite:begin -->\nold\n<!-- bench.suite:end -->\n\nkept\n"
    )
    out = tmp_path / "suite.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.suite", "--quick", "--repository", str(shipped_repository)]
        + ["--json", str(out), "--write-docs", str(docs)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,  # ~25 s alone; several times that beside CPU-heavy jobs on 2 cores
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())

    assert report["quick"] is True
    assert list(report["sections"]) == list(SECTIONS)
    m = report["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["torch"] and m["onnxruntime"] and m["python"]

    for name, section in report["sections"].items():
        assert section["rows"], name
        for r in section["rows"]:
            where = f"{name}: {r['label']}"
            assert _finite(r["value"]), where
            if r["unit"] not in SIGNED_UNITS:
                assert r["value"] > 0, where
            if r["baseline"] is not None:
                assert _finite(r["baseline"]) and r["baseline"] > 0, where
                # the ratio is the two figures of this very run, in the stated direction
                num, den = (
                    (r["value"], r["baseline"])
                    if r["ratio_kind"] == "value/baseline"
                    else (r["baseline"], r["value"])
                )
                assert math.isclose(r["ratio"], num / den, rel_tol=1e-9), where
            if r["target"] is not None:
                assert isinstance(r["met"], bool), where

    sections = report["sections"]
    # inversion: every level against both eager loops, PSNR finite on every side
    raw = sections["inversion"]["raw"]
    levels = report["sizes"]["concurrency"]
    for c in levels:
        for side in ("sequential", "batched"):
            assert _finite(raw[side][str(c)]["psnr_db"]) and raw[side][str(c)]["psnr_db"] > 10
        assert _finite(raw["gateway"][str(c)]["psnr_db"]) and raw["gateway"][str(c)]["psnr_db"] > 10
    assert "skipped" in raw["triton"]  # --quick leaves Triton out unless asked
    # the step graph computes the eager step's gradient
    for m in sections["step"]["raw"].values():
        assert m["grad_max_rel_diff"] < 1e-2
    flops = sections["flops"]["raw"]
    assert flops["step_flops"] > flops["forward_flops"] > 0
    assert flops["gemm_fp32_gflops"] > 0
    # the profile saw the convolutions and accounts for all the kernel time
    profile = flops["profile"]
    assert 0 < profile["conv_share"] < 1 and profile["conv_gflops"] > 0
    assert math.isclose(sum(profile["share_by_op"].values()), 1.0, rel_tol=1e-6)
    png = sections["generation"]["raw"]["png_encode_ms"]
    assert png["ours"] > 0 and png["pillow"] > 0 and png["images"] >= 1
    labels = [r["label"] for r in report["targets"]]
    assert any("sequential" in label for label in labels)
    assert any("peak RSS" in label for label in labels)
    for scenario in ("generate", "mix"):
        runs = sections["loadtest"]["raw"][scenario]["runs"]
        assert [r["concurrency"] for r in runs] == report["sizes"]["loadtest_levels"]
        assert all(r["ok"] > 0 for r in runs)

    text = docs.read_text()
    assert "old" not in text and text.endswith("\nkept\n")
    assert "Reduced mode" in text and "| step graph, batch 1 |" in text
    # the printed report has the targets table
    assert "== targets" in proc.stdout and ("met" in proc.stdout or "short" in proc.stdout)
