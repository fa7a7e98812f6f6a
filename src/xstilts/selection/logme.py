"""LogME (You et al. 2021, ICML, arXiv 2102.11005): the log marginal evidence of a
Bayesian linear model of the labels on frozen features.

For features F (N x D) and one target column y (N), the model is y = F w + noise with
prior w ~ N(0, I / alpha) and noise ~ N(0, 1 / beta). Its evidence is

    log p(y | F, alpha, beta) = N/2 log beta + D/2 log alpha - N/2 log 2 pi
        - beta/2 ||F m - y||^2 - alpha/2 m'm - 1/2 log |A|,
    A = alpha I + beta F'F,   m = beta A^-1 F'y.

alpha and beta are set by MacKay's fixed-point updates (gamma = sum_i beta s_i /
(alpha + beta s_i) over the eigenvalues s_i of F'F; alpha = gamma / m'm; beta =
(N - gamma) / ||F m - y||^2), all computed on one SVD of F. The score of a label set
is the maximised evidence divided by N, averaged over its target columns (one per
class, one-hot). Higher is better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_ITERATIONS = 11
"""The paper's reference implementation stops after at most 11 updates..."""
TOLERANCE = 1e-3
"""...or once alpha and beta each change by less than this fraction."""
TINY = 1e-12


@dataclass(frozen=True)
class Spectrum:
    """What the evidence needs of F: the non-zero eigenvalues s of F'F (largest
    first), the feature dimension D (zero eigenvalues make up the rest) and N."""

    eigenvalues: np.ndarray
    n: int
    d: int


@dataclass(frozen=True)
class ColumnFit:
    evidence: float
    """Maximised log evidence divided by N."""
    alpha: float
    beta: float
    iterations: int


def spectrum(features: np.ndarray) -> tuple[Spectrum, np.ndarray]:
    """The spectrum LogME works on, and the matrix U' (rows: the left singular vectors
    of the non-zero singular values, largest first) that gives a target column's
    coordinates z = U'y. The smaller of F'F (D x D) and FF' (N x N) is decomposed."""
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    wide = n <= d
    eigenvalues, vectors = np.linalg.eigh(f @ f.T if wide else f.T @ f)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, vectors = np.clip(eigenvalues[order], 0.0, None), vectors[:, order]
    keep = eigenvalues > eigenvalues.max(initial=0.0) * 1e-12
    if wide:  # the eigenvectors of FF' are U itself
        return Spectrum(eigenvalues[keep], n, d), vectors[:, keep].T
    # U'y = diag(1/sigma) V'F'y over the non-zero singular values
    sigma = np.sqrt(eigenvalues[keep])
    return Spectrum(eigenvalues[keep], n, d), (vectors[:, keep] / sigma).T @ f.T


def _terms(
    s: np.ndarray, z: np.ndarray, y_norm2: float, alpha: float, beta: float
) -> tuple[float, float, float]:
    """gamma, m'm and ||F m - y||^2 for given alpha and beta."""
    gamma = float(np.sum(beta * s / (alpha + beta * s)))
    m_norm2 = float(np.sum((beta * np.sqrt(s) * z / (alpha + beta * s)) ** 2))
    # F m - y has coordinates -alpha z / (alpha + beta s) on U, and y's part off U
    residual = float(np.sum((alpha * z / (alpha + beta * s)) ** 2))
    residual += max(y_norm2 - float(z @ z), 0.0)
    return gamma, m_norm2, residual


def log_evidence(spec: Spectrum, z: np.ndarray, y_norm2: float, alpha: float, beta: float) -> float:
    """The log evidence (not divided by N) of a target column with coordinates ``z``
    and squared norm ``y_norm2``, for given alpha and beta."""
    s, n, d = spec.eigenvalues, spec.n, spec.d
    _, m_norm2, residual = _terms(s, z, y_norm2, alpha, beta)
    # log|A| over all D eigenvalues: alpha + beta s for the non-zero ones, alpha for the rest
    log_det = float(np.sum(np.log(alpha + beta * s))) + (d - s.size) * math.log(alpha)
    return (
        n / 2 * math.log(beta)
        + d / 2 * math.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * residual
        - alpha / 2 * m_norm2
        - log_det / 2
    )


def fit_column(
    spec: Spectrum,
    z: np.ndarray,
    y_norm2: float,
    *,
    max_iterations: int = MAX_ITERATIONS,
    tolerance: float = TOLERANCE,
) -> ColumnFit:
    """Maximise the evidence of one target column over alpha and beta (fixed point)."""
    alpha, beta = 1.0, 1.0
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        gamma, m_norm2, residual = _terms(spec.eigenvalues, z, y_norm2, alpha, beta)
        # Guards for a column the features fit exactly (residual 0) or not at all (m 0).
        new_alpha = max(gamma, TINY) / max(m_norm2, TINY)
        new_beta = max(spec.n - gamma, TINY) / max(residual, TINY)
        settled = abs(new_alpha - alpha) / alpha < tolerance
        settled = settled and abs(new_beta - beta) / beta < tolerance
        alpha, beta = new_alpha, new_beta
        if settled:
            break
    evidence = log_evidence(spec, z, y_norm2, alpha, beta) / spec.n
    return ColumnFit(evidence, alpha, beta, iterations)


def logme(
    features: np.ndarray,
    targets: np.ndarray,
    *,
    max_iterations: int = MAX_ITERATIONS,
    tolerance: float = TOLERANCE,
) -> float:
    """LogME of ``features`` (N x D) for ``targets``: an N x C matrix of real-valued
    target columns (one-hot class indicators, or binary ones), or a vector of class
    indices (made one-hot over the classes present). The mean over columns of the
    maximised evidence divided by N."""
    columns = _target_columns(targets)
    if columns.shape[0] != len(features):
        raise ValueError(f"{len(features)} feature rows but {columns.shape[0]} target rows")
    spec, projector = spectrum(features)
    fits = []
    for column in columns.T:
        z = projector @ column
        norm2 = float(column @ column)
        fit = fit_column(spec, z, norm2, max_iterations=max_iterations, tolerance=tolerance)
        fits.append(fit)
    return float(np.mean([fit.evidence for fit in fits]))


def _target_columns(targets: np.ndarray) -> np.ndarray:
    values = np.asarray(targets)
    if values.ndim == 2:
        return values.astype(np.float64)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError("targets: an N x C matrix, or a vector of integer class indices")
    classes = np.unique(values)
    return (values[:, None] == classes[None, :]).astype(np.float64)
