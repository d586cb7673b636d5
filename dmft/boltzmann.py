"""Spherical Boltzmann machines: model, data and training configurations (docs/spherical.md).

Model: energy ``E(x; W) = -x^T W x / 2`` on the sphere ``|x|^2 = N``, ``P_W(x) ~ exp(-beta E)``.
Data: an empirical covariance of rank ``K`` given by its eigenvalues ``c_1 >= ... >= c_K`` with
``sum_a c_a = K``, or a teacher-student generator with a rank-one spike of strength ``omega*``.
Training: Langevin dynamics on the couplings (Gaussian prior of precision ``gamma``, likelihood
weight ``eta``), with a persistent sampling chain of relative speed ``nu`` at inverse temperature
``beta`` for the negative phase.

These objects compose with ``dmft.solve`` (large-N dynamics), ``dmft.equilibrium`` (the
``t -> infinity`` answer by random-matrix theory) and ``finite_size.simulate`` (finite-N Langevin
training) like the networks' configurations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ._validate import positive, positive_int
from .errors import DivergenceError

__all__ = [
    "SphericalBoltzmann",
    "DataCovariance",
    "SpikedTeacher",
    "Langevin",
    "DynamicsDivergenceError",
    "check_configuration",
]


class DynamicsDivergenceError(DivergenceError):
    """Langevin training (its large-N equations or a finite-N simulation) blew up numerically.

    The message names the time reached and the numerical parameter to lower (the solver's
    ``rtol`` or the simulation's ``step``): with ``prior_precision > 0`` the exact dynamics stays
    bounded, so a blow-up is a numerical one.
    """

    def __init__(self, what: str, time: float, parameter: str, value: float):
        self.time = float(time)
        self.step = None
        self.learning_rate = None
        FloatingPointError.__init__(
            self, f"{what} became non-finite at time {self.time:.6g}; lower `{parameter}` (got {value:g})"
        )


def _positive_or_inf(name: str, value) -> float:
    if value == math.inf:
        return math.inf
    return positive(name, value)


@dataclass(frozen=True)
class SphericalBoltzmann:
    """``E(x; W) = -x^T W x / 2`` on ``|x|^2 = N``; samples ``P_W(x) ~ exp(-beta E(x; W))``.

    Parameters
    ----------
    inverse_temperature : ``beta > 0``, the inverse temperature at which the model is sampled
        (the persistent chain and generation).
    """

    inverse_temperature: float = 1.0

    def __post_init__(self):
        object.__setattr__(
            self, "inverse_temperature", positive("inverse_temperature", self.inverse_temperature)
        )

    replace = replace


@dataclass(frozen=True)
class DataCovariance:
    """An empirical data covariance of rank ``K = len(eigenvalues)``: its non-zero eigenvalues
    ``c_1 >= ... >= c_K > 0`` (sorted on construction), which must sum to ``K`` (the data points
    lie on the sphere: ``tr C / N = 1`` per sample); data directions are orthonormal."""

    eigenvalues: tuple[float, ...]

    def __post_init__(self):
        try:
            values = np.asarray(self.eigenvalues, dtype=float).ravel()
        except (TypeError, ValueError):
            raise TypeError(f"`eigenvalues` must be a sequence of numbers, got {self.eigenvalues!r}") from None
        if values.size == 0:
            raise ValueError("`eigenvalues` must not be empty")
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ValueError(f"`eigenvalues` must be positive and finite, got {self.eigenvalues!r}")
        total = float(values.sum())
        if abs(total - values.size) > 1e-9 * values.size:
            raise ValueError(
                f"`eigenvalues` must sum to K = {values.size} (the number of samples), got {total:.12g}"
            )
        object.__setattr__(self, "eigenvalues", tuple(float(v) for v in np.sort(values)[::-1]))

    @property
    def samples(self) -> int:
        """``K``, the rank of the covariance."""
        return len(self.eigenvalues)

    def resolve(self) -> "DataCovariance":
        return self

    replace = replace


@dataclass(frozen=True)
class SpikedTeacher:
    """Teacher-student data: ``K = samples`` points drawn from a teacher machine with a rank-one
    spike of strength ``omega* = strength > 1`` (the teacher's covariance is ``omega*`` along its
    spike, 1 elsewhere, up to the spherical normalisation).

    :meth:`resolve` gives the typical (``N -> infinity``) empirical spectrum as a
    :class:`DataCovariance`; ``finite_size.simulate`` draws the samples themselves.
    """

    strength: float = 2.0
    samples: int = 2

    def __post_init__(self):
        strength = positive("strength", self.strength)
        if strength <= 1:
            raise ValueError(f"`strength` (omega*) must exceed 1 for a spike, got {strength}")
        object.__setattr__(self, "strength", strength)
        object.__setattr__(self, "samples", positive_int("samples", self.samples))

    @property
    def condensed_fraction(self) -> float:
        """``m* = 1 - 1/omega*``: the fraction of ``|x|^2`` a teacher sample puts on the spike.

        The teacher is the spherical machine ``W* = omega* u u^T`` at ``beta = 1``: its spherical
        multiplier sticks to the spike's eigenvalue, ``mu* = omega*``, the ``N - 1`` other
        directions share ``1/omega*`` of the norm, the spike the rest (docs/spherical.md)."""
        return 1.0 - 1.0 / self.strength

    def resolve(self) -> DataCovariance:
        """The typical (``N -> infinity``) spectrum of the ``K`` samples' covariance.

        A sample is ``x_mu = sqrt(N) (sigma_mu sqrt(m*) u + sqrt(1 - m*) z_mu)`` with random signs
        and nearly orthogonal ``z_mu``, so the Gram matrix ``x_mu . x_nu / N`` is
        ``m* sigma sigma^T + (1 - m*) I``: eigenvalues ``1 + (K - 1) m*`` (once) and ``1 - m* =
        1/omega*`` (``K - 1`` times); for ``K = 2``: ``(2 - 1/omega*, 1/omega*)``.
        """
        m = self.condensed_fraction
        rest = [1.0 - m] * (self.samples - 1)
        top = self.samples - sum(rest)  # = 1 + (K - 1) m*, written so the sum is K to round-off
        return DataCovariance(eigenvalues=(top, *rest))

    @property
    def teacher_overlap(self) -> float:
        """``(u . e_1)^2`` at large ``N``: the squared overlap of the teacher's spike with the top
        data direction, ``K m* / c_1`` (the spike's part outside the data span is random)."""
        c1 = self.resolve().eigenvalues[0]
        return self.samples * self.condensed_fraction / c1

    replace = replace


@dataclass(frozen=True)
class Langevin:
    """Langevin training of the couplings with a persistent sampling chain (THEORY 5)::

        dW/dt = C/2 - (K/2N) x x^T - (gamma/2) W + Omega / sqrt(eta N)       (Omega: GOE white noise)
        dx/dt = nu W x - kappa x + sqrt(2 nu / beta) xi                       (on |x|^2 = N)

    Parameters
    ----------
    time : training time to reach (``> 0``), in the units of the equation above.
    prior_precision : ``gamma > 0`` (L2 regularisation).
    likelihood_weight : ``eta > 0`` (tempered posterior); ``math.inf`` is MAP (no noise on ``W``).
    chain_speed : ``nu > 0``, the speed of the sampling chain relative to training; ``math.inf``
        is an equilibrium negative phase.
    save_at : times at which to report (increasing, within ``[0, time]``), or ``None`` (the
        solver's grid).
    rtol : target relative accuracy of the reported observables.
    initial_overlaps : ``s_a(0)``, the overlaps of the chain's starting point with the ``K`` data
        directions (``sum_a s_a(0)^2 <= 1``; the rest of ``x(0)`` is uniform on the sphere
        orthogonal to the data), or ``None``: ``s_a(0) = sqrt(c_a / K)``, a point of the data's
        span with the data's second moments (on the sphere). Zeros start the chain uniformly on the
        sphere: the large-N overlaps then stay 0 (a finite-N chain leaves that unstable state after
        a time ``~ ln N``). Ignored for ``chain_speed = inf`` (the negative phase is at equilibrium).
    """

    time: float = 100.0
    prior_precision: float = 1.0
    likelihood_weight: float = 10.0
    chain_speed: float = 1.0
    save_at: tuple[float, ...] | None = None
    rtol: float = 1e-4
    initial_overlaps: tuple[float, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "time", positive("time", self.time))
        object.__setattr__(self, "prior_precision", positive("prior_precision", self.prior_precision))
        object.__setattr__(
            self, "likelihood_weight", _positive_or_inf("likelihood_weight", self.likelihood_weight)
        )
        object.__setattr__(self, "chain_speed", _positive_or_inf("chain_speed", self.chain_speed))
        from .training import GradientFlow  # the same checks of save_at and rtol

        checked = GradientFlow(time=self.time, save_at=self.save_at, rtol=self.rtol)
        object.__setattr__(self, "save_at", checked.save_at)
        object.__setattr__(self, "rtol", checked.rtol)
        if self.initial_overlaps is not None:
            try:
                overlaps = np.atleast_1d(np.asarray(self.initial_overlaps, dtype=float))
            except (TypeError, ValueError):
                raise TypeError(
                    f"`initial_overlaps` must be None or a sequence of numbers, got {self.initial_overlaps!r}"
                ) from None
            if overlaps.ndim != 1 or overlaps.size == 0 or not np.all(np.isfinite(overlaps)):
                raise ValueError(f"`initial_overlaps` must be a non-empty 1-D sequence of finite numbers, got {self.initial_overlaps!r}")
            if float(np.sum(overlaps**2)) > 1 + 1e-12:
                raise ValueError(
                    f"`initial_overlaps` must satisfy sum s_a^2 <= 1 (x(0) lies on the sphere), got "
                    f"sum {float(np.sum(overlaps**2)):.6g}"
                )
            object.__setattr__(self, "initial_overlaps", tuple(float(v) for v in overlaps))

    def start(self, data) -> np.ndarray:
        """``s_a(0)`` for ``data`` (a :class:`DataCovariance` or :class:`SpikedTeacher`): the given
        ``initial_overlaps`` (checked to have ``K`` entries) or ``sqrt(c_a / K)``."""
        spectrum = np.asarray(data.resolve().eigenvalues)
        if self.initial_overlaps is None:
            return np.sqrt(spectrum / spectrum.size)
        if len(self.initial_overlaps) != spectrum.size:
            raise ValueError(
                f"`initial_overlaps` needs one overlap per data direction: K = {spectrum.size}, "
                f"got {len(self.initial_overlaps)}"
            )
        return np.asarray(self.initial_overlaps)

    @property
    def noise_variance(self) -> float:
        """``J^2 = 1/(gamma eta)``: the variance of the couplings' stationary GOE bulk
        (semicircle edge ``2 J``); 0 for MAP (``eta = inf``)."""
        return 0.0 if self.likelihood_weight == math.inf else 1.0 / (self.prior_precision * self.likelihood_weight)

    replace = replace


def forward_kl(omega, beta, teacher_energy, log_partition):
    """``KL(P_teacher || P_W) / N`` of a spiked teacher of strength ``omega`` (THEORY 5; docs/spherical.md)::

        forward_kl = ln(omega)/2 - (beta/2) E_teacher[x^T W x / N] + ln Z_beta(W) / N

    ``teacher_energy``: ``E_teacher[x^T W x / N]`` (finite N: ``m u.Wu + (1 - m)(tr W - u.Wu)/(N - 1)``,
    ``m = 1 - 1/omega``; large N: ``m (u.e_1)^2 W_11``); ``log_partition``: ``ln Z_beta(W) / N``.
    The one definition used by the DMFT (:mod:`dmft.solvers._boltzmann_spectrum`), the simulator
    (:mod:`finite_size.boltzmann`) and the RMT equilibrium. Works elementwise on arrays."""
    return 0.5 * np.log(omega) - 0.5 * beta * teacher_energy + log_partition


def reverse_kl(omega, beta, multiplier, log_partition, teacher_weight):
    """``KL(P_W || P_teacher) / N`` of a spiked teacher of strength ``omega`` (THEORY 5; docs/spherical.md)::

        reverse_kl = (beta mu - 1)/2 - ln Z_beta(W)/N - (omega/2) u^T <x x^T>_W u / N + (omega - ln omega - 1)/2

    ``multiplier``: the equilibrium spherical multiplier ``mu`` of ``W``; ``teacher_weight``:
    ``u^T <x x^T>_W u / N`` (finite N: ``sum_n (u.v_n)^2 / (beta N (mu - lambda_n))``; large N: the
    condensed fraction times ``(u.e_1)^2 (v_1.e_1)^2``). The one definition used by the DMFT and the
    simulator. Works elementwise on arrays."""
    return 0.5 * (beta * multiplier - 1.0) - log_partition - 0.5 * omega * teacher_weight + 0.5 * (omega - np.log(omega) - 1.0)


def check_configuration(model, data, training) -> None:
    """Raise a ``TypeError`` naming the argument unless ``(model, data, training)`` is a
    :class:`SphericalBoltzmann`, a :class:`DataCovariance` or :class:`SpikedTeacher`, and a
    :class:`Langevin`."""
    if not isinstance(model, SphericalBoltzmann):
        raise TypeError(f"`model` must be dmft.SphericalBoltzmann, got {type(model).__name__}")
    if not isinstance(data, (DataCovariance, SpikedTeacher)):
        raise TypeError(f"`data` must be dmft.DataCovariance or dmft.SpikedTeacher, got {type(data).__name__}")
    if not isinstance(training, Langevin):
        raise TypeError(f"`training` must be dmft.Langevin, got {type(training).__name__}")
