"""Figures and tables of the spherical Boltzmann machine studies (issue 12): docs/figures/boltzmann_*.png
and the README's markdown tables on stdout.

    python benchmarks/make_boltzmann_figures.py                    # all four
    python benchmarks/make_boltzmann_figures.py --only cascade --no-simulation

Every number in the README's "Equilibrium, phase diagrams and studies" section is printed by this
script. Cost on 2 busy cores: cascade ~1 min with its finite-N overlay (N = 200, 4 seeds, 5 gammas),
double descent and temperature < 1 s, chain speed ~1 min (the large-N dynamics at 4 speeds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from dmft.studies import boltzmann as studies  # noqa: E402

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def run_cascade(simulate: bool):
    options = {"prior_precisions": [0.1, 0.4, 1.0, 2.0, 5.0], "dim": 200, "seeds": 4} if simulate else None
    ds = studies.cascade(simulate=options)
    studies.plot_cascade(ds).savefig(FIGURES / "boltzmann_cascade.png", dpi=110)
    rows = [[f"{t['between'][0]:.3f}-{t['between'][1]:.3f}", " -> ".join(t["phase"][::-1]),
             f"{t['condensed_modes'][1]} -> {t['condensed_modes'][0]}"] for t in json.loads(ds.attrs["transitions"])][::-1]
    print("cascade (c = (1.6, 0.9, 0.5), eta = 3, beta = 1), gamma falling:")
    print(_table(["gamma", "phase", "condensed modes d"], rows))
    print("BBP thresholds gamma = eta c_a^2:", [round(v, 3) for v in json.loads(ds.attrs["bbp_thresholds"])])
    if simulate:
        rows = []
        for i, gamma in enumerate(ds["simulated_prior_precision"].values):
            point = ds.sel(prior_precision=gamma, method="nearest")
            theory = point["data_overlap"].values ** 2
            sim = ds["simulated_data_overlap_sq"].values[i]
            sem = ds["simulated_data_overlap_sq_sem"].values[i]
            rows.append([f"{gamma:g}", int(point["condensed_modes"]),
                         ", ".join(f"{t:.3f}" for t in theory),
                         ", ".join(f"{s:.3f}+-{e:.3f}" for s, e in zip(sim, sem)),
                         f"{float(point['top_eigenvalue']):.3f}", f"{ds['simulated_eigenvalues'].values[i, 0]:.3f}"])
        print(f"finite-N overlay (N = {ds.attrs['simulated_dim']}, {ds.attrs['simulated_seeds']} seeds):")
        print(_table(["gamma", "d", "s_a^2 theory", "s_a^2 simulation", "top eigenvalue theory", "simulation"], rows))


def run_double_descent():
    ds = studies.double_descent()
    studies.plot_double_descent(ds).savefig(FIGURES / "boltzmann_double_descent.png", dpi=110)
    rows = []
    for eta in ds["likelihood_weight"].values:
        p = ds.sel(likelihood_weight=eta)
        rows.append([f"{eta:g}", f"{float(p['best_prior_precision']):.3f}", f"{float(p['best_reverse_kl']):.4f}",
                     "-" if np.isnan(float(p["peak_prior_precision"])) else f"{float(p['peak_prior_precision']):.3f}",
                     "-" if np.isnan(float(p["peak_reverse_kl"])) else f"{float(p['peak_reverse_kl']):.4f}",
                     f"{float(p['forward_kl'].min()):.4f}"])
    print(f"double descent (teacher omega* = 3, K = 3; plateau {ds.attrs['paramagnetic_plateau']:.4f}):")
    print(_table(["eta", "best gamma", "best reverse KL", "peak gamma", "peak reverse KL", "best forward KL"], rows))


def run_temperature():
    ds = studies.sampling_temperature()
    studies.plot_sampling_temperature(ds).savefig(FIGURES / "boltzmann_temperature.png", dpi=110)
    rows = []
    for gamma in ds["prior_precision"].values:
        p = ds.sel(prior_precision=gamma)
        rows.append([f"{gamma:g}", f"{float(p['best_beta_reverse']):.3f}", f"{float(p['reverse_kl_at_one']):.4f}",
                     f"{float(p['best_reverse_kl']):.4f}", f"{float(p['best_beta_forward']):.3f}",
                     f"{float(p['forward_kl_at_one']):.4f}", f"{float(p['best_forward_kl']):.4f}"])
    print("sampling temperature (teacher omega* = 3, K = 3, eta = 10):")
    print(_table(["gamma", "beta* (reverse)", "reverse KL at beta = 1", "at beta*", "beta* (forward)",
                  "forward KL at beta = 1", "at beta*"], rows))


def run_chain_speed():
    started = time.perf_counter()
    ds = studies.chain_speed_bias(speeds=(0.1, 0.3, 1.0, 3.0))
    studies.plot_chain_speed_bias(ds).savefig(FIGURES / "boltzmann_chain_speed.png", dpi=110)
    rows = [[f"{nu:g}", f"{float(ds['final_s'].sel(chain_speed=nu, mode=1)):.4f}", f"{float(ds['bias'].sel(chain_speed=nu, mode=1)):+.4f}",
             f"{float(ds['plateau_drift'].sel(chain_speed=nu, mode=1)):+.1e}", f"{float(ds['final_top_eigenvalue'].sel(chain_speed=nu)):.4f}",
             f"{float(ds['final_reverse_kl'].sel(chain_speed=nu)):.4f}", f"{float(ds['final_forward_kl'].sel(chain_speed=nu)):.4f}",
             f"{float(ds['wall_time_s'].sel(chain_speed=nu)):.1f}"] for nu in ds["chain_speed"].values]
    rows.append(["inf (equilibrium)", f"{float(ds['equilibrium_s'].sel(mode=1)):.4f}", "0", "-", f"{float(ds['equilibrium_top_eigenvalue']):.4f}",
                 f"{float(ds['equilibrium_reverse_kl']):.4f}", f"{float(ds['equilibrium_forward_kl']):.4f}", "-"])
    print(f"chain speed (teacher omega* = 3, K = 3, gamma = 0.5, eta = 10, t = {float(ds['time'][-1]):g}; {time.perf_counter() - started:.0f} s):")
    print(_table(["nu", "\\|s_1(t)\\|", "bias", "drift over the last 20 %", "top eigenvalue", "reverse KL", "forward KL", "solve time (s)"], rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("cascade", "double_descent", "temperature", "chain_speed"))
    parser.add_argument("--no-simulation", action="store_true", help="skip the cascade's finite-N overlay")
    args = parser.parse_args()
    FIGURES.mkdir(parents=True, exist_ok=True)
    jobs = {"cascade": lambda: run_cascade(not args.no_simulation), "double_descent": run_double_descent,
            "temperature": run_temperature, "chain_speed": run_chain_speed}
    for name, job in jobs.items():
        if args.only in (None, name):
            job()
            print()
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
