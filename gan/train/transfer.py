"""The woodblock transfer model: the base synthesis network fine-tuned on paired renders (or,
with ``--adversarial``, the GAN recipe fine-tuning the base on woodblock renders)."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import data
from stylegate.gan.train.common import psnr_db, real_batch, render
from stylegate.gan.train.gan import Gan, GanConfig, pack_generator
from stylegate.gan.train.trainer import EMA, ConfigError, Help, Recipe, Schedule


@dataclasses.dataclass(kw_only=True)
class TransferConfig:
    base: Annotated[Path, Help("the base checkpoint (G_ema, D and encoder)")]
    classifier: Annotated[
        Path | None,
        Help("paired fine-tune (default when given): base encoder + pixel/perceptual loss"),
    ] = None
    kimg: Annotated[float, Help("thousands of image pairs (or woodblock renders) to show")] = 20.0
    batch: int = 32
    seed: int = 3
    lr: Annotated[float, Help("Adam; paired: cosine decay to 5%")] = 1e-3
    w_feat: float = 0.5
    ema_kimg: float = 1.0
    adversarial: Annotated[bool, Help("fine-tune with the GAN loss instead of paired renders")] = (
        False
    )
    adversarial_ema_kimg: float = 2.0
    adversarial_r1_gamma: float = 0.5


class Transfer(Recipe):
    """Fine-tune the base GAN on woodblock-style renders (the transfer domain).

    The renderer draws the same face in both styles, so each photo render is encoded with
    the base encoder (frozen) and the fine-tuned synthesis network learns to draw the
    woodblock render of that face from the same W+ code (pixel + perceptual loss). The
    mapping network stays the base one, so base and transfer share one latent space: what
    layer swapping and toonify rely on."""

    name = "transfer"
    Config = TransferConfig
    log_every = 20

    @classmethod
    def build(cls, cfg: TransferConfig, *, device: torch.device) -> Recipe:
        if cfg.adversarial:
            gan = GanConfig(
                kimg=cfg.kimg,
                batch=cfg.batch,
                seed=cfg.seed,
                style="woodblock",
                init=cfg.base,
                lr=cfg.lr,
                r1_gamma=cfg.adversarial_r1_gamma,
                ema_kimg=cfg.adversarial_ema_kimg,
            )
            return Gan(gan, device=device)
        if cfg.classifier is None:
            raise ConfigError("the paired transfer needs --classifier (or pass --adversarial)")
        return cls(cfg, device=device)

    def __init__(self, cfg: TransferConfig, *, device: torch.device):
        super().__init__(cfg, device=device)
        src = ckpt.load(cfg.base)
        G = ckpt.generator_from(src["G_ema"]).train()
        G.requires_grad_(False)
        G.synthesis.requires_grad_(True)
        self.G = G.to(device)
        self.D = ckpt.discriminator_from(src["D"]).to(device)  # passed on to the shipped model
        self.E = ckpt.encoder_from(src["encoder"]).to(device)
        self.C = ckpt.load_classifier(cfg.classifier).to(device)
        self.G_ema = copy.deepcopy(G).eval().requires_grad_(False)
        self.opt = torch.optim.Adam(G.synthesis.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        self.resumable = {"G": G, "G_ema": self.G_ema, "opt": self.opt}
        self.schedules = [Schedule(self.opt, cfg.lr, decay_to=0.05)]
        self.ema = EMA(G, self.G_ema, kimg=cfg.ema_kimg)
        self.total = math.ceil(cfg.kimg * 1000 / cfg.batch)

    def extra_state(self) -> dict[str, Any]:
        return {
            "D": self.D.state_dict(),
            "G_config": self.G.config,
            "D_config": self.D.config,
            "style": "woodblock",
        }

    def _pairs(self, seeds: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        size, device = self.G.resolution, self.device
        photo, _, _ = render(seeds, size=size, device=device)
        wood, _, _ = render(seeds, style="woodblock", size=size, device=device)
        return photo, wood

    def step(self, it: int, gen: torch.Generator) -> dict[str, float]:
        cfg, kw = self.cfg, {"size": self.G.resolution, "device": self.device}
        photo, _, _ = real_batch(cfg.seed, it, cfg.batch, **kw)
        wood, _, _ = real_batch(cfg.seed, it, cfg.batch, style="woodblock", **kw)
        with torch.no_grad():
            ws = self.E(photo)
            target_feat = self.C.features(wood)
        out = self.G.synthesis(ws, "const")
        loss_pix = F.mse_loss(out, wood)
        loss = loss_pix + self.cfg.w_feat * F.mse_loss(self.C.features(out), target_feat)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"pix": loss_pix.item(), "psnr": psnr_db(loss_pix.item())}

    def preview(self) -> torch.Tensor:
        photo, wood = self._pairs(data.heldout_seeds(16))
        return torch.cat([photo, self.G_ema.synthesis(self.E(photo)), wood])

    pack = staticmethod(pack_generator)
