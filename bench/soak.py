"""A bounded soak of a real gateway process: mixed traffic for ``--seconds``, with RSS, open
file descriptors and error counts printed at the start and the end (and peak and settled
RSS), so a leak of memory, descriptors or slots shows as a difference.

    .venv/bin/python -m bench.soak --seconds 60 [--model-repository model_repository]
    make soak SECONDS=60

Without ``--model-repository`` the gateway serves the test suite's small ONNX fake (written
to a temporary folder). The traffic: one-seed and large Generates, short Invert streams,
BatchGenerate streams, Edits of a latent, metadata calls, and a burst over the admission
limits every few seconds (those RESOURCE_EXHAUSTED are expected and counted apart).
Also the helpers bench/interactive.py and tests/test_service_memory.py use: a gateway
subprocess, its RSS and descriptors.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import click
import grpc
from PIL import Image

from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.protos.v1 import stylegate_pb2_grpc as pb_grpc


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    """A ``stylegate serve`` child process on a loopback port."""

    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc, self.port = proc, port
        self.address = f"127.0.0.1:{port}"

    def rss_mb(self) -> float:
        """Resident memory of the gateway process now, MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


@contextlib.contextmanager
def gateway(repository: str | Path, **settings) -> Iterator[Gateway]:
    """Start ``stylegate serve`` on ``repository`` with ``STYLEGATE_<NAME>`` settings; wait
    until it answers; SIGTERM it at the end."""
    port = free_port()
    env = {**os.environ, "STYLEGATE_METRICS_PORT": "0", "STYLEGATE_LOG_JSON": "false"}
    env |= {"STYLEGATE_LOG_LEVEL": "WARNING", "STYLEGATE_HEALTH_INTERVAL_S": "0"}
    env |= {f"STYLEGATE_{k.upper()}": str(v) for k, v in settings.items()}
    argv = [sys.executable, "-c", "from stylegate.cli.main import main; main()", "serve"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--model-repository", str(repository)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    gw = Gateway(proc, port)
    try:
        channel = grpc.insecure_channel(gw.address)
        stub = pb_grpc.StyleGateStub(channel)
        deadline = time.monotonic() + 120
        while True:
            try:
                stub.ListModels(pb.ListModelsRequest(), timeout=2)
                break
            except grpc.RpcError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gateway did not start: {proc.stderr.read()[-2000:]!r}")
                time.sleep(0.3)
        channel.close()
        yield gw
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def repository_or_fake(path: str | None) -> Iterator[Path]:
    """``path``, or the test suite's ONNX fake written to a temporary folder."""
    if path:
        yield Path(path)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.gateway_fakes import write_onnx_repository

    with tempfile.TemporaryDirectory() as tmp:
        write_onnx_repository(Path(tmp))
        yield Path(tmp)


def png(side: int, *, noise: bool = False, seed: int = 0) -> bytes:
    """A PNG image; ``noise``: random pixels (about 3 bytes a pixel: large files)."""
    if noise:
        data = random.Random(seed).randbytes(side * side * 3)
        img = Image.frombytes("RGB", (side, side), data)
    else:
        img = Image.new("RGB", (side, side), (120, 90, 60))
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=0 if noise else 6)
    return buf.getvalue()


class Sampler:
    """RSS of a gateway sampled every ``every`` seconds in the background (peak kept)."""

    def __init__(self, gw: Gateway, every: float = 0.05):
        self.gw, self.every, self.peak = gw, every, 0.0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.gw.rss_mb())
            await asyncio.sleep(self.every)

    def __enter__(self) -> Sampler:  # noqa: PYI034 - Self needs Python 3.11
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc) -> None:
        if self._task is not None:
            self._task.cancel()


async def settle(gw: Gateway, seconds: float = 3.0) -> float:
    """RSS after ``seconds`` of idleness (the gateway trims its heap when idle)."""
    await asyncio.sleep(seconds)
    return gw.rss_mb()


async def _soak(gw: Gateway, seconds: float, stats: collections.Counter) -> None:
    async with grpc.aio.insecure_channel(gw.address) as channel:
        stub = pb_grpc.StyleGateStub(channel)
        image = png(64)
        stop = time.monotonic() + seconds

        async def call(name: str, coro) -> None:
            try:
                await coro
                stats[f"{name} OK"] += 1
            except grpc.aio.AioRpcError as err:
                stats[f"{name} {err.code().name}"] += 1

        async def stream(it) -> None:
            async for _ in it:
                pass

        async def worker(i: int) -> None:
            rng = random.Random(i)
            while time.monotonic() < stop:
                kind = rng.choice(["gen", "gen", "large", "invert", "batch", "edit", "meta"])
                if kind == "gen":
                    await call(kind, stub.Generate(pb.GenerateRequest(seeds=[rng.randrange(99)])))
                elif kind == "large":
                    await call(kind, stub.Generate(pb.GenerateRequest(seeds=list(range(32)))))
                elif kind == "invert":
                    req = pb.InvertRequest(image=pb.Image(data=image), steps=20, preview_every=5)
                    await call(kind, stream(stub.Invert(req)))
                elif kind == "batch":
                    seeds = pb.SeedRange(start=0, stop=48)
                    req = pb.BatchGenerateRequest(range=seeds, chunk_size=16)
                    await call(kind, stream(stub.BatchGenerate(req)))
                elif kind == "edit":
                    src = pb.LatentSource(seed=rng.randrange(99))
                    await call(kind, stub.Edit(pb.EditRequest(latent=src)))
                else:
                    await call(kind, stub.ListModels(pb.ListModelsRequest()))

        async def bursts() -> None:
            while time.monotonic() < stop:
                await asyncio.sleep(5)
                reqs = [stub.Generate(pb.GenerateRequest(seeds=list(range(64)))) for _ in range(40)]
                await asyncio.gather(*(call("burst", r) for r in reqs))

        await asyncio.gather(*(worker(i) for i in range(8)), bursts())


def _errors(stats: collections.Counter) -> int:
    """Failures other than admission refusals (RESOURCE_EXHAUSTED is the limits working)."""
    return sum(n for k, n in stats.items() if not k.endswith((" OK", " RESOURCE_EXHAUSTED")))


def _line(label: str, gw: Gateway, stats: collections.Counter) -> str:
    refused = sum(n for k, n in stats.items() if k.endswith(" RESOURCE_EXHAUSTED"))
    return (
        f"{label:6s} rss {gw.rss_mb():7.1f} MB  fds {gw.fds():4d}  "
        f"errors {_errors(stats)}  refused {refused}  ok {stats.total() - refused - _errors(stats)}"
    )


@click.command()
@click.option("--seconds", default=60.0, show_default=True, help="how long the traffic runs")
@click.option("--model-repository", default=None, help="default: the tests' small ONNX fake")
def main(seconds: float, model_repository: str | None) -> None:
    """Soak a gateway with mixed traffic; print RSS, FDs and errors at start and end."""
    with repository_or_fake(model_repository) as repo, gateway(repo) as gw:
        stats: collections.Counter = collections.Counter()
        print(_line("start", gw, stats), flush=True)

        async def run() -> tuple[float, float]:
            with Sampler(gw, every=0.2) as sampler:
                await _soak(gw, seconds, stats)
            return sampler.peak, await settle(gw)

        peak, settled = asyncio.run(run())
        print(_line("end", gw, stats))
        print(f"peak rss {peak:.1f} MB, settled rss {settled:.1f} MB (3 s after the load)")
        for key in sorted(stats):
            print(f"  {key:28s} {stats[key]}")
        sys.exit(1 if _errors(stats) else 0)


if __name__ == "__main__":
    main()
