"""Data side and input side of the deep-linear DMFT, solved forward in time (THEORY.md section 2.1).

Both the plain (section 2.1) and the residual (section 2.2) deep linear networks share these two
single-site processes; the network enters only through the first layer's backward field ``g_1``:
the memory kernel ``K = gamma0^{-1} R_g^1 + eta (C_g^1)_<`` and the covariance ``C_g^1`` of the
source ``xi``. A network solver calls :meth:`InputSide.advance` once per step with row ``t`` of
``K`` and ``C_g^1`` filled up to row ``t``, and reads back row ``t`` of ``C_u`` and ``R_u`` (the
statistics of the drive ``u``, which feed the first hidden layer).

Equations, per mode ``k`` of the input spectrum (eigenvalue ``lambda_k``, teacher variance ``b_k``;
isotropic data is one mode with ``lambda = b = 1``), time ``t = 0..T`` (the step count)::

    data side   Delta = R_Delta (zeta + sigma eps 1),  zeta ~ GP(0, C_v),
                R_Delta = (I - alpha^{-1/2} R_v)^{-1},  C_Delta = R_Delta (C_v + sigma^2 1 1^T) R_Delta^T
    input side  v_k = sqrt(b_k) beta 1 - c xi_k - K u_k,          c = 1 / (gamma0 sqrt(nu))
                u_k = sqrt(lambda_k / alpha) psi_k + lambda_k R_Delta v_k
                xi_k ~ GP(0, C_g^1),  psi_k ~ GP(0, C_Delta),  beta ~ N(0, 1), all independent
    averages    C_v = mean_k lambda_k C_{v_k},  R_v = mean_k sqrt(lambda_k) dv_k/dpsi_k,
                C_u = mean_k C_{u_k},           R_u = mean_k du_k/dxi_k
    losses      test = C_v(t, t) + sigma^2,  train = C_Delta(t, t)

Online SGD: ``R_Delta = I``, ``C_Delta = diag(C_v(t, t) + sigma^2)`` and ``alpha`` is the batch ratio.

How it is solved. Every quantity is a linear combination of the Gaussian sources, so the solver
keeps, for every mode, the coefficient of ``v(t)`` and ``u(t)`` on each source: ``V_beta[k, t]``
(on ``beta``), ``V_xi[k, t, s]`` (on ``xi(s)``), ``V_psi[k, t, s]`` (on ``psi(s)``), and likewise
``U_*``. ``K`` is strictly causal and ``R_Delta`` has a unit diagonal, so row ``t`` of every
coefficient follows from rows ``< t`` by one vector-matrix product (forward substitution of the
lower-triangular systems ``(I + lambda_k K R_Delta) v_k = ...`` and ``R_Delta = I + alpha^{-1/2}
R_v R_Delta``); covariances then follow as ``C(t, s) = V(t) C_source V(s)^T``, responses are the
coefficients themselves (``dv_k/dpsi_k = V_psi``, ``du_k/dxi_k = U_xi``). A step costs
``O(modes t^2)``; the whole run ``O(modes T^3)`` time and ``O(modes T^2)`` memory.

The test loss splits by source (they are independent): ``bias`` (from ``beta``, the teacher),
``init_variance`` (from ``xi``, the random initial function, ``~ 1/(gamma0^2 nu)``) and
``data_variance`` (from ``psi``, the finite-sample fluctuation of the gradient, ``~ 1/alpha``; it
carries the label noise and, for online SGD, the minibatch noise). Their sum plus ``sigma^2`` is the
test loss.

Storage. Every two-time array here is lower triangular (a response or a source coefficient,
``X[t, s] = 0`` for ``s > t``) or symmetric (a correlation), so it is kept *packed*: entry ``(t, s)``,
``s <= t``, at index ``t (t + 1) / 2 + s`` of a flat array (row ``t`` is the contiguous slice
:func:`packed_row`). Rows ``0..t`` are then one contiguous block, which halves the memory traffic of
the row updates (the solver is bound by memory bandwidth) and streams well.
:func:`unpack` returns the dense ``(T + 1, T + 1)`` matrices.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "InputSide",
    "dmft_result",
    "self_consistency_info",
    "KERNELS",
    "get_kernels",
    "packed_length",
    "packed_row",
    "unpack",
    "whole_window_input_side",
]


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


# ----------------------------------------------------------------------------------------------
# Kernels: the products every row update is made of, on packed arrays with a leading batch axis
# (modes). The NumPy versions are the reference (they unpack and use matmul); the Numba versions
# stream the packed rows and must agree with them to round-off (tests/test_deep.py).


class _NumpyKernels:
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


def _build_numba_kernels():
    import numba

    # reassoc + contract let LLVM vectorise the reductions; no assumption on NaN / inf, so a
    # diverging run still produces non-finite numbers that the solver detects.
    jit = numba.njit(cache=True, fastmath={"reassoc", "contract"})

    @jit
    def vecmat(a, packed, n):
        modes, m = a.shape
        out = np.zeros((modes, n))
        for k in range(modes):
            for s in range(m):
                weight = a[k, s]
                start = s * (s + 1) // 2
                for r in range(min(s + 1, n)):
                    out[k, r] += weight * packed[k, start + r]
        return out

    @jit
    def rowdot(packed, y, n):
        modes, m = y.shape
        out = np.empty((modes, n))
        for k in range(modes):
            for s in range(n):
                start = s * (s + 1) // 2
                acc = 0.0
                for r in range(min(s + 1, m)):
                    acc += packed[k, start + r] * y[k, r]
                out[k, s] = acc
        return out

    @jit
    def symv(packed, x):
        modes, m = x.shape
        out = np.zeros((modes, m))
        for i in range(m):
            start = i * (i + 1) // 2
            for k in range(modes):
                xi = x[k, i]
                acc = 0.0
                for j in range(i):
                    c = packed[start + j]
                    acc += c * x[k, j]
                    out[k, j] += c * xi
                out[k, i] += acc + packed[start + i] * xi
        return out

    @jit
    def rowdot_vecmat(packed, y, a, n):
        modes, my = y.shape
        ma = a.shape[1]
        dots = np.empty((modes, n))
        sums = np.zeros((modes, n))
        for k in range(modes):
            for s in range(n):
                start = s * (s + 1) // 2
                acc = 0.0
                for r in range(min(s + 1, my)):
                    acc += packed[k, start + r] * y[k, r]
                dots[k, s] = acc
                if s < ma:
                    weight = a[k, s]
                    for r in range(s + 1):
                        sums[k, r] += weight * packed[k, start + r]
        return dots, sums

    class _NumbaKernels:
        """Numba kernels streaming the packed rows (compiled on first use, cached on disk)."""

        name = "numba"

    _NumbaKernels.vecmat = staticmethod(vecmat)
    _NumbaKernels.rowdot = staticmethod(rowdot)
    _NumbaKernels.symv = staticmethod(symv)
    _NumbaKernels.rowdot_vecmat = staticmethod(rowdot_vecmat)
    return _NumbaKernels


KERNELS = ("numba", "numpy")
_KERNEL_SETS: dict[str, type] = {"numpy": _NumpyKernels}


def get_kernels(name: str):
    """The kernel set ``"numba"`` (fast, the default) or ``"numpy"`` (the reference)."""
    if name not in KERNELS:
        raise ValueError(f"`kernels` must be one of {KERNELS}, got {name!r}")
    if name not in _KERNEL_SETS:
        _KERNEL_SETS[name] = _build_numba_kernels()
    return _KERNEL_SETS[name]


# ----------------------------------------------------------------------------------------------


class InputSide:
    """Forward-in-time solver of the data side and the input side (see the module docstring).

    Parameters
    ----------
    eigenvalues, teacher_variances : ``(modes,)`` arrays, ``lambda_k > 0`` and ``b_k >= 0``.
    alpha : ``P / D`` for full-batch gradient descent, the batch ratio for online SGD.
    noise : label-noise standard deviation ``sigma``.
    init_scale : ``c = 1 / (gamma0 sqrt(nu))``, the weight of the initial function's source ``xi``.
    steps : ``T``; there are ``T + 1`` times ``0..T``.
    online : online SGD (fresh batch each step) instead of full-batch gradient descent.
    kernels : ``"numba"`` (default) or ``"numpy"`` (the reference), see :func:`get_kernels`.

    Attributes (packed, filled row by row by :meth:`advance`)
    ----------
    C_v, R_v, C_Delta, R_Delta, C_u, R_u : packed order parameters (module docstring);
        :meth:`order_parameters` returns them dense.
    bias, init_variance, data_variance : ``(T + 1,)`` parts of ``C_v(t, t)``.
    """

    def __init__(
        self,
        eigenvalues,
        teacher_variances,
        *,
        alpha: float,
        noise: float,
        init_scale: float,
        steps: int,
        online: bool,
        kernels: str = "numba",
    ):
        self.eigenvalues = np.asarray(eigenvalues, dtype=float)
        self.teacher_variances = np.asarray(teacher_variances, dtype=float)
        self.modes = self.eigenvalues.size
        self.alpha = float(alpha)
        self.noise_power = float(noise) ** 2
        self.init_scale = float(init_scale)
        self.online = bool(online)
        self.kernels = get_kernels(kernels)
        self.times = times = steps + 1
        modes = self.modes
        # mode weights of the averages: C_v -> lambda/M, R_v -> sqrt(lambda)/M, C_u, R_u -> 1/M
        self._loss_weight = self.eigenvalues / modes
        self._response_weight = np.sqrt(self.eigenvalues) / modes
        self._psi_gain = np.sqrt(self.eigenvalues / self.alpha)
        length = packed_length(times)
        self.C_v, self.R_v = np.zeros(length), np.zeros(length)
        self.C_Delta, self.R_Delta = np.zeros(length), np.zeros(length)
        self.C_u, self.R_u = np.zeros(length), np.zeros(length)
        self.bias = np.zeros(times)
        self.init_variance = np.zeros(times)
        self.data_variance = np.zeros(times)
        self._delta_noise_gain = np.zeros(times)  # (R_Delta 1)(t): weight of sigma eps in Delta(t)
        # source coefficients of v_k(t) and u_k(t): [mode, packed (time, source time)]
        self.V_beta, self.U_beta = np.zeros((modes, times)), np.zeros((modes, times))
        self.V_xi, self.U_xi = np.zeros((modes, length)), np.zeros((modes, length))
        self.V_psi, self.U_psi = np.zeros((modes, length)), np.zeros((modes, length))

    # ------------------------------------------------------------------------------------------
    def advance(self, t: int, kernel_row: np.ndarray, xi_covariance: np.ndarray) -> None:
        """Fill row ``t`` of every order parameter.

        Parameters
        ----------
        t : the step (rows ``< t`` must be filled).
        kernel_row : ``K[t, :t]`` (``K`` is strictly lower triangular).
        xi_covariance : packed ``C_g^1``, filled up to row ``t``.
        """
        ops = self.kernels
        lam = self.eigenvalues
        modes = self.modes
        n = t + 1

        # v_k(t) = sqrt(b_k) beta - c xi_k(t) - sum_{s<t} K(t, s) u_k(s)
        k = np.broadcast_to(kernel_row, (modes, t))
        self.V_beta[:, t] = 1.0 - self.U_beta[:, :t] @ kernel_row
        V_xi_t = packed_row(self.V_xi, t)
        V_xi_t[:] = -ops.vecmat(k, self.U_xi, n)
        V_xi_t[:, t] -= self.init_scale
        V_psi_t = packed_row(self.V_psi, t)
        V_psi_t[:, :t] = -ops.vecmat(k, self.U_psi, t)  # entry t stays 0: psi(t) enters u(t) only

        # R_v(t, s) = mean_k sqrt(lambda_k) dv_k(t)/dpsi_k(s)
        packed_row(self.R_v, t, t)[:] = self._response_weight @ V_psi_t[:, :t]
        # R_Delta = I + alpha^{-1/2} R_v R_Delta (R_v strictly lower: forward substitution)
        r = packed_row(self.R_Delta, t)
        if not self.online and t:
            r[:t] = ops.vecmat(packed_row(self.R_v, t, t)[None], self.R_Delta[None], t)[0]
            r[:t] /= math.sqrt(self.alpha)
        r[t] = 1.0

        # C_{v_k}(t, s) = b_k V_beta(t) V_beta(s) + V_xi(t) C_g1 V_xi(s)^T + V_psi(t) C_Delta V_psi(s)^T,
        # in the same pass over V_xi, V_psi the new rows of u_k(t) = lambda_k R_Delta(t) v_k + ...
        y_xi = ops.symv(xi_covariance, V_xi_t)
        y_psi = ops.symv(self.C_Delta, V_psi_t[:, :t])
        U_xi_t = packed_row(self.U_xi, t)
        U_psi_t = packed_row(self.U_psi, t)
        lam_col = lam[:, None]
        if self.online:  # R_Delta = I: u_k(t) = lambda_k v_k(t) + ...
            xi_modes = ops.rowdot(self.V_xi, y_xi, n)
            psi_modes = ops.rowdot(self.V_psi, y_psi, n)
            U_xi_t[:] = lam_col * V_xi_t
            U_psi_t[:] = lam_col * V_psi_t
            self.U_beta[:, t] = lam * self.V_beta[:, t]
        else:
            rows = np.broadcast_to(r, (modes, n))
            xi_modes, xi_drive = ops.rowdot_vecmat(self.V_xi, y_xi, rows, n)
            psi_modes, psi_drive = ops.rowdot_vecmat(self.V_psi, y_psi, rows, n)
            U_xi_t[:] = lam_col * xi_drive
            U_psi_t[:] = lam_col * psi_drive
            self.U_beta[:, t] = lam * (self.V_beta[:, :n] @ r)
        U_psi_t[:, t] += self._psi_gain
        bias_modes = self.teacher_variances[:, None] * self.V_beta[:, t, None] * self.V_beta[:, :n]
        w = self._loss_weight
        self.bias[t] = w @ bias_modes[:, t]
        self.init_variance[t] = w @ xi_modes[:, t]
        self.data_variance[t] = w @ psi_modes[:, t]
        row = w @ (bias_modes + xi_modes + psi_modes)
        row[t] = self.bias[t] + self.init_variance[t] + self.data_variance[t]
        packed_row(self.C_v, t)[:] = row

        # C_Delta(t, s) = R_Delta(t) C_v R_Delta(s)^T + sigma^2 (R_Delta 1)(t) (R_Delta 1)(s)
        delta_row = packed_row(self.C_Delta, t)
        if self.online:
            self._delta_noise_gain[t] = 1.0
            delta_row[t] = row[t] + self.noise_power
        else:
            gain = r.sum()
            self._delta_noise_gain[t] = gain
            z = ops.symv(self.C_v, r[None])
            delta_row[:] = ops.rowdot(self.R_Delta[None], z, n)[0]
            delta_row += self.noise_power * gain * self._delta_noise_gain[:n]

        # C_u = mean_k C_{u_k},  R_u = mean_k du_k/dxi_k
        z_xi = ops.symv(xi_covariance, U_xi_t)
        z_psi = ops.symv(self.C_Delta, U_psi_t)
        cu_modes = (
            self.teacher_variances[:, None] * self.U_beta[:, t, None] * self.U_beta[:, :n]
            + ops.rowdot(self.U_xi, z_xi, n)
            + ops.rowdot(self.U_psi, z_psi, n)
        )
        packed_row(self.C_u, t)[:] = cu_modes.mean(axis=0)
        packed_row(self.R_u, t)[:] = U_xi_t.mean(axis=0)

    # ------------------------------------------------------------------------------------------
    def test_loss(self) -> np.ndarray:
        """``C_v(t, t) + sigma^2``, assembled from its parts (so that they sum to it exactly)."""
        return self.bias + self.init_variance + self.data_variance + self.noise_power

    def train_loss(self) -> np.ndarray:
        """``C_Delta(t, t)``."""
        t = np.arange(self.times)
        return self.C_Delta[t * (t + 1) // 2 + t].copy()

    def order_parameters(self) -> dict[str, np.ndarray]:
        """Dense ``(T + 1, T + 1)`` arrays ``C_v, R_v, C_Delta, R_Delta, C_u, R_u``."""
        times = self.times
        out = {}
        for name in ("C_v", "R_v", "C_Delta", "R_Delta", "C_u", "R_u"):
            out[name] = unpack(getattr(self, name), times, symmetric=name.startswith("C"))
        return out


def whole_window_input_side(
    eigenvalues,
    teacher_variances,
    *,
    alpha: float,
    noise: float,
    init_scale: float,
    online: bool,
    kernel: np.ndarray,
    xi_covariance: np.ndarray,
    C_Delta: np.ndarray,
    R_Delta: np.ndarray,
) -> dict[str, np.ndarray]:
    """The input and data sides evaluated on the whole window (dense matrices, triangular solves)
    from given ``K``, ``C_g^1`` (``xi_covariance``), ``C_Delta`` and ``R_Delta``. With
    ``Q_k = (I + lambda_k K R_Delta)^{-1}`` and ``E[v_k psi^T] = V_psi C_Delta``::

        C_{v_k} = Q_k [b_k 1 1^T + c^2 C_g^1 + (lambda_k/alpha) K C_Delta K^T] Q_k^T
        dv_k/dpsi = -sqrt(lambda_k/alpha) Q_k K,     du_k/dxi = -c lambda_k R_Delta Q_k
        C_{u_k} = lambda_k^2 R_Delta C_{v_k} R_Delta^T + (lambda_k/alpha) C_Delta
                  + lambda_k sqrt(lambda_k/alpha) (R_Delta V_psi C_Delta + its transpose)

    (a different arrangement of the algebra from the forward solve's). Returns ``C_v, R_v, C_u,
    R_u`` and the ``C_Delta``, ``R_Delta`` that the data side makes of the new ``C_v``, ``R_v``. At
    the solution of the forward solve, output = input (the self-consistency check).
    """
    from scipy.linalg import solve_triangular

    lam = np.asarray(eigenvalues, dtype=float)
    b = np.asarray(teacher_variances, dtype=float)
    modes = lam.size
    times = kernel.shape[0]
    eye = np.eye(times)
    ones = np.ones(times)
    memory = kernel @ C_Delta @ kernel.T
    C_v, R_v = np.zeros((times, times)), np.zeros((times, times))
    C_u, R_u = np.zeros((times, times)), np.zeros((times, times))
    for k in range(modes):
        gain = math.sqrt(lam[k] / alpha)
        system = eye + lam[k] * kernel @ R_Delta  # unit lower triangular (K strictly lower)
        sources = b[k] * np.outer(ones, ones) + init_scale**2 * xi_covariance + gain**2 * memory
        half = solve_triangular(system, sources, lower=True, unit_diagonal=True)
        C_vk = solve_triangular(system, half.T, lower=True, unit_diagonal=True)
        V_psi = -gain * solve_triangular(system, kernel, lower=True, unit_diagonal=True)
        C_v += lam[k] * C_vk
        R_v += math.sqrt(lam[k]) * V_psi
        # R_Delta Q_k = (Q_k^T R_Delta^T)^T
        R_u -= init_scale * lam[k] * solve_triangular(
            system, R_Delta.T, lower=True, trans="T", unit_diagonal=True
        ).T
        cross = R_Delta @ V_psi @ C_Delta
        C_u += lam[k] ** 2 * R_Delta @ C_vk @ R_Delta.T + gain**2 * C_Delta + lam[k] * gain * (cross + cross.T)
    C_v /= modes
    R_v /= modes
    C_u /= modes
    R_u /= modes
    if online:
        new_R_Delta = eye
        new_C_Delta = np.diag(np.diagonal(C_v) + noise**2)
    else:
        new_R_Delta = solve_triangular(eye - R_v / math.sqrt(alpha), eye, lower=True, unit_diagonal=True)
        gain = new_R_Delta @ ones
        new_C_Delta = new_R_Delta @ C_v @ new_R_Delta.T + noise**2 * np.outer(gain, gain)
    return {"C_v": C_v, "R_v": R_v, "C_Delta": new_C_Delta, "R_Delta": new_R_Delta, "C_u": C_u, "R_u": R_u}


def self_consistency_info(recomputed: dict, arrays: dict) -> dict:
    """``self_consistency_residual`` (max absolute difference between the order parameters of the
    forward solve and those recomputed from the whole-window equations) and its value relative to
    the largest entry, ``self_consistency_relative``."""
    residual = max(float(np.max(np.abs(recomputed[name] - arrays[name]))) for name in recomputed)
    scale = max(float(np.max(np.abs(arrays[name]))) for name in recomputed)
    return {
        "self_consistency_residual": residual,
        "self_consistency_relative": residual / scale if scale > 0 else residual,
    }


def dmft_result(input_side: InputSide, model, data, training, arrays: dict, info: dict):
    """The :class:`dmft.Result` of a network solver: losses from ``input_side``, its test-loss
    decomposition added to ``arrays`` (``test_loss_bias``, ``test_loss_init_variance``,
    ``test_loss_data_variance``)."""
    from ..result import Result

    arrays["test_loss_bias"] = input_side.bias.copy()
    arrays["test_loss_init_variance"] = input_side.init_variance.copy()
    arrays["test_loss_data_variance"] = input_side.data_variance.copy()
    return Result(
        model=model,
        data=data,
        training=training,
        test_loss=input_side.test_loss(),
        train_loss=input_side.train_loss(),
        method="dmft",
        arrays=arrays,
        info=info,
    )
