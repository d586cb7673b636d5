"""Figures and tables of the diagonal-network studies (``dmft.studies.diagonal``; README section
"Diagonal linear networks").

    python benchmarks/make_diagonal_figures.py                       # the crossover (gradient flow)
    python benchmarks/make_diagonal_figures.py --only incremental tradeoff

Writes ``docs/figures/diagonal_<study>.png`` and prints the README's tables. Cost on 2 busy cores:
the crossover ~25 min (the smallest ``init_scale`` learns its last coefficients at time ~1e3 and
needs ~500 innovation coordinates), the incremental-learning and trade-off studies a few minutes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from dmft.studies import diagonal  # noqa: E402

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"


def _row(name, values, fmt):
    return f"| {name} | " + " | ".join(fmt(v) for v in values) + " |"


def run_crossover():
    started = time.perf_counter()
    ds, figure = diagonal.crossover()
    figure.savefig(FIGURES / "diagonal_crossover.png", dpi=120)
    scales = ds["init_scale"].values
    print(f"\n## Kernel-to-rich crossover ({time.perf_counter() - started:.0f} s)\n")
    print("| s | " + " | ".join(f"{s:g}" for s in scales) + " |")
    print("|---|" + "---|" * scales.size)
    dmft_cells = [f"{m:.4g} +- {e:.1g}" for m, e in zip(ds["dmft_test_loss"].values, ds["dmft_test_loss_sem"].values)]
    print("| DMFT flow (long time) | " + " | ".join(dmft_cells) + " |")
    print(_row("flow time", ds["flow_time"].values, lambda v: f"{v:.3g}"))
    sim = [f"{m:.4g} +- {e:.1g}" for m, e in zip(ds["simulation_test_loss"].values, ds["simulation_test_loss_sem"].values)]
    print("| simulation (GD, D = 1000) | " + " | ".join(sim) + " |")
    fixed = [float(np.interp(np.log(s), np.log(ds["fine_scale"].values), ds["implicit_bias_test_loss"].values))
             for s in scales]
    print(_row("fixed point", fixed, lambda v: f"{v:.4g}"))
    print(_row("convex program (D = 1000)", ds["program_test_loss"].values, lambda v: f"{v:.4g}"))
    print(f"\nminimum l2 {ds.attrs['minimum_l2']:.4g}, basis pursuit {ds.attrs['basis_pursuit']:.4g}")


def run_incremental():
    ds, figure = diagonal.incremental_learning()
    figure.savefig(FIGURES / "diagonal_incremental.png", dpi=120)
    print("\nincremental learning: teacher", np.round(ds["teacher"].values, 3), "predicted half-times",
          np.round(ds["predicted_half_time"].values, 1))


def run_tradeoff():
    ds, figure = diagonal.tradeoff()
    figure.savefig(FIGURES / "diagonal_tradeoff.png", dpi=120)
    print("\n| s | " + " | ".join(f"{s:g}" for s in ds["init_scale"].values) + " |")
    print(_row("steps to train loss 1e-3", ds["steps_to_level"].values, lambda v: f"{v:.0f}"))
    print(_row(f"test loss at step {ds.attrs['steps']}", ds["final_test_loss"].values, lambda v: f"{v:.4f}"))


STUDIES = {"crossover": run_crossover, "incremental": run_incremental, "tradeoff": run_tradeoff}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(STUDIES), default=["crossover"])
    args = parser.parse_args(argv)
    for name in args.only:
        STUDIES[name]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
