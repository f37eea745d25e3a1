"""Fold assignments: a partition per repeat, near-equal, seeded per stream."""
import numpy as np
import pytest

from genmem.errors import GenmemError
from genmem.memorization import make_folds, unit_seed


@pytest.mark.parametrize("n,k,r", [(10, 2, 1), (103, 10, 3), (7, 7, 2)])
def test_each_repeat_is_a_near_equal_partition(n, k, r):
    a = make_folds(n, k, r, seed=4)
    assert a.shape == (r, n) and a.dtype == np.int64
    for row in a:
        counts = np.bincount(row, minlength=k)
        assert counts.sum() == n and counts.max() - counts.min() <= 1 and counts.min() >= 1


def test_reproducible_and_repeat_streams_independent_of_r():
    a = make_folds(50, 5, 3, seed=1)
    np.testing.assert_array_equal(a, make_folds(50, 5, 3, seed=1))
    np.testing.assert_array_equal(a[:2], make_folds(50, 5, 2, seed=1))  # repeat r does not depend on R
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a, make_folds(50, 5, 3, seed=2))


def test_unit_seeds_are_distinct_and_stable():
    seeds = {unit_seed(0, r, k) for r in range(10) for k in range(10)}
    assert len(seeds) == 100 and all(0 <= s < 2**63 for s in seeds)
    assert unit_seed(0, 3, 4) == unit_seed(0, 3, 4) != unit_seed(1, 3, 4)


@pytest.mark.parametrize("n,k,r,seed,msg", [
    (10, 1, 1, 0, "at least 2"), (10, 11, 1, 0, "exceeds the number of examples"),
    (10, 2, 0, 0, "repeats"), (10, 2, 1, -1, "seed"), (10, 2.5, 1, 0, "integer"),
])
def test_bad_arguments(n, k, r, seed, msg):
    with pytest.raises(GenmemError, match=msg):
        make_folds(n, k, r, seed)


def test_streams_do_not_alias_each_other_or_a_plain_seed():
    from genmem.seeds import DEQUANTIZE, FOLDS, stream_rng

    draws = [stream_rng(7, FOLDS, 0).random(4), stream_rng(7, DEQUANTIZE).random(4),
             np.random.default_rng(7).random(4), np.random.default_rng([7, 0, 0]).random(4)]
    assert len({tuple(d) for d in draws}) == 3  # only the two plain seeds coincide (numpy pads lists with zeros)
    aliased = np.empty(20, dtype=np.int64)
    for k, part in enumerate(np.array_split(np.random.default_rng(7).permutation(20), 4)):
        aliased[part] = k
    assert not np.array_equal(make_folds(20, 4, seed=7)[0], aliased)
