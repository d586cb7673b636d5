"""DMFT of a plain (non-residual) deep linear network, exact in discrete time (THEORY.md section 2.1).

Model (THEORY.md section 2): ``h_1 = W_0 x / sqrt(D)``, ``h_{l+1} = W_l h_l / sqrt(N)``,
``f = sqrt(D) / (gamma0 N) w . h_L``, every parameter moved by ``-eta gamma0^2 N`` times the gradient.
In the limit ``D, N, P -> infinity`` (``nu = N / D``, ``alpha = P / D`` fixed) the dynamics reduces to
single-site processes that are linear in independent Gaussian sources:

* data and input sides (shared with the residual network): :mod:`dmft.solvers._data_side`;
* hidden layer ``l = 1..L`` (one per neuron), with ``S`` the strictly lower all-ones matrix::

      h^l = chi^l + A^l g^l,     g^l = xi^l + B^l h^l
      A^1 = nu^{-1/2} R_u + eta gamma0 (C_u)_<,      A^l = R_h^{l-1} + eta gamma0 (C_h^{l-1})_<
      B^l = R_g^{l+1} + eta gamma0 (C_g^{l+1})_<,    B^L = eta gamma0 S
      chi^1 ~ GP(0, C_u),  chi^l ~ GP(0, C_h^{l-1}),  xi^l ~ GP(0, C_g^{l+1}),  xi^L = w0 1
      R_h^l = dh^l/dxi^l = (I - A B)^{-1} A,          R_g^l = dg^l/dchi^l = (I - B A)^{-1} B
      C_h^l = (I-AB)^{-1} [C_chi + A C_xi A^T] (I-AB)^{-T},  C_g^l = (I-BA)^{-1} [C_xi + B C_chi B^T] (I-BA)^{-T}

* coupling: ``K = gamma0^{-1} R_g^1 + eta (C_g^1)_<`` and ``C_g^1`` drive the input side.

Where the equations come from (re-derived for this module; they agree with THEORY.md 2.1). ``W_0``
couples two fields: ``W_0 u / sqrt(D)`` on the hidden side and ``W_0^T g_1 / sqrt(N)`` on the input
side, which enters ``beta = sqrt(D)/(gamma0 N) W_0^T g_1`` as ``(gamma0 sqrt(nu))^{-1} xi``. The
cavity method gives ``W_0(0) u / sqrt(D) = chi^1 + nu^{-1/2} sum_s <du(t)/dxi(s)> g_1(s)`` and
``W_0(0)^T g_1 / sqrt(N) = xi + sqrt(nu) sum_s <dg_1(t)/dchi^1(s)> u(s)``; the updates
``W_0(t) = W_0(0) + (eta gamma0 / sqrt(D)) sum_{s<t} g_1(s) u(s)^T`` add ``eta gamma0 (C_u)_< g_1`` to
``h_1`` and ``eta (C_g^1)_< u`` to ``beta``. The square matrices ``W_l`` give ``A^{l+1}``, ``B^l`` the
same way with ratio 1, and ``w(t) = w(0) + eta gamma0 sum_{s<t} h_L(s)`` gives ``B^L``. Since ``u(t)``
contains ``v(t) = ... - c xi(t)`` with unit weight (``R_Delta(t, t) = 1``), ``R_u(t, t) = -c`` and
``A^l(t, t) = -1/(gamma0 nu)`` at every layer: the initial function pulls ``h_1`` against ``g_1``.

Test-loss decomposition. ``v_k(t)`` is a linear combination of three independent sources, so
``C_v(t, t) = mean_k lambda_k [b_k V_beta(t)^2 + V_xi(t) C_g^1 V_xi(t)^T + V_psi(t) C_Delta V_psi(t)^T]``:
the teacher's part (bias), the initial function's part (``V_xi = -c (I + lambda K R_Delta)^{-1}``,
so ``~ 1/(gamma0^2 nu)``, 0 as ``nu -> infinity``) and the finite-data part (``V_psi ~ alpha^{-1/2}``,
it carries the label noise and the resampling noise of the data; for online SGD the minibatch noise).
Note that ``C_g^1`` and ``C_Delta`` themselves depend on all sources: the split is by the input-side
source that carries the fluctuation, not a split of the dynamics into independent runs.

Forward-in-time solve
---------------------
``B^l``, ``K`` and ``R_g^l`` are strictly lower triangular; ``A^l`` has the equal-time part
``nu^{-1/2} R_u(t, t) = -1/(gamma0 nu)``. Hence row ``t`` of every two-time function follows from rows
``< t`` in one sweep, with no iteration:

1. backward, ``l = L..1``: row ``t`` of ``B^l`` (needs layer ``l+1``'s row ``t``), then ``g^l(t)``'s
   coefficients on its sources ``G_chi[t] = B[t] H_chi``, ``G_xi[t] = e_t + B[t] H_xi``, then
   ``C_g^l(t, s) = G_chi[t] C_chi G_chi[s]^T + G_xi[t] C_xi G_xi[s]^T`` and ``R_g^l[t] = G_chi[t]``;
2. the input side's row ``t`` from ``K[t]`` and ``C_g^1`` (gives ``C_v, R_v, C_Delta, R_Delta, C_u, R_u``);
3. forward, ``l = 1..L``: row ``t`` of ``A^l`` (needs layer ``l-1``'s or ``u``'s row ``t``), then
   ``H_chi[t] = e_t + A[t] G_chi``, ``H_xi[t] = A[t] G_xi``, ``C_h^l(t, s)``, ``R_h^l[t] = H_xi[t]``.

The coefficient matrices are the lower-triangular propagators ``H_chi = (I - AB)^{-1}``,
``H_xi = R_h``, ``G_xi = (I - BA)^{-1}``, ``G_chi = R_g``, built one row at a time (forward
substitution) rather than inverted. For the top layer ``B^L = eta gamma0 S``, so its ``g`` rows are
running sums (no product at all). A row costs about a dozen vector-matrix products of size ``t^2/2``
per layer (coefficient rows, then ``C(t, s) = X[t] C_src X[s]^T`` as a symmetric product followed by
a row-dot over ``X``), so the solve costs ``O(L T^3)`` plus ``O(modes T^3)`` on the input side, with no
``T x T`` solve anywhere; memory ``O((L + modes) T^2)``. Exact in discrete time: the only error is
round-off. All arrays are kept packed (lower triangles, rows contiguous): the solver is bound by
memory bandwidth, and the Numba kernels stream exactly the half that is needed (depth 3, T = 800:
about 4-6 s on one core of the development machine; see benchmarks/bench_deep.py).

Time convention of the returned arrays: ``(T + 1, T + 1)`` with ``[t, s]`` = (later step, earlier
step), steps ``0..T``; correlations are symmetric, responses ``R(t, s)`` (response at ``t`` to a
source at ``s``) are lower triangular. Per-layer arrays are stacked ``(L, T + 1, T + 1)``, layer 1 first.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..errors import UnsupportedError, check_divergence
from ..models import DeepLinear
from ..result import Result
from ..training import GradientDescent, OnlineSGD, check_compatible
from . import register
from ._data_side import (
    InputSide,
    dmft_result,
    packed_length,
    packed_row,
    self_consistency_info,
    unpack,
    whole_window_input_side,
)

__all__ = ["solve_deep_linear", "DeepLinearDMFT"]


class _Layer:
    """Coefficient rows and order parameters of one hidden layer, packed (see the module docstring).

    ``H_chi[t, s]``, ``H_xi[t, s]``: coefficients of ``h(t)`` on ``chi(s)``, ``xi(s)``; ``G_chi``,
    ``G_xi`` those of ``g(t)``. All four are lower triangular; ``R_h = H_xi``, ``R_g = G_chi``.
    """

    def __init__(self, times: int, top: bool, kernels, eta_gamma0: float):
        length = packed_length(times)
        self.top = top  # xi^L = w0 1: a single scalar source, and B^L = eta gamma0 S
        self.ops = kernels
        self.eta_gamma0 = eta_gamma0
        self.H_chi, self.H_xi = np.zeros(length), np.zeros(length)
        self.G_chi, self.G_xi = np.zeros(length), np.zeros(length)
        self.C_h, self.C_g = np.zeros(length), np.zeros(length)
        # top layer: coefficients of h^L(t), g^L(t) on w0 (row sums of H_xi, G_xi)
        self.h_w0, self.g_w0 = np.zeros(times), np.zeros(times)

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

    def backward(self, t: int, b_row: np.ndarray | None, chi_cov: np.ndarray, xi_cov: np.ndarray | None) -> None:
        """Row ``t`` of ``g = xi + B h``: ``b_row = B[t, :t]`` (``None`` for the top layer, whose
        ``B = eta gamma0 S`` makes ``g(t) = g(t-1) + eta gamma0 h(t-1)`` a running sum);
        ``chi_cov`` filled to row ``t - 1``, ``xi_cov`` to row ``t``."""
        g_chi = packed_row(self.G_chi, t)
        g_xi = packed_row(self.G_xi, t)
        if self.top:
            if t:
                eg = self.eta_gamma0
                g_chi[:t] = packed_row(self.G_chi, t - 1) + eg * packed_row(self.H_chi, t - 1)
                g_xi[:t] = packed_row(self.G_xi, t - 1) + eg * packed_row(self.H_xi, t - 1)
                g_xi[t - 1] -= 1.0  # remove g(t-1)'s own xi(t-1) = w0 entry: it is not in B h
                self.g_w0[t] = self.g_w0[t - 1] + eg * self.h_w0[t - 1]
            else:
                self.g_w0[t] = 1.0
        else:
            b = b_row[None]
            g_chi[:t] = self.ops.vecmat(b, self.H_chi[None], t)[0]
            g_xi[:t] = self.ops.vecmat(b, self.H_xi[None], t)[0]
        g_xi[t] = 1.0
        row = self._covariance_row(
            t, (self.G_chi, self.G_xi), (g_chi[:t], g_xi), (chi_cov, xi_cov), self.g_w0
        )
        packed_row(self.C_g, t)[:] = row

    def forward(self, t: int, a_row: np.ndarray, chi_cov: np.ndarray, xi_cov: np.ndarray | None) -> None:
        """Row ``t`` of ``h = chi + A g``: ``a_row = A[t, :t+1]``; both covariances filled to row ``t``."""
        ops = self.ops
        n = t + 1
        a = a_row[None]
        h_chi = packed_row(self.H_chi, t)
        h_chi[:] = ops.vecmat(a, self.G_chi[None], n)[0]
        h_chi[t] += 1.0
        h_xi = packed_row(self.H_xi, t)
        h_xi[:] = ops.vecmat(a, self.G_xi[None], n)[0]
        if self.top:
            self.h_w0[t] = a_row @ self.g_w0[:n]
        row = self._covariance_row(t, (self.H_chi, self.H_xi), (h_chi, h_xi), (chi_cov, xi_cov), self.h_w0)
        packed_row(self.C_h, t)[:] = row


class DeepLinearDMFT:
    """The forward-in-time solver state (one instance per solve); see the module docstring.

    Parameters
    ----------
    depth, richness (``gamma0``), width_ratio (``nu``), learning_rate (``eta``), steps (``T``)
    input_side : a fresh :class:`~dmft.solvers._data_side.InputSide` for the same ``T``.
    """

    def __init__(
        self,
        *,
        depth: int,
        richness: float,
        width_ratio: float,
        learning_rate: float,
        steps: int,
        input_side: InputSide,
    ):
        self.depth = depth
        self.gamma0 = richness
        self.nu = width_ratio
        self.eta = learning_rate
        self.times = steps + 1
        self.input = input_side
        eg = learning_rate * richness
        self.layers = [
            _Layer(self.times, top=(l == depth - 1), kernels=input_side.kernels, eta_gamma0=eg)
            for l in range(depth)
        ]
        self.kernel = np.zeros(packed_length(self.times))  # K, strictly lower (diagonal 0)

    # ------------------------------------------------------------------------------------------
    def b_row(self, layer: int, t: int) -> np.ndarray | None:
        """``B^l[t, :t] = R_g^{l+1}[t, :t] + eta gamma0 C_g^{l+1}[t, :t]`` (``layer`` 0-based;
        ``None`` for the top layer, ``B^L = eta gamma0 S``)."""
        if layer == self.depth - 1:
            return None
        above = self.layers[layer + 1]
        return packed_row(above.G_chi, t, t) + self.eta * self.gamma0 * packed_row(above.C_g, t, t)

    def a_row(self, layer: int, t: int) -> np.ndarray:
        """``A^l[t, :t+1]`` (``layer`` 0-based): ``nu^{-1/2} R_u + eta gamma0 (C_u)_<`` for the
        first layer, ``R_h^{l-1} + eta gamma0 (C_h^{l-1})_<`` above."""
        if layer == 0:
            row = packed_row(self.input.R_u, t) / math.sqrt(self.nu)
            cov = self.input.C_u
        else:
            below = self.layers[layer - 1]
            row = packed_row(below.H_xi, t).copy()
            cov = below.C_h
        row[:t] += self.eta * self.gamma0 * packed_row(cov, t, t)
        return row

    def chi_covariance(self, layer: int) -> np.ndarray:
        return self.input.C_u if layer == 0 else self.layers[layer - 1].C_h

    def xi_covariance(self, layer: int) -> np.ndarray | None:
        return None if layer == self.depth - 1 else self.layers[layer + 1].C_g

    def advance(self, t: int) -> None:
        """Fill row ``t`` of every order parameter from rows ``< t``."""
        for layer in reversed(range(self.depth)):
            self.layers[layer].backward(
                t, self.b_row(layer, t), self.chi_covariance(layer), self.xi_covariance(layer)
            )
        first = self.layers[0]
        kernel_row = packed_row(self.kernel, t, t)
        kernel_row[:] = packed_row(first.G_chi, t, t) / self.gamma0 + self.eta * packed_row(first.C_g, t, t)
        self.input.advance(t, kernel_row, first.C_g)
        for layer in range(self.depth):
            self.layers[layer].forward(
                t, self.a_row(layer, t), self.chi_covariance(layer), self.xi_covariance(layer)
            )

    # ------------------------------------------------------------------------------------------
    def order_parameters(self) -> dict[str, np.ndarray]:
        """All two-time arrays, dense (see the module docstring for shapes and conventions)."""
        out = dict(self.input.order_parameters())
        times = self.times
        for name, attribute, symmetric in (
            ("C_h", "C_h", True),
            ("R_h", "H_xi", False),
            ("C_g", "C_g", True),
            ("R_g", "G_chi", False),
        ):
            packed = np.stack([getattr(layer, attribute) for layer in self.layers])
            out[name] = unpack(packed, times, symmetric=symmetric)
        return out


def whole_window_equations(
    order: dict[str, np.ndarray],
    *,
    depth: int,
    richness: float,
    width_ratio: float,
    learning_rate: float,
    eigenvalues,
    teacher_variances,
    alpha: float,
    noise: float,
    online: bool,
) -> dict[str, np.ndarray]:
    """One evaluation of every equation of THEORY.md section 2.1 on the whole window.

    Takes a full set of order parameters (the arrays of :meth:`DeepLinearDMFT.order_parameters`)
    and returns the same arrays recomputed from them with the matrix forms (triangular inverses):
    ``R_h = (I-AB)^{-1} A``, ``C_h = (I-AB)^{-1}[C_chi + A C_xi A^T](I-AB)^{-T}``, etc. At the exact
    solution the output equals the input; the largest difference is the self-consistency residual.
    Cost ``O((L + modes) T^3)`` in matrix products.
    """
    from scipy.linalg import solve_triangular

    gamma0, eta = richness, learning_rate
    eg = eta * gamma0
    times = order["C_v"].shape[0]
    eye = np.eye(times)
    strict = np.tril(np.ones((times, times)), -1)
    C_h, R_h, C_g, R_g = order["C_h"], order["R_h"], order["C_g"], order["R_g"]
    out = {name: np.zeros_like(order[name]) for name in ("C_h", "R_h", "C_g", "R_g")}
    for l in range(depth):
        if l == 0:
            A = order["R_u"] / math.sqrt(width_ratio) + eg * np.tril(order["C_u"], -1)
            C_chi = order["C_u"]
        else:
            A = R_h[l - 1] + eg * np.tril(C_h[l - 1], -1)
            C_chi = C_h[l - 1]
        if l == depth - 1:
            B = eg * strict
            C_xi = np.ones((times, times))
        else:
            B = R_g[l + 1] + eg * np.tril(C_g[l + 1], -1)
            C_xi = C_g[l + 1]
        forward = eye - A @ B  # I - AB and I - BA: lower triangular, unit diagonal
        backward = eye - B @ A
        out["R_h"][l] = solve_triangular(forward, A, lower=True, unit_diagonal=True)
        out["R_g"][l] = solve_triangular(backward, B, lower=True, unit_diagonal=True)
        out["C_h"][l] = _sandwich(forward, C_chi + A @ C_xi @ A.T)
        out["C_g"][l] = _sandwich(backward, C_xi + B @ C_chi @ B.T)
    kernel = R_g[0] / gamma0 + eta * np.tril(C_g[0], -1)
    out.update(
        whole_window_input_side(
            eigenvalues,
            teacher_variances,
            alpha=alpha,
            noise=noise,
            init_scale=1.0 / (gamma0 * math.sqrt(width_ratio)),
            online=online,
            kernel=kernel,
            xi_covariance=C_g[0],
            C_Delta=order["C_Delta"],
            R_Delta=order["R_Delta"],
        )
    )
    return out


def _sandwich(lower: np.ndarray, middle: np.ndarray) -> np.ndarray:
    """``lower^{-1} middle lower^{-T}`` for a unit lower-triangular ``lower``, symmetric ``middle``."""
    from scipy.linalg import solve_triangular

    half = solve_triangular(lower, middle, lower=True, unit_diagonal=True)
    return solve_triangular(lower, half.T, lower=True, unit_diagonal=True)


def _supports(model, data, training) -> str | None:
    if data.teacher is not None:
        return (
            "the deep-linear DMFT needs a Gaussian teacher (the single-site processes are linear in "
            "Gaussian sources); got teacher="
            f"{data.teacher!r}. Use finite_size.simulate for a sparse teacher"
        )
    return None


@register(
    DeepLinear,
    trainings=(GradientDescent, OnlineSGD),
    when=lambda m: not m.residual,
    supports=_supports,
)
def solve_deep_linear(
    model,
    data,
    training,
    *,
    progress: bool = False,
    self_consistency: bool = True,
    kernels: str = "numba",
) -> Result:
    """Exact ``D, N, P -> infinity`` learning curves of a plain deep linear network (THEORY.md 2.1).

    Parameters
    ----------
    model : ``dmft.DeepLinear`` with ``residual=False``; ``model.richness`` is the ``gamma0`` of
        the equations (muP or NTK), ``model.width_ratio`` is ``nu``, ``model.depth`` is ``L``.
    data : ``dmft.GaussianData`` (isotropic or with a spectrum; Gaussian teacher).
    training : ``dmft.GradientDescent`` (uses ``data.alpha``) or ``dmft.OnlineSGD`` (uses
        ``batch_ratio``); ``learning_rate`` is ``eta``, ``steps`` is ``T``.
    progress : show a tqdm progress bar over steps.
    self_consistency : after the solve, re-evaluate every equation on the whole window with the
        final order parameters (:func:`whole_window_equations`, ``O((L + modes) T^3)`` matrix
        products) and report the largest difference in ``info``.
    kernels : ``"numba"`` (default: compiled loops over the lower triangles) or ``"numpy"`` (the
        reference; same numbers to round-off).

    Returns
    -------
    dmft.Result with ``method="dmft"``:

    * ``test_loss = C_v(t, t) + sigma^2``, ``train_loss = C_Delta(t, t)``, shape ``(T + 1,)``;
    * ``arrays["test_loss_bias"]``, ``["test_loss_init_variance"]``, ``["test_loss_data_variance"]``:
      the parts of ``C_v(t, t)`` carried by the teacher, by the random initial function (source
      ``xi``, ``~ 1/(gamma0^2 nu)``) and by the finite-data / minibatch fluctuation (source ``psi``,
      ``~ 1/alpha``, includes the label noise); with ``sigma^2`` they sum to ``test_loss`` exactly;
    * ``arrays`` ``C_v, R_v, C_Delta, R_Delta, C_u, R_u`` of shape ``(T + 1, T + 1)`` and
      ``C_h, R_h, C_g, R_g`` of shape ``(L, T + 1, T + 1)`` (module docstring: time convention);
    * ``info``: ``solve_time_s``, ``self_consistency_residual`` (max absolute difference),
      ``self_consistency_relative`` (divided by the largest order parameter), ``residual_time_s``,
      ``modes``, ``richness``.

    Raises
    ------
    dmft.DivergenceError : the loss became non-finite or grew 1e8 times above its initial value
        (names the step; lower the learning rate).

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
    reason = _supports(model, data, training)
    if reason:
        raise UnsupportedError(reason)
    depth = int(model.depth)
    online = isinstance(training, OnlineSGD)
    alpha = training.batch_ratio if online else data.alpha
    spectrum = data.resolved_spectrum()
    gamma0, nu = model.richness, model.width_ratio
    eta, steps = training.learning_rate, training.steps
    started = time.perf_counter()

    input_side = InputSide(
        spectrum.eigenvalues,
        spectrum.teacher_variances,
        alpha=alpha,
        noise=data.noise,
        init_scale=1.0 / (gamma0 * math.sqrt(nu)),
        steps=steps,
        online=online,
        kernels=kernels,
    )
    solver = DeepLinearDMFT(
        depth=depth, richness=gamma0, width_ratio=nu, learning_rate=eta, steps=steps, input_side=input_side
    )
    iterator = range(steps + 1)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="dmft", unit="step")
    with np.errstate(over="ignore", invalid="ignore"):
        for t in iterator:
            solver.advance(t)
            test = input_side.bias[t] + input_side.init_variance[t] + input_side.data_variance[t]
            initial = input_side.test_loss()[0]
            check_divergence(test + data.noise**2, initial, t, eta, "DMFT test loss")
            check_divergence(packed_row(input_side.C_Delta, t)[t], initial, t, eta, "DMFT train loss")
    solve_time = time.perf_counter() - started

    arrays = solver.order_parameters()
    info = {"solve_time_s": solve_time, "modes": spectrum.modes, "richness": gamma0, "kernels": kernels}
    if self_consistency:
        started = time.perf_counter()
        recomputed = whole_window_equations(
            arrays,
            depth=depth,
            richness=gamma0,
            width_ratio=nu,
            learning_rate=eta,
            eigenvalues=spectrum.eigenvalues,
            teacher_variances=spectrum.teacher_variances,
            alpha=alpha,
            noise=data.noise,
            online=online,
        )
        info.update(self_consistency_info(recomputed, arrays))
        info["residual_time_s"] = time.perf_counter() - started

    return dmft_result(input_side, model, data, training, arrays, info)
