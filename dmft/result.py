"""The answer of a solver or a simulation: curves, configuration, diagnostics; save/load."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._serialize import config_from_dict, config_to_dict

__all__ = ["Result", "AccuracyWarning", "STATUS_OK", "STATUS_WARNING", "diagnose"]

_CURVES = ("time", "test_loss", "train_loss", "test_loss_sem", "train_loss_sem")

STATUS_OK = 0
STATUS_WARNING = 1


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

    def save(self, path: str | Path) -> Path:
        """Write to a compressed ``.npz`` file (float64 arrays bit-exact, configuration as JSON)."""
        path = Path(path)
        payload = {"config": np.array(json.dumps(self.config()))}
        for name in _CURVES:
            value = getattr(self, name)
            if value is not None:
                payload[name] = np.asarray(value)
        for name, value in self.arrays.items():
            payload[f"arrays/{name}"] = np.asarray(value)
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **payload)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Result":
        """Read a file written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as stored:
            config = json.loads(str(stored["config"]))
            curves = {name: stored[name] for name in _CURVES if name in stored.files}
            arrays = {
                name.split("/", 1)[1]: stored[name]
                for name in stored.files
                if name.startswith("arrays/")
            }
        return cls(
            model=config_from_dict(config["model"]),
            data=config_from_dict(config["data"]),
            training=config_from_dict(config["training"]),
            method=config["method"],
            status=config.get("status", STATUS_OK),
            message=config.get("message", "ok"),
            info=config["info"],
            arrays=arrays,
            **curves,
        )

    def to_json(self) -> dict:
        """Configuration plus curves as plain lists (for the command line's JSON output)."""
        out = self.config()
        for name in _CURVES:
            value = getattr(self, name)
            out[name] = None if value is None else np.asarray(value).tolist()
        return out

    def __repr__(self) -> str:
        return (
            f"Result(method={self.method!r}, status={self.status}, model={self.model!r}, "
            f"points={len(self.test_loss)}, final time={float(self.time[-1]):.6g}, "
            f"final test_loss={float(self.test_loss[-1]):.6g}, final train_loss={float(self.train_loss[-1]):.6g})"
        )
