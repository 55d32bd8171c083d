"""Every benchmark of issue 14 side by side in one run, with the machine it ran on.

    .venv/bin/python -m bench.suite [--quick] [--sections inversion,step,latency,flops,
        generation,loadtest] [--triton/--no-triton] [--json FILE] [--write-docs FILE]

Each figure is printed beside a baseline measured in the same run, the ratio, the target
and whether it is met. Benchmarks never fail on timings: nothing here asserts a target.

Sections (held-out rendered faces, the shipped 64px models, torch and onnxruntime on the same
number of threads):

- inversion: N concurrent in-domain inversions through a gateway subprocess (embedded, and
  Triton with --triton) against two eager PyTorch loops over the same images, model and
  objective (``export.graphs.inversion_objective``, the function the step graph is traced
  from, with the gateway's in-domain weights, peak learning rate and warm-up + cosine
  schedule): sequential (one image at a time, the reference scripts' way) and batched (all
  N images in one eager batch). Inversions/s, ratios and final PSNR on every side.
- step: the ``inversion_step`` ONNX graph alone (an onnxruntime session configured like the
  embedded backend's) against the eager step (``export.graphs.InversionStep``: objective
  plus autograd gradient) at the same batch.
- latency: one inversion at a time on an idle gateway (p50 over the images) against one
  eager run of the same image (the sequential loop's per-image times).
- flops: FLOPs of one step counted by ``torch.utils.flop_counter.FlopCounterMode`` on the
  eager step at batch 1 (forward plus the backward to the latent; matmuls and convolutions,
  2 FLOPs per multiply-add), the step graph's achieved FLOP/s at its best batch, and the
  machine's fp32 (and bf16) GEMM peak measured with ``torch.mm``.
- generation: images/s through the gateway (raw tensors and PNG) against a bare
  onnxruntime session (``bench.targets.bench_generation``) and eager PyTorch.
- loadtest: ``service.loadtest`` sweeps of ``generate`` and ``mix`` against a fresh gateway,
  with that gateway's peak RSS.

``--quick`` is the reduced mode the test suite runs (tests/test_bench_suite.py): the same
code with small sizes (2 images, 5 steps, ...). Its figures say nothing about speed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
import onnxruntime as ort
import torch

from bench import targets as T
from stylegate.gan import checkpoint as ckpt
from stylegate.gan import data
from stylegate.service.client import StylegateClient, image_array
from stylegate.service.inversion import DEFAULTS, learning_rate_at
from stylegate.service.metadata import load_repository
from stylegate.service.signatures import LOSS_TERMS, z_from_seed

ROOT = T.ROOT
SECTIONS = ("inversion", "step", "latency", "flops", "generation", "loadtest")
BEGIN, END = "<!-- bench.suite:begin -->", "<!-- bench.suite:end -->"
THREADS = 2  # torch and onnxruntime threads: the gateway's intra_op_threads default
# The bench is one host standing for many clients: its per-client admission limits are raised
# to the server-wide ones (as bench/interactive.py does); everything else is the default.
GATEWAY_ENV = {
    "STYLEGATE_LOG_LEVEL": "WARNING",  # stderr is a pipe nobody reads until the end
    "STYLEGATE_LOG_JSON": "false",
    "STYLEGATE_MAX_INVERSIONS_PER_CLIENT": "64",
    "STYLEGATE_MAX_INTERACTIVE_RPCS_PER_CLIENT": "32",
    "STYLEGATE_MAX_LARGE_RPCS_PER_CLIENT": "8",
    "STYLEGATE_MAX_BATCH_STREAMS_PER_CLIENT": "8",
    "STYLEGATE_MAX_LIGHT_RPCS_PER_CLIENT": "64",
}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Everything --quick changes; the code path is the same in both modes."""

    steps: int  # Adam steps of the eager loops (the reference's 100)
    # the gateway's steps: None = what a request with no options gets (L-BFGS, 45
    # evaluations, early stopping): the product against the reference, each at its defaults
    gateway_steps: int | None
    concurrency: tuple[int, ...]  # concurrent inversions; the images are max(concurrency)
    step_batches: tuple[int, ...]
    latency_images: int
    generation_batches: tuple[int, ...]
    generation_repeats: int
    min_seconds: float  # per timed step-graph / eager-step measurement
    gemm_n: int
    gemm_repeats: int
    loadtest_levels: tuple[int, ...]
    loadtest_seconds: float
    loadtest_images: int

    @property
    def images(self) -> int:
        return max(max(self.concurrency), self.latency_images)


FULL = Sizes(
    steps=100,
    gateway_steps=None,
    concurrency=(1, 8, 32, 64),
    step_batches=(1, 8, 32),
    latency_images=16,
    generation_batches=(1, 32),
    generation_repeats=10,
    min_seconds=3.0,
    gemm_n=2048,
    gemm_repeats=10,
    loadtest_levels=(1, 4, 16),
    loadtest_seconds=10.0,
    loadtest_images=8,
)
QUICK = Sizes(
    steps=5,
    gateway_steps=5,
    concurrency=(1, 2),
    step_batches=(1, 2),
    latency_images=2,
    generation_batches=(1, 2),
    generation_repeats=2,
    min_seconds=0.2,
    gemm_n=256,
    gemm_repeats=3,
    loadtest_levels=(1, 2),
    loadtest_seconds=2.0,
    loadtest_images=2,
)


def headline(levels: tuple[int, ...], wanted: int) -> int:
    """The level a target names (32 callers, batch 32, ...), or the largest one measured when
    the run has no such level (--quick): the targets are then read at that level."""
    return wanted if wanted in levels else max(levels)


# --------------------------------------------------------------------------- rows and targets


def row(
    section: str,
    label: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    baseline_label: str = "",
    ratio_kind: str = "value/baseline",  # or "baseline/value" (times: a speed-up)
    target: tuple[str, float] | None = None,  # (">=" | "<=", threshold) on ``target_of``
    target_of: str = "ratio",  # "ratio" | "value"
    note: str = "",
) -> dict:
    """One printed line and JSON entry. The ratio is computed here, from the two figures of
    the same run, so nobody can pair a value with another run's baseline."""
    ratio = None
    if baseline is not None:
        num, den = (value, baseline) if ratio_kind == "value/baseline" else (baseline, value)
        ratio = num / den if den else math.inf
    met = None
    if target is not None:
        op, threshold = target
        measured = ratio if target_of == "ratio" else value
        met = bool(measured >= threshold if op == ">=" else measured <= threshold)
    return {
        "section": section,
        "label": label,
        "value": float(value),
        "unit": unit,
        "baseline": None if baseline is None else float(baseline),
        "baseline_label": baseline_label,
        "ratio": ratio,
        "ratio_kind": ratio_kind,
        "target": None if target is None else {"op": target[0], "threshold": target[1]},
        "target_of": target_of,
        "met": met,
        "note": note,
    }


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    if unit == "x":
        return f"{x:.2f}x"
    mag = abs(x)
    text = f"{x:.3g}" if mag < 10 else f"{x:.1f}" if mag < 1000 else f"{x:,.0f}"
    return f"{text} {unit}".strip()


def _target_text(r: dict) -> str:
    t = r["target"]
    if t is None:
        return ""
    unit = "x" if r["target_of"] == "ratio" else r["unit"]
    return f"{t['op']} {_fmt(t['threshold'], unit)}"


def _met_text(r: dict) -> str:
    return "" if r["met"] is None else "met" if r["met"] else "short"


def table(rows: list[dict]) -> list[str]:
    """Plain-text table: label, value, baseline, ratio, target, met/short."""
    cells = [
        (
            r["label"],
            _fmt(r["value"], r["unit"]),
            f"{_fmt(r['baseline'], r['unit'])} {r['baseline_label']}".strip()
            if r["baseline"] is not None
            else "",
            _fmt(r["ratio"], "x"),
            _target_text(r),
            _met_text(r),
        )
        for r in rows
    ]
    head = ("", "value", "baseline", "ratio", "target", "")
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(6)]
    return ["  ".join(c[i].ljust(widths[i]) for i in range(6)).rstrip() for c in [head, *cells]]


def markdown_table(rows: list[dict]) -> list[str]:
    lines = ["| | value | baseline | ratio | target | |", "|---|---|---|---|---|---|"]
    for r in rows:
        baseline = (
            f"{_fmt(r['baseline'], r['unit'])} ({r['baseline_label']})"
            if r["baseline"] is not None
            else ""
        )
        met = _met_text(r)
        lines.append(
            f"| {r['label']} | {_fmt(r['value'], r['unit'])} | {baseline} | "
            f"{_fmt(r['ratio'], 'x')} | {_target_text(r)} | {f'**{met}**' if met else ''} |"
        )
    return lines


# --------------------------------------------------------------------------- machine


def machine() -> dict:
    """What the figures depend on: CPU, cores this process may use, memory, versions."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "cpu": cpu or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": mem_gb,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "threads": THREADS,
    }


# --------------------------------------------------------------------------- shared state


class Bench:
    """Models, images and the eager runs that several sections share (each measured once)."""

    def __init__(self, repository: Path, sizes: Sizes):
        self.repository = repository
        self.sizes = sizes
        src = ckpt.load(ROOT / "checkpoints" / "base.pt")
        self.G = ckpt.generator_from(src["G_ema"]).eval().requires_grad_(False)
        self.E = ckpt.encoder_from(src["encoder"]).eval().requires_grad_(False)
        self.C = ckpt.load_classifier(ROOT / "checkpoints" / "classifier.pt")
        self.C = self.C.eval().requires_grad_(False)
        self.images, _, _ = data.render_batch(data.heldout_seeds(sizes.images))
        self.x = torch.from_numpy(data.to_tensor_range(self.images))
        d = DEFAULTS["in_domain"]
        self.lr = d.learning_rate
        self.weights = torch.tensor([[d.weights[t] for t in LOSS_TERMS]], dtype=torch.float32)
        self._sequential: dict[int, tuple[float, float]] = {}  # image -> (seconds, psnr)
        self.step_timings: dict[int, float] = {}  # batch -> seconds per ONNX step call
        self.gateway_inversions: dict[int, dict] = {}  # concurrency -> bench_inversion result

    # -- the eager loops ---------------------------------------------------------------

    def eager_loop(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """In-domain inversion of the batch ``x`` in eager PyTorch: encoder start, then
        ``steps`` Adam steps on the exported objective with the gateway's learning-rate
        schedule, no early stop; returns the final reconstruction. A batch of one is the
        reference scripts' way; a batch of all is the batched loop (Adam is elementwise and
        the loss a sum of per-image losses, so both compute the same inversions)."""
        from stylegate.export.graphs import inversion_objective, synthesize

        steps, b = steps or self.sizes.steps, x.shape[0]
        weights = self.weights.expand(b, -1)
        mask = torch.ones(b, 1, x.shape[-2], x.shape[-1])
        with torch.no_grad():
            w0 = self.E(x)
            features = self.C.features(x)
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=self.lr)
        warmup = 0.05  # InversionOptions.warmup
        for t in range(steps):
            loss, _, _ = inversion_objective(
                self.G.synthesis, self.E, self.C, w, x, features, weights, mask
            )
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            for group in opt.param_groups:
                group["lr"] = learning_rate_at(t, steps, peak=self.lr, warmup=warmup)
            opt.step()
        with torch.no_grad():
            return synthesize(self.G.synthesis, w, torch.ones(b, 1))

    def _psnrs(self, recs: torch.Tensor, first: int) -> list[float]:
        out = ((recs.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
        return [T.psnr(r, self.images[first + i]) for i, r in enumerate(out.numpy())]

    def sequential(self, n: int) -> tuple[list[float], list[float]]:
        """Per-image seconds and final PSNR of the sequential loop over the first n images
        (each image run once per suite run, whichever section asks first)."""
        if not self._sequential:  # torch's first calls allocate and pick kernels: untimed
            self.eager_loop(self.x[:1], steps=2)
        for i in range(n):
            if i not in self._sequential:
                t0 = time.perf_counter()
                rec = self.eager_loop(self.x[i : i + 1])
                self._sequential[i] = (time.perf_counter() - t0, self._psnrs(rec, i)[0])
        return [self._sequential[i][0] for i in range(n)], [
            self._sequential[i][1] for i in range(n)
        ]

    def batched(self, n: int) -> tuple[float, list[float]]:
        t0 = time.perf_counter()
        rec = self.eager_loop(self.x[:n])
        return time.perf_counter() - t0, self._psnrs(rec, 0)


# --------------------------------------------------------------------------- sections


def gateway_inversions(b: Bench, address: str) -> dict[int, dict]:
    """``bench.targets.bench_inversion`` at each concurrency level, on the first N images."""
    out = {}
    for c in b.sizes.concurrency:
        out[c] = T.bench_inversion(
            address, b.images[:c], steps=b.sizes.gateway_steps, concurrency=c
        )
        click.echo(f"  gateway, {c} concurrent: {json.dumps(out[c])}", err=True)
    return out


def warm_up(address: str, image: np.ndarray) -> None:
    """One short inversion and a few Generates, untimed: a fresh gateway's first calls load
    sessions and grow onnxruntime's arenas, which no user-facing figure should include."""
    with StylegateClient(address, timeout=600) as c:
        c.invert(T.png(image), method="in_domain", steps=2, progress_every=2)
        c.generate([0], fmt="raw")
        c.generate(list(range(4)), fmt="png")


def section_inversion(b: Bench, address: str, triton: dict | None) -> dict:
    s = b.sizes
    head = headline(s.concurrency, 32)
    b.gateway_inversions = gateway_inversions(b, address)
    seq_seconds, seq_psnr = b.sequential(max(s.concurrency))
    rows, raw = [], {"gateway": b.gateway_inversions, "sequential": {}, "batched": {}}
    for c in s.concurrency:
        g = b.gateway_inversions[c]
        seq_rate = c / sum(seq_seconds[:c])
        seq_db = float(np.mean(seq_psnr[:c]))
        wall, psnrs = b.batched(c)
        bat_rate, bat_db = c / wall, float(np.mean(psnrs))
        raw["sequential"][c] = {"inversions_per_s": seq_rate, "psnr_db": seq_db}
        raw["batched"][c] = {"seconds": wall, "inversions_per_s": bat_rate, "psnr_db": bat_db}
        at_head = c == head
        rows.append(
            row(
                "inversion",
                f"{c} concurrent, gateway vs sequential eager",
                g["inversions_per_s"],
                "inv/s",
                baseline=seq_rate,
                baseline_label="sequential",
                target=(">=", 6.0) if at_head else None,
            )
        )
        rows.append(
            row(
                "inversion",
                f"{c} concurrent, gateway vs batched eager",
                g["inversions_per_s"],
                "inv/s",
                baseline=bat_rate,
                baseline_label=f"batch of {c}",
                target=(">=", 2.0) if at_head else None,
            )
        )
        for name, db in (("sequential", seq_db), ("batched", bat_db)):
            rows.append(
                row(
                    "inversion",
                    f"{c} concurrent, final PSNR - {name} eager's",
                    g["psnr_db"] - db,
                    "dB",
                    target=(">=", 0.0) if at_head else None,
                    target_of="value",
                    note=f"gateway {g['psnr_db']:.2f} dB, {name} {db:.2f} dB, "
                    f"mean {g['mean_steps']} steps",
                )
            )
    if triton is not None:
        raw["triton"] = triton
        if "skipped" not in triton:
            for c in s.concurrency:
                t, e = triton["inversions"][c], b.gateway_inversions[c]
                rows.append(
                    row(
                        "inversion",
                        f"{c} concurrent, Triton path vs embedded",
                        t["inversions_per_s"],
                        "inv/s",
                        baseline=e["inversions_per_s"],
                        baseline_label="embedded",
                        target=(">=", 0.9) if c == head else None,
                        note=f"Triton PSNR {t['psnr_db']:.2f} dB",
                    )
                )
    return {"rows": rows, "raw": raw}


def triton_inversions(b: Bench) -> dict:
    """The same concurrent inversions through a gateway on the Triton backend (a local
    tritonserver, the CPU flavour of ``ops.triton_local``)."""
    from stylegate.ops.triton_local import TritonServer

    server = TritonServer(
        b.repository, grpc_port=0, http_port=0, metrics_port=0, intra_op_threads=THREADS
    ).start(timeout=600)
    try:
        env = {**GATEWAY_ENV, "STYLEGATE_BACKEND": "triton"}
        env["STYLEGATE_TRITON_URL"] = server.grpc_url
        with T.gateway(b.repository, extra_env=env) as (address, pid):
            warm_up(address, b.images[0])
            return {
                "inversions": gateway_inversions(b, address),
                "gateway_peak_rss_mb": T.peak_rss_mb(pid),
            }
    finally:
        server.cleanup()


def step_session(path: Path, *, profile_prefix: str | None = None) -> ort.InferenceSession:
    """An onnxruntime session set up like the embedded backend's (service/backends/embedded.py,
    not imported: its options are private); with ``profile_prefix``, profiling to that file."""
    options = ort.SessionOptions()
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def timed(fn: Callable[[], object], min_seconds: float, min_repeats: int = 3) -> float:
    """Seconds per call: one warm-up, then calls until both minimums are reached."""
    fn()
    n, t0 = 0, time.perf_counter()
    while n < min_repeats or time.perf_counter() - t0 < min_seconds:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def step_inputs(b: Bench, batch: int) -> dict[str, np.ndarray]:
    """The step's inputs for ``batch`` copies of the held-out images (encoder start)."""
    idx = [i % len(b.x) for i in range(batch)]
    x = b.x[idx]
    with torch.no_grad():
        ws, features = b.E(x), b.C.features(x)
    return {
        "ws": ws.numpy(),
        "target": x.numpy(),
        "target_features": features.numpy(),
        "loss_weights": b.weights.expand(batch, -1).contiguous().numpy(),
        "mask": np.ones((batch, 1, x.shape[-2], x.shape[-1]), np.float32),
    }


def eager_step(b: Bench):
    from stylegate.export.graphs import InversionStep

    return InversionStep(b.G.synthesis, b.E, b.C).eval()


def measure_step(b: Bench, batches: tuple[int, ...]) -> dict[int, dict]:
    """Seconds per call of the ONNX step and the eager step at each batch, and how far their
    gradients are apart (a check that both compute the same step)."""
    repo = load_repository(b.repository)
    session = step_session(repo.model_path(repo.generator().model("inversion_step")))
    names = [i.name for i in session.get_inputs()]
    step = eager_step(b)
    out = {}
    for batch in batches:
        feed = step_inputs(b, batch)
        tensors = [torch.from_numpy(feed[n]) for n in names]
        onnx_s = timed(lambda f=feed: session.run(None, f), b.sizes.min_seconds)
        eager_s = timed(lambda t=tensors: step(*t), b.sizes.min_seconds)
        g_onnx = session.run(["grad"], feed)[0]
        g_eager = step(*tensors)[2].numpy()
        rel = float(np.abs(g_onnx - g_eager).max() / max(np.abs(g_eager).max(), 1e-12))
        b.step_timings[batch] = onnx_s
        out[batch] = {"onnx_s": onnx_s, "eager_s": eager_s, "grad_max_rel_diff": rel}
        click.echo(f"  step, batch {batch}: {json.dumps(out[batch])}", err=True)
    return out


def section_step(b: Bench) -> dict:
    measured = measure_step(b, b.sizes.step_batches)
    rows = []
    for batch, m in measured.items():
        rows.append(
            row(
                "step",
                f"step graph, batch {batch}",
                batch / m["onnx_s"],
                "samples/s",
                baseline=batch / m["eager_s"],
                baseline_label="eager",
                target=(">=", 1.5 if batch == 1 else 1.0),
                note=f"{1e3 * m['onnx_s']:.1f} vs {1e3 * m['eager_s']:.1f} ms per call",
            )
        )
    return {"rows": rows, "raw": measured}


def section_latency(b: Bench, address: str) -> dict:
    """One inversion at a time on the idle gateway, against one eager run of the same image."""
    n, steps = b.sizes.latency_images, b.sizes.steps
    seconds, psnrs = [], []
    with StylegateClient(address, timeout=600) as c:
        for img in b.images[:n]:
            t0 = time.perf_counter()
            r = c.invert(
                T.png(img),
                method="in_domain",
                steps=b.sizes.gateway_steps,
                progress_every=b.sizes.gateway_steps or 1000,
            )
            seconds.append(time.perf_counter() - t0)
            psnrs.append(T.psnr(image_array(r.reconstruction), img))
    eager_seconds, eager_psnrs = b.sequential(n)
    p50, eager_p50 = statistics.median(seconds), statistics.median(eager_seconds)
    rows = [
        row(
            "latency",
            f"one inversion on an idle gateway, p50 of {n}",
            p50,
            "s",
            baseline=eager_p50,
            baseline_label=f"eager {steps}-step run",
            ratio_kind="baseline/value",
            target=(">=", 4.0),
        ),
        row(
            "latency",
            "its final PSNR - the eager run's",
            float(np.mean(psnrs) - np.mean(eager_psnrs)),
            "dB",
            target=(">=", 0.0),
            target_of="value",
            note=f"gateway {np.mean(psnrs):.2f} dB, eager {np.mean(eager_psnrs):.2f} dB",
        ),
    ]
    raw = {"gateway_seconds": seconds, "gateway_psnr_db": psnrs, "eager_seconds": eager_seconds}
    return {"rows": rows, "raw": raw}


def count_step_flops(b: Bench) -> dict:
    """FLOPs of one step at batch 1, counted by FlopCounterMode on the eager step: the
    forward objective, then the backward to the latent (the parameters are frozen, so no
    weight gradients are computed or counted, as in the graph)."""
    from torch.utils.flop_counter import FlopCounterMode

    feed = step_inputs(b, 1)
    tensors = [torch.from_numpy(feed[n]) for n in ("ws", "target", "target_features")]
    tensors += [torch.from_numpy(feed[n]) for n in ("loss_weights", "mask")]
    step = eager_step(b)
    from stylegate.export.graphs import inversion_objective

    with FlopCounterMode(display=False) as forward, torch.no_grad():
        inversion_objective(b.G.synthesis, b.E, b.C, *tensors)
    with FlopCounterMode(display=False) as full:
        step(*tensors)
    by_op = {str(k): int(v) for k, v in full.get_flop_counts().get("Global", {}).items()}
    return {
        "step": int(full.get_total_flops()),
        "forward": int(forward.get_total_flops()),
        "by_op": by_op,
    }


def gemm_peak(n: int, repeats: int, dtype: torch.dtype) -> float | None:
    """Best GFLOP/s of an n x n x n torch.mm (2 n^3 FLOPs) on THREADS threads; None when the
    dtype's matmul does not run here."""
    try:
        a = torch.randn(n, n).to(dtype)
        bm = torch.randn(n, n).to(dtype)
        torch.mm(a, bm)
    except (RuntimeError, TypeError):
        return None
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, bm)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


CONV_OPS = ("Conv", "FusedConv", "ConvTranspose")


def _shapes(args: dict, key: str) -> list[list[int]]:
    return [next(iter(d.values())) for d in args.get(key, [])]


def conv_flops(op: str, args: dict) -> int:
    """Multiply-add FLOPs (2 each) of one convolution node of an onnxruntime profile, from
    the shapes it recorded: weights [Cout, Cin/g, kh, kw] (ConvTranspose: [Cin, Cout/g, ...])."""
    inputs, outputs = _shapes(args, "input_type_shape"), _shapes(args, "output_type_shape")
    if len(inputs) < 2 or not outputs:
        return 0
    w = inputs[1]
    if op == "ConvTranspose":  # every input element meets Cout/g * kh * kw weights
        return 2 * math.prod(inputs[0]) * w[1] * w[2] * w[3]
    return 2 * math.prod(outputs[0]) * w[1] * w[2] * w[3]


def profile_step(b: Bench, batch: int, runs: int) -> dict:
    """Where the step graph's time goes at ``batch``: onnxruntime's profiler over ``runs``
    runs; kernel time by op type and the convolutions' own FLOP/s (their FLOPs from the
    shapes each node recorded)."""
    import tempfile

    repo = load_repository(b.repository)
    path = repo.model_path(repo.generator().model("inversion_step"))
    feed = step_inputs(b, batch)
    with tempfile.TemporaryDirectory() as tmp:
        session = step_session(path, profile_prefix=str(Path(tmp) / "step"))
        for _ in range(runs + 1):  # the first run's kernels include one-off set-up
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    seconds: dict[str, float] = {}
    conv_work = 0
    runs_seen = 0
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            runs_seen += 1
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if runs_seen <= 1:  # still in the first run
            continue
        op = e["args"]["op_name"]
        seconds[op] = seconds.get(op, 0.0) + e["dur"] / 1e6
        if op in CONV_OPS:
            conv_work += conv_flops(op, e["args"])
    total = sum(seconds.values())
    conv_s = sum(seconds.get(op, 0.0) for op in CONV_OPS)
    return {
        "batch": batch,
        "runs": runs,
        "kernel_seconds_per_run": total / runs,
        "share_by_op": {op: t / total for op, t in sorted(seconds.items(), key=lambda kv: -kv[1])},
        "conv_share": conv_s / total,
        "conv_gflops": conv_work / conv_s / 1e9 if conv_s else 0.0,
    }


def section_flops(b: Bench) -> dict:
    flops = count_step_flops(b)
    if not b.step_timings:  # the step section did not run: time the graph at its batches
        measure_step(b, b.sizes.step_batches)
    achieved = {batch: flops["step"] * batch / s / 1e9 for batch, s in b.step_timings.items()}
    best = max(achieved, key=achieved.get)
    fp32 = gemm_peak(b.sizes.gemm_n, b.sizes.gemm_repeats, torch.float32)
    bf16 = gemm_peak(b.sizes.gemm_n, b.sizes.gemm_repeats, torch.bfloat16)
    how = (
        "FlopCounterMode on the eager step at batch 1: forward objective + backward to the "
        "latent; matmul/conv FLOPs, 2 per multiply-add; elementwise ops not counted"
    )
    rows = [
        row("flops", "FLOPs of one step (batch 1)", flops["step"] / 1e9, "GFLOP", note=how),
        row("flops", "of which the forward objective", flops["forward"] / 1e9, "GFLOP"),
        row(
            "flops",
            f"torch.mm fp32 GEMM peak ({b.sizes.gemm_n}^2, {THREADS} threads)",
            fp32,
            "GFLOP/s",
        ),
    ]
    if bf16 is not None:
        rows.append(
            row(
                "flops",
                "torch.mm bf16 GEMM",
                bf16,
                "GFLOP/s",
                baseline=fp32,
                baseline_label="fp32",
            )
        )
    for batch, gflops in achieved.items():
        rows.append(
            row(
                "flops",
                f"step graph achieved, batch {batch}",
                gflops,
                "GFLOP/s",
                baseline=fp32,
                baseline_label="fp32 GEMM peak",
                target=(">=", 0.5) if batch == best else None,
            )
        )
    profile = profile_step(b, best, runs=3)
    top = [f"{op} {100 * share:.0f}%" for op, share in list(profile["share_by_op"].items())[:6]]
    rows.append(
        row(
            "flops",
            f"step graph's convolution kernels, batch {best}",
            profile["conv_gflops"],
            "GFLOP/s",
            baseline=fp32,
            baseline_label="fp32 GEMM peak",
            note=(
                f"onnxruntime profile: convolutions {100 * profile['conv_share']:.0f}% of the "
                f"kernel time; by op: {', '.join(top)}"
            ),
        )
    )
    raw = {
        "profile": profile,
        "step_flops": flops["step"],
        "forward_flops": flops["forward"],
        "flops_by_op": flops["by_op"],
        "counted": how,
        "achieved_gflops": achieved,
        "gemm_fp32_gflops": fp32,
        "gemm_bf16_gflops": bf16,
    }
    return {"rows": rows, "raw": raw}


def eager_generation_s(b: Bench, batch: int, repeats: int) -> float:
    """Seconds per batch of eager PyTorch generation: mapping, then synthesis (constant
    noise), the same seeds and untruncated w as the bare onnxruntime baseline."""
    from stylegate.export.graphs import synthesize

    z = torch.from_numpy(np.stack([z_from_seed(s, b.G.z_dim) for s in range(batch)]))

    def run():
        with torch.no_grad():
            w = b.G.mapping(z)
            ws = w[:, None].repeat(1, b.G.num_ws, 1)
            return synthesize(b.G.synthesis, ws, torch.ones(batch, 1))

    run()
    t0 = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - t0) / repeats


def section_generation(b: Bench, address: str) -> dict:
    s = b.sizes
    head = headline(s.generation_batches, 32)
    rows, raw = [], {}
    for batch in s.generation_batches:
        g = T.bench_generation(address, b.repository, batch=batch, repeats=s.generation_repeats)
        g["eager_images_per_s"] = batch / eager_generation_s(b, batch, s.generation_repeats)
        raw[batch] = g
        click.echo(f"  generation, batch {batch}: {json.dumps(g)}", err=True)
        bare, eager = g["bare_onnxruntime_images_per_s"], g["eager_images_per_s"]
        at_head = batch == head
        for fmt, threshold in (("raw", 0.95), ("png", 0.9)):
            rows.append(
                row(
                    "generation",
                    f"batch {batch}, gateway {fmt} vs bare onnxruntime",
                    g[f"gateway_{fmt}_images_per_s"],
                    "img/s",
                    baseline=bare,
                    baseline_label="bare ORT",
                    target=(">=", threshold) if at_head else None,
                )
            )
        rows.append(
            row(
                "generation",
                f"batch {batch}, gateway raw vs eager PyTorch",
                g["gateway_raw_images_per_s"],
                "img/s",
                baseline=eager,
                baseline_label="eager",
            )
        )
    ours, pillow = png_encode_ms(b.images[:32], s.generation_repeats)
    raw["png_encode_ms"] = {"ours": ours, "pillow": pillow, "images": len(b.images[:32])}
    rows.append(
        row(
            "generation",
            f"PNG encoding of {len(b.images[:32])} faces (a batch's reply)",
            ours,
            "ms",
            baseline=pillow,
            baseline_label="Pillow, level 1",
            ratio_kind="baseline/value",
        )
    )
    return {"rows": rows, "raw": raw}


def png_encode_ms(faces: np.ndarray, repeats: int) -> tuple[float, float]:
    """Best milliseconds to PNG-encode ``faces`` ([N, H, W, 3] uint8) one by one: the
    gateway's writer (service.images.png_bytes) and Pillow's at the same deflate level."""
    import io

    from PIL import Image

    from stylegate.service.images import png_bytes

    def pillow(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    def best(encode: Callable[[np.ndarray], bytes]) -> float:
        times = []
        for _ in range(max(repeats, 3)):
            t0 = time.perf_counter()
            for a in faces:
                encode(a)
            times.append(time.perf_counter() - t0)
        return 1e3 * min(times)

    return best(png_bytes), best(pillow)


def reset_peak_rss(pid: int) -> bool:
    """Reset the process's VmHWM (Linux: write 5 to clear_refs) so the next peak is the next
    load's; False where the kernel does not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def section_loadtest(b: Bench) -> dict:
    """``generate`` then ``mix`` sweeps (service.loadtest's API) against a fresh gateway."""
    from stylegate.service import loadtest as lt

    s = b.sizes
    head = headline(s.loadtest_levels, 16)
    metrics_port = T._free_port()
    workload = lt.Workload(images=s.loadtest_images, mix=lt.parse_mix(lt.DEFAULT_MIX))
    raw: dict = {}
    rows = []
    with T.gateway(b.repository, extra_env=GATEWAY_ENV, metrics_port=metrics_port) as (
        address,
        pid,
    ):
        for scenario in ("generate", "mix"):
            reset = reset_peak_rss(pid)
            levels = [
                lt.Level(scenario, n, s.loadtest_seconds, None, None) for n in s.loadtest_levels
            ]
            report = asyncio.run(
                lt.load_test(address, levels, workload, metrics=f"127.0.0.1:{metrics_port}")
            )
            for line in lt.report_lines(report):
                click.echo(f"  {line}", err=True)
            raw[scenario] = {
                "runs": report["runs"],
                "peak_rss_mb": T.peak_rss_mb(pid),
                "peak_reset_before": reset,
            }
    for scenario in ("generate", "mix"):
        for run in raw[scenario]["runs"]:
            n = run["concurrency"]
            errors = sum(run["errors"].values())
            rows.append(
                row(
                    "loadtest",
                    f"{scenario}, {n} clients: p99 / p50",
                    (run["p99"] or math.nan) / (run["p50"] or math.nan),
                    "x",
                    target=("<=", 3.0) if scenario == "generate" and n == head else None,
                    target_of="value",
                    note=f"{run['throughput']:.1f} req/s, {run['images_per_s']:.1f} img/s, "
                    f"p50 {1e3 * (run['p50'] or math.nan):.0f} ms, "
                    f"p99 {1e3 * (run['p99'] or math.nan):.0f} ms, {errors} errors",
                )
            )
    rows.append(
        row(
            "loadtest",
            "gateway peak RSS under the mix",
            raw["mix"]["peak_rss_mb"],
            "MB",
            target=("<=", 1024.0),
            target_of="value",
            note="" if raw["mix"]["peak_reset_before"] else "peak since start (not reset)",
        )
    )
    return {"rows": rows, "raw": raw}


# --------------------------------------------------------------------------- run, print, docs


def run_suite(repository: Path, sizes: Sizes, sections: list[str], triton: bool) -> dict:
    """Run the wanted sections (in an order that shares one gateway and the eager runs);
    each section's result gets its own wall time under "seconds"."""
    torch.set_num_threads(THREADS)
    b = Bench(repository, sizes)
    results: dict[str, dict] = {}

    def timed_section(name: str, fn: Callable[[], dict]) -> None:
        click.echo(f"[{name}]", err=True)
        t0 = time.perf_counter()
        results[name] = fn()
        results[name]["seconds"] = time.perf_counter() - t0

    gateway_sections = [s for s in ("inversion", "latency", "generation") if s in sections]
    triton_result = None
    if "inversion" in sections:
        if triton:
            click.echo("[inversion, Triton path]", err=True)
            try:
                triton_result = triton_inversions(b)
            except Exception as exc:  # noqa: BLE001 - a missing tritonserver is reported
                triton_result = {"skipped": f"Triton path failed: {exc}"[:500]}
        else:
            triton_result = {"skipped": "not asked for (--triton)"}
    if gateway_sections:
        with T.gateway(repository, extra_env=GATEWAY_ENV) as (address, pid):
            warm_up(address, b.images[0])
            for name in gateway_sections:
                if name == "inversion":
                    timed_section(name, lambda: section_inversion(b, address, triton_result))
                    results[name]["raw"]["gateway_peak_rss_mb"] = T.peak_rss_mb(pid)
                elif name == "latency":
                    timed_section(name, lambda: section_latency(b, address))
                else:
                    timed_section(name, lambda: section_generation(b, address))
    for name, fn in (
        ("step", section_step),
        ("flops", section_flops),
        ("loadtest", section_loadtest),
    ):
        if name in sections:
            timed_section(name, lambda fn=fn: fn(b))
    return {name: results[name] for name in SECTIONS if name in results}


def command_line(argv: list[str]) -> str:
    return " ".join([".venv/bin/python -m bench.suite", *argv])


def print_report(report: dict) -> None:
    click.echo(f"\n{report['command']}  ({report['date']})")
    m = report["machine"]
    click.echo(f"machine: {machine_line(m)}")
    for name, sec in report["sections"].items():
        click.echo(f"\n== {name} ({sec['seconds']:.0f} s)")
        for line in table(sec["rows"]):
            click.echo(line)
        for r in sec["rows"]:
            if r["note"]:
                click.echo(f"   {r['label']}: {r['note']}")
    click.echo("\n== targets")
    for line in table(report["targets"]):
        click.echo(line)


def machine_line(m: dict) -> str:
    return (
        f"{m['cpu']}, {m['usable_cores']} usable of {m['cores']} cores, {m['memory_gb']} GB, "
        f"load average {m['load_average_at_start']} at start, "
        f"{m.get('load_average_at_end', '-')} at end; Python {m['python']}, torch {m['torch']}, "
        f"onnxruntime {m['onnxruntime']}, numpy {m['numpy']}; {m['threads']} threads"
    )


def docs_block(report: dict) -> str:
    quick = report["quick"]
    lines = [
        BEGIN,
        "## Side by side in one run (`bench.suite`)",
        "",
        "Generated by the command below; do not edit between the markers by hand.",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}  ",
        f"Machine: {machine_line(report['machine'])}",
        "",
    ]
    if quick:
        lines += [
            "**Reduced mode (`--quick`): tiny sizes, these figures say nothing about speed.**",
            "",
        ]
    lines += ["### Targets", "", *markdown_table(report["targets"]), ""]
    for name, sec in report["sections"].items():
        lines += [f"### {name}", "", *markdown_table(sec["rows"]), ""]
        notes = [f"- {r['label']}: {r['note']}" for r in sec["rows"] if r["note"]]
        lines += [*notes, ""] if notes else []
    lines.append(END)
    return "\n".join(lines)


def update_docs(path: Path, block: str) -> None:
    """Replace the generated block between the markers; without markers, insert it after
    the title line (the hand-written text below is kept)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        title, _, body = text.partition("\n")
        text = f"{title}\n\n{block}\n\n{body.lstrip()}"
    path.write_text(text)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return _jsonable(x.item())
    return x


@click.command()
@click.option("--quick", is_flag=True, help="reduced mode: tiny sizes (the test suite's)")
@click.option("--sections", default=",".join(SECTIONS), show_default=True)
@click.option(
    "--triton/--no-triton",
    default=None,
    help="also invert through a gateway on a local Triton [on, off with --quick]",
)
@click.option(
    "--repository",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=ROOT / "model_repository",
    show_default=True,
)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
@click.option(
    "--write-docs",
    type=click.Path(path_type=Path),
    default=None,
    help="regenerate the block between the bench.suite markers of this file",
)
def main(
    quick: bool,
    sections: str,
    triton: bool | None,
    repository: Path,
    json_out: Path | None,
    write_docs: Path | None,
) -> None:
    """Every benchmark of the product targets, side by side, each beside its baseline."""
    wanted = [s.strip() for s in sections.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        raise click.BadParameter(f"unknown sections {unknown}", param_hint="--sections")
    sizes = QUICK if quick else FULL
    triton = (not quick) if triton is None else triton
    started = time.perf_counter()
    report: dict = {
        "command": command_line(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": quick,
        "sizes": dataclasses.asdict(sizes),
        "machine": machine(),
    }
    report["sections"] = run_suite(repository, sizes, wanted, triton)
    report["targets"] = [
        r for sec in report["sections"].values() for r in sec["rows"] if r["target"]
    ]
    report["seconds"] = time.perf_counter() - started
    # Eager torch on 2 OpenMP threads slows down many times over when another process holds
    # a core: a load average above the core count at either end marks the run as disturbed.
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print_report(report)
    click.echo(f"\n({report['seconds']:.0f} s)")
    if json_out is not None:
        json_out.write_text(json.dumps(_jsonable(report), indent=1) + "\n")
    if write_docs is not None:
        update_docs(write_docs, docs_block(report))


if __name__ == "__main__":
    main()
