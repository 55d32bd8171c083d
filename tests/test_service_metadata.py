"""service/metadata.py: the typed reader of stylegate.json."""

from __future__ import annotations

import json

import pytest
from support.gateway_fakes import FakeNetworks

from stylegate.service.errors import BackendUnavailable, NotFound
from stylegate.service.metadata import load_repository


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    nets = FakeNetworks()
    repo = nets.write(tmp_path_factory.mktemp("fake_repo"))
    return nets, repo, repo.generator()


def test_repository_metadata_validation(tmp_path, fake):
    nets, _, _ = fake
    with pytest.raises(BackendUnavailable, match="stylegate export"):
        load_repository(tmp_path)
    meta = nets.metadata()
    meta["generators"]["base"]["w_avg"] = [0.0]
    (tmp_path / "stylegate.json").write_text(json.dumps(meta))
    with pytest.raises(BackendUnavailable, match="w_avg"):
        load_repository(tmp_path)
    repo = nets.write(tmp_path)
    assert repo.generator().can_invert and not repo.generator("blend").can_invert
    with pytest.raises(NotFound) as err:
        repo.generator("nope")
    assert err.value.field == "model"
