"""Tiny checkpoints and shortcuts for the training tests (16px networks, one thread)."""

from __future__ import annotations

from pathlib import Path

import torch

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import networks as N
from stylegate.gan.train import Trainer

TINY = {4: 32, 8: 32, 16: 16}  # channels of the tiny generator and discriminator


def fit(run: Path, recipe, cfg, **trainer) -> dict:
    """Train ``cfg`` in ``run`` on one thread, saving only at the end (or the time limit)."""
    trainer = {"save_every": 1e9, "threads": 1, **trainer}
    return Trainer(run=run, **trainer).fit(recipe, cfg)


def state(run: Path) -> dict:
    return torch.load(run / "state.pt", weights_only=True)


def tiny_classifier(path: Path) -> Path:
    torch.manual_seed(1)
    C = N.AttributeClassifier(resolution=16, num_binary=7, width=8)
    ckpt.atomic_save({"classifier": ckpt.pack_module(C)}, path)
    return path


def tiny_base(path: Path, *, encoder: bool = False) -> Path:
    """A base checkpoint: a 16px generator (w_dim 32) and its discriminator, and an encoder."""
    torch.manual_seed(0)
    G = N.Generator(z_dim=32, w_dim=32, resolution=16, channels=TINY)
    D = N.Discriminator(resolution=16, channels=TINY)
    entries = {"G_ema": ckpt.pack_module(G), "D": ckpt.pack_module(D)}
    if encoder:
        E = N.Encoder(num_ws=G.num_ws, w_dim=32, resolution=16, channels={4: 32, 8: 16, 16: 8})
        entries["encoder"] = ckpt.pack_module(E)
    ckpt.atomic_save(entries, path)
    return path
