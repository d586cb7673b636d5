"""The power-law study (dmft.studies.power_law): fits, the exact kernel (lazy) reference, the compute
frontier on flow times, and the study itself against the kernel curve and its derived rate t^{-b}.

The DMFT is deterministic: every tolerance here is a round-off, discretisation (the flow's rtol) or
model-size argument, written next to it.
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest

import dmft
from dmft.studies import power_law, scaling

matplotlib.use("Agg")


def _deep_flow_available() -> bool:
    """Whether dmft.solve has a GradientFlow solver for DeepLinear (branch `deep`, issue 11)."""
    try:
        dmft.solve(dmft.DeepLinear(depth=1), dmft.GaussianData(alpha=None), dmft.GradientFlow(time=0.1))
    except dmft.UnsupportedError:
        return False
    return True


needs_deep_flow = pytest.mark.skipif(not _deep_flow_available(), reason="the DeepLinear GradientFlow solver (issue 11)")


# --------------------------------------------------------------------------- fits and references


def test_fit_power_law_is_exact_on_a_power_law_and_brackets_a_curved_one():
    t = np.concatenate([[0.0], np.geomspace(0.1, 1e4, 121)])
    with np.errstate(divide="ignore"):
        pure = 3.0 * t**-0.7
        curved = t**-0.5 + 5 * t**-1.0  # local exponent falls from near 1 towards 0.5
    fit = power_law.fit_power_law(t, pure, (10, 1e4))
    assert fit.exponent == pytest.approx(0.7, abs=1e-12)
    assert fit.low == pytest.approx(0.7, abs=1e-12) and fit.high == pytest.approx(0.7, abs=1e-12)
    assert fit.prefactor == pytest.approx(3.0, rel=1e-10)
    assert fit.window == pytest.approx((10, 1e4))
    fit = power_law.fit_power_law(t, curved, (10, 1e4))
    local = power_law.local_exponent(t, curved)
    assert 0.5 < fit.low < fit.exponent < fit.high < local[np.searchsorted(t, 10)] < 1.0
    with pytest.raises(ValueError, match="window"):
        power_law.fit_power_law(t, pure, (10, 2e4))


def test_local_exponent_of_power_laws():
    t = np.geomspace(1, 1e4, 81)
    np.testing.assert_allclose(power_law.local_exponent(t, 2 * t**-0.3), 0.3, rtol=1e-12)
    # the second-order difference of t^-0.5 + t^-1 on a grid of 20 points per decade: the local
    # exponent (0.5 t^-0.5 + t^-1) / (t^-0.5 + t^-1) to O(h^2), h = ln(10) / 20 (~1 %)
    curve = t**-0.5 + t**-1.0
    exact = (0.5 * t**-0.5 + t**-1.0) / curve
    np.testing.assert_allclose(power_law.local_exponent(t, curve)[1:-1], exact[1:-1], rtol=0.01)


def test_kernel_curve_is_the_closed_form_sum():
    # sum_k w_k lambda_k b_k exp(-2 (L + 1) lambda_k t) + sigma^2 written out, on the exact shares
    spectrum = dmft.PowerLaw(a=3.0, b=0.5, modes=40)
    k = np.arange(1, 41)
    signal = k**-2.5 / np.sum(k**-2.5)  # w_k lambda_k b_k: top-normalised, initial loss 1
    t = np.array([0.0, 0.5, 3.0, 40.0, 1e3])
    closed = np.exp(-2 * 3 * np.outer(t, k**-3.0)) @ signal + 0.09
    np.testing.assert_allclose(power_law.kernel_curve(spectrum, t, depth=2, noise=0.3), closed, rtol=1e-13)


def test_kernel_asymptote_approaches_the_sum_over_many_modes():
    # Gamma(b) / (a H_M(ab+1)) (2 (L + 1) t)^{-b} is the integral over all k in (0, inf) of the summand
    # k^{-ab-1} exp(-2 (L + 1) t k^{-a}) / H_M. Two differences to the sum over k = 1..M:
    # * the sum vs the integral: the summand and all its derivatives vanish at k = 0, so the
    #   Euler-Maclaurin corrections vanish and the gap falls faster than any power of
    #   k* = (2 (L + 1) t)^{1/a} (measured: 3e-3, 3e-4, 1e-5 at t = 10, 30, 100);
    # * the modes k > M, missing from the sum, unlearned for t << M^a: -M^{-ab} / (ab H_M), which
    #   grows relative to the asymptote like t^b (7e-5 at t = 1e6 for M = 1e5).
    # The sum is kernel_curve on the quadrature shares (documented accuracy 2e-6).
    spectrum = dmft.PowerLaw(a=3.0, b=0.5, modes=100_000)
    t = np.array([10, 30, 100, 1e3, 1e4, 1e5, 1e6])
    asymptote = power_law.kernel_asymptote(spectrum, t, depth=1)
    error = power_law.kernel_curve(spectrum, t, depth=1) / asymptote - 1
    k = np.arange(1, 100_001, dtype=float)
    missing = -(1e5**-1.5 / 1.5) / np.sum(k**-2.5) / asymptote
    discreteness = np.abs(error - missing)
    assert discreteness[0] > 1e-3 and discreteness[1] < discreteness[0] / 5 and discreteness[2] < discreteness[1] / 5
    assert np.all(discreteness[3:] < 2e-6) and abs(missing[-1]) > 3e-5


def test_loss_at_compute_on_flow_times():
    # L(nu, t) = 1/nu + 4/t on geometric times: at compute C (t = C / nu) the best width on the grid
    # minimises 1/nu + 4 nu / C; interpolation in log t between report times is exact at the report
    # times, which the budgets hit here (C = nu * t for a grid time t and the middle width).
    times = np.concatenate([[0.0], np.geomspace(0.5, 500.0, 31)])
    widths = np.array([0.5, 1.0, 2.0, 4.0])
    with np.errstate(divide="ignore"):
        losses = 1 / widths[:, None] + 4 / times[None, :]
    budgets = 2.0 * times[[12, 18, 22]]
    out = scaling.loss_at_compute(losses, widths, budgets, times=times)
    brute = 1 / widths[None, :] + 4 * widths[None, :] / budgets[:, None]
    np.testing.assert_allclose(out["loss"][:, 2], brute[:, 2], rtol=1e-12)  # on the grid
    np.testing.assert_allclose(out["loss"], brute, rtol=0.02)  # log-t interpolation elsewhere
    np.testing.assert_array_equal(out["optimal_width"], widths[brute.argmin(axis=1)])
    # C / nu below the first report time for the widest width: no frontier there
    assert math.isnan(scaling.loss_at_compute(losses, widths, [1.0], times=times)["frontier"][0])


def test_study_rejects_bad_parameters_by_name():
    with pytest.raises(ValueError, match="richness"):
        power_law.power_law_study(richness=(1.0, 0.1))
    with pytest.raises(ValueError, match="window"):
        power_law.power_law_study(window=(10.0, 1e5), time=1e4)


# --------------------------------------------------------------------------- the study (deep flow)


@needs_deep_flow
def test_small_study_runs_and_its_lazy_curve_is_the_kernel():
    # 20 modes (exact shares), t <= 10 (the default tier's budget): lazy and rich at infinite width,
    # two finite widths. The lazy curve equals the kernel curve exp(-2 (L + 1) lambda t) to the flow's
    # accuracy (rtol 1e-4, the accumulated error allowed 5x: 5e-4) plus O(gamma0^2) = 1e-4 of feature
    # learning.
    ds, figure = power_law.power_law_study(modes=20, time=10.0, window=(1.0, 10.0), richness=(0.01, 3.0),
                                           frontier_widths=(0.1, 1.0), frontier_time=10.0, points_per_decade=10)
    assert figure is not None and np.all(ds["status"].values == 0)
    np.testing.assert_allclose(ds["test_loss"].sel(gamma0=0.01), ds["kernel_test_loss"], rtol=6e-4)
    assert float(ds["test_loss"].sel(gamma0=3.0, time=10.0)) < float(ds["kernel_test_loss"].sel(time=10.0))
    # initial loss at finite width: 1 + mean(lambda) / (gamma0^2 nu) (THEORY.md section 2), gamma0 = 1
    mean_eigenvalue = np.mean(np.arange(1, 21) ** -3.0)
    np.testing.assert_allclose(ds["frontier_test_loss"].sel(frontier_time=0.0), 1 + mean_eigenvalue / ds["width_ratio"],
                               rtol=1e-12)


@needs_deep_flow
def test_lazy_deep_sgd_on_many_modes_is_depth_zero_sgd_at_rate_l_plus_one():
    # Two independent solvers on the same weighted quadrature shares (1e5 modes, 112 shares): the
    # deep DMFT (depth 1, gamma0 = 0.01, width 1e10) with minibatch noise (batch 10 D) and the exact
    # per-share recursion of dmft.Linear at the kernel rate (L + 1) eta. Feature learning moves the
    # kernel by O(gamma0^2) = 1e-4 relative (measured 3e-5).
    data = dmft.GaussianData(alpha=None, noise=0.1, spectrum=dmft.PowerLaw(a=3.0, b=0.5, modes=100_000))
    deep = dmft.solve(dmft.DeepLinear(depth=1, width_ratio=1e10, gamma0=0.01), data,
                      dmft.OnlineSGD(learning_rate=0.25, steps=40, batch_ratio=10.0), self_consistency=False)
    kernel = dmft.solve(dmft.Linear(), data, dmft.OnlineSGD(learning_rate=0.5, steps=40, batch_ratio=10.0))
    assert kernel.info["shares"] == 112
    np.testing.assert_allclose(deep.test_loss, kernel.test_loss, rtol=1e-4)


@pytest.fixture(scope="module")
def study():
    # a = 3, b = 0.5, 1e5 modes (a quadrature of 112 shares), depth 1, infinite width: lazy
    # (gamma0 = 0.01) and rich (gamma0 = 3), population flow to t = 1e4; the frontier at two widths
    # around nu ~ 1 / M (the effective dimension of the data relative to D), also to t = 1e4.
    return power_law.power_law_study(richness=(0.01, 3.0), frontier_widths=(1e-5, 1e-3), frontier_time=1e4)


@pytest.mark.slow
@needs_deep_flow
def test_lazy_flow_with_many_modes_is_the_kernel_curve_with_exponent_b(study):
    # Issue 11, deep lazy limit: the flow equals sum_k w_k lambda_k b_k exp(-2 c lambda_k t) with
    # c = L + 1 = 2, to the flow's accuracy (rtol 1e-4, accumulated over four decades of time: 1e-3)
    # plus O(gamma0^2) = 1e-4 of feature learning; its exponent on [10, 1e4] is b within 0.01, and
    # the interval from window choices is narrower than a quarter of the gap to 2b/(1+b).
    ds, figure = study
    assert figure is not None and np.all(ds["status"].values == 0)
    np.testing.assert_allclose(ds["test_loss"].sel(gamma0=0.01), ds["kernel_test_loss"], rtol=1.1e-3)
    lazy = ds.sel(gamma0=0.01)
    b = ds.attrs["kernel_rate"]
    assert abs(float(lazy["exponent"]) - b) < 0.01
    assert float(lazy["exponent_high"] - lazy["exponent_low"]) < (ds.attrs["rich_rate_published"] - b) / 4


@pytest.mark.slow
@needs_deep_flow
def test_rich_flow_decays_faster_and_the_frontier_spans_two_decades(study):
    ds, _ = study
    lazy, rich = ds.sel(gamma0=0.01), ds.sel(gamma0=3.0)
    assert float(rich["exponent_low"]) > float(lazy["exponent_high"])  # reported, compared in the README
    # the frontier: initial loss 1 + mean(w lambda) / (gamma0^2 nu) (THEORY.md section 2), the lower
    # envelope of the widths, fitted over at least two decades of compute
    k, counts = dmft.PowerLaw(a=3.0, b=0.5, modes=100_000).mode_rule()
    mean_eigenvalue = float(np.sum(counts * k**-3.0)) / 1e5
    np.testing.assert_allclose(ds["frontier_test_loss"].sel(frontier_time=0.0), 1 + mean_eigenvalue / ds["width_ratio"],
                               rtol=1e-12)
    np.testing.assert_array_equal(ds["frontier_loss"].values, np.nanmin(ds["loss_at_compute"].values, axis=1))
    assert ds.attrs["frontier_decades"] >= 2 and np.isfinite(ds.attrs["frontier_exponent"])
