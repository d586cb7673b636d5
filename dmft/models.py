"""What is trained: frozen, validated model configurations (THEORY.md sections 2-4).

Every model is a linear predictor ``f(x) = beta . x / sqrt(D)`` of the input; they differ in how
``beta`` is parameterised and therefore in how gradient descent moves it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Integral

from ._validate import positive, positive_int

__all__ = ["Linear", "DeepLinear", "DiagonalLinear", "PARAMETERIZATIONS"]

PARAMETERIZATIONS = ("mup", "ntk")


@dataclass(frozen=True)
class Linear:
    """Depth 0: plain linear regression, ``f = beta . x / sqrt(D)``, ``beta(0) = 0``.

    Gradient descent moves ``beta += eta * u`` with ``u = sqrt(D) X^T (y - f) / P``
    (THEORY.md section 3).
    """

    replace = replace


@dataclass(frozen=True)
class DeepLinear:
    """Deep linear network with ``depth`` hidden layers of width ``N = width_ratio * D``.

    Mean-field / muP parameterization (THEORY.md section 2)::

        h_1 = W_0 x / sqrt(D),  h_{l+1} = W_l h_l / sqrt(N),  f = sqrt(D) / (gamma0 N) w . h_L

    and, with ``residual=True``, ``h_{l+1} = h_l + b W_l h_l / sqrt(N)``, ``b = branch_scale /
    sqrt(depth)`` (section 2.2). All weights start ``N(0, 1)``; every parameter moves by
    ``-eta gamma0^2 N`` times the gradient of ``(1/2P) sum (f - y)^2``.

    Parameters
    ----------
    depth : number of hidden layers ``L >= 1`` (``depth + 1`` weight matrices); ``math.inf`` is
        the infinite-depth limit of a residual network.
    width_ratio : ``nu = N / D > 0``.
    gamma0 : richness (> 0). ``gamma0 -> 0`` is the lazy / kernel limit.
    parameterization : ``"mup"`` keeps ``gamma0`` fixed as the width grows; ``"ntk"`` uses
        ``gamma0 / sqrt(width_ratio)`` (see :attr:`richness`).
    residual : residual branches (section 2.2).
    branch_scale : ``beta0`` of the residual branches; a value other than the default 1 without
        ``residual=True`` is an error (it would have no effect).
    """

    depth: int | float = 1
    width_ratio: float = 1.0
    gamma0: float = 1.0
    parameterization: str = "mup"
    residual: bool = False
    branch_scale: float = 1.0

    def __post_init__(self):
        if self.depth == math.inf:
            if not self.residual:
                raise ValueError(
                    "`depth` = inf is only defined for residual networks (residual=True)"
                )
        else:
            if isinstance(self.depth, bool) or not isinstance(self.depth, Integral):
                raise TypeError(f"`depth` must be an integer or math.inf, got {self.depth!r}")
            if self.depth < 1:
                raise ValueError(
                    f"`depth` must be >= 1 hidden layer, got {self.depth} "
                    "(depth 0 is dmft.Linear())"
                )
            object.__setattr__(self, "depth", int(self.depth))
        object.__setattr__(self, "width_ratio", positive("width_ratio", self.width_ratio))
        object.__setattr__(self, "gamma0", positive("gamma0", self.gamma0))
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"`parameterization` must be one of {PARAMETERIZATIONS}, got {self.parameterization!r}"
            )
        if not isinstance(self.residual, bool):
            raise TypeError(f"`residual` must be a bool, got {self.residual!r}")
        object.__setattr__(self, "branch_scale", positive("branch_scale", self.branch_scale))
        if not self.residual and self.branch_scale != 1.0:
            raise ValueError(
                f"`branch_scale` scales the residual branches: it needs residual=True, got "
                f"branch_scale={self.branch_scale} with residual=False"
            )

    @property
    def richness(self) -> float:
        """The ``gamma0`` that enters the equations: ``gamma0`` (muP) or ``gamma0/sqrt(nu)`` (NTK)."""
        if self.parameterization == "ntk":
            return self.gamma0 / math.sqrt(self.width_ratio)
        return self.gamma0

    @property
    def branch_multiplier(self) -> float:
        """``b = branch_scale / sqrt(depth)`` of the residual branches (0 for the infinite depth)."""
        return self.branch_scale / math.sqrt(self.depth)

    replace = replace


@dataclass(frozen=True)
class DiagonalLinear:
    """Diagonal linear network ``beta_j = a_j^depth - b_j^depth``, ``a = b = init_scale`` at t = 0.

    Gradient descent moves ``theta_j += eta grad F(theta_j) u_j`` (THEORY.md section 4).
    """

    depth: int = 2
    init_scale: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "depth", positive_int("depth", self.depth))
        object.__setattr__(self, "init_scale", positive("init_scale", self.init_scale))

    replace = replace
