"""Diagonal linear networks, discrete training: the Monte Carlo DMFT (THEORY.md 4.1) against
something independent: closed forms, the depth-0 solver, the deterministic per-coordinate map, the
implicit-bias fixed point, finite-size simulations; learning-rate schedules; options and errors.
(The site loop's backends: tests/test_diagonal_kernels.py; the implicit bias:
tests/test_implicit_bias.py; gradient flow: tests/test_diagonal_flow.py.)

Tolerances are in Monte Carlo standard errors (SE) where a curve is sampled: the DMFT's SE over
independent replicas, the simulation's over seeds, combined in quadrature. Where a finite-size or
discretisation bias enters, its size is argued next to the tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import dmft
import finite_size
from dmft._implicit_bias import implicit_bias
from dmft.solvers.diagonal import sample_site_teachers

SPARSE = dmft.SparseTeacher(density=0.2, scale=1.0)
DEFAULT = dmft.GaussianData(alpha=0.5, teacher=SPARSE)  # the sparse-recovery problem of the studies


@pytest.mark.parametrize("alpha,noise", [(0.5, 0.0), (2.0, 0.4)])
def test_depth_one_is_linear_regression_at_twice_the_learning_rate(alpha, noise):
    """``beta = a - b`` moves by ``2 eta u``: depth 1 is depth 0 at learning rate ``2 eta``
    (THEORY.md 4.2), whose curve is exact (Marchenko-Pastur quadrature). The Monte Carlo solve
    agrees within 4 SE at every step (the depth-1 site process is linear, so there is no
    self-consistency bias beyond O(1/M))."""
    data = dmft.GaussianData(alpha=alpha, noise=noise)
    training = dmft.GradientDescent(learning_rate=0.1, steps=40)
    sampled = dmft.solve(dmft.DiagonalLinear(depth=1, init_scale=0.4), data, training,
                         sites=16000, replicas=8, seed=1)
    exact = dmft.solve(dmft.Linear(), data, training.replace(learning_rate=0.2))
    for mine, theirs, sem in [(sampled.test_loss, exact.test_loss, sampled.test_loss_sem),
                              (sampled.train_loss, exact.train_loss, sampled.train_loss_sem)]:
        assert np.all(np.abs(mine - theirs) <= 4 * sem + 1e-12), np.max(np.abs(mine - theirs) / sem)


def test_full_batch_without_moment_matching_is_the_plain_estimator():
    """``moment_matching=False`` on the full-batch path (the Stein estimate without the control
    variate; the kernels equal the reference there: test_diagonal_kernels.py): at depth 1 its test
    loss agrees with the exact curve within 4 SE at every step, with error bars more than ten
    times those of the matched solve (measured 40x: the variance reduction moment matching is for).
    (Its train loss carries the plain estimator's bias, measured 4-5 SE here: not asserted.)"""
    data = dmft.GaussianData(alpha=0.5, noise=0.0)
    training = dmft.GradientDescent(learning_rate=0.1, steps=40)
    exact = dmft.solve(dmft.Linear(), data, training.replace(learning_rate=0.2))
    kwargs = dict(sites=16000, replicas=8, seed=1, target_error=math.inf)
    plain = dmft.solve(dmft.DiagonalLinear(1, 0.4), data, training, moment_matching=False, **kwargs)
    matched = dmft.solve(dmft.DiagonalLinear(1, 0.4), data, training, **kwargs)
    assert plain.info["moment_matching"] is False and plain.info["max_rank"] > 0
    assert np.all(np.abs(plain.test_loss - exact.test_loss) <= 4 * plain.test_loss_sem + 1e-12)
    assert np.median(plain.test_loss_sem[1:] / matched.test_loss_sem[1:]) > 10


def test_depth_one_online_sgd_is_the_linear_recursion():
    """Online SGD at depth 1 equals the depth-0 closed-form recursion at learning rate ``2 eta``."""
    data = dmft.GaussianData(alpha=None, noise=0.3)
    training = dmft.OnlineSGD(learning_rate=0.1, steps=60, batch_ratio=0.7)
    sampled = dmft.solve(dmft.DiagonalLinear(depth=1, init_scale=0.4), data, training, sites=16000, seed=2)
    exact = dmft.solve(dmft.Linear(), data, training.replace(learning_rate=0.2))
    assert np.all(np.abs(sampled.test_loss - exact.test_loss) <= 4 * sampled.test_loss_sem + 1e-12)
    np.testing.assert_array_equal(sampled.train_loss, sampled.test_loss)


def _deterministic_map_loss(depth, init_scale, eta, steps, teacher):
    """``E (beta* - F_t)^2`` of the per-coordinate map ``theta <- theta + eta_t grad F (beta* - F)``
    (``eta``: a rate or one per step), by quadrature over ``beta* ~ N(0, scale^2)`` (weight
    ``density``; ``beta* = 0`` stays at ``F = 0``)."""
    # trapezoid over +-7 standard deviations (the lost mass, 3e-12, stays below every tolerance;
    # further out the discrete map itself is unstable: eta |beta*| > 1/2)
    nodes = np.linspace(-7.0, 7.0, 2801)
    weights = np.exp(-0.5 * nodes**2)
    weights /= weights.sum()
    beta_star = teacher.scale * nodes
    a = np.full_like(beta_star, init_scale)
    b = np.full_like(beta_star, init_scale)
    rates = np.broadcast_to(np.asarray(eta, dtype=float), (steps,))
    losses = []
    for t in range(steps + 1):
        v = beta_star - (a**depth - b**depth)
        losses.append(teacher.density * weights @ v**2)
        if t < steps:
            a, b = a + rates[t] * depth * a ** (depth - 1) * v, b - rates[t] * depth * b ** (depth - 1) * v
    return np.array(losses)


@pytest.mark.parametrize("depth,init_scale,eta,steps", [(2, 0.2, 0.05, 80), (3, 0.5, 0.01, 200)])
def test_infinite_data_is_the_deterministic_per_coordinate_map(depth, init_scale, eta, steps):
    """``alpha -> infinity`` (full batch) and ``batch_ratio -> infinity`` (online): ``u = v`` and
    every coordinate follows the deterministic map (THEORY.md 4.2). At ``alpha = 1e8`` the field
    adds relative corrections of order ``alpha^{-1/2} = 1e-4``; the sites' teachers are sampled, so
    the agreement is within 4 SE plus that 1e-4. (The learning rates keep the map stable for every
    ``|beta*|`` within 7 standard deviations of the prior.)"""
    teacher = dmft.SparseTeacher(density=0.3, scale=1.2)
    expected = _deterministic_map_loss(depth, init_scale, eta, steps, teacher)
    for data, training in [
        (dmft.GaussianData(alpha=1e8, teacher=teacher), dmft.GradientDescent(learning_rate=eta, steps=steps)),
        (dmft.GaussianData(alpha=None, teacher=teacher), dmft.OnlineSGD(learning_rate=eta, steps=steps, batch_ratio=1e8)),
    ]:
        model = dmft.DiagonalLinear(depth=depth, init_scale=init_scale)
        result = dmft.solve(model, data, training, sites=16000, seed=3)
        bound = 4 * result.test_loss_sem + 1e-4 * expected
        assert np.all(np.abs(result.test_loss - expected) <= bound), np.max(np.abs(result.test_loss - expected) / bound)


def test_schedules_are_exact():
    """A learning-rate schedule enters only the site update of its step. A constant schedule gives
    the scalar rate's numbers bit for bit (full batch with noise, and online); a two-phase
    schedule (0.05 for 40 steps, then 0.01) with infinite data follows the deterministic map under
    the same schedule within 4 SE plus the ``alpha^{-1/2} = 1e-4`` field correction."""
    model = dmft.DiagonalLinear(2, 0.1)
    for data, rule in [(DATA, dmft.GradientDescent), (dmft.GaussianData(None, 0.1, teacher=SPARSE), dmft.OnlineSGD)]:
        scalar = dmft.solve(model, data, rule(learning_rate=0.05, steps=60), **SMALL)
        constant = dmft.solve(model, data, rule(learning_rate=dmft.schedules.constant(0.05, 60), steps=60), **SMALL)
        np.testing.assert_array_equal(constant.test_loss, scalar.test_loss)
        np.testing.assert_array_equal(constant.train_loss, scalar.train_loss)
    rates = np.concatenate([np.full(40, 0.05), np.full(60, 0.01)])
    teacher = dmft.SparseTeacher(density=0.3, scale=1.2)
    expected = _deterministic_map_loss(2, 0.2, rates, 100, teacher)
    result = dmft.solve(dmft.DiagonalLinear(2, 0.2), dmft.GaussianData(alpha=1e8, teacher=teacher),
                        dmft.GradientDescent(rates, 100), sites=16000, seed=3)
    bound = 4 * result.test_loss_sem + 1e-4 * expected
    assert np.all(np.abs(result.test_loss - expected) <= bound), np.max(np.abs(result.test_loss - expected) / bound)


def test_two_phase_schedule_matches_simulation():
    """A two-phase schedule at finite ``alpha`` (full batch, label noise, rich regime): 0.1 for 20
    steps, then 0.02 for 20, in the discrete DMFT and in ``finite_size.simulate`` (D = 1000, 16
    seeds, the same rates step by step) agree within 4 combined SE at every step (4 SE: over 41
    correlated steps a false alarm at 4 SE has probability below 1e-3; the O(1/D) finite-size
    gap is below the SE at D = 1000 by ``test_dmft_matches_simulation_fast``). The rate change
    shows: the test loss falls faster per step in the first phase."""
    model = dmft.DiagonalLinear(depth=2, init_scale=0.3)
    data = dmft.GaussianData(alpha=0.5, noise=0.3, teacher=dmft.SparseTeacher(density=0.5))
    rates = np.concatenate([np.full(20, 0.1), np.full(20, 0.02)])
    training = dmft.GradientDescent(learning_rate=rates, steps=40)
    theory = dmft.solve(model, data, training, sites=32768, seed=1)
    sim = finite_size.simulate(model, data, training, dim=1000, seeds=16, seed=2)
    for name in ("test_loss", "train_loss"):
        bound = 4 * np.hypot(getattr(sim, name + "_sem"), getattr(theory, name + "_sem"))
        gap = np.abs(getattr(sim, name) - getattr(theory, name))
        assert np.all(gap <= bound), (name, np.max(gap / bound))
    drop = -np.diff(theory.test_loss)
    assert drop[:5].mean() > drop[20:25].mean()


def test_infinite_data_flow_is_a_sigmoid_learned_largest_first():
    """Incremental learning at small init: with ``a b = s^2`` conserved, depth 2 follows
    ``dF/dt = 4 sqrt(F^2 + 4 s^4) (beta* - F)`` (time ``eta t``), whose solution through
    ``F = 2 s^2 sinh(phi)`` is explicit; a coordinate's learning time grows like
    ``log(1/s) / |beta*|``. Checked on the map itself at small ``eta`` (error O(eta))."""
    s, eta = 0.01, 0.001
    for beta_star in [2.0, 1.0, 0.5]:
        a = b = s
        step = 0
        while a * a - b * b < beta_star / 2:
            F = a * a - b * b
            a, b = a + 2 * eta * a * (beta_star - F), b - 2 * eta * b * (beta_star - F)
            step += 1
        # flow: F = 2 s^2 sinh(phi) (so sqrt(F^2 + 4 s^4) = 2 s^2 cosh(phi)), dphi/dt = 4 (beta* - F)
        phi = np.linspace(0.0, math.asinh(beta_star / (4 * s * s)), 200001)
        half_time = np.trapezoid(1 / (4 * (beta_star - 2 * s * s * np.sinh(phi))), phi)
        assert abs(step * eta - half_time) < 0.02 * half_time + 2 * eta
        # learning time ~ log(1/s) / |beta*|: early dphi/dt = 4 beta*, phi_half ~ log(beta* / (2 s^2)),
        # the slow-down near F = beta*/2 adds less than log(2) / (4 beta*)
        leading = math.log(beta_star / (2 * s * s)) / (4 * beta_star)
        assert leading < half_time < leading + math.log(2) / (4 * beta_star)


def test_monte_carlo_bias_shrinks_like_one_over_sites():
    """Curves converge as the sites per replica ``M_r`` grow: the self-consistency makes the
    estimate biased by ``-c / M_r`` (here about 5% at ``M_r = 125``, resolved well beyond the SE
    with 256 replicas). Fitting ``c`` on ``M_r = 125`` and ``4000``, the ``M_r = 500`` curve sits
    where ``1 / M_r`` puts it (within 4 combined SE), and the bias left at the default
    ``M_r = 65536 / 16 = 4096`` is below 0.5% of the loss."""
    data = dmft.GaussianData(alpha=0.5, teacher=SPARSE)
    training = dmft.GradientDescent(learning_rate=0.05, steps=100)
    model = dmft.DiagonalLinear(depth=2, init_scale=0.1)
    runs = {m: dmft.solve(model, data, training, sites=m * r, replicas=r, seed=1, target_error=math.inf)
            for m, r in [(125, 256), (500, 64), (4000, 32)]}
    value = {m: run.test_loss[-1] for m, run in runs.items()}
    sem = {m: run.test_loss_sem[-1] for m, run in runs.items()}
    gap = value[4000] - value[125]
    assert gap > 4 * math.hypot(sem[4000], sem[125])  # the bias is resolved, and negative
    c = gap / (1 / 125 - 1 / 4000)
    predicted = value[4000] - c * (1 / 500 - 1 / 4000)
    assert abs(value[500] - predicted) < 4 * math.hypot(sem[500], sem[4000])
    from dmft.solvers.diagonal import DEFAULT_REPLICAS, DEFAULT_SITES

    assert c / (DEFAULT_SITES // DEFAULT_REPLICAS) < 0.005 * value[4000]


@pytest.mark.parametrize("case", ["full-batch", "online"])
def test_dmft_matches_simulation_fast(case):
    """A fast check against ``finite_size.simulate`` (the slow tests cover depth 1-3, both
    trainings, noise, alpha below and above 1, small and large init at two sizes): at D = 1000
    (full batch) and D = 500 (online; a fresh batch each step is costly to simulate) with 16 seeds
    the simulated curves agree with the DMFT within 4 combined SE at every step."""
    if case == "full-batch":
        model = dmft.DiagonalLinear(depth=2, init_scale=0.3)
        data = dmft.GaussianData(alpha=0.5, noise=0.3, teacher=dmft.SparseTeacher(density=0.5))
        training = dmft.GradientDescent(learning_rate=0.05, steps=30)
    else:
        model = dmft.DiagonalLinear(depth=3, init_scale=0.5)
        data = dmft.GaussianData(alpha=None, noise=0.2)
        training = dmft.OnlineSGD(learning_rate=0.02, steps=30, batch_ratio=0.5)
    theory = dmft.solve(model, data, training, sites=32768, seed=1)
    sim = finite_size.simulate(model, data, training, dim=1000 if case == "full-batch" else 500,
                               seeds=16, seed=2)
    for name in ("test_loss", "train_loss"):
        bound = 4 * np.hypot(getattr(sim, name + "_sem"), getattr(theory, name + "_sem"))
        gap = np.abs(getattr(sim, name) - getattr(theory, name))
        assert np.all(gap <= bound), (name, np.max(gap / bound))


def test_long_time_small_step_limit_is_the_implicit_bias():
    """Gradient descent converges (train loss < 1e-8) to a test loss that differs from the
    gradient-flow implicit bias by O(eta) (``a b`` is not conserved by discrete steps): measured
    2.2e-3 at eta = 0.05 and 4.5e-3 at eta = 0.1 for s = 0.5. The Richardson extrapolation
    ``2 L(eta/2) - L(eta)`` removes it; it equals ``dmft.implicit_bias`` within 4 SE (paired
    replicas) plus 1% (the ``O(1/M_r)`` Monte Carlo bias at ``M_r = 2000``, ~0.75% by the test
    above, and the ``O(eta^2)`` remainder)."""
    data = dmft.GaussianData(alpha=0.5, teacher=SPARSE)
    model = dmft.DiagonalLinear(depth=2, init_scale=0.5)
    finals = []
    for eta in (0.1, 0.05):  # up to time eta * steps = 15
        result = dmft.solve(model, data, dmft.GradientDescent(eta, int(round(15 / eta))), sites=16000, seed=4)
        assert result.train_loss[-1] < 1e-8
        finals.append(result.arrays["test_loss_per_replica"][:, -1])
    extrapolated = 2 * finals[1] - finals[0]
    sem = extrapolated.std(ddof=1) / math.sqrt(extrapolated.size)
    expected = implicit_bias(model, data).test_loss
    assert abs(extrapolated.mean() - expected) < 4 * sem + 0.01 * expected


def test_large_init_is_the_minimum_l2_interpolator():
    """``s = 3`` is lazy: the network is linear regression at learning rate ``4 s^2 eta`` and
    converges (rate ``4 s^2 eta lambda_min = 0.024`` per step, 500 steps) to the minimum-l2
    interpolator, ``rho (1 - alpha) = 0.1``; the finite-``s`` correction (implicit bias
    0.09997) is below the 4 SE tolerance."""
    data = dmft.GaussianData(alpha=0.5, teacher=SPARSE)
    result = dmft.solve(dmft.DiagonalLinear(2, 3.0), data, dmft.GradientDescent(0.004, 500), sites=16000, seed=5)
    assert abs(result.test_loss[-1] - 0.1) < 4 * result.test_loss_sem[-1] + 3e-5
    assert result.train_loss[-1] < 1e-8


# ------------------------------------------------------------------------------------------------
# implicit bias: the fixed point, the convex program, their limits
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# the solver: options, reproducibility, errors
# ------------------------------------------------------------------------------------------------

# Toy sizes for tests of shapes, options and errors: their Monte Carlo error (~2-5 %) is above the
# default accuracy target, which test_monte_carlo_target_sets_the_status checks on its own.
SMALL = dict(sites=2048, replicas=4, target_error=math.inf)
MODEL = dmft.DiagonalLinear(depth=2, init_scale=0.2)
DATA = dmft.GaussianData(alpha=0.5, noise=0.1, teacher=SPARSE)
TRAINING = dmft.GradientDescent(learning_rate=0.05, steps=30)


def test_result_shapes_reproducibility_and_save(tmp_path):
    result = dmft.solve(MODEL, DATA, TRAINING, seed=3, return_kernels=True, **SMALL)
    again = dmft.solve(MODEL, DATA, TRAINING, seed=3, **SMALL)
    other = dmft.solve(MODEL, DATA, TRAINING, seed=4, **SMALL)
    np.testing.assert_array_equal(result.test_loss, again.test_loss)
    assert not np.array_equal(result.test_loss, other.test_loss)
    assert result.test_loss.shape == result.test_loss_sem.shape == (31,)
    assert result.arrays["test_loss_per_replica"].shape == (4, 31)
    assert result.method == "dmft" and result.info["sites"] == 2048 and result.info["replicas"] == 4
    # the initial loss is E beta*^2 + sigma^2 = rho + sigma^2; the stratified teacher's second moment
    # (4 x 512 sites) scatters by 0.0027 (measured over 2000 draws; 0.016 without stratification)
    assert abs(result.test_loss[0] - (0.2 + 0.01)) < 4 * 0.0027
    # exact but for the innovations dropped below the cutoff (1e-6 of C_Delta(t,t), at most 30 steps)
    bound = 30 * 1e-6 * result.train_loss.max()
    np.testing.assert_allclose(np.diag(result.arrays["correlation_v"]) + 0.01, result.test_loss, rtol=0, atol=bound)
    np.testing.assert_allclose(np.diag(result.arrays["correlation_delta"]), result.train_loss, rtol=0, atol=bound)
    loaded = dmft.Result.load(result.save(tmp_path / "diag.npz"))
    np.testing.assert_array_equal(loaded.test_loss_sem, result.test_loss_sem)
    assert loaded.model == MODEL


def test_block_size_and_tracing_do_not_change_the_numbers():
    """The random numbers are drawn in blocks of steps, but a Generator fills arrays from one
    stream, so the block size changes nothing; traced sites (Numba: recorded at block boundaries)
    follow the reference's every-step record at those steps."""
    model = dmft.DiagonalLinear(2, 0.05)
    kwargs = dict(sites=1024, replicas=2, seed=9, trace=[1.5, -0.7], target_error=math.inf)
    coarse = dmft.solve(model, DATA, TRAINING, block=64, **kwargs)
    fine = dmft.solve(model, DATA, TRAINING, block=7, **kwargs)
    reference = dmft.solve(model, DATA, TRAINING, block=7, backend="numpy", **kwargs)
    np.testing.assert_allclose(fine.test_loss, coarse.test_loss, rtol=1e-12)
    np.testing.assert_array_equal(fine.arrays["traced_steps"], [0, 7, 14, 21, 28, 30])
    np.testing.assert_array_equal(reference.arrays["traced_steps"], np.arange(31))
    np.testing.assert_allclose(fine.arrays["traced_beta"], reference.arrays["traced_beta"][..., fine.arrays["traced_steps"]],
                               rtol=0, atol=1e-10)
    assert fine.arrays["traced_beta"].shape == (2, 2, 6)
    with pytest.raises(ValueError, match="trace"):
        dmft.solve(model, DATA, TRAINING, sites=1024, replicas=2, trace=np.ones(100))


def test_studies_run_and_return_data_and_figures():
    """The three studies at toy sizes (their Monte Carlo errors exceed the default target: warned):
    datasets with the documented variables, one figure each. The crossover's lazy end (``s = 5``,
    flow until converged, time ``4 / (s^2 lambda_min) = 0.93``) equals the implicit-bias fixed
    point (the minimum-l2 end, ``rho (1 - alpha) = 0.1``) within 4 SE."""
    import matplotlib

    matplotlib.use("Agg")
    from dmft.studies import diagonal as studies

    with pytest.warns(dmft.AccuracyWarning, match="Monte Carlo error"):
        incremental, figure = studies.incremental_learning(steps=40, sites=1024, dim=200, coordinates=3, replicas=2)
        assert incremental["dmft_beta"].shape[:2] == (2, 3) and figure.axes
        cross, figure = studies.crossover(scales=(0.05, 5.0), time=5.0, sites=2048, dim=100, seeds=2, curve_points=3,
                                          simulation_time=1.0)
        trade, figure = studies.tradeoff(scales=(0.05,), steps=40, sites=1024)
    assert cross["flow_time"].values[0] == 5.0 and cross["flow_time"].values[1] == pytest.approx(0.932, rel=1e-3)
    assert np.all(np.isfinite(cross["dmft_test_loss"])) and np.all(np.isfinite(cross["simulation_test_loss"]))
    assert cross.attrs["minimum_l2"] == pytest.approx(0.1)
    lazy = cross.sel(init_scale=5.0)
    assert abs(float(lazy["dmft_test_loss"]) - implicit_bias(dmft.DiagonalLinear(2, 5.0), DEFAULT).test_loss) < 4 * float(
        lazy["dmft_test_loss_sem"])
    assert trade["final_test_loss"].shape == (1,) and figure.axes
    assert studies.steps_to_reach(np.array([1.0, 0.5, 1e-4]), 1e-3) == 2.0


def test_stratified_teacher_has_the_prior():
    """Stratified replicas are unbiased samples of the prior: the mean over replicas of the
    empirical density and second moment match ``rho`` and ``rho scale^2`` within 4 SE."""
    data = dmft.GaussianData(alpha=0.5, teacher=dmft.SparseTeacher(density=0.3, scale=2.0))
    values = sample_site_teachers(data, 200, 101, np.random.default_rng(0)).reshape(200, 101)
    density = (values != 0).mean(axis=1)
    second = (values**2).mean(axis=1)
    assert abs(density.mean() - 0.3) < 4 * density.std() / math.sqrt(200) + 1e-12
    assert abs(second.mean() - 1.2) < 4 * second.std() / math.sqrt(200)


def test_teacher_sampler_option():
    """A custom prior: Rademacher teachers with infinite data follow the deterministic map of
    ``beta* = +-1`` exactly (no teacher sampling error left)."""
    sampler = lambda rng, size: rng.choice([-1.0, 1.0], size)  # noqa: E731
    result = dmft.solve(dmft.DiagonalLinear(2, 0.2), dmft.GaussianData(alpha=None),
                        dmft.OnlineSGD(learning_rate=0.05, steps=50, batch_ratio=1e12),
                        teacher_sampler=sampler, sites=512, replicas=2)
    gaussian = _deterministic_map_loss(2, 0.2, 0.05, 50, dmft.SparseTeacher(density=1.0, scale=1.0))
    single = []
    a = b = 0.2
    for _ in range(51):
        single.append((1 - (a * a - b * b)) ** 2)
        a, b = a + 0.1 * a * (1 - (a * a - b * b)), b - 0.1 * b * (1 - (a * a - b * b))
    np.testing.assert_allclose(result.test_loss, single, rtol=1e-5)
    assert not np.allclose(gaussian, single)  # the prior matters


def test_divergence_names_the_step():
    """A loss that grows past 1e8 of its start is a divergence: DivergenceError naming the step and
    the learning rate of that step (of a schedule too), not a NumericalError."""
    with pytest.raises(dmft.DivergenceError, match="at step") as error:
        dmft.solve(dmft.DiagonalLinear(3, 1.0), DATA, dmft.GradientDescent(learning_rate=2.0, steps=50), **SMALL)
    assert 0 < error.value.step <= 50 and error.value.learning_rate == 2.0
    assert not isinstance(error.value, dmft.NumericalError)
    rates = np.full(50, 2.0)
    rates[:3] = 0.01
    with pytest.raises(dmft.DivergenceError, match="at step") as error:
        dmft.solve(dmft.DiagonalLinear(3, 1.0), DATA, dmft.GradientDescent(rates, 50), **SMALL)
    assert error.value.step > 3 and error.value.learning_rate == 2.0
    with pytest.raises(dmft.DivergenceError, match="learning_rate"):
        dmft.solve(dmft.DiagonalLinear(3, 1.0), dmft.GaussianData(alpha=None),
                   dmft.OnlineSGD(learning_rate=2.0, steps=50), **SMALL)


def test_monte_carlo_target_sets_the_status():
    """The largest ``test_loss_sem / test_loss`` is checked against ``target_error`` (default 1 %):
    at 1024 sites it is above (status 1, an AccuracyWarning naming the remedy); with the default
    sites it is below (status 0) for the issue-10 configuration over 100 steps."""
    with pytest.warns(dmft.AccuracyWarning, match="Monte Carlo error.*increase `sites`"):
        small = dmft.solve(MODEL, DATA, TRAINING, sites=1024, replicas=4)
    assert small.status == 1 and not small.success and "Monte Carlo error" in small.message
    default = dmft.solve(dmft.DiagonalLinear(2, 0.1), DATA, dmft.GradientDescent(0.05, 100))
    assert default.status == 0 and default.message == "ok"
    assert np.max(default.test_loss_sem / default.test_loss) < 0.01
    assert default.info["orthogonality_error"] < 1e-13 and default.info["rank_capped_at"] is None


def test_bad_input_is_rejected_with_the_parameter_named():
    with pytest.raises(ValueError, match="init_scale"):
        dmft.DiagonalLinear(depth=2, init_scale=0.0)
    with pytest.raises(ValueError, match="density"):
        dmft.SparseTeacher(density=1.5)
    with pytest.raises(ValueError, match="density"):
        dmft.SparseTeacher(density=0.0)
    with pytest.raises(ValueError, match="`sites` too small"):
        dmft.solve(MODEL, DATA, TRAINING, sites=100, replicas=4)
    with pytest.raises(ValueError, match="replicas"):
        dmft.solve(MODEL, DATA, TRAINING, sites=1000, replicas=1)
    with pytest.raises(ValueError, match="backend"):
        dmft.solve(MODEL, DATA, TRAINING, backend="fortran", **SMALL)
    with pytest.raises(ValueError, match="response"):
        dmft.solve(MODEL, DATA, TRAINING, response="guess", **SMALL)
    for cutoff in (1.0, 1e-14):
        with pytest.raises(ValueError, match="cutoff"):
            dmft.solve(MODEL, DATA, TRAINING, cutoff=cutoff, **SMALL)
    with pytest.raises(ValueError, match="teacher_sampler"):
        dmft.solve(MODEL, DATA, TRAINING, teacher_sampler=lambda rng, n: np.zeros(3), **SMALL)
    with pytest.raises(dmft.UnsupportedError, match="isotropic"):
        dmft.solve(MODEL, dmft.GaussianData(alpha=0.5, spectrum=dmft.PowerLaw()), TRAINING, **SMALL)
    with pytest.raises(ValueError, match="return_kernels"):
        dmft.solve(MODEL, dmft.GaussianData(alpha=None), dmft.OnlineSGD(0.05, 10), return_kernels=True, **SMALL)
    with pytest.raises(ValueError, match="target_error"):
        dmft.solve(MODEL, DATA, TRAINING, target_error=0.0, sites=2048, replicas=4)


# ------------------------------------------------------------------------------------------------
# slow: the full comparison grid against simulations, the implicit bias across init scales
# ------------------------------------------------------------------------------------------------

SPARSE_HALF = dmft.SparseTeacher(density=0.5)
SIMULATION_GRID = [
    # name, model, data, training, (small dim, large dim)
    ("d2-gd-a0.5-s0.05-sparse", dmft.DiagonalLinear(2, 0.05), dmft.GaussianData(0.5, 0.0, teacher=SPARSE),
     dmft.GradientDescent(0.05, 100), (1000, 4000)),
    ("d2-gd-a2-s1-noise", dmft.DiagonalLinear(2, 1.0), dmft.GaussianData(2.0, 0.3),
     dmft.GradientDescent(0.02, 60), (1000, 4000)),
    ("d3-gd-a0.5-s0.5-noise", dmft.DiagonalLinear(3, 0.5), dmft.GaussianData(0.5, 0.3, teacher=SPARSE_HALF),
     dmft.GradientDescent(0.05, 80), (1000, 4000)),
    ("d1-gd-a2-noise", dmft.DiagonalLinear(1, 0.3), dmft.GaussianData(2.0, 0.3),
     dmft.GradientDescent(0.1, 60), (1000, 4000)),
    ("d2-sgd-b0.5-s0.05-noise", dmft.DiagonalLinear(2, 0.05), dmft.GaussianData(None, 0.3, teacher=SPARSE),
     dmft.OnlineSGD(0.05, 100, batch_ratio=0.5), (250, 1000)),
    ("d3-sgd-b2-s1", dmft.DiagonalLinear(3, 1.0), dmft.GaussianData(None, 0.0),
     dmft.OnlineSGD(0.02, 60, batch_ratio=2.0), (250, 1000)),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,model,data,training,dims", SIMULATION_GRID, ids=[c[0] for c in SIMULATION_GRID])
def test_dmft_matches_simulation_as_dim_grows(name, model, data, training, dims):
    """Depth 1-3, full batch and online SGD, with and without noise, alpha below and above 1,
    small and large init: at the larger dimension the simulation agrees with the DMFT within 4
    combined SE at every step (simulation: 8 seeds; DMFT: 65536 sites), and the mean gap there is
    no larger than at the smaller dimension (16 seeds) beyond twice its standard error (finite-size
    corrections shrink with D; THEORY.md 4.1 measured +3.5% from D = 1000 to 8000 at small init)."""
    theory = dmft.solve(model, data, training, sites=65536, seed=1, target_error=math.inf)  # compared in SE
    small = finite_size.simulate(model, data, training, dim=dims[0], seeds=16, seed=2)
    large = finite_size.simulate(model, data, training, dim=dims[1], seeds=8, seed=3)
    for curve in ("test_loss", "train_loss"):
        se_theory = getattr(theory, curve + "_sem")
        gap_large = np.abs(getattr(large, curve) - getattr(theory, curve))
        bound = 4 * np.hypot(getattr(large, curve + "_sem"), se_theory)
        assert np.all(gap_large <= bound), (curve, np.max(gap_large / bound))
        gap_small = np.abs(getattr(small, curve) - getattr(theory, curve))
        assert gap_large.mean() <= gap_small.mean() + 2 * np.hypot(getattr(large, curve + "_sem"), se_theory).mean()


@pytest.mark.slow
@pytest.mark.parametrize("init_scale,etas,duration", [(0.05, (0.1, 0.05), 200.0), (0.3, (0.1, 0.05), 60.0),
                                                       (1.0, (0.02, 0.01), 40.0), (3.0, (0.004, 0.002), 4.0)])
def test_long_time_limit_is_the_implicit_bias_across_init_scales(init_scale, etas, duration):
    """As the fast test, for ``init_scale`` from 0.05 (rich, slow incremental learning: time 200)
    to 3 (lazy): the Richardson extrapolation of the converged DMFT in ``eta`` equals the
    implicit-bias fixed point within 4 SE plus 1% (the O(1/M_r) bias at M_r = 8192 is ~0.2%)."""
    data = dmft.GaussianData(alpha=0.5, teacher=SPARSE)
    model = dmft.DiagonalLinear(depth=2, init_scale=init_scale)
    finals = []
    for eta in etas:
        result = dmft.solve(model, data, dmft.GradientDescent(eta, int(round(duration / eta))), sites=65536, seed=6,
                            target_error=math.inf)  # compared in SE
        assert result.train_loss[-1] < 1e-6 * result.train_loss[0]
        finals.append(result.arrays["test_loss_per_replica"][:, -1])
    extrapolated = 2 * finals[1] - finals[0]
    sem = extrapolated.std(ddof=1) / math.sqrt(extrapolated.size)
    expected = implicit_bias(model, data).test_loss
    assert abs(extrapolated.mean() - expected) < 4 * sem + 0.01 * expected, (extrapolated.mean(), sem, expected)
