"""A generator redrawn with NVlabs' and rosinality's resampling: the base model distilled
into ``Generator(resample="fir")`` (stride-2 transposed convs with the [1,3,3,1] blur), so
that it can be written out as their checkpoints and imported back exactly.

Our generators upsample by nearest-neighbour copies, which neither repository can express:
the same weights under FIR upsampling draw colour noise. This recipe starts the student
from the teacher's weights and trains its synthesis network to draw the teacher's image for
the same W+ (pixel MSE on mixed latents; the mapping network is shared and frozen), which is
what the round-trip tests and the "Serve your own model" walk-through import.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import networks as N
from stylegate.gan.train.common import psnr_db
from stylegate.gan.train.gan import pack_generator
from stylegate.gan.train.trainer import EMA, Help, Recipe, Schedule


@dataclasses.dataclass(kw_only=True)
class ResampleConfig:
    base: Annotated[Path, Help("the teacher checkpoint (G_ema and D)")]
    kimg: Annotated[float, Help("thousands of latents to distill on")] = 60.0
    batch: int = 16
    seed: int = 5
    lr: Annotated[float, Help("Adam; cosine decay to 5%")] = 1e-3
    mixing: Annotated[float, Help("probability of a style-mixed W+ per sample")] = 0.5
    ema_kimg: float = 1.0


class Resample(Recipe):
    """Distill the base generator into FIR resampling (see the module docstring)."""

    name = "resample"
    Config = ResampleConfig
    log_every = 20

    def __init__(self, cfg: ResampleConfig, *, device: torch.device):
        super().__init__(cfg, device=device)
        src = ckpt.load(cfg.base)
        teacher = ckpt.generator_from(src["G_ema"])
        config = {**teacher.config, "resample": "fir"}
        student = N.Generator(**config)
        student.load_state_dict(teacher.state_dict())
        student.train().requires_grad_(False)
        student.synthesis.requires_grad_(True)
        self.teacher = teacher.to(device)
        self.G = student.to(device)
        self.D = ckpt.discriminator_from(src["D"]).to(device)  # passed on with the model
        self.G_ema = copy.deepcopy(student).eval().requires_grad_(False)
        self.opt = torch.optim.Adam(student.synthesis.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        self.resumable = {"G": self.G, "G_ema": self.G_ema, "opt": self.opt}
        self.schedules = [Schedule(self.opt, cfg.lr, decay_to=0.05)]
        self.ema = EMA(self.G, self.G_ema, kimg=cfg.ema_kimg)
        self.total = math.ceil(cfg.kimg * 1000 / cfg.batch)

    def extra_state(self) -> dict[str, Any]:
        return {
            "D": self.D.state_dict(),
            "G_config": self.G.config,
            "D_config": self.D.config,
            "style": "photo",
        }

    def _latents(self, gen: torch.Generator) -> torch.Tensor:
        """W+ of random z, half of them mixing two ws at a random layer: [B, num_ws, w_dim]."""
        b, num_ws = self.cfg.batch, self.G.num_ws
        z = torch.randn(2 * b, self.G.z_dim, generator=gen).to(self.device)
        with torch.no_grad():
            w = self.teacher.mapping(z)  # [2B, w_dim]
        ws = w[:b, None].repeat(1, num_ws, 1)
        cut = torch.randint(1, num_ws, (b,), generator=gen).to(self.device)
        mixed = torch.rand(b, generator=gen).to(self.device) < self.cfg.mixing
        later = torch.arange(num_ws, device=self.device)[None] >= cut[:, None]  # [B, num_ws]
        swap = (later & mixed[:, None])[..., None]
        return torch.where(swap, w[b:, None], ws)

    def step(self, it: int, gen: torch.Generator) -> dict[str, float]:
        ws = self._latents(gen)
        with torch.no_grad():
            target = self.teacher.synthesis(ws, "const")
        loss = F.mse_loss(self.G.synthesis(ws, "const"), target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"pix": loss.item(), "psnr": psnr_db(loss.item())}

    def preview(self) -> torch.Tensor:
        gen = torch.Generator().manual_seed(0)
        z = torch.randn(16, self.G.z_dim, generator=gen).to(self.device)
        with torch.no_grad():
            return torch.cat([self.teacher(z), self.G_ema(z)])

    pack = staticmethod(pack_generator)
