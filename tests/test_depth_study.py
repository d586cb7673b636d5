"""dmft.studies.depth (docs/infinite_depth.md section 6): each piece of the study against what it
claims, checked by re-solving (the stability edge brackets divergence, the refined optimum beats
every scanned rate, the transferred rate reproduces the optimum where it was tuned), plus the
search routines on functions with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dmft
from dmft.studies import depth as study


def test_refine_optimum_finds_a_known_minimum():
    """Golden-section search in log(eta) on ``(log eta - log 0.037)^2``: within the precision, and
    ``nan`` (divergence) counts as +inf."""
    loss = lambda eta: (math.log(eta) - math.log(0.037)) ** 2 if eta < 0.09 else math.nan  # noqa: E731
    eta, value = study.refine_optimum(loss, 0.005, 0.2, precision=0.001)
    assert abs(eta / 0.037 - 1) < 0.002 and value < 1e-5


def test_edge_of_stability_step_on_known_curves():
    """Geometric decay with a slowing rate: no onset. A plateau from step 6 (ratio reaching 1), or
    a ratio that peaks at step 4 (oscillation): the onset is that step."""
    smooth = np.cumprod(np.concatenate([[1.0], np.linspace(0.5, 0.9, 20)]))
    assert study.edge_of_stability_step(smooth) is None
    plateau = smooth.copy()
    plateau[7:] = plateau[6]
    assert study.edge_of_stability_step(plateau) == 6
    ratios = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.85, 0.95, 0.97])
    peaked = np.cumprod(np.concatenate([[1.0], ratios]))
    assert study.edge_of_stability_step(peaked) == 4


@pytest.mark.parametrize("family", ["plain", "residual"])
def test_stability_edge_brackets_divergence(family):
    """The returned rate trains without diverging for the horizon; 2 % above it (twice the
    bisection precision) the run diverges."""
    model, data, steps = study.family_model(family, 3), dmft.GaussianData(alpha=2.0), 20
    edge = study.stability_edge(model, data, steps, precision=0.01)
    assert math.isfinite(study.final_test_loss(model, data, dmft.GradientDescent(edge, steps)))
    assert math.isnan(study.final_test_loss(model, data, dmft.GradientDescent(1.02 * edge, steps)))


def test_depth_transfer_small_run_is_consistent():
    """A small study (depths 2 and 4 and the limit, residual and plain, 15 steps): the optimum lies
    below the edge and its loss is no larger than any scanned rate's; the transferred rate is the
    optimum at ``transfer_from`` and reproduces its loss there; the limit's optimum is closer to
    depth 4's than depth 2's (the optimal rate converges with depth, docs/infinite_depth.md)."""
    ds, figure = study.depth_transfer(
        steps=15, depths=(2, 4), families=("residual", "plain"), points=5, transfer_from=4, figure=False,
        edge_precision=0.02, optimum_precision=0.02,
    )
    assert figure is None
    for family in ("residual", "plain"):
        rows = ds.sel(family=family, depth=[2.0, 4.0])
        assert np.all(rows["optimal_learning_rate"] <= rows["stability_edge"] * (1 + 1e-12))
        scanned = np.nanmin(rows["test_loss"].values, axis=-1)
        assert np.all(rows["optimal_loss"].values <= scanned * (1 + 1e-12))
        source = ds.sel(family=family, depth=4.0)
        assert float(ds["transferred_rate"].sel(family=family)) == float(source["optimal_learning_rate"])
        assert float(source["loss_at_transferred_rate"]) == pytest.approx(float(source["optimal_loss"]), rel=1e-12)
    residual = ds.sel(family="residual")["optimal_learning_rate"].values  # depths 2, 4, inf
    assert abs(residual[2] - residual[1]) < abs(residual[2] - residual[0])
    assert np.isnan(float(ds.sel(family="plain", depth=np.inf)["optimal_learning_rate"]))
    table = study.markdown_table(ds)
    assert table.count("\n") == 4 and "| inf |" in table
