"""Your own density model in genmem's K-fold engine: subclass DensityModel, implement fit and log_prob.

Run from the repository root (a few seconds):

    python examples/own_density_model.py

It scores a small table with one planted outlier and one duplicated row under
``DiagonalGaussian`` below, prints the top rows and the self-influence of its
opt-in ``influence_estimator`` hook. ``genmem influence RUN.h5 --self`` uses the
same hook when the class can be imported (put this folder on PYTHONPATH and
run ``genmem.kfold`` with ``from own_density_model import DiagonalGaussian``).
"""
import math

import numpy as np
import torch
from scipy.stats import spearmanr

import genmem
from genmem.data import prepare
from genmem.influence import TracIn, influence_for
from genmem.models import DensityModel
from genmem.results import top_rows


class DiagonalGaussian(DensityModel):
    """An axis-aligned Gaussian fitted by maximum likelihood.

    The whole protocol: ``__init__`` stores its arguments under their own
    names; ``fit`` sets attributes ending in ``_`` and returns ``self``;
    ``log_prob`` returns one log-density (nats) per row. Optional: ``name``
    (default: the class name), ``rng`` in ``fit`` (the unit's seed),
    ``influence_estimator`` (for influence).
    """

    def __init__(self, min_var=1e-3):
        self.min_var = min_var

    def fit(self, X, y=None, *, rng=None):
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(0)
        self.var_ = np.maximum(X.var(0), self.min_var)
        return self

    def log_prob(self, X):
        X = np.asarray(X, dtype=np.float64)
        return -0.5 * ((X - self.mean_) ** 2 / self.var_ + np.log(2 * np.pi * self.var_)).sum(1)

    def influence_estimator(self, X):
        """TracIn at the fitted parameters: ℓ(x) = −log N(x; μ, diag(σ²)) in (μ, log σ²), one checkpoint, η = 1."""
        params = {"mean": torch.as_tensor(self.mean_), "log_var": torch.as_tensor(np.log(self.var_))}

        def loss(p, x):
            return 0.5 * ((x - p["mean"]) ** 2 * torch.exp(-p["log_var"]) + p["log_var"] + math.log(2 * math.pi)).sum()

        return TracIn(loss, [(params, 1.0, "fitted")], train=X)


def main():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    X[7] = [4.0, -4.0, 4.0, -4.0]  # a planted outlier
    X[100] = X[99]  # a duplicated row
    labels = np.where(X[:, 0] > 0, "right", "left")
    data = prepare(X, labels=labels, scale=False)
    result = genmem.kfold(DiagonalGaussian(), data.X, folds=10, repeats=2, labels=data.labels,
                          label_names=data.label_names)
    print(f"model {result.config['model']['name']}: top rows by memorization M (nats)")
    for row in top_rows(result, 5, "memorization"):
        print(f"  row {row['row']:>3} ({row['label_name']}): M = {row['score']:.3f} ± {row['stderr']:.3f}")
    self_influence = influence_for(DiagonalGaussian(), data.X).self_influence()
    print(f"self-influence (TracIn): highest at row {int(np.argmax(self_influence))}; "
          f"Spearman correlation with M {spearmanr(self_influence, result.memorization)[0]:.3f}")


if __name__ == "__main__":
    main()
