"""L-BFGS for the inversion loop, one loss-and-gradient evaluation at a time.

The inversion loop owns the evaluations (each is one ``inversion_step`` call, batched with
other inversions' calls by the backend), so the optimizer here never calls the objective:
``propose`` takes the loss and gradient at the point it proposed last and returns the next
point to evaluate. A step along the quasi-Newton direction is accepted when it decreases the
loss enough (Armijo's condition); otherwise the step is shortened by interpolation and the
shorter point is evaluated next. Accepted steps with positive curvature enter the history
(the last ``history`` pairs), which the two-loop recursion turns into the next direction
(Nocedal & Wright, Numerical Optimization, algorithms 7.4 and 3.5; docs/design.md, "Inversion
by L-BFGS").

Vectors are float64 here (a W+ latent is a few thousand numbers); points handed back are
float32 like the latents the step graph takes.
"""

from __future__ import annotations

import collections

import numpy as np

ARMIJO = 1e-4  # sufficient decrease: f(x + a d) <= f(x) + ARMIJO * a * g.d
SHRINK_MIN, SHRINK_MAX = 0.1, 0.5  # a rejected step is cut to this range of its length
CURVATURE_EPS = 1e-10  # pairs with s.y <= this * |y|^2 are skipped (no positive curvature)
MAX_SHRINKS = 10  # a direction failing this many cuts is replaced by steepest descent


class LBFGS:
    """Minimizes a loss given point by point; ``propose(loss, grad)`` returns the next point
    to evaluate, given the loss and gradient at the point it returned last (the start, on
    the first call)."""

    def __init__(self, start: np.ndarray, *, history: int = 20, step: float = 1.0):
        self.shape = start.shape
        self.step = float(step)  # the first trial step of each iteration, along the direction
        self._pairs: collections.deque[tuple[np.ndarray, np.ndarray, float]] = collections.deque(
            maxlen=max(1, history)
        )
        self._trial = start.astype(np.float64).ravel()  # the point being evaluated
        self._x: np.ndarray | None = None  # the last accepted point, its loss and gradient
        self._f = 0.0
        self._g: np.ndarray | None = None
        self._d: np.ndarray | None = None  # the search direction from _x
        self._alpha = 0.0  # the trial's step length along _d
        self._shrinks = 0
        self.accepted = 0  # iterations taken (accepted steps)
        self.last_step = 0.0  # step length of the latest proposal, for progress reports

    def propose(self, loss: float, grad: np.ndarray) -> np.ndarray:
        g = np.asarray(grad, dtype=np.float64).ravel()
        if self._x is None:  # the start: the first direction is steepest descent
            self._accept(loss, g, pair=False)
        elif loss <= self._f + ARMIJO * self._alpha * float(self._g @ self._d):
            self._accept(loss, g, pair=True)
        else:
            self._shrink(loss)
        self.last_step = self._alpha
        self._trial = self._x + self._alpha * self._d
        return self._trial.reshape(self.shape).astype(np.float32)

    # -- internals ---------------------------------------------------------------------

    def _accept(self, loss: float, g: np.ndarray, *, pair: bool) -> None:
        if pair:
            s, y = self._trial - self._x, g - self._g
            sy = float(s @ y)
            if sy > CURVATURE_EPS * float(y @ y):
                self._pairs.append((s, y, 1.0 / sy))
            self.accepted += 1
        self._x, self._f, self._g = self._trial, float(loss), g
        self._d = self._direction(g)
        self._shrinks = 0
        if self._pairs:
            self._alpha = self.step
        else:  # no curvature known yet: a step of length `step` / |g|_1 at most
            self._alpha = self.step * min(1.0, 1.0 / max(float(np.abs(g).sum()), 1e-12))

    def _shrink(self, loss: float) -> None:
        """A shorter step along the same direction: the minimum of the quadratic through
        f(0), f'(0) and f(alpha), kept within [SHRINK_MIN, SHRINK_MAX] of alpha."""
        self._shrinks += 1
        if self._shrinks > MAX_SHRINKS:  # the direction is no good: restart from -g
            self._pairs.clear()
            self._d = -self._g
            self._shrinks = 0
            self._alpha = self.step * min(1.0, 1.0 / max(float(np.abs(self._g).sum()), 1e-12))
            return
        a, slope = self._alpha, float(self._g @ self._d)
        rise = loss - self._f - slope * a  # > 0 when Armijo failed on a descent direction
        cut = -slope * a * a / (2.0 * rise) if np.isfinite(loss) and rise > 0 else SHRINK_MIN * a
        self._alpha = min(max(cut, SHRINK_MIN * a), SHRINK_MAX * a)

    def _direction(self, g: np.ndarray) -> np.ndarray:
        """-H g by the two-loop recursion; -g when that is not a descent direction."""
        q = g.copy()
        alphas = []
        for s, y, rho in reversed(self._pairs):
            a = rho * float(s @ q)
            alphas.append(a)
            q -= a * y
        if self._pairs:
            s, y, _ = self._pairs[-1]
            q *= float(s @ y) / float(y @ y)
        for (s, y, rho), a in zip(self._pairs, reversed(alphas)):
            b = rho * float(y @ q)
            q += (a - b) * s
        d = -q
        if float(g @ d) >= 0:  # lost positive definiteness (rounding): start over
            self._pairs.clear()
            return -g
        return d
