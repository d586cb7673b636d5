"""Spherical Boltzmann machines: configurations, the large-N Langevin dynamics (finite chain speed
and the equilibrium chain), its spectral learning curves, and the finite-N simulator that judges
them (docs/spherical.md, "Dynamics")."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dmft
import finite_size
from dmft.boltzmann import DynamicsDivergenceError
from dmft.solvers._boltzmann_kernels import integrate_numba, integrate_numpy
from dmft.solvers._boltzmann_spectrum import data_resolvent, learning_curves, stieltjes, top_outlier
from dmft.solvers.boltzmann import trapezoid
from finite_size.boltzmann import equilibrium_multiplier, sample_teacher_data, spectral_curves

INF = math.inf
MODEL = dmft.SphericalBoltzmann()
DATA = dmft.DataCovariance(eigenvalues=(1.5, 0.5))


def equilibrium_condensed(c, K, gamma, eta):
    """THEORY 5 / docs/spherical.md "Equilibrium", one condensed mode at beta = 1:
    ``(s_1, mu, overlap)`` with ``g1 = [t + sqrt(t^2 + 4 b c)]/(2b)``, ``t = b - a_1``."""
    a1, b, cc = eta * c, K * eta, gamma * eta
    t = b - a1
    g1 = (t + math.sqrt(t * t + 4 * b * cc)) / (2 * b)
    overlap = 1 - g1 / a1
    return math.sqrt((1 - g1) * overlap), 1 / g1 + g1 / cc, overlap


# --------------------------------------------------------------------------------------------
# configurations


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: dmft.SphericalBoltzmann(inverse_temperature=-1.0), "inverse_temperature"),
        (lambda: dmft.SphericalBoltzmann(inverse_temperature=0.0), "inverse_temperature"),
        (lambda: dmft.DataCovariance(eigenvalues=(1.5, 0.6)), "eigenvalues"),
        (lambda: dmft.DataCovariance(eigenvalues=(2.5, -0.5)), "eigenvalues"),
        (lambda: dmft.DataCovariance(eigenvalues=()), "eigenvalues"),
        (lambda: dmft.SpikedTeacher(strength=0.8), "strength"),
        (lambda: dmft.SpikedTeacher(samples=0), "samples"),
        (lambda: dmft.Langevin(prior_precision=-1.0), "prior_precision"),
        (lambda: dmft.Langevin(likelihood_weight=0.0), "likelihood_weight"),
        (lambda: dmft.Langevin(chain_speed=0.0), "chain_speed"),
        (lambda: dmft.Langevin(time=-2.0), "time"),
        (lambda: dmft.Langevin(initial_overlaps=(0.9, 0.9)), "initial_overlaps"),
        (lambda: dmft.Langevin(time=5.0, save_at=(1.0, 6.0)), "save_at"),
    ],
)
def test_bad_configuration_names_the_parameter(build, field):
    with pytest.raises((ValueError, TypeError), match=field):
        build()


def test_bad_call_arguments():
    training = dmft.Langevin(time=1.0, initial_overlaps=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="initial_overlaps"):
        dmft.solve(MODEL, DATA, training)
    with pytest.raises(ValueError, match="dim"):
        finite_size.simulate(MODEL, DATA, dmft.Langevin(time=1.0), dim=3)
    with pytest.raises(ValueError, match="curves"):
        dmft.solve(MODEL, DATA, dmft.Langevin(time=1.0), curves="some")
    with pytest.raises(TypeError, match="data"):
        dmft.solve(MODEL, dmft.GaussianData(alpha=1.0), dmft.Langevin(time=1.0))
    with pytest.raises(ValueError, match="spectrum"):
        finite_size.simulate_boltzmann(MODEL, DATA, dmft.Langevin(time=1.0), dim=10, spectrum="some")


def test_teacher_spectrum_is_the_typical_sampled_one():
    """``SpikedTeacher.resolve`` against the covariance of samples drawn from the teacher: the Gram
    matrix fluctuates by ``O(N^{-1/2})`` (0.007 at N = 20000), so 0.03 is four times that."""
    teacher = dmft.SpikedTeacher(strength=3.0, samples=3)
    c, u = sample_teacher_data(teacher, 20_000, 6, np.random.default_rng(0))
    np.testing.assert_allclose(c.sum(axis=1), 3.0, atol=1e-12)
    np.testing.assert_allclose(c.mean(axis=0), teacher.resolve().eigenvalues, atol=0.03)
    np.testing.assert_allclose(np.mean(u[:, 0] ** 2), teacher.teacher_overlap, atol=0.03)
    assert dmft.SpikedTeacher(strength=2.0, samples=2).resolve().eigenvalues == pytest.approx((1.5, 0.5))


# --------------------------------------------------------------------------------------------
# the two-time kernel


def _grid(T, h, window, nonuniform=False):
    t = np.arange(int(round(T / h)) + 1) * h
    if nonuniform:
        t = np.concatenate([t[t < T / 2], T / 2 + np.arange(1, int(round(T / (2 * h / 2))) + 1) * (h / 2)])
    first = np.searchsorted(t, t - window - 1e-12)
    band = (np.arange(t.size) - first).astype(np.int64)
    return t, band, int(band.max())


def test_kernel_matches_numpy_twin_on_a_hard_case():
    """Noise on the couplings, a memory window shorter than the run (truncation and far entries),
    a grid whose step changes, report and spectral rows: the compiled kernel equals its NumPy twin
    to round-off."""
    t, band, B = _grid(6.0, 0.1, 1.5, nonuniform=True)
    c = np.array([1.8, 0.9, 0.3])
    s0 = np.array([0.5, 0.3, 0.1])
    theta = -np.expm1(-0.7 * t / 2) / 0.7
    report = np.array([0, 10, 25, t.size - 1], dtype=np.int64)
    spectral = np.array([0, 25, t.size - 1], dtype=np.int64)
    args = (t, band, B, report, c, s0, theta, 1.3, 0.8, 0.7, 0.3, spectral)
    fast, slow = integrate_numba(*args), integrate_numpy(*args)
    for a, b in zip(fast[:4], slow[:4]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, equal_nan=True)
    assert np.isnan(fast[2][-1, 0])  # beyond the window
    for j, i in enumerate(spectral[1:], start=1):  # the ring copies agree where they are defined
        for u in range(i - band[i], i + 1):
            lags = np.arange(min(band[u], u - (i - band[i])) + 1)
            np.testing.assert_allclose(fast[6][j, u % (B + 1), lags], slow[6][j, u % (B + 1), lags], atol=1e-12)


def _kernel_run(h, T=4.0):
    t, band, B = _grid(T, h, 100.0)
    c = np.array([1.5, 0.5])
    theta = -np.expm1(-t / 2)
    step = int(round(1.0 / h))
    report = np.arange(0, t.size, step, dtype=np.int64)
    s, kappa, Q, R, *_ = integrate_numba(t, band, B, report, c, np.sqrt(c / 2), theta, 1.0, 1.0, 1.0, 0.1, report[:0])
    return np.concatenate([s[report].ravel(), kappa[report], Q.ravel(), R.ravel()])


def test_scheme_is_second_order_and_extrapolation_third():
    """Halving the step divides the error by 4 (second order); after one Richardson extrapolation
    by about 10 (third order and better), against an extrapolated run at h = 1/80."""
    runs = {h: _kernel_run(h) for h in (0.2, 0.1, 0.05, 0.025, 0.0125)}
    reference = runs[0.0125] + (runs[0.0125] - runs[0.025]) / 3
    raw = [np.max(np.abs(runs[h] - reference)) for h in (0.2, 0.1, 0.05)]
    assert 3.5 < raw[0] / raw[1] < 4.5 and 3.5 < raw[1] / raw[2] < 4.5, raw
    extrapolated = [np.max(np.abs(runs[h / 2] + (runs[h / 2] - runs[h]) / 3 - reference)) for h in (0.2, 0.1)]
    assert extrapolated[0] / extrapolated[1] > 7.0, extrapolated


def test_error_estimate_bounds_the_error():
    """The solver's error estimate (and rtol) against a run with a tenfold finer rtol."""
    training = dmft.Langevin(time=8.0, prior_precision=1.0, likelihood_weight=10.0, chain_speed=1.0, save_at=(2.0, 5.0, 8.0))
    coarse = dmft.solve(MODEL, DATA, training, curves="none")
    fine = dmft.solve(MODEL, DATA, training.replace(rtol=1e-6), curves="none")
    assert coarse.success and coarse.info["error_estimate"] <= training.rtol
    error = max(np.max(np.abs(coarse.arrays[k] - fine.arrays[k])) for k in ("s", "Q", "R"))
    assert error <= max(coarse.info["error_estimate"], 1e-7)


def test_entries_beyond_the_memory_window():
    """Beyond the window the bulk has decorrelated: ``Q = sum_a s_a s_a``, ``R = 0``; a run with a
    window covering everything agrees to well within ``rtol``."""
    training = dmft.Langevin(time=40.0, prior_precision=1.5, likelihood_weight=10.0, chain_speed=1.0, save_at=tuple(np.linspace(0, 40, 9)))
    result = dmft.solve(MODEL, DATA, training, curves="none")
    assert result.info["window"] < 40
    full = dmft.solve(MODEL, DATA, training.replace(rtol=1e-4), curves="none", step=result.info["step"])
    from dmft.solvers import boltzmann as solver

    saved = solver.memory_window
    try:
        solver.memory_window = lambda T, *args: T
        everything = dmft.solve(MODEL, DATA, training, curves="none", step=result.info["step"])
    finally:
        solver.memory_window = saved
    np.testing.assert_allclose(full.arrays["Q"], everything.arrays["Q"], atol=training.rtol)
    np.testing.assert_allclose(full.arrays["R"], everything.arrays["R"], atol=training.rtol)


# --------------------------------------------------------------------------------------------
# limits


def test_equilibrium_chain_reaches_the_condensed_equilibrium():
    """``nu = inf`` at long times against the RMT condensed phase (one mode, beta = 1): overlap
    ``s_1 = sqrt(M u_1)``, multiplier and top eigenvalue ``G^{-1}(g1)``, squared overlap of the top
    eigenvector ``1 - g1/a_1``. The dynamics and the RMT formulas are independent derivations;
    the tolerance is the solver's rtol (1e-4) times a margin of 10."""
    gamma, eta = 1.0, 10.0
    training = dmft.Langevin(time=60.0, prior_precision=gamma, likelihood_weight=eta, chain_speed=INF, save_at=(30.0, 60.0))
    result = dmft.solve(MODEL, DATA, training)
    s1, mu, overlap = equilibrium_condensed(1.5, 2, gamma, eta)
    assert result.arrays["s"][0, -1] == pytest.approx(s1, abs=1e-3)
    assert result.arrays["s"][1, -1] == pytest.approx(0.0, abs=1e-12)
    assert result.arrays["multiplier"][-1] == pytest.approx(mu, abs=1e-3)
    assert result.arrays["top_eigenvalue"][-1] == pytest.approx(mu, abs=1e-3)
    assert result.arrays["top_overlap"][-1] == pytest.approx(overlap, abs=1e-3)


def test_equilibrium_chain_paramagnetic_limit():
    """``nu = inf`` with ``c_1 < gamma`` stays paramagnetic: multiplier ``1 + J^2`` (``G(mu) = 1``),
    top eigenvalue the BBP outlier of ``C/gamma``, ``c_1/gamma + J^2 gamma/c_1``, squared overlap
    ``1 - J^2 gamma^2 / c_1^2`` (THEORY 5, docs/spherical.md) once ``theta -> 1/gamma``."""
    gamma, eta = 2.0, 5.0
    J2 = 1 / (gamma * eta)
    training = dmft.Langevin(time=40.0, prior_precision=gamma, likelihood_weight=eta, chain_speed=INF, save_at=(40.0,))
    result = dmft.solve(MODEL, DATA, training)
    c1 = 1.5
    assert np.all(result.arrays["s"] == 0)
    assert result.arrays["multiplier"][-1] == pytest.approx(1 + J2, rel=1e-9)
    assert result.arrays["top_eigenvalue"][-1] == pytest.approx(c1 / gamma + J2 * gamma / c1, abs=1e-4)
    assert result.arrays["top_overlap"][-1] == pytest.approx(1 - J2 * gamma**2 / c1**2, abs=1e-4)


def test_fast_chains_approach_the_equilibrium_chain():
    """The plateau of ``s_1`` moves monotonically towards the ``nu = inf`` value as ``nu`` grows
    (the out-of-equilibrium bias), the gap shrinking roughly like ``1/nu``."""
    plateau = {}
    for nu in (0.5, 1.0, 2.0, INF):
        training = dmft.Langevin(time=40.0, prior_precision=1.0, likelihood_weight=10.0, chain_speed=nu, save_at=(40.0,), rtol=1e-3)
        plateau[nu] = dmft.solve(MODEL, DATA, training, curves="none").arrays["s"][0, -1]
    gaps = [plateau[INF] - plateau[nu] for nu in (0.5, 1.0, 2.0)]
    assert gaps[0] > gaps[1] > gaps[2] > 0
    assert 1.3 < gaps[0] / gaps[1] < 3.0 and 1.3 < gaps[1] / gaps[2] < 3.0, gaps


def test_equilibrium_chain_rejects_the_sticky_phase():
    with pytest.raises(dmft.UnsupportedError, match="sticky"):
        dmft.solve(dmft.SphericalBoltzmann(inverse_temperature=3.0), DATA, dmft.Langevin(time=5.0, prior_precision=1.0, likelihood_weight=2.0, chain_speed=INF))


# --------------------------------------------------------------------------------------------
# the spectral machinery


def test_data_resolvent_matches_woodbury_on_a_finite_matrix():
    """With ``J = 0`` the couplings are ``theta C - sum_k w_k e_k (K/2) x_k x_k^T / N``: the probe
    equations must give the exact resolvent on the data directions (Woodbury), for any ``x_k``."""
    rng = np.random.default_rng(1)
    N, m, K = 400, 7, 2
    c = np.array([1.4, 0.6])
    x = rng.standard_normal((m, N))
    x *= math.sqrt(N) / np.linalg.norm(x, axis=1, keepdims=True)
    t = np.linspace(0, 1.2, m)
    w, e = trapezoid(t), np.exp(-0.5 * (t[-1] - t))
    theta = 0.8
    W = np.diag(np.concatenate([theta * c, np.zeros(N - K)])) - (x.T * (K / 2) * w * e) @ x / N
    s = x[:, :K] / math.sqrt(N)
    Qb = x @ x.T / N - s @ s.T
    for z in (1.7, 2.5):
        exact = np.linalg.inv(z * np.eye(N) - W)[:K, :K]
        probe = data_resolvent(z, 0.0, theta, c, s, e, w, Qb, np.zeros((m, m)))
        # the probe equations drop the data sites' O(1/N) share of the bulk correlations
        np.testing.assert_allclose(probe, exact, atol=5e-3)


def test_top_outlier_of_a_spiked_matrix_is_bbp():
    """Without memory the resolvent is ``g/(1 - g theta c)``: outlier ``theta c_1 + J^2/(theta c_1)``,
    squared overlap ``1 - J^2/(theta c_1)^2`` (BBP), found by the root search to 1e-10."""
    J2, theta, c = 0.09, 1.0, np.array([1.2, 0.5])
    resolvent = lambda z: np.diag(stieltjes(z, J2) / (1 - stieltjes(z, J2) * theta * c))  # noqa: E731
    top, overlaps = top_outlier(resolvent, 0.6, 5.0)
    assert top == pytest.approx(1.2 + J2 / 1.2, abs=1e-10)
    assert overlaps == pytest.approx([1 - J2 / 1.2**2, 0.0], abs=1e-6)


def test_learning_curves_vanish_at_the_teacher():
    """At ``W = W* = omega* u u^T`` (``beta = 1``) both KLs from the teacher vanish: large-N
    formulas of the solver, and the finite-N ones of the simulator on an explicit matrix (to
    ``O(1/N)``)."""
    teacher = dmft.SpikedTeacher(strength=3.0, samples=2)
    omega, m = teacher.strength, teacher.condensed_fraction
    # large N: top eigenvalue omega, (v.e_1)^2 = 1 along the spike when u = e_1 (overlap o = 1)
    values = learning_curves(omega, 1.0, np.array([omega, 0.0]), np.array([1 + m, 1 - m]), 1.0, 0.0, teacher=_AlongData(teacher))
    assert values["forward_kl"] == pytest.approx(0.0, abs=1e-12)
    assert values["reverse_kl"] == pytest.approx(0.0, abs=1e-12)
    N = 2000
    eigenvalues = np.zeros((1, N))
    eigenvalues[0, -1] = omega
    rows = np.zeros((1, 3, N))
    rows[0, 0, -1] = 1.0
    for k in range(1, 3):
        rows[0, k, k - 1] = 1.0
    block = np.diag([omega, 0.0, 0.0])[None]
    curves = spectral_curves(eigenvalues, rows, block, np.array([omega]), np.array([[1 + m, 1 - m]]), np.array([[1.0, 0.0, 0.0]]), 1.0, omega)
    # finite-N corrections: (1/2N) ln(N (mu - omega)) ~ ln(N)/N from the spike's log-gap
    assert abs(curves["forward_kl"][0]) < 2 * math.log(N) / N and abs(curves["reverse_kl"][0]) < 2 * math.log(N) / N


class _AlongData:
    """A teacher whose spike lies along the top data direction (overlap 1), for the formulas."""

    def __init__(self, teacher):
        self.strength, self.condensed_fraction, self.teacher_overlap = teacher.strength, teacher.condensed_fraction, 1.0


def test_equilibrium_multiplier_solves_the_sphere():
    rng = np.random.default_rng(2)
    eigenvalues = rng.standard_normal((3, 300)) * 0.3
    eigenvalues[0, 0] = 2.0  # an outlier: condensed
    for beta in (0.5, 1.0, 3.0):
        mu = equilibrium_multiplier(eigenvalues, beta)
        np.testing.assert_allclose(np.sum(1 / (beta * (mu[:, None] - eigenvalues)), axis=1), 300, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# the simulator


@pytest.mark.parametrize("chain_speed", [1.0, INF])
def test_simulator_strict_array_api_equals_numpy(chain_speed):
    """The CuPy-bound code path, run with the strict array-API namespace, trains the same machines
    (host random numbers) as NumPy, to round-off."""
    training = dmft.Langevin(time=0.3, chain_speed=chain_speed, save_at=(0.0, 0.1, 0.3))
    a = finite_size.simulate_boltzmann(MODEL, dmft.SpikedTeacher(strength=2.5, samples=2), training, dim=24, seeds=2)
    b = finite_size.simulate_boltzmann(MODEL, dmft.SpikedTeacher(strength=2.5, samples=2), training, dim=24, seeds=2, backend="array_api_strict")
    for name in ("s_per_seed", "multiplier", "eigenvalues", "reverse_kl"):
        np.testing.assert_allclose(a.arrays[name], b.arrays[name], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.test_loss, b.test_loss, rtol=1e-10, atol=1e-12)


def test_simulated_couplings_start_stationary():
    """``W(0)`` is the stationary GOE: off-diagonal variance ``J^2/N``, diagonal ``2 J^2/N``, so its
    edge is ``2J`` (Tracy-Widom: low by ``O(N^{-2/3})``, 0.02 at N = 400)."""
    training = dmft.Langevin(time=1.0, prior_precision=2.0, likelihood_weight=0.5, save_at=(0.0,))
    result = finite_size.simulate_boltzmann(MODEL, DATA, training, dim=400, seeds=4)
    assert result.arrays["top_eigenvalue"][0] == pytest.approx(2.0, abs=0.05)


def test_result_round_trip(tmp_path):
    training = dmft.Langevin(time=2.0, chain_speed=1.0, save_at=(0.0, 1.0, 2.0))
    for result in (
        dmft.solve(MODEL, dmft.SpikedTeacher(strength=2.0), training),
        finite_size.simulate(MODEL, DATA, training, dim=20, seeds=2),
    ):
        loaded = dmft.Result.load(result.save(tmp_path / "r.npz"))
        assert loaded.training == training and loaded.model == MODEL
        for name, value in result.arrays.items():
            np.testing.assert_array_equal(loaded.arrays[name], value)
        np.testing.assert_array_equal(loaded.test_loss, result.test_loss)


def test_blow_up_raises_with_the_time():
    """A step far beyond the chain's stability (exponential Euler is stable for the local part,
    not for the memory's): the kernel reports non-finite values, the solver names the time."""
    training = dmft.Langevin(time=400.0, prior_precision=0.05, likelihood_weight=1e4, chain_speed=30.0, save_at=(400.0,))
    with pytest.raises(DynamicsDivergenceError, match="at time .*; lower `step`"):
        dmft.solve(MODEL, DATA, training, step=20.0, curves="none")


def test_dynamics_against_small_simulation():
    """Default-tier check of the whole chain at N = 300 (16 seeds), times 0.5 and 1.5: before the
    overlaps come near 0 their sign is that of the start, so the signed mean is compared (times 1
    and 1.5, after the top eigenvalue has left the bulk); 3.5
    standard errors plus an O(1/N) allowance (2/N relative; 0.01 more for the outlier, whose
    finite-N bias is (K/(gamma N))/(mu - lambda), THEORY 5)."""
    training = dmft.Langevin(time=1.5, prior_precision=1.0, likelihood_weight=10.0, chain_speed=1.0, save_at=(1.0, 1.5))
    theory = dmft.solve(MODEL, DATA, training)
    sim = finite_size.simulate_boltzmann(MODEL, DATA, training, dim=300, seeds=16)
    signed = sim.arrays["s_per_seed"].mean(axis=0)
    sem = sim.arrays["s_per_seed"].std(axis=0, ddof=1) / 4
    from helpers import assert_close_curves

    assert_close_curves(theory.arrays["s"].ravel(), signed.ravel(), sem.ravel(), sems=3.5, allowance=2 / 300, label="s")
    for name in ("multiplier", "top_eigenvalue", "top_overlap"):
        assert_close_curves(theory.arrays[name], sim.arrays[name], sim.arrays[name + "_sem"], sems=3.5, allowance=2 / 300 + 0.01, label=name)


def test_long_time_limit_is_the_equilibrium():
    """The dynamics with an equilibrium chain, run long, against ``dmft.equilibrium`` (random-matrix
    theory, the "sbmeq" helper's independent derivation) for a condensed, a MAP and a teacher
    case: every shared observable within 1e-3 (the solver's rtol is 1e-4; observed 1e-5)."""
    cases = [
        (DATA, dict(prior_precision=1.0, likelihood_weight=10.0)),
        (DATA, dict(prior_precision=0.7, likelihood_weight=INF)),  # MAP: no noise on the couplings
        (dmft.SpikedTeacher(strength=3.0, samples=3), dict(prior_precision=0.8, likelihood_weight=20.0)),
    ]
    for data, parameters in cases:
        training = dmft.Langevin(time=50.0, chain_speed=INF, save_at=(50.0,), **parameters)
        result = dmft.solve(MODEL, data, training)
        equilibrium = dmft.equilibrium(MODEL, data, training)
        assert result.arrays["multiplier"][-1] == pytest.approx(equilibrium.multiplier, abs=1e-3)
        np.testing.assert_allclose(result.arrays["s"][:, -1], equilibrium.data_overlap, atol=1e-3)
        for name in ("top_eigenvalue", "top_overlap", "condensed_fraction"):
            assert result.arrays[name][-1] == pytest.approx(getattr(equilibrium, name), abs=1e-3), name
        assert result.train_loss[-1] == pytest.approx(equilibrium.train_loss, abs=1e-3)
        if isinstance(data, dmft.SpikedTeacher):
            assert result.arrays["reverse_kl"][-1] == pytest.approx(equilibrium.reverse_kl, abs=1e-3)
            assert result.arrays["forward_kl"][-1] == pytest.approx(equilibrium.forward_kl, abs=1e-3)


# --------------------------------------------------------------------------------------------
# slow tier: the dynamics against finite-N Langevin training at two sizes


def _compare_two_sizes(data, training, sizes, seeds, names, allowance):
    """Simulations at two sizes against the DMFT. At the larger size every curve lies within 3.5
    standard errors plus ``allowance`` (O(1/N) biases, argued by the caller: a number, or a
    function of the DMFT result and N); where the smaller size's gap is significant (above 3
    standard errors) it shrinks at least like ``N^{-1/2}``."""
    theory = dmft.solve(MODEL, data, training)
    gaps = {}
    for N in sizes:
        sim = finite_size.simulate_boltzmann(MODEL, data, training, dim=N, seeds=seeds)
        for name in names:
            if name == "s":  # signed overlaps (the chain keeps the sign of its start here)
                value = sim.arrays["s_per_seed"][:, 0].mean(axis=0)
                sem = sim.arrays["s_per_seed"][:, 0].std(axis=0, ddof=1) / math.sqrt(seeds)
                expected = theory.arrays["s"][0]
            elif name == "train_loss":
                value, sem, expected = sim.train_loss, sim.train_loss_sem, theory.train_loss
            else:
                value, sem, expected = sim.arrays[name], sim.arrays[name + "_sem"], theory.arrays[name]
            gaps[name, N] = (np.abs(value - expected), sem)
    small, large = sizes
    for name in names:
        gap_small, sem_small = gaps[name, small]
        gap_large, sem_large = gaps[name, large]
        bias = allowance(theory, name, large) if callable(allowance) else allowance
        assert np.all(gap_large <= 3.5 * sem_large + bias), (name, gap_large, sem_large, bias)
        significant = gap_small > 3 * sem_small
        bound = gap_small * math.sqrt(small / large) + 3 * sem_large
        assert np.all(gap_large[significant] <= bound[significant]), (name, gap_small, gap_large)


@pytest.mark.slow
def test_dynamics_against_simulation_at_two_sizes():
    """``nu = 1``, ``N = 250`` and 1000 (12 seeds), times 2, 4, 6: the overlap, multiplier, top
    eigenvalue and its overlap, and the training NLL. Allowance 4/N: the outliers' negative-phase
    shift ``(K/(gamma N))/(mu - lambda)`` (docs/spherical.md, section 10) is 0.002-0.004 at N = 1000."""
    training = dmft.Langevin(time=6.0, prior_precision=1.0, likelihood_weight=10.0, chain_speed=1.0, save_at=(2.0, 4.0, 6.0))
    _compare_two_sizes(DATA, training, (250, 1000), 12, ("s", "multiplier", "top_eigenvalue", "top_overlap", "train_loss"), 4 / 1000)


@pytest.mark.slow
def test_teacher_dynamics_against_simulation():
    """Teacher-student data (samples drawn from the teacher at each size), ``nu = 0.5``: the KL
    curves and the top eigenvalue. The sampled spectrum fluctuates by ``O(N^{-1/2})`` around the
    typical one the DMFT uses; that enters the seeds' spread, hence the standard errors. Allowance:
    4/N, and for the reverse KL the finite-N weight of the model's outlier on the spike,
    ``(omega*/2) (u.v_1)^2 / (beta N (mu - lambda_1))`` (it vanishes at large N only while
    ``mu - lambda_1 = O(1)``; here twice its DMFT value)."""
    teacher = dmft.SpikedTeacher(strength=3.0, samples=2)
    training = dmft.Langevin(time=4.0, prior_precision=0.5, likelihood_weight=10.0, chain_speed=0.5, save_at=(2.0, 4.0))

    def allowance(theory, name, N):
        if name != "reverse_kl":
            return 4 / N
        gap = np.maximum(theory.arrays["equilibrium_multiplier"] - theory.arrays["top_eigenvalue"], 1 / N)
        weight = teacher.teacher_overlap * theory.arrays["top_overlap"]
        return 4 / N + 2 * (teacher.strength / 2) * weight / (N * gap)

    _compare_two_sizes(teacher, training, (200, 800), 12, ("forward_kl", "reverse_kl", "top_eigenvalue"), allowance)


@pytest.mark.slow
def test_equilibrium_chain_against_simulation():
    """``nu = inf``: the exact equilibrium negative phase at N = 300 (8 seeds) against the
    equilibrium-chain dynamics through the condensation (onset at t = 2 ln 3): the overlap
    ``sqrt(<s_1^2>)``, the multiplier, the top eigenvalue; 3.5 standard errors plus 4/N, and for
    the top eigenvalue of a condensed machine the ``1/(N beta M)`` by which its mode sits below the
    multiplier at finite N (docs/spherical.md, "Equilibrium", section 10)."""
    N = 300
    training = dmft.Langevin(time=6.0, prior_precision=1.0, likelihood_weight=10.0, chain_speed=INF, save_at=(1.0, 3.0, 6.0))
    theory = dmft.solve(MODEL, DATA, training)
    sim = finite_size.simulate_boltzmann(MODEL, DATA, training, dim=N, seeds=8, step=0.1)
    from helpers import assert_close_curves

    condensed = theory.arrays["condensed_fraction"]
    below = np.where(condensed > 0, 1 / (N * np.maximum(condensed, 1e-300)), 0.0)
    for name in ("multiplier", "top_eigenvalue", "top_overlap"):
        bias = 4 / N + (below if name == "top_eigenvalue" else 0.0)
        gap = np.abs(theory.arrays[name] - sim.arrays[name])
        assert np.all(gap <= 3.5 * sim.arrays[name + "_sem"] + bias), (name, gap, sim.arrays[name + "_sem"], bias)
    # s only once condensed: in the paramagnetic phase sqrt(<s_1^2>) is O(N^{-1/2}) at finite N
    assert_close_curves(theory.arrays["s"][0, 1:], sim.arrays["s"][0, 1:], sim.arrays["s_sem"][0, 1:], sems=3.5, allowance=4 / 300, label="s")
