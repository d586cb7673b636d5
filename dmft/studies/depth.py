"""Learning-rate transfer across depth: residual networks and their infinite-depth limit (issue 6).

Three families of deep linear networks are trained for a fixed number of steps, at every depth
and over a range of learning rates, with the DMFT (THEORY.md sections 2.1, 2.2):

* ``"residual"``: residual branches ``b = beta0 / sqrt(depth)``; the depth has a limit
  (``depth = math.inf``, :mod:`dmft.solvers.infinite_depth`), which is included;
* ``"residual_unscaled"``: the same blocks without the ``1 / sqrt(depth)`` (``b = beta0``, i.e.
  ``branch_scale = beta0 sqrt(depth)``): the backward fields grow like ``(1 + beta0^2)^{depth/2}``;
* ``"plain"``: no skip connections (section 2.1).

For every family and depth the study first locates the stability edge ``eta_edge``: the largest
learning rate whose ``steps``-step DMFT run does not diverge (loss non-finite or ``1e8`` times its
initial value, :class:`dmft.DivergenceError`), by bisection in ``log eta`` to a relative precision
``edge_precision``. A run that stays bounded over ``steps`` steps may still be unstable on longer
horizons: the edge is that of the chosen horizon. It then scans ``points`` learning rates
log-spaced over ``[eta_edge / span, eta_edge]``, takes the test loss at the last step, and refines
the optimum by golden-section search in ``log eta`` between the grid neighbours of the grid minimum
(to relative precision ``optimum_precision``). A parabola through three grid points is not enough
here: the loss at fixed steps typically falls until a *cliff*, where the run enters the
edge-of-stability regime (oscillating, slowly decaying train loss) and the final loss jumps up, and
the optimum sits at that cliff, well below the divergence edge. ``optimum_at_edge`` flags optima on
the last stable grid point (no bracket). Finally every depth is also trained at the optimum found
at depth ``transfer_from`` (``transferred_rate``): what tuning at one depth buys at the others.

Honesty about the edge: near ``eta_edge`` the DMFT train loss and finite networks disagree at
moderate width (slow finite-size convergence at the edge of stability, docs/infinite_depth.md);
the test loss, which this study optimises, agrees.

Example
-------
>>> from dmft.studies import depth
>>> ds, fig = depth.depth_transfer()                      # ~600 DMFT solves, about a minute
>>> ds["optimal_learning_rate"].sel(family="residual")    # against depth (inf = the limit)
>>> fig.savefig("depth_transfer.png")
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..data import GaussianData
from ..errors import DivergenceError
from ..models import DeepLinear
from ..solvers import solve
from ..training import GradientDescent
from .._validate import positive, positive_int

__all__ = [
    "depth_transfer",
    "FAMILIES",
    "DEFAULT_DEPTHS",
    "family_model",
    "final_test_loss",
    "stability_edge",
    "refine_optimum",
    "edge_of_stability_step",
    "markdown_table",
]

FAMILIES = ("residual", "residual_unscaled", "plain")
DEFAULT_DEPTHS = (2, 4, 8, 16, 32, 64)


def family_model(family: str, depth: float, beta0: float = 1.0, **model_options) -> DeepLinear:
    """The network of ``family`` at ``depth`` (``math.inf`` only for ``"residual"``)."""
    if family == "residual":
        return DeepLinear(depth=depth, residual=True, branch_scale=beta0, **model_options)
    if family == "residual_unscaled":
        return DeepLinear(depth=depth, residual=True, branch_scale=beta0 * math.sqrt(depth), **model_options)
    if family == "plain":
        return DeepLinear(depth=depth, **model_options)
    raise ValueError(f"`family` must be one of {FAMILIES}, got {family!r}")


def edge_of_stability_step(train_loss) -> int | None:
    """The step at which a DMFT run enters the edge-of-stability regime, or ``None``.

    Below the edge of stability the train loss decays ever more slowly but smoothly: the ratio
    ``r_t = Lhat(t + 1) / Lhat(t)`` increases with ``t`` (the fast modes are gone, the slow ones
    remain). When the sharpness reaches ``2 / eta`` the near-edge modes stop decaying, ``r_t`` stops
    rising, and the train loss plateaus or oscillates (with a catapult at large rates). This returns
    the first ``t >= 1`` where ``r_t`` has a local maximum (``r_t > r_{t+1}``) or ``r_t >= 1``.

    Why it matters: simulations agree with the DMFT within a few standard errors up to this step at
    moderate width; after it the train loss of finite networks converges to the DMFT only slowly in
    the width (docs/infinite_depth.md, tests/test_residual.py). A heuristic diagnostic, not an
    equation: multi-scale (power-law) data can bend ``r_t`` for other reasons.
    """
    loss = np.asarray(train_loss, dtype=float)
    ratio = loss[1:] / loss[:-1]
    for t in range(1, len(ratio)):
        if ratio[t] >= 1.0 or (t + 1 < len(ratio) and ratio[t] > ratio[t + 1]):
            return t
    return None


def _scan_options(model) -> dict:
    """Solver options for the many runs of a scan: no cross-layer correlations, no
    self-consistency re-evaluation, no layer-time error estimate (each costs a fraction of a solve;
    the default solves of the docs' table check them)."""
    if not model.residual:
        return {"self_consistency": False}
    if math.isinf(model.depth):
        return {"cross_layer_steps": [], "layer_error_estimate": False}
    return {"cross_layer_steps": []}


def final_test_loss(model, data, training) -> float:
    """Test loss of the DMFT at the last step; ``nan`` if the run diverges."""
    try:
        return float(solve(model, data, training, **_scan_options(model)).test_loss[-1])
    except DivergenceError:
        return math.nan


def stability_edge(model, data, steps: int, *, start: float = 0.1, precision: float = 0.01) -> float:
    """The largest learning rate whose ``steps``-step DMFT run does not diverge, by bisection in
    ``log eta`` to relative precision ``precision`` (the returned rate is on the stable side)."""
    def stable(rate):
        return math.isfinite(final_test_loss(model, data, GradientDescent(learning_rate=rate, steps=steps)))

    low, high = start, start
    if stable(start):
        while stable(high):
            low, high = high, high * 4.0
            if high > 1e6:
                raise RuntimeError(f"no unstable learning rate below 1e6 for {model!r}")
    else:
        while not stable(low):
            high, low = low, low / 4.0
            if low < 1e-30:
                raise RuntimeError(f"no stable learning rate above 1e-30 for {model!r}")
    while high / low > 1.0 + precision:
        middle = math.sqrt(low * high)
        low, high = (middle, high) if stable(middle) else (low, middle)
    return low


def refine_optimum(loss, low: float, high: float, precision: float) -> tuple[float, float]:
    """Golden-section search for the minimum of ``loss(eta)`` on ``[low, high]`` in ``log eta``
    (``nan`` counts as ``+inf``); returns ``(eta*, loss(eta*))`` to relative precision ``precision``."""
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    value = lambda x: (lambda v: math.inf if not math.isfinite(v) else v)(loss(math.exp(x)))  # noqa: E731
    a, b = math.log(low), math.log(high)
    c, d = b - golden * (b - a), a + golden * (b - a)
    fc, fd = value(c), value(d)
    while b - a > math.log1p(precision):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - golden * (b - a)
            fc = value(c)
        else:
            a, c, fc = c, d, fd
            d = a + golden * (b - a)
            fd = value(d)
    x, fx = (c, fc) if fc <= fd else (d, fd)
    return math.exp(x), fx


def depth_transfer(
    data: GaussianData | None = None,
    *,
    steps: int = 40,
    depths: Sequence[int] = DEFAULT_DEPTHS,
    families: Sequence[str] = FAMILIES,
    beta0: float = 1.0,
    include_limit: bool = True,
    points: int = 13,
    span: float = 30.0,
    edge_precision: float = 0.01,
    optimum_precision: float = 0.005,
    transfer_from: int = 8,
    figure: bool = True,
    progress: bool = False,
):
    """Optimal learning rate, stability edge and loss at fixed steps against depth (module docstring).

    Parameters
    ----------
    data : default ``GaussianData(alpha=2.0)`` (full-batch gradient descent on ``P = 2 D``).
    steps : the fixed training horizon ``T``.
    depths : finite depths (hidden layers).
    families : subset of :data:`FAMILIES`.
    beta0 : branch scale of the residual families.
    include_limit : add ``depth = inf`` for the ``"residual"`` family (NaN for the others).
    points, span : the learning-rate scan, ``points`` log-spaced rates over ``[edge / span, edge]``.
    edge_precision : relative precision of the stability edge.
    optimum_precision : relative precision of the optimal learning rate.
    transfer_from : the depth (one of ``depths``) whose optimal rate is reused at every depth.
    figure : build the matplotlib figure (else ``None`` is returned in its place).
    progress : print one line per (family, depth).

    Returns
    -------
    ``(dataset, figure)``: an ``xarray.Dataset`` with dimensions ``family``, ``depth`` (``inf`` last
    when ``include_limit``) and ``rate_index``:

    * ``learning_rate``, ``test_loss`` ``(family, depth, rate_index)``: the scan (NaN = diverged);
    * ``stability_edge``, ``optimal_learning_rate``, ``optimal_loss``, ``optimum_at_edge``,
      ``edge_ratio`` (optimum / edge) ``(family, depth)``;
    * ``transferred_rate`` ``(family)`` (the optimum at depth ``transfer_from``) and
      ``loss_at_transferred_rate`` ``(family, depth)``;
    * ``initial_loss`` ``(family, depth)``;
    * ``edge_of_stability_step`` ``(family, depth)``: :func:`edge_of_stability_step` of the run at the
      optimum (NaN: the edge-of-stability regime is not reached within ``steps``);

    and a figure with three panels: the residual family's loss against learning rate per depth
    (transfer), the optimal rate and the edge against depth for every family, and the loss at the
    optimum and at the transferred rate against depth.
    """
    import xarray as xr

    data = GaussianData(alpha=2.0) if data is None else data
    steps = positive_int("steps", steps)
    points = positive_int("points", points, minimum=3)
    span = positive("span", span)
    if span <= 1:
        raise ValueError(f"`span` must be > 1, got {span}")
    for family in families:
        family_model(family, 2)  # validates the name
    depth_values = [int(d) for d in depths] + ([math.inf] if include_limit else [])
    if transfer_from not in depth_values:
        raise ValueError(f"`transfer_from` must be one of `depths` {tuple(depths)}, got {transfer_from!r}")
    source = depth_values.index(transfer_from)
    shape = (len(families), len(depth_values))
    scan_rates = np.full(shape + (points,), np.nan)
    scan_losses = np.full(shape + (points,), np.nan)
    edge, optimum, optimal_loss = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    at_edge = np.zeros(shape, dtype=bool)
    initial = np.full(shape, np.nan)
    transferred = np.full(len(families), np.nan)
    transferred_loss = np.full(shape, np.nan)
    onset = np.full(shape, np.nan)
    for f, family in enumerate(families):
        for d, depth in enumerate(depth_values):
            if math.isinf(depth) and family != "residual":
                continue
            model = family_model(family, depth, beta0)
            edge[f, d] = stability_edge(model, data, steps, precision=edge_precision)
            rates = np.geomspace(edge[f, d] / span, edge[f, d], points)
            losses = np.array([final_test_loss(model, data, GradientDescent(r, steps)) for r in rates])
            scan_rates[f, d], scan_losses[f, d] = rates, losses
            best = int(np.nanargmin(losses))
            at_edge[f, d] = best == points - 1
            if best == 0 or at_edge[f, d]:
                optimum[f, d], optimal_loss[f, d] = rates[best], losses[best]
            else:
                optimum[f, d], optimal_loss[f, d] = refine_optimum(
                    lambda r: final_test_loss(model, data, GradientDescent(r, steps)),
                    rates[best - 1], rates[best + 1], optimum_precision,
                )
            at_optimum = solve(model, data, GradientDescent(optimum[f, d], steps), **_scan_options(model))
            initial[f, d] = at_optimum.test_loss[0]
            step = edge_of_stability_step(at_optimum.train_loss)
            onset[f, d] = np.nan if step is None else step
            if progress:
                print(f"{family:18s} depth {depth:>4}: edge {edge[f, d]:.4g}, optimum {optimum[f, d]:.4g}, "
                      f"loss {optimal_loss[f, d]:.4g}{' (at edge)' if at_edge[f, d] else ''}")  # fmt: skip
        transferred[f] = optimum[f, source]
        for d, depth in enumerate(depth_values):
            if math.isinf(depth) and family != "residual":
                continue
            model = family_model(family, depth, beta0)
            transferred_loss[f, d] = final_test_loss(model, data, GradientDescent(transferred[f], steps))

    coords = {"family": list(families), "depth": np.array(depth_values, dtype=float), "rate_index": np.arange(points)}
    dataset = xr.Dataset(
        {
            "learning_rate": (("family", "depth", "rate_index"), scan_rates),
            "test_loss": (("family", "depth", "rate_index"), scan_losses),
            "stability_edge": (("family", "depth"), edge),
            "optimal_learning_rate": (("family", "depth"), optimum),
            "optimal_loss": (("family", "depth"), optimal_loss),
            "optimum_at_edge": (("family", "depth"), at_edge),
            "edge_ratio": (("family", "depth"), optimum / edge),
            "initial_loss": (("family", "depth"), initial),
            "edge_of_stability_step": (("family", "depth"), onset),
            "transferred_rate": (("family",), transferred),
            "loss_at_transferred_rate": (("family", "depth"), transferred_loss),
        },
        coords=coords,
        attrs={"steps": steps, "beta0": beta0, "alpha": -1.0 if data.alpha is None else data.alpha,
               "noise": data.noise, "span": span, "edge_precision": edge_precision,
               "optimum_precision": optimum_precision, "transfer_from": transfer_from},  # fmt: skip
    )
    return dataset, (_figure(dataset) if figure else None)


def markdown_table(dataset) -> str:
    """The study as a markdown table: per depth and family, optimal rate, edge and loss at the optimum."""
    families = list(dataset["family"].values)
    source = dataset.attrs.get("transfer_from", "?")
    header = "| depth | " + " | ".join(
        f"{f}: eta* / edge / loss(eta*) / loss(eta*_{source})" for f in families
    ) + " |"
    lines = [header, "|" + "---|" * (len(families) + 1)]
    for depth in dataset["depth"].values:
        cells = []
        for family in families:
            row = dataset.sel(family=family, depth=depth)
            if not np.isfinite(float(row["optimal_learning_rate"])):
                cells.append("-")
                continue
            star = "*" if bool(row["optimum_at_edge"]) else ""
            cells.append(
                f"{float(row['optimal_learning_rate']):.3g}{star} / {float(row['stability_edge']):.3g} / "
                f"{float(row['optimal_loss']):.4g} / {float(row['loss_at_transferred_rate']):.4g}"
            )
        label = "inf" if np.isinf(depth) else str(int(depth))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _figure(dataset):
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    families = list(dataset["family"].values)
    depths = dataset["depth"].values
    finite_depths = depths[np.isfinite(depths)]
    steps, source = dataset.attrs["steps"], dataset.attrs.get("transfer_from")
    fig = Figure(figsize=(14.5, 4.2), layout="constrained")
    ax_scan, ax_rate, ax_loss = fig.subplots(1, 3)
    colors = colormaps["viridis"](np.linspace(0.0, 0.9, len(depths)))
    if "residual" in families:
        for d, depth in enumerate(depths):
            row = dataset.sel(family="residual", depth=depth)
            label = "depth inf" if np.isinf(depth) else f"depth {int(depth)}"
            color = "k" if np.isinf(depth) else colors[d]
            ax_scan.plot(row["learning_rate"], row["test_loss"], marker=".", color=color, lw=2.2 if np.isinf(depth) else 1.2, label=label)
            ax_scan.plot(float(row["optimal_learning_rate"]), float(row["optimal_loss"]), "*", color=color, ms=10)
        ax_scan.set(xscale="log", yscale="log", xlabel="learning rate", ylabel=f"test loss at step {steps}",
                    title="residual, b = beta0 / sqrt(depth) (star: optimum)")  # fmt: skip
        ax_scan.legend(fontsize=7)
    markers = {"residual": "o", "residual_unscaled": "s", "plain": "^"}
    top = 10.0
    for family in families:
        rows = dataset.sel(family=family, depth=finite_depths)
        line = ax_rate.plot(finite_depths, rows["optimal_learning_rate"], marker=markers.get(family, "o"), label=f"{family}: optimum")
        color = line[0].get_color()
        ax_rate.plot(finite_depths, rows["stability_edge"], ls="--", color=color, label=f"{family}: edge")
        ax_loss.plot(finite_depths, rows["optimal_loss"], marker=markers.get(family, "o"), color=color, label=f"{family}: own optimum")
        ax_loss.plot(finite_depths, rows["loss_at_transferred_rate"], ls=":", marker=".", color=color,
                     label=f"{family}: depth-{source} optimum")  # fmt: skip
        if family == "residual" and np.isinf(depths).any():
            limit = dataset.sel(family=family, depth=np.inf)
            ax_rate.axhline(float(limit["optimal_learning_rate"]), color=color, lw=0.8, alpha=0.6)
            ax_loss.axhline(float(limit["optimal_loss"]), color=color, lw=0.8, alpha=0.6)
        beyond = finite_depths[np.asarray(rows["optimal_loss"]) > top]
        if beyond.size:
            ax_loss.annotate(f"{family} leaves the frame at depth {int(beyond[0])}", (0.02, 0.95),
                             xycoords="axes fraction", fontsize=7, color=color, va="top")  # fmt: skip
    for axis in (ax_rate, ax_loss):
        axis.set_xscale("log", base=2)
        axis.xaxis.set_major_locator(FixedLocator(finite_depths))
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_locator(NullLocator())
        axis.legend(fontsize=6)
    ax_rate.set(yscale="log", xlabel="depth", ylabel="learning rate",
                title="optimum (solid), stability edge (dashed), limit (thin)")  # fmt: skip
    ax_loss.set(yscale="log", xlabel="depth", ylabel=f"test loss at step {steps}", ylim=(None, top),
                title="loss at the optimum and without retuning")  # fmt: skip
    return fig
