"""``stylegate loadtest``: an asyncio (grpc.aio) load generator against any gateway.

Closed loop: ``--concurrency N`` workers each send their next request as soon as the last
one ends; ``--concurrency 1,4,16`` sweeps the levels one run after another. Open loop:
``--rate R`` schedules request i at ``t0 + i / R`` whatever the gateway does; the N workers
take the scheduled requests in order and latency counts from the *scheduled* time, so time
spent waiting for a free worker (queueing) shows in the latency instead of quietly lowering
the offered load. Each run is bounded by ``--duration`` and/or ``--requests``.

The gateway's micro-batcher histograms (service/metrics.py) are scraped from its metrics
endpoint before and after each run; the report gives their difference, i.e. the batches
this run's traffic made. Client-side only: no torch, no gateway code.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import math
import random
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import click
import grpc

from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.protos.v1 import stylegate_pb2_grpc as pb_grpc
from stylegate.service.cli import CONNECTION, SERVER_OPTION
from stylegate.service.client import MAX_MESSAGE_BYTES, METHODS

SCENARIOS = ("generate", "invert", "edit", "batch")
DEFAULT_MIX = "generate=6,edit=2,invert=1,batch=1"
DEFAULT_METRICS_PORT = 9090
# Histograms of the embedded micro-batcher, by model: samples per run, calls merged per run.
BATCH_SIZE_METRIC = "stylegate_backend_batch_size"
CALLS_PER_BATCH_METRIC = "stylegate_backend_calls_per_batch"
INPUT_SEED0 = 1_000_000  # seeds of the rendered inputs of invert/edit, apart from generate's
PNG = pb.OutputOptions(format=pb.IMAGE_FORMAT_PNG)


class LoadtestError(Exception):
    """A user's mistake or an unusable target: printed as one line, exit status 1."""


class IncompleteResponse(Exception):
    """An OK status without the expected result (e.g. an Invert stream with no result)."""


# --- workload -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Workload:
    """What the requests ask for; fixed for a whole load test."""

    model: str = ""  # generator; "" = the repository's default
    method: str = "in_domain"  # inversion method of invert and edit
    steps: int = 10  # optimization steps per inversion (early stopping off: fixed work)
    batch_seeds: int = 16  # images per BatchGenerate request
    images: int = 8  # distinct input images for invert/edit, rendered once and reused
    mix: dict[str, float] = dataclasses.field(default_factory=dict)  # scenario -> weight
    timeout: float = 120.0  # deadline of each request, seconds
    seed: int = 0  # of the mix's choices


@dataclasses.dataclass
class Target:
    """The stub plus what the scenarios need from the deployment (read or rendered once)."""

    stub: pb_grpc.StyleGateStub
    workload: Workload
    metadata: tuple[tuple[str, str], ...] = ()
    c_dim: int = 0  # classes of a class-conditional generator (a label is then required)
    images: list[bytes] = dataclasses.field(default_factory=list)
    edit: pb.EditOp | None = None

    def _label(self, i: int) -> int | None:
        return i % self.c_dim if self.c_dim else None

    def _invert_request(self, i: int) -> pb.InvertRequest:
        w = self.workload
        return pb.InvertRequest(
            model=w.model,
            image=pb.Image(data=self.images[i % len(self.images)]),
            method=METHODS[w.method],
            steps=w.steps,
            early_stop_tol=0.0,
            progress_every=w.steps,
            output=PNG,
        )

    async def call(self, kind: str, i: int) -> int:
        """Send request ``i`` of scenario ``kind``; returns the images it produced."""
        w, opts = self.workload, {"timeout": self.workload.timeout, "metadata": self.metadata}
        if kind == "generate":
            req = pb.GenerateRequest(
                model=w.model, seeds=[i], output=PNG, class_label=self._label(i)
            )
            return len((await self.stub.Generate(req, **opts)).images)
        if kind == "invert":
            async for message in self.stub.Invert(self._invert_request(i), **opts):
                if message.HasField("result"):
                    return 1
            raise IncompleteResponse("the Invert stream ended without a result")
        if kind == "edit":
            req = pb.EditRequest(
                model=w.model, invert=self._invert_request(i), edits=[self.edit], output=PNG
            )
            await self.stub.Edit(req, **opts)
            return 1
        if kind == "batch":
            start = i * w.batch_seeds
            req = pb.BatchGenerateRequest(
                model=w.model,
                range=pb.SeedRange(start=start, stop=start + w.batch_seeds),
                output=PNG,
                class_label=self._label(i),
            )
            n = 0
            async for chunk in self.stub.BatchGenerate(req, **opts):
                n += len(chunk.images)
            if n != w.batch_seeds:
                raise IncompleteResponse(f"BatchGenerate returned {n} of {w.batch_seeds} images")
            return n
        raise ValueError(f"unknown scenario {kind!r}")


async def prepare(
    stub: pb_grpc.StyleGateStub,
    workload: Workload,
    kinds: set[str],
    metadata: tuple[tuple[str, str], ...] = (),
) -> Target:
    """Check the model can do what the scenarios ask, and render the inputs of invert and
    edit with Generate from seeds (so the test runs against any deployment)."""
    opts = {"timeout": workload.timeout, "metadata": metadata}
    info = await stub.ModelInfo(pb.ModelInfoRequest(model=workload.model), **opts)
    target = Target(stub, workload, metadata, c_dim=info.c_dim)
    if kinds & {"invert", "edit"}:
        if workload.method not in info.inversion_methods:
            allowed = ", ".join(info.inversion_methods) or "none"
            raise LoadtestError(
                f"model {info.name!r} cannot invert with {workload.method!r} (it allows: {allowed})"
            )
        seeds = list(range(INPUT_SEED0, INPUT_SEED0 + workload.images))
        for lo in range(0, len(seeds), 16):
            req = pb.GenerateRequest(
                model=workload.model,
                seeds=seeds[lo : lo + 16],
                output=PNG,
                class_label=0 if info.c_dim else None,
            )
            target.images += [g.image.data for g in (await stub.Generate(req, **opts)).images]
    if "edit" in kinds:
        if info.directions:  # the model's first named direction, 2 standard deviations
            target.edit = pb.EditOp(name=info.directions[0].name, strength=2.0)
        else:  # a raw direction along the first axis of W
            vector = pb.Tensor(
                shape=[info.w_dim], data=b"\x00\x00\x80\x3f" + bytes(4 * (info.w_dim - 1))
            )
            target.edit = pb.EditOp(vector=vector, strength=1.0)
    return target


# --- one run ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sample:
    kind: str  # scenario of the request
    latency: float  # seconds, from the scheduled send time to the end of the response
    code: str  # "OK", a gRPC status code name, or the client exception's class name
    images: int


@dataclasses.dataclass(frozen=True)
class Level:
    """One run: a concurrency level, open loop when ``rate`` is set."""

    scenario: str
    concurrency: int
    duration: float | None  # seconds; None = bounded by ``requests`` only
    requests: int | None
    rate: float | None  # requests/s scheduled; None = closed loop


def chooser(scenario: str, mix: dict[str, float], seed: int) -> Callable[[], str]:
    """The scenario of each next request: fixed, or drawn by weight (reproducible)."""
    if scenario != "mix":
        return lambda: scenario
    rng = random.Random(seed)
    kinds, weights = list(mix), list(mix.values())
    return lambda: rng.choices(kinds, weights)[0]


async def run_level(
    target: Target, level: Level, progress: Callable[[list[Sample], float], None] | None = None
) -> tuple[list[Sample], float]:
    """Drive one level; returns the samples and the wall time from start to the last reply."""
    clock = time.perf_counter
    next_kind = chooser(level.scenario, target.workload.mix, target.workload.seed)
    t0 = clock()
    end = t0 + level.duration if level.duration is not None else math.inf
    samples: list[Sample] = []
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while level.requests is None or issued < level.requests:
            # Tickets are taken in order (one event loop): request i's slot is fixed.
            scheduled = t0 + issued / level.rate if level.rate else clock()
            if scheduled >= end:
                return
            i, kind = issued, next_kind()
            issued += 1
            if level.rate:
                await asyncio.sleep(max(0.0, scheduled - clock()))
            try:
                images, code = await target.call(kind, i), "OK"
            except grpc.aio.AioRpcError as err:
                images, code = 0, err.code().name
            except IncompleteResponse:
                images, code = 0, "INCOMPLETE_RESPONSE"
            samples.append(Sample(kind, clock() - scheduled, code, images))

    async def report_progress() -> None:
        while True:
            await asyncio.sleep(0.5)
            progress(samples, clock() - t0)

    ticker = asyncio.create_task(report_progress()) if progress else None
    try:
        await asyncio.gather(*(worker() for _ in range(level.concurrency)))
    finally:
        if ticker is not None:
            ticker.cancel()
    return samples, clock() - t0


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_figures(samples: list[Sample], elapsed: float) -> dict:
    ok = sorted(s.latency for s in samples if s.code == "OK")
    return {
        "requests": len(samples),
        "ok": len(ok),
        "throughput": len(ok) / elapsed if elapsed > 0 else 0.0,
        "images_per_s": sum(s.images for s in samples) / elapsed if elapsed > 0 else 0.0,
        "p50": percentile(ok, 50),
        "p95": percentile(ok, 95),
        "p99": percentile(ok, 99),
        "max": ok[-1] if ok else None,
        "mean": sum(ok) / len(ok) if ok else None,
        "errors": dict(collections.Counter(s.code for s in samples if s.code != "OK")),
    }


def summarize(level: Level, samples: list[Sample], elapsed: float) -> dict:
    """The JSON entry of one run (latencies in seconds, throughput in OK requests/s)."""
    run = {
        "scenario": level.scenario,
        "concurrency": level.concurrency,
        "rate": level.rate,
        "duration": level.duration,
        "elapsed": elapsed,
        **latency_figures(samples, elapsed),
    }
    if level.scenario == "mix":
        kinds = sorted({s.kind for s in samples})
        run["by_scenario"] = {
            k: latency_figures([s for s in samples if s.kind == k], elapsed) for k in kinds
        }
    return run


# --- the gateway's batch-size histograms --------------------------------------------------------


def scrape(address: str, timeout: float = 5.0) -> dict[str, dict[str, dict]]:
    """The batcher histograms from ``http://address/metrics``:
    {metric: {model: {"buckets": {le: cumulative count}, "count": n, "sum": s}}}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as reply:
        text = reply.read().decode()
    found: dict[str, dict[str, dict]] = {BATCH_SIZE_METRIC: {}, CALLS_PER_BATCH_METRIC: {}}
    for family in text_string_to_metric_families(text):
        if family.name not in found:
            continue
        for s in family.samples:
            entry = found[family.name].setdefault(
                s.labels.get("model", ""), {"buckets": {}, "count": 0.0, "sum": 0.0}
            )
            if s.name.endswith("_bucket"):
                entry["buckets"][s.labels["le"]] = s.value
            elif s.name.endswith("_count"):
                entry["count"] = s.value
            elif s.name.endswith("_sum"):
                entry["sum"] = s.value
    return found


def _bucket_label(lower: float, upper: float) -> str:
    """Batch sizes are integers: the bucket (lower, upper] holds lower+1 .. upper."""
    if math.isinf(upper):
        return f">{lower:g}"
    lo = 1 if math.isinf(-lower) else int(lower) + 1
    return f"{upper:g}" if lo >= upper else f"{lo}-{upper:g}"


def batch_difference(before: dict, after: dict) -> dict[str, dict]:
    """What happened between two scrapes, by model: backend runs, mean samples per run,
    runs per batch-size bucket, mean calls merged per run. Models without runs are left out."""
    empty = {"buckets": {}, "count": 0.0, "sum": 0.0}
    out = {}
    for model, a in sorted(after[BATCH_SIZE_METRIC].items()):
        b = before[BATCH_SIZE_METRIC].get(model, empty)
        runs = a["count"] - b["count"]
        if runs <= 0:
            continue
        sizes, lower, below = {}, -math.inf, 0.0
        for le in sorted(a["buckets"], key=float):
            cumulative = a["buckets"][le] - b["buckets"].get(le, 0.0)
            if cumulative - below > 0:
                sizes[_bucket_label(lower, float(le))] = int(cumulative - below)
            lower, below = float(le), cumulative
        entry = {"runs": int(runs), "mean": (a["sum"] - b["sum"]) / runs, "sizes": sizes}
        ca = after[CALLS_PER_BATCH_METRIC].get(model)
        if ca is not None:
            cb = before[CALLS_PER_BATCH_METRIC].get(model, empty)
            if ca["count"] > cb["count"]:
                entry["calls_per_run"] = (ca["sum"] - cb["sum"]) / (ca["count"] - cb["count"])
        out[model] = entry
    return out


# --- the whole test --------------------------------------------------------------------------


def _channel(
    server: str,
    *,
    tls: bool = False,  # TLS with the system's roots (implied by the other TLS options)
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_server_name: str | None = None,
) -> grpc.aio.Channel:
    """A channel with the same TLS options as the sync client (service/client.py)."""
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    if tls or tls_ca or tls_cert or tls_key:
        from stylegate.service.security import SecurityConfigError, channel_credentials

        if tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        try:
            credentials = channel_credentials(tls_ca, tls_cert, tls_key)
        except SecurityConfigError as err:
            raise LoadtestError(str(err)) from None
        return grpc.aio.secure_channel(server, credentials, options=options)
    return grpc.aio.insecure_channel(server, options=options)


async def load_test(
    server: str,
    levels: list[Level],
    workload: Workload,
    *,
    metrics: str | None,
    connect_timeout: float = 10.0,
    connection: dict | None = None,  # TLS options of ``_channel``
    token: str | None = None,  # sent as "authorization: Bearer TOKEN"
    progress: Callable[[Level, list[Sample], float, bool], None] | None = None,
) -> dict:
    """Run every level in turn against ``server``; returns the JSON report."""
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    kinds = set(workload.mix) if any(lv.scenario == "mix" for lv in levels) else set()
    kinds |= {lv.scenario for lv in levels if lv.scenario != "mix"}
    report: dict = {"server": server, "model": workload.model, "metrics": metrics, "runs": []}
    async with _channel(server, **(connection or {})) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), connect_timeout)
        except TimeoutError:
            raise LoadtestError(
                f"cannot reach a gateway at {server} (no connection within {connect_timeout:g} s)"
            ) from None
        stub = pb_grpc.StyleGateStub(channel)
        try:
            target = await prepare(stub, workload, kinds, metadata)
        except grpc.aio.AioRpcError as err:
            raise LoadtestError(
                f"cannot prepare the load test: {err.code().name}: {err.details()}"
            ) from None
        for level in levels:
            before = _try_scrape(metrics, report)
            tick = (lambda s, t, lv=level: progress(lv, s, t, False)) if progress else None
            samples, elapsed = await run_level(target, level, tick)
            if progress:
                progress(level, samples, elapsed, True)
            after = _try_scrape(metrics, report) if before is not None else None
            run = summarize(level, samples, elapsed)
            run["batch_sizes"] = batch_difference(before, after) if after is not None else None
            report["runs"].append(run)
    return report


def _try_scrape(metrics: str | None, report: dict) -> dict | None:
    """A scrape, or None (with the reason in the report) when there is no metrics endpoint."""
    if metrics is None:
        return None
    try:
        return scrape(metrics)
    except (OSError, ValueError) as err:
        report["metrics_error"] = f"cannot read http://{metrics}/metrics: {err}"
        return None


# --- report, progress, plot ---------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(errors.items())) or "0"


HEADER = (
    f"{'scenario':<9} {'conc':>4} {'rate':>6} {'reqs':>6} {'req/s':>8} {'img/s':>8} "
    f"{'p50':>9} {'p95':>9} {'p99':>9} {'max':>9}  errors"
)


def report_lines(report: dict) -> list[str]:
    """The human-readable report: one line per run, then the batches it made."""
    lines = [f"stylegate loadtest against {report['server']}", HEADER]
    for run in report["runs"]:
        rows = [(run["scenario"], run)]
        rows += [(f" {k}", r) for k, r in run.get("by_scenario", {}).items()]
        for name, r in rows:
            rate = "-" if run["rate"] is None else f"{run['rate']:g}"
            lines.append(
                f"{name:<9} {run['concurrency']:>4} {rate:>6} {r['requests']:>6} "
                f"{r['throughput']:>8.2f} {r['images_per_s']:>8.2f} {_ms(r['p50']):>9} "
                f"{_ms(r['p95']):>9} {_ms(r['p99']):>9} {_ms(r['max']):>9}  {_errors(r['errors'])}"
            )
        for model, b in (run["batch_sizes"] or {}).items():
            sizes = " ".join(f"{k}:{n}" for k, n in b["sizes"].items())
            calls = f", {b['calls_per_run']:.2f} calls/run" if "calls_per_run" in b else ""
            lines.append(
                f"  batches {model}: {b['runs']} runs, {b['mean']:.2f} samples/run{calls} ({sizes})"
            )
    if "metrics_error" in report:
        lines.append(f"batch sizes not reported: {report['metrics_error']}")
    return lines


class ProgressLine:
    """One updating status line on stderr (a plain line every 5 s when it is not a TTY)."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.tty = stream.isatty()
        self.last_plain = 0.0

    def __call__(self, level: Level, samples: list[Sample], elapsed: float, done: bool) -> None:
        errors = sum(s.code != "OK" for s in samples)
        rate = f" rate {level.rate:g}/s" if level.rate else ""
        text = (
            f"{level.scenario} c={level.concurrency}{rate}: {elapsed:6.1f} s, "
            f"{len(samples)} done, {errors} errors, {len(samples) / max(elapsed, 1e-9):.1f} req/s"
        )
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if done else ""))
        elif done or elapsed - self.last_plain >= 5.0:
            self.stream.write(text + "\n")
            self.last_plain = 0.0 if done else elapsed
        self.stream.flush()


def plot(report: dict, path: Path) -> None:
    """PNG: latency (p50/p95/p99) and throughput against concurrency, one point per run."""
    runs = report["runs"]
    xs = [r["concurrency"] for r in runs]
    latency = {q: [(r[q] or 0.0) * 1000 for r in runs] for q in ("p50", "p95", "p99")}
    throughput = [r["throughput"] for r in runs]
    title = f"{runs[0]['scenario']} against {report['server']}" if runs else report["server"]
    if runs and runs[0]["rate"]:
        title += f", open loop at {runs[0]['rate']:g} req/s"
    try:
        import matplotlib
    except ImportError:
        _plot_pillow(path, title, xs, latency, throughput)
        return
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for q, ys in latency.items():
        left.plot(xs, ys, marker="o", label=q)
    left.set(xlabel="concurrency", ylabel="latency (ms)", title="latency")
    left.legend()
    right.plot(xs, throughput, marker="o", color="tab:green")
    right.set(xlabel="concurrency", ylabel="requests/s", title="throughput")
    for ax in (left, right):
        ax.set_xticks(xs)
        ax.set_ylim(bottom=0)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _plot_pillow(path: Path, title: str, xs: list, latency: dict, throughput: list) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (960, 420), "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 10), title, fill="black")
    colors = {"p50": (31, 119, 180), "p95": (255, 127, 14), "p99": (214, 39, 40)}
    _panel(
        draw,
        (70, 50, 450, 370),
        xs,
        {q: (ys, colors[q]) for q, ys in latency.items()},
        "latency (ms)",
    )
    _panel(
        draw,
        (560, 50, 940, 370),
        xs,
        {"req/s": (throughput, (44, 160, 44))},
        "throughput (requests/s)",
    )
    image.save(path, format="PNG")


def _panel(draw, box, xs: list, series: dict, label: str) -> None:
    """Axes in ``box`` (left, top, right, bottom), one polyline per series. Concurrency
    levels are evenly spaced (a sweep is usually geometric: 1, 4, 16)."""
    left, top, right, bottom = box
    draw.rectangle(box, outline="black")
    draw.text((left, top - 16), label, fill="black")
    draw.text(((left + right) // 2 - 30, bottom + 24), "concurrency", fill="black")
    highest = max([v for ys, _ in series.values() for v in ys] + [1e-9])
    step = _tick_step(highest / 5)
    top_value = step * math.ceil(highest / step)
    slots = max(len(xs), 1)

    def px(i: int) -> float:
        return left + (i + 0.5) * (right - left) / slots

    def py(v: float) -> float:
        return bottom - v / top_value * (bottom - top)

    for k in range(round(top_value / step) + 1):
        v = k * step
        draw.line((left - 4, py(v), left, py(v)), fill="black")
        draw.line((left + 1, py(v), right - 1, py(v)), fill=(225, 225, 225))
        draw.text((left - 60, py(v) - 6), f"{v:g}", fill="black")
    for i, x in enumerate(xs):
        draw.line((px(i), bottom, px(i), bottom + 4), fill="black")
        draw.text((px(i) - 6, bottom + 8), str(x), fill="black")
    for n, (name, (ys, color)) in enumerate(series.items()):
        points = [(px(i), py(v)) for i, v in enumerate(ys)]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        for x, y in points:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=color)
        # legend above the panel, right-aligned
        x0 = right - 60 * (len(series) - n)
        draw.line((x0, top - 10, x0 + 16, top - 10), fill=color, width=2)
        draw.text((x0 + 20, top - 16), name, fill="black")


def _tick_step(rough: float) -> float:
    """The 1, 2 or 5 times a power of ten nearest above ``rough``."""
    power = 10 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= rough)


# --- command line --------------------------------------------------------------------------


def _connection_options() -> tuple[dict, str | None]:
    """The TLS options and bearer token given to this command (``SERVER_OPTION``): the
    token from --token-file, else STYLEGATE_TOKEN."""
    import os

    options = dict(click.get_current_context().meta.get(CONNECTION, {}))
    token_file = options.pop("token_file", None)
    token = os.environ.get("STYLEGATE_TOKEN") or None
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except (OSError, UnicodeDecodeError) as err:
            raise LoadtestError(
                f"--token-file {token_file}: cannot read it ({err.__class__.__name__})"
            ) from None
        if not token:
            raise LoadtestError(f"--token-file {token_file} is empty")
    return options, token


def parse_address(spec: str, what: str) -> str:
    host, sep, port = spec.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LoadtestError(f"{what} {spec!r} is not HOST:PORT")
    return spec


def parse_levels(spec: str) -> list[int]:
    try:
        levels = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise LoadtestError(f"--concurrency {spec!r} is not N or a list N,M,... of positive counts")
    return levels


def parse_mix(spec: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in spec.split(","):
        kind, _, weight = part.partition("=")
        kind = kind.strip()
        if kind not in SCENARIOS:
            raise LoadtestError(f"--mix: unknown scenario {kind!r} (one of {', '.join(SCENARIOS)})")
        try:
            mix[kind] = float(weight)
        except ValueError:
            raise LoadtestError(f"--mix: weight of {kind!r} is not a number: {weight!r}") from None
        if mix[kind] < 0:
            raise LoadtestError(f"--mix: weight of {kind!r} is negative")
    mix = {k: w for k, w in mix.items() if w > 0}
    if not mix:
        raise LoadtestError("--mix gives no scenario a positive weight")
    return mix


@click.command()
@SERVER_OPTION  # --server and the TLS / token options of every client command
@click.option(
    "--scenario",
    default="generate",
    show_default=True,
    help="generate | invert | edit | batch | mix",
)
@click.option(
    "--concurrency",
    default="1",
    show_default=True,
    help="workers: N, or N,M,... for a sweep (one run per level)",
)
@click.option(
    "--duration", type=float, default=None, help="seconds per run [10 unless --requests is given]"
)
@click.option("--requests", "requests_", type=int, default=None, help="requests per run at most")
@click.option(
    "--rate",
    type=float,
    default=None,
    help="open loop: requests/s scheduled, latency from the scheduled time",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    help="write the report as JSON here",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path),
    default=None,
    help="write a PNG of latency and throughput against concurrency here",
)
@click.option(
    "--metrics",
    default=None,
    help=f"the gateway's metrics HOST:PORT [same host, port {DEFAULT_METRICS_PORT}]; 'off' to skip",
)
@click.option("--model", default="", help="generator (default: the repository's)")
@click.option(
    "--method",
    type=click.Choice(sorted(METHODS)),
    default="in_domain",
    show_default=True,
    help="inversion method of invert and edit",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="optimization steps per inversion (no early stopping)",
)
@click.option(
    "--batch-seeds",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="images per BatchGenerate request",
)
@click.option(
    "--images",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="distinct input images of invert/edit (rendered from seeds first)",
)
@click.option(
    "--mix", "mix_spec", default=DEFAULT_MIX, show_default=True, help="weights of the mix scenario"
)
@click.option("--seed", type=int, default=0, show_default=True, help="of the mix's choices")
@click.option(
    "--timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="deadline of each request, seconds",
)
@click.option(
    "--connect-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="seconds to wait for the gateway",
)
def loadtest(
    server: str,
    scenario: str,
    concurrency: str,
    duration: float | None,
    requests_: int | None,
    rate: float | None,
    json_path: Path | None,
    plot_path: Path | None,
    metrics: str | None,
    model: str,
    method: str,
    steps: int,
    batch_seeds: int,
    images: int,
    mix_spec: str,
    seed: int,
    timeout: float,
    connect_timeout: float,
) -> None:
    """Load-test a gateway: throughput, latency percentiles, errors by status code and the
    gateway's batch sizes, per concurrency level."""
    try:
        server = parse_address(server, "--server")
        connection, token = _connection_options()
        if scenario not in (*SCENARIOS, "mix"):
            raise LoadtestError(
                f"unknown scenario {scenario!r} (one of {', '.join(SCENARIOS)}, mix)"
            )
        for name, value in (("--duration", duration), ("--rate", rate), ("--timeout", timeout)):
            if value is not None and not value > 0:
                raise LoadtestError(f"{name} must be positive, not {value:g}")
        if requests_ is not None and requests_ < 1:
            raise LoadtestError(f"--requests must be positive, not {requests_}")
        if duration is None and requests_ is None:
            duration = 10.0
        if metrics is None:
            metrics = f"{server.rpartition(':')[0]}:{DEFAULT_METRICS_PORT}"
        metrics = None if metrics == "off" else parse_address(metrics, "--metrics")
        levels = [Level(scenario, n, duration, requests_, rate) for n in parse_levels(concurrency)]
        workload = Workload(
            model=model,
            method=method,
            steps=steps,
            batch_seeds=batch_seeds,
            images=images,
            mix=parse_mix(mix_spec),
            timeout=timeout,
            seed=seed,
        )
        report = asyncio.run(
            load_test(
                server,
                levels,
                workload,
                metrics=metrics,
                connect_timeout=connect_timeout,
                connection=connection,
                token=token,
                progress=ProgressLine(),
            )
        )
    except LoadtestError as err:
        raise click.ClickException(str(err)) from None
    except KeyboardInterrupt:
        click.echo("\ninterrupted", err=True)
        sys.exit(130)
    for line in report_lines(report):
        click.echo(line)
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    if plot_path is not None:
        plot(report, plot_path)
