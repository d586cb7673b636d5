"""What the deep-network DMFT solvers share (plain, residual, infinite depth; THEORY.md 2.1, 2.2).

* :class:`TimeGrid`: the times of the rows and the weight matrix ``w`` that replaces the learning
  rate in every equation (``eta (C)_<`` -> ``w o C``; ``eta gamma0 S`` -> ``gamma0 w``;
  docs/continuous_time.md). Gradient descent with rates ``eta_s``: ``w[t, s] = eta_s`` for ``s < t``, no
  diagonal (exact in discrete time, one pass per row). The gradient flow: the weights of a
  variable-step BDF3 (:meth:`TimeGrid.set_bdf_step`), with a diagonal ``w[t, t] > 0``.
* :func:`solve_row`: row ``t`` of a solver when ``w[t, t] > 0``: the equal-time couplings inside each
  single-site process are solved exactly by the solvers; the couplings between processes (layers,
  input side) are iterated to a fixed point, accelerated by Anderson mixing.
* :func:`make_input_side`, :func:`check_memory`, :func:`march_steps` (the forward loop of discrete
  training with divergence checks and progress), :func:`self_consistency_threshold`; the flow driver
  lives in :mod:`dmft.solvers._flow`.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..errors import DivergenceError, DIVERGENCE_FACTOR
from ..training import GradientFlow, OnlineSGD
from ._data_side import InputSide, RowSolveError, grow_arrays, mode_shares, packed_length, packed_row, unpack

__all__ = [
    "TimeGrid",
    "RowSolveError",
    "solve_row",
    "make_input_side",
    "data_mode_of",
    "check_memory",
    "available_memory",
    "march_steps",
    "supports_gaussian_teacher",
    "check_steps",
    "self_consistency_threshold",
    "SELF_CONSISTENCY_THRESHOLD",
]


class TimeGrid:
    """Times ``t_i`` of the rows and the weight matrix ``w`` (module docstring), packed by rows
    (``weights``), with its diagonal ``d_t`` also in ``diagonal``. Grown as rows are added."""

    def __init__(self, capacity: int = 16):
        self.time = np.zeros(capacity)
        self.diagonal = np.zeros(capacity)
        self.weights = np.zeros(packed_length(capacity))

    @classmethod
    def from_rates(cls, rates) -> "TimeGrid":
        """Gradient descent with rates ``eta_s``: ``w[t, s] = eta_s`` (``s < t``), no diagonal; times =
        step index."""
        rates = np.asarray(rates, dtype=float)
        grid = cls(rates.size + 1)
        grid.time[:] = np.arange(rates.size + 1)
        for t in range(1, rates.size + 1):
            packed_row(grid.weights, t, t)[:] = rates[:t]
        return grid

    @property
    def capacity(self) -> int:
        return self.time.size

    def grow(self, times: int) -> None:
        if times > self.capacity:
            grow_arrays(self, ("weights",), ("time", "diagonal"), self.capacity, times)

    def row(self, t: int) -> np.ndarray:
        """``w[t, :t + 1]`` (a view: do not write)."""
        return packed_row(self.weights, t)

    def dense(self, times: int) -> np.ndarray:
        """``w`` on the first ``times`` rows, dense."""
        return unpack(self.weights, times, symmetric=False)

    def set_bdf_step(self, t: int, step: float, order: int) -> int:
        """Row ``t`` at ``t_t = t_{t-1} + step`` by the variable-step backward differentiation formula
        of order ``k = min(order, t)`` (the trapezoidal rule for ``t = 1``); returns ``k``.

        BDF-k: the polynomial through ``(t_{t-m}, theta_{t-m})``, ``m = 0..k``, has the slope
        ``grad(t_t)`` at ``t_t``. With ``l_m`` its Lagrange basis, ``theta_t = sum_{m>=1} a_m theta_{t-m}
        + d grad(t_t)``, ``a_m = -l_m'(t_t) / l_0'(t_t)``, ``d = 1 / l_0'(t_t)`` (``sum a_m = 1``); hence
        ``w[t, s] = sum_m a_m w[t-m, s]`` and ``w[t, t] = d``. Stable for step ratios below 2.5
        (Li & Liao 2022, variable-step BDF3); order ``k`` local error ``~ step^{k+1}``.
        """
        self.grow(t + 1)
        self.time[t] = self.time[t - 1] + step
        row = packed_row(self.weights, t)
        row[:] = 0.0
        if t == 1:  # trapezoidal start: second order from a single point
            row[:] = 0.5 * step
            self.diagonal[t] = 0.5 * step
            return 2
        k = min(order, t)
        nodes = self.time[t - k : t + 1][::-1]  # nodes[m] = t_{t-m}
        slope0 = float(np.sum(1.0 / (nodes[0] - nodes[1:])))
        for m in range(1, k + 1):
            others = [j for j in range(k + 1) if j != m]
            numerator = np.prod([nodes[0] - nodes[j] for j in others if j != 0])
            denominator = np.prod([nodes[m] - nodes[j] for j in others])
            a_m = -(numerator / denominator) / slope0
            row[: t - m + 1] += a_m * packed_row(self.weights, t - m)
        row[t] = 1.0 / slope0
        self.diagonal[t] = row[t]
        return k


# Floor of the scale of the losses in the flow's local error control (dmft.solvers._flow), relative
# to their largest value so far: below it the step control is absolute.
SCALE_FLOOR = 1e-3
# Floor of the scale of an array in the convergence test of solve_row, relative to its largest
# diagonal entry so far. It sets the absolute accuracy of quantities that decay to zero (a train
# loss that interpolates, any loss at noise 0): about ROW_TOLERANCE_FACTOR * rtol * ROW_SCALE_FLOOR
# times the largest loss (1e-14 at rtol = 1e-4). With the former floor 1e-3 (shared with the error
# control) the train loss reached -2e-9 at time 1e4 (depth 1, alpha 0.5, noise 0.5) and rose by 1e-9
# between rows; with 1e-8, -2e-18 and 6e-14, on the same grid, with 5-20 % more sweeps (measured;
# infinite depth to time 1e4: 1622 sweeps instead of 1347).
ROW_SCALE_FLOOR = 1e-8


def _anderson_coefficients(steps: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """The least-squares ``gamma`` minimising ``|residual - steps gamma|`` (``steps``: ``(N, m)``,
    ``m <= memory``), by the normal equations: ``m`` is a handful and ``N`` up to ~1e5, where a
    QR or SVD of ``steps`` (``numpy.linalg.lstsq``) costs 4-6 times more. Directions whose singular
    value is below ``1e-7`` of the largest (``1e-14`` of the Gram matrix's) are dropped, as
    ``lstsq`` with that ``rcond`` would: near convergence the columns become nearly collinear
    and those directions carry rounding, not information."""
    gram = steps.T @ steps
    gamma, *_ = np.linalg.lstsq(gram, steps.T @ residual, rcond=1e-14)
    return gamma


def solve_row(solver, t: int, *, tolerance: float, max_sweeps: int = 60, memory: int = 5) -> int:
    """Row ``t`` of ``solver`` by repeated sweeps (``solver.sweep(t)``) until its row state (row ``t``
    of the packed arrays ``solver.row_state()``: what a sweep reads before writing it) stops
    changing, with Anderson mixing of the last ``memory`` iterates. One sweep is exact when
    ``d_t = 0``. Returns the number of sweeps; raises :class:`RowSolveError` when the iteration does
    not converge to ``tolerance`` (relative to each array's scale) within ``max_sweeps``.

    Anderson (type II, Walker & Ni 2011): with ``x_k`` the state and ``f_k = G(x_k) - x_k`` the
    change a sweep makes, the next state is ``G(x_k) - sum_j gamma_j (G(x_j+1) - G(x_j))`` with
    ``gamma`` the least-squares coefficients that minimise ``|f_k - sum_j gamma_j (f_{j+1} - f_j)|``
    (each array scaled by its scale). A good first guess matters: the equations are quadratic in the
    row through the covariances, and a far-off guess can end on another root (the flow's error
    control then rejects the row); see ``_flow._predict_row``.
    """
    if solver.grid.diagonal[t] == 0.0:
        solver.sweep(t)
        return 1
    arrays = solver.row_state()
    views = [packed_row(array, t) for array in arrays]
    starts = np.cumsum([0] + [v.size for v in views])[:-1]
    sizes = np.array([v.size for v in views])
    # scale of each array: its largest entry in row t, floored at ROW_SCALE_FLOOR times its largest
    # diagonal entry so far (correlations are bounded by their diagonal, responses carry their
    # equal-time part there): a row that decays to zero (the forward fields at convergence) is then
    # converged in absolute terms
    diagonal = np.arange(t + 1) * (np.arange(t + 1) + 3) // 2
    floors = np.maximum(ROW_SCALE_FLOOR * np.abs(np.stack([array[diagonal] for array in arrays])).max(axis=1), 1e-300)
    buffer = np.empty(int(sizes.sum()))

    def gather():
        return np.concatenate(views, out=np.empty_like(buffer))

    def scatter(x):
        for v, start, size in zip(views, starts, sizes):
            v[...] = x[start : start + size]

    x = gather()
    previous = None  # (f, g) of the last sweep
    f_steps, g_steps = [], []  # f_{j+1} - f_j and G(x_{j+1}) - G(x_j), the last `memory`
    change = math.inf
    for sweep in range(1, max_sweeps + 1):
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                solver.sweep(t)
        except (FloatingPointError, ZeroDivisionError, ValueError) as error:
            raise RowSolveError(f"row {t}, sweep {sweep}: {error}") from error
        g = gather()
        scales = np.repeat(np.maximum(np.maximum.reduceat(np.abs(g), starts), floors), sizes)
        f = g - x
        change = float(np.max(np.abs(f) / scales))
        if not math.isfinite(change):
            raise RowSolveError(f"row {t}: non-finite values in sweep {sweep}")
        if change <= tolerance:
            return sweep
        if previous is not None:
            f_steps.append(f - previous[0])
            g_steps.append(g - previous[1])
            if len(f_steps) > memory:
                f_steps.pop(0)
                g_steps.pop(0)
        previous = (f, g)
        if f_steps:
            x = g - np.stack(g_steps, axis=1) @ _anderson_coefficients(np.stack(f_steps, axis=1) / scales[:, None], f / scales)
        else:
            x = g
        scatter(x)
    raise RowSolveError(f"row {t}: the implicit row did not converge in {max_sweeps} sweeps (last change {change:.2e})")


# ----------------------------------------------------------------------------------------------


def data_mode_of(data, training) -> tuple[str, float | None]:
    """``(data_mode, alpha)`` of the input side: full batch on ``data.alpha``, online SGD on the
    batch ratio, or the population flow (``GradientFlow`` with ``alpha=None``)."""
    if isinstance(training, OnlineSGD):
        return "online", training.batch_ratio
    if data.alpha is None:
        if isinstance(training, GradientFlow):
            return "population", None
        raise ValueError("GradientDescent needs `data.alpha` (= P / D)")
    return "full_batch", data.alpha


def make_input_side(model, data, training, backend: str, capacity: int) -> tuple[InputSide, float | None, str]:
    """The :class:`InputSide` of a deep-network solve, its ``alpha`` and its data mode."""
    data_mode, alpha = data_mode_of(data, training)
    spectrum = data.resolved_spectrum()
    input_side = InputSide(
        spectrum.eigenvalues,
        spectrum.teacher_variances,
        shares=mode_shares(spectrum),
        alpha=alpha,
        noise=data.noise,
        init_function_scale=1.0 / (model.richness * math.sqrt(model.width_ratio)),
        capacity=capacity,
        data_mode=data_mode,
        backend=backend,
    )
    return input_side, alpha, data_mode


def available_memory() -> float:
    """Bytes of memory available to this process (``MemAvailable`` on Linux, else physical
    memory; ``inf`` if unknown)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return math.inf


LONG_HORIZON_HINT = (
    "For long horizons use dmft.GradientFlow(time=...), whose adaptive time grid needs a few hundred "
    "times to reach time 1e4"
)


def check_memory(bytes_per_time_squared: float, times: int, *, what: str, limit: float | None = None,
                 hint: str = LONG_HORIZON_HINT) -> None:  # fmt: skip
    """Raise :class:`MemoryError` with what fits (and ``hint``) when ``times`` rows of two-time arrays
    (``bytes_per_time_squared * times^2`` bytes) exceed ``limit`` (default: 80 % of
    :func:`available_memory`). Called before allocating."""
    limit = 0.8 * available_memory() if limit is None else limit
    needed = bytes_per_time_squared * float(times) ** 2
    if needed > limit:
        fits = int(math.sqrt(limit / bytes_per_time_squared))
        raise MemoryError(
            f"{what} with {times} times needs about {needed / 1e9:.3g} GB for its two-time order "
            f"parameters (O(times^2)), more than the {limit / 1e9:.3g} GB available; about {fits} "
            f"times fit. {hint}"
        )


def march_steps(advance, input_side: InputSide, training, noise: float, progress: bool, label: str) -> None:
    """Discrete training: call ``advance(t)`` for ``t = 0..T`` and stop with
    :class:`dmft.DivergenceError` as soon as a loss is non-finite or ``DIVERGENCE_FACTOR`` times
    above its initial value (naming the step and its learning rate)."""
    iterator = range(training.steps + 1)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=label, unit="step")
    initial = None
    with np.errstate(over="ignore", invalid="ignore"):
        for t in iterator:
            advance(t)
            test = input_side.bias[t] + input_side.init_variance[t] + input_side.data_variance[t] + noise**2
            train = input_side.C_Delta[t * (t + 1) // 2 + t]
            initial = test if initial is None else initial
            for value, what in ((test, "DMFT test loss"), (train, "DMFT train loss")):
                if not math.isfinite(value) or value > DIVERGENCE_FACTOR * initial:
                    raise DivergenceError(what, t, training.rate_at(t - 1))


def supports_gaussian_teacher(model, data, training) -> str | None:
    """The reason string of the deep solvers' ``supports``: they need a Gaussian teacher."""
    if data.teacher is not None:
        return (
            "the deep-network DMFT needs a Gaussian teacher (the single-site processes are linear "
            f"in Gaussian sources); got teacher={data.teacher!r}. Use finite_size.simulate for a "
            "sparse teacher"
        )
    return None


# Self-consistency residual (relative to the largest order parameter) above which a result is
# flagged. In discrete time the forward solve and the whole-window re-evaluation compute the same
# finite sums in a different order: each entry carries a relative round-off of ~ (number of terms)
# x eps, and the triangular solves of the re-evaluation amplify it by their condition number.
# Measured: 1e-16 to 1e-14 at T = 40-800 (depths 1-3). 1e-9 leaves five decades for ill-conditioned
# (slow) dynamics and still catches any wrong equation, which shows up at O(1). The flow's implicit
# rows are converged to ROW_TOLERANCE_FACTOR rtol relative to each array (dmft.solvers._flow):
# their threshold is 10 times that.
SELF_CONSISTENCY_THRESHOLD = 1e-9


def self_consistency_threshold(training) -> float:
    """The threshold of the self-consistency residual for ``training`` (see above)."""
    if isinstance(training, GradientFlow):
        from ._flow import ROW_TOLERANCE_FACTOR

        return max(SELF_CONSISTENCY_THRESHOLD, 10.0 * ROW_TOLERANCE_FACTOR * training.rtol)
    return SELF_CONSISTENCY_THRESHOLD


def check_steps(name: str, value, steps: int) -> np.ndarray:
    """``value`` as sorted unique steps in ``0..steps`` (error naming ``name`` otherwise)."""
    array = np.unique(np.asarray(value, dtype=int).ravel())
    if array.size and (array.min() < 0 or array.max() > steps):
        raise ValueError(f"`{name}` must be steps in 0..{steps}, got {value!r}")
    return array
