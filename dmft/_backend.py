"""One place for the compute backends of ``dmft`` and ``finite_size``.

``backend=`` names the choice everywhere: ``"numpy"`` (the reference), ``"numba"`` (compiled
kernels on the CPU) and ``"cupy"`` (a CUDA GPU). :func:`array_module` maps a name to an array
namespace, :func:`jit` is the one decorator of every Numba kernel, :func:`to_numpy` brings arrays
back to the host. Public code never imports numba or cupy directly.

Numba is a required dependency of the package (``pyproject.toml``); CuPy is optional (the ``[gpu]``
extra), and asking for it without a usable GPU raises :class:`BackendUnavailableError` with an
install hint. The test-only name ``"array_api_strict"`` gives the strict array-API namespace (CPU),
so that code written for CuPy is checked on machines without a GPU.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "array_module",
    "check_backend",
    "cupy_usable",
    "jit",
    "to_numpy",
]

BACKENDS = ("numpy", "numba", "cupy")
_TEST_BACKENDS = ("array_api_strict",)

# Reassociation and contraction let LLVM vectorise reductions; nothing here lets the compiler
# assume that values are finite, so a NaN or an overflow survives and is detected by the caller.
_FASTMATH = frozenset({"reassoc", "contract"})


class BackendUnavailableError(ImportError):
    """The backend asked for cannot run here (CuPy missing, or no usable CUDA GPU)."""


def check_backend(backend: str, allowed: tuple[str, ...] = BACKENDS) -> str:
    """``backend`` if it is one of ``allowed`` (or the test-only strict namespace), else a
    ``ValueError`` naming the argument and the choices."""
    if backend in allowed or backend in _TEST_BACKENDS:
        return backend
    raise ValueError(f"`backend` must be one of {allowed}, got {backend!r}")


def cupy_usable() -> bool:
    """Whether CuPy imports and sees at least one CUDA device (never raises)."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, CUDARuntimeError, missing driver: all mean "not usable"
        return False


def array_module(backend: str) -> ModuleType:
    """The array namespace of ``backend``: NumPy for ``"numpy"`` and ``"numba"``, CuPy for
    ``"cupy"`` (checked to see a GPU), ``array_api_strict`` for the test-only strict name."""
    if backend in ("numpy", "numba"):
        return np
    if backend == "cupy":
        try:
            import cupy
        except ImportError as error:
            raise BackendUnavailableError(
                "backend='cupy' needs CuPy and a CUDA GPU: pip install 'dmft[gpu]' "
                "(or the cupy-cudaXXx wheel matching your CUDA)"
            ) from error
        if not cupy_usable():
            raise BackendUnavailableError(
                "backend='cupy': CuPy is installed but sees no usable CUDA device (no GPU, or no "
                "driver); use backend='numpy' here"
            )
        return cupy
    if backend == "array_api_strict":
        import array_api_strict

        return array_api_strict
    raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")


def to_numpy(array) -> np.ndarray:
    """A NumPy array of a NumPy, CuPy or array-API array (copied off the device if needed)."""
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, "get"):  # CuPy
        return array.get()
    return np.asarray(array)


def jit(function=None, **options):
    """``numba.njit`` with the package's flags: ``cache=True`` (compiled once per machine, kept
    in ``NUMBA_CACHE_DIR``) and ``fastmath={"reassoc", "contract"}`` only (no assumption that values
    are finite). Extra ``options`` (e.g. ``parallel=True``) are passed on.

    Use as ``@jit`` or ``@jit(parallel=True)``.
    """
    import numba

    settings = {"cache": True, "fastmath": set(_FASTMATH)}
    settings.update(options)
    if "fastmath" in options and options["fastmath"] not in (False, set(), frozenset()):
        extra = set(options["fastmath"]) - _FASTMATH if not isinstance(options["fastmath"], bool) else {"all"}
        if extra:
            raise ValueError(f"fastmath flags {sorted(extra)} would let NaN or inf vanish; only {sorted(_FASTMATH)}")
    decorate = numba.njit(**settings)
    return decorate if function is None else decorate(function)
