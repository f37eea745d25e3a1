"""Choosing the torch device a computation runs on, and its matrix-product precision."""
import contextlib

import torch

from .errors import GenmemError

DEVICES = ("auto", "cpu", "cuda")
#: Floating-point types a computation may run in, by name.
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def torch_dtype(name):
    """The torch dtype called ``name`` ("float32" or "float64")."""
    try:
        return DTYPES[str(name)]
    except KeyError:
        raise GenmemError(f"dtype must be 'float64' or 'float32'; got {name!r}") from None


def resolve_device(device="auto"):
    """Return the :class:`torch.device` for ``device``.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"} or str or torch.device
        ``"auto"`` picks CUDA when it is available and the CPU otherwise;
        ``"cuda:1"`` and similar explicit names pass through.

    Returns
    -------
    torch.device
    """
    if isinstance(device, torch.device):
        return device
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GenmemError(
            f"device {name!r} was asked for but no CUDA GPU is available; use --device cpu or auto"
        )
    try:
        return torch.device(name)
    except RuntimeError:
        raise GenmemError(f"unknown device {name!r}; use one of {', '.join(DEVICES)}") from None


def describe_device(device):
    """A short human-readable description of ``device`` for result files."""
    device = resolve_device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


@contextlib.contextmanager
def matmul_precision(device, tf32):
    """Within the block, float32 matrix products on a CUDA ``device`` use TF32 iff ``tf32``; restored after.

    No effect on other devices. (PyTorch's default is full float32 for
    matrix products and TF32 for cuDNN convolutions.)
    """
    if resolve_device(device).type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(tf32)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
