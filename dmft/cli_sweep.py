"""``dmft sweep config.toml --out results.nc``: a sweep from a TOML file, written as netCDF and figures.

The configuration file (every table but ``[model]`` and ``[over]`` optional)::

    [model]                     # the base configuration; `type` names the class
    type = "DeepLinear"         # Linear | DeepLinear | DiagonalLinear | SphericalBoltzmann
    depth = 2
    width_ratio = 1.0

    [data]                      # type = "GaussianData" by default; alpha = "none" for online SGD
    alpha = 2.0
    [data.spectrum]             # nested objects are tables with their own `type`
    type = "PowerLaw"
    a = 1.5
    modes = 8                   # D = 32 input directions in 8 equal shares

    [training]                  # type = "GradientDescent" (default), "OnlineSGD" or "GradientFlow"
    learning_rate = 0.05        # (GradientFlow: time = ..., save_at = [...], the common report times)
    steps = 50

    [over]                      # dotted name = list of values (dmft.sweep)
    "model.width_ratio" = [0.5, 1.0, 2.0]
    "training.learning_rate" = [0.02, 0.05]

    [run]                       # optional
    kind = "simulate"           # "solve" (default) or "simulate"
    zip = false
    options = { dim = 32, seeds = 4 }

    [[figures]]                 # optional, any number; `file` relative to the --out folder
    kind = "curves"             # test loss against step (flows: time), one line per point
    file = "curves.png"
    [[figures]]
    kind = "final"              # loss at the last step (time) against a swept parameter
    x = "learning_rate"         # one line per value of the other swept parameters
    file = "final.png"
    logx = true

Figure keys: ``variable`` (``"test_loss"`` or ``"train_loss"``, default test; for Boltzmann sweeps
also ``"top_eigenvalue"``, ``"top_overlap"``, ``"multiplier"``, ``"equilibrium_multiplier"``,
``"condensed_fraction"``, ``"reverse_kl"``, ``"forward_kl"``), ``logx`` (default
false for steps, true for flow times), ``logy`` (default true) and, for ``"final"``, ``step`` (discrete
training) or ``time`` (gradient flow: the nearest report time) at which to read the loss (default:
each point's last finite entry).

A ``SphericalBoltzmann`` model takes ``[data]`` of type ``SpikedTeacher`` (default) or
``DataCovariance`` and ``[training]`` of type ``Langevin`` (default; ``chain_speed = inf`` is TOML's
``inf``; ``save_at`` required, the common report times); see ``examples/boltzmann_sweep.toml``.

The netCDF file holds the Dataset of :func:`dmft.sweep`: curves along ``step`` (discrete training)
or ``time`` (gradient flow), a ``time`` coordinate either way, the TOML text in ``config_file``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._cli_common import run_command

__all__ = ["add_sweep_command", "load_sweep_config", "SweepConfig", "plot_sweep_curves", "plot_sweep_final", "main"]

_TABLES = ("model", "data", "training", "over", "run", "figures")
_DEFAULT_TYPES = {"data": "GaussianData", "training": "GradientDescent"}
_TYPES = {"model": ("Linear", "DeepLinear", "DiagonalLinear", "SphericalBoltzmann"),
          "data": ("GaussianData", "DataCovariance", "SpikedTeacher"),
          "training": ("GradientDescent", "OnlineSGD", "GradientFlow", "Langevin")}
# a spherical Boltzmann machine's defaults, and the types that go with it
_BOLTZMANN_DEFAULT_TYPES = {"data": "SpikedTeacher", "training": "Langevin"}
_BOLTZMANN_TYPES = {"data": ("DataCovariance", "SpikedTeacher"), "training": ("Langevin",)}
# variables a figure may draw: the losses, and a Boltzmann machine's learning curves
_FIGURE_VARIABLES = ("test_loss", "train_loss", "top_eigenvalue", "top_overlap", "multiplier",
                     "equilibrium_multiplier", "condensed_fraction", "reverse_kl", "forward_kl")
_FIGURE_KINDS = ("curves", "final")
_FIGURE_KEYS = {"kind", "file", "variable", "logx", "logy", "x", "step", "time"}


@dataclass(frozen=True)
class SweepConfig:
    """A parsed sweep configuration file (see the module docstring)."""

    model: Any
    data: Any
    training: Any
    over: dict
    kind: str = "solve"
    zip: bool = False
    options: dict = field(default_factory=dict)
    figures: tuple = ()
    text: str = ""


def _nones(value: Any) -> Any:
    """TOML has no null: the string ``"none"`` (any case) stands for ``None``."""
    if isinstance(value, dict):
        return {k: _nones(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nones(v) for v in value]
    if isinstance(value, str) and value.lower() == "none":
        return None
    return value


def _configuration(table_name: str, table: Any, boltzmann: bool = False) -> Any:
    """The configuration object of one TOML table (``type`` key plus fields, nested tables inside).
    ``boltzmann``: the model is a ``SphericalBoltzmann`` (its own data and training types)."""
    from ._serialize import config_from_dict

    if not isinstance(table, dict):
        raise ValueError(f"[{table_name}] must be a table, got {table!r}")
    table = dict(table)
    defaults, types = (_BOLTZMANN_DEFAULT_TYPES, _BOLTZMANN_TYPES) if boltzmann else (_DEFAULT_TYPES, {})
    table.setdefault("type", defaults.get(table_name))
    allowed = list(types.get(table_name, _TYPES[table_name]))
    if boltzmann and table_name != "model" and table["type"] not in allowed:
        raise ValueError(f"[{table_name}]: a SphericalBoltzmann model needs type = one of {allowed}, got {table['type']!r}")
    if not boltzmann and table_name != "model":
        allowed = [t for t in allowed if t not in _BOLTZMANN_TYPES.get(table_name, ())]
    if table["type"] not in allowed:
        raise ValueError(f"[{table_name}] needs type = one of {allowed}, got {table['type']!r}")

    def check_nested(payload: dict, where: str) -> None:
        for key, value in payload.items():
            if isinstance(value, dict):
                if "type" not in value:
                    raise ValueError(f"[{where}.{key}] needs a `type` (e.g. \"PowerLaw\" or \"Spectrum\")")
                check_nested(value, f"{where}.{key}")

    check_nested(table, table_name)
    try:
        return config_from_dict(_nones(table))
    except (TypeError, ValueError) as error:
        raise type(error)(f"[{table_name}]: {error}") from error


def load_sweep_config(path: str | Path) -> SweepConfig:
    """Read and check a sweep configuration file (see the module docstring)."""
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"configuration file {str(path)!r} does not exist")
    text = path.read_text()
    content = tomllib.loads(text)
    unknown = sorted(set(content) - set(_TABLES))
    if unknown:
        raise ValueError(f"{path.name}: unknown table(s) {unknown}; expected some of {list(_TABLES)}")
    for required in ("model", "over"):
        if required not in content:
            raise ValueError(f"{path.name}: the [{required}] table is required")
    model = _configuration("model", content["model"])
    boltzmann = type(model).__name__ == "SphericalBoltzmann"
    data = _configuration("data", content.get("data", {}), boltzmann)
    training = _configuration("training", content.get("training", {}), boltzmann)
    over = content["over"]
    if not isinstance(over, dict):
        raise ValueError(f"[over] must be a table of dotted name = list of values, got {over!r}")
    run = dict(content.get("run", {}))
    unknown = sorted(set(run) - {"kind", "zip", "options"})
    if unknown:
        raise ValueError(f"[run]: unknown key(s) {unknown}; expected kind, zip, options")
    figures = content.get("figures", [])
    figures = [figures] if isinstance(figures, dict) else list(figures)
    return SweepConfig(
        model=model, data=data, training=training, over=_nones(over),
        kind=run.get("kind", "solve"), zip=bool(run.get("zip", False)),
        options=_nones(dict(run.get("options", {}))), figures=tuple(figures), text=text,
    )


def _check_figures(figures, dimensions: list[str], axis: str = "step") -> None:
    """Reject a figure request before anything is computed (``axis``: the sweep's curve axis)."""
    for number, spec in enumerate(figures, 1):
        where = f"[[figures]] #{number}"
        if not isinstance(spec, dict):
            raise ValueError(f"{where} must be a table, got {spec!r}")
        unknown = sorted(set(spec) - _FIGURE_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(_FIGURE_KEYS)}")
        if spec.get("kind") not in _FIGURE_KINDS:
            raise ValueError(f"{where}: kind must be one of {_FIGURE_KINDS}, got {spec.get('kind')!r}")
        if not spec.get("file"):
            raise ValueError(f"{where}: give the PNG file name as file = \"...\"")
        if spec.get("variable", "test_loss") not in _FIGURE_VARIABLES:
            raise ValueError(f"{where}: variable must be one of {_FIGURE_VARIABLES} (the last seven for "
                             f"SphericalBoltzmann sweeps), got {spec['variable']!r}")
        if spec["kind"] == "final" and spec.get("x") not in dimensions:
            raise ValueError(f"{where}: x must be one of the swept parameters {dimensions}, got {spec.get('x')!r}")
        other = "time" if axis == "step" else "step"
        if other in spec:
            kind = "discrete training" if axis == "step" else "gradient flow"
            raise ValueError(f"{where}: this sweep's curves are by {axis} ({kind}): use {axis} = ..., not {other}")
        if spec["kind"] == "curves" and axis in spec:
            raise ValueError(f"{where}: {axis} applies to kind = \"final\" only")


# --------------------------------------------------------------------------- figures


def _axis(ds) -> str:
    """The curve axis of a sweep Dataset: ``step`` (discrete training) or ``time`` (gradient flow)."""
    return "step" if "step" in ds.dims else "time"


def _point_labels(array, dims=None) -> list[tuple[dict, str]]:
    """``(selection, label)`` for every combination of ``dims`` (default: all but the curve axis) of
    a sweep variable; a zipped sweep's ``point`` is labelled by the parameters that are coordinates
    along it."""
    import itertools

    dims = [d for d in array.dims if d not in ("step", "time")] if dims is None else list(dims)
    out = []
    for index in itertools.product(*(range(array.sizes[d]) for d in dims)):
        selection = dict(zip(dims, index))
        parts = []
        for d, i in selection.items():
            names = [c for c in array.coords if array[c].dims == (d,) and c != d] if d == "point" else [d]
            parts += [f"{c}={array[c].values[i]}" for c in names]
        out.append((selection, ", ".join(parts)))
    return out


def plot_sweep_curves(ds, ax=None, *, variable: str = "test_loss", logx: bool | None = None, logy: bool = True):
    """One curve of ``ds[variable]`` against ``time`` (the step for discrete training) for every point
    of a sweep Dataset; ``logx`` defaults to on for gradient flows (times ``<= 0`` left out), off for
    steps. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    axis = _axis(ds)
    logx = axis == "time" if logx is None else logx
    array = ds[variable]
    times = ds["time"].values
    shown = times > 0 if (logx and axis == "time") else np.ones(times.shape, dtype=bool)
    diverged = 0
    labelled = _point_labels(array)
    for selection, label in labelled:
        curve = array.isel(selection)
        if not np.any(np.isfinite(curve.values)):
            diverged += 1
            continue
        ax.plot(times[shown], curve.values[shown], lw=1.3, label=label or variable)
    ax.set_xlabel("step" if axis == "step" else "time")
    ax.set_ylabel(variable.replace("_", " "))
    if logx:
        ax.set_xscale("log" if axis == "time" else "symlog", **({} if axis == "time" else {"linthresh": 1.0}))
    if logy:
        ax.set_yscale("log")
    if len(labelled) - diverged <= 12:
        ax.legend(fontsize=6)
    if diverged:
        ax.set_title(f"{diverged} of {len(labelled)} points diverged (not drawn)", fontsize=8)
    return ax


def _final(array, at: float | None = None):
    """Each point's value at ``at`` (a step, or for flows the nearest report time), or at its last
    finite entry when ``at`` is None."""
    axis = "step" if "step" in array.dims else "time"
    if at is not None:
        return array.sel({axis: at}, method=None if axis == "step" else "nearest")
    values = array.values
    finite = np.isfinite(values)
    last = values.shape[-1] - 1 - np.argmax(finite[..., ::-1], axis=-1)
    picked = np.take_along_axis(values, last[..., None], axis=-1)[..., 0]
    picked = np.where(finite.any(axis=-1), picked, np.nan)
    return array.isel({axis: 0}, drop=True).drop_vars("time", errors="ignore").copy(data=picked)


def plot_sweep_final(ds, x: str, ax=None, *, variable: str = "test_loss", step: int | None = None,
                     time: float | None = None, logx: bool = False, logy: bool = True):
    """``ds[variable]`` at the last step (or ``step``; for flows at ``time``, the nearest report time)
    against the swept parameter ``x``, one line per value of the other swept parameters; diverged
    points are gaps. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    axis = _axis(ds)
    if (step if axis == "time" else time) is not None:
        raise ValueError(f"this sweep's curves are by {axis}: give {axis}=, not {'step' if axis == 'time' else 'time'}=")
    at = step if axis == "step" else time
    final = _final(ds[variable], at)
    if x not in final.dims:  # a zipped sweep: x is a coordinate along `point`
        order = np.argsort(final[x].values, kind="stable")
        ax.plot(final[x].values[order], final.values[order], "o-", lw=1.3)
    else:
        others = [d for d in final.dims if d != x]
        for selection, label in _point_labels(final, others):
            ax.plot(final[x].values, final.isel(selection).values, "o-", lw=1.3, label=label or None)
        if others and np.prod([final.sizes[d] for d in others]) <= 12:
            ax.legend(fontsize=6)
    ax.set_xlabel(x)
    where = f" at the last {axis}" if at is None else f" at {axis} {float(final['time']) if 'time' in final.coords else at:g}"
    ax.set_ylabel(variable.replace("_", " ") + where)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    return ax


def write_figures(ds, figures, folder: Path) -> list[Path]:
    """Draw every requested figure of a sweep Dataset as a PNG under ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for spec in figures:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        options = {"variable": spec.get("variable", "test_loss"), "logy": bool(spec.get("logy", True))}
        if spec["kind"] == "curves":
            plot_sweep_curves(ds, ax, logx=spec.get("logx"), **options)
        else:
            plot_sweep_final(ds, spec["x"], ax, step=spec.get("step"), time=spec.get("time"),
                             logx=bool(spec.get("logx", False)), **options)
        fig.tight_layout()
        path = folder / spec["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=130)
        plt.close(fig)
        written.append(path)
    return written


# --------------------------------------------------------------------------- the command


def _command_sweep(args) -> int:
    from ._sweep import _parse_parameters, sweep

    config = load_sweep_config(args.config)
    out = args.out if args.out is not None else args.config.with_suffix(".nc")
    if args.scheduler and args.workers:
        raise ValueError("give either --scheduler (an existing cluster) or --workers (a local one), not both")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    base = {"model": config.model, "data": config.data, "training": config.training, "run": config.options}
    dimensions = [p.dimension for p in _parse_parameters(config.over, base)]
    from .result import time_dimension

    _check_figures(config.figures, dimensions, time_dimension(config.training))
    out.parent.mkdir(parents=True, exist_ok=True)  # before the sweep runs, not after

    common = dict(over=config.over, zip=config.zip, run=config.kind, run_options=config.options,
                  cache=args.cache, use_cache=not args.no_cache, progress=not args.quiet)
    if args.workers:
        from ._sweep import _import_distributed

        distributed = _import_distributed()
        Client, LocalCluster = distributed.Client, distributed.LocalCluster

        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            ds = sweep(config.model, config.data, config.training, client=client, **common)
    else:
        ds = sweep(config.model, config.data, config.training, client=args.scheduler, **common)
    ds.attrs["config_file"] = config.text

    ds.to_netcdf(out)
    status = ds["status"].values.ravel()
    diverged = int(np.sum(status != "ok"))
    warned = int(np.sum(ds["accuracy_status"].values > 0))
    print(f"{status.size} points ({ds.attrs['points_computed']} computed, {ds.attrs['points_cached']} "
          f"from the cache), {diverged} diverged" + (f", {warned} with accuracy warnings (accuracy_message)"
                                                     if warned else ""))
    print(f"wrote {out}")
    for path in write_figures(ds, config.figures, out.parent):
        print(f"wrote {path}")
    return 0


def add_sweep_command(subparsers) -> argparse.ArgumentParser:
    """Add ``sweep`` to the ``dmft`` command line's subparsers; returns its parser."""
    parser = subparsers.add_parser(
        "sweep", help="run a sweep from a TOML file; writes netCDF and figures",
        description="Run every configuration of a sweep described in a TOML file (dmft.sweep), here or on "
                    "a Dask cluster, and write the curves as netCDF plus the figures the file asks for.",
        epilog="the configuration file:\n\n" + __doc__.split("(every table but ``[model]`` and ``[over]`` optional)::")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", type=Path, help="the TOML configuration ([model], [over], ...)")
    parser.add_argument("--out", type=Path, default=None, help="netCDF file to write (default: CONFIG with .nc; its folder is created before the sweep runs)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="a running Dask scheduler: its address (tcp://10.0.0.1:8786) or its "
                             "scheduler file (scheduler.json)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="start a local Dask cluster of N single-threaded worker processes")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the result cache")
    parser.add_argument("--cache", type=Path, default=None, metavar="DIR",
                        help="cache folder (default: $DMFT_CACHE_DIR, else the user's cache directory)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=_command_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m dmft.cli_sweep CONFIG ...``: the sweep command on its own (same as ``dmft sweep``)."""
    parser = argparse.ArgumentParser(prog="dmft")
    add_sweep_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sweep", *(sys.argv[1:] if argv is None else argv)])
    return run_command(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
