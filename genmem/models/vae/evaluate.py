"""Importance-sampled log p of every row under every unit, with effective sample size and ELBO.

The estimate of unit u for row x is
``logsumexp_s[log p(x|z_s) + log p(z_s) − log q(z_s|x)] − log S`` with
``z_s = loc(x) + scale(x)·ε_s``. The S draws ``ε_s`` of a unit are shared by
all rows (counter-based, stream :data:`EVAL_STREAM` of the unit's key), so a
row's score does not depend on which other rows are scored with it, on the
chunking, or on the other units. All units run at once; rows × samples are
chunked, the network runs in the model's dtype and the log-sum-exp
accumulates in float64 on the device, read back once.
"""
import math
import warnings

import numpy as np
import torch

from ...philox import normal

#: Counter tag of the importance samples.
EVAL_STREAM = 4

#: Share of a unit's rows whose importance sampling collapsed (ESS < 2) above which the VAE warns.
COLLAPSED_ESS_SHARE = 0.01


def importance_eps(keys, num_samples, latent_dim, dtype):
    """The S importance draws ε of each unit, [U, S, L] (stream :data:`EVAL_STREAM` of ``keys`` [U, 2])."""
    eps = normal(keys, num_samples * latent_dim, 0, 0, EVAL_STREAM, dtype=dtype)
    return eps.view(len(keys), num_samples, latent_dim)


@torch.no_grad()
def evaluate(units, X, eps, chunk):
    """Per-row IS log p, effective sample size ``(Σw)²/Σw²`` and Monte Carlo ELBO under every unit.

    Parameters
    ----------
    units : Units
    X : Tensor [N, D]
        Rows to score, on the units' device and dtype.
    eps : Tensor [U, S, L]
        Importance draws (:func:`importance_eps`).
    chunk : int
        Rows × samples evaluated at once per unit.

    Returns
    -------
    dict of str to ndarray
        ``"loglik"``, ``"ess"``, ``"elbo"``: float64 [U, N] each.
    """
    n_units, n_samples = eps.shape[:2]
    n_rows = X.shape[0]
    chunk_samples = min(n_samples, int(chunk))
    chunk_rows = max(1, int(chunk) // n_samples)
    out = torch.empty((3, n_units, n_rows), dtype=torch.float64, device=X.device)
    for start in range(0, n_rows, chunk_rows):
        x = X[start:start + chunk_rows]
        loc, log_sigma = units.encode(x)
        data = units.likelihood.data_terms(x.unsqueeze(0))
        lse = lse2 = torch.full((n_units, x.shape[0]), -math.inf, dtype=torch.float64, device=X.device)
        total = torch.zeros_like(lse)
        for s0 in range(0, n_samples, chunk_samples):
            e = eps[:, s0:s0 + chunk_samples].unsqueeze(1)
            log_w = units.log_weights(data, loc, log_sigma, e).to(torch.float64)
            lse = torch.logaddexp(lse, torch.logsumexp(log_w, -1))
            lse2 = torch.logaddexp(lse2, torch.logsumexp(2.0 * log_w, -1))
            total += log_w.sum(-1)
        rows = slice(start, start + x.shape[0])
        out[0, :, rows] = lse - math.log(n_samples)
        out[1, :, rows] = torch.exp(2.0 * lse - lse2)
        out[2, :, rows] = total / n_samples
    loglik, ess, elbo = out.cpu().numpy()
    return {"loglik": loglik, "ess": ess, "elbo": elbo}


def warn_collapsed(ess, n_samples, labels=None):
    """Warn when importance sampling collapsed (ESS < 2) for more than 1 % of the rows of any unit.

    Parameters
    ----------
    ess : array [U, N] or [N]
        Effective sample sizes (:func:`evaluate`).
    n_samples : int
        S, for the message.
    labels : list of str, optional
        Names of the units (default: "the model").
    """
    ess = np.atleast_2d(ess)
    collapsed = ess < 2.0
    share = collapsed.mean(1)
    if share.max() > COLLAPSED_ESS_SHARE:
        worst = int(np.argmax(share))
        name = "the model" if labels is None else labels[worst]
        warnings.warn(
            f"importance sampling collapsed (effective sample size < 2 of {n_samples} samples) for "
            f"{int(collapsed.any(0).sum())} of {ess.shape[1]} rows, in {int((share > 0).sum())} of {len(ess)} "
            f"unit(s) (worst: {name}, {100 * share[worst]:.0f}% of its rows); their log p are unreliable: "
            "raise num_samples or train longer",
            stacklevel=3,
        )
