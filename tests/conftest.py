"""Shared test settings: warnings are errors (pyproject), seeds fixed, helpers in tests/helpers.py.

BLAS runs on one thread in the tests: their matrices are small, and on a 2-core machine OpenBLAS
threads oversubscribe the cores (measured: tests/test_deep.py 8.4 s with one thread, 24-43 s with
the default). This must be set before NumPy is imported, which conftest.py is. OpenMP threads
(the Numba kernels) wait passively at barriers: active spinning made the diagonal-network kernel 4x
slower on a machine whose cores are shared.
"""

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
