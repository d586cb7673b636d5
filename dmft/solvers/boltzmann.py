"""Large-N Langevin training of spherical Boltzmann machines (docs/spherical.md, "Dynamics";
THEORY.md section 5).

Finite chain speed ``nu``: the two-time (MSR / dynamical mean-field) equations for the data
overlaps ``s_a(t) = x(t).e_a / sqrt(N)``, the chain's correlation ``Q(t,t') = x(t).x(t')/N``, its
response ``R(t,t')`` and its spherical multiplier ``kappa(t)``. With ``theta(t) = (1 - e^{-gamma t/2})
/ gamma`` (the data part of ``W(t)`` is ``theta(t) C``) and ``J^2 = 1/(gamma eta)``::

    M(t,u) = e^{-gamma (t-u)/2} [-(K nu/2) Q(t,u) + nu^2 J^2 R(t,u)]
    D(t,u) = (2 nu / beta) delta(t-u) + nu^2 J^2 e^{-gamma |t-u|/2} Q(t,u)
    ds_a/dt     = [nu c_a theta - kappa] s_a + int_0^t M(t,u) s_a(u) du
    d_t R(t,t') = -kappa R(t,t') + int_{t'}^t M(t,u) R(u,t') du,                         R(t,t) = 1
    d_t Q(t,t') = -kappa Q(t,t') + nu theta sum_a c_a s_a(t) s_a(t') + int_0^t M(t,u) Q(u,t') du
                  + int_0^{t'} D(t,u) R(t',u) du,                                          Q(t,t) = 1
    kappa(t)    = nu theta sum_a c_a s_a^2 + nu/beta + int_0^t [M(t,u) Q(t,u) + D_reg(t,u) R(t,u)] du

(derived in docs/spherical.md: ``W(t) = B(t) + theta(t) C - (K/2N) int e^{-gamma(t-u)/2} x(u) x(u)^T du``
with ``B`` a stationary GOE Ornstein-Uhlenbeck process; the ``x x^T`` memory gives the ``Q`` part of
``M``, the cavity reaction of ``B`` its ``R`` part and the coloured noise ``D``; ``kappa`` keeps
``Q(t,t) = 1``). ``eta = inf`` (MAP) is ``J = 0``.

Numerical method (:mod:`dmft.solvers._boltzmann_kernels`): exponential Heun steps (second order)
with trapezoidal memory sums over a window ``t - u <= L``, ``L = (2/gamma) ln(A / epsilon)``
(the memory decays like ``e^{-gamma(t-u)/2}``; ``epsilon = rtol / 100``), so memory is
``O((L/h)^2)`` and time ``O(T L^2 / h^3)``; three grids ``h, 2h, 4h`` and Richardson extrapolation
(observed order about 3.4 after one extrapolation, 2 before), whose difference is the error
estimate; the step is lowered and the solve repeated until the estimate meets ``rtol``.

``nu = inf`` (an equilibrium negative phase) is the limit in which the chain relaxes
instantaneously: :mod:`dmft.solvers._boltzmann_equilibrium_chain`.
"""

from __future__ import annotations

import math
import time as _time

import numpy as np

from ..boltzmann import (
    DataCovariance,
    DynamicsDivergenceError,
    Langevin,
    SphericalBoltzmann,
    SpikedTeacher,
    check_configuration,
)
from ..result import Result, diagnose
from . import register
from ._boltzmann_kernels import integrate_numba, integrate_numpy

__all__ = ["solve_langevin", "DEFAULT_REPORTS"]

# at most this many report times when ``save_at`` is None (the solver's grid, thinned)
DEFAULT_REPORTS = 201
# Richardson extrapolation of the h- and 2h-grids is about third order (measured 3.3-3.5 in
# tests/test_boltzmann_dynamics.py): its error is estimated as |y1(h) - y1(2h)| / (2^3 - 1).
EXTRAPOLATED_ORDER = 3
MAX_REFINEMENTS = 3


def _is_equilibrium(model, data, training) -> bool:
    return isinstance(training, Langevin) and training.chain_speed == math.inf


@register(SphericalBoltzmann, trainings=(Langevin,))
def solve_langevin(
    model: SphericalBoltzmann,
    data: DataCovariance | SpikedTeacher,
    training: Langevin,
    *,
    step: float | None = None,
    backend: str = "numba",
    curves: str = "all",
) -> Result:
    """The ``N -> infinity`` Langevin training of a spherical Boltzmann machine.

    Parameters
    ----------
    model, data, training : :class:`dmft.SphericalBoltzmann`, :class:`dmft.DataCovariance` (or
        :class:`dmft.SpikedTeacher`, replaced by its typical spectrum), :class:`dmft.Langevin`.
    step : the finest time step ``h`` to start from (default: from ``training.rtol`` and the
        chain's rates); it is lowered until the error estimate meets ``training.rtol``.
    backend : ``"numba"`` (compiled kernel) or ``"numpy"`` (the reference implementation;
        ``O(n^2)`` memory, for tests).
    curves : where to compute the spectral learning curves (top eigenvalue, losses, KL):
        ``"all"`` report times (default), the ``"final"`` one (NaN elsewhere), or ``"none"``.
        Each costs a few dense solves of the memory window's size (docs/spherical.md).

    Returns
    -------
    dmft.Result with ``time`` the report times (``training.save_at``, or up to 201 points of the
    solver's grid), ``arrays``: ``s`` ``(K, times)``, ``Q``, ``R`` ``(times, times)`` (row = later
    time), ``multiplier`` ``kappa / nu``, and the learning curves of docs/spherical.md;
    ``info``: ``step``, ``window``, ``grid_points``, ``error_estimate`` (of the returned values,
    absolute on ``s, Q, R`` and relative on ``kappa``), ``refinements``, ``wall_time_s``.

    Raises
    ------
    dmft.boltzmann.DynamicsDivergenceError : the equations blew up numerically (names the time).
    """
    check_configuration(model, data, training)
    if backend not in ("numba", "numpy"):
        raise ValueError(f"`backend` must be 'numba' or 'numpy' for this solver, got {backend!r}")
    if curves not in CURVE_CHOICES:
        raise ValueError(f"`curves` must be one of {CURVE_CHOICES}, got {curves!r}")
    started = _time.perf_counter()
    spectrum = np.asarray(data.resolve().eigenvalues)
    if _is_equilibrium(model, data, training):
        from ._boltzmann_equilibrium_chain import solve_equilibrium_chain

        return solve_equilibrium_chain(model, data, training, step=step, started=started, curves=curves)
    problem = _Problem(model, data, training, spectrum)
    h = problem.initial_step() if step is None else float(step)
    if not (h > 0 and math.isfinite(h)):
        raise ValueError(f"`step` must be positive and finite, got {step}")
    integrate = integrate_numba if backend == "numba" else integrate_numpy
    for refinement in range(MAX_REFINEMENTS + 1):
        try:
            levels = problem.integrate(h, integrate, curves)
        except DynamicsDivergenceError:
            if step is not None or refinement == MAX_REFINEMENTS:
                raise
            h /= 4  # the default step was too coarse for stability: refine
            continue
        values, error = _richardson(levels, problem)
        if error <= training.rtol or refinement == MAX_REFINEMENTS:
            break
        h *= 0.9 * (training.rtol / error) ** (1 / EXTRAPOLATED_ORDER)
    times = levels[0]["times"]
    status, message = diagnose(
        [
            (
                "error estimate",
                error,
                training.rtol,
                "the step could not be made fine enough in "
                f"{MAX_REFINEMENTS} refinements; pass a smaller `step`",
            )
        ]
    )
    arrays = {
        "s": values["s"].T,
        "Q": values["Q"],
        "R": values["R"],
        "multiplier": values["kappa"] / problem.nu,
    }
    return dynamics_result(
        model, data, training, arrays, levels, times, curves, problem.teacher, status, message,
        {"step": h, "window": problem.window, "grid_points": int(levels[0]["grid_points"]), "error_estimate": float(error),
         "refinements": refinement, "backend": backend},
        started,
    )


def dynamics_result(model, data, training, arrays, levels, times, curves, teacher, status, message, info, started) -> Result:
    """The :class:`dmft.Result` of a dynamics solve: ``arrays`` plus the spectral curves of the
    ``h`` and ``2h`` levels (:func:`assemble_curves`), ``info`` plus their error estimate and the
    wall time since ``started``."""
    test_loss, train_loss, curve_error = assemble_curves(
        arrays, levels[0], levels[1], spectral_indices(np.arange(times.size), curves), times.size, teacher
    )
    return Result(
        model=model,
        data=data,
        training=training,
        test_loss=test_loss,
        train_loss=train_loss,
        method="dmft",
        arrays=arrays,
        time=times,
        status=status,
        message=message,
        info={**info, "curves_error_estimate": curve_error, "wall_time_s": _time.perf_counter() - started},
    )


class _Problem:
    """Parameters of one solve, the grid design and one integration on a grid."""

    def __init__(self, model, data, training, spectrum):
        self.c = spectrum
        self.K = spectrum.size
        self.s0 = training.start(data)
        self.beta = model.inverse_temperature
        self.gamma = training.prior_precision
        self.nu = training.chain_speed
        self.J2 = training.noise_variance
        self.T = training.time
        self.rtol = training.rtol
        self.save_at = training.save_at
        self.teacher = data if isinstance(data, SpikedTeacher) else None
        # memory window: the kernels are bounded by A e^{-gamma (t-u)/2}, A = K nu/2 + nu^2 J^2
        self.window = memory_window(self.T, self.gamma, self.K * self.nu / 2 + self.nu**2 * self.J2, self.rtol)
        self.spectral_window = memory_window(self.T, self.gamma, self.K * self.nu / 2 + self.nu**2 * self.J2, 100 * self.rtol)

    def initial_step(self) -> float:
        """``h`` such that ``(h r)^3.4 ~ rtol`` with ``r`` the chain's fastest rate,
        ``nu (1/beta + 2J + theta c_1 + K)`` (calibrated on the cases of the tests)."""
        rate = self.nu * (1 / self.beta + 2 * math.sqrt(self.J2) + self.c[0] / self.gamma + self.K) + self.gamma
        return min(0.35 * (self.rtol / 1e-4) ** (1 / 3.4) / rate * 2, self.T / 8)

    def grid(self, h: float):
        return report_grid(self.T, self.save_at, h)

    def integrate(self, h: float, integrate, curves: str) -> list[dict]:
        """Integrations on the grid of :meth:`grid` at ``h`` and on its every second and every
        fourth point (the grids ``h``, ``2h``, ``4h`` of the Richardson extrapolation); the two
        coarser ones also give the spectral learning curves (``curves``: at ``"all"`` report times,
        the ``"final"`` one, or ``"none"``) on the grids ``h`` and ``2h``."""
        t, report = self.grid(h)
        spectral = spectral_indices(report, curves)
        return [
            self._integrate_on(t[:: 2**k], report // 2**k, integrate, spectral // 2**k if k < 2 else spectral[:0])
            for k in range(3)
        ]

    def _integrate_on(self, t, report, integrate, spectral) -> dict:
        first = np.searchsorted(t, t - self.window - 1e-12 * max(1.0, self.T))
        band = np.arange(t.size) - first
        theta = -np.expm1(-self.gamma * t / 2) / self.gamma
        s_all, kappa, Q, R, status, failed_at, Qwin, Rwin = integrate(
            t, band.astype(np.int64), int(band.max()), report.astype(np.int64), self.c, self.s0, theta,
            self.nu, self.beta, self.gamma, self.J2, spectral.astype(np.int64),
        )
        if status != 0:
            raise DynamicsDivergenceError("the two-time equations", t[failed_at], "step", float(t[1] - t[0]))
        curves = self._curves(t, band, theta, s_all, spectral, Qwin, Rwin)
        s = s_all[report]
        # beyond the memory window the bulk has decorrelated (its correlations carry the same
        # e^{-gamma lag/2} that sets the window): Q = sum_a s_a(t) s_a(t'), R = 0 there
        far = np.isnan(Q)
        Q[far] = (s @ s.T)[far]
        R[np.isnan(R)] = 0.0
        return {"times": t[report], "s": s, "kappa": kappa[report], "Q": Q, "R": R, "grid_points": t.size, **curves}

    def _curves(self, t, band, theta, s_all, spectral, Qwin, Rwin) -> dict:
        """Spectral learning curves at the grid indices ``spectral`` from the ring copies."""
        B1 = Qwin.shape[1] if Qwin.ndim == 3 else 1
        windows = []
        for j, i in enumerate(spectral):
            # the probe's memory carries e^{-gamma (t-u)/2} too; its curves need rtol, not rtol/100
            nb = min(band[i], i - int(np.searchsorted(t, t[i] - self.spectral_window - 1e-12)))
            idx = np.arange(i - nb, i + 1)
            lag = idx[:, None] - idx[None, :]
            later = np.maximum(idx[:, None], idx[None, :])
            Q = np.where(lag >= 0, Qwin[j][idx[:, None] % B1, np.abs(lag)], Qwin[j][idx[None, :] % B1, np.abs(lag)])
            R = np.where(lag >= 0, Rwin[j][later % B1, np.maximum(lag, 0)], 0.0)
            w = trapezoid(t[idx])
            Gam = self.nu * R * w[None, :]
            windows.append((i, idx, Q - s_all[idx] @ s_all[idx].T, Gam, w))
        return spectral_curves(windows, t, theta, s_all, self.c, self.beta, self.gamma, self.J2, self.teacher)


def report_grid(T: float, save_at, h: float, extra_knots=()):
    """Grid times (piecewise uniform between the report knots ``0, save_at..., T``, each interval a
    multiple of 4 steps of at most ``h``, so that every second and every fourth point form the
    coarser grids of the extrapolation) and the report indices (``save_at``, or up to
    :data:`DEFAULT_REPORTS` grid points on all three grids). ``extra_knots``: further grid points
    (times where the solution is not smooth)."""
    knots = np.unique(np.concatenate([[0.0], save_at if save_at is not None else [], extra_knots, [T]]))
    pieces = [np.zeros(1)]
    knot_index = [0]
    for left, right in zip(knots[:-1], knots[1:]):
        count = 4 * max(1, math.ceil((right - left) / (4 * h) - 1e-9))
        pieces.append(left + (right - left) * np.arange(1, count + 1) / count)
        knot_index.append(knot_index[-1] + count)
    t = np.concatenate(pieces)
    if save_at is not None:
        report = np.asarray([knot_index[int(np.searchsorted(knots, v))] for v in save_at])
    else:
        every = max(1, math.ceil((t.size - 1) / (DEFAULT_REPORTS - 1)))
        every = 4 * math.ceil(every / 4)
        report = np.arange(0, t.size, every)
        if report[-1] != t.size - 1:
            report = np.append(report, t.size - 1)
    return t, report


CURVE_CHOICES = ("all", "final", "none")
CURVE_NAMES = ("top_eigenvalue", "top_overlap", "equilibrium_multiplier", "condensed_fraction", "train_loss", "forward_kl", "reverse_kl")


def spectral_indices(report: np.ndarray, curves: str) -> np.ndarray:
    """The report indices at which the spectral curves are computed."""
    if curves == "all":
        return report.copy()
    if curves == "final":
        return report[-1:].copy()
    return report[:0].copy()


def trapezoid(nodes: np.ndarray) -> np.ndarray:
    """Trapezoidal weights on ``nodes`` (ends: half their interval)."""
    w = np.zeros(nodes.size)
    if nodes.size > 1:
        w[1:-1] = (nodes[2:] - nodes[:-2]) / 2
        w[0] = (nodes[1] - nodes[0]) / 2
        w[-1] = (nodes[-1] - nodes[-2]) / 2
    return w


def spectral_curves(windows, t, theta, s_all, c, beta, gamma, J2, teacher) -> dict:
    """Top eigenvalue, its overlap and the learning curves (:mod:`._boltzmann_spectrum`) for each
    window ``(i, idx, Qb, Gam, w)`` (grid index, window indices, bulk correlation, response matrix,
    weights). Returns ``{name: (len(windows),)}``; at ``t = 0`` (no window) ``W = B(0)``."""
    from threadpoolctl import threadpool_limits

    from ._boltzmann_spectrum import learning_curves, resolvent_function, top_outlier

    # the dense solves are a few hundred unknowns: one BLAS thread is fastest, and on shared cores
    # more threads oversubscribe them (measured 60x slower on the 2-core development machine)
    with threadpool_limits(limits=1, user_api="blas"):
        return _spectral_curves(windows, t, theta, s_all, c, beta, gamma, J2, teacher, resolvent_function, learning_curves, top_outlier)


def _spectral_curves(windows, t, theta, s_all, c, beta, gamma, J2, teacher, resolvent_function, learning_curves, top_outlier):
    K = c.size
    edge = 2 * math.sqrt(J2)
    out = {name: np.full(len(windows), np.nan) for name in CURVE_NAMES}
    guess = None
    history = []  # (time, top eigenvalue) of the last two report times: a linear guess for the next
    for j, (i, idx, Qb, Gam, w) in enumerate(windows):
        if len(history) == 2 and history[1][0] > history[0][0]:
            (t0, v0), (t1, v1) = history
            guess = v1 + (v1 - v0) * (t[i] - t1) / (t1 - t0)
        e = np.exp(-gamma * (t[i] - t[idx]) / 2)
        s = s_all[idx]
        W_data = theta[i] * c - (K / 2) * ((w * e) @ s**2)
        if idx.size == 1:
            top, overlaps = edge, np.zeros(K)
        else:
            resolvent = resolvent_function(J2, theta[i], c, s, e, w, Qb, Gam)
            ceiling = edge + theta[i] * c[0] + 1.0  # ||W|| <= 2J + theta c_1: the memory is negative
            top, overlaps = top_outlier(resolvent, edge, ceiling, guess)
        guess = top
        history = (history + [(t[i], top)])[-2:] if top > edge else []
        values = learning_curves(top, overlaps[0], W_data, c, beta, J2, teacher)
        out["top_eigenvalue"][j] = top
        out["top_overlap"][j] = overlaps[0]
        for name, value in values.items():
            if name in out:
                out[name][j] = value
    return out


def assemble_curves(arrays, mid, coarse, positions, count, teacher):
    """Put the spectral curves of the ``h`` and ``2h`` grids, extrapolated, into ``arrays`` (NaN
    at report times without them); returns ``(test_loss, train_loss, error estimate)``. The test
    loss is the forward KL from the teacher, or the training NLL without one."""
    error = 0.0
    for name in CURVE_NAMES:
        if name in ("forward_kl", "reverse_kl") and teacher is None:
            continue
        full = np.full(count, np.nan)
        extrapolated = mid[name] + (mid[name] - coarse[name]) / 3
        full[positions] = extrapolated
        if positions.size:
            error = max(error, float(np.max(np.abs(mid[name] - coarse[name]))) / 3)
        if name != "train_loss":
            arrays[name] = full
        else:
            train = full
    test = arrays["forward_kl"] if teacher is not None else train
    return test.copy(), train, error


def memory_window(T: float, gamma: float, amplitude: float, rtol: float) -> float:
    """``L`` such that kernels bounded by ``amplitude e^{-gamma (t-u)/2}`` integrate to
    ``epsilon = rtol/100`` beyond it: ``L = (2/gamma) ln(2 amplitude / (gamma epsilon))`` (at most ``T``)."""
    epsilon = rtol / 100
    return min(T, max(2 / gamma * math.log(max(2 * amplitude / gamma, 1.0) / epsilon), 0.0))


def _richardson(levels, problem):
    """Extrapolate ``h`` and ``2h`` (``y1 = y_h + (y_h - y_2h)/3``) and estimate its error from
    the same extrapolation one level coarser."""
    fine, mid, coarse = levels
    # the coarser grids report at the same times (their grids contain the report points)
    values, error = {}, 0.0
    kappa_scale = max(float(np.max(np.abs(fine["kappa"]))), 1e-300)
    for name in ("s", "kappa", "Q", "R"):
        y1 = fine[name] + (fine[name] - mid[name]) / 3
        y1_coarse = mid[name] + (mid[name] - coarse[name]) / 3
        values[name] = y1
        scale = kappa_scale if name == "kappa" else 1.0
        error = max(error, float(np.max(np.abs(y1 - y1_coarse))) / (2**EXTRAPOLATED_ORDER - 1) / scale)
    return values, error
