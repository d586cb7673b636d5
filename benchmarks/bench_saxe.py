"""Timings of the Saxe solutions and of the finite-network simulator (THEORY.md section 3).

Run: ``python benchmarks/bench_saxe.py`` (about half a minute on 2 cores). Prints

1. the simulator with all seeds batched along one axis vs a Python loop over seeds (same networks,
   same numbers: checked), and their ratio, for a few sizes (NumPy; CuPy too when available);
2. ``dmft.saxe.mode_strength`` on many times (closed form at depth 0 and 1, the integrated flow
   at depth >= 2) and ``learning_time`` (closed form vs quadrature);
3. the default ``finite_size.saxe.depth_study`` (orthogonal vs scaled Gaussian), as a table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dmft import saxe  # noqa: E402
from dmft._backend import cupy_usable  # noqa: E402
from finite_size._backend import namespace, to_device  # noqa: E402
from finite_size.saxe import SaxeNetwork, _initial_weights, _task_modes, _train, depth_study  # noqa: E402


def best_of(function, repeats: int = 3) -> float:
    """Smallest wall-clock time of ``repeats`` calls (seconds)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def bench_simulator(backend: str = "numpy") -> None:
    """The training loop on all seeds at once vs one seed at a time, on the same initial weights."""
    xp = namespace(backend)
    print(f"\n## simulator, backend={backend}: batched seeds vs a loop over seeds (same networks)")
    print("| init | depth | width | seeds | steps | batched (s) | loop (s) | loop / batched | max difference |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    settings = [
        ("orthogonal", 8, 16, 16, 300),
        ("gaussian", 32, 16, 16, 100),
        ("decoupled", 3, 64, 16, 300),
    ]
    for init, depth, width, seeds, steps in settings:
        network = SaxeNetwork(
            singular_values=(2.0, 1.0), depth=depth, hidden=width, n_in=width, n_out=width, init=init
        )
        learning_rate = 0.05 / (depth + 1)
        rng = np.random.default_rng(0)
        U, V = _task_modes(network, rng, None, None)
        initial = _initial_weights(network, seeds, rng, U, V)
        sigma = to_device(xp, U @ (np.asarray(network.singular_values)[:, None] * V.T))
        U, V = to_device(xp, U), to_device(xp, V)
        rates = [learning_rate] * steps

        def batched():
            return _train(xp, [to_device(xp, w.copy()) for w in initial], sigma, U, V, rates, steps)[0]

        def loop():
            return xp.concat(
                [
                    _train(xp, [to_device(xp, w[k : k + 1].copy()) for w in initial], sigma, U, V, rates, steps)[0]
                    for k in range(seeds)
                ],
                axis=1,
            )

        difference = float(xp.max(xp.abs(batched() - loop())))
        t_batched = best_of(batched)
        t_loop = best_of(loop, repeats=1)
        print(
            f"| {init} | {depth} | {width} | {seeds} | {steps} | {t_batched:.3f} | {t_loop:.3f} "
            f"| {t_loop / t_batched:.1f} | {difference:.1e} |"
        )


def bench_exact() -> None:
    print("\n## dmft.saxe")
    print("| call | depth | points | time (ms) | per point (us) |")
    print("|---|---:|---:|---:|---:|")
    t = np.linspace(0.0, 50.0, 100_000)
    for depth in (0, 1, 3, 32):
        seconds = best_of(lambda: saxe.mode_strength(2.0, 1e-3, t, depth=depth))
        print(f"| mode_strength | {depth} | {t.size} | {1e3 * seconds:.2f} | {1e6 * seconds / t.size:.3f} |")
    targets = 1e-3 + np.linspace(0.01, 0.99, 200) * (2.0 - 1e-3)
    for depth in (1, 3, 32):
        seconds = best_of(lambda: saxe.learning_time(2.0, 1e-3, targets, depth=depth))
        print(
            f"| learning_time | {depth} | {targets.size} | {1e3 * seconds:.2f} "
            f"| {1e6 * seconds / targets.size:.3f} |"
        )
    U = np.linalg.qr(np.random.default_rng(0).standard_normal((64, 8)))[0]
    V = np.linalg.qr(np.random.default_rng(1).standard_normal((32, 8)))[0]
    s = np.linspace(3.0, 0.5, 8)
    times = np.linspace(0, 20, 1000)
    seconds = best_of(lambda: saxe.end_to_end(U, s, V, 1e-3, times, depth=2))
    print(
        f"| end_to_end (64 x 32, 8 modes) | 2 | {times.size} | {1e3 * seconds:.2f} "
        f"| {1e6 * seconds / times.size:.3f} |"
    )


def bench_depth_study() -> None:
    print("\n## finite_size.saxe.depth_study() (defaults)")
    study = depth_study()
    print(study.table())
    print(f"\nparameters: {dict(study.parameters)}")
    print(f"wall-clock: {study.seconds:.2f} s")


def main() -> None:
    started = time.perf_counter()
    bench_simulator("numpy")
    if not cupy_usable():
        print("\n(CuPy or a CUDA device not available: GPU timings skipped)")
    else:
        bench_simulator("cupy")
    bench_exact()
    bench_depth_study()
    print(f"\ntotal: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
