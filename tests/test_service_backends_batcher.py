"""The dynamic micro-batcher, alone (numpy run function) and inside the EmbeddedBackend
(real onnxruntime sessions over an ONNX model repository)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from support.gateway_fakes import NUM_WS, RES, FakeNetworks, W, write_onnx_repository

from stylegate.service.backends.base import Priority
from stylegate.service.backends.batcher import MicroBatcher
from stylegate.service.backends.embedded import EmbeddedBackend
from stylegate.service.errors import BackendUnavailable, DeadlineExceeded, OverCapacity
from stylegate.service.server import make_backend
from stylegate.service.settings import Settings


def elementwise(model, inputs):
    """Per-sample and exact: batched and unbatched results must be bit-identical."""
    time.sleep(0.005)  # a run takes a while, so calls pile up behind it
    return {"y": inputs["x"] * 2.0 + 1.0, "rows": np.full((len(inputs["x"]), 1), len(inputs["x"]))}


async def _with_batcher(fn, **options):
    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher(elementwise, pool, **options)
        try:
            return await fn(batcher)
        finally:
            await batcher.close()


def test_concurrent_calls_are_merged_and_split_back_exactly():
    xs = [
        np.random.RandomState(i).standard_normal((1 + i % 3, 5)).astype(np.float32)
        for i in range(40)
    ]

    async def run(batcher):
        outs = await asyncio.gather(*(batcher.submit("m", {"x": x}) for x in xs))
        return outs, batcher.stats

    outs, stats = asyncio.run(_with_batcher(run, max_batch=16, window_s=0.01))
    for x, out in zip(xs, outs):
        np.testing.assert_array_equal(out["y"], x * 2.0 + 1.0)
        assert out["y"].shape == x.shape
    sizes = list(stats.batch_sizes["m"])
    assert sum(sizes) == sum(len(x) for x in xs)
    assert max(sizes) > 1 and max(sizes) <= 16
    assert stats.runs["m"] < len(xs) / 3


def test_lockstep_callers_do_not_wait_out_the_window():
    """A lone sequential caller pays no batching window: the batch is dispatched as soon
    as as many calls wait as the previous batch carried."""

    async def run(batcher):
        start = time.perf_counter()
        for _ in range(20):
            await batcher.submit("m", {"x": np.zeros((1, 2), np.float32)})
        return (time.perf_counter() - start) / 20

    per_call = asyncio.run(_with_batcher(run, max_batch=8, window_s=0.2))
    assert per_call < 0.1  # never the 0.2 s window


def test_interactive_calls_go_before_bulk_ones():
    order = []

    def record(model, inputs):
        order.extend(inputs["x"][:, 0].tolist())
        time.sleep(0.02)
        return {"y": inputs["x"]}

    async def run():
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(record, pool, max_batch=1, window_s=0.0)
            first = asyncio.create_task(batcher.submit("m", {"x": np.zeros((1, 1), np.float32)}))
            await asyncio.sleep(0.005)  # the first run is busy; the rest queue up
            calls = [
                batcher.submit(
                    "m",
                    {"x": np.full((1, 1), float(i), np.float32)},
                    priority=Priority.BULK if i < 3 else Priority.INTERACTIVE,
                )
                for i in range(1, 6)
            ]
            await asyncio.gather(first, *calls)
            await batcher.close()

    asyncio.run(run())
    assert order[0] == 0 and set(order[1:4]) == {3.0, 4.0, 5.0} and set(order[4:]) == {1.0, 2.0}


def test_interactive_call_runs_beside_a_bulk_run_in_a_reserved_slot():
    """With an interactive slot, an interactive call starts while a long bulk run is still
    going (it would otherwise wait for it), and carries no bulk call with it; without the
    slot it waits for the bulk run to end."""
    release = threading.Event()

    def run_fn(model, inputs):
        if model == "bulk":
            release.wait(10)
        return {"y": inputs["x"]}

    async def scenario(interactive_slots: int) -> tuple[bool, list[int]]:
        release.clear()
        with ThreadPoolExecutor(1 + interactive_slots) as pool:
            batcher = MicroBatcher(run_fn, pool, window_s=0.0, interactive_slots=interactive_slots)
            x = np.zeros((1, 1), np.float32)
            bulk = [
                asyncio.create_task(batcher.submit(m, {"x": x}, priority=Priority.BULK))
                for m in ("bulk", "bulk", "gen")
            ]
            await asyncio.sleep(0.05)  # the first bulk run holds the shared slot
            probe = asyncio.create_task(batcher.submit("gen", {"x": x}))
            done, _ = await asyncio.wait({probe}, timeout=0.5)
            release.set()
            await asyncio.gather(*bulk, probe)
            sizes = list(batcher.stats.batch_sizes["gen"])
            await batcher.close()
            return bool(done), sizes

    ran_beside, sizes = asyncio.run(scenario(1))
    assert ran_beside and sizes[0] == 1  # the queued bulk "gen" call did not ride along
    waited_beside, _ = asyncio.run(scenario(0))
    assert not waited_beside


def test_an_async_run_gets_the_most_urgent_priority_and_the_latest_deadline():
    """A coroutine run (a remote server's): one run per batch, told the batch's most urgent
    priority and the latest deadline of its callers (none when any caller has none)."""
    seen = []

    async def remote(model, inputs, priority, deadline):
        seen.append((len(inputs["x"]), priority, deadline))
        await asyncio.sleep(0.01)
        return {"y": inputs["x"] + 1}

    async def run(timeouts):
        batcher = MicroBatcher(remote, None, window_s=0.05)
        first = asyncio.create_task(batcher.submit("m", {"x": np.zeros((1, 1), np.float32)}))
        await asyncio.sleep(0.005)  # the first run is out; the rest wait together
        start = time.monotonic()
        outs = await asyncio.gather(
            *(
                batcher.submit(
                    "m",
                    {"x": np.full((1, 1), i, np.float32)},
                    priority=Priority.INTERACTIVE if i == 1 else Priority.BULK,
                    timeout=t,
                )
                for i, t in enumerate(timeouts)
            )
        )
        await first
        await batcher.close()
        return start, [float(o["y"][0, 0]) for o in outs]

    start, ys = asyncio.run(run([5.0, 9.0, 7.0]))
    assert ys == [1.0, 2.0, 3.0]
    assert [(n, p) for n, p, _ in seen] == [(1, Priority.INTERACTIVE), (3, Priority.INTERACTIVE)]
    assert seen[0][2] is None and 8.9 < seen[1][2] - start < 9.1
    seen.clear()
    asyncio.run(run([5.0, None, 7.0]))
    assert seen[1][2] is None


def test_an_async_run_nobody_waits_for_is_cancelled():
    started, cancelled = asyncio.Event(), []

    async def remote(model, inputs, priority, deadline):
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(len(inputs["x"]))
            raise
        return {"y": inputs["x"]}

    async def run():
        batcher = MicroBatcher(remote, None, window_s=0.0)
        x = np.zeros((1, 1), np.float32)
        calls = [asyncio.create_task(batcher.submit("m", {"x": x})) for _ in range(2)]
        await started.wait()
        calls[0].cancel()
        await asyncio.sleep(0.01)
        assert not cancelled  # one caller still waits for the run
        calls[1].cancel()
        await asyncio.sleep(0.01)
        await batcher.close()

    asyncio.run(run())
    assert cancelled == [2]


def test_two_full_bulk_batches_run_at_once_on_the_two_lanes():
    """A pairable model: two full bulk batches waiting together run at the same time, on
    lanes 0 and 1 of one slot; a batch alone, an interactive batch or a model that does not
    pair runs on no lane (the whole session)."""
    runs, inside, overlap = [], [0], [0]
    lock = threading.Lock()

    def run_fn(model, inputs, lane=None):
        with lock:
            inside[0] += 1
            overlap[0] = max(overlap[0], inside[0])
        time.sleep(0.02)
        with lock:
            inside[0] -= 1
            runs.append((model, lane, len(inputs["x"])))
        return {"y": inputs["x"] * 3}

    async def scenario(model, n, priority):
        runs.clear()
        overlap[0] = 0
        with ThreadPoolExecutor(3) as pool:
            batcher = MicroBatcher(
                run_fn, pool, bulk_max_batch=4, window_s=0.05, pairable=lambda m: m == "step"
            )
            xs = [np.full((1, 1), i, np.float32) for i in range(n)]
            outs = await asyncio.gather(
                *(batcher.submit(model, {"x": x}, priority=priority) for x in xs)
            )
            await batcher.close()
        for x, out in zip(xs, outs):
            np.testing.assert_array_equal(out["y"], x * 3)
        return sorted(runs, key=lambda r: (r[1] is None, r[1])), overlap[0]

    paired, most = asyncio.run(scenario("step", 8, Priority.BULK))
    assert paired == [("step", 0, 4), ("step", 1, 4)] and most == 2
    alone, most = asyncio.run(scenario("step", 4, Priority.BULK))
    assert alone == [("step", None, 4)] and most == 1
    other, _ = asyncio.run(scenario("gen", 8, Priority.BULK))
    assert [lane for _, lane, _ in other] == [None, None]
    interactive, _ = asyncio.run(scenario("step", 8, Priority.INTERACTIVE))
    assert interactive == [("step", None, 8)]


def test_the_lanes_of_a_pair_run_on_independently_each_in_its_own_thread():
    """Once paired, each lane takes the next full bulk batch as its run ends, in its own
    thread: a slow lane does not hold a fast one back (as pairs that wait for each other
    would), and a lane's queued run starts while the event loop is blocked."""
    runs, lock, blocked = [], threading.Lock(), {}

    def run_fn(model, inputs, lane=None):
        started = time.perf_counter()
        if lane == 0 and "from" not in blocked:  # lane 0's first run blocks the loop 0.4 s
            blocked["from"] = started
            blocked["loop"].call_soon_threadsafe(block)
        time.sleep(0.06 if lane == 0 else 0.01)
        with lock:
            runs.append((lane, threading.get_ident(), started))
        return {"y": inputs["x"] - 1}

    def block():
        time.sleep(0.4)
        blocked["until"] = time.perf_counter()

    async def scenario():
        blocked["loop"] = asyncio.get_running_loop()
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(
                run_fn, pool, bulk_max_batch=2, window_s=0.05, pairable=lambda m: m == "step"
            )
            xs = [np.full((1, 1), i, np.float32) for i in range(24)]
            outs = await asyncio.gather(
                *(batcher.submit("step", {"x": x}, priority=Priority.BULK) for x in xs)
            )
            await batcher.close()
        for x, out in zip(xs, outs):
            np.testing.assert_array_equal(out["y"], x - 1)

    asyncio.run(scenario())
    lanes = {lane: [r for r in runs if r[0] == lane] for lane in (0, 1, None)}
    assert {len({r[1] for r in lanes[i]}) for i in (0, 1)} == {1}  # a thread per lane
    assert lanes[0][0][1] != lanes[1][0][1]
    assert len(lanes[1]) >= 2 * len(lanes[0])  # the fast lane did not wait for the slow one
    # Each lane's second run (queued behind its first) started while the loop was blocked.
    assert all(lanes[i][1][2] < blocked["until"] for i in (0, 1))


def test_lock_step_callers_keep_both_lanes_busy():
    """Callers that each wait for their result before the next call (inversions) keep both
    lanes of a pair running, also when there are just enough of them to fill the lanes: a
    lane that ran dry is topped up when calls arrive or the other lane's run ends."""
    lanes, lock = [], threading.Lock()

    def run_fn(model, inputs, lane=None):
        time.sleep(0.01)
        with lock:
            lanes.append(lane)
        return {"y": inputs["x"] * 2}

    async def scenario(callers):
        lanes.clear()
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(
                run_fn, pool, bulk_max_batch=2, window_s=0.002, pairable=lambda m: m == "step"
            )

            async def inversion(i):
                x = np.full((1, 1), i, np.float32)
                for _ in range(12):
                    x = (await batcher.submit("step", {"x": x}, priority=Priority.BULK))["y"] / 2
                return x

            outs = await asyncio.gather(*(inversion(i) for i in range(callers)))
            await batcher.close()
        assert [float(o[0, 0]) for o in outs] == list(range(callers))
        return [lanes.count(lane) for lane in (0, 1, None)]

    for callers in (8, 32):
        on_0, on_1, alone = asyncio.run(scenario(callers))
        total = on_0 + on_1 + alone
        assert min(on_0, on_1) >= 0.35 * total, (callers, on_0, on_1, alone)


def test_lanes_give_the_slot_up_when_another_model_waits_for_it():
    """Lanes stop taking their model's next batches once another model's bulk call waits
    for the run slot: it runs after the runs already queued, not after the whole queue."""
    order, lock = [], threading.Lock()

    def run_fn(model, inputs, lane=None):
        time.sleep(0.01)
        with lock:
            order.append(model)
        return {"y": inputs["x"]}

    async def scenario():
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(
                run_fn, pool, bulk_max_batch=2, window_s=0.05, pairable=lambda m: m == "step"
            )
            steps = [
                batcher.submit("step", {"x": np.zeros((1, 1), np.float32)}, priority=Priority.BULK)
                for _ in range(40)
            ]
            step_runs = asyncio.gather(*steps)
            await asyncio.sleep(0.03)  # the lanes are running
            await batcher.submit("gen", {"x": np.zeros((1, 1), np.float32)}, priority=Priority.BULK)
            await step_runs
            await batcher.close()

    asyncio.run(scenario())
    assert order.count("step") == 20 and order.count("gen") == 1
    assert order.index("gen") < 12  # not behind all 20 step runs


def test_a_model_bulk_limit_sizes_that_models_bulk_runs_only():
    """``model_bulk_max_batch`` caps the bulk runs of the models it gives a limit for (and is
    the size of a full batch for pairing); other models keep ``bulk_max_batch``, and
    interactive runs are not capped by either."""
    runs = []
    lock = threading.Lock()

    def run_fn(model, inputs, lane=None):
        time.sleep(0.01)
        with lock:
            runs.append((model, len(inputs["x"]), lane))
        return {"y": inputs["x"] + 1}

    async def scenario(model, priority):
        runs.clear()
        with ThreadPoolExecutor(3) as pool:
            batcher = MicroBatcher(
                run_fn,
                pool,
                bulk_max_batch=4,
                model_bulk_max_batch={"step": 2}.get,
                window_s=0.05,
                pairable=lambda m: m == "step",
            )
            assert (batcher.bulk_limit("step"), batcher.bulk_limit("gen")) == (2, 4)
            xs = [np.full((1, 1), i, np.float32) for i in range(8)]
            outs = await asyncio.gather(
                *(batcher.submit(model, {"x": x}, priority=priority) for x in xs)
            )
            await batcher.close()
        for x, out in zip(xs, outs):
            np.testing.assert_array_equal(out["y"], x + 1)
        return sorted(runs, key=lambda r: (r[1], r[2] is None, r[2]))

    step = asyncio.run(scenario("step", Priority.BULK))
    assert [size for _, size, _ in step] == [2, 2, 2, 2]
    assert sorted(lane for _, _, lane in step) == [0, 0, 1, 1]  # two pairs of two
    assert [size for _, size, _ in asyncio.run(scenario("gen", Priority.BULK))] == [4, 4]
    assert asyncio.run(scenario("step", Priority.INTERACTIVE)) == [("step", 8, None)]


def test_queue_limit_timeout_and_close():
    async def run(batcher):
        slow = [
            asyncio.create_task(batcher.submit("m", {"x": np.zeros((1, 1), np.float32)}))
            for _ in range(3)
        ]
        await asyncio.sleep(0)
        with pytest.raises(OverCapacity):
            await batcher.submit("m", {"x": np.zeros((1, 1), np.float32)})
        await asyncio.gather(*slow)
        with pytest.raises(DeadlineExceeded):
            await batcher.submit("m", {"x": np.zeros((1, 1), np.float32)}, timeout=0.0)
        await batcher.close()
        with pytest.raises(BackendUnavailable):
            await batcher.submit("m", {"x": np.zeros((1, 1), np.float32)})

    asyncio.run(_with_batcher(run, max_batch=1, window_s=0.0, max_queue=3))


@pytest.fixture(scope="module")
def onnx_repo(tmp_path_factory):
    nets = FakeNetworks()
    return nets, write_onnx_repository(tmp_path_factory.mktemp("onnx_repo"), nets)


def _step_inputs(rng, n):
    return {
        "ws": rng.standard_normal((n, NUM_WS, W)).astype(np.float32),
        "target": rng.uniform(-1, 1, (n, 3, RES, RES)).astype(np.float32),
        "target_features": rng.standard_normal((n, 2, 4, 4)).astype(np.float32),
        "loss_weights": np.tile(np.float32([[1.0, 0.5, 2.0]]), (n, 1)),
        "mask": np.ones((n, 1, RES, RES), np.float32),
    }


def test_embedded_backend_batches_concurrent_steps_with_results_identical_to_unbatched(onnx_repo):
    nets, repo = onnx_repo
    rng = np.random.RandomState(0)
    calls = [_step_inputs(rng, 1) for _ in range(24)]

    async def run():
        backend = EmbeddedBackend(repo, intra_op_threads=1, max_batch=32, batch_window_ms=20)
        await backend.load()
        try:
            alone = [await backend.infer("inversion_step", c) for c in calls]
            runs_before = backend.batcher.stats.runs["inversion_step"]
            together = await asyncio.gather(*(backend.infer("inversion_step", c) for c in calls))
            runs = backend.batcher.stats.runs["inversion_step"] - runs_before
            sizes = list(backend.batcher.stats.batch_sizes["inversion_step"])[runs_before:]
        finally:
            await backend.close()
        return alone, together, runs, sizes

    alone, together, runs, sizes = asyncio.run(run())
    assert runs < len(calls) and max(sizes) > 1
    for a, b in zip(alone, together):
        for name in ("loss", "loss_terms", "grad", "image"):
            np.testing.assert_allclose(b[name], a[name], rtol=1e-6, atol=1e-7, err_msg=name)
    # and the networks compute what the numpy reference does
    ref = nets.run("inversion_step", calls[0])
    np.testing.assert_allclose(alone[0]["grad"], ref["grad"], rtol=1e-4, atol=1e-6)


def test_embedded_backend_pairs_bulk_steps_on_narrow_sessions_with_the_same_results(onnx_repo):
    """Concurrent bulk inversion steps, two full batches at a time on the two narrow
    sessions: each caller's result equals its step run alone on the wide session."""
    _, repo = onnx_repo
    rng = np.random.RandomState(1)
    calls = [_step_inputs(rng, 1) for _ in range(16)]

    async def run():
        backend = EmbeddedBackend(repo, intra_op_threads=2, bulk_max_batch=4, batch_window_ms=50)
        await backend.load()
        lanes_used = []
        run_batch = backend._run_batch

        def spy(model, inputs, lane=None):
            lanes_used.append(lane)
            return run_batch(model, inputs, lane)

        backend.batcher._run = spy
        try:
            alone = [await backend.infer("inversion_step", c) for c in calls]
            together = await asyncio.gather(
                *(backend.infer("inversion_step", c, priority=Priority.BULK) for c in calls)
            )
        finally:
            await backend.close()
        return alone, together, lanes_used

    alone, together, lanes_used = asyncio.run(run())
    assert lanes_used[: len(calls)] == [None] * len(calls)
    assert {0, 1} <= set(lanes_used[len(calls) :])
    for a, b in zip(alone, together):
        for name in ("loss", "loss_terms", "grad", "image"):
            np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_the_step_bulk_limit_setting_reaches_the_embedded_batcher(onnx_repo):
    """``step_bulk_max_batch`` sizes the embedded inversion step's bulk runs (default 2),
    ``triton_step_bulk_max_batch`` its Triton requests; 0 leaves the step at
    ``bulk_max_batch`` like every other model."""
    _, repo = onnx_repo

    async def limits(env):
        backend = make_backend(Settings.load(env=env), repo)
        await backend.load()
        limit = backend.batcher.bulk_limit
        try:
            return limit("inversion_step"), limit("synthesis")
        finally:
            await backend.close()

    assert asyncio.run(limits({})) == (2, Settings().bulk_max_batch)
    assert asyncio.run(limits({"STYLEGATE_STEP_BULK_MAX_BATCH": "3"}))[0] == 3
    off = {"STYLEGATE_STEP_BULK_MAX_BATCH": "0", "STYLEGATE_BULK_MAX_BATCH": "5"}
    assert asyncio.run(limits(off)) == (5, 5)
    # the Triton backend's own setting (4: a CPU Triton; 0 for a GPU one)
    step = min(repo.models_of("inversion_step"))
    triton = make_backend(Settings.load(env={"STYLEGATE_BACKEND": "triton"}), repo)
    assert (triton._bulk_limit(step), triton._bulk_limit("synthesis")) == (4, None)


def test_embedded_backend_missing_model_is_unavailable(onnx_repo, tmp_path):
    nets, _ = onnx_repo
    repo = nets.write(tmp_path)  # metadata without any .onnx file

    async def run():
        await EmbeddedBackend(repo).load()

    with pytest.raises(BackendUnavailable, match="not found"):
        asyncio.run(run())


def test_sessions_run_off_the_event_loop(onnx_repo):
    _, repo = onnx_repo
    seen = set()

    async def run():
        backend = EmbeddedBackend(repo, intra_op_threads=1)
        await backend.load()
        original = backend._run_batch

        def spy(model, inputs):
            seen.add(threading.current_thread().name)
            return original(model, inputs)

        backend.batcher._run = spy
        await backend.infer("mapping", {"z": np.zeros((2, 8), np.float32)})
        await backend.close()

    asyncio.run(run())
    assert all(name.startswith("onnxruntime") for name in seen)
