"""Checks on user-supplied arrays, shared by the data layer, the models and the runner."""
import math

import numpy as np
import torch

from .errors import GenmemError


def check_data(X, *, name="X", min_rows=1, n_features=None, model="the model"):
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
    return X


def is_int(value):
    """True for Python and NumPy integers (not bools)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value):
    """True for finite Python and NumPy real numbers (not bools)."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(value))
