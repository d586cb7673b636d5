"""Benchmark of the residual-network DMFT and its infinite-depth limit (issue 6). Prints, measured in
this run:

1. solve time at T = 200 for depth 8, 16, 32, 64 (compiled kernels; the loss curves only, then with the
   default equal-time cross-layer correlations) and the fitted growth exponent in depth (the layer
   recursion is O(L T^3): exponent ~1; THEORY.md's reference was O(L^2 T^3));
2. the infinite-depth solve at T = 200 (layer_steps = 16, error ~1e-6) and its distance to depth 64;
3. the NumPy reference against the compiled kernels on the same problem (same numbers, time ratio);
4. DMFT against finite_size.simulate of the same curve (depth 8, T = 200): time and largest gap in
   standard errors.

Wall times depend on what else runs on the machine: the CPU time of this process is printed too
(the row kernels are single-threaded, so for them CPU time = work).

Run: python benchmarks/bench_residual.py [--steps 200] [--dim 400] [--seeds 8]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import dmft
import finite_size


def timed(function, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--dim", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    data = dmft.GaussianData(alpha=2.0, noise=0.0)
    training = dmft.GradientDescent(learning_rate=0.03, steps=args.steps)
    model = lambda depth: dmft.DeepLinear(depth=depth, residual=True, branch_scale=1.0)  # noqa: E731

    dmft.solve(model(2), data, dmft.GradientDescent(0.03, steps=3))  # compile / load the kernels
    dmft.solve(model(math.inf), data, dmft.GradientDescent(0.03, steps=3), layer_steps=2)

    print(f"1. residual DMFT, T = {args.steps}, alpha = 2, beta0 = 1 (wall s / CPU s)")
    depths, walls, cpus, results = (8, 16, 32, 64), [], [], {}
    for depth in depths:
        result, wall, cpu = timed(dmft.solve, model(depth), data, training, cross_layer_steps=[])
        _, wall_cross, cpu_cross = timed(dmft.solve, model(depth), data, training)
        results[depth] = result
        walls.append(wall)
        cpus.append(cpu)
        print(f"   depth {depth:3d}: losses only {wall:6.2f} / {cpu:6.2f}   with cross-layer "
              f"{wall_cross:6.2f} / {cpu_cross:6.2f}   final test loss {result.test_loss[-1]:.6f}")  # fmt: skip
    exponent = np.polyfit(np.log(depths), np.log(cpus), 1)[0]
    print(f"   fitted growth (CPU time ~ depth^p): p = {exponent:.2f}   (goal: depth 64 under 10 s)")

    limit, wall, cpu = timed(dmft.solve, model(math.inf), data, training, cross_layer_steps=[])
    gap = np.max(np.abs(results[64].test_loss - limit.test_loss))
    print(f"2. infinite depth (layer_steps = 16): {wall:.2f} s wall / {cpu:.2f} s CPU (goal: under 5 s); "
          f"max |L_64 - L_inf| = {gap:.4f} (O(1/depth))")  # fmt: skip

    small = dmft.GradientDescent(learning_rate=0.03, steps=60)
    fast, wall_fast, cpu_fast = timed(dmft.solve, model(8), data, small, cross_layer_steps=[], backend="numba")
    reference, wall_ref, cpu_ref = timed(dmft.solve, model(8), data, small, cross_layer_steps=[], backend="numpy")
    difference = np.max(np.abs(fast.test_loss - reference.test_loss))
    print(f"3. depth 8, T = 60: NumPy reference {wall_ref:.2f} s, compiled {wall_fast:.2f} s "
          f"(x{wall_ref / wall_fast:.1f}); largest difference {difference:.1e}")

    simulation, wall_sim, cpu_sim = timed(
        finite_size.simulate, model(8), data, training, dim=args.dim, seeds=args.seeds, seed=0
    )
    z = np.abs(simulation.test_loss - results[8].test_loss) / simulation.test_loss_sem
    zt = np.abs(simulation.train_loss - results[8].train_loss) / simulation.train_loss_sem
    print(f"4. depth 8, T = {args.steps}: simulate(D = {args.dim}, {args.seeds} seeds) {wall_sim:.1f} s wall "
          f"vs DMFT {walls[0]:.2f} s; largest gap {max(z.max(), zt.max()):.1f} SE "
          f"(test {z.max():.1f}, train {zt.max():.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
