"""Gaussian mixture density model fitted by EM in torch, with batched K-fold training.

The EM follows scikit-learn's :class:`~sklearn.mixture.GaussianMixture`:
``reg_covar`` is added to the diagonal of every covariance after each M-step,
component masses carry ``10·eps`` so that an empty component stays finite,
the lower bound of an iteration is the mean per-example log-likelihood under
the parameters *before* its M-step, EM stops when that bound changes by less
than ``tol``, and with ``n_init > 1`` the initialisation with the highest final
bound is kept.

Numerics: full covariances are handled through their Cholesky factors (the
upper-triangular precision factor ``P = L⁻ᵀ`` with ``P Pᵀ = Σ⁻¹``, as
scikit-learn's ``precisions_cholesky_``), responsibilities through
log-sum-exp, and the data in chunks. One pass over the data per iteration
computes both the E-step and the M-step's sufficient statistics; second
moments are taken around the previous iteration's means and shifted to the new
ones, which is exact and keeps cancellation small.

Batching: :meth:`GMM.fit_units` stacks all units (times ``n_init``) along a
leading model dimension. Each model sees every row, its responsibilities
multiplied by its unit's training mask, and is frozen at the iteration where it
converges, so each unit ends where fitting it alone would (up to the order of
floating-point sums).
"""
import logging
import math
import warnings
from typing import NamedTuple

import numpy as np
import torch
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from ..device import DTYPES, resolve_device
from ..errors import GenmemError
from ..seeds import sklearn_seed
from ..validation import check_data, check_params, integer, options, real
from .base import DensityModel, as_seed, check_units

logger = logging.getLogger(__name__)

COVARIANCE_TYPES = ("full", "diag")
INITS = ("kmeans++", "random")
LOG_2PI = math.log(2.0 * math.pi)


class ConvergenceWarning(UserWarning):
    """EM reached ``max_iter`` before its lower bound changed by less than ``tol``."""


#: Allowed parameter values (``device`` is checked by resolve_device).
PARAMETER_CONSTRAINTS = {
    "n_components": integer(1),
    "covariance_type": options(*COVARIANCE_TYPES),
    "tol": real(0, closed="left"),
    "reg_covar": real(0, closed="left"),
    "max_iter": integer(1),
    "n_init": integer(1),
    "init": options(*INITS),
    "dtype": options(*DTYPES),
    "chunk_size": integer(1),
    "batch_units": options(True, False, "auto"),
}


def kmeans_labels(X, n_clusters, random_state):
    """Cluster labels [N] (int64 tensor on ``X``'s device) of scikit-learn's ``KMeans(n_init=1)`` on the rows of ``X``.

    What scikit-learn's ``GaussianMixture(init_params="kmeans")`` starts
    from: k-means++ seeding and Lloyd iterations, drawing from
    ``random_state`` (a ``numpy.random.RandomState``, shared by successive
    initialisations as ``GaussianMixture`` shares its own). KMeans runs on
    one OpenMP thread: it adds its threads' partial sums in the order they
    finish, so more threads could change the last bits of the centres, and
    with them (rarely) a label, from one run to the next.
    """
    with threadpool_limits(limits=1, user_api="openmp"):
        labels = KMeans(n_clusters=n_clusters, n_init=1, random_state=random_state).fit(X.cpu().numpy()).labels_
    return torch.as_tensor(labels, dtype=torch.int64, device=X.device)


# -- EM building blocks on a leading model dimension B -------------------------------------
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


def _chunk_rows(chunk_size, n_models, n_components):
    """Rows per chunk, so that a chunk's [B, C, rows, D] temporaries hold about chunk_size·D numbers."""
    return max(1, chunk_size // (n_models * n_components))


def _zero_stats(n_models, n_components, n_features, covariance_type, like):
    """Zeroed sufficient statistics (Σr, Σr·d, Σr·d dᵀ or Σr·d²) with d the difference to a reference mean."""
    second = (n_features, n_features) if covariance_type == "full" else (n_features,)
    shape = (n_models, n_components)
    return (like.new_zeros(shape), like.new_zeros(shape + (n_features,)), like.new_zeros(shape + second))


def _accumulate(stats, diff, resp, covariance_type):
    """Add one chunk's statistics: ``diff`` [B, C, r, D] the rows minus the reference points
    (broadcast from [r, D] when those are shared), ``resp`` [B, C, r] the responsibilities."""
    mass, first, second = stats
    mass += resp.sum(-1)
    first += (resp[..., None, :] @ diff)[..., 0, :]
    if covariance_type == "full":
        second += (diff * resp[..., None]).transpose(-1, -2) @ diff
    else:
        second += (resp[..., None, :] @ (diff * diff))[..., 0, :]


def _params_from_stats(stats, reference, reg_covar, covariance_type, n_rows=None):
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
    stats = _zero_stats(n_models, n_components, n_features, covariance_type, X)
    rows = _chunk_rows(chunk_size, n_models, n_components)
    for start in range(0, X.shape[0], rows):
        joint, diff = log_joint(X[start:start + rows], means, precisions_chol, log_norm, covariance_type)
        evidence = torch.logsumexp(joint, 1)
        resp = torch.exp(joint - evidence[:, None, :])
        if masks is not None:
            mask = masks[:, start:start + rows]
            evidence = torch.where(mask, evidence, 0.0)
            resp = resp * mask[:, None, :]
        loglik += evidence.sum(-1)
        _accumulate(stats, diff, resp, covariance_type)
    return loglik, stats


def _score(X, weights, means, precisions_chol, covariance_type, chunk_size):
    """log p(x) [B, N] of every row of ``X`` under each of B mixtures."""
    log_norm = log_normaliser(weights, precisions_chol, covariance_type)
    rows = _chunk_rows(chunk_size, means.shape[0], means.shape[1])
    return torch.cat([
        torch.logsumexp(log_joint(X[s:s + rows], means, precisions_chol, log_norm, covariance_type)[0], 1)
        for s in range(0, X.shape[0], rows)
    ], dim=1)


class _EMResult(NamedTuple):
    weights: torch.Tensor  # [B, C]
    means: torch.Tensor  # [B, C, D]
    covariances: torch.Tensor  # [B, C, D, D] or [B, C, D]
    precisions_chol: torch.Tensor  # like covariances
    lower_bound: np.ndarray  # float64 [B]
    n_iter: np.ndarray  # int [B]
    converged: np.ndarray  # bool [B]


def _run_em(X, masks, weights, means, covariances, *, covariance_type, tol, reg_covar, max_iter,
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
        new_weights, new_means, new_covariances = _params_from_stats(stats, current_means, reg_covar,
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
    return _EMResult(weights, means, covariances, precisions_chol, lower_bound, n_iter, converged)


class GMM(DensityModel):
    """Gaussian mixture density fitted by EM, matching scikit-learn's ``GaussianMixture``.

    Parameters
    ----------
    n_components : int, default=10
        Number of mixture components.
    covariance_type : {"full", "diag"}, default="full"
        A full covariance matrix per component, or a diagonal one.
    tol : float, default=1e-3
        EM stops when the mean per-example log-likelihood lower bound changes
        by less than ``tol``.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance, keeping it positive definite.
    max_iter : int, default=100
        Most EM iterations per initialisation.
    n_init : int, default=1
        Number of initialisations; the one with the highest final lower bound is kept.
    init : {"kmeans++", "random"}, default="kmeans++"
        ``"kmeans++"``: scikit-learn's ``KMeans(n_init=1)`` (k-means++
        seeding, Lloyd iterations); its hard labels give the initial
        responsibilities, exactly as scikit-learn's
        ``GaussianMixture(init_params="kmeans")`` starts: ``fit(X, rng=seed)``
        starts where ``GaussianMixture(random_state=sklearn_seed(seed))``
        does (:func:`genmem.seeds.sklearn_seed`; what
        :class:`~genmem.models.SklearnDensity` passes), with ``n_init`` > 1
        too. ``"random"``: uniform random responsibilities, normalised per
        example.
    device : str or torch.device, default="cpu"
        Where EM runs: "cpu", "cuda", "cuda:1" or "auto".
    dtype : {"float64", "float32"}, default="float64"
        Floating-point type of the computation.
    chunk_size : int, default=65536
        Examples per chunk when one mixture component is evaluated; with B
        mixtures of C components, ``chunk_size // (B·C)`` rows are processed
        at a time, so temporaries stay near ``3·chunk_size·D`` numbers.
    batch_units : bool or "auto", default="auto"
        Whether :meth:`fit_units` runs the units' EM together (batched) or one
        after another; ``"auto"`` batches on a GPU only (on a CPU batching
        saves no arithmetic and measured no faster on digits). Both paths give
        the same numbers up to floating-point summation order.

    Attributes
    ----------
    weights_ : ndarray [C]
    means_ : ndarray [C, D]
    covariances_ : ndarray [C, D, D] ("full") or [C, D] ("diag")
    precisions_cholesky_ : ndarray, like covariances_
        ``P`` with ``P Pᵀ = Σ⁻¹`` (upper triangular) for "full"; ``1/σ`` for "diag".
    converged_ : bool
    n_iter_ : int
        EM iterations of the kept initialisation.
    lower_bound_ : float
        Mean per-example log-likelihood of the training data at the last iteration.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from genmem.models import GMM
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-5.0, 1.0, (100, 1)), rng.normal(5.0, 1.0, (100, 1))])
    >>> gmm = GMM(2).fit(X, rng=0)
    >>> np.sort(gmm.means_.ravel()).round(1), gmm.weights_.round(2)
    (array([-4.9,  4.9]), array([0.5, 0.5]))
    """

    name = "gmm"
    #: 1: the k-means start is scikit-learn's ``KMeans`` (0: genmem 0.1's own k-means).
    revision = 1

    def __init__(self, n_components=10, *, covariance_type="full", tol=1e-3, reg_covar=1e-6, max_iter=100,
                 n_init=1, init="kmeans++", device="cpu", dtype="float64", chunk_size=65536, batch_units="auto"):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init = init
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.batch_units = batch_units

    # -- helpers ----------------------------------------------------------------------------
    def _settings(self):
        """Validate the parameters; return the torch device and dtype."""
        check_params(self, PARAMETER_CONSTRAINTS)
        return resolve_device(self.device), DTYPES[self.dtype]

    def _check_rows(self, n_rows, what):
        if n_rows < self.n_components:
            raise GenmemError(
                f"{type(self).__name__} with n_components={self.n_components} needs at least that many "
                f"training examples but {what} has {n_rows}; use fewer components or more data"
            )

    def _em_options(self):
        return dict(covariance_type=self.covariance_type, tol=float(self.tol), reg_covar=float(self.reg_covar),
                    max_iter=int(self.max_iter), chunk_size=int(self.chunk_size))

    def _initial_params(self, X, seed):
        """The ``n_init`` initial (weights, means, covariances), stacked, for training rows ``X``."""
        n_rows, n_features = X.shape
        n_components = int(self.n_components)
        resp = []
        if self.init == "kmeans++":
            random_state = np.random.RandomState(None if seed is None else sklearn_seed(seed))
            for _ in range(self.n_init):
                labels = kmeans_labels(X, n_components, random_state)
                resp.append(torch.nn.functional.one_hot(labels, n_components).T.to(X.dtype))
        else:
            rng = np.random.default_rng(seed)
            for _ in range(self.n_init):
                draw = torch.as_tensor(rng.uniform(size=(n_rows, n_components)), dtype=X.dtype, device=X.device)
                resp.append((draw / draw.sum(1, keepdim=True)).T)
        resp = torch.stack(resp)
        stats = _zero_stats(self.n_init, n_components, n_features, self.covariance_type, X)
        rows = _chunk_rows(self.chunk_size, self.n_init, n_components)
        center = X.mean(0)
        for start in range(0, n_rows, rows):
            _accumulate(stats, X[start:start + rows] - center, resp[:, :, start:start + rows], self.covariance_type)
        reference = center.expand(self.n_init, n_components, n_features)
        return _params_from_stats(stats, reference, self.reg_covar, self.covariance_type, n_rows=n_rows)

    def _fit_inits(self, X, weights, means, covariances):
        """EM from each stacked initial parameter set; keep the one with the best final lower bound."""
        result = _run_em(X, None, weights, means, covariances, **self._em_options())
        best = int(np.argmax(result.lower_bound))
        self.weights_ = result.weights[best].double().cpu().numpy()
        self.means_ = result.means[best].double().cpu().numpy()
        self.covariances_ = result.covariances[best].double().cpu().numpy()
        self.precisions_cholesky_ = result.precisions_chol[best].double().cpu().numpy()
        self.converged_ = bool(result.converged[best])
        self.n_iter_ = int(result.n_iter[best])
        self.lower_bound_ = float(result.lower_bound[best])
        self.n_features_in_ = X.shape[1]
        if not self.converged_:
            warnings.warn(
                f"{type(self).__name__} did not converge in max_iter={self.max_iter} EM iterations "
                f"(tol={self.tol}); increase max_iter or tol, or check the data for degenerate features",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _fit_from_params(self, X, weights, means, covariances):
        """Run EM from one given initialisation instead of ``init`` (``n_init`` is ignored).

        The counterpart of scikit-learn's ``weights_init``/``means_init``/
        ``precisions_init`` (pass ``precisions_init = inv(covariances)``).
        Returns ``self``.
        """
        device, dtype = self._settings()
        X = check_data(X)
        self._check_rows(X.shape[0], "X")
        Xt = torch.as_tensor(X, dtype=dtype, device=device)
        params = (torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dtype, device=device)[None]
                  for a in (weights, means, covariances))
        return self._fit_inits(Xt, *params)

    # -- public API -------------------------------------------------------------------------
    def fit(self, X, y=None, *, rng=None):
        """Fit the mixture to ``X`` by EM.

        Parameters
        ----------
        X : array-like [N, D]
            Training data, N >= n_components.
        y : ignored
        rng : None, int, numpy SeedSequence or Generator
            Seed of the initialisation; None draws a fresh one.

        Returns
        -------
        GMM
            ``self``, fitted.

        Warns
        -----
        ConvergenceWarning
            When the kept initialisation stopped at ``max_iter``.
        """
        device, dtype = self._settings()
        X = check_data(X, distinct=True)
        self._check_rows(X.shape[0], "X")
        Xt = torch.as_tensor(X, dtype=dtype, device=device)
        return self._fit_inits(Xt, *self._initial_params(Xt, as_seed(rng)))

    def log_prob(self, X):
        """Log-density in nats of each row of ``X``.

        Parameters
        ----------
        X : array-like [N, D]

        Returns
        -------
        ndarray of float64 [N]
        """
        self._check_fitted()
        device, dtype = self._settings()
        X = check_data(X, n_features=self.n_features_in_, model=type(self).__name__)
        params = [torch.as_tensor(a, dtype=dtype, device=device)[None]
                  for a in (self.weights_, self.means_, self.precisions_cholesky_)]
        Xt = torch.as_tensor(X, dtype=dtype, device=device)
        return _score(Xt, *params, self.covariance_type, self.chunk_size)[0].double().cpu().numpy()

    def fit_units(self, X, train_masks, seeds, *, unit_keys=None, artifact_dir=None, progress=None):
        """Fit one mixture per unit in one batched EM and score every example under each.

        Unit ``u`` is initialised exactly as ``self.clone().fit(X[train_masks[u]],
        rng=seeds[u])`` would be, learns only from its own rows, keeps its best
        of ``n_init`` initialisations and stops at its own convergence, so the
        result equals the one-by-one path up to floating-point summation order.

        Parameters
        ----------
        X : array-like [N, D]
            The full data of the run.
        train_masks : bool array [U, N]
            Row ``u`` selects unit ``u``'s training examples (at least ``n_components``).
        seeds : sequence of int, length U
        unit_keys, artifact_dir
            Unused: a GMM saves no per-unit files.
        progress : callable, optional
            Called with the number of units whose EM has just finished.

        Returns
        -------
        dict
            ``"loglik"``: float64 [U, N], log p of every example under every unit's mixture.

        Warns
        -----
        ConvergenceWarning
            Once, naming the units whose kept initialisation stopped at ``max_iter``.
        """
        device, dtype = self._settings()
        if not (self.batch_units is True or (self.batch_units == "auto" and device.type == "cuda")):
            return super().fit_units(X, train_masks, seeds, progress=progress)
        X = check_data(X, distinct=True)
        masks, seeds = check_units(X, train_masks, seeds)
        for u, mask in enumerate(masks):
            self._check_rows(int(mask.sum()), f"unit {u}")
        n_units, n_init = len(masks), int(self.n_init)
        Xt = torch.as_tensor(X, dtype=dtype, device=device)
        mask_t = torch.as_tensor(masks, device=device)
        inits = [self._initial_params(Xt[mask], seed) for mask, seed in zip(mask_t, seeds)]
        weights, means, covariances = (torch.cat(p) for p in zip(*inits))
        pending = np.full(n_units, n_init)

        def on_done(models):
            units, counts = np.unique(models // n_init, return_counts=True)
            pending[units] -= counts
            finished = int((pending[units] == 0).sum())
            if progress is not None and finished:
                progress(finished)

        result = _run_em(Xt, mask_t.repeat_interleave(n_init, dim=0), weights, means, covariances,
                         on_done=on_done, **self._em_options())
        best = np.arange(n_units) * n_init + result.lower_bound.reshape(n_units, n_init).argmax(1)
        stalled = np.flatnonzero(~result.converged[best])
        if len(stalled):
            warnings.warn(
                f"{len(stalled)} of {n_units} {type(self).__name__} units (indices {stalled.tolist()}) did not "
                f"converge in max_iter={self.max_iter} EM iterations (tol={self.tol}); increase max_iter or tol, "
                "or check the data for degenerate features",
                ConvergenceWarning,
                stacklevel=2,
            )
        best_t = torch.as_tensor(best, device=device)
        loglik = _score(Xt, result.weights[best_t], result.means[best_t], result.precisions_chol[best_t],
                        self.covariance_type, self.chunk_size)
        return {"loglik": loglik.double().cpu().numpy()}
