"""A RealNVP normalizing flow with exact log p, whose K-fold units train together.

The density of a row ``x`` is exact, by the change of variables through an
invertible map ``f = c_L ∘ … ∘ c_1 ∘ s ∘ g``:

    log p(x) = log N(f(x); 0, I) + log |det ∂f/∂x|,

* ``g`` (``input_map="logit"``): ``u = logit(λ + (1 − 2λ) x)`` for data in
  [0, 1] (e.g. dequantized grey levels, as the VAE's logit-normal
  likelihood), ``log |g'| = log(1 − 2λ) − log y − log(1 − y)`` per feature
  with ``y = λ + (1 − 2λ) x``; ``"identity"`` leaves ``x`` as it is.
* ``s`` (``standardize=True``): ``(u − m) / σ`` with the per-feature mean and
  standard deviation of the unit's own training rows (after ``g``), fixed
  before training; ``log |det| = −Σ log σ``.
* ``c_l``: affine coupling layers (Dinh, Sohl-Dickstein & Bengio 2017,
  "Density estimation using Real NVP"). With a binary mask ``b``,
  ``c(v) = b·v + (1 − b)·(v·exp(a) + t)`` where ``(a, t)`` are the outputs of
  an MLP on ``b·v`` and ``a = A·tanh(â / A)`` is bounded by ``A``
  (:data:`MAX_LOG_SCALE`); ``log |det| = Σ (1 − b)·a``. Masks cycle through
  even/odd features and first/second halves. The output layer of every MLP
  starts at zero, so an untrained flow is the identity. With one feature
  there is nothing to condition on: every coupling is a learned affine map,
  and the flow is a (logit-)Gaussian.

There is no sampling in the score: unlike the VAE's importance-sampled
estimate, log p here carries no Monte Carlo noise, so neither does the
memorization score M.

Batching: :meth:`Flow.fit_units` trains U units at once; every weight has a
leading unit dimension and the layers run as batched matrix products. Each
unit draws its initial weights and its minibatch order from its own seed
(:mod:`genmem.seeds` streams, drawn on the CPU, so a GPU run draws the same
numbers), takes ``ceil(n_u / batch_size)`` Adam steps
per epoch on its own rows (a unit with fewer steps sits out the extra ones:
no update, its Adam moments and step count untouched), so a unit gets the
same numbers alone or beside others, up to float rounding. The weights of all
units live in one buffer [U, P] updated by :class:`~genmem.models.stacked_adam.StackedAdam`.
"""
import logging
import math

import numpy as np
import torch

from ..device import DTYPES, resolve_device
from ..errors import GenmemError
from ..seeds import stream_seed
from ..validation import boolean, check_data, check_params, int_tuple, integer, options, real
from .base import DensityModel, as_seed, check_finite_loss, check_units, torch_generator
from .stacked_adam import StackedAdam

logger = logging.getLogger(__name__)

INPUT_MAPS = ("auto", "logit", "identity")
#: Bound A of the log-scale of a coupling layer: a = A·tanh(â/A).
MAX_LOG_SCALE = 3.0
#: Floor of the standard deviation used by ``standardize``.
MIN_SCALE = 1e-6
LOG_2PI = math.log(2.0 * math.pi)
#: The streams of a unit's seed: initial weights, minibatch order.
INIT_STREAM, ORDER_STREAM = 0, 1

#: Allowed parameter values (``device`` is checked by resolve_device).
PARAMETER_CONSTRAINTS = {
    "layers": integer(1), "batch_size": integer(1), "chunk_size": integer(1), "epochs": integer(0),
    "hidden": int_tuple(example="(64, 64)"), "input_map": options(*INPUT_MAPS),
    "logit_lambda": real(0, 0.5), "standardize": boolean(), "lr": real(0), "dtype": options(*DTYPES),
}


def coupling_masks(n_features, layers):
    """The conditioning masks ``b`` [layers, D] (float 0/1): even, odd, first half, second half, repeated."""
    i = np.arange(n_features)
    patterns = [i % 2 == 0, i % 2 == 1, i < n_features // 2, i >= n_features // 2]
    return np.stack([patterns[l % 4] for l in range(layers)]).astype(np.float64)


class _Units:
    """U flows: the fixed maps (logit, standardization) and the stacked coupling weights."""

    def __init__(self, params, masks, logit_lambda, shift, scale):
        self.params = params  # name -> Tensor [U, ...]: "{layer}.w{j}", "{layer}.b{j}"
        self.depth = sum(1 for name in params if name.startswith("0.w"))  # linear maps per coupling MLP
        self.masks = masks  # [L, D]
        self.logit_lambda = logit_lambda  # None: the identity map
        self.shift, self.scale = shift, scale  # [U, 1, D] or None

    def forward(self, x):
        """``(f(x), log |det ∂f/∂x|)`` of rows ``x`` [U, B, D]: base-space rows [U, B, D] and [U, B]."""
        log_det = x.new_zeros(x.shape[:2])
        if self.logit_lambda is not None:
            lam = self.logit_lambda
            y = lam + (1.0 - 2.0 * lam) * x
            log_det = log_det + (math.log(1.0 - 2.0 * lam) - torch.log(y) - torch.log1p(-y)).sum(-1)
            x = torch.log(y) - torch.log1p(-y)
        if self.shift is not None:
            x = (x - self.shift) / self.scale
            log_det = log_det - torch.log(self.scale).sum(-1)
        n_hidden = self.depth - 1
        for l, b in enumerate(self.masks):
            h = x * b
            for j in range(n_hidden):
                h = torch.relu(torch.baddbmm(self.params[f"{l}.b{j}"].unsqueeze(1), h, self.params[f"{l}.w{j}"]))
            out = torch.baddbmm(self.params[f"{l}.b{n_hidden}"].unsqueeze(1), h, self.params[f"{l}.w{n_hidden}"])
            raw, t = out.chunk(2, dim=-1)
            a = MAX_LOG_SCALE * torch.tanh(raw / MAX_LOG_SCALE) * (1.0 - b)
            x = x * b + (1.0 - b) * (x * torch.exp(a) + t)
            log_det = log_det + a.sum(-1)
        return x, log_det

    def log_prob(self, x):
        """Exact log p of rows ``x`` [U, B, D], [U, B]."""
        z, log_det = self.forward(x)
        return log_det - 0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * LOG_2PI

    def unit(self, u):
        """Unit ``u`` alone, as a one-unit :class:`_Units` (views of the stacks)."""
        pick = lambda t: None if t is None else t[u:u + 1]  # noqa: E731
        return _Units({n: p[u:u + 1] for n, p in self.params.items()}, self.masks, self.logit_lambda,
                      pick(self.shift), pick(self.scale))


class Flow(DensityModel):
    """RealNVP normalizing flow (affine couplings) with exact per-example log p.

    Parameters
    ----------
    layers : int, default=8
        Affine coupling layers.
    hidden : tuple of int, default=(64, 64)
        Widths of each coupling layer's MLP (ReLU); ``()`` makes the
        conditioner linear.
    input_map : {"auto", "logit", "identity"}, default="auto"
        The fixed first map: ``"logit"`` for data in [0, 1] (squeezed by
        ``logit_lambda``), ``"identity"`` for real-valued data; ``"auto"``
        picks ``"logit"`` when every value lies in [0, 1].
    logit_lambda : float, default=0.05
        The squeeze λ of ``"logit"`` (as the VAE's logit-normal likelihood).
    standardize : bool, default=True
        Standardize each feature with the training rows' mean and standard
        deviation (after the first map), a fixed affine map with its Jacobian.
    epochs : int, default=20
        Passes over each unit's training rows (0 leaves the flow at its
        initialisation: the identity couplings).
    batch_size : int, default=128
    lr : float, default=1e-3
        Adam learning rate.
    chunk_size : int, default=4096
        Rows scored at once per unit.
    device : str, default="cpu"
    dtype : {"float32", "float64"}, default="float32"

    Attributes
    ----------
    params_ : dict of str to Tensor
        The coupling weights ``"{layer}.w{j}"`` [in, out] and ``"{layer}.b{j}"``.
    shift_, scale_ : ndarray [D] or None
        The standardization (None without it).
    input_map_ : str
        The resolved first map.
    train_loss_ : ndarray [epochs]
        Mean negative log-likelihood per training row in each epoch.
    n_features_in_ : int

    Notes
    -----
    Binary data have no density (a continuous model puts unbounded density
    on the points 0 and 1): dequantize them first (``prepare(...,
    dequantize=True)``) or use the VAE's Bernoulli likelihood.

    Examples
    --------
    >>> import numpy as np
    >>> from genmem.models import Flow
    >>> X = np.random.default_rng(0).normal(size=(200, 2))
    >>> flow = Flow(layers=2, hidden=(8,), epochs=2).fit(X, rng=0)
    >>> flow.log_prob(X[:3]).shape, flow.input_map_
    ((3,), 'identity')
    """

    name = "flow"

    def __init__(self, *, layers=8, hidden=(64, 64), input_map="auto", logit_lambda=0.05, standardize=True,
                 epochs=20, batch_size=128, lr=1e-3, chunk_size=4096, device="cpu", dtype="float32"):
        self.layers = layers
        self.hidden = hidden
        self.input_map = input_map
        self.logit_lambda = logit_lambda
        self.standardize = standardize
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.chunk_size = chunk_size
        self.device = device
        self.dtype = dtype

    # -- parameters -------------------------------------------------------
    def _validate(self):
        check_params(self, PARAMETER_CONSTRAINTS)
        return resolve_device(self.device), DTYPES[self.dtype]

    def _resolved_input_map(self, X):
        if self.input_map != "auto":
            return self.input_map
        return "logit" if X.min() >= 0.0 and X.max() <= 1.0 else "identity"

    def _setup(self, X):
        """Checked data, resolved input_map, device and dtype."""
        device, dtype = self._validate()
        X = check_data(X)
        if np.isin(X, (0.0, 1.0)).all():
            raise GenmemError(
                "Flow models continuous data but X is binary (only 0 and 1): its density is unbounded there; "
                "dequantize the data (prepare(..., dequantize=True), --dequantize) or use the VAE (bernoulli)"
            )
        input_map = self._resolved_input_map(X)
        if input_map == "logit" and (X.min() < 0.0 or X.max() > 1.0):
            raise GenmemError(
                f"input_map='logit' needs values in [0, 1]; X spans [{X.min():g}, {X.max():g}] "
                "(scale the data, or use input_map='identity')"
            )
        return X, input_map, device, dtype

    def resolve(self, X):
        """A copy with ``input_map`` and ``device`` made concrete for data ``X`` [N, D]."""
        X, input_map, device, _ = self._setup(X)
        return self.clone(input_map=input_map, device=str(device))

    # -- the units ----------------------------------------------------------
    def _widths(self, n_features):
        return (n_features, *(int(h) for h in self.hidden), 2 * n_features)

    def _layout(self, n_features):
        """``(name, shape)`` of every coupling weight, in the order of the flat buffer."""
        widths = self._widths(n_features)
        return [(f"{l}.{kind}{j}", (w_in, w_out) if kind == "w" else (w_out,))
                for l in range(int(self.layers)) for j, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:]))
                for kind in ("w", "b")]

    def _init_flat(self, n_features, seeds, device, dtype):
        """All units' initial weights, one row [P] per unit: PyTorch's Linear default U(±1/√fan_in) from each
        unit's init stream (drawn on the CPU); the output layer of every coupling MLP at zero (identity couplings)."""
        last = len(self.hidden)
        rows = []
        for seed in seeds:
            gen = torch_generator(stream_seed(seed, INIT_STREAM))
            parts = []
            for name, shape in self._layout(n_features):
                j = int(name.split(".")[1][1:])
                bound = 0.0 if j == last else 1.0 / math.sqrt(self._widths(n_features)[j])
                parts.append(((torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound).reshape(-1))
            rows.append(torch.cat(parts))
        return torch.stack(rows).to(device=device, dtype=dtype)

    def _views(self, flat, n_features):
        """The coupling weights as views [U, *shape] of the rows of ``flat`` [U, P]."""
        params, offset = {}, 0
        for name, shape in self._layout(n_features):
            size = math.prod(shape)
            params[name] = flat[:, offset:offset + size].view(flat.shape[0], *shape)
            offset += size
        return params

    def _standardization(self, X_dev, rows, input_map):
        """Per-unit shift and scale [U, 1, D] of the training rows after the first map (None without it)."""
        if not self.standardize:
            return None, None
        first = _Units({}, [], float(self.logit_lambda) if input_map == "logit" else None, None, None)
        stats = []
        for r in rows:
            u = first.forward(X_dev[r].unsqueeze(0))[0][0]
            mean = u.mean(0)
            std = u.std(0, unbiased=False).clamp_min(MIN_SCALE) if len(r) > 1 else torch.ones_like(mean)
            stats.append((mean, std))
        shift, scale = (torch.stack(s).unsqueeze(1) for s in zip(*stats))
        return shift, scale

    def _train(self, X, masks, seeds, labels, input_map, device, dtype):
        """Train one flow per row of ``masks`` together; returns (units, train loss [U, epochs])."""
        n_units = len(masks)
        X_dev = torch.as_tensor(X, dtype=dtype, device=device)
        rows = [torch.as_tensor(np.flatnonzero(m), device=device) for m in masks]
        n = np.array([len(r) for r in rows])
        if (n == 0).any():
            raise GenmemError(f"{labels[int(np.argmin(n))]} has no training rows; every unit needs at least one")
        shift, scale = self._standardization(X_dev, rows, input_map)
        masks_t = torch.as_tensor(coupling_masks(X.shape[1], int(self.layers)), dtype=dtype, device=device)
        lam = float(self.logit_lambda) if input_map == "logit" else None
        flat = self._init_flat(X.shape[1], seeds, device, dtype)
        units = _Units(self._views(flat, X.shape[1]), masks_t, lam, shift, scale)
        leaves = list(units.params.values())
        for leaf in leaves:  # views of flat: gradients are taken with respect to them, Adam updates flat
            leaf.requires_grad_(True)
        adam = StackedAdam(flat, float(self.lr))
        gens = [torch_generator(stream_seed(s, ORDER_STREAM)) for s in seeds]  # on the CPU: any device, same order
        size = int(self.batch_size)
        n_steps = -(-n // size)
        steps = int(n_steps.max())
        n_t = torch.as_tensor(n, device=device)
        train_loss = np.empty((n_units, int(self.epochs)))
        for epoch in range(int(self.epochs)):
            order = torch.empty((n_units, steps * size), dtype=torch.int64, device=device)
            for u in range(n_units):
                perm = rows[u][torch.randperm(int(n[u]), generator=gens[u]).to(device)]
                order[u, :n[u]] = perm
                order[u, n[u]:] = perm[0]  # padding: a real row of the unit, weight 0
            position = torch.arange(steps * size, device=device)
            weight = (position[None, :] < n_t[:, None]).to(dtype)
            epoch_loss = torch.zeros(n_units, dtype=torch.float64, device=device)
            for step in range(steps):
                cols = slice(step * size, (step + 1) * size)
                w = weight[:, cols]
                count = w.sum(1)
                log_p = units.log_prob(X_dev[order[:, cols]])
                nll = -(log_p * w).sum(1)
                grads = torch.autograd.grad((nll / count.clamp_min(1.0)).sum(), leaves)
                with torch.no_grad():
                    torch.cat([g.reshape(n_units, -1) for g in grads], 1, out=adam.grad)
                    adam.step(count > 0, tuple(int(u) for u in np.flatnonzero(step < n_steps)))
                epoch_loss += nll.detach().double()
            train_loss[:, epoch] = (epoch_loss / n_t).cpu().numpy()
            check_finite_loss(train_loss[:, epoch], labels, epoch + 1, self.lr, "log-likelihood")
            logger.debug("epoch %d: mean NLL per example %s", epoch + 1, np.round(train_loss[:, epoch], 3))
        for leaf in leaves:
            leaf.requires_grad_(False)
        return units, train_loss

    @torch.no_grad()
    def _score(self, units, X_dev):
        """Exact log p of every row of ``X_dev`` [N, D] under every unit, float64 [U, N]."""
        n_units = units.params["0.w0"].shape[0]
        out = torch.empty((n_units, X_dev.shape[0]), dtype=torch.float64)
        step = int(self.chunk_size)
        for start in range(0, X_dev.shape[0], step):
            x = X_dev[start:start + step]
            out[:, start:start + len(x)] = units.log_prob(x.expand(n_units, *x.shape)).double().cpu()
        return out.numpy()

    # -- the K-fold hook -------------------------------------------------------
    def fit_units(self, X, train_masks, seeds, *, unit_keys=None, artifact_dir=None, progress=None):
        """Train one flow per unit, all together, and score every example under each (exactly).

        Parameters
        ----------
        X : array [N, D]
        train_masks : bool array [U, N]
        seeds : sequence of int, length U
            Unit u's initial weights and minibatch order come from ``seeds[u]`` only.
        unit_keys : list of (repeat, fold), optional
            Names of the units in messages.
        artifact_dir
            Unused: a flow saves no per-unit files.
        progress : callable, optional
            Called with U once the units are trained and scored.

        Returns
        -------
        dict
            ``"loglik"`` float64 [U, N]; ``"train_loss"`` [U, epochs]: mean
            negative log-likelihood per training row in each epoch.
        """
        X, input_map, device, dtype = self._setup(X)
        masks, seeds = check_units(X, train_masks, seeds)
        keys = unit_keys or [(0, u) for u in range(len(masks))]
        labels = [f"unit (repeat {int(r)}, fold {int(k)})" for r, k in keys]
        units, train_loss = self._train(X, masks, seeds, labels, input_map, device, dtype)
        loglik = self._score(units, torch.as_tensor(X, dtype=dtype, device=device))
        if progress is not None:
            progress(len(masks))
        return {"loglik": loglik, "train_loss": train_loss}

    # -- one model -------------------------------------------------------------
    def fit(self, X, y=None, *, rng=None):
        """Train one flow on all rows of ``X`` [N, D] (``y`` is ignored); returns ``self``.

        ``rng`` (None, int, SeedSequence or Generator) seeds the initial
        weights and the minibatch order; None draws a fresh seed.
        """
        X, input_map, device, dtype = self._setup(X)
        seed = as_seed(rng)
        if seed is None:
            seed = as_seed(np.random.default_rng())
        units, train_loss = self._train(X, np.ones((1, len(X)), dtype=bool), [seed], ["the model"], input_map,
                                        device, dtype)
        self.params_ = {name: p[0].detach().clone() for name, p in units.params.items()}
        self.shift_ = None if units.shift is None else units.shift[0, 0].double().cpu().numpy()
        self.scale_ = None if units.scale is None else units.scale[0, 0].double().cpu().numpy()
        self.input_map_ = input_map
        self.train_loss_ = train_loss[0]
        self.n_features_in_ = X.shape[1]
        return self

    def _fitted_units(self):
        self._check_fitted()
        device, dtype = self._validate()
        stack = lambda a: None if a is None else torch.as_tensor(a, dtype=dtype, device=device)[None, None]  # noqa: E731
        masks = torch.as_tensor(coupling_masks(self.n_features_in_, int(self.layers)), dtype=dtype, device=device)
        lam = float(self.logit_lambda) if self.input_map_ == "logit" else None
        params = {name: p.to(device=device, dtype=dtype)[None] for name, p in self.params_.items()}
        return _Units(params, masks, lam, stack(self.shift_), stack(self.scale_)), device, dtype

    def log_prob(self, X):
        """Exact log p(x) in nats of each row of ``X`` [N, D], float64 [N]."""
        units, device, dtype = self._fitted_units()
        X = check_data(X, n_features=self.n_features_in_, model=type(self).__name__)
        return self._score(units, torch.as_tensor(X, dtype=dtype, device=device))[0]

    def forward(self, X):
        """The flow's map to the base space and its log-Jacobian: ``(f(x) [N, D], log |det ∂f/∂x| [N])``.

        Parameters
        ----------
        X : array [N, D] or torch.Tensor
            A tensor is mapped with torch operations (differentiable, in the
            model's dtype and device) and tensors are returned; an array gives
            float64 arrays.
        """
        units, device, dtype = self._fitted_units()
        if isinstance(X, torch.Tensor):
            if X.dim() != 2 or X.shape[1] != self.n_features_in_:
                raise GenmemError(f"X must be a tensor [N, {self.n_features_in_}]; got shape {tuple(X.shape)}")
            z, log_det = units.forward(X.to(device=device, dtype=dtype).unsqueeze(0))
            return z[0], log_det[0]
        X = check_data(X, n_features=self.n_features_in_, model=type(self).__name__)
        with torch.no_grad():
            z, log_det = units.forward(torch.as_tensor(X, dtype=dtype, device=device).unsqueeze(0))
        return z[0].double().cpu().numpy(), log_det[0].double().cpu().numpy()
