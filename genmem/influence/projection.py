"""Seeded random projections of per-example gradients (Johnson–Lindenstrauss), for :class:`~genmem.influence.TracIn`.

A ``P × d`` matrix ``R`` with independent entries ``±1/√d`` (Rademacher) or
``N(0, 1/d)`` (Gaussian) has ``E[R Rᵀ] = I``, so inner products of projected
gradients are unbiased estimates of the exact ones.
"""
import logging
import math

import torch

from ..models.base import torch_generator
from ..seeds import stream_seed

logger = logging.getLogger(__name__)

PROJECTIONS = ("rademacher", "gaussian")

#: Rows of the projection matrix generated at a time (one seeded stream per block).
PROJECTION_BLOCK = 1 << 16

#: Largest projection matrix (entries) kept in memory; larger ones are regenerated block by block per chunk.
PROJECTION_CACHE_LIMIT = 1 << 27

#: The noise stream of the projection matrix under TracIn's seed (0 and 1 are the examples' noise draws).
PROJECTION_STREAM = 2


class RandomProjection:
    """A seeded ``P × d`` random matrix, applied block by block (cached when small).

    The rows of the matrix that multiply parameter ``name`` come in blocks of
    :data:`PROJECTION_BLOCK`; block ``b`` of parameter number ``p`` is drawn on
    the CPU from its own stream ``(seed, 2, p, b)``, so the matrix does not
    depend on chunking, caching or device. Matrices up to
    :data:`PROJECTION_CACHE_LIMIT` entries are kept in memory; larger ones are
    regenerated block by block at each call, which bounds memory at the cost
    of time.

    Parameters
    ----------
    shapes : dict of str to int
        Parameter name → number of entries P_name (P is their sum), in the
        order of the gradients' dicts.
    dim : int
        d, the projected dimension.
    kind : {"rademacher", "gaussian"}
    seed : int
    device, dtype
        Where and in what precision the matrix multiplies.
    """

    def __init__(self, shapes, dim, kind, seed, device, dtype):
        self.dim, self.kind, self.seed, self.device, self.dtype = dim, kind, seed, device, dtype
        self.blocks = [(name, p, b, start, min(PROJECTION_BLOCK, size - start))
                       for p, (name, size) in enumerate(shapes.items())
                       for b, start in enumerate(range(0, size, PROJECTION_BLOCK))]
        n_params = sum(shapes.values())
        self.cache = {} if n_params * dim <= PROJECTION_CACHE_LIMIT else None
        if self.cache is None:
            logger.info("projection matrix %d x %d is regenerated per chunk (above %d entries)",
                        n_params, dim, PROJECTION_CACHE_LIMIT)

    def _block(self, p, b, rows):
        key = (p, b)
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        gen = torch_generator(stream_seed(self.seed, PROJECTION_STREAM, p, b))
        if self.kind == "rademacher":
            values = torch.randint(0, 2, (rows, self.dim), generator=gen).to(torch.float64).mul_(2.0).sub_(1.0)
        else:
            values = torch.randn((rows, self.dim), generator=gen, dtype=torch.float64)
        values = (values / math.sqrt(self.dim)).to(device=self.device, dtype=self.dtype)
        if self.cache is not None:
            self.cache[key] = values
        return values

    def __call__(self, grads):
        """Project per-example gradients (name → [c, ...]) to [c, d]."""
        out = None
        for name, p, b, start, rows in self.blocks:
            g = grads[name].reshape(grads[name].shape[0], -1)[:, start:start + rows]
            term = g @ self._block(p, b, rows)
            out = term if out is None else out + term
        return out
