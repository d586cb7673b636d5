"""Benchmark of dmft.sweep (issue 7). Prints, measured in this run:

1. a 64-point DMFT sweep (8 widths x 8 learning rates of a depth-2 network, ``--steps`` steps)
   run serially in this process and on a ``distributed.LocalCluster`` of ``--workers`` single-threaded
   processes (workers warmed up first: imports and Numba compilation excluded), the speed-up, and
   whether both gave identical numbers;
   and, as a control, the same points on plain ``multiprocessing`` processes (no Dask): on a machine
   shared with other work the attainable speed-up is below the number of workers, and this says how far;
2. the same sweep again from the cache (every point a hit), the cache-hit re-run time.

Dask's statistical profiler is switched off in the workers unless ``--worker-profiler`` is given.
BLAS is pinned to one thread in this process too (before NumPy is imported), as Dask does in its
worker processes, so that the serial baseline and each worker do the same single-threaded work.

Run: python benchmarks/bench_sweep.py [--workers 2] [--steps 100] [--model deep|linear|simulate]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import dmft  # noqa: E402
from dmft._sweep import sweep  # noqa: E402

WIDTHS = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]
LEARNING_RATES = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1]


def configuration(kind: str, steps: int):
    """Base configuration, ``over`` and run arguments of the benchmark sweep (64 points)."""
    data = dmft.GaussianData(alpha=2.0, noise=0.1)
    training = dmft.GradientDescent(learning_rate=0.05, steps=steps)
    if kind == "linear":  # exact depth-0 curves: cheap points, dominated by overhead
        over = {"data.alpha": [0.5 + 0.25 * i for i in range(8)], "training.learning_rate": LEARNING_RATES}
        return dmft.Linear(), data, training, over, "solve", {}
    over = {"model.width_ratio": WIDTHS, "training.learning_rate": LEARNING_RATES}
    model = dmft.DeepLinear(depth=2, width_ratio=1.0, gamma0=1.0)
    if kind == "simulate":
        return model, data, training, over, "simulate", {"dim": 200, "seeds": 4}
    return model, data, training, over, "solve", {}


def warm_up(model, data, training, run, options):
    """Imports and Numba compilation, so that the timings below measure the sweep itself."""
    from dmft._sweep import _compute

    _compute(run, model, data, training.replace(steps=5), options)


def point_arguments(model, data, training, over, run, options):
    """``(run, model, data, training, options)`` of every point of the sweep, built by hand."""
    import itertools
    from dataclasses import replace

    arguments = []
    for values in itertools.product(*over.values()):
        parts = {"model": {}, "data": {}, "training": {}}
        for name, value in zip(over, values):
            root, field = name.split(".")
            parts[root][field] = value
        arguments.append((run, replace(model, **parts["model"]), replace(data, **parts["data"]),
                          replace(training, **parts["training"]), options))
    return arguments


def compute_point(run, model, data, training, options):
    from dmft._sweep import _compute

    return _compute(run, model, data, training, options)[0]


def timed(function):
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100, help="steps per point (sets the cost of a point)")
    parser.add_argument("--model", choices=("deep", "linear", "simulate"), default="deep")
    parser.add_argument("--worker-profiler", action="store_true",
                        help="keep Dask's statistical profiler on in the workers (it samples every 10 ms "
                             "and slows Python-heavy tasks)")
    args = parser.parse_args()

    import dask

    dask.config.set({"distributed.worker.profile.enabled": bool(args.worker_profiler)})

    from distributed import Client, LocalCluster, get_task_stream

    model, data, training, over, run, options = configuration(args.model, args.steps)
    points = int(np.prod([len(v) for v in over.values()]))
    common = dict(over=over, run=run, run_options=options, progress=False)
    print(f"{points}-point sweep: {args.model} ({run}), {args.steps} steps, {os.cpu_count()} cores on this machine, "
          f"load average {os.getloadavg()[0]:.1f} before the run")

    warm_up(model, data, training, run, options)
    cpu_started = time.process_time()
    serial_s, serial = timed(lambda: sweep(model, data, training, use_cache=False, **common))
    serial_cpu_s = time.process_time() - cpu_started

    started = time.perf_counter()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.run(warm_up, model, data, training, run, options)
        start_s = time.perf_counter() - started
        cluster_s, remote = timed(lambda: sweep(model, data, training, use_cache=False, client=client, **common))
        # a second pass records the task stream (recording costs the client CPU, so it is not timed)
        with get_task_stream(client) as stream:
            sweep(model, data, training, use_cache=False, client=client, **common)
    # time each worker spent inside the tasks: above the serial time per point when cores are shared
    task_s = [sum(s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute")
              for task in stream.data]
    # control: the same points on plain processes (multiprocessing, no Dask), i.e. the speed-up
    # this machine can give right now
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(
            args.workers, initializer=warm_up, initargs=(model, data, training, run, options)) as pool:
        pool.starmap(compute_point, [(run, model, data, training.replace(steps=5), options)] * args.workers)
        plain_s, _ = timed(lambda: pool.starmap(
            compute_point, point_arguments(model, data, training, over, run, options), chunksize=1))
    identical = all(np.array_equal(serial[name].values, remote[name].values, equal_nan=True)
                    for name in ("test_loss", "train_loss"))

    with tempfile.TemporaryDirectory() as folder:
        fill_s, _ = timed(lambda: sweep(model, data, training, cache=folder, **common))
        hit_s, cached = timed(lambda: sweep(model, data, training, cache=folder, **common))
        assert cached.attrs["points_computed"] == 0 and cached.attrs["points_cached"] == points
        cached_identical = all(np.array_equal(serial[name].values, cached[name].values, equal_nan=True)
                               for name in ("test_loss", "train_loss"))

    diverged = int(np.sum(serial["status"].values != "ok"))
    print(f"  per point (serial)         {1e3 * serial_s / points:9.1f} ms   ({diverged} of {points} diverged)")
    print(f"  serial, this process       {serial_s:9.2f} s   (CPU {serial_cpu_s:.2f} s: a share of "
          f"{serial_cpu_s / serial_s:.0%} of one core; below 100% the machine is busy with other work)")
    print(f"  LocalCluster, {args.workers} processes  {cluster_s:9.2f} s   (start-up + warm-up {start_s:.1f} s, not "
          f"counted; worker profiler {'on' if args.worker_profiler else 'off'})")
    print(f"  per point (on a worker)    {1e3 * np.mean(task_s):9.1f} ms   (compute time inside the {len(task_s)} tasks)")
    print(f"  speed-up                   {serial_s / cluster_s:9.2f} x   (ideal {args.workers}); identical numbers: {identical}")
    print(f"  control: {args.workers} plain processes {plain_s:7.2f} s   (multiprocessing, no Dask: speed-up "
          f"{serial_s / plain_s:.2f} x, what this machine allows now)")
    print(f"  first run filling cache    {fill_s:9.2f} s")
    print(f"  cached re-run (64 hits)    {hit_s:9.3f} s   ({1e3 * hit_s / points:.1f} ms per point); identical: {cached_identical}")
    print(f"  load average after         {os.getloadavg()[0]:9.1f}")


if __name__ == "__main__":
    main()
