"""Several processes on one run: torchrun ranks and job-array shards.

A K-fold run's unit of work is the (repeat, fold) unit, and every unit draws
its numbers from its own seed, so any process may compute any unit and get
the numbers a single process would. Two ways to spread them:

- **torchrun** (``torch.distributed``): ``torchrun --nproc-per-node P -m
  genmem kfold …`` starts P processes that read ``RANK``, ``WORLD_SIZE`` and
  ``LOCAL_RANK`` (:func:`torchrun_world`), join one process group (NCCL on
  CUDA, gloo on the CPU; :class:`ProcessGroup`), take the pending units
  ``pending[rank::world_size]`` (:func:`share`) and send what they computed
  to rank 0, the only process that writes the results file.
- **shards** for schedulers that run job arrays (SLURM ``--array``,
  submitit): ``--shard I/N`` (:func:`parse_shard`) runs the units
  ``units[I::N]`` into their own file ``OUT.shard-I-of-N``
  (:func:`shard_path`); ``genmem merge OUT`` combines the shards.

Both assignments depend only on the unit list and the number of processes.
"""
import datetime
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import GenmemError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class World:
    """The place of this process among those torchrun started."""

    rank: int
    size: int
    local_rank: int

    @property
    def root(self):
        """Rank 0: the process that writes results."""
        return self.rank == 0


def torchrun_world():
    """The :class:`World` of a process started by torchrun with more than one process, else None."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise GenmemError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None
    if size <= 1:
        return None
    if not 0 <= rank < size or local_rank < 0:
        raise GenmemError(f"RANK={rank} is not in [0, WORLD_SIZE={size}); start genmem with torchrun")
    return World(rank, size, local_rank)


def parse_shard(text):
    """``(I, N)`` from ``"I/N"`` with ``0 <= I < N``; a :class:`GenmemError` otherwise."""
    if isinstance(text, tuple):
        text = "/".join(str(v) for v in text)
    match = _SHARD.match(str(text))
    if not match:
        raise GenmemError(f"--shard takes I/N (shard I of N, counted from 0), e.g. --shard 0/4; got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise GenmemError(f"--shard {index}/{count}: the shard index must be in 0..{count - 1}"
                          if count >= 1 else "--shard I/N needs N >= 1")
    return index, count


def share(units, index, count):
    """The units of process ``index`` of ``count``: ``units[index::count]`` of the given (sorted) unit list."""
    return list(units)[index::count]


def shard_path(out, index, count):
    """The file of shard ``index`` of ``count`` of the results file ``out``: ``OUT.shard-I-of-N``."""
    out = Path(out)
    return out.with_name(f"{out.name}.shard-{index}-of-{count}")


def shard_files(out):
    """``{(I, N): path}`` of the shard files of ``out`` present beside it (partials and unit folders excluded)."""
    out = Path(out)
    pattern = re.compile(re.escape(out.name) + r"\.shard-(\d+)-of-(\d+)$")
    found = {}
    if out.parent.is_dir():
        for path in out.parent.iterdir():
            match = pattern.match(path.name)
            if match and path.is_file():
                found[int(match.group(1)), int(match.group(2))] = path
    return found


def rank_partial(out, rank):
    """The progress file of torchrun rank ``rank`` for the results file ``out``: ``OUT.rank-R.partial``."""
    out = Path(out)
    return out.with_name(f"{out.name}.rank-{rank}.partial")


def rank_partials(out):
    """The rank progress files of ``out`` present beside it (of this or an earlier session, any world size)."""
    out = Path(out)
    pattern = re.compile(re.escape(out.name) + r"\.rank-\d+\.partial$")
    return sorted(p for p in out.parent.iterdir() if pattern.match(p.name)) if out.parent.is_dir() else []


def rank_device(device, world):
    """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA device, else ``device`` as it is."""
    if not str(device).startswith("cuda"):
        return device
    visible = torch.cuda.device_count()
    if world.local_rank >= visible:
        raise GenmemError(
            f"rank {world.rank} (local rank {world.local_rank}) cannot see a GPU: {visible} visible on this node; "
            "start at most that many processes per node (torchrun --nproc-per-node) or check CUDA_VISIBLE_DEVICES"
        )
    return f"cuda:{world.local_rank}"


class ProcessGroup:
    """The ``torch.distributed`` process group of a torchrun world, for the length of a ``with`` block.

    NCCL when the ranks compute on CUDA, else gloo; initialised from
    torchrun's environment (``env://``) and, after a barrier when the block
    ends without an error, destroyed. Objects travel with :meth:`broadcast`
    and :meth:`gather`.
    """

    def __init__(self, world, device, timeout_minutes=60):
        self.world, self.device = world, str(device)
        self.timeout = datetime.timedelta(minutes=timeout_minutes)

    def __enter__(self):
        cuda = self.device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(torch.device(self.device))
        if not torch.distributed.is_available():
            raise GenmemError("this PyTorch build has no torch.distributed; run genmem without torchrun")
        torch.distributed.init_process_group("nccl" if cuda else "gloo", timeout=self.timeout)
        return self

    def __exit__(self, kind, err, tb):
        if kind is None:  # no rank leaves while another still talks to it (gloo aborts on a closed peer)
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        return False

    def broadcast(self, value):
        """``value`` of rank 0, on every rank."""
        box = [value if self.world.root else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value):
        """The list of every rank's ``value`` on rank 0 (rank order); None on the others."""
        out = [None] * self.world.size if self.world.root else None
        torch.distributed.gather_object(value, out, dst=0)
        return out
