"""The protocol every explicit-density model in genmem follows.

The scikit-learn estimator protocol (:class:`sklearn.base.BaseEstimator`,
:class:`sklearn.base.DensityMixin`): the constructor stores its arguments
and nothing else; ``get_params(deep=True)``/``set_params`` work, so
``sklearn.base.clone``, ``Pipeline`` and ``GridSearchCV`` do;
``fit(X, y=None, *, rng=None)`` returns ``self`` and sets fitted attributes
that end in ``_`` (a model is *fitted* once it has one);
``log_prob(X)`` (alias ``score_samples``) returns one log-density in nats per
example and ``score(X)`` their mean. Nothing private is needed to write your
own model: subclass :class:`DensityModel` and implement ``fit`` and
``log_prob`` (README, "Your own model").

On top of that, :meth:`DensityModel.fit_units` is the hook the K-fold runner
calls: it fits one fresh model per *unit* (a training subset given as a
boolean mask over the full data) and returns the log-density of **every**
example under every unit's model. The default fits the units one after
another; models that can train many units together (GMM, VAE, KDE, Flow)
override it and must give the same numbers as the one-by-one path.
"""
import abc
import inspect
from typing import NamedTuple

import numpy as np
import sklearn.base
import sklearn.exceptions
import torch

from ..errors import GenmemError
from ..validation import check_data, invalid

#: Model parameters that change how, not what, is computed: a K-fold run that
#: differs only in these is the same run (it resumes the same file), and a
#: checkpoint written under other values belongs to the same model.
RUNTIME_PARAMS = ("device", "chunk_size", "eval_chunk", "units_per_batch", "batch_units", "tf32", "cuda_graph",
                  "compile")


class Checkpoint(NamedTuple):
    """One saved state of a model trained by gradient steps: parameters and the learning rate that followed.

    What :class:`genmem.influence.TracIn` takes (a plain ``(params, lr[, label])``
    tuple works as well).

    Attributes
    ----------
    params : dict of str to Tensor
        The differentiable parameters (e.g. ``dict(module.named_parameters())``), not buffers.
    lr : float
        η_c, positive.
    label : str
        A name for messages and result files (e.g. ``"epoch 10"``).
    """

    params: dict
    lr: float
    label: str = ""


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


class NotFittedError(GenmemError, sklearn.exceptions.NotFittedError):
    """A model was used before ``fit`` (also scikit-learn's ``NotFittedError``)."""


class UnitError(GenmemError):
    """A K-fold unit failed; ``completed`` holds the outputs of the units fitted before it.

    Attributes
    ----------
    completed : dict of str to ndarray
        ``"loglik"`` [u, N] (and any further per-unit arrays) of the first
        ``u`` units of the batch, which the runner keeps.
    """

    def __init__(self, message, completed):
        super().__init__(message)
        self.completed = completed


def unit_label(unit_keys, u):
    """How messages name unit ``u``: ``"unit (repeat r, fold k)"`` from the runner's keys, else ``"unit u"``."""
    if unit_keys is None:
        return f"unit {u}"
    r, k = unit_keys[u]
    return f"unit (repeat {int(r)}, fold {int(k)})"


def check_units(X, train_masks, seeds):
    """The arguments of :meth:`DensityModel.fit_units` checked against the data ``X`` [N, D].

    Returns
    -------
    masks : bool ndarray [U, N]
        ``train_masks``, which must be a boolean array with U >= 1 rows of N entries.
    seeds : list of int, length U
    """
    masks = np.asarray(train_masks)
    if masks.dtype != bool or masks.ndim != 2 or masks.shape[1] != len(X) or not len(masks):
        raise GenmemError(f"train_masks must be a boolean array [units, {len(X)}]; "
                          f"got dtype {masks.dtype} and shape {masks.shape}")
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(masks):
        raise GenmemError(f"got {len(seeds)} seeds for {len(masks)} units; pass one seed per unit")
    return masks, seeds


def check_finite_loss(loss, labels, epoch, lr, what="loss"):
    """Raise :class:`GenmemError` naming the first unit whose epoch loss (float array [U]) is not finite.

    For trainers of many units at once: ``labels`` names the units, ``epoch``
    and ``lr`` go into the message, ``what`` names the loss.
    """
    bad = ~np.isfinite(loss)
    if bad.any():
        u = int(np.flatnonzero(bad)[0])
        raise GenmemError(
            f"training diverged: non-finite {what} for {labels[u]} at epoch {epoch} ({int(bad.sum())} of "
            f"{len(loss)} units in this batch); lower lr (now {lr}), use dtype='float64' or check the data for "
            "constant or extreme features; units finished before this batch are kept"
        )


def accepts_rng(fit):
    """True when the bound method ``fit`` takes an ``rng`` keyword (or ``**kwargs``)."""
    try:
        params = inspect.signature(fit).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return True
    return any(p.name == "rng" or p.kind == inspect.Parameter.VAR_KEYWORD for p in params)


class DensityModel(sklearn.base.DensityMixin, sklearn.base.BaseEstimator, abc.ABC):
    """Base class of genmem's explicit-density models, and of your own.

    Subclasses implement an ``__init__`` that only stores its keyword
    arguments under the same names, ``fit(X, y=None, *, rng=None)`` (sets
    attributes ending in ``_``, returns ``self``) and ``log_prob(X)``. They
    may set ``name``, the name results files and reports use (default: the
    name of the nearest base class that sets one, else the class name); the
    built-in models use their registry names.
    """

    name = None

    #: Raised when the same parameters and seeds give other numbers than before (e.g. a new
    #: initialisation); a K-fold run records it (when not 0), so a run of an older revision has
    #: another identity and is never resumed with units of the new one.
    revision = 0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name is None:
            cls.name = cls.__name__

    # -- parameters -------------------------------------------------------
    @classmethod
    def _param_names(cls):
        """The constructor's parameter names (scikit-learn's ``_get_param_names``)."""
        return cls._get_param_names()

    def set_params(self, **params):
        """Set constructor arguments (``name__sub`` for nested estimators); returns ``self``."""
        valid = self._param_names()
        for key in params:
            if key.partition("__")[0] not in valid:
                raise GenmemError(
                    f"{type(self).__name__} has no parameter {key!r}; valid parameters: {', '.join(valid)}"
                )
        return super().set_params(**params)

    def parameter_error(self, name, allowed):
        """The error for a bad constructor argument: names the parameter, the class, what is allowed and what was given."""
        return invalid(name, allowed, getattr(self, name), type(self).__name__)

    def clone(self, **overrides):
        """A new, unfitted model with the same parameters (``sklearn.base.clone``) and ``overrides``."""
        return sklearn.base.clone(self).set_params(**overrides)

    def resolve(self, X):
        """Fix data-dependent hyperparameters on the full data ``X``.

        The K-fold runner calls this once, before any unit is fitted, so that
        every unit uses the same hyperparameters (e.g. the KDE bandwidth) and
        the result file records the values actually used. Returns a new,
        unfitted model whose ``get_params()`` holds only concrete values.
        """
        return self.clone()

    # -- fitted state -----------------------------------------------------
    def __sklearn_is_fitted__(self):
        return any(key.endswith("_") and not key.startswith("__") for key in vars(self))

    def _check_fitted(self):
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call 'fit' with training data first"
            )

    @abc.abstractmethod
    def fit(self, X, y=None, *, rng=None):
        """Fit the model to ``X`` [N, D] (``y`` is ignored); returns ``self``."""

    @abc.abstractmethod
    def log_prob(self, X):
        """Log-density in nats of each row of ``X`` [N, D]; returns a float64 array [N]."""

    def score_samples(self, X):
        """Alias of :meth:`log_prob` (scikit-learn's name)."""
        return self.log_prob(X)

    def influence_estimator(self, X):
        """Opt-in hook for influence (``genmem influence``, :func:`genmem.influence.influence_for`).

        Override it to return an object with ``self_influence()`` (float
        array [N]: the influence of each training row on its own loss) and
        ``influence(Z, k=None)`` for this fitted model and its training data
        ``X`` — e.g. a ``genmem.influence.TracIn(loss, checkpoints, train=X)``
        over the model's per-example loss. The default says that there is none.
        """
        raise GenmemError(
            f"{type(self).__name__} offers no influence estimate: define {type(self).__name__}.influence_estimator(X) "
            "returning an object with self_influence() and influence(Z, k=None), e.g. a genmem.influence.TracIn "
            "(README: 'Your own density model')"
        )

    def score(self, X, y=None):
        """Mean log-density in nats of the rows of ``X`` (``y`` is ignored): what ``GridSearchCV`` maximises."""
        return float(np.mean(self.score_samples(X)))

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
            The runner's name for each unit (for messages and saved artifacts).
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

        Raises
        ------
        UnitError
            When a unit's ``fit`` or ``log_prob`` fails or returns anything but
            N finite log-densities; it names the unit and carries the units
            completed before it.
        """
        X = check_data(X)
        out = np.empty((len(train_masks), X.shape[0]))
        for u, (mask, seed) in enumerate(zip(train_masks, seeds)):
            label = unit_label(unit_keys, u)
            try:
                model = self.clone()
                model = model.fit(X[mask], rng=int(seed)) if accepts_rng(model.fit) else model.fit(X[mask])
                out[u] = self._checked_log_prob(model, X, label)
            except Exception as exc:
                message = str(exc) if isinstance(exc, UnitError) else (
                    f"{label} failed: {type(self).__name__} raised {type(exc).__name__}: "
                    + (str(exc).splitlines() or [""])[0] + "; completed units are kept")
                raise UnitError(message, {"loglik": out[:u]}) from exc
            if progress is not None:
                progress(1)
        return {"loglik": out}

    def _checked_log_prob(self, model, X, label):
        """``model.log_prob(X)`` as float64 [N]; a :class:`UnitError` naming ``label`` for a wrong shape or NaN."""
        name = type(self).__name__
        values = model.log_prob(X)
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        values = np.asarray(values)
        if values.shape != (X.shape[0],) or values.dtype.kind not in "fiu":
            raise UnitError(
                f"{label}: {name}.log_prob returned {values.dtype} of shape {values.shape}; it must return one "
                f"float per row, shape ({X.shape[0]},); completed units are kept", {})
        bad = ~np.isfinite(values)
        if bad.any():
            raise UnitError(
                f"{label}: {name}.log_prob returned NaN or inf for {int(bad.sum())} of {len(values)} rows (first: "
                f"row {int(np.flatnonzero(bad)[0])}); completed units are kept", {})
        return values.astype(np.float64)
