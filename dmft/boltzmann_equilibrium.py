"""Equilibrium of Langevin-trained spherical Boltzmann machines by random-matrix theory.

The ``t -> infinity`` answer of :class:`dmft.Langevin` training with an equilibrium negative phase
(docs/spherical.md, section "Equilibrium", where every equation below is derived). The couplings'
stationary law is::

    P(W) ~ exp( -(gamma eta N / 4) tr W^2 + (eta N / 2) tr(C W) - (K eta / beta) ln Z_beta(W) ),
    Z_beta(W) = E_{x uniform on |x|^2 = N} exp(beta x^T W x / 2),

and at large ``N`` it is a GOE bulk (semicircle of variance ``1/(gamma eta)``) with the data spikes
``C / gamma``, whose top eigenvalue is pushed down by the large deviation that ``Z_beta^{-K eta/beta}``
favours. With ``g = G(mu)``, the semicircle's Stieltjes transform at the spherical multiplier ``mu``
(everything written per unit ``eta`` so that ``eta = inf``, MAP, is a plain limit: ``eps = 1/eta``):

* outliers (BBP): data mode ``a`` leaves the bulk when ``c_a > sqrt(gamma eps)``, at
  ``c_a / gamma + eps / c_a``, squared overlap ``1 - gamma eps / c_a^2``;
* paramagnetic phase when ``g_1 = gamma / c_1`` (or ``sqrt(gamma / eps)`` without an outlier) is at
  least ``beta``: ``g = beta``, ``mu = 1/beta + beta eps / gamma``, nothing condensed;
* condensed phase: the top ``d`` modes merge at ``mu = 1/g + g eps / gamma`` where ``g`` solves
  ``sum_{a <= d} (c_a - gamma / g) = (K / beta) (beta - g)`` and ``d`` counts the modes with
  ``gamma / c_a < g`` (the cascade: ``d`` grows one mode at a time as ``gamma`` falls); the
  condensed fraction is ``M = 1 - g / beta``, of which mode ``a`` carries ``M_a = (c_a - gamma/g)/K``;
  ``e_a`` projects on the merged eigenspace with weight ``1 - g eps / c_a``;
* sticky phase: when that root would pass the bulk edge, the top eigenvalues stick to the edge
  ``2 sqrt(eps / gamma)`` (``g = sqrt(gamma / eps)``): ``M = 1 - g / beta``, partly on the outlier
  modes pulled to the edge, the rest on the bulk's edge eigenvectors.

:func:`equilibrium` returns one :class:`Equilibrium`; :func:`phase_diagram` evaluates the same
closed forms on a grid of up to any number of swept parameters at once (vectorised) and returns an
``xarray.Dataset``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._serialize import config_from_dict, config_to_dict
from .boltzmann import DataCovariance, Langevin, SphericalBoltzmann, SpikedTeacher, forward_kl

__all__ = ["Equilibrium", "equilibrium", "phase_diagram", "PHASES", "SWEEPABLE"]

PHASES = ("paramagnetic", "condensed", "sticky")
"""Phase names; ``phase_diagram`` stores the index into this tuple."""

SWEEPABLE = (
    "model.inverse_temperature",
    "training.prior_precision",
    "training.likelihood_weight",
    "data.eigenvalues",
    "data.strength",
    "data.samples",
)
"""The dotted parameters the equilibrium depends on (training time, chain speed, ``save_at``,
``rtol`` and the initial overlaps do not enter it)."""

_SCALARS = (
    "phase",
    "condensed_modes",
    "multiplier",
    "stieltjes",
    "condensed_fraction",
    "bulk_condensed_fraction",
    "bulk_edge",
    "top_eigenvalue",
    "top_overlap",
    "log_partition",
    "log_evidence",
    "log_evidence_per_weight",
    "train_loss",
    "test_loss",
    "reverse_kl",
    "forward_kl",
)
_MODES = ("mode_eigenvalue", "mode_overlap", "mode_condensed_fraction", "data_overlap", "is_outlier", "is_condensed")


# --------------------------------------------------------------------------- the vectorised core


def _solve_arrays(beta, gamma, eps, spectrum, samples, omega=None) -> dict[str, np.ndarray]:
    """The closed forms of the module docstring, vectorised over points.

    Parameters
    ----------
    beta, gamma, eps : arrays of one shape ``S``: inverse temperature, prior precision and
        ``1 / eta`` (0 for MAP).
    spectrum : ``S + (K,)``, each row sorted in decreasing order; rows of smaller ``K`` padded with
        zeros (a zero eigenvalue is never an outlier and never condenses).
    samples : ``S``, the ``K`` of each point (``sum_a c_a = K`` is not needed here).
    omega : ``S`` teacher strengths, or ``None`` (no teacher: no KL divergences).

    Returns a dict of arrays named as the :class:`Equilibrium` fields (``phase`` an index into
    :data:`PHASES`), per-mode arrays with a trailing axis of length ``K``.
    """
    beta, gamma, eps, samples = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (beta, gamma, eps, samples)))
    c = np.asarray(spectrum, dtype=float)
    shape = beta.shape
    if c.shape[:-1] != shape:
        raise ValueError(f"`spectrum` must have shape {shape} + (K,), got {c.shape}")
    K = samples
    with np.errstate(divide="ignore", invalid="ignore"):
        sqrt_c = np.sqrt(gamma / eps)  # sqrt(gamma eta): G at the bulk edge (inf for MAP)
        threshold = np.sqrt(gamma * eps)  # BBP: c_a > sqrt(gamma / eta)
    outlier = c > threshold[..., None]
    natural_g = np.where(outlier, gamma[..., None] / np.where(outlier, c, 1.0), sqrt_c[..., None])
    kappa = K / beta  # the negative phase's weight per unit eta

    # phases ------------------------------------------------------------------------------------
    paramagnetic = natural_g[..., 0] >= beta
    pull_at_edge = np.sum(np.where(outlier, c - threshold[..., None], 0.0), axis=-1)
    # at a tie (the root exactly at the edge, e.g. every mode an outlier and eta = beta) both phases
    # give the same state; the tolerance makes the label "sticky" there, not a round-off coin toss
    sticky = ~paramagnetic & (beta > sqrt_c) & (pull_at_edge <= kappa * (beta - sqrt_c) * (1 + 1e-12))
    condensed = ~paramagnetic & ~sticky

    # the cascade: the first d whose root leaves mode d+1 unpulled -------------------------------
    g = np.where(paramagnetic, beta, np.where(sticky, sqrt_c, np.nan))
    d = np.zeros(shape, dtype=np.int64)
    pending = condensed.copy()
    total = np.zeros(shape)
    width = c.shape[-1]
    for count in range(1, width + 1):
        total = total + c[..., count - 1]
        root = _quadratic_root(kappa, K - total, count * gamma)
        following = natural_g[..., count] if count < width else np.full(shape, np.inf)
        following = np.where(outlier[..., count] if count < width else False, following, np.inf)
        accept = pending & (root <= following)
        g = np.where(accept, root, g)
        d = np.where(accept, count, d)
        pending &= ~accept
    if np.any(pending):  # unreachable when the inputs are valid: the last d has no following mode
        raise FloatingPointError("the condensed phase's cascade found no consistent number of modes")

    # per mode ----------------------------------------------------------------------------------
    index = np.arange(width)
    pulled = np.where(
        condensed[..., None],
        index < d[..., None],
        sticky[..., None] & outlier,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        edge = 2.0 * np.sqrt(eps / gamma)
        mu = np.where(sticky, edge, 1.0 / g + g * eps / gamma)
        safe_c = np.where(c > 0, c, 1.0)
        natural_value = c / gamma[..., None] + eps[..., None] / safe_c
        natural_overlap = 1.0 - gamma[..., None] * eps[..., None] / safe_c**2
        pinned_overlap = 1.0 - g[..., None] * eps[..., None] / safe_c
        mode_value = np.where(pulled, np.where(sticky, edge, mu)[..., None], np.where(outlier, natural_value, edge[..., None]))
        mode_overlap = np.where(pulled, pinned_overlap, np.where(outlier, natural_overlap, 0.0))
        mode_fraction = np.where(pulled, (c - gamma[..., None] / g[..., None]) / K[..., None], 0.0)
    M = np.where(paramagnetic, 0.0, 1.0 - g / beta)
    data_overlap = np.sqrt(np.maximum(mode_fraction * mode_overlap, 0.0))
    bulk_fraction = np.maximum(M - mode_fraction.sum(axis=-1), 0.0)
    bulk_fraction = np.where(sticky, bulk_fraction, 0.0)  # exactly 0 in the other phases
    top_value = np.maximum(mode_value[..., 0], edge)
    top_overlap = mode_overlap[..., 0]

    # free energies --------------------------------------------------------------------------------
    # psi = ln Z_beta(W) / N = (1/2)[(beta - g) mu + g^2 eps / (2 gamma) + ln(g / beta)], split into
    # its eta^0 part and the part carried by 1/eps (the mu = 1/g term).
    with np.errstate(divide="ignore", invalid="ignore"):
        psi_weight = 0.5 * ((beta - g) / g + np.log(g / beta))  # the eps^0 part
        psi_noise = 0.5 * ((beta - g) * g / gamma + 0.5 * g**2 / gamma)  # the coefficient of eps
        log_partition = psi_weight + eps * psi_noise
        # log-evidence per N: Phi = eta Phi_1 + Phi_0 (docs/spherical.md "Log-evidence")
        gc = g[..., None] * np.where(pulled, safe_c, 1.0) / gamma[..., None]
        rate_modes = np.where(
            pulled,
            -gamma[..., None] / (4.0 * g[..., None] ** 2) + c / (2.0 * g[..., None]) - c**2 / (4.0 * gamma[..., None]),
            0.0,
        )
        entropy_modes = np.where(pulled, -0.5 - 0.5 * np.log(gc) + 0.5 * gc, 0.0)
        phi_1 = np.sum(c**2, axis=-1) / (4.0 * gamma) + rate_modes.sum(axis=-1) - kappa * psi_weight
        phi_0 = entropy_modes.sum(axis=-1) - kappa * psi_noise
        log_evidence = np.where(eps > 0, phi_1 / eps + phi_0, np.sign(phi_1) * np.inf)
        log_evidence_per_weight = phi_1 + eps * phi_0
        # posterior means of W_aa: c_a / gamma, or mu - eps / c_a for a pulled mode
        mean_diagonal = np.where(pulled, mu[..., None] - eps[..., None] / safe_c, c / gamma[..., None])
        train_loss = -beta / (2.0 * K) * np.sum(c * mean_diagonal, axis=-1) + log_partition
    out = {
        "phase": np.where(paramagnetic, 0, np.where(condensed, 1, 2)).astype(np.int64),
        "condensed_modes": np.where(paramagnetic, 0, pulled.sum(axis=-1)).astype(np.int64),
        "multiplier": mu,
        "stieltjes": g,
        "condensed_fraction": M,
        "bulk_condensed_fraction": bulk_fraction,
        "bulk_edge": edge,
        "top_eigenvalue": top_value,
        "top_overlap": top_overlap,
        "log_partition": log_partition,
        "log_evidence": log_evidence,
        "log_evidence_per_weight": log_evidence_per_weight,
        "train_loss": train_loss,
        "mode_eigenvalue": mode_value,
        "mode_overlap": mode_overlap,
        "mode_condensed_fraction": mode_fraction,
        "data_overlap": data_overlap,
        "is_outlier": outlier,
        "is_condensed": pulled,
    }
    if omega is None:
        out["test_loss"] = train_loss
        return out
    omega = np.broadcast_to(np.asarray(omega, dtype=float), shape)
    teacher_fraction = 1.0 - 1.0 / omega  # m*: the teacher's condensed fraction
    c1 = c[..., 0]
    teacher_overlap = K * teacher_fraction / c1  # (u . e_1)^2
    teacher_free_energy = 0.5 * (omega - 1.0 - np.log(omega))  # ln Z_1(W*) / N
    with np.errstate(divide="ignore", invalid="ignore"):
        model_entropy = 0.5 * (0.5 * g**2 * eps / gamma - np.log(g / beta))  # E ln P_W / N
    out["reverse_kl"] = model_entropy - 0.5 * omega * teacher_overlap * data_overlap[..., 0] ** 2 + teacher_free_energy
    out["forward_kl"] = forward_kl(omega, beta, teacher_fraction * teacher_overlap * mean_diagonal[..., 0], log_partition)
    out["test_loss"] = out["forward_kl"]
    return out


def _quadratic_root(a, minus_b, c) -> np.ndarray:
    """The positive root of ``a g^2 - minus_b g - c = 0`` (``a, c > 0``), without cancellation."""
    discriminant = np.sqrt(minus_b**2 + 4.0 * a * c)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(minus_b >= 0, (minus_b + discriminant) / (2.0 * a), 2.0 * c / (discriminant - minus_b))


# --------------------------------------------------------------------------- configurations -> arrays


def _check_types(model, data, training) -> None:
    if not isinstance(model, SphericalBoltzmann):
        raise TypeError(f"`model` must be dmft.SphericalBoltzmann, got {type(model).__name__}")
    if not isinstance(data, (DataCovariance, SpikedTeacher)):
        raise TypeError(f"`data` must be dmft.DataCovariance or dmft.SpikedTeacher, got {type(data).__name__}")
    if not isinstance(training, Langevin):
        raise TypeError(f"`training` must be dmft.Langevin, got {type(training).__name__}")


def _parameters(model, data, training) -> dict:
    """The numbers the equilibrium depends on, for one configuration."""
    spectrum = np.asarray(data.resolve().eigenvalues, dtype=float)
    eta = training.likelihood_weight
    return {
        "beta": model.inverse_temperature,
        "gamma": training.prior_precision,
        "eps": 0.0 if eta == math.inf else 1.0 / eta,
        "spectrum": spectrum,
        "samples": float(spectrum.size),
        "omega": data.strength if isinstance(data, SpikedTeacher) else None,
    }


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True, eq=False)
class Equilibrium:
    """The ``t -> infinity`` state of Langevin training with an equilibrium negative phase, at large
    ``N`` (docs/spherical.md, "Equilibrium"; ``eps = 1/eta``, ``g = G(mu)``).

    Attributes
    ----------
    model, data, training : the configuration (``training.time``, ``chain_speed``, ``save_at``,
        ``rtol`` and ``initial_overlaps`` do not enter).
    phase : ``"paramagnetic"`` (no mode condensed), ``"condensed"`` (the top ``d`` modes merged at
        ``mu``, above the bulk) or ``"sticky"`` (the top eigenvalues stuck at the bulk edge).
    condensed_modes : ``d``, the number of data modes in the condensate (paramagnetic: 0; sticky:
        the outliers pulled to the edge, possibly 0 when the condensate is all bulk).
    multiplier : ``mu``, the spherical multiplier of the sampling law
        ``P_W(x) ~ exp(beta x^T (W - mu) x / 2)`` (the chain's ``kappa`` is ``nu mu``); the common
        eigenvalue of the condensed modes in the condensed phase, the bulk edge in the sticky one.
    stieltjes : ``g = G(mu)``, the bulk's Stieltjes transform at ``mu`` (``beta`` when paramagnetic).
    condensed_fraction : ``M = 1 - g / beta``, the fraction of ``|x|^2`` on the top eigenspace.
    bulk_condensed_fraction : the part of ``M`` on bulk-edge eigenvectors (sticky phase only).
    bulk_edge : ``2 / sqrt(gamma eta)``, the semicircle's edge (0 for MAP).
    top_eigenvalue : the largest eigenvalue of ``W``.
    top_overlap : squared overlap of ``e_1`` (the top data direction) with the top eigenspace: the
        top eigenvector, or the span of the ``d`` merged ones (condensed, sticky); 0 without outlier.
    mode_eigenvalue : ``(K,)`` the eigenvalue data mode ``a`` sits at: its BBP outlier, ``mu`` if
        condensed, the bulk edge if stuck there or not an outlier.
    mode_overlap : ``(K,)`` squared overlap of ``e_a`` with that eigenvector (or merged eigenspace);
        0 for a mode inside the bulk.
    mode_condensed_fraction : ``(K,)`` ``M_a = (c_a - gamma / g) / K``, the condensate on mode
        ``a``'s direction of the merged eigenspace (posterior mean; sums to ``M`` less the bulk part).
    data_overlap : ``(K,)`` ``s_a = sqrt(E <(x . e_a)^2> / N) = sqrt(M_a mode_overlap_a)``, the
        equilibrium value of the dynamics' ``s_a`` (posterior mean of the square).
    is_outlier, is_condensed : ``(K,)`` booleans per data mode.
    log_partition : ``ln Z_beta(W) / N`` (relative to the uniform law on the sphere).
    log_evidence : ``Phi = (1/N) ln E_{W ~ GOE(1/(gamma eta))} prod_mu P_{W,beta}(x_mu)^(eta/beta)``,
        the normaliser of the couplings' stationary law per ``N`` (at ``beta = 1``: the tempered
        Bayesian evidence with prior precision ``gamma eta``); ``+-inf`` for MAP.
    log_evidence_per_weight : ``Phi / eta`` (finite for MAP: the maximised log posterior per unit
        likelihood weight).
    train_loss : the training negative log-likelihood per sample and site,
        ``-(beta / 2K) sum_a c_a E[W_aa] + log_partition`` (as ``finite_size`` reports it).
    test_loss : ``forward_kl`` for teacher data, else ``train_loss`` (as ``dmft.solve`` reports it).
    reverse_kl, forward_kl : ``KL(P_W || P_teacher) / N`` and ``KL(P_teacher || P_W) / N`` for
        :class:`dmft.SpikedTeacher` data (posterior means), ``None`` otherwise.
    """

    model: SphericalBoltzmann
    data: DataCovariance | SpikedTeacher
    training: Langevin
    phase: str
    condensed_modes: int
    multiplier: float
    stieltjes: float
    condensed_fraction: float
    bulk_condensed_fraction: float
    bulk_edge: float
    top_eigenvalue: float
    top_overlap: float
    mode_eigenvalue: np.ndarray
    mode_overlap: np.ndarray
    mode_condensed_fraction: np.ndarray
    data_overlap: np.ndarray
    is_outlier: np.ndarray
    is_condensed: np.ndarray
    log_partition: float
    log_evidence: float
    log_evidence_per_weight: float
    train_loss: float
    test_loss: float
    reverse_kl: float | None = None
    forward_kl: float | None = None

    def to_dict(self) -> dict:
        """Everything as JSON-able values (configurations as in :meth:`dmft.Result.config`)."""
        out: dict[str, Any] = {name: config_to_dict(getattr(self, name)) for name in ("model", "data", "training")}
        for field in dataclasses.fields(self):
            if field.name in out:
                continue
            value = getattr(self, field.name)
            out[field.name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    @classmethod
    def from_dict(cls, payload: Mapping) -> "Equilibrium":
        """Inverse of :meth:`to_dict`."""
        values = dict(payload)
        for name in ("model", "data", "training"):
            values[name] = config_from_dict(values[name])
        for name in _MODES:
            values[name] = np.asarray(values[name], dtype=bool if name.startswith("is_") else float)
        return cls(**values)

    def save(self, path: str | Path) -> Path:
        """Write to a JSON file (floats round-trip exactly)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), allow_nan=True, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Equilibrium":
        """Read a file written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def __repr__(self) -> str:
        return (
            f"Equilibrium(phase={self.phase!r}, condensed_modes={self.condensed_modes}, "
            f"multiplier={self.multiplier:.6g}, condensed_fraction={self.condensed_fraction:.6g}, "
            f"top_eigenvalue={self.top_eigenvalue:.6g}, log_evidence={self.log_evidence:.6g})"
        )


def equilibrium(model: SphericalBoltzmann, data, training: Langevin) -> Equilibrium:
    """The ``t -> infinity`` answer of ``training`` at large ``N``, by random-matrix theory.

    Implements the closed forms of the module docstring (derived in docs/spherical.md,
    "Equilibrium"): phase, cascade, outliers and overlaps, multiplier, condensed fractions,
    log-evidence, and for :class:`dmft.SpikedTeacher` data the reverse and forward KL divergences.

    Parameters
    ----------
    model : :class:`dmft.SphericalBoltzmann` (its ``inverse_temperature`` is that of the training
        chain and of generation).
    data : :class:`dmft.DataCovariance`, or :class:`dmft.SpikedTeacher` (its typical spectrum).
    training : :class:`dmft.Langevin`; only ``prior_precision`` and ``likelihood_weight`` enter
        (``math.inf``: MAP).

    Returns
    -------
    :class:`Equilibrium`.

    Example
    -------
    >>> eq = equilibrium(dmft.SphericalBoltzmann(), dmft.SpikedTeacher(strength=2.0, samples=2),
    ...                  dmft.Langevin(prior_precision=0.5, likelihood_weight=10.0))
    >>> eq.phase, eq.condensed_modes
    ('condensed', 1)
    """
    _check_types(model, data, training)
    p = _parameters(model, data, training)
    arrays = _solve_arrays(
        np.float64(p["beta"]), np.float64(p["gamma"]), np.float64(p["eps"]), p["spectrum"], np.float64(p["samples"]), p["omega"]
    )
    scalars = {}
    for name in _SCALARS:
        if name not in arrays:
            continue
        value = arrays[name].item()
        scalars[name] = value
    scalars["phase"] = PHASES[scalars["phase"]]
    modes = {name: np.array(arrays[name]) for name in _MODES}
    return Equilibrium(model=model, data=data, training=training, **scalars, **modes)


# --------------------------------------------------------------------------- phase diagrams


def phase_diagram(model: SphericalBoltzmann, data, training: Langevin, over: Mapping[str, Any]):
    """The equilibrium over a grid of swept parameters, in one vectorised evaluation.

    Parameters
    ----------
    model, data, training : the base configuration (as for :func:`equilibrium`).
    over : ``{dotted name: values}``, one or more of :data:`SWEEPABLE`, e.g.
        ``{"training.prior_precision": np.geomspace(0.05, 5, 200),
        "training.likelihood_weight": np.geomspace(0.5, 50, 200)}``; each value is checked by
        the configuration object it is set on (a bad one raises naming the parameter). Every data
        value of a ``data.*`` sweep must keep the same kind of data.

    Returns
    -------
    ``xarray.Dataset`` with one dimension per swept parameter (named by its last component, with
    the values as coordinates), plus ``mode`` (``1..K``, the largest ``K`` of the grid; rows with
    fewer modes are padded with zero-eigenvalue modes that never condense) for the per-mode
    variables. Variables: every :class:`Equilibrium` field (``phase`` as an index into
    :data:`PHASES`, listed in its ``flag_meanings`` attribute; ``reverse_kl``, ``forward_kl`` for
    teacher data only). Attributes: the base configuration (JSON) and ``swept``.

    Example
    -------
    >>> ds = phase_diagram(dmft.SphericalBoltzmann(), dmft.SpikedTeacher(3.0, 3), dmft.Langevin(),
    ...                    over={"training.prior_precision": np.geomspace(0.05, 5, 200),
    ...                          "training.likelihood_weight": np.geomspace(0.5, 50, 200)})
    >>> ds["condensed_modes"].plot()
    """
    import xarray as xr

    _check_types(model, data, training)
    if not isinstance(over, Mapping) or not over:
        raise TypeError(f"`over` must be a non-empty dict of dotted name -> values, got {over!r}")
    base = {"model": model, "data": data, "training": training}
    names, dims, values = [], [], []
    for name, listed in over.items():
        if name not in SWEEPABLE:
            raise ValueError(f"phase_diagram parameter {name!r}: the equilibrium depends on {', '.join(SWEEPABLE)} only")
        if not isinstance(listed, (list, tuple, np.ndarray)) or isinstance(listed, np.ndarray) and listed.ndim == 0:
            raise TypeError(f"phase_diagram parameter {name!r}: values must be a list, got {listed!r}")
        listed = [v.item() if isinstance(v, np.generic) else v for v in listed]
        if name == "data.eigenvalues":
            listed = [tuple(float(x) for x in v) for v in listed]
        if not listed:
            raise ValueError(f"phase_diagram parameter {name!r}: the list of values is empty")
        names.append(name)
        dims.append(name.split(".")[1])
        values.append(listed)
    shape = tuple(len(v) for v in values)
    start = _parameters(model, data, training)
    grids = {key: np.full(shape, _scalar(start[key])) for key in ("beta", "gamma", "eps", "samples", "omega")}
    grids["spectrum"] = np.broadcast_to(start["spectrum"], shape + start["spectrum"].shape)

    def lay(key, positions, array):  # broadcast an array over the axes `positions` into the grid
        trailing = np.shape(array)[len(positions):]
        layout = [shape[i] if i in positions else 1 for i in range(len(shape))]
        grids[key] = np.broadcast_to(np.reshape(array, layout + list(trailing)), shape + trailing)

    for position, name in enumerate(names):  # model and training fields: one number each
        root, field = name.split(".")
        if root == "data":
            continue
        line = [_parameters(**dict(base, **{root: _replaced(base[root], name, field, v)})) for v in values[position]]
        key = {"inverse_temperature": "beta", "prior_precision": "gamma", "likelihood_weight": "eps"}[field]
        lay(key, [position], np.array([p[key] for p in line]))
    data_axes = [i for i, name in enumerate(names) if name.startswith("data.")]
    if data_axes:  # data fields act together (strength and samples both set the spectrum)
        points = []
        for combination in itertools.product(*(values[i] for i in data_axes)):
            fields = {names[i].split(".")[1]: v for i, v in zip(data_axes, combination)}
            described = ", ".join(f"data.{k}={v!r}" for k, v in fields.items())
            points.append(_parameters(model, _replaced(data, described, None, fields), training))
        width = max(p["spectrum"].size for p in points)
        sub = tuple(shape[i] for i in data_axes)
        lay("spectrum", data_axes, np.array([_padded(p["spectrum"], width) for p in points]).reshape(sub + (width,)))
        lay("samples", data_axes, np.array([p["samples"] for p in points]).reshape(sub))
        lay("omega", data_axes, np.array([_scalar(p["omega"]) for p in points]).reshape(sub))
    teacher = isinstance(data, SpikedTeacher)
    arrays = _solve_arrays(
        grids["beta"], grids["gamma"], grids["eps"], grids["spectrum"], grids["samples"], grids["omega"] if teacher else None
    )
    coords = {}
    for dim, name, listed in zip(dims, names, values):
        # tuples of eigenvalues are indexed (the spectra are stored in the variable `spectrum`)
        coords[dim] = np.arange(len(listed)) if name == "data.eigenvalues" else np.asarray(listed, dtype=float)
    width = grids["spectrum"].shape[-1]
    coords["mode"] = np.arange(1, width + 1)
    if len(set(dims)) != len(dims):
        raise ValueError(f"phase_diagram parameters {names} repeat a dimension")
    variables = {
        name: (dims + ["mode"] if name in _MODES else dims, value, {"long_name": _LONG_NAMES[name]} if name in _LONG_NAMES else {})
        for name, value in arrays.items()
    }
    variables["spectrum"] = (dims + ["mode"], np.array(grids["spectrum"]), {"long_name": "data eigenvalues c_a (zero-padded)"})
    ds = xr.Dataset(variables, coords=coords)  # one construction: assigning 24 variables one by one is 10x slower
    ds["phase"].attrs.update(flag_values=list(range(len(PHASES))), flag_meanings=" ".join(PHASES))
    ds.attrs["swept"] = json.dumps(dict(zip(dims, names)))
    ds.attrs["configuration"] = json.dumps({k: config_to_dict(v) for k, v in base.items()})
    ds.attrs["study"] = "phase_diagram"
    return ds


_LONG_NAMES = {
    "phase": "phase (0 paramagnetic, 1 condensed, 2 sticky)",
    "condensed_modes": "number of condensed data modes d",
    "multiplier": "spherical multiplier mu",
    "condensed_fraction": "condensed fraction M",
    "top_eigenvalue": "top eigenvalue of W",
    "top_overlap": "squared overlap of e_1 with the top eigenspace",
    "log_evidence": "log-evidence per N",
    "reverse_kl": "KL(model || teacher) per N",
    "forward_kl": "KL(teacher || model) per N",
}


def _scalar(value) -> float:
    return np.nan if value is None else float(value)


def _replaced(config, name: str, field: str | None, value):
    """``config`` with ``field = value`` (or the dict ``value`` of fields); errors name the parameter."""
    changes = value if field is None else {field: value}
    try:
        return dataclasses.replace(config, **changes)
    except (TypeError, ValueError) as error:
        described = name if field is None else f"{name}={value!r}"
        raise type(error)(f"phase_diagram parameter {described}: {error}") from error


def _padded(spectrum: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros(width)
    out[: spectrum.size] = spectrum
    return out
