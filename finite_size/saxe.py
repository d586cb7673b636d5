"""Finite multi-output deep linear networks in the whitened Saxe setting (THEORY.md section 3).

The check of :mod:`dmft.saxe`: real networks of ``depth`` hidden layers (``N_w = depth + 1`` weight
matrices ``W_1 .. W_{N_w}``, hidden width ``hidden``) trained by full-batch gradient descent on the
population loss with whitened inputs,

    (1/2) E|y - W_total x|^2 = (1/2) |Sigma_yx - W_total|_F^2 + const,
    Sigma_xx = I,   Sigma_yx = U diag(s) V^T,   W_total = W_{N_w} ... W_1,
    W_i <- W_i + eta (W_{>i})^T (Sigma_yx - W_total) (W_{<i})^T,

with ``W_{>i} = W_{N_w} .. W_{i+1}`` and ``W_{<i} = W_{i-1} .. W_1``. Time is the step count, so the
gradient-flow time constant is ``tau = 1 / eta``. Independent networks (seeds) are batched along a
leading axis; the array module is NumPy or CuPy (``finite_size._backend``), one code path, results
converted to NumPy. Initial weights are drawn on the host with NumPy, so both backends train the very
same networks.

Reported: the mode strengths ``u_a(t) = u_a^T W_total(t) v_a`` at every step and the loss
``|Sigma_yx - W_total|_F^2`` (without the factor 1/2, like every loss of this project; it is the
excess over the irreducible ``E|y - Sigma_yx x|^2``). From decoupled initial conditions the modes
obey, step by step, ``a <- a + eta a^{N_w-1} (s - a^{N_w})`` exactly, which is the Euler
discretisation of ``tau da/dt = a^{N_w-1} (s - a^{N_w})`` (:func:`dmft.saxe.mode_strength`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from numbers import Integral
from typing import Any, Mapping, Sequence

import numpy as np

from dmft._validate import positive, positive_int
from dmft.errors import DivergenceError
from dmft.training import GradientDescent, GradientFlow

from ._backend import DEFAULT_THREADS, blas_threads, check_memory, namespace, to_device, to_host

__all__ = [
    "INITIALISATIONS",
    "SaxeNetwork",
    "SaxeSimulation",
    "simulate_saxe",
    "mode_learning_time",
    "DepthStudy",
    "depth_study",
]

INITIALISATIONS = ("decoupled", "orthogonal", "gaussian")


@dataclass(frozen=True)
class SaxeNetwork:
    """A deep linear network and its whitened task (THEORY.md section 3).

    Parameters
    ----------
    singular_values : ``s_1 .. s_r > 0`` of ``Sigma_yx = U diag(s) V^T`` (``r`` modes).
    depth : hidden layers, integer ``>= 0`` (``N_w = depth + 1`` weight matrices).
    hidden : hidden width (default ``max(n_in, n_out)``); decoupled initialisation needs ``>= r``.
    n_in, n_out : input and output dimensions (default ``r``), each ``>= r``.
    init : ``"decoupled"`` (balanced: every layer has per-mode strength ``init_strength^{1/N_w}``,
        aligned with ``U``, ``V`` through random orthonormal hidden bases, so ``W_total(0) =
        U diag(init_strength) V^T``), ``"orthogonal"`` (``W_i = gain * Q_i``, ``Q_i`` Haar
        (semi-)orthogonal) or ``"gaussian"`` (``W_i ~ N(0, gain^2 / fan_in)`` entrywise).
    init_strength : initial mode strength ``u0 > 0`` of decoupled initialisation (a scalar or one
        value per mode; depth 0 allows any real). Ignored by the other initialisations.
    gain : scale of orthogonal and Gaussian initialisation, ``> 0``. Ignored by decoupled.

    Example
    -------
    >>> net = SaxeNetwork(singular_values=(3.0, 1.0), depth=2, hidden=4, init_strength=1e-3)
    >>> net.layer_shapes()
    [(4, 2), (4, 4), (2, 4)]
    """

    singular_values: tuple[float, ...]
    depth: int = 1
    hidden: int | None = None
    n_in: int | None = None
    n_out: int | None = None
    init: str = "decoupled"
    init_strength: float | tuple[float, ...] = 1e-3
    gain: float = 1.0

    def __post_init__(self):
        values = np.atleast_1d(np.asarray(self.singular_values, dtype=float))
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"`singular_values` must be a non-empty sequence, got {self.singular_values!r}")
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ValueError(f"`singular_values` must be positive and finite, got {values.tolist()}")
        object.__setattr__(self, "singular_values", tuple(float(v) for v in values))
        rank = values.size
        positive_int("depth", self.depth, minimum=0)
        n_in = rank if self.n_in is None else positive_int("n_in", self.n_in, minimum=rank)
        n_out = rank if self.n_out is None else positive_int("n_out", self.n_out, minimum=rank)
        hidden = max(n_in, n_out) if self.hidden is None else positive_int("hidden", self.hidden)
        object.__setattr__(self, "n_in", n_in)
        object.__setattr__(self, "n_out", n_out)
        object.__setattr__(self, "hidden", hidden)
        if self.init not in INITIALISATIONS:
            raise ValueError(f"`init` must be one of {INITIALISATIONS}, got {self.init!r}")
        strength = np.atleast_1d(np.asarray(self.init_strength, dtype=float))
        if strength.ndim != 1 or strength.size not in (1, rank) or not np.all(np.isfinite(strength)):
            raise ValueError(
                f"`init_strength` must be a finite scalar or {rank} values, got {self.init_strength!r}"
            )
        if self.init == "decoupled":
            if self.depth >= 1 and np.any(strength <= 0):
                raise ValueError(
                    f"`init_strength` must be positive for decoupled init with depth >= 1, "
                    f"got {self.init_strength!r}"
                )
            if self.depth >= 1 and hidden < rank:
                raise ValueError(
                    f"decoupled init needs `hidden` >= the number of modes ({rank}), got {hidden}"
                )
        stored = float(strength[0]) if strength.size == 1 else tuple(float(v) for v in strength)
        object.__setattr__(self, "init_strength", stored)
        object.__setattr__(self, "gain", positive("gain", self.gain))

    @property
    def n_weights(self) -> int:
        """Number of weight matrices ``N_w = depth + 1``."""
        return self.depth + 1

    @property
    def rank(self) -> int:
        """Number of modes ``r``."""
        return len(self.singular_values)

    def layer_shapes(self) -> list[tuple[int, int]]:
        """``(rows, columns)`` of ``W_1 .. W_{N_w}``."""
        if self.depth == 0:
            return [(self.n_out, self.n_in)]
        return (
            [(self.hidden, self.n_in)]
            + [(self.hidden, self.hidden)] * (self.depth - 1)
            + [(self.n_out, self.hidden)]
        )

    replace = replace


@dataclass(frozen=True, eq=False)
class SaxeSimulation:
    """Trajectories of ``seeds`` independent networks (curves have ``steps + 1`` entries, index = step).

    Attributes
    ----------
    network, training : the configuration.
    mode_strength : ``(steps + 1, r)``, ``u_a(t) = u_a^T W_total(t) v_a`` averaged over seeds.
    mode_strength_sem : ``(steps + 1, r)``, its standard error over seeds (NaN for one seed).
    mode_strength_per_seed : ``(seeds, steps + 1, r)``.
    loss, loss_sem : ``(steps + 1,)``, ``|Sigma_yx - W_total|_F^2`` (no factor 1/2), mean and SEM.
    loss_per_seed : ``(seeds, steps + 1)``.
    output_modes, input_modes : ``U`` ``(n_out, r)`` and ``V`` ``(n_in, r)``.
    initial_weights, final_weights : ``W_1 .. W_{N_w}`` before the first and after the last step,
        each ``(seeds, rows, cols)``.
    info : backend, seeds, seed, wall-clock seconds.

    From decoupled initialisation every seed follows the same mode dynamics (only the hidden bases
    differ), so ``mode_strength_sem`` is round-off (~1e-16): compare such runs with the flow using
    the O(eta) Euler error, not the standard error.
    """

    network: SaxeNetwork
    training: GradientDescent
    mode_strength: np.ndarray
    mode_strength_sem: np.ndarray
    mode_strength_per_seed: np.ndarray
    loss: np.ndarray
    loss_sem: np.ndarray
    loss_per_seed: np.ndarray
    output_modes: np.ndarray
    input_modes: np.ndarray
    initial_weights: tuple[np.ndarray, ...] = ()
    final_weights: tuple[np.ndarray, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> np.ndarray:
        """Step index of every curve entry."""
        return np.arange(self.loss.shape[0])

    @property
    def tau(self) -> float:
        """Gradient-flow time constant ``1 / learning_rate`` (time = step count) of a constant rate."""
        if self.training.is_schedule:
            raise ValueError(
                "`tau` = 1 / learning_rate needs a constant learning rate; with a schedule compare "
                "at `flow_time` with tau = 1"
            )
        return 1.0 / self.training.learning_rate

    @property
    def flow_time(self) -> np.ndarray:
        """``(steps + 1,)`` gradient-flow time reached at every step, ``sum_{t' < t} eta_t'``."""
        return np.concatenate([[0.0], np.cumsum(self.training.rates)])

    def learning_time(self, fraction: float = 0.9) -> np.ndarray:
        """``(seeds, r)``: first (interpolated) step at which ``u_a`` reaches ``fraction * s_a``."""
        return mode_learning_time(self.mode_strength_per_seed, self.network.singular_values, fraction)


# --------------------------------------------------------------------------------------------------
# initialisation (host, NumPy: both backends train identical networks)


def _haar_isometry(rng: np.random.Generator, batch: int, rows: int, cols: int) -> np.ndarray:
    """``(batch, rows, cols)`` Haar-random matrices with orthonormal columns (rows >= cols) or rows."""
    tall = rows >= cols
    big, small = (rows, cols) if tall else (cols, rows)
    q, r = np.linalg.qr(rng.standard_normal((batch, big, small)))
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
    return q if tall else np.swapaxes(q, -1, -2)


def _initial_weights(
    network: SaxeNetwork, seeds: int, rng: np.random.Generator, U: np.ndarray, V: np.ndarray
) -> list[np.ndarray]:
    shapes = network.layer_shapes()
    if network.init == "orthogonal":
        return [network.gain * _haar_isometry(rng, seeds, m, n) for m, n in shapes]
    if network.init == "gaussian":
        return [network.gain / np.sqrt(n) * rng.standard_normal((seeds, m, n)) for m, n in shapes]
    # decoupled and balanced: W_1 = R_1 diag(a) V^T, W_i = R_i diag(a) R_{i-1}^T, W_Nw = U diag(a) R^T
    n_weights, rank = network.n_weights, network.rank
    u0 = np.broadcast_to(np.asarray(network.init_strength, dtype=float), (rank,))
    if n_weights == 1:
        return [np.broadcast_to(U @ (u0[:, None] * V.T), (seeds, network.n_out, network.n_in)).copy()]
    per_layer = u0 ** (1.0 / n_weights)
    bases = [
        np.broadcast_to(V, (seeds,) + V.shape),
        *(_haar_isometry(rng, seeds, network.hidden, rank) for _ in range(n_weights - 1)),
        np.broadcast_to(U, (seeds,) + U.shape),
    ]
    return [
        (bases[i + 1] * per_layer) @ np.swapaxes(bases[i], -1, -2) for i in range(n_weights)
    ]


def _task_modes(network: SaxeNetwork, rng, output_modes, input_modes) -> tuple[np.ndarray, np.ndarray]:
    modes = []
    for name, given, dim in (
        ("output_modes", output_modes, network.n_out),
        ("input_modes", input_modes, network.n_in),
    ):
        if given is None:
            modes.append(_haar_isometry(rng, 1, dim, network.rank)[0])
            continue
        given = np.asarray(given, dtype=float)
        if given.shape != (dim, network.rank):
            raise ValueError(f"`{name}` must have shape {(dim, network.rank)}, got {given.shape}")
        if not np.allclose(given.T @ given, np.eye(network.rank), atol=1e-10):
            raise ValueError(f"`{name}` must have orthonormal columns")
        modes.append(given)
    return modes[0], modes[1]


# --------------------------------------------------------------------------------------------------
# the training loop (one code path for NumPy and CuPy)


def _train(
    xp, weights, sigma, U, V, rates, steps: int, *, stop_at=None, check_every: int = 64,
    drop_diverged: bool = False, progress: bool = False,
):
    """Full-batch gradient descent on ``(1/2)|Sigma_yx - W_total|_F^2``, all seeds at once.

    ``weights``: list of ``(seeds, rows, cols)`` arrays of the array-API namespace ``xp``, updated in
    place (list entries may be replaced). ``rates``: the learning rate of every step (``steps``
    floats). ``stop_at``: optional ``(r,)`` array of targets; training stops at the first check after
    every seed's every mode has reached its target once. ``drop_diverged``: instead of raising
    :class:`dmft.DivergenceError`, zero the weights of a seed whose loss became non-finite (a fixed
    point: its curves then stay finite) and carry on with the others. Returns ``(u, loss,
    last_step, diverged)`` with ``u`` of shape ``(steps + 1, seeds, r)``, ``loss`` ``(steps + 1,
    seeds)`` (filled up to ``last_step``) and ``diverged`` a ``(seeds,)`` boolean array.
    """
    seeds = weights[0].shape[0]
    rank = U.shape[1]
    strengths = xp.empty((steps + 1, seeds, rank), dtype=xp.float64)
    losses = xp.empty((steps + 1, seeds), dtype=xp.float64)
    reached = None if stop_at is None else xp.zeros((seeds, rank), dtype=xp.bool)
    diverged = xp.zeros(seeds, dtype=xp.bool)
    output_basis, input_basis = U.T, V.T  # (r, n_out), (r, n_in)
    last_checked = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="Saxe networks", unit="step")
    try:
        for step in range(steps + 1):
            prefixes = [weights[0]]  # prefixes[i] = W_{i+1} ... W_1 (0-based layer i)
            for w in weights[1:]:
                prefixes.append(xp.matmul(w, prefixes[-1]))
            total = prefixes[-1]
            error = sigma - total
            strengths[step, ...] = xp.sum(xp.matmul(output_basis, total) * input_basis, axis=-1)  # diag(U^T W V)
            losses[step, ...] = xp.sum(error * error, axis=(-2, -1))
            if reached is not None:
                reached = reached | (strengths[step, ...] >= stop_at)
            if step == steps or (step + 1) % check_every == 0:
                finite = to_host(xp, xp.isfinite(losses[last_checked : step + 1, ...]))
                if not np.all(finite):
                    if not drop_diverged:
                        bad = last_checked + int(np.argmax(~finite.all(axis=1)))
                        raise DivergenceError("Saxe network loss", bad, rates[max(bad - 1, 0)])
                    newly = xp.asarray(~finite.all(axis=0))
                    diverged = diverged | newly
                    for index, w in enumerate(weights):
                        weights[index] = xp.where(newly[:, None, None], 0.0, w)
                last_checked = step + 1
                if reached is not None and bool(xp.all(xp.all(reached, axis=1) | diverged)):
                    return strengths, losses, step, diverged
            if step == steps:
                break
            # backward pass; layer i's update uses only the old W_{>i} (already in `backward`) and
            # the old W_{<i} (in `prefixes`), so updating in place as we go down is exact simultaneous GD
            rate = rates[step]
            backward = error  # (W_{>i})^T (Sigma_yx - W_total) for the current layer i
            for i in range(len(weights) - 1, -1, -1):
                gradient = backward if i == 0 else xp.matmul(backward, xp.matrix_transpose(prefixes[i - 1]))
                if i > 0:
                    backward = xp.matmul(xp.matrix_transpose(weights[i]), backward)
                weights[i] += rate * gradient
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    return strengths, losses, steps, diverged


def _check_memory(network: SaxeNetwork, seeds: int, steps: int, backend: str) -> None:
    """Refuse a run that cannot fit, before allocating: the weights live about five times over
    (host initial and final copies, device weights, the prefix products and the backward pass),
    the curves hold ``(steps + 1) seeds (r + 1)`` numbers."""
    weights = 8.0 * seeds * sum(rows * cols for rows, cols in network.layer_shapes())
    curves = 8.0 * seeds * (steps + 1) * (network.rank + 1)
    check_memory(
        {
            "weights": (5 * weights, f"lower `seeds` ({seeds}) or the layer sizes"),
            "mode-strength curves": (curves, f"lower `steps` ({steps}) or `seeds` ({seeds})"),
        },
        backend,
        seeds=seeds,
    )


def _sem(per_seed: np.ndarray) -> np.ndarray:
    seeds = per_seed.shape[0]
    if seeds < 2:
        return np.full(per_seed.shape[1:], np.nan)
    return per_seed.std(axis=0, ddof=1) / np.sqrt(seeds)


def simulate_saxe(
    network: SaxeNetwork,
    training: GradientDescent,
    *,
    seeds: int = 8,
    backend: str = "numpy",
    seed: int = 0,
    output_modes: np.ndarray | None = None,
    input_modes: np.ndarray | None = None,
    progress: bool = False,
    threads: int | None = None,
) -> SaxeSimulation:
    """Train ``seeds`` independent networks by full-batch gradient descent (THEORY.md section 3).

    ``W_i <- W_i + eta_t (W_{>i})^T (Sigma_yx - W_total) (W_{<i})^T``, ``Sigma_yx = U diag(s) V^T``,
    ``eta_t = training.rates[t]`` (a constant learning rate or a schedule), ``training.steps`` steps;
    compare with ``dmft.saxe.mode_strength(s, u0, sim.flow_time, depth)`` (``tau = 1`` in flow time
    ``sum_{t' < t} eta_t'``; for a constant rate, ``mode_strength(s, u0, t, depth, tau=1/eta)``).

    Parameters
    ----------
    network : the architecture, task and initialisation.
    training : ``dmft.GradientDescent(learning_rate, steps)``, ``learning_rate`` a number or a schedule.
    seeds : number of independent networks (batched, no loop over seeds).
    backend : ``"numpy"`` or ``"cupy"`` (the same array-API code path).
    seed : seeds the task's singular vectors (unless given) and the initial weights.
    output_modes, input_modes : optional ``U`` ``(n_out, r)`` and ``V`` ``(n_in, r)`` with
        orthonormal columns; Haar-random by default.
    progress : show a tqdm progress bar over steps.
    threads : BLAS threads during the run (``None``: one; the products are small and batched).

    Returns
    -------
    :class:`SaxeSimulation`.

    Raises
    ------
    dmft.DivergenceError : the loss became non-finite (names the step and the rate of the step
        that led there; lower the learning rate).
    """
    if not isinstance(network, SaxeNetwork):
        raise TypeError(f"`network` must be a finite_size.saxe.SaxeNetwork, got {type(network).__name__}")
    if not isinstance(training, GradientDescent):
        hint = " (the gradient flow of this setting is exact: dmft.saxe.mode_strength)" if isinstance(training, GradientFlow) else ""
        raise TypeError(f"`training` must be dmft.GradientDescent, got {type(training).__name__}{hint}")
    seeds = positive_int("seeds", seeds)
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"`seed` must be an integer, got {seed!r}")
    threads = DEFAULT_THREADS if threads is None else positive_int("threads", threads)
    xp = namespace(backend)
    _check_memory(network, seeds, training.steps, backend)
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    U, V = _task_modes(network, rng, output_modes, input_modes)
    initial = tuple(_initial_weights(network, seeds, rng, U, V))
    weights = [to_device(xp, w.copy()) for w in initial]  # a copy: `initial` is returned as it was
    s = np.asarray(network.singular_values)
    sigma = to_device(xp, U @ (s[:, None] * V.T))
    rates = [float(rate) for rate in training.rates]
    with np.errstate(over="ignore", invalid="ignore"), blas_threads(threads):
        strengths, losses, _, _ = _train(
            xp, weights, sigma, to_device(xp, U), to_device(xp, V), rates, training.steps, progress=progress
        )
    per_seed = np.moveaxis(to_host(xp, strengths), 1, 0)
    loss_per_seed = to_host(xp, losses).T
    return SaxeSimulation(
        network=network,
        training=training,
        mode_strength=per_seed.mean(axis=0),
        mode_strength_sem=_sem(per_seed),
        mode_strength_per_seed=per_seed,
        loss=loss_per_seed.mean(axis=0),
        loss_sem=_sem(loss_per_seed),
        loss_per_seed=loss_per_seed,
        output_modes=U,
        input_modes=V,
        initial_weights=initial,
        final_weights=tuple(np.array(to_host(xp, w)) for w in weights),
        info={
            "backend": backend, "seeds": seeds, "seed": seed, "threads": threads,
            "seconds": time.perf_counter() - started,
        },
    )


def mode_learning_time(trajectory, singular_values, fraction: float = 0.9) -> np.ndarray:
    """First time at which each mode strength reaches ``fraction * s_a``, linearly interpolated.

    With ``k`` the first step where ``u_a(k) >= fraction * s_a``: ``k - 1 + (target - u(k-1)) /
    (u(k) - u(k-1))`` (``0`` if already reached at step 0, NaN if never reached).

    Parameters
    ----------
    trajectory : ``(..., steps + 1, r)`` mode strengths, time on the second-to-last axis (e.g.
        ``SaxeSimulation.mode_strength_per_seed`` or ``.mode_strength``); a 1-d array is one mode.
    singular_values : ``(r,)`` (a scalar for one mode).
    fraction : in ``(0, 1]``.

    Returns
    -------
    ``(..., r)`` learning times in steps (a float for a 1-d trajectory).
    """
    fraction = positive("fraction", fraction)
    if fraction > 1:
        raise ValueError(f"`fraction` must lie in (0, 1], got {fraction}")
    u = np.asarray(trajectory, dtype=float)
    single = u.ndim == 1
    if single:
        u = u[:, None]
    s = np.atleast_1d(np.asarray(singular_values, dtype=float))
    if u.ndim < 2 or s.shape != (u.shape[-1],):
        raise ValueError(
            f"`singular_values` must have one entry per mode (last axis of `trajectory`), "
            f"got {s.shape} for a trajectory of shape {u.shape}"
        )
    target = fraction * s
    reached = u >= target
    first = np.argmax(reached, axis=-2)  # (..., r)
    ever = reached.any(axis=-2)
    after = np.take_along_axis(u, first[..., None, :], axis=-2)[..., 0, :]
    before = np.take_along_axis(u, np.maximum(first - 1, 0)[..., None, :], axis=-2)[..., 0, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        partial = np.where(first > 0, (target - before) / (after - before), 0.0)
    times = np.where(ever, np.maximum(first - 1, 0) + partial, np.nan)
    times = np.where(ever & (first == 0), 0.0, times)
    return float(times[0]) if single else times


# --------------------------------------------------------------------------------------------------
# depth study: orthogonal vs scaled Gaussian initialisation (Saxe et al. 2014)


@dataclass(frozen=True, eq=False)
class DepthStudy:
    """Learning time versus depth for orthogonal and scaled Gaussian initialisation.

    Attributes
    ----------
    depths : ``(K,)`` hidden-layer counts.
    orthogonal, gaussian : ``(K,)`` mean over seeds of the per-seed learning time (steps), the
        per-seed time being the mean over modes of the first (interpolated) step at which
        ``u_a >= fraction * s_a``. Networks whose loss diverged are left out (and counted in
        ``*_diverged``); NaN where a network that did not diverge had not learned within
        ``max_steps`` (the mean would then be unknown, not just larger).
    orthogonal_sem, gaussian_sem : ``(K,)`` standard errors over the seeds that were kept.
    orthogonal_per_seed, gaussian_per_seed : ``(K, seeds)``, NaN for diverged or unlearned networks.
    orthogonal_diverged, gaussian_diverged : ``(K,)`` number of diverged networks.
    parameters : the setting (width, singular values, base learning rate, gain, seeds, ...).
    seconds : wall-clock time of the study.
    """

    depths: np.ndarray
    orthogonal: np.ndarray
    orthogonal_sem: np.ndarray
    gaussian: np.ndarray
    gaussian_sem: np.ndarray
    orthogonal_per_seed: np.ndarray
    gaussian_per_seed: np.ndarray
    orthogonal_diverged: np.ndarray
    gaussian_diverged: np.ndarray
    parameters: Mapping[str, Any]
    seconds: float

    def table(self) -> str:
        """The study as a markdown table (learning times in steps, mean +- standard error)."""
        lines = [
            "| depth | N_w | learning rate | time, orthogonal (steps) | time, scaled Gaussian (steps) |",
            "|---:|---:|---:|---:|---:|",
        ]
        rate = self.parameters["base_learning_rate"]
        seeds = self.parameters["seeds"]

        def cell(mean, sem, diverged):
            text = f"{mean:.1f} +- {sem:.1f}"
            return text + (f" ({diverged}/{seeds} diverged)" if diverged else "")

        for k, depth in enumerate(self.depths):
            lines.append(
                f"| {depth} | {depth + 1} | {rate / (depth + 1):.4g} "
                f"| {cell(self.orthogonal[k], self.orthogonal_sem[k], self.orthogonal_diverged[k])} "
                f"| {cell(self.gaussian[k], self.gaussian_sem[k], self.gaussian_diverged[k])} |"
            )
        return "\n".join(lines)


def _learning_times_until_learned(
    network: SaxeNetwork, learning_rate: float, *, seeds: int, fraction: float, max_steps: int,
    backend: str, seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(seeds,)`` mode-averaged learning times (NaN: diverged or unlearned) and the diverged mask.

    Trains only until every mode of every (non-diverged) network has been learned.
    """
    xp = namespace(backend)
    _check_memory(network, seeds, max_steps, backend)
    rng = np.random.default_rng(seed)
    U, V = _task_modes(network, rng, None, None)
    weights = [to_device(xp, w) for w in _initial_weights(network, seeds, rng, U, V)]
    s = np.asarray(network.singular_values)
    sigma = to_device(xp, U @ (s[:, None] * V.T))
    with np.errstate(over="ignore", invalid="ignore"):
        strengths, _, last, diverged = _train(
            xp, weights, sigma, to_device(xp, U), to_device(xp, V), [learning_rate] * max_steps, max_steps,
            stop_at=to_device(xp, fraction * s), check_every=16, drop_diverged=True,
        )
    per_seed = np.moveaxis(to_host(xp, strengths[: last + 1, ...]), 1, 0)
    diverged = to_host(xp, diverged)
    with np.errstate(invalid="ignore"):
        times = mode_learning_time(per_seed, s, fraction).mean(axis=-1)
    return np.where(diverged, np.nan, times), diverged


def _mean_and_sem(per_seed: np.ndarray, diverged: np.ndarray) -> tuple[float, float]:
    kept = per_seed[~diverged]
    if kept.size == 0 or np.any(np.isnan(kept)):
        return float("nan"), float("nan")
    sem = kept.std(ddof=1) / np.sqrt(kept.size) if kept.size > 1 else float("nan")
    return float(kept.mean()), float(sem)


def depth_study(
    depths: Sequence[int] = (1, 2, 4, 8, 16, 32),
    *,
    width: int = 16,
    singular_values: Sequence[float] = (2.0, 1.0),
    base_learning_rate: float = 0.05,
    gain: float = 1.0,
    seeds: int = 16,
    fraction: float = 0.9,
    max_steps: int = 20000,
    backend: str = "numpy",
    seed: int = 0,
    progress: bool = False,
    threads: int | None = None,
) -> DepthStudy:
    """Learning time versus depth: orthogonal vs scaled Gaussian initialisation (THEORY.md section 3).

    For every depth, ``seeds`` networks with ``n_in = n_out = hidden = width`` learn
    ``Sigma_yx = U diag(singular_values) V^T`` by gradient descent at learning rate
    ``base_learning_rate / (depth + 1)`` (the ``1/N_w`` scaling), from (a) ``W_i = gain * Q_i``,
    ``Q_i`` Haar orthogonal, and (b) ``W_i ~ N(0, gain^2 / width)``. The learning time of a network is
    the mean over modes of the first step at which ``u_a = u_a^T W_total v_a`` reaches
    ``fraction * s_a``. Saxe et al. (2014): with orthogonal initialisation every partial product of
    layers is orthogonal (all singular values ``gain^k = 1``), so each layer's gradient is ``O(1)``
    at any depth and the ``1/N_w``-scaled learning time levels off; the product of Gaussian matrices
    has a singular spectrum that spreads with depth (Lyapunov exponents ``< 0`` below the top one:
    the directions to be learned start ever smaller), so the learning time keeps growing.

    Why these defaults (explored with NumPy on 2 cores; the numbers are steps):

    * square layers, ``width = 16``: orthogonal products are then exactly orthogonal (with
      rectangular layers a semi-orthogonal product is not an isometry); the cost per step is
      Python overhead (~20 us per batched matmul), so the study runs in seconds;
    * a rank-2 task ``s = (2, 1)``: each extra mode needs one more singular value of the Gaussian
      product to grow from ``~exp(N_w lambda_r)`` (``lambda_r < 0`` the r-th Lyapunov exponent);
      with rank 4 some Gaussian networks at depth 32 had not learned after 2500 steps at 0.1;
    * ``base_learning_rate = 0.05``: the same rate must serve both initialisations, and the
      sharpness of Gaussian networks is heavy-tailed (partial products reach norms of several;
      ``sum_i |W_>i|^2 |W_<i|^2 / N_w`` has median 79 and maximum 1600 over 200 draws at depth 32,
      against exactly 1 for orthogonal). At 0.1, 1-3 of 16 Gaussian networks diverged at depth 16-32;
      at 0.05 about one in fifty does (2 of 120 at depth 32). Diverged networks are counted and
      left out rather than hidden. At this rate the times are in the gradient-flow limit: halving
      the rate doubles them (orthogonal, depth 32: 44.2 steps at 0.1, 88.0 at 0.05);
    * 16 seeds: standard errors of ~5 % (orthogonal) and ~10 % (Gaussian, wider spread);
    * training stops as soon as every mode of every network has been learned.

    Result of the defaults: orthogonal 59, 65, 77, 83, 88, 88 steps for depths 1..32 (and 75, 84,
    81, 87, 88 at depths 8..128 with 64 seeds: it levels off, slowly, like ``1/N_w``); scaled
    Gaussian 67, 82, 110, 184, 325, 691, roughly ``~ 20 N_w`` at large depth.

    Parameters
    ----------
    depths : hidden-layer counts (integers >= 1).
    width, singular_values, base_learning_rate, gain, seeds, fraction, backend, seed : as above.
    max_steps : cap on the steps per network; a network that has not learned by then gives NaN.
    progress : show a tqdm progress bar over the (depth, initialisation) runs.
    threads : BLAS threads during the study (``None``: one).

    Returns
    -------
    :class:`DepthStudy` (``.table()`` prints it).
    """
    depths = tuple(positive_int("depths", d, minimum=0) for d in depths)
    if not depths:
        raise ValueError("`depths` must contain at least one depth")
    base_learning_rate = positive("base_learning_rate", base_learning_rate)
    positive_int("seeds", seeds)
    positive_int("max_steps", max_steps)
    fraction = positive("fraction", fraction)
    if fraction >= 1:
        raise ValueError(f"`fraction` must lie in (0, 1) (s is reached only as t -> infinity), got {fraction}")
    started = time.perf_counter()
    inits = ("orthogonal", "gaussian")
    times = {init: np.empty((len(depths), seeds)) for init in inits}
    diverged = {init: np.zeros((len(depths), seeds), dtype=bool) for init in inits}
    runs = [(k, depth, init) for k, depth in enumerate(depths) for init in inits]
    if progress:
        from tqdm.auto import tqdm

        runs = tqdm(runs, desc="depth study", unit="run")
    with blas_threads(threads):
        for k, depth, init in runs:
            network = SaxeNetwork(
                singular_values=tuple(singular_values), depth=depth, hidden=width, n_in=width,
                n_out=width, init=init, gain=gain,
            )
            times[init][k], diverged[init][k] = _learning_times_until_learned(
                network, base_learning_rate / (depth + 1), seeds=seeds, fraction=fraction,
                max_steps=max_steps, backend=backend, seed=seed,
            )
    summary = {
        init: np.array([_mean_and_sem(times[init][k], diverged[init][k]) for k in range(len(depths))])
        for init in inits
    }
    return DepthStudy(
        depths=np.array(depths),
        orthogonal=summary["orthogonal"][:, 0],
        orthogonal_sem=summary["orthogonal"][:, 1],
        gaussian=summary["gaussian"][:, 0],
        gaussian_sem=summary["gaussian"][:, 1],
        orthogonal_per_seed=times["orthogonal"],
        gaussian_per_seed=times["gaussian"],
        orthogonal_diverged=diverged["orthogonal"].sum(axis=1),
        gaussian_diverged=diverged["gaussian"].sum(axis=1),
        parameters={
            "width": width, "singular_values": tuple(float(v) for v in singular_values),
            "base_learning_rate": base_learning_rate, "gain": gain, "seeds": seeds,
            "fraction": fraction, "max_steps": max_steps, "backend": backend, "seed": seed,
        },
        seconds=time.perf_counter() - started,
    )
