"""Learning-rate schedules: plain functions returning one positive rate per step.

Pass the array as ``learning_rate`` of :class:`dmft.GradientDescent` or :class:`dmft.OnlineSGD`
(with the same ``steps``); entry ``t`` is the rate of the step from ``t`` to ``t + 1``. The DMFT is
exact for any schedule (every discrete equation holds with the rate of the step that produced the
term), and ``finite_size.simulate`` uses the same rates.

>>> import dmft
>>> rates = dmft.schedules.warmup_cosine(0.1, steps=400, warmup=40)
>>> training = dmft.GradientDescent(learning_rate=rates, steps=400)
"""

from __future__ import annotations

import numpy as np

from ._validate import in_range, positive, positive_int

__all__ = ["constant", "warmup_cosine", "step_decay"]


def constant(rate: float, steps: int) -> np.ndarray:
    """``rate`` at every one of ``steps`` steps."""
    return np.full(positive_int("steps", steps), positive("rate", rate))


def warmup_cosine(peak: float, steps: int, warmup: int = 0, final: float = 0.0) -> np.ndarray:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then a cosine decay to ``final``.

    Warm-up step ``t < warmup`` has rate ``peak (t + 1) / warmup``; decay step ``t >= warmup`` has
    ``final + (peak - final) (1 + cos(pi (t - warmup + 1/2) / n)) / 2`` with ``n = steps - warmup``
    (cosine evaluated at the middle of each step, so every rate is positive even for ``final = 0``).
    """
    peak = positive("peak", peak)
    steps = positive_int("steps", steps)
    warmup = positive_int("warmup", warmup, minimum=0)
    if warmup >= steps:
        raise ValueError(f"`warmup` must be smaller than `steps` ({steps}), got {warmup}")
    final = in_range("final", final, 0.0, peak)
    rates = np.empty(steps)
    rates[:warmup] = peak * np.arange(1, warmup + 1) / max(warmup, 1)
    decay = steps - warmup
    phase = np.pi * (np.arange(decay) + 0.5) / decay
    rates[warmup:] = final + (peak - final) * 0.5 * (1.0 + np.cos(phase))
    return rates


def step_decay(rate: float, steps: int, *, every: int, factor: float = 0.1) -> np.ndarray:
    """``rate`` multiplied by ``factor`` after every ``every`` steps: ``rate * factor**(t // every)``."""
    rate = positive("rate", rate)
    steps = positive_int("steps", steps)
    every = positive_int("every", every)
    factor = in_range("factor", factor, 0.0, 1.0, low_open=True)
    return rate * factor ** (np.arange(steps) // every)
