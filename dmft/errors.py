"""Exceptions raised by dmft and finite_size."""

from __future__ import annotations

__all__ = ["DivergenceError", "UnsupportedError"]


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


class UnsupportedError(ValueError):
    """The combination of model, data and training is not supported by a solver."""
