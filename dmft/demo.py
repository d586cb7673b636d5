"""``dmft demo``: solve, simulate, compare — one figure and one table.

Panels: (a) Saxe et al. (2014) mode dynamics of a one-hidden-layer network from decoupled small
initial conditions, exact vs simulated; (b) depth 0, the Marchenko-Pastur curves vs simulation at
D = 1000 (alpha below and above 1, with label noise); (c) a depth-3 network, DMFT vs simulation;
(d) a diagonal network, DMFT (Monte Carlo) vs simulation.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._cli_common import write_json

__all__ = ["run_demo"]


@dataclass(frozen=True)
class _Comparison:
    panel: str
    label: str
    theory: np.ndarray
    simulation: np.ndarray
    simulation_sem: np.ndarray | None

    def rows(self, steps):
        for step in steps:
            gap = self.simulation[step] - self.theory[step]
            # no standard error for deterministic runs (decoupled Saxe networks)
            sem = None if self.simulation_sem is None else self.simulation_sem[step]
            yield (self.panel, self.label, int(step), float(self.theory[step]), float(self.simulation[step]),
                   None if sem is None else float(sem), float(gap), None if sem is None else float(gap / sem))


def _saxe_panel(ax) -> list[_Comparison]:
    from finite_size.saxe import SaxeNetwork, simulate_saxe

    from . import saxe
    from .training import GradientDescent

    singular_values, u0, learning_rate = (3.0, 2.0, 1.0), 1e-3, 0.01
    network = SaxeNetwork(singular_values=singular_values, depth=1, hidden=6, n_in=5, n_out=4,
                          init="decoupled", init_strength=u0)
    training = GradientDescent(learning_rate=learning_rate, steps=600)
    simulation = simulate_saxe(network, training, seeds=1)
    steps = simulation.steps
    comparisons = []
    for index, s in enumerate(singular_values):
        exact = saxe.mode_strength(s, u0, steps, depth=1, tau=1.0 / learning_rate)
        ax.plot(steps, exact, "-", lw=1.5, label=f"exact, s = {s:g}")
        every = 20
        ax.plot(steps[::every], simulation.mode_strength[::every, index], "o", ms=3, mfc="none",
                color=ax.lines[-1].get_color())
        # Decoupled networks are deterministic (every seed is the same Euler iteration of the flow):
        # the gap is the O(eta) discretisation error, not a statistical one, so no SEM is shown.
        comparisons.append(_Comparison("a", f"Saxe depth 1 mode s={s:g}", exact,
                                       simulation.mode_strength[:, index], None))
    ax.set_xlabel("step"); ax.set_ylabel("mode strength u(t)")
    ax.set_title("(a) Saxe et al. 2014, one hidden layer,\nexact (lines) vs network (circles)", fontsize=8)
    ax.legend(fontsize=7)
    return comparisons


def _loss_panel(ax, panel, title, cases, dim, seeds, report) -> list[_Comparison]:
    import finite_size

    from .solvers import solve

    comparisons = []
    for label, model, data, training in cases:
        with report(f"({panel}) {label}: D -> infinity ({type(model).__name__})"):
            theory = solve(model, data, training)
        with report(f"({panel}) {label}: simulation, D = {dim}, {seeds} seeds, {training.steps} steps"):
            simulation = finite_size.simulate(model, data, training, dim=dim, seeds=seeds)
        steps = np.arange(len(theory.test_loss))
        line, = ax.plot(steps, theory.test_loss, "-", lw=1.5, label=f"{label}: {theory.method} test")
        ax.plot(steps, theory.train_loss, "--", lw=1.2, color=line.get_color(), label=f"{label}: train")
        every = max(1, len(steps) // 20)
        ax.errorbar(steps[::every], simulation.test_loss[::every], yerr=simulation.test_loss_sem[::every],
                    fmt="o", ms=3, mfc="none", color=line.get_color(), capsize=1.5)
        ax.errorbar(steps[::every], simulation.train_loss[::every], yerr=simulation.train_loss_sem[::every],
                    fmt="s", ms=2.5, mfc="none", color=line.get_color(), capsize=1.5)
        for kind in ("test", "train"):
            # combined standard error: the simulation's over seeds and, for a sampling solver
            # (diagonal networks), the DMFT's own Monte Carlo error
            theory_sem = getattr(theory, f"{kind}_loss_sem")
            sem = getattr(simulation, f"{kind}_loss_sem")
            if theory_sem is not None:
                sem = np.hypot(sem, theory_sem)
            comparisons.append(_Comparison(panel, f"{label} {kind}", getattr(theory, f"{kind}_loss"),
                                           getattr(simulation, f"{kind}_loss"), sem))
    ax.set_yscale("log"); ax.set_xlabel("step"); ax.set_ylabel("loss")
    ax.set_title(f"{title}\n(lines: D -> inf; markers: D = {dim}, {seeds} seeds)", fontsize=8)
    ax.legend(fontsize=6)
    return comparisons


class _Progress:
    """One line per stage on stderr, ``... done in 1.2 s`` when it ends (``enabled=False``: silent)."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total, self.count = enabled, total, 0

    def __call__(self, what: str):
        return _Stage(self, what)


class _Stage:
    def __init__(self, progress: _Progress, what: str):
        self.progress, self.what = progress, what

    def __enter__(self):
        progress = self.progress
        progress.count += 1
        self.started = time.perf_counter()
        if progress.enabled:
            print(f"[{progress.count}/{progress.total}] {self.what} ...", end="", file=sys.stderr, flush=True)
        return self

    def __exit__(self, kind, error, traceback):
        if self.progress.enabled:
            outcome = "failed" if kind is not None else "done"
            print(f" {outcome} in {time.perf_counter() - self.started:.1f} s", file=sys.stderr, flush=True)
        return False


def run_demo(out: Path | str = "demo_output", *, quick: bool = False, progress: bool = True) -> int:
    """Run the demo, write ``out/demo.png`` and ``out/demo.json``, print the comparison table.

    ``progress`` prints each stage (a solve or a simulation, 10 in all) on stderr as it starts and
    ends, so the half minute of a full run is never silent; the table goes to stdout.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data import GaussianData, SparseTeacher
    from .models import DeepLinear, DiagonalLinear, Linear
    from .training import GradientDescent

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = _Progress(progress, total=10)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    with report("(a) Saxe et al.: exact mode dynamics and a simulated network"):
        comparisons = _saxe_panel(axes[0, 0])
    depth0 = [
        ("alpha=0.5", Linear(), GaussianData(alpha=0.5, noise=0.3), GradientDescent(0.3, 60)),
        ("alpha=2", Linear(), GaussianData(alpha=2.0, noise=0.3), GradientDescent(0.3, 60)),
    ]
    comparisons += _loss_panel(axes[0, 1], "b", "(b) depth 0: Marchenko-Pastur", depth0,
                               dim=400 if quick else 1000, seeds=4 if quick else 8, report=report)
    # eta = 0.05 sits well inside the stable range; near the edge of stability finite networks
    # approach the DMFT slowly (README, deep linear networks).
    deep = [("depth 3", DeepLinear(depth=3), GaussianData(alpha=2.0, noise=0.2), GradientDescent(0.05, 60))]
    comparisons += _loss_panel(axes[1, 0], "c", "(c) deep linear network, depth 3, DMFT", deep,
                               dim=200 if quick else 400, seeds=4 if quick else 8, report=report)
    diagonal = [("diagonal L=2", DiagonalLinear(depth=2, init_scale=0.3),
                 GaussianData(alpha=0.5, noise=0.0, teacher=SparseTeacher(density=0.2)), GradientDescent(0.1, 60))]
    comparisons += _loss_panel(axes[1, 1], "d", "(d) diagonal network, DMFT (Monte Carlo)", diagonal,
                               dim=1000 if quick else 4000, seeds=4, report=report)
    with report("drawing the figure"):
        fig.tight_layout()
        figure_path = out / "demo.png"
        fig.savefig(figure_path, dpi=120)
        plt.close(fig)

    rows = []
    for comparison in comparisons:
        last = len(comparison.theory) - 1
        rows += list(comparison.rows(sorted({last // 4, last // 2, last})))
    header = f"{'panel':<5} {'curve':<28} {'step':>5} {'exact/DMFT':>12} {'simulation':>12} {'+- sem':>9} {'gap':>10} {'gap/sem':>8}"
    print(header)
    print("-" * len(header))
    for panel, label, step, theory, simulation, sem, gap, ratio in rows:
        sem_text = "-" if sem is None else f"{sem:.2g}"
        ratio_text = "-" if ratio is None else f"{ratio:.2f}"
        print(f"{panel:<5} {label:<28} {step:>5} {theory:>12.5g} {simulation:>12.5g} {sem_text:>9} {gap:>10.3g} {ratio_text:>8}")
    print("sem: combined standard error (simulation seeds, and the DMFT's Monte Carlo error where it samples).\n"
          "Saxe rows (a) are deterministic (no sem, '-'; null in demo.json): their gap is the O(learning rate)\n"
          "error of discrete steps.")
    write_json(out / "demo.json",
               {"columns": ["panel", "curve", "step", "theory", "simulation", "sem", "gap", "gap_over_sem"], "rows": rows})
    print(f"\nwrote {figure_path} and {out / 'demo.json'} in {time.perf_counter() - started:.1f} s")
    return 0
