"""Figures of loss curves: DMFT / exact answers as lines, simulations as points with error bars.

>>> import dmft, finite_size
>>> from dmft.plotting import plot_losses, describe
>>> config = dmft.DeepLinear(depth=3), dmft.GaussianData(alpha=2.0), dmft.GradientDescent(0.05, 200)
>>> theory = dmft.solve(*config)
>>> sim = finite_size.simulate(*config, dim=400, seeds=8)
>>> ax = plot_losses([theory, sim])                  # x axis: result.time
>>> ax.set_title(describe(*config), fontsize=8)      # a readable, wrapped title
>>> ax.figure.savefig("curves.png")
"""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Any, Iterable

import numpy as np

from .result import time_dimension

__all__ = ["plot_losses", "describe"]


def plot_losses(results: Iterable, ax=None, *, train: bool = True, log: bool = True, logx: bool | None = None,
                labels=None):
    """Overlay the test (and train) loss curves of several :class:`dmft.Result` objects.

    The x axis is ``result.time``: the step for discrete training, the flow time for
    :class:`dmft.GradientFlow`. Exact / DMFT results are drawn as lines; simulations as markers
    with one-standard-error bars, and a result with a Monte Carlo error (diagonal networks) as a
    line with a one-standard-error band.

    Parameters
    ----------
    results : :class:`dmft.Result` objects (any mix of solves and simulations).
    ax : matplotlib axes to draw on (default: a new figure).
    train : also draw the train losses (dashed lines / square markers).
    log : logarithmic loss axis.
    logx : logarithmic time axis; default: on for gradient flows (whose ``save_at`` is often
        geometric), off for discrete training. Times ``<= 0`` are left out on a log axis.
    labels : one legend label per result (default: the method, and ``D`` for simulations).

    Returns
    -------
    The matplotlib axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    results = list(results)
    labels = labels or [_label(r) for r in results]
    axes = {time_dimension(r.training) for r in results}
    if logx is None:
        logx = axes == {"time"}
    for result, label in zip(results, labels):
        curves = [("test", result.test_loss, result.test_loss_sem)]
        if train:
            curves.append(("train", result.train_loss, result.train_loss_sem))
        time = np.asarray(result.time, dtype=float)
        shown = time > 0 if logx else np.ones(time.shape, dtype=bool)
        for kind, curve, sem in curves:
            x, y = time[shown], np.asarray(curve)[shown]
            error = None if sem is None else np.asarray(sem)[shown]
            style = "-" if kind == "test" else "--"
            if result.method == "simulation":
                every = max(1, len(x) // 25)
                ax.errorbar(
                    x[::every], y[::every], yerr=None if error is None else error[::every],
                    fmt="o" if kind == "test" else "s", ms=3.5, mfc="none", capsize=2,
                    label=f"{label}, {kind}",
                )
            else:
                line, = ax.plot(x, y, style, lw=1.6, label=f"{label}, {kind}")
                if error is not None:
                    ax.fill_between(x, y - error, y + error, color=line.get_color(), alpha=0.25, lw=0)
    ax.set_xlabel("step" if axes == {"step"} else "time")
    ax.set_ylabel("loss")
    if log:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.legend(fontsize=7)
    return ax


def describe(*configs, width: int = 64, extra: str = "") -> str:
    """A short, readable description of configuration objects for a figure title, wrapped at
    ``width`` characters: each object as ``Type(field=value, ...)`` with every field that is set
    (fields left at a default of ``None`` or ``False`` are left out; numbers to 4 digits; a schedule as
    ``schedule[n steps, min..max]``, a long tuple such as ``save_at`` as its count and range),
    objects separated by ``;`` and ``extra`` appended."""
    text = "; ".join(_short(c) for c in configs)
    if extra:
        text += "; " + extra
    return "\n".join(textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False))


def _short(config: Any) -> str:
    if not (dataclasses.is_dataclass(config) and not isinstance(config, type)):
        return _value(config)
    parts = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if (value is None or value is False) and field.default is value:
            continue
        parts.append(f"{field.name}={_value(value, field.name)}")
    return f"{type(config).__name__}({', '.join(parts)})"


def _value(value: Any, name: str = "") -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _short(value)
    if isinstance(value, tuple) and value and all(isinstance(v, (int, float)) for v in value):
        if name == "learning_rate":
            return f"schedule[{len(value)} steps, {min(value):.3g}..{max(value):.3g}]"
        if len(value) > 4:
            return f"[{len(value)} values, {value[0]:.3g}..{value[-1]:.3g}]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value) if isinstance(value, str) else str(value)


def _label(result) -> str:
    if result.method == "simulation":
        return f"simulation D={result.info.get('dim')}"
    return result.method.upper() if result.method == "dmft" else result.method
