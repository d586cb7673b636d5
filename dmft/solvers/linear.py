"""Depth 0, plain linear regression: the exact ``D, P -> infinity`` loss curves (THEORY.md sections 3, 6;
docs/continuous_time.md, "Depth 0").

Model ``f(x) = beta . x / sqrt(D)``, ``beta(0) = 0``, ``beta <- beta + eta_t u`` with
``u = sqrt(D) X^T (y - X beta / sqrt(D)) / B`` (``B = P`` for full-batch gradient descent, a fresh
batch of ``B = alpha_B D`` examples for online SGD), ``eta_t`` the rate of step ``t -> t + 1`` (a
number or a schedule). Write ``v`` for the teacher's second moment ``|beta*|^2 / D`` (1, or
``SparseTeacher.variance``) and ``sigma`` for the label-noise level.

Full-batch gradient descent (isotropic inputs)
----------------------------------------------
With ``Sigma_hat = X^T X / P``, ``w = sqrt(D) X^T eps / P`` and the propagator
``P_t(l) = prod_{s < t} (1 - eta_s l)`` (``(1 - eta l)^t`` for a constant rate),

    beta_t - beta* = -P_t(Sigma_hat) beta* + sigma Sigma_hat^+ (I - P_t(Sigma_hat)) w,   E w w^T = Sigma_hat / alpha

(the noise sum ``sum_s eta_s prod_{s < r < t} (1 - eta_r l) = (1 - P_t(l)) / l`` telescopes), so with
``mu`` the *continuous part* of the Marchenko-Pastur law of ``Sigma_hat`` (ratio ``D / P = 1 / alpha``,
support ``[(1 - alpha^{-1/2})^2, (1 + alpha^{-1/2})^2]``, mass ``min(1, alpha)``; the atom of mass
``(1 - alpha)_+`` at 0 is written out)::

    L(t)    = v [ int P_t^2 dmu + (1 - alpha)_+ ]                              test_loss_bias
            + (sigma^2 / alpha) int (1 - P_t)^2 / l dmu                        test_loss_noise_variance
            + sigma^2
    Lhat(t) = v int l P_t^2 dmu                                                 train_loss_bias
            + (sigma^2 / alpha) int P_t^2 dmu + sigma^2 (1 - 1/alpha)_+         train_loss_noise

The train loss follows from ``y - X beta_t / sqrt(D) = X P_t beta* / sqrt(D) + sigma (I - U U^T) eps
+ sigma U P_t(s^2 / P) U^T eps`` (``X = U s V^T``): the signal left to fit, the label noise outside the
column space of ``X`` (``P - D`` dimensions when ``alpha > 1``), the noise inside it not yet fitted.
Gradient flow (:class:`dmft.GradientFlow`, ``eta -> 0`` at fixed ``tau = sum_s eta_s``) is the same
with ``P_tau(l) = exp(-l tau)``.

Quadrature. All the integrals are over ``mu``, whose density has square-root edges (and a
``l^{-1/2}`` divergence at ``l = 0`` when ``alpha = 1``). They are computed by the Gauss rule of
``mu`` itself: the unit-mean Marchenko-Pastur law of ratio ``c <= 1`` has the constant Jacobi
parameters ``a_0 = 1``, ``a_k = 1 + c``, ``b_k = sqrt(c)`` (k >= 1), so its orthonormal polynomials
are, with ``l = (1 - sqrt c)^2 + 4 sqrt(c) sin^2(phi / 2)``,
``p_k = (-1)^k [sin((k + 1) phi) - sqrt(c) sin(k phi)] / sin(phi)``: the ``n`` Gauss nodes are the
roots of ``sin((n + 1) phi) = sqrt(c) sin(n phi)`` (one in each ``[(m - 1) pi / n, m pi / (n + 1)]``,
found by ``scipy.optimize.elementwise.find_root`` to full relative precision, also at the edges) and
the weights are ``1 / (b_n p_{n-1} p_n')``. For ``alpha < 1``, ``mu`` is ``alpha`` times the law of
ratio ``alpha`` scaled by ``1 / alpha`` (the nonzero eigenvalues of ``X^T X / P`` are those of
``X X^T / P``). Every integrand of gradient descent is a polynomial of degree at most ``2t + 1`` in
``l``, so a rule of order ``n >= steps + 1`` is *exact*; the order used is smaller where that loses
nothing (:func:`default_quadrature_order`, :func:`flow_quadrature_order`) and is checked on every
solve against the rule of twice the order (doubled until they agree; ``info["quadrature_error"]``).

Online SGD and the population flow (any spectrum)
--------------------------------------------------
A fresh batch every step keeps the error covariance diagonal in the eigenbasis of ``Sigma``; per
share ``k`` (eigenvalue ``lambda_k``, fraction ``w_k`` of the directions, teacher variance ``b_k``),
``e_k(t) = E (beta_j - beta*_j)^2`` follows exactly from the Gaussian fourth moments
``E S A S = Sigma A Sigma (1 + 1/B) + Sigma tr(A Sigma) / B``:

    e_k(t + 1) = [(1 - eta_t lambda_k)^2 + eta_t^2 lambda_k^2 / B] e_k(t)
                 + eta_t^2 lambda_k (D / B) L(t),                              e_k(0) = b_k,
    L(t) = sum_k w_k lambda_k e_k(t) + sigma^2,   Lhat(t) = L(t)  (the loss on the step's fresh batch)

(``1 / B -> 0`` and ``D / B -> 1 / alpha_B`` as ``D -> infinity``). For one share (isotropic data) it
is the scalar recursion ``e_{t+1} = g e_t + eta^2 sigma^2 / alpha_B``, ``g = (1 - eta)^2 + eta^2 /
alpha_B``, solved in closed form. A constant rate is stable iff the spectral radius of the linear map
is below 1: ``eta < 2 / lambda_max`` and ``(eta / alpha_B) sum_k w_k lambda_k / (2 - eta lambda_k) < 1``
(isotropic: ``eta < 2 alpha_B / (1 + alpha_B)``). The population flow (``GradientFlow`` with
``alpha=None``, the ``eta -> 0`` limit where the SGD noise ``O(eta^2)`` per step vanishes) is
``L(tau) = sum_k w_k lambda_k b_k exp(-2 lambda_k tau) + sigma^2``.
"""

from __future__ import annotations

import math
import time as _time
from functools import lru_cache

import numpy as np
from scipy import optimize
from scipy.optimize import elementwise

from ..data import GaussianData, Spectrum
from ..errors import UnstableLearningRateError
from ..models import Linear
from ..result import Result, diagnose
from ..training import GradientDescent, GradientFlow, OnlineSGD
from .._validate import non_negative, positive, positive_int
from . import register

__all__ = [
    "solve_linear",
    "marchenko_pastur_edges",
    "marchenko_pastur_quadrature",
    "default_quadrature_order",
    "flow_quadrature_order",
    "gradient_descent_stability_bound",
    "online_sgd_stability_bound",
    "gradient_descent_curves",
    "gradient_flow_curves",
    "online_sgd_curves",
    "population_flow_curves",
    "default_flow_times",
]

# Elements of one (rows x nodes) block of powers (2 MB: fits the cache, measured fastest).
_BLOCK_ELEMENTS = 1 << 18
# Rows of the table of powers a^k (each later row a^t = a^start a^k costs one multiplication).
_TABLE_ROWS = 512
# Gradient descent: the rule of order n is accepted when it agrees with the rule of order 2n to
# this relative accuracy (the orders are designed for ~1e-12; a schedule may need more).
GRADIENT_DESCENT_QUADRATURE_RTOL = 1e-10
# The largest quadrature order tried for the flow (memory of a rule: 16 bytes per node).
_MAX_FLOW_ORDER = 1 << 22
# Rows (steps or times) on which a rule is compared with the rule of twice its order.
_CHECK_ROWS = 33
# Default flow grid: this many points per decade, from min(_FIRST_TIME, time / 1e3) to time.
_POINTS_PER_DECADE = 20
_FIRST_TIME = 1e-2


# --------------------------------------------------------------------------------------------
# Marchenko-Pastur law and its Gauss rule
# --------------------------------------------------------------------------------------------


def marchenko_pastur_edges(alpha: float) -> tuple[float, float]:
    """Edges ``((1 - alpha^{-1/2})^2, (1 + alpha^{-1/2})^2)`` of the MP law of ``X^T X / P``."""
    alpha = positive("alpha", alpha)
    root = 1.0 / math.sqrt(alpha)
    return (1.0 - root) ** 2, (1.0 + root) ** 2


def _roots(function, low, high) -> np.ndarray:
    """The root of ``function`` in each bracket ``[low, high]`` (vectorised), to full precision.

    ``scipy.optimize.elementwise.find_root`` (Chandrupatla's bracketing method) with its default
    tolerances (``4 eps`` relative in the root); raises if any bracket fails.
    """
    result = elementwise.find_root(function, (low, high))
    if not np.all(result.success):
        bad = int(np.flatnonzero(~result.success)[0])
        raise ArithmeticError(
            f"Gauss node of the Marchenko-Pastur rule not found in [{low[bad]!r}, {high[bad]!r}] "
            f"(find_root status {int(result.status[bad])})"
        )
    return result.x


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

    # Lower half: bracket m = 1.. holds one root of h in [(m - 1) pi / n, m pi / (n + 1)]; h has no
    # root in (0, pi / (2n + 1)) (there every term of the product form below is positive), so the
    # first bracket starts at pi / (2 (2n + 1)) instead of at the trivial root phi = 0.
    m = np.arange(1, lower_count + 1, dtype=float)
    low = (m - 1.0) * math.pi / n
    low[0] = 0.5 * math.pi / (2 * n + 1)
    phi = _roots(
        # h = [sin((n+1) phi) - sin(n phi)] + (1 - sqrt c) sin(n phi), the bracket as a product
        lambda x: 2.0 * np.cos((n + 0.5) * x) * np.sin(0.5 * x) + gap * np.sin(n * x),
        low,
        m * math.pi / (n + 1),
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
    # in [j pi / (n + 1), j pi / n] (g is nonzero at both ends).
    j = np.arange(1, n - lower_count + 1, dtype=float)
    theta = _roots(
        lambda x: np.sin((n + 1) * x) + root * np.sin(n * x),
        j * math.pi / (n + 1),
        j * math.pi / n,
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


def online_sgd_stability_bound(batch_ratio: float, spectrum: Spectrum | None = None) -> float:
    """Largest stable constant learning rate of online SGD (``D -> infinity``).

    Isotropic inputs (``spectrum=None``): ``2 alpha_B / (1 + alpha_B)`` (``g = 1`` there). A spectrum:
    the root ``eta`` in ``(0, 2 / lambda_max)`` of ``(eta / alpha_B) sum_k w_k lambda_k /
    (2 - eta lambda_k) = 1``, where the spectral radius of the per-share recursion (module
    docstring) reaches 1 (``scipy.optimize.brentq``); ``2 / lambda_max`` when the left side stays
    below 1 up to there (negligible minibatch noise).
    """
    batch_ratio = positive("batch_ratio", batch_ratio)
    if spectrum is None:
        return 2.0 * batch_ratio / (1.0 + batch_ratio)
    eigenvalues = np.asarray(spectrum.eigenvalues)
    weights = spectrum.weight_array()
    top = 2.0 / float(eigenvalues.max())

    def excess(eta: float) -> float:
        return eta / batch_ratio * float(np.sum(weights * eigenvalues / (2.0 - eta * eigenvalues))) - 1.0

    right = top * (1.0 - 1e-12)
    if excess(right) <= 0.0:
        return top
    return float(optimize.brentq(excess, 0.0, right, xtol=1e-15, rtol=4 * np.finfo(float).eps))


def _edge_scale(alpha: float) -> float:
    """``s sqrt(c)``: ``|l - l_edge| ~ s sqrt(c) psi^2`` in the angle ``psi`` of the Gauss rule."""
    scale = 1.0 if alpha >= 1.0 else 1.0 / alpha
    return math.sqrt(min(alpha, 1.0 / alpha)) * scale


def _order_for(kappa: float) -> int:
    """``48 + 4 pi sqrt(kappa)``: resolves an edge layer ``exp(-kappa psi^2)`` to ~1e-12 relative."""
    return int(48 + math.ceil(4.0 * math.pi * math.sqrt(max(kappa, 0.0))))


def default_quadrature_order(alpha: float, rates) -> int:
    """The quadrature order used first for gradient descent with per-step ``rates`` (``(steps,)``).

    At step ``t`` the integrands behave like ``P_t(l)^2``, which concentrates at the edge(s) ``l_e`` of
    the support where ``|P_t|`` is largest. Near an edge the decay is ``exp(-kappa psi^2)`` in the angle
    ``psi`` of the Gauss rule (``|l - l_e| ~ s sqrt(c) psi^2``, ``c`` the ratio and ``s`` the scale of
    the law), with ``kappa = 2 s sqrt(c) |d log|P_t| / dl| = 2 s sqrt(c) sum_{s < t} eta_s /
    |1 - eta_s l_e|``. An edge stops mattering once ``|P_t(l_e) / P_t(l_max)|^2`` falls below
    ``e^-40``. Nodes near an edge are ``~ pi / n`` apart in ``psi``; ``n = 48 + 4 pi sqrt(kappa_max)``
    resolves the edge layers to ~1e-12 relative (checked against the exact order in
    tests/test_linear.py, and on every solve against the rule of twice the order). Never more than
    ``steps + 1``, where the rule is exact.
    """
    rates = np.atleast_1d(np.asarray(rates, dtype=float))
    steps = rates.size
    edges = marchenko_pastur_edges(alpha)
    factors = np.abs(1.0 - np.multiply.outer(rates, edges))  # (steps, 2)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero factor: -inf, and -inf - -inf
        log_magnitude = np.cumsum(np.log(factors), axis=0)  # log|P_t(l_e)|, -inf after a zero
        slope = np.cumsum(rates[:, None] / factors, axis=0)  # |d log|P_t| / dl| at the edge
        relevant = log_magnitude - log_magnitude.max(axis=1, keepdims=True) > -20.0
    kappa = 2.0 * _edge_scale(alpha) * float(np.max(np.where(relevant, slope, 0.0)))
    return min(steps + 1, _order_for(kappa))


def flow_quadrature_order(alpha: float, time: float) -> int:
    """The quadrature order used first for the gradient flow up to ``time``: the order of
    :func:`default_quadrature_order` with ``kappa = 2 s sqrt(c) tau`` (``P = exp(-l tau)``; the
    lower edge ``l_-`` always dominates), ``tau = min(time, 400 / l_-)``: beyond ``tau = 400 / l_-``
    every ``exp(-2 l tau)`` on the support underflows and ``1 - exp(-l tau)`` rounds to 1, so the
    integrands stop changing (``alpha != 1``)."""
    time = positive("time", time)
    low = marchenko_pastur_edges(alpha)[0]
    if low > 0.0:
        time = min(time, 400.0 / low)
    return _order_for(2.0 * _edge_scale(alpha) * time)


# --------------------------------------------------------------------------------------------
# Full-batch curves: blocks of the propagator P(t, l) on the nodes, and the MP integrals
# --------------------------------------------------------------------------------------------


def _log_factors(rate: float | np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``1 - eta l`` and ``log|1 - eta l|`` (``log1p`` where positive; ``-inf`` where zero)."""
    factor = 1.0 - np.multiply.outer(rate, nodes)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_factor = np.where(
            factor > 0.0, np.log1p(-np.multiply.outer(rate, nodes)), np.log(np.abs(factor))
        )
    return factor, log_factor


def _signed_powers(factor: np.ndarray, log_factor: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    """``factor ** exponents`` as a ``(len(exponents), len(factor))`` table, from ``log|factor|``
    (``log_factor``, accurate also near 1) and the sign; ``0^0 = 1``."""
    with np.errstate(invalid="ignore"):
        magnitude = np.exp(np.multiply.outer(exponents, log_factor))  # 0 * (-inf) -> nan at 0
    magnitude[exponents == 0.0, :] = 1.0
    odd = (exponents % 2.0 == 1.0)[:, None] & (factor < 0.0)[None, :]
    return np.where(odd, -magnitude, magnitude)


def _remainder(power: np.ndarray, log_magnitude: np.ndarray) -> np.ndarray:
    """``1 - P``; where ``P > 1/2`` (then ``P = exp(log_magnitude) > 0``) as ``-expm1(log|P|)``,
    which keeps the digits that ``1 - P`` would lose."""
    remainder = 1.0 - power
    close = power > 0.5
    remainder[close] = -np.expm1(log_magnitude[close])
    return remainder


def _constant_rate_blocks(rate: float, steps: int, nodes: np.ndarray):
    """``(start, P, 1 - P)`` blocks of rows ``t = 0..steps`` of ``P_t(l) = (1 - eta l)^t``.

    ``a^t = a^start a^k`` for ``t = start + k``: one table of ``a^k``, ``k < rows``, and one row
    ``a^start`` per block, so a block costs one multiplication per entry (no exponential)."""
    factor, log_factor = _log_factors(rate, nodes)
    rows = int(min(steps + 1, _TABLE_ROWS, max(1, _BLOCK_ELEMENTS // nodes.size)))
    offsets = np.arange(rows, dtype=float)
    table = _signed_powers(factor, log_factor, offsets)
    for start in range(0, steps + 1, rows):
        count = min(rows, steps + 1 - start)
        anchor = _signed_powers(factor, log_factor, np.array([float(start)]))
        power = anchor * table[:count]
        with np.errstate(invalid="ignore"):
            log_magnitude = np.multiply.outer(start + offsets[:count], log_factor)
        yield start, power, _remainder(power, log_magnitude)


def _constant_rate_rows(rate: float, rows: np.ndarray, nodes: np.ndarray):
    """``(0, P, 1 - P)`` of ``P_t(l) = (1 - eta l)^t`` at the steps ``rows`` (one block)."""
    factor, log_factor = _log_factors(rate, nodes)
    power = _signed_powers(factor, log_factor, rows.astype(float))
    with np.errstate(invalid="ignore"):
        log_magnitude = np.multiply.outer(rows.astype(float), log_factor)
    yield 0, power, _remainder(power, log_magnitude)


def _schedule_blocks(rates: np.ndarray, nodes: np.ndarray, rows: np.ndarray | None = None):
    """``(position, P, 1 - P)`` blocks of ``P_t(l) = prod_{s<t} (1 - eta_s l)`` at the steps ``rows``
    (increasing; ``None``: every step ``0..len(rates)``); ``position`` is the index in ``rows``.

    Products accumulate block by block (``P_{t+1} = P_t (1 - eta_t l)``, no exponential; every
    ``|1 - eta_t l| <= 1`` below the stability bound, so nothing overflows) and ``1 - P`` by its own
    sum ``1 - P_{t+1} = (1 - P_t) + eta_t l P_t``, which loses no digits where ``P`` is near 1."""
    steps = rates.size
    block = int(max(1, min(steps + 1, _BLOCK_ELEMENTS // nodes.size)))
    wanted = np.arange(steps + 1) if rows is None else np.asarray(rows)
    power = np.ones(nodes.size)  # P and 1 - P at row `start`
    remainder = np.zeros(nodes.size)
    position = 0
    for start in range(0, steps + 1, block):
        count = min(block, steps + 1 - start)
        step_rates = rates[start : start + count]  # steps start .. ; one fewer in the last block
        powers = np.empty((step_rates.size + 1, nodes.size))
        powers[0] = power
        np.cumprod(1.0 - np.multiply.outer(step_rates, nodes), axis=0, out=powers[1:])
        powers[1:] *= power
        remainders = np.empty_like(powers)
        remainders[0] = remainder
        np.cumsum(np.multiply.outer(step_rates, nodes) * powers[:-1], axis=0, out=remainders[1:])
        remainders[1:] += remainder
        if start + count <= steps:
            power, remainder = powers[count], remainders[count]  # row start + count: the next block's first
        take = wanted[(wanted >= start) & (wanted < start + count)] - start
        if take.size:
            yield position, powers[take], remainders[take]
            position += take.size


def _flow_blocks(times: np.ndarray, nodes: np.ndarray):
    """``(start, P, 1 - P)`` blocks of ``P_tau(l) = exp(-l tau)`` at the given times."""
    rows = int(max(1, min(times.size, _BLOCK_ELEMENTS // nodes.size)))
    for start in range(0, times.size, rows):
        exponent = -np.multiply.outer(times[start : start + rows], nodes)
        power = np.exp(exponent)
        yield start, power, _remainder(power, exponent)


def _marchenko_pastur_curves(alpha, noise, teacher_variance, nodes, weights, blocks, rows) -> dict:
    """The loss parts of the module docstring from blocks of ``P`` on the Gauss nodes."""
    weight_matrix = np.stack([weights, weights * nodes])  # int f dmu, int l f dmu
    weights_over_nodes = weights / nodes  # int f / l dmu
    squared_sums = np.empty((rows, 2))  # int P^2 dmu, int l P^2 dmu
    noise_sum = np.empty(rows)  # int (1 - P)^2 / l dmu
    for start, power, remainder in blocks:
        count = power.shape[0]
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
    }


def _relative_difference(coarse: dict, fine: dict) -> float:
    """``max |coarse - fine| / |fine|`` over the test and train loss (equal entries, e.g. both
    underflowed to 0, count as 0; NaN is returned as NaN)."""
    worst = 0.0
    for key in ("test_loss", "train_loss"):
        difference = np.abs(coarse[key] - fine[key])
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(difference == 0.0, 0.0, difference / np.abs(fine[key]))
        if np.any(np.isnan(relative)):
            return math.nan
        worst = max(worst, float(np.max(relative)))
    return worst


def _check_rows(rows: int) -> np.ndarray:
    """The rows on which a rule is compared with the rule of twice its order: about
    ``_CHECK_ROWS`` evenly spaced indices, the last (the hardest: the most concentrated) included."""
    return np.unique(np.linspace(0, rows - 1, min(rows, _CHECK_ROWS)).round().astype(int))


def _refined(evaluate, order: int, limit: int, tolerance: float, rows: int) -> tuple[dict, int, float]:
    """Curves at ``order``, accepted when the rule of ``min(2 order, limit)`` agrees with them to
    ``tolerance`` on :func:`_check_rows`, else the order is doubled (until ``limit``, where the
    last curves are returned whatever their error). ``evaluate(order, rows)`` gives the curves on
    the row indices ``rows`` (``None``: all). Returns the curves, their order and their estimated
    relative error (the difference to the finer rule; NaN when no finer rule exists)."""
    check = _check_rows(rows)
    while True:
        curves = evaluate(order, None)
        finer_order = min(2 * order, limit)
        if finer_order == order:
            return curves, order, math.nan
        finer = evaluate(finer_order, check)
        error = _relative_difference({key: curves[key][check] for key in finer}, finer)
        if error <= tolerance or finer_order == limit:
            return curves, order, error
        order = finer_order


def _check_rates(rates: np.ndarray, bound: float, what: str, name: str, note: str) -> None:
    """Raise :class:`UnstableLearningRateError` naming the first step whose rate exceeds ``bound``."""
    above = np.flatnonzero(rates > bound)
    if above.size:
        step = int(above[0])
        where = f" at step {step}" if rates.size > 1 and np.any(rates != rates[0]) else ""
        raise UnstableLearningRateError(
            f"`learning_rate`{where} = {rates[step]:g} exceeds the stability bound of {what}, {name} = "
            f"{bound:.6g} ({note}): the loss grows at every such step and diverges if the rate is held; "
            "lower `learning_rate`",
            float(rates[step]),
            bound,
        )


def gradient_descent_curves(
    alpha: float,
    noise: float,
    teacher_variance: float,
    learning_rate,
    steps: int,
    *,
    order: int | None = None,
) -> dict[str, np.ndarray | int | float | bool]:
    """Exact test and train loss of full-batch gradient descent (module docstring, THEORY.md section 3).

    Parameters
    ----------
    alpha : ``P / D``.
    noise : ``sigma``.
    teacher_variance : ``v = |beta*|^2 / D``.
    learning_rate : ``eta`` (a number), or a schedule: ``(steps,)`` rates, entry ``t`` for the step
        ``t -> t + 1``; every rate must satisfy ``eta_t <= 2 / lambda_max``.
    steps : ``T``; the curves have ``T + 1`` entries.
    order : a fixed quadrature order (no refinement); ``None``: start at
        :func:`default_quadrature_order` and double until the rule agrees with the rule of twice its
        order to ``GRADIENT_DESCENT_QUADRATURE_RTOL`` (at most ``steps + 1``, where it is exact).

    Returns
    -------
    dict with arrays of shape ``(T + 1,)``: ``test_loss``, ``train_loss``, ``test_loss_bias``,
    ``test_loss_noise_variance``, ``train_loss_bias``, ``train_loss_noise``; ``order`` (of the
    curves returned), ``exact`` (``order > steps``) and ``error`` (their largest relative difference
    to the rule of twice the order on :func:`_check_rows`, an estimate of their quadrature error;
    NaN when no other order was evaluated: a given ``order``, or one that is exact from the start).

    Raises
    ------
    dmft.errors.UnstableLearningRateError (a ValueError and a DivergenceError) : a rate above
        ``2 / lambda_max`` (the top of the spectrum grows by ``|1 - eta lambda_max|`` at that
        step; the error names the first such step of a schedule), or a bad argument.
    """
    alpha = positive("alpha", alpha)
    noise = non_negative("noise", noise)
    teacher_variance = non_negative("teacher_variance", teacher_variance)
    steps = positive_int("steps", steps)
    schedule = np.ndim(learning_rate) > 0
    rates = np.asarray(learning_rate, dtype=float) if schedule else np.full(steps, positive("learning_rate", learning_rate))
    if rates.shape != (steps,) or not np.all(np.isfinite(rates)) or np.any(rates <= 0):
        raise ValueError(f"`learning_rate` must be a positive number or {steps} positive rates, got {learning_rate!r}")
    bound = gradient_descent_stability_bound(alpha)
    _check_rates(rates, bound, "full-batch gradient descent", "2 / lambda_max",
                 f"lambda_max = (1 + alpha^-1/2)^2 = {2.0 / bound:.6g} at alpha = {alpha:g}")

    def evaluate(n: int, rows: np.ndarray | None) -> dict:
        nodes, weights = marchenko_pastur_quadrature(alpha, n)
        if schedule:
            blocks = _schedule_blocks(rates, nodes, rows)
        elif rows is None:
            blocks = _constant_rate_blocks(rates[0], steps, nodes)
        else:
            blocks = _constant_rate_rows(rates[0], rows, nodes)
        count = steps + 1 if rows is None else rows.size
        return _marchenko_pastur_curves(alpha, noise, teacher_variance, nodes, weights, blocks, count)

    if order is not None:
        curves, error = evaluate(positive_int("quadrature_order", order), None), math.nan
    else:
        curves, order, error = _refined(evaluate, default_quadrature_order(alpha, rates), steps + 1,
                                        GRADIENT_DESCENT_QUADRATURE_RTOL, steps + 1)
    return {**curves, "order": order, "exact": order > steps, "error": error}


def default_flow_times(time: float) -> np.ndarray:
    """The default report times of a flow to ``time``: 0, then ``_POINTS_PER_DECADE`` geometric
    points per decade from ``min(0.01, time / 1000)`` to ``time``."""
    time = positive("time", time)
    first = min(_FIRST_TIME, time / 1e3)
    count = max(2, int(math.ceil(_POINTS_PER_DECADE * math.log10(time / first))) + 1)
    return np.concatenate([[0.0], np.geomspace(first, time, count)])


def gradient_flow_curves(
    alpha: float,
    noise: float,
    teacher_variance: float,
    times,
    *,
    order: int | None = None,
    rtol: float = 1e-10,
) -> dict[str, np.ndarray | int | float]:
    """Exact test and train loss of gradient flow on ``P = alpha D`` examples at flow ``times``.

    The integrals of :func:`gradient_descent_curves` with ``P_tau(l) = exp(-l tau)`` (module
    docstring). The quadrature starts at :func:`flow_quadrature_order` of the largest time and
    doubles until the rule agrees with the rule of twice its order to ``rtol`` (at most ``2^22``);
    a given ``order`` is used as it is.

    Returns
    -------
    dict with arrays of shape ``(len(times),)`` (the parts of :func:`gradient_descent_curves`),
    ``order`` (of the curves returned) and ``error`` (their largest relative difference to the rule
    of twice the order on :func:`_check_rows`, an estimate of their quadrature error; NaN for a
    given ``order``).
    """
    alpha = positive("alpha", alpha)
    noise = non_negative("noise", noise)
    teacher_variance = non_negative("teacher_variance", teacher_variance)
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)) or np.any(times < 0):
        raise ValueError(f"`times` must be a non-empty 1-D array of finite times >= 0, got {times!r}")

    def evaluate(n: int, rows: np.ndarray | None) -> dict:
        nodes, weights = marchenko_pastur_quadrature(alpha, n)
        at = times if rows is None else times[rows]
        return _marchenko_pastur_curves(alpha, noise, teacher_variance, nodes, weights, _flow_blocks(at, nodes), at.size)

    if order is not None:
        return {**evaluate(positive_int("quadrature_order", order), None), "order": order, "error": math.nan}
    start = flow_quadrature_order(alpha, max(float(times.max()), 1e-300))
    curves, order, error = _refined(evaluate, start, max(start, _MAX_FLOW_ORDER), rtol, times.size)
    return {**curves, "order": order, "error": error}


# --------------------------------------------------------------------------------------------
# Online SGD and the population flow: per-share curves for any spectrum
# --------------------------------------------------------------------------------------------


def _shares(spectrum: Spectrum) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.asarray(spectrum.eigenvalues), spectrum.weight_array(), np.asarray(spectrum.teacher_variances))


def online_sgd_curves(
    batch_ratio: float,
    noise: float,
    spectrum: Spectrum,
    learning_rate,
    steps: int,
    *,
    dim: int | None = None,
) -> dict[str, np.ndarray | float]:
    """Exact mean curves of online SGD on a spectrum (module docstring, "Online SGD").

    Parameters
    ----------
    batch_ratio : ``alpha_B = B / D``.
    noise : ``sigma``.
    spectrum : the shares (``GaussianData.resolved_spectrum()``; isotropic data is one share
        ``lambda = 1``, ``b = v``).
    learning_rate : a number, or ``(steps,)`` rates (a schedule).
    steps : ``T``; the curves have ``T + 1`` entries.
    dim : ``None`` for ``D -> infinity``; an integer ``D`` gives the exact finite-``D`` mean, with
        ``B = round(alpha_B D)`` (the terms ``1 / B`` and ``D / B`` of the recursion).

    Returns
    -------
    dict with arrays of shape ``(T + 1,)``: ``test_loss``, ``train_loss`` (equal: the batch is
    fresh), ``test_loss_bias`` (``L - sigma^2`` without label noise: the teacher not yet learned,
    with the minibatch noise it drives; ``v g^t`` for one share), ``test_loss_noise_variance`` (the
    label noise accumulated in ``beta``; ``L = bias + noise variance + sigma^2``); for one share and
    a constant rate also ``gain`` (``g``).

    Raises
    ------
    dmft.errors.UnstableLearningRateError (a ValueError and a DivergenceError) : a rate above
        :func:`online_sgd_stability_bound` (named by step for a schedule).
    """
    batch_ratio = positive("batch_ratio", batch_ratio)
    noise = non_negative("noise", noise)
    steps = positive_int("steps", steps)
    schedule = np.ndim(learning_rate) > 0
    rates = np.asarray(learning_rate, dtype=float) if schedule else np.full(steps, positive("learning_rate", learning_rate))
    if rates.shape != (steps,) or not np.all(np.isfinite(rates)) or np.any(rates <= 0):
        raise ValueError(f"`learning_rate` must be a positive number or {steps} positive rates, got {learning_rate!r}")
    isotropic = spectrum.modes == 1
    bound = online_sgd_stability_bound(batch_ratio, None if isotropic else spectrum)
    if isotropic:
        name, note = "2 alpha_B / (1 + alpha_B)", f"batch_ratio = {batch_ratio:g}"
    else:
        name, note = "eta*", f"(eta* / alpha_B) sum_k w_k lambda_k / (2 - eta* lambda_k) = 1 at batch_ratio = {batch_ratio:g}"
    _check_rates(rates, bound, "online SGD", name, note)
    if dim is None:
        inverse_batch, dim_over_batch = 0.0, 1.0 / batch_ratio
    else:
        dim = positive_int("dim", dim)
        batch = max(1, int(round(batch_ratio * dim)))
        inverse_batch, dim_over_batch = 1.0 / batch, dim / batch
    eigenvalues, weights, variances = _shares(spectrum)
    signal = weights * eigenvalues  # L - sigma^2 = signal . e

    if isotropic and not schedule:  # e_{t+1} = g e_t + d, in closed form
        lam, eta = float(eigenvalues[0]), float(rates[0])
        gain = (1.0 - eta * lam) ** 2 + eta**2 * lam**2 * (inverse_batch + dim_over_batch)
        drive = eta**2 * lam * noise**2 * dim_over_batch
        t = np.arange(steps + 1, dtype=float)
        if gain == 1.0:
            accumulated = t
        elif gain > 0.0:
            accumulated = -np.expm1(t * math.log(gain)) / (1.0 - gain)
        else:
            accumulated = (1.0 - gain**t) / (1.0 - gain)
        bias = lam * float(variances[0]) * gain**t
        noise_part = lam * drive * accumulated
        test = bias + noise_part + noise**2
        return {"test_loss": test, "train_loss": test.copy(), "test_loss_bias": bias,
                "test_loss_noise_variance": noise_part, "gain": gain}

    # Two runs of the recursion: with the label noise, and without it (the bias part).
    errors = np.stack([variances, variances]).astype(float)  # e_k(0) = b_k
    label_noise = np.array([noise**2, 0.0])
    excess = np.empty((steps + 1, 2))  # L - sigma^2, with and without label noise
    for t in range(steps + 1):
        excess[t] = errors @ signal
        if t == steps:
            break
        eta = rates[t]
        gain = (1.0 - eta * eigenvalues) ** 2 + eta**2 * eigenvalues**2 * inverse_batch
        errors = gain * errors + (eta**2 * dim_over_batch) * np.multiply.outer(excess[t] + label_noise, eigenvalues)
    test = excess[:, 0] + noise**2
    return {"test_loss": test, "train_loss": test.copy(), "test_loss_bias": excess[:, 1],
            "test_loss_noise_variance": excess[:, 0] - excess[:, 1]}


def population_flow_curves(noise: float, spectrum: Spectrum, times) -> dict[str, np.ndarray]:
    """The population gradient flow ``L(tau) = sum_k w_k lambda_k b_k exp(-2 lambda_k tau) + sigma^2``.

    Returns ``test_loss`` and ``train_loss`` (the population loss, equal) and ``test_loss_bias``
    (``L - sigma^2``), shape ``(len(times),)``.
    """
    noise = non_negative("noise", noise)
    times = np.asarray(times, dtype=float)
    eigenvalues, weights, variances = _shares(spectrum)
    bias = np.empty(times.size)
    rows = int(max(1, _BLOCK_ELEMENTS // eigenvalues.size))
    for start in range(0, times.size, rows):
        decay = np.exp(-2.0 * np.multiply.outer(times[start : start + rows], eigenvalues))
        bias[start : start + rows] = decay @ (weights * eigenvalues * variances)
    test = bias + noise**2
    return {"test_loss": test, "train_loss": test.copy(), "test_loss_bias": bias}


# --------------------------------------------------------------------------------------------
# Registry entry
# --------------------------------------------------------------------------------------------


def _supports(model, data: GaussianData, training) -> str | None:
    if data.spectrum is not None and data.alpha is not None:
        return (
            "dmft.Linear (depth 0) on a fixed data set (alpha) with an anisotropic spectrum is not "
            "supported: the exact curve needs the generalised Marchenko-Pastur law; use spectrum=None "
            "(isotropic inputs), OnlineSGD or the population GradientFlow (alpha=None), or "
            "finite_size.simulate"
        )
    return None


@register(Linear, trainings=(GradientDescent, OnlineSGD, GradientFlow), supports=_supports)
def solve_linear(
    model: Linear,
    data: GaussianData,
    training: GradientDescent | OnlineSGD | GradientFlow,
    *,
    quadrature_order: int | None = None,
) -> Result:
    """Exact ``D, P -> infinity`` curves of plain linear regression (THEORY.md sections 3 and 6).

    * ``GradientDescent`` (isotropic data with ``alpha``; a rate or a schedule): the
      Marchenko-Pastur integrals of the module docstring with ``P_t(l) = prod_s (1 - eta_s l)``, by
      the Gauss rule of the MP law (exact for ``quadrature_order >= steps + 1``).
    * ``GradientFlow`` with ``alpha`` (isotropic): the same integrals with ``P = exp(-l tau)`` at the
      flow times ``training.save_at`` (default :func:`default_flow_times`).
    * ``OnlineSGD`` (``alpha=None``, any spectrum; a rate or a schedule): the exact per-share
      second-moment recursion.
    * ``GradientFlow`` with ``alpha=None`` (any spectrum): the population flow
      ``sum_k w_k lambda_k b_k exp(-2 lambda_k tau) + sigma^2``.

    Parameters
    ----------
    model : ``dmft.Linear()``.
    data : ``GaussianData``; isotropic for full batch (``alpha`` given); the teacher enters only
        through its second moment (``v = 1``, ``SparseTeacher.variance``, or ``b_k`` per share).
    training : ``GradientDescent``, ``OnlineSGD`` or ``GradientFlow``.
    quadrature_order : full batch only: a fixed order of the Gauss rule (default: chosen and
        checked against twice the order, see :func:`gradient_descent_curves`).

    Returns
    -------
    Result with ``method="exact"``, ``test_loss``, ``train_loss`` at ``time`` (steps, or flow times),
    no SEM, and ``arrays``: ``test_loss_bias``, ``test_loss_noise_variance`` (test = bias + noise
    variance + sigma^2; the population flow has no noise variance) and, for full batch,
    ``train_loss_bias``, ``train_loss_noise`` (train = their sum). ``info``: ``wall_time_s``;
    full batch: ``quadrature_order``, ``quadrature_error`` (largest relative difference of the
    curves to the rule of twice the order on 33 of the rows, the last included: an estimate of
    their quadrature error; ``None`` when not computed),
    ``quadrature_exact`` (gradient descent: order > steps), ``stability_bound``, ``teacher_variance``;
    online SGD: ``stability_bound``, ``gain`` (one share, constant rate), ``shares``;
    population flow: ``shares``; flows: ``time_points``. ``status`` 1 (with an ``AccuracyWarning``)
    when the quadrature error exceeds ``training.rtol`` (flow) or ``GRADIENT_DESCENT_QUADRATURE_RTOL``.

    Raises
    ------
    dmft.errors.UnstableLearningRateError (a ValueError and a DivergenceError) : a rate above the
        stability bound (``2 / (1 + alpha^{-1/2})^2`` for gradient descent,
        :func:`online_sgd_stability_bound` for online SGD), naming the step of a schedule;
        ``quadrature_order`` with online SGD or the population flow.

    Example
    -------
    >>> import dmft
    >>> r = dmft.solve(dmft.Linear(), dmft.GaussianData(alpha=2.0, noise=0.5),
    ...                dmft.GradientFlow(time=1e4))
    >>> round(float(r.test_loss[-1]), 6)   # least squares: sigma^2 alpha / (alpha - 1)
    0.5
    """
    started = _time.perf_counter()
    spectrum = data.resolved_spectrum()
    full_batch = data.alpha is not None
    if quadrature_order is not None and not full_batch:
        raise ValueError(
            "`quadrature_order` applies to full-batch training only (alpha given); online SGD and the "
            "population flow are exact sums over the spectrum's shares"
        )
    time = None
    checks = []
    if full_batch:
        teacher_variance = float(spectrum.teacher_variances[0])
        if isinstance(training, GradientDescent):
            curves = gradient_descent_curves(data.alpha, data.noise, teacher_variance, training.learning_rate,
                                             training.steps, order=quadrature_order)
            tolerance = GRADIENT_DESCENT_QUADRATURE_RTOL
            info = {"quadrature_exact": bool(curves.pop("exact"))}
        else:
            time = default_flow_times(training.time) if training.save_at is None else np.asarray(training.save_at)
            curves = gradient_flow_curves(data.alpha, data.noise, teacher_variance, time, order=quadrature_order,
                                          rtol=training.rtol)
            tolerance = training.rtol
            info = {"time_points": int(time.size)}
        order, error = int(curves.pop("order")), float(curves.pop("error"))
        if quadrature_order is None and not info.get("quadrature_exact", False):
            checks.append(("quadrature error", error, tolerance, "pass a larger `quadrature_order`"))
        info.update({
            "quadrature_order": order,
            "quadrature_error": None if math.isnan(error) else error,
            "stability_bound": gradient_descent_stability_bound(data.alpha),
            "teacher_variance": teacher_variance,
        })
    elif isinstance(training, OnlineSGD):
        curves = online_sgd_curves(training.batch_ratio, data.noise, spectrum, training.learning_rate, training.steps)
        info = {"stability_bound": online_sgd_stability_bound(training.batch_ratio,
                                                              None if spectrum.modes == 1 else spectrum),
                "shares": spectrum.modes}
        if "gain" in curves:
            info["gain"] = float(curves.pop("gain"))
    else:
        time = default_flow_times(training.time) if training.save_at is None else np.asarray(training.save_at)
        curves = population_flow_curves(data.noise, spectrum, time)
        info = {"shares": spectrum.modes, "time_points": int(time.size)}
    status, message = diagnose(checks)
    test_loss = curves.pop("test_loss")
    train_loss = curves.pop("train_loss")
    info["wall_time_s"] = _time.perf_counter() - started
    return Result(
        model=model,
        data=data,
        training=training,
        test_loss=test_loss,
        train_loss=train_loss,
        method="exact",
        arrays=curves,
        info=info,
        time=time,
        status=status,
        message=message,
    )
