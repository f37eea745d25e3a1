"""Counter-based random numbers (genmem.philox).

Oracles: Random123's published known-answer vectors for Philox-4×32-10, a
scalar pure-Python Philox written from the paper's definition (Python's
unbounded integers, no 16-bit splitting), and the uniform and normal
distributions (Kolmogorov–Smirnov, moments).
"""
import numpy as np
import pytest
import torch
from scipy import stats

from genmem.errors import GenmemError
from genmem.philox import bits, key_words, normal, philox4x32, uniform

KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def scalar_philox(counter, key, rounds=10):
    """Philox-4×32 of one counter, straight from Salmon et al. (2011)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(rounds):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0, p1 & 0xFFFFFFFF, (p0 >> 32) ^ c3 ^ k1, p0 & 0xFFFFFFFF)
        k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
    return c0, c1, c2, c3


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_known_answer_vectors(counter, key, expected):
    out = philox4x32(*(torch.tensor(w) for w in counter), *(torch.tensor(w) for w in key))
    assert tuple(int(w) for w in out) == expected
    assert scalar_philox(counter, key) == expected


def test_vectorised_philox_equals_the_scalar_definition_on_random_inputs():
    rng = np.random.default_rng(0)
    words = rng.integers(0, 2**32, size=(6, 200), dtype=np.uint64).astype(np.int64)
    out = torch.stack(philox4x32(*(torch.from_numpy(w) for w in words))).numpy()
    for i in range(200):
        assert tuple(out[:, i]) == scalar_philox(tuple(int(w) for w in words[:4, i]),
                                                 tuple(int(w) for w in words[4:, i]))


def test_bits_layout_and_independence_from_batch_and_length():
    keys = key_words([3, 2**64 - 1, 12345678901234567])
    assert keys.tolist()[1] == [0xFFFFFFFF, 0xFFFFFFFF]
    words = bits(keys, 10, 7, 8, 9)
    assert words.shape == (3, 10)
    for u, seed in enumerate([3, 2**64 - 1, 12345678901234567]):
        for i in range(10):
            expected = scalar_philox((i // 4, 7, 8, 9), (seed & 0xFFFFFFFF, seed >> 32))[i % 4]
            assert int(words[u, i]) == expected
    # a unit's numbers do not depend on its batch-mates, on how many are drawn, or on tags being tensors
    torch.testing.assert_close(bits(keys[1:2], 10, 7, 8, 9)[0], words[1], rtol=0, atol=0)
    torch.testing.assert_close(bits(keys, 3, 7, 8, 9), words[:, :3], rtol=0, atol=0)
    steps = bits(keys.unsqueeze(1), 10, torch.tensor([6, 7]), torch.tensor(8), 9)
    assert steps.shape == (3, 2, 10)
    torch.testing.assert_close(steps[:, 1], words, rtol=0, atol=0)


@pytest.mark.parametrize("dtype, resolution", [(torch.float32, 2.0**23), (torch.float64, 2.0**52)])
def test_uniforms_are_exact_grid_points_in_the_open_interval_and_uniform(dtype, resolution):
    u = uniform(key_words([11, 12]), 100_000, 0, 1, 2, dtype=dtype)
    assert u.dtype == dtype and u.shape == (2, 100_000)
    assert (u > 0).all() and (u < 1).all()
    k = u.double() * resolution - 0.5
    assert torch.equal(k, torch.round(k))
    for row in u.double().numpy():
        assert stats.kstest(row, "uniform").pvalue > 1e-3
    # first two moments and the correlation of neighbours and of the two keys' streams
    flat = u.double().numpy()
    assert abs(flat.mean() - 0.5) < 0.003 and abs(flat.var() - 1 / 12) < 0.002
    assert abs(np.corrcoef(flat[0, :-1], flat[0, 1:])[0, 1]) < 0.01
    assert abs(np.corrcoef(flat[0], flat[1])[0, 1]) < 0.01


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normals_have_standard_normal_distribution(dtype):
    z = normal(key_words([5]), 200_001, 3, 0, 1, dtype=dtype)[0].double().numpy()
    assert z.shape == (200_001,) and np.isfinite(z).all()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    assert abs(stats.skew(z)) < 0.03 and abs(stats.kurtosis(z)) < 0.05
    # an odd count is a prefix of the next even one
    np.testing.assert_array_equal(normal(key_words([5]), 7, 3, 0, 1, dtype=dtype)[0].numpy(),
                                  normal(key_words([5]), 8, 3, 0, 1, dtype=dtype)[0, :7].numpy())


def test_different_tags_give_unrelated_streams():
    keys = key_words([1])
    a, b = (uniform(keys, 50_000, 0, 0, stream)[0].double().numpy() for stream in (0, 1))
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.02
    assert not np.array_equal(a, b)


def test_bad_arguments_are_refused():
    with pytest.raises(GenmemError, match="seeds"):
        key_words([-1])
    with pytest.raises(GenmemError, match="three counter tags"):
        bits(key_words([1]), 4, 0, 0)
    with pytest.raises(GenmemError, match="float32 or float64"):
        uniform(key_words([1]), 4, 0, 0, 0, dtype=torch.float16)
