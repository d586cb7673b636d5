"""Learning-rate transfer across width: muP vs NTK (issue 7, study 1).

A deep linear network (THEORY.md section 2) is trained for a fixed number of steps at every
combination of width ratio ``nu = N / D`` and learning rate ``eta``, in both parameterizations:

* muP / mean field: the richness ``gamma0`` is held fixed as the width grows; the DMFT has a limit
  ``nu -> infinity`` in which only the initialisation variance ``1 / (gamma0^2 nu)`` and the
  ``nu^{-1/2} R_u`` term of THEORY.md section 2.1 change with width;
* NTK: the richness is ``gamma0 / sqrt(nu)``, so wider networks are lazier and their kernel moves
  less during training (``models.DeepLinear.richness``).

For every width the optimal learning rate is found on the grid and refined by a parabola through
the three grid points around the minimum in ``(log eta, log loss)`` (:func:`optimal_learning_rate`).
Its *drift* across widths is the ratio ``max / min`` of the optimal learning rates
(:func:`learning_rate_drift`): 1 means perfect transfer. The study also checks, at every learning
rate, whether wider is better (:func:`width_ordering`): the final loss strictly decreases with width
over every pair of neighbouring widths where both runs converged.

Everything runs through :func:`dmft.sweep` (one sweep over parameterization x width x learning
rate), so the points are cached and can run on a Dask cluster (``client=``).

Example
-------
>>> from dmft.studies import transfer
>>> ds, fig = transfer.learning_rate_transfer()          # cheap default grid (~80 solves)
>>> ds["optimal_learning_rate_drift"].to_series()        # max/min ratio per parameterization
>>> fig.savefig("transfer.png")
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..data import GaussianData
from ..models import PARAMETERIZATIONS, DeepLinear
from ..training import GradientDescent, OnlineSGD
from .._sweep import STATUS_OK, sweep

__all__ = [
    "learning_rate_transfer",
    "optimal_learning_rate",
    "learning_rate_drift",
    "width_ordering",
    "DEFAULT_WIDTHS",
    "DEFAULT_LEARNING_RATES",
]

#: width ratios ``nu`` of the cheap default grid (the issue's range 0.25 ... 16, every factor 4)
DEFAULT_WIDTHS = (0.25, 1.0, 4.0, 16.0)
#: learning rates of the cheap default grid: 12 log-spaced values bracketing every optimum of the
#: default configuration (optima 0.07 ... 0.19) with the largest ones past the edge of stability
DEFAULT_LEARNING_RATES = tuple(float(x) for x in np.geomspace(0.025, 0.5, 12))


# --------------------------------------------------------------------------- analysis (pure functions)


def optimal_learning_rate(learning_rates: Sequence[float], losses: Sequence[float]) -> tuple[float, float, bool]:
    """The learning rate that minimises ``losses``, refined by parabolic interpolation in log-log.

    With ``i`` the grid minimum (NaN entries, i.e. diverged runs, are ignored), the parabola
    ``log L = c0 x^2 + c1 x + c2`` through the three points ``x = log eta_{i-1}, log eta_i,
    log eta_{i+1}`` has its vertex at ``x* = -c1 / (2 c0)``; ``eta* = exp(x*)`` and the loss there is
    ``exp(c2 - c1^2 / (4 c0))``. The vertex of a convex parabola through three points whose middle
    one is the lowest lies between the outer two, so the refinement never leaves the bracket.

    Parameters
    ----------
    learning_rates : increasing, positive, shape ``(n,)``.
    losses : shape ``(n,)``; NaN or inf for runs that diverged.

    Returns
    -------
    ``(eta_star, loss_star, at_edge)``: ``at_edge`` is True when the grid minimum is the first or
    last converged grid point or a neighbour of it diverged, so there is no bracket; the grid
    minimum itself is returned then (the true optimum may lie outside the grid). ``(nan, nan,
    True)`` when every run diverged.
    """
    rates = np.asarray(learning_rates, dtype=float)
    values = np.asarray(losses, dtype=float)
    if rates.ndim != 1 or rates.shape != values.shape:
        raise ValueError(
            f"`learning_rates` and `losses` must be 1-d of equal length, got shapes {rates.shape} and {values.shape}"
        )
    if np.any(rates <= 0) or np.any(np.diff(rates) <= 0):
        raise ValueError("`learning_rates` must be positive and strictly increasing")
    finite = np.isfinite(values) & (values > 0)
    if not finite.any():
        return math.nan, math.nan, True
    i = int(np.argmin(np.where(finite, values, np.inf)))
    if i == 0 or i == len(rates) - 1 or not (finite[i - 1] and finite[i + 1]):
        return float(rates[i]), float(values[i]), True
    x = np.log(rates[i - 1 : i + 2])
    y = np.log(values[i - 1 : i + 2])
    c0, c1, c2 = np.polyfit(x, y, 2)
    if not c0 > 0:  # three collinear points (a flat minimum): keep the grid point
        return float(rates[i]), float(values[i]), False
    vertex = -c1 / (2.0 * c0)
    return float(np.exp(vertex)), float(np.exp(c2 - c1**2 / (4.0 * c0))), False


def learning_rate_drift(optimal_rates: Sequence[float]) -> float:
    """Drift of the optimal learning rate across widths: ``max / min`` of the finite entries
    (1 = perfect transfer; ``log2`` of it is the range in octaves). NaN if fewer than two."""
    rates = np.asarray(optimal_rates, dtype=float)
    rates = rates[np.isfinite(rates)]
    if rates.size < 2:
        return math.nan
    return float(rates.max() / rates.min())


def width_ordering(losses: np.ndarray) -> dict[str, np.ndarray]:
    """Is wider better, learning rate by learning rate?

    ``losses[w, j]``: the loss at width index ``w`` (increasing widths) and learning rate ``j``, NaN
    where the run diverged. For every pair of neighbouring widths ``(w, w + 1)`` where both runs
    converged (the comparable pairs), wider is better when ``L[w + 1, j] < L[w, j]`` strictly.

    Strictness: the DMFT is deterministic and exact in discrete time up to round-off (its
    self-consistency residual is ~1e-13 of the order parameters), so a tie within round-off cannot
    happen by chance; a strict inequality is the claim, and ``smallest_relative_gap`` reports how
    far from a tie the closest pair is.

    Returns
    -------
    dict of arrays over learning rates ``j``:

    * ``comparable_pairs``: number of neighbouring pairs where both runs converged;
    * ``violations``: how many of those have ``L[w + 1] >= L[w]``;
    * ``wider_diverged``: pairs where the narrower run converged but the wider one diverged (a
      failure of "wider is better" that the comparable pairs do not see; reported, not counted);
    * ``wider_is_better``: ``violations == 0`` and at least one comparable pair;
    * ``smallest_relative_gap``: ``min (L[w] - L[w + 1]) / L[w]`` over comparable pairs (negative
      when violated; NaN without comparable pairs).
    """
    values = np.asarray(losses, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"`losses` must have shape (widths, learning_rates), got {values.shape}")
    narrow, wide = values[:-1], values[1:]
    comparable = np.isfinite(narrow) & np.isfinite(wide)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.where(comparable, (narrow - wide) / narrow, np.nan)
    violations = np.sum(comparable & ~(wide < narrow), axis=0)
    pairs = comparable.sum(axis=0)
    smallest = np.full(values.shape[1], np.nan)
    has = pairs > 0
    smallest[has] = np.nanmin(gap[:, has], axis=0)
    return {
        "comparable_pairs": pairs,
        "violations": violations,
        "wider_diverged": np.sum(np.isfinite(narrow) & ~np.isfinite(wide), axis=0),
        "wider_is_better": (violations == 0) & has,
        "smallest_relative_gap": smallest,
    }


# --------------------------------------------------------------------------- the study


def learning_rate_transfer(
    *,
    widths: Sequence[float] = DEFAULT_WIDTHS,
    learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
    parameterizations: Sequence[str] = PARAMETERIZATIONS,
    depth: int = 2,
    gamma0: float = 2.0,
    data: GaussianData | None = None,
    training: GradientDescent | OnlineSGD | None = None,
    step: int | None = None,
    simulate: dict | None = None,
    figure: bool = True,
    client=None,
    cache=None,
    use_cache: bool = True,
    progress: bool = True,
):
    """Optimal learning rate against width in muP and NTK, and whether wider is better (DMFT).

    Parameters
    ----------
    widths : width ratios ``nu``, increasing (default 0.25, 1, 4, 16).
    learning_rates : the grid of ``eta``, increasing (default 12 values from 0.025 to 0.5).
    parameterizations : any of ``"mup"``, ``"ntk"`` (``DeepLinear.parameterization``).
    depth, gamma0 : of the :class:`dmft.DeepLinear` network (plain, not residual); ``gamma0`` is
        the muP richness, and the NTK richness at ``nu = 1``.
    data : default ``GaussianData(alpha=None)`` (noiseless teacher, fresh data every step).
    training : default ``OnlineSGD(steps=30, batch_ratio=1.0)`` (a fresh batch of ``D`` examples
        per step: the data-rich, single-pass regime); its learning rate is replaced by the grid.
    step : the step at which the loss is compared (default: the last, ``training.steps``).
    simulate : ``None``, or finite networks to overlay at one width: ``{"width_ratio": nu, "dim": D,
        "seeds": n}`` (plus any other :func:`finite_size.simulate` option) runs the same grid of
        learning rates and parameterizations at that width with ``finite_size.simulate`` (one more
        sweep, cached like the DMFT points); ``N = nu D`` must be a whole number.
    figure : build the matplotlib figure (else ``None`` is returned in its place).
    client, cache, use_cache, progress : passed to :func:`dmft.sweep` (a progress bar by default).

    Returns
    -------
    ``(dataset, figure)``. The Dataset is the sweep's (dimensions ``parameterization``,
    ``width_ratio``, ``learning_rate``, ``step``; ``test_loss``, ``train_loss``, ``status``,
    ``reason``) plus:

    * ``final_test_loss`` ``(parameterization, width_ratio, learning_rate)``: the test loss at ``step``;
    * ``optimal_learning_rate``, ``optimal_test_loss``, ``optimum_at_grid_edge``
      ``(parameterization, width_ratio)`` (:func:`optimal_learning_rate`);
    * ``optimal_learning_rate_drift`` ``(parameterization)``: ``max / min`` over widths;
    * ``wider_is_better``, ``width_order_violations``, ``comparable_pairs``, ``wider_diverged``,
      ``smallest_relative_gap`` ``(parameterization, learning_rate)`` (:func:`width_ordering`);
    * with ``simulate``: ``simulated_final_test_loss`` and ``simulated_final_test_loss_sem``
      ``(parameterization, learning_rate)`` (mean and standard error over seeds) and attributes
      ``simulated_width_ratio``, ``simulated_dim``, ``simulated_seeds``;
    * attributes ``compared_at_step``, ``study = "learning_rate_transfer"``.

    Example
    -------
    >>> ds, fig = learning_rate_transfer(widths=[0.25, 1, 4, 16])
    >>> ds["optimal_learning_rate"].sel(parameterization="mup").values
    """
    widths = _increasing("widths", widths)
    rates = _increasing("learning_rates", learning_rates)
    parameterizations = list(parameterizations)
    for name in parameterizations:
        if name not in PARAMETERIZATIONS:
            raise ValueError(f"`parameterizations` entries must be in {PARAMETERIZATIONS}, got {name!r}")
    if len(set(parameterizations)) != len(parameterizations) or not parameterizations:
        raise ValueError(f"`parameterizations` must be distinct and non-empty, got {parameterizations!r}")
    model = DeepLinear(depth=depth, gamma0=gamma0)
    data = GaussianData(alpha=None) if data is None else data
    training = OnlineSGD(steps=30, batch_ratio=1.0) if training is None else training
    step = training.steps if step is None else int(step)
    if not 0 <= step <= training.steps:
        raise ValueError(f"`step` must lie in [0, training.steps = {training.steps}], got {step}")

    if simulate is not None and ("width_ratio" not in simulate or "dim" not in simulate):
        raise ValueError(f"`simulate` needs 'width_ratio' and 'dim', got {simulate!r}")

    ds = sweep(
        model,
        data,
        training,
        over={
            "model.parameterization": parameterizations,
            "model.width_ratio": list(widths),
            "training.learning_rate": list(rates),
        },
        run_options={"self_consistency": False},
        client=client,
        cache=cache,
        use_cache=use_cache,
        progress=progress,
    )
    final = ds["test_loss"].sel(step=step).where(ds["status"] == STATUS_OK)
    ds["final_test_loss"] = final
    ds["final_test_loss"].attrs["long_name"] = f"test loss at step {step} (NaN: diverged)"

    shape = (len(parameterizations), len(widths))
    optimum = np.full(shape, np.nan)
    optimum_loss = np.full(shape, np.nan)
    at_edge = np.zeros(shape, dtype=bool)
    ordering = {}
    for p, name in enumerate(parameterizations):
        losses = final.sel(parameterization=name).values  # (width, learning rate)
        for w in range(len(widths)):
            optimum[p, w], optimum_loss[p, w], at_edge[p, w] = optimal_learning_rate(rates, losses[w])
        for key, value in width_ordering(losses).items():
            ordering.setdefault(key, []).append(value)
    dims = ("parameterization", "width_ratio")
    ds["optimal_learning_rate"] = (dims, optimum, {"long_name": "optimal learning rate (parabolic, log-log)"})
    ds["optimal_test_loss"] = (dims, optimum_loss, {"long_name": f"test loss at the optimum, step {step}"})
    ds["optimum_at_grid_edge"] = (dims, at_edge, {"long_name": "no bracket on the grid: optimum may lie outside"})
    ds["optimal_learning_rate_drift"] = (
        ("parameterization",),
        np.array([learning_rate_drift(row) for row in optimum]),
        {"long_name": "max / min of the optimal learning rate over widths (1 = perfect transfer)"},
    )
    for key, values in ordering.items():
        name = "width_order_violations" if key == "violations" else key
        ds[name] = (("parameterization", "learning_rate"), np.array(values))
    if simulate is not None:
        options = dict(simulate)
        nu = float(options.pop("width_ratio"))
        simulated = sweep(
            model.replace(width_ratio=nu), data, training,
            over={"model.parameterization": parameterizations, "training.learning_rate": list(rates)},
            run="simulate", run_options=options, client=client, cache=cache, use_cache=use_cache,
            progress=progress,
        )
        ok = simulated["status"] == STATUS_OK
        ds["simulated_final_test_loss"] = simulated["test_loss"].sel(step=step).where(ok)
        ds["simulated_final_test_loss_sem"] = simulated["test_loss_sem"].sel(step=step).where(ok)
        ds.attrs["simulated_width_ratio"] = nu
        ds.attrs["simulated_dim"] = int(options["dim"])
        ds.attrs["simulated_seeds"] = int(options.get("seeds", 8))
    ds.attrs["compared_at_step"] = step
    ds.attrs["study"] = "learning_rate_transfer"
    return ds, (_figure(ds, step) if figure else None)


def _increasing(name: str, values) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    at_least = 3 if name == "learning_rates" else 2  # a bracket needs three learning rates
    if array.ndim != 1 or array.size < at_least:
        raise ValueError(f"`{name}` needs at least {at_least} values, got {list(values)!r}")
    if np.any(~np.isfinite(array)) or np.any(array <= 0) or np.any(np.diff(array) <= 0):
        raise ValueError(f"`{name}` must be positive, finite and strictly increasing, got {list(values)!r}")
    return array


def _figure(ds, step: int):
    """Loss against learning rate per width (one panel per parameterization) and the optima."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    names = [str(v) for v in ds["parameterization"].values]
    widths = ds["width_ratio"].values
    rates = ds["learning_rate"].values
    colours = colormaps["viridis"](np.linspace(0.0, 0.9, len(widths)))
    figure = Figure(figsize=(4.2 * (len(names) + 1), 3.9), layout="constrained")
    axes = figure.subplots(1, len(names) + 1)
    for ax, name in zip(axes, names):
        for w, nu in enumerate(widths):
            losses = ds["final_test_loss"].sel(parameterization=name, width_ratio=nu).values
            ax.plot(rates, losses, "o-", ms=3, lw=1.2, color=colours[w], label=f"nu = {nu:g}")
            eta = float(ds["optimal_learning_rate"].sel(parameterization=name, width_ratio=nu))
            best = float(ds["optimal_test_loss"].sel(parameterization=name, width_ratio=nu))
            ax.plot([eta], [best], "*", ms=10, color=colours[w], mec="k", mew=0.5)
        if "simulated_final_test_loss" in ds:
            nu = ds.attrs["simulated_width_ratio"]
            colour = colours[int(np.argmin(np.abs(np.log(widths / nu))))]
            ax.errorbar(rates, ds["simulated_final_test_loss"].sel(parameterization=name).values,
                        yerr=ds["simulated_final_test_loss_sem"].sel(parameterization=name).values,
                        fmt="s", ms=5, mfc="none", mec=colour, ecolor=colour, capsize=2,
                        label=f"simulation nu = {nu:g}, D = {ds.attrs['simulated_dim']}")
        drift = float(ds["optimal_learning_rate_drift"].sel(parameterization=name))
        violations = int(ds["width_order_violations"].sel(parameterization=name).sum())
        ax.set(xscale="log", yscale="log", xlabel="learning rate eta", ylabel=f"test loss at step {step}",
               title=f"{name.upper() if name == 'ntk' else 'muP'}: drift x{drift:.2f}, "
                     f"{violations} width-order violations")
        _label_minor_ticks(ax.xaxis, LogLocator, FormatStrFormatter)
    ax = axes[-1]
    for name, marker in zip(names, "os^v"):
        ax.plot(widths, ds["optimal_learning_rate"].sel(parameterization=name).values, marker + "-",
                label=f"{name} (drift x{float(ds['optimal_learning_rate_drift'].sel(parameterization=name)):.2f})")
    ax.set(xscale="log", yscale="log", xlabel="width ratio nu = N / D", ylabel="optimal learning rate",
           title="optimal learning rate against width")
    _label_minor_ticks(ax.yaxis, LogLocator, FormatStrFormatter)
    ax.legend(fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    return figure


def _label_minor_ticks(axis, LogLocator, FormatStrFormatter) -> None:
    """A log axis spanning about a decade: label the 2 and 5 minor ticks plainly (0.02, 0.05, ...)."""
    axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    axis.set_minor_formatter(FormatStrFormatter("%g"))
    axis.set_major_formatter(FormatStrFormatter("%g"))
