"""One suite every density model in the registry passes (the estimator protocol)."""
import json

import numpy as np
import pytest

from genmem.errors import GenmemError
from genmem.models import MODELS, make_model

# Small, fast settings per model; every registered model must have an entry.
SMALL = {
    "kde": {"bandwidth": 0.5},
    "gmm": {"n_components": 2, "max_iter": 50, "batch_units": True},
    "vae": {"epochs": 2, "latent_dim": 2, "hidden": (16,), "batch_size": 32, "num_samples": 8,
            "likelihood": "gaussian"},
    "flow": {"layers": 2, "hidden": (8,), "epochs": 2, "batch_size": 16},
}


@pytest.fixture
def data(rng):
    X = np.concatenate([rng.normal(size=(30, 4)) * 0.1 + 0.3, rng.normal(size=(30, 4)) * 0.1 + 0.7])
    return np.clip(X, 0.01, 0.99)


def small(name):
    params = {k: v for k, v in SMALL[name].items() if k in MODELS[name]._param_names()}
    return make_model(name, **params)


def test_every_model_has_small_settings():
    assert set(MODELS) <= set(SMALL)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fit_returns_self_and_log_prob_is_per_example(name, data):
    model = small(name)
    assert model.fit(data, rng=0) is model
    lp = model.log_prob(data)
    assert lp.shape == (60,) and lp.dtype == np.float64 and np.isfinite(lp).all()
    np.testing.assert_array_equal(model.score_samples(data), lp)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_not_fitted_and_feature_mismatch(name, data):
    with pytest.raises(GenmemError, match="not fitted"):
        small(name).log_prob(data)
    model = small(name).fit(data, rng=0)
    with pytest.raises(GenmemError):
        model.log_prob(data[:, :3])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_seed_same_numbers(name, data):
    a = small(name).fit(data, rng=3).log_prob(data)
    b = small(name).fit(data, rng=3).log_prob(data)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_scoring_in_pieces_equals_scoring_at_once(name, data):
    model = small(name).fit(data, rng=0)
    whole = model.log_prob(data)
    pieces = np.concatenate([model.log_prob(data[:7]), model.log_prob(data[7:])])
    np.testing.assert_allclose(pieces, whole, rtol=1e-6, atol=1e-6)  # float32 models round differently per batch


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fit_units_equals_fitting_each_unit_alone(name, data, rng):
    masks = rng.random((3, 60)) < 0.7
    seeds = [11, 12, 13]
    together = small(name).fit_units(data, masks, seeds)["loglik"]
    for u in range(3):
        alone = small(name).fit(data[masks[u]], rng=seeds[u]).log_prob(data)
        np.testing.assert_allclose(together[u], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_params_round_trip_and_resolve_is_concrete(name, data):
    model = small(name)
    assert model.clone().get_params() == model.get_params()
    resolved = model.resolve(data)
    json.dumps(resolved.get_params())  # recordable in a results file
    with pytest.raises(GenmemError, match="no parameter"):
        model.set_params(not_a_parameter=1)
