"""What every file genmem writes records about how it was made."""
import datetime
import enum
import hashlib
import inspect
import platform
import sys
from pathlib import PurePath

import numpy as np
import torch

from .. import __version__
from ..device import describe_device
from ..errors import GenmemError


def library_versions():
    """Versions of Python and the libraries a result depends on."""
    import h5py
    import scipy
    import sklearn
    import torch

    versions = {"python": platform.python_version(), "genmem": __version__, "numpy": np.__version__,
                "scipy": scipy.__version__, "scikit-learn": sklearn.__version__, "torch": torch.__version__,
                "h5py": h5py.__version__}
    try:
        import pyro

        versions["pyro-ppl"] = pyro.__version__
    except ImportError:  # pragma: no cover - pyro is a dependency
        pass
    return versions


def now():
    """The current UTC time as an ISO 8601 string (seconds)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def provenance(device, argv=None):
    """genmem and library versions, device, creation time and command line of a run."""
    return {"genmem_version": __version__, "created": now(), "argv": list(sys.argv if argv is None else argv),
            "versions": library_versions(), "device": describe_device(device)}


def qualified_name(obj):
    """``module:QualName`` of a class or function (importable unless defined in ``__main__`` or a function body)."""
    return f"{obj.__module__}:{obj.__qualname__}"


def import_qualified(name, what="the class"):
    """The object called ``module:QualName`` (see :func:`qualified_name`), imported.

    Raises
    ------
    GenmemError
        When it was defined in a script (``__main__``) or a function body, or
        its module cannot be imported.
    """
    import importlib

    module, _, qualname = str(name).partition(":")
    if module == "__main__" or "<locals>" in qualname:
        raise GenmemError(
            f"{what} {qualname} was defined in {'a script (__main__)' if module == '__main__' else 'a function'}, "
            "which cannot be imported again; move it into a module on PYTHONPATH"
        )
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise GenmemError(f"cannot import {what} {name} ({exc}); put its module on PYTHONPATH") from None
    return obj


def rebuild(value, what="value"):
    """Undo :func:`jsonable` where it can: classes and estimators from their descriptions, functions by name.

    Raises
    ------
    GenmemError
        For an array (recorded by its hash, not its values) or an object
        whose class cannot be imported.
    """
    if isinstance(value, list):
        return [rebuild(v, f"{what}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if "array" in value and len(value) == 1:
        raise GenmemError(f"{what} was recorded by its SHA-256, not its values, so it cannot be rebuilt")
    if "callable" in value and len(value) == 1:
        return import_qualified(value["callable"], f"the function of {what}")
    if "class" in value and set(value) <= {"class", "params"}:
        cls = import_qualified(value["class"], f"the class of {what}")
        return cls if "params" not in value else cls(**rebuild(value["params"], f"{what}.params"))
    return {k: rebuild(v, f"{what}[{k!r}]") for k, v in value.items()}


def _array_description(value):
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
    array = np.ascontiguousarray(array)
    return {"array": {"dtype": str(array.dtype), "shape": list(array.shape),
                      "sha256": hashlib.sha256(array.tobytes()).hexdigest()}}


def jsonable(value, what="value"):
    """``value`` as JSON-ready data, for records such as a run's configuration and fingerprint.

    JSON values pass (tuples become lists, NumPy scalars Python numbers, keys
    str); anything else gets a stable description: an array or tensor its
    dtype, shape and SHA-256; an object with ``get_params()`` (a
    scikit-learn estimator, a genmem model) its class and parameters; a class
    or a named module-level function its qualified name; a path, device,
    dtype or enum member its name.

    Raises
    ------
    GenmemError
        For a value it cannot describe stably (a lambda, an arbitrary
        object), naming ``what``.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): jsonable(v, f"{what}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{what}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return _array_description(value)
    if isinstance(value, type):
        return {"class": qualified_name(value)}
    if hasattr(value, "get_params"):
        try:
            params = value.get_params(deep=False)
        except TypeError:
            params = value.get_params()
        return {"class": qualified_name(type(value)), "params": jsonable(params, f"{what}.get_params()")}
    if isinstance(value, (PurePath, torch.device, torch.dtype, np.dtype)):
        return str(value)
    if isinstance(value, enum.Enum):
        return f"{qualified_name(type(value))}.{value.name}"
    if (inspect.isfunction(value) or inspect.isbuiltin(value)) and "<" not in value.__qualname__:
        return {"callable": qualified_name(value)}
    raise GenmemError(
        f"cannot record {what} (type {type(value).__name__}) in the run's configuration: it is neither JSON nor an "
        "array, a class, a named function or an object with get_params(); pass one of those (e.g. a def-function "
        f"instead of a lambda) or give {type(value).__name__} a get_params() method"
    )


def data_sha256(X):
    """SHA-256 (hex) of the bytes of the float64 array ``X`` [N, D]: the ``data_sha256`` of a run's config."""
    return hashlib.sha256(np.ascontiguousarray(X, dtype=np.float64).tobytes()).hexdigest()
