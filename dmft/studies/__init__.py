"""Studies built on :func:`dmft.sweep`: each is a function returning ``(xarray.Dataset, Figure)``.

* :mod:`dmft.studies.transfer`: learning-rate transfer across width (muP vs NTK).
* :mod:`dmft.studies.scaling`: loss against width and depth, at fixed steps and at fixed compute,
  with the initialisation-variance term separated.
* :mod:`dmft.studies.power_law`: power-law data, fitted exponents (lazy vs rich) and the
  compute-optimal frontier.

Import the submodule you need (``from dmft.studies import transfer``); this package imports nothing.
"""
