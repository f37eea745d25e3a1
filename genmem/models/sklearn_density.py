"""Any scikit-learn-style density estimator as a genmem model: ``SklearnDensity(KernelDensity(...))``."""
import numpy as np
import sklearn.base

from ..errors import GenmemError
from ..seeds import sklearn_seed
from ..validation import check_data
from .base import DensityModel, as_seed

#: Methods an estimator needs: ``fit(X)`` and ``score_samples(X)`` (log-density per row, in nats).
REQUIRED_METHODS = ("fit", "score_samples")


def random_state_params(estimator):
    """Names of the ``random_state`` parameters of ``estimator`` and its nested steps (``step__random_state``)."""
    return sorted(key for key in estimator.get_params(deep=True)
                  if key == "random_state" or key.endswith("__random_state"))


class SklearnDensity(DensityModel):
    """A scikit-learn-style density estimator in genmem's K-fold engine.

    Each unit fits a clone (``sklearn.base.clone``) of ``estimator`` whose
    ``random_state`` parameters — its own and those of nested steps, such as
    a ``Pipeline``'s — are set from the unit's seed, so units are independent
    and reproducible. ``score_samples`` must return the normalised
    log-density of each row in nats, as ``KernelDensity``,
    ``GaussianMixture``, ``BayesianGaussianMixture`` and a ``Pipeline``
    ending in one of them do.

    Parameters
    ----------
    estimator : estimator
        Unfitted, with ``fit(X)``, ``score_samples(X)`` and ``get_params()``.

    Attributes
    ----------
    estimator_ : estimator
        The fitted clone.
    n_features_in_ : int

    Examples
    --------
    scikit-learn's exact ``KernelDensity`` gives genmem's :class:`~genmem.models.KDE` numbers:

    >>> import numpy as np
    >>> from sklearn.neighbors import KernelDensity
    >>> from genmem.models import KDE, SklearnDensity
    >>> X = np.random.default_rng(0).normal(size=(50, 2))
    >>> model = SklearnDensity(KernelDensity(bandwidth=0.5)).fit(X)
    >>> bool(np.allclose(model.log_prob(X), KDE(0.5).fit(X).log_prob(X)))
    True
    """

    def __init__(self, estimator=None):
        self.estimator = estimator

    @property
    def name(self):
        """``"sklearn:<estimator class>"``, e.g. ``"sklearn:KernelDensity"``."""
        return f"sklearn:{type(self.estimator).__name__}"

    def _checked_estimator(self):
        est = self.estimator
        missing = [m for m in REQUIRED_METHODS if not callable(getattr(est, m, None))]
        if missing or not callable(getattr(est, "get_params", None)):
            what = " or ".join(missing or ["get_params"])
            raise GenmemError(
                f"SklearnDensity needs an estimator with fit(X), score_samples(X) (log-density per row) and "
                f"get_params(); {type(est).__name__} has no {what} — use a density estimator such as "
                "KernelDensity, GaussianMixture or a Pipeline ending in one"
            )
        return est

    def resolve(self, X):
        """A clone, after checking that the estimator has the methods a density model needs."""
        self._checked_estimator()
        return self.clone()

    def fit(self, X, y=None, *, rng=None):
        """Fit a clone of the estimator to ``X`` [N, D] with ``random_state`` from ``rng``; returns ``self``.

        ``rng=None`` leaves the estimator's own ``random_state`` as it is.
        """
        X = check_data(X)
        est = sklearn.base.clone(self._checked_estimator())
        seed = as_seed(rng)
        if seed is not None:
            state = sklearn_seed(seed)
            est.set_params(**{key: state for key in random_state_params(est)})
        est.fit(X)
        self.estimator_ = est
        self.n_features_in_ = X.shape[1]
        return self

    def log_prob(self, X):
        """The fitted estimator's ``score_samples`` of each row of ``X``, float64 [N]."""
        self._check_fitted()
        X = check_data(X, n_features=self.n_features_in_, model=type(self).__name__)
        return np.asarray(self.estimator_.score_samples(X), dtype=np.float64)
