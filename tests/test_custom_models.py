"""Your own density model in the K-fold engine: the protocol, the run's record of it, and its failures."""
import numpy as np
import pytest
from scipy.stats import norm
from sklearn.preprocessing import StandardScaler

import genmem
from genmem.errors import GenmemError

from custom_models import DiagonalGaussian, Shifted, uniform_weights


def test_a_model_with_only_fit_and_log_prob_runs_and_is_named_after_its_class(rng, tmp_path):
    X = rng.normal(size=(30, 3)) * [1.0, 2.0, 0.5]
    result = genmem.kfold(DiagonalGaussian(), X, folds=3, seed=1, out=tmp_path / "run.h5")
    assert result.config["model"]["name"] == "DiagonalGaussian"
    assert result.config["model"]["class"] == "own_density_model:DiagonalGaussian"
    r, k = 0, 2
    train = X[result.assignment[r] != k]
    oracle = norm.logpdf(X, train.mean(0), train.std(0)).sum(1)
    np.testing.assert_allclose(result.loglik[r, k], oracle, rtol=1e-12)
    assert genmem.read_result(tmp_path / "run.h5").config["model"]["name"] == "DiagonalGaussian"


def test_the_fingerprint_describes_arrays_estimators_and_functions(rng, tmp_path):
    X = rng.normal(size=(24, 2))
    centres = rng.normal(size=(3, 2))
    model = Shifted(centres, StandardScaler(with_mean=False), uniform_weights)
    out = tmp_path / "run.h5"
    result = genmem.kfold(model, X, folds=3, out=out)
    params = result.config["model"]["params"]
    assert params["centres"]["array"]["shape"] == [3, 2] and params["centres"]["array"]["dtype"] == "float64"
    assert params["scaler"] == {"class": "sklearn.preprocessing._data:StandardScaler",
                                "params": {"copy": True, "with_mean": False, "with_std": True}}
    assert params["weigh"] == {"callable": "custom_models:uniform_weights"}
    # the same parameters are the same run; other values are another run
    assert genmem.kfold(Shifted(centres.copy(), StandardScaler(with_mean=False), uniform_weights), X, folds=3,
                        out=out).config["fingerprint"] == result.config["fingerprint"]
    for other in (Shifted(centres + 1e-9, StandardScaler(with_mean=False), uniform_weights),
                  Shifted(centres, StandardScaler(), uniform_weights)):
        with pytest.raises(GenmemError, match="different run"):
            genmem.kfold(other, X, folds=3, out=out)


def test_a_parameter_that_cannot_be_described_is_refused_by_name(rng):
    with pytest.raises(GenmemError, match=r"cannot record parameter 'weigh' of Shifted \(type function\).*lambda"):
        genmem.kfold(Shifted(np.zeros((1, 2)), None, lambda n: np.ones(n)), rng.normal(size=(10, 2)), folds=2)
    with pytest.raises(GenmemError, match=r"parameter 'scaler' of Shifted\[0\] \(type object\)"):
        genmem.kfold(Shifted(np.zeros((1, 2)), [object()], uniform_weights), rng.normal(size=(10, 2)), folds=2)
