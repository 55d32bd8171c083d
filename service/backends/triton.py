"""``TritonBackend``: the networks run in a Triton Inference Server, reached over gRPC
(tritonclient's asyncio client). The gateway's concurrent calls to one model (the steps of
many inversions) go through the same micro-batcher as the embedded backend's
(``batcher.py``): merged into one request of up to ``max_batch`` samples, interactive calls
first, at most ``max_in_flight`` requests out at once. Triton's dynamic batcher then merges
the requests of several gateways; ``batch_statistics`` reports the batches Triton ran. One
request per batch instead of one per call is most of what the Triton path costs over the
embedded one on a CPU (docs/design.md, "Coalescing calls before Triton").

Transport failures become ``BackendUnavailable``; the client is created lazily and
re-created after a failure, so the gateway recovers by itself when Triton comes back. A
failed channel is retired, not closed under the calls still using it: closing a gRPC aio
channel cancels every call on it (docs/design.md, "Triton without Docker"), and a
cancellation the caller did not ask for is a failure of the backend (UNAVAILABLE), never
the client going away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from stylegate.service import metrics
from stylegate.service.backends.base import Priority
from stylegate.service.backends.batcher import MicroBatcher
from stylegate.service.errors import (
    BackendUnavailable,
    DeadlineExceeded,
    GatewayError,
    NotFound,
    OverCapacity,
)
from stylegate.service.metadata import RepositoryInfo, load_repository
from stylegate.service.signatures import SIGNATURES, ModelSignature, check_served, signature

log = logging.getLogger(__name__)

# The client's defaults plus a short reconnect backoff (gRPC's grows to 120 s, which would
# keep the gateway failing long after Triton is back) and a subchannel pool of the
# channel's own: with gRPC's global pool a new channel inherits the old one's backoff.
CHANNEL_ARGS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
]


class _Channel:
    """One Triton client and the calls using it. Retired after a transport failure (new
    calls get a fresh channel), it is closed when its last call ends, never before."""

    def __init__(self, client: aioclient.InferenceServerClient, loop: asyncio.AbstractEventLoop):
        self.client = client
        self.loop = loop
        self.users = 0
        self.retired = False
        self.closed = False


@dataclasses.dataclass(frozen=True)
class ExpectedModel:
    """A served model as the gateway will call it: its signature and concrete dims."""

    name: str
    signature: ModelSignature
    generator: str
    inputs: dict[str, tuple[str, tuple[int, ...]]]  # name -> (dtype, per-sample shape)
    outputs: dict[str, tuple[str, tuple[int, ...]]]
    dims: dict[str, int] = dataclasses.field(default_factory=dict)  # the generator's symbols


@dataclasses.dataclass(frozen=True)
class BatchStatistics:
    """Cumulative since the model was loaded in Triton (counters, like Prometheus')."""

    model: str
    inference_count: int  # samples inferred
    execution_count: int  # model executions (batches)
    executions_by_batch_size: dict[int, int]
    queue_seconds: float  # summed over requests
    compute_seconds: float  # summed over requests (input + infer + output)
    request_count: int  # successful requests

    @property
    def mean_batch_size(self) -> float:
        return self.inference_count / self.execution_count if self.execution_count else 0.0

    @property
    def max_batch_size(self) -> int:
        return max((b for b, n in self.executions_by_batch_size.items() if n), default=0)


def expected_models(repository: RepositoryInfo) -> dict[str, ExpectedModel]:
    """Every model the repository's generators name, with dims resolved from their
    metadata. A model shared by generators (the blend's mapping) must agree in both."""
    found: dict[str, ExpectedModel] = {}
    for generator in repository.generators.values():
        dims = generator.dims
        for network, model in generator.models.items():
            if network not in SIGNATURES:
                continue
            sig = signature(network, dims)
            expected = ExpectedModel(
                name=model,
                signature=sig,
                generator=generator.name,
                inputs={t.name: (t.dtype, t.shape(dims)) for t in sig.inputs},
                outputs={t.name: (t.dtype, t.shape(dims)) for t in sig.outputs},
                dims=dims,
            )
            previous = found.get(model)
            if previous is not None and (
                previous.inputs != expected.inputs or previous.outputs != expected.outputs
            ):
                raise BackendUnavailable(
                    f"model {model!r} is used by generators {previous.generator!r} and "
                    f"{generator.name!r} with different tensor dims"
                )
            found.setdefault(model, expected)
    return found


def check_metadata(expected: ExpectedModel, metadata: Mapping) -> list[str]:
    """Differences between Triton's model metadata (``as_json``) and the signature
    (``signatures.check_served``, the same check the embedded backend runs): one line per
    tensor at fault, empty when they match."""
    served = {
        kind: {
            t["name"]: (t.get("datatype", ""), [int(d) for d in t.get("shape", [])])
            for t in metadata.get(kind + "s", [])
        }
        for kind in ("input", "output")
    }
    return [
        f"{p} (generator {expected.generator!r})"
        for p in check_served(
            expected.signature.network,
            expected.dims,
            inputs=served["input"],
            outputs=served["output"],
        )
    ]


class TritonBackend:
    name = "triton"

    def __init__(
        self,
        repository: str
        | Path
        | RepositoryInfo,  # the metadata (stylegate.json) of what Triton serves
        url: str = "localhost:8001",  # Triton's gRPC endpoint, host:port
        *,
        models: Iterable[str]
        | None = None,  # models to check and serve (None: all in the metadata)
        retries: int = 3,  # extra attempts of a call that found Triton UNAVAILABLE
        backoff_s: float = 0.05,  # first retry delay, doubled each retry (with jitter)
        connect_timeout_s: float = 5.0,  # per control call (readiness, metadata, statistics)
        # An inference call Triton does not answer within this (the request's own deadline
        # still ahead) means a hung Triton: the call fails UNAVAILABLE and the channel is
        # replaced, instead of waiting for keepalive (30 + 10 s); None: no cap.
        call_timeout_s: float | None = 10.0,
        channel_args: list[tuple[str, object]] | None = None,  # None: CHANNEL_ARGS
        credentials=None,  # () -> grpc.ChannelCredentials for TLS (read per channel); None: plain
        max_batch: int = 32,  # micro-batcher: samples per request (1: one request per call)
        batch_window_ms: float = 2.0,  # micro-batcher: how long a batch waits for more calls
        max_queue: int = 1024,  # micro-batcher: waiting calls per model
        bulk_max_batch: int | None = None,  # micro-batcher: bulk samples per request
        step_bulk_max_batch: int | None = None,  # ... of the inversion step (None: bulk_max_batch)
        max_in_flight: int = 1,  # requests out at once, all models together
        interactive_slots: int = 1,  # further requests for interactive calls only
    ):
        self._credentials = credentials
        self.url = url
        self._repository = repository
        self._only = set(models) if models is not None else None
        self._retries = retries
        self._backoff_s = backoff_s
        self._connect_timeout_s = connect_timeout_s
        self._call_timeout_s = call_timeout_s
        self._channel_args = channel_args if channel_args is not None else CHANNEL_ARGS
        self._channel: _Channel | None = None  # the one new calls use
        self._expected: dict[str, ExpectedModel] = {}
        self._max_batch: dict[str, int] = {}
        self._loaded = False
        self._available = False
        self._stale: set[str] = set()  # models to check again (after a reconnect)
        self._closed = False
        self._batcher_options = {
            "max_batch": max_batch,
            "window_s": batch_window_ms / 1000.0,
            "max_queue": max_queue,
            "bulk_max_batch": bulk_max_batch,
            "concurrency": max_in_flight,
            "interactive_slots": interactive_slots,
        }
        self._step_bulk_max_batch = step_bulk_max_batch
        self.batcher: MicroBatcher | None = None  # made by load(), in the serving loop

    # -- protocol ---------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._loaded and self._available and not self._closed

    async def load(self) -> None:
        repo = self._repository
        if not isinstance(repo, RepositoryInfo):
            repo = load_repository(repo)
            self._repository = repo
        await self._serve(repo)
        if self.batcher is None:
            self.batcher = MicroBatcher(
                self._send,
                None,
                backend_name=self.name,
                model_bulk_max_batch=self._bulk_limit,
                **self._batcher_options,
            )
        self._loaded = True
        self._available = True
        log.info("triton backend ready", extra={"url": self.url, "models": sorted(self._expected)})

    async def reload(self, repository: RepositoryInfo) -> None:
        """Check ``repository`` against what Triton serves now (Triton loads the models
        itself: poll mode or its model-control API); the old expectations stay on failure."""
        if not self._loaded:
            raise BackendUnavailable("triton backend is not loaded")
        await self._serve(repository)
        self._repository = repository
        log.info("triton backend reloaded", extra={"models": sorted(self._expected)})

    def _bulk_limit(self, model: str) -> int | None:
        repo = self._repository
        if not self._step_bulk_max_batch or not isinstance(repo, RepositoryInfo):
            return None
        return self._step_bulk_max_batch if model in repo.models_of("inversion_step") else None

    async def _serve(self, repo: RepositoryInfo) -> None:
        """Expect ``repo``'s models from now on once Triton serves every one of them as the
        contract says; raise (keeping the previous expectations) otherwise."""
        expected = expected_models(repo)
        if self._only is not None:
            unknown = self._only - set(expected)
            if unknown:
                raise NotFound(f"models {sorted(unknown)} are not in {repo.root}/stylegate.json")
            expected = {m: e for m, e in expected.items() if m in self._only}
        previous = self._expected, self._stale, self._closed
        self._expected, self._stale, self._closed = expected, set(expected), False
        try:
            deadline = time.monotonic() + self._connect_timeout_s * (self._retries + 1)
            ready = await self._call(
                "(server)", deadline, lambda c, t: c.is_server_ready(client_timeout=t)
            )
            if not ready:
                raise BackendUnavailable(f"Triton at {self.url} is not ready")
            problems = []
            for model in sorted(expected):
                problems += await self._call(
                    model,
                    deadline,
                    lambda c, t, m=model: self._verify_model(c, t, m),
                    verify=False,
                )
            if problems:
                raise BackendUnavailable(
                    f"Triton at {self.url} does not serve what the gateway expects: "
                    + "; ".join(problems)
                )
        except BaseException:
            self._expected, self._stale, self._closed = previous
            raise

    async def release_memory(self) -> None:
        """Nothing held here: Triton keeps the tensors."""

    async def refresh_metrics(self) -> None:
        """Triton's cumulative batch statistics as this backend's gauges."""
        for model, st in (await self.batch_statistics()).items():
            metrics.TRITON_INFERENCES.labels(model).set(st.inference_count)
            metrics.TRITON_EXECUTIONS.labels(model).set(st.execution_count)
            metrics.TRITON_MEAN_BATCH.labels(model).set(st.mean_batch_size)

    async def healthy(self) -> bool:
        try:
            ok = bool(
                await self._call(
                    "(server)",
                    None,
                    lambda c, t: c.is_server_ready(client_timeout=self._connect_timeout_s),
                    verify=False,
                    retries=0,
                )
            )
        except Exception:  # noqa: BLE001 - unreachable, timed out or broken: not healthy
            self._available = False
            return False
        self._available = ok
        return ok

    async def infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        priority: Priority = Priority.INTERACTIVE,
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        if self._closed or not self._loaded or self.batcher is None:
            raise BackendUnavailable("triton backend is not loaded")
        expected = self._expected.get(model)
        if expected is None:
            raise NotFound(f"model {model!r} is not served by this gateway", field="model")
        arrays = self._prepare_inputs(expected, inputs)
        return await self.batcher.submit(model, arrays, priority=priority, timeout=timeout)

    async def _send(
        self,
        model: str,
        arrays: dict[str, np.ndarray],
        priority: Priority,
        deadline: float | None,
    ) -> dict[str, np.ndarray]:
        """One batch of the micro-batcher as Triton requests (the batcher times it and
        counts its failure)."""
        if model in self._stale:  # learn max_batch_size again before splitting
            await self._call(model, deadline, _nothing)
        batch = len(next(iter(arrays.values())))
        limit = self._max_batch.get(model) or batch
        if batch <= limit:
            return await self._infer_chunk(model, arrays, priority, deadline)
        # Triton rejects a request larger than max_batch_size: send chunks, concurrently.
        chunks = await asyncio.gather(
            *(
                self._infer_chunk(
                    model, {k: v[i : i + limit] for k, v in arrays.items()}, priority, deadline
                )
                for i in range(0, batch, limit)
            )
        )
        return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}

    async def close(self) -> None:
        """Close the channel now: calls still on it, and calls still waiting to be sent,
        fail with BackendUnavailable."""
        self._closed = True
        self._loaded = False
        channel, self._channel = self._channel, None
        if channel is not None and channel.loop is asyncio.get_running_loop():
            channel.retired = True
            await self._close_channel(channel)
        batcher, self.batcher = self.batcher, None
        if batcher is not None:
            await batcher.close()

    # -- statistics -------------------------------------------------------------------

    async def batch_statistics(
        self, models: Iterable[str] | None = None
    ) -> dict[str, BatchStatistics]:
        """Triton's cumulative statistics of ``models`` (default: all the gateway uses):
        ``mean_batch_size`` = inference_count / execution_count."""
        names = set(models if models is not None else self._expected)
        response = await self._call(
            "(statistics)",
            None,
            lambda c, t: c.get_inference_statistics(client_timeout=t),
            verify=False,
        )
        stats = {}
        for model_stats in response.model_stats:
            if model_stats.name not in names:
                continue
            s = model_stats.inference_stats
            stats[model_stats.name] = BatchStatistics(
                model=model_stats.name,
                inference_count=model_stats.inference_count,
                execution_count=model_stats.execution_count,
                executions_by_batch_size={
                    b.batch_size: b.compute_infer.count for b in model_stats.batch_stats
                },
                queue_seconds=s.queue.ns / 1e9,
                compute_seconds=(s.compute_input.ns + s.compute_infer.ns + s.compute_output.ns)
                / 1e9,
                request_count=s.success.count,
            )
        return stats

    # -- internals --------------------------------------------------------------------

    def _open_client(self) -> aioclient.InferenceServerClient:
        """A client on a new channel to Triton: the one place the channel is made."""
        creds = self._credentials() if self._credentials is not None else None
        return aioclient.InferenceServerClient(
            self.url, channel_args=self._channel_args, creds=creds
        )

    def _acquire(self) -> _Channel:
        """The current channel, created on first use in the running event loop (a gRPC aio
        channel belongs to the loop that made it), counted as used until ``_release``."""
        loop = asyncio.get_running_loop()
        channel = self._channel
        if channel is None or channel.loop is not loop:
            # a channel of another (finished) loop cannot be closed from this one
            channel = self._channel = _Channel(self._open_client(), loop)
        channel.users += 1
        return channel

    async def _release(self, channel: _Channel) -> None:
        channel.users -= 1
        if channel.retired and channel.users == 0:
            await self._close_channel(channel)

    async def _retire(self, channel: _Channel) -> None:
        """New calls get a fresh channel (no waiting out gRPC's reconnect backoff); this
        one is closed once no call uses it (closing it now would cancel them)."""
        if channel is self._channel:
            self._channel = None
        channel.retired = True
        if channel.users == 0:
            await self._close_channel(channel)

    @staticmethod
    async def _close_channel(channel: _Channel) -> None:
        if channel.closed:
            return
        channel.closed = True
        try:
            await channel.client.close()
        except Exception as exc:  # noqa: BLE001 - closing a broken channel may fail
            log.debug("closing the Triton channel failed: %r", exc)

    async def _transport_failed(self, exc: Exception, channel: _Channel) -> None:
        """Triton unreachable: the channel retired, and every model checked again before
        its next call (Triton may come back with other models)."""
        if self._available:
            log.warning("triton unavailable", extra={"url": self.url, "error": str(exc)})
        self._available = False
        self._stale = set(self._expected)
        await self._retire(channel)

    async def _call(
        self,
        model: str,
        deadline: float | None,
        fn,
        *,
        verify: bool = True,
        retries: int | None = None,  # None: the backend's
    ):
        """``await fn(client, timeout)``, first checking ``model`` again if it is stale;
        transport failures retried with exponential backoff within the deadline."""
        retries = self._retries if retries is None else retries
        attempt = 0
        while True:
            timeout = self._timeout_left(deadline, model)
            channel = self._acquire()
            capped = hung = False
            try:
                if verify and model in self._stale:
                    problems = await self._verify_model(channel.client, timeout, model)
                    if problems:
                        raise BackendUnavailable("; ".join(problems))
                    timeout = self._timeout_left(deadline, model)
                cap = self._call_timeout_s
                capped = cap is not None and (timeout is None or timeout > cap)
                return await fn(channel.client, cap if capped else timeout)
            except InferenceServerException as exc:
                error, transport = self._error(exc, model)
                failure: Exception = exc
                if capped and isinstance(error, DeadlineExceeded):
                    # our cap, not the request's deadline: Triton is hung. Not retried (a
                    # retry would hang as long again); the next call gets a new channel.
                    error = BackendUnavailable(
                        f"Triton at {self.url}, model {model!r}: no answer within "
                        f"{self._call_timeout_s:g} s"
                    )
                    transport = hung = True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise  # the caller's own cancellation: the client went away
                # gRPC cancelled the call under us (its channel was closed): a failure of
                # the backend, which the client must hear about as one
                reason = "backend closed" if self._closed else "call cancelled by the channel"
                error = BackendUnavailable(f"Triton at {self.url}, model {model!r}: {reason}")
                transport, failure = True, error
            finally:
                await self._release(channel)
            if hung:
                await self._transport_failed(error, channel)
                raise error from None
            if not transport or self._closed:
                raise error from None
            await self._transport_failed(failure, channel)
            delay = self._backoff_s * (2**attempt) * random.uniform(0.5, 1.5)
            if attempt >= retries or (
                deadline is not None and time.monotonic() + delay >= deadline
            ):
                raise error from None
            attempt += 1
            await asyncio.sleep(delay)

    def _timeout_left(self, deadline: float | None, model: str) -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"the request's deadline passed before model {model!r} ran")
        return left

    async def _verify_model(self, client, timeout: float | None, model: str) -> list[str]:
        """Problems with one model (empty: READY and matching the signature); learns its
        max_batch_size. Raises InferenceServerException on transport failure."""
        expected = self._expected[model]
        timeout = min(timeout or self._connect_timeout_s, self._connect_timeout_s)
        if not await client.is_model_ready(model, client_timeout=timeout):
            return [f"model {model!r} is not ready"]
        metadata = await client.get_model_metadata(model, as_json=True, client_timeout=timeout)
        config = await client.get_model_config(model, as_json=True, client_timeout=timeout)
        problems = [
            f"model {model!r} ({expected.signature.network}): {p}"
            for p in check_metadata(expected, metadata)
        ]
        if not problems:
            self._max_batch[model] = int(config.get("config", {}).get("max_batch_size", 0))
            self._stale.discard(model)
        return problems

    def _prepare_inputs(
        self, expected: ExpectedModel, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        arrays = {}
        batch = None
        for name, (_, shape) in expected.inputs.items():
            if name not in inputs:
                raise GatewayError(f"model {expected.name!r}: missing input {name!r}")
            array = np.ascontiguousarray(
                inputs[name], dtype=expected.signature.input(name).numpy_dtype
            )
            if array.shape[1:] != shape or (batch is not None and len(array) != batch):
                rows = batch if batch is not None else "batch"
                raise GatewayError(
                    f"model {expected.name!r}: input {name!r} has shape {array.shape}, "
                    f"expected [{rows}, {', '.join(map(str, shape))}]"
                )
            batch = len(array)
            arrays[name] = array
        return arrays

    async def _infer_chunk(
        self,
        model: str,
        arrays: dict[str, np.ndarray],
        priority: Priority,
        deadline: float | None,
    ) -> dict[str, np.ndarray]:
        expected = self._expected[model]
        requests = []
        for name, array in arrays.items():
            tensor = grpcclient.InferInput(name, list(array.shape), expected.inputs[name][0])
            tensor.set_data_from_numpy(array)
            requests.append(tensor)
        outputs = [grpcclient.InferRequestedOutput(name) for name in expected.outputs]

        def call(client, timeout):
            return client.infer(
                model,
                requests,
                outputs=outputs,
                priority=int(priority),
                client_timeout=timeout,
                # Triton also drops the request from its queue past this point (when the
                # model's queue policy allows the override).
                timeout=None if timeout is None else max(1, int(timeout * 1e6)),
            )

        result = await self._call(model, deadline, call)
        self._available = True
        return {name: _writable(result.as_numpy(name)) for name in expected.outputs}

    def _error(self, exc: InferenceServerException, model: str) -> tuple[Exception, bool]:
        """Triton's status -> (domain error, whether it is a transport failure). Only
        transport failures are retried: every stylegate model is a pure function of its
        inputs, so repeating a call is harmless."""
        status = (exc.status() or "").removeprefix("StatusCode.")
        message = exc.message() or str(exc)
        where = f"Triton at {self.url}, model {model!r}"
        if "queue size" in message or status == "RESOURCE_EXHAUSTED":
            return OverCapacity(f"{where}: {message}"), False
        if status == "UNAVAILABLE":
            return BackendUnavailable(f"{where}: {message}"), True
        if status == "DEADLINE_EXCEEDED":
            return DeadlineExceeded(f"{where}: {message}"), False
        if status == "CANCELLED":
            # never the client's cancellation (that cancels the caller's task): Triton's
            # side or the channel's, so a failure of the backend
            if self._closed:
                return BackendUnavailable(f"{where}: backend closed"), False
            return BackendUnavailable(f"{where}: cancelled by Triton: {message}"), True
        if status == "NOT_FOUND" or "not ready" in message:  # unloaded / unknown model
            return BackendUnavailable(f"{where}: {message}"), False
        if status == "INVALID_ARGUMENT":  # Triton rejects a tensor the gateway built
            return GatewayError(f"{where}: {message}"), False
        return RuntimeError(f"{where}: {status}: {message}"), False


async def _nothing(client, timeout) -> None:
    return None


def _writable(array: np.ndarray) -> np.ndarray:
    # tritonclient returns views of the response bytes (read-only); callers may update in place
    return array if array.flags.writeable else array.copy()
