"""Width and depth scaling of the test loss, with the initialisation variance separated (issue 7, study 2).

The deep-linear DMFT (THEORY.md section 2.1) splits the excess test loss ``C_v(t, t)`` into three
parts carried by independent Gaussian sources (``dmft.solvers.deep.solve_deep_linear``)::

    test_loss(t) = bias(t) + init_variance(t) + data_variance(t) + sigma^2

* ``bias``: the teacher not yet learned (``bias(0) = mean_k lambda_k b_k = 1``);
* ``init_variance``: the random function at initialisation and its echo (source ``xi``),
  ``init_variance(0) = 1 / (gamma0^2 nu)`` with ``gamma0`` the richness (muP: ``gamma0``; NTK:
  ``gamma0 / sqrt(nu)``, so the NTK initial variance ``1 / gamma0^2`` does not fall with width);
* ``data_variance``: finite-data or minibatch fluctuations, label noise included (source ``psi``).

The study sweeps the width ratio ``nu`` at fixed depth and the depth ``L`` at fixed width (two calls
of :func:`dmft.sweep`, with the part as a swept run option, so every part is a labelled slice of one
Dataset) and reads off

* the loss at fixed steps against width and depth, part by part;
* the loss at fixed compute ``C = nu * t`` (width times steps; for a fixed input dimension the
  cost of a step grows like the width): ``L(nu, C / nu)``, the compute-optimal width
  ``nu*(C) = argmin_nu L(nu, C / nu)`` and the frontier ``L*(C)``;
* the large-width exponent of each part: the slope of ``log part(T)`` against ``log nu`` between the
  two widest widths (``-1`` for ``init_variance`` in muP when its ``nu -> infinity`` limit is
  ``~ 1 / nu``).

Example
-------
>>> from dmft.studies import scaling
>>> ds, fig = scaling.width_depth_scaling()
>>> ds["width_test_loss"].sel(part="init_variance", step=ds.attrs["fixed_steps"])
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

import numpy as np

from ..data import GaussianData
from ..models import DeepLinear
from ..result import Result
from ..training import GradientDescent, OnlineSGD
from .._sweep import STATUS_OK, sweep

__all__ = ["width_depth_scaling", "solve_loss_part", "loss_at_compute", "PARTS", "DEFAULT_WIDTHS", "DEFAULT_DEPTHS"]

#: the parts of the test loss, in the order of the Dataset's ``part`` dimension
PARTS = ("total", "bias", "init_variance", "data_variance")
DEFAULT_WIDTHS = (0.25, 1.0, 4.0, 16.0)
DEFAULT_DEPTHS = (1, 2, 3, 4)

_ARRAY_OF_PART = {
    "bias": "test_loss_bias",
    "init_variance": "test_loss_init_variance",
    "data_variance": "test_loss_data_variance",
}
_SOLVED: "OrderedDict[tuple, Result]" = OrderedDict()
_SOLVED_SIZE = 4


def solve_loss_part(model, data, training, *, part: str = "total", **options) -> Result:
    """One part of the DMFT test loss as a :class:`dmft.Result` (a run function for :func:`dmft.sweep`).

    Solves ``dmft.solve(model, data, training, **options)`` and returns a Result whose ``test_loss`` is
    the requested part (``"total"``, ``"bias"``, ``"init_variance"`` or ``"data_variance"``; see the
    module docstring) and whose ``train_loss`` is the total train loss. The last few solves are kept
    in memory, so sweeping ``run.part`` as the innermost parameter solves each configuration once per
    process (on a Dask cluster each worker may solve a configuration once per part it receives).

    Raises
    ------
    ValueError : an unknown ``part``, or a solver without the decomposition arrays.
    """
    if part not in PARTS:
        raise ValueError(f"`part` must be one of {PARTS}, got {part!r}")
    key = (model, data, training, tuple(sorted(options.items())))
    result = _SOLVED.get(key)
    if result is None:
        from ..solvers import solve

        result = solve(model, data, training, **options)
        _SOLVED[key] = result
        while len(_SOLVED) > _SOLVED_SIZE:
            _SOLVED.popitem(last=False)
    if part == "total":
        curve = result.test_loss
    else:
        name = _ARRAY_OF_PART[part]
        if name not in result.arrays:
            raise ValueError(f"the solver of {model!r} returns no {name!r}: the test loss cannot be split")
        curve = result.arrays[name]
    return Result(
        model=model, data=data, training=training,
        test_loss=np.asarray(curve, dtype=float).copy(), train_loss=np.asarray(result.train_loss).copy(),
        method=result.method, info={"part": part},
    )


def loss_at_compute(
    losses: np.ndarray, widths: Sequence[float], budgets: Sequence[float], times: Sequence[float] | None = None
) -> dict[str, np.ndarray]:
    """The loss at fixed compute ``C = nu * t`` and the compute-optimal frontier.

    Parameters
    ----------
    losses : ``(widths, steps + 1)``, the test loss of each width at steps ``0 .. T`` (NaN: diverged).
    widths : the width ratios ``nu`` of the rows.
    budgets : compute budgets ``C`` (in units of ``D`` x steps).
    times : the times of the columns of ``losses`` (default: the steps ``0 .. T``); a flow's report
        times, increasing, ``times[0] = 0``. "Steps" below then read "times", and 1 reads ``times[1]``.

    Returns
    -------
    dict with ``loss`` ``(budgets, widths)``: ``L(nu, t)`` at ``t = C / nu`` (linear interpolation in
    ``log t`` between the neighbouring steps; NaN where ``C / nu < 1`` or ``> T``);
    ``widths_in_range`` ``(budgets,)``: how many widths have ``1 <= C / nu <= T``; ``frontier``
    ``(budgets,)``: the minimum over widths and ``optimal_width`` the minimising width, both only
    where every width is in range (NaN elsewhere: a missing width could be the optimum, so a
    minimum over the others would overstate the frontier).
    """
    losses = np.asarray(losses, dtype=float)
    widths = np.asarray(widths, dtype=float)
    budgets = np.asarray(budgets, dtype=float)
    times = np.arange(losses.shape[1], dtype=float) if times is None else np.asarray(times, dtype=float)
    first, last = times[1], times[-1]
    log_steps = np.log(times[1:])
    table = np.full((budgets.size, widths.size), np.nan)
    for w, nu in enumerate(widths):
        t = budgets / nu
        inside = (t >= first) & (t <= last)
        table[inside, w] = np.interp(np.log(t[inside]), log_steps, losses[w, 1:])
    in_range = np.sum((budgets[:, None] / widths[None, :] >= first) & (budgets[:, None] / widths[None, :] <= last), axis=1)
    complete = in_range == widths.size
    frontier = np.full(budgets.size, np.nan)
    optimal = np.full(budgets.size, np.nan)
    for c in np.flatnonzero(complete & np.isfinite(table).any(axis=1)):
        w = int(np.nanargmin(table[c]))
        frontier[c], optimal[c] = table[c, w], widths[w]
    return {"loss": table, "frontier": frontier, "optimal_width": optimal, "widths_in_range": in_range}


def width_depth_scaling(
    *,
    widths: Sequence[float] = DEFAULT_WIDTHS,
    depths: Sequence[int] = DEFAULT_DEPTHS,
    model: DeepLinear | None = None,
    data: GaussianData | None = None,
    training: GradientDescent | OnlineSGD | None = None,
    fixed_steps: int | None = None,
    compute_budgets: Sequence[float] | None = None,
    figure: bool = True,
    client=None,
    cache=None,
    use_cache: bool = True,
    progress: bool = True,
):
    """Test loss against width and depth (fixed steps and fixed compute), split into its parts (DMFT).

    Parameters
    ----------
    widths : width ratios ``nu`` swept at the base depth (increasing).
    depths : depths ``L`` swept at the base width (increasing; ``math.inf`` allowed for residual
        networks whose solver supports it).
    model : base network; default ``DeepLinear(depth=2, width_ratio=1.0, gamma0=1.0)`` (muP).
    data : default ``GaussianData(alpha=2.0, noise=0.2)``: every part is present.
    training : default ``GradientDescent(learning_rate=0.05, steps=100)`` (stable for depths up
        to 8 at least). On isotropic data with ``alpha = 2`` every curve settles at the
        least-squares floor ``sigma^2 alpha / (alpha - 1)`` within a few hundred steps, after which
        width and depth no longer matter: compare before that (``fixed_steps``).
    fixed_steps : the step of the fixed-steps comparison (default ``training.steps``).
    compute_budgets : budgets ``C = nu t``; default 12 log-spaced values from ``max(widths)`` (one
        step of the widest network) to ``min(widths) * T`` (all steps of the narrowest), the range
        where every width is in range.
    figure : build the figure (else ``None`` in its place).
    client, cache, use_cache, progress : passed to :func:`dmft.sweep` (a progress bar by default).

    Returns
    -------
    ``(dataset, figure)``; the Dataset holds

    * ``width_test_loss`` ``(width_ratio, part, step)`` and ``depth_test_loss`` ``(depth, part,
      step)``: the curves, ``part`` in :data:`PARTS` (NaN where the run diverged; ``width_status``,
      ``depth_status`` say which); ``width_edge_of_stability_step``, ``depth_edge_of_stability_step``:
      the step at which the run entered the edge-of-stability regime (-1: never;
      :func:`dmft.studies.depth.edge_of_stability_step`), after which the loss at fixed steps is
      not monotone in time;
    * coordinate ``compute_budget``; ``loss_at_compute`` ``(compute_budget, width_ratio)``;
      ``frontier_loss``, ``optimal_width``, ``widths_in_range`` ``(compute_budget,)``
      (:func:`loss_at_compute`, on the total);
    * ``large_width_exponent`` ``(part,)``: slope of ``log part(T_fixed)`` against ``log nu`` between
      the two widest widths;
    * ``initial_init_variance_expected`` ``(width_ratio,)``: ``1 / (richness^2 nu)`` (THEORY.md
      section 2) for comparison with ``width_test_loss[..., "init_variance", 0]`` (plain networks);
    * attributes ``fixed_steps``, ``noise_floor = sigma^2``, ``base_model``, ``study``.
    """
    import xarray as xr

    model = DeepLinear(depth=2, width_ratio=1.0, gamma0=1.0) if model is None else model
    data = GaussianData(alpha=2.0, noise=0.2) if data is None else data
    training = GradientDescent(learning_rate=0.05, steps=100) if training is None else training
    if not isinstance(model, DeepLinear):
        raise TypeError(f"`model` must be a dmft.DeepLinear, got {model!r}")
    widths = _increasing("widths", widths, at_least=2)
    depths = [int(d) if d != math.inf else math.inf for d in _increasing("depths", depths, at_least=1)]
    fixed_steps = training.steps if fixed_steps is None else int(fixed_steps)
    if not 0 <= fixed_steps <= training.steps:
        raise ValueError(f"`fixed_steps` must lie in [0, training.steps = {training.steps}], got {fixed_steps}")
    last = training.steps
    if compute_budgets is None:
        if widths.min() * last <= widths.max():
            raise ValueError(
                f"no compute budget C has every width in range (C / nu in [1, T]): min(widths) * T = "
                f"{widths.min() * last:g} <= max(widths) = {widths.max():g}; give `compute_budgets`, more "
                "steps or a narrower range of widths"
            )
        compute_budgets = np.geomspace(widths.max(), widths.min() * last, 12)
    budgets = _increasing("compute_budgets", compute_budgets, at_least=1)
    options = {} if model.residual else {"self_consistency": False}
    common = dict(run=solve_loss_part, run_options=options, client=client, cache=cache,
                  use_cache=use_cache, progress=progress)
    by_width = sweep(model, data, training, over={"model.width_ratio": list(widths), "run.part": list(PARTS)},
                     **common)
    by_depth = sweep(model, data, training, over={"model.depth": depths, "run.part": list(PARTS)}, **common)

    ok_width = (by_width["status"] == STATUS_OK).all("part")
    ok_depth = (by_depth["status"] == STATUS_OK).all("part")
    ds = xr.Dataset(
        {
            "width_test_loss": by_width["test_loss"].where(ok_width),
            "width_status": by_width["status"].isel(part=0, drop=True),
            "depth_test_loss": by_depth["test_loss"].where(ok_depth),
            "depth_status": by_depth["status"].isel(part=0, drop=True),
        }
    )
    # Where a run entered the edge-of-stability regime (train loss stops its smooth decay; the
    # criterion of dmft.studies.depth): past it the loss at fixed steps is no longer monotone in time.
    from .depth import edge_of_stability_step

    for name, swept in (("width", by_width), ("depth", by_depth)):
        train = swept["train_loss"].isel(part=0).values
        steps = [edge_of_stability_step(curve[: training.steps + 1]) for curve in train]
        ds[f"{name}_edge_of_stability_step"] = (
            (swept["test_loss"].dims[0],), np.array([-1 if s is None else s for s in steps]),
            {"long_name": "first step in the edge-of-stability regime (-1: never)"},
        )
    ds["width_test_loss"].attrs["long_name"] = f"test loss part against width (depth {model.depth})"
    ds["depth_test_loss"].attrs["long_name"] = f"test loss part against depth (width ratio {model.width_ratio:g})"

    total = ds["width_test_loss"].sel(part="total").values
    at_compute = loss_at_compute(total, widths, budgets)
    ds = ds.assign_coords(compute_budget=budgets)
    ds["loss_at_compute"] = (("compute_budget", "width_ratio"), at_compute["loss"],
                             {"long_name": "test loss at compute C = nu t (NaN: t outside [1, T])"})
    ds["frontier_loss"] = (("compute_budget",), at_compute["frontier"], {"long_name": "min over widths at fixed compute"})
    ds["optimal_width"] = (("compute_budget",), at_compute["optimal_width"], {"long_name": "compute-optimal width ratio"})
    ds["widths_in_range"] = (("compute_budget",), at_compute["widths_in_range"], {"long_name": "widths with 1 <= C/nu <= T"})

    exponents = []
    for part in PARTS:
        values = ds["width_test_loss"].sel(part=part, step=fixed_steps).values[-2:]
        if np.all(np.isfinite(values)) and np.all(values > 0):
            exponents.append(float(np.log(values[1] / values[0]) / np.log(widths[-1] / widths[-2])))
        else:
            exponents.append(math.nan)
    ds["large_width_exponent"] = (("part",), np.array(exponents),
                                  {"long_name": "d log part(T) / d log nu between the two widest widths"})
    richness = np.array([model.replace(width_ratio=float(nu)).richness for nu in widths])
    ds["initial_init_variance_expected"] = (("width_ratio",), 1.0 / (richness**2 * widths),
                                            {"long_name": "1 / (gamma0^2 nu), THEORY.md section 2"})
    ds.attrs.update({
        "fixed_steps": fixed_steps,
        "noise_floor": data.noise**2,
        "base_model": repr(model),
        "base_data": repr(data),
        "base_training": repr(training),
        "study": "width_depth_scaling",
    })
    return ds, (_figure(ds, model) if figure else None)


def _increasing(name: str, values, *, at_least: int) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    if array.ndim != 1 or array.size < at_least:
        raise ValueError(f"`{name}` needs at least {at_least} values, got {list(values)!r}")
    if np.any(np.isnan(array)) or np.any(array <= 0) or np.any(np.diff(array) <= 0):
        raise ValueError(f"`{name}` must be positive and strictly increasing, got {list(values)!r}")
    return array


def _figure(ds, model):
    """Three panels: parts against width at fixed steps, parts against depth, loss at fixed compute."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    step = ds.attrs["fixed_steps"]
    figure = Figure(figsize=(13.5, 3.8), layout="constrained")
    axes = figure.subplots(1, 3)
    styles = {"total": ("k", "o-"), "bias": ("C0", "s--"), "init_variance": ("C3", "^--"), "data_variance": ("C2", "v--")}
    for ax, name, coordinate in ((axes[0], "width", "width_ratio"), (axes[1], "depth", "depth")):
        x = ds[coordinate].values
        eos = ds[f"{name}_edge_of_stability_step"].values
        unstable = (eos >= 0) & (eos <= step)
        for part in ds["part"].values:
            colour, style = styles[str(part)]
            y = ds[f"{name}_test_loss"].sel(part=part, step=step).values
            ax.plot(x, y, style, color=colour, ms=4, label=str(part))
            if unstable.any():
                ax.plot(x[unstable], y[unstable], "o", ms=9, mfc="none", mec="0.3", mew=0.8,
                        label="past the edge of stability" if part == "total" else None)
        ax.set(yscale="log", ylabel=f"test loss at step {step}")
        if ds.attrs["noise_floor"] > 0:
            ax.axhline(ds.attrs["noise_floor"], color="0.6", lw=0.8, ls=":", label="noise floor sigma^2")
    widths = ds["width_ratio"].values
    axes[0].plot(widths, ds["initial_init_variance_expected"].values, ":", color="C3", lw=1,
                 label="1/(gamma0^2 nu) at t = 0")
    axes[0].set(xscale="log", xlabel="width ratio nu = N / D",
                title=f"width (depth {model.depth}): init variance ~ nu^{float(ds['large_width_exponent'].sel(part='init_variance')):.2f}")
    axes[1].set(xlabel="depth L (hidden layers)", title=f"depth (width ratio {model.width_ratio:g})")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    ax = axes[2]
    colours = colormaps["viridis"](np.linspace(0.0, 0.9, len(widths)))
    for w, nu in enumerate(widths):
        ax.plot(ds["compute_budget"].values, ds["loss_at_compute"].values[:, w], "o-", ms=3, color=colours[w], label=f"nu = {nu:g}")
    ax.plot(ds["compute_budget"].values, ds["frontier_loss"].values, "k--", lw=2, alpha=0.6, label="frontier")
    ax.set(xscale="log", yscale="log", xlabel="compute C = nu x steps", ylabel="test loss",
           title="fixed compute")
    ax.legend(fontsize=7)
    return figure
