"""Benchmark of the deep-linear DMFT solver (issue 4). Prints, measured in this run:

1. solve time of a depth-3 network at T = 200, 400, 800 (Numba kernels; the self-consistency
   re-evaluation timed separately) with the fitted growth exponent, and the NumPy reference
   kernels at small T for the ratio;
2. the cost of the mode axis (power-law spectrum with 16 and 64 modes);
3. DMFT vs ``finite_size.simulate`` at dim = 1000 with 8 seeds for the same curve: wall times, their
   ratio, and each one's distance to the D -> infinity answer (the DMFT is that answer up to its
   self-consistency residual; the simulation is off by its standard error plus an O(1/D) bias);
4. the learning-rate transfer table (muP vs NTK, widths nu = 0.5 ... 16) of the README.

Run: python benchmarks/bench_deep.py [--quick] [--skip-simulation]
(single-threaded BLAS recommended on a shared machine: OMP_NUM_THREADS=1)
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import dmft
import finite_size

DEPTH3 = dmft.DeepLinear(depth=3, width_ratio=1.0, gamma0=1.0)
DATA = dmft.GaussianData(alpha=2.0, noise=0.2)


def timed_solve(model, data, training, **options):
    started = time.perf_counter()
    result = dmft.solve(model, data, training, **options)
    return result, time.perf_counter() - started


def solve_scaling(steps_list, learning_rate=0.05):
    print("1. depth-3 solve (alpha = 2, sigma = 0.2, eta = 0.05), Numba kernels; wall and CPU seconds")
    dmft.solve(DEPTH3, DATA, dmft.GradientDescent(learning_rate, 5))  # load the compiled kernels
    cpu_times = []
    for steps in steps_list:
        training = dmft.GradientDescent(learning_rate, steps)
        started = time.process_time()
        result = dmft.solve(DEPTH3, DATA, training, self_consistency=False)
        cpu = time.process_time() - started
        cpu_times.append(cpu)
        checked = dmft.solve(DEPTH3, DATA, training)
        check_wall = checked.info["residual_time_s"]
        print(
            f"   T = {steps:4d}: solve {result.info['solve_time_s']:6.2f} s wall, {cpu:6.2f} s CPU; "
            f"self-consistency check {check_wall:5.2f} s wall, residual "
            f"{checked.info['self_consistency_residual']:.1e} (relative {checked.info['self_consistency_relative']:.1e})"
        )
    slope = np.polyfit(np.log(steps_list), np.log(cpu_times), 1)[0]
    last = np.log(cpu_times[-1] / cpu_times[-2]) / np.log(steps_list[-1] / steps_list[-2])
    print(f"   fitted growth exponent of the solve CPU time: T^{slope:.2f} (last doubling: T^{last:.2f})")
    for steps in (50, 100):
        reference = timed_solve(DEPTH3, DATA, dmft.GradientDescent(learning_rate, steps), backend="numpy", self_consistency=False)[0]
        fast = timed_solve(DEPTH3, DATA, dmft.GradientDescent(learning_rate, steps), self_consistency=False)[0]
        print(
            f"   T = {steps:4d}: NumPy reference kernels {reference.info['solve_time_s']:6.2f} s vs Numba "
            f"{fast.info['solve_time_s']:6.3f} s (x{reference.info['solve_time_s'] / fast.info['solve_time_s']:.0f}); "
            f"max |difference| of the losses {np.max(np.abs(reference.test_loss - fast.test_loss)):.1e}"
        )


def mode_cost(steps=200):
    print(f"2. mode axis (power-law spectrum a = 1.5, b = 0.5), depth 3, T = {steps}")
    for modes in (1, 16, 64):
        spectrum = None if modes == 1 else dmft.PowerLaw(a=1.5, b=0.5, modes=modes)
        data = dmft.GaussianData(alpha=2.0, noise=0.2, spectrum=spectrum)
        result, _ = timed_solve(DEPTH3, data, dmft.GradientDescent(0.02, steps))
        print(
            f"   modes = {modes:3d}: solve {result.info['solve_time_s']:6.2f} s, "
            f"self-consistency check {result.info['residual_time_s']:6.2f} s"
        )


def versus_simulation(dim=1000, seeds=8, steps=200, learning_rate=0.05):
    print(f"3. DMFT vs finite_size.simulate, depth 3, D = {dim}, {seeds} seeds, T = {steps}")
    training = dmft.GradientDescent(learning_rate, steps)
    theory, theory_wall = timed_solve(DEPTH3, DATA, training)
    started = time.perf_counter()
    sim = finite_size.simulate(DEPTH3, DATA, training, dim=dim, seeds=seeds, seed=1)
    sim_wall = time.perf_counter() - started
    relative_gap = np.abs(sim.test_loss - theory.test_loss) / theory.test_loss
    relative_sem = sim.test_loss_sem / theory.test_loss
    print(f"   DMFT       : {theory_wall:7.2f} s (solve {theory.info['solve_time_s']:.2f} s + check); "
          f"distance to D = inf: self-consistency residual {theory.info['self_consistency_relative']:.0e} (relative)")
    print(f"   simulation : {sim_wall:7.2f} s; distance to D = inf (the DMFT): mean |gap| {100 * relative_gap.mean():.2f} %, "
          f"max {100 * relative_gap.max():.2f} %, standard error {100 * relative_sem.mean():.2f} % (mean over steps)")
    print(f"   speed ratio simulation / DMFT: {sim_wall / theory_wall:.0f}")
    for step in (0, steps // 4, steps // 2, steps):
        print(f"     step {step:4d}: DMFT {theory.test_loss[step]:.5f}   simulation {sim.test_loss[step]:.5f} +- {sim.test_loss_sem[step]:.5f}")


def transfer_table(steps=10, rates=None, widths=(0.5, 1.0, 2.0, 4.0, 8.0, 16.0)):
    """Final test loss of depth 3, gamma0 = 2, online SGD (batch ratio 1, noiseless), ``steps`` steps."""
    rates = rates if rates is not None else [0.025 * 2 ** (k / 4) for k in range(17)]
    print(f"4. learning-rate transfer: depth 3, gamma0 = 2, online SGD batch ratio 1, test loss after {steps} steps")
    data = dmft.GaussianData(alpha=None, noise=0.0)
    for parameterization in ("mup", "ntk"):
        grid = np.full((len(rates), len(widths)), np.nan)
        for j, nu in enumerate(widths):
            model = dmft.DeepLinear(depth=3, gamma0=2.0, width_ratio=nu, parameterization=parameterization)
            for i, rate in enumerate(rates):
                try:
                    grid[i, j] = dmft.solve(model, data, dmft.OnlineSGD(rate, steps, batch_ratio=1.0),
                                            self_consistency=False).test_loss[-1]
                except dmft.DivergenceError:
                    pass
        print(f"\n   {parameterization}: rows learning rate, columns nu (--- = diverged)")
        print("   | eta | " + " | ".join(f"nu = {w:g}" for w in widths) + " |")
        print("   |---|" + "---|" * len(widths))
        for i, rate in enumerate(rates):
            cells = ["---" if not math.isfinite(x) else f"{x:.4f}" for x in grid[i]]
            print(f"   | {rate:.4f} | " + " | ".join(cells) + " |")
        best = [rates[int(np.nanargmin(grid[:, j]))] for j in range(len(widths))]
        print("   | optimal eta | " + " | ".join(f"{b:.4f}" for b in best) + " |")
        print(f"   spread of the optimal eta across widths: x{max(best) / min(best):.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (T up to 400, D = 400)")
    parser.add_argument("--skip-simulation", action="store_true")
    args = parser.parse_args()
    solve_scaling([100, 200, 400] if args.quick else [200, 400, 800])
    mode_cost(100 if args.quick else 200)
    if not args.skip_simulation:
        versus_simulation(dim=400 if args.quick else 1000)
    transfer_table()


if __name__ == "__main__":
    main()
