"""The simulations' side of the backends.

:mod:`dmft._backend` names the backends; the simulators accept ``backend="numpy"`` or ``"cupy"``
(and the test-only ``"array_api_strict"``). This module adds what the simulators share on top:

* :func:`namespace`: the array-API namespace of a backend (``array_api_compat`` wrappers for NumPy
  and CuPy, the strict namespace itself in tests). All array code of ``finite_size`` is written
  against it, so a call that only NumPy accepts fails under ``array_api_strict`` in CI. Random
  numbers are always drawn on the host with NumPy and then moved (:func:`to_device`), so every
  backend trains the very same networks.
* :func:`add_outer`: the batched rank-one update (BLAS ``dger`` on NumPy arrays).
* :func:`blas_threads`: the BLAS thread count used around the simulators' loops.
* :func:`check_memory`: an estimate of a run's memory against what the machine has, before
  anything is allocated.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from dmft._backend import BackendUnavailableError, array_module, check_backend, to_numpy

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "array_module",
    "check_backend",
    "namespace",
    "to_device",
    "to_numpy",
    "to_host",
    "add_outer",
    "blas_threads",
    "DEFAULT_THREADS",
    "check_memory",
    "available_memory",
]

BACKENDS = ("numpy", "cupy")

# The simulators' BLAS work is level 2 (batched matrix-vector products and rank-one updates):
# memory-bound, with little to gain from threads and much to lose when the cores are shared
# (OpenBLAS threads spin while they wait). Measured with benchmarks/bench_simulate.py; see the
# README section "Finite-width simulations".
DEFAULT_THREADS = 1


def backend_name(backend: str) -> str:
    """``backend`` checked to be one the simulators run: ``"numpy"`` or ``"cupy"``."""
    if backend == "numba":
        raise ValueError(
            "`backend` must be 'numpy' or 'cupy' for the finite-width simulators: 'numba' names the "
            "compiled kernels of some dmft solvers; the simulators' work is BLAS (NumPy) already"
        )
    return check_backend(backend, BACKENDS)


def namespace(backend: str):
    """The array-API namespace of ``backend`` (raises :class:`BackendUnavailableError` for CuPy
    without a usable GPU, before any device call)."""
    from array_api_compat import array_namespace

    module = array_module(backend_name(backend))
    return array_namespace(module.asarray(0.0))


def to_device(xp, array: np.ndarray):
    """A host (NumPy) array as an array of namespace ``xp`` (float64)."""
    return xp.asarray(np.ascontiguousarray(array, dtype=np.float64))


def to_host(xp, array) -> np.ndarray:
    """``array`` (of namespace ``xp``) as a NumPy array on the host.

    Raises ``TypeError`` when ``array`` is not of namespace ``xp``: a NumPy-only call on the way
    (``np.sqrt(x)``, ``np.float64 * x``) silently turns strict array-API arrays into NumPy arrays,
    and this is where the tests with ``backend="array_api_strict"`` catch it.
    """
    from array_api_compat import array_namespace

    if array_namespace(array) is not xp:
        raise TypeError(
            f"internal error: an array of {array_namespace(array).__name__} reached the host where one "
            f"of {xp.__name__} was expected (a call that only NumPy accepts on the way)"
        )
    return to_numpy(array)


def add_outer(matrices, scale: float, left, right) -> None:
    """In place, for every seed ``s``: ``matrices[s] += scale * outer(left[s], right[s])``.

    ``matrices`` is ``(S, m, n)``, ``left`` ``(S, m)``, ``right`` ``(S, n)``. NumPy arrays go through
    BLAS ``dger`` on each seed (no ``(S, m, n)`` temporary: ~10x faster than broadcasting); other
    array modules (CuPy, the strict namespace) use the broadcast product, which is what a GPU does well.
    """
    scale = float(scale)
    if (
        isinstance(matrices, np.ndarray)
        and matrices.dtype == np.float64
        and matrices.flags.c_contiguous
        and isinstance(left, np.ndarray)
        and isinstance(right, np.ndarray)
    ):
        from scipy.linalg.blas import dger

        for index in range(matrices.shape[0]):
            # matrices[index].T is Fortran-ordered, so dger updates it in place:
            # M^T += scale * right left^T  <=>  M += scale * left right^T.
            dger(scale, right[index], left[index], a=matrices[index].T, overwrite_a=1)
        return
    matrices += scale * (left[:, :, None] * right[:, None, :])


def blas_threads(threads: int | None):
    """A context in which BLAS uses ``threads`` threads (``None``: :data:`DEFAULT_THREADS`).

    ``threadpoolctl`` limits the BLAS libraries loaded in this process (OpenBLAS, MKL, BLIS) for
    the duration of the block and restores them afterwards.
    """
    from threadpoolctl import threadpool_limits

    if threads is None:
        threads = DEFAULT_THREADS
    return threadpool_limits(limits=threads, user_api="blas")


def available_memory(backend: str) -> int | None:
    """Bytes the backend can still allocate: ``MemAvailable`` of the host, or the free memory of
    the current CUDA device; ``None`` where it cannot be told."""
    if backend == "cupy":
        with contextlib.suppress(Exception):
            import cupy

            return int(cupy.cuda.runtime.memGetInfo()[0])
        return None
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def _gib(count: float) -> str:
    return f"{count / 2**30:.3g} GiB"


def check_memory(parts: dict[str, tuple[float, str]], backend: str, *, seeds: int) -> int:
    """Raise ``MemoryError`` when the estimated bytes of ``parts`` exceed the memory the backend has
    available; return the total.

    ``parts`` maps a name to ``(bytes, remedy)``; every part is proportional to ``seeds``. The
    message lists the parts, names the largest with its remedy, and says how many seeds would fit.
    """
    total = int(sum(size for size, _ in parts.values()))
    available = available_memory(backend)
    if available is None or total <= available:
        return total
    listing = ", ".join(f"{name} {_gib(size)}" for name, (size, _) in parts.items() if size)
    largest, (_, remedy) = max(parts.items(), key=lambda item: item[1][0])
    where = "free on the GPU" if backend == "cupy" else "available"
    fit = int(available // max(total / seeds, 1.0))
    fits = f"{fit} of the {seeds} seeds would fit" if fit >= 1 else "not even one seed fits"
    raise MemoryError(
        f"this simulation needs about {_gib(total)} ({listing}) but only {_gib(available)} are "
        f"{where}; {fits}. The largest part is the {largest}: {remedy}"
    )
