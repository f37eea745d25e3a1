"""The scikit-learn estimator protocol on genmem's density models: clone, Pipeline, GridSearchCV, common checks.

scikit-learn's own common checks (``parametrize_with_checks``) run on every
model that takes ``fit(X, y)``; the one expected failure is
``check_dtype_object``, which wants a ``TypeError`` for a dict inside X where
genmem raises its one error type, :class:`GenmemError` (a ``ValueError``).
"""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import KernelDensity
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from genmem.errors import GenmemError
from genmem.models import GMM, KDE, VAE, Flow
from genmem.models.base import NotFittedError

CHECKED = [KDE(0.5), GMM(2, max_iter=20), Flow(layers=2, hidden=(8,), epochs=2)]
EXPECTED_FAILURES = {"check_dtype_object": "genmem raises GenmemError (a ValueError), not TypeError, for a "
                                           "dict inside X"}


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda estimator: EXPECTED_FAILURES)
def test_scikit_learn_common_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("model", [KDE("silverman", chunk_size=7), GMM(3, covariance_type="diag", tol=1e-4),
                                   VAE(epochs=3, hidden=(8,), latent_dim=2), Flow(hidden=(8,), input_map="logit")])
def test_clone_and_params(model):
    twin = clone(model)
    assert type(twin) is type(model) and twin is not model
    assert twin.get_params(deep=True) == model.get_params(deep=False) == model.get_params()
    name = sorted(model.get_params())[0]
    assert twin.set_params(**{name: model.get_params()[name]}) is twin
    with pytest.raises(GenmemError, match="no parameter 'nope'"):
        twin.set_params(nope=1)


def test_fitted_state_is_the_trailing_underscore_attributes(rng):
    X = rng.normal(size=(20, 2))
    model = KDE(0.5)
    assert not any(key.endswith("_") for key in vars(model))
    with pytest.raises(NotFittedError, match="not fitted"):
        model.score(X)
    model.fit(X, None)
    assert model.n_features_in_ == 2 and model.bandwidth_ == 0.5
    assert model.score(X) == pytest.approx(np.mean(model.score_samples(X)), abs=0)


def test_pipeline_pca_then_kde_equals_the_steps_by_hand(digits):
    X = digits[0][:400]
    pipe = Pipeline([("pca", PCA(10, random_state=0)), ("kde", KDE())]).fit(X)
    Z = PCA(10, random_state=0).fit(X).transform(X)
    oracle = KernelDensity(bandwidth=KDE().resolve(Z).bandwidth, leaf_size=len(Z)).fit(Z)  # one leaf: exact
    np.testing.assert_allclose(pipe.score_samples(X), oracle.score_samples(Z), rtol=1e-10)
    assert pipe.score(X) == pytest.approx(oracle.score_samples(Z).mean(), rel=1e-10)
    pipe.set_params(kde__bandwidth=0.7)
    assert pipe.get_params()["kde__bandwidth"] == 0.7


def test_grid_search_over_the_bandwidth_equals_cross_validation_with_scikit_learn(rng):
    X = np.concatenate([rng.normal(size=(60, 2)), rng.normal(size=(40, 2)) * 0.3 + 3])
    grid = [0.1, 0.3, 0.6, 1.2]
    folds = KFold(4, shuffle=True, random_state=0)
    search = GridSearchCV(KDE(), {"bandwidth": grid}, cv=folds).fit(X)
    oracle = [np.mean([KernelDensity(bandwidth=h, leaf_size=len(tr)).fit(X[tr]).score_samples(X[te]).mean()
                       for tr, te in folds.split(X)]) for h in grid]
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], oracle, rtol=1e-10)
    assert search.best_params_ == {"bandwidth": grid[int(np.argmax(oracle))]}
    assert isinstance(search.best_estimator_, KDE) and search.best_estimator_.bandwidth_ == search.best_params_["bandwidth"]
