"""Compiled (Numba) row kernels of the residual-network DMFT and of its infinite-depth limit.

Packed lower-triangular storage: entry ``(t, s)``, ``s <= t``, of a two-time matrix at index
``t (t + 1) / 2 + s`` of a 1-d array (one layer, or one layer-time point). The NumPy references
are ``_DenseRows`` (:mod:`dmft.solvers.residual`) and ``_DenseOde`` (:mod:`dmft.solvers.infinite_depth`);
``tests/test_residual.py`` checks that these kernels agree with them to round-off. The kernels are
module-level functions so that Numba's on-disk cache can hold them (closures over other compiled
functions are recompiled in every process). This module imports Numba: import it lazily.
"""

from __future__ import annotations

import numba
import numpy as np

# reassoc + contract let LLVM vectorise the reductions; NaN / inf still propagate, so a diverging
# run produces non-finite numbers that the solvers detect.
jit = numba.njit(cache=True, fastmath={"reassoc", "contract"})


@jit
def lvec(x, X, m, n, out):
    """``out[r] += sum_{s<m} x[s] X[s, r]`` for ``r < n`` (``X`` lower triangular)."""
    for s in range(m):
        w = x[s]
        start = s * (s + 1) // 2
        top = s + 1 if s + 1 < n else n
        for r in range(top):
            out[r] += w * X[start + r]


@jit
def lvec_mix(x, X, Y, c, m, n, out):
    """``out[r] += sum_{s<m} x[s] (X[s, r] + c Y[s, r] [r < s])`` for ``r < n``."""
    for s in range(m):
        w = x[s]
        wc = w * c
        start = s * (s + 1) // 2
        top = s + 1 if s + 1 < n else n
        for r in range(top):
            out[r] += w * X[start + r]
            if r < s:
                out[r] += wc * Y[start + r]


@jit
def svec(x, X, m, n, out):
    """``out[r] += sum_{s<m} x[s] X[s, r]`` for ``r < n`` (``n >= m``; ``X`` symmetric)."""
    for i in range(n):
        start = i * (i + 1) // 2
        if i < m:
            xi = x[i]
            acc = 0.0
            for j in range(i):
                c = X[start + j]
                acc += c * x[j]
                out[j] += c * xi
            out[i] += acc + X[start + i] * xi
        else:
            acc = 0.0
            for j in range(m):
                acc += X[start + j] * x[j]
            out[i] += acc


@jit
def cov_row(x, X, C, k, t, scale, out):
    """``out[s] += scale * x C X[s]^T`` for ``s <= t``: row ``t`` of ``X C X^T`` with ``x = X[t]``
    (``X`` lower triangular with rows supported on ``< k``: ``k = t`` strictly lower, ``t + 1``
    otherwise; ``C`` symmetric, rows ``< k`` used)."""
    y = np.zeros(k)
    svec(x, C, k, k, y)
    for s in range(t + 1):
        start = s * (s + 1) // 2
        top = s + 1 if s + 1 < k else k
        acc = 0.0
        for r in range(top):
            acc += X[start + r] * y[r]
        out[s] += scale * acc


@jit
def finish_g(t, P, Q, V, VP, Ce, Ca, Cg):
    """Rows ``t`` of ``V = (I - P Q)^{-1}``, ``R_g = V P`` and ``C_g = V Ce V^T + R_g Ca R_g^T``."""
    n = t + 1
    row = t * n // 2
    pq = np.zeros(t)
    lvec(P[row : row + t], Q, t, t, pq)
    v = V[row : row + n]
    v[:] = 0.0
    lvec(pq, V, t, t, v)
    v[t] = 1.0
    vp = VP[row : row + n]
    vp[:] = 0.0
    lvec(v, P, n, t, vp)
    c = Cg[row : row + n]
    c[:] = 0.0
    cov_row(v, V, Ce, n, t, 1.0, c)
    cov_row(vp, VP, Ca, t, t, 1.0, c)


@jit
def finish_h(t, Q, P, W, WQ, Ca, Ce, Ch):
    """Rows ``t`` of ``W = (I - Q P)^{-1}``, ``R_h = W Q`` and ``C_h = W Ca W^T + R_h Ce R_h^T``."""
    n = t + 1
    row = t * n // 2
    qp = np.zeros(t)
    lvec(Q[row : row + n], P, n, t, qp)
    w = W[row : row + n]
    w[:] = 0.0
    lvec(qp, W, t, t, w)
    w[t] = 1.0
    wq = WQ[row : row + n]
    wq[:] = 0.0
    lvec(w, Q, n, n, wq)
    c = Ch[row : row + n]
    c[:] = 0.0
    cov_row(w, W, Ca, n, t, 1.0, c)
    cov_row(wq, WQ, Ce, n, t, 1.0, c)


@jit
def backward(t, b, eg, P, Q, V, VP, Ce, Ca, Cg, Ch, WQ, Z, ZP):
    """Row ``t`` down the network (``l = L..1``): ``P, Ce, Z, ZP`` and, through :func:`finish_g`,
    ``V, R_g, C_g`` (arrays ``(L, packed)``; see :mod:`dmft.solvers.residual`)."""
    depth = P.shape[0]
    n = t + 1
    row = t * n // 2
    top = depth - 1
    P[top, row : row + t] = eg
    P[top, row + t] = 0.0
    Ce[top, row : row + n] = 1.0
    finish_g(t, P[top], Q[top], V[top], VP[top], Ce[top], Ca[top], Cg[top])
    for l in range(top - 1, -1, -1):
        pf = np.zeros(t)
        lvec_mix(P[l + 1, row : row + t], WQ[l], Ch[l], eg, t, t, pf)  # P_{l+1}[t] F_l / b
        z = Z[l, row : row + n]
        z[:] = 0.0
        for s in range(t):
            pf[s] *= b * b
        lvec(pf, Z[l], t, t, z)
        z[t] = 1.0
        zp = ZP[l, row : row + n]
        zp[:] = 0.0
        lvec(z, P[l + 1], n, t, zp)
        p = P[l, row : row + n]
        for r in range(t):
            p[r] = zp[r] + b * b * (VP[l + 1, row + r] + eg * Cg[l + 1, row + r])
        p[t] = 0.0
        ce = Ce[l, row : row + n]
        ce[:] = 0.0
        cov_row(z, Z[l], Ce[l + 1], n, t, 1.0, ce)
        cov_row(zp, ZP[l], Ch[l], t, t, b * b, ce)
        for s in range(n):
            ce[s] += b * b * Cg[l + 1, row + s]
        finish_g(t, P[l], Q[l], V[l], VP[l], Ce[l], Ca[l], Cg[l])


@jit
def forward(t, b, eg, a_row, cu_row, P, Q, W, WQ, Ce, Ca, Ch, Cg, VP, M, MQ):
    """Row ``t`` up the network (``l = 1..L``) from ``Q_1[t] = A[t]``, ``Ca_1[t] = C_u[t]``:
    ``W, R_h, C_h`` (:func:`finish_h`), then ``M, MQ`` and the next layer's ``Q, Ca``."""
    depth = P.shape[0]
    n = t + 1
    row = t * n // 2
    Q[0, row : row + n] = a_row
    Ca[0, row : row + n] = cu_row
    for l in range(depth):
        finish_h(t, Q[l], P[l], W[l], WQ[l], Ca[l], Ce[l], Ch[l])
        if l == depth - 1:
            break
        qg = np.zeros(t)
        lvec_mix(Q[l, row : row + n], VP[l + 1], Cg[l + 1], eg, n, t, qg)  # Q_l[t] G_l / b
        for s in range(t):
            qg[s] *= b * b
        m = M[l, row : row + n]
        m[:] = 0.0
        lvec(qg, M[l], t, t, m)
        m[t] = 1.0
        mq = MQ[l, row : row + n]
        mq[:] = 0.0
        lvec(m, Q[l], n, n, mq)
        q = Q[l + 1, row : row + n]
        for r in range(n):
            q[r] = mq[r] + b * b * WQ[l, row + r]
            if r < t:
                q[r] += b * b * eg * Ch[l, row + r]
        ca = Ca[l + 1, row : row + n]
        ca[:] = 0.0
        cov_row(m, M[l], Ca[l], n, t, 1.0, ca)
        cov_row(mq, MQ[l], Cg[l + 1], n, t, b * b, ca)
        for s in range(n):
            ca[s] += b * b * Ch[l, row + s]


@jit
def down_rhs(t, beta2, eg, P, Q, V, VP, Ce, Ca, Cg, Ch, WQ, PF, dp, dce):
    """Infinite depth, one layer-time point (1-d packed arrays): the derived rows ``t`` of ``V, R_g,
    C_g, P Ft`` from the state rows ``P[t], Ce[t]``, and their slopes ``dp = dP[t]/dtau``,
    ``dce = dCe[t]/dtau`` (:mod:`dmft.solvers.infinite_depth`)."""
    n = t + 1
    row = t * n // 2
    finish_g(t, P, Q, V, VP, Ce, Ca, Cg)
    pf = PF[row : row + n]
    pf[:] = 0.0
    lvec_mix(P[row : row + t], WQ, Ch, eg, t, t, pf)  # (P Ft)[t]
    dp[:] = 0.0
    lvec(pf, P, t, t, dp)
    for r in range(t):
        dp[r] = -beta2 * (dp[r] + VP[row + r] + eg * Cg[row + r])
    dce[:] = 0.0
    svec(pf, Ce, t, n, dce)  # (P Ft Ce)(t, s)
    for s in range(n):  # (Ce (P Ft)^T)(t, s) = sum_r Ce(t, r) PF(s, r)
        start = s * (s + 1) // 2
        acc = 0.0
        for r in range(s if s < t else t):
            acc += PF[start + r] * Ce[row + r]
        dce[s] += acc
    cov_row(P[row : row + t], P, Ch, t, t, 1.0, dce)
    for s in range(n):
        dce[s] = -beta2 * (dce[s] + Cg[row + s])


@jit
def up_rhs(t, beta2, eg, Q, P, W, WQ, Ca, Ce, Ch, Cg, VP, QG, dq, dca):
    """Infinite depth, one layer-time point: the derived rows ``t`` of ``W, R_h, C_h, Q Gt`` from the
    state rows ``Q[t], Ca[t]``, and their slopes ``dq = dQ[t]/dtau``, ``dca = dCa[t]/dtau``."""
    n = t + 1
    row = t * n // 2
    finish_h(t, Q, P, W, WQ, Ca, Ce, Ch)
    qg = QG[row : row + n]
    qg[:] = 0.0
    lvec_mix(Q[row : row + n], VP, Cg, eg, n, t, qg)  # (Q Gt)[t]
    dq[:] = 0.0
    lvec(qg, Q, t, n, dq)
    for r in range(n):
        dq[r] += WQ[row + r]
        if r < t:
            dq[r] += eg * Ch[row + r]
        dq[r] *= beta2
    dca[:] = 0.0
    svec(qg, Ca, t, n, dca)
    for s in range(n):
        start = s * (s + 1) // 2
        acc = 0.0
        for r in range(s if s < t else t):
            acc += QG[start + r] * Ca[row + r]
        dca[s] += acc
    cov_row(Q[row : row + n], Q, Cg, n, t, 1.0, dca)
    for s in range(n):
        dca[s] = beta2 * (dca[s] + Ch[row + s])


@jit
def _set_down(t, P, Ce, y):
    row = t * (t + 1) // 2
    for r in range(t):
        P[row + r] = y[r]
    for r in range(t + 1):
        Ce[row + r] = y[t + r]


@jit
def _set_up(t, Q, Ca, y):
    row = t * (t + 1) // 2
    for r in range(t + 1):
        Q[row + r] = y[r]
        Ca[row + r] = y[t + 1 + r]


@jit
def down_sweep(t, layer_steps, beta2, eg, P, Q, V, VP, Ce, Ca, Cg, Ch, WQ, PF):
    """Row ``t`` of ``P, Ce`` from ``tau = 1`` (``P = eta gamma0 S``, ``Ce = 1 1^T``) down to 0 by RK4
    on ``layer_steps`` intervals, with cubic-Hermite midpoints: the compiled twin of
    ``infinite_depth._rk4_sweep(..., downward=True)`` on ``(points, packed)`` arrays."""
    size = 2 * t + 1
    h = -1.0 / layer_steps
    y0 = np.empty(size)
    y0[:t] = eg
    y0[t:] = 1.0
    k1, k2, k3, k4 = np.empty(size), np.empty(size), np.empty(size), np.empty(size)
    y, f0 = np.empty(size), np.empty(size)
    j0 = 2 * layer_steps
    _set_down(t, P[j0], Ce[j0], y0)
    down_rhs(t, beta2, eg, P[j0], Q[j0], V[j0], VP[j0], Ce[j0], Ca[j0], Cg[j0], Ch[j0], WQ[j0], PF[j0], f0[:t], f0[t:])
    for k in range(layer_steps, 0, -1):
        jm, j1 = 2 * k - 1, 2 * k - 2
        k1[:] = f0
        y[:] = y0 + 0.5 * h * k1
        _set_down(t, P[jm], Ce[jm], y)
        down_rhs(t, beta2, eg, P[jm], Q[jm], V[jm], VP[jm], Ce[jm], Ca[jm], Cg[jm], Ch[jm], WQ[jm], PF[jm], k2[:t], k2[t:])
        y[:] = y0 + 0.5 * h * k2
        _set_down(t, P[jm], Ce[jm], y)
        down_rhs(t, beta2, eg, P[jm], Q[jm], V[jm], VP[jm], Ce[jm], Ca[jm], Cg[jm], Ch[jm], WQ[jm], PF[jm], k3[:t], k3[t:])
        y[:] = y0 + h * k3
        _set_down(t, P[j1], Ce[j1], y)
        down_rhs(t, beta2, eg, P[j1], Q[j1], V[j1], VP[j1], Ce[j1], Ca[j1], Cg[j1], Ch[j1], WQ[j1], PF[j1], k4[:t], k4[t:])
        y1 = y0 + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        _set_down(t, P[j1], Ce[j1], y1)
        down_rhs(t, beta2, eg, P[j1], Q[j1], V[j1], VP[j1], Ce[j1], Ca[j1], Cg[j1], Ch[j1], WQ[j1], PF[j1], k4[:t], k4[t:])
        y[:] = 0.5 * (y0 + y1) + h / 8.0 * (f0 - k4)  # cubic Hermite midpoint
        _set_down(t, P[jm], Ce[jm], y)
        down_rhs(t, beta2, eg, P[jm], Q[jm], V[jm], VP[jm], Ce[jm], Ca[jm], Cg[jm], Ch[jm], WQ[jm], PF[jm], k2[:t], k2[t:])
        y0[:] = y1
        f0[:] = k4


@jit
def up_sweep(t, layer_steps, beta2, eg, a_row, cu_row, Q, P, W, WQ, Ca, Ce, Ch, Cg, VP, QG):
    """Row ``t`` of ``Q, Ca`` from ``tau = 0`` (``Q = A``, ``Ca = C_u``) up to 1: the compiled twin of
    ``infinite_depth._rk4_sweep(..., downward=False)``."""
    n = t + 1
    size = 2 * n
    h = 1.0 / layer_steps
    y0 = np.empty(size)
    y0[:n] = a_row
    y0[n:] = cu_row
    k1, k2, k3, k4 = np.empty(size), np.empty(size), np.empty(size), np.empty(size)
    y, f0 = np.empty(size), np.empty(size)
    _set_up(t, Q[0], Ca[0], y0)
    up_rhs(t, beta2, eg, Q[0], P[0], W[0], WQ[0], Ca[0], Ce[0], Ch[0], Cg[0], VP[0], QG[0], f0[:n], f0[n:])
    for k in range(layer_steps):
        jm, j1 = 2 * k + 1, 2 * k + 2
        k1[:] = f0
        y[:] = y0 + 0.5 * h * k1
        _set_up(t, Q[jm], Ca[jm], y)
        up_rhs(t, beta2, eg, Q[jm], P[jm], W[jm], WQ[jm], Ca[jm], Ce[jm], Ch[jm], Cg[jm], VP[jm], QG[jm], k2[:n], k2[n:])
        y[:] = y0 + 0.5 * h * k2
        _set_up(t, Q[jm], Ca[jm], y)
        up_rhs(t, beta2, eg, Q[jm], P[jm], W[jm], WQ[jm], Ca[jm], Ce[jm], Ch[jm], Cg[jm], VP[jm], QG[jm], k3[:n], k3[n:])
        y[:] = y0 + h * k3
        _set_up(t, Q[j1], Ca[j1], y)
        up_rhs(t, beta2, eg, Q[j1], P[j1], W[j1], WQ[j1], Ca[j1], Ce[j1], Ch[j1], Cg[j1], VP[j1], QG[j1], k4[:n], k4[n:])
        y1 = y0 + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        _set_up(t, Q[j1], Ca[j1], y1)
        up_rhs(t, beta2, eg, Q[j1], P[j1], W[j1], WQ[j1], Ca[j1], Ce[j1], Ch[j1], Cg[j1], VP[j1], QG[j1], k4[:n], k4[n:])
        y[:] = 0.5 * (y0 + y1) + h / 8.0 * (f0 - k4)
        _set_up(t, Q[jm], Ca[jm], y)
        up_rhs(t, beta2, eg, Q[jm], P[jm], W[jm], WQ[jm], Ca[jm], Ce[jm], Ch[jm], Cg[jm], VP[jm], QG[jm], k2[:n], k2[n:])
        y0[:] = y1
        f0[:] = k4
