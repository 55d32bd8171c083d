"""The playground's side of the gateway: one grpc.aio channel, the latents the browser refers
to by id, readable messages for gRPC failures, and cancellation of superseded calls."""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import io
import re
import secrets

import grpc
import numpy as np

from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.protos.v1 import stylegate_pb2_grpc as pb_grpc
from stylegate.service.client import MAX_MESSAGE_BYTES, tensor_to_array, to_tensor

# gRPC status -> HTTP status of the JSON error the browser gets.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.CANCELLED: 499,
}
# "image.data: not an image ..." -> field "image.data"
_FIELD = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")


class UiError(Exception):
    """A failure the page shows beside the control that caused it (one readable line)."""

    def __init__(self, message: str, *, status: int = 400, field: str = "", code: str = ""):
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field
        self.code = code

    def payload(self) -> dict:
        return {"error": self.message, "field": self.field, "code": self.code}


def readable(err: grpc.RpcError, address: str) -> UiError:
    """A gRPC failure as a message a user can act on. The gateway's INVALID_ARGUMENT and
    NOT_FOUND details already name the field; transport failures get the address."""
    code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
    details = (err.details() if callable(getattr(err, "details", None)) else "") or ""
    status = HTTP_STATUS.get(code, 502)
    if code == grpc.StatusCode.UNAVAILABLE:
        message = f"gateway unavailable at {address} (is `stylegate serve` running there?)"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = f"the gateway at {address} did not answer in time"
    elif code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
        message = f"too large for the gateway: {details}"
        status = 413
    elif code == grpc.StatusCode.UNAUTHENTICATED:
        message = f"the gateway refused the credentials: {details}"
    else:
        message = details or code.name.lower().replace("_", " ")
    match = _FIELD.match(details)
    return UiError(message, status=status, field=match.group(1) if match else "", code=code.name)


def data_url(image: pb.Image) -> str:
    """An encoded gateway image as a data: URL the page can show and download."""
    mime = {
        pb.IMAGE_FORMAT_JPEG: "image/jpeg",
        pb.IMAGE_FORMAT_WEBP: "image/webp",
    }.get(image.format, "image/png")
    return f"data:{mime};base64,{base64.b64encode(image.data).decode('ascii')}"


def npy_bytes(ws: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(ws, dtype=np.float32))
    return buf.getvalue()


@dataclasses.dataclass
class Latent:
    ws: np.ndarray  # [num_ws, w_dim] float32
    model: str  # the generator it belongs to
    label: str  # what the page shows ("seed 7", "face.png (in_domain)")


class LatentStore:
    """Latents by id, the most recent ``capacity`` kept: the browser holds ids, not arrays,
    and a forgotten tab costs a bounded amount of memory."""

    def __init__(self, capacity: int = 512):
        self.capacity = capacity
        self._items: collections.OrderedDict[str, Latent] = collections.OrderedDict()

    def put(self, latent: Latent) -> str:
        key = secrets.token_hex(8)
        self._items[key] = latent
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return key

    def get(self, key: str, *, field: str = "latent") -> Latent:
        latent = self._items.get(str(key))
        if latent is None:
            raise UiError(
                f"{field}: unknown or expired latent; invert an image or pick a seed again",
                status=404,
                field=field,
            )
        self._items.move_to_end(key)
        return latent

    def __len__(self) -> int:
        return len(self._items)


@dataclasses.dataclass
class _Slot:
    call: object  # a grpc.aio call (has .cancel())
    superseded: bool = False


class Superseded(Exception):
    """A newer request of the same page and kind replaced this one (its call is cancelled)."""


class Gateway:
    """The channel, the stub and the per-page slots of in-flight calls."""

    def __init__(
        self,
        address: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        server_name: str | None = None,
        token: str | None = None,
        timeout: float = 300.0,
    ):
        self.address = address
        self.timeout = timeout
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        options: list[tuple[str, object]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        if credentials is not None:
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            self.channel = grpc.aio.secure_channel(address, credentials, options=options)
        else:
            self.channel = grpc.aio.insecure_channel(address, options=options)
        self.stub = pb_grpc.StyleGateStub(self.channel)
        self.latents = LatentStore()
        self.active_calls = 0  # gateway calls in flight for the page (health shows it)
        self._slots: dict[tuple[str, str], _Slot] = {}

    async def close(self) -> None:
        await self.channel.close()

    # -- calls ----------------------------------------------------------------------------
    async def unary(self, method: str, request, *, slot: tuple[str, str] | None = None):
        """One unary call; a newer call with the same ``slot`` (page session, kind) cancels
        this one, which then raises Superseded."""
        call = getattr(self.stub, method)(request, timeout=self.timeout, metadata=self.metadata)
        entry = self._claim(slot, call)
        self.active_calls += 1
        try:
            return await call
        except asyncio.CancelledError:
            if entry is not None and entry.superseded and not _cancelling():
                raise Superseded() from None
            call.cancel()
            raise
        except grpc.RpcError as err:
            raise readable(err, self.address) from None
        finally:
            self.active_calls -= 1
            self._release(slot, entry)

    def stream(self, method: str, request, *, slot: tuple[str, str] | None = None) -> Stream:
        call = getattr(self.stub, method)(request, timeout=self.timeout, metadata=self.metadata)
        return Stream(self, call, slot, self._claim(slot, call))

    def _claim(self, slot: tuple[str, str] | None, call) -> _Slot | None:
        if slot is None or not slot[0]:
            return None
        previous = self._slots.get(slot)
        if previous is not None:
            previous.superseded = True
            previous.call.cancel()
        entry = self._slots[slot] = _Slot(call)
        return entry

    def _release(self, slot: tuple[str, str] | None, entry: _Slot | None) -> None:
        if slot is not None and entry is not None and self._slots.get(slot) is entry:
            del self._slots[slot]

    # -- latents --------------------------------------------------------------------------
    def keep(self, ws: pb.Tensor | np.ndarray, model: str, label: str) -> str:
        array = tensor_to_array(ws) if isinstance(ws, pb.Tensor) else np.asarray(ws, np.float32)
        return self.latents.put(Latent(array, model, label))

    def source(self, key: str, *, field: str = "latent") -> pb.LatentSource:
        return pb.LatentSource(ws=to_tensor(self.latents.get(key, field=field).ws))


class Stream:
    """A server-streaming call read message by message; cancelled on close (the browser
    went away, or a newer stream of the same page replaced it)."""

    def __init__(self, gateway: Gateway, call, slot, entry: _Slot | None):
        self.gateway, self.call, self.slot, self.entry = gateway, call, slot, entry
        gateway.active_calls += 1
        self._open = True

    async def read(self):
        """The next message, or None at the end of the stream."""
        try:
            message = await self.call.read()
        except asyncio.CancelledError:
            if self.entry is not None and self.entry.superseded and not _cancelling():
                raise Superseded() from None
            raise
        except grpc.RpcError as err:
            raise readable(err, self.gateway.address) from None
        return None if message is grpc.aio.EOF else message

    def close(self) -> None:
        if self._open:
            self._open = False
            self.call.cancel()
            self.gateway.active_calls -= 1
            self.gateway._release(self.slot, self.entry)


def _cancelling() -> bool:
    """Whether the current task itself is being cancelled (not just the call it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
