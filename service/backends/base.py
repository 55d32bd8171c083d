"""The backend protocol: what the gateway needs from whatever runs the networks.

Two implementations, interchangeable by configuration: ``EmbeddedBackend`` (onnxruntime
in-process with its own dynamic micro-batcher, the default) and ``TritonBackend``
(tritonclient gRPC to a tritonserver). Both speak in model names from the repository
metadata and numpy arrays whose first dimension is the batch; a call may carry several
samples, and the backend may merge concurrent calls into one batch.
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

import numpy as np


class Priority(enum.IntEnum):
    """Interactive requests (Generate, Edit, Invert) go before bulk ones (BatchGenerate)."""

    INTERACTIVE = 1
    BULK = 2


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
        Raises ``BackendUnavailable`` on transport failure, ``OverCapacity`` when queues are full."""

    async def close(self) -> None:
        """Release sessions/channels; pending calls fail with BackendUnavailable."""
