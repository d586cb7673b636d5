"""Figures of loss curves: DMFT / exact answers as lines, simulations as points with error bars."""

from __future__ import annotations

from typing import Iterable

import numpy as np

__all__ = ["plot_losses"]


def plot_losses(results: Iterable, ax=None, *, train: bool = True, log: bool = True, labels=None):
    """Overlay the test (and train) loss curves of several :class:`dmft.Result` objects.

    Exact / DMFT results are drawn as lines; simulations as markers with one-standard-error bars.
    Returns the matplotlib axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    results = list(results)
    labels = labels or [_label(r) for r in results]
    for result, label in zip(results, labels):
        curves = [("test", result.test_loss, result.test_loss_sem)]
        if train:
            curves.append(("train", result.train_loss, result.train_loss_sem))
        for kind, curve, sem in curves:
            steps = np.arange(len(curve))
            style = "-" if kind == "test" else "--"
            if result.method == "simulation":
                every = max(1, len(steps) // 25)
                ax.errorbar(
                    steps[::every], curve[::every], yerr=None if sem is None else sem[::every],
                    fmt="o" if kind == "test" else "s", ms=3.5, mfc="none", capsize=2,
                    label=f"{label}, {kind}",
                )
            else:
                ax.plot(steps, curve, style, lw=1.6, label=f"{label}, {kind}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    return ax


def _label(result) -> str:
    if result.method == "simulation":
        return f"simulation D={result.info.get('dim')}"
    return result.method.upper() if result.method == "dmft" else result.method
