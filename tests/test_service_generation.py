"""service/generation.py: seeds, mapping and latent resolution on the numpy fake networks."""

from __future__ import annotations

import numpy as np
import pytest
from support.gateway_fakes import NUM_WS, FakeNetworks, W

from stylegate.service import generation, requests
from stylegate.service.errors import InvalidInput


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    nets = FakeNetworks()
    repo = nets.write(tmp_path_factory.mktemp("fake_repo"))
    return nets, repo, repo.generator()


def test_seeds_resolve_like_gan_generate(fake):
    _, _, gen = fake
    z = generation.z_from_seed(7, 8)
    np.testing.assert_array_equal(z, np.random.RandomState(7).standard_normal(8).astype(np.float32))
    from stylegate.gan import generate as gan_generate
    from stylegate.service import signatures

    assert gan_generate.z_from_seed is signatures.z_from_seed  # one rule, written once
    with pytest.raises(InvalidInput) as err:
        generation.z_from_seed(-1, 8, field="seeds[3]")
    assert err.value.field == "seeds[3]"
    with pytest.raises(InvalidInput) as err:
        requests.check_latent(np.full((NUM_WS, W), np.nan, np.float32), gen, field="latent.ws")
    assert "NaN" in str(err.value) and err.value.field == "latent.ws"
