"""Gradient flow of finite networks: an embedded Runge-Kutta method with error control.

``finite_size.simulate(model, data, dmft.GradientFlow(time, save_at, rtol), ...)`` integrates

    d params / d tau = direction(u(params)),

the continuous-time limit of ``params += eta * direction(u)`` as ``eta -> 0`` at fixed
``tau = eta * steps`` (THEORY.md section 6), for all seeds at once (one step size shared by the
seeds). The drive ``u`` is the full-batch one of the sampled training set (sufficient statistics)
or, with ``alpha=None``, the exact population drive ``Lambda (beta* - beta)`` (no sampling noise).

Method: Bogacki-Shampine 3(2) (the method of ``scipy.integrate.RK23``): third order, an embedded
second-order solution for the error estimate, four stages of which the last is the first of the
next step (three network evaluations per step). The stages of a deep network are rank-one updates
of its weight matrices, so they are kept as vectors and the stage states are :class:`Shifted`
matrices (never formed): a stage costs about one gradient-descent step, and an accepted step three
stages, one extra backward pass and three rank-one updates per matrix.

Error control is on what the losses are made of, the predictor ``beta``: with ``d`` the difference
of the third- and second-order ``beta`` after a step, per seed,

    |d|_Lambda / sqrt(D)      <= (rtol / 2) sqrt(L - sigma^2) + atol,
    sqrt(d^T Sigma_hat d / D) <= (rtol / 2) sqrt(Lhat)        + atol,

which bound the step's relative change of the test loss's excess and of the train loss by ``rtol``
(to first order, ``|delta L| <= 2 sqrt(L - sigma^2) |d|_Lambda / sqrt(D)``, Cauchy-Schwarz).
``atol = 1e-8 rtol sqrt(L(0))`` only keeps round-off from stalling the integration once a loss has
fallen by sixteen orders of magnitude. A step whose ratio exceeds 1 is rejected; the next step is
``0.9 h ratio^{-1/3}`` (between ``h / 5`` and ``5 h``). The accuracy achieved is measured in
``tests/test_simulate.py`` against the exact depth-0 flow (the global error stays within a small
multiple of ``rtol``: the flow contracts, so local errors do not pile up).

Cost: at late times a flow is stiff (the fast directions are learned, the slow ones set the
loss), and an explicit method's step is then bounded by stability, ``h <~ 2.5 / lambda_max`` of
the Hessian (the gradient-descent bound ``eta < 2 / lambda_max``): flow time ``tau`` costs about
``tau lambda_max / 2.5`` steps, i.e. as many network evaluations as gradient descent near its
largest stable learning rate, times three. ``result.info`` reports the accepted and rejected steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from dmft.errors import DIVERGENCE_FACTOR, DivergenceError

from ._backend import to_host
from .networks import apply_update, shifted_parameters

__all__ = ["FlowDivergenceError", "BOGACKI_SHAMPINE", "integrate_flow", "FlowTrace"]

# A loss may fall by 16 orders of magnitude before round-off of beta (~1e-15 relative) takes over:
# below that, the error is controlled in absolute terms.
_ABSOLUTE_FLOOR = 1e-8
# The step size has collapsed when it falls below this fraction of the time reached (or of 1).
_COLLAPSE = 1e-12


class FlowDivergenceError(DivergenceError):
    """A gradient flow blew up numerically (non-finite or overflowing losses, or a step size that
    collapsed): the message names the flow time reached. A ``dmft.DivergenceError``, so sweeps
    record the point as diverged."""

    def __init__(self, message: str, time: float):
        self.step = None
        self.time = time
        self.learning_rate = None
        FloatingPointError.__init__(self, message)


@dataclass(frozen=True)
class Tableau:
    """An explicit embedded Runge-Kutta pair for an autonomous flow whose last stage is evaluated at
    the new state (FSAL): coefficients ``a`` (row ``i``: stage ``i``), weights ``b`` of the solution
    (order ``order``) and ``b_low`` of the embedded one (order ``order - 1``)."""

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_low: tuple[float, ...]
    order: int


BOGACKI_SHAMPINE = Tableau(
    name="Bogacki-Shampine 3(2)",
    a=((), (0.5,), (0.0, 0.75), (2 / 9, 1 / 3, 4 / 9)),
    b=(2 / 9, 1 / 3, 4 / 9, 0.0),
    b_low=(7 / 24, 1 / 4, 1 / 3, 1 / 8),
    order=3,
)


@dataclass
class FlowTrace:
    """What :func:`integrate_flow` recorded: times ``(n,)``, per-seed losses ``(seeds, n)``."""

    time: np.ndarray
    test_loss: np.ndarray
    train_loss: np.ndarray
    info: dict


def integrate_flow(
    network,
    drive: Callable,
    train_change: Callable,
    training,
    *,
    eigenvalues,
    beta_star,
    noise_power: float,
    xp,
    progress: bool = False,
) -> FlowTrace:
    """Integrate the gradient flow of ``network`` to ``training.time`` (see the module docstring).

    Parameters
    ----------
    network : a network of :mod:`finite_size.networks` (its ``params`` are advanced in place).
    drive : ``beta -> (u, train_loss)``, the drive and the train loss per seed.
    train_change : ``d -> (seeds,)``, ``d^T Sigma_hat d / D`` of a change ``d`` of ``beta``.
    training : ``dmft.GradientFlow`` (``time``, ``save_at``, ``rtol``).
    eigenvalues, beta_star : ``(D,)`` covariance eigenvalues and ``(seeds, D)`` teachers (arrays of
        ``xp``): the test loss is ``|beta - beta*|_Lambda^2 / D + sigma^2``.
    noise_power : ``sigma^2``.
    xp : the array namespace.
    progress : a tqdm bar over flow time.

    Returns
    -------
    :class:`FlowTrace` at ``training.save_at`` (or at every accepted step), with ``info``: the
    method, accepted and rejected steps, network evaluations, smallest and largest step.

    Raises
    ------
    FlowDivergenceError : non-finite or overflowing losses, or a collapsed step size.
    """
    tableau = BOGACKI_SHAMPINE
    end, rtol = float(training.time), float(training.rtol)
    targets = list(training.save_at) if training.save_at is not None else [end]
    record_every_step = training.save_at is None
    if targets[-1] < end:
        targets.append(end)  # integrate to `time`; only the save_at times are reported
    saved_targets = set(training.save_at or ())

    dim = beta_star.shape[-1]

    def weighted_norm(vectors):
        """``|v|_Lambda^2 / D`` per seed."""
        return xp.sum(eigenvalues * vectors**2, axis=1) / dim

    def test_loss(beta_now):
        return weighted_norm(beta_now - beta_star) + noise_power

    params = network.parameters()
    beta, cache = network.evaluate(params)
    u, train = drive(beta)
    test = test_loss(beta)
    stage_one = network.direction(u, cache, params)
    initial_test = to_host(xp, test)
    atol = _ABSOLUTE_FLOOR * rtol * float(np.sqrt(np.mean(initial_test)))
    evaluations = 1

    times, tests, trains = [], [], []

    def record(t, test_now, train_now):
        times.append(t)
        tests.append(to_host(xp, test_now))
        trains.append(to_host(xp, train_now))

    if record_every_step or 0.0 in saved_targets:
        record(0.0, test, train)
    _check_finite(initial_test, to_host(xp, train), initial_test, 0.0)

    def error_ratio(beta_high, beta_low, test_high, train_high):
        """max over seeds of the error over its allowance (NaN and inf count as failures)."""
        difference = beta_high - beta_low
        test_scale = 0.5 * rtol * xp.sqrt(xp.maximum(test_high - noise_power, 0.0)) + atol
        train_scale = 0.5 * rtol * xp.sqrt(xp.maximum(train_high, 0.0)) + atol
        ratios = xp.maximum(
            xp.sqrt(weighted_norm(difference)) / test_scale, xp.sqrt(train_change(difference)) / train_scale
        )
        ratio = float(to_host(xp, xp.max(ratios)))
        return ratio if math.isfinite(ratio) else math.inf

    # first step: a hundredth of the time in which beta would move by its distance to the teacher
    probe = 1e-6
    probe_beta = network.evaluate(shifted_parameters(params, [(probe, stage_one)], xp))[0]
    evaluations += 1
    speed = to_host(xp, xp.sqrt(weighted_norm(probe_beta - beta))) / probe
    distance = to_host(xp, xp.sqrt(xp.maximum(test - noise_power, 0.0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        natural = np.where(speed > 0, distance / speed, np.inf)
    step = float(min(end, 0.01 * np.min(natural))) if np.all(np.isfinite(natural)) else 1e-3 * end
    step = max(step, 1e-9 * end)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=end, desc="gradient flow", unit="time")

    t, accepted, rejected, smallest, largest = 0.0, 0, 0, math.inf, 0.0
    target_index = 1 if targets[0] == 0.0 else 0  # time 0 is recorded above
    exponent = -1.0 / tableau.order  # the error estimate is of order `order - 1`
    try:
        while t < end:
            target = targets[target_index]
            clipped = t + step >= target
            trial = target - t if clipped else step
            stages = [stage_one]
            for row in tableau.a[1:]:
                stage_params = shifted_parameters(params, [(trial * a, k) for a, k in zip(row, stages)], xp)
                stage_beta, stage_cache = network.evaluate(stage_params)
                stage_u, stage_train = drive(stage_beta)
                stages.append(network.direction(stage_u, stage_cache, stage_params))
            evaluations += len(tableau.a) - 1
            # the last stage sits at the new state (a[-1] == b): its beta and train loss are the step's
            low_params = shifted_parameters(params, [(trial * b, k) for b, k in zip(tableau.b_low, stages)], xp)
            beta_low = network.evaluate(low_params)[0]
            stage_test = test_loss(stage_beta)
            ratio = error_ratio(stage_beta, beta_low, stage_test, stage_train)
            if ratio > 1.0:
                rejected += 1
                step = trial * max(0.2, 0.9 * ratio**exponent) if math.isfinite(ratio) else 0.2 * trial
                _check_step(step, t, ratio)
                continue
            for b, k in zip(tableau.b, stages):
                if b != 0.0:
                    apply_update(params, k, trial * b)
            t = target if clipped else t + trial
            accepted += 1
            smallest, largest = min(smallest, trial), max(largest, trial)
            stage_one = stages[-1]
            test_now = to_host(xp, stage_test)
            _check_finite(test_now, to_host(xp, stage_train), initial_test, t)
            if record_every_step or (clipped and target in saved_targets):
                record(t, stage_test, stage_train)
            if clipped:
                target_index += 1
            proposal = trial * min(5.0, max(0.2, 0.9 * ratio**exponent)) if ratio > 0 else 5.0 * trial
            step = max(proposal, step) if clipped else proposal
            _check_step(step, t, ratio)
            if bar is not None:
                bar.update(trial)
                bar.set_postfix(steps=accepted, rejected=rejected, refresh=False)
    finally:
        if bar is not None:
            bar.close()

    return FlowTrace(
        time=np.asarray(times),
        test_loss=np.stack(tests, axis=1),
        train_loss=np.stack(trains, axis=1),
        info={
            "flow_method": tableau.name,
            "rtol": rtol,
            "accepted_steps": accepted,
            "rejected_steps": rejected,
            "network_evaluations": evaluations + accepted + rejected,  # + the embedded beta of each try
            "smallest_step": smallest if accepted else None,
            "largest_step": largest if accepted else None,
        },
    )


def _check_step(step: float, t: float, ratio: float) -> None:
    """Raise when the step size has collapsed (below ``_COLLAPSE`` of the time reached, or of 1)."""
    if step < _COLLAPSE * max(1.0, t):
        raise FlowDivergenceError(
            f"gradient flow: the step size collapsed to {step:.3g} at flow time {t:.6g} "
            f"(error ratio {ratio:.3g}): the simulated losses are blowing up or not finite; "
            "a finite network's flow cannot diverge at finite time, so check the data and "
            "model scales (or report it)",
            t,
        )


def _check_finite(test: np.ndarray, train: np.ndarray, initial_test: np.ndarray, t: float) -> None:
    for name, values in (("test", test), ("train", train)):
        if not np.all(np.isfinite(values)) or np.any(values > DIVERGENCE_FACTOR * initial_test):
            raise FlowDivergenceError(
                f"simulated {name} loss of the gradient flow diverged (non-finite or overflowing) at "
                f"flow time {t:.6g}; a finite network's flow cannot diverge at finite time, so this is "
                "a numerical blow-up: check the data and model scales (or report it)",
                t,
            )
