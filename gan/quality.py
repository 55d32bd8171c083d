"""Quality of the shipped models, measured on held-out renders (seeds never used in training).

    python -m stylegate.gan.quality [--n 1000] [--json quality.json]

Figures:
- classifier: per-attribute accuracy and yaw MAE on held-out renders;
- generator: KID between generated and rendered images in the classifier's embedding
  (x1000, lower is better; for three draws of z, the first the figure of record), and how
  confidently the classifier labels generated faces compared with real renders; two
  references: real renders against other real renders (the floor), and the synthesis
  network drawing the encoder's codes of other real renders, one w per face as the mapping
  draws them (what a mapping network that matched the codes' distribution would reach);
- encoder: encoder-only reconstruction PSNR on held-out renders, and the fraction of
  attributes the reconstruction keeps (classifier on input vs on reconstruction).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import torch

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import data

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


def heldout(n: int, *, style: str = "photo") -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    images, labels, yaw = data.render_batch(data.heldout_seeds(n), style=style)
    return torch.from_numpy(data.to_tensor_range(images)), labels, yaw


def _batched(fn, x: torch.Tensor, bs: int = 64) -> torch.Tensor:
    return torch.cat([fn(x[i : i + bs]) for i in range(0, len(x), bs)])


def kid(
    a: np.ndarray, b: np.ndarray, *, subsets: int = 20, subset_size: int = 200, seed: int = 0
) -> float:
    """Kernel Inception Distance (unbiased MMD^2, cubic polynomial kernel) on any features."""
    rng = np.random.default_rng(seed)
    # standardize with the first set's statistics, so the cubic kernel sees O(1) values
    mu, sd = a.mean(0), a.std(0) + 1e-6
    a, b = (a - mu) / sd, (b - mu) / sd
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    total = 0.0
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        total += (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (
            m * (m - 1)
        ) - 2 * kxy.mean()
    return float(total / subsets)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [-1, 1] (peak-to-peak 2)."""
    mse = (a.clamp(-1, 1) - b.clamp(-1, 1)).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))


@torch.no_grad()
def classifier_quality(C, images: torch.Tensor, labels: np.ndarray, yaw: np.ndarray) -> dict:
    out = _batched(C, images)
    nb = C.num_binary
    pred = (out[:, :nb] > 0).numpy()
    acc = (pred == (labels > 0.5)).mean(axis=0)
    return {
        "accuracy": {a: round(float(v), 4) for a, v in zip(data.ATTRIBUTES, acc)},
        "mean_accuracy": round(float(acc.mean()), 4),
        "yaw_mae": round(float(np.abs(out[:, nb].numpy() - yaw).mean()), 4),
    }


# Seeds of the z draws behind the KID figures: the first is the figure of record (the only
# one before 2026-12-03); the others show how far a draw of n faces moves it.
Z_DRAW_SEEDS = (7, 8, 9)


@torch.no_grad()
def generator_quality(
    G, C, real: torch.Tensor, *, n: int, psi: float = 1.0, draws: int = len(Z_DRAW_SEEDS)
) -> dict:
    fr = _batched(C.embed, real).numpy()
    kids, fake = [], None
    for seed in Z_DRAW_SEEDS[: max(1, draws)]:
        z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
        images = _batched(lambda zz: G.synthesis(G.ws(zz, psi=psi), "const"), z)
        kids.append(round(kid(fr, _batched(C.embed, images).numpy()) * 1000, 3))
        fake = images if fake is None else fake
    nb = C.num_binary

    def confidence(x):
        p = torch.sigmoid(_batched(C, x)[:, :nb])
        return float(torch.maximum(p, 1 - p).mean())

    return {
        "kid_x1000": kids[0],
        "kid_x1000_draws": kids,
        "classifier_confidence_generated": round(confidence(fake), 4),
        "classifier_confidence_real": round(confidence(real), 4),
        "attribute_rates_generated": {
            a: round(float(v), 3)
            for a, v in zip(data.ATTRIBUTES, (_batched(C, fake)[:, :nb] > 0).float().mean(0))
        },
    }


@torch.no_grad()
def encoded_codes_kid(G, E, C, real: torch.Tensor, other: torch.Tensor) -> float:
    """KID x1000 of the synthesis drawing one w per face of ``other`` (the encoder's W+
    code averaged over its layers, so every layer gets the same w, as the mapping network's
    samples do) against ``real``: the generator with its mapping network replaced by the
    distribution of real faces' codes."""
    codes = _batched(lambda x: E(x).mean(1, keepdim=True).expand(-1, E.num_ws, -1), other)
    drawn = _batched(lambda w: G.synthesis(w.contiguous(), "const"), codes)
    return round(kid(_batched(C.embed, real).numpy(), _batched(C.embed, drawn).numpy()) * 1000, 3)


@torch.no_grad()
def encoder_quality(G, E, C, real: torch.Tensor) -> dict:
    rec = _batched(lambda x: G.synthesis(E(x), "const"), real)
    p = psnr(rec, real)
    nb = C.num_binary
    same = ((_batched(C, rec)[:, :nb] > 0) == (_batched(C, real)[:, :nb] > 0)).float().mean(0)
    return {
        "psnr_db": round(float(p.mean()), 2),
        "psnr_db_p10": round(float(p.quantile(0.1)), 2),
        "attributes_kept": {a: round(float(v), 4) for a, v in zip(data.ATTRIBUTES, same)},
        "attributes_kept_mean": round(float(same.mean()), 4),
    }


def measure(
    *,
    base: Path = CHECKPOINTS / "base.pt",
    classifier: Path = CHECKPOINTS / "classifier.pt",
    n: int = 1000,
) -> dict:
    """Every figure above on `n` held-out renders (and `n` generated samples)."""
    C = ckpt.load_classifier(classifier)
    real, labels, yaw = heldout(n)
    report: dict = {"n": n, "classifier": classifier_quality(C, real, labels, yaw)}
    shipped = ckpt.load(base)
    G = ckpt.generator_from(shipped["G_ema"])
    report["generator"] = generator_quality(G, C, real, n=n)
    # Reference: the same KID between two disjoint sets of real renders (the floor).
    other, _, _ = data.render_batch(data.heldout_seeds(2 * n)[n:])
    other_t = torch.from_numpy(data.to_tensor_range(other))
    with torch.no_grad():
        report["generator"]["kid_x1000_real_vs_real"] = round(
            kid(_batched(C.embed, real).numpy(), _batched(C.embed, other_t).numpy()) * 1000, 3
        )
    if "encoder" in shipped:
        E = ckpt.encoder_from(shipped["encoder"])
        report["encoder"] = encoder_quality(G, E, C, real)
        report["generator"]["kid_x1000_encoded_codes"] = encoded_codes_kid(G, E, C, real, other_t)
    return report


@click.command()
@click.option(
    "--n", type=int, default=1000, show_default=True, help="held-out renders / generated samples"
)
@click.option(
    "--base", type=click.Path(path_type=Path, exists=True), default=CHECKPOINTS / "base.pt"
)
@click.option(
    "--classifier",
    type=click.Path(path_type=Path, exists=True),
    default=CHECKPOINTS / "classifier.pt",
)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
def main(n: int, base: Path, classifier: Path, json_out: Path | None) -> None:
    """Measure the shipped models' quality on held-out renders."""
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    report = measure(base=base, classifier=classifier, n=n)
    text = json.dumps(report, indent=2)
    click.echo(text)
    if json_out:
        json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
