"""One table of the tolerances the tests use, each with its argument, and shared test cases.

A test states what kind of comparison it makes by naming the tolerance (``TOL.roundoff``,
``TOL.sems_curve``...), so that the value and the reason for it live in one place::

    from tolerances import TOL, SIMULATION_CASES
    np.testing.assert_allclose(fast, reference, rtol=TOL.roundoff.value)
    assert_close_curves(theory, sim.test_loss, sim.test_loss_sem, sems=TOL.sems_curve.value,
                        allowance=TOL.test_bias_per_dim.value / dim)

Adding a tolerance: a new entry with the value and the argument (what error it bounds, and the
measurement or the law behind the number). Loosening one to make a test pass is not an argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import dmft

__all__ = ["Tolerance", "TOL", "SIMULATION_CASES"]


@dataclass(frozen=True)
class Tolerance:
    """A tolerance: its ``value`` and the ``argument`` for it."""

    value: float
    argument: str

    def __float__(self) -> float:
        return float(self.value)


@dataclass(frozen=True)
class _Table:
    bit_exact: Tolerance
    roundoff: Tolerance
    roundoff_atol: Tolerance
    sems_curve: Tolerance
    sems_point: Tolerance
    sems_intercept: Tolerance
    test_bias_per_dim: Tolerance
    train_bias_per_dim: Tolerance


TOL = _Table(
    bit_exact=Tolerance(
        0.0,
        "the same deterministic computation reached two ways (a sweep point and the direct call, a "
        "saved and a loaded result, a cached and a computed point): equal bits, assert_array_equal",
    ),
    roundoff=Tolerance(
        1e-11,
        "two exact evaluations of the same finite sums in a different order (BLAS vs Numba loops, "
        "dense inverses vs forward substitution): relative round-off ~ (number of terms) x eps ~ "
        "1e-14 at T <= 40 and O(1) entries; 1e-11 leaves three decades for the growth of entries",
    ),
    roundoff_atol=Tolerance(1e-12, "the absolute floor of `roundoff` for entries that vanish exactly"),
    sems_curve=Tolerance(
        4.0,
        "the largest |gap| / SEM over ~20 strongly correlated points of one curve, SEM from 16-32 "
        "seeds: Student t with 15 degrees of freedom, P(|t| > 4) = 0.1 % per point",
    ),
    sems_point=Tolerance(
        3.0,
        "|gap| / SEM at one pre-chosen point, SEM from >= 16 seeds: P(|t| > 3) < 1 %",
    ),
    sems_intercept=Tolerance(
        4.0,
        "the D -> infinity intercept of a weighted least-squares fit gap = a / D + b over 2-5 "
        "sizes, against 0, in units of its own standard error (normal, P(|z| > 4) = 6e-5)",
    ),
    test_bias_per_dim=Tolerance(
        20.0,
        "D x the relative O(1/D) finite-size bias of a mean test-loss curve (Wishart linear "
        "statistics, 1/N corrections of the hidden layers): measured <= ~15 with 48-400 seeds at "
        "D = 50 ... 800 for SIMULATION_CASES (the narrow NTK online case is the largest)",
    ),
    train_bias_per_dim=Tolerance(
        40.0,
        "D x the relative O(1/D) bias of a mean train-loss curve: measured <= ~30 for "
        "SIMULATION_CASES (late-time train loss at alpha < 1 is small and converges slowest)",
    ),
)


# Configurations checked against finite-width simulations (deep linear networks, THEORY.md 2.1):
# each with 25 steps, a stable learning rate well inside the edge of stability, one feature each.
SIMULATION_CASES = {
    # depth 1, alpha < 1 with label noise: the test loss falls, then rises (overfitting)
    "depth1-gd-overfit": (
        dmft.DeepLinear(depth=1, width_ratio=2.0),
        dmft.GaussianData(alpha=0.8, noise=0.5),
        dmft.GradientDescent(learning_rate=0.1, steps=25),
    ),
    "depth2-gd-alpha-half": (
        dmft.DeepLinear(depth=2, gamma0=1.5),
        dmft.GaussianData(alpha=0.5, noise=0.3),
        dmft.GradientDescent(learning_rate=0.05, steps=25),
    ),
    "depth3-gd-ntk": (
        dmft.DeepLinear(depth=3, width_ratio=0.7, parameterization="ntk"),
        dmft.GaussianData(alpha=1.5, noise=0.2),
        dmft.GradientDescent(learning_rate=0.05, steps=25),
    ),
    "depth2-online-noise": (
        dmft.DeepLinear(depth=2, width_ratio=1.0, gamma0=0.8),
        dmft.GaussianData(alpha=None, noise=0.2),
        dmft.OnlineSGD(learning_rate=0.1, steps=25, batch_ratio=1.0),
    ),
    "depth3-online-ntk-narrow": (
        dmft.DeepLinear(depth=3, width_ratio=0.5, parameterization="ntk", gamma0=1.5),
        dmft.GaussianData(alpha=None, noise=0.0),
        dmft.OnlineSGD(learning_rate=0.05, steps=25, batch_ratio=0.5),
    ),
    "depth2-gd-spectrum": (  # four equal shares of the D directions: sizes must be multiples of 4
        dmft.DeepLinear(depth=2),
        dmft.GaussianData(alpha=1.5, noise=0.1, spectrum=dmft.Spectrum([2.5, 1.0, 0.35, 0.15], [0.2, 0.5, 1.5, 2.0])),
        dmft.GradientDescent(learning_rate=0.1, steps=25),
    ),
}
