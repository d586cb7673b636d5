"""The answer of a solver or a simulation: curves, configuration, diagnostics; save/load, JSON, xarray."""

from __future__ import annotations

import json
import math
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Mapping

import numpy as np

from ._serialize import config_from_dict, config_to_dict

__all__ = ["Result", "AccuracyWarning", "STATUS_OK", "STATUS_WARNING", "diagnose", "time_dimension", "json_safe"]

_CURVES = ("time", "test_loss", "train_loss", "test_loss_sem", "train_loss_sem")

STATUS_OK = 0
STATUS_WARNING = 1

# Version of the file layout written by Result.save (1: arrays stored as they are, no "layout"
# entry; 2: packed triangles and byte-shuffled floats, described by the "layout" entry).
FILE_FORMAT = 2


class AccuracyWarning(UserWarning):
    """A result was computed, but one of its own accuracy diagnostics exceeded its threshold
    (the result's ``status`` is 1 and its ``message`` says which and what to do)."""


def diagnose(checks) -> tuple[int, str]:
    """``(status, message)`` from ``checks``, an iterable of ``(name, value, threshold, remedy)``.

    A check fails when ``value`` exceeds ``threshold`` or is not finite (NaN never passes). Every
    failure is listed in the message and raised as an :class:`AccuracyWarning`; no failure gives
    ``(STATUS_OK, "ok")``.
    """
    failures = []
    for name, value, threshold, remedy in checks:
        value = float(value)
        if not (value <= threshold):  # catches NaN
            failures.append(f"{name} = {value:.3g} exceeds {threshold:.3g}; {remedy}")
    if not failures:
        return STATUS_OK, "ok"
    message = "; ".join(failures)
    warnings.warn(message, AccuracyWarning, stacklevel=3)
    return STATUS_WARNING, message


def time_dimension(training) -> str:
    """The name of the curve axis in Datasets (:meth:`Result.to_xarray`, :func:`dmft.sweep`):
    ``"step"`` for discrete training (:class:`dmft.GradientDescent`, :class:`dmft.OnlineSGD`), whose
    times are the step counts, and ``"time"`` for continuous-time training (:class:`dmft.GradientFlow`),
    whose times are the flow times. Either way the Dataset has a ``time`` coordinate."""
    from .training import GradientDescent, OnlineSGD

    return "step" if isinstance(training, (GradientDescent, OnlineSGD)) else "time"


def json_safe(value: Any) -> Any:
    """``value`` with every number JSON can hold as it is, NaN as ``None`` (JSON ``null``) and
    ``inf`` / ``-inf`` as the strings ``"inf"`` / ``"-inf"``; numpy scalars and arrays become Python
    numbers and lists. ``json.dumps(json_safe(x), allow_nan=False)`` always succeeds for numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


@dataclass(frozen=True, eq=False)
class Result:
    """Loss curves of one configuration, from a DMFT solve, an exact solution or a simulation.

    Attributes
    ----------
    model, data, training : the configuration that produced it.
    test_loss, train_loss : arrays of shape ``(len(time),)``, losses without the factor 1/2, at
        the times ``time``. For a simulation: the mean over seeds.
    test_loss_sem, train_loss_sem : standard errors of those curves (over seeds for a
        simulation, Monte Carlo error for a sampling solver), or ``None`` for exact answers.
    method : ``"dmft"``, ``"exact"`` or ``"simulation"``.
    arrays : further named arrays; each solver documents its own (order parameters, loss
        decomposition, per-seed curves, snapshots).
    info : JSON-able scalars: sizes, seeds, backend, timings, residuals.
    time : the times of the curves: the step index ``0 .. steps`` for discrete training (the
        default when not given), the flow time for :class:`dmft.GradientFlow`.
    status, message : ``0`` and ``"ok"`` when every accuracy diagnostic of the solver passed;
        ``1`` and what failed (and what to do) otherwise, as in ``scipy``'s results. Failures
        that leave no usable answer raise instead.
    """

    model: Any
    data: Any
    training: Any
    test_loss: np.ndarray
    train_loss: np.ndarray
    test_loss_sem: np.ndarray | None = None
    train_loss_sem: np.ndarray | None = None
    method: str = "dmft"
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)
    time: np.ndarray | None = None
    status: int = STATUS_OK
    message: str = "ok"

    def __post_init__(self):
        if self.time is None:
            object.__setattr__(self, "time", np.arange(len(self.test_loss), dtype=float))
        else:
            object.__setattr__(self, "time", np.asarray(self.time, dtype=float))
        if self.time.shape != np.shape(self.test_loss):
            raise ValueError(
                f"`time` has shape {self.time.shape} but the curves have {np.shape(self.test_loss)}"
            )

    @property
    def success(self) -> bool:
        """``status == 0``: every accuracy diagnostic passed."""
        return self.status == STATUS_OK

    @property
    def steps(self) -> np.ndarray:
        """Index of every curve entry, ``0 .. len(time) - 1`` (the step for discrete training)."""
        return np.arange(len(self.test_loss))

    def config(self) -> dict:
        """The full configuration as a JSON-able dictionary."""
        return {
            "model": config_to_dict(self.model),
            "data": config_to_dict(self.data),
            "training": config_to_dict(self.training),
            "method": self.method,
            "status": self.status,
            "message": self.message,
            "info": dict(self.info),
        }

    # ------------------------------------------------------------------------------ files

    def save(self, path: str | Path, *, arrays: bool = True) -> Path:
        """Write to a compressed ``.npz`` file; :meth:`load` gives back the same bits.

        The configuration (model, data, training with its schedule or ``save_at``, method,
        status, message, info) is stored as JSON, the curves and ``time`` as they are. Each entry of
        :attr:`arrays` is stored losslessly in less space: a square array (in its last two axes)
        that is exactly symmetric keeps only its lower triangle, one whose upper triangle is
        exactly zero (a causal response) only that lower triangle, and numbers are byte-shuffled
        before compression (the bytes of equal significance side by side, which deflate packs
        better). A deep result's order parameters take about half the space of a plain ``.npz``
        (measured: depth 1, ``T = 400``, 8.7 MB -> 4.6 MB).

        ``arrays=False`` writes only the configuration and the curves (a few kB whatever ``T``):
        for keeping many runs when their two-time order parameters are not needed; :meth:`load`
        then gives a result with empty ``arrays``.
        """
        path = Path(path)
        config = self.config()
        payload: dict[str, np.ndarray] = {}
        for name in _CURVES:
            value = getattr(self, name)
            if value is not None:
                payload[name] = np.asarray(value)
        layout = {}
        if arrays:
            for name, value in self.arrays.items():
                packed, layout[name] = _pack(np.asarray(value))
                payload[f"arrays/{name}"] = packed
        header = {"format": FILE_FORMAT, "arrays_saved": bool(arrays), "layout": layout}
        payload["config"] = np.array(json.dumps(config, default=_json_default))
        payload["layout"] = np.array(json.dumps(header))
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **payload)
        return path

    @classmethod
    def load(cls, path: str | Path, *, arrays: bool | Collection[str] = True) -> "Result":
        """Read a file written by :meth:`save` (``arrays=False``: skip the arrays, read only the
        configuration and the curves; a collection of names: read only those arrays).

        Raises
        ------
        FileNotFoundError : no such file.
        ValueError : the file is not a result written by :meth:`save` (not an ``.npz`` archive,
            damaged, or without a dmft configuration); the message names the file and says why.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"dmft.Result.load: no such file: {str(path)!r}")
        try:
            with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as stored:
                return cls._from_npz(stored, arrays)
        except (zipfile.BadZipFile, EOFError, OSError, KeyError, TypeError, ValueError) as error:
            if not zipfile.is_zipfile(path):
                why = "not an .npz archive (Result.save writes one)"
            else:
                why = f"{type(error).__name__}: {error}"
            raise ValueError(f"dmft.Result.load: {str(path)!r} is not a readable dmft result: {why}") from error

    @classmethod
    def _from_npz(cls, stored, read_arrays) -> "Result":
        if "config" not in stored.files:
            raise ValueError(f"no 'config' entry (entries: {sorted(stored.files)[:8]}): not written by Result.save")
        config = json.loads(str(stored["config"]))
        if not isinstance(config, dict) or not {"model", "data", "training", "method"} <= set(config):
            raise ValueError("its 'config' entry is not a dmft configuration")
        header = json.loads(str(stored["layout"])) if "layout" in stored.files else {"format": 1, "layout": {}}
        if header.get("format", 1) > FILE_FORMAT:
            raise ValueError(f"file format {header['format']} is newer than this dmft reads ({FILE_FORMAT})")
        curves = {name: stored[name] for name in _CURVES if name in stored.files}
        arrays = {}
        if read_arrays:
            for key in stored.files:
                if key.startswith("arrays/"):
                    name = key.split("/", 1)[1]
                    if read_arrays is not True and name not in read_arrays:
                        continue
                    value = stored[key]
                    arrays[name] = _unpack(value, header["layout"][name]) if name in header["layout"] else value
        return cls(
            model=config_from_dict(config["model"]),
            data=config_from_dict(config["data"]),
            training=config_from_dict(config["training"]),
            method=config["method"],
            status=config.get("status", STATUS_OK),
            message=config.get("message", "ok"),
            info=config.get("info", {}),
            arrays=arrays,
            **curves,
        )

    # ------------------------------------------------------------------------------ exports

    def to_json(self) -> dict:
        """Configuration plus curves (``time`` included) as plain JSON types: NaN becomes ``None``
        (JSON ``null``) and infinities the strings ``"inf"``/``"-inf"`` (:func:`json_safe`), so
        ``json.dumps(result.to_json(), allow_nan=False)`` is valid JSON."""
        out = self.config()
        for name in _CURVES:
            value = getattr(self, name)
            out[name] = None if value is None else np.asarray(value)
        return json_safe(out)

    def to_xarray(self):
        """The result as an ``xarray.Dataset``, laid out like a :func:`dmft.sweep` Dataset.

        * The curve axis is ``step`` for discrete training and ``time`` for gradient flow
          (:func:`time_dimension`); a ``time`` coordinate (``result.time``) is always present.
        * Variables ``test_loss``, ``train_loss`` and, where present, ``test_loss_sem``,
          ``train_loss_sem`` along that axis.
        * Every entry of :attr:`arrays`: a two-time array (last two axes of the curves' length,
          row = later time) gets the dimensions ``(..., axis, axis + "_earlier")``; an array whose
          first (else last) axis has the curves' length gets ``axis`` there; other axes are named
          ``<name>_dim<i>``.
        * Attributes: ``method``, ``status``, ``message`` and ``config`` (the JSON of
          :meth:`config`: model, data, training, info).
        """
        try:
            import xarray as xr
        except ImportError as error:  # pragma: no cover - xarray is a dependency
            raise ImportError("Result.to_xarray needs xarray: pip install xarray") from error

        axis = time_dimension(self.training)
        n = len(self.time)
        coords: dict[str, Any] = {axis: np.arange(n) if axis == "step" else self.time}
        if axis == "step":
            coords["time"] = (axis, self.time)
        variables = {}
        for name in ("test_loss", "train_loss", "test_loss_sem", "train_loss_sem"):
            value = getattr(self, name)
            if value is not None:
                variables[name] = ((axis,), np.asarray(value))
        for name, value in self.arrays.items():
            value = np.asarray(value)
            dims = [f"{name}_dim{i}" for i in range(value.ndim)]
            if value.ndim >= 2 and value.shape[-2:] == (n, n):
                dims[-2:] = [axis, f"{axis}_earlier"]
            elif value.ndim >= 1 and value.shape[0] == n:
                dims[0] = axis
            elif value.ndim >= 1 and value.shape[-1] == n:
                dims[-1] = axis
            variables[name] = (tuple(dims), value)
        attrs = {"method": self.method, "status": int(self.status), "message": self.message,
                 "config": json.dumps(json_safe(self.config()))}
        dataset = xr.Dataset(variables, coords=coords, attrs=attrs)
        if axis == "step":
            dataset["time"].attrs["long_name"] = "time = step count (discrete training)"
        else:
            dataset["time"].attrs["long_name"] = "flow time (learning rate x steps as the rate -> 0)"
        return dataset

    def __repr__(self) -> str:
        return (
            f"Result(method={self.method!r}, status={self.status}, model={self.model!r}, "
            f"points={len(self.test_loss)}, final time={float(self.time[-1]):.6g}, "
            f"final test_loss={float(self.test_loss[-1]):.6g}, final train_loss={float(self.train_loss[-1]):.6g})"
        )


# ------------------------------------------------------------------------------ array packing


def _json_default(value):
    """numpy scalars in ``info`` are written as Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as JSON")


def _bits(array: np.ndarray) -> np.ndarray:
    """The array viewed as unsigned integers of its item size: equality of bits, so that -0.0
    and +0.0 differ and NaN equals itself."""
    return array.view(f"u{array.itemsize}")


def _packing(array: np.ndarray) -> str:
    """``"symmetric"``, ``"lower"`` or ``"full"``: what :func:`_pack` may drop without losing a bit."""
    if array.ndim < 2 or array.shape[-1] != array.shape[-2] or array.shape[-1] < 2:
        return "full"
    bits = _bits(array)
    if np.array_equal(bits, np.swapaxes(bits, -1, -2)):
        return "symmetric"
    upper = np.triu_indices(array.shape[-1], 1)
    if not bits[..., upper[0], upper[1]].any():  # every upper entry is +0 (bit pattern zero)
        return "lower"
    return "full"


def _pack(array: np.ndarray) -> tuple[np.ndarray, dict]:
    """``(stored array, layout)``: triangles packed and numbers byte-shuffled where lossless."""
    if array.dtype.kind not in "fiu" or array.itemsize not in (1, 2, 4, 8) or array.size == 0:
        return array, {"packing": "none"}
    array = np.ascontiguousarray(array)
    packing = _packing(array)
    data = array
    if packing != "full":
        rows, columns = np.tril_indices(array.shape[-1])
        data = np.ascontiguousarray(array[..., rows, columns])
    shuffled = data.reshape(-1).view(np.uint8).reshape(-1, array.itemsize).T.copy()
    return shuffled.reshape(-1), {"packing": packing, "dtype": array.dtype.str, "shape": list(array.shape)}


def _unpack(stored: np.ndarray, layout: dict) -> np.ndarray:
    """Inverse of :func:`_pack`."""
    if layout["packing"] == "none":
        return stored
    dtype = np.dtype(layout["dtype"])
    shape = tuple(layout["shape"])
    data = np.ascontiguousarray(stored.reshape(dtype.itemsize, -1).T).view(dtype).reshape(-1)
    if layout["packing"] == "full":
        return data.reshape(shape)
    n = shape[-1]
    rows, columns = np.tril_indices(n)
    data = data.reshape(shape[:-2] + (rows.size,))
    out = np.zeros(shape, dtype=dtype)
    out[..., rows, columns] = data
    if layout["packing"] == "symmetric":
        out[..., columns, rows] = data
    return out
