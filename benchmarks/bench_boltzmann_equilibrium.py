"""Benchmark of dmft.phase_diagram (issue 12): a 200 x 200 equilibrium phase diagram of the
spherical Boltzmann machine over (prior precision, likelihood weight), teacher data (K = 3), in
one vectorised call, against the baseline of calling dmft.equilibrium point by point, measured in
the same run (on a slice of the grid, ``--loop-rows`` rows of 200 points, scaled to the full grid:
the per-point cost does not depend on the point). Goal: the diagram in under 2 s on 2 cores.

Run: python benchmarks/bench_boltzmann_equilibrium.py [--size 200] [--loop-rows 10] [--repeats 3]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import dmft  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200, help="grid points per axis")
    parser.add_argument("--loop-rows", type=int, default=10, help="rows of the grid timed point by point")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many vectorised calls")
    args = parser.parse_args()
    model, data = dmft.SphericalBoltzmann(), dmft.SpikedTeacher(strength=3.0, samples=3)
    training = dmft.Langevin(chain_speed=float("inf"))
    gammas = np.geomspace(0.01, 20.0, args.size)
    etas = np.geomspace(0.05, 200.0, args.size)
    over = {"training.prior_precision": gammas, "training.likelihood_weight": etas}

    dmft.phase_diagram(model, data, training, over={"training.prior_precision": gammas[:3]})  # imports (xarray)
    vectorised = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        ds = dmft.phase_diagram(model, data, training, over=over)
        vectorised.append(time.perf_counter() - started)
    best = min(vectorised)

    started = time.perf_counter()
    rows = gammas[: args.loop_rows]
    checked = 0
    for i, gamma in enumerate(rows):
        for j, eta in enumerate(etas):
            eq = dmft.equilibrium(model, data, training.replace(prior_precision=float(gamma), likelihood_weight=float(eta)))
            assert abs(eq.log_evidence - float(ds["log_evidence"][i, j])) <= 1e-9 * max(1.0, abs(eq.log_evidence))
            checked += 1
    loop = time.perf_counter() - started
    per_point = loop / checked
    full_loop = per_point * args.size**2

    phases = {name: int((ds["phase"].values == k).sum()) for k, name in enumerate(dmft.boltzmann_equilibrium.PHASES)}
    print(f"grid {args.size} x {args.size} = {args.size**2} points, phases {phases}, max condensed modes {int(ds['condensed_modes'].max())}")
    print(f"vectorised phase_diagram: best {best:.3f} s of {args.repeats} ({', '.join(f'{t:.3f}' for t in vectorised)})")
    print(f"per-point dmft.equilibrium: {per_point * 1e3:.3f} ms/point over {checked} points ({loop:.2f} s), "
          f"extrapolated to the grid {full_loop:.1f} s (same numbers to 1e-9)")
    print(f"ratio per-point / vectorised: {full_loop / best:.0f}x; goal < 2 s: {'met' if best < 2.0 else 'NOT met'}")
    print(f"load average (1, 5, 15 min): {os.getloadavg()}")


if __name__ == "__main__":
    main()
