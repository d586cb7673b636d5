"""Numba kernels of the diagonal-network gradient flow (full batch): the site means and the field.

The same right-hand side as the NumPy reference (:mod:`._diagonal_flow_sites`) on site-major
coordinates (each site's ``c`` and ``z`` contiguous), in two parallel passes over chunks of
sites: the sums ``sum v c_j``, ``sum v z_j``, ``sum v^2`` (with ``v`` and ``k = dF/drho`` of every
site), then ``u = v + alpha^{-1/2} sum_j (Gamma_j c_j + L_j z_j)``. Opening coordinates (rare)
uses the reference's NumPy code on per-replica views of the site-major arrays. Compiled by
:func:`dmft._backend.jit`; tested against the reference.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .._backend import jit
from ._diagonal_flow_sites import FlowEvaluation, FlowSites
from ._diagonal_numba import _chunks, _ipow

__all__ = ["NumbaFlowSites"]


@jit
def _factor(depth, s, rho):  # pragma: no cover - compiled
    """``(F, dF/drho)`` on the flow's conserved curve (``factor_map``); NaN outside its domain."""
    if depth == 1:
        return 2.0 * rho, 2.0
    if depth == 2:
        s2 = s * s
        return 2.0 * s2 * math.sinh(4.0 * rho), 8.0 * s2 * math.cosh(4.0 * rho)
    base = s ** (2 - depth)
    lower = base - (depth - 2) * depth * rho
    if not lower > 0.0:
        return math.nan, math.nan
    power = -1.0 / (depth - 2)
    a = lower**power
    b = (base + (depth - 2) * depth * rho) ** power
    return _ipow(a, depth) - _ipow(b, depth), depth * depth * (_ipow(a, 2 * depth - 2) + _ipow(b, 2 * depth - 2))


@jit(parallel=True)
def _site_sums(rho, beta_star, C, Z, rank, chunk_start, chunk_stop, chunk_replica, depth, s,
               part_vc, part_vz, part_vv, v, k):  # pragma: no cover - compiled; tested against the reference
    """Pass 1: ``v``, ``k`` of every site and the chunk sums ``sum v c_j``, ``sum v z_j``, ``sum v^2``."""
    for c in numba.prange(chunk_start.shape[0]):
        r = rank[chunk_replica[c]]
        for j in range(r):
            part_vc[c, j] = 0.0
            part_vz[c, j] = 0.0
        acc = 0.0
        for m in range(chunk_start[c], chunk_stop[c]):
            F, slope = _factor(depth, s, rho[m])
            vm = beta_star[m] - F
            v[m] = vm
            k[m] = slope
            c_m = C[m]
            z_m = Z[m]
            for j in range(r):
                part_vc[c, j] += vm * c_m[j]
                part_vz[c, j] += vm * z_m[j]
            acc += vm * vm
        part_vv[c] = acc


@jit(parallel=True)
def _field(v, C, Z, rank, chunk_start, chunk_stop, chunk_replica, ia, g_rows, l_rows, u):
    # pragma: no cover - compiled; tested against the reference
    """Pass 2: ``u = v + ia sum_j (Gamma_j c_j + L_j z_j)`` per site."""
    for c in numba.prange(chunk_start.shape[0]):
        i = chunk_replica[c]
        r = rank[i]
        g = g_rows[i]
        ell = l_rows[i]
        for m in range(chunk_start[c], chunk_stop[c]):
            c_m = C[m]
            z_m = Z[m]
            acc = 0.0
            for j in range(r):
                acc += g[j] * c_m[j] + ell[j] * z_m[j]
            u[m] = v[m] + ia * acc


class NumbaFlowSites(FlowSites):
    """:class:`FlowSites` with site-major coordinates and the compiled right-hand side."""

    def __init__(self, problem, teacher, rng, capacity: int = 32):
        super().__init__(problem, teacher, rng, capacity=0)
        M = problem.sites
        self.C = np.zeros((M, capacity))
        self.Z = np.zeros((M, capacity))
        self.cg = np.zeros((problem.replicas, capacity))
        self.chunks = _chunks(problem, 8)
        self._flat_teacher = np.ascontiguousarray(self.beta_star.ravel())

    def coordinates(self, replica: int):
        Mr = self.problem.sites_per_replica
        return self.C[replica * Mr:(replica + 1) * Mr].T, self.Z[replica * Mr:(replica + 1) * Mr].T

    def grow(self, columns: int) -> None:
        self.C, self.Z = (np.pad(x, ((0, 0), (0, columns))) for x in (self.C, self.Z))
        self.cg = np.pad(self.cg, ((0, 0), (0, columns)))

    def evaluate(self, rho: np.ndarray) -> FlowEvaluation:
        p = self.problem
        R, Mr = p.replicas, p.sites_per_replica
        ia, s2 = p.inv_sqrt_alpha, p.noise_variance
        start, stop, replica, first, last = self.chunks
        cap = self.C.shape[1]
        part_vc = np.zeros((start.size, cap))
        part_vz = np.zeros((start.size, cap))
        part_vv = np.zeros(start.size)
        v = np.empty(p.sites)
        k = np.empty(p.sites)
        flat = np.ascontiguousarray(rho, dtype=np.float64).reshape(-1)
        _site_sums(flat, self._flat_teacher, self.C, self.Z, self.rank, start, stop, replica, p.depth,
                   p.init_scale, part_vc, part_vz, part_vv, v, k)
        per = last[0] - first[0]
        b_rows = part_vc.reshape(R, per, cap).sum(axis=1) / Mr + s2 * self.cg
        g_rows = part_vz.reshape(R, per, cap).sum(axis=1) / Mr
        l_rows = b_rows + ia * g_rows
        test = part_vv.reshape(R, per).sum(axis=1) / Mr + s2
        innovation = test - np.sum(b_rows * b_rows, axis=1)
        train = np.sum(l_rows * l_rows, axis=1) + np.maximum(innovation, 0.0)
        u = np.empty(p.sites)
        _field(v, self.C, self.Z, self.rank, start, stop, replica, ia, g_rows, l_rows, u)
        return FlowEvaluation(u.reshape(R, Mr), v.reshape(R, Mr), k.reshape(R, Mr), test, train, innovation)
