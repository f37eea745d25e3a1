"""Training U VAE units together: the epoch plan, the step, and the step captured on CUDA.

An epoch of unit u is one pass over its own ``n_u`` training rows in a fresh
random order, ``ceil(n_u / batch_size)`` Adam steps, the last one on the
remaining rows (the reference code's ``DataLoader(shuffle=True)``). Units step
in lockstep for the largest count; a unit with fewer steps sits out the
extra steps (no update, its Adam moments and step count untouched), so alone
and batched it takes exactly the same steps.

Random numbers are counter-based (:mod:`genmem.philox`), keyed by the unit's
seed; the counter tags are ``(position, step, epoch, stream)``:

- the minibatch order of an epoch is the argsort of one random word per
  training row (stream :data:`ORDER_STREAM`): the unit's i-th row takes
  word i, ties are broken by i, so a unit trained on ``X[mask]`` alone sees
  the same order as the unit trained on ``X`` with ``mask``;
- the reparameterisation ε of a step (stream :data:`EPS_STREAM`) and the
  dynamic-binarization uniforms (stream :data:`BINARIZE_STREAM`) are drawn
  per step and position in the minibatch.

So a unit's numbers depend on nothing but its seed and its rows: not on its
batch-mates, not on where a run was resumed, not on the device.

The work per step does not grow with U except through tensor sizes: one
gather, the batched forward and backward and one stacked Adam update (the
fused kernel reads the layers' gradients where autograd left them; the
elementwise update elsewhere gathers them into one buffer first), no host
synchronisation. Steps run in
blocks whose random numbers are drawn in one call; the loss is accumulated on
the device and read once per epoch. On CUDA the whole block (draws, steps,
Adam) is captured once as a CUDA graph and replayed.
"""
import logging

import numpy as np
import torch

from ...errors import GenmemError
from ...philox import bits, normal, uniform
from ..base import check_finite_loss
from ..stacked_adam import StackedAdam

logger = logging.getLogger(__name__)

#: Counter tags (word 3) of the training draws; the weights' initialisation
#: is stream 3 (:data:`genmem.models.vae.units.INIT_STREAM`), importance
#: samples stream 4.
ORDER_STREAM, EPS_STREAM, BINARIZE_STREAM = 0, 1, 2

#: Most steps whose random numbers are drawn in one call.
MAX_BLOCK = 16
#: Bytes of random-number temporaries a block may take (fewer steps per block beyond).
BLOCK_BYTES = 1 << 30


def block_size(steps, per_step_values):
    """Steps per block: at most :data:`MAX_BLOCK` and :data:`BLOCK_BYTES`, dividing ``steps`` as evenly as it can."""
    cap = int(max(1, min(MAX_BLOCK, BLOCK_BYTES // max(1, 32 * per_step_values))))
    blocks = -(-steps // cap)
    return -(-steps // blocks)


def epoch_order(keys, member, n_rows, epoch, length):
    """Minibatch order of one epoch for every unit.

    Parameters
    ----------
    keys : int64 Tensor [U, 2]
        The units' Philox keys.
    member : bool Tensor [U, N]
        Each unit's training rows.
    n_rows : int64 Tensor [U]
        Training rows per unit (``member.sum(1)``).
    epoch : int or int64 Tensor
    length : int
        Positions to fill (steps × batch size, at least ``max(n_rows)``).

    Returns
    -------
    order : int64 Tensor [U, length]
        Row indices: unit u's rows in random order, then padding with its first row.
    weight : bool Tensor [U, length]
        True at the ``n_rows[u]`` real positions.
    """
    n_units, n = member.shape
    rank = torch.cumsum(member, 1) - 1  # position of each row among the unit's own rows
    word = torch.gather(bits(keys, n, 0, epoch, ORDER_STREAM), 1, rank.clamp(min=0))
    sort_key = (word >> 1) * (1 << 31) + rank  # 31 random bits, ties broken by rank
    sort_key = torch.where(member, sort_key, 1 << 62)  # rows of other folds sort last
    order = torch.argsort(sort_key, dim=1)[:, :length]
    if length > n:
        order = torch.cat([order, order[:, :1].expand(n_units, length - n)], 1)
    weight = torch.arange(length, device=member.device) < n_rows.unsqueeze(1)
    return torch.where(weight, order, order[:, :1]), weight


class Trainer:
    """Trains :class:`~genmem.models.vae.units.Units` on their rows of one data matrix.

    Parameters
    ----------
    units : Units
    X : Tensor [N, D]
        All rows, on the units' device and dtype.
    masks : bool ndarray [U, N]
        Each unit's training rows (at least one each).
    keys : int64 Tensor [U, 2]
        The units' Philox keys.
    batch_size, lr : int, float
    dynamic : bool
        Binarize each minibatch afresh as Bernoulli(x).
    graph : bool
        Capture blocks of steps as CUDA graphs (CUDA only).
    compile : bool
        ``torch.compile`` the random draws of a block into fused kernels.
    """

    def __init__(self, units, X, masks, keys, *, batch_size, lr, dynamic, graph=False, compile=False):
        self.units, self.X, self.keys, self.dynamic, self.lr = units, X, keys, dynamic, lr
        device = X.device
        self.n_units, (self.n, self.dim) = len(masks), X.shape
        self.batch = int(batch_size)
        self.latent = units.params["encoder.loc.bias"].shape[-1]
        self.rows_per_unit = n_rows = masks.sum(1)
        n_steps = -(-n_rows // self.batch)
        steps = int(n_steps.max())
        per_step = self.n_units * self.batch * (self.latent + (self.dim if dynamic else 0))
        self.block = block_size(steps, per_step)
        self.steps = -(-steps // self.block) * self.block
        self.member = torch.as_tensor(masks, device=device)
        self.n_rows = torch.as_tensor(n_rows, dtype=torch.int64, device=device)
        active = np.arange(self.steps)[None, :] < n_steps[:, None]
        self.active = torch.as_tensor(active, device=device)
        # the units that take each step, as host tuples: few distinct ones (all units, then the larger folds)
        patterns, self._pattern = np.unique(active.T, axis=0, return_inverse=True)
        self._units = [tuple(int(u) for u in np.flatnonzero(p)) for p in patterns]
        self._pattern = self._pattern.reshape(-1)
        self.adam = StackedAdam(units.flat, lr, shapes=[leaf.shape[1:] for leaf in units.leaves])
        self.draw = torch.compile(self._draw, fullgraph=True, dynamic=False) if compile else self._draw
        self.use_graph = bool(graph) and device.type == "cuda"
        self._graphs, self._static = {}, None
        logger.debug("trainer: %d units, %d steps per epoch in blocks of %d, fused Adam %s, CUDA graph %s, compiled %s",
                     self.n_units, self.steps, self.block, self.adam.fused, self.use_graph, compile)

    @property
    def step_counts(self):
        """Adam steps taken by each unit (host ints; reads the device)."""
        return [int(s) for s in self.adam.steps.cpu()]

    # -- one block of steps -----------------------------------------------------
    def _draw(self, epoch, first):
        """ε [U, block, B·L] and binarization uniforms [U, block, B·D] (or None) of steps ``first …``."""
        step = first + torch.arange(self.block, device=self.X.device)
        keys = self.keys.unsqueeze(1)
        eps = normal(keys, self.batch * self.latent, step, epoch, EPS_STREAM, dtype=self.X.dtype)
        noise = uniform(keys, self.batch * self.dim, step, epoch, BINARIZE_STREAM, dtype=self.X.dtype) \
            if self.dynamic else None
        return eps, noise

    def _block(self, order, weight, active, epoch, first, step_units):
        """Run one block of steps; returns the summed loss of each unit, [U] (on the device).

        ``order``/``weight`` [U, block·B] and ``active`` [U, block] are the
        block's slices of the epoch plan, ``epoch``/``first`` 0-d int64
        tensors, ``step_units`` the host tuple of active units of each step.
        """
        U, B, units = self.n_units, self.batch, self.units
        eps, noise = self.draw(epoch, first)
        x = self.X[order]  # [U, block·B, D]: every minibatch of the block in one gather
        if noise is not None:
            x = (noise.view(x.shape) < x).to(x.dtype)
        data = units.likelihood.data_terms(x)
        losses = []
        for j in range(self.block):
            cols = slice(j * B, (j + 1) * B)
            loc, log_sigma = units.encode(x[:, cols])
            log_w = units.log_weights([d[:, cols] for d in data], loc, log_sigma, eps[:, j].view(U, B, 1, self.latent))
            loss = -(log_w[..., 0] * weight[:, cols]).sum(1)
            grads = torch.autograd.grad(loss.sum(), units.leaves)
            with torch.no_grad():
                self.adam.step(active[:, j], step_units[j], grads)
            losses.append(loss.detach())
        return torch.stack(losses, 1).sum(1)

    # -- epochs -----------------------------------------------------------------
    def train(self, epochs, labels, on_epoch=None):
        """Train for ``epochs`` epochs; returns the mean negative ELBO per training row, float64 [U, epochs].

        The loss is read from the device once per epoch and checked
        (``labels`` name the units in the error); ``on_epoch(epoch, units,
        trainer)`` is called after every epoch.
        """
        loss = np.empty((self.n_units, epochs))
        for epoch in range(1, epochs + 1):
            loss[:, epoch - 1] = self.run_epoch(epoch).cpu().numpy() / self.rows_per_unit  # the epoch's one read
            check_finite_loss(loss[:, epoch - 1], labels, epoch, self.lr, "ELBO loss")
            logger.debug("epoch %d: mean loss per example %s", epoch, np.round(loss[:, epoch - 1], 3))
            if on_epoch is not None:
                on_epoch(epoch, self.units, self)
        return loss

    def run_epoch(self, epoch):
        """Train every unit for epoch ``epoch`` (1-based); returns the summed loss per unit, [U] on the device."""
        order, weight = epoch_order(self.keys, self.member, self.n_rows, epoch, self.steps * self.batch)
        weight = weight.to(self.X.dtype)
        span = self.block * self.batch
        loss = torch.zeros(self.n_units, dtype=self.X.dtype, device=self.X.device)
        for b, first in enumerate(range(0, self.steps, self.block)):
            step_units = tuple(self._units[p] for p in self._pattern[first:first + self.block])
            args = (order[:, b * span:(b + 1) * span], weight[:, b * span:(b + 1) * span],
                    self.active[:, first:first + self.block])
            loss += self._run_block(args, epoch, first, step_units)
        return loss

    def _run_block(self, args, epoch, first, step_units):
        counters = (epoch, first)
        if not self.use_graph:
            return self._block(*args, *(torch.full((), c, dtype=torch.int64, device=self.X.device)
                                        for c in counters), step_units)
        if self._static is None:
            self._static = [a.clone() for a in args] + [torch.zeros((), dtype=torch.int64, device=self.X.device)
                                                        for _ in counters]
        for buffer, value in zip(self._static, args):
            buffer.copy_(value)
        for buffer, value in zip(self._static[len(args):], counters):
            buffer.fill_(value)
        if step_units not in self._graphs:
            self._graphs[step_units] = self._capture(step_units)
        graph, loss = self._graphs[step_units]
        graph.replay()
        return loss

    def _capture(self, step_units):
        """Capture :meth:`_block` for the steps' active units ``step_units`` as a CUDA graph.

        PyTorch's recipe: warm up on a side stream (lazy initialisation,
        compilation), then capture. The warm-up really trains, so the units'
        parameters and Adam state are saved before it and restored after.
        """
        device = self.X.device
        adam = self.adam
        saved = [t.clone() for t in (adam.flat, adam.exp_avg, adam.exp_avg_sq, adam.steps)]
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._block(*self._static, step_units)
            for state, copy in zip((adam.flat, adam.exp_avg, adam.exp_avg_sq, adam.steps), saved):
                state.copy_(copy)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                loss = self._block(*self._static, step_units)
        except RuntimeError as err:
            raise GenmemError(f"capturing the VAE training step as a CUDA graph failed ({err}); "
                              "run with --no-cuda-graph (VAE(cuda_graph=False))") from err
        logger.debug("captured a CUDA graph of %d steps", self.block)
        return graph, loss
