"""Results of a run: the in-memory container and its HDF5 file."""
from .hdf5 import FORMAT, FORMAT_VERSION, add_views, atomic_h5, read_result, write_result
from .provenance import library_versions, provenance
from .result import KFoldResult

__all__ = ["KFoldResult", "add_views", "atomic_h5", "library_versions", "provenance", "read_result", "write_result", "FORMAT", "FORMAT_VERSION"]
