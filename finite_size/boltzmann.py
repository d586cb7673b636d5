"""Finite-N Langevin training of spherical Boltzmann machines (docs/spherical.md, "Dynamics").

The coupled system of :class:`dmft.Langevin`, for ``seeds`` independent problems at once::

    dW/dt = C/2 - (K/2N) x x^T - (gamma/2) W + Omega / sqrt(eta N)     (Omega: GOE white noise)
    dx/dt = nu (W x - kappa x) + sqrt(2 nu / beta) xi                   (on |x|^2 = N)

* Couplings: the linear part is integrated exactly (an Ornstein-Uhlenbeck step): over a step ``dt``
  ``W <- a W + b F + sd G`` with ``a = exp(-gamma dt / 2)``, ``b = 2 (1 - a) / gamma``, the forcing
  ``F = C/2 - (K/2N) x x^T`` (trapezoidal over the step) and ``G`` a GOE matrix of off-diagonal
  variance 1, ``sd^2 = (1 - exp(-gamma dt)) / (gamma eta N)``: the exact transition of the noise.
  ``W(0)`` is the stationary GOE of off-diagonal variance ``J^2 / N``, ``J^2 = 1/(gamma eta)``.
* Chain: a projected stochastic Heun step. The drift ``nu (W x - (x.Wx/N) x)`` is tangent to the
  sphere; predictor and corrector share the noise, and each is projected back on ``|x|^2 = N``
  (the projection supplies the Ito term ``nu (N - 1) / (N beta)`` of the multiplier). Couplings and
  chain form one Heun step of the joint system (additive noise: weak order 2).
* ``chain_speed = inf``: the negative phase is the exact equilibrium of the current couplings
  (mean spherical model): ``<x x^T>/N = V diag(1/(beta N (mu - lambda_i))) V^T`` with
  ``sum_i 1/(beta (mu - lambda_i)) = N``, from an eigendecomposition at each Heun stage.
* Data: the ``K`` data directions are the first ``K`` coordinates (the law of everything else is
  rotation invariant), ``C = diag(c_1..c_K, 0, ...)``. A :class:`dmft.SpikedTeacher` draws ``K``
  samples from the teacher ``W* = omega* u u^T`` (``beta = 1``) exactly (the overlap ``y = x.u/N`` has
  density ``~ exp(N omega* y^2 / 2) (1 - y^2)^((N-3)/2)``, sampled by inversion on a fine grid),
  and the frame is rotated so that their covariance's eigenvectors are the first ``K`` coordinates
  and the spike's remaining part the ``(K+1)``-th.

Observables (arrays named as in :func:`dmft.solve`'s result) and the learning curves, from the
couplings' eigendecomposition (mean spherical model; docs/spherical.md "Learning curves")::

    log Z / N   = (beta mu - 1 - (1/N) sum_i ln(beta (mu - lambda_i))) / 2
    train loss  = -(beta / 2K) sum_a c_a W_aa + log Z / N                      (NLL per sample and site,
                                                                               relative to the uniform law)
    forward KL  = ln(omega*)/2 - (beta/2) [m* u.Wu + (1 - m*)(tr W - u.Wu)/(N - 1)] + log Z / N
    reverse KL  = (beta mu - 1)/2 - log Z / N - (omega*/2) u.P u + (omega* - ln omega* - 1)/2
"""

from __future__ import annotations

import math
import time as _time

import numpy as np

from dmft._validate import positive, positive_int
from dmft.boltzmann import (
    forward_kl,
    reverse_kl,
    DataCovariance,
    DynamicsDivergenceError,
    Langevin,
    SphericalBoltzmann,
    SpikedTeacher,
    check_configuration,
)
from dmft.result import Result

from ._backend import add_outer, array_module, check_backend, to_numpy

__all__ = ["simulate_boltzmann", "sample_teacher_data", "equilibrium_multiplier", "spectral_curves"]

SPECTRUM_CHOICES = ("all", "final", "none")
DEFAULT_REPORTS = 41


def simulate_boltzmann(
    model: SphericalBoltzmann,
    data: DataCovariance | SpikedTeacher,
    training: Langevin,
    *,
    dim: int,
    seeds: int = 8,
    backend: str = "numpy",
    seed: int = 0,
    step: float | None = None,
    spectrum: str = "all",
    progress: bool = False,
    threads: int | None = 1,
) -> Result:
    """Train ``seeds`` spherical Boltzmann machines of size ``N = dim`` by Langevin dynamics.

    Parameters
    ----------
    model, data, training : :class:`dmft.SphericalBoltzmann`, :class:`dmft.DataCovariance` or
        :class:`dmft.SpikedTeacher`, :class:`dmft.Langevin` (as for :func:`dmft.solve`).
    dim : ``N``, at least ``K + 2``.
    seeds : independent problems (couplings, chain, teacher samples), run as one batched array
        computation.
    backend : ``"numpy"`` or ``"cupy"``. The random numbers are drawn on the host with NumPy
        (every backend then trains the very same machines) except the GOE increments on CuPy,
        which are drawn on the device (they are ``N^2`` numbers per step).
    seed : seeds the whole run.
    step : the time step ``dt``; default ``0.05 / max(nu, 1)`` (``0.05`` for ``nu = inf``). Each
        interval between report times is cut into equal steps no longer than ``step``.
    spectrum : when to diagonalise the couplings: ``"all"`` report times (the learning curves at
        every time; one ``O(N^3)`` eigendecomposition per seed and time), ``"final"`` (curves NaN
        before the last time) or ``"none"``.
    progress : a tqdm progress bar over report intervals.
    threads : BLAS threads during the run (``None``: leave as is); 1 is fastest on shared cores.

    Returns
    -------
    dmft.Result, ``method="simulation"``, at ``training.save_at`` (default: 41 equally spaced
    times). ``test_loss``: forward KL from the teacher per site (``SpikedTeacher``), the training
    negative log-likelihood otherwise (no held-out distribution); ``train_loss``: the training NLL
    per sample and site relative to the uniform law; both with standard errors over seeds.
    ``arrays``: ``s`` ``(K, times)`` mean of ``|s_a| = |x.e_a| / sqrt(N)`` (for ``nu = inf``:
    ``sqrt(<s_a^2>)``), ``s_per_seed`` ``(seeds, K, times)`` signed; ``multiplier`` ``kappa / nu``
    (``= x.Wx/N + (N-1)/(N beta)``; the equilibrium ``mu`` for ``nu = inf``); ``Q`` ``(times, times)``
    ``x(t).x(t')/N`` (finite ``nu``); ``top_eigenvalue``, ``top_overlap`` (``(v_1.e_1)^2``),
    ``equilibrium_multiplier`` (``mu`` of the current couplings), ``reverse_kl``, ``forward_kl``
    (teacher only); ``eigenvalues`` ``(seeds, times, k)`` the top ``k = K + 2`` eigenvalues,
    ``overlaps`` ``(seeds, times, k, K)`` squared overlaps of their eigenvectors with the data
    directions (``teacher_overlaps`` ``(seeds, times, k)`` with the spike); ``data_spectrum``
    ``(seeds, K)``. Every curve has a ``*_sem`` twin (standard error over seeds).

    Raises
    ------
    ValueError : bad sizes, step or spectrum choice.
    dmft.boltzmann.DynamicsDivergenceError : the couplings or the chain became non-finite (names
        the time; lower ``step``).
    """
    dim = positive_int("dim", dim)
    seeds = positive_int("seeds", seeds)
    seed = positive_int("seed", seed, minimum=0)
    check_backend(backend, ("numpy", "cupy"))
    if spectrum not in SPECTRUM_CHOICES:
        raise ValueError(f"`spectrum` must be one of {SPECTRUM_CHOICES}, got {spectrum!r}")
    check_configuration(model, data, training)
    count = data.resolve().samples
    if dim < count + 2:
        raise ValueError(f"`dim` must be at least K + 2 = {count + 2} (K data directions), got {dim}")
    start = training.start(data)
    nu = training.chain_speed
    if step is None:
        step = 0.05 / max(nu, 1.0) if math.isfinite(nu) else 0.05
    step = positive("step", step)
    times = np.asarray(training.save_at) if training.save_at is not None else np.linspace(0.0, training.time, DEFAULT_REPORTS)

    if threads is None:
        return _run(model, data, training, dim, seeds, backend, seed, step, spectrum, progress, times, start)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        return _run(model, data, training, dim, seeds, backend, seed, step, spectrum, progress, times, start)


class _Machines:
    """The batched state: couplings ``W`` ``(S, N, N)``, chain ``x`` ``(S, N)`` (finite ``nu``),
    data spectra ``c`` ``(S, K)``, and the random streams."""

    def __init__(self, model, data, training, dim, seeds, backend, seed, start):
        self.xp = xp = array_module(backend)
        self.backend = backend
        self.N, self.S = dim, seeds
        self.beta = model.inverse_temperature
        self.gamma = training.prior_precision
        self.eta = training.likelihood_weight
        self.nu = training.chain_speed
        self.J2 = training.noise_variance
        data_rng, coupling_rng, chain_rng, self.noise_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
        )
        if isinstance(data, SpikedTeacher):
            self.c, self.teacher = sample_teacher_data(data, dim, seeds, data_rng)
        else:
            self.c = np.tile(np.asarray(data.eigenvalues), (seeds, 1))
            self.teacher = None
        self.K = self.c.shape[1]
        self.c_device = xp.asarray(self.c)
        self.W = xp.zeros((seeds, dim, dim), dtype=xp.float64)
        if self.J2 > 0:
            self._add_goe(self.W, self._goe(coupling_rng, math.sqrt(self.J2 / dim)))
        self.x = None
        if math.isfinite(self.nu):
            bulk = chain_rng.standard_normal((seeds, dim))
            bulk[:, : self.K] = 0.0
            bulk *= math.sqrt(max(1.0 - float(np.sum(start**2)), 0.0) * dim) / np.linalg.norm(bulk, axis=1, keepdims=True)
            bulk[:, : self.K] = math.sqrt(dim) * start
            self.x = xp.asarray(bulk)
            self._chain_rng = chain_rng

    # -- random numbers ------------------------------------------------------------------------
    def _normal(self, rng, shape):
        """Standard normals: from the host stream ``rng``, or CuPy's generator on the device."""
        if self.backend == "cupy":
            return self.xp.random.standard_normal(shape)
        return self.xp.asarray(rng.standard_normal(shape))

    def _goe(self, rng, scale: float):
        """``scale (U + U^T)``: a GOE matrix of off-diagonal variance ``scale^2`` (diagonal
        ``2 scale^2``), from ``N (N + 1) / 2`` normals ``U`` on and above the diagonal (the
        diagonal ones scaled by ``1/sqrt(2)``). Returned as ``U`` (the caller adds ``U + U^T``)."""
        S, N = self.S, self.N
        if self.backend == "cupy":
            g = self.xp.random.standard_normal((S, N, N))
            return self.xp.triu(g) * scale - self.xp.triu(self.xp.tril(g)) * (scale * (1 - 2**-0.5))
        if not hasattr(self, "_upper"):
            rows, cols = np.triu_indices(N)
            self._upper = rows * N + cols
            self._diagonal_scale = np.where(rows == cols, 2**-0.5, 1.0)
            self._buffer = np.zeros((S, N, N))
        values = rng.standard_normal((S, self._upper.size))
        values *= scale * self._diagonal_scale
        self._buffer.reshape(S, -1)[:, self._upper] = values
        return self.xp.asarray(self._buffer)

    def _add_goe(self, W, upper) -> None:
        """``W += U + U^T`` in place."""
        W += upper
        W += upper.mT

    # -- pieces of a step ----------------------------------------------------------------------
    def drift(self, x, W):
        """``nu (W x - (x.Wx/N) x)`` and ``x.Wx / N`` per seed."""
        xp = self.xp
        wx = xp.matmul(W, x[:, :, None])[:, :, 0]
        energy = xp.sum(x * wx, axis=1) / self.N
        return self.nu * (wx - energy[:, None] * x), energy

    def project(self, x):
        xp = self.xp
        return x * (math.sqrt(self.N) / xp.sqrt(xp.sum(x * x, axis=1)))[:, None]

    def add_data(self, W, scale: float) -> None:
        """``W += scale * C`` (``C`` diagonal on the first ``K`` coordinates)."""
        xp = self.xp
        K = self.K
        eye = xp.eye(K, dtype=xp.float64)
        W[:, :K, :K] = W[:, :K, :K] + scale * (self.c_device[:, :, None] * eye[None, :, :])

    def ou_start(self, dt: float):
        """``a``, ``b`` and the noise matrix of an exact Ornstein-Uhlenbeck step of length ``dt``."""
        a = math.exp(-self.gamma * dt / 2)
        b = 2.0 * (1.0 - a) / self.gamma
        noise = None
        if self.J2 > 0:
            sd = math.sqrt(-math.expm1(-self.gamma * dt) / (self.gamma * self.eta * self.N))
            noise = self._goe(self.noise_rng, sd)
        return a, b, noise

    def chain_step(self, dt: float) -> None:
        """One joint Heun step of ``(W, x)`` (module docstring)."""
        xp, N, K = self.xp, self.N, self.K
        x, W = self.x, self.W
        f0, _ = self.drift(x, W)
        # the projection of x + kick contracts x by (1 + |kick|^2/N)^{-1/2}; a kick variance of
        # exp(sigma^2 dt) - 1 (sigma^2 = 2 nu / beta, times (N-1)/N) makes that contraction, and the
        # tangential spread it leaves, those of Brownian motion on the sphere over dt (to O(1/N)),
        # instead of off by O(dt^2) per step (which made the plain kick only first order)
        spread = math.expm1(2 * self.nu / self.beta * dt * (N - 1) / N)
        kick = self._normal(self._chain_rng, (self.S, N)) * math.sqrt(spread)
        x_pred = self.project(x + f0 * dt + kick)
        a, b, noise = self.ou_start(dt)
        W *= a
        if noise is not None:
            self._add_goe(W, noise)
        self.add_data(W, b / 2)
        add_outer(W, -b * K / (2 * N), x, x)  # predictor: forcing at the start of the step
        f1, _ = self.drift(x_pred, W)
        add_outer(W, -b * K / (4 * N), x_pred, x_pred)  # corrector: trapezoidal forcing
        add_outer(W, b * K / (4 * N), x, x)
        self.x = self.project(x + (f0 + f1) * (dt / 2) + kick)

    def equilibrium_step(self, dt: float, P0):
        """One Heun step of ``W`` with the exact equilibrium negative phase; returns ``P(W')``."""
        K = self.K
        a, b, noise = self.ou_start(dt)
        W = self.W
        W *= a
        if noise is not None:
            self._add_goe(W, noise)
        self.add_data(W, b / 2)
        W -= (b * K / 2) * P0
        P1 = self.equilibrium(W)[0]
        W -= (b * K / 4) * (P1 - P0)
        return self.equilibrium(W)

    def equilibrium(self, W):
        """``P = <x x^T>/N`` of the mean spherical model at ``beta``, with ``mu`` and the
        eigendecomposition ``(lambda, V)`` of ``W``."""
        xp = self.xp
        decomposition = xp.linalg.eigh(W)
        values, vectors = decomposition.eigenvalues, decomposition.eigenvectors
        host_values = to_numpy(values)
        if not np.all(np.isfinite(host_values)):
            raise FloatingPointError("non-finite couplings")
        mu = equilibrium_multiplier(host_values, self.beta)
        weights = 1.0 / (self.beta * self.N * (mu[:, None] - host_values))
        P = xp.matmul(vectors * xp.asarray(weights)[:, None, :], vectors.mT)
        return P, mu, host_values, vectors


def sample_teacher_data(data: SpikedTeacher, dim: int, seeds: int, rng: np.random.Generator):
    """``K = data.samples`` samples of the teacher ``W* = omega* u u^T`` (``beta = 1``) per seed, in
    the frame where their covariance's eigenvectors are the first ``K`` coordinates.

    Returns ``c`` ``(seeds, K)`` (descending, summing to ``K``) and ``u`` ``(seeds, K + 1)``: the
    spike's coordinates on the data directions, then on the ``(K+1)``-th coordinate (its part
    orthogonal to the data).
    """
    K, omega, N = data.samples, data.strength, dim
    # overlap density on [0, 1) (the sign is a fair coin): exp(N omega y^2/2) (1 - y^2)^((N-3)/2)
    grid = np.linspace(0.0, 1.0, 200_001)[:-1]
    log_density = N * omega * grid**2 / 2 + (N - 3) / 2 * np.log1p(-grid**2)
    density = np.exp(log_density - log_density.max())
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    cdf /= cdf[-1]
    c = np.empty((seeds, K))
    u = np.zeros((seeds, K + 1))
    for s in range(seeds):
        y = np.interp(rng.random(K), cdf, grid) * rng.choice([-1.0, 1.0], size=K)
        z = rng.standard_normal((K, N - 1))
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        root = np.sqrt(1 - y**2)
        gram = np.outer(y, y) + np.outer(root, root) * (z @ z.T)
        values, vectors = np.linalg.eigh(gram)
        order = np.argsort(values)[::-1]
        values, vectors = values[order], vectors[:, order]
        c[s] = values * (K / values.sum())  # |x_mu|^2 = N exactly: the trace is K up to round-off
        # e_a = X^T U_a / sqrt(N c_a)  =>  u . e_a = (y . U_a) / sqrt(c_a)
        u[s, :K] = (y @ vectors) / np.sqrt(values)
        u[s, K] = math.sqrt(max(1.0 - float(np.sum(u[s, :K] ** 2)), 0.0))
    return c, u


def equilibrium_multiplier(eigenvalues: np.ndarray, beta: float) -> np.ndarray:
    """``mu > lambda_max`` with ``sum_i 1/(beta (mu - lambda_i)) = N`` for each row of
    ``eigenvalues`` ``(S, N)``: Newton's method on ``1/g(mu)``, which is concave and increasing
    (so the iteration from the right converges monotonically), to round-off."""
    eigenvalues = np.atleast_2d(eigenvalues)
    N = eigenvalues.shape[1]
    top = eigenvalues.max(axis=1)
    # h(mu) = 1/g(mu) - 1 with g = sum_i 1/(beta N (mu - lambda_i)): 1/g is a harmonic mean of
    # affine functions, hence concave, so Newton's method started left of the root (h < 0, just
    # right of lambda_max) climbs to it monotonically, without overshooting.
    mu = top + 1e-9 * np.maximum(1.0, np.abs(top))
    for _ in range(200):
        gaps = mu[:, None] - eigenvalues
        g = np.sum(1.0 / gaps, axis=1) / (beta * N)
        dg = -np.sum(1.0 / gaps**2, axis=1) / (beta * N)
        new = mu - (1.0 / g - 1.0) * g**2 / (-dg)
        converged = (np.abs(new - mu) <= 1e-14 * np.maximum(1.0, np.abs(mu))) | (np.abs(g - 1.0) <= 1e-14)
        mu = new
        if np.all(converged):
            break
    else:
        raise FloatingPointError("the equilibrium multiplier did not converge in 200 Newton steps")
    return mu


def spectral_curves(eigenvalues, top_vectors_rows, W_block, trace, c, teacher, beta: float, omega: float | None):
    """Learning curves of one set of couplings per seed from their spectrum (module docstring).

    ``eigenvalues`` ``(S, N)``; ``top_vectors_rows`` ``(S, K + 1, N)``: the first ``K + 1``
    coordinates of every eigenvector; ``W_block`` ``(S, K + 1, K + 1)``; ``trace`` ``(S,)``.
    Returns a dict of ``(S,)`` arrays: ``equilibrium_multiplier``, ``log_partition``,
    ``train_loss`` and, with a teacher, ``forward_kl``, ``reverse_kl``.
    """
    S, N = eigenvalues.shape
    K = c.shape[1]
    mu = equilibrium_multiplier(eigenvalues, beta)
    log_z = 0.5 * (beta * mu - 1.0 - np.mean(np.log(beta * (mu[:, None] - eigenvalues)), axis=1))
    data_energy = np.einsum("sa,saa->s", c, W_block[:, :K, :K])
    out = {
        "equilibrium_multiplier": mu,
        "log_partition": log_z,
        "train_loss": -beta * data_energy / (2 * K) + log_z,
    }
    if teacher is not None:
        m = 1.0 - 1.0 / omega
        uWu = np.einsum("si,sij,sj->s", teacher, W_block, teacher)
        out["forward_kl"] = forward_kl(omega, beta, m * uWu + (1 - m) * (trace - uWu) / (N - 1), log_z)
        projections = np.einsum("si,sin->sn", teacher, top_vectors_rows)  # u . v_n
        uPu = np.sum(projections**2 / (beta * N * (mu[:, None] - eigenvalues)), axis=1)
        out["reverse_kl"] = reverse_kl(omega, beta, mu, log_z, uPu)
    return out


def _run(model, data, training, dim, seeds, backend, seed, step, spectrum, progress, times, start) -> Result:
    started = _time.perf_counter()
    machines = _Machines(model, data, training, dim, seeds, backend, seed, start)
    xp, K, N, S = machines.xp, machines.K, dim, seeds
    beta = model.inverse_temperature
    omega = data.strength if isinstance(data, SpikedTeacher) else None
    equilibrium = not math.isfinite(training.chain_speed)
    top = min(K + 2, N)
    T = len(times)

    s_record = np.full((S, K, T), np.nan)
    multiplier = np.full((S, T), np.nan)
    chain = None if equilibrium else np.full((S, T, N), np.nan)
    curve_names = ["equilibrium_multiplier", "log_partition", "train_loss"] + (["forward_kl", "reverse_kl"] if omega else [])
    curves = {name: np.full((S, T), np.nan) for name in curve_names}
    eigen_top = np.full((S, T, top), np.nan)
    overlaps = np.full((S, T, top, K), np.nan)
    teacher_overlaps = np.full((S, T, top), np.nan) if omega else None

    P = None
    decomposition = None
    if equilibrium:
        P, mu, values, vectors = machines.equilibrium(machines.W)
        decomposition = (mu, values, vectors)

    def record(index: int) -> None:
        nonlocal decomposition
        if equilibrium:
            mu, values, vectors = decomposition
            diag = to_numpy(xp.linalg.diagonal(P))[:, :K]
            s_record[:, :, index] = np.sqrt(np.maximum(diag, 0.0))
            multiplier[:, index] = mu
        else:
            x = to_numpy(machines.x)
            s_record[:, :, index] = x[:, :K] / math.sqrt(N)
            energy = to_numpy(machines.drift(machines.x, machines.W)[1])
            multiplier[:, index] = energy + (N - 1) / (N * beta)
            chain[:, index] = x
        if spectrum == "all" or (spectrum == "final" and index == T - 1):
            if equilibrium:
                _, values, vectors = decomposition
            else:
                dec = xp.linalg.eigh(machines.W)
                values, vectors = to_numpy(dec.eigenvalues), dec.eigenvectors
            rows = to_numpy(vectors[:, : K + 1, :])
            values = np.asarray(values)
            block = to_numpy(machines.W[:, : K + 1, : K + 1])
            trace = to_numpy(xp.linalg.trace(machines.W)) if omega else None
            result = spectral_curves(values, rows, block, trace, machines.c, machines.teacher, beta, omega)
            for name in curve_names:
                curves[name][:, index] = result[name]
            eigen_top[:, index] = values[:, ::-1][:, :top]
            overlaps[:, index] = np.transpose(rows[:, :K, ::-1][:, :, :top] ** 2, (0, 2, 1))
            if omega:
                teacher_overlaps[:, index] = np.einsum("si,sin->sn", machines.teacher, rows[:, :, ::-1][:, :, :top]) ** 2

    now = 0.0
    steps_taken = 0
    intervals = range(T)
    if progress:
        from tqdm.auto import tqdm

        intervals = tqdm(intervals, desc="simulate", unit="report")
    for index in intervals:
        gap = float(times[index]) - now
        if gap > 0:
            count = max(1, math.ceil(gap / step - 1e-9))
            dt = gap / count
            for _ in range(count):
                try:
                    if equilibrium:
                        P, mu, values, vectors = machines.equilibrium_step(dt, P)
                        decomposition = (mu, values, vectors)
                    else:
                        machines.chain_step(dt)
                except (FloatingPointError, np.linalg.LinAlgError) as error:
                    raise DynamicsDivergenceError("simulated couplings", now, "step", step) from error
                now += dt
                steps_taken += 1
            now = float(times[index])
            _check_finite(machines, now, step)
        record(index)

    arrays = {
        "s": np.mean(np.abs(s_record), axis=0),
        "s_sem": _sem(np.abs(s_record)),
        "s_per_seed": s_record,
        "multiplier": multiplier.mean(axis=0),
        "multiplier_sem": _sem(multiplier),
        "data_spectrum": machines.c,
    }
    if chain is not None:
        grams = np.einsum("sti,sui->stu", chain, chain) / N
        arrays["Q"] = grams.mean(axis=0)
        arrays["Q_sem"] = _sem(grams)
    if spectrum != "none":
        arrays["eigenvalues"] = eigen_top
        arrays["overlaps"] = overlaps
        arrays["top_eigenvalue"] = eigen_top[:, :, 0].mean(axis=0)
        arrays["top_eigenvalue_sem"] = _sem(eigen_top[:, :, 0])
        arrays["top_overlap"] = overlaps[:, :, 0, 0].mean(axis=0)
        arrays["top_overlap_sem"] = _sem(overlaps[:, :, 0, 0])
        for name in curve_names:
            if name != "train_loss":
                arrays[name] = curves[name].mean(axis=0)
                arrays[f"{name}_sem"] = _sem(curves[name])
        if omega:
            arrays["teacher_overlaps"] = teacher_overlaps
            arrays["teacher"] = machines.teacher
    train = curves["train_loss"]
    test = curves["forward_kl"] if omega else train
    return Result(
        model=model,
        data=data,
        training=training,
        test_loss=test.mean(axis=0),
        train_loss=train.mean(axis=0),
        test_loss_sem=_sem(test),
        train_loss_sem=_sem(train),
        method="simulation",
        arrays=arrays,
        time=times,
        info={
            "dim": N,
            "seeds": S,
            "seed": seed,
            "backend": backend,
            "step": step,
            "steps": steps_taken,
            "spectrum": spectrum,
            "wall_time_s": _time.perf_counter() - started,
        },
    )


def _check_finite(machines: _Machines, now: float, step: float) -> None:
    xp = machines.xp
    bad = not bool(xp.all(xp.isfinite(machines.W)))
    if machines.x is not None:
        bad = bad or not bool(xp.all(xp.isfinite(machines.x)))
    if bad:
        raise DynamicsDivergenceError("simulated couplings or chain", now, "step", step)


def _sem(per_seed: np.ndarray) -> np.ndarray:
    seeds = per_seed.shape[0]
    if seeds < 2:
        return np.full(per_seed.shape[1:], np.nan)
    return per_seed.std(axis=0, ddof=1) / math.sqrt(seeds)
