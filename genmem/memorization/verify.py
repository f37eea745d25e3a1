"""Checking that a results file holds what its run wrote: its data, folds, scores, views and per-unit files."""
from pathlib import Path

import h5py
import numpy as np

from ..errors import GenmemError
from ..results.provenance import data_sha256
from .artifacts import read_manifest, verified_bytes
from .estimators import memorization_scores
from .folds import make_folds, unit_seed


def check_stored_data(result, path):
    """Raise :class:`GenmemError` unless the stored ``/data/x`` is the data the run saw (its config's hash)."""
    if result.x is not None and data_sha256(result.x) != result.config.get("data_sha256"):
        raise GenmemError(f"{path}: /data/x does not match the run's data hash (the file was altered after the run); "
                          "re-run 'genmem kfold' to remake it")


def verify(result, path):
    """Every check of ``genmem info --verify``, as a list of ``(check, ok, detail)``.

    Parameters
    ----------
    result : KFoldResult
        As read from ``path`` by :func:`genmem.results.read_result` (which
        already checked every array's shape and dtype).
    path : path-like
        The results file (its per-unit folder is found beside it).

    Returns
    -------
    list of (str, bool or None, str)
        ``ok`` is None when a check does not apply to this file.
    """
    config, (R, K, N) = result.config, result.loglik.shape
    checks = []

    def check(name, ok, detail=""):
        checks.append((name, ok, detail))

    if result.x is None:
        check("data hash", None, "the file stores no data (--no-store-data)")
    else:
        same = data_sha256(result.x) == config.get("data_sha256")
        check("data hash", same, "/data/x hashes to the config's data_sha256" if same else
              "/data/x differs from the data the run saw")
    check("folds", np.array_equal(make_folds(N, K, R, int(config["seed"])), result.assignment),
          "/folds/assignment is the seed's fold partition")
    seeds = np.array([[unit_seed(int(config["seed"]), r, k) for k in range(K)] for r in range(R)], dtype=np.uint64)
    check("unit seeds", np.array_equal(seeds, result.unit_seeds.astype(np.uint64)), "/folds/unit_seed")
    done = result.done
    check("units", bool(done.all() and np.isfinite(result.loglik).all()) if done.all() else None,
          f"{int(done.sum())} of {done.size} units done; log-likelihoods of done units "
          f"{'finite' if np.isfinite(result.loglik[done]).all() else 'NOT finite'}")
    if result.complete:
        expected = memorization_scores(result.loglik, result.assignment, config["estimator"])
        differ = [name for name in expected if not np.array_equal(expected[name], result.scores.get(name))]
        check("scores", not differ, "recomputed from /loglik" + (f"; differ: {', '.join(differ)}" if differ else ""))
    with h5py.File(path, "r") as f:
        owners = {name: f[name].attrs.get("run_fingerprint") for name in result.views}
    for name, owner in owners.items():
        check(f"view {name}", None if owner is None else owner == config["fingerprint"],
              "written for this run" if owner == config["fingerprint"] else
              "written by an older genmem (no run_fingerprint)" if owner is None else "written for another run")
    folder = Path(path).parent / config["artifact_dir"] if isinstance(config.get("artifact_dir"), str) else None
    if folder is None or not folder.is_dir():
        check("per-unit files", None, "none")
        return checks
    manifest = read_manifest(folder)
    if manifest is None:
        check("per-unit files", False, f"{folder} has no readable manifest")
        return checks
    names = sorted(manifest["files"])
    try:
        for name in names:
            verified_bytes(folder, name, config["fingerprint"], config["data_sha256"])
        check("per-unit files", bool(names) or None, f"{len(names)} file(s) in {folder} match their manifest")
    except GenmemError as exc:
        check("per-unit files", False, str(exc))
    return checks
