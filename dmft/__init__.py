"""dmft: exact high-dimensional learning curves of linear neural networks.

``dmft.solve(model, data, training)`` returns the ``D, N, P -> infinity`` train and test loss
curves (dynamical mean-field theory, or a closed form where one exists);
``finite_size.simulate`` trains real networks with the same three configuration objects.
"""

from . import saxe, schedules
from .boltzmann import DataCovariance, Langevin, SphericalBoltzmann, SpikedTeacher
from .boltzmann_equilibrium import Equilibrium, equilibrium, phase_diagram
from ._implicit_bias import implicit_bias, minimum_q_interpolator
from .data import GaussianData, PowerLaw, SparseTeacher, Spectrum
from .errors import DivergenceError, UnsupportedError
from .errors import NumericalError
from .models import DeepLinear, DiagonalLinear, Linear
from .result import AccuracyWarning, Result
from ._sweep import sweep
from .solvers import solve
from .training import GradientDescent, GradientFlow, OnlineSGD

__version__ = "0.1.0"


def __getattr__(name: str):
    """``dmft.studies`` is imported on first use (it pulls in matplotlib figures and the sweeps),
    so ``import dmft; dmft.studies.transfer`` works without importing it at ``import dmft``."""
    if name == "studies":
        import importlib

        return importlib.import_module(".studies", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AccuracyWarning",
    "GradientFlow",
    "schedules",
    "DeepLinear",
    "DiagonalLinear",
    "DivergenceError",
    "GaussianData",
    "GradientDescent",
    "Linear",
    "NumericalError",
    "OnlineSGD",
    "PowerLaw",
    "Result",
    "SparseTeacher",
    "Spectrum",
    "UnsupportedError",
    "implicit_bias",
    "minimum_q_interpolator",
    "saxe",
    "solve",
    "studies",
    "sweep",
    "SphericalBoltzmann",
    "DataCovariance",
    "SpikedTeacher",
    "Langevin",
    "Equilibrium",
    "equilibrium",
    "phase_diagram",
]
