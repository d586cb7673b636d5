"""Benchmark of the gradient flow of deep linear networks (issue 11). Prints, measured in this run:

1. for depth 3 (full batch and population), residual depth 8 and infinite depth: the flow time
   reached against wall time (``time = 1e2, 1e3, 1e4`` and, with ``--moonshot``, ``1e5``), grid
   points, peak memory of the process (``ru_maxrss`` of a fresh subprocess per run: nothing else in
   it), the final test loss and, for full batch, its distance to the least-squares limit
   ``sigma^2 alpha / (alpha - 1)``;
2. next to each, the discrete solver for the same physical time at learning rate ``eta = 0.05``:
   measured at feasible step counts (time 10, 20, 40), with the growth exponent of its wall time
   fitted in this run and extrapolated to ``T = time / eta`` steps; its memory from the sizes of its
   packed two-time arrays (``O(T^2)``). Extrapolations are marked as such.

Run: python benchmarks/bench_flow.py [--quick] [--moonshot]
(one BLAS thread per process: OMP_NUM_THREADS=1; wall times depend on the load of the machine)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np

CASES = {
    "depth 3, full batch": "dmft.DeepLinear(depth=3), dmft.GaussianData(alpha=2.0, noise=0.2)",
    "depth 3, population": "dmft.DeepLinear(depth=3), dmft.GaussianData(alpha=None, noise=0.2)",
    "residual depth 8, full batch": "dmft.DeepLinear(depth=8, residual=True), dmft.GaussianData(alpha=2.0, noise=0.2)",
    "infinite depth, full batch": "dmft.DeepLinear(depth=math.inf, residual=True), dmft.GaussianData(alpha=2.0, noise=0.2)",
}

RUN = textwrap.dedent(
    """
    import json, math, resource, time, warnings
    import dmft
    model, data = {case}
    training = {training}
    warm = training.replace(time=0.1) if isinstance(training, dmft.GradientFlow) else training.replace(steps=3, learning_rate=0.05)
    dmft.solve(model, data, warm, **{options})  # load the compiled kernels before timing
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = dmft.solve(model, data, training, **{options})
    wall = time.perf_counter() - started
    print(json.dumps({{"wall": wall, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "points": len(result.test_loss), "grid": result.info.get("grid_points"),
                      "bytes_per_time_squared": {memory_model},
                      "final": float(result.test_loss[-1]), "status": result.status,
                      "warnings": [str(w.message)[:80] for w in caught]}}))
    """
)


def run(case: str, training: str, options: str = "{}", memory_model: str = "None") -> dict:
    """One solve in a fresh interpreter (so that its peak memory is its own)."""
    environment = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    code = RUN.format(case=case, training=training, options=options, memory_model=memory_model)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=False)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_model(name: str) -> str:
    """Bytes per (steps + 1)^2 of the discrete solver's packed two-time arrays (its own estimate)."""
    if "infinite" in name:
        return "__import__('dmft.solvers.infinite_depth').solvers.infinite_depth.InfiniteDepthDMFT.bytes_per_time_squared(16, 1, 'full_batch')"
    if "residual" in name:
        return "__import__('dmft.solvers.residual').solvers.residual.ResidualDMFT.bytes_per_time_squared(model.depth, 1, 'full_batch')"
    return "__import__('dmft.solvers.deep').solvers.deep.DeepLinearDMFT.bytes_per_time_squared(model.depth, 1, 'full_batch')"


def discrete_options(name: str) -> str:
    if "infinite" in name:
        return "{'cross_layer_steps': [], 'layer_error_estimate': False}"
    return "{'cross_layer_steps': []}" if "residual" in name else "{'self_consistency': False}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="times 1e2 and 1e3 only, two cases")
    parser.add_argument("--moonshot", action="store_true", help="also time 1e5")
    args = parser.parse_args()
    horizons = [1e2, 1e3] if args.quick else [1e2, 1e3, 1e4] + ([1e5] if args.moonshot else [])
    names = list(CASES)[:2] if args.quick else list(CASES)
    eta = 0.05
    run("dmft.DeepLinear(depth=2), dmft.GaussianData(alpha=2.0)", "dmft.GradientFlow(time=1.0)")  # compile
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    for name in names:
        case = CASES[name]
        print(f"{name}")
        print("   | flow time | wall s | grid points | peak MB | final test loss | vs least squares |")
        print("   |---|---|---|---|---|---|")
        for horizon in horizons:
            out = run(case, f"dmft.GradientFlow(time={horizon})")
            exact = 0.04 * 2.0 / (2.0 - 1.0) if "full batch" in name else math.nan
            gap = f"{abs(out['final'] / exact - 1):.1e}" if math.isfinite(exact) else "-"
            flag = "" if out["status"] == 0 else f" (status 1: {out['warnings']})"
            print(f"   | {horizon:.0e} | {out['wall']:.2f} | {out['grid']} | {out['peak_mb']:.0f} | {out['final']:.6f} | {gap} |{flag}")
        # the discrete solver at eta = 0.05 for the same time: measured, then extrapolated
        steps_list = [200, 400, 800]
        training = "dmft.GradientDescent({eta}, {steps})" if "full batch" in name else "dmft.OnlineSGD({eta}, {steps}, batch_ratio=1.0)"
        walls = []
        for steps in steps_list:
            out = run(case, training.format(eta=eta, steps=steps), discrete_options(name), memory_model(name))
            walls.append(out["wall"])
        exponent = np.polyfit(np.log(steps_list), np.log(walls), 1)[0]
        measured = ", ".join(f"T = {s} (time {s * eta:g}): {w:.2f} s" for s, w in zip(steps_list, walls))
        print(f"   discrete (eta = {eta}): {measured}; fitted wall ~ T^{exponent:.2f}")
        for horizon in horizons:
            steps = horizon / eta
            wall = walls[-1] * (steps / steps_list[-1]) ** exponent
            memory = out["bytes_per_time_squared"] * (steps + 1) ** 2
            print(f"     time {horizon:.0e} = {steps:.0f} steps: extrapolated {wall:.3g} s "
                  f"({wall / 3600:.3g} h), two-time arrays {memory / 1e9:.3g} GB (array sizes)")
        print()


if __name__ == "__main__":
    main()
