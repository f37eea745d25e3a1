"""Checks of user input, shared by every layer: arrays, declared parameter constraints, memory.

Parameters are checked against *constraints* declared as data, the way
scikit-learn's ``_parameter_constraints`` does: a :class:`Constraint` says
in words what is allowed (it completes "must be …") and tests a value.
:func:`check_params` checks an object's parameters against a table of them,
:func:`check_param` one value. Errors have one phrasing: for the parameter of
a class, scikit-learn's "The 'tol' parameter of GMM must be a float in
[0, inf). Got -1.0 instead."; for an argument of a function, "k must be a
positive integer; got 0".
"""
import math
from typing import Callable, NamedTuple

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


class Constraint(NamedTuple):
    """A set of allowed values.

    Attributes
    ----------
    allowed : str
        The set in words, completing "must be …" (e.g. ``"a positive integer"``).
    test : callable
        ``test(value)`` → True when ``value`` is allowed.
    """

    allowed: str
    test: Callable


def integer(low=None, high=None):
    """Python or NumPy integers (not bools) in ``[low, high]``; a bound of None is open."""
    if high is not None:
        allowed = f"an integer in [{low}, {high}]" if low is not None else f"an integer of at most {high}"
    else:
        allowed = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}.get(
            low, f"an integer of at least {low}")
    return Constraint(allowed, lambda v: is_int(v) and (low is None or v >= low) and (high is None or v <= high))


def real(low=-math.inf, high=math.inf, *, closed="neither"):
    """Finite real numbers (ints too, not bools) between ``low`` and ``high``.

    ``closed`` is ``"neither"``, ``"left"``, ``"right"`` or ``"both"``: which bounds belong to the set.
    """
    left, right = closed in ("left", "both"), closed in ("right", "both")
    bounds = f"{'[' if left else '('}{_bound(low)}, {_bound(high)}{']' if right else ')'}"

    def test(v):
        return (is_real(v) and (v >= low if left else v > low) and (v <= high if right else v < high))

    return Constraint(f"a float in {bounds}", test)


def _bound(x):
    return ("-inf" if x < 0 else "inf") if math.isinf(x) else f"{x:g}"


def options(*values):
    """Exactly one of ``values`` (None and bools by identity, others by type and ``==``)."""
    words = ", ".join(repr(v) for v in values)
    return Constraint(words if len(values) == 1 else f"one of {words}", lambda v: any(_same(v, c) for c in values))


def _same(value, choice):
    if choice is None or isinstance(choice, bool):
        return value is choice
    return isinstance(value, type(choice)) and not isinstance(value, (bool, np.bool_)) and value == choice


def boolean():
    """``True`` or ``False`` (also NumPy's)."""
    return Constraint("True or False", lambda v: isinstance(v, (bool, np.bool_)))


def int_tuple(lengths=None, example=None):
    """A tuple or list of positive integers, of one of the ``lengths`` (any length when None)."""
    size = "" if lengths is None else f"{' or '.join(map(str, lengths))} "
    allowed = f"a tuple of {size}positive integers" + (f", e.g. {example}" if example else "")
    item = integer(1)
    return Constraint(allowed, lambda v: isinstance(v, (tuple, list)) and (lengths is None or len(v) in lengths)
                      and all(item.test(x) for x in v))


def any_of(*constraints):
    """A value allowed by any of ``constraints``."""
    return Constraint(" or ".join(c.allowed for c in constraints), lambda v: any(c.test(v) for c in constraints))


def none_or(constraint):
    """None, or a value allowed by ``constraint``."""
    return any_of(options(None), constraint)


def invalid(name, allowed, value, owner=None):
    """The :class:`GenmemError` for a value outside what is allowed (see the module docstring for the phrasing).

    Parameters
    ----------
    name : str
        The parameter or argument.
    allowed : str
        What is allowed, completing "must be …".
    value : object
        What was passed.
    owner : str, optional
        The class whose parameter it is; None for an argument of a function.
    """
    if owner is None:
        return GenmemError(f"{name} must be {allowed}; got {value!r}")
    return GenmemError(f"The {name!r} parameter of {owner} must be {allowed}. Got {value!r} instead.")


def check_param(value, constraint, name, owner=None):
    """Return ``value`` when ``constraint`` allows it, else raise :func:`invalid`'s error."""
    if not constraint.test(value):
        raise invalid(name, constraint.allowed, value, owner)
    return value


def check_int(value, name, low=1, high=None, owner=None):
    """``value`` as a Python int when it is an integer in ``[low, high]``, else raise (see :func:`check_param`)."""
    return int(check_param(value, integer(low, high), name, owner))


def check_params(obj, constraints):
    """Check the parameters of ``obj`` (its attributes) against ``constraints``: name → :class:`Constraint`."""
    for name, constraint in constraints.items():
        check_param(getattr(obj, name), constraint, name, type(obj).__name__)


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
    for suffix in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or suffix == "PB":
            return f"{n:.0f} {suffix}" if suffix == "bytes" else f"{n:.1f} {suffix}"
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
