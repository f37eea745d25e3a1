"""Results of a run: the in-memory container and its HDF5 file."""
from .hdf5 import FORMAT, FORMAT_VERSION, add_views, read_result, write_result
from .result import KFoldResult

__all__ = ["KFoldResult", "add_views", "read_result", "write_result", "FORMAT", "FORMAT_VERSION"]
