from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

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

class Optimizer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPTIMIZER_UNSPECIFIED: _ClassVar[Optimizer]
    OPTIMIZER_ADAM: _ClassVar[Optimizer]
    OPTIMIZER_LBFGS: _ClassVar[Optimizer]

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
OPTIMIZER_UNSPECIFIED: Optimizer
OPTIMIZER_ADAM: Optimizer
OPTIMIZER_LBFGS: Optimizer
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
    __slots__ = ("shape", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("data", "tensor", "format", "width", "height")
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
    def __init__(self, data: _Optional[bytes] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class OutputOptions(_message.Message):
    __slots__ = ("format", "jpeg_quality")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    format: ImageFormat
    jpeg_quality: int
    def __init__(self, format: _Optional[_Union[ImageFormat, str]] = ..., jpeg_quality: _Optional[int] = ...) -> None: ...

class Truncation(_message.Message):
    __slots__ = ("psi", "cutoff")
    PSI_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_FIELD_NUMBER: _ClassVar[int]
    psi: float
    cutoff: int
    def __init__(self, psi: _Optional[float] = ..., cutoff: _Optional[int] = ...) -> None: ...

class LatentSource(_message.Message):
    __slots__ = ("seed", "z", "ws", "truncation", "class_label")
    SEED_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    WS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
    seed: int
    z: Tensor
    ws: Tensor
    truncation: Truncation
    class_label: int
    def __init__(self, seed: _Optional[int] = ..., z: _Optional[_Union[Tensor, _Mapping]] = ..., ws: _Optional[_Union[Tensor, _Mapping]] = ..., truncation: _Optional[_Union[Truncation, _Mapping]] = ..., class_label: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model", "seeds", "z", "truncation", "noise_mode", "output", "return_latents", "class_label")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    NOISE_MODE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    RETURN_LATENTS_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    seeds: _containers.RepeatedScalarFieldContainer[int]
    z: _containers.RepeatedCompositeFieldContainer[Tensor]
    truncation: Truncation
    noise_mode: NoiseMode
    output: OutputOptions
    return_latents: bool
    class_label: int
    def __init__(self, model: _Optional[str] = ..., seeds: _Optional[_Iterable[int]] = ..., z: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., truncation: _Optional[_Union[Truncation, _Mapping]] = ..., noise_mode: _Optional[_Union[NoiseMode, str]] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ..., return_latents: _Optional[bool] = ..., class_label: _Optional[int] = ...) -> None: ...

class GeneratedImage(_message.Message):
    __slots__ = ("seed", "image", "ws")
    SEED_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    WS_FIELD_NUMBER: _ClassVar[int]
    seed: int
    image: Image
    ws: Tensor
    def __init__(self, seed: _Optional[int] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., ws: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("images", "model")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[GeneratedImage]
    model: str
    def __init__(self, images: _Optional[_Iterable[_Union[GeneratedImage, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class LossWeights(_message.Message):
    __slots__ = ("pixel", "feature", "domain")
    PIXEL_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    pixel: float
    feature: float
    domain: float
    def __init__(self, pixel: _Optional[float] = ..., feature: _Optional[float] = ..., domain: _Optional[float] = ...) -> None: ...

class InvertRequest(_message.Message):
    __slots__ = ("model", "image", "resize", "method", "steps", "learning_rate", "loss_weights", "mask", "space", "early_stop_tol", "early_stop_window", "preview_every", "progress_every", "output", "optimizer")
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
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
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
    optimizer: Optimizer
    def __init__(self, model: _Optional[str] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., resize: _Optional[_Union[ResizeMode, str]] = ..., method: _Optional[_Union[InversionMethod, str]] = ..., steps: _Optional[int] = ..., learning_rate: _Optional[float] = ..., loss_weights: _Optional[_Union[LossWeights, _Mapping]] = ..., mask: _Optional[_Union[Image, _Mapping]] = ..., space: _Optional[_Union[LatentSpace, str]] = ..., early_stop_tol: _Optional[float] = ..., early_stop_window: _Optional[int] = ..., preview_every: _Optional[int] = ..., progress_every: _Optional[int] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ..., optimizer: _Optional[_Union[Optimizer, str]] = ...) -> None: ...

class LossTerms(_message.Message):
    __slots__ = ("pixel", "feature", "domain")
    PIXEL_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    pixel: float
    feature: float
    domain: float
    def __init__(self, pixel: _Optional[float] = ..., feature: _Optional[float] = ..., domain: _Optional[float] = ...) -> None: ...

class InvertProgress(_message.Message):
    __slots__ = ("step", "total_steps", "loss", "terms", "learning_rate", "preview")
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
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., loss: _Optional[float] = ..., terms: _Optional[_Union[LossTerms, _Mapping]] = ..., learning_rate: _Optional[float] = ..., preview: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class QualityFigures(_message.Message):
    __slots__ = ("psnr", "ssim", "perceptual_distance", "in_domain_score")
    PSNR_FIELD_NUMBER: _ClassVar[int]
    SSIM_FIELD_NUMBER: _ClassVar[int]
    PERCEPTUAL_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    IN_DOMAIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    psnr: float
    ssim: float
    perceptual_distance: float
    in_domain_score: float
    def __init__(self, psnr: _Optional[float] = ..., ssim: _Optional[float] = ..., perceptual_distance: _Optional[float] = ..., in_domain_score: _Optional[float] = ...) -> None: ...

class InvertResult(_message.Message):
    __slots__ = ("ws", "reconstruction", "target", "quality", "loss", "terms", "steps", "early_stopped", "method", "space", "seconds", "model", "optimizer")
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
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
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
    optimizer: str
    def __init__(self, ws: _Optional[_Union[Tensor, _Mapping]] = ..., reconstruction: _Optional[_Union[Image, _Mapping]] = ..., target: _Optional[_Union[Image, _Mapping]] = ..., quality: _Optional[_Union[QualityFigures, _Mapping]] = ..., loss: _Optional[float] = ..., terms: _Optional[_Union[LossTerms, _Mapping]] = ..., steps: _Optional[int] = ..., early_stopped: _Optional[bool] = ..., method: _Optional[str] = ..., space: _Optional[str] = ..., seconds: _Optional[float] = ..., model: _Optional[str] = ..., optimizer: _Optional[str] = ...) -> None: ...

class InvertResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: InvertProgress
    result: InvertResult
    def __init__(self, progress: _Optional[_Union[InvertProgress, _Mapping]] = ..., result: _Optional[_Union[InvertResult, _Mapping]] = ...) -> None: ...

class EditOp(_message.Message):
    __slots__ = ("name", "vector", "strength", "layer_start", "layer_stop", "condition_on", "unconditioned")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    LAYER_START_FIELD_NUMBER: _ClassVar[int]
    LAYER_STOP_FIELD_NUMBER: _ClassVar[int]
    CONDITION_ON_FIELD_NUMBER: _ClassVar[int]
    UNCONDITIONED_FIELD_NUMBER: _ClassVar[int]
    name: str
    vector: Tensor
    strength: float
    layer_start: int
    layer_stop: int
    condition_on: _containers.RepeatedScalarFieldContainer[str]
    unconditioned: bool
    def __init__(self, name: _Optional[str] = ..., vector: _Optional[_Union[Tensor, _Mapping]] = ..., strength: _Optional[float] = ..., layer_start: _Optional[int] = ..., layer_stop: _Optional[int] = ..., condition_on: _Optional[_Iterable[str]] = ..., unconditioned: _Optional[bool] = ...) -> None: ...

class EditRequest(_message.Message):
    __slots__ = ("model", "latent", "invert", "edits", "noise_mode", "output", "return_latent", "include_original")
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
    def __init__(self, model: _Optional[str] = ..., latent: _Optional[_Union[LatentSource, _Mapping]] = ..., invert: _Optional[_Union[InvertRequest, _Mapping]] = ..., edits: _Optional[_Iterable[_Union[EditOp, _Mapping]]] = ..., noise_mode: _Optional[_Union[NoiseMode, str]] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ..., return_latent: _Optional[bool] = ..., include_original: _Optional[bool] = ...) -> None: ...

class EditResponse(_message.Message):
    __slots__ = ("image", "ws", "original", "source_ws", "model")
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
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., ws: _Optional[_Union[Tensor, _Mapping]] = ..., original: _Optional[_Union[Image, _Mapping]] = ..., source_ws: _Optional[_Union[Tensor, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class Direction(_message.Message):
    __slots__ = ("name", "method", "std", "layer_start", "layer_stop", "attribute", "stats", "condition_on")
    class StatsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    LAYER_START_FIELD_NUMBER: _ClassVar[int]
    LAYER_STOP_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    CONDITION_ON_FIELD_NUMBER: _ClassVar[int]
    name: str
    method: str
    std: float
    layer_start: int
    layer_stop: int
    attribute: str
    stats: _containers.ScalarMap[str, float]
    condition_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., method: _Optional[str] = ..., std: _Optional[float] = ..., layer_start: _Optional[int] = ..., layer_stop: _Optional[int] = ..., attribute: _Optional[str] = ..., stats: _Optional[_Mapping[str, float]] = ..., condition_on: _Optional[_Iterable[str]] = ...) -> None: ...

class ListDirectionsRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ListDirectionsResponse(_message.Message):
    __slots__ = ("directions", "model")
    DIRECTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    directions: _containers.RepeatedCompositeFieldContainer[Direction]
    model: str
    def __init__(self, directions: _Optional[_Iterable[_Union[Direction, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class StyleMixRequest(_message.Message):
    __slots__ = ("model", "a", "b", "layer_start", "layer_stop", "noise_mode", "output", "return_latent")
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
    def __init__(self, model: _Optional[str] = ..., a: _Optional[_Union[LatentSource, _Mapping]] = ..., b: _Optional[_Union[LatentSource, _Mapping]] = ..., layer_start: _Optional[int] = ..., layer_stop: _Optional[int] = ..., noise_mode: _Optional[_Union[NoiseMode, str]] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ..., return_latent: _Optional[bool] = ...) -> None: ...

class StyleMixResponse(_message.Message):
    __slots__ = ("image", "ws", "model")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    WS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    image: Image
    ws: Tensor
    model: str
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., ws: _Optional[_Union[Tensor, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class InterpolateRequest(_message.Message):
    __slots__ = ("model", "start", "end", "frames", "mode", "noise_mode", "output", "return_latents")
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
    def __init__(self, model: _Optional[str] = ..., start: _Optional[_Union[LatentSource, _Mapping]] = ..., end: _Optional[_Union[LatentSource, _Mapping]] = ..., frames: _Optional[int] = ..., mode: _Optional[_Union[InterpolationMode, str]] = ..., noise_mode: _Optional[_Union[NoiseMode, str]] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ..., return_latents: _Optional[bool] = ...) -> None: ...

class InterpolateResponse(_message.Message):
    __slots__ = ("frames", "ws", "model")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    WS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[Image]
    ws: _containers.RepeatedCompositeFieldContainer[Tensor]
    model: str
    def __init__(self, frames: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., ws: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class ModelInfoRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ModelInfoResponse(_message.Message):
    __slots__ = ("name", "description", "resolution", "num_ws", "w_dim", "z_dim", "layer_resolutions", "networks", "can_invert", "attributes", "directions", "is_default", "backend", "inversion_methods", "c_dim")
    class NetworksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
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
    INVERSION_METHODS_FIELD_NUMBER: _ClassVar[int]
    C_DIM_FIELD_NUMBER: _ClassVar[int]
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
    inversion_methods: _containers.RepeatedScalarFieldContainer[str]
    c_dim: int
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., resolution: _Optional[int] = ..., num_ws: _Optional[int] = ..., w_dim: _Optional[int] = ..., z_dim: _Optional[int] = ..., layer_resolutions: _Optional[_Iterable[int]] = ..., networks: _Optional[_Mapping[str, str]] = ..., can_invert: _Optional[bool] = ..., attributes: _Optional[_Iterable[str]] = ..., directions: _Optional[_Iterable[_Union[Direction, _Mapping]]] = ..., is_default: _Optional[bool] = ..., backend: _Optional[str] = ..., inversion_methods: _Optional[_Iterable[str]] = ..., c_dim: _Optional[int] = ...) -> None: ...

class ReloadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadResponse(_message.Message):
    __slots__ = ("models", "default_model")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedScalarFieldContainer[str]
    default_model: str
    def __init__(self, models: _Optional[_Iterable[str]] = ..., default_model: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "default_model")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfoResponse]
    default_model: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfoResponse, _Mapping]]] = ..., default_model: _Optional[str] = ...) -> None: ...

class SeedRange(_message.Message):
    __slots__ = ("start", "stop")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    start: int
    stop: int
    def __init__(self, start: _Optional[int] = ..., stop: _Optional[int] = ...) -> None: ...

class SeedList(_message.Message):
    __slots__ = ("seeds",)
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    seeds: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, seeds: _Optional[_Iterable[int]] = ...) -> None: ...

class BatchGenerateRequest(_message.Message):
    __slots__ = ("model", "range", "list", "chunk_size", "start_after", "resume_token", "truncation", "noise_mode", "output", "return_latents", "class_label")
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
    CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
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
    class_label: int
    def __init__(self, model: _Optional[str] = ..., range: _Optional[_Union[SeedRange, _Mapping]] = ..., list: _Optional[_Union[SeedList, _Mapping]] = ..., chunk_size: _Optional[int] = ..., start_after: _Optional[int] = ..., resume_token: _Optional[str] = ..., truncation: _Optional[_Union[Truncation, _Mapping]] = ..., noise_mode: _Optional[_Union[NoiseMode, str]] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ..., return_latents: _Optional[bool] = ..., class_label: _Optional[int] = ...) -> None: ...

class BatchGenerateChunk(_message.Message):
    __slots__ = ("images", "done", "total", "resume_token")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[GeneratedImage]
    done: int
    total: int
    resume_token: str
    def __init__(self, images: _Optional[_Iterable[_Union[GeneratedImage, _Mapping]]] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., resume_token: _Optional[str] = ...) -> None: ...
