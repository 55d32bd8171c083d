"""export/repository.py: adding a generator to a repository that already serves others."""

from __future__ import annotations

import json

import torch

from stylegate.export import api
from stylegate.gan import networks as N
from stylegate.service.metadata import load_repository


def _tiny(seed: int) -> N.Generator:
    torch.manual_seed(seed)
    return N.Generator(
        z_dim=16, w_dim=16, resolution=8, channels={4: 16, 8: 8}, resample="fir"
    ).eval()


def test_an_added_generator_keeps_the_others(tmp_path):
    repo = tmp_path / "repo"
    api.export_generator(repo, _tiny(0), name="mine", features="none", directions=None)
    first = json.loads((repo / "stylegate.json").read_text())
    assert first["default_generator"] == "mine"  # a new repository: the first is the default
    assert first["generators"]["mine"]["models"]["mapping"] == "mapping"

    api.export_generator(repo, _tiny(1), name="other", features="none", directions=None)
    info = load_repository(repo)
    assert set(info.generators) == {"mine", "other"} and info.default_generator == "mine"
    assert info.generators["mine"].models == first["generators"]["mine"]["models"]
    assert info.generators["other"].models["synthesis"] == "other_synthesis"
    assert (repo / "other_inversion_step" / "1" / "model.onnx").exists()
    assert info.generators["other"].inversion_methods == ("optimize",)

    # re-importing a name replaces that generator only
    api.export_generator(repo, _tiny(2), name="other", features="none", directions=None)
    again = json.loads((repo / "stylegate.json").read_text())
    assert again["generators"]["mine"] == first["generators"]["mine"]
    assert again["generators"]["other"]["w_std"] != info.generators["other"].w_std
