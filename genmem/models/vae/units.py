"""U VAE units in one buffer: stacked parameters, batched forward passes, importance weights.

Every parameter of unit u lives in row u of one buffer ``flat`` [U, P], which
the optimizer updates in place (:class:`~genmem.models.stacked_adam.StackedAdam`).
Two sets of views look into it:

- ``params``: name → ``[U, *shape]`` with the names and shapes of
  :class:`~genmem.models.vae.nets.VAENet` (``encoder.*``, ``decoder.*``),
  what state dicts and checkpoints hold;
- ``leaves``: the tensors the forward pass uses and gradients are taken
  with respect to, in ``flat`` order. For MLPs a ``Linear`` weight is stored
  as ``[U, in, out]`` and its bias as ``[U, 1, out]``, so that a layer of
  all units is one ``baddbmm`` with no transpose in the forward or backward
  pass; other architectures run the single-unit modules through
  ``torch.func.vmap`` on the ``params`` views.
"""
import math
from collections import OrderedDict

import torch
from torch import nn
from torch.func import functional_call, vmap

from ...philox import uniform

#: Counter tag of the draws that initialise the weights (see :mod:`genmem.models.vae.train`).
INIT_STREAM = 3


def latent_log_ratio(z, eps, sum_log_sigma):
    """``log p(z) − log q(z|x)`` at ``z = loc + σ·ε``: ``Σ_l (ε_l²/2 − z_l²/2) + Σ_l log σ_l``.

    Both are standard-normal log-densities (their ``log 2π`` terms cancel).
    ``z`` and ``eps`` are [..., L]; ``sum_log_sigma`` is ``Σ_l log σ_l``,
    broadcastable to ``z.shape[:-1]``. The ELBO's latent term, shared by the
    trainer, the importance sampler and TracIn's loss.
    """
    return 0.5 * (eps.square().sum(-1) - z.square().sum(-1)) + sum_log_sigma


def _is_mlp(template):
    return all(isinstance(m, (nn.Linear, nn.ReLU)) for m in (*template.encoder.body, *template.decoder.net))


def _layout(template):
    """``(name, shape, stored shape)`` of every parameter in ``flat`` order (stored shape without U)."""
    mlp = _is_mlp(template)
    linear = {f"{prefix}.{kind}" for prefix, m in template.named_modules() if isinstance(m, nn.Linear)
              for kind in ("weight", "bias")}
    entries = []
    for name, p in template.named_parameters():
        shape = tuple(p.shape)
        stored = shape
        if mlp and name in linear:
            stored = (shape[1], shape[0]) if len(shape) == 2 else (1, shape[0])
        entries.append((name, shape, stored))
    return entries


def init_bounds(template):
    """Per-entry bound of the uniform initial weights, float64 [P] in ``flat`` order.

    PyTorch's default for ``Linear``/``Conv``/``ConvTranspose`` layers,
    ``U(−1/√fan_in, 1/√fan_in)`` for weights and biases; 0 for a learned
    decoder ``log_scale`` (σ = 1).
    """
    bounds = {}
    for prefix, module in template.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            fan_in = nn.init._calculate_fan_in_and_fan_out(module.weight)[0]
            for name in ("weight", "bias"):
                bounds[f"{prefix}.{name}"] = 1.0 / math.sqrt(fan_in)
    return torch.cat([torch.full((math.prod(shape),), bounds.get(name, 0.0), dtype=torch.float64)
                      for name, shape, _ in _layout(template)])


class Units:
    """U VAE units whose parameters are the rows of one buffer.

    Parameters
    ----------
    template : VAENet
        The single-unit network (on the meta device: structure only).
    flat : Tensor [U, P]
        The parameters of every unit (layout: see the module docstring).
    likelihood : Likelihood
    """

    def __init__(self, template, flat, likelihood):
        self.template, self.flat, self.likelihood = template, flat, likelihood
        n_units = flat.shape[0]
        self.params, self.leaves, leaf_of = OrderedDict(), [], {}
        offset = 0
        for name, shape, stored in _layout(template):
            size = math.prod(shape)
            leaf = flat[:, offset:offset + size].view(n_units, *stored)
            offset += size
            self.leaves.append(leaf)
            leaf_of[name] = leaf
            self.params[name] = leaf if stored == shape else (
                leaf.transpose(1, 2) if len(shape) == 2 else leaf.view(n_units, *shape))
        self.log_scale = leaf_of.get("decoder.log_scale")
        self._mlp = _is_mlp(template)
        if self._mlp:
            layers = lambda named: [(leaf_of[f"{n}.weight"], leaf_of[f"{n}.bias"]) if isinstance(m, nn.Linear)  # noqa: E731
                                    else None for n, m in named]
            enc, dec = template.encoder, template.decoder
            self._body = layers([(f"encoder.body.{i}", m) for i, m in enumerate(enc.body)])
            self._loc = layers([("encoder.loc", enc.loc)])
            self._log_var = layers([("encoder.log_var", enc.log_var)])
            self._dec = layers([(f"decoder.net.{i}", m) for i, m in enumerate(dec.net)])
        self._enc_params = {k[len("encoder."):]: v for k, v in self.params.items() if k.startswith("encoder.")}
        self._dec_params = {k[len("decoder."):]: v for k, v in self.params.items() if k.startswith("decoder.")}

    # -- construction -----------------------------------------------------------
    @classmethod
    def initialised(cls, template, keys, likelihood, dtype, device):
        """Fresh units: unit u's initial weights drawn from its Philox key ``keys[u]`` (see :func:`init_bounds`)."""
        bounds = init_bounds(template).to(device=device, dtype=dtype)
        u = uniform(keys, bounds.numel(), 0, 0, INIT_STREAM, dtype=dtype)
        flat = (2.0 * u - 1.0) * bounds + 0.0  # + 0.0: the zero-bound entries are +0, not −0
        return cls(template, flat, likelihood)

    @classmethod
    def from_states(cls, template, states, likelihood, dtype, device):
        """Units holding the single-unit ``state_dict`` s ``states`` (names of :class:`VAENet`)."""
        def row(state):
            pieces = []
            for name, shape, stored in _layout(template):
                value = torch.as_tensor(state[name])
                pieces.append((value.t() if len(shape) == 2 and stored != shape else value).reshape(-1))
            return torch.cat(pieces)

        flat = torch.stack([row(state) for state in states]).to(device=device, dtype=dtype)
        return cls(template, flat, likelihood)

    def unit_states(self):
        """The ``state_dict`` of every unit (CPU copies, single-model names), one host copy for all."""
        units = Units(self.template, self.flat.detach().cpu(), self.likelihood)
        return [OrderedDict((name, p[u].contiguous().clone()) for name, p in units.params.items())
                for u in range(units.flat.shape[0])]

    def requires_grad_(self, flag=True):
        """Take gradients with respect to :attr:`leaves` (training) or not."""
        for leaf in self.leaves:
            leaf.requires_grad_(flag)
        return self

    # -- forward passes ---------------------------------------------------------
    @staticmethod
    def _run(layers, h):
        for layer in layers:
            h = torch.relu(h) if layer is None else torch.baddbmm(layer[1], h, layer[0])
        return h

    def encode(self, x):
        """``(loc, log σ)`` [U, B, L] of q(z|x) for rows ``x``: [U, B, D] (each unit its own) or [B, D] (shared)."""
        if not self._mlp:
            fn = lambda p, xb: functional_call(self.template.encoder, p, (xb,))  # noqa: E731
            loc, scale = vmap(fn, in_dims=(0, None if x.dim() == 2 else 0))(self._enc_params, x)
            return loc, torch.log(scale)
        h = self._run(self._body, x.expand(self.flat.shape[0], *x.shape) if x.dim() == 2 else x)
        return self._run(self._loc, h), 0.5 * self._run(self._log_var, h)

    def decode(self, z):
        """Decoder outputs [U, ..., D] for latents ``z`` [U, ..., L]."""
        flat_z = z.reshape(z.shape[0], -1, z.shape[-1])
        if self._mlp:
            out = self._run(self._dec, flat_z)
        else:
            fn = lambda p, zb: functional_call(self.template.decoder, p, (zb,))  # noqa: E731
            out = vmap(fn)(self._dec_params, flat_z)
        return out.reshape(*z.shape[:-1], out.shape[-1])

    def log_weights(self, data, loc, log_sigma, eps):
        """``log p(x|z) + log p(z) − log q(z|x)`` at ``z = loc + σ·ε``, [U, B, S].

        ``data`` is :meth:`Likelihood.data_terms` of the rows (x of shape
        [U or 1, B, D]), ``loc``/``log_sigma`` are [U, B, L] and ``eps`` is
        [U, B or 1, S, L]; the latent terms are :func:`latent_log_ratio`.
        """
        z = torch.addcmul(loc.unsqueeze(2), torch.exp(log_sigma).unsqueeze(2), eps)
        log_px = self.likelihood.log_prob_rows(self.decode(z), self.log_scale, *data)
        return log_px + latent_log_ratio(z, eps, log_sigma.sum(-1, keepdim=True))
