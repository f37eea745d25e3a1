"""VAE checkpoint files: one file per unit with its weights at chosen epochs.

A file holds a dict (``torch.save``; it loads with ``weights_only=True``, so
reading one never runs code): ``format``, ``version``, ``config`` (the VAE
parameters, resolved ``likelihood`` and ``n_features``), ``seed``, ``unit``
([repeat, fold]) and, per checkpoint, ``epochs``, ``lrs`` (Adam learning
rate), ``steps`` (Adam steps taken) and ``states`` (the unit's ``state_dict``
with single-model names ``encoder.*``, ``decoder.*``).
"""
import io
from pathlib import Path

import torch

from ...errors import GenmemError
from ...outputs import atomic_path
from ..base import Checkpoint

CHECKPOINT_FORMAT = "genmem-vae-checkpoint"
#: 2: weights and training draws from counter-based random numbers (genmem.philox).
CHECKPOINT_VERSION = 2


def save_checkpoint(path, record, config, seed, unit):
    """Write one unit's checkpoints ``record`` (``epochs``, ``lrs``, ``steps``, ``states``) to ``path``.

    Written to a temporary file beside ``path`` and renamed into place, so a
    full disk or an interruption never leaves a truncated checkpoint.
    """
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": config,
                    "seed": int(seed), "unit": [int(i) for i in unit], **record}, tmp)


def checkpoint_config(params, likelihood, n_features):
    """What a checkpoint records of its model: the parameters ``params`` as plain values, the resolved likelihood, D."""
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
    config.update(likelihood=likelihood, n_features=int(n_features))
    return config


def model_params(config, device=None):
    """``(constructor arguments, n_features)`` of the model a checkpoint's ``config`` records.

    ``device``, when given, replaces the recorded device.
    """
    params = dict(config)
    n_features = params.pop("n_features")
    params["hidden"] = tuple(params["hidden"])
    if params["image_shape"] is not None:
        params["image_shape"] = tuple(params["image_shape"])
    if device is not None:
        params["device"] = device
    return params, n_features


def read_checkpoint(path, content=None):
    """The checkpoint dict in ``path`` (or in its bytes ``content``, already read and checked by the caller).

    Raises
    ------
    GenmemError
        If the file is missing or is not a genmem VAE checkpoint.
    """
    try:
        ckpt = torch.load(path if content is None else io.BytesIO(content), weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise GenmemError(
            f"checkpoint file {path} is missing; re-run 'genmem kfold' with checkpoints to make it") from None
    except Exception as exc:  # torch.load raises many types for a foreign file
        raise GenmemError(f"{path} cannot be read as a genmem VAE checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise GenmemError(f"{path} is not a genmem VAE checkpoint file; pass a unit file written by 'genmem kfold'")
    return ckpt


def checkpoint_states(ckpt, net, source="the checkpoint"):
    """Every saved state of the checkpoint dict ``ckpt`` as a :class:`~genmem.models.base.Checkpoint`.

    One per saved epoch, with the recorded learning rate and label ``"epoch E"``;
    a :class:`GenmemError` when a state does not fit ``net`` (the network the
    checkpoint's config describes).
    """
    expected = {n: tuple(p.shape) for n, p in net.named_parameters()}
    for epoch, state in zip(ckpt["epochs"], ckpt["states"]):
        if {n: tuple(v.shape) for n, v in state.items()} != expected:
            raise GenmemError(f"the epoch-{epoch} state in {source} does not fit the VAE its config describes; "
                              "the file is damaged or mixes models")
    return _as_checkpoints(ckpt)


def _as_checkpoints(record):
    return [Checkpoint(dict(state), float(lr), f"epoch {int(epoch)}")
            for epoch, lr, state in zip(record["epochs"], record["lrs"], record["states"])]


class CheckpointRecorder:
    """Keeps the states of U training units after chosen epochs: an ``on_epoch`` callback of the trainer.

    Parameters
    ----------
    n_units : int
    epochs : iterable of int
        Epochs after which every unit's state is kept.
    lr : float
        The learning rate recorded with each state.
    """

    def __init__(self, n_units, epochs, lr):
        self.epochs, self.lr = set(epochs), float(lr)
        self.records = [{"epochs": [], "lrs": [], "steps": [], "states": []} for _ in range(n_units)]

    def __call__(self, epoch, units, trainer):
        if epoch in self.epochs:
            for record, state, steps in zip(self.records, units.unit_states(), trainer.step_counts):
                record["epochs"].append(epoch)
                record["lrs"].append(self.lr)
                record["steps"].append(steps)
                record["states"].append(state)

    def checkpoints(self, u=0):
        """The kept states of unit ``u`` as :class:`~genmem.models.base.Checkpoint` s."""
        return _as_checkpoints(self.records[u])

    def save(self, folder, unit_keys, seeds, config):
        """Write one file ``unit_r{r}_k{k}.pt`` per unit to ``folder`` (created when missing)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for key, seed, record in zip(unit_keys, seeds, self.records):
            save_checkpoint(folder / f"unit_r{key[0]}_k{key[1]}.pt", record, config, seed, key)


def checkpoint_state(ckpt, epoch=None, source="the checkpoint"):
    """The ``state_dict`` of the checkpoint at ``epoch`` (default: the last) in the dict ``ckpt``."""
    epochs = list(ckpt["epochs"])
    if epoch is None:
        epoch = epochs[-1]
    if epoch not in epochs:
        raise GenmemError(f"{source} has no checkpoint at epoch {epoch}; it holds epochs {epochs}")
    return ckpt["states"][epochs.index(epoch)]
