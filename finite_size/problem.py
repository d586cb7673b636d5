"""Sampling the teacher and the training set of THEORY.md section 1, for ``seeds`` problems at once.

Full-batch gradient descent sees the data only through

    Sigma_hat = X^T X / P,   X^T y / P,   y^T y / P,

so when ``P >= D`` the training set is never materialised: ``Z^T Z`` (``Z = X Lambda^{-1/2}``) is drawn
directly from its Bartlett decomposition ``Z = Q R`` (``R`` upper triangular, ``R_ii ~ chi_{P-i}``,
``R_ij ~ N(0, 1)`` above the diagonal, ``Q`` Haar and independent of ``R``), and the label noise
through ``Q^T eps ~ N(0, I_D)`` and ``|eps|^2 - |Q^T eps|^2 ~ chi^2_{P-D}``. The cost is ``O(D^3)``
whatever ``P``. When ``P < D`` the examples themselves are kept (a step then costs ``O(P D)``).
All problem sampling uses NumPy, so both backends see the same numbers for the same ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._backend import to_device

__all__ = [
    "direction_spectrum",
    "sample_teacher",
    "sample_inputs",
    "example_count",
    "population_drive",
    "full_batch_bytes",
    "FullBatchData",
    "sample_full_batch",
    "full_batch_from_examples",
]


def direction_spectrum(data, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Covariance eigenvalue and teacher variance of each of the ``dim`` input directions.

    The finite problem must have the spectral measure of the DMFT's shares, in whole directions
    (no silent rounding):

    * isotropic data, or a :class:`dmft.Spectrum` of equal shares: the ``modes`` shares must split
      ``dim`` exactly (``dim`` a multiple of ``modes``);
    * a :class:`dmft.Spectrum` with ``weights``: share ``k`` gets ``weights[k] * dim`` directions,
      which must be whole numbers (to 1e-6);
    * a :class:`dmft.PowerLaw` with ``modes <= dim``: its exact equal shares (``modes`` must divide
      ``dim``), also where the DMFT uses the many-mode quadrature (docs/power_law.md);
    * a :class:`dmft.PowerLaw` with ``modes > dim``: the power law with ``dim`` modes, one direction
      each (``PowerLaw(a, b, modes=dim)``): the same eigenvalues ``k^{-a}`` and, up to the
      normalisation ``sum_{k <= dim} / sum_{k <= modes}``, the same signal on the modes ``k <= dim``;
      the modes beyond ``dim`` are missing (they carry a fraction ``~ dim^{-a b} / (a b zeta(a b + 1))``
      of the initial loss, learned only at times ``t ~ dim^a``).
    """
    from dmft.data import PowerLaw

    spectrum = data.spectrum
    if isinstance(spectrum, PowerLaw):
        if spectrum.modes > dim:
            spectrum = spectrum.replace(modes=dim)
        spectrum = spectrum.resolve(exact=True)
    else:
        spectrum = data.resolved_spectrum()
    eigenvalues = np.asarray(spectrum.eigenvalues)
    variances = np.asarray(spectrum.teacher_variances)
    if spectrum.weights is None:
        if dim % spectrum.modes:
            raise ValueError(
                f"`dim` ({dim}) must be a multiple of the spectrum's number of modes ({spectrum.modes}) "
                "so that every mode gets an equal share of the input directions"
            )
        counts = np.full(spectrum.modes, dim // spectrum.modes)
    else:
        exact_counts = np.asarray(spectrum.weights) * dim
        counts = np.rint(exact_counts).astype(int)
        if np.any(np.abs(exact_counts - counts) > 1e-6) or counts.sum() != dim:
            worst = int(np.argmax(np.abs(exact_counts - counts)))
            raise ValueError(
                f"`dim` ({dim}) times the spectrum's `weights` must give whole numbers of directions; "
                f"share {worst} would get {exact_counts[worst]:.6g}"
            )
    return np.repeat(eigenvalues, counts), np.repeat(variances, counts)


def sample_teacher(data, dim: int, seeds: int, rng: np.random.Generator) -> np.ndarray:
    """``beta*`` of shape ``(seeds, dim)``: ``N(0, b_j)``, or the sparse prior of ``data.teacher``."""
    _, variances = direction_spectrum(data, dim)
    if data.teacher is None:
        return rng.standard_normal((seeds, dim)) * np.sqrt(variances)
    teacher = data.teacher
    nonzero = rng.random((seeds, dim)) < teacher.density
    return np.where(nonzero, teacher.scale * rng.standard_normal((seeds, dim)), 0.0)


def sample_inputs(rng: np.random.Generator, scale: np.ndarray, seeds: int, count: int) -> np.ndarray:
    """Inputs ``X`` of shape ``(seeds, count, D)`` with covariance ``diag(scale**2)``, drawn on the
    host with NumPy (every backend sees the same numbers; move them with ``to_device``)."""
    dim = scale.shape[0]
    return rng.standard_normal((seeds, count, dim)) * scale


def example_count(name: str, ratio: float, dim: int) -> int:
    """``round(ratio * dim)`` examples, at least one: an empty data set or batch is an error that
    names ``name`` (``alpha`` or ``batch_ratio``) and what to change."""
    count = int(round(ratio * dim))
    if count < 1:
        raise ValueError(
            f"`{name}` * `dim` = {ratio:g} * {dim} = {ratio * dim:.3g} rounds to 0 examples: the "
            f"{'training set' if name == 'alpha' else 'batch'} would be empty; raise `{name}` to at "
            f"least {1 / dim:.3g} or `dim` to at least {math.ceil(1 / ratio)}"
        )
    return count


@dataclass(frozen=True)
class FullBatchData:
    """The training set as full-batch gradient descent needs it.

    Exactly one representation is set: ``examples`` (``X`` of shape ``(seeds, P, D)`` and ``y`` of
    shape ``(seeds, P)``) when ``P < D``, else the sufficient statistics ``covariance`` (``X^T X / P``,
    ``(seeds, D, D)``), ``input_label`` (``X^T y / P``, ``(seeds, D)``) and ``label_power``
    (``y^T y / P``, ``(seeds,)``).
    """

    count: int
    examples: tuple | None = None
    covariance: object = None
    input_label: object = None
    label_power: object = None

    def to(self, xp) -> "FullBatchData":
        """The same data as arrays of the array namespace ``xp``."""
        convert = lambda array: None if array is None else to_device(xp, array)  # noqa: E731
        return FullBatchData(
            count=self.count,
            examples=None if self.examples is None else tuple(convert(a) for a in self.examples),
            covariance=convert(self.covariance),
            input_label=convert(self.input_label),
            label_power=convert(self.label_power),
        )

    def residual_drive(self, beta, xp):
        """``(u, train_loss)`` at predictor ``beta`` (``(seeds, D)``).

        ``u = sqrt(D) X^T (y - X beta / sqrt(D)) / P`` (THEORY.md section 2) and the train loss
        ``(1/P) |y - X beta / sqrt(D)|^2`` per seed.
        """
        dim = beta.shape[-1]
        root = math.sqrt(dim)
        if self.examples is not None:
            inputs, labels = self.examples
            residual = labels - xp.matmul(inputs, beta[:, :, None])[:, :, 0] / root
            u = root * xp.matmul(residual[:, None, :], inputs)[:, 0, :] / self.count
            return u, xp.mean(residual**2, axis=1)
        covariance_beta = xp.matmul(self.covariance, beta[:, :, None])[:, :, 0]
        u = root * self.input_label - covariance_beta
        train_loss = (
            self.label_power
            - 2.0 * xp.sum(beta * self.input_label, axis=1) / root
            + xp.sum(beta * covariance_beta, axis=1) / dim
        )
        return u, train_loss

    def quadratic_form(self, vectors, xp):
        """``v^T Sigma_hat v / D`` per seed for ``vectors`` ``(seeds, D)``: how much a change ``v``
        of the predictor moves the train residual (``|X v|^2 / (P D)``)."""
        dim = vectors.shape[-1]
        if self.examples is not None:
            projected = xp.matmul(self.examples[0], vectors[:, :, None])[:, :, 0]
            return xp.sum(projected**2, axis=1) / (self.count * dim)
        return xp.sum(vectors * xp.matmul(self.covariance, vectors[:, :, None])[:, :, 0], axis=1) / dim


def population_drive(beta, beta_star, eigenvalues, noise_power: float, xp):
    """``(u, loss)`` of the population: ``u = E[sqrt(D) x (y - f(x))] = Lambda (beta* - beta)``
    and the population loss ``sum_j lambda_j (beta_j - beta*_j)^2 / D + sigma^2`` per seed (the
    population gradient flow, ``alpha=None``)."""
    residual = beta_star - beta
    weighted = eigenvalues * residual
    return weighted, xp.sum(weighted * residual, axis=1) / beta.shape[-1] + noise_power


def full_batch_bytes(alpha: float, dim: int, seeds: int) -> dict[str, float]:
    """Peak bytes of :func:`sample_full_batch` and of what it keeps (float64), by part."""
    count = int(round(alpha * dim))
    if count < dim:
        return {"training examples": 8.0 * seeds * (count * dim + count)}
    # Bartlett sampling holds the triangular factor, Z^T Z and X^T X at once (then keeps one)
    return {"data statistics": 8.0 * seeds * 3 * dim * dim}


def full_batch_from_examples(inputs: np.ndarray, labels: np.ndarray, *, keep_examples: bool) -> FullBatchData:
    """The :class:`FullBatchData` of given examples ``X`` ``(seeds, P, D)``, ``y`` ``(seeds, P)``."""
    count = inputs.shape[1]
    if keep_examples:
        return FullBatchData(count=count, examples=(inputs, labels))
    return FullBatchData(
        count=count,
        covariance=np.matmul(inputs.transpose(0, 2, 1), inputs) / count,
        input_label=np.matmul(labels[:, None, :], inputs)[:, 0, :] / count,
        label_power=np.mean(labels**2, axis=1),
    )


def sample_full_batch(
    beta_star: np.ndarray, eigenvalues: np.ndarray, alpha: float, noise: float, rng: np.random.Generator
) -> FullBatchData:
    """Draw ``P = round(alpha D)`` examples for every seed (see the module docstring)."""
    seeds, dim = beta_star.shape
    count = example_count("alpha", alpha, dim)
    scale = np.sqrt(eigenvalues)
    root = math.sqrt(dim)
    if count < dim:
        inputs = sample_inputs(rng, scale, seeds, count)
        labels = np.matmul(inputs, beta_star[:, :, None])[..., 0] / root
        labels += noise * rng.standard_normal((seeds, count))
        return full_batch_from_examples(inputs, labels, keep_examples=True)
    # Bartlett: Z = Q R with R upper triangular; Z^T Z = R^T R, Z^T eps = R^T c, c ~ N(0, I_D).
    upper = np.triu(rng.standard_normal((seeds, dim, dim)), k=1)
    diagonal = np.sqrt(rng.chisquare(count - np.arange(dim), size=(seeds, dim)))
    upper[:, np.arange(dim), np.arange(dim)] = diagonal
    white_covariance = np.matmul(upper.transpose(0, 2, 1), upper)  # Z^T Z
    projected_noise = rng.standard_normal((seeds, dim))  # c = Q^T eps
    noise_power = np.sum(projected_noise**2, axis=1)
    if count > dim:
        noise_power += rng.chisquare(count - dim, size=seeds)
    white_noise = np.matmul(upper.transpose(0, 2, 1), projected_noise[:, :, None])[..., 0]  # Z^T eps
    gram = white_covariance * scale[:, None] * scale[None, :]  # X^T X
    input_noise = white_noise * scale  # X^T eps
    gram_teacher = np.matmul(gram, beta_star[:, :, None])[..., 0]
    input_label = gram_teacher / root + noise * input_noise  # X^T y
    label_power = (
        np.sum(beta_star * gram_teacher, axis=1) / dim
        + 2.0 * noise * np.sum(beta_star * input_noise, axis=1) / root
        + noise**2 * noise_power
    )  # y^T y
    return FullBatchData(
        count=count, covariance=gram / count, input_label=input_label / count, label_power=label_power / count
    )
