"""The single-site process of the diagonal-network DMFT (THEORY.md 4.1): what every backend shares.

What is computed
----------------
``R`` independent replicas of ``M_r`` sites each. A site carries its teacher coefficient
``beta*``, its two factors ``a, b`` (``F = a^L - b^L``, ``a = b = s`` at step 0) and, for full-batch
gradient descent, two histories in *innovation coordinates* (below). Every step ``t``, per site::

    v(t)       = beta* - F(a, b)
    u(t)       = alpha^{-1/2} psi(t) + y(t),        y = R_Delta v    (the memory term)
    a(t+1)     = a + eta_t L a^{L-1} u,   b(t+1) = b - eta_t L b^{L-1} u

with ``eta_t`` the learning rate of step ``t`` (a number or a schedule: only the site update sees it).

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
coordinates stay orthonormal to ~1e-15 at any cutoff (tested, and reported by every solve as
``info["orthogonality_error"]``). The Gaussian field is ``psi(t) = sum_j L(t, j) z_j`` with one
``z_j ~ N(0, 1)`` per site and retained step, and the memory term is
``y(t) = v(t) + alpha^{-1/2} sum_j Gamma(t, j) c_j``. The response ``R_v`` is never formed: the
dynamics applies it only to vectors in the span of ``L`` (the sites' own ``y``), where
``R_v L = Gamma`` is the Stein (Gaussian integration by parts) identity
``E[v(t) z_j] = sum_k R_v(t, k) L(k, j)``. So the near-singular ``C_Delta`` is never inverted:
the directions in which ``psi`` barely fluctuates are those in which nothing needs the response.

Per step: ``test(t) = <v(t), v(t)>`` (= ``C_v(t,t) + sigma^2``), ``d(t) = test - |B(t, :)|^2`` is
the innovation variance (of ``v`` and, equally, of ``Delta``) and ``train(t) = C_Delta(t,t) =
|L(t,:)|^2 + d(t)``. A step opens a new coordinate when ``d(t) > cutoff * train(t)``; otherwise
its innovation (less than a fraction ``cutoff`` of the variance of ``psi(t)``) is dropped. Steps
whose ``d`` is below ``ROUNDING_FLOOR * test`` (cancellation error, once training has converged)
never open one. ``d`` below ``-NEGATIVE_INNOVATION * test`` is impossible for orthonormal
coordinates (Bessel's inequality): the run stops with a numerical failure naming the step.
A replica that has reached ``max_rank`` coordinates opens no more: its innovations are dropped
and the largest dropped fraction ``d / train`` is reported (the result's status says so).

Moment matching (variance reduction)
------------------------------------
A new ``z_r`` is drawn ``N(0, 1)`` per site, then orthogonalised (over the replica's sites)
against the coordinates ``c_0 .. c_r`` known at that step and normalised to unit mean square.
So, within every replica, the field is exactly uncorrelated with the sites' own past and has
exactly the prescribed variance; this removes most of the replica-to-replica scatter (measured:
variance down about tenfold) at the price of an ``O(r / M_r)`` bias (measured, see the tests).
It also makes the Stein estimate ``E[v(t) z_j]`` a control-variate estimate: the part of
``v(t)`` linearly predictable from ``c_0 .. c_j`` no longer contributes noise.
``E[c c^T] = I - sigma^2 g g^T`` (``g`` the noise site's coordinates), so the projection needs
only a Sherman-Morrison correction. The residual mean square of ``z`` after the projection is
``(M_r - r - 1) / M_r`` in expectation; a non-positive one is a numerical failure.

Online SGD (section 4.1, last line) is Markov: ``u = alpha_B^{-1/2} sqrt(test(t)) z + v`` with a
fresh ``z`` every step, ``train(t) = test(t)``, no history.

Random numbers are drawn on the host by one ``numpy.random.Generator`` in blocks of steps,
``normals[k, i]`` for step ``t0 + k`` and site ``i`` (replica-major); every backend consumes the same
numbers, so they agree to rounding.

Backends (one module each): :mod:`._diagonal_reference` (NumPy, with the exact tangent response
for tests), :mod:`._diagonal_numba` (compiled CPU kernels), :mod:`._diagonal_array_api` (CuPy,
written against the array API and tested with ``array_api_strict``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "SiteProblem",
    "SiteRun",
    "SiteFailure",
    "run_sites",
    "RESPONSES",
    "GROWTH_LIMIT",
    "ROUNDING_FLOOR",
    "NEGATIVE_INNOVATION",
]

RESPONSES = ("stein", "tangent")

# A replica whose test loss exceeds this many times its initial value has diverged (as
# dmft.errors.DIVERGENCE_FACTOR); a coordinate overflowing makes it non-finite.
GROWTH_LIMIT = 1e8
# Innovation variances below this fraction of C_v(t,t) + sigma^2 are rounding errors of
# d = test - |B|^2 (site sums carry ~1e-16 relative error; 1e-12 leaves a wide margin). They occur
# once the train loss has converged to ~0 (interpolation): no coordinate is opened for them.
ROUNDING_FLOOR = 1e-12
# d = test - |B|^2 below -NEGATIVE_INNOVATION * test cannot be rounding: with orthonormal
# coordinates |B|^2 <= test (Bessel), and the rounding of |B|^2 is ~r * 1e-16 * test (measured:
# d / test never below +3.5e-15 in 600-step runs of four cases, depth 2-3, with and without noise,
# cutoffs 1e-6 and 1e-10; no negative value). It means the coordinates lost orthonormality.
NEGATIVE_INNOVATION = 1e-10


@dataclass(frozen=True)
class SiteProblem:
    """Everything the site loop needs, as plain numbers (built by ``dmft.solvers.diagonal``).

    ``learning_rates`` holds the rate of every step (``(steps,)``); ``inv_sqrt_alpha`` is
    ``alpha^{-1/2}`` for full batch and ``batch_ratio^{-1/2}`` online; ``noise_variance`` is
    ``sigma^2``; ``cutoff`` the relative innovation cutoff; sites are ``replicas *
    sites_per_replica``, replica-major; ``max_rank`` the most coordinates a replica may open
    (0: no limit); ``traced``: record ``beta(t)`` of the first ``traced`` sites of every replica.
    """

    depth: int
    init_scale: float
    learning_rates: np.ndarray
    inv_sqrt_alpha: float
    noise_variance: float
    online: bool
    cutoff: float
    replicas: int
    sites_per_replica: int
    moment_matching: bool = True
    max_rank: int = 0
    traced: int = 0

    @property
    def steps(self) -> int:
        return len(self.learning_rates)

    @property
    def sites(self) -> int:
        return self.replicas * self.sites_per_replica


@dataclass(frozen=True)
class SiteFailure:
    """Why a run stopped early: ``kind`` is ``"divergence"`` (the loss grew without bound) or
    ``"numerical"`` (the arithmetic failed while the loss was bounded); ``detail`` says what."""

    kind: str
    step: int
    replica: int
    detail: str


@dataclass
class SiteRun:
    """Per-replica output of the site loop.

    test, train : ``(R, T + 1)`` loss curves of every replica.
    rank : ``(R, T + 1)`` number of innovation coordinates after each step.
    cholesky : ``(R, T + 1, r)`` rows ``L(t, :)`` (``C_Delta = L L^T`` up to the cutoff).
    projection : ``(R, T + 1, r)`` rows ``B(t, :)`` (``C_v + sigma^2 1 1^T = B B^T``).
    stein : ``(R, T + 1, r)`` rows ``Gamma(t, :) = (R_v L)(t, :)``.
    failure : why the run stopped early (:class:`SiteFailure`), or ``None``.
    rank_capped_at : first step at which a replica at ``max_rank`` coordinates dropped an
        innovation above the cutoff, or ``None``; ``capped_innovation`` the largest such ``d / train``.
    orthogonality_error : ``max |<c_j, c_k> - delta_jk|`` over replicas at the end.
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
    failure: SiteFailure | None = None
    rank_capped_at: int | None = None
    capped_innovation: float = 0.0
    orthogonality_error: float = 0.0
    diagnostics: dict = field(default_factory=dict)
    traced_steps: np.ndarray | None = None
    traced_beta: np.ndarray | None = None


# --------------------------------------------------------------------------------------------
# Per-replica algebra on the host (the reference and the array-API path; the Numba kernels
# inline the same formulas)
# --------------------------------------------------------------------------------------------


def replica_row(problem: SiteProblem, r: int, mean_vz, mean_vc, mean_vv: float, cg):
    """Row ``t`` of ``Gamma``, ``B``, ``L`` for one replica from the site means of step ``t``.

    ``mean_vz[j] = E[v(t) z_j]``, ``mean_vc[j] = E[v(t) c_j]`` (``j < r``), ``mean_vv = E[v(t)^2]``,
    ``cg`` the noise site's coordinates. Returns ``gamma, b_row, l_row, test, train, innovation``
    with ``innovation = d(t) = test - |B(t, :)|^2`` (negative values only from rounding; the
    caller checks) and ``train = |L(t, :)|^2 + max(d, 0)``.
    """
    b_row = mean_vc[:r] + problem.noise_variance * cg[:r]
    gamma = np.array(mean_vz[:r], dtype=float)
    test = float(mean_vv) + problem.noise_variance
    l_row = b_row + problem.inv_sqrt_alpha * gamma
    innovation = test - float(b_row @ b_row)
    train = float(l_row @ l_row) + max(innovation, 0.0)
    return gamma, b_row, l_row, test, train, innovation


def opens_coordinate(problem: SiteProblem, innovation: float, test: float, train: float) -> bool:
    """Whether step ``t`` has an innovation worth a coordinate: ``d > cutoff * C_Delta(t,t)``
    and ``d > ROUNDING_FLOOR * test`` (below that ``d = test - |B|^2`` is cancellation error)."""
    return innovation > problem.cutoff * train and innovation > ROUNDING_FLOOR * test


def negative_innovation(step: int, replica: int, innovation: float, test: float) -> SiteFailure | None:
    """The failure of a step whose innovation variance is negative beyond rounding, else ``None``."""
    if innovation >= -NEGATIVE_INNOVATION * test:
        return None
    return SiteFailure(
        "numerical", step, replica,
        f"negative innovation variance d = {innovation:.3g} ({innovation / test:.2g} of C_v(t,t) + sigma^2) "
        f"in replica {replica}: the innovation coordinates are no longer orthonormal (Bessel's inequality "
        "fails). Raise `cutoff` (fewer, better separated coordinates) or compare with backend='numpy'",
    )


def matching_coefficients(p, g, noise_variance: float, mean_zz: float):
    """Least-squares coefficients of ``z`` on the coordinates ``c_0 .. c_r`` and the residual.

    ``p[k] = E[c_k z]``, Gram matrix ``E[c c^T] = I - sigma^2 g g^T`` (Sherman-Morrison inverse).
    Returns ``coef, residual`` with ``residual = E z^2 - p . coef`` (the mean square of the
    projected ``z``, ``(M_r - r - 1) / M_r`` in expectation; the caller checks that it is positive).
    """
    shrink = 1.0 - noise_variance * float(g @ g)
    coef = p + (noise_variance * float(g @ p) / shrink) * g if noise_variance > 0.0 else np.array(p, dtype=float)
    return coef, float(mean_zz - p @ coef)


def matching_failure(step: int, replica: int, residual: float) -> SiteFailure:
    """The failure of a moment matching whose residual mean square is not positive."""
    return SiteFailure(
        "numerical", step, replica,
        f"moment matching in replica {replica}: the new innovation's residual mean square after "
        f"projection is {residual:.3g} (expected about 1): the coordinates are degenerate; increase `sites`",
    )


def exploded(test: float, initial: float) -> bool:
    """Whether a replica's loss is non-finite or beyond ``GROWTH_LIMIT`` times its initial value."""
    return not math.isfinite(test) or test > GROWTH_LIMIT * initial


def classify_explosion(test: np.ndarray, train: np.ndarray, step: int) -> SiteFailure:
    """A replica's loss at ``step`` is non-finite or exploded: a divergence or a numerical failure?

    A divergence grows: the loss is finite and beyond ``GROWTH_LIMIT`` times its start, or it
    became non-finite after passing ``sqrt(GROWTH_LIMIT)`` times its start (an overflow on the way
    up). A NaN or inf out of a bounded loss is a numerical failure (lowering the learning rate would
    not help).
    """
    rows = [i for i in range(test.shape[0])
            if exploded(test[i, step], test[i, 0]) or not math.isfinite(train[i, step])]
    replica = rows[0] if rows else 0
    value, initial = test[replica, step], test[replica, 0]
    previous = test[replica, step - 1] if step > 0 else initial
    if math.isfinite(value) and math.isfinite(train[replica, step]):
        return SiteFailure("divergence", step, replica, f"test loss {value:.3g} from {initial:.3g}")
    if step > 0 and previous > math.sqrt(GROWTH_LIMIT) * initial:
        return SiteFailure("divergence", step, replica, f"overflow after the test loss grew to {previous:.3g}")
    return SiteFailure(
        "numerical", step, replica,
        f"the loss of replica {replica} became {value} (train {train[replica, step]}) while it was bounded "
        f"(test loss {previous:.3g} at the step before, {initial:.3g} at the start): a NaN or inf from "
        "finite values, not a divergence. Check the inputs, or compare with backend='numpy'",
    )


def gram_error(coordinates, noise_coordinates, noise_variance: float) -> float:
    """``max |<c_j, c_k> - delta_jk|`` for one replica: ``coordinates`` ``(r, M_r)``, the noise
    site's ``noise_coordinates`` ``(r,)``."""
    coordinates = np.asarray(coordinates)
    r = coordinates.shape[0]
    if r == 0:
        return 0.0
    gram = coordinates @ coordinates.T / coordinates.shape[1] + noise_variance * np.outer(noise_coordinates, noise_coordinates)
    return float(np.max(np.abs(gram - np.eye(r))))


def gradient_factors(depth: int, a, b):
    """``(L a^{L-1}, L b^{L-1})``: ``dF/da`` and ``-dF/db`` of ``F = a^L - b^L``."""
    return depth * a ** (depth - 1), depth * b ** (depth - 1)


def attach_traces(run: SiteRun, traces: list, problem: SiteProblem, steps=None) -> None:
    if problem.traced and traces:
        run.traced_beta = np.stack(traces, axis=-1)
        run.traced_steps = np.arange(len(traces)) if steps is None else np.asarray(steps)


def run_sites(problem: SiteProblem, teacher: np.ndarray, rng: np.random.Generator, *,
              backend: str = "numba", block: int = 64, response: str = "stein") -> SiteRun:
    """Run the site loop of ``problem`` on ``backend`` (``"numpy"`` reference, ``"numba"``,
    ``"cupy"``, or the test-only ``"array_api_strict"``).

    ``teacher`` holds ``beta*`` of every site (replica-major, length ``R * M_r``); ``rng`` draws
    the Gaussian innovations in blocks of ``block`` steps, ``(steps in block, R * M_r)`` at a
    time, the same numbers on every backend.
    """
    from .._backend import check_backend

    check_backend(backend)
    if response not in RESPONSES:
        raise ValueError(f"`response` must be one of {RESPONSES}, got {response!r}")
    if response == "tangent" and backend != "numpy":
        raise ValueError("response='tangent' (the exact O(T^3 M) reference) needs backend='numpy'")
    if backend == "numba":
        from ._diagonal_numba import run_numba

        return run_numba(problem, teacher, rng, block)
    if backend == "numpy":
        from ._diagonal_reference import run_reference

        return run_reference(problem, teacher, rng, block, response)
    from ._diagonal_array_api import run_array_api

    return run_array_api(problem, teacher, rng, block, backend)
