"""Write faces from the shipped generator as PNG files, straight from PyTorch.

    python -m stylegate.gan.generate --seeds 0-15 --out DIR \\
        [--checkpoint checkpoints/base.pt] [--truncation 1.0]

The serving path (`stylegate generate`) goes through the gateway; this is the
model-side check that a checkpoint produces faces.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

from stylegate.gan import checkpoint as ckpt
from stylegate.service.signatures import z_from_seed  # the one seed rule, shared with the gateway

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "base.pt"


def parse_seeds(spec: str) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]."""
    seeds: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            a, b = part.split("-", 1) if not part.startswith("-") else (part, part)
            lo, hi = int(a), int(b)
            if hi < lo:
                raise click.BadParameter(f"range {part!r} runs backwards", param_hint="--seeds")
            seeds.extend(range(lo, hi + 1))
        else:
            seeds.append(int(part))
    if not seeds:
        raise click.BadParameter("no seeds given", param_hint="--seeds")
    return seeds


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def generate(G, seeds: list[int], *, psi: float = 1.0, noise_mode: str = "const") -> np.ndarray:
    z = torch.from_numpy(np.stack([z_from_seed(s, G.z_dim) for s in seeds]))
    return to_uint8(G.synthesis(G.ws(z, psi=psi), noise_mode))


@click.command()
@click.option("--seeds", required=True, help="e.g. 0-15 or 1,5,9")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="output directory")
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path, exists=True),
    default=DEFAULT_CHECKPOINT,
    show_default=True,
)
@click.option("--truncation", type=float, default=1.0, show_default=True, help="psi")
@click.option("--grid/--no-grid", default=True, help="also write grid.png")
def main(seeds: str, out: Path, checkpoint: Path, truncation: float, grid: bool) -> None:
    """Generate one PNG per seed from a checkpoint's EMA generator."""
    seed_list = parse_seeds(seeds)
    G = ckpt.load_generator(checkpoint)
    images = generate(G, seed_list, psi=truncation)
    out.mkdir(parents=True, exist_ok=True)
    for s, img in zip(seed_list, images):
        Image.fromarray(img).save(out / f"seed{s:04d}.png")
    if grid:
        cols = min(8, len(images))
        rows = -(-len(images) // cols)
        h, w = images.shape[1:3]
        canvas = np.zeros((rows * h, cols * w, 3), np.uint8)
        for i, img in enumerate(images):
            r, c = divmod(i, cols)
            canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = img
        Image.fromarray(canvas).save(out / "grid.png")
    click.echo(f"wrote {len(images)} images to {out}")


if __name__ == "__main__":
    main()
