"""The networks, likelihoods and Pyro model/guide of genmem's VAE, for one unit.

Everything here describes a *single* model. the VAE estimator (:mod:`genmem.models.vae`) trains
many units at once by stacking the parameters of these modules along a
leading unit dimension and calling the modules through
``torch.func.functional_call`` under ``torch.func.vmap``, so the parameter
names of a unit are exactly those of :class:`VAENet` (``encoder.*``,
``decoder.*``).

Images enter as flattened rows in NumPy's ``(H, W, C)`` order (what
``images.reshape(len(images), -1)`` gives); the convolutional networks
reshape them to PyTorch's ``(C, H, W)`` internally.
"""
import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.nn import functional as F

from ...errors import GenmemError

ARCHS = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "logit-normal", "gaussian")

#: Floor of a learned log standard deviation of the decoder (σ ≥ e⁻⁷), as in
#: the reference code's clamp of the log-variance.
MIN_LOG_SCALE = -7.0


def _image_dims(image_shape):
    """(C, H, W) of an ``(H, W)`` or ``(H, W, C)`` image shape."""
    height, width = image_shape[:2]
    channels = image_shape[2] if len(image_shape) == 3 else 1
    return channels, height, width


def check_conv_shape(hidden, image_shape):
    """Raise :class:`GenmemError` unless ``arch="conv"`` with stride-2 layers of channels ``hidden`` fits ``image_shape``."""
    if image_shape is None or not hidden:
        raise GenmemError("arch='conv' needs image_shape=(H, W[, C]) and at least one entry in hidden")
    shrink = 2 ** len(hidden)
    if image_shape[0] % shrink or image_shape[1] % shrink:
        raise GenmemError(
            f"arch='conv' with {len(hidden)} stride-2 layers needs H and W divisible by {shrink}; "
            f"got image_shape={tuple(image_shape)} (pad the images, e.g. to 32x32, or use fewer layers)"
        )


class _ToImage(nn.Module):
    """Rows [B, H·W·C] in (H, W, C) order → images [B, C, H, W]."""

    def __init__(self, image_shape):
        super().__init__()
        self.chw = _image_dims(image_shape)

    def forward(self, x):
        c, h, w = self.chw
        return x.reshape(-1, h, w, c).permute(0, 3, 1, 2)


class _ToRows(nn.Module):
    """Images [B, C, H, W] → rows [B, H·W·C] in (H, W, C) order."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def _mlp(widths):
    layers = []
    for w_in, w_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(w_in, w_out), nn.ReLU()]
    return layers


class Encoder(nn.Module):
    """Amortised posterior ``q(z | x) = N(loc(x), diag(scale(x)²))``.

    ``arch="mlp"``: Linear-ReLU layers of widths ``hidden``; ``arch="conv"``:
    one stride-2 4×4 convolution (+ReLU) per entry of ``hidden`` (its channel
    count), then a flatten. Two linear heads give ``loc`` and ``log σ²``.
    """

    def __init__(self, n_features, latent_dim, hidden, arch="mlp", image_shape=None):
        super().__init__()
        if arch == "mlp":
            body = _mlp((n_features, *hidden))
            width = hidden[-1] if hidden else n_features
        else:
            channels, height, width_px = _image_dims(image_shape)
            body = [_ToImage(image_shape)]
            for c_in, c_out in zip((channels, *hidden[:-1]), hidden):
                body += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.ReLU()]
            body.append(nn.Flatten())
            shrink = 2 ** len(hidden)
            width = hidden[-1] * (height // shrink) * (width_px // shrink)
        self.body = nn.Sequential(*body)
        self.loc = nn.Linear(width, latent_dim)
        self.log_var = nn.Linear(width, latent_dim)

    def forward(self, x):
        """``(loc, scale)`` of q(z | x), each [B, latent_dim], for rows ``x`` [B, D]."""
        h = self.body(x)
        return self.loc(h), torch.exp(0.5 * self.log_var(h))


class Decoder(nn.Module):
    """The decoder network: latents [B, L] → per-pixel parameters [B, D].

    The output is the Bernoulli logits, or the mean of the Gaussian (in data
    space for ``"gaussian"``, in logit space for ``"logit-normal"``). With
    ``learn_scale`` the decoder also owns ``log_scale`` [D], one learned log
    standard deviation per feature, independent of z.
    """

    def __init__(self, n_features, latent_dim, hidden, arch="mlp", image_shape=None, learn_scale=False):
        super().__init__()
        if arch == "mlp":
            widths = (latent_dim, *reversed(hidden))
            layers = _mlp(widths) + [nn.Linear(widths[-1], n_features)]
        else:
            channels, height, width_px = _image_dims(image_shape)
            shrink = 2 ** len(hidden)
            grid = (hidden[-1], height // shrink, width_px // shrink)
            layers = [nn.Linear(latent_dim, math.prod(grid)), nn.ReLU(), nn.Unflatten(1, grid)]
            outs = (*reversed(hidden[:-1]), channels)
            for i, (c_in, c_out) in enumerate(zip(reversed(hidden), outs)):
                layers.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1))
                if i < len(hidden) - 1:
                    layers.append(nn.ReLU())
            layers.append(_ToRows())
        self.net = nn.Sequential(*layers)
        self.log_scale = nn.Parameter(torch.zeros(n_features)) if learn_scale else None

    def forward(self, z):
        """Per-pixel parameters [B, D] for latents ``z`` [B, L]."""
        return self.net(z)


class VAENet(nn.Module):
    """Encoder and decoder of one VAE; its ``state_dict`` is what checkpoints hold."""

    def __init__(self, n_features, latent_dim, hidden, arch="mlp", image_shape=None, learn_scale=False):
        super().__init__()
        self.encoder = Encoder(n_features, latent_dim, hidden, arch, image_shape)
        self.decoder = Decoder(n_features, latent_dim, hidden, arch, image_shape, learn_scale)


# -- likelihoods ---------------------------------------------------------------


class Likelihood:
    """``p(x | z)`` of a VAE given the decoder output.

    :meth:`dist` is the Pyro distribution (event dim 1) used by
    :class:`VAEModel`; :meth:`log_prob_rows` computes the same log-density
    for many latent samples at once with a few fused passes over memory (the
    K-fold trainer's hot loop; ``tests/test_vae.py`` checks that both agree).

    ``"logit-normal"`` is the reference code's density for pixel values
    ``x ∈ [0, 1]``: ``s = λ + (1 − 2λ) x``, ``t = logit(s)`` is Gaussian
    ``N(out, σ²)``, and ``log p(x) = log N(t; out, σ²) + log(1 − 2λ) − log s −
    log(1 − s)``. It integrates to one over its support, the box
    ``[−λ/(1−2λ), (1−λ)/(1−2λ)]^D`` that contains ``[0, 1]^D``; the mass it
    puts outside [0, 1]^D, where data never fall, is the price of the squeeze λ.

    Parameters
    ----------
    name : {"bernoulli", "logit-normal", "gaussian"}
    scale : float, optional
        Fixed standard deviation σ of the Gaussian likelihoods; ``None`` when
        the decoder learns one per feature (its ``log_scale``).
    logit_lambda : float
        The squeeze λ of ``"logit-normal"``.
    """

    def __init__(self, name, scale=None, logit_lambda=0.05):
        self.name = name
        self.scale = scale
        self.logit_lambda = logit_lambda

    def _log_sigma(self, log_scale, like):
        if log_scale is None:
            return torch.tensor(math.log(self.scale), dtype=like.dtype, device=like.device)
        return log_scale.clamp(min=MIN_LOG_SCALE)

    def _squeeze(self):
        lam = self.logit_lambda
        squeeze = dist.transforms.AffineTransform(-lam / (1 - 2 * lam), 1 / (1 - 2 * lam))
        return [dist.transforms.SigmoidTransform(), squeeze]

    def dist(self, out, log_scale=None, validate_args=None):
        """The distribution of rows x [..., D] given decoder outputs ``out`` [..., D].

        ``log_scale`` is the decoder's learned log σ (broadcastable to
        ``out``) or ``None`` for the fixed ``scale``.
        """
        if self.name == "bernoulli":
            return dist.Bernoulli(logits=out, validate_args=validate_args).to_event(1)
        normal = dist.Normal(out, torch.exp(self._log_sigma(log_scale, out)), validate_args=validate_args)
        if self.name == "gaussian":
            return normal.to_event(1)
        return dist.TransformedDistribution(normal, self._squeeze(), validate_args=validate_args).to_event(1)

    def data_terms(self, x):
        """What :meth:`log_prob_rows` needs from the data rows ``x`` [..., D] alone.

        ``(y, log_jacobian)``: the values the Gaussian is evaluated at (x, or
        its logit after the squeeze) and the summed log-Jacobian [...] (0 for
        the untransformed likelihoods).
        """
        if self.name != "logit-normal":
            return x, torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
        lam = self.logit_lambda
        s = lam + (1.0 - 2.0 * lam) * x
        log_s, log_1ms = torch.log(s), torch.log1p(-s)
        return log_s - log_1ms, (math.log1p(-2.0 * lam) - log_s - log_1ms).sum(-1)

    def log_prob_rows(self, out, log_scale, y, log_jacobian):
        """``log p(x | z)`` for decoder outputs ``out`` [U, B, S, D] (S latent samples per row).

        ``y`` [U or 1, B, D] and ``log_jacobian`` [U or 1, B] come from
        :meth:`data_terms`; ``log_scale`` is [U, D] or ``None``. Returns [U, B, S].
        """
        if self.name == "bernoulli":
            if out.shape[-2] == 1:  # one sample (training): the fused, stable x·l − softplus(l)
                target = y.unsqueeze(-2).expand_as(out)
                return -F.binary_cross_entropy_with_logits(out, target, reduction="none").sum(-1)
            # Σ_d x_d·l_d − softplus(l_d): the first sum as a batched matrix-vector product
            dot = torch.matmul(out, y.unsqueeze(-1)).squeeze(-1)
            return dot - F.softplus(out).sum(-1)
        log_sigma = self._log_sigma(log_scale, out)
        inv = torch.exp(-log_sigma)
        if log_sigma.dim():
            inv_rows, sum_log_sigma = inv[:, None, :], log_sigma.sum(-1)[:, None, None]
            inv_out = inv[:, None, None, :]
        else:
            inv_rows = inv_out = inv
            sum_log_sigma = log_sigma * out.shape[-1]
        resid = torch.addcmul((y * inv_rows).unsqueeze(-2), out, inv_out, value=-1.0)  # (y − out)/σ
        sq = torch.linalg.vector_norm(resid, dim=-1).square()
        const = 0.5 * out.shape[-1] * math.log(2.0 * math.pi)
        return log_jacobian.unsqueeze(-1) - 0.5 * sq - sum_log_sigma - const

    def sample(self, out, log_scale, generator):
        """Draw rows x given decoder outputs ``out`` [n, D] with ``generator``."""
        if self.name == "bernoulli":
            u = torch.rand(out.shape, generator=generator, device=out.device, dtype=out.dtype)
            return (u < torch.sigmoid(out)).to(out.dtype)
        noise = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
        value = out + torch.exp(self._log_sigma(log_scale, out)) * noise
        if self.name == "gaussian":
            return value
        for transform in self._squeeze():
            value = transform(value)
        return value


# -- Pyro model and guide --------------------------------------------------------


class VAEModel(PyroModule):
    """The generative model ``z ~ N(0, I)``, ``x | z ~ likelihood(decoder(z))``, for Pyro.

    A :class:`~pyro.nn.PyroModule` over a plain ``nn.Module`` decoder.

    - ``local_params=True``: it runs with Pyro's ``module_local_params=True``
      (set for the call only): its parameters live in the module, never in
      Pyro's global parameter store, so models of different units cannot
      share weights. Train it with ``loss = pyro.infer.Trace_ELBO()(model,
      guide)`` and a torch optimizer over ``loss.parameters()``.
    - ``local_params=False``: Pyro's classic global mode, what
      ``pyro.infer.SVI`` needs: the parameters are registered in the global
      parameter store under ``name`` (make it unique per model) and are the
      module's own tensors, so SVI trains the module.
    """

    def __init__(self, decoder, likelihood, latent_dim, *, local_params=True, name=""):
        super().__init__(name)
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = latent_dim
        self.local_params = local_params

    def forward(self, x):
        with pyro.settings.context(module_local_params=self.local_params), pyro.plate("data", x.shape[0]):
            prior = dist.Normal(x.new_zeros(self.latent_dim), x.new_ones(self.latent_dim)).to_event(1)
            z = pyro.sample("z", prior)
            pyro.sample("x", self.likelihood.dist(self.decoder(z), self.decoder.log_scale), obs=x)


class VAEGuide(PyroModule):
    """The amortised guide ``z ~ N(loc(x), diag(scale(x)²))`` for :class:`VAEModel` (same ``local_params``, ``name``)."""

    def __init__(self, encoder, *, local_params=True, name=""):
        super().__init__(name)
        self.encoder = encoder
        self.local_params = local_params

    def forward(self, x):
        with pyro.settings.context(module_local_params=self.local_params), pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))
