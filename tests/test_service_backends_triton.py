"""service/backends/triton.py without a tritonserver: what it expects of each model, its
own gauges, tensors the gateway built wrongly, how concurrent calls become one request, and
how a failed channel is handled (a scripted client stands in for tritonclient's). The
Triton runs, a kill -9 of it among them, are in tests/test_triton_serving.py."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client import REGISTRY
from support.gateway_fakes import FakeNetworks
from tritonclient.utils import InferenceServerException

from stylegate.service.backends.base import Priority
from stylegate.service.backends.triton import (
    BatchStatistics,
    TritonBackend,
    check_metadata,
    expected_models,
)
from stylegate.service.errors import BackendUnavailable, GatewayError


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


# ---------------------------------------------------------------------------------------
# a failed channel: retired, never closed under the calls still on it


class ScriptedClient:
    """tritonclient's aio client as the backend uses it. ``infer`` waits until the test
    settles it; ``close`` cancels the calls still waiting, as a grpc.aio channel does."""

    def __init__(self, repository, number: int):
        self.number = number
        self.expected = expected_models(repository)
        self.pending: list[asyncio.Future] = []
        self.requests: list[tuple[str, dict, dict]] = []  # model, {input: array}, options
        self.closed_with = None  # calls pending when closed

    async def is_server_ready(self, client_timeout=None):
        return True

    async def is_model_ready(self, model, client_timeout=None):
        return True

    async def get_model_metadata(self, model, as_json=False, client_timeout=None):
        return _metadata(self.expected[model])

    async def get_model_config(self, model, as_json=False, client_timeout=None):
        return {"config": {"max_batch_size": 8}}

    async def infer(self, model, inputs, **kwargs):
        arrays = {
            i.name(): np.frombuffer(i._get_content(), np.float32).reshape(i.shape()) for i in inputs
        }
        self.requests.append((model, arrays, kwargs))
        future = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        try:
            return await future
        finally:
            self.pending.remove(future)

    async def close(self):
        self.closed_with = len(self.pending)
        for future in list(self.pending):
            future.cancel()  # what grpc.aio does to the calls of a closed channel


class Outputs:
    def __init__(self, arrays):
        self.arrays = arrays

    def as_numpy(self, name):
        return self.arrays[name]


def _scripted_backend(repository, **kwargs):
    """A backend on scripted clients; by default one request per call (``max_batch=1``),
    all out at once, so each call can be settled on its own."""
    kwargs = {"max_batch": 1, "max_in_flight": 8, **kwargs}
    backend = TritonBackend(repository, "127.0.0.1:1", backoff_s=0.001, **kwargs)
    clients: list[ScriptedClient] = []

    def open_client():
        clients.append(ScriptedClient(repository, len(clients)))
        return clients[-1]

    backend._open_client = open_client
    return backend, clients


async def _until(predicate, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


def _mapping_call(backend, seed):
    inputs = {
        "z": np.full((1, 8), seed, np.float32),
        "c": np.zeros((1, 3), np.float32),
    }
    return backend.infer("mapping", inputs, timeout=30)


def test_concurrent_calls_go_to_triton_as_one_request(conditional):
    """The micro-batcher before Triton: concurrent calls are one request, at the most
    urgent priority among them and the latest deadline, and each caller gets its rows."""
    zs = [np.full((1 + i % 2, 8), i, np.float32) for i in range(5)]  # 7 rows; Triton takes 8

    async def main():
        backend, clients = _scripted_backend(conditional, max_batch=32)
        await backend.load()
        client = clients[0]
        calls = [
            asyncio.create_task(
                backend.infer(
                    "mapping",
                    {"z": z, "c": np.zeros((len(z), 3))},
                    priority=Priority.INTERACTIVE if i == 3 else Priority.BULK,
                    timeout=5.0 + i,
                )
            )
            for i, z in enumerate(zs)
        ]
        await _until(lambda: client.pending)
        await asyncio.sleep(0.05)  # nothing else is sent while the first request is out
        assert len(client.requests) == 1
        model, arrays, options = client.requests[0]
        assert model == "mapping" and arrays["c"].shape == (7, 3)
        assert sorted(arrays["z"][:, 0]) == sorted(np.concatenate(zs)[:, 0])
        assert options["priority"] == int(Priority.INTERACTIVE)
        # Triton may drop the request past the latest caller's deadline (9 s from now)
        assert 8_500_000 < options["timeout"] <= 9_000_000
        client.pending[0].set_result(Outputs({"w": arrays["z"] * 2}))
        results = await asyncio.gather(*calls)
        await backend.close()
        return results

    for z, result in zip(zs, asyncio.run(main())):
        np.testing.assert_array_equal(result["w"], z * 2)


def test_one_failed_call_does_not_cancel_the_others_on_its_channel(conditional):
    unavailable = InferenceServerException("connection refused", status="StatusCode.UNAVAILABLE")
    ws = {"w": np.ones((1, 8), np.float32)}

    async def main():
        backend, clients = _scripted_backend(conditional)
        await backend.load()
        calls = [asyncio.create_task(_mapping_call(backend, i)) for i in range(3)]
        first = clients[0]
        await _until(lambda: len(first.pending) == 3)
        first.pending[0].set_exception(unavailable)  # Triton went away under one call
        # it is retried on a fresh channel; the old one stays open for the two others
        await _until(lambda: len(clients) == 2 and len(clients[1].pending) == 1)
        assert first.closed_with is None and not any(c.done() for c in calls)
        assert not backend.ready  # unavailable until a call goes through again
        for future in [*first.pending, *clients[1].pending]:
            future.set_result(Outputs(ws))
        results = await asyncio.gather(*calls)
        assert first.closed_with == 0  # closed once its last call ended
        assert clients[1].closed_with is None
        assert backend.ready
        await backend.close()
        assert clients[1].closed_with == 0
        return results

    for result in asyncio.run(main()):
        np.testing.assert_array_equal(result["w"], ws["w"])


def test_a_cancellation_the_caller_did_not_ask_for_is_unavailable(conditional):
    async def main():
        backend, clients = _scripted_backend(conditional, retries=0)
        await backend.load()
        mine = asyncio.create_task(_mapping_call(backend, 0))
        theirs = asyncio.create_task(_mapping_call(backend, 1))
        await _until(lambda: len(clients[0].pending) == 2)
        # the channel cancels one call (as closing it would): the backend's failure
        clients[0].pending[1].cancel()
        with pytest.raises(BackendUnavailable, match="cancelled by the channel"):
            await theirs
        # the client going away cancels the caller's task: that stays a cancellation
        mine.cancel()
        with pytest.raises(asyncio.CancelledError):
            await mine
        assert mine.cancelled()
        # and its request, which nobody waits for any more, is cancelled too
        await _until(lambda: not clients[0].pending)
        # a CANCELLED status from Triton is its failure too, never the client's
        call = asyncio.create_task(_mapping_call(backend, 2))
        await _until(lambda: len(clients) == 2 and clients[1].pending)
        clients[-1].pending[0].set_exception(
            InferenceServerException("server shutting down", status="StatusCode.CANCELLED")
        )
        with pytest.raises(BackendUnavailable, match="cancelled by Triton"):
            await call
        await backend.close()

    asyncio.run(main())


def test_closing_the_backend_fails_its_calls_with_unavailable(conditional):
    async def main():
        backend, clients = _scripted_backend(conditional)
        await backend.load()
        calls = [asyncio.create_task(_mapping_call(backend, i)) for i in range(2)]
        await _until(lambda: len(clients[0].pending) == 2)
        await backend.close()
        assert clients[0].closed_with == 2
        for call in calls:
            with pytest.raises(BackendUnavailable, match="backend closed"):
                await call
        with pytest.raises(BackendUnavailable, match="not loaded"):
            await _mapping_call(backend, 3)

    asyncio.run(main())
