"""Benchmark of finite_size.simulate (issue: foundation). Prints, measured in this run:

1. time per full-batch step at D = N = 1000, depth 3, for alpha = 1 and alpha = 16 (sufficient
   statistics: the ratio should be near 1);
2. an ensemble of 32 seeds advanced as one batched computation vs 32 separate runs (D = 256);
3. our step vs a plain data-space training step (forward and backward over all P examples; PyTorch
   when installed, else NumPy) at alpha = 4, D = N = 1000.

Run: python benchmarks/bench_simulate.py [--dim 1000]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import dmft
import finite_size
from finite_size.networks import build_network
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
        u, _ = full_batch.residual_drive(network.beta(), np)
        network.step(u, 1e-3)
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=1000)
    args = parser.parse_args()
    dim, depth = args.dim, 3
    model = dmft.DeepLinear(depth=depth)

    print(f"1. full-batch step, D = N = {dim}, depth {depth}, one seed")
    alpha_times = {}
    for alpha in (1.0, 16.0):
        alpha_times[alpha] = per_step_seconds(model, dmft.GaussianData(alpha=alpha), dim, seeds=1)
        print(f"   alpha = {alpha:>4}: {1e3 * alpha_times[alpha]:8.2f} ms / step")
    print(f"   ratio alpha=16 / alpha=1: {alpha_times[16.0] / alpha_times[1.0]:.2f} (sufficient statistics: ~1)")

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

    print(f"\n3. our step vs a data-space step, D = N = {dim}, depth {depth}, alpha = 4")
    ours = per_step_seconds(model, dmft.GaussianData(alpha=4.0), dim, seeds=1)
    plain, engine = data_space_step_seconds(dim, 4.0, depth)
    print(f"   ours: {1e3 * ours:.2f} ms, data space ({engine}): {1e3 * plain:.2f} ms, "
          f"speed-up {plain / ours:.1f}x (goal >= 20x)")


if __name__ == "__main__":
    main()
