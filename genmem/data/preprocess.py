"""Turning a :class:`~genmem.data.loaders.Dataset` into the matrix a density model sees.

The steps, always in this order: pad → flatten → dequantize *or* scale →
binarize → PCA. :func:`prepare` records every step and its parameters in a
JSON-serialisable ``info`` dict, together with the log-Jacobian that converts
a model's log-density in the prepared space into the space it states
(``info["units"]``: the key keeps its name in results files; in genmem's prose
a *unit* is a K-fold model).
"""
import math
from dataclasses import dataclass

import numpy as np

from ..errors import GenmemError
from ..seeds import DEQUANTIZE, stream_rng
from ..validation import check_allocation, check_int, check_param, has_spread, options
from .loaders import Dataset, _array_dataset

BINARIZE_MODES = ("fixed", "dynamic")
BINARIZE_THRESHOLD = 0.5


@dataclass
class Prepared:
    """A dataset ready for a density model.

    Attributes
    ----------
    X : float64 ndarray, shape [N, D]
        Exactly the array the density model is fitted on and scores.
    labels : int64 ndarray, shape [N]
        Class labels (-1 when unlabelled).
    index : int64 ndarray, shape [N]
        Position of each example in the source split.
    images : float32 ndarray, shape [N, *display_shape]
        The original (padded) examples rescaled to [0, 1] for plotting: before
        dequantization noise, binarization and PCA.
    info : dict
        Every step and its parameters (JSON-serialisable); see :func:`prepare`.
    pca : sklearn.decomposition.PCA or None
        The fitted PCA, to map further data (``pca.transform``) or model
        samples (``pca.inverse_transform``) between the spaces.
    label_names : list of str or None
        The class of each label code, where the data name their classes.
    """

    X: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    images: np.ndarray
    info: dict
    pca: object = None
    label_names: list = None


def prepare(dataset, *, labels=None, scale=True, pca=None, binarize=None, dequantize=False, pad_to=None, seed=0):
    """Preprocess ``dataset`` (a loaded dataset or your own array) for a density model, recording every step.

    Steps, in order:

    1. ``pad_to``: zero-pad images to ``pad_to`` × ``pad_to`` (or (H, W)),
       centred; an odd excess puts the extra row/column at the bottom/right.
    2. Flatten to [N, D].
    3. ``dequantize`` (discrete data only): ``y = (x + u) / levels`` with
       ``u ~ U[0, 1)^D`` from the stream ``genmem.seeds.stream_rng(seed, DEQUANTIZE)`` (``y = x + u``
       when ``scale=False``). Otherwise, with ``scale=True``, discrete data are
       divided by ``levels - 1`` (so they span [0, 1]) and continuous data are
       mapped by their global min/max to [0, 1]; ``scale=False`` leaves the
       values as they are.
    4. ``binarize="fixed"``: ``X = (X > 0.5)``, deterministic.
       ``binarize="dynamic"``: X stays in [0, 1]; the model itself must draw
       ``Bernoulli(X)`` afresh each epoch (only the VAE does this).
    5. ``pca``: project onto the first ``pca`` principal components of exactly
       this X (scikit-learn ``PCA``, ``whiten=False``, ``random_state=seed``).

    Parameters
    ----------
    dataset : Dataset or array [N, ...]
        From :func:`genmem.data.load_dataset`, or your own examples: a NumPy
        array or torch tensor (integers are read as discrete levels, floats
        as continuous values, [N, D] as tabular rows, [N, H, W(, C)] as images).
    labels : sequence [N], optional
        With an array: each example's class, of any hashable type (strings
        become codes 0, 1, … in sorted order, their names kept in
        ``label_names``); see :func:`genmem.data.encode_labels`.
    scale : bool
        Rescale to [0, 1] (see step 3).
    pca : int, optional
        Number of principal components, 1 <= pca < D.
    binarize : {None, "fixed", "dynamic"}
        Binarization mode; needs ``scale=True`` and excludes ``dequantize``.
    dequantize : bool
        Uniform dequantization of discrete data.
    pad_to : int or (int, int), optional
        Padded image height and width, at least the image's own.
    seed : int
        Seed of the dequantization noise and of the PCA solver.

    Returns
    -------
    Prepared
        ``info`` holds ``dataset``, ``split``, ``source``, ``n``,
        ``image_shape``, ``levels``, ``pad_to``, ``pad_offset``, ``scale``,
        ``scale_offset``, ``scale_divisor``, ``dequantize``, ``binarize``,
        ``binarize_threshold``, ``pca``, ``pca_explained_variance_ratio``
        (sum over the kept components), ``n_features``, ``seed``,
        ``log_jacobian``, ``units`` (in words, the space and measure of the
        log-density) and, where the data name their classes,
        ``label_names``.

    Notes
    -----
    ``info["log_jacobian"]`` is the constant to **add** to a model's
    per-example log p (in nats, in the prepared space) to get the log-density
    in the space ``info["units"]`` names:

    * scaling by ``1/c`` (``c = levels - 1`` or ``max - min``):
      ``log p_raw = log p_scaled - D log c``, the density over the raw values
      treated as continuous (not a probability of the discrete values);
    * dequantization ``y = (x + u) / L``: ``log p_y - D log L`` is the density
      of the dequantized values ``x + u`` on ``[0, L)^D``; because every
      discrete ``x`` owns the cube ``x + [0, 1)^D`` there, its expectation
      over ``u`` is also a lower bound on the discrete log-probability
      ``log P(x)`` (Theis, van den Oord & Bethge 2016);
    * binarization: the model gives a log-probability of binary pixels
      directly, Jacobian 0;
    * PCA: the log-density lives in the PCA space, Jacobian 0. No pixel-space
      density exists, because projecting D pixels onto ``pca < D`` components
      is not invertible: a density on the components puts all mass on a
      ``pca``-dimensional subspace of pixel space.

    Padded pixels count in D: the log-density is then one of the padded image.
    """
    dataset = _as_dataset(dataset, labels)
    _check_steps(dataset, scale, pca, binarize, dequantize, seed)
    x, pad_shape, pad_offset = dataset.x, None, None
    if pad_to is not None:
        x, pad_shape, pad_offset = _pad(x, dataset.image_shape, pad_to)
    shape = x.shape[1:]
    n = len(x)
    X = x.reshape(n, -1).astype(np.float64)
    d = X.shape[1]
    _check_pca(pca, n, d)

    offset, divisor = _range_to_01(X, dataset.levels)
    images = ((X - offset) / (divisor or 1.0)).astype(np.float32).reshape(n, *shape)
    where = (f"{'x'.join(map(str, shape))} {'padded ' if pad_to is not None else ''}image" if len(shape) > 1
             else f"rows of {shape[0]} features")
    offset, divisor, units = _dequantize_or_scale(X, dataset, scale, dequantize, seed, offset, divisor, where)
    X -= offset
    X /= divisor
    log_jacobian = -d * math.log(divisor)
    if binarize is not None:
        X, log_jacobian, units = _binarize(X, binarize, where)
    fitted, explained = None, None
    if pca is not None:
        X, fitted, explained = _project(X, pca, seed)
        log_jacobian = 0.0
        units = (
            f"log-density in the {int(pca)}-dimensional PCA space of the {d} prepared values "
            "(no pixel-space density exists: the projection is not invertible)"
        )

    info = {
        "dataset": dataset.name,
        "split": dataset.split,
        "source": dataset.source,
        "n": n,
        "image_shape": list(dataset.image_shape),
        "levels": dataset.levels,
        "pad_to": pad_shape,
        "pad_offset": pad_offset,
        "scale": bool(scale),
        "scale_offset": float(offset),
        "scale_divisor": float(divisor),
        "dequantize": bool(dequantize),
        "binarize": binarize,
        "binarize_threshold": BINARIZE_THRESHOLD if binarize == "fixed" else None,
        "pca": None if pca is None else int(pca),
        "pca_explained_variance_ratio": explained,
        "n_features": int(X.shape[1]),
        "seed": int(seed),
        "log_jacobian": float(log_jacobian),
        "units": units,
    }
    if dataset.label_names is not None:
        info["label_names"] = list(dataset.label_names)
    return Prepared(X, dataset.labels, dataset.index, images, info, fitted, dataset.label_names)


def _as_dataset(dataset, labels):
    """``dataset`` as a :class:`Dataset` (an array or tensor with ``labels`` becomes one)."""
    if not isinstance(dataset, Dataset):
        if hasattr(dataset, "detach"):  # a torch tensor
            dataset = dataset.detach().cpu().numpy()
        if not isinstance(dataset, (np.ndarray, list, tuple)):
            raise GenmemError(f"prepare needs a Dataset from genmem.data.load_dataset or an array [N, ...]; "
                              f"got {type(dataset).__name__}")
        return _array_dataset("array", "train", dataset, labels, "array")
    if labels is not None:
        raise GenmemError("labels= is for arrays: a Dataset carries its own labels (dataset.labels)")
    return dataset


def _check_steps(dataset, scale, pca, binarize, dequantize, seed):
    """Raise :class:`GenmemError` for steps of :func:`prepare` that do not go together or do not fit the data."""
    check_param(binarize, options(None, *BINARIZE_MODES), "binarize")
    if binarize is not None and dequantize:
        raise GenmemError("binarize and dequantize exclude each other: binary data need no dequantization; pick one")
    if binarize is not None and not scale:
        raise GenmemError("binarize thresholds values scaled to [0, 1]; use scale=True")
    if binarize == "dynamic" and pca is not None:
        raise GenmemError("binarize='dynamic' needs pixel values in [0, 1] for Bernoulli draws; drop pca")
    if dequantize and dataset.levels is None:
        raise GenmemError(f"dequantize needs discrete data; dataset {dataset.name!r} is continuous (levels=None)")
    check_int(seed, "seed", 0)


def _dequantize_or_scale(X, dataset, scale, dequantize, seed, offset, divisor, where):
    """Step 3: add the dequantization noise to ``X`` in place, or keep (``scale``) the [0, 1] map ``offset``,
    ``divisor`` of the raw values; returns the map to apply and what the log-density is then over."""
    d = X.shape[1]
    if dequantize:
        X += stream_rng(seed, DEQUANTIZE).random(X.shape)
        return 0.0, float(dataset.levels) if scale else 1.0, (
            f"log-density of the dequantized values x+u on [0, {dataset.levels})^{d} ({where}); "
            "its mean over u is a lower bound on the discrete log-probability log P(x)"
        )
    if not scale:
        offset, divisor = 0.0, 1.0
    elif divisor == 0.0:
        raise GenmemError(f"dataset {dataset.name!r} is constant (up to rounding); it cannot be scaled to [0, 1] (use scale=False)")
    kind = "continuous values" if dataset.levels is None else f"intensities 0..{dataset.levels - 1}"
    return offset, divisor, f"log-density over the dataset's own scale ({kind}, {where}, D={d})"


def _binarize(X, binarize, where):
    """Step 4: ``(X, log-Jacobian, what the log-probability is over)`` after ``binarize`` ("fixed" or "dynamic")."""
    if binarize == "fixed":
        X = (X > BINARIZE_THRESHOLD).astype(np.float64)
    draw = "thresholded at 0.5" if binarize == "fixed" else "drawn as Bernoulli(X) by the model"
    return X, 0.0, f"log-probability of binary pixels in {{0,1}}^{X.shape[1]} ({draw}; {where})"


def _project(X, pca, seed):
    """Step 5: ``(X on its first pca principal components, the fitted PCA, the variance share they keep)``."""
    from sklearn.decomposition import PCA  # imported here: loading genmem.data stays fast

    fitted = PCA(n_components=int(pca), whiten=False, random_state=int(seed)).fit(X)
    return fitted.transform(X), fitted, float(fitted.explained_variance_ratio_.sum())


def bits_per_dim(log_p, n_dims):
    """Negative log-likelihood in bits per dimension: ``-log_p / (n_dims * ln 2)``.

    Parameters
    ----------
    log_p : float or array-like
        Log-density or log-probability in nats (per example, or a mean). For
        dequantized data pass ``log_p + info["log_jacobian"]`` to get the usual
        bits/dim on the 0..L-1 pixel scale.
    n_dims : int
        Number of dimensions D.

    Returns
    -------
    float or ndarray
        Same shape as ``log_p``.
    """
    check_int(n_dims, "n_dims")
    bits = -np.asarray(log_p, dtype=np.float64) / (n_dims * math.log(2))
    return bits if bits.ndim else float(bits)


def _range_to_01(X, levels):
    """(offset, divisor) mapping X onto [0, 1]: (0, levels - 1) for discrete data, else
    (min, max - min); the divisor is 0 for continuous data that are constant up to rounding."""
    if levels is not None:
        return 0.0, float(levels - 1)
    lo, hi = float(X.min()), float(X.max())
    return lo, hi - lo if has_spread(X.reshape(-1, 1)) else 0.0


def _pad(x, image_shape, pad_to):
    """Zero-pad images [N, H, W(, C)] to the centre of ``pad_to``; returns (padded, [H', W'], [top, left])."""
    if len(image_shape) not in (2, 3):
        raise GenmemError(f"pad_to needs images [N, H, W(, C)]; this dataset has non-image shape {image_shape}")
    size = (pad_to, pad_to) if isinstance(pad_to, (int, np.integer)) else tuple(np.atleast_1d(pad_to))
    height, width = image_shape[:2]
    ints = all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
    if len(size) != 2 or not ints or size[0] < height or size[1] < width:
        raise GenmemError(
            f"pad_to={pad_to!r} must be an int or (height, width) no smaller than the images ({height}x{width})"
        )
    channels = math.prod(image_shape[2:])
    check_allocation(len(x) * size[0] * size[1] * channels * (x.dtype.itemsize + 8 + 4),
                     f"padding {len(x)} images to {size[0]}x{size[1]} (pad_to, --pad-to)", "lower --pad-to")
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    out = np.zeros((len(x), *size, *image_shape[2:]), dtype=x.dtype)
    out[:, top : top + height, left : left + width] = x
    return out, [int(s) for s in size], [top, left]


def _check_pca(pca, n, d):
    if pca is None:
        return
    if isinstance(pca, bool) or not isinstance(pca, (int, np.integer)) or not 1 <= pca < d:
        raise GenmemError(f"pca must be an int with 1 <= pca < D={d} (the number of features); got {pca!r}")
    if pca > n:
        raise GenmemError(f"pca={pca} exceeds the number of examples ({n}); choose pca <= {n}")
