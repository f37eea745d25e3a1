"""Influence values gathered from blocks of test rows: the full matrix, or each test point's top ``k``."""
from typing import NamedTuple

import numpy as np
import torch

from ..validation import check_int


class TopInfluence(NamedTuple):
    """The ``k`` strongest proponents and opponents of each test point.

    Attributes
    ----------
    proponents : int64 ndarray [n_z, k]
        Training rows with the highest influence, highest first.
    proponent_scores : float64 ndarray [n_z, k]
    opponents : int64 ndarray [n_z, k]
        Training rows with the lowest (most negative) influence, lowest first.
    opponent_scores : float64 ndarray [n_z, k]
    """

    proponents: np.ndarray
    proponent_scores: np.ndarray
    opponents: np.ndarray
    opponent_scores: np.ndarray


def gather_influence(blocks, n_test, n_train, k=None):
    """Assemble blocks of test rows into the ``[n_test, n_train]`` influence matrix, or keep only their top ``k``.

    Parameters
    ----------
    blocks : iterable of (slice, Tensor)
        ``(test rows, values [rows, n_train])``, covering the test rows once.
    n_test, n_train : int
    k : int, optional
        Keep only the ``k`` highest and lowest values of each row (``k`` is
        capped at ``n_train``); memory is then ``O(n_test · k)`` plus one block.

    Returns
    -------
    ndarray [n_test, n_train] or TopInfluence
    """
    if k is None:
        out = np.empty((n_test, n_train))
        for rows, block in blocks:
            out[rows] = block.detach().cpu().double().numpy()
        return out
    k = min(check_int(k, "k"), n_train)
    top = TopInfluence(*(np.empty((n_test, k), dtype=dtype) for dtype in (np.int64, np.float64) * 2))
    for rows, block in blocks:
        for largest, (index, values) in ((True, top[:2]), (False, top[2:])):
            best = torch.topk(block.detach(), k, dim=1, largest=largest, sorted=True)
            index[rows], values[rows] = best.indices.cpu().numpy(), best.values.cpu().double().numpy()
    return top
