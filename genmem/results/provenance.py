"""What every file genmem writes records about how it was made."""
import datetime
import hashlib
import platform
import sys

import numpy as np

from .. import __version__
from ..device import describe_device


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


def jsonable(value):
    """``value`` with tuples as lists, NumPy scalars as Python numbers and keys as str, for JSON records."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def data_sha256(X):
    """SHA-256 (hex) of the bytes of the float64 array ``X`` [N, D]: the ``data_sha256`` of a run's config."""
    return hashlib.sha256(np.ascontiguousarray(X, dtype=np.float64).tobytes()).hexdigest()
