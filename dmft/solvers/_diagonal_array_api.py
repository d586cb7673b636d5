"""The diagonal-network site loop for GPUs (CuPy), written against the array API standard.

The algorithm is that of :mod:`._diagonal_sites` and of the NumPy reference; the layout is
chosen for a GPU: every site operation is batched over the replicas (``(R, capacity, M_r)``
coordinates, ``(R, M_r)`` state on the device), including the opening of new coordinates
(computed for every replica, kept where a replica opens one), and only the ``R x r`` site means
travel to the host, where the per-replica bookkeeping of :mod:`._diagonal_sites` runs. Only
array-API calls are used, so the same code runs with ``backend="array_api_strict"`` (the strict
namespace on the CPU), which is how it is tested where no GPU exists; ``backend="cupy"`` on a
machine without a usable GPU raises :class:`dmft._backend.BackendUnavailableError`.
"""

from __future__ import annotations

import math

import numpy as np

from .._backend import array_module, to_numpy
from ._diagonal_sites import (
    SiteProblem,
    SiteRun,
    attach_traces,
    classify_explosion,
    exploded,
    gram_error,
    matching_coefficients,
    matching_failure,
    negative_innovation,
    opens_coordinate,
    replica_row,
)

__all__ = ["run_array_api", "namespace"]


def namespace(backend: str):
    """The array-API namespace of ``backend``: ``array_api_compat``'s CuPy wrapper, or the strict
    namespace itself (raises :class:`BackendUnavailableError` without a usable GPU)."""
    import array_api_compat

    module = array_module(backend)
    return array_api_compat.array_namespace(module.zeros(1))


def _rows_times(xp, rows: np.ndarray, arrays):
    """``sum_j rows[i, j] arrays[i, j, :]`` for every replica ``i``: ``(R, M_r)``."""
    weights = xp.asarray(rows[:, None, :], dtype=xp.float64)
    return xp.matmul(weights, arrays)[:, 0, :]


def _means(xp, arrays, v, Mr):
    """``E_sites[arrays[i, j] v[i]]`` for every replica and column, on the host: ``(R, columns)``."""
    return to_numpy(xp.matmul(arrays, v[:, :, None])[:, :, 0]) / Mr


def run_array_api(problem: SiteProblem, teacher: np.ndarray, rng: np.random.Generator, block: int,
                  backend: str) -> SiteRun:
    """The site loop of ``problem`` on the array namespace of ``backend`` (``"cupy"`` or the
    test-only ``"array_api_strict"``); see :func:`._diagonal_sites.run_sites`."""
    xp = namespace(backend)
    R, Mr, T, L = problem.replicas, problem.sites_per_replica, problem.steps, problem.depth
    ia, s2 = problem.inv_sqrt_alpha, problem.noise_variance
    f64 = xp.float64
    beta_star = xp.asarray(np.asarray(teacher, dtype=float).reshape(R, Mr), dtype=f64)
    a = xp.full((R, Mr), problem.init_scale, dtype=f64)
    b = xp.full((R, Mr), problem.init_scale, dtype=f64)
    v = beta_star - (a**L - b**L)
    test = np.zeros((R, T + 1))
    train = np.zeros((R, T + 1))
    traces = []

    def record():
        if problem.traced:
            traces.append(to_numpy((beta_star - v)[:, : problem.traced]))

    def update(u, eta):
        grad_a, grad_b = L * a ** (L - 1), L * b ** (L - 1)
        return a + eta * grad_a * u, b - eta * grad_b * u

    def draw(t):
        shape = (min(block, T - t), R, Mr)
        return xp.asarray(rng.standard_normal((shape[0], R * Mr)).reshape(shape), dtype=f64)

    failure = None
    if problem.online:
        for t in range(T + 1):
            if t % block == 0 and t < T:
                normals = draw(t)
            record()
            test[:, t] = to_numpy(xp.mean(v * v, axis=1)) + s2
            if any(exploded(test[i, t], test[i, 0]) for i in range(R)):
                failure = classify_explosion(test, test, t)
                break
            if t == T:
                break
            scale = xp.asarray(ia * np.sqrt(test[:, t])[:, None], dtype=f64)
            a, b = update(scale * normals[t % block, ...] + v, float(problem.learning_rates[t]))
            v = beta_star - (a**L - b**L)
        empty = np.zeros((R, T + 1, 0))
        run = SiteRun(test, test.copy(), np.zeros((R, T + 1), dtype=np.int64), empty, empty, empty, failure)
        attach_traces(run, traces, problem)
        return run

    capacity = min(T + 2, 64)
    Z = xp.zeros((R, capacity, Mr), dtype=f64)
    C = xp.zeros((R, capacity, Mr), dtype=f64)
    rank = np.zeros(R, dtype=np.int64)
    cg = np.zeros((R, capacity))
    rank_hist = np.zeros((R, T + 1), dtype=np.int64)
    hist = np.zeros((3, R, T + 1, capacity))  # Gamma, B, L
    capped_at, capped = None, 0.0

    for t in range(T + 1):
        if t % block == 0 and t < T:
            normals = draw(t)
        if rank.max() + 1 >= capacity:  # column `rank` is written below: keep it inside the arrays
            grow = min(T + 2, 2 * capacity) - capacity
            Z, C = (xp.concat([x, xp.zeros((R, grow, Mr), dtype=f64)], axis=1) for x in (Z, C))
            cg = np.pad(cg, ((0, 0), (0, grow)))
            hist = np.pad(hist, ((0, 0), (0, 0), (0, 0), (0, grow)))
            capacity += grow

        # ---- host bookkeeping, replica by replica (shared algebra) -------------------------
        record()
        mean_vz, mean_vc = _means(xp, Z, v, Mr), _means(xp, C, v, Mr)
        mean_vv = to_numpy(xp.mean(v * v, axis=1))
        rows = np.zeros((3, R, capacity))  # Gamma, B, L of step t
        sds = np.zeros(R)
        for i in range(R):
            r = rank[i]
            gamma, b_row, l_row, te, tr, innovation = replica_row(problem, r, mean_vz[i], mean_vc[i], mean_vv[i], cg[i])
            test[i, t], train[i, t] = te, tr
            rows[:, i, :r] = gamma, b_row, l_row
            failure = failure or negative_innovation(t, i, innovation, te)
            if opens_coordinate(problem, innovation, te, tr):
                if problem.max_rank and r >= problem.max_rank:
                    capped_at = t if capped_at is None else capped_at
                    capped = max(capped, innovation / tr)
                    continue
                sds[i] = math.sqrt(innovation)
                rows[1:, i, r] = sds[i]
                cg[i, r] = (1.0 - cg[i, :r] @ b_row) / sds[i]
        if any(exploded(test[i, t], test[i, 0]) or not math.isfinite(train[i, t]) for i in range(R)):
            failure = classify_explosion(test, train, t)
        if failure is not None or t == T:
            hist[:, :, t] = rows
            rank_hist[:, t] = rank
            break

        # ---- new coordinates, batched over replicas (kept where sds > 0) ------------------
        keep = np.flatnonzero(sds > 0.0)
        z = normals[t % block, ...]
        if keep.size:
            sd = np.where(sds > 0.0, sds, 1.0)
            previous = rows[1].copy()
            previous[keep, rank[keep]] = 0.0  # B(t, :r) only
            # Gram-Schmidt twice: c_raw = (v - B . c) / sd, then re-projected on c_{<r}
            c_raw = (v - _rows_times(xp, previous, C)) / xp.asarray(sd[:, None], dtype=f64)
            cg_raw = cg[np.arange(R), rank]
            e = _means(xp, C, c_raw, Mr) + s2 * cg * cg_raw[:, None]
            e[np.arange(capacity)[None, :] >= rank[:, None]] = 0.0
            norm_raw = to_numpy(xp.mean(c_raw * c_raw, axis=1)) + s2 * cg_raw**2
            nu = np.sqrt(np.where(sds > 0.0, norm_raw - np.sum(e * e, axis=1), 1.0))
            c_new = (c_raw - _rows_times(xp, e, C)) / xp.asarray(nu[:, None], dtype=f64)
            for i in keep:
                r = rank[i]
                C[i, r, :] = c_new[i, :]
                cg[i, r] = (cg_raw[i] - e[i, :r] @ cg[i, :r]) / nu[i]
                # v(t) = sum_k (B_k + sd e_k) c_k + sd nu c_r: correct the rows of step t
                rows[1:, i, :r] += sds[i] * e[i, :r]
                rows[1:, i, r] = sds[i] * nu[i]
            if problem.moment_matching:
                p = _means(xp, C, z, Mr)
                mean_zz = to_numpy(xp.mean(z * z, axis=1))
                coef = np.zeros((R, capacity))
                norm = np.ones(R)
                for i in keep:
                    r = rank[i]
                    coef[i, : r + 1], residual = matching_coefficients(p[i, : r + 1], cg[i, : r + 1], s2, mean_zz[i])
                    if not residual > 0.0:
                        failure = matching_failure(t, i, residual)
                        break
                    norm[i] = math.sqrt(residual)
                if failure is not None:
                    hist[:, :, t] = rows
                    rank_hist[:, t] = rank
                    break
                z = (z - _rows_times(xp, coef, C)) / xp.asarray(norm[:, None], dtype=f64)
            for i in keep:
                Z[i, rank[i], :] = z[i, :]
            rank[keep] += 1
        hist[:, :, t] = rows
        rank_hist[:, t] = rank

        # ---- memory term, field, update ---------------------------------------------------
        u = v + ia * _rows_times(xp, rows[0], C) + ia * _rows_times(xp, rows[2], Z)
        a, b = update(u, float(problem.learning_rates[t]))
        v = beta_star - (a**L - b**L)

    r_max = int(rank.max())
    C_host = to_numpy(C)
    run = SiteRun(
        test=test, train=train, rank=rank_hist, cholesky=hist[2][:, :, :r_max], projection=hist[1][:, :, :r_max],
        stein=hist[0][:, :, :r_max], failure=failure, rank_capped_at=capped_at, capped_innovation=capped,
        orthogonality_error=max(gram_error(C_host[i, : rank[i]], cg[i, : rank[i]], s2) for i in range(R)),
    )
    attach_traces(run, traces, problem)
    return run
