"""Deprecated alias of :mod:`genmem.models.vae.nets` (the VAE's networks, likelihoods and Pyro model/guide)."""
import warnings

from .vae.nets import ARCHS, LIKELIHOODS, Decoder, Encoder, Likelihood, VAEGuide, VAEModel, VAENet

__all__ = ["ARCHS", "LIKELIHOODS", "Decoder", "Encoder", "Likelihood", "VAEGuide", "VAEModel", "VAENet"]

warnings.warn("genmem.models.vae_nets is now genmem.models.vae.nets", DeprecationWarning, stacklevel=2)
