"""Training and test images for a GAN: read a dataset, hold out a test set where it has no test split.

The hold-out of datasets without a test split is a seeded permutation, stream
``(split_seed, 4)`` (:data:`HOLDOUT_STREAM`).
"""
from dataclasses import dataclass

import numpy as np
import torch

from ..data import load_dataset, prepare
from ..errors import GenmemError
from ..seeds import stream_seed
from ..validation import check_int

#: Random stream of the test hold-out (under ``split_seed``).
HOLDOUT_STREAM = 4
#: Share of the examples held out as the test set of datasets without a test split.
DEFAULT_TEST_FRACTION = 0.2
#: Datasets read with a hold-out test set by default (they have no test split).
HOLDOUT_DATASETS = ("digits",)


@dataclass
class GANData:
    """Training and test images for a GAN, ``[N, C, H, W]`` float32 in [0, 1].

    Attributes
    ----------
    train, test : float32 ndarray [N, C, H, W]
    train_index, test_index : int64 ndarray
        Positions in the source split the images come from.
    info : dict
        Dataset, test source (``"split"`` or ``"holdout"``), hold-out share and seed, sizes.
    """

    train: np.ndarray
    test: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray
    info: dict


def to_nchw(images):
    """Images ``[N, H, W]``, ``[N, H, W, C]`` (C in 1, 3) or ``[N, C, H, W]`` as float32 ``[N, C, H, W]``."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    if images.ndim == 4:
        return images
    raise GenmemError(f"a GAN needs images [N, H, W], [N, H, W, C] or [N, C, H, W]; got an array of shape "
                      f"{images.shape}")


def load_gan_data(dataset="digits", *, data_dir=None, limit=None, test_fraction=None, split_seed=0):
    """Training and test images of a dataset, scaled to [0, 1].

    Parameters
    ----------
    dataset : str
        A name or file accepted by :func:`genmem.data.load_dataset`.
    data_dir : path-like, optional
    limit : int, optional
        Keep only the first ``limit`` training images.
    test_fraction : float, optional
        Hold out this share of the training split (a seeded permutation) as
        the test set instead of reading the test split. Default: 0.2 for
        datasets without a test split (digits, ``.npy`` files), else None.
    split_seed : int
        Seed of the hold-out permutation (stream ``(split_seed, 4)``).

    Returns
    -------
    GANData
    """
    name = str(dataset)
    source = load_dataset(name, data_dir=data_dir, split="train")
    if test_fraction is None and (name in HOLDOUT_DATASETS or name.startswith("npy:") or name.endswith(".npy")):
        test_fraction = DEFAULT_TEST_FRACTION
    images = to_nchw(prepare(source).images)
    if test_fraction is not None:
        if not 0.0 < float(test_fraction) < 1.0:
            raise GenmemError(f"test_fraction must lie in (0, 1); got {test_fraction}")
        perm = np.random.default_rng(stream_seed(split_seed, HOLDOUT_STREAM)).permutation(len(images))
        n_test = int(round(float(test_fraction) * len(images)))
        if not 1 <= n_test < len(images):
            raise GenmemError(f"holding out {test_fraction} of {len(images)} examples leaves an empty set; "
                              "choose another test_fraction")
        test_index, train_index = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        train, test = images[train_index], images[test_index]
        train_index, test_index = source.index[train_index], source.index[test_index]
        test_source = "holdout"
    else:
        test_data = load_dataset(name, data_dir=data_dir, split="test")
        train, train_index = images, source.index
        test, test_index = to_nchw(prepare(test_data).images), test_data.index
        test_source = "split"
    if limit is not None:
        check_int(limit, "limit", 2)
        train, train_index = train[:limit], train_index[:limit]
    if test.shape[1:] != train.shape[1:]:
        raise GenmemError(f"test images {test.shape[1:]} and training images {train.shape[1:]} differ in shape")
    info = {"dataset": name, "test_source": test_source, "n_train": len(train), "n_test": len(test),
            "image_shape": list(train.shape[1:]), "limit": limit,
            "test_fraction": None if test_fraction is None else float(test_fraction),
            "split_seed": int(split_seed) if test_fraction is not None else None}
    return GANData(train, test, np.asarray(train_index, np.int64), np.asarray(test_index, np.int64), info)


def check_images(images, name):
    """``images`` as float32 ``[N, C, H, W]`` in [0, 1], or a :class:`GenmemError` naming ``name``."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise GenmemError(f"{name} must be images [N, C, H, W]; got shape {images.shape} (see genmem.gan.to_nchw)")
    if not np.isfinite(images).all() or images.min() < 0.0 or images.max() > 1.0:
        raise GenmemError(f"{name} must be finite and scaled to [0, 1]; got values in "
                          f"[{np.nanmin(images):.3g}, {np.nanmax(images):.3g}]")
    return images
