"""The other program's faces (gan/otherfaces.py): deterministic, labelled by what is drawn,
unlike our renderer's, and held out of every training module."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegate.gan import checkpoint as ckpt
from stylegate.gan import data
from stylegate.gan import otherfaces as O

ROOT = Path(__file__).resolve().parents[1]
SEEDS = range(40)


def _faces() -> list[O.OtherFace]:
    return [O.sample(np.random.default_rng(s)) for s in SEEDS]


def _changed(a: O.OtherFace, b: O.OtherFace) -> np.ndarray:
    """[64, 64] bool: where the two faces' pictures differ visibly."""
    d = np.abs(O.render(a).astype(np.int16) - O.render(b).astype(np.int16)).max(axis=2)
    return d > 12


def test_render_batch_shapes_and_determinism() -> None:
    seeds = O.heldout_seeds(4)
    images, labels, yaw = O.render_batch(seeds)
    assert images.shape == (4, 64, 64, 3) and images.dtype == np.uint8
    assert labels.shape == (4, len(data.ATTRIBUTES)) and labels.dtype == np.float32
    assert yaw.shape == (4,) and yaw.dtype == np.float32 and np.all(np.abs(yaw) <= 1)
    again, labels2, yaw2 = O.render_batch(seeds)
    assert np.array_equal(images, again) and np.array_equal(labels, labels2)
    assert np.array_equal(yaw, yaw2)
    one, _, _ = O.render_batch(seeds[2:3])  # a face depends on its seed only
    assert np.array_equal(one[0], images[2])
    assert not np.array_equal(images[0], images[1])
    assert O.render_batch([0], size=32)[0].shape == (1, 32, 32, 3)


@pytest.mark.parametrize(
    ("attribute", "band"),
    [
        ("eyeglasses", "eyes"),
        ("eyes_open", "eyes"),
        ("beard", "below_eyes"),
        ("smile", "mouth"),
    ],
)
def test_toggling_an_attribute_changes_its_part_only(attribute: str, band: str) -> None:
    for f in _faces()[:12]:
        on = dataclasses.replace(f, **{attribute: True})
        off = dataclasses.replace(f, **{attribute: False})
        rows = np.nonzero(_changed(on, off).any(axis=1))[0]
        assert len(rows) >= 2, (attribute, f)
        eye = f.cy - f.half_h * f.eye_y
        mouth = f.cy + f.half_h * f.mouth_y
        if band == "eyes":
            assert rows.min() >= eye - 7 and rows.max() <= eye + 7, (attribute, rows, eye)
        elif band == "mouth":
            assert rows.min() >= mouth - 6 and rows.max() <= mouth + 6, (attribute, rows, mouth)
        else:
            assert rows.min() >= eye, (attribute, rows, eye)


def test_beard_is_a_visible_hair_coloured_area() -> None:
    for f in _faces()[:12]:
        on = dataclasses.replace(f, beard=True)
        mask = _changed(on, dataclasses.replace(f, beard=False))
        assert mask.sum() >= 25, f
        colour = np.median(O.render(on)[mask].astype(np.float32), axis=0)
        assert np.abs(colour - np.array(f.hair) * 0.88).max() < 40, (colour, f.hair)


def test_long_hair_falls_beside_the_face() -> None:
    for f in _faces()[:12]:
        mask = _changed(
            dataclasses.replace(f, long_hair=True), dataclasses.replace(f, long_hair=False)
        )
        yy, xx = np.nonzero(mask)
        beside = (yy > f.cy + f.half_h * 0.3) & (np.abs(xx - f.cx) > f.half_w * 1.05)
        assert beside.sum() >= 8, f


def test_colour_labels_follow_the_palettes() -> None:
    def near(c, palette, tol):
        return any(max(abs(a - b) for a, b in zip(c, p)) <= tol for p in palette)

    faces = [O.sample(np.random.default_rng(s)) for s in range(200)]
    assert 20 < sum(f.blond for f in faces) < 100 and 40 < sum(f.dark_skin for f in faces) < 160
    for f in faces:
        assert f.blond == near(f.hair, O.BLOND, 8) and f.blond != near(f.hair, O.OTHER_HAIR, 8)
        assert f.dark_skin == near(f.skin, O.SKIN[O.DARK_SKIN_FROM :], 6)
        assert f.dark_skin != near(f.skin, O.SKIN[: O.DARK_SKIN_FROM], 6)


def test_another_artist_than_our_renderer() -> None:
    others, other_labels, _ = O.render_batch(O.heldout_seeds(32))
    renders, render_labels, _ = data.render_batch(data.heldout_seeds(32))
    # nearest-neighbour pixel distance to a bank of renders: the other set lies farther away
    bank = data.render_batch(np.arange(5000, 5064))[0].astype(np.float32)

    def nearest(x: np.ndarray) -> float:
        d = np.abs(x[:16, None].astype(np.float32) - bank[None]).mean(axis=(2, 3, 4))
        return float(d.min(axis=1).mean())

    assert nearest(others) > nearest(renders) + 4
    same_seeds = data.render_batch(O.heldout_seeds(16))[0].astype(np.float32)
    assert np.abs(others[:16].astype(np.float32) - same_seeds).mean() > 40

    # the classifier trained on renders reads the clear attributes, but is worse overall
    C = ckpt.load_classifier(ROOT / "checkpoints" / "classifier.pt").eval()

    def accuracy(images, labels):
        with torch.no_grad():
            logits = C(torch.from_numpy(data.to_tensor_range(images)))[:, : C.num_binary]
        return ((logits > 0).numpy() == (labels > 0.5)).mean(axis=0)

    other_acc = accuracy(others, other_labels)
    render_acc = accuracy(renders, render_labels)
    for a in ("blond_hair", "dark_skin"):
        assert other_acc[data.ATTRIBUTES.index(a)] >= 0.8, (a, other_acc)
    assert other_acc.mean() < min(render_acc.mean(), 0.95), (other_acc, render_acc)


def test_no_training_module_imports_the_other_program() -> None:
    sources = sorted((ROOT / "gan" / "train").rglob("*.py"))
    assert sources
    for path in sources:
        text = path.read_text()
        assert "otherfaces" not in text, path
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(a.name for a in node.names)]
            else:
                continue
            assert not any("otherfaces" in n for n in names), (path, names)
