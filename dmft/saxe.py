"""Exact learning dynamics of deep linear networks (Saxe, McClelland & Ganguli 2014; THEORY.md section 3).

Setting: whitened inputs (``Sigma_xx = I``), input-output correlation ``Sigma_yx = U diag(s) V^T``,
a linear network of ``depth`` hidden layers, i.e. ``N_w = depth + 1`` weight matrices, trained by
gradient flow on ``(1/2) E|y - W_total x|^2`` with time constant ``tau`` (``tau = 1 / learning_rate``
when time is the step count of gradient descent). From balanced, decoupled initial conditions
(every layer is diagonal in bases aligned with ``U``, ``V`` and carries per-layer strength ``a`` in
each mode) the modes evolve independently and stay balanced; the mode strength ``u = a^{N_w}``
(the ``a``-th singular value of ``W_total``) obeys

    tau da/dt = a^{N_w - 1} (s - a^{N_w}),   i.e.   tau du/dt = N_w u^{2 - 2/N_w} (s - u).

* ``N_w = 1`` (depth 0, linear regression): ``tau du/dt = s - u``,
  ``u(t) = s + (u0 - s) e^{-t/tau}``.
* ``N_w = 2`` (depth 1): ``tau du/dt = 2 u (s - u)``,
  ``u(t) = s e^{2st/tau} / (e^{2st/tau} - 1 + s/u0)``,
  learning time ``t = tau/(2s) ln(u_f (s - u0) / (u0 (s - u_f)))``.
* any ``N_w``: ``t(u) = (tau/N_w) int_{u0}^{u} dv / (v^{2-2/N_w} (s - v))``.

Numerics for ``N_w >= 3`` (no elementary closed form). Two scalings reduce every mode to one
universal curve: with ``u = s w`` and ``T = t s^{2-2/N_w} / tau``, ``dw/dT = N_w w^{2-2/N_w} (1 - w)``,
so only ``w0 = u0 / s`` matters. In the logit variable ``y = ln(w / |1 - w|)`` (``w = expit(y)`` for
``w0 < 1``, ``w = 1 / (1 - e^{-y})`` for ``w0 > 1``) the flow becomes the smooth, non-stiff

    dy/dT = N_w w(y)^{1 - 2/N_w},

free of the exponential approach to ``s`` that limits precision in ``u`` itself. ``mode_strength``
integrates it once per distinct ``w0`` with an 8th-order Runge-Kutta method (``rtol = atol = 1e-13``)
to all requested times at once; ``learning_time`` evaluates the quadrature
``T = (1/N_w) int_{y0}^{y_f} w(y)^{2/N_w - 1} dy`` with ``scipy.integrate.quad``. The two are
independent routes to the same function, and the tests check each against the other and both
against the closed forms at ``N_w = 1, 2``.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from scipy import integrate, special

__all__ = ["mode_strength", "learning_time", "end_to_end"]

_ODE_TOLERANCE = 1e-13
_QUAD_TOLERANCE = 1e-13


# --------------------------------------------------------------------------------------------------
# argument checks


def _check_depth(depth) -> int:
    if isinstance(depth, bool) or not isinstance(depth, Integral):
        raise TypeError(f"`depth` must be an integer number of hidden layers, got {depth!r}")
    if depth < 0:
        raise ValueError(f"`depth` must be >= 0 (number of hidden layers), got {depth}")
    return int(depth)


def _check_tau(tau) -> float:
    if isinstance(tau, bool):
        raise TypeError(f"`tau` must be a real number, got {tau!r}")
    try:
        value = float(tau)
    except (TypeError, ValueError):
        raise TypeError(f"`tau` must be a real number, got {tau!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"`tau` must be positive and finite, got {tau!r}")
    return value


def _as_real_array(name: str, value) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a real number or an array of real numbers, got {value!r}") from None
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    return array


def _check_strengths(s, u0, n_weights: int) -> tuple[np.ndarray, np.ndarray]:
    s = _as_real_array("s", s)
    if np.any(s <= 0):
        raise ValueError(f"`s` (singular value of Sigma_yx) must be positive, got {s.tolist()!r}")
    u0 = _as_real_array("u0", u0)
    if n_weights >= 2 and np.any(u0 <= 0):
        raise ValueError(
            "`u0` (initial mode strength) must be positive when depth >= 1: u = 0 is a fixed point "
            f"of the deep flow and a balanced mode cannot change sign; got {u0.tolist()!r}"
        )
    return s, u0


# --------------------------------------------------------------------------------------------------
# the universal curve (s = 1, tau = 1) in the logit variable


def _log_w(y: np.ndarray, above: bool) -> np.ndarray:
    """``ln w(y)``: ``w = expit(y)`` below the fixed point, ``w = 1/(1 - e^{-y})`` above it."""
    if above:
        return -np.log(-np.expm1(-y))
    return special.log_expit(y)


def _logit(w0: float) -> float:
    """``y0 = ln(w0 / |1 - w0|)``."""
    return float(np.log(w0) - np.log(abs(1.0 - w0)))


def _w_of_y(y: np.ndarray, above: bool) -> np.ndarray:
    if above:
        return -1.0 / np.expm1(-y)
    return special.expit(y)


def _universal_curve(w0: float, times: np.ndarray, n_weights: int) -> np.ndarray:
    """``w(T)`` for ``dw/dT = N_w w^{2-2/N_w} (1 - w)``, ``w(0) = w0``, at sorted ``times >= 0``."""
    if w0 == 1.0:
        return np.ones_like(times)
    above = w0 > 1.0
    exponent = 1.0 - 2.0 / n_weights

    def rate(_, y):
        return n_weights * np.exp(exponent * _log_w(y, above))

    y0 = _logit(w0)
    out = np.full_like(times, w0)
    positive = times > 0
    if np.any(positive):
        t_eval = times[positive]
        solution = integrate.solve_ivp(
            rate, (0.0, float(t_eval[-1])), [y0], method="DOP853", t_eval=t_eval,
            rtol=_ODE_TOLERANCE, atol=_ODE_TOLERANCE,
        )
        if not solution.success:  # pragma: no cover - the flow is smooth and bounded
            raise RuntimeError(f"mode_strength: ODE integration failed: {solution.message}")
        out[positive] = _w_of_y(solution.y[0], above)
    return out


def _universal_time(w0: float, w_final: float, n_weights: int) -> float:
    """``T`` at which the universal curve from ``w0`` reaches ``w_final`` (quadrature in ``y``)."""
    if w_final == w0:
        return 0.0
    above = w0 > 1.0
    exponent = 2.0 / n_weights - 1.0

    def integrand(y):
        return np.exp(exponent * _log_w(np.asarray(y), above))

    value, _ = integrate.quad(
        integrand, _logit(w0), _logit(w_final), epsabs=0.0, epsrel=_QUAD_TOLERANCE, limit=500
    )
    return value / n_weights


# --------------------------------------------------------------------------------------------------
# numerical paths for any number of weight matrices (used for depth >= 2; tests also run them at
# depth 0 and 1 against the closed forms)


def _mode_strength_numeric(s, u0, t, n_weights: int, tau: float) -> np.ndarray:
    s, u0, t = np.broadcast_arrays(np.asarray(s, float), np.asarray(u0, float), np.asarray(t, float))
    w0 = u0 / s
    scaled_time = t * s ** (2.0 - 2.0 / n_weights) / tau
    out = np.empty(t.shape)
    for start in np.unique(w0):
        where = w0 == start
        times, inverse = np.unique(scaled_time[where], return_inverse=True)
        out[where] = _universal_curve(float(start), times, n_weights)[inverse.ravel()]
    return s * out


def _learning_time_numeric(s, u0, u_final, n_weights: int, tau: float) -> np.ndarray:
    s, u0, u_final = np.broadcast_arrays(
        np.asarray(s, float), np.asarray(u0, float), np.asarray(u_final, float)
    )
    out = np.empty(s.shape)
    for index in np.ndindex(s.shape):
        scaled = _universal_time(u0[index] / s[index], u_final[index] / s[index], n_weights)
        out[index] = scaled * tau / s[index] ** (2.0 - 2.0 / n_weights)
    return out


# --------------------------------------------------------------------------------------------------
# public functions


def mode_strength(s, u0, t, depth: int = 1, tau: float = 1.0):
    """Strength ``u(t)`` of one mode of a deep linear network under gradient flow (THEORY.md section 3).

    Solves ``tau du/dt = N_w u^{2 - 2/N_w} (s - u)``, ``u(0) = u0``, ``N_w = depth + 1`` (equivalently
    ``tau da/dt = a^{N_w-1} (s - a^{N_w})`` for the per-layer strength ``a = u^{1/N_w}`` of balanced,
    decoupled initial conditions). Closed forms: depth 0, ``u = s + (u0 - s) e^{-t/tau}``; depth 1,
    ``u = s e^{2st/tau} / (e^{2st/tau} - 1 + s/u0)``. Depth >= 2: the exact flow integrated to
    relative precision ~1e-12 (see the module docstring).

    Parameters
    ----------
    s : singular value of ``Sigma_yx`` for this mode, ``> 0``.
    u0 : initial strength; ``> 0`` for ``depth >= 1`` (``u0 > s`` decays to ``s``), any real for
        depth 0.
    t : times ``>= 0`` (any shape); ``s``, ``u0`` and ``t`` broadcast against each other.
    depth : number of hidden layers (``N_w = depth + 1`` weight matrices), integer ``>= 0``.
    tau : time constant ``> 0`` (``1 / learning_rate`` for gradient descent counted in steps).

    Returns
    -------
    ``u(t)``, an array of the broadcast shape (a float for scalar inputs).

    Raises
    ------
    ValueError / TypeError naming the offending argument.

    Example
    -------
    >>> float(mode_strength(2.0, 1e-3, 0.0))
    0.001
    >>> round(float(mode_strength(2.0, 1e-3, 50.0, depth=3)), 6)
    2.0
    """
    depth = _check_depth(depth)
    tau = _check_tau(tau)
    n_weights = depth + 1
    s, u0 = _check_strengths(s, u0, n_weights)
    t = _as_real_array("t", t)
    if np.any(t < 0):
        raise ValueError(f"`t` must be >= 0, got min(t) = {t.min()}")
    if n_weights == 1:
        # u = s + (u0 - s) e^{-t/tau}, written without the cancellation at small t and u0 << s
        out = u0 * np.exp(-t / tau) - s * np.expm1(-t / tau)
    elif n_weights == 2:
        # u = s / (1 + (s/u0 - 1) e^{-2st/tau}): the closed form, written to never overflow
        out = s / (1.0 + (s / u0 - 1.0) * np.exp(-2.0 * s * t / tau))
    else:
        out = _mode_strength_numeric(s, u0, t, n_weights, tau)
    return out[()] if out.ndim == 0 else out


def learning_time(s, u0, u_final, depth: int = 1, tau: float = 1.0):
    """Time at which a mode starting at ``u0`` reaches ``u_final`` (THEORY.md section 3).

    ``t = (tau / N_w) int_{u0}^{u_final} dv / (v^{2 - 2/N_w} (s - v))``, ``N_w = depth + 1``.
    Closed forms: depth 0, ``t = tau ln((s - u0) / (s - u_final))``; depth 1,
    ``t = tau/(2s) ln(u_final (s - u0) / (u0 (s - u_final)))``; depth >= 2 by quadrature
    (relative precision ~1e-12). Small ``u0``: ``t ~ (tau/(2s)) ln(s/u0)`` at depth 1 but
    ``t ~ tau u0^{2/N_w - 1} / (s (N_w - 2))`` for ``N_w >= 3``.

    Parameters
    ----------
    s, u0, depth, tau : as in :func:`mode_strength` (here ``u0`` must differ from ``s`` unless
        ``u_final == s``).
    u_final : target strength(s) between ``u0`` (inclusive) and ``s`` (exclusive: ``s`` is only
        reached as ``t -> infinity``). Arrays broadcast with ``s`` and ``u0``.

    Returns
    -------
    The learning time(s), a float or an array of the broadcast shape.

    Example
    -------
    >>> t = learning_time(2.0, 1e-3, 1.8, depth=3)
    >>> round(float(mode_strength(2.0, 1e-3, t, depth=3)), 9)
    1.8
    """
    depth = _check_depth(depth)
    tau = _check_tau(tau)
    n_weights = depth + 1
    s, u0 = _check_strengths(s, u0, n_weights)
    u_final = _as_real_array("u_final", u_final)
    s, u0, u_final = np.broadcast_arrays(s, u0, u_final)
    rising, falling, fixed = u0 < s, u0 > s, u0 == s
    ok = (
        (rising & (u_final >= u0) & (u_final < s))
        | (falling & (u_final <= u0) & (u_final > s))
        | (fixed & (u_final == s))
    )
    if not np.all(ok):
        bad = np.argwhere(~ok)[0]
        index = tuple(bad)
        raise ValueError(
            "`u_final` must lie between `u0` (inclusive) and `s` (exclusive; s is reached only as "
            f"t -> infinity): got u_final={u_final[index]}, u0={u0[index]}, s={s[index]}"
        )
    if n_weights == 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(fixed, 0.0, tau * np.log((s - u0) / (s - u_final)))
    elif n_weights == 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (u_final * (s - u0)) / (u0 * (s - u_final))
            out = np.where(fixed, 0.0, tau / (2.0 * s) * np.log(ratio))
    else:
        out = _learning_time_numeric(s, u0, u_final, n_weights, tau)
    out = np.asarray(out, dtype=float)
    return out[()] if out.ndim == 0 else out


def end_to_end(U, s, V, u0, t, depth: int = 1, tau: float = 1.0) -> np.ndarray:
    """Trajectory of the end-to-end map ``W_total(t) = U diag(u(t)) V^T`` (THEORY.md section 3).

    Each mode follows :func:`mode_strength` independently (decoupled, balanced initial conditions
    ``W_total(0) = U diag(u0) V^T``).

    Parameters
    ----------
    U : ``(n_out, r)`` output singular vectors of ``Sigma_yx`` (orthonormal columns).
    s : ``(r,)`` singular values, ``> 0``.
    V : ``(n_in, r)`` input singular vectors (orthonormal columns).
    u0 : initial strength, a scalar or ``(r,)``.
    t : times, a scalar or ``(T,)``, ``>= 0``.
    depth, tau : as in :func:`mode_strength`.

    Returns
    -------
    ``W_total(t)``, an array of shape ``(T, n_out, n_in)`` (``T = 1`` for a scalar ``t``).
    """
    U = _as_real_array("U", U)
    V = _as_real_array("V", V)
    s = _as_real_array("s", s)
    if s.ndim != 1:
        raise ValueError(f"`s` must be a 1-d array of singular values, got shape {s.shape}")
    rank = s.shape[0]
    for name, matrix in (("U", U), ("V", V)):
        if matrix.ndim != 2 or matrix.shape[1] != rank:
            raise ValueError(f"`{name}` must have shape (n, {rank}) to match `s`, got {matrix.shape}")
        if not np.allclose(matrix.T @ matrix, np.eye(rank), atol=1e-8):
            raise ValueError(f"`{name}` must have orthonormal columns (singular vectors of Sigma_yx)")
    u0 = _as_real_array("u0", u0)
    if u0.ndim > 1 or (u0.ndim == 1 and u0.shape[0] != rank):
        raise ValueError(f"`u0` must be a scalar or have shape ({rank},), got shape {u0.shape}")
    t = np.atleast_1d(_as_real_array("t", t))
    if t.ndim != 1:
        raise ValueError(f"`t` must be a scalar or a 1-d array of times, got shape {t.shape}")
    strengths = mode_strength(s[None, :], np.broadcast_to(u0, (rank,))[None, :], t[:, None], depth, tau)
    return np.einsum("oa,ta,ia->toi", U, np.asarray(strengths).reshape(len(t), rank), V)
