"""Adam over stacked units: one update of every unit's parameters at once, nothing read back.

The parameters of U units live in one buffer ``[U, P]`` (a row per unit).
:class:`StackedAdam` keeps the moments in buffers of the same shape and each
unit's step count in a ``[U]`` tensor, so an update is a fixed handful of
elementwise operations whatever U is, with no host synchronisation — the
shape PyTorch's multi-tensor and fused Adam give a list of tensors, here
with per-unit step counts and a per-unit "sits out this step" mask. A unit
that sits out keeps its parameters, moments and step count exactly.

:func:`adam_update_` is the pure update; on CUDA it can be compiled into one
kernel (``torch.compile``) and captured in a CUDA graph with the rest of the
training step. ``tests/test_stacked_adam.py`` checks it against
``torch.optim.Adam`` run unit by unit.
"""
import torch


def adam_update_(param, grad, exp_avg, exp_avg_sq, steps, active, lr, beta1, beta2, eps):
    """One Adam step of the active units, in place.

    Parameters
    ----------
    param, grad, exp_avg, exp_avg_sq : Tensor [U, P]
    steps : Tensor [U]
        Steps taken so far (float); incremented for the active units.
    active : bool Tensor [U]
        Units that take this step; the others are left exactly as they are.
    lr, beta1, beta2, eps : float
        Adam's settings (``torch.optim.Adam`` defaults: betas 0.9, 0.999, eps 1e-8).

    Notes
    -----
    The arithmetic of an active unit is that of ``torch.optim.Adam``'s
    single-tensor path (``lerp_``, ``mul_``/``addcmul_``, bias corrections
    from the step count, ``addcdiv_``), so it agrees to the last bits.
    """
    on = active.unsqueeze(1)
    steps.add_(active.to(steps.dtype))
    step = steps.unsqueeze(1)
    new_avg = torch.lerp(exp_avg, grad, 1.0 - beta1)
    new_avg_sq = torch.addcmul(exp_avg_sq * beta2, grad, grad, value=1.0 - beta2)
    step_size = lr / (1.0 - torch.pow(beta1, step))
    bias_correction2_sqrt = torch.sqrt(1.0 - torch.pow(beta2, step))
    denom = (new_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    new_param = param + (new_avg / denom) * (-step_size)
    exp_avg.copy_(torch.where(on, new_avg, exp_avg))
    exp_avg_sq.copy_(torch.where(on, new_avg_sq, exp_avg_sq))
    param.copy_(torch.where(on, new_param, param))


class StackedAdam:
    """Adam state of U units whose parameters are the rows of one buffer.

    Parameters
    ----------
    flat : Tensor [U, P]
        The units' parameters, updated in place by :meth:`step`.
    lr : float
    betas : (float, float), default=(0.9, 0.999)
    eps : float, default=1e-8
    compile : bool, default=False
        Compile the update with ``torch.compile`` (one fused kernel on CUDA);
        falls back to the eager update where compiling fails.
    """

    def __init__(self, flat, lr, betas=(0.9, 0.999), eps=1e-8, compile=False):
        self.flat = flat
        self.exp_avg = torch.zeros_like(flat)
        self.exp_avg_sq = torch.zeros_like(flat)
        self.steps = torch.zeros(flat.shape[0], dtype=flat.dtype, device=flat.device)
        self.settings = (float(lr), float(betas[0]), float(betas[1]), float(eps))
        self.update = adam_update_
        if compile:
            self.update = torch.compile(adam_update_, fullgraph=True, dynamic=False)

    def step(self, grad, active):
        """Apply ``grad`` [U, P] to the units where ``active`` (bool tensor [U]) is true."""
        self.update(self.flat, grad, self.exp_avg, self.exp_avg_sq, self.steps, active, *self.settings)
