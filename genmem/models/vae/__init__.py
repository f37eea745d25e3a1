"""The Pyro VAE: K-fold units trained together, importance-sampled log p per example.

One unit is the VAE of :mod:`genmem.models.vae.nets`: encoder/decoder
``nn.Module`` s, a Pyro model/guide pair (:class:`~genmem.models.vae.nets.VAEModel`,
:class:`~genmem.models.vae.nets.VAEGuide`) and the objective of Pyro's
``Trace_ELBO`` (single-sample, ``log p(x|z) + log p(z) − log q(z|x)``).
:meth:`VAE.fit_units` trains U units at once (:mod:`~genmem.models.vae.train`):
their parameters are the rows of one buffer (:mod:`~genmem.models.vae.units`),
updated by one stacked Adam (:mod:`genmem.models.stacked_adam`); each unit
draws minibatches from its own training rows only and takes every random
number — initial weights, minibatch order, dynamic binarization, the
reparameterisation ε, the importance samples — from counter-based streams
keyed by its own seed (:mod:`genmem.philox`). A unit therefore gets the same
numbers whatever units it trains beside and on whichever device (up to float
rounding), so runs can resume, be distributed and be checked across devices.
Pyro's ``SVI`` cannot take per-unit random streams, so the loop is written
out; ``tests/test_vae.py`` shows that its loss and gradients equal
``pyro.infer.Trace_ELBO`` on the Pyro model/guide for the same ε.

Rooms: :mod:`.estimator` (the :class:`VAE` estimator), :mod:`.presets`
(settings of published experiments), :mod:`.data` (what data each
likelihood takes), :mod:`.nets` (networks, likelihoods, Pyro model/guide of
one unit), :mod:`.units` (U units in one parameter buffer, batched forward
passes), :mod:`.train` (epoch plan, training step, CUDA-graph capture),
:mod:`.memory` (device memory of a batch of units), :mod:`.evaluate`
(importance sampling), :mod:`.checkpoints` (checkpoint files),
:mod:`.tracin_loss` (the per-example loss and the checkpoints TracIn takes).
"""
from .checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_VERSION
from .data import EVAL_BINARIZE_THRESHOLD
from .estimator import VAE
from .presets import PRESETS
from .tracin_loss import load_vae_checkpoint, vae_negative_elbo

__all__ = ["VAE", "PRESETS", "EVAL_BINARIZE_THRESHOLD", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION",
           "load_vae_checkpoint", "vae_negative_elbo"]
