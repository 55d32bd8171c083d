"""GAN inversion: find the latent whose image reproduces a target.

Methods (IDInvert, Zhu et al. 2020, and the NVlabs projector as baseline):
- ``encoder``: the domain-guided encoder's W+ as is (one network call, plus one
  evaluation for the quality figures).
- ``optimize``: Adam from w_avg, no encoder and no domain term; W space by default.
- ``in_domain``: the encoder's W+ as start, then L-BFGS on pixel + feature + domain loss,
  the domain term ``mean((w - E(G(w)))^2)`` keeping the latent where the encoder (and so
  the generator's semantics) lives.

Optimizers: ``adam`` (the reference scripts': warm-up and cosine decay of the learning
rate) or ``lbfgs`` (``service/lbfgs.py``), the default of ``in_domain``: on the shipped
models 45 L-BFGS evaluations reach a higher PSNR than 100 Adam steps (docs/design.md,
"Inversion by L-BFGS"). Each optimization step is exactly one ``inversion_step`` call
(loss, gradient and the reconstruction together; with L-BFGS a step may be a shortened
line-search trial); the optimizer state is numpy here, so concurrent inversions share
batched backend calls. The loop stops at ``steps``, at convergence (early stopping),
at the deadline, or when the caller's task is cancelled (within the step in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping

import numpy as np

from stylegate.service import generation, metrics, similarity
from stylegate.service.backends.base import Backend, Call
from stylegate.service.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidInput,
    OverCapacity,
    StylegateError,
)
from stylegate.service.lbfgs import LBFGS
from stylegate.service.metadata import METHOD_NETWORKS, GeneratorInfo
from stylegate.service.signatures import LOSS_TERMS

METHODS = tuple(METHOD_NETWORKS)  # encoder, optimize, in_domain
SPACES = ("w", "w_plus")
OPTIMIZERS = ("adam", "lbfgs")

LossTerms = Mapping[str, float]  # loss term name (signatures.LOSS_TERMS) -> value

# Loss weights by term; a term a method does not list weighs 0, so a new term in the
# inversion step is off until a method (or a request) gives it a weight.
#   pixel: mean squared pixel error, images in [-1, 1]
#   feature: channel-normalized feature MSE: O(1) values, like the pixel term
#   domain: mean((w - E(G(w)))^2), elementwise over W+
METHOD_WEIGHTS: dict[str, dict[str, float]] = {
    # lr and domain weight tuned on the shipped 64px models (docs/benchmarks.md): 100 steps on
    # 8 held-out faces gave 26.3 dB at (0.04; 1, 0.5, 2), 26.8 dB at (0.03; 1, 0.5, 0.5)
    "in_domain": {"pixel": 1.0, "feature": 0.5, "domain": 0.5},
    "optimize": {"pixel": 1.0, "feature": 0.5, "domain": 0.0},
    "encoder": {"pixel": 1.0, "feature": 0.5, "domain": 0.5},
}


def _weights(given: Mapping[str, float]) -> Mapping[str, float]:
    """Every term of LOSS_TERMS, in that order, read-only."""
    return types.MappingProxyType({t: float(given.get(t, 0.0)) for t in LOSS_TERMS})


@dataclasses.dataclass(frozen=True)
class MethodDefaults:
    learning_rate: float  # Adam's peak learning rate (L-BFGS takes LBFGS_STEP)
    weights: Mapping[str, float]  # term -> weight, every term of LOSS_TERMS
    space: str
    optimizer: str


# Defaults per method; every field can be overridden per request.
DEFAULTS: dict[str, MethodDefaults] = {
    "in_domain": MethodDefaults(0.03, _weights(METHOD_WEIGHTS["in_domain"]), "w_plus", "lbfgs"),
    "optimize": MethodDefaults(0.1, _weights(METHOD_WEIGHTS["optimize"]), "w", "adam"),
    "encoder": MethodDefaults(0.0, _weights(METHOD_WEIGHTS["encoder"]), "w_plus", "adam"),
}
# Steps when a request gives none, by optimizer: on the shipped models (64 held-out renders)
# 45 L-BFGS evaluations end 0.10 dB above 100 Adam steps, 40 only 0.02 (docs/design.md).
DEFAULT_STEPS = {"adam": 100, "lbfgs": 45}
# L-BFGS's first trial step along each quasi-Newton direction (its "learning rate"): 1 is
# the step the curvature estimate asks for.
LBFGS_STEP = 1.0
# Curvature pairs kept: every pair of a default run (16 held-out renders, 40 evaluations:
# history 10 / 20 / 50 end at 28.94 / 29.03 / 29.12 dB; docs/design.md). A pair of a 10 x 128
# W+ is 20 kB (float64): 1 MB per inversion.
LBFGS_HISTORY = 50
# Methods that add a decaying noise to w (fraction of the steps it lasts): ``optimize``
# starts from w_avg, where the noise helps it leave the average face (docs/design.md,
# "Reference behaviour of the anchors").
NOISE_RAMP = {"optimize": 0.75}
# relative; on the shipped models 100 -> ~72 steps at -0.01 dB (docs/benchmarks.md)
DEFAULT_EARLY_STOP_TOL = 0.004
DEFAULT_EARLY_STOP_WINDOW = 10
MAX_EARLY_STOP_WINDOW = 1000


@dataclasses.dataclass(frozen=True)
class InversionOptions:
    """Every option of one inversion, resolved and validated (``options()`` builds it):
    the core never fills in defaults again."""

    method: str  # encoder | optimize | in_domain
    steps: int  # the cap; 0 for the encoder method
    learning_rate: float  # Adam's peak learning rate; L-BFGS's first trial step
    loss_weights: Mapping[str, float]  # term -> weight, every term of LOSS_TERMS
    space: str  # w | w_plus
    optimizer: str = "adam"  # adam | lbfgs
    mask: np.ndarray | None = None  # [1, R, R] in [0, 1]; None: everywhere
    early_stop_tol: float = DEFAULT_EARLY_STOP_TOL  # relative; 0 disables
    early_stop_window: int = DEFAULT_EARLY_STOP_WINDOW
    warmup: float = 0.05  # fraction of steps of linear LR warm-up
    # Noise on the evaluated latent, ``initial_noise * w_std`` at the start and decaying
    # quadratically to 0 over the first ``noise_ramp`` fraction of the steps (the NVlabs
    # projector's way out of a poor start); 0 disables it. Adam only: L-BFGS compares the
    # losses of its points, which noise would make meaningless.
    noise_ramp: float = 0.0
    initial_noise: float = 0.05

    def noise_at(self, step: int, w_std: float) -> float:
        """Standard deviation of the noise added to the latent evaluated at ``step``."""
        if self.noise_ramp <= 0 or self.steps <= 0 or w_std <= 0:
            return 0.0
        left = max(0.0, 1.0 - step / (self.noise_ramp * self.steps))
        return w_std * self.initial_noise * left * left

    def weights_array(self) -> np.ndarray:
        """The step's ``loss_weights`` input [1, len(LOSS_TERMS)], in LOSS_TERMS order."""
        return np.array([[self.loss_weights[t] for t in LOSS_TERMS]], dtype=np.float32)


def options(
    method: str = "in_domain",
    *,
    steps: int | None = None,  # None: DEFAULT_STEPS of the optimizer
    learning_rate: float | None = None,  # None: the method's default (L-BFGS: LBFGS_STEP)
    loss_weights: Mapping[str, float | None] | None = None,  # overrides by term name
    space: str | None = None,  # "w" | "w_plus"; None: the method's default
    optimizer: str | None = None,  # "adam" | "lbfgs"; None: the method's default
    mask: np.ndarray | None = None,
    early_stop_tol: float | None = None,  # None: DEFAULT_EARLY_STOP_TOL
    early_stop_window: int | None = None,  # None: DEFAULT_EARLY_STOP_WINDOW
    max_steps: int | None = None,  # the server's cap on steps; None: no cap
) -> InversionOptions:
    """Fill unset options from the method's defaults and validate them; errors name the
    option (``loss_weights.domain``)."""
    if method not in METHODS:
        raise InvalidInput(f"unknown method {method!r} (one of {METHODS})", field="method")
    d = DEFAULTS[method]
    optimizer = optimizer or d.optimizer
    if optimizer not in OPTIMIZERS:
        raise InvalidInput(
            f"unknown optimizer {optimizer!r} (one of {OPTIMIZERS})", field="optimizer"
        )
    if steps is None:  # the default, within the server's cap
        steps = DEFAULT_STEPS[optimizer]
        steps = steps if max_steps is None else min(steps, max(max_steps, 0))
    if steps < 0 or (max_steps is not None and steps > max_steps):
        raise InvalidInput(f"steps {steps} is outside [0, {max_steps}]", field="steps")
    default_lr = LBFGS_STEP if optimizer == "lbfgs" else d.learning_rate
    lr = default_lr if learning_rate is None else learning_rate
    if not math.isfinite(lr) or lr < 0 or lr > 10:
        raise InvalidInput(f"learning rate {lr} is outside [0, 10]", field="learning_rate")
    given = {k: v for k, v in (loss_weights or {}).items() if v is not None}
    for k, v in given.items():
        if k not in LOSS_TERMS:
            raise InvalidInput(
                f"unknown loss term (one of {LOSS_TERMS})", field=f"loss_weights.{k}"
            )
        if not math.isfinite(v) or v < 0:
            raise InvalidInput(f"weight {v} must be finite and >= 0", field=f"loss_weights.{k}")
    space = space or d.space
    if space not in SPACES:
        raise InvalidInput(f"unknown latent space {space!r}", field="space")
    tol = DEFAULT_EARLY_STOP_TOL if early_stop_tol is None else early_stop_tol
    if not math.isfinite(tol) or tol < 0:
        raise InvalidInput(f"early_stop_tol {tol} must be >= 0", field="early_stop_tol")
    window = DEFAULT_EARLY_STOP_WINDOW if early_stop_window is None else early_stop_window
    if not 1 <= window <= MAX_EARLY_STOP_WINDOW:
        raise InvalidInput(
            f"early_stop_window {window} is outside [1, {MAX_EARLY_STOP_WINDOW}]",
            field="early_stop_window",
        )
    return InversionOptions(
        method=method,
        steps=0 if method == "encoder" else steps,
        learning_rate=lr,
        loss_weights=_weights({**d.weights, **given}),
        space=space,
        optimizer=optimizer,
        mask=mask,
        early_stop_tol=tol,
        early_stop_window=window,
        noise_ramp=NOISE_RAMP.get(method, 0.0) if optimizer == "adam" else 0.0,
    )


def require_networks(gen: GeneratorInfo, method: str, *, field: str = "method") -> None:
    """FailedPrecondition naming the fix when ``gen`` lacks a network ``method`` needs."""
    missing = gen.missing_networks(method)
    if not missing:
        return
    if "encoder" in missing:
        fix = f"train one with `stylegate train encoder --model {gen.name}`"
    else:
        fix = "export them with the generator (`stylegate export`)"
    others = [m for m in gen.inversion_methods if m != method]
    alternative = f", or invert with method {' / '.join(others)}" if others else ""
    raise FailedPrecondition(
        f"generator {gen.name!r} has no {' / '.join(missing)} network, which method "
        f"{method!r} needs: {fix}{alternative}",
        field=field,
    )


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
    terms: LossTerms  # unweighted, by name
    learning_rate: float
    image: np.ndarray  # [3, R, R] reconstruction of that latent (free: the step returns it)


@dataclasses.dataclass(frozen=True)
class Inversion:
    ws: np.ndarray  # [num_ws, w_dim], the best latent evaluated
    reconstruction: np.ndarray  # [3, R, R] = G(ws)
    target: np.ndarray  # [3, R, R]
    loss: float
    terms: LossTerms  # unweighted, by name
    quality: Quality
    steps: int  # optimization steps run
    early_stopped: bool
    method: str
    space: str
    optimizer: str  # "" for the encoder method
    seconds: float


class Slots:
    """At most ``limit`` inversions at once (each holds a step in the backend's batches);
    OverCapacity beyond."""

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0

    @contextlib.contextmanager
    def take(self) -> Iterator[None]:
        if self.count >= self.limit:
            raise OverCapacity(f"{self.count} inversions are running, the limit is {self.limit}")
        self.count += 1
        metrics.INVERSIONS_IN_FLIGHT.inc()
        try:
            yield
        finally:
            self.count -= 1
            metrics.INVERSIONS_IN_FLIGHT.dec()


def outcome_of(exc: BaseException | None) -> str:
    """The ``outcome`` label of INVERSIONS for how an inversion ended."""
    if exc is None:
        return "ok"
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return "cancelled"
    if isinstance(exc, (DeadlineExceeded, asyncio.TimeoutError)):
        return "deadline"
    if isinstance(exc, InvalidInput):
        return "invalid"
    if isinstance(exc, StylegateError):
        return type(exc).__name__.lower()  # backendunavailable, overcapacity, ...
    return "error"


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


async def invert_steps(
    backend: Backend,
    gen: GeneratorInfo,
    target: np.ndarray,  # [3, R, R] in [-1, 1]
    opts: InversionOptions,
    *,
    call: Call | None = None,  # priority and deadline of the backend calls
) -> AsyncIterator[Progress | Inversion]:
    """Run an inversion, yielding a ``Progress`` per optimization step and finally the
    ``Inversion``. Cancelling the consuming task stops it within the step in flight. Every
    run counts once in ``INVERSIONS{method, outcome}``, however it ends."""
    finished = False  # counted as ok before the result goes out (the caller may stop then)
    try:
        async for event in _run(backend, gen, target, opts, call=call or Call()):
            if isinstance(event, Inversion):
                finished = True
                metrics.INVERSIONS.labels(opts.method, outcome_of(None)).inc()
            yield event
    except BaseException as exc:  # counted, then re-raised as is
        if not finished:
            metrics.INVERSIONS.labels(opts.method, outcome_of(exc)).inc()
        raise


async def _run(
    backend: Backend, gen: GeneratorInfo, target: np.ndarray, opts: InversionOptions, *, call: Call
) -> AsyncIterator[Progress | Inversion]:
    started = time.perf_counter()
    method, space, steps = opts.method, opts.space, opts.steps
    step_model = gen.model("inversion_step")
    r = gen.resolution
    target_b = np.ascontiguousarray(target[None], dtype=np.float32)  # [1, 3, R, R]
    mask_b = (
        np.ones((1, 1, r, r), np.float32)
        if opts.mask is None
        else np.ascontiguousarray(opts.mask[None], dtype=np.float32)
    )
    weights_b = opts.weights_array()
    target_features = await generation.features(backend, gen, target_b, call=call)

    if method == "optimize":
        start = np.broadcast_to(gen.w_avg, (gen.num_ws, gen.w_dim))
    else:
        start = (await generation.encoder(backend, gen, target_b, call=call))[0]
    # The optimized variable: one w (broadcast to every layer) or the whole W+.
    x = np.array(start.mean(axis=0) if space == "w" else start, dtype=np.float32)
    adam = Adam(x.shape) if opts.optimizer == "adam" else None
    lbfgs = LBFGS(x, history=LBFGS_HISTORY, step=opts.learning_rate) if adam is None else None

    best: tuple[float, LossTerms, np.ndarray, np.ndarray] | None = None  # loss, terms, ws, image
    best_history: list[float] = []
    early_stopped = False
    lr_t = 0.0
    evaluations = max(steps, 0) + 1  # step t evaluates the latent after t updates
    run = 0
    noise = np.random.default_rng(0)  # the same request gives the same result
    for t in range(evaluations):
        sigma = opts.noise_at(t, gen.w_std)
        point = x + sigma * noise.standard_normal(x.shape, dtype=np.float32) if sigma else x
        ws = np.broadcast_to(point, (gen.num_ws, gen.w_dim)) if space == "w" else point
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
        terms = dict(zip(LOSS_TERMS, (float(v) for v in out["loss_terms"].reshape(-1))))
        grad = out["grad"][0]  # [num_ws, w_dim]
        if not math.isfinite(loss) or not np.isfinite(grad).all():
            if best is None:
                raise InvalidInput("the loss is not finite for this image", field="image")
            if lbfgs is None:
                early_stopped = True  # Adam diverged: the best latent so far is the result
                break
            if t == evaluations - 1:
                break
            # An L-BFGS trial overshot into overflow: a shorter step along the same
            # direction is next (this evaluation counts against the steps, unreported).
            x = lbfgs.propose(math.inf, np.zeros_like(x))
            continue
        # A noisy evaluation is not a candidate result (the noise is gone by the last step).
        if not sigma:
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
                terms=terms,
                learning_rate=lr_t,
                image=out["image"][0],
            )
        if t == evaluations - 1:
            break
        if converged(best_history, tol=opts.early_stop_tol, window=opts.early_stop_window):
            early_stopped = True
            break
        g = grad.sum(axis=0) if space == "w" else grad
        if lbfgs is not None:
            x = lbfgs.propose(loss, g)
            lr_t = lbfgs.last_step
        else:
            lr_t = learning_rate_at(t, steps, peak=opts.learning_rate, warmup=opts.warmup)
            adam.step(x, g, lr_t)

    assert best is not None
    loss, terms, ws, image = best
    result = Inversion(
        ws=ws.astype(np.float32),
        reconstruction=image,
        target=target,
        loss=loss,
        terms=types.MappingProxyType(terms),
        quality=Quality(
            psnr=similarity.psnr(image, target),
            ssim=similarity.ssim(image, target),
            perceptual_distance=terms["feature"],
            in_domain_score=math.sqrt(max(terms["domain"], 0.0) * gen.num_ws * gen.w_dim),
        ),
        steps=run,
        early_stopped=early_stopped,
        method=method,
        space=space,
        optimizer=opts.optimizer if method != "encoder" else "",  # nothing was optimized
        seconds=time.perf_counter() - started,
    )
    metrics.INVERSION_STEPS_PER_RUN.labels(method).observe(run)
    metrics.INVERSION_FINAL_LOSS.labels(method).observe(loss)
    for term, value in terms.items():
        metrics.INVERSION_FINAL_TERMS.labels(method, term).observe(value)
    metrics.INVERSION_PSNR.labels(method).observe(result.quality.psnr)
    yield result


async def invert(
    backend: Backend,
    gen: GeneratorInfo,
    target: np.ndarray,
    opts: InversionOptions,
    *,
    call: Call | None = None,
    on_progress: Callable[[Progress], Awaitable[None] | None] | None = None,
) -> Inversion:
    """``invert_steps`` run to the end; ``on_progress`` sees every step."""
    steps = invert_steps(backend, gen, target, opts, call=call)
    try:
        async for event in steps:
            if isinstance(event, Inversion):
                return event
            if on_progress is not None:
                maybe = on_progress(event)
                if maybe is not None:
                    await maybe
    finally:
        await steps.aclose()  # counts the run now, not when the generator is collected
    raise AssertionError("invert_steps ended without a result")
