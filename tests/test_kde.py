"""Gaussian KDE against brute-force NumPy and literal leave-one-out refits."""
import math

import numpy as np
import pytest
from scipy.special import logsumexp

from genmem.errors import GenmemError
from genmem.models import KDE, kde_loo_memorization
from genmem.models.kde import rule_of_thumb_bandwidth


def brute_logp(Q, T, h):
    """log (1/n) Σ_j N(q; t_j, h² I), one pair at a time."""
    n, d = T.shape
    out = []
    for q in Q:
        terms = [-np.sum((q - t) ** 2) / (2 * h * h) for t in T]
        out.append(logsumexp(terms) - math.log(n) - 0.5 * d * math.log(2 * math.pi * h * h))
    return np.array(out)


def test_log_prob_equals_brute_force(rng):
    X = rng.normal(size=(40, 3))
    model = KDE(0.6, chunk_size=7).fit(X[:30])
    np.testing.assert_allclose(model.log_prob(X), brute_logp(X, X[:30], 0.6), rtol=0, atol=1e-10)


def test_log_prob_integrates_to_one_in_1d():
    X = np.array([[0.0], [1.0], [3.0]])
    model = KDE(0.5).fit(X)
    grid = np.linspace(-6, 9, 20001)[:, None]
    assert np.trapezoid(np.exp(model.log_prob(grid)), grid[:, 0]) == pytest.approx(1.0, abs=1e-8)


def test_rules_of_thumb_match_formulas(rng):
    X = rng.normal(size=(50, 4)) * [1, 2, 3, 4]
    sigma = math.sqrt(np.mean(np.var(X, axis=0, ddof=1)))
    assert rule_of_thumb_bandwidth(X, "scott") == pytest.approx(sigma * 50 ** (-1 / 8))
    assert rule_of_thumb_bandwidth(X, "silverman") == pytest.approx(sigma * (50 * 6 / 4) ** (-1 / 8))
    assert KDE("scott").fit(X).bandwidth_ == pytest.approx(sigma * 50 ** (-1 / 8))


def test_cv_bandwidth_maximises_brute_force_loo_likelihood(rng):
    X = rng.normal(size=(25, 2))
    grid = [0.1, 0.2, 0.4, 0.8, 1.6]
    best, _, scores = KDE("cv").cv_bandwidth(X, grid=grid)
    brute = [np.mean([brute_logp(X[i:i + 1], np.delete(X, i, 0), h)[0] for i in range(25)]) for h in grid]
    np.testing.assert_allclose(scores, brute, atol=1e-10)
    assert best == grid[int(np.argmax(brute))]


def test_loo_memorization_equals_literal_refits(rng):
    X = rng.normal(size=(30, 2))
    X[0] = [6.0, 6.0]  # an outlier
    res = kde_loo_memorization(X, 0.5, chunk_size=4)
    for i in range(30):
        rest = np.delete(X, i, 0)
        lin = KDE(0.5).fit(X).log_prob(X[i:i + 1])[0]
        lout = brute_logp(X[i:i + 1], rest, 0.5)[0]
        assert res["loglik_in"][i] == pytest.approx(lin, abs=1e-10)
        assert res["memorization"][i] == pytest.approx(lin - lout, abs=1e-8)
    assert int(np.argmax(res["memorization"])) == 0


def test_loo_resolves_rule_bandwidth_on_full_data(rng):
    X = rng.normal(size=(20, 3))
    assert kde_loo_memorization(X, "silverman")["bandwidth"] == pytest.approx(rule_of_thumb_bandwidth(X, "silverman"))


@pytest.mark.parametrize("bandwidth", [0.7, "scott"])
def test_fit_units_equals_fitting_each_unit(rng, bandwidth):
    X = rng.normal(size=(45, 3))
    masks = rng.random((5, 45)) < 0.6
    out = KDE(bandwidth, chunk_size=8).fit_units(X, masks, [0] * 5)["loglik"]
    for u in range(5):
        h = KDE(bandwidth).fit(X[masks[u]]).bandwidth_
        np.testing.assert_allclose(out[u], brute_logp(X, X[masks[u]], h), atol=1e-10)


def test_fit_units_does_not_underflow_for_far_points():
    # a held-out point whose nearest training neighbour is > 1000 nats away in kernel units
    X = np.array([[0.0], [0.1], [0.2], [30.0]])
    masks = np.array([[True, True, True, False]])
    out = KDE(0.5).fit_units(X, masks, [0])["loglik"]
    np.testing.assert_allclose(out[0], brute_logp(X, X[:3], 0.5), rtol=1e-12)
    assert np.isfinite(out).all()


def test_float32_close_to_float64(rng):
    X = rng.normal(size=(30, 5))
    a = KDE(1.0).fit(X).log_prob(X)
    b = KDE(1.0, dtype="float32").fit(X).log_prob(X)
    np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("bad", [-1.0, 0.0, "wide", float("nan")])
def test_bad_bandwidth_is_a_clear_error(bad):
    with pytest.raises(GenmemError, match="'bandwidth' parameter of KDE"):
        KDE(bad).fit(np.zeros((3, 2)) + np.arange(3)[:, None])


def test_feature_mismatch_and_not_fitted(rng):
    with pytest.raises(GenmemError, match="not fitted"):
        KDE().log_prob(np.zeros((2, 2)))
    model = KDE(1.0).fit(rng.normal(size=(5, 3)))
    with pytest.raises(GenmemError, match="3"):
        model.log_prob(np.zeros((2, 4)))
