"""DMFT of a residual deep linear network (THEORY.md section 2.2): exact in discrete time (gradient
descent, online SGD, learning-rate schedules), and the gradient flow.

Model: ``h_1 = W_0 x / sqrt(D)``, ``h_{l+1} = h_l + b W_l h_l / sqrt(N)`` (``l = 1..L-1``),
``f = sqrt(D) / (gamma0 N) w . h_L``, branch multiplier ``b = beta0 / sqrt(L)``. The data and input
sides are those of section 2.1 (:mod:`dmft.solvers._data_side`); on the hidden side the skip path
couples the layers, so ONE single-site process per neuron carries every layer (section 2.2)::

    h_1     = chi_1 + A g_1,                    A   = nu^{-1/2} R_u + gamma0 (w o C_u)
    h_{l+1} = h_l + b chi_{l+1} + b F_l g_{l+1}, F_l = b [R_h^l + gamma0 (w o C_h^l)]
    g_L     = w0 1 + E h_L,                      E   = gamma0 w
    g_l     = g_{l+1} + b xi_l + b G_l h_l,       G_l = b [R_g^{l+1} + gamma0 (w o C_g^{l+1})]

with independent sources ``chi_1 ~ GP(0, C_u)``, ``chi_{l+1} ~ GP(0, C_h^l)``, ``xi_l ~ GP(0, C_g^{l+1})``,
``w0 ~ N(0, 1)``. Here ``R_h^l = dh_l / d(field added to g_l)`` and ``R_g^l = dg_l / d(field added to
h_l)`` (so THEORY's ``R_hxi^l = b R_h^l``, ``R_gchi^l = b R_g^l``, ``R_g1 = R_g^1``); ``C_h^l``, ``C_g^l``
are the same-layer correlations; ``w`` is the weight matrix of the time grid
(:class:`dmft.solvers._network.TimeGrid`; ``w o C = eta (C)_<`` for gradient descent at a constant
rate). The network feeds the input side through ``K = gamma0^{-1} R_g^1 + w o C_g^1`` and
``xi ~ GP(0, C_g^1)``.

The layer recursion (block LU of the layer-tridiagonal system)
-------------------------------------------------------------
THEORY.md writes the hidden side as one linear system ``z = J z + sources`` over all ``2 L`` fields and
``T + 1`` times and inverts it (``O(L^2 T^3)`` when done forward in time). The system is
tridiagonal in the layer index, so it factorises into two Riccati recursions, one up and one down
the network. Going up, ``h_l = Q_l g_l + a_l`` with ``a_l`` built from the sources of layers ``<= l``::

    Q_1 = A,  a_1 = chi_1,     M_l = (I - b Q_l G_l)^{-1}
    Q_{l+1} = M_l Q_l + b F_l,  a_{l+1} = M_l a_l + b M_l Q_l xi_l + b chi_{l+1}
    Ca_{l+1} = M_l Ca_l M_l^T + b^2 (M_l Q_l) C_g^{l+1} (M_l Q_l)^T + b^2 C_h^l        (Ca = cov of a)

Going down, ``g_l = P_l h_l + e_l`` with ``e_l`` built from the sources of layers ``>= l``::

    P_L = E,  e_L = w0 1,      Z_l = (I - b P_{l+1} F_l)^{-1}
    P_l = Z_l P_{l+1} + b G_l,  e_l = Z_l e_{l+1} + b Z_l P_{l+1} chi_{l+1} + b xi_l
    Ce_l = Z_l Ce_{l+1} Z_l^T + b^2 (Z_l P_{l+1}) C_h^l (Z_l P_{l+1})^T + b^2 C_g^{l+1}  (Ce_L = 1 1^T)

``a_l`` and ``e_l`` use disjoint sources, hence are independent, and at every layer::

    h_l = W_l (a_l + Q_l e_l),  W_l = (I - Q_l P_l)^{-1};   g_l = V_l (e_l + P_l a_l),  V_l = (I - P_l Q_l)^{-1}
    R_h^l = W_l Q_l,  R_g^l = V_l P_l,
    C_h^l = W_l Ca_l W_l^T + R_h^l Ce_l R_h^{lT},   C_g^l = V_l Ce_l V_l^T + R_g^l Ca_l R_g^{lT}.

Forward in time. Without a diagonal weight ``E``, ``G_l``, ``P_l``, ``K`` are strictly lower triangular;
``A``, ``Q_l``, ``F_l`` have equal-time parts. So row ``t`` of every matrix follows from rows ``< t`` in
one sweep:
(1) down the network, ``l = L..1``: rows ``t`` of ``P_l``, ``Ce_l``, ``Z_l``, ``V_l``, ``R_g^l``,
``C_g^l`` (they need ``F_l`` only at rows ``< t``); (2) the input side's row ``t`` from ``K[t]`` and
``C_g^1``; (3) up the network, ``l = 1..L``: rows ``t`` of ``Q_l``, ``Ca_l``, ``W_l``, ``R_h^l``,
``C_h^l``, ``M_l``. Every row is a few vector-matrix products over the packed lower triangles
(compiled loops), so a step costs ``O(L t^2)`` and the solve ``O(L T^3)`` time, ``O(L T^2)`` memory;
there is no ``T x T`` solve and no iteration: exact in discrete time up to round-off. With a diagonal
weight (the implicit rule of the gradient flow, :mod:`dmft.solvers._flow`) ``P_l(t, t)`` and
``G_l(t, t)`` are non-zero: the down pass then reads the up pass's row ``t`` (``Q_l``, ``Ca_l``, ``R_h^l``,
``C_h^l``) as it stands, the resolvents' equal-time entries are solved exactly
(``V(t, t) = 1 / (1 - (PQ)(t, t))`` etc.), and :func:`dmft.solvers._network.solve_row` repeats the
sweep to a fixed point.

Cross-layer correlations
------------------------
``C_h^{ll'}(t, s) = <h_l(t) h_{l'}(s)>`` (and ``C_g^{ll'}``) follow from the same factorisation. For a
probe ``y = alpha . a_l + beta . e_l`` (``h_l(t)``: ``alpha = W_l[t]``, ``beta = R_h^l[t]``; ``g_l(t)``:
``alpha = R_g^l[t]``, ``beta = V_l[t]``) and ``l' >= l``, ``<y a_{l'}> = y_{l'}`` and
``<y e_{l'}> = z_{l'} Ce_{l'}``, where, starting from ``y_l = alpha Ca_l``, ``z_l = beta``::

    y_{l'+1} = y_{l'} M_{l'}^T + b^2 z_{l'} C_g^{l'+1} (M_{l'} Q_{l'})^T + b^2 z_{l'} (Z_{l'} P_{l'+1}) C_h^{l'},
    z_{l'+1} = z_{l'} Z_{l'}

(``a_l`` is independent of ``e_{l'}`` for ``l <= l'``; ``<e_l a_{l'}>`` picks up the sources
``xi_{l..l'-1}``, ``chi_{l+1..l'}`` that both share), so ``C_h^{ll'}(t, .) = y W_{l'}^T + z Ce_{l'} R_h^{l'T}``.
One probe costs ``O(L T^2)``; the matrices ``C_h^{ll'}(t, .)`` at one step cost ``O(L^2 T^2)``
(BLAS), which is why they are computed at selected steps (``cross_layer_steps``).

Time convention of the returned arrays: ``(times, times)`` with ``[t, s]`` = (later, earlier);
per-layer arrays are stacked ``(L, times, times)``, layer 1 first.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .._backend import check_backend
from ..models import DeepLinear
from ..result import Result
from ..training import GradientDescent, GradientFlow, OnlineSGD, check_compatible
from . import register
from ._data_side import (
    InputSide,
    dmft_result,
    grow_arrays,
    packed_length,
    packed_row,
    self_consistency_info,
    unpack,
    whole_window_input_side,
)
from ._network import (
    TimeGrid,
    check_memory,
    data_mode_of,
    self_consistency_threshold,
    check_steps,
    make_input_side,
    march_steps,
    supports_gaussian_teacher,
)

__all__ = [
    "solve_residual_linear",
    "ResidualDMFT",
    "cross_layer_correlations",
    "direct_equations",
    "whole_window_equations",
    "default_cross_layer_steps",
]

ORDER_PARAMETERS = ("C_v", "R_v", "C_Delta", "R_Delta", "C_u", "R_u", "C_h", "R_h", "C_g", "R_g")

# Per-layer matrices of the layer recursion (module docstring), with whether each is symmetric.
# MQ = M Q and ZP = Z P_{l+1} are kept because they enter every later row; Wh = (I - Q P)^{-1}.
MATRICES = {
    "Q": False, "Ca": True, "P": False, "Ce": True, "Wh": False, "V": False,
    "WQ": False, "VP": False, "Ch": True, "Cg": True, "M": False, "Z": False, "MQ": False, "ZP": False,
}  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Row kernels. ``_DenseRows`` is the NumPy reference (dense matrices, one row at a time, the
# equations as written); ``_PackedRows`` runs the same updates as compiled loops over packed lower
# triangles (:mod:`dmft.solvers._residual_kernels`). tests/test_residual.py checks that they agree.


def _resolvent_row(X_row: np.ndarray, R: np.ndarray, t: int) -> None:
    """Row ``t`` of ``R = (I - X)^{-1}`` from ``X_row = X[t, :t+1]`` (rows ``< t`` of ``R`` known):
    ``R[t, :t] = X[t, :t] R[:t, :t] / (1 - X[t, t])``, ``R[t, t] = 1 / (1 - X[t, t])``."""
    scale = 1.0 / (1.0 - X_row[t])
    R[t, :t] = (X_row[:t] @ R[:t, :t]) * scale
    R[t, t] = scale


class _DenseRows:
    """NumPy reference of the row updates, on dense ``(L, times, times)`` arrays."""

    name = "numpy"

    def __init__(self, depth: int, branch: float, gamma0: float, grid: TimeGrid):
        self.depth, self.b, self.g, self.grid = depth, branch, gamma0, grid
        self.capacity = 0
        for name in MATRICES:
            setattr(self, name, np.zeros((depth, 0, 0)))

    def grow(self, times: int) -> None:
        for name in MATRICES:
            old = getattr(self, name)
            new = np.zeros((self.depth, times, times))
            new[:, : self.capacity, : self.capacity] = old
            setattr(self, name, new)
        self.capacity = times

    @property
    def xi_covariance(self) -> np.ndarray:
        """Packed ``C_g^1`` for the input side (rebuilt on each call)."""
        times = self.capacity
        rows, cols = np.tril_indices(times)
        return self.Cg[0][rows, cols]

    def dense(self, name: str, times: int) -> np.ndarray:
        return getattr(self, name)[:, :times, :times].copy()

    def layer(self, layer: int, times: int) -> dict[str, np.ndarray]:
        return {name: getattr(self, name)[layer, :times, :times] for name in MATRICES}

    def row(self, name: str, layer: int, t: int) -> np.ndarray:
        return getattr(self, name)[layer, t, : t + 1]

    def _weights(self, n: int) -> np.ndarray:
        return self.grid.dense(n)

    def _set_symmetric(self, X: np.ndarray, t: int, row: np.ndarray) -> None:
        X[t, : t + 1] = row
        X[: t + 1, t] = row

    # g-side quantities of one layer at row t (P, Ce rows set; Q, Ca rows <= t as they stand)
    def _finish_g(self, l: int, t: int) -> None:
        n = t + 1
        P, Q, V, VP = self.P[l], self.Q[l], self.V[l], self.VP[l]
        _resolvent_row(P[t, :n] @ Q[:n, :n], V, t)  # V = (I - P Q)^{-1}
        VP[t, :n] = V[t, :n] @ P[:n, :n]
        row = V[t, :n] @ self.Ce[l][:n, :n] @ V[:n, :n].T + VP[t, :n] @ self.Ca[l][:n, :n] @ VP[:n, :n].T
        self._set_symmetric(self.Cg[l], t, row)

    # h-side quantities of one layer at row t (Q, Ca, P, Ce rows set)
    def _finish_h(self, l: int, t: int) -> None:
        n = t + 1
        P, Q, Wh, WQ = self.P[l], self.Q[l], self.Wh[l], self.WQ[l]
        _resolvent_row(Q[t, :n] @ P[:n, :n], Wh, t)  # Wh = (I - Q P)^{-1}
        WQ[t, :n] = Wh[t, :n] @ Q[:n, :n]
        row = Wh[t, :n] @ self.Ca[l][:n, :n] @ Wh[:n, :n].T + WQ[t, :n] @ self.Ce[l][:n, :n] @ WQ[:n, :n].T
        self._set_symmetric(self.Ch[l], t, row)

    def backward(self, t: int) -> None:
        """Rows ``t`` of ``P, Ce, Z, ZP, V, VP, C_g`` for ``l = L..1``."""
        b, g, n, top = self.b, self.g, t + 1, self.depth - 1
        w = self._weights(n)
        self.P[top][t, :n] = g * w[t]  # E = gamma0 w
        self._set_symmetric(self.Ce[top], t, np.ones(n))  # e_L = w0 1
        self._finish_g(top, t)
        for l in range(top - 1, -1, -1):
            G_t = b * (self.VP[l + 1][t, :n] + g * w[t] * self.Cg[l + 1][t, :n])
            F = b * (self.WQ[l][:n, :n] + g * w * self.Ch[l][:n, :n])
            Z, ZP, P_above = self.Z[l], self.ZP[l], self.P[l + 1]
            _resolvent_row(b * (P_above[t, :n] @ F), Z, t)  # Z = (I - b P F)^{-1}
            ZP[t, :n] = Z[t, :n] @ P_above[:n, :n]
            self.P[l][t, :n] = ZP[t, :n] + b * G_t
            row = (
                Z[t, :n] @ self.Ce[l + 1][:n, :n] @ Z[:n, :n].T
                + b * b * ZP[t, :n] @ self.Ch[l][:n, :n] @ ZP[:n, :n].T
                + b * b * self.Cg[l + 1][t, :n]
            )
            self._set_symmetric(self.Ce[l], t, row)
            self._finish_g(l, t)

    def forward(self, t: int, a_row: np.ndarray, cu_row: np.ndarray) -> None:
        """Rows ``t`` of ``Q, Ca, Wh, WQ, C_h, M, MQ`` for ``l = 1..L`` (``a_row = A[t, :t+1]``,
        ``cu_row = C_u[t, :t+1]``)."""
        b, g, n = self.b, self.g, t + 1
        w = self._weights(n)
        self.Q[0][t, :n] = a_row
        self._set_symmetric(self.Ca[0], t, cu_row)
        for l in range(self.depth):
            self._finish_h(l, t)
            if l == self.depth - 1:
                break
            F_t = b * (self.WQ[l][t, :n] + g * w[t] * self.Ch[l][t, :n])
            G = b * (self.VP[l + 1][:n, :n] + g * w * self.Cg[l + 1][:n, :n])
            M, MQ, Q = self.M[l], self.MQ[l], self.Q[l]
            _resolvent_row(b * (Q[t, :n] @ G), M, t)  # M = (I - b Q G)^{-1}
            MQ[t, :n] = M[t, :n] @ Q[:n, :n]
            self.Q[l + 1][t, :n] = MQ[t, :n] + F_t * b
            row = (
                M[t, :n] @ self.Ca[l][:n, :n] @ M[:n, :n].T
                + b * b * MQ[t, :n] @ self.Cg[l + 1][:n, :n] @ MQ[:n, :n].T
                + b * b * self.Ch[l][t, :n]
            )
            self._set_symmetric(self.Ca[l + 1], t, row)


class _PackedRows:
    """Compiled row updates on packed ``(L, times (times + 1) / 2)`` arrays (same results as
    :class:`_DenseRows` to round-off)."""

    name = "numba"

    def __init__(self, depth: int, branch: float, gamma0: float, grid: TimeGrid):
        from . import _residual_kernels

        self.depth, self.b, self.g, self.grid = depth, branch, gamma0, grid
        self.kernels = _residual_kernels
        self.capacity = 0
        for name in MATRICES:
            setattr(self, name, np.zeros((depth, 0)))

    def grow(self, times: int) -> None:
        grow_arrays(self, tuple(MATRICES), (), self.capacity, times)
        self.capacity = times

    @property
    def xi_covariance(self) -> np.ndarray:
        return self.Cg[0]

    def dense(self, name: str, times: int) -> np.ndarray:
        return unpack(getattr(self, name), times, symmetric=MATRICES[name])

    def layer(self, layer: int, times: int) -> dict[str, np.ndarray]:
        return {
            name: unpack(getattr(self, name)[layer], times, symmetric=symmetric)
            for name, symmetric in MATRICES.items()
        }

    def row(self, name: str, layer: int, t: int) -> np.ndarray:
        return packed_row(getattr(self, name)[layer], t)

    def backward(self, t: int) -> None:
        self.kernels.backward(
            t, self.b, self.g, self.grid.weights, self.P, self.Q, self.V, self.VP, self.Ce, self.Ca,
            self.Cg, self.Ch, self.WQ, self.Z, self.ZP,
        )  # fmt: skip

    def forward(self, t: int, a_row: np.ndarray, cu_row: np.ndarray) -> None:
        self.kernels.forward(
            t, self.b, self.g, self.grid.weights, np.ascontiguousarray(a_row), np.ascontiguousarray(cu_row),
            self.P, self.Q, self.Wh, self.WQ, self.Ce, self.Ca, self.Ch, self.Cg, self.VP, self.M, self.MQ,
        )  # fmt: skip


# ----------------------------------------------------------------------------------------------


class ResidualDMFT:
    """Forward-in-time solver state of the residual network (one instance per solve).

    Parameters
    ----------
    depth : ``L`` (hidden representations).
    branch : ``b = beta0 / sqrt(L)``.
    gamma0, width_ratio : the richness of the equations and ``nu``.
    grid : the :class:`~dmft.solvers._network.TimeGrid` (weights ``w``).
    input_side : a fresh :class:`~dmft.solvers._data_side.InputSide`.
    backend : ``"numba"`` (compiled packed rows, default) or ``"numpy"`` (dense reference; discrete
        training only).
    """

    def __init__(self, *, depth: int, branch: float, gamma0: float, width_ratio: float, grid: TimeGrid,
                 input_side: InputSide, backend: str = "numba"):  # fmt: skip
        check_backend(backend, ("numba", "numpy"))
        self.depth = depth
        self.b = branch
        self.gamma0 = gamma0
        self.nu = width_ratio
        self.grid = grid
        self.input = input_side
        rows = _PackedRows if backend == "numba" else _DenseRows
        self.rows = rows(depth, branch, gamma0, grid)
        self.kernel = np.zeros(0)  # K, packed
        self.capacity = 0
        self.grow(input_side.capacity)

    @staticmethod
    def bytes_per_time_squared(depth: int, modes: int, data_mode: str) -> float:
        """Memory per ``times^2`` of a solve (packed float64 arrays)."""
        return 8.0 * (len(MATRICES) * depth + 2) / 2.0 + InputSide.bytes_per_time_squared(modes, data_mode)

    def grow(self, times: int) -> None:
        if times <= self.capacity:
            return
        self.grid.grow(times)
        self.input.grow(times)
        self.rows.grow(times)
        grow_arrays(self, ("kernel",), (), self.capacity, times)
        self.capacity = times

    def sweep(self, t: int) -> None:
        """One pass over row ``t`` (module docstring): down the network, the input side, up."""
        rows, gamma0 = self.rows, self.gamma0
        w = self.grid.row(t)
        rows.backward(t)
        kernel_row = packed_row(self.kernel, t)
        kernel_row[:] = rows.row("VP", 0, t) / gamma0 + w * rows.row("Cg", 0, t)
        self.input.advance(t, kernel_row, rows.xi_covariance)
        cu = packed_row(self.input.C_u, t)
        a_row = packed_row(self.input.R_u, t) / math.sqrt(self.nu) + gamma0 * w * cu
        rows.forward(t, a_row, cu)

    def row_state(self) -> list[np.ndarray]:
        """The packed arrays whose row ``t`` the down pass reads before the up pass writes it
        (``Q, Ca, R_h, C_h`` of every layer), ``C_g`` (monitored) and the input side's, for
        :func:`dmft.solvers._network.solve_row` (compiled rows only)."""
        arrays = self.input.row_state()
        for name in ("Q", "Ca", "WQ", "Ch", "Cg"):
            arrays += list(getattr(self.rows, name))
        return arrays

    def equal_time(self, t: int) -> np.ndarray:
        """Equal-time quantities monitored by the flow's error control: the losses and ``C_g(t, t)``
        of the first and last layers."""
        index = t * (t + 3) // 2
        side = self.input
        test = side.bias[t] + side.init_variance[t] + side.data_variance[t] + side.noise_power
        cg = self.rows.Cg
        return np.array([test, side.C_Delta[index], cg[0, index], cg[-1, index]])

    def order_parameters(self, times: int) -> dict[str, np.ndarray]:
        """Dense arrays: the input side's ``C_v, R_v, C_Delta, R_Delta, C_u, R_u`` and the hidden side's
        ``C_h, R_h, C_g, R_g`` ``(L, times, times)`` (module docstring)."""
        out = dict(self.input.order_parameters(times))
        for name, key in (("C_h", "Ch"), ("R_h", "WQ"), ("C_g", "Cg"), ("R_g", "VP")):
            out[name] = self.rows.dense(key, times)
        return out

    def layer_factors(self, layer: int, times: int) -> dict[str, np.ndarray]:
        """Dense matrices of the layer recursion at one layer (``Q, Ca, P, Ce, Wh, V, M, Z, MQ, ZP``
        and the correlations / responses), for :func:`cross_layer_correlations`."""
        return self.rows.layer(layer, times)


# ----------------------------------------------------------------------------------------------
# Cross-layer correlations (module docstring), from the factors of a finished solve.


def cross_layer_correlations(
    layer_factors, depth: int, branch: float, steps, *, two_time: bool = False
) -> dict[str, np.ndarray]:
    """Cross-layer correlations ``C_h^{ll'}``, ``C_g^{ll'}`` from the layer recursion's factors
    (module docstring: probes ``m, d, z`` propagated up the network, batched over layers with BLAS).

    Parameters
    ----------
    layer_factors : ``layer -> {name: dense (T+1, T+1) array}`` for the names of ``MATRICES``
        (:meth:`ResidualDMFT.layer_factors`); called once per layer.
    depth : ``L``.
    branch : ``b``.
    steps : the probe steps ``t``.
    two_time : ``False``: equal-time ``C^{ll'}(t, t)`` only; ``True``: ``C^{ll'}(t, s)`` for every
        ``s`` as well. Cost ``O(L^2 T^2)`` per step either way (BLAS products on the full window).

    Returns
    -------
    ``{"C_h": ..., "C_g": ...}`` of shape ``(len(steps), L, L)`` (equal time, symmetric in the
    layer pair) or ``(len(steps), L, L, T+1)`` (``two_time``: ``[i, l, l', s] = <x_l(t_i) x_l'(s)>``,
    filled for ``l <= l'`` only).
    """
    b2 = branch * branch
    steps = np.asarray(steps, dtype=int)
    current = layer_factors(0)
    times = current["Q"].shape[0]
    out = {
        key: np.zeros((len(steps), depth, depth) + ((times,) if two_time else ()))
        for key in ("C_h", "C_g")
    }
    # One row per probe (step, start layer, field). The steps are processed in a few chunks, each on
    # the window 0..(its last step) (causality keeps the entries at times <= t exact), so that every
    # product is one large BLAS call and late steps do not make early ones pay for the whole window.
    order = np.argsort(steps)
    chunk_count = 1 if two_time else min(4, len(steps))
    chunks = []
    for members in np.array_split(order, chunk_count):
        if members.size:
            window = times if two_time else int(steps[members].max()) + 1
            chunks.append({"members": members, "n": window, "y": np.zeros((0, window)),
                           "z": np.zeros((0, window)), "step": np.zeros(0, dtype=int),
                           "layer": np.zeros(0, dtype=int)})  # fmt: skip
    for target in range(depth):
        f = current
        above = layer_factors(target + 1) if target < depth - 1 else None
        for chunk in chunks:
            n, members = chunk["n"], chunk["members"]
            at = steps[members]
            # new probes h_target(t), g_target(t): coefficients alpha on a_target, beta on e_target
            alpha = np.concatenate([f["Wh"][at, :n], f["VP"][at, :n]])
            beta = np.concatenate([f["WQ"][at, :n], f["V"][at, :n]])
            y = np.concatenate([chunk["y"], alpha @ f["Ca"][:n, :n]])
            z = np.concatenate([chunk["z"], beta])
            chunk["step"] = np.concatenate([chunk["step"], np.tile(members, 2)])
            chunk["layer"] = np.concatenate([chunk["layer"], np.full(2 * members.size, target)])
            is_h = (np.arange(len(y)) // members.size) % 2 == 0
            ce = f["Ce"][:n, :n]
            for key, coefficient_a, coefficient_e, rows in (
                ("C_h", f["Wh"][:n, :n], f["WQ"][:n, :n], is_h),
                ("C_g", f["VP"][:n, :n], f["V"][:n, :n], ~is_h),
            ):
                # <probe x_target(s)> = y . alpha_s + (z Ce) . beta_s
                if two_time:
                    values = y[rows] @ coefficient_a.T + (z[rows] @ ce) @ coefficient_e.T
                else:
                    t_rows = steps[chunk["step"][rows]]
                    values = np.einsum("rs,rs->r", y[rows], coefficient_a[t_rows])
                    values += np.einsum("rs,rs->r", z[rows], (coefficient_e @ ce)[t_rows])
                out[key][chunk["step"][rows], chunk["layer"][rows], target] = values
            if above is not None:  # move every probe up one layer
                y = y @ f["M"][:n, :n].T + b2 * (
                    (z @ above["Cg"][:n, :n]) @ f["MQ"][:n, :n].T + (z @ f["ZP"][:n, :n]) @ f["Ch"][:n, :n]
                )
                z = z @ f["Z"][:n, :n]
            chunk["y"], chunk["z"] = y, z
        current = above
    if not two_time:
        lower = np.tril(np.ones((depth, depth), dtype=bool), -1)
        for key in ("C_h", "C_g"):
            for values in out[key]:
                values[lower] = values.T[lower]
    return out


# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Whole-window equations: the self-consistency check and the independent reference.


def direct_equations(order: dict[str, np.ndarray], *, weights: np.ndarray, depth: int, branch: float,
                     gamma0: float, width_ratio: float) -> dict[str, np.ndarray]:  # fmt: skip
    """THEORY.md 2.2 as written: the hidden side as one system ``z = J z + sources`` over all layers
    and times, ``Phi = (I - J)^{-1}``, ``C_z = Phi Sigma Phi^T`` (dense, ``O((L T)^3)``: small sizes).

    Takes ``C_u, R_u`` and the hidden ``C_h, R_h, C_g, R_g`` (e.g. from a solve) and the dense
    weights ``w`` of the grid, and returns the hidden ones recomputed, plus ``C_h_cross``,
    ``C_g_cross`` of shape ``(L, L, times, times)`` (``[l, l', t, s] = <x_l(t) x_l'(s)>``).
    Independent of the layer recursion: a reference.
    """
    b, g, w = branch, gamma0, weights
    times = order["C_u"].shape[0]
    eye = np.eye(times)
    size = 2 * depth * times
    h = lambda l: slice(l * times, (l + 1) * times)  # noqa: E731
    k = lambda l: slice((depth + l) * times, (depth + l + 1) * times)  # noqa: E731
    J = np.zeros((size, size))
    J[h(0), k(0)] = order["R_u"] / math.sqrt(width_ratio) + g * w * order["C_u"]
    for l in range(depth - 1):
        J[h(l + 1), h(l)] = eye
        J[h(l + 1), k(l + 1)] = b * b * (order["R_h"][l] + g * w * order["C_h"][l])
        J[k(l), k(l + 1)] = eye
        J[k(l), h(l)] = b * b * (order["R_g"][l + 1] + g * w * order["C_g"][l + 1])
    J[k(depth - 1), h(depth - 1)] = g * w
    Phi = np.linalg.solve(np.eye(size) - J, np.eye(size))
    sigma = np.zeros((size, size))
    sigma[h(0), h(0)] = order["C_u"]
    for l in range(depth - 1):
        sigma[h(l + 1), h(l + 1)] = b * b * order["C_h"][l]
        sigma[k(l), k(l)] = b * b * order["C_g"][l + 1]
    sigma[k(depth - 1), k(depth - 1)] = 1.0
    C = Phi @ sigma @ Phi.T
    layers = range(depth)
    return {
        "R_h": np.stack([Phi[h(l), k(l)] for l in layers]),
        "R_g": np.stack([Phi[k(l), h(l)] for l in layers]),
        "C_h": np.stack([C[h(l), h(l)] for l in layers]),
        "C_g": np.stack([C[k(l), k(l)] for l in layers]),
        "C_h_cross": np.stack([np.stack([C[h(l), h(m)] for m in layers]) for l in layers]),
        "C_g_cross": np.stack([np.stack([C[k(l), k(m)] for m in layers]) for l in layers]),
    }


def whole_window_equations(order: dict[str, np.ndarray], *, weights: np.ndarray, depth: int, branch: float,
                           gamma0: float, width_ratio: float, eigenvalues, teacher_variances, shares=None,
                           alpha: float | None, noise: float, data_mode: str) -> dict[str, np.ndarray]:  # fmt: skip
    """One evaluation of every equation on the whole window, in matrix form (the layer recursion
    with triangular inverses instead of rows; dense weights ``w``). At the exact solution output =
    input; the largest difference is the self-consistency residual. ``O(L T^3)`` in BLAS products."""
    from scipy.linalg import solve_triangular

    b, g, w = branch, gamma0, weights
    times = order["C_u"].shape[0]
    eye = np.eye(times)
    inverse = lambda X: solve_triangular(eye - X, eye, lower=True)  # noqa: E731  (I - X)^{-1}
    C_h, R_h, C_g, R_g = order["C_h"], order["R_h"], order["C_g"], order["R_g"]
    F = [b * (R_h[l] + g * w * C_h[l]) for l in range(depth - 1)]
    G = [b * (R_g[l + 1] + g * w * C_g[l + 1]) for l in range(depth - 1)]
    P, Ce = [None] * depth, [None] * depth
    P[-1], Ce[-1] = g * w, np.ones((times, times))
    for l in range(depth - 2, -1, -1):
        Z = inverse(b * P[l + 1] @ F[l])
        ZP = Z @ P[l + 1]
        P[l] = ZP + b * G[l]
        Ce[l] = Z @ Ce[l + 1] @ Z.T + b * b * ZP @ C_h[l] @ ZP.T + b * b * C_g[l + 1]
    Q = order["R_u"] / math.sqrt(width_ratio) + g * w * order["C_u"]
    Ca = order["C_u"]
    out = {name: np.zeros_like(order[name]) for name in ("C_h", "R_h", "C_g", "R_g")}
    for l in range(depth):
        Wh, V = inverse(Q @ P[l]), inverse(P[l] @ Q)
        out["R_h"][l], out["R_g"][l] = Wh @ Q, V @ P[l]
        out["C_h"][l] = Wh @ Ca @ Wh.T + out["R_h"][l] @ Ce[l] @ out["R_h"][l].T
        out["C_g"][l] = V @ Ce[l] @ V.T + out["R_g"][l] @ Ca @ out["R_g"][l].T
        if l < depth - 1:
            M = inverse(b * Q @ G[l])
            MQ = M @ Q
            Ca = M @ Ca @ M.T + b * b * MQ @ C_g[l + 1] @ MQ.T + b * b * C_h[l]
            Q = MQ + b * F[l]
    out.update(
        whole_window_input_side(
            eigenvalues, teacher_variances, shares=shares, alpha=alpha, noise=noise,
            init_function_scale=1.0 / (gamma0 * math.sqrt(width_ratio)), data_mode=data_mode,
            kernel=R_g[0] / gamma0 + w * C_g[0], xi_covariance=C_g[0],
            C_Delta=order["C_Delta"], R_Delta=order["R_Delta"],
        )  # fmt: skip
    )
    return out


# ----------------------------------------------------------------------------------------------


def default_cross_layer_steps(depth: int, steps: int) -> np.ndarray:
    """Every step when ``depth^2 (T + 1)^3 <= 1e8`` (a fraction of a second of BLAS), else 11
    evenly spaced steps from 0 to ``T`` (at depth 64, T = 200 these cost about as much as the solve)."""
    if depth * depth * (steps + 1) ** 3 <= 1e8:
        return np.arange(steps + 1)
    return np.unique(np.round(np.linspace(0, steps, 11)).astype(int))


@register(
    DeepLinear,
    trainings=(GradientDescent, OnlineSGD, GradientFlow),
    when=lambda m: m.residual and math.isfinite(m.depth),
    supports=supports_gaussian_teacher,
)
def solve_residual_linear(
    model,
    data,
    training,
    *,
    cross_layer_steps=None,
    two_time_cross_layer: bool = False,
    self_consistency: bool | None = None,
    order_parameters: bool | None = None,
    progress: bool = False,
    backend: str = "numba",
) -> Result:
    """Exact ``D, N, P -> infinity`` learning curves of a residual deep linear network (THEORY.md 2.2).

    Parameters
    ----------
    model : ``dmft.DeepLinear(depth, residual=True, branch_scale=beta0)``; ``b = beta0 / sqrt(depth)``,
        ``model.richness`` is the ``gamma0`` of the equations (muP or NTK), ``width_ratio`` is ``nu``.
    data : ``dmft.GaussianData`` (isotropic or with a spectrum; Gaussian teacher).
    training : ``dmft.GradientDescent`` or ``dmft.OnlineSGD`` (a rate or a schedule; exact), or
        ``dmft.GradientFlow`` (adaptive BDF3, :mod:`dmft.solvers._flow`; compiled backend).
    cross_layer_steps : rows ``t`` (steps; grid rows for the flow) at which to return the equal-time
        cross-layer correlations (default :func:`default_cross_layer_steps` for discrete training,
        none for the flow; ``[]`` for none).
    two_time_cross_layer : also return ``C^{ll'}(t, s)`` for all ``t, s`` (memory ``L^2 T^2``,
        time ``O(L^2 T^3)``: small problems only).
    self_consistency : re-evaluate every equation on the whole window in matrix form
        (:func:`whole_window_equations`, ``O(L T^3)`` BLAS, several times the solve itself) and report
        the largest difference in ``info``; above
        :func:`dmft.solvers._network.self_consistency_threshold` the result is flagged (``status`` 1). Default: off for discrete training, on for the flow
        (where it checks the implicit rows).
    order_parameters : return the two-time order parameters (default: yes for discrete training,
        no for the flow).
    progress : tqdm progress bar.
    backend : ``"numba"`` (compiled packed rows, default) or ``"numpy"`` (dense reference, discrete
        training).

    Returns
    -------
    dmft.Result with ``method="dmft"``:

    * ``time``, ``test_loss``, ``train_loss`` and ``arrays["test_loss_bias"]``,
      ``["test_loss_init_variance"]``, ``["test_loss_data_variance"]`` (as the plain solver);
    * ``arrays`` ``C_v, R_v, C_Delta, R_Delta, C_u, R_u`` ``(times, times)``;
    * ``arrays["C_h"]``, ``["C_g"]`` ``(L, times, times)``: same-layer correlations ``<h_l(t) h_l(s)>``,
      ``<g_l(t) g_l(s)>``; ``["R_h"]``, ``["R_g"]``: the responses of ``h_l`` to a field added to
      ``g_l`` and of ``g_l`` to a field added to ``h_l`` (THEORY's ``R_hxi^l = b R_h^l``,
      ``R_gchi^l = b R_g^l``, ``R_g1 = R_g^1``);
    * ``arrays["C_h_cross"]``, ``["C_g_cross"]`` ``(len(cross_layer_steps), L, L)``: equal-time
      ``<h_l(t) h_l'(t)>``, ``<g_l(t) g_l'(t)>`` at ``arrays["cross_layer_steps"]``;
      with ``two_time_cross_layer``, ``["C_h_cross_two_time"]``, ``["C_g_cross_two_time"]``
      ``(L, L, times, times)`` with ``[l, l', t, s] = <x_l(t) x_l'(s)>``;
    * ``info``: ``solve_time_s``, ``cross_layer_time_s``, ``self_consistency_residual``,
      ``self_consistency_relative``, ``branch_multiplier``, ``richness``, ``modes``, ``backend``; for the
      flow the grid and its error estimate.

    Raises
    ------
    dmft.DivergenceError : a loss became non-finite or 1e8 times its initial value (names the step).
    MemoryError : the two-time arrays would not fit (says what fits).

    Example
    -------
    >>> import dmft
    >>> r = dmft.solve(dmft.DeepLinear(depth=8, residual=True, branch_scale=1.0),
    ...                dmft.GaussianData(alpha=2.0), dmft.GradientDescent(learning_rate=0.05, steps=50))
    >>> round(float(r.test_loss[0]), 6)   # 1 + (1 + beta0^2 / L)^(L - 1) / (gamma0^2 nu)
    3.280697
    """
    if not isinstance(model, DeepLinear) or not model.residual or not math.isfinite(model.depth):
        raise TypeError(f"`model` must be a residual dmft.DeepLinear of finite depth, got {model!r}")
    check_compatible(data, training)
    check_backend(backend, ("numba", "numpy"))
    flow = isinstance(training, GradientFlow)
    if flow and backend == "numpy":
        raise ValueError("backend='numpy' (the dense reference) runs discrete training only; use 'numba' for GradientFlow")
    depth = int(model.depth)
    b = model.branch_multiplier
    spectrum = data.resolved_spectrum()
    self_consistency = flow if self_consistency is None else self_consistency
    order_parameters = (not flow) if order_parameters is None else order_parameters
    started = time.perf_counter()

    def build(capacity, grid):
        input_side, alpha, data_mode = make_input_side(model, data, training, backend, capacity)
        solver = ResidualDMFT(depth=depth, branch=b, gamma0=model.richness, width_ratio=model.width_ratio,
                              grid=grid, input_side=input_side, backend=backend)  # fmt: skip
        return solver, alpha, data_mode

    info = {"modes": spectrum.modes, "richness": model.richness, "branch_multiplier": b, "backend": backend}
    checks = []
    if flow:
        from ._flow import integrate

        solver, alpha, data_mode = build(64, TimeGrid(64))
        run = integrate(solver, training, noise=data.noise, progress=progress, label="dmft residual flow",
                        bytes_per_time_squared=ResidualDMFT.bytes_per_time_squared(depth, spectrum.modes, data_mode))  # fmt: skip
        info.update(run.info)
        times, checks, report = run.times, list(run.checks), dict(time=run.report_time, curves=run.curves)
        cross_default = []
    else:
        check_memory(ResidualDMFT.bytes_per_time_squared(depth, spectrum.modes, data_mode_of(data, training)[0]), training.steps + 1,
                     what=f"the depth-{depth} residual DMFT of {training.steps} steps")  # fmt: skip
        solver, alpha, data_mode = build(training.steps + 1, TimeGrid.from_rates(training.rates))
        march_steps(solver.sweep, solver.input, training, data.noise, progress, "dmft residual")
        times, report = training.steps + 1, {}
        cross_default = default_cross_layer_steps(depth, training.steps)
    info["solve_time_s"] = time.perf_counter() - started
    cross_steps = cross_default if cross_layer_steps is None else check_steps("cross_layer_steps", cross_layer_steps, times - 1)

    arrays = solver.order_parameters(times) if (order_parameters or self_consistency or two_time_cross_layer) else {}
    started = time.perf_counter()
    factors = lambda layer: solver.layer_factors(layer, times)  # noqa: E731
    if len(cross_steps):
        cross = cross_layer_correlations(factors, depth, b, cross_steps)
        arrays["C_h_cross"], arrays["C_g_cross"] = cross["C_h"], cross["C_g"]
    arrays["cross_layer_steps"] = np.asarray(cross_steps, dtype=int)
    if two_time_cross_layer:
        full = cross_layer_correlations(factors, depth, b, range(times), two_time=True)
        lower = np.tril(np.ones((depth, depth), dtype=bool), -1)
        for key in ("C_h", "C_g"):
            values = np.ascontiguousarray(full[key].transpose(1, 2, 0, 3))  # [l, l', t, s], l <= l'
            values[lower] = values.transpose(1, 0, 3, 2)[lower]  # <x_l(t) x_l'(s)> = <x_l'(s) x_l(t)>
            arrays[f"{key}_cross_two_time"] = values
    info["cross_layer_time_s"] = time.perf_counter() - started

    if self_consistency:
        started = time.perf_counter()
        recomputed = whole_window_equations(
            arrays, weights=solver.grid.dense(times), depth=depth, branch=b, gamma0=model.richness,
            width_ratio=model.width_ratio, eigenvalues=spectrum.eigenvalues,
            teacher_variances=spectrum.teacher_variances, shares=solver.input.shares, alpha=alpha,
            noise=data.noise, data_mode=data_mode,
        )  # fmt: skip
        info.update(self_consistency_info(recomputed, arrays))
        info["residual_time_s"] = time.perf_counter() - started
        checks.append(("self_consistency_relative", info["self_consistency_relative"], self_consistency_threshold(training),
                       "the equations are not solved to their tolerance: report this case"))  # fmt: skip
    if not order_parameters:
        for name in ORDER_PARAMETERS:
            arrays.pop(name, None)
    if flow:
        arrays["grid_time"] = solver.grid.time[:times].copy()
    return dmft_result(solver.input, model, data, training, arrays, info, times=times, checks=checks, **report)
