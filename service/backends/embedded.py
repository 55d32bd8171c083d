"""``EmbeddedBackend``: the networks run in-process on onnxruntime (CPU), one session per
served model, behind the dynamic micro-batcher. The default backend: the gateway needs
nothing but ``model_repository/``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stylegate.service.backends.base import Priority
from stylegate.service.backends.batcher import MicroBatcher
from stylegate.service.errors import BackendUnavailable, GatewayError
from stylegate.service.metadata import RepositoryInfo, load_repository
from stylegate.service.signatures import ONNX_TO_TRITON, SIGNATURES, check_served

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Model:
    """One served model: its session, its tensor names, and the file it came from."""

    session: ort.InferenceSession
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    stamp: tuple[str, int, int]  # path, mtime_ns, size: a reload reuses an unchanged file
    lanes: tuple[ort.InferenceSession, ...] = ()  # narrow sessions for paired runs (or none)


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


def _served(args) -> dict[str, tuple[str, list[int]]]:
    """onnxruntime's NodeArgs as (Triton dtype, shape with -1 for symbolic dims)."""
    return {
        a.name: (
            ONNX_TO_TRITON.get(a.type, a.type),
            [d if isinstance(d, int) else -1 for d in a.shape],
        )
        for a in args
    }


_SHRINK = ort.RunOptions()
_SHRINK.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")


def _shrink(session: ort.InferenceSession) -> None:
    """A batch-1 run of zeros that ends by freeing the arena's unused regions."""
    feed = {}
    for arg in session.get_inputs():
        dims = [d if isinstance(d, int) else None for d in arg.shape[1:]]
        if None in dims or arg.type != "tensor(float)":
            return  # a dynamic dim other than the batch: no input to make up
        feed[arg.name] = np.zeros([1, *dims], np.float32)
    session.run(None, feed, _SHRINK)


# Networks whose sessions keep onnxruntime's worker threads spinning between parallel
# sections (its default): the inversion loop's many small ops gain (one inversion 1.6 s
# instead of 2.2 s; 32 concurrent 1.08 instead of 0.84 inversions/s). Generation's do not:
# threads spinning after each run take the cores from the event loop's work between runs
# (batch-32 Generate 238 -> 294-321 images/s without). docs/design.md.
SPINNING_NETWORKS = frozenset({"inversion_step", "encoder", "features"})

# Networks whose full bulk batches run two at once, each on a session of half the threads,
# when two are waiting (concurrent inversions): many small ops scale worse over threads than
# over batches, so 32 concurrent inversions gain 6-9% on 2 cores, while a batch alone keeps
# every thread (narrow runs all the time would make one inversion ~30% slower).
# docs/design.md, "Two narrow runs for two waiting batches".
PAIRED_NETWORKS = frozenset({"inversion_step"})


class EmbeddedBackend:
    name = "embedded"

    def __init__(
        self,
        repository: str | Path | RepositoryInfo,
        *,
        intra_op_threads: int = 2,  # onnxruntime threads per run (0 = onnxruntime's default)
        session_concurrency: int = 1,  # runs in flight at once over all models
        max_batch: int = 32,  # micro-batcher: samples per run
        batch_window_ms: float = 2.0,  # micro-batcher: how long a batch waits for more calls
        max_queue: int = 1024,  # micro-batcher: waiting calls per model
        bulk_max_batch: int | None = None,  # micro-batcher: bulk samples per run (None: max_batch)
        step_bulk_max_batch: int | None = None,  # ... of the inversion step (None: bulk_max_batch)
        interactive_slots: int = 1,  # runs beside session_concurrency, interactive calls only
        narrow_pairs: bool = True,  # PAIRED_NETWORKS: two waiting batches run at once, narrow
    ):
        self._repository = repository
        self._intra_op_threads = intra_op_threads
        self._session_concurrency = max(1, session_concurrency)
        self._interactive_slots = max(0, interactive_slots)
        self._narrow_pairs = narrow_pairs and intra_op_threads >= 2
        self._batcher_options = {
            "max_batch": max_batch,
            "window_s": batch_window_ms / 1000.0,
            "max_queue": max_queue,
            "bulk_max_batch": bulk_max_batch,
        }
        self._step_bulk_max_batch = step_bulk_max_batch
        self._steps: set[str] = set()  # the served inversion-step models
        self._models: dict[str, _Model] = {}
        self._grown: set[str] = set()  # models whose arena grew past a batch of 1
        self._executor: ThreadPoolExecutor | None = None
        self.batcher: MicroBatcher | None = None

    @property
    def ready(self) -> bool:
        return self.batcher is not None

    async def load(self) -> None:
        repo = self._repository
        if not isinstance(repo, RepositoryInfo):
            repo = load_repository(repo)
        # The lanes of paired runs have their own threads (the micro-batcher's).
        self._executor = ThreadPoolExecutor(
            max_workers=self._session_concurrency + self._interactive_slots,
            thread_name_prefix="onnxruntime",
        )
        self._models = await self._open(repo)
        self._steps = repo.models_of("inversion_step")
        self.batcher = MicroBatcher(
            self._run_batch,
            self._executor,
            backend_name=self.name,
            concurrency=self._session_concurrency,
            interactive_slots=self._interactive_slots,
            pairable=self._pairable,
            model_bulk_max_batch=self._bulk_limit,
            **self._batcher_options,
        )
        log.info("embedded backend ready", extra={"models": sorted(self._models)})

    async def reload(self, repository: RepositoryInfo) -> None:
        if self._executor is None:
            raise BackendUnavailable("embedded backend is not loaded")
        models = await self._open(repository)  # raises before anything is replaced
        self._models = models
        self._steps = repository.models_of("inversion_step")
        log.info("embedded backend reloaded", extra={"models": sorted(models)})

    async def refresh_metrics(self) -> None:
        """Nothing to read: the micro-batcher sets its gauges as it runs."""

    async def release_memory(self) -> None:
        """Shrink the onnxruntime arenas of the models that ran batches: each keeps the
        buffers of its largest batch (about 290 MB for a batch of 32 inversion steps on the
        shipped models) until a run asks it to let go. One batch-1 run per such model, with
        zeros, in the session threads, then glibc's heap is trimmed."""
        loop = asyncio.get_running_loop()
        grown, self._grown = self._grown, set()
        for model in sorted(grown):
            m = self._models.get(model)
            if m is not None and self._executor is not None:
                for session in (m.session, *m.lanes):
                    await loop.run_in_executor(self._executor, _shrink, session)

    async def _open(self, repo: RepositoryInfo) -> dict[str, _Model]:
        """A session for every model of ``repo`` (unchanged files keep theirs), each checked
        against the signature for every generator that uses it."""
        loop = asyncio.get_running_loop()
        models: dict[str, _Model] = {}
        problems: list[str] = []
        for gen in repo.generators.values():
            for network, model in sorted(gen.models.items()):
                if network not in SIGNATURES:
                    continue
                if model not in models:
                    path = repo.model_path(model)
                    if not path.is_file():
                        raise BackendUnavailable(f"model {model}: {path} not found")
                    old = self._models.get(model)
                    if old is not None and old.stamp == _stamp(path):
                        models[model] = old
                    else:
                        # Sessions are created one after another: building several at
                        # once only fights over the same cores.
                        models[model] = await loop.run_in_executor(
                            self._executor,
                            self._open_session,
                            model,
                            path,
                            network in SPINNING_NETWORKS,
                            self._narrow_pairs and network in PAIRED_NETWORKS,
                        )
                session = models[model].session
                problems += [
                    f"model {model!r} ({network} of {gen.name!r}): {p}"
                    for p in check_served(
                        network,
                        gen.dims,
                        inputs=_served(session.get_inputs()),
                        outputs=_served(session.get_outputs()),
                    )
                ]
        if problems:
            raise BackendUnavailable(
                "the model repository does not match the contract: " + "; ".join(problems)
            )
        return models

    def _open_session(
        self, model: str, path: Path, spinning: bool = True, lanes: bool = False
    ) -> _Model:
        """The model's session, and with ``lanes`` two more of half the threads each."""
        try:
            stamp = _stamp(path)
        except OSError as exc:
            raise BackendUnavailable(f"model {model}: cannot load {path}: {exc}") from None
        session = self._session(model, path, self._intra_op_threads, spinning)
        narrow = self._intra_op_threads // 2
        return _Model(
            session=session,
            inputs=tuple(i.name for i in session.get_inputs()),
            outputs=tuple(o.name for o in session.get_outputs()),
            stamp=stamp,
            lanes=tuple(self._session(model, path, narrow, spinning) for _ in range(2 * lanes)),
        )

    @staticmethod
    def _session(model: str, path: Path, threads: int, spinning: bool) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: exporters leave harmless unused initializers
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own hierarchy
            raise BackendUnavailable(f"model {model}: cannot load {path}: {exc}") from None

    def _bulk_limit(self, model: str) -> int | None:
        if not self._step_bulk_max_batch or model not in self._steps:
            return None
        return self._step_bulk_max_batch

    def _pairable(self, model: str) -> bool:
        m = self._models.get(model)
        return m is not None and bool(m.lanes)

    def _run_batch(
        self, model: str, inputs: dict[str, np.ndarray], lane: int | None = None
    ) -> dict[str, np.ndarray]:
        """One run: on the model's session, or on narrow session ``lane`` of a pair."""
        m = self._models[model]
        if next(iter(inputs.values())).shape[0] > 1:
            self._grown.add(model)
        session = m.session if lane is None else m.lanes[lane]
        results = session.run(None, {name: inputs[name] for name in m.inputs})
        # Copies: onnxruntime's outputs live in the session's arena, and a view kept by a
        # caller (an inversion's best image) would pin that region past release_memory.
        return {name: np.array(r, copy=True) for name, r in zip(m.outputs, results)}

    async def healthy(self) -> bool:
        return self.ready

    async def infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        priority: Priority = Priority.INTERACTIVE,
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        if self.batcher is None:
            raise BackendUnavailable("embedded backend is not loaded")
        m = self._models.get(model)
        if m is None:
            raise BackendUnavailable(f"model {model} is not loaded")
        missing = [n for n in m.inputs if n not in inputs]
        if missing:
            raise GatewayError(f"model {model}: missing inputs {missing}")
        feed = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in m.inputs}
        return await self.batcher.submit(model, feed, priority=priority, timeout=timeout)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
            self.batcher = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._models = {}
