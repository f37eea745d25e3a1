"""A run's saved progress: checking its outputs, resuming what can be trusted, fitting units batch by batch.

Completed units are written after every batch to a progress file
(``OUT.partial``, or a torchrun rank's ``OUT.rank-R.partial``); a later call
with the same run takes over every unit that is marked done, finite and laid
out as this run's (:func:`take_units`), from any of those files, and
recomputes the rest.
"""
import contextlib
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

from ..errors import GenmemError
from ..models.base import UnitError
from ..outputs import check_folder, check_not_input, clean_stale, temporary_folder
from ..results import KFoldResult, read_result, write_result
from ..results.provenance import now
from .artifacts import artifact_folder, claim_folder, publish
from .checks import warn_implausible_scores
from .estimators import memorization_scores

logger = logging.getLogger(__name__)


def partial_path(out):
    """The progress file of the results file ``out``: ``OUT.partial``."""
    return out.with_name(out.name + ".partial")


def check_outputs(out, data_info):
    """Before any work: the results file, its partial and its unit folder can be written and are not inputs."""
    units = artifact_folder(out)
    for path in (out, partial_path(out)):
        if path.is_dir():
            raise GenmemError(f"{path} is a folder; choose another --out")
    check_not_input(out, [(data_info or {}).get("source")])
    if units.exists() and not units.is_dir():
        raise GenmemError(f"{units} exists and is not a folder; genmem keeps the run's per-unit files there — "
                          "move it away or choose another --out")
    check_folder(out)
    clean_stale(out.parent)


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
                logger.warning("discarding %s: %s", path, exc)
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


def take_units(result, source, name):
    """Copy the sound units of the result ``source`` into ``result``; returns how many.

    A unit is taken when it is marked done and its log-likelihoods are all
    finite, in a file whose folds, unit seeds and shapes are this run's (else
    nothing is taken, with a warning); done units whose numbers are not
    finite are left to recompute, with a warning. ``name`` names ``source``
    in the warnings.
    """
    same_layout = (source.loglik.shape == result.loglik.shape and source.done.shape == result.done.shape
                   and np.array_equal(source.assignment, result.assignment)
                   and np.array_equal(source.unit_seeds, result.unit_seeds)
                   and all(np.shape(v)[:2] == result.done.shape for v in source.extras.values()))
    if not same_layout:
        warnings.warn(f"{name} does not match this run's folds, seeds or shapes; recomputing its units",
                      stacklevel=3)
        return 0
    good = source.done & np.isfinite(source.loglik).all(axis=2)
    bad = np.argwhere(source.done & ~good)
    if len(bad):
        warnings.warn(f"{name}: {len(bad)} unit(s) marked done hold non-finite log-likelihoods (first: repeat "
                      f"{bad[0][0]}, fold {bad[0][1]}); recomputing them", stacklevel=3)
    result.loglik[good] = source.loglik[good]
    result.done |= good
    for key, value in source.extras.items():
        if key not in result.extras:
            result.extras[key] = np.full(np.shape(value), np.nan)
        result.extras[key][good] = np.asarray(value)[good]
    return int(good.sum())


def _reuse(result, previous, source):
    """Take the sound units of ``previous`` into ``result``; True when ``previous`` is complete and sound."""
    result.done[:] = False
    result.extras = {}
    take_units(result, previous, source)
    if not result.done.all() or not previous.complete:
        return False
    expected = memorization_scores(result.loglik, result.assignment, result.config["estimator"])
    sound = expected.keys() == previous.scores.keys() and all(
        np.array_equal(expected[k], previous.scores[k]) for k in expected)
    if not sound:
        warnings.warn(f"{source}: the stored scores do not follow from its log-likelihoods; recomputing them",
                      stacklevel=3)
    return sound


def resume(out, result, force, restart, given_labels):
    """Take over this run's saved progress (or discard it); returns the previous result when it is complete and sound.

    A complete run given other labels (``given_labels``) gets them, rewritten in place.
    """
    config = result.config
    previous = _previous(out, partial_path(out), config["fingerprint"], force, restart)
    claim_folder(artifact_folder(out), config["fingerprint"], config["data_sha256"], discard=previous is None,
                 force=force)
    if previous is None:
        return None
    if _reuse(result, previous, out if previous.complete else partial_path(out)):
        if given_labels and (not np.array_equal(previous.labels, result.labels)
                             or previous.label_names != result.label_names):
            previous.labels, previous.label_names = result.labels, result.label_names
            write_result(out, previous)
            logger.info("%s already holds this run, complete; its labels were replaced by the ones given", out)
        else:
            logger.info("%s already holds this run, complete; nothing to do", out)
        return previous
    logger.info("resuming %s: %d of %d units already done", out, result.done.sum(), result.done.size)
    return None


def run_units(model, X, result, units, units_per_batch, out, partial, progress):
    """Fit ``units`` ((repeat, fold) pairs) batch by batch into ``result``, saving progress after each batch.

    Parameters
    ----------
    out : Path or None
        The results file whose ``OUT.units/`` folder receives per-unit files.
    partial : Path or None
        Where ``result``'s completed units are written after each batch
        (without the data arrays: only what resuming needs).
    progress : bool
        Show a progress bar on stderr.
    """
    from tqdm.auto import tqdm

    x_full, images = result.x, result.images
    done = int(result.done.sum())
    with tqdm(total=done + len(units), initial=done, desc="units", unit="unit", file=sys.stderr,
              disable=not progress) as bar:
        for start in range(0, len(units), units_per_batch):
            keys = [(int(r), int(k)) for r, k in units[start:start + units_per_batch]]
            before = int(result.done.sum())
            with temporary_folder(out) if out is not None else contextlib.nullcontext() as staging:
                try:
                    _fit_batch(model, X, result, keys, staging, bar.update if progress else None)
                finally:  # also after a failed unit: the units completed before it are kept
                    if partial is not None and result.done.sum() > before:
                        publish(staging, artifact_folder(out), result.config["fingerprint"],
                                result.config["data_sha256"])
                        result.x = result.images = None  # the partial file holds only what resuming needs
                        write_result(partial, result)
                        result.x, result.images = x_full, images


def all_units(result):
    """Every (repeat, fold) unit of the run, in row-major order."""
    repeats, folds = result.done.shape
    return [(r, k) for r in range(repeats) for k in range(folds)]


def finish(result, X):
    """The scores of a result whose units are all done, its creation time, and warnings on implausible scores."""
    result.scores = memorization_scores(result.loglik, result.assignment, result.config["estimator"])
    warn_implausible_scores(result.scores["memorization"], X, result.assignment)
    result.meta["created"] = now()


def empty_like(result):
    """A result of the same run with no unit done and no data arrays (a process's own progress)."""
    return KFoldResult(loglik=np.full_like(result.loglik, np.nan), assignment=result.assignment,
                       done=np.zeros_like(result.done), unit_seeds=result.unit_seeds, config=result.config,
                       meta=result.meta, index=result.index, labels=result.labels, label_names=result.label_names)


def store_unit(result, unit, loglik, extras):
    """Put one computed unit's log-likelihoods [N] and per-unit arrays into ``result`` and mark it done."""
    result.loglik[unit] = loglik
    for name, value in extras.items():
        value = np.asarray(value)
        if name not in result.extras:
            result.extras[name] = np.full(result.done.shape + value.shape, np.nan, dtype=np.float64)
        result.extras[name][unit] = value
    result.done[unit] = True


def pending_units(result):
    """The (repeat, fold) units of ``result`` not done yet, in row-major order."""
    return [(int(r), int(k)) for r, k in zip(*np.nonzero(~result.done))]


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
        store_unit(result, (r, k), loglik[u], {name: np.asarray(value)[u] for name, value in outputs.items()
                                               if name != "loglik"})
