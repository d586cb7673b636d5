"""Argument checks shared by the configuration objects (messages name the field and the rule)."""

from __future__ import annotations

import math
from numbers import Integral, Real

__all__ = ["positive", "non_negative", "positive_int", "in_range", "finite"]


def finite(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}")
    return value


def positive(name: str, value) -> float:
    value = finite(name, value)
    if value <= 0:
        raise ValueError(f"`{name}` must be positive, got {value}")
    return value


def non_negative(name: str, value) -> float:
    value = finite(name, value)
    if value < 0:
        raise ValueError(f"`{name}` must be non-negative, got {value}")
    return value


def positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"`{name}` must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return int(value)


def in_range(name: str, value, low: float, high: float, *, low_open: bool = False) -> float:
    value = finite(name, value)
    if (value <= low if low_open else value < low) or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"`{name}` must lie in {bracket}{low}, {high}], got {value}")
    return value
