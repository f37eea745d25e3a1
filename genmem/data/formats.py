"""Readers of the file formats datasets come in, which run nothing they read and never allocate blindly.

IDX (MNIST-style, plain or gzip; the data size is checked against the header
before it is read), CIFAR-10's python batches (pickles, read by an unpickler
that admits only what rebuilds NumPy arrays and bytes) and NumPy ``.npz``
archives (their declared sizes checked before anything is decompressed).
:mod:`genmem.data.loaders` finds the files and builds datasets from them.
"""
import contextlib
import gzip
import math
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import GenmemError
from ..validation import check_allocation

# IDX type byte -> big-endian NumPy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Read an IDX file (plain or gzip-compressed) into a native-endian array.

    Parameters
    ----------
    path : path-like
        The file, e.g. ``train-images-idx3-ubyte`` or ``train-images-idx3-ubyte.gz``;
        gzip is recognised by its magic bytes, not by the suffix.

    Returns
    -------
    ndarray
        Shape given by the header's dimensions, dtype by its type byte.

    Raises
    ------
    GenmemError
        Missing file, bad magic number, or data size not matching the header.
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            gzipped = file.read(2) == b"\x1f\x8b"
            file.seek(0)
            with gzip.GzipFile(fileobj=file) if gzipped else contextlib.nullcontext(file) as f:
                head = f.read(4)
                if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_DTYPES or head[3] == 0:
                    raise GenmemError(
                        f"{path} is not an IDX file: bad magic number 0x{head[:4].hex()} (expected 0x0000TTNN with "
                        "type TT in 08,09,0B,0C,0D,0E); check that it is an MNIST-style file")
                dtype = np.dtype(_IDX_DTYPES[head[2]])
                shape = f.read(4 * head[3])
                dims = struct.unpack(f">{head[3]}I", shape) if len(shape) == 4 * head[3] else None
                expected = None if dims is None else math.prod(dims) * dtype.itemsize
                if expected is not None:  # never decompress more than the header declares
                    check_allocation(expected, f"reading IDX file {path} (dims {dims})",
                                     "check that it is an MNIST-style file")
                    raw = f.read(expected + 1)
    except FileNotFoundError:
        raise GenmemError(f"IDX file {path} does not exist; check the path or pass --data-dir") from None
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise GenmemError(f"cannot read IDX file {path} ({exc}); the file is damaged, download it again") from None
    if expected is None:
        raise GenmemError(f"{path} is corrupt: its header is cut short; download it again")
    if len(raw) != expected:
        held = f"more than {expected}" if len(raw) > expected else len(raw)
        raise GenmemError(
            f"{path} is corrupt: its header promises dims {dims} ({expected} data bytes) but the file holds "
            f"{held} data bytes; download it again"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


class _NDArrayName:
    """What the name ``numpy.ndarray`` stands for inside a CIFAR batch: only an argument of ``_reconstruct``."""


def _reconstruct(subtype, shape, dtype):
    """numpy's ``_reconstruct`` as pickled arrays use it: an empty ndarray, filled by its ``__setstate__``."""
    if subtype is not _NDArrayName or tuple(shape) != (0,):
        raise pickle.UnpicklingError("an array is rebuilt in an unusual way")
    return np.ndarray((0,), dtype=dtype)


def _frombuffer(buffer, dtype, shape, order):
    """numpy's ``_frombuffer`` (pickle protocol 5): an array over bytes already in the file."""
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _latin1(text, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` as Python 3 pickles bytes with protocol 2 (latin-1 only)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("bytes are encoded in an unusual way")
    return text.encode("latin-1")


class _CifarUnpickler(pickle.Unpickler):
    """Reads CIFAR-10's python batches without running anything: the only callables it admits rebuild NumPy
    arrays and dtypes and latin-1 bytes; every other global is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy.core.numeric", "_frombuffer"): _frombuffer,
               ("numpy._core.numeric", "_frombuffer"): _frombuffer,
               ("numpy", "ndarray"): _NDArrayName, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): _latin1}

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR-10 batch never does") from None


def read_cifar_batch(name, path, files):
    """The ``data`` [N, 3072] and ``labels`` [N] of one python CIFAR-10 batch, read with :class:`_CifarUnpickler`."""
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
        x = batch[b"data"]
        y = np.asarray(batch[b"labels"], dtype=np.int64)
    except FileNotFoundError:
        raise GenmemError(f"{name}: {path} is missing; {path.parent} must hold all of {', '.join(files)}") from None
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, IndexError, TypeError, ValueError, AttributeError,
            MemoryError) as exc:
        raise GenmemError(
            f"{name}: {path} is not a plain CIFAR-10 batch ({exc}); genmem reads only arrays, lists and bytes from "
            "these pickles and runs nothing — download cifar-10-python.tar.gz again") from None
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or \
            y.shape != (len(x),):
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise GenmemError(f"{name}: {path} holds data {got} and labels {y.shape}; expected uint8 [N, 3072] and [N]")
    return x, y


def _declared_npz_bytes(path):
    """Bytes the arrays of an .npz archive declare in their headers (read before anything is decompressed)."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            with archive.open(member) as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(f)
                total += math.prod(shape) * dtype.itemsize
    return total


def read_npz(path):
    """All arrays of an .npz file, as a dict; GenmemError when it is missing or unreadable."""
    try:
        if zipfile.is_zipfile(path):
            check_allocation(_declared_npz_bytes(path), f"reading the arrays of {path}", "check the file")
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise GenmemError(f"{path} is a .npy array, not an .npz archive; use npy:{path}")
        with npz:
            return {key: npz[key] for key in npz.files}
    except GenmemError:
        raise
    except FileNotFoundError:
        raise GenmemError(f"file {path} does not exist; check the path") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise GenmemError(f"cannot read {path} as an .npz archive ({exc}); save it with numpy.savez") from None
