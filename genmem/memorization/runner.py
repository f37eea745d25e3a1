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
from pathlib import Path

import numpy as np

from ..data.labels import encode_labels
from ..device import resolve_device
from ..errors import GenmemError
from ..models import MODELS, DensityModel
from ..models.base import RUNTIME_PARAMS
from ..distributed import parse_shard, rank_device, shard_path, share, torchrun_world
from ..outputs import output_lock
from ..results import KFoldResult, write_result
from ..results.provenance import data_sha256, jsonable, provenance, qualified_name
from ..validation import any_of, check_allocation, check_data, check_param, integer, options
from .artifacts import artifact_folder
from .estimators import DEFAULT_ESTIMATOR, ESTIMATORS
from .folds import check_fold_args, make_folds, unit_seed
from .progress import all_units, check_outputs, finish, partial_path, pending_units, resume, run_units
from .torchrun import run_ranks

logger = logging.getLogger(__name__)

def _fingerprint(config):
    """Hash of everything that determines the numbers of a run."""
    identity = json.loads(json.dumps(config))
    for key in ("units_per_batch", "artifact_dir", "shard"):
        identity.pop(key, None)
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


def kfold(model, X, *, folds=10, repeats=1, seed=0, estimator=DEFAULT_ESTIMATOR, device=None,
          units_per_batch=None, labels=None, label_names=None, index=None, images=None, data_info=None,
          store_data=True, out=None, force=False, restart=False, shard=None, progress=False, argv=None):
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
    shard : (int, int) or "I/N", optional
        Run only shard I of N of the units (``units[I::N]`` in row-major
        order), into ``OUT.shard-I-of-N`` (resumable like any run; needs
        ``out``); :func:`merge` combines the finished shards into ``OUT``.
        For job arrays, or several Python processes on one run.
    progress : bool, default=False
        Show a progress bar on stderr (and, under torchrun, a line per rank
        at its start and end).
    argv : list of str, optional
        The command line to record (default ``sys.argv``).

    Returns
    -------
    KFoldResult or None
        The result; for a shard, its units only (no scores). Under torchrun
        (``WORLD_SIZE`` > 1), rank 0 returns the result and the other ranks
        None.

    Notes
    -----
    Under ``torchrun --nproc-per-node P -m genmem kfold …`` (or any program
    that calls :func:`kfold` in processes started by torchrun) the ranks
    share the pending units (:mod:`genmem.distributed`), each saving its
    own progress to ``OUT.rank-R.partial``; rank 0 gathers the units and
    alone writes ``OUT``, bit-identical to a single process's. A rerun with
    any number of processes resumes every completed unit.

    Examples
    --------
    One outlier among 40 Gaussian rows is the most memorized example:

    >>> import numpy as np
    >>> import genmem
    >>> from genmem.models import KDE
    >>> X = np.concatenate([np.random.default_rng(0).normal(size=(40, 2)), [[6.0, 6.0]]])
    >>> result = genmem.kfold(KDE(0.5), X, folds=5, repeats=2, seed=0)
    >>> result.loglik.shape, result.top(1).tolist()
    ((2, 5, 41), [40])
    """
    world = torchrun_world()
    shard = _check_shard(shard, world, out)
    X = check_data(X, min_rows=2)
    n = X.shape[0]
    check_fold_args(n, folds, repeats, seed)
    if estimator not in ESTIMATORS:
        raise GenmemError(f"unknown estimator {estimator!r}; use one of {', '.join(ESTIMATORS)}")
    check_param(units_per_batch, any_of(options(None, "auto"), integer(1)), "units_per_batch")
    given_labels = labels is not None
    labels, names, index = _labels_and_index(labels, label_names, index, n)
    check_allocation(8.0 * repeats * n * (folds + 1), f"the [R={repeats}, K={folds}, N={n}] log-likelihoods and fold "
                     "assignment", "lower --repeats or --folds, or use fewer examples (--limit)")
    target = None if out is None else Path(out) if shard is None else shard_path(out, *shard)
    if target is not None and (world is None or world.root):
        check_outputs(target, data_info)
    model = _make_model(model, device)
    if world is not None and "device" in model.get_params(deep=False):
        model.set_params(device=rank_device(model.device, world))
    model = model.resolve(X)
    if units_per_batch in (None, "auto"):
        units_per_batch = model.max_units_per_batch(X) or folds
        logger.info("units per batch: %d", units_per_batch)
    units_per_batch = int(units_per_batch)
    config = _config(model, X, folds=folds, repeats=repeats, seed=seed, estimator=estimator,
                     units_per_batch=units_per_batch, data_info=data_info)
    result = _empty_result(model, X, config, argv, index=index, labels=labels, names=names, images=images,
                           store_data=store_data)
    if target is not None:
        config["artifact_dir"] = artifact_folder(target).name
    if shard is not None:
        config["shard"] = list(shard)
    if world is not None:
        return run_ranks(model, X, result, world, units_per_batch, target, force, restart, given_labels, progress)
    with output_lock(target) if target is not None else contextlib.nullcontext():
        if target is not None:
            cached = resume(target, result, force, restart, given_labels)
            if cached is not None:
                return cached
        units = pending_units(result)
        if shard is not None:
            mine = set(share(all_units(result), *shard))
            units = [unit for unit in units if unit in mine]
        run_units(model, X, result, units, units_per_batch, target,
                  None if target is None else partial_path(target), progress)
        if shard is None:
            finish(result, X)
        if target is not None:
            write_result(target, result)
            partial_path(target).unlink(missing_ok=True)
    return result


def _check_shard(shard, world, out):
    """``shard`` parsed to ``(i, n)`` (or None), refused under torchrun and without ``out``."""
    if shard is None:
        return None
    if world is not None:
        raise GenmemError("--shard splits a run across separate jobs; torchrun splits it across its processes "
                          "by itself: use one or the other")
    if out is None:
        raise GenmemError("a shard needs out= (--out): its units go to OUT.shard-I-of-N for 'genmem merge OUT'")
    return parse_shard(shard)


def _labels_and_index(labels, label_names, index, n):
    """``(label codes [N], label names or None, index [N])`` of the run's ``n`` examples, checked."""
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
    return labels, names, index


def _config(model, X, *, folds, repeats, seed, estimator, units_per_batch, data_info):
    """The run's resolved configuration, with its fingerprint (what determines its numbers)."""
    config = {
        "model": {"name": model.name, "class": qualified_name(type(model)),
                  "params": {key: jsonable(value, f"parameter {key!r} of {type(model).__name__}")
                             for key, value in model.get_params(deep=False).items()},
                  **({"revision": int(model.revision)} if model.revision else {})},
        "folds": folds, "repeats": repeats, "seed": seed, "estimator": estimator,
        "units_per_batch": units_per_batch, "data": jsonable(data_info or {}),
        "data_sha256": data_sha256(X),
    }
    config["fingerprint"] = _fingerprint(config)
    return config


def _empty_result(model, X, config, argv, *, index, labels, names, images, store_data):
    """The run's :class:`KFoldResult` before any unit: folds, unit seeds, provenance, no log-likelihoods yet."""
    folds, repeats, seed = config["folds"], config["repeats"], config["seed"]
    seeds = np.array([[unit_seed(seed, r, k) for k in range(folds)] for r in range(repeats)], dtype=np.uint64)
    meta = {
        **provenance(model.get_params(deep=False).get("device", "cpu"), argv),
        "seeds": {"seed": seed, "folds": "SeedSequence(seed, spawn_key=(0, repeat))",
                  "units": "SeedSequence(seed, spawn_key=(1, repeat, fold)); see /folds/unit_seed",
                  "dequantize": "SeedSequence(seed, spawn_key=(2,)) when the data were dequantized"},
        "processes": {"launcher": "single", "world_size": 1},
    }
    return KFoldResult(
        loglik=np.full((repeats, folds, len(X)), np.nan), assignment=make_folds(len(X), folds, repeats, seed),
        done=np.zeros((repeats, folds), dtype=bool), unit_seeds=seeds, config=config, meta=meta,
        index=index, labels=labels, label_names=names, x=X if store_data else None,
        images=None if images is None or not store_data else np.asarray(images, dtype=np.float32),
    )
