"""The base generator's pretraining: synthesis network and encoder as an autoencoder through
W, the mapping network as a latent GAN on the encoded codes."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import data
from stylegate.gan import networks as N
from stylegate.gan.train.common import (
    D_CHANNELS,
    psnr_db,
    r1_penalty,
    real_batch,
    recenter_encoder,
    widen_generator,
)
from stylegate.gan.train.gan import pack_generator
from stylegate.gan.train.trainer import EMA, ConfigError, Help, Recipe, Schedule


@dataclasses.dataclass(kw_only=True)
class AutoencoderConfig:
    classifier: Annotated[Path, Help("classifier checkpoint: its features are the perceptual loss")]
    kimg: Annotated[float, Help("thousands of real images to show")] = 200.0
    batch: int = 32
    seed: int = 4
    resolution: int = 64
    lr: Annotated[float, Help("synthesis, encoder and probe (cosine decay to 5%)")] = 2e-3
    w_feat: float = 0.5
    w_attr: Annotated[float, Help("linear attribute probe on W: keeps labelled factors linear")] = (
        0.05
    )
    # the mapping layers have lr_mul 0.01: this gives them an effective step of about 1e-3
    mapping_lr: float = 0.1
    latent_d_lr: float = 1e-3
    latent_steps: Annotated[
        int, Help("mapping/latent-D steps per iteration (cheap: 128-d MLPs)")
    ] = 4
    latent_batch: int = 128
    buffer_size: Annotated[
        int, Help("ring buffer of recent encoded codes (the latent 'reals')")
    ] = 4096
    ema_kimg: float = 2.0
    init: Annotated[
        Path | None, Help("continue from this checkpoint's G_ema, encoder and D (a new renderer)")
    ] = None
    init_encoder: Annotated[
        Path | None,
        Help("with --init: the encoder of this checkpoint instead (an autoencoder's own)"),
    ] = None
    widen: Annotated[
        str, Help("with --init: more channels per resolution, e.g. '32:64,64:32' (same images)")
    ] = ""
    adv_weight: Annotated[
        float, Help("adversarial term on the reconstructions (sharpness); 0: none")
    ] = 0.0
    adv_every: Annotated[int, Help("adversarial term and D update every this many iterations")] = 2
    adv_samples: Annotated[
        int, Help("with --adv-weight: generated samples that share the adversarial term")
    ] = 0
    d_lr: float = 1e-3
    r1_gamma: float = 1.0
    r1_every: Annotated[int, Help("R1 every this many D updates")] = 8


def parse_widths(text: str) -> dict[int, int]:
    """'32:64,64:32' -> {32: 64, 64: 32} (a ConfigError names the bad part)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        res, _, ch = part.partition(":")
        if not (res.isdigit() and ch.isdigit()):
            raise ConfigError(f"--widen: {part!r} is not RESOLUTION:CHANNELS")
        out[int(res)] = int(ch)
    return out


def collapse_encoder_to_w(E: torch.nn.Module) -> None:
    """Make the encoder output the mean of its W+ codes at every layer (a W code): the
    autoencoder trains only that mean, so the per-layer offsets are meaningless."""
    with torch.no_grad():
        weight = E.out.weight.reshape(E.num_ws, E.w_dim, -1).mean(0)
        E.out.weight.copy_(weight.repeat(E.num_ws, 1))
        E.out.bias.copy_(E.out.bias.reshape(E.num_ws, E.w_dim).mean(0).repeat(E.num_ws))


class LatentDiscriminator(torch.nn.Module):
    """Tells encoded W codes of real renders from the mapping network's output."""

    def __init__(self, w_dim: int, hidden: int = 256):
        super().__init__()
        self.net = torch.nn.Sequential(
            N.FullyConnected(w_dim, hidden, activation=True),
            N.FullyConnected(hidden, hidden, activation=True),
            N.FullyConnected(hidden, 1),
        )

    def forward(self, w: torch.Tensor) -> torch.Tensor:  # [N, w_dim] -> [N, 1]
        return self.net(w)


class Autoencoder(Recipe):
    """Pretrain synthesis + encoder as an autoencoder through W, mapping as a latent GAN.

    Real renders go E -> w (the mean of E's W+ output) -> G.synthesis -> reconstruction, with
    a pixel and perceptual loss. A linear probe reads the renderer's labels from w. The
    mapping network learns to produce the distribution of encoded codes against a small
    latent discriminator, fed from a ring buffer of recent codes. On 2 CPU cores this
    dense, stable signal reaches far better samples per image shown than the adversarial
    loss alone; ``gan --init`` can then fine-tune the result adversarially."""

    name = "autoencoder"
    Config = AutoencoderConfig
    log_every = 20

    def __init__(self, cfg: AutoencoderConfig, *, device: torch.device):
        super().__init__(cfg, device=device)
        torch.manual_seed(cfg.seed)
        res = cfg.resolution
        if cfg.init is not None:  # the same networks, trained on; G maybe widened
            src = ckpt.load(cfg.init)
            G = ckpt.generator_from(src["G_ema"])
            try:
                G = widen_generator(G, parse_widths(cfg.widen))
            except ValueError as err:
                raise ConfigError(str(err)) from None
            G = G.train().requires_grad_(True)
            D = ckpt.discriminator_from(src["D"])
            # a shipped base's encoder may be a W+ one trained for inversion, far from the
            # mean codes this recipe reconstructs from: --init-encoder names another
            E = ckpt.encoder_from(ckpt.load(cfg.init_encoder or cfg.init)["encoder"])
            E = E.train().requires_grad_(True)
        else:
            if cfg.widen or cfg.init_encoder:
                raise ConfigError("--widen and --init-encoder need --init (a trained generator)")
            G = N.Generator(resolution=res)
            D = N.Discriminator(resolution=res, channels=D_CHANNELS)  # for `gan --init`
            E = N.Encoder(num_ws=G.num_ws, w_dim=G.w_dim, resolution=res)
        LD = LatentDiscriminator(G.w_dim)
        probe = torch.nn.Linear(G.w_dim, len(data.ATTRIBUTES) + len(data.REGRESSIONS))
        self.C = ckpt.load_classifier(cfg.classifier).to(device)
        self.G, self.D, self.E = G.to(device), D.to(device), E.to(device)
        self.LD, self.probe = LD.to(device), probe.to(device)
        self.G_ema = copy.deepcopy(G).eval().requires_grad_(False)
        ae_params = [p for n, p in G.named_parameters() if not n.startswith("mapping.")]
        self.opt_ae = torch.optim.Adam(
            [*ae_params, *E.parameters(), *probe.parameters()], lr=cfg.lr, betas=(0.9, 0.99)
        )
        self.opt_map = torch.optim.Adam(
            G.mapping.parameters(), lr=cfg.mapping_lr, betas=(0.5, 0.99)
        )
        self.opt_ld = torch.optim.Adam(LD.parameters(), lr=cfg.latent_d_lr, betas=(0.5, 0.99))
        self.opt_d = torch.optim.Adam(D.parameters(), lr=cfg.d_lr, betas=(0.0, 0.99))
        self.buffer = torch.zeros(cfg.buffer_size, G.w_dim, device=device)
        self.filled = 0
        self.resumable = {
            "G": G,
            "G_ema": self.G_ema,
            "E_train": E,
            "LD": LD,
            "probe": probe,
            "opt_ae": self.opt_ae,
            "opt_map": self.opt_map,
            "opt_ld": self.opt_ld,
        }
        if cfg.adv_weight > 0:  # D trains only then (a run's recipe keeps its config)
            self.resumable |= {"D": D, "opt_d": self.opt_d}
        self.schedules = [
            Schedule(self.opt_ae, cfg.lr, decay_to=0.05),
            Schedule(self.opt_map, cfg.mapping_lr),
            Schedule(self.opt_ld, cfg.latent_d_lr),
        ]
        # G_ema's mapping is the latent GAN's own result, not an average
        self.ema = EMA(G, self.G_ema, kimg=cfg.ema_kimg, copied=("mapping.",))
        self.total = math.ceil(cfg.kimg * 1000 / cfg.batch)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state.setdefault("E_train", state["E"])  # states written before the shipped E was split
        super().load_state_dict(state)
        self.buffer, self.filled = state["buffer"], state["filled"]

    def shipped_encoder(self) -> torch.nn.Module:
        """The shipped form of E: a W code at every layer, centred on w_avg."""
        E = copy.deepcopy(self.E)
        collapse_encoder_to_w(E)
        recenter_encoder(E, self.G.mapping.w_avg)
        return E

    def extra_state(self) -> dict[str, Any]:
        return {
            "E": self.shipped_encoder().state_dict(),
            "D": self.D.state_dict(),
            "buffer": self.buffer,
            "filled": self.filled,
            "G_config": self.G.config,
            "D_config": self.D.config,
            "E_config": self.E.config,
            "style": "photo",
        }

    def step(self, it: int, gen: torch.Generator) -> dict[str, float]:
        cfg, G, E, LD = self.cfg, self.G, self.E, self.LD
        real, labels, yaw = real_batch(
            cfg.seed, it, cfg.batch, size=G.resolution, device=self.device
        )
        w = E(real).mean(1)
        # the non-fused form is also the faster one for a backward pass on CPU
        rec = G.synthesis(w[:, None].expand(-1, G.num_ws, -1), "const")
        loss_pix = F.mse_loss(rec, real)
        with torch.no_grad():
            target_feat = self.C.features(real)
        loss_feat = F.mse_loss(self.C.features(rec), target_feat)
        out = self.probe(w)
        nb = len(data.ATTRIBUTES)
        loss_attr = F.binary_cross_entropy_with_logits(out[:, :nb], labels) + 0.1 * F.mse_loss(
            out[:, nb], yaw
        )
        loss = loss_pix + cfg.w_feat * loss_feat + cfg.w_attr * loss_attr
        adversarial = cfg.adv_weight > 0 and it % cfg.adv_every == 0
        if adversarial:
            # the samples users are served, not only reconstructions, meet D: the mapping's
            # codes are the latent GAN's business, so only the synthesis learns from them
            fakes = rec
            if cfg.adv_samples > 0:
                with torch.no_grad():
                    z = torch.randn(cfg.adv_samples, G.z_dim, generator=gen).to(self.device)
                    ws = G.mapping(z)[:, None].expand(-1, G.num_ws, -1)
                fakes = torch.cat([rec, G.synthesis(ws, "const")])
            self.D.requires_grad_(False)
            loss = loss + cfg.adv_weight * cfg.adv_every * F.softplus(-self.D(fakes)).mean()
        self.opt_ae.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_ae.step()
        if adversarial:
            self._train_d(it, real, fakes.detach())

        idx = (
            torch.arange(self.filled, self.filled + cfg.batch, device=self.device) % cfg.buffer_size
        )
        self.buffer[idx] = w.detach()
        self.filled += cfg.batch
        pool = self.buffer[: min(self.filled, cfg.buffer_size)]
        for _ in range(cfg.latent_steps):
            pick = torch.randint(len(pool), (cfg.latent_batch,), generator=gen).to(self.device)
            w_real = pool[pick]
            z = torch.randn(cfg.latent_batch, G.z_dim, generator=gen).to(self.device)
            w_fake = G.mapping(z, update_w_avg=True)
            w_real.requires_grad_(True)
            d_real = LD(w_real)
            (grad,) = torch.autograd.grad(d_real.sum(), w_real, create_graph=True)
            loss_ld = (
                F.softplus(LD(w_fake.detach())).mean()
                + F.softplus(-d_real).mean()
                + 0.5 * grad.square().sum(1).mean()
            )
            self.opt_ld.zero_grad(set_to_none=True)
            loss_ld.backward()
            self.opt_ld.step()
            LD.requires_grad_(False)
            loss_map = F.softplus(-LD(w_fake)).mean()
            self.opt_map.zero_grad(set_to_none=True)
            loss_map.backward()
            self.opt_map.step()
            LD.requires_grad_(True)
        return {
            "pix": loss_pix.item(),
            "feat": loss_feat.item(),
            "attr": loss_attr.item(),
            "ld": loss_ld.item(),
            "psnr": psnr_db(loss_pix.item()),
        }

    def _train_d(self, it: int, real: torch.Tensor, fakes: torch.Tensor) -> None:
        """One step of D: real renders against reconstructions (and samples), lazy R1."""
        cfg, D = self.cfg, self.D
        D.requires_grad_(True)
        loss_d = F.softplus(D(fakes)).mean() + F.softplus(-D(real)).mean()
        if it % (cfg.adv_every * cfg.r1_every) == 0:
            loss_d = loss_d + r1_penalty(D, real) * (cfg.r1_gamma / 2) * cfg.r1_every
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

    def preview(self) -> torch.Tensor:
        G = self.G_ema
        z = torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(123))
        real, _, _ = real_batch(self.cfg.seed + 1, 0, 16, size=G.resolution, device=self.device)
        rec = G.synthesis(self.E(real).mean(1, keepdim=True).expand(-1, G.num_ws, -1))
        return torch.cat([G(z.to(self.device)), real, rec])

    pack = staticmethod(pack_generator)
