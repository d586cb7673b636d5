"""DMFT of a plain (non-residual) deep linear network (THEORY.md section 2.1): exact in discrete
time (gradient descent, online SGD, learning-rate schedules) and the gradient flow.

Model (THEORY.md section 2): ``h_1 = W_0 x / sqrt(D)``, ``h_{l+1} = W_l h_l / sqrt(N)``,
``f = sqrt(D) / (gamma0 N) w . h_L``, every parameter moved by ``-eta gamma0^2 N`` times the gradient.
In the limit ``D, N, P -> infinity`` (``nu = N / D``, ``alpha = P / D`` fixed) the dynamics reduces to
single-site processes that are linear in independent Gaussian sources:

* data and input sides (shared with the residual network): :mod:`dmft.solvers._data_side`;
* hidden layer ``l = 1..L`` (one per neuron), with ``w`` the weight matrix of the time grid
  (:class:`dmft.solvers._network.TimeGrid`: ``w[t, s] = eta_s`` for ``s < t`` for gradient descent with
  rates ``eta_s``, so that ``w o C = eta (C)_<`` at a constant rate)::

      h^l = chi^l + A^l g^l,     g^l = xi^l + B^l h^l
      A^1 = nu^{-1/2} R_u + gamma0 (w o C_u),       A^l = R_h^{l-1} + gamma0 (w o C_h^{l-1})
      B^l = R_g^{l+1} + gamma0 (w o C_g^{l+1}),     B^L = gamma0 w
      chi^1 ~ GP(0, C_u),  chi^l ~ GP(0, C_h^{l-1}),  xi^l ~ GP(0, C_g^{l+1}),  xi^L = w0 1
      R_h^l = dh^l/dxi^l = (I - A B)^{-1} A,          R_g^l = dg^l/dchi^l = (I - B A)^{-1} B
      C_h^l = (I-AB)^{-1} [C_chi + A C_xi A^T] (I-AB)^{-T},  C_g^l = (I-BA)^{-1} [C_xi + B C_chi B^T] (I-BA)^{-T}

* coupling: ``K = gamma0^{-1} R_g^1 + w o C_g^1`` and ``C_g^1`` drive the input side.

Where the equations come from (re-derived for this module; they agree with THEORY.md 2.1). ``W_0``
couples two fields: ``W_0 u / sqrt(D)`` on the hidden side and ``W_0^T g_1 / sqrt(N)`` on the input
side, which enters ``beta = sqrt(D)/(gamma0 N) W_0^T g_1`` as ``(gamma0 sqrt(nu))^{-1} xi``. The
cavity method gives ``W_0(0) u / sqrt(D) = chi^1 + nu^{-1/2} sum_s <du(t)/dxi(s)> g_1(s)`` and
``W_0(0)^T g_1 / sqrt(N) = xi + sqrt(nu) sum_s <dg_1(t)/dchi^1(s)> u(s)``; the updates
``W_0(t) = W_0(0) + (gamma0 / sqrt(D)) sum_s w[t, s] g_1(s) u(s)^T`` add ``gamma0 (w o C_u) g_1`` to
``h_1`` and ``(w o C_g^1) u`` to ``beta``. The square matrices ``W_l`` give ``A^{l+1}``, ``B^l`` the
same way with ratio 1, and ``w(t) = w(0) + gamma0 sum_s w[t, s] h_L(s)`` gives ``B^L``. The derivation
never uses that the update is explicit, so it holds for any lower-triangular ``w``: a learning-rate
schedule, and the trapezoidal rule of the gradient flow, whose ``w`` has a diagonal
(docs/continuous_time.md). Since ``u(t)`` contains ``v(t) = ... - c xi(t)`` with unit weight
(``R_Delta(t, t) = 1``), ``R_u(t, t) = -c`` and ``A^l(t, t) = -1/(gamma0 nu)`` at every layer for
gradient descent: the initial function pulls ``h_1`` against ``g_1``.

Test-loss decomposition. ``v_k(t)`` is a linear combination of three independent sources, so
``C_v(t, t) = sum_k p_k lambda_k [b_k V_beta(t)^2 + V_xi(t) C_g^1 V_xi(t)^T + V_psi(t) C_Delta V_psi(t)^T]``:
the teacher's part (bias), the initial function's part (``~ 1/(gamma0^2 nu)``, 0 as ``nu -> infinity``)
and the finite-data part (``~ alpha^{-1/2}``, it carries the label noise and the resampling noise of
the data; for online SGD the minibatch noise). ``C_g^1`` and ``C_Delta`` themselves depend on all
sources: the split is by the input-side source that carries the fluctuation.

Forward-in-time solve
---------------------
Without a diagonal weight, ``B^l``, ``K`` and ``R_g^l`` are strictly lower triangular and ``A^l`` has
the equal-time part ``nu^{-1/2} R_u(t, t)``. Row ``t`` of every two-time function then follows from
rows ``< t`` in one sweep, with no iteration:

1. backward, ``l = L..1``: row ``t`` of ``B^l`` (needs layer ``l+1``'s row ``t``), then ``g^l(t)``'s
   coefficients on its sources ``G_chi[t] = B[t] H_chi``, ``G_xi[t] = e_t + B[t] H_xi``, then
   ``C_g^l(t, s) = G_chi[t] C_chi G_chi[s]^T + G_xi[t] C_xi G_xi[s]^T`` and ``R_g^l[t] = G_chi[t]``;
2. the input side's row ``t`` from ``K[t]`` and ``C_g^1`` (gives ``C_v, R_v, C_Delta, R_Delta, C_u, R_u``);
3. forward, ``l = 1..L``: row ``t`` of ``A^l`` (needs layer ``l-1``'s or ``u``'s row ``t``), then
   ``H_chi[t] = e_t + A[t] G_chi``, ``H_xi[t] = A[t] G_xi``, ``C_h^l(t, s)``, ``R_h^l[t] = H_xi[t]``.

The coefficient matrices are the lower-triangular propagators ``H_chi = (I - AB)^{-1}``,
``H_xi = R_h``, ``G_xi = (I - BA)^{-1}``, ``G_chi = R_g``, built one row at a time (forward
substitution) rather than inverted. A row costs about a dozen vector-matrix products of size
``t^2/2`` per layer, so the solve costs ``O(L T^3)`` plus ``O(modes T^3)`` on the input side, with no
``T x T`` solve anywhere; memory ``O((L + modes) T^2)``. Exact in discrete time: the only error is
round-off. All arrays are kept packed (lower triangles, rows contiguous): the solver is bound by
memory bandwidth, and the Numba kernels stream exactly the half that is needed.

With a diagonal weight ``d_t`` (the trapezoidal rule of the flow) ``B^l(t, t)``, ``K(t, t)`` are
non-zero and row ``t`` is implicit. Within each layer the equal-time pair is solved exactly: with
``a = sum_{s<t} A(t, s) G[s]`` and ``b = sum_{s<t} B(t, s) H[s]``,
``G_chi[t] = (b_chi + B_tt (e_t + a_chi)) / (1 - A_tt B_tt)``, ``H_chi[t] = (e_t + a_chi + A_tt b_chi) / (1 - A_tt B_tt)``
(and likewise for ``xi``); the input side solves its own (``K(t, t)``, ``R_Delta(t, t)``). The
couplings between layers at row ``t`` are iterated: the backward pass reads the ``A`` rows of the
previous iterate, :func:`dmft.solvers._network.solve_row` repeats sweeps with Anderson mixing.

Time convention of the returned arrays: ``(times, times)`` with ``[t, s]`` = (later, earlier);
correlations are symmetric, responses ``R(t, s)`` (response at ``t`` to a source at ``s``) are lower
triangular. Per-layer arrays are stacked ``(L, times, times)``, layer 1 first.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .._backend import check_backend
from ..errors import UnsupportedError
from ..models import DeepLinear
from ..result import Result
from ..training import GradientDescent, GradientFlow, OnlineSGD, check_compatible
from . import register
from ._data_side import (
    InputSide,
    RowSolveError,
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
    make_input_side,
    march_steps,
    solve_row,
    supports_gaussian_teacher,
)

__all__ = ["solve_deep_linear", "DeepLinearDMFT", "whole_window_equations"]



class _Layer:
    """Coefficient rows and order parameters of one hidden layer, packed (see the module docstring).

    ``H_chi[t, s]``, ``H_xi[t, s]``: coefficients of ``h(t)`` on ``chi(s)``, ``xi(s)``; ``G_chi``,
    ``G_xi`` those of ``g(t)``. All four are lower triangular; ``R_h = H_xi``, ``R_g = G_chi``. The
    top layer's source ``xi^L = w0 1`` is one scalar: ``h_w0[t]``, ``g_w0[t]`` are the coefficients
    of ``h^L(t)``, ``g^L(t)`` on ``w0``.
    """

    PACKED = ("H_chi", "H_xi", "G_chi", "G_xi", "C_h", "C_g")

    def __init__(self, top: bool, kernels):
        self.top = top
        self.ops = kernels
        for name in self.PACKED:
            setattr(self, name, np.zeros(0))
        self.h_w0, self.g_w0 = np.zeros(0), np.zeros(0)
        self.capacity = 0
        self._b = None  # (b_chi, b_xi, b_w0, B_tt) of the last backward pass

    def grow(self, times: int) -> None:
        grow_arrays(self, self.PACKED, ("h_w0", "g_w0"), self.capacity, times)
        self.capacity = times

    def _vecmat(self, row: np.ndarray, packed: np.ndarray, n: int) -> np.ndarray:
        return self.ops.vecmat(row[None], packed[None], n)[0]

    def _covariance_row(self, t, coefficients, rows, source_covariances, w0_history) -> np.ndarray:
        """``C(t, s) = X_chi[t] C_chi X_chi[s]^T + X_xi[t] C_xi X_xi[s]^T`` for ``s <= t``, where
        ``coefficients = (X_chi, X_xi)`` are this process's packed coefficients, ``rows`` their
        row ``t``; for the top layer the ``xi`` part is ``w0(t) w0(s)`` (from ``w0_history``)."""
        ops = self.ops
        n = t + 1
        chi_cov, xi_cov = source_covariances
        row = ops.rowdot(coefficients[0][None], ops.symv(chi_cov, rows[0][None]), n)[0]
        if self.top:
            row += w0_history[t] * w0_history[:n]
        else:
            row += ops.rowdot(coefficients[1][None], ops.symv(xi_cov, rows[1][None]), n)[0]
        return row

    def backward(self, t: int, b_row: np.ndarray, a_row: np.ndarray, chi_cov: np.ndarray, xi_cov) -> None:
        """Row ``t`` of ``g = xi + B h`` and ``C_g``: ``b_row = B[t, :t+1]`` (this sweep's layer above),
        ``a_row = A[t, :t+1]`` (previous iterate; only read when ``B(t, t) != 0``); ``chi_cov``
        filled to row ``t`` (row ``t``: previous iterate), ``xi_cov`` to row ``t``."""
        n = t + 1
        b_chi = self._vecmat(b_row[:t], self.H_chi, n)
        b_xi = self._vecmat(b_row[:t], self.H_xi, n)
        b_w0 = float(b_row[:t] @ self.h_w0[:t]) if self.top else 0.0
        B_tt = float(b_row[t])
        g_chi, g_xi = packed_row(self.G_chi, t), packed_row(self.G_xi, t)
        if B_tt != 0.0:  # equal-time pair: h(t) = ... + A_tt g(t), g(t) = ... + B_tt h(t)
            A_tt = float(a_row[t])
            denominator = 1.0 - A_tt * B_tt
            if not abs(denominator) > 1e-8:
                raise RowSolveError(f"row {t}: 1 - A(t,t) B(t,t) = {denominator:.3g} (step too long)")
            a_chi = self._vecmat(a_row[:t], self.G_chi, n)
            a_xi = self._vecmat(a_row[:t], self.G_xi, n)
            a_chi[t] += 1.0  # e_t + a_chi
            g_chi[:] = (b_chi + B_tt * a_chi) / denominator
            g_xi[:] = B_tt * a_xi
            g_xi[t] += 1.0
            g_xi += b_xi
            g_xi /= denominator
            if self.top:
                a_w0 = float(a_row[:t] @ self.g_w0[:t])
                self.g_w0[t] = (1.0 + b_w0 + B_tt * a_w0) / denominator
        else:
            g_chi[:] = b_chi
            g_xi[:] = b_xi
            g_xi[t] += 1.0
            if self.top:
                self.g_w0[t] = 1.0 + b_w0
        self._b = (b_chi, b_xi, b_w0, B_tt)
        packed_row(self.C_g, t)[:] = self._covariance_row(
            t, (self.G_chi, self.G_xi), (g_chi, g_xi), (chi_cov, xi_cov), self.g_w0
        )

    def forward(self, t: int, a_row: np.ndarray, chi_cov: np.ndarray, xi_cov) -> None:
        """Row ``t`` of ``h = chi + A g`` and ``C_h``: ``a_row = A[t, :t+1]`` (this sweep's layer
        below); uses this sweep's ``b`` sums; both covariances filled to row ``t``."""
        n = t + 1
        b_chi, b_xi, b_w0, B_tt = self._b
        A_tt = float(a_row[t])
        denominator = 1.0 - A_tt * B_tt
        a_chi = self._vecmat(a_row[:t], self.G_chi, n)
        a_xi = self._vecmat(a_row[:t], self.G_xi, n)
        h_chi, h_xi = packed_row(self.H_chi, t), packed_row(self.H_xi, t)
        h_chi[:] = a_chi + A_tt * b_chi
        h_chi[t] += 1.0
        h_chi /= denominator
        h_xi[:] = a_xi + A_tt * b_xi
        h_xi[t] += A_tt
        h_xi /= denominator
        if self.top:
            self.h_w0[t] = (float(a_row[:t] @ self.g_w0[:t]) + A_tt * (1.0 + b_w0)) / denominator
        packed_row(self.C_h, t)[:] = self._covariance_row(
            t, (self.H_chi, self.H_xi), (h_chi, h_xi), (chi_cov, xi_cov), self.h_w0
        )


class DeepLinearDMFT:
    """The forward-in-time solver state (one instance per solve); see the module docstring.

    Parameters
    ----------
    depth, gamma0 (the richness of the equations), width_ratio (``nu``)
    grid : the :class:`~dmft.solvers._network.TimeGrid` (weights ``w``), grown by the caller.
    input_side : a fresh :class:`~dmft.solvers._data_side.InputSide`.
    """

    def __init__(self, *, depth: int, gamma0: float, width_ratio: float, grid: TimeGrid, input_side: InputSide):
        self.depth = depth
        self.gamma0 = gamma0
        self.nu = width_ratio
        self.grid = grid
        self.input = input_side
        self.layers = [_Layer(top=(l == depth - 1), kernels=input_side.kernels) for l in range(depth)]
        self.kernel = np.zeros(0)  # K, packed
        self.capacity = 0
        self.grow(input_side.capacity)

    @staticmethod
    def bytes_per_time_squared(depth: int, modes: int, data_mode: str) -> float:
        """Memory per ``times^2`` of a solve (packed float64 arrays)."""
        return 8.0 * (6 * depth + 2) / 2.0 + InputSide.bytes_per_time_squared(modes, data_mode)

    def grow(self, times: int) -> None:
        """Make room for ``times`` rows in every array (the grid included)."""
        if times <= self.capacity:
            return
        self.grid.grow(times)
        self.input.grow(times)
        for layer in self.layers:
            layer.grow(times)
        grow_arrays(self, ("kernel",), (), self.capacity, times)
        self.capacity = times

    # ------------------------------------------------------------------------------------------
    def _weighted(self, response_row: np.ndarray, covariance_row: np.ndarray, t: int, scale: float) -> np.ndarray:
        """``response_row + scale (w o C)[t, :t+1]``."""
        return response_row + scale * self.grid.row(t) * covariance_row

    def b_row(self, layer: int, t: int) -> np.ndarray:
        """``B^l[t, :t+1] = R_g^{l+1}[t] + gamma0 (w o C_g^{l+1})[t]`` (``layer`` 0-based); the top
        layer's ``B^L = gamma0 w``."""
        if layer == self.depth - 1:
            return self.gamma0 * self.grid.row(t)
        above = self.layers[layer + 1]
        return self._weighted(packed_row(above.G_chi, t), packed_row(above.C_g, t), t, self.gamma0)

    def a_row(self, layer: int, t: int) -> np.ndarray:
        """``A^l[t, :t+1]`` (``layer`` 0-based): ``nu^{-1/2} R_u + gamma0 (w o C_u)`` for the first
        layer, ``R_h^{l-1} + gamma0 (w o C_h^{l-1})`` above."""
        if layer == 0:
            return self._weighted(packed_row(self.input.R_u, t) / math.sqrt(self.nu), packed_row(self.input.C_u, t), t, self.gamma0)
        below = self.layers[layer - 1]
        return self._weighted(packed_row(below.H_xi, t), packed_row(below.C_h, t), t, self.gamma0)

    def chi_covariance(self, layer: int) -> np.ndarray:
        return self.input.C_u if layer == 0 else self.layers[layer - 1].C_h

    def xi_covariance(self, layer: int) -> np.ndarray | None:
        return None if layer == self.depth - 1 else self.layers[layer + 1].C_g

    def sweep(self, t: int) -> None:
        """One pass over row ``t`` (exact when the grid has no diagonal weight at ``t``)."""
        for layer in reversed(range(self.depth)):
            self.layers[layer].backward(
                t, self.b_row(layer, t), self.a_row(layer, t), self.chi_covariance(layer), self.xi_covariance(layer)
            )
        first = self.layers[0]
        kernel_row = packed_row(self.kernel, t)
        kernel_row[:] = self._weighted(packed_row(first.G_chi, t) / self.gamma0, packed_row(first.C_g, t), t, 1.0)
        self.input.advance(t, kernel_row, first.C_g)
        for layer in range(self.depth):
            self.layers[layer].forward(t, self.a_row(layer, t), self.chi_covariance(layer), self.xi_covariance(layer))

    def row_state(self) -> list[np.ndarray]:
        """The packed arrays whose row ``t`` a sweep reads before it writes it (the ``A`` rows of the
        backward pass: ``R_u, C_u`` and every layer's ``R_h, C_h``; the input side's own) and the
        ``C_g`` rows (monitored by the flow), for
        :func:`dmft.solvers._network.solve_row`."""
        arrays = self.input.row_state()
        for layer in self.layers:
            arrays += [layer.H_xi, layer.C_h, layer.C_g]
        return arrays

    def equal_time(self, t: int) -> np.ndarray:
        """Equal-time quantities monitored by the flow's error control: the losses and every
        layer's ``C_g(t, t)`` (the backward fields, O(1) throughout training)."""
        loss = self.input.bias[t] + self.input.init_variance[t] + self.input.data_variance[t] + self.input.noise_power
        train = self.input.C_Delta[t * (t + 1) // 2 + t]
        return np.array([loss, train] + [layer.C_g[t * (t + 1) // 2 + t] for layer in self.layers])

    # ------------------------------------------------------------------------------------------
    def order_parameters(self, times: int) -> dict[str, np.ndarray]:
        """All two-time arrays of the first ``times`` rows, dense (module docstring: shapes)."""
        out = dict(self.input.order_parameters(times))
        for name, attribute, symmetric in (
            ("C_h", "C_h", True),
            ("R_h", "H_xi", False),
            ("C_g", "C_g", True),
            ("R_g", "G_chi", False),
        ):
            packed = np.stack([getattr(layer, attribute)[: packed_length(times)] for layer in self.layers])
            out[name] = unpack(packed, times, symmetric=symmetric)
        return out


def whole_window_equations(
    order: dict[str, np.ndarray],
    *,
    weights: np.ndarray,
    depth: int,
    gamma0: float,
    width_ratio: float,
    eigenvalues,
    teacher_variances,
    shares=None,
    alpha: float | None,
    noise: float,
    data_mode: str,
) -> dict[str, np.ndarray]:
    """One evaluation of every equation of the module docstring on the whole window.

    Takes a full set of order parameters (the arrays of :meth:`DeepLinearDMFT.order_parameters`)
    and the dense lower-triangular weights ``w`` (``(times, times)``), and returns the same arrays
    recomputed from them with the matrix forms (triangular inverses): ``R_h = (I-AB)^{-1} A``,
    ``C_h = (I-AB)^{-1}[C_chi + A C_xi A^T](I-AB)^{-T}``, etc. At the exact solution the output
    equals the input; the largest difference is the self-consistency residual. Cost
    ``O((L + modes) T^3)`` in matrix products.
    """
    from scipy.linalg import solve_triangular

    times = order["C_v"].shape[0]
    eye = np.eye(times)
    C_h, R_h, C_g, R_g = order["C_h"], order["R_h"], order["C_g"], order["R_g"]
    out = {name: np.zeros_like(order[name]) for name in ("C_h", "R_h", "C_g", "R_g")}
    for l in range(depth):
        if l == 0:
            A = order["R_u"] / math.sqrt(width_ratio) + gamma0 * weights * order["C_u"]
            C_chi = order["C_u"]
        else:
            A = R_h[l - 1] + gamma0 * weights * C_h[l - 1]
            C_chi = C_h[l - 1]
        if l == depth - 1:
            B = gamma0 * weights
            C_xi = np.ones((times, times))
        else:
            B = R_g[l + 1] + gamma0 * weights * C_g[l + 1]
            C_xi = C_g[l + 1]
        forward = eye - A @ B  # I - AB and I - BA: lower triangular
        backward = eye - B @ A
        out["R_h"][l] = solve_triangular(forward, A, lower=True)
        out["R_g"][l] = solve_triangular(backward, B, lower=True)
        out["C_h"][l] = _sandwich(forward, C_chi + A @ C_xi @ A.T)
        out["C_g"][l] = _sandwich(backward, C_xi + B @ C_chi @ B.T)
    out.update(
        whole_window_input_side(
            eigenvalues,
            teacher_variances,
            shares=shares,
            alpha=alpha,
            noise=noise,
            init_function_scale=1.0 / (gamma0 * math.sqrt(width_ratio)),
            data_mode=data_mode,
            kernel=R_g[0] / gamma0 + weights * C_g[0],
            xi_covariance=C_g[0],
            C_Delta=order["C_Delta"],
            R_Delta=order["R_Delta"],
        )
    )
    return out


def _sandwich(lower: np.ndarray, middle: np.ndarray) -> np.ndarray:
    """``lower^{-1} middle lower^{-T}`` for a lower-triangular ``lower`` and symmetric ``middle``."""
    from scipy.linalg import solve_triangular

    half = solve_triangular(lower, middle, lower=True)
    return solve_triangular(lower, half.T, lower=True)


@register(
    DeepLinear,
    trainings=(GradientDescent, OnlineSGD, GradientFlow),
    when=lambda m: not m.residual,
    supports=supports_gaussian_teacher,
)
def solve_deep_linear(
    model,
    data,
    training,
    *,
    progress: bool = False,
    self_consistency: bool = True,
    order_parameters: bool | None = None,
    backend: str = "numba",
) -> Result:
    """Exact ``D, N, P -> infinity`` learning curves of a plain deep linear network (THEORY.md 2.1).

    Parameters
    ----------
    model : ``dmft.DeepLinear`` with ``residual=False``; ``model.richness`` is the ``gamma0`` of
        the equations (muP or NTK), ``model.width_ratio`` is ``nu``, ``model.depth`` is ``L``.
    data : ``dmft.GaussianData`` (isotropic or with a spectrum; Gaussian teacher).
    training : ``dmft.GradientDescent`` (uses ``data.alpha``), ``dmft.OnlineSGD`` (uses
        ``batch_ratio``), with a learning rate or a schedule (exact in discrete time), or
        ``dmft.GradientFlow`` (full batch with ``data.alpha``, the population flow with
        ``alpha=None``; adaptive trapezoidal rule, :mod:`dmft.solvers._flow`).
    progress : show a tqdm progress bar (over steps, or over flow time).
    self_consistency : after the solve, re-evaluate every equation on the whole window with the
        final order parameters (:func:`whole_window_equations`, ``O((L + modes) T^3)`` matrix
        products) and report the largest difference in ``info``; above
        :func:`dmft.solvers._network.self_consistency_threshold` the result's ``status`` is 1 (with
        an :class:`dmft.AccuracyWarning`). For the flow it checks the convergence of the implicit rows.
    order_parameters : return the two-time order parameters in ``arrays`` (default: yes for
        discrete training, no for the flow, whose grid can be long).
    backend : ``"numba"`` (default: compiled loops over the lower triangles) or ``"numpy"`` (the
        reference; same numbers to round-off).

    Returns
    -------
    dmft.Result with ``method="dmft"``:

    * ``time`` (steps, or flow times), ``test_loss = C_v(t, t) + sigma^2``, ``train_loss = C_Delta(t, t)``;
    * ``arrays["test_loss_bias"]``, ``["test_loss_init_variance"]``, ``["test_loss_data_variance"]``:
      the parts of ``C_v(t, t)`` carried by the teacher, by the random initial function (source
      ``xi``, ``~ 1/(gamma0^2 nu)``) and by the finite-data / minibatch fluctuation (source ``psi``,
      ``~ 1/alpha``, includes the label noise); with ``sigma^2`` they sum to ``test_loss`` exactly;
    * ``arrays`` ``C_v, R_v, C_Delta, R_Delta, C_u, R_u`` of shape ``(times, times)`` and
      ``C_h, R_h, C_g, R_g`` of shape ``(L, times, times)`` (module docstring: time convention;
      for the flow they live on the solver's grid ``arrays["grid_time"]``);
    * ``info``: ``solve_time_s``, ``self_consistency_residual``, ``self_consistency_relative``,
      ``residual_time_s``, ``modes``, ``richness``, ``backend``; for the flow the grid and its error
      estimate (:func:`dmft.solvers._flow.integrate`).

    Raises
    ------
    dmft.DivergenceError : the loss became non-finite or grew 1e8 times above its initial value
        (names the step or time; lower the learning rate).
    MemoryError : the two-time arrays of ``steps`` steps would not fit (says what fits).

    Example
    -------
    >>> import dmft
    >>> r = dmft.solve(dmft.DeepLinear(depth=3), dmft.GaussianData(alpha=2.0),
    ...                dmft.GradientDescent(learning_rate=0.1, steps=100))
    >>> r.test_loss[0]   # 1 + 1/(gamma0^2 nu)
    2.0
    """
    if not isinstance(model, DeepLinear) or model.residual:
        raise TypeError(f"`model` must be a plain dmft.DeepLinear (residual=False), got {model!r}")
    check_compatible(data, training)
    reason = supports_gaussian_teacher(model, data, training)
    if reason:
        raise UnsupportedError(reason)
    check_backend(backend, ("numba", "numpy"))
    depth = int(model.depth)
    gamma0, nu = model.richness, model.width_ratio
    spectrum = data.resolved_spectrum()
    flow = isinstance(training, GradientFlow)
    if order_parameters is None:
        order_parameters = not flow

    def build(capacity):
        input_side, alpha, data_mode = make_input_side(model, data, training, backend, capacity)
        grid = TimeGrid(capacity) if flow else TimeGrid.from_rates(training.rates)
        solver = DeepLinearDMFT(depth=depth, gamma0=gamma0, width_ratio=nu, grid=grid, input_side=input_side)
        return solver, alpha, data_mode

    started = time.perf_counter()
    info = {"modes": spectrum.modes, "richness": gamma0, "backend": backend}
    checks, report = [], {}
    if flow:
        from ._flow import integrate

        solver, alpha, data_mode = build(64)
        run = integrate(solver, training, noise=data.noise, progress=progress, label="dmft flow",
                        bytes_per_time_squared=DeepLinearDMFT.bytes_per_time_squared(depth, spectrum.modes, data_mode))  # fmt: skip
        info.update(run.info)
        times, checks, report = run.times, list(run.checks), dict(time=run.report_time, curves=run.curves)
    else:
        check_memory(DeepLinearDMFT.bytes_per_time_squared(depth, spectrum.modes, data_mode_of(data, training)[0]),
                     training.steps + 1, what=f"the depth-{depth} DMFT of {training.steps} steps")  # fmt: skip
        solver, alpha, data_mode = build(training.steps + 1)
        march_steps(solver.sweep, solver.input, training, data.noise, progress, "dmft")
        times = training.steps + 1
    info["solve_time_s"] = time.perf_counter() - started
    arrays = solver.order_parameters(times) if (order_parameters or self_consistency) else {}
    if self_consistency:
        started = time.perf_counter()
        recomputed = whole_window_equations(
            arrays, weights=solver.grid.dense(times), depth=depth, gamma0=gamma0, width_ratio=nu,
            eigenvalues=spectrum.eigenvalues, teacher_variances=spectrum.teacher_variances,
            shares=solver.input.shares, alpha=alpha, noise=data.noise, data_mode=data_mode,
        )  # fmt: skip
        info.update(self_consistency_info(recomputed, arrays))
        info["residual_time_s"] = time.perf_counter() - started
        checks.append(("self_consistency_relative", info["self_consistency_relative"], self_consistency_threshold(training),
                       "the equations are not solved to their tolerance: report this case"))  # fmt: skip
        if not order_parameters:
            arrays = {}
    if flow:
        arrays["grid_time"] = solver.grid.time[:times].copy()
    return dmft_result(solver.input, model, data, training, arrays, info, times=times, checks=checks, **report)
