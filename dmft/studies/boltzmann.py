"""Spherical Boltzmann machines (issue 12): four studies, each a function returning an
``xarray.Dataset`` and a plotting function returning a matplotlib ``Figure``.

* :func:`cascade`: the cascade of transitions as the regularisation ``gamma`` falls: the data modes
  leave the bulk (BBP), then condense one at a time onto a common top eigenvalue
  (:func:`dmft.equilibrium`; optionally finite-N Langevin training overlaid).
* :func:`double_descent`: the reverse and forward KL from the teacher against ``gamma`` at several
  likelihood weights ``eta``: the reverse KL descends, peaks at the condensation transition and
  descends again onto the paramagnetic plateau.
* :func:`chain_speed_bias`: the out-of-equilibrium bias of a persistent sampling chain of speed
  ``nu``: the long-time overlaps of the large-N dynamics (:func:`dmft.solve`) against the
  equilibrium (``nu = inf``).
* :func:`sampling_temperature`: the KL against the inverse temperature ``beta`` of the chain and
  of generation, per ``gamma``: under-regularised machines generate best hotter (``beta < 1``),
  over-regularised ones colder.

The equations are those of docs/spherical.md. Example
-------
>>> from dmft.studies import boltzmann
>>> ds = boltzmann.double_descent()
>>> boltzmann.plot_double_descent(ds).savefig("double_descent.png")
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..boltzmann import DataCovariance, Langevin, SphericalBoltzmann, SpikedTeacher
from ..boltzmann_equilibrium import PHASES, equilibrium, phase_diagram

__all__ = [
    "CASCADE_DATA",
    "TEACHER",
    "cascade",
    "plot_cascade",
    "double_descent",
    "plot_double_descent",
    "chain_speed_bias",
    "plot_chain_speed_bias",
    "sampling_temperature",
    "plot_sampling_temperature",
    "transitions",
]

CASCADE_DATA = DataCovariance(eigenvalues=(1.6, 0.9, 0.5))
"""Three distinct data modes: at eta = 3, beta = 1 they leave the bulk at gamma = 7.7, 2.4, 0.75
(BBP, ``gamma = eta c_a^2``) and condense at gamma = 1.6, 0.69, 0.25."""

TEACHER = SpikedTeacher(strength=3.0, samples=3)
"""A teacher whose K = 3 samples are informative enough that training beats the untrained machine
(reverse KL below the paramagnetic plateau): typical spectrum (7/3, 1/3, 1/3)."""

_FINAL_CURVES = ("top_eigenvalue", "reverse_kl", "forward_kl")

_PHASE_COLOURS = {"paramagnetic": "#ffffff", "condensed": "#e8f0fa", "sticky": "#fbeee0"}


def transitions(values: np.ndarray, phase: np.ndarray, modes: np.ndarray) -> list[dict]:
    """Where the phase or the number of condensed modes changes along a 1-D sweep: a list of
    ``{"between": (v_i, v_i+1), "phase": (before, after), "condensed_modes": (before, after)}``."""
    out = []
    for i in np.flatnonzero((np.diff(phase) != 0) | (np.diff(modes) != 0)):
        out.append(
            {
                "between": (float(values[i]), float(values[i + 1])),
                "phase": (PHASES[int(phase[i])], PHASES[int(phase[i + 1])]),
                "condensed_modes": (int(modes[i]), int(modes[i + 1])),
            }
        )
    return out


def _increasing(name: str, values, minimum: int = 2) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    if array.ndim != 1 or array.size < minimum:
        raise ValueError(f"`{name}` needs at least {minimum} values, got {list(values)!r}")
    if np.any(~(array > 0)) or np.any(np.diff(array) <= 0):
        raise ValueError(f"`{name}` must be positive and strictly increasing, got {list(values)!r}")
    return array


# --------------------------------------------------------------------------- 1. cascade


def cascade(
    *,
    data: DataCovariance | SpikedTeacher = CASCADE_DATA,
    model: SphericalBoltzmann = SphericalBoltzmann(),
    likelihood_weight: float = 3.0,
    prior_precisions: Sequence[float] = tuple(np.geomspace(0.05, 20.0, 600)),
    simulate: dict | None = None,
):
    """The equilibrium against the prior precision ``gamma``: BBP outliers, then the cascade of
    condensations (docs/spherical.md, Equilibrium sections 3-4).

    Parameters
    ----------
    data, model : the data spectrum and the machine (its inverse temperature).
    likelihood_weight : ``eta`` (``math.inf``: MAP).
    prior_precisions : the ``gamma`` grid, increasing.
    simulate : ``None``, or finite-N Langevin training (``chain_speed = inf``) overlaid at a few
        ``gamma``: ``{"prior_precisions": [...], "dim": N, "seeds": S}`` plus ``"relaxations"``
        (default 4: the burn-in and the averaging window are each that many relaxation times
        ``2/gamma`` of the couplings) and any other ``finite_size.boltzmann.simulate_boltzmann`` option.

    Returns
    -------
    ``xarray.Dataset`` of :func:`dmft.phase_diagram` over ``prior_precision`` (every equilibrium
    field, per mode along ``mode``) plus the attributes ``transitions`` (JSON list of
    :func:`transitions`), ``bbp_thresholds`` (``gamma = eta c_a^2``: mode ``a`` is an outlier below
    it), ``likelihood_weight``. With ``simulate``: ``simulated_eigenvalues``,
    ``simulated_eigenvalues_sem`` (``simulated_prior_precision``, ``rank``: the top ``K + 2``),
    ``simulated_multiplier`` (and ``_sem``), ``simulated_data_overlap_sq`` (and ``_sem``)
    ``(simulated_prior_precision, mode)``, and attributes ``simulated_dim``, ``simulated_seeds``.
    """
    import json

    gammas = _increasing("prior_precisions", prior_precisions)
    training = Langevin(prior_precision=float(gammas[0]), likelihood_weight=likelihood_weight, chain_speed=math.inf)
    ds = phase_diagram(model, data, training, over={"training.prior_precision": list(gammas)})
    found = transitions(gammas, ds["phase"].values, ds["condensed_modes"].values)
    spectrum = np.asarray(data.resolve().eigenvalues)
    ds.attrs.update(
        study="cascade",
        transitions=json.dumps(found),
        bbp_thresholds=json.dumps([float(likelihood_weight * c**2) if math.isfinite(likelihood_weight) else math.inf for c in spectrum]),
        likelihood_weight=float(likelihood_weight),
        inverse_temperature=model.inverse_temperature,
    )
    if simulate is not None:
        _add_simulation(ds, model, data, training, dict(simulate))
    return ds


def _add_simulation(ds, model, data, training, options: dict) -> None:
    """Finite-N Langevin training with an equilibrium negative phase at a few ``gamma``, averaged over
    the reports after a burn-in, with standard errors over seeds."""
    from finite_size.boltzmann import simulate_boltzmann

    gammas = _increasing("simulate['prior_precisions']", options.pop("prior_precisions"), minimum=1)
    dim, seeds = int(options.pop("dim")), int(options.pop("seeds", 4))
    relaxations = float(options.pop("relaxations", 4.0))
    values, multiplier, overlaps = [], [], []
    for gamma in gammas:
        window = relaxations * 2.0 / gamma  # W(0) carries no spike: its data part relaxes like exp(-gamma t/2)
        times = tuple(np.linspace(window, 2 * window, 16))
        run = training.replace(prior_precision=float(gamma), time=times[-1], save_at=times)
        result = simulate_boltzmann(model, data, run, dim=dim, seeds=seeds, **options)
        values.append(_seed_mean(result.arrays["eigenvalues"]))
        multiplier.append((result.arrays["equilibrium_multiplier"].mean(), result.arrays["equilibrium_multiplier_sem"].mean()))
        overlaps.append(_seed_mean(result.arrays["s_per_seed"].transpose(0, 2, 1) ** 2))
    ds.coords["simulated_prior_precision"] = gammas
    ds.coords["rank"] = np.arange(1, values[0][0].size + 1)
    ds["simulated_eigenvalues"] = (("simulated_prior_precision", "rank"), np.array([v[0] for v in values]))
    ds["simulated_eigenvalues_sem"] = (("simulated_prior_precision", "rank"), np.array([v[1] for v in values]))
    ds["simulated_multiplier"] = ("simulated_prior_precision", np.array([m[0] for m in multiplier]))
    ds["simulated_multiplier_sem"] = ("simulated_prior_precision", np.array([m[1] for m in multiplier]))
    width = ds.sizes["mode"]
    pad = lambda a: np.pad(a, (0, width - a.size))  # noqa: E731
    ds["simulated_data_overlap_sq"] = (("simulated_prior_precision", "mode"), np.array([pad(o[0]) for o in overlaps]))
    ds["simulated_data_overlap_sq_sem"] = (("simulated_prior_precision", "mode"), np.array([pad(o[1]) for o in overlaps]))
    ds.attrs.update(simulated_dim=dim, simulated_seeds=seeds)


def _seed_mean(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over seeds (axis 0) of time averages (axis 1)."""
    means = np.asarray(series).mean(axis=1)
    count = means.shape[0]
    sem = means.std(axis=0, ddof=1) / math.sqrt(count) if count > 1 else np.full(means.shape[1:], np.nan)
    return means.mean(axis=0), sem


def plot_cascade(ds):
    """Eigenvalues (modes, multiplier, bulk edge) and the condensate per mode against ``gamma``,
    phases shaded (condensed blue, sticky orange), BBP thresholds dotted; finite-N points overlaid
    when present."""
    import json

    from matplotlib import colormaps
    from matplotlib.figure import Figure

    gammas = ds["prior_precision"].values
    modes = ds["mode"].values
    colours = colormaps["viridis"](np.linspace(0.0, 0.8, len(modes)))
    figure = Figure(figsize=(13.5, 4.0), layout="constrained")
    axes = figure.subplots(1, 3)
    for ax in axes:
        _shade_phases(ax, gammas, ds["phase"].values)
        ax.set(xscale="log", xlabel="prior precision gamma")
    ax = axes[0]
    for m, colour in zip(modes, colours):
        ax.plot(gammas, ds["mode_eigenvalue"].sel(mode=m), color=colour, lw=1.6, label=f"mode {m} (c = {float(ds['spectrum'].isel(prior_precision=0).sel(mode=m)):.2g})")
    for threshold in json.loads(ds.attrs["bbp_thresholds"]):
        if gammas[0] < threshold < gammas[-1]:
            for axis in axes:
                axis.axvline(threshold, color="0.6", ls=":", lw=0.8)
    ax.plot(gammas, ds["multiplier"], "k--", lw=1, label="multiplier mu")
    ax.plot(gammas, ds["bulk_edge"], color="0.5", lw=1, label="bulk edge")
    if "simulated_eigenvalues" in ds:
        for r in range(min(len(modes), ds.sizes["rank"])):
            ax.errorbar(ds["simulated_prior_precision"], ds["simulated_eigenvalues"].isel(rank=r),
                        yerr=ds["simulated_eigenvalues_sem"].isel(rank=r), fmt="o", ms=4, mfc="none", color=colours[r],
                        label=f"N = {ds.attrs['simulated_dim']}" if r == 0 else None)
    ax.set(yscale="log", ylabel="eigenvalue of W", title="outliers merge into the top eigenvalue")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.stackplot(gammas, ds["mode_condensed_fraction"].transpose("mode", "prior_precision").values, colors=colours, alpha=0.7,
                 labels=[f"M_{m}" for m in modes])
    ax.plot(gammas, ds["condensed_fraction"], "k", lw=1.2, label="M")
    ax.set(ylabel="condensed fraction", title="the cascade: one mode at a time")
    ax.legend(fontsize=7)
    ax = axes[2]
    for m, colour in zip(modes, colours):
        ax.plot(gammas, ds["data_overlap"].sel(mode=m) ** 2, color=colour, lw=1.6, label=f"s_{m}^2")
    if "simulated_data_overlap_sq" in ds:
        for i, m in enumerate(modes):
            ax.errorbar(ds["simulated_prior_precision"], ds["simulated_data_overlap_sq"].sel(mode=m),
                        yerr=ds["simulated_data_overlap_sq_sem"].sel(mode=m), fmt="o", ms=4, mfc="none", color=colours[i])
    ax.set(ylabel="s_a^2 = <(x.e_a)^2>/N", title=f"chain's overlaps with the data (eta = {ds.attrs['likelihood_weight']:g})")
    ax.legend(fontsize=7)
    return figure


def _shade_phases(ax, values, phase) -> None:
    edges = np.concatenate([[values[0]], np.sqrt(values[1:] * values[:-1]), [values[-1]]])
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or phase[i] != phase[start]:
            name = PHASES[int(phase[start])]
            ax.axvspan(edges[start], edges[i], color=_PHASE_COLOURS[name], zorder=0, lw=0)
            start = i


# --------------------------------------------------------------------------- 2. double descent


def double_descent(
    *,
    data: SpikedTeacher = TEACHER,
    model: SphericalBoltzmann = SphericalBoltzmann(),
    likelihood_weights: Sequence[float] = (3.0, 10.0, 100.0, math.inf),
    prior_precisions: Sequence[float] = tuple(np.geomspace(0.05, 20.0, 800)),
):
    """Reverse and forward KL from the teacher against ``gamma`` at several ``eta``.

    Returns
    -------
    :func:`dmft.phase_diagram` over ``(likelihood_weight, prior_precision)`` plus, per
    ``likelihood_weight``: ``best_prior_precision`` / ``best_reverse_kl`` (the global minimum on the
    grid), ``peak_prior_precision`` / ``peak_reverse_kl`` (the largest interior local maximum of the
    reverse KL; NaN without one), ``condensation_prior_precision`` (the largest ``gamma`` with a
    condensed mode) and ``paramagnetic_plateau`` (``(omega* - 1 - ln omega*)/2``, the ``gamma ->
    inf`` limit).
    """
    if not isinstance(data, SpikedTeacher):
        raise TypeError(f"`data` must be a dmft.SpikedTeacher (the KL needs a teacher), got {type(data).__name__}")
    gammas = _increasing("prior_precisions", prior_precisions, minimum=3)
    etas = [float(e) for e in likelihood_weights]
    training = Langevin(chain_speed=math.inf)
    ds = phase_diagram(model, data, training, over={"training.likelihood_weight": etas, "training.prior_precision": list(gammas)})
    best, best_value, peak, peak_value, condensation = [], [], [], [], []
    for eta in etas:
        curve = ds["reverse_kl"].sel(likelihood_weight=eta).values
        i = int(np.argmin(curve))
        best.append(gammas[i])
        best_value.append(curve[i])
        interior = np.flatnonzero((curve[1:-1] > curve[:-2]) & (curve[1:-1] > curve[2:])) + 1
        j = interior[-1] if interior.size else None
        peak.append(gammas[j] if j is not None else np.nan)
        peak_value.append(curve[j] if j is not None else np.nan)
        condensed = np.flatnonzero(ds["phase"].sel(likelihood_weight=eta).values != 0)
        condensation.append(gammas[condensed[-1]] if condensed.size else np.nan)
    for name, values in (("best_prior_precision", best), ("best_reverse_kl", best_value), ("peak_prior_precision", peak),
                         ("peak_reverse_kl", peak_value), ("condensation_prior_precision", condensation)):
        ds[name] = ("likelihood_weight", np.array(values, dtype=float))
    omega = data.strength
    ds.attrs.update(study="double_descent", paramagnetic_plateau=0.5 * (omega - 1 - math.log(omega)),
                    inverse_temperature=model.inverse_temperature)
    return ds


def plot_double_descent(ds):
    """Reverse and forward KL against ``gamma``, one curve per ``eta``; optimum and peak marked."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    gammas = ds["prior_precision"].values
    etas = ds["likelihood_weight"].values
    colours = colormaps["plasma"](np.linspace(0.0, 0.8, len(etas)))
    figure = Figure(figsize=(10.0, 4.0), layout="constrained")
    axes = figure.subplots(1, 2)
    for ax, name, title in zip(axes, ("reverse_kl", "forward_kl"), ("reverse KL(model || teacher)", "forward KL(teacher || model)")):
        for eta, colour in zip(etas, colours):
            curve = ds[name].sel(likelihood_weight=eta)
            ax.plot(gammas, curve, color=colour, lw=1.5, label=f"eta = {eta:g}")
            if name == "reverse_kl":
                ax.plot(float(ds["best_prior_precision"].sel(likelihood_weight=eta)), float(ds["best_reverse_kl"].sel(likelihood_weight=eta)),
                        "*", ms=9, color=colour, mec="k", mew=0.5)
                if np.isfinite(float(ds["peak_prior_precision"].sel(likelihood_weight=eta))):
                    ax.plot(float(ds["peak_prior_precision"].sel(likelihood_weight=eta)), float(ds["peak_reverse_kl"].sel(likelihood_weight=eta)),
                            "v", ms=6, color=colour, mec="k", mew=0.5)
        if name == "reverse_kl":
            ax.axhline(ds.attrs["paramagnetic_plateau"], color="0.5", ls=":", lw=1, label="paramagnetic plateau (gamma -> inf)")
        ax.set(xscale="log", yscale="log", xlabel="prior precision gamma", ylabel="KL per N", title=title)
        ax.legend(fontsize=7)
    return figure


# --------------------------------------------------------------------------- 3. chain speed


def chain_speed_bias(
    *,
    data: DataCovariance | SpikedTeacher = TEACHER,
    model: SphericalBoltzmann = SphericalBoltzmann(),
    prior_precision: float = 0.5,
    likelihood_weight: float = 10.0,
    speeds: Sequence[float] = (0.3, 1.0, 3.0),
    time: float = 60.0,
    rtol: float = 1e-3,
):
    """Long-time overlaps of training with a persistent chain of speed ``nu`` (:func:`dmft.solve`,
    the large-N dynamics) against the equilibrium negative phase (``nu = inf``, :func:`dmft.equilibrium`).

    Returns
    -------
    ``xarray.Dataset`` with ``s`` ``(chain_speed, mode, time)`` (the dynamics' data overlaps on
    the solver's report grid, interpolated onto ``time``), ``multiplier`` ``(chain_speed, time)``,
    ``final_s`` ``(chain_speed, mode)`` (at the last time), ``equilibrium_s`` ``(mode)``, ``bias``
    ``(chain_speed, mode)`` = ``final_s - equilibrium_s`` (``|s_a|``; the dynamics' sign is that of
    its start), ``plateau_drift`` ``(chain_speed, mode)``: the change of ``|s|`` over the last 20%
    of the run (how far from stationary the last time is); ``final_top_eigenvalue``,
    ``final_reverse_kl``, ``final_forward_kl`` ``(chain_speed)`` (the dynamics' spectral curves at
    the last time; the KL for teacher data only) beside ``equilibrium_*`` (scalars).
    """
    import xarray as xr

    from ..solvers import solve

    speeds = _increasing("speeds", speeds, minimum=1)
    base = Langevin(time=time, prior_precision=prior_precision, likelihood_weight=likelihood_weight, rtol=rtol)
    eq = equilibrium(model, data, base.replace(chain_speed=math.inf))
    grid = np.linspace(0.0, time, 241)
    s, multiplier, wall = [], [], []
    final = {name: [] for name in _FINAL_CURVES}
    for nu in speeds:
        # the spectral learning curves (top eigenvalue, KL) only at the last time: they cost far
        # more than the two-time equations themselves
        result = solve(model, data, base.replace(chain_speed=float(nu)), curves="final")
        s.append(np.array([np.interp(grid, result.time, np.abs(row)) for row in result.arrays["s"]]))
        multiplier.append(np.interp(grid, result.time, result.arrays["multiplier"]))
        wall.append(float(result.info.get("wall_time_s", np.nan)))
        for name in final:
            final[name].append(float(result.arrays[name][-1]) if name in result.arrays else np.nan)
    s = np.array(s)
    late = grid >= 0.8 * time
    variables = {
        "s": (("chain_speed", "mode", "time"), s),
        "multiplier": (("chain_speed", "time"), np.array(multiplier)),
        "final_s": (("chain_speed", "mode"), s[:, :, -1]),
        "equilibrium_s": ("mode", eq.data_overlap),
        "bias": (("chain_speed", "mode"), s[:, :, -1] - eq.data_overlap),
        "plateau_drift": (("chain_speed", "mode"), s[:, :, late][:, :, -1] - s[:, :, late][:, :, 0]),
        "wall_time_s": ("chain_speed", np.array(wall)),
    }
    for name, values in final.items():
        eq_value = getattr(eq, name)
        if eq_value is not None:
            variables[f"final_{name}"] = ("chain_speed", np.array(values))
            variables[f"equilibrium_{name}"] = ((), eq_value)
    ds = xr.Dataset(variables, coords={"chain_speed": speeds, "mode": np.arange(1, eq.data_overlap.size + 1), "time": grid})
    ds.attrs.update(study="chain_speed_bias", equilibrium_multiplier=eq.multiplier, prior_precision=prior_precision,
                    likelihood_weight=likelihood_weight, phase=eq.phase)
    return ds


def plot_chain_speed_bias(ds):
    """``s_1(t)`` per chain speed with the equilibrium level, and the bias against ``nu``."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    speeds = ds["chain_speed"].values
    colours = colormaps["cividis"](np.linspace(0.0, 0.85, len(speeds)))
    figure = Figure(figsize=(10.0, 4.0), layout="constrained")
    axes = figure.subplots(1, 2)
    ax = axes[0]
    for nu, colour in zip(speeds, colours):
        ax.plot(ds["time"], ds["s"].sel(chain_speed=nu, mode=1), color=colour, lw=1.5, label=f"nu = {nu:g}")
    ax.axhline(float(ds["equilibrium_s"].sel(mode=1)), color="k", ls="--", lw=1, label="equilibrium (nu = inf)")
    ax.set(xlabel="training time t", ylabel="|s_1(t)|", title="top data overlap during training")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.plot(speeds, ds["bias"].sel(mode=1), "o-", label="|s_1(T)| - s_1(equilibrium)")
    for name, marker in (("reverse_kl", "s--"), ("forward_kl", "^--")):
        if f"final_{name}" in ds:
            ax.plot(speeds, ds[f"final_{name}"] - ds[f"equilibrium_{name}"], marker, label=f"{name.replace('_', ' ')}(T) - equilibrium")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set(xscale="log", xlabel="chain speed nu", ylabel="bias of the trained model", title=f"out-of-equilibrium bias at t = {float(ds['time'][-1]):g}")
    ax.legend(fontsize=7)
    return figure


# --------------------------------------------------------------------------- 4. sampling temperature


def sampling_temperature(
    *,
    data: SpikedTeacher = TEACHER,
    likelihood_weight: float = 10.0,
    prior_precisions: Sequence[float] = (0.1, 0.3, 1.0, 3.0),
    inverse_temperatures: Sequence[float] = tuple(np.geomspace(0.05, 5.0, 500)),
):
    """Reverse and forward KL against the inverse temperature ``beta`` (of the training chain and of
    generation), per ``gamma``.

    Returns
    -------
    :func:`dmft.phase_diagram` over ``(prior_precision, inverse_temperature)`` plus, per
    ``prior_precision``: ``best_beta_reverse``, ``best_beta_forward`` (the minimisers on the grid),
    ``best_reverse_kl``, ``best_forward_kl``, ``reverse_kl_at_one``, ``forward_kl_at_one``
    (``beta = 1``, interpolated), and ``best_at_grid_edge`` (a minimiser on the grid's end: the
    optimum may lie outside).
    """
    if not isinstance(data, SpikedTeacher):
        raise TypeError(f"`data` must be a dmft.SpikedTeacher (the KL needs a teacher), got {type(data).__name__}")
    betas = _increasing("inverse_temperatures", inverse_temperatures, minimum=3)
    gammas = _increasing("prior_precisions", prior_precisions, minimum=1)
    training = Langevin(likelihood_weight=likelihood_weight, chain_speed=math.inf)
    ds = phase_diagram(SphericalBoltzmann(), data, training,
                       over={"training.prior_precision": list(gammas), "model.inverse_temperature": list(betas)})
    for name, variable in (("reverse", "reverse_kl"), ("forward", "forward_kl")):
        curves = ds[variable].values
        index = np.argmin(curves, axis=1)
        ds[f"best_beta_{name}"] = ("prior_precision", betas[index])
        ds[f"best_{variable}"] = ("prior_precision", curves[np.arange(len(gammas)), index])
        ds[f"{variable}_at_one"] = ("prior_precision", np.array([np.interp(0.0, np.log(betas), row) for row in curves]))
        edge = (index == 0) | (index == len(betas) - 1)
        ds[f"best_at_grid_edge_{name}"] = ("prior_precision", edge)
    ds.attrs.update(study="sampling_temperature", likelihood_weight=likelihood_weight)
    return ds


def plot_sampling_temperature(ds):
    """KL against ``beta``, one curve per ``gamma``, minima marked; ``beta = 1`` dotted."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    betas = ds["inverse_temperature"].values
    gammas = ds["prior_precision"].values
    colours = colormaps["viridis"](np.linspace(0.0, 0.85, len(gammas)))
    figure = Figure(figsize=(10.0, 4.0), layout="constrained")
    axes = figure.subplots(1, 2)
    for ax, name in zip(axes, ("reverse", "forward")):
        variable = f"{name}_kl"
        for gamma, colour in zip(gammas, colours):
            ax.plot(betas, ds[variable].sel(prior_precision=gamma), color=colour, lw=1.5, label=f"gamma = {gamma:g}")
            ax.plot(float(ds[f"best_beta_{name}"].sel(prior_precision=gamma)), float(ds[f"best_{variable}"].sel(prior_precision=gamma)),
                    "*", ms=9, color=colour, mec="k", mew=0.5)
        ax.axvline(1.0, color="0.5", ls=":", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="inverse temperature beta", ylabel="KL per N",
               title=f"{name} KL (eta = {ds.attrs['likelihood_weight']:g})")
        ax.legend(fontsize=7)
    return figure
