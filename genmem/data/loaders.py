"""Loading datasets: scikit-learn's digits, IDX (MNIST-style), NumPy and CIFAR-10 files, image folders.

The file formats themselves are read by :mod:`genmem.data.formats`; this
module finds the files and builds a :class:`Dataset` from them.

Every loader returns a :class:`Dataset` holding the examples in the source's
own dtype and value range; :func:`genmem.data.prepare` turns it into the float
matrix a density model sees.

File-based datasets are searched for in ``data_dir`` when it is given, else in
the folder named by the environment variable ``GENMEM_DATA_DIR`` and then in
the dataset's system folder (only Fashion-MNIST has one: the Debian package
``dataset-fashion-mnist``).
"""
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GenmemError
from .formats import read_cifar_batch, read_idx, read_npz
from .labels import encode_labels

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "GENMEM_DATA_DIR"
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")

# genmem name -> torchvision's folder name (torchvision reads ROOT/<folder>/raw/).
_TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_HINTS = {
    "mnist": f"pass --data-dir DIR (a folder with the IDX files, or torchvision's root holding MNIST/raw/) "
    f"or set {DATA_DIR_ENV}",
    "fashion-mnist": f"install it with 'apt-get install dataset-fashion-mnist' or pass --data-dir DIR "
    f"(or set {DATA_DIR_ENV})",
    "binarized-mnist": f"pass --data-dir DIR (the folder holding binarized_mnist.npz) or set {DATA_DIR_ENV}",
    "cifar10": f"pass --data-dir DIR (holding torchvision's cifar-10-batches-py/ or cifar10_partial.npz) "
    f"or set {DATA_DIR_ENV}",
}


@dataclass
class Dataset:
    """A split of a dataset, in the source's own dtype and value range.

    Attributes
    ----------
    x : ndarray, shape [N, *image_shape]
        The examples as stored by the source, e.g. uint8 [N, 28, 28] for MNIST,
        uint8 [N, 32, 32, 3] (HWC) for CIFAR-10, uint8 [N, 8, 8] with values
        0..16 for digits.
    labels : int64 ndarray, shape [N]
        Class labels; -1 where the source has none.
    index : int64 ndarray, shape [N]
        Position of each example in the source split.
    name : str
        The name the dataset was loaded under.
    split : str
        ``"train"``, ``"test"`` or ``"valid"``.
    image_shape : tuple of int
        (H, W), (H, W, C), or (D,) for arrays that are not images.
    levels : int or None
        Number of discrete intensity levels (17 for digits, 256 for uint8
        images, 2 for binary images); None for continuous data.
    source : str
        The file the examples were read from, or ``"sklearn"``.
    label_names : list of str, optional
        The class each label code stands for (``label_names[c]`` for code
        ``c``), where the source names its classes.
    """

    x: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    name: str
    split: str
    image_shape: tuple
    levels: int | None
    source: str
    label_names: list | None = None

    def __len__(self):
        return len(self.x)


def load_dataset(name="digits", *, data_dir=None, split="train"):
    """Load one split of a dataset.

    Parameters
    ----------
    name : str
        ``"digits"`` (scikit-learn's 1,797 8×8 digits, embedded; train split
        only), ``"mnist"``, ``"fashion-mnist"`` (IDX files), ``"binarized-mnist"``
        (``binarized_mnist.npz`` with splits train/valid/test), ``"cifar10"``
        (torchvision's ``cifar-10-batches-py`` pickles or
        ``cifar10_partial.npz``), ``"folder:PATH"`` (a folder of image files,
        see Notes), ``"npz:PATH"`` or ``"npy:PATH"`` (a path
        ending in ``.npz``/``.npy`` works without the prefix). An ``.npz``
        holds ``x`` (or ``X``, or a single array) and optionally ``y`` or
        ``labels``; or split arrays ``x_train``/``x_test`` (also ``X_train``,
        ``train_x``) with ``y_train``/``labels_train``/``train_y``.
    data_dir : path-like, optional
        Folder to search for file-based datasets. For MNIST-style IDX files the
        folder itself, torchvision's ``DATA_DIR/MNIST/raw/`` or
        ``DATA_DIR/FashionMNIST/raw/``, and ``DATA_DIR/<name>/`` are searched.
        When None, ``$GENMEM_DATA_DIR`` and then the system folder
        (``/usr/share/datasets/fashion-mnist`` for Fashion-MNIST) are searched.
    split : str
        ``"train"`` or ``"test"`` where the source has them (``"valid"`` too for
        binarized MNIST).

    Returns
    -------
    Dataset

    Raises
    ------
    GenmemError
        Unknown name or split, missing or corrupt file, NaN or inf in an array file.

    Notes
    -----
    CIFAR-10's python batches are pickles; they are read by a restricted
    unpickler that admits only what rebuilds NumPy arrays, dtypes and
    latin-1 bytes, so a crafted batch cannot run code (it is refused with a
    :class:`GenmemError` naming the file). Every other format is parsed
    without pickle (``allow_pickle=False`` for ``.npy``/``.npz``).

    An image folder (train split only) holds ``.png``, ``.jpg``, ``.jpeg``,
    ``.bmp`` or ``.gif`` files (any case; the first frame of an animated GIF),
    read with Pillow in the order of their paths relative to the folder. With
    class subfolders (torchvision's ImageFolder layout ``PATH/<class>/...``)
    the label is the index of the class among the sorted names of the
    subfolders holding images; in a flat folder it is -1. All images must have
    one size. Mode ``"L"`` images stay grey (uint8 [N, H, W]); any other mode
    is converted to RGB (uint8 [N, H, W, 3]), and so are grey images in a
    folder that also holds colour ones.
    """
    name = str(name)
    readers = {"npz": _load_npz, "npy": _load_npy, "folder": _load_folder}
    kind, _, path = name.partition(":")
    if kind in readers and path:
        return readers[kind](name, Path(path).expanduser(), split)
    if name.endswith((".npz", ".npy")):
        return readers[name[-3:]](name, Path(name).expanduser(), split)
    if name not in _LOADERS:
        valid = ", ".join([*DATASET_NAMES, "folder:PATH", "npz:PATH", "npy:PATH"])
        raise GenmemError(f"unknown dataset {name!r}; valid names: {valid}")
    return _LOADERS[name](name, data_dir, split)


# -- IDX ------------------------------------------------------------------------


def _load_idx_dataset(name, data_dir, split):
    _check_split(name, split, ("train", "test"))
    prefix = "train" if split == "train" else "t10k"
    default = FASHION_MNIST_SYSTEM_DIR if name == "fashion-mnist" else None
    folders = [
        folder
        for root in _roots(name, data_dir, default)
        for folder in (root, root / _TORCHVISION_FOLDERS[name] / "raw", root / name)
    ]
    stem = f"{prefix}-images-idx3-ubyte"
    for folder in folders:
        images = _idx_file(folder, stem)
        if images is not None:
            break
    else:
        raise _not_found(name, f"{stem}[.gz]", folders)
    labels = _idx_file(folder, f"{prefix}-labels-idx1-ubyte")
    if labels is None:
        raise GenmemError(
            f"{name}: {images} has no {prefix}-labels-idx1-ubyte[.gz] beside it; put the labels file in {folder}"
        )
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or x.dtype != np.uint8 or y.ndim != 1 or len(y) != len(x):
        raise GenmemError(
            f"{name}: expected uint8 images [N, H, W] and labels [N]; got {x.dtype} {x.shape} in {images} "
            f"and {y.shape} in {labels}; check that the files belong together"
        )
    logger.info("loaded %s %s: %d examples from %s", name, split, len(x), images)
    return Dataset(x, y.astype(np.int64), np.arange(len(x)), name, split, x.shape[1:], 256, str(images))


def _idx_file(folder, stem):
    """``folder/stem`` or ``folder/stem.gz``, whichever exists first, else None."""
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


# -- embedded and named datasets -------------------------------------------------


def _load_digits(name, data_dir, split):
    from sklearn.datasets import load_digits

    _check_split(name, split, ("train",))
    bunch = load_digits()
    x = bunch.images.astype(np.uint8)  # counts of set pixels in 4x4 blocks: integers 0..16
    return Dataset(x, bunch.target.astype(np.int64), np.arange(len(x)), name, split, (8, 8), 17, "sklearn")


def _load_binarized_mnist(name, data_dir, split):
    _check_split(name, split, ("train", "valid", "test"))
    candidates = [
        path
        for root in _roots(name, data_dir)
        for path in (root / "binarized_mnist.npz", root / "binarized_mnist" / "binarized_mnist.npz")
    ]
    path = _first_file(name, "binarized_mnist.npz", candidates)
    arrays = read_npz(path)
    if split not in arrays:
        raise GenmemError(f"{path} has no array {split!r} (it holds {', '.join(arrays)}); use the standard file")
    x = arrays[split]
    if x.ndim != 2 or x.shape[1] != 784 or x.dtype.kind not in "ui" or x.min() < 0 or x.max() > 1:
        raise GenmemError(f"{path}: {split!r} must be integers 0/1 of shape [N, 784]; got {x.dtype} {x.shape}")
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    return Dataset(x, np.full(len(x), -1, np.int64), np.arange(len(x)), name, split, (28, 28), 2, str(path))


def _load_cifar10(name, data_dir, split):
    _check_split(name, split, ("train", "test"))
    looked = []
    for root in _roots(name, data_dir):
        for folder in (root / "cifar-10-batches-py", root):
            looked.append(folder / "data_batch_1")
            if looked[-1].is_file():
                return _read_cifar_batches(name, folder, split)
        for path in (root / "cifar10_partial.npz", root / "cifar10_partial" / "cifar10_partial.npz"):
            looked.append(path)
            if path.is_file():
                arrays = read_npz(path)
                x, y = arrays.get(f"{split}_x"), arrays.get(f"{split}_y")
                return _check_cifar(name, split, x, y, path)
    raise _not_found(name, "cifar-10-batches-py/ or cifar10_partial.npz", looked)


def _read_cifar_batches(name, folder, split):
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    xs, ys = zip(*(read_cifar_batch(name, folder / file, files) for file in files))
    x = np.concatenate(xs).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW rows -> HWC images
    return _check_cifar(name, split, np.ascontiguousarray(x), np.concatenate(ys), folder)


def _check_cifar(name, split, x, y, source):
    if x is None or y is None or x.shape[1:] != (32, 32, 3) or x.dtype != np.uint8 or y.shape != (len(x),):
        got = "missing arrays" if x is None or y is None else f"{x.dtype} {x.shape} and labels {y.shape}"
        raise GenmemError(
            f"{name}: {source} must give uint8 {split}_x [N, 32, 32, 3] and {split}_y [N]; got {got}"
        )
    return Dataset(x, y.astype(np.int64), np.arange(len(x)), name, split, (32, 32, 3), 256, str(source))


# -- generic array files -------------------------------------------------------------


def _load_npy(name, path, split):
    _check_split(name, split, ("train",))
    if not path.is_file():
        raise GenmemError(f"{name}: file {path} does not exist; check the path")
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise GenmemError(f"{name}: cannot read {path} as a .npy array ({exc or 'empty file'}); save it with "
                          "numpy.save") from None
    if not isinstance(x, np.ndarray):
        x.close()
        raise GenmemError(f"{name}: {path} is an .npz archive, not a .npy array; use npz:{path}")
    return _array_dataset(name, split, x, None, path)


def _load_npz(name, path, split):
    arrays = read_npz(path)
    splits = sorted({s for key in arrays if (s := _split_of(key))})
    if splits:
        _check_split(name, split, splits)
        x = next(arrays[k.format(split)] for k in ("x_{}", "X_{}", "{}_x") if k.format(split) in arrays)
        y = next((arrays[k.format(split)] for k in ("y_{}", "labels_{}", "{}_y") if k.format(split) in arrays), None)
        return _array_dataset(name, split, x, y, path)
    if split != "train":
        raise GenmemError(
            f"{name}: {path} has no split arrays (x_train, x_test), so it has only the 'train' split; "
            "use split='train' or store x_test in the file"
        )
    x = next((arrays[k] for k in ("x", "X") if k in arrays), None)
    if x is None and len(arrays) == 1:
        x = next(iter(arrays.values()))
    if x is None:
        raise GenmemError(f"{name}: {path} holds {', '.join(arrays)}; name the data array 'x' (labels 'y')")
    y = next((arrays[k] for k in ("y", "labels") if k in arrays), None)
    return _array_dataset(name, split, x, y, path)


def _split_of(key):
    """The split an .npz key such as ``x_train``, ``X_test`` or ``train_x`` holds, else None."""
    match = re.fullmatch(r"[xX]_(\w+)|(\w+)_x", key)
    return match and (match[1] or match[2])


def _array_dataset(name, split, x, y, path):
    """A Dataset from a user's array ``x`` [N, ...] and optional labels ``y`` [N]."""
    x = np.asarray(x)
    if x.dtype == bool:
        x = x.astype(np.uint8)
    if x.ndim < 2 or x.size == 0 or x.dtype.kind not in "uif":
        raise GenmemError(
            f"{name}: {path} must hold a numeric array [N, ...] with N >= 1 and no empty axis; got {x.dtype} {x.shape} "
            "(reshape a 1-D array to [N, 1])"
        )
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        rows = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
        raise GenmemError(
            f"{name}: {path} contains NaN or inf in {len(rows)} example(s) (first: {rows[0]}); "
            "remove or impute them"
        )
    labels, names = encode_labels(y, len(x), name=f"{name}: labels in {path}")
    return Dataset(x, labels, np.arange(len(x)), name, split, x.shape[1:], _infer_levels(x), str(path), names)


def _infer_levels(x):
    """Discrete levels of an array: 2 for 0/1 integers, 256 for other uint8, max+1 for other
    non-negative integers; None (continuous) for floats and integers with negative values."""
    if x.dtype.kind not in "ui" or x.min() < 0:
        return None
    if x.max() <= 1:
        return 2
    return 256 if x.dtype == np.uint8 else int(x.max()) + 1


# -- image folders ---------------------------------------------------------------------


def _load_folder(name, root, split):
    _check_split(name, split, ("train",))
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise GenmemError(f"{name}: reading image folders needs Pillow; install it with 'pip install pillow'") from None
    accepted = ", ".join(IMAGE_EXTENSIONS)
    found = (path for path in root.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file())
    files = sorted((path.relative_to(root) for path in found), key=lambda rel: rel.parts)
    if not files:
        state = "holds no image files" if root.is_dir() else "is not an existing folder"
        raise GenmemError(f"{name}: {root} {state}; pass a folder of {accepted} files (or class subfolders of them)")
    classes = {folder: i for i, folder in enumerate(sorted({rel.parts[0] for rel in files if len(rel.parts) > 1}))}
    loose = [rel for rel in files if len(rel.parts) == 1]
    if classes and loose:
        raise GenmemError(
            f"{name}: {root} mixes image files ({loose[0]}) with class subfolders ({next(iter(classes))}/); "
            "move every image into a class subfolder or flatten the folder"
        )
    images = []
    for rel in files:
        try:
            with Image.open(root / rel) as image:
                image.load()
                images.append(image if image.mode == "L" else image.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise GenmemError(f"{name}: cannot read {root / rel} as an image ({exc}); re-save it as PNG") from None
        if images[-1].size != images[0].size:
            (w, h), (w0, h0) = images[-1].size, images[0].size
            raise GenmemError(
                f"{name}: {root / rel} is {w}x{h} pixels (width x height) but {root / files[0]} and the files "
                f"before it are {w0}x{h0}; resize all images to one size"
            )
    mode = "RGB" if any(image.mode == "RGB" for image in images) else "L"
    x = np.stack([np.asarray(image.convert(mode), dtype=np.uint8) for image in images])
    labels = np.array([classes[rel.parts[0]] if classes else -1 for rel in files], np.int64)
    logger.info("loaded %s: %d %s images from %s", name, len(x), mode, root)
    names = sorted(classes, key=classes.get) if classes else None
    return Dataset(x, labels, np.arange(len(x)), name, split, x.shape[1:], 256, str(root), names)


# -- search helpers ---------------------------------------------------------------------


def _check_split(name, split, splits):
    if split not in splits:
        raise GenmemError(f"dataset {name!r} has no split {split!r}; available: {', '.join(splits)}")


def _roots(name, data_dir, default=None):
    """Folders to search: ``data_dir`` alone when given, else $GENMEM_DATA_DIR and ``default``."""
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise GenmemError(f"{name}: data directory {root} does not exist; {_HINTS[name]}")
        return [root]
    roots = []
    if os.environ.get(DATA_DIR_ENV):
        roots.append(Path(os.environ[DATA_DIR_ENV]).expanduser())
    if default is not None:
        roots.append(default)
    return roots


def _first_file(name, what, candidates):
    for path in candidates:
        if path.is_file():
            return path
    raise _not_found(name, what, candidates)


def _not_found(name, what, looked):
    where = ", ".join(map(str, looked)) or f"nowhere (no --data-dir given and {DATA_DIR_ENV} unset)"
    return GenmemError(f"{name}: found no {what}; looked in {where}; {_HINTS[name]}")


_LOADERS = {
    "digits": _load_digits,
    "mnist": _load_idx_dataset,
    "fashion-mnist": _load_idx_dataset,
    "binarized-mnist": _load_binarized_mnist,
    "cifar10": _load_cifar10,
}
DATASET_NAMES = tuple(_LOADERS)
