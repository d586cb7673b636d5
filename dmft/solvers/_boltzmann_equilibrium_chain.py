"""``chain_speed = inf``: Langevin training of the couplings with an equilibrium negative phase
(docs/spherical.md, "Dynamics", "Infinitely fast chain").

As ``nu -> infinity`` the chain relaxes on times ``1/nu`` while ``W`` moves on times ``O(1)``. Split
``x = xbar + thermal``: the thermal part is the equilibrium of the frozen couplings (variance
``chi/beta`` per site, ``chi`` the static susceptibility), ``xbar`` the slow (condensed) part. The
two-time equations of finite ``nu`` become, in the units of the local field (``kappa = nu k``)::

    xbar(t)   = chi(t) [ theta(t) C xbar(t) + int_0^t mt(u,t) xbar(u) du + psi(t) ]
    mt(u,t)   = e^{-gamma(t-u)/2} [ -(K/2) q(u,t) + J^2 rho(u,t) ]
    rho(u,t)  = chi(t) [ chi(u) mt(u,t) + int_u^t rho(u,v) mt(v,t) dv ]        (slow response)
    <psi(t) psi(u)> = J^2 e^{-gamma|t-u|/2} q(t,u),    q(t,u) = <xbar(t) xbar(u)>
    q(t,t) + chi(t)/beta = 1,                              k(t) = 1/chi + J^2 chi

(``chi = G(k)``, the Stieltjes transform of the couplings' semicircle at the multiplier: the
equal-time Onsager term ``J^2 chi xbar`` is absorbed in ``chi``). On the data directions
``s_a = chi [theta c_a s_a + int mt(u,t) s_a(u) du]`` (the noise ``psi`` is ``O(N^{-1/2})`` there).

Phases. Paramagnetic: ``s = 0``, ``q = 0``, ``chi = beta`` (``G(k) = beta``), valid while
``beta theta(t) c_1 < 1`` (the outlier of ``theta c_1`` stays below the multiplier) and
``beta J < 1``. Then one mode condenses continuously: ``chi = 1/(theta c_1)`` at the onset and
``s_1^2 = 1 - chi/beta``; afterwards the memory (``-(K/2) q`` lowers the condensed eigenvalue) keeps
``chi`` slightly above ``1/(theta c_1)``. Supported: the paramagnetic phase and one condensed mode
(the solver detects when the bulk would condense, ``chi -> 1/J`` (the sticky phase), and raises
``dmft.UnsupportedError``); a second mode condensing (the coefficient ``1 - chi (theta c_a + ...)``
of a mode ``a > 1`` reaching 0: its outlier meets the multiplier) raises ``dmft.UnsupportedError``
too, rather than continuing with one condensed mode.

Discretisation: trapezoidal sums on the grid over the memory window, each time solved by
Anderson-accelerated fixed-point iteration on the new row (``q(t_n, .)``, the response row, ``s``)
with ``(chi, s_1)`` from the spherical constraint and the condensed mode's equation divided by
``s_1`` (secant steps; the division removes the paramagnetic root). Storage is a ring over the
window: memory ``O(B^2)``, time ``O(B^2)`` per step and sweep (``B`` grid points per window).
"""

from __future__ import annotations

import math
import time as _time

import numpy as np

from ..boltzmann import DynamicsDivergenceError
from ..errors import UnsupportedError
from ..result import Result, diagnose

__all__ = ["solve_equilibrium_chain", "integrate_equilibrium_chain"]

ITERATION_TOLERANCE = 1e-11
MAX_ITERATIONS = 200


def integrate_equilibrium_chain(t, c, beta, gamma, J2, window, report, spectral=()):
    """Integrate the slow equations on the grid ``t`` (module docstring) with memory ``window``.

    Storage is a ring: the pair of grid indices ``(k, m)`` (within one window of each other) lives
    at ``[k % B1, m % B1]``, ``B1`` = one more than the most grid steps in a window: ``O(B1^2)``.

    Returns a dict: ``s`` ``(n, K)``, ``chi`` ``(n,)``; ``q``, ``G`` ``(r, r)`` at the ``report``
    indices (``G[n, k]``: the response of ``xbar(t_n)`` to a unit source at ``t_k``, ``~ chi`` on the
    diagonal, ``w_k rho(t_k, t_n)`` below; NaN beyond the window); ``blocks``: for each index in
    ``spectral`` the window's ``(first index, q block, G block)``.
    """
    n_points = t.size
    K = c.size
    theta = -np.expm1(-gamma * t / 2) / gamma
    J = math.sqrt(J2)
    if J > 0 and beta * J >= 1:
        raise UnsupportedError(
            f"chain_speed=inf with beta J = {beta * J:.4g} >= 1 (J^2 = 1/(gamma eta)): the bulk of the couplings "
            "condenses at once (sticky phase), which the equilibrium-chain equations do not cover; use a finite "
            "`chain_speed`"
        )
    first = np.searchsorted(t, t - window - 1e-12 * max(1.0, t[-1]))
    B1 = int(np.max(np.arange(n_points) - first)) + 1
    q = np.zeros((B1, B1))
    G = np.zeros((B1, B1))  # G[n, k], k <= n
    Z = np.zeros((B1, B1))  # Z[k, m] = sum_{l <= m} Psi[k, l] G[m, l]
    Psi = np.zeros((B1, B1))  # <psi_k psi_l> = J^2 e^{-gamma |t_k - t_l|/2} q[k, l]
    S = np.zeros((n_points, K))
    chi = np.zeros(n_points)
    omega = np.empty(n_points)  # interior trapezoid weights
    omega[1:-1] = (t[2:] - t[:-2]) / 2
    omega[0] = (t[1] - t[0]) / 2
    omega[-1] = (t[-1] - t[-2]) / 2
    report = list(report)
    spectral = set(int(i) for i in spectral)
    q_out = np.full((len(report), len(report)), np.nan)
    G_out = np.full((len(report), len(report)), np.nan)
    blocks = {}

    def record(n):
        lo = first[n]
        idx = np.arange(lo, n + 1)
        slots = idx % B1
        if n in report:
            j = report.index(n)
            for k, r in enumerate(report[: j + 1]):
                if r >= lo:
                    q_out[j, k] = q[n % B1, r % B1]
                    G_out[j, k] = G[n % B1, r % B1]
        if n in spectral:
            blocks[n] = (lo, q[np.ix_(slots, slots)].copy(), G[np.ix_(slots, slots)].copy())

    chi[0] = beta
    G[0, 0] = beta
    record(0)
    condensed = False
    for n in range(1, n_points):
        slot = n % B1
        lo = first[n]
        past = np.arange(lo, n) % B1
        q[slot, :] = q[:, slot] = 0.0
        G[slot, :] = G[:, slot] = 0.0
        Z[slot, :] = Z[:, slot] = 0.0
        Psi[slot, :] = Psi[:, slot] = 0.0
        end = (t[n] - t[n - 1]) / 2  # weight of node n in a sum over [., t_n]
        if not condensed and beta * theta[n] * c[0] < 1:
            chi[n] = beta  # paramagnetic: G(k) = beta, nothing slow
            G[slot, slot] = beta
            record(n)
            continue
        e = np.exp(-gamma * (t[n] - t[lo:n]) / 2)
        w = omega[lo:n].copy()
        if lo > 0:
            w[0] = (t[lo + 1] - t[lo]) / 2
        G_past = G[np.ix_(past, past)]
        Z_past = Z[np.ix_(past, past)]
        Psi_past = Psi[np.ix_(past, past)]
        S_past = S[lo:n]
        m = n - lo
        if not condensed:  # onset: mode 1 condenses, chi at its outlier, s_1 from the sphere
            condensed = True
            chi_n = 1.0 / (theta[n] * c[0])
            s_new = np.zeros(K)
            s_new[0] = math.sqrt(max(1.0 - chi_n / beta, 0.0))
            q_row = np.zeros(m)
            G_row = np.zeros(m)
            qb_nn = 0.0
        else:  # start the iteration from the previous row at the same columns
            previous = (n - 1) % B1
            chi_n, s_new = chi[n - 1], S[n - 1].copy()
            q_row = np.append(q[previous, past[:-1]], q[previous, previous])
            G_row = np.append(G[previous, past[:-1]], 0.0)
            qb_nn = q[previous, previous] - float(S[n - 1] @ S[n - 1])

        def sweep(x):
            """One fixed-point map of the new row ``x = (chi, qb_nn, q_row, G_row)``."""
            chi_, qb_, q_, G_ = x[0], x[1], x[2 : 2 + m], x[2 + m :]
            mt_row = e * (-(K / 2) * q_ + J2 * G_ / w)
            A = (w * mt_row) @ S_past
            chi_new, s_ = _condensed_point(chi_, state["s"], A, theta[n], c, end, K, J2, beta, qb_)
            state["s"] = s_
            q_nn = 1.0 - chi_new / beta
            mt_nn = -(K / 2) * q_nn / (1.0 - J2 * chi_new**2)
            diag = chi_new / (1.0 - chi_new * end * mt_nn)
            G_new = diag * ((w * mt_row) @ G_past)
            Psi_row = J2 * e * q_
            Z_row = G_past @ Psi_row
            Z_col = Psi_past @ G_new + Psi_row * diag
            Z_nn = Psi_row @ G_new + J2 * q_nn * diag
            q_new = S_past @ s_ + G_new @ Z_past + diag * Z_row
            qb_new = float(G_new @ Z_col + diag * Z_nn)
            state["diag"] = diag
            return np.concatenate([[chi_new, qb_new], q_new, G_new])

        state = {"s": s_new}
        x = np.concatenate([[chi_n, qb_nn], q_row, G_row])
        second = _second_mode_margin(chi_n, theta[n], c, end, K, J2, beta)
        if second <= 0:
            _raise_second_mode(t[n], second)
        try:
            x = _anderson(sweep, x, ITERATION_TOLERANCE, MAX_ITERATIONS, t[n])
        except DynamicsDivergenceError as error:
            if second < SECOND_MODE_MARGIN:
                _raise_second_mode(t[n], second, error)
            raise
        chi_n, qb_nn, q_row, G_row = x[0], x[1], x[2 : 2 + m], x[2 + m :]
        s_new, diag = state["s"], state["diag"]
        if J > 0 and chi_n * J >= 1 - 1e-9:
            raise UnsupportedError(
                f"chain_speed=inf: the susceptibility reached the bulk edge (chi J = 1) at time {t[n]:.6g}: the bulk "
                "condenses (sticky phase), which the equilibrium-chain equations do not cover; use a finite `chain_speed`"
            )
        second = _second_mode_margin(chi_n, theta[n], c, end, K, J2, beta)
        if second <= 0:
            _raise_second_mode(t[n], second)
        chi[n] = chi_n
        S[n] = s_new
        q[slot, past] = q[past, slot] = q_row
        q[slot, slot] = 1.0 - chi_n / beta
        G[slot, past] = G_row
        G[slot, slot] = diag
        Psi[slot, past] = Psi[past, slot] = J2 * e * q_row
        Psi[slot, slot] = J2 * q[slot, slot]
        Z[slot, past] = G_past @ Psi[slot, past]
        Z[past, slot] = Psi_past @ G_row + Psi[past, slot] * diag
        Z[slot, slot] = Psi[slot, past] @ G_row + Psi[slot, slot] * diag
        record(n)
    return {"s": S, "chi": chi, "q": q_out, "G": G_out, "blocks": blocks}


SECOND_MODE_MARGIN = 0.05
"""A failed iteration while the second mode's coefficient (:func:`_second_mode_margin`) is below this
is reported as the second mode condensing (UnsupportedError), not as a divergence."""


def _second_mode_margin(chi, theta_n, c, end, K, J2, beta) -> float:
    """``min_{a > 1} (1 - chi (theta c_a + end mt_nn(chi)))``: the coefficient of the non-condensed
    modes in :func:`_condensed_point` (``s_a = chi A_a / coefficient``). It reaching 0 means a second
    data mode's outlier has reached the multiplier: that mode condenses too, which these
    equations (one condensed mode) do not cover. ``inf`` for ``K = 1``."""
    if c.size < 2:
        return math.inf
    mt_nn = -(K / 2) * (1.0 - chi / beta) / (1.0 - J2 * chi * chi)
    return float(np.min(1.0 - chi * (theta_n * c[1:] + end * mt_nn)))


def _raise_second_mode(time, margin, cause=None):
    raise UnsupportedError(
        f"chain_speed=inf: a second data mode condenses at time {time:.6g} (its coefficient "
        f"1 - chi (theta c_a + ...) fell to {margin:.3g}); the equilibrium-chain equations cover one "
        "condensed mode only. Use a finite `chain_speed` (the finite-nu solver), a larger `prior_precision`, "
        "or dmft.boltzmann_equilibrium.equilibrium for the t -> infinity state"
    ) from cause


def _anderson(F, x, tolerance, iterations, time, depth=6):
    """The fixed point of ``F`` by Anderson mixing (depth ``depth``) from ``x``; the final ``F`` is
    evaluated at the returned point (so the caller's side state matches it)."""
    xs, fs = [], []
    for _ in range(iterations):
        fx = F(x)
        residual = fx - x
        change = float(np.max(np.abs(residual)))
        if not math.isfinite(change):
            raise DynamicsDivergenceError("the equilibrium-chain equations", time, "rtol", 0.0)
        if change < tolerance:
            return fx
        xs.append(x)
        fs.append(residual)
        if len(xs) > depth + 1:
            xs.pop(0)
            fs.pop(0)
        if len(xs) > 1:
            dX = np.diff(np.array(xs), axis=0).T
            dF = np.diff(np.array(fs), axis=0).T
            gamma, *_ = np.linalg.lstsq(dF, residual, rcond=None)
            x = x + residual - (dX + dF) @ gamma
        else:
            x = fx
    raise DynamicsDivergenceError(
        f"the equilibrium-chain iteration (no convergence in {iterations} sweeps)", time, "rtol", 0.0
    )


def _condensed_point(chi, s, A, theta_n, c, end, K, J2, beta, qb_nn):
    """``(chi, s)`` at the new time, on the condensed branch. With ``u = s_1 > 0`` the sphere gives
    ``chi(u) = beta (1 - u^2 - qb_nn - sum_{a>1} s_a^2)``, the other modes ``s_a = chi A_a /
    (1 - chi (theta c_a + end mt_nn(chi)))`` (``A_a``: the memory sums of the past, ``qb_nn``: the
    bulk's slow part, both held), and the condensed mode's equation divided by ``u``,
    ``f(u) = 1 - chi (theta c_1 + end mt_nn(chi)) - chi A_1 / u = 0`` (the division removes the
    paramagnetic root ``u = 0``), is solved by Newton's method from the previous ``u``."""

    theta_c = theta_n * c
    simple = c.size == 1 or not np.any(A[1:])

    def coefficient(chi_):
        mt_nn = -(K / 2) * (1.0 - chi_ / beta) / (1.0 - J2 * chi_ * chi_)
        return 1.0 - chi_ * (theta_c + end * mt_nn)

    def state(u):
        chi_ = beta * (1.0 - u * u - qb_nn)
        others = np.zeros(c.size - 1)
        if not simple:
            for _ in range(50):
                others = chi_ * A[1:] / coefficient(chi_)[1:]
                chi_new = beta * (1.0 - u * u - qb_nn - float(others @ others))
                if abs(chi_new - chi_) <= 1e-16 * abs(chi_):
                    break
                chi_ = chi_new
        return chi_, others

    def f(u):
        chi_, _ = state(u)
        return coefficient(chi_)[0] - chi_ * A[0] / u

    u_max = math.sqrt(max(1.0 - qb_nn, 0.0))
    u0 = s[0]
    if u0 < 1e-6:  # just after the onset: start where the bare coefficient vanishes (chi = 1/(theta c_1))
        u0 = math.sqrt(max(1.0 - qb_nn - 1.0 / (beta * theta_c[0]), 0.0))
    u0 = min(max(u0, 1e-12), u_max * (1 - 1e-12))
    u1 = u0 * (1 - 1e-6)
    f0, f1 = f(u0), f(u1)
    for _ in range(100):  # secant steps, kept inside (0, u_max)
        if f1 == f0:
            break
        u2 = u1 - f1 * (u1 - u0) / (f1 - f0)
        u2 = min(max(u2, 0.5 * u1), 0.5 * (u1 + u_max))
        u0, f0 = u1, f1
        u1, f1 = u2, f(u2)
        if abs(u1 - u0) <= 1e-14 * u1:
            break
    chi_, others = state(u1)
    return float(chi_), np.concatenate([[u1], others])


def solve_equilibrium_chain(model, data, training, *, step=None, started=None, curves="all") -> Result:
    """``dmft.solve`` for ``chain_speed = inf`` (see :func:`dmft.solvers.boltzmann.solve_langevin`):
    three grids ``h, 2h, 4h`` and Richardson extrapolation as for finite ``nu``."""
    from .boltzmann import (
        EXTRAPOLATED_ORDER,
        MAX_REFINEMENTS,
        dynamics_result,
        memory_window,
        report_grid,
        spectral_curves,
        spectral_indices,
        trapezoid,
    )
    from ..boltzmann import SpikedTeacher

    started = _time.perf_counter() if started is None else started
    c = np.asarray(data.resolve().eigenvalues)
    K = c.size
    beta = model.inverse_temperature
    gamma = training.prior_precision
    J2 = training.noise_variance
    T = training.time
    rtol = training.rtol
    window = memory_window(T, gamma, K / 2 + J2, rtol)
    spectral_window = memory_window(T, gamma, K / 2 + J2, 100 * rtol)  # the curves need rtol only
    teacher = data if isinstance(data, SpikedTeacher) else None
    # the condensation onset beta theta(t_c) c_1 = 1 is a grid point (a square-root point of s_1)
    onset = ()
    if gamma < beta * c[0]:
        t_c = -2.0 / gamma * math.log1p(-gamma / (beta * c[0]))
        if 0 < t_c < T:
            onset = (t_c,)
    # no fast chain here: the rates are gamma/2 and the condensed mode's (about K c_1 / 2);
    # after extrapolation the error is about (h rate)^3 / 100 (measured in the tests)
    h = 0.5 * (rtol / 1e-4) ** (1 / 3) / max(1.0, gamma, K * c[0] / 2) if step is None else float(step)
    if not (h > 0 and math.isfinite(h)):
        raise ValueError(f"`step` must be positive and finite, got {step}")
    for refinement in range(MAX_REFINEMENTS + 1):
        t, report = report_grid(T, training.save_at, h, extra_knots=onset)
        spectral = spectral_indices(report, curves)
        levels = []
        for k in range(3):
            grid = t[:: 2**k]
            spectral_k = spectral // 2**k if k < 2 else spectral[:0]
            out = integrate_equilibrium_chain(grid, c, beta, gamma, J2, window, report // 2**k, spectral_k)
            windows = []
            for i in spectral_k:
                lo, q_block, G_block = out["blocks"][int(i)]
                keep = max(lo, int(np.searchsorted(grid, grid[int(i)] - spectral_window - 1e-12))) - lo
                q_block, G_block = q_block[keep:, keep:], G_block[keep:, keep:]
                idx = np.arange(lo + keep, int(i) + 1)
                S_win = out["s"][idx]
                windows.append((int(i), idx, q_block - S_win @ S_win.T, G_block, trapezoid(grid[idx])))
            theta = -np.expm1(-gamma * grid / 2) / gamma
            curve_values = spectral_curves(windows, grid, theta, out["s"], c, beta, gamma, J2, teacher)
            s = out["s"][report // 2**k]
            q = out["q"]
            far = np.isnan(q)
            q[far] = (s @ s.T)[far]
            G = out["G"]
            G[np.isnan(G)] = 0.0
            levels.append({"s": s, "chi": out["chi"][report // 2**k], "q": q, **curve_values})
        values, error = {}, 0.0
        for name in ("s", "chi", "q"):
            fine, mid, coarse = (level[name] for level in levels)
            y1 = fine + (fine - mid) / 3
            values[name] = y1
            error = max(error, float(np.max(np.abs(y1 - (mid + (mid - coarse) / 3)))) / (2**EXTRAPOLATED_ORDER - 1))
        if error <= rtol or refinement == MAX_REFINEMENTS:
            break
        # the condensation onset is a square-root point (s_1 ~ (t - t_c)^{1/2}): near it the
        # extrapolated error falls only like h^{3/2}
        h *= 0.8 * (rtol / error) ** (1 / 1.5)
    status, message = diagnose(
        [("error estimate", error, rtol, f"the step could not be made fine enough in {MAX_REFINEMENTS} refinements; pass a smaller `step`")]
    )
    chi = values["chi"]
    Q = values["q"].copy()
    np.fill_diagonal(Q, 1.0)
    arrays = {
        "s": values["s"].T,
        "Q": Q,
        "multiplier": 1.0 / chi + J2 * chi,
        "susceptibility": chi,
    }
    return dynamics_result(
        model, data, training, arrays, levels, t[report], curves, teacher, status, message,
        {"step": h, "window": window, "grid_points": int(t.size), "error_estimate": float(error), "refinements": refinement},
        started,
    )
