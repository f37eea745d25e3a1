"""Reading HDF5 files stamped with their format: check the name and version before anything else is read."""
import contextlib
from pathlib import Path

import h5py

from ..errors import GenmemError


@contextlib.contextmanager
def read_stamped(path, format, version, what, how):
    """Open ``path`` for reading after checking that it is an HDF5 file of ``format``, at most ``version``.

    Parameters
    ----------
    path : path-like
    format : str
        The root attribute ``format`` the file must carry (e.g. ``"genmem.gan"``).
    version : int
        The newest ``format_version`` this genmem reads.
    what : str
        What such a file is called, in "a … file", e.g. ``"genmem GAN"``.
    how : str
        How one is made, e.g. ``"give a file written by 'genmem gan'"``.

    Yields
    ------
    h5py.File
    """
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        raise GenmemError(f"{path} is not a {what} file; {how}")
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != format:
            raise GenmemError(f"{path} is an HDF5 file but not a {what} file (format {format!r}); {how}")
        found = int(f.attrs["format_version"])
        if found > version:
            raise GenmemError(f"{path} has {what} format version {found}, newer than this genmem reads ({version}); "
                              "upgrade genmem")
        yield f
