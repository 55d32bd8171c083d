"""export/directions.py: the default layer range and conditioning of attribute edits,
chosen by measurement (a hand-made generator and classifier whose answer is known), and
what the tiny export records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from stylegate.export import directions as D
from stylegate.service.metadata import load_repository
from stylegate.service.signatures import METADATA_FILE

RES_64 = [4, 8, 8, 16, 16, 32, 32, 64, 64, 64]  # the shipped 64px generator


def test_layer_range_candidates_are_all_layers_then_runs_of_groups():
    assert D.layer_range_candidates(RES_64) == {
        "all": (0, 10),
        "coarse": (0, 3),
        "coarse+middle": (0, 7),
        "middle": (3, 7),
        "middle+fine": (3, 10),
        "fine": (7, 10),
    }
    # 16px: no fine group, and coarse+middle is all of it
    assert D.layer_range_candidates([4, 8, 8, 16, 16, 16]) == {
        "all": (0, 6),
        "coarse": (0, 3),
        "middle": (3, 6),
    }


def _figures(flip: float, other: float, faces: int = 100) -> D.EditFigures:
    return D.EditFigures(np.array([round(flip * faces), round(other * faces), 0]), faces, 0)


def test_choice_reaches_the_flip_goal_then_cuts_side_effects_by_a_margin():
    # all three reach 90%: clearly fewer side effects win, even with fewer flips
    figs = {"all": _figures(1.0, 0.3), "coarse": _figures(0.92, 0.1), "fine": _figures(0.95, 0.2)}
    assert D.choose_edit(figs) == "coarse"
    # under 90% the fewer side effects do not buy a range
    figs["coarse"] = _figures(0.85, 0.0)
    assert D.choose_edit(figs) == "fine"
    # none reaches 90%: up to 5 points under the best flip rate may be given up
    figs = {"all": _figures(0.8, 0.3), "coarse": _figures(0.76, 0.2), "fine": _figures(0.7, 0.0)}
    assert D.flip_floor(figs) == pytest.approx(0.75)
    assert D.choose_edit(figs) == "coarse"
    # side effects within 5 points of the fewest are a tie: the most flips win, then the
    # earlier candidate ("all" first)
    figs = {"all": _figures(1.0, 0.25), "coarse": _figures(0.95, 0.2)}
    assert D.choose_edit(figs) == "all"
    figs = {"all": _figures(0.95, 0.12), "coarse": _figures(0.97, 0.1)}
    assert D.choose_edit(figs) == "coarse"
    figs = {"all": _figures(0.95, 0.12), "coarse": _figures(0.95, 0.1)}
    assert D.choose_edit(figs) == "all"


# ----------------------------------------------------------------- a model with a known answer

W_DIM = 8
NUM_WS = 7  # coarse [0, 3), middle [3, 7)
E = np.eye(W_DIM, dtype=np.float32)
V_C = 0.8 * E[0] + 0.6 * E[2]  # attribute c: |cosine| 0.8 with a (threshold 2 / sqrt(8))


class Synthesis(nn.Module):
    layer_resolutions = (4, 8, 8, 16, 16, 32, 32)

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        return ws  # the "image" is the latent: the classifier reads it


class Generator(nn.Module):
    z_dim = w_dim = W_DIM
    num_ws = NUM_WS

    def __init__(self):
        super().__init__()
        self.synthesis = Synthesis()

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return z


class Classifier(nn.Module):
    """a: w[0] on the coarse layers; b: w[1] + 2 w[0] on the middle layers, so editing a
    there moves b; c: V_C over all layers, so editing a anywhere moves c unless a is
    conditioned on c. Then a regression output the edits ignore."""

    num_binary = 3

    def forward(self, ws: torch.Tensor) -> torch.Tensor:  # [N, num_ws, w_dim] -> [N, 4]
        a = ws[:, :3, 0].mean(1)
        b = ws[:, :, 1].mean(1) + 2 * ws[:, 3:, 0].mean(1)
        c = (ws @ torch.from_numpy(V_C)).mean(1)
        return torch.stack([a, b, c, torch.zeros_like(a)], dim=1)


def _entry(v: np.ndarray, std: float) -> dict:
    return {"method": "interfacegan", "vector": v.tolist(), "std": std, "layers": [0, NUM_WS]}


def test_edit_defaults_pick_the_layers_and_conditioning_that_keep_other_attributes():
    entries = {"a": _entry(E[0], 2.0), "b": _entry(E[1], 1.0), "c": _entry(V_C, 1.0)}
    options = D.DirectionOptions(edit_faces=200, batch=100)
    out = D.edit_defaults(Generator(), Classifier(), ("a", "b", "c"), entries, options=options)

    a = out["a"]
    # all layers move b (middle) and c; the coarse layers flip a and leave b alone; c is
    # then kept by projecting its direction out, which still flips a (6 * 0.6 = 3.6 stds)
    assert a["layers"] == [0, 3]
    assert a["condition_on"] == ["c"]
    m = a["measured"]
    assert m["strength"] == 3.0 and m["faces"] == 200
    assert m["flip_rate"] >= 0.99 and m["max_other_flip_rate"] == 0.0
    assert m["others"] == {"b": 0.0, "c": 0.0}
    ranges = m["layer_ranges"]
    assert list(ranges) == ["all", "coarse", "middle"]
    assert ranges["all"]["layers"] == [0, NUM_WS] and ranges["all"]["max_other_flip_rate"] > 0.3
    assert ranges["middle"]["faces"] == 100  # below the flip floor on the first half: dropped
    assert m["conditioned"]["on"] == ["c"] and m["conditioned"]["faces"] == 200
    # b is read on every layer and correlates with nothing: all layers, unconditioned
    assert out["b"]["layers"] == [0, NUM_WS] and out["b"]["condition_on"] == []
    assert "conditioned" not in out["b"]["measured"]


def test_the_tiny_export_records_its_measurement_and_loads(tiny_repository):
    meta = json.loads((tiny_repository / METADATA_FILE).read_text())
    repo = load_repository(tiny_repository)
    for name, g in meta["generators"].items():
        dirs = g["directions"]
        for attribute in g["attributes"]:
            d = dirs[attribute]
            assert d["measured"]["strength"] == 3.0
            assert d["layers"] == d["measured"]["layer_ranges"][_chosen(d)]["layers"]
            assert set(d["condition_on"]) <= set(g["attributes"]) - {attribute}
            info = repo.generator(name).directions[attribute]
            assert info.condition_on == tuple(d["condition_on"])
            assert info.stats["measured_flip_rate"] == d["measured"]["flip_rate"]
        assert "measured" not in dirs["pose"] and "condition_on" not in dirs["pose"]


def _chosen(d: dict) -> str:
    return next(c for c, r in d["measured"]["layer_ranges"].items() if r["layers"] == d["layers"])
