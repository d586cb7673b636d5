"""The answer of a solver or a simulation: curves, configuration, diagnostics; save/load."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._serialize import config_from_dict, config_to_dict

__all__ = ["Result"]

_CURVES = ("test_loss", "train_loss", "test_loss_sem", "train_loss_sem")


@dataclass(frozen=True, eq=False)
class Result:
    """Loss curves of one configuration, from a DMFT solve, an exact solution or a simulation.

    Attributes
    ----------
    model, data, training : the configuration that produced it.
    test_loss, train_loss : arrays of shape ``(steps + 1,)``, index = step (0 = initialisation),
        losses without the factor 1/2. For a simulation: the mean over seeds.
    test_loss_sem, train_loss_sem : standard errors of those curves (over seeds for a
        simulation, Monte Carlo error for a sampling solver), or ``None`` for exact answers.
    method : ``"dmft"``, ``"exact"`` or ``"simulation"``.
    arrays : further named arrays; each solver documents its own (order parameters, loss
        decomposition, per-seed curves, snapshots).
    info : JSON-able scalars: sizes, seeds, backend, timings, residuals.
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

    @property
    def steps(self) -> np.ndarray:
        """Step index of every curve entry, ``0 .. training.steps``."""
        return np.arange(len(self.test_loss))

    def config(self) -> dict:
        """The full configuration as a JSON-able dictionary."""
        return {
            "model": config_to_dict(self.model),
            "data": config_to_dict(self.data),
            "training": config_to_dict(self.training),
            "method": self.method,
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
            f"Result(method={self.method!r}, model={self.model!r}, steps={len(self.test_loss) - 1}, "
            f"final test_loss={float(self.test_loss[-1]):.6g}, final train_loss={float(self.train_loss[-1]):.6g})"
        )
