"""What each RPC asks for, as frozen domain objects: built and validated once from the
protobuf request by service/requests.py, carried out by service/workflows.py (and
service/inversion.py), turned back into protobuf by service/responses.py. No gRPC here."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from stylegate.service.editing import Edit
from stylegate.service.generation import LatentSpec
from stylegate.service.inversion import InversionOptions
from stylegate.service.metadata import GeneratorInfo


@dataclasses.dataclass(frozen=True)
class OutputFormat:
    kind: str = "png"  # png | jpeg | webp | raw
    quality: int = 90  # JPEG/WebP quality, 1..100


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How z becomes a W+ latent and an image: mapping (with the class), truncation, noise."""

    psi: float = 1.0  # truncation towards w_avg; 1 = none
    cutoff: int | None = None  # truncate layers [0, cutoff); None = all
    class_label: int | None = None  # class-conditional generators only
    noise_gain: float = 1.0  # 1 = the model's constant noise, 0 = none


@dataclasses.dataclass(frozen=True)
class GeneratePlan:
    gen: GeneratorInfo
    seeds: tuple[int, ...]  # per image, -1 for an explicit z
    z: np.ndarray  # [N, z_dim], seeds first, then explicit z
    sampling: Sampling
    output: OutputFormat
    return_latents: bool


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    gen: GeneratorInfo
    seeds: Sequence[int]  # every seed of the request (a range stays a range)
    first: int  # index of the first seed still to render (resume)
    chunk: int  # images per streamed chunk
    sampling: Sampling
    output: OutputFormat
    return_latents: bool


@dataclasses.dataclass(frozen=True)
class InvertPlan:
    gen: GeneratorInfo
    target: np.ndarray  # [3, R, R] in [-1, 1] at the generator's resolution
    options: InversionOptions
    output: OutputFormat
    preview_every: int  # 0: no previews
    progress_every: int  # >= 1

    def previews(self, step: int) -> bool:
        return bool(self.preview_every) and step % self.preview_every == 0

    def reports(self, step: int) -> bool:
        """Whether step ``step`` gets a progress message (every preview does)."""
        return step % self.progress_every == 0 or self.previews(step)


@dataclasses.dataclass(frozen=True)
class EditPlan:
    gen: GeneratorInfo  # renders the result
    source: LatentSpec | InvertPlan  # a latent, or an image to invert first
    edits: tuple[Edit, ...]  # applied in order
    noise_gain: float
    output: OutputFormat
    return_latent: bool
    include_original: bool


@dataclasses.dataclass(frozen=True)
class StyleMixPlan:
    gen: GeneratorInfo
    a: LatentSpec
    b: LatentSpec
    layers: tuple[int, int]  # [start, stop) taken from b
    noise_gain: float
    output: OutputFormat
    return_latent: bool


@dataclasses.dataclass(frozen=True)
class InterpolatePlan:
    gen: GeneratorInfo
    a: LatentSpec
    b: LatentSpec
    frames: int  # both ends included
    mode: str  # lerp | slerp
    noise_gain: float
    output: OutputFormat
    return_latents: bool
