"""Gaussian mixture density model fitted by EM in torch, with batched K-fold training.

The estimator (:class:`GMM`): parameters, the initialisation (scikit-learn's
``KMeans`` as :class:`~sklearn.mixture.GaussianMixture` starts, or random
responsibilities), ``n_init`` starts of which the highest final bound is kept,
and :meth:`GMM.fit_units`, which stacks all units (times ``n_init``) along a
leading model dimension. The EM itself, numerics and batching, is
:mod:`genmem.models.em`.
"""
import warnings

import numpy as np
import torch
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from ..device import DTYPES, resolve_device
from ..errors import GenmemError
from ..seeds import sklearn_seed
from ..validation import check_data, check_params, integer, options, real
from .base import DensityModel, as_seed, check_units
from .em import accumulate, chunk_rows, mixture_log_prob, params_from_stats, run_em, zero_stats

COVARIANCE_TYPES = ("full", "diag")
INITS = ("kmeans++", "random")


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
        stats = zero_stats(self.n_init, n_components, n_features, self.covariance_type, X)
        rows = chunk_rows(self.chunk_size, self.n_init, n_components)
        center = X.mean(0)
        for start in range(0, n_rows, rows):
            accumulate(stats, X[start:start + rows] - center, resp[:, :, start:start + rows], self.covariance_type)
        reference = center.expand(self.n_init, n_components, n_features)
        return params_from_stats(stats, reference, self.reg_covar, self.covariance_type, n_rows=n_rows)

    def _fit_inits(self, X, weights, means, covariances):
        """EM from each stacked initial parameter set; keep the one with the best final lower bound."""
        result = run_em(X, None, weights, means, covariances, **self._em_options())
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
        return mixture_log_prob(Xt, *params, self.covariance_type, self.chunk_size)[0].double().cpu().numpy()

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

        result = run_em(Xt, mask_t.repeat_interleave(n_init, dim=0), weights, means, covariances,
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
        loglik = mixture_log_prob(Xt, result.weights[best_t], result.means[best_t], result.precisions_chol[best_t],
                        self.covariance_type, self.chunk_size)
        return {"loglik": loglik.double().cpu().numpy()}
