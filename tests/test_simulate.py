"""finite_size.simulate: gradients, sampling of the training set, divergence, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dmft
import finite_size
from finite_size.networks import build_network
from finite_size.problem import full_batch_from_examples, sample_full_batch

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


def test_cupy_matches_numpy():
    """Same seed, same problem and initial weights: the CuPy path reproduces NumPy to round-off."""
    pytest.importorskip("cupy")
    args = (dmft.DeepLinear(depth=3), dmft.GaussianData(alpha=2.0, noise=0.2), dmft.GradientDescent(0.1, 20))
    on_cpu = finite_size.simulate(*args, dim=64, seeds=4, backend="numpy")
    on_gpu = finite_size.simulate(*args, dim=64, seeds=4, backend="cupy")
    np.testing.assert_allclose(on_gpu.test_loss, on_cpu.test_loss, rtol=1e-10)
    np.testing.assert_allclose(on_gpu.train_loss, on_cpu.train_loss, rtol=1e-10)


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
