"""The attribute classifier; its trunk is also the perceptual feature network."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import data
from stylegate.gan import networks as N
from stylegate.gan.train.common import real_batch
from stylegate.gan.train.trainer import Help, Recipe, Schedule


@dataclasses.dataclass(kw_only=True)
class ClassifierConfig:
    iters: int = 2500
    batch: int = 32
    seed: int = 1
    lr: Annotated[float, Help("Adam, cosine decay to 0")] = 3e-3
    width: int = 16
    # yaw is easy and large-valued: down-weighted so the small features (eyes, mouth) get learned
    yaw_weight: float = 0.1
    init: Annotated[
        Path | None, Help("fine-tune this checkpoint's classifier (e.g. on a changed renderer)")
    ] = None


class Classifier(Recipe):
    """Train the attribute classifier (its trunk is the perceptual feature network)."""

    name = "classifier"
    Config = ClassifierConfig

    def __init__(self, cfg: ClassifierConfig, *, device: torch.device):
        super().__init__(cfg, device=device)
        torch.manual_seed(cfg.seed)
        if cfg.init is not None:
            C = ckpt.load_classifier(cfg.init).train().requires_grad_(True)
        else:
            C = N.AttributeClassifier(
                num_binary=len(data.ATTRIBUTES),
                num_regression=len(data.REGRESSIONS),
                width=cfg.width,
            )
        self.C = C.to(device)
        self.opt = torch.optim.Adam(self.C.parameters(), lr=cfg.lr)
        self.resumable = {"C": self.C, "opt": self.opt}
        self.schedules = [Schedule(self.opt, cfg.lr, decay_to=0.0)]
        self.total = cfg.iters

    def extra_state(self) -> dict[str, Any]:
        return {"C_config": self.C.config}

    def step(self, it: int, gen: torch.Generator) -> dict[str, float]:
        x, labels, yaw = real_batch(self.cfg.seed, it, self.cfg.batch, device=self.device)
        out = self.C(x)
        nb = len(data.ATTRIBUTES)
        loss = F.binary_cross_entropy_with_logits(
            out[:, :nb], labels
        ) + self.cfg.yaw_weight * F.mse_loss(out[:, nb], yaw)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    @staticmethod
    def pack(state: dict[str, Any], shipped: dict[str, Any]) -> dict[str, Any]:
        C = ckpt.classifier_from({"config": state["C_config"], "state_dict": state["C"]})
        shipped["classifier"] = ckpt.pack_module(C)
        return shipped
