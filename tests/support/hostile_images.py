"""Small images whose headers claim far more pixels than their bytes hold (decompression-bomb
bait), and honest images to compare with: shared by the image tests, the fuzz test and
``bench/hostile.py``."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def gif_bomb(side: int = 4096) -> bytes:
    """A ~35-byte GIF (two-colour palette, an LZW stream of clear + end) claiming side x side."""
    return (
        b"GIF89a"
        + struct.pack("<HH", side, side)
        + b"\x80\x00\x00"  # global palette of 2 colours
        + b"\x00\x00\x00\xff\xff\xff"
        + b","
        + struct.pack("<HHHH", 0, 0, side, side)
        + b"\x00"
        + b"\x02\x01\x2c\x00"  # min code size 2; one sub-block: clear, end
        + b";"
    )


def jpeg_bomb(side: int = 4096) -> bytes:
    """A ~630-byte baseline JPEG of an 8x8 image whose frame header claims side x side."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 120, 200)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, side, side)  # height, width
    return bytes(data)


def png_bomb(side: int = 4096) -> bytes:
    """A PNG claiming side x side RGB whose IDAT holds a few bytes only."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def encoded(side: int, fmt: str = "PNG", *, mode: str = "RGB", seed: int = 0) -> bytes:
    """An honest random image of side x side in ``fmt``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    buf = io.BytesIO()
    (img.convert("L") if mode == "L" else img).save(buf, fmt)
    return buf.getvalue()
