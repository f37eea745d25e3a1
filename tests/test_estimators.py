"""Estimators against brute-force loops, the null test and the jackknife."""
import math

import numpy as np
import pytest

from genmem.memorization import estimate, jackknife_stderr, make_folds, memorization_scores


def lme(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values) / len(values))


def brute(loglik, assignment, estimator):
    R, K, N = loglik.shape
    out = np.empty(N)
    for i in range(N):
        outs = [loglik[r, assignment[r, i], i] for r in range(R)]
        if estimator == "reference":
            ins = [loglik[r, k, i] for r in range(R) for k in range(K) if k != assignment[r, i]]
            lin = lme(ins)
        else:
            lin = np.mean([lme([loglik[r, (assignment[r, i] + c) % K, i] for r in range(R)]) for c in range(1, K)])
        out[i] = lin - lme(outs)
    return out


@pytest.mark.parametrize("estimator", ["reference", "balanced"])
def test_estimators_equal_brute_force(rng, estimator):
    a = make_folds(23, 4, 3, seed=0)
    L = rng.normal(size=(3, 4, 23)) * 2
    np.testing.assert_allclose(estimate(L, a, estimator)[0], brute(L, a, estimator), atol=1e-12)


def test_jackknife_equals_brute_force_loop(rng):
    a = make_folds(15, 3, 4, seed=0)
    L = rng.normal(size=(4, 3, 15))
    loo = np.stack([brute(np.delete(L, r, 0), np.delete(a, r, 0), "balanced") for r in range(4)])
    expected = np.sqrt(3 / 4 * ((loo - loo.mean(0)) ** 2).sum(0))
    np.testing.assert_allclose(jackknife_stderr(L, a), expected, atol=1e-12)


def test_balanced_is_unbiased_under_the_null_and_reference_is_not(rng):
    """When including an example changes nothing, log p under every model is exchangeable noise."""
    R, K, N = 3, 10, 20000
    a = make_folds(N, K, R, seed=0)
    L = rng.normal(size=(R, K, N)) * 1.5 - 50.0
    s = memorization_scores(L, a)
    se_bal = s["memorization_balanced"].std() / math.sqrt(N)
    assert abs(s["memorization_balanced"].mean()) < 4 * se_bal
    se_ref = s["memorization_reference"].std() / math.sqrt(N)
    assert s["memorization_reference"].mean() > max(0.3, 20 * se_ref)  # log-mean-exp of fewer values is lower
    assert s["stderr"].shape == (N,) and (s["stderr"] > 0).all()


def test_effect_is_recovered(rng):
    R, K, N = 2, 5, 50
    a = make_folds(N, K, R, seed=0)
    L = rng.normal(size=(R, K, N)) * 0.01
    L[np.arange(R)[:, None], a, np.arange(N)] -= 3.0  # held-out log p is 3 nats lower
    for name in ("reference", "balanced"):
        np.testing.assert_allclose(estimate(L, a, name)[0], 3.0, atol=0.05)
