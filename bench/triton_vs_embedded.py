"""Inversion steps through Triton vs onnxruntime in-process, at 1 and 32 concurrent callers.

    .venv/bin/python -m bench.triton_vs_embedded --repository model_repository \\
        [--concurrency 1,32] [--seconds 10] [--threads 2] [--triton-url HOST:PORT] [--json FILE]

Each caller is one inversion in miniature: batch-1 ``inversion_step`` calls, one after the
other, for ``--seconds``. Both backends run behind the same protocol the gateway uses:
``TritonBackend`` (the gateway's micro-batcher merges the callers' steps into requests to
a tritonserver: started here through ``stylegate triton``'s CPU flavour unless
``--triton-url`` is given) and ``EmbeddedBackend`` (the same micro-batcher, onnxruntime
in-process). Prints
step latency (mean, p50, p95), steps per second, the ratio Triton / embedded and the
batch sizes each formed.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path

import click
import numpy as np

from stylegate.service.backends.base import Priority
from stylegate.service.backends.embedded import EmbeddedBackend
from stylegate.service.backends.triton import TritonBackend, expected_models
from stylegate.service.metadata import RepositoryInfo, load_repository


def step_inputs(repository: RepositoryInfo, model: str, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = {}
    for name, (_, shape) in expected_models(repository)[model].inputs.items():
        if name in ("loss_weights", "mask"):
            value = np.ones((1, *shape))
        elif name == "target":
            value = rng.uniform(-1, 1, (1, *shape))
        else:
            value = rng.standard_normal((1, *shape))
        inputs[name] = value.astype(np.float32)
    return inputs


async def drive(backend, repository: RepositoryInfo, callers: int, seconds: float) -> dict:
    model = repository.generator().models["inversion_step"]
    inputs = [step_inputs(repository, model, i) for i in range(callers)]
    for x in inputs[:2]:  # warm up
        await backend.infer(model, x, timeout=120)
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def caller(x):
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await backend.infer(model, x, priority=Priority.INTERACTIVE, timeout=120)
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(caller(x) for x in inputs))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "callers": callers,
        "steps": len(latencies),
        "steps_per_s": len(latencies) / elapsed,
        "latency_mean_ms": 1e3 * statistics.fmean(latencies),
        "latency_p50_ms": 1e3 * latencies[len(latencies) // 2],
        "latency_p95_ms": 1e3 * latencies[int(0.95 * (len(latencies) - 1))],
    }


async def bench_triton(repository, url, callers, seconds) -> dict:
    backend = TritonBackend(repository, url)
    await backend.load()
    model = repository.generator().models["inversion_step"]
    try:
        before = (await backend.batch_statistics([model]))[model]
        result = await drive(backend, repository, callers, seconds)
        after = (await backend.batch_statistics([model]))[model]
    finally:
        await backend.close()
    executions = after.execution_count - before.execution_count
    result["mean_batch"] = (after.inference_count - before.inference_count) / max(1, executions)
    return result


async def bench_embedded(repository, threads, callers, seconds) -> dict:
    backend = EmbeddedBackend(repository, intra_op_threads=threads)
    await backend.load()
    try:
        from stylegate.service import metrics

        model = repository.generator().models["inversion_step"]
        histogram = metrics.BACKEND_BATCH_SIZE.labels(model)
        count0, sum0 = _histogram_totals(histogram)
        result = await drive(backend, repository, callers, seconds)
        count1, sum1 = _histogram_totals(histogram)
        result["mean_batch"] = (sum1 - sum0) / max(1, count1 - count0)
    finally:
        await backend.close()
    return result


def _histogram_totals(child) -> tuple[float, float]:
    count = total = 0.0
    for metric in child.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
    return count, total


def report(rows: list[dict]) -> None:
    header = (
        f"{'backend':9} {'callers':>7} {'steps/s':>8} {'mean ms':>8} {'p50 ms':>7} "
        f"{'p95 ms':>7} {'batch':>6}"
    )
    click.echo(header)
    for r in rows:
        click.echo(
            f"{r['backend']:9} {r['callers']:7d} {r['steps_per_s']:8.1f} "
            f"{r['latency_mean_ms']:8.2f} {r['latency_p50_ms']:7.2f} "
            f"{r['latency_p95_ms']:7.2f} {r['mean_batch']:6.1f}"
        )
    click.echo("\ntriton / embedded:")
    for callers in sorted({r["callers"] for r in rows}):
        t = next(r for r in rows if r["backend"] == "triton" and r["callers"] == callers)
        e = next(r for r in rows if r["backend"] == "embedded" and r["callers"] == callers)
        click.echo(
            f"  {callers:3d} callers: throughput x{t['steps_per_s'] / e['steps_per_s']:.2f}, "
            f"mean latency x{t['latency_mean_ms'] / e['latency_mean_ms']:.2f}"
        )


@click.command()
@click.option(
    "--repository",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("model_repository"),
    show_default=True,
)
@click.option(
    "--concurrency", default="1,32", show_default=True, help="Comma-separated caller counts."
)
@click.option("--seconds", type=float, default=10.0, show_default=True, help="Per measurement.")
@click.option(
    "--threads",
    type=int,
    default=2,
    show_default=True,
    help="onnxruntime intra-op threads, the same for both backends.",
)
@click.option("--triton-url", default=None, help="Use this Triton instead of starting one.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
def main(
    repository: Path,
    concurrency: str,
    seconds: float,
    threads: int,
    triton_url: str | None,
    json_path: Path | None,
) -> None:
    repo = load_repository(repository)
    counts = [int(c) for c in concurrency.split(",")]
    rows = []
    server = None
    if triton_url is None:
        from stylegate.ops.triton_local import TritonServer

        server = TritonServer(
            repository, grpc_port=0, http_port=0, metrics_port=0, intra_op_threads=threads
        ).start(timeout=600)
        triton_url = server.grpc_url
    try:
        for callers in counts:
            for name in ("embedded", "triton"):
                if name == "triton":
                    row = asyncio.run(bench_triton(repo, triton_url, callers, seconds))
                else:
                    row = asyncio.run(bench_embedded(repo, threads, callers, seconds))
                rows.append({"backend": name, **row})
    finally:
        if server is not None:
            server.cleanup()
    click.echo(
        f"inversion_step of {repository} (generator {repo.default_generator}), "
        f"{seconds:.0f} s per row, {threads} onnxruntime threads\n"
    )
    report(rows)
    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
