"""k-means clustering in torch, used to initialise the Gaussian mixture.

Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with scikit-learn's
``2 + log(k)`` local trials per centre) followed by Lloyd iterations until the
labels stop changing. Random numbers come from a NumPy ``Generator``, so a seed
gives the same clustering on every device (up to floating-point ties).
"""
import numpy as np
import torch

LLOYD_MAX_ITER = 300


def _sq_distances(X, X_sq, centers):
    """Squared Euclidean distances [N, K] between the rows of ``X`` and ``centers``."""
    dist = X_sq[:, None] - 2.0 * (X @ centers.T) + (centers * centers).sum(1)[None, :]
    return dist.clamp_min_(0.0)


def kmeans_plusplus(X, n_clusters, rng):
    """Indices of ``n_clusters`` rows of ``X`` chosen by greedy k-means++.

    Parameters
    ----------
    X : torch.Tensor [N, D]
    n_clusters : int
        At most N.
    rng : numpy.random.Generator

    Returns
    -------
    torch.Tensor of int64 [n_clusters]
    """
    n = X.shape[0]
    n_trials = 2 + int(np.log(n_clusters))
    X_sq = (X * X).sum(1)
    chosen = [int(rng.integers(n))]
    closest = _sq_distances(X, X_sq, X[chosen])[:, 0]
    for _ in range(1, n_clusters):
        cumulative = torch.cumsum(closest, 0)
        targets = torch.as_tensor(rng.uniform(size=n_trials), dtype=X.dtype, device=X.device) * cumulative[-1]
        candidates = torch.searchsorted(cumulative, targets).clamp_max_(n - 1)
        dist = torch.minimum(closest[None, :], _sq_distances(X, X_sq, X[candidates]).T)
        best = int(torch.argmin(dist.sum(1)))
        chosen.append(int(candidates[best]))
        closest = dist[best]
    return torch.tensor(chosen, dtype=torch.int64, device=X.device)


def kmeans_labels(X, n_clusters, rng, max_iter=LLOYD_MAX_ITER):
    """Cluster labels of the rows of ``X`` from k-means++ seeding and Lloyd iterations.

    Lloyd iterations run until no label changes (at most ``max_iter``). A
    cluster left empty takes over the point farthest from its own centre, as
    scikit-learn's ``KMeans`` does.

    Parameters
    ----------
    X : torch.Tensor [N, D]
    n_clusters : int
        At most N.
    rng : numpy.random.Generator
    max_iter : int

    Returns
    -------
    torch.Tensor of int64 [N]
    """
    X_sq = (X * X).sum(1)
    centers = X[kmeans_plusplus(X, n_clusters, rng)]
    labels = None
    for _ in range(max_iter):
        dist = _sq_distances(X, X_sq, centers)
        new = dist.argmin(1)
        counts = torch.bincount(new, minlength=n_clusters)
        empty = torch.nonzero(counts == 0)[:, 0]
        if len(empty):
            own = dist.gather(1, new[:, None])[:, 0]
            new[torch.topk(own, len(empty)).indices] = empty
            counts = torch.bincount(new, minlength=n_clusters)
        if labels is not None and torch.equal(new, labels):
            break
        labels = new
        sums = torch.zeros_like(centers).index_add_(0, labels, X)
        filled = counts > 0
        centers = torch.where(filled[:, None], sums / counts.clamp_min(1)[:, None].to(X.dtype), centers)
    return labels
