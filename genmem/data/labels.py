"""Class labels of any hashable type as integer codes with their names."""
import numbers

import numpy as np

from ..errors import GenmemError


def encode_labels(labels, n, *, name="labels"):
    """Integer codes [n] for ``labels`` and the class names they stand for.

    Parameters
    ----------
    labels : sequence of length n, or None
        Integers, or integral floats (kept as they are: codes without
        names), or any hashable
        values — strings, integral or other floats, tuples, … — which become
        codes 0, 1, … in sorted order of the distinct values (order of first
        appearance when they cannot be sorted). ``None`` entries, and NaN,
        are unlabelled (code −1). ``labels=None``: every example unlabelled.
    n : int
        The number of examples.
    name : str
        How the labels are called in error messages.

    Returns
    -------
    codes : int64 ndarray [n]
    names : list of str or None
        ``names[c]`` is the class of code ``c``; None for integer labels.

    Raises
    ------
    GenmemError
        For a count other than ``n``, or unhashable labels.
    """
    if labels is None:
        return np.full(n, -1, dtype=np.int64), None
    values = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
    if len(values) != n or (isinstance(labels, np.ndarray) and labels.ndim != 1):
        raise GenmemError(f"{name} has {len(values)} entries but the data have {n} examples; give one label per example")
    if all(_is_int(v) or (isinstance(v, float) and v.is_integer()) for v in values):
        return np.asarray(values, dtype=np.int64).reshape(n), None
    try:
        distinct = list(dict.fromkeys(v for v in values if not _missing(v)))
    except TypeError as exc:
        raise GenmemError(f"{name} must be hashable values (strings, numbers, tuples); {exc}") from None
    try:
        distinct.sort()
    except TypeError:  # mixed types: keep the order of first appearance
        pass
    code = {value: c for c, value in enumerate(distinct)}
    codes = np.array([-1 if _missing(v) else code[v] for v in values], dtype=np.int64)
    return codes, [str(value) for value in distinct]


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _missing(value):
    return value is None or (isinstance(value, float) and value != value)
