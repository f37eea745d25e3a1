"""VAE checkpoint files: one file per unit with its weights at chosen epochs.

A file holds a dict (``torch.save``; it loads with ``weights_only=True``, so
reading one never runs code): ``format``, ``version``, ``config`` (the VAE
parameters, resolved ``likelihood`` and ``n_features``), ``seed``, ``unit``
([repeat, fold]) and, per checkpoint, ``epochs``, ``lrs`` (Adam learning
rate), ``steps`` (Adam steps taken) and ``states`` (the unit's ``state_dict``
with single-model names ``encoder.*``, ``decoder.*``).
"""
import io

import torch

from ...errors import GenmemError
from ..base import Checkpoint

CHECKPOINT_FORMAT = "genmem-vae-checkpoint"
#: 2: weights and training draws from counter-based random numbers (genmem.philox).
CHECKPOINT_VERSION = 2


def save_checkpoint(path, record, config, seed, unit):
    """Write one unit's checkpoints ``record`` (``epochs``, ``lrs``, ``steps``, ``states``) to ``path``."""
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": config,
                "seed": int(seed), "unit": [int(i) for i in unit], **record}, path)


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
    states = []
    for epoch, lr, state in zip(ckpt["epochs"], ckpt["lrs"], ckpt["states"]):
        if {n: tuple(v.shape) for n, v in state.items()} != expected:
            raise GenmemError(f"the epoch-{epoch} state in {source} does not fit the VAE its config describes; "
                              "the file is damaged or mixes models")
        states.append(Checkpoint(dict(state), float(lr), f"epoch {int(epoch)}"))
    return states


def checkpoint_state(ckpt, epoch=None, source="the checkpoint"):
    """The ``state_dict`` of the checkpoint at ``epoch`` (default: the last) in the dict ``ckpt``."""
    epochs = list(ckpt["epochs"])
    if epoch is None:
        epoch = epochs[-1]
    if epoch not in epochs:
        raise GenmemError(f"{source} has no checkpoint at epoch {epoch}; it holds epochs {epochs}")
    return ckpt["states"][epochs.index(epoch)]
