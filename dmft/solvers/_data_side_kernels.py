"""Compiled (Numba) twins of the packed-row products of :mod:`dmft.solvers._data_side`.

Packed lower-triangular storage: entry ``(t, s)``, ``s <= t``, of a two-time matrix at index
``t (t + 1) / 2 + s`` of the last axis. The NumPy reference is ``_data_side.NumpyKernels`` (it
unpacks and calls matmul); ``tests/test_deep.py`` checks that these loops agree with it to round-off.
They stream exactly the packed half that is needed (the deep solvers are bound by memory bandwidth).
This module imports Numba: import it lazily (``_data_side.get_kernels``).
"""

from __future__ import annotations

import numpy as np

from .._backend import jit

__all__ = ["vecmat", "rowdot", "symv", "rowdot_vecmat"]


@jit
def vecmat(a, packed, n):
    """``out[k, r] = sum_{s < m} a[k, s] X_k[s, r]`` for ``r < n`` (``m = a.shape[1]``)."""
    modes, m = a.shape
    out = np.zeros((modes, n))
    for k in range(modes):
        for s in range(m):
            weight = a[k, s]
            start = s * (s + 1) // 2
            for r in range(min(s + 1, n)):
                out[k, r] += weight * packed[k, start + r]
    return out


@jit
def rowdot(packed, y, n):
    """``out[k, s] = sum_{r < m} X_k[s, r] y[k, r]`` for ``s < n`` (``m = y.shape[1]``)."""
    modes, m = y.shape
    out = np.empty((modes, n))
    for k in range(modes):
        for s in range(n):
            start = s * (s + 1) // 2
            acc = 0.0
            for r in range(min(s + 1, m)):
                acc += packed[k, start + r] * y[k, r]
            out[k, s] = acc
    return out


@jit
def symv(packed, x):
    """``out[k] = C[:m, :m] @ x[k]`` for one symmetric ``C`` (packed, shared by all ``k``)."""
    modes, m = x.shape
    out = np.zeros((modes, m))
    for i in range(m):
        start = i * (i + 1) // 2
        for k in range(modes):
            xi = x[k, i]
            acc = 0.0
            for j in range(i):
                c = packed[start + j]
                acc += c * x[k, j]
                out[k, j] += c * xi
            out[k, i] += acc + packed[start + i] * xi
    return out


@jit
def rowdot_vecmat(packed, y, a, n):
    """``(rowdot(packed, y, n), vecmat(a, packed, n))`` in one pass over ``packed``."""
    modes, my = y.shape
    ma = a.shape[1]
    dots = np.empty((modes, n))
    sums = np.zeros((modes, n))
    for k in range(modes):
        for s in range(n):
            start = s * (s + 1) // 2
            acc = 0.0
            for r in range(min(s + 1, my)):
                acc += packed[k, start + r] * y[k, r]
            dots[k, s] = acc
            if s < ma:
                weight = a[k, s]
                for r in range(s + 1):
                    sums[k, r] += weight * packed[k, start + r]
    return dots, sums
