"""TracIn (TracInCP, Pruthi et al. 2020) with per-example gradients from ``torch.func``.

``TracIn(x, z) = Σ_c η_c ∇_θ ℓ(x; θ_c) · ∇_θ ℓ(z; θ_c)`` over saved checkpoints
``θ_c`` with learning rates ``η_c``. Per-example gradients come from
``torch.func.vmap(grad(loss))`` on chunks of examples (never a Python loop over
examples), on the CPU or a GPU. The sign convention is that of
:mod:`genmem.influence.closed_form`: positive = proponent (training on ``x``
lowered the loss at ``z``).

Stochastic losses (the VAE's ``−ELBO``) take a fixed, seeded noise draw per
example, so values are reproducible: the draw of row ``i`` is row ``i`` of
:meth:`TracIn.noise` ``(N, stream)``, the same at every checkpoint. Rows of the
training set ``X`` use stream 0, rows of test points ``Z`` stream 1. The plain
self-influence ``Σ_c η_c |∇ℓ(x; θ_c, ε⁰)|²`` is biased upward by the variance
of the noisy gradient (``E|g|² = |E g|² + tr Cov g``); the unbiased version
``Σ_c η_c ∇ℓ(x; θ_c, ε⁰) · ∇ℓ(x; θ_c, ε¹)`` uses two independent draws
(streams 0 and 1), so it equals the diagonal of ``influence(X, X)``.

Gradient-normalised TracIn (``normalize="cosine"``): every per-example
gradient is divided by its norm before the inner products, so
``TracIn_cos(x, z) = Σ_c η_c cos(∇ℓ(x; θ_c), ∇ℓ(z; θ_c))`` — rows with large
gradients no longer dominate every test point as "generally influential"
(the renormalisation of Hammoudeh & Lowd 2022; Barshan et al. 2020's RelatIF
has the same aim). Its self-influence is the cosine between the gradients of
two independent noise draws (``unbiased=True``): how consistently training
pushes on a row (without noise, or with one draw, it is ``Σ_c η_c`` for
every row and is refused).

With ``projection_dim = d`` the gradients are multiplied by a seeded random
``P × d`` matrix ``R`` with independent entries ``±1/√d`` (Rademacher) or
``N(0, 1/d)`` (Gaussian, :class:`~genmem.influence.projection.RandomProjection`), ``E[R Rᵀ] = I``, so projected inner products are
unbiased with standard deviation about ``√((|g|²|g'|² + (g·g')²) / d)``
(Johnson–Lindenstrauss). The training rows' projected gradients, scaled by
``√η_c`` and concatenated over checkpoints, are computed once and cached, and
influence becomes one matrix product.
"""
import hashlib
import inspect
import math
import numbers
import warnings

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from ..device import resolve_device
from ..errors import GenmemError
from ..models.base import Checkpoint, torch_generator
from ..seeds import stream_seed
from ..validation import check_int, check_param, int_tuple, options
from .gather import gather_influence
from .projection import PROJECTIONS, RandomProjection

NORMALIZATIONS = (None, "cosine")

#: Noise streams: rows of the training set X, and rows of test points Z (also the second draw of the
#: unbiased self-influence); the projection matrix has its own (:data:`~genmem.influence.projection.PROJECTION_STREAM`).
TRAIN_STREAM, TEST_STREAM = 0, 1


def _required_positional(fn):
    """How many positional arguments ``fn`` requires, or None when its signature cannot be read."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        return None
    return sum(1 for p in params if p.default is inspect.Parameter.empty
               and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))


class TracIn:
    """TracInCP influence of training examples from saved checkpoints.

    Built, as captum's ``TracInCP``, from the model (its per-example loss and
    checkpoints) and its training data; :meth:`self_influence` scores the
    training rows, :meth:`influence` the training rows' influence on test rows.

    Parameters
    ----------
    loss : callable
        The per-example loss ℓ as a function of the parameters:
        ``loss(params, x)`` → scalar tensor, or ``loss(params, x, eps)`` when
        ``noise_shape`` is given, where ``params`` is a dict like the
        checkpoints', ``x`` one example (a row of X without its leading
        dimension) and ``eps`` its noise draw of shape ``noise_shape``. It must
        be written with tensor operations that ``torch.func.vmap`` and ``grad``
        can transform (for a module, ``torch.func.functional_call``; see
        :func:`module_loss`).
    checkpoints : sequence of Checkpoint or (params, lr[, label])
        The saved parameter states θ_c with learning rates η_c > 0; all with
        the same parameter names and shapes.
    train : array or Tensor [N, ...], optional
        The training examples (noise stream 0) that :meth:`self_influence` and
        :meth:`influence` score; each call may pass others instead.
    noise_shape : tuple of int, optional
        Shape of the standard-normal draw each example's loss takes (e.g.
        ``(S, L)``: S reparameterisation draws of an L-dimensional latent).
    projection_dim : int, optional
        Project gradients to this many dimensions in :meth:`influence` (see the
        module docstring); ``None`` computes exact inner products.
    projection : {"rademacher", "gaussian"}, default="rademacher"
    normalize : {None, "cosine"}, default=None
        ``"cosine"``: gradient-normalised TracIn (see the module docstring).
    seed : int, default=0
        Root of the noise draws and the projection matrix.
    chunk_size : int, default=16
        Examples whose gradients are held at once: memory about
        ``2 · chunk_size · P`` numbers for P parameters (in :meth:`influence`
        without projection, ``(n_z + chunk_size) · P + n_z · N`` for ``n_z``
        test points: theirs are held whole). Small
        chunks stay in CPU caches (16 was fastest for a 1M-parameter VAE on a
        CPU); a GPU wants larger ones (e.g. 256).
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"`` or ``"auto"``; the checkpoints are moved there.

    Notes
    -----
    Projection matrices up to :data:`~genmem.influence.projection.PROJECTION_CACHE_LIMIT` entries are kept
    in memory (1 GiB in float64); larger ones (e.g. a 1M-parameter model with
    d > 128) are regenerated from their seeded blocks of
    :data:`~genmem.influence.projection.PROJECTION_BLOCK` rows for each chunk of examples, which bounds
    memory at the cost of time.

    Examples
    --------
    The loss ``ℓ(w; x) = (w·x)²`` of a linear model at one checkpoint
    ``w = (1, 1)``, η = 0.1: ``∇ℓ = 2 (w·x) x``, so the self-influence of
    ``x`` is ``0.1 · 4 (w·x)² |x|²``.

    >>> import torch
    >>> from torch import nn
    >>> from genmem.influence import TracIn, module_loss
    >>> net = nn.Linear(2, 1, bias=False)
    >>> _ = nn.init.ones_(net.weight)
    >>> loss = module_loss(net, lambda out, x: out.sum() ** 2)
    >>> tracin = TracIn(loss, [(dict(net.named_parameters()), 0.1)], train=torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    >>> tracin.self_influence().round(6)
    array([0.4, 6.4])
    """

    def __init__(self, loss, checkpoints, train=None, *, noise_shape=None, projection_dim=None,
                 projection="rademacher", normalize=None, seed=0, chunk_size=16, device="cpu"):
        if not callable(loss):
            raise GenmemError(f"loss must be a callable loss(params, x[, eps]); got {type(loss).__name__}")
        required = _required_positional(loss)
        if required == 3 and noise_shape is None:
            raise GenmemError("the loss takes a noise draw, loss(params, x, eps), but noise_shape is not given; pass "
                              "noise_shape=(S, L), e.g. (1, vae.latent_dim) for vae_negative_elbo(vae)")
        if required == 2 and noise_shape is not None:
            raise GenmemError(f"noise_shape={tuple(noise_shape)} is given but the loss takes no noise, "
                              "loss(params, x); drop noise_shape or give the loss an eps argument")
        check_param(normalize, options(*NORMALIZATIONS), "normalize", "TracIn")
        self.loss = loss
        self.normalize = normalize
        self.device = resolve_device(device)
        self.checkpoints = self._check_checkpoints(checkpoints)
        first = self.checkpoints[0].params
        self.names = list(first)
        self.dtype = first[self.names[0]].dtype
        self.n_params = sum(p.numel() for p in first.values())
        if noise_shape is not None:
            noise_shape = tuple(int(s) for s in check_param(noise_shape, int_tuple(), "noise_shape", "TracIn"))
        self.noise_shape = noise_shape
        check_param(projection, options(*PROJECTIONS), "projection", "TracIn")
        self.seed = check_int(seed, "seed", None, owner="TracIn")
        self.chunk_size = check_int(chunk_size, "chunk_size", owner="TracIn")
        self.projection_dim = None if projection_dim is None else check_int(projection_dim, "projection_dim",
                                                                            owner="TracIn")
        self._project = None if projection_dim is None else RandomProjection(
            {n: p.numel() for n, p in first.items()}, self.projection_dim, projection, self.seed, self.device,
            self.dtype)
        self._cache = None  # (key of X, projected training features)
        self.train = None if train is None else self._rows(train, "train")
        if noise_shape is None:
            self._grad = vmap(grad(lambda p, x: loss(p, x)), in_dims=(None, 0))
        else:
            self._grad = vmap(grad(loss), in_dims=(None, 0, 0))

    # -- inputs -------------------------------------------------------------------
    def _check_checkpoints(self, checkpoints):
        try:
            items = list(checkpoints)
        except TypeError:
            raise GenmemError("checkpoints must be a sequence of (params, lr) pairs or Checkpoint") from None
        if not items:
            raise GenmemError("no checkpoints given; TracIn needs at least one saved state (params, lr)")
        out = []
        for c, item in enumerate(items):
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3) or not isinstance(item[0], dict):
                raise GenmemError(f"checkpoint {c} must be (params dict, lr[, label]); got {type(item).__name__}")
            params, lr = item[0], item[1]
            label = item[2] if len(item) == 3 else f"checkpoint {c}"
            if not (isinstance(lr, numbers.Real) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0):
                raise GenmemError(f"the learning rate of {label} must be a positive float; got {lr!r}")
            if not params or not all(isinstance(v, torch.Tensor) and v.is_floating_point() for v in params.values()):
                raise GenmemError(f"{label} must map parameter names to floating-point tensors")
            if out:
                ref = out[0].params
                shapes = {n: tuple(v.shape) for n, v in params.items()}
                if shapes != {n: tuple(v.shape) for n, v in ref.items()}:
                    diff = sorted(set(shapes.items()) ^ {(n, tuple(v.shape)) for n, v in ref.items()})[0][0]
                    raise GenmemError(
                        f"{label} does not match {out[0].label} (parameter {diff!r} differs): the checkpoints come "
                        "from different models; pass the checkpoints of one model"
                    )
            dtype = next(iter(out[0].params.values())).dtype if out else next(iter(params.values())).dtype
            moved = {n: v.detach().to(device=self.device, dtype=dtype) for n, v in params.items()}
            out.append(Checkpoint(moved, float(lr), str(label)))
        return out

    def _rows(self, X, name, like=None):
        """``X`` as a tensor [N, ...] of the checkpoints' dtype on the CPU, checked."""
        if not isinstance(X, torch.Tensor):
            try:
                X = torch.as_tensor(np.asarray(X, dtype=np.float64))
            except (TypeError, ValueError):
                raise GenmemError(f"{name} must be a numeric array; got {type(X).__name__}") from None
        X = X.detach().to("cpu", self.dtype)
        if X.dim() < 2 or X.shape[0] < 1:
            raise GenmemError(f"{name} must have one row per example, shape [N, ...] with N >= 1; got {tuple(X.shape)}")
        if like is not None and X.shape[1:] != like.shape[1:]:
            raise GenmemError(
                f"{name} rows have shape {tuple(X.shape[1:])} but the training rows have {tuple(like.shape[1:])}; "
                "preprocess the test points like the training data"
            )
        bad = ~torch.isfinite(X.reshape(X.shape[0], -1)).all(1)
        if bad.any():
            first = int(bad.nonzero()[0, 0])
            raise GenmemError(f"{name} has NaN or inf in {int(bad.sum())} row(s) (first: row {first}); remove them")
        return X

    def noise(self, n_rows, stream):
        """The noise draws of ``n_rows`` examples in ``stream``: standard normal [n_rows, *noise_shape], or None.

        Drawn on the CPU from ``torch.Generator`` seeded with
        ``stream_seed(seed, stream)``, in the checkpoints' dtype; row ``i``
        belongs to row ``i`` of the data.
        """
        if self.noise_shape is None:
            return None
        gen = torch_generator(stream_seed(self.seed, stream))
        return torch.randn((int(n_rows), *self.noise_shape), generator=gen, dtype=torch.float64).to(self.dtype)

    # -- gradients ----------------------------------------------------------------
    def _chunks(self, n):
        for start in range(0, n, self.chunk_size):
            yield slice(start, min(start + self.chunk_size, n))

    def gradients(self, params, X, eps=None):
        """Per-example gradients ``∇_θ ℓ(x; θ)`` of rows ``X`` [c, ...] (tensor): name → [c, *shape], on the device.

        With ``normalize="cosine"`` each row's gradient is divided by its norm
        (over all parameters; a zero gradient stays zero).
        """
        X = X.to(self.device)
        try:
            grads = self._grad(params, X) if self.noise_shape is None else self._grad(params, X, eps.to(self.device))
        except TypeError as exc:
            if "positional argument" not in str(exc):
                raise
            raise GenmemError(f"the loss does not take the arguments TracIn passes ({exc}); with noise_shape it is "
                              "called as loss(params, x, eps), without as loss(params, x)") from None
        if self.normalize == "cosine":
            norm = torch.sqrt(sum(g.reshape(g.shape[0], -1).square().sum(1) for g in grads.values()))
            scale = torch.where(norm > 0, 1.0 / norm, torch.zeros_like(norm))
            grads = {name: g * scale.view(-1, *([1] * (g.dim() - 1))) for name, g in grads.items()}
        return grads

    @staticmethod
    def _inner(ga, gb):
        """Inner products [c, c'] of two sets of per-example gradients, summed over parameters."""
        total = None
        for name, a in ga.items():
            term = a.reshape(a.shape[0], -1) @ gb[name].reshape(gb[name].shape[0], -1).T
            total = term if total is None else total + term
        return total

    @staticmethod
    def _paired(ga, gb):
        """Row-wise inner products [c] of two sets of per-example gradients of the same rows."""
        total = None
        for name, a in ga.items():
            term = (a * gb[name]).reshape(a.shape[0], -1).sum(1)
            total = term if total is None else total + term
        return total

    def _features(self, X, stream):
        """Projected gradients of all rows, ``√η_c``-scaled and concatenated over checkpoints: [N, C·d]."""
        eps = self.noise(X.shape[0], stream)
        d = self.projection_dim
        out = torch.empty((X.shape[0], d * len(self.checkpoints)), dtype=self.dtype, device=self.device)
        for c, ck in enumerate(self.checkpoints):
            for sl in self._chunks(X.shape[0]):
                g = self.gradients(ck.params, X[sl], None if eps is None else eps[sl])
                out[sl, c * d:(c + 1) * d] = math.sqrt(ck.lr) * self._project(g)
        return out

    def _train_features(self, X):
        key = (tuple(X.shape), hashlib.sha256(X.numpy().tobytes()).hexdigest())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._features(X, TRAIN_STREAM))
        return self._cache[1]

    # -- influence ----------------------------------------------------------------
    def attrs(self):
        """What produces the values, for a results file."""
        return {"method": "tracin", "checkpoints": [ck.label for ck in self.checkpoints],
                "lrs": [ck.lr for ck in self.checkpoints], "normalize": self.normalize or "none",
                "noise_shape": list(self.noise_shape or []), "projection_dim": self.projection_dim or 0,
                "seed": self.seed}

    def _train_rows(self, X):
        """The training rows: ``X`` when given (checked), else those given to the constructor."""
        if X is not None:
            return self._rows(X, "X")
        if self.train is None:
            raise GenmemError("this TracIn has no training data: build it with TracIn(loss, checkpoints, train=X) "
                              "or pass the rows to score")
        return self.train

    def self_influence(self, X=None, *, unbiased=False):
        """``TracIn(x, x)`` of every training row (or of the rows ``X``), exact (never projected).

        Parameters
        ----------
        X : array or Tensor [N, ...], optional
            Rows to score instead of the training data given to the constructor.
        unbiased : bool, default=False
            Dot product of the gradients under two independent noise draws
            (streams 0 and 1) instead of the squared norm under one (stream 0),
            removing the upward bias of a noisy gradient; equal to the plain
            value for a loss without noise. Required with ``normalize="cosine"``.

        Returns
        -------
        ndarray of float64 [N]
        """
        if self.normalize == "cosine" and not (unbiased and self.noise_shape is not None):
            raise GenmemError("the gradient-normalised self-influence of one gradient is Σ_c η_c for every row; "
                              "use unbiased=True with a noisy loss (the cosine between two draws' gradients) or "
                              "normalize=None")
        X = self._train_rows(X)
        eps0 = self.noise(X.shape[0], TRAIN_STREAM)
        eps1 = self.noise(X.shape[0], TEST_STREAM) if unbiased else eps0
        out = torch.zeros(X.shape[0], dtype=torch.float64)
        with torch.no_grad():
            for ck in self.checkpoints:
                for sl in self._chunks(X.shape[0]):
                    g0 = self.gradients(ck.params, X[sl], None if eps0 is None else eps0[sl])
                    g1 = g0 if eps1 is eps0 else self.gradients(ck.params, X[sl], eps1[sl])
                    out[sl] += ck.lr * self._paired(g0, g1).double().cpu()
        return out.numpy()

    def _exact_blocks(self, Z, X):
        """One block of all test rows: per checkpoint, the gradients of every chunk of X are computed once."""
        eps_z, eps_x = self.noise(Z.shape[0], TEST_STREAM), self.noise(X.shape[0], TRAIN_STREAM)
        pick = lambda eps, sl: None if eps is None else eps[sl]  # noqa: E731
        acc = torch.zeros((Z.shape[0], X.shape[0]), dtype=torch.float64, device=self.device)
        for ck in self.checkpoints:
            gz = [(zs, self.gradients(ck.params, Z[zs], pick(eps_z, zs))) for zs in self._chunks(Z.shape[0])]
            for xs in self._chunks(X.shape[0]):
                gx = self.gradients(ck.params, X[xs], pick(eps_x, xs))
                for zs, g in gz:
                    acc[zs, xs] += ck.lr * self._inner(g, gx).double()
        yield slice(0, Z.shape[0]), acc

    def _projected_blocks(self, Z, X):
        fx = self._train_features(X)
        fz = self._features(Z, TEST_STREAM)
        rows = max(1, (1 << 24) // X.shape[0])  # blocks of about 2^24 entries
        for start in range(0, Z.shape[0], rows):
            zs = slice(start, min(start + rows, Z.shape[0]))
            yield zs, (fz[zs] @ fx.T).double()

    def influence(self, test, *args, k=None, train=None):
        """``TracIn(x_i, z)`` of every training row ``x_i`` on every test row ``z``: ``influence(test, k=None)``.

        Parameters
        ----------
        test : array or Tensor [n_z, ...]
            Test points (noise stream 1).
        k : int, optional (also the second positional argument)
            Return only the ``k`` strongest proponents and opponents per test point
            (the full matrix is still built without a projection).
        train : array or Tensor [N, ...], optional
            Training examples (noise stream 0) instead of those given to the
            constructor; with a projection their projected gradients are
            cached for the next call with the same rows.

        Returns
        -------
        ndarray [n_z, N] (float64), or :class:`TopInfluence` when ``k`` is given.

        Notes
        -----
        The form of genmem 0.1, ``influence(Z, X[, k])`` with the training
        rows second, still works and warns (``DeprecationWarning``).
        """
        k, train = _legacy_arguments(args, k, train)
        X = self._train_rows(train)
        Z = self._rows(test, "Z", like=X)
        with torch.no_grad():
            blocks = self._exact_blocks(Z, X) if self._project is None else self._projected_blocks(Z, X)
            return gather_influence(blocks, Z.shape[0], X.shape[0], k)


def _legacy_arguments(args, k, train):
    """``(k, train)`` from :meth:`TracIn.influence`'s positional arguments: ``(k,)``, or 0.1's ``(X[, k])``."""
    if not args:
        return k, train
    if len(args) == 1 and (args[0] is None or isinstance(args[0], (int, np.integer))):
        if k is not None:
            raise TypeError("influence() got k twice (positionally and as k=)")
        return args[0], train
    if len(args) > 2 or train is not None:
        raise TypeError("influence(test, k=None, *, train=None) takes at most two positional arguments")
    warnings.warn("TracIn.influence(Z, X, k) is deprecated: give the training rows to TracIn(..., train=X) "
                  "(or as train=X) and call influence(Z, k=k)", DeprecationWarning, stacklevel=3)
    return (args[1] if len(args) == 2 else k), args[0]


def module_loss(module, criterion):
    """A per-example ``loss(params, x)`` for :class:`TracIn` from an ``nn.Module`` and a criterion.

    ``loss(params, x) = criterion(module(x[None]) with params, x)``, evaluated
    with ``torch.func.functional_call``; ``criterion(output, x)`` gets the
    module's output for the one example (leading dimension 1) and the example.
    """

    def loss(params, x):
        return criterion(functional_call(module, params, (x.unsqueeze(0),)), x)

    return loss
