"""finite_size.simulate: gradients, sampling of the training set, schedules, gradient flow, backends,
divergence, bad input, reproducibility.

Independent references: finite differences of the raw-data loss (one step), the moments of real data
(Bartlett sampling), and at depth 0 the exact solution on the sampled training set itself,
``beta(t) = Q phi_t(mu) Q^T sqrt(D) X^T y / P`` with ``Sigma_hat = Q diag(mu) Q^T`` and
``phi_t(mu) = (1 - prod_s (1 - eta_s mu)) / mu`` (gradient descent under any schedule) or
``(1 - exp(-mu t)) / mu`` (gradient flow): exact per sample at finite ``D``, so the comparisons are
to round-off (schedules) or to the integrator's tolerance (flow). Deeper flows are checked against
the small-learning-rate limit of gradient descent (first order in the rate).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import dmft
import finite_size
from dmft._backend import BackendUnavailableError, cupy_usable
from finite_size._backend import namespace
from finite_size.flow import FlowDivergenceError, integrate_flow
from finite_size.networks import apply_update, build_network
from finite_size.problem import full_batch_from_examples, population_drive, sample_full_batch
from finite_size.simulate import sample_problem

# The array-API code path runs on the CPU with the strict namespace: a call that only NumPy accepts
# fails there (finite_size._backend.to_host checks every array that comes back to the host).
BACKENDS = ["numpy", "array_api_strict"]

# Central differences with step 1e-6 on O(1) float64 losses: truncation error ~1e-12 relative,
# round-off ~1e-16 / 1e-6 = 1e-10 absolute on every gradient entry. So: 1e-6 relative (wide margin
# on truncation) plus 1e-9 absolute per unit gradient (ten times the round-off); any wrong factor
# or sign fails by orders of magnitude.
GRADIENT_RTOL = 1e-6
GRADIENT_ATOL = 1e-9

MODELS = [
    (dmft.Linear(), lambda m, dim, width: dim),
    (dmft.DeepLinear(depth=1, gamma0=0.7), lambda m, dim, width: m.richness**2 * width),
    (dmft.DeepLinear(depth=3, gamma0=1.3, width_ratio=1.5), lambda m, dim, width: m.richness**2 * width),
    (dmft.DeepLinear(depth=2, parameterization="ntk", width_ratio=2.0), lambda m, dim, width: m.richness**2 * width),
    (dmft.DeepLinear(depth=3, residual=True, branch_scale=1.7), lambda m, dim, width: m.richness**2 * width),
    (dmft.DiagonalLinear(depth=1, init_scale=0.6), lambda m, dim, width: dim),
    (dmft.DiagonalLinear(depth=3, init_scale=0.8), lambda m, dim, width: dim),
]


def _raw_loss(network, inputs, labels):
    """``(1/2P) sum_mu (f(x_mu) - y_mu)^2`` from the network's predictor."""
    beta = network.beta()[0]
    predictions = inputs[0] @ beta / math.sqrt(inputs.shape[2])
    return 0.5 * np.mean((predictions - labels[0]) ** 2)


@pytest.mark.parametrize("keep_examples", [True, False])
@pytest.mark.parametrize("model,rate_scale", MODELS, ids=lambda v: repr(v) if not callable(v) else "")
def test_step_is_scaled_gradient_of_raw_loss(model, rate_scale, keep_examples):
    """One step from either data representation equals ``-eta * scale * grad`` of the raw loss,
    ``scale = gamma0^2 N`` (deep, THEORY.md 2) or ``D`` (linear and diagonal, sections 3-4)."""
    dim, count = 5, 7
    rng = np.random.default_rng(3)
    inputs = rng.standard_normal((1, count, dim))
    labels = rng.standard_normal((1, count))
    network = build_network(model, dim, 1, np.random.default_rng(4), np)
    if isinstance(model, dmft.Linear):  # start away from beta = 0 so every term is exercised
        network.params[0] += rng.standard_normal((1, dim))
    width = getattr(network, "width", None)
    full_batch = full_batch_from_examples(inputs, labels, keep_examples=keep_examples)

    gradients = []
    for parameter in network.parameters():
        gradient = np.zeros_like(parameter)
        for index in np.ndindex(parameter.shape):
            saved = parameter[index]
            parameter[index] = saved + 1e-6
            upper = _raw_loss(network, inputs, labels)
            parameter[index] = saved - 1e-6
            lower = _raw_loss(network, inputs, labels)
            parameter[index] = saved
            gradient[index] = (upper - lower) / 2e-6
        gradients.append(gradient)

    before = [p.copy() for p in network.parameters()]
    u, train_loss = full_batch.residual_drive(network.beta(), np)
    np.testing.assert_allclose(train_loss[0], 2 * _raw_loss(network, inputs, labels), rtol=1e-12)
    learning_rate = 0.01
    network.step(u, learning_rate)
    for old, new, gradient in zip(before, network.parameters(), gradients):
        expected = -learning_rate * rate_scale(model, dim, width) * gradient
        step_scale = learning_rate * rate_scale(model, dim, width)
        np.testing.assert_allclose(new - old, expected, rtol=GRADIENT_RTOL, atol=GRADIENT_ATOL * step_scale)


def test_bartlett_statistics_have_the_law_of_real_data():
    """The sufficient statistics drawn without examples (P >= D) have the moments of real data:
    ``E Sigma_hat = Lambda``, ``Var Sigma_hat_ij = lambda_i lambda_j (1 + delta_ij) / P``,
    ``E X^T y / P = Lambda beta* / sqrt(D)`` and ``E y^T y / P = beta*^T Lambda beta* / D + sigma^2``.
    With 20000 draws each mean is within 5 standard errors (one-in-a-million per entry)."""
    dim, alpha, noise, draws = 3, 2.0, 0.5, 20000
    eigenvalues = np.array([2.0, 1.0, 0.25])
    beta_star = np.tile(np.array([1.0, -0.5, 2.0]), (draws, 1))
    stats = sample_full_batch(beta_star, eigenvalues, alpha, noise, np.random.default_rng(0))
    count = stats.count
    assert stats.examples is None and count == 6

    def check_mean(samples, expected):
        sem = samples.std(axis=0) / math.sqrt(draws)
        assert np.all(np.abs(samples.mean(axis=0) - expected) <= 5 * sem + 1e-12)

    check_mean(stats.covariance, np.diag(eigenvalues))
    variance = np.outer(eigenvalues, eigenvalues) * (1 + np.eye(dim)) / count
    # the sample variance of a variance estimate has relative error ~ sqrt(2 / draws) ~ 1 %
    np.testing.assert_allclose(stats.covariance.var(axis=0), variance, rtol=0.05)
    check_mean(stats.input_label, eigenvalues * beta_star[0] / math.sqrt(dim))
    check_mean(stats.label_power, beta_star[0] @ (eigenvalues * beta_star[0]) / dim + noise**2)


def test_both_data_representations_give_the_same_law():
    """Curves simulated with P = D - 1 (examples kept) and P = D (Bartlett statistics) are samples
    of nearly the same law: their means differ by less than 4 combined standard errors plus the
    O(1/D) effect of one example."""
    data_kw = dict(noise=0.3)
    model, training, dim = dmft.DeepLinear(depth=1), dmft.GradientDescent(0.2, 15), 60
    curves = [
        finite_size.simulate(model, dmft.GaussianData(alpha=count / dim, **data_kw), training, dim=dim, seeds=48)
        for count in (dim - 1, dim)
    ]
    gap = np.abs(curves[0].test_loss - curves[1].test_loss)
    sem = np.hypot(curves[0].test_loss_sem, curves[1].test_loss_sem)
    assert np.all(gap <= 4 * sem + 2.0 / dim * curves[1].test_loss)


def test_reproducible_and_seeds_independent():
    args = (dmft.DeepLinear(depth=2), dmft.GaussianData(alpha=1.5, noise=0.1), dmft.GradientDescent(0.1, 5))
    first = finite_size.simulate(*args, dim=40, seeds=3, seed=7)
    second = finite_size.simulate(*args, dim=40, seeds=3, seed=7)
    other = finite_size.simulate(*args, dim=40, seeds=3, seed=8)
    np.testing.assert_array_equal(first.arrays["test_loss_per_seed"], second.arrays["test_loss_per_seed"])
    assert not np.array_equal(first.test_loss, other.test_loss)
    per_seed = first.arrays["test_loss_per_seed"]
    assert len({float(v) for v in per_seed[:, -1]}) == 3


def test_initial_loss_matches_initialisation_variance():
    """THEORY.md section 2: initial test loss ``1 + sigma^2 + 1 / (gamma0^2 nu)``; the mean over
    64 seeds at D = 100 is within 4 standard errors."""
    model = dmft.DeepLinear(depth=2, gamma0=0.8, width_ratio=2.0)
    data = dmft.GaussianData(alpha=1.0, noise=0.5)
    result = finite_size.simulate(model, data, dmft.GradientDescent(0.01, 1), dim=100, seeds=64)
    expected = 1 + 0.25 + 1 / (0.8**2 * 2.0)
    assert abs(result.test_loss[0] - expected) <= 4 * result.test_loss_sem[0]


def test_online_sgd_train_loss_is_fresh_batch_loss():
    """A fresh batch's loss is an unbiased estimate of the test loss: their time-averaged gap is
    within 4 standard errors."""
    result = finite_size.simulate(
        dmft.DeepLinear(depth=1), dmft.GaussianData(alpha=None, noise=0.2),
        dmft.OnlineSGD(0.1, 40, batch_ratio=0.5), dim=80, seeds=16,
    )
    difference = result.arrays["train_loss_per_seed"] - result.arrays["test_loss_per_seed"]
    per_seed_mean = difference.mean(axis=1)
    assert abs(per_seed_mean.mean()) <= 4 * per_seed_mean.std(ddof=1) / math.sqrt(len(per_seed_mean))


def test_divergence_names_step_and_learning_rate():
    with pytest.raises(dmft.DivergenceError, match=r"at step \d+; lower `learning_rate` \(got 50\)") as info:
        finite_size.simulate(dmft.Linear(), dmft.GaussianData(alpha=2.0), dmft.GradientDescent(50.0, 400), dim=30, seeds=2)
    assert info.value.step > 0


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(dim=0), "`dim` must be >= 1"),
        (dict(dim=10, seeds=0), "`seeds` must be >= 1"),
        (dict(dim=10, backend="jax"), "`backend` must be one of"),
        (dict(dim=10, backend="numba"), "'numba' names the compiled kernels"),
        (dict(dim=10, threads=0), "`threads` must be >= 1"),
        (dict(dim=10, snapshot_every=0), "`snapshot_every` must be >= 1"),
        (dict(dim=10, seed=-1), "`seed` must be >= 0"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        finite_size.simulate(dmft.Linear(), dmft.GaussianData(), dmft.GradientDescent(), **kwargs)


def test_spectrum_must_split_dim():
    data = dmft.GaussianData(alpha=1.0, spectrum=dmft.PowerLaw(a=1.5, b=0.5, modes=7))
    with pytest.raises(ValueError, match="multiple of the spectrum's number of modes"):
        finite_size.simulate(dmft.Linear(), data, dmft.GradientDescent(), dim=10)


def test_infinite_depth_cannot_be_simulated():
    with pytest.raises(ValueError, match="finite `depth`"):
        finite_size.simulate(
            dmft.DeepLinear(depth=math.inf, residual=True), dmft.GaussianData(), dmft.GradientDescent(), dim=10
        )


@pytest.mark.skipif(not cupy_usable(), reason="CuPy with a usable CUDA device is not available")
def test_cupy_matches_numpy():
    """Same seed, same problem and initial weights: the CuPy path reproduces NumPy to round-off."""
    args = (dmft.DeepLinear(depth=3), dmft.GaussianData(alpha=2.0, noise=0.2), dmft.GradientDescent(0.1, 20))
    on_cpu = finite_size.simulate(*args, dim=64, seeds=4, backend="numpy")
    on_gpu = finite_size.simulate(*args, dim=64, seeds=4, backend="cupy")
    np.testing.assert_allclose(on_gpu.test_loss, on_cpu.test_loss, rtol=1e-10)
    np.testing.assert_allclose(on_gpu.train_loss, on_cpu.train_loss, rtol=1e-10)
    flow = dmft.GradientFlow(5.0, save_at=(1.0, 5.0))
    on_cpu = finite_size.simulate(args[0], args[1], flow, dim=64, seeds=4, backend="numpy")
    on_gpu = finite_size.simulate(args[0], args[1], flow, dim=64, seeds=4, backend="cupy")
    np.testing.assert_allclose(on_gpu.test_loss, on_cpu.test_loss, rtol=1e-9)


@pytest.mark.skipif(cupy_usable(), reason="a usable GPU is present")
def test_cupy_without_a_gpu_is_a_clear_error():
    with pytest.raises(BackendUnavailableError, match="backend='cupy'"):
        finite_size.simulate(dmft.Linear(), dmft.GaussianData(), dmft.GradientDescent(0.1, 2), dim=8, backend="cupy")


def test_add_outer_kernel_matches_reference():
    """The BLAS rank-one update equals the plain broadcast formula (to round-off)."""
    from finite_size._backend import add_outer

    rng = np.random.default_rng(0)
    matrices = rng.standard_normal((3, 4, 5))
    left, right = rng.standard_normal((3, 4)), rng.standard_normal((3, 5))
    expected = matrices + 0.3 * left[:, :, None] * right[:, None, :]
    add_outer(matrices, 0.3, left, right)
    np.testing.assert_allclose(matrices, expected, rtol=1e-14, atol=1e-14)


def test_numpy_integers_are_stored_as_python_integers(tmp_path):
    """Configurations built from numpy arrays (np.arange) save and load: sizes become Python ints."""
    model = dmft.DeepLinear(depth=np.int64(2))
    training = dmft.GradientDescent(0.1, np.int64(3))
    assert type(model.depth) is int and type(training.steps) is int
    result = finite_size.simulate(model, dmft.GaussianData(alpha=1.0), training, dim=8, seeds=2, seed=np.int64(1))
    loaded = dmft.Result.load(result.save(tmp_path / "r.npz"))
    assert loaded.model == model and loaded.info["seed"] == 1


# --------------------------------------------------------------------------------------------------
# depth 0 on the sampled training set: the exact solution per sample


def _sampled_statistics(problem):
    """``(Sigma_hat, X^T y / P, y^T y / P)`` of the training set a simulation trained on."""
    full_batch = problem.full_batch
    if full_batch.examples is None:
        return full_batch.covariance, full_batch.input_label, full_batch.label_power
    inputs, labels = full_batch.examples
    count = full_batch.count
    covariance = np.matmul(inputs.transpose(0, 2, 1), inputs) / count
    return covariance, np.matmul(labels[:, None, :], inputs)[:, 0, :] / count, np.mean(labels**2, axis=1)


def _exact_depth0(problem, noise, *, rates=None, times=None):
    """Per-seed test and train losses ``(seeds, n)`` of depth-0 gradient descent with the rates
    ``rates`` (at every step), or of its gradient flow at ``times``, on the sampled data."""
    covariance, input_label, label_power = _sampled_statistics(problem)
    dim = covariance.shape[-1]
    mu, basis = np.linalg.eigh(covariance)
    target = np.einsum("sji,sj->si", basis, math.sqrt(dim) * input_label)  # Q^T sqrt(D) X^T y / P
    null = mu < 1e-12  # numerically zero eigenvalues (P < D): phi = sum of rates, resp. t
    safe = np.where(null, 1.0, mu)[..., None]
    if times is not None:
        times = np.asarray(times)
        phi = np.where(null[..., None], times, -np.expm1(-mu[..., None] * times) / safe)
    else:
        product = np.cumprod(1.0 - rates * mu[..., None], axis=-1)
        product = np.concatenate([np.ones(mu.shape + (1,)), product], axis=-1)
        elapsed = np.concatenate([[0.0], np.cumsum(rates)])
        phi = np.where(null[..., None], elapsed, (1.0 - product) / safe)
    beta = np.einsum("sij,sjt->sti", basis, phi * target[..., None])  # (seeds, n, D)
    residual = beta - problem.teacher[:, None, :]
    test = np.sum(problem.eigenvalues * residual**2, axis=-1) / dim + noise**2
    covariance_beta = np.einsum("sij,stj->sti", covariance, beta)
    train = (
        label_power[:, None]
        - 2.0 * np.sum(beta * input_label[:, None, :], axis=-1) / math.sqrt(dim)
        + np.sum(beta * covariance_beta, axis=-1) / dim
    )
    return test, train


# Round-off: the exact solution sums O(D) terms of size O(1) per step; ~1e-13 relative after a few
# hundred steps at D <= 60 (observed <= 1e-14). The train loss of an interpolating fit (alpha < 1)
# falls to round-off (~1e-15 absolute, from O(1) terms that cancel): an absolute floor of 1e-12.
ROUND_OFF_RTOL = 1e-10
ROUND_OFF_ATOL = 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_two_phase_schedule_is_exact_at_depth_0(alpha, backend):
    """A two-phase schedule (fast, then ten times slower) follows ``prod_s (1 - eta_s mu)`` on the
    eigenvalues of the sampled data exactly (the DMFT of a schedule must match its average)."""
    dim, seeds = 40, 3
    rates = np.concatenate([np.full(30, 0.3), np.full(50, 0.03)])  # 0.3 < 2 / (1 + alpha^-1/2)^2 = 0.34
    data = dmft.GaussianData(alpha=alpha, noise=0.3)
    training = dmft.GradientDescent(learning_rate=rates, steps=rates.size)
    result = finite_size.simulate(dmft.Linear(), data, training, dim=dim, seeds=seeds, seed=5, backend=backend)
    test, train = _exact_depth0(sample_problem(data, training, dim, seeds, 5), 0.3, rates=rates)
    np.testing.assert_allclose(result.arrays["test_loss_per_seed"], test, rtol=ROUND_OFF_RTOL)
    np.testing.assert_allclose(result.arrays["train_loss_per_seed"], train, rtol=ROUND_OFF_RTOL, atol=ROUND_OFF_ATOL)


SCHEDULE_MODELS = [
    dmft.Linear(),
    dmft.DeepLinear(depth=2, gamma0=0.8),
    dmft.DeepLinear(depth=3, residual=True, branch_scale=1.5),
    dmft.DiagonalLinear(depth=2, init_scale=0.4),
]


@pytest.mark.parametrize("model", SCHEDULE_MODELS, ids=repr)
@pytest.mark.parametrize(
    "data,rule",
    [(dmft.GaussianData(alpha=1.5, noise=0.2), dmft.GradientDescent), (dmft.GaussianData(alpha=None, noise=0.2), dmft.OnlineSGD)],
    ids=["full batch", "online"],
)
def test_constant_schedule_is_the_scalar_run_bit_for_bit(model, data, rule):
    scalar = finite_size.simulate(model, data, rule(0.07, 12), dim=24, seeds=2, seed=3)
    schedule = finite_size.simulate(model, data, rule(dmft.schedules.constant(0.07, 12), 12), dim=24, seeds=2, seed=3)
    np.testing.assert_array_equal(schedule.arrays["test_loss_per_seed"], scalar.arrays["test_loss_per_seed"])
    np.testing.assert_array_equal(schedule.arrays["train_loss_per_seed"], scalar.arrays["train_loss_per_seed"])


def test_schedule_divergence_names_the_rate_of_the_step():
    """Stable at 0.3 for 20 steps, then 5.0 (far above 2 / lambda_max): the error names a step after
    the switch and the rate 5.0, not the first rate."""
    rates = np.concatenate([np.full(20, 0.3), np.full(200, 5.0)])
    training = dmft.GradientDescent(learning_rate=rates, steps=rates.size)
    with pytest.raises(dmft.DivergenceError, match=r"schedule.*lower `learning_rate` \(got 5\)") as info:
        finite_size.simulate(dmft.Linear(), dmft.GaussianData(alpha=2.0), training, dim=30, seeds=2)
    assert info.value.step > 20 and info.value.learning_rate == 5.0


# --------------------------------------------------------------------------------------------------
# gradient flow


@pytest.mark.parametrize(
    "rtol,backend", [(1e-3, "numpy"), (1e-6, "numpy"), (1e-3, "array_api_strict")]
)  # the strict path is the same code, ten times slower: once
@pytest.mark.parametrize("alpha", [0.5, 2.0, None])
def test_depth0_flow_is_the_exact_exponential(alpha, rtol, backend):
    """Full batch: ``phi_t(mu) = (1 - exp(-mu t)) / mu`` on the sampled data; population flow:
    ``beta = (1 - exp(-lambda t)) beta*``. The error control is local (per step, relative to the
    losses' own size); the flow contracts, so the global error stays within a small multiple of
    ``rtol`` (observed 0.2-2.8 rtol up to t = 1e3): 10 rtol. The train loss of an interpolating fit
    (alpha = 0.5) falls to round-off: the absolute floor of the exact solution's cancellation."""
    save_at = np.concatenate([[0.0], np.geomspace(0.01, 100.0, 25)])
    result = _check_depth0_flow(alpha, 0.3, save_at, rtol, dim=40, backend=backend)
    np.testing.assert_array_equal(result.time, save_at)
    assert result.info["accepted_steps"] > 0 and result.info["flow_method"] == "Bogacki-Shampine 3(2)"


def _check_depth0_flow(alpha, noise, save_at, rtol, *, dim, backend="numpy", seeds=2, seed=2):
    """Simulate the depth-0 flow and compare it with the exact one on the sampled data (population:
    ``beta = (1 - exp(-lambda t)) beta*``) to 10 rtol; returns the simulation."""
    data = dmft.GaussianData(alpha=alpha, noise=noise)
    training = dmft.GradientFlow(time=float(save_at[-1]), save_at=save_at, rtol=rtol)
    result = finite_size.simulate(dmft.Linear(), data, training, dim=dim, seeds=seeds, seed=seed, backend=backend)
    problem = sample_problem(data, training, dim, seeds, seed)
    if alpha is None:
        decay = np.exp(-np.outer(problem.eigenvalues, save_at))  # (D, n)
        test = np.einsum("j,sj,jt->st", problem.eigenvalues, problem.teacher**2, decay**2) / dim + noise**2
        train = test
    else:
        test, train = _exact_depth0(problem, noise, times=save_at)
    np.testing.assert_allclose(result.arrays["test_loss_per_seed"], test, rtol=10 * rtol)
    np.testing.assert_allclose(result.arrays["train_loss_per_seed"], train, rtol=10 * rtol, atol=ROUND_OFF_ATOL)
    return result


def _population_gradient_descent(model, data, dim, seeds, seed, rate, steps):
    """Per-seed test loss ``(seeds, steps + 1)`` of gradient descent on the population loss, written
    out with the network's own update (the discrete twin of the population flow)."""
    flow = dmft.GradientFlow(time=1.0)
    problem = sample_problem(data, flow, dim, seeds, seed)
    network = build_network(model, dim, seeds, problem.weight_rng, np)
    losses = []
    for step in range(steps + 1):
        beta, cache = network.evaluate()
        u, loss = population_drive(beta, problem.teacher, problem.eigenvalues, data.noise**2, np)
        losses.append(loss)
        apply_update(network.parameters(), network.direction(u, cache), rate)
    return np.stack(losses, axis=1)


FLOW_MODELS = [
    dmft.DeepLinear(depth=2, gamma0=1.0),
    dmft.DeepLinear(depth=3, residual=True),
    dmft.DiagonalLinear(depth=2, init_scale=0.3),
]


@pytest.mark.parametrize("model", FLOW_MODELS, ids=repr)
@pytest.mark.parametrize("alpha", [1.5, None])
def test_gradient_descent_tends_to_the_flow_at_first_order(model, alpha):
    """Gradient descent at ``eta`` is Euler's method for the flow: its gap to the flow at the same
    time ``tau = eta t`` is ``c1 eta + c2 eta^2``, so halving ``eta`` halves the gap up to a relative
    ``O(eta)``: ratios 1.98-2.04 observed at eta = 0.02 / 0.01 (band 2 +- 0.25; a wrong flow gives
    a ratio near 1, a flow equal to GD's own second-order error near 4). The flow runs at
    rtol = 1e-6: its error (a few 1e-6 of the loss) moves the ratio by < 1 % of the gaps (~1e-3)."""
    dim, seeds, horizon = 40, 2, 4.0
    data = dmft.GaussianData(alpha=alpha, noise=0.2)
    save_at = tuple(np.linspace(0.0, horizon, 9))
    flow = finite_size.simulate(model, data, dmft.GradientFlow(horizon, save_at=save_at, rtol=1e-6), dim=dim, seeds=seeds)
    gaps = []
    for rate in (0.02, 0.01):
        steps = int(round(horizon / rate))
        if alpha is None:
            per_seed = _population_gradient_descent(model, data, dim, seeds, 0, rate, steps)
        else:
            discrete = finite_size.simulate(model, data, dmft.GradientDescent(rate, steps), dim=dim, seeds=seeds)
            per_seed = discrete.arrays["test_loss_per_seed"]
        index = np.round(np.asarray(save_at) / rate).astype(int)
        gaps.append(np.max(np.abs(per_seed[:, index] - flow.arrays["test_loss_per_seed"])))
    assert abs(gaps[0] / gaps[1] - 2.0) < 0.25, gaps


@pytest.mark.parametrize("model", [dmft.DeepLinear(depth=3, residual=True), dmft.DiagonalLinear(depth=2, init_scale=0.3)], ids=repr)
def test_a_slow_schedule_follows_the_flow_at_its_clock(model):
    """Gradient descent under a schedule is Euler's method with step ``eta_t`` for the flow, at flow
    time ``sum_{t' < t} eta_t'``: splitting every step into two of half the rate halves the gap to
    the flow (first order: observed 2.02 and 1.97; band 2 +- 0.3). A wrong clock (the step index, or the
    rate of the wrong step) leaves a gap that does not shrink."""
    dim, seeds = 40, 2
    data = dmft.GaussianData(alpha=1.5, noise=0.2)
    rates = dmft.schedules.warmup_cosine(0.04, steps=150, warmup=30, final=0.01)
    gaps = []
    for split in (1, 2):
        fine = np.repeat(rates / split, split)
        clock = np.concatenate([[0.0], np.cumsum(fine)])
        discrete = finite_size.simulate(model, data, dmft.GradientDescent(fine, fine.size), dim=dim, seeds=seeds)
        if split == 1:
            save_at = tuple(clock[::15])
            flow = finite_size.simulate(
                model, data, dmft.GradientFlow(float(clock[-1]), save_at=save_at, rtol=1e-6), dim=dim, seeds=seeds
            )
        index = np.arange(0, fine.size + 1, 15 * split)
        gaps.append(np.max(np.abs(discrete.arrays["test_loss_per_seed"][:, index] - flow.arrays["test_loss_per_seed"])))
    assert abs(gaps[0] / gaps[1] - 2.0) < 0.3, gaps


def test_flow_reports_its_own_steps_without_save_at():
    training = dmft.GradientFlow(time=20.0)
    result = finite_size.simulate(dmft.DeepLinear(depth=2), dmft.GaussianData(alpha=2.0), training, dim=20, seeds=2)
    assert result.time[0] == 0.0 and result.time[-1] == 20.0 and np.all(np.diff(result.time) > 0)
    assert len(result.time) == result.info["accepted_steps"] + 1
    assert result.test_loss.shape == result.time.shape == result.test_loss_sem.shape


def test_flow_save_and_load(tmp_path):
    training = dmft.GradientFlow(time=5.0, save_at=(0.5, 1.0, 5.0))
    result = finite_size.simulate(dmft.Linear(), dmft.GaussianData(alpha=2.0), training, dim=20, seeds=2)
    loaded = dmft.Result.load(result.save(tmp_path / "flow.npz"))
    np.testing.assert_array_equal(loaded.time, [0.5, 1.0, 5.0])
    np.testing.assert_array_equal(loaded.test_loss, result.test_loss)
    assert loaded.training == training and loaded.info["accepted_steps"] == result.info["accepted_steps"]


def test_flow_blow_up_is_reported_with_the_time():
    """``d beta / dt = 1 + beta^2`` from 0 is ``tan t``: it leaves every bound at ``t = pi / 2``. The
    integrator follows it there (shrinking steps) and stops with the time reached."""
    xp = namespace("numpy")
    network = build_network(dmft.Linear(), 1, 1, np.random.default_rng(0), xp)
    riccati = lambda beta: (1.0 + beta**2, beta[:, 0] ** 2)  # noqa: E731
    with pytest.raises(FlowDivergenceError, match="flow time 1.57") as info:
        integrate_flow(
            network, riccati, lambda change: change[:, 0] ** 2, dmft.GradientFlow(time=3.0),
            eigenvalues=xp.ones(1), beta_star=xp.ones((1, 1)), noise_power=0.0, xp=xp,
        )
    assert isinstance(info.value, dmft.DivergenceError) and abs(info.value.time - math.pi / 2) < 1e-3


def test_flow_step_size_collapse_is_an_error():
    """A drive that turns NaN at ``beta = 0.5`` (``t = 0.5``): every step across is rejected until
    the step size collapses, which is reported with the time reached."""
    xp = namespace("numpy")
    network = build_network(dmft.Linear(), 1, 1, np.random.default_rng(0), xp)
    broken = lambda beta: (xp.where(beta < 0.5, 1.0, xp.nan), beta[:, 0] ** 2)  # noqa: E731
    with pytest.raises(FlowDivergenceError, match="step size collapsed") as info:
        integrate_flow(
            network, broken, lambda change: change[:, 0] ** 2, dmft.GradientFlow(time=3.0),
            eigenvalues=xp.ones(1), beta_star=xp.ones((1, 1)), noise_power=0.0, xp=xp,
        )
    assert abs(info.value.time - 0.5) < 1e-6


@pytest.mark.parametrize(
    "kwargs,message",
    [(dict(snapshot_every=2), "`snapshot_every` counts steps"), (dict(record_hidden=True), "`record_hidden` is for discrete")],
)
def test_flow_rejects_step_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        finite_size.simulate(dmft.DeepLinear(depth=2), dmft.GaussianData(), dmft.GradientFlow(1.0), dim=8, **kwargs)


# --------------------------------------------------------------------------------------------------
# the array-API path against NumPy


STRICT_CASES = [
    (dmft.GaussianData(alpha=2.0, noise=0.1), dmft.GradientDescent(0.1, 4)),
    (dmft.GaussianData(alpha=0.5, noise=0.1), dmft.GradientDescent(0.1, 4)),
    (dmft.GaussianData(alpha=None, noise=0.1), dmft.OnlineSGD(0.1, 4, batch_ratio=0.5)),
    (dmft.GaussianData(alpha=2.0, noise=0.1), dmft.GradientFlow(2.0, save_at=(0.5, 2.0))),
    (dmft.GaussianData(alpha=None, noise=0.1), dmft.GradientFlow(2.0, save_at=(0.5, 2.0))),
]


@pytest.mark.parametrize("model", SCHEDULE_MODELS, ids=repr)
@pytest.mark.parametrize("data,training", STRICT_CASES, ids=["gd-bartlett", "gd-examples", "sgd", "flow", "population-flow"])
def test_strict_array_api_path_matches_numpy(model, data, training):
    """The strict namespace runs the code CuPy runs (the broadcast rank-one update instead of BLAS
    dger): the same numbers to round-off. Discrete: 1e-12 relative over a few steps. Flow: the step
    sizes depend continuously on the error estimate, so round-off moves the trajectory by round-off
    times the sensitivity to the step (observed <= 3e-12): 1e-10."""
    options = dict(dim=16, seeds=2, seed=4)
    if isinstance(model, dmft.DeepLinear) and not isinstance(training, dmft.GradientFlow):
        options["record_hidden"] = True
    reference = finite_size.simulate(model, data, training, **options)
    strict = finite_size.simulate(model, data, training, backend="array_api_strict", **options)
    rtol = 1e-10 if isinstance(training, dmft.GradientFlow) else 1e-12
    for name in ("test_loss_per_seed", "train_loss_per_seed", "hidden_correlation"):
        if name in reference.arrays:
            np.testing.assert_allclose(strict.arrays[name], reference.arrays[name], rtol=rtol, atol=1e-14)


# --------------------------------------------------------------------------------------------------
# bad input a new user hits


@pytest.mark.parametrize(
    "data,training,message",
    [
        (dmft.GaussianData(alpha=0.01), dmft.GradientDescent(0.1, 5), r"`alpha` \* `dim` = 0.01 \* 20 .* the training set would be empty"),
        (dmft.GaussianData(alpha=0.01), dmft.GradientFlow(1.0), "the training set would be empty"),
        (dmft.GaussianData(alpha=None), dmft.OnlineSGD(0.1, 5, batch_ratio=0.01), r"`batch_ratio` .* the batch would be empty"),
    ],
)
def test_empty_data_set_is_a_clear_error(data, training, message):
    with pytest.raises(ValueError, match=message):
        finite_size.simulate(dmft.Linear(), data, training, dim=20)


def test_memory_is_estimated_before_allocating():
    """D = 10^5, 64 seeds of a depth-3 network: ~15 TB of weights; refused at once, naming the
    largest part and what to lower. 10^10 steps: the loss curves alone are too large."""
    with pytest.raises(MemoryError, match=r"needs about .* GiB \(weights .*\).*seed.* the weights: lower `seeds` \(64\) or `dim`"):
        finite_size.simulate(dmft.DeepLinear(depth=3), dmft.GaussianData(), dmft.GradientDescent(0.1, 5), dim=100_000, seeds=64)
    with pytest.raises(MemoryError, match=r"the loss curves: lower `steps` \(10000000000\)"):
        finite_size.simulate(dmft.Linear(), dmft.GaussianData(), dmft.GradientDescent(0.1, 10**10), dim=8)


@pytest.mark.parametrize(
    "arguments,message",
    [
        ((dmft.GaussianData(), dmft.Linear(), dmft.GradientDescent()), r"`model` must be .*got GaussianData \(the arguments are \(model, data, training\)"),
        ((dmft.Linear(), dmft.GradientDescent(), dmft.GaussianData()), r"`data` must be dmft.GaussianData, got GradientDescent \(the arguments"),
        ((dmft.Linear(), dmft.GaussianData(), dmft.GradientDescent), r"`training` must be an instance, got the class GradientDescent"),
        ((dmft.Linear(), None, dmft.GradientDescent()), r"`data` must be dmft.GaussianData, got NoneType"),
    ],
)
def test_configuration_objects_are_checked_in_order(arguments, message):
    with pytest.raises(TypeError, match=message):
        finite_size.simulate(*arguments, dim=8)


def test_threads_are_limited_during_the_run_and_restored():
    from threadpoolctl import threadpool_info

    before = [pool["num_threads"] for pool in threadpool_info()]
    result = finite_size.simulate(dmft.DeepLinear(depth=2), dmft.GaussianData(), dmft.GradientDescent(0.1, 2), dim=16, seeds=2, threads=1)
    assert result.info["threads"] == 1
    assert [pool["num_threads"] for pool in threadpool_info()] == before


def test_progress_bar_runs_for_steps_and_flow(capsys):
    finite_size.simulate(dmft.Linear(), dmft.GaussianData(), dmft.GradientDescent(0.1, 3), dim=8, seeds=2, progress=True)
    finite_size.simulate(dmft.Linear(), dmft.GaussianData(), dmft.GradientFlow(2.0), dim=8, seeds=2, progress=True)
    error = capsys.readouterr().err
    assert "simulate" in error and "gradient flow" in error


# --------------------------------------------------------------------------------------------------
# slow tier: long flows


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.5, 2.0, None])
def test_depth0_flow_is_exact_up_to_time_ten_thousand(alpha):
    """As the default-tier check, at ``D = 200`` and flow times up to 1e4 (stiff: ~1.2e4 steps at
    alpha = 2, where lambda_max = 2.9), rtol 1e-6: error within 10 rtol."""
    _check_depth0_flow(alpha, 0.5, np.geomspace(0.1, 1e4, 13), 1e-6, dim=200, seed=9)


@pytest.mark.slow
@pytest.mark.parametrize("model", [dmft.DeepLinear(depth=2), dmft.DeepLinear(depth=3, residual=True)], ids=repr)
def test_deep_flow_reaches_the_least_squares_solution(model):
    """Full batch with alpha = 2 > 1: the global minimum of the train loss is the least-squares
    predictor ``beta_LS = sqrt(D) Sigma_hat^{-1} X^T y / P`` of the sampled data, which every
    deep linear flow from a generic start reaches; its test loss per seed is computed exactly. By
    flow time 300 the slowest direction has decayed by ``exp(-2 lambda_min K t)`` (lambda_min =
    (1 - alpha^-1/2)^2 = 0.086, K >= 1 the kernel's growth over training): below 1e-20. Tolerance
    10 rtol, as for the exact depth-0 flow."""
    dim, seeds, rtol = 60, 2, 1e-6
    data = dmft.GaussianData(alpha=2.0, noise=0.3)
    training = dmft.GradientFlow(time=300.0, save_at=(300.0,), rtol=rtol)
    result = finite_size.simulate(model, data, training, dim=dim, seeds=seeds, seed=3)
    problem = sample_problem(data, training, dim, seeds, 3)
    covariance, input_label, label_power = _sampled_statistics(problem)
    beta = np.linalg.solve(covariance, math.sqrt(dim) * input_label[:, :, None])[:, :, 0]
    test = np.sum(problem.eigenvalues * (beta - problem.teacher) ** 2, axis=1) / dim + 0.3**2
    train = label_power - np.sum(beta * input_label, axis=1) / math.sqrt(dim)
    np.testing.assert_allclose(result.arrays["test_loss_per_seed"][:, -1], test, rtol=10 * rtol)
    np.testing.assert_allclose(result.arrays["train_loss_per_seed"][:, -1], train, rtol=10 * rtol)
