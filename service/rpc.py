"""The one place where RPCs meet errors and metrics: every servicer method is wrapped by
``@rpc``, which counts it, times it, tracks it in flight (for draining), refuses new work
while draining, admits it (service/admission.py: per kind and per client, with the time
limits of inversions and of stream writes), and turns domain exceptions into gRPC status
codes. Unknown exceptions become INTERNAL with an error id; the traceback goes to the log
only."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import message_factory

from stylegate.service import admission, metrics
from stylegate.service.admission import Kind
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

    def __init__(
        self,
        *,
        trim_after_s: float = 0.5,
        on_idle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.count = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._trim_after_s = trim_after_s  # idle this long after load: hand memory back
        self._trim: asyncio.TimerHandle | None = None
        self._on_idle = on_idle  # e.g. the backend's release_memory
        self._releasing: asyncio.Task | None = None

    def enter(self) -> None:
        if self.draining:
            raise BackendUnavailable("the server is shutting down")
        self.count += 1
        self._idle.clear()
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()
            if self._trim_after_s >= 0:
                loop = asyncio.get_running_loop()
                self._trim = loop.call_later(self._trim_after_s, self._release)

    def _release(self) -> None:
        """Idle for ``trim_after_s`` after load: the backend's buffers, then glibc's heap."""
        if self._releasing is not None and not self._releasing.done():
            return
        self._releasing = asyncio.get_running_loop().create_task(self._release_memory())

    async def _release_memory(self) -> None:
        try:
            if self._on_idle is not None:
                await self._on_idle()
        except Exception:  # best effort; serving goes on
            log.warning("releasing memory failed", exc_info=True)
        await asyncio.get_running_loop().run_in_executor(None, admission.release_memory)

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


# a method's kind, or a function (servicer, request) -> Kind when it depends on the request
KindOf = Kind | Callable[[Any, Any], Kind]


@contextlib.asynccontextmanager
async def _accounted(
    servicer: Any, method: str, context: grpc.aio.ServicerContext, request: Any, kind: KindOf
):
    """Around one RPC: in-flight accounting, admission, latency, the status metric, and the
    one place domain errors become gRPC status codes."""
    started = time.perf_counter()
    metrics.RPC_IN_FLIGHT.labels(method).inc()
    entered = False
    try:
        servicer.in_flight.enter()
        entered = True
        kind = kind if isinstance(kind, Kind) else kind(servicer, request)
        client = admission.client_identity(context)
        with servicer.admission.admit(kind, client, request.ByteSize()):
            if kind is Kind.INVERSION:
                limit = servicer.settings.max_inversion_s
                try:
                    async with asyncio.timeout(limit):
                        yield
                except TimeoutError:
                    raise DeadlineExceeded(
                        f"the inversion ran past this server's time limit of {limit:g} s"
                    ) from None
            else:
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


async def _write(context: grpc.aio.ServicerContext, message: Any, timeout: float) -> None:
    """Send one stream message, waiting at most ``timeout`` for the client to take it: a
    client that stops reading must not hold its slot (and the messages queued for it)
    forever."""
    try:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that arrives as the write completes (the inversion time limit above was lost so).
        async with asyncio.timeout(timeout):
            await context.write(message)
    except TimeoutError:
        raise OverCapacity(
            f"the client did not read the stream for {timeout:g} s; the stream was ended"
        ) from None


def rpc(method: str, kind: KindOf = Kind.LIGHT) -> Callable:
    """Decorate a servicer method (``async def`` or async generator) named ``method`` whose
    work is of ``kind`` (service/admission.py; a function of the request when it depends on
    it). The servicer must have ``in_flight: InFlight``, ``admission: Admission`` and
    ``settings`` attributes. A streaming method's messages are written here, each within
    ``settings.write_timeout_s``."""

    def wrap(fn: Callable) -> Callable:
        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext):
                if isinstance(request, Undecodable):
                    await _fail(context, method, request.error())
                async with _accounted(self, method, context, request, kind):
                    messages = fn(self, request, context)
                    try:
                        async for message in messages:
                            await _write(context, message, self.settings.write_timeout_s)
                    finally:
                        await messages.aclose()

            return stream

        @functools.wraps(fn)
        async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext):
            if isinstance(request, Undecodable):
                await _fail(context, method, request.error())
            async with _accounted(self, method, context, request, kind):
                return await fn(self, request, context)

        return unary

    return wrap


# -- request deserialization -----------------------------------------------------------------
# grpc turns an exception of a request deserializer into UNKNOWN with the exception's class
# in the message. Here a request that does not parse becomes an ``Undecodable`` instead, which
# ``@rpc`` answers with INVALID_ARGUMENT before any admission or work.


class Undecodable:
    """What a request that is not a valid ``message_type`` protobuf deserializes to."""

    def __init__(self, message_type: str):
        self.message_type = message_type

    def error(self) -> InvalidInput:
        return InvalidInput(
            f"the request is not a valid {self.message_type} protobuf message", field="request"
        )


def deserializer(message_class: Any) -> Callable[[bytes], Any]:
    """``message_class.FromString``, returning an ``Undecodable`` where that raises."""

    def parse(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except Exception:  # noqa: BLE001 - DecodeError, invalid UTF-8, nesting too deep, ...
            return Undecodable(message_class.DESCRIPTOR.full_name)

    return parse


def add_servicer(servicer: Any, server: grpc.aio.Server, service: Any) -> None:
    """Register ``servicer``'s methods of ``service`` (a protobuf ServiceDescriptor) on
    ``server``, like the generated ``add_..._to_server`` but with ``deserializer``."""
    handlers = {}
    for m in service.methods:
        if m.client_streaming:
            raise ValueError(f"{m.full_name}: client streaming is not supported here")
        make = (
            grpc.unary_stream_rpc_method_handler
            if m.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[m.name] = make(
            getattr(servicer, m.name),
            request_deserializer=deserializer(message_factory.GetMessageClass(m.input_type)),
            response_serializer=message_factory.GetMessageClass(m.output_type).SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
