"""SklearnDensity: scikit-learn density estimators in the K-fold engine, and failing units."""
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
from sklearn.neighbors import KernelDensity
from sklearn.pipeline import Pipeline

import genmem
from genmem.errors import GenmemError
from genmem.memorization import make_folds
from genmem.models import KDE, SklearnDensity

from custom_models import BrokenOutput, NeedsRow


def test_wrapped_kernel_density_equals_genmem_kde(rng):
    X = rng.normal(size=(60, 3))
    wrapped = genmem.kfold(SklearnDensity(KernelDensity(bandwidth=0.4, leaf_size=60)), X, folds=5, repeats=2)
    ours = genmem.kfold(KDE(0.4), X, folds=5, repeats=2)
    np.testing.assert_allclose(wrapped.loglik, ours.loglik, rtol=1e-10)
    np.testing.assert_allclose(wrapped.memorization, ours.memorization, atol=1e-9)
    assert wrapped.config["model"]["name"] == "sklearn:KernelDensity"
    assert wrapped.config["model"]["params"]["estimator"]["params"]["bandwidth"] == 0.4


def test_each_unit_seeds_every_random_state_of_a_clone(rng):
    X = rng.normal(size=(80, 6))
    pipe = Pipeline([("pca", PCA(3, svd_solver="randomized")), ("gmm", GaussianMixture(3, init_params="random"))])
    model = SklearnDensity(pipe)
    a, b = model.clone().fit(X, rng=5), model.clone().fit(X, rng=5)
    state = int(np.random.SeedSequence(5).generate_state(1, dtype=np.uint32)[0])
    fitted = a.estimator_.get_params()
    assert fitted["pca__random_state"] == fitted["gmm__random_state"] == state
    assert pipe.get_params()["gmm__random_state"] is None  # the template is left alone
    by_hand = Pipeline([("pca", PCA(3, svd_solver="randomized", random_state=state)),
                        ("gmm", GaussianMixture(3, init_params="random", random_state=state))]).fit(X)
    np.testing.assert_array_equal(a.log_prob(X), by_hand.score_samples(X))
    np.testing.assert_array_equal(a.log_prob(X), b.log_prob(X))
    assert not np.array_equal(a.log_prob(X), model.clone().fit(X, rng=6).log_prob(X))


def test_bayesian_mixture_runs_and_resumes_to_the_same_numbers(rng, tmp_path):
    X = np.concatenate([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 4])
    model = SklearnDensity(BayesianGaussianMixture(n_components=4, max_iter=200))
    first = genmem.kfold(model, X, folds=4, seed=2, out=tmp_path / "run.h5")
    again = genmem.kfold(model, X, folds=4, seed=2)
    np.testing.assert_array_equal(first.loglik, again.loglik)
    assert np.isfinite(first.memorization).all()


def test_estimators_without_score_samples_are_refused_before_any_unit(rng):
    X = rng.normal(size=(20, 2))
    with pytest.raises(GenmemError, match="KMeans has no score_samples"):
        genmem.kfold(SklearnDensity(KMeans(2)), X, folds=2)
    with pytest.raises(GenmemError, match=r"KernelDensity is a scikit-learn-style estimator.*SklearnDensity"):
        genmem.kfold(KernelDensity(), X, folds=2)


def _last_unit_row(X, folds):
    """A row held out by the last unit of repeat 0 (so that only that unit trains without it)."""
    return X[np.flatnonzero(make_folds(len(X), folds, 1, 0)[0] == folds - 1)[0]]


@pytest.mark.parametrize("make, words", [
    (lambda row: SklearnDensity(NeedsRow(row)),
     ["unit (repeat 0, fold 2) failed: SklearnDensity raised ValueError: the training rows lack"]),
    (lambda row: BrokenOutput(row, "nan"),
     ["unit (repeat 0, fold 2): BrokenOutput.log_prob returned NaN or inf for 30 of 30 rows"]),
    (lambda row: BrokenOutput(row, "shape"),
     ["unit (repeat 0, fold 2): BrokenOutput.log_prob returned float64 of shape (30, 1)", "shape (30,)"]),
])
def test_a_failing_unit_is_named_in_one_line_and_the_units_before_it_are_kept(rng, tmp_path, make, words):
    X = rng.normal(size=(30, 2))
    out = tmp_path / "run.h5"
    with pytest.raises(GenmemError) as failure:
        genmem.kfold(make(_last_unit_row(X, 3)), X, folds=3, out=out)
    message = str(failure.value)
    assert "\n" not in message and "completed units are kept" in message
    for word in words:
        assert word in message
    partial = genmem.read_result(tmp_path / "run.h5.partial")
    np.testing.assert_array_equal(partial.done, [[True, True, False]])
    assert np.isfinite(partial.loglik[0, :2]).all() and not out.exists()
