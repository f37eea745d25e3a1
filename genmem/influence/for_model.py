"""The influence object of a fitted density model: closed forms for the KDE and GMM, else the model's own hook."""
from sklearn.mixture import GaussianMixture

from ..errors import GenmemError
from ..models import GMM, KDE, VAE, DensityModel, SklearnDensity
from ..models.vae import vae_negative_elbo
from ..models.base import accepts_rng
from .closed_form import GMMInfluence, KDEInfluence
from .tracin import TracIn


def influence_for(model, X, *, rng=0, device=None):
    """An object with ``self_influence()`` and ``influence(Z, k=None)`` for ``model`` trained on ``X``.

    Parameters
    ----------
    model : DensityModel
        :class:`~genmem.models.KDE`: the exact closed form
        (:class:`KDEInfluence`). :class:`~genmem.models.GMM` or a
        :class:`~genmem.models.SklearnDensity` of a ``GaussianMixture``: the
        one-step approximation (:class:`GMMInfluence`), after fitting the
        model on ``X`` when it is not fitted. :class:`~genmem.models.VAE`:
        :class:`TracIn` (ℓ = −ELBO, one ε draw per row) over the checkpoints
        its :meth:`~genmem.models.VAE.fit` kept (``fit(X, checkpoints=C)``).
        Any other model: its opt-in hook
        :meth:`~genmem.models.DensityModel.influence_estimator` ``(X)``, after
        fitting it on ``X`` when it is not fitted.
    X : array [N, D]
        The training data.
    rng : int, default=0
        Seed of the fit, when the model is fitted here.
    device : str, optional
        Device of the closed forms (default: the model's).

    Raises
    ------
    GenmemError
        For a model that offers no influence (it says why and how to add it).
    """
    if not isinstance(model, DensityModel):
        raise GenmemError(f"influence_for needs a genmem DensityModel; got {type(model).__name__}")
    if isinstance(model, KDE):
        return KDEInfluence(model, X, device=device)
    if not model.__sklearn_is_fitted__():
        model = model.fit(X, rng=rng) if accepts_rng(model.fit) else model.fit(X)
    if isinstance(model, GMM):
        return GMMInfluence(model, X, device=device or model.device)
    if isinstance(model, VAE):
        if not model.checkpoints_:
            raise GenmemError("the VAE kept no checkpoints, which TracIn needs; fit it with "
                              "vae.fit(X, checkpoints=C) (or VAE(checkpoints=C))")
        return TracIn(vae_negative_elbo(model), model.checkpoints_, X, noise_shape=(1, int(model.latent_dim)),
                      seed=rng, device=device or model.device)
    if isinstance(model, SklearnDensity) and type(model.estimator_) is GaussianMixture:
        return GMMInfluence(model.estimator_, X, device=device or "cpu")
    return model.influence_estimator(X)
