"""Closed-form influence (KDE, k-NN, GMM) against exact leave-one-out refits, brute force in NumPy/scikit-learn."""
import importlib
import json
import warnings

import numpy as np
import pytest
from scipy.special import gammaln, logsumexp
from scipy.stats import spearmanr
from sklearn.mixture import GaussianMixture
from test_cli import assert_one_line_error, run  # the CLI test helpers
from threadpoolctl import threadpool_limits

import genmem
from genmem.errors import GenmemError
from genmem.influence import GMMInfluence, KDEInfluence, KNNInfluence, TopInfluence
from genmem.models import GMM, KDE
from genmem.results import add_views


@pytest.fixture
def data(rng):
    X = rng.normal(size=(40, 3))
    X[0] += 6.0  # an outlier: its kernel carries almost all of p at itself
    X[1] = X[2] + 1e-3  # a near-duplicate pair
    Z = np.vstack([rng.normal(size=(5, 3)), X[:3], [[6.0, 0.0, 0.0]]])
    return X, Z


def kde_log_p(X, Z, h):
    d2 = ((Z[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    return logsumexp(-d2 / (2 * h * h), axis=1) - np.log(len(X)) - 0.5 * X.shape[1] * np.log(2 * np.pi * h * h)


def knn_log_p(X, Z, k):
    d = np.sqrt(((Z[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    r_k = np.sort(d, axis=1)[:, k - 1]
    dim = X.shape[1]
    log_volume = 0.5 * dim * np.log(np.pi) - gammaln(0.5 * dim + 1)
    return np.log(k) - np.log(len(X)) - log_volume - dim * np.log(r_k)


def loo_refit(log_p, X, Z):
    """[n_z, N]: log p(z | D) − log p(z | D without x_i), by refitting on every D without x_i."""
    full = log_p(X, Z)
    return np.stack([full - log_p(np.delete(X, i, axis=0), Z) for i in range(len(X))], axis=1)


def loo_self(log_p, X):
    return np.array([log_p(X, X[i:i + 1])[0] - log_p(np.delete(X, i, axis=0), X[i:i + 1])[0] for i in range(len(X))])


@pytest.mark.parametrize("h", [0.3, 0.8])
def test_kde_equals_leave_one_out_refit(data, h):
    X, Z = data
    inf = KDEInfluence(KDE(h), X)
    log_p = lambda A, B: kde_log_p(A, B, h)  # noqa: E731
    np.testing.assert_allclose(inf.influence(Z), loo_refit(log_p, X, Z), rtol=0, atol=1e-8)
    np.testing.assert_allclose(inf.self_influence(), loo_self(log_p, X), rtol=0, atol=1e-8)
    # the formula, written out, where it is well conditioned (not where one kernel carries all of p)
    n, zs = len(X), Z[:5]
    kern = np.exp(-((zs[:, None] - X[None]) ** 2).sum(-1) / (2 * h * h)) / (2 * np.pi * h * h) ** 1.5
    ratio = kern / kern.sum(1, keepdims=True)
    assert ratio.max() < 0.999
    np.testing.assert_allclose(inf.influence(zs), np.log((n - 1) / n) - np.log(1 - ratio), rtol=0, atol=1e-8)


def test_kde_refit_with_genmem_model_and_sign(data):
    X, Z = data
    inf = KDEInfluence(KDE(0.5), X)
    refit = np.stack([KDE(0.5).fit(X).log_prob(Z) - KDE(0.5).fit(np.delete(X, i, 0)).log_prob(Z)
                      for i in range(len(X))], axis=1)
    M = inf.influence(Z)
    np.testing.assert_allclose(M, refit, atol=1e-8)
    # sign: the training point at z is its strongest proponent (removing it lowers p(z) most)
    assert M[5:8].argmax(1).tolist() == [0, 1, 2]
    assert M[5, 0] > 1.0 and (M > np.log((len(X) - 1) / len(X)) - 1e-12).all()


@pytest.mark.parametrize("k", [2, 5])
def test_knn_equals_leave_one_out_refit(data, k):
    X, Z = data
    inf = KNNInfluence(k, X)
    log_p = lambda A, B: knn_log_p(A, B, k)  # noqa: E731
    np.testing.assert_allclose(inf.influence(Z), loo_refit(log_p, X, Z), rtol=0, atol=1e-8)
    np.testing.assert_allclose(inf.self_influence(), loo_self(log_p, X), rtol=0, atol=1e-8)


def test_knn_undefined_density_is_an_error(data):
    X, _ = data
    with pytest.raises(GenmemError, match="infinite.*n_neighbors"):
        KNNInfluence(1, X).self_influence()
    dup = np.vstack([X, X[:1], X[:1]])
    with pytest.raises(GenmemError, match="query row 0"):
        KNNInfluence(3, dup).influence(X[:1])
    with pytest.raises(GenmemError, match="n_neighbors"):
        KNNInfluence(0, X)
    with pytest.raises(GenmemError, match="at least 41 rows"):
        KNNInfluence(40, X)


@pytest.mark.parametrize("model,cls", [(KDE(0.5), KDEInfluence), (3, KNNInfluence)])
def test_top_k_matches_the_matrix(data, model, cls):
    X, Z = data
    inf = cls(model, X)
    M = inf.influence(Z)
    top = inf.influence(Z, k=4)
    assert isinstance(top, TopInfluence) and top.proponents.shape == (len(Z), 4)
    np.testing.assert_allclose(top.proponent_scores, -np.sort(-M, axis=1)[:, :4], atol=1e-12)
    np.testing.assert_allclose(top.opponent_scores, np.sort(M, axis=1)[:, :4], atol=1e-12)
    np.testing.assert_allclose(np.take_along_axis(M, top.proponents, 1), top.proponent_scores, atol=1e-12)
    np.testing.assert_allclose(np.take_along_axis(M, top.opponents, 1), top.opponent_scores, atol=1e-12)
    assert inf.influence(Z, k=1000).proponents.shape == (len(Z), len(X))


def test_bad_test_points(data):
    X, _ = data
    inf = KDEInfluence(KDE(0.5), X)
    with pytest.raises(GenmemError, match="2 features, but the model is expecting 3"):
        inf.influence(np.zeros((2, 2)))
    with pytest.raises(GenmemError, match="k must be a positive int"):
        inf.influence(X[:2], k=0)


# -- GMM: the one-step approximation against exact warm-started refits -------------------------

@pytest.fixture(scope="module")
def mixture():
    rng = np.random.default_rng(7)
    centers = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    X = np.vstack([c + rng.normal(size=(30, 2)) * [1.0, 0.6] for c in centers])
    Z = np.array([[0.5, 0.3], [7.0, 1.0], [1.0, 9.5]])
    return X, Z, np.repeat(np.arange(3), 30), np.arange(3)


def exact_gmm_refits(X, Z, covariance_type):
    """Full fit, then each leave-one-out refit warm-started from it, run to convergence (scikit-learn).

    One BLAS thread: threaded BLAS on these 2x2 matrices is 15x slower on a busy machine.
    """
    with threadpool_limits(1):
        return _exact_gmm_refits(X, Z, covariance_type)


def _exact_gmm_refits(X, Z, covariance_type):
    opts = dict(n_components=3, covariance_type=covariance_type, tol=1e-12, max_iter=5000)
    full = GaussianMixture(random_state=0, **opts).fit(X)
    prec = np.linalg.inv(full.covariances_) if covariance_type == "full" else 1.0 / full.covariances_
    self_if, test_if = [], []
    for i in range(len(X)):
        refit = GaussianMixture(weights_init=full.weights_, means_init=full.means_, precisions_init=prec,
                                **opts).fit(np.delete(X, i, 0))
        self_if.append(full.score_samples(X[i:i + 1])[0] - refit.score_samples(X[i:i + 1])[0])
        test_if.append(full.score_samples(Z) - refit.score_samples(Z))
    return full, np.array(self_if), np.array(test_if).T


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gmm_approximation_tracks_exact_refits(mixture, covariance_type):
    X, Z, cluster, z_cluster = mixture
    full, exact_self, exact_test = exact_gmm_refits(X, Z, covariance_type)
    inf = GMMInfluence(full, X)
    approx_self = inf.self_influence()
    assert spearmanr(approx_self, exact_self)[0] >= 0.95
    assert np.abs(approx_self - exact_self).max() < 1e-3 * np.abs(exact_self).max()
    approx_test = inf.influence(Z)
    for j in range(len(Z)):
        same = cluster == z_cluster[j]  # the others barely move z's density: near-ties of about log((N-1)/N)
        assert spearmanr(approx_test[j, same], exact_test[j, same])[0] >= 0.95
        np.testing.assert_allclose(approx_test[j], exact_test[j], atol=1e-4)
    # a genmem GMM fitted to the same optimum gives the same influence
    model = GMM(3, covariance_type=covariance_type, tol=1e-12, max_iter=5000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model._fit_from_params(X, full.weights_, full.means_, full.covariances_)
    np.testing.assert_allclose(GMMInfluence(model, X).self_influence(), approx_self, atol=1e-6)


def test_gmm_influence_needs_a_fitted_mixture(mixture):
    X, *_ = mixture
    with pytest.raises(GenmemError, match="fitted GMM"):
        GMMInfluence(GMM(3), X)
    full = GaussianMixture(3, random_state=0).fit(X)
    with pytest.raises(GenmemError, match="3 features, but the model is expecting 2"):
        GMMInfluence(full, np.hstack([X, X[:, :1]]))


@pytest.mark.slow
def test_gmm_approximation_on_overlapping_digit_clusters(digits):
    """Real data, overlapping components, near-degenerate diagonal variances: still rank-faithful (~40 s)."""
    X = digits[0][:150]
    for covariance_type, reg in (("diag", 1e-6), ("full", 1e-3)):
        model = GMM(3, covariance_type=covariance_type, tol=1e-8, max_iter=2000, reg_covar=reg).fit(X, rng=0)
        exact = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(len(X)):
                refit = model.clone()._fit_from_params(np.delete(X, i, 0), model.weights_, model.means_,
                                                       model.covariances_)
                exact.append(model.log_prob(X[i:i + 1])[0] - refit.log_prob(X[i:i + 1])[0])
        assert spearmanr(GMMInfluence(model, X).self_influence(), exact)[0] >= 0.95


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kde_file(tmp_path_factory):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(45, 2))
    X[0] = [5.0, 5.0]
    out = tmp_path_factory.mktemp("kde") / "kde.h5"
    genmem.kfold(KDE(0.5), X, folds=3, out=out)
    return out, X


def test_cli_kde_self_influence(kde_file):
    out, X = kde_file
    result = run(["influence", out, "--self", "-k", 3])
    assert result.exit_code == 0, result.output
    res = genmem.read_result(out)
    values = res.values("influence/self")
    log_p = lambda A, B: kde_log_p(A, B, 0.5)  # noqa: E731
    np.testing.assert_allclose(values, loo_self(log_p, X), atol=1e-8)
    rho = spearmanr(values, res.memorization)[0]
    assert f"with memorization M: {rho:.4f}" in result.stdout
    assert rho > 0.5  # exact leave-one-out and 3-fold scores tell a similar story
    assert result.stdout.splitlines()[3].split()[1] == "0"  # the outlier has the highest self-influence
    top = run(["top", out, "--by", "influence/self", "-n", 2, "--json"])
    assert [row["row"] for row in json.loads(top.stdout)] == list(np.argsort(-values)[:2])


def test_cli_kde_test_points(kde_file, tmp_path):
    out, X = kde_file
    log_p = lambda A, B: kde_log_p(A, B, 0.5)  # noqa: E731
    result = run(["influence", out, "--test-index", "3,7", "--test-index", 9, "-k", 2])
    assert result.exit_code == 0, result.output
    stored = genmem.read_result(out).views["influence/test"]
    np.testing.assert_allclose(stored, loo_refit(log_p, X, X[[3, 7, 9]]).T, atol=1e-8)
    lines = result.stdout.splitlines()
    assert lines[0] == "test point: row 3" and lines[2].split()[2] == "3"  # a point is its own top proponent
    Z = np.array([[0.1, 0.2], [4.0, 4.5]])
    np.save(tmp_path / "z.npy", Z)
    result = run(["influence", out, "--test-data", tmp_path / "z.npy", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["test"][1]["proponents"][0]["row"] == 0
    np.testing.assert_allclose(genmem.read_result(out).views["influence/test"], loo_refit(log_p, X, Z).T, atol=1e-8)


def test_cli_self_and_test_points_validate_first_and_write_once(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(30, 2))
    out = tmp_path / "kde.h5"
    genmem.kfold(KDE(0.5), X, folds=3, out=out)
    computed = []
    monkeypatch.setattr(KDEInfluence, "self_influence",
                        lambda inf, _orig=KDEInfluence.self_influence: computed.append(1) or _orig(inf))
    assert_one_line_error(run(["influence", out, "--self", "--test-index", 99999]), "out of range", "0 to 29")
    np.save(tmp_path / "bad.npy", np.zeros((3, 5)))
    assert_one_line_error(run(["influence", out, "--self", "--test-data", tmp_path / "bad.npy"]), "2 features")
    assert computed == [] and genmem.read_result(out).views == {}
    calls = []
    monkeypatch.setattr(importlib.import_module("genmem.cli.influence"), "add_views",
                        lambda *a, **kw: calls.append(a) or add_views(*a, **kw))
    result = run(["influence", out, "--self", "--test-index", "4,8"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and sorted(calls[0][1]) == sorted(calls[0][2]) == ["influence/self", "influence/test"]
    res = genmem.read_result(out)
    log_p = lambda A, B: kde_log_p(A, B, 0.5)  # noqa: E731
    np.testing.assert_allclose(res.values("influence/self"), loo_self(log_p, X), atol=1e-8)
    np.testing.assert_allclose(res.views["influence/test"], loo_refit(log_p, X, X[[4, 8]]).T, atol=1e-8)
    assert computed == [1]


def test_cli_gmm_self_influence(tmp_path):
    rng = np.random.default_rng(4)
    X = np.vstack([rng.normal(size=(20, 2)), rng.normal(size=(20, 2)) + 6])
    out = tmp_path / "gmm.h5"
    genmem.kfold(GMM(2), X, folds=3, out=out, seed=5)
    result = run(["influence", out, "--self", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    res = genmem.read_result(out)
    expected = GMMInfluence(GMM(**res.config["model"]["params"]).fit(X, rng=5), X).self_influence()
    np.testing.assert_allclose(res.values("influence/self"), expected, rtol=1e-10)
    assert "gmm-one-step" in result.stdout


def test_cli_bad_input(kde_file, tmp_path):
    out, X = kde_file
    assert_one_line_error(run(["influence", out]), "nothing to do")
    assert_one_line_error(run(["influence", out, "--self", "--unbiased"]), "VAE runs")
    assert_one_line_error(run(["influence", out, "--test-index", 45]), "out of range", "0 to 44")
    assert_one_line_error(run(["influence", out, "--test-index", "a"]), "row numbers")
    negative = run(["influence", out, "--self", "--seed", -1])
    assert negative.exit_code == 2 and "-1" in negative.output  # click's usage error
    np.save(tmp_path / "bad.npy", np.zeros((3, 5)))
    assert_one_line_error(run(["influence", out, "--test-data", tmp_path / "bad.npy"]), "(3, 5)", "2 features")
    np.savez(tmp_path / "two.npz", a=np.zeros((3, 2)), b=np.zeros((3, 2)))
    assert_one_line_error(run(["influence", out, "--test-data", tmp_path / "two.npz"]), "'x'")
    assert_one_line_error(run(["influence", out, "--test-data", tmp_path / "none.npy"]), "no such file")
    assert_one_line_error(run(["influence", tmp_path / "missing.h5", "--self"]), "no such file")
    bare = tmp_path / "bare.h5"
    genmem.kfold(KDE(0.5), X, folds=3, out=bare, store_data=False)
    assert_one_line_error(run(["influence", bare, "--self"]), "--no-store-data")
