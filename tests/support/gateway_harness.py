"""Run a real gateway (grpc.aio server on a loopback port) in a background thread with
its own event loop, for tests that talk to it over a real channel with the sync client."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from stylegate.service.backends.base import Backend
from stylegate.service.client import StylegateClient
from stylegate.service.metadata import RepositoryInfo
from stylegate.service.server import GatewayServer, create_server
from stylegate.service.settings import Settings


class RunningGateway:
    def __init__(self, server: GatewayServer, port: int, loop: asyncio.AbstractEventLoop):
        self.server = server
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.loop = loop

    def run(self, coro, timeout: float = 60.0):
        """Run a coroutine on the server's loop from the test thread; wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro):
        """Start a coroutine on the server's loop; returns a concurrent Future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def client(self, **kwargs) -> StylegateClient:
        return StylegateClient(self.address, **kwargs)


@contextlib.contextmanager
def running_gateway(
    repository: RepositoryInfo, backend: Backend | None = None, **settings
) -> Iterator[RunningGateway]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gateway-loop", daemon=True)
    thread.start()

    async def start() -> tuple[GatewayServer, int]:
        s = Settings.load(env={}, model_repository=str(repository.root), metrics_port=0, **settings)
        server, port = create_server("127.0.0.1:0", s, backend=backend, repository=repository)
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(120)
    gateway = RunningGateway(server, port, loop)
    try:
        yield gateway
    finally:
        if not server.servicer.in_flight.draining:
            with contextlib.suppress(Exception):
                gateway.run(server.stop(grace=1.0), timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
