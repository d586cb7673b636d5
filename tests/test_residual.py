"""Residual deep linear networks and their infinite-depth limit (THEORY.md 2.2, docs/infinite_depth.md).

Tiers: exact limits (plain network at depth 1 and beta0 -> 0, closed-form initial losses); the layer
recursion against THEORY's dense inversion and the compiled kernels against the NumPy reference
(round-off); the infinite-depth solver's convergence in its layer-time grid (4th order) and the
finite depths' convergence to it (~1/depth); DMFT against finite_size.simulate (statistical
tolerances argued from the standard errors).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import dmft
import finite_size
from dmft.solvers import residual as residual_solver
from tests.helpers import assert_close_curves

# Round-off: every order parameter is O(1..10) and is built from O(T) products of O(1) numbers in
# different orders by the two implementations: 1e-12 absolute leaves a factor ~100 over the
# largest differences seen (~1e-14).
ROUND_OFF = 1e-12

GD = dmft.GradientDescent(learning_rate=0.06, steps=12)
ONLINE = dmft.OnlineSGD(learning_rate=0.06, steps=12, batch_ratio=0.7)
CONFIGS = [  # (data, training, parameterization, width_ratio, gamma0)
    (dmft.GaussianData(alpha=1.5, noise=0.2), GD, "mup", 1.3, 0.8),
    (dmft.GaussianData(alpha=0.6, noise=0.0, spectrum=dmft.PowerLaw(a=1.5, b=0.5, modes=7)), GD.replace(learning_rate=0.03), "ntk", 2.0, 1.2),
    (dmft.GaussianData(alpha=None, noise=0.3), ONLINE, "mup", 0.7, 1.0),
]
CONFIG_IDS = ["isotropic-noise-gd", "powerlaw-ntk-gd", "online-noise"]


def residual(depth, beta0=1.0, parameterization="mup", width_ratio=1.0, gamma0=1.0):
    return dmft.DeepLinear(
        depth=depth, residual=True, branch_scale=beta0, parameterization=parameterization,
        width_ratio=width_ratio, gamma0=gamma0,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# exact limits


@pytest.mark.parametrize("data,training,param,nu,gamma0", CONFIGS, ids=CONFIG_IDS)
def test_depth_one_is_the_plain_network(data, training, param, nu, gamma0):
    """One hidden layer has no residual block: every curve and order parameter equals section 2.1's
    at depth 1, whatever ``beta0``."""
    plain = dmft.solve(dmft.DeepLinear(depth=1, parameterization=param, width_ratio=nu, gamma0=gamma0), data, training)
    res = dmft.solve(residual(1, 1.7, param, nu, gamma0), data, training)
    np.testing.assert_allclose(res.test_loss, plain.test_loss, rtol=0, atol=ROUND_OFF)
    np.testing.assert_allclose(res.train_loss, plain.train_loss, rtol=0, atol=ROUND_OFF)
    for name in ("C_h", "C_g", "R_h", "R_g", "C_u", "R_u", "C_Delta"):
        np.testing.assert_allclose(res.arrays[name], plain.arrays[name], rtol=0, atol=ROUND_OFF, err_msg=name)


def test_vanishing_branches_give_the_plain_network_with_beta0_squared_deviation():
    """``b -> 0`` collapses every layer onto the first: the deviation from the plain depth-1 network
    is ``c beta0^2`` (the first correction of the layer recursion is ``O(b^2)``), so it shrinks 100x
    per 10x in ``beta0`` and is below round-off at ``beta0 = 1e-7``."""
    data, training = CONFIGS[0][:2]
    plain = dmft.solve(dmft.DeepLinear(depth=1), data, training).test_loss
    deviation = {
        beta0: np.max(np.abs(dmft.solve(residual(4, beta0), data, training).test_loss - plain))
        for beta0 in (1e-2, 1e-3, 1e-7)
    }
    # O(beta0^4) corrections: the ratio is 100 to relative accuracy ~beta0^2 = 1e-4 (1e-3 allowed).
    assert deviation[1e-2] / deviation[1e-3] == pytest.approx(100.0, rel=1e-3)
    assert deviation[1e-2] > 1e-6  # the deviation is real, not round-off
    assert deviation[1e-7] < ROUND_OFF


@pytest.mark.parametrize("depth", [1, 3, 16, math.inf])
@pytest.mark.parametrize("param", ["mup", "ntk"])
def test_initial_loss_closed_form(depth, param):
    """``L(0) = 1 + sigma^2 + c^2 (1 + beta0^2/L)^{L-1}``, ``c^2 = 1/(gamma0^2 nu)``: the backward fields
    grow by ``1 + b^2`` per block (docs/infinite_depth.md). At infinite depth ``Ce(0,0)`` obeys
    ``dCe/dtau = -beta0^2 Ce``, so RK4 with ``n`` steps gives exactly ``R(beta0^2/n)^n`` with ``R`` the
    degree-4 Taylor polynomial of ``exp`` (round-off), within ``n (beta0^2/n)^5 / 120`` of ``e^{beta0^2}``."""
    beta0, nu, gamma0, noise, n = 1.3, 1.7, 0.9, 0.25, 16
    model = residual(depth, beta0, param, nu, gamma0)
    data, training = dmft.GaussianData(alpha=2.0, noise=noise), dmft.GradientDescent(0.05, steps=2)
    result = dmft.solve(model, data, training, **({"layer_steps": n} if math.isinf(depth) else {}))
    scale = 1.0 / (model.richness**2 * nu)
    if math.isinf(depth):
        x = beta0**2 / n
        growth = (1 + x + x**2 / 2 + x**3 / 6 + x**4 / 24) ** n
        assert abs(growth - math.exp(beta0**2)) < 1.5 * n * x**5 / 120 * math.exp(beta0**2)
    else:
        growth = (1 + beta0**2 / depth) ** (depth - 1)
    expected = 1 + noise**2 + scale * growth
    assert result.test_loss[0] == pytest.approx(expected, rel=1e-13)
    assert result.train_loss[0] == pytest.approx(expected, rel=1e-13)


# ----------------------------------------------------------------------------------------------
# the layer recursion against THEORY's dense inversion; kernels against the reference


@pytest.mark.parametrize("data,training,param,nu,gamma0", CONFIGS, ids=CONFIG_IDS)
def test_layer_recursion_equals_dense_inversion(data, training, param, nu, gamma0):
    """The row-by-row layer recursion solves THEORY.md 2.2's system ``z = J z + sources`` exactly:
    re-evaluating it by dense inversion of ``I - J`` (``(2 L T)^2``) returns the same responses and
    correlations, including every two-time cross-layer correlation."""
    depth = 4
    model = residual(depth, 1.3, param, nu, gamma0)
    result = dmft.solve(model, data, training, two_time_cross_layer=True, self_consistency=True)
    times = training.steps + 1
    weights = np.tril(np.full((times, times), training.learning_rate), -1)  # w o C = eta (C)_<
    direct = residual_solver.direct_equations(
        result.arrays, weights=weights, depth=depth, branch=model.branch_multiplier, gamma0=model.richness,
        width_ratio=nu,
    )  # fmt: skip
    for name in ("R_h", "R_g", "C_h", "C_g"):
        np.testing.assert_allclose(result.arrays[name], direct[name], rtol=0, atol=ROUND_OFF, err_msg=name)
    for key in ("C_h", "C_g"):
        np.testing.assert_allclose(result.arrays[f"{key}_cross_two_time"], direct[f"{key}_cross"], rtol=0, atol=ROUND_OFF)
        equal_time = np.einsum("abtt->tab", direct[f"{key}_cross"])
        np.testing.assert_allclose(result.arrays[f"{key}_cross"], equal_time, rtol=0, atol=ROUND_OFF)
    assert result.info["self_consistency_relative"] < 1e-13


def test_compiled_kernels_equal_numpy_reference():
    """Numba packed rows vs the dense NumPy reference, finite and infinite depth (round-off)."""
    data, training = CONFIGS[1][:2]
    coarse = {"layer_steps": 3, "layer_error_estimate": False}  # small on purpose: only the kernels are compared
    for model, options in ((residual(3, 1.1), {}), (residual(math.inf, 1.1), coarse)):
        fast = dmft.solve(model, data, training, backend="numba", **options)
        reference = dmft.solve(model, data, training, backend="numpy", **options)
        for name, value in reference.arrays.items():
            np.testing.assert_allclose(fast.arrays[name], value, rtol=0, atol=ROUND_OFF, err_msg=name)


# ----------------------------------------------------------------------------------------------
# infinite depth


def test_infinite_depth_converges_at_fourth_order_in_its_grid():
    """RK4 in layer time: halving the step divides the error by ~16 (between 12 and 20 once in the
    asymptotic regime)."""
    data, training = CONFIGS[0][:2]
    model = residual(math.inf, 1.0)
    curves = [
        dmft.solve(model, data, training, layer_steps=n, cross_layer_steps=[], layer_error_estimate=False).test_loss
        for n in (4, 8, 16, 32)
    ]
    errors = [np.max(np.abs(a - b)) for a, b in zip(curves, curves[1:])]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 12) & (ratios < 20)), ratios
    assert errors[-1] < 1e-5 * np.max(curves[-1])  # 16 steps: ~1e-6 relative


@pytest.mark.parametrize("training", [GD, ONLINE], ids=["gd", "online"])
def test_finite_depth_approaches_infinite_depth_as_one_over_depth(training):
    """``|L_depth - L_inf|`` (test + train, max over steps) halves with every doubling of depth: the
    layer recursion is a first-order scheme for the layer-time ODEs, so the gap is
    ``c_1 / L + c_2 / L^2`` and the ratio of successive gaps is ``2 + O(1/L)``. Measured at depths
    32..256 (ratios 1.82, 1.91, 1.95 at this learning rate): within 0.25 of 2 and increasing."""
    data = CONFIGS[0][0] if isinstance(training, dmft.GradientDescent) else CONFIGS[2][0]
    limit = dmft.solve(residual(math.inf), data, training, layer_steps=32, cross_layer_steps=[])
    gaps = []
    for depth in (32, 64, 128, 256):
        finite = dmft.solve(residual(depth), data, training, cross_layer_steps=[])
        gaps.append(np.max(np.abs(finite.test_loss - limit.test_loss) + np.abs(finite.train_loss - limit.train_loss)))
    ratios = np.array(gaps[:-1]) / np.array(gaps[1:])
    assert np.all(np.abs(ratios - 2.0) < 0.25) and np.all(np.diff(ratios) > 0), ratios


def test_infinite_depth_cross_layer_is_the_limit_of_finite_depth():
    """Equal-time ``<h(tau) h(tau')>``, ``<g(tau) g(tau')>`` at the last step: finite depths sampled
    at ``tau = (l - 1)/(L - 1)`` on the 9 grid nodes approach the continuum with a gap that halves
    per doubling of depth (``2 + O(1/L)``: ratios within 0.3 of 2 at depths 33, 65, 129)."""
    data, training = CONFIGS[0][:2]
    limit = dmft.solve(residual(math.inf), data, training, layer_steps=8, cross_layer_steps=[training.steps],
                       layer_error_estimate=False)  # fmt: skip
    gaps = {key: [] for key in ("C_h_cross", "C_g_cross")}
    for depth in (33, 65, 129):  # (depth - 1) divisible by 8: layers on the nodes
        finite = dmft.solve(residual(depth), data, training, cross_layer_steps=[training.steps])
        nodes = np.arange(0, depth, (depth - 1) // 8)
        for key in gaps:
            sampled = finite.arrays[key][0][np.ix_(nodes, nodes)]
            gaps[key].append(np.max(np.abs(sampled - limit.arrays[key][0])))
    for key, values in gaps.items():
        ratios = np.array(values[:-1]) / np.array(values[1:])
        assert np.all(np.abs(ratios - 2.0) < 0.3), (key, ratios)


# ----------------------------------------------------------------------------------------------
# against simulation


SIMULATION_CASES = {  # depth 2, 4, 8; alpha below and above 1; label noise; full batch and online
    "depth2-alpha2-noise": (residual(2), dmft.GaussianData(alpha=2.0, noise=0.3), dmft.GradientDescent(0.05, steps=20)),
    "depth4-alpha0.5-noise": (residual(4), dmft.GaussianData(alpha=0.5, noise=0.3), dmft.GradientDescent(0.04, steps=20)),
    "depth8-alpha2-noise": (residual(8), dmft.GaussianData(alpha=2.0, noise=0.3), dmft.GradientDescent(0.04, steps=20)),
    "depth8-online-noise": (residual(8), dmft.GaussianData(alpha=None, noise=0.3), dmft.OnlineSGD(0.05, steps=20, batch_ratio=0.5)),
    "depth2-powerlaw-ntk": (
        residual(2, 1.0, "ntk", 1.5, 1.2),
        dmft.GaussianData(alpha=1.5, noise=0.1, spectrum=dmft.PowerLaw(a=1.5, b=0.5, modes=8)),
        dmft.GradientDescent(0.03, steps=20),
    ),
}


def _mean_gap(theory, simulation):
    """Relative gap between simulation and DMFT averaged over steps 1..T and over the test and
    train curves, per seed; returns its mean over seeds and standard error (seeds are independent)."""
    per_seed = 0.0
    for curve in ("test_loss", "train_loss"):
        reference = getattr(theory, curve)[1:]
        per_seed = per_seed + ((simulation.arrays[f"{curve}_per_seed"][:, 1:] - reference) / reference).mean(axis=1) / 2
    return per_seed.mean(), per_seed.std(ddof=1) / math.sqrt(per_seed.size)


def test_simulations_converge_to_dmft():
    """Finite networks approach the DMFT as D grows, in every case of SIMULATION_CASES.

    Statistic: ``chi2(D) = sum_cases (gap / SE)^2`` of the per-seed mean relative gap (cases are
    independent simulations). If the DMFT is the ``D -> infinity`` limit, ``chi2`` at a size where the
    ``O(1/D)`` bias is below the noise follows a chi-square law with 5 degrees of freedom, whose
    99.9 % quantile is 20.5. At ``D = 24`` (512 seeds, SE ~1 %) the finite-size bias of a few per cent
    is resolved: ``chi2 > 20.5``. At ``D = 200`` (16 seeds) it has shrunk below the noise:
    ``chi2 < 20.5``; and every entry of every curve lies within 4 SE (+2 % for the residual O(1/D)
    bias) of the DMFT (4 SE: 5 cases x 42 entries keep the family-wise false alarms ~1 %)."""
    quantile = 20.5  # chi-square, 5 degrees of freedom, 0.999
    chi2 = {24: 0.0, 200: 0.0}
    for label, (model, data, training) in SIMULATION_CASES.items():
        theory = dmft.solve(model, data, training)
        for dim, seeds in ((24, 512), (200, 16)):
            simulation = finite_size.simulate(model, data, training, dim=dim, seeds=seeds, seed=0)
            gap, error = _mean_gap(theory, simulation)
            chi2[dim] += (gap / error) ** 2
        for curve in ("test_loss", "train_loss"):
            assert_close_curves(
                getattr(theory, curve), getattr(simulation, curve), getattr(simulation, f"{curve}_sem"),
                sems=4, allowance=0.02, label=f"{label} {curve} D=200",
            )  # fmt: skip
    assert chi2[24] > quantile, chi2
    assert chi2[200] < quantile, chi2


def test_agreement_region_ends_at_the_edge_of_stability():
    """Where the DMFT and finite networks agree at moderate width (THEORY.md 2.2's open question).

    Depth 4, alpha = 0.5, noise 0.3, 25 steps. At ``eta = 0.05`` the DMFT train loss slows down
    smoothly (no edge-of-stability onset within the horizon, :func:`edge_of_stability_step`) and
    D = 200 simulations (16 seeds) agree with every entry of both curves within 4 SE + 2 % (as in
    :func:`test_simulations_converge_to_dmft`). At ``eta = 0.065`` the DMFT enters the
    edge-of-stability regime at step ~11 (finite networks get there earlier: their largest
    curvature fluctuates above the DMFT's spectral edge), and the simulations' train loss falls
    below the DMFT by far more than the noise (mean relative gap after the onset below -3 SE),
    while the test loss keeps agreeing. The gap closes as D grows, slowly (measured in
    docs/infinite_depth.md; the large-D check is the slow test below)."""
    from dmft.studies.depth import edge_of_stability_step

    model, data = residual(4), dmft.GaussianData(alpha=0.5, noise=0.3)
    below, beyond = dmft.GradientDescent(0.05, steps=25), dmft.GradientDescent(0.065, steps=25)
    theory_below, theory_beyond = dmft.solve(model, data, below), dmft.solve(model, data, beyond)
    assert edge_of_stability_step(theory_below.train_loss) is None
    onset = edge_of_stability_step(theory_beyond.train_loss)
    assert 8 <= onset <= 14, onset
    sim_below = finite_size.simulate(model, data, below, dim=200, seeds=16, seed=0)
    sim_beyond = finite_size.simulate(model, data, beyond, dim=200, seeds=16, seed=0)
    for curve in ("test_loss", "train_loss"):
        assert_close_curves(getattr(theory_below, curve), getattr(sim_below, curve), getattr(sim_below, f"{curve}_sem"),
                            sems=4, allowance=0.02, label=f"below the edge: {curve}")  # fmt: skip
    assert_close_curves(theory_beyond.test_loss, sim_beyond.test_loss, sim_beyond.test_loss_sem,
                        sems=4, allowance=0.02, label="beyond the edge: test_loss")  # fmt: skip
    later = slice(onset + 3, None)
    per_seed = (sim_beyond.arrays["train_loss_per_seed"][:, later] / theory_beyond.train_loss[later] - 1).mean(axis=1)
    assert per_seed.mean() < -3 * per_seed.std(ddof=1) / math.sqrt(per_seed.size)


@pytest.mark.slow
def test_edge_of_stability_gap_closes_at_large_width():
    """Depth 8, alpha = 0.5, noise 0.3, eta = 0.05, 25 steps: the DMFT enters the edge-of-stability
    regime at step ~10. The mean relative train-loss gap over steps 1..25 is large at D = 800
    (measured with three seed sets: -25 % +- 5 %, -32 % +- 4 %, -28 % +- 5 %) and shrinks at
    D = 3200 (-0.5 % +- 3.4 %, -7.9 % +- 0.8 %, -6.4 % +- 4.4 % with 6 seeds). Asserted: the gap at
    800 is significant (> 3 SE); it shrinks significantly from 800 to 3200 (difference > 3 combined
    SE); and the point estimate at 3200 is less than half that at 800 (a ~1/D law predicts a
    quarter, a limit of the theory, i.e. a plateau, about 1). ~2 minutes on 2 idle cores, 4 GB."""
    model, data = residual(8), dmft.GaussianData(alpha=0.5, noise=0.3)
    training = dmft.GradientDescent(0.05, steps=25)
    theory = dmft.solve(model, data, training)
    gaps = {}
    for dim, seeds, batch in ((800, 8, 8), (3200, 12, 2)):  # batches keep the 3200 x 3200 weights in memory
        per_seed = []
        for start in range(0, seeds, batch):
            simulation = finite_size.simulate(model, data, training, dim=dim, seeds=batch, seed=start)
            per_seed.append((simulation.arrays["train_loss_per_seed"][:, 1:] / theory.train_loss[1:] - 1).mean(axis=1))
        per_seed = np.concatenate(per_seed)
        gaps[dim] = (abs(per_seed.mean()), per_seed.std(ddof=1) / math.sqrt(per_seed.size))
    (small, small_error), (large, large_error) = gaps[800], gaps[3200]
    assert small > 3 * small_error, gaps
    assert small - large > 3 * math.hypot(small_error, large_error), gaps
    assert large < small / 2, gaps


def test_cross_layer_correlations_match_simulation():
    """Equal-time ``h_l . h_l' / N`` and ``g_l . g_l' / N`` of trained networks (D = 300, 16 seeds)
    agree with ``C_h^{ll'}(t, t)``, ``C_g^{ll'}(t, t)`` within 4 standard errors at every step and
    layer pair (64 entries x 21 steps: 4 SE keeps the family-wise false-alarm rate ~0.1 %), plus
    an O(1/D) allowance of 3 %."""
    model = residual(4, 1.0)
    data = dmft.GaussianData(alpha=2.0, noise=0.3)
    training = dmft.GradientDescent(learning_rate=0.05, steps=20)
    theory = dmft.solve(model, data, training)
    simulation = finite_size.simulate(model, data, training, dim=300, seeds=16, record_hidden=True)
    for key, measured in (("C_h_cross", "hidden_correlation"), ("C_g_cross", "backward_correlation")):
        assert_close_curves(
            theory.arrays[key].ravel(), simulation.arrays[measured].ravel(),
            simulation.arrays[f"{measured}_sem"].ravel(), sems=4, allowance=0.03, label=key,
        )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# bad input


def test_bad_options_raise_clear_errors():
    data, training = CONFIGS[0][:2]
    with pytest.raises(ValueError, match="layer_steps"):
        dmft.solve(residual(math.inf), data, training, layer_steps=0)
    with pytest.raises(ValueError, match="cross_layer_steps"):
        dmft.solve(residual(3), data, training, cross_layer_steps=[training.steps + 1])
    with pytest.raises(ValueError, match="backend"):
        dmft.solve(residual(3), data, training, backend="fortran")
    with pytest.raises(dmft.UnsupportedError, match="Gaussian teacher"):
        dmft.solve(residual(3), dmft.GaussianData(alpha=2.0, teacher=dmft.SparseTeacher()), training)
    with pytest.raises(ValueError, match="record_hidden"):
        finite_size.simulate(dmft.Linear(), data, training, dim=10, seeds=2, record_hidden=True)


def test_result_round_trip(tmp_path):
    """An infinite-depth result saves and loads with its configuration (depth = inf in JSON)."""
    result = dmft.solve(residual(math.inf), *CONFIGS[0][:2], layer_steps=2, layer_error_estimate=False)
    loaded = dmft.Result.load(result.save(tmp_path / "limit.npz"))
    assert math.isinf(loaded.model.depth)
    np.testing.assert_array_equal(loaded.test_loss, result.test_loss)
    np.testing.assert_array_equal(loaded.arrays["C_h_cross"], result.arrays["C_h_cross"])
