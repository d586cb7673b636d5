"""Benchmark: the large-N dynamics of a spherical Boltzmann machine to t = 1000 against a finite-N
Langevin simulation of the same accuracy, measured in one run.

The DMFT (``dmft.solve``, rtol 1e-4) runs to t = 1000 with the spectral learning curves at the
final time, then at all 201 report times. The simulation cannot run to t = 1000 at that accuracy
here, so its cost is measured on a segment and scaled: one Heun step of ``seeds`` machines of size
``N`` is timed (median of several), and the number of seeds that brings the standard error of
``s_1`` (measured on the same segment) down to the DMFT's rtol sets the accuracy-matched cost
(statistical error only: the O(1/N) bias would need larger N on top, so the ratio is a lower bound).

    python benchmarks/bench_boltzmann.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import dmft  # noqa: E402
import finite_size  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="t = 200 and a shorter simulated segment")
    args = parser.parse_args()
    horizon = 200.0 if args.quick else 1000.0
    model = dmft.SphericalBoltzmann()
    data = dmft.DataCovariance(eigenvalues=(1.5, 0.5))
    training = dmft.Langevin(time=horizon, prior_precision=1.0, likelihood_weight=10.0, chain_speed=1.0, rtol=1e-4)

    dmft.solve(model, data, training.replace(time=2.0))  # compile (cached afterwards)
    started, cpu = time.perf_counter(), time.process_time()
    result = dmft.solve(model, data, training, curves="final")
    dmft_time, dmft_cpu = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    dmft.solve(model, data, training, curves="all")
    dmft_curves_time, curves_cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"DMFT to t = {horizon:g}: {dmft_time:.2f} s wall / {dmft_cpu:.2f} s CPU (curves at the final time), "
          f"{dmft_curves_time:.2f} s wall / {curves_cpu:.2f} s CPU (curves at "
          f"{result.time.size} times); grid {result.info['grid_points']} points, window {result.info['window']:.1f}, "
          f"error estimate {result.info['error_estimate']:.2e}")

    N, seeds, segment = 500, 8, (2.0 if args.quick else 5.0)
    sim_training = training.replace(time=segment, save_at=(segment,))
    sim = finite_size.simulate_boltzmann(model, data, sim_training, dim=N, seeds=seeds, spectrum="none")
    per_step = sim.info["wall_time_s"] / sim.info["steps"]
    steps_needed = horizon / sim.info["step"]
    sem = float(sim.arrays["s_per_seed"][:, 0, -1].std(ddof=1) / np.sqrt(seeds))
    seeds_needed = seeds * max(1.0, (sem / training.rtol) ** 2)
    sim_same_seeds = per_step * steps_needed
    sim_matched = sim_same_seeds * seeds_needed / seeds
    print(f"simulation N = {N}, {seeds} seeds: {per_step * 1e3:.1f} ms per step (dt = {sim.info['step']:g}), "
          f"{sim_same_seeds:.0f} s to t = {horizon:g} (standard error of s_1: {sem:.1e})")
    print(f"accuracy-matched simulation ({seeds_needed:.3g} seeds for a standard error of {training.rtol:g}): "
          f"{sim_matched:.3g} s")
    print(f"ratio simulation / DMFT: {sim_same_seeds / dmft_time:.3g} at the simulation's own accuracy, "
          f"{sim_matched / dmft_time:.3g} accuracy-matched (lower bound)")
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
