"""The :class:`VAE` estimator: its parameters, fitting units together, scoring, building one from a checkpoint.

How the units train and are scored: see the package docstring (:mod:`genmem.models.vae`).
"""
import numpy as np
import torch

from ...device import DTYPES, matmul_precision, resolve_device
from ...errors import GenmemError
from ...philox import key_words
from ...validation import (any_of, boolean, check_data, check_int, check_param, check_params, int_tuple, integer,
                           none_or, options, real)
from ..base import DensityModel, as_seed, check_units, torch_generator
from .checkpoints import CheckpointRecorder, checkpoint_config, checkpoint_state, model_params, read_checkpoint
from .data import check_fits, resolve_likelihood, scored_rows
from .evaluate import evaluate, importance_eps, warn_collapsed
from .memory import oom_guard, training_bytes, units_that_fit
from .nets import ARCHS, LIKELIHOODS, Likelihood, VAEGuide, VAEModel, VAENet, check_conv_shape
from .train import Trainer
from .units import Units

#: Allowed parameter values; ``checkpoints`` and ``eval_every`` are checked against ``epochs`` in ``_validate``.
PARAMETER_CONSTRAINTS = {
    "latent_dim": integer(1), "epochs": integer(1), "batch_size": integer(1), "num_samples": integer(1),
    "eval_chunk": integer(1), "hidden": int_tuple(example="(512, 256)"), "arch": options(*ARCHS),
    "likelihood": options("auto", *LIKELIHOODS), "decoder_scale": any_of(options("learned"), real(0)),
    "logit_lambda": real(0, 0.5), "binarize": options(None, "dynamic"), "lr": real(0), "dtype": options(*DTYPES),
    "tf32": boolean(), "cuda_graph": boolean(), "compile": boolean(),
    "image_shape": none_or(int_tuple(lengths=(2, 3))),
}


class VAE(DensityModel):
    """Variational autoencoder (Pyro model/guide) with importance-sampled per-example log p.

    Parameters
    ----------
    latent_dim : int, default=8
        Size L of the latent z ~ N(0, I).
    hidden : tuple of int, default=(128, 64)
        Encoder widths (MLP) or channel counts of stride-2 convolutions
        (``arch="conv"``); the decoder mirrors them.
    arch : {"mlp", "conv"}, default="mlp"
        ``"conv"`` needs ``image_shape`` with H and W divisible by
        ``2 ** len(hidden)`` (e.g. 32×32×C).
    image_shape : tuple of int, optional
        ``(H, W)`` or ``(H, W, C)``; rows of X are images flattened in that
        (NumPy) order. Needed for ``arch="conv"`` only.
    likelihood : {"auto", "bernoulli", "logit-normal", "gaussian"}, default="auto"
        ``p(x | z)``. ``"bernoulli"`` for binary pixels; ``"logit-normal"`` for
        values in [0, 1] (e.g. dequantized grey levels): the reference's
        Gaussian in logit space with its Jacobian, a proper density (see
        :class:`~genmem.models.vae.nets.Likelihood`); ``"gaussian"`` for real
        values. ``"auto"`` picks ``"bernoulli"`` for binary X or
        ``binarize="dynamic"``, ``"logit-normal"`` for X in [0, 1] and
        ``"gaussian"`` otherwise (resolved by :meth:`resolve`/:meth:`fit`).
    decoder_scale : "learned" or float, default="learned"
        Standard deviation of the Gaussian likelihoods: one learned value per
        feature (floored at e⁻⁷), or a fixed float.
    logit_lambda : float, default=0.05
        The squeeze λ of ``"logit-normal"`` (the reference's value).
    binarize : {None, "dynamic"}, default=None
        ``"dynamic"``: X holds grey values in [0, 1]; each minibatch is
        binarized afresh as Bernoulli(X) (the reference's dynamic
        binarization); log p is computed for the fixed binarization
        ``X > 0.5`` (:data:`~genmem.models.vae.data.EVAL_BINARIZE_THRESHOLD`).
    epochs : int, default=80
    batch_size : int, default=64
    lr : float, default=2e-3
        Adam learning rate (betas 0.9, 0.999, eps 1e-8), constant.
    num_samples : int, default=256
        Importance samples S per example in :meth:`log_prob`.
    eval_chunk : int, default=2048
        Examples × samples evaluated at once per unit; memory of the
        evaluation is about ``U · eval_chunk · max(D, widths)`` numbers.
        The default keeps a CPU's caches busy; on a GPU, 65536 or more pays.
    checkpoints : int, default=0
        Number of training checkpoints saved per unit by :meth:`fit_units`
        (see :meth:`checkpoint_epochs`); 0 saves none.
    eval_every : int, optional
        :meth:`fit_units` also evaluates log p every this many epochs during
        training (see :meth:`eval_epochs`).
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    dtype : {"float32", "float64"}, default="float32"
    tf32 : bool, default=True
        On CUDA, float32 matrix products use TF32 tensor cores (about 10
        significant bits in the products; sums stay float32). No effect on
        the CPU or in float64.
    cuda_graph : bool, default=True
        On CUDA, capture a block of training steps once as a CUDA graph and
        replay it (same numbers, far fewer kernel launches).
    compile : bool, default=False
        ``torch.compile`` each block's random draws (Philox in integer
        operations) into fused kernels; worth it on CUDA, where the unfused
        draws are bound by memory traffic.

    Attributes
    ----------
    net_ : VAENet
        The trained encoder/decoder (after :meth:`fit` or :meth:`from_checkpoint`).
    seed_ : int
        The seed the model was trained with; it also fixes the importance samples.
    n_features_in_ : int
    likelihood_ : str
        The resolved likelihood.
    train_loss_ : ndarray [epochs]
        Mean negative ELBO per training example in each epoch (after :meth:`fit`).
    checkpoints_ : list of Checkpoint
        The ``(params, lr, label)`` checkpoints :meth:`fit` kept (its
        ``checkpoints`` argument or parameter), for TracIn; empty when none
        were asked for.

    Notes
    -----
    The importance-sampling estimate of unit u for example x is
    ``logsumexp_s[log p(x|z_s) + log p(z_s) − log q(z_s|x)] − log S`` with
    ``z_s = loc(x) + scale(x)·ε_s``; the S draws ``ε_s`` come from the unit's
    evaluation stream and are shared by all examples, so an example's score
    does not depend on which other rows are scored with it or on chunking.

    Examples
    --------
    >>> import numpy as np
    >>> from genmem.models import VAE
    >>> X = (np.random.default_rng(0).random((64, 16)) > 0.5).astype(float)
    >>> vae = VAE(latent_dim=2, hidden=(16,), epochs=2, num_samples=8).fit(X, rng=0)
    >>> vae.likelihood_, vae.log_prob(X).shape
    ('bernoulli', (64,))
    """

    name = "vae"
    #: 1: counter-based random numbers and the stacked trainer (0: genmem 0.1's per-unit torch generators).
    revision = 1

    def __init__(self, *, latent_dim=8, hidden=(128, 64), arch="mlp", image_shape=None, likelihood="auto",
                 decoder_scale="learned", logit_lambda=0.05, binarize=None, epochs=80, batch_size=64, lr=2e-3,
                 num_samples=256, eval_chunk=2048, checkpoints=0, eval_every=None, device="cpu",
                 dtype="float32", tf32=True, cuda_graph=True, compile=False):
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.arch = arch
        self.image_shape = image_shape
        self.likelihood = likelihood
        self.decoder_scale = decoder_scale
        self.logit_lambda = logit_lambda
        self.binarize = binarize
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.num_samples = num_samples
        self.eval_chunk = eval_chunk
        self.checkpoints = checkpoints
        self.eval_every = eval_every
        self.device = device
        self.dtype = dtype
        self.tf32 = tf32
        self.cuda_graph = cuda_graph
        self.compile = compile

    # -- parameters -------------------------------------------------------
    def _validate(self):
        check_params(self, PARAMETER_CONSTRAINTS)
        check_param(self.checkpoints, integer(0, self.epochs), "checkpoints", type(self).__name__)
        check_param(self.eval_every, none_or(integer(1, self.epochs)), "eval_every", type(self).__name__)
        if self.binarize == "dynamic" and self.likelihood not in ("auto", "bernoulli"):
            raise self.parameter_error("likelihood", "'bernoulli' (or 'auto') with binarize='dynamic'")
        if self.arch == "conv":
            check_conv_shape(self.hidden, self.image_shape)

    def resolve(self, X):
        """A copy with ``likelihood`` and ``device`` made concrete for data ``X`` [N, D]."""
        X = check_data(X)
        self._validate()
        return self.clone(likelihood=resolve_likelihood(self.likelihood, self.binarize, X),
                          device=str(resolve_device(self.device)))

    def _setup(self, X):
        """Validate parameters and data; returns (data as float64, likelihood name, device, dtype)."""
        X = check_data(X)
        self._validate()
        likelihood = resolve_likelihood(self.likelihood, self.binarize, X)
        check_fits(X, likelihood, self.binarize, self.image_shape)
        return X, likelihood, resolve_device(self.device), DTYPES[self.dtype]

    def _likelihood(self, name):
        scale = None if self.decoder_scale == "learned" else float(self.decoder_scale)
        return Likelihood(name, scale, float(self.logit_lambda))

    def _new_net(self, n_features, likelihood):
        learn_scale = likelihood != "bernoulli" and self.decoder_scale == "learned"
        with torch.device("meta"):
            return VAENet(n_features, int(self.latent_dim), tuple(int(h) for h in self.hidden), self.arch,
                          None if self.image_shape is None else tuple(self.image_shape), learn_scale)

    def memory_bytes(self, n_rows, n_features, n_units):
        """Rough device memory of :meth:`fit_units` for ``n_units`` units on ``n_rows`` × ``n_features`` data.

        A model, not a measurement: see :func:`genmem.models.vae.memory.training_bytes`.
        """
        n_params = sum(p.numel() for p in self._new_net(n_features, "gaussian").parameters())
        return training_bytes(n_rows, n_features, n_units, n_params=n_params, itemsize=DTYPES[self.dtype].itemsize,
                              batch_size=self.batch_size, eval_chunk=self.eval_chunk, latent_dim=self.latent_dim,
                              hidden=self.hidden)

    def max_units_per_batch(self, X):
        """On CUDA, the number of units whose training fits in 85 % of the free memory (:meth:`memory_bytes`)."""
        device = resolve_device(self.device)
        if device.type != "cuda":
            return None
        n_rows, n_features = check_data(X).shape
        fixed = self.memory_bytes(n_rows, n_features, 0)
        return units_that_fit(fixed, self.memory_bytes(n_rows, n_features, 1) - fixed, device)

    def checkpoint_epochs(self, checkpoints=None):
        """Epochs after which :meth:`fit_units` (and :meth:`fit`) save checkpoints.

        ``round(epochs · i / C)`` for ``i = 1 … C`` with C the ``checkpoints``
        parameter (or the argument): evenly spaced, the last at ``epochs``.
        """
        count = self.checkpoints if checkpoints is None else checkpoints
        if not count:
            return []
        return sorted({int(round(self.epochs * (i + 1) / count)) for i in range(count)})

    def eval_epochs(self):
        """Epochs after which ``loglik_epochs`` is evaluated: ``eval_every, 2·eval_every, … ≤ epochs``."""
        if self.eval_every is None:
            return []
        return list(range(self.eval_every, self.epochs + 1, self.eval_every))

    # -- training -----------------------------------------------------------
    def _train(self, X, masks, seeds, labels, likelihood, device, dtype, on_epoch=None):
        """Train one unit per row of ``masks`` together; returns (units, train loss [U, E]).

        ``labels`` name the units in error messages; ``on_epoch(epoch,
        units, trainer)`` is called after every epoch.
        """
        n_rows = masks.sum(1)
        if (n_rows == 0).any():
            raise GenmemError(f"{labels[int(np.argmin(n_rows))]} has no training rows; every unit needs at least one")
        keys = key_words(seeds, device)
        units = Units.initialised(self._new_net(X.shape[1], likelihood), keys, self._likelihood(likelihood),
                                  dtype, device)
        units.requires_grad_(True)
        trainer = Trainer(units, torch.as_tensor(X, dtype=dtype, device=device), masks, keys,
                          batch_size=self.batch_size, lr=self.lr, dynamic=self.binarize == "dynamic",
                          graph=self.cuda_graph, compile=self.compile)
        train_loss = trainer.train(self.epochs, labels, on_epoch)
        units.requires_grad_(False)
        return units, train_loss

    # -- the K-fold hook -------------------------------------------------------
    def fit_units(self, X, train_masks, seeds, *, unit_keys=None, artifact_dir=None, progress=None):
        """Train one VAE per unit, all together, and score every example under each.

        Parameters
        ----------
        X : array [N, D]
        train_masks : bool array [U, N]
            Row u selects unit u's training rows.
        seeds : sequence of int, length U
            Unit u is seeded with ``seeds[u]`` only (weights, minibatches,
            binarization, ε, importance samples).
        unit_keys : list of (repeat, fold), optional
            Names of the units in messages and checkpoint files (default ``(0, u)``).
        artifact_dir : path-like, optional
            With ``checkpoints > 0``, one file ``unit_r{r}_k{k}.pt`` per unit
            (:func:`~genmem.models.vae.checkpoints.save_checkpoint`) is written here.
        progress : callable, optional
            Called with U once the units are trained and scored.

        Returns
        -------
        dict of str to ndarray
            ``"loglik"`` float64 [U, N]: IS estimate of log p of every row
            under every unit (``num_samples`` samples); ``"ess"`` [U, N]: the
            effective sample size ``(Σw)²/Σw²`` of each estimate;
            ``"train_loss"`` [U, epochs]: mean negative ELBO per training
            example in each epoch; with ``eval_every``, ``"loglik_epochs"``
            [U, T, N] after each epoch of :meth:`eval_epochs`.
        """
        X, likelihood, device, dtype = self._setup(X)
        masks, seeds = check_units(X, train_masks, seeds)
        n_units = len(masks)
        if unit_keys is None:
            unit_keys = [(0, u) for u in range(n_units)]
        keys = [tuple(int(i) for i in k) for k in unit_keys]
        labels = [f"unit {key}" for key in keys]
        recorder = CheckpointRecorder(n_units, self.checkpoint_epochs(), self.lr)
        eval_epochs, epoch_ll = set(self.eval_epochs()), []

        def on_epoch(epoch, units, trainer):
            recorder(epoch, units, trainer)
            if epoch in eval_epochs:
                epoch_ll.append(evaluate(units, X_eval, eps, self.eval_chunk)["loglik"])

        with oom_guard(device, n_units, self.eval_chunk), matmul_precision(device, self.tf32):
            X_eval = scored_rows(X, self.binarize, device, dtype)
            eps = importance_eps(key_words(seeds, device), int(self.num_samples), int(self.latent_dim), dtype)
            units, train_loss = self._train(X, masks, seeds, labels, likelihood, device, dtype, on_epoch)
            final = evaluate(units, X_eval, eps, self.eval_chunk)
        warn_collapsed(final["ess"], int(self.num_samples), labels)
        out = {"loglik": final["loglik"], "ess": final["ess"], "train_loss": train_loss}
        if self.eval_every is not None:
            out["loglik_epochs"] = np.stack(epoch_ll, axis=1)
        if artifact_dir is not None and self.checkpoints:
            recorder.save(artifact_dir, keys, seeds, checkpoint_config(self.get_params(), likelihood, X.shape[1]))
        if progress is not None:
            progress(n_units)
        return out

    # -- one model -------------------------------------------------------------
    def fit(self, X, y=None, *, rng=None, checkpoints=None):
        """Train one VAE on all rows of ``X`` [N, D] (the batched trainer with U = 1); returns ``self``.

        Parameters
        ----------
        X : array [N, D]
        y : ignored
        rng : int, SeedSequence or numpy Generator, optional
            The model's seed (weights, minibatches, ε, importance samples).
        checkpoints : int, optional
            Keep this many checkpoints of the training in :attr:`checkpoints_`
            (default: the ``checkpoints`` parameter), so that TracIn
            (:func:`genmem.influence.influence_for`) works on the model.
        """
        X, likelihood, device, dtype = self._setup(X)
        count = self.checkpoints if checkpoints is None else checkpoints
        check_int(count, "checkpoints", 0, self.epochs)
        seed = as_seed(rng)
        if seed is None:
            seed = as_seed(np.random.default_rng())
        recorder = CheckpointRecorder(1, self.checkpoint_epochs(count), self.lr)
        with oom_guard(device, 1, self.eval_chunk), matmul_precision(device, self.tf32):
            units, train_loss = self._train(X, np.ones((1, X.shape[0]), dtype=bool), [seed], ["the model"],
                                            likelihood, device, dtype, recorder)
        self._set_fitted(units.unit_states()[0], X.shape[1], likelihood, seed)
        self.train_loss_ = train_loss[0]
        self.checkpoints_ = recorder.checkpoints()
        return self

    def _set_fitted(self, state, n_features, likelihood, seed):
        device, dtype = resolve_device(self.device), DTYPES[self.dtype]
        net = self._new_net(n_features, likelihood).to_empty(device=device).to(dtype)
        net.load_state_dict(state)
        self.net_ = net.requires_grad_(False)
        self.n_features_in_, self.likelihood_, self.seed_ = int(n_features), likelihood, int(seed)

    def _score(self, X, num_samples):
        self._check_fitted()
        X = check_data(X, n_features=self.n_features_in_, model=type(self).__name__)
        device, dtype = resolve_device(self.device), DTYPES[self.dtype]
        n_samples = int(self.num_samples) if num_samples is None else check_int(num_samples, "num_samples")
        units = Units.from_states(self._new_net(self.n_features_in_, self.likelihood_), [self.net_.state_dict()],
                                  self._likelihood(self.likelihood_), dtype, device)
        with oom_guard(device, 1, self.eval_chunk), matmul_precision(device, self.tf32):
            eps = importance_eps(key_words([self.seed_], device), n_samples, int(self.latent_dim), dtype)
            result = evaluate(units, scored_rows(X, self.binarize, device, dtype), eps, self.eval_chunk)
        return {k: v[0] for k, v in result.items()}, n_samples

    def log_prob(self, X, num_samples=None):
        """Importance-sampled log p(x) of each row of ``X`` [N, D], float64 [N].

        Parameters
        ----------
        X : array [N, D]
        num_samples : int, optional
            Importance samples S (default: the ``num_samples`` parameter).
        """
        result, n_samples = self._score(X, num_samples)
        warn_collapsed(result["ess"], n_samples)
        return result["loglik"]

    def log_prob_and_ess(self, X, num_samples=None):
        """``(log p [N], effective sample size [N])`` of each row, as in :meth:`log_prob`."""
        result, _ = self._score(X, num_samples)
        return result["loglik"], result["ess"]

    def elbo(self, X, num_samples=None):
        """Monte Carlo ELBO of each row (mean of the S log importance weights), float64 [N]."""
        return self._score(X, num_samples)[0]["elbo"]

    @torch.no_grad()
    def embed(self, X):
        """The encoder mean E[z | x] of each row of ``X`` [N, D], float64 [N, latent_dim] (a feature map)."""
        self._check_fitted()
        X = check_data(X, n_features=self.n_features_in_, model=type(self).__name__)
        device, dtype = resolve_device(self.device), DTYPES[self.dtype]
        X_eval = scored_rows(X, self.binarize, device, dtype)
        step = max(1, int(self.eval_chunk))
        locs = [self.net_.encoder(X_eval[i:i + step])[0] for i in range(0, len(X_eval), step)]
        return torch.cat(locs).cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def sample(self, n, *, rng=None):
        """Draw ``n`` rows [n, D] (float64) from the fitted model: z ~ N(0, I), x ~ p(x | z)."""
        self._check_fitted()
        check_int(n, "n")
        device, dtype = resolve_device(self.device), DTYPES[self.dtype]
        gen = torch_generator(as_seed(rng), device)
        z = torch.randn(int(n), int(self.latent_dim), generator=gen, dtype=dtype, device=device)
        out = self.net_.decoder(z)
        x = self._likelihood(self.likelihood_).sample(out, self.net_.decoder.log_scale, gen)
        return x.cpu().numpy().astype(np.float64)

    def pyro_model_guide(self, *, param_store=False):
        """The fitted unit as a Pyro ``(model, guide)`` pair (:class:`VAEModel`, :class:`VAEGuide`).

        They share this model's modules, whose parameters they make trainable
        (``requires_grad``); training them trains this model.

        Parameters
        ----------
        param_store : bool, default=False
            False: the parameters stay in the modules, out of Pyro's global
            parameter store; ``loss = pyro.infer.Trace_ELBO()(model, guide)``
            is an ``nn.Module`` whose loss is the negative ELBO that
            :meth:`fit` minimises — train it with any torch optimizer over
            ``loss.parameters()``. True: Pyro's global mode, for
            ``pyro.infer.SVI(model, guide, pyro.optim.Adam(...),
            Trace_ELBO()).step(x)``; the parameters are registered in the
            global store under a name unique to this model.
        """
        self._check_fitted()
        self.net_.requires_grad_(True)
        mode = {"local_params": not param_store, "name": f"genmem_vae_{id(self):x}" if param_store else ""}
        model = VAEModel(self.net_.decoder, self._likelihood(self.likelihood_), int(self.latent_dim), **mode)
        return model, VAEGuide(self.net_.encoder, **mode)

    # -- checkpoints -----------------------------------------------------------
    @classmethod
    def from_state_dict(cls, state_dict, *, n_features, seed, **params):
        """A fitted :class:`VAE` with the weights ``state_dict`` (names of :class:`VAENet`).

        Parameters
        ----------
        state_dict : mapping of str to Tensor
            ``encoder.*`` and ``decoder.*`` weights, e.g. one entry of a
            checkpoint's ``states``.
        n_features : int
            D, the number of features.
        seed : int
            The unit's seed; it fixes the importance samples of :meth:`log_prob`.
        **params
            Constructor arguments; ``likelihood`` must not be ``"auto"``.
        """
        model = cls(**params)
        model._validate()
        if model.likelihood == "auto":
            raise GenmemError("from_state_dict needs a concrete likelihood ('bernoulli', 'logit-normal' or 'gaussian')")
        model._set_fitted(state_dict, n_features, model.likelihood, seed)
        return model

    @classmethod
    def from_checkpoint(cls, path, *, epoch=None, device=None):
        """A fitted :class:`VAE` from a checkpoint file of :meth:`fit_units`.

        Parameters
        ----------
        path : path-like
        epoch : int, optional
            Which checkpoint (default: the last).
        device : str, optional
            Overrides the recorded device.
        """
        return cls.from_checkpoint_dict(read_checkpoint(path), epoch=epoch, device=device, source=path)

    @classmethod
    def from_checkpoint_dict(cls, ckpt, *, epoch=None, device=None, source="the checkpoint"):
        """A fitted :class:`VAE` from an already loaded checkpoint dict (see :meth:`from_checkpoint`)."""
        params, n_features = model_params(ckpt["config"], device)
        return cls.from_state_dict(checkpoint_state(ckpt, epoch, source), n_features=n_features, seed=ckpt["seed"],
                                   **params)
