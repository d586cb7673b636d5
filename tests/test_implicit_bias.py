"""The implicit bias of diagonal networks (THEORY.md 4.2): the fixed point for the minimum-``Q_s``
interpolator and the finite-size convex program, each against something independent (closed
forms at the two ends of ``init_scale``, a general-purpose optimiser, long gradient descent of the
finite network, the convex program at large dimension), and their failures (no silent fallback).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import dmft
from dmft._implicit_bias import (
    basis_pursuit,
    implicit_bias,
    minimum_l2_test_loss,
    minimum_q_interpolator,
    q_penalty,
)

SPARSE = dmft.SparseTeacher(density=0.2, scale=1.0)


def _gradient_descent_endpoint(X, y, init_scale, eta, steps):
    """``beta = a^2 - b^2`` of a finite depth-2 diagonal network after ``steps`` of full-batch
    gradient descent from ``a = b = init_scale`` (THEORY.md 4: ``theta <- theta + eta grad F u``)."""
    P, D = X.shape
    a = np.full(D, init_scale)
    b = np.full(D, init_scale)
    for _ in range(steps):
        u = math.sqrt(D) * X.T @ (y - X @ (a * a - b * b) / math.sqrt(D)) / P
        a, b = a + 2 * eta * a * u, b - 2 * eta * b * u
    return a * a - b * b

def test_q_penalty_interpolates_l2_and_l1():
    """``s^2 q(beta / s^2)``: ``beta^2 / (4 s^2)`` for large ``s``; ``|beta| log(|beta| / s^2)`` -
    ``|beta|`` for small ``s`` (the l1 norm up to a slowly varying factor)."""
    beta = np.array([-1.5, 0.3, 2.0])
    np.testing.assert_allclose(q_penalty(beta, 30.0), beta**2 / (4 * 30.0**2), rtol=1e-6)
    small = 1e-4
    np.testing.assert_allclose(q_penalty(beta, small), np.abs(beta) * (np.log(np.abs(beta) / small**2) - 1),
                               rtol=1e-6)


def test_convex_program_equals_general_purpose_optimiser():
    """Newton on the dual equals SLSQP on the primal (an unrelated method) on a small problem."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    P, D, s = 6, 15, 0.3
    X = rng.standard_normal((P, D))
    y = rng.standard_normal(P)
    mine = minimum_q_interpolator(X, y, s)
    assert mine.residual < 1e-10
    constraint = {"type": "eq", "fun": lambda beta: X @ beta / math.sqrt(D) - y,
                  "jac": lambda beta: X / math.sqrt(D)}
    theirs = minimize(lambda beta: q_penalty(beta, s).sum(), np.zeros(D),
                      jac=lambda beta: np.arcsinh(beta / (2 * s * s)), constraints=[constraint],
                      method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
    assert theirs.success
    np.testing.assert_allclose(mine.beta, theirs.x, atol=1e-5)


def test_convex_program_equals_long_gradient_descent():
    """The minimum-Q interpolator of one data set equals where gradient descent of the finite
    network ends (D = 120, P = 60, 6e4 steps at eta = 0.02 so the flow has converged; the
    discrete steps bias the limit by O(eta), here below 1e-2 of |beta|)."""
    rng = np.random.default_rng(1)
    D, P, s, eta = 120, 60, 0.3, 0.02
    beta_star = rng.standard_normal(D) * (rng.random(D) < 0.3)
    X = rng.standard_normal((P, D))
    y = X @ beta_star / math.sqrt(D)
    gd = _gradient_descent_endpoint(X, y, s, eta, 60000)
    program = minimum_q_interpolator(X, y, s)
    assert np.linalg.norm(X @ gd / math.sqrt(D) - y) < 1e-8 * np.linalg.norm(y)
    assert np.linalg.norm(gd - program.beta) < 1e-2 * np.linalg.norm(program.beta)


def test_fixed_point_limits():
    """Large ``s``: the closed-form minimum-l2 risk ``(1 - alpha) E beta*^2 + sigma^2 alpha / (1 - alpha)
    + sigma^2`` (``rho (1 - alpha)`` without noise); ``s -> 0`` approaches basis pursuit from above,
    monotonically (exact recovery of basis pursuit: test_failures_raise_instead_of_a_fake_answer)."""
    for noise in (0.0, 0.3):
        data = dmft.GaussianData(alpha=0.5, noise=noise, teacher=SPARSE)
        l2 = minimum_l2_test_loss(data)
        assert abs(implicit_bias(dmft.DiagonalLinear(2, 100.0), data).test_loss - l2) < 1e-8
    data = dmft.GaussianData(alpha=0.5, teacher=SPARSE)
    assert minimum_l2_test_loss(data) == pytest.approx(0.2 * 0.5)
    losses = [implicit_bias(dmft.DiagonalLinear(2, s), data).test_loss for s in (1.0, 0.1, 0.01, 1e-3)]
    assert np.all(np.diff(losses) < 0)
    assert losses[-1] > basis_pursuit(data).test_loss


def test_fixed_point_quadrature_is_converged():
    """The expectations are trapezoid sums over a Gaussian weight: quadrupling the grid changes the
    test loss by less than 1e-8 (smooth prox); soft thresholding has a kink, so its error is
    O(h^2): below 1e-6 at the default 4001 points."""
    data = dmft.GaussianData(alpha=0.4, noise=0.2, teacher=SPARSE)
    for s in (0.01, 0.3):
        coarse = implicit_bias(dmft.DiagonalLinear(2, s), data, grid=2001).test_loss
        fine = implicit_bias(dmft.DiagonalLinear(2, s), data, grid=8001).test_loss
        assert abs(coarse - fine) < 1e-8
    assert abs(basis_pursuit(data).test_loss - basis_pursuit(data, grid=16001).test_loss) < 1e-6


def test_fixed_point_equals_the_convex_program_at_large_dimension():
    """The fixed point is the ``D -> infinity`` test loss of the minimum-Q interpolator: solve the
    convex program on 6 problems with D = 800 and compare its mean test loss within 3 SE over the
    problems plus a 3% allowance for O(1/sqrt(D)) finite-size effects."""
    s, alpha, D = 0.1, 0.5, 800
    data = dmft.GaussianData(alpha=alpha, noise=0.1, teacher=SPARSE)
    predicted = implicit_bias(dmft.DiagonalLinear(2, s), data).test_loss
    rng = np.random.default_rng(7)
    losses = []
    for _ in range(6):
        beta_star = rng.standard_normal(D) * (rng.random(D) < 0.2)
        X = rng.standard_normal((int(alpha * D), D))
        y = X @ beta_star / math.sqrt(D) + 0.1 * rng.standard_normal(int(alpha * D))
        beta = minimum_q_interpolator(X, y, s).beta
        losses.append(np.sum((beta - beta_star) ** 2) / D + 0.01)
    mean, sem = np.mean(losses), np.std(losses, ddof=1) / math.sqrt(len(losses))
    assert abs(mean - predicted) < 3 * sem + 0.03 * predicted, (mean, sem, predicted)


def test_failures_raise_instead_of_a_fake_answer():
    """No silent fallback. Below the Donoho-Tanner transition (density 0.05 at ``alpha = 0.5``) the
    ``Q_s`` fixed point tends to exact recovery as ``s -> 0``: resolved down to ``tau = 3e-8`` at
    ``s = 1e-6`` (test loss 4e-16), but at ``s = 1e-8`` it lies below the scan's ``1e-9`` of the
    upper bound, and that is an error, not ``(tau, kappa, mse) = (0, nan, 0)`` (which would read
    as an exact recovery); basis pursuit's exact recovery there is established by the transition
    itself (``kappa = 0``). A convex program stopped before converging raises with the residual."""
    easy = dmft.GaussianData(alpha=0.5, teacher=dmft.SparseTeacher(density=0.05))
    resolved = implicit_bias(dmft.DiagonalLinear(2, 1e-6), easy)
    assert 0 < resolved.tau < 1e-7 and resolved.test_loss < 1e-14
    with pytest.raises(RuntimeError, match="too close to exact recovery"):
        implicit_bias(dmft.DiagonalLinear(2, 1e-8), easy)
    exact = basis_pursuit(easy)
    assert (exact.tau, exact.kappa, exact.test_loss) == (0.0, 0.0, 0.0)
    rng = np.random.default_rng(0)
    with pytest.raises(RuntimeError, match="no convergence in 1 Newton steps.*relative residual"):
        minimum_q_interpolator(rng.standard_normal((20, 50)), rng.standard_normal(20), 0.1, max_iterations=1)


def test_implicit_bias_bad_input():
    data = dmft.GaussianData(alpha=0.5, teacher=SPARSE)
    with pytest.raises(dmft.UnsupportedError, match="depth 2"):
        implicit_bias(dmft.DiagonalLinear(3, 0.1), data)
    with pytest.raises(ValueError, match="alpha"):
        implicit_bias(dmft.DiagonalLinear(2, 0.1), data.replace(alpha=1.5))
    with pytest.raises(ValueError, match="fewer examples"):
        minimum_q_interpolator(np.ones((5, 3)), np.ones(5), 0.1)
    with pytest.raises(ValueError, match="init_scale"):
        minimum_q_interpolator(np.ones((2, 3)), np.ones(2), -1.0)



@pytest.mark.slow
def test_convex_program_agrees_with_long_simulations_at_small_init():
    """At small init (s = 0.05, D = 400) gradient descent needs a long time (incremental
    learning); after 2e5 steps at eta = 0.01 it sits on the minimum-Q interpolator within 2% of
    |beta| (O(eta) and unfinished-coordinate effects)."""
    rng = np.random.default_rng(2)
    D, P, s, eta = 400, 200, 0.05, 0.01
    beta_star = rng.standard_normal(D) * (rng.random(D) < 0.2)
    X = rng.standard_normal((P, D))
    y = X @ beta_star / math.sqrt(D) + 0.1 * rng.standard_normal(P)
    gd = _gradient_descent_endpoint(X, y, s, eta, 200000)
    program = minimum_q_interpolator(X, y, s)
    assert np.linalg.norm(gd - program.beta) < 0.02 * np.linalg.norm(program.beta)
