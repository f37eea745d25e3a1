"""Results of a run: the in-memory container and its HDF5 file."""
from .hdf5 import FORMAT, FORMAT_VERSION, add_views, atomic_h5, read_result, write_result
from .provenance import library_versions, provenance
from .result import KFoldResult
from .tables import columns, to_dataframe, top_rows, write_csv, write_parquet

__all__ = ["KFoldResult", "add_views", "atomic_h5", "columns", "library_versions", "provenance", "read_result",
           "to_dataframe", "top_rows", "write_csv", "write_parquet", "write_result", "FORMAT", "FORMAT_VERSION"]
