"""K-fold × R-repeat holdout assignments and the per-unit seeds.

Every random draw of a run comes from a named stream of :mod:`genmem.seeds`:
the fold permutation of repeat ``r`` from ``stream(seed, FOLDS, r)``, the model
of unit ``(r, k)`` from ``stream(seed, UNITS, r, k)``. Folds are therefore independent of model
randomness, and any unit can be re-run alone with the same numbers.
"""
import numpy as np

from ..errors import GenmemError
from ..seeds import FOLDS, UNITS, stream_rng, stream_seed
from ..validation import check_int


def check_fold_args(n, folds, repeats, seed):
    """Raise :class:`GenmemError` unless ``2 <= folds <= n``, ``repeats >= 1`` and ``seed >= 0``."""
    check_int(folds, "folds", 2)
    if folds > n:
        raise GenmemError(f"folds ({folds}) exceeds the number of examples ({n}); use --folds {n} or fewer")
    check_int(repeats, "repeats")
    check_int(seed, "seed", 0)


def make_folds(n, folds, repeats=1, seed=0):
    """Fold assignment of ``n`` examples for each repeat.

    For repeat ``r`` a permutation drawn from its own stream is cut into
    ``folds`` contiguous, near-equal parts (sizes differ by at most one).

    Returns
    -------
    ndarray of int64, shape [repeats, n]
        ``assignment[r, i]`` is the fold that holds example ``i`` out in repeat ``r``.
    """
    check_fold_args(n, folds, repeats, seed)
    assignment = np.empty((repeats, n), dtype=np.int64)
    for r in range(repeats):
        rng = stream_rng(seed, FOLDS, r)
        for k, part in enumerate(np.array_split(rng.permutation(n), folds)):
            assignment[r, part] = k
    return assignment


def unit_seed(seed, repeat, fold):
    """The integer seed of unit ``(repeat, fold)``'s model (< 2**63)."""
    return stream_seed(seed, UNITS, repeat, fold)
