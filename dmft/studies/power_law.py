"""Power-law data: lazy vs rich learning curves over long windows, fitted exponents, compute frontier.

Data: ``GaussianData(alpha=None, spectrum=PowerLaw(a, b, modes=M))``, the population (infinite data)
gradient flow :class:`dmft.GradientFlow` of a muP deep linear network at infinite width
(``width_ratio = 1e10``), from flow time 0 to ``1e4`` and beyond. In this package's convention
(:class:`dmft.PowerLaw`, docs/power_law.md) mode ``k = 1..M`` has covariance eigenvalue
``lambda_k = k^{-a}`` (top eigenvalue 1 at every ``M``) and signal ``lambda_k b_k ~ k^{-a b - 1}``
normalised to an initial loss of 1; ``M = 1e5`` modes by default (a quadrature of ~100 weighted
shares), so the cut-off ``t ~ M^a`` lies far beyond any window.

The kernel (lazy) rate, derived
-------------------------------
In the lazy limit (``gamma0 -> 0`` at infinite width) a plain deep linear network with ``L`` hidden
layers is linear regression with the fixed kernel ``(L + 1) Sigma``: each of its ``L + 1`` weight
matrices contributes ``Sigma`` to the neural tangent kernel at initialisation. Its population flow is

    L(t) - sigma^2 = sum_k w_k lambda_k b_k exp(-2 (L + 1) lambda_k t)              (kernel_curve)

(:func:`dmft.solvers.linear.population_flow_curves` at time ``(L + 1) t``). Replacing the sum by an
integral (many modes learned, many still to learn) with ``u = 2 (L + 1) t k^{-a}``::

    L(t) - sigma^2 ~ Gamma(b) / (a H_M(a b + 1)) (2 (L + 1) t)^{-b}                 (kernel_asymptote)

(``H_M(s) = sum_{k <= M} k^{-s}``): the kernel rate is ``t^{-b}``, whatever ``a``. The mode being
learned at ``t`` is ``k*(t) = (2 (L + 1) t)^{1/a}``; the asymptote is reached once ``k* >> 1`` (the
summand and all its derivatives vanish at ``k = 0``, so the sum differs from the integral by terms that
fall faster than any power of ``k*``) and holds until ``k* ~ M``: the missing modes ``k > M`` take a
relative ``~ (k* / M)^{a b}`` off it, and bend the curve down once ``k* ~ M``.

The rich rate, published
------------------------
Bordelon, Atanasov & Pehlevan ("How feature learning can improve neural scaling laws", ICLR 2025,
arXiv:2409.17858) report ``L ~ t^{-2b/(1+b)}`` for hard tasks (``b < 1``) and ``t^{-b}`` for easy
ones, at late times in the rich regime of *their* solvable model: a two-layer linear network at
infinite width, trained on the population loss, with the hidden layer updated by a projected
gradient descent (the plain two-layer linear network is in their appendix). Our setting, a muP deep
linear network in the proportional limit under the population flow, is close to but not the same
model; the study reports what the DMFT gives and compares (docs/power_law.md: at depth 1 the rich
exponent saturates at ``2b/(1+b)`` for hard tasks and stays ``b`` for easy ones).

Fits and their uncertainty
--------------------------
A DMFT curve is deterministic: there is no sampling noise, so the standard error of a least-squares
slope only measures how far the curve is from a straight line on the chosen window (its residuals
are curvature, not independent errors), and it shrinks as points are added. The honest uncertainty
of an exponent is its dependence on where the power law is taken to hold. :func:`fit_power_law`
therefore fits ``log L`` against ``log t`` on log-spaced times of a window ``[t0, t1]`` and reports,
as the interval, the smallest and largest slope over every sub-window ``[s0, s1]`` of it (endpoints
on the same log grid) that spans at least half of the window's decades: a bootstrap over window
choices. A pure power law gives a point interval; a curved one an interval as wide as its local
exponent wanders (``local_exponent``, ``-d log(L - sigma^2) / d log t``, shows where it settles).

Compute-optimal frontier
------------------------
At finite width ``nu`` (muP, richness ``gamma0``) the loss has the initialisation-variance part
``mean_k(w_k lambda_k) / (gamma0^2 nu)`` at ``t = 0`` (``~ zeta(a) / (M gamma0^2 nu)`` for the
top-normalised power law: the width that matters is ``nu ~ 1 / M``, the effective dimension of the
data relative to ``D``). Training a width ``nu`` for a flow time ``t`` costs ``C = nu t`` (in units of
``D``); the frontier is ``L*(C) = min_nu L(nu, C / nu)`` (:func:`dmft.studies.scaling.loss_at_compute`)
and its exponent is fitted like the others over the budgets at which every width is in range.

Example
-------
>>> from dmft.studies import power_law
>>> ds, fig = power_law.power_law_study()
>>> ds["exponent"].to_series(), ds.attrs["kernel_rate"], ds.attrs["rich_rate_published"]
"""

from __future__ import annotations

import math
import time as _time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..data import GaussianData, PowerLaw
from ..errors import DivergenceError
from ..models import DeepLinear
from ..solvers import solve
from ..solvers.linear import population_flow_curves
from ..training import GradientFlow
from .scaling import loss_at_compute

__all__ = [
    "PowerLawFit",
    "fit_power_law",
    "kernel_curve",
    "kernel_asymptote",
    "local_exponent",
    "rich_rate_published",
    "power_law_study",
    "flow_report_times",
    "INFINITE_WIDTH",
]

#: the width ratio standing for "infinite width": the initialisation variance
#: ``mean(lambda) / (gamma0^2 nu)`` is then below 1e-6 for every ``gamma0 >= 0.01``
INFINITE_WIDTH = 1e10


# --------------------------------------------------------------------------- fits


@dataclass(frozen=True)
class PowerLawFit:
    """A fit ``L(t) ~ prefactor * t^{-exponent}`` on ``window``.

    ``low``, ``high``: the smallest and largest exponent over the sub-windows (module docstring:
    the interval from window choices); ``standard_error``: the least-squares standard error of the
    full-window slope (curvature, not noise: see the module docstring); ``points``: the number of
    log-spaced steps fitted.
    """

    exponent: float
    low: float
    high: float
    standard_error: float
    prefactor: float
    window: tuple[float, float]
    points: int

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in ``[low, high]``."""
        return self.low <= value <= self.high


def fit_power_law(
    steps: Sequence[float],
    losses: Sequence[float],
    window: tuple[float, float],
    *,
    points: int = 16,
    min_span: float = 0.5,
) -> PowerLawFit:
    """Least-squares fit of ``log L = log A - p log t`` on ``window`` with an interval from window choices.

    Parameters
    ----------
    steps, losses : the curve at increasing times (steps, flow times or compute; the loss must be
        positive in the window).
    window : ``(t0, t1)`` with ``0 < t0 < t1`` inside the range of ``steps``.
    points : how many log-spaced points of the window are fitted (the nearest available times; equal
        weight per decade, unlike all integer steps, which would weigh the late end most).
    min_span : sub-windows must span at least this fraction of the window's decades.

    Returns
    -------
    :class:`PowerLawFit`.

    Raises
    ------
    ValueError : a window outside the curve, fewer than 3 distinct points, or a non-positive loss.
    """
    steps = np.asarray(steps, dtype=float)
    losses = np.asarray(losses, dtype=float)
    if steps.shape != losses.shape or steps.ndim != 1:
        raise ValueError(f"`steps` and `losses` must be 1-d of equal length, got {steps.shape} and {losses.shape}")
    t0, t1 = (float(w) for w in window)
    if not (0 < t0 < t1) or t0 < steps[steps > 0].min() or t1 > steps.max():
        raise ValueError(
            f"`window` must satisfy 0 < t0 < t1 within the curve's positive steps "
            f"[{steps[steps > 0].min():g}, {steps.max():g}], got {window!r}"
        )
    if not 0 < min_span <= 1:
        raise ValueError(f"`min_span` must lie in (0, 1], got {min_span}")
    targets = np.geomspace(t0, t1, points)
    candidates = np.flatnonzero((steps >= t0) & (steps <= t1))
    chosen = np.unique([candidates[np.argmin(np.abs(np.log(steps[candidates]) - np.log(x)))] for x in targets])
    if chosen.size < 3:
        raise ValueError(f"the window {window!r} holds fewer than 3 distinct steps")
    x, y = np.log(steps[chosen]), losses[chosen]
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError(f"the loss must be finite and positive in the window {window!r}")
    y = np.log(y)
    slope, intercept, standard_error = _line(x, y)
    span = x[-1] - x[0]
    slopes = [
        _line(x[i : j + 1], y[i : j + 1])[0]
        for i in range(x.size)
        for j in range(i + 2, x.size)
        if x[j] - x[i] >= min_span * span - 1e-12
    ]
    return PowerLawFit(
        exponent=-slope,
        low=-max(slopes),
        high=-min(slopes),
        standard_error=standard_error,
        prefactor=float(np.exp(intercept)),
        window=(float(steps[chosen[0]]), float(steps[chosen[-1]])),
        points=int(chosen.size),
    )


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares ``y = slope x + intercept`` and the slope's standard error."""
    xm = x - x.mean()
    sxx = float(xm @ xm)
    slope = float(xm @ (y - y.mean())) / sxx
    intercept = float(y.mean() - slope * x.mean())
    residual = y - (slope * x + intercept)
    dof = max(x.size - 2, 1)
    return slope, intercept, float(math.sqrt(float(residual @ residual) / dof / sxx))


# --------------------------------------------------------------------------- the kernel reference


def kernel_curve(spectrum: PowerLaw, times, *, depth: int = 1, noise: float = 0.0) -> np.ndarray:
    """The lazy, infinite-width test loss under the population flow (exact, module docstring):
    ``sum_k w_k lambda_k b_k exp(-2 (depth + 1) lambda_k t) + sigma^2`` at ``times``, on the shares of
    ``spectrum.resolve()`` (the same shares the DMFT uses)."""
    times = np.asarray(times, dtype=float)
    return population_flow_curves(noise, spectrum.resolve(), (depth + 1) * times)["test_loss"]


def kernel_asymptote(spectrum: PowerLaw, times, *, depth: int = 1) -> np.ndarray:
    """``Gamma(b) / (a H_M(a b + 1)) (2 (depth + 1) t)^{-b}``: the kernel power law (module docstring);
    ``H_M`` summed on the spectrum's mode rule (exact up to ``EXACT_MODES`` modes)."""
    a, b = spectrum.a, spectrum.b
    k, counts = spectrum.mode_rule()
    harmonic = math.fsum(counts * k ** (-a * b - 1.0))
    t = np.asarray(times, dtype=float)
    return math.gamma(b) / (a * harmonic) * (2.0 * (depth + 1) * t) ** (-b)


def local_exponent(times, losses) -> np.ndarray:
    """``-d log L / d log t`` at every time (second-order differences on the log grid; NaN where a
    neighbour is not positive)."""
    times = np.asarray(times, dtype=float)
    losses = np.asarray(losses, dtype=float)
    out = np.full(times.size, np.nan)
    good = (times > 0) & (losses > 0) & np.isfinite(losses)
    if good.sum() >= 3:
        out[good] = -np.gradient(np.log(losses[good]), np.log(times[good]))
    return out


def rich_rate_published(b: float) -> float:
    """``2 b / (1 + b)`` for ``b < 1`` (Bordelon, Atanasov & Pehlevan 2025), else the kernel rate ``b``."""
    return 2.0 * b / (1.0 + b) if b < 1 else float(b)


# --------------------------------------------------------------------------- the study


def flow_report_times(time: float, *, first: float = 1e-2, points_per_decade: int = 20) -> np.ndarray:
    """``0`` and ``points_per_decade`` log-spaced times per decade from ``first`` to ``time``."""
    count = max(2, int(math.ceil(points_per_decade * math.log10(time / first))) + 1)
    return np.concatenate([[0.0], np.geomspace(first, time, count)])


def _solve_curves(models, data, training, options, progress, label):
    """Test losses ``(len(models), len(times))`` (NaN rows for diverged runs), status codes and
    messages, and the wall time of each solve."""
    curves = np.full((len(models), len(training.save_at)), np.nan)
    status, messages, seconds = [], [], []
    iterator = models
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(models, desc=label)
    for i, model in enumerate(iterator):
        started = _time.perf_counter()
        try:
            result = solve(model, data, training, **options)
        except DivergenceError as error:
            status.append(-1)
            messages.append(f"diverged: {error}")
        else:
            curves[i] = result.test_loss
            status.append(int(result.status))
            messages.append(result.message)
        seconds.append(_time.perf_counter() - started)
    return curves, np.array(status), messages, np.array(seconds)


def power_law_study(
    *,
    a: float = 3.0,
    b: float = 0.5,
    modes: int = 100_000,
    depth: int = 1,
    richness: Sequence[float] = (0.01, 1.0, 10.0),
    time: float = 1e4,
    window: tuple[float, float] = (10.0, 1e4),
    noise: float = 0.0,
    rtol: float = 1e-4,
    frontier_widths: Sequence[float] | None = (1e-7, 1e-6, 1e-5),
    frontier_richness: float = 1.0,
    frontier_time: float | None = 1e5,
    points_per_decade: int = 20,
    figure: bool = True,
    progress: bool = False,
    solve_options: dict | None = None,
):
    """Learning curves on power-law data, lazy to rich, their exponents, and the compute frontier (DMFT).

    Parameters
    ----------
    a, b, modes : the :class:`dmft.PowerLaw` spectrum (capacity, source, number of modes ``M``).
    depth : hidden layers of the plain :class:`dmft.DeepLinear` network (muP).
    richness : the ``gamma0`` values, increasing, each at :data:`INFINITE_WIDTH`.
    time : the flow time reached (:class:`dmft.GradientFlow`).
    window : ``(t0, t1)`` of the fits (default three decades, ``[10, 1e4]``).
    noise : label noise ``sigma`` (0: the excess loss is the whole loss).
    rtol : the flow's target relative accuracy.
    frontier_widths : width ratios of the compute-frontier runs (``None``: skip them); with the
        top-normalised power law the width that matters is ``nu ~ 1 / M`` (module docstring): the
        default brackets the effective dimension ``~ 1.4e-5 D`` of ``M = 1e5`` modes.
    frontier_richness : ``gamma0`` of the frontier runs.
    frontier_time : the flow time of the frontier runs (default ``1e5``: the budgets at which every
        width is in range span ``nu_max t_first`` to ``nu_min frontier_time``); ``None``: ``time``.
    points_per_decade : report times per decade (from ``t = 0.01``).
    figure : build the figure (else ``None`` in its place).
    progress : show progress bars (tqdm).
    solve_options : passed to :func:`dmft.solve` (e.g. ``backend``).

    Returns
    -------
    ``(dataset, figure)``; the Dataset holds

    * ``test_loss`` ``(gamma0, time)`` at infinite width, ``status`` (0 ok, 1 accuracy warning,
      -1 diverged), ``wall_time_s``; ``kernel_test_loss`` ``(time)`` (:func:`kernel_curve`) and
      ``kernel_asymptote`` ``(time)``; ``local_exponent`` ``(gamma0, time)`` and
      ``kernel_local_exponent`` ``(time)`` (of ``L - sigma^2``);
    * ``exponent``, ``exponent_low``, ``exponent_high``, ``exponent_standard_error`` ``(gamma0)``
      (:func:`fit_power_law` on ``window``);
    * with a frontier: ``frontier_test_loss`` ``(width_ratio, frontier_time)``, ``loss_at_compute``
      ``(compute_budget, width_ratio)``, ``frontier_loss``, ``optimal_width`` ``(compute_budget,)``;
    * attributes: ``kernel_rate = b``, ``rich_rate_published``, ``kernel_fit_exponent`` (and its
      ``_low``, ``_high``: the exact kernel curve fitted on the same window), ``frontier_exponent``
      (``_low``, ``_high``, and ``frontier_decades``: the decades of compute it is fitted over),
      ``window``, ``shares`` (of the resolved spectrum), the configuration.
    """
    spectrum = PowerLaw(a=a, b=b, modes=modes)
    richness = _increasing("richness", richness)
    t0, t1 = (float(w) for w in window)
    if not 0 < t0 < t1 <= time:
        raise ValueError(f"`window` must satisfy 0 < t0 < t1 <= time = {time:g}, got {window!r}")
    times = flow_report_times(time, first=min(1e-2, t0 / 10), points_per_decade=points_per_decade)
    data = GaussianData(alpha=None, noise=noise, spectrum=spectrum)
    training = GradientFlow(time=time, save_at=tuple(times), rtol=rtol)
    options = dict(solve_options or {})

    import xarray as xr

    models = [DeepLinear(depth=depth, width_ratio=INFINITE_WIDTH, gamma0=float(g)) for g in richness]
    curves, status, messages, seconds = _solve_curves(models, data, training, options, progress, "richness")
    kernel = kernel_curve(spectrum, times, depth=depth, noise=noise)
    asymptote = np.full(times.size, np.nan)
    asymptote[1:] = kernel_asymptote(spectrum, times[1:], depth=depth) + noise**2
    excess = curves - noise**2
    ds = xr.Dataset(
        {
            "test_loss": (("gamma0", "time"), curves, {"long_name": "test loss at infinite width (DMFT flow)"}),
            "status": (("gamma0",), status),
            "message": (("gamma0",), np.array(messages, dtype=object)),
            "wall_time_s": (("gamma0",), seconds),
            "kernel_test_loss": (("time",), kernel, {"long_name": "lazy infinite-width limit (exact)"}),
            "kernel_asymptote": (("time",), asymptote, {"long_name": "Gamma(b)/(a H) (2 (L+1) t)^-b"}),
            "local_exponent": (("gamma0", "time"), np.array([local_exponent(times, row) for row in excess])),
            "kernel_local_exponent": (("time",), local_exponent(times, kernel - noise**2)),
        },
        coords={"gamma0": richness, "time": times},
    )
    fits = [_try_fit(times, row, window) for row in excess]
    for name, attribute in (("exponent", "exponent"), ("exponent_low", "low"), ("exponent_high", "high"),
                            ("exponent_standard_error", "standard_error")):
        ds[name] = (("gamma0",), np.array([getattr(f, attribute) if f else math.nan for f in fits]))
    kernel_fit = fit_power_law(times, kernel - noise**2, window)
    attrs = {
        "study": "power_law",
        "a": a, "b": b, "modes": modes, "shares": spectrum.resolve().modes, "depth": depth,
        "width_ratio": INFINITE_WIDTH, "time_reached": time, "rtol": rtol, "noise": noise,
        "window": [t0, t1],
        "kernel_rate": b,
        "rich_rate_published": rich_rate_published(b),
        "kernel_fit_exponent": kernel_fit.exponent,
        "kernel_fit_exponent_low": kernel_fit.low,
        "kernel_fit_exponent_high": kernel_fit.high,
    }

    if frontier_widths is not None:
        widths = _increasing("frontier_widths", frontier_widths)
        horizon = time if frontier_time is None else float(frontier_time)
        frontier_times = flow_report_times(horizon, first=times[1], points_per_decade=points_per_decade)
        # every width in range: budgets C with t_first <= C / nu <= horizon for all nu
        budgets = np.geomspace(widths.max() * frontier_times[1], widths.min() * horizon, 25)
        if budgets[0] >= budgets[-1]:
            raise ValueError(
                f"`frontier_widths` span {widths.max() / widths.min():g}x, more than the report times "
                f"({horizon / frontier_times[1]:g}x): no compute budget has every width in range"
            )
        frontier_models = [DeepLinear(depth=depth, width_ratio=float(nu), gamma0=float(frontier_richness))
                           for nu in widths]
        frontier_training = GradientFlow(time=horizon, save_at=tuple(frontier_times), rtol=rtol)
        losses, frontier_status, _, _ = _solve_curves(frontier_models, data, frontier_training, options,
                                                      progress, "width")
        at_compute = loss_at_compute(losses, widths, budgets, times=frontier_times)
        ds = ds.assign_coords(width_ratio=widths, compute_budget=budgets, frontier_time=frontier_times)
        ds["frontier_test_loss"] = (("width_ratio", "frontier_time"), losses,
                                    {"long_name": f"test loss at finite width, gamma0 = {frontier_richness:g}"})
        ds["frontier_status"] = (("width_ratio",), frontier_status)
        ds["loss_at_compute"] = (("compute_budget", "width_ratio"), at_compute["loss"])
        ds["frontier_loss"] = (("compute_budget",), at_compute["frontier"])
        ds["optimal_width"] = (("compute_budget",), at_compute["optimal_width"])
        good = np.isfinite(at_compute["frontier"])
        fit = None
        if good.sum() >= 3:
            fit = _try_fit(budgets[good], at_compute["frontier"][good] - noise**2,
                           (budgets[good][0], budgets[good][-1]), points=int(good.sum()))
        attrs.update({
            "frontier_richness": float(frontier_richness),
            "frontier_exponent": fit.exponent if fit else math.nan,
            "frontier_exponent_low": fit.low if fit else math.nan,
            "frontier_exponent_high": fit.high if fit else math.nan,
            "frontier_decades": float(np.log10(budgets[good][-1] / budgets[good][0])) if good.sum() >= 2 else 0.0,
        })
    ds.attrs.update(attrs)
    return ds, (_figure(ds) if figure else None)


def _try_fit(t, curve, window, **options) -> PowerLawFit | None:
    """The fit, or ``None`` where the curve is not positive and finite in the window (a diverged run)."""
    try:
        return fit_power_law(t, curve, window, **options)
    except ValueError:
        return None


def _increasing(name: str, values) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    if array.ndim != 1 or array.size < 1:
        raise ValueError(f"`{name}` needs at least one value, got {list(values)!r}")
    if np.any(~np.isfinite(array)) or np.any(array <= 0) or np.any(np.diff(array) <= 0):
        raise ValueError(f"`{name}` must be positive, finite and strictly increasing, got {list(values)!r}")
    return array


def _figure(ds):
    """Loss against flow time per richness with the kernel references; local exponents; fitted
    exponents against richness; the compute frontier."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    has_frontier = "frontier_loss" in ds
    panels = 4 if has_frontier else 3
    figure = Figure(figsize=(4.4 * panels, 3.8), layout="constrained")
    axes = figure.subplots(1, panels)
    t = ds["time"].values
    noise = ds.attrs["noise"] ** 2
    t0, t1 = ds.attrs["window"]
    b, rich = ds.attrs["kernel_rate"], ds.attrs["rich_rate_published"]
    richness = ds["gamma0"].values
    colours = colormaps["plasma"](np.linspace(0.0, 0.8, len(richness)))
    ax = axes[0]
    for g, colour in zip(richness, colours):
        exponent = float(ds["exponent"].sel(gamma0=g))
        ax.plot(t[1:], ds["test_loss"].sel(gamma0=g).values[1:] - noise, color=colour, lw=1.6,
                label=f"gamma0 = {g:g}: t^-{exponent:.3f}")
    ax.plot(t[1:], ds["kernel_test_loss"].values[1:] - noise, "k--", lw=1, label="kernel limit (exact)")
    ax.plot(t[1:], ds["kernel_asymptote"].values[1:] - noise, ":", color="0.4", lw=1, label=f"kernel asymptote t^-{b:g}")
    ax.axvspan(t0, t1, color="0.93", zorder=0)
    ax.set(xscale="log", yscale="log", xlabel="flow time t", ylabel="excess test loss L - sigma^2",
           title=f"a = {ds.attrs['a']:g}, b = {b:g}, M = {ds.attrs['modes']:g}, depth {ds.attrs['depth']}")
    ax.legend(fontsize=7)
    ax = axes[1]
    for g, colour in zip(richness, colours):
        ax.plot(t[1:], ds["local_exponent"].sel(gamma0=g).values[1:], color=colour, lw=1.4, label=f"gamma0 = {g:g}")
    ax.plot(t[1:], ds["kernel_local_exponent"].values[1:], "k--", lw=1, label="kernel limit")
    ax.axhline(b, color="k", ls=":", lw=1, label="b")
    ax.axhline(rich, color="C2", ls="-.", lw=1, label="2b/(1+b) (published rich)")
    ax.axvspan(t0, t1, color="0.93", zorder=0)
    ax.set(xscale="log", xlabel="flow time t", ylabel="local exponent -dlog L / dlog t", title="local exponents")
    ax.legend(fontsize=7)
    ax = axes[2]
    ax.errorbar(richness, ds["exponent"].values,
                yerr=[ds["exponent"].values - ds["exponent_low"].values, ds["exponent_high"].values - ds["exponent"].values],
                fmt="o-", capsize=3, label="DMFT fit (interval: window choices)")
    ax.axhline(b, color="k", ls="--", lw=1, label="kernel rate b")
    ax.axhline(rich, color="C2", ls="-.", lw=1, label="2b/(1+b) (published rich)")
    ax.set(xscale="log", xlabel="richness gamma0", ylabel="fitted exponent", title=f"exponents on t in [{t0:g}, {t1:g}]")
    ax.legend(fontsize=7)
    if has_frontier:
        ax = axes[3]
        widths = ds["width_ratio"].values
        shades = colormaps["viridis"](np.linspace(0.0, 0.9, len(widths)))
        frontier_t = ds["frontier_time"].values
        for w, (nu, colour) in enumerate(zip(widths, shades)):
            ax.plot(nu * frontier_t[1:], ds["frontier_test_loss"].values[w, 1:] - noise, color=colour, lw=1.2,
                    label=f"nu = {nu:g}")
        ax.plot(ds["compute_budget"].values, ds["frontier_loss"].values - noise, "k--", lw=2, alpha=0.7,
                label=f"frontier ~ C^-{ds.attrs['frontier_exponent']:.3f}")
        ax.set(xscale="log", yscale="log", xlabel="compute C = nu t", ylabel="excess test loss",
               title=f"compute-optimal frontier (gamma0 = {ds.attrs['frontier_richness']:g})")
        ax.legend(fontsize=7)
    return figure
