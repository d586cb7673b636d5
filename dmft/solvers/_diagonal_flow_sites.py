"""Sites of the diagonal-network gradient flow, full batch (docs/continuous_time.md, "Diagonal
networks"): the NumPy reference of the right-hand side and of the opening of coordinates.

Under gradient flow every site keeps a conserved quantity (``a b = s^2`` at depth 2,
``a^{2-L} + b^{2-L}`` at depth ``L != 2``), so its state is one number, ``rho(t) = int_0^t u``::

    L = 1:   a = s + rho,   b = s - rho                                F = 2 rho,            k = 2
    L = 2:   a = s e^{2 rho},   b = s e^{-2 rho}                       F = 2 s^2 sinh(4 rho), k = 8 s^2 cosh(4 rho)
    L >= 3:  a^{2-L} = s^{2-L} - (L-2) L rho,  b^{2-L} = s^{2-L} + (L-2) L rho,  k = L^2 (a^{2L-2} + b^{2L-2})

with ``k = dF/drho``, and the flow is ``rho' = u``. ``u`` is the discrete solver's ``u`` at equal
time, computed from the current state of all sites of the replica::

    v = beta* - F(rho),   B_j = <v, c_j>,   Gamma_j = E[v z_j],   L_j = B_j + alpha^{-1/2} Gamma_j
    u = v + alpha^{-1/2} sum_j Gamma_j c_j + alpha^{-1/2} sum_j L_j z_j

(the memory term ``int R_Delta(t, t') v(t') dt'`` and the field ``psi(t)`` in innovation
coordinates: :mod:`._diagonal_sites`). Between the times at which coordinates are opened this is
an ordinary differential equation for ``rho`` (coupled through the site means), integrated by
:mod:`dmft.solvers.diagonal_flow`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._diagonal_reference import open_coordinate
from ._diagonal_sites import SiteFailure, SiteProblem, gram_error, matching_failure, negative_innovation

__all__ = ["FlowEvaluation", "FlowSites", "factor_map", "flow_sites"]


def factor_map(depth: int, init_scale: float):
    """``rho -> (F, k)``: the network coefficient ``F = a^L - b^L`` and ``k = dF / drho`` along the
    flow's conserved curve (module docstring). Outside the curve's domain (``L >= 3``:
    ``(L-2) L rho >= s^{2-L}``) the values are NaN."""
    s = init_scale
    if depth == 1:
        return lambda rho: (2.0 * rho, np.full_like(rho, 2.0))
    if depth == 2:
        s2 = s * s
        return lambda rho: (2.0 * s2 * np.sinh(4.0 * rho), 8.0 * s2 * np.cosh(4.0 * rho))
    L = depth
    base = s ** (2 - L)
    power = -1.0 / (L - 2)

    def values(rho):
        with np.errstate(invalid="ignore", divide="ignore"):
            lower = base - (L - 2) * L * rho
            a = np.where(lower > 0, np.abs(lower) ** power, np.nan)
            b = (base + (L - 2) * L * rho) ** power
        return a**L - b**L, L * L * (a ** (2 * L - 2) + b ** (2 * L - 2))

    return values


@dataclass
class FlowEvaluation:
    """The right-hand side ``u`` at a state, with the per-replica diagnostics at that state:
    ``test`` (``C_v(t,t) + sigma^2``), ``train`` (``C_Delta(t,t)``), ``innovation`` (``d``) and
    the sites' ``v`` and ``k = dF/drho`` (``(R, M_r)``)."""

    u: np.ndarray
    v: np.ndarray
    k: np.ndarray
    test: np.ndarray
    train: np.ndarray
    innovation: np.ndarray


class FlowSites:
    """The full-batch flow's sites in NumPy: teachers, innovation coordinates, noise site.

    ``problem`` is a :class:`SiteProblem` (its learning rates are unused); ``teacher`` the
    sites' ``beta*`` (replica-major); ``rng`` spawns one generator per replica, which draws the
    ``N(0, 1)`` of the replica's sites for each coordinate it opens: coordinate ``r`` of replica
    ``i`` gets the same numbers whenever it is opened, so solves at different tolerances (whose
    coordinates open at slightly different times) are paired realisations.
    """

    def __init__(self, problem: SiteProblem, teacher: np.ndarray, rng: np.random.Generator, capacity: int = 32):
        R, Mr = problem.replicas, problem.sites_per_replica
        self.problem = problem
        self.rngs = rng.spawn(R)
        self.values = factor_map(problem.depth, problem.init_scale)
        self.beta_star = np.asarray(teacher, dtype=float).reshape(R, Mr)
        self.C = np.zeros((R, capacity, Mr))
        self.Z = np.zeros((R, capacity, Mr))
        self.cg = np.zeros((R, capacity))
        self.rank = np.zeros(R, dtype=np.int64)
        self.rank_capped_at: float | None = None
        self.capped_innovation = 0.0

    def evaluate(self, rho: np.ndarray) -> FlowEvaluation:
        """``u(rho)`` and the diagnostics (``rho``: ``(R, M_r)``)."""
        p = self.problem
        ia, s2, Mr = p.inv_sqrt_alpha, p.noise_variance, p.sites_per_replica
        F, k = self.values(rho)
        v = self.beta_star - F
        b_rows = np.matmul(self.C, v[:, :, None])[..., 0] / Mr + s2 * self.cg
        g_rows = np.matmul(self.Z, v[:, :, None])[..., 0] / Mr
        l_rows = b_rows + ia * g_rows
        test = np.mean(v * v, axis=1) + s2
        innovation = test - np.sum(b_rows * b_rows, axis=1)
        train = np.sum(l_rows * l_rows, axis=1) + np.maximum(innovation, 0.0)
        u = v + ia * (np.matmul(g_rows[:, None, :], self.C)[:, 0, :] + np.matmul(l_rows[:, None, :], self.Z)[:, 0, :])
        return FlowEvaluation(u, v, k, test, train, innovation)

    def check(self, evaluation: FlowEvaluation, time: float) -> SiteFailure | None:
        """A negative innovation variance beyond rounding at an accepted state, else ``None``."""
        for i in range(self.problem.replicas):
            failure = negative_innovation(time, i, evaluation.innovation[i], evaluation.test[i])
            if failure is not None:
                return failure
        return None

    def open(self, evaluation: FlowEvaluation, time: float) -> tuple[bool, SiteFailure | None]:
        """Open a coordinate in every replica whose innovation exceeds ``cutoff * train``
        (``d > ROUNDING_FLOOR * test`` too). Returns ``(opened any, failure)``."""
        from ._diagonal_sites import opens_coordinate

        p = self.problem
        s2, Mr = p.noise_variance, p.sites_per_replica
        which = [i for i in range(p.replicas) if opens_coordinate(
            p, evaluation.innovation[i], evaluation.test[i], evaluation.train[i])]
        if p.max_rank:
            capped = [i for i in which if self.rank[i] >= p.max_rank]
            for i in capped:
                self.rank_capped_at = time if self.rank_capped_at is None else self.rank_capped_at
                self.capped_innovation = max(self.capped_innovation, evaluation.innovation[i] / evaluation.train[i])
            which = [i for i in which if i not in capped]
        if not which:
            return False, None
        if self.rank.max() + 1 >= self.cg.shape[1]:
            self.grow(self.cg.shape[1])
        v = evaluation.v
        for i in which:
            r = self.rank[i]
            z = self.rngs[i].standard_normal(Mr)
            C, Z = self.coordinates(i)
            b_row = C[:r] @ v[i] / Mr + s2 * self.cg[i, :r]
            sd = math.sqrt(evaluation.innovation[i])
            self.cg[i, r] = (1.0 - self.cg[i, :r] @ b_row) / sd
            _, _, residual = open_coordinate(C, Z, self.cg[i], r, v[i], b_row, sd, z, p)
            if not residual > 0.0:
                return True, matching_failure(time, i, residual)
            self.rank[i] += 1
        return True, None

    def coordinates(self, replica: int):
        """``(C, Z)`` of one replica as ``(capacity, M_r)`` arrays (views: writes go to the sites)."""
        return self.C[replica], self.Z[replica]

    def grow(self, columns: int) -> None:
        """Room for ``columns`` more coordinates per replica."""
        p = self.problem
        self.C, self.Z = (np.concatenate([x, np.zeros((p.replicas, columns, p.sites_per_replica))], axis=1)
                          for x in (self.C, self.Z))
        self.cg = np.pad(self.cg, ((0, 0), (0, columns)))

    @property
    def orthogonality_error(self) -> float:
        """``max |<c_j, c_k> - delta_jk|`` over replicas."""
        s2 = self.problem.noise_variance
        return max(gram_error(self.coordinates(i)[0][:r], self.cg[i, :r], s2) for i, r in enumerate(self.rank))


def flow_sites(problem: SiteProblem, teacher: np.ndarray, rng: np.random.Generator, backend: str) -> FlowSites:
    """The flow's sites on ``backend``: ``"numpy"`` (this module) or ``"numba"``
    (:mod:`._diagonal_flow_numba`, compiled site means and field)."""
    if backend == "numba":
        from ._diagonal_flow_numba import NumbaFlowSites

        return NumbaFlowSites(problem, teacher, rng)
    if backend != "numpy":
        raise ValueError(f"the diagonal flow runs on backend 'numpy' or 'numba', got {backend!r}")
    return FlowSites(problem, teacher, rng)
