"""Feature maps f for the neighbour bank.

An *embedder* is any object with ``embed(X) -> array [N, d]`` and a
JSON-serialisable ``description`` dict (``{"name": ..., ...}``). Embedders are
made from a spec string by :func:`make_embedder` through a registry; adding
one is a small factory function::

    @register_embedder("mymodel")
    def _mymodel(arg, train_X, *, device, seed):
        model = load_my_model(arg)
        return CallableEmbedder(model.features, {"name": "mymodel", "checkpoint": arg})

Specs: ``"pixels"`` (flatten), ``"pca:D"`` (PCA fitted on the training data),
``"vae:CHECKPOINT"`` (a trained genmem VAE's encoder mean, from a checkpoint
file that ``genmem kfold --model vae --checkpoints N`` saved),
``"imagenet:ARCH:WEIGHTS"`` (a torchvision ImageNet classifier's penultimate
layer, from a local weights file; never downloaded). Precomputed features
(``"npy:PATH"`` or an array) are handled by the bank itself
(:class:`PrecomputedFeatures`). Any ``torch.nn.Module`` or callable is wrapped
by :func:`as_embedder`.
"""
import importlib.util
from pathlib import Path

import numpy as np
import torch

from ..device import resolve_device
from ..errors import GenmemError

#: Spec name -> factory(arg, train_X, *, device, seed) -> embedder.
EMBEDDERS = {}
#: Images per forward pass of a torch embedder.
TORCH_BATCH_SIZE = 256
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_SIZE = 224


def register_embedder(name):
    """Decorator registering ``factory(arg, train_X, *, device, seed)`` under the spec ``name[:arg]``."""

    def decorate(factory):
        EMBEDDERS[name] = factory
        return factory

    return decorate


def flatten(X, name="X"):
    """``X`` [N, ...] as a float64 [N, D] array; GenmemError for non-numeric, empty or non-finite input."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise GenmemError(f"{name} must be a numeric array [N, ...]; got {type(X).__name__}") from None
    if X.ndim < 2 or X.shape[0] == 0 or X.size == 0:
        raise GenmemError(f"{name} must be a non-empty array [N, ...] with N >= 1; got shape {X.shape}")
    X = X.reshape(len(X), -1)
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise GenmemError(f"{name} contains NaN or inf in {len(rows)} row(s) (first: row {rows[0]}); "
                          "remove or impute them")
    return X


class PixelEmbedder:
    """``f(x)`` = the flattened pixels (or features) of ``x``."""

    description = {"name": "pixels"}

    def embed(self, X):
        """Flatten ``X`` [N, ...] to float64 [N, D]."""
        return flatten(X)

    def state(self):
        """Arrays needed to rebuild the embedder (none)."""
        return {}

    @classmethod
    def from_state(cls, description, arrays):
        return cls()


class PCAEmbedder:
    """``f(x) = W (x − μ)``: projection onto principal components of the training data.

    Parameters
    ----------
    mean : ndarray [D]
    components : ndarray [d, D]
        Orthonormal rows (scikit-learn ``PCA.components_``).
    explained_variance_ratio : float
        Share of the training variance the components keep.
    """

    def __init__(self, mean, components, explained_variance_ratio):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.components = np.asarray(components, dtype=np.float64)
        self.description = {"name": "pca", "n_components": int(self.components.shape[0]),
                            "input_dim": int(self.components.shape[1]),
                            "explained_variance_ratio": float(explained_variance_ratio)}

    @classmethod
    def fit(cls, train_X, n_components, seed=0):
        """Fit scikit-learn's PCA (``random_state=seed``) on the flattened ``train_X``."""
        from sklearn.decomposition import PCA

        X = flatten(train_X, "train_X")
        if not 1 <= n_components <= min(X.shape):
            raise GenmemError(f"pca:{n_components} needs 1 <= D <= min(examples, features) = {min(X.shape)}; "
                              "choose fewer components")
        pca = PCA(n_components=n_components, random_state=seed).fit(X)
        return cls(pca.mean_, pca.components_, pca.explained_variance_ratio_.sum())

    def embed(self, X):
        """Project ``X`` [N, ...] (flattened) onto the components: float64 [N, d]."""
        X = flatten(X)
        if X.shape[1] != self.components.shape[1]:
            raise GenmemError(f"the PCA was fitted on {self.components.shape[1]} features but X has {X.shape[1]}; "
                              "give inputs shaped like the training data")
        return (X - self.mean) @ self.components.T

    def state(self):
        """Arrays needed to rebuild the embedder."""
        return {"mean": self.mean, "components": self.components}

    @classmethod
    def from_state(cls, description, arrays):
        return cls(arrays["mean"], arrays["components"], description["explained_variance_ratio"])


class PrecomputedFeatures:
    """The identity map for inputs that already are features of dimension ``dim``."""

    def __init__(self, dim, source="array"):
        self.dim = int(dim)
        self.description = {"name": "precomputed", "dim": self.dim, "source": str(source)}

    def embed(self, X):
        """Return ``X`` [N, dim] (flattened) as float64."""
        X = flatten(X, "features")
        if X.shape[1] != self.dim:
            raise GenmemError(f"precomputed features have {self.dim} dimensions but the queries have {X.shape[1]}; "
                              "compute the queries' features with the same feature map")
        return X

    def state(self):
        return {}

    @classmethod
    def from_state(cls, description, arrays):
        return cls(description["dim"], description["source"])


class CallableEmbedder:
    """Wraps a function ``fn(X) -> array [N, d]`` (NumPy or torch output)."""

    def __init__(self, fn, description=None):
        self.fn = fn
        self.description = description or {"name": "callable",
                                           "function": getattr(fn, "__qualname__", type(fn).__name__)}

    def embed(self, X):
        """``fn(X)`` as float64 [N, d]."""
        return flatten(self.fn(X), "embedded features")


class TorchEmbedder:
    """Runs a ``torch.nn.Module`` in eval mode, without gradients, in batches on a device.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a float tensor [B, ...] (the input's own shape) to [B, ...]
        (flattened to [B, d]).
    device : str or torch.device
    batch_size : int
    preprocess : callable, optional
        Applied to each float32 batch tensor on the device before the module.
    description : dict, optional
    """

    def __init__(self, module, device="auto", batch_size=TORCH_BATCH_SIZE, preprocess=None, description=None):
        self.device = resolve_device(device)
        self.module = module.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.preprocess = preprocess
        self.description = description or {"name": "torch", "module": type(module).__name__}

    def embed(self, X):
        """The module's outputs for ``X`` [N, ...], flattened to float64 [N, d]."""
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        flatten(X)  # numeric, non-empty, finite
        X = np.asarray(X, dtype=np.float32)
        out = []
        with torch.no_grad():
            for start in range(0, len(X), self.batch_size):
                batch = torch.as_tensor(X[start:start + self.batch_size], device=self.device)
                if self.preprocess is not None:
                    batch = self.preprocess(batch)
                out.append(self.module(batch).reshape(len(batch), -1).double().cpu())
        return flatten(torch.cat(out).numpy(), "embedded features")


def as_embedder(obj, train_X=None, *, device="auto", seed=0):
    """An embedder from a spec string, an object with ``embed``, a torch module or a callable.

    Parameters
    ----------
    obj : str or object
        ``"pixels"``, ``"pca:D"``, ``"imagenet:ARCH:WEIGHTS"`` or another
        registered spec; an object with an ``embed(X)`` method (used as it
        is); a ``torch.nn.Module``; a callable ``fn(X) -> [N, d]``.
    train_X : array [N, ...], optional
        Training data, for embedders fitted on it (PCA).
    device : str
        Where torch embedders run.
    seed : int
        Seed of embedders that draw random numbers (PCA's solver).
    """
    if isinstance(obj, str):
        return make_embedder(obj, train_X, device=device, seed=seed)
    if hasattr(obj, "embed"):
        return obj
    if isinstance(obj, torch.nn.Module):
        return TorchEmbedder(obj, device=device)
    if callable(obj):
        return CallableEmbedder(obj)
    raise GenmemError(f"cannot use a {type(obj).__name__} as a feature map; give a spec ({', '.join(EMBEDDERS)}), "
                      "an array of features, a torch module, a callable or an object with embed(X)")


def make_embedder(spec, train_X=None, *, device="auto", seed=0):
    """The embedder of a registered spec ``name`` or ``name:arg`` (see :data:`EMBEDDERS`)."""
    name, _, arg = str(spec).partition(":")
    if name not in EMBEDDERS:
        raise GenmemError(f"unknown feature map {spec!r}; use one of "
                          f"{', '.join(EMBEDDERS)} (as 'pixels', 'pca:50', 'imagenet:resnet50:WEIGHTS.pth'), "
                          "or npy:PATH for precomputed features")
    embedder = EMBEDDERS[name](arg or None, train_X, device=device, seed=seed)
    embedder.description = {**embedder.description, "spec": str(spec)}
    return embedder


@register_embedder("pixels")
def _pixels(arg, train_X, *, device, seed):
    if arg is not None:
        raise GenmemError(f"the pixels feature map takes no argument; got 'pixels:{arg}'")
    return PixelEmbedder()


@register_embedder("pca")
def _pca(arg, train_X, *, device, seed):
    try:
        n_components = int(arg)
    except (TypeError, ValueError):
        raise GenmemError(f"pca needs a number of components, e.g. 'pca:50'; got 'pca:{arg or ''}'") from None
    if train_X is None:
        raise GenmemError("the pca feature map is fitted on the training data; give train_X")
    return PCAEmbedder.fit(train_X, n_components, seed=seed)


@register_embedder("vae")
def _vae(arg, train_X, *, device, seed):
    from ..models.vae import VAE  # imported here, not for a cycle: banks of other feature maps need not load Pyro

    if not arg:
        raise GenmemError("the vae feature map needs a checkpoint file, e.g. 'vae:run.h5.units/unit_r0_k0.pt' "
                          "(saved by genmem kfold --model vae --checkpoints N)")
    if not Path(arg).is_file():
        raise GenmemError(f"no such VAE checkpoint file: {arg}; give one saved by genmem kfold --model vae --checkpoints N")
    model = VAE.from_checkpoint(arg, device=str(resolve_device(device)))
    return CallableEmbedder(lambda X: model.embed(np.asarray(X).reshape(len(X), -1)),
                            {"name": "vae", "checkpoint": str(arg), "latent_dim": model.latent_dim})


@register_embedder("imagenet")
def _imagenet(arg, train_X, *, device, seed):
    arch, _, weights = (arg or "").partition(":")
    if not arch or not weights:
        raise GenmemError("the imagenet feature map needs an architecture and a local weights file, "
                          "e.g. 'imagenet:resnet50:/models/resnet50.pth' (weights are never downloaded)")
    return imagenet_embedder(arch, weights, device=device)


def imagenet_embedder(arch, weights, *, device="auto", batch_size=64):
    """Penultimate-layer features of a torchvision ImageNet classifier from a local weights file.

    Inputs are images in [0, 1]: [N, H, W] (grey, repeated to 3 channels),
    [N, H, W, 3] or [N, 3, H, W]; they are resized to 224×224 (bilinear) and
    normalised with the ImageNet mean and standard deviation. The final
    classification layer is replaced by the identity.

    Parameters
    ----------
    arch : str
        A ``torchvision.models`` architecture name, e.g. ``"resnet50"``.
    weights : path-like
        A state dict saved with ``torch.save`` (e.g. torchvision's released
        ``.pth`` file), read with ``weights_only=True``.
    """
    if importlib.util.find_spec("torchvision") is None:
        raise GenmemError("the imagenet feature map needs torchvision, which is not installed; "
                          "pip install torchvision, or use pixels, pca:D or npy:PATH")
    import torchvision

    path = Path(weights).expanduser()
    if not path.is_file():
        raise GenmemError(f"weights file {path} does not exist; download it yourself (genmem never downloads) "
                          "and give its path")
    try:
        model = torchvision.models.get_model(arch, weights=None)
    except ValueError:
        raise GenmemError(f"torchvision has no model {arch!r}; see torchvision.models.list_models()") from None
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, KeyError) as exc:
        raise GenmemError(f"cannot load {path} into {arch} ({str(exc).splitlines()[0]}); "
                          "give the state dict of that architecture") from None
    if isinstance(getattr(model, "fc", None), torch.nn.Linear):
        model.fc = torch.nn.Identity()
    elif isinstance(getattr(model, "classifier", None), torch.nn.Sequential) and isinstance(
            model.classifier[-1], torch.nn.Linear):
        model.classifier[-1] = torch.nn.Identity()
    else:
        raise GenmemError(f"{arch} has no final linear layer 'fc' or 'classifier[-1]' to remove; "
                          "wrap the model yourself and pass it as a torch module")
    return TorchEmbedder(model, device=device, batch_size=batch_size, preprocess=_imagenet_preprocess,
                         description={"name": "imagenet", "arch": arch, "weights": str(path)})


def _imagenet_preprocess(batch):
    """Images in [0, 1] to ImageNet-normalised [B, 3, 224, 224]."""
    if batch.ndim == 3:
        batch = batch[:, None]
    elif batch.ndim == 4 and batch.shape[-1] in (1, 3) and batch.shape[1] not in (1, 3):
        batch = batch.permute(0, 3, 1, 2)
    if batch.ndim != 4 or batch.shape[1] not in (1, 3):
        raise GenmemError(f"the imagenet feature map needs images [N, H, W], [N, H, W, C] or [N, C, H, W] with "
                          f"C in (1, 3); got a batch of shape {tuple(batch.shape)}")
    batch = batch.expand(-1, 3, -1, -1)
    batch = torch.nn.functional.interpolate(batch, size=(IMAGENET_SIZE, IMAGENET_SIZE), mode="bilinear",
                                            align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD, device=batch.device)[None, :, None, None]
    return (batch - mean) / std


#: Embedders a saved bank can rebuild from its file.
RESTORABLE = {"pixels": PixelEmbedder, "pca": PCAEmbedder, "precomputed": PrecomputedFeatures}
