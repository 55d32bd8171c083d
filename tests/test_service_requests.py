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
