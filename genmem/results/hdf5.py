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
import shutil
from pathlib import Path

import h5py
import numpy as np

from ..errors import GenmemError
from ..outputs import atomic_path, output_lock
from ..validation import is_int
from .result import KFoldResult

FORMAT = "genmem.kfold"
_RUN_GROUPS = ("data", "folds", "scores", "units")
#: Names of the axes, as dimension scales at the root.
DIMENSIONS = ("repeat", "fold", "example")
FORMAT_VERSION = 1
_META_KEYS = ("genmem_version", "created", "argv", "versions", "device", "seeds", "processes")


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

    The temporary file is made as :func:`genmem.outputs.atomic_path` makes
    it (exclusively, never through a link, random name); a failure or an
    interruption inside the block leaves ``path`` as it was and removes it,
    so no reader ever sees a half-written file.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise GenmemError(f"the output folder {path.parent} does not exist; create it or choose another --out")
    with atomic_path(path) as tmp:
        if start_from is not None:
            shutil.copyfile(start_from, tmp)
        with h5py.File(tmp, "r+" if start_from is not None else "w") as f:
            yield f


def write_result(path, result):
    """Write ``result`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    with atomic_h5(path) as f:
        _write(f, result)


def _damaged(path, what):
    return GenmemError(f"{path} is a damaged genmem results file ({what}); re-run the command that made it")


def _check_links(f, path):
    """Refuse soft and external links: a results file holds only its own groups and datasets."""
    for group in (f, *(f[name] for name in f if isinstance(f.get(name, getlink=True), h5py.HardLink)
                       and isinstance(f[name], h5py.Group))):
        for name in group:
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                kind = "an external" if isinstance(link, h5py.ExternalLink) else "a soft"
                raise _damaged(path, f"{kind} link at {group.name.rstrip('/')}/{name}; results files hold only "
                                     "their own data")


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
    try:
        if f.attrs.get("format") != FORMAT:
            raise GenmemError(
                f"{path} is an HDF5 file but not a genmem results file (no format attribute {FORMAT!r}); "
                "give a file written by 'genmem kfold'"
            )
        try:
            version = int(f.attrs.get("format_version", 0))
        except (TypeError, ValueError):
            raise _damaged(path, f"format_version {f.attrs.get('format_version')!r} is not an integer") from None
        if version > FORMAT_VERSION:
            raise GenmemError(f"{path} has results format version {version}, newer than this genmem reads "
                              f"({FORMAT_VERSION}); upgrade genmem")
        _check_links(f, path)
    except BaseException:
        f.close()
        raise
    return f


def _attr_json(value):
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _check_config(config, path):
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not isinstance(model.get("params"),
                                                                                                dict):
        raise _damaged(path, "its config names no model")
    for key in ("folds", "repeats", "seed"):
        if not is_int(config.get(key)):
            raise _damaged(path, f"config {key!r} is not an integer")
    for key in ("estimator", "fingerprint", "data_sha256"):
        if not isinstance(config.get(key), str):
            raise _damaged(path, f"config {key!r} is missing or not a string")
    if not isinstance(config.get("data", {}), dict) or not isinstance(config.get("artifact_dir") or "", str):
        raise _damaged(path, "config 'data' or 'artifact_dir' has the wrong type")


def _check_array(path, name, value, kinds, shape):
    """``value`` has a dtype kind in ``kinds`` and the shape ``shape`` (None: any length; a trailing ``...``:
    any further dimensions)."""
    value = np.asarray(value)
    fixed = shape[:-1] if shape[-1] is ... else shape
    if value.dtype.kind not in kinds:
        raise _damaged(path, f"{name} has dtype {value.dtype}")
    if (value.ndim < len(fixed) if shape[-1] is ... else value.ndim != len(fixed)) or any(
            s is not None and s != v for s, v in zip(fixed, value.shape)):
        expected = ", ".join("*" if s is None else "..." if s is ... else str(s) for s in shape)
        raise _damaged(path, f"{name} has shape {list(value.shape)}, expected [{expected}]")


#: Scores a complete run stores (stderr too when R > 1).
_COMPLETE_SCORES = ("memorization", "memorization_reference", "memorization_balanced", "loglik_in", "loglik_out")


def _check_layout(result, path):
    """Raise unless every array of ``result`` has the dtype and shape its config implies."""
    loglik = np.asarray(result.loglik)
    _check_array(path, "/loglik", loglik, "f", (None, None, None))
    R, K, N = loglik.shape
    if (R, K) != (result.config["repeats"], result.config["folds"]):
        raise _damaged(path, f"/loglik is [{R}, {K}, {N}] but the config says R={result.config['repeats']}, "
                             f"K={result.config['folds']}")
    checks = [("/folds/assignment", result.assignment, "iu", (R, N)),
              ("/folds/done", result.done, "b", (R, K)), ("/folds/unit_seed", result.unit_seeds, "iu", (R, K)),
              ("/data/index", result.index, "iu", (N,)), ("/data/label", result.labels, "iu", (N,))]
    checks += [("/data/x", result.x, "f", (N, None))] * (result.x is not None)
    checks += [("/data/images", result.images, "fiu", (N, ...))] * (result.images is not None)
    checks += [(f"/scores/{name}", value, "f", (N,)) for name, value in result.scores.items()]
    checks += [(f"/units/{name}", value, "fiub", (R, K, ...)) for name, value in result.extras.items()]
    checks += [(f"/{name}", value, "fiub", (N, ...)) for name, value in result.views.items()]
    for name, value, kinds, shape in checks:
        _check_array(path, name, value, kinds, shape)
    names = result.label_names
    if names is not None and (not isinstance(names, list) or not all(isinstance(name, str) for name in names)
                              or result.labels.max(initial=-1) >= len(names)):
        raise _damaged(path, "/data/label's names are not one string per label code")
    if N and (result.assignment.min() < 0 or result.assignment.max() >= K):
        raise _damaged(path, f"/folds/assignment holds folds outside 0..{K - 1}")
    if result.done.all() and "memorization" in result.scores:
        missing = [name for name in _COMPLETE_SCORES + ("stderr",) * (R > 1) if name not in result.scores]
        if missing:
            raise _damaged(path, f"/scores/{missing[0]} is missing")


def read_result(path):
    """Read a results file into a :class:`KFoldResult`.

    Every array is checked against the shapes the run's config implies.

    Raises
    ------
    GenmemError
        If the file is missing, not HDF5, not a genmem results file, or damaged
        (a missing or misshapen dataset, a config without its keys, a soft or
        external link).
    """
    with _open(path) as f:
        try:
            meta = {key: _attr_json(f.attrs.get(key, "")) for key in _META_KEYS}
            config = json.loads(f.attrs["config"])
            _check_config(config, path)
            data = f["data"]
            result = KFoldResult(
                loglik=f["loglik"][()],
                assignment=f["folds/assignment"][()],
                done=f["folds/done"][()],
                unit_seeds=f["folds/unit_seed"][()],
                config=config,
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
        except GenmemError:
            raise
        except (KeyError, ValueError, TypeError, AttributeError, OSError, RuntimeError) as exc:
            raise _damaged(path, exc) from None
    _check_layout(result, path)
    return result


def add_views(path, views, attrs=None, *, fingerprint=None):
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
    fingerprint : str, optional
        The fingerprint of the run the views were computed from. When the
        file holds another run by now (it was replaced meanwhile), nothing is
        written and a :class:`GenmemError` says so.

    Every view records the fingerprint of the run it belongs to in its
    attribute ``run_fingerprint``. The file is locked while it is rewritten
    (:func:`genmem.outputs.output_lock`).
    """
    path = Path(path)
    with output_lock(path):
        with _open(path) as f:
            n = f["folds/assignment"].shape[1]
            complete = bool(f.attrs.get("complete", False))
            current = _attr_json(f.attrs.get("config", "{}"))
        current = current.get("fingerprint") if isinstance(current, dict) else None
        if not complete:
            raise GenmemError(f"{path} holds an unfinished run; finish it with the same 'genmem kfold' command first")
        if fingerprint is not None and current != fingerprint:
            raise GenmemError(f"{path} now holds another run (it was replaced while the views were computed); "
                              "nothing was written — run the command again on the new file")
        for key, value in views.items():
            group = key.split("/", 1)[0]
            if "/" not in key or group in _RUN_GROUPS + DIMENSIONS:
                raise GenmemError(f"view name {key!r} must be 'group/name' outside "
                                  f"{', '.join(_RUN_GROUPS + DIMENSIONS)}")
            if len(value) != n:
                raise GenmemError(f"view {key!r} has {len(value)} rows but the run has {n} examples")
        try:
            with atomic_h5(path, start_from=path) as f:
                _write_views(f, views, attrs, current)
        except (KeyError, ValueError, TypeError, AttributeError, RuntimeError) as exc:  # a damaged view or scale
            raise _damaged(path, exc) from None


def _write_views(f, views, attrs, fingerprint):
    named = "example" in f  # files written before dimension scales have none
    for key, value in views.items():
        if key in f:
            _drop(f, key)
        f[key] = value
        f[key].attrs["run_fingerprint"] = fingerprint
        if named:
            _attach(f[key], "example")
    for key, values in (attrs or {}).items():
        for name, value in values.items():
            ok = isinstance(value, (str, int, float, bool, np.integer, np.floating))
            f[key].attrs[name] = value if ok else json.dumps(value, sort_keys=True)
