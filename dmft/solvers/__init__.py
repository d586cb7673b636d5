"""The solver registry and the one entry point, :func:`solve`.

Adding a model's solver
-----------------------
1. Write a module in ``dmft/solvers/`` with a function ``solve_x(model, data, training, **options)
   -> Result`` that implements the model's equations (link the THEORY.md section in its docstring).
2. Decorate it with ``@register(ModelType, trainings=(...), when=predicate)``: ``trainings`` lists the
   training rules it supports, ``when`` (optional) selects among several solvers of one model type
   (e.g. residual vs plain networks), ``supports`` (optional) rejects data it cannot handle by
   returning a reason string.
3. Import the module at the bottom of this file so that it registers itself.
4. Test it against an independent answer (closed form, limit or ``finite_size.simulate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import UnsupportedError
from ..result import Result
from ..training import TRAININGS, check_compatible

__all__ = ["register", "solve", "registered_solvers"]


@dataclass(frozen=True)
class _Entry:
    model_type: type
    function: Callable[..., Result]
    trainings: tuple[type, ...]
    when: Callable[[Any], bool] | None
    supports: Callable[[Any, Any, Any], str | None] | None


_REGISTRY: list[_Entry] = []


def register(model_type: type, *, trainings: tuple[type, ...], when=None, supports=None):
    """Register a solver function for ``model_type`` (see the module docstring)."""

    def decorate(function):
        _REGISTRY.append(_Entry(model_type, function, tuple(trainings), when, supports))
        return function

    return decorate


def registered_solvers() -> list[tuple[str, str, tuple[str, ...]]]:
    """``(model type, solver function, training types)`` of every registered solver."""
    return [
        (e.model_type.__name__, e.function.__qualname__, tuple(t.__name__ for t in e.trainings))
        for e in _REGISTRY
    ]


def solve(model, data, training, **options) -> Result:
    """The ``D, N, P -> infinity`` loss curves of ``model`` trained on ``data`` by ``training``.

    Dispatches to the solver registered for the model (DMFT, or an exact closed form where one
    exists). ``options`` go to that solver (see its docstring).

    Raises
    ------
    UnsupportedError : no solver supports this combination (the message says which exist).
    ValueError : the data and training do not go together (e.g. ``alpha=None`` with full batch).
    dmft.DivergenceError : the dynamics diverged (names the step; lower the learning rate).
    """
    candidates = [
        e for e in _REGISTRY if isinstance(model, e.model_type) and (e.when is None or e.when(model))
    ]
    if not candidates:
        known = ", ".join(sorted({e.model_type.__name__ for e in _REGISTRY}))
        model_types = tuple({e.model_type for e in _REGISTRY})
        if isinstance(data, model_types) or isinstance(training, model_types):
            raise TypeError(
                "dmft.solve takes (model, data, training) in that order; got "
                f"({type(model).__name__}, {type(data).__name__}, {type(training).__name__})"
            )
        raise UnsupportedError(f"no DMFT solver for {model!r}; solvers exist for: {known}")
    if isinstance(training, TRAININGS):
        check_compatible(data, training)
    elif isinstance(data, TRAININGS) or any(isinstance(data, e.trainings) for e in _REGISTRY):
        raise TypeError(
            "dmft.solve takes (model, data, training) in that order; got "
            f"({type(model).__name__}, {type(data).__name__}, {type(training).__name__})"
        )
    for entry in candidates:
        if not isinstance(training, entry.trainings):
            continue
        reason = entry.supports(model, data, training) if entry.supports else None
        if reason:
            raise UnsupportedError(reason)
        return entry.function(model, data, training, **options)
    expected = ", ".join(t.__name__ for e in candidates for t in e.trainings)
    raise UnsupportedError(
        f"{type(model).__name__} cannot be solved with {type(training).__name__}; expected one of: {expected}"
    )


# Solver modules register themselves on import.
from . import linear  # noqa: E402,F401
from . import deep  # noqa: E402,F401
from . import diagonal  # noqa: E402,F401
from . import residual, infinite_depth  # noqa: E402,F401
from . import boltzmann  # noqa: E402,F401
