"""Network calls of a generator (mapping, synthesis, encoder, features) and the latent
bookkeeping around them: seeds -> z -> w -> truncated W+ -> images. Knows nothing of gRPC."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from stylegate.service import editing
from stylegate.service.backends.base import Backend, Priority
from stylegate.service.errors import DeadlineExceeded, InvalidInput
from stylegate.service.metadata import GeneratorInfo

MAX_SEED = 2**32 - 1  # numpy RandomState seeds


@dataclasses.dataclass(frozen=True)
class Call:
    """How backend calls of one request are made: priority and absolute deadline."""

    priority: Priority = Priority.INTERACTIVE
    deadline: float | None = None  # time.monotonic() value

    def timeout(self) -> float | None:
        """Seconds left; DeadlineExceeded when none are."""
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the request deadline passed")
        return left


@dataclasses.dataclass(frozen=True)
class LatentSpec:
    """One latent to resolve: exactly one of seed, z, ws; truncation applies to seed/z."""

    seed: int | None = None
    z: np.ndarray | None = None  # [z_dim]
    ws: np.ndarray | None = None  # [w_dim] or [num_ws, w_dim]
    psi: float = 1.0
    cutoff: int | None = None


def z_from_seed(seed: int, z_dim: int, *, field: str = "seeds") -> np.ndarray:
    """The latent of a seed; the same rule as gan/generate.py so seeds agree everywhere."""
    if not 0 <= seed <= MAX_SEED:
        raise InvalidInput(f"seed {seed} is outside [0, {MAX_SEED}]", field=field)
    return np.random.RandomState(seed).standard_normal(z_dim).astype(np.float32)


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
    if not np.isfinite(x).all():
        raise InvalidInput("latent has NaN or Inf values", field=field)
    return np.array(x, dtype=np.float32)


def check_z(z: np.ndarray, gen: GeneratorInfo, *, field: str) -> np.ndarray:
    if z.shape != (gen.z_dim,):
        raise InvalidInput(f"z has shape {list(z.shape)}, expected [{gen.z_dim}]", field=field)
    if not np.isfinite(z).all():
        raise InvalidInput("z has NaN or Inf values", field=field)
    return z.astype(np.float32)


def check_truncation(psi: float, cutoff: int | None, gen: GeneratorInfo, *, field: str) -> None:
    if not np.isfinite(psi) or not -2.0 <= psi <= 2.0:
        raise InvalidInput(f"psi {psi} is outside [-2, 2]", field=f"{field}.psi")
    if cutoff is not None and not 0 <= cutoff <= gen.num_ws:
        raise InvalidInput(f"cutoff {cutoff} is outside [0, {gen.num_ws}]", field=f"{field}.cutoff")


async def mapping(backend: Backend, gen: GeneratorInfo, z: np.ndarray, *, call: Call) -> np.ndarray:
    """z [N, z_dim] -> w [N, w_dim] (untruncated)."""
    out = await backend.infer(
        gen.model("mapping"), {"z": z}, priority=call.priority, timeout=call.timeout()
    )
    return out["w"]


async def synthesis(
    backend: Backend, gen: GeneratorInfo, ws: np.ndarray, *, noise_gain: float = 1.0, call: Call
) -> np.ndarray:
    """W+ [N, num_ws, w_dim] -> images [N, 3, R, R] in about [-1, 1]."""
    gain = np.full((ws.shape[0], 1), noise_gain, dtype=np.float32)
    out = await backend.infer(
        gen.model("synthesis"),
        {"ws": np.ascontiguousarray(ws, dtype=np.float32), "noise_gain": gain},
        priority=call.priority,
        timeout=call.timeout(),
    )
    return out["image"]


async def encoder(
    backend: Backend, gen: GeneratorInfo, images: np.ndarray, *, call: Call
) -> np.ndarray:
    out = await backend.infer(
        gen.model("encoder"), {"image": images}, priority=call.priority, timeout=call.timeout()
    )
    return out["ws"]


async def features(
    backend: Backend, gen: GeneratorInfo, images: np.ndarray, *, call: Call
) -> np.ndarray:
    out = await backend.infer(
        gen.model("features"), {"image": images}, priority=call.priority, timeout=call.timeout()
    )
    return out["features"]


async def seeds_to_ws(
    backend: Backend,
    gen: GeneratorInfo,
    z: np.ndarray,  # [N, z_dim]
    *,
    psi: float = 1.0,
    cutoff: int | None = None,
    call: Call,
) -> np.ndarray:
    """z -> truncated W+ [N, num_ws, w_dim]."""
    w = await mapping(backend, gen, z, call=call)
    ws = editing.broadcast(w, gen.num_ws)
    return editing.truncate(ws, gen.w_avg, psi=psi, cutoff=cutoff)


async def resolve_latents(
    backend: Backend, gen: GeneratorInfo, specs: list[LatentSpec], *, call: Call
) -> np.ndarray:
    """LatentSpecs -> W+ [N, num_ws, w_dim]; all seeds and z go through one mapping call."""
    out = np.empty((len(specs), gen.num_ws, gen.w_dim), dtype=np.float32)
    for i, spec in enumerate(specs):
        if spec.ws is not None:
            out[i] = spec.ws
    z_rows = [i for i, s in enumerate(specs) if s.ws is None]
    if z_rows:
        z = np.stack(
            [
                specs[i].z if specs[i].z is not None else z_from_seed(specs[i].seed or 0, gen.z_dim)
                for i in z_rows
            ]
        )
        w = editing.broadcast(await mapping(backend, gen, z, call=call), gen.num_ws)
        for row, i in enumerate(z_rows):
            out[i] = editing.truncate(
                w[row : row + 1], gen.w_avg, psi=specs[i].psi, cutoff=specs[i].cutoff
            )[0]
    return out
