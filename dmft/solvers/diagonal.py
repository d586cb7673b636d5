"""DMFT of diagonal linear networks: forward-in-time Monte Carlo over sites (THEORY.md section 4.1).

The single-site process of a diagonal network ``beta_j = a_j^L - b_j^L`` is nonlinear, so the
order parameters (``C_v``, ``R_v`` and the data-side ``R_Delta``, ``C_Delta``) are estimated from
``M`` sampled sites, one step at a time (everything is causal). The site loop, its
representation of the Gaussian field (orthonormal innovation coordinates, which never invert the
near-singular ``C_Delta``), the Stein estimate of the response and the moment matching of the
innovations live in :mod:`dmft.solvers._diagonal_sites` (and its three backends); this module validates, samples the
(stratified) teachers, runs independent replicas and assembles the :class:`dmft.Result`.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from .._backend import check_backend
from .._validate import non_negative, positive_int
from ..errors import DivergenceError, NumericalError
from ..models import DiagonalLinear
from ..result import Result, diagnose
from ..training import GradientDescent, OnlineSGD
from . import register

__all__ = ["solve_diagonal", "sample_site_teachers", "MIN_SITES_PER_REPLICA", "DEFAULT_SITES", "DEFAULT_REPLICAS"]

# 65536 sites in 8 replicas of 8192: a Monte Carlo error below 1 % of the test loss at every step
# of the issue-10 case (T = 1000, label noise); more, smaller replicas make the error bars more
# reliable but the moment-matching bias O(r / M_r) grows (measured; see the docstring of `replicas`).
DEFAULT_SITES = 65536
DEFAULT_REPLICAS = 8

# Below this many sites per replica the site averages that estimate C_v and the response are
# too noisy to be worth reporting (and the standard error over replicas is unreliable).
MIN_SITES_PER_REPLICA = 64
# The innovation coordinates of a replica must stay well below its number of sites: each one
# adds a Stein coefficient estimated from the same sites (noise ~ sqrt(rank / sites)).
MAX_RANK_FRACTION = 0.25
# Below this relative cutoff the innovations kept would approach rounding errors of the site sums
# (relative ~1e-16 sqrt(M)); the re-orthogonalised Gram-Schmidt itself stays orthonormal to 1e-15.
MIN_CUTOFF = 1e-12
# Gram-Schmidt twice keeps the coordinates orthonormal to ~1e-15 (measured); 1e-8 would already
# bias C_v by ~r * 1e-8 relative: the result's status reports it.
ORTHOGONALITY_LIMIT = 1e-8


def _supports(model, data, training) -> str | None:
    if data.spectrum is not None:
        return (
            "the diagonal-network DMFT is implemented for isotropic inputs (spectrum=None); "
            f"got spectrum={data.spectrum!r}"
        )
    return None


def sample_site_teachers(
    data, replicas: int, sites_per_replica: int, rng: np.random.Generator, *, stratify: bool = True,
    sampler: Callable | None = None,
) -> np.ndarray:
    """Teacher coefficients ``beta*`` of every site, replica-major, shape ``(replicas * M_r,)``.

    The prior is ``N(0, 1)`` (default teacher) or ``data.teacher`` (a :class:`dmft.SparseTeacher`:
    ``0`` with probability ``1 - density``, else ``N(0, scale^2)``), or ``sampler(rng, size)``.
    With ``stratify`` (not for a custom sampler) every replica is a stratified sample: the number of
    non-zero coefficients is ``floor(density M_r + U)`` and their values are the normal quantiles
    ``Phi^{-1}((k + U_k) / n)``, randomly permuted. Each replica is still an unbiased sample of the
    prior (every site's marginal is exact), but the between-replica scatter of the teacher's
    moments, which would otherwise dominate the Monte Carlo error of early times, is removed.
    """
    total = replicas * sites_per_replica
    if sampler is not None:
        values = np.asarray(sampler(rng, total), dtype=float)
        if values.shape != (total,) or not np.all(np.isfinite(values)):
            raise ValueError(
                f"`teacher_sampler(rng, size)` must return {total} finite numbers, got shape {values.shape}"
            )
        return values
    density = 1.0 if data.teacher is None else data.teacher.density
    scale = 1.0 if data.teacher is None else data.teacher.scale
    if not stratify:
        nonzero = rng.random(total) < density
        return np.where(nonzero, scale * rng.standard_normal(total), 0.0)
    from scipy.special import ndtri

    out = np.zeros((replicas, sites_per_replica))
    for replica in range(replicas):
        count = min(sites_per_replica, int(math.floor(density * sites_per_replica + rng.random())))
        quantiles = (np.arange(count) + rng.random(count)) / count if count else np.zeros(0)
        values = np.zeros(sites_per_replica)
        values[:count] = scale * ndtri(quantiles)
        out[replica] = rng.permutation(values)
    return out.ravel()


def _checked_options(sites, replicas, seed, cutoff, target_error, teacher_sampler):
    """Validate the sampling options shared by the discrete and the flow solver; returns
    ``sites_per_replica``."""
    sites = positive_int("sites", sites)
    replicas = positive_int("replicas", replicas, minimum=2)
    positive_int("seed", seed, minimum=0)
    cutoff = non_negative("cutoff", cutoff)
    if not MIN_CUTOFF <= cutoff < 1:
        raise ValueError(
            f"`cutoff` must lie in [{MIN_CUTOFF:g}, 1) (a relative variance; smaller keeps rounding "
            f"errors as innovations), got {cutoff}"
        )
    if not target_error > 0:
        raise ValueError(f"`target_error` must be positive (math.inf: no check), got {target_error}")
    if teacher_sampler is not None and not callable(teacher_sampler):
        raise TypeError(f"`teacher_sampler` must be callable(rng, size), got {teacher_sampler!r}")
    sites_per_replica = sites // replicas
    if sites_per_replica < MIN_SITES_PER_REPLICA:
        raise ValueError(
            f"`sites` too small: {sites} sites over {replicas} replicas leave {sites_per_replica} per "
            f"replica; need at least {MIN_SITES_PER_REPLICA} (use sites >= {MIN_SITES_PER_REPLICA * replicas})"
        )
    return sites_per_replica


def _raise_failure(failure, training, unit="step") -> None:
    """Turn a run's :class:`SiteFailure` into the exception users see."""
    if failure is None:
        return
    if failure.kind == "divergence":
        rate = training.rate_at(failure.step) if hasattr(training, "rate_at") else math.nan
        raise DivergenceError(
            f"the diagonal-network site process (replica {failure.replica}: {failure.detail})", failure.step, rate
        )
    raise NumericalError(
        f"numerical failure of the diagonal-network DMFT at {unit} {failure.step}, not a divergence "
        f"(lowering the learning rate will not help): {failure.detail}",
        failure.step,
    )


def _accuracy_checks(test_loss, test_sem, run, cutoff, target_error, max_rank, unit="step"):
    """The result's accuracy diagnostics, as ``(name, value, threshold, remedy)`` for
    :func:`dmft.result.diagnose`; ``run`` carries ``orthogonality_error``, ``rank_capped_at`` and
    ``capped_innovation`` (a :class:`SiteRun` or the flow's sites)."""
    relative = np.asarray(test_sem) / np.asarray(test_loss)
    worst = int(np.nanargmax(relative)) if np.any(np.isfinite(relative)) else 0
    checks = [
        (f"Monte Carlo error (test_loss_sem / test_loss, largest at index {worst})", float(np.max(relative)),
         target_error, "increase `sites` (the error falls like sites^-1/2) or pass a larger `target_error`"),
        ("orthogonality error of the innovation coordinates", run.orthogonality_error, ORTHOGONALITY_LIMIT,
         "raise `cutoff`"),
    ]
    if run.rank_capped_at is not None:
        checks.append((
            f"innovation dropped at the rank cap ({max_rank} coordinates per replica, reached at "
            f"{unit} {run.rank_capped_at:g}; fraction of C_Delta(t,t))", run.capped_innovation, cutoff,
            "increase `sites` (the cap is a quarter of the sites per replica) or raise `cutoff`",
        ))
    return checks


def _replica_curves(run, replicas):
    """Mean over replicas and standard errors of the test and train curves."""
    root = math.sqrt(replicas)
    return dict(
        test_loss=run.test.mean(axis=0),
        train_loss=run.train.mean(axis=0),
        test_loss_sem=run.test.std(axis=0, ddof=1) / root,
        train_loss_sem=run.train.std(axis=0, ddof=1) / root,
    )


def _sampling_info(problem, backend, seed, target_error, stratify, largest_rank, run) -> dict:
    """The ``info`` entries the discrete and the flow solver share (JSON-able scalars)."""
    return {
        "backend": backend,
        "sites": problem.sites,
        "replicas": problem.replicas,
        "sites_per_replica": problem.sites_per_replica,
        "seed": seed,
        "cutoff": problem.cutoff,
        "target_error": target_error,
        "stratify": bool(stratify),
        "moment_matching": problem.moment_matching,
        "max_rank": largest_rank,
        "rank_cap": problem.max_rank,
        "rank_capped_at": run.rank_capped_at,
        "orthogonality_error": run.orthogonality_error,
    }


def _sample_teachers(data, replicas, sites_per_replica, rng, stratify, teacher_sampler, traced):
    teacher = sample_site_teachers(data, replicas, sites_per_replica, rng, stratify=stratify, sampler=teacher_sampler)
    if traced.size:
        teacher = teacher.reshape(replicas, sites_per_replica)
        teacher[:, : traced.size] = traced
        teacher = teacher.ravel()
    return teacher


@register(DiagonalLinear, trainings=(GradientDescent, OnlineSGD), supports=_supports)
def solve_diagonal(
    model: DiagonalLinear,
    data,
    training,
    *,
    sites: int = DEFAULT_SITES,
    replicas: int = DEFAULT_REPLICAS,
    seed: int = 0,
    backend: str = "numba",
    cutoff: float = 1e-6,
    target_error: float = 0.01,
    response: str = "stein",
    teacher_sampler: Callable | None = None,
    stratify: bool = True,
    moment_matching: bool = True,
    return_kernels: bool = False,
    trace=None,
    block: int = 64,
) -> Result:
    """Loss curves of a diagonal linear network in the ``D, P -> infinity`` limit (THEORY.md 4.1).

    Monte Carlo over ``sites`` independent copies of the single-site process, split into
    ``replicas`` independent self-consistent solves of ``M_r = sites // replicas`` sites each; the
    curves are the mean over replicas and the standard errors their spread / sqrt(replicas)::

        v = beta* - F(theta),   u = alpha^{-1/2} psi + R_Delta v,   theta <- theta + eta_t grad F(theta) u
        psi ~ GP(0, C_Delta),   C_Delta = R_Delta (C_v + sigma^2 1 1^T) R_Delta^T,
        R_Delta = (I - alpha^{-1/2} R_v)^{-1},   test = C_v(t,t) + sigma^2,   train = C_Delta(t,t)

    Full-batch gradient descent costs ``O(T r M)`` (``r <= T`` innovation coordinates, see
    :mod:`dmft.solvers._diagonal_sites`), online SGD ``O(T M)`` (``R_Delta = I``,
    ``C_Delta = diag(C_v + sigma^2)``, ``alpha -> batch_ratio``). A learning-rate schedule
    (``training.rates``) is exact: step ``t`` moves the sites with ``eta_t``; nothing else changes.
    :class:`dmft.GradientFlow` goes to :func:`dmft.solvers.diagonal_flow.solve_diagonal_flow`.

    Parameters
    ----------
    model : :class:`dmft.DiagonalLinear` (any ``depth >= 1``, ``init_scale > 0``).
    data : isotropic :class:`dmft.GaussianData`; ``teacher`` None (``N(0,1)``) or a SparseTeacher.
    training : :class:`dmft.GradientDescent` or :class:`dmft.OnlineSGD` (rate or schedule).
    sites : total number of sampled sites ``M`` (all replicas together).
    replicas : number of independent solves (>= 2) that give the standard errors. Default 8: a
        standard error from ``n`` replicas is itself uncertain by ``1 / sqrt(2 (n - 1))`` (27 % at
        8, 18 % at 16), but at the same total sites more replicas are smaller and the
        ``O(r / M_r)`` bias of moment matching grows: not resolved at T = 1000 on the issue-10
        case (rank 75) down to 1024 sites per replica, but -1.5 % at 4096 and -1.25 % +- 0.53 %
        at 8192 for long-time flows at small init (rank ~120), -0.24 % +- 0.19 % at 16384 (the
        flow's default). docs/continuous_time.md, "Replicas".
    seed : seeds everything; the same seed gives the same numbers on every backend.
    backend : ``"numba"`` (default, parallel CPU kernels), ``"numpy"`` (reference) or ``"cupy"``
        (GPU, through the array API).
    cutoff : relative innovation cutoff in ``[1e-12, 1)``: a step whose innovation variance is
        below ``cutoff * C_Delta(t,t)`` opens no new coordinate (its innovation is dropped).
    target_error : the largest acceptable ``test_loss_sem / test_loss``; above it the result's
        ``status`` is 1 with an :class:`dmft.AccuracyWarning` (``math.inf``: no check).
    response : ``"stein"`` (default: Gaussian integration by parts, ``R_v L = E[v z]`` on the
        innovations, ``O(T r M)``) or ``"tangent"`` (exact mean of tangent-propagated Jacobians,
        ``O(T^3 M)``, NumPy only: a reference for tests).
    moment_matching : orthogonalise every new innovation against the sites' coordinates within
        its replica (default; removes about 90% of the Monte Carlo variance at an ``O(1/M_r)``
        bias). ``False`` gives the plain estimator.
    teacher_sampler : optional ``sampler(rng, size) -> beta*`` replacing the data's teacher prior.
    stratify : stratified teacher samples per replica (see :func:`sample_site_teachers`).
    return_kernels : also return ``C_v`` and ``C_Delta`` (``(T+1, T+1)``, mean over replicas) and
        replica 0's kernels in innovation form (``cholesky`` ``L``, ``projection`` ``B``, ``stein``
        ``Gamma``, each ``(T+1, r)``).
    trace : optional teacher values ``beta*`` (``k <= sites // replicas // 8`` of them) given to the
        first ``k`` sites of every replica, whose trajectories ``beta(t)`` are returned: ``k``
        realisations per replica of the single-site process with these teachers (they take part
        in the replica like any site; the prior is changed on a fraction ``k / M_r`` of sites).
        Recorded every step (``backend="numpy"``) or every ``block`` steps (Numba).
    block : steps per batch of random numbers.

    Returns
    -------
    dmft.Result with ``method="dmft"``, curves of length ``steps + 1``, ``test_loss_sem`` and
    ``train_loss_sem`` (Monte Carlo standard errors over replicas), ``status``/``message`` (the
    Monte Carlo error against ``target_error``, the orthonormality of the coordinates, the rank
    cap), ``arrays``: ``test_loss_per_replica``, ``train_loss_per_replica`` (``(replicas, steps +
    1)``), ``rank`` (innovation coordinates per replica and step), with ``return_kernels`` also
    ``correlation_v`` (``C_v``), ``correlation_delta`` (``C_Delta``), ``cholesky``, ``projection``
    and ``stein``; with ``trace`` also ``traced_teacher`` (``(k,)``), ``traced_steps`` and
    ``traced_beta`` (``(replicas, k, records)``); ``info``: sizes, seed, backend, cutoff,
    response, largest rank, orthogonality error, rank cap, wall time.

    Raises
    ------
    ValueError : too few sites (``sites // replicas < 64``), fewer than 2 replicas, a bad option.
    dmft.DivergenceError : a replica's loss grew without bound (names the step; lower ``learning_rate``).
    dmft.NumericalError : the arithmetic failed while the loss was bounded (a NaN, a negative
        innovation variance, a degenerate moment matching): names the step and what to try.

    Example
    -------
    >>> import dmft
    >>> result = dmft.solve(dmft.DiagonalLinear(depth=2, init_scale=0.1),
    ...                     dmft.GaussianData(alpha=0.5, teacher=dmft.SparseTeacher(0.2)),
    ...                     dmft.GradientDescent(learning_rate=0.05, steps=200), sites=8192)
    """
    from ._diagonal_sites import RESPONSES, SiteProblem, run_sites

    sites_per_replica = _checked_options(sites, replicas, seed, cutoff, target_error, teacher_sampler)
    positive_int("block", block)
    check_backend(backend)
    if response not in RESPONSES:
        raise ValueError(f"`response` must be one of {RESPONSES}, got {response!r}")
    traced = np.zeros(0) if trace is None else np.asarray(trace, dtype=float).ravel()
    if traced.size > sites_per_replica // 8 or not np.all(np.isfinite(traced)):
        raise ValueError(
            f"`trace` must hold at most sites // replicas // 8 = {sites_per_replica // 8} finite teacher "
            f"values, got {traced.size}"
        )
    online = isinstance(training, OnlineSGD)
    if return_kernels and online:
        raise ValueError("`return_kernels` applies to full-batch training: online SGD keeps no two-time kernels "
                         "(its C_Delta is diagonal)")
    ratio = training.batch_ratio if online else data.alpha
    problem = SiteProblem(
        depth=model.depth,
        init_scale=model.init_scale,
        learning_rates=training.rates,
        inv_sqrt_alpha=1.0 / math.sqrt(ratio),
        noise_variance=data.noise**2,
        online=online,
        cutoff=cutoff,
        replicas=replicas,
        sites_per_replica=sites_per_replica,
        max_rank=int(MAX_RANK_FRACTION * sites_per_replica),
        traced=traced.size,
        moment_matching=bool(moment_matching),
    )
    started = time.perf_counter()
    teacher_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    teacher = _sample_teachers(data, replicas, sites_per_replica, teacher_rng, stratify, teacher_sampler, traced)
    run = run_sites(problem, teacher, noise_rng, backend=backend, block=block, response=response)
    _raise_failure(run.failure, training)
    curves = _replica_curves(run, replicas)
    status, message = diagnose(_accuracy_checks(
        curves["test_loss"], curves["test_loss_sem"], run, cutoff, target_error, problem.max_rank
    ))

    arrays = {
        "test_loss_per_replica": run.test,
        "train_loss_per_replica": run.train,
        "rank": run.rank,
    }
    if return_kernels:
        projection = run.projection
        cholesky = run.cholesky
        arrays["correlation_v"] = np.einsum("rtj,rsj->ts", projection, projection) / replicas - data.noise**2
        arrays["correlation_delta"] = np.einsum("rtj,rsj->ts", cholesky, cholesky) / replicas
        # replica 0's kernels in innovation form
        arrays["cholesky"] = cholesky[0]
        arrays["projection"] = projection[0]
        arrays["stein"] = run.stein[0]
    if traced.size:
        arrays["traced_teacher"] = traced
        arrays["traced_steps"] = run.traced_steps
        arrays["traced_beta"] = run.traced_beta
    info = _sampling_info(problem, backend, seed, target_error, stratify, int(run.rank.max()), run) | {
        "response": response,
        "wall_time_s": time.perf_counter() - started,
    }
    return Result(
        model=model,
        data=data,
        training=training,
        method="dmft",
        arrays=arrays,
        info=info,
        status=status,
        message=message,
        **curves,
    )


from . import diagonal_flow  # noqa: E402,F401  (registers the GradientFlow solver, which imports this module)
