"""Helpers shared by the tests."""

from __future__ import annotations

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
