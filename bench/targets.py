"""The product targets, measured side by side in one run on held-out rendered faces.

    .venv/bin/python -m bench.targets [--images 32] [--repository model_repository]

1. Inversion speed and quality: 32 concurrent in-domain inversions through the gateway
   (a `stylegate serve` subprocess on the embedded backend, default request settings)
   against the reference way of working: a sequential eager-PyTorch loop, one image at a
   time, encoder start then 100 Adam steps (IDInvert's lr 0.01) on the same objective.
2. Quality: encoder-only PSNR and 100-step in-domain PSNR through the gateway.
3. Edits: for each InterFaceGAN direction, invert, push every face towards the other side
   at strength 3 and count, with the attribute classifier, how many flip and how often any
   other attribute moves.
4. Generation at batch 32 through the gateway vs a bare onnxruntime session.
5. The gateway's peak RSS under that load.

Prints every figure with its baseline and the ratio; writes them as JSON with --json.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import data
from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.service.client import StylegateClient, image_array, tensor_to_array
from stylegate.service.metadata import load_repository
from stylegate.service.signatures import z_from_seed

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gateway(repository: Path, *, extra_env: dict | None = None, metrics_port: int | None = None):
    """A `stylegate serve` subprocess (embedded backend unless ``extra_env`` says otherwise);
    yields (address, pid). ``metrics_port``: where its /metrics listens (a free port if None),
    for callers that scrape it (bench/suite.py's loadtest section)."""
    port = _free_port()
    metrics_port = metrics_port or _free_port()
    cmd = [
        str(Path(sys.executable).parent / "stylegate"),
        "serve",
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        "--model-repository",
        str(repository),
    ]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **(extra_env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                with StylegateClient(address, timeout=2) as c:
                    c.list_models()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """uint8 HWC images."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


# --------------------------------------------------------------------------- eager baseline


def eager_invert(G, E, C, target: torch.Tensor, *, steps: int, lr: float, weights=None):
    """The reference scripts' way: one image, encoder start, `steps` Adam steps, no early stop.
    ``weights`` (pixel, feature, domain): the gateway's in-domain defaults unless given."""
    if weights is None:
        from stylegate.service.inversion import DEFAULTS
        from stylegate.service.signatures import LOSS_TERMS

        weights = [DEFAULTS["in_domain"].weights[t] for t in LOSS_TERMS]
    with torch.no_grad():
        w = E(target)
        ft = C.features(target)
    w = w.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(steps):
        rec = G.synthesis(w, "const")
        loss = (
            weights[0] * (rec - target).square().mean()
            + weights[1] * (C.features(rec) - ft).square().mean()
            + weights[2] * (w - E(rec)).square().mean()
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return G.synthesis(w, "const")


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------- sections


def bench_inversion(
    address: str, images: np.ndarray, *, steps: int | None, concurrency: int
) -> dict:
    """``steps`` None: the gateway's default for in_domain."""

    def one(img):
        with StylegateClient(address, timeout=600) as c:
            t0 = time.perf_counter()
            r = c.invert(png(img), method="in_domain", steps=steps, progress_every=steps or 1000)
            return r, time.perf_counter() - t0

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, images))
    wall = time.perf_counter() - t0
    rec_psnr = [psnr(image_array(r.reconstruction), img) for (r, _), img in zip(results, images)]
    return {
        "inversions": len(images),
        "seconds": round(wall, 2),
        "inversions_per_s": round(len(images) / wall, 3),
        "psnr_db": round(float(np.mean(rec_psnr)), 2),
        "mean_steps": round(float(np.mean([r.steps for r, _ in results])), 1),
        "early_stopped": int(sum(r.early_stopped for r, _ in results)),
        "latency_p50_s": round(float(np.median([s for _, s in results])), 2),
    }


def bench_eager(images: np.ndarray, *, steps: int, lr: float) -> dict:
    shipped = ckpt.load(ROOT / "checkpoints" / "base.pt")
    G = ckpt.generator_from(shipped["G_ema"])
    E = ckpt.encoder_from(shipped["encoder"])
    C = ckpt.load_classifier(ROOT / "checkpoints" / "classifier.pt")
    x = torch.from_numpy(data.to_tensor_range(images))
    t0 = time.perf_counter()
    recs = [
        to_uint8(eager_invert(G, E, C, x[i : i + 1], steps=steps, lr=lr)) for i in range(len(x))
    ]
    wall = time.perf_counter() - t0
    return {
        "inversions": len(images),
        "seconds": round(wall, 2),
        "inversions_per_s": round(len(images) / wall, 3),
        "psnr_db": round(float(np.mean([psnr(r, i) for r, i in zip(recs, images)])), 2),
        "steps": steps,
        "learning_rate": lr,
    }


def bench_quality(address: str, images: np.ndarray) -> dict:
    out = {}
    with StylegateClient(address, timeout=600) as c:
        for label, opts in [
            ("encoder", {"method": "encoder"}),
            ("in_domain_100_steps", {"method": "in_domain", "steps": 100, "early_stop_tol": 0.0}),
        ]:
            with cf.ThreadPoolExecutor(8) as pool:
                res = list(
                    pool.map(lambda im, o=opts: c.invert(png(im), progress_every=1000, **o), images)
                )
            out[label] = {
                "psnr_db": round(
                    float(
                        np.mean(
                            [psnr(image_array(r.reconstruction), im) for r, im in zip(res, images)]
                        )
                    ),
                    2,
                ),
                "ssim": round(float(np.mean([r.quality.ssim for r in res])), 4),
            }
    return out


def bench_edits(address: str, images: np.ndarray, *, strength: float = 3.0) -> dict:
    """Flip rate of each named InterFaceGAN direction and the rate at which others move, in
    three variants: ``default`` (what a request with no options gets: the direction's layer
    range and condition_on from the export), ``all_layers`` (every layer, unconditioned: the
    stored vector as is) and ``all_layers_conditional`` (every layer, conditioned on all the
    other attribute directions)."""
    C = ckpt.load_classifier(ROOT / "checkpoints" / "classifier.pt")
    nb = C.num_binary

    def classify(imgs: list[np.ndarray]) -> np.ndarray:
        x = torch.from_numpy(data.to_tensor_range(np.stack(imgs)))
        with torch.no_grad():
            return (C(x)[:, :nb] > 0).numpy()

    out = {}
    with StylegateClient(address, timeout=600) as c:
        num_ws = c.model_info().num_ws
        dirs = [d for d in c.list_directions() if d.method == "interfacegan"]
        with cf.ThreadPoolExecutor(8) as pool:
            inv = list(pool.map(lambda im: c.invert(png(im), progress_every=1000), images))
        ws = [tensor_to_array(r.ws) for r in inv]
        recs = [image_array(r.reconstruction) for r in inv]
        before = classify(recs)
        for d in dirs:
            if d.attribute not in data.ATTRIBUTES:
                continue
            k = data.ATTRIBUTES.index(d.attribute)
            others = [o.name for o in dirs if o.name != d.name and o.attribute in data.ATTRIBUTES]
            variants = {
                "default": {},
                "all_layers": {"layer_start": 0, "layer_stop": num_ws, "unconditioned": True},
                "all_layers_conditional": {
                    "layer_start": 0,
                    "layer_stop": num_ws,
                    "condition_on": others,
                },
            }
            for variant, options in variants.items():
                edited = []
                for w, b in zip(ws, before):
                    op = pb.EditOp(
                        name=d.name, strength=(-1.0 if b[k] else 1.0) * strength, **options
                    )
                    edited.append(image_array(c.edit(w, [op]).image))
                after = classify(edited)
                flipped = float((after[:, k] != before[:, k]).mean())
                moved = {
                    data.ATTRIBUTES[i]: round(float((after[:, i] != before[:, i]).mean()), 3)
                    for i in range(nb)
                    if i != k
                }
                out[f"{d.name}/{variant}"] = {
                    "flip_rate": round(flipped, 3),
                    "max_other_moved": max(moved.values()),
                    "others_moved": moved,
                }
                if variant == "default":
                    out[f"{d.name}/{variant}"]["layers"] = [d.layer_start, d.layer_stop]
                    out[f"{d.name}/{variant}"]["condition_on"] = list(d.condition_on)
    return out


def bench_generation(address: str, repository: Path, *, batch: int = 32, repeats: int = 10) -> dict:
    repo = load_repository(repository)
    g = repo.generator()
    opts = ort.SessionOptions()
    mapping = ort.InferenceSession(str(repo.model_path(g.model("mapping"))), opts)
    synthesis = ort.InferenceSession(str(repo.model_path(g.model("synthesis"))), opts)
    seeds = list(range(batch))
    z = np.stack([z_from_seed(s, g.z_dim) for s in seeds])

    def bare():
        w = mapping.run(None, {"z": z})[0]
        ws = np.repeat(w[:, None], g.num_ws, axis=1)
        return synthesis.run(None, {"ws": ws, "noise_gain": np.ones((batch, 1), np.float32)})[0]

    def timed(fn):
        fn()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - t0) / repeats

    bare_s = timed(bare)
    with StylegateClient(address, timeout=120) as c:
        raw_s = timed(lambda: c.generate(seeds, fmt="raw"))
        png_s = timed(lambda: c.generate(seeds, fmt="png"))
    return {
        "batch": batch,
        "bare_onnxruntime_images_per_s": round(batch / bare_s, 1),
        "gateway_raw_images_per_s": round(batch / raw_s, 1),
        "gateway_png_images_per_s": round(batch / png_s, 1),
        "ratio_raw": round(bare_s / raw_s, 3),
        "ratio_png": round(bare_s / png_s, 3),
    }


@click.command()
@click.option("--images", "n", type=int, default=32, show_default=True, help="held-out faces")
@click.option("--steps", type=int, default=100, show_default=True, help="eager baseline steps")
@click.option(
    "--baseline-lr", type=float, default=0.01, show_default=True, help="IDInvert's Adam lr"
)
@click.option(
    "--repository", type=click.Path(path_type=Path, exists=True), default=ROOT / "model_repository"
)
@click.option("--sections", default="inversion,quality,edits,generation", show_default=True)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
def main(
    n: int, steps: int, baseline_lr: float, repository: Path, sections: str, json_out: Path | None
) -> None:
    """Measure the product targets side by side on held-out rendered faces."""
    torch.set_num_threads(2)
    wanted = set(sections.split(","))
    images, _, _ = data.render_batch(data.heldout_seeds(n))
    report: dict = {"images": n, "cpu_count": os.cpu_count()}
    with gateway(repository) as (address, pid):
        if "inversion" in wanted:
            report["gateway_inversion"] = bench_inversion(
                address, images, steps=steps, concurrency=n
            )
            report["gateway_peak_rss_mb"] = round(peak_rss_mb(pid), 1)
            click.echo(json.dumps(report["gateway_inversion"]))
        if "quality" in wanted:
            report["quality"] = bench_quality(address, images)
            click.echo(json.dumps(report["quality"]))
        if "edits" in wanted:
            report["edits"] = bench_edits(address, images)
            click.echo(json.dumps(report["edits"]))
        if "generation" in wanted:
            report["generation"] = bench_generation(address, repository)
            click.echo(json.dumps(report["generation"]))
        report["gateway_peak_rss_mb"] = round(peak_rss_mb(pid), 1)
    if "inversion" in wanted:
        report["eager_baseline"] = bench_eager(images, steps=steps, lr=baseline_lr)
        g, e = report["gateway_inversion"], report["eager_baseline"]
        report["inversion_speedup"] = round(g["inversions_per_s"] / e["inversions_per_s"], 2)
        report["psnr_gain_db"] = round(g["psnr_db"] - e["psnr_db"], 2)
    text = json.dumps(report, indent=2)
    click.echo(text)
    if json_out:
        json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
