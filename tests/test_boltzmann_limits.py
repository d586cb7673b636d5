"""Honest limits of the equilibrium-chain solver (``chain_speed = inf``, issue 12): where its
equations (one condensed mode, no condensed bulk) stop applying it raises dmft.UnsupportedError
instead of returning a curve; and one definition per observable for the DMFT and the simulator."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dmft
from dmft.boltzmann_equilibrium import equilibrium

MODEL = dmft.SphericalBoltzmann()


@pytest.mark.parametrize("eigenvalues, gamma", [((1.5, 1.2, 0.3), 1.0), ((1.0, 1.0), 0.5)])
def test_second_condensing_mode_raises(eigenvalues, gamma):
    """The RMT equilibrium of these points has d = 2 condensed modes (checked first, independently):
    the dynamics must refuse when the second one condenses, not continue with one."""
    data = dmft.DataCovariance(eigenvalues=eigenvalues)
    training = dmft.Langevin(time=60.0, prior_precision=gamma, likelihood_weight=math.inf,
                             chain_speed=math.inf, save_at=(0.0, 5.0, 20.0, 60.0))
    assert equilibrium(MODEL, data, training).condensed_modes == 2
    with pytest.raises(dmft.UnsupportedError, match="a second data mode condenses"):
        dmft.solve(MODEL, data, training)


def test_one_condensed_mode_still_runs_to_the_equilibrium():
    """Control for the guard: d = 1 at equilibrium runs, and its long-time top eigenvalue is the RMT
    one (to 1e-3: the finite-time approach at t = 60 and the grid error, measured 4e-5 relative)."""
    data = dmft.DataCovariance(eigenvalues=(1.5, 1.2, 0.3))
    training = dmft.Langevin(time=60.0, prior_precision=2.0, likelihood_weight=math.inf,
                             chain_speed=math.inf, save_at=(0.0, 60.0))
    result = dmft.solve(MODEL, data, training)
    assert result.success
    assert result.arrays["top_eigenvalue"][-1] == pytest.approx(equilibrium(MODEL, data, training).top_eigenvalue, rel=1e-3)


@pytest.mark.parametrize("gamma, eta", [(1.0, 1.0), (0.5, 2.0)])
def test_sticky_bulk_raises(gamma, eta):
    """beta J >= 1 (J^2 = 1/(gamma eta)): the bulk condenses at once (sticky phase)."""
    training = dmft.Langevin(time=5.0, prior_precision=gamma, likelihood_weight=eta, chain_speed=math.inf)
    with pytest.raises(dmft.UnsupportedError, match="sticky phase"):
        dmft.solve(MODEL, dmft.SpikedTeacher(4.0, 2), training)


def test_observables_have_one_definition():
    """forward_kl, reverse_kl: the DMFT's spectral curves, the simulator (and, for the forward KL, the
    RMT equilibrium) call the same functions of dmft.boltzmann; top_overlap is (v_1.e_1)^2 in both
    (the simulator's overlaps[..., 0, 0]). Checked by the formulas' known values: at the teacher's own
    couplings the KLs vanish."""
    import finite_size.boltzmann as simulator
    from dmft import boltzmann, boltzmann_equilibrium
    from dmft.solvers import _boltzmann_spectrum as spectrum

    for module in (simulator, spectrum):
        assert module.forward_kl is boltzmann.forward_kl and module.reverse_kl is boltzmann.reverse_kl
    assert boltzmann_equilibrium.forward_kl is boltzmann.forward_kl
    # W = W* = omega u u^T (teacher, beta = 1): mu = omega, ln Z/N = (omega - 1 - ln omega)/2,
    # <x x^T> weight on u = m = 1 - 1/omega, E_teacher x^T W x / N = omega m: both KLs are 0
    omega = 3.0
    log_z = 0.5 * (omega - 1 - math.log(omega))
    m = 1 - 1 / omega
    assert boltzmann.forward_kl(omega, 1.0, omega * m, log_z) == pytest.approx(0.0, abs=1e-15)
    assert boltzmann.reverse_kl(omega, 1.0, omega, log_z, m) == pytest.approx(0.0, abs=1e-15)
