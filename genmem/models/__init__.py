"""Explicit-density models: Gaussian KDE, Gaussian mixture, Pyro VAE, and any scikit-learn density estimator."""
from .base import DensityModel
from .gmm import GMM
from .kde import KDE, kde_loo_memorization
from .sklearn_density import SklearnDensity
from .vae import VAE

MODELS = {cls.name: cls for cls in (KDE, GMM, VAE)}


def make_model(name, **params):
    """A new model from its registry name (``"kde"``, ``"gmm"``, ``"vae"``) and constructor arguments."""
    from ..errors import GenmemError

    if name not in MODELS:
        raise GenmemError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](**params)


__all__ = ["DensityModel", "GMM", "KDE", "SklearnDensity", "VAE", "kde_loo_memorization", "MODELS", "make_model"]
