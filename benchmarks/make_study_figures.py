"""Figures and tables of the three studies of issue 7 (docs/figures/*.png, markdown on stdout).

    python benchmarks/make_study_figures.py                 # all three, cached in the dmft cache
    python benchmarks/make_study_figures.py --only transfer --cache /tmp/dmft-cache

Every number in the README's study sections is printed by this script. Points are cached
(``dmft.sweep``), so a second run only redraws. Cost on 2 busy cores, uncached: transfer ~4 min
(of which the finite-network overlay ~3), scaling ~1 min; the power law runs the deep flow to t = 1e4
for 6 richness values and 8 more for the source exponents, and to t = 1e5 for 4 widths, uncached
(~15 min on 2 busy cores).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

import dmft  # noqa: E402
from dmft.studies import power_law, scaling, transfer  # noqa: E402

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"

TRANSFER_WIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
TRANSFER_RATES = tuple(float(x) for x in np.geomspace(0.02, 0.8, 22))
REGIME_RATES = tuple(float(x) for x in np.geomspace(0.005, 0.8, 29))
TRANSFER_REGIMES = {
    "online SGD, batch D, noiseless (default)": {},
    "full-batch GD, alpha = 2, noiseless": dict(
        data=dmft.GaussianData(alpha=2.0), training=dmft.GradientDescent(steps=30)),
    "online SGD, batch D, label noise 0.3": dict(
        data=dmft.GaussianData(alpha=None, noise=0.3), training=dmft.OnlineSGD(steps=30, batch_ratio=1.0)),
}


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def run_transfer(cache):
    started = time.perf_counter()
    ds, figure = transfer.learning_rate_transfer(widths=TRANSFER_WIDTHS, learning_rates=TRANSFER_RATES, cache=cache,
                                                 simulate=dict(width_ratio=0.25, dim=400, seeds=6))
    figure.savefig(FIGURES / "transfer.png", dpi=120)
    print("\n## Learning-rate transfer (depth 2, gamma0 = 2, online SGD batch D, 30 steps)\n")
    print(f"grid: {len(TRANSFER_RATES)} learning rates {TRANSFER_RATES[0]:g} ... {TRANSFER_RATES[-1]:g} (log-spaced)\n")
    rows = []
    for nu in TRANSFER_WIDTHS:
        cells = [f"{nu:g}"]
        for name in ("mup", "ntk"):
            point = ds.sel(parameterization=name, width_ratio=nu)
            cells += [f"{float(point['optimal_learning_rate']):.4f}", f"{float(point['optimal_test_loss']):.3g}"]
        rows.append(cells)
    drift = ds["optimal_learning_rate_drift"]
    rows.append(["drift max/min"] + sum(([f"x{float(drift.sel(parameterization=n)):.2f}", ""] for n in ("mup", "ntk")), []))
    rows.append(["drift (octaves)"] + sum(([f"{math.log2(float(drift.sel(parameterization=n))):.2f}", ""]
                                           for n in ("mup", "ntk")), []))
    print(_table(["nu", "muP eta*", "muP loss", "NTK eta*", "NTK loss"], rows))
    for name in ("mup", "ntk"):
        point = ds.sel(parameterization=name)
        print(f"\n{name}: width-order violations {int(point['width_order_violations'].sum())} of "
              f"{int(point['comparable_pairs'].sum())} comparable neighbouring pairs; wider diverged where narrower "
              f"converged: {int(point['wider_diverged'].sum())}; smallest relative gap "
              f"{np.nanmin(point['smallest_relative_gap'].values):.3g}; optima at grid edge: "
              f"{int(point['optimum_at_grid_edge'].sum())}")

    print("\nfinite networks at nu = 0.25 (D = 400, N = 100, 6 seeds) against the DMFT, test loss at step 30:\n")
    rows = []
    for name in ("mup", "ntk"):
        dmft_curve = ds["final_test_loss"].sel(parameterization=name, width_ratio=0.25).values
        simulated = ds["simulated_final_test_loss"].sel(parameterization=name).values
        sem = ds["simulated_final_test_loss_sem"].sel(parameterization=name).values
        for i in np.flatnonzero(np.isfinite(dmft_curve) | np.isfinite(simulated)):
            rows.append([name, f"{TRANSFER_RATES[i]:.4f}", f"{dmft_curve[i]:.4g}", f"{simulated[i]:.4g} +- {sem[i]:.2g}"])
        optimum = transfer.optimal_learning_rate(TRANSFER_RATES, simulated)
        rows.append([name, "optimum", f"{float(ds['optimal_learning_rate'].sel(parameterization=name, width_ratio=0.25)):.4f}",
                     f"{optimum[0]:.4f}" + (" (edge)" if optimum[2] else "")])
    print(_table(["parameterization", "eta", "DMFT", "simulation"], rows))

    # the refinement check behind the test's margin: the cheap 12-point grid against this 22-point one
    cheap, _ = transfer.learning_rate_transfer(cache=cache, figure=False)
    fine = ds["optimal_learning_rate"].sel(width_ratio=list(transfer.DEFAULT_WIDTHS))
    change = np.abs(cheap["optimal_learning_rate"].values / fine.values - 1).max()
    print(f"\ncheap default grid (12 rates, widths {transfer.DEFAULT_WIDTHS}): drift muP "
          f"x{float(cheap['optimal_learning_rate_drift'].sel(parameterization='mup')):.2f}, NTK "
          f"x{float(cheap['optimal_learning_rate_drift'].sel(parameterization='ntk')):.2f}; refined optima differ "
          f"from the 22-point grid's by at most {100 * change:.1f} %")

    print(f"\n### Other regimes (same network and widths; {len(REGIME_RATES)} learning rates "
          f"{REGIME_RATES[0]:g} ... {REGIME_RATES[-1]:g})\n")
    rows = []
    for label, options in TRANSFER_REGIMES.items():
        other, _ = transfer.learning_rate_transfer(widths=TRANSFER_WIDTHS, learning_rates=REGIME_RATES,
                                                   cache=cache, figure=False, **options)
        cells = [label]
        for name in ("mup", "ntk"):
            point = other.sel(parameterization=name)
            edge = " (edge)" if point["optimum_at_grid_edge"].any() else ""
            cells += [f"x{float(point['optimal_learning_rate_drift']):.2f}{edge}",
                      f"{int(point['width_order_violations'].sum())}/{int(point['comparable_pairs'].sum())}"]
        rows.append(cells)
    print(_table(["regime", "muP drift", "muP violations", "NTK drift", "NTK violations"], rows))
    print(f"\n(transfer: {time.perf_counter() - started:.0f} s)")


def run_scaling(cache):
    started = time.perf_counter()
    widths = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    depths = (1, 2, 3, 4, 5, 6, 8)
    training = dmft.GradientDescent(learning_rate=0.05, steps=400)
    ds, figure = scaling.width_depth_scaling(widths=widths, depths=depths, training=training, fixed_steps=50, cache=cache)
    figure.savefig(FIGURES / "scaling.png", dpi=120)
    print("\n## Width and depth scaling (muP, gamma0 = 1, depth 2 / width 1, GD alpha = 2, sigma = 0.2, "
          "eta = 0.05; loss at step 50)\n")
    for name, coordinate, values in (("width", "nu", widths), ("depth", "L", depths)):
        rows = []
        key = "width_ratio" if coordinate == "nu" else "depth"
        for value in values:
            point = ds[f"{name}_test_loss"].sel({key: value, "step": 50})
            eos = int(ds[f"{name}_edge_of_stability_step"].sel({key: value}))
            rows.append([f"{value:g}"] + [f"{float(point.sel(part=p)):.4g}" for p in scaling.PARTS]
                        + ["never" if eos < 0 else str(eos)])
        print(_table([coordinate, "total", "bias", "init variance", "data variance", "edge of stability from step"], rows))
        print()
    print("large-width exponents d log part / d log nu (widths 8 -> 16, step 50): "
          + ", ".join(f"{p} {float(ds['large_width_exponent'].sel(part=p)):.3f}" for p in scaling.PARTS))
    rows = [[f"{c:.1f}", f"{float(f):.4g}", f"{float(w):g}"]
            for c, f, w in zip(ds["compute_budget"].values, ds["frontier_loss"].values, ds["optimal_width"].values)]
    print("\nfixed compute C = nu x steps (400 steps):\n")
    print(_table(["C", "frontier loss", "optimal nu"], rows))
    print(f"\n(scaling: {time.perf_counter() - started:.0f} s)")


def run_power_law(cache):
    """The power-law study on the population flow to t = 1e4 (no sweep: ``cache`` is not used)."""
    started = time.perf_counter()
    richness = (0.01, 0.3, 1.0, 3.0, 10.0, 30.0)
    ds, figure = power_law.power_law_study(richness=richness, frontier_widths=(1e-7, 1e-6, 1e-5, 1e-4),
                                           frontier_time=1e5, progress=True)
    figure.savefig(FIGURES / "power_law.png", dpi=120)
    a, b = ds.attrs["a"], ds.attrs["b"]
    t0, t1 = ds.attrs["window"]
    print(f"\n## Power-law data (a = {a:g}, b = {b:g}, M = {ds.attrs['modes']:g} modes in {ds.attrs['shares']} "
          f"shares, depth {ds.attrs['depth']}, infinite width, population gradient flow to t = "
          f"{ds.attrs['time_reached']:g}, rtol {ds.attrs['rtol']:g}; fit on t in [{t0:g}, {t1:g}])\n")
    ends = [float(ds["time"].sel(time=t, method="nearest")) for t in (t0, math.sqrt(t0 * t1), t1)]
    rows = [[f"{g:g}", f"{float(ds['exponent'].sel(gamma0=g)):.3f}",
             f"[{float(ds['exponent_low'].sel(gamma0=g)):.3f}, {float(ds['exponent_high'].sel(gamma0=g)):.3f}]",
             " / ".join(f"{float(ds['local_exponent'].sel(gamma0=g, time=t)):.3f}" for t in ends),
             f"{float(ds['wall_time_s'].sel(gamma0=g)):.0f}"] for g in richness]
    rows.append(["kernel limit (exact)", f"{ds.attrs['kernel_fit_exponent']:.3f}",
                 f"[{ds.attrs['kernel_fit_exponent_low']:.3f}, {ds.attrs['kernel_fit_exponent_high']:.3f}]",
                 " / ".join(f"{float(ds['kernel_local_exponent'].sel(time=t)):.3f}" for t in ends), ""])
    print(_table(["gamma0", "exponent", "interval (window choices)",
                  "local exponent at t = " + " / ".join(f"{t:.3g}" for t in ends), "solve (s)"], rows))
    print(f"\nderived kernel rate b = {b:g}; published rich rate 2b/(1+b) = {ds.attrs['rich_rate_published']:.4f}")
    print(f"status of the solves: {ds['status'].values.tolist()}")
    lazy = ds["test_loss"].sel(gamma0=richness[0]).values
    print(f"lazy DMFT vs kernel curve: max relative difference {np.max(np.abs(lazy / ds['kernel_test_loss'].values - 1)):.2e}")
    print(f"compute-optimal frontier (gamma0 = {ds.attrs['frontier_richness']:g}, flow to t = "
          f"{ds['frontier_time'].values[-1]:g}, widths "
          f"{ds['width_ratio'].values.tolist()}): L* ~ C^-{ds.attrs['frontier_exponent']:.3f} "
          f"[{ds.attrs['frontier_exponent_low']:.3f}, {ds.attrs['frontier_exponent_high']:.3f}] over "
          f"{ds.attrs['frontier_decades']:.1f} decades of compute, C in [{ds['compute_budget'].values[0]:.3g}, "
          f"{ds['compute_budget'].values[-1]:.3g}]; optimal widths {ds['optimal_width'].values.tolist()}")

    # the rich exponent against the source exponent: hard (b < 1) and easy (b > 1) tasks
    rows = []
    for source in (0.25, 0.5, 0.75, 1.5):
        scan, _ = power_law.power_law_study(b=source, richness=(0.01, 30.0), frontier_widths=None, figure=False,
                                            progress=True)
        lazy, rich = scan.sel(gamma0=0.01), scan.sel(gamma0=30.0)
        rows.append([f"{source:g}", f"{float(lazy['exponent']):.3f} [{float(lazy['exponent_low']):.3f}, "
                     f"{float(lazy['exponent_high']):.3f}]", f"{float(rich['exponent']):.3f} "
                     f"[{float(rich['exponent_low']):.3f}, {float(rich['exponent_high']):.3f}]",
                     f"{power_law.rich_rate_published(source):.3f}"])
    print(f"\nexponents on t in [{t0:g}, {t1:g}] against the source exponent (gamma0 = 0.01 and 30):\n")
    print(_table(["b", "lazy (gamma0 = 0.01)", "rich (gamma0 = 30)", "published chi(b)"], rows))
    rows = []
    for depth in (2, 3):
        scan, _ = power_law.power_law_study(depth=depth, richness=(30.0,), frontier_widths=None, figure=False,
                                            progress=True)
        rich = scan.sel(gamma0=30.0)
        ends = [float(scan["time"].sel(time=t, method="nearest")) for t in (t0, t1)]
        rows.append([f"{depth}", f"{float(rich['exponent']):.3f} [{float(rich['exponent_low']):.3f}, "
                     f"{float(rich['exponent_high']):.3f}]",
                     " / ".join(f"{float(rich['local_exponent'].sel(time=t)):.3f}" for t in ends),
                     f"{(depth + 1) * b / (1 + depth * b):.3f}"])
    print(f"\ndeeper networks, gamma0 = 30, b = {b:g}, fit on t in [{t0:g}, {t1:g}]:\n")
    print(_table(["depth", "exponent", f"local exponent at t = {t0:g} / {t1:g}", "(L + 1) b / (1 + L b)"], rows))
    print(f"\n(power law: {time.perf_counter() - started:.0f} s)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("transfer", "scaling", "power_law"), action="append")
    parser.add_argument("--cache", default=None, help="cache folder (default: DMFT_CACHE_DIR or the user cache)")
    args = parser.parse_args(argv)
    FIGURES.mkdir(parents=True, exist_ok=True)
    chosen = args.only or ["transfer", "scaling", "power_law"]
    for name in chosen:
        {"transfer": run_transfer, "scaling": run_scaling, "power_law": run_power_law}[name](args.cache)
    print("\nfigures: " + ", ".join(str(FIGURES / f"{name}.png") for name in chosen))


if __name__ == "__main__":
    main()
