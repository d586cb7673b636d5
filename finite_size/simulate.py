"""``simulate``: train ``seeds`` finite networks and average their loss curves.

The same three configuration objects as :func:`dmft.solve`, so every curve of one can be laid on
the other. Full-batch gradient descent uses the sufficient statistics of the training set
(:mod:`finite_size.problem`), so a step costs ``O(D^2 + L N^2 + N D)`` whatever ``P``; online SGD draws a
fresh batch of ``batch_ratio * D`` examples at every step; gradient flow is integrated with error
control (:mod:`finite_size.flow`). Learning-rate schedules use ``training.rates[t]`` at step ``t``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from dmft._validate import positive_int
from dmft.errors import check_divergence
from dmft.data import GaussianData
from dmft.models import DeepLinear
from dmft.result import Result
from dmft.training import TRAININGS, GradientDescent, GradientFlow, OnlineSGD, check_compatible

from ._backend import DEFAULT_THREADS, blas_threads, check_memory, namespace, to_device, to_host
from .flow import integrate_flow
from .networks import NETWORK_MODELS, apply_update, build_network, network_bytes
from .problem import (
    FullBatchData,
    direction_spectrum,
    example_count,
    full_batch_bytes,
    population_drive,
    sample_full_batch,
    sample_inputs,
    sample_teacher,
)
from .boltzmann import SphericalBoltzmann, simulate_boltzmann

__all__ = ["simulate", "Problem", "sample_problem"]


@dataclass(frozen=True)
class Problem:
    """The sampled problem of a simulation, on the host (NumPy): ``eigenvalues`` ``(D,)``,
    ``teacher`` ``(seeds, D)``, the training set ``full_batch`` (``None`` for online SGD and the
    population flow), and the generators of the initial weights and of the online batches."""

    eigenvalues: np.ndarray
    teacher: np.ndarray
    full_batch: FullBatchData | None
    weight_rng: np.random.Generator
    batch_rng: np.random.Generator


def sample_problem(data, training, dim: int, seeds: int, seed: int) -> Problem:
    """Draw the teacher and the training set of a simulation exactly as :func:`simulate` does for
    the same arguments (so tests can recompute what a run trained on)."""
    problem_rng, weight_rng, batch_seed = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    eigenvalues, _ = direction_spectrum(data, dim)
    teacher = sample_teacher(data, dim, seeds, problem_rng)
    full_batch = None
    if data.alpha is not None and not isinstance(training, OnlineSGD):
        full_batch = sample_full_batch(teacher, eigenvalues, data.alpha, data.noise, problem_rng)
    batch_rng = np.random.default_rng(int(batch_seed.integers(2**63)))
    return Problem(eigenvalues, teacher, full_batch, weight_rng, batch_rng)


def simulate(
    model,
    data,
    training,
    *,
    dim: int,
    seeds: int = 8,
    backend: str = "numpy",
    seed: int = 0,
    snapshot_every: int | None = None,
    progress: bool = False,
    record_hidden: bool = False,
    threads: int | None = None,
    step: float | None = None,
    spectrum: str | None = None,
) -> Result:
    """Train ``seeds`` independent networks of input dimension ``dim`` and average their curves.

    Parameters
    ----------
    model, data, training : as for :func:`dmft.solve` (width ``N = round(width_ratio * dim)``,
        ``P = round(alpha * dim)`` examples, batches of ``round(batch_ratio * dim)``).
        ``dmft.GradientDescent`` / ``dmft.OnlineSGD`` with a number or a schedule as
        ``learning_rate`` (step ``t`` uses ``training.rates[t]``); ``dmft.GradientFlow`` integrates the
        continuous-time flow (full batch with ``alpha``, the population flow with ``alpha=None``).
    dim : input dimension ``D``; a multiple of the spectrum's modes for anisotropic data.
    seeds : number of independent problems (teacher, data, initial weights), trained together
        as one batched array computation.
    backend : ``"numpy"`` or ``"cupy"`` (GPU; the same array-API code path).
    seed : seeds the whole run; the problem, the initial weights and the online batches are drawn
        with NumPy on the host, so every backend trains on the same numbers.
    snapshot_every : (discrete training) also record the predictor ``beta`` every that many steps
        (and at the last step).
    progress : show a tqdm progress bar (over steps, or over flow time).
    record_hidden : (deep networks, discrete training) also record the equal-time layer-by-layer
        correlations of the hidden fields at every step: ``h_l . h_l' / N`` for the forward fields
        ``h_l`` of the step's drive ``u_t`` and ``g_l . g_l' / N`` for the backward fields, before the
        update (the DMFT's ``C_h^{ll'}(t, t)``, ``C_g^{ll'}(t, t)``). Costs one extra forward pass per step.
    threads : BLAS threads during the run (``None``: ``finite_size._backend.DEFAULT_THREADS`` = 1:
        the work is memory-bound matrix-vector products, and two BLAS threads made a 20-step run at
        ``D = 800`` 6-10 times slower on a busy 2-core machine; see the README's simulation section).
    step, spectrum : spherical Boltzmann machines only (``model`` a :class:`dmft.SphericalBoltzmann`):
        passed to :func:`finite_size.boltzmann.simulate_boltzmann` (its time step and when to
        diagonalise the couplings; defaults ``None`` -> its own, ``"all"``). For a Boltzmann model
        ``dim`` is ``N``, and ``snapshot_every`` / ``record_hidden`` (network options) are refused.

    Returns
    -------
    dmft.Result with ``method="simulation"``: ``time`` (steps, or flow times), ``test_loss``,
    ``train_loss`` (mean over seeds), ``test_loss_sem``, ``train_loss_sem`` (standard errors over
    seeds; NaN for one seed), ``arrays["test_loss_per_seed"]``, ``arrays["train_loss_per_seed"]``
    (``(seeds, len(time))``), ``arrays["teacher"]`` (``(seeds, dim)``) and, with ``snapshot_every``,
    ``arrays["beta"]`` (``(snapshots, seeds, dim)``) at ``arrays["snapshot_steps"]``; with ``record_hidden``,
    ``arrays["hidden_correlation"]``, ``arrays["backward_correlation"]`` (``(steps + 1, L, L)``, mean over
    seeds) and their standard errors ``arrays["hidden_correlation_sem"]``, ``arrays["backward_correlation_sem"]``;
    ``info`` holds the sizes, backend, seed, threads and wall time, and for a flow its step counts.

    Test loss of a network with predictor ``beta``: ``sum_j lambda_j (beta_j - beta*_j)^2 / D + sigma^2``
    (exact expectation over a fresh input). Train loss: ``(1/P) |y - X beta / sqrt(D)|^2`` on the
    training set, on the step's fresh batch before the update for online SGD, and the population loss
    (= test loss) for the population flow.

    Raises
    ------
    ValueError : bad sizes (an empty data set or batch included), an incompatible data / training
        pair, options that do not apply.
    MemoryError : the estimated memory of the run exceeds what is available (before allocating).
    dmft._backend.BackendUnavailableError (an ImportError) : ``backend="cupy"`` without CuPy or a
        usable GPU.
    dmft.DivergenceError : a loss became non-finite or grew ``DIVERGENCE_FACTOR`` (1e8) times above
        the initial test loss (names the step and the rate of the step that diverged; for a flow the
        flow time).
    """
    if isinstance(model, SphericalBoltzmann):  # Langevin training: finite_size/boltzmann.py (issue 12)
        if snapshot_every is not None:
            raise ValueError("`snapshot_every` is for networks trained by discrete steps; a spherical Boltzmann "
                             "machine reports at training.save_at (use that)")
        if record_hidden:
            raise ValueError("`record_hidden` is for deep networks (dmft.DeepLinear), not dmft.SphericalBoltzmann")
        options = {} if spectrum is None else {"spectrum": spectrum}
        return simulate_boltzmann(model, data, training, dim=dim, seeds=seeds, backend=backend, seed=seed,
                                  step=step, progress=progress, threads=1 if threads is None else threads,
                                  **options)
    if step is not None:
        raise ValueError(f"`step` (the Langevin time step) applies to dmft.SphericalBoltzmann only, got {model!r}")
    if spectrum is not None:
        raise ValueError(f"`spectrum` (when to diagonalise the couplings) applies to dmft.SphericalBoltzmann only, got {model!r}")
    dim = positive_int("dim", dim)
    seeds = positive_int("seeds", seeds)
    seed = positive_int("seed", seed, minimum=0)
    _check_configuration(model, data, training)
    flow = isinstance(training, GradientFlow)
    if snapshot_every is not None:
        positive_int("snapshot_every", snapshot_every)
        if flow:
            raise ValueError("`snapshot_every` counts steps; a GradientFlow has none (use save_at for the times)")
    if record_hidden and flow:
        raise ValueError("`record_hidden` is for discrete training, not dmft.GradientFlow")
    if record_hidden and not isinstance(model, DeepLinear):
        raise ValueError(f"`record_hidden` needs a network with hidden layers (dmft.DeepLinear), got {model!r}")
    threads = DEFAULT_THREADS if threads is None else positive_int("threads", threads)
    xp = namespace(backend)  # a missing or unusable CuPy fails here, before any work
    _check_sizes(model, data, training, dim, seeds, backend, snapshot_every)
    started = time.perf_counter()

    with blas_threads(threads):
        problem = sample_problem(data, training, dim, seeds, seed)
        network = build_network(model, dim, seeds, problem.weight_rng, xp)
        if flow:
            curves, times, arrays, info = _run_flow(network, problem, data, training, xp, progress)
        else:
            curves, arrays, info = _run_discrete(
                network, problem, data, training, xp, progress, snapshot_every, record_hidden
            )
            times = None

    test_loss, train_loss = curves
    arrays = {"test_loss_per_seed": test_loss, "train_loss_per_seed": train_loss, "teacher": problem.teacher, **arrays}
    return Result(
        model=model,
        data=data,
        training=training,
        test_loss=test_loss.mean(axis=0),
        train_loss=train_loss.mean(axis=0),
        test_loss_sem=_standard_error(test_loss),
        train_loss_sem=_standard_error(train_loss),
        method="simulation",
        arrays=arrays,
        time=times,
        info={
            "dim": dim,
            "width": getattr(network, "width", None),
            "examples": info.pop("examples"),
            "seeds": seeds,
            "seed": seed,
            "backend": backend,
            "threads": threads,
            **info,
            "wall_time_s": time.perf_counter() - started,
        },
    )


def _check_configuration(model, data, training) -> None:
    """The three configuration objects, in their order (clear errors for classes and swaps)."""
    order = "the arguments are (model, data, training), in that order"
    for name, value in (("model", model), ("data", data), ("training", training)):
        if isinstance(value, type):
            raise TypeError(f"`{name}` must be an instance, got the class {value.__name__}: write dmft.{value.__name__}(...)")
    if not isinstance(model, NETWORK_MODELS):
        hint = f" ({order})" if isinstance(model, (GaussianData, *TRAININGS)) else ""
        raise TypeError(
            f"`model` must be one of {', '.join('dmft.' + t.__name__ for t in NETWORK_MODELS)}, "
            f"got {type(model).__name__}{hint}"
        )
    if not isinstance(data, GaussianData):
        hint = f" ({order})" if isinstance(data, (*NETWORK_MODELS, *TRAININGS)) else ""
        raise TypeError(f"`data` must be dmft.GaussianData, got {type(data).__name__}{hint}")
    check_compatible(data, training)


def _check_sizes(model, data, training, dim, seeds, backend, snapshot_every) -> None:
    """Bad sizes and memory, before anything is allocated."""
    direction_spectrum(data, dim)  # dim must split into the spectrum's modes
    smaller = f"lower `seeds` ({seeds}) or `dim` ({dim})"
    parts = {"weights": (float(network_bytes(model, dim, seeds)), smaller)}
    if isinstance(training, OnlineSGD):
        batch = example_count("batch_ratio", training.batch_ratio, dim)
        # the host draw and its device copy
        parts["batch"] = (8.0 * seeds * batch * (dim + 1) * 2, f"lower `batch_ratio`, `seeds` ({seeds}) or `dim` ({dim})")
    elif data.alpha is not None:
        example_count("alpha", data.alpha, dim)
        parts.update({name: (size, smaller) for name, size in full_batch_bytes(data.alpha, dim, seeds).items()})
    if snapshot_every is not None:
        snapshots = 8.0 * seeds * dim * (training.steps // snapshot_every + 2)
        parts["snapshots"] = (snapshots, "raise `snapshot_every`")
    if isinstance(training, (GradientDescent, OnlineSGD)):
        curves = 8.0 * seeds * (training.steps + 1) * 2
        parts["loss curves"] = (curves, f"lower `steps` ({training.steps}) or run in pieces")
    check_memory(parts, backend, seeds=seeds)


def _rate_label(training) -> str:
    return "under a learning-rate schedule" if training.is_schedule else ""


def _run_discrete(network, problem, data, training, xp, progress, snapshot_every, record_hidden):
    seeds, dim = problem.teacher.shape
    beta_star = to_device(xp, problem.teacher)
    weights = to_device(xp, problem.eigenvalues)
    noise_power = data.noise**2
    rates = [float(rate) for rate in training.rates]
    steps = training.steps

    if isinstance(training, GradientDescent):
        full_batch = problem.full_batch.to(xp)
        drive = lambda beta: full_batch.residual_drive(beta, xp)  # noqa: E731
        count = full_batch.count
    else:
        count = example_count("batch_ratio", training.batch_ratio, dim)
        scale = np.sqrt(problem.eigenvalues)
        root = math.sqrt(dim)
        noise = float(data.noise)

        def drive(beta):
            inputs = to_device(xp, sample_inputs(problem.batch_rng, scale, seeds, count))
            label_noise = to_device(xp, problem.batch_rng.standard_normal((seeds, count)))
            residual = xp.matmul(inputs, (beta_star - beta)[:, :, None])[:, :, 0] / root + noise * label_noise
            u = root * xp.matmul(residual[:, None, :], inputs)[:, 0, :] / count
            return u, xp.mean(residual**2, axis=1)

    test_loss = np.empty((seeds, steps + 1))
    train_loss = np.empty((seeds, steps + 1))
    snapshots, snapshot_steps = [], []
    hidden_grams = [] if record_hidden else None
    what = " ".join(filter(None, ("simulated {} loss", _rate_label(training))))
    iterator = range(steps + 1)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="simulate", unit="step")
    for step in iterator:
        beta, cache = network.evaluate()
        u, train = drive(beta)
        test = xp.sum(weights * (beta - beta_star) ** 2, axis=1) / dim + noise_power
        test_loss[:, step] = to_host(xp, test)
        train_loss[:, step] = to_host(xp, train)
        rate = rates[max(step - 1, 0)]  # the step that led here
        check_divergence(test_loss[:, step], test_loss[:, 0], step, rate, what.format("test"))
        check_divergence(train_loss[:, step], test_loss[:, 0], step, rate, what.format("train"))
        if record_hidden:
            forward, backward = network.hidden_fields(u)
            hidden_grams.append([to_host(xp, _layer_gram(fields, xp)) for fields in (forward, backward)])
        if snapshot_every is not None and (step % snapshot_every == 0 or step == steps):
            snapshots.append(np.array(to_host(xp, beta)))
            snapshot_steps.append(step)
        if step < steps:
            apply_update(network.parameters(), network.direction(u, cache), rates[step])

    arrays = {}
    if record_hidden:
        for index, name in enumerate(("hidden_correlation", "backward_correlation")):
            per_seed = np.stack([grams[index] for grams in hidden_grams], axis=1)  # (seeds, steps+1, L, L)
            arrays[name] = per_seed.mean(axis=0)
            arrays[f"{name}_sem"] = _standard_error(per_seed)
    if snapshot_every is not None:
        arrays["beta"] = np.stack(snapshots)
        arrays["snapshot_steps"] = np.asarray(snapshot_steps)
    return (test_loss, train_loss), arrays, {"examples": count}


def _run_flow(network, problem, data, training, xp, progress):
    beta_star = to_device(xp, problem.teacher)
    eigenvalues = to_device(xp, problem.eigenvalues)
    noise_power = float(data.noise) ** 2
    if problem.full_batch is not None:
        full_batch = problem.full_batch.to(xp)
        drive = lambda beta: full_batch.residual_drive(beta, xp)  # noqa: E731
        train_change = lambda change: full_batch.quadratic_form(change, xp)  # noqa: E731
        count = full_batch.count
    else:  # the population flow: exact population gradient, train loss = population loss
        dim = problem.teacher.shape[1]
        drive = lambda beta: population_drive(beta, beta_star, eigenvalues, noise_power, xp)  # noqa: E731
        train_change = lambda change: xp.sum(eigenvalues * change**2, axis=1) / dim  # noqa: E731
        count = None
    trace = integrate_flow(
        network, drive, train_change, training,
        eigenvalues=eigenvalues, beta_star=beta_star, noise_power=noise_power, xp=xp, progress=progress,
    )
    return (trace.test_loss, trace.train_loss), trace.time, {}, {"examples": count, **trace.info}


def _standard_error(per_seed: np.ndarray) -> np.ndarray:
    seeds = per_seed.shape[0]
    if seeds < 2:
        return np.full(per_seed.shape[1:], np.nan)
    return per_seed.std(axis=0, ddof=1) / math.sqrt(seeds)


def _layer_gram(fields, xp):
    """``(S, L, L)`` matrices ``f_l . f_l' / N`` of a list of ``L`` fields of shape ``(S, N)``."""
    stacked = xp.stack(fields, axis=1)
    return xp.matmul(stacked, xp.matrix_transpose(stacked)) / stacked.shape[-1]
