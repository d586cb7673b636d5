"""Studies built on :func:`dmft.sweep`: each is a function returning ``(xarray.Dataset, Figure)``.

* :mod:`dmft.studies.transfer`: learning-rate transfer across width (muP vs NTK).
* :mod:`dmft.studies.scaling`: loss against width and depth, at fixed steps and at fixed compute,
  with the initialisation-variance term separated.
* :mod:`dmft.studies.power_law`: power-law data, fitted exponents (lazy vs rich) and the
  compute-optimal frontier.
* :mod:`dmft.studies.depth`: residual networks across depth (learning-rate transfer, edge of
  stability).
* :mod:`dmft.studies.diagonal`: diagonal networks (incremental learning, kernel-to-rich crossover).

Each submodule is imported on first use: ``dmft.studies.transfer`` works after ``import dmft``, and
``from dmft.studies import transfer`` as well; importing this package imports none of them (a new
study module needs no registration here).
"""

import importlib as _importlib
import importlib.util as _importlib_util
import pkgutil as _pkgutil


def __getattr__(name: str):
    if not name.startswith("_") and _importlib_util.find_spec(f"{__name__}.{name}") is not None:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {m.name for m in _pkgutil.iter_modules(__path__)})
