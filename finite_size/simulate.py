"""``simulate``: train ``seeds`` finite networks by gradient descent and average their loss curves.

The same three configuration objects as :func:`dmft.solve`, so every curve of one can be laid on
the other. Full-batch gradient descent uses the sufficient statistics of the training set
(:mod:`finite_size.problem`), so a step costs ``O(D^2 + L N^2 + N D)`` whatever ``P``; online SGD draws a
fresh batch of ``batch_ratio * D`` examples at every step.
"""

from __future__ import annotations

import math
import time

import numpy as np

from dmft.errors import check_divergence
from dmft.result import Result
from dmft.training import GradientDescent, check_compatible
from dmft._validate import positive_int

from ._backend import array_module, to_numpy
from .boltzmann import SphericalBoltzmann, simulate_boltzmann
from .networks import build_network
from .problem import direction_spectrum, sample_full_batch, sample_inputs, sample_teacher

__all__ = ["simulate"]


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
) -> Result:
    """Train ``seeds`` independent networks of input dimension ``dim`` and average their curves.

    Parameters
    ----------
    model, data, training : as for :func:`dmft.solve` (width ``N = round(width_ratio * dim)``,
        ``P = round(alpha * dim)`` examples, batches of ``round(batch_ratio * dim)``).
    dim : input dimension ``D``; a multiple of the spectrum's modes for anisotropic data.
    seeds : number of independent problems (teacher, data, initial weights), trained together
        as one batched array computation.
    backend : ``"numpy"`` or ``"cupy"`` (GPU; same code path through the array module).
    seed : seeds the whole run; the problem and the initial weights are drawn with NumPy, so both
        backends start from the same numbers (online-SGD batches come from the backend's generator).
    snapshot_every : also record the predictor ``beta`` every that many steps (and at the last step).
    progress : show a tqdm progress bar over steps.
    record_hidden : (deep networks) also record the equal-time layer-by-layer correlations of the
        hidden fields at every step: ``h_l . h_l' / N`` for the forward fields ``h_l`` of the step's
        drive ``u_t`` and ``g_l . g_l' / N`` for the backward fields, before the update (the DMFT's
        ``C_h^{ll'}(t, t)``, ``C_g^{ll'}(t, t)``). Costs one extra forward pass per step.

    Returns
    -------
    dmft.Result with ``method="simulation"``: ``test_loss``, ``train_loss`` (mean over seeds, length
    ``steps + 1``), ``test_loss_sem``, ``train_loss_sem`` (standard errors over seeds; NaN for one
    seed), ``arrays["test_loss_per_seed"]``, ``arrays["train_loss_per_seed"]`` (``(seeds, steps + 1)``),
    ``arrays["teacher"]`` (``(seeds, dim)``) and, with ``snapshot_every``, ``arrays["beta"]``
    (``(snapshots, seeds, dim)``) at ``arrays["snapshot_steps"]``; with ``record_hidden``,
    ``arrays["hidden_correlation"]``, ``arrays["backward_correlation"]`` (``(steps + 1, L, L)``, mean over
    seeds) and their standard errors ``arrays["hidden_correlation_sem"]``, ``arrays["backward_correlation_sem"]``;
    ``info`` holds the sizes, backend, seed and wall time.

    Test loss of a network with predictor ``beta``: ``sum_j lambda_j (beta_j - beta*_j)^2 / D + sigma^2``
    (exact expectation over a fresh input). Train loss: ``(1/P) |y - X beta / sqrt(D)|^2`` on the
    training set, or on the step's fresh batch before the update for online SGD.

    Raises
    ------
    ValueError : bad sizes or an incompatible data / training pair.
    dmft.DivergenceError : a loss became non-finite or grew ``DIVERGENCE_FACTOR`` (1e8) times above
        the initial test loss (names the step and the learning rate).
    """
    if isinstance(model, SphericalBoltzmann):  # Langevin training: finite_size/boltzmann.py (issue 12)
        return simulate_boltzmann(model, data, training, dim=dim, seeds=seeds, backend=backend, seed=seed, progress=progress)
    dim = positive_int("dim", dim)
    seeds = positive_int("seeds", seeds)
    seed = positive_int("seed", seed, minimum=0)
    if snapshot_every is not None:
        positive_int("snapshot_every", snapshot_every)
    check_compatible(data, training)
    xp = array_module(backend)
    started = time.perf_counter()

    problem_rng, weight_rng, batch_seed = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    eigenvalues, _ = direction_spectrum(data, dim)
    beta_star_host = sample_teacher(data, dim, seeds, problem_rng)
    network = build_network(model, dim, seeds, weight_rng, xp)
    if record_hidden and not hasattr(network, "hidden_fields"):
        raise ValueError(f"`record_hidden` needs a network with hidden layers (dmft.DeepLinear), got {model!r}")
    beta_star = xp.asarray(beta_star_host)
    weights = xp.asarray(eigenvalues)
    noise_power = data.noise**2
    learning_rate = training.learning_rate
    steps = training.steps

    if isinstance(training, GradientDescent):
        full_batch = sample_full_batch(beta_star_host, eigenvalues, data.alpha, data.noise, problem_rng).to(xp)
        drive = lambda beta: full_batch.residual_drive(beta, xp)  # noqa: E731
        count = full_batch.count
    else:
        count = max(1, int(round(training.batch_ratio * dim)))
        batch_rng = xp.random.default_rng(int(batch_seed.integers(2**63)))
        scale = xp.sqrt(weights)
        root = math.sqrt(dim)

        def drive(beta):
            inputs = sample_inputs(batch_rng, xp, scale, seeds, count)
            residual = xp.matmul(inputs, (beta_star - beta)[:, :, None])[..., 0] / root
            residual += data.noise * batch_rng.standard_normal((seeds, count))
            u = root * xp.matmul(residual[:, None, :], inputs)[:, 0, :] / count
            return u, xp.mean(residual**2, axis=1)

    test_loss = np.empty((seeds, steps + 1))
    train_loss = np.empty((seeds, steps + 1))
    snapshots, snapshot_steps = [], []
    hidden_grams = [] if record_hidden else None
    iterator = range(steps + 1)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="simulate", unit="step")
    for step in iterator:
        beta = network.beta()
        u, train = drive(beta)
        test = xp.sum(weights * (beta - beta_star) ** 2, axis=1) / dim + noise_power
        test_loss[:, step] = to_numpy(test)
        train_loss[:, step] = to_numpy(train)
        check_divergence(test_loss[:, step], test_loss[:, 0], step, learning_rate, "simulated test loss")
        check_divergence(train_loss[:, step], test_loss[:, 0], step, learning_rate, "simulated train loss")
        if record_hidden:
            forward, backward = network.hidden_fields(u)
            hidden_grams.append([to_numpy(_layer_gram(fields, xp)) for fields in (forward, backward)])
        if snapshot_every is not None and (step % snapshot_every == 0 or step == steps):
            snapshots.append(to_numpy(beta))
            snapshot_steps.append(step)
        if step < steps:
            network.step(u, learning_rate)

    arrays = {
        "test_loss_per_seed": test_loss,
        "train_loss_per_seed": train_loss,
        "teacher": beta_star_host,
    }
    if record_hidden:
        for index, name in enumerate(("hidden_correlation", "backward_correlation")):
            per_seed = np.stack([grams[index] for grams in hidden_grams], axis=1)  # (seeds, steps+1, L, L)
            arrays[name] = per_seed.mean(axis=0)
            arrays[f"{name}_sem"] = _standard_error(per_seed)
    if snapshot_every is not None:
        arrays["beta"] = np.stack(snapshots)
        arrays["snapshot_steps"] = np.asarray(snapshot_steps)
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
        info={
            "dim": dim,
            "width": getattr(network, "width", None),
            "examples": count,
            "seeds": seeds,
            "seed": seed,
            "backend": backend,
            "wall_time_s": time.perf_counter() - started,
        },
    )


def _standard_error(per_seed: np.ndarray) -> np.ndarray:
    seeds = per_seed.shape[0]
    if seeds < 2:
        return np.full(per_seed.shape[1:], np.nan)
    return per_seed.std(axis=0, ddof=1) / math.sqrt(seeds)


def _layer_gram(fields, xp):
    """``(S, L, L)`` matrices ``f_l . f_l' / N`` of a list of ``L`` fields of shape ``(S, N)``."""
    stacked = xp.stack(fields, axis=1)
    return xp.matmul(stacked, stacked.transpose(0, 2, 1)) / stacked.shape[-1]
