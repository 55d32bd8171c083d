"""Proto <-> domain conversions with validation: every error names the request field."""

from __future__ import annotations

import numpy as np

from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.service import generation, images
from stylegate.service.errors import InvalidInput
from stylegate.service.generation import LatentSpec
from stylegate.service.metadata import Direction, GeneratorInfo
from stylegate.service.settings import Settings

MAX_TENSOR_DIMS = 4

FORMATS = {
    pb.IMAGE_FORMAT_UNSPECIFIED: "png",
    pb.IMAGE_FORMAT_PNG: "png",
    pb.IMAGE_FORMAT_JPEG: "jpeg",
    pb.IMAGE_FORMAT_WEBP: "webp",
    pb.IMAGE_FORMAT_RAW: "raw",
}
FORMAT_ENUMS = {
    "png": pb.IMAGE_FORMAT_PNG,
    "jpeg": pb.IMAGE_FORMAT_JPEG,
    "webp": pb.IMAGE_FORMAT_WEBP,
    "raw": pb.IMAGE_FORMAT_RAW,
}
METHODS = {
    pb.INVERSION_METHOD_UNSPECIFIED: "in_domain",
    pb.INVERSION_METHOD_IN_DOMAIN: "in_domain",
    pb.INVERSION_METHOD_OPTIMIZE: "optimize",
    pb.INVERSION_METHOD_ENCODER: "encoder",
}
SPACES = {
    pb.LATENT_SPACE_UNSPECIFIED: None,
    pb.LATENT_SPACE_W: "w",
    pb.LATENT_SPACE_W_PLUS: "w_plus",
}
RESIZE = {
    pb.RESIZE_MODE_UNSPECIFIED: "center_crop",
    pb.RESIZE_MODE_CENTER_CROP: "center_crop",
    pb.RESIZE_MODE_STRETCH: "stretch",
    pb.RESIZE_MODE_PAD: "pad",
}
NOISE_GAIN = {pb.NOISE_MODE_UNSPECIFIED: 1.0, pb.NOISE_MODE_CONST: 1.0, pb.NOISE_MODE_NONE: 0.0}
INTERPOLATION = {
    pb.INTERPOLATION_MODE_UNSPECIFIED: "lerp",
    pb.INTERPOLATION_MODE_LERP: "lerp",
    pb.INTERPOLATION_MODE_SLERP: "slerp",
}


def enum(table: dict, value: int, *, field: str):
    try:
        return table[value]
    except KeyError:
        raise InvalidInput(f"unknown enum value {value}", field=field) from None


def tensor(t: pb.Tensor, *, field: str) -> np.ndarray:
    """pb.Tensor -> float32 array, checking that shape and byte count agree."""
    shape = tuple(int(d) for d in t.shape)
    if not shape or len(shape) > MAX_TENSOR_DIMS or any(d <= 0 for d in shape):
        raise InvalidInput(f"bad tensor shape {list(shape)}", field=field)
    expected = int(np.prod(shape)) * 4
    if len(t.data) != expected:
        raise InvalidInput(
            f"tensor data has {len(t.data)} bytes, shape {list(shape)} needs {expected}",
            field=field,
        )
    return np.frombuffer(t.data, dtype="<f4").reshape(shape).astype(np.float32)


def to_tensor(a: np.ndarray) -> pb.Tensor:
    a = np.ascontiguousarray(a, dtype="<f4")
    return pb.Tensor(shape=list(a.shape), data=a.tobytes())


def output_format(opts: pb.OutputOptions) -> tuple[str, int]:
    fmt = enum(FORMATS, opts.format, field="output.format")
    quality = opts.jpeg_quality or 90
    if not 1 <= quality <= 100:
        raise InvalidInput(
            f"jpeg_quality {quality} is outside [1, 100]", field="output.jpeg_quality"
        )
    return fmt, quality


def to_image(image: np.ndarray, fmt: tuple[str, int]) -> pb.Image:
    """[3, H, W] in [-1, 1] -> pb.Image in the requested format."""
    kind, quality = fmt
    h, w = image.shape[-2:]
    if kind == "raw":
        return pb.Image(tensor=to_tensor(image), format=pb.IMAGE_FORMAT_RAW, width=w, height=h)
    return pb.Image(
        data=images.encode(image, fmt=kind, quality=quality),
        format=FORMAT_ENUMS[kind],
        width=w,
        height=h,
    )


def image(
    img: pb.Image, gen: GeneratorInfo, settings: Settings, *, resize: str, field: str
) -> np.ndarray:
    """A request image -> [3, R, R] in [-1, 1] at the generator's resolution."""
    which = img.WhichOneof("content")
    if which == "tensor":
        return images.check_tensor_image(
            tensor(img.tensor, field=f"{field}.tensor"), gen.resolution, field=f"{field}.tensor"
        )
    if which is None:
        raise InvalidInput("no image given (set data or tensor)", field=field)
    pil = images.decode(
        img.data,
        field=f"{field}.data",
        max_bytes=settings.max_image_bytes,
        max_side=settings.max_image_side,
    )
    return images.to_model(images.fit(pil, gen.resolution, resize))


def mask(
    img: pb.Image, gen: GeneratorInfo, settings: Settings, *, resize: str, field: str
) -> np.ndarray | None:
    which = img.WhichOneof("content")
    if which is None:
        return None
    r = gen.resolution
    if which == "tensor":
        m = tensor(img.tensor, field=f"{field}.tensor")
        if m.shape == (r, r):
            m = m[None]
        m = images.check_tensor_image(m, r, field=f"{field}.tensor", channels=1)
    else:
        pil = images.decode(
            img.data,
            field=f"{field}.data",
            max_bytes=settings.max_image_bytes,
            max_side=settings.max_image_side,
            mode="L",
        )
        m = images.to_mask(images.fit(pil, r, resize))
    if m.min() < 0 or m.max() > 1:
        raise InvalidInput("mask values must be in [0, 1]", field=field)
    if m.max() == 0:
        raise InvalidInput("mask is zero everywhere", field=field)
    return m


def truncation(t: pb.Truncation, gen: GeneratorInfo, *, field: str) -> tuple[float, int | None]:
    psi = t.psi if t.HasField("psi") else 1.0
    cutoff = t.cutoff if t.HasField("cutoff") else None
    generation.check_truncation(psi, cutoff, gen, field=field)
    return psi, cutoff


def latent_source(src: pb.LatentSource, gen: GeneratorInfo, *, field: str) -> LatentSpec:
    which = src.WhichOneof("source")
    psi, cutoff = truncation(src.truncation, gen, field=f"{field}.truncation")
    if which == "seed":
        generation.z_from_seed(src.seed, gen.z_dim, field=f"{field}.seed")  # range check
        return LatentSpec(seed=src.seed, psi=psi, cutoff=cutoff)
    if which == "z":
        z = generation.check_z(tensor(src.z, field=f"{field}.z"), gen, field=f"{field}.z")
        return LatentSpec(z=z, psi=psi, cutoff=cutoff)
    if which == "ws":
        ws = generation.check_latent(tensor(src.ws, field=f"{field}.ws"), gen, field=f"{field}.ws")
        return LatentSpec(ws=ws)
    raise InvalidInput("no latent given (set seed, z or ws)", field=field)


def direction(d: Direction) -> pb.Direction:
    return pb.Direction(
        name=d.name,
        method=d.method,
        std=d.std,
        layer_start=d.layers[0],
        layer_stop=d.layers[1],
        attribute=d.attribute,
        stats=dict(d.stats),
    )


def model_info(gen: GeneratorInfo, *, is_default: bool, backend: str) -> pb.ModelInfoResponse:
    return pb.ModelInfoResponse(
        name=gen.name,
        description=gen.description,
        resolution=gen.resolution,
        num_ws=gen.num_ws,
        w_dim=gen.w_dim,
        z_dim=gen.z_dim,
        layer_resolutions=list(gen.layer_resolutions),
        networks=dict(gen.models),
        can_invert=gen.can_invert,
        attributes=list(gen.attributes),
        directions=[direction(d) for d in gen.directions.values()],
        is_default=is_default,
        backend=backend,
    )
