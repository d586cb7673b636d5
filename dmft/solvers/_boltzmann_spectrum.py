"""The couplings' top eigenvalues and the learning curves during large-N training (docs/spherical.md,
"Learning curves").

The resolvent on the data directions, ``Gd_ab(z) = e_a^T (z - W(t))^{-1} e_b``, from a probe
``y = (z - W(t))^{-1} sqrt(N) e_b`` run through the same cavity argument as the chain. With
``W(t) = B(t) + theta C - (K/2N) int e^{-gamma(t-u)/2} x(u) x(u)^T du`` a bulk site obeys
``y_i = g [phi^y_i + sum_k alpha_k x_i(u_k)]``, ``g = G(z)`` the semicircle's Stieltjes transform
(variance ``J^2``), the data sites ``Y_b = g [delta_b + sum_k alpha_k s_b(u_k)] / (1 - g theta c_b)``
and, on the grid ``u_0 .. u_m = t`` of the memory window (weights ``w``, ``e_k = e^{-gamma(t-u_k)/2}``)::

    alpha = -(K/2) w e p + g J^2 e (Gam^T alpha)          (the x x^T memory, the cavity reaction)
    p     = s Y + g J^2 Gam (e p) + g Qb alpha            (p_k = x(u_k).y/N)

with ``Qb`` the bulk part of the chain's correlation and ``Gam[k', k]`` its response to a source at
``u_k`` (``nu w_k R(u_k', u_k)`` for a finite chain speed; the slow response ``G`` for an
equilibrium chain). One dense solve gives ``Gd(z)`` for all ``K`` probes. Outliers are the ``z``
above the bulk edge ``2J`` where an eigenvalue of ``Gd(z)^{-1}`` vanishes (the count of its
negative eigenvalues is the number of outliers above ``z``); the squared overlaps of the
eigenvector with the data directions are ``u_b^2 / (d lambda / dz)`` (``u``: the null vector).

Learning curves from the top eigenvalue ``lambda_1`` (mean spherical model, bulk semicircle)::

    mu        = the root of G(mu) = beta if it lies above lambda_1, else lambda_1 (condensed)
    log Z / N = (beta mu - 1 - ln beta - Phi(mu)) / 2,   Phi(z) = -ln G(z) + z G(z)/2 - 1/2
    train     = -(beta / 2K) sum_a c_a W_aa + log Z / N,   W_aa = theta c_a - (K/2) int e^{-gamma(t-u)/2} s_a(u)^2 du
    forward   = ln(omega*)/2 - (beta/2) m* o W_11 + log Z / N                        (teacher, o = K m*/c_1)
    reverse   = (beta mu - 1)/2 - log Z / N - (omega*/2) m o (v_1.e_1)^2 + (omega* - ln omega* - 1)/2
                (m = 1 - G(lambda_1)/beta the condensed fraction, 0 when paramagnetic)
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from ..boltzmann import forward_kl, reverse_kl

__all__ = ["stieltjes", "log_potential", "data_resolvent", "top_outlier", "learning_curves"]


def stieltjes(z: float, J2: float) -> float:
    """``G(z) = (z - sqrt(z^2 - 4 J^2)) / (2 J^2)`` for ``z >= 2J`` (``1/z`` when ``J = 0``)."""
    if J2 == 0:
        return 1.0 / z
    return (z - math.sqrt(max(z * z - 4 * J2, 0.0))) / (2 * J2)


def log_potential(z: float, J2: float) -> float:
    """``Phi(z) = int rho(l) ln(z - l) dl`` of the semicircle of variance ``J^2``, ``z >= 2J``."""
    g = stieltjes(z, J2)
    return -math.log(g) + z * g / 2 - 0.5 if J2 > 0 else math.log(z)


def data_resolvent(z, J2, theta, c, s, e, w, Qb, Gam):
    """``Gd(z)`` ``(K, K)`` from the window's arrays (module docstring): ``s`` ``(m+1, K)``, ``e``,
    ``w`` ``(m+1,)``, ``Qb``, ``Gam`` ``(m+1, m+1)``. One evaluation of :func:`resolvent_function`."""
    return resolvent_function(J2, theta, c, s, e, w, Qb, Gam)(z)


def resolvent_function(J2, theta, c, s, e, w, Qb, Gam):
    """``z -> Gd(z)`` for one window: the ``z``-independent blocks of the linear system (module
    docstring) are built once, so that each evaluation (a root search makes about seven) only adds
    the terms in ``g = G(z)`` and ``Dg`` and solves. The system, with ``size = m + 1``::

        [ I - g J^2 diag(e) Gam^T      (K/2) diag(w e)          ] [alpha]   [ 0  ]
        [ -(s Dg s^T + g Qb)            I - g J^2 Gam diag(e)    ] [beta ] = [ sD ]

    ``Gd = Dg (I + s^T alpha)``, ``Dg = g / (1 - g theta c)``, ``sD = s Dg``."""
    K = c.size
    size = e.size
    top_memory = J2 * (e[:, None] * Gam.T)
    bottom_memory = J2 * (Gam * e[None, :])
    base = np.eye(2 * size)
    base[:size, size:] = np.diag((K / 2) * w * e)
    identity = np.eye(K)

    def evaluate(z):
        g = stieltjes(z, J2)
        if np.any(np.abs(1.0 - g * theta * c) < 1e-14):  # exactly on a bare spike's pole: step off it
            return evaluate(z * (1 + 1e-12) + 1e-15)
        Dg = g / (1.0 - g * theta * c)
        sD = s * Dg
        A = base.copy()
        A[:size, :size] -= g * top_memory
        A[size:, :size] = -(sD @ s.T + g * Qb)
        A[size:, size:] -= g * bottom_memory
        rhs = np.zeros((2 * size, K))
        rhs[size:] = sD
        alpha = np.linalg.solve(A, rhs)[:size]
        return Dg[:, None] * (identity + s.T @ alpha)

    return evaluate


def _above(resolvent, root):
    """``(eigenvalues, eigenvectors, delta)`` of ``Gd^{-1}(root + delta)``, ``delta = 1e-6 max(1, |root|)``
    (``None`` if that system is singular)."""
    delta = 1e-6 * max(1.0, abs(root))
    try:
        inverse = np.linalg.inv(resolvent(root + delta))
    except np.linalg.LinAlgError:
        return None
    values, vectors = np.linalg.eigh(inverse)
    return values, vectors, delta


def top_outlier(resolvent, edge: float, ceiling: float, guess: float | None = None):
    """``(lambda_1, squared overlaps (K,))`` of the top eigenvalue of the couplings seen from the
    data directions, or ``(edge, zeros)`` when no outlier leaves the bulk. ``resolvent(z)`` gives
    ``Gd(z)``; the outliers lie in ``(edge, ceiling)``."""

    def smallest(z):
        try:
            inverse = np.linalg.inv(resolvent(z))
        except np.linalg.LinAlgError:
            # the window's linear system is singular exactly at a pole of Gd (a root search, e.g.
            # the secant steps below, landed on the outlier to machine precision): there the
            # smallest eigenvalue of Gd^{-1} is 0
            return 0.0
        return np.linalg.eigvalsh(inverse)[0]

    low = edge + 1e-7 * max(1.0, ceiling)  # (for J = 0 the "bulk" is a point mass at 0)
    root = None
    if guess is not None and low < guess < ceiling:
        # secant steps from the previous time's eigenvalue; accepted only if they land on a root
        # with no outlier above it (the smallest eigenvalue of Gd^{-1} positive just above)
        z0, z1 = guess, guess * (1 + 1e-3) + 1e-6
        f0, f1 = smallest(z0), smallest(z1)
        for _ in range(12):
            if f1 == f0:
                break
            z2 = z1 - f1 * (z1 - z0) / (f1 - f0)
            if not low < z2 < ceiling:
                break
            z0, f0, z1, f1 = z1, f1, z2, smallest(z2)
            if abs(z1 - z0) <= 1e-11 * max(1.0, abs(z1)):
                # accept z1 if Gd^{-1} changes sign there: positive just above (the evaluation
                # that also gives the slope below, at root + delta), not positive just below
                above = _above(resolvent, z1)
                if above is not None and above[0][0] > 0 and smallest(max(z1 - 1e-7 * max(1.0, abs(z1)), low)) <= 0:
                    root = z1
                break
    if root is None:
        if smallest(low) > 0:
            K = resolvent(ceiling).shape[0]
            return edge, np.zeros(K)
        root = brentq(smallest, low, ceiling, xtol=1e-12, rtol=1e-10)
        above = _above(resolvent, root)
        if above is None:
            raise FloatingPointError(f"the data resolvent is singular just above the top outlier {root:.12g}; "
                                     "lower `rtol` (a finer grid) or report at other times")
    # null vector and slope at the root: Gd^{-1}(z) ~ (z - lambda) u u^T / |V|^2
    values, vectors, delta = above
    slope = values[0] / delta
    overlaps = vectors[:, 0] ** 2 / slope
    return root, overlaps


def learning_curves(top, overlap_11, W_data, c, beta, J2, teacher=None):
    """The learning curves of one time (module docstring) as a dict of floats. ``top``: the top
    eigenvalue; ``overlap_11``: ``(v_1.e_1)^2``; ``W_data``: ``W_aa`` ``(K,)``; ``teacher``: a
    :class:`dmft.SpikedTeacher` or ``None``."""
    K = c.size
    edge_g = stieltjes(top, J2) if (J2 > 0 or top > 0) else math.inf
    # paramagnetic multiplier: G(mu) = beta with mu above the top eigenvalue
    if beta < edge_g:
        mu = beta * J2 + 1.0 / beta  # the inverse of G(mu) = beta: mu = 1/G + J^2 G
        mu = max(mu, top)
        condensed = 0.0
    else:
        mu = top
        condensed = 1.0 - edge_g / beta
    log_z = 0.5 * (beta * mu - 1.0 - math.log(beta) - log_potential(mu, J2))
    out = {
        "equilibrium_multiplier": mu,
        "condensed_fraction": condensed,
        "log_partition": log_z,
        "train_loss": -beta * float(c @ W_data) / (2 * K) + log_z,
    }
    if teacher is not None:
        omega, m = teacher.strength, teacher.condensed_fraction
        o = teacher.teacher_overlap
        out["forward_kl"] = float(forward_kl(omega, beta, m * o * W_data[0], log_z))
        out["reverse_kl"] = float(reverse_kl(omega, beta, mu, log_z, condensed * o * overlap_11))
    return out
