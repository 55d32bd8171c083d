"""The playground's web app (ui/app.py) against a real gateway on a loopback port, through
aiohttp's test client: content types, health, the SSE inversion, edits, downloads, and
readable errors for what users get wrong or what breaks."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image
from support.gateway_harness import running_gateway

from stylegate.service.metadata import load_repository
from stylegate.service.signatures import METADATA_FILE
from stylegate.ui.app import MAX_UPLOAD_BYTES, STATIC, create_app
from stylegate.ui.gateway import Gateway


@pytest.fixture(scope="module")
def gateway(tiny_repository):
    with running_gateway(load_repository(tiny_repository)) as g:
        yield g


def _dead_address() -> str:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _with_client(address: str, body):
    """Run ``body(client)`` against a fresh app on ``address``'s gateway."""

    async def main():
        async with TestClient(TestServer(create_app(Gateway(address)))) as client:
            return await body(client)

    return asyncio.run(main())


def _png(size: int = 16, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _form(data: bytes, filename: str = "face.png", **fields):
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("image", data, filename=filename, content_type="image/png")
    for k, v in fields.items():
        form.add_field(k, str(v))
    return form


def _events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.split("\n\n"):
        if block.strip():
            event = re.search(r"^event: (.*)$", block, re.MULTILINE).group(1)
            data = re.search(r"^data: (.*)$", block, re.MULTILINE).group(1)
            out.append((event, json.loads(data)))
    return out


def _decode(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,"), url[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_importing_the_ui_loads_no_torch():
    code = "import sys, stylegate.ui.app, stylegate.ui.gateway; print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_static_files_are_served_with_their_types_and_nothing_external(gateway):
    async def body(client):
        found = {}
        for path in ("/", "/static/app.js", "/static/style.css"):
            r = await client.get(path)
            assert r.status == 200, path
            found[path] = (r.headers["Content-Type"], r.headers.get("Content-Security-Policy"))
        return found

    found = _with_client(gateway.address, body)
    assert found["/"][0].startswith("text/html")
    assert found["/static/app.js"][0] in (
        "application/javascript; charset=utf-8",
        "text/javascript; charset=utf-8",
    )
    assert found["/static/style.css"][0] == "text/css; charset=utf-8"
    assert all("default-src 'self'" in csp for _, csp in found.values())
    # the page works offline: no file refers to another origin
    files = sorted(STATIC.iterdir())
    assert {f.name for f in files} >= {"index.html", "app.js", "style.css"}
    for f in files:
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", f.read_text()), f.name


def test_health_says_whether_the_gateway_answers(gateway):
    async def body(client):
        r = await client.get("/health")
        return r.status, await r.json()

    status, up = _with_client(gateway.address, body)
    assert status == 200 and up["status"] == "ok" and up["gateway"] == "ok"
    dead = _dead_address()
    status, down = _with_client(dead, body)
    assert status == 200 and down["status"] == "ok"
    assert down["gateway"].startswith(f"gateway unavailable at {dead}")


def test_a_gateway_that_is_down_is_a_readable_message(gateway):
    dead = _dead_address()

    async def body(client):
        r = await client.get("/api/models")
        return r.status, r.headers["Content-Type"], await r.json()

    status, kind, payload = _with_client(dead, body)
    assert status == 503 and kind.startswith("application/json")
    assert payload["error"].startswith(f"gateway unavailable at {dead}")
    assert payload["code"] == "UNAVAILABLE"


def test_models_lists_generators_directions_and_methods(gateway):
    async def body(client):
        r = await client.get("/api/models")
        return r.status, await r.json()

    status, data = _with_client(gateway.address, body)
    assert status == 200
    by_name = {m["name"]: m for m in data["models"]}
    assert data["default"] in by_name
    default = by_name[data["default"]]
    assert default["inversion_methods"] and default["num_ws"] > 0
    assert default["directions"] and {"name", "std", "layer_start"} <= set(default["directions"][0])


def test_a_bad_image_is_a_message_naming_the_field(gateway):
    async def body(client):
        bad = await client.post("/api/invert", data=_form(b"this is not a picture", "x.png"))
        empty = await client.post("/api/invert", data=_form(b""))
        big = await client.post("/api/invert", data=_form(b"\0" * (MAX_UPLOAD_BYTES + 1)))
        return [(r.status, await r.json()) for r in (bad, empty, big)]

    (s1, bad), (s2, empty), (s3, big) = _with_client(gateway.address, body)
    assert s1 == 400 and bad["field"] == "image.data" and "not an image" in bad["error"]
    assert s2 == 400 and "choose an image" in empty["error"]
    assert s3 == 413 and "too large" in big["error"] and big["field"] == "image"


def test_invert_streams_progress_then_a_result_that_edits_and_downloads(gateway):
    steps = 6

    async def body(client):
        form = _form(_png(), steps=steps, preview_every=2, early_stop=0, method="in_domain")
        r = await client.post("/api/invert", data=form)
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        events = _events(await r.text())
        latent = events[-1][1]["latent"]
        npy = await client.get(f"/api/latents/{latent}.npy")
        npy_bytes = await npy.read()
        name = (await (await client.get("/api/models")).json())["models"][0]["directions"][0]
        plain = await client.post("/api/edit", json={"latent": latent, "edits": []})
        edited = await client.post(
            "/api/edit",
            json={"latent": latent, "edits": [{"name": name["name"], "strength": 5}]},
        )
        return events, npy.headers, npy_bytes, await plain.json(), await edited.json()

    events, headers, npy_bytes, plain, edited = _with_client(gateway.address, body)
    progress = [e for kind, e in events if kind == "progress"]
    assert [p["step"] for p in progress] == list(range(1, steps + 1))
    assert all(p["psnr"] is None or p["psnr"] > 0 for p in progress)
    assert sum("preview" in p for p in progress) == steps // 2
    kind, result = events[-1]
    assert kind == "result" and result["steps"] == steps
    assert result["optimizer"] == "lbfgs"  # in_domain's default
    assert _decode(result["reconstruction"]).shape[:2] == _decode(result["target"]).shape[:2]
    assert "attachment" in headers["Content-Disposition"]
    ws = np.load(io.BytesIO(npy_bytes))
    assert ws.dtype == np.float32 and ws.ndim == 2
    # a named direction at strength 5 changes the picture; no edits renders the inversion
    diff = np.abs(_decode(edited["image"]).astype(int) - _decode(plain["image"]).astype(int))
    assert diff.mean() > 0.5
    assert edited["latent"] != plain["latent"]


def test_the_optimizer_choice_reaches_the_gateway_and_a_bad_one_is_named(gateway):
    async def body(client):
        adam = await client.post(
            "/api/invert", data=_form(_png(), steps=3, early_stop=0, optimizer="adam")
        )
        events = _events(await adam.text())
        bad = await client.post("/api/invert", data=_form(_png(), optimizer="sgd"))
        return events, bad.status, await bad.json()

    events, status, bad = _with_client(gateway.address, body)
    kind, result = events[-1]
    assert kind == "result" and result["optimizer"] == "adam" and result["steps"] == 3
    assert status == 400 and bad["field"] == "optimizer" and "sgd" in bad["error"]


def test_unknown_direction_and_unknown_latent_are_readable(gateway):
    async def body(client):
        seed = await (await client.post("/api/seed", json={"seed": 3})).json()
        unknown = await client.post(
            "/api/edit", json={"latent": seed["latent"], "edits": [{"name": "no_such"}]}
        )
        expired = await client.post("/api/edit", json={"latent": "0123abcd", "edits": []})
        not_json = await client.post("/api/edit", data=b"{", headers={"Content-Type": "x"})
        return [(r.status, await r.json()) for r in (unknown, expired, not_json)]

    (s1, unknown), (s2, expired), (s3, not_json) = _with_client(gateway.address, body)
    assert s1 == 404 and "unknown direction 'no_such'" in unknown["error"]
    assert unknown["field"] == "edits[0].name"
    assert s2 == 404 and "unknown or expired latent" in expired["error"]
    assert s3 == 400 and "not JSON" in not_json["error"]


def test_edits_take_the_measured_default_conditioning_unless_unconditioned(
    tiny_repository, tmp_path
):
    """A direction whose export chose a default ``condition_on``: the playground's edit with
    no attribute ticked gets that conditioning (the same picture as ticking it), and the
    "measured defaults" box unticked (``unconditioned``) gives the plain edit."""
    repo = tmp_path / "repository"
    shutil.copytree(tiny_repository, repo)
    meta = json.loads((repo / METADATA_FILE).read_text())
    edited, kept = meta["generators"]["base"]["attributes"][:2]
    meta["generators"]["base"]["directions"][edited]["condition_on"] = [kept]
    (repo / METADATA_FILE).write_text(json.dumps(meta))

    async def body(client):
        seed = await (await client.post("/api/seed", json={"seed": 3})).json()

        async def edit(**extra):
            op = {"name": edited, "strength": 5, **extra}
            r = await client.post("/api/edit", json={"latent": seed["latent"], "edits": [op]})
            return r.status, await r.json()

        return [
            await edit(),
            await edit(condition_on=[kept]),
            await edit(unconditioned=True),
            await edit(unconditioned="yes"),
        ]

    with running_gateway(load_repository(repo)) as gw:
        default, ticked, plain, bad = _with_client(gw.address, body)
    assert default[0] == ticked[0] == plain[0] == 200
    np.testing.assert_array_equal(_decode(default[1]["image"]), _decode(ticked[1]["image"]))
    assert (
        np.abs(
            _decode(default[1]["image"]).astype(int) - _decode(plain[1]["image"]).astype(int)
        ).max()
        > 0
    )
    assert bad[0] == 400 and bad[1]["field"] == "edits[0].unconditioned"


def test_mix_and_interpolate_two_latents(gateway):
    async def body(client):
        a = await (await client.post("/api/seed", json={"seed": 1})).json()
        b = await (await client.post("/api/seed", json={"seed": 2})).json()
        mixed = await client.post(
            "/api/mix", json={"a": a["latent"], "b": b["latent"], "layer_start": 0}
        )
        strip = await client.post(
            "/api/interpolate",
            json={"start": a["latent"], "end": b["latent"], "frames": 5, "mode": "slerp"},
        )
        bad = await client.post(
            "/api/interpolate", json={"start": a["latent"], "end": b["latent"], "frames": 1}
        )
        return a, await mixed.json(), await strip.json(), bad.status, await bad.json()

    a, mixed, strip, bad_status, bad = _with_client(gateway.address, body)
    assert _decode(mixed["image"]).shape == _decode(a["image"]).shape
    assert len(strip["frames"]) == 5
    assert np.array_equal(_decode(strip["frames"][0]), _decode(a["image"]))
    assert bad_status == 400 and bad["field"] == "frames"


def test_leaving_or_superseding_an_inversion_cancels_its_gateway_call(gateway):
    """The browser closing the stream, or the same page starting another inversion, stops
    the gateway's work (1000 steps without early stopping would otherwise run on)."""
    in_flight = gateway.server.servicer.in_flight

    async def wait_idle(deadline: float = 10.0) -> float:
        t0 = time.monotonic()
        while in_flight.count and time.monotonic() - t0 < deadline:
            await asyncio.sleep(0.05)
        return time.monotonic() - t0

    async def body(client):
        form = {"steps": 1000, "early_stop": 0, "session": "page-1"}
        first = await client.post("/api/invert", data=_form(_png(), **form))
        await first.content.readuntil(b"\n\n")  # the first progress event
        assert in_flight.count == 1
        second = await client.post("/api/invert", data=_form(_png(seed=1), **form))
        superseded = _events(await first.text())  # ends once the newer one took over
        await second.content.readuntil(b"\n\n")
        second.close()  # the browser goes away
        idle_after = await wait_idle()
        health = await (await client.get("/health")).json()
        return superseded, idle_after, health

    superseded, idle_after, health = _with_client(gateway.address, body)
    assert superseded[-1][0] == "error" and superseded[-1][1]["superseded"] is True
    assert idle_after < 5.0 and in_flight.count == 0
    assert health["active_calls"] == 0


def test_cli_mistakes_are_one_line(tmp_path):
    from click.testing import CliRunner

    from stylegate.cli.main import main

    bad = CliRunner().invoke(main, ["ui", "--server", "no-port-here"])
    assert bad.exit_code == 1 and "expected HOST:PORT" in bad.output
    assert "Traceback" not in bad.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = CliRunner().invoke(main, ["ui", "--port", str(port), "--server", "127.0.0.1:1"])
    assert busy.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.output
    assert "Traceback" not in busy.output
