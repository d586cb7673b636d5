"""NumPy reference of the diagonal-network site loop (the algorithm: :mod:`._diagonal_sites`).

Plain and readable: the sites of every replica are ``(R, capacity, M_r)`` (coordinates) and
``(R, M_r)`` (state) arrays, the ``T x r`` bookkeeping is done replica by replica with the shared
host algebra. The compiled kernels (:mod:`._diagonal_numba`) and the array-API path
(:mod:`._diagonal_array_api`) are tested against it on the same random numbers.

``response="tangent"`` (``O(T^3 M)``, tests only) replaces the Stein estimate of ``Gamma = R_v L``
by the exact mean of tangent-propagated per-site Jacobians ``dv(t) / dpsi(k)``, and records the
z-scores of the Stein estimate against it.
"""

from __future__ import annotations

import math

import numpy as np

from ._diagonal_sites import (
    SiteProblem,
    SiteRun,
    attach_traces,
    classify_explosion,
    exploded,
    gradient_factors,
    gram_error,
    matching_coefficients,
    matching_failure,
    negative_innovation,
    opens_coordinate,
    replica_row,
)

__all__ = ["run_reference", "open_coordinate"]


def _online(problem: SiteProblem, beta_star, rng, block, record, traces) -> SiteRun:
    """Online SGD: ``u = alpha_B^{-1/2} sqrt(test(t)) z + v`` with a fresh ``z`` every step."""
    R, Mr, T, L = problem.replicas, problem.sites_per_replica, problem.steps, problem.depth
    a = np.full((R, Mr), problem.init_scale)
    b = np.full((R, Mr), problem.init_scale)
    v = beta_star - (a**L - b**L)
    test = np.zeros((R, T + 1))
    failure = None
    for t in range(T + 1):
        if t % block == 0 and t < T:
            normals = rng.standard_normal((min(block, T - t), R * Mr)).reshape(-1, R, Mr)
        record(v)
        test[:, t] = np.mean(v * v, axis=1) + problem.noise_variance
        if any(exploded(test[i, t], test[i, 0]) for i in range(R)):
            failure = classify_explosion(test, test, t)
            break
        if t == T:
            break
        u = problem.inv_sqrt_alpha * np.sqrt(test[:, t])[:, None] * normals[t % block] + v
        grad_a, grad_b = gradient_factors(L, a, b)
        eta = problem.learning_rates[t]
        a, b = a + eta * grad_a * u, b - eta * grad_b * u
        v = beta_star - (a**L - b**L)
    empty = np.zeros((R, T + 1, 0))
    run = SiteRun(test, test.copy(), np.zeros((R, T + 1), dtype=np.int64), empty, empty, empty, failure)
    attach_traces(run, traces, problem)
    return run


def run_reference(problem: SiteProblem, teacher: np.ndarray, rng: np.random.Generator, block: int,
                  response: str = "stein") -> SiteRun:
    """The site loop of ``problem`` in NumPy (see :func:`._diagonal_sites.run_sites`)."""
    R, Mr, T, L = problem.replicas, problem.sites_per_replica, problem.steps, problem.depth
    ia, s2 = problem.inv_sqrt_alpha, problem.noise_variance
    beta_star = np.asarray(teacher, dtype=float).reshape(R, Mr)
    traces = []

    def record(v):
        if problem.traced:
            traces.append((beta_star - v)[:, : problem.traced].copy())

    if problem.online:
        return _online(problem, beta_star, rng, block, record, traces)

    a = np.full((R, Mr), problem.init_scale)
    b = np.full((R, Mr), problem.init_scale)
    v = beta_star - (a**L - b**L)
    test = np.zeros((R, T + 1))
    train = np.zeros((R, T + 1))
    capacity = min(T + 2, 64)
    Z = np.zeros((R, capacity, Mr))
    C = np.zeros((R, capacity, Mr))
    rank = np.zeros(R, dtype=np.int64)
    cg = np.zeros((R, capacity))
    rank_hist = np.zeros((R, T + 1), dtype=np.int64)
    hist = {name: np.zeros((R, T + 1, capacity)) for name in ("L", "B", "G")}
    failure = None
    capped_at, capped = None, 0.0

    tangent = response == "tangent"
    if tangent:
        jac_a = np.zeros((R, Mr, T + 1))  # d a(t) / d psi(k)
        jac_b = np.zeros((R, Mr, T + 1))
        jac_y = np.zeros((R, Mr, T + 1, T + 1))  # d y(t') / d psi(k), filled for t' <= t
        resp_v = np.zeros((R, T + 1, T + 1))  # the exact R_v
        z_scores = []

    for t in range(T + 1):
        if t % block == 0 and t < T:
            normals = rng.standard_normal((min(block, T - t), R * Mr)).reshape(-1, R, Mr)
        if rank.max() + 1 >= capacity:  # column `rank` is written below: keep it inside the arrays
            grow = min(T + 2, 2 * capacity) - capacity
            Z, C = (np.concatenate([x, np.zeros((R, grow, Mr))], axis=1) for x in (Z, C))
            cg = np.pad(cg, ((0, 0), (0, grow)))
            hist = {name: np.pad(x, ((0, 0), (0, 0), (0, grow))) for name, x in hist.items()}
            capacity += grow

        # ---- replica bookkeeping: row t of Gamma, B, L; new coordinate? -------------------
        record(v)
        mean_vz = np.matmul(Z, v[:, :, None])[..., 0] / Mr
        mean_vc = np.matmul(C, v[:, :, None])[..., 0] / Mr
        mean_vv = np.mean(v * v, axis=1)
        if tangent:
            grad_a, grad_b = gradient_factors(L, a, b)
            jac_v = -(grad_a[..., None] * jac_a - grad_b[..., None] * jac_b)  # (R, Mr, T+1)
            resp_v[:, t, :t] = jac_v[:, :, :t].mean(axis=1)
            # tangent memory with the full R_v: dy(t) = dv(t) + alpha^{-1/2} sum_{k<t} R_v(t, k) dy(k)
            jac_y[:, :, t, :] = jac_v + ia * np.einsum("rk,rmkj->rmj", resp_v[:, t, :t], jac_y[:, :, :t, :])
        rows = np.zeros((3, R, capacity))
        sds = np.zeros(R)
        for i in range(R):
            r = rank[i]
            gamma, b_row, l_row, te, tr, innovation = replica_row(problem, r, mean_vz[i], mean_vc[i], mean_vv[i], cg[i])
            if tangent:
                stein = gamma
                gamma = resp_v[i, t, :t] @ hist["L"][i, :t, :r]
                l_row = b_row + ia * gamma
                tr = l_row @ l_row + max(innovation, 0.0)
                if r:
                    z_scores.append(_stein_z_scores(stein, gamma, v[i], Z[i, :r], C[i, :r], b_row, Mr))
            test[i, t], train[i, t] = te, tr
            rows[:, i, :r] = gamma, b_row, l_row
            hist["G"][i, t, :r], hist["B"][i, t, :r], hist["L"][i, t, :r] = gamma, b_row, l_row
            failure = failure or negative_innovation(t, i, innovation, te)
            if opens_coordinate(problem, innovation, te, tr):
                if problem.max_rank and r >= problem.max_rank:
                    capped_at = t if capped_at is None else capped_at
                    capped = max(capped, innovation / tr)
                    continue
                sd = math.sqrt(innovation)
                hist["B"][i, t, r] = hist["L"][i, t, r] = sd
                cg[i, r] = (1.0 - cg[i, :r] @ b_row) / sd
                sds[i] = sd
        if any(exploded(test[i, t], test[i, 0]) or not math.isfinite(train[i, t]) for i in range(R)):
            failure = classify_explosion(test, train, t)
        if failure is not None or t == T:
            rank_hist[:, t] = rank
            break

        # ---- site pass: new coordinate, memory term, field, update --------------------------
        y = v + ia * np.matmul(rows[0][:, None, :], C)[:, 0, :]
        keep = np.flatnonzero(sds > 0.0)
        z = normals[t % block]
        for i in keep:
            r, sd = rank[i], sds[i]
            e, nu, residual = open_coordinate(C[i], Z[i], cg[i], r, v[i], rows[1][i, :r], sd, z[i], problem)
            # v(t) = sum_k (B_k + sd e_k) c_k + sd nu c_r: correct the rows of step t
            for row, name in ((rows[1], "B"), (rows[2], "L")):
                row[i, :r] += sd * e
                row[i, r] = sd * nu
                hist[name][i, t, : r + 1] = row[i, : r + 1]
            if not residual > 0.0:
                failure = matching_failure(t, i, residual)
                break
        if failure is not None:
            rank_hist[:, t] = rank
            break
        rank[keep] += 1
        psi = np.matmul(rows[2][:, None, :], Z)[:, 0, :]
        rank_hist[:, t] = rank
        u = ia * psi + y
        grad_a, grad_b = gradient_factors(L, a, b)
        eta = problem.learning_rates[t]
        if tangent:
            curv_a = L * (L - 1) * a ** (L - 2) if L > 1 else np.zeros_like(a)  # d(L a^{L-1}) / da
            curv_b = L * (L - 1) * b ** (L - 2) if L > 1 else np.zeros_like(b)
            du = jac_y[:, :, t, :].copy()
            du[:, :, t] += ia
            jac_a = jac_a + eta * (curv_a[..., None] * u[..., None] * jac_a + grad_a[..., None] * du)
            jac_b = jac_b - eta * (curv_b[..., None] * u[..., None] * jac_b + grad_b[..., None] * du)
        a, b = a + eta * grad_a * u, b - eta * grad_b * u
        v = beta_star - (a**L - b**L)

    r_max = int(rank.max())
    run = SiteRun(
        test=test, train=train, rank=rank_hist, cholesky=hist["L"][:, :, :r_max],
        projection=hist["B"][:, :, :r_max], stein=hist["G"][:, :, :r_max], failure=failure,
        rank_capped_at=capped_at, capped_innovation=capped,
        orthogonality_error=max(gram_error(C[i, : rank[i]], cg[i, : rank[i]], s2) for i in range(R)),
    )
    attach_traces(run, traces, problem)
    if tangent:
        run.diagnostics["stein_z_scores"] = np.concatenate(z_scores) if z_scores else np.zeros(0)
        run.diagnostics["response_v"] = resp_v
    return run


def open_coordinate(C, Z, cg, r: int, v, b_row, sd: float, z, problem: SiteProblem):
    """Open coordinate ``r`` of one replica (``C``, ``Z``: ``(capacity, M_r)``, ``cg``: the noise
    site's coordinates, ``cg[r]`` already holding ``(1 - cg_{<r} . B) / sd``), in place.

    Gram-Schmidt twice ("twice is enough"): ``c_raw = (v - B . c_{<r}) / sd``, re-projected,
    ``c_r = (c_raw - e . c_{<r}) / nu`` with ``e_k = <c_k, c_raw>``; then the new innovation
    ``z_r`` is ``z`` moment-matched against ``c_0 .. c_r`` (if ``problem.moment_matching``).
    Returns ``(e, nu, residual)``: ``v = sum_k (B_k + sd e_k) c_k + sd nu c_r``, and the residual
    mean square of the matching (``1.0`` without it; not positive: a failure, ``Z`` untouched).
    """
    Mr, s2 = v.shape[0], problem.noise_variance
    c_raw = (v - b_row @ C[:r]) / sd
    cg_raw = cg[r]
    e = C[:r] @ c_raw / Mr + s2 * cg[:r] * cg_raw
    nu = math.sqrt(float(np.mean(c_raw * c_raw)) + s2 * cg_raw**2 - e @ e)
    C[r] = (c_raw - e @ C[:r]) / nu
    cg[r] = (cg_raw - e @ cg[:r]) / nu
    residual = 1.0
    if problem.moment_matching:
        p = C[: r + 1] @ z / Mr
        coef, residual = matching_coefficients(p, cg[: r + 1], s2, float(np.mean(z * z)))
        if not residual > 0.0:
            return e, nu, residual
        z = (z - coef @ C[: r + 1]) / math.sqrt(residual)
    Z[r] = z
    return e, nu, residual


def _stein_z_scores(stein, exact, v, Z, C, b_row, Mr):
    """``(stein - exact) / standard error`` of the Stein estimate of ``Gamma(t, :)``.

    The standard error of ``E[v(t) z_j]`` is that of the site mean of the control-variate
    residual ``(v(t) - sum_{k<=j} B(t,k) c_k) z_j``, the part of ``v(t) z_j`` that moment matching
    does not remove.
    """
    prefix = np.cumsum(b_row[:, None] * C, axis=0)  # (r, Mr): sum_{k<=j} B_k c_k
    w = (v[None, :] - prefix) * Z
    se = w.std(axis=1, ddof=1) / math.sqrt(Mr)
    return (stein - exact) / se
