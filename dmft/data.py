"""On what the model is trained: Gaussian inputs and a linear teacher (THEORY.md section 1).

Inputs ``x ~ N(0, Sigma)`` in ``D`` dimensions, targets ``y = beta* . x / sqrt(D) + noise * eps``.
A spectrum splits the ``D`` input directions into equal shares; share ``k`` has covariance
eigenvalue ``lambda_k`` and teacher variance ``E beta*_j^2 = b_k``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ._validate import finite, in_range, non_negative, positive, positive_int

__all__ = ["Spectrum", "PowerLaw", "SparseTeacher", "GaussianData"]


def _as_float_tuple(name: str, values) -> tuple[float, ...]:
    try:
        array = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a sequence of numbers, got {values!r}") from None
    if array.size == 0:
        raise ValueError(f"`{name}` must not be empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must be finite, got {values!r}")
    return tuple(float(v) for v in array)


@dataclass(frozen=True)
class Spectrum:
    """An explicit input spectrum: the ``D`` input directions split into ``len(eigenvalues)``
    equal shares; share ``k`` has covariance eigenvalue ``eigenvalues[k] > 0`` and teacher
    variance ``teacher_variances[k] >= 0``."""

    eigenvalues: tuple[float, ...]
    teacher_variances: tuple[float, ...]

    def __post_init__(self):
        eigenvalues = _as_float_tuple("eigenvalues", self.eigenvalues)
        variances = _as_float_tuple("teacher_variances", self.teacher_variances)
        if len(eigenvalues) != len(variances):
            raise ValueError(
                "`eigenvalues` and `teacher_variances` must have the same length, got "
                f"{len(eigenvalues)} and {len(variances)}"
            )
        if min(eigenvalues) <= 0:
            raise ValueError(f"`eigenvalues` must be positive, got minimum {min(eigenvalues)}")
        if min(variances) < 0:
            raise ValueError(f"`teacher_variances` must be non-negative, got minimum {min(variances)}")
        object.__setattr__(self, "eigenvalues", eigenvalues)
        object.__setattr__(self, "teacher_variances", variances)

    @property
    def modes(self) -> int:
        return len(self.eigenvalues)

    def resolve(self) -> "Spectrum":
        return self

    replace = replace


@dataclass(frozen=True)
class PowerLaw:
    """Power-law spectrum ``lambda_k ~ k^{-a}``, ``lambda_k b_k ~ k^{-a b - 1}``, ``k = 1..modes``.

    ``a > 0`` is the capacity exponent, ``b`` the source exponent (``b < 1`` hard task,
    ``b > 1`` easy). Both sequences are normalised so that ``mean(lambda) = 1`` and
    ``mean(lambda b) = 1``: the initial test loss of a zero predictor is 1, as for isotropic data.
    The ``D`` input directions are split into ``modes`` equal shares.
    """

    a: float = 1.5
    b: float = 0.5
    modes: int = 100

    def __post_init__(self):
        object.__setattr__(self, "a", positive("a", self.a))
        object.__setattr__(self, "b", finite("b", self.b))
        object.__setattr__(self, "modes", positive_int("modes", self.modes))

    def resolve(self) -> Spectrum:
        """The explicit :class:`Spectrum` of this power law."""
        k = np.arange(1, self.modes + 1, dtype=float)
        eigenvalues = k ** (-self.a)
        eigenvalues /= eigenvalues.mean()
        signal = k ** (-self.a * self.b - 1.0)  # lambda_k b_k
        signal /= signal.mean()
        return Spectrum(eigenvalues=eigenvalues, teacher_variances=signal / eigenvalues)

    replace = replace


@dataclass(frozen=True)
class SparseTeacher:
    """Teacher prior: ``beta*_j = 0`` with probability ``1 - density``, else ``N(0, scale^2)``."""

    density: float = 0.2
    scale: float = 1.0

    def __post_init__(self):
        object.__setattr__(
            self, "density", in_range("density", self.density, 0.0, 1.0, low_open=True)
        )
        object.__setattr__(self, "scale", positive("scale", self.scale))

    @property
    def variance(self) -> float:
        return self.density * self.scale**2

    replace = replace


@dataclass(frozen=True)
class GaussianData:
    """Gaussian inputs with a linear teacher.

    Parameters
    ----------
    alpha : ``P / D > 0`` for full-batch gradient descent; ``None`` for online SGD.
    noise : label-noise standard deviation ``sigma >= 0`` (the loss floor is ``sigma^2``).
    spectrum : ``None`` (isotropic, ``Sigma = I``, ``b = 1``), a :class:`PowerLaw` or a
        :class:`Spectrum`.
    teacher : ``None`` (Gaussian ``beta*_j ~ N(0, b_j)``) or a :class:`SparseTeacher`
        (isotropic inputs only).
    """

    alpha: float | None = 2.0
    noise: float = 0.0
    spectrum: Spectrum | PowerLaw | None = None
    teacher: SparseTeacher | None = None

    def __post_init__(self):
        if self.alpha is not None:
            object.__setattr__(self, "alpha", positive("alpha", self.alpha))
        object.__setattr__(self, "noise", non_negative("noise", self.noise))
        if self.spectrum is not None and not isinstance(self.spectrum, (Spectrum, PowerLaw)):
            raise TypeError(
                f"`spectrum` must be None, dmft.PowerLaw or dmft.Spectrum, got {self.spectrum!r}"
            )
        if self.teacher is not None:
            if not isinstance(self.teacher, SparseTeacher):
                raise TypeError(f"`teacher` must be None or dmft.SparseTeacher, got {self.teacher!r}")
            if self.spectrum is not None:
                raise ValueError("a SparseTeacher is only supported with isotropic inputs (spectrum=None)")

    @property
    def isotropic(self) -> bool:
        return self.spectrum is None

    def resolved_spectrum(self) -> Spectrum:
        """The spectrum as explicit shares (one share of eigenvalue 1 when isotropic)."""
        if self.spectrum is None:
            variance = 1.0 if self.teacher is None else self.teacher.variance
            return Spectrum(eigenvalues=(1.0,), teacher_variances=(variance,))
        return self.spectrum.resolve()

    replace = replace
