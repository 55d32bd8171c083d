"""Latent-space editing, pure vectorized numpy over W+ batches [N, num_ws, w_dim]:
truncation, named/raw direction edits with layer ranges, conditional editing, style mixing
and interpolation."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from stylegate.service.errors import InvalidInput
from stylegate.service.metadata import GeneratorInfo

# The bound of W / W+ values a request may give or reach by editing: mapping outputs are
# O(1)-O(10); 3e38 overflows the first layer to Inf and the image to NaN.
MAX_LATENT_ABS = 1000.0


@dataclasses.dataclass(frozen=True)
class Edit:
    """``ws[:, start:stop] += amount * vector`` (amount = strength * std for named ones)."""

    vector: np.ndarray  # [w_dim], unit norm
    amount: float
    layers: tuple[int, int]


def broadcast(w: np.ndarray, num_ws: int) -> np.ndarray:
    """[N, w_dim] -> [N, num_ws, w_dim] (a W+ batch from W); W+ passes through."""
    if w.ndim == 3:
        return w
    return np.repeat(w[:, None, :], num_ws, axis=1)


def truncate(
    ws: np.ndarray, w_avg: np.ndarray, *, psi: float = 1.0, cutoff: int | None = None
) -> np.ndarray:
    """Pull layers [0, cutoff) (all when None) towards w_avg: w_avg + psi * (w - w_avg)."""
    if psi == 1.0:
        return ws
    out = ws.copy()
    stop = ws.shape[1] if cutoff is None else cutoff
    out[:, :stop] = w_avg + psi * (ws[:, :stop] - w_avg)
    return out


def orthogonalize(vector: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
    """``vector`` with the span of ``others`` projected out (conditional editing:
    moving along the result leaves the other boundaries' scores unchanged), unit norm."""
    if not others:
        return vector / np.linalg.norm(vector)
    basis, _ = np.linalg.qr(np.stack(others, axis=1).astype(np.float64))  # [w_dim, k], Gram-Schmidt
    v = vector.astype(np.float64)
    v = v - basis @ (basis.T @ v)
    norm = np.linalg.norm(v)
    if norm < 1e-6:
        raise InvalidInput("direction lies in the span of the conditioned directions")
    return (v / norm).astype(np.float32)


def named_edit(
    gen: GeneratorInfo,
    name: str,
    strength: float,
    *,
    layers: tuple[int | None, int | None] = (None, None),
    condition_on: Sequence[str] | None = None,
    field: str = "edits",
) -> Edit:
    """An edit along a metadata direction, ``strength`` in standard deviations of W along it.
    ``layers`` and ``condition_on`` None: the direction's defaults from the export (its
    layer range and the correlated directions it is conditioned on); ``condition_on=()``
    edits along the stored vector unconditioned."""
    d = gen.direction(name, field=f"{field}.name")
    if condition_on is None:
        condition_on = d.condition_on
    others = [
        gen.direction(o, field=f"{field}.condition_on").vector for o in condition_on if o != name
    ]
    try:
        vector = orthogonalize(d.vector, others)
    except InvalidInput as exc:
        raise InvalidInput(str(exc), field=f"{field}.condition_on") from None
    start, stop = _layers(gen, layers, d.layers, field=field)
    return Edit(vector, float(strength) * d.std, (start, stop))


def vector_edit(
    gen: GeneratorInfo,
    vector: np.ndarray,
    strength: float,
    *,
    layers: tuple[int | None, int | None] = (None, None),
    condition_on: Sequence[str] | None = None,
    field: str = "edits",
) -> Edit:
    """An edit along a raw W vector (normalized), ``strength`` in W units; a raw vector has
    no default conditioning (``condition_on`` None is none)."""
    if vector.shape != (gen.w_dim,):
        raise InvalidInput(
            f"vector has shape {list(vector.shape)}, expected [{gen.w_dim}]",
            field=f"{field}.vector",
        )
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0:
        raise InvalidInput("vector is zero or has NaN/Inf values", field=f"{field}.vector")
    others = [gen.direction(o, field=f"{field}.condition_on").vector for o in condition_on or ()]
    try:
        unit = orthogonalize(vector / norm, others)
    except InvalidInput as exc:
        raise InvalidInput(str(exc), field=f"{field}.condition_on") from None
    start, stop = _layers(gen, layers, (0, gen.num_ws), field=field)
    return Edit(unit, float(strength), (start, stop))


def _layers(
    gen: GeneratorInfo,
    layers: tuple[int | None, int | None],
    default: tuple[int, int],
    *,
    field: str,
) -> tuple[int, int]:
    start = default[0] if layers[0] is None else layers[0]
    stop = default[1] if layers[1] is None else layers[1]
    if not 0 <= start < stop <= gen.num_ws:
        raise InvalidInput(
            f"layer range [{start}, {stop}) is not inside [0, {gen.num_ws})",
            field=f"{field}.layer_start",
        )
    return start, stop


def apply_edits(
    ws: np.ndarray, edits: Sequence[Edit], *, max_abs: float = MAX_LATENT_ABS
) -> np.ndarray:
    """Apply ``edits`` in order to a W+ batch [N, num_ws, w_dim]; returns a new array.
    Edits that carry a value past ``max_abs`` (and past the source latent's own largest)
    are the request's fault: InvalidInput naming ``edits``, never an image of Inf/NaN."""
    out = np.array(ws, dtype=np.float32, copy=True)
    for e in edits:
        out[:, e.layers[0] : e.layers[1]] += np.float32(e.amount) * e.vector
    if edits and out.size:
        limit = max(max_abs, float(np.abs(ws).max()))
        if not np.abs(out).max() <= limit:  # NaN compares False too
            raise InvalidInput(
                f"the edits carry the latent past [-{max_abs:g}, {max_abs:g}]", field="edits"
            )
    return out


def style_mix(ws_a: np.ndarray, ws_b: np.ndarray, *, start: int, stop: int) -> np.ndarray:
    """Layers [start, stop) from ``ws_b``, the rest from ``ws_a``."""
    out = np.array(ws_a, dtype=np.float32, copy=True)
    out[..., start:stop, :] = ws_b[..., start:stop, :]
    return out


def interpolate(
    ws_a: np.ndarray,  # [num_ws, w_dim]
    ws_b: np.ndarray,  # [num_ws, w_dim]
    frames: int,
    *,
    mode: str = "lerp",  # lerp | slerp
    center: np.ndarray | None = None,  # slerp pivot (w_avg): W is not centred at 0
) -> np.ndarray:
    """``frames`` latents from a to b, both ends included: [frames, num_ws, w_dim]."""
    t = np.linspace(0.0, 1.0, frames, dtype=np.float64)[:, None, None]  # [F, 1, 1]
    a, b = ws_a.astype(np.float64), ws_b.astype(np.float64)
    if mode == "lerp":
        return (a + t * (b - a)).astype(np.float32)
    c = np.zeros_like(a[0]) if center is None else center.astype(np.float64)
    a, b = a - c, b - c
    na = np.linalg.norm(a, axis=-1, keepdims=True)  # [num_ws, 1]
    nb = np.linalg.norm(b, axis=-1, keepdims=True)
    ua, ub = a / np.maximum(na, 1e-12), b / np.maximum(nb, 1e-12)
    omega = np.arccos(np.clip(np.sum(ua * ub, axis=-1, keepdims=True), -1.0, 1.0))  # [num_ws, 1]
    so = np.sin(omega)
    small = so < 1e-6  # (anti)parallel: fall back to lerp of directions
    safe = np.where(small, 1.0, so)
    wa = np.where(small, 1.0 - t, np.sin((1.0 - t) * omega) / safe)
    wb = np.where(small, t, np.sin(t * omega) / safe)
    direction = wa * ua + wb * ub
    direction /= np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-12)
    radius = na + t * (nb - na)  # norms interpolate linearly
    return (c + radius * direction).astype(np.float32)
