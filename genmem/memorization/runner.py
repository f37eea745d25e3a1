"""The K-fold runner: fit every (repeat, fold) unit, score all examples, keep progress.

:func:`kfold` is the library face of ``genmem kfold``. Each unit fits a fresh
model on the other folds and evaluates log p of **all** N examples; units are
handed to the model in batches (:meth:`DensityModel.fit_units`), so models that
train many units at once do so. With ``out`` given, completed units are saved
after every batch to ``OUT.partial`` (atomically), and calling :func:`kfold`
again with the same arguments resumes from there; the final file appears only
when the run is complete. The run holds a lock on ``OUT`` while it lasts, and
per-unit files (checkpoints) go to ``OUT.units/`` with a manifest that ties
them to the run (:mod:`genmem.memorization.artifacts`).
"""
import contextlib
import hashlib
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

from ..data.labels import encode_labels
from ..device import resolve_device
from ..errors import GenmemError
from ..models import MODELS, DensityModel
from ..models.base import UnitError
from ..outputs import check_folder, check_not_input, clean_stale, output_lock, temporary_folder
from ..results import KFoldResult, read_result, write_result
from ..results.provenance import data_sha256, jsonable, now, provenance, qualified_name
from ..validation import check_allocation, check_data
from .artifacts import artifact_folder, claim_folder, publish
from .checks import warn_implausible_scores
from .estimators import DEFAULT_ESTIMATOR, ESTIMATORS, memorization_scores
from .folds import check_fold_args, make_folds, unit_seed

log = logging.getLogger(__name__)

#: Model parameters that change how, not what, is computed; a run that differs
#: only in these resumes the same file.
RUNTIME_PARAMS = ("device", "chunk_size", "eval_chunk", "units_per_batch", "batch_units", "tf32", "cuda_graph",
                  "compile")


def _fingerprint(config):
    """Hash of everything that determines the numbers of a run."""
    identity = json.loads(json.dumps(config))
    identity.pop("units_per_batch", None)
    identity.pop("artifact_dir", None)
    identity["model"].pop("class", None)
    params = identity["model"]["params"]
    for key in RUNTIME_PARAMS:  # the device too: models draw the same random numbers on every device
        params.pop(key, None)
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _make_model(model, device):
    if isinstance(model, str):
        if model not in MODELS:
            raise GenmemError(f"unknown model {model!r}; choose one of {', '.join(sorted(MODELS))}")
        model = MODELS[model]()
    if not isinstance(model, DensityModel) and callable(getattr(model, "score_samples", None)):
        raise GenmemError(f"{type(model).__name__} is a scikit-learn-style estimator, not a genmem model; "
                          "wrap it: genmem.models.SklearnDensity(estimator)")
    if not isinstance(model, DensityModel):
        raise GenmemError(f"model must be a genmem DensityModel or one of {', '.join(sorted(MODELS))}; got {model!r}")
    if not isinstance(model.name, str) or not model.name:
        raise GenmemError(f"{type(model).__name__}.name must be a non-empty str (how results name the model); "
                          f"got {model.name!r}")
    if "device" in model.get_params(deep=False):
        model = model.clone(device=str(resolve_device(model.device if device is None else device)))
    return model


def _previous(out, partial, fingerprint, force, restart):
    """The saved progress of this run to reuse (the result file first, then the partial), or None.

    A file of another run, or one that cannot be read, is refused unless
    ``force``, which discards it; ``restart`` discards this run's own progress.
    """
    found = None
    for path in (out, partial):
        if not path.exists():
            continue
        try:
            previous = read_result(path)
        except GenmemError as exc:
            if force:
                log.warning("discarding %s: %s", path, exc)
                continue
            raise GenmemError(f"cannot reuse {path}: {exc}; or pass --force to discard it") from None
        if previous.config.get("fingerprint") != fingerprint:
            if not force:
                raise GenmemError(f"{path} exists and holds a different run; pass --force (force=True) to replace "
                                  "it or choose another --out")
            continue
        if found is None and not restart:
            found = previous
    return found


def _reuse(result, previous, source):
    """Copy the valid units of ``previous`` into ``result``; returns True when ``previous`` is complete and sound.

    A unit is reused when it is marked done and its log-likelihoods are all
    finite, in a file whose folds, unit seeds and shapes are this run's;
    the others are recomputed, with a warning.
    """
    same_layout = (previous.loglik.shape == result.loglik.shape and previous.done.shape == result.done.shape
                   and np.array_equal(previous.assignment, result.assignment)
                   and np.array_equal(previous.unit_seeds, result.unit_seeds)
                   and all(np.shape(v)[:2] == result.done.shape for v in previous.extras.values()))
    if not same_layout:
        warnings.warn(f"{source} does not match this run's folds, seeds or shapes; recomputing all units",
                      stacklevel=3)
        return False
    good = previous.done & np.isfinite(previous.loglik).all(axis=2)
    bad = np.argwhere(previous.done & ~good)
    if len(bad):
        warnings.warn(f"{source}: {len(bad)} unit(s) marked done hold non-finite log-likelihoods (first: repeat "
                      f"{bad[0][0]}, fold {bad[0][1]}); recomputing them", stacklevel=3)
    result.loglik[good] = previous.loglik[good]
    result.done[:] = good
    result.extras = {name: np.where(good.reshape(good.shape + (1,) * (np.ndim(v) - 2)), v, np.nan)
                     for name, v in previous.extras.items()}
    if not good.all() or not previous.complete:
        return False
    expected = memorization_scores(result.loglik, result.assignment, result.config["estimator"])
    sound = expected.keys() == previous.scores.keys() and all(
        np.array_equal(expected[k], previous.scores[k]) for k in expected)
    if not sound:
        warnings.warn(f"{source}: the stored scores do not follow from its log-likelihoods; recomputing them",
                      stacklevel=3)
    return sound


def kfold(model, X, *, folds=10, repeats=1, seed=0, estimator=DEFAULT_ESTIMATOR, device=None,
          units_per_batch=None, labels=None, label_names=None, index=None, images=None, data_info=None,
          store_data=True, out=None, force=False, restart=False, progress=False, argv=None):
    """Leave-out memorization scores of every example by K-fold × R-repeat holdout training.

    Parameters
    ----------
    model : DensityModel or str
        An unfitted template model (e.g. ``KDE("scott")``) or a registry name
        (``"kde"``, ``"gmm"``, ``"vae"``). Data-dependent hyperparameters are
        resolved once on the full ``X`` (:meth:`DensityModel.resolve`).
    X : array [N, D]
        The data exactly as the model should see it.
    folds : int, default=10
        K, with ``2 <= K <= N``.
    repeats : int, default=1
        R, the number of independent fold partitions.
    seed : int, default=0
        Root of every random stream of the run (folds and unit models).
    estimator : {"balanced", "reference"}
        The estimator stored as ``scores["memorization"]``; both are always computed.
    device : str, optional
        Overrides the model's ``device`` parameter (``"auto"``, ``"cpu"``, ``"cuda"``).
    units_per_batch : int or "auto", optional
        Units handed to the model at once. Progress is saved after every
        batch. ``"auto"`` (the default): as many as the model says fit in
        memory (:meth:`DensityModel.max_units_per_batch`; the VAE on CUDA),
        else K (one repeat).
    labels : sequence [N], optional
        Each example's class, stored with the result (default −1,
        unlabelled): integer codes, or values of any hashable type (e.g.
        strings), stored as codes with their names (see
        :func:`genmem.data.encode_labels`). Given again for a finished run
        in ``out``, different labels replace the stored ones.
    label_names : list of str, optional
        The class of each integer code (e.g. ``Prepared.label_names``).
    index : int array [N], optional
        Position of each example in its source (default ``arange(N)``).
    images : array [N, ...], optional
        The examples as images in [0, 1], stored for ``genmem top --plot``.
    data_info : dict, optional
        How ``X`` was made (dataset, preprocessing); stored in the config.
    store_data : bool, default=True
        Store ``X`` and ``images`` in the results file.
    out : path-like, optional
        Results file. Progress goes to ``OUT.partial``; an existing complete
        file of the same run is returned as it is, a partial one resumed
        (units that are not sound are recomputed, with a warning); a
        different run is refused unless ``force``. The run holds a lock on
        ``OUT`` (a second writer gets a :class:`GenmemError` naming it).
        Models that save per-unit files (the VAE's checkpoints) put them in
        ``OUT.units/`` (``run.h5`` → ``run.h5.units/``), recorded in the
        config as ``artifact_dir`` relative to the results file, with a
        manifest tying them to this run.
    force : bool, default=False
        Replace a *different* run in ``out``, its partial progress and its
        per-unit files. Progress of this same run is still resumed.
    restart : bool, default=False
        Discard this run's own saved progress and start over.
    progress : bool, default=False
        Show a progress bar on stderr.
    argv : list of str, optional
        The command line to record (default ``sys.argv``).

    Returns
    -------
    KFoldResult
    """
    X = check_data(X, min_rows=2)
    n = X.shape[0]
    check_fold_args(n, folds, repeats, seed)
    if estimator not in ESTIMATORS:
        raise GenmemError(f"unknown estimator {estimator!r}; use one of {', '.join(ESTIMATORS)}")
    if units_per_batch not in (None, "auto") and (not isinstance(units_per_batch, (int, np.integer))
                                                  or isinstance(units_per_batch, bool) or units_per_batch < 1):
        raise GenmemError(f"units_per_batch must be a positive int or 'auto'; got {units_per_batch!r}")
    given_labels = labels is not None
    labels, names = encode_labels(labels, n)
    if label_names is not None:
        if names is not None:
            raise GenmemError("label_names names integer label codes; labels given as names need no label_names")
        names = [str(name) for name in label_names]
        if labels.max(initial=-1) >= len(names):
            raise GenmemError(f"labels use code {labels.max()} but label_names has {len(names)} names")
    index = np.arange(n, dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
    if index.shape != (n,):
        raise GenmemError(f"index must have one entry per example ({n}); got shape {index.shape}")

    check_allocation(8.0 * repeats * n * (folds + 1), f"the [R={repeats}, K={folds}, N={n}] log-likelihoods and fold "
                     "assignment", "lower --repeats or --folds, or use fewer examples (--limit)")
    if out is not None:
        out = Path(out)
        _check_outputs(out, data_info)
    model = _make_model(model, device).resolve(X)
    if units_per_batch in (None, "auto"):
        units_per_batch = model.max_units_per_batch(X) or folds
        log.info("units per batch: %d", units_per_batch)
    units_per_batch = int(units_per_batch)
    config = {
        "model": {"name": model.name, "class": qualified_name(type(model)),
                  "params": {key: jsonable(value, f"parameter {key!r} of {type(model).__name__}")
                             for key, value in model.get_params(deep=False).items()}},
        "folds": folds, "repeats": repeats, "seed": seed, "estimator": estimator,
        "units_per_batch": units_per_batch, "data": jsonable(data_info or {}),
        "data_sha256": data_sha256(X),
    }
    config["fingerprint"] = _fingerprint(config)
    assignment = make_folds(n, folds, repeats, seed)
    seeds = np.array([[unit_seed(seed, r, k) for k in range(folds)] for r in range(repeats)], dtype=np.uint64)
    meta = {
        **provenance(model.get_params(deep=False).get("device", "cpu"), argv),
        "seeds": {"seed": seed, "folds": "SeedSequence(seed, spawn_key=(0, repeat))",
                  "units": "SeedSequence(seed, spawn_key=(1, repeat, fold)); see /folds/unit_seed",
                  "dequantize": "SeedSequence(seed, spawn_key=(2,)) when the data were dequantized"},
    }
    result = KFoldResult(
        loglik=np.full((repeats, folds, n), np.nan), assignment=assignment,
        done=np.zeros((repeats, folds), dtype=bool), unit_seeds=seeds, config=config, meta=meta,
        index=index, labels=labels, label_names=names, x=X if store_data else None,
        images=None if images is None or not store_data else np.asarray(images, dtype=np.float32),
    )

    if out is not None:
        config["artifact_dir"] = artifact_folder(out).name
    with output_lock(out) if out is not None else contextlib.nullcontext():
        if out is not None:
            cached = _resume(out, result, force, restart, given_labels)
            if cached is not None:
                return cached
        _run_units(model, X, result, units_per_batch, out, progress)
        result.scores = memorization_scores(result.loglik, assignment, estimator)
        warn_implausible_scores(result.scores["memorization"], X, assignment)
        result.meta["created"] = now()
        if out is not None:
            write_result(out, result)
            _partial(out).unlink(missing_ok=True)
    return result


def _partial(out):
    return out.with_name(out.name + ".partial")


def _check_outputs(out, data_info):
    """Before any work: the results file, its partial and its unit folder can be written and are not inputs."""
    units = artifact_folder(out)
    for path in (out, _partial(out)):
        if path.is_dir():
            raise GenmemError(f"{path} is a folder; choose another --out")
    check_not_input(out, [(data_info or {}).get("source")])
    if units.exists() and not units.is_dir():
        raise GenmemError(f"{units} exists and is not a folder; genmem keeps the run's per-unit files there — "
                          "move it away or choose another --out")
    check_folder(out)
    clean_stale(out.parent)


def _resume(out, result, force, restart, given_labels):
    """Take over this run's saved progress (or discard it); returns the previous result when it is complete and sound.

    A complete run given other labels (``given_labels``) gets them, rewritten in place.
    """
    config = result.config
    previous = _previous(out, _partial(out), config["fingerprint"], force, restart)
    claim_folder(artifact_folder(out), config["fingerprint"], config["data_sha256"], discard=previous is None,
                 force=force)
    if previous is None:
        return None
    if _reuse(result, previous, out if previous.complete else _partial(out)):
        if given_labels and (not np.array_equal(previous.labels, result.labels)
                             or previous.label_names != result.label_names):
            previous.labels, previous.label_names = result.labels, result.label_names
            write_result(out, previous)
            log.info("%s already holds this run, complete; its labels were replaced by the ones given", out)
        else:
            log.info("%s already holds this run, complete; nothing to do", out)
        return previous
    log.info("resuming %s: %d of %d units already done", out, result.done.sum(), result.done.size)
    return None


def _run_units(model, X, result, units_per_batch, out, progress):
    """Fit the pending units batch by batch, saving progress to ``OUT.partial`` after each."""
    from tqdm.auto import tqdm

    pending = [(r, k) for r, k in zip(*np.nonzero(~result.done))]
    x_full, images = result.x, result.images
    with tqdm(total=result.done.size, initial=int(result.done.sum()), desc="units", unit="unit",
              file=sys.stderr, disable=not progress) as bar:
        for start in range(0, len(pending), units_per_batch):
            keys = [(int(r), int(k)) for r, k in pending[start:start + units_per_batch]]
            before = int(result.done.sum())
            with temporary_folder(out) if out is not None else contextlib.nullcontext() as staging:
                try:
                    _fit_batch(model, X, result, keys, staging, bar.update if progress else None)
                finally:  # also after a failed unit: the units completed before it are kept
                    if out is not None and result.done.sum() > before:
                        publish(staging, artifact_folder(out), result.config["fingerprint"],
                                result.config["data_sha256"])
                        result.x = result.images = None  # the partial file holds only what resuming needs
                        write_result(_partial(out), result)
                        result.x, result.images = x_full, images


def _fit_batch(model, X, result, keys, staging, progress):
    """Fit the units ``keys`` (per-unit files to ``staging``) and store their outputs; on a failed unit, store
    those completed before it. A failed checkpoint write (a full disk) is a one-line error."""
    masks = np.stack([result.assignment[r] != k for r, k in keys])
    seeds = [int(result.unit_seeds[r, k]) for r, k in keys]
    try:
        outputs = model.fit_units(X, masks, seeds, unit_keys=keys, artifact_dir=staging, progress=progress)
    except UnitError as exc:
        completed = len(exc.completed.get("loglik", ()))
        if completed:
            _store(result, keys[:completed], exc.completed)
        raise
    except RuntimeError as exc:  # torch.save reports a full disk as a RuntimeError of its stream writer
        if staging is None or not _raised_by_torch_save(exc):
            raise
        raise GenmemError(f"writing the units' checkpoints in {staging.parent} failed ({str(exc).splitlines()[0]}); "
                          "free some disk space and run the same command again to resume") from None
    _store(result, keys, outputs)


def _raised_by_torch_save(exc):
    tb = exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).match("torch/serialization.py"):
            return True
        tb = tb.tb_next
    return False


def _store(result, keys, outputs):
    loglik = np.asarray(outputs["loglik"], dtype=np.float64)
    for u, (r, k) in enumerate(keys):
        bad = ~np.isfinite(loglik[u])
        if bad.any():
            raise GenmemError(
                f"unit (repeat {r}, fold {k}) gave a non-finite log p for {bad.sum()} example(s) "
                f"(first: row {np.flatnonzero(bad)[0]}); completed units are kept — try dtype float64, "
                "a larger bandwidth or reg_covar, or fewer epochs"
            )
        result.loglik[r, k] = loglik[u]
        for name, value in outputs.items():
            if name == "loglik":
                continue
            value = np.asarray(value)
            if name not in result.extras:
                result.extras[name] = np.full(result.done.shape + value.shape[1:], np.nan, dtype=np.float64)
            result.extras[name][r, k] = value[u]
        result.done[r, k] = True
