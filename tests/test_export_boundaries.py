"""`stylegate directions train`: InterFaceGAN boundaries from a user's labels or ONNX
classifier, trained through the repository's ONNX models and written into stylegate.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from stylegate.cli.main import main
from stylegate.export import boundaries as B
from stylegate.service import editing
from stylegate.service.metadata import load_repository

TRAIN_SEEDS = range(1000, 1400)
HELD_OUT_SEEDS = range(5000, 5200)


@pytest.fixture
def repo(tiny_repository: Path, tmp_path: Path) -> Path:
    """A writable copy of the cached tiny repository."""
    return Path(shutil.copytree(tiny_repository, tmp_path / "repo"))


def stylegate(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal(n)
    return v / np.linalg.norm(v)


def label(w: np.ndarray, w_avg: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The known linear attribute: which side of the hyperplane through w_avg, normal v."""
    return ((w - w_avg) @ v > 0).astype(int)


def test_labels_recover_a_linear_attribute_and_its_edit_flips_it(repo: Path, tmp_path: Path):
    before = json.loads((repo / "stylegate.json").read_text())
    gen = B.OnnxGenerator(repo)
    info = gen.info
    rng = np.random.default_rng(0)
    v1, v2 = unit(rng, info.w_dim), unit(rng, info.w_dim)
    w = gen.w_of_seeds(TRAIN_SEEDS)
    y1, y2 = label(w, info.w_avg, v1), label(w, info.w_avg, v2)
    # a few rows as latent files: W as it is, W+ (averaged over the layers, all here)
    np.save(tmp_path / "w.npy", w[0].astype(np.float32))
    np.save(tmp_path / "wplus.npy", np.repeat(w[1][None], info.num_ws, 0).astype(np.float32))
    rows = ["seed,tilt,glow"]
    for i, s in enumerate(TRAIN_SEEDS):
        src = {0: "w.npy", 1: str(tmp_path / "wplus.npy")}.get(i, str(s))
        rows.append(f"{src},{y1[i]},{y2[i]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")

    out = stylegate(
        "directions", "train", "--repository", repo, "--labels", tmp_path / "labels.csv"
    )
    assert out.exit_code == 0, out.output
    assert "held-out accuracy" in out.output and "reload" in out.output

    # the rewritten metadata loads and keeps every old direction and generator
    loaded = load_repository(repo)
    after = json.loads((repo / "stylegate.json").read_text())
    for name, g in before["generators"].items():
        for d, entry in g["directions"].items():
            assert after["generators"][name]["directions"][d] == entry
    assert {k: v for k, v in after["generators"].items() if k != "base"} == {
        k: v for k, v in before["generators"].items() if k != "base"
    }
    base = loaded.generator("base")
    tilt, glow = base.directions["tilt"], base.directions["glow"]
    assert tilt.method == "interfacegan" and tilt.attribute == "tilt"
    assert tilt.layers == (0, info.num_ws)
    assert tilt.stats["accuracy"] >= 0.85
    assert float(tilt.vector @ v1) > 0.85
    assert float(glow.vector @ v2) > 0.85

    # an edit of strength 3 (std units) towards the other side flips the held-out labels
    w_test = gen.w_of_seeds(HELD_OUT_SEEDS).astype(np.float32)
    y_test = label(w_test, info.w_avg, v1)
    ws = editing.broadcast(w_test, info.num_ws)
    up = editing.apply_edits(ws, [editing.named_edit(base, "tilt", 3.0)])
    down = editing.apply_edits(ws, [editing.named_edit(base, "tilt", -3.0)])
    edited = np.where(y_test[:, None, None] == 1, down, up)[:, 0]
    flipped = label(edited, info.w_avg, v1) != y_test
    assert flipped.mean() >= 0.9, flipped.mean()

    # conditional editing across the trained boundaries: glow's score stays put
    e = editing.named_edit(base, "tilt", 3.0, condition_on=["glow"])
    moved = editing.apply_edits(ws, [e])[:, 0]
    np.testing.assert_allclose(moved @ glow.vector, w_test @ glow.vector, atol=1e-4)
    plain = editing.named_edit(base, "tilt", 3.0)
    assert abs(float(plain.vector @ glow.vector)) > abs(float(e.vector @ glow.vector))
    assert (label(moved, info.w_avg, v1) >= y_test).all()


def test_name_and_layers_replace_a_trained_direction(repo: Path, tmp_path: Path):
    gen = B.OnnxGenerator(repo)
    v = unit(np.random.default_rng(1), gen.info.w_dim)
    y = label(gen.w_of_seeds(TRAIN_SEEDS[:120]), gen.info.w_avg, v)
    rows = ["seed,score"] + [
        f"{s},{y[i] * 2.0 - 1 + 0.01 * i}" for i, s in enumerate(TRAIN_SEEDS[:120])
    ]
    (tmp_path / "scores.csv").write_text("\n".join(rows) + "\n")
    args = ["directions", "train", "--repository", repo, "--labels", tmp_path / "scores.csv"]
    out = stylegate(*args, "--name", "smile", "--layers", "2:5", "--fraction", "0.3")
    assert out.exit_code == 0, out.output
    smile = load_repository(repo).generator().directions["smile"]
    assert smile.layers == (2, 5) and smile.attribute == "score"
    assert smile.stats["train_samples"] + smile.stats["test_samples"] == 2 * 36
    # a SeFa direction is not overwritten by a trained one
    out = stylegate(*args, "--name", "sefa_0")
    assert out.exit_code == 2 and "sefa" in out.stderr


def linear_classifier(path: Path, *, attributes: str | None) -> Path:
    """A tiny ONNX attribute classifier: two fixed linear functions of the pixels."""
    import onnx
    import torch

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            pattern = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
            self.register_buffer("pattern", pattern)  # [A, 3, R, R]

        def forward(self, image: torch.Tensor) -> torch.Tensor:  # [B, 3, R, R] -> [B, A]
            return torch.einsum("bchw,achw->ba", image, self.pattern) / 16

    torch.onnx.export(
        Linear(),
        (torch.zeros(1, 3, 16, 16),),
        str(path),
        input_names=["image"],
        output_names=["scores"],
        dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}},
        dynamo=False,
    )
    if attributes is not None:
        model = onnx.load(str(path))
        entry = model.metadata_props.add()
        entry.key, entry.value = "attributes", attributes
        onnx.save(model, str(path))
    return path


def test_classifier_boundaries_raise_the_classifier_score(repo: Path, tmp_path: Path):
    clf = linear_classifier(tmp_path / "clf.onnx", attributes="bright,red")
    out = stylegate(
        "directions", "train", "--repository", repo, "--classifier", clf, "--samples", 600
    )
    assert out.exit_code == 0, out.output
    base = load_repository(repo).generator()
    assert {"bright", "red"} <= set(base.directions) and "smile" in base.directions
    gen = B.OnnxGenerator(repo)
    session = ort.InferenceSession(str(clf), providers=["CPUExecutionProvider"])
    w = gen.w_of_seeds(HELD_OUT_SEEDS)
    before = session.run(None, {"image": gen.synthesis(w)})[0]
    for j, name in enumerate(("bright", "red")):
        d = base.directions[name]
        assert d.stats["accuracy"] >= 0.8
        after = session.run(None, {"image": gen.synthesis(w + 3 * d.std * d.vector)})[0]
        assert (after[:, j] > before[:, j]).mean() >= 0.9

    # names from --attributes when the model carries none; a count mismatch is refused
    bare = linear_classifier(tmp_path / "bare.onnx", attributes=None)
    args = ["directions", "train", "--repository", repo, "--classifier", bare, "--samples", 40]
    out = stylegate(*args)
    assert out.exit_code == 2 and "--attributes" in out.stderr
    out = stylegate(*args, "--attributes", "a,b,c")
    assert out.exit_code == 2 and "3 attribute names" in out.stderr
    out = stylegate(*args, "--attributes", "warm,cool")
    assert out.exit_code == 0, out.output
    assert {"warm", "cool"} <= set(load_repository(repo).generator().directions)


BAD_CSV = {
    "missing column": ("seed,smile\n1,1\n2\n", "line 3: missing column 'smile'"),
    "no source column": ("id,smile\n1,1\n", "line 1: missing column 'seed'"),
    "non-numeric": ("seed,smile\n1,1\n2,yes\n", "line 3, column 'smile': 'yes' is not a number"),
    "unknown latent": ("seed,smile\nnope.npy,1\n", "line 2: latent file"),
    "wrong shape": ("latent,smile\nbad.npy,1\n", "has shape [5]"),
    "one class": ("seed,smile\n1,1\n2,1\n3,1\n", "column 'smile': every sample has the value 1"),
    "bad seed": ("seed,smile\n1.5,1\n", "line 2, column 'seed': '1.5' is neither"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_labels_are_one_line_and_exit_2(repo: Path, tmp_path: Path, case: str):
    text, expected = BAD_CSV[case]
    np.save(tmp_path / "bad.npy", np.zeros(5, np.float32))
    csv = tmp_path / "labels.csv"
    csv.write_text(text)
    before = (repo / "stylegate.json").read_bytes()
    out = stylegate("directions", "train", "--repository", repo, "--labels", csv)
    assert out.exit_code == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert str(csv) in lines[0] and expected in lines[0], lines[0]
    assert (repo / "stylegate.json").read_bytes() == before


def test_usage_errors_exit_2(repo: Path, tmp_path: Path):
    csv = tmp_path / "l.csv"
    csv.write_text("seed,smile\n1,1\n")
    for args, expected in (
        ((), "exactly one of --labels"),
        (("--labels", csv, "--layers", "4:9"), "--layers 4:9"),
        (("--labels", csv, "--model", "nope"), "unknown model 'nope'"),
        (("--labels", tmp_path / "none.csv"), "none.csv: cannot read"),
    ):
        out = stylegate("directions", "train", "--repository", repo, *args)
        assert out.exit_code == 2, out.output
        assert len(out.stderr.strip().splitlines()) == 1 and expected in out.stderr, out.stderr


def test_directions_lists_by_default_and_a_reload_serves_trained_ones(repo: Path, tmp_path: Path):
    from tests.support.gateway_harness import running_gateway

    gen = B.OnnxGenerator(repo)
    v = unit(np.random.default_rng(2), gen.info.w_dim)
    y = label(gen.w_of_seeds(TRAIN_SEEDS[:100]), gen.info.w_avg, v)
    rows = ["seed,tilt"] + [f"{s},{y[i]}" for i, s in enumerate(TRAIN_SEEDS[:100])]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with running_gateway(load_repository(repo)) as gw:
        listed = stylegate("directions", "--server", gw.address)  # no subcommand: list
        assert listed.exit_code == 0, listed.output
        assert "smile" in listed.output and "tilt" not in listed.output
        out = stylegate(
            "directions", "train", "--repository", repo, "--labels", tmp_path / "labels.csv"
        )
        assert out.exit_code == 0, out.output
        reloaded = stylegate("reload", "--server", gw.address)  # the real client command
        assert reloaded.exit_code == 0 and reloaded.output.startswith("serving base"), reloaded
        listed = stylegate("directions", "list", "--server", gw.address)
        assert listed.exit_code == 0, listed.output
        line = next(ln for ln in listed.output.splitlines() if ln.startswith("tilt "))
        assert "interfacegan" in line and "attribute=tilt" in line and "accuracy" in line
        assert "smile" in listed.output


def test_training_imports_no_torch():
    import subprocess
    import sys

    code = (
        "import sys, stylegate.service.cli, stylegate.export.boundaries; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False"


def test_conditional_generators_need_a_class_column(tmp_path: Path):
    csv = tmp_path / "labels.csv"
    csv.write_text("seed,class,smile\n1,2,1\n2,0,0\n")
    plain = B.read_labels(csv)  # unconditional: "class" is just an attribute
    assert plain.attributes == ("class", "smile") and plain.classes is None
    labels = B.read_labels(csv, c_dim=3)
    assert labels.attributes == ("smile",) and labels.classes.tolist() == [2, 0]
    with pytest.raises(B.BoundaryError, match=r"line 2, column 'class': '2' is not a class"):
        B.read_labels(csv, c_dim=2)
    csv.write_text("seed,smile\n1,1\n")
    with pytest.raises(B.BoundaryError, match="line 1: missing column 'class'"):
        B.read_labels(csv, c_dim=2)
