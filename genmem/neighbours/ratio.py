"""The nearest-neighbour ratio test of van den Burg & Williams (NeurIPS 2021).

For every training example ``x_i``::

    ratio_i = d(x_i, nearest held-out example) / d(x_i, nearest model sample)

A ratio well above 1 means the model's samples come much closer to ``x_i``
than unseen data from the same distribution do: a sign that the model
reproduces ``x_i``. The reference code took, for every batch of training
examples, the distances of the batch's *first* row at the other rows' argmin
(``dd[0, idxs]``), so every example but the first of each batch got a wrong
distance; here each example's own nearest distance is used.
"""
from dataclasses import dataclass

import numpy as np

from ..validation import check_data
from .bank import normalise_rows
from .search import METRICS, ExactSearch, check_choice


@dataclass
class NNRatioResult:
    """Per training example: the two nearest-neighbour distances, their indices and their ratio.

    Attributes
    ----------
    ratio : float64 ndarray [N]
        ``held_out_distance / sample_distance``; ``inf`` where only the
        sample distance is 0 and 1 where both are 0.
    held_out_distance, sample_distance : float64 ndarray [N]
    held_out_index, sample_index : int64 ndarray [N]
        Rows of the held-out set and of the samples.
    metric : str
    """

    ratio: np.ndarray
    held_out_distance: np.ndarray
    held_out_index: np.ndarray
    sample_distance: np.ndarray
    sample_index: np.ndarray
    metric: str


def nn_ratio_test(train, held_out, samples, *, metric="euclidean", device="auto", dtype="float32",
                  chunk_size=None):
    """Nearest-neighbour distance ratio of every training example.

    Parameters
    ----------
    train : array [N, d]
        Training examples (features).
    held_out : array [n, d]
        Examples from the same distribution the model never saw.
    samples : array [m, d]
        The model's samples (the reference code draws as many as there are
        held-out examples).
    metric : {"euclidean", "cosine"}, default "euclidean"
        Euclidean as in the reference code (which measured it on images
        downscaled to half size; embed the data yourself to do the same).
    device, dtype, chunk_size
        Of the exact NN search.

    Returns
    -------
    NNRatioResult
    """
    check_choice(metric, METRICS, "metric")
    train = check_data(train, name="train")
    held_out = check_data(held_out, name="held_out", n_features=train.shape[1])
    samples = check_data(samples, name="samples", n_features=train.shape[1])
    if metric == "cosine":
        train, held_out, samples = (normalise_rows(a, name) for a, name in
                                    ((train, "train"), (held_out, "held_out"), (samples, "samples")))
    found = {}
    for name, points in (("held_out", held_out), ("sample", samples)):
        dist, idx = ExactSearch(points, metric=metric, device=device, dtype=dtype,
                                chunk_size=chunk_size).search(train, 1)
        found[name] = dist[:, 0], idx[:, 0]
    d_held, d_sample = found["held_out"][0], found["sample"][0]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d_sample > 0, d_held / np.where(d_sample > 0, d_sample, 1.0),
                         np.where(d_held > 0, np.inf, 1.0))
    return NNRatioResult(ratio=ratio, held_out_distance=d_held, held_out_index=found["held_out"][1],
                         sample_distance=d_sample, sample_index=found["sample"][1], metric=metric)
