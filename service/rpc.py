"""The one place where RPCs meet errors and metrics: every servicer method is wrapped by
``@rpc``, which counts it, times it, tracks it in flight (for draining), refuses new work
while draining, and turns domain exceptions into gRPC status codes. Unknown exceptions
become INTERNAL with an error id; the traceback goes to the log only."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from stylegate.service import metrics
from stylegate.service.errors import (
    BackendUnavailable,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    GatewayError,
    InvalidInput,
    NotFound,
    OverCapacity,
    StylegateError,
)

log = logging.getLogger(__name__)

STATUS_CODES: dict[type[StylegateError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    OverCapacity: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    BackendUnavailable: grpc.StatusCode.UNAVAILABLE,
    Cancelled: grpc.StatusCode.CANCELLED,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
}


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """gRPC status code and client-facing message of an exception."""
    if isinstance(exc, GatewayError):  # ours, not the client's: INTERNAL like any bug
        return grpc.StatusCode.INTERNAL, ""
    for kind in type(exc).__mro__:
        code = STATUS_CODES.get(kind)  # type: ignore[arg-type]
        if code is not None:
            return code, str(exc)
    if isinstance(exc, asyncio.TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"
    return grpc.StatusCode.INTERNAL, ""


class InFlight:
    """Counts RPCs in progress so shutdown can wait for them; refuses new ones while draining."""

    def __init__(self) -> None:
        self.count = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        if self.draining:
            raise BackendUnavailable("the server is shutting down")
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False


async def _fail(
    context: grpc.aio.ServicerContext, method: str, exc: BaseException
) -> grpc.StatusCode:
    code, message = status_of(exc)
    if code is grpc.StatusCode.INTERNAL:
        error_id = uuid.uuid4().hex[:12]
        log.error(
            "unhandled error in %s",
            method,
            exc_info=exc,
            extra={"rpc": method, "error_id": error_id},
        )
        message = f"internal error (id {error_id}, details in the server log)"
    else:
        log.info(
            "%s failed: %s %s", method, code.name, message, extra={"rpc": method, "code": code.name}
        )
    metrics.RPC_REQUESTS.labels(method, code.name).inc()
    await context.abort(code, message)
    return code  # not reached: abort raises


@contextlib.asynccontextmanager
async def _accounted(servicer: Any, method: str, context: grpc.aio.ServicerContext):
    """Around one RPC: in-flight accounting, latency, the status metric, and the one place
    domain errors become gRPC status codes."""
    started = time.perf_counter()
    metrics.RPC_IN_FLIGHT.labels(method).inc()
    entered = False
    try:
        servicer.in_flight.enter()
        entered = True
        yield
        metrics.RPC_REQUESTS.labels(method, "OK").inc()
    except asyncio.CancelledError:
        metrics.RPC_REQUESTS.labels(method, "CANCELLED").inc()
        raise
    except Exception as exc:  # noqa: BLE001 - mapped right here
        await _fail(context, method, exc)
    finally:
        metrics.RPC_IN_FLIGHT.labels(method).dec()
        metrics.RPC_LATENCY.labels(method).observe(time.perf_counter() - started)
        if entered:
            servicer.in_flight.leave()


def rpc(method: str) -> Callable:
    """Decorate a servicer method (``async def`` or async generator) named ``method``.
    The servicer must have an ``in_flight: InFlight`` attribute."""

    def wrap(fn: Callable) -> Callable:
        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext):
                async with _accounted(self, method, context):
                    async for message in fn(self, request, context):
                        yield message

            return stream

        @functools.wraps(fn)
        async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext):
            async with _accounted(self, method, context):
                return await fn(self, request, context)

        return unary

    return wrap
