"""finite_size: real linear networks trained by gradient descent, many seeds at once.

``finite_size.simulate(model, data, training, dim=..., seeds=..., backend="numpy" | "cupy")`` takes
the same configuration objects as ``dmft.solve`` (constant learning rates, schedules and
``dmft.GradientFlow``) and returns a ``dmft.Result`` with the mean and standard error over seeds, so
every DMFT curve can be checked against a finite network. ``finite_size.saxe`` holds the
multi-output networks of Saxe, McClelland & Ganguli (2014).
"""

from . import saxe
from .boltzmann import simulate_boltzmann
from .simulate import simulate

__all__ = ["saxe", "simulate", "simulate_boltzmann"]
