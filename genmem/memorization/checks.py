"""Checks that memorization scores are numbers about memorization, not numerical failures."""
import warnings

import numpy as np

#: ``|M|`` above this many nats per feature is taken for a numerical failure of the held-out density ...
MAX_NATS_PER_FEATURE = 10.0
#: ... and above this many nats in any dimension (a flexible model of 2-D data can memorize an outlier by 40).
MIN_BOUND = 100.0


class ScoreWarning(UserWarning):
    """Memorization scores that look like a numerical failure rather than memorization."""


def warn_implausible_scores(memorization, X, assignment):
    """Warn (:class:`ScoreWarning`) when some ``|M_i|`` exceed ``max(MAX_NATS_PER_FEATURE · D, MIN_BOUND)``.

    A score that large means one side of ``log p(x|D) − log p(x|D∖x)`` has
    collapsed — typically a feature that is constant in a unit's training
    rows, where a Gaussian with a tiny variance (a small ``reg_covar`` or
    bandwidth) puts almost no density on a held-out example that differs.

    Parameters
    ----------
    memorization : array [N]
    X : array [N, D]
        The data of the run.
    assignment : int array [R, N]
        The folds, to find features that are constant in some unit's training rows.

    Returns
    -------
    bool
        Whether it warned.
    """
    n, d = X.shape
    bound = max(MAX_NATS_PER_FEATURE * d, MIN_BOUND)
    bad = np.abs(memorization) > bound
    if not bad.any():
        return False
    constant = np.zeros(d, dtype=bool)
    for folds in assignment:
        for k in np.unique(folds):
            train = X[folds != k]
            constant |= train.max(0) == train.min(0)
    cause = (f"{int(constant.sum())} of the {d} features are constant in some unit's training rows, where a tiny "
             "reg_covar or bandwidth leaves almost no density for a held-out value" if constant.any() else
             "a held-out density that collapsed (tiny variances from a small reg_covar or bandwidth, or an "
             "overconfident model)")
    warnings.warn(
        f"{int(bad.sum())} of {n} examples have |M| above {bound:g} nats (the bound for D={d} features; largest "
        f"{float(np.abs(memorization).max()):.6g}): a numerical failure of the held-out density rather than "
        f"memorization — likely cause: {cause}; project the data (--pca), drop constant features, or raise "
        "reg_covar / the bandwidth",
        ScoreWarning, stacklevel=3,
    )
    return True
