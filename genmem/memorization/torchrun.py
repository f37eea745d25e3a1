"""One K-fold run in several processes started by torchrun.

Rank 0 owns the results file: it takes the lock on ``OUT``, takes over the
progress of earlier sessions — ``OUT.partial`` and every ``OUT.rank-R.partial``
left by any number of processes (progress is counted in units, not ranks)
— into one ``OUT.partial``, and tells every rank which units are done. Each
rank computes its share of the pending units (:func:`genmem.distributed.share`),
saving its own progress to ``OUT.rank-R.partial`` after every batch, and sends
the units it computed to rank 0, which writes ``OUT``. A rank that dies
costs only its unfinished batch: rerunning the command (with any number of
processes) resumes from the progress files, and ``OUT`` is only ever written
whole (atomically) by rank 0.
"""
import contextlib
import logging
import time

from ..distributed import ProcessGroup, rank_partial, rank_partials, share
from ..errors import GenmemError
from ..outputs import output_lock
from ..results import read_result, write_result
from .progress import (all_units, empty_like, finish, partial_path, resume, run_units, store_unit, take_units)

logger = logging.getLogger(__name__)


def _consolidate(out, result, force, restart, given_labels):
    """Rank 0: take this run's saved progress from every progress file into ``result`` and ``OUT.partial``.

    Returns the finished result when ``out`` already holds this run, complete.
    """
    cached = resume(out, result, force, restart, given_labels)
    files = rank_partials(out)
    if cached is not None or restart:
        for path in files:
            path.unlink(missing_ok=True)
        return cached
    taken = 0
    for path in files:
        try:
            previous = read_result(path)
        except GenmemError as exc:
            if not force:
                raise GenmemError(f"cannot reuse {path}: {exc}; or pass --force to discard it") from None
            logger.warning("discarding %s: %s", path, exc)
            continue
        if previous.config.get("fingerprint") != result.config["fingerprint"]:
            if not force:
                raise GenmemError(f"{path} holds the progress of a different run; pass --force to discard it or "
                                  "choose another --out")
            continue
        taken += take_units(result, previous, path)
    if taken:
        x, images = result.x, result.images
        result.x = result.images = None
        write_result(partial_path(out), result)
        result.x, result.images = x, images
    for path in files:
        path.unlink()
    return None


def run_ranks(model, X, result, world, units_per_batch, out, force, restart, given_labels, progress):
    """Run the pending units of ``result`` on the ranks of ``world``; rank 0 returns the result, the others None."""
    device = model.get_params(deep=False).get("device", "cpu")
    with ProcessGroup(world, device) as group, contextlib.ExitStack() as held:
        cached = None
        if world.root and out is not None:
            try:
                held.enter_context(output_lock(out))
                cached = _consolidate(out, result, force, restart, given_labels)
            except GenmemError as exc:
                group.broadcast({"error": str(exc)})
                raise
        state = group.broadcast({"done": result.done, "cached": cached is not None})
        if "error" in state:
            raise GenmemError(f"rank 0 stopped the run: {state['error']}")
        if state["cached"]:
            return cached

        pending = [unit for unit in all_units(result) if not state["done"][unit]]
        mine = share(pending, world.rank, world.size)
        logger.info("rank %d/%d on %s: %d of the %d pending units", world.rank, world.size, device, len(mine), len(pending))
        start = time.monotonic()
        own = empty_like(result)
        run_units(model, X, own, mine, units_per_batch, out, None if out is None else rank_partial(out, world.rank),
                  progress and world.root)
        logger.info("rank %d/%d: %d units in %.1f s", world.rank, world.size, len(mine), time.monotonic() - start)
        parts = group.gather({unit: (own.loglik[unit], {name: value[unit] for name, value in own.extras.items()})
                              for unit in mine})
        if not world.root:
            return None  # the group's exit waits for rank 0 to have written the file
        for part in parts:
            for unit, (loglik, extras) in part.items():
                store_unit(result, unit, loglik, extras)
        finish(result, X)
        result.meta["processes"] = {"launcher": "torchrun", "world_size": world.size}
        if out is not None:
            write_result(out, result)
            partial_path(out).unlink(missing_ok=True)
            for path in rank_partials(out):
                path.unlink()
        return result
