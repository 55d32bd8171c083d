"""gRPC plumbing: ``create_server(address) -> (server, port)`` with the StyleGate servicer,
the standard health service and reflection; start-up (backend load, then SERVING) and
graceful shutdown (NOT_SERVING, drain in-flight RPCs, stop, close the backend)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.service import metrics, rpc, security
from stylegate.service.backends.base import Backend
from stylegate.service.errors import StylegateError
from stylegate.service.metadata import RepositoryInfo, load_repository
from stylegate.service.servicer import StyleGateServicer
from stylegate.service.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["StyleGate"].full_name  # stylegate.v1.StyleGate
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def make_backend(settings: Settings, repository: RepositoryInfo) -> Backend:
    """The backend named by the settings (clients are created in ``load``)."""
    if settings.backend == "embedded":
        from stylegate.service.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(
            repository,
            intra_op_threads=settings.intra_op_threads,
            session_concurrency=settings.session_concurrency,
            max_batch=settings.max_batch,
            batch_window_ms=settings.batch_window_ms,
            max_queue=settings.max_queue,
            bulk_max_batch=settings.bulk_max_batch,
            step_bulk_max_batch=settings.step_bulk_max_batch or None,
            interactive_slots=settings.interactive_run_slots,
            narrow_pairs=settings.narrow_pairs,
        )
    if settings.backend == "triton":
        from stylegate.service.backends.triton import TritonBackend

        credentials = security.triton_credentials(
            settings.triton_tls,
            settings.triton_tls_ca,
            settings.triton_tls_cert,
            settings.triton_tls_key,
        )
        return TritonBackend(
            repository,
            settings.triton_url,
            credentials=credentials,
            call_timeout_s=settings.triton_call_timeout_s or None,
            max_batch=settings.max_batch,
            batch_window_ms=settings.batch_window_ms,
            max_queue=settings.max_queue,
            bulk_max_batch=settings.bulk_max_batch,
            step_bulk_max_batch=settings.triton_step_bulk_max_batch or None,
            max_in_flight=settings.triton_max_in_flight,
            interactive_slots=settings.interactive_run_slots,
        )
    raise ValueError(f"unknown backend {settings.backend!r} (embedded or triton)")


class GatewayServer:
    """A grpc.aio server with its servicer, health and backend, started and stopped together."""

    def __init__(
        self,
        server: grpc.aio.Server,
        servicer: StyleGateServicer,
        health_servicer: health.aio.HealthServicer,
        settings: Settings,
        *,
        health_server: grpc.aio.Server | None = None,  # plaintext health-only port, if any
        access: security.AccessFile | None = None,  # the access file, if any
    ):
        self.grpc = server
        self.health_server = health_server
        self.access = access
        self.servicer = servicer
        self.health = health_servicer
        self.settings = settings
        self.backend = servicer.backend
        self._watcher: asyncio.Task | None = None
        self._serving = False

    async def start(self) -> None:
        """Load the backend, start listening, then report SERVING (and keep following the
        backend's health every ``health_interval_s``)."""
        await self._set_serving(False, force=True)
        await self.backend.load()
        await self.grpc.start()
        if self.health_server is not None:
            await self.health_server.start()
        await self._set_serving(True, force=True)
        metrics.BACKEND_UP.labels(self.backend.name).set(1)
        if self.settings.health_interval_s > 0:
            self._watcher = asyncio.create_task(self._watch_backend(), name="backend-health")
        log.info("gateway serving", extra={"backend": self.backend.name})

    async def _set_serving(self, serving: bool, *, force: bool = False) -> None:
        """Start-up sets both the overall ("") and the StyleGate service; afterwards only the
        StyleGate service follows the backend, so a liveness probe of "" does not restart
        every gateway while Triton is down, and a readiness probe of the service takes the
        pod out of rotation."""
        if serving == self._serving and not force:
            return
        self._serving = serving
        for service in ("", SERVICE_NAME) if force else (SERVICE_NAME,):
            await self.health.set(service, SERVING if serving else NOT_SERVING)

    async def probe_backend(self) -> bool:
        """One health probe: the backend's ``healthy()`` within the probe interval decides
        SERVING or NOT_SERVING (so load balancers and kubelets stop sending work to a
        gateway whose Triton is down), and the backend refreshes its own gauges."""
        timeout = max(self.settings.health_interval_s, 1.0)
        try:
            ok = bool(await asyncio.wait_for(self.backend.healthy(), timeout))
        except Exception as exc:  # noqa: BLE001 - a probe failing for any reason: not healthy
            log.warning("backend health probe failed", extra={"error": repr(exc)})
            ok = False
        metrics.BACKEND_UP.labels(self.backend.name).set(1 if ok else 0)
        if not self.servicer.in_flight.draining:
            if ok != self._serving:
                log.warning(
                    "backend health changed", extra={"backend": self.backend.name, "healthy": ok}
                )
            await self._set_serving(ok)
        if ok:
            try:
                await asyncio.wait_for(self.backend.refresh_metrics(), timeout)
            except Exception as exc:  # noqa: BLE001 - gauges must never fail the probe
                log.warning("refreshing backend metrics failed", extra={"error": repr(exc)})
        return ok

    async def _watch_backend(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval_s)
            await self.probe_backend()

    async def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: NOT_SERVING (probes see it while we drain), refuse new RPCs,
        wait up to ``grace`` seconds for in-flight ones, then stop and close the backend."""
        grace = self.settings.drain_grace_s if grace is None else grace
        if self._watcher is not None:
            self._watcher.cancel()
        await self.health.enter_graceful_shutdown()
        self.servicer.in_flight.draining = True
        log.info("draining", extra={"in_flight": self.servicer.in_flight.count, "grace_s": grace})
        drained = await self.servicer.in_flight.wait_idle(grace)
        if not drained:
            log.warning(
                "grace period over, cancelling in-flight RPCs",
                extra={"in_flight": self.servicer.in_flight.count},
            )
        await self.grpc.stop(0.5)
        if self.health_server is not None:
            await self.health_server.stop(0.5)
        await self.backend.close()
        log.info("gateway stopped")

    async def wait_for_termination(self) -> None:
        await self.grpc.wait_for_termination()


def create_server(
    address: str,
    settings: Settings | None = None,
    *,
    backend: Backend | None = None,  # None: the one named by settings
    repository: RepositoryInfo | None = None,  # None: read settings.model_repository
) -> tuple[GatewayServer, int]:
    """Build the gateway bound to ``address`` (``host:0`` picks a free port). Call
    ``await server.start()`` inside the event loop that will run it. TLS, the access
    file, reflection and the health-only port follow the settings; a certificate or
    access file that cannot be used raises ``security.SecurityConfigError``."""
    settings = settings or Settings.load()
    tls = security.server_tls(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    access = security.AccessFile(settings.auth_file) if settings.auth_file else None
    repository = repository or load_repository(settings.model_repository)
    backend = backend or make_backend(settings, repository)
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        interceptors=[security.AccessInterceptor(access)],
    )
    servicer = StyleGateServicer(settings, repository, backend)
    rpc.add_servicer(servicer, server, pb.DESCRIPTOR.services_by_name["StyleGate"])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, tls.credentials())
    if port == 0:
        raise OSError(f"cannot bind {address}")
    health_server = None
    if settings.health_port:
        # Kubelets' gRPC probes speak plaintext only: health, and nothing else, on its own port.
        health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        health_address = f"{address.rsplit(':', 1)[0]}:{settings.health_port}"
        if health_server.add_insecure_port(health_address) == 0:
            raise OSError(f"cannot bind {health_address}")
    gateway = GatewayServer(
        server, servicer, health_servicer, settings, health_server=health_server, access=access
    )
    return gateway, port


async def serve(settings: Settings) -> None:
    """Run the gateway until SIGINT/SIGTERM, then shut down gracefully; SIGHUP reloads the
    model repository (like the Reload RPC)."""
    server, port = create_server(f"{settings.host}:{settings.port}", settings)
    if settings.metrics_port:
        metrics.serve_metrics(settings.metrics_port, addr=settings.metrics_host or settings.host)
    await server.start()
    log.info(
        "listening",
        extra={
            "host": settings.host,
            "port": port,
            "metrics_port": settings.metrics_port,
            "health_port": settings.health_port,
            "model_repository": settings.model_repository,
            "tls": "mutual" if settings.tls_client_ca else bool(settings.tls_cert),
            "access_file": bool(settings.auth_file),
            "reflection": settings.reflection,
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task] = set()  # held until done (the loop keeps weak references)

    def reload() -> None:
        task = loop.create_task(_reload_logged(server), name="reload")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    await stop.wait()
    # Draining now: a repeated SIGTERM must not kill the clean-up that follows (closing the
    # loop would otherwise restore the default action, which ends the process at once).
    # SIGKILL after the grace period still ends it.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.remove_signal_handler(sig)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    await server.stop()


async def _reload_logged(server: GatewayServer) -> None:
    """SIGHUP: reload (and re-read the access file); a failure is logged and the old
    repository (or access policy) stays. Certificates are re-read at the next handshake."""
    if server.access is not None:
        server.access.reload()
    with contextlib.suppress(StylegateError):
        await server.servicer.reload()
