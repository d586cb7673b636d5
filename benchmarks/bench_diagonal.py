"""Speed of the diagonal-network DMFT (issues 5, 10, 11): run ``python benchmarks/bench_diagonal.py``.

Prints, in one run (every ratio against a baseline measured in the same run):
1. the goal of issue 10: the label-noise case (``alpha = 0.5``, ``SparseTeacher(0.2)``, ``s = 0.1``,
   ``sigma = 0.1``, ``eta = 0.05``, T = 1000) with a Monte Carlo error below 1 % of the test loss at
   every step, in under 30 s on 2 cores, against the NumPy reference on the same problem;
2. the solve time at T = 250, 500, 1000 and its growth exponent;
3. the DMFT against ``finite_size.simulate`` at dim = 4000 with 8 seeds for the same curve;
4. gradient flow (issue 11): flow time reached against wall time up to time 3000, next to the
   discrete solver (``eta = 0.05``) for the same physical time, and the population flow.

Options: ``--quick`` (smaller sizes, for a smoke test), ``--skip-simulation``, ``--skip-reference``,
``--replicas`` (instead: the replicas study of docs/continuous_time.md, 8 / 16 / 32 replicas at
65536 sites, 6 seeds each: the reliability of the error bars against the moment-matching bias),
``--flow-replicas`` (instead: the long-time check of the flow's default, 8 replicas of 16384 sites:
16-replica flows to the fixed point on 4 seeds, the bias and per-replica spread against
``dmft.implicit_bias``, and ``gap / SE`` of each independent set of 8 replicas; ~2 min CPU a seed).

Threads: Numba's OpenMP layer waits actively at the two barriers of every step; on a machine
shared with other busy processes that costs several-fold (measured 4x on 2 shared cores). Run
with ``OMP_WAIT_POLICY=passive`` (or ``NUMBA_THREADING_LAYER=workqueue``) there.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

import dmft
import dmft.solvers.diagonal
from dmft.solvers.diagonal_flow import FLOW_SITES

MODEL = dmft.DiagonalLinear(depth=2, init_scale=0.1)
DATA = dmft.GaussianData(alpha=0.5, noise=0.1, teacher=dmft.SparseTeacher(density=0.2))


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    cpu = time.process_time()
    out = function(*args, **kwargs)
    return out, time.perf_counter() - started, time.process_time() - cpu


def goal(steps, sites, reference):
    training = dmft.GradientDescent(0.05, steps)
    print(f"\n1. goal: T = {steps}, label noise 0.1, MC error < 1 % of the test loss at every step, "
          f"{sites} sites in {dmft.solvers.diagonal.DEFAULT_REPLICAS} replicas")
    result, wall, cpu = timed(dmft.solve, MODEL, DATA, training, sites=sites)
    error = result.test_loss_sem / result.test_loss
    print(f"   numba: {wall:.2f} s wall ({cpu:.2f} s cpu); largest relative MC error {np.max(error):.2%} "
          f"(at step {int(np.argmax(error))}); final test loss {result.test_loss[-1]:.5f} +- "
          f"{result.test_loss_sem[-1]:.5f} (simulations at D = 4000: about 0.0664); rank {result.info['max_rank']}; "
          f"status {result.status}")
    if reference:
        numpy_result, numpy_wall, _ = timed(dmft.solve, MODEL, DATA, training, sites=sites, backend="numpy")
        gap = np.max(np.abs(numpy_result.test_loss - result.test_loss) / result.test_loss)
        print(f"   numpy reference: {numpy_wall:.2f} s; numba is {numpy_wall / wall:.1f}x faster; largest relative "
              f"difference {gap:.1e}")


def scaling(steps_list, sites):
    print(f"\n2. solve time, depth 2, sites = {sites}, {dmft.solvers.diagonal.DEFAULT_REPLICAS} replicas "
          "(wall s, cpu s, largest rank)")
    times = []
    for steps in steps_list:
        result, wall, cpu = timed(dmft.solve, MODEL, DATA, dmft.GradientDescent(0.05, steps), sites=sites,
                                  target_error=math.inf)
        times.append(wall)
        print(f"   T = {steps:5d}: {wall:7.2f} s wall, {cpu:7.2f} s cpu, rank {result.info['max_rank']}, "
              f"test loss {result.test_loss[-1]:.5f} +- {result.test_loss_sem[-1]:.5f}")
    exponent = np.polyfit(np.log(steps_list), np.log(times), 1)[0]
    print(f"   growth exponent d log(time) / d log(T) = {exponent:.2f} "
          "(O(T r M): 1 with a fixed rank r, 2 when r grows like T)")


def simulation(dim, steps, sites):
    import finite_size

    training = dmft.GradientDescent(0.05, steps)
    print(f"\n3. DMFT against finite_size.simulate at dim = {dim}, 8 seeds, T = {steps}")
    theory, theory_wall, _ = timed(dmft.solve, MODEL, DATA, training, sites=sites, target_error=math.inf)
    simulated, sim_wall, _ = timed(finite_size.simulate, MODEL, DATA, training, dim=dim, seeds=8, seed=1)
    z = (simulated.test_loss - theory.test_loss) / np.hypot(simulated.test_loss_sem, theory.test_loss_sem)
    print(f"   dmft {theory_wall:.2f} s (error {np.max(theory.test_loss_sem / theory.test_loss):.2%}), "
          f"simulation {sim_wall:.2f} s (error {np.max(simulated.test_loss_sem / simulated.test_loss):.2%}): "
          f"ratio {sim_wall / theory_wall:.1f}x")
    print(f"   final test loss: dmft {theory.test_loss[-1]:.5f} +- {theory.test_loss_sem[-1]:.5f}, "
          f"simulation {simulated.test_loss[-1]:.5f} +- {simulated.test_loss_sem[-1]:.5f}; "
          f"largest gap {np.max(np.abs(z)):.2f} combined SE")


def flow(end, sites, discrete_times):
    print(f"\n4. gradient flow to time {end:g} ({sites} sites, rtol 1e-4), against the discrete solver at "
          "eta = 0.05 for the same physical time")
    save = tuple(t for t in (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0) if t < end) + (end,)
    result, wall, cpu = timed(dmft.solve, MODEL, DATA, dmft.GradientFlow(end, save_at=save), sites=sites,
                              target_error=math.inf)
    walls = dict(zip(result.time, result.arrays["wall_time_s"]))
    print(f"   flow: {wall:.2f} s in all ({cpu:.1f} s CPU), {result.info['time_steps']} steps ({result.info['rejected_steps']} rejected), "
          f"{result.info['rhs_evaluations']} evaluations, at most {result.info['largest_stages']} stages, rank "
          f"{result.info['max_rank']}, error bound {result.info['time_error_bound']:.2g}, converged at "
          f"{result.info.get('converged_at')}")
    from dmft._implicit_bias import implicit_bias

    fixed_point = implicit_bias(MODEL, DATA).test_loss
    for t, loss, sem in zip(result.time, result.test_loss, result.test_loss_sem):
        print(f"   time {t:7g}: reached after {walls[t]:7.2f} s, test loss {loss:.5f} +- {sem:.5f}")
    print(f"   long-time limit (implicit-bias fixed point): {fixed_point:.5f}; flow at time {end:g}: "
          f"{(result.test_loss[-1] - fixed_point) / fixed_point:+.2%}")
    for t in discrete_times:
        steps = int(round(t / 0.05))
        discrete, discrete_wall, _ = timed(dmft.solve, MODEL, DATA, dmft.GradientDescent(0.05, steps), sites=sites,
                                           target_error=math.inf)
        flow_wall = walls.get(t, math.nan)
        print(f"   discrete, eta = 0.05, T = {steps} (time {t:g}): {discrete_wall:.2f} s, test loss "
              f"{discrete.test_loss[-1]:.5f} (O(eta) above the flow); the flow reached time {t:g} after "
              f"{flow_wall:.2f} s: {discrete_wall / flow_wall:.1f}x")
    population = dmft.GaussianData(alpha=None, noise=0.1, teacher=dmft.SparseTeacher(density=0.2))
    result, wall, _ = timed(dmft.solve, MODEL, population, dmft.GradientFlow(1e4))
    print(f"   population flow (alpha = None) to time 1e4: {wall:.2f} s, {result.time.size} times, quadrature error "
          f"{result.info['quadrature_error']:.1e}, final test loss {result.test_loss[-1]:.5f}")


def replicas_study(seeds=6, sites=65536, steps=1000):
    """Error-bar reliability and bias against the number of replicas at fixed total sites."""
    training = dmft.GradientDescent(0.05, steps)
    print(f"replicas study: T = {steps}, {sites} sites, {seeds} seeds per choice")
    means = {}
    for replicas in (8, 16, 32):
        curves, sems, walls = [], [], []
        for seed in range(seeds):
            result, wall, _ = timed(dmft.solve, MODEL, DATA, training, sites=sites, replicas=replicas, seed=100 + seed,
                                    target_error=math.inf)
            curves.append(result.test_loss)
            sems.append(result.test_loss_sem)
            walls.append(wall)
        curves, sems = np.array(curves), np.array(sems)
        observed = curves.std(axis=0, ddof=1)
        means[replicas] = (curves.mean(axis=0), observed / math.sqrt(seeds))
        scatter = np.median(sems.std(axis=0, ddof=1)[1:] / sems.mean(axis=0)[1:])
        calibration = np.median(sems.mean(axis=0)[1:] / observed[1:])
        print(f"   {replicas:2d} replicas: {np.mean(walls):.1f} s per solve; relative scatter of the SE {scatter:.2f} "
              f"(1 / sqrt(2 (n - 1)) = {1 / math.sqrt(2 * (replicas - 1)):.2f}); reported SE / observed scatter "
              f"{calibration:.2f}")
    base, base_error = means[8]
    for replicas in (16, 32):
        mean, error = means[replicas]
        print(f"   mean({replicas}) - mean(8) at T = {steps}: {mean[-1] - base[-1]:+.5f} +- "
              f"{math.hypot(error[-1], base_error[-1]):.5f}")


def flow_replicas_study(seeds=(21, 22, 23, 24), noise=0.0, sites_per_replica=16384, replicas=16):
    """Whether the flow's default error bar (8 replicas of 16384) covers its error at the fixed point."""
    from dmft._implicit_bias import implicit_bias

    data = dmft.GaussianData(alpha=0.5, noise=noise, teacher=dmft.SparseTeacher(density=0.2))
    fixed_point = implicit_bias(MODEL, data).test_loss
    print(f"flow replicas study: s = 0.1, noise {noise:g}, time 3000, {replicas} replicas of {sites_per_replica} "
          f"sites, seeds {seeds}; fixed point {fixed_point:.5f}")
    pooled, ratios = [], []
    for seed in seeds:
        result, wall, cpu = timed(dmft.solve, MODEL, data, dmft.GradientFlow(3000.0, save_at=(3000.0,)),
                                  sites=replicas * sites_per_replica, replicas=replicas, seed=seed, target_error=math.inf)
        gaps = result.arrays["test_loss_per_replica"][:, -1] / fixed_point - 1.0
        pooled.extend(gaps)
        sets = [gaps[k : k + 8] for k in range(0, replicas - 7, 8)]
        ratios.extend(g.mean() / (g.std(ddof=1) / math.sqrt(g.size)) for g in sets)
        print(f"   seed {seed}: {wall:.1f} s wall, {cpu:.1f} s CPU, converged at {result.info['converged_at']:.0f}, "
              f"rank {result.info['max_rank']}; gap {gaps.mean():+.2%} +- {gaps.std(ddof=1) / math.sqrt(gaps.size):.2%}; "
              "sets of 8: " + ", ".join(f"{g.mean():+.2%}" for g in sets))
    pooled = np.array(pooled)
    print(f"   pooled {pooled.size} replicas: bias {pooled.mean():+.3%} +- {pooled.std(ddof=1) / math.sqrt(pooled.size):.3%}, "
          f"per-replica spread {pooled.std(ddof=1):.2%} (SE of 8 replicas {pooled.std(ddof=1) / math.sqrt(8):.2%})")
    print("   gap / SE of the sets of 8 (the default's error bar): " + ", ".join(f"{r:+.2f}" for r in ratios))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-simulation", action="store_true")
    parser.add_argument("--skip-reference", action="store_true", help="skip the NumPy reference of the goal run")
    parser.add_argument("--replicas", action="store_true", help="only the replicas study (several minutes)")
    parser.add_argument("--flow-replicas", action="store_true",
                        help="only the long-time check of the flow's error bar (~10 min CPU)")
    args = parser.parse_args(argv)
    if args.replicas:
        replicas_study()
        return 0
    if args.flow_replicas:
        flow_replicas_study()
        return 0
    import numba

    print(f"cores: {os.cpu_count()}, numba threads: {numba.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, load {os.getloadavg()[0]:.1f}")
    # warm the Numba cache (compilation is paid once, cached on disk)
    dmft.solve(MODEL, DATA, dmft.GradientDescent(0.05, 5), sites=1024, replicas=2, target_error=math.inf)
    dmft.solve(MODEL, DATA, dmft.GradientFlow(0.1), sites=1024, replicas=2, target_error=math.inf)

    quick = args.quick
    goal(240 if quick else 1000, 8192 if quick else 65536, not args.skip_reference)
    scaling((60, 120, 240) if quick else (250, 500, 1000), 8192 if quick else 32768)
    if not args.skip_simulation:
        simulation(1000 if quick else 4000, 60 if quick else 200, 8192 if quick else 65536)
    flow(30.0 if quick else 3000.0, 8192 if quick else FLOW_SITES, (3.0, 10.0) if quick else (10.0, 30.0, 100.0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
