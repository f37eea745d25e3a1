"""Named random streams.

Every random draw in genmem comes from a :class:`numpy.random.SeedSequence`
keyed by a root seed and a *spawn key*: ``SeedSequence(seed, spawn_key=(stream, …))``.
Unlike a seed list such as ``[seed, 0, 0]`` — which numpy pads with zeros and
so aliases ``SeedSequence(seed)`` and ``default_rng(seed)`` — spawn keys
cannot collide with another stream of the same root. The stream ids of a
K-fold run are below; other subsystems (the GAN trainer, TracIn) keep their
own ids under their own root seeds.
"""
import numpy as np

from .validation import check_int

#: Fold permutation of repeat r: ``(FOLDS, r)``.
FOLDS = 0
#: Model of unit (r, k): ``(UNITS, r, k)``.
UNITS = 1
#: Dequantization noise of the data: ``(DEQUANTIZE,)``.
DEQUANTIZE = 2


def stream(seed, *keys):
    """The :class:`numpy.random.SeedSequence` of stream ``keys`` under root ``seed`` (a non-negative int)."""
    check_int(seed, "seed", 0)
    return np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in keys))


def stream_seed(seed, *keys):
    """An integer seed in [0, 2**63) for stream ``keys`` under root ``seed`` (e.g. for a torch.Generator)."""
    return int(stream(seed, *keys).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def sklearn_seed(seed):
    """The 32-bit ``random_state`` that scikit-learn estimators take, from an int ``seed`` of any size."""
    return int(np.random.SeedSequence(int(seed)).generate_state(1, dtype=np.uint32)[0])


def stream_rng(seed, *keys):
    """A :class:`numpy.random.Generator` on stream ``keys`` under root ``seed``."""
    return np.random.default_rng(stream(seed, *keys))
