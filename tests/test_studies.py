"""Studies of issue 7 (dmft.studies): learning-rate transfer and width/depth scaling (the power-law
study is tested in tests/test_power_law.py).

Each study is checked against something outside its own bookkeeping: the analysis helpers against
closed forms (a parabola's vertex, a pure power law, a separable loss surface), the scaling study
against THEORY.md's initial values and the ``1 / nu`` large-width law of the initialisation variance,
and the transfer study against the claims of issue 7 (muP transfers across width, NTK drifts; in
muP wider is better at every learning rate), in numbers. The DMFT is deterministic, so there is no
sampling error anywhere here: every tolerance is a round-off, discretisation or model-size argument.
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest

import dmft
from dmft.studies import scaling, transfer

matplotlib.use("Agg")


# --------------------------------------------------------------------------- transfer: analysis helpers


def test_optimal_learning_rate_is_the_vertex_of_a_log_log_parabola():
    # log L = 0.7 (log eta - log 0.13)^2 + log 0.02 is a parabola in (log eta, log L): the three-point
    # refinement must return its vertex exactly (to round-off), wherever it sits between grid points.
    rates = np.geomspace(0.01, 1.0, 9)
    losses = np.exp(0.7 * (np.log(rates) - np.log(0.13)) ** 2 + np.log(0.02))
    eta, loss, at_edge = transfer.optimal_learning_rate(rates, losses)
    assert not at_edge
    assert eta == pytest.approx(0.13, rel=1e-12)
    assert loss == pytest.approx(0.02, rel=1e-12)


def test_optimal_learning_rate_flags_a_minimum_without_bracket():
    rates = np.geomspace(0.01, 1.0, 5)
    assert transfer.optimal_learning_rate(rates, [1.0, 2.0, 3.0, 4.0, 5.0])[2]  # first point
    # the neighbour above the minimum diverged (NaN): no bracket, the grid point is returned
    eta, loss, at_edge = transfer.optimal_learning_rate(rates, [5.0, 2.0, 1.0, np.nan, np.nan])
    assert at_edge and eta == rates[2] and loss == 1.0
    assert math.isnan(transfer.optimal_learning_rate(rates, [np.nan] * 5)[0])
    with pytest.raises(ValueError, match="learning_rates"):
        transfer.optimal_learning_rate(rates[::-1], np.ones(5))


def test_width_ordering_counts_only_comparable_pairs():
    losses = np.array([
        [3.0, 2.0, np.nan, 1.0],
        [2.0, 2.0, 1.0, np.nan],   # tie at lr 1 (not strictly better); wider diverged at lr 3
        [1.0, 1.5, 0.5, np.nan],
    ])
    out = transfer.width_ordering(losses)
    np.testing.assert_array_equal(out["comparable_pairs"], [2, 2, 1, 0])
    np.testing.assert_array_equal(out["violations"], [0, 1, 0, 0])
    np.testing.assert_array_equal(out["wider_diverged"], [0, 0, 0, 1])
    np.testing.assert_array_equal(out["wider_is_better"], [True, False, True, False])
    assert out["smallest_relative_gap"][0] == pytest.approx(1 / 3) and out["smallest_relative_gap"][1] == 0


# --------------------------------------------------------------------------- transfer: the claims of issue 7


@pytest.fixture(scope="module")
def transfer_study():
    # the cheap default: depth 2, gamma0 = 2, online SGD (batch = D, noiseless), 30 steps;
    # widths 0.25, 1, 4, 16 x 12 learning rates x {muP, NTK} = 96 DMFT solves (~4 s)
    return transfer.learning_rate_transfer(use_cache=False)


def test_transfer_mup_optimum_drifts_less_than_ntk(transfer_study):
    ds, figure = transfer_study
    # every optimum is bracketed on the grid, so every drift is measured, not a bound
    assert not ds["optimum_at_grid_edge"].values.any()
    drift = ds["optimal_learning_rate_drift"]
    mup, ntk = float(drift.sel(parameterization="mup")), float(drift.sel(parameterization="ntk"))
    # Margin: the refined optima move by at most 5.3 % between this 12-point grid and a 22-point
    # grid (benchmarks/make_study_figures.py), so each drift ratio is known to ~11 % and their
    # quotient to ~23 %; "muP drifts much less" is asserted as NTK/muP > 1.5 (measured 3.07 / 1.60
    # = 1.92 here, 3.02 / 1.51 = 2.00 on the fine grid with 7 widths).
    assert ntk / mup > 1.5, (mup, ntk)
    # NTK's optimum moves monotonically up with width (wider = lazier: less kernel growth, a later
    # edge of stability); muP's does not run away: its optimum over nu >= 1 stays within 25 %.
    ntk_optima = ds["optimal_learning_rate"].sel(parameterization="ntk").values
    assert np.all(np.diff(ntk_optima) > 0)
    mup_optima = ds["optimal_learning_rate"].sel(parameterization="mup").sel(width_ratio=[1.0, 4.0, 16.0]).values
    assert mup_optima.max() / mup_optima.min() < 1.25
    assert figure is not None and len(figure.axes) == 3


def test_transfer_mup_wider_is_better_at_every_learning_rate(transfer_study):
    ds, _ = transfer_study
    mup = ds.sel(parameterization="mup")
    # Compared only where both neighbouring widths converged; where the narrower one diverged the
    # wider one is better a fortiori, and no wider run diverged where a narrower one converged.
    assert int(mup["wider_diverged"].sum()) == 0
    compared = mup["comparable_pairs"].values > 0
    assert compared.sum() >= 9  # at least 9 of the 12 learning rates have a converged pair
    assert mup["wider_is_better"].values[compared].all()
    assert int(mup["width_order_violations"].sum()) == 0
    # Strict: the DMFT is exact up to round-off (~1e-13 relative), so a gap above 1e-6 is no tie;
    # the closest pair differs by 12 % (measured).
    assert np.nanmin(mup["smallest_relative_gap"].values) > 1e-6


def test_transfer_optima_agree_with_a_direct_minimisation_of_the_dmft(transfer_study):
    """Independent of the study's grid and parabola: scipy's bounded minimisation of the test loss
    of dmft.solve itself, in log eta, between the grid neighbours of each optimum. The parabola
    through three grid points a factor 1.31 apart misses the true minimiser by up to 9.2 % (measured,
    at nu = 0.25 where the loss is most asymmetric about its minimum; 0.1-2 % elsewhere): 10 %
    bounds that interpolation error. The drift claim then holds for the true optima as well
    (measured x1.51 muP vs x2.85 NTK). The study's table entries are the direct solves, bit for bit."""
    from scipy import optimize

    ds, _ = transfer_study
    rates = ds["learning_rate"].values
    data, steps = dmft.GaussianData(alpha=None), 30

    def final_loss(model, eta):
        return dmft.solve(model, data, dmft.OnlineSGD(eta, steps, batch_ratio=1.0), self_consistency=False).test_loss[-1]

    true = {}
    for name in ("mup", "ntk"):
        for nu in ds["width_ratio"].values:
            model = dmft.DeepLinear(depth=2, gamma0=2.0, width_ratio=float(nu), parameterization=name)
            eta = float(ds["optimal_learning_rate"].sel(parameterization=name, width_ratio=nu))
            i = int(np.searchsorted(rates, eta))  # rates[i - 1] < eta <= rates[i]: the bracket holds it
            found = optimize.minimize_scalar(lambda x: math.log(final_loss(model, math.exp(x))), method="bounded",
                                             bounds=(math.log(rates[i - 2]), math.log(rates[i + 1])),
                                             options={"xatol": 1e-5})
            assert found.success, found
            true[name, nu] = math.exp(found.x)
            assert eta == pytest.approx(true[name, nu], rel=0.10), (name, nu, eta, true[name, nu])
    drift = {name: max(v for (n, _), v in true.items() if n == name) / min(v for (n, _), v in true.items() if n == name)
             for name in ("mup", "ntk")}
    assert drift["ntk"] / drift["mup"] > 1.5, drift
    for name, nu, eta in (("mup", 1.0, rates[4]), ("ntk", 16.0, rates[7])):
        model = dmft.DeepLinear(depth=2, gamma0=2.0, width_ratio=nu, parameterization=name)
        assert float(ds["final_test_loss"].sel(parameterization=name, width_ratio=nu, learning_rate=eta)) == \
            final_loss(model, float(eta))


def test_transfer_rejects_bad_grids():
    with pytest.raises(ValueError, match="widths"):
        transfer.learning_rate_transfer(widths=[4.0, 1.0], use_cache=False)
    with pytest.raises(ValueError, match="parameterizations"):
        transfer.learning_rate_transfer(parameterizations=["sp"], use_cache=False)


# --------------------------------------------------------------------------- scaling


def test_scaling_parts_add_up_and_start_from_theory():
    model = dmft.DeepLinear(depth=2, width_ratio=1.0, gamma0=1.5)
    data = dmft.GaussianData(alpha=2.0, noise=0.3)
    ds, figure = scaling.width_depth_scaling(
        widths=[0.5, 2.0], depths=[1, 3], model=model, data=data,
        training=dmft.GradientDescent(learning_rate=0.05, steps=20), use_cache=False,
    )
    for name in ("width_test_loss", "depth_test_loss"):
        parts = ds[name].sel(part=["bias", "init_variance", "data_variance"]).sum("part")
        # the parts are three sums of the same C_v(t, t) and sigma^2 is added once: round-off only
        np.testing.assert_allclose(parts + data.noise**2, ds[name].sel(part="total"), rtol=1e-12)
    start = ds["width_test_loss"].sel(step=0)
    # THEORY.md section 2: initial loss 1 + sigma^2 + 1/(gamma0^2 nu); bias(0) = mean(lambda b) = 1
    np.testing.assert_allclose(start.sel(part="init_variance"), 1 / (1.5**2 * np.array([0.5, 2.0])), rtol=1e-14)
    np.testing.assert_allclose(start.sel(part="init_variance"), ds["initial_init_variance_expected"], rtol=1e-14)
    np.testing.assert_allclose(start.sel(part="bias"), 1.0, rtol=1e-14)
    np.testing.assert_allclose(start.sel(part="data_variance"), 0.0, atol=1e-15)
    # fixed compute reads the curves: at C = 2 * 10 the width 2 has run exactly 10 steps
    at = scaling.loss_at_compute(ds["width_test_loss"].sel(part="total").values, [0.5, 2.0], [20.0])
    assert at["loss"][0, 1] == float(ds["width_test_loss"].sel(part="total", width_ratio=2.0, step=10))
    assert figure is not None


def _marchenko_pastur_moment(function, alpha: float) -> float:
    """``int function(l) dmu(l)`` over the Marchenko-Pastur law of ``X^T X / P``, ``P = alpha D``,
    ``alpha >= 1`` (no atom), by Gauss-Jacobi-type quadrature of its square-root edges (scipy)."""
    from scipy import integrate

    ratio = 1 / alpha
    low, high = (1 - math.sqrt(ratio)) ** 2, (1 + math.sqrt(ratio)) ** 2
    value, _ = integrate.quad(lambda x: function(x) / (2 * math.pi * ratio * x), low, high, weight="alg",
                              wvar=(0.5, 0.5), epsabs=1e-14, epsrel=1e-13)
    return value


def test_scaling_parts_in_the_lazy_limit_are_the_random_matrix_closed_forms():
    """NTK parameterization, nu -> infinity at fixed gamma0: the network is linear regression with
    learning rate k = (depth + 1) eta from an initial error of variance 1 + 1/gamma0^2 (tests/test_deep.py).
    There each part of the study is a closed form over the Marchenko-Pastur law mu (alpha = 2):
    bias(t) = (int (1 - k l)^t dmu)^2 (the error's mean over data sets, squared), init_variance(t) =
    bias(t) / gamma0^2 (the initial function decays like the teacher), and data_variance = the
    linear-regression test loss (1 + 1/gamma0^2) int (1 - k l)^{2t} dmu + (sigma^2/alpha) int
    (1 - (1 - k l)^t)^2 / l dmu + sigma^2 minus the other parts and sigma^2. The corrections are
    O(1/nu) (measured 0.9e-5 and 1.6e-5 at nu = 1e4): every part within 4e-5 there, ten times
    closer than at nu = 1e3."""
    depth, gamma0, eta, sigma, steps, alpha = 2, 1.5, 0.05, 0.3, 20, 2.0
    ds, _ = scaling.width_depth_scaling(
        widths=[1e3, 1e4], depths=[depth], model=dmft.DeepLinear(depth=depth, gamma0=gamma0, parameterization="ntk"),
        data=dmft.GaussianData(alpha=alpha, noise=sigma), training=dmft.GradientDescent(eta, steps),
        figure=False, use_cache=False,
    )
    k = (depth + 1) * eta
    mean = np.array([_marchenko_pastur_moment(lambda x, t=t: (1 - k * x) ** t, alpha) for t in range(steps + 1)])
    square = np.array([_marchenko_pastur_moment(lambda x, t=t: (1 - k * x) ** (2 * t), alpha) for t in range(steps + 1)])
    noise = np.array([_marchenko_pastur_moment(lambda x, t=t: (1 - (1 - k * x) ** t) ** 2 / x, alpha)
                      for t in range(steps + 1)])
    total = (1 + 1 / gamma0**2) * square + sigma**2 / alpha * noise + sigma**2
    expected = {"bias": mean**2, "init_variance": mean**2 / gamma0**2,
                "data_variance": total - (1 + 1 / gamma0**2) * mean**2 - sigma**2, "total": total}
    for part, curve in expected.items():
        gaps = [float(np.max(np.abs(ds["width_test_loss"].sel(width_ratio=nu, part=part).values - curve)))
                for nu in (1e3, 1e4)]
        assert gaps[1] < 4e-5 and 8 < gaps[0] / gaps[1] < 12, (part, gaps)


def test_init_variance_part_falls_like_one_over_width():
    # The initial function enters only through the source (gamma0 sqrt(nu))^-1 xi (THEORY.md 2.1),
    # and the propagators it passes through converge as nu -> infinity with O(1/nu) corrections, so
    # nu * init_variance(t) converges: the log-log slope between neighbouring widths tends to -1,
    # its error shrinking by about the width ratio (4) per step.
    slopes = []
    for widths in ([16.0, 64.0], [256.0, 1024.0]):
        ds, _ = scaling.width_depth_scaling(
            widths=widths, depths=[2], training=dmft.GradientDescent(learning_rate=0.05, steps=40),
            figure=False, use_cache=False,
        )
        slopes.append(float(ds["large_width_exponent"].sel(part="init_variance")))
    assert abs(slopes[1] + 1) < abs(slopes[0] + 1) / 4
    assert abs(slopes[1] + 1) < 0.01


def test_loss_at_compute_finds_the_optimum_of_a_separable_surface():
    # L(nu, t) = 1/nu + 4/t: at compute C (t = C/nu) the optimum is nu* = sqrt(C/4), L* = 4/sqrt(C).
    widths = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    steps = np.arange(0, 257)
    with np.errstate(divide="ignore"):
        losses = 1 / widths[:, None] + 4 / steps[None, :]
    budgets = np.array([16.0, 64.0, 128.0])  # nu* = 2, 4, 5.66 (grid optimum 4 or 8: the min on the grid)
    out = scaling.loss_at_compute(losses, widths, budgets)
    brute = 1 / widths[None, :] + 4 * widths[None, :] / budgets[:, None]
    np.testing.assert_allclose(out["loss"], brute, rtol=1e-12)
    np.testing.assert_allclose(out["frontier"], brute.min(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(out["optimal_width"], widths[brute.argmin(axis=1)])
    # a budget where the narrowest width would need more than 256 steps has no frontier
    assert math.isnan(scaling.loss_at_compute(losses, widths, [200.0])["frontier"][0])


def test_studies_reject_bad_parameters_by_name():
    with pytest.raises(ValueError, match="widths"):
        scaling.width_depth_scaling(widths=[1.0], use_cache=False)
    with pytest.raises(ValueError, match="compute"):
        scaling.width_depth_scaling(widths=[0.25, 64.0], use_cache=False)  # 0.25 * 100 steps < 64
    with pytest.raises(ValueError, match="simulate"):
        transfer.learning_rate_transfer(widths=[1.0, 2.0], learning_rates=[0.05, 0.1, 0.2],
                                        simulate={"dim": 10}, use_cache=False, figure=False)
