"""Gaussian kernel density estimate with exact log-densities and exact leave-one-out.

``p(x | D) = (1/n) Σ_j N(x; x_j, h² I)`` with one isotropic bandwidth ``h``.
Log-densities are computed exactly (chunked log-sum-exp over all training
points, in torch, on CPU or GPU); the leave-one-out memorization score has a
closed form, so no model is ever refitted.
"""
import math
import warnings

import numpy as np
import torch

from ..device import resolve_device, torch_dtype
from ..distances import SquaredDistances
from ..errors import GenmemError
from ..validation import any_of, check_data, check_params, has_spread, integer, options, real
from .base import DensityModel, check_units

BANDWIDTH_RULES = ("scott", "silverman", "cv")

#: Bandwidths tried by ``bandwidth="cv"``, as multiples of Scott's rule.
CV_GRID = tuple(2.0 ** np.linspace(-4, 2, 25))

#: Allowed parameter values (``device`` and ``dtype`` are checked where they are resolved).
PARAMETER_CONSTRAINTS = {"bandwidth": any_of(real(0), options(*BANDWIDTH_RULES)), "chunk_size": integer(1)}


def rule_of_thumb_bandwidth(X, rule="scott"):
    """Scott's or Silverman's bandwidth for an isotropic Gaussian kernel.

    ``h = σ̄ · n^(-1/(d+4))`` (Scott) or ``h = σ̄ · (n (d+2) / 4)^(-1/(d+4))``
    (Silverman), where ``σ̄²`` is the mean per-feature variance of ``X``
    (ddof=1): the multivariate rules of thumb with one scale for all features.
    """
    X = check_data(X, min_rows=2)
    n, d = X.shape
    if not has_spread(X):
        raise GenmemError("all training examples are identical (up to rounding); a KDE bandwidth cannot be chosen by "
                          "rule — pass a float")
    sigma = math.sqrt(float(np.mean(np.var(X, axis=0, ddof=1))))
    if rule == "scott":
        return sigma * n ** (-1.0 / (d + 4))
    if rule == "silverman":
        return sigma * (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))
    raise GenmemError(f"unknown bandwidth rule {rule!r}; use 'scott' or 'silverman'")


def _check_representable(h, dtype):
    """Raise unless ``h²`` and ``1/(2h²)`` are normal numbers of ``dtype`` (a bandwidth the kernel can use)."""
    info = torch.finfo(dtype)
    low, high = math.sqrt(info.tiny), math.sqrt(info.max) / 2
    if not low <= h <= high:
        raise GenmemError(f"The 'bandwidth' parameter of KDE is {h:g}, outside what {dtype} can square "
                          f"([{low:.3g}, {high:.3g}]); pass a bandwidth on the scale of the data")


def _log_norm(h, d):
    """Log of the Gaussian kernel's normaliser, ``-d/2 log(2π h²)``."""
    return -0.5 * d * math.log(2.0 * math.pi * h * h)


class KDE(DensityModel):
    """Gaussian kernel density estimate with an isotropic bandwidth.

    Parameters
    ----------
    bandwidth : float or {"scott", "silverman", "cv"}, default="scott"
        Kernel standard deviation ``h``. The rules of thumb use the mean
        per-feature variance (see :func:`rule_of_thumb_bandwidth`); ``"cv"``
        maximises the exact leave-one-out log-likelihood of the training data
        over :data:`CV_GRID` (multiples of Scott's ``h``).
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    dtype : {"float64", "float32"}, default="float64"
    chunk_size : int, default=1024
        Query rows per chunk; memory is ``O(chunk_size · n_train)``.

    Attributes
    ----------
    bandwidth_ : float
        The bandwidth used.
    n_train_, n_features_in_ : int
    distances_ : SquaredDistances
        The training points on the device, for chunked distance computations.

    Examples
    --------
    >>> import numpy as np
    >>> from genmem.models import KDE
    >>> X = np.array([[0.0], [1.0], [3.0]])
    >>> kde = KDE(bandwidth=1.0).fit(X)
    >>> kde.log_prob([[0.0], [10.0]]).round(3)
    array([ -1.537, -26.518])
    """

    name = "kde"

    def __init__(self, bandwidth="scott", *, device="cpu", dtype="float64", chunk_size=1024):
        self.bandwidth = bandwidth
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size

    # -- parameters -------------------------------------------------------
    def _validate(self):
        check_params(self, PARAMETER_CONSTRAINTS)
        return resolve_device(self.device), torch_dtype(self.dtype)

    def _bandwidth_for(self, X):
        """The bandwidth this model uses when trained on ``X`` (one its dtype can compute with)."""
        if not isinstance(self.bandwidth, str):
            h = float(self.bandwidth)
        elif self.bandwidth == "cv":
            h = self.cv_bandwidth(X)[0]
        else:
            h = rule_of_thumb_bandwidth(X, self.bandwidth)
        _check_representable(h, torch_dtype(self.dtype))
        return h

    def resolve(self, X):
        """A clone whose bandwidth is the float this model would pick on ``X``."""
        self._validate()
        return self.clone(bandwidth=self._bandwidth_for(check_data(X, min_rows=2)))

    def cv_bandwidth(self, X, grid=None):
        """Pick ``h`` from a grid by exact leave-one-out log-likelihood.

        Parameters
        ----------
        X : array [n, d]
        grid : sequence of float, optional
            Candidate bandwidths; default: Scott's ``h`` times :data:`CV_GRID`.

        Returns
        -------
        best : float
        grid : ndarray
        mean_loo_loglik : ndarray
            Mean over examples of ``log p(x_i | D \\ x_i)`` for each candidate.
        """
        device, dtype = self._validate()
        X = check_data(X, min_rows=2)
        if grid is None:
            grid = rule_of_thumb_bandwidth(X, "scott") * np.asarray(CV_GRID)
        grid = np.asarray(grid, dtype=np.float64)
        kernel = SquaredDistances(X, device, dtype, self.chunk_size)
        n, d = X.shape
        total = torch.zeros(len(grid), dtype=dtype, device=device)
        for sl, d2 in kernel.chunks(X):
            rows = torch.arange(sl.start, sl.stop, device=device)
            d2[torch.arange(len(rows), device=device), rows] = math.inf  # leave self out
            for g, h in enumerate(grid):
                total[g] += torch.logsumexp(-d2 / (2.0 * h * h), dim=1).sum()
        norms = torch.as_tensor([_log_norm(g, d) for g in grid], dtype=dtype, device=device)
        scores = (total / n + norms - math.log(n - 1)).cpu().numpy()
        best = int(np.argmax(scores))
        if best in (0, len(grid) - 1):
            warnings.warn(
                f"KDE cross-validated bandwidth {grid[best]:.4g} lies at the edge of the grid "
                f"[{grid[0]:.4g}, {grid[-1]:.4g}]; pass a wider grid or a float bandwidth",
                stacklevel=2,
            )
        return float(grid[best]), grid, scores

    # -- fit / score ------------------------------------------------------
    def fit(self, X, y=None, *, rng=None):
        """Store the training data and fix the bandwidth; ``y`` and ``rng`` are unused (KDE is deterministic)."""
        device, dtype = self._validate()
        X = check_data(X, min_rows=1 if not isinstance(self.bandwidth, str) else 2)
        self.bandwidth_ = self._bandwidth_for(X)
        self.n_train_, self.n_features_in_ = X.shape
        self.distances_ = SquaredDistances(X, device, dtype, self.chunk_size)
        return self

    def log_prob(self, X):
        """Exact log-density in nats of each row of ``X``; float64 array [N]."""
        self._check_fitted()
        X = check_data(X, n_features=self.n_features_in_, model=type(self).__name__)
        h, n = self.bandwidth_, self.n_train_
        out = np.empty(X.shape[0])
        for sl, L in self.distances_.chunks(X, scale=0.5 / (h * h)):
            lse = torch.logsumexp(L, dim=1)
            out[sl] = lse.cpu().double().numpy()
        return out - math.log(n) + _log_norm(h, self.n_features_in_)

    def fit_units(self, X, train_masks, seeds, *, unit_keys=None, artifact_dir=None, progress=None):
        """Exact log p of all rows under every unit's KDE, sharing one pass over the kernel matrix.

        Each chunk of the kernel matrix is exponentiated once, relative to
        its row maxima over *all* columns; a unit then sums the columns of its
        own training rows (the others are zeroed, and adding zero is exact),
        so its numbers depend on its own mask only — not on which units share
        the batch (``units_per_batch``). Rows whose training kernel values
        all underflow relative to that maximum are recomputed by a plain
        log-sum-exp over the unit's columns. Equals fitting each unit alone
        up to rounding (the bandwidth is resolved per unit when it is a rule,
        as ``fit`` would).
        """
        device, dtype = self._validate()
        X = check_data(X, min_rows=2)
        masks, _ = check_units(X, train_masks, seeds)
        n_units, n = masks.shape
        sizes = masks.sum(1)
        if (sizes < 1).any():
            raise GenmemError("a unit has no training examples; use fewer folds")
        bandwidths = np.array([self._bandwidth_for(X[m]) for m in masks])
        member = torch.as_tensor(masks, device=device)  # [U, n]
        kernel = SquaredDistances(X, device, dtype, self.chunk_size)
        tiny = torch.finfo(dtype).tiny / torch.finfo(dtype).eps  # below this, subnormal terms lose precision
        d = X.shape[1]
        out = np.empty((n_units, n))
        for h in np.unique(bandwidths):
            units = np.flatnonzero(bandwidths == h)
            for sl, L in kernel.chunks(X, scale=0.5 / (h * h)):  # L [c, n]: log-kernel up to its normaliser
                peak = L.amax(dim=1, keepdim=True)
                E = torch.exp(L - peak)
                for u in units:
                    total = torch.where(member[u], E, 0.0).sum(1)
                    lse = peak[:, 0] + torch.log(total)
                    low = torch.nonzero(total < tiny)[:, 0]
                    if len(low):
                        lse[low] = torch.logsumexp(L[low][:, member[u]], dim=1)
                    out[u, sl] = lse.cpu().double().numpy()
            out[units] += (_log_norm(h, d) - np.log(sizes[units]))[:, None]
        if progress is not None:
            progress(n_units)
        return {"loglik": out}


def kde_loo_memorization(X, bandwidth="scott", *, device="cpu", dtype="float64", chunk_size=1024):
    """Exact leave-one-out memorization score of a Gaussian KDE, without refitting.

    ``M_i = log p(x_i | D) − log p(x_i | D \\ x_i)`` where
    ``p(x | D) = (1/n) Σ_j K_h(x − x_j)`` and
    ``p(x_i | D \\ x_i) = (1/(n−1)) Σ_{j≠i} K_h(x_i − x_j)``, both computed
    exactly in log space from one pass over the kernel matrix. A rule or
    ``"cv"`` bandwidth is resolved once on the full ``X`` and used for both
    terms.

    Parameters
    ----------
    X : array [n, d]
    bandwidth : float or {"scott", "silverman", "cv"}
    device, dtype, chunk_size
        As for :class:`KDE`.

    Returns
    -------
    dict
        ``"memorization"``, ``"loglik_in"``, ``"loglik_out"``: float64 arrays
        [n]; ``"bandwidth"``: the float used.
    """
    X = check_data(X, min_rows=2)
    model = KDE(bandwidth, device=device, dtype=dtype, chunk_size=chunk_size).resolve(X).fit(X)
    h, (n, d) = model.bandwidth_, X.shape
    dev = model.distances_.X.device
    lin, lout = np.empty(n), np.empty(n)
    for sl, L in model.distances_.chunks(X, scale=0.5 / (h * h)):
        lin[sl] = torch.logsumexp(L, dim=1).cpu().double().numpy()
        rows = torch.arange(sl.start, sl.stop, device=dev)
        L[torch.arange(len(rows), device=dev), rows] = -math.inf
        lout[sl] = torch.logsumexp(L, dim=1).cpu().double().numpy()
    lin += _log_norm(h, d) - math.log(n)
    lout += _log_norm(h, d) - math.log(n - 1)
    return {"memorization": lin - lout, "loglik_in": lin, "loglik_out": lout, "bandwidth": h}
