"""Array backends by name: one place maps ``backend=`` to an array module.

Public code never imports cupy directly; a missing CuPy gives an install hint.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

__all__ = ["BACKENDS", "array_module", "to_numpy"]

BACKENDS = ("numpy", "cupy")


def array_module(backend: str) -> ModuleType:
    """The array module (``numpy`` or ``cupy``) for ``backend``."""
    if backend == "numpy":
        return np
    if backend == "cupy":
        try:
            import cupy
        except ImportError as error:  # pragma: no cover - depends on the machine
            raise ImportError(
                "backend='cupy' needs CuPy and a CUDA GPU: pip install 'dmft[gpu]' "
                "(or a cupy-cudaXXx wheel matching your CUDA)"
            ) from error
        return cupy
    raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")


def to_numpy(array) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array."""
    if hasattr(array, "get"):
        return array.get()
    return np.asarray(array)
