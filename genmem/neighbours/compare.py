"""Do nearest-neighbour distances find the examples the leave-out score finds?

Rank agreement (Spearman's ρ) between a run's per-example scores — the
memorization score M and, when present, the self-influence — and the
leave-one-out NN distance of the same examples. Memorized examples are
expected to be atypical, far from the rest of the training set, so a positive
ρ means the two views agree.
"""
import numpy as np
from scipy.stats import spearmanr

from ..errors import GenmemError

#: Scores compared when the result holds them, in this order.
DEFAULT_SCORES = ("memorization", "influence/self")


def compare_with_scores(result, distance, *, names=None, top=None):
    """Spearman correlation and top-set overlap of scores with NN distances.

    Parameters
    ----------
    result : KFoldResult
        A complete run (its ``values(name)`` supplies the scores).
    distance : array [N]
        NN distance of each of the run's examples (e.g. the leave-one-out
        distance from :meth:`NeighbourBank.loo_distances`).
    names : sequence of str, optional
        Scores to compare; default ``memorization`` and ``influence/self``
        when the result has it.
    top : int, optional
        Size of the top sets compared (highest score vs largest distance);
        default ``min(100, max(1, N // 10))``.

    Returns
    -------
    list of dict
        One per score: ``score``, ``spearman`` (ρ), ``pvalue``, ``n``,
        ``top`` and ``top_overlap`` (share of the ``top`` highest-scoring
        examples that are also among the ``top`` farthest).
    """
    distance = np.asarray(distance, dtype=np.float64)
    n = len(distance)
    if names is None:
        names = [name for name in DEFAULT_SCORES if name in result.scores or name in result.views]
    top = min(100, max(1, n // 10)) if top is None else int(top)
    if not 1 <= top <= n:
        raise GenmemError(f"top must be between 1 and the number of examples ({n}); got {top}")
    far = set(np.argsort(-distance, kind="stable")[:top].tolist())
    rows = []
    for name in names:
        score = np.asarray(result.values(name), dtype=np.float64)
        if score.shape != distance.shape:
            raise GenmemError(f"score {name!r} has shape {score.shape} but the distances {distance.shape}; "
                              "compare arrays over the same examples")
        for what, values in ((name, score), ("the NN distance", distance)):
            if not np.isfinite(values).all():
                raise GenmemError(f"{what} has non-finite values; Spearman's ρ needs finite numbers")
            if np.ptp(values) == 0:
                raise GenmemError(f"{what} is constant over the examples, so its rank correlation is undefined")
        rho, pvalue = spearmanr(score, distance)
        high = np.argsort(-score, kind="stable")[:top]
        rows.append({"score": name, "spearman": float(rho), "pvalue": float(pvalue), "n": n, "top": top,
                     "top_overlap": len(far.intersection(high.tolist())) / top})
    return rows
