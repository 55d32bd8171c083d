"""Image decoding, validation, resizing and encoding. Model images are float32 NCHW RGB in
[-1, 1]; masks are [1, H, W] in [0, 1]."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from stylegate.service.errors import InvalidInput

ENCODINGS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
ACCEPTED_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP"}
RESIZE_MODES = ("center_crop", "stretch", "pad")


def decode(
    data: bytes, *, field: str, max_bytes: int, max_side: int, mode: str = "RGB"
) -> Image.Image:
    """Bytes -> PIL image in ``mode``; InvalidInput naming ``field`` when empty, too big,
    undecodable or of an unsupported format."""
    if not data:
        raise InvalidInput("image is empty", field=field)
    if len(data) > max_bytes:
        raise InvalidInput(f"image is {len(data)} bytes, the limit is {max_bytes}", field=field)
    try:
        img = Image.open(io.BytesIO(data))  # lazy: reads the header only
        if img.format not in ACCEPTED_FORMATS:
            raise InvalidInput(f"unsupported image format {img.format}", field=field)
        if max(img.size) > max_side or min(img.size) < 1:
            raise InvalidInput(
                f"image is {img.size[0]}x{img.size[1]}, the limit is {max_side} per side",
                field=field,
            )
        img.load()
        return img.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"cannot decode image: {exc}", field=field) from None


def fit(img: Image.Image, resolution: int, mode: str = "center_crop") -> Image.Image:
    """Make ``img`` a ``resolution`` square: crop the central square, stretch, or pad."""
    w, h = img.size
    if mode == "center_crop" and w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    elif mode == "pad" and w != h:
        side = max(w, h)
        canvas = Image.new(img.mode, (side, side))
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        img = canvas
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return img


def to_model(img: Image.Image) -> np.ndarray:
    """RGB PIL image -> [3, H, W] float32 in [-1, 1]."""
    arr = np.asarray(img, dtype=np.float32)  # [H, W, 3]
    return np.ascontiguousarray(arr.transpose(2, 0, 1) / 127.5 - 1.0)


def to_mask(img: Image.Image) -> np.ndarray:
    """Grayscale PIL image -> [1, H, W] float32 in [0, 1]."""
    return (np.asarray(img.convert("L"), dtype=np.float32) / 255.0)[None]


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[..., 3, H, W] in [-1, 1] -> [..., H, W, 3] uint8."""
    x = np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.moveaxis(x, -3, -1)


def encode(image: np.ndarray, *, fmt: str = "png", quality: int = 90) -> bytes:
    """[3, H, W] in [-1, 1] -> PNG / JPEG / WebP bytes."""
    buf = io.BytesIO()
    pil = Image.fromarray(to_uint8(image))
    kwargs = {"quality": quality} if fmt in ("jpeg", "webp") else {"compress_level": 1}
    pil.save(buf, format=ENCODINGS[fmt], **kwargs)
    return buf.getvalue()


def check_tensor_image(
    x: np.ndarray, resolution: int, *, field: str, channels: int = 3
) -> np.ndarray:
    """A raw image tensor must be [C, R, R] (or [1, C, R, R]) and finite."""
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.shape != (channels, resolution, resolution):
        raise InvalidInput(
            f"tensor has shape {list(x.shape)}, expected [{channels}, {resolution}, {resolution}]",
            field=field,
        )
    if not np.isfinite(x).all():
        raise InvalidInput("tensor has NaN or Inf values", field=field)
    return np.ascontiguousarray(x, dtype=np.float32)
