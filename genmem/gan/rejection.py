"""Memorization rejection (Bai, Hsieh, Kan & Lin 2022) as an adapter for any PyTorch GAN loop.

During a generator update, generated samples whose nearest-neighbour distance
to the training set, ``d(x) = min_{x' ∈ train} 1 − cos(f(x), f(x'))``, is below
a threshold τ are *rejected*: the generator is not pushed further toward
near-copies of training examples. The paper's objective replaces the latent
prior ``q(z)`` of the generator term by ``q'(z) ∝ q(z) · 1[d(G(z)) ≥ τ]``.
Rejection happens in training only; samples drawn at test time come from the
unrejected generator ``G(q(z))``.

Two variants:

``resample``
    Rejection sampling (the paper's Algorithm 1): rejected samples are replaced
    by fresh draws from a ``sampler`` until the batch is full again, with at
    most ``max_tries`` batches examined per step. **Fallback**: when the batch
    is still not full after ``max_tries`` batches, it is filled with the
    rejected candidates farthest from the training set (largest ``d``) — the
    same as lowering τ, for that step only, to the distance that fills the
    batch. The number of such samples is recorded per step (``n_fallback``).
``mask``
    Rejected samples are dropped from the generator loss (the returned batch
    is the kept rows, so a mean loss over it is the loss over kept samples).
    Only when *every* sample is rejected are new batches drawn (up to
    ``max_tries`` batches in all); if all of those are rejected too, the one
    farthest candidate is returned.

The distance is computed under ``torch.no_grad()`` on a detached copy of the
batch; the returned samples are rows of the generator's own output tensors, so
the gradient reaches the generator through the kept rows only and never
through the feature map.
"""
import logging
import math
import warnings

import numpy as np
import torch

from ..errors import GenmemError
from ..neighbours.bank import NeighbourBank
from ..neighbours.embedders import PCAEmbedder, PixelEmbedder, PrecomputedFeatures, flatten
from ..validation import check_int, check_param, options

logger = logging.getLogger(__name__)

MODES = ("resample", "mask")
#: Largest cosine distance: 1 − cos lies in [0, 2].
MAX_COSINE_DISTANCE = 2.0
#: Distance given to a sample whose feature vector is zero (no direction): cosine similarity 0 to everything.
ZERO_FEATURE_DISTANCE = 1.0
#: Batches examined per step at most, by default (the given batch included).
DEFAULT_MAX_TRIES = 10
HISTORY_KEYS = ("rejection_rate", "n_examined", "n_rejected", "n_fallback", "tries")
#: A warning is given when more than this share of the candidates is rejected ...
HIGH_REJECTION_RATE = 0.9
#: ... in each of this many consecutive generator steps.
HIGH_REJECTION_STEPS = 20
#: Generated values may leave the bank's training range by this share of its width before a warning.
RANGE_TOLERANCE = 0.1


class RejectionWarning(UserWarning):
    """Memorization rejection that is probably misconfigured (τ too large, or samples on another scale)."""


def resolve_tau(tau, bank):
    """The rejection threshold τ as a float in [0, 2).

    Parameters
    ----------
    tau : "auto", str or float
        ``"auto"``: the bank's mean leave-one-out NN distance
        (:meth:`~genmem.neighbours.NeighbourBank.mean_nn_distance`, the
        paper's §5.7 guideline); ``"1.5x"``: that many times it; a number
        (or numeric string): the threshold itself.
    bank : NeighbourBank

    Returns
    -------
    float

    Raises
    ------
    GenmemError
        Not a number, "auto" or "<factor>x"; negative; not below 2.
    """
    if isinstance(tau, bool) or tau is None:
        raise GenmemError(f"tau must be 'auto', '<factor>x' or a number in [0, 2); got {tau!r}")
    if isinstance(tau, str):
        spec = tau.strip().lower()
        if spec == "auto":
            value = bank.mean_nn_distance()
        elif spec.endswith("x"):
            factor = _number(spec[:-1], tau)
            if factor < 0:
                raise GenmemError(f"tau {tau!r}: the factor of the mean NN distance must be >= 0")
            value = factor * bank.mean_nn_distance()
        else:
            value = _number(spec, tau)
    else:
        value = _number(tau, tau)
    if not 0.0 <= value < MAX_COSINE_DISTANCE:
        raise GenmemError(f"tau = {value:.6g} (from {tau!r}) is outside [0, 2): cosine distances 1 − cos lie in "
                          "[0, 2], so give a threshold 0 <= tau < 2 (or 'auto')")
    return value


def _number(value, original):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise GenmemError(f"tau must be 'auto', '<factor>x' (e.g. '1.5x') or a number in [0, 2); "
                          f"got {original!r}") from None
    if not math.isfinite(value):
        raise GenmemError(f"tau must be finite; got {original!r}")
    return value


def bank_input_size(bank):
    """Number of input values per example the bank's feature map takes, or None when it cannot tell."""
    embedder = bank.embedder
    if isinstance(embedder, (PixelEmbedder, PrecomputedFeatures)):
        return bank.dim
    if isinstance(embedder, PCAEmbedder):
        return int(embedder.components.shape[1])
    return None


def bank_features(bank, samples):
    """Features of ``samples`` in the bank's space, L2-normalised, without gradients.

    Parameters
    ----------
    bank : NeighbourBank
        A cosine bank with a feature map.
    samples : torch.Tensor or array [B, ...]

    Returns
    -------
    features : float64 ndarray [B, d]
        Unit rows; rows whose feature vector is zero stay zero.
    zero : bool ndarray [B]
        Rows whose feature vector is zero (cosine distance undefined).
    """
    with torch.no_grad():
        if isinstance(samples, torch.Tensor):
            samples = samples.detach()
        F = flatten(bank.embedder.embed(samples), "embedded generated samples")
    if F.shape[1] != bank.dim:
        raise GenmemError(f"the feature map gives {F.shape[1]} dimensions but the bank's features have {bank.dim}; "
                          "build the bank with the same feature map as the generated samples")
    norms = np.linalg.norm(F, axis=1, keepdims=True)
    zero = norms[:, 0] == 0.0
    return np.divide(F, norms, out=np.zeros_like(F), where=~zero[:, None]), zero


class MemorizationRejection:
    """Rejects generated samples that are near-copies of training examples, for the generator update.

    Drop it into your own training loop::

        mr = MemorizationRejection(bank, tau="auto", mode="resample")
        fake = mr(G(z), sampler=lambda n: G(torch.randn(n, z_dim)))
        loss_g = g_loss(D(fake))

    Parameters
    ----------
    bank : NeighbourBank
        The training set embedded by a feature map ``f``, metric ``"cosine"``;
        its feature map must accept the generator's output (after
        ``preprocess``).
    tau : "auto", "<factor>x" or float, default "auto"
        Rejection threshold on ``d(x) = min 1 − cos(f(x), f(x'))``; samples
        with ``d < τ`` are rejected, those with ``d ≥ τ`` kept. ``"auto"`` is
        the bank's mean leave-one-out NN distance (paper §5.7); ``"0.5x"``
        half of it. Must resolve to ``0 <= τ < 2``.
    mode : {"resample", "mask"}, default "resample"
        See the module documentation.
    max_tries : int, default 10
        Batches examined per step at most, the given one included.
    apply_to_discriminator : bool, default False
        Whether :meth:`discriminator_batch` filters the discriminator's fake
        batch too (the paper found this hurts; by default it passes the batch
        through unchanged).
    sample_shape : tuple of int, optional
        Shape of one generated sample, e.g. ``(1, 28, 28)``; every batch is
        checked against it (default: the shape of the first batch), and its
        size against the input size of the bank's feature map where that is
        known (pixels, PCA, precomputed features).
    preprocess : callable, optional
        Maps a generated batch (detached) into the input space of the bank's
        feature map, e.g. ``lambda x: (x + 1) / 2`` for a tanh generator and a
        pixel bank built on images in [0, 1].

    Attributes
    ----------
    tau : float
        The resolved threshold.
    history : dict of str to list
        Per generator step: ``rejection_rate`` (rejected / examined
        candidates), ``n_examined``, ``n_rejected``, ``n_fallback`` (samples
        kept by the fallback), ``tries`` (batches examined).
    discriminator_history : dict of str to list
        The same for :meth:`discriminator_batch` calls that filtered.

    Warns
    -----
    RejectionWarning
        When more than :data:`HIGH_REJECTION_RATE` of the candidates are
        rejected in each of :data:`HIGH_REJECTION_STEPS` consecutive generator
        steps (τ is too large: the generator trains on the fallback's
        near-copies), and once when a generated batch (after ``preprocess``)
        leaves the value range of the bank's training examples by more than
        :data:`RANGE_TOLERANCE` of its width (e.g. a tanh generator against a
        bank of images in [0, 1] without ``preprocess``).

    Notes
    -----
    A sample whose feature vector is zero (e.g. an all-black image under the
    pixel map) has no direction; its distance is taken as 1 (cosine
    similarity 0 to every training example). In resample mode the backward
    pass runs through every candidate batch drawn in the step (rejected rows
    get zero gradient), so a step costs up to ``max_tries`` generator
    passes when most samples are rejected.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from genmem.gan import MemorizationRejection
    >>> from genmem.neighbours import NeighbourBank
    >>> bank = NeighbourBank("pixels", np.eye(4), device="cpu")
    >>> mr = MemorizationRejection(bank, tau=0.1, mode="mask")
    >>> fake = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.2]])  # a copy of training image 0, and another
    >>> mr(fake)
    tensor([[0.5000, 0.5000, 0.5000, 0.2000]])
    """

    def __init__(self, bank, tau="auto", *, mode="resample", max_tries=DEFAULT_MAX_TRIES,
                 apply_to_discriminator=False, sample_shape=None, preprocess=None):
        if not isinstance(bank, NeighbourBank):
            raise GenmemError(f"MemorizationRejection needs a genmem.neighbours.NeighbourBank; "
                              f"got {type(bank).__name__}")
        if bank.metric != "cosine":
            raise GenmemError(f"memorization rejection thresholds the cosine NN distance, but the bank uses metric "
                              f"{bank.metric!r}; build the bank with metric='cosine'")
        if bank.embedder is None:
            raise GenmemError("the bank's feature map could not be rebuilt from its file, so generated samples cannot "
                              "be embedded; pass embedder= to NeighbourBank.load")
        check_param(mode, options(*MODES), "mode", "MemorizationRejection")
        check_int(max_tries, "max_tries", owner="MemorizationRejection")
        if preprocess is not None and not callable(preprocess):
            raise GenmemError(f"preprocess must be a callable mapping a batch to the bank's input space; got "
                              f"{type(preprocess).__name__}")
        self.bank = bank
        self.tau = resolve_tau(tau, bank)
        self.mode = mode
        self.max_tries = int(max_tries)
        self.apply_to_discriminator = bool(apply_to_discriminator)
        self.preprocess = preprocess
        self.sample_shape = None
        if sample_shape is not None:
            self._set_shape(tuple(int(s) for s in sample_shape))
        self.history = {key: [] for key in HISTORY_KEYS}
        self.discriminator_history = {key: [] for key in HISTORY_KEYS}
        self._high_steps = 0  # consecutive generator steps above HIGH_REJECTION_RATE
        self._range_warned = False

    def _set_shape(self, shape):
        expected = bank_input_size(self.bank)
        if self.preprocess is None and expected is not None and math.prod(shape) != expected:
            raise GenmemError(
                f"generated samples of shape {shape} have {math.prod(shape)} values but the bank's feature map "
                f"({self.bank.embedder_description.get('name')}) takes {expected}; build the bank from training "
                "images shaped like the generator's output")
        self.sample_shape = shape

    def _check_batch(self, samples, what="the generated batch"):
        if not isinstance(samples, torch.Tensor):
            raise GenmemError(f"{what} must be a torch.Tensor [B, ...]; got {type(samples).__name__}")
        if samples.ndim < 2 or len(samples) == 0:
            raise GenmemError(f"{what} must be a non-empty tensor [B, ...]; got shape {tuple(samples.shape)}")
        shape = tuple(samples.shape[1:])
        if self.sample_shape is None:
            self._set_shape(shape)
        elif shape != self.sample_shape:
            raise GenmemError(f"{what} has samples of shape {shape} but this adapter's are {self.sample_shape}; "
                              "give batches of the generator's output shape")

    def nn_distance(self, samples):
        """``d(x)`` of every row of a generated batch: float64 ndarray [B] (computed without gradients)."""
        self._check_batch(samples)
        with torch.no_grad():
            x = samples.detach()
            if self.preprocess is not None:
                x = self.preprocess(x)
            self._check_range(x)
            try:
                F, zero = bank_features(self.bank, x)
            except GenmemError as exc:
                raise GenmemError(f"generated samples of shape {self.sample_shape} do not fit the neighbour bank "
                                  f"({self.bank.embedder_description.get('name')}, {self.bank.dim} dims): "
                                  f"{exc}") from None
        d = np.full(len(F), ZERO_FEATURE_DISTANCE)
        if (~zero).any():
            d[~zero] = self.bank.query_features(F[~zero], 1)[0][:, 0]
        return d

    def _check_range(self, x):
        """Warn once when ``x`` (a batch in the bank's input space) leaves the bank's training value range."""
        known = getattr(self.bank, "input_range", None)
        if self._range_warned or known is None or not isinstance(x, torch.Tensor):
            return
        lo, hi = known
        slack = RANGE_TOLERANCE * max(hi - lo, 1e-12)
        x_lo, x_hi = float(x.min()), float(x.max())
        if x_lo < lo - slack or x_hi > hi + slack:
            self._range_warned = True
            warnings.warn(
                f"generated samples span [{x_lo:.4g}, {x_hi:.4g}]{' after preprocess' if self.preprocess else ''} "
                f"but the bank was built on values in [{lo:.4g}, {hi:.4g}]: their distances compare different "
                "scales; map the samples to the bank's range with preprocess= (e.g. lambda x: (x + 1) / 2 for a "
                "tanh generator and a bank of images in [0, 1])",
                RejectionWarning, stacklevel=4,
            )

    def keep_mask(self, samples):
        """Bool tensor [B] on the batch's device: True where ``d(x) ≥ τ`` (kept)."""
        return torch.as_tensor(self.nn_distance(samples) >= self.tau, device=samples.device)

    def __call__(self, samples, sampler=None):
        """The batch to use for the generator update (the same as :meth:`generator_batch`)."""
        return self.generator_batch(samples, sampler)

    def generator_batch(self, samples, sampler=None):
        """The samples to use for the generator update.

        Parameters
        ----------
        samples : torch.Tensor [B, ...]
            A generated batch, with its graph to the generator.
        sampler : callable, optional
            ``sampler(n)`` returns ``n`` fresh generated samples (with their
            graph); required in resample mode, used in mask mode only when
            every sample is rejected.

        Returns
        -------
        torch.Tensor
            Resample mode: ``B`` rows, all with ``d ≥ τ`` unless the fallback
            filled some. Mask mode: the kept rows of ``samples`` (at least one).
            Rows are rows of the given tensors, so gradients flow to the
            generator through them only.
        """
        return self._select(samples, sampler, self.history)

    def discriminator_batch(self, samples, sampler=None):
        """The fake batch for the discriminator update: ``samples`` unchanged unless
        ``apply_to_discriminator`` (then filtered like :meth:`generator_batch`)."""
        if not self.apply_to_discriminator:
            return samples
        return self._select(samples, sampler, self.discriminator_history)

    def _select(self, samples, sampler, history):
        if self.mode == "resample" and sampler is None:
            raise GenmemError("resample mode draws replacements for rejected samples: pass sampler, a function "
                              "n -> n generated samples (e.g. lambda n: G(torch.randn(n, z_dim)))")
        batch_size = len(samples)
        target = batch_size if self.mode == "resample" else 1
        batches, distances = [samples], [self.nn_distance(samples)]
        accepted = [np.flatnonzero(distances[0] >= self.tau)]
        n_accepted = len(accepted[0])
        while n_accepted < target and len(batches) < self.max_tries and sampler is not None:
            new = sampler(batch_size)
            self._check_batch(new, "a batch from sampler")
            d = self.nn_distance(new)
            keep = np.flatnonzero(d >= self.tau)
            if self.mode == "resample":
                keep = keep[:batch_size - n_accepted]
            batches.append(new)
            distances.append(d)
            accepted.append(keep)
            n_accepted += len(keep)
        n_fallback = max(target - n_accepted, 0)
        if n_fallback:
            self._fallback(distances, accepted, n_fallback)
        out = torch.cat([b[torch.as_tensor(idx, device=b.device)] for b, idx in zip(batches, accepted) if len(idx)])
        n_examined = sum(len(d) for d in distances)
        n_rejected = int(sum((d < self.tau).sum() for d in distances))
        for key, value in zip(HISTORY_KEYS, (n_rejected / n_examined, n_examined, n_rejected, n_fallback,
                                             len(batches))):
            history[key].append(value)
        if n_fallback:
            logger.debug("memorization rejection: %d of %d samples filled by the farthest rejected candidates "
                         "after %d batches (tau %.4g)", n_fallback, target, len(batches), self.tau)
        if history is self.history:
            self._watch_rate(n_rejected / n_examined)
        return out

    def _watch_rate(self, rate):
        """Count generator steps in a row above :data:`HIGH_REJECTION_RATE`; warn when they reach the window."""
        self._high_steps = self._high_steps + 1 if rate > HIGH_REJECTION_RATE else 0
        if self._high_steps == HIGH_REJECTION_STEPS:
            fallback = int(np.sum(self.history["n_fallback"]))
            warnings.warn(
                f"memorization rejection rejected more than {HIGH_REJECTION_RATE:.0%} of the candidates in each of "
                f"the last {HIGH_REJECTION_STEPS} generator steps (tau = {self.tau:.4g}; {fallback} samples filled "
                "by the fallback so far): the generator trains mostly on the rejected near-copies; use a smaller "
                "tau (e.g. tau='0.5x') or check that the samples and the bank share a feature space and value range",
                RejectionWarning, stacklevel=4,
            )

    @staticmethod
    def _fallback(distances, accepted, n):
        """Add the ``n`` unused candidates farthest from the training set to ``accepted`` (in place).

        Ties go to the earlier batch and row.
        """
        d = np.concatenate(distances)
        offsets = np.cumsum([0] + [len(x) for x in distances])
        used = np.zeros(len(d), dtype=bool)
        for start, idx in zip(offsets, accepted):
            used[start + idx] = True
        order = np.flatnonzero(~used)[np.argsort(-d[~used], kind="stable")[:n]]
        batch = np.searchsorted(offsets, order, side="right") - 1
        for b in range(len(accepted)):
            accepted[b] = np.concatenate([accepted[b], order[batch == b] - offsets[b]])

    @property
    def rejection_rate(self):
        """Per-step rejection rate of the generator updates so far: float64 ndarray [steps]."""
        return np.asarray(self.history["rejection_rate"], dtype=np.float64)

    def reset_history(self):
        """Forget the recorded steps."""
        for history in (self.history, self.discriminator_history):
            for values in history.values():
                values.clear()
        self._high_steps = 0
