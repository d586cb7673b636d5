"""Finite networks, ``seeds`` of them advanced together along a leading seed axis.

Each network exposes ``beta()`` (the end-to-end linear predictor, ``(seeds, D)``: every model here is
linear in its input, ``f(x) = beta . x / sqrt(D)``) and ``step(u, learning_rate)``, one gradient-descent
step given the drive ``u = sqrt(D) X^T (y - f) / P`` (THEORY.md sections 2-4). ``parameters()``
lists the trained arrays (for the gradient checks). Initial weights are drawn with NumPy (so both
backends start from the same numbers) and then moved to the array module ``xp``.
"""

from __future__ import annotations

import math

import numpy as np

from dmft.models import DeepLinear, DiagonalLinear, Linear

from ._backend import add_outer

__all__ = ["LinearNetwork", "DeepLinearNetwork", "DiagonalNetwork", "build_network"]


def _matvec(matrices, vectors, xp):
    """``matrices @ vectors`` over the seed axis: ``(S, m, n) x (S, n) -> (S, m)``."""
    return xp.matmul(matrices, vectors[:, :, None])[..., 0]


def _rmatvec(matrices, vectors, xp):
    """``matrices^T @ vectors`` over the seed axis: ``(S, m, n) x (S, m) -> (S, n)``."""
    return xp.matmul(vectors[:, None, :], matrices)[:, 0, :]


class LinearNetwork:
    """Depth 0: ``beta(0) = 0``, ``beta += eta u`` (THEORY.md section 3)."""

    def __init__(self, model: Linear, dim: int, seeds: int, rng: np.random.Generator, xp):
        self.xp = xp
        self.weights = xp.zeros((seeds, dim))

    def beta(self):
        return self.weights

    def parameters(self):
        return [self.weights]

    def step(self, u, learning_rate: float) -> None:
        self.weights += learning_rate * u


class DeepLinearNetwork:
    """Deep linear network of THEORY.md section 2 (plain) or 2.2 (``residual=True``).

    ``h_1 = W_0 x / sqrt(D)``; plain ``h_{l+1} = W_l h_l / sqrt(N)``, residual
    ``h_{l+1} = h_l + b W_l h_l / sqrt(N)``; ``f = sqrt(D) / (gamma0 N) w . h_L``, so
    ``beta = sqrt(D) / (gamma0 N) W_0^T g_1`` with ``g_L = w`` and ``g_l = W_l^T g_{l+1} / sqrt(N)``
    (plain) or ``g_l = g_{l+1} + b W_l^T g_{l+1} / sqrt(N)`` (residual). A step moves every parameter
    by ``-eta gamma0^2 N`` times the gradient of ``(1/2P) sum (f - y)^2``:
    ``W_0 += (eta gamma0 / sqrt(D)) g_1 u^T``, ``W_l += (eta gamma0 c / sqrt(N)) g_{l+1} h_l^T``
    (``c = 1`` plain, ``c = b`` residual), ``w += eta gamma0 h_L``, with ``h`` the forward pass of ``u``.
    ``gamma0`` is ``model.richness`` (muP or NTK).
    """

    def __init__(self, model: DeepLinear, dim: int, seeds: int, rng: np.random.Generator, xp):
        if not math.isfinite(model.depth):
            raise ValueError("a finite network needs a finite `depth`; the infinite depth is dmft.solve's")
        self.xp = xp
        self.dim = dim
        self.width = max(1, int(round(model.width_ratio * dim)))
        self.gamma0 = model.richness
        self.residual = model.residual
        self.branch = model.branch_multiplier if model.residual else 1.0
        width = self.width
        self.input_weights = xp.asarray(rng.standard_normal((seeds, width, dim)))
        self.hidden_weights = [
            xp.asarray(rng.standard_normal((seeds, width, width))) for _ in range(model.depth - 1)
        ]
        self.readout = xp.asarray(rng.standard_normal((seeds, width)))

    def parameters(self):
        return [self.input_weights, *self.hidden_weights, self.readout]

    def _backward_fields(self):
        """``[g_1, ..., g_L]``."""
        xp, root_width = self.xp, math.sqrt(self.width)
        fields = [self.readout]
        for weights in reversed(self.hidden_weights):
            back = _rmatvec(weights, fields[0], xp) / root_width
            fields.insert(0, fields[0] + self.branch * back if self.residual else back)
        return fields

    def _forward_fields(self, inputs):
        """``[h_1, ..., h_L]`` for the input vectors ``inputs`` (``(S, D)``)."""
        xp, root_width = self.xp, math.sqrt(self.width)
        fields = [_matvec(self.input_weights, inputs, xp) / math.sqrt(self.dim)]
        for weights in self.hidden_weights:
            forward = _matvec(weights, fields[-1], xp) / root_width
            fields.append(fields[-1] + self.branch * forward if self.residual else forward)
        return fields

    def hidden_fields(self, inputs):
        """``([h_1, ..., h_L], [g_1, ..., g_L])``: the forward fields of ``inputs`` (``(S, D)``) and
        the backward fields, each ``(S, N)`` (for ``simulate(..., record_hidden=True)``)."""
        return self._forward_fields(inputs), self._backward_fields()

    def beta(self):
        g_first = self._backward_fields()[0]
        scale = math.sqrt(self.dim) / (self.gamma0 * self.width)
        return scale * _rmatvec(self.input_weights, g_first, self.xp)

    def step(self, u, learning_rate: float) -> None:
        backward = self._backward_fields()
        forward = self._forward_fields(u)
        rate = learning_rate * self.gamma0
        add_outer(self.input_weights, rate / math.sqrt(self.dim), backward[0], u)
        hidden_rate = rate * self.branch / math.sqrt(self.width)
        for index, weights in enumerate(self.hidden_weights):
            add_outer(weights, hidden_rate, backward[index + 1], forward[index])
        self.readout += rate * forward[-1]


class DiagonalNetwork:
    """Diagonal linear network of THEORY.md section 4: ``beta_j = a_j^L - b_j^L``, ``a = b = s`` at
    t = 0, ``a += eta L a^{L-1} u``, ``b -= eta L b^{L-1} u``."""

    def __init__(self, model: DiagonalLinear, dim: int, seeds: int, rng: np.random.Generator, xp):
        self.xp = xp
        self.depth = model.depth
        self.positive = xp.full((seeds, dim), model.init_scale)
        self.negative = xp.full((seeds, dim), model.init_scale)

    def parameters(self):
        return [self.positive, self.negative]

    def beta(self):
        return self.positive**self.depth - self.negative**self.depth

    def step(self, u, learning_rate: float) -> None:
        depth = self.depth
        positive_gradient = depth * self.positive ** (depth - 1)
        negative_gradient = depth * self.negative ** (depth - 1)
        self.positive += learning_rate * positive_gradient * u
        self.negative -= learning_rate * negative_gradient * u


_NETWORKS = {Linear: LinearNetwork, DeepLinear: DeepLinearNetwork, DiagonalLinear: DiagonalNetwork}


def build_network(model, dim: int, seeds: int, rng: np.random.Generator, xp):
    """The batched finite network for ``model``."""
    for model_type, network_type in _NETWORKS.items():
        if isinstance(model, model_type):
            return network_type(model, dim, seeds, rng, xp)
    raise TypeError(
        f"no finite network for {type(model).__name__}; expected one of "
        + ", ".join(t.__name__ for t in _NETWORKS)
    )
