"""Device memory of training VAE units: a model of what a batch of units needs, and the error when it runs out."""
import logging

import torch

from ...errors import GenmemError
from .train import BLOCK_BYTES, MAX_BLOCK

logger = logging.getLogger(__name__)

#: Share of the free GPU memory the units of one batch may plan to use.
FREE_SHARE = 0.85


def training_bytes(n_rows, n_features, n_units, *, n_params, itemsize, batch_size, eval_chunk, latent_dim, hidden):
    """Rough device memory of training and scoring ``n_units`` units on ``n_rows`` × ``n_features`` data.

    A model, not a measurement: parameters with gradients, Adam moments and
    update temporaries (≈ 10 copies of the ``n_params`` parameters per unit),
    a block of minibatches and their activations, the epoch plan (argsort
    over the rows), one evaluation chunk (``eval_chunk`` rows × samples
    through the decoder, log weights in float64), plus the data and the
    random-number temporaries of a block (:data:`~genmem.models.vae.train.BLOCK_BYTES`).
    """
    widths = 2 * sum(int(h) for h in hidden) + 4 * int(latent_dim)
    batch, chunk = int(batch_size), int(eval_chunk)
    per_unit = (10 * n_params * itemsize
                + MAX_BLOCK * batch * (4 * n_features + int(latent_dim)) * itemsize
                + batch * (6 * n_features + 6 * widths) * itemsize
                + 32 * n_rows
                + chunk * ((3 * n_features + widths) * itemsize + 16) + 3 * 8 * n_rows)
    fixed = 2 * n_rows * n_features * itemsize + BLOCK_BYTES + (512 << 20)
    return fixed + n_units * per_unit


def units_that_fit(fixed, per_unit, device):
    """How many units of ``per_unit`` bytes (besides ``fixed`` bytes) fit in :data:`FREE_SHARE` of ``device``'s free memory."""
    free = torch.cuda.mem_get_info(device)[0]
    units = int((FREE_SHARE * free - fixed) // per_unit)
    logger.info("units per batch on %s: %d (%.1f GiB free, about %.2f GiB per unit + %.2f GiB)",
                device, units, free / 2**30, per_unit / 2**30, fixed / 2**30)
    if units < 1:
        raise GenmemError(
            f"one VAE unit needs about {(fixed + per_unit) / 2**30:.1f} GiB on {device} but "
            f"{free / 2**30:.1f} GiB are free; lower batch_size or eval_chunk, or run on the CPU"
        )
    return units


class oom_guard:
    """Turn running out of memory into a :class:`GenmemError` that says what to shrink."""

    def __init__(self, device, n_units, eval_chunk):
        self.device, self.n_units, self.eval_chunk = device, n_units, eval_chunk

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None:
            return False
        message = str(err).lower()
        oom = isinstance(err, torch.cuda.OutOfMemoryError) or (
            isinstance(err, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)
        )
        if oom:
            raise GenmemError(
                f"out of memory on {self.device} with {self.n_units} VAE unit(s) at once; hand fewer units per "
                f"batch (--units-per-batch, now {self.n_units}) or lower eval_chunk (now {self.eval_chunk}) "
                "or batch_size"
            ) from err
        return False
