"""Reading and writing genmem's one-file-per-run HDF5 results.

Layout (version 1)::

    /                      attrs: format, format_version, genmem_version, created,
                           argv, config (JSON), seeds (JSON), versions (JSON),
                           device, complete
    /data/index [N]        position of each row in its source split
    /data/label [N]        −1 when unlabelled; attr names (JSON list) when codes stand for names
    /data/x [N, D]         the exact array the density model saw (optional)
    /data/images [N, ...]  the examples as images in [0, 1] (optional)
    /folds/assignment [R, N], /folds/done [R, K], /folds/unit_seed [R, K]
    /loglik [R, K, N]
    /scores/memorization [N]           attr estimator
    /scores/memorization_reference [N], /scores/memorization_balanced [N]
    /scores/loglik_in [N], /scores/loglik_out [N], /scores/stderr [N] (R > 1)
    /units/<name> [R, K, ...]          further per-unit arrays of a model (e.g. ess)
    /<view>/<name> [N, ...]            later analyses of the same examples, added by
                                       :func:`add_views` (e.g. /influence/self,
                                       /neighbours/distance), with their own attributes
    /repeat [R], /fold [K], /example [N]
                           dimension scales (0 … size−1) attached to the axes of
                           the datasets above, so that tools that read them
                           (xarray with h5netcdf, netCDF) name the axes

Per-example data is never stored in attributes. Files are written to a
temporary name in the target folder and renamed into place, so a reader never
sees a half-written file.
"""
import contextlib
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from ..errors import GenmemError
from .result import KFoldResult

FORMAT = "genmem.kfold"
_RUN_GROUPS = ("data", "folds", "scores", "units")
#: Names of the axes, as dimension scales at the root.
DIMENSIONS = ("repeat", "fold", "example")
FORMAT_VERSION = 1
_META_KEYS = ("genmem_version", "created", "argv", "versions", "device", "seeds")


def _write(f, result):
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["complete"] = result.complete
    f.attrs["config"] = json.dumps(result.config, sort_keys=True)
    for key in _META_KEYS:
        value = result.meta.get(key, "")
        f.attrs[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    data = f.create_group("data")
    data["index"] = result.index
    data["label"] = result.labels
    if result.label_names is not None:
        data["label"].attrs["names"] = json.dumps(list(result.label_names))
    for name in ("x", "images"):
        value = getattr(result, name)
        if value is not None:
            data.create_dataset(name, data=value, compression="gzip", compression_opts=4, shuffle=True)
    folds = f.create_group("folds")
    folds["assignment"] = result.assignment
    folds["done"] = result.done
    folds["unit_seed"] = result.unit_seeds
    f["loglik"] = result.loglik
    scores = f.create_group("scores")
    for name, value in result.scores.items():
        scores[name] = value
    if "memorization" in scores:
        scores["memorization"].attrs["estimator"] = result.config.get("estimator", "")
        scores["memorization"].attrs["units"] = "nats"
    units = f.create_group("units")
    for name, value in result.extras.items():
        units[name] = value
    for key, value in result.views.items():
        f[key] = value
    _name_axes(f, result.loglik.shape)


def _name_axes(f, shape):
    """Create the dimension scales ``/repeat``, ``/fold``, ``/example`` and attach them to every dataset's axes."""
    for name, size in zip(DIMENSIONS, shape):
        _scale(f, name, size)
    _attach(f["loglik"], "repeat", "fold", "example")
    _attach(f["folds/assignment"], "repeat", "example")
    for name in ("done", "unit_seed"):
        _attach(f["folds"][name], "repeat", "fold")
    for name in f["units"]:
        _attach(f["units"][name], "repeat", "fold")
    if "x" in f["data"]:
        _scale(f, "feature", f["data/x"].shape[1])
        _attach(f["data/x"], "example", "feature")
    for group in f:
        if group in ("data", "scores") or (group not in _RUN_GROUPS and isinstance(f[group], h5py.Group)):
            for dset in f[group].values():
                if isinstance(dset, h5py.Dataset) and not dset.dims[0]:
                    _attach(dset, "example")


def _scale(f, name, size):
    """A dimension scale ``/name`` holding 0 … size−1."""
    f[name] = np.arange(size, dtype=np.int64)
    f[name].make_scale(name)


def _extra_axes(dset, known):
    """Root scale names of the axes of ``dset`` after the first ``known``: ``<group>_<name>_<axis>``."""
    stem = dset.name.strip("/").replace("/", "_")
    return [f"{stem}_{axis}" for axis in range(known, dset.ndim)]


def _attach(dset, *names):
    """Attach the root's dimension scales ``names`` to the first axes of ``dset`` and label those axes.

    Further axes get scales of their own (:func:`_extra_axes`): tools such as
    h5netcdf want every axis of a dataset named, or none.
    """
    extra = _extra_axes(dset, len(names))
    for name, size in zip(extra, dset.shape[len(names):]):
        _scale(dset.file, name, size)
    for axis, name in enumerate(names + tuple(extra)):
        dset.dims[axis].attach_scale(dset.file[name])
        dset.dims[axis].label = name


def _drop(f, key):
    """Delete the dataset ``key`` and the scales of its own further axes."""
    dset = f[key]
    extra = _extra_axes(dset, 1)
    for axis, dim in enumerate(dset.dims):
        for scale in list(dim.values()):
            dset.dims[axis].detach_scale(scale)
    del f[key]
    for name in extra:
        if name in f:
            del f[name]


@contextlib.contextmanager
def atomic_h5(path, *, start_from=None):
    """An HDF5 file open for writing under a temporary name, renamed to ``path`` when the block succeeds.

    Parameters
    ----------
    path : path-like
        The file to (re)place; its folder must exist.
    start_from : path-like, optional
        Start from a copy of this file (opened ``r+``) instead of an empty one.

    A failure inside the block leaves ``path`` as it was and removes the
    temporary file, so no reader ever sees a half-written file.
    """
    path = Path(path)
    if not path.parent.exists():
        raise GenmemError(f"the output folder {path.parent} does not exist; create it or choose another --out")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if start_from is not None:
            shutil.copyfile(start_from, tmp)
        with h5py.File(tmp, "r+" if start_from is not None else "w") as f:
            yield f
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_result(path, result):
    """Write ``result`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    with atomic_h5(path) as f:
        _write(f, result)


def _open(path):
    path = Path(path)
    if not path.exists():
        raise GenmemError(f"no such file: {path}; give the path of a file written by 'genmem kfold'")
    if path.is_dir() or not h5py.is_hdf5(path):
        raise GenmemError(f"{path} is not an HDF5 file; give the path of a file written by 'genmem kfold'")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise GenmemError(f"{path} cannot be read as HDF5 ({exc}); the file may be truncated or corrupt") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise GenmemError(
            f"{path} is an HDF5 file but not a genmem results file (no format attribute {FORMAT!r}); "
            "give a file written by 'genmem kfold'"
        )
    version = int(f.attrs.get("format_version", 0))
    if version > FORMAT_VERSION:
        f.close()
        raise GenmemError(
            f"{path} has results format version {version}, newer than this genmem reads ({FORMAT_VERSION}); upgrade genmem"
        )
    return f


def _attr_json(value):
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def read_result(path):
    """Read a results file into a :class:`KFoldResult`.

    Raises
    ------
    GenmemError
        If the file is missing, not HDF5, not a genmem results file, or damaged.
    """
    with _open(path) as f:
        try:
            meta = {key: _attr_json(f.attrs.get(key, "")) for key in _META_KEYS}
            data = f["data"]
            return KFoldResult(
                loglik=f["loglik"][()],
                assignment=f["folds/assignment"][()],
                done=f["folds/done"][()],
                unit_seeds=f["folds/unit_seed"][()],
                config=json.loads(f.attrs["config"]),
                meta=meta,
                index=data["index"][()],
                labels=data["label"][()],
                label_names=json.loads(data["label"].attrs["names"]) if "names" in data["label"].attrs else None,
                scores={name: ds[()] for name, ds in f["scores"].items()},
                extras={name: ds[()] for name, ds in f["units"].items()},
                x=data["x"][()] if "x" in data else None,
                images=data["images"][()] if "images" in data else None,
                views={f"{group}/{name}": ds[()] for group in f if group not in _RUN_GROUPS
                       and isinstance(f[group], h5py.Group) for name, ds in f[group].items()
                       if isinstance(ds, h5py.Dataset)},
            )
        except (KeyError, ValueError) as exc:
            raise GenmemError(f"{path} is a damaged genmem results file ({exc}); re-run the command that made it") from None


def add_views(path, views, attrs=None):
    """Add or replace analysis datasets in an existing results file, atomically.

    Parameters
    ----------
    path : path-like
        A complete genmem results file.
    views : dict of str to ndarray
        ``"group/name"`` → array with one row per example (e.g.
        ``{"influence/self": values}``); the group must not be one of the
        run's own (``data``, ``folds``, ``scores``, ``units``).
    attrs : dict of str to dict, optional
        Attributes per key (of ``views`` or of their groups), e.g. the method
        and parameters that produced them; values that are not str, int, float
        or bool are stored as JSON.
    """
    path = Path(path)
    with _open(path) as f:
        n = f["folds/assignment"].shape[1]
        if not f.attrs.get("complete", False):
            raise GenmemError(f"{path} holds an unfinished run; finish it with the same 'genmem kfold' command first")
    for key, value in views.items():
        group = key.split("/", 1)[0]
        if "/" not in key or group in _RUN_GROUPS + DIMENSIONS:
            raise GenmemError(f"view name {key!r} must be 'group/name' outside {', '.join(_RUN_GROUPS + DIMENSIONS)}")
        if len(value) != n:
            raise GenmemError(f"view {key!r} has {len(value)} rows but the run has {n} examples")
    with atomic_h5(path, start_from=path) as f:
        named = "example" in f  # files written before dimension scales have none
        for key, value in views.items():
            if key in f:
                _drop(f, key)
            f[key] = value
            if named:
                _attach(f[key], "example")
        for key, values in (attrs or {}).items():
            for name, value in values.items():
                ok = isinstance(value, (str, int, float, bool, np.integer, np.floating))
                f[key].attrs[name] = value if ok else json.dumps(value, sort_keys=True)
