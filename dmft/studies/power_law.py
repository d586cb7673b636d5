"""Power-law data: lazy vs rich learning curves, fitted exponents, compute-optimal frontier (issue 7, study 3).

Data: ``GaussianData(alpha=None, spectrum=PowerLaw(a, b, modes=M))`` trained by online SGD with a
large batch (``batch_ratio``), the data-rich regime: a fresh batch every step, so there is no
over-fitting and, for ``batch_ratio >> 1``, almost no minibatch noise. In this package's
convention (THEORY.md section 1, ``dmft.PowerLaw``) share ``k = 1..M`` of the inputs has covariance
eigenvalue ``lambda_k = c1 k^{-a}`` and signal ``lambda_k b_k = c2 k^{-a b - 1}``, with
``c1 = M / H_M(a)``, ``c2 = M / H_M(a b + 1)`` (``H_M(s) = sum_{k<=M} k^{-s}``) so that both
have mean 1.

The kernel (lazy) rate, derived
-------------------------------
In the lazy limit (``gamma0 -> 0`` at infinite width) a plain deep linear network with ``L`` hidden
layers is linear regression with the fixed kernel ``(L + 1) Sigma``: every one of its ``L + 1``
weight matrices contributes ``Sigma`` to the neural tangent kernel at initialisation, so the
predictor moves by ``beta += eta_eff u`` with ``eta_eff = (L + 1) eta``. With infinitely many fresh
examples per step the error of share ``k`` contracts by ``(1 - eta_eff lambda_k)`` per step, and a
batch of ``alpha_B D`` examples adds the minibatch noise (Gaussian fourth moments, ``D -> infinity``):

    e_k(t + 1) = (1 - eta_eff lambda_k)^2 e_k(t) + (eta_eff^2 lambda_k / alpha_B) L(t),
    L(t) = mean_k lambda_k e_k(t) + sigma^2,      e_k(0) = b_k                     (kernel_learning_curve)

(``e_k`` the mean squared error of a coordinate of share ``k``; the DMFT's online-SGD input side,
``u_k = lambda_k v_k + sqrt(lambda_k / alpha_B) psi_k`` with ``C_psi(t, t) = L(t)``, gives the same).

For ``alpha_B -> infinity`` this is ``L(t) - sigma^2 = mean_k lambda_k b_k (1 - eta_eff lambda_k)^{2t}``;
replacing the sum by an integral (valid for ``1 << eta_eff lambda_1 t << M^a``: many modes learned,
many still to learn), with ``(1 - x)^{2t} ~ exp(-2 x t)`` and ``u = 2 eta_eff lambda_1 t k^{-a}``::

    L(t) - sigma^2 ~ (1 / H_M(a b + 1)) sum_k k^{-a b - 1} exp(-2 eta_eff lambda_1 t k^{-a})
                   ~ Gamma(b) / (a H_M(a b + 1)) * (2 eta_eff lambda_1 t)^{-b}        (kernel_asymptote)

so the kernel rate is ``t^{-b}``, whatever ``a``. The mode being learned at ``t`` is
``k*(t) = (2 eta_eff lambda_1 t)^{1/a}``. Finite ``M`` bends the law early: the shares ``k > M`` are
missing, and they would carry an unlearned ``~ M^{-a b} / (a b H)``, so the finite-``M`` curve falls
below the power law by a relative ``~ (k*(t) / M)^{a b}`` (and exponentially once ``k* ~ M``); small
``t`` (a handful of modes learned) deviates too, by ``O(1/t)``. A large ``a`` keeps ``k*`` small
for long: ``a = 3``, ``M = 100`` gives a fitted exponent 0.504 in ``[0.498, 0.510]`` on
``t = 30 ... 300`` (``M = 50``: 0.512 in ``[0.505, 0.516]``, already biased); ``a = 1.5`` would
need ``M`` in the thousands, and the DMFT costs ``O(M T^3)``.

The rich rate, published
------------------------
Bordelon, Atanasov & Pehlevan (2024/2025, "How feature learning can improve neural scaling laws")
report, in a solvable model of feature learning, the faster rate ``t^{-2b/(1+b)}`` for ``b < 1``
(hard tasks). It is a hypothesis to compare with here, not an assertion: the deep linear network
is a different model, and the study reports what the DMFT gives.

Fits and their uncertainty
--------------------------
A DMFT curve is deterministic: there is no sampling noise, so the standard error of a least-squares
slope only measures how far the curve is from a straight line on the chosen window (its residuals
are curvature, not independent errors), and it shrinks as points are added. The honest uncertainty
of an exponent is its dependence on where the power law is taken to hold. :func:`fit_power_law`
therefore fits ``log L`` against ``log t`` on log-spaced steps of a window ``[t0, t1]`` and reports,
as the interval, the smallest and largest slope over every sub-window ``[s0, s1]`` of it (endpoints
on the same log grid) that spans at least half of the window's decades: a bootstrap over window
choices. A pure power law gives a point interval; a curved one an interval as wide as its local
exponent wanders. The least-squares standard error is reported too, for information.

Compute-optimal frontier
------------------------
At finite width ``nu`` (muP, richness ``gamma0``) the loss has the extra initialisation-variance
part ``~ 1 / (gamma0^2 nu)`` (``dmft.studies.scaling``). Training a width ``nu`` for ``t`` steps
costs ``C = nu t`` (in units of ``D``); the frontier is ``L*(C) = min_nu L(nu, C / nu)`` and its
exponent is fitted like the others (:func:`dmft.studies.scaling.loss_at_compute`).

Example
-------
>>> from dmft.studies import power_law
>>> ds, fig = power_law.power_law_study()              # cheap default: T = 150, M = 100
>>> ds["exponent"].to_series(), ds.attrs["kernel_rate"], ds.attrs["rich_rate_published"]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..data import GaussianData, PowerLaw
from ..models import DeepLinear
from ..training import OnlineSGD
from .._sweep import STATUS_OK, sweep
from .scaling import loss_at_compute

__all__ = [
    "PowerLawFit",
    "fit_power_law",
    "kernel_learning_curve",
    "kernel_asymptote",
    "rich_rate_published",
    "power_law_study",
    "INFINITE_WIDTH",
]

#: the width ratio standing for "infinite width": the initialisation variance ``1 / (gamma0^2 nu)``
#: is then below 1e-6 for every ``gamma0 >= 0.01`` (the DMFT takes ``nu`` as a number)
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
    window: tuple[int, int]
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
    steps, losses : the curve (any positive ``steps``, e.g. ``0 .. T``; the loss must be positive in
        the window). ``steps`` need not be integers (the frontier is fitted against compute).
    window : ``(t0, t1)`` with ``0 < t0 < t1`` inside the range of ``steps``.
    points : how many log-spaced points of the window are fitted (the nearest available steps; equal
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
        window=(int(round(steps[chosen[0]])), int(round(steps[chosen[-1]]))),
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


def kernel_learning_curve(
    spectrum: PowerLaw,
    learning_rate: float,
    steps: int,
    *,
    depth: int = 1,
    batch_ratio: float | None = None,
    noise: float = 0.0,
) -> np.ndarray:
    """The lazy, infinite-width test loss of a plain deep linear network under online SGD (exact).

    Implements the recursion of the module docstring (section "The kernel (lazy) rate") with
    ``eta_eff = (depth + 1) * learning_rate``; ``batch_ratio=None`` is the infinite batch
    (``L(t) = sigma^2 + mean_k lambda_k b_k (1 - eta_eff lambda_k)^{2t}``).

    Returns
    -------
    array of shape ``(steps + 1,)``, the test loss without the factor 1/2.
    """
    resolved = spectrum.resolve()
    lam = np.asarray(resolved.eigenvalues)
    errors = np.asarray(resolved.teacher_variances, dtype=float).copy()  # e_k(0) = b_k
    rate = (depth + 1) * float(learning_rate)
    contraction = (1.0 - rate * lam) ** 2
    out = np.empty(steps + 1)
    for t in range(steps + 1):
        excess = float(np.mean(lam * errors))
        out[t] = excess + noise**2
        if batch_ratio is not None:
            errors = contraction * errors + (rate**2 / batch_ratio) * lam * (excess + noise**2)
        else:
            errors = contraction * errors
    return out


def kernel_asymptote(spectrum: PowerLaw, learning_rate: float, steps, *, depth: int = 1) -> np.ndarray:
    """``Gamma(b) / (a H_M(a b + 1)) (2 eta_eff lambda_1 t)^{-b}``: the kernel power law (module docstring)."""
    a, b, modes = spectrum.a, spectrum.b, spectrum.modes
    k = np.arange(1, modes + 1, dtype=float)
    top = modes / np.sum(k ** (-a))  # lambda_1 = c1
    harmonic = np.sum(k ** (-a * b - 1.0))
    t = np.asarray(steps, dtype=float)
    return math.gamma(b) / (a * harmonic) * (2.0 * (depth + 1) * learning_rate * top * t) ** (-b)


def rich_rate_published(b: float) -> float:
    """``2 b / (1 + b)`` for ``b < 1`` (Bordelon, Atanasov & Pehlevan), else the kernel rate ``b``."""
    return 2.0 * b / (1.0 + b) if b < 1 else float(b)


# --------------------------------------------------------------------------- the study


def power_law_study(
    *,
    a: float = 3.0,
    b: float = 0.5,
    modes: int = 100,
    depth: int = 1,
    richness: Sequence[float] = (0.01, 40.0),
    steps: int = 150,
    learning_rate: float | None = None,
    batch_ratio: float = 100.0,
    noise: float = 0.0,
    window: tuple[int, int] | None = None,
    frontier_widths: Sequence[float] | None = (0.25, 1.0, 4.0),
    frontier_richness: float = 1.0,
    frontier_steps: int | None = None,
    figure: bool = True,
    client=None,
    cache=None,
    use_cache: bool = True,
    progress: bool = False,
):
    """Learning curves on power-law data, lazy to rich, their exponents, and the compute frontier (DMFT).

    Parameters
    ----------
    a, b, modes : the :class:`dmft.PowerLaw` spectrum (capacity, source, number of shares ``M``).
    depth : hidden layers of the plain :class:`dmft.DeepLinear` network (muP).
    richness : the ``gamma0`` values, increasing, each at :data:`INFINITE_WIDTH` (default 0.01: lazy,
        and 40: the richest stable at the default learning rate for ``M = 100``). The
        feature-learning terms carry ``eta gamma0`` and the stable ``eta`` falls like
        ``1 / lambda_1 ~ 1 / M``, so the same richness needs ``gamma0`` growing with ``M``.
    steps : ``T`` (default 150). The DMFT costs ``O(M T^3)`` (M = 100: ~1.5 s at T = 150, ~10 s at
        T = 300 on one core).
    learning_rate : default ``0.25 / ((depth + 1) lambda_1)``: an eighth of the lazy edge of
        stability ``2 / ((depth + 1) lambda_1)``, leaving room for the kernel growth of rich training.
    batch_ratio : ``alpha_B`` of :class:`dmft.OnlineSGD` (large: the data-rich regime).
    noise : label noise ``sigma`` (0: the excess loss is the whole loss).
    window : ``(t0, t1)`` of the fits; default ``(T / 10, T)``.
    frontier_widths : width ratios of the compute-frontier sweep (``None``: skip it).
    frontier_richness : ``gamma0`` of the frontier sweep (default 1: with the richest ``gamma0`` the
        initialisation variance ``1 / (gamma0^2 nu)`` is negligible at every width, so the
        narrowest network, which gets the most steps, wins at every budget and there is no trade-off).
    frontier_steps : ``T`` of the frontier sweep (default ``steps``).
    figure : build the figure (else ``None`` in its place).
    client, cache, use_cache, progress : passed to :func:`dmft.sweep`.

    Returns
    -------
    ``(dataset, figure)``; the Dataset holds

    * ``test_loss`` ``(gamma0, step)`` at infinite width, ``status``; ``kernel_test_loss`` ``(step)``
      (:func:`kernel_learning_curve`) and ``kernel_asymptote`` ``(step)``;
    * ``exponent``, ``exponent_low``, ``exponent_high``, ``exponent_standard_error`` ``(gamma0)``
      (:func:`fit_power_law` on ``window``);
    * with a frontier: ``frontier_test_loss`` ``(width_ratio, step)``, ``loss_at_compute``
      ``(compute_budget, width_ratio)``, ``frontier_loss``, ``optimal_width`` ``(compute_budget,)``;
    * attributes: ``kernel_rate = b``, ``rich_rate_published``, ``kernel_fit_exponent`` (and its
      ``_low``, ``_high``: the exact kernel curve fitted on the same window), ``frontier_exponent``
      (and ``_low``, ``_high``), ``window``, ``learning_rate``, ``lambda_max``, the configuration.
    """
    spectrum = PowerLaw(a=a, b=b, modes=modes)
    richness = _increasing("richness", richness)
    lambda_max = float(spectrum.resolve().eigenvalues[0])
    if learning_rate is None:
        learning_rate = 0.25 / ((depth + 1) * lambda_max)
    data = GaussianData(alpha=None, noise=noise, spectrum=spectrum)
    training = OnlineSGD(learning_rate=learning_rate, steps=steps, batch_ratio=batch_ratio)
    model = DeepLinear(depth=depth, width_ratio=INFINITE_WIDTH, gamma0=float(richness[0]))
    window = (max(1, steps // 10), steps) if window is None else tuple(int(w) for w in window)
    common = dict(run_options={"self_consistency": False}, client=client, cache=cache,
                  use_cache=use_cache, progress=progress)

    ds = sweep(model, data, training, over={"model.gamma0": list(richness)}, **common)
    ds = ds.drop_vars([name for name in ("train_loss", "method", "reason") if name in ds])
    ds["test_loss"] = ds["test_loss"].where(ds["status"] == STATUS_OK)
    t = np.arange(steps + 1)
    ds["kernel_test_loss"] = (("step",), kernel_learning_curve(spectrum, learning_rate, steps, depth=depth,
                                                                batch_ratio=batch_ratio, noise=noise),
                              {"long_name": "lazy infinite-width limit (exact recursion)"})
    asymptote = np.full(steps + 1, np.nan)
    asymptote[1:] = kernel_asymptote(spectrum, learning_rate, t[1:], depth=depth) + noise**2
    ds["kernel_asymptote"] = (("step",), asymptote, {"long_name": "Gamma(b)/(a H) (2 eta_eff lambda_1 t)^-b"})

    fits = []
    for g in richness:
        curve = ds["test_loss"].sel(gamma0=g).values - noise**2
        fits.append(_try_fit(t, curve, window))
    for name, attribute in (("exponent", "exponent"), ("exponent_low", "low"), ("exponent_high", "high"),
                            ("exponent_standard_error", "standard_error")):
        ds[name] = (("gamma0",), np.array([getattr(f, attribute) if f else math.nan for f in fits]))
    kernel_fit = fit_power_law(t, ds["kernel_test_loss"].values - noise**2, window)

    attrs = {
        "study": "power_law",
        "a": a, "b": b, "modes": modes, "depth": depth, "width_ratio": INFINITE_WIDTH,
        "learning_rate": learning_rate, "batch_ratio": batch_ratio, "noise": noise, "lambda_max": lambda_max,
        "window": list(window),
        "kernel_rate": b,
        "rich_rate_published": rich_rate_published(b),
        "kernel_fit_exponent": kernel_fit.exponent,
        "kernel_fit_exponent_low": kernel_fit.low,
        "kernel_fit_exponent_high": kernel_fit.high,
    }

    if frontier_widths is not None:
        widths = _increasing("frontier_widths", frontier_widths)
        frontier_richness = float(frontier_richness)
        frontier_steps = steps if frontier_steps is None else int(frontier_steps)
        frontier = sweep(
            model.replace(gamma0=frontier_richness), data, training.replace(steps=frontier_steps),
            over={"model.width_ratio": list(widths)}, **common,
        )
        losses = frontier["test_loss"].where(frontier["status"] == STATUS_OK)
        budgets = np.geomspace(widths.max(), widths.min() * frontier_steps, 16)
        at_compute = loss_at_compute(losses.values, widths, budgets)
        ds = ds.assign_coords(width_ratio=widths, compute_budget=budgets, frontier_step=np.arange(frontier_steps + 1))
        ds["frontier_test_loss"] = (("width_ratio", "frontier_step"), losses.values,
                                    {"long_name": f"test loss at finite width, gamma0 = {frontier_richness:g}"})
        ds["loss_at_compute"] = (("compute_budget", "width_ratio"), at_compute["loss"])
        ds["frontier_loss"] = (("compute_budget",), at_compute["frontier"])
        ds["optimal_width"] = (("compute_budget",), at_compute["optimal_width"])
        good = np.isfinite(at_compute["frontier"])
        fit = None
        if good.sum() >= 3:
            fit = _try_fit(budgets[good], at_compute["frontier"][good] - noise**2,
                           (budgets[good][0], budgets[good][-1]), points=int(good.sum()))
        attrs.update({
            "frontier_richness": frontier_richness,
            "frontier_exponent": fit.exponent if fit else math.nan,
            "frontier_exponent_low": fit.low if fit else math.nan,
            "frontier_exponent_high": fit.high if fit else math.nan,
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
    """Loss against steps (log-log) per richness with the kernel references; exponents; frontier."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    has_frontier = "frontier_loss" in ds
    figure = Figure(figsize=(4.4 * (3 if has_frontier else 2), 3.8), layout="constrained")
    axes = figure.subplots(1, 3 if has_frontier else 2)
    t = ds["step"].values
    noise = ds.attrs["noise"] ** 2
    t0, t1 = ds.attrs["window"]
    ax = axes[0]
    richness = ds["gamma0"].values
    colours = colormaps["plasma"](np.linspace(0.0, 0.8, len(richness)))
    for g, colour in zip(richness, colours):
        exponent = float(ds["exponent"].sel(gamma0=g))
        ax.plot(t[1:], ds["test_loss"].sel(gamma0=g).values[1:] - noise, color=colour, lw=1.6,
                label=f"gamma0 = {g:g}: t^-{exponent:.3f}")
    ax.plot(t[1:], ds["kernel_test_loss"].values[1:] - noise, "k--", lw=1, label="kernel limit (exact)")
    ax.plot(t[1:], ds["kernel_asymptote"].values[1:] - noise, ":", color="0.4", lw=1,
            label=f"kernel asymptote t^-{ds.attrs['kernel_rate']:g}")
    anchor = float(ds["test_loss"].sel(gamma0=richness[-1], step=t0)) - noise
    rich = ds.attrs["rich_rate_published"]
    ax.plot([t0, t1], [anchor, anchor * (t1 / t0) ** (-rich)], "-.", color="C2", lw=1,
            label=f"published rich rate t^-{rich:.3f}")
    ax.axvspan(t0, t1, color="0.9", zorder=0)
    ax.set(xscale="log", yscale="log", xlabel="step t", ylabel="excess test loss L - sigma^2",
           title=f"power law a = {ds.attrs['a']:g}, b = {ds.attrs['b']:g}, M = {ds.attrs['modes']}")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.errorbar(richness, ds["exponent"].values,
                yerr=[ds["exponent"].values - ds["exponent_low"].values, ds["exponent_high"].values - ds["exponent"].values],
                fmt="o-", capsize=3, label="DMFT fit (interval: window choices)")
    ax.axhline(ds.attrs["kernel_rate"], color="k", ls="--", lw=1, label="kernel rate b")
    ax.axhline(rich, color="C2", ls="-.", lw=1, label="2b/(1+b) (published rich)")
    ax.set(xscale="log", xlabel="richness gamma0", ylabel="fitted exponent",
           title=f"exponents on t in [{t0}, {t1}]")
    ax.legend(fontsize=7)
    if has_frontier:
        ax = axes[2]
        widths = ds["width_ratio"].values
        shades = colormaps["viridis"](np.linspace(0.0, 0.9, len(widths)))
        compute = ds["compute_budget"].values
        for w, (nu, colour) in enumerate(zip(widths, shades)):
            steps = ds["frontier_step"].values[1:]
            ax.plot(nu * steps, ds["frontier_test_loss"].values[w, 1:] - noise, color=colour, lw=1.2, label=f"nu = {nu:g}")
        ax.plot(compute, ds["frontier_loss"].values - noise, "k--", lw=2, alpha=0.7,
                label=f"frontier ~ C^-{ds.attrs['frontier_exponent']:.3f}")
        ax.set(xscale="log", yscale="log", xlabel="compute C = nu x steps", ylabel="excess test loss",
               title=f"compute-optimal frontier (gamma0 = {ds.attrs['frontier_richness']:g})")
        ax.legend(fontsize=7)
    return figure
