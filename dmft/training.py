"""How the model is trained: full-batch gradient descent or online SGD (time = step count)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ._validate import positive, positive_int

__all__ = ["GradientDescent", "OnlineSGD", "check_compatible"]


@dataclass(frozen=True)
class GradientDescent:
    """Full-batch gradient descent on the same ``P = alpha D`` examples at every step.

    Parameters
    ----------
    learning_rate : ``eta > 0``.
    steps : number of steps ``T >= 1``; curves have ``T + 1`` entries (index = step).
    """

    learning_rate: float = 0.05
    steps: int = 100

    def __post_init__(self):
        object.__setattr__(self, "learning_rate", positive("learning_rate", self.learning_rate))
        object.__setattr__(self, "steps", positive_int("steps", self.steps))

    replace = replace


@dataclass(frozen=True)
class OnlineSGD:
    """Online SGD: a fresh batch of ``batch_ratio * D`` examples at every step.

    The train loss reported at step ``t`` is the loss on the batch drawn at that step, before
    the update (its mean is the test loss plus nothing: the batch is fresh).
    """

    learning_rate: float = 0.05
    steps: int = 100
    batch_ratio: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "learning_rate", positive("learning_rate", self.learning_rate))
        object.__setattr__(self, "steps", positive_int("steps", self.steps))
        object.__setattr__(self, "batch_ratio", positive("batch_ratio", self.batch_ratio))

    replace = replace


def check_compatible(data, training) -> None:
    """Raise a clear error when ``data`` and ``training`` do not go together.

    Full-batch gradient descent needs a data set size (``alpha``); online SGD draws fresh
    batches, so its data must have ``alpha=None``.
    """
    if isinstance(training, GradientDescent) and data.alpha is None:
        raise ValueError(
            "GradientDescent trains on a fixed data set: give GaussianData an `alpha` (= P / D); "
            "alpha=None is for OnlineSGD"
        )
    if isinstance(training, OnlineSGD) and data.alpha is not None:
        raise ValueError(
            "OnlineSGD draws a fresh batch every step (size set by `batch_ratio`): "
            f"use GaussianData(alpha=None, ...), got alpha={data.alpha}"
        )
    if not isinstance(training, (GradientDescent, OnlineSGD)):
        raise TypeError(
            f"`training` must be dmft.GradientDescent or dmft.OnlineSGD, got {type(training).__name__}"
        )
