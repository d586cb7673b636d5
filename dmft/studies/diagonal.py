"""Diagonal linear networks (THEORY.md section 4, issue 5): three studies, each returning
``(xarray.Dataset, matplotlib Figure)``.

* :func:`incremental_learning`: at small initialisation the coordinates are learned one after the
  other, largest ``|beta*|`` first (saddle-to-saddle; with ``alpha = 2`` by default, where the
  teacher is recoverable). DMFT (with
  its Monte Carlo band) and one simulated network overlaid; the coordinate trajectories of the
  simulated network beside sites of the DMFT's single-site process with the same ``beta*``.
* :func:`crossover`: final test loss against ``init_scale`` from 1e-3 to 10: the DMFT gradient flow
  at long time (:class:`dmft.GradientFlow`), the implicit-bias fixed point (minimum-``Q_s``
  interpolator, THEORY.md 4.2), the finite-size convex program and simulations, with the
  minimum-l2 and basis-pursuit ends marked.
* :func:`tradeoff`: steps to reach a train loss of 1e-3 against the final test loss, across
  ``init_scale``: small init generalises better (sparser interpolator) but learns slower.

The crossover and trade-off use the sparse-recovery problem of THEORY.md section 4 by default
(``alpha = 0.5``, ``SparseTeacher(density=0.2)``, noiseless).

Example
-------
>>> from dmft.studies import diagonal
>>> ds, fig = diagonal.crossover(scales=(0.01, 0.1, 1.0), sites=8192)
>>> fig.savefig("crossover.png")
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..data import GaussianData, SparseTeacher
from .._implicit_bias import basis_pursuit, implicit_bias, minimum_l2_test_loss, minimum_q_interpolator
from ..models import DiagonalLinear
from ..solvers import solve
from ..training import GradientDescent, GradientFlow

__all__ = [
    "DEFAULT_DATA",
    "INCREMENTAL_DATA",
    "incremental_learning",
    "crossover",
    "tradeoff",
    "stable_learning_rate",
    "steps_to_reach",
    "flow_time",
]

DEFAULT_DATA = GaussianData(alpha=0.5, noise=0.0, teacher=SparseTeacher(density=0.2))


def stable_learning_rate(init_scale: float, alpha: float, base: float = 0.05, margin: float = 0.25) -> float:
    """``min(base, margin / (4 s^2 lambda_max))``: near initialisation a depth-2 network is linear
    regression at learning rate ``4 s^2 eta`` and ``lambda_max = (1 + alpha^{-1/2})^2`` is the top
    of the Marchenko-Pastur spectrum of ``X^T X / P``; ``margin = 0.25`` keeps the discrete steps
    close to the gradient flow (the implicit bias is that of the flow)."""
    top = (1.0 + 1.0 / math.sqrt(alpha)) ** 2
    return min(base, margin / (4.0 * init_scale**2 * top))


def steps_to_reach(curve: np.ndarray, level: float) -> float:
    """First step at which ``curve`` falls below ``level`` (``nan`` if it never does)."""
    below = np.flatnonzero(np.asarray(curve) < level)
    return float(below[0]) if below.size else float("nan")


def _simulate(model, data, training, dim, seeds, seed, snapshot_every=None):
    import finite_size

    return finite_size.simulate(model, data, training, dim=dim, seeds=seeds, seed=seed,
                                snapshot_every=snapshot_every)


# ----------------------------------------------------------------------------------------------
# (1) incremental learning
# ----------------------------------------------------------------------------------------------


INCREMENTAL_DATA = GaussianData(alpha=2.0, noise=0.0, teacher=SparseTeacher(density=0.2))


def incremental_learning(
    init_scale: float = 1e-3,
    data: GaussianData = INCREMENTAL_DATA,
    *,
    learning_rate: float = 0.05,
    steps: int = 300,
    sites: int = 32768,
    dim: int = 2000,
    coordinates: int = 6,
    replicas: int = 8,
    record_every: int = 5,
    seed: int = 0,
):
    """Saddle-to-saddle learning at small ``init_scale``: the test loss and the coordinates.

    Runs one simulated network of dimension ``dim`` (with snapshots of ``beta``) and the DMFT
    (``sites`` sites in ``replicas`` replicas). For ``coordinates`` teacher coefficients of the
    simulated network, spread geometrically from the largest ``|beta*_j|`` down to a sixth of it,
    it records the simulated trajectory ``beta_j(t)`` and, for the same
    ``beta*_j``, the trajectories of DMFT sites given that teacher (``trace=``, one per replica,
    every ``record_every`` steps). A coordinate with teacher ``beta*`` is learned around
    ``t ~ log(beta* / (2 s^2)) / (4 eta |beta*|)`` (THEORY.md 4.2, ``predicted_half_time``), so
    they come in order of ``|beta*|`` and the loss falls in steps.

    Returns
    -------
    ``(dataset, figure)``: dataset variables ``dmft_test_loss``, ``dmft_test_loss_sem``,
    ``dmft_train_loss``, ``simulation_test_loss``, ``simulation_train_loss`` (dim ``step``);
    ``teacher`` (dim ``coordinate``), ``simulated_beta`` (``coordinate, snapshot``),
    ``dmft_beta`` (``replica, coordinate, record``, at ``record_step``), ``predicted_half_time``
    (``coordinate``).
    """
    import xarray as xr

    model = DiagonalLinear(depth=2, init_scale=init_scale)
    training = GradientDescent(learning_rate=learning_rate, steps=steps)
    sim = _simulate(model, data, training, dim, 1, seed + 1, snapshot_every=record_every)
    teacher = sim.arrays["teacher"][0]
    largest = np.max(np.abs(teacher))
    targets = largest * np.geomspace(1.0, 1.0 / 6.0, coordinates)
    order = np.array([np.argmin(np.abs(np.abs(teacher) - target)) for target in targets])
    chosen = teacher[order]
    theory = solve(model, data, training, sites=sites, replicas=replicas, seed=seed, trace=chosen,
                   block=record_every)
    s2 = init_scale**2
    half_time = np.log(np.abs(chosen) / (2 * s2)) / (4 * learning_rate * np.abs(chosen))
    ds = xr.Dataset(
        {
            "dmft_test_loss": ("step", theory.test_loss),
            "dmft_test_loss_sem": ("step", theory.test_loss_sem),
            "dmft_train_loss": ("step", theory.train_loss),
            "simulation_test_loss": ("step", sim.test_loss),
            "simulation_train_loss": ("step", sim.train_loss),
            "teacher": ("coordinate", chosen),
            "simulated_beta": (("coordinate", "snapshot"), sim.arrays["beta"][:, 0, order].T),
            "dmft_beta": (("replica", "coordinate", "record"), theory.arrays["traced_beta"]),
            "predicted_half_time": ("coordinate", half_time),
        },
        coords={"step": np.arange(steps + 1), "snapshot": sim.arrays["snapshot_steps"],
                "coordinate": np.arange(coordinates), "record_step": ("record", theory.arrays["traced_steps"])},
        attrs={"init_scale": init_scale, "learning_rate": learning_rate, "sites": sites, "dim": dim},
    )
    return ds, _plot_incremental(ds)


def _plot_incremental(ds):
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    step = ds["step"].values
    mean, sem = ds["dmft_test_loss"].values, ds["dmft_test_loss_sem"].values
    left.plot(step, mean, "C0-", lw=1.6, label="DMFT test")
    left.fill_between(step, mean - 2 * sem, mean + 2 * sem, color="C0", alpha=0.25, lw=0)
    left.plot(step, ds["dmft_train_loss"].values, "C0--", lw=1.2, label="DMFT train")
    every = max(1, len(step) // 60)
    left.plot(step[::every], ds["simulation_test_loss"].values[::every], "ko", ms=2.5, mfc="none",
              label=f"one network, D = {ds.attrs['dim']}, test")
    left.plot(step[::every], ds["simulation_train_loss"].values[::every], "ks", ms=2, mfc="none", label="train")
    left.set_yscale("log")
    left.set_xlabel("step")
    left.set_ylabel("loss")
    left.set_title(f"incremental learning, s = {ds.attrs['init_scale']:g}")
    left.legend(fontsize=7)
    records = ds["record_step"].values
    for k in ds["coordinate"].values:
        color = f"C{k % 10}"
        right.plot(ds["snapshot"].values, ds["simulated_beta"].values[k], "-", color=color, lw=1.8)
        for replica in range(ds.sizes["replica"]):
            right.plot(records, ds["dmft_beta"].values[replica, k], ":", color=color, lw=0.8, alpha=0.7)
        right.axhline(ds["teacher"].values[k], color=color, lw=0.6, alpha=0.5)
        right.axvline(ds["predicted_half_time"].values[k], color=color, lw=0.6, ls="--", alpha=0.5)
    right.set_xlabel("step")
    right.set_ylabel(r"$\beta_j(t)$")
    right.set_title(r"$\beta_j(t)$: network (solid), DMFT sites (dotted), predicted half-time (dashed)",
                    fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# (2) the kernel-to-rich crossover, (3) the speed / generalisation trade-off
# ----------------------------------------------------------------------------------------------


def flow_time(init_scale: float, alpha: float, time: float) -> float:
    """How long the crossover study runs the flow at ``init_scale``: ``time``, or less where the
    network is lazy: every coordinate moves at a rate ``k = dF/drho >= 8 s^2`` (``8 s^2 cosh(4 rho)``
    at depth 2), so the slowest data direction (eigenvalue ``lambda_min = (1 - alpha^{-1/2})^2`` of
    ``X^T X / P``) has decayed by ``exp(-2 * 8 s^2 lambda_min t)``, i.e. ``e^{-64}``, by
    ``t = 4 / (s^2 lambda_min)`` (long converged; e.g. 0.3 at ``s = 10``, 2.9e3 at ``s = 0.1``)."""
    smallest = (1.0 - 1.0 / math.sqrt(alpha)) ** 2
    if smallest == 0.0:
        return time
    return min(time, 4.0 / (init_scale**2 * smallest))


def crossover(
    scales: Sequence[float] = (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
    data: GaussianData = DEFAULT_DATA,
    *,
    time: float = 3000.0,
    sites: int = 32768,
    replicas: int = 8,
    dim: int = 1000,
    seeds: int = 4,
    simulation_time: float = 200.0,
    curve_points: int = 25,
    seed: int = 0,
    simulate: bool = True,
):
    """Final test loss against ``init_scale``: the gradient flow at long time (DMFT), the
    implicit-bias fixed point, the convex program, simulations, and the two ends (minimum l2
    ``rho (1 - alpha)``, basis pursuit).

    Each scale runs :class:`dmft.GradientFlow` to :func:`flow_time` (``time``, shorter where the
    network is lazy and has long converged), with the curves saved on a geometric grid of times.
    ``sites`` in ``replicas`` replicas: 4096 sites each by default, because the smallest scales need
    several hundred innovation coordinates (a quarter of the sites of a replica at most). The
    simulations (``seeds`` networks of dimension ``dim``) train by gradient descent at
    ``eta = stable_learning_rate(s)`` for ``min(simulation_time, flow time)``: a finite time at
    which the smallest scales have not finished learning (their smallest teacher coefficients
    take a time ``~log(1/s^2) / |beta*|``), and an ``O(eta)`` bias. The convex program
    (:func:`dmft.minimum_q_interpolator`) is solved on ``seeds`` fresh data sets of the same size.

    Returns
    -------
    ``(dataset, figure)``: per ``init_scale`` the variables ``dmft_test_loss``,
    ``dmft_test_loss_sem``, ``dmft_train_loss``, ``flow_time``, ``simulation_test_loss``,
    ``simulation_test_loss_sem``, ``simulation_learning_rate``, ``program_test_loss``,
    ``program_test_loss_sem``; the fixed point on a fine grid (``fine_scale``:
    ``implicit_bias_test_loss``); the flow's curves ``dmft_test_curve``, ``dmft_train_curve``
    (``init_scale, time``, NaN past each run's end); attributes ``minimum_l2``, ``basis_pursuit``.
    """
    import xarray as xr

    scales = np.asarray(scales, dtype=float)
    rows = {name: np.full(scales.size, np.nan) for name in (
        "dmft_test_loss", "dmft_test_loss_sem", "dmft_train_loss", "flow_time", "simulation_test_loss",
        "simulation_test_loss_sem", "simulation_learning_rate", "program_test_loss", "program_test_loss_sem")}
    grid = np.concatenate([[0.0], np.geomspace(1e-2, time, 60)])
    test_curves = np.full((scales.size, grid.size), np.nan)
    train_curves = np.full((scales.size, grid.size), np.nan)
    for k, s in enumerate(scales):
        model = DiagonalLinear(depth=2, init_scale=float(s))
        end = flow_time(float(s), data.alpha, time)
        save = grid[grid < end]
        result = solve(model, data, GradientFlow(end, save_at=tuple(save) + (end,)), sites=sites, replicas=replicas,
                       seed=seed + k)
        rows["dmft_test_loss"][k] = result.test_loss[-1]
        rows["dmft_test_loss_sem"][k] = result.test_loss_sem[-1]
        rows["dmft_train_loss"][k] = result.train_loss[-1]
        rows["flow_time"][k] = end
        test_curves[k, : save.size] = result.test_loss[:-1]
        train_curves[k, : save.size] = result.train_loss[:-1]
        if simulate:
            eta = stable_learning_rate(float(s), data.alpha)
            steps = max(1, int(round(min(simulation_time, end) / eta)))
            sim = _simulate(model, data, GradientDescent(learning_rate=eta, steps=steps), dim, seeds, seed + 100 + k)
            rows["simulation_test_loss"][k] = sim.test_loss[-1]
            rows["simulation_test_loss_sem"][k] = sim.test_loss_sem[-1]
            rows["simulation_learning_rate"][k] = eta
        program = _program_losses(float(s), data, dim, seeds, seed + 200 + k)
        rows["program_test_loss"][k] = np.mean(program)
        rows["program_test_loss_sem"][k] = np.std(program, ddof=1) / math.sqrt(len(program)) if len(program) > 1 else np.nan
    fine = np.logspace(math.log10(scales.min()), math.log10(scales.max()), curve_points)
    fixed_point = np.array([implicit_bias(DiagonalLinear(2, float(s)), data).test_loss for s in fine])
    ds = xr.Dataset(
        {name: ("init_scale", value) for name, value in rows.items()}
        | {
            "implicit_bias_test_loss": ("fine_scale", fixed_point),
            "dmft_test_curve": (("init_scale", "time"), test_curves),
            "dmft_train_curve": (("init_scale", "time"), train_curves),
        },
        coords={"init_scale": scales, "fine_scale": fine, "time": grid},
        attrs={
            "minimum_l2": minimum_l2_test_loss(data),
            "basis_pursuit": basis_pursuit(data).test_loss,
            "alpha": data.alpha, "noise": data.noise, "sites": sites, "dim": dim, "seeds": seeds,
            "time": time, "simulation_time": simulation_time,
        },
    )
    return ds, _plot_crossover(ds)


def _program_losses(init_scale, data, dim, seeds, seed):
    """Test loss of the finite-size minimum-Q interpolator on ``seeds`` fresh data sets."""
    rng = np.random.default_rng(seed)
    density = 1.0 if data.teacher is None else data.teacher.density
    scale = 1.0 if data.teacher is None else data.teacher.scale
    count = int(round(data.alpha * dim))
    losses = []
    for _ in range(seeds):
        beta_star = scale * rng.standard_normal(dim) * (rng.random(dim) < density)
        X = rng.standard_normal((count, dim))
        y = X @ beta_star / math.sqrt(dim) + data.noise * rng.standard_normal(count)
        beta = minimum_q_interpolator(X, y, init_scale, max_iterations=500).beta
        losses.append(np.sum((beta - beta_star) ** 2) / dim + data.noise**2)
    return losses


def _plot_crossover(ds):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ds["fine_scale"], ds["implicit_bias_test_loss"], "k-", lw=1.4, label="implicit bias (fixed point)")
    s = ds["init_scale"].values
    ax.errorbar(s, ds["dmft_test_loss"], yerr=2 * ds["dmft_test_loss_sem"].values, fmt="o", color="C0",
                ms=5, capsize=2, label=f"DMFT gradient flow, time {ds.attrs['time']:g} (lazy: until converged)")
    if np.any(np.isfinite(ds["simulation_test_loss"].values)):
        ax.errorbar(s * 1.08, ds["simulation_test_loss"], yerr=ds["simulation_test_loss_sem"].values, fmt="s",
                    color="C1", ms=4, mfc="none", capsize=2,
                    label=f"simulation, D = {ds.attrs['dim']}, GD to time {ds.attrs['simulation_time']:g}")
    ax.errorbar(s / 1.08, ds["program_test_loss"], yerr=ds["program_test_loss_sem"].values, fmt="^", color="C2",
                ms=4, mfc="none", capsize=2, label=f"convex program, D = {ds.attrs['dim']}")
    ax.axhline(ds.attrs["minimum_l2"], color="C3", ls="--", lw=1, label=r"minimum $\ell_2$: $\rho(1-\alpha)$")
    ax.axhline(ds.attrs["basis_pursuit"], color="C4", ls="--", lw=1, label=r"basis pursuit (minimum $\ell_1$)")
    ax.set_xscale("log")
    ax.set_xlabel("init_scale s")
    ax.set_ylabel("final test loss")
    ax.set_title(r"kernel-to-rich crossover ($\alpha$ = %g)" % ds.attrs["alpha"])
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def tradeoff(
    scales: Sequence[float] = (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5),
    data: GaussianData = DEFAULT_DATA,
    *,
    learning_rate: float = 0.05,
    steps: int = 4000,
    level: float = 1e-3,
    sites: int = 16384,
    seed: int = 0,
):
    """Steps to reach a train loss of ``level`` against the final test loss, across ``init_scale``.

    All scales train at the same ``learning_rate`` for ``steps`` steps (so steps compare), with
    the DMFT. The default scales stop at 0.5: beyond, ``eta = 0.05`` approaches the edge of
    stability of the lazy regime (``4 s^2 eta lambda_max -> 2``) and fitting slows down again.
    Small scales reach the sparse, better-generalising
    interpolator but sit on plateaus first; large scales fit fast and generalise like the
    minimum-l2 interpolator.

    Returns
    -------
    ``(dataset, figure)``: per ``init_scale``: ``steps_to_level``, ``final_test_loss``,
    ``final_test_loss_sem``, ``implicit_bias_test_loss``.
    """
    import xarray as xr

    scales = np.asarray(scales, dtype=float)
    reach = np.full(scales.size, np.nan)
    final = np.full(scales.size, np.nan)
    final_sem = np.full(scales.size, np.nan)
    for k, s in enumerate(scales):
        result = solve(DiagonalLinear(2, float(s)), data, GradientDescent(learning_rate, steps), sites=sites,
                       seed=seed + k)
        train, test, sem = result.train_loss, result.test_loss[-1], result.test_loss_sem[-1]
        reach[k] = steps_to_reach(train, level)
        final[k], final_sem[k] = test, sem
    fixed_point = np.array([implicit_bias(DiagonalLinear(2, float(s)), data).test_loss for s in scales])
    ds = xr.Dataset(
        {
            "steps_to_level": ("init_scale", reach),
            "final_test_loss": ("init_scale", final),
            "final_test_loss_sem": ("init_scale", final_sem),
            "implicit_bias_test_loss": ("init_scale", fixed_point),
        },
        coords={"init_scale": scales},
        attrs={"level": level, "learning_rate": learning_rate, "steps": steps, "sites": sites},
    )
    return ds, _plot_tradeoff(ds)


def _plot_tradeoff(ds):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    s = ds["init_scale"].values
    x, y, err = ds["steps_to_level"].values, ds["final_test_loss"].values, 2 * ds["final_test_loss_sem"].values
    ax.errorbar(x, y, yerr=err, fmt="o-", color="C0", ms=5, capsize=2, label="DMFT")
    for xi, yi, si in zip(x, y, s):
        if np.isfinite(xi):
            ax.annotate(f"s={si:g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"steps to train loss {ds.attrs['level']:g} (eta = {ds.attrs['learning_rate']:g})")
    ax.set_ylabel(f"test loss at step {ds.attrs['steps']}")
    ax.set_title("fast fitting vs good generalisation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
