"""Network calls of a generator (mapping, synthesis, encoder, features) and the latent
bookkeeping around them: seeds -> z -> w -> truncated W+ -> images. Knows nothing of gRPC;
its inputs were validated at the request boundary (service/requests.py)."""

from __future__ import annotations

import dataclasses

import numpy as np

from stylegate.service import editing
from stylegate.service.backends.base import Backend, Call
from stylegate.service.errors import GatewayError, InvalidInput
from stylegate.service.metadata import GeneratorInfo
from stylegate.service.signatures import MAX_SEED
from stylegate.service.signatures import z_from_seed as _z_from_seed

__all__ = ["MAX_SEED", "LatentSpec", "z_from_seed"]


@dataclasses.dataclass(frozen=True)
class LatentSpec:
    """One latent to resolve: exactly one of seed, z, ws; truncation and the class label
    apply to seed/z."""

    seed: int | None = None
    z: np.ndarray | None = None  # [z_dim]
    ws: np.ndarray | None = None  # [num_ws, w_dim]
    psi: float = 1.0
    cutoff: int | None = None
    class_label: int | None = None  # class-conditional generators only


def z_from_seed(seed: int, z_dim: int, *, field: str = "seeds") -> np.ndarray:
    """The contract's seed rule (service/signatures.py) with the error naming ``field``."""
    try:
        return _z_from_seed(seed, z_dim)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from None


def finite(out: np.ndarray, network: str) -> np.ndarray:
    """``out`` of ``network`` when every value is finite. The request's numbers were bounded
    at the boundary (service/requests.py), so Inf/NaN here is a fault of the model or the
    gateway, never an image to send: GatewayError (INTERNAL with an error id)."""
    if not np.isfinite(out).all():
        raise GatewayError(f"the {network} network returned NaN or Inf values")
    return out


def one_hot(labels: list[int | None], c_dim: int) -> np.ndarray:
    """Class labels -> the conditional mapping's ``c`` input [N, c_dim]."""
    c = np.zeros((len(labels), c_dim), dtype=np.float32)
    for row, label in enumerate(labels):
        c[row, int(label or 0)] = 1.0
    return c


async def mapping(
    backend: Backend,
    gen: GeneratorInfo,
    z: np.ndarray,  # [N, z_dim]
    *,
    class_labels: list[int | None] | None = None,  # one per row; conditional generators
    call: Call,
) -> np.ndarray:
    """z [N, z_dim] -> w [N, w_dim] (untruncated)."""
    inputs = {"z": z}
    if gen.c_dim > 0:
        inputs["c"] = one_hot(class_labels or [None] * len(z), gen.c_dim)
    out = await backend.infer(
        gen.model("mapping"), inputs, priority=call.priority, timeout=call.timeout()
    )
    return finite(out["w"], "mapping")


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
    return finite(out["image"], "synthesis")


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
    class_label: int | None = None,  # the same class for every row
    call: Call,
) -> np.ndarray:
    """z -> truncated W+ [N, num_ws, w_dim]."""
    w = await mapping(backend, gen, z, class_labels=[class_label] * len(z), call=call)
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
        labels = [specs[i].class_label for i in z_rows]
        w = editing.broadcast(
            await mapping(backend, gen, z, class_labels=labels, call=call), gen.num_ws
        )
        for row, i in enumerate(z_rows):
            out[i] = editing.truncate(
                w[row : row + 1], gen.w_avg, psi=specs[i].psi, cutoff=specs[i].cutoff
            )[0]
    return out
