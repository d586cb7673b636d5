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
are copied out; the entries between report times further apart than the window are continued
by the same equations as "tracked columns" (``F_Q``, ``F_R`` restricted to the window; the
``D`` term, all of whose support lies outside the window, vanishes).

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
def _forcing(i, t, band, Qr, Rr, Mr, Dr, B1, s, c, theta, nu, beta, FQ, FR, Fs):
    """Row ``i``'s forcings ``F_Q(t_i, t_{i-l})``, ``F_R(t_i, t_{i-l})`` (``l <= band``), ``F_s`` and
    ``kappa(t_i)`` (returned), with trapezoidal weights over the window ``[t_{i-band}, t_i]``."""
    K = c.shape[0]
    slot = i % B1
    lo = i - band
    for l in range(band + 1):
        FQ[l] = 0.0
        FR[l] = 0.0
    # F_Q's signal part and F_s's local part
    sig = nu * theta[i]
    for l in range(band + 1):
        acc = 0.0
        for a in range(K):
            acc += c[a] * s[i, a] * s[i - l, a]
        FQ[l] = sig * acc
    energy = 0.0
    for a in range(K):
        Fs[a] = sig * c[a] * s[i, a]
        energy += c[a] * s[i, a] * s[i, a]
    if band == 0:
        return sig * energy + nu / beta
    kappa = sig * energy + nu / beta
    for lu in range(band + 1):
        u = i - lu
        # weight of node u in a sum over [t_lo, t_i]
        if lu == 0:
            w = (t[i] - t[i - 1]) / 2
        elif lu == band:
            w = (t[lo + 1] - t[lo]) / 2
        else:
            w = (t[u + 1] - t[u - 1]) / 2
        m_iu = Mr[slot, lu]
        wm = w * m_iu
        kappa += w * (m_iu * Qr[slot, lu] + Dr[slot, lu] * Rr[slot, lu])
        for a in range(K):
            Fs[a] += wm * s[u, a]
        us = u % B1
        # u >= m: columns m = u - k, k = 0..(band - lu); Q[u, m] = Qr[us, k], R[u, m] = Rr[us, k]
        for k in range(band - lu + 1):
            lm = lu + k
            FQ[lm] += wm * Qr[us, k]
            # F_R: sum over u in [m, i]; the end u = m gets half its right interval
            if k == 0:
                if lu == 0:
                    continue  # F_R(t_i, t_i) is not needed (R(t, t) = 1)
                wr = (t[u + 1] - t[u]) / 2
                FR[lm] += wr * m_iu * Rr[us, 0]
            else:
                FR[lm] += wm * Rr[us, k]
    # u < m: Q[u, m] = Q[m, u] = Qr[m % B1, m - u]; and the D term: sum over u <= m
    for lm in range(band + 1):
        m = i - lm
        ms = m % B1
        accq = 0.0
        accd = 0.0
        for lu in range(lm + 1, band + 1):
            u = i - lu
            if lu == band:
                w = (t[lo + 1] - t[lo]) / 2
            else:
                w = (t[u + 1] - t[u - 1]) / 2
            accq += w * Mr[slot, lu] * Qr[ms, lu - lm]
            accd += w * Dr[slot, lu] * Rr[ms, lu - lm]
        # D term end node u = m (R(t_m, t_m) = 1), half its left interval, if inside the window
        if lm < band:
            accd += (t[m] - t[m - 1]) / 2 * Dr[slot, lm] * Rr[ms, 0]
        FQ[lm] += accq + accd
    return kappa


@jit
def _tracked_forcing(i, t, band, Mr, B1, s, c, theta, nu, colQ, colR, col_times, FQt, FRt):
    """Forcings of the tracked columns (report times older than the window) at row ``i``."""
    K = c.shape[0]
    slot = i % B1
    lo = i - band
    sig = nu * theta[i]
    for j in range(col_times.shape[0]):
        r = col_times[j]
        if r < 0:
            continue
        acc = 0.0
        for a in range(K):
            acc += c[a] * s[i, a] * s[r, a]
        fq = sig * acc
        fr = 0.0
        for lu in range(band + 1):
            u = i - lu
            if band == 0:
                w = 0.0
            elif lu == 0:
                w = (t[i] - t[i - 1]) / 2
            elif lu == band:
                w = (t[lo + 1] - t[lo]) / 2
            else:
                w = (t[u + 1] - t[u - 1]) / 2
            wm = w * Mr[slot, lu]
            fq += wm * colQ[j, u % B1]
            fr += wm * colR[j, u % B1]
        FQt[j] = fq
        FRt[j] = fr


@jit
def integrate_numba(t, band_of, B, report, c, s0, theta, nu, beta, gamma, J2):
    """See the module docstring. ``band_of[i]``: the window of row ``i`` in grid steps
    (``band_of[i] <= min(i, B)``, ``band_of[i+1] <= band_of[i] + 1``); ``report``: increasing grid
    indices (``report[0] = 0``)."""
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
    FQn = np.zeros(B1)
    FRn = np.zeros(B1)
    Fsn = np.zeros(K)
    Qout = np.zeros((nr, nr))
    Rout = np.zeros((nr, nr))
    # tracked columns: one per report index, active once it has left the window
    colQ = np.zeros((nr, B1))
    colR = np.zeros((nr, B1))
    col_times = -np.ones(nr, dtype=np.int64)
    FQt = np.zeros(nr)
    FRt = np.zeros(nr)
    FQtn = np.zeros(nr)
    FRtn = np.zeros(nr)
    half_k_nu = K * nu / 2
    nu2J2 = nu * nu * J2

    for a in range(K):
        s[0, a] = s0[a]
    Qr[0, 0] = 1.0
    Rr[0, 0] = 1.0
    _row_kernels(0, t, 0, Qr, Rr, Mr, Dr, B1, gamma, half_k_nu, nu2J2)
    kappa[0] = _forcing(0, t, 0, Qr, Rr, Mr, Dr, B1, s, c, theta, nu, beta, FQ, FR, Fs)
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
        # report columns leaving the window start being tracked
        for j in range(nr):
            r = report[j]
            if r <= i and col_times[j] < 0 and i + 1 - r > nb:
                col_times[j] = r
                for lu in range(band + 1):
                    u = i - lu
                    if u >= r:
                        colQ[j, u % B1] = Qr[u % B1, u - r]
                        colR[j, u % B1] = Rr[u % B1, u - r]
        # tracked forcings at row i
        _tracked_forcing(i, t, band, Mr, B1, s, c, theta, nu, colQ, colR, col_times, FQt, FRt)
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
        for j in range(nr):
            if col_times[j] >= 0:
                colQ[j, new] = a0 * colQ[j, cur] + ph * FQt[j]
                colR[j, new] = a0 * colR[j, cur] + ph * FRt[j]
        # evaluate, correct, evaluate
        for sweep in range(2):
            _row_kernels(i + 1, t, nb, Qr, Rr, Mr, Dr, B1, gamma, half_k_nu, nu2J2)
            k1 = _forcing(i + 1, t, nb, Qr, Rr, Mr, Dr, B1, s, c, theta, nu, beta, FQn, FRn, Fsn)
            _tracked_forcing(i + 1, t, nb, Mr, B1, s, c, theta, nu, colQ, colR, col_times, FQtn, FRtn)
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
            for j in range(nr):
                if col_times[j] >= 0:
                    colQ[j, new] = ab * colQ[j, cur] + hh * (ab * FQt[j] + FQtn[j])
                    colR[j, new] = ab * colR[j, cur] + hh * (ab * FRt[j] + FRtn[j])
        for l in range(nb + 1):
            FQ[l] = FQn[l]
            FR[l] = FRn[l]
        for a in range(K):
            Fs[a] = Fsn[a]
        if not math.isfinite(kappa[i + 1]):
            status = 1
            failed_at = i + 1
            break
        # report row
        if next_report < nr and report[next_report] == i + 1:
            for j in range(next_report + 1):
                r = report[j]
                lag = i + 1 - r
                if lag <= nb:
                    Qout[next_report, j] = Qr[new, lag]
                    Rout[next_report, j] = Rr[new, lag]
                else:
                    Qout[next_report, j] = colQ[j, new]
                    Rout[next_report, j] = colR[j, new]
            next_report += 1
    for j in range(nr):
        for k in range(j):
            Qout[k, j] = Qout[j, k]
    return s, kappa, Qout, Rout, status, failed_at


def integrate_numpy(t, band_of, B, report, c, s0, theta, nu, beta, gamma, J2):
    """The NumPy twin of :func:`integrate_numba`: the same scheme, with full ``(n, n)`` arrays
    (``Q[i, m]`` for ``t_i - t_m`` within row ``i``'s window) and vector operations per row.
    ``B`` is unused (kept for the same signature). Reference for tests; ``O(n^2)`` memory."""
    n = t.size
    K = c.size
    Q = np.zeros((n, n))
    R = np.zeros((n, n))
    M = np.zeros((n, n))
    D = np.zeros((n, n))
    s = np.zeros((n, K))
    kappa = np.zeros(n)
    report = np.asarray(report)
    half_k_nu, nu2J2 = K * nu / 2, nu * nu * J2

    def kernels(i):
        lo = i - band_of[i]
        e = np.exp(-gamma * (t[i] - t[lo : i + 1]) / 2)
        M[i, lo : i + 1] = e * (-half_k_nu * Q[i, lo : i + 1] + nu2J2 * R[i, lo : i + 1])
        D[i, lo : i + 1] = nu2J2 * e * Q[i, lo : i + 1]

    def window_weights(i):
        lo = i - band_of[i]
        nodes = t[lo : i + 1]
        w = np.zeros(nodes.size)
        if nodes.size > 1:
            w[1:-1] = (nodes[2:] - nodes[:-2]) / 2
            w[0] = (nodes[1] - nodes[0]) / 2
            w[-1] = (nodes[-1] - nodes[-2]) / 2
        return lo, w

    def forcing(i, tracked):
        lo, w = window_weights(i)
        idx = np.arange(lo, i + 1)
        sig = nu * theta[i]
        Qsym = np.where(idx[:, None] >= idx[None, :], Q[np.ix_(idx, idx)], Q[np.ix_(idx, idx)].T)
        wm = w * M[i, idx]
        FQ = sig * (s[idx] * c) @ s[i] + wm @ Qsym
        FR = np.zeros(idx.size)
        for k, m in enumerate(idx):
            if m < i:
                # sum over u in [m, i]: interior weights as in the window, end u = m half its right interval
                part = wm[k:] * R[idx[k:], m]
                part[0] = (t[m + 1] - t[m]) / 2 * M[i, m] * R[m, m]
                FR[k] = part.sum()
            # D term: sum over u in [lo, m], end u = m half its left interval (if m > lo)
            dpart = w[: k + 1] * D[i, idx[: k + 1]] * R[m, idx[: k + 1]]
            if m > lo:
                dpart[-1] = (t[m] - t[m - 1]) / 2 * D[i, m] * R[m, m]
            else:
                dpart[-1] = 0.0
            FQ[k] += dpart.sum()
        Fs = sig * c * s[i] + wm @ s[idx]
        kap = sig * np.sum(c * s[i] ** 2) + nu / beta + np.sum(w * (M[i, idx] * Q[i, idx] + D[i, idx] * R[i, idx]))
        # tracked columns: same sums restricted to the window, rows u > r
        FQt = np.zeros(len(tracked))
        FRt = np.zeros(len(tracked))
        for j, r in enumerate(tracked):
            FQt[j] = sig * np.sum(c * s[i] * s[r]) + wm @ Q[idx, r]
            FRt[j] = wm @ R[idx, r]
        return FQ, FR, Fs, kap, FQt, FRt

    s[0] = s0
    Q[0, 0] = R[0, 0] = 1.0
    kernels(0)
    FQ, FR, Fs, kappa[0], _, _ = forcing(0, [])
    tracked: list[int] = []
    status, failed_at = 0, -1
    for i in range(n - 1):
        h = t[i + 1] - t[i]
        nb = band_of[i + 1]
        for r in report:
            if r <= i and r not in tracked and i + 1 - r > nb:
                tracked.append(int(r))
        _, _, _, _, FQt, FRt = forcing(i, tracked)
        lo_new = i + 1 - nb
        cols = np.arange(lo_new, i + 1)  # columns m of row i + 1 below the diagonal
        k0 = kappa[i]
        a0 = np.exp(-h * k0)
        ph = -np.expm1(-h * k0) / k0 if abs(h * k0) >= 1e-8 else h * (1 - 0.5 * h * k0)
        lo_old = i - band_of[i]
        F_index = cols - lo_old  # position of column m in row i's forcing arrays
        Q[i + 1, cols] = a0 * Q[i, cols] + ph * FQ[F_index]
        R[i + 1, cols] = a0 * R[i, cols] + ph * FR[F_index]
        Q[i + 1, i + 1] = R[i + 1, i + 1] = 1.0
        s[i + 1] = a0 * s[i] + ph * Fs
        tr = np.array(tracked, dtype=int)
        if tr.size:
            Q[i + 1, tr] = a0 * Q[i, tr] + ph * FQt
            R[i + 1, tr] = a0 * R[i, tr] + ph * FRt
        for sweep in range(2):
            kernels(i + 1)
            FQn, FRn, Fsn, k1, FQtn, FRtn = forcing(i + 1, tracked)
            kappa[i + 1] = k1
            if sweep == 1:
                break
            ab = np.exp(-h * (k0 + k1) / 2)
            new_index = cols - lo_new
            Q[i + 1, cols] = ab * Q[i, cols] + h / 2 * (ab * FQ[F_index] + FQn[new_index])
            R[i + 1, cols] = ab * R[i, cols] + h / 2 * (ab * FR[F_index] + FRn[new_index])
            s[i + 1] = ab * s[i] + h / 2 * (ab * Fs + Fsn)
            if tr.size:
                Q[i + 1, tr] = ab * Q[i, tr] + h / 2 * (ab * FQt + FQtn)
                R[i + 1, tr] = ab * R[i, tr] + h / 2 * (ab * FRt + FRtn)
        FQ, FR, Fs = FQn, FRn, Fsn
        if not np.isfinite(kappa[i + 1]):
            status, failed_at = 1, i + 1
            break
    Qout = Q[np.ix_(report, report)]
    Rout = R[np.ix_(report, report)]
    Qout = np.tril(Qout) + np.tril(Qout, -1).T
    return s, kappa, Qout, np.tril(Rout), status, failed_at
