"""The README's "Serve your own model" walk-through, run for real: prints each command with
what it printed, and writes docs/images/byo.png.

    .venv/bin/python scripts/readme_byo.py      # needs model_repository/ (make export)

The user's checkpoint is our FIR-resampled base (checkpoints/base-fir.pt) written out as an
NVlabs training snapshot by the test fixture writer, so it has exactly the structure of a
`network-snapshot-*.pkl`. A gateway serves a scratch copy of model_repository/; the
commands are the ones the README shows.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
DIRECTIONS = ("ganspace_0", "ganspace_1", "sefa_0")  # directions every import gets


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args: str, cwd: Path) -> str:
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    done = subprocess.run(
        [str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True, check=False
    )
    text = (done.stdout + done.stderr).replace("\r\n", "\n")
    # a progress bar redraws its line (\r): keep the last state of each line
    lines = [ln.split("\r")[-1] for ln in text.splitlines()]
    print(f"$ {shown}")
    for line in lines:
        print(line)
    print()
    if done.returncode != 0:
        raise SystemExit(f"{shown} failed ({done.returncode})")
    return "\n".join(lines)


def main() -> None:
    from stylegate.gan import checkpoint as ckpt
    from stylegate.gan import data
    from tests.support import transplant

    work = Path(tempfile.mkdtemp(prefix="stylegate-byo-"))
    repo = work / "model_repository"
    shutil.copytree(ROOT / "model_repository", repo)
    entry = ckpt.load(ROOT / "checkpoints" / "base-fir.pt")
    G, D = ckpt.generator_from(entry["G_ema"]), ckpt.discriminator_from(entry["D"])
    transplant.write_nvlabs_snapshot(G, D, work / "network-snapshot-000120.pkl")
    face = data.render_batch(data.heldout_seeds(3)[2:], size=G.resolution)[0][0]
    Image.fromarray(face).save(work / "me.png")

    port = free_port()
    server = f"127.0.0.1:{port}"
    gateway = subprocess.Popen(
        [str(BIN / "stylegate"), "serve", "--port", str(port), "--metrics-port", "0",
         "--model-repository", str(repo)],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "STYLEGATE_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        run("stylegate", "export", "--from", "network-snapshot-000120.pkl", "--name", "mine",
            "--out", "model_repository", cwd=work)  # fmt: skip
        run("stylegate", "reload", "--server", server, cwd=work)
        run("stylegate", "invert", "me.png", "--model", "mine", "--method", "optimize",
            "--out", "opt", "--server", server, cwd=work)  # fmt: skip
        run("stylegate", "train", "encoder", "--model", "mine", "--iters", "600",
            "--repository", "model_repository", cwd=work)  # fmt: skip
        run("stylegate", "reload", "--server", server, cwd=work)
        run("stylegate", "invert", "me.png", "--model", "mine", "--out", "inv",
            "--server", server, cwd=work)  # fmt: skip
        for direction in DIRECTIONS:
            run("stylegate", "edit", "inv/me.npy", "--model", "mine", "--direction", direction,
                "--strength", "3", "--out", "edit", "--server", server, cwd=work)  # fmt: skip
        edited = [work / "edit" / f"me_{d}+3.png" for d in DIRECTIONS]
        pictures = [work / "me.png", work / "opt" / "me.png", work / "inv" / "me.png", *edited]
        tiles = [np.asarray(Image.open(p).convert("RGB")) for p in pictures]
        strip = Image.fromarray(np.concatenate(tiles, axis=1))
        out = ROOT / "docs" / "images" / "byo.png"
        strip.resize((strip.width * 3, strip.height * 3), Image.NEAREST).save(out)
        print(
            f"wrote {out.relative_to(ROOT)}: target | optimize | in_domain | "
            + " | ".join(f"{d} +3" for d in DIRECTIONS)
        )
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
