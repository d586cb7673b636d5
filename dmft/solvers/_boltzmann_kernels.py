"""Time stepping of the spherical Boltzmann machine's two-time equations (docs/spherical.md,
"Dynamics"): one Numba kernel and its NumPy twin, which the tests compare.

Both integrate, on a given grid ``t_0 = 0 < t_1 < ... < t_n`` (steps may differ)::

    ds_a/dt     = -kappa s_a + F_s[a](t)
    d_t Q(t,t') = -kappa Q(t,t') + F_Q(t,t')          (t > t', Q(t,t) = 1)
    d_t R(t,t') = -kappa R(t,t') + F_R(t,t')          (t > t', R(t,t) = 1)
    F_s[a](t)   = nu theta c_a s_a(t) + int M(t,u) s_a(u) du
    F_Q(t,t')   = nu theta sum_a c_a s_a(t) s_a(t') + int M(t,u) Q(u,t') du + int_{u<=t'} D(t,u) R(t',u) du
    F_R(t,t')   = int_{t'}^{t} M(t,u) R(u,t') du
    kappa(t)    = nu theta sum_a c_a s_a^2 + nu/beta + int [M(t,u) Q(t,u) + D(t,u) R(t,u)] du
    M(t,u) = e^{-gamma (t-u)/2} [-(K nu/2) Q(t,u) + nu^2 J^2 R(t,u)],   D(t,u) = nu^2 J^2 e^{-gamma (t-u)/2} Q(t,u)

Integrals: trapezoidal rule on the grid, over the memory window ``t - u <= L`` (the kernels
carry ``e^{-gamma (t-u)/2}``: the caller picks ``L`` so that what lies beyond is negligible).
Time step: exponential (integrating-factor) Heun, predict-evaluate-correct-evaluate: with
``a = exp(-h kappa_i)`` the predictor is ``y_{i+1} = a y_i + (1 - a)/kappa_i F_i``, the corrector
``y_{i+1} = abar y_i + (h/2) (abar F_i + F_{i+1})`` with ``abar = exp(-h (kappa_i + kappa_{i+1})/2)``:
second order in the step (the trapezoidal sums are exact to second order also across the kinks
of ``Q`` and the jump of ``R`` at equal times, which sit on grid points).

Storage: rows ``i - B .. i`` in a ring of ``B + 1`` slots, in lag coordinates: ``Qr[i % (B+1), l] =
Q(t_i, t_{i-l})``. Memory ``O(B^2)``, time ``O(n B^2)``. Report rows (at ``report`` grid indices)
are copied out; entries of report times further apart than the window are NaN (the caller fills
them: beyond the window the bulk has decorrelated, ``Q = sum_a s_a s_a``, ``R = 0``).

Returns per grid point ``s`` ``(n, K)``, ``kappa`` ``(n,)``, and per report index pair ``Q``, ``R``
``(r, r)`` (row = later time; ``R`` zero above the diagonal); ``status`` 0, or 1 if a value became
non-finite (``failed_at`` = grid index).
"""

from __future__ import annotations

import math

import numpy as np

from .._backend import jit

__all__ = ["integrate_numba", "integrate_numpy", "trapezoid_weights"]


def trapezoid_weights(t: np.ndarray) -> np.ndarray:
    """``w[u] = (t[u+1] - t[u-1]) / 2`` (interior nodes): the trapezoidal weight of an interior node;
    the end nodes of a sum get half their own interval, handled where the sums are formed."""
    w = np.empty_like(t)
    w[1:-1] = (t[2:] - t[:-2]) / 2
    w[0] = (t[1] - t[0]) / 2 if t.size > 1 else 0.0
    w[-1] = (t[-1] - t[-2]) / 2 if t.size > 1 else 0.0
    return w


@jit
def _phi(h, kappa):
    """``(1 - exp(-h kappa)) / kappa`` (``h`` as ``kappa -> 0``)."""
    x = h * kappa
    if abs(x) < 1e-8:
        return h * (1.0 - 0.5 * x)
    return -math.expm1(-x) / kappa


@jit
def _row_kernels(i, t, band, Qr, Rr, Mr, Dr, B1, gamma, half_k_nu, nu2J2):
    """``M(t_i, t_{i-l})``, ``D(t_i, t_{i-l})`` for ``l <= band`` from row ``i`` of ``Q``, ``R``."""
    slot = i % B1
    for l in range(band + 1):
        e = math.exp(-gamma * (t[i] - t[i - l]) / 2)
        q = Qr[slot, l]
        Mr[slot, l] = e * (-half_k_nu * q + nu2J2 * Rr[slot, l])
        Dr[slot, l] = nu2J2 * e * q


@jit
def _window_weights(i, t, band, w):
    """``w[l]``: trapezoidal weight of node ``u = i - l`` in a sum over ``[t_{i-band}, t_i]``."""
    lo = i - band
    if band == 0:
        w[0] = 0.0
        return
    w[0] = (t[i] - t[i - 1]) / 2
    for l in range(1, band):
        u = i - l
        w[l] = (t[u + 1] - t[u - 1]) / 2
    w[band] = (t[lo + 1] - t[lo]) / 2


@jit
def _forcing(i, t, band, Qr, Rr, Mr, Dr, B1, s, c, theta, nu, beta, FQ, FR, Fs, w):
    """Row ``i``'s forcings ``F_Q(t_i, t_{i-l})``, ``F_R(t_i, t_{i-l})`` (``l <= band``), ``F_s`` and
    ``kappa(t_i)`` (returned), with trapezoidal weights over the window ``[t_{i-band}, t_i]``.
    Inner loops are contiguous and branch-free (they vectorise)."""
    K = c.shape[0]
    slot = i % B1
    sig = nu * theta[i]
    energy = 0.0
    for a in range(K):
        Fs[a] = sig * c[a] * s[i, a]
        energy += c[a] * s[i, a] * s[i, a]
    for l in range(band + 1):
        acc = 0.0
        for a in range(K):
            acc += c[a] * s[i, a] * s[i - l, a]
        FQ[l] = sig * acc
        FR[l] = 0.0
    kappa = sig * energy + nu / beta
    if band == 0:
        return kappa
    _window_weights(i, t, band, w)
    for lu in range(band + 1):
        u = i - lu
        m_iu = Mr[slot, lu]
        wm = w[lu] * m_iu
        kappa += w[lu] * (m_iu * Qr[slot, lu] + Dr[slot, lu] * Rr[slot, lu])
        for a in range(K):
            Fs[a] += wm * s[u, a]
        us = u % B1
        # columns m = u - k below u: Q[u, m] = Qr[us, k], R[u, m] = Rr[us, k]
        n = band - lu + 1
        for k in range(n):
            FQ[lu + k] += wm * Qr[us, k]
        for k in range(1, n):
            FR[lu + k] += wm * Rr[us, k]
        # F_R(t_i, t_u): the end u = m of its sum carries half its right interval
        if lu > 0:
            FR[lu] += (t[u + 1] - t[u]) / 2 * m_iu * Rr[us, 0]
    # columns m above u (u < m): Q[u, m] = Q[m, u] = Qr[m % B1, m - u]; the D term sums u <= m
    for lm in range(band):
        m = i - lm
        ms = m % B1
        accq = 0.0
        accd = 0.0
        for lu in range(lm + 1, band + 1):
            wl = w[lu]
            accq += wl * Mr[slot, lu] * Qr[ms, lu - lm]
            accd += wl * Dr[slot, lu] * Rr[ms, lu - lm]
        accd += (t[m] - t[m - 1]) / 2 * Dr[slot, lm] * Rr[ms, 0]
        FQ[lm] += accq + accd
    return kappa


@jit
def integrate_numba(t, band_of, B, report, c, s0, theta, nu, beta, gamma, J2, spectral):
    """See the module docstring. ``band_of[i]``: the window of row ``i`` in grid steps
    (``band_of[i] <= min(i, B)``, ``band_of[i+1] <= band_of[i] + 1``); ``report``: increasing grid
    indices (``report[0] = 0``); ``spectral``: increasing grid indices at which the whole ring is
    copied out (``Qwin``, ``Rwin`` ``(len(spectral), B + 1, B + 1)``, for the spectrum)."""
    n = t.shape[0]
    K = c.shape[0]
    B1 = B + 1
    nr = report.shape[0]
    Qr = np.zeros((B1, B1))
    Rr = np.zeros((B1, B1))
    Mr = np.zeros((B1, B1))
    Dr = np.zeros((B1, B1))
    s = np.zeros((n, K))
    kappa = np.zeros(n)
    FQ = np.zeros(B1)
    FR = np.zeros(B1)
    Fs = np.zeros(K)
    w = np.zeros(B1)
    FQn = np.zeros(B1)
    FRn = np.zeros(B1)
    Fsn = np.zeros(K)
    Qout = np.zeros((nr, nr))
    Rout = np.zeros((nr, nr))
    ns = spectral.shape[0]
    Qwin = np.zeros((ns, B1, B1))
    Rwin = np.zeros((ns, B1, B1))
    next_spectral = 0
    while next_spectral < ns and spectral[next_spectral] == 0:
        Qwin[next_spectral, 0, 0] = 1.0  # row 0: the window is the single point t = 0
        Rwin[next_spectral, 0, 0] = 1.0
        next_spectral += 1
    half_k_nu = K * nu / 2
    nu2J2 = nu * nu * J2
    for j in range(nr):
        for k in range(nr):
            Rout[j, k] = 0.0

    for a in range(K):
        s[0, a] = s0[a]
    Qr[0, 0] = 1.0
    Rr[0, 0] = 1.0
    _row_kernels(0, t, 0, Qr, Rr, Mr, Dr, B1, gamma, half_k_nu, nu2J2)
    kappa[0] = _forcing(0, t, 0, Qr, Rr, Mr, Dr, B1, s, c, theta, nu, beta, FQ, FR, Fs, w)
    next_report = 0
    if report[0] == 0:
        Qout[0, 0] = 1.0
        Rout[0, 0] = 1.0
        next_report = 1
    status = 0
    failed_at = -1
    for i in range(n - 1):
        h = t[i + 1] - t[i]
        band = band_of[i]
        nb = band_of[i + 1]
        cur = i % B1
        new = (i + 1) % B1
        k0 = kappa[i]
        a0 = math.exp(-h * k0)
        ph = _phi(h, k0)
        # predictor
        Qr[new, 0] = 1.0
        Rr[new, 0] = 1.0
        for l in range(nb):
            Qr[new, l + 1] = a0 * Qr[cur, l] + ph * FQ[l]
            Rr[new, l + 1] = a0 * Rr[cur, l] + ph * FR[l]
        for a in range(K):
            s[i + 1, a] = a0 * s[i, a] + ph * Fs[a]
        # evaluate, correct, evaluate
        for sweep in range(2):
            _row_kernels(i + 1, t, nb, Qr, Rr, Mr, Dr, B1, gamma, half_k_nu, nu2J2)
            k1 = _forcing(i + 1, t, nb, Qr, Rr, Mr, Dr, B1, s, c, theta, nu, beta, FQn, FRn, Fsn, w)
            kappa[i + 1] = k1
            if sweep == 1:
                break
            ab = math.exp(-h * (k0 + k1) / 2)
            hh = h / 2
            for l in range(nb):
                Qr[new, l + 1] = ab * Qr[cur, l] + hh * (ab * FQ[l] + FQn[l + 1])
                Rr[new, l + 1] = ab * Rr[cur, l] + hh * (ab * FR[l] + FRn[l + 1])
            for a in range(K):
                s[i + 1, a] = ab * s[i, a] + hh * (ab * Fs[a] + Fsn[a])
        for l in range(nb + 1):
            FQ[l] = FQn[l]
            FR[l] = FRn[l]
        for a in range(K):
            Fs[a] = Fsn[a]
        if not math.isfinite(kappa[i + 1]):
            status = 1
            failed_at = i + 1
            break
        if next_spectral < ns and spectral[next_spectral] == i + 1:
            Qwin[next_spectral] = Qr
            Rwin[next_spectral] = Rr
            next_spectral += 1
        # report row
        if next_report < nr and report[next_report] == i + 1:
            for j in range(next_report + 1):
                r = report[j]
                lag = i + 1 - r
                if lag <= nb:
                    Qout[next_report, j] = Qr[new, lag]
                    Rout[next_report, j] = Rr[new, lag]
                else:
                    Qout[next_report, j] = np.nan
                    Rout[next_report, j] = np.nan
            next_report += 1
    for j in range(nr):
        for k in range(j):
            Qout[k, j] = Qout[j, k]
    return s, kappa, Qout, Rout, status, failed_at, Qwin, Rwin


def integrate_numpy(t, band_of, B, report, c, s0, theta, nu, beta, gamma, J2, spectral):
    """The NumPy twin of :func:`integrate_numba`: the same scheme, with full ``(n, n)`` arrays
    (``Q[i, m]`` for ``t_i - t_m`` within row ``i``'s window) and vector operations per row.
    ``B`` is unused (kept for the same signature). Reference for tests; ``O(n^2)`` memory."""
    n = t.size
    K = c.size
    Q = np.full((n, n), np.nan)
    R = np.full((n, n), np.nan)
    M = np.zeros((n, n))
    D = np.zeros((n, n))
    s = np.zeros((n, K))
    kappa = np.zeros(n)
    report = np.asarray(report)
    half_k_nu, nu2J2 = K * nu / 2, nu * nu * J2

    def window(i):
        lo = i - band_of[i]
        idx = np.arange(lo, i + 1)
        nodes = t[idx]
        w = np.zeros(idx.size)
        if idx.size > 1:
            w[1:-1] = (nodes[2:] - nodes[:-2]) / 2
            w[0] = (nodes[1] - nodes[0]) / 2
            w[-1] = (nodes[-1] - nodes[-2]) / 2
        return lo, idx, w

    def kernels(i):
        lo, idx, _ = window(i)
        e = np.exp(-gamma * (t[i] - t[idx]) / 2)
        M[i, idx] = e * (-half_k_nu * Q[i, idx] + nu2J2 * R[i, idx])
        D[i, idx] = nu2J2 * e * Q[i, idx]

    def forcing(i):
        lo, idx, w = window(i)
        sig = nu * theta[i]
        block = Q[np.ix_(idx, idx)]
        Qsym = np.where(idx[:, None] >= idx[None, :], block, block.T)
        wm = w * M[i, idx]
        FQ = sig * (s[idx] * c) @ s[i] + wm @ Qsym
        FR = np.zeros(idx.size)
        for k, m in enumerate(idx):
            if m < i:
                # sum over u in [m, i]: window weights inside, the end u = m half its right interval
                part = wm[k:] * R[idx[k:], m]
                part[0] = (t[m + 1] - t[m]) / 2 * M[i, m] * R[m, m]
                FR[k] = part.sum()
            if m > lo:
                # D term: sum over u in [lo, m], the end u = m half its left interval
                dpart = w[: k + 1] * D[i, idx[: k + 1]] * R[m, idx[: k + 1]]
                dpart[-1] = (t[m] - t[m - 1]) / 2 * D[i, m] * R[m, m]
                FQ[k] += dpart.sum()
        Fs = sig * c * s[i] + wm @ s[idx]
        kap = sig * np.sum(c * s[i] ** 2) + nu / beta + np.sum(w * (M[i, idx] * Q[i, idx] + D[i, idx] * R[i, idx]))
        return FQ, FR, Fs, kap

    s[0] = s0
    Q[0, 0] = R[0, 0] = 1.0
    kernels(0)
    FQ, FR, Fs, kappa[0] = forcing(0)
    status, failed_at = 0, -1
    for i in range(n - 1):
        h = t[i + 1] - t[i]
        nb = band_of[i + 1]
        lo_new, lo_old = i + 1 - nb, i - band_of[i]
        cols = np.arange(lo_new, i + 1)  # columns m of row i + 1 below the diagonal
        old_index, new_index = cols - lo_old, cols - lo_new
        k0 = kappa[i]
        a0 = np.exp(-h * k0)
        ph = -np.expm1(-h * k0) / k0 if abs(h * k0) >= 1e-8 else h * (1 - 0.5 * h * k0)
        Q[i + 1, cols] = a0 * Q[i, cols] + ph * FQ[old_index]
        R[i + 1, cols] = a0 * R[i, cols] + ph * FR[old_index]
        Q[i + 1, i + 1] = R[i + 1, i + 1] = 1.0
        s[i + 1] = a0 * s[i] + ph * Fs
        for sweep in range(2):
            kernels(i + 1)
            FQn, FRn, Fsn, kappa[i + 1] = forcing(i + 1)
            if sweep == 1:
                break
            ab = np.exp(-h * (k0 + kappa[i + 1]) / 2)
            Q[i + 1, cols] = ab * Q[i, cols] + h / 2 * (ab * FQ[old_index] + FQn[new_index])
            R[i + 1, cols] = ab * R[i, cols] + h / 2 * (ab * FR[old_index] + FRn[new_index])
            s[i + 1] = ab * s[i] + h / 2 * (ab * Fs + Fsn)
        FQ, FR, Fs = FQn, FRn, Fsn
        if not np.isfinite(kappa[i + 1]):
            status, failed_at = 1, i + 1
            break
    later, earlier = np.meshgrid(report, report, indexing="ij")
    Qout = np.where(later >= earlier, Q[later, earlier], Q[earlier, later])
    Rout = np.where(later > earlier, R[later, earlier], np.where(later == earlier, 1.0, 0.0))
    # the ring layout of integrate_numba at the spectral rows: [u % B1, l] = Q(t_u, t_{u-l})
    B1 = B + 1
    Qwin = np.zeros((len(spectral), B1, B1))
    Rwin = np.zeros((len(spectral), B1, B1))
    for j, i in enumerate(spectral):
        for u in range(i - band_of[i], i + 1):
            lags = np.arange(band_of[u] + 1)
            lags = lags[u - lags >= i - band_of[i]]
            Qwin[j, u % B1, lags] = Q[u, u - lags]
            Rwin[j, u % B1, lags] = R[u, u - lags]
    return s, kappa, Qout, Rout, status, failed_at, Qwin, Rwin
