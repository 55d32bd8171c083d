"""Generalization: inversion quality on held-out renders and on faces another program drew.

    .venv/bin/python -m bench.generalization [--model-repository model_repository] [--n 32]
        [--steps 100] [--json FILE] [--picture FILE]

Users invert faces our renderer never drew. This inverts N held-out renders
(``gan/data.py``'s held-out seeds) and N faces of the other set (``gan/otherfaces.py``, a
second drawing program that nothing trains on) through a real gateway subprocess with
default settings, with each method at its defaults: ``encoder`` (one network call),
``in_domain`` and ``optimize`` at ``--steps`` (100; early stopping as the gateway defaults).

Prints, per set and method, mean and 10th-percentile PSNR (reconstruction against the
target the model saw), mean SSIM (the gateway's) and the wall seconds for the N inversions,
with issue 12's goal beside the PSNRs it names; then the attribute classifier's
(``checkpoints/classifier.pt``) accuracy on each set's inputs, and the fraction of attributes
the in_domain reconstruction keeps (classifier on the input == on the reconstruction).
``--json`` writes the figures; ``--picture`` a grid per set: input / encoder / in_domain.
Nothing here fails on a goal: a short figure is printed as such.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import time
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image, ImageDraw

from bench.targets import ROOT, gateway, png, psnr
from stylegate.gan import checkpoint as ckpt
from stylegate.gan import data, otherfaces
from stylegate.service.client import StylegateClient, image_array

SETS = ("renders", "other")
METHODS = ("encoder", "in_domain", "optimize")
# Issue 12's goals: mean PSNR (dB) per (set, method).
GOALS: dict[tuple[str, str], float] = {
    ("renders", "encoder"): 24.0,
    ("other", "encoder"): 21.0,
    ("renders", "in_domain"): 28.0,
    ("other", "in_domain"): 26.0,
}
PICTURE_FACES = 8  # per set
PICTURE_ROWS = ("input", "encoder", "in_domain")


def faces(name: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 [N, 64, 64, 3], labels [N, A], seeds) of one set."""
    if name == "renders":
        seeds = data.heldout_seeds(n)
        images, labels, _ = data.render_batch(seeds)
    else:
        seeds = otherfaces.heldout_seeds(n)
        images, labels, _ = otherfaces.render_batch(seeds)
    return images, labels, seeds


def invert_all(
    address: str, images: np.ndarray, *, method: str, steps: int, concurrency: int
) -> tuple[list, float]:
    """Invert every image with ``method`` at its defaults (``steps`` for the loops);
    returns (InvertResults, wall seconds)."""
    options: dict = {"method": method}
    if method != "encoder":
        options["steps"] = steps
    with StylegateClient(address, timeout=600) as c:
        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(concurrency) as pool:
            results = list(
                pool.map(lambda im: c.invert(png(im), progress_every=1000, **options), images)
            )
        return results, time.perf_counter() - t0


def method_figures(results: list, seconds: float, goal: float | None) -> dict:
    """PSNR against the target the model saw (the input itself at the model's resolution)."""
    psnrs = np.array([psnr(image_array(r.reconstruction), image_array(r.target)) for r in results])
    mean = float(psnrs.mean())
    return {
        "psnr_mean_db": round(mean, 2),
        "psnr_p10_db": round(float(np.percentile(psnrs, 10)), 2),
        "ssim_mean": round(float(np.mean([r.quality.ssim for r in results])), 4),
        "seconds": round(seconds, 2),
        "mean_steps": round(float(np.mean([r.steps for r in results])), 1),
        "psnr_db": [round(float(p), 2) for p in psnrs],
        "goal_psnr_db": goal,
        "met": None if goal is None else bool(mean >= goal),
    }


class Classifier:
    """The shipped attribute classifier on uint8 images of any size."""

    def __init__(self, path: Path):
        self.net = ckpt.load_classifier(path).eval()
        self.resolution = self.net.config["resolution"]

    def __call__(self, images: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """bool [N, A]: each attribute present."""
        r = self.resolution
        x = np.stack(
            [
                im
                if im.shape[:2] == (r, r)
                else np.asarray(Image.fromarray(im).resize((r, r), Image.BICUBIC))
                for im in images
            ]
        )
        with torch.no_grad():
            out = self.net(torch.from_numpy(data.to_tensor_range(x)))
        return (out[:, : self.net.num_binary] > 0).numpy()


def by_attribute(agree: np.ndarray) -> dict[str, float]:
    return {a: round(float(v), 3) for a, v in zip(data.ATTRIBUTES, agree.mean(axis=0))}


def run_bench(
    repository: Path, *, n: int, steps: int, concurrency: int
) -> tuple[dict, dict[str, dict]]:
    """The figures, and per set the pictures' images (inputs and reconstructions)."""
    classify = Classifier(ROOT / "checkpoints" / "classifier.pt")
    report: dict = {
        "n": n,
        "steps": steps,
        "concurrency": concurrency,
        "model_repository": str(repository),
        "cpu_count": os.cpu_count(),
        "sets": {},
    }
    shown: dict[str, dict] = {}
    with gateway(repository) as (address, _):
        for name in SETS:
            images, labels, seeds = faces(name, n)
            on_input = classify(images)
            entry: dict = {
                "seeds": [int(seeds[0]), int(seeds[-1])],
                "classifier_accuracy": round(float((on_input == (labels > 0.5)).mean()), 4),
                "classifier_accuracy_by_attribute": by_attribute(on_input == (labels > 0.5)),
                "methods": {},
            }
            shown[name] = {"input": list(images[:PICTURE_FACES])}
            for method in METHODS:
                results, seconds = invert_all(
                    address, images, method=method, steps=steps, concurrency=concurrency
                )
                entry["methods"][method] = method_figures(
                    results, seconds, GOALS.get((name, method))
                )
                recs = [image_array(r.reconstruction) for r in results]
                shown[name][method] = recs[:PICTURE_FACES]
                if method == "in_domain":
                    kept = classify(recs) == on_input
                    entry["in_domain_attributes_kept"] = round(float(kept.mean()), 4)
                    entry["in_domain_attributes_kept_by_attribute"] = by_attribute(kept)
            report["sets"][name] = entry
    return report, shown


# --------------------------------------------------------------------------- output


def table(report: dict) -> list[str]:
    head = ("set", "method", "mean PSNR", "goal", "", "p10 PSNR", "mean SSIM", "steps", "seconds")
    cells = [head]
    for name, entry in report["sets"].items():
        for method, m in entry["methods"].items():
            goal = m["goal_psnr_db"]
            cells.append(
                (
                    name,
                    method,
                    f"{m['psnr_mean_db']:.2f} dB",
                    f">= {goal:g} dB" if goal is not None else "",
                    "" if m["met"] is None else "met" if m["met"] else "short",
                    f"{m['psnr_p10_db']:.2f} dB",
                    f"{m['ssim_mean']:.3f}",
                    f"{m['mean_steps']:g}",
                    f"{m['seconds']:.1f}",
                )
            )
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(head))).rstrip() for c in cells]
    sets = report["sets"]
    lines.append("")
    lines.append(
        "classifier accuracy on the inputs: "
        + ", ".join(f"{k} {v['classifier_accuracy']:.3f}" for k, v in sets.items())
    )
    lines.append(
        "attributes in_domain keeps (classifier on input == on reconstruction): "
        + ", ".join(f"{k} {v['in_domain_attributes_kept']:.3f}" for k, v in sets.items())
    )
    return lines


def picture_grid(shown: dict[str, dict], *, scale: int = 2) -> Image.Image:
    """Per set, rows input / encoder / in_domain, a label at the left of each row."""
    side = next(iter(shown.values()))["input"][0].shape[0] * scale
    label_w, gap = 130, 6
    cols = max(len(s["input"]) for s in shown.values())
    rows = [(f"{name}: {row}", s[row]) for name, s in shown.items() for row in PICTURE_ROWS]
    height = len(rows) * side + (len(shown) - 1) * gap
    canvas = Image.new("RGB", (label_w + cols * side, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for i, (label, images) in enumerate(rows):
        if i and i % len(PICTURE_ROWS) == 0:
            y += gap
        draw.text((4, y + side // 2 - 6), label, fill=(0, 0, 0))
        for j, im in enumerate(images):
            tile = Image.fromarray(im).resize((side, side), Image.NEAREST)
            canvas.paste(tile, (label_w + j * side, y))
        y += side
    return canvas


@click.command()
@click.option(
    "--model-repository",
    "repository",
    type=click.Path(path_type=Path, exists=True),
    default=ROOT / "model_repository",
    show_default=True,
)
@click.option("--n", type=int, default=32, show_default=True, help="faces per set")
@click.option("--steps", type=int, default=100, show_default=True, help="in_domain/optimize steps")
@click.option("--concurrency", type=int, default=8, show_default=True, help="inversions in flight")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
@click.option(
    "--picture", "picture_out", type=click.Path(path_type=Path), default=None, help="PNG grid"
)
def main(
    repository: Path,
    n: int,
    steps: int,
    concurrency: int,
    json_out: Path | None,
    picture_out: Path | None,
) -> None:
    """Inversion quality on held-out renders vs faces of another drawing program."""
    report, shown = run_bench(repository, n=n, steps=steps, concurrency=concurrency)
    for line in table(report):
        click.echo(line)
    if json_out:
        json_out.write_text(json.dumps(report, indent=2) + "\n")
    if picture_out:
        picture_grid(shown).save(picture_out)


if __name__ == "__main__":
    main()
