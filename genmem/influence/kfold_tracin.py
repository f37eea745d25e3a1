"""TracIn of VAE checkpoint files: one unit's (:func:`vae_tracin`) and a K-fold run's (:class:`KFoldTracIn`)."""
import json
from pathlib import Path

import numpy as np
import torch

from ..errors import GenmemError
from ..memorization.artifacts import check_manifest, verified_bytes
from ..models.base import RUNTIME_PARAMS
from ..models.vae import load_vae_checkpoint, vae_negative_elbo
from ..validation import check_data, check_int
from .gather import gather_influence
from .tracin import TracIn


def vae_tracin(path, *, draws=1, **kwargs):
    """A :class:`TracIn` over the checkpoints of one VAE checkpoint file, with ℓ = −ELBO.

    Parameters
    ----------
    path : path-like
        A unit's checkpoint file (see :func:`~genmem.models.vae.load_vae_checkpoint`).
    draws : int, default=1
        S, reparameterisation draws ε per example in the −ELBO (the training
        objective uses 1); every example gets the same S draws at every checkpoint.
    **kwargs
        Further :class:`TracIn` arguments (``seed``, ``projection_dim``, ``chunk_size``, ``device``).
    """
    vae, checkpoints, _ = load_vae_checkpoint(path, device=kwargs.get("device", "cpu"))
    return _elbo_tracin(vae, checkpoints, check_int(draws, "draws"), **kwargs)


def _elbo_tracin(vae, checkpoints, draws, **kwargs):
    """:class:`TracIn` of the loaded ``vae`` over ``checkpoints`` with ℓ = −ELBO of ``draws`` ε per example."""
    return TracIn(vae_negative_elbo(vae), checkpoints, noise_shape=(draws, int(vae.latent_dim)), **kwargs)


class KFoldTracIn:
    """TracIn of a K-fold VAE run, from the checkpoints its units saved.

    A K-fold run has no model trained on all the data: unit (r, k) trained on
    the rows outside fold k of repeat r. Each example's influence is the mean,
    over the R·(K−1) units that trained on it, of that unit's TracInCP over its
    checkpoints (ℓ = −ELBO, :func:`vae_negative_elbo`).

    Parameters
    ----------
    result : KFoldResult
        A complete VAE run that stores its data (``/data/x``).
    path : path-like
        The results file; its config's ``artifact_dir`` (relative to it) holds
        the units' checkpoint files ``unit_r{r}_k{k}.pt``.
    draws, seed, projection_dim, normalize, chunk_size, device
        As for :func:`vae_tracin` and :class:`TracIn` (the same ``seed`` for every unit).
    unbiased : bool, default=False
        Self-influence from two independent ε draws (see :meth:`TracIn.self_influence`).

    Notes
    -----
    Each unit's checkpoint file is read and checked once, on first use, and
    its :class:`TracIn` kept for later calls (memory: every unit's
    checkpoints, on ``device``).

    Raises
    ------
    GenmemError
        If the run is not a VAE run, stores no data or no checkpoints, or a
        checkpoint file is missing or belongs to another run or model.
    """

    def __init__(self, result, path, *, draws=1, seed=0, projection_dim=None, normalize=None, chunk_size=16,
                 device="cpu", unbiased=False):
        name = result.config["model"]["name"]
        if name != "vae":
            raise GenmemError(f"{path} is a {name} run; TracIn from checkpoints needs a VAE run")
        if result.x is None:
            raise GenmemError(f"{path} stores no data (/data/x); re-run 'genmem kfold' without --no-store-data")
        folder = result.config.get("artifact_dir")
        folder = None if not folder else Path(path).parent / folder
        if folder is None or not folder.is_dir() or not any(folder.glob("unit_r*_k*.pt")):
            raise GenmemError(
                f"{path} has no VAE checkpoints (folder {folder or 'none recorded'}); re-run 'genmem kfold' with "
                "checkpoints > 0 (VAE(checkpoints=10)) and keep the .units folder beside the results file"
            )
        self.result, self.path, self.folder = result, path, folder
        self.files = {(int(r), int(k)): folder / f"unit_r{r}_k{k}.pt" for r, k in zip(*np.nonzero(result.done))}
        missing = [p.name for p in self.files.values() if not p.is_file()]
        if missing:
            raise GenmemError(
                f"{len(missing)} of {len(self.files)} checkpoint files are missing from {folder} "
                f"(first: {missing[0]}); re-run 'genmem kfold --restart' with checkpoints to recreate them"
            )
        check_manifest(folder, [p.name for p in self.files.values()], result.config["fingerprint"],
                       result.config["data_sha256"])
        self.options = dict(draws=check_int(draws, "draws", owner="KFoldTracIn"), seed=seed, projection_dim=projection_dim,
                            normalize=normalize, chunk_size=chunk_size, device=device)
        self.unbiased = bool(unbiased)
        self.labels, self.lrs = None, None
        self._loaded = {}  # unit (r, k) -> its TracIn

    def _check(self, key, info, file):
        r, k = key
        if int(info["seed"]) != int(self.result.unit_seeds[r, k]) or [int(i) for i in info["unit"]] != [r, k]:
            raise GenmemError(
                f"{file} belongs to another run (unit {list(info['unit'])}, seed {info['seed']}; this run's unit "
                f"({r}, {k}) has seed {int(self.result.unit_seeds[r, k])}); keep each run's .units folder with its file"
            )
        ours, theirs = self.result.config["model"]["params"], info["config"]
        differ = sorted(key for key in ours.keys() & theirs.keys()
                        if key not in RUNTIME_PARAMS and not _json_equal(ours[key], theirs[key]))
        if differ or int(theirs.get("n_features", -1)) != self.result.x.shape[1]:
            what = differ[0] if differ else "n_features"
            raise GenmemError(f"{file} is a checkpoint of another model ({what} differs from the run's config)")

    def _unit(self, key):
        """The TracIn of unit ``key``, from its checkpoint file (read and checked on the first call)."""
        if key not in self._loaded:
            file = self.files[key]
            content = verified_bytes(self.folder, file.name, self.result.config["fingerprint"],
                                     self.result.config["data_sha256"])
            vae, checkpoints, info = load_vae_checkpoint(file, device=self.options["device"], content=content)
            self._check(key, info, file)
            if self.labels is None:
                self.labels, self.lrs = [ck.label for ck in checkpoints], [ck.lr for ck in checkpoints]
            self._loaded[key] = _elbo_tracin(vae, checkpoints, **self.options)
        return self._loaded[key]

    def _units(self):
        """Yield (training mask [N], TracIn) for every unit."""
        for key in self.files:
            yield self.result.assignment[key[0]] != key[1], self._unit(key)

    def unit_self_influences(self, units=None):
        """``{(r, k): TracIn(x_i, x_i) of unit (r, k) for its training rows}`` for ``units`` (default: all).

        The pieces :meth:`self_influence` averages; processes can compute
        shares of the units (e.g. torchrun ranks) and pool them.
        """
        X = self.result.x
        units = list(self.files) if units is None else units
        return {key: self._unit(key).self_influence(X[self.result.assignment[key[0]] != key[1]],
                                                    unbiased=self.unbiased) for key in units}

    def self_influence(self, per_unit=None):
        """Mean over training units of ``TracIn(x_i, x_i)`` (see :meth:`TracIn.self_influence`), float64 [N].

        ``per_unit``: the units' values already computed (:meth:`unit_self_influences`,
        every unit), e.g. gathered from several processes; summed in the
        same order either way, so the result is the same to the bit.
        """
        per_unit = self.unit_self_influences() if per_unit is None else per_unit
        X = self.result.x
        total, count = np.zeros(len(X)), np.zeros(len(X))
        for key in self.files:
            mask = self.result.assignment[key[0]] != key[1]
            total[mask] += per_unit[key]
            count[mask] += 1
        return total / count

    def influence(self, Z, k=None):
        """Mean over the units that trained on ``x_i`` of ``TracIn(x_i, z)``, for test rows ``Z`` [n_z, D].

        Returns an ndarray [n_z, N] (float64), or :class:`TopInfluence` when ``k`` is given.
        """
        X = self.result.x
        Z = check_data(Z, name="test data", n_features=X.shape[1])
        total, count = np.zeros((len(Z), len(X))), np.zeros(len(X))
        for mask, tr in self._units():
            total[:, mask] += tr.influence(Z, train=X[mask])
            count[mask] += 1
        matrix = torch.as_tensor(total / count)
        return gather_influence([(slice(0, len(Z)), matrix)], len(Z), len(X), k)

    def attrs(self):
        """What produced the values, for the results file (checkpoints and η are known after a computation)."""
        return {"method": "tracin", "loss": "negative ELBO", "checkpoints": self.labels, "lrs": self.lrs,
                "units": len(self.files), "aggregate": "mean over the units that trained on the example",
                "unbiased_self_influence": self.unbiased,
                **{key: v for key, v in self.options.items() if key != "device"}}


def _json_equal(a, b):
    """Equality of two config values as JSON would store them (tuples as lists)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
