"""The infinite-depth limit of the residual network, solved as a continuum in layer time (THEORY.md 2.2).

With ``b = beta0 / sqrt(L)`` every residual block moves the fields by ``O(b)`` and the two Riccati
recursions of :mod:`dmft.solvers.residual` by ``O(b^2) = O(beta0^2 / L)``. With layer time
``tau = l / L`` they become ordinary differential equations in ``tau in [0, 1]`` for ``T x T`` matrices
(full derivation in ``docs/infinite_depth.md``). Writing ``Ft = R_h + eta gamma0 (C_h)_<`` and
``Gt = R_g + eta gamma0 (C_g)_<`` (so that ``F_l = b Ft``, ``G_l = b Gt``)::

    up,   tau: 0 -> 1    dQ/dtau  =  beta0^2 (Q Gt Q + Ft),                       Q(0)  = A
                         dCa/dtau =  beta0^2 (Q Gt Ca + Ca (Q Gt)^T + Q C_g Q^T + C_h),   Ca(0) = C_u
    down, tau: 1 -> 0    dP/dtau  = -beta0^2 (P Ft P + Gt),                       P(1)  = eta gamma0 S
                         dCe/dtau = -beta0^2 (P Ft Ce + Ce (P Ft)^T + P C_h P^T + C_g),   Ce(1) = 1 1^T
    every tau            W = (I - Q P)^{-1}, V = (I - P Q)^{-1}, R_h = W Q, R_g = V P,
                         C_h = W Ca W^T + R_h Ce R_h^T,   C_g = V Ce V^T + R_g Ca R_g^T

and the input side sees ``K = gamma0^{-1} R_g(0) + eta C_g(0)_<``, ``xi ~ GP(0, C_g(0))``. The fields
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
values and slopes, fourth order like the integrator). The error is ``O(layer_steps^{-4})`` and the
cost ``O(layer_steps T^3)``, independent of depth: about the cost of a finite network of
``2 layer_steps`` layers.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..models import DeepLinear
from ..result import Result
from ..training import GradientDescent, OnlineSGD
from .._validate import positive_int
from . import register
from ._data_side import dmft_result, packed_length, packed_row, unpack
from .residual import (
    _check_steps,
    _supports,
    default_cross_layer_steps,
    make_input_side,
    packed_primitives,
    run_forward_in_time,
)

__all__ = ["solve_infinite_depth", "InfiniteDepthDMFT", "infinite_depth_cross_layer"]

KERNELS = ("numba", "numpy")

# matrices stored at every layer-time point, with whether each is symmetric; PF = P Ft and
# QG = Q Gt enter the Ce and Ca equations of later rows
MATRICES = {
    "Q": False, "Ca": True, "P": False, "Ce": True, "W": False, "V": False, "WQ": False,
    "VP": False, "Ch": True, "Cg": True, "PF": False, "QG": False,
}  # fmt: skip


class _DenseOde:
    """NumPy reference of the right-hand sides on dense ``(points, T+1, T+1)`` arrays."""

    name = "numpy"

    def __init__(self, points: int, times: int, beta2: float, eta_gamma0: float):
        self.points, self.times, self.beta2, self.eg = points, times, beta2, eta_gamma0
        for name in MATRICES:
            setattr(self, name, np.zeros((points, times, times)))
        self.xi_covariance = np.zeros(packed_length(times))

    def dense(self, name: str) -> np.ndarray:
        return getattr(self, name).copy()

    def point(self, j: int) -> dict[str, np.ndarray]:
        return {name: getattr(self, name)[j] for name in MATRICES}

    def row(self, name: str, j: int, t: int) -> np.ndarray:
        return getattr(self, name)[j, t, : t + 1]

    # state of the down sweep: (P[t, :t], Ce[t, :t+1]); of the up sweep: (Q[t, :t+1], Ca[t, :t+1])
    def set_down(self, j: int, t: int, p: np.ndarray, ce: np.ndarray) -> None:
        self.P[j, t, :t] = p
        self.Ce[j, t, : t + 1] = ce
        self.Ce[j, : t + 1, t] = ce

    def set_up(self, j: int, t: int, q: np.ndarray, ca: np.ndarray) -> None:
        self.Q[j, t, : t + 1] = q
        self.Ca[j, t, : t + 1] = ca
        self.Ca[j, : t + 1, t] = ca

    def down_rhs(self, j: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Derived rows at point ``j`` (``V, R_g, C_g, P Ft``) and ``(dP/dtau, dCe/dtau)`` of row ``t``."""
        n, eg, beta2 = t + 1, self.eg, self.beta2
        P, Q, V, VP = self.P[j], self.Q[j], self.V[j], self.VP[j]
        Ce, Ca, Cg, Ch, PF = self.Ce[j], self.Ca[j], self.Cg[j], self.Ch[j], self.PF[j]
        V[t, :t] = (P[t, :t] @ Q[:t, :t]) @ V[:t, :t]
        V[t, t] = 1.0
        VP[t, :t] = V[t, :n] @ P[:n, :t]
        row = V[t, :n] @ Ce[:n, :n] @ V[:n, :n].T + VP[t, :t] @ Ca[:t, :t] @ VP[:n, :t].T
        Cg[t, :n] = row
        Cg[:n, t] = row
        Ft = self.WQ[j][:t, :t] + eg * np.tril(Ch[:t, :t], -1)
        PF[t, :t] = P[t, :t] @ Ft
        dp = -beta2 * (PF[t, :t] @ P[:t, :t] + VP[t, :t] + eg * Cg[t, :t])
        dce = -beta2 * (
            PF[t, :t] @ Ce[:t, :n] + PF[:n, :t] @ Ce[t, :t] + (P[t, :t] @ Ch[:t, :t]) @ P[:n, :t].T + Cg[t, :n]
        )
        return dp, dce

    def up_rhs(self, j: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Derived rows at point ``j`` (``W, R_h, C_h, Q Gt``) and ``(dQ/dtau, dCa/dtau)`` of row ``t``."""
        n, eg, beta2 = t + 1, self.eg, self.beta2
        P, Q, W, WQ = self.P[j], self.Q[j], self.W[j], self.WQ[j]
        Ce, Ca, Cg, Ch, QG = self.Ce[j], self.Ca[j], self.Cg[j], self.Ch[j], self.QG[j]
        W[t, :t] = (Q[t, :n] @ P[:n, :t]) @ W[:t, :t]
        W[t, t] = 1.0
        WQ[t, :n] = W[t, :n] @ Q[:n, :n]
        row = W[t, :n] @ Ca[:n, :n] @ W[:n, :n].T + WQ[t, :n] @ Ce[:n, :n] @ WQ[:n, :n].T
        Ch[t, :n] = row
        Ch[:n, t] = row
        Gt = self.VP[j][:n, :t] + eg * np.tril(Cg[:n, :t], -1)
        QG[t, :t] = Q[t, :n] @ Gt
        ft = WQ[t, :n].copy()
        ft[:t] += eg * Ch[t, :t]
        dq = beta2 * (QG[t, :t] @ Q[:t, :n] + ft)
        dca = beta2 * (QG[t, :t] @ Ca[:t, :n] + QG[:n, :t] @ Ca[t, :t] + (Q[t, :n] @ Cg[:n, :n]) @ Q[:n, :n].T + Ch[t, :n])
        return dq, dca

    def finish_down(self, t: int) -> None:
        packed_row(self.xi_covariance, t)[:] = self.Cg[0, t, : t + 1]

    def down_sweep(self, t: int, layer_steps: int) -> None:
        """Row ``t`` of ``P, Ce`` from ``tau = 1`` down to 0 (:func:`_rk4_sweep`)."""
        start = (np.full(t, self.eg), np.ones(t + 1))  # P(1) = eta gamma0 S, Ce(1) = 1 1^T
        _rk4_sweep(lambda j, y: self.set_down(j, t, *y), lambda j: self.down_rhs(j, t), start, layer_steps, downward=True)
        self.finish_down(t)

    def up_sweep(self, t: int, layer_steps: int, a_row: np.ndarray, cu_row: np.ndarray) -> None:
        """Row ``t`` of ``Q, Ca`` from ``tau = 0`` (``Q = A``, ``Ca = C_u``) up to 1."""
        _rk4_sweep(lambda j, y: self.set_up(j, t, *y), lambda j: self.up_rhs(j, t), (a_row, cu_row), layer_steps, downward=False)


class _PackedOde:
    """Compiled right-hand sides on packed ``(points, (T+1)(T+2)/2)`` arrays."""

    name = "numba"

    def __init__(self, points: int, times: int, beta2: float, eta_gamma0: float):
        self.points, self.times, self.beta2, self.eg = points, times, beta2, eta_gamma0
        self._kernels = packed_primitives()
        self._down, self._up = self._kernels.down_rhs, self._kernels.up_rhs
        length = packed_length(times)
        for name in MATRICES:
            setattr(self, name, np.zeros((points, length)))

    @property
    def xi_covariance(self) -> np.ndarray:
        return self.Cg[0]

    def dense(self, name: str) -> np.ndarray:
        return unpack(getattr(self, name), self.times, symmetric=MATRICES[name])

    def point(self, j: int) -> dict[str, np.ndarray]:
        return {name: unpack(getattr(self, name)[j], self.times, symmetric=s) for name, s in MATRICES.items()}

    def row(self, name: str, j: int, t: int) -> np.ndarray:
        return packed_row(getattr(self, name)[j], t)

    def set_down(self, j: int, t: int, p: np.ndarray, ce: np.ndarray) -> None:
        start = t * (t + 1) // 2
        self.P[j, start : start + t] = p
        self.Ce[j, start : start + t + 1] = ce

    def set_up(self, j: int, t: int, q: np.ndarray, ca: np.ndarray) -> None:
        start = t * (t + 1) // 2
        self.Q[j, start : start + t + 1] = q
        self.Ca[j, start : start + t + 1] = ca

    def down_rhs(self, j: int, t: int):
        dp, dce = np.empty(t), np.empty(t + 1)
        self._down(t, self.beta2, self.eg, self.P[j], self.Q[j], self.V[j], self.VP[j], self.Ce[j],
                   self.Ca[j], self.Cg[j], self.Ch[j], self.WQ[j], self.PF[j], dp, dce)  # fmt: skip
        return dp, dce

    def up_rhs(self, j: int, t: int):
        dq, dca = np.empty(t + 1), np.empty(t + 1)
        self._up(t, self.beta2, self.eg, self.Q[j], self.P[j], self.W[j], self.WQ[j], self.Ca[j],
                 self.Ce[j], self.Ch[j], self.Cg[j], self.VP[j], self.QG[j], dq, dca)  # fmt: skip
        return dq, dca

    def down_sweep(self, t: int, layer_steps: int) -> None:
        self._kernels.down_sweep(t, layer_steps, self.beta2, self.eg, self.P, self.Q, self.V, self.VP, self.Ce,
                                 self.Ca, self.Cg, self.Ch, self.WQ, self.PF)  # fmt: skip

    def up_sweep(self, t: int, layer_steps: int, a_row: np.ndarray, cu_row: np.ndarray) -> None:
        self._kernels.up_sweep(t, layer_steps, self.beta2, self.eg, np.ascontiguousarray(a_row),
                               np.ascontiguousarray(cu_row), self.Q, self.P, self.W, self.WQ, self.Ca, self.Ce,
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
    richness, width_ratio, learning_rate : ``gamma0``, ``nu``, ``eta``.
    input_side : a fresh :class:`~dmft.solvers._data_side.InputSide`.
    layer_steps : RK4 intervals in layer time.
    kernels : ``"numba"`` (default) or ``"numpy"`` (dense reference).
    """

    def __init__(self, *, branch_scale, richness, width_ratio, learning_rate, input_side, layer_steps=16, kernels="numba"):  # fmt: skip
        if kernels not in KERNELS:
            raise ValueError(f"`kernels` must be one of {KERNELS}, got {kernels!r}")
        self.beta0 = branch_scale
        self.gamma0 = richness
        self.nu = width_ratio
        self.eta = learning_rate
        self.layer_steps = layer_steps
        self.points = 2 * layer_steps + 1
        self.times = input_side.times
        self.input = input_side
        engine = _PackedOde if kernels == "numba" else _DenseOde
        self.ode = engine(self.points, self.times, branch_scale**2, learning_rate * richness)
        self.kernel = np.zeros(packed_length(self.times))

    def advance(self, t: int) -> None:
        """Row ``t`` of everything: down sweep, input side, up sweep (module docstring)."""
        ode, eta, gamma0 = self.ode, self.eta, self.gamma0
        ode.down_sweep(t, self.layer_steps)
        vp, cg = ode.row("VP", 0, t), ode.row("Cg", 0, t)
        kernel_row = packed_row(self.kernel, t, t)
        kernel_row[:] = vp[:t] / gamma0 + eta * cg[:t]
        self.input.advance(t, kernel_row, ode.xi_covariance)
        cu = packed_row(self.input.C_u, t).copy()
        a_row = packed_row(self.input.R_u, t) / math.sqrt(self.nu)
        a_row[:t] += eta * gamma0 * cu[:t]
        ode.up_sweep(t, self.layer_steps, a_row, cu)

    def order_parameters(self) -> dict[str, np.ndarray]:
        """Input-side arrays and ``C_h, R_h, C_g, R_g`` at the layer-time nodes ``(layer_steps+1, T+1, T+1)``."""
        out = dict(self.input.order_parameters())
        for name, key in (("C_h", "Ch"), ("R_h", "WQ"), ("C_g", "Cg"), ("R_g", "VP")):
            out[name] = self.ode.dense(key)[::2]
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
            cache[j] = {name: value[:window, :window] for name, value in ode.point(j).items()}
        return cache[j]

    def slope(j, y, z):
        f = at(j)
        dy = y @ f["QG"].T + (z @ f["Cg"]) @ f["Q"].T + (z @ f["P"]) @ f["Ch"]
        return beta2 * dy, beta2 * (z @ f["PF"])

    y = z = np.zeros((0, window))
    probe_step = probe_node = np.zeros(0, dtype=int)
    for k in range(nodes):
        f = at(2 * k)
        alpha = np.concatenate([f["W"][steps], f["VP"][steps]])
        beta = np.concatenate([f["WQ"][steps], f["V"][steps]])
        y = np.concatenate([y, alpha @ f["Ca"]])
        z = np.concatenate([z, beta])
        probe_step = np.concatenate([probe_step, np.tile(np.arange(count), 2)])
        probe_node = np.concatenate([probe_node, np.full(2 * count, k)])
        is_h = (np.arange(len(y)) // count) % 2 == 0
        t_rows = steps[probe_step]
        zce = z @ f["Ce"]
        for key, ca, ce, rows in (("C_h", f["W"], f["WQ"], is_h), ("C_g", f["VP"], f["V"], ~is_h)):
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
    trainings=(GradientDescent, OnlineSGD),
    when=lambda m: m.residual and not math.isfinite(m.depth),
    supports=_supports,
)
def solve_infinite_depth(
    model,
    data,
    training,
    *,
    layer_steps: int = 16,
    cross_layer_steps=None,
    progress: bool = False,
    kernels: str = "numba",
) -> Result:
    """The ``depth -> infinity`` limit of a residual network with branches ``beta0 / sqrt(depth)``.

    Solves the layer-time ODEs of the module docstring directly (no extrapolation in depth).

    Parameters
    ----------
    model : ``dmft.DeepLinear(depth=math.inf, residual=True, branch_scale=beta0)``.
    data, training : as for the finite-depth solver.
    layer_steps : RK4 intervals in layer time (error ``O(layer_steps^-4)``; 16 gives ~1e-6 relative
        at ``beta0 = 1``, see ``tests/test_residual.py``).
    cross_layer_steps : steps at which to return the equal-time cross-layer correlations (default
        as :func:`dmft.solvers.residual.default_cross_layer_steps` with ``depth = layer_steps + 1``).
    progress : tqdm progress bar over steps.
    kernels : ``"numba"`` (default) or ``"numpy"`` (dense reference, same numbers to round-off).

    Returns
    -------
    dmft.Result with ``method="dmft"``: the losses, their parts and the input-side arrays as the
    finite-depth solver; ``arrays["layer_time"]`` the nodes ``tau_k = k / layer_steps``;
    ``arrays["C_h"], ["C_g"], ["R_h"], ["R_g"]`` of shape ``(layer_steps + 1, T+1, T+1)`` at those
    nodes (``tau = 0`` is the first hidden layer, ``tau = 1`` the last);
    ``arrays["C_h_cross"], ["C_g_cross"]`` ``(len(cross_layer_steps), layer_steps+1, layer_steps+1)``
    at ``arrays["cross_layer_steps"]``; ``info``: ``solve_time_s``, ``layer_steps``, ``cross_layer_time_s``.

    Raises
    ------
    dmft.DivergenceError : a loss became non-finite or 1e8 times its initial value.

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
    layer_steps = positive_int("layer_steps", layer_steps)
    if kernels not in KERNELS:
        raise ValueError(f"`kernels` must be one of {KERNELS}, got {kernels!r}")
    steps = training.steps
    cross_steps = (
        default_cross_layer_steps(layer_steps + 1, steps)
        if cross_layer_steps is None
        else _check_steps("cross_layer_steps", cross_layer_steps, steps)
    )
    started = time.perf_counter()
    input_side, _, _ = make_input_side(model, data, training, kernels)
    solver = InfiniteDepthDMFT(
        branch_scale=model.branch_scale,
        richness=model.richness,
        width_ratio=model.width_ratio,
        learning_rate=training.learning_rate,
        input_side=input_side,
        layer_steps=layer_steps,
        kernels=kernels,
    )
    run_forward_in_time(solver.advance, input_side, training, data.noise, progress, "dmft depth=inf")
    solve_time = time.perf_counter() - started

    arrays = solver.order_parameters()
    arrays["layer_time"] = np.linspace(0.0, 1.0, layer_steps + 1)
    started = time.perf_counter()
    if len(cross_steps):
        cross = infinite_depth_cross_layer(solver, cross_steps)
        arrays["C_h_cross"], arrays["C_g_cross"] = cross["C_h"], cross["C_g"]
    arrays["cross_layer_steps"] = cross_steps
    return dmft_result(
        input_side,
        model,
        data,
        training,
        arrays,
        {
            "solve_time_s": solve_time,
            "cross_layer_time_s": time.perf_counter() - started,
            "layer_steps": layer_steps,
            "modes": data.resolved_spectrum().modes,
            "richness": model.richness,
            "kernels": kernels,
        },
    )
