"""Adam over stacked units: one update of every unit's parameters at once, nothing read back.

The parameters of U units live in one buffer ``[U, P]`` (a row per unit).
:class:`StackedAdam` keeps the moments in buffers of the same shape, each
unit's step count in a ``[U]`` tensor and the gradient in a buffer of the same
shape that the caller fills. A unit that sits out a step (a smaller fold)
keeps its parameters, moments and step count exactly as they are.

On CUDA an update is one call of PyTorch's fused Adam kernel
(``torch._fused_adam_``, what ``torch.optim.Adam(fused=True)`` runs) over the
rows of the units that take the step — each row (or each piece of a row, a
layer's weight, when the gradient comes in pieces) its own tensor with its
own step count on the device — so it reads and writes each number once (28
bytes per float32 parameter), reads the gradient where autograd left it,
launches the same work whatever U is and never synchronises with the host.
Elsewhere (the CPU kernel reads every step count
back with ``.item()``; old PyTorch) the same update runs as a few elementwise
operations over the whole buffer (:func:`adam_update_`), in place when every
unit takes the step. ``tests/test_stacked_adam.py`` checks both against
``torch.optim.Adam`` run unit by unit.
"""
import logging
import math

import torch

from ..errors import GenmemError

logger = logging.getLogger(__name__)


def adam_update_(param, grad, exp_avg, exp_avg_sq, steps, active, lr, beta1, beta2, eps, every=False):
    """One Adam step of the active units as elementwise operations over the whole buffer, in place.

    Parameters
    ----------
    param, grad, exp_avg, exp_avg_sq : Tensor [U, P]
    steps : Tensor [U]
        Steps taken so far (float); incremented for the active units.
    active : bool Tensor [U]
        Units that take this step; the others are left exactly as they are.
    lr, beta1, beta2, eps : float
        Adam's settings (``torch.optim.Adam`` defaults: betas 0.9, 0.999, eps 1e-8).
    every : bool, default=False
        Every unit is active (known to the caller): update in place, unmasked,
        using ``grad`` as scratch space (it is overwritten).

    Notes
    -----
    The arithmetic of an active unit is that of ``torch.optim.Adam``'s
    single-tensor path (``lerp_``, ``mul_``/``addcmul_``, bias corrections
    from the step count, ``addcdiv_``).
    """
    steps.add_(active.to(steps.dtype))
    step = steps.unsqueeze(1)
    step_size = lr / (1.0 - torch.pow(beta1, step))
    bias_correction2_sqrt = torch.sqrt(1.0 - torch.pow(beta2, step))
    if every:  # in place, in one scratch buffer (the gradient's: it is spent once the moments have it)
        exp_avg.lerp_(grad, 1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        denom = torch.sqrt(exp_avg_sq, out=grad).div_(bias_correction2_sqrt).add_(eps)
        param.add_(torch.div(exp_avg, denom, out=denom).mul_(-step_size))
        return
    on = active.unsqueeze(1)
    new_avg = torch.lerp(exp_avg, grad, 1.0 - beta1)
    new_avg_sq = torch.addcmul(exp_avg_sq * beta2, grad, grad, value=1.0 - beta2)
    denom = (new_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    new_param = param + (new_avg / denom) * (-step_size)
    exp_avg.copy_(torch.where(on, new_avg, exp_avg))
    exp_avg_sq.copy_(torch.where(on, new_avg_sq, exp_avg_sq))
    param.copy_(torch.where(on, new_param, param))


def _fused_available(like):
    """Whether ``torch._fused_adam_`` runs for tensors like ``like`` (device and dtype)."""
    probe = [torch.zeros(2, dtype=like.dtype, device=like.device) for _ in range(4)]
    try:
        torch._fused_adam_([probe[0]], [probe[1]], [probe[2]], [probe[3]], [],
                           [torch.ones((), dtype=torch.float32, device=like.device)], amsgrad=False, lr=0.0,
                           beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8, maximize=False)
    except (AttributeError, RuntimeError, NotImplementedError, TypeError) as err:
        logger.debug("no fused Adam for %s %s (%s): masked elementwise update", like.device, like.dtype, err)
        return False
    return True


class StackedAdam:
    """Adam state of U units whose parameters are the rows of one buffer.

    Parameters
    ----------
    flat : Tensor [U, P]
        The units' parameters, updated in place by :meth:`step`.
    lr : float
    betas : (float, float), default=(0.9, 0.999)
    eps : float, default=1e-8
    fused : bool, optional
        Use PyTorch's fused kernel (where it has one for this device and
        dtype); default: on CUDA only.
    shapes : list of tuples, optional
        The per-unit shapes of the pieces a row is made of, in order (e.g.
        the layers' weights and biases): the shapes of the gradients
        :meth:`step` may be given. Default: one piece, the whole row.

    Attributes
    ----------
    grad : Tensor [U, P]
        Where the caller puts the gradient before :meth:`step` (which may
        use it as scratch space).
    steps : Tensor [U]
        Adam steps each unit has taken.
    """

    def __init__(self, flat, lr, betas=(0.9, 0.999), eps=1e-8, fused=None, shapes=None):
        self.flat = flat
        self.shapes = [tuple(shape) for shape in shapes] if shapes is not None else [(flat.shape[1],)]
        if sum(math.prod(shape) for shape in self.shapes) != flat.shape[1]:
            raise GenmemError(f"the pieces {self.shapes} do not make up rows of {flat.shape[1]} parameters")
        self.grad = torch.zeros_like(flat)
        self.exp_avg = torch.zeros_like(flat)
        self.exp_avg_sq = torch.zeros_like(flat)
        self.lr, self.beta1, self.beta2, self.eps = float(lr), float(betas[0]), float(betas[1]), float(eps)
        if fused is None:
            fused = flat.device.type == "cuda"
        self.fused = bool(fused) and _fused_available(flat)
        # the fused kernels read float32 step counts (torch.optim's convention); the elementwise path
        # computes the bias corrections in the parameters' precision, as torch.optim's single-tensor path
        steps_dtype = torch.float32 if self.fused else flat.dtype
        self.steps = torch.zeros(flat.shape[0], dtype=steps_dtype, device=flat.device)
        # fused: per buffer, piece and unit the view of that unit's piece (what the kernel's lists hold)
        if self.fused:
            self._views = {name: [piece.unbind(0) for piece in self._pieces(buffer)]
                           for name, buffer in (("param", flat), ("grad", self.grad), ("exp_avg", self.exp_avg),
                                                ("exp_avg_sq", self.exp_avg_sq))}
            self._step_views = self.steps.unbind(0)
        self._lists = {}

    def _pieces(self, buffer):
        """``buffer`` [U, P] as its pieces, [U, *shape] views in row order."""
        pieces, offset = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            pieces.append(buffer[:, offset:offset + size].view(buffer.shape[0], *shape))
            offset += size
        return pieces

    def _unit_lists(self, units):
        """The fused kernel's lists (piece-major, then unit) for the units ``units`` (cached per set of units)."""
        if units not in self._lists:
            self._lists[units] = [[views[u] for views in self._views[name] for u in units]
                                  for name in ("param", "grad", "exp_avg", "exp_avg_sq")] + [
                [self._step_views[u] for _ in self.shapes for u in units]]
        return self._lists[units]

    def step(self, active, units, grads=None):
        """Apply the gradient to the units that take this step.

        Parameters
        ----------
        active : bool Tensor [U]
            The units that take the step, on the device.
        units : tuple of int
            The same units as host indices (which rows the fused kernel updates).
        grads : list of Tensor [U, *shape], optional
            The gradient as pieces of the shapes given at construction. The
            fused kernel reads them where they are; the elementwise update
            gathers them into :attr:`grad` first. Default: :attr:`grad`,
            filled by the caller.
        """
        if not self.fused:
            if grads is not None:
                torch.cat([g.reshape(len(self.flat), -1) for g in grads], 1, out=self.grad)
            adam_update_(self.flat, self.grad, self.exp_avg, self.exp_avg_sq, self.steps, active,
                         self.lr, self.beta1, self.beta2, self.eps, every=len(units) == len(self.flat))
            return
        if not units:  # a padding step of the block: nobody moves
            return
        self.steps.add_(active.to(self.steps.dtype))
        params, grad_views, avgs, avg_sqs, steps = self._unit_lists(units)
        if grads is not None:  # one unbind per piece, whatever the number of units
            rows = [g.contiguous().unbind(0) for g in grads]
            grad_views = [piece[u] for piece in rows for u in units]
        torch._fused_adam_(params, grad_views, avgs, avg_sqs, [], steps, amsgrad=False, lr=self.lr,
                           beta1=self.beta1, beta2=self.beta2, weight_decay=0.0, eps=self.eps, maximize=False)
