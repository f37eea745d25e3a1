"""Influence of training examples: TracIn from checkpoints, and closed forms for KDE, k-NN and GMM.

All share one sign convention: ``IF(x, z) = ℓ(z; D∖x) − ℓ(z; D)`` with
``ℓ = −log p`` (or ``−ELBO``), positive for a proponent; the self-influence
``IF(x, x)`` is high for memorized, atypical examples.

One interface, captum-shaped: every influence object is built from a model
(or its checkpoints) and its training data, and offers ``self_influence()``
and ``influence(test, k=None)`` (the full matrix, or the ``k`` strongest
proponents and opponents per test point). :func:`influence_for` picks the
object for a fitted density model.

Rooms: :mod:`.tracin` (TracIn over any per-example loss), :mod:`.projection`
(its random projection), :mod:`.kfold_tracin` (TracIn of VAE checkpoint
files and K-fold runs), :mod:`.closed_form` (KDE, k-NN, GMM), :mod:`.gather`
(influence matrices and top-k), :mod:`.for_model` (the object for a model).
The VAE's loss and checkpoint reading live beside the VAE
(:mod:`genmem.models.vae.tracin_loss`); ``vae_negative_elbo``,
``load_vae_checkpoint`` and ``Checkpoint`` are offered here too.
"""
from ..models.base import Checkpoint
from ..models.vae import load_vae_checkpoint, vae_negative_elbo
from .closed_form import GMMInfluence, KDEInfluence, KNNInfluence
from .for_model import influence_for
from .gather import TopInfluence, gather_influence
from .kfold_tracin import KFoldTracIn, vae_tracin
from .tracin import TracIn, module_loss

__all__ = ["TracIn", "KFoldTracIn", "Checkpoint", "TopInfluence", "gather_influence", "module_loss", "vae_negative_elbo",
           "load_vae_checkpoint", "vae_tracin", "KDEInfluence", "KNNInfluence", "GMMInfluence", "influence_for"]
