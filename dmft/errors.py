"""Exceptions raised by dmft and finite_size."""

from __future__ import annotations

__all__ = [
    "DivergenceError",
    "NumericalError",
    "UnstableLearningRateError",
    "UnsupportedError",
    "check_divergence",
    "DIVERGENCE_FACTOR",
]


class DivergenceError(FloatingPointError):
    """A run produced a non-finite or overflowing loss.

    The message names the step at which it happened and the learning rate to lower.
    """

    def __init__(self, what: str, step: int, learning_rate: float):
        self.step = step
        self.learning_rate = learning_rate
        super().__init__(
            f"{what} diverged (non-finite or overflowing) at step {step}; "
            f"lower `learning_rate` (got {learning_rate:g})"
        )


class NumericalError(ArithmeticError):
    """A solver's arithmetic failed while the dynamics itself stayed bounded (a NaN from finite
    values, a negative variance beyond round-off, coordinates that lost orthonormality).

    Not a divergence: lowering the learning rate does not help. ``step`` is where it happened
    (``None`` if not tied to a step); the message says what failed and what to try.
    """

    def __init__(self, message: str, step: int | None = None):
        self.step = step
        super().__init__(message)


class UnstableLearningRateError(DivergenceError, ValueError):
    """The learning rate exceeds a stability bound known in closed form: the run would diverge.

    Raised before anything runs; it is both a bad input (``ValueError``) and a diverging run
    (:class:`DivergenceError`, so sweeps record the point as diverged and go on).
    """

    def __init__(self, message: str, learning_rate: float, bound: float):
        self.step = None
        self.learning_rate = learning_rate
        self.bound = bound
        ValueError.__init__(self, message)


class UnsupportedError(ValueError):
    """The combination of model, data and training is not supported by a solver."""


# A stable gradient-descent run of a linear model can overshoot transiently (edge of stability),
# but not by eight orders of magnitude: past that factor over the initial loss it has diverged.
DIVERGENCE_FACTOR = 1e8


def check_divergence(loss, initial_loss, step: int, learning_rate: float, what: str = "loss") -> None:
    """Raise :class:`DivergenceError` if any entry of ``loss`` is non-finite or exceeds
    ``DIVERGENCE_FACTOR`` times the corresponding ``initial_loss``."""
    import numpy as np

    loss = np.asarray(loss, dtype=float)
    if not np.all(np.isfinite(loss)) or np.any(loss > DIVERGENCE_FACTOR * np.asarray(initial_loss)):
        raise DivergenceError(what, step, learning_rate)
