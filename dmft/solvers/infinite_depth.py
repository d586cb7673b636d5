"""The infinite-depth limit of the residual network, solved as a continuum in layer time (THEORY.md 2.2).

With ``b = beta0 / sqrt(L)`` every residual block moves the fields by ``O(b)`` and the two Riccati
recursions of :mod:`dmft.solvers.residual` by ``O(b^2) = O(beta0^2 / L)``. With layer time
``tau = l / L`` they become ordinary differential equations in ``tau in [0, 1]`` for two-time matrices
(full derivation in ``docs/infinite_depth.md``). Writing ``Ft = R_h + gamma0 (w o C_h)`` and
``Gt = R_g + gamma0 (w o C_g)`` (so that ``F_l = b Ft``, ``G_l = b Gt``; ``w`` the weight matrix of the
time grid, :class:`dmft.solvers._network.TimeGrid`: ``w o C = eta (C)_<`` for gradient descent)::

    up,   tau: 0 -> 1    dQ/dtau  =  beta0^2 (Q Gt Q + Ft),                       Q(0)  = A
                         dCa/dtau =  beta0^2 (Q Gt Ca + Ca (Q Gt)^T + Q C_g Q^T + C_h),   Ca(0) = C_u
    down, tau: 1 -> 0    dP/dtau  = -beta0^2 (P Ft P + Gt),                       P(1)  = gamma0 w
                         dCe/dtau = -beta0^2 (P Ft Ce + Ce (P Ft)^T + P C_h P^T + C_g),   Ce(1) = 1 1^T
    every tau            Wh = (I - Q P)^{-1}, V = (I - P Q)^{-1}, R_h = Wh Q, R_g = V P,
                         C_h = Wh Ca Wh^T + R_h Ce R_h^T,   C_g = V Ce V^T + R_g Ca R_g^T

and the input side sees ``K = gamma0^{-1} R_g(0) + w o C_g(0)``, ``xi ~ GP(0, C_g(0))``. The fields
themselves obey linear SDEs in layer time, ``dh = beta0 dchi + beta0^2 Ft g dtau``,
``dg = -beta0 dxi - beta0^2 Gt h dtau`` with Brownian increments of covariance ``C_h(tau) dtau`` and
``C_g(tau) dtau``: the equations above are their moment equations after the two-sided (Riccati)
decoupling ``h = Q g + a``, ``g = P h + e``.

Numerical scheme. Everything is still causal in training time, so row ``t`` of every matrix is
found from rows ``< t``: at each step ``t`` the rows obey ODEs in ``tau`` whose coefficients are
the rows ``< t`` (already known at every ``tau``). Each sweep (down for ``P, Ce``, then the input
side, then up for ``Q, Ca``) is integrated with the classical Runge-Kutta method on a fixed grid of
``layer_steps`` intervals; the stage values at interval midpoints need the earlier rows there, so
the solution is stored at the nodes and at the midpoints (cubic Hermite interpolation from the node
values and slopes, fourth order like the integrator). The error is ``O(layer_steps^{-4})``; the solver
estimates it by solving again with ``layer_steps / 2`` on the same time grid (the difference divided
by 15 = 2^4 - 1) and flags the result above a threshold. The cost is ``O(layer_steps T^3)``,
independent of depth: about the cost of a finite network of ``2 layer_steps`` layers. With a
diagonal weight (the implicit rule of the gradient flow) the down sweep reads the up sweep's row
``t`` at every ``tau`` as it stands and :func:`dmft.solvers._network.solve_row` repeats the sweeps to a
fixed point.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .._backend import check_backend
from .._validate import positive_int
from ..models import DeepLinear
from ..result import Result
from ..training import GradientDescent, GradientFlow, OnlineSGD, check_compatible
from . import register
from ._data_side import InputSide, dmft_result, grow_arrays, packed_row, unpack
from ._network import (
    TimeGrid,
    check_memory,
    data_mode_of,
    check_steps,
    make_input_side,
    march_steps,
    supports_gaussian_teacher,
)
from .residual import default_cross_layer_steps

__all__ = ["solve_infinite_depth", "InfiniteDepthDMFT", "infinite_depth_cross_layer", "LAYER_ERROR_THRESHOLD"]

# matrices stored at every layer-time point, with whether each is symmetric; PF = P Ft and
# QG = Q Gt enter the Ce and Ca equations of later rows
MATRICES = {
    "Q": False, "Ca": True, "P": False, "Ce": True, "Wh": False, "V": False, "WQ": False,
    "VP": False, "Ch": True, "Cg": True, "PF": False, "QG": False,
}  # fmt: skip

# Estimated layer-time discretisation error of the losses (relative) above which a discrete-time
# result is flagged: with the default 16 intervals it is ~1e-6 at beta0 = 1 (docs/infinite_depth.md);
# 1e-4 is reached only for beta0 ~ 3 or more, where more layer_steps are needed. For the flow the
# threshold is the flow's own rtol.
LAYER_ERROR_THRESHOLD = 1e-4


class _DenseOde:
    """NumPy reference of the right-hand sides on dense ``(points, times, times)`` arrays."""

    name = "numpy"

    def __init__(self, points: int, beta2: float, gamma0: float, grid: TimeGrid):
        self.points, self.beta2, self.g, self.grid = points, beta2, gamma0, grid
        self.capacity = 0
        for name in MATRICES:
            setattr(self, name, np.zeros((points, 0, 0)))

    def grow(self, times: int) -> None:
        for name in MATRICES:
            old = getattr(self, name)
            new = np.zeros((self.points, times, times))
            new[:, : self.capacity, : self.capacity] = old
            setattr(self, name, new)
        self.capacity = times

    @property
    def xi_covariance(self) -> np.ndarray:
        rows, cols = np.tril_indices(self.capacity)
        return self.Cg[0][rows, cols]

    def dense(self, name: str, times: int) -> np.ndarray:
        return getattr(self, name)[:, :times, :times].copy()

    def point(self, j: int, times: int) -> dict[str, np.ndarray]:
        return {name: getattr(self, name)[j, :times, :times] for name in MATRICES}

    def row(self, name: str, j: int, t: int) -> np.ndarray:
        return getattr(self, name)[j, t, : t + 1]

    # state of the down sweep: (P[t, :t+1], Ce[t, :t+1]); of the up sweep: (Q[t, :t+1], Ca[t, :t+1])
    def set_down(self, j: int, t: int, p: np.ndarray, ce: np.ndarray) -> None:
        self.P[j, t, : t + 1] = p
        self.Ce[j, t, : t + 1] = ce
        self.Ce[j, : t + 1, t] = ce

    def set_up(self, j: int, t: int, q: np.ndarray, ca: np.ndarray) -> None:
        self.Q[j, t, : t + 1] = q
        self.Ca[j, t, : t + 1] = ca
        self.Ca[j, : t + 1, t] = ca

    def down_rhs(self, j: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Derived rows at point ``j`` (``V, R_g, C_g, P Ft``) and ``(dP/dtau, dCe/dtau)`` of row ``t``."""
        n, g, beta2 = t + 1, self.g, self.beta2
        w = self.grid.dense(n)
        P, Q, V, VP = self.P[j], self.Q[j], self.V[j], self.VP[j]
        Ce, Ca, Cg, Ch, PF = self.Ce[j], self.Ca[j], self.Cg[j], self.Ch[j], self.PF[j]
        pq = P[t, :n] @ Q[:n, :n]
        V[t, :t] = (pq[:t] @ V[:t, :t]) / (1.0 - pq[t])
        V[t, t] = 1.0 / (1.0 - pq[t])
        VP[t, :n] = V[t, :n] @ P[:n, :n]
        row = V[t, :n] @ Ce[:n, :n] @ V[:n, :n].T + VP[t, :n] @ Ca[:n, :n] @ VP[:n, :n].T
        Cg[t, :n] = row
        Cg[:n, t] = row
        Ft = self.WQ[j][:n, :n] + g * w * Ch[:n, :n]
        PF[t, :n] = P[t, :n] @ Ft
        dp = -beta2 * (PF[t, :n] @ P[:n, :n] + VP[t, :n] + g * w[t] * Cg[t, :n])
        dce = -beta2 * (
            PF[t, :n] @ Ce[:n, :n] + PF[:n, :n] @ Ce[t, :n] + (P[t, :n] @ Ch[:n, :n]) @ P[:n, :n].T + Cg[t, :n]
        )
        return dp, dce

    def up_rhs(self, j: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Derived rows at point ``j`` (``Wh, R_h, C_h, Q Gt``) and ``(dQ/dtau, dCa/dtau)`` of row ``t``."""
        n, g, beta2 = t + 1, self.g, self.beta2
        w = self.grid.dense(n)
        P, Q, Wh, WQ = self.P[j], self.Q[j], self.Wh[j], self.WQ[j]
        Ce, Ca, Cg, Ch, QG = self.Ce[j], self.Ca[j], self.Cg[j], self.Ch[j], self.QG[j]
        qp = Q[t, :n] @ P[:n, :n]
        Wh[t, :t] = (qp[:t] @ Wh[:t, :t]) / (1.0 - qp[t])
        Wh[t, t] = 1.0 / (1.0 - qp[t])
        WQ[t, :n] = Wh[t, :n] @ Q[:n, :n]
        row = Wh[t, :n] @ Ca[:n, :n] @ Wh[:n, :n].T + WQ[t, :n] @ Ce[:n, :n] @ WQ[:n, :n].T
        Ch[t, :n] = row
        Ch[:n, t] = row
        Gt = self.VP[j][:n, :n] + g * w * Cg[:n, :n]
        QG[t, :n] = Q[t, :n] @ Gt
        dq = beta2 * (QG[t, :n] @ Q[:n, :n] + WQ[t, :n] + g * w[t] * Ch[t, :n])
        dca = beta2 * (QG[t, :n] @ Ca[:n, :n] + QG[:n, :n] @ Ca[t, :n] + (Q[t, :n] @ Cg[:n, :n]) @ Q[:n, :n].T + Ch[t, :n])
        return dq, dca

    def down_sweep(self, t: int, layer_steps: int) -> None:
        """Row ``t`` of ``P, Ce`` from ``tau = 1`` down to 0 (:func:`_rk4_sweep`)."""
        start = (self.g * self.grid.row(t), np.ones(t + 1))  # P(1) = gamma0 w, Ce(1) = 1 1^T
        _rk4_sweep(lambda j, y: self.set_down(j, t, *y), lambda j: self.down_rhs(j, t), start, layer_steps, downward=True)

    def up_sweep(self, t: int, layer_steps: int, a_row: np.ndarray, cu_row: np.ndarray) -> None:
        """Row ``t`` of ``Q, Ca`` from ``tau = 0`` (``Q = A``, ``Ca = C_u``) up to 1."""
        _rk4_sweep(lambda j, y: self.set_up(j, t, *y), lambda j: self.up_rhs(j, t), (a_row, cu_row), layer_steps, downward=False)


class _PackedOde:
    """Compiled right-hand sides on packed ``(points, times (times + 1) / 2)`` arrays."""

    name = "numba"

    def __init__(self, points: int, beta2: float, gamma0: float, grid: TimeGrid):
        from . import _residual_kernels

        self.points, self.beta2, self.g, self.grid = points, beta2, gamma0, grid
        self._kernels = _residual_kernels
        self.capacity = 0
        for name in MATRICES:
            setattr(self, name, np.zeros((points, 0)))

    def grow(self, times: int) -> None:
        grow_arrays(self, tuple(MATRICES), (), self.capacity, times)
        self.capacity = times

    @property
    def xi_covariance(self) -> np.ndarray:
        return self.Cg[0]

    def dense(self, name: str, times: int) -> np.ndarray:
        return unpack(getattr(self, name), times, symmetric=MATRICES[name])

    def point(self, j: int, times: int) -> dict[str, np.ndarray]:
        return {name: unpack(getattr(self, name)[j], times, symmetric=s) for name, s in MATRICES.items()}

    def row(self, name: str, j: int, t: int) -> np.ndarray:
        return packed_row(getattr(self, name)[j], t)

    def down_sweep(self, t: int, layer_steps: int) -> None:
        self._kernels.down_sweep(t, layer_steps, self.beta2, self.g, self.grid.weights, self.P, self.Q, self.V,
                                 self.VP, self.Ce, self.Ca, self.Cg, self.Ch, self.WQ, self.PF)  # fmt: skip

    def up_sweep(self, t: int, layer_steps: int, a_row: np.ndarray, cu_row: np.ndarray) -> None:
        self._kernels.up_sweep(t, layer_steps, self.beta2, self.g, self.grid.weights, np.ascontiguousarray(a_row),
                               np.ascontiguousarray(cu_row), self.Q, self.P, self.Wh, self.WQ, self.Ca, self.Ce,
                               self.Ch, self.Cg, self.VP, self.QG)  # fmt: skip


def _rk4_sweep(set_state, rhs, start_state, layer_steps: int, downward: bool) -> None:
    """Integrate one row's ODE over ``tau`` with classical RK4 on ``layer_steps`` intervals.

    Points ``j = 0..2 layer_steps`` (``tau = j / (2 layer_steps)``; nodes even, midpoints odd).
    ``set_state(j, y)`` writes the row's state at point ``j``; ``rhs(j)`` computes the derived rows
    there from it and returns the slope ``dy/dtau``. On return every point holds the final state
    (midpoints: cubic Hermite from the two nodes) and its derived rows.
    """
    h = 1.0 / layer_steps
    direction = -1.0 if downward else 1.0
    nodes = range(layer_steps, 0, -1) if downward else range(layer_steps)
    first = 2 * layer_steps if downward else 0
    y_from = start_state
    set_state(first, y_from)
    f_from = rhs(first)
    for k in nodes:
        j_from = 2 * k
        j_mid = j_from + (-1 if downward else 1)
        j_to = j_from + (-2 if downward else 2)
        step = direction * h
        k1 = f_from
        y = tuple(a + 0.5 * step * d for a, d in zip(y_from, k1))
        set_state(j_mid, y)
        k2 = rhs(j_mid)
        y = tuple(a + 0.5 * step * d for a, d in zip(y_from, k2))
        set_state(j_mid, y)
        k3 = rhs(j_mid)
        y = tuple(a + step * d for a, d in zip(y_from, k3))
        set_state(j_to, y)
        k4 = rhs(j_to)
        y_to = tuple(
            a + step / 6.0 * (d1 + 2.0 * d2 + 2.0 * d3 + d4) for a, d1, d2, d3, d4 in zip(y_from, k1, k2, k3, k4)
        )
        set_state(j_to, y_to)
        f_to = rhs(j_to)
        # cubic Hermite at the midpoint, slopes in the direction of integration
        y_mid = tuple(
            0.5 * (a + c) + step / 8.0 * (fa - fc) for a, c, fa, fc in zip(y_from, y_to, f_from, f_to)
        )
        set_state(j_mid, y_mid)
        rhs(j_mid)
        y_from, f_from = y_to, f_to


class InfiniteDepthDMFT:
    """Forward-in-time solver state of the infinite-depth limit (see the module docstring).

    Parameters
    ----------
    branch_scale : ``beta0``.
    gamma0, width_ratio : the richness of the equations and ``nu``.
    grid : the :class:`~dmft.solvers._network.TimeGrid` (weights ``w``).
    input_side : a fresh :class:`~dmft.solvers._data_side.InputSide`.
    layer_steps : RK4 intervals in layer time.
    backend : ``"numba"`` (default) or ``"numpy"`` (dense reference; discrete training only).
    """

    def __init__(self, *, branch_scale, gamma0, width_ratio, grid, input_side, layer_steps=16, backend="numba"):  # fmt: skip
        check_backend(backend, ("numba", "numpy"))
        self.beta0 = branch_scale
        self.gamma0 = gamma0
        self.nu = width_ratio
        self.grid = grid
        self.layer_steps = layer_steps
        self.points = 2 * layer_steps + 1
        self.input = input_side
        engine = _PackedOde if backend == "numba" else _DenseOde
        self.ode = engine(self.points, branch_scale**2, gamma0, grid)
        self.kernel = np.zeros(0)
        self.capacity = 0
        self.grow(input_side.capacity)

    @staticmethod
    def bytes_per_time_squared(layer_steps: int, modes: int, data_mode: str) -> float:
        """Memory per ``times^2`` of a solve (packed float64 arrays)."""
        return 8.0 * (len(MATRICES) * (2 * layer_steps + 1) + 2) / 2.0 + InputSide.bytes_per_time_squared(modes, data_mode)

    def grow(self, times: int) -> None:
        if times <= self.capacity:
            return
        self.grid.grow(times)
        self.input.grow(times)
        self.ode.grow(times)
        grow_arrays(self, ("kernel",), (), self.capacity, times)
        self.capacity = times

    def sweep(self, t: int) -> None:
        """Row ``t`` of everything: down sweep, input side, up sweep (module docstring)."""
        ode, gamma0 = self.ode, self.gamma0
        w = self.grid.row(t)
        ode.down_sweep(t, self.layer_steps)
        kernel_row = packed_row(self.kernel, t)
        kernel_row[:] = ode.row("VP", 0, t) / gamma0 + w * ode.row("Cg", 0, t)
        self.input.advance(t, kernel_row, ode.xi_covariance)
        cu = packed_row(self.input.C_u, t).copy()
        a_row = packed_row(self.input.R_u, t) / math.sqrt(self.nu) + gamma0 * w * cu
        ode.up_sweep(t, self.layer_steps, a_row, cu)

    def row_state(self) -> list[np.ndarray]:
        """The packed arrays whose row ``t`` the down sweep reads before the up sweep writes it
        (``Q, Ca, R_h, C_h`` at every layer-time point) and the input side's (compiled rows only)."""
        arrays = self.input.row_state()
        for name in ("Q", "Ca", "WQ", "Ch"):
            arrays += list(getattr(self.ode, name))
        return arrays

    def equal_time(self, t: int) -> np.ndarray:
        """Equal-time quantities monitored by the flow's error control: the losses and ``C_g(t, t)``
        at the input (``tau = 0``) and the readout (``tau = 1``)."""
        index = t * (t + 3) // 2
        side = self.input
        test = side.bias[t] + side.init_variance[t] + side.data_variance[t] + side.noise_power
        cg = self.ode.Cg
        return np.array([test, side.C_Delta[index], cg[0, index], cg[-1, index]])

    def order_parameters(self, times: int) -> dict[str, np.ndarray]:
        """Input-side arrays and ``C_h, R_h, C_g, R_g`` at the layer-time nodes ``(layer_steps+1, times, times)``."""
        out = dict(self.input.order_parameters(times))
        for name, key in (("C_h", "Ch"), ("R_h", "WQ"), ("C_g", "Cg"), ("R_g", "VP")):
            out[name] = self.ode.dense(key, times)[::2]
        return out


def infinite_depth_cross_layer(solver: InfiniteDepthDMFT, steps) -> dict[str, np.ndarray]:
    """Equal-time ``<h(tau, t) h(tau', t)>`` and ``<g(tau, t) g(tau', t)>`` at the layer-time nodes.

    The continuum of the probe recursion of :func:`dmft.solvers.residual.cross_layer_correlations`:
    a probe started at node ``tau`` with ``y = alpha Ca(tau)``, ``z = beta`` follows, for ``tau' > tau``,
    ``dy/dtau' = beta0^2 [y (Q Gt)^T + z C_g Q^T + z P C_h]``, ``dz/dtau' = beta0^2 z (P Ft)``
    (RK4 on the solver's grid, midpoint values as stored), and
    ``<probe h(tau')> = y W^T + z Ce R_h^T``, ``<probe g(tau')> = y R_g^T + z Ce V^T``.

    Returns ``{"C_h", "C_g"}`` of shape ``(len(steps), layer_steps + 1, layer_steps + 1)``.
    """
    ode, beta2 = solver.ode, solver.beta0**2
    steps = np.asarray(steps, dtype=int)
    nodes = solver.layer_steps + 1
    h = 1.0 / solver.layer_steps
    window = int(steps.max()) + 1
    count = len(steps)
    out = {key: np.zeros((count, nodes, nodes)) for key in ("C_h", "C_g")}
    cache: dict[int, dict] = {}

    def at(j):  # dense matrices at point j (the last few kept: each is used by consecutive stages)
        if j not in cache:
            if len(cache) > 3:
                cache.clear()
            cache[j] = {name: value[:window, :window] for name, value in ode.point(j, window).items()}
        return cache[j]

    def slope(j, y, z):
        f = at(j)
        dy = y @ f["QG"].T + (z @ f["Cg"]) @ f["Q"].T + (z @ f["P"]) @ f["Ch"]
        return beta2 * dy, beta2 * (z @ f["PF"])

    y = z = np.zeros((0, window))
    probe_step = probe_node = np.zeros(0, dtype=int)
    for k in range(nodes):
        f = at(2 * k)
        alpha = np.concatenate([f["Wh"][steps], f["VP"][steps]])
        beta = np.concatenate([f["WQ"][steps], f["V"][steps]])
        y = np.concatenate([y, alpha @ f["Ca"]])
        z = np.concatenate([z, beta])
        probe_step = np.concatenate([probe_step, np.tile(np.arange(count), 2)])
        probe_node = np.concatenate([probe_node, np.full(2 * count, k)])
        is_h = (np.arange(len(y)) // count) % 2 == 0
        t_rows = steps[probe_step]
        zce = z @ f["Ce"]
        for key, ca, ce, rows in (("C_h", f["Wh"], f["WQ"], is_h), ("C_g", f["VP"], f["V"], ~is_h)):
            values = np.einsum("rs,rs->r", y[rows], ca[t_rows[rows]])
            values += np.einsum("rs,rs->r", zce[rows], ce[t_rows[rows]])
            out[key][probe_step[rows], probe_node[rows], k] = values
        if k < nodes - 1:  # RK4 from node k to node k + 1
            k1 = slope(2 * k, y, z)
            k2 = slope(2 * k + 1, y + 0.5 * h * k1[0], z + 0.5 * h * k1[1])
            k3 = slope(2 * k + 1, y + 0.5 * h * k2[0], z + 0.5 * h * k2[1])
            k4 = slope(2 * k + 2, y + h * k3[0], z + h * k3[1])
            y = y + h / 6.0 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
            z = z + h / 6.0 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    lower = np.tril(np.ones((nodes, nodes), dtype=bool), -1)
    for key in out:
        for values in out[key]:
            values[lower] = values.T[lower]
    return out


@register(
    DeepLinear,
    trainings=(GradientDescent, OnlineSGD, GradientFlow),
    when=lambda m: m.residual and not math.isfinite(m.depth),
    supports=supports_gaussian_teacher,
)
def solve_infinite_depth(
    model,
    data,
    training,
    *,
    layer_steps: int | None = None,
    layer_error_estimate: bool = True,
    cross_layer_steps=None,
    order_parameters: bool | None = None,
    progress: bool = False,
    backend: str = "numba",
) -> Result:
    """The ``depth -> infinity`` limit of a residual network with branches ``beta0 / sqrt(depth)``.

    Solves the layer-time ODEs of the module docstring directly (no extrapolation in depth).

    Parameters
    ----------
    model : ``dmft.DeepLinear(depth=math.inf, residual=True, branch_scale=beta0)``.
    data, training : as for the finite-depth solver (``GradientFlow`` with the compiled backend).
    layer_steps : RK4 intervals in layer time (error ``O(layer_steps^-4)``; 16 gives ~1e-6 relative
        at ``beta0 = 1``, see ``tests/test_residual.py``). Default: 16 for discrete training; for the
        flow ``ceil(16 (1e-5 / rtol)^{1/4})`` (9 at ``rtol = 1e-4``), which keeps the layer-time error
        near ``rtol / 10`` at ``beta0 = 1`` (it is estimated and checked, see ``layer_error_estimate``).
    layer_error_estimate : estimate the layer-time error by a second solve with ``layer_steps // 2``
        on the same time grid (``|L_n - L_{n/2}| / 15``, about half the cost of the solve), report it
        as ``info["layer_time_error"]`` and flag the result above :data:`LAYER_ERROR_THRESHOLD` (the
        flow's ``rtol`` for the flow).
    cross_layer_steps : rows (steps; grid rows for the flow) at which to return the equal-time
        cross-layer correlations (default as :func:`dmft.solvers.residual.default_cross_layer_steps`
        with ``depth = layer_steps + 1`` for discrete training, none for the flow).
    order_parameters : return the two-time order parameters (default: yes for discrete training, no
        for the flow).
    progress : tqdm progress bar.
    backend : ``"numba"`` (default) or ``"numpy"`` (dense reference, same numbers to round-off;
        discrete training).

    Returns
    -------
    dmft.Result with ``method="dmft"``: the losses, their parts and the input-side arrays as the
    finite-depth solver; ``arrays["layer_time"]`` the nodes ``tau_k = k / layer_steps``;
    ``arrays["C_h"], ["C_g"], ["R_h"], ["R_g"]`` of shape ``(layer_steps + 1, times, times)`` at those
    nodes (``tau = 0`` is the first hidden layer, ``tau = 1`` the last);
    ``arrays["C_h_cross"], ["C_g_cross"]`` ``(len(cross_layer_steps), layer_steps+1, layer_steps+1)``
    at ``arrays["cross_layer_steps"]``; ``info``: ``solve_time_s``, ``layer_steps``,
    ``layer_time_error``, ``cross_layer_time_s`` and, for the flow, the grid and its error estimate.

    Raises
    ------
    dmft.DivergenceError : a loss became non-finite or 1e8 times its initial value.
    MemoryError : the two-time arrays would not fit (says what fits).

    Example
    -------
    >>> import math, dmft
    >>> r = dmft.solve(dmft.DeepLinear(depth=math.inf, residual=True, branch_scale=1.0),
    ...                dmft.GaussianData(alpha=2.0), dmft.GradientDescent(learning_rate=0.05, steps=20))
    >>> round(float(r.test_loss[0]), 6)   # 1 + exp(beta0^2) / (gamma0^2 nu)
    3.718282
    """
    if not isinstance(model, DeepLinear) or not model.residual or math.isfinite(model.depth):
        raise TypeError(f"`model` must be dmft.DeepLinear(depth=math.inf, residual=True), got {model!r}")
    check_compatible(data, training)
    check_backend(backend, ("numba", "numpy"))
    flow = isinstance(training, GradientFlow)
    if layer_steps is None:
        layer_steps = min(64, max(4, math.ceil(16 * (1e-5 / training.rtol) ** 0.25))) if flow else 16
    layer_steps = positive_int("layer_steps", layer_steps)
    if flow and backend == "numpy":
        raise ValueError("backend='numpy' (the dense reference) runs discrete training only; use 'numba' for GradientFlow")
    spectrum = data.resolved_spectrum()
    order_parameters = (not flow) if order_parameters is None else order_parameters
    started = time.perf_counter()

    def build(capacity, grid, intervals):
        input_side, _, data_mode = make_input_side(model, data, training, backend, capacity)
        solver = InfiniteDepthDMFT(branch_scale=model.branch_scale, gamma0=model.richness,
                                   width_ratio=model.width_ratio, grid=grid, input_side=input_side,
                                   layer_steps=intervals, backend=backend)  # fmt: skip
        return solver, data_mode

    info = {"modes": spectrum.modes, "richness": model.richness, "layer_steps": layer_steps, "backend": backend}
    checks = []
    coarse_steps = max(layer_steps // 2, 1)
    if flow:
        from ._flow import integrate, replay

        solver, data_mode = build(64, TimeGrid(64), layer_steps)
        run = integrate(solver, training, noise=data.noise, progress=progress, label="dmft depth=inf flow",
                        bytes_per_time_squared=InfiniteDepthDMFT.bytes_per_time_squared(layer_steps, spectrum.modes, data_mode))  # fmt: skip
        info.update(run.info)
        times, checks, report = run.times, list(run.checks), dict(time=run.report_time, curves=run.curves)
        cross_default = []
        threshold = training.rtol
        if layer_error_estimate:
            coarse, _ = build(times, TimeGrid(times), coarse_steps)
            replay(coarse, solver.grid.time[:times], training.rtol)
    else:
        check_memory(InfiniteDepthDMFT.bytes_per_time_squared(layer_steps, spectrum.modes, data_mode_of(data, training)[0]),
                     training.steps + 1, what=f"the infinite-depth DMFT of {training.steps} steps")  # fmt: skip
        solver, data_mode = build(training.steps + 1, TimeGrid.from_rates(training.rates), layer_steps)
        march_steps(solver.sweep, solver.input, training, data.noise, progress, "dmft depth=inf")
        times, report = training.steps + 1, {}
        cross_default = default_cross_layer_steps(layer_steps + 1, training.steps)
        threshold = LAYER_ERROR_THRESHOLD
        if layer_error_estimate:
            coarse, _ = build(training.steps + 1, TimeGrid.from_rates(training.rates), coarse_steps)
            march_steps(coarse.sweep, coarse.input, training, data.noise, False, "")
    info["solve_time_s"] = time.perf_counter() - started
    if layer_error_estimate:
        fine = np.stack([solver.input.test_loss(times), solver.input.train_loss(times)])
        rough = np.stack([coarse.input.test_loss(times), coarse.input.train_loss(times)])
        scale = np.maximum(np.abs(fine), 1e-3 * np.max(np.abs(fine), axis=1, keepdims=True))
        info["layer_time_error"] = float(np.max(np.abs(fine - rough) / scale)) / 15.0  # 4th order: 2^4 - 1
        checks.append(("layer_time_error", info["layer_time_error"], threshold,
                       "increase `layer_steps` (the error falls like layer_steps^-4)"))  # fmt: skip
    cross_steps = cross_default if cross_layer_steps is None else check_steps("cross_layer_steps", cross_layer_steps, times - 1)

    arrays = solver.order_parameters(times) if order_parameters else {}
    arrays["layer_time"] = np.linspace(0.0, 1.0, layer_steps + 1)
    started = time.perf_counter()
    if len(cross_steps):
        cross = infinite_depth_cross_layer(solver, cross_steps)
        arrays["C_h_cross"], arrays["C_g_cross"] = cross["C_h"], cross["C_g"]
    arrays["cross_layer_steps"] = np.asarray(cross_steps, dtype=int)
    info["cross_layer_time_s"] = time.perf_counter() - started
    if flow:
        arrays["grid_time"] = solver.grid.time[:times].copy()
    return dmft_result(solver.input, model, data, training, arrays, info, times=times, checks=checks, **report)
