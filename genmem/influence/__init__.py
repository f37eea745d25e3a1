"""Influence of training examples: TracIn from checkpoints, and closed forms for KDE, k-NN and GMM.

All share one sign convention: ``IF(x, z) = ℓ(z; D∖x) − ℓ(z; D)`` with
``ℓ = −log p`` (or ``−ELBO``), positive for a proponent; the self-influence
``IF(x, x)`` is high for memorized, atypical examples.

One interface, captum-shaped: every influence object is built from a model
(or its checkpoints) and its training data, and offers ``self_influence()``
and ``influence(test, k=None)`` (the full matrix, or the ``k`` strongest
proponents and opponents per test point). :func:`influence_for` picks the
object for a fitted density model.
"""
from .closed_form import GMMInfluence, KDEInfluence, KNNInfluence
from .for_model import influence_for
from .tracin import (Checkpoint, KFoldTracIn, TopInfluence, TracIn, gather_influence, load_vae_checkpoint,
                     module_loss, vae_negative_elbo, vae_tracin)

__all__ = ["TracIn", "KFoldTracIn", "Checkpoint", "TopInfluence", "gather_influence", "module_loss", "vae_negative_elbo",
           "load_vae_checkpoint", "vae_tracin", "KDEInfluence", "KNNInfluence", "GMMInfluence", "influence_for"]
