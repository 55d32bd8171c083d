"""Domain results -> protobuf responses (the way back of service/requests.py). Loss terms
go out by name: ``pb.LossTerms`` has one field per name of ``signatures.LOSS_TERMS``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import numpy as np

from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.service import images
from stylegate.service.errors import GatewayError
from stylegate.service.inversion import Inversion, Progress
from stylegate.service.metadata import Direction, GeneratorInfo, RepositoryInfo
from stylegate.service.plans import OutputFormat

FORMAT_ENUMS = {
    "png": pb.IMAGE_FORMAT_PNG,
    "jpeg": pb.IMAGE_FORMAT_JPEG,
    "webp": pb.IMAGE_FORMAT_WEBP,
    "raw": pb.IMAGE_FORMAT_RAW,
}


T = TypeVar("T")

INLINE_IMAGES = 2  # a reply with more images is encoded in the encoder threads
MAX_PSNR_DB = 200.0  # identical images have an infinite PSNR; float32 rounding alone ~140 dB


def _finite(a: np.ndarray | float, what: str) -> None:
    """No reply carries NaN or Inf: the request's numbers are bounded at the boundary, so a
    non-finite result is a fault of the gateway or a model (INTERNAL with an error id)."""
    if not np.isfinite(a).all():
        raise GatewayError(f"{what} has NaN or Inf values")


def tensor(a: np.ndarray) -> pb.Tensor:
    a = np.ascontiguousarray(a, dtype="<f4")
    _finite(a, "a result tensor")
    return pb.Tensor(shape=list(a.shape), data=a.tobytes())


def image(img: np.ndarray, fmt: OutputFormat) -> pb.Image:
    """[3, H, W] in [-1, 1] -> pb.Image in the requested format."""
    h, w = img.shape[-2:]
    _finite(img, "a result image")
    if fmt.kind == "raw":
        return pb.Image(tensor=tensor(img), format=pb.IMAGE_FORMAT_RAW, width=w, height=h)
    return pb.Image(
        data=images.encode(img, fmt=fmt.kind, quality=fmt.quality),
        format=FORMAT_ENUMS[fmt.kind],
        width=w,
        height=h,
    )


def generated_images(
    seeds: Sequence[int],
    imgs: np.ndarray,  # [N, 3, R, R]
    ws: np.ndarray,  # [N, num_ws, w_dim]
    fmt: OutputFormat,
    *,
    with_latents: bool,
) -> list[pb.GeneratedImage]:
    return [
        pb.GeneratedImage(seed=s, image=image(img, fmt), ws=tensor(w) if with_latents else None)
        for s, img, w in zip(seeds, imgs, ws)
    ]


async def built(n_images: int, build: Callable[[], T]) -> T:
    """``build()``, in the encoder threads when it encodes more than ``INLINE_IMAGES``
    images: the event loop stays free for other calls (and for fast refusals)."""
    return build() if n_images <= INLINE_IMAGES else await images.in_encoder(build)


def frames(imgs: np.ndarray, fmt: OutputFormat) -> list[pb.Image]:
    return [image(i, fmt) for i in imgs]


def loss_terms(terms: Mapping[str, float]) -> pb.LossTerms:
    _finite(np.array(list(terms.values()), dtype=np.float64), "a loss term")
    return pb.LossTerms(**terms)


def scalar(value: float, what: str) -> float:
    _finite(np.float64(value), what)
    return value


def invert_progress(event: Progress, fmt: OutputFormat, *, preview: bool) -> pb.InvertResponse:
    return pb.InvertResponse(
        progress=pb.InvertProgress(
            step=event.step,
            total_steps=event.total_steps,
            loss=scalar(event.loss, "the loss"),
            terms=loss_terms(event.terms),
            learning_rate=event.learning_rate,
            preview=image(event.image, fmt) if preview else None,
        )
    )


def invert_result(gen: GeneratorInfo, r: Inversion, fmt: OutputFormat) -> pb.InvertResponse:
    q = r.quality
    return pb.InvertResponse(
        result=pb.InvertResult(
            ws=tensor(r.ws),
            reconstruction=image(r.reconstruction, fmt),
            target=image(r.target, fmt),
            quality=pb.QualityFigures(
                psnr=scalar(min(q.psnr, MAX_PSNR_DB), "psnr"),
                ssim=scalar(q.ssim, "ssim"),
                perceptual_distance=scalar(q.perceptual_distance, "perceptual_distance"),
                in_domain_score=scalar(q.in_domain_score, "in_domain_score"),
            ),
            loss=scalar(r.loss, "the loss"),
            terms=loss_terms(r.terms),
            steps=r.steps,
            early_stopped=r.early_stopped,
            method=r.method,
            space=r.space,
            optimizer=r.optimizer,
            seconds=r.seconds,
            model=gen.name,
        )
    )


def direction(d: Direction) -> pb.Direction:
    return pb.Direction(
        name=d.name,
        method=d.method,
        std=d.std,
        layer_start=d.layers[0],
        layer_stop=d.layers[1],
        attribute=d.attribute,
        stats=dict(d.stats),
        condition_on=d.condition_on,
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
        inversion_methods=list(gen.inversion_methods),
        c_dim=gen.c_dim,
        attributes=list(gen.attributes),
        directions=[direction(d) for d in gen.directions.values()],
        is_default=is_default,
        backend=backend,
    )


def list_models(repo: RepositoryInfo, *, backend: str) -> pb.ListModelsResponse:
    return pb.ListModelsResponse(
        default_model=repo.default_generator,
        models=[
            model_info(g, is_default=g.name == repo.default_generator, backend=backend)
            for g in repo.generators.values()
        ],
    )
