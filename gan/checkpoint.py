"""Save and load stylegate checkpoints: a plain dict of configs and state dicts.

A shipped checkpoint (``checkpoints/*.pt``) holds fp16 weights and the constructor
configs, so ``load_*`` rebuilds the modules without any training code. Loading always
uses ``torch.load(weights_only=True)``: a checkpoint is data, never code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from stylegate.gan import networks as N


def _half(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}


def _float(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


def atomic_save(obj, path: str | os.PathLike) -> None:
    """Write then rename, so an interrupted save never leaves a torn checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load(path: str | os.PathLike) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def pack_module(module: torch.nn.Module, *, fp16: bool = True) -> dict:
    sd = module.state_dict()
    return {"config": module.config, "state_dict": _half(sd) if fp16 else sd}


def generator_from(entry: dict) -> N.Generator:
    cfg = dict(entry["config"])
    cfg["channels"] = {int(k): int(v) for k, v in cfg["channels"].items()}
    g = N.Generator(**cfg)
    g.load_state_dict(_float(entry["state_dict"]))
    return g.eval().requires_grad_(False)


def discriminator_from(entry: dict) -> N.Discriminator:
    cfg = dict(entry["config"])
    cfg["channels"] = {int(k): int(v) for k, v in cfg["channels"].items()}
    d = N.Discriminator(**cfg)
    d.load_state_dict(_float(entry["state_dict"]))
    return d


def encoder_from(entry: dict) -> N.Encoder:
    cfg = dict(entry["config"])
    cfg["channels"] = {int(k): int(v) for k, v in cfg["channels"].items()}
    e = N.Encoder(**cfg)
    e.load_state_dict(_float(entry["state_dict"]))
    return e.eval().requires_grad_(False)


def classifier_from(entry: dict) -> N.AttributeClassifier:
    c = N.AttributeClassifier(**entry["config"])
    c.load_state_dict(_float(entry["state_dict"]))
    return c.eval().requires_grad_(False)


def load_generator(path: str | os.PathLike, key: str = "G_ema") -> N.Generator:
    return generator_from(load(path)[key])


def load_classifier(path: str | os.PathLike) -> N.AttributeClassifier:
    return classifier_from(load(path)["classifier"])


def load_encoder(path: str | os.PathLike) -> N.Encoder:
    return encoder_from(load(path)["encoder"])
