"""VAE checkpoint files: one file per unit with its weights at chosen epochs.

A file holds a dict (``torch.save``; it loads with ``weights_only=True``, so
reading one never runs code): ``format``, ``version``, ``config`` (the VAE
parameters, resolved ``likelihood`` and ``n_features``), ``seed``, ``unit``
([repeat, fold]) and, per checkpoint, ``epochs``, ``lrs`` (Adam learning
rate), ``steps`` (Adam steps taken) and ``states`` (the unit's ``state_dict``
with single-model names ``encoder.*``, ``decoder.*``).
"""
import torch

from ...errors import GenmemError

CHECKPOINT_FORMAT = "genmem-vae-checkpoint"
#: 2: weights and training draws from counter-based random numbers (genmem.philox).
CHECKPOINT_VERSION = 2


def save_checkpoint(path, record, config, seed, unit):
    """Write one unit's checkpoints ``record`` (``epochs``, ``lrs``, ``steps``, ``states``) to ``path``."""
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": config,
                "seed": int(seed), "unit": [int(i) for i in unit], **record}, path)


def read_checkpoint(path):
    """The checkpoint dict in ``path``; a :class:`GenmemError` if it is not a genmem VAE checkpoint."""
    ckpt = torch.load(path, weights_only=True, map_location="cpu")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise GenmemError(f"{path} is not a genmem VAE checkpoint file")
    return ckpt


def checkpoint_state(ckpt, epoch=None, source="the checkpoint"):
    """The ``state_dict`` of the checkpoint at ``epoch`` (default: the last) in the dict ``ckpt``."""
    epochs = list(ckpt["epochs"])
    if epoch is None:
        epoch = epochs[-1]
    if epoch not in epochs:
        raise GenmemError(f"{source} has no checkpoint at epoch {epoch}; it holds epochs {epochs}")
    return ckpt["states"][epochs.index(epoch)]
