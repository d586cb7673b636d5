"""Data configurations: Spectrum weights, the top-normalised PowerLaw and its many-mode quadrature,
and what a finite simulation does with them (finite_size.problem.direction_spectrum).

The quadrature is checked against the exact sums over every mode (1e5 modes: cheap to sum), and
the counting Gauss rule against exact integer arithmetic.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import dmft
from dmft._serialize import config_from_dict, config_to_dict
from dmft.data import EXACT_MODES, counting_gauss_rule, power_law_mode_rule
from finite_size.problem import direction_spectrum

# The quadrature's documented accuracy (docs/power_law.md, "Many modes"): measured worst case
# 1.4e-6 relative over a in {1, 1.5, 3, 5}, b in {0.25, 0.5, 1, 2}, before the cut-off.
QUADRATURE_RTOL = 2e-6


# ------------------------------------------------------------------------------------------------
# Spectrum weights
# ------------------------------------------------------------------------------------------------


def test_spectrum_weights_are_validated_by_name():
    spectrum = dmft.Spectrum([2.0, 1.0], [1.0, 0.5], weights=[0.25, 0.75])
    assert spectrum.weights == (0.25, 0.75) and spectrum.modes == 2
    np.testing.assert_array_equal(spectrum.weight_array(), [0.25, 0.75])
    np.testing.assert_array_equal(dmft.Spectrum([2.0, 1.0, 3.0], [1.0] * 3).weight_array(), [1 / 3] * 3)
    assert dmft.Spectrum([2.0, 1.0], [1.0, 0.5]).weights is None  # positional use as before
    with pytest.raises(ValueError, match="`weights` must have one entry per eigenvalue"):
        dmft.Spectrum([2.0, 1.0], [1.0, 0.5], weights=[1.0])
    with pytest.raises(ValueError, match="`weights` must be positive"):
        dmft.Spectrum([2.0, 1.0], [1.0, 0.5], weights=[1.5, -0.5])
    with pytest.raises(ValueError, match="`weights` must sum to 1"):
        dmft.Spectrum([2.0, 1.0], [1.0, 0.5], weights=[0.5, 0.6])
    with pytest.raises(ValueError, match="`weights` must be finite"):
        dmft.Spectrum([2.0, 1.0], [1.0, 0.5], weights=[0.5, math.nan])


def test_weighted_spectrum_round_trips():
    data = dmft.GaussianData(alpha=None, spectrum=dmft.PowerLaw(a=2.0, b=0.5, modes=10**6).resolve())
    assert config_from_dict(config_to_dict(data)) == data
    assert config_from_dict(config_to_dict(dmft.PowerLaw(modes=7))) == dmft.PowerLaw(modes=7)


# ------------------------------------------------------------------------------------------------
# The top-normalised power law
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("modes", [1, 7, 512, 513, 10**5])
def test_power_law_normalisation(modes):
    # lambda_1 = 1 at every mode count, initial loss sum_k w_k lambda_k b_k = 1, weights sum to 1.
    spectrum = dmft.PowerLaw(a=1.5, b=0.5, modes=modes).resolve()
    lam, w, b = np.array(spectrum.eigenvalues), spectrum.weight_array(), np.array(spectrum.teacher_variances)
    assert lam[0] == 1.0 and math.fsum(w) == pytest.approx(1.0, abs=1e-14)
    assert math.fsum(w * lam * b) == pytest.approx(1.0, rel=1e-14)
    assert (spectrum.weights is None) == (modes <= EXACT_MODES)
    # exact shares: lambda_k = k^-a, lambda_k b_k proportional to k^(-ab-1)
    exact = dmft.PowerLaw(a=1.5, b=0.5, modes=min(modes, 600)).resolve(exact=True)
    k = np.arange(1, exact.modes + 1)
    np.testing.assert_allclose(exact.eigenvalues, k**-1.5, rtol=1e-15)
    signal = np.array(exact.eigenvalues) * np.array(exact.teacher_variances)
    np.testing.assert_allclose(signal / signal[0], k**-1.75, rtol=1e-14)


def test_counting_gauss_rule_is_exact_on_polynomials():
    # sum_{i < N} i^p for p <= 2n - 1, exactly (integers), against the rule; and the integers
    # themselves when order >= count.
    for count, order in ((13, 8), (1000, 8), (10**7, 6)):
        nodes, weights = counting_gauss_rule(count, order)
        assert np.all(weights > 0) and np.all(np.diff(nodes) > 0) and 0 <= nodes[0] and nodes[-1] <= count - 1
        for power in range(2 * order):
            exact = sum(Fraction(i) ** power for i in range(count)) if count < 2000 else _power_sum(count, power)
            assert math.fsum(weights * nodes**power) == pytest.approx(float(exact), rel=1e-11), (count, order, power)
    nodes, weights = counting_gauss_rule(5, 8)
    np.testing.assert_array_equal(nodes, np.arange(5.0))
    np.testing.assert_array_equal(weights, np.ones(5))


def _power_sum(count: int, power: int) -> Fraction:
    """``sum_{i < count} i^power`` by Faulhaber's formula with exact Bernoulli numbers."""
    bernoulli = [Fraction(1)]
    for m in range(1, power + 1):
        bernoulli.append(-sum(math.comb(m + 1, j) * bernoulli[j] for j in range(m)) / (m + 1))
    n = count  # sum_{i=0}^{n-1} i^p = 1/(p+1) sum_j C(p+1, j) B_j n^(p+1-j)  (B_1 = -1/2)
    return sum(math.comb(power + 1, j) * bernoulli[j] * Fraction(n) ** (power + 1 - j) for j in range(power + 1)) / (
        power + 1
    )


def _worst_quadrature_error(a: float, b: float, modes: int, times: np.ndarray) -> float:
    """Largest relative error of the mode rule against the sum over all modes, for the averages
    every solver forms: the signal ``sum lambda^p b exp(-2 lambda t)`` (p = 0, 1) and the count
    ``sum lambda exp(-2 lambda t)``."""
    k = np.arange(1, modes + 1, dtype=float)
    nodes, counts = power_law_mode_rule(modes, a, b)
    assert counts.sum() == pytest.approx(modes, rel=1e-13)
    worst = 0.0
    for exponent in (-a * b - 1, -a * b - 1 - a, -a):
        exact = np.exp(-2 * np.outer(times, k**-a)) @ k**exponent
        rule = np.exp(-2 * np.outer(times, nodes**-a)) @ (counts * nodes**exponent)
        worst = max(worst, float(np.max(np.abs(rule / exact - 1))))
    return worst


@pytest.mark.parametrize("a,b", [(1.5, 0.5), (3.0, 0.5), (3.0, 2.0)])
def test_power_law_quadrature_matches_the_sum_over_all_modes(a, b):
    # Times up to the cut-off (the mode learned at t is k* = (2 t)^(1/a) < modes / 2).
    modes = 100_000
    times = np.geomspace(1e-2, (modes / 2) ** a / 2, 40)
    assert _worst_quadrature_error(a, b, modes, times) < QUADRATURE_RTOL


@pytest.mark.slow
@pytest.mark.parametrize("a", [1.0, 1.5, 3.0, 5.0])
@pytest.mark.parametrize("b", [0.25, 0.5, 1.0, 2.0])
def test_power_law_quadrature_matches_the_sum_over_all_modes_everywhere(a, b):
    modes = 100_000
    times = np.geomspace(1e-3, (modes / 2) ** a / 2, 150)
    assert _worst_quadrature_error(a, b, modes, times) < QUADRATURE_RTOL


def test_power_law_quadrature_shares_grow_like_log_modes():
    # ~ 8 a sqrt(1 + b + 1/a) ln(modes) / 3 shares (docstring of dmft.PowerLaw), within 15 %.
    for modes in (10**4, 10**6, 10**9):
        shares = power_law_mode_rule(modes, 3.0, 0.5)[0].size
        assert shares == pytest.approx(8 * 3 * math.sqrt(1.5 + 1 / 3) * math.log(modes) / 3, rel=0.15)


# ------------------------------------------------------------------------------------------------
# Simulations: whole directions
# ------------------------------------------------------------------------------------------------


def test_direction_spectrum_of_power_laws_and_weighted_spectra():
    # modes <= dim: the exact equal shares (also where the DMFT uses the quadrature)
    data = dmft.GaussianData(alpha=None, spectrum=dmft.PowerLaw(a=1.5, b=0.5, modes=1000))
    lam, variances = direction_spectrum(data, 2000)
    exact = dmft.PowerLaw(a=1.5, b=0.5, modes=1000).resolve(exact=True)
    np.testing.assert_array_equal(lam, np.repeat(exact.eigenvalues, 2))
    np.testing.assert_array_equal(variances, np.repeat(exact.teacher_variances, 2))
    with pytest.raises(ValueError, match="multiple"):
        direction_spectrum(data, 1500)
    # modes > dim: the power law with dim modes, one direction each
    lam, variances = direction_spectrum(data, 400)
    np.testing.assert_allclose(lam, np.arange(1, 401) ** -1.5, rtol=1e-15)
    assert np.mean(lam * variances) == pytest.approx(1.0, rel=1e-13)
    # weights: whole numbers of directions
    weighted = dmft.GaussianData(alpha=None, spectrum=dmft.Spectrum([2.0, 1.0], [1.0, 3.0], weights=[0.25, 0.75]))
    lam, variances = direction_spectrum(weighted, 8)
    np.testing.assert_array_equal(lam, [2, 2, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(variances, [1, 1, 3, 3, 3, 3, 3, 3])
    with pytest.raises(ValueError, match="whole numbers of directions"):
        direction_spectrum(weighted, 10)
