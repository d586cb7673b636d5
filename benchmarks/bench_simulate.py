"""Benchmark of finite_size.simulate (issue: foundation). Prints, measured in this run:

1. time per full-batch step at D = N = 1000, depth 3, for alpha = 1 and alpha = 16 (sufficient
   statistics: the ratio should be near 1);
2. an ensemble of 32 seeds advanced as one batched computation vs 32 separate runs (D = 256);
3. our step vs a plain data-space training step (forward and backward over all P examples; PyTorch
   when installed, else NumPy) at alpha = 4, D = N = 1000;
4. BLAS threads: the README tour's 20-step simulation (depth 3, D = N = 800, 8 seeds, alpha = 2)
   with 1, 2 and all cores' BLAS threads (``simulate(threads=...)``), with the load average;
5. gradient flow: wall time, steps and network evaluations of ``GradientFlow`` at depth 0 and
   depth 3, next to gradient descent covering the same flow time at eta = 0.1.

Run: python benchmarks/bench_simulate.py [--dim 1000] [--only 4 5]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

import dmft
import finite_size
from finite_size._backend import blas_threads
from finite_size.networks import apply_update, build_network
from finite_size.problem import direction_spectrum, sample_full_batch, sample_teacher


def per_step_seconds(model, data, dim, seeds, steps=5, blocks=5):
    """Wall time of one full-batch step (drive from the sufficient statistics + parameter update),
    setup excluded: the same loop body as ``finite_size.simulate``. The best of ``blocks`` timed
    blocks of ``steps`` steps (other processes only ever add time)."""
    rng = np.random.default_rng(0)
    eigenvalues, _ = direction_spectrum(data, dim)
    teacher = sample_teacher(data, dim, seeds, rng)
    full_batch = sample_full_batch(teacher, eigenvalues, data.alpha, data.noise, rng)
    network = build_network(model, dim, seeds, rng, np)
    def step():
        beta, cache = network.evaluate()
        u, _ = full_batch.residual_drive(beta, np)
        apply_update(network.parameters(), network.direction(u, cache), 1e-3)
    step()
    best = math.inf
    for _ in range(blocks):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - started) / steps)
    return best


def data_space_step_seconds(dim, alpha, depth, repeats=3):
    """One gradient step of the same network computed over all P examples (forward and backward)."""
    rng = np.random.default_rng(0)
    count = int(alpha * dim)
    width = dim
    inputs = rng.standard_normal((count, dim))
    labels = inputs @ rng.standard_normal(dim) / math.sqrt(dim)
    try:
        import torch

        to = lambda a: torch.from_numpy(a)  # noqa: E731
        inputs_t, labels_t = to(inputs), to(labels)
        weights = [to(rng.standard_normal((width, dim))).requires_grad_()]
        weights += [to(rng.standard_normal((width, width))).requires_grad_() for _ in range(depth - 1)]
        readout = to(rng.standard_normal(width)).requires_grad_()

        def step():
            hidden = inputs_t @ weights[0].T / math.sqrt(dim)
            for w in weights[1:]:
                hidden = hidden @ w.T / math.sqrt(width)
            outputs = math.sqrt(dim) / width * hidden @ readout
            loss = 0.5 * ((outputs - labels_t) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                for w in [*weights, readout]:
                    w -= 1e-3 * width * w.grad
                    w.grad = None

        engine = "PyTorch"
    except ImportError:
        weights = [rng.standard_normal((width, dim))] + [rng.standard_normal((width, width)) for _ in range(depth - 1)]
        readout = rng.standard_normal(width)

        def step():
            fields = [inputs @ weights[0].T / math.sqrt(dim)]
            for w in weights[1:]:
                fields.append(fields[-1] @ w.T / math.sqrt(width))
            outputs = math.sqrt(dim) / width * fields[-1] @ readout
            error = (outputs - labels) / count
            grad_readout = math.sqrt(dim) / width * fields[-1].T @ error
            back = math.sqrt(dim) / width * np.outer(error, readout)  # d loss / d h_L, (P, N)
            for index in range(len(weights) - 1, 0, -1):
                grad = back.T @ fields[index - 1] / math.sqrt(width)
                back = back @ weights[index] / math.sqrt(width)
                weights[index] -= 1e-3 * width * grad
            weights[0] -= 1e-3 * width * (back.T @ inputs / math.sqrt(dim))
            readout[:] -= 1e-3 * width * grad_readout

        engine = "NumPy"
    step()
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats, engine


def bench_threads(dim=800, steps=20, seeds=8):
    """Item 4: the same run under 1, 2 and all cores' BLAS threads (best of two each)."""
    model, data = dmft.DeepLinear(depth=3), dmft.GaussianData(alpha=2.0, noise=0.1)
    training = dmft.GradientDescent(0.05, steps)
    cores = os.cpu_count() or 1
    print(f"\n4. BLAS threads: depth 3, D = N = {dim}, {seeds} seeds, {steps} steps, alpha = 2 "
          f"({cores} cores, load average {os.getloadavg()[0]:.1f} at start)")
    timings = {}
    for threads in sorted({1, 2, cores}):
        best = math.inf
        for _ in range(2):
            started = time.perf_counter()
            finite_size.simulate(model, data, training, dim=dim, seeds=seeds, threads=threads)
            best = min(best, time.perf_counter() - started)
        timings[threads] = best
        print(f"   threads = {threads:>2}: {best:6.2f} s  ({best / timings[1]:.2f}x the one-thread time)")
    print(f"   load average at end: {os.getloadavg()[0]:.1f}; default: threads=1 "
          "(finite_size._backend.DEFAULT_THREADS)")


def bench_flow(dim=400, seeds=4):
    """Item 5: gradient flow against gradient descent over the same flow time."""
    print(f"\n5. gradient flow (Bogacki-Shampine 3(2)), D = {dim}, {seeds} seeds, alpha = 2, noise 0.1")
    print("   | model | flow time | rtol | wall (s) | accepted / rejected steps | evaluations | GD eta=0.1, same time (s) |")
    print("   |---|---:|---:|---:|---:|---:|---:|")
    data = dmft.GaussianData(alpha=2.0, noise=0.1)
    for model, horizon in ((dmft.Linear(), 1000.0), (dmft.DeepLinear(depth=3), 100.0)):
        for rtol in (1e-4, 1e-6):
            started = time.perf_counter()
            flow = finite_size.simulate(model, data, dmft.GradientFlow(horizon, save_at=(horizon,), rtol=rtol), dim=dim, seeds=seeds)
            wall = time.perf_counter() - started
            info = flow.info
            steps = int(round(horizon / 0.1))
            started = time.perf_counter()
            finite_size.simulate(model, data, dmft.GradientDescent(0.1, steps), dim=dim, seeds=seeds)
            discrete = time.perf_counter() - started
            name = "Linear" if isinstance(model, dmft.Linear) else "DeepLinear(depth=3)"
            print(f"   | {name} | {horizon:g} | {rtol:g} | {wall:.2f} | {info['accepted_steps']} / "
                  f"{info['rejected_steps']} | {info['network_evaluations']} | {discrete:.2f} ({steps} steps) |")
    print("   late-time steps are bounded by stability, h <~ 2.5 / lambda_max of the Hessian "
          "(lambda_max = (1 + alpha^-1/2)^2 = 2.9 at depth 0): ~ time * 2.9 / 2.5 steps")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=1000)
    parser.add_argument("--only", type=int, nargs="*", default=[1, 2, 3, 4, 5], help="items to run")
    args = parser.parse_args()
    dim, depth = args.dim, 3
    model = dmft.DeepLinear(depth=depth)
    started_all = time.perf_counter()

    # items 1-3 time the loop body under the simulator's default BLAS threads (one; item 4)
    limit = blas_threads(None)
    limit.__enter__()
    if 1 in args.only:
        print(f"1. full-batch step, D = N = {dim}, depth {depth}, one seed")
        alpha_times = {}
        for alpha in (1.0, 16.0):
            alpha_times[alpha] = per_step_seconds(model, dmft.GaussianData(alpha=alpha), dim, seeds=1)
            print(f"   alpha = {alpha:>4}: {1e3 * alpha_times[alpha]:8.2f} ms / step")
        print(f"   ratio alpha=16 / alpha=1: {alpha_times[16.0] / alpha_times[1.0]:.2f} (sufficient statistics: ~1)")

    if 2 in args.only:
        small = 256
        print(f"\n2. ensemble of 32 seeds, D = N = {small}, depth {depth}, alpha = 2")
        data = dmft.GaussianData(alpha=2.0)
        training = dmft.GradientDescent(1e-3, 40)
        started = time.perf_counter()
        finite_size.simulate(model, data, training, dim=small, seeds=32)
        batched = time.perf_counter() - started
        started = time.perf_counter()
        for seed in range(32):
            finite_size.simulate(model, data, training, dim=small, seeds=1, seed=seed)
        separate = time.perf_counter() - started
        print(f"   batched: {batched:.2f} s, 32 separate runs: {separate:.2f} s, speed-up {separate / batched:.2f}x")

    if 3 in args.only:
        print(f"\n3. our step vs a data-space step, D = N = {dim}, depth {depth}, alpha = 4")
        ours = per_step_seconds(model, dmft.GaussianData(alpha=4.0), dim, seeds=1)
        plain, engine = data_space_step_seconds(dim, 4.0, depth)
        print(f"   ours: {1e3 * ours:.2f} ms, data space ({engine}): {1e3 * plain:.2f} ms, "
              f"speed-up {plain / ours:.1f}x (goal >= 20x)")

    limit.__exit__(None, None, None)
    if 4 in args.only:
        bench_threads()
    if 5 in args.only:
        bench_flow()
    print(f"\ntotal: {time.perf_counter() - started_all:.1f} s")


if __name__ == "__main__":
    main()
