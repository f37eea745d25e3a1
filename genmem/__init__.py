"""genmem: measure and reduce memorization in generative models."""
__version__ = "0.1.0"

from .errors import GenmemError  # noqa: E402
from .memorization import kfold  # noqa: E402
from .results import KFoldResult, read_result  # noqa: E402

__all__ = ["__version__", "GenmemError", "kfold", "KFoldResult", "read_result"]
