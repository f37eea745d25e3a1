"""The protocol every explicit-density model in genmem follows.

Scikit-learn style: the constructor stores its arguments and nothing else;
``fit(X, *, rng)`` returns ``self`` and sets fitted attributes that end in ``_``;
``log_prob(X)`` (alias ``score_samples``) returns one log-density in nats per
example. On top of that, :meth:`DensityModel.fit_units` is the hook the K-fold
runner calls: it fits one fresh model per *unit* (a training subset given as a
boolean mask over the full data) and returns the log-density of **every**
example under every unit's model. The default fits the units one after
another; models that can train many units together (GMM, VAE, KDE) override it
and must give the same numbers as the one-by-one path.
"""
import abc
import inspect

import numpy as np
import torch

from ..errors import GenmemError
from ..validation import check_data


def torch_generator(seed, device="cpu"):
    """A :class:`torch.Generator` on ``device`` seeded with the integer ``seed``.

    ``seed=None`` draws a fresh seed from the operating system.
    """
    gen = torch.Generator(device=device)
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> 1)
    gen.manual_seed(int(seed))
    return gen


def as_seed(rng):
    """Turn ``rng`` (None, int, SeedSequence or numpy Generator) into an int seed or None."""
    if rng is None or isinstance(rng, (int, np.integer)):
        return None if rng is None else int(rng)
    if isinstance(rng, np.random.SeedSequence):
        return int(rng.generate_state(1, dtype=np.uint64)[0] >> 1)
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, 2**63 - 1))
    raise GenmemError(f"rng must be None, an int, a SeedSequence or a numpy Generator; got {rng!r}")


class DensityModel(abc.ABC):
    """Base class of genmem's explicit-density models.

    Subclasses define ``name`` (the registry name used on the command line),
    an ``__init__`` that only stores its keyword arguments, ``fit`` and
    ``log_prob``.
    """

    name = None

    # -- parameters -------------------------------------------------------
    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind in kinds]

    def get_params(self):
        """The constructor arguments, as a dict."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set constructor arguments; returns ``self``."""
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise GenmemError(
                    f"{type(self).__name__} has no parameter {key!r}; valid parameters: {', '.join(valid)}"
                )
            setattr(self, key, value)
        return self

    def clone(self, **overrides):
        """A new, unfitted model with the same parameters (and ``overrides``)."""
        return type(self)(**{**self.get_params(), **overrides})

    def resolve(self, X):
        """Fix data-dependent hyperparameters on the full data ``X``.

        The K-fold runner calls this once, before any unit is fitted, so that
        every unit uses the same hyperparameters (e.g. the KDE bandwidth) and
        the result file records the values actually used. Returns a new,
        unfitted model whose ``get_params()`` holds only concrete values.
        """
        return self.clone()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- fitted state -----------------------------------------------------
    def _check_fitted(self):
        if not getattr(self, "_fitted", False):
            raise GenmemError(
                f"This {type(self).__name__} instance is not fitted yet; call 'fit' with training data first"
            )

    @abc.abstractmethod
    def fit(self, X, *, rng=None):
        """Fit the model to ``X`` [N, D]; returns ``self``."""

    @abc.abstractmethod
    def log_prob(self, X):
        """Log-density in nats of each row of ``X`` [N, D]; returns a float64 array [N]."""

    def score_samples(self, X):
        """Alias of :meth:`log_prob` (scikit-learn's name)."""
        return self.log_prob(X)

    # -- the K-fold hook --------------------------------------------------
    def max_units_per_batch(self, X):
        """How many units :meth:`fit_units` should get at once for data ``X`` [N, D], or None for no preference.

        The K-fold runner asks this when ``units_per_batch="auto"``; models
        that train units together on a GPU answer from the free memory.
        """
        return None

    def fit_units(self, X, train_masks, seeds, *, unit_keys=None, artifact_dir=None, progress=None):
        """Fit one fresh model per unit and score every example under each.

        Parameters
        ----------
        X : array [N, D]
            The full data of the run.
        train_masks : bool array [U, N]
            Row ``u`` selects unit ``u``'s training examples.
        seeds : sequence of int, length U
            Unit ``u``'s model is seeded with ``seeds[u]`` and nothing else, so
            its numbers do not depend on the other units it is fitted beside.
        unit_keys : list of (repeat, fold), optional
            The runner's name for each unit (for naming saved artifacts).
        artifact_dir : path-like, optional
            A folder where a model may save per-unit files (e.g. the VAE's
            checkpoints); ``None`` means save nothing.
        progress : callable, optional
            Called with the number of units just finished.

        Returns
        -------
        dict of str to ndarray
            ``"loglik"``: float64 [U, N], log p of every example under every
            unit's model; models may add further per-unit arrays with a
            leading U dimension (the runner stores them as ``[R, K, ...]``).
        """
        X = check_data(X)
        out = np.empty((len(train_masks), X.shape[0]))
        for u, (mask, seed) in enumerate(zip(train_masks, seeds)):
            out[u] = self.clone().fit(X[mask], rng=int(seed)).log_prob(X)
            if progress is not None:
                progress(1)
        return {"loglik": out}
