"""genmem: measure and reduce memorization in generative models."""
__version__ = "0.1.0"

from .errors import GenmemError  # noqa: E402

__all__ = ["__version__", "GenmemError", "kfold", "merge", "KFoldResult", "read_result"]

#: Public names imported on first use, so that ``import genmem`` (and the command line's start) stays fast.
_LAZY = {"kfold": "memorization", "merge": "memorization", "KFoldResult": "results", "read_result": "results"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'genmem' has no attribute {name!r}")
