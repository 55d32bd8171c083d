"""The backend protocol: what the gateway needs from whatever runs the networks.

Two implementations, interchangeable by configuration: ``EmbeddedBackend`` (onnxruntime
in-process with its own dynamic micro-batcher, the default) and ``TritonBackend``
(tritonclient gRPC to a tritonserver). Both speak in model names from the repository
metadata and numpy arrays whose first dimension is the batch; a call may carry several
samples, and the backend may merge concurrent calls into one batch.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from stylegate.service.errors import DeadlineExceeded

if TYPE_CHECKING:
    from stylegate.service.metadata import RepositoryInfo


class Priority(enum.IntEnum):
    """Interactive requests (Generate, Edit, Invert) go before bulk ones (BatchGenerate)."""

    INTERACTIVE = 1
    BULK = 2


@dataclasses.dataclass(frozen=True)
class Call:
    """How the backend calls of one request are made: priority and absolute deadline."""

    priority: Priority = Priority.INTERACTIVE
    deadline: float | None = None  # time.monotonic() value; None: no deadline

    def timeout(self) -> float | None:
        """Seconds left; DeadlineExceeded when none are."""
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the request deadline passed")
        return left


@runtime_checkable
class Backend(Protocol):
    name: str  # "embedded" | "triton"

    async def load(self) -> None:
        """Connect / create sessions and check every model the gateway needs.
        Raises ``BackendUnavailable`` (naming the model) when one is missing or mismatched."""

    @property
    def ready(self) -> bool:
        """True once ``load`` succeeded and the backend is serving."""

    async def healthy(self) -> bool:
        """Cheap liveness check (Triton: server ready; embedded: sessions loaded)."""

    async def infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        priority: Priority = Priority.INTERACTIVE,
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Run ``model`` on ``inputs`` (names and dtypes from service/signatures.py, leading
        batch dim). Returns every output of the model, batch-aligned with the inputs.
        ``timeout``: seconds left of the request's deadline (DeadlineExceeded past it).
        Raises ``BackendUnavailable`` on transport failure, ``OverCapacity`` when queues are
        full, ``GatewayError`` when the inputs do not fit the model (the gateway's mistake)."""

    async def reload(self, repository: RepositoryInfo) -> None:
        """Serve ``repository`` from now on: load new or changed models and check them like
        ``load``. On any problem raise and keep serving the old repository."""

    async def refresh_metrics(self) -> None:
        """Update this backend's own gauges (called by the health watcher)."""

    async def release_memory(self) -> None:
        """Hand back memory kept from past peaks of load (called when the gateway goes idle;
        a call arriving meanwhile must still work)."""

    async def close(self) -> None:
        """Release sessions/channels; pending calls fail with BackendUnavailable."""
