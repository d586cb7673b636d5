"""The site loop of the diagonal-network DMFT (THEORY.md section 4.1): NumPy reference, Numba, CuPy.

What is computed
----------------
``R`` independent replicas of ``M_r`` sites each. A site carries its teacher coefficient
``beta*``, its two factors ``a, b`` (``F = a^L - b^L``, ``a = b = s`` at step 0) and, for full-batch
gradient descent, two histories in *innovation coordinates* (below). Every step, per site::

    v(t)       = beta* - F(a, b)
    u(t)       = alpha^{-1/2} psi(t) + y(t),        y = R_Delta v    (the memory term)
    a(t+1)     = a + eta L a^{L-1} u,   b(t+1) = b - eta L b^{L-1} u

Innovation (Gram-Schmidt) representation
----------------------------------------
Let ``<f, g> = E_sites[f g] + sigma^2 f_noise g_noise`` be the empirical inner product of a
replica's sites plus one "noise site" of weight ``sigma^2`` whose ``v`` is 1 at every step (it
carries the ``sigma^2 1 1^T`` of ``C_Delta = R_Delta (C_v + sigma^2 1 1^T) R_Delta^T``).
Orthonormalising the ``v(t)`` forward in time gives coordinates ``c_j`` (one per retained step
``j``) with ``<c_j, c_k> = delta_jk`` and::

    v(t)     = sum_j B(t, j) c_j,            B(t, j) = <v(t), c_j>                   (exact)
    Delta(t) = (R_Delta v)(t) = sum_j L(t, j) c_j,   L = B + alpha^{-1/2} Gamma       (exact)
    Gamma    = R_v L,                        Gamma(t, j) = E[v(t) z_j]              (Stein)

``L`` is the Cholesky factor of ``C_Delta`` and ``B`` that of ``C_v + sigma^2 1 1^T``; both come out
of the orthonormalisation without any triangular solve. The orthonormalisation is classical
Gram-Schmidt done twice ("twice is enough"): the raw new coordinate is re-projected on the old
ones in the same two passes over the sites that a retained step needs anyway. Done once, it lost
orthogonality like ``eps / cutoff^1.6`` (3e-6 at ``cutoff = 1e-6``, 4e-3 at ``1e-8``); twice, the
coordinates stay orthonormal to ~1e-15 at any cutoff (tested). The Gaussian field is
``psi(t) = sum_j L(t, j) z_j`` with one ``z_j ~ N(0, 1)`` per site and retained step, and the memory
term is ``y(t) = v(t) + alpha^{-1/2} sum_j Gamma(t, j) c_j``. The response ``R_v`` is never formed:
the dynamics applies it only to vectors in the span of ``L`` (the sites' own ``y``), where
``R_v L = Gamma`` is the Stein (Gaussian integration by parts) identity
``E[v(t) z_j] = sum_k R_v(t, k) L(k, j)``. So the near-singular ``C_Delta`` is never inverted:
the directions in which ``psi`` barely fluctuates are those in which nothing needs the response.

Per step: ``test(t) = <v(t), v(t)>`` (= ``C_v(t,t) + sigma^2``), ``d(t) = test - |B(t, :)|^2`` is
the innovation variance (of ``v`` and, equally, of ``Delta``) and ``train(t) = C_Delta(t,t) =
|L(t,:)|^2 + d(t)``. A step opens a new coordinate when ``d(t) > cutoff * train(t)``; otherwise
its innovation (less than a fraction ``cutoff`` of the variance of ``psi(t)``) is dropped. Steps
whose ``d`` is below ``1e-12 test`` (cancellation error, once training has converged) never open
one.

Moment matching (variance reduction)
------------------------------------
A new ``z_r`` is drawn ``N(0, 1)`` per site, then orthogonalised (over the replica's sites)
against the coordinates ``c_0 .. c_r`` known at that step and normalised to unit mean square.
So, within every replica, the field is exactly uncorrelated with the sites' own past and has
exactly the prescribed variance; this removes most of the replica-to-replica scatter (measured:
variance down about tenfold) at the price of an ``O(r / M_r)`` bias (measured, see the tests).
It also makes the Stein estimate ``E[v(t) z_j]`` a control-variate estimate: the part of
``v(t)`` linearly predictable from ``c_0 .. c_j`` no longer contributes noise.
``Ê[c c^T] = I - sigma^2 g g^T`` (``g`` the noise site's coordinates), so the projection needs
only a Sherman-Morrison correction.

Online SGD (section 4.1, last line) is Markov: ``u = alpha_B^{-1/2} sqrt(test(t)) z + v`` with a
fresh ``z`` every step, ``train(t) = test(t)``, no history.

Random numbers are drawn on the host by one ``numpy.random.Generator`` in blocks of steps,
``normals[k, i]`` for step ``t0 + k`` and site ``i`` (replica-major); every backend consumes the same
numbers, so they agree to rounding. ``response="tangent"`` (reference only, ``O(T^3 M)``) replaces
the Stein estimate by the exact mean of tangent-propagated per-site Jacobians, for tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

try:  # numba is a dependency of the package, but keep the reference importable without it
    import numba
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

__all__ = ["SiteProblem", "SiteRun", "run_sites", "BACKENDS", "RESPONSES"]

BACKENDS = ("numpy", "numba", "cupy")
RESPONSES = ("stein", "tangent")

# A replica whose test loss exceeds this many times its initial value has diverged (as
# dmft.errors.DIVERGENCE_FACTOR); a coordinate overflowing makes it non-finite.
_GROWTH_LIMIT = 1e8
# Innovation variances below this fraction of C_v(t,t) + sigma^2 are rounding errors of
# d = test - |B|^2 (site sums carry ~1e-16 relative error; 1e-12 leaves a wide margin). They occur
# once the train loss has converged to ~0 (interpolation): no coordinate is opened for them.
ROUNDING_FLOOR = 1e-12


@dataclass(frozen=True)
class SiteProblem:
    """Everything the site loop needs, as plain numbers (built by ``dmft.solvers.diagonal``).

    ``inv_sqrt_alpha`` is ``alpha^{-1/2}`` for full batch and ``batch_ratio^{-1/2}`` online;
    ``noise_variance`` is ``sigma^2``; ``cutoff`` the relative innovation cutoff; sites are
    ``replicas * sites_per_replica``, replica-major.
    """

    depth: int
    init_scale: float
    learning_rate: float
    steps: int
    inv_sqrt_alpha: float
    noise_variance: float
    online: bool
    cutoff: float
    replicas: int
    sites_per_replica: int
    moment_matching: bool = True
    max_rank: int = 0  # stop (``rank_exceeded_at``) when a replica needs more coordinates; 0: no limit
    traced: int = 0  # record beta(t) of the first ``traced`` sites of every replica

    @property
    def sites(self) -> int:
        return self.replicas * self.sites_per_replica


@dataclass
class SiteRun:
    """Per-replica output of the site loop.

    test, train : ``(R, T + 1)`` loss curves of every replica.
    rank : ``(R, T + 1)`` number of innovation coordinates after each step.
    cholesky : ``(R, T + 1, r)`` rows ``L(t, :)`` (``C_Delta = L L^T`` up to the cutoff).
    projection : ``(R, T + 1, r)`` rows ``B(t, :)`` (``C_v + sigma^2 1 1^T = B B^T``).
    stein : ``(R, T + 1, r)`` rows ``Gamma(t, :) = (R_v L)(t, :)``.
    diverged_at : first step at which a replica's loss was non-finite or exploded, or ``None``.
    rank_exceeded_at : step at which a replica needed more than ``max_rank`` coordinates, or ``None``
        (the run stops there).
    diagnostics : extra arrays of the reference (``response="tangent"``: Stein-vs-tangent z-scores
        and the exact ``R_v``).
    traced_steps, traced_beta : with ``problem.traced = k``, the steps recorded (every step for the
        reference, the block boundaries and ``T`` for Numba) and ``beta(t)`` of the first ``k``
        sites of every replica, ``(R, k, records)``.
    """

    test: np.ndarray
    train: np.ndarray
    rank: np.ndarray
    cholesky: np.ndarray
    projection: np.ndarray
    stein: np.ndarray
    diverged_at: int | None = None
    rank_exceeded_at: int | None = None
    diagnostics: dict = field(default_factory=dict)
    traced_steps: np.ndarray | None = None
    traced_beta: np.ndarray | None = None


# --------------------------------------------------------------------------------------------
# Shared algebra
# --------------------------------------------------------------------------------------------


def _replica_step(problem, r, mean_vz, mean_vc, mean_vv, cg):
    """Row ``t`` of ``Gamma``, ``B``, ``L`` for one replica from the site means of step ``t``.

    ``mean_vz[j] = E[v(t) z_j]``, ``mean_vc[j] = E[v(t) c_j]`` (``j < r``), ``mean_vv = E[v(t)^2]``.
    Returns ``gamma, b_row, l_row, test, train, sd`` where ``sd > 0`` is the square root of the
    innovation variance when a new coordinate is opened (``0.0``: none).
    """
    b_row = mean_vc[:r] + problem.noise_variance * cg[:r]
    gamma = mean_vz[:r].copy()
    test = mean_vv + problem.noise_variance
    l_row = b_row + problem.inv_sqrt_alpha * gamma
    innovation = test - b_row @ b_row
    train = l_row @ l_row + max(innovation, 0.0)
    return gamma, b_row, l_row, test, train, _innovation_sd(innovation, test, train, problem.cutoff)


def _innovation_sd(innovation, test, train, cutoff):
    """``sqrt(d)`` if step ``t`` opens a coordinate, else 0: ``d > cutoff * C_Delta(t,t)`` and
    ``d > ROUNDING_FLOOR * test`` (below that ``d = test - |B|^2`` is cancellation error)."""
    if innovation > cutoff * train and innovation > ROUNDING_FLOOR * test:
        return math.sqrt(innovation)
    return 0.0


def _matching_coefficients(p, g, noise_variance, mean_zz):
    """Least-squares coefficients of ``z`` on the coordinates ``c_0 .. c_r`` and the residual norm.

    ``p[k] = E[c_k z]``, Gram matrix ``E[c c^T] = I - sigma^2 g g^T`` (Sherman-Morrison inverse).
    Returns ``coef, norm`` with ``norm^2 = E z^2 - p . coef`` (the residual mean square).
    """
    shrink = 1.0 - noise_variance * (g @ g)
    coef = p + (noise_variance * (g @ p) / shrink) * g if noise_variance > 0.0 else p.copy()
    residual = mean_zz - p @ coef
    return coef, math.sqrt(residual) if residual > 0.0 else 1.0


def _exploded(test, initial):
    return not math.isfinite(test) or test > _GROWTH_LIMIT * initial


def _gradient_factors(depth, a, b, xp):
    """``(L a^{L-1}, L b^{L-1})`` and their derivatives ``(L(L-1) a^{L-2}, L(L-1) b^{L-2})``."""
    grad_a = depth * a ** (depth - 1)
    grad_b = depth * b ** (depth - 1)
    if depth == 1:
        return grad_a, grad_b, xp.zeros_like(a), xp.zeros_like(b)
    return grad_a, grad_b, depth * (depth - 1) * a ** (depth - 2), depth * (depth - 1) * b ** (depth - 2)


# --------------------------------------------------------------------------------------------
# Reference implementation (NumPy, or CuPy through the same array calls).
# --------------------------------------------------------------------------------------------


def _run_reference(problem, teacher, rng, block, xp, response="stein"):
    """Plain array implementation, batched over replicas; ``xp`` is numpy or cupy.

    Site arrays live on the device as ``(R, capacity, M_r)`` (coordinates) and ``(R, M_r)``
    (site state); the ``T x r`` bookkeeping of every replica is on the host.
    """
    R, Mr, T = problem.replicas, problem.sites_per_replica, problem.steps
    ia, eta, L, s2 = problem.inv_sqrt_alpha, problem.learning_rate, problem.depth, problem.noise_variance
    to_host = (lambda x: x.get()) if hasattr(xp, "asnumpy") else np.asarray

    beta_star = xp.asarray(teacher.reshape(R, Mr))
    a = xp.full((R, Mr), problem.init_scale)
    b = xp.full((R, Mr), problem.init_scale)
    v = beta_star - (a**L - b**L)
    test = np.zeros((R, T + 1))
    train = np.zeros((R, T + 1))
    normals = None
    diverged_at = None

    traces = []

    def record():
        if problem.traced:
            traces.append(to_host((beta_star - v)[:, : problem.traced]))

    if problem.online:
        for t in range(T + 1):
            if t % block == 0 and t < T:
                normals = xp.asarray(rng.standard_normal((min(block, T - t), R * Mr)).reshape(-1, R, Mr))
            record()
            test[:, t] = to_host(xp.mean(v * v, axis=1)) + s2
            train[:, t] = test[:, t]
            if any(_exploded(test[i, t], test[i, 0]) for i in range(R)):
                diverged_at = t
                break
            if t == T:
                break
            u = ia * xp.asarray(np.sqrt(test[:, t]))[:, None] * normals[t % block] + v
            grad_a, grad_b, _, _ = _gradient_factors(L, a, b, xp)
            a, b = a + eta * grad_a * u, b - eta * grad_b * u
            v = beta_star - (a**L - b**L)
        empty = np.zeros((R, T + 1, 0))
        run = SiteRun(test, train, np.zeros((R, T + 1), dtype=np.int64), empty, empty, empty, diverged_at)
        _attach_traces(run, traces, problem)
        return run

    capacity = min(T + 2, 64)
    rank_exceeded_at = None
    Z = xp.zeros((R, capacity, Mr))
    C = xp.zeros((R, capacity, Mr))
    rank = np.zeros(R, dtype=np.int64)
    cg = np.zeros((R, capacity))
    rank_hist = np.zeros((R, T + 1), dtype=np.int64)
    hist = {name: np.zeros((R, T + 1, capacity)) for name in ("L", "B", "G")}

    tangent = response == "tangent"
    if tangent:
        if xp is not np:
            raise ValueError("response='tangent' is implemented in the NumPy reference only")
        jac_a = np.zeros((R, Mr, T + 1))  # d a(t) / d psi(k)
        jac_b = np.zeros((R, Mr, T + 1))
        jac_y = np.zeros((R, Mr, T + 1, T + 1))  # d y(t') / d psi(k), filled for t' <= t
        resp_v = np.zeros((R, T + 1, T + 1))  # the exact R_v
        z_scores = []

    for t in range(T + 1):
        if t % block == 0 and t < T:
            normals = xp.asarray(rng.standard_normal((min(block, T - t), R * Mr)).reshape(-1, R, Mr))
        if rank.max() + 2 > capacity:
            grow = min(T + 2, 2 * capacity) - capacity
            Z = xp.concatenate([Z, xp.zeros((R, grow, Mr))], axis=1)
            C = xp.concatenate([C, xp.zeros((R, grow, Mr))], axis=1)
            cg = np.pad(cg, ((0, 0), (0, grow)))
            for name in hist:
                hist[name] = np.pad(hist[name], ((0, 0), (0, 0), (0, grow)))
            capacity += grow

        # ---- replica bookkeeping: row t of Gamma, B, L; new coordinate? -------------------
        record()
        mean_vz = to_host(xp.matmul(Z, v[:, :, None])[..., 0]) / Mr
        mean_vc = to_host(xp.matmul(C, v[:, :, None])[..., 0]) / Mr
        mean_vv = to_host(xp.mean(v * v, axis=1))
        if tangent:
            grad_a, grad_b, _, _ = _gradient_factors(L, a, b, np)
            jac_v = -(grad_a[..., None] * jac_a - grad_b[..., None] * jac_b)  # (R, Mr, T+1)
            resp_v[:, t, :t] = jac_v[:, :, :t].mean(axis=1)
            # tangent memory with the full R_v: dy(t) = dv(t) + alpha^{-1/2} sum_{k<t} R_v(t, k) dy(k)
            jac_y[:, :, t, :] = jac_v + ia * np.einsum("rk,rmkj->rmj", resp_v[:, t, :t], jac_y[:, :, :t, :])
        rows = np.zeros((3, R, capacity))
        sds = np.zeros(R)
        for i in range(R):
            r = rank[i]
            gamma, b_row, l_row, te, tr, sd = _replica_step(problem, r, mean_vz[i], mean_vc[i], mean_vv[i], cg[i])
            if tangent:
                stein = gamma
                gamma = resp_v[i, t, :t] @ hist["L"][i, :t, :r]
                l_row = b_row + ia * gamma
                innovation = te - b_row @ b_row
                tr = l_row @ l_row + max(innovation, 0.0)
                sd = _innovation_sd(innovation, te, tr, problem.cutoff)
                if r:
                    z_scores.append(_stein_z_scores(stein, gamma, v[i], Z[i, :r], C[i, :r], b_row, Mr))
            test[i, t], train[i, t] = te, tr
            rows[:, i, :r] = gamma, b_row, l_row
            hist["G"][i, t, :r], hist["B"][i, t, :r], hist["L"][i, t, :r] = gamma, b_row, l_row
            if sd > 0.0:
                hist["B"][i, t, r] = hist["L"][i, t, r] = sd
                cg[i, r] = (1.0 - cg[i, :r] @ b_row) / sd
            sds[i] = sd
        if any(_exploded(test[i, t], test[i, 0]) or not math.isfinite(train[i, t]) for i in range(R)):
            diverged_at = t
            break
        if t == T:
            rank_hist[:, t] = rank
            break
        if problem.max_rank and np.any(rank + (sds > 0.0) > problem.max_rank):
            rank_exceeded_at = t
            break

        # ---- site pass: new coordinate, memory term, field, update --------------------------
        y = v + ia * xp.matmul(xp.asarray(rows[0])[:, None, :], C)[:, 0, :]
        keep = np.flatnonzero(sds > 0.0)
        if keep.size:
            z = normals[t % block]
            for i in keep:
                r, sd = rank[i], sds[i]
                # Gram-Schmidt twice ("twice is enough"): c_raw, then re-orthogonalised
                c_raw = (v[i] - xp.matmul(xp.asarray(rows[1][i, :r]), C[i, :r])) / sd
                cg_raw = cg[i, r]
                e = to_host(xp.matmul(C[i, :r], c_raw)) / Mr + s2 * cg[i, :r] * cg_raw
                nu = math.sqrt(float(to_host(xp.mean(c_raw * c_raw))) + s2 * cg_raw**2 - e @ e)
                C[i, r] = (c_raw - xp.matmul(xp.asarray(e), C[i, :r])) / nu
                cg[i, r] = (cg_raw - e @ cg[i, :r]) / nu
                # v(t) = sum_k (B_k + sd e_k) c_k + sd nu c_r: correct the rows of step t
                for row, name in ((rows[1], "B"), (rows[2], "L")):
                    row[i, :r] += sd * e
                    row[i, r] = sd * nu
                    hist[name][i, t, : r + 1] = row[i, : r + 1]
                z_new = z[i]
                if problem.moment_matching:
                    p = to_host(xp.matmul(C[i, : r + 1], z_new)) / Mr
                    mean_zz = float(to_host(xp.mean(z_new * z_new)))
                    coef, norm = _matching_coefficients(p, cg[i, : r + 1], s2, mean_zz)
                    z_new = (z_new - xp.matmul(xp.asarray(coef), C[i, : r + 1])) / norm
                Z[i, r] = z_new
            rank[keep] += 1
        psi = xp.matmul(xp.asarray(rows[2])[:, None, :], Z)[:, 0, :]
        rank_hist[:, t] = rank
        u = ia * psi + y
        grad_a, grad_b, curv_a, curv_b = _gradient_factors(L, a, b, xp)
        if tangent:
            du = jac_y[:, :, t, :].copy()
            du[:, :, t] += ia
            jac_a = jac_a + eta * (curv_a[..., None] * u[..., None] * jac_a + grad_a[..., None] * du)
            jac_b = jac_b - eta * (curv_b[..., None] * u[..., None] * jac_b + grad_b[..., None] * du)
        a, b = a + eta * grad_a * u, b - eta * grad_b * u
        v = beta_star - (a**L - b**L)

    r_max = int(rank.max())
    run = SiteRun(
        test=test, train=train, rank=rank_hist, cholesky=hist["L"][:, :, :r_max],
        projection=hist["B"][:, :, :r_max], stein=hist["G"][:, :, :r_max], diverged_at=diverged_at,
        rank_exceeded_at=rank_exceeded_at,
    )
    _attach_traces(run, traces, problem)
    if tangent:
        run.diagnostics["orthogonality_error"] = _orthogonality_error(C, cg, rank, s2)
        run.diagnostics["stein_z_scores"] = np.concatenate(z_scores) if z_scores else np.zeros(0)
        run.diagnostics["response_v"] = resp_v
    return run


def _attach_traces(run, traces, problem, steps=None):
    if problem.traced and traces:
        run.traced_beta = np.stack(traces, axis=-1)
        run.traced_steps = np.arange(len(traces)) if steps is None else np.asarray(steps)


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


def _orthogonality_error(C, cg, rank, noise_variance):
    """``max |E[c c^T] + sigma^2 g g^T - I|`` over replicas: how far the coordinates are from
    orthonormal (classical Gram-Schmidt loses about ``eps / cutoff``)."""
    worst = 0.0
    for i, r in enumerate(rank):
        c = np.asarray(C[i, :r])
        gram = c @ c.T / c.shape[1] + noise_variance * np.outer(cg[i, :r], cg[i, :r])
        worst = max(worst, float(np.max(np.abs(gram - np.eye(r)))) if r else 0.0)
    return worst


# --------------------------------------------------------------------------------------------
# Numba kernel: the same loop on site-major arrays (each site's coordinates contiguous, rows kept
# tight), one fused pass over the sites per step (two on a step that opens a coordinate).
# --------------------------------------------------------------------------------------------

if numba is not None:

    @numba.njit(cache=True)
    def _ipow(x, n):  # pragma: no cover - compiled
        """``x ** n`` for a small non-negative integer ``n`` (repeated products)."""
        out = 1.0
        for _ in range(n):
            out *= x
        return out

    @numba.njit(cache=True)
    def _numba_bookkeeping(
        t, Mr, ia, noise_variance, cutoff, rank, cg, chunk_first, chunk_last,
        part_vz, part_vc, part_vv, test, train, hist_l, hist_b, hist_g, g_rows, b_rows, l_rows, sds,
    ):  # pragma: no cover - compiled; tested against the reference
        """``_replica_step`` for every replica from the chunk sums. Returns ``True`` when a
        replica's loss is non-finite or has exploded."""
        bad = False
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
                acc_z = 0.0
                acc_c = 0.0
                for c in range(c0, c1):
                    acc_z += part_vz[c, j]
                    acc_c += part_vc[c, j]
                b_rows[i, j] = acc_c / Mr + noise_variance * cg[i, j]
                g_rows[i, j] = acc_z / Mr
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
            if innovation > cutoff * tr and innovation > ROUNDING_FLOOR * te:
                sd = math.sqrt(innovation)
                sds[i] = sd
                hist_l[i, t, r] = sd
                hist_b[i, t, r] = sd
                proj = 0.0
                for j in range(r):
                    proj += cg[i, j] * b_rows[i, j]
                cg[i, r] = (1.0 - proj) / sd
            if not (math.isfinite(te) and math.isfinite(tr)) or te > _GROWTH_LIMIT * test[i, 0]:
                bad = True
        return bad

    @numba.njit(cache=True, fastmath=True)
    def _numba_new_coordinate(first, stop, r, sd, b_row, v, C, z_raw, part_e, part_p, part_n, chunk):
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

    @numba.njit(cache=True, fastmath=True)
    def _numba_site_pass(
        first, stop, r, keep, recoef, nu, coef, norm, depth, eta, ia, gamma, l_row, beta_star, a, b, v,
        Z, C, z_raw, part_vz, part_vc, part_vv, chunk,
    ):  # pragma: no cover - compiled; tested against the reference
        """Phase 2: one chunk of sites through one step (the body of the reference's site pass).

        With ``keep`` the raw coordinate in column ``r`` is re-orthogonalised, ``c_r = (c_raw -
        recoef . c_{<r}) / nu``, and the new innovation is ``z_r = (z_raw - coef . c_{<=r}) / norm``;
        ``l_row[r]`` is its coefficient in ``psi(t)``. ``fastmath`` only lets the compiler
        reassociate the length-``r`` dot products (SIMD); the result differs from the reference
        by rounding.
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
            u = ia * acc_psi + v[m] + ia * acc_y
            am = a[m]
            bm = b[m]
            a_new = am + eta * depth * _ipow(am, depth - 1) * u
            b_new = bm - eta * depth * _ipow(bm, depth - 1) * u
            a[m] = a_new
            b[m] = b_new
            v_new = beta_star[m] - (_ipow(a_new, depth) - _ipow(b_new, depth))
            v[m] = v_new
            for j in range(r_new):
                part_vz[j] += v_new * z_m[j]
                part_vc[j] += v_new * c_m[j]
            acc_vv += v_new * v_new
        part_vv[chunk] = acc_vv

    @numba.njit(cache=True)
    def _numba_open_coordinates(
        t, Mr, noise_variance, moment_matching, rank, sds, cg, chunk_first, chunk_last, part_e, part_p,
        part_n, b_rows, l_rows, hist_l, hist_b, recoefs, nus, coefs, norms,
    ):  # pragma: no cover - compiled; tested against the reference
        """Between the phases: re-orthogonalisation coefficients ``recoef``, ``nu``, the corrected
        rows ``B(t, :)``, ``L(t, :)`` (``v(t) = sum_k (B_k + sd e_k) c_k + sd nu c_r``), the noise
        site's new coordinate, and the moment-matching coefficients (``_matching_coefficients``)."""
        for i in range(rank.shape[0]):
            if sds[i] <= 0.0:
                continue
            r = rank[i]
            sd = sds[i]
            c0 = chunk_first[i]
            c1 = chunk_last[i]
            cg_raw = cg[i, r]
            n = 0.0
            zz = 0.0
            for c in range(c0, c1):
                n += part_n[c, 0]
                zz += part_n[c, 1]
            n = n / Mr + noise_variance * cg_raw * cg_raw
            zz /= Mr
            ee = 0.0
            eg = 0.0
            ep = 0.0
            for k in range(r):
                acc_e = 0.0
                acc_p = 0.0
                for c in range(c0, c1):
                    acc_e += part_e[c, k]
                    acc_p += part_p[c, k]
                e = acc_e / Mr + noise_variance * cg[i, k] * cg_raw
                recoefs[i, k] = e
                coefs[i, k] = acc_p / Mr
                ee += e * e
                eg += e * cg[i, k]
                ep += e * coefs[i, k]
            p_raw = 0.0
            for c in range(c0, c1):
                p_raw += part_p[c, r]
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
                norms[i] = math.sqrt(residual) if residual > 0.0 else 1.0
            else:
                for k in range(r + 1):
                    coefs[i, k] = 0.0
                norms[i] = 1.0

    @numba.njit(cache=True, parallel=True)
    def _numba_full_batch_block(
        t_start, t_stop, row_offset, T, depth, eta, ia, noise_variance, cutoff, Mr, moment_matching,
        max_rank, beta_star, a, b, v, Z, C, chunk_start, chunk_stop, chunk_replica, chunk_first, chunk_last,
        part_vz, part_vc, part_vv, part_e, part_p, part_n, rank, cg, normals,
        test, train, rank_hist, hist_l, hist_b, hist_g, g_rows, b_rows, l_rows, sds, recoefs, nus, coefs, norms,
    ):  # pragma: no cover - compiled; tested against the reference
        """Steps ``t_start .. t_stop - 1``, then the bookkeeping of step ``T`` if ``t_stop == T``.

        On entry the ``part_*`` arrays hold, per chunk, the site sums of step ``t_start``; step
        ``t`` uses ``normals[t - row_offset]``. Returns ``(status, step)``: ``status`` 0 (went
        through), 1 (a replica diverged at ``step``), 2 (a replica needed more than ``max_rank``
        coordinates at ``step``) or 3 (the arrays are full at ``step``: grow them and call again
        from ``step``; the bookkeeping of a step is idempotent).
        """
        R = rank.shape[0]
        n_chunks = chunk_start.shape[0]
        for t in range(t_start, t_stop):
            for i in range(R):
                if rank[i] + 1 > C.shape[1]:
                    return 3, t
            if _numba_bookkeeping(
                t, Mr, ia, noise_variance, cutoff, rank, cg, chunk_first, chunk_last,
                part_vz, part_vc, part_vv, test, train, hist_l, hist_b, hist_g, g_rows, b_rows, l_rows, sds,
            ):
                return 1, t
            for i in range(R):
                if sds[i] > 0.0 and max_rank > 0 and rank[i] + 1 > max_rank:
                    return 2, t
            row = t - row_offset
            any_keep = False
            for i in range(R):
                if sds[i] > 0.0:
                    any_keep = True
            if any_keep:  # phase 1: raw new coordinates and their sums
                for c in numba.prange(n_chunks):
                    i = chunk_replica[c]
                    if sds[i] > 0.0:
                        _numba_new_coordinate(
                            chunk_start[c], chunk_stop[c], rank[i], sds[i], b_rows[i], v, C,
                            normals[row], part_e[c], part_p[c], part_n, c,
                        )
                _numba_open_coordinates(
                    t, Mr, noise_variance, moment_matching, rank, sds, cg, chunk_first, chunk_last,
                    part_e, part_p, part_n, b_rows, l_rows, hist_l, hist_b, recoefs, nus, coefs, norms,
                )
            # phase 2: the fused site pass (memory term, field, update, sums of step t + 1)
            for c in numba.prange(n_chunks):
                i = chunk_replica[c]
                _numba_site_pass(
                    chunk_start[c], chunk_stop[c], rank[i], sds[i] > 0.0, recoefs[i], nus[i], coefs[i],
                    norms[i], depth, eta, ia, g_rows[i], l_rows[i], beta_star, a, b, v, Z, C, normals[row],
                    part_vz[c], part_vc[c], part_vv, c,
                )
            for i in range(R):
                if sds[i] > 0.0:
                    rank[i] += 1
                rank_hist[i, t] = rank[i]
        if t_stop == T:
            if _numba_bookkeeping(
                T, Mr, ia, noise_variance, cutoff, rank, cg, chunk_first, chunk_last,
                part_vz, part_vc, part_vv, test, train, hist_l, hist_b, hist_g, g_rows, b_rows, l_rows, sds,
            ):
                return 1, T
            for i in range(R):
                rank_hist[i, T] = rank[i]
        return 0, -1

    @numba.njit(cache=True, parallel=True)
    def _numba_online_block(
        t_start, t_stop, T, depth, eta, ia, noise_variance, Mr, beta_star, a, b, v,
        chunk_start, chunk_stop, chunk_replica, chunk_first, chunk_last, part_vv, normals, test, train, scale,
    ):  # pragma: no cover - compiled; tested against the reference
        """Online SGD steps ``t_start .. t_stop - 1`` (plus the losses of step ``t_stop``)."""
        R = test.shape[0]
        n_chunks = chunk_start.shape[0]
        for t in range(t_start, t_stop + 1):
            for i in range(R):
                vv = 0.0
                for c in range(chunk_first[i], chunk_last[i]):
                    vv += part_vv[c]
                test[i, t] = vv / Mr + noise_variance
                train[i, t] = test[i, t]
                scale[i] = ia * math.sqrt(test[i, t])
                if not math.isfinite(test[i, t]) or test[i, t] > _GROWTH_LIMIT * test[i, 0]:
                    return t
            if t == t_stop:
                return -1
            row = t - t_start
            for c in numba.prange(n_chunks):
                i = chunk_replica[c]
                acc = 0.0
                for m in range(chunk_start[c], chunk_stop[c]):
                    u = scale[i] * normals[row, m] + v[m]
                    am = a[m]
                    bm = b[m]
                    a_new = am + eta * depth * _ipow(am, depth - 1) * u
                    b_new = bm - eta * depth * _ipow(bm, depth - 1) * u
                    a[m] = a_new
                    b[m] = b_new
                    v_new = beta_star[m] - (_ipow(a_new, depth) - _ipow(b_new, depth))
                    v[m] = v_new
                    acc += v_new * v_new
                part_vv[c] = acc
        return -1


def _chunks(problem, chunks_per_replica):
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


def _run_numba(problem, teacher, rng, block, chunks_per_replica=8):
    if numba is None:  # pragma: no cover - depends on the environment
        raise ImportError("backend='numba' needs numba: pip install numba")
    R, Mr, T, M, L = problem.replicas, problem.sites_per_replica, problem.steps, problem.sites, problem.depth
    start, stop, replica, first, last = _chunks(problem, chunks_per_replica)
    n_chunks = start.size
    beta_star = np.ascontiguousarray(teacher, dtype=np.float64)
    a = np.full(M, problem.init_scale)
    b = np.full(M, problem.init_scale)
    v = beta_star - (a**L - b**L)
    test = np.zeros((R, T + 1))
    train = np.zeros((R, T + 1))
    part_vv = np.array([np.sum(v[s:e] * v[s:e]) for s, e in zip(start, stop)])
    args = (L, problem.learning_rate, problem.inv_sqrt_alpha, problem.noise_variance)
    diverged = -1

    traced = np.concatenate([np.arange(i * Mr, i * Mr + problem.traced) for i in range(R)]).astype(np.int64)
    traces, trace_steps = [], []

    def record(step):
        if problem.traced:
            traces.append((a[traced] ** L - b[traced] ** L).reshape(R, problem.traced))
            trace_steps.append(step)

    if problem.online:
        scale = np.zeros(R)
        for t0 in range(0, T, block):
            t1 = min(t0 + block, T)
            normals = rng.standard_normal((t1 - t0, M))
            record(t0)
            diverged = _numba_online_block(
                t0, t1, T, *args, Mr, beta_star, a, b, v, start, stop, replica, first, last,
                part_vv, normals, test, train, scale,
            )
            if diverged >= 0:
                break
        record(T)
        empty = np.zeros((R, T + 1, 0))
        run = SiteRun(test, train, np.zeros((R, T + 1), dtype=np.int64), empty, empty, empty,
                      diverged if diverged >= 0 else None)
        _attach_traces(run, traces, problem, trace_steps)
        return run

    # The coordinates are stored site-major with a tight row length (grown by a quarter when
    # full): each step streams the first r entries of every row, so slack columns cost bandwidth.
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

    status = 0
    for t0 in range(0, T, block):
        t1 = min(t0 + block, T)
        normals = rng.standard_normal((t1 - t0, M))
        record(t0)
        current = t0
        while True:
            status, step = _numba_full_batch_block(
                current, t1, t0, T, *args, problem.cutoff, Mr, problem.moment_matching, problem.max_rank,
                beta_star, a, b, v, Z, C, start, stop, replica, first, last,
                part_vz, part_vc, part_vv, part_e, part_p, part_n, rank, cg, normals,
                test, train, rank_hist, hist[0], hist[1], hist[2], rows[0], rows[1], rows[2], sds, rows[3], nus,
                rows[4], norms,
            )
            if status != 3:
                break
            grow = min(T + 2, capacity + max(8, capacity // 4)) - capacity
            Z, C, part_vz, part_vc, part_e, part_p, cg = (
                np.pad(x, ((0, 0), (0, grow))) for x in (Z, C, part_vz, part_vc, part_e, part_p, cg)
            )
            hist = [np.pad(x, ((0, 0), (0, 0), (0, grow))) for x in hist]
            rows = [np.pad(x, ((0, 0), (0, grow))) for x in rows]
            capacity += grow
            current = step
        if status:
            break
    record(T)
    r_max = int(rank.max())
    run = SiteRun(
        test=test, train=train, rank=rank_hist, cholesky=hist[0][:, :, :r_max],
        projection=hist[1][:, :, :r_max], stein=hist[2][:, :, :r_max],
        diverged_at=step if status == 1 else None, rank_exceeded_at=step if status == 2 else None,
    )
    _attach_traces(run, traces, problem, trace_steps)
    return run


def run_sites(problem: SiteProblem, teacher: np.ndarray, rng: np.random.Generator, *,
              backend: str = "numba", block: int = 64, response: str = "stein") -> SiteRun:
    """Run the site loop of ``problem`` on ``backend`` ("numpy" reference, "numba", "cupy").

    ``teacher`` holds ``beta*`` of every site (replica-major, length ``R * M_r``); ``rng`` draws
    the Gaussian innovations in blocks of ``block`` steps, ``(steps in block, R * M_r)`` at a
    time, the same numbers on every backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    if response not in RESPONSES:
        raise ValueError(f"`response` must be one of {RESPONSES}, got {response!r}")
    if response == "tangent" and backend != "numpy":
        raise ValueError("response='tangent' (the exact O(T^3 M) reference) needs backend='numpy'")
    if backend == "numba":
        return _run_numba(problem, teacher, rng, block)
    if backend == "cupy":
        from finite_size._backend import array_module

        return _run_reference(problem, teacher, rng, block, array_module("cupy"), response)
    return _run_reference(problem, teacher, rng, block, np, response)
