"""Benchmark of the exact depth-0 curves (dmft.Linear, THEORY.md section 3). Prints, measured in this run:

1. the time of ``dmft.solve(dmft.Linear(), data, GradientDescent(steps=T))`` for T = 100, 1000, 10000
   with the default quadrature order, and with the order T + 1 at which the rule is exact
   (each cold: the Gauss-rule cache is cleared first; best of ``--repeat``);
2. the time of the exact online-SGD curve for the same T;
3. the same gradient descent with a schedule (warm-up then cosine, running products instead of the
   table of powers), and its ratio to the constant rate;
4. ``dmft.GradientFlow`` to time 1e2 ... 1e6 (default report grid, 20 points per decade) at
   alpha = 0.5, 1 (the hardest: the MP edge touches 0) and 2, with the quadrature order and its
   error estimate; and, as the baseline, gradient descent at eta = 0.2 to the same time 1e4
   (T = 5e4 steps): the ratio discrete / flow;
5. the time of ``finite_size.simulate`` of the same problem at D = 1000, 8 seeds, T = 100, and the
   ratio simulation / exact curve at T = 100.

Run: python benchmarks/bench_linear.py [--alpha 2] [--dim 1000] [--seeds 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import dmft
import finite_size
from dmft.solvers import linear


def best_time(function, repeat: int) -> float:
    """Best wall time of ``repeat`` cold calls (the Gauss-rule cache cleared before each)."""
    best = float("inf")
    for _ in range(repeat):
        linear._unit_mean_rule.cache_clear()
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, default=2.0)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--learning-rate", type=float, default=0.2)
    parser.add_argument("--dim", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    model = dmft.Linear()
    data = dmft.GaussianData(alpha=args.alpha, noise=args.noise)
    online = dmft.GaussianData(alpha=None, noise=args.noise)
    eta = args.learning_rate
    print(f"alpha = {args.alpha}, noise = {args.noise}, learning_rate = {eta}")
    print(f"{'T':>6} {'order':>6} {'exact GD (s)':>13} {'order T+1 (s)':>14} {'online SGD (s)':>15}")
    exact_times = {}
    for steps in (100, 1000, 10000):
        training = dmft.GradientDescent(learning_rate=eta, steps=steps)
        order = dmft.solve(model, data, training).info["quadrature_order"]
        exact_times[steps] = best_time(lambda: dmft.solve(model, data, training), args.repeat)
        full = best_time(lambda: dmft.solve(model, data, training, quadrature_order=steps + 1), args.repeat)
        sgd = dmft.OnlineSGD(learning_rate=eta, steps=steps, batch_ratio=args.alpha)
        sgd_time = best_time(lambda: dmft.solve(model, online, sgd), args.repeat)
        print(f"{steps:>6} {order:>6} {exact_times[steps]:>13.4g} {full:>14.4g} {sgd_time:>15.4g}")

    print(f"\n{'T':>6} {'schedule (s)':>13} {'ratio to constant':>18}")
    for steps in (100, 1000, 10000):
        rates = dmft.schedules.warmup_cosine(eta, steps=steps, warmup=steps // 10)
        training = dmft.GradientDescent(learning_rate=rates, steps=steps)
        scheduled = best_time(lambda: dmft.solve(model, data, training), args.repeat)
        print(f"{steps:>6} {scheduled:>13.4g} {scheduled / exact_times[steps]:>18.3g}")

    print(f"\n{'alpha':>6} {'time':>8} {'order':>7} {'error est.':>11} {'flow (s)':>9}")
    flow_times = {}
    for alpha in (0.5, 1.0, 2.0):
        flow_data = dmft.GaussianData(alpha=alpha, noise=args.noise)
        for horizon in (1e2, 1e4, 1e6):
            training = dmft.GradientFlow(time=horizon)
            result = dmft.solve(model, flow_data, training)
            flow_times[alpha, horizon] = best_time(lambda: dmft.solve(model, flow_data, training), args.repeat)
            print(f"{alpha:>6g} {horizon:>8.0e} {result.info['quadrature_order']:>7} "
                  f"{result.info['quadrature_error']:>11.2g} {flow_times[alpha, horizon]:>9.4g}")
    discrete = dmft.GradientDescent(learning_rate=0.2, steps=50_000)
    started = time.perf_counter()
    dmft.solve(model, data, discrete)
    discrete_time = time.perf_counter() - started
    print(f"baseline: gradient descent eta = 0.2, T = 5e4 (time 1e4) at alpha = {args.alpha:g}: {discrete_time:.3g} s; "
          f"ratio discrete / flow (time 1e4, alpha = 2): {discrete_time / flow_times[2.0, 1e4]:.3g}")

    training = dmft.GradientDescent(learning_rate=eta, steps=100)
    started = time.perf_counter()
    finite_size.simulate(model, data, training, dim=args.dim, seeds=args.seeds)
    simulation = time.perf_counter() - started
    print(
        f"simulation D = {args.dim}, {args.seeds} seeds, T = 100: {simulation:.3g} s; "
        f"ratio simulation / exact curve (T = 100): {simulation / exact_times[100]:.3g}"
    )


if __name__ == "__main__":
    main()
