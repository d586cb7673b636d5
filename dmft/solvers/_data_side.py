"""Data side and input side of the deep-linear DMFT, solved forward in time (THEORY.md section 2.1).

Both the plain (section 2.1) and the residual (section 2.2) deep linear networks share these two
single-site processes; the network enters only through the first layer's backward field ``g_1``:
the memory kernel ``K`` and the covariance ``C_g^1`` of the source ``xi``. A network solver calls
:meth:`InputSide.advance` once per time with row ``t`` of ``K`` and ``C_g^1`` filled up to row ``t``,
and reads back row ``t`` of ``C_u`` and ``R_u`` (the statistics of the drive ``u``, which feed the
first hidden layer).

Weights. Every place where the learning rate multiplies a correlation (``eta (C)_<``) carries a
lower-triangular weight matrix ``w`` instead (docs/continuous_time.md): ``K = gamma0^{-1} R_g^1 +
w o C_g^1`` (``o`` the entrywise product). Gradient descent with rates ``eta_s`` (a schedule) has
``w[t, s] = eta_s`` for ``s < t`` and no diagonal; the trapezoidal rule of the gradient flow has a
diagonal ``w[t, t] = Delta_{t-1} / 2``, and then ``K`` has an equal-time part ``kappa = K(t, t)``.

Equations, per mode ``k`` of the input spectrum (eigenvalue ``lambda_k``, teacher variance ``b_k``,
share ``p_k`` of the input directions, ``sum_k p_k = 1``; isotropic data is one mode with
``lambda = b = p = 1``), times ``t = 0, 1, ...``::

    data side   Delta = R_Delta (zeta + sigma eps 1),  zeta ~ GP(0, C_v),
                R_Delta = (I - alpha^{-1/2} R_v)^{-1},  C_Delta = R_Delta (C_v + sigma^2 1 1^T) R_Delta^T
    input side  v_k = sqrt(b_k) beta 1 - c xi_k - K u_k,          c = 1 / (gamma0 sqrt(nu))
                u_k = sqrt(lambda_k / alpha) psi_k + lambda_k R_Delta v_k
                xi_k ~ GP(0, C_g^1),  psi_k ~ GP(0, C_Delta),  beta ~ N(0, 1), all independent
    averages    C_v = sum_k p_k lambda_k C_{v_k},  R_v = sum_k p_k sqrt(lambda_k) dv_k/dpsi_k,
                C_u = sum_k p_k C_{u_k},           R_u = sum_k p_k du_k/dxi_k
    losses      test = C_v(t, t) + sigma^2,  train = C_Delta(t, t)

Online SGD: ``R_Delta = I``, ``C_Delta = diag(C_v(t, t) + sigma^2)`` and ``alpha`` is the batch ratio.
Population gradient flow (``data_mode="population"``, the flow limit of online SGD): ``R_Delta = I``
and no ``psi`` (the minibatch noise vanishes), so ``u_k = lambda_k v_k``.

How it is solved. Every quantity is a linear combination of the Gaussian sources, so the solver
keeps, for every mode, the coefficient of ``v(t)`` and ``u(t)`` on each source: ``V_beta[k, t]``
(on ``beta``), ``V_xi[k, t, s]`` (on ``xi(s)``), ``V_psi[k, t, s]`` (on ``psi(s)``), and likewise
``U_*``. Row ``t`` of every coefficient follows from rows ``< t`` by vector-matrix products; the
equal-time couplings (``kappa``, ``R_Delta(t, t)``) are solved exactly: with
``rho = R_Delta(t, t)`` and ``q_k = 1 / (1 + kappa lambda_k rho)``,
``v_k(t) = q_k [sqrt(b_k) beta - c xi(t) - sum_{s<t} K(t, s) u_k(s) - kappa (sqrt(lambda_k/alpha) psi(t)
+ lambda_k sum_{s<t} R_Delta(t, s) v_k(s))]``, and ``rho`` solves the scalar equation
``rho [1 + (kappa / alpha) sum_k p_k lambda_k / (1 + kappa lambda_k rho)] = 1`` (the equal-time part of
``R_Delta = I + alpha^{-1/2} R_v R_Delta``). The off-diagonal ``R_Delta(t, s < t)`` and ``C_Delta(t, .)``
that the equal-time part needs are read from row ``t`` as it stands (the previous iterate of the
row solve of :mod:`dmft.solvers._network`; without a diagonal weight they are not needed and one
pass is exact). Covariances follow as ``C(t, s) = V(t) C_source V(s)^T``, responses are the
coefficients themselves. A row costs ``O(modes t^2)``.

The test loss splits by source (they are independent): ``bias`` (from ``beta``, the teacher),
``init_variance`` (from ``xi``, the random initial function, ``~ 1/(gamma0^2 nu)``) and
``data_variance`` (from ``psi``, the finite-sample fluctuation of the gradient, ``~ 1/alpha``; it
carries the label noise and, for online SGD, the minibatch noise). Their sum plus ``sigma^2`` is the
test loss.

Storage. Every two-time array here is lower triangular (a response or a source coefficient,
``X[t, s] = 0`` for ``s > t``) or symmetric (a correlation), so it is kept *packed*: entry ``(t, s)``,
``s <= t``, at index ``t (t + 1) / 2 + s`` of a flat array (row ``t`` is the contiguous slice
:func:`packed_row`). Rows ``0..t`` are then one contiguous block, which halves the memory traffic of
the row updates (the solver is bound by memory bandwidth) and streams well. The arrays grow with
the number of times (:meth:`InputSide.grow`). :func:`unpack` returns the dense matrices.
"""

from __future__ import annotations

import math

import numpy as np

from .._backend import check_backend

__all__ = [
    "InputSide",
    "RowSolveError",
    "DATA_MODES",
    "NumpyKernels",
    "get_kernels",
    "dmft_result",
    "self_consistency_info",
    "packed_length",
    "packed_row",
    "unpack",
    "grow_arrays",
    "whole_window_input_side",
    "mode_shares",
]

DATA_MODES = ("full_batch", "online", "population")


class RowSolveError(FloatingPointError):
    """The implicit equations of one row have no solution near the prediction (the iteration
    diverged or a denominator vanished): the flow driver shortens the step."""


# ----------------------------------------------------------------------------------------------
# packed lower-triangular storage


def packed_length(times: int) -> int:
    """Number of entries ``(t, s)``, ``s <= t < times``."""
    return times * (times + 1) // 2


def packed_row(packed: np.ndarray, t: int, length: int | None = None) -> np.ndarray:
    """View of row ``t`` (entries ``s = 0..length-1``, default ``t + 1``) of a packed array
    (last axis packed)."""
    start = t * (t + 1) // 2
    return packed[..., start : start + (t + 1 if length is None else length)]


def unpack(packed: np.ndarray, times: int, *, symmetric: bool) -> np.ndarray:
    """Dense ``(..., times, times)`` array from packed storage: lower triangular, or symmetric."""
    dense = np.zeros(packed.shape[:-1] + (times, times))
    rows, cols = np.tril_indices(times)
    values = packed[..., : packed_length(times)]
    dense[..., rows, cols] = values
    if symmetric:
        dense[..., cols, rows] = values
    return dense


def grow_arrays(owner, packed_names, time_names, old_times: int, new_times: int) -> None:
    """Reallocate ``owner``'s packed arrays (last axis packed) and per-time arrays (last axis time)
    for ``new_times`` times, keeping the first ``old_times`` rows."""
    for name in packed_names:
        old = getattr(owner, name)
        new = np.zeros(old.shape[:-1] + (packed_length(new_times),))
        new[..., : packed_length(old_times)] = old[..., : packed_length(old_times)]
        setattr(owner, name, new)
    for name in time_names:
        old = getattr(owner, name)
        new = np.zeros(old.shape[:-1] + (new_times,))
        new[..., :old_times] = old[..., :old_times]
        setattr(owner, name, new)


# ----------------------------------------------------------------------------------------------
# Kernels: the products every row update is made of, on packed arrays with a leading batch axis
# (modes). The NumPy versions are the reference (they unpack and use matmul); the Numba versions
# (dmft.solvers._data_side_kernels) stream the packed rows and must agree with them to round-off.


class NumpyKernels:
    """Reference implementations: unpack the needed block, then matmul."""

    name = "numpy"

    @staticmethod
    def vecmat(a: np.ndarray, packed: np.ndarray, n: int) -> np.ndarray:
        """``out[k, r] = sum_{s < m} a[k, s] X_k[s, r]`` for ``r < n``: row ``t`` of ``a @ X``.
        ``a`` is ``(K, m)``, ``packed`` ``(K, length)`` lower triangular; returns ``(K, n)``."""
        m = a.shape[1]
        dense = unpack(packed, max(m, n), symmetric=False)
        return np.matmul(a[:, None, :], dense[:, :m, :n])[:, 0, :]

    @staticmethod
    def rowdot(packed: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
        """``out[k, s] = sum_{r < m} X_k[s, r] y[k, r]`` for ``s < n``: the first ``n`` entries of
        ``X @ y``. ``y`` is ``(K, m)``; returns ``(K, n)``."""
        m = y.shape[1]
        dense = unpack(packed, max(m, n), symmetric=False)
        return np.matmul(dense[:, :n, :m], y[:, :, None])[:, :, 0]

    @staticmethod
    def symv(packed: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``out[k] = C[:m, :m] @ x[k]`` for a symmetric ``C`` (packed ``(length,)``, shared by all
        ``k``); ``x`` is ``(K, m)``."""
        m = x.shape[1]
        return x @ unpack(packed, m, symmetric=True)

    @classmethod
    def rowdot_vecmat(cls, packed, y, a, n):
        """``(rowdot(packed, y, n), vecmat(a, packed, n))`` (one pass over ``packed`` in Numba)."""
        return cls.rowdot(packed, y, n), cls.vecmat(a, packed, n)


def get_kernels(backend: str):
    """The kernel set of ``backend``: ``"numba"`` (compiled, the default of the solvers) or
    ``"numpy"`` (the reference)."""
    check_backend(backend, ("numba", "numpy"))
    if backend == "numpy":
        return NumpyKernels
    from . import _data_side_kernels

    return _data_side_kernels


def mode_shares(spectrum) -> np.ndarray:
    """The share ``p_k`` of the input directions in each mode of ``spectrum``: its ``weights``
    when it has them (quadrature representations of a spectrum), else equal shares ``1 / modes``."""
    weights = getattr(spectrum, "weights", None)
    modes = len(spectrum.eigenvalues)
    if weights is None:
        return np.full(modes, 1.0 / modes)
    weights = np.asarray(weights, dtype=float)
    if weights.shape != (modes,) or np.any(weights < 0) or not math.isclose(weights.sum(), 1.0, rel_tol=1e-9):
        raise ValueError(f"spectrum weights must be {modes} non-negative shares summing to 1, got {weights!r}")
    return weights


# ----------------------------------------------------------------------------------------------


class InputSide:
    """Forward-in-time solver of the data side and the input side (see the module docstring).

    Parameters
    ----------
    eigenvalues, teacher_variances : ``(modes,)`` arrays, ``lambda_k > 0`` and ``b_k >= 0``.
    shares : ``(modes,)`` shares ``p_k`` of the input directions (sum 1); ``None``: equal shares.
    alpha : ``P / D`` (full batch), the batch ratio (online SGD), ``None`` (population flow).
    noise : label-noise standard deviation ``sigma``.
    init_function_scale : ``c = 1 / (gamma0 sqrt(nu))``, the weight of the initial function's
        source ``xi`` in ``v``.
    capacity : number of times allocated at first (grown by :meth:`grow`).
    data_mode : ``"full_batch"``, ``"online"`` or ``"population"`` (module docstring).
    backend : ``"numba"`` (default) or ``"numpy"`` (the reference), see :func:`get_kernels`.

    Attributes (packed, filled row by row by :meth:`advance`)
    ----------
    C_v, R_v, C_Delta, R_Delta, C_u, R_u : packed order parameters (module docstring);
        :meth:`order_parameters` returns them dense.
    bias, init_variance, data_variance : per-time parts of ``C_v(t, t)``.
    """

    def __init__(
        self,
        eigenvalues,
        teacher_variances,
        *,
        shares=None,
        alpha: float | None,
        noise: float,
        init_function_scale: float,
        capacity: int,
        data_mode: str = "full_batch",
        backend: str = "numba",
    ):
        if data_mode not in DATA_MODES:
            raise ValueError(f"`data_mode` must be one of {DATA_MODES}, got {data_mode!r}")
        if (alpha is None) != (data_mode == "population"):
            raise ValueError("`alpha` is None exactly for the population flow (data_mode='population')")
        self.eigenvalues = np.asarray(eigenvalues, dtype=float)
        self.teacher_variances = np.asarray(teacher_variances, dtype=float)
        self.modes = modes = self.eigenvalues.size
        self.shares = np.full(modes, 1.0 / modes) if shares is None else np.asarray(shares, dtype=float)
        self.alpha = None if alpha is None else float(alpha)
        self.noise_power = float(noise) ** 2
        self.init_function_scale = float(init_function_scale)
        self.data_mode = data_mode
        self.full_batch = data_mode == "full_batch"
        self.has_psi = data_mode != "population"
        self.backend = backend
        self.kernels = get_kernels(backend)
        # mode weights of the averages: C_v -> p lambda, R_v -> p sqrt(lambda), C_u, R_u -> p
        self._loss_weight = self.shares * self.eigenvalues
        self._response_weight = self.shares * np.sqrt(self.eigenvalues)
        self._psi_gain = np.sqrt(self.eigenvalues / self.alpha) if self.has_psi else np.zeros(modes)
        self._packed = ["C_v", "C_Delta", "C_u", "R_u", "V_xi"]
        self._per_time = ["bias", "init_variance", "data_variance", "_delta_noise_gain", "V_beta"]
        if self.has_psi:
            self._packed += ["R_v", "R_Delta", "U_xi", "V_psi", "U_psi"]
            self._per_time += ["U_beta"]
        self.capacity = 0
        for name in self._packed + self._per_time:  # per-mode arrays start with "U" or "V"
            setattr(self, name, np.zeros((modes, 0) if name[0] in "UV" else (0,)))
        self.grow(capacity)

    @staticmethod
    def bytes_per_time_squared(modes: int, data_mode: str) -> float:
        """Memory of the input side per ``times^2`` (packed float64 arrays): for the estimate of
        :func:`dmft.solvers._network.check_memory`."""
        arrays = (5 + modes) if data_mode == "population" else (6 + 4 * modes)
        return 8.0 * arrays / 2.0

    def grow(self, times: int) -> None:
        """Make room for ``times`` times (keeps the rows already filled)."""
        if times > self.capacity:
            grow_arrays(self, self._packed, self._per_time, self.capacity, times)
            self.capacity = times

    # ------------------------------------------------------------------------------------------
    def diagonal_resolvent(self, kappa: float) -> float:
        """``rho = R_Delta(t, t)`` for an equal-time kernel ``kappa = K(t, t)``: the root in ``(0, 1]``
        (``kappa >= 0``) of ``rho [1 + (kappa / alpha) sum_k p_k lambda_k / (1 + kappa lambda_k rho)] = 1``.
        Raises :class:`RowSolveError` when there is none (a negative ``kappa`` that makes the
        implicit step singular: the step is too long)."""
        if kappa == 0.0 or not self.full_batch:
            return 1.0
        from scipy.optimize import brentq

        lam, p, alpha = self.eigenvalues, self.shares, self.alpha

        def equation(rho):
            return rho * (1.0 + (kappa / alpha) * np.sum(p * lam / (1.0 + kappa * lam * rho))) - 1.0

        if not math.isfinite(kappa):
            raise RowSolveError(f"equal-time kernel K(t, t) = {kappa}")
        if kappa > 0:
            return brentq(equation, 0.0, 1.0, xtol=1e-15, rtol=1e-15)
        # kappa < 0: 1 + kappa lambda rho > 0 is needed; the root lies above 1
        upper = 1.0 / (-kappa * lam.max())
        if not (upper > 1.0 and equation(upper * (1 - 1e-12)) > 0.0):
            raise RowSolveError(f"no equal-time data-side resolvent for K(t, t) = {kappa:.3g}")
        return brentq(equation, 1.0, upper * (1 - 1e-12), xtol=1e-15, rtol=1e-15)

    def advance(self, t: int, kernel_row: np.ndarray, xi_covariance: np.ndarray) -> None:
        """Fill row ``t`` of every order parameter.

        Parameters
        ----------
        t : the time index (rows ``< t`` must be filled).
        kernel_row : ``K[t, :t + 1]``; its last entry ``K(t, t)`` is the equal-time part (0 for
            gradient descent; then this is an exact, explicit step).
        xi_covariance : packed ``C_g^1``, filled up to row ``t``.
        """
        ops = self.kernels
        lam = self.eigenvalues
        modes = self.modes
        n = t + 1
        c = self.init_function_scale
        lam_col = lam[:, None]
        kappa = float(kernel_row[t])
        k_row = np.broadcast_to(kernel_row[:t], (modes, t))
        implicit = kappa != 0.0

        rho = self.diagonal_resolvent(kappa)
        q = 1.0 / (1.0 + kappa * lam * rho)
        q_col = q[:, None]
        if self.full_batch and implicit and t:
            r_lag = np.broadcast_to(packed_row(self.R_Delta, t, t), (modes, t))  # previous iterate
            drive_lag = {name: ops.vecmat(r_lag, getattr(self, f"V_{name}"), n) for name in ("xi", "psi")}
            beta_lag = self.V_beta[:, :t] @ r_lag[0]
        else:
            drive_lag = {"xi": 0.0, "psi": 0.0}
            beta_lag = 0.0

        # v_k(t) = q_k [sqrt(b_k) beta - c xi(t) - sum_{s<t} K(t,s) u_k(s)
        #                - kappa (psi gain psi(t) + lambda_k sum_{s<t} R_Delta(t,s) v_k(s))]
        if self.has_psi:
            u_beta, u_xi, u_psi = self.U_beta, self.U_xi, self.U_psi
            self.V_beta[:, t] = q * (1.0 - u_beta[:, :t] @ kernel_row[:t] - kappa * lam * beta_lag)
            V_xi_t = packed_row(self.V_xi, t)
            V_xi_t[:] = -q_col * (ops.vecmat(k_row, u_xi, n) + kappa * lam_col * drive_lag["xi"])
            V_psi_t = packed_row(self.V_psi, t)
            V_psi_t[:] = -q_col * (ops.vecmat(k_row, u_psi, n) + kappa * lam_col * drive_lag["psi"])
            V_psi_t[:, t] -= q * kappa * self._psi_gain
        else:  # population: u_k = lambda_k v_k
            self.V_beta[:, t] = q * (1.0 - lam * (self.V_beta[:, :t] @ kernel_row[:t]))
            V_xi_t = packed_row(self.V_xi, t)
            V_xi_t[:] = -q_col * lam_col * ops.vecmat(k_row, self.V_xi, n)
        V_xi_t[:, t] -= q * c

        # R_v(t, s) = sum_k p_k sqrt(lambda_k) dv_k(t)/dpsi_k(s);  R_Delta = I + alpha^{-1/2} R_v R_Delta
        r = None
        if self.has_psi:
            R_v_t = packed_row(self.R_v, t)
            R_v_t[:] = self._response_weight @ V_psi_t
            r = packed_row(self.R_Delta, t)
            if self.full_batch:
                scale = 1.0 / math.sqrt(self.alpha)
                diagonal = 1.0 / (1.0 - scale * R_v_t[t])
                if t:
                    r[:t] = diagonal * scale * ops.vecmat(R_v_t[None, :t], self.R_Delta[None], t)[0]
                r[t] = diagonal
            else:  # online: R_Delta = I
                r[t] = 1.0

        # C_{v_k}(t, s) = b_k V_beta(t) V_beta(s) + V_xi(t) C_g1 V_xi(s)^T + V_psi(t) C_Delta V_psi(s)^T,
        # in the same pass over V_xi, V_psi the new rows of u_k(t) = lambda_k R_Delta(t) v_k + ...
        y_xi = ops.symv(xi_covariance, V_xi_t)
        if self.has_psi:
            y_psi = ops.symv(self.C_Delta, V_psi_t)  # row t of C_Delta: previous iterate (implicit only)
            U_xi_t, U_psi_t = packed_row(self.U_xi, t), packed_row(self.U_psi, t)
            if self.full_batch:
                rows = np.broadcast_to(r, (modes, n))
                xi_modes, xi_drive = ops.rowdot_vecmat(self.V_xi, y_xi, rows, n)
                psi_modes, psi_drive = ops.rowdot_vecmat(self.V_psi, y_psi, rows, n)
                U_xi_t[:] = lam_col * xi_drive
                U_psi_t[:] = lam_col * psi_drive
                self.U_beta[:, t] = lam * (self.V_beta[:, :n] @ r)
            else:  # online: R_Delta = I
                xi_modes = ops.rowdot(self.V_xi, y_xi, n)
                psi_modes = ops.rowdot(self.V_psi, y_psi, n)
                U_xi_t[:] = lam_col * V_xi_t
                U_psi_t[:] = lam_col * V_psi_t
                self.U_beta[:, t] = lam * self.V_beta[:, t]
            U_psi_t[:, t] += self._psi_gain
        else:
            xi_modes = ops.rowdot(self.V_xi, y_xi, n)
            psi_modes = np.zeros_like(xi_modes)
        bias_modes = self.teacher_variances[:, None] * self.V_beta[:, t, None] * self.V_beta[:, :n]
        w = self._loss_weight
        self.bias[t] = w @ bias_modes[:, t]
        self.init_variance[t] = w @ xi_modes[:, t]
        self.data_variance[t] = w @ psi_modes[:, t]
        v_modes = bias_modes + xi_modes + psi_modes
        row = w @ v_modes
        row[t] = self.bias[t] + self.init_variance[t] + self.data_variance[t]
        packed_row(self.C_v, t)[:] = row

        # C_Delta(t, s) = R_Delta(t) C_v R_Delta(s)^T + sigma^2 (R_Delta 1)(t) (R_Delta 1)(s)
        delta_row = packed_row(self.C_Delta, t)
        if self.full_batch:
            gain = r.sum()
            self._delta_noise_gain[t] = gain
            z = ops.symv(self.C_v, r[None])
            delta_row[:] = ops.rowdot(self.R_Delta[None], z, n)[0]
            delta_row += self.noise_power * gain * self._delta_noise_gain[:n]
        else:
            self._delta_noise_gain[t] = 1.0
            delta_row[:t] = 0.0
            delta_row[t] = row[t] + self.noise_power

        # C_u = sum_k p_k C_{u_k},  R_u = sum_k p_k du_k/dxi_k
        p = self.shares
        if self.has_psi:
            z_xi = ops.symv(xi_covariance, U_xi_t)
            z_psi = ops.symv(self.C_Delta, U_psi_t)
            cu_modes = (
                self.teacher_variances[:, None] * self.U_beta[:, t, None] * self.U_beta[:, :n]
                + ops.rowdot(self.U_xi, z_xi, n)
                + ops.rowdot(self.U_psi, z_psi, n)
            )
            packed_row(self.C_u, t)[:] = p @ cu_modes
            packed_row(self.R_u, t)[:] = p @ U_xi_t
        else:  # u_k = lambda_k v_k
            packed_row(self.C_u, t)[:] = (p * lam * lam) @ v_modes
            packed_row(self.R_u, t)[:] = (p * lam) @ V_xi_t

    # ------------------------------------------------------------------------------------------
    def row_state(self) -> list[np.ndarray]:
        """The packed arrays whose row ``t`` a pass of an implicit row reads before writing it
        (``R_Delta(t, s < t)``, ``C_Delta(t, .)``) or that feed the network (``C_u``, ``R_u``): the
        state of the row solve (:func:`dmft.solvers._network.solve_row`)."""
        arrays = [self.C_u, self.R_u]
        if self.full_batch:
            arrays += [self.R_Delta, self.C_Delta]
        elif self.has_psi:
            arrays += [self.C_Delta]
        return arrays

    def test_loss(self, times: int | None = None) -> np.ndarray:
        """``C_v(t, t) + sigma^2``, assembled from its parts (so that they sum to it exactly)."""
        times = self.capacity if times is None else times
        return self.bias[:times] + self.init_variance[:times] + self.data_variance[:times] + self.noise_power

    def train_loss(self, times: int | None = None) -> np.ndarray:
        """``C_Delta(t, t)``."""
        times = self.capacity if times is None else times
        t = np.arange(times)
        return self.C_Delta[t * (t + 1) // 2 + t].copy()

    def order_parameters(self, times: int) -> dict[str, np.ndarray]:
        """Dense ``(times, times)`` arrays ``C_v, R_v, C_Delta, R_Delta, C_u, R_u``."""
        out = {}
        for name in ("C_v", "R_v", "C_Delta", "R_Delta", "C_u", "R_u"):
            symmetric = name.startswith("C")
            if hasattr(self, name):
                out[name] = unpack(getattr(self, name), times, symmetric=symmetric)
            elif name == "R_Delta":
                out[name] = np.eye(times)
            else:  # population flow: no psi, R_v = 0
                out[name] = np.zeros((times, times))
        return out


def whole_window_input_side(
    eigenvalues,
    teacher_variances,
    *,
    shares=None,
    alpha: float | None,
    noise: float,
    init_function_scale: float,
    data_mode: str,
    kernel: np.ndarray,
    xi_covariance: np.ndarray,
    C_Delta: np.ndarray,
    R_Delta: np.ndarray,
) -> dict[str, np.ndarray]:
    """The input and data sides evaluated on the whole window (dense matrices, triangular solves)
    from given ``K`` (lower triangular, its diagonal the equal-time part), ``C_g^1``
    (``xi_covariance``), ``C_Delta`` and ``R_Delta``. With ``Q_k = (I + lambda_k K R_Delta)^{-1}``::

        C_{v_k} = Q_k [b_k 1 1^T + c^2 C_g^1 + (lambda_k/alpha) K C_Delta K^T] Q_k^T
        dv_k/dpsi = -sqrt(lambda_k/alpha) Q_k K,     du_k/dxi = -c lambda_k R_Delta Q_k
        C_{u_k} = lambda_k^2 R_Delta C_{v_k} R_Delta^T + (lambda_k/alpha) C_Delta
                  + lambda_k sqrt(lambda_k/alpha) (R_Delta V_psi C_Delta + its transpose)

    (a different arrangement of the algebra from the forward solve's; the population flow drops
    every ``psi`` term). Returns ``C_v, R_v, C_u, R_u`` and the ``C_Delta``, ``R_Delta`` that the data
    side makes of the new ``C_v``, ``R_v``. At the solution of the forward solve, output = input
    (the self-consistency check).
    """
    from scipy.linalg import solve_triangular

    lam = np.asarray(eigenvalues, dtype=float)
    b = np.asarray(teacher_variances, dtype=float)
    modes = lam.size
    p = np.full(modes, 1.0 / modes) if shares is None else np.asarray(shares, dtype=float)
    c = init_function_scale
    times = kernel.shape[0]
    eye = np.eye(times)
    ones = np.ones(times)
    has_psi = data_mode != "population"
    memory = kernel @ C_Delta @ kernel.T if has_psi else 0.0
    C_v, R_v = np.zeros((times, times)), np.zeros((times, times))
    C_u, R_u = np.zeros((times, times)), np.zeros((times, times))
    for k in range(modes):
        gain_sq = lam[k] / alpha if has_psi else 0.0
        gain = math.sqrt(gain_sq)
        system = eye + lam[k] * kernel @ R_Delta  # lower triangular
        sources = b[k] * np.outer(ones, ones) + c**2 * xi_covariance + gain_sq * memory
        half = solve_triangular(system, sources, lower=True)
        C_vk = solve_triangular(system, half.T, lower=True)
        V_psi = -gain * solve_triangular(system, kernel, lower=True)
        C_v += p[k] * lam[k] * C_vk
        R_v += p[k] * math.sqrt(lam[k]) * V_psi
        # R_Delta Q_k = (Q_k^T R_Delta^T)^T
        R_u -= p[k] * c * lam[k] * solve_triangular(system, R_Delta.T, lower=True, trans="T").T
        cross = R_Delta @ V_psi @ C_Delta
        C_u += p[k] * (lam[k] ** 2 * R_Delta @ C_vk @ R_Delta.T + gain_sq * C_Delta + lam[k] * gain * (cross + cross.T))
    if data_mode == "full_batch":
        new_R_Delta = solve_triangular(eye - R_v / math.sqrt(alpha), eye, lower=True)
        gain = new_R_Delta @ ones
        new_C_Delta = new_R_Delta @ C_v @ new_R_Delta.T + noise**2 * np.outer(gain, gain)
    else:
        new_R_Delta = eye
        new_C_Delta = np.diag(np.diagonal(C_v) + noise**2)
    return {"C_v": C_v, "R_v": R_v, "C_Delta": new_C_Delta, "R_Delta": new_R_Delta, "C_u": C_u, "R_u": R_u}


def self_consistency_info(recomputed: dict, arrays: dict) -> dict:
    """``self_consistency_residual`` (max absolute difference between the order parameters of the
    forward solve and those recomputed from the whole-window equations; NaN if any is NaN) and its
    value relative to the largest entry, ``self_consistency_relative``."""
    differences = [np.abs(recomputed[name] - arrays[name]) for name in recomputed]
    scales = [np.abs(arrays[name]) for name in recomputed]
    residual = max(float(np.max(d)) for d in differences)
    scale = max(float(np.max(s)) for s in scales)
    if any(np.isnan(d).any() for d in differences) or any(np.isnan(s).any() for s in scales):
        residual = scale = math.nan
    return {
        "self_consistency_residual": residual,
        "self_consistency_relative": residual / scale if scale > 0 else residual,
    }


def dmft_result(input_side: InputSide, model, data, training, arrays: dict, info: dict, *, times: int,
                time=None, checks=(), curves=None):  # fmt: skip
    """The :class:`dmft.Result` of a network solver: losses from ``input_side`` (its first
    ``times`` rows; or ``curves = (test, train, parts)`` already resampled at ``time``), its
    test-loss decomposition added to ``arrays`` (``test_loss_bias``, ``test_loss_init_variance``,
    ``test_loss_data_variance``), ``status`` and ``message`` from ``checks`` (:func:`dmft.result.diagnose`)."""
    from ..result import Result, diagnose

    if curves is None:
        test, train = input_side.test_loss(times), input_side.train_loss(times)
        parts = (input_side.bias[:times].copy(), input_side.init_variance[:times].copy(),
                 input_side.data_variance[:times].copy())  # fmt: skip
    else:
        test, train, parts = curves
    arrays["test_loss_bias"], arrays["test_loss_init_variance"], arrays["test_loss_data_variance"] = parts
    status, message = diagnose(checks)
    return Result(
        model=model,
        data=data,
        training=training,
        test_loss=test,
        train_loss=train,
        method="dmft",
        arrays=arrays,
        info=info,
        time=time,
        status=status,
        message=message,
    )
