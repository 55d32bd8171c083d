"""service/requests.py: protobuf requests -> validated plans, errors naming the field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.gateway_fakes import FakeNetworks

from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.service import requests
from stylegate.service.errors import FailedPrecondition, InvalidInput
from stylegate.service.metadata import load_repository
from stylegate.service.plans import InvertPlan
from stylegate.service.settings import Settings
from stylegate.service.signatures import LOSS_TERMS

SETTINGS = Settings.load(env={}, max_steps=200)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return FakeNetworks().write(tmp_path_factory.mktemp("fake_repo"))


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    return FakeNetworks(c_dim=3).write(tmp_path_factory.mktemp("conditional_repo"))


def _image(gen) -> pb.Image:
    data = np.zeros((3, gen.resolution, gen.resolution), "<f4")
    return pb.Image(tensor=pb.Tensor(shape=list(data.shape), data=data.tobytes()))


def test_invert_options_resolve_once_with_the_method_defaults(repo):
    gen = repo.generator()
    req = pb.InvertRequest(
        image=_image(gen),
        method=pb.INVERSION_METHOD_OPTIMIZE,
        loss_weights=pb.LossWeights(pixel=2.0),
        steps=7,
        preview_every=3,
        progress_every=2,
    )
    plan = requests.parse_invert(req, repo, SETTINGS)
    opts = plan.options
    assert (opts.method, opts.steps, opts.space, opts.learning_rate) == ("optimize", 7, "w", 0.1)
    assert dict(opts.loss_weights) == {"pixel": 2.0, "feature": 0.5, "domain": 0.0}
    assert list(opts.loss_weights) == list(LOSS_TERMS)
    assert [s for s in range(1, 8) if plan.reports(s)] == [2, 3, 4, 6]
    assert plan.previews(6) and not plan.previews(4)


def test_the_optimizer_is_read_and_an_unknown_one_named(repo):
    gen = repo.generator()
    plan = requests.parse_invert(pb.InvertRequest(image=_image(gen)), repo, SETTINGS)
    assert (plan.options.optimizer, plan.options.steps) == ("lbfgs", 45)
    req = pb.InvertRequest(image=_image(gen), optimizer=pb.OPTIMIZER_ADAM)
    assert requests.parse_invert(req, repo, SETTINGS).options.optimizer == "adam"
    with pytest.raises(InvalidInput) as err:
        requests.parse_invert(pb.InvertRequest(image=_image(gen), optimizer=7), repo, SETTINGS)
    assert err.value.field == "optimizer"


def test_nested_fields_carry_their_path(repo):
    gen = repo.generator()
    inner = pb.InvertRequest(image=_image(gen), steps=1000)
    with pytest.raises(InvalidInput) as err:
        requests.parse_edit(pb.EditRequest(invert=inner), repo, SETTINGS)
    assert err.value.field == "invert.steps"
    inner = pb.InvertRequest(image=_image(gen), loss_weights=pb.LossWeights(feature=-1))
    with pytest.raises(InvalidInput) as err:
        requests.parse_edit(pb.EditRequest(invert=inner), repo, SETTINGS)
    assert err.value.field == "invert.loss_weights.feature"
    plan = requests.parse_edit(
        pb.EditRequest(invert=pb.InvertRequest(image=_image(gen))), repo, SETTINGS
    )
    assert isinstance(plan.source, InvertPlan) and plan.source.options.method == "in_domain"
    with pytest.raises(InvalidInput) as err:
        requests.parse_edit(pb.EditRequest(), repo, SETTINGS)
    assert err.value.field == "source"


def test_an_unavailable_method_is_a_failed_precondition_naming_the_fix(tmp_path):
    meta = FakeNetworks().metadata()
    del meta["generators"]["base"]["models"]["encoder"]
    (tmp_path / "stylegate.json").write_text(json.dumps(meta))
    repo = load_repository(tmp_path)
    gen = repo.generator()
    req = pb.InvertRequest(image=_image(gen))  # in_domain by default
    with pytest.raises(FailedPrecondition) as err:
        requests.parse_invert(req, repo, SETTINGS)
    assert err.value.field == "method"
    assert "stylegate train encoder --model base" in str(err.value)
    req.method = pb.INVERSION_METHOD_OPTIMIZE
    assert requests.parse_invert(req, repo, SETTINGS).options.method == "optimize"


def test_class_labels_are_required_for_conditional_generators_only(repo, conditional):
    with pytest.raises(InvalidInput) as err:
        requests.parse_generate(pb.GenerateRequest(seeds=[1], class_label=0), repo, SETTINGS)
    assert err.value.field == "class_label"
    with pytest.raises(InvalidInput) as err:
        requests.parse_generate(pb.GenerateRequest(seeds=[1]), conditional, SETTINGS)
    assert err.value.field == "class_label" and "[0, 3)" in str(err.value)
    with pytest.raises(InvalidInput) as err:
        requests.parse_generate(pb.GenerateRequest(seeds=[1], class_label=3), conditional, SETTINGS)
    assert err.value.field == "class_label"
    with pytest.raises(InvalidInput) as err:
        requests.parse_batch_generate(
            pb.BatchGenerateRequest(range=pb.SeedRange(start=0, stop=4), class_label=-1),
            conditional,
            SETTINGS,
        )
    assert err.value.field == "class_label"
    plan = requests.parse_generate(
        pb.GenerateRequest(seeds=[1], class_label=2), conditional, SETTINGS
    )
    assert plan.sampling.class_label == 2
    with pytest.raises(InvalidInput) as err:
        requests.parse_style_mix(
            pb.StyleMixRequest(a=pb.LatentSource(seed=1), b=pb.LatentSource(seed=2)),
            conditional,
            SETTINGS,
        )
    assert err.value.field == "a.class_label"


def test_resume_tokens_round_trip_and_are_checked(repo):
    seeds = pb.SeedList(seeds=[5, 6, 7, 8])
    token = requests.resume_token(2, 6)
    plan = requests.parse_batch_generate(
        pb.BatchGenerateRequest(list=seeds, resume_token=token), repo, SETTINGS
    )
    assert plan.first == 2 and list(plan.seeds) == [5, 6, 7, 8]
    with pytest.raises(InvalidInput) as err:
        requests.parse_batch_generate(
            pb.BatchGenerateRequest(list=seeds, resume_token=requests.resume_token(2, 7)),
            repo,
            SETTINGS,
        )
    assert err.value.field == "resume_token"


def test_style_mix_layers_default_and_are_checked(repo):
    gen = repo.generator()
    a, b = pb.LatentSource(seed=1), pb.LatentSource(seed=2)
    plan = requests.parse_style_mix(pb.StyleMixRequest(a=a, b=b), repo, SETTINGS)
    assert plan.layers == (0, gen.num_ws // 2)
    with pytest.raises(InvalidInput) as err:
        requests.parse_style_mix(
            pb.StyleMixRequest(a=a, b=b, layer_start=3, layer_stop=1), repo, SETTINGS
        )
    assert err.value.field == "layer_start"


# -- hostile numbers and names (issue 11, findings 5-7) ---------------------------------------


def _t(values, shape=None) -> pb.Tensor:
    a = np.asarray(values, "<f4")
    return pb.Tensor(shape=list(a.shape if shape is None else shape), data=a.tobytes())


def _field_of(parse, req, repo) -> str:
    with pytest.raises(InvalidInput) as err:
        parse(req, repo, SETTINGS)
    assert str(err.value).startswith(f"{err.value.field}: ")
    return err.value.field


def test_tensor_shapes_whose_product_overflows_are_invalid(repo):
    huge = pb.Tensor(shape=[2**32, 2**32], data=b"")  # int64 product wraps to 0
    with pytest.raises(InvalidInput) as err:
        requests.tensor(huge, field="z[0]")
    assert err.value.field == "z[0]" and "needs 73786976294838206464" in str(err.value)
    req = pb.GenerateRequest(z=[huge])
    assert _field_of(requests.parse_generate, req, repo) == "z[0]"


def test_seed_ranges_past_the_seed_space_are_invalid_before_counting(repo):
    def batch(start, stop):
        return pb.BatchGenerateRequest(range=pb.SeedRange(start=start, stop=stop))

    parse = requests.parse_batch_generate
    assert _field_of(parse, batch(-1, 2**63 - 1), repo) == "range.start"
    assert _field_of(parse, batch(0, 2**63 - 1), repo) == "range.stop"
    assert _field_of(parse, batch(5, 5), repo) == "range.stop"
    assert len(parse(batch(2**32 - 2, 2**32), repo, SETTINGS).seeds) == 2


def test_absurd_latents_z_strengths_and_weights_are_invalid_naming_the_field(repo):
    gen = repo.generator()
    ws = np.zeros((gen.num_ws, gen.w_dim), np.float32)
    for value in (3e38, np.inf, 1001.0):
        bad = ws.copy()
        bad[1, 2] = value
        req = pb.StyleMixRequest(a=pb.LatentSource(ws=_t(bad)), b=pb.LatentSource(seed=1))
        assert _field_of(requests.parse_style_mix, req, repo) == "a.ws"
    z = np.zeros(gen.z_dim, np.float32)
    z[0] = 1e3
    assert _field_of(requests.parse_generate, pb.GenerateRequest(z=[_t(z)]), repo) == "z[0]"
    name = min(gen.directions)
    latent = pb.LatentSource(seed=1)
    for strength in (1e30, -101.0):
        req = pb.EditRequest(latent=latent, edits=[pb.EditOp(name=name, strength=strength)])
        assert _field_of(requests.parse_edit, req, repo) == "edits[0].strength"
    inner = pb.InvertRequest(image=_image(gen), loss_weights=pb.LossWeights(pixel=1e30))
    req = pb.EditRequest(invert=inner)
    assert _field_of(requests.parse_edit, req, repo) == "invert.loss_weights.pixel"
    raw = np.full((3, gen.resolution, gen.resolution), 1e10, "<f4")
    req = pb.InvertRequest(image=pb.Image(tensor=_t(raw)), method=pb.INVERSION_METHOD_OPTIMIZE)
    assert _field_of(requests.parse_invert, req, repo) == "image.tensor"


def test_edits_that_carry_the_latent_past_the_bound_are_the_requests_fault(repo):
    from stylegate.service import editing

    gen = repo.generator()
    vec = np.zeros(gen.w_dim, np.float32)
    vec[0] = 1
    edit = editing.vector_edit(gen, vec, 100.0)
    ws = np.zeros((1, gen.num_ws, gen.w_dim), np.float32)
    assert editing.apply_edits(ws, [edit] * 10)[0, 0, 0] == 1000
    with pytest.raises(InvalidInput) as err:
        editing.apply_edits(ws, [edit] * 11)
    assert err.value.field == "edits"
    far = ws + 5000  # a source beyond the bound (an inversion's): edits may pull it back
    back = editing.vector_edit(gen, vec, -100.0)
    assert editing.apply_edits(far, [back])[0, 0, 0] == 4900
    np.testing.assert_array_equal(editing.apply_edits(far, []), far)


def test_long_names_are_echoed_clipped_and_stay_not_found(repo):
    from stylegate.service.errors import NotFound

    name = "m" * 1_000_000
    with pytest.raises(NotFound) as err:
        requests.parse_generate(pb.GenerateRequest(model=name, seeds=[1]), repo, SETTINGS)
    message = str(err.value)
    assert len(message) < 400 and "(1000000 characters)" in message and "served: " in message
    op = pb.EditOp(name="d" * 100_000, strength=1)
    with pytest.raises(NotFound) as err:
        requests.parse_edit(
            pb.EditRequest(latent=pb.LatentSource(seed=1), edits=[op]), repo, SETTINGS
        )
    assert err.value.field == "edits[0].name" and len(str(err.value)) < 400


def test_encoded_images_are_checked_from_their_headers_before_any_is_decoded(repo, monkeypatch):
    from support.hostile_images import encoded, gif_bomb

    from stylegate.service import images

    decoded = []
    load = images.load
    monkeypatch.setattr(images, "load", lambda img, **kw: decoded.append(kw) or load(img, **kw))
    req = pb.InvertRequest(
        image=pb.Image(data=encoded(32)),
        mask=pb.Image(data=gif_bomb(4096)),
        method=pb.INVERSION_METHOD_OPTIMIZE,
    )
    assert _field_of(requests.parse_invert, req, repo) == "mask.data"
    assert decoded == []  # the valid image was not decoded either
    req.mask.data = encoded(32, mode="L")
    plan = requests.parse_invert(req, repo, SETTINGS)
    assert plan.options.mask is not None and plan.target.shape == (3, 8, 8)
    assert [kw["field"] for kw in decoded] == ["mask.data", "image.data"]
    assert requests.has_encoded_image(req)
    assert requests.has_encoded_image(pb.EditRequest(invert=req))
    assert not requests.has_encoded_image(pb.EditRequest(latent=pb.LatentSource(seed=1)))


def test_batch_chunk_size_is_capped_by_max_batch_and_bad_ones_name_the_field(repo):
    """The contract says chunk_size is capped by the server's max_batch (the default of 16
    too, on a server with smaller batches); zero means the default, negative is a mistake."""
    settings = Settings(max_batch=4)

    def chunk(size: int) -> int:
        req = pb.BatchGenerateRequest(range=pb.SeedRange(start=0, stop=10), chunk_size=size)
        return requests.parse_batch_generate(req, repo, settings).chunk

    assert chunk(3) == 3
    assert chunk(100) == 4
    assert chunk(0) == 4  # the default 16, capped
    assert (
        requests.parse_batch_generate(
            pb.BatchGenerateRequest(range=pb.SeedRange(start=0, stop=10)), repo, Settings()
        ).chunk
        == requests.DEFAULT_CHUNK
    )
    with pytest.raises(InvalidInput) as err:
        chunk(-1)
    assert err.value.field == "chunk_size"
