"""Dynamic micro-batching: concurrent calls to the same model are concatenated along the
batch axis into one run, then split back, so N concurrent inversions cost about one run
per step instead of N.

A batch for a model is dispatched when (a) it is full (``max_batch`` samples), (b) as many
calls are waiting as the previous batch carried (callers in lock-step, e.g. concurrent
inversions, come back together: no need to sit out the window), or (c) ``window_s`` has
passed since its first call arrived. Interactive calls are taken before bulk ones. Runs
happen in a thread pool, at most ``concurrency`` at a time over all models; a free run slot
goes to the model whose waiting work is most urgent (interactive before bulk), and a run
carries at most ``bulk_max_batch`` bulk samples (or the model's own limit,
``model_bulk_max_batch``), so an interactive call waits for at most
one short bulk run however much bulk work is queued (issue 11, finding 4). For ``pairable``
models, two full bulk batches waiting together run at once in one slot, each on a narrow
lane (``run(model, inputs, lane)``, lanes 0 and 1), instead of one after the other; each
lane then keeps its next full batch queued in its own thread while such batches wait.

The run is either blocking (onnxruntime in-process: it executes in a thread pool) or a
coroutine (a remote server such as Triton: awaited on the loop, told the batch's most urgent
priority and latest deadline so the server can queue it accordingly).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np

from stylegate.service import metrics
from stylegate.service.backends.base import Priority
from stylegate.service.errors import BackendUnavailable, DeadlineExceeded, OverCapacity

# model, batched inputs[, lane of a pair] -> batched outputs
RunFn = Callable[..., dict[str, np.ndarray]]
# model, batched inputs, the batch's most urgent priority, its latest deadline
# (time.monotonic(); None when some caller has none) -> batched outputs
AsyncRunFn = Callable[
    [str, dict[str, np.ndarray], Priority, float | None], Awaitable[dict[str, np.ndarray]]
]


# Runs a lane of a pair keeps started: the one in its thread and the next, queued behind it.
LANE_DEPTH = 2


@dataclasses.dataclass(order=True)
class _Call:
    priority: int
    seq: int
    size: int = dataclasses.field(compare=False)
    inputs: dict[str, np.ndarray] = dataclasses.field(compare=False)
    future: asyncio.Future = dataclasses.field(compare=False)
    enqueued: float = dataclasses.field(compare=False)
    deadline: float | None = dataclasses.field(compare=False)  # time.monotonic()


class _ModelQueue:
    def __init__(self) -> None:
        self.heap: list[_Call] = []
        self.arrived = asyncio.Event()
        self.last_calls = 1  # calls in the previous batch: how many to expect back
        self.lanes: _Hold | None = None  # the slot of the model's running pair, if any
        self.worker: asyncio.Task | None = None

    def pending(self) -> list[_Call]:
        return [c for c in self.heap if not c.future.done()]

    def urgency(self) -> int:
        """Priority of the most urgent waiting call (lower runs first)."""
        return min((c.priority for c in self.heap if not c.future.done()), default=Priority.BULK)


class _Gate:
    """The run slots of all models. When one frees, it goes to the waiter whose work is the
    most urgent right then (``urgency()``, then arrival): a semaphore would be first come,
    first served, and one model's stream of bulk batches would starve the others.

    ``reserved`` further slots take interactive work only: an interactive call then runs
    beside the bulk run in progress instead of waiting for it to end (on a CPU the two
    share the cores for a moment; a bulk run of 8 inversion steps is ~10x one Generate)."""

    def __init__(self, slots: int, reserved: int = 0):
        self.free = slots
        self.reserved_free = reserved
        self._waiters: list[tuple[Callable[[], int], int, asyncio.Future]] = []
        self._seq = itertools.count()

    async def acquire(self, urgency: Callable[[], int]) -> bool:
        """Wait for a slot; True when it is a reserved one (to be filled with interactive
        calls only, and given back with ``release(True)``)."""
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return False
        entry = (urgency, next(self._seq), asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        self.grant()  # a reserved slot may be free for this one
        try:
            return await entry[2]
        except asyncio.CancelledError:
            if entry[2].done() and not entry[2].cancelled():
                self.release(entry[2].result())  # granted, then cancelled: pass it on
            else:
                self._waiters.remove(entry)
            raise

    def others_waiting(self, urgency: Callable[[], int]) -> bool:
        """Whether a waiter other than the one with ``urgency`` (a queue's) wants a slot."""
        return any(w[0] != urgency for w in self._waiters)

    def release(self, reserved: bool = False) -> None:
        if reserved:
            self.reserved_free += 1
        else:
            self.free += 1
        self.grant()

    def grant(self) -> None:
        """Hand free slots to the waiters; also called when a waiter's urgency rises (an
        interactive call joined a queue whose worker waits for a slot)."""
        while self._waiters:
            ranked = sorted(self._waiters, key=lambda w: (w[0](), w[1]))
            if self.free > 0:
                entry, reserved = ranked[0], False
                self.free -= 1
            elif self.reserved_free > 0 and ranked[0][0]() < Priority.BULK:
                entry, reserved = ranked[0], True
                self.reserved_free -= 1
            else:
                return
            self._waiters.remove(entry)
            entry[2].set_result(reserved)


@dataclasses.dataclass
class BatchStats:
    """Counters kept for tests and benchmarks (Prometheus has the same as histograms)."""

    runs: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    calls: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    batch_sizes: dict[str, collections.deque] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(lambda: collections.deque(maxlen=10000))
    )


class MicroBatcher:
    def __init__(
        self,
        run: RunFn | AsyncRunFn,  # model, batched inputs (...) -> batched outputs
        executor: Executor | None,  # where a blocking ``run`` executes; None: ``run`` is async
        *,
        backend_name: str = "embedded",
        max_batch: int = 32,  # samples per run (a single larger call runs alone)
        window_s: float = 0.002,  # how long a batch waits for more calls
        max_queue: int = 1024,  # waiting calls per model before OverCapacity
        concurrency: int = 1,  # runs in flight at once, all models together
        bulk_max_batch: int | None = None,  # bulk samples per run; None = max_batch
        # a model's own bulk samples per run, None for bulk_max_batch (asked at each run)
        model_bulk_max_batch: Callable[[str], int | None] | None = None,
        interactive_slots: int = 0,  # runs beyond ``concurrency`` for interactive calls only
        pairable: Callable[[str], bool] | None = None,  # models whose bulk batches may pair
    ):
        self._run = run
        self._executor = executor
        self._backend = backend_name
        self.max_batch = max(1, max_batch)
        self.window_s = max(0.0, window_s)
        self.max_queue = max_queue
        self.bulk_max_batch = max(1, min(bulk_max_batch or self.max_batch, self.max_batch))
        self._model_bulk_max_batch = model_bulk_max_batch
        self._slots = _Gate(max(1, concurrency), max(0, interactive_slots))
        self._pairable = pairable
        self._queues: dict[str, _ModelQueue] = {}
        self._seq = itertools.count()
        self._closed = False
        self._running: set[asyncio.Task] = set()
        self._lane_pools: list[ThreadPoolExecutor] = []  # a thread per lane of a pair
        self.stats = BatchStats()

    async def submit(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        priority: Priority = Priority.INTERACTIVE,
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        if self._closed:
            raise BackendUnavailable(f"backend is closed (model {model})")
        sizes = {v.shape[0] for v in inputs.values()}
        if len(sizes) != 1:
            raise ValueError(f"{model}: inputs disagree on the batch size: {sorted(sizes)}")
        queue = self._queues.get(model)
        if queue is None:
            queue = self._queues[model] = _ModelQueue()
        if len(queue.heap) >= self.max_queue:
            raise OverCapacity(f"queue of model {model} is full ({self.max_queue} calls)")
        loop = asyncio.get_running_loop()
        call = _Call(
            int(priority),
            next(self._seq),
            sizes.pop(),
            inputs,
            loop.create_future(),
            time.perf_counter(),
            None if timeout is None else time.monotonic() + timeout,
        )
        heapq.heappush(queue.heap, call)
        self._top_up_lanes(model, queue)
        metrics.BACKEND_QUEUE_DEPTH.labels(model).set(len(queue.heap))
        queue.arrived.set()
        if priority < Priority.BULK:
            self._slots.grant()  # this queue's worker may wait for a slot as bulk
        if queue.worker is None or queue.worker.done():
            queue.worker = asyncio.create_task(self._worker(model, queue))
        try:  # asyncio.timeout: wait_for can lose a caller's cancellation on Python 3.11
            async with asyncio.timeout(None if timeout is None else max(timeout, 0.0)):
                return await call.future
        except TimeoutError:
            raise DeadlineExceeded(f"deadline passed waiting for model {model}") from None

    async def close(self) -> None:
        self._closed = True
        for queue in self._queues.values():
            if queue.worker is not None:
                queue.worker.cancel()
            for call in queue.heap:
                if not call.future.done():
                    call.future.set_exception(BackendUnavailable("backend closed"))
            queue.heap.clear()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        for pool in self._lane_pools:
            pool.shutdown(wait=False, cancel_futures=True)

    async def _worker(self, model: str, queue: _ModelQueue) -> None:
        while not self._closed:
            queue.heap = queue.pending()  # drop calls whose callers went away
            heapq.heapify(queue.heap)
            if not queue.heap:
                queue.arrived.clear()
                await queue.arrived.wait()
                continue
            first = min(c.enqueued for c in queue.heap)
            while True:
                pending = queue.pending()
                if (
                    sum(c.size for c in pending) >= self.max_batch
                    or len(pending) >= queue.last_calls
                ):
                    break
                left = first + self.window_s - time.perf_counter()
                if left <= 0:
                    break
                queue.arrived.clear()
                try:
                    await asyncio.wait_for(queue.arrived.wait(), timeout=left)
                except TimeoutError:
                    break
            reserved = await self._slots.acquire(queue.urgency)
            limit = self.bulk_limit(model)
            batch = self._take(queue, limit, interactive_only=reserved)
            metrics.BACKEND_QUEUE_DEPTH.labels(model).set(len(queue.heap))
            if not batch:
                self._slots.release(reserved)
                continue
            batches = [batch]
            if not reserved and self._pair_due(model, queue, batch, limit):
                batches.append(self._take(queue, limit))
            if not reserved:  # lock-step callers are the bulk ones
                queue.last_calls = sum(len(b) for b in batches)
            hold = _Hold(self._slots, reserved)
            for i, part in enumerate(batches):
                self._launch(model, part, i if len(batches) > 1 else None, hold)
            if len(batches) > 1:
                queue.lanes = hold
                self._top_up_lanes(model, queue)
            hold.release()  # the worker's own hold: the runs keep the slot from here

    def _track(self, finish: Awaitable[None]) -> None:
        task = asyncio.create_task(finish)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def bulk_limit(self, model: str) -> int:
        """Bulk samples per run of ``model``."""
        own = self._model_bulk_max_batch(model) if self._model_bulk_max_batch else None
        return self.bulk_max_batch if own is None else max(1, min(own, self.max_batch))

    def _pair_due(self, model: str, queue: _ModelQueue, batch: list[_Call], full: int) -> bool:
        """Whether ``batch`` runs beside a second one: a pairable model, a blocking run, and
        ``batch`` and the calls still waiting both a full bulk batch (``full`` samples)."""
        if self._pairable is None or self._executor is None or not self._pairable(model):
            return False
        return _bulk(batch) == sum(c.size for c in batch) >= full and _bulk(queue.pending()) >= full

    def _top_up_lanes(self, model: str, queue: _ModelQueue) -> None:
        """Queue the model's next full bulk batches on the lanes of its running pair (the
        emptier lane first), up to ``LANE_DEPTH`` runs each, while they wait and no other
        model waits for a slot. Called when a call arrives and when a lane's run ends. A
        lane's queued run starts in its thread the moment the one before ends, without a
        turn of the event loop: run as pairs, each lane sat idle between runs until the
        loop had handed back both results and merged the next inputs (docs/design.md,
        "Lanes that queue their next run")."""
        hold = queue.lanes
        if hold is None or hold.given_back:
            return
        limit = self.bulk_limit(model)
        for lane in sorted((0, 1), key=lambda lane: hold.runs[lane]):
            while (
                hold.runs[lane] < LANE_DEPTH
                and not self._closed
                and not self._slots.others_waiting(queue.urgency)
                and _bulk(queue.pending()) >= limit
            ):
                self._launch(model, self._take(queue, limit), lane, hold)

    def _launch(self, model: str, batch: list[_Call], lane: int | None, hold: _Hold) -> None:
        """Start ``batch``'s run (on ``lane`` of a pair, or the whole session) as one of the
        runs that keep ``hold``'s slot."""
        hold.runs[lane] += 1
        clock = _Clock()
        try:
            run = self._start(model, batch, lane, clock)
        except Exception as exc:  # noqa: BLE001 - inputs that cannot be merged, say
            metrics.BACKEND_ERRORS.labels(self._backend, model).inc()
            _fail(batch, exc)
            hold.runs[lane] -= 1
            return
        self._track(self._finish(model, batch, run, clock, hold, lane))

    def _take(
        self, queue: _ModelQueue, bulk_limit: int, *, interactive_only: bool = False
    ) -> list[_Call]:
        batch: list[_Call] = []
        total = bulk = 0
        while queue.heap:
            call = queue.heap[0]
            if call.future.done():
                heapq.heappop(queue.heap)
                continue
            is_bulk = call.priority >= Priority.BULK
            if is_bulk and interactive_only:
                break  # the heap is in priority order: only bulk calls are left
            if batch and (
                total + call.size > self.max_batch or (is_bulk and bulk + call.size > bulk_limit)
            ):
                break
            heapq.heappop(queue.heap)
            batch.append(call)
            total += call.size
            bulk += call.size if is_bulk else 0
        return batch

    def _start(
        self, model: str, batch: list[_Call], lane: int | None, clock: _Clock
    ) -> asyncio.Future:
        """Merge the batch's inputs and start its run. A blocking run is in the executor when
        this returns (a lane's: in that lane's thread, behind the lane's running one), not
        behind the callers of the previous batch, who are waking up to work out their next
        calls (an optimizer step each) while it runs."""
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            inputs = {
                name: np.concatenate([c.inputs[name] for c in batch], axis=0)
                for name in batch[0].inputs
            }
        size = sum(c.size for c in batch)
        metrics.BACKEND_BATCH_SIZE.labels(model).observe(size)
        metrics.BACKEND_CALLS_PER_RUN.labels(model).observe(len(batch))
        self.stats.runs[model] += 1
        self.stats.calls[model] += len(batch)
        self.stats.batch_sizes[model].append(size)
        if self._executor is not None:
            loop = asyncio.get_running_loop()
            pool = self._executor if lane is None else self._lane_pool(lane)
            lane_args = () if lane is None else (lane,)
            return loop.run_in_executor(
                pool, self._timed_run, model, batch, clock, inputs, *lane_args
            )
        clock.start(model, batch)
        # An async run is cancelled once none of its callers waits for it any more (every
        # caller cancelled or timed out: the server's work would be thrown away).
        deadlines = [c.deadline for c in batch]
        run = asyncio.ensure_future(
            self._run(
                model,
                inputs,
                Priority(min(c.priority for c in batch)),
                None if None in deadlines else max(deadlines),
            )
        )

        def abandon(_: asyncio.Future) -> None:
            if all(c.future.done() for c in batch):
                run.cancel()

        for call in batch:
            call.future.add_done_callback(abandon)
        return run

    def _timed_run(
        self, model: str, batch: list[_Call], clock: _Clock, inputs: dict[str, np.ndarray], *lane
    ) -> dict[str, np.ndarray]:
        """``run`` in the executor's thread, its start (not its queueing) on the clock."""
        clock.start(model, batch)
        return self._run(model, inputs, *lane)

    def _lane_pool(self, lane: int) -> ThreadPoolExecutor:
        """Lane ``lane``'s own thread: its runs follow one another there."""
        while len(self._lane_pools) <= lane:
            self._lane_pools.append(
                ThreadPoolExecutor(1, thread_name_prefix=f"lane-{len(self._lane_pools)}")
            )
        return self._lane_pools[lane]

    async def _finish(
        self,
        model: str,
        batch: list[_Call],
        run: asyncio.Future,
        clock: _Clock,
        hold: _Hold,
        lane: int | None,
    ) -> None:
        released = False
        try:
            try:
                outputs = await run
            except Exception as exc:  # noqa: BLE001 - delivered to every caller of the batch
                metrics.BACKEND_ERRORS.labels(self._backend, model).inc()
                _fail(batch, exc)
                return
            finally:
                if clock.started is not None:
                    metrics.BACKEND_LATENCY.labels(self._backend, model).observe(
                        time.perf_counter() - clock.started
                    )
            # The slot first, then the results: the worker waiting for the slot is woken
            # (or the lane has queued its next batch) before the callers, so the next batch
            # is under way while they work.
            hold.runs[lane] -= 1
            if lane is not None:
                self._top_up_lanes(model, self._queues[model])
            hold.settle()
            released = True
            offset = 0
            for call in batch:
                part = {k: v[offset : offset + call.size] for k, v in outputs.items()}
                offset += call.size
                if not call.future.done():
                    call.future.set_result(part)
        finally:
            if not released:
                hold.release(lane)


class _Hold:
    """A run slot, held by the runs started in it (one, a pair, or a pair of lanes that
    queue their next runs) and at first by the worker that took it: given back when the
    last of them ends."""

    def __init__(self, slots: _Gate, reserved: bool):
        self._slots, self._reserved = slots, reserved
        self.runs: collections.Counter = collections.Counter({None: 1})  # lane -> runs
        self.given_back = False

    def release(self, lane: int | None = None) -> None:
        self.runs[lane] -= 1
        self.settle()

    def settle(self) -> None:
        if self.runs.total() == 0 and not self.given_back:
            self.given_back = True
            self._slots.release(self._reserved)


class _Clock:
    """When a run started (in the executor's thread for a blocking run): the backend's
    latency and the callers' queue wait are measured from there, not from its queueing."""

    started: float | None = None

    def start(self, model: str, batch: list[_Call]) -> None:
        self.started = now = time.perf_counter()
        for call in batch:
            metrics.BACKEND_QUEUE_WAIT.labels(model).observe(now - call.enqueued)


def _bulk(calls: list[_Call]) -> int:
    """Bulk samples among ``calls``."""
    return sum(c.size for c in calls if c.priority >= Priority.BULK)


def _fail(batch: list[_Call], exc: BaseException) -> None:
    for call in batch:
        if not call.future.done():
            call.future.set_exception(exc)
