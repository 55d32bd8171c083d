"""A run's state -> the compact fp16 checkpoint the exporter and the tests load."""

from __future__ import annotations

from pathlib import Path

from stylegate.gan import checkpoint as ckpt
from stylegate.gan.train.gan import pack_mapping
from stylegate.gan.train.recipes import RECIPES
from stylegate.gan.train.trainer import ConfigError


def ship(run: Path, out: Path, *, mapping_only: bool = False) -> Path:
    """Add what the run's recipe ships to ``out`` (created if missing, other entries kept);
    ``mapping_only``: replace only the mapping network of ``out``'s generator by the run's."""
    path = Path(run) / "state.pt"
    if not path.exists():
        raise ConfigError(f"{run}: no state.pt (not a run directory)")
    state = ckpt.load(path)
    name = state.get("recipe")
    if name not in RECIPES or "config" not in state:
        raise ConfigError(
            f"{run}: written by an older trainer; rerun its training command once "
            "(it resumes and records its recipe)"
        )
    out = Path(out)
    shipped = ckpt.load(out) if out.exists() else {}
    packed = pack_mapping(state, shipped) if mapping_only else RECIPES[name].pack(state, shipped)
    ckpt.atomic_save(packed, out)
    return out
