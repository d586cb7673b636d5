"""How the model is trained: full-batch gradient descent, online SGD, or their gradient flow.

Discrete rules count time in steps (``t = 0 .. steps``); a learning rate is a number or a schedule
(a 1-D array of ``steps`` positive rates, entry ``t`` moving the parameters from step ``t`` to
``t + 1``; see :mod:`dmft.schedules`). :class:`GradientFlow` is the continuous-time limit
``learning_rate -> 0`` at fixed ``time = learning_rate * steps`` (THEORY section "Continuous time",
``docs/continuous_time.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Real

import numpy as np

from ._validate import positive, positive_int

__all__ = ["GradientDescent", "OnlineSGD", "GradientFlow", "check_compatible", "TRAININGS"]


def _learning_rate(value, steps: int):
    """A positive float, or a tuple of ``steps`` positive floats (a schedule); the error names
    ``learning_rate``."""
    if isinstance(value, Real) and not isinstance(value, bool):
        return positive("learning_rate", value)
    try:
        rates = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            f"`learning_rate` must be a positive number or a 1-D array of {steps} positive rates, "
            f"got {value!r}"
        ) from None
    if rates.ndim == 0:
        return positive("learning_rate", float(rates))
    if rates.ndim != 1:
        raise ValueError(f"`learning_rate` as a schedule must be 1-D, got shape {rates.shape}")
    if rates.size != steps:
        raise ValueError(
            f"`learning_rate` as a schedule needs one rate per step: length {steps} (= steps), "
            f"got {rates.size}"
        )
    if not np.all(np.isfinite(rates)):
        bad = int(np.flatnonzero(~np.isfinite(rates))[0])
        raise ValueError(f"`learning_rate` must be finite, got {rates[bad]} at step {bad}")
    if np.any(rates <= 0):
        bad = int(np.flatnonzero(rates <= 0)[0])
        raise ValueError(f"`learning_rate` must be positive at every step, got {rates[bad]} at step {bad}")
    return tuple(float(r) for r in rates)


class _Discrete:
    """What the discrete rules share: ``rates`` (one per step) and the schedule test."""

    @property
    def rates(self) -> np.ndarray:
        """The learning rate of every step, ``(steps,)`` (entry ``t``: step ``t -> t + 1``)."""
        if isinstance(self.learning_rate, tuple):
            return np.asarray(self.learning_rate)
        return np.full(self.steps, self.learning_rate)

    @property
    def is_schedule(self) -> bool:
        """Whether ``learning_rate`` was given as one rate per step."""
        return isinstance(self.learning_rate, tuple)

    @property
    def time(self) -> np.ndarray:
        """The time of every curve entry: the step index ``0 .. steps``."""
        return np.arange(self.steps + 1, dtype=float)

    def rate_at(self, step: int) -> float:
        """The rate of step ``step`` (the last one past the end): for messages."""
        if isinstance(self.learning_rate, tuple):
            return self.learning_rate[min(max(step, 0), self.steps - 1)]
        return self.learning_rate


@dataclass(frozen=True)
class GradientDescent(_Discrete):
    """Full-batch gradient descent on the same ``P = alpha D`` examples at every step.

    Parameters
    ----------
    learning_rate : ``eta > 0``, or a schedule: a 1-D array of ``steps`` positive rates (stored as
        a tuple; see :mod:`dmft.schedules`).
    steps : number of steps ``T >= 1``; curves have ``T + 1`` entries (index = step).
    """

    learning_rate: float | tuple[float, ...] = 0.05
    steps: int = 100

    def __post_init__(self):
        object.__setattr__(self, "steps", positive_int("steps", self.steps))
        object.__setattr__(self, "learning_rate", _learning_rate(self.learning_rate, self.steps))

    replace = replace


@dataclass(frozen=True)
class OnlineSGD(_Discrete):
    """Online SGD: a fresh batch of ``batch_ratio * D`` examples at every step.

    The train loss reported at step ``t`` is the loss on the batch drawn at that step, before
    the update (its mean is the test loss plus nothing: the batch is fresh). ``learning_rate`` is a
    number or a schedule, as for :class:`GradientDescent`.
    """

    learning_rate: float | tuple[float, ...] = 0.05
    steps: int = 100
    batch_ratio: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "steps", positive_int("steps", self.steps))
        object.__setattr__(self, "learning_rate", _learning_rate(self.learning_rate, self.steps))
        object.__setattr__(self, "batch_ratio", positive("batch_ratio", self.batch_ratio))

    replace = replace


@dataclass(frozen=True)
class GradientFlow:
    """Gradient flow: ``learning_rate -> 0`` at fixed ``time = learning_rate * steps``.

    With data of a given ``alpha`` it is the limit of :class:`GradientDescent`; with ``alpha=None``
    the population gradient flow, the limit of :class:`OnlineSGD` (whose noise, ``O(eta^2)`` per
    step, vanishes). The solver chooses its own time grid with local error control.

    Parameters
    ----------
    time : the flow time to reach, ``0 < time < inf``.
    save_at : the times at which to report the curves (increasing, within ``[0, time]``; stored as
        a tuple), or ``None``: the solver's own grid.
    rtol : target relative accuracy of the losses, ``0 < rtol < 1``.

    Error floor (deep networks, :mod:`dmft.solvers._flow`): the losses are held to ``rtol`` relative
    down to ``1e-3`` of their largest value, and below that to an absolute ``~1e-10 rtol`` of it
    (``1e-14`` at ``rtol = 1e-4``; the convergence floor of the implicit rows). To that floor the
    losses are non-negative and the full-batch train loss is non-increasing, also at ``save_at``
    (shape-preserving interpolation). docs/continuous_time.md, "save_at".
    """

    time: float = 100.0
    save_at: tuple[float, ...] | None = None
    rtol: float = 1e-4

    def __post_init__(self):
        object.__setattr__(self, "time", positive("time", self.time))
        rtol = positive("rtol", self.rtol)
        if rtol >= 1:
            raise ValueError(f"`rtol` must lie in (0, 1), got {rtol}")
        object.__setattr__(self, "rtol", rtol)
        if self.save_at is not None:
            try:
                times = np.asarray(self.save_at, dtype=float)
            except (TypeError, ValueError):
                raise TypeError(f"`save_at` must be None or a 1-D array of times, got {self.save_at!r}") from None
            times = np.atleast_1d(times)
            if times.ndim != 1 or times.size == 0:
                raise ValueError(f"`save_at` must be a non-empty 1-D array of times, got shape {times.shape}")
            if not np.all(np.isfinite(times)):
                raise ValueError("`save_at` must be finite")
            if np.any(np.diff(times) <= 0):
                bad = int(np.flatnonzero(np.diff(times) <= 0)[0])
                raise ValueError(
                    f"`save_at` must be strictly increasing, got {times[bad]} then {times[bad + 1]}"
                )
            if times[0] < 0 or times[-1] > self.time:
                raise ValueError(
                    f"`save_at` must lie within [0, time] = [0, {self.time:g}], "
                    f"got [{times[0]:g}, {times[-1]:g}]"
                )
            object.__setattr__(self, "save_at", tuple(float(t) for t in times))

    replace = replace


TRAININGS = (GradientDescent, OnlineSGD, GradientFlow)


def check_compatible(data, training) -> None:
    """Raise a clear error when ``data`` and ``training`` do not go together.

    Full-batch gradient descent needs a data set size (``alpha``); online SGD draws fresh
    batches, so its data must have ``alpha=None``; gradient flow takes either (full batch, or the
    population flow with ``alpha=None``).
    """
    if not isinstance(training, TRAININGS):
        hint = ""
        if isinstance(data, TRAININGS):
            hint = " (the arguments are (model, data, training), in that order)"
        raise TypeError(
            "`training` must be dmft.GradientDescent, dmft.OnlineSGD or dmft.GradientFlow, "
            f"got {type(training).__name__}{hint}"
        )
    alpha = getattr(data, "alpha", math.nan)
    if isinstance(training, GradientDescent) and alpha is None:
        raise ValueError(
            "GradientDescent trains on a fixed data set: give GaussianData an `alpha` (= P / D); "
            "alpha=None is for OnlineSGD and the population GradientFlow"
        )
    if isinstance(training, OnlineSGD) and alpha is not None:
        raise ValueError(
            "OnlineSGD draws a fresh batch every step (size set by `batch_ratio`): "
            f"use GaussianData(alpha=None, ...), got alpha={alpha}"
        )
