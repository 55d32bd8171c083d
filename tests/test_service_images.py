"""service/images.py: images are checked from their header before a pixel is decoded (size,
pixel budget, whether the bytes can hold the pixels claimed), decoded off the event loop,
JPEGs at a reduced scale, and every refusal names the field without internals."""

from __future__ import annotations

import asyncio
import io
import threading

import numpy as np
import pytest
from PIL import Image, ImageFile
from support.hostile_images import encoded, gif_bomb, jpeg_bomb, png_bomb

from stylegate.service import images
from stylegate.service.errors import InvalidInput

LIMITS = {"max_bytes": 16 << 20, "max_side": 4096, "max_pixels": 4096 * 3072}


@pytest.fixture
def no_decoding(monkeypatch):
    """Any pixel decoding fails the test: refusals must come from the header alone."""

    def load(self):
        raise AssertionError(f"decoded {self.format} {self.size}")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.parametrize("bomb", [gif_bomb, png_bomb])
def test_bytes_too_few_for_the_pixels_claimed_are_refused_from_the_header(bomb, no_decoding):
    data = bomb(2048)  # within the pixel budget: only the byte count gives it away
    with pytest.raises(InvalidInput) as err:
        images.probe(data, field="image.data", **LIMITS)
    assert err.value.field == "image.data"
    assert "cannot hold the 2048x2048 pixels" in str(err.value)


@pytest.mark.parametrize("bomb", [gif_bomb, png_bomb, jpeg_bomb])
def test_the_pixel_budget_is_checked_from_the_header(bomb, no_decoding):
    with pytest.raises(InvalidInput) as err:
        images.probe(bomb(4096), field="mask.data", **LIMITS)
    assert str(err.value).startswith("mask.data: image is 4096x4096 = 16777216 pixels")
    with pytest.raises(InvalidInput, match="the limit is 1000"):
        images.probe(encoded(40), field="f", **{**LIMITS, "max_pixels": 1000})


def test_the_most_compressible_honest_images_pass_the_byte_bound():
    """The bound is the formats' own maximum ratio: a flat 1-bit PNG and a flat GIF are
    the smallest real files for their size, and must not look like bombs."""
    for mode, fmt in (("1", "PNG"), ("L", "PNG"), ("P", "GIF")):
        img = Image.new(mode, (4096, 3072), 1)
        buf = io.BytesIO()
        img.save(buf, fmt)
        probed = images.probe(buf.getvalue(), field="f", **LIMITS)
        assert probed.size == (4096, 3072), (mode, fmt)


def test_a_jpeg_is_decoded_at_the_smallest_scale_that_keeps_twice_the_target():
    data = encoded(1024, "JPEG")
    full = images.decode(data, field="f", **LIMITS)
    small = images.decode(data, field="f", **LIMITS, at_least=16)
    assert full.size == (1024, 1024)
    assert small.size == (128, 128)  # 1/8 scale: >= 32 per side
    assert images.decode(data, field="f", **LIMITS, at_least=300).size == (1024, 1024)
    gray = images.decode(data, field="f", **LIMITS, mode="L", at_least=16)
    assert gray.mode == "L" and gray.size == (128, 128)


def test_the_bait_jpeg_decodes_cheaply_at_reduced_scale():
    """A JPEG within the budget whose data is a few hundred bytes: decoded at 1/8 scale."""
    img = images.decode(jpeg_bomb(2048), field="f", **LIMITS, at_least=16)
    assert img.size == (256, 256)


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"\x00" * 100, "not an image of an accepted format"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image"),
        (encoded(64)[:200], "PNG image data is truncated or corrupt"),
        (b"", "image is empty"),
    ],
)
def test_undecodable_data_is_named_without_internals(data, expected):
    with pytest.raises(InvalidInput) as err:
        images.decode(data, field="image.data", **LIMITS)
    message = str(err.value)
    assert message.startswith("image.data: ") and expected in message
    assert "0x" not in message and "BytesIO" not in message and "Error" not in message


def test_raw_image_tensors_are_bounded():
    x = np.zeros((3, 8, 8), np.float32)
    assert images.check_tensor_image(x + 12.5, 8, field="t").max() == 12.5  # rendered overshoot
    for bad, reason in ((1e10, r"within \[-100, 100\]"), (np.nan, "NaN or Inf")):
        y = x.copy()
        y[1, 2, 3] = bad
        with pytest.raises(InvalidInput, match=reason) as err:
            images.check_tensor_image(y, 8, field="image.tensor")
        assert err.value.field == "image.tensor"


@pytest.mark.parametrize("shape", [(3, 64, 64), (3, 1, 1), (3, 5, 17)])
def test_png_replies_decode_to_the_exact_pixels(shape):
    """Our PNG writer: standard decoders (Pillow, with its CRC checks) read back exactly the
    pixels to_uint8 makes, wrapped differences included (noise, full range, odd sizes), and
    the gateway's own decoder accepts its output as a PNG."""
    rng = np.random.RandomState(sum(shape))
    image = rng.uniform(-1.2, 1.2, shape).astype(np.float32)
    data = images.encode(image, fmt="png")
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG" and img.mode == "RGB" and img.size == shape[:0:-1]
        np.testing.assert_array_equal(np.asarray(img), images.to_uint8(image))
    decoded = images.decode(data, field="image", **LIMITS)
    np.testing.assert_array_equal(np.asarray(decoded), images.to_uint8(image))


def test_in_decoder_runs_off_the_event_loop_two_at_a_time():
    seen: list[str] = []
    running, peak = 0, 0
    lock = threading.Lock()

    def work() -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        threading.Event().wait(0.05)
        with lock:
            running -= 1
        return threading.current_thread().name

    async def main() -> None:
        loop_thread = threading.current_thread().name
        seen.extend(await asyncio.gather(*(images.in_decoder(work) for _ in range(6))))
        assert loop_thread not in seen

    asyncio.run(main())
    assert all(name.startswith("image-decode") for name in seen)
    assert peak <= images.DECODE_THREADS
