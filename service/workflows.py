"""The work of each RPC on validated plans (service/plans.py): resolve latents, invert,
edit, render. Pure domain code over a backend; the servicer only parses, calls one of
these and converts the result back."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence

import numpy as np

from stylegate.service import editing, generation, inversion, metrics
from stylegate.service.backends.base import Backend, Call, Priority
from stylegate.service.metadata import GeneratorInfo
from stylegate.service.plans import (
    BatchPlan,
    EditPlan,
    GeneratePlan,
    InterpolatePlan,
    InvertPlan,
    Sampling,
    StyleMixPlan,
)


async def render(
    backend: Backend,
    gen: GeneratorInfo,
    ws: np.ndarray,  # [N, num_ws, w_dim]
    *,
    noise_gain: float,
    call: Call,
    method: str,  # the RPC, for IMAGES_GENERATED
    chunk: int | None = None,  # bulk calls: at most this many images per backend call
) -> np.ndarray:
    """W+ -> images [N, 3, R, R], counted."""
    parts = []
    for lo in _slices(len(ws), call, chunk):
        part = ws[lo : lo + (chunk or len(ws))]
        parts.append(
            await generation.synthesis(backend, gen, part, noise_gain=noise_gain, call=call)
        )
    out = parts[0] if len(parts) == 1 else np.concatenate(parts)
    metrics.IMAGES_GENERATED.labels(method).inc(len(out))
    return out


def _slices(n: int, call: Call, chunk: int | None) -> range:
    """Start of each backend call's share of ``n`` samples: bulk work goes in pieces of
    ``chunk`` so interactive calls never wait behind one long run (the backend runs them
    between the pieces); interactive work in one call."""
    if call.priority is Priority.BULK and chunk and n > chunk:
        return range(0, n, chunk)
    return range(0, max(n, 1), max(n, 1))


async def _sample(
    backend: Backend,
    gen: GeneratorInfo,
    z: np.ndarray,  # [N, z_dim]
    sampling: Sampling,
    *,
    call: Call,
    method: str,
    chunk: int | None = None,  # bulk calls: at most this many images per backend call
) -> tuple[np.ndarray, np.ndarray]:
    """z -> (W+ [N, num_ws, w_dim], images [N, 3, R, R])."""
    parts = []
    for lo in _slices(len(z), call, chunk):
        part = z[lo : lo + (chunk or len(z))]
        parts.append(
            await generation.seeds_to_ws(
                backend,
                gen,
                part,
                psi=sampling.psi,
                cutoff=sampling.cutoff,
                class_label=sampling.class_label,
                call=call,
            )
        )
    ws = parts[0] if len(parts) == 1 else np.concatenate(parts)
    imgs = await render(
        backend, gen, ws, noise_gain=sampling.noise_gain, call=call, method=method, chunk=chunk
    )
    return ws, imgs


async def generate(
    backend: Backend, plan: GeneratePlan, *, call: Call, chunk: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(W+ [N, num_ws, w_dim], images [N, 3, R, R]) of the plan's seeds and z; a bulk
    ``call`` renders ``chunk`` images per backend call."""
    return await _sample(
        backend, plan.gen, plan.z, plan.sampling, call=call, method="Generate", chunk=chunk
    )


@dataclasses.dataclass(frozen=True)
class Chunk:
    seeds: Sequence[int]
    ws: np.ndarray  # [n, num_ws, w_dim]
    images: np.ndarray  # [n, 3, R, R]
    done: int  # seeds finished so far, resumed ones included


async def batch_generate(
    backend: Backend, plan: BatchPlan, *, call: Call, run_max: int | None = None
) -> AsyncIterator[Chunk]:
    """The plan's seeds from ``plan.first`` on, ``plan.chunk`` at a time (in backend calls
    of at most ``run_max`` images when the call is bulk)."""
    gen, seeds = plan.gen, plan.seeds
    for lo in range(plan.first, len(seeds), plan.chunk):
        part = [seeds[i] for i in range(lo, min(lo + plan.chunk, len(seeds)))]
        z = np.stack([generation.z_from_seed(s, gen.z_dim, field="seeds") for s in part])
        ws, imgs = await _sample(
            backend, gen, z, plan.sampling, call=call, method="BatchGenerate", chunk=run_max
        )
        yield Chunk(seeds=part, ws=ws, images=imgs, done=lo + len(part))


@dataclasses.dataclass(frozen=True)
class Edited:
    ws: np.ndarray  # [num_ws, w_dim], edited
    source_ws: np.ndarray  # [num_ws, w_dim], before editing
    image: np.ndarray  # [3, R, R]
    original: np.ndarray | None  # [3, R, R] of source_ws when asked for


async def edit(backend: Backend, plan: EditPlan, *, call: Call, slots: inversion.Slots) -> Edited:
    """Resolve (or invert) the source latent, apply the edits, render."""
    gen = plan.gen
    if isinstance(plan.source, InvertPlan):
        inv = plan.source
        with slots.take():
            result = await inversion.invert(backend, inv.gen, inv.target, inv.options, call=call)
        ws = result.ws
    else:
        ws = (await generation.resolve_latents(backend, gen, [plan.source], call=call))[0]
    edited = editing.apply_edits(ws[None], plan.edits)[0]
    batch = np.stack([edited] + ([ws] if plan.include_original else []))
    imgs = await render(backend, gen, batch, noise_gain=plan.noise_gain, call=call, method="Edit")
    return Edited(
        ws=edited,
        source_ws=ws,
        image=imgs[0],
        original=imgs[1] if plan.include_original else None,
    )


async def style_mix(
    backend: Backend, plan: StyleMixPlan, *, call: Call
) -> tuple[np.ndarray, np.ndarray]:
    """(mixed W+ [num_ws, w_dim], its image [3, R, R])."""
    gen = plan.gen
    ws_a, ws_b = await generation.resolve_latents(backend, gen, [plan.a, plan.b], call=call)
    mixed = editing.style_mix(ws_a, ws_b, start=plan.layers[0], stop=plan.layers[1])
    img = await render(
        backend, gen, mixed[None], noise_gain=plan.noise_gain, call=call, method="StyleMix"
    )
    return mixed, img[0]


async def interpolate(
    backend: Backend, plan: InterpolatePlan, *, call: Call, chunk: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(path W+ [frames, num_ws, w_dim], frames [frames, 3, R, R])."""
    gen = plan.gen
    ws_a, ws_b = await generation.resolve_latents(backend, gen, [plan.a, plan.b], call=call)
    path = editing.interpolate(ws_a, ws_b, plan.frames, mode=plan.mode, center=gen.w_avg)
    imgs = await render(
        backend, gen, path, noise_gain=plan.noise_gain, call=call, method="Interpolate", chunk=chunk
    )
    return path, imgs
