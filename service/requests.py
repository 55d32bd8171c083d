"""The request boundary: each protobuf request becomes one frozen, validated plan
(service/plans.py) before any work starts. Every error is an ``InvalidInput`` (or
``NotFound`` / ``FailedPrecondition``) naming the request field at fault, with the path
of nested messages (``invert.steps``, ``edits[0].vector``)."""

from __future__ import annotations

import base64
import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from stylegate.protos.v1 import stylegate_pb2 as pb
from stylegate.service import editing, images, inversion
from stylegate.service.errors import InvalidInput, StylegateError
from stylegate.service.generation import LatentSpec, z_from_seed
from stylegate.service.metadata import GeneratorInfo, RepositoryInfo
from stylegate.service.plans import (
    BatchPlan,
    EditPlan,
    GeneratePlan,
    InterpolatePlan,
    InvertPlan,
    OutputFormat,
    Sampling,
    StyleMixPlan,
)
from stylegate.service.settings import Settings
from stylegate.service.signatures import LOSS_TERMS, MAX_SEED

MAX_TENSOR_DIMS = 4
DEFAULT_FRAMES = 8
MAX_CHUNK = 1_000_000  # beyond it a chunk_size is a mistake, not a wish for the cap
DEFAULT_CHUNK = 16
DEFAULT_JPEG_QUALITY = 90
MAX_PSI = 2.0
# Bounds on client numbers: far outside what any model produces or needs, far inside what
# float32 survives (3e38 in a latent overflows the first layer to Inf and the image to NaN).
MAX_Z_ABS = 100.0  # z is standard normal: 100 sigma is no sample
MAX_LATENT_ABS = editing.MAX_LATENT_ABS  # W / W+ values, edits included
MAX_STRENGTH = 100.0  # edit strength: standard deviations (named) or W units (vectors)
MAX_LOSS_WEIGHT = 1000.0  # inversion loss weights (defaults are 0.5-1)

T = TypeVar("T")

FORMATS = {
    pb.IMAGE_FORMAT_UNSPECIFIED: "png",
    pb.IMAGE_FORMAT_PNG: "png",
    pb.IMAGE_FORMAT_JPEG: "jpeg",
    pb.IMAGE_FORMAT_WEBP: "webp",
    pb.IMAGE_FORMAT_RAW: "raw",
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
OPTIMIZERS = {
    pb.OPTIMIZER_UNSPECIFIED: None,
    pb.OPTIMIZER_ADAM: "adam",
    pb.OPTIMIZER_LBFGS: "lbfgs",
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


# -- building blocks -----------------------------------------------------------------------


def _within(value: int, lo: int, hi: int, *, field: str) -> int:
    if not lo <= value <= hi:
        raise InvalidInput(f"{field} {value} is outside [{lo}, {hi}]", field=field)
    return value


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
    expected = math.prod(shape) * 4  # Python ints: [2**32, 2**32] must not wrap to 0
    if len(t.data) != expected:
        raise InvalidInput(
            f"tensor data has {len(t.data)} bytes, shape {list(shape)} needs {expected}",
            field=field,
        )
    return np.frombuffer(t.data, dtype="<f4").reshape(shape).astype(np.float32)


def output_format(opts: pb.OutputOptions, *, field: str = "output") -> OutputFormat:
    kind = enum(FORMATS, opts.format, field=f"{field}.format")
    quality = opts.jpeg_quality or DEFAULT_JPEG_QUALITY
    if not 1 <= quality <= 100:
        raise InvalidInput(
            f"jpeg_quality {quality} is outside [1, 100]", field=f"{field}.jpeg_quality"
        )
    return OutputFormat(kind, quality)


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
    pil = images.load(
        _probe(img, settings, field=f"{field}.data"),
        field=f"{field}.data",
        at_least=gen.resolution,
    )
    return images.to_model(images.fit(pil, gen.resolution, resize))


def _probe(img: pb.Image, settings: Settings, *, field: str) -> images.Image.Image:
    return images.probe(
        img.data,
        field=field,
        max_bytes=settings.max_image_bytes,
        max_side=settings.max_image_side,
        max_pixels=settings.max_image_pixels,
    )


def _probe_encoded(img: pb.Image, settings: Settings, *, field: str) -> None:
    """The header checks of an encoded image (no decoding): run on every image of a
    request before the first one is decoded."""
    if img.WhichOneof("content") == "data":
        _probe(img, settings, field=f"{field}.data")


def mask(
    img: pb.Image, gen: GeneratorInfo, settings: Settings, *, resize: str, field: str
) -> np.ndarray | None:
    """An optional mask -> [1, R, R] in [0, 1]; None when not given."""
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
        probed = _probe(img, settings, field=f"{field}.data")
        pil = images.load(probed, field=f"{field}.data", mode="L", at_least=r)
        m = images.to_mask(images.fit(pil, r, resize))
    if m.min() < 0 or m.max() > 1:
        raise InvalidInput("mask values must be in [0, 1]", field=field)
    if m.max() == 0:
        raise InvalidInput("mask is zero everywhere", field=field)
    return m


def check_latent(x: np.ndarray, gen: GeneratorInfo, *, field: str) -> np.ndarray:
    """Validate a W ([w_dim]) or W+ ([num_ws, w_dim]) latent; returns W+ [num_ws, w_dim]."""
    if x.shape == (gen.w_dim,):
        x = np.broadcast_to(x, (gen.num_ws, gen.w_dim))
    elif x.shape != (gen.num_ws, gen.w_dim):
        raise InvalidInput(
            f"latent has shape {list(x.shape)}, expected [{gen.w_dim}] or "
            f"[{gen.num_ws}, {gen.w_dim}] for model {gen.name!r}",
            field=field,
        )
    _finite_within(x, MAX_LATENT_ABS, "latent", field=field)
    return np.array(x, dtype=np.float32)


def _finite_within(x: np.ndarray, bound: float, what: str, *, field: str) -> None:
    if not np.isfinite(x).all():
        raise InvalidInput(f"{what} has NaN or Inf values", field=field)
    if x.size and np.abs(x).max() > bound:
        raise InvalidInput(f"{what} values must be within [-{bound:g}, {bound:g}]", field=field)


def check_z(z: np.ndarray, gen: GeneratorInfo, *, field: str) -> np.ndarray:
    if z.shape != (gen.z_dim,):
        raise InvalidInput(f"z has shape {list(z.shape)}, expected [{gen.z_dim}]", field=field)
    _finite_within(z, MAX_Z_ABS, "z", field=field)
    return z.astype(np.float32)


def truncation(t: pb.Truncation, gen: GeneratorInfo, *, field: str) -> tuple[float, int | None]:
    psi = t.psi if t.HasField("psi") else 1.0
    cutoff = t.cutoff if t.HasField("cutoff") else None
    if not np.isfinite(psi) or not -MAX_PSI <= psi <= MAX_PSI:
        raise InvalidInput(
            f"psi {psi} is outside [-{MAX_PSI:g}, {MAX_PSI:g}]", field=f"{field}.psi"
        )
    if cutoff is not None and not 0 <= cutoff <= gen.num_ws:
        raise InvalidInput(f"cutoff {cutoff} is outside [0, {gen.num_ws}]", field=f"{field}.cutoff")
    return psi, cutoff


def class_label(message, gen: GeneratorInfo, *, field: str = "class_label") -> int | None:
    """``message.class_label``: required in [0, c_dim) for a class-conditional generator,
    absent for an unconditional one."""
    given = message.HasField("class_label")
    if gen.c_dim == 0:
        if given:
            raise InvalidInput(
                f"generator {gen.name!r} is not class-conditional: leave class_label unset",
                field=field,
            )
        return None
    if not given:
        raise InvalidInput(
            f"generator {gen.name!r} is class-conditional: give a class_label in [0, {gen.c_dim})",
            field=field,
        )
    label = message.class_label
    if not 0 <= label < gen.c_dim:
        raise InvalidInput(f"class_label {label} is outside [0, {gen.c_dim})", field=field)
    return label


def latent_source(src: pb.LatentSource, gen: GeneratorInfo, *, field: str) -> LatentSpec:
    which = src.WhichOneof("source")
    psi, cutoff = truncation(src.truncation, gen, field=f"{field}.truncation")
    if which == "ws":
        ws = check_latent(tensor(src.ws, field=f"{field}.ws"), gen, field=f"{field}.ws")
        return LatentSpec(ws=ws)
    if which is None:
        raise InvalidInput("no latent given (set seed, z or ws)", field=field)
    label = class_label(src, gen, field=f"{field}.class_label")
    if which == "seed":
        z_from_seed(src.seed, gen.z_dim, field=f"{field}.seed")  # range check
        return LatentSpec(seed=src.seed, psi=psi, cutoff=cutoff, class_label=label)
    z = check_z(tensor(src.z, field=f"{field}.z"), gen, field=f"{field}.z")
    return LatentSpec(z=z, psi=psi, cutoff=cutoff, class_label=label)


def _edits(gen: GeneratorInfo, ops: Sequence[pb.EditOp]) -> tuple[editing.Edit, ...]:
    edits = []
    for i, op in enumerate(ops):
        field = f"edits[{i}]"
        if not math.isfinite(op.strength) or abs(op.strength) > MAX_STRENGTH:
            raise InvalidInput(
                f"strength must be within [-{MAX_STRENGTH:g}, {MAX_STRENGTH:g}]",
                field=f"{field}.strength",
            )
        layers = (
            op.layer_start if op.HasField("layer_start") else None,
            op.layer_stop if op.HasField("layer_stop") else None,
        )
        if op.unconditioned and op.condition_on:
            raise InvalidInput(
                "unconditioned skips the default conditioning: leave condition_on empty",
                field=f"{field}.unconditioned",
            )
        # None: the named direction's default condition_on (stylegate.json)
        condition_on = tuple(op.condition_on) if op.condition_on or op.unconditioned else None
        which = op.WhichOneof("direction")
        if which == "name":
            edit = editing.named_edit(
                gen, op.name, op.strength, layers=layers, condition_on=condition_on, field=field
            )
        elif which == "vector":
            vec = tensor(op.vector, field=f"{field}.vector")
            edit = editing.vector_edit(
                gen, vec, op.strength, layers=layers, condition_on=condition_on, field=field
            )
        else:
            raise InvalidInput("set a direction name or a vector", field=field)
        edits.append(edit)
    return tuple(edits)


def _sampling(req: pb.GenerateRequest | pb.BatchGenerateRequest, gen: GeneratorInfo) -> Sampling:
    psi, cutoff = truncation(req.truncation, gen, field="truncation")
    return Sampling(
        psi=psi,
        cutoff=cutoff,
        class_label=class_label(req, gen),
        noise_gain=enum(NOISE_GAIN, req.noise_mode, field="noise_mode"),
    )


# -- resume tokens -------------------------------------------------------------------------


def resume_token(done: int, last_seed: int) -> str:
    """The token of a BatchGenerate chunk: seeds done so far and the last one, so a resume
    can check that the token belongs to the same seeds."""
    return base64.urlsafe_b64encode(f"{done}:{last_seed}".encode()).decode()


def _resume_index(request: pb.BatchGenerateRequest, seeds: Sequence[int]) -> int:
    if request.resume_token:
        try:
            done_s, last_s = (
                base64.urlsafe_b64decode(request.resume_token.encode()).decode().split(":")
            )
            done, last = int(done_s), int(last_s)
        except ValueError:
            raise InvalidInput("malformed resume token", field="resume_token") from None
        if not 0 < done <= len(seeds) or seeds[done - 1] != last:
            raise InvalidInput("resume token does not belong to these seeds", field="resume_token")
        return done
    if request.HasField("start_after"):
        try:
            return seeds.index(request.start_after) + 1
        except ValueError:
            raise InvalidInput(
                f"seed {request.start_after} is not in the request", field="start_after"
            ) from None
    return 0


# -- one function per request --------------------------------------------------------------


def parse_generate(
    req: pb.GenerateRequest, repository: RepositoryInfo, settings: Settings
) -> GeneratePlan:
    gen = repository.generator(req.model)
    n = len(req.seeds) + len(req.z)
    if n == 0:
        raise InvalidInput("give at least one seed or z", field="seeds")
    if n > settings.max_generate:
        raise InvalidInput(
            f"{n} images requested, the limit is {settings.max_generate}", field="seeds"
        )
    z = [z_from_seed(s, gen.z_dim, field=f"seeds[{i}]") for i, s in enumerate(req.seeds)]
    z += [check_z(tensor(t, field=f"z[{i}]"), gen, field=f"z[{i}]") for i, t in enumerate(req.z)]
    return GeneratePlan(
        gen=gen,
        seeds=tuple(req.seeds) + (-1,) * len(req.z),
        z=np.stack(z),
        sampling=_sampling(req, gen),
        output=output_format(req.output),
        return_latents=req.return_latents,
    )


def parse_batch_generate(
    req: pb.BatchGenerateRequest, repository: RepositoryInfo, settings: Settings
) -> BatchPlan:
    gen = repository.generator(req.model)
    which = req.WhichOneof("seeds")
    if which == "range":
        start, stop = req.range.start, req.range.stop
        # checked before len(): a range of 2**64 seeds has no len() in Python
        _within(start, 0, MAX_SEED, field="range.start")
        _within(stop, start + 1, MAX_SEED + 1, field="range.stop")
        seeds: Sequence[int] = range(start, stop)
        field = "range"
    elif which == "list":
        seeds, field = list(req.list.seeds), "list.seeds"
    else:
        raise InvalidInput("set range or list", field="seeds")
    if not seeds:
        raise InvalidInput("no seeds in the request", field=field)
    if len(seeds) > settings.max_batch_seeds:
        raise InvalidInput(
            f"{len(seeds)} seeds, the limit is {settings.max_batch_seeds}", field=field
        )
    if min(seeds) < 0 or max(seeds) > MAX_SEED:
        raise InvalidInput(f"seeds must be in [0, {MAX_SEED}]", field=field)
    first = _resume_index(req, seeds)
    return BatchPlan(
        gen=gen,
        seeds=seeds,
        first=first,
        # the contract: capped by max_batch (a client cannot know the server's setting)
        chunk=min(
            _within(req.chunk_size or DEFAULT_CHUNK, 1, MAX_CHUNK, field="chunk_size"),
            settings.max_batch,
        ),
        sampling=_sampling(req, gen),
        output=output_format(req.output),
        return_latents=req.return_latents,
    )


def parse_invert(
    req: pb.InvertRequest, repository: RepositoryInfo, settings: Settings, *, prefix: str = ""
) -> InvertPlan:
    """``prefix``: the path of this message inside another (``invert.`` in an Edit)."""
    gen = repository.generator(req.model, field=f"{prefix}model")
    if not gen.can_invert:
        raise InvalidInput(
            f"generator {gen.name!r} has no inversion networks (encoder/features/"
            f"inversion_step): invert with {repository.default_generator!r} and render "
            f"with {gen.name!r}",
            field=f"{prefix}model",
        )
    method = enum(METHODS, req.method, field=f"{prefix}method")
    inversion.require_networks(gen, method, field=f"{prefix}method")
    resize = enum(RESIZE, req.resize, field=f"{prefix}resize")
    space = enum(SPACES, req.space, field=f"{prefix}space")
    optimizer = enum(OPTIMIZERS, req.optimizer, field=f"{prefix}optimizer")
    lw = req.loss_weights
    for term in LOSS_TERMS:
        if lw.HasField(term) and abs(getattr(lw, term)) > MAX_LOSS_WEIGHT:
            raise InvalidInput(
                f"weight {getattr(lw, term):g} is over {MAX_LOSS_WEIGHT:g}",
                field=f"{prefix}loss_weights.{term}",
            )
    try:
        opts = inversion.options(
            method,
            steps=req.steps if req.HasField("steps") else None,
            learning_rate=req.learning_rate if req.HasField("learning_rate") else None,
            loss_weights={t: getattr(lw, t) if lw.HasField(t) else None for t in LOSS_TERMS},
            space=space,
            optimizer=optimizer,
            early_stop_tol=req.early_stop_tol if req.HasField("early_stop_tol") else None,
            early_stop_window=(
                req.early_stop_window if req.HasField("early_stop_window") else None
            ),
            max_steps=settings.max_steps,
        )
    except StylegateError as exc:  # options name their own field; add the message's path
        if not prefix or exc.field is None:
            raise
        raise type(exc)(exc.args[0], field=f"{prefix}{exc.field}") from None
    output = output_format(req.output, field=f"{prefix}output")
    # Every cheap check is done; the headers of both images are checked before either is
    # decoded (the expensive part, which the servicer runs off the event loop: parse_off_loop)
    _probe_encoded(req.image, settings, field=f"{prefix}image")
    _probe_encoded(req.mask, settings, field=f"{prefix}mask")
    target_mask = mask(req.mask, gen, settings, resize=resize, field=f"{prefix}mask")
    target = image(req.image, gen, settings, resize=resize, field=f"{prefix}image")
    return InvertPlan(
        gen=gen,
        target=target,
        options=dataclasses.replace(opts, mask=target_mask),
        output=output,
        preview_every=max(req.preview_every, 0),
        progress_every=req.progress_every if req.progress_every > 0 else 1,
    )


def parse_edit(req: pb.EditRequest, repository: RepositoryInfo, settings: Settings) -> EditPlan:
    gen = repository.generator(req.model)
    source_kind = req.WhichOneof("source")
    source: LatentSpec | InvertPlan
    if source_kind == "invert":
        source = parse_invert(req.invert, repository, settings, prefix="invert.")
        inv = source.gen
        if (inv.num_ws, inv.w_dim) != (gen.num_ws, gen.w_dim):
            raise InvalidInput(
                f"generator {inv.name!r} inverts to [{inv.num_ws}, {inv.w_dim}] latents, "
                f"{gen.name!r} renders [{gen.num_ws}, {gen.w_dim}]",
                field="model",
            )
    elif source_kind == "latent":
        source = latent_source(req.latent, gen, field="latent")
    else:
        raise InvalidInput("set latent or invert", field="source")
    return EditPlan(
        gen=gen,
        source=source,
        edits=_edits(gen, req.edits),  # validated before the expensive part
        noise_gain=enum(NOISE_GAIN, req.noise_mode, field="noise_mode"),
        output=output_format(req.output),
        return_latent=req.return_latent,
        include_original=req.include_original,
    )


def parse_style_mix(
    req: pb.StyleMixRequest, repository: RepositoryInfo, settings: Settings
) -> StyleMixPlan:
    gen = repository.generator(req.model)
    a = latent_source(req.a, gen, field="a")
    b = latent_source(req.b, gen, field="b")
    start = req.layer_start if req.HasField("layer_start") else 0
    stop = req.layer_stop if req.HasField("layer_stop") else gen.num_ws // 2
    if not 0 <= start < stop <= gen.num_ws:
        raise InvalidInput(
            f"layer range [{start}, {stop}) is not inside [0, {gen.num_ws})", field="layer_start"
        )
    return StyleMixPlan(
        gen=gen,
        a=a,
        b=b,
        layers=(start, stop),
        noise_gain=enum(NOISE_GAIN, req.noise_mode, field="noise_mode"),
        output=output_format(req.output),
        return_latent=req.return_latent,
    )


def parse_interpolate(
    req: pb.InterpolateRequest, repository: RepositoryInfo, settings: Settings
) -> InterpolatePlan:
    gen = repository.generator(req.model)
    a = latent_source(req.start, gen, field="start")
    b = latent_source(req.end, gen, field="end")
    return InterpolatePlan(
        gen=gen,
        a=a,
        b=b,
        frames=_within(req.frames or DEFAULT_FRAMES, 2, settings.max_generate, field="frames"),
        mode=enum(INTERPOLATION, req.mode, field="mode"),
        noise_gain=enum(NOISE_GAIN, req.noise_mode, field="noise_mode"),
        output=output_format(req.output),
        return_latents=req.return_latents,
    )


def has_encoded_image(req: object) -> bool:
    """Whether ``req`` (an Invert or Edit request) carries encoded image bytes to decode."""
    inv = req.invert if isinstance(req, pb.EditRequest) else req
    return isinstance(inv, pb.InvertRequest) and "data" in (
        inv.image.WhichOneof("content"),
        inv.mask.WhichOneof("content"),
    )


async def parse_off_loop(
    parse: Callable[[T, RepositoryInfo, Settings], object],
    req: T,
    repository: RepositoryInfo,
    settings: Settings,
):
    """``parse(req, repository, settings)``; in the image decoder threads when the request
    carries encoded images (decoding is the one costly part of parsing: never on the event
    loop), inline otherwise."""
    if not has_encoded_image(req):
        return parse(req, repository, settings)
    return await images.in_decoder(functools.partial(parse, req, repository, settings))
