"""The adversarial recipe: non-saturating loss, lazy R1, style mixing; optionally the encoder
trained jointly (``--joint-encoder``); ``--init`` fine-tunes a shipped generator, and
``--train mapping`` only its mapping network (the synthesis frozen)."""

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
from stylegate.gan.train.common import D_CHANNELS, r1_penalty, real_batch, recenter_encoder
from stylegate.gan.train.trainer import EMA, ConfigError, Help, Recipe, Schedule


@dataclasses.dataclass(kw_only=True)
class GanConfig:
    kimg: Annotated[float, Help("thousands of real images to show")] = 150.0
    batch: int = 32
    seed: int = 0
    style: Annotated[str, Help("render style of the real images", choices=data.STYLES)] = "photo"
    init: Annotated[Path | None, Help("fine-tune this checkpoint's G_ema and D")] = None
    resolution: Annotated[int, Help("image size of a new model")] = 64
    lr: float = 2e-3
    r1_gamma: float = 1.0
    r1_every: Annotated[int, Help("lazy regularization: R1 every this many D steps")] = 16
    mixing_prob: float = 0.9
    ema_kimg: Annotated[float, Help("half-life of G_ema, thousands of images")] = 5.0
    joint_encoder: Annotated[
        Path | None,
        Help("classifier checkpoint: train the encoder jointly (reconstructing real renders)"),
    ] = None
    anchor: Annotated[
        Path | None,
        Help(
            "classifier checkpoint: keep the synthesis matched to --init's encoder, frozen"
            " (real renders encoded and redrawn, pixel + perceptual loss, beside the GAN loss)"
        ),
    ] = None
    anchor_weight: Annotated[float, Help("weight of the --anchor reconstruction")] = 1.0
    train: Annotated[
        str,
        Help(
            "which networks learn: all, or mapping (the synthesis frozen; samples drawn as "
            "served: one w per image, constant noise, no style mixing)",
            choices=("all", "mapping"),
        ),
    ] = "all"
    mapping_lr: Annotated[
        float | None, Help("the mapping network's learning rate (default: lr)")
    ] = None
    noise: Annotated[
        str,
        Help(
            "noise inputs of G's samples: random (StyleGAN's), or const (the buffers the"
            " service draws with; for a generator trained with them, e.g. the autoencoder's)",
            choices=("random", "const"),
        ),
    ] = "random"


@dataclasses.dataclass
class JointEncoder:
    """Trains the encoder with the GAN: real renders are encoded and reconstructed (pixel +
    perceptual loss into both E and G) and G's own samples are encoded back to their W+.
    On 2 CPU cores this dense signal teaches G the data far sooner than the adversarial
    loss alone, and leaves an encoder matched to G (fine-tuned afterwards with the IDInvert
    objective by the encoder recipe)."""

    E: torch.nn.Module
    opt: torch.optim.Optimizer | None  # None: the encoder is frozen (an anchor for G)
    C: torch.nn.Module  # frozen classifier: its features are the perceptual loss
    weight: float = 1.0  # of the whole reconstruction objective against the GAN loss
    w_feat: float = 0.5
    n_real: int = 16


class Gan(Recipe):
    """Train the base GAN on photo-style renders (or fine-tune one with --init)."""

    name = "gan"
    Config = GanConfig

    def __init__(self, cfg: GanConfig, *, device: torch.device):
        super().__init__(cfg, device=device)
        if cfg.train == "mapping" and (cfg.init is None or cfg.joint_encoder is not None):
            raise ConfigError("--train mapping fine-tunes the mapping of --init's generator alone")
        if cfg.anchor is not None and (cfg.joint_encoder is not None or cfg.train == "mapping"):
            raise ConfigError(
                "--anchor keeps the synthesis matched to a frozen encoder: not with"
                " --joint-encoder or --train mapping"
            )
        if cfg.init is not None:
            src = ckpt.load(cfg.init)
            G = ckpt.generator_from(src["G_ema"]).train().requires_grad_(True)
            D = ckpt.discriminator_from(src["D"])
        else:
            torch.manual_seed(cfg.seed)
            G = N.Generator(resolution=cfg.resolution)
            D = N.Discriminator(resolution=cfg.resolution, channels=D_CHANNELS)
        self.G, self.D = G.to(device), D.to(device)
        self.G_ema = copy.deepcopy(G).eval().requires_grad_(False)
        c = cfg.r1_every / (cfg.r1_every + 1)  # lazy-regularization correction of Adam's settings
        mapping_lr = cfg.lr if cfg.mapping_lr is None else cfg.mapping_lr
        groups = [{"params": list(G.mapping.parameters()), "lr": mapping_lr}]
        if cfg.train == "mapping":
            G.synthesis.requires_grad_(False)
        else:
            other = [p for n, p in G.named_parameters() if not n.startswith("mapping.")]
            groups.insert(0, {"params": other})
        opt_g = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.0, 0.99), eps=1e-8)
        opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr * c, betas=(0.0, 0.99**c), eps=1e-8)
        self.resumable = {"G": G, "D": D, "G_ema": self.G_ema, "opt_g": opt_g, "opt_d": opt_d}
        self.opt_g, self.opt_d = opt_g, opt_d
        self.schedules = [
            Schedule(opt_g, tuple(g.get("lr", cfg.lr) for g in groups)),
            Schedule(opt_d, cfg.lr * c),
        ]
        self.ema = EMA(G, self.G_ema, kimg=cfg.ema_kimg)
        self.total = math.ceil(cfg.kimg * 1000 / cfg.batch)
        self.joint = None
        if cfg.joint_encoder is not None:
            E = N.Encoder(num_ws=G.num_ws, w_dim=G.w_dim, resolution=G.resolution).to(device)
            E.w_avg.copy_(G.mapping.w_avg)
            self.joint = JointEncoder(
                E=E,
                opt=torch.optim.Adam(E.parameters(), lr=cfg.lr, betas=(0.9, 0.99)),
                C=ckpt.load_classifier(cfg.joint_encoder).to(device),
            )
            self.resumable |= {"E": E, "opt_e": self.joint.opt}
        if cfg.anchor is not None:
            if "encoder" not in src:
                raise ConfigError(f"--anchor: {cfg.init} has no encoder to keep G matched to")
            E = ckpt.encoder_from(src["encoder"]).to(device)  # frozen, in eval mode
            C = ckpt.load_classifier(cfg.anchor).to(device)
            self.joint = JointEncoder(E=E, opt=None, C=C, weight=cfg.anchor_weight)

    @property
    def label(self) -> str:
        return f"gan {self.cfg.style}"

    @property
    def _trains_encoder(self) -> bool:
        return self.joint is not None and self.joint.opt is not None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._trains_encoder and "E" not in state:  # joint training joins a running GAN
            for k in ("G", "D", "G_ema", "opt_g", "opt_d"):
                self.resumable[k].load_state_dict(state[k])
            self.joint.E.w_avg.copy_(self.G.mapping.w_avg)
            return
        super().load_state_dict(state)

    def state_dict(self) -> dict[str, Any]:
        if self._trains_encoder:  # shipped as it is: centred on the generator it serves
            recenter_encoder(self.joint.E, self.G_ema.mapping.w_avg)
        return super().state_dict()

    def extra_state(self) -> dict[str, Any]:
        extra = {"G_config": self.G.config, "D_config": self.D.config, "style": self.cfg.style}
        if self._trains_encoder:
            extra["E_config"] = self.joint.E.config
        return extra

    def step(self, it: int, gen: torch.Generator) -> dict[str, float]:
        """One G step and one D step."""
        cfg, G, D, joint = self.cfg, self.G, self.D, self.joint
        real, _, _ = real_batch(
            cfg.seed, it, cfg.batch, style=cfg.style, size=G.resolution, device=self.device
        )
        b = real.shape[0]
        z = torch.randn(b, G.z_dim, generator=gen).to(self.device)
        w = G.mapping(z, update_w_avg=True)
        ws = w[:, None].expand(-1, G.num_ws, -1)
        mapping_only = cfg.train == "mapping"
        if not mapping_only and torch.rand((), generator=gen).item() < cfg.mixing_prob:
            cut = int(torch.randint(1, G.num_ws, (), generator=gen))
            w2 = G.mapping(torch.randn(b, G.z_dim, generator=gen).to(self.device))
            ws = torch.cat([ws[:, :cut], w2[:, None].expand(-1, G.num_ws - cut, -1)], dim=1)
        fake = G.synthesis(ws, "const" if mapping_only else cfg.noise)

        D.requires_grad_(False)
        loss_g = F.softplus(-D(fake)).mean()
        loss_total = loss_g
        if joint is not None:
            x = real[: joint.n_real]
            with torch.set_grad_enabled(joint.opt is not None):  # an anchor needs no grad
                codes = joint.E(x)
            rec = G.synthesis(codes, "const")
            loss_rec = F.mse_loss(rec, x) + joint.w_feat * F.mse_loss(
                joint.C.features(rec), joint.C.features(x)
            )
            loss_total = loss_g + joint.weight * loss_rec
            if joint.opt is not None:
                loss_lat = F.mse_loss(joint.E(fake.detach()), ws.detach())
                loss_total = loss_total + joint.weight * loss_lat
                joint.opt.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)
        loss_total.backward()
        self.opt_g.step()
        if joint is not None and joint.opt is not None:
            joint.opt.step()
        D.requires_grad_(True)

        loss_d = F.softplus(D(fake.detach())).mean() + F.softplus(-D(real)).mean()
        if it % cfg.r1_every == 0:
            loss_d = loss_d + r1_penalty(D, real) * (cfg.r1_gamma / 2) * cfg.r1_every
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        return {"loss_g": loss_g.item(), "loss_d": loss_d.item()}

    def preview(self) -> torch.Tensor:
        z = torch.randn(32, self.G.z_dim, generator=torch.Generator().manual_seed(123))
        return self.G_ema(z.to(self.device))

    @staticmethod
    def pack(state: dict[str, Any], shipped: dict[str, Any]) -> dict[str, Any]:
        return pack_generator(state, shipped)


def pack_generator(state: dict[str, Any], shipped: dict[str, Any]) -> dict[str, Any]:
    """G_ema, D, style, images shown, and the encoder when the run has one."""
    G = ckpt.generator_from({"config": state["G_config"], "state_dict": state["G_ema"]})
    D = ckpt.discriminator_from({"config": state["D_config"], "state_dict": state["D"]})
    shipped["G_ema"], shipped["D"] = ckpt.pack_module(G), ckpt.pack_module(D)
    shipped["style"] = state["style"]
    shipped["kimg"] = state["it"] * state["config"]["batch"] / 1000
    if "E" in state:
        E = ckpt.encoder_from({"config": state["E_config"], "state_dict": state["E"]})
        shipped["encoder"] = ckpt.pack_module(E)
    elif "encoder" in shipped:  # OUT's own encoder: same outputs, centred on the new w_avg
        _recenter_shipped_encoder(shipped, G.mapping.w_avg)
    return shipped


def pack_mapping(state: dict[str, Any], shipped: dict[str, Any]) -> dict[str, Any]:
    """Only the run's mapping network into OUT's generator (and OUT's encoder recentred):
    for a generator that shares the base's latent space, such as the transfer model."""
    if "G_ema" not in state or "G_ema" not in shipped:
        raise ConfigError("--mapping-only needs a run with a generator and OUT with one")
    source = ckpt.generator_from({"config": state["G_config"], "state_dict": state["G_ema"]})
    G = ckpt.generator_from(shipped["G_ema"])
    try:
        G.mapping.load_state_dict(source.mapping.state_dict())
    except RuntimeError as err:
        raise ConfigError(f"the run's mapping does not fit OUT's generator: {err}") from None
    shipped["G_ema"] = ckpt.pack_module(G)
    if "encoder" in shipped:
        _recenter_shipped_encoder(shipped, G.mapping.w_avg)
    return shipped


def _recenter_shipped_encoder(shipped: dict[str, Any], w_avg: torch.Tensor) -> None:
    E = ckpt.encoder_from(shipped["encoder"])
    recenter_encoder(E, w_avg)
    shipped["encoder"] = ckpt.pack_module(E)
