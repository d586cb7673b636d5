"""Helpers shared by the tests (tolerances and shared cases: tests/tolerances.py)."""

from __future__ import annotations

import math

import numpy as np


def assert_close_curves(theory, simulated, simulated_sem, *, sems: float, allowance: float = 0.0, label=""):
    """``|theory - simulated| <= sems * sem + allowance * |theory|`` at every entry.

    ``sems`` is the number of standard errors tolerated (the simulation's statistical error), and
    ``allowance`` a relative finite-size bias argued by the caller (O(1/D) corrections).
    """
    theory, simulated, simulated_sem = (np.asarray(a, dtype=float) for a in (theory, simulated, simulated_sem))
    gap = np.abs(theory - simulated)
    bound = sems * simulated_sem + allowance * np.abs(theory)
    worst = int(np.argmax(gap - bound))
    assert np.all(gap <= bound), (
        f"{label}: gap {gap[worst]:.4g} exceeds {bound[worst]:.4g} at index {worst} "
        f"(theory {theory[worst]:.6g}, simulation {simulated[worst]:.6g} +- {simulated_sem[worst]:.3g})"
    )


def curve_averaged_gap(theory, per_seed) -> tuple[float, float]:
    """Mean over the curve of the relative gap ``(simulation - theory) / theory`` and its standard
    error over seeds (per seed the curve average is one number; seeds are independent).

    ``theory``: ``(T + 1,)``; ``per_seed``: ``(seeds, T + 1)`` (``result.arrays["..._per_seed"]``).
    """
    theory = np.asarray(theory, dtype=float)
    per_seed_gap = np.mean((np.asarray(per_seed, dtype=float) - theory) / theory, axis=1)
    return float(per_seed_gap.mean()), float(per_seed_gap.std(ddof=1) / math.sqrt(per_seed_gap.size))


def fit_one_over_dim(dims, gaps, errors) -> dict[str, float]:
    """Weighted least squares of ``gap = slope / D + intercept`` (weights ``1 / error^2``).

    Returns ``slope``, ``intercept`` (the ``D -> infinity`` value) and their standard errors
    ``slope_se``, ``intercept_se`` from the covariance ``(A^T W A)^{-1}`` (the errors are the
    standard errors of independent simulations, so no rescaling by the residual).
    """
    dims, gaps, errors = (np.asarray(a, dtype=float) for a in (dims, gaps, errors))
    design = np.stack([1.0 / dims, np.ones_like(dims)], axis=1) / errors[:, None]
    (slope, intercept), *_ = np.linalg.lstsq(design, gaps / errors, rcond=None)
    covariance = np.linalg.inv(design.T @ design)
    return {"slope": float(slope), "intercept": float(intercept),
            "slope_se": math.sqrt(covariance[0, 0]), "intercept_se": math.sqrt(covariance[1, 1])}
