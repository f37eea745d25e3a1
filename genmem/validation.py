"""Checks on user-supplied arrays, shared by the data layer, the models and the runner."""
import math

import numpy as np
import torch

from .errors import GenmemError


#: A feature range below this multiple of the data's largest magnitude is rounding, not spread (1024 ulps).
SPREAD_RTOL = 1024 * float(np.finfo(np.float64).eps)


def has_spread(X):
    """False when all rows of ``X`` [N, D] are equal up to rounding: no feature's range exceeds
    :data:`SPREAD_RTOL` times the largest absolute value."""
    X = np.asarray(X)
    return float(np.ptp(X, axis=0).max()) > SPREAD_RTOL * float(np.abs(X).max())


def check_data(X, *, name="X", min_rows=1, n_features=None, model="the model", distinct=False):
    """Return ``X`` as a finite 2-D float64 NumPy array or raise :class:`GenmemError`.

    Parameters
    ----------
    X : array-like or torch.Tensor, shape [N, D]
        The data; a torch tensor is moved to the CPU.
    name : str
        How the array is called in error messages.
    min_rows : int
        Fewest rows accepted.
    n_features : int, optional
        Required number of columns (for data scored by an already fitted model).
    model : str, default="the model"
        How the fitted model is called in the message about ``n_features``.
    distinct : bool, default=False
        Also refuse data whose rows are all equal up to rounding (:func:`has_spread`).
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise GenmemError(f"{name} is a sparse matrix; sparse input is not supported: pass a dense array "
                          f"({name}.toarray())")
    if np.iscomplexobj(X):
        raise GenmemError(f"Complex data not supported: {name} holds complex numbers; density models need real values")
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise GenmemError(f"{name} must be a numeric array; got {type(X).__name__}") from None
    if X.ndim != 2:
        raise GenmemError(
            f"{name} must be 2-D [examples, features]; got shape {X.shape} "
            "(flatten images first, e.g. X.reshape(len(X), -1))"
        )
    if X.shape[0] < min_rows:
        raise GenmemError(f"{name} needs at least {min_rows} rows; got {X.shape[0]}")
    if X.shape[1] == 0:
        raise GenmemError(f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required; pass data with at least one column")
    if n_features is not None and X.shape[1] != n_features:
        raise GenmemError(
            f"{name} has {X.shape[1]} features, but {model} is expecting {n_features} features as input "
            "(the number it was fitted on); preprocess it the same way as the training data"
        )
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise GenmemError(
            f"{name} contains NaN or inf in {len(rows)} row(s) (first: row {rows[0]}); "
            "remove or impute them before fitting"
        )
    if distinct and len(X) > 1 and not has_spread(X):
        raise GenmemError(f"all rows of {name} are identical (up to rounding): there is no spread to fit a density "
                          "to; remove the duplicates or check the data")
    return X


def is_int(value):
    """True for Python and NumPy integers (not bools)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value):
    """True for finite Python and NumPy real numbers (not bools)."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(value))


def available_memory():
    """Bytes of memory this process may still allocate: the smaller of the system's available memory
    (``MemAvailable``) and what its cgroup limit leaves; None where neither can be read."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            limits.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(limits) if limits else None


def format_bytes(n):
    """``n`` bytes as a short human-readable size (e.g. ``"3.2 GB"``)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000.0


def check_allocation(nbytes, what, fix):
    """Raise :class:`GenmemError` before allocating ``nbytes`` for ``what`` when that exceeds the available memory.

    Parameters
    ----------
    nbytes : int or float
        Bytes about to be allocated (an estimate may be a float).
    what : str
        What they hold, e.g. ``"the fold assignment of --repeats 1000000000"``.
    fix : str
        How to need less, e.g. ``"lower --repeats"``.
    """
    available = available_memory()
    if available is not None and nbytes > available:
        raise GenmemError(f"{what} needs {format_bytes(nbytes)}, more than the {format_bytes(available)} of memory "
                          f"available; {fix}")
