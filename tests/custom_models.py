"""Density models written the way a user writes their own (importable, for the runner and the CLI)."""
import sys
from pathlib import Path

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.base import BaseEstimator

from genmem.models import DensityModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from own_density_model import DiagonalGaussian  # noqa: E402  the README's own-model example


class Shifted(DensityModel):
    """A density with parameters of many kinds: a mixture of Gaussians at fixed ``centres`` (an array),
    its scale from ``scaler`` (an object with get_params) and its weights from ``weigh`` (a function)."""

    name = "shifted"

    def __init__(self, centres=None, scaler=None, weigh=None):
        self.centres = centres
        self.scaler = scaler
        self.weigh = weigh

    def fit(self, X, y=None, *, rng=None):
        self.scale_ = float(np.std(X)) if self.scaler is None else float(self.scaler.fit(X).scale_.mean())
        self.n_features_in_ = np.shape(X)[1]
        return self

    def log_prob(self, X):
        C = np.asarray(self.centres, dtype=np.float64)
        w = np.log(self.weigh(len(C)))
        d2 = ((np.asarray(X)[:, None, :] - C[None]) ** 2).sum(-1)
        return logsumexp(w - 0.5 * d2 / self.scale_ ** 2, axis=1) - 0.5 * C.shape[1] * np.log(2 * np.pi * self.scale_ ** 2)


def uniform_weights(n):
    return np.full(n, 1.0 / n)


class NeedsRow(BaseEstimator):
    """A scikit-learn-style density (standard normal) whose fit fails unless ``row`` is among the training rows."""

    def __init__(self, row=None):
        self.row = row

    def fit(self, X, y=None):
        if not (np.asarray(X) == np.asarray(self.row)).all(1).any():
            raise ValueError("the training rows lack the row this estimator needs\nsecond line of detail")
        self.fitted_ = True
        return self

    def score_samples(self, X):
        return norm.logpdf(X).sum(1)


class BrokenOutput(DensityModel):
    """A diagonal Gaussian whose log_prob goes wrong (``"nan"`` or ``"shape"``) unless ``row`` is in training."""

    def __init__(self, row=None, fault="nan"):
        self.row = row
        self.fault = fault

    def fit(self, X, y=None):  # no rng: the engine calls fit(X) alone
        self.has_row_ = bool((np.asarray(X) == np.asarray(self.row)).all(1).any())
        self.inner_ = DiagonalGaussian().fit(X)
        return self

    def log_prob(self, X):
        out = self.inner_.log_prob(X)
        if self.has_row_:
            return out
        return np.full_like(out, np.nan) if self.fault == "nan" else out[:, None]
