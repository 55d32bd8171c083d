"""Shared fixtures: model repositories exported once per session (and cached on disk).

- ``tiny_repository``: a complete repository (base with all five models, transfer, blend,
  metadata with directions) exported from small random-weight networks
  (``export.api.export_random``: 16px, w_dim 32, num_ws 6, 16 feature channels at 4x4).
  Exporting costs about a minute on 2 busy cores, so the result is cached under
  ``.pytest_cache/stylegate/`` keyed by a hash of the exporter and network sources; a
  cache hit takes milliseconds. Treat it as read-only.
- ``tiny_models``: the torch modules that repository was exported from.
- ``shipped_repository``: ``model_repository/`` exported from ``checkpoints/*.pt`` when its
  ``stylegate.json`` is missing or older than a checkpoint; fails with a clear message when
  checkpoints are missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CACHE = ROOT / ".pytest_cache" / "stylegate"
SHIPPED_CHECKPOINTS = ("base.pt", "transfer.pt", "classifier.pt")


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive file lock: several engineers' test sessions share this checkout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _source_hash() -> str:
    """Hash of everything a tiny export depends on: a change re-exports."""
    exporter = (
        "api",
        "blend",
        "directions",
        "graphs",
        "onnx_export",
        "repository",
        "triton_config",
    )
    files = [ROOT / "export" / f"{m}.py" for m in exporter] + [
        ROOT / "gan" / "networks.py",
        ROOT / "gan" / "checkpoint.py",
        ROOT / "gan" / "data.py",
        ROOT / "service" / "signatures.py",
    ]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    import torch

    h.update(torch.__version__.encode())
    return h.hexdigest()[:16]


def _cached_export(key: str, build) -> Path:
    """``CACHE/key``, built by ``build(tmp_dir)`` once (atomically, under a lock)."""
    final = CACHE / key
    with _locked(CACHE / f"{key}.lock"):
        if not (final / "stylegate.json").exists():
            tmp = CACHE / f"{key}.tmp{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            build(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
    return final


@pytest.fixture(scope="session")
def tiny_repository() -> Path:
    """Path of a complete model repository exported from random-weight 16px networks."""
    from stylegate.export.api import export_random

    return _cached_export(
        f"tiny-{_source_hash()}", lambda d: export_random(d, resolution=16, seed=0)
    )


@pytest.fixture(scope="session")
def tiny_models() -> dict:
    """The torch modules behind ``tiny_repository`` (``export.api.random_models``):
    keys base, transfer (generators), encoder, classifier (also the feature network)."""
    from stylegate.export.api import random_models

    return random_models(resolution=16, seed=0)


@pytest.fixture(scope="session")
def shipped_repository() -> Path:
    """``model_repository/`` with the shipped checkpoints exported into it."""
    repo = ROOT / "model_repository"
    ckpts = ROOT / "checkpoints"
    missing = [c for c in SHIPPED_CHECKPOINTS if not (ckpts / c).exists()]
    with _locked(ROOT / ".pytest_cache" / "stylegate" / "shipped.lock"):
        meta = repo / "stylegate.json"
        # written by the exporter code of this hash: a change to it re-exports (graphs
        # otherwise stay those of an older exporter, and the parity tests compare old ONNX)
        marker = ROOT / ".pytest_cache" / "stylegate" / "shipped-export-source"
        stale = meta.exists() and (
            any(
                (ckpts / c).exists() and (ckpts / c).stat().st_mtime > meta.stat().st_mtime
                for c in SHIPPED_CHECKPOINTS
            )
            or not marker.exists()
            or marker.read_text() != _source_hash()
        )
        if not meta.exists() or stale:
            if missing:
                pytest.fail(
                    f"shipped checkpoints missing in {ckpts}: {', '.join(missing)} "
                    "(train them or fetch them before running the shipped-model tests)"
                )
            from stylegate.export.api import export_checkpoints

            export_checkpoints(
                repo,
                base=ckpts / "base.pt",
                transfer=ckpts / "transfer.pt",
                classifier=ckpts / "classifier.pt",
            )
            marker.write_text(_source_hash())
    return repo
