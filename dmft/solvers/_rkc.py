"""Second-order Runge-Kutta-Chebyshev (RKC) steps for mildly stiff flows (docs/continuous_time.md).

Gradient flows of the diagonal-network DMFT are stiff in a mild, real way: the Jacobian's
eigenvalues are (close to) real and negative, from the slowest direction of the data kernel
(``~0.02``) to the fastest (``~10`` in the rich regime, ``~400`` at ``init_scale = 3``). An
explicit method's step is limited by the fastest rate long after the fast modes have decayed;
an ``s``-stage RKC method is stable on the real interval ``[-beta(s), 0]`` with
``beta(s) ~ 0.65 s^2``, so the cost of a step of length ``h`` grows only like ``sqrt(h rho)``
(``rho`` the spectral radius) instead of ``h rho``, and every stage is one evaluation of the
right-hand side (no linear algebra).

The scheme (Sommeijer, Shampine & Verwer 1998, damping ``epsilon = 2/13``)::

    w0 = 1 + epsilon / s^2,   w1 = T_s'(w0) / T_s''(w0),   b_j = T_j''(w0) / T_j'(w0)^2 (b_0 = b_1 = b_2)
    Y_0 = y_n,   Y_1 = Y_0 + mu~_1 h F(Y_0),   mu~_1 = b_1 w1
    Y_j = (1 - mu_j - nu_j) Y_0 + mu_j Y_{j-1} + nu_j Y_{j-2} + mu~_j h F(Y_{j-1}) + gamma~_j h F(Y_0)
    mu_j = 2 b_j w0 / b_{j-1},  nu_j = -b_j / b_{j-2},  mu~_j = 2 b_j w1 / b_{j-1},
    gamma~_j = -(1 - b_{j-1} T_{j-1}(w0)) mu~_j,          y_{n+1} = Y_s

with ``T_j`` the Chebyshev polynomials, and the local error estimate
``est = 0.8 (y_n - y_{n+1}) + 0.4 h (F(y_n) + F(y_{n+1}))`` (``O(h^3)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["RKCStages", "stages_for", "rkc_step", "error_estimate", "DAMPING"]

DAMPING = 2.0 / 13.0


@dataclass(frozen=True)
class RKCStages:
    """Coefficients of the ``s``-stage scheme (index ``j = 0 .. s``; unused entries are 0) and its
    real stability interval ``[-stability, 0]``."""

    stages: int
    mu: np.ndarray
    nu: np.ndarray
    mu_tilde: np.ndarray
    gamma_tilde: np.ndarray
    stability: float


@lru_cache(maxsize=None)
def coefficients(stages: int) -> RKCStages:
    """The RKC coefficients for ``stages >= 2`` (module docstring)."""
    if stages < 2:
        raise ValueError(f"RKC needs at least 2 stages, got {stages}")
    s = stages
    w0 = 1.0 + DAMPING / (s * s)
    T = np.zeros(s + 1)
    dT = np.zeros(s + 1)
    ddT = np.zeros(s + 1)
    T[0], T[1], dT[1] = 1.0, w0, 1.0
    for j in range(2, s + 1):
        T[j] = 2.0 * w0 * T[j - 1] - T[j - 2]
        dT[j] = 2.0 * T[j - 1] + 2.0 * w0 * dT[j - 1] - dT[j - 2]
        ddT[j] = 4.0 * dT[j - 1] + 2.0 * w0 * ddT[j - 1] - ddT[j - 2]
    w1 = dT[s] / ddT[s]
    b = np.zeros(s + 1)
    b[2:] = ddT[2:] / dT[2:] ** 2
    b[0] = b[1] = b[2]
    a = 1.0 - b * T
    mu, nu, mu_tilde, gamma_tilde = (np.zeros(s + 1) for _ in range(4))
    mu_tilde[1] = b[1] * w1
    for j in range(2, s + 1):
        mu[j] = 2.0 * b[j] * w0 / b[j - 1]
        nu[j] = -b[j] / b[j - 2]
        mu_tilde[j] = 2.0 * b[j] * w1 / b[j - 1]
        gamma_tilde[j] = -a[j - 1] * mu_tilde[j]
    return RKCStages(s, mu, nu, mu_tilde, gamma_tilde, (w0 + 1.0) * ddT[s] / dT[s])


def stages_for(step: float, spectral_radius: float, most: int) -> int:
    """The fewest stages (``>= 2``, ``<= most``) whose stability interval holds ``step * spectral_radius``
    (``beta(s) ~ 0.653 s^2``, checked exactly)."""
    need = step * spectral_radius
    s = max(2, int(math.ceil(math.sqrt(need / 0.65))) if need > 0 else 2)
    while s > 2 and coefficients(s - 1).stability >= need:
        s -= 1
    while s < most and coefficients(s).stability < need:
        s += 1
    return min(s, most)


def rkc_step(rhs, y0, f0, step: float, stages: int):
    """One RKC step of length ``step`` from ``y0`` (with ``f0 = rhs(y0)``): returns ``y_{n+1}``.

    ``rhs(y)`` returns ``F(y)``; arrays support ``+``, ``*`` by scalars (NumPy or any array API).
    """
    c = coefficients(stages)
    previous, current = y0, y0 + (c.mu_tilde[1] * step) * f0
    for j in range(2, stages + 1):
        following = ((1.0 - c.mu[j] - c.nu[j]) * y0 + c.mu[j] * current + c.nu[j] * previous
                     + (c.mu_tilde[j] * step) * rhs(current) + (c.gamma_tilde[j] * step) * f0)
        previous, current = current, following
    return current


def error_estimate(y0, y1, f0, f1, step: float):
    """The local error estimate ``0.8 (y_n - y_{n+1}) + 0.4 h (F(y_n) + F(y_{n+1}))``."""
    return 0.8 * (y0 - y1) + (0.4 * step) * (f0 + f1)
