"""service/editing.py: truncation, direction edits, conditional edits, style mixing and
interpolation."""

from __future__ import annotations

import numpy as np
import pytest
from support.gateway_fakes import NUM_WS, FakeNetworks, W

from stylegate.service import editing
from stylegate.service.errors import InvalidInput, NotFound


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    nets = FakeNetworks()
    repo = nets.write(tmp_path_factory.mktemp("fake_repo"))
    return nets, repo, repo.generator()


def test_truncation_pulls_towards_w_avg_only_below_cutoff():
    ws = np.random.RandomState(0).standard_normal((2, 6, 4)).astype(np.float32)
    w_avg = np.ones(4, np.float32)
    out = editing.truncate(ws, w_avg, psi=0.5, cutoff=3)
    np.testing.assert_allclose(out[:, :3], w_avg + 0.5 * (ws[:, :3] - w_avg), rtol=1e-6)
    np.testing.assert_array_equal(out[:, 3:], ws[:, 3:])
    assert editing.truncate(ws, w_avg, psi=1.0) is ws


def test_named_edit_moves_only_its_layers_by_strength_times_std(fake):
    _, _, gen = fake
    ws = np.zeros((1, NUM_WS, W), np.float32)
    e = editing.named_edit(gen, "smile", 3.0, layers=(1, 3))
    out = editing.apply_edits(ws, [e])
    d = gen.directions["smile"]
    np.testing.assert_allclose(out[0, 1:3], np.tile(3.0 * d.std * d.vector, (2, 1)), rtol=1e-6)
    assert not out[0, 0].any() and not out[0, 3:].any()
    assert not ws.any()  # input untouched


def test_conditional_edit_is_orthogonal_to_the_conditioned_boundaries(fake):
    _, _, gen = fake
    e = editing.named_edit(gen, "smile", 1.0, condition_on=["eyeglasses", "sefa_0"])
    for other in ("eyeglasses", "sefa_0"):
        assert abs(float(e.vector @ gen.directions[other].vector)) < 1e-5
    assert abs(np.linalg.norm(e.vector) - 1) < 1e-5
    with pytest.raises(InvalidInput) as err:
        editing.vector_edit(
            gen, gen.directions["eyeglasses"].vector * 2, 1.0, condition_on=["eyeglasses"]
        )
    assert err.value.field == "edits.condition_on"


def test_edit_errors_name_the_field(fake):
    _, _, gen = fake
    with pytest.raises(NotFound) as err:
        editing.named_edit(gen, "frown", 1.0, field="edits[2]")
    assert err.value.field == "edits[2].name"
    with pytest.raises(InvalidInput) as err:
        editing.named_edit(gen, "smile", 1.0, layers=(3, 2), field="edits[0]")
    assert err.value.field == "edits[0].layer_start"
    with pytest.raises(InvalidInput) as err:
        editing.vector_edit(gen, np.zeros(W + 1, np.float32), 1.0)
    assert err.value.field == "edits.vector"


def test_style_mix_and_interpolation_endpoints():
    rng = np.random.RandomState(1)
    a, b = rng.standard_normal((2, 6, 5)).astype(np.float32)
    mixed = editing.style_mix(a, b, start=0, stop=2)
    np.testing.assert_array_equal(mixed[:2], b[:2])
    np.testing.assert_array_equal(mixed[2:], a[2:])
    for mode in ("lerp", "slerp"):
        path = editing.interpolate(a, b, 7, mode=mode, center=np.full(5, 0.3, np.float32))
        assert path.shape == (7, 6, 5)
        np.testing.assert_allclose(path[0], a, atol=1e-5)
        np.testing.assert_allclose(path[-1], b, atol=1e-5)
    # slerp keeps the distance to the pivot between the end points' (norms lerp)
    c = np.zeros(5, np.float32)
    mid = editing.interpolate(a, b, 3, mode="slerp", center=c)[1]
    expected = (np.linalg.norm(a, axis=1) + np.linalg.norm(b, axis=1)) / 2
    np.testing.assert_allclose(np.linalg.norm(mid, axis=1), expected, rtol=1e-5)
