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
from dmft.training import GradientDescent

from ._backend import array_module, to_numpy

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
        value per mode; depth 0 allows any real).
    gain : scale of orthogonal and Gaussian initialisation, ``> 0``.
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
    info : backend, seeds, seed, wall-clock seconds.
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
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> np.ndarray:
        """Step index of every curve entry."""
        return np.arange(self.loss.shape[0])

    @property
    def tau(self) -> float:
        """Gradient-flow time constant ``1 / learning_rate`` (time = step count)."""
        return 1.0 / self.training.learning_rate

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
    for name, given, dim in (("output_modes", output_modes, network.n_out), ("input_modes", input_modes, network.n_in)):
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


def _train(xp, weights, sigma, U, V, learning_rate: float, steps: int, *, stop_at=None, check_every: int = 64):
    """Full-batch gradient descent on ``(1/2)|Sigma_yx - W_total|_F^2``, all seeds at once.

    ``weights``: list of ``(seeds, rows, cols)`` device arrays, updated in place. ``stop_at``:
    optional ``(r,)`` device array of targets; training stops at the first check after every seed's
    every mode has reached its target once. Returns ``(u, loss, last_step)`` with ``u`` of shape
    ``(steps + 1, seeds, r)`` and ``loss`` ``(steps + 1, seeds)`` (filled up to ``last_step``).
    """
    seeds = weights[0].shape[0]
    rank = U.shape[1]
    strengths = xp.empty((steps + 1, seeds, rank))
    losses = xp.empty((steps + 1, seeds))
    reached = None if stop_at is None else xp.zeros((seeds, rank), dtype=bool)
    last_checked = 0
    for step in range(steps + 1):
        prefixes = [weights[0]]  # prefixes[i] = W_{i+1} ... W_1 (0-based layer i)
        for w in weights[1:]:
            prefixes.append(w @ prefixes[-1])
        total = prefixes[-1]
        error = sigma - total
        strengths[step] = xp.einsum("oa,soi,ia->sa", U, total, V)
        losses[step] = (error * error).sum(axis=(-2, -1))
        if reached is not None:
            reached |= strengths[step] >= stop_at
        if step == steps or (step + 1) % check_every == 0:
            window = losses[last_checked : step + 1]
            if not bool(xp.all(xp.isfinite(window))):
                bad = last_checked + int(xp.argmax(~xp.isfinite(window).all(axis=1)))
                raise DivergenceError("Saxe network loss", bad, learning_rate)
            last_checked = step + 1
            if reached is not None and bool(reached.all()):
                return strengths, losses, step
        if step == steps:
            break
        # backward pass; layer i's update uses only the old W_{>i} (already in `backward`) and
        # the old W_{<i} (in `prefixes`), so updating in place as we go down is exact simultaneous GD
        backward = error  # (W_{>i})^T (Sigma_yx - W_total) for the current layer i
        for i in range(len(weights) - 1, -1, -1):
            gradient = backward if i == 0 else backward @ xp.swapaxes(prefixes[i - 1], -1, -2)
            if i > 0:
                backward = xp.swapaxes(weights[i], -1, -2) @ backward
            weights[i] += learning_rate * gradient
    return strengths, losses, steps


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
) -> SaxeSimulation:
    """Train ``seeds`` independent networks by full-batch gradient descent (THEORY.md section 3).

    ``W_i <- W_i + eta (W_{>i})^T (Sigma_yx - W_total) (W_{<i})^T``, ``Sigma_yx = U diag(s) V^T``,
    ``eta = training.learning_rate``, ``training.steps`` steps; compare with
    ``dmft.saxe.mode_strength(s, u0, t, depth, tau=1/eta)``.

    Parameters
    ----------
    network : the architecture, task and initialisation.
    training : ``dmft.GradientDescent(learning_rate, steps)``.
    seeds : number of independent networks (batched, no loop over seeds).
    backend : ``"numpy"`` or ``"cupy"``.
    seed : seeds the task's singular vectors (unless given) and the initial weights.
    output_modes, input_modes : optional ``U`` ``(n_out, r)`` and ``V`` ``(n_in, r)`` with
        orthonormal columns; Haar-random by default.

    Returns
    -------
    :class:`SaxeSimulation`.

    Raises
    ------
    dmft.DivergenceError : the loss became non-finite (names the step; lower the learning rate).
    """
    if not isinstance(network, SaxeNetwork):
        raise TypeError(f"`network` must be a finite_size.saxe.SaxeNetwork, got {type(network).__name__}")
    if not isinstance(training, GradientDescent):
        raise TypeError(f"`training` must be dmft.GradientDescent, got {type(training).__name__}")
    seeds = positive_int("seeds", seeds)
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"`seed` must be an integer, got {seed!r}")
    xp = array_module(backend)
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    U, V = _task_modes(network, rng, output_modes, input_modes)
    weights = [xp.asarray(w) for w in _initial_weights(network, seeds, rng, U, V)]
    s = np.asarray(network.singular_values)
    sigma = xp.asarray(U @ (s[:, None] * V.T))
    with np.errstate(over="ignore", invalid="ignore"):
        strengths, losses, _ = _train(
            xp, weights, sigma, xp.asarray(U), xp.asarray(V), training.learning_rate, training.steps
        )
    per_seed = np.moveaxis(to_numpy(strengths), 1, 0)
    loss_per_seed = to_numpy(losses).T
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
        info={"backend": backend, "seeds": seeds, "seed": seed, "seconds": time.perf_counter() - started},
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
