"""Saxe, McClelland & Ganguli (2014) exact solutions and the finite networks that check them.

THEORY.md section 3. Tiers: (a) the closed forms and the numerical flow against each other, the ODE
and its limits; (b) finite networks from decoupled initial conditions against the flow (the gap is
the O(eta) error of Euler steps) and the exact discrete map, plus the gradient and a conservation law
for generic initialisation; (c) the depth result (orthogonal vs scaled Gaussian); (d) NumPy vs CuPy;
(e) bad input. The simulator's tests also run with ``backend="array_api_strict"`` (the array-API code
path that CuPy runs, on the CPU).
"""

from __future__ import annotations

import numpy as np
import pytest

import dmft
from dmft import saxe
from dmft._backend import cupy_usable
from dmft.saxe import _learning_time_numeric, _mode_strength_numeric
from finite_size.saxe import (
    SaxeNetwork,
    depth_study,
    mode_learning_time,
    simulate_saxe,
)

# ODE and quadrature run at rtol 1e-13; after propagation through ~1e3 solver steps and the
# logit transform, 1e-10 relative is a safe bound on their disagreement (observed <= 3e-13).
FLOW_RTOL = 1e-10

CASES = [  # (s, u0): small, moderate and above-target initial strengths
    (2.0, 1e-3),
    (1.0, 0.3),
    (0.5, 1e-8),
    (1.5, 3.0),
]


# --------------------------------------------------------------------------------------------------
# (a) closed forms, the numerical flow, the ODE and its limits


@pytest.mark.parametrize("s, u0", CASES)
@pytest.mark.parametrize("depth", [0, 1])
def test_closed_forms_match_numerical_flow(s, u0, depth):
    tau = 0.7
    t = np.linspace(0.0, 30.0, 301)
    closed = saxe.mode_strength(s, u0, t, depth=depth, tau=tau)
    numeric = _mode_strength_numeric(s, u0, t, depth + 1, tau)
    np.testing.assert_allclose(closed, numeric, rtol=FLOW_RTOL, atol=0)


@pytest.mark.parametrize("s, u0", CASES)
@pytest.mark.parametrize("depth", [0, 1])
def test_learning_time_closed_forms_match_quadrature(s, u0, depth):
    fractions = np.array([0.1, 0.5, 0.9, 0.999])
    u_final = u0 + fractions * (s - u0)
    closed = saxe.learning_time(s, u0, u_final, depth=depth, tau=2.0)
    numeric = _learning_time_numeric(s, u0, u_final, depth + 1, 2.0)
    np.testing.assert_allclose(closed, numeric, rtol=FLOW_RTOL)


def test_depth1_closed_form_is_saxe_formula():
    # the paper's form s e^{2st/tau} / (e^{2st/tau} - 1 + s/u0), evaluated where it cannot overflow
    s, u0, tau = 1.7, 0.01, 3.0
    t = np.linspace(0, 10, 11)
    growth = np.exp(2 * s * t / tau)
    np.testing.assert_allclose(
        saxe.mode_strength(s, u0, t, depth=1, tau=tau), s * growth / (growth - 1 + s / u0), rtol=1e-14
    )


@pytest.mark.parametrize("depth", [2, 3, 7, 32])
@pytest.mark.parametrize("s, u0", CASES)
def test_learning_time_inverts_mode_strength(depth, s, u0):
    # quadrature (learning_time) and ODE integration (mode_strength) are independent routes.
    # u(t) is ill-conditioned at long plateaus: a relative error eps in time moves u by
    # eps * cond relatively, cond = t |du/dt| / u (up to ~5e6 for u0 = 1e-8 at depth 32)
    tau = 1.3
    n_weights = depth + 1
    u_final = u0 + np.array([0.05, 0.5, 0.9, 0.99999]) * (s - u0)
    t = saxe.learning_time(s, u0, u_final, depth=depth, tau=tau)
    assert np.all(np.diff(t) > 0)
    cond = t * n_weights * np.abs(u_final) ** (1 - 2 / n_weights) * np.abs(s - u_final) / tau
    error = np.abs(saxe.mode_strength(s, u0, t, depth=depth, tau=tau) / u_final - 1)
    assert np.all(error <= FLOW_RTOL * np.maximum(1.0, cond)), (error, cond)


def _hypergeometric_learning_time(s, u0, u_final, n_weights, tau):
    """An independent closed form for N_w >= 2, u0 < u_final < s.

    With p = 2 - 2/N_w, a = 2/N_w and 1/(v^p (s - v)) = [v^-p + v^(1-p)/(s - v)] / s:
    t = tau/(N_w s) [(u0^(1-p) - u_f^(1-p))/(p - 1) + s^(1-p) (F(u_f/s) - F(u0/s))],
    F(x) = int_0^x y^(a-1)/(1 - y) dy = x^a/a 2F1(a, 1; a + 1; x).
    """
    from scipy.special import hyp2f1

    p, a = 2 - 2 / n_weights, 2 / n_weights

    def F(x):
        return x**a / a * hyp2f1(a, 1, a + 1, x)

    power_part = (u0 ** (1 - p) - u_final ** (1 - p)) / (p - 1)
    return tau / (n_weights * s) * (power_part + s ** (1 - p) * (F(u_final / s) - F(u0 / s)))


@pytest.mark.parametrize("depth", [2, 3, 7, 32])
@pytest.mark.parametrize("s, u0", [case for case in CASES if case[1] < case[0]])
def test_learning_time_matches_hypergeometric_closed_form(depth, s, u0):
    u_final = u0 + np.array([0.05, 0.5, 0.9, 0.99999]) * (s - u0)
    expected = _hypergeometric_learning_time(s, u0, u_final, depth + 1, 0.6)
    np.testing.assert_allclose(saxe.learning_time(s, u0, u_final, depth=depth, tau=0.6), expected, rtol=FLOW_RTOL)


@pytest.mark.parametrize("depth", [0, 1, 3, 8])
def test_mode_strength_satisfies_the_ode(depth):
    # central differences: error h^2 u'''/6 with h = 1e-4 tau is ~1e-8 relative to max |du/dt|
    s, u0, tau = 1.5, 0.02, 2.0
    n_weights = depth + 1
    h = 1e-4 * tau
    t = np.linspace(h, 25.0, 400)
    later = saxe.mode_strength(s, u0, t + h, depth=depth, tau=tau)
    earlier = saxe.mode_strength(s, u0, t - h, depth=depth, tau=tau)
    derivative = (later - earlier) / (2 * h)
    u = saxe.mode_strength(s, u0, t, depth=depth, tau=tau)
    rhs = n_weights * u ** (2 - 2 / n_weights) * (s - u) / tau
    np.testing.assert_allclose(derivative, rhs, rtol=0, atol=1e-6 * np.abs(rhs).max())


@pytest.mark.parametrize("depth", [0, 1, 2, 5])
@pytest.mark.parametrize("s, u0", CASES)
def test_initial_value_and_long_time_limit(depth, s, u0):
    assert saxe.mode_strength(s, u0, 0.0, depth=depth) == pytest.approx(u0, rel=1e-15)
    assert saxe.mode_strength(s, u0, 1e6, depth=depth) == pytest.approx(s, rel=1e-13)


@pytest.mark.parametrize("depth", [0, 2, 5])
def test_approach_to_s_has_the_linearised_rate(depth):
    # near u = s: tau d(s - u)/dt = -N_w s^{2 - 2/N_w} (s - u), a pure exponential
    s, u0, tau = 1.2, 0.05, 1.0
    n_weights = depth + 1
    rate = n_weights * s ** (2 - 2 / n_weights) / tau
    t = saxe.learning_time(s, u0, s * (1 - 1e-6), depth=depth, tau=tau) + np.array([0.0, 2.0 / rate])
    gap = s - saxe.mode_strength(s, u0, t, depth=depth, tau=tau)
    # the relative correction to the rate is O(s - u) = O(1e-6)
    assert np.log(gap[0] / gap[1]) == pytest.approx(2.0, rel=1e-5)


def test_small_u0_learning_time_depth1_is_logarithmic():
    # t = tau/(2s) [ln(s/u0) + ln(u_f/(s - u_f))] + O(u0/s), through the quadrature path
    s, tau, u_final = 2.0, 1.5, 1.8
    for u0 in (1e-4, 1e-8, 1e-12):
        asymptotic = tau / (2 * s) * (np.log(s / u0) + np.log(u_final / (s - u_final)))
        numeric = float(_learning_time_numeric(s, u0, u_final, 2, tau))
        assert abs(numeric - asymptotic) < 2 * tau / (2 * s) * u0 / s


@pytest.mark.parametrize("depth", [2, 4, 8])
def test_small_u0_learning_time_deep_is_power_law(depth):
    # N_w >= 3: t u0^{1 - 2/N_w} -> tau / (s (N_w - 2)); the next term of the expansion is a
    # constant C (in t N_w s / tau), so the relative error scales as u0^{1 - 2/N_w}: dividing u0 by
    # 100 divides it by 100^{1 - 2/N_w}, up to the following term, relative size ~ u0^{2/N_w}/(a C)
    # (< 3 % at N_w = 9, u0 = 1e-10)
    s, tau, u_final = 1.3, 0.8, 0.5
    n_weights = depth + 1
    limit = tau / (s * (n_weights - 2))
    errors = []
    for u0 in (1e-10, 1e-12):
        t = saxe.learning_time(s, u0, u_final, depth=depth, tau=tau)
        errors.append(abs(t * u0 ** (1 - 2 / n_weights) / limit - 1))
    assert errors[1] < 1e-4
    assert errors[0] / errors[1] == pytest.approx(100 ** (1 - 2 / n_weights), rel=0.05)


def test_scaled_learning_rate_gives_a_finite_infinite_depth_limit():
    # tau = N_w tau0 (learning rate scaled by 1/N_w): t -> tau0 int_{u0}^{u_f} dv / (v^2 (s - v))
    # = tau0 [1/(s u0) - 1/(s u_f) + ln(u_f (s - u0) / (u0 (s - u_f))) / s^2] as N_w -> infinity;
    # v^{2/N_w} = 1 + (2/N_w) ln v + ..., so the relative gap is c / N_w: doubling N_w halves it
    # (up to O(1/N_w^2), i.e. 0.1 % of the ratio at N_w = 500)
    s, u0, u_final = 1.5, 0.1, 1.2
    limit = 1 / (s * u0) - 1 / (s * u_final) + np.log(u_final * (s - u0) / (u0 * (s - u_final))) / s**2
    gaps = [saxe.learning_time(s, u0, u_final, depth=n - 1, tau=n) / limit - 1 for n in (500, 1000)]
    assert abs(gaps[1]) < 0.01
    assert gaps[0] / gaps[1] == pytest.approx(2.0, rel=0.01)


def test_end_to_end_is_u_diag_v():
    rng = np.random.default_rng(3)
    U = np.linalg.qr(rng.standard_normal((5, 3)))[0]
    V = np.linalg.qr(rng.standard_normal((4, 3)))[0]
    s = np.array([3.0, 1.0, 0.2])
    t = np.array([0.0, 1.0, 5.0])
    W = saxe.end_to_end(U, s, V, 0.01, t, depth=2, tau=1.0)
    assert W.shape == (3, 5, 4)
    for k, time in enumerate(t):
        singular = np.linalg.svd(W[k], compute_uv=False)[:3]
        expected = [saxe.mode_strength(value, 0.01, time, depth=2) for value in s]
        # SVD round-off ~1e-15 |W|; the values themselves are exact to FLOW_RTOL
        np.testing.assert_allclose(np.sort(singular), np.sort(expected), rtol=FLOW_RTOL, atol=1e-14)
        np.testing.assert_allclose(U.T @ W[k] @ V, np.diag(expected), atol=1e-14)


# --------------------------------------------------------------------------------------------------
# (b) finite networks


def _discrete_map(s, u0, depth, learning_rate, steps):
    """Scalar recursion a <- a + eta a^{N_w-1} (s - a^{N_w}), u = a^{N_w} (exact for decoupled GD)."""
    n_weights = depth + 1
    a = np.asarray(u0, dtype=float) ** (1 / n_weights) * np.ones_like(np.asarray(s, float))
    out = [a**n_weights]
    for _ in range(steps):
        a = a + learning_rate * a ** (n_weights - 1) * (s - a**n_weights)
        out.append(a**n_weights)
    return np.array(out)


def _discrete_map_with_rates(s, u0, depth, rates):
    """Scalar recursion a <- a + eta_t a^{N_w-1} (s - a^{N_w}), u = a^{N_w} (exact for decoupled GD)."""
    n_weights = depth + 1
    a = np.asarray(u0, dtype=float) ** (1 / n_weights) * np.ones_like(np.asarray(s, float))
    out = [a**n_weights]
    for rate in rates:
        a = a + rate * a ** (n_weights - 1) * (s - a**n_weights)
        out.append(a**n_weights)
    return np.array(out)


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("depth", [0, 1, 3])
def test_decoupled_simulation_is_the_exact_discrete_map(depth, backend):
    network = SaxeNetwork(
        singular_values=(2.0, 1.0, 0.5), depth=depth, hidden=6, n_in=5, n_out=4, init_strength=0.01
    )
    sim = simulate_saxe(network, dmft.GradientDescent(learning_rate=0.02, steps=400), seeds=3, seed=1, backend=backend)
    expected = _discrete_map(np.array(network.singular_values), 0.01, depth, 0.02, 400)
    # float64 round-off over 400 steps of products of depth+1 matrices
    np.testing.assert_allclose(
        sim.mode_strength_per_seed, np.broadcast_to(expected, (3, 401, 3)), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(sim.loss, ((np.array(network.singular_values) - expected) ** 2).sum(-1), atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("depth", [1, 3])
def test_schedule_is_the_exact_discrete_map_and_follows_the_flow(depth, backend):
    """A warm-up-then-cosine schedule: every step uses its own rate (the scalar recursion with
    ``eta_t``, to round-off), and at small rates the modes follow the flow at the flow time
    ``sum_{t' < t} eta_t'`` (``tau = 1``) up to the O(max eta) Euler error."""
    s = np.array([2.0, 1.0])
    network = SaxeNetwork(singular_values=tuple(s), depth=depth, hidden=4, init_strength=0.05)
    rates = dmft.schedules.warmup_cosine(0.01, steps=600, warmup=60, final=0.002)
    sim = simulate_saxe(network, dmft.GradientDescent(learning_rate=rates, steps=600), seeds=2, backend=backend)
    expected = _discrete_map_with_rates(s, 0.05, depth, rates)
    np.testing.assert_allclose(sim.mode_strength_per_seed, np.broadcast_to(expected, (2, 601, 2)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(sim.flow_time, np.concatenate([[0.0], np.cumsum(rates)]))
    flow = saxe.mode_strength(s, 0.05, sim.flow_time[:, None], depth=depth, tau=1.0)
    # Euler's global error is O(max eta) = O(0.01) times the curvature of the flow: observed 0.007
    # (depth 1) and 0.03 (depth 3); a band of 0.05 s_max = 0.1. A wrong clock (steps instead of
    # sum eta, or the rate of the wrong step) is off by O(s).
    assert np.abs(sim.mode_strength - flow).max() < 0.05 * s.max()
    with pytest.raises(ValueError, match="constant learning rate"):
        sim.tau


def test_constant_schedule_is_the_scalar_run_bit_for_bit():
    network = SaxeNetwork(singular_values=(1.5, 0.5), depth=2, hidden=4, init="gaussian")
    scalar = simulate_saxe(network, dmft.GradientDescent(0.03, 50), seeds=2)
    schedule = simulate_saxe(network, dmft.GradientDescent(dmft.schedules.constant(0.03, 50), 50), seeds=2)
    np.testing.assert_array_equal(schedule.mode_strength_per_seed, scalar.mode_strength_per_seed)
    np.testing.assert_array_equal(schedule.loss_per_seed, scalar.loss_per_seed)


@pytest.mark.parametrize("depth", [1, 3])
def test_decoupled_simulation_matches_flow_with_first_order_gap(depth):
    s = np.array([2.0, 1.0, 0.5])
    u0, flow_time = 0.05, 8.0
    network = SaxeNetwork(singular_values=tuple(s), depth=depth, hidden=5, n_in=4, n_out=3, init_strength=u0)
    gaps = []
    for learning_rate in (0.01, 0.005, 0.0025):
        steps = int(round(flow_time / learning_rate))
        sim = simulate_saxe(network, dmft.GradientDescent(learning_rate, steps), seeds=2)
        t = np.arange(steps + 1)
        flow = saxe.mode_strength(s, u0, t[:, None], depth=depth, tau=1 / learning_rate)
        gaps.append(np.abs(sim.mode_strength - flow).max())
    # Euler's global error is c1 eta + c2 eta^2: halving eta halves the gap up to a relative
    # O(eta lambda) correction, lambda = N_w s^{2-2/N_w} <= 11.3 the fastest linearised rate in
    # units of the step, so eta lambda <= 0.11 at eta = 0.01: the ratio lies within 2 +- 0.2
    ratios = np.array(gaps[:-1]) / np.array(gaps[1:])
    assert np.all(np.abs(ratios - 2) < 0.2), ratios
    # and the gap itself is small: the first-order term extrapolated from the two smallest rates
    assert gaps[-1] < 0.05 * s.max()


def test_simulated_learning_time_matches_flow():
    # the interpolated 90 % crossing of the simulation vs learning_time at tau = 1/eta: the
    # O(eta) Euler error shifts the crossing by a few steps out of ~1000 (observed 0.3 %)
    s = np.array([2.0, 1.0])
    network = SaxeNetwork(singular_values=tuple(s), depth=2, hidden=4, init_strength=0.01)
    learning_rate = 0.005
    sim = simulate_saxe(network, dmft.GradientDescent(learning_rate, 2400), seeds=2)
    simulated = sim.learning_time(0.9)
    theory = saxe.learning_time(s, 0.01, 0.9 * s, depth=2, tau=1 / learning_rate)
    np.testing.assert_allclose(simulated, np.broadcast_to(theory, (2, 2)), rtol=0.02)


@pytest.mark.parametrize("init", ["orthogonal", "gaussian"])
def test_depth0_is_linear_regression_for_any_init(init):
    # one matrix: W(t) - Sigma = (1 - eta)^t (W(0) - Sigma) exactly
    network = SaxeNetwork(singular_values=(1.5, 0.5), depth=0, n_in=4, n_out=3, init=init, gain=0.7)
    learning_rate, steps = 0.1, 60
    sim = simulate_saxe(network, dmft.GradientDescent(learning_rate, steps), seeds=4)
    s = np.array(network.singular_values)
    decay = (1 - learning_rate) ** np.arange(steps + 1)
    u0 = sim.mode_strength_per_seed[:, :1, :]
    np.testing.assert_allclose(sim.mode_strength_per_seed, s + (u0 - s) * decay[None, :, None], atol=1e-13)


@pytest.mark.parametrize("init", ["orthogonal", "gaussian", "decoupled"])
def test_one_step_is_the_gradient_of_the_loss(init):
    # central finite differences of (1/2)|Sigma - W_total|^2 (error ~ h^2 = 1e-12) against the step
    network = SaxeNetwork(
        singular_values=(1.0, 0.4), depth=2, hidden=3, n_in=2, n_out=3, init=init, init_strength=0.3
    )
    learning_rate = 0.1
    sim = simulate_saxe(network, dmft.GradientDescent(learning_rate, 1), seeds=1, seed=7)
    U, V = sim.output_modes, sim.input_modes
    sigma = U @ np.diag(network.singular_values) @ V.T
    weights = [w[0].copy() for w in sim.initial_weights]

    def loss(ws):
        total = ws[0]
        for w in ws[1:]:
            total = w @ total
        return 0.5 * np.sum((sigma - total) ** 2)

    h = 1e-6
    for layer, w in enumerate(weights):
        gradient = np.zeros_like(w)
        for index in np.ndindex(w.shape):
            plus = [x.copy() for x in weights]
            minus = [x.copy() for x in weights]
            plus[layer][index] += h
            minus[layer][index] -= h
            gradient[index] = (loss(plus) - loss(minus)) / (2 * h)
        step = (sim.final_weights[layer][0] - w) / learning_rate
        np.testing.assert_allclose(step, -gradient, atol=1e-8)


def test_balancedness_is_conserved_up_to_order_eta():
    # gradient flow conserves W_{i+1}^T W_{i+1} - W_i W_i^T; each GD step changes it by
    # eta^2 (g_{i+1}^T g_{i+1} - g_i g_i^T), so over a fixed flow time the drift is O(eta):
    # halving eta halves it, up to a relative O(eta) correction that itself halves with eta
    # (measured ratios 2.33, 2.12, 2.05 from eta = 0.02 down): 2 +- 0.15 below eta = 0.01
    network = SaxeNetwork(singular_values=(1.5, 1.0), depth=3, n_in=6, n_out=6, hidden=6, init="gaussian")

    def imbalance(ws):
        def transpose(w):
            return np.swapaxes(w, -1, -2)

        return np.stack([transpose(ws[i + 1]) @ ws[i + 1] - ws[i] @ transpose(ws[i]) for i in range(len(ws) - 1)])

    drifts = []
    for learning_rate in (0.01, 0.005, 0.0025):
        steps = int(round(3.0 / learning_rate))
        sim = simulate_saxe(network, dmft.GradientDescent(learning_rate, steps), seeds=3, seed=2)
        assert sim.loss[-1] < 0.01 * sim.loss[0]  # it did learn, so the weights moved by O(1)
        drifts.append(np.abs(imbalance(sim.final_weights) - imbalance(sim.initial_weights)).max())
    ratios = np.array(drifts[:-1]) / np.array(drifts[1:])
    assert np.all(np.abs(ratios - 2) < 0.15), ratios
    assert abs(ratios[1] - 2) < abs(ratios[0] - 2)


def test_mode_learning_time_interpolates():
    u = np.array([0.0, 0.5, 1.0, 1.0])
    assert mode_learning_time(u, 1.0, 0.9) == pytest.approx(1.8)
    assert mode_learning_time(u, 1.0, 0.5) == pytest.approx(1.0)
    assert np.isnan(mode_learning_time(u, 2.0, 0.9))
    assert mode_learning_time(np.array([1.0, 1.0]), 1.0, 0.9) == 0.0
    batch = np.stack([np.stack([u, 2 * u], -1)] * 3)  # (seeds, steps + 1, r)
    np.testing.assert_allclose(mode_learning_time(batch, [1.0, 2.0], 0.9), np.full((3, 2), 1.8))


def test_divergence_raises_with_step_and_learning_rate():
    network = SaxeNetwork(singular_values=(3.0,), depth=1, init_strength=1.0)
    with pytest.raises(dmft.DivergenceError, match="learning_rate") as info:
        simulate_saxe(network, dmft.GradientDescent(learning_rate=2.0, steps=200), seeds=2)
    assert info.value.learning_rate == 2.0
    assert 0 < info.value.step < 200


def test_divergence_under_a_schedule_names_the_rate_of_the_step():
    network = SaxeNetwork(singular_values=(3.0,), depth=1, init_strength=1.0)
    rates = np.concatenate([np.full(50, 0.01), np.full(150, 2.0)])
    with pytest.raises(dmft.DivergenceError, match=r"got 2\)") as info:
        simulate_saxe(network, dmft.GradientDescent(learning_rate=rates, steps=200), seeds=2)
    assert info.value.learning_rate == 2.0 and info.value.step > 50


# --------------------------------------------------------------------------------------------------
# (c) the depth result


def test_depth_study_orthogonal_levels_off_gaussian_keeps_growing():
    # Orthogonal: the learning time at depth 32 over depth 8 has a statistical error of ~7 % (16
    # seeds, ~5 % standard error per depth) and a measured finite-depth drift of ~+8 % between
    # those depths (64 seeds: 75, 84, 81, 87, 88 steps at depths 8, 16, 32, 64, 128); a band of
    # +-30 % is ~3 standard errors plus the drift. Scaled Gaussian: the time grows ~ N_w (measured
    # ratio 3.7-4.7 for seeds 0-2, 8 and 16 networks), so > 2.5 is far outside the orthogonal band.
    study = depth_study(depths=(8, 32), seeds=16)
    assert np.all(study.orthogonal_diverged == 0)
    assert np.all(study.gaussian_diverged <= 2)  # rare at this learning rate (about 1 in 40)
    orthogonal_ratio = study.orthogonal[1] / study.orthogonal[0]
    gaussian_ratio = study.gaussian[1] / study.gaussian[0]
    assert abs(orthogonal_ratio - 1) < 0.3, study.table()
    assert gaussian_ratio > 2.5, study.table()
    assert study.gaussian[1] > 4 * study.orthogonal[1], study.table()


def test_depth_study_in_the_flow_limit():
    # the study's learning rates are small enough that times scale as 1/eta (gradient-flow limit):
    # halving the base rate doubles every time up to the O(eta) Euler correction (band 10 %)
    fast = depth_study(depths=(2,), seeds=4, base_learning_rate=0.1)
    slow = depth_study(depths=(2,), seeds=4, base_learning_rate=0.05)
    np.testing.assert_allclose(slow.orthogonal_per_seed, 2 * fast.orthogonal_per_seed, rtol=0.1)
    np.testing.assert_allclose(slow.gaussian_per_seed, 2 * fast.gaussian_per_seed, rtol=0.1)


# --------------------------------------------------------------------------------------------------
# (d) backends


@pytest.mark.parametrize("backend", ["array_api_strict", "cupy"])
def test_array_api_backends_agree_with_numpy(backend):
    """The array-API path (CuPy on a GPU; the strict namespace on the CPU, which fails on any call
    only NumPy accepts) trains the same networks as NumPy."""
    if backend == "cupy" and not cupy_usable():
        pytest.skip("CuPy with a usable CUDA device is not available")
    for init in ("decoupled", "orthogonal", "gaussian"):
        network = SaxeNetwork(singular_values=(2.0, 1.0), depth=4, hidden=8, n_in=5, n_out=6, init=init)
        training = dmft.GradientDescent(learning_rate=0.02, steps=300)
        on_cpu = simulate_saxe(network, training, seeds=4, backend="numpy")
        other = simulate_saxe(network, training, seeds=4, backend=backend)
        # same initial weights; float64 summation order differs: round-off ~1e-15 per operation
        np.testing.assert_allclose(other.mode_strength_per_seed, on_cpu.mode_strength_per_seed, atol=1e-10)
        np.testing.assert_allclose(other.loss_per_seed, on_cpu.loss_per_seed, rtol=1e-10, atol=1e-12)
        assert isinstance(other.loss, np.ndarray)
    study = depth_study(depths=(2,), seeds=3, backend=backend)
    np.testing.assert_allclose(study.orthogonal_per_seed, depth_study(depths=(2,), seeds=3).orthogonal_per_seed, rtol=1e-10)


# --------------------------------------------------------------------------------------------------
# (e) bad input


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(s=0.0, u0=0.1, t=1.0), "`s`"),
        (dict(s=-1.0, u0=0.1, t=1.0), "`s`"),
        (dict(s=1.0, u0=0.0, t=1.0), "`u0`"),
        (dict(s=1.0, u0=-0.1, t=1.0), "`u0`"),
        (dict(s=1.0, u0=0.1, t=-1.0), "`t`"),
        (dict(s=1.0, u0=0.1, t=np.nan), "`t`"),
        (dict(s=1.0, u0=0.1, t=1.0, depth=-1), "`depth`"),
        (dict(s=1.0, u0=0.1, t=1.0, tau=0.0), "`tau`"),
        (dict(s=1.0, u0=0.1, t=1.0, tau=np.inf), "`tau`"),
    ],
)
def test_mode_strength_rejects_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        saxe.mode_strength(**kwargs)


def test_bad_types_and_learning_time_targets():
    with pytest.raises(TypeError, match="`depth`"):
        saxe.mode_strength(1.0, 0.1, 1.0, depth=1.5)
    with pytest.raises(TypeError, match="`t`"):
        saxe.mode_strength(1.0, 0.1, "soon")
    for u_final in (1.0, 1.2, 0.05):  # s itself, beyond s, behind u0
        with pytest.raises(ValueError, match="`u_final`"):
            saxe.learning_time(1.0, 0.1, u_final, depth=2)
    with pytest.raises(ValueError, match="`u_final`"):
        saxe.learning_time(1.0, 2.0, 2.5)  # decaying mode: target above u0
    assert saxe.mode_strength(1.0, -0.5, 1.0, depth=0) < 1.0  # depth 0 accepts any real u0
    with pytest.raises(ValueError, match="`U`"):
        saxe.end_to_end(np.ones((3, 2)), [1.0, 0.5], np.eye(2), 0.1, [0.0])


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(singular_values=()), ValueError, "singular_values"),
        (dict(singular_values=(1.0, -1.0)), ValueError, "singular_values"),
        (dict(singular_values=(1.0,), depth=-1), ValueError, "depth"),
        (dict(singular_values=(1.0,), init="xavier"), ValueError, "init"),
        (dict(singular_values=(1.0, 1.0), hidden=1), ValueError, "hidden"),
        (dict(singular_values=(1.0, 1.0), n_in=1), ValueError, "n_in"),
        (dict(singular_values=(1.0,), init_strength=0.0), ValueError, "init_strength"),
        (dict(singular_values=(1.0,), init="gaussian", gain=0.0), ValueError, "gain"),
    ],
)
def test_network_rejects_bad_configuration(kwargs, error, name):
    with pytest.raises(error, match=name):
        SaxeNetwork(**kwargs)


def test_simulate_rejects_bad_arguments():
    network = SaxeNetwork(singular_values=(1.0,))
    with pytest.raises(ValueError, match="backend"):
        simulate_saxe(network, dmft.GradientDescent(0.1, 5), backend="torch")
    with pytest.raises(ValueError, match="'numba' names the compiled kernels"):
        simulate_saxe(network, dmft.GradientDescent(0.1, 5), backend="numba")
    with pytest.raises(ValueError, match="seeds"):
        simulate_saxe(network, dmft.GradientDescent(0.1, 5), seeds=0)
    with pytest.raises(TypeError, match="training"):
        simulate_saxe(network, dmft.OnlineSGD(0.1, 5))
    with pytest.raises(TypeError, match="exact: dmft.saxe.mode_strength"):
        simulate_saxe(network, dmft.GradientFlow(1.0))
    with pytest.raises(MemoryError, match=r"the mode-strength curves: lower `steps` \(100000000\)"):
        simulate_saxe(network, dmft.GradientDescent(0.1, 10**8), seeds=10**4)
    with pytest.raises(ValueError, match="input_modes"):
        simulate_saxe(network, dmft.GradientDescent(0.1, 5), input_modes=np.ones((1, 1)) * 2)
    with pytest.raises(ValueError, match="fraction"):
        depth_study(depths=(1,), fraction=1.0)


def _readme_python_block(heading: str) -> str:
    """The first ```python block of the README section that starts with ``heading``."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index(heading):]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("```", start)]


@pytest.mark.parametrize("heading", ["### Saxe, McClelland & Ganguli", "## Finite-width simulations"])
def test_readme_snippets_run_as_written(heading):
    """The README's Saxe and simulation snippets are runnable code (they once used undefined names)."""
    exec(compile(_readme_python_block(heading), f"README.md: {heading}", "exec"), {})
