"""service/backends/triton.py without a tritonserver: what it expects of each model, its
own gauges, and tensors the gateway built wrongly (the Triton runs are in
tests/test_triton_serving.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client import REGISTRY
from support.gateway_fakes import FakeNetworks

from stylegate.service.backends.triton import (
    BatchStatistics,
    TritonBackend,
    check_metadata,
    expected_models,
)
from stylegate.service.errors import GatewayError


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    return FakeNetworks(c_dim=3).write(tmp_path_factory.mktemp("conditional_repo"))


def _metadata(expected) -> dict:
    """Triton's model metadata (as_json) for a model that serves exactly the contract."""
    return {
        kind + "s": [
            {"name": n, "datatype": dtype, "shape": [-1, *shape]}
            for n, (dtype, shape) in getattr(expected, kind + "s").items()
        ]
        for kind in ("input", "output")
    }


def test_the_conditional_mapping_is_expected_with_c(conditional):
    expected = expected_models(conditional)["mapping"]
    assert expected.inputs == {"z": ("FP32", (8,)), "c": ("FP32", (3,))}
    metadata = _metadata(expected)
    assert check_metadata(expected, metadata) == []
    metadata["inputs"] = [t for t in metadata["inputs"] if t["name"] != "c"]
    assert check_metadata(expected, metadata) == [
        "input 'c' is missing (served: ['z']) (generator 'base')"
    ]


def test_batch_statistics_become_this_backends_gauges(conditional):
    backend = TritonBackend(conditional, "127.0.0.1:1")

    async def statistics(models=None):
        return {"mapping": BatchStatistics("mapping", 96, 12, {8: 12}, 0.1, 0.2, 12)}

    backend.batch_statistics = statistics
    asyncio.run(backend.refresh_metrics())
    sample = REGISTRY.get_sample_value
    assert sample("stylegate_triton_inference_count", {"model": "mapping"}) == 96
    assert sample("stylegate_triton_execution_count", {"model": "mapping"}) == 12
    assert sample("stylegate_triton_mean_batch_size", {"model": "mapping"}) == 8.0


def test_a_tensor_the_gateway_built_wrongly_is_a_gateway_error(conditional):
    backend = TritonBackend(conditional, "127.0.0.1:1")
    expected = expected_models(conditional)["synthesis"]
    with pytest.raises(GatewayError, match="input 'ws' has shape"):
        backend._prepare_inputs(
            expected,
            {"ws": np.zeros((1, 2), np.float32), "noise_gain": np.ones((1, 1), np.float32)},
        )
    with pytest.raises(GatewayError, match="missing input 'noise_gain'"):
        backend._prepare_inputs(expected, {"ws": np.zeros((1, 4, 8), np.float32)})
