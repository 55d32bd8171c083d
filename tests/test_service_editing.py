"""service/editing.py: truncation, direction edits, conditional edits, style mixing and
interpolation."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
from support.gateway_fakes import NUM_WS, FakeBackend, FakeNetworks, W
from support.gateway_harness import running_gateway

from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.service import editing
from stylegate.service.client import tensor_to_array
from stylegate.service.errors import BackendUnavailable, InvalidInput, NotFound
from stylegate.service.metadata import load_repository


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


# -- default conditioning (stylegate.json "condition_on") ------------------------------


@pytest.fixture(scope="module")
def conditioned(tmp_path_factory):
    """The fake repository with smile conditioned on eyeglasses by default, as the export
    writes it (with its measurement)."""
    nets = FakeNetworks()
    meta = nets.metadata()
    smile = meta["generators"]["base"]["directions"]["smile"]
    smile["condition_on"] = ["eyeglasses"]
    smile["measured"] = {"strength": 3.0, "faces": 96, "flip_rate": 0.9, "others": {"x": 0.1}}
    root = tmp_path_factory.mktemp("conditioned_repo")
    (root / "stylegate.json").write_text(json.dumps(meta))
    return nets, load_repository(root)


def test_a_named_edit_applies_the_default_condition_on_unless_given_or_dropped(conditioned):
    _, repo = conditioned
    gen = repo.generator()
    smile, glasses = gen.directions["smile"], gen.directions["eyeglasses"]
    assert smile.condition_on == ("eyeglasses",) and glasses.condition_on == ()
    default = editing.named_edit(gen, "smile", 1.0)
    explicit = editing.named_edit(gen, "smile", 1.0, condition_on=["eyeglasses"])
    np.testing.assert_allclose(default.vector, explicit.vector, atol=1e-7)
    assert abs(float(default.vector @ glasses.vector)) < 1e-5
    plain = editing.named_edit(gen, "smile", 1.0, condition_on=())
    np.testing.assert_allclose(plain.vector, smile.vector, atol=1e-7)
    other = editing.named_edit(gen, "smile", 1.0, condition_on=["sefa_0"])  # replaces it
    assert abs(float(other.vector @ glasses.vector)) > 1e-3
    assert default.amount == plain.amount == smile.std  # strength * std either way
    # the measurement's figures are stats; raw vectors have no default conditioning
    assert smile.stats["measured_flip_rate"] == 0.9 and "measured_others" not in smile.stats
    raw = editing.vector_edit(gen, smile.vector, 1.0)
    np.testing.assert_allclose(raw.vector, smile.vector, atol=1e-7)


def test_older_files_load_without_the_new_fields_and_bad_defaults_are_refused(
    conditioned, tmp_path
):
    nets, _ = conditioned
    gen = FakeNetworks().write(tmp_path / "old").generator()  # no condition_on, no measured
    assert all(d.condition_on == () for d in gen.directions.values())
    assert gen.directions["sefa_0"].layers == (0, 2)
    for bad in (["frown"], ["smile"]):  # unknown, itself
        meta = nets.metadata()
        meta["generators"]["base"]["directions"]["smile"]["condition_on"] = bad
        root = tmp_path / bad[0]
        root.mkdir()
        (root / "stylegate.json").write_text(json.dumps(meta))
        with pytest.raises(BackendUnavailable, match="condition_on"):
            load_repository(root)


def test_gateway_edit_uses_the_default_conditioning_and_unconditioned_opts_out(conditioned):
    nets, repo = conditioned
    gen = repo.generator()
    smile, glasses = gen.directions["smile"], gen.directions["eyeglasses"]
    w = np.random.RandomState(3).standard_normal(W).astype(np.float32)

    def moved(c, **options) -> np.ndarray:
        op = pb.EditOp(name="smile", strength=2.0, **options)
        ws = tensor_to_array(c.edit(w, [op], return_latent=True).ws)
        return (ws - w)[0] / (2.0 * smile.std)  # the unit vector the edit moved along

    with running_gateway(repo, FakeBackend(nets)) as gw, gw.client() as c:
        default = moved(c)
        assert abs(float(default @ glasses.vector)) < 1e-4  # conditioned
        np.testing.assert_allclose(default, moved(c, condition_on=["eyeglasses"]), atol=1e-5)
        np.testing.assert_allclose(moved(c, unconditioned=True), smile.vector, atol=1e-5)
        with pytest.raises(grpc.RpcError) as err:
            moved(c, unconditioned=True, condition_on=["eyeglasses"])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith("edits[0].unconditioned:")
        listed = {d.name: d for d in c.list_directions()}
        assert list(listed["smile"].condition_on) == ["eyeglasses"]
        assert listed["smile"].stats["measured_flip_rate"] == pytest.approx(0.9)
        assert not listed["eyeglasses"].condition_on
