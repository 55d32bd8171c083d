"""``stylegate serve|generate|invert|edit|mix|interpolate|batch|directions``: thin click
wrappers; everything but ``serve`` talks to a running gateway through service.client."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import sys
import time
from pathlib import Path

import click
import grpc
import numpy as np
from PIL import Image


def _remember(ctx: click.Context, param: click.Parameter, value):
    """Connection options are kept in ctx.meta for ``_client`` (every client command,
    and every subcommand of a group, gets them without a parameter of its own)."""
    if value is not None and value is not False:
        ctx.meta.setdefault(CONNECTION, {})[param.name] = value
    return value


CONNECTION = "stylegate.connection"
_CONNECTION_OPTIONS = [
    click.option(
        "--tls",
        is_flag=True,
        default=False,
        envvar="STYLEGATE_TLS",
        expose_value=False,
        callback=_remember,
        help="connect with TLS, the system's CA roots (implied by --tls-ca/--tls-cert)",
    ),
    click.option(
        "--tls-ca",
        envvar="STYLEGATE_TLS_CA",
        expose_value=False,
        callback=_remember,
        help="PEM CA of the gateway's certificate",
    ),
    click.option(
        "--tls-cert",
        envvar="STYLEGATE_TLS_CLIENT_CERT",
        expose_value=False,
        callback=_remember,
        help="PEM client certificate (mutual TLS)",
    ),
    click.option(
        "--tls-key",
        envvar="STYLEGATE_TLS_CLIENT_KEY",
        expose_value=False,
        callback=_remember,
        help="PEM key of --tls-cert",
    ),
    click.option(
        "--tls-server-name",
        envvar="STYLEGATE_TLS_SERVER_NAME",
        expose_value=False,
        callback=_remember,
        help="name the gateway's certificate must carry, if not the --server host",
    ),
    click.option(
        "--token-file",
        envvar="STYLEGATE_TOKEN_FILE",
        expose_value=False,
        callback=_remember,
        help="file holding the bearer token (or set STYLEGATE_TOKEN)",
    ),
    click.option(
        "--server",
        default="localhost:50051",
        show_default=True,
        envvar="STYLEGATE_SERVER",
        help="gateway address HOST:PORT",
    ),
]


def SERVER_OPTION(command):
    """--server and the TLS / token options of a client command."""
    for option in reversed(_CONNECTION_OPTIONS):
        command = option(command)
    return command


MODEL_OPTION = click.option("--model", default="", help="generator (default: the repository's)")


def parse_seeds(spec: str) -> list[int]:
    """'0-7' or '1,5,9' or '0-3,10' -> seeds (ranges inclusive)."""
    seeds: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                if int(hi) < int(lo):
                    raise click.BadParameter(f"range {part!r} runs backwards", param_hint="--seeds")
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise click.BadParameter(
                f"{part!r} is not a seed or range", param_hint="--seeds"
            ) from None
    if not seeds:
        raise click.BadParameter("no seeds given", param_hint="--seeds")
    return seeds


def parse_layers(spec: str | None) -> tuple[int, int] | None:
    if not spec:
        return None
    try:
        lo, hi = spec.split(":")
        return int(lo), int(hi)
    except ValueError:
        raise click.BadParameter(f"{spec!r} is not START:STOP", param_hint="--layers") from None


def load_latent(spec: str):
    """A seed ('42') or a .npy latent file."""
    if spec.endswith(".npy"):
        try:  # never unpickles (allow_pickle=False): a pickled array is refused
            return np.load(spec, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError, TypeError) as exc:
            raise click.BadParameter(f"{spec}: not a readable latent ({exc})") from None
    try:
        return int(spec)
    except ValueError:
        raise click.BadParameter(f"{spec!r} is neither a seed nor a .npy file") from None


def save_image(img, path: Path) -> None:
    """Write a response image as PNG (raw tensors are converted)."""
    from stylegate.service.client import image_array

    Image.fromarray(image_array(img)).save(path)


def fail(err: grpc.RpcError) -> None:
    click.echo(f"error: {err.code().name}: {err.details()}", err=True)
    sys.exit(1)


def _client(server: str, timeout: float | None = None):
    """A client with the connection options of the command line (or environment); a
    missing or unusable certificate, key or token file is one line and exit status 2."""
    import os

    from stylegate.service.client import StylegateClient
    from stylegate.service.security import SecurityConfigError

    ctx = click.get_current_context(silent=True)
    options = dict(ctx.meta.get(CONNECTION, {})) if ctx is not None else {}
    token_file = options.pop("token_file", None)
    token = os.environ.get("STYLEGATE_TOKEN") or None
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            _usage_error(f"--token-file {token_file}: cannot read it ({exc.__class__.__name__})")
        if not token:
            _usage_error(f"--token-file {token_file} is empty")
    try:
        return StylegateClient(server, timeout=timeout, token=token, **options)
    except SecurityConfigError as exc:
        _usage_error(str(exc))


@click.command()
@click.option("--port", type=int, default=None, help="gRPC port [50051]")
@click.option("--host", default=None, help="bind address; 0.0.0.0 = every interface [127.0.0.1]")
@click.option(
    "--metrics-port", type=int, default=None, help="Prometheus /metrics port, 0 = off [9090]"
)
@click.option(
    "--backend", type=click.Choice(["embedded", "triton"]), default=None, help="[embedded]"
)
@click.option("--triton-url", default=None, help="Triton gRPC HOST:PORT [localhost:8001]")
@click.option("--model-repository", default=None, help="[model_repository]")
@click.option("--intra-op-threads", type=int, default=None, help="onnxruntime threads per run [2]")
@click.option("--session-concurrency", type=int, default=None, help="onnxruntime runs at once [1]")
@click.option("--max-batch", type=int, default=None, help="micro-batcher samples per run [32]")
@click.option("--batch-window-ms", type=float, default=None, help="micro-batcher window [2]")
@click.option("--log-level", default=None, help="[INFO]")
@click.option("--tls-cert", default=None, help="PEM certificate chain: serve TLS [plaintext]")
@click.option("--tls-key", default=None, help="PEM private key of --tls-cert")
@click.option("--tls-client-ca", default=None, help="PEM CA of client certificates: mutual TLS")
@click.option(
    "--auth-file", default=None, help="access file: NAME CREDENTIAL GRANTS per line [no auth]"
)
@click.option("--reflection/--no-reflection", default=None, help="gRPC reflection [off]")
@click.option("--metrics-host", default=None, help="bind address of /metrics [--host]")
@click.option("--health-port", type=int, default=None, help="plaintext health-only port [0: off]")
@click.option("--triton-tls-ca", default=None, help="PEM CA of Triton's certificate (TLS)")
@click.option("--triton-tls-cert", default=None, help="PEM client certificate for Triton")
@click.option("--triton-tls-key", default=None, help="PEM key of --triton-tls-cert")
def serve(**flags) -> None:
    """Run the gateway (flags override STYLEGATE_* environment variables). SIGHUP re-reads
    the model repository and the access file; TLS files are re-read when they change."""
    from stylegate.service import logs
    from stylegate.service.security import SecurityConfigError
    from stylegate.service.server import serve as run
    from stylegate.service.settings import Settings

    try:
        settings = Settings.load(**flags)
    except ValueError as exc:
        _usage_error(str(exc))
    logs.configure(settings.log_level, json_lines=settings.log_json)
    try:
        asyncio.run(run(settings))
    except SecurityConfigError as exc:
        _usage_error(str(exc))


@click.command()
@click.option("--seeds", required=True, help="e.g. 0-7 or 1,5,9")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--truncation", type=float, default=None, help="psi, e.g. 0.7 (default 1: none)")
@MODEL_OPTION
@SERVER_OPTION
def generate(seeds: str, out: Path, truncation: float | None, model: str, server: str) -> None:
    """Generate one PNG per seed."""
    seed_list = parse_seeds(seeds)
    out.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    with _client(server) as c:
        try:
            with tqdm(total=len(seed_list), desc="generate", unit="img") as bar:
                for lo in range(0, len(seed_list), 16):
                    for item in c.generate(
                        seed_list[lo : lo + 16], model=model, truncation=truncation
                    ):
                        save_image(item.image, out / f"seed{item.seed:04d}.png")
                        bar.update(1)
        except grpc.RpcError as err:
            fail(err)
    click.echo(f"wrote {len(seed_list)} images to {out}")


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option(
    "--method",
    type=click.Choice(["in_domain", "optimize", "encoder"]),
    default="in_domain",
    show_default=True,
)
@click.option(
    "--steps",
    type=int,
    default=None,
    help="max steps (default 45 with lbfgs, 100 with adam; early stopping on)",
)
@click.option(
    "--lr", "learning_rate", type=float, default=None, help="adam: peak rate; lbfgs: first step"
)
@click.option("--space", type=click.Choice(["w", "w_plus"]), default=None)
@click.option(
    "--optimizer",
    type=click.Choice(["lbfgs", "adam"]),
    default=None,
    help="default: lbfgs for in_domain, adam for optimize",
)
@click.option(
    "--concurrency",
    type=int,
    default=4,
    show_default=True,
    help="images inverted at once (the gateway batches their steps)",
)
@MODEL_OPTION
@SERVER_OPTION
def invert(
    images: tuple[Path, ...],
    out: Path,
    method: str,
    steps: int | None,
    learning_rate: float | None,
    space: str | None,
    optimizer: str | None,
    concurrency: int,
    model: str,
    server: str,
) -> None:
    """Invert images: writes NAME.png (reconstruction) and NAME.npy (W+ latent)."""
    from tqdm import tqdm

    from stylegate.service.client import tensor_to_array

    out.mkdir(parents=True, exist_ok=True)
    total = (steps or 0) if method != "encoder" else 0  # the gateway's default: first progress
    bars = {p: tqdm(total=total, desc=p.name, position=i, leave=True) for i, p in enumerate(images)}

    def one(path: Path, c) -> str:
        bar = bars[path]

        def progress(p) -> None:
            bar.total = p.total_steps
            bar.n = p.step
            bar.set_postfix(loss=f"{p.loss:.4f}", refresh=False)
            bar.refresh()

        r = c.invert(
            path.read_bytes(),
            model=model,
            method=method,
            steps=steps,
            learning_rate=learning_rate,
            space=space,
            optimizer=optimizer,
            on_progress=progress,
        )
        bar.close()
        save_image(r.reconstruction, out / f"{path.stem}.png")
        np.save(out / f"{path.stem}.npy", tensor_to_array(r.ws))
        q = r.quality
        return (
            f"{path.name}: {r.steps} steps{' (early stop)' if r.early_stopped else ''}, "
            f"PSNR {q.psnr:.2f} dB, SSIM {q.ssim:.3f}, perceptual {q.perceptual_distance:.4f}, "
            f"in-domain {q.in_domain_score:.3f}, {r.seconds:.2f}s"
        )

    with _client(server) as c, concurrent.futures.ThreadPoolExecutor(max(1, concurrency)) as pool:
        futures = [pool.submit(one, p, c) for p in images]
        try:
            lines = [f.result() for f in futures]
        except grpc.RpcError as err:
            fail(err)
    for line in lines:
        click.echo(line)


@click.command()
@click.argument("source")
@click.option(
    "--direction", "directions", multiple=True, required=True, help="named direction (repeatable)"
)
@click.option(
    "--strength",
    "strengths",
    type=float,
    multiple=True,
    default=(3.0,),
    show_default=True,
    help="in standard deviations (one, or one per --direction)",
)
@click.option("--layers", default=None, help="layer range START:STOP (default: the direction's)")
@click.option(
    "--condition-on",
    multiple=True,
    help="directions to keep unchanged (default: the direction's own, measured at export)",
)
@click.option(
    "--unconditioned", is_flag=True, help="no conditioning, not even the direction's default"
)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--steps", type=int, default=None, help="inversion steps when SOURCE is an image")
@MODEL_OPTION
@SERVER_OPTION
def edit(
    source: str,
    directions: tuple[str, ...],
    strengths: tuple[float, ...],
    layers: str | None,
    condition_on: tuple[str, ...],
    unconditioned: bool,
    out: Path,
    steps: int | None,
    model: str,
    server: str,
) -> None:
    """Edit SOURCE (an image, inverted first; a .npy latent; or a seed) along directions."""
    from stylegate.protos.v1 import stylegate_pb2 as pb
    from stylegate.service.client import tensor_to_array

    if len(strengths) not in (1, len(directions)):
        raise click.BadParameter("give one --strength or one per --direction")
    if unconditioned and condition_on:
        raise click.BadParameter("give --condition-on or --unconditioned, not both")
    strengths = strengths * len(directions) if len(strengths) == 1 else strengths
    span = parse_layers(layers)
    ops = []
    for name, s in zip(directions, strengths):
        op = pb.EditOp(
            name=name, strength=s, condition_on=list(condition_on), unconditioned=unconditioned
        )
        if span:
            op.layer_start, op.layer_stop = span
        ops.append(op)
    path = Path(source)
    src = path.read_bytes() if path.exists() and path.suffix != ".npy" else load_latent(source)
    out.mkdir(parents=True, exist_ok=True)
    stem = path.stem if path.exists() else f"seed{source}"
    with _client(server) as c:
        try:
            r = c.edit(
                src,
                ops,
                model=model,
                include_original=True,
                return_latent=True,
                invert_options={"steps": steps},
            )
        except grpc.RpcError as err:
            fail(err)
    tag = "_".join(f"{d}{s:+g}" for d, s in zip(directions, strengths))
    save_image(r.image, out / f"{stem}_{tag}.png")
    save_image(r.original, out / f"{stem}_original.png")
    np.save(out / f"{stem}_{tag}.npy", tensor_to_array(r.ws))
    click.echo(f"wrote {out / f'{stem}_{tag}.png'} (and the original, and the latent)")


@click.command()
@click.option("--a", "a", required=True, help="base latent: seed or .npy")
@click.option("--b", "b", required=True, help="latent whose layers are mixed in: seed or .npy")
@click.option("--layers", default=None, help="layers taken from B, START:STOP (default 0:num_ws/2)")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@MODEL_OPTION
@SERVER_OPTION
def mix(a: str, b: str, layers: str | None, out: Path, model: str, server: str) -> None:
    """Style mixing: layers of B over A."""
    out.mkdir(parents=True, exist_ok=True)
    with _client(server) as c:
        try:
            r = c.style_mix(
                load_latent(a), load_latent(b), model=model, layers=parse_layers(layers)
            )
        except grpc.RpcError as err:
            fail(err)
    name = f"mix_{Path(a).stem}_{Path(b).stem}.png"
    save_image(r.image, out / name)
    click.echo(f"wrote {out / name}")


@click.command()
@click.option("--start", required=True, help="seed or .npy")
@click.option("--end", required=True, help="seed or .npy")
@click.option("--frames", type=int, default=16, show_default=True)
@click.option("--mode", type=click.Choice(["lerp", "slerp"]), default="lerp", show_default=True)
@click.option("--fps", type=float, default=12.0, show_default=True)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="a .gif file or a directory"
)
@MODEL_OPTION
@SERVER_OPTION
def interpolate(
    start: str, end: str, frames: int, mode: str, fps: float, out: Path, model: str, server: str
) -> None:
    """Interpolate between two latents; writes an animated GIF."""
    from stylegate.service.client import image_array

    with _client(server) as c:
        try:
            r = c.interpolate(
                load_latent(start), load_latent(end), frames=frames, mode=mode, model=model
            )
        except grpc.RpcError as err:
            fail(err)
    if out.suffix.lower() != ".gif":
        out.mkdir(parents=True, exist_ok=True)
        out = out / f"interp_{Path(start).stem}_{Path(end).stem}.gif"
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
    pics = [Image.fromarray(image_array(f)) for f in r.frames]
    pics[0].save(
        out, save_all=True, append_images=pics[1:] + pics[-2:0:-1], duration=int(1000 / fps), loop=0
    )
    click.echo(f"wrote {out} ({len(pics)} frames)")


@click.command()
@click.option("--seeds", default=None, help="generate: e.g. 0-999 or 1,5,9")
@click.option(
    "--images",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="invert: a folder of images (sorted by name; outputs named by file stem)",
)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option(
    "--chunk-size",
    type=int,
    default=16,
    show_default=True,
    help="items per latents/manifest chunk: the unit of resuming and of sharding",
)
@click.option("--truncation", type=float, default=None, help="--seeds: psi (default 1: none)")
@click.option(
    "--method",
    type=click.Choice(["in_domain", "optimize", "encoder"]),
    default=None,
    help="--images: inversion method [in_domain]",
)
@click.option(
    "--steps",
    type=int,
    default=None,
    help="--images: max steps [gateway's: 45 for in_domain (L-BFGS), 100 for optimize]",
)
@click.option("--lr", "learning_rate", type=float, default=None, help="--images: peak rate")
@click.option("--space", type=click.Choice(["w", "w_plus"]), default=None, help="--images")
@click.option(
    "--optimizer",
    type=click.Choice(["lbfgs", "adam"]),
    default=None,
    help="--images: [lbfgs for in_domain, adam for optimize; recorded in job.json]",
)
@click.option(
    "--edit",
    "edits",
    multiple=True,
    help="--images: NAME=STRENGTH, also write <stem>.<NAME><+STRENGTH>.png (repeatable)",
)
@click.option(
    "--concurrency",
    type=int,
    default=None,
    help="inversions (or seed chunks) in flight; the gateway batches them [8; seeds 2]",
)
@click.option("--shard", default=None, help="INDEX/COUNT: this process's share, e.g. 0/4")
@click.option(
    "--shard-count",
    type=int,
    default=None,
    help="COUNT shards, this one's index from $JOB_COMPLETION_INDEX (a Kubernetes Indexed Job)",
)
@click.option("--restart", is_flag=True, help="redo this shard's items even if finished")
@MODEL_OPTION
@SERVER_OPTION
def batch(
    seeds: str | None,
    images: Path | None,
    out: Path,
    chunk_size: int,
    truncation: float | None,
    method: str | None,
    steps: int | None,
    learning_rate: float | None,
    space: str | None,
    optimizer: str | None,
    edits: tuple[str, ...],
    concurrency: int | None,
    shard: str | None,
    shard_count: int | None,
    restart: bool,
    model: str,
    server: str,
) -> None:
    """Bulk jobs: generate --seeds, or invert (and --edit) a folder of --images. Writes
    PNGs, latents/chunk-N.npz and manifest/chunk-N.json under OUT; an interrupted run
    resumes where it stopped when run again; --shard splits a job over processes."""
    from stylegate.service import bulk

    try:
        job, the_shard = _bulk_job(
            seeds, images, chunk_size, truncation, method, steps, learning_rate, space,
            optimizer, edits, shard, shard_count, model,
        )  # fmt: skip
    except bulk.BulkError as exc:
        _usage_error(str(exc))
    if concurrency is not None and concurrency < 1:
        _usage_error("--concurrency must be at least 1")
    if concurrency is None:
        concurrency = 8 if job.kind == "invert" else 2
    with _client(server) as c:
        _run_bulk(c, job, the_shard, out, concurrency, restart)


def _bulk_job(
    seeds, images, chunk_size, truncation, method, steps, learning_rate, space, optimizer,
    edits, shard, shard_count, model,
):  # fmt: skip
    """The job and shard the options describe (bulk.BulkError: a one-line mistake)."""
    import os

    from stylegate.service import bulk

    if (seeds is None) == (images is None):
        raise bulk.BulkError("give --seeds (generate) or --images (invert), not both")
    if shard is not None and shard_count is not None:
        raise bulk.BulkError("give --shard INDEX/COUNT or --shard-count COUNT, not both")
    if shard is not None:
        the_shard = bulk.Shard.parse(shard)
    elif shard_count is not None:
        index = os.environ.get("JOB_COMPLETION_INDEX")
        if index is None or not index.strip().isdigit():
            raise bulk.BulkError(
                "--shard-count needs $JOB_COMPLETION_INDEX (set by a Kubernetes Indexed Job) "
                "to be this shard's index; elsewhere use --shard INDEX/COUNT"
            )
        the_shard = bulk.Shard.of(int(index), shard_count, "--shard-count/JOB_COMPLETION_INDEX")
    else:
        the_shard = bulk.Shard()
    if seeds is not None:
        images_only = {
            "--method": method,
            "--steps": steps,
            "--lr": learning_rate,
            "--space": space,
            "--optimizer": optimizer,
            "--edit": edits or None,
        }
        given = [name for name, value in images_only.items() if value is not None]
        if given:
            raise bulk.BulkError(f"{given[0]} applies to --images, not to --seeds")
        try:
            seed_list = parse_seeds(seeds)
        except click.BadParameter as exc:
            raise bulk.BulkError(f"--seeds: {exc.message}") from None
        options = {"model": model, "truncation": truncation}
        return bulk.Job("generate", bulk.seed_items(seed_list), chunk_size, options), the_shard
    if truncation is not None:
        raise bulk.BulkError("--truncation applies to --seeds, not to --images")
    if steps is not None and steps < 0:
        raise bulk.BulkError("--steps must be 0 or more")
    method = method or "in_domain"
    if method == "encoder" and optimizer is not None:
        raise bulk.BulkError("--optimizer applies to in_domain and optimize, not to encoder")
    if method != "encoder" and optimizer is None:
        # pinned in job.json: a rerun after an upgrade that changed the default still
        # resumes the job as it began, or is refused as another job
        from stylegate.service.inversion import DEFAULTS

        optimizer = DEFAULTS[method].optimizer
    options = {
        "model": model,
        "method": method,
        "steps": steps,
        "learning_rate": learning_rate,
        "space": space,
        "optimizer": optimizer,
    }
    parsed = tuple(bulk.Edit.parse(e) for e in edits)
    return bulk.Job("invert", bulk.image_items(images), chunk_size, options, parsed), the_shard


BULK_LOG_EVERY_S = 30.0  # progress lines of `stylegate batch` without a terminal


def _run_bulk(c, job, shard, out: Path, concurrency: int, restart: bool) -> None:
    """Run the job's shard with a progress bar; every way it can stop is one line (and
    exit 130 after Ctrl-C, 143 after SIGTERM, with how to resume)."""
    import signal

    from tqdm import tqdm

    from stylegate.service import bulk

    if job.edits:  # an unknown direction is found before any inversion is spent
        try:
            known = {d.name for d in c.list_directions(job.options["model"])}
        except grpc.RpcError as err:
            fail(err)
        unknown = [e.name for e in job.edits if e.name not in known]
        if unknown:
            _usage_error(
                f"--edit {unknown[0]}: the model has no such direction "
                f"(it has: {', '.join(sorted(known)) or 'none'})"
            )
    where = "" if shard.count == 1 else f" of shard {shard}"
    signals = {"sigterm": False}

    def on_sigterm(signum, frame):
        signals["sigterm"] = True
        raise bulk.Terminated

    bar = tqdm(total=0, desc=f"batch {shard}" if where else "batch", unit="img", disable=None)

    logged = {"at": time.monotonic()}  # the first line after BULK_LOG_EVERY_S, or at the end

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        now = time.monotonic()
        # no terminal (a Job's pod, a pipe): no bar, so a line now and then for the log
        if bar.disable and total and (now - logged["at"] >= BULK_LOG_EVERY_S or done == total):
            logged["at"] = now
            click.echo(f"batch{where}: {done} of {total} items done", err=True)

    runner = bulk.Runner(c, job, out, shard, concurrency=concurrency, restart=restart)
    # installed last: from here on a SIGTERM anywhere in the run ends as Interrupted
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        summary = runner.run(progress)
    except bulk.Interrupted as stop:
        bar.close()
        click.echo(
            f"interrupted: {stop.done} of {stop.total} items{where} done and kept in {out}; "
            "run the same command again to resume",
            err=True,
        )
        sys.exit(143 if signals["sigterm"] else 130)
    except (bulk.Busy, bulk.GatewayError) as exc:
        bar.close()
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except bulk.BulkError as exc:
        bar.close()
        _usage_error(str(exc))
    except OSError as exc:
        bar.close()
        click.echo(f"error: {out}: {exc.strerror or exc} ({exc.filename or ''})", err=True)
        sys.exit(1)
    except grpc.RpcError as err:
        bar.close()
        fail(err)
    finally:
        signal.signal(signal.SIGTERM, previous)
    bar.close()
    noun = "images" if job.kind == "generate" else "items"
    if summary.total == 0:
        click.echo(f"nothing to do{where}: the job has {job.n_chunks} chunk(s) of {job.chunk_size}")
    elif summary.before == summary.total:
        click.echo(f"all {summary.total} {noun}{where} were already done in {out}")
    else:
        resumed = f" ({summary.before} done before)" if summary.before else ""
        click.echo(f"wrote {summary.total} {noun}{where} to {out}{resumed}")
    if summary.failed:  # bad inputs: recorded in the manifests, the rest of the job done
        click.echo(
            f"warning: {len(summary.failed)} item(s) failed and were recorded as such in "
            f"{out}/{bulk.MANIFEST_DIR}/ (first: {summary.failed[0]})",
            err=True,
        )


@click.command()
@SERVER_OPTION
def reload(server: str) -> None:
    """Have the gateway re-read its model repository (after `stylegate export --from`,
    `train encoder` or `directions train`); prints what it serves now."""
    with _client(server) as c:
        try:
            served = c.reload().models
        except grpc.RpcError as err:
            fail(err)
    click.echo(f"serving {', '.join(served)}")


@click.group(invoke_without_command=True)
@MODEL_OPTION
@SERVER_OPTION
@click.pass_context
def directions(ctx: click.Context, model: str, server: str) -> None:
    """List a generator's named latent directions (the default), or train new ones."""
    if ctx.invoked_subcommand is None:
        _list_directions(model, server)


@directions.command("list")
@MODEL_OPTION
@SERVER_OPTION
def list_directions(model: str, server: str) -> None:
    """List the named latent directions of a generator (over gRPC)."""
    _list_directions(model, server)


def _list_directions(model: str, server: str) -> None:
    with _client(server) as c:
        try:
            found = c.list_directions(model)
        except grpc.RpcError as err:
            fail(err)
    for d in found:
        stats = ", ".join(f"{k} {v:.3g}" for k, v in sorted(d.stats.items()))
        attr = f" attribute={d.attribute}" if d.attribute else ""
        click.echo(
            f"{d.name:20s} {d.method:12s} std {d.std:.3g} layers [{d.layer_start}, "
            f"{d.layer_stop}){attr}{'  ' + stats if stats else ''}"
        )


@directions.command("train")
@click.option("--model", default="", help="generator in the repository (default: its default)")
@click.option("--labels", type=click.Path(path_type=Path), help="CSV: seed or latent, scores")
@click.option("--classifier", type=click.Path(path_type=Path), help="ONNX attribute classifier")
@click.option("--samples", type=int, default=2000, show_default=True, help="with --classifier")
@click.option("--attributes", default="", help="names of the classifier's outputs: a,b,c")
@click.option(
    "--repository",
    type=click.Path(path_type=Path),
    default="model_repository",
    show_default=True,
    envvar="STYLEGATE_MODEL_REPOSITORY",
)
@click.option("--name", default=None, help="direction name (one attribute; default its column)")
@click.option("--layers", default=None, help="default layer range START:STOP (default: all)")
@click.option(
    "--fraction",
    type=float,
    default=0.15,
    show_default=True,
    help="score columns: top/bottom share taken as the two classes",
)
def train_directions(
    model: str,
    labels: Path | None,
    classifier: Path | None,
    samples: int,
    attributes: str,
    repository: Path,
    name: str | None,
    layers: str | None,
    fraction: float,
) -> None:
    """Train InterFaceGAN boundaries from labels or an ONNX classifier into the repository."""
    if (labels is None) == (classifier is None):
        _usage_error("give exactly one of --labels FILE.csv or --classifier FILE.onnx")
    if not 0 < fraction <= 0.5:
        _usage_error(f"--fraction {fraction} is not in (0, 0.5]")
    try:
        span = parse_layers(layers)
    except click.BadParameter as exc:
        _usage_error(exc.format_message())
    from stylegate.export import boundaries as B  # onnxruntime + sklearn, no torch

    options = dataclasses.replace(B.DEFAULT_OPTIONS, fraction=fraction)
    try:
        if labels is not None:
            gen, found, path = B.train_from_labels(
                repository, labels, model=model, name=name, layers=span, options=options
            )
        else:
            gen, found, path = B.train_from_classifier(
                repository,
                classifier,
                model=model,
                samples=samples,
                attributes=[a for a in attributes.split(",") if a.strip()],
                name=name,
                layers=span,
                options=options,
            )
    except B.BoundaryError as exc:
        _usage_error(str(exc))
    for b in found:
        click.echo(
            f"{b.name:20s} attribute={b.attribute} held-out accuracy {b.accuracy:.3f} "
            f"({b.test_samples} of {b.train_samples + b.test_samples} samples) "
            f"std {b.std:.3g} layers [{b.layers[0]}, {b.layers[1]})"
        )
    click.echo(
        f"wrote {len(found)} direction(s) of {gen!r} to {path}; a running gateway picks them "
        "up after `stylegate reload` (or SIGHUP to `stylegate serve`), no restart needed"
    )


def _usage_error(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)
