"""Admission control: how much work the gateway takes on at once, per kind of RPC and per
client, decided before any work starts. Past a limit an RPC is refused at once with
OverCapacity (RESOURCE_EXHAUSTED): nothing waits in a queue, so a refusal costs well under
a millisecond and a flood cannot grow memory. Each kind has its own pool, so bulk work
(BatchGenerate, large Generates, inversions) can never take the slots interactive calls
need; the backends then run interactive calls before bulk ones (service/backends/batcher.py).

Also here: the allocator settings that let the process hand memory back after a burst
(``tune_allocator``, ``release_memory``), measured by ``bench/soak.py`` and
tests/test_service_memory.py."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import ctypes.util
import enum
import logging
from collections.abc import Iterator
from typing import Any

import grpc

from stylegate.service import security
from stylegate.service.errors import OverCapacity
from stylegate.service.settings import Settings

log = logging.getLogger(__name__)


class Kind(enum.Enum):
    """Pools of admission, one per kind of work (the value names it in messages)."""

    LIGHT = "metadata requests"  # ListModels, ModelInfo, ListDirections, Reload
    INTERACTIVE = "interactive requests"  # Generate, Edit of a latent, StyleMix, Interpolate
    LARGE = "large requests"  # Generates / Interpolates of over interactive_max_images images
    BATCH = "BatchGenerate streams"
    INVERSION = "inversions"  # Invert, Edit of an image (an inversion first)


BULK_KINDS = frozenset({Kind.LARGE, Kind.BATCH, Kind.INVERSION})
LARGE_REQUEST = 1 << 20  # requests over this many bytes count against the request budget


def client_identity(context: grpc.aio.ServicerContext) -> str:
    """Who is calling, for the per-client limits: the peer's address without its port (one
    client opening many connections is still one client). Authentication can return its
    own identity here (e.g. the mTLS subject or the token's name) before falling back."""
    identity = security.authenticated_identity()  # set by security.AccessInterceptor
    if identity:
        return f"client:{identity}"
    peer = context.peer() or "unknown"  # "ipv4:127.0.0.1:54321", "ipv6:[::1]:5", "unix:..."
    scheme, _, rest = peer.partition(":")
    if scheme in ("ipv4", "ipv6"):
        host, _, _port = rest.rpartition(":")
        return f"{scheme}:{host or rest}"
    return peer


class Pool:
    """Concurrent RPCs of one kind: at most ``total``, at most ``per_client`` per client."""

    def __init__(self, kind: Kind, total: int, per_client: int):
        self.kind = kind
        self.total = max(0, total)
        self.per_client = max(0, min(per_client, total))
        self.count = 0
        self.by_client: collections.Counter[str] = collections.Counter()

    def take(self, client: str) -> None:
        if self.count >= self.total:
            raise OverCapacity(
                f"{self.count} {self.kind.value} are running, the server's limit is "
                f"{self.total}; retry later"
            )
        if self.by_client[client] >= self.per_client:
            raise OverCapacity(
                f"this client has {self.by_client[client]} {self.kind.value} running, "
                f"the limit per client is {self.per_client}; retry later"
            )
        self.count += 1
        self.by_client[client] += 1

    def give(self, client: str) -> None:
        self.count -= 1
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]


class Admission:
    """Every kind's pool, sized from the settings. Used from the event loop only (no locks:
    ``admit`` never awaits)."""

    def __init__(self, settings: Settings):
        s = settings
        self.pools = {
            Kind.LIGHT: Pool(Kind.LIGHT, s.max_light_rpcs, s.max_light_rpcs_per_client),
            Kind.INTERACTIVE: Pool(
                Kind.INTERACTIVE, s.max_interactive_rpcs, s.max_interactive_rpcs_per_client
            ),
            Kind.LARGE: Pool(Kind.LARGE, s.max_large_rpcs, s.max_large_rpcs_per_client),
            Kind.BATCH: Pool(Kind.BATCH, s.max_batch_streams, s.max_batch_streams_per_client),
            Kind.INVERSION: Pool(
                Kind.INVERSION, s.max_concurrent_inversions, s.max_inversions_per_client
            ),
        }
        self.max_request_bytes = s.max_request_bytes_in_flight
        self.request_bytes = 0  # bytes of the large requests held now

    @contextlib.contextmanager
    def admit(self, kind: Kind, client: str, size: int = 0) -> Iterator[None]:
        """Hold one place of ``kind`` for ``client`` (and, for a request over 1 MiB, its
        ``size`` bytes of the request budget) for the body; OverCapacity when none."""
        size = size if size > LARGE_REQUEST else 0
        if size and self.request_bytes + size > self.max_request_bytes:
            raise OverCapacity(
                f"{self.request_bytes >> 20} MiB of large requests are being processed, the "
                f"server's limit is {self.max_request_bytes >> 20} MiB; retry later"
            )
        pool = self.pools[kind]
        pool.take(client)
        self.request_bytes += size
        try:
            yield
        finally:
            pool.give(client)
            self.request_bytes -= size

    def in_use(self, kind: Kind, client: str | None = None) -> int:
        pool = self.pools[kind]
        return pool.count if client is None else pool.by_client.get(client, 0)


def images_asked(request: Any) -> int:
    """Images a Generate or Interpolate request asks for, read without parsing it (so a
    large request is admitted as LARGE before any work)."""
    if hasattr(request, "frames"):
        return int(request.frames) or 8  # Interpolate: the proto's default
    return len(request.seeds) + len(request.z)


# ---------------------------------------------------------------- memory given back
# glibc keeps freed memory in per-thread arenas and raises its mmap threshold after large
# frees, so a burst of big requests leaves RSS high for good (finding 3 of issue 11).
# A fixed mmap threshold makes buffers over 1 MiB (images, tensors, request messages) come
# from mmap and go back to the OS when freed; fewer arenas and an explicit trim after load
# return the rest. The same settings are set by environment in k8s/base/gateway.yaml.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None
    # glibc only: musl has neither mallopt nor malloc_trim
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def tune_allocator(*, mmap_threshold: int = 1 << 20, arena_max: int = 2) -> bool:
    """Set glibc's malloc so large buffers are returned to the OS (True when applied)."""
    if _LIBC is None:
        return False
    ok = _LIBC.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    ok &= _LIBC.mallopt(_M_TRIM_THRESHOLD, 2 * mmap_threshold) == 1
    ok &= _LIBC.mallopt(_M_ARENA_MAX, arena_max) == 1
    return bool(ok)


def release_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``): called when the gateway
    goes idle after load. A few milliseconds for a heap of a few hundred MB."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
