"""Tests of genmem.data: loaders (digits, IDX, binarized MNIST, CIFAR-10, npz/npy) and prepare()."""
import gzip
import hashlib
import json
import math
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from genmem.data import Dataset, bits_per_dim, load_dataset, prepare, read_idx
from genmem.data import loaders
from genmem.errors import GenmemError

SHARED = Path(os.environ.get("GENMEM_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def shared(*parts):
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def write_idx(path, array, *, compress=False):
    """An IDX file written by hand from the format description (independent of read_idx)."""
    codes = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
             np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def write_mnist(folder, n_train=5, n_test=3, *, compress=False, seed=0):
    """Tiny train/t10k IDX image and label files in ``folder``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 4, 5), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        suffix = ".gz" if compress else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", x, compress=compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", y, compress=compress)
        out[prefix] = (x, y)
    return out


def make_dataset(x, levels, image_shape=None):
    n = len(x)
    shape = tuple(image_shape or x.shape[1:])
    return Dataset(x, np.zeros(n, np.int64), np.arange(n), "synthetic", "train", shape, levels, "test")


# -- digits ----------------------------------------------------------------------------


def test_digits_matches_sklearn():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    ref = load_digits()
    assert ds.x.shape == (1797, 8, 8) and ds.x.dtype == np.uint8
    np.testing.assert_array_equal(ds.x, ref.images)
    np.testing.assert_array_equal(ds.labels, ref.target)
    assert ds.labels.dtype == np.int64 and ds.index.dtype == np.int64
    np.testing.assert_array_equal(ds.index, np.arange(1797))
    assert (ds.x.min(), ds.x.max()) == (0, 16)
    assert ds.levels == 17 and ds.image_shape == (8, 8) and ds.source == "sklearn" and len(ds) == 1797


def test_digits_has_no_test_split():
    with pytest.raises(GenmemError, match="no split 'test'; available: train"):
        load_dataset("digits", split="test")


def test_unknown_name_lists_valid_names():
    with pytest.raises(GenmemError, match="valid names: digits, mnist, fashion-mnist, binarized-mnist, cifar10"):
        load_dataset("imagenet")


# -- IDX ------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_idx_round_trip(tmp_path, compress, dtype):
    rng = np.random.default_rng(1)
    array = (rng.normal(size=(3, 2, 4)) * 50).astype(dtype)
    out = read_idx(write_idx(tmp_path / "a-idx3", array, compress=compress))
    assert out.shape == (3, 2, 4) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_idx_bad_magic(tmp_path):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(b"\x01\x02\x08\x03" + bytes(20))
    with pytest.raises(GenmemError, match="bad magic number 0x01020803"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_truncated(tmp_path, compress):
    path = write_idx(tmp_path / "t-idx3-ubyte", np.ones((4, 3, 3), np.uint8), compress=compress)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(GenmemError, match="corrupt|damaged"):
        read_idx(path)


def test_idx_extra_bytes_and_missing_file(tmp_path):
    path = write_idx(tmp_path / "t-idx1-ubyte", np.arange(5, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(GenmemError, match=r"promises dims \(5,\) \(5 data bytes\) but the file holds more than 5"):
        read_idx(path)
    with pytest.raises(GenmemError, match="does not exist"):
        read_idx(tmp_path / "nothing")


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_from_flat_folder(tmp_path, compress):
    written = write_mnist(tmp_path, compress=compress)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = load_dataset("mnist", data_dir=tmp_path, split=split)
        x, y = written[prefix]
        np.testing.assert_array_equal(ds.x, x)
        np.testing.assert_array_equal(ds.labels, y)
        assert ds.labels.dtype == np.int64 and ds.levels == 256 and ds.image_shape == (4, 5)
        assert ds.source == str(tmp_path / f"{prefix}-images-idx3-ubyte{'.gz' if compress else ''}")


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_raw_layout(tmp_path, name, folder):
    written = write_mnist(tmp_path / folder / "raw", compress=True)
    ds = load_dataset(name, data_dir=tmp_path, split="test")
    np.testing.assert_array_equal(ds.x, written["t10k"][0])


def test_mnist_data_dir_from_environment(tmp_path, monkeypatch):
    written = write_mnist(tmp_path)
    monkeypatch.setenv("GENMEM_DATA_DIR", str(tmp_path))
    np.testing.assert_array_equal(load_dataset("mnist").labels, written["train"][1])
    monkeypatch.delenv("GENMEM_DATA_DIR")
    with pytest.raises(GenmemError, match="--data-dir"):
        load_dataset("mnist")


def test_fashion_mnist_system_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("GENMEM_DATA_DIR", raising=False)
    monkeypatch.setattr(loaders, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "absent")
    with pytest.raises(GenmemError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")
    written = write_mnist(tmp_path / "absent")
    np.testing.assert_array_equal(load_dataset("fashion-mnist").x, written["train"][0])


def test_idx_dataset_errors(tmp_path):
    with pytest.raises(GenmemError, match=f"data directory {tmp_path / 'nope'} does not exist"):
        load_dataset("mnist", data_dir=tmp_path / "nope")
    with pytest.raises(GenmemError, match="found no train-images-idx3-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    with pytest.raises(GenmemError, match="no train-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(GenmemError, match="belong together"):
        load_dataset("mnist", data_dir=tmp_path)


# -- the shared real files ----------------------------------------------------------------------


def test_mnist_real_files():
    folder = shared("mnist")
    test = load_dataset("mnist", data_dir=folder, split="test")
    assert test.x.shape == (10000, 28, 28) and test.x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(test.labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    np.testing.assert_array_equal(test.labels[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    # the canonical md5 of the uncompressed file, rebuilt from the parsed array
    header = b"\0\0\x08\x03" + struct.pack(">3I", *test.x.shape)
    assert hashlib.md5(header + test.x.tobytes()).hexdigest() == "2646ac647ad5339dbf082846283269ea"
    train = load_dataset("mnist", data_dir=folder.parent)  # DATA_DIR/mnist/ is searched too
    assert train.x.shape == (60000, 28, 28)
    np.testing.assert_array_equal(train.labels[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])


def test_binarized_mnist_real_file():
    path = shared("binarized_mnist", "binarized_mnist.npz")
    with np.load(path) as raw:
        ref = {split: raw[split] for split in ("valid", "test")}
    for split, n in (("valid", 10000), ("test", 10000)):
        ds = load_dataset("binarized-mnist", data_dir=path.parent.parent, split=split)
        assert ds.x.shape == (n, 28, 28) and ds.levels == 2 and (ds.labels == -1).all()
        np.testing.assert_array_equal(ds.x.reshape(n, 784), ref[split])
    assert load_dataset("binarized-mnist", data_dir=path.parent).x.shape == (50000, 28, 28)


def test_cifar10_partial_real_file():
    path = shared("cifar10_partial", "cifar10_partial.npz")
    with np.load(path) as raw:
        all_train_labels, test_x = raw["all_train_labels"], raw["test_x"]
    train = load_dataset("cifar10", data_dir=path.parent.parent)
    assert train.x.shape == (4000, 32, 32, 3) and train.x.dtype == np.uint8 and train.levels == 256
    np.testing.assert_array_equal(train.labels, all_train_labels[:4000])
    test = load_dataset("cifar10", data_dir=path.parent, split="test")
    np.testing.assert_array_equal(test.x, test_x)
    assert test.image_shape == (32, 32, 3)


# -- CIFAR-10 python batches ------------------------------------------------------------------------


def test_cifar10_python_batches(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    images = rng.integers(0, 256, size=(13, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=13)
    sizes = [2, 2, 2, 2, 2, 3]  # data_batch_1..5, test_batch
    start = 0
    for file, size in zip([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], sizes):
        block = images[start : start + size]
        # CIFAR rows: the red plane, then green, then blue, each row-major 32x32
        rows = np.stack([np.concatenate([img[:, :, c].ravel() for c in range(3)]) for img in block])
        batch = {b"data": rows, b"labels": labels[start : start + size].tolist(), b"batch_label": file.encode()}
        (folder / file).write_bytes(pickle.dumps(batch))
        start += size
    train = load_dataset("cifar10", data_dir=tmp_path)
    np.testing.assert_array_equal(train.x, images[:10])
    np.testing.assert_array_equal(train.labels, labels[:10])
    np.testing.assert_array_equal(train.index, np.arange(10))
    test = load_dataset("cifar10", data_dir=folder, split="test")
    np.testing.assert_array_equal(test.x, images[10:])
    assert test.x.flags.c_contiguous and test.source == str(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(GenmemError, match="data_batch_3 is missing"):
        load_dataset("cifar10", data_dir=tmp_path)


# -- generic npz / npy -------------------------------------------------------------------------------


def test_npz_single_and_named_arrays(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    np.savez(tmp_path / "one.npz", x)
    ds = load_dataset(f"npz:{tmp_path / 'one.npz'}")
    np.testing.assert_array_equal(ds.x, x)
    assert ds.image_shape == (4,) and ds.levels is None and (ds.labels == -1).all()
    np.savez(tmp_path / "named.npz", X=x, labels=np.arange(6) % 2, other=np.zeros(2))
    ds = load_dataset(str(tmp_path / "named.npz"))
    np.testing.assert_array_equal(ds.labels, np.arange(6) % 2)
    with pytest.raises(GenmemError, match="only the 'train' split"):
        load_dataset(f"npz:{tmp_path / 'named.npz'}", split="test")
    np.savez(tmp_path / "ambiguous.npz", a=x, b=x)
    with pytest.raises(GenmemError, match="name the data array 'x'"):
        load_dataset(f"npz:{tmp_path / 'ambiguous.npz'}")


def test_npz_split_arrays(tmp_path):
    rng = np.random.default_rng(3)
    x_train, x_test = (rng.integers(0, 256, size=(n, 3, 3), dtype=np.uint8) for n in (5, 2))
    np.savez(tmp_path / "s.npz", x_train=x_train, y_train=np.arange(5), x_test=x_test, y_test=[7, 8])
    test = load_dataset(f"npz:{tmp_path / 's.npz'}", split="test")
    np.testing.assert_array_equal(test.x, x_test)
    np.testing.assert_array_equal(test.labels, [7, 8])
    assert test.levels == 256 and test.split == "test"
    with pytest.raises(GenmemError, match="available: test, train"):
        load_dataset(f"npz:{tmp_path / 's.npz'}", split="valid")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_npz_npy_reject_nonfinite(tmp_path, bad):
    x = np.ones((4, 3))
    x[2, 1] = bad
    np.savez(tmp_path / "bad.npz", x=x)
    np.save(tmp_path / "bad.npy", x)
    for name in (f"npz:{tmp_path / 'bad.npz'}", f"npy:{tmp_path / 'bad.npy'}"):
        with pytest.raises(GenmemError, match=r"NaN or inf in 1 example\(s\) \(first: 2\)"):
            load_dataset(name)


def test_npy_levels_and_errors(tmp_path):
    np.save(tmp_path / "bin.npy", np.array([[True, False], [False, False]]))
    ds = load_dataset(f"npy:{tmp_path / 'bin.npy'}")
    assert ds.levels == 2 and ds.x.dtype == np.uint8
    np.save(tmp_path / "counts.npy", np.array([[0, 3], [9, 1]], dtype=np.int32))
    assert load_dataset(f"npy:{tmp_path / 'counts.npy'}").levels == 10
    np.save(tmp_path / "flat.npy", np.arange(5.0))
    with pytest.raises(GenmemError, match=r"reshape a 1-D array"):
        load_dataset(f"npy:{tmp_path / 'flat.npy'}")
    with pytest.raises(GenmemError, match="does not exist"):
        load_dataset(f"npy:{tmp_path / 'missing.npy'}")
    np.savez(tmp_path / "labels.npz", x=np.ones((3, 2)), y=np.arange(4))
    with pytest.raises(GenmemError, match="labels in .* has 4 entries but the data have 3 examples"):
        load_dataset(f"npz:{tmp_path / 'labels.npz'}")
    np.savez(tmp_path / "named.npz", x=np.ones((3, 2)), y=np.array(["b", "a", "b"]))
    named = load_dataset(f"npz:{tmp_path / 'named.npz'}")
    assert named.labels.tolist() == [1, 0, 1] and named.label_names == ["a", "b"]


# -- prepare ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_scale_and_log_jacobian(digits):
    prep = prepare(digits)
    np.testing.assert_array_equal(prep.X, digits.x.reshape(1797, 64) / 16.0)
    assert prep.X.dtype == np.float64
    assert prep.info["log_jacobian"] == pytest.approx(-64 * math.log(16), rel=1e-15)
    np.testing.assert_array_equal(prep.images, digits.x / 16.0)
    raw = prepare(digits, scale=False)
    np.testing.assert_array_equal(raw.X, digits.x.reshape(1797, 64))
    assert raw.info["log_jacobian"] == 0.0


def test_dequantize(digits):
    prep = prepare(digits, dequantize=True, seed=4)
    x = digits.x.reshape(1797, 64)
    np.testing.assert_array_equal(np.floor(prep.X * 17), x)
    assert (prep.X >= x / 17).all() and (prep.X < (x + 1) / 17).all()
    assert prep.info["log_jacobian"] == pytest.approx(-64 * math.log(17), rel=1e-15)
    u = np.random.default_rng(np.random.SeedSequence(4, spawn_key=(2,))).random((1797, 64))  # genmem.seeds.DEQUANTIZE
    np.testing.assert_allclose(prep.X, (x + u) / 17, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(prepare(digits, dequantize=True, seed=4).X, prep.X)
    assert not np.array_equal(prepare(digits, dequantize=True, seed=5).X, prep.X)
    np.testing.assert_array_equal(prep.images, digits.x / 16.0)  # the images show the original data


def test_log_jacobian_change_of_variables(tmp_path):
    """A Gaussian fitted in the prepared space, plus log_jacobian, equals the same Gaussian mapped back."""
    rng = np.random.default_rng(5)
    x = rng.normal(3.0, 7.0, size=(40, 3))
    np.save(tmp_path / "c.npy", x)
    prep = prepare(load_dataset(f"npy:{tmp_path / 'c.npy'}"))
    lo, span = x.min(), x.max() - x.min()
    np.testing.assert_allclose(prep.X, (x - lo) / span, rtol=1e-12)
    mean, cov = prep.X.mean(0), np.cov(prep.X.T)
    log_p = multivariate_normal(mean, cov).logpdf(prep.X) + prep.info["log_jacobian"]
    oracle = multivariate_normal(mean * span + lo, cov * span**2).logpdf(x)
    np.testing.assert_allclose(log_p, oracle, rtol=1e-10)


def test_pca_fitted_on_given_data(digits):
    subset = make_dataset(digits.x[:300], 17)
    prep = prepare(subset, pca=7)
    X = digits.x[:300].reshape(300, 64) / 16.0
    _, s, vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    projected = (X - X.mean(0)) @ vt[:7].T
    np.testing.assert_allclose(np.abs(prep.X), np.abs(projected), atol=1e-9)
    assert prep.X.shape == (300, 7) and prep.info["n_features"] == 7 and prep.info["pca"] == 7
    assert prep.info["pca_explained_variance_ratio"] == pytest.approx((s[:7] ** 2).sum() / (s**2).sum())
    assert prep.info["log_jacobian"] == 0.0 and "PCA space" in prep.info["units"]
    assert prep.images.shape == (300, 8, 8)


def test_padding_centres_images():
    x = np.arange(1, 2 * 3 * 4 + 1, dtype=np.uint8).reshape(2, 3, 4)
    prep = prepare(make_dataset(x, 256), pad_to=(7, 6), scale=False)
    expected = np.zeros((2, 7, 6))
    for n in range(2):
        for i in range(3):
            for j in range(4):
                expected[n, 2 + i, 1 + j] = x[n, i, j]  # top=(7-3)//2, left=(6-4)//2
    np.testing.assert_array_equal(prep.X, expected.reshape(2, 42))
    assert prep.info["pad_to"] == [7, 6] and prep.info["pad_offset"] == [2, 1]
    np.testing.assert_array_equal(prep.images, (expected / 255).astype(np.float32))
    rgb = np.full((1, 28, 28, 3), 255, np.uint8)
    padded = prepare(make_dataset(rgb, 256), pad_to=32).images
    assert padded.shape == (1, 32, 32, 3) and (padded[0, 2:30, 2:30] == 1).all() and padded.sum() == 28 * 28 * 3


def test_padded_dequantized_jacobian():
    prep = prepare(make_dataset(np.zeros((2, 28, 28), np.uint8), 256), pad_to=32, dequantize=True)
    assert prep.info["log_jacobian"] == pytest.approx(-1024 * math.log(256), rel=1e-15)


def test_binarize(digits):
    fixed = prepare(digits, binarize="fixed")
    np.testing.assert_array_equal(fixed.X, (digits.x.reshape(1797, 64) / 16 > 0.5).astype(float))
    assert fixed.info["binarize_threshold"] == 0.5 and fixed.info["log_jacobian"] == 0.0
    dynamic = prepare(digits, binarize="dynamic")
    np.testing.assert_array_equal(dynamic.X, digits.x.reshape(1797, 64) / 16)
    assert dynamic.info["binarize"] == "dynamic" and dynamic.info["log_jacobian"] == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(binarize="fixed", dequantize=True), "exclude each other"),
        (dict(binarize="otsu"), "binarize must be"),
        (dict(binarize="fixed", scale=False), "use scale=True"),
        (dict(binarize="dynamic", pca=3), "drop pca"),
        (dict(pca=64), "1 <= pca < D=64"),
        (dict(pca=0), "1 <= pca < D=64"),
        (dict(pca=2.5), "1 <= pca < D=64"),
        (dict(pad_to=7), "no smaller than the images"),
        (dict(pad_to="32"), "no smaller than the images"),
        (dict(seed=None), "seed must be a non-negative int"),
    ],
)
def test_bad_combinations(digits, kwargs, message):
    with pytest.raises(GenmemError, match=message):
        prepare(digits, **kwargs)


def test_bad_inputs_for_data_kind():
    continuous = make_dataset(np.random.default_rng(0).normal(size=(5, 4)), None)
    with pytest.raises(GenmemError, match="dequantize needs discrete data"):
        prepare(continuous, dequantize=True)
    with pytest.raises(GenmemError, match="pad_to needs images"):
        prepare(continuous, pad_to=8)
    with pytest.raises(GenmemError, match="is constant"):
        prepare(make_dataset(np.ones((3, 2)), None))
    with pytest.raises(GenmemError, match="exceeds the number of examples"):
        prepare(make_dataset(np.eye(3, 5), None), pca=4)
    with pytest.raises(GenmemError, match="needs a Dataset .* or an array"):
        prepare({"x": np.zeros((3, 3))})


def test_info_is_json(digits):
    for kwargs in (dict(), dict(dequantize=True), dict(binarize="fixed", pad_to=10), dict(pca=3)):
        info = json.loads(json.dumps(prepare(digits, **kwargs).info))
        assert info["dataset"] == "digits" and info["n"] == 1797 and info["image_shape"] == [8, 8]


def test_bits_per_dim():
    assert bits_per_dim(-10 * math.log(2), 10) == pytest.approx(1.0)
    np.testing.assert_allclose(bits_per_dim([-math.log(2) * 6, 0.0], 3), [2.0, 0.0])
    with pytest.raises(GenmemError, match="positive int"):
        bits_per_dim(1.0, 0)


# -- image folders ------------------------------------------------------------------------------


def write_png(path, array):
    """Save a uint8 [H, W] (grey) or [H, W, 3] (RGB) array losslessly and return it."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


def test_folder_flat_grey_in_path_order(tmp_path):
    rng = np.random.default_rng(0)
    written = {n: write_png(tmp_path / n, rng.integers(0, 256, (3, 5), dtype=np.uint8))
               for n in ("b.png", "a.PNG", "a0.bmp")}
    (tmp_path / "notes.txt").write_text("not an image")
    ds = load_dataset(f"folder:{tmp_path}")
    order = ["a.PNG", "a0.bmp", "b.png"]  # sorted by relative path
    np.testing.assert_array_equal(ds.x, np.stack([written[n] for n in order]))
    assert ds.x.dtype == np.uint8 and ds.x.shape == (3, 3, 5) and ds.image_shape == (3, 5)
    np.testing.assert_array_equal(ds.labels, [-1, -1, -1])
    np.testing.assert_array_equal(ds.index, [0, 1, 2])
    assert ds.levels == 256 and ds.source == str(tmp_path) and ds.split == "train"
    with pytest.raises(GenmemError, match="has no split 'test'; available: train"):
        load_dataset(f"folder:{tmp_path}", split="test")


def test_folder_class_subfolders_rgb(tmp_path):
    rng = np.random.default_rng(1)
    layout = [("dog", "2.png"), ("cat", "x.png"), ("dog", "1.png"), ("cat", "deep/y.png"), ("emu", "e.png")]
    written = {f"{c}/{f}": write_png(tmp_path / c / f, rng.integers(0, 256, (4, 2, 3), dtype=np.uint8))
               for c, f in layout}
    (tmp_path / "empty").mkdir()  # a class folder without images is not a class
    ds = load_dataset(f"folder:{tmp_path}")
    order = ["cat/deep/y.png", "cat/x.png", "dog/1.png", "dog/2.png", "emu/e.png"]
    np.testing.assert_array_equal(ds.x, np.stack([written[k] for k in order]))
    assert ds.x.shape == (5, 4, 2, 3) and ds.image_shape == (4, 2, 3)
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1, 2])
    assert ds.labels.dtype == np.int64 and ds.label_names == ["cat", "dog", "emu"]


def test_folder_modes_converted(tmp_path):
    from PIL import Image

    grey = write_png(tmp_path / "a.png", np.array([[0, 128], [255, 7]], np.uint8))
    palette = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.save(tmp_path / "b.png")
    rgba = np.array([[[1, 2, 3, 255], [4, 5, 6, 0]], [[7, 8, 9, 9], [250, 251, 252, 128]]], np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "c.png")
    ds = load_dataset(f"folder:{tmp_path}")
    expected = np.stack([
        np.repeat(grey[..., None], 3, axis=2),  # grey mixed with colour -> replicated into RGB
        np.array([[[10, 20, 30], [200, 100, 50]], [[200, 100, 50], [10, 20, 30]]], np.uint8),
        rgba[..., :3],  # RGBA -> RGB drops alpha
    ])
    np.testing.assert_array_equal(ds.x, expected)
    assert ds.image_shape == (2, 2, 3)


def test_folder_jpeg_grey_stays_grey(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((4, 4), 90, np.uint8)).save(tmp_path / "g.jpg")
    Image.fromarray(np.full((4, 4), 90, np.uint8), mode="L").convert("LA").save(tmp_path / "h.png")
    ds = load_dataset(f"folder:{tmp_path}")  # an LA image makes the folder colour
    assert ds.x.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(ds.x, 90, atol=2)  # JPEG is lossy; a constant block stays within 2


def test_folder_errors(tmp_path):
    write_png(tmp_path / "ok" / "a.png", np.zeros((3, 4), np.uint8))
    write_png(tmp_path / "ok" / "b.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(GenmemError, match=r"b\.png is 4x5 pixels \(width x height\) but .*a\.png .* 4x3; resize"):
        load_dataset(f"folder:{tmp_path / 'ok'}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(GenmemError, match=f"{tmp_path / 'empty'} holds no image files; pass a folder of "
                                          r"\.bmp, \.gif, \.jpeg, \.jpg, \.png files"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(GenmemError, match=f"{tmp_path / 'nope'} is not an existing folder; .*\\.png files"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    write_png(tmp_path / "mixed" / "top.png", np.zeros((2, 2), np.uint8))
    write_png(tmp_path / "mixed" / "cls" / "a.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(GenmemError, match=r"mixes image files \(top\.png\) with class subfolders \(cls/\)"):
        load_dataset(f"folder:{tmp_path / 'mixed'}")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    with pytest.raises(GenmemError, match=r"cannot read .*x\.png as an image"):
        load_dataset(f"folder:{tmp_path / 'bad'}")
    with pytest.raises(GenmemError, match="folder:PATH"):
        load_dataset("imagenet")


def test_folder_without_pillow(tmp_path, monkeypatch):
    write_png(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    monkeypatch.setitem(__import__("sys").modules, "PIL", None)  # makes 'from PIL import ...' raise ImportError
    with pytest.raises(GenmemError, match="needs Pillow; install it with 'pip install pillow'"):
        load_dataset(f"folder:{tmp_path}")
