"""Lossless conversion of configuration objects to and from JSON-able dictionaries."""

from __future__ import annotations

import dataclasses
from typing import Any

from . import boltzmann as _boltzmann
from . import data as _data
from . import models as _models
from . import training as _training

__all__ = ["config_to_dict", "config_from_dict", "CONFIG_TYPES"]

CONFIG_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        _models.Linear,
        _models.DeepLinear,
        _models.DiagonalLinear,
        _data.GaussianData,
        _data.Spectrum,
        _data.PowerLaw,
        _data.SparseTeacher,
        _training.GradientDescent,
        _training.OnlineSGD,
        _training.GradientFlow,
        _boltzmann.SphericalBoltzmann,
        _boltzmann.DataCovariance,
        _boltzmann.SpikedTeacher,
        _boltzmann.Langevin,
    )
}


def config_to_dict(config: Any) -> Any:
    """``{"type": name, field: value, ...}`` for a configuration dataclass, recursively."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        name = type(config).__name__
        if name not in CONFIG_TYPES:
            raise TypeError(f"cannot serialise {name}: not a dmft configuration type")
        out = {"type": name}
        for field in dataclasses.fields(config):
            out[field.name] = config_to_dict(getattr(config, field.name))
        return out
    if isinstance(config, tuple):
        return [config_to_dict(v) for v in config]
    return config


def config_from_dict(payload: Any) -> Any:
    """Inverse of :func:`config_to_dict`."""
    if isinstance(payload, dict) and "type" in payload:
        cls = CONFIG_TYPES.get(payload["type"])
        if cls is None:
            raise ValueError(f"unknown configuration type {payload['type']!r}")
        kwargs = {k: config_from_dict(v) for k, v in payload.items() if k != "type"}
        return cls(**kwargs)
    if isinstance(payload, list):
        return tuple(config_from_dict(v) for v in payload)
    return payload
