"""Finite networks, ``seeds`` of them advanced together along a leading seed axis.

Every model here is linear in its input, ``f(x) = beta . x / sqrt(D)``. A network holds its trained
arrays in ``params`` (a list; ``parameters()`` returns it) and exposes

* ``evaluate(params)``: ``(beta, cache)``, the end-to-end predictor ``(seeds, D)`` of the given
  parameters and what ``direction`` reuses (the backward fields of a deep network);
* ``direction(u, cache, params)``: the parameter velocity per unit learning rate for the drive
  ``u = sqrt(D) X^T (y - f) / P`` (THEORY.md sections 2-4), as a list of :class:`Outer` (rank-one,
  for weight matrices) or dense arrays, one per parameter;
* ``step(u, learning_rate)``: one gradient-descent step, ``params += learning_rate * direction``.

``params`` passed to ``evaluate`` / ``direction`` may hold :class:`Shifted` matrices, a matrix plus
pending rank-one terms that is never formed: the gradient-flow integrator (:mod:`finite_size.flow`)
evaluates its Runge-Kutta stages that way at the cost of matrix-vector products. Initial weights
are drawn with NumPy on the host and moved to the array namespace ``xp`` (the same numbers on
every backend).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dmft.models import DeepLinear, DiagonalLinear, Linear

from ._backend import add_outer, to_device

__all__ = [
    "Outer",
    "Shifted",
    "LinearNetwork",
    "DeepLinearNetwork",
    "DiagonalNetwork",
    "build_network",
    "NETWORK_MODELS",
    "network_bytes",
    "apply_update",
    "shifted_parameters",
]


@dataclass(frozen=True)
class Outer:
    """``scale * outer(left[s], right[s])`` for every seed ``s``: a weight matrix's update."""

    scale: float
    left: Any  # (S, m)
    right: Any  # (S, n)


class Shifted:
    """``base + sum_k c_k outer(l_k, r_k)`` over the seed axis, never formed: products with it
    cost one product with ``base`` plus ``O(S (m + n))`` per term."""

    def __init__(self, base, terms: list[tuple[float, Any, Any]]):
        self.base = base
        self.terms = terms

    def matvec(self, vectors, xp):
        out = _dense_matvec(self.base, vectors, xp)
        for coefficient, left, right in self.terms:
            out = out + coefficient * xp.sum(right * vectors, axis=1)[:, None] * left
        return out

    def rmatvec(self, vectors, xp):
        out = _dense_rmatvec(self.base, vectors, xp)
        for coefficient, left, right in self.terms:
            out = out + coefficient * xp.sum(left * vectors, axis=1)[:, None] * right
        return out


def _dense_matvec(matrices, vectors, xp):
    """``matrices @ vectors`` over the seed axis: ``(S, m, n) x (S, n) -> (S, m)``."""
    return xp.matmul(matrices, vectors[:, :, None])[:, :, 0]


def _dense_rmatvec(matrices, vectors, xp):
    """``matrices^T @ vectors`` over the seed axis: ``(S, m, n) x (S, m) -> (S, n)``."""
    return xp.matmul(vectors[:, None, :], matrices)[:, 0, :]


def _matvec(matrices, vectors, xp):
    if isinstance(matrices, Shifted):
        return matrices.matvec(vectors, xp)
    return _dense_matvec(matrices, vectors, xp)


def _rmatvec(matrices, vectors, xp):
    if isinstance(matrices, Shifted):
        return matrices.rmatvec(vectors, xp)
    return _dense_rmatvec(matrices, vectors, xp)


def apply_update(params: list, update: list, rate: float) -> None:
    """In place: ``params[i] += rate * update[i]`` (rank-one terms through :func:`add_outer`)."""
    rate = float(rate)
    for parameter, change in zip(params, update):
        if isinstance(change, Outer):
            add_outer(parameter, rate * change.scale, change.left, change.right)
        else:
            parameter += rate * change


def shifted_parameters(params: list, updates: list[tuple[float, list]], xp) -> list:
    """``params + sum_j c_j updates_j`` without forming any matrix: matrices become
    :class:`Shifted`, dense parameters (vectors) are summed. ``updates`` is a list of
    ``(c_j, update_j)`` with ``update_j`` as returned by ``direction``."""
    out = []
    for index, parameter in enumerate(params):
        changes = [(coefficient, update[index]) for coefficient, update in updates if coefficient != 0.0]
        if changes and isinstance(changes[0][1], Outer):
            terms = [(coefficient * change.scale, change.left, change.right) for coefficient, change in changes]
            out.append(Shifted(parameter, terms))
        else:
            total = parameter
            for coefficient, change in changes:
                total = total + coefficient * change
            out.append(total)
    return out


class _Network:
    """What every network shares: the parameter list and the gradient step."""

    params: list

    def parameters(self) -> list:
        return self.params

    def beta(self, params=None):
        """The predictor ``(S, D)`` of ``params`` (default: the network's own)."""
        return self.evaluate(params)[0]

    def step(self, u, learning_rate: float) -> None:
        """One gradient-descent step ``params += learning_rate * direction(u)``."""
        _, cache = self.evaluate()
        apply_update(self.params, self.direction(u, cache), learning_rate)


class LinearNetwork(_Network):
    """Depth 0: ``beta(0) = 0``, ``beta += eta u`` (THEORY.md section 3)."""

    def __init__(self, model: Linear, dim: int, seeds: int, rng: np.random.Generator, xp):
        self.xp = xp
        self.params = [xp.zeros((seeds, dim), dtype=xp.float64)]

    def evaluate(self, params=None):
        params = self.params if params is None else params
        return params[0], None

    def direction(self, u, cache=None, params=None):
        return [u]


class DeepLinearNetwork(_Network):
    """Deep linear network of THEORY.md section 2 (plain) or 2.2 (``residual=True``).

    ``h_1 = W_0 x / sqrt(D)``; plain ``h_{l+1} = W_l h_l / sqrt(N)``, residual
    ``h_{l+1} = h_l + b W_l h_l / sqrt(N)``; ``f = sqrt(D) / (gamma0 N) w . h_L``, so
    ``beta = sqrt(D) / (gamma0 N) W_0^T g_1`` with ``g_L = w`` and ``g_l = W_l^T g_{l+1} / sqrt(N)``
    (plain) or ``g_l = g_{l+1} + b W_l^T g_{l+1} / sqrt(N)`` (residual). A step moves every parameter
    by ``-eta gamma0^2 N`` times the gradient of ``(1/2P) sum (f - y)^2``:
    ``W_0 += (eta gamma0 / sqrt(D)) g_1 u^T``, ``W_l += (eta gamma0 c / sqrt(N)) g_{l+1} h_l^T``
    (``c = 1`` plain, ``c = b`` residual), ``w += eta gamma0 h_L``, with ``h`` the forward pass of ``u``.
    ``gamma0`` is ``model.richness`` (muP or NTK). ``params = [W_0, W_1, .., W_{L-1}, w]``.
    """

    def __init__(self, model: DeepLinear, dim: int, seeds: int, rng: np.random.Generator, xp):
        if not math.isfinite(model.depth):
            raise ValueError("a finite network needs a finite `depth`; the infinite depth is dmft.solve's")
        self.xp = xp
        self.dim = dim
        self.width = network_width(model, dim)
        self.gamma0 = model.richness
        self.residual = model.residual
        self.branch = model.branch_multiplier if model.residual else 1.0
        width = self.width
        self.params = [to_device(xp, rng.standard_normal((seeds, width, dim)))]
        self.params += [to_device(xp, rng.standard_normal((seeds, width, width))) for _ in range(model.depth - 1)]
        self.params.append(to_device(xp, rng.standard_normal((seeds, width))))

    def _backward_fields(self, params):
        """``[g_1, ..., g_L]``."""
        xp, root_width = self.xp, math.sqrt(self.width)
        fields = [params[-1]]
        for weights in reversed(params[1:-1]):
            back = _rmatvec(weights, fields[0], xp) / root_width
            fields.insert(0, fields[0] + self.branch * back if self.residual else back)
        return fields

    def _forward_fields(self, inputs, params):
        """``[h_1, ..., h_L]`` for the input vectors ``inputs`` (``(S, D)``)."""
        xp, root_width = self.xp, math.sqrt(self.width)
        fields = [_matvec(params[0], inputs, xp) / math.sqrt(self.dim)]
        for weights in params[1:-1]:
            forward = _matvec(weights, fields[-1], xp) / root_width
            fields.append(fields[-1] + self.branch * forward if self.residual else forward)
        return fields

    def hidden_fields(self, inputs):
        """``([h_1, ..., h_L], [g_1, ..., g_L])``: the forward fields of ``inputs`` (``(S, D)``) and
        the backward fields, each ``(S, N)`` (for ``simulate(..., record_hidden=True)``)."""
        return self._forward_fields(inputs, self.params), self._backward_fields(self.params)

    def evaluate(self, params=None):
        params = self.params if params is None else params
        backward = self._backward_fields(params)
        scale = math.sqrt(self.dim) / (self.gamma0 * self.width)
        return scale * _rmatvec(params[0], backward[0], self.xp), backward

    def direction(self, u, cache, params=None):
        params = self.params if params is None else params
        backward = cache
        forward = self._forward_fields(u, params)
        hidden_scale = self.gamma0 * self.branch / math.sqrt(self.width)
        update = [Outer(self.gamma0 / math.sqrt(self.dim), backward[0], u)]
        update += [Outer(hidden_scale, backward[index + 1], forward[index]) for index in range(len(params) - 2)]
        update.append(self.gamma0 * forward[-1])
        return update


class DiagonalNetwork(_Network):
    """Diagonal linear network of THEORY.md section 4: ``beta_j = a_j^L - b_j^L``, ``a = b = s`` at
    t = 0, ``a += eta L a^{L-1} u``, ``b -= eta L b^{L-1} u``. ``params = [a, b]``."""

    def __init__(self, model: DiagonalLinear, dim: int, seeds: int, rng: np.random.Generator, xp):
        self.xp = xp
        self.depth = model.depth
        self.params = [xp.full((seeds, dim), model.init_scale, dtype=xp.float64) for _ in range(2)]

    def evaluate(self, params=None):
        positive, negative = self.params if params is None else params
        return positive**self.depth - negative**self.depth, None

    def direction(self, u, cache=None, params=None):
        positive, negative = self.params if params is None else params
        depth = self.depth
        return [depth * positive ** (depth - 1) * u, -depth * negative ** (depth - 1) * u]


_NETWORKS = {Linear: LinearNetwork, DeepLinear: DeepLinearNetwork, DiagonalLinear: DiagonalNetwork}
NETWORK_MODELS = tuple(_NETWORKS)  # the model types that have a finite network


def network_width(model, dim: int) -> int | None:
    """Hidden width ``N = round(width_ratio * dim)`` (at least 1) of a deep network, else None."""
    if isinstance(model, DeepLinear):
        return max(1, int(round(model.width_ratio * dim)))
    return None


def network_bytes(model, dim: int, seeds: int) -> int:
    """Bytes of the trained float64 arrays of ``seeds`` networks (for the memory estimate)."""
    if isinstance(model, DeepLinear) and math.isfinite(model.depth):
        width = network_width(model, dim)
        return 8 * seeds * (width * dim + (model.depth - 1) * width**2 + width)
    return 8 * seeds * dim * 2


def build_network(model, dim: int, seeds: int, rng: np.random.Generator, xp):
    """The batched finite network for ``model``."""
    for model_type, network_type in _NETWORKS.items():
        if isinstance(model, model_type):
            return network_type(model, dim, seeds, rng, xp)
    raise TypeError(
        f"no finite network for {type(model).__name__}; expected one of "
        + ", ".join(t.__name__ for t in _NETWORKS)
    )
