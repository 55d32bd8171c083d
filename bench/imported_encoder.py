"""What ``stylegate train encoder`` costs and what it buys on an imported generator.

    .venv/bin/python -m bench.imported_encoder [--minutes 6] [--images 8] [--steps 100]
        [--sections speed,quality] [--workdir DIR] [--json FILE]

1. Speed: encoder-training iterations of the ``imported_encoder`` recipe (its defaults:
   8 generated samples per iteration, 4 of them reconstructed through G and the feature
   network) on a random 256 px rosinality checkpoint (the 256 px generator of
   bench/imported_inversion.py: FIR resampling, 256..32 channels) and on the shipped base
   generator written out as a rosinality checkpoint; each in a fresh process so its peak
   RSS is its own. Figures: seconds per iteration, generated images per second, peak RSS.
2. Quality: the shipped base written as a rosinality checkpoint (our residual D's trunk in
   rosinality's keys as its discriminator), imported and exported with ``export_imported``,
   then ``train_encoder`` (the CLI's function) for ``--minutes``; PSNR of held-out renders
   (``gan.data.heldout_seeds``) through the gateway's inversion core on the embedded backend:
   ``optimize`` before training, ``encoder`` and ``in_domain`` after, against the native
   shipped repository's ``encoder`` and ``in_domain`` (base + classifier features).
   Our generator upsamples nearest-neighbour where rosinality's uses the [1,3,3,1] FIR, so
   the imported base renders a slightly different (blurrier) model; the PSNR of its images
   against the native ones on the same z is printed as "import parity".

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

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import data
from tests.support import transplant

ROOT = Path(__file__).resolve().parent.parent
RANDOM_256 = {4: 256, 8: 256, 16: 256, 32: 256, 64: 128, 128: 64, 256: 32}


def write_shipped_as_rosinality(path: Path) -> Path:
    src = ckpt.load(ROOT / "checkpoints" / "base.pt")
    G = ckpt.generator_from(src["G_ema"])
    D = ckpt.discriminator_from(src["D"])
    g = transplant.rosinality_generator_state(G)
    d = transplant.rosinality_discriminator_trunk(D)
    torch.save({"g": g, "g_ema": g, "d": d, "latent_avg": G.mapping.w_avg}, path)
    return path


def write_random_256(path: Path) -> Path:
    from tests.support import rosinality_ckpt as RC

    RC.write_checkpoint(path, size=256, channels=RANDOM_256, style_dim=256, n_mlp=8)
    return path


# ---------------------------------------------------------------------------- speed


def _speed_child(checkpoint: str, iters: int, queue) -> None:
    from stylegate.gan.train.imported_encoder import ImportedEncoder, ImportedEncoderConfig
    from stylegate.gan.train.trainer import iteration_generator

    torch.set_num_threads(2)
    cfg = ImportedEncoderConfig(checkpoint=Path(checkpoint))
    recipe = ImportedEncoder(cfg, device=torch.device("cpu"))
    for it in range(2):  # warm-up
        recipe.step(it, iteration_generator(0, it))
    t0 = time.perf_counter()
    for it in range(2, 2 + iters):
        recipe.step(it, iteration_generator(0, it))
    s = (time.perf_counter() - t0) / iters
    queue.put(
        {
            "resolution": recipe.G.resolution,
            "s_per_iter": round(s, 3),
            "images_per_s": round(cfg.batch / s, 2),
            "reconstructed_per_s": round(cfg.recon / s, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    )


def bench_speed(checkpoints: dict[str, Path], iters: int) -> dict:
    out = {}
    ctx = mp.get_context("spawn")
    for label, path in checkpoints.items():
        queue = ctx.Queue()
        p = ctx.Process(target=_speed_child, args=(str(path), iters, queue))
        p.start()
        out[label] = queue.get()
        p.join()
        f = out[label]
        print(
            f"  {label:<28} {f['resolution']:4d} px  {f['s_per_iter']:7.2f} s/iter  "
            f"{f['images_per_s']:6.2f} images/s  peak RSS {f['peak_rss_mb']:7.0f} MB",
            flush=True,
        )
    return out


# ---------------------------------------------------------------------------- quality


async def _invert_all(repo: Path, targets: np.ndarray, method: str, steps: int) -> list:
    from stylegate.service import inversion
    from stylegate.service.backends.embedded import EmbeddedBackend
    from stylegate.service.metadata import load_repository

    info = load_repository(repo)
    backend = EmbeddedBackend(info)
    await backend.load()
    try:
        opts = inversion.options(method, steps=steps, early_stop_tol=0.0)
        gen = info.generator()
        return [await inversion.invert(backend, gen, t, opts) for t in targets]
    finally:
        await backend.close()


def _psnr(repo: Path, targets: np.ndarray, method: str, steps: int) -> float:
    results = asyncio.run(_invert_all(repo, targets, method, steps))
    return round(float(np.mean([r.quality.psnr for r in results])), 2)


def import_parity(path: Path) -> float:
    """PSNR (dB) of the imported base's renders against the native ones, same z."""
    from stylegate.export import importers

    native = ckpt.load_generator(ROOT / "checkpoints" / "base.pt")
    imported = importers.load_checkpoint(path).generator
    z = torch.randn(16, native.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = native(z), imported(z)
    return round(10 * float(torch.log10(4 / (a - b).square().mean())), 2)


def bench_quality(workdir: Path, n: int, steps: int, minutes: float) -> dict:
    from stylegate.export import api, importers
    from stylegate.gan.train.user_cli import train_encoder

    path = write_shipped_as_rosinality(workdir / "base-rosinality.pt")
    images, _, _ = data.render_batch(data.heldout_seeds(n), size=64)
    targets = data.to_tensor_range(images)
    out = {"import_parity_db": import_parity(path)}
    print(f"  import parity (imported vs native renders) {out['import_parity_db']:6.2f} dB")

    native = workdir / "native"
    if not (native / "stylegate.json").exists():
        api.export_checkpoints(native, transfer=None, blend=False, directions=None)
    for method in ("encoder", "in_domain"):
        out[f"native_{method}_db"] = _psnr(native, targets, method, steps)
        print(f"  native shipped base  {method:<10} {out[f'native_{method}_db']:6.2f} dB")

    repo = workdir / "imported"
    shutil_rmtree(repo)
    t0 = time.perf_counter()
    api.export_imported(repo, importers.load_checkpoint(path), source=path, directions=None)
    out["export_s"] = round(time.perf_counter() - t0, 1)
    out["imported_optimize_db"] = _psnr(repo, targets, "optimize", steps)
    print(f"  imported base        optimize   {out['imported_optimize_db']:6.2f} dB")

    t0 = time.perf_counter()
    result, entry = train_encoder(
        model="base",
        repository=repo,
        checkpoint=None,
        run=workdir / "run",
        minutes=minutes,
        iters=100_000,
        images=None,
        device="cpu",
        threads=2,
    )
    out["train_minutes"] = round(result["seconds"] / 60, 2)
    out["train_iterations"] = entry["encoder_training"]["iterations"]
    out["train_and_install_s"] = round(time.perf_counter() - t0, 1)
    print(
        f"  trained {out['train_iterations']} iterations in {out['train_minutes']} min "
        f"(+ install: {out['train_and_install_s'] - result['seconds']:.0f} s)"
    )
    for method in ("encoder", "in_domain"):
        out[f"imported_{method}_db"] = _psnr(repo, targets, method, steps)
        print(f"  imported base        {method:<10} {out[f'imported_{method}_db']:6.2f} dB")
    return out


def shutil_rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@click.command()
@click.option("--minutes", type=float, default=6.0, show_default=True, help="encoder training")
@click.option("--images", "n", type=int, default=8, show_default=True, help="held-out renders")
@click.option("--steps", type=int, default=100, show_default=True, help="optimize/in_domain steps")
@click.option("--speed-iters", type=int, default=3, show_default=True)
@click.option("--sections", default="speed,quality", show_default=True)
@click.option("--workdir", type=click.Path(path_type=Path), default=None)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
def main(minutes, n, steps, speed_iters, sections, workdir, json_out) -> None:
    torch.set_num_threads(2)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "speed" in sections:
            print("encoder training speed (imported_encoder defaults, CPU, 2 threads):")
            report["speed"] = bench_speed(
                {
                    "random 256px rosinality": write_random_256(work / "random256.pt"),
                    "shipped base as rosinality": write_shipped_as_rosinality(
                        work / "base-rosinality.pt"
                    ),
                },
                speed_iters,
            )
        if "quality" in sections:
            print(f"held-out PSNR, {n} renders, {steps} steps, {minutes} min of encoder training:")
            report["quality"] = bench_quality(work, n, steps, minutes)
    if json_out:
        json_out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
