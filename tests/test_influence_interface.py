"""One influence interface: (model or checkpoints, training data) → self_influence(), influence(test, k=None)."""
import types

import h5py
import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

import genmem
from genmem.errors import GenmemError
from genmem.influence import GMMInfluence, KDEInfluence, KNNInfluence, TopInfluence, TracIn, influence_for
from genmem.models import GMM, KDE, SklearnDensity, kde_loo_memorization

from cli_helpers import assert_one_line_error, run
from custom_models import DiagonalGaussian, Shifted, uniform_weights


def quadratic_loss(p, x):
    return 0.5 * ((p["w"] @ x - p["b"]) ** 2).sum()


def noisy_loss(p, x, eps):
    return 0.5 * ((p["w"] @ x + eps[0] - p["b"]) ** 2).sum()


@pytest.fixture
def checkpoints(rng):
    return [({"w": torch.as_tensor(rng.normal(size=(2, 3))), "b": torch.as_tensor(rng.normal(size=2))}, lr)
            for lr in (0.5, 0.1)]


def per_example_gradients(loss, params, X, eps=None):
    """Flattened gradients of the loss at each row, by a Python loop over rows (the oracle)."""
    out = []
    for i, x in enumerate(torch.as_tensor(X)):
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        value = loss(p, x) if eps is None else loss(p, x, eps[i])
        grads = torch.autograd.grad(value, list(p.values()))
        out.append(torch.cat([g.reshape(-1) for g in grads]).numpy())
    return np.stack(out)


def test_tracin_holds_its_training_data_and_keeps_the_old_call(checkpoints, rng):
    X, Z = rng.normal(size=(12, 3)), rng.normal(size=(4, 3))
    tr = TracIn(quadratic_loss, checkpoints, X)
    bare = TracIn(quadratic_loss, checkpoints)
    np.testing.assert_array_equal(tr.self_influence(), bare.self_influence(X))
    matrix = tr.influence(Z)
    oracle = sum(lr * per_example_gradients(quadratic_loss, p, Z) @ per_example_gradients(quadratic_loss, p, X).T
                 for p, lr in checkpoints)
    np.testing.assert_allclose(matrix, oracle, rtol=1e-12)
    top = tr.influence(Z, 3)
    assert isinstance(top, TopInfluence) and top.proponents.shape == (4, 3)
    np.testing.assert_array_equal(top.proponents, tr.influence(Z, k=3).proponents)
    with pytest.warns(DeprecationWarning, match=r"influence\(Z, X, k\) is deprecated"):
        np.testing.assert_array_equal(bare.influence(Z, X), matrix)
    with pytest.warns(DeprecationWarning):
        np.testing.assert_array_equal(bare.influence(Z, X, 3).proponents, top.proponents)
    with pytest.raises(GenmemError, match=r"no training data: build it with TracIn\(loss, checkpoints, train=X\)"):
        bare.influence(Z)


def test_a_loss_with_noise_and_no_noise_shape_is_a_one_line_error(checkpoints):
    with pytest.raises(GenmemError, match=r"takes a noise draw, loss\(params, x, eps\), but noise_shape is not given"):
        TracIn(noisy_loss, checkpoints)
    with pytest.raises(GenmemError, match="noise_shape=.* is given but the loss takes no noise"):
        TracIn(quadratic_loss, checkpoints, noise_shape=(1, 2))
    opaque = TracIn(lambda *args: noisy_loss(*args), checkpoints, np.ones((3, 3)))  # signature unreadable
    with pytest.raises(GenmemError, match="does not take the arguments TracIn passes") as failure:
        opaque.self_influence()
    assert "\n" not in str(failure.value)


def test_gradient_normalised_tracin_is_the_sum_of_cosines(checkpoints, rng):
    X, Z = rng.normal(size=(10, 3)), rng.normal(size=(3, 3))
    X[2] *= 40.0  # a row with a huge gradient: "generally influential" under the raw dot product
    cosine = TracIn(quadratic_loss, checkpoints, X, normalize="cosine").influence(Z)
    oracle = 0.0
    for p, lr in checkpoints:
        gx, gz = per_example_gradients(quadratic_loss, p, X), per_example_gradients(quadratic_loss, p, Z)
        oracle = oracle + lr * (gz / np.linalg.norm(gz, axis=1, keepdims=True)) @ (
            gx / np.linalg.norm(gx, axis=1, keepdims=True)).T
    np.testing.assert_allclose(cosine, oracle, rtol=1e-10)
    raw = TracIn(quadratic_loss, checkpoints, X).influence(Z)
    assert (np.abs(raw).argmax(1) == 2).all() and np.abs(cosine).max() <= sum(lr for _, lr in checkpoints) + 1e-12
    with pytest.raises(GenmemError, match="unbiased=True with a noisy loss"):
        TracIn(quadratic_loss, checkpoints, X, normalize="cosine").self_influence()


def test_gradient_normalised_self_influence_is_the_cosine_of_two_draws(checkpoints, rng):
    X = rng.normal(size=(6, 3))
    tr = TracIn(noisy_loss, checkpoints, X, noise_shape=(1,), normalize="cosine", seed=4)
    eps0, eps1 = tr.noise(6, 0), tr.noise(6, 1)
    oracle = 0.0
    for p, lr in checkpoints:
        g0, g1 = per_example_gradients(noisy_loss, p, X, eps0), per_example_gradients(noisy_loss, p, X, eps1)
        oracle = oracle + lr * (g0 * g1).sum(1) / (np.linalg.norm(g0, axis=1) * np.linalg.norm(g1, axis=1))
    np.testing.assert_allclose(tr.self_influence(unbiased=True), oracle, rtol=1e-10)


def test_closed_forms_are_built_from_model_and_data_and_keep_the_old_order(rng):
    X, Z = rng.normal(size=(30, 2)), rng.normal(size=(5, 2))
    new = KDEInfluence(KDE("silverman"), X)
    with pytest.warns(DeprecationWarning, match=r"KDEInfluence\(KDE\(bandwidth\), X\)"):
        old = KDEInfluence(X, "silverman")
    np.testing.assert_array_equal(new.influence(Z), old.influence(Z))
    fitted = KDE("scott").fit(X[:20])  # a fitted model brings its bandwidth
    assert KDEInfluence(fitted, X).bandwidth_ == fitted.bandwidth_
    with pytest.warns(DeprecationWarning, match=r"KNNInfluence\(n_neighbors, X\)"):
        np.testing.assert_array_equal(KNNInfluence(X, 3).self_influence(), KNNInfluence(3, X).self_influence())


def test_influence_for_picks_the_closed_form_or_the_models_hook(rng):
    X = np.concatenate([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 5])
    kde = influence_for(KDE(0.7), X)
    np.testing.assert_allclose(kde.self_influence(), kde_loo_memorization(X, 0.7)["memorization"], rtol=1e-12)
    gmm = influence_for(GMM(2), X, rng=3)
    np.testing.assert_array_equal(gmm.self_influence(), GMMInfluence(GMM(2).fit(X, rng=3), X).self_influence())
    wrapped = influence_for(SklearnDensity(GaussianMixture(2)), X, rng=3)
    state = int(np.random.SeedSequence(3).generate_state(1, dtype=np.uint32)[0])
    reference = GMMInfluence(GaussianMixture(2, random_state=state).fit(X), X)
    np.testing.assert_allclose(wrapped.self_influence(), reference.self_influence(), rtol=1e-10)
    hooked = influence_for(DiagonalGaussian(), X)
    assert isinstance(hooked, TracIn)
    with pytest.raises(GenmemError, match=r"Shifted offers no influence estimate: define Shifted.influence_estimator"):
        influence_for(Shifted(np.zeros((1, 2)), None, uniform_weights), X)


def diagonal_gaussian_self_influence(X):
    """Σ over features of the squared gradient of −log N(x; μ, σ²) in (μ, log σ²) at the ML fit: by hand."""
    mean, var = X.mean(0), X.var(0)
    d_mean = -(X - mean) / var
    d_log_var = 0.5 * (1.0 - (X - mean) ** 2 / var)
    return (d_mean ** 2 + d_log_var ** 2).sum(1)


def test_cli_influence_of_a_custom_model_uses_its_hook(rng, tmp_path):
    X = rng.normal(size=(40, 3)) * [1.0, 2.0, 0.5]
    out = tmp_path / "run.h5"
    genmem.kfold(DiagonalGaussian(), X, folds=4, out=out)
    result = run(["influence", out, "--self"])
    assert result.exit_code == 0, result.output
    saved = genmem.read_result(out)
    np.testing.assert_allclose(saved.views["influence/self"], diagonal_gaussian_self_influence(X), rtol=1e-10)
    with h5py.File(out, "r") as f:
        assert f["influence/self"].attrs["method"] == "tracin"
        assert f["influence/self"].attrs["fit"].startswith("DiagonalGaussian fitted on all rows")


def test_cli_influence_says_why_a_custom_model_cannot_be_rebuilt(rng, tmp_path):
    X = rng.normal(size=(20, 2))
    script_class = types.new_class("InScript", (DiagonalGaussian,))
    script_class.__module__ = "__main__"
    genmem.kfold(script_class(), X, folds=2, out=tmp_path / "script.h5")
    assert_one_line_error(run(["influence", tmp_path / "script.h5", "--self"]), "InScript", "a script (__main__)",
                          "PYTHONPATH")
    genmem.kfold(Shifted(np.zeros((1, 2)), None, uniform_weights), X, folds=2, out=tmp_path / "array.h5")
    assert_one_line_error(run(["influence", tmp_path / "array.h5", "--self"]), "'centres'", "SHA-256")
    genmem.kfold(SklearnDensity(GaussianMixture(2)), X, folds=2, out=tmp_path / "gm.h5")
    assert run(["influence", tmp_path / "gm.h5", "--self"]).exit_code == 0
