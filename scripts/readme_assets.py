"""Regenerate the README's pictures with the real CLI against a real gateway.

    .venv/bin/python scripts/readme_assets.py   # needs model_repository/ (make export)

Starts `stylegate serve` on a free port, runs the walk-through commands (generate, invert,
edit, mix, interpolate, batch), and renders the layer-swapping comparison from the
checkpoints; writes docs/images/.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "images"
BIN = Path(sys.executable).parent


def run(*args: str) -> None:
    print("$", " ".join(args), flush=True)
    subprocess.run(list(args), check=True, cwd=ROOT)


def grid(
    paths: list[Path], cols: int, scale: int = 2, labels: list[str] | None = None
) -> Image.Image:
    imgs = [Image.open(p).convert("RGB") for p in paths]
    w, h = imgs[0].size
    rows = -(-len(imgs) // cols)
    canvas = Image.new("RGB", (cols * w, rows * h), "white")
    for i, im in enumerate(imgs):
        canvas.paste(im, ((i % cols) * w, (i // cols) * h))
    return canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)


def main() -> None:
    from bench.targets import gateway
    from stylegate.gan import data

    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="stylegate-assets-"))
    stylegate = str(BIN / "stylegate")

    # model side: faces straight from the checkpoint
    run(
        sys.executable, "-m", "stylegate.gan.generate", "--seeds", "0-15", "--out", str(tmp / "gan")
    )
    grid(sorted((tmp / "gan").glob("seed*.png")), 8, 3).save(OUT / "generated_seeds_0-15.png")

    # a held-out "real" face to invert
    face, _, _ = data.render_batch(data.heldout_seeds(3)[2:])
    Image.fromarray(face[0]).save(tmp / "face.png")

    with gateway(ROOT / "model_repository") as (address, _):
        s = ["--server", address]
        run(stylegate, "generate", "--seeds", "0-7", "--out", str(tmp / "gen"), *s)
        run(
            stylegate,
            "generate",
            "--seeds",
            "0-7",
            "--truncation",
            "0.6",
            "--out",
            str(tmp / "gen_trunc"),
            *s,
        )
        run(stylegate, "invert", str(tmp / "face.png"), "--out", str(tmp / "inv"), *s)
        run(
            stylegate,
            "invert",
            str(tmp / "face.png"),
            "--method",
            "encoder",
            "--out",
            str(tmp / "inv_enc"),
            *s,
        )
        latent = next((tmp / "inv").glob("*.npy"))
        for direction in ("smile", "eyeglasses", "blond_hair"):
            for strength in ("-3", "3"):
                run(
                    stylegate,
                    "edit",
                    str(latent),
                    "--direction",
                    direction,
                    "--strength",
                    strength,
                    "--out",
                    str(tmp / f"edit_{direction}_{strength}"),
                    *s,
                )
        run(
            stylegate,
            "mix",
            "--a",
            "3",
            "--b",
            "11",
            "--layers",
            "0:4",
            "--out",
            str(tmp / "mix"),
            *s,
        )
        run(
            stylegate,
            "interpolate",
            "--start",
            "3",
            "--end",
            "11",
            "--frames",
            "16",
            "--out",
            str(OUT / "interpolate_3_11.gif"),
            *s,
        )
        run(stylegate, "batch", "--seeds", "0-63", "--out", str(tmp / "batch"), *s)
        run(
            stylegate,
            "generate",
            "--seeds",
            "0-7",
            "--model",
            "blend",
            "--out",
            str(tmp / "gen_blend"),
            *s,
        )
        run(
            stylegate,
            "edit",
            str(latent),
            "--direction",
            "smile",
            "--strength",
            "0",
            "--model",
            "blend",
            "--out",
            str(tmp / "toonify"),
            *s,
        )

    def pngs(d: str) -> list[Path]:
        return sorted(p for p in (tmp / d).glob("*.png") if "original" not in p.name)

    grid(pngs("gen") + pngs("gen_trunc"), 8, 2).save(OUT / "generate.png")
    recon = [p for p in pngs("inv") if "target" not in p.name][:1]
    enc = [p for p in pngs("inv_enc") if "target" not in p.name][:1]
    grid([tmp / "face.png"] + enc + recon, 3, 3).save(OUT / "invert.png")
    edits = []
    for direction in ("smile", "eyeglasses", "blond_hair"):
        edits += pngs(f"edit_{direction}_-3")[:1] + recon + pngs(f"edit_{direction}_3")[:1]
    grid(edits, 3, 3).save(OUT / "edit.png")
    grid(pngs("mix")[:1], 1, 3).save(OUT / "mix.png")
    grid(pngs("batch")[:32], 16, 2).save(OUT / "batch.png")
    grid([tmp / "face.png"] + recon + pngs("toonify")[:1], 3, 3).save(OUT / "toonify.png")

    # layer swapping: base, transfer, blends at two swap resolutions, same seeds
    rows = []
    for name, ckpt in (("base", "checkpoints/base.pt"), ("transfer", "checkpoints/transfer.pt")):
        run(
            sys.executable,
            "-m",
            "stylegate.gan.generate",
            "--seeds",
            "0-7",
            "--checkpoint",
            ckpt,
            "--out",
            str(tmp / name),
        )
        rows.append(name)
    for r in (8, 32):
        blend = tmp / f"blend{r}.pt"
        run(
            stylegate,
            "export",
            "blend",
            "--base",
            "checkpoints/base.pt",
            "--transfer",
            "checkpoints/transfer.pt",
            "--swap-resolution",
            str(r),
            "--out",
            str(blend),
        )
        run(
            sys.executable,
            "-m",
            "stylegate.gan.generate",
            "--seeds",
            "0-7",
            "--checkpoint",
            str(blend),
            "--out",
            str(tmp / f"blend{r}"),
        )
        rows.append(f"blend{r}")
    grid([p for row in rows for p in sorted((tmp / row).glob("seed*.png"))], 8, 2).save(
        OUT / "layer_swap.png"
    )
    print("wrote", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
