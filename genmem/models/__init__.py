"""Explicit-density models: Gaussian KDE, Gaussian mixture, Pyro VAE, RealNVP flow, any scikit-learn density estimator."""
from ..errors import GenmemError
from .base import DensityModel
from .flow import Flow
from .gmm import GMM
from .kde import KDE, kde_loo_memorization
from .sklearn_density import SklearnDensity
from .vae import VAE

MODELS = {cls.name: cls for cls in (KDE, GMM, VAE, Flow)}


def make_model(name, **params):
    """A new model from its registry name (``"kde"``, ``"gmm"``, ``"vae"``, ``"flow"``) and constructor arguments."""
    if name not in MODELS:
        raise GenmemError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](**params)


__all__ = ["DensityModel", "Flow", "GMM", "KDE", "SklearnDensity", "VAE", "kde_loo_memorization", "MODELS", "make_model"]
