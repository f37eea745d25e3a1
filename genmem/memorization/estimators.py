"""Leave-out memorization estimators over the ``[R, K, N]`` log-likelihood matrix.

For example ``i`` and repeat ``r``, the *out* model is the one of the fold
that held ``i`` out, ``a = assignment[r, i]``; the ``K − 1`` *in* models
are the others, indexed here by an offset ``c = 1 … K−1`` as fold
``(a + c) mod K``.

``reference``
    The published estimator (van den Burg & Williams 2021): log-mean-exp over
    all ``R(K−1)`` in-values minus log-mean-exp over the ``R`` out-values.
    Log-mean-exp of ``m`` noisy values is biased downward by an amount that
    shrinks with ``m``, so comparing ``R(K−1)`` values with ``R`` values biases
    ``M`` upward even when including ``x_i`` changes nothing.
``balanced`` (the default)
    For each offset ``c``, the log-mean-exp over the ``R`` repeats of the
    in-values at that offset — a set of exactly the same size and structure
    (one model per repeat) as the out-set — averaged over the ``K − 1``
    offsets. Under the null (in- and out-values exchangeable) each term has
    the same expectation as the out term, so ``E[M] = 0``.

The standard error across repeats (``R > 1``) is the jackknife over repeats of
the chosen estimator: ``sqrt((R−1)/R · Σ_r (M_(−r) − mean)²)``.
"""
import numpy as np
from scipy.special import logsumexp

from ..errors import GenmemError

ESTIMATORS = ("balanced", "reference")
DEFAULT_ESTIMATOR = "balanced"


def logmeanexp(a, axis):
    """``log(mean(exp(a)))`` along ``axis``, computed stably."""
    return logsumexp(a, axis=axis) - np.log(a.shape[axis])


def _in_out(loglik, assignment):
    """In-values ``[K−1, R, N]`` (by offset) and out-values ``[R, N]``."""
    R, K, N = loglik.shape
    cols = np.arange(N)
    rows = np.arange(R)[:, None]
    out = loglik[rows, assignment, cols]
    ins = np.stack([loglik[rows, (assignment + c) % K, cols] for c in range(1, K)])
    return ins, out


def estimate(loglik, assignment, estimator=DEFAULT_ESTIMATOR):
    """Memorization score with one estimator.

    Parameters
    ----------
    loglik : ndarray [R, K, N]
        ``loglik[r, k, i]`` = log p(x_i) under the model of repeat r that held fold k out.
    assignment : int ndarray [R, N]
    estimator : {"balanced", "reference"}

    Returns
    -------
    memorization, loglik_in, loglik_out : ndarray [N]
        ``memorization = loglik_in − loglik_out``.
    """
    loglik = np.asarray(loglik, dtype=np.float64)
    assignment = np.asarray(assignment)
    if loglik.ndim != 3 or assignment.shape != (loglik.shape[0], loglik.shape[2]):
        raise GenmemError(f"loglik must be [R, K, N] and assignment [R, N]; got {loglik.shape} and {assignment.shape}")
    ins, out = _in_out(loglik, assignment)
    lout = logmeanexp(out, axis=0)
    if estimator == "reference":
        lin = logmeanexp(ins.reshape(-1, ins.shape[-1]), axis=0)
    elif estimator == "balanced":
        lin = logmeanexp(ins, axis=1).mean(axis=0)
    else:
        raise GenmemError(f"unknown estimator {estimator!r}; use one of {', '.join(ESTIMATORS)}")
    return lin - lout, lin, lout


def jackknife_stderr(loglik, assignment, estimator=DEFAULT_ESTIMATOR):
    """Per-example jackknife standard error of ``estimator`` across repeats (needs ``R > 1``)."""
    R = loglik.shape[0]
    if R < 2:
        raise GenmemError("a standard error across repeats needs --repeats 2 or more")
    keep = [np.delete(np.arange(R), r) for r in range(R)]
    loo = np.stack([estimate(loglik[k], assignment[k], estimator)[0] for k in keep])
    return np.sqrt((R - 1) / R * ((loo - loo.mean(0)) ** 2).sum(0))


def memorization_scores(loglik, assignment, estimator=DEFAULT_ESTIMATOR):
    """All per-example scores the results file stores.

    Returns
    -------
    dict of str to ndarray [N]
        ``memorization``, ``loglik_in``, ``loglik_out`` (by ``estimator``),
        ``memorization_reference``, ``memorization_balanced``, and ``stderr``
        (of ``estimator``) when ``R > 1``.
    """
    if estimator not in ESTIMATORS:
        raise GenmemError(f"unknown estimator {estimator!r}; use one of {', '.join(ESTIMATORS)}")
    scores = {}
    for name in ESTIMATORS:
        m, lin, lout = estimate(loglik, assignment, name)
        scores[f"memorization_{name}"] = m
        if name == estimator:
            scores["memorization"], scores["loglik_in"], scores["loglik_out"] = m, lin, lout
    if loglik.shape[0] > 1:
        scores["stderr"] = jackknife_stderr(loglik, assignment, estimator)
    return scores
