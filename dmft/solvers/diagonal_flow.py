"""Gradient flow of diagonal linear networks in the DMFT limit (docs/continuous_time.md, "Diagonal
networks"): the ``learning_rate -> 0`` limit of :func:`dmft.solvers.diagonal.solve_diagonal` at
fixed ``time = learning_rate * steps``.

* Full batch (``data.alpha`` given): the site process of THEORY.md 4.1 in continuous time. Sums
  over earlier steps weighted by the learning rate become integrals; in innovation coordinates
  they never appear explicitly, because ``Gamma = R_v L`` (Stein) and ``B``, ``L`` are equal-time
  site means. Each site follows ``rho' = u(rho)`` (one number per site: the flow conserves
  ``a b = s^2`` at depth 2, ``a^{2-L} + b^{2-L}`` otherwise), coupled to the other sites of its
  replica through ``2 r`` means; a coordinate is opened whenever the innovation variance of
  ``v`` reaches ``cutoff * C_Delta(t,t)``. The ODE is mildly stiff (Jacobian eigenvalues real,
  from ``~0.02`` to ``~10`` in the rich regime), so it is integrated by the second-order
  Runge-Kutta-Chebyshev method (:mod:`._rkc`) with local error control, the number of stages
  chosen from a power-method estimate of the spectral radius: steps grow geometrically once the
  dynamics has slowed down, at a cost ``~sqrt(h rho)`` evaluations per step.
* Population (``alpha=None``, the limit of :class:`dmft.OnlineSGD`, whose noise vanishes): every
  coordinate follows ``rho' = beta* - F(rho)`` on its own; the loss is a one-dimensional integral
  over the teacher prior, done by a trapezoid rule in a stretched variable with an implicit ODE
  solver (``scipy.integrate.solve_ivp``, BDF), no Monte Carlo.
"""

from __future__ import annotations

import math
import time as clock
from typing import Callable

import numpy as np

from .._backend import check_backend
from .._validate import positive, positive_int
from ..errors import NumericalError
from ..models import DiagonalLinear
from ..result import Result, diagnose
from ..training import GradientFlow
from . import register
from ._diagonal_sites import ROUNDING_FLOOR
from ._rkc import coefficients, error_estimate, rkc_step, stages_for
from .diagonal import (
    MAX_RANK_FRACTION,
    _accuracy_checks,
    _checked_options,
    _raise_failure,
    _sample_teachers,
    _sampling_info,
    _supports,
)

__all__ = ["solve_diagonal_flow", "population_flow"]

# The first step (a fraction of the initial time scale 1 / max|u|) and the growth limits of the
# step-size controller (as scipy's solve_ivp: at most x10 after an accepted step, x0.1 after a
# rejection); the spectral radius is re-estimated every SPECTRAL_EVERY accepted steps.
FIRST_STEP = 1e-3
SPECTRAL_EVERY = 25
SAFETY = 0.8
# A step whose innovation d exceeds FIELD_FACTOR * cutoff * C_Delta(t,t) at its end is repeated
# shorter: coordinates open at the ends of steps, with d between cutoff and FIELD_FACTOR cutoff.
FIELD_FACTOR = 10.0
# Convergence to the fixed point (``converge=True``): the flow stops at an accepted time ``t`` once,
# in every replica, the train loss is below CONVERGED_TRAIN of the test loss (interpolation, at
# ~100 times the rounding floor of ``C_Delta``) and the test loss changed by less than
# ``CONVERGED_CHANGE * rtol`` (relative) since time ``t / 2``; the state is then held to ``time``.
# For a flow that converges exponentially (or any way whose increments over ``[t, 2t]`` do not
# exceed those over ``[t/2, t]``) the change still to come is below that of ``[t/2, t]``.
CONVERGED_TRAIN = 1e-10
CONVERGED_CHANGE = 0.1
# The flow's default: 8 replicas (as the discrete solver) of 16384 sites, 131072 in all. Long flows
# at small init open many innovation coordinates (rank ~120 at s = 0.1, ~200 at s = 0.03,
# alpha = 0.5), and moment matching biases the loss by O(rank / sites_per_replica): measured at the
# fixed point (s = 0.1, noiseless; docs/continuous_time.md, "Replicas") -1.25 % +- 0.53 % with 8192
# sites per replica (32 replicas) and -0.24 % +- 0.19 % with 16384 (64 replicas, 4 seeds), where
# the per-replica spread is 1.55 %: 8 replicas give a standard error of ~0.55 % (itself uncertain by
# 27 %) that covers the bias. The result's status flags ``rank / sites_per_replica > target_error``.
FLOW_SITES = 131072
FLOW_REPLICAS = 8


def _rms_per_replica(x):
    return np.sqrt(np.mean(x * x, axis=1))


def _field_excess(evaluation, field_limit, capped):
    """``max d / (field_limit C_Delta(t,t))`` over replicas: the innovation variance left out of the
    field, relative to its limit. Innovations below ``10 ROUNDING_FLOOR * test`` count as zero: at
    that level ``d = test - |B|^2`` is near its cancellation error, coordinates are opened above
    ``ROUNDING_FLOOR * test`` only, and the margin keeps a ``d`` that hovers at the floor from
    rejecting every step (the test loss cannot feel ``1e-11`` of itself). Replicas at the rank
    cap (``capped``) can open no coordinate: their dropped innovation is reported by the result's
    status instead."""
    counted = (evaluation.innovation > 10.0 * ROUNDING_FLOOR * evaluation.test) & ~capped
    d = np.where(counted, evaluation.innovation, 0.0)
    return float(np.max(d / evaluation.train)) / field_limit


def _spectral_radius(evaluate, rho, f0, start):
    """Largest ``|lambda|`` of ``dF/drho`` at ``rho`` by the nonlinear power method
    ``x <- (F(rho + delta x) - F(rho)) / delta`` (as in the RKC code of Sommeijer et al.);
    returns ``(estimate * 1.2, last vector, evaluations used)``. 30 iterations at most; stops at
    1 % agreement."""
    scale = float(np.sqrt(np.mean(rho * rho)))
    x = start / max(float(np.sqrt(np.mean(start * start))), 1e-300)
    delta = math.sqrt(np.finfo(float).eps) * (1.0 + scale)
    estimate = 0.0
    for iteration in range(1, 31):
        y = (evaluate(rho + delta * x).u - f0) / delta
        norm = float(np.sqrt(np.mean(y * y)))
        if not math.isfinite(norm):
            raise NumericalError("diagonal flow: the spectral-radius estimate is not finite")
        converged = abs(norm - estimate) <= 0.01 * norm
        estimate = norm
        if converged or norm == 0.0:
            break
        x = y / norm
    return 1.2 * estimate, x, iteration


def _converged(history, t, ev, rtol):
    """Whether the flow has reached its fixed point at the accepted time ``t`` (criterion above
    CONVERGED_TRAIN); ``history`` holds ``(time, test per replica)`` of the accepted steps."""
    if np.max(ev.train / ev.test) >= CONVERGED_TRAIN or t <= 0.0:
        return False
    index = int(np.searchsorted([h[0] for h in history], 0.5 * t, side="right")) - 1
    if index < 0:
        return False
    earlier = history[index][1]
    return float(np.max(np.abs(ev.test - earlier) / ev.test)) < CONVERGED_CHANGE * rtol


def _full_batch_flow(problem, teacher, rng, training, cutoff, max_stages, backend, progress, converge=True):
    """Integrate the full-batch flow; returns a dict of per-replica curves and counters."""
    from ._diagonal_flow_sites import flow_sites

    sites = flow_sites(problem, teacher, rng, backend)
    rtol, field_limit = training.rtol, FIELD_FACTOR * cutoff
    R = problem.replicas
    save = None if training.save_at is None else np.asarray(training.save_at)
    times, tests, trains, ranks, walls = [], [], [], [], []
    started = clock.perf_counter()

    def record(t, ev):
        times.append(t)
        tests.append(ev.test.copy())
        trains.append(ev.train.copy())
        ranks.append(sites.rank.copy())
        walls.append(clock.perf_counter() - started)

    rho = np.zeros((R, problem.sites_per_replica))
    t = 0.0
    ev = sites.evaluate(rho)
    failure = sites.check(ev, t)
    if failure is None and (save is None or save[0] == 0.0):
        record(t, ev)
    while failure is None:  # t = 0: v(0) = beta* has no past: open until nothing is left
        opened, failure = sites.open(ev, t)
        if not opened:
            break
        ev = sites.evaluate(rho)
    counters = dict(steps=0, rejected=0, evaluations=1, spectral_estimates=0, largest_stages=0,
                    error_bound=0.0, spectral_radius=0.0, converged_at=None)
    history = [(0.0, ev.test.copy())]
    if failure is not None:
        return failure, (times, tests, trains, ranks, walls), counters, sites
    next_save = 0 if save is None else int(np.searchsorted(save, 0.0, side="right"))
    scale_u = float(np.max(_rms_per_replica(ev.k * ev.u) / np.sqrt(ev.test)))
    h = FIRST_STEP / max(scale_u, 1e-12)
    radius, direction = 0.0, ev.u
    since_spectral = SPECTRAL_EVERY
    growth = 10.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=training.time, desc="dmft diagonal flow", unit="time")

    def evaluate_u(y):
        counters["evaluations"] += 1
        return sites.evaluate(y).u

    while t < training.time:
        if since_spectral >= SPECTRAL_EVERY:
            radius, direction, used = _spectral_radius(sites.evaluate, rho, ev.u, direction)
            counters["evaluations"] += used
            counters["spectral_estimates"] += 1
            counters["spectral_radius"] = max(counters["spectral_radius"], radius)
            since_spectral = 0
        target = training.time if save is None or next_save >= len(save) else save[next_save]
        # `h` is the controller's step; `step` the one taken (shortened to land on the next save
        # time; a remainder below 1e-12 of the time is taken with this step)
        h = min(h, coefficients(max_stages).stability / max(radius, 1e-300))
        remaining = target - t
        landing = h >= remaining - 1e-12 * max(target, 1.0)
        step = remaining if landing else h
        stages = stages_for(step, radius, max_stages)
        counters["largest_stages"] = max(counters["largest_stages"], stages)
        with np.errstate(all="ignore"):
            new = rkc_step(evaluate_u, rho, ev.u, step, stages)
            new_ev = sites.evaluate(new)
        counters["evaluations"] += stages
        est = error_estimate(rho, new, ev.u, new_ev.u, step)
        error = float(np.max(_rms_per_replica(new_ev.k * est) / (0.5 * rtol * np.sqrt(new_ev.test))))
        field = _field_excess(new_ev, field_limit, capped=problem.max_rank > 0 and sites.rank >= problem.max_rank)
        if not (math.isfinite(error) and math.isfinite(field)):
            error = math.inf
        if error <= 1.0 and field <= 1.0:
            t = target if landing else t + step
            rho, ev = new, new_ev
            counters["steps"] += 1
            counters["error_bound"] += error * 0.5 * rtol
            since_spectral += 1
            if bar is not None:
                bar.update(step)
            failure = sites.check(ev, t)
            if failure is not None:
                break
            if save is None or landing:
                record(t, ev)
                next_save += save is not None
            history.append((t, ev.test.copy()))
            if converge and t < training.time and _converged(history, t, ev, rtol):
                counters["converged_at"] = float(t)  # the fixed point: held to the end (CONVERGED_TRAIN)
                rest = [training.time] if save is None else [x for x in save[next_save:] if x > t]
                for later in rest:
                    record(float(later), ev)
                if bar is not None:
                    bar.update(training.time - t)
                break
            opened, failure = sites.open(ev, t)
            if failure is not None:
                break
            if opened:
                ev = sites.evaluate(rho)
                counters["evaluations"] += 1
            factor = min(growth, SAFETY * max(error, 1e-10) ** (-1.0 / 3.0))
            if field > 0:
                factor = min(factor, SAFETY * field ** -0.5)
            h = max(step, h if landing else 0.0) * max(factor, 0.1)
            growth = 10.0
        else:
            counters["rejected"] += 1
            factor = 0.1 if not math.isfinite(error) else SAFETY * max(error, field**1.5) ** (-1.0 / 3.0)
            h = step * min(max(factor, 0.1), 0.5)
            growth = 1.0
            since_spectral = SPECTRAL_EVERY if not math.isfinite(error) else since_spectral
            if h < 1e-12 * max(t, 1.0):
                raise NumericalError(
                    f"diagonal flow: the step size fell to {h:.3g} at time {t:.6g} (local error {error:.3g}, "
                    f"innovation {field:.3g} of its limit): a numerical blow-up of the site process; lower `rtol` "
                    "or compare with backend='numpy'", None,
                )
    if bar is not None:
        bar.close()
    return failure, (times, tests, trains, ranks, walls), counters, sites


def _teacher_rule(scale: float, nodes: int, floor: float = 1e-4, extent: float = 12.0):
    """Trapezoid rule for ``E f(beta*)``, ``beta* ~ N(0, scale^2)``, ``f`` even, in the variable
    ``y`` with ``beta* = scale * floor * sinh(y)``, ``0 <= y <= asinh(extent / floor)``: nodes
    geometric near 0 (where the coefficients that are learned last sit: at late times the loss is
    an integral over ``|beta*| < beta_c(t)``, an interval that shrinks with time) and uniform in
    ``y`` (the integrand is smooth in ``y``). Returns ``(beta*, weights)`` (weights sum to ~1; the
    mass beyond ``extent`` standard deviations, 2e-33, and below ``floor``, where the residual is
    at most ``beta*^2``, are left out)."""
    top = math.asinh(extent / floor)
    y = np.linspace(0.0, top, nodes + 1)
    x = floor * np.sinh(y)
    weights = 2.0 * (top / nodes) * floor * np.cosh(y) * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    weights[[0, -1]] *= 0.5
    return scale * x, weights


def population_flow(model: DiagonalLinear, data, training: GradientFlow, *, nodes: int = 800):
    """Population gradient flow (``alpha = None``): ``E_{beta*} (beta* - F_t(beta*))^2 + sigma^2``.

    Every coordinate follows ``rho' = beta* - F(rho)`` (module docstring); the expectation over
    ``beta* ~ N(0, scale^2)`` (weight ``density``; ``beta* = 0`` stays at ``F = 0``) is a trapezoid
    rule with ``nodes`` intervals in a sinh-stretched variable (:func:`_teacher_rule`), checked
    against the rule on every second node. The coordinates' ODEs are solved together by
    ``scipy.integrate.solve_ivp`` (BDF: they are stiff, rates ``k = dF/drho`` from ``8 s^2`` to
    ``~8 |beta*|``; diagonal Jacobian) at relative tolerance ``rtol / 10``.
    Returns ``(times, test_loss, info)``; ``info["quadrature_error"]`` is the largest relative
    difference between the two rules over the times.
    """
    from scipy.integrate import solve_ivp
    from scipy.sparse import diags

    from ._diagonal_flow_sites import factor_map

    if nodes % 2:
        raise ValueError(f"`nodes` must be even (the error estimate uses every second node), got {nodes}")
    density = 1.0 if data.teacher is None else data.teacher.density
    scale = 1.0 if data.teacher is None else data.teacher.scale
    beta_star, weights = _teacher_rule(scale, nodes)
    values = factor_map(model.depth, model.init_scale)
    t_eval = None if training.save_at is None else np.asarray(training.save_at)
    solution = solve_ivp(
        lambda _, rho: beta_star - values(rho)[0], (0.0, training.time), np.zeros(beta_star.size), method="BDF",
        jac=lambda _, rho: diags(-values(rho)[1], format="csc"), t_eval=t_eval, rtol=training.rtol / 10,
        atol=1e-10 * training.rtol * scale,
    )
    if not solution.success:
        raise NumericalError(f"population flow of the diagonal network: {solution.message}", None)
    residual = (beta_star[:, None] - values(solution.y)[0]) ** 2
    fine = density * (weights @ residual) + data.noise**2
    coarse_weights = 2.0 * weights[::2]
    coarse_weights[[0, -1]] = weights[[0, -1]]
    coarse = density * (coarse_weights @ residual[::2]) + data.noise**2
    info = {"nodes": nodes, "quadrature_error": float(np.max(np.abs(fine - coarse) / fine)),
            "time_rtol": training.rtol / 10, "time_points": int(solution.t.size), "ode_evaluations": int(solution.nfev)}
    return solution.t, fine, info


@register(DiagonalLinear, trainings=(GradientFlow,), supports=_supports)
def solve_diagonal_flow(
    model: DiagonalLinear,
    data,
    training: GradientFlow,
    *,
    sites: int = FLOW_SITES,
    replicas: int = FLOW_REPLICAS,
    seed: int = 0,
    backend: str = "numba",
    cutoff: float = 1e-9,
    target_error: float = 0.01,
    teacher_sampler: Callable | None = None,
    stratify: bool = True,
    moment_matching: bool = True,
    max_stages: int = 200,
    nodes: int = 800,
    converge: bool = True,
    progress: bool = False,
) -> Result:
    """Gradient flow of a diagonal linear network, ``t -> time`` (docs/continuous_time.md).

    Full batch (``data.alpha``): Monte Carlo over ``sites`` in ``replicas`` independent replicas
    as :func:`dmft.solvers.diagonal.solve_diagonal`, the site process in continuous time
    (``rho' = u``, one number per site), integrated by second-order Runge-Kutta-Chebyshev steps
    with local error control. Population (``alpha=None``): a quadrature over the teacher prior,
    no Monte Carlo (``test_loss_sem`` is ``None``, ``train_loss = test_loss``).

    Parameters
    ----------
    model, data : as for the discrete solver (isotropic data; any depth; ``alpha`` or ``None``).
    training : :class:`dmft.GradientFlow` ``(time, save_at, rtol)``: ``rtol`` bounds the local
        error per step of the test loss (relative).
    sites, replicas, seed, teacher_sampler, stratify, moment_matching, target_error : as for
        the discrete solver (full batch only), except that ``sites`` defaults to 131072 (8
        replicas of 16384: the moment-matching bias is ``O(rank / sites_per_replica)`` and long
        flows at small init have a large rank; FLOW_SITES). ``status`` flags a largest
        ``rank / sites_per_replica`` above ``target_error``.
    backend : ``"numba"`` (default) or ``"numpy"`` (reference) for the site means.
    cutoff : innovation variance (relative to ``C_Delta(t,t)``) at which a coordinate is opened
        at the end of a step; a step whose innovation exceeds ``10 * cutoff`` is repeated with a
        smaller step. The variance left out of the field between openings biases the long-time
        loss (the flow opens coordinates only once ``d`` has accumulated, the discrete solver at
        every step whose ``d`` exceeds the cutoff): measured on the issue-10 problem at time 300
        (paired runs, 16384 sites), noiseless -1.7 % at ``1e-6``, -0.5 % at ``1e-8``, +0.1 % at
        ``1e-9``, -0.4 % at ``1e-10`` (Monte Carlo error 0.5-1.3 %); with noise -0.3 % at ``1e-6``
        and within +-0.1 % of each other from ``1e-8`` to ``1e-10``. Default ``1e-9``; the rank
        grows only from ~90 to ~115 and the cost hardly changes.
    max_stages : most RKC stages per step (the longest step is ``~0.65 max_stages^2 / rho``).
    nodes : intervals of the population flow's quadrature over the teacher prior (even; checked
        against the rule on every second node).
    converge : stop at the fixed point and hold it to ``time`` (full batch): once, in every
        replica, the train loss is below ``1e-10`` of the test loss and the test loss changed by
        less than ``0.1 rtol`` (relative) since half the current time. ``info["converged_at"]``
        is that time (``None`` if not reached). On the issue-10 problem (``s = 0.1``, noiseless)
        the flow converges at time ~280 and a flow to time 3000 costs what one to ~300 does.
    progress : a tqdm bar over flow time.

    Returns
    -------
    dmft.Result with ``time`` the flow times (the solver's accepted steps, or ``save_at``), the
    curves at those times, ``test_loss_sem``/``train_loss_sem`` (Monte Carlo, over replicas),
    ``arrays`` ``test_loss_per_replica``, ``train_loss_per_replica``, ``rank`` (``(replicas,
    times)``), ``wall_time_s`` (seconds since the start at each reported time), ``info`` with the grid (``time_steps``, ``rejected_steps``, ``rhs_evaluations``,
    ``largest_stages``, ``spectral_radius``) and ``time_error_bound``: the sum of the accepted
    steps' local error estimates (relative, test loss), a bound on the integration error between
    the openings of coordinates for a contracting flow; the times at which coordinates open add
    an error it does not count (measured up to 0.4 % of the mean test loss at ``rtol = 1e-3`` and
    ``1e-4`` against ``1e-8``, at 2048 and 16384 sites, while the bound was 0.3-0.7 %:
    docs/continuous_time.md, "Time grid"). ``status`` as the discrete solver's, plus ``time_error_bound`` against
    ``target_error`` (the time discretisation should stay below the Monte Carlo accuracy asked
    for) and, for the population flow, the quadrature error against ``rtol``.

    Raises
    ------
    dmft.NumericalError : a numerical blow-up (the step size collapses; names the time), a
        negative innovation variance, a degenerate moment matching.
    """
    started = clock.perf_counter()
    check_backend(backend, ("numpy", "numba"))
    positive_int("max_stages", max_stages, minimum=2)
    positive_int("nodes", nodes, minimum=8)
    if data.alpha is None:
        monte_carlo = dict(sites=(sites, FLOW_SITES), replicas=(replicas, FLOW_REPLICAS), seed=(seed, 0),
                           cutoff=(cutoff, 1e-9), teacher_sampler=(teacher_sampler, None), stratify=(stratify, True),
                           moment_matching=(moment_matching, True), backend=(backend, "numba"),
                           converge=(converge, True))
        given = [name for name, (value, default) in monte_carlo.items() if value is not default and value != default]
        if given:
            raise ValueError(
                f"{', '.join(f'`{name}`' for name in given)} do(es) not apply to the population flow "
                "(alpha=None: a quadrature over the data's teacher prior, no Monte Carlo); use `nodes` and `rtol`"
            )
        times, test, info = population_flow(model, data, training, nodes=nodes)
        status, message = diagnose([("quadrature error of the population flow (relative)", info["quadrature_error"],
                                     training.rtol, "raise `nodes`")])
        info.update(method="population flow (quadrature over the teacher, BDF)",
                    wall_time_s=clock.perf_counter() - started)
        return Result(model=model, data=data, training=training, test_loss=test, train_loss=test.copy(),
                      method="dmft", info=info, time=times, status=status, message=message)

    sites_per_replica = _checked_options(sites, replicas, seed, cutoff, target_error, teacher_sampler)
    positive("cutoff", cutoff)
    from ._diagonal_sites import SiteProblem

    problem = SiteProblem(
        depth=model.depth, init_scale=model.init_scale, learning_rates=np.zeros(0),
        inv_sqrt_alpha=1.0 / math.sqrt(data.alpha), noise_variance=data.noise**2, online=False, cutoff=cutoff,
        replicas=replicas, sites_per_replica=sites_per_replica, moment_matching=bool(moment_matching),
        max_rank=int(MAX_RANK_FRACTION * sites_per_replica),
    )
    teacher_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    teacher = _sample_teachers(data, replicas, sites_per_replica, teacher_rng, stratify, teacher_sampler, np.zeros(0))
    failure, (times, tests, trains, ranks, walls), counters, flow_sites = _full_batch_flow(
        problem, teacher, noise_rng, training, cutoff, max_stages, backend, progress, converge
    )
    _raise_failure(failure, training, unit="time")
    test = np.array(tests).T
    train = np.array(trains).T
    root = math.sqrt(replicas)
    curves = dict(test_loss=test.mean(axis=0), train_loss=train.mean(axis=0),
                  test_loss_sem=test.std(axis=0, ddof=1) / root, train_loss_sem=train.std(axis=0, ddof=1) / root)

    checks = _accuracy_checks(curves["test_loss"], curves["test_loss_sem"], flow_sites, cutoff, target_error,
                              problem.max_rank, unit="time")
    checks.append(("time-discretisation error bound (relative, test loss; sum of the local error estimates)",
                   counters["error_bound"], target_error, "lower `rtol`"))
    checks.append(("moment-matching bias scale (largest rank / sites per replica; the bias is O(1) times it)",
                   float(flow_sites.rank.max()) / sites_per_replica, target_error,
                   "raise the sites per replica (more `sites` or fewer `replicas`)"))
    status, message = diagnose(checks)
    info = _sampling_info(problem, backend, seed, target_error, stratify, int(flow_sites.rank.max()), flow_sites) | {
        "time_steps": counters["steps"],
        "rejected_steps": counters["rejected"],
        "rhs_evaluations": counters["evaluations"],
        "largest_stages": counters["largest_stages"],
        "spectral_radius": counters["spectral_radius"],
        "time_error_bound": counters["error_bound"],
        "converged_at": counters["converged_at"],
        "wall_time_s": clock.perf_counter() - started,
    }
    arrays = {"test_loss_per_replica": test, "train_loss_per_replica": train, "rank": np.array(ranks).T,
              "wall_time_s": np.array(walls)}
    return Result(model=model, data=data, training=training, method="dmft", arrays=arrays, info=info,
                  time=np.asarray(times), status=status, message=message, **curves)
