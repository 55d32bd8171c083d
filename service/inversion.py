"""GAN inversion: find the latent whose image reproduces a target.

Methods (IDInvert, Zhu et al. 2020, and the NVlabs projector as baseline):
- ``encoder``: the domain-guided encoder's W+ as is (one network call, plus one
  evaluation for the quality figures).
- ``optimize``: Adam from w_avg, no encoder and no domain term; W space by default.
- ``in_domain``: the encoder's W+ as start, then Adam on pixel + feature + domain loss,
  the domain term ``mean((w - E(G(w)))^2)`` keeping the latent where the encoder (and so
  the generator's semantics) lives.

Each optimization step is exactly one ``inversion_step`` call (loss, gradient and the
reconstruction together); the optimizer state is numpy here, so concurrent inversions
share batched backend calls. The loop stops at ``steps``, at convergence (early stopping),
at the deadline, or when the caller's task is cancelled (within the step in flight).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np

from stylegate.service import generation, metrics, similarity
from stylegate.service.backends.base import Backend
from stylegate.service.errors import InvalidInput
from stylegate.service.generation import Call
from stylegate.service.metadata import GeneratorInfo

METHODS = ("encoder", "optimize", "in_domain")
SPACES = ("w", "w_plus")


@dataclasses.dataclass(frozen=True)
class LossWeights:
    pixel: float = 1.0  # mean squared pixel error, images in [-1, 1]
    feature: float = 0.5  # channel-normalized feature MSE: O(1) values, like the pixel term
    domain: float = 0.5  # mean((w - E(G(w)))^2), elementwise over W+

    def array(self) -> np.ndarray:
        return np.array([[self.pixel, self.feature, self.domain]], dtype=np.float32)  # [1, 3]


@dataclasses.dataclass(frozen=True)
class MethodDefaults:
    learning_rate: float
    weights: LossWeights
    space: str


# Defaults per method; every field can be overridden per request.
DEFAULTS: dict[str, MethodDefaults] = {
    # lr and domain weight tuned on the shipped 64px models (docs/benchmarks.md): 100 steps on
    # 8 held-out faces gave 26.3 dB at (0.04; 1, 0.5, 2), 26.8 dB at (0.03; 1, 0.5, 0.5)
    "in_domain": MethodDefaults(0.03, LossWeights(1.0, 0.5, 0.5), "w_plus"),
    "optimize": MethodDefaults(0.1, LossWeights(1.0, 0.5, 0.0), "w"),
    "encoder": MethodDefaults(0.0, LossWeights(1.0, 0.5, 0.5), "w_plus"),
}
DEFAULT_STEPS = 100
DEFAULT_EARLY_STOP_TOL = (
    0.004  # relative; on the shipped models 100 -> ~72 steps at -0.01 dB (docs/benchmarks.md)
)
DEFAULT_EARLY_STOP_WINDOW = 10


@dataclasses.dataclass(frozen=True)
class Quality:
    psnr: float  # dB on [0, 1] RGB
    ssim: float
    perceptual_distance: float  # feature MSE, target vs reconstruction
    in_domain_score: float  # ||w - E(G(w))||_2 over W+


@dataclasses.dataclass(frozen=True)
class Progress:
    step: int  # 1-based
    total_steps: int  # the cap; early stopping may end sooner
    loss: float  # weighted total of the latent evaluated at this step
    terms: tuple[float, float, float]  # unweighted (pixel, feature, domain)
    learning_rate: float
    image: np.ndarray  # [3, R, R] reconstruction of that latent (free: the step returns it)


@dataclasses.dataclass(frozen=True)
class Inversion:
    ws: np.ndarray  # [num_ws, w_dim], the best latent evaluated
    reconstruction: np.ndarray  # [3, R, R] = G(ws)
    target: np.ndarray  # [3, R, R]
    loss: float
    terms: tuple[float, float, float]
    quality: Quality
    steps: int  # optimization steps run
    early_stopped: bool
    method: str
    space: str
    seconds: float


def learning_rate_at(
    step: int, total: int, *, peak: float, warmup: float = 0.05, final: float = 0.1
) -> float:
    """Linear warm-up over the first ``warmup`` fraction, then cosine decay from ``peak``
    to ``final * peak`` at the last step."""
    warm = max(1, round(warmup * total))
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return peak * (final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress)))


class Adam:
    """Adam on one numpy array, updated in place."""

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.m = np.zeros(shape, dtype=np.float32)
        self.v = np.zeros(shape, dtype=np.float32)
        self.b1, self.b2, self.eps = betas[0], betas[1], eps
        self.t = 0

    def step(self, x: np.ndarray, grad: np.ndarray, lr: float) -> None:
        self.t += 1
        self.m *= self.b1
        self.m += (1 - self.b1) * grad
        self.v *= self.b2
        self.v += (1 - self.b2) * grad * grad
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        x -= lr * m_hat / (np.sqrt(v_hat) + self.eps)


def converged(best: list[float], *, tol: float, window: int) -> bool:
    """True when the best loss improved by less than ``tol`` (relative) over the last
    ``window`` steps."""
    if tol <= 0 or window <= 0 or len(best) <= window:
        return False
    before, now = best[-window - 1], best[-1]
    return (before - now) <= tol * max(abs(before), 1e-12)


def resolve_options(
    method: str,
    *,
    learning_rate: float | None,
    weights: dict[str, float | None] | None,
    space: str | None,
) -> tuple[float, LossWeights, str]:
    """Fill unset options from the method's defaults and validate them."""
    if method not in METHODS:
        raise InvalidInput(f"unknown method {method!r} (one of {METHODS})", field="method")
    d = DEFAULTS[method]
    lr = d.learning_rate if learning_rate is None else learning_rate
    if not math.isfinite(lr) or lr < 0 or lr > 10:
        raise InvalidInput(f"learning rate {lr} is outside [0, 10]", field="learning_rate")
    given = {k: v for k, v in (weights or {}).items() if v is not None}
    for k, v in given.items():
        if not math.isfinite(v) or v < 0:
            raise InvalidInput(f"weight {v} must be finite and >= 0", field=f"loss_weights.{k}")
    lw = dataclasses.replace(d.weights, **given)
    space = space or d.space
    if space not in SPACES:
        raise InvalidInput(f"unknown latent space {space!r}", field="space")
    return lr, lw, space


async def invert_steps(
    backend: Backend,
    gen: GeneratorInfo,
    target: np.ndarray,  # [3, R, R] in [-1, 1]
    *,
    method: str = "in_domain",
    steps: int = DEFAULT_STEPS,
    learning_rate: float | None = None,  # None: the method's default
    loss_weights: dict[str, float | None] | None = None,  # pixel/feature/domain overrides
    space: str | None = None,  # "w" | "w_plus"; None: the method's default
    mask: np.ndarray | None = None,  # [1, R, R] in [0, 1]; None: everywhere
    early_stop_tol: float = DEFAULT_EARLY_STOP_TOL,  # 0 disables
    early_stop_window: int = DEFAULT_EARLY_STOP_WINDOW,
    warmup: float = 0.05,  # fraction of steps of linear LR warm-up
    call: Call | None = None,  # priority and deadline of the backend calls
) -> AsyncIterator[Progress | Inversion]:
    """Run an inversion, yielding a ``Progress`` per optimization step and finally the
    ``Inversion``. Cancelling the consuming task stops it within the step in flight."""
    started = time.perf_counter()
    call = call or Call()
    lr, weights, space = resolve_options(
        method, learning_rate=learning_rate, weights=loss_weights, space=space
    )
    step_model = gen.model("inversion_step")
    if method == "encoder":
        steps = 0
    r = gen.resolution
    target_b = np.ascontiguousarray(target[None], dtype=np.float32)  # [1, 3, R, R]
    mask_b = (
        np.ones((1, 1, r, r), np.float32)
        if mask is None
        else np.ascontiguousarray(mask[None], dtype=np.float32)
    )
    weights_b = weights.array()
    target_features = await generation.features(backend, gen, target_b, call=call)

    if method == "optimize":
        start = np.broadcast_to(gen.w_avg, (gen.num_ws, gen.w_dim))
    else:
        start = (await generation.encoder(backend, gen, target_b, call=call))[0]
    # The optimized variable: one w (broadcast to every layer) or the whole W+.
    x = np.array(start.mean(axis=0) if space == "w" else start, dtype=np.float32)
    adam = Adam(x.shape)

    best: tuple[float, np.ndarray, np.ndarray, np.ndarray] | None = None  # loss, terms, ws, image
    best_history: list[float] = []
    early_stopped = False
    lr_t = 0.0
    evaluations = max(steps, 0) + 1  # step t evaluates the latent after t updates
    run = 0
    for t in range(evaluations):
        ws = np.broadcast_to(x, (gen.num_ws, gen.w_dim)) if space == "w" else x
        out = await backend.infer(
            step_model,
            {
                "ws": np.ascontiguousarray(ws[None]),
                "target": target_b,
                "target_features": target_features,
                "loss_weights": weights_b,
                "mask": mask_b,
            },
            priority=call.priority,
            timeout=call.timeout(),
        )
        loss = float(out["loss"].reshape(-1)[0])
        terms = out["loss_terms"].reshape(-1)
        grad = out["grad"][0]  # [num_ws, w_dim]
        if not math.isfinite(loss) or not np.isfinite(grad).all():
            if best is None:
                raise InvalidInput("the loss is not finite for this image", field="image")
            early_stopped = True
            break
        if best is None or loss < best[0]:
            best = (loss, terms, np.array(ws), out["image"][0])
        best_history.append(best[0])
        if t > 0:
            run = t
            metrics.INVERSION_STEPS.labels(method).inc()
            yield Progress(
                step=t,
                total_steps=steps,
                loss=loss,
                terms=tuple(float(v) for v in terms),
                learning_rate=lr_t,
                image=out["image"][0],
            )
        if t == evaluations - 1:
            break
        if converged(best_history, tol=early_stop_tol, window=early_stop_window):
            early_stopped = True
            break
        lr_t = learning_rate_at(t, steps, peak=lr, warmup=warmup)
        adam.step(x, grad.sum(axis=0) if space == "w" else grad, lr_t)

    assert best is not None
    loss, terms, ws, image = best
    result = Inversion(
        ws=ws.astype(np.float32),
        reconstruction=image,
        target=target,
        loss=loss,
        terms=(float(terms[0]), float(terms[1]), float(terms[2])),
        quality=Quality(
            psnr=similarity.psnr(image, target),
            ssim=similarity.ssim(image, target),
            perceptual_distance=float(terms[1]),
            in_domain_score=math.sqrt(max(float(terms[2]), 0.0) * gen.num_ws * gen.w_dim),
        ),
        steps=run,
        early_stopped=early_stopped,
        method=method,
        space=space,
        seconds=time.perf_counter() - started,
    )
    metrics.INVERSION_STEPS_PER_RUN.labels(method).observe(run)
    metrics.INVERSION_FINAL_LOSS.labels(method).observe(loss)
    metrics.INVERSION_PSNR.labels(method).observe(result.quality.psnr)
    yield result


async def invert(
    backend: Backend,
    gen: GeneratorInfo,
    target: np.ndarray,
    *,
    on_progress: Callable[[Progress], Awaitable[None] | None] | None = None,
    **options,
) -> Inversion:
    """``invert_steps`` run to the end; ``on_progress`` sees every step. Options as there."""
    async for event in invert_steps(backend, gen, target, **options):
        if isinstance(event, Inversion):
            return event
        if on_progress is not None:
            maybe = on_progress(event)
            if maybe is not None:
                await maybe
    raise AssertionError("invert_steps ended without a result")
