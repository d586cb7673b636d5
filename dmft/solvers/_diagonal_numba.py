"""Numba kernels of the diagonal-network site loop (the algorithm: :mod:`._diagonal_sites`).

The same loop as the NumPy reference (:mod:`._diagonal_reference`) on site-major arrays (each
site's coordinates contiguous, rows kept tight), one fused pass over the sites per step (two on a
step that opens a coordinate), parallel over chunks of sites. Every kernel is compiled by
:func:`dmft._backend.jit` (cached; only reassociation and contraction, so NaN and inf survive and
are reported). Tests compare it with the reference on the same random numbers, with label noise
and long enough for the ranks to pass several capacity growths, and run it once with
``NUMBA_BOUNDSCHECK=1``.

Status codes of :func:`_full_batch_block`: 0 went through, 1 a replica's loss is non-finite or
exploded, 3 the coordinate arrays are full (grow them and call again from the step returned: the
bookkeeping of a step runs only after the capacity check, so nothing of it has been written),
4 a negative innovation variance, 5 a non-positive moment-matching residual (``fail[0]`` the
replica, ``fail[1]`` the value).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .._backend import jit
from ._diagonal_sites import (
    GROWTH_LIMIT,
    NEGATIVE_INNOVATION,
    ROUNDING_FLOOR,
    SiteFailure,
    SiteProblem,
    SiteRun,
    attach_traces,
    classify_explosion,
    gram_error,
    matching_failure,
    negative_innovation,
)

__all__ = ["run_numba"]

_OK, _EXPLODED, _FULL, _NEGATIVE, _MATCHING = 0, 1, 3, 4, 5


@jit
def _ipow(x, n):  # pragma: no cover - compiled
    """``x ** n`` for a small non-negative integer ``n`` (repeated products)."""
    out = 1.0
    for _ in range(n):
        out *= x
    return out


@jit
def _move_site(m, u, eta, depth, beta_star, a, b, v):  # pragma: no cover - compiled
    """Site ``m`` through one step: ``a += eta L a^{L-1} u``, ``b -= eta L b^{L-1} u``; stores and
    returns the new ``v = beta* - (a^L - b^L)``."""
    am = a[m]
    bm = b[m]
    a_new = am + eta * depth * _ipow(am, depth - 1) * u
    b_new = bm - eta * depth * _ipow(bm, depth - 1) * u
    a[m] = a_new
    b[m] = b_new
    v_new = beta_star[m] - (_ipow(a_new, depth) - _ipow(b_new, depth))
    v[m] = v_new
    return v_new


@jit
def _column_sum(parts, c0, c1, j):  # pragma: no cover - compiled
    """``sum_{c0 <= c < c1} parts[c, j]``: a replica's site sum from its chunks' partial sums."""
    acc = 0.0
    for c in range(c0, c1):
        acc += parts[c, j]
    return acc


@jit
def _bookkeeping(
    t, Mr, ia, noise_variance, cutoff, max_rank, rank, cg, chunk_first, chunk_last,
    part_vz, part_vc, part_vv, test, train, hist_l, hist_b, hist_g, g_rows, b_rows, l_rows, sds, capped, fail,
):  # pragma: no cover - compiled; tested against the reference
    """``replica_row`` and ``opens_coordinate`` for every replica from the chunk sums of step ``t``.

    Needs ``rank[i] < capacity`` (column ``rank`` is written). Returns a status code: ``_OK``,
    ``_NEGATIVE`` (``fail`` = replica, innovation) or ``_EXPLODED`` (a loss is non-finite or beyond
    ``GROWTH_LIMIT`` times its start). ``capped`` = (largest innovation fraction dropped at the rank
    cap, first step it happened or -1).
    """
    status = _OK
    for i in range(rank.shape[0]):
        r = rank[i]
        c0 = chunk_first[i]
        c1 = chunk_last[i]
        vv = 0.0
        for c in range(c0, c1):
            vv += part_vv[c]
        te = vv / Mr + noise_variance
        bb = 0.0
        ll = 0.0
        for j in range(r):
            b_rows[i, j] = _column_sum(part_vc, c0, c1, j) / Mr + noise_variance * cg[i, j]
            g_rows[i, j] = _column_sum(part_vz, c0, c1, j) / Mr
            l_rows[i, j] = b_rows[i, j] + ia * g_rows[i, j]
            bb += b_rows[i, j] * b_rows[i, j]
            ll += l_rows[i, j] * l_rows[i, j]
            hist_l[i, t, j] = l_rows[i, j]
            hist_b[i, t, j] = b_rows[i, j]
            hist_g[i, t, j] = g_rows[i, j]
        innovation = te - bb
        tr = ll + max(innovation, 0.0)
        test[i, t] = te
        train[i, t] = tr
        sds[i] = 0.0
        if innovation < -NEGATIVE_INNOVATION * te and status == _OK:
            status = _NEGATIVE
            fail[0] = i
            fail[1] = innovation
        if innovation > cutoff * tr and innovation > ROUNDING_FLOOR * te:
            if max_rank > 0 and r >= max_rank:
                if capped[1] < 0:
                    capped[1] = t
                capped[0] = max(capped[0], innovation / tr)
            else:
                sd = math.sqrt(innovation)
                sds[i] = sd
                hist_l[i, t, r] = sd
                hist_b[i, t, r] = sd
                proj = 0.0
                for j in range(r):
                    proj += cg[i, j] * b_rows[i, j]
                cg[i, r] = (1.0 - proj) / sd
        if not (math.isfinite(te) and math.isfinite(tr)) or te > GROWTH_LIMIT * test[i, 0]:
            status = _EXPLODED
    return status


@jit
def _new_coordinate(first, stop, r, sd, b_row, v, C, z_raw, part_e, part_p, part_n, chunk):
    # pragma: no cover - compiled
    """Phase 1 of a step that opens coordinate ``r``: ``c_raw = (v - B . c) / sd`` for the
    chunk's sites (stored in column ``r``) and the sums that re-orthogonalisation and moment
    matching need: ``sum c_raw c_k`` (``k < r``), ``sum c_raw^2``, ``sum c_k z_raw``
    (``k < r``), ``sum c_raw z_raw`` and ``sum z_raw^2`` (the last three in ``part_p[r]``,
    ``part_n[chunk, 1:]``)."""
    for k in range(r + 1):
        part_e[k] = 0.0
        part_p[k] = 0.0
    acc_n = 0.0
    acc_zz = 0.0
    for m in range(first, stop):
        c_m = C[m]
        acc_b = 0.0
        for j in range(r):
            acc_b += b_row[j] * c_m[j]
        c_raw = (v[m] - acc_b) / sd
        c_m[r] = c_raw
        zm = z_raw[m]
        for k in range(r):
            part_e[k] += c_raw * c_m[k]
            part_p[k] += c_m[k] * zm
        part_p[r] += c_raw * zm
        acc_n += c_raw * c_raw
        acc_zz += zm * zm
    part_n[chunk, 0] = acc_n
    part_n[chunk, 1] = acc_zz


@jit
def _site_pass(
    first, stop, r, keep, recoef, nu, coef, norm, depth, eta, ia, gamma, l_row, beta_star, a, b, v,
    Z, C, z_raw, part_vz, part_vc, part_vv, chunk,
):  # pragma: no cover - compiled; tested against the reference
    """Phase 2: one chunk of sites through one step (the body of the reference's site pass).

    With ``keep`` the raw coordinate in column ``r`` is re-orthogonalised, ``c_r = (c_raw -
    recoef . c_{<r}) / nu``, and the new innovation is ``z_r = (z_raw - coef . c_{<=r}) / norm``;
    ``l_row[r]`` is its coefficient in ``psi(t)``. The result differs from the reference by the
    order of the sums (rounding).
    """
    r_new = r + 1 if keep else r
    for j in range(r_new):
        part_vz[j] = 0.0
        part_vc[j] = 0.0
    acc_vv = 0.0
    for m in range(first, stop):
        c_m = C[m]
        z_m = Z[m]
        acc_y = 0.0
        acc_psi = 0.0
        acc_proj = 0.0
        acc_e = 0.0
        if keep:  # (two loops so that the common case carries two accumulators, not four)
            for j in range(r):
                cj = c_m[j]
                acc_y += gamma[j] * cj
                acc_psi += l_row[j] * z_m[j]
                acc_proj += coef[j] * cj
                acc_e += recoef[j] * cj
        else:
            for j in range(r):
                acc_y += gamma[j] * c_m[j]
                acc_psi += l_row[j] * z_m[j]
        if keep:
            c_new = (c_m[r] - acc_e) / nu
            c_m[r] = c_new
            z_new = (z_raw[m] - acc_proj - coef[r] * c_new) / norm
            z_m[r] = z_new
            acc_psi += l_row[r] * z_new
        v_new = _move_site(m, ia * acc_psi + v[m] + ia * acc_y, eta, depth, beta_star, a, b, v)
        for j in range(r_new):
            part_vz[j] += v_new * z_m[j]
            part_vc[j] += v_new * c_m[j]
        acc_vv += v_new * v_new
    part_vv[chunk] = acc_vv


@jit
def _open_coordinates(
    t, Mr, noise_variance, moment_matching, rank, sds, cg, chunk_first, chunk_last, part_e, part_p,
    part_n, b_rows, l_rows, hist_l, hist_b, recoefs, nus, coefs, norms, fail,
):  # pragma: no cover - compiled; tested against the reference
    """Between the phases: re-orthogonalisation coefficients ``recoef``, ``nu``, the corrected
    rows ``B(t, :)``, ``L(t, :)`` (``v(t) = sum_k (B_k + sd e_k) c_k + sd nu c_r``), the noise
    site's new coordinate, and the moment-matching coefficients (``matching_coefficients``).
    Returns ``_MATCHING`` (``fail`` = replica, residual) if a residual is not positive, else ``_OK``."""
    for i in range(rank.shape[0]):
        if sds[i] <= 0.0:
            continue
        r = rank[i]
        sd = sds[i]
        c0 = chunk_first[i]
        c1 = chunk_last[i]
        cg_raw = cg[i, r]
        n = _column_sum(part_n, c0, c1, 0) / Mr + noise_variance * cg_raw * cg_raw
        zz = _column_sum(part_n, c0, c1, 1) / Mr
        ee = 0.0
        eg = 0.0
        ep = 0.0
        for k in range(r):
            e = _column_sum(part_e, c0, c1, k) / Mr + noise_variance * cg[i, k] * cg_raw
            recoefs[i, k] = e
            coefs[i, k] = _column_sum(part_p, c0, c1, k) / Mr
            ee += e * e
            eg += e * cg[i, k]
            ep += e * coefs[i, k]
        p_raw = _column_sum(part_p, c0, c1, r)
        nu = math.sqrt(n - ee)
        nus[i] = nu
        cg[i, r] = (cg_raw - eg) / nu
        coefs[i, r] = (p_raw / Mr - ep) / nu
        for k in range(r):
            b_rows[i, k] += sd * recoefs[i, k]
            l_rows[i, k] += sd * recoefs[i, k]
            hist_b[i, t, k] = b_rows[i, k]
            hist_l[i, t, k] = l_rows[i, k]
        b_rows[i, r] = sd * nu
        l_rows[i, r] = sd * nu
        hist_b[i, t, r] = sd * nu
        hist_l[i, t, r] = sd * nu
        if moment_matching:
            gp = 0.0
            gg = 0.0
            pp = 0.0
            for k in range(r + 1):
                gp += cg[i, k] * coefs[i, k]
                gg += cg[i, k] * cg[i, k]
                pp += coefs[i, k] * coefs[i, k]
            residual = zz - pp
            if noise_variance > 0.0:
                factor = noise_variance * gp / (1.0 - noise_variance * gg)
                residual -= factor * gp
                for k in range(r + 1):
                    coefs[i, k] += factor * cg[i, k]
            if not residual > 0.0:
                fail[0] = i
                fail[1] = residual
                return _MATCHING
            norms[i] = math.sqrt(residual)
        else:
            for k in range(r + 1):
                coefs[i, k] = 0.0
            norms[i] = 1.0
    return _OK


@jit(parallel=True)
def _full_batch_block(
    t_start, t_stop, row_offset, T, depth, rates, ia, noise_variance, cutoff, Mr, moment_matching,
    max_rank, beta_star, a, b, v, Z, C, chunk_start, chunk_stop, chunk_replica, chunk_first, chunk_last,
    part_vz, part_vc, part_vv, part_e, part_p, part_n, rank, cg, normals,
    test, train, rank_hist, hist_l, hist_b, hist_g, g_rows, b_rows, l_rows, sds, recoefs, nus, coefs, norms,
    capped, fail,
):  # pragma: no cover - compiled; tested against the reference
    """Steps ``t_start .. t_stop - 1``, then the bookkeeping of step ``T`` if ``t_stop == T``.

    On entry the ``part_*`` arrays hold, per chunk, the site sums of step ``t_start``; step
    ``t`` uses ``normals[t - row_offset]`` and the learning rate ``rates[t]``. Returns
    ``(status, step)`` (codes in the module docstring).
    """
    R = rank.shape[0]
    n_chunks = chunk_start.shape[0]
    capacity = C.shape[1]
    for t in range(t_start, t_stop + 1):
        if t == t_stop and t_stop != T:
            break
        for i in range(R):
            if rank[i] >= capacity:  # the bookkeeping writes column rank[i]
                return _FULL, t
        status = _bookkeeping(
            t, Mr, ia, noise_variance, cutoff, max_rank, rank, cg, chunk_first, chunk_last,
            part_vz, part_vc, part_vv, test, train, hist_l, hist_b, hist_g, g_rows, b_rows, l_rows, sds,
            capped, fail,
        )
        if status != _OK:
            return status, t
        if t == T:
            for i in range(R):
                rank_hist[i, T] = rank[i]
            break
        row = t - row_offset
        any_keep = False
        for i in range(R):
            if sds[i] > 0.0:
                any_keep = True
        if any_keep:  # phase 1: raw new coordinates and their sums
            for c in numba.prange(n_chunks):
                i = chunk_replica[c]
                if sds[i] > 0.0:
                    _new_coordinate(
                        chunk_start[c], chunk_stop[c], rank[i], sds[i], b_rows[i], v, C,
                        normals[row], part_e[c], part_p[c], part_n, c,
                    )
            status = _open_coordinates(
                t, Mr, noise_variance, moment_matching, rank, sds, cg, chunk_first, chunk_last,
                part_e, part_p, part_n, b_rows, l_rows, hist_l, hist_b, recoefs, nus, coefs, norms, fail,
            )
            if status != _OK:
                return status, t
        # phase 2: the fused site pass (memory term, field, update, sums of step t + 1)
        eta = rates[t]
        for c in numba.prange(n_chunks):
            i = chunk_replica[c]
            _site_pass(
                chunk_start[c], chunk_stop[c], rank[i], sds[i] > 0.0, recoefs[i], nus[i], coefs[i],
                norms[i], depth, eta, ia, g_rows[i], l_rows[i], beta_star, a, b, v, Z, C, normals[row],
                part_vz[c], part_vc[c], part_vv, c,
            )
        for i in range(R):
            if sds[i] > 0.0:
                rank[i] += 1
            rank_hist[i, t] = rank[i]
    return _OK, -1


@jit(parallel=True)
def _online_block(
    t_start, t_stop, depth, rates, ia, noise_variance, Mr, beta_star, a, b, v,
    chunk_start, chunk_stop, chunk_replica, chunk_first, chunk_last, part_vv, normals, test, scale,
):  # pragma: no cover - compiled; tested against the reference
    """Online SGD steps ``t_start .. t_stop - 1`` (plus the losses of step ``t_stop``). Returns the
    step at which a replica's loss is non-finite or exploded, or -1."""
    R = test.shape[0]
    n_chunks = chunk_start.shape[0]
    for t in range(t_start, t_stop + 1):
        for i in range(R):
            vv = 0.0
            for c in range(chunk_first[i], chunk_last[i]):
                vv += part_vv[c]
            test[i, t] = vv / Mr + noise_variance
            scale[i] = ia * math.sqrt(test[i, t])
            if not math.isfinite(test[i, t]) or test[i, t] > GROWTH_LIMIT * test[i, 0]:
                return t
        if t == t_stop:
            return -1
        row = t - t_start
        eta = rates[t]
        for c in numba.prange(n_chunks):
            i = chunk_replica[c]
            acc = 0.0
            for m in range(chunk_start[c], chunk_stop[c]):
                v_new = _move_site(m, scale[i] * normals[row, m] + v[m], eta, depth, beta_star, a, b, v)
                acc += v_new * v_new
            part_vv[c] = acc
    return -1


def _chunks(problem: SiteProblem, chunks_per_replica: int):
    """Contiguous chunks of sites, each inside one replica (the unit of parallel work).

    Fixed by the problem, not by the thread count, so results do not depend on the threads.
    """
    R, Mr = problem.replicas, problem.sites_per_replica
    per = max(1, min(chunks_per_replica, Mr))
    bounds = np.linspace(0, Mr, per + 1).astype(np.int64)
    start = np.concatenate([i * Mr + bounds[:-1] for i in range(R)])
    stop = np.concatenate([i * Mr + bounds[1:] for i in range(R)])
    replica = np.repeat(np.arange(R, dtype=np.int64), per)
    first = np.arange(R, dtype=np.int64) * per
    return start, stop, replica, first, first + per


def run_numba(problem: SiteProblem, teacher: np.ndarray, rng: np.random.Generator, block: int,
              chunks_per_replica: int = 8) -> SiteRun:
    """The site loop of ``problem`` with the compiled kernels (see :func:`._diagonal_sites.run_sites`)."""
    R, Mr, T, M, L = problem.replicas, problem.sites_per_replica, problem.steps, problem.sites, problem.depth
    start, stop, replica, first, last = _chunks(problem, chunks_per_replica)
    n_chunks = start.size
    rates = np.ascontiguousarray(problem.learning_rates, dtype=np.float64)
    beta_star = np.ascontiguousarray(teacher, dtype=np.float64)
    a = np.full(M, problem.init_scale)
    b = np.full(M, problem.init_scale)
    v = beta_star - (a**L - b**L)
    test = np.zeros((R, T + 1))
    part_vv = np.array([np.sum(v[s:e] * v[s:e]) for s, e in zip(start, stop)])
    ia, s2 = problem.inv_sqrt_alpha, problem.noise_variance

    traced = np.concatenate([np.arange(i * Mr, i * Mr + problem.traced) for i in range(R)]).astype(np.int64)
    traces, trace_steps = [], []

    def record(step):
        if problem.traced:
            traces.append((a[traced] ** L - b[traced] ** L).reshape(R, problem.traced))
            trace_steps.append(step)

    if problem.online:
        scale = np.zeros(R)
        failure = None
        for t0 in range(0, T, block):
            t1 = min(t0 + block, T)
            normals = rng.standard_normal((t1 - t0, M))
            record(t0)
            exploded_at = _online_block(
                t0, t1, L, rates, ia, s2, Mr, beta_star, a, b, v, start, stop, replica, first, last,
                part_vv, normals, test, scale,
            )
            if exploded_at >= 0:
                failure = classify_explosion(test, test, exploded_at)
                break
        record(T)
        empty = np.zeros((R, T + 1, 0))
        run = SiteRun(test, test.copy(), np.zeros((R, T + 1), dtype=np.int64), empty, empty, empty, failure)
        attach_traces(run, traces, problem, trace_steps)
        return run

    # The coordinates are stored site-major with a tight row length (grown by a quarter when
    # full): each step streams the first r entries of every row, so slack columns cost bandwidth.
    train = np.zeros((R, T + 1))
    capacity = min(T + 2, 16)
    Z = np.zeros((M, capacity))
    C = np.zeros((M, capacity))
    part_vz = np.zeros((n_chunks, capacity))
    part_vc = np.zeros((n_chunks, capacity))
    part_e = np.zeros((n_chunks, capacity))
    part_p = np.zeros((n_chunks, capacity))
    part_n = np.zeros((n_chunks, 2))
    rank = np.zeros(R, dtype=np.int64)
    cg = np.zeros((R, capacity))
    rank_hist = np.zeros((R, T + 1), dtype=np.int64)
    hist = [np.zeros((R, T + 1, capacity)) for _ in range(3)]
    rows = [np.zeros((R, capacity)) for _ in range(5)]  # gamma, B, L, re-orthogonalisation, matching
    sds = np.zeros(R)
    nus = np.ones(R)
    norms = np.ones(R)
    capped = np.array([0.0, -1.0])
    fail = np.zeros(2)

    status, step = _OK, -1
    for t0 in range(0, T, block):
        t1 = min(t0 + block, T)
        normals = rng.standard_normal((t1 - t0, M))
        record(t0)
        current = t0
        while True:
            status, step = _full_batch_block(
                current, t1, t0, T, L, rates, ia, s2, problem.cutoff, Mr, problem.moment_matching,
                problem.max_rank, beta_star, a, b, v, Z, C, start, stop, replica, first, last,
                part_vz, part_vc, part_vv, part_e, part_p, part_n, rank, cg, normals,
                test, train, rank_hist, hist[0], hist[1], hist[2], rows[0], rows[1], rows[2], sds, rows[3], nus,
                rows[4], norms, capped, fail,
            )
            if status != _FULL:
                break
            grow = min(T + 2, capacity + max(8, capacity // 4)) - capacity
            Z, C, part_vz, part_vc, part_e, part_p, cg = (
                np.pad(x, ((0, 0), (0, grow))) for x in (Z, C, part_vz, part_vc, part_e, part_p, cg)
            )
            hist = [np.pad(x, ((0, 0), (0, 0), (0, grow))) for x in hist]
            rows = [np.pad(x, ((0, 0), (0, grow))) for x in rows]
            capacity += grow
            current = step
        if status != _OK:
            break
    record(T)
    failure: SiteFailure | None = None
    if status == _EXPLODED:
        failure = classify_explosion(test, train, step)
    elif status == _NEGATIVE:
        failure = negative_innovation(step, int(fail[0]), fail[1], test[int(fail[0]), step])
    elif status == _MATCHING:
        failure = matching_failure(step, int(fail[0]), fail[1])
    r_max = int(rank.max())
    run = SiteRun(
        test=test, train=train, rank=rank_hist, cholesky=hist[0][:, :, :r_max],
        projection=hist[1][:, :, :r_max], stein=hist[2][:, :, :r_max], failure=failure,
        rank_capped_at=int(capped[1]) if capped[1] >= 0 else None, capped_innovation=float(capped[0]),
        orthogonality_error=max(
            gram_error(C[i * Mr:(i + 1) * Mr, : rank[i]].T, cg[i, : rank[i]], s2) for i in range(R)
        ),
    )
    attach_traces(run, traces, problem, trace_steps)
    return run
