"""Depth 0, plain linear regression: the exact ``D, P -> infinity`` loss curves (THEORY.md section 3).

Model ``f(x) = beta . x / sqrt(D)``, ``beta(0) = 0``, ``beta <- beta + eta u`` with
``u = sqrt(D) X^T (y - X beta / sqrt(D)) / B`` (``B = P`` for full-batch gradient descent, a fresh
batch of ``B = alpha_B D`` examples for online SGD). Write ``v`` for the teacher's second moment
``|beta*|^2 / D`` (1, or ``SparseTeacher.variance``) and ``sigma`` for the label-noise level.

Full-batch gradient descent
---------------------------
With ``Sigma_hat = X^T X / P``, ``A = I - eta Sigma_hat`` and ``w = sqrt(D) X^T eps / P``,

    beta_t - beta* = -A^t beta* + sigma Sigma_hat^+ (I - A^t) w,      E w w^T = Sigma_hat / alpha,

so, with ``mu`` the *continuous part* of the Marchenko-Pastur law of ``Sigma_hat`` (ratio
``D / P = 1 / alpha``, support ``[(1 - alpha^{-1/2})^2, (1 + alpha^{-1/2})^2]``, total mass
``min(1, alpha)``; the atom of mass ``(1 - alpha)_+`` at 0 is written out)::

    L(t)    = v [ int (1 - eta l)^{2t} dmu + (1 - alpha)_+ ]                      test_loss_bias
            + (sigma^2 / alpha) int (1 - (1 - eta l)^t)^2 / l dmu                 test_loss_noise_variance
            + sigma^2
    Lhat(t) = v int l (1 - eta l)^{2t} dmu                                        train_loss_bias
            + (sigma^2 / alpha) int (1 - eta l)^{2t} dmu + sigma^2 (1 - 1/alpha)_+  train_loss_noise

The train loss follows from ``y - X beta_t / sqrt(D) = X A^t beta* / sqrt(D) + sigma (I - U U^T) eps
+ sigma U (1 - eta s^2 / P)^t U^T eps`` (``X = U s V^T``): the first part is the signal left to fit,
the second the label noise outside the column space of ``X`` (``P - D`` dimensions when ``alpha > 1``),
the third the noise inside it, not yet fitted. ``flow=True`` gives gradient flow at time
``tau = eta t``: ``(1 - eta l)^t -> exp(-eta l t)``.

Quadrature. All the integrals are over ``mu``, whose density has square-root edges (and a
``l^{-1/2}`` divergence at ``l = 0`` when ``alpha = 1``). They are computed by the Gauss rule of
``mu`` itself: the unit-mean Marchenko-Pastur law of ratio ``c <= 1`` has the constant Jacobi
parameters ``a_0 = 1``, ``a_k = 1 + c``, ``b_k = sqrt(c)`` (k >= 1), so its orthonormal polynomials
are, with ``l = (1 - sqrt c)^2 + 4 sqrt(c) sin^2(phi / 2)``,
``p_k = (-1)^k [sin((k + 1) phi) - sqrt(c) sin(k phi)] / sin(phi)``: the ``n`` Gauss nodes are the
roots of ``sin((n + 1) phi) = sqrt(c) sin(n phi)`` (one in each ``[(m - 1) pi / n, m pi / (n + 1)]``,
found by bisection to full relative precision, also at the edges) and the weights are
``1 / (b_n p_{n-1} p_n')``. For ``alpha < 1``, ``mu`` is ``alpha`` times the law of ratio ``alpha``
scaled by ``1 / alpha`` (the nonzero eigenvalues of ``X^T X / P`` are those of ``X X^T / P``).
Every integrand of gradient descent is a polynomial of degree at most ``2t + 1`` in ``l``
(``(1 - (1 - eta l)^t) / l`` is a polynomial), so a rule of order ``n >= steps + 1`` is *exact* for
the whole curve; the default order is smaller where that loses nothing (see
:func:`default_quadrature_order`).

Online SGD
----------
A fresh batch every step makes ``e_t = |beta_t - beta*|^2 / D`` a closed recursion: with
``S = X^T X / B`` and Gaussian fourth moments ``E S = I``, ``E S^2 = (1 + (D + 1) / B) I``,
``E |sqrt(D) X^T eps / B|^2 / D = D / B``, exactly at any ``D``,

    e_{t+1} = g e_t + eta^2 sigma^2 / alpha_B,    g = (1 - eta)^2 + eta^2 / alpha_B    (D -> infinity;
                                                  ``1 / alpha_B -> (D + 1) / B`` at finite D),
    e_t = v g^t + (eta^2 sigma^2 / alpha_B) (1 - g^t) / (1 - g),
    L(t) = e_t + sigma^2,      Lhat(t) = E (loss on the step's fresh batch, before the update) = L(t).

It is stable (``g < 1``) iff ``eta < 2 alpha_B / (1 + alpha_B)``.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache

import numpy as np

from ..data import GaussianData
from ..errors import UnstableLearningRateError
from ..models import Linear
from ..result import Result
from ..training import GradientDescent, OnlineSGD
from .._validate import non_negative, positive, positive_int
from . import register

__all__ = [
    "solve_linear",
    "marchenko_pastur_edges",
    "marchenko_pastur_quadrature",
    "default_quadrature_order",
    "gradient_descent_stability_bound",
    "online_sgd_stability_bound",
    "gradient_descent_curves",
    "online_sgd_curves",
]

# Elements of one (steps x nodes) block of powers; bounds the memory of a curve to ~ 50 MB.
_BLOCK_ELEMENTS = 1 << 21
# Rows of the table of powers a^k (each later row a^t = a^start a^k costs one multiplication).
_TABLE_ROWS = 512
# Bisection steps for a Gauss node: the brackets are at most pi wide, 2^-64 pi is below one ulp.
_BISECTION_STEPS = 64


# --------------------------------------------------------------------------------------------
# Marchenko-Pastur law and its Gauss rule
# --------------------------------------------------------------------------------------------


def marchenko_pastur_edges(alpha: float) -> tuple[float, float]:
    """Edges ``((1 - alpha^{-1/2})^2, (1 + alpha^{-1/2})^2)`` of the MP law of ``X^T X / P``."""
    alpha = positive("alpha", alpha)
    root = 1.0 / math.sqrt(alpha)
    return (1.0 - root) ** 2, (1.0 + root) ** 2


def _bisect(function, low, high, low_sign):
    """Roots of ``function`` (vectorised), one in each bracket ``[low, high]``; ``low_sign`` is the
    sign of ``function`` just above ``low``."""
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        same = np.sign(function(middle)) == low_sign
        low = np.where(same, middle, low)
        high = np.where(same, high, middle)
    return 0.5 * (low + high)


@lru_cache(maxsize=64)
def _unit_mean_rule(ratio: float, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule of order ``n = order`` of the unit-mean Marchenko-Pastur law of ratio ``0 < c <= 1``.

    With ``l = 1 + c - 2 sqrt(c) cos(phi)`` the nodes are the roots of
    ``h(phi) = sin((n + 1) phi) - sqrt(c) sin(n phi)`` in ``(0, pi)`` and the weights are
    ``2 sin^3(phi) / |h'(phi) (sin(n phi) - sqrt(c) sin((n - 1) phi))|`` (module docstring). Every
    quantity is computed from the angle to the nearer edge, so that edge nodes and weights keep full
    relative precision: ``phi`` (``l = (1 - sqrt c)^2 + 4 sqrt(c) sin^2(phi/2)``, ``1 - sqrt c``
    kept apart for ``c -> 1``) on the lower half, ``theta = pi - phi``
    (``l = (1 + sqrt c)^2 - 4 sqrt(c) sin^2(theta/2)``, roots of ``sin((n+1) theta) + sqrt(c)
    sin(n theta)``, the same weight formula with ``+ sqrt(c)``) on the upper half.
    Returns read-only ``(nodes, weights)``, nodes increasing, weights summing to 1.
    """
    n = order
    root = math.sqrt(ratio)
    gap = 1.0 - root
    lower_count = (n + 1) // 2

    # Lower half: bracket m = 1.. holds one root of h in [(m - 1) pi / n, m pi / (n + 1)].
    m = np.arange(1, lower_count + 1, dtype=float)
    phi = _bisect(
        # h = [sin((n+1) phi) - sin(n phi)] + (1 - sqrt c) sin(n phi), the bracket as a product
        lambda x: 2.0 * np.cos((n + 0.5) * x) * np.sin(0.5 * x) + gap * np.sin(n * x),
        (m - 1.0) * math.pi / n,
        m * math.pi / (n + 1),
        np.where(m % 2 == 1, 1.0, -1.0),  # h(0) = 0 and h'(0) > 0; signs alternate
    )
    half_sine = np.sin(0.5 * phi)
    lower_nodes = gap**2 + 4.0 * root * half_sine**2
    derivative = (  # h'(phi) = (n + 1) cos((n + 1) phi) - sqrt(c) n cos(n phi)
        -(2 * n + 1) * np.sin((n + 0.5) * phi) * half_sine
        + np.cos((n + 0.5) * phi) * np.cos(0.5 * phi)
        + gap * n * np.cos(n * phi)
    )
    previous = 2.0 * np.cos((n - 0.5) * phi) * half_sine + gap * np.sin((n - 1) * phi)
    lower_weights = 2.0 * np.sin(phi) ** 3 / np.abs(derivative * previous)

    # Upper half: bracket j = 1.. holds one root of g = sin((n+1) theta) + sqrt(c) sin(n theta)
    # in [j pi / (n + 1), j pi / n] (g has sign (-1)^(j+1) at the lower end).
    j = np.arange(1, n - lower_count + 1, dtype=float)
    theta = _bisect(
        lambda x: np.sin((n + 1) * x) + root * np.sin(n * x),
        j * math.pi / (n + 1),
        j * math.pi / n,
        np.where(j % 2 == 1, 1.0, -1.0),
    )
    upper_nodes = (1.0 + root) ** 2 - 4.0 * root * np.sin(0.5 * theta) ** 2
    derivative = (n + 1) * np.cos((n + 1) * theta) + root * n * np.cos(n * theta)
    previous = np.sin(n * theta) + root * np.sin((n - 1) * theta)
    upper_weights = 2.0 * np.sin(theta) ** 3 / np.abs(derivative * previous)

    nodes = np.concatenate([lower_nodes, upper_nodes[::-1]])
    weights = np.concatenate([lower_weights, upper_weights[::-1]])
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


def marchenko_pastur_quadrature(alpha: float, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule of the continuous part ``mu`` of the MP law of ``Sigma_hat = X^T X / P``.

    ``D / P = 1 / alpha``. ``sum_i weights_i f(nodes_i)`` approximates ``int f dmu`` and is exact for
    polynomials of degree ``<= 2 order - 1``; ``sum(weights) = min(1, alpha)`` (the atom of mass
    ``(1 - alpha)_+`` at 0 is not included). Nodes are positive, increasing, and accurate to a few
    ulps relative also at the edges.

    Example
    -------
    >>> nodes, weights = marchenko_pastur_quadrature(2.0, 8)
    >>> round(float(weights @ nodes**2), 12)   # E l^2 = 1 + D / P
    1.5
    """
    alpha = positive("alpha", alpha)
    order = positive_int("order", order)
    if alpha >= 1.0:
        return _unit_mean_rule(1.0 / alpha, order)
    nodes, weights = _unit_mean_rule(alpha, order)
    return nodes / alpha, weights * alpha


# --------------------------------------------------------------------------------------------
# Stability and quadrature order
# --------------------------------------------------------------------------------------------


def gradient_descent_stability_bound(alpha: float) -> float:
    """Largest stable learning rate of full-batch GD, ``2 / lambda_max = 2 / (1 + alpha^{-1/2})^2``."""
    return 2.0 / marchenko_pastur_edges(alpha)[1]


def online_sgd_stability_bound(batch_ratio: float) -> float:
    """Largest stable learning rate of online SGD, ``2 alpha_B / (1 + alpha_B)`` (``g = 1`` there)."""
    batch_ratio = positive("batch_ratio", batch_ratio)
    return 2.0 * batch_ratio / (1.0 + batch_ratio)


def default_quadrature_order(alpha: float, learning_rate: float, steps: int, flow: bool = False) -> int:
    """The quadrature order used when none is given.

    At step ``t`` the integrands behave like ``|a(l)|^{2t}``, ``a = 1 - eta l`` (or ``exp(-2 eta l t)``
    for the flow), which concentrates at the edge(s) of the support where ``|a|`` is largest. Near an
    edge ``l_e`` with ``a_e = |1 - eta l_e|`` the decay is ``exp(-kappa psi^2)`` in the angle ``psi``
    of the Gauss rule (``|l - l_e| ~ s sqrt(c) psi^2``, ``c`` the ratio and ``s`` the scale of the law),
    with ``kappa = 2 t eta s sqrt(c) / a_e``. An edge stops mattering once ``(a_e / a_max)^{2t}``
    falls below ``e^-40``, so ``t`` is capped there. Nodes near an edge are ``~ pi / n`` apart in
    ``psi``; ``n = 48 + 4 pi sqrt(kappa_max)`` resolves the edge layers to ~1e-12 relative (checked
    against the exact order in tests/test_linear.py). For gradient descent the order never exceeds
    ``steps + 1``, where the rule is exact.
    """
    low, high = marchenko_pastur_edges(alpha)
    scale = 1.0 if alpha >= 1.0 else 1.0 / alpha
    width = math.sqrt(min(alpha, 1.0 / alpha)) * scale
    if flow:
        kappa = 2.0 * steps * learning_rate * width
        return int(48 + math.ceil(4.0 * math.pi * math.sqrt(kappa)))
    factors = [abs(1.0 - learning_rate * edge) for edge in (low, high)]
    largest = max(factors)
    kappa = 0.0
    for factor in factors:
        if factor == 0.0:
            continue  # a^t vanishes at that edge
        relevant_steps = steps if factor == largest else min(steps, 20.0 / math.log(largest / factor))
        kappa = max(kappa, 2.0 * relevant_steps * learning_rate * width / factor)
    return int(min(steps + 1, 48 + math.ceil(4.0 * math.pi * math.sqrt(kappa))))


# --------------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------------


def _signed_powers(factor: np.ndarray, log_factor: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    """``factor ** exponents`` as a ``(len(exponents), len(factor))`` table, from ``log|factor|``
    (``log_factor``, accurate also near 1) and the sign; ``0^0 = 1``."""
    with np.errstate(invalid="ignore"):
        magnitude = np.exp(np.multiply.outer(exponents, log_factor))  # 0 * (-inf) -> nan at 0
    magnitude[exponents == 0.0, :] = 1.0
    odd = (exponents % 2.0 == 1.0)[:, None] & (factor < 0.0)[None, :]
    return np.where(odd, -magnitude, magnitude)


def gradient_descent_curves(
    alpha: float,
    noise: float,
    teacher_variance: float,
    learning_rate: float,
    steps: int,
    *,
    flow: bool = False,
    order: int | None = None,
) -> dict[str, np.ndarray | int]:
    """Exact test and train loss of full-batch gradient descent (module docstring, THEORY.md section 3).

    Parameters
    ----------
    alpha : ``P / D``.
    noise : ``sigma``.
    teacher_variance : ``v = |beta*|^2 / D``.
    learning_rate : ``eta``; must satisfy ``eta <= 2 / lambda_max`` unless ``flow``.
    steps : ``T``; the curves have ``T + 1`` entries.
    flow : gradient flow, evaluated at times ``tau = eta t``, ``t = 0 .. T``.
    order : quadrature order (``None``: :func:`default_quadrature_order`).

    Returns
    -------
    dict with arrays of shape ``(T + 1,)``: ``test_loss``, ``train_loss``, ``test_loss_bias``,
    ``test_loss_noise_variance``, ``train_loss_bias``, ``train_loss_noise``; and ``order``.

    Raises
    ------
    dmft.errors.UnstableLearningRateError (a ValueError and a DivergenceError) : ``learning_rate >
        2 / lambda_max`` (gradient descent diverges: the top of the
        spectrum grows like ``|1 - eta lambda_max|^t``), or a bad argument.
    """
    alpha = positive("alpha", alpha)
    noise = non_negative("noise", noise)
    teacher_variance = non_negative("teacher_variance", teacher_variance)
    learning_rate = positive("learning_rate", learning_rate)
    steps = positive_int("steps", steps)
    if not isinstance(flow, bool):
        raise TypeError(f"`flow` must be a bool, got {flow!r}")
    if not flow:
        bound = gradient_descent_stability_bound(alpha)
        if learning_rate > bound:
            raise UnstableLearningRateError(
                f"`learning_rate` = {learning_rate:g} exceeds the stability bound of full-batch gradient "
                f"descent, 2 / lambda_max = {bound:.6g} (lambda_max = (1 + alpha^-1/2)^2 = "
                f"{2.0 / bound:.6g} at alpha = {alpha:g}): the loss diverges; lower `learning_rate`",
                learning_rate,
                bound,
            )
    if order is None:
        order = default_quadrature_order(alpha, learning_rate, steps, flow)
    order = positive_int("quadrature_order", order)

    nodes, weights = marchenko_pastur_quadrature(alpha, order)
    # Per-node weights of the three integrals: int f dmu, int l f dmu, int f / l dmu.
    weight_matrix = np.stack([weights, weights * nodes])
    weights_over_nodes = weights / nodes
    if flow:
        factor = np.exp(-learning_rate * nodes)
        log_factor = -learning_rate * nodes
    else:
        factor = 1.0 - learning_rate * nodes
        log_factor = np.full(order, -np.inf)  # a = 0 (eta l = 1): a^t = 0 for t > 0
        nonzero = factor != 0.0
        log_factor[nonzero] = np.log(np.abs(factor[nonzero]))
        positive_factor = factor > 0.0
        log_factor[positive_factor] = np.log1p(-learning_rate * nodes[positive_factor])

    # a^t = a^start a^k for t = start + k: one table of a^k, k < rows, and one row a^start per
    # block, so a block costs one multiplication per entry (no exponential).
    rows = int(min(steps + 1, _TABLE_ROWS, max(1, _BLOCK_ELEMENTS // order)))
    offsets = np.arange(rows, dtype=float)
    table = _signed_powers(factor, log_factor, offsets)
    squared_sums = np.empty((steps + 1, 2))  # int a^{2t} dmu, int l a^{2t} dmu
    noise_sum = np.empty(steps + 1)  # int (1 - a^t)^2 / l dmu
    for start in range(0, steps + 1, rows):
        count = min(rows, steps + 1 - start)
        anchor = _signed_powers(factor, log_factor, np.array([float(start)]))
        power = anchor * table[:count]  # a^t, signed
        remainder = 1.0 - power
        # where a^t > 1/2, 1 - a^t loses digits: -expm1(t log|a|) instead (a^t > 0 there)
        row, column = np.nonzero(power > 0.5)
        remainder[row, column] = -np.expm1((start + offsets[row]) * log_factor[column])
        squared_sums[start : start + count] = (power * power) @ weight_matrix.T
        noise_sum[start : start + count] = (remainder * remainder) @ weights_over_nodes

    atom = max(0.0, 1.0 - alpha)
    test_bias = teacher_variance * (squared_sums[:, 0] + atom)
    test_noise = noise**2 / alpha * noise_sum
    train_bias = teacher_variance * squared_sums[:, 1]
    train_noise = noise**2 / alpha * squared_sums[:, 0] + noise**2 * max(0.0, 1.0 - 1.0 / alpha)
    return {
        "test_loss": test_bias + test_noise + noise**2,
        "train_loss": train_bias + train_noise,
        "test_loss_bias": test_bias,
        "test_loss_noise_variance": test_noise,
        "train_loss_bias": train_bias,
        "train_loss_noise": train_noise,
        "order": order,
    }


def online_sgd_curves(
    batch_ratio: float,
    noise: float,
    teacher_variance: float,
    learning_rate: float,
    steps: int,
    *,
    dim: int | None = None,
) -> dict[str, np.ndarray]:
    """Exact mean curves of online SGD (module docstring): ``e_{t+1} = g e_t + eta^2 sigma^2 / alpha_B``.

    Parameters
    ----------
    batch_ratio : ``alpha_B = B / D``.
    noise, teacher_variance, learning_rate, steps : as :func:`gradient_descent_curves`.
    dim : ``None`` for ``D -> infinity``; an integer ``D`` gives the exact finite-``D`` mean, with
        ``B = round(alpha_B D)`` and ``g = 1 - 2 eta + eta^2 (1 + (D + 1) / B)``.

    Returns
    -------
    dict with arrays of shape ``(T + 1,)``: ``test_loss``, ``train_loss`` (equal: the batch is
    fresh), ``test_loss_bias`` (``v g^t``), ``test_loss_noise_variance`` (the label noise accumulated
    in ``beta``).

    Raises
    ------
    dmft.errors.UnstableLearningRateError (a ValueError and a DivergenceError) :
        ``learning_rate > 2 alpha_B / (1 + alpha_B)`` (``g > 1``: the loss diverges).
    """
    batch_ratio = positive("batch_ratio", batch_ratio)
    noise = non_negative("noise", noise)
    teacher_variance = non_negative("teacher_variance", teacher_variance)
    learning_rate = positive("learning_rate", learning_rate)
    steps = positive_int("steps", steps)
    bound = online_sgd_stability_bound(batch_ratio)
    if learning_rate > bound:
        raise UnstableLearningRateError(
            f"`learning_rate` = {learning_rate:g} exceeds the stability bound of online SGD, "
            f"2 alpha_B / (1 + alpha_B) = {bound:.6g} at batch_ratio = {batch_ratio:g}: the loss "
            "diverges; lower `learning_rate`",
            learning_rate,
            bound,
        )
    if dim is None:
        second_moment = 1.0 + 1.0 / batch_ratio  # E S^2 = (1 + 1/alpha_B) I
        noise_gain = 1.0 / batch_ratio  # E |sqrt(D) X^T eps / B|^2 / D
    else:
        dim = positive_int("dim", dim)
        batch = max(1, int(round(batch_ratio * dim)))
        second_moment = 1.0 + (dim + 1.0) / batch
        noise_gain = dim / batch
    gain = 1.0 - 2.0 * learning_rate + learning_rate**2 * second_moment
    drive = learning_rate**2 * noise**2 * noise_gain
    t = np.arange(steps + 1, dtype=float)
    decay = gain**t
    if gain == 1.0:
        accumulated = t
    else:
        accumulated = -np.expm1(t * math.log(gain)) / (1.0 - gain) if gain > 0.0 else (1.0 - decay) / (1.0 - gain)
    bias = teacher_variance * decay
    noise_part = drive * accumulated
    test = bias + noise_part + noise**2
    return {
        "test_loss": test,
        "train_loss": test.copy(),
        "test_loss_bias": bias,
        "test_loss_noise_variance": noise_part,
        "gain": gain,
    }


# --------------------------------------------------------------------------------------------
# Registry entry
# --------------------------------------------------------------------------------------------


def _supports(model, data: GaussianData, training) -> str | None:
    if data.spectrum is not None:
        return (
            "dmft.Linear (depth 0) with an anisotropic spectrum is not supported yet: the exact "
            "curve needs the generalised Marchenko-Pastur law; use spectrum=None (isotropic inputs) "
            "or finite_size.simulate"
        )
    return None


@register(Linear, trainings=(GradientDescent, OnlineSGD), supports=_supports)
def solve_linear(
    model: Linear,
    data: GaussianData,
    training: GradientDescent | OnlineSGD,
    *,
    flow: bool = False,
    quadrature_order: int | None = None,
) -> Result:
    """Exact ``D, P -> infinity`` curves of plain linear regression (THEORY.md section 3).

    Full-batch gradient descent: the Marchenko-Pastur integrals of the module docstring, by the
    Gauss rule of the MP law (exact for ``quadrature_order >= steps + 1``). Online SGD: the exact
    second-moment recursion ``e_{t+1} = g e_t + eta^2 sigma^2 / alpha_B``.

    Parameters
    ----------
    model : ``dmft.Linear()``.
    data : isotropic ``GaussianData`` (``spectrum=None``); the teacher enters only through its
        second moment ``v`` (1, or ``SparseTeacher.variance``).
    training : ``GradientDescent`` (needs ``data.alpha``) or ``OnlineSGD`` (``data.alpha=None``).
    flow : gradient descent only: the gradient-flow limit, at times ``tau = eta t``.
    quadrature_order : gradient descent only: order of the Gauss rule (default
        :func:`default_quadrature_order`).

    Returns
    -------
    Result with ``method="exact"``, ``test_loss``, ``train_loss`` (``steps + 1``), no SEM, and
    ``arrays``: ``test_loss_bias``, ``test_loss_noise_variance`` (test = bias + noise variance +
    sigma^2); for gradient descent also ``train_loss_bias``, ``train_loss_noise`` (train = their
    sum). ``info``: ``teacher_variance``, ``stability_bound`` (largest stable learning rate),
    ``wall_time_s``; gradient descent: ``quadrature_order``, ``quadrature_exact`` (order > steps),
    ``flow``; online SGD: ``gain`` (``g``).

    Raises
    ------
    dmft.errors.UnstableLearningRateError (a ValueError and a DivergenceError) : ``learning_rate``
        above the stability bound (``2 / (1 + alpha^{-1/2})^2`` for
        gradient descent, ``2 alpha_B / (1 + alpha_B)`` for online SGD), or options that do not
        apply to online SGD.

    Example
    -------
    >>> import dmft
    >>> r = dmft.solve(dmft.Linear(), dmft.GaussianData(alpha=2.0, noise=0.5),
    ...                dmft.GradientDescent(learning_rate=0.1, steps=100))
    >>> round(float(r.test_loss[0]), 12)
    1.25
    """
    started = time.perf_counter()
    teacher_variance = float(data.resolved_spectrum().teacher_variances[0])
    if isinstance(training, GradientDescent):
        curves = gradient_descent_curves(
            data.alpha,
            data.noise,
            teacher_variance,
            training.learning_rate,
            training.steps,
            flow=flow,
            order=quadrature_order,
        )
        order = int(curves.pop("order"))
        info = {
            "quadrature_order": order,
            "quadrature_exact": bool(order > training.steps and not flow),
            "flow": bool(flow),
            "stability_bound": gradient_descent_stability_bound(data.alpha),
        }
    else:
        if flow or quadrature_order is not None:
            raise ValueError(
                "`flow` and `quadrature_order` apply to GradientDescent only; online SGD has an exact "
                "recursion"
            )
        curves = online_sgd_curves(
            training.batch_ratio, data.noise, teacher_variance, training.learning_rate, training.steps
        )
        info = {
            "gain": float(curves.pop("gain")),
            "stability_bound": online_sgd_stability_bound(training.batch_ratio),
        }
    test_loss = curves.pop("test_loss")
    train_loss = curves.pop("train_loss")
    info["teacher_variance"] = teacher_variance
    info["wall_time_s"] = time.perf_counter() - started
    return Result(
        model=model,
        data=data,
        training=training,
        test_loss=test_loss,
        train_loss=train_loss,
        method="exact",
        arrays=curves,
        info=info,
    )
