"""service/lbfgs.py: the point-by-point L-BFGS on functions with known minima."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stylegate.service.lbfgs import LBFGS


def minimize(f, grad, start: np.ndarray, evaluations: int, **kw) -> tuple[np.ndarray, list[float]]:
    """Drive the optimizer as the inversion loop does: evaluate, hand over, evaluate the
    proposal. Returns the best point and the loss at every evaluation."""
    opt = LBFGS(start, **kw)
    x, best, losses = start, start, []
    for _ in range(evaluations):
        loss = f(x)
        losses.append(loss)
        if loss <= min(losses):
            best = x
        x = opt.propose(loss, grad(x))
    return best, losses


def test_an_ill_conditioned_quadratic_is_solved_in_few_evaluations():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    h = q @ np.diag(np.logspace(0, 3, 20)) @ q.T  # condition number 1000
    b = rng.standard_normal(20)
    solution = np.linalg.solve(h, b)

    def f(x):
        x = x.astype(np.float64)
        return 0.5 * x @ h @ x - b @ x

    best, _ = minimize(f, lambda x: h @ x - b, np.zeros(20, np.float32), 60)
    assert np.abs(best - solution).max() < 1e-2 * np.abs(solution).max()
    # gradient descent at its best fixed step would still be far off after 60 steps
    x = np.zeros(20)
    for _ in range(60):
        x = x - (h @ x - b) / 1000.0
    assert np.abs(x - solution).max() > 100 * np.abs(best - solution).max()


def test_rosenbrock_is_solved_and_the_loss_never_increases_at_an_accepted_point():
    def f(p):
        x, y = p.astype(np.float64)
        return (1 - x) ** 2 + 100 * (y - x * x) ** 2

    def grad(p):
        x, y = p.astype(np.float64)
        return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])

    opt = LBFGS(np.array([-1.2, 1.0], np.float32))
    x, accepted = np.array([-1.2, 1.0], np.float32), []
    for _ in range(200):
        before = opt.accepted
        loss = f(x)
        x = opt.propose(loss, grad(x))
        if opt.accepted > before:
            accepted.append(loss)
    assert f(x) < 1e-6 or min(accepted) < 1e-6
    assert all(b <= a for a, b in itertools.pairwise(accepted))  # Armijo: only decreases


def test_a_rejected_step_is_shortened_along_the_same_direction():
    opt = LBFGS(np.array([0.0], np.float32), step=1.0)
    first = opt.propose(1.0, np.array([-1.0]))  # steepest descent, step 1 / |g|_1 = 1
    assert first == pytest.approx([1.0])
    shorter = opt.propose(50.0, np.array([10.0]))  # far worse: cut, same direction
    assert 0.1 <= float(shorter[0]) <= 0.5
    assert opt.accepted == 0 and opt.last_step == pytest.approx(float(shorter[0]))


def test_points_keep_the_latent_shape_and_dtype():
    start = np.zeros((3, 4), np.float32)
    opt = LBFGS(start)
    nxt = opt.propose(1.0, np.ones((3, 4), np.float32))
    assert nxt.shape == (3, 4) and nxt.dtype == np.float32
    assert (nxt < 0).all()  # against the gradient


def test_a_zero_step_stays_put():
    opt = LBFGS(np.ones(5, np.float32), step=0.0)
    assert np.array_equal(opt.propose(3.0, np.ones(5)), np.ones(5, np.float32))
