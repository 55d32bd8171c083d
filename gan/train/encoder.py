"""The domain-guided encoder: IDInvert's encoder objective against a trained generator."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import networks as N
from stylegate.gan.train.common import (
    psnr_db,
    r1_penalty,
    real_batch,
    recenter_encoder,
    restyle,
)
from stylegate.gan.train.trainer import Help, Recipe, Schedule


@dataclasses.dataclass(kw_only=True)
class EncoderConfig:
    base: Annotated[
        Path, Help("checkpoint with G_ema and D (and the encoder to fine-tune, if any)")
    ]
    classifier: Annotated[Path, Help("classifier checkpoint: its features are the perceptual loss")]
    init_encoder: Annotated[
        Path | None,
        Help(
            "start from this checkpoint's encoder, not the base's (e.g. the W+ encoder of the"
            " generator the base continued from)"
        ),
    ] = None
    iters: int = 3000
    batch: Annotated[int, Help("real renders per iteration")] = 8
    synthetic: Annotated[int, Help("generated samples per iteration (latent regression)")] = 16
    seed: int = 2
    lr: Annotated[float, Help("encoder Adam, cosine decay to 5%")] = 5e-4
    w_pix: float = 1.0
    w_feat: float = 0.5
    adv_weight: Annotated[
        float, Help("weight of the adversarial term (the discriminator keeps training)")
    ] = 0.05
    w_latent: Annotated[float, Help("latent regression on G's own samples (known W+)")] = 1.0
    restyle: Annotated[
        float,
        Help(
            "share of the real renders redrawn as another hand might (palette, geometry, line"
            " weight: common.restyle) before encoding; D still sees the renders"
        ),
    ] = 0.0
    backdrops: Annotated[
        float,
        Help(
            "share of the real renders drawn in front of a patterned background"
            " (data.backdrop) as the encoder's targets; D sees plain renders"
        ),
    ] = 0.0
    adv_every: Annotated[int, Help("adversarial term and D update every this many iterations")] = 4
    d_lr: float = 4e-4
    r1_gamma: float = 10.0
    r1_every: Annotated[int, Help("R1 every this many D updates")] = 4


class Encoder(Recipe):
    """Train the domain-guided encoder (IDInvert objective) against the base generator.

    IDInvert's encoder objective on REAL renders: pixel + perceptual + adversarial (encoder
    vs a discriminator that keeps training), plus a latent regression term on generated
    samples (known W+), which gives the encoder a direct signal in W+ and costs no backward
    pass through G. On 2 CPU cores the adversarial part (three passes through D) runs every
    ``adv_every`` iterations only."""

    name = "encoder"
    Config = EncoderConfig
    log_every = 10

    def __init__(self, cfg: EncoderConfig, *, device: torch.device):
        super().__init__(cfg, device=device)
        src = ckpt.load(cfg.base)
        G = ckpt.generator_from(src["G_ema"])
        D = ckpt.discriminator_from(src["D"])
        self.C = ckpt.load_classifier(cfg.classifier).to(device)
        torch.manual_seed(cfg.seed)
        if cfg.init_encoder is not None:
            E = ckpt.encoder_from(ckpt.load(cfg.init_encoder)["encoder"])
            E = E.train().requires_grad_(True)
        elif "encoder" in src:  # fine-tune the encoder the base was shipped with
            E = ckpt.encoder_from(src["encoder"]).train().requires_grad_(True)
        else:
            E = N.Encoder(num_ws=G.num_ws, w_dim=G.w_dim, resolution=G.resolution)
        recenter_encoder(E, G.mapping.w_avg)
        self.G, self.D, self.E = G.to(device), D.to(device), E.to(device)
        self.opt_e = torch.optim.Adam(E.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        self.opt_d = torch.optim.Adam(D.parameters(), lr=cfg.d_lr, betas=(0.0, 0.99))
        self.resumable = {"E": E, "D": D, "opt_e": self.opt_e, "opt_d": self.opt_d}
        self.schedules = [
            Schedule(self.opt_e, cfg.lr, decay_to=0.05),
            Schedule(self.opt_d, cfg.d_lr),
        ]
        self.total = cfg.iters

    def extra_state(self) -> dict[str, Any]:
        return {"E_config": self.E.config, "D_config": self.D.config}

    @torch.no_grad()
    def _samples(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(W+ [S, num_ws, w_dim], G's images of them): half plain W, half style-mixed."""
        G, n, dev = self.G, self.cfg.synthetic, self.device
        w = G.mapping(torch.randn(n, G.z_dim, generator=gen).to(dev))[:, None].repeat(
            1, G.num_ws, 1
        )
        w2 = G.mapping(torch.randn(n, G.z_dim, generator=gen).to(dev))
        cut = torch.randint(1, G.num_ws, (n,), generator=gen)
        mix = (torch.arange(G.num_ws)[None] >= cut[:, None]) & (
            torch.rand(n, 1, generator=gen) < 0.5
        )
        w = torch.where(mix.to(dev)[..., None], w2[:, None], w)
        return w, G.synthesis(w, "const", fused=True)

    def step(self, it: int, gen: torch.Generator) -> dict[str, float]:
        cfg, G, D, E = self.cfg, self.G, self.D, self.E
        patterned = round(cfg.backdrops * cfg.batch)
        target, _, _ = real_batch(
            cfg.seed, it, cfg.batch, size=G.resolution, backdrops=patterned, device=self.device
        )
        adversarial = it % cfg.adv_every == 0
        real = target  # what D sees as real: plain renders (drawn only when D is to see them)
        if patterned and adversarial:
            real, _, _ = real_batch(cfg.seed, it, cfg.batch, size=G.resolution, device=self.device)
        redrawn = round(cfg.restyle * cfg.batch)  # the last ones (the patterned are the first)
        if redrawn:
            target = torch.cat([target[: cfg.batch - redrawn], restyle(target[-redrawn:], gen)])
        w, synth = self._samples(gen)
        ws = E(torch.cat([target, synth]))
        ws_real, ws_synth = ws[: cfg.batch], ws[cfg.batch :]
        rec = G.synthesis(ws_real, "const")  # non-fused: the faster backward pass on CPU
        loss_pix = F.mse_loss(rec, target)
        loss_feat = F.mse_loss(self.C.features(rec), self.C.features(target))
        loss_lat = F.mse_loss(ws_synth, w)
        loss = cfg.w_pix * loss_pix + cfg.w_feat * loss_feat + cfg.w_latent * loss_lat
        if adversarial:
            D.requires_grad_(False)
            loss = loss + cfg.adv_weight * cfg.adv_every * F.softplus(-D(rec)).mean()
        self.opt_e.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_e.step()
        if adversarial:
            D.requires_grad_(True)
            loss_d = F.softplus(D(rec.detach())).mean() + F.softplus(-D(real)).mean()
            if it % (cfg.adv_every * cfg.r1_every) == 0:
                loss_d = loss_d + r1_penalty(D, real) * (cfg.r1_gamma / 2) * cfg.r1_every
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
        return {
            "pix": loss_pix.item(),
            "psnr": psnr_db(loss_pix.item()),
            "lat": loss_lat.item(),
        }

    @staticmethod
    def pack(state: dict[str, Any], shipped: dict[str, Any]) -> dict[str, Any]:
        """The encoder, and the discriminator it trained against when OUT holds one."""
        E = ckpt.encoder_from({"config": state["E_config"], "state_dict": state["E"]})
        shipped["encoder"] = ckpt.pack_module(E)
        if "D" in shipped:
            D = ckpt.discriminator_from({"config": state["D_config"], "state_dict": state["D"]})
            shipped["D"] = ckpt.pack_module(D)
        return shipped
