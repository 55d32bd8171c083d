"""``EmbeddedBackend``: the networks run in-process on onnxruntime (CPU), one session per
served model, behind the dynamic micro-batcher. The default backend: the gateway needs
nothing but ``model_repository/``."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stylegate.service.backends.base import Priority
from stylegate.service.backends.batcher import MicroBatcher
from stylegate.service.errors import BackendUnavailable
from stylegate.service.metadata import RepositoryInfo, load_repository
from stylegate.service.signatures import SIGNATURES

log = logging.getLogger(__name__)


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
    ):
        self._repository = repository
        self._intra_op_threads = intra_op_threads
        self._session_concurrency = max(1, session_concurrency)
        self._batcher_options = {
            "max_batch": max_batch,
            "window_s": batch_window_ms / 1000.0,
            "max_queue": max_queue,
        }
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._input_names: dict[str, tuple[str, ...]] = {}
        self._output_names: dict[str, tuple[str, ...]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self.batcher: MicroBatcher | None = None

    @property
    def ready(self) -> bool:
        return self.batcher is not None

    async def load(self) -> None:
        repo = self._repository
        if not isinstance(repo, RepositoryInfo):
            repo = load_repository(repo)
        wanted = {
            model: network for g in repo.generators.values() for network, model in g.models.items()
        }
        self._executor = ThreadPoolExecutor(
            max_workers=self._session_concurrency, thread_name_prefix="onnxruntime"
        )
        loop = asyncio.get_running_loop()
        # Sessions are created one after another: building several at once only fights
        # over the same cores.
        for model, network in sorted(wanted.items()):
            await loop.run_in_executor(
                self._executor, self._load_session, model, network, repo.model_path(model)
            )
        self.batcher = MicroBatcher(
            self._run_batch,
            self._executor,
            backend_name=self.name,
            concurrency=self._session_concurrency,
            **self._batcher_options,
        )
        log.info("embedded backend ready", extra={"models": sorted(self._sessions)})

    def _load_session(self, model: str, network: str, path: Path) -> None:
        if not path.is_file():
            raise BackendUnavailable(f"model {model}: {path} not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._intra_op_threads
        options.log_severity_level = 3  # errors only: exporters leave harmless unused initializers
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own hierarchy
            raise BackendUnavailable(f"model {model}: cannot load {path}: {exc}") from None
        inputs = tuple(i.name for i in session.get_inputs())
        outputs = tuple(o.name for o in session.get_outputs())
        signature = SIGNATURES.get(network)
        if signature is not None:
            missing = [t.name for t in signature.outputs if t.name not in outputs]
            unknown = [n for n in inputs if n not in {t.name for t in signature.inputs}]
            if missing or unknown:
                raise BackendUnavailable(
                    f"model {model} does not match the {network} signature "
                    f"(missing outputs {missing}, unexpected inputs {unknown})"
                )
        self._sessions[model] = session
        self._input_names[model] = inputs
        self._output_names[model] = outputs

    def _run_batch(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._sessions[model]
        feed = {name: inputs[name] for name in self._input_names[model]}
        results = session.run(None, feed)
        return dict(zip(self._output_names[model], results))

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
        if model not in self._sessions:
            raise BackendUnavailable(f"model {model} is not loaded")
        missing = [n for n in self._input_names[model] if n not in inputs]
        if missing:
            raise ValueError(f"model {model}: missing inputs {missing}")
        feed = {
            n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in self._input_names[model]
        }
        return await self.batcher.submit(model, feed, priority=priority, timeout=timeout)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
            self.batcher = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._sessions.clear()
