"""The train loss of finite networks extrapolates to the DMFT in 1/D, like the test loss.

tests/test_deep.py fits the curve-averaged relative gap of the *test* loss to ``a / D + b`` over five
sizes; this file makes the same check for the *train* loss, which converges more slowly (its
finite-size allowance is twice the test loss's, tests/tolerances.py) and which near the edge of
stability was the one that looked off. Slow tier: five sizes x six configurations of simulations
(about 2-3 minutes on 2 busy cores). Seeds differ from tests/test_deep.py's, so the two files are
independent samples.
"""

from __future__ import annotations

import numpy as np
import pytest

import dmft
import finite_size
from helpers import assert_close_curves, curve_averaged_gap, fit_one_over_dim
from tolerances import SIMULATION_CASES, TOL

SIZES = ((52, 400), (104, 200), (208, 100), (416, 64), (832, 32))  # (D, seeds); multiples of 4


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SIMULATION_CASES))
def test_train_loss_gap_extrapolates_to_zero_in_one_over_dim(name):
    """Five sizes, D = 52 ... 832: the weighted fit of the curve-averaged relative train-loss gap to
    ``a / D + b`` gives ``b = 0`` within TOL.sems_intercept standard errors, its ``a`` lies within
    the train-loss allowance (|a| <= TOL.train_bias_per_dim plus its standard errors), and the
    largest size agrees point by point within that allowance. The test loss of the same runs is
    fitted too (the two share the runs, so checking both costs nothing more)."""
    model, data, training = SIMULATION_CASES[name]
    theory = dmft.solve(model, data, training)
    runs = [finite_size.simulate(model, data, training, dim=dim, seeds=seeds, seed=dim + 7) for dim, seeds in SIZES]
    dims = [dim for dim, _ in SIZES]
    for kind in ("train", "test"):
        curve = getattr(theory, f"{kind}_loss")
        gaps, errors = zip(*(curve_averaged_gap(curve, sim.arrays[f"{kind}_loss_per_seed"]) for sim in runs))
        fit = fit_one_over_dim(dims, gaps, errors)
        allowance = (TOL.train_bias_per_dim if kind == "train" else TOL.test_bias_per_dim).value
        assert abs(fit["intercept"]) <= TOL.sems_intercept.value * fit["intercept_se"], (name, kind, gaps, errors, fit)
        assert abs(fit["slope"]) <= allowance + TOL.sems_intercept.value * fit["slope_se"], (name, kind, fit)
        largest = runs[-1]
        assert_close_curves(curve, getattr(largest, f"{kind}_loss"), getattr(largest, f"{kind}_loss_sem"),
                            sems=TOL.sems_curve.value, allowance=allowance / dims[-1],
                            label=f"{name} {kind} D={dims[-1]}")


def test_the_one_over_dim_fit_recovers_a_known_line():
    """The fit itself, on exact data: gap = 12 / D - 0.003 with unequal errors is recovered to
    round-off, and the standard errors follow the weights (halving every error halves them)."""
    dims = np.array([52.0, 104.0, 208.0, 416.0, 832.0])
    errors = np.array([0.01, 0.012, 0.008, 0.02, 0.015])
    fit = fit_one_over_dim(dims, 12 / dims - 0.003, errors)
    assert fit["slope"] == pytest.approx(12.0, rel=1e-12) and fit["intercept"] == pytest.approx(-0.003, abs=1e-14)
    half = fit_one_over_dim(dims, 12 / dims - 0.003, errors / 2)
    assert half["intercept_se"] == pytest.approx(fit["intercept_se"] / 2, rel=1e-12)
    # with one point per size the intercept's error is that of a two-parameter line through it
    two = fit_one_over_dim(dims[:2], [0.1, 0.05], [0.01, 0.01])
    weight = dims[1] / (dims[1] - dims[0])  # b = w g_large + (1 - w) g_small
    assert two["intercept"] == pytest.approx(weight * 0.05 + (1 - weight) * 0.1, rel=1e-12)
    assert two["intercept_se"] == pytest.approx(np.hypot(weight * 0.01, (1 - weight) * 0.01), rel=1e-12)
