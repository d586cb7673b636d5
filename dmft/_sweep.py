"""Sweeps: one call runs a grid of configurations, locally or on a Dask cluster, with a cache.

``sweep(model, data, training, over={...})`` applies every combination of the swept values to the
base configuration, runs each configuration once (:func:`dmft.solve`, :func:`finite_size.simulate` or
any function with the same call signature) and gathers the loss curves in an ``xarray.Dataset``
with one dimension per swept parameter plus the curve axis: ``step`` for discrete training
(``GradientDescent``, ``OnlineSGD``; kept so that code written for step sweeps keeps working) and
``time`` for gradient flow, whose points must report at common times (``save_at``). Either way the
Dataset has a ``time`` coordinate (equal to ``step`` for discrete training) and
:meth:`dmft.Result.to_xarray` lays out a single result the same way.

* Where it runs: in this process by default (a tqdm progress bar); with ``client=`` (a
  ``dask.distributed.Client`` or a scheduler address) one task per configuration is submitted to
  the cluster and the dashboard link is printed. Results are the same bits either way: each
  configuration is one deterministic call of the same function.
* Cache (:mod:`dmft._cache`): each finished configuration is written to a content-addressed file as
  soon as it arrives, so a repeated sweep computes nothing and an interrupted one only what is missing.
* Failure policy: a configuration that diverges (``dmft.DivergenceError`` or any
  ``FloatingPointError``) is recorded with NaN curves, ``status = "diverged"`` and the error message
  in ``reason``; the sweep goes on. Any other error stops the sweep (the points finished before it
  are cached) and its message names the configuration.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import os
import uuid
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ._cache import CacheEntry, ResultCache, _plain, cache_folder, cache_key
from ._serialize import config_to_dict
from .result import AccuracyWarning, Result, json_safe, time_dimension
from .training import check_compatible

__all__ = ["sweep", "RUN_KINDS", "STATUS_OK", "STATUS_DIVERGED"]

RUN_KINDS = ("solve", "simulate")
STATUS_OK = "ok"
STATUS_DIVERGED = "diverged"

_ROOTS = ("model", "data", "training", "run")
_VARIABLES = ("test_loss", "train_loss", "test_loss_sem", "train_loss_sem", "status", "reason", "method",
              "accuracy_status", "accuracy_message")
_RESERVED_DIMENSIONS = ("step", "time", "point")


@dataclass(frozen=True)
class _Parameter:
    """One swept parameter: its dotted name, its path, its Dataset dimension and its values."""

    name: str
    path: tuple[str, ...]
    dimension: str
    values: tuple


@dataclass(frozen=True)
class _Point:
    """One configuration of the sweep: its position in the grid and what to run."""

    index: tuple[int, ...]
    assignment: dict
    model: Any
    data: Any
    training: Any
    options: dict

    def describe(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.assignment.items()) or "base"


# --------------------------------------------------------------------------- what a point runs


def _run_function(run: str | Callable) -> Callable:
    """The function behind ``run``: ``"solve"`` -> dmft.solve, ``"simulate"`` ->
    finite_size.simulate, or ``run`` itself (resolved on the worker, so names travel, not code)."""
    if run == "solve":
        from .solvers import solve

        return solve
    if run == "simulate":
        import finite_size

        return finite_size.simulate
    return run


def _run_label(run: str | Callable) -> str:
    """The name of ``run`` in cache keys and attributes: ``solve``, ``simulate`` or
    ``callable:module.qualname`` (so the cache of a callable is keyed by its name, not its code)."""
    if isinstance(run, str):
        return run
    return f"callable:{getattr(run, '__module__', '?')}.{getattr(run, '__qualname__', repr(run))}"


def _compute(run, model, data, training, options: dict):
    """Run one configuration: ``(status, reason, result)``; divergences are returned, not raised.

    This is the task a Dask worker executes, so it must stay a module-level function.
    """
    try:
        result = _run_function(run)(model, data, training, **options)
    except (FloatingPointError, OverflowError) as error:  # dmft.DivergenceError is a FloatingPointError
        return STATUS_DIVERGED, f"{type(error).__name__}: {error}", None
    if not isinstance(result, Result):
        raise TypeError(f"the sweep's run function must return a dmft.Result, got {type(result).__name__}")
    return (*_status_of(result), result)


def _status_of(result: Result) -> tuple[str, str]:
    """``("diverged", why)`` when a returned result holds non-finite losses, else ``("ok", "")``."""
    for name in ("test_loss", "train_loss"):
        if not np.all(np.isfinite(getattr(result, name))):
            return STATUS_DIVERGED, f"non-finite {name} in the returned result"
    return STATUS_OK, ""


# --------------------------------------------------------------------------- parsing `over`


def _parse_parameters(over: Mapping, base: dict) -> list[_Parameter]:
    """Check the dotted names and the value lists of ``over`` against the base configuration."""
    if not isinstance(over, Mapping):
        raise TypeError(f"`over` must be a dict of dotted name -> list of values, got {type(over).__name__}")
    parameters = []
    for name, values in over.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"`over` keys must be dotted names such as 'model.width_ratio', got {name!r}")
        path = tuple(name.split("."))
        if path[0] not in _ROOTS or len(path) < 2 or not all(path):
            raise ValueError(
                f"sweep parameter {name!r}: a dotted name must start with one of "
                f"{', '.join(root + '.' for root in _ROOTS)} and name a field, e.g. 'model.width_ratio', "
                "'data.spectrum.a', 'training.learning_rate' or 'run.dim' (an option of the run function)"
            )
        if path[0] == "run":
            if len(path) != 2:
                raise ValueError(f"sweep parameter {name!r}: run options are not nested; use 'run.<option>'")
        else:
            _check_path(name, base[path[0]], path[1:])
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
            raise TypeError(
                f"sweep parameter {name!r}: values must be a list, got {values!r} (write [{values!r}] for one value)"
            )
        if isinstance(values, np.ndarray):
            values = values.ravel().tolist()  # numpy scalars -> Python numbers
        values = tuple(v.item() if isinstance(v, np.generic) else v for v in values)
        if not values:
            raise ValueError(f"sweep parameter {name!r}: the list of values is empty")
        parameters.append(_Parameter(name, path, path[-1], values))
    _check_overlaps(parameters)
    return parameters


def _check_path(name: str, config: Any, path: tuple[str, ...]) -> None:
    """Every component of ``path`` must be a field of the dataclass reached so far."""
    where = name.split(".")[0]
    for component in path:
        if config is None or not dataclasses.is_dataclass(config):
            raise ValueError(
                f"sweep parameter {name!r}: {where} is {config!r} in the base configuration, which has "
                f"no field {component!r}; give the base configuration a value there first"
            )
        fields = [f.name for f in dataclasses.fields(config)]
        if component not in fields:
            raise ValueError(
                f"sweep parameter {name!r}: {type(config).__name__} ({where}) has no field {component!r}; "
                f"its fields are: {', '.join(fields) if fields else '(none)'}"
            )
        config = getattr(config, component)
        where = f"{where}.{component}"


def _check_overlaps(parameters: list[_Parameter]) -> None:
    """No parameter may sit inside another, and every dimension name must be unique."""
    for first, second in itertools.combinations(parameters, 2):
        shorter, longer = sorted((first.path, second.path), key=len)
        if longer[: len(shorter)] == shorter:
            raise ValueError(
                f"sweep parameters {'.'.join(shorter)!r} and {'.'.join(longer)!r} overlap: "
                "sweep either the whole object or its fields"
            )
    seen: dict[str, str] = {}
    for parameter in parameters:
        if parameter.dimension in _RESERVED_DIMENSIONS or parameter.dimension in _VARIABLES:
            hint = ""
            if parameter.name == "training.time":
                hint = ("; the curves of one flow to the longest time already hold every earlier time "
                        "(ds.sel(time=...)): run that one, with save_at")
            raise ValueError(
                f"sweep parameter {parameter.name!r}: its Dataset name {parameter.dimension!r} is taken "
                f"by the Dataset itself ({', '.join(_RESERVED_DIMENSIONS + _VARIABLES)}){hint}"
            )
        if parameter.dimension in seen:
            raise ValueError(
                f"sweep parameters {seen[parameter.dimension]!r} and {parameter.name!r} would both be "
                f"the Dataset dimension {parameter.dimension!r} (named by the last component); "
                "sweep one of them at a time"
            )
        seen[parameter.dimension] = parameter.name


def _reraise(error: Exception, message: str) -> Exception:
    """An error of the same type as ``error`` (a ValueError if that type needs other arguments)."""
    try:
        return type(error)(message)
    except TypeError:
        return ValueError(message)


class _Changes(dict):
    """Nested field assignments of one configuration object (so that one ``replace`` sees them all)."""


def _apply(config: Any, changes: _Changes) -> Any:
    """``dataclasses.replace`` of ``config`` with ``changes`` (nested ones applied inside first)."""
    updates = {
        field: _apply(getattr(config, field), value) if isinstance(value, _Changes) else value
        for field, value in changes.items()
    }
    return dataclasses.replace(config, **updates)


def _check_point(model, data, training) -> None:
    """The configuration check of :func:`dmft.solve` for the point's model family: the networks'
    (:func:`dmft.training.check_compatible`) or the spherical Boltzmann machine's
    (:func:`dmft.boltzmann.check_configuration`)."""
    from .boltzmann import SphericalBoltzmann, check_configuration

    if isinstance(model, SphericalBoltzmann):
        check_configuration(model, data, training)
    else:
        check_compatible(data, training)


def _build_point(index, parameters, values, base: dict) -> _Point:
    """The configuration of one grid point; invalid values raise naming the swept parameters."""
    changes = {root: _Changes() for root in _ROOTS}
    options = dict(base["run"])
    for parameter, value in zip(parameters, values):
        if parameter.path[0] == "run":
            options[parameter.path[1]] = value
            continue
        node = changes[parameter.path[0]]
        for component in parameter.path[1:-1]:
            node = node.setdefault(component, _Changes())
        node[parameter.path[-1]] = value
    assignment = {p.name: v for p, v in zip(parameters, values)}
    configured = {}
    for root in ("model", "data", "training"):
        if changes[root]:
            try:
                configured[root] = _apply(base[root], changes[root])
            except (TypeError, ValueError) as error:
                swept = {name: value for name, value in assignment.items() if name.startswith(root + ".")}
                described = ", ".join(f"{name}={value!r}" for name, value in swept.items())
                raise _reraise(error, f"sweep parameter {described}: {error}") from error
        else:
            configured[root] = base[root]
    try:
        _check_point(configured["model"], configured["data"], configured["training"])
    except (TypeError, ValueError) as error:
        described = ", ".join(f"{name}={value!r}" for name, value in assignment.items()) or "the base configuration"
        raise _reraise(error, f"sweep point {described}: {error}") from error
    return _Point(tuple(index), assignment, configured["model"], configured["data"], configured["training"], options)


def _grid(parameters: list[_Parameter], zipped: bool) -> tuple[tuple[int, ...], list[tuple]]:
    """Grid shape and ``(index, values)`` of every point, in C order (product) or lockstep (zip)."""
    if not parameters:
        return (), [((), ())]
    if zipped:
        lengths = {p.name: len(p.values) for p in parameters}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"zip=True needs value lists of equal length, got {lengths}")
        count = len(parameters[0].values)
        return (count,), [((i,), tuple(p.values[i] for p in parameters)) for i in range(count)]
    for parameter in parameters:
        coordinate = _coordinate(parameter.values)
        if len(np.unique(coordinate)) != len(coordinate):
            raise ValueError(f"sweep parameter {parameter.name!r}: values repeat ({list(parameter.values)!r})")
    shape = tuple(len(p.values) for p in parameters)
    points = [
        (index, tuple(p.values[i] for p, i in zip(parameters, index)))
        for index in itertools.product(*(range(n) for n in shape))
    ]
    return shape, points


def _coordinate(values: tuple) -> np.ndarray:
    """Coordinate array of swept values: numbers, booleans or strings as they are; anything else
    (configuration objects, None) as its ``repr``, so that the Dataset can be written to netCDF."""
    if all(isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=bool)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=float if any(isinstance(v, float) for v in values) else np.int64)
    if all(isinstance(v, str) for v in values):
        return np.asarray(values, dtype=str)
    return np.asarray([repr(v) for v in values], dtype=str)


def _check_run(run, options: dict, point: _Point) -> None:
    """Reject an unknown run kind and, where the signature is known, unknown or missing options."""
    if isinstance(run, str):
        if run not in RUN_KINDS:
            raise ValueError(f"`run` must be one of {RUN_KINDS} or a callable, got {run!r}")
        if run == "solve":
            return  # the options go on to the model's solver, which checks them
    elif not callable(run):
        raise TypeError(f"`run` must be one of {RUN_KINDS} or a callable, got {run!r}")
    function = _run_function(run)
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(point.model, point.data, point.training, **options)
    except TypeError as error:
        raise TypeError(f"`run_options` {sorted(options)} do not fit {_run_label(run)}: {error}") from None


# --------------------------------------------------------------------------- execution


def _import_distributed():
    """The ``distributed`` package, or an ImportError that says how to install it."""
    try:
        import distributed
    except ImportError as error:
        raise ImportError(
            "running a sweep on a Dask cluster needs dask.distributed: pip install 'dask[distributed]'"
        ) from error
    return distributed


def _check_client(client) -> None:
    if client is not None and not isinstance(client, (str, os.PathLike)) and not hasattr(client, "submit"):
        raise TypeError(
            "`client` must be None, a dask.distributed.Client, a scheduler address or a scheduler file, "
            f"got {client!r}"
        )
    if isinstance(client, (str, os.PathLike)) and str(client).endswith(".json") and not os.path.isfile(client):
        raise ValueError(f"`client`: the scheduler file {str(client)!r} does not exist")


def _as_client(client):
    """``(client, owned)``: a Client is used as is; a string opens one (closed afterwards): a
    scheduler address (``tcp://host:8786``) or the path of a scheduler file (``*.json``, written by
    ``dask scheduler --scheduler-file``)."""
    if not isinstance(client, (str, os.PathLike)):
        return client, False
    Client = _import_distributed().Client
    if str(client).endswith(".json"):
        return Client(scheduler_file=os.fspath(client)), True
    return Client(client), True


def _progress_bar(total: int, cached: int, enabled: bool):
    from tqdm.auto import tqdm

    description = "dmft.sweep" + (f" ({cached} cached)" if cached else "")
    return tqdm(total=total, desc=description, unit="point", disable=not enabled or total == 0)


def _with_point(error: BaseException, point: _Point) -> BaseException:
    note = f"in the sweep point {point.describe()}"
    if hasattr(error, "add_note"):
        error.add_note(note)
    return error


def _run_local(run, points: list[_Point], todo: list[int], record, progress: bool) -> None:
    with _progress_bar(len(todo), len(points) - len(todo), progress) as bar:
        for i in todo:
            point = points[i]
            try:
                outcome = _compute(run, point.model, point.data, point.training, point.options)
            except Exception as error:
                raise _with_point(error, point)
            record(i, outcome)
            bar.update()


def _run_cluster(client, run, points: list[_Point], todo: list[int], record, progress: bool) -> None:
    as_completed = _import_distributed().as_completed

    token = uuid.uuid4().hex[:8]
    futures = {
        client.submit(
            _compute, run, points[i].model, points[i].data, points[i].training, points[i].options,
            key=f"dmft-sweep-{token}-{i}",
        ): i
        for i in todo
    }
    if progress:
        print(f"dmft.sweep: {len(todo)} points on {client}; dashboard: {client.dashboard_link}", flush=True)
    try:
        with _progress_bar(len(todo), len(points) - len(todo), progress) as bar:
            for future in as_completed(futures):
                i = futures[future]
                try:
                    outcome = future.result()
                except Exception as error:
                    raise _with_point(error, points[i])
                record(i, outcome)
                bar.update()
                future.release()
    finally:
        client.cancel([f for f in futures if not f.done()])


# --------------------------------------------------------------------------- the entry point


def sweep(
    model,
    data,
    training,
    over: Mapping[str, Sequence] | None = None,
    *,
    zip: bool = False,
    run: str | Callable = "solve",
    run_options: Mapping[str, Any] | None = None,
    client=None,
    cache=None,
    use_cache: bool = True,
    progress: bool = True,
):
    """Run ``model, data, training`` at every combination of the values in ``over``.

    Parameters
    ----------
    model, data, training : the base configuration (as for :func:`dmft.solve`).
    over : dotted name -> list of values. Names address fields of the three configuration objects,
        nested ones included (``"model.width_ratio"``, ``"training.learning_rate"``, ``"data.alpha"``,
        ``"data.spectrum.a"``, or a whole object: ``"data.spectrum"``), or an option of the run
        function (``"run.dim"``, ``"run.seed"``). Values are applied with ``dataclasses.replace`` (all
        changes to one object in one call, so the configuration's own checks run on the combination).
    zip : ``False`` sweeps the Cartesian product (one Dataset dimension per parameter); ``True`` steps
        the lists together (equal lengths; one dimension ``point`` with each parameter as a coordinate).
    run : ``"solve"`` (:func:`dmft.solve`), ``"simulate"`` (:func:`finite_size.simulate`) or a function
        ``f(model, data, training, **run_options) -> dmft.Result`` (module-level, for a cluster).
    run_options : keyword arguments of the run function (``dim``, ``seeds``, ``backend``, ``seed`` for
        ``"simulate"``; solver options for ``"solve"``).
    client : ``None`` (run here, one point after another), a ``dask.distributed.Client``, a
        scheduler address such as ``"tcp://10.0.0.1:8786"`` or a scheduler file ``"scheduler.json"``
        (one task per configuration; results come back to this process, which alone uses the cache).
    cache : cache folder; else ``$DMFT_CACHE_DIR``; else the user's cache directory (``dmft._cache``).
    use_cache : ``False`` neither reads nor writes the cache.
    progress : a tqdm bar over the points to compute (and, on a cluster, the dashboard link).

    Returns
    -------
    xarray.Dataset with dimensions ``(*swept, axis)`` (or ``(point, axis)`` with ``zip=True``), each
    swept dimension named by the last component of its dotted name. The curve ``axis`` is ``step``
    (``0 .. max steps``) for discrete training and ``time`` for :class:`dmft.GradientFlow`, whose
    points must share ``save_at`` (the axis values; a flow without ``save_at`` is refused before
    anything runs); the coordinate ``time`` is there in both cases (along ``step`` it equals the
    step). Variables:

    * ``test_loss``, ``train_loss`` (``(*swept, axis)``): the curves, NaN for diverged points and past
      the end of a shorter run when ``training.steps`` is swept;
    * ``test_loss_sem``, ``train_loss_sem``: standard errors, where the run gives them;
    * ``status`` (``"ok"`` or ``"diverged"``), ``reason`` (the error message, or ``""``) and ``method``
      (the result's method) per point;
    * ``accuracy_status`` and ``accuracy_message``: each result's own ``status`` and ``message``
      (0 / ``"ok"`` when its accuracy diagnostics passed; -1 / ``""`` where it diverged). Points with
      status 1 are also reported by one :class:`dmft.AccuracyWarning` (cached points included).

    ``attrs`` hold the base configuration (``base_config``, JSON of model / data / training),
    ``run``, ``run_options`` and ``over`` (JSON), ``zip``, ``dmft_version``, and the counts
    ``points_computed`` and ``points_cached`` of this call.

    Raises
    ------
    ValueError, TypeError : an unknown dotted name, a Dataset name taken twice, a value the
        configuration rejects, or flows without common ``save_at``; the message names the
        parameter, and nothing has run yet.
    Any error of a point other than a divergence, with the point named in a note (points finished
    before it are in the cache).

    Example
    -------
    >>> ds = dmft.sweep(dmft.DeepLinear(), dmft.GaussianData(alpha=2.0), dmft.GradientDescent(0.05, 100),
    ...                 over={"model.width_ratio": [0.5, 1, 2], "training.learning_rate": [0.01, 0.04]})
    >>> ds["test_loss"].sel(width_ratio=2, learning_rate=0.04)
    """
    try:
        import xarray as xr
    except ImportError as error:
        raise ImportError("dmft.sweep returns an xarray.Dataset: pip install xarray") from error

    base = {"model": model, "data": data, "training": training, "run": dict(run_options or {})}
    parameters = _parse_parameters({} if over is None else over, base)
    zipped = bool(zip)
    shape, grid = _grid(parameters, zipped)
    points = [_build_point(index, parameters, values, base) for index, values in grid]
    for point in points[:1] + [p for p in points[1:] if p.options != points[0].options]:
        _check_run(run, point.options, point)
    axis, report_times = _curve_axis(points)
    label = _run_label(run)
    _check_client(client)

    store = ResultCache(cache_folder(cache)) if use_cache else None
    keys = [cache_key(label, p.model, p.data, p.training, p.options) for p in points] if store else None
    outcomes: list[tuple[str, str, Result | None] | None] = [None] * len(points)
    if store is not None:
        for i, key in enumerate(keys):
            entry = store.get(key, curves_only=True, arrays=tuple(BOLTZMANN_CURVES))
            if entry is not None:
                outcomes[i] = (*_status_of(entry.result), entry.result) if entry.result is not None \
                    else (STATUS_DIVERGED, entry.diverged, None)
    todo = [i for i, outcome in enumerate(outcomes) if outcome is None]

    def record(i: int, outcome) -> None:
        outcomes[i] = outcome
        if store is not None:
            status, reason, result = outcome
            store.put(keys[i], CacheEntry(result=result) if result is not None else CacheEntry(diverged=reason))

    if todo and client is not None:
        active, owned = _as_client(client)  # connect only when something is left to compute
        try:
            _run_cluster(active, run, points, todo, record, progress)
        finally:
            if owned:
                active.close()
    elif todo:
        _run_local(run, points, todo, record, progress)

    return _dataset(xr, parameters, zipped, shape, points, outcomes, axis, report_times, {
        "base_config": json.dumps(json_safe({name: config_to_dict(base[name]) for name in ("model", "data", "training")})),
        "run": label,
        "run_options": json.dumps(_plain(base["run"], "run_options")),
        "over": json.dumps({p.name: [_json_value(v) for v in p.values] for p in parameters}),
        "zip": int(zipped),
        "dmft_version": _version(),
        "points_computed": len(todo),
        "points_cached": len(points) - len(todo),
    })


def _version() -> str:
    from . import __version__

    return __version__


def _json_value(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    return _plain(value, "value")


# Learning curves of dmft.SphericalBoltzmann results that sweeps gather next to test_loss / train_loss
BOLTZMANN_CURVES = {
    "top_eigenvalue": "top eigenvalue of the couplings W",
    "top_overlap": "squared overlap (v_1 . e_1)^2 of the top eigenvector with the top data direction",
    "multiplier": "spherical multiplier of the chain",
    "equilibrium_multiplier": "equilibrium spherical multiplier mu of the current couplings",
    "condensed_fraction": "condensed fraction of the equilibrium measure of the current couplings",
    "reverse_kl": "reverse KL (model || teacher) per site",
    "forward_kl": "forward KL (teacher || model) per site",
}


def _curve_axis(points: list[_Point]) -> tuple[str, np.ndarray | None]:
    """``(axis, report_times)``: the Dataset's curve axis (:func:`dmft.result.time_dimension`; the
    training rule's type is the base configuration's at every point, as ``over`` changes fields,
    not types) and, for continuous time, the common report times (``None``: taken from the first
    result, and every other result must report at the same times). Raises before anything runs when
    gradient flows have no common ``save_at``."""
    axis = time_dimension(points[0].training)
    if axis == "step":
        return axis, None
    if not all(hasattr(p.training, "save_at") for p in points):
        return axis, None  # a continuous-time rule without save_at: the results must agree (checked later)
    save_at = [p.training.save_at for p in points]
    if any(times is None for times in save_at):
        raise ValueError(
            f"a sweep over {type(points[0].training).__name__} needs common report times: give the base {type(points[0].training).__name__} `save_at` "
            "(e.g. dmft.GradientFlow(time=1e4, save_at=np.geomspace(1, 1e4, 61))); with save_at=None "
            "every point would report on its own adaptive grid"
        )
    if any(times != save_at[0] for times in save_at):
        raise ValueError(
            f"a sweep over {type(points[0].training).__name__} needs the same `save_at` at every point (the Dataset's `time` axis); "
            "sweep training.save_at in separate sweeps"
        )
    return axis, np.asarray(save_at[0], dtype=float)


def _dataset(xr, parameters, zipped, shape, points, outcomes, axis, report_times, attrs):
    """Gather the curves of every point into one Dataset (see :func:`sweep`, Returns)."""
    if axis == "step":
        lengths = [p.training.steps + 1 for p in points]
        lengths += [len(o[2].test_loss) for o in outcomes if o[2] is not None]
        times = np.arange(max(lengths), dtype=float)
    else:
        if report_times is None:
            first = next((o[2] for o in outcomes if o[2] is not None), None)
            report_times = np.asarray([0.0] if first is None else first.time, dtype=float)
        times = report_times
        for point, (_, _, result) in zip(points, outcomes):
            if result is not None and not np.array_equal(result.time, times):
                raise ValueError(
                    f"sweep point {point.describe()}: the run reported at times {_abbreviate(result.time)}, "
                    f"not at the sweep's common times {_abbreviate(times)}"
                )
    length = len(times)
    curves = {name: np.full(shape + (length,), np.nan) for name in ("test_loss", "train_loss")}
    errors = {name: np.full(shape + (length,), np.nan) for name in ("test_loss_sem", "train_loss_sem")}
    has_errors = {name: False for name in errors}
    status = np.full(shape, STATUS_OK, dtype=object)
    reason = np.full(shape, "", dtype=object)
    method = np.full(shape, "", dtype=object)
    accuracy_status = np.full(shape, -1, dtype=np.int64)
    accuracy_message = np.full(shape, "", dtype=object)
    for point, (point_status, point_reason, result) in zip(points, outcomes):
        status[point.index] = point_status
        reason[point.index] = point_reason
        if result is None:
            continue
        method[point.index] = result.method
        accuracy_status[point.index] = result.status
        accuracy_message[point.index] = result.message
        for name in curves:
            curve = np.asarray(getattr(result, name), dtype=float)
            curves[name][point.index + (slice(0, len(curve)),)] = curve
        for name in errors:
            value = getattr(result, name)
            if value is not None:
                has_errors[name] = True
                errors[name][point.index + (slice(0, len(value)),)] = np.asarray(value, dtype=float)

    # the spherical Boltzmann machine's learning curves (result.arrays, one value per report time)
    extra: dict[str, np.ndarray] = {}
    for point, (_, _, result) in zip(points, outcomes):
        if result is None:
            continue
        for name in BOLTZMANN_CURVES:
            value = result.arrays.get(name)
            if value is None or np.ndim(value) != 1 or len(value) != length:
                continue
            extra.setdefault(name, np.full(shape + (length,), np.nan))[point.index] = np.asarray(value, dtype=float)

    dims = ("point",) if zipped else tuple(p.dimension for p in parameters)
    if axis == "step":
        coords: dict[str, Any] = {"step": np.arange(length), "time": ("step", times)}
    else:
        coords = {"time": times}
    if zipped:
        coords["point"] = np.arange(shape[0])
        for parameter in parameters:
            coords[parameter.dimension] = ("point", _coordinate(parameter.values))
    else:
        for parameter in parameters:
            coords[parameter.dimension] = _coordinate(parameter.values)
    variables = {
        "test_loss": (dims + (axis,), curves["test_loss"],
                      {"long_name": "test loss E(f - y)^2 (no factor 1/2)"}),
        "train_loss": (dims + (axis,), curves["train_loss"],
                       {"long_name": "train loss (1/P) sum (f - y)^2 (no factor 1/2)"}),
    }
    for name, values in extra.items():
        variables[name] = (dims + (axis,), values, {"long_name": BOLTZMANN_CURVES[name]})
    if extra:  # test/train loss of a Boltzmann machine are not squared errors
        variables["test_loss"][2]["long_name"] = "forward KL from the teacher per site (SpikedTeacher), else the training NLL"
        variables["train_loss"][2]["long_name"] = "training negative log-likelihood per sample and site (relative to the uniform law)"
    for name, present in has_errors.items():
        if present:
            variables[name] = (dims + (axis,), errors[name], {"long_name": f"standard error of {name[:-4]}"})
    for name, values in (("status", status), ("reason", reason), ("method", method),
                         ("accuracy_message", accuracy_message)):
        variables[name] = (dims, values.astype(str))
    variables["accuracy_status"] = (dims, accuracy_status, {
        "long_name": "the result's own status: 0 every accuracy diagnostic passed, 1 one failed "
                     "(accuracy_message says which), -1 no result (diverged)"})
    warned = int(np.sum(accuracy_status > 0))
    if warned:  # also for points read from the cache, whose solve warned when it ran
        first = next(m for m, a in zip(accuracy_message.ravel(), accuracy_status.ravel()) if a > 0)
        warnings.warn(f"{warned} of {accuracy_status.size} sweep points have accuracy warnings (status 1; "
                      f"ds['accuracy_message'] says which), e.g.: {first}", AccuracyWarning, stacklevel=3)
    dataset = xr.Dataset(variables, coords=coords, attrs=attrs)
    for parameter in parameters:
        dataset[parameter.dimension].attrs["sweep_parameter"] = parameter.name
    dataset["time"].attrs["long_name"] = (
        "time = step count (discrete training)" if axis == "step" else "flow time (learning rate x steps as the rate -> 0)"
    )
    return dataset


def _abbreviate(times) -> str:
    times = np.asarray(times)
    if times.size <= 6:
        return np.array2string(times, precision=6)
    return f"[{times[0]:.6g} ... {times[-1]:.6g}] ({times.size} times)"
