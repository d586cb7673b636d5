"""Speed of the diagonal-network DMFT (issue 5): run ``python benchmarks/bench_diagonal.py``.

Prints, in one run,
1. the solve time for depth 2 at T = 250, 500, 1000 and its growth exponent;
2. the Numba kernel against the NumPy reference on the same problem (the ratio);
3. the DMFT against ``finite_size.simulate`` at dim = 4000 with 8 seeds for the same curve;
4. the goal: T = 1000, depth 2, Monte Carlo error below 1% of the test loss (time on this
   machine's cores; on a GPU also the CuPy time).

The configuration is the sparse-recovery problem of THEORY.md section 4 (``alpha = 0.5``,
``rho = 0.2``, ``s = 0.1``, noiseless, ``eta = 0.05``): small initialisation is where the
Gaussian field is most nearly singular and the Monte Carlo error largest.

Options: ``--quick`` (smaller sizes, for a smoke test), ``--skip-simulation``, ``--sites``.

Threads: Numba's OpenMP layer waits actively at the two barriers of every step; on a machine
shared with other busy processes that costs several-fold (measured 4x on 2 shared cores). Run
with ``OMP_WAIT_POLICY=passive`` (or ``NUMBA_THREADING_LAYER=workqueue``) there.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import dmft

MODEL = dmft.DiagonalLinear(depth=2, init_scale=0.1)
DATA = dmft.GaussianData(alpha=0.5, noise=0.0, teacher=dmft.SparseTeacher(density=0.2))


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    cpu = time.process_time()
    out = function(*args, **kwargs)
    return out, time.perf_counter() - started, time.process_time() - cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-simulation", action="store_true")
    parser.add_argument("--sites", type=int, default=65536, help="sites of the T = 1000 goal run")
    args = parser.parse_args(argv)
    import numba

    print(f"cores: {os.cpu_count()}, numba threads: {numba.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    # On a shared (oversubscribed) machine, OpenMP's default active waiting at the two barriers of
    # every step can slow the kernel several-fold: run with OMP_WAIT_POLICY=passive there.
    sites = 8192 if args.quick else 32768
    steps_list = (60, 120, 240) if args.quick else (250, 500, 1000)

    # warm the Numba cache (compilation is paid once, cached on disk)
    dmft.solve(MODEL, DATA, dmft.GradientDescent(0.05, 5), sites=1024, replicas=2)

    print(f"\n1. solve time, depth 2, sites = {sites}, 8 replicas (wall s, cpu s, largest rank)")
    times = []
    for steps in steps_list:
        result, wall, cpu = timed(dmft.solve, MODEL, DATA, dmft.GradientDescent(0.05, steps), sites=sites)
        times.append(wall)
        print(f"   T = {steps:5d}: {wall:7.2f} s wall, {cpu:7.2f} s cpu, rank {result.info['max_rank']}, "
              f"test loss {result.test_loss[-1]:.5f} +- {result.test_loss_sem[-1]:.5f}")
    exponent = np.polyfit(np.log(steps_list), np.log(times), 1)[0]
    print(f"   growth exponent d log(time) / d log(T) = {exponent:.2f} "
          "(O(T r M): 1 with a fixed rank r, 2 when r grows like T)")

    steps = steps_list[0]
    print(f"\n2. Numba kernel against the NumPy reference (T = {steps}, sites = {sites})")
    reference, ref_wall, _ = timed(dmft.solve, MODEL, DATA, dmft.GradientDescent(0.05, steps), sites=sites,
                                   backend="numpy")
    compiled, numba_wall, _ = timed(dmft.solve, MODEL, DATA, dmft.GradientDescent(0.05, steps), sites=sites)
    gap = np.max(np.abs(reference.test_loss - compiled.test_loss) / reference.test_loss)
    print(f"   numpy {ref_wall:.2f} s, numba {numba_wall:.2f} s: ratio {ref_wall / numba_wall:.2f}x, "
          f"largest relative difference {gap:.1e}")

    if not args.skip_simulation:
        import finite_size

        dim, steps = (1000, 60) if args.quick else (4000, 200)
        training = dmft.GradientDescent(0.05, steps)
        print(f"\n3. DMFT against finite_size.simulate at dim = {dim}, 8 seeds, T = {steps}")
        theory, theory_wall, _ = timed(dmft.solve, MODEL, DATA, training, sites=sites)
        simulated, sim_wall, _ = timed(finite_size.simulate, MODEL, DATA, training, dim=dim, seeds=8, seed=1)
        z = (simulated.test_loss - theory.test_loss) / np.hypot(simulated.test_loss_sem, theory.test_loss_sem)
        print(f"   dmft {theory_wall:.2f} s (error {np.max(theory.test_loss_sem / theory.test_loss):.2%}), "
              f"simulation {sim_wall:.2f} s (error {np.max(simulated.test_loss_sem / simulated.test_loss):.2%})")
        print(f"   final test loss: dmft {theory.test_loss[-1]:.5f} +- {theory.test_loss_sem[-1]:.5f}, "
              f"simulation {simulated.test_loss[-1]:.5f} +- {simulated.test_loss_sem[-1]:.5f}; "
              f"largest gap {np.max(np.abs(z)):.2f} combined SE")

    steps = 240 if args.quick else 1000
    goal_sites = 8192 if args.quick else args.sites
    print(f"\n4. goal: T = {steps}, depth 2, Monte Carlo error < 1% of the test loss, sites = {goal_sites}")
    result, wall, cpu = timed(dmft.solve, MODEL, DATA, dmft.GradientDescent(0.05, steps), sites=goal_sites)
    error = result.test_loss_sem / result.test_loss
    print(f"   {wall:.2f} s wall ({cpu:.2f} s cpu) on {numba.get_num_threads()} threads; largest relative "
          f"error {np.max(error):.2%} (final {error[-1]:.2%}); rank {result.info['max_rank']}; "
          f"final test loss {result.test_loss[-1]:.5f}")
    import importlib.util

    if importlib.util.find_spec("cupy") is None:
        print("   CuPy: not installed here (no GPU)")
    else:  # pragma: no cover - GPU machines
        result, wall, _ = timed(dmft.solve, MODEL, DATA, dmft.GradientDescent(0.05, steps), sites=goal_sites,
                                backend="cupy")
        print(f"   CuPy: {wall:.2f} s, largest relative error {np.max(result.test_loss_sem / result.test_loss):.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
