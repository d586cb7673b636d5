"""Compiled (Numba) row kernels of the residual-network DMFT and of its infinite-depth limit.

Packed lower-triangular storage: entry ``(t, s)``, ``s <= t``, of a two-time matrix at index
``t (t + 1) / 2 + s`` of a 1-d array (one layer, or one layer-time point). ``W`` is the packed weight
matrix of the time grid (:class:`dmft.solvers._network.TimeGrid`) and ``g`` is ``gamma0``: the
learning-rate terms are ``g (W o C)``. Row ``t`` of every matrix may have a diagonal entry (an
implicit time rule); the entries of row ``t`` that a pass reads before it writes them hold the
previous iterate (:func:`dmft.solvers._network.solve_row`). The NumPy references are ``_DenseRows``
(:mod:`dmft.solvers.residual`) and ``_DenseOde`` (:mod:`dmft.solvers.infinite_depth`);
``tests/test_residual.py`` checks that these kernels agree with them to round-off. The kernels are
module-level functions so that Numba's on-disk cache can hold them. This module imports Numba:
import it lazily.
"""

from __future__ import annotations

import numpy as np

from .._backend import jit


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
def lvec_w(x, X, Y, W, g, m, n, out):
    """``out[r] += sum_{s<m} x[s] (X[s, r] + g W[s, r] Y[s, r])`` for ``r < n``: ``x (X + g W o Y)``."""
    for s in range(m):
        w = x[s]
        start = s * (s + 1) // 2
        top = s + 1 if s + 1 < n else n
        for r in range(top):
            out[r] += w * (X[start + r] + g * W[start + r] * Y[start + r])


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
def cov_row(x, X, C, t, scale, out):
    """``out[s] += scale * x C X[s]^T`` for ``s <= t``: row ``t`` of ``X C X^T`` with ``x = X[t]``
    (``C`` symmetric, rows ``<= t`` used)."""
    n = t + 1
    y = np.zeros(n)
    svec(x, C, n, n, y)
    for s in range(n):
        start = s * (s + 1) // 2
        acc = 0.0
        for r in range(s + 1):
            acc += X[start + r] * y[r]
        out[s] += scale * acc


@jit
def resolvent_row(t, product, R):
    """Row ``t`` of ``R = (I - X)^{-1}`` from ``product = X[t, :t+1]``: ``R[t, r] = sum_{j<t} X[t, j]
    R[j, r] / (1 - X[t, t])`` for ``r < t`` and ``R[t, t] = 1 / (1 - X[t, t])``."""
    row = t * (t + 1) // 2
    r = R[row : row + t + 1]
    r[:] = 0.0
    lvec(product, R, t, t, r)
    scale = 1.0 / (1.0 - product[t])
    for s in range(t):
        r[s] *= scale
    r[t] = scale


@jit
def finish_g(t, P, Q, V, VP, Ce, Ca, Cg):
    """Rows ``t`` of ``V = (I - P Q)^{-1}``, ``R_g = V P`` and ``C_g = V Ce V^T + R_g Ca R_g^T``."""
    n = t + 1
    row = t * n // 2
    pq = np.zeros(n)
    lvec(P[row : row + n], Q, n, n, pq)
    resolvent_row(t, pq, V)
    v = V[row : row + n]
    vp = VP[row : row + n]
    vp[:] = 0.0
    lvec(v, P, n, n, vp)
    c = Cg[row : row + n]
    c[:] = 0.0
    cov_row(v, V, Ce, t, 1.0, c)
    cov_row(vp, VP, Ca, t, 1.0, c)


@jit
def finish_h(t, Q, P, Wh, WQ, Ca, Ce, Ch):
    """Rows ``t`` of ``Wh = (I - Q P)^{-1}``, ``R_h = Wh Q`` and ``C_h = Wh Ca Wh^T + R_h Ce R_h^T``."""
    n = t + 1
    row = t * n // 2
    qp = np.zeros(n)
    lvec(Q[row : row + n], P, n, n, qp)
    resolvent_row(t, qp, Wh)
    w = Wh[row : row + n]
    wq = WQ[row : row + n]
    wq[:] = 0.0
    lvec(w, Q, n, n, wq)
    c = Ch[row : row + n]
    c[:] = 0.0
    cov_row(w, Wh, Ca, t, 1.0, c)
    cov_row(wq, WQ, Ce, t, 1.0, c)


@jit
def backward(t, b, g, W, P, Q, V, VP, Ce, Ca, Cg, Ch, WQ, Z, ZP):
    """Row ``t`` down the network (``l = L..1``): ``P, Ce, Z, ZP`` and, through :func:`finish_g`,
    ``V, R_g, C_g`` (arrays ``(L, packed)``; see :mod:`dmft.solvers.residual`)."""
    depth = P.shape[0]
    n = t + 1
    row = t * n // 2
    top = depth - 1
    for r in range(n):
        P[top, row + r] = g * W[row + r]  # E = gamma0 w
    Ce[top, row : row + n] = 1.0
    finish_g(t, P[top], Q[top], V[top], VP[top], Ce[top], Ca[top], Cg[top])
    for l in range(top - 1, -1, -1):
        pf = np.zeros(n)
        lvec_w(P[l + 1, row : row + n], WQ[l], Ch[l], W, g, n, n, pf)  # P_{l+1}[t] F_l / b
        for s in range(n):
            pf[s] *= b * b
        resolvent_row(t, pf, Z[l])
        z = Z[l, row : row + n]
        zp = ZP[l, row : row + n]
        zp[:] = 0.0
        lvec(z, P[l + 1], n, n, zp)
        p = P[l, row : row + n]
        for r in range(n):
            p[r] = zp[r] + b * b * (VP[l + 1, row + r] + g * W[row + r] * Cg[l + 1, row + r])
        ce = Ce[l, row : row + n]
        ce[:] = 0.0
        cov_row(z, Z[l], Ce[l + 1], t, 1.0, ce)
        cov_row(zp, ZP[l], Ch[l], t, b * b, ce)
        for s in range(n):
            ce[s] += b * b * Cg[l + 1, row + s]
        finish_g(t, P[l], Q[l], V[l], VP[l], Ce[l], Ca[l], Cg[l])


@jit
def forward(t, b, g, W, a_row, cu_row, P, Q, Wh, WQ, Ce, Ca, Ch, Cg, VP, M, MQ):
    """Row ``t`` up the network (``l = 1..L``) from ``Q_1[t] = A[t]``, ``Ca_1[t] = C_u[t]``:
    ``Wh, R_h, C_h`` (:func:`finish_h`), then ``M, MQ`` and the next layer's ``Q, Ca``."""
    depth = P.shape[0]
    n = t + 1
    row = t * n // 2
    Q[0, row : row + n] = a_row
    Ca[0, row : row + n] = cu_row
    for l in range(depth):
        finish_h(t, Q[l], P[l], Wh[l], WQ[l], Ca[l], Ce[l], Ch[l])
        if l == depth - 1:
            break
        qg = np.zeros(n)
        lvec_w(Q[l, row : row + n], VP[l + 1], Cg[l + 1], W, g, n, n, qg)  # Q_l[t] G_l / b
        for s in range(n):
            qg[s] *= b * b
        resolvent_row(t, qg, M[l])
        m = M[l, row : row + n]
        mq = MQ[l, row : row + n]
        mq[:] = 0.0
        lvec(m, Q[l], n, n, mq)
        q = Q[l + 1, row : row + n]
        for r in range(n):
            q[r] = mq[r] + b * b * (WQ[l, row + r] + g * W[row + r] * Ch[l, row + r])
        ca = Ca[l + 1, row : row + n]
        ca[:] = 0.0
        cov_row(m, M[l], Ca[l], t, 1.0, ca)
        cov_row(mq, MQ[l], Cg[l + 1], t, b * b, ca)
        for s in range(n):
            ca[s] += b * b * Ch[l, row + s]


@jit
def _transposed_product(X, C, t, out):
    """``out[s] += sum_{r<=s} X[s, r] C[t, r]`` for ``s <= t``: row ``t`` of ``C X^T`` (``C`` symmetric)."""
    row = t * (t + 1) // 2
    for s in range(t + 1):
        start = s * (s + 1) // 2
        acc = 0.0
        for r in range(s + 1):
            acc += X[start + r] * C[row + r]
        out[s] += acc


@jit
def down_rhs(t, beta2, g, W, P, Q, V, VP, Ce, Ca, Cg, Ch, WQ, PF, dp, dce):
    """Infinite depth, one layer-time point (1-d packed arrays): the derived rows ``t`` of ``V, R_g,
    C_g, P Ft`` (``Ft = R_h + g W o C_h``) from the state rows ``P[t], Ce[t]``, and their slopes
    ``dp = dP[t]/dtau``, ``dce = dCe[t]/dtau`` (:mod:`dmft.solvers.infinite_depth`)."""
    n = t + 1
    row = t * n // 2
    finish_g(t, P, Q, V, VP, Ce, Ca, Cg)
    pf = PF[row : row + n]
    pf[:] = 0.0
    lvec_w(P[row : row + n], WQ, Ch, W, g, n, n, pf)  # (P Ft)[t]
    dp[:] = 0.0
    lvec(pf, P, n, n, dp)
    for r in range(n):
        dp[r] = -beta2 * (dp[r] + VP[row + r] + g * W[row + r] * Cg[row + r])
    dce[:] = 0.0
    svec(pf, Ce, n, n, dce)  # (P Ft Ce)(t, s)
    _transposed_product(PF, Ce, t, dce)  # (Ce (P Ft)^T)(t, s)
    cov_row(P[row : row + n], P, Ch, t, 1.0, dce)
    for s in range(n):
        dce[s] = -beta2 * (dce[s] + Cg[row + s])


@jit
def up_rhs(t, beta2, g, W, Q, P, Wh, WQ, Ca, Ce, Ch, Cg, VP, QG, dq, dca):
    """Infinite depth, one layer-time point: the derived rows ``t`` of ``Wh, R_h, C_h, Q Gt``
    (``Gt = R_g + g W o C_g``) from the state rows ``Q[t], Ca[t]``, and their slopes ``dq = dQ[t]/dtau``,
    ``dca = dCa[t]/dtau``."""
    n = t + 1
    row = t * n // 2
    finish_h(t, Q, P, Wh, WQ, Ca, Ce, Ch)
    qg = QG[row : row + n]
    qg[:] = 0.0
    lvec_w(Q[row : row + n], VP, Cg, W, g, n, n, qg)  # (Q Gt)[t]
    dq[:] = 0.0
    lvec(qg, Q, n, n, dq)
    for r in range(n):
        dq[r] = beta2 * (dq[r] + WQ[row + r] + g * W[row + r] * Ch[row + r])
    dca[:] = 0.0
    svec(qg, Ca, n, n, dca)
    _transposed_product(QG, Ca, t, dca)
    cov_row(Q[row : row + n], Q, Cg, t, 1.0, dca)
    for s in range(n):
        dca[s] = beta2 * (dca[s] + Ch[row + s])


@jit
def _set_row(t, X, Y, y):
    """Row ``t`` of ``X`` and ``Y`` from the state vector ``y = (X[t], Y[t])``."""
    n = t + 1
    row = t * n // 2
    for r in range(n):
        X[row + r] = y[r]
        Y[row + r] = y[n + r]


@jit
def down_sweep(t, layer_steps, beta2, g, W, P, Q, V, VP, Ce, Ca, Cg, Ch, WQ, PF):
    """Row ``t`` of ``P, Ce`` from ``tau = 1`` (``P = gamma0 w``, ``Ce = 1 1^T``) down to 0 by RK4 on
    ``layer_steps`` intervals, with cubic-Hermite midpoints: the compiled twin of
    ``infinite_depth._rk4_sweep(..., downward=True)`` on ``(points, packed)`` arrays."""
    n = t + 1
    row = t * n // 2
    size = 2 * n
    h = -1.0 / layer_steps
    y0 = np.empty(size)
    for r in range(n):
        y0[r] = g * W[row + r]
        y0[n + r] = 1.0
    k1, k2, k3, k4 = np.empty(size), np.empty(size), np.empty(size), np.empty(size)
    y, f0 = np.empty(size), np.empty(size)
    j0 = 2 * layer_steps
    _set_row(t, P[j0], Ce[j0], y0)
    down_rhs(t, beta2, g, W, P[j0], Q[j0], V[j0], VP[j0], Ce[j0], Ca[j0], Cg[j0], Ch[j0], WQ[j0], PF[j0], f0[:n], f0[n:])
    for k in range(layer_steps, 0, -1):
        jm, j1 = 2 * k - 1, 2 * k - 2
        k1[:] = f0
        y[:] = y0 + 0.5 * h * k1
        _set_row(t, P[jm], Ce[jm], y)
        down_rhs(t, beta2, g, W, P[jm], Q[jm], V[jm], VP[jm], Ce[jm], Ca[jm], Cg[jm], Ch[jm], WQ[jm], PF[jm], k2[:n], k2[n:])
        y[:] = y0 + 0.5 * h * k2
        _set_row(t, P[jm], Ce[jm], y)
        down_rhs(t, beta2, g, W, P[jm], Q[jm], V[jm], VP[jm], Ce[jm], Ca[jm], Cg[jm], Ch[jm], WQ[jm], PF[jm], k3[:n], k3[n:])
        y[:] = y0 + h * k3
        _set_row(t, P[j1], Ce[j1], y)
        down_rhs(t, beta2, g, W, P[j1], Q[j1], V[j1], VP[j1], Ce[j1], Ca[j1], Cg[j1], Ch[j1], WQ[j1], PF[j1], k4[:n], k4[n:])
        y1 = y0 + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        _set_row(t, P[j1], Ce[j1], y1)
        down_rhs(t, beta2, g, W, P[j1], Q[j1], V[j1], VP[j1], Ce[j1], Ca[j1], Cg[j1], Ch[j1], WQ[j1], PF[j1], k4[:n], k4[n:])
        y[:] = 0.5 * (y0 + y1) + h / 8.0 * (f0 - k4)  # cubic Hermite midpoint
        _set_row(t, P[jm], Ce[jm], y)
        down_rhs(t, beta2, g, W, P[jm], Q[jm], V[jm], VP[jm], Ce[jm], Ca[jm], Cg[jm], Ch[jm], WQ[jm], PF[jm], k2[:n], k2[n:])
        y0[:] = y1
        f0[:] = k4


@jit
def up_sweep(t, layer_steps, beta2, g, W, a_row, cu_row, Q, P, Wh, WQ, Ca, Ce, Ch, Cg, VP, QG):
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
    _set_row(t, Q[0], Ca[0], y0)
    up_rhs(t, beta2, g, W, Q[0], P[0], Wh[0], WQ[0], Ca[0], Ce[0], Ch[0], Cg[0], VP[0], QG[0], f0[:n], f0[n:])
    for k in range(layer_steps):
        jm, j1 = 2 * k + 1, 2 * k + 2
        k1[:] = f0
        y[:] = y0 + 0.5 * h * k1
        _set_row(t, Q[jm], Ca[jm], y)
        up_rhs(t, beta2, g, W, Q[jm], P[jm], Wh[jm], WQ[jm], Ca[jm], Ce[jm], Ch[jm], Cg[jm], VP[jm], QG[jm], k2[:n], k2[n:])
        y[:] = y0 + 0.5 * h * k2
        _set_row(t, Q[jm], Ca[jm], y)
        up_rhs(t, beta2, g, W, Q[jm], P[jm], Wh[jm], WQ[jm], Ca[jm], Ce[jm], Ch[jm], Cg[jm], VP[jm], QG[jm], k3[:n], k3[n:])
        y[:] = y0 + h * k3
        _set_row(t, Q[j1], Ca[j1], y)
        up_rhs(t, beta2, g, W, Q[j1], P[j1], Wh[j1], WQ[j1], Ca[j1], Ce[j1], Ch[j1], Cg[j1], VP[j1], QG[j1], k4[:n], k4[n:])
        y1 = y0 + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        _set_row(t, Q[j1], Ca[j1], y1)
        up_rhs(t, beta2, g, W, Q[j1], P[j1], Wh[j1], WQ[j1], Ca[j1], Ce[j1], Ch[j1], Cg[j1], VP[j1], QG[j1], k4[:n], k4[n:])
        y[:] = 0.5 * (y0 + y1) + h / 8.0 * (f0 - k4)
        _set_row(t, Q[jm], Ca[jm], y)
        up_rhs(t, beta2, g, W, Q[jm], P[jm], Wh[jm], WQ[jm], Ca[jm], Ce[jm], Ch[jm], Cg[jm], VP[jm], QG[jm], k2[:n], k2[n:])
        y0[:] = y1
        f0[:] = k4
