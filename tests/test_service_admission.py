"""Admission control (service/admission.py, the ``@rpc`` hook in service/rpc.py) over a real
loopback gateway: per-kind and per-client limits refuse with RESOURCE_EXHAUSTED, bulk work
never takes interactive slots, a stream whose client stops reading and an inversion past
its time limit end with a status and free their slot; and the micro-batcher runs
interactive calls before queued bulk work (service/backends/batcher.py)."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from PIL import Image
from support.gateway_fakes import FakeBackend, FakeNetworks
from support.gateway_harness import running_gateway

from stylegate.service import admission
from stylegate.service.admission import Kind
from stylegate.service.backends.base import Priority
from stylegate.service.backends.batcher import MicroBatcher


def _png(side: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def nets(tmp_path):
    nets = FakeNetworks()
    nets.repo = nets.write(tmp_path)
    return nets


def _error(fn) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class _Peer:
    def __init__(self, peer: str):
        self._peer = peer

    def peer(self) -> str:
        return self._peer


def test_client_identity_is_the_peer_host_without_its_port():
    assert admission.client_identity(_Peer("ipv4:10.0.0.7:51234")) == "ipv4:10.0.0.7"
    assert admission.client_identity(_Peer("ipv6:[::1]:40000")) == "ipv6:[::1]"
    assert admission.client_identity(_Peer("unix:/tmp/s")) == "unix:/tmp/s"


def test_limits_per_kind_and_per_client_refuse_at_once(nets, monkeypatch):
    # Callers name themselves in metadata here (the real identity is the peer address).
    monkeypatch.setattr(
        admission,
        "client_identity",
        lambda ctx: dict(ctx.invocation_metadata()).get("who", "anon"),
    )
    backend = FakeBackend(nets, delay=0.3)
    limits = {
        "max_large_rpcs": 3,
        "max_large_rpcs_per_client": 2,
        "interactive_max_images": 2,
        "bulk_max_batch": 2,
    }
    with running_gateway(nets.repo, backend, **limits) as gw, gw.client() as c:
        large = [c.stub.Generate.future(_gen(4), metadata=[("who", "a")]) for _ in range(2)]
        _wait(lambda: gw.server.servicer.admission.in_use(Kind.LARGE) == 2)
        # a third large request of client a: over its own limit, refused at once
        started = time.monotonic()
        err = _error(lambda: c.stub.Generate(_gen(4), metadata=[("who", "a")]))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "per client is 2" in err.details()
        assert time.monotonic() - started < 0.25  # not queued behind the 0.3 s backend calls
        # client b still gets the last place of the kind, then the kind is full for everyone
        b = c.stub.Generate.future(_gen(4), metadata=[("who", "b")])
        _wait(lambda: gw.server.servicer.admission.in_use(Kind.LARGE) == 3)
        err = _error(lambda: c.stub.Generate(_gen(4), metadata=[("who", "c")]))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "server's limit is 3" in err.details()
        # interactive work of the same client is a different pool: admitted and served
        assert len(c.stub.Generate(_gen(1), metadata=[("who", "a")]).images) == 1
        for f in [*large, b]:
            assert len(f.result(timeout=30).images) == 4
        _wait(lambda: gw.server.servicer.admission.in_use(Kind.LARGE) == 0)
        # a large request at bulk priority reached the backend in pieces of bulk_max_batch
        assert backend.nets.seen["synthesis"]["ws"].shape[0] == 2


def _gen(n: int):
    from stylegate.protos.v1 import stylegate_pb2 as pb

    return pb.GenerateRequest(seeds=list(range(n)))


def test_inversions_and_batch_streams_leave_interactive_work_admitted(nets):
    backend = FakeBackend(nets, delay=0.02)
    limits = {"max_concurrent_inversions": 2, "max_inversions_per_client": 2}
    with running_gateway(nets.repo, backend, **limits) as gw, gw.client() as c:
        streams = [
            c.invert_stream(_png(), method="optimize", steps=1000, early_stop_tol=0.0)
            for _ in range(2)
        ]
        for s in streams:
            next(s)
        err = _error(lambda: c.invert(_png(), steps=1))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "inversions" in err.details()
        assert len(c.generate([1])) == 1  # interactive: its own pool
        assert len(c.list_models().models) >= 1  # metadata too
        for s in streams:
            s.cancel()
        _wait(lambda: gw.server.servicer.admission.in_use(Kind.INVERSION) == 0)


def test_a_stream_whose_client_stops_reading_ends_with_a_status_and_frees_its_slot(nets):
    settings = {"write_timeout_s": 0.5, "max_steps": 50_000}
    with running_gateway(nets.repo, FakeBackend(nets), **settings) as gw, gw.client() as c:
        stream = c.invert_stream(
            _png(), method="optimize", steps=50_000, preview_every=1, fmt="raw", early_stop_tol=0.0
        )
        # never read: the server fills the transport's windows, then its write waits
        _wait(lambda: gw.server.servicer.admission.in_use(Kind.INVERSION) == 1)
        _wait(lambda: gw.server.servicer.admission.in_use(Kind.INVERSION) == 0, timeout=30)
        assert gw.server.servicer.inversion_slots.count == 0
        with pytest.raises(grpc.RpcError) as info:
            for _ in stream:
                pass
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "did not read the stream" in info.value.details()


def test_an_inversion_past_the_server_time_limit_is_deadline_exceeded(nets):
    settings = {"max_inversion_s": 0.5, "max_steps": 50_000}
    backend = FakeBackend(nets, delay=0.005)
    with running_gateway(nets.repo, backend, **settings) as gw, gw.client() as c:
        started = time.monotonic()
        err = _error(lambda: c.invert(_png(), method="optimize", steps=50_000, early_stop_tol=0))
        took = time.monotonic() - started
        assert gw.server.servicer.admission.in_use(Kind.INVERSION) == 0
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "time limit of 0.5 s" in err.details()
    assert took < 5.0


def test_interactive_calls_run_before_queued_bulk_work_and_bulk_runs_stay_small():
    order: list[tuple[str, int]] = []
    gate = threading.Event()

    def run(model, inputs):
        gate.wait(5)
        order.append((model, len(inputs["x"])))
        time.sleep(0.01)
        return {"y": inputs["x"] * 2}

    async def scenario():
        batcher = MicroBatcher(
            run, ThreadPoolExecutor(1), max_batch=32, window_s=0.0, bulk_max_batch=4
        )
        one = {"x": np.ones((1, 2), np.float32)}
        bulk = [
            asyncio.create_task(batcher.submit("step", one, priority=Priority.BULK))
            for _ in range(16)
        ]
        await asyncio.sleep(0.05)  # the first bulk run is in flight, the rest waits
        interactive = asyncio.create_task(
            batcher.submit("synthesis", one, priority=Priority.INTERACTIVE)
        )
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(interactive, *bulk)
        await batcher.close()

    asyncio.run(scenario())
    assert order.index(("synthesis", 1)) <= 1  # after at most the bulk run already started
    assert max(n for model, n in order if model == "step") <= 4
    assert sum(n for model, n in order if model == "step") == 16
