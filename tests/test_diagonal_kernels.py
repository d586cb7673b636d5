"""The site loop of the diagonal-network DMFT (dmft/solvers/_diagonal_*.py): the Numba kernels and
the array-API (CuPy) path against the NumPy reference on hard cases, the Numba kernels once with
bounds checking on, the Stein estimator against the exact tangent response, and every failure
named (no silent absorption, no NaN reported as a divergence).

Tolerances between backends: the same arithmetic in a different order (chunked sums, the order
of dot products) differs by rounding, ~1e-16 relative, amplified by the orthonormalisation, which
divides by innovation standard deviations down to ``sqrt(cutoff)`` of the field's: at most
``~1e-16 / cutoff`` relative (measured 1e-12 at ``cutoff = 1e-6``, 1e-10 at ``1e-8``).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dmft
from dmft.solvers import _diagonal_numba
from dmft.solvers import _diagonal_reference
from dmft.solvers._diagonal_sites import NEGATIVE_INNOVATION, SiteProblem, run_sites
from dmft.solvers.diagonal import sample_site_teachers


def _problem(depth=2, init_scale=0.3, eta=0.05, steps=40, alpha=0.5, noise=0.0, online=False,
             cutoff=1e-4, replicas=2, sites=400, moment_matching=True, max_rank=0):
    rates = np.full(steps, eta) if np.ndim(eta) == 0 else np.asarray(eta)
    return SiteProblem(
        depth=depth, init_scale=init_scale, learning_rates=rates,
        inv_sqrt_alpha=1 / math.sqrt(alpha), noise_variance=noise**2, online=online, cutoff=cutoff,
        replicas=replicas, sites_per_replica=sites, moment_matching=moment_matching, max_rank=max_rank,
    )


def _sparse_teacher(replicas, sites, seed=0, density=0.2):
    data = dmft.GaussianData(alpha=0.5, teacher=dmft.SparseTeacher(density=density))
    return sample_site_teachers(data, replicas, sites, np.random.default_rng(seed))


def _assert_same_run(expected, got, cutoff):
    """Replica by replica: the same ranks at every step, and every curve and kernel row equal to
    ``max(1e-10, 1e-16 / cutoff)`` of its largest entry (module docstring)."""
    np.testing.assert_array_equal(expected.rank, got.rank)
    tolerance = max(1e-10, 1e-16 / cutoff)
    for name in ("test", "train", "cholesky", "projection", "stein"):
        a, b = getattr(expected, name), getattr(got, name)
        assert b.shape == a.shape, name
        for replica in range(a.shape[0]):
            if a[replica].size:
                np.testing.assert_allclose(b[replica], a[replica], rtol=0, atol=tolerance * np.abs(a[replica]).max(),
                                           err_msg=f"{name}, replica {replica}")
    assert (expected.rank_capped_at, expected.failure) == (got.rank_capped_at, got.failure)
    assert got.capped_innovation == pytest.approx(expected.capped_innovation, rel=1e-6)


# ------------------------------------------------------------------------------------------------
# backends against the reference
# ------------------------------------------------------------------------------------------------

# Hard cases: label noise (the out-of-bounds write of issue 10 was multiplied by sigma^2 = 0 without
# it), a cutoff of 1e-8 and 250 steps so that every replica reaches ~50 coordinates (the Numba
# arrays start at 16 columns and grow 16 -> 24 -> 32 -> 40 -> 50 -> 62: four growths), depth 3,
# a learning-rate schedule, no moment matching on the full-batch path, the rank cap, online SGD.
HARD_CASES = {
    "noise-long-ranks": dict(init_scale=0.1, noise=0.1, steps=250, cutoff=1e-8, replicas=4, sites=256),
    "noise-small-init": dict(init_scale=0.05, noise=0.3, steps=150, cutoff=1e-6, replicas=3, sites=300),
    "depth3-alpha2-schedule": dict(depth=3, init_scale=0.5, alpha=2.0, noise=0.2, steps=120,
                                   eta=dmft.schedules.warmup_cosine(0.05, 120, warmup=20), sites=300),
    "depth1-noise": dict(depth=1, init_scale=0.2, noise=0.2, steps=60),
    "full-batch-without-moment-matching": dict(init_scale=0.1, noise=0.1, steps=120, cutoff=1e-6,
                                               moment_matching=False, replicas=3, sites=300),
    "rank-cap": dict(init_scale=0.1, noise=0.1, steps=120, cutoff=1e-6, max_rank=20, replicas=3, sites=300),
    "online-noise": dict(init_scale=0.3, noise=0.3, online=True, steps=80),
    "online-depth3": dict(depth=3, init_scale=0.6, online=True, moment_matching=False, steps=80),
}


@pytest.mark.parametrize("backend", ["numba", "array_api_strict"])
@pytest.mark.parametrize("case", list(HARD_CASES), ids=list(HARD_CASES))
def test_backend_equals_numpy_reference_replica_by_replica(case, backend):
    """Same teacher, same random numbers: the Numba kernels and the array-API path (the CuPy code,
    run on the strict namespace) reproduce the reference replica by replica (tolerance: module
    docstring). The cases pass several capacity growths (checked) with label noise."""
    problem = _problem(**HARD_CASES[case])
    teacher = _sparse_teacher(problem.replicas, problem.sites_per_replica)
    reference = run_sites(problem, teacher, np.random.default_rng(1), backend="numpy", block=16)
    other = run_sites(problem, teacher, np.random.default_rng(1), backend=backend, block=16)
    _assert_same_run(reference, other, problem.cutoff)
    if case == "noise-long-ranks":
        assert reference.rank[:, -1].min() >= 41  # beyond four growths of the Numba arrays (16 .. 50)
    if case == "rank-cap":
        assert reference.rank_capped_at is not None and reference.rank[:, -1].max() == 20


def test_numba_kernels_with_bounds_checking(tmp_path):
    """The compiled kernels run once with ``NUMBA_BOUNDSCHECK=1`` on a case whose ranks grow past
    the initial capacity with label noise (where issue 10's out-of-bounds write happened), in a
    subprocess with its own Numba cache (bounds checking changes the compiled code, so it must not
    share the cache; kept between runs in a subdirectory of ``NUMBA_CACHE_DIR`` when it is set)."""
    cache = os.environ.get("NUMBA_CACHE_DIR")
    cache = os.path.join(cache, "boundscheck") if cache else str(tmp_path / "numba-cache")
    script = textwrap.dedent("""
        import math, numpy as np
        from dmft.solvers._diagonal_sites import SiteProblem, run_sites
        common = dict(depth=2, init_scale=0.1, noise_variance=0.01, cutoff=1e-6, sites_per_replica=256)
        full = SiteProblem(learning_rates=np.full(100, 0.05), inv_sqrt_alpha=math.sqrt(2.0), online=False,
                           replicas=3, max_rank=64, **common)
        rng = np.random.default_rng(0)
        teacher = rng.standard_normal(full.sites) * (rng.random(full.sites) < 0.2)
        run = run_sites(full, teacher, np.random.default_rng(1), backend="numba", block=16)
        assert run.failure is None and run.rank[:, -1].min() > 24, run.rank[:, -1]
        online = SiteProblem(learning_rates=np.full(20, 0.05), inv_sqrt_alpha=1.0, online=True, replicas=2, **common)
        run = run_sites(online, teacher[: online.sites], np.random.default_rng(1), backend="numba")
        assert run.failure is None
        print("ok", run.test[:, -1])
    """)
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=cache)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


def test_cupy_backend_is_the_array_api_path_or_a_clear_error():
    """``backend="cupy"`` runs the array-API path on a usable GPU (equal to the reference); where CuPy
    is missing or sees no GPU it raises BackendUnavailableError with what to do, before any work."""
    from dmft._backend import BackendUnavailableError, cupy_usable

    problem = _problem(init_scale=0.2, noise=0.1, steps=30)
    teacher = _sparse_teacher(problem.replicas, problem.sites_per_replica)
    if not cupy_usable():
        with pytest.raises(BackendUnavailableError, match="cupy|CuPy"):
            run_sites(problem, teacher, np.random.default_rng(1), backend="cupy")
        with pytest.raises(BackendUnavailableError):
            dmft.solve(dmft.DiagonalLinear(2, 0.2), dmft.GaussianData(0.5, 0.1), dmft.GradientDescent(0.05, 10),
                       sites=1024, replicas=2, backend="cupy")
        return
    reference = run_sites(problem, teacher, np.random.default_rng(1), backend="numpy")  # pragma: no cover - GPU
    _assert_same_run(reference, run_sites(problem, teacher, np.random.default_rng(1), backend="cupy"),
                     problem.cutoff)  # pragma: no cover - GPU


# ------------------------------------------------------------------------------------------------
# failures are named, never absorbed
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "numba", "array_api_strict"])
def test_nan_is_a_numerical_failure_not_a_divergence(backend):
    """A NaN out of bounded values (here a NaN teacher coefficient at one site) stops the run as a
    numerical failure at the step where it appeared, saying it is not a divergence; it does not
    become a DivergenceError asking for a smaller learning rate."""
    problem = _problem(init_scale=0.2, noise=0.1, steps=20)
    teacher = _sparse_teacher(problem.replicas, problem.sites_per_replica)
    teacher[5] = np.nan
    run = run_sites(problem, teacher, np.random.default_rng(1), backend=backend)
    assert run.failure is not None and run.failure.kind == "numerical" and run.failure.step == 0
    assert "not a divergence" in run.failure.detail
    # through the solver: the user sees NumericalError (a custom prior is the only way to pass NaN)
    sampler = lambda rng, size: np.where(np.arange(size) == 3, np.nan, rng.standard_normal(size))  # noqa: E731
    with pytest.raises(ValueError, match="finite"):
        dmft.solve(dmft.DiagonalLinear(2, 0.2), dmft.GaussianData(0.5, 0.1), dmft.GradientDescent(0.05, 10),
                   sites=1024, replicas=2, teacher_sampler=sampler, backend=backend)


def test_negative_innovation_is_a_numerical_failure(monkeypatch):
    """A negative innovation variance beyond rounding (``|B|^2 > test``: the coordinates are no longer
    orthonormal, as when issue 10's write corrupted another replica's noise coordinates) stops the run:
    NumericalError naming the step and the remedy. Provoked by corrupting ``B`` at step 7 in the
    reference; in the compiled bookkeeping by crafted site sums."""
    original = _diagonal_reference.replica_row

    def corrupted(problem, r, mean_vz, mean_vc, mean_vv, cg):
        gamma, b_row, l_row, test, train, innovation = original(problem, r, mean_vz, mean_vc, mean_vv, cg)
        if corrupted.calls == 7 * problem.replicas + 1:  # step 7, replica 1
            innovation = -1e-6 * test
        corrupted.calls += 1
        return gamma, b_row, l_row, test, train, innovation

    corrupted.calls = 0
    monkeypatch.setattr(_diagonal_reference, "replica_row", corrupted)
    with pytest.raises(dmft.NumericalError, match=r"at step 7.*negative innovation variance.*replica 1.*cutoff"):
        dmft.solve(dmft.DiagonalLinear(2, 0.2), dmft.GaussianData(0.5, 0.1), dmft.GradientDescent(0.05, 20),
                   sites=1024, replicas=2, backend="numpy", target_error=math.inf)

    # the compiled check: replica 1 of 2 has |B|^2 = 1.5 > test = 1.0 at step 0 (rank 1)
    rank = np.array([0, 1])
    part_vc = np.array([[0.0], [0.0], [math.sqrt(1.5)], [0.0]])  # 2 chunks per replica
    arrays = dict(part_vz=np.zeros((4, 1)), part_vv=np.array([0.5, 0.5, 0.5, 0.5]))
    fail = np.zeros(2)
    status = _diagonal_numba._bookkeeping(
        0, 1, 1.0, 0.0, 1e-6, 0, rank, np.zeros((2, 2)), np.array([0, 2]), np.array([2, 4]),
        arrays["part_vz"], part_vc, arrays["part_vv"], np.ones((2, 3)), np.zeros((2, 3)),
        *(np.zeros((2, 3, 2)) for _ in range(3)), *(np.zeros((2, 2)) for _ in range(3)), np.zeros(2),
        np.array([0.0, -1.0]), fail,
    )
    assert status == _diagonal_numba._NEGATIVE and fail[0] == 1 and fail[1] == pytest.approx(-0.5)
    assert -0.5 < -NEGATIVE_INNOVATION


def test_rank_cap_is_reported_not_raised():
    """A replica that needs more innovation coordinates than a quarter of its sites stops opening
    them; the run goes on, and the result's status and an AccuracyWarning say where and how much
    variance was dropped, with the remedy (more sites)."""
    with pytest.warns(dmft.AccuracyWarning, match="rank cap.*increase `sites`"):
        result = dmft.solve(dmft.DiagonalLinear(2, 0.1), dmft.GaussianData(0.5, 0.1, teacher=dmft.SparseTeacher(0.2)),
                            dmft.GradientDescent(0.05, 200), sites=256, replicas=4, cutoff=1e-10,
                            target_error=math.inf)
    assert result.status == 1 and "rank cap" in result.message
    assert result.info["rank_capped_at"] is not None and result.info["max_rank"] == 16
    assert np.all(np.isfinite(result.test_loss))


# ------------------------------------------------------------------------------------------------
# the Stein estimator against the exact tangent response (NumPy reference only)
# ------------------------------------------------------------------------------------------------


def test_stein_estimate_equals_exact_tangent_response():
    """The Stein (integration by parts) coefficients ``Gamma = E[v z]`` equal ``R_v L`` with ``R_v``
    the exact mean of tangent-propagated Jacobians (``O(T^3 M)``), on the same sites and steps.

    Their difference is Monte Carlo noise with the estimated standard error: the z-scores have mean
    square near 1 (within 0.5: the entries of one column are strongly correlated across steps,
    so only ~r = 20 of them are independent) and none beyond 5 SE."""
    problem = _problem(depth=2, init_scale=0.1, steps=30, alpha=0.5, replicas=1, sites=1500, cutoff=1e-6)
    run = run_sites(problem, _sparse_teacher(1, 1500), np.random.default_rng(2), backend="numpy", response="tangent")
    z = run.diagnostics["stein_z_scores"]
    assert z.size > 100
    assert abs(np.mean(z**2) - 1.0) < 0.5, np.mean(z**2)
    assert np.max(np.abs(z)) < 5.0


def test_stein_solve_equals_exact_tangent_solve():
    """Whole solves with the Stein response and with the exact tangent response, on the same
    random numbers (12 replicas of 600 sites): the paired difference of the curves has mean zero
    within 3.5 SE at every step (the estimator adds no bias). Its typical size is below the
    replica-to-replica scatter for the test loss (measured: up to 0.7 of it at 600 sites) and
    comparable to it for the train loss (measured: up to 1.3), which is ``C_Delta``, built from
    the response directly."""
    problem = _problem(depth=2, init_scale=0.1, steps=40, alpha=0.5, replicas=12, sites=600, cutoff=1e-6)
    teacher = _sparse_teacher(12, 600, seed=5)
    stein = run_sites(problem, teacher, np.random.default_rng(3), backend="numpy")
    exact = run_sites(problem, teacher, np.random.default_rng(3), backend="numpy", response="tangent")
    for name in ("test", "train"):
        paired = getattr(stein, name) - getattr(exact, name)
        sem = paired.std(axis=0, ddof=1) / math.sqrt(12)
        assert np.all(np.abs(paired.mean(axis=0)) <= 3.5 * sem + 1e-15), name
        scatter = getattr(exact, name).std(axis=0, ddof=1)
        assert np.all(np.abs(paired).mean(axis=0) < (1.0 if name == "test" else 2.0) * scatter), name


def test_innovation_representation_reproduces_the_correlations():
    """``B B^T = C_v + sigma^2 1 1^T`` and ``L L^T = C_Delta = R_Delta (C_v + sigma^2) R_Delta^T``.

    The first is checked against ``C_v`` recomputed from the sites' stored ``v`` paths (exact up to
    round-off); the second against ``R_Delta`` built from the exact tangent response ``R_v``
    (``R_Delta = (I - alpha^{-1/2} R_v)^{-1}``), which the Stein solve never forms: they agree to
    round-off (the identity holds for the sampled process whatever the Monte Carlo error). Dropped
    innovations (below ``cutoff`` of the variance, at most T of them) are the only other gap."""
    noise, cutoff = 0.3, 1e-10
    problem = _problem(depth=2, init_scale=0.3, steps=25, alpha=0.7, noise=noise, replicas=1, sites=1200,
                       cutoff=cutoff)
    run = run_sites(problem, _sparse_teacher(1, 1200, density=0.5), np.random.default_rng(4),
                    backend="numpy", response="tangent")
    # re-orthogonalised Gram-Schmidt ("twice is enough") keeps orthonormality to round-off
    assert run.orthogonality_error < 1e-13
    B, Lc, resp = run.projection[0], run.cholesky[0], run.diagnostics["response_v"][0]
    c_tilde = B @ B.T  # C_v + sigma^2 1 1^T
    # exact where a step opened a coordinate; short by the dropped innovation (< cutoff) elsewhere
    np.testing.assert_allclose(np.diag(c_tilde), run.test[0], rtol=26 * cutoff)
    r_delta = np.linalg.inv(np.eye(26) - resp / math.sqrt(0.7))
    c_delta = r_delta @ c_tilde @ r_delta.T
    np.testing.assert_allclose(Lc @ Lc.T, c_delta, atol=1e-12 * np.abs(c_delta).max())
    np.testing.assert_allclose(np.diag(c_delta), run.train[0], rtol=26 * cutoff)
