"""Write a Triton model repository (models, configs, stylegate.json) from PyTorch modules.

Layout and metadata format: docs/model-repository.md.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch
from torch import nn

from stylegate.export import directions as D
from stylegate.export import onnx_export, triton_config
from stylegate.gan import networks as N
from stylegate.service.signatures import METADATA_FILE

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
GPU_CONFIG = "configs/gpu.pbtxt"  # Triton's --model-config-name=gpu picks it over config.pbtxt


@dataclasses.dataclass
class GeneratorSpec:
    """One generator of the repository and the networks served with it."""

    name: str  # "base", "transfer", "blend", ...
    generator: N.Generator
    description: str = ""
    encoder: nn.Module | None = None  # served as "encoder"; also the step's domain term
    # Anything with .features(img): served as "features", and with it "inversion_step" (its
    # domain term 0 while there is no encoder, so `optimize` works but `in_domain` does not).
    feature_net: nn.Module | None = None
    classifier: N.AttributeClassifier | None = None  # labels samples for InterFaceGAN directions
    attributes: tuple[str, ...] = ()  # the classifier's binary outputs, in order
    regressions: tuple[str, ...] = ()  # then its regression outputs
    mapping_from: str | None = None  # serve another generator's mapping (same W space)
    extra: dict = dataclasses.field(default_factory=dict)  # more metadata keys ("style", "blend")


def model_name(generator: str, network: str, default: str) -> str:
    return network if generator == default else f"{generator}_{network}"


def feature_dims(feature_net: nn.Module, resolution: int) -> dict[str, int]:
    with torch.no_grad():
        f = feature_net.features(torch.zeros(1, 3, resolution, resolution))
    return {"feature_channels": int(f.shape[1]), "feature_resolution": int(f.shape[-1])}


def generator_dims(spec: GeneratorSpec, feature_net: nn.Module | None) -> dict[str, int]:
    g = spec.generator
    dims = {"resolution": g.resolution, "num_ws": g.num_ws, "w_dim": g.w_dim, "z_dim": g.z_dim}
    if getattr(g, "c_dim", 0):  # a conditional mapping: its class-label input, in stylegate.json
        dims["c_dim"] = g.c_dim
    if feature_net is not None:
        dims.update(feature_dims(feature_net, g.resolution))
    return dims


def write_model(
    out: Path, name: str, network: str, module: nn.Module, dims: dict[str, int]
) -> dict:
    """``out/name/{config.pbtxt, configs/gpu.pbtxt, 1/model.onnx}``; returns a timing/size
    record."""
    t0 = time.monotonic()
    model_dir = out / name
    if model_dir.exists():
        shutil.rmtree(model_dir)
    onnx_path = onnx_export.export_onnx(module, network, dims, model_dir / "1" / "model.onnx")
    (model_dir / "config.pbtxt").write_text(triton_config.model_config(name, network, dims))
    gpu = model_dir / GPU_CONFIG
    gpu.parent.mkdir(parents=True, exist_ok=True)
    gpu.write_text(triton_config.model_config(name, network, dims, device="gpu"))
    record = {
        "model": name,
        "seconds": round(time.monotonic() - t0, 2),
        "bytes": onnx_path.stat().st_size,
    }
    log.info("exported %s in %.1f s (%.2f MB)", name, record["seconds"], record["bytes"] / 1e6)
    return record


def w_spread(g: N.Generator, *, samples: int = 10_000, seed: int = 0) -> float:
    """RMS distance of sampled w from w_avg: the scale of the noise the ``optimize``
    inversion adds to w early on (the NVlabs projector's w_std)."""
    with torch.no_grad():
        z = torch.randn(samples, g.z_dim, generator=torch.Generator().manual_seed(seed))
        w = g.mapping(z)  # [N, w_dim]
        return float(((w - g.mapping.w_avg) ** 2).sum(dim=1).mean().sqrt())


def _export_generator(
    out: Path,
    spec: GeneratorSpec,
    default: str,
    shared_features: nn.Module | None,
    directions: D.DirectionOptions | None,
    records: list[dict],
) -> dict:
    """Export one generator's networks into ``out``; returns its ``stylegate.json`` entry
    (export timings appended to ``records``)."""
    g = spec.generator.eval().requires_grad_(False)
    dims = generator_dims(spec, spec.feature_net or shared_features)
    models: dict[str, str] = {}
    networks: dict[str, nn.Module] = {}
    if spec.mapping_from is None:
        networks["mapping"] = onnx_export.wrap("mapping", generator=g)
    else:
        models["mapping"] = model_name(spec.mapping_from, "mapping", default)
    networks["synthesis"] = onnx_export.wrap("synthesis", generator=g)
    if spec.encoder is not None:
        networks["encoder"] = onnx_export.wrap("encoder", encoder=spec.encoder.eval())
    if spec.feature_net is not None:
        networks["features"] = onnx_export.wrap("features", feature_net=spec.feature_net.eval())
        networks["inversion_step"] = onnx_export.wrap(
            "inversion_step",
            generator=g,
            encoder=spec.encoder.eval() if spec.encoder is not None else None,
            feature_net=spec.feature_net.eval(),
        )
    for network, module in networks.items():
        name = model_name(spec.name, network, default)
        records.append(write_model(out, name, network, module, dims))
        models[network] = name
    order = ["mapping", "synthesis", "encoder", "features", "inversion_step"]
    entry = {
        "description": spec.description,
        **dims,
        "layer_resolutions": [int(r) for r in g.synthesis.layer_resolutions],
        "w_avg": [float(v) for v in g.mapping.w_avg.float()],
        "w_std": w_spread(g),
        "models": {k: models[k] for k in order if k in models},
        **spec.extra,
    }
    if spec.classifier is not None:
        entry["attributes"] = list(spec.attributes)
    if directions is not None:
        t0 = time.monotonic()
        entry["directions"] = D.compute_directions(
            g,
            classifier=spec.classifier,
            attributes=spec.attributes,
            regressions=spec.regressions,
            options=directions,
        )
        records.append({"directions": spec.name, "seconds": round(time.monotonic() - t0, 2)})
        log.info("directions of %s in %.1f s", spec.name, records[-1]["seconds"])
    else:
        entry["directions"] = {}
    return entry


def _write_metadata(path: Path, meta: dict) -> None:
    """Write then rename: readers see the old file or the new one, never a torn one."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, path)


def write_repository(
    out: str | os.PathLike,
    generators: list[GeneratorSpec],
    *,
    default: str = "base",
    directions: D.DirectionOptions | None = D.DEFAULT_OPTIONS,
) -> dict:
    """Export every generator's networks and write ``stylegate.json`` last (its presence
    means the repository is complete). ``directions`` None skips the latent directions.
    Returns the metadata, with export timings under the private key ``"_export"``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / METADATA_FILE
    if meta_path.exists():
        meta_path.unlink()
    names = [g.name for g in generators]
    if default not in names:
        raise ValueError(f"default generator {default!r} is not among {names}")
    shared_features = next((g.feature_net for g in generators if g.feature_net is not None), None)
    records: list[dict] = []
    meta = {"format_version": FORMAT_VERSION, "default_generator": default, "generators": {}}
    for spec in generators:
        meta["generators"][spec.name] = _export_generator(
            out, spec, default, shared_features, directions, records
        )
    _write_metadata(meta_path, meta)
    return {**meta, "_export": records}


def add_generator(
    out: str | os.PathLike,
    spec: GeneratorSpec,
    *,
    directions: D.DirectionOptions | None = D.DEFAULT_OPTIONS,
) -> dict:
    """Export one generator into the repository ``out``, keeping the generators it already
    serves (a generator of the same name is replaced). In a new repository it becomes the
    default generator. ``stylegate.json`` is rewritten atomically at the end, so a running
    gateway sees the old repository until it reloads."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / METADATA_FILE
    meta = (
        json.loads(meta_path.read_text())
        if meta_path.exists()
        else {"format_version": FORMAT_VERSION, "default_generator": spec.name, "generators": {}}
    )
    records: list[dict] = []
    entry = _export_generator(
        out, spec, meta["default_generator"], spec.feature_net, directions, records
    )
    meta["generators"][spec.name] = entry
    _write_metadata(meta_path, meta)
    return {**meta, "_export": records}
