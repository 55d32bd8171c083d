"""Domain errors of the gateway. Each carries a reason naming the field at fault; the one
mapping to gRPC status codes is ``service/rpc.py`` (``STATUS_CODES``, applied by the
``@rpc`` decorator on every servicer method), never in the core code."""

from __future__ import annotations

import re

MAX_ECHO = 200  # characters of a client-supplied string quoted back in a message or a log
MAX_MESSAGE = 2000  # characters of a status message: it must fit gRPC's status trailer
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # heap addresses in reprs: never in a message


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` quoted for a message, at most ``limit`` characters of it: a client's string
    (a model or direction name) is echoed bounded, so a 60 MB name costs no 60 MB status
    message or log line, and a NOT_FOUND stays a NOT_FOUND."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def bounded(message: str, limit: int = MAX_MESSAGE) -> str:
    """A message fit for a client: no heap addresses, at most ``limit`` characters."""
    message = _ADDRESS.sub("", message)
    if len(message) > limit:
        message = f"{message[:limit]}... (truncated)"
    return message


class StylegateError(Exception):
    """Base class: ``field`` names the request field at fault, when there is one. The
    message (``str()``) is bounded and carries no heap addresses (see ``bounded``)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field

    def __str__(self) -> str:
        msg = super().__str__()
        return bounded(f"{self.field}: {msg}" if self.field else msg)


class InvalidInput(StylegateError):
    """Malformed request: bad image, wrong shape, NaN/Inf, over a cap (INVALID_ARGUMENT)."""


class NotFound(StylegateError):
    """Unknown model, generator or direction (NOT_FOUND)."""


class OverCapacity(StylegateError):
    """Queues full or too many in-flight inversions (RESOURCE_EXHAUSTED)."""


class DeadlineExceeded(StylegateError):
    """The request's deadline passed before the work finished (DEADLINE_EXCEEDED)."""


class BackendUnavailable(StylegateError):
    """The inference backend cannot be reached or a model is not ready (UNAVAILABLE)."""


class Cancelled(StylegateError):
    """The client went away (CANCELLED)."""


class FailedPrecondition(StylegateError):
    """The request is well-formed but the served models cannot do it (a generator without
    the networks an inversion method needs, a broken repository on reload); the message
    names the fix (FAILED_PRECONDITION)."""


class GatewayError(StylegateError):
    """A mistake of the gateway itself (a tensor it built does not fit the model): never
    the client's fault, so INTERNAL with an error id, the details in the log only."""
