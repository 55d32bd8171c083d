from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper

DESCRIPTOR: _descriptor.FileDescriptor

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_RAW: _ClassVar[ImageFormat]
    IMAGE_FORMAT_WEBP: _ClassVar[ImageFormat]

class NoiseMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOISE_MODE_UNSPECIFIED: _ClassVar[NoiseMode]
    NOISE_MODE_CONST: _ClassVar[NoiseMode]
    NOISE_MODE_NONE: _ClassVar[NoiseMode]

class InversionMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVERSION_METHOD_UNSPECIFIED: _ClassVar[InversionMethod]
    INVERSION_METHOD_ENCODER: _ClassVar[InversionMethod]
    INVERSION_METHOD_OPTIMIZE: _ClassVar[InversionMethod]
    INVERSION_METHOD_IN_DOMAIN: _ClassVar[InversionMethod]

class LatentSpace(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LATENT_SPACE_UNSPECIFIED: _ClassVar[LatentSpace]
    LATENT_SPACE_W: _ClassVar[LatentSpace]
    LATENT_SPACE_W_PLUS: _ClassVar[LatentSpace]

class ResizeMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESIZE_MODE_UNSPECIFIED: _ClassVar[ResizeMode]
    RESIZE_MODE_CENTER_CROP: _ClassVar[ResizeMode]
    RESIZE_MODE_STRETCH: _ClassVar[ResizeMode]
    RESIZE_MODE_PAD: _ClassVar[ResizeMode]

class InterpolationMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTERPOLATION_MODE_UNSPECIFIED: _ClassVar[InterpolationMode]
    INTERPOLATION_MODE_LERP: _ClassVar[InterpolationMode]
    INTERPOLATION_MODE_SLERP: _ClassVar[InterpolationMode]

IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
IMAGE_FORMAT_RAW: ImageFormat
IMAGE_FORMAT_WEBP: ImageFormat
NOISE_MODE_UNSPECIFIED: NoiseMode
NOISE_MODE_CONST: NoiseMode
NOISE_MODE_NONE: NoiseMode
INVERSION_METHOD_UNSPECIFIED: InversionMethod
INVERSION_METHOD_ENCODER: InversionMethod
INVERSION_METHOD_OPTIMIZE: InversionMethod
INVERSION_METHOD_IN_DOMAIN: InversionMethod
LATENT_SPACE_UNSPECIFIED: LatentSpace
LATENT_SPACE_W: LatentSpace
LATENT_SPACE_W_PLUS: LatentSpace
RESIZE_MODE_UNSPECIFIED: ResizeMode
RESIZE_MODE_CENTER_CROP: ResizeMode
RESIZE_MODE_STRETCH: ResizeMode
RESIZE_MODE_PAD: ResizeMode
INTERPOLATION_MODE_UNSPECIFIED: InterpolationMode
INTERPOLATION_MODE_LERP: InterpolationMode
INTERPOLATION_MODE_SLERP: InterpolationMode

class Tensor(_message.Message):
    __slots__ = ("data", "shape")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, shape: _Iterable[int] | None = ..., data: bytes | None = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("data", "format", "height", "tensor", "width")
    DATA_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    tensor: Tensor
    format: ImageFormat
    width: int
    height: int
    def __init__(
        self,
        data: bytes | None = ...,
        tensor: Tensor | _Mapping | None = ...,
        format: ImageFormat | str | None = ...,
        width: int | None = ...,
        height: int | None = ...,
    ) -> None: ...

class OutputOptions(_message.Message):
    __slots__ = ("format", "jpeg_quality")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    format: ImageFormat
    jpeg_quality: int
    def __init__(
        self, format: ImageFormat | str | None = ..., jpeg_quality: int | None = ...
    ) -> None: ...

class Truncation(_message.Message):
    __slots__ = ("cutoff", "psi")
    PSI_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_FIELD_NUMBER: _ClassVar[int]
    psi: float
    cutoff: int
    def __init__(self, psi: float | None = ..., cutoff: int | None = ...) -> None: ...

class LatentSource(_message.Message):
    __slots__ = ("seed", "truncation", "ws", "z")
    SEED_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    WS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    seed: int
    z: Tensor
    ws: Tensor
    truncation: Truncation
    def __init__(
        self,
        seed: int | None = ...,
        z: Tensor | _Mapping | None = ...,
        ws: Tensor | _Mapping | None = ...,
        truncation: Truncation | _Mapping | None = ...,
    ) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model", "noise_mode", "output", "return_latents", "seeds", "truncation", "z")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    NOISE_MODE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    RETURN_LATENTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    seeds: _containers.RepeatedScalarFieldContainer[int]
    z: _containers.RepeatedCompositeFieldContainer[Tensor]
    truncation: Truncation
    noise_mode: NoiseMode
    output: OutputOptions
    return_latents: bool
    def __init__(
        self,
        model: str | None = ...,
        seeds: _Iterable[int] | None = ...,
        z: _Iterable[Tensor | _Mapping] | None = ...,
        truncation: Truncation | _Mapping | None = ...,
        noise_mode: NoiseMode | str | None = ...,
        output: OutputOptions | _Mapping | None = ...,
        return_latents: bool | None = ...,
    ) -> None: ...

class GeneratedImage(_message.Message):
    __slots__ = ("image", "seed", "ws")
    SEED_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    WS_FIELD_NUMBER: _ClassVar[int]
    seed: int
    image: Image
    ws: Tensor
    def __init__(
        self,
        seed: int | None = ...,
        image: Image | _Mapping | None = ...,
        ws: Tensor | _Mapping | None = ...,
    ) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("images", "model")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[GeneratedImage]
    model: str
    def __init__(
        self, images: _Iterable[GeneratedImage | _Mapping] | None = ..., model: str | None = ...
    ) -> None: ...

class LossWeights(_message.Message):
    __slots__ = ("domain", "feature", "pixel")
    PIXEL_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    pixel: float
    feature: float
    domain: float
    def __init__(
        self, pixel: float | None = ..., feature: float | None = ..., domain: float | None = ...
    ) -> None: ...

class InvertRequest(_message.Message):
    __slots__ = (
        "early_stop_tol",
        "early_stop_window",
        "image",
        "learning_rate",
        "loss_weights",
        "mask",
        "method",
        "model",
        "output",
        "preview_every",
        "progress_every",
        "resize",
        "space",
        "steps",
    )
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    LOSS_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOP_TOL_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOP_WINDOW_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_EVERY_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_EVERY_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    image: Image
    resize: ResizeMode
    method: InversionMethod
    steps: int
    learning_rate: float
    loss_weights: LossWeights
    mask: Image
    space: LatentSpace
    early_stop_tol: float
    early_stop_window: int
    preview_every: int
    progress_every: int
    output: OutputOptions
    def __init__(
        self,
        model: str | None = ...,
        image: Image | _Mapping | None = ...,
        resize: ResizeMode | str | None = ...,
        method: InversionMethod | str | None = ...,
        steps: int | None = ...,
        learning_rate: float | None = ...,
        loss_weights: LossWeights | _Mapping | None = ...,
        mask: Image | _Mapping | None = ...,
        space: LatentSpace | str | None = ...,
        early_stop_tol: float | None = ...,
        early_stop_window: int | None = ...,
        preview_every: int | None = ...,
        progress_every: int | None = ...,
        output: OutputOptions | _Mapping | None = ...,
    ) -> None: ...

class LossTerms(_message.Message):
    __slots__ = ("domain", "feature", "pixel")
    PIXEL_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    pixel: float
    feature: float
    domain: float
    def __init__(
        self, pixel: float | None = ..., feature: float | None = ..., domain: float | None = ...
    ) -> None: ...

class InvertProgress(_message.Message):
    __slots__ = ("learning_rate", "loss", "preview", "step", "terms", "total_steps")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    loss: float
    terms: LossTerms
    learning_rate: float
    preview: Image
    def __init__(
        self,
        step: int | None = ...,
        total_steps: int | None = ...,
        loss: float | None = ...,
        terms: LossTerms | _Mapping | None = ...,
        learning_rate: float | None = ...,
        preview: Image | _Mapping | None = ...,
    ) -> None: ...

class QualityFigures(_message.Message):
    __slots__ = ("in_domain_score", "perceptual_distance", "psnr", "ssim")
    PSNR_FIELD_NUMBER: _ClassVar[int]
    SSIM_FIELD_NUMBER: _ClassVar[int]
    PERCEPTUAL_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    IN_DOMAIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    psnr: float
    ssim: float
    perceptual_distance: float
    in_domain_score: float
    def __init__(
        self,
        psnr: float | None = ...,
        ssim: float | None = ...,
        perceptual_distance: float | None = ...,
        in_domain_score: float | None = ...,
    ) -> None: ...

class InvertResult(_message.Message):
    __slots__ = (
        "early_stopped",
        "loss",
        "method",
        "model",
        "quality",
        "reconstruction",
        "seconds",
        "space",
        "steps",
        "target",
        "terms",
        "ws",
    )
    WS_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPED_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ws: Tensor
    reconstruction: Image
    target: Image
    quality: QualityFigures
    loss: float
    terms: LossTerms
    steps: int
    early_stopped: bool
    method: str
    space: str
    seconds: float
    model: str
    def __init__(
        self,
        ws: Tensor | _Mapping | None = ...,
        reconstruction: Image | _Mapping | None = ...,
        target: Image | _Mapping | None = ...,
        quality: QualityFigures | _Mapping | None = ...,
        loss: float | None = ...,
        terms: LossTerms | _Mapping | None = ...,
        steps: int | None = ...,
        early_stopped: bool | None = ...,
        method: str | None = ...,
        space: str | None = ...,
        seconds: float | None = ...,
        model: str | None = ...,
    ) -> None: ...

class InvertResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: InvertProgress
    result: InvertResult
    def __init__(
        self,
        progress: InvertProgress | _Mapping | None = ...,
        result: InvertResult | _Mapping | None = ...,
    ) -> None: ...

class EditOp(_message.Message):
    __slots__ = ("condition_on", "layer_start", "layer_stop", "name", "strength", "vector")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    LAYER_START_FIELD_NUMBER: _ClassVar[int]
    LAYER_STOP_FIELD_NUMBER: _ClassVar[int]
    CONDITION_ON_FIELD_NUMBER: _ClassVar[int]
    name: str
    vector: Tensor
    strength: float
    layer_start: int
    layer_stop: int
    condition_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(
        self,
        name: str | None = ...,
        vector: Tensor | _Mapping | None = ...,
        strength: float | None = ...,
        layer_start: int | None = ...,
        layer_stop: int | None = ...,
        condition_on: _Iterable[str] | None = ...,
    ) -> None: ...

class EditRequest(_message.Message):
    __slots__ = (
        "edits",
        "include_original",
        "invert",
        "latent",
        "model",
        "noise_mode",
        "output",
        "return_latent",
    )
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LATENT_FIELD_NUMBER: _ClassVar[int]
    INVERT_FIELD_NUMBER: _ClassVar[int]
    EDITS_FIELD_NUMBER: _ClassVar[int]
    NOISE_MODE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    RETURN_LATENT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    model: str
    latent: LatentSource
    invert: InvertRequest
    edits: _containers.RepeatedCompositeFieldContainer[EditOp]
    noise_mode: NoiseMode
    output: OutputOptions
    return_latent: bool
    include_original: bool
    def __init__(
        self,
        model: str | None = ...,
        latent: LatentSource | _Mapping | None = ...,
        invert: InvertRequest | _Mapping | None = ...,
        edits: _Iterable[EditOp | _Mapping] | None = ...,
        noise_mode: NoiseMode | str | None = ...,
        output: OutputOptions | _Mapping | None = ...,
        return_latent: bool | None = ...,
        include_original: bool | None = ...,
    ) -> None: ...

class EditResponse(_message.Message):
    __slots__ = ("image", "model", "original", "source_ws", "ws")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    WS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_WS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    image: Image
    ws: Tensor
    original: Image
    source_ws: Tensor
    model: str
    def __init__(
        self,
        image: Image | _Mapping | None = ...,
        ws: Tensor | _Mapping | None = ...,
        original: Image | _Mapping | None = ...,
        source_ws: Tensor | _Mapping | None = ...,
        model: str | None = ...,
    ) -> None: ...

class Direction(_message.Message):
    __slots__ = ("attribute", "layer_start", "layer_stop", "method", "name", "stats", "std")
    class StatsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: str | None = ..., value: float | None = ...) -> None: ...

    NAME_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    LAYER_START_FIELD_NUMBER: _ClassVar[int]
    LAYER_STOP_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    name: str
    method: str
    std: float
    layer_start: int
    layer_stop: int
    attribute: str
    stats: _containers.ScalarMap[str, float]
    def __init__(
        self,
        name: str | None = ...,
        method: str | None = ...,
        std: float | None = ...,
        layer_start: int | None = ...,
        layer_stop: int | None = ...,
        attribute: str | None = ...,
        stats: _Mapping[str, float] | None = ...,
    ) -> None: ...

class ListDirectionsRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: str | None = ...) -> None: ...

class ListDirectionsResponse(_message.Message):
    __slots__ = ("directions", "model")
    DIRECTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    directions: _containers.RepeatedCompositeFieldContainer[Direction]
    model: str
    def __init__(
        self, directions: _Iterable[Direction | _Mapping] | None = ..., model: str | None = ...
    ) -> None: ...

class StyleMixRequest(_message.Message):
    __slots__ = (
        "a",
        "b",
        "layer_start",
        "layer_stop",
        "model",
        "noise_mode",
        "output",
        "return_latent",
    )
    MODEL_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    LAYER_START_FIELD_NUMBER: _ClassVar[int]
    LAYER_STOP_FIELD_NUMBER: _ClassVar[int]
    NOISE_MODE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    RETURN_LATENT_FIELD_NUMBER: _ClassVar[int]
    model: str
    a: LatentSource
    b: LatentSource
    layer_start: int
    layer_stop: int
    noise_mode: NoiseMode
    output: OutputOptions
    return_latent: bool
    def __init__(
        self,
        model: str | None = ...,
        a: LatentSource | _Mapping | None = ...,
        b: LatentSource | _Mapping | None = ...,
        layer_start: int | None = ...,
        layer_stop: int | None = ...,
        noise_mode: NoiseMode | str | None = ...,
        output: OutputOptions | _Mapping | None = ...,
        return_latent: bool | None = ...,
    ) -> None: ...

class StyleMixResponse(_message.Message):
    __slots__ = ("image", "model", "ws")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    WS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    image: Image
    ws: Tensor
    model: str
    def __init__(
        self,
        image: Image | _Mapping | None = ...,
        ws: Tensor | _Mapping | None = ...,
        model: str | None = ...,
    ) -> None: ...

class InterpolateRequest(_message.Message):
    __slots__ = (
        "end",
        "frames",
        "mode",
        "model",
        "noise_mode",
        "output",
        "return_latents",
        "start",
    )
    MODEL_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NOISE_MODE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    RETURN_LATENTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    start: LatentSource
    end: LatentSource
    frames: int
    mode: InterpolationMode
    noise_mode: NoiseMode
    output: OutputOptions
    return_latents: bool
    def __init__(
        self,
        model: str | None = ...,
        start: LatentSource | _Mapping | None = ...,
        end: LatentSource | _Mapping | None = ...,
        frames: int | None = ...,
        mode: InterpolationMode | str | None = ...,
        noise_mode: NoiseMode | str | None = ...,
        output: OutputOptions | _Mapping | None = ...,
        return_latents: bool | None = ...,
    ) -> None: ...

class InterpolateResponse(_message.Message):
    __slots__ = ("frames", "model", "ws")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    WS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[Image]
    ws: _containers.RepeatedCompositeFieldContainer[Tensor]
    model: str
    def __init__(
        self,
        frames: _Iterable[Image | _Mapping] | None = ...,
        ws: _Iterable[Tensor | _Mapping] | None = ...,
        model: str | None = ...,
    ) -> None: ...

class ModelInfoRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: str | None = ...) -> None: ...

class ModelInfoResponse(_message.Message):
    __slots__ = (
        "attributes",
        "backend",
        "can_invert",
        "description",
        "directions",
        "is_default",
        "layer_resolutions",
        "name",
        "networks",
        "num_ws",
        "resolution",
        "w_dim",
        "z_dim",
    )
    class NetworksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: str | None = ..., value: str | None = ...) -> None: ...

    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    NUM_WS_FIELD_NUMBER: _ClassVar[int]
    W_DIM_FIELD_NUMBER: _ClassVar[int]
    Z_DIM_FIELD_NUMBER: _ClassVar[int]
    LAYER_RESOLUTIONS_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    CAN_INVERT_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    DIRECTIONS_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    resolution: int
    num_ws: int
    w_dim: int
    z_dim: int
    layer_resolutions: _containers.RepeatedScalarFieldContainer[int]
    networks: _containers.ScalarMap[str, str]
    can_invert: bool
    attributes: _containers.RepeatedScalarFieldContainer[str]
    directions: _containers.RepeatedCompositeFieldContainer[Direction]
    is_default: bool
    backend: str
    def __init__(
        self,
        name: str | None = ...,
        description: str | None = ...,
        resolution: int | None = ...,
        num_ws: int | None = ...,
        w_dim: int | None = ...,
        z_dim: int | None = ...,
        layer_resolutions: _Iterable[int] | None = ...,
        networks: _Mapping[str, str] | None = ...,
        can_invert: bool | None = ...,
        attributes: _Iterable[str] | None = ...,
        directions: _Iterable[Direction | _Mapping] | None = ...,
        is_default: bool | None = ...,
        backend: str | None = ...,
    ) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("default_model", "models")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfoResponse]
    default_model: str
    def __init__(
        self,
        models: _Iterable[ModelInfoResponse | _Mapping] | None = ...,
        default_model: str | None = ...,
    ) -> None: ...

class SeedRange(_message.Message):
    __slots__ = ("start", "stop")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    start: int
    stop: int
    def __init__(self, start: int | None = ..., stop: int | None = ...) -> None: ...

class SeedList(_message.Message):
    __slots__ = ("seeds",)
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    seeds: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, seeds: _Iterable[int] | None = ...) -> None: ...

class BatchGenerateRequest(_message.Message):
    __slots__ = (
        "chunk_size",
        "list",
        "model",
        "noise_mode",
        "output",
        "range",
        "resume_token",
        "return_latents",
        "start_after",
        "truncation",
    )
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    NOISE_MODE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    RETURN_LATENTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    range: SeedRange
    list: SeedList
    chunk_size: int
    start_after: int
    resume_token: str
    truncation: Truncation
    noise_mode: NoiseMode
    output: OutputOptions
    return_latents: bool
    def __init__(
        self,
        model: str | None = ...,
        range: SeedRange | _Mapping | None = ...,
        list: SeedList | _Mapping | None = ...,
        chunk_size: int | None = ...,
        start_after: int | None = ...,
        resume_token: str | None = ...,
        truncation: Truncation | _Mapping | None = ...,
        noise_mode: NoiseMode | str | None = ...,
        output: OutputOptions | _Mapping | None = ...,
        return_latents: bool | None = ...,
    ) -> None: ...

class BatchGenerateChunk(_message.Message):
    __slots__ = ("done", "images", "resume_token", "total")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[GeneratedImage]
    done: int
    total: int
    resume_token: str
    def __init__(
        self,
        images: _Iterable[GeneratedImage | _Mapping] | None = ...,
        done: int | None = ...,
        total: int | None = ...,
        resume_token: str | None = ...,
    ) -> None: ...
