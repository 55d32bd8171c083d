"""The model repository's metadata (``stylegate.json``, see docs/model-repository.md) as
typed, validated objects. Everything the gateway knows about a generator comes from here."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from stylegate.service.errors import BackendUnavailable, NotFound, clip
from stylegate.service.signatures import METADATA_FILE

# The networks each inversion method calls. ``encoder`` still evaluates its latent with one
# inversion_step call (loss terms, reconstruction and quality figures come from there).
METHOD_NETWORKS: dict[str, tuple[str, ...]] = {
    "encoder": ("encoder", "features", "inversion_step"),
    "optimize": ("features", "inversion_step"),
    "in_domain": ("encoder", "features", "inversion_step"),
}


@dataclasses.dataclass(frozen=True)
class Direction:
    name: str
    method: str
    vector: np.ndarray  # [w_dim], unit norm
    std: float
    layers: tuple[int, int]  # default [start, stop) over num_ws
    attribute: str = ""
    stats: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # directions an edit is conditioned on when the request names none; () in older files
    condition_on: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class GeneratorInfo:
    name: str
    description: str
    resolution: int
    num_ws: int
    w_dim: int
    z_dim: int
    feature_channels: int
    feature_resolution: int
    layer_resolutions: tuple[int, ...]
    w_avg: np.ndarray  # [w_dim]
    models: Mapping[str, str]  # network -> served model name
    attributes: tuple[str, ...]
    directions: Mapping[str, Direction]
    c_dim: int = 0  # classes of a class-conditional generator (one-hot ``c``); 0: none
    w_std: float = 0.0  # RMS distance of w from w_avg; 0: unknown (no noise in ``optimize``)

    @property
    def inversion_methods(self) -> tuple[str, ...]:
        """The inversion methods whose networks this generator serves."""
        return tuple(
            m for m, nets in METHOD_NETWORKS.items() if all(n in self.models for n in nets)
        )

    @property
    def can_invert(self) -> bool:
        return bool(self.inversion_methods)

    def missing_networks(self, method: str) -> tuple[str, ...]:
        """The networks ``method`` needs that this generator does not serve."""
        return tuple(n for n in METHOD_NETWORKS[method] if n not in self.models)

    @property
    def dims(self) -> dict[str, int]:
        """Symbol values for ``TensorSpec.shape``."""
        return {
            "z_dim": self.z_dim,
            "w_dim": self.w_dim,
            "num_ws": self.num_ws,
            "resolution": self.resolution,
            "feature_channels": self.feature_channels,
            "feature_resolution": self.feature_resolution,
            "c_dim": self.c_dim,
        }

    def model(self, network: str, *, field: str = "model") -> str:
        """Served model name of ``network``; NotFound when this generator lacks it."""
        try:
            return self.models[network]
        except KeyError:
            raise NotFound(
                f"generator {self.name!r} has no {network} network", field=field
            ) from None

    def direction(self, name: str, *, field: str) -> Direction:
        try:
            return self.directions[name]
        except KeyError:
            known = ", ".join(sorted(self.directions)) or "none"
            raise NotFound(
                f"unknown direction {clip(name)} for generator {self.name!r} (known: {known})",
                field=field,
            ) from None


@dataclasses.dataclass(frozen=True)
class RepositoryInfo:
    root: Path
    default_generator: str
    generators: Mapping[str, GeneratorInfo]

    def generator(self, name: str = "", *, field: str = "model") -> GeneratorInfo:
        name = name or self.default_generator
        try:
            return self.generators[name]
        except KeyError:
            known = ", ".join(sorted(self.generators))
            raise NotFound(f"unknown model {clip(name)} (served: {known})", field=field) from None

    @property
    def served_models(self) -> set[str]:
        return {m for g in self.generators.values() for m in g.models.values()}

    def models_of(self, network: str) -> set[str]:
        """The served models that are ``network`` (e.g. every generator's inversion step)."""
        return {g.models[network] for g in self.generators.values() if network in g.models}

    def model_path(self, model: str) -> Path:
        return self.root / model / "1" / "model.onnx"


def _direction(name: str, raw: Mapping[str, Any], w_dim: int, num_ws: int) -> Direction:
    vector = np.asarray(raw["vector"], dtype=np.float32)
    if vector.shape != (w_dim,):
        raise ValueError(f"direction {name}: vector has shape {vector.shape}, expected ({w_dim},)")
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0:
        raise ValueError(f"direction {name}: vector is zero or not finite")
    layers = raw.get("layers") or [0, num_ws]
    stats = {
        k: float(v)
        for k, v in raw.items()
        if k not in ("vector", "std", "layers", "method", "attribute")
        and isinstance(v, (int, float))
    }
    measured = raw.get("measured") or {}  # the export's edit measurement, figures as stats
    stats.update(
        (f"measured_{k}", float(v))
        for k, v in measured.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    )
    condition_on = tuple(str(o) for o in raw.get("condition_on") or ())
    if name in condition_on:
        raise ValueError(f"direction {name}: condition_on names the direction itself")
    return Direction(
        name=name,
        method=str(raw.get("method", "")),
        vector=vector / norm,
        std=float(raw.get("std", 1.0)),
        layers=(int(layers[0]), int(layers[1])),
        attribute=str(raw.get("attribute") or ""),
        stats=stats,
        condition_on=condition_on,
    )


def _generator(name: str, raw: Mapping[str, Any]) -> GeneratorInfo:
    w_dim, num_ws = int(raw["w_dim"]), int(raw["num_ws"])
    w_avg = np.asarray(raw["w_avg"], dtype=np.float32)
    if w_avg.shape != (w_dim,):
        raise ValueError(f"w_avg has shape {w_avg.shape}, expected ({w_dim},)")
    directions = {
        d: _direction(d, v, w_dim, num_ws) for d, v in (raw.get("directions") or {}).items()
    }
    for d in directions.values():
        unknown = [o for o in d.condition_on if o not in directions]
        if unknown:
            raise ValueError(f"direction {d.name}: condition_on names unknown {unknown}")
    return GeneratorInfo(
        name=name,
        description=str(raw.get("description", "")),
        resolution=int(raw["resolution"]),
        num_ws=num_ws,
        w_dim=w_dim,
        z_dim=int(raw["z_dim"]),
        feature_channels=int(raw.get("feature_channels", 0)),
        feature_resolution=int(raw.get("feature_resolution", 0)),
        layer_resolutions=tuple(int(r) for r in raw.get("layer_resolutions", ())),
        w_avg=w_avg,
        models=dict(raw["models"]),
        attributes=tuple(raw.get("attributes", ())),
        directions=directions,
        c_dim=int(raw.get("c_dim", 0)),
        w_std=float(raw.get("w_std", 0.0)),
    )


def load_repository(root: str | Path) -> RepositoryInfo:
    """Read and validate ``<root>/stylegate.json``; BackendUnavailable if absent or broken."""
    root = Path(root)
    path = root / METADATA_FILE
    try:
        raw = json.loads(path.read_text())
        generators = {name: _generator(name, g) for name, g in raw["generators"].items()}
        default = str(raw.get("default_generator") or next(iter(generators)))
    except FileNotFoundError:
        raise BackendUnavailable(
            f"no {METADATA_FILE} in {root} (run `stylegate export` first)"
        ) from None
    except (KeyError, ValueError, TypeError, StopIteration) as exc:
        raise BackendUnavailable(f"invalid {path}: {exc!r}") from None
    if default not in generators:
        raise BackendUnavailable(f"invalid {path}: default_generator {default!r} not defined")
    return RepositoryInfo(root=root, default_generator=default, generators=generators)
