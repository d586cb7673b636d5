"""The simulations' side of the backends: :mod:`dmft._backend` names them (``backend="numpy"`` or
``"cupy"`` here), this module adds the batched rank-one update of the simulator.
"""

from __future__ import annotations

import numpy as np

from dmft._backend import array_module, check_backend, to_numpy

__all__ = ["BACKENDS", "array_module", "check_backend", "to_numpy", "add_outer"]

BACKENDS = ("numpy", "cupy")


def add_outer(matrices, scale: float, left, right) -> None:
    """In place, for every seed ``s``: ``matrices[s] += scale * outer(left[s], right[s])``.

    ``matrices`` is ``(S, m, n)``, ``left`` ``(S, m)``, ``right`` ``(S, n)``. NumPy arrays go through
    BLAS ``dger`` on each seed (no ``(S, m, n)`` temporary: ~10x faster than broadcasting); other
    array modules (CuPy) use the broadcast product, which is what a GPU does well.
    """
    if isinstance(matrices, np.ndarray) and matrices.dtype == np.float64 and matrices.flags.c_contiguous:
        from scipy.linalg.blas import dger

        for index in range(matrices.shape[0]):
            # matrices[index].T is Fortran-ordered, so dger updates it in place:
            # M^T += scale * right left^T  <=>  M += scale * left right^T.
            dger(scale, right[index], left[index], a=matrices[index].T, overwrite_a=1)
        return
    matrices += scale * (left[:, :, None] * right[:, None, :])
