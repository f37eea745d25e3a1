"""Tests of the Gaussian mixture model against scikit-learn, SciPy and one-by-one fits."""
import warnings

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.datasets import load_digits, make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from genmem.errors import GenmemError
from genmem.models import SklearnDensity
from genmem.models.gmm import GMM, ConvergenceWarning, kmeans_labels
from genmem.seeds import sklearn_seed

COVARIANCE_TYPES = ["full", "diag"]


def blobs(n=600, n_features=3, centers=4, seed=0):
    """Well-separated, anisotropic Gaussian clusters and their true labels."""
    X, labels = make_blobs(n_samples=n, n_features=n_features, centers=centers, center_box=(-20, 20),
                           cluster_std=1.0, random_state=seed)
    scales = np.random.default_rng(seed).uniform(0.5, 2.0, size=(centers, n_features))
    return X * scales[labels] + 0.3 * X[:, ::-1] * (labels[:, None] % 2), labels


def digit_rows(n=500):
    return load_digits().data[:n]


def initial_params(X, n_components, covariance_type, seed):
    """Means at random rows, equal weights, the data covariance (plus 0.1 on the diagonal) for all."""
    rng = np.random.default_rng(seed)
    means = X[rng.choice(len(X), n_components, replace=False)]
    weights = np.full(n_components, 1.0 / n_components)
    if covariance_type == "full":
        covariances = np.repeat((np.cov(X.T) + 0.1 * np.eye(X.shape[1]))[None], n_components, axis=0)
        precisions = np.linalg.inv(covariances)
    else:
        covariances = np.repeat((X.var(0) + 0.1)[None], n_components, axis=0)
        precisions = 1.0 / covariances
    return weights, means, covariances, precisions


def scipy_log_density(model, X):
    """Brute-force mixture log-density from the fitted parameters, one component at a time."""
    logs = []
    for w, mu, cov in zip(model.weights_, model.means_, model.covariances_):
        cov = cov if cov.ndim == 2 else np.diag(cov)
        logs.append(np.log(w) + multivariate_normal(mu, cov).logpdf(X))
    return logsumexp(np.stack(logs), axis=0)


# -- agreement with scikit-learn --------------------------------------------------------
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dataset", ["blobs", "digits"])
def test_matches_sklearn_from_the_same_initialisation(covariance_type, dataset):
    X = blobs()[0] if dataset == "blobs" else digit_rows()
    n_components, reg_covar = (4, 1e-6) if dataset == "blobs" else (5, 1e-2)
    weights, means, covariances, precisions = initial_params(X, n_components, covariance_type, seed=3)
    options = dict(covariance_type=covariance_type, tol=1e-5, reg_covar=reg_covar, max_iter=200)
    ref = GaussianMixture(n_components, weights_init=weights, means_init=means, precisions_init=precisions,
                          **options).fit(X)
    ours = GMM(n_components, **options)._fit_from_params(X, weights, means, covariances)

    assert ours.n_iter_ == ref.n_iter_ and ours.converged_ and ref.converged_
    np.testing.assert_allclose(ours.lower_bound_, ref.lower_bound_, rtol=1e-9)
    np.testing.assert_allclose(ours.weights_, ref.weights_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-6, atol=1e-9 * np.abs(X).max())
    scale = np.abs(ref.covariances_).max()
    np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-6, atol=1e-9 * scale)
    np.testing.assert_allclose(ours.precisions_cholesky_, ref.precisions_cholesky_, rtol=1e-6,
                               atol=1e-9 * np.abs(ref.precisions_cholesky_).max())
    np.testing.assert_allclose(ours.log_prob(X), ref.score_samples(X), rtol=1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_own_initialisation_reaches_sklearns_optimum_on_separated_blobs(covariance_type):
    X, _ = blobs(seed=1)
    ref = GaussianMixture(4, covariance_type=covariance_type, tol=1e-6, random_state=0).fit(X)
    ours = GMM(4, covariance_type=covariance_type, tol=1e-6).fit(X, rng=0)
    assert abs(ours.log_prob(X).mean() - ref.score(X)) < 1e-6
    order_ours, order_ref = np.lexsort(ours.means_.T), np.lexsort(ref.means_.T)
    np.testing.assert_allclose(ours.means_[order_ours], ref.means_[order_ref], atol=1e-4)
    np.testing.assert_allclose(ours.weights_[order_ours], ref.weights_[order_ref], atol=1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_prob_equals_scipy_mixture_of_the_fitted_parameters(covariance_type):
    X, _ = blobs(seed=2)
    model = GMM(4, covariance_type=covariance_type).fit(X, rng=1)
    queries = np.vstack([X[:50], np.random.default_rng(0).normal(scale=30.0, size=(50, X.shape[1]))])
    np.testing.assert_allclose(model.log_prob(queries), scipy_log_density(model, queries), rtol=1e-10)
    np.testing.assert_allclose(model.score_samples(queries), model.log_prob(queries))


def test_weights_sum_to_one_and_lower_bound_is_the_training_log_likelihood():
    X, _ = blobs(seed=3)
    model = GMM(4, tol=1e-8, max_iter=500).fit(X, rng=0)
    assert model.weights_.sum() == pytest.approx(1.0, abs=1e-12)
    # at convergence the bound (log-likelihood before the last M-step) equals that after it
    assert model.log_prob(X).mean() == pytest.approx(model.lower_bound_, abs=1e-7)


def test_chunk_size_and_dtype_do_not_change_the_result():
    X, _ = blobs(seed=4)
    base = GMM(4).fit(X, rng=5)
    chunked = GMM(4, chunk_size=7).fit(X, rng=5)
    np.testing.assert_allclose(chunked.log_prob(X), base.log_prob(X), rtol=1e-10)
    single = GMM(4, dtype="float32").fit(X, rng=5)
    np.testing.assert_allclose(single.log_prob(X), base.log_prob(X), rtol=1e-4)


def test_kmeans_recovers_separated_clusters():
    X, labels = blobs(seed=5)
    found = kmeans_labels(torch.as_tensor(X), 4, np.random.RandomState(0))
    assert adjusted_rand_score(labels, found.numpy()) == 1.0


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n_init", [1, 3])
def test_kmeans_start_is_scikit_learns_for_the_same_seed(covariance_type, n_init):
    X = digit_rows(300)
    options = dict(covariance_type=covariance_type, reg_covar=1e-2, tol=1e-6, max_iter=300, n_init=n_init)
    ours = GMM(6, **options).fit(X, rng=123)
    ref = GaussianMixture(6, init_params="kmeans", random_state=sklearn_seed(123), **options).fit(X)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(ours.log_prob(X), ref.score_samples(X), rtol=1e-9, atol=1e-9)
    wrapped = SklearnDensity(GaussianMixture(6, init_params="kmeans", **options)).fit(X, rng=123)
    np.testing.assert_allclose(ours.log_prob(X), wrapped.log_prob(X), rtol=1e-9, atol=1e-9)


# -- batched units ----------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init,n_init", [("kmeans++", 1), ("kmeans++", 2), ("random", 2)])
def test_fit_units_equals_fitting_each_unit_alone(covariance_type, init, n_init):
    X, _ = blobs(n=240, centers=3, seed=6)
    fold = np.random.default_rng(0).permutation(len(X)) % 4
    masks = np.vstack([fold != k for k in range(4)] + [np.random.default_rng(1).random(len(X)) < 0.5])
    seeds = [11, 12, 13, 14, 15]
    model = GMM(3, covariance_type=covariance_type, init=init, n_init=n_init, chunk_size=1000, batch_units=True)
    done = []
    batched = model.fit_units(X, masks, seeds, progress=done.append)["loglik"]
    alone = np.stack([model.clone().fit(X[m], rng=s).log_prob(X) for m, s in zip(masks, seeds)])
    assert batched.shape == (5, len(X)) and batched.dtype == np.float64
    np.testing.assert_allclose(batched, alone, rtol=1e-9)
    assert sum(done) == 5


def test_fit_units_validates_its_inputs():
    X, _ = blobs(n=40, seed=7)
    masks = np.ones((2, 40), dtype=bool)
    with pytest.raises(GenmemError, match="boolean array"):
        GMM(2, batch_units=True).fit_units(X, masks.astype(int), [0, 1])
    with pytest.raises(GenmemError, match="boolean array"):
        GMM(2, batch_units=True).fit_units(X, masks[:, :30], [0, 1])
    with pytest.raises(GenmemError, match="seeds"):
        GMM(2, batch_units=True).fit_units(X, masks, [0])
    masks[1, 3:] = False
    with pytest.raises(GenmemError, match="unit 1 has 3"):
        GMM(4, batch_units=True).fit_units(X, masks, [0, 1])


# -- seeds ------------------------------------------------------------------------------
@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_same_seed_same_numbers_and_different_seeds_differ(init):
    X = digit_rows(300)
    options = dict(init=init, covariance_type="diag", reg_covar=1e-2, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a, b, c = (GMM(6, **options).fit(X, rng=seed).log_prob(X) for seed in (7, 7, 8))
        g1, g2 = (GMM(6, **options).fit(X, rng=np.random.default_rng(3)).log_prob(X) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(g1, g2)
    assert np.abs(a - c).max() > 1e-3


# -- errors and warnings ----------------------------------------------------------------
def test_not_fitted_raises():
    with pytest.raises(GenmemError, match="not fitted"):
        GMM().log_prob(np.zeros((3, 2)))


@pytest.mark.parametrize("param,value", [
    ("n_components", 0), ("n_components", 2.5), ("n_components", True),
    ("covariance_type", "spherical"), ("tol", -1.0), ("tol", "1e-3"), ("reg_covar", float("nan")),
    ("max_iter", 0), ("n_init", 0), ("init", "kmeans"), ("dtype", "float16"), ("chunk_size", 0),
])
def test_bad_parameters_raise_naming_parameter_and_value(param, value):
    X, _ = blobs(n=40, seed=8)
    with pytest.raises(GenmemError, match=rf"'{param}' parameter of GMM must be .* Got {value!r} instead"):
        GMM(**{param: value}).fit(X)


def test_bad_device_raises():
    with pytest.raises(GenmemError, match="device"):
        GMM(device="tpu").fit(np.zeros((5, 2)))


def test_more_components_than_rows_raises():
    with pytest.raises(GenmemError, match="n_components=5 needs at least that many training examples but X has 4"):
        GMM(5).fit(np.random.default_rng(0).normal(size=(4, 2)))


def test_wrong_number_of_features_raises():
    model = GMM(2).fit(blobs(n=40, seed=9)[0], rng=0)
    with pytest.raises(GenmemError, match="features"):
        model.log_prob(np.zeros((3, 5)))


def test_singular_covariance_raises():
    X = np.repeat([[0.0, 0.0], [10.0, 10.0]], 5, axis=0)
    with pytest.raises(GenmemError, match="reg_covar"):
        GMM(2, reg_covar=0.0).fit(X, rng=0)


def test_non_convergence_warns_and_convergence_does_not():
    X, _ = blobs(seed=10)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        model = GMM(4, max_iter=1).fit(X, rng=0)
    assert not model.converged_ and model.n_iter_ == 1
    masks = np.ones((2, len(X)), dtype=bool)
    with pytest.warns(ConvergenceWarning, match="2 of 2 GMM units"):
        GMM(4, max_iter=1, batch_units=True).fit_units(X, masks, [0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert GMM(4).fit(X, rng=0).converged_


@pytest.mark.gpu
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_cuda_matches_cpu(covariance_type):
    X, _ = blobs(seed=12)
    masks = np.vstack([np.arange(len(X)) % 3 != k for k in range(3)])
    results = {}
    for device in ("cpu", "cuda"):
        model = GMM(4, covariance_type=covariance_type, device=device)
        results[device] = (model.fit(X, rng=0).log_prob(X), model.fit_units(X, masks, [1, 2, 3])["loglik"])
    for on_gpu, on_cpu in zip(results["cuda"], results["cpu"]):
        np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-8)


def test_parameters_round_trip():
    model = GMM(3, covariance_type="diag", n_init=2)
    assert model.get_params()["covariance_type"] == "diag"
    clone = model.clone(tol=1e-4)
    assert clone.tol == 1e-4 and clone.n_init == 2 and not hasattr(clone, "means_")
    assert GMM.name == "gmm"
    assert GMM(3).fit(blobs(n=30, seed=11)[0], rng=0).means_.shape == (3, 3)
