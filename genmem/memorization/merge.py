"""Merging the shards of a K-fold run (``genmem kfold --shard I/N``) into its results file."""
import os
from pathlib import Path

from ..distributed import shard_files, share
from ..errors import GenmemError
from ..outputs import output_lock
from ..results import read_result, write_result
from .artifacts import artifact_folder, check_manifest, claim_folder, publish
from .progress import all_units, check_outputs, empty_like, finish, take_units


def _shards(out):
    """The shard results of ``out``, checked to be the N shards of one run: {I: (path, result)}."""
    found = shard_files(out)
    if not found:
        raise GenmemError(f"no shard files {out}.shard-I-of-N beside {out}; run 'genmem kfold ... --out {out} "
                          "--shard I/N' for each shard I first")
    counts = sorted({n for _, n in found})
    if len(counts) > 1:
        raise GenmemError(f"{out} has shards of several splits (N = {', '.join(map(str, counts))}); keep the shard "
                          "files of one split only")
    count = counts[0]
    shards = {i: (path, read_result(path)) for (i, _), path in sorted(found.items())}
    first_path, first = shards[min(shards)]
    for path, shard in shards.values():
        if shard.config.get("fingerprint") != first.config.get("fingerprint"):
            raise GenmemError(f"{path} holds a shard of another run than {first_path} (their settings or data "
                              "differ); merge only the shards of one run")
        if shard.config.get("shard") is None:
            raise GenmemError(f"{path} is not a shard file (its config records no shard)")
    return count, shards


def merge(out, *, force=False):
    """Combine the finished shards ``OUT.shard-I-of-N`` of one run into the results file ``out``.

    Checks that every shard file holds the same run (fingerprint), takes the
    sound units of each, refuses with the names of the missing units when
    any unit is in no shard, computes the scores and writes ``out``
    atomically; each shard's per-unit files (``OUT.shard-I-of-N.units/``)
    move to ``OUT.units/``. The shard files are left in place.

    Parameters
    ----------
    out : path-like
        The results file the shards were run for (``--out``).
    force : bool, default=False
        Replace an existing ``out`` of another run.

    Returns
    -------
    KFoldResult
    """
    out = Path(out)
    count, shards = _shards(out)
    first = shards[min(shards)][1]
    result = empty_like(first)
    result.x, result.images = first.x, first.images
    result.config = {key: value for key, value in first.config.items() if key != "shard"}
    result.config["artifact_dir"] = artifact_folder(out).name
    for path, shard in shards.values():
        take_units(result, shard, path)
    missing = [unit for unit in all_units(result) if not result.done[unit]]
    if missing:
        by_shard = {i: [u for u in share(all_units(result), i, count) if u in missing] for i in range(count)}
        lacking = [f"{i}/{count}" + ("" if i in shards else " (no file)") for i, units in by_shard.items() if units]
        names = ", ".join(f"(repeat {r}, fold {k})" for r, k in missing[:5])
        raise GenmemError(f"{len(missing)} unit(s) are in no finished shard, e.g. {names}; finish shard(s) "
                          f"{', '.join(lacking)} with 'genmem kfold ... --shard I/{count}', then merge again")
    if result.x is None:
        raise GenmemError(f"{shards[min(shards)][0]} stores no data; merging needs the data (/data/x)")
    check_outputs(out, result.config.get("data"))
    with output_lock(out):
        if out.exists():
            previous = read_result(out)
            if previous.config.get("fingerprint") != result.config["fingerprint"] and not force:
                raise GenmemError(f"{out} exists and holds a different run; pass --force to replace it")
        _move_unit_files(out, result, [path for path, _ in shards.values()], force)
        finish(result, result.x)
        result.meta["processes"] = {"launcher": "shards", "shards": count}
        write_result(out, result)
    return result


def _move_unit_files(out, result, shard_paths, force):
    """Move each shard's per-unit files (checked against its manifest) into ``OUT.units/``."""
    fingerprint, data = result.config["fingerprint"], result.config["data_sha256"]
    target = artifact_folder(out)
    claim_folder(target, fingerprint, data, force=force)
    for path in shard_paths:
        folder = artifact_folder(path)
        names = [p.name for p in folder.iterdir() if p.name.startswith("unit_")] if folder.is_dir() else []
        if not names:
            continue
        check_manifest(folder, names, fingerprint, data)
        staging = folder / f".merge-{os.getpid()}"
        staging.mkdir(exist_ok=True)
        for name in names:
            os.replace(folder / name, staging / name)
        publish(staging, target, fingerprint, data)
        staging.rmdir()
