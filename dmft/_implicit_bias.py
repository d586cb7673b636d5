"""Implicit bias of diagonal linear networks (THEORY.md section 4.2).

Gradient flow on a depth-2 diagonal network ``beta = a^2 - b^2`` started at ``a = b = s`` with
fewer examples than dimensions (``alpha = P / D < 1``) converges to the interpolator of minimum

    Q_s(beta) = sum_j s^2 q(beta_j / s^2),    q(z) = 2 - sqrt(4 + z^2) + z asinh(z / 2)

(Woodworth et al. 2020). ``s -> infinity`` gives the minimum-l2 interpolator, ``s -> 0`` the
minimum-l1 one (basis pursuit). Two answers are given here:

* :func:`implicit_bias`: its test loss in the proportional limit, from the two-variable fixed
  point of approximate message passing / the Gaussian min-max theorem. With ``prox`` the proximal
  map of ``kappa Q_s`` applied to ``beta* + tau Z``, ``Z ~ N(0, 1)``::

      tau^2 = (sigma^2 + E (prox - beta*)^2) / alpha,     E prox' = alpha,
      test loss = E (prox - beta*)^2 + sigma^2.

* :func:`minimum_q_interpolator`: the interpolator itself for one finite data set, by Newton's
  method on the smooth concave dual ``max_lambda lambda^T y - 2 s^2 sum_j (cosh((X^T lambda)_j /
  sqrt(D)) - 1)``, whose maximiser gives ``beta_j = 2 s^2 sinh((X^T lambda)_j / sqrt(D))``.

Useful facts (derived from ``q'(z) = asinh(z / 2)``): the penalty of one coordinate is
``f(b) = s^2 q(b / s^2)`` with ``f'(b) = asinh(b / (2 s^2))``, ``f''(b) = 1 / sqrt(4 s^4 + b^2)`` and
convex conjugate ``f*(w) = 2 s^2 (cosh w - 1)``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ._validate import positive, positive_int
from .data import GaussianData
from .errors import UnsupportedError
from .models import DiagonalLinear

__all__ = [
    "ImplicitBias",
    "implicit_bias",
    "minimum_l2_test_loss",
    "basis_pursuit",
    "MinimumQInterpolator",
    "minimum_q_interpolator",
    "q_penalty",
]


def q_penalty(beta, init_scale: float) -> np.ndarray:
    """``s^2 q(beta / s^2)`` per coordinate, ``q(z) = 2 - sqrt(4 + z^2) + z asinh(z / 2)``."""
    s2 = positive("init_scale", init_scale) ** 2
    z = np.asarray(beta, dtype=float) / s2
    return s2 * (2.0 - np.sqrt(4.0 + z * z) + z * np.arcsinh(z / 2.0))


@dataclass(frozen=True)
class ImplicitBias:
    """Asymptotic test loss of the minimum-penalty interpolator (THEORY.md section 4.2).

    Attributes
    ----------
    test_loss : ``E (prox - beta*)^2 + sigma^2``.
    estimation_error : ``E (prox - beta*)^2``, the limit of ``|beta_hat - beta*|^2 / D``.
    tau : effective noise of the fixed point (``0`` for exact recovery).
    kappa : scale of the penalty inside the proximal map (the threshold for ``"l1"``).
    penalty : ``"Q"`` (diagonal network), ``"l2"`` or ``"l1"``.
    init_scale : ``s`` for ``"Q"``, else ``None``.
    """

    test_loss: float
    estimation_error: float
    tau: float
    kappa: float
    penalty: str
    init_scale: float | None = None


# ----------------------------------------------------------------------------------------------
# proximal maps and the expectations of the fixed point
# ----------------------------------------------------------------------------------------------


def _prox_q(w: np.ndarray, kappa: float, s2: float) -> tuple[np.ndarray, np.ndarray]:
    """``b = argmin (b - w)^2 / 2 + kappa s^2 q(b / s^2)`` and ``db/dw``.

    Solves ``b + kappa asinh(b / (2 s^2)) = w`` in the variable ``phi = asinh(b / (2 s^2))``:
    ``g(phi) = 2 s^2 sinh(phi) + kappa phi - |w|`` is increasing and convex for ``phi >= 0``, so
    Newton's method (``scipy.optimize.newton`` on the whole array) from an upper bound converges
    monotonically; a point that has not converged to ``1e-13`` in ``phi`` raises.
    """
    from scipy.optimize import newton

    target = np.abs(w)
    # both are upper bounds of the root: g >= 0 there
    start = np.minimum(np.arcsinh(target / (2.0 * s2)), target / kappa)
    with warnings.catch_warnings():  # partial non-convergence is reported below, with the values
        warnings.simplefilter("ignore", RuntimeWarning)
        phi, converged, _ = newton(
            lambda x: 2.0 * s2 * np.sinh(x) + kappa * x - target, start,
            fprime=lambda x: 2.0 * s2 * np.cosh(x) + kappa, tol=1e-13, maxiter=200, full_output=True,
        )
    if not np.all(converged):
        bad = int(np.flatnonzero(~converged)[0])
        raise RuntimeError(
            f"proximal map of kappa Q_s: Newton did not converge for w = {w.flat[bad]:.6g} "
            f"(kappa = {kappa:.6g}, s^2 = {s2:.6g}) in 200 iterations"
        )
    b = np.sign(w) * 2.0 * s2 * np.sinh(phi)
    slope = 1.0 / (1.0 + kappa / np.sqrt(4.0 * s2 * s2 + b * b))
    return b, slope


def _prox_l1(w: np.ndarray, kappa: float) -> tuple[np.ndarray, np.ndarray]:
    b = np.sign(w) * np.maximum(np.abs(w) - kappa, 0.0)
    return b, (np.abs(w) > kappa).astype(float)


def _prox_l2(w: np.ndarray, kappa: float) -> tuple[np.ndarray, np.ndarray]:
    return w / (1.0 + kappa), np.full_like(w, 1.0 / (1.0 + kappa))


class _Expectations:
    """``E (prox - beta*)^2`` and ``E prox'`` over the teacher prior and ``Z ~ N(0, 1)``.

    The prior is a mixture of a point mass at 0 (weight ``1 - rho``) and ``N(0, scale^2)``
    (weight ``rho``). For the Gaussian part, ``w = beta* + tau Z ~ N(0, scale^2 + tau^2)`` and
    ``beta* | w`` is Gaussian, so both expectations are one-dimensional integrals over ``w``,
    done by the trapezoid rule on ``[-12, 12]`` standard deviations (spectrally accurate for these
    smooth, Gaussian-weighted integrands; ``grid`` points).
    """

    def __init__(self, data: GaussianData, grid: int):
        teacher = data.teacher
        self.density = 1.0 if teacher is None else teacher.density
        self.scale2 = 1.0 if teacher is None else teacher.scale**2
        self.x = np.linspace(-12.0, 12.0, grid)
        weights = np.exp(-0.5 * self.x**2)
        weights[[0, -1]] *= 0.5
        self.weights = weights / weights.sum()

    def __call__(self, prox, tau: float):
        mse = 0.0
        slope = 0.0
        if self.density < 1.0:  # beta* = 0: w = tau Z
            b, db = prox(tau * self.x)
            mse += (1.0 - self.density) * np.dot(self.weights, b * b)
            slope += (1.0 - self.density) * np.dot(self.weights, db)
        total = self.scale2 + tau * tau
        w = math.sqrt(total) * self.x
        b, db = prox(w)
        mean = w * self.scale2 / total
        variance = self.scale2 * tau * tau / total
        mse += self.density * (np.dot(self.weights, (b - mean) ** 2) + variance)
        slope += self.density * np.dot(self.weights, db)
        threshold = getattr(prox, "threshold", None)
        if threshold is not None:
            # soft thresholding: prox' is an indicator, whose trapezoid sum is a step function of
            # the threshold; use E prox' = P(|w| > kappa) = 2 Phi(-kappa / std) instead
            from scipy.special import ndtr

            slope = 2.0 * self.density * ndtr(-threshold / math.sqrt(total))
            if self.density < 1.0:
                slope += 2.0 * (1.0 - self.density) * ndtr(-threshold / tau)
        return mse, slope


def _bind(prox_family, kappa):
    """``w -> prox_family(w, kappa)``, carrying ``threshold = kappa`` for soft thresholding."""

    def prox(w):
        return prox_family(w, kappa)

    if prox_family is _prox_l1:
        prox.threshold = kappa
    return prox


def _bracket_log_kappa(excess, start: float, step: float = 1.5, tries: int = 100):
    """``(lo, hi)`` with ``excess(lo) >= 0 >= excess(hi)``, expanding geometrically from ``start``
    (``excess`` decreases in ``log kappa``); raises when ``tries`` expansions do not change its sign."""
    lo = hi = start
    value = excess(start)
    for _ in range(tries):
        if value > 0:
            lo, hi = hi, hi + step
            value = excess(hi)
            if value <= 0:
                return lo, hi
        else:
            hi, lo = lo, lo - step
            value = excess(lo)
            if value >= 0:
                return lo, hi
    raise RuntimeError(
        f"implicit-bias fixed point: E prox' - alpha did not change sign for log(kappa) within "
        f"{start:.3g} +- {tries * step:g} (last value {value:.3g}); it is monotone from 1 - alpha to -alpha, "
        "so the expectations are not finite: check the data"
    )


def _l1_recovery_limit(data: GaussianData) -> float:
    """``lim_{tau -> 0} mse(tau) / (alpha tau^2)`` for soft thresholding on a noiseless sparse
    teacher (Donoho-Tanner): with the normalised threshold ``k`` fixed by
    ``rho + 2 (1 - rho) Phi(-k) = alpha``, it is ``[rho (1 + k^2) + (1 - rho) E soft(Z; k)^2] / alpha``,
    ``E soft(Z; k)^2 = 2 ((1 + k^2) Phi(-k) - k phi(k))``. Below 1, ``tau = 0`` (exact recovery) is
    the stable fixed point; ``inf`` when ``rho >= alpha`` (no threshold satisfies the constraint)."""
    from scipy.optimize import brentq
    from scipy.special import ndtr

    rho = 1.0 if data.teacher is None else data.teacher.density
    alpha = data.alpha
    if rho >= alpha:
        return math.inf
    k = brentq(lambda x: rho + 2.0 * (1.0 - rho) * ndtr(-x) - alpha, 0.0, 40.0, xtol=1e-14)
    zeros = 2.0 * ((1.0 + k * k) * ndtr(-k) - k * math.exp(-0.5 * k * k) / math.sqrt(2.0 * math.pi))
    return (rho * (1.0 + k * k) + (1.0 - rho) * zeros) / alpha


def _solve_fixed_point(data: GaussianData, prox_family, kappa_guess: float, grid: int):
    """Largest solution ``tau`` of ``tau^2 = (sigma^2 + mse(tau)) / alpha`` with ``kappa(tau)``
    fixed by ``E prox' = alpha`` (the solution state evolution reaches from ``beta_hat = 0``).

    Scans ``tau`` down from an upper bound by halving until ``gap(tau) = (sigma^2 + mse) /
    (alpha tau^2) - 1`` turns positive, then ``brentq`` in that bracket. Returns ``(tau, kappa,
    mse)``. ``tau = 0`` (``kappa = 0``, ``mse = 0``: exact recovery) only for noiseless soft
    thresholding below the Donoho-Tanner transition (:func:`_l1_recovery_limit` < 1); any other
    scan that finds no sign change down to ``1e-9`` of the bound raises (with label noise
    ``gap -> +inf`` as ``tau -> 0``, and for the smooth ``Q`` penalty ``mse(0) > 0``, so a root must exist).
    """
    from scipy.optimize import brentq

    alpha, sigma2 = data.alpha, data.noise**2
    expect = _Expectations(data, grid)
    second_moment = 1.0 if data.teacher is None else data.teacher.variance
    state = {"kappa": kappa_guess}

    def kappa_of(tau):
        # E prox' decreases from 1 (kappa = 0) to 0 (kappa -> inf): bracket around the last kappa
        def excess(log_kappa):
            return expect(_bind(prox_family, math.exp(log_kappa)), tau)[1] - alpha

        lo, hi = _bracket_log_kappa(excess, math.log(state["kappa"]))
        kappa = math.exp(brentq(excess, lo, hi, xtol=1e-12, rtol=1e-12))
        state["kappa"] = kappa
        return kappa

    def gap(tau):  # (sigma^2 + mse) / (alpha tau^2) - 1
        kappa = kappa_of(tau)
        mse, _ = expect(_bind(prox_family, kappa), tau)
        return (sigma2 + mse) / (alpha * tau * tau) - 1.0, kappa, mse

    # at tau_high the right-hand side is at most (sigma^2 + E beta*^2) / alpha < tau_high^2
    upper = math.sqrt((sigma2 + second_moment) / alpha) * 1.5
    tau = upper
    while tau > 1e-9 * upper:
        lower = tau / 2.0
        if gap(lower)[0] > 0:
            root = brentq(lambda t: gap(t)[0], lower, tau, xtol=1e-14, rtol=1e-12)
            _, kappa, mse = gap(root)
            return root, kappa, mse
        tau = lower
    if prox_family is _prox_l1 and sigma2 == 0.0 and _l1_recovery_limit(data) < 1.0:
        return 0.0, 0.0, 0.0
    raise RuntimeError(
        f"implicit-bias fixed point: no solution tau of tau^2 = (sigma^2 + mse) / alpha down to "
        f"tau = {tau:.3g} (1e-9 of the upper bound {upper:.3g}); the fixed point is too close to exact "
        "recovery to resolve (for the Q penalty: init_scale too small; use a larger init_scale, or "
        "the basis-pursuit limit for init_scale -> 0)"
    )


def _check_data(data) -> GaussianData:
    if not isinstance(data, GaussianData):
        raise TypeError(f"`data` must be dmft.GaussianData, got {type(data).__name__}")
    if data.spectrum is not None:
        raise UnsupportedError("the implicit-bias fixed point is for isotropic inputs (spectrum=None)")
    if data.alpha is None or data.alpha >= 1:
        raise ValueError(
            f"the implicit bias needs fewer examples than dimensions (interpolation): `alpha` < 1, "
            f"got alpha={data.alpha}"
        )
    return data


def implicit_bias(model: DiagonalLinear, data: GaussianData, *, grid: int = 4001) -> ImplicitBias:
    """Test loss of the minimum-``Q_s`` interpolator, the ``t -> infinity`` limit of gradient flow
    on a depth-2 diagonal network with ``init_scale = s`` (THEORY.md section 4.2).

    Solves ``tau^2 = (sigma^2 + E (prox - beta*)^2) / alpha`` and ``E prox' = alpha`` for
    ``(tau, kappa)``, ``prox = prox_{kappa Q_s}(beta* + tau Z)``; see the module docstring.

    Parameters
    ----------
    model : :class:`dmft.DiagonalLinear` with ``depth=2``.
    data : isotropic :class:`dmft.GaussianData` with ``alpha < 1``; any noise; the teacher prior
        (Gaussian or :class:`dmft.SparseTeacher`) enters the expectations.
    grid : quadrature points per expectation.

    Returns
    -------
    :class:`ImplicitBias` (``test_loss``, ``estimation_error``, ``tau``, ``kappa``).

    Raises
    ------
    UnsupportedError : a depth other than 2, or anisotropic data.
    ValueError : ``alpha >= 1`` (no interpolation) or ``alpha=None``.

    Example
    -------
    >>> import dmft
    >>> dmft.implicit_bias(dmft.DiagonalLinear(2, 0.1),
    ...                    dmft.GaussianData(alpha=0.5, teacher=dmft.SparseTeacher(0.2))).test_loss
    0.0327...
    """
    if not isinstance(model, DiagonalLinear):
        raise TypeError(f"`model` must be dmft.DiagonalLinear, got {type(model).__name__}")
    if model.depth != 2:
        raise UnsupportedError(
            f"the minimum-Q implicit bias is derived for depth 2 (beta = a^2 - b^2), got depth={model.depth}"
        )
    data = _check_data(data)
    positive_int("grid", grid, minimum=101)
    s2 = model.init_scale**2
    tau, kappa, mse = _solve_fixed_point(data, lambda w, k: _prox_q(w, k, s2), s2, grid)
    return ImplicitBias(
        test_loss=mse + data.noise**2, estimation_error=mse, tau=tau, kappa=kappa, penalty="Q",
        init_scale=model.init_scale,
    )


def basis_pursuit(data: GaussianData, *, grid: int = 4001) -> ImplicitBias:
    """The ``init_scale -> 0`` end: the minimum-l1 interpolator (soft-thresholding ``prox``)."""
    data = _check_data(data)
    positive_int("grid", grid, minimum=101)
    tau, kappa, mse = _solve_fixed_point(data, _prox_l1, 0.1, grid)
    return ImplicitBias(test_loss=mse + data.noise**2, estimation_error=mse, tau=tau, kappa=kappa, penalty="l1")


def minimum_l2_test_loss(data: GaussianData) -> float:
    """The ``init_scale -> infinity`` end: the minimum-l2 interpolator, in closed form,
    ``(1 - alpha) E beta*^2 + sigma^2 alpha / (1 - alpha) + sigma^2`` (``rho (1 - alpha)``
    for a noiseless sparse teacher of unit scale)."""
    data = _check_data(data)
    second_moment = 1.0 if data.teacher is None else data.teacher.variance
    alpha, sigma2 = data.alpha, data.noise**2
    return (1.0 - alpha) * second_moment + sigma2 * alpha / (1.0 - alpha) + sigma2


# ----------------------------------------------------------------------------------------------
# the finite-size convex program
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MinimumQInterpolator:
    """Solution of ``min_beta sum_j s^2 q(beta_j / s^2)`` s.t. ``X beta / sqrt(D) = y``.

    beta : the interpolator, shape ``(D,)``.
    multiplier : the dual variable ``lambda``, shape ``(P,)``.
    residual : ``|X beta / sqrt(D) - y| / |y|`` at the solution.
    iterations : Newton iterations used.
    """

    beta: np.ndarray
    multiplier: np.ndarray
    residual: float
    iterations: int


def minimum_q_interpolator(
    inputs, labels, init_scale: float, *, tolerance: float = 1e-10, max_iterations: int = 200
) -> MinimumQInterpolator:
    """The minimum-``Q_s`` interpolator of one finite data set (THEORY.md section 4.2).

    Maximises the concave dual ``g(lambda) = lambda^T y - 2 s^2 sum_j (cosh(w_j) - 1)``,
    ``w = X^T lambda / sqrt(D)``, by Newton's method with a backtracking (Armijo) line search
    (gradient ``y - X beta / sqrt(D)``, Hessian ``-X diag(2 s^2 cosh w) X^T / D``); the primal
    solution is ``beta_j = 2 s^2 sinh(w_j)``. (``scipy.optimize.minimize`` with ``trust-exact``
    on the same dual took about twice the iterations and stopped short of ``1e-10`` on one of ten
    problems at ``D = 1000``; ``Newton-CG`` stopped at residuals 1e-7 to 1e-3 for ``s >= 1``.)
    Strong duality holds (the constraints are linear and the objective strictly convex), so the
    dual optimum is the interpolator.

    Parameters
    ----------
    inputs : ``X``, shape ``(P, D)`` with ``P < D`` (rows = examples).
    labels : ``y``, shape ``(P,)``.
    init_scale : ``s > 0``.
    tolerance : stop when ``|X beta / sqrt(D) - y| <= tolerance |y|``.

    Raises
    ------
    ValueError : bad shapes, ``P >= D`` or non-finite input.
    RuntimeError : no convergence in ``max_iterations``, or a line search that finds no ascent
        step (the message gives the residual reached); no partial answer is returned.
    """
    X = np.asarray(inputs, dtype=float)
    y = np.asarray(labels, dtype=float)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"`inputs` must be (P, D) and `labels` (P,), got {X.shape} and {y.shape}")
    P, D = X.shape
    if P >= D:
        raise ValueError(f"an interpolator needs fewer examples than dimensions, got P={P} >= D={D}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("`inputs` and `labels` must be finite")
    s2 = positive("init_scale", init_scale) ** 2
    positive_int("max_iterations", max_iterations)
    A = X / math.sqrt(D)
    norm_y = max(float(np.linalg.norm(y)), 1e-300)

    def dual(lam):
        w = A.T @ lam
        if np.max(np.abs(w)) > 700:  # cosh overflows: outside the useful domain
            return -np.inf, w
        return float(lam @ y - 2.0 * s2 * np.sum(np.cosh(w) - 1.0)), w

    lam = np.zeros(P)
    value, w = dual(lam)
    for iteration in range(max_iterations + 1):
        beta = 2.0 * s2 * np.sinh(w)
        gradient = y - A @ beta
        residual = float(np.linalg.norm(gradient)) / norm_y
        if residual <= tolerance:
            return MinimumQInterpolator(beta=beta, multiplier=lam, residual=residual, iterations=iteration)
        if iteration == max_iterations:
            break
        hessian = (A * (2.0 * s2 * np.cosh(w))) @ A.T
        direction = np.linalg.solve(hessian, gradient)
        slope = float(gradient @ direction)
        # Near the optimum the increase of the dual, ~slope, falls below the rounding of its value
        # (~1e-16 of its terms): the Armijo test then decides on noise. There the merit is the
        # residual norm instead (Newton decreases it quadratically).
        by_value = 1e-4 * slope > 1e-13 * (abs(value) + 2.0 * s2 * float(np.sum(np.cosh(w))))
        step = 1.0
        while True:  # backtracking (Armijo) line search on the concave dual
            trial_value, trial_w = dual(lam + step * direction)
            if by_value and trial_value >= value + 1e-4 * step * slope:
                break
            if not by_value and np.isfinite(trial_value):
                trial_residual = np.linalg.norm(y - A @ (2.0 * s2 * np.sinh(trial_w))) / norm_y
                if trial_residual <= (1.0 - 1e-4 * step) * residual:
                    break
            step *= 0.5
            if step < 1e-12:
                raise RuntimeError(
                    f"minimum-Q interpolator: the line search found no ascent step at Newton iteration "
                    f"{iteration} (relative residual {residual:.3g}, target {tolerance:g}): the dual is "
                    "resolved to rounding; loosen `tolerance`"
                )
        lam = lam + step * direction
        value, w = trial_value, trial_w
    raise RuntimeError(
        f"minimum-Q interpolator: no convergence in {max_iterations} Newton steps "
        f"(relative residual {residual:.3g}, target {tolerance:g}); raise `max_iterations`"
    )
