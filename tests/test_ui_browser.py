"""The playground in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, installed by scripts/install-system-deps.sh) driven by Selenium, against
a real gateway on the shipped models. Upload a held-out render, watch the progress advance
and the reconstruction appear, move the smile slider and see the edited face change, cancel
an inversion, and read the messages of a bad file and of a gateway that is down.

STYLEGATE_SCREENSHOTS=1 also writes docs/images/playground.png (the page mid-edit)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import shutil
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from PIL import Image
from support.gateway_harness import running_gateway

from stylegate.gan import data
from stylegate.service.metadata import load_repository
from stylegate.ui.app import create_app
from stylegate.ui.gateway import Gateway

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = ROOT / "docs" / "images" / "playground.png"
STEPS = 40  # inversion steps of the upload: enough to see progress, short on two CPU cores


@contextlib.contextmanager
def running_ui(gateway_address: str) -> Iterator[str]:
    """The playground on a loopback port, in a thread with its own event loop; its URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="ui-loop", daemon=True)
    thread.start()

    async def start() -> tuple[web.AppRunner, int]:
        runner = web.AppRunner(create_app(Gateway(gateway_address)), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, site._server.sockets[0].getsockname()[1]

    runner, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `bash scripts/install-system-deps.sh`")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1250"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def gateway(shipped_repository):
    with running_gateway(load_repository(shipped_repository)) as g:
        yield g


@pytest.fixture(scope="module")
def page(gateway, browser):
    """The playground open in the browser, its models loaded."""
    with running_ui(gateway.address) as url:
        browser.get(url)
        _wait(browser, lambda: browser.find_elements("id", "slider-smile"), what="the sliders")
        yield browser


def _wait(driver, condition, *, timeout: float = 60.0, what: str = "the page"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    driver.save_screenshot(str(ROOT / ".pytest_cache" / "ui-timeout.png"))
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _image(driver, element_id: str) -> np.ndarray:
    src = driver.find_element("id", element_id).get_attribute("src")
    assert src.startswith("data:image/png;base64,"), src[:40]
    raw = base64.b64decode(src.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")).astype(np.int16)


def _attr(driver, element_id: str, name: str) -> str | None:
    return driver.find_element("id", element_id).get_attribute(name)


@pytest.fixture(scope="module")
def heldout_face(tmp_path_factory) -> Path:
    """A held-out render (a seed never trained on) as a PNG file to upload."""
    images, _, _ = data.render_batch(data.heldout_seeds(1) + 900)
    path = tmp_path_factory.mktemp("faces") / "heldout-face.png"
    Image.fromarray(images[0]).save(path)
    return path


def test_upload_invert_then_edit_with_the_smile_slider(page, heldout_face, capsys):
    from selenium.webdriver.common.keys import Keys

    driver = page
    # a seed first: a second latent for the style mix and the interpolation strip
    seed = driver.find_element("id", "seed")
    seed.clear()
    seed.send_keys("7")
    driver.find_element("id", "seed-btn").click()
    library = driver.find_element("id", "library")
    _wait(driver, lambda: library.find_elements("tag name", "li"), what="the seed's latent")
    version = int(_attr(driver, "edited", "data-version"))

    steps = driver.find_element("id", "steps")
    steps.clear()
    steps.send_keys(str(STEPS))
    driver.find_element("id", "early-stop").click()  # off: every step runs, progress is long
    driver.find_element("id", "image").send_keys(str(heldout_face))
    t0 = time.perf_counter()
    driver.find_element("id", "invert-btn").click()

    # the progress bar advances while the gateway streams, with a live preview
    seen: set[int] = set()

    def progressed():
        seen.add(int(float(_attr(driver, "progress", "value") or 0)))
        return len({s for s in seen if 0 < s < STEPS}) >= 3

    _wait(driver, progressed, what="the progress bar to advance")
    assert "loss" in driver.find_element("id", "progress-text").text
    _wait(driver, lambda: _attr(driver, "preview", "src"), what="a preview")
    _wait(driver, lambda: _attr(driver, "reconstruction", "data-ms"), what="the reconstruction")
    upload_to_reconstruction = time.perf_counter() - t0
    page_ms = float(_attr(driver, "reconstruction", "data-ms"))
    assert "PSNR" in driver.find_element("id", "progress-text").text
    target, reconstruction = _image(driver, "original"), _image(driver, "reconstruction")
    mse = np.mean(((target - reconstruction) / 255.0) ** 2)
    assert 10 * np.log10(1 / mse) > 18  # a recognisable reconstruction of the upload

    # the first render of the latent (no edits yet) comes by itself
    _wait(driver, lambda: int(_attr(driver, "edited", "data-version")) > version, what="edited")
    before = _image(driver, "edited")
    assert np.abs(before - reconstruction).mean() < 1.0  # no edits: the inversion itself

    # mix the upload (A) with the seed's coarse layers (B); interpolate between them
    driver.find_element("id", "mix-btn").click()
    _wait(driver, lambda: _attr(driver, "mixed", "src"), what="the style mix")
    driver.find_element("id", "interp-btn").click()
    strip = driver.find_element("id", "strip")
    _wait(driver, lambda: len(strip.find_elements("tag name", "img")) == 8, what="the strip")
    assert len(library.find_elements("tag name", "li")) == 3  # seed, upload, mix

    # move the smile slider with the keyboard as a user would; time each update
    slider = driver.find_element("id", "slider-smile")
    latencies, images = [], []
    for key, value in ((Keys.END, "5"), (Keys.HOME, "-5"), (Keys.END, "5")):
        version = int(_attr(driver, "edited", "data-version"))
        t1 = time.perf_counter()
        slider.send_keys(key)
        assert slider.get_attribute("value") == value
        _wait(
            driver,
            lambda v=version: int(_attr(driver, "edited", "data-version")) > v,
            what="the edited image to update",
        )
        latencies.append((time.perf_counter() - t1, float(_attr(driver, "edited", "data-ms"))))
        images.append(_image(driver, "edited"))
        if len(images) == 1 and os.environ.get("STYLEGATE_SCREENSHOTS") == "1":
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(SCREENSHOT))
    smiling, frowning, again = images
    assert np.abs(smiling - before).mean() > 2.0, "the smile edit hardly changed the face"
    assert np.abs(smiling - frowning).mean() > 2.0
    assert np.array_equal(smiling, again)  # the same slider value renders the same face
    assert "1 edit" in driver.find_element("id", "edit-info").text
    assert driver.find_element("id", "download-npy").get_attribute("href").endswith(".npy")
    assert driver.find_element("id", "download-png").get_attribute("href").startswith("data:")
    assert driver.find_element("id", "edit-error").text == ""

    # the layer-swapped model renders the same edited latent in its own style
    version = int(_attr(driver, "edited", "data-version"))
    driver.find_element("id", "blend").click()
    _wait(driver, lambda: int(_attr(driver, "edited", "data-version")) > version, what="blend")
    assert "blend" in driver.find_element("id", "edit-info").text
    assert np.abs(_image(driver, "edited") - again).mean() > 2.0
    driver.find_element("id", "blend").click()

    with capsys.disabled():
        print(
            f"\n[playground] upload -> reconstruction shown: {upload_to_reconstruction:.2f} s "
            f"({STEPS} in_domain steps; page timer {page_ms / 1000:.2f} s); "
            "slider move -> updated image: "
            + ", ".join(f"{1000 * wall:.0f} ms (page {ms:.0f} ms)" for wall, ms in latencies)
            + f"; median {1000 * statistics.median(w for w, _ in latencies):.0f} ms"
        )


def test_an_inversion_can_be_cancelled(page, heldout_face, gateway):
    driver = page
    steps = driver.find_element("id", "steps")
    steps.clear()
    steps.send_keys("1000")
    if driver.find_element("id", "early-stop").is_selected():
        driver.find_element("id", "early-stop").click()
    driver.find_element("id", "image").send_keys(str(heldout_face))
    driver.find_element("id", "invert-btn").click()
    _wait(driver, lambda: float(_attr(driver, "progress", "value") or 0) >= 2, what="progress")
    driver.find_element("id", "cancel-btn").click()
    _wait(driver, lambda: driver.find_element("id", "progress-text").text == "cancelled")
    in_flight = gateway.server.servicer.in_flight
    _wait(driver, lambda: in_flight.count == 0, timeout=10, what="the gateway call to end")
    assert float(_attr(driver, "progress", "value")) < 1000


def test_a_bad_file_shows_its_message_beside_the_upload(page, tmp_path):
    driver = page
    bad = tmp_path / "notes.png"
    bad.write_text("these are my notes, not a picture")
    driver.find_element("id", "image").send_keys(str(bad))
    driver.find_element("id", "invert-btn").click()
    error = driver.find_element("id", "invert-error")
    _wait(driver, lambda: error.text, timeout=20, what="the error message")
    assert "image.data: not an image of an accepted format" in error.text
    assert error.is_displayed()
    # beside the upload control, and the rest of the page is still there
    panel = driver.find_element("id", "source-panel")
    assert panel.find_element("id", "invert-error") == error
    assert driver.find_element("id", "edited").get_attribute("src")


def test_a_gateway_that_is_down_is_a_message_not_a_blank_page(browser):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    with running_ui(dead) as url:
        browser.get(url)
        error = browser.find_element("id", "models-error")
        _wait(browser, lambda: error.text, timeout=20, what="the unavailable message")
        assert f"gateway unavailable at {dead}" in error.text
        assert browser.find_element("tag name", "h1").text == "stylegate playground"
