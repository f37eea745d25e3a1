"""EM for B Gaussian mixtures at once, on a leading model dimension, in torch.

The EM follows scikit-learn's :class:`~sklearn.mixture.GaussianMixture`:
``reg_covar`` is added to the diagonal of every covariance after each M-step,
component masses carry ``10·eps`` so that an empty component stays finite,
the lower bound of an iteration is the mean per-example log-likelihood under
the parameters *before* its M-step, and EM stops when that bound changes by
less than ``tol``.

Numerics: full covariances are handled through their Cholesky factors (the
upper-triangular precision factor ``P = L⁻ᵀ`` with ``P Pᵀ = Σ⁻¹``, as
scikit-learn's ``precisions_cholesky_``), responsibilities through
log-sum-exp, and the data in chunks. One pass over the data per iteration
computes both the E-step and the M-step's sufficient statistics; second
moments are taken around the previous iteration's means and shifted to the new
ones, which is exact and keeps cancellation small.

Batching: the B mixtures (e.g. K-fold units times ``n_init``) each see every
row, their responsibilities multiplied by their own training mask, and each
is frozen at the iteration where it converges, so each ends where fitting it
alone would (up to the order of floating-point sums).
"""
import logging
import math
from typing import NamedTuple

import numpy as np
import torch

from ..errors import GenmemError

logger = logging.getLogger(__name__)

LOG_2PI = math.log(2.0 * math.pi)


def _precision_cholesky(covariances, covariance_type):
    """Precision factors ``P`` of covariances [B, C, D, D] ('full') or [B, C, D] ('diag').

    'full': upper-triangular ``P = L⁻ᵀ`` with ``L Lᵀ = Σ``; 'diag': ``1 / sqrt(σ²)``.
    """
    if covariance_type == "full":
        chol, info = torch.linalg.cholesky_ex(covariances)
        valid = bool((info == 0).all())
    else:
        valid = bool((covariances > 0).all())
    if not valid:
        raise GenmemError(
            "GMM fitting failed: a mixture component has an ill-defined (singular) covariance, e.g. "
            "from collapsed or duplicate examples; increase reg_covar, use fewer components or scale the data"
        )
    if covariance_type == "diag":
        return torch.rsqrt(covariances)
    eye = torch.eye(chol.shape[-1], dtype=chol.dtype, device=chol.device).expand_as(chol)
    return torch.linalg.solve_triangular(chol, eye, upper=False).transpose(-1, -2)


def log_normaliser(weights, precisions_chol, covariance_type):
    """``log w_k + log det P_k − D/2 log 2π`` [B, C]: the per-component constant of log w_k N(x)."""
    if covariance_type == "full":
        log_det = torch.log(torch.diagonal(precisions_chol, dim1=-2, dim2=-1)).sum(-1)
    else:
        log_det = torch.log(precisions_chol).sum(-1)
    return torch.log(weights) + log_det - 0.5 * precisions_chol.shape[-1] * LOG_2PI


def log_joint(X, means, precisions_chol, log_norm, covariance_type):
    """``log w_k N(x | μ_k, Σ_k)`` [B, C, r] for rows ``X`` [r, D], and ``x − μ_k`` [B, C, r, D]."""
    diff = X - means[:, :, None, :]
    if covariance_type == "full":
        y = diff @ precisions_chol
    else:
        y = diff * precisions_chol[:, :, None, :]
    return log_norm[..., None] - 0.5 * (y * y).sum(-1), diff


def chunk_rows(chunk_size, n_models, n_components):
    """Rows per chunk, so that a chunk's [B, C, rows, D] temporaries hold about chunk_size·D numbers."""
    return max(1, chunk_size // (n_models * n_components))


def zero_stats(n_models, n_components, n_features, covariance_type, like):
    """Zeroed sufficient statistics (Σr, Σr·d, Σr·d dᵀ or Σr·d²) with d the difference to a reference mean."""
    second = (n_features, n_features) if covariance_type == "full" else (n_features,)
    shape = (n_models, n_components)
    return (like.new_zeros(shape), like.new_zeros(shape + (n_features,)), like.new_zeros(shape + second))


def accumulate(stats, diff, resp, covariance_type):
    """Add one chunk's statistics: ``diff`` [B, C, r, D] the rows minus the reference points
    (broadcast from [r, D] when those are shared), ``resp`` [B, C, r] the responsibilities."""
    mass, first, second = stats
    mass += resp.sum(-1)
    first += (resp[..., None, :] @ diff)[..., 0, :]
    if covariance_type == "full":
        second += (diff * resp[..., None]).transpose(-1, -2) @ diff
    else:
        second += (resp[..., None, :] @ (diff * diff))[..., 0, :]


def params_from_stats(stats, reference, reg_covar, covariance_type, n_rows=None):
    """M-step: weights [B, C], means [B, C, D] and covariances from statistics around ``reference``.

    Weights are the masses divided by their sum, or by ``n_rows`` when given
    (scikit-learn's initialisation).
    """
    mass, first, second = stats
    mass = mass + 10 * torch.finfo(mass.dtype).eps
    shift = first / mass[..., None]
    means = reference + shift
    if covariance_type == "full":
        covariances = second / mass[..., None, None] - shift[..., :, None] * shift[..., None, :]
        covariances = 0.5 * (covariances + covariances.transpose(-1, -2))
        covariances.diagonal(dim1=-2, dim2=-1).add_(reg_covar)
    else:
        covariances = second / mass[..., None] - shift * shift + reg_covar
    weights = mass / (mass.sum(-1, keepdim=True) if n_rows is None else n_rows)
    return weights, means, covariances


def _em_pass(X, masks, means, precisions_chol, log_norm, covariance_type, chunk_size):
    """One E-step over all rows of ``X`` with the statistics of the M-step that follows it.

    Returns the summed log-likelihood [B] over each model's rows (all rows
    when ``masks`` is None, else those where ``masks`` [B, N] is True) and the
    statistics around the current ``means``.
    """
    n_models, n_components, n_features = means.shape
    loglik = X.new_zeros(n_models)
    stats = zero_stats(n_models, n_components, n_features, covariance_type, X)
    rows = chunk_rows(chunk_size, n_models, n_components)
    for start in range(0, X.shape[0], rows):
        joint, diff = log_joint(X[start:start + rows], means, precisions_chol, log_norm, covariance_type)
        evidence = torch.logsumexp(joint, 1)
        resp = torch.exp(joint - evidence[:, None, :])
        if masks is not None:
            mask = masks[:, start:start + rows]
            evidence = torch.where(mask, evidence, 0.0)
            resp = resp * mask[:, None, :]
        loglik += evidence.sum(-1)
        accumulate(stats, diff, resp, covariance_type)
    return loglik, stats


def mixture_log_prob(X, weights, means, precisions_chol, covariance_type, chunk_size):
    """log p(x) [B, N] of every row of ``X`` under each of B mixtures."""
    log_norm = log_normaliser(weights, precisions_chol, covariance_type)
    rows = chunk_rows(chunk_size, means.shape[0], means.shape[1])
    return torch.cat([
        torch.logsumexp(log_joint(X[s:s + rows], means, precisions_chol, log_norm, covariance_type)[0], 1)
        for s in range(0, X.shape[0], rows)
    ], dim=1)


class EMResult(NamedTuple):
    weights: torch.Tensor  # [B, C]
    means: torch.Tensor  # [B, C, D]
    covariances: torch.Tensor  # [B, C, D, D] or [B, C, D]
    precisions_chol: torch.Tensor  # like covariances
    lower_bound: np.ndarray  # float64 [B]
    n_iter: np.ndarray  # int [B]
    converged: np.ndarray  # bool [B]


def run_em(X, masks, weights, means, covariances, *, covariance_type, tol, reg_covar, max_iter,
            chunk_size, on_done=None):
    """EM for B mixtures from their initial parameters, each frozen once it converges.

    ``masks`` [B, N] (bool tensor or None for all rows) selects each model's
    training rows. ``on_done`` is called with the (NumPy) indices of models that
    have just stopped.
    """
    n_models = means.shape[0]
    counts = masks.sum(1).to(X.dtype) if masks is not None else X.new_full((n_models,), X.shape[0])
    weights, means, covariances = weights.clone(), means.clone(), covariances.clone()
    precisions_chol = _precision_cholesky(covariances, covariance_type)
    lower_bound = np.full(n_models, -np.inf)
    n_iter = np.zeros(n_models, dtype=np.int64)
    converged = np.zeros(n_models, dtype=bool)
    active = np.arange(n_models)
    for iteration in range(1, max_iter + 1):
        idx = torch.as_tensor(active, device=X.device)
        current_means, current_precisions_chol = means[idx], precisions_chol[idx]
        log_norm = log_normaliser(weights[idx], current_precisions_chol, covariance_type)
        loglik, stats = _em_pass(X, None if masks is None else masks[idx], current_means, current_precisions_chol,
                                 log_norm, covariance_type, chunk_size)
        new_weights, new_means, new_covariances = params_from_stats(stats, current_means, reg_covar,
                                                                     covariance_type)
        precisions_chol[idx] = _precision_cholesky(new_covariances, covariance_type)
        weights[idx], means[idx], covariances[idx] = new_weights, new_means, new_covariances
        bound = (loglik / counts[idx]).double().cpu().numpy()
        done = np.abs(bound - lower_bound[active]) < tol
        lower_bound[active] = bound
        n_iter[active] = iteration
        converged[active[done]] = True
        logger.debug("EM iteration %d: %d of %d mixtures converged", iteration, int(done.sum()), len(active))
        if on_done is not None and done.any():
            on_done(active[done])
        active = active[~done]
        if not len(active):
            break
    if on_done is not None and len(active):
        on_done(active)
    return EMResult(weights, means, covariances, precisions_chol, lower_bound, n_iter, converged)
