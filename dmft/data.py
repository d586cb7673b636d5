"""On what the model is trained: Gaussian inputs and a linear teacher (THEORY.md section 1).

Inputs ``x ~ N(0, Sigma)`` in ``D`` dimensions, targets ``y = beta* . x / sqrt(D) + noise * eps``.
A spectrum splits the ``D`` input directions into shares (equal, or with weights); share ``k`` has
covariance eigenvalue ``lambda_k`` and teacher variance ``E beta*_j^2 = b_k``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.linalg import eigh_tridiagonal

from ._validate import finite, in_range, non_negative, positive, positive_int

__all__ = [
    "Spectrum",
    "PowerLaw",
    "SparseTeacher",
    "GaussianData",
    "EXACT_MODES",
    "counting_gauss_rule",
    "power_law_mode_rule",
]


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
    """An explicit input spectrum: the ``D`` input directions split into ``len(eigenvalues)`` shares.

    Share ``k`` holds a fraction ``weights[k]`` of the ``D`` directions (``None``: equal shares,
    ``1 / len(eigenvalues)`` each), with covariance eigenvalue ``eigenvalues[k] > 0`` and teacher
    variance ``teacher_variances[k] = E beta*_j^2 >= 0`` on each of its directions. Every mode
    average of the theory is then ``sum_k weights[k] f(lambda_k, b_k)`` (docs/power_law.md); unequal
    weights represent spectra of many modes by a quadrature (:meth:`PowerLaw.resolve`).

    Parameters
    ----------
    eigenvalues : ``(K,)`` positive numbers.
    teacher_variances : ``(K,)`` non-negative numbers.
    weights : ``None`` or ``(K,)`` positive fractions of ``D`` summing to 1 (to 1e-9).
    """

    eigenvalues: tuple[float, ...]
    teacher_variances: tuple[float, ...]
    weights: tuple[float, ...] | None = None

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
        if self.weights is not None:
            weights = _as_float_tuple("weights", self.weights)
            if len(weights) != len(eigenvalues):
                raise ValueError(
                    f"`weights` must have one entry per eigenvalue ({len(eigenvalues)}), got {len(weights)}"
                )
            if min(weights) <= 0:
                raise ValueError(f"`weights` must be positive, got minimum {min(weights)}")
            total = math.fsum(weights)
            if abs(total - 1.0) > _WEIGHT_SUM_TOLERANCE:
                raise ValueError(f"`weights` must sum to 1 (fractions of D), got {total!r}")
            object.__setattr__(self, "weights", weights)

    @property
    def modes(self) -> int:
        """The number of shares ``K``."""
        return len(self.eigenvalues)

    def weight_array(self) -> np.ndarray:
        """The fractions of ``D`` of the shares, ``(K,)`` (equal when ``weights`` is ``None``)."""
        if self.weights is None:
            return np.full(self.modes, 1.0 / self.modes)
        return np.asarray(self.weights)

    def resolve(self) -> "Spectrum":
        return self

    replace = replace


@dataclass(frozen=True)
class PowerLaw:
    """Power-law spectrum ``lambda_k = k^{-a}``, ``lambda_k b_k ~ k^{-a b - 1}``, modes ``k = 1..modes``.

    ``a > 0`` is the capacity exponent, ``b`` the source exponent (``b < 1`` hard task, ``b > 1``
    easy). Each mode holds ``D / modes`` of the input directions. Normalisation: the **top**
    eigenvalue is ``lambda_1 = 1`` and the signal is scaled so that ``mean_k lambda_k b_k = 1`` (the
    initial test loss of a zero predictor is 1, as for isotropic data). With the top eigenvalue
    fixed, learning rates (the stability bound ``2 / lambda_1``), times and richness mean the same
    at every mode count, and the curves have a limit as ``modes -> infinity`` (docs/power_law.md,
    "Normalisation", gives the evidence; until this version the mean eigenvalue was 1, which made
    ``lambda_1 = modes / H_modes(a)`` grow with ``modes``).

    :meth:`resolve` gives the explicit :class:`Spectrum`: ``modes`` equal shares when
    ``modes <= EXACT_MODES`` (512), else a weighted quadrature of about ``8 a b' ln(modes) / 3``
    shares (``b' = sqrt(1 + max(b, 0) + 1/a)``) whose mode averages agree with the exact equal-share
    sums to about 1e-6 relative (docs/power_law.md, "Many modes").
    """

    a: float = 1.5
    b: float = 0.5
    modes: int = 100

    def __post_init__(self):
        object.__setattr__(self, "a", positive("a", self.a))
        object.__setattr__(self, "b", finite("b", self.b))
        object.__setattr__(self, "modes", positive_int("modes", self.modes))

    def mode_rule(self, exact: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(k, counts)``: the mode indices the shares sit at and how many modes each stands for.

        ``exact=None``: equal shares (``k = 1..modes``, counts 1) when ``modes <= EXACT_MODES``,
        else the quadrature :func:`power_law_mode_rule`; ``True`` / ``False`` force one of them.
        ``counts`` sums to ``modes``; ``sum_j counts_j f(k_j)`` is ``sum_{k=1}^{modes} f(k)``
        exactly for equal shares and to the rule's accuracy otherwise.
        """
        if exact is None:
            exact = self.modes <= EXACT_MODES
        if exact:
            return np.arange(1, self.modes + 1, dtype=float), np.ones(self.modes)
        return power_law_mode_rule(self.modes, self.a, self.b)

    def resolve(self, exact: bool | None = None) -> Spectrum:
        """The explicit :class:`Spectrum` of this power law (see :meth:`mode_rule` for ``exact``).

        ``lambda = k^{-a}``, weights ``counts / modes``, signal ``lambda b = k^{-a b - 1} / Z`` with
        ``Z`` such that ``sum weights * signal = 1`` on the rule itself (initial loss exactly 1).
        """
        k, counts = self.mode_rule(exact)
        eigenvalues = k ** (-self.a)
        weights = counts / self.modes
        signal = k ** (-self.a * self.b - 1.0)
        signal /= math.fsum(weights * signal)
        return Spectrum(
            eigenvalues=eigenvalues,
            teacher_variances=signal / eigenvalues,
            weights=None if np.all(counts == 1.0) else weights,
        )

    replace = replace


# --------------------------------------------------------------------------------------------
# The quadrature of a power law with many modes (docs/power_law.md, "Many modes")
# --------------------------------------------------------------------------------------------

#: ``PowerLaw.resolve`` uses equal shares up to this many modes and the quadrature beyond.
EXACT_MODES = 512
# Gauss nodes per panel, and the panel width in ln(lambda) is _PANEL_WIDTH / sqrt(1 + max(b, 0)
# + 1/a), at most a factor _PANEL_RATIO in k. Chosen (docs/power_law.md) as the cheapest of a scan
# whose worst relative error over a in {1, 1.5, 3, 5}, b in {0.25, 0.5, 1, 2}, the signal
# averages sum w lambda^p b exp(-2 lambda t) (p = 0, 1) and the count average sum w lambda
# exp(-2 lambda t), all t before the cut-off, modes = 1e5, was below 2e-6
# (tests/test_data.py checks it).
_PANEL_NODES = 8
_PANEL_WIDTH = 3.0
_PANEL_RATIO = 4.0
# |sum(weights) - 1| allowed in Spectrum: round-off of a sum of up to ~1e6 fractions.
_WEIGHT_SUM_TOLERANCE = 1e-9


def counting_gauss_rule(count: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule of the counting measure on the integers ``0 .. count - 1``.

    ``sum_j weights_j f(nodes_j) = sum_{i=0}^{count-1} f(i)`` for every polynomial ``f`` of degree
    ``<= 2 order - 1``; for ``order >= count`` the rule is the integers themselves (weights 1).
    Golub-Welsch on the Jacobi matrix of the discrete Chebyshev (Gram) polynomials: diagonal
    ``(count - 1) / 2``, off-diagonal ``sqrt(beta_j)``, ``beta_j = j^2 (count^2 - j^2) / (4 (4 j^2 - 1))``
    (Gautschi, *Orthogonal Polynomials*, 2004, Table 1.2); weights ``count * v_0^2``.
    """
    count = positive_int("count", count)
    order = positive_int("order", order)
    if order >= count:
        return np.arange(count, dtype=float), np.ones(count)
    j = np.arange(1, order, dtype=float)
    beta = j**2 * (float(count) ** 2 - j**2) / (4.0 * (4.0 * j**2 - 1.0))
    nodes, vectors = eigh_tridiagonal(np.full(order, (count - 1) / 2.0), np.sqrt(beta))
    return nodes, count * vectors[0] ** 2


def power_law_mode_rule(modes: int, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature ``(k, counts)`` for sums over the modes ``k = 1..modes`` of a power law.

    The modes are cut into panels of consecutive integers, each spanning a ratio
    ``R = min(exp(H / a), 4)`` in ``k`` (``H = 3 / sqrt(1 + max(b, 0) + 1/a)`` in ``ln lambda``:
    the averages' integrands ``lambda^{b + 1/a} exp(-2 lambda t)`` are peaks of width
    ``~ 1 / sqrt(b + 1/a)`` in ``ln lambda``) and at least 8 integers long; each panel gets the
    8-node Gauss rule of its integers (:func:`counting_gauss_rule`), so the first panels are the
    integers themselves and the discreteness of the small modes is exact.
    """
    modes = positive_int("modes", modes)
    a = positive("a", a)
    b = finite("b", b)
    width = _PANEL_WIDTH / math.sqrt(1.0 + max(b, 0.0) + 1.0 / a)
    ratio = min(math.exp(width / a), _PANEL_RATIO)
    nodes, counts = [], []
    low = 1
    while low <= modes:
        high = min(modes, max(low + _PANEL_NODES - 1, int(math.floor(low * ratio))))
        x, w = counting_gauss_rule(high - low + 1, _PANEL_NODES)
        nodes.append(low + x)
        counts.append(w)
        low = high + 1
    return np.concatenate(nodes), np.concatenate(counts)


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
