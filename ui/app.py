"""``stylegate ui``: the editing playground. Static files (plain HTML/JS/CSS, nothing from a
CDN) plus a small JSON API; inversion progress reaches the browser as Server-Sent Events.

API (JSON in and out; errors are ``{"error", "field", "code"}`` with an HTTP status):
  GET  /health                  the ui is up; whether the gateway answers ListModels
  GET  /api/models              generators, their directions and inversion methods
  POST /api/invert              multipart image + options -> text/event-stream of
                                progress / preview / result / error events
  POST /api/seed                {model, seed, truncation} -> image + latent id
  POST /api/edit                {model, latent, edits[], session} -> image + edited latent id
  POST /api/mix                 {model, a, b, layer_start, layer_stop, session} -> image
  POST /api/interpolate         {model, start, end, frames, mode, session} -> frames
  GET  /api/latents/{id}.npy    a latent as a numpy file
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from importlib import resources
from pathlib import Path

import click
from aiohttp import web

from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.service.client import METHODS, OPTIMIZERS
from stylegate.ui.gateway import Gateway, Superseded, UiError, data_url, npy_bytes

GATEWAY = web.AppKey("gateway", Gateway)
STATIC = Path(str(resources.files("stylegate.ui") / "static"))
MAX_UPLOAD_BYTES = 32 * 1024 * 1024  # past it: a readable "too large" before the gateway
PNG = pb.OutputOptions(format=pb.IMAGE_FORMAT_PNG)
SECURITY_HEADERS = {
    # Only this origin: the page works offline and can never pull a script from elsewhere.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# --- plumbing ---------------------------------------------------------------------------


def _error(err: UiError) -> web.Response:
    return web.json_response(err.payload(), status=err.status)


@web.middleware
async def _errors_and_headers(request: web.Request, handler) -> web.StreamResponse:
    """Every failure is JSON the page can show beside its control, never an HTML page."""
    try:
        response = await handler(request)
    except UiError as err:
        response = _error(err)
    except Superseded:
        response = web.json_response(
            {"error": "superseded by a newer request", "superseded": True}, status=409
        )
    except web.HTTPRequestEntityTooLarge:
        response = _error(_too_large())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = web.json_response(
            {"error": exc.reason, "field": "", "code": ""}, status=exc.status
        )
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response


def _too_large() -> UiError:
    return UiError(
        f"image: too large (the playground takes files up to {MAX_UPLOAD_BYTES // 2**20} MiB)",
        status=413,
        field="image",
    )


async def _body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UiError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise UiError("the request body must be a JSON object")
    return body


def _int(body: dict, name: str, default: int | None = None, *, lo: int, hi: int) -> int | None:
    value = body.get(name, default)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UiError(f"{name}: not a whole number ({value!r})", field=name) from None
    if not lo <= number <= hi:
        raise UiError(f"{name}: {number} is outside [{lo}, {hi}]", field=name)
    return number


def _float(body: dict, name: str, default: float | None = None) -> float | None:
    value = body.get(name, default)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UiError(f"{name}: not a number ({value!r})", field=name) from None
    if not math.isfinite(number):
        raise UiError(f"{name}: not a finite number", field=name)
    return number


def _slot(body, kind: str) -> tuple[str, str]:
    """Calls of one page (its random session id) and kind replace each other."""
    return (str(body.get("session", ""))[:64], kind)


# --- handlers -----------------------------------------------------------------------------


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def _charset(request: web.Request, response: web.StreamResponse) -> None:
    """Static text files say they are UTF-8 (the page has non-ASCII labels)."""
    kind = response.headers.get("Content-Type", "")
    text = kind.startswith("text/") or kind == "application/javascript"
    if text and "charset" not in kind:
        response.headers["Content-Type"] = f"{kind}; charset=utf-8"


async def health(request: web.Request) -> web.Response:
    """200 while the ui runs (a liveness probe); says whether the gateway answers."""
    gw = request.app[GATEWAY]
    try:
        await asyncio.wait_for(gw.unary("ListModels", pb.ListModelsRequest()), 3.0)
        gateway = "ok"
    except (UiError, TimeoutError) as err:
        gateway = err.message if isinstance(err, UiError) else "no answer in 3 s"
    return web.json_response(
        {
            "status": "ok",
            "gateway": gateway,
            "server": gw.address,
            "active_calls": gw.active_calls,
            "latents": len(gw.latents),
        }
    )


async def models(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    listing = await gw.unary("ListModels", pb.ListModelsRequest())
    return web.json_response(
        {
            "server": gw.address,
            "default": listing.default_model,
            "models": [
                {
                    "name": m.name,
                    "description": m.description,
                    "resolution": m.resolution,
                    "num_ws": m.num_ws,
                    "w_dim": m.w_dim,
                    "c_dim": m.c_dim,
                    "inversion_methods": list(m.inversion_methods),
                    "directions": [
                        {
                            "name": d.name,
                            "method": d.method,
                            "std": d.std,
                            "layer_start": d.layer_start,
                            "layer_stop": d.layer_stop,
                            "attribute": d.attribute,
                        }
                        for d in m.directions
                    ],
                }
                for m in listing.models
            ],
        }
    )


async def invert(request: web.Request) -> web.StreamResponse:
    """The Invert stream as Server-Sent Events. Errors before the first message are plain
    JSON errors; the gRPC call is cancelled when the browser goes away (the next write
    fails) or when the same page starts another inversion."""
    gw = request.app[GATEWAY]
    try:
        form = await request.post()
    except ValueError as exc:  # aiohttp's multipart reader on a body past client_max_size
        if "exceeds" in str(exc) or "too large" in str(exc).lower():
            raise _too_large() from None
        raise UiError(f"could not read the upload ({exc})", field="image") from None
    upload = form.get("image")
    data = upload.file.read() if isinstance(upload, web.FileField) else b""
    if not data:
        raise UiError("image: choose an image file first", field="image")
    name = upload.filename if isinstance(upload, web.FileField) else "upload"
    method = str(form.get("method") or "in_domain")
    if method not in METHODS:
        raise UiError(f"method: unknown inversion method {method!r}", field="method")
    optimizer = str(form.get("optimizer") or "") or None  # "": the method's default
    if optimizer not in OPTIMIZERS:
        raise UiError(f"optimizer: unknown optimizer {optimizer!r}", field="optimizer")
    values = {k: form.get(k) for k in ("steps", "preview_every")}
    steps = _int(values, "steps", None, lo=1, hi=100_000)
    preview_every = _int(values, "preview_every", 5, lo=0, hi=100_000)
    model = str(form.get("model") or "")
    req = pb.InvertRequest(
        model=model,
        image=pb.Image(data=data),
        method=METHODS[method],
        optimizer=OPTIMIZERS[optimizer],
        steps=steps,
        preview_every=preview_every or 0,
        progress_every=1,
        output=PNG,
    )
    if str(form.get("early_stop", "1")) in ("0", "false", "off"):
        req.early_stop_tol = 0.0  # run every step (the gateway's default stops on a plateau)
    started = time.perf_counter()
    stream = gw.stream("Invert", req, slot=_slot(form, "invert"))
    response: web.StreamResponse | None = None
    try:
        first = await stream.read()
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                **SECURITY_HEADERS,
            }
        )
        await response.prepare(request)
        message = first
        while message is not None:
            event, payload = _invert_event(gw, message, name, started)
            await response.write(_sse(event, payload))
            if event == "result":
                break
            message = await stream.read()
        else:
            await response.write(_sse("error", {"error": "the inversion ended without a result"}))
    except (ConnectionResetError, asyncio.CancelledError):
        stream.close()  # the browser went away: stop the gateway's work too
        raise
    except (UiError, Superseded) as err:
        if response is None:
            raise
        if isinstance(err, Superseded):
            payload = {"error": "superseded by a newer inversion", "superseded": True}
        else:
            payload = err.payload()
        try:
            await response.write(_sse("error", payload))
        except ConnectionResetError:
            pass
    finally:
        stream.close()
    return response


def _invert_event(gw: Gateway, message: pb.InvertResponse, name: str, started: float):
    if message.HasField("result"):
        r = message.result
        label = f"{name} ({r.method}, {r.quality.psnr:.1f} dB)"
        return "result", {
            "latent": gw.keep(r.ws, r.model, label),
            "label": label,
            "model": r.model,
            "reconstruction": data_url(r.reconstruction),
            "target": data_url(r.target),
            "psnr": r.quality.psnr,
            "ssim": r.quality.ssim,
            "loss": r.loss,
            "steps": r.steps,
            "early_stopped": r.early_stopped,
            "method": r.method,
            "optimizer": r.optimizer,
            "space": r.space,
            "seconds": r.seconds,
            "elapsed": time.perf_counter() - started,
        }
    p = message.progress
    payload = {
        "step": p.step,
        "total": p.total_steps,
        "loss": p.loss,
        # terms.pixel is the unweighted MSE on [-1, 1] images: PSNR on [0, 1] is 10 log10(4 / mse)
        "psnr": 10 * math.log10(4 / p.terms.pixel) if p.terms.pixel > 0 else None,
    }
    if p.HasField("preview") and p.preview.data:
        payload["preview"] = data_url(p.preview)
    return "progress", payload


def _sse(event: str, payload: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload)}\n\n".encode()


async def seed(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = await _body(request)
    value = _int(body, "seed", 0, lo=0, hi=2**63 - 1)
    truncation = _float(body, "truncation", None)
    class_label = _int(body, "class_label", None, lo=0, hi=1_000_000)
    model = str(body.get("model") or "")
    req = pb.GenerateRequest(
        model=model,
        seeds=[value],
        truncation=pb.Truncation(psi=truncation),
        output=PNG,
        return_latents=True,
        class_label=class_label,
    )
    response = await gw.unary("Generate", req, slot=_slot(body, "seed"))
    image = response.images[0]
    label = f"seed {value}" + (f" (psi {truncation:g})" if truncation is not None else "")
    return web.json_response(
        {
            "latent": gw.keep(image.ws, response.model, label),
            "label": label,
            "model": response.model,
            "image": data_url(image.image),
        }
    )


def _edit_ops(body: dict) -> list[pb.EditOp]:
    edits = body.get("edits") or []
    if not isinstance(edits, list):
        raise UiError("edits: a list of {name, strength} expected", field="edits")
    ops = []
    for i, e in enumerate(edits):
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            raise UiError(f"edits[{i}]: needs a direction name", field="edits")
        op = pb.EditOp(name=e["name"], strength=_float(e, "strength", 0.0))
        start = _int(e, "layer_start", None, lo=0, hi=1024)
        stop = _int(e, "layer_stop", None, lo=0, hi=1024)
        if start is not None:
            op.layer_start = start
        if stop is not None:
            op.layer_stop = stop
        op.condition_on.extend(str(c) for c in e.get("condition_on") or [] if c != e["name"])
        unconditioned = e.get("unconditioned", False)
        if not isinstance(unconditioned, bool):
            raise UiError("true or false expected", field=f"edits[{i}].unconditioned")
        op.unconditioned = unconditioned
        ops.append(op)
    return ops


async def edit(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = await _body(request)
    source = gw.source(str(body.get("latent", "")))
    model = str(body.get("model") or "")
    req = pb.EditRequest(
        model=model, latent=source, edits=_edit_ops(body), output=PNG, return_latent=True
    )
    started = time.perf_counter()
    response = await gw.unary("Edit", req, slot=_slot(body, "edit"))
    return web.json_response(
        {
            "image": data_url(response.image),
            "latent": gw.keep(response.ws, response.model, "edited"),
            "model": response.model,
            "ms": round(1000 * (time.perf_counter() - started), 1),
        }
    )


async def mix(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = await _body(request)
    req = pb.StyleMixRequest(
        model=str(body.get("model") or ""),
        a=gw.source(str(body.get("a", "")), field="a"),
        b=gw.source(str(body.get("b", "")), field="b"),
        output=PNG,
        return_latent=True,
    )
    start = _int(body, "layer_start", None, lo=0, hi=1024)
    stop = _int(body, "layer_stop", None, lo=0, hi=1024)
    if start is not None:
        req.layer_start = start
    if stop is not None:
        req.layer_stop = stop
    response = await gw.unary("StyleMix", req, slot=_slot(body, "mix"))
    label = f"mix [{req.layer_start}, {req.layer_stop})" if start is not None else "mix"
    return web.json_response(
        {
            "image": data_url(response.image),
            "latent": gw.keep(response.ws, response.model, label),
            "label": label,
        }
    )


async def interpolate(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = await _body(request)
    mode = str(body.get("mode") or "lerp")
    modes = {"lerp": pb.INTERPOLATION_MODE_LERP, "slerp": pb.INTERPOLATION_MODE_SLERP}
    if mode not in modes:
        raise UiError(f"mode: {mode!r} is not lerp or slerp", field="mode")
    req = pb.InterpolateRequest(
        model=str(body.get("model") or ""),
        start=gw.source(str(body.get("start", "")), field="start"),
        end=gw.source(str(body.get("end", "")), field="end"),
        frames=_int(body, "frames", 8, lo=2, hi=64),
        mode=modes[mode],
        output=PNG,
    )
    response = await gw.unary("Interpolate", req, slot=_slot(body, "interpolate"))
    return web.json_response({"frames": [data_url(f) for f in response.frames]})


async def latent_npy(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    key = request.match_info["key"]
    latent = gw.latents.get(key)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", latent.label).strip("_")[:60] or "latent"
    return web.Response(
        body=npy_bytes(latent.ws),
        content_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{stem}-{key}.npy"'},
    )


# --- the app ------------------------------------------------------------------------------


def create_app(gateway: Gateway) -> web.Application:
    """The web app in front of ``gateway`` (closed with the app)."""
    app = web.Application(client_max_size=MAX_UPLOAD_BYTES, middlewares=[_errors_and_headers])
    app[GATEWAY] = gateway
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_get("/api/models", models)
    app.router.add_post("/api/invert", invert)
    app.router.add_post("/api/seed", seed)
    app.router.add_post("/api/edit", edit)
    app.router.add_post("/api/mix", mix)
    app.router.add_post("/api/interpolate", interpolate)
    app.router.add_get(r"/api/latents/{key:[0-9a-f]+}.npy", latent_npy)
    app.router.add_static("/static/", STATIC, append_version=False)

    async def close(app: web.Application) -> None:
        await app[GATEWAY].close()

    app.on_response_prepare.append(_charset)
    app.on_cleanup.append(close)
    return app


_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def check_address(server: str) -> str:
    """HOST:PORT or a ClickException naming the problem (before any connection attempt)."""
    match = _ADDRESS.match(server.strip())
    if server.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return server
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise click.ClickException(f"--server {server!r}: expected HOST:PORT, e.g. localhost:50051")
    return server.strip()


async def serve(gateway: Gateway, host: str, port: int, ready=None) -> None:
    """Run the app until cancelled; a port that cannot be bound is a ClickException."""
    runner = web.AppRunner(create_app(gateway), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "is something else using it? Pick another with --port"
            ) from None
        bound = site._server.sockets[0].getsockname()[1] if site._server else port
        if ready is not None:
            ready(bound)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def _gateway_from_cli(server: str) -> Gateway:
    """The connection options shared with the other client commands (TLS, token)."""
    import os

    from stylegate.service.cli import CONNECTION
    from stylegate.service.security import SecurityConfigError, channel_credentials

    ctx = click.get_current_context(silent=True)
    options = dict(ctx.meta.get(CONNECTION, {})) if ctx is not None else {}
    token = os.environ.get("STYLEGATE_TOKEN") or None
    if options.get("token_file"):
        try:
            token = Path(options["token_file"]).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(
                f"--token-file {options['token_file']}: cannot read it ({exc.__class__.__name__})"
            ) from None
    credentials = None
    if any(options.get(k) for k in ("tls", "tls_ca", "tls_cert", "tls_key")):
        try:
            credentials = channel_credentials(
                options.get("tls_ca"), options.get("tls_cert"), options.get("tls_key")
            )
        except SecurityConfigError as exc:
            raise click.ClickException(str(exc)) from None
    return Gateway(
        server,
        credentials=credentials,
        server_name=options.get("tls_server_name"),
        token=token,
    )


def _ui_command():
    from stylegate.service.cli import SERVER_OPTION

    @click.command(name="ui")
    @click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
    @click.option(
        "--host", default="127.0.0.1", show_default=True, help="bind address (0.0.0.0: all)"
    )
    @SERVER_OPTION
    def ui(server: str, port: int, host: str) -> None:
        """The editing playground: a web page to invert, edit, mix and interpolate faces
        with a running gateway (start one with `make serve`)."""
        address = check_address(server)

        async def main() -> None:
            gateway = _gateway_from_cli(address)
            shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host

            def ready(bound: int) -> None:
                click.echo(f"stylegate ui: http://{shown}:{bound}/ (gateway {address})", err=True)

            await serve(gateway, host, port, ready)

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            pass

    return ui


ui = _ui_command()
