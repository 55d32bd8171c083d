"""Interactive latency under bulk load: one-seed Generate p50/p99 on an idle gateway (the
baseline, measured in the same command) and under each bulk load, with the ratio to idle,
plus how fast refused requests are refused.

    .venv/bin/python -m bench.interactive [--model-repository model_repository] [--probes 40]

Loads (issue 11, finding 4): 64 running inversions; 4 BatchGenerate streams; a burst of 200
Generates of 64 seeds. The gateway is a separate process (bench/soak.py's ``gateway``);
its per-client limits are raised to the server's, since this one client stands for many.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import click
import grpc

from bench.soak import gateway, png, repository_or_fake
from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.protos.v1 import stylegate_pb2_grpc as pb_grpc


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def _probe(stub, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        await stub.Generate(pb.GenerateRequest(seeds=[i]), timeout=60)
        out.append(time.perf_counter() - t)
    return out


async def _drain(stream) -> None:
    try:
        async for _ in stream:
            pass
    except grpc.aio.AioRpcError:
        pass


async def _run(address: str, probes: int) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.StyleGateStub(channel)
        await _probe(stub, 5)  # warm-up
        results = {"idle": await _probe(stub, probes)}

        image = pb.Image(data=png(64))
        inv = [
            stub.Invert(pb.InvertRequest(image=image, steps=100_000, preview_every=10))
            for _ in range(64)
        ]
        tasks = [asyncio.ensure_future(_drain(s)) for s in inv]
        await asyncio.sleep(2.0)
        results["64 inversions"] = await _probe(stub, probes)
        for s in inv:
            s.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

        seeds = pb.SeedRange(start=0, stop=10_000_000)
        streams = [
            stub.BatchGenerate(pb.BatchGenerateRequest(range=seeds, chunk_size=32))
            for _ in range(4)
        ]
        tasks = [asyncio.ensure_future(_drain(s)) for s in streams]
        await asyncio.sleep(2.0)
        results["4 BatchGenerate streams"] = await _probe(stub, probes)
        for s in streams:
            s.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

        refused: list[float] = []
        codes: dict[str, int] = {}

        async def big() -> None:
            t = time.perf_counter()
            try:
                await stub.Generate(pb.GenerateRequest(seeds=list(range(64))), timeout=60)
                codes["OK"] = codes.get("OK", 0) + 1
            except grpc.aio.AioRpcError as err:
                codes[err.code().name] = codes.get(err.code().name, 0) + 1
                if err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                    refused.append(time.perf_counter() - t)

        burst = asyncio.ensure_future(asyncio.gather(*(big() for _ in range(200))))
        await asyncio.sleep(0.05)
        results["burst of 200 x 64-seed Generates"] = await _probe(stub, probes)
        await burst

    idle = statistics.median(results["idle"])
    print(f"{'load':36s} {'p50 ms':>8s} {'p99 ms':>8s} {'p50 / idle':>10s}")
    for name, xs in results.items():
        p50, p99 = _pct(xs, 0.5), _pct(xs, 0.99)
        print(f"{name:36s} {p50 * 1e3:8.1f} {p99 * 1e3:8.1f} {p50 / idle:10.1f}")
    print(f"burst outcomes: {codes}")
    if refused:
        print(
            f"refusal latency: p50 {_pct(refused, 0.5) * 1e3:.1f} ms, "
            f"p99 {_pct(refused, 0.99) * 1e3:.1f} ms ({len(refused)} refused)"
        )


@click.command()
@click.option("--model-repository", default=None, help="default: the tests' small ONNX fake")
@click.option("--probes", default=40, show_default=True, help="one-seed Generates per load")
def main(model_repository: str | None, probes: int) -> None:
    """Generate p50/p99 idle vs under bulk loads, and the refusal latency."""
    settings = {
        "max_inversions_per_client": 64,
        "max_batch_streams_per_client": 8,
        "max_large_rpcs_per_client": 8,
        "max_steps": 100_000,
    }
    with repository_or_fake(model_repository) as repo, gateway(repo, **settings) as gw:
        asyncio.run(_run(gw.address, probes))


if __name__ == "__main__":
    main()
