"""The data-copying test C_T of Meehan, Chaudhuri & Dasgupta (AISTATS 2020).

The training features are partitioned into cells π by k-means (scikit-learn
``KMeans``, seeded). In every cell, the distances from the test points P_n(π)
and from the generated points Q_m(π) to their nearest *training point of that
cell* are compared by a Mann–Whitney U test of Q against P, Z-scored under the
null hypothesis as published — with a continuity correction and without a tie
correction::

    U(π)   = #{(q, p): L(q) > L(p)} + ½ #{(q, p): L(q) = L(p)}
    Z_U(π) = (U + 0.5 − n_π m_π / 2) / sqrt(n_π m_π (n_π + m_π + 1) / 12)

Cells whose generated share m_π/m exceeds τ_C (default 20/m: more than 20
generated points) are kept, and

    C_T = Σ_kept (n_π/n) Z_U(π) / Σ_kept (n_π/n).

C_T ≪ 0: the generated points are closer to the training set than fresh data
are (data copying); C_T ≫ 0: they are farther (underfitting); C_T ≈ 0: neither.
"""
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

from ..errors import GenmemError
from ..validation import check_data, check_int
from .bank import normalise_rows
from .search import METRICS, ExactSearch, check_choice

#: Generated points a cell needs (more than this many) under the default τ_C = 20/m.
DEFAULT_MIN_GENERATED = 20
#: k-means initialisations (k-means++), best inertia kept.
KMEANS_N_INIT = 1


def mann_whitney_zu(generated_dist, test_dist):
    """Mann–Whitney U of generated vs test distances and its published Z-score.

    Parameters
    ----------
    generated_dist : array [m]
        L(Q): distances of generated points to their nearest training point.
    test_dist : array [n]
        L(P): the same for test points.

    Returns
    -------
    u : float
        Pairs (q, p) with L(q) > L(p), ties counting ½ (scipy's
        ``mannwhitneyu(generated, test).statistic``).
    z_u : float
        ``(u + 0.5 − n m/2) / sqrt(n m (n + m + 1)/12)``: continuity
        correction, no tie correction.
    """
    generated_dist = np.asarray(generated_dist, dtype=np.float64).ravel()
    test_dist = np.asarray(test_dist, dtype=np.float64).ravel()
    m, n = len(generated_dist), len(test_dist)
    if m == 0 or n == 0:
        raise GenmemError(f"the Mann–Whitney test needs generated and test distances; got {m} and {n}")
    ranks = rankdata(np.concatenate([generated_dist, test_dist]))
    u = float(ranks[:m].sum() - m * (m + 1) / 2.0)
    z_u = (u + 0.5 - n * m / 2.0) / np.sqrt(n * m * (n + m + 1) / 12.0)
    return u, float(z_u)


@dataclass
class DataCopyingResult:
    """C_T and its per-cell table.

    Attributes
    ----------
    c_t : float
        The test statistic.
    cells : dict of str to ndarray [n_cells]
        ``cell``; ``n_train``, ``n_test``, ``n_generated`` (points per
        cell); ``test_share`` (n_π/n, the weight); ``generated_share``
        (m_π/m); ``u`` and ``z_u`` (0 for cells without generated points,
        which are never kept, as in the published code); ``kept``
        (m_π/m > τ_C).
    min_frac : float
        τ_C.
    metric : str
    seed : int
        Seed of the k-means partition.
    """

    c_t: float
    cells: dict = field(repr=False)
    min_frac: float
    metric: str
    seed: int

    @property
    def n_kept(self):
        """Number of cells that enter C_T."""
        return int(self.cells["kept"].sum())

    def table(self):
        """The per-cell table as a list of dicts (one per cell, plain Python types)."""
        keys = list(self.cells)
        return [{key: self.cells[key][i].item() for key in keys} for i in range(len(self.cells["cell"]))]

    def to_dict(self):
        """JSON-serialisable summary: C_T, τ_C, metric, seed and the cell table."""
        return {"c_t": self.c_t, "min_frac": self.min_frac, "metric": self.metric, "seed": self.seed,
                "n_cells": len(self.cells["cell"]), "n_kept": self.n_kept, "cells": self.table()}


def _seed_of(rng):
    """An int seed for scikit-learn from an int, None (0) or a NumPy Generator."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**31 - 1))
    if rng is None:
        return 0
    try:
        return int(rng)
    except (TypeError, ValueError):
        raise GenmemError(f"rng must be an int seed or a numpy Generator; got {type(rng).__name__}") from None


def data_copying_test(train, test, generated, *, n_cells=5, min_frac=None, rng=0, metric="euclidean",
                      device="auto", dtype="float32", chunk_size=None):
    """The data-copying test statistic C_T (Meehan, Chaudhuri & Dasgupta 2020).

    Parameters
    ----------
    train : array [l, d]
        Training features T (the data the model was fitted on).
    test : array [n, d]
        Test features P_n, independent of the training set.
    generated : array [m, d]
        Features of the model's samples Q_m.
    n_cells : int, default 5
        k-means cells (the published two-moons experiment uses 5, MNIST 50).
    min_frac : float, optional
        τ_C: a cell is kept when its share of generated points exceeds it.
        Default ``20/m``.
    rng : int or numpy.random.Generator, default 0
        Seed of the k-means partition.
    metric : {"euclidean", "cosine"}, default "euclidean"
        Distance of the NN search (Euclidean as published). With cosine the
        features are L2-normalised first and k-means runs on them.
    device, dtype, chunk_size
        Of the exact NN search (see :class:`~genmem.neighbours.search.ExactSearch`).

    Returns
    -------
    DataCopyingResult

    Raises
    ------
    GenmemError
        Non-finite or mis-shaped input, feature-dimension mismatch, a cell
        without training or test points, or no cell with enough generated
        points.
    """
    check_choice(metric, METRICS, "metric")
    check_int(n_cells, "n_cells")
    train = check_data(train, name="train", min_rows=n_cells, distinct=True)
    test = check_data(test, name="test")
    generated = check_data(generated, name="generated")
    for name, arr in (("test", test), ("generated", generated)):
        if arr.shape[1] != train.shape[1]:
            raise GenmemError(f"{name} has {arr.shape[1]} features but train has {train.shape[1]}; "
                              "embed all three sets with the same feature map")
    m, n = len(generated), len(test)
    if min_frac is None:
        if m <= DEFAULT_MIN_GENERATED:
            raise GenmemError(f"the default τ_C = {DEFAULT_MIN_GENERATED}/m needs more than {DEFAULT_MIN_GENERATED} "
                              f"generated samples; got {m} — generate more or pass min_frac")
        min_frac = DEFAULT_MIN_GENERATED / m
    if not 0.0 <= float(min_frac) < 1.0:
        raise GenmemError(f"min_frac (τ_C) must lie in [0, 1); got {min_frac}")
    min_frac = float(min_frac)
    if metric == "cosine":
        train, test, generated = (normalise_rows(a, name) for a, name in
                                  ((train, "train"), (test, "test"), (generated, "generated")))
    seed = _seed_of(rng)
    cells_train, cells_test, cells_gen = _partition(train, test, generated, n_cells, seed)
    n_train = np.bincount(cells_train, minlength=n_cells)
    n_test = np.bincount(cells_test, minlength=n_cells)
    n_gen = np.bincount(cells_gen, minlength=n_cells)
    for what, counts in (("training", n_train), ("test", n_test)):
        if (counts == 0).any():
            empty = np.flatnonzero(counts == 0)
            raise GenmemError(f"{len(empty)} of {n_cells} cells hold no {what} points (first: cell {empty[0]}); "
                              f"use fewer cells (n_cells < {n_cells}) or more {what} data")
    kept = n_gen / m > min_frac
    if not kept.any():
        raise GenmemError(
            f"no cell holds more than τ_C·m = {min_frac * m:.3g} of the {m} generated points (the fullest has "
            f"{n_gen.max()}), so C_T is undefined; use fewer cells (n_cells < {n_cells}), more generated "
            "samples or a smaller min_frac")
    u = np.zeros(n_cells)
    z_u = np.zeros(n_cells)
    for c in np.flatnonzero(n_gen > 0):
        search = ExactSearch(train[cells_train == c], metric=metric, device=device, dtype=dtype,
                             chunk_size=chunk_size)
        l_p = search.search(test[cells_test == c], 1)[0][:, 0]
        l_q = search.search(generated[cells_gen == c], 1)[0][:, 0]
        u[c], z_u[c] = mann_whitney_zu(l_q, l_p)
    weight = n_test / n
    c_t = float(weight[kept] @ z_u[kept] / weight[kept].sum())
    cells = {"cell": np.arange(n_cells), "n_train": n_train, "n_test": n_test, "n_generated": n_gen,
             "test_share": weight, "generated_share": n_gen / m, "u": u, "z_u": z_u, "kept": kept}
    return DataCopyingResult(c_t=c_t, cells=cells, min_frac=min_frac, metric=metric, seed=seed)


def _partition(train, test, generated, n_cells, seed):
    """k-means cell labels of the training, test and generated points (fitted on training)."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():  # fewer distinct points than cells: reported as empty cells by the caller
        warnings.simplefilter("ignore", ConvergenceWarning)
        kmeans = KMeans(n_clusters=n_cells, n_init=KMEANS_N_INIT, random_state=seed).fit(train)
    return kmeans.predict(train), kmeans.predict(test), kmeans.predict(generated)
