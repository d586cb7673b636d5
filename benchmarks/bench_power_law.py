"""Benchmark of power-law data with many modes (docs/power_law.md). Prints, measured in this run:

1. depth 0, the population flow (dmft.Linear, GradientFlow, alpha=None) of PowerLaw(a, b, M) to time
   1e6 (default report grid) on the quadrature shares of ``PowerLaw.resolve()`` against the baseline,
   the same flow on all M equal shares (``resolve(exact=True)``): times, ratio, largest relative
   difference of the curves; M = 1e5 and 1e6 (the baseline), and 1e9, 1e12 (quadrature only);
2. depth 0, online SGD (batch 100 D, rate 0.5, T = 1e4 steps) on the same two representations of
   M = 1e5 modes: times and ratio (the recursion costs O(T x shares));
3. the deep flow (depth 1, muP, infinite width, gamma0 = 1, time 1e4) on the quadrature shares of
   M = 1e5 modes, where that solver exists (issue 11; ``dmft.solve(DeepLinear, ..., GradientFlow)``).

Run: python benchmarks/bench_power_law.py [--a 3] [--b 0.5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import dmft
from bench_linear import best_time  # benchmarks/ is on sys.path when run as a script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=float, default=3.0)
    parser.add_argument("--b", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    model = dmft.Linear()
    flow = dmft.GradientFlow(time=1e6)
    print(f"1. depth 0, population flow to t = 1e6, PowerLaw(a = {args.a:g}, b = {args.b:g}, M)")
    print(f"{'M':>8} {'shares':>7} {'quadrature (s)':>15} {'all modes (s)':>14} {'ratio':>7} {'max rel. diff.':>15}")
    for modes in (10**5, 10**6, 10**9, 10**12):
        power_law = dmft.PowerLaw(a=args.a, b=args.b, modes=modes)
        data = dmft.GaussianData(alpha=None, spectrum=power_law)
        quadrature = dmft.solve(model, data, flow)
        fast = best_time(lambda: dmft.solve(model, data, flow), args.repeat)
        cells = [f"{modes:>8.0e}", f"{quadrature.info['shares']:>7}", f"{fast:>15.4g}"]
        if modes <= 10**6:
            exact_data = data.replace(spectrum=power_law.resolve(exact=True))
            exact = dmft.solve(model, exact_data, flow)
            slow = best_time(lambda: dmft.solve(model, exact_data, flow), 1)
            difference = np.max(np.abs(quadrature.test_loss / exact.test_loss - 1))
            cells += [f"{slow:>14.4g}", f"{slow / fast:>7.3g}", f"{difference:>15.2g}"]
        print(" ".join(cells))

    print("\n2. depth 0, online SGD, batch 100 D, rate 0.5, T = 1e4, M = 1e5")
    power_law = dmft.PowerLaw(a=args.a, b=args.b, modes=10**5)
    training = dmft.OnlineSGD(learning_rate=0.5, steps=10_000, batch_ratio=100.0)
    timings = {}
    for name, spectrum in (("quadrature", power_law), ("all modes", power_law.resolve(exact=True))):
        data = dmft.GaussianData(alpha=None, spectrum=spectrum)
        timings[name] = best_time(lambda: dmft.solve(model, data, training), 1)
        print(f"{name:>12}: {timings[name]:.4g} s ({dmft.solve(model, data, training).info['shares']} shares)")
    print(f"ratio all modes / quadrature: {timings['all modes'] / timings['quadrature']:.3g}")

    print("\n3. depth 1, muP, infinite width, gamma0 = 1, population flow to t = 1e4, M = 1e5 (quadrature)")
    data = dmft.GaussianData(alpha=None, spectrum=power_law)
    deep = dmft.DeepLinear(depth=1, width_ratio=1e10, gamma0=1.0)
    try:
        started = time.perf_counter()
        result = dmft.solve(deep, data, dmft.GradientFlow(time=1e4))
    except dmft.UnsupportedError as error:
        print(f"not available here: {error}")
        return
    print(f"{time.perf_counter() - started:.3g} s; info: { {k: v for k, v in result.info.items() if np.isscalar(v)} }")


if __name__ == "__main__":
    main()
