"""Adaptive gradient flow of the deep-network DMFT: a variable-step BDF3 on a self-chosen time grid.

The network solvers (:mod:`dmft.solvers.deep`, :mod:`~dmft.solvers.residual`,
:mod:`~dmft.solvers.infinite_depth`) solve the discrete DMFT for any lower-triangular weight matrix
``w`` (:class:`dmft.solvers._network.TimeGrid`): the equations of gradient descent with ``eta (C)_<``
replaced by ``w o C``. Any linear multistep rule applied to the finite network's gradient flow,
``theta' = grad``, sums to ``theta(t_i) = theta(0) + sum_{j <= i} w[i, j] grad(t_j)`` for some such ``w``,
and the derivation of the DMFT holds for it unchanged; so the DMFT of the rule is a discretisation of
the continuous-time DMFT of the same order (docs/continuous_time.md). A diagonal ``w[i, i] > 0``
(an implicit rule) makes every row implicit (:func:`dmft.solvers._network.solve_row`).

The rule is the variable-step backward differentiation formula of order 3
(:meth:`~dmft.solvers._network.TimeGrid.set_bdf_step`; trapezoidal first step, BDF2 second): stable on
the negative real axis at any step (gradient flows have real spectra: the Hessian is symmetric), so the
step is limited by accuracy, not by the largest curvature, and grows geometrically once the curves
are slow: a few hundred rows reach time 1e4. It damps the stiff components (the trapezoidal rule,
A-stable but not L-stable, leaves them ringing with alternating signs in the response functions,
which spoils the prediction of the next row), and its third order needs about half the rows of a
second-order rule at ``rtol = 1e-4``. Variable-step BDF3 is stable for step ratios below 2.55 (Li &
Liao 2022); the steps here grow by at most 2.

:func:`integrate` chooses the steps. After each implicit row it estimates the local error of the
equal-time quantities ``y`` (the losses and the backward-field variances ``C_g(t, t)``) by Milne's
device: the cubic extrapolation ``y_p`` of the last four rows has local error
``-y P / 24`` with ``P = prod_{m=0}^{3} (t_i - t_{i-1-m})``, BDF3 ``y Q / 24`` with
``Q = prod_{m=1}^{3} (t_i - t_{i-m}) / sum_{m=1}^{3} 1 / (t_i - t_{i-m})``, so
``err = |y - y_p| Q / (Q + P)``. A step is accepted when ``err <= SAFETY rtol |y| max(Delta / t, 0.01)``
for every monitored quantity (error per unit of relative time: the error then accumulates to about
``rtol`` over many decades of time; calibrated: the errors of the losses measured against
``rtol = 1e-6`` runs are 0.1-0.4 ``rtol`` for full batch and population flows, depths 1-3, power-law
data) and the next step is ``Delta min(2, max(1/5, 0.9 (allowed / err)^{1/3}))``; otherwise the row is
recomputed with a shorter step. The curves are reported at ``training.save_at`` by shape-preserving
cubic Hermite interpolation of the grid values (:func:`shape_preserving`: spline slopes, error
``O(Delta^4)``, the method's order, limited so that the interpolant is monotone where the grid values
are: no overshoot below zero or above a non-increasing train loss) or on the grid itself.

Absolute error floor: the step control measures the losses relative to
``max(|y|, SCALE_FLOOR max_so_far |y|)`` (``SCALE_FLOOR = 1e-3``), and the implicit rows are converged
to ``ROW_TOLERANCE_FACTOR rtol`` relative to each array's scale floored at ``ROW_SCALE_FLOOR = 1e-8``
of its largest diagonal (:mod:`dmft.solvers._network`). A loss that decays to zero (noise 0, or the
train loss when ``alpha < 1``) is therefore accurate to about ``rtol`` relative down to
``1e-3`` of its largest value, and to an absolute ``~1e-2 rtol 1e-8`` (``1e-14`` at ``rtol = 1e-4``)
times its largest value below that: the sign of the losses and the monotone decrease of the train
loss hold to that floor (measured at time 1e4, depths 1-3: negative parts below 1e-17).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import DIVERGENCE_FACTOR, DivergenceError
from ._data_side import packed_row
from ._network import SCALE_FLOOR, RowSolveError, check_memory, solve_row

__all__ = ["integrate", "replay", "FlowRun", "flow_divergence", "shape_preserving", "ORDER", "SAFETY"]

# Order of the backward differentiation formula.
ORDER = 3
# Fraction of rtol granted to the local error per unit of relative time (module docstring).
SAFETY = 1.0
# First step: INITIAL_STEP_FACTOR * sqrt(rtol) (the start-up rows are taken without error control
# at this step; the dynamics of these models at t = 0 has time scales of 0.05-1).
INITIAL_STEP_FACTOR = 0.1
# A step shorter than MIN_RELATIVE_STEP * t is allowed the error of one that long: below that the
# estimate would compete with the convergence tolerance of the rows and the step could shrink
# without end.
MIN_RELATIVE_STEP = 0.01
MAX_GROWTH, MAX_SHRINK = 2.0, 0.2
# Convergence of the implicit rows, relative to rtol (their error adds to the local error).
ROW_TOLERANCE_FACTOR = 1e-2
# Rows near the diagonal predicted along the diagonal lines (their entries follow the local BDF
# weights, which change with the step); the rest is extrapolated at a fixed earlier time.
BAND = 12


@dataclass
class FlowRun:
    """What :func:`integrate` returns: ``times`` rows on the grid, the curves at ``report_time``
    (``(test, train, (bias, init_variance, data_variance))``), ``info`` and the accuracy ``checks``."""

    times: int
    report_time: np.ndarray
    curves: tuple
    info: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)


def flow_divergence(what: str, time_reached: float, row: int) -> DivergenceError:
    """A :class:`dmft.DivergenceError` naming the flow time reached (``error.time``)."""
    error = DivergenceError.__new__(DivergenceError)
    FloatingPointError.__init__(
        error,
        f"{what} diverged (non-finite or overflowing) at flow time {time_reached:.6g} (grid row {row}). "
        "The gradient flow of these models cannot blow up at finite time: this is a numerical "
        "failure; tighten `rtol` and report the case",
    )
    error.step, error.learning_rate, error.time = row, None, time_reached
    return error


def _milne(times: np.ndarray, t: int, order: int) -> tuple[float, np.ndarray]:
    """For row ``t`` computed by BDF-``order``: the weights of the polynomial extrapolation of degree
    ``order`` from rows ``t-1-order .. t-1`` to ``t_t``, and the factor ``Q / (Q + P)`` that turns the
    difference (BDF value - extrapolation) into the BDF local error (module docstring)."""
    nodes = times[t - 1 - order : t]
    target = times[t]
    weights = _lagrange(nodes, target)
    previous = target - times[t - order : t]  # t_t - t_{t-m}, m = 1..order
    slope0 = float(np.sum(1.0 / previous))
    q = float(np.prod(previous)) / slope0
    p = float(np.prod(target - nodes))
    return q / (q + p), weights


def _lagrange(nodes: np.ndarray, target: float) -> np.ndarray:
    """Weights of the polynomial through ``nodes`` evaluated at ``target``."""
    weights = np.ones(nodes.size)
    for j in range(nodes.size):
        for k in range(nodes.size):
            if k != j:
                weights[j] *= (target - nodes[k]) / (nodes[j] - nodes[k])
    return weights


def shape_preserving(x: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Cubic Hermite interpolation of ``(x, y)`` at ``at`` that is monotone on every interval where
    the data is (Fritsch & Carlson 1980; Hyman 1983): the node slopes are those of the not-a-knot
    cubic spline (error ``O(Delta^4)``, the order of the rule), limited to the sign of the adjacent
    secants and to three times the smaller of them, and set to 0 at a discrete extremum. Between two
    grid values the interpolant then stays between them: a non-negative, non-increasing grid curve
    (the train loss of a full-batch flow) stays so at ``save_at`` over any number of decades, where a
    plain spline overshoots. The limiter is inactive where the curve is smooth and strictly monotone
    on the grid scale; at an extremum of the data the error is ``O(Delta^2)`` on its two intervals."""
    from scipy.interpolate import CubicHermiteSpline, CubicSpline

    if x.size < 3:
        return np.interp(at, x, y)
    slopes = CubicSpline(x, y)(x, 1)
    secant = np.diff(y) / np.diff(x)
    left = np.concatenate([secant[:1], secant])  # secant on the left of each node (end: its only one)
    right = np.concatenate([secant, secant[-1:]])
    sign = np.sign(left)
    same = sign * np.sign(right) > 0
    bound = 3.0 * np.minimum(np.abs(left), np.abs(right))
    limited = np.where(same, sign * np.minimum(np.maximum(sign * slopes, 0.0), bound), 0.0)
    return CubicHermiteSpline(x, y, limited)(at)


def _predict_row(solver, t: int) -> None:
    """Initial guess of row ``t`` of the row state (the arrays ``solver.row_state()``): the entries
    near the diagonal (``s > t - BAND - 4``) copied along the diagonal lines from row ``t - 1``
    (``X[t, t-o] = X[t-1, t-1-o]``: their structure follows the local BDF weights, which an
    extrapolation across changing steps gets badly wrong); the others extrapolated quadratically in
    the later time at a fixed earlier time from rows ``t-3 .. t-1``."""
    times = solver.grid.time
    band = min(BAND + 4, t)
    far = t + 1 - band  # columns s < far are far from the diagonal
    for array in solver.row_state():
        new = packed_row(array, t)
        previous = packed_row(array, t - 1)
        new[far:] = previous[far - 1 :]
        if far > 0 and t >= BAND + 7:  # rows t-3..t-1 are all smooth at these columns
            weights = _lagrange(times[t - 3 : t], times[t])
            new[:far] = sum(w * packed_row(array, t - 3 + k, far) for k, w in enumerate(weights))
        else:
            new[:far] = previous[:far]


def integrate(solver, training, *, noise: float, progress: bool, label: str, bytes_per_time_squared: float) -> FlowRun:
    """Integrate the flow of ``solver`` to ``training.time`` (module docstring).

    ``solver`` provides ``grid`` (a :class:`~dmft.solvers._network.TimeGrid`), ``grow(times)``,
    ``sweep(t)``, ``row_state()``, ``equal_time(t)`` and ``input`` (the
    :class:`~dmft.solvers._data_side.InputSide`).

    Raises :class:`dmft.DivergenceError` (with ``.time``) on a non-finite or exploding loss and
    :class:`MemoryError` when the grid outgrows the memory.
    """
    rtol, end = training.rtol, training.time
    grid = solver.grid
    row_tolerance = ROW_TOLERANCE_FACTOR * rtol
    solver.grow(max(solver.capacity, 16))
    solver.sweep(0)  # t = 0: no memory, exact
    history = [solver.equal_time(0)]
    largest = np.abs(history[0])
    initial_loss = history[0][0]
    step = min(INITIAL_STEP_FACTOR * math.sqrt(rtol), end / 8.0)
    i = 0
    rejected = failed_rows = sweeps_total = 0
    max_sweeps_row = 0
    error_sum = 0.0  # accumulated local error estimates, relative (an estimate of the global error)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=end, desc=label, unit="time")
    try:
        while grid.time[i] < end * (1.0 - 1e-14):
            remaining = end - grid.time[i]
            step = min(step, remaining)
            if remaining - step < 1e-3 * step:
                step = remaining
            if step < 1e-13 * max(grid.time[i], 1.0):
                raise flow_divergence("the step size of the DMFT flow (underflow)", grid.time[i], i)
            if i + 2 > solver.capacity:
                capacity = int(1.5 * solver.capacity) + 8
                check_memory(bytes_per_time_squared, capacity, what=f"the DMFT flow grid at time {grid.time[i]:.4g}",
                             hint="Loosen `rtol`, or shorten `time`")  # fmt: skip
                solver.grow(capacity)
            t = i + 1
            order = grid.set_bdf_step(t, step, ORDER)
            _predict_row(solver, t)
            try:
                sweeps = solve_row(solver, t, tolerance=row_tolerance)
            except RowSolveError:
                failed_rows += 1
                step *= 0.3
                continue
            y = solver.equal_time(t)
            if not np.all(np.isfinite(y)) or y[0] > DIVERGENCE_FACTOR * initial_loss:
                raise flow_divergence("DMFT loss", grid.time[t], t)
            scale = np.maximum(np.abs(y), SCALE_FLOOR * np.maximum(largest, np.abs(y)))
            controlled = order == ORDER and t > ORDER + 1
            if controlled:
                factor, weights = _milne(grid.time, t, order)
                predicted = weights @ np.array(history[-order - 1 :])
                error = factor * np.abs(y - predicted) / scale
                allowed = SAFETY * rtol * max(step / grid.time[t], MIN_RELATIVE_STEP)
                ratio = float(np.max(error)) / allowed
            else:  # start-up rows at the initial step
                ratio, error = 0.0, np.zeros_like(y)
            if ratio > 1.0:
                rejected += 1
                step *= max(MAX_SHRINK, 0.9 * ratio ** (-1.0 / ORDER))
                continue
            sweeps_total += sweeps
            max_sweeps_row = max(max_sweeps_row, sweeps)
            error_sum += float(np.max(error))
            history.append(y)
            largest = np.maximum(largest, np.abs(y))
            i = t
            if bar is not None:
                bar.update(step)
            if controlled:
                step *= min(MAX_GROWTH, max(MAX_SHRINK, 0.9 * ratio ** (-1.0 / ORDER)) if ratio > 0 else MAX_GROWTH)
    finally:
        if bar is not None:
            bar.close()
    times = i + 1
    grid_time = grid.time[:times].copy()
    side = solver.input
    parts = [side.bias[:times], side.init_variance[:times], side.data_variance[:times]]
    train = side.train_loss(times)
    if training.save_at is None:
        report_time = grid_time
    else:
        report_time = np.asarray(training.save_at, dtype=float)
        parts = [shape_preserving(grid_time, p, report_time) for p in parts]
        train = shape_preserving(grid_time, train, report_time)
    parts = [np.array(p, dtype=float) for p in parts]
    test = parts[0] + parts[1] + parts[2] + noise**2
    info = {
        "grid_points": times,
        "rejected_steps": rejected,
        "failed_rows": failed_rows,
        "sweeps": sweeps_total,
        "max_sweeps_per_row": max_sweeps_row,
        "last_step": float(grid_time[-1] - grid_time[-2]) if times > 1 else 0.0,
        "error_estimate": error_sum,
        "rtol": rtol,
    }
    # The accumulated local estimates are ~ SAFETY rtol ln(time / first step) by construction;
    # more than rtol (times a margin for that logarithm) means the control did not hold.
    threshold = rtol * max(1.0, SAFETY * math.log(max(end / grid_time[1], math.e)))
    checks = [("flow_error_estimate", error_sum, threshold, "tighten `rtol` (smaller steps)")]
    return FlowRun(times=times, report_time=report_time, curves=(test, train, parts), info=info, checks=checks)


def replay(solver, times, rtol: float, predict=None) -> int:
    """Solve ``solver`` on the prescribed grid ``times`` with the rule of :func:`integrate` (no step
    control): for comparisons on one grid, e.g. the layer-time error estimate of the infinite-depth
    solver. ``predict(t)`` (default: :func:`_predict_row`) sets the first guess of row ``t``.
    Returns the number of sweeps."""
    times = np.asarray(times, dtype=float)
    solver.grow(times.size)
    solver.sweep(0)
    sweeps = 1
    for t in range(1, times.size):
        solver.grid.set_bdf_step(t, times[t] - times[t - 1], ORDER)
        (predict or (lambda row: _predict_row(solver, row)))(t)
        sweeps += solve_row(solver, t, tolerance=ROW_TOLERANCE_FACTOR * rtol)
    return sweeps
