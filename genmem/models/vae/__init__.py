"""The Pyro VAE: K-fold units trained together, importance-sampled log p per example.

Rooms: :mod:`.estimator` (the :class:`VAE` estimator and its presets),
:mod:`.nets` (networks, likelihoods, Pyro model/guide of one unit),
:mod:`.units` (U units in one parameter buffer, batched forward passes),
:mod:`.train` (epoch plan, training step, CUDA-graph capture),
:mod:`.evaluate` (importance sampling), :mod:`.checkpoints` (checkpoint files),
:mod:`.tracin_loss` (the per-example loss and the checkpoints TracIn takes).
"""
from .checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_VERSION
from .estimator import EVAL_BINARIZE_THRESHOLD, PRESETS, VAE
from .tracin_loss import load_vae_checkpoint, vae_negative_elbo

__all__ = ["VAE", "PRESETS", "EVAL_BINARIZE_THRESHOLD", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION",
           "load_vae_checkpoint", "vae_negative_elbo"]
