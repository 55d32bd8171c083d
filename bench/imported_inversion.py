"""Which feature network inverts an imported generator best, and what inversion costs.

    .venv/bin/python -m bench.imported_inversion [--images 8] [--steps 100] [--json FILE]

1. Quality: the shipped base generator exported the way an imported one is
   (``export_generator``: mapping, synthesis, features, inversion_step, no encoder), once
   per feature choice, then ``optimize`` inversions (W from w_avg, the gateway's defaults,
   no early stop) of held-out renders through the gateway's own inversion loop on the
   embedded backend, in process. Choices: ``discriminator`` (the checkpoint's D written
   out in NVlabs' resnet-D keys and read back by the importer's feature builder),
   ``none`` (SSIM structure features), ``pixel only`` (feature weight 0), and the shipped
   attribute classifier's features as a reference point (a network trained on this very
   domain, which a user's model does not come with).
   Our D downsamples with a 2x2 box where NVlabs' D uses the [1,3,3,1] FIR; written in
   NVlabs' keys it is read with the FIR, so its features are a close but perturbed version
   of the trained D's (a user's own NVlabs/rosinality D is read exactly).
2. Cost: a random 256 px imported generator (FIR resampling, narrow channels) with random
   NVlabs-layout D features: export time, step latency at batch 1 and 8, one 100-step
   ``optimize`` inversion, and the peak RSS of the measuring process (a fresh one).

Prints one table per section; --json writes every figure.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch

from stylegate.export import api
from stylegate.export import features as FN
from stylegate.gan import checkpoint as ckpt
from stylegate.gan import data
from stylegate.gan import networks as N
from tests.support import transplant

ROOT = Path(__file__).resolve().parent.parent


def random_nvlabs_d(resolution: int, channels: dict[int, int], seed: int = 0) -> dict:
    """Random resnet-D weights in NVlabs' keys (fromRGB and the blocks, no epilogue)."""
    g = torch.Generator().manual_seed(seed)
    r = resolution
    sd = {
        f"b{r}.fromrgb.weight": torch.randn(channels[r], 3, 1, 1, generator=g),
        f"b{r}.fromrgb.bias": torch.zeros(channels[r]),
    }
    while r > 4:
        a, b = channels[r], channels[r // 2]
        sd[f"b{r}.conv0.weight"] = torch.randn(a, a, 3, 3, generator=g)
        sd[f"b{r}.conv0.bias"] = torch.zeros(a)
        sd[f"b{r}.conv1.weight"] = torch.randn(b, a, 3, 3, generator=g)
        sd[f"b{r}.conv1.bias"] = torch.zeros(b)
        sd[f"b{r}.skip.weight"] = torch.randn(b, a, 1, 1, generator=g)
        r //= 2
    return sd


async def _invert_all(repo: Path, targets: np.ndarray, *, steps: int, weights: dict | None):
    from stylegate.service import inversion
    from stylegate.service.backends.embedded import EmbeddedBackend
    from stylegate.service.metadata import load_repository

    info = load_repository(repo)
    gen = info.generator()
    backend = EmbeddedBackend(info)
    await backend.load()
    try:
        t0 = time.perf_counter()
        opts = inversion.options("optimize", steps=steps, early_stop_tol=0.0, loss_weights=weights)
        results = await asyncio.gather(*(inversion.invert(backend, gen, t, opts) for t in targets))
        return results, time.perf_counter() - t0
    finally:
        await backend.close()


def bench_quality(n: int, steps: int, workdir: Path) -> dict:
    src = ckpt.load(ROOT / "checkpoints" / "base.pt")
    G = ckpt.generator_from(src["G_ema"])
    D = ckpt.discriminator_from(src["D"])
    C = ckpt.load_classifier(ROOT / "checkpoints" / "classifier.pt")
    images, _, _ = data.render_batch(data.heldout_seeds(n), size=G.resolution)
    targets = data.to_tensor_range(images)
    dsd = transplant.nvlabs_discriminator_trunk(D)
    choices = [
        ("discriminator", FN.discriminator_features(dsd, num_blocks=2), None),
        ("discriminator_1_block", FN.discriminator_features(dsd, num_blocks=1), None),
        ("none", FN.StructureFeatures(), None),
        ("pixel_only", FN.StructureFeatures(), {"feature": 0.0}),
        ("classifier (reference)", C, None),
    ]
    out = {}
    for label, net, weights in choices:
        repo = workdir / label.split()[0]
        if not (repo / "stylegate.json").exists():
            t0 = time.perf_counter()
            api.export_generator(repo, G, features=net, directions=None)
            export_s = time.perf_counter() - t0
        else:
            export_s = 0.0
        results, wall = asyncio.run(_invert_all(repo, targets, steps=steps, weights=weights))
        out[label] = {
            "psnr_db": round(float(np.mean([r.quality.psnr for r in results])), 2),
            "ssim": round(float(np.mean([r.quality.ssim for r in results])), 4),
            "inversions_per_s": round(len(results) / wall, 3),
            "export_s": round(export_s, 1),
            "feature_network": FN.describe(net),
        }
        print(
            f"  {label:<24} PSNR {out[label]['psnr_db']:6.2f} dB  SSIM {out[label]['ssim']:.4f}"
            f"  ({out[label]['feature_network']})",
            flush=True,
        )
    return out


def _cost_child(repo: str, steps: int, queue) -> None:
    import onnxruntime as ort

    from stylegate.export import onnx_export
    from stylegate.service.metadata import load_repository
    from stylegate.service.signatures import INVERSION_STEP

    torch.set_num_threads(2)
    gen = load_repository(repo).generator()
    sess = ort.InferenceSession(
        str(Path(repo) / gen.models["inversion_step"] / "1" / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )
    figures = {}
    for batch in (1, 8):
        x = onnx_export.example_inputs(INVERSION_STEP, gen.dims, batch)
        feeds = {s.name: t.numpy() for s, t in zip(INVERSION_STEP.inputs, x)}
        sess.run(None, feeds)
        t0 = time.perf_counter()
        reps = 3
        for _ in range(reps):
            sess.run(None, feeds)
        dt = (time.perf_counter() - t0) / reps
        figures[f"step_batch{batch}_ms"] = round(dt * 1000, 1)
        figures[f"sample_steps_per_s_batch{batch}"] = round(batch / dt, 2)
    del sess
    target = np.clip(np.random.default_rng(0).normal(0, 0.5, (1, 3, 256, 256)), -1, 1)
    _, wall = asyncio.run(
        _invert_all(Path(repo), target.astype(np.float32), steps=steps, weights=None)
    )
    figures[f"optimize_{steps}_steps_s"] = round(wall, 1)
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    queue.put(figures)


def bench_cost(workdir: Path, steps: int) -> dict:
    torch.manual_seed(0)
    ch = {4: 256, 8: 256, 16: 256, 32: 256, 64: 128, 128: 64, 256: 32}
    G = N.Generator(z_dim=256, w_dim=256, resolution=256, channels=ch, resample="fir").eval()
    for m in G.modules():
        if isinstance(m, N.SynthesisLayer):
            m.noise_strength.data.fill_(0.1)
    dsd = random_nvlabs_d(256, ch)
    repo = workdir / "random256"
    t0 = time.perf_counter()
    api.export_generator(repo, G, discriminator=dsd, directions=None)
    figures = {"export_s": round(time.perf_counter() - t0, 1)}
    params = sum(p.numel() for p in G.synthesis.parameters())
    figures["synthesis_params_m"] = round(params / 1e6, 2)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_cost_child, args=(str(repo), steps, queue))
    proc.start()
    figures.update(queue.get())
    proc.join()
    for k, v in figures.items():
        print(f"  {k:<28} {v}", flush=True)
    return figures


@click.command()
@click.option("--images", "n", type=int, default=8, show_default=True, help="held-out renders")
@click.option("--steps", type=int, default=100, show_default=True, help="optimize steps")
@click.option("--sections", default="quality,cost", show_default=True)
@click.option("--workdir", type=click.Path(path_type=Path), default=None, help="keep exports here")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
def main(n: int, steps: int, sections: str, workdir: Path | None, json_out: Path | None) -> None:
    """Feature-network comparison and inversion cost on imported generators."""
    torch.set_num_threads(2)
    wanted = set(sections.split(","))
    report: dict = {"images": n, "steps": steps}
    with tempfile.TemporaryDirectory() as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "quality" in wanted:
            print(f"optimize, {steps} steps, {n} held-out renders, shipped base generator:")
            report["quality"] = bench_quality(n, steps, work)
        if "cost" in wanted:
            print("random 256px imported generator (D features), CPU:")
            report["cost_256px"] = bench_cost(work, steps)
    if json_out:
        json_out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
