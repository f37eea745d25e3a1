"""Issue 11, finding by finding: nothing run from a data file, nothing overwritten, nothing silently wrong.

Each test names the finding it guards. The oracles are independent of the
code under test: arrays written by the test itself, a fresh uninterrupted run,
brute-force log-sum-exps, the bytes of a file before and after a command.
"""
import gzip
import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run
from scipy.special import logsumexp

import genmem
from genmem.data import load_dataset, read_idx
from genmem.errors import GenmemError
from genmem.models import GMM, KDE
from genmem.neighbours import data_copying_test

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
GENMEM = [sys.executable, "-c", "from genmem.cli import main; main()"]


# -- 1. code execution ------------------------------------------------------------------------------------

class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 strings and arrays under numpy.core, as CIFAR-10's own batches are."""

    def _save_string(self, obj):
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw if len(raw) < 256
                   else pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    def save_global(self, obj, name=None):
        if getattr(obj, "__name__", None) == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[str] = _save_string
    dispatch[bytes] = _save_string


class _Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _cifar_folder(root, style="py2", payload=None):
    """torchvision's cifar-10-batches-py with 3 random images per batch; returns (folder, train x HWC, train y)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x, y = rng.integers(0, 256, (3, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, 3)]
        batch = {b"batch_label": b"training batch", b"labels": y, b"data": x, b"filenames": [b"a.png"] * 3}
        if payload is not None and name == "data_batch_2":
            batch[b"extra"] = payload
        with open(folder / name, "wb") as f:
            if style == "py2":
                _Py2Pickler(f, protocol=2).dump(batch)
            else:
                pickle.dump(batch, f, protocol=style)
        if name != "test_batch":
            xs.append(x)
            ys += y
    return folder, np.concatenate(xs).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.array(ys)


@pytest.mark.parametrize("style", ["py2", 2, 4, 5])
def test_cifar_batches_are_read_without_unrestricted_pickle(tmp_path, style):
    _, x, y = _cifar_folder(tmp_path, style)
    data = load_dataset("cifar10", data_dir=tmp_path)
    np.testing.assert_array_equal(data.x, x)
    np.testing.assert_array_equal(data.labels, y)


@pytest.mark.parametrize("command", [["kfold", "--model", "kde", "--folds", "3"], ["gan", "--steps", "1"]])
def test_finding_1_a_payload_batch_runs_nothing_and_names_the_file(tmp_path, command):
    marker = tmp_path / "marker"
    folder, _, _ = _cifar_folder(tmp_path / "data", payload=_Payload(marker))  # the other arrays are valid
    result = run([*command, "--dataset", "cifar10", "--data-dir", tmp_path / "data", "--out", tmp_path / "o.h5"])
    assert_one_line_error(result, str(folder / "data_batch_2"), "posix.system", "runs nothing")
    assert not marker.exists() and not (tmp_path / "o.h5").exists()


# -- 5. resume semantics --------------------------------------------------------------------------------------

def test_finding_5_the_interruption_message_tells_the_truth(tmp_path, monkeypatch):
    monkeypatch.setattr(KDE, "fit_units", lambda *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt))
    result = run(["kfold", "--model", "kde", "--limit", "50", "--folds", "2", "--out", tmp_path / "r.h5", "-q"])
    assert result.exit_code == 130 and "nothing to resume" in result.output and ".partial" not in result.output


# -- 7. degenerate data ------------------------------------------------------------------------------------------

def test_finding_7_identical_rows_are_refused_up_to_rounding(tmp_path):
    same = np.tile([[0.3, 0.7, 0.1]], (300, 1))
    rounded = same + np.array([0.0, 1e-17, 0.0]) * np.arange(300)[:, None] % 3  # differ in the last bits only
    for X in (same, rounded):
        with pytest.raises(GenmemError, match="identical"):
            genmem.kfold(KDE("scott"), X, folds=3)
        with pytest.raises(GenmemError, match="identical"):
            GMM(2).fit(X, rng=0)
        with pytest.raises(GenmemError, match="identical"):
            data_copying_test(X, X[:20] + 1, X[:30] + 2, n_cells=2)
    np.save(tmp_path / "same.npy", same)
    assert_one_line_error(run(["kfold", "--model", "kde", "--dataset", f"npy:{tmp_path / 'same.npy'}", "--folds",
                               "3", "--out", tmp_path / "o.h5"]), "identical")
    spread = same.copy()
    spread[0, 0] += 1e-9  # a real, if small, difference is data
    assert np.isfinite(genmem.kfold(KDE("scott"), spread, folds=3).memorization).all()


@pytest.mark.parametrize("bandwidth", ["1e-300", "1e-160", "1e200"])
def test_finding_9_unrepresentable_bandwidths_are_one_line_errors(tmp_path, bandwidth):
    assert_one_line_error(run(["kfold", "--model", "kde", "--bandwidth", bandwidth, "--out", tmp_path / "o.h5"]),
                          "bandwidth", "float64")


# -- 9. resources -------------------------------------------------------------------------------------------------

def test_finding_9_compressed_files_are_read_no_further_than_their_headers_say(tmp_path):
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as f:  # declares 10 images, holds 50 MB
        f.write(b"\0\0\x08\x03" + struct.pack(">3I", 10, 28, 28))
        for _ in range(5):
            f.write(bytes(10_000_000))
    with pytest.raises(GenmemError, match="holds more than 7840 data bytes"):
        read_idx(bomb)
    with gzip.open(bomb, "wb") as f:
        f.write(b"\0\0\x08\x03" + struct.pack(">3I", 4_000_000_000, 1000, 1000))
    with pytest.raises(GenmemError, match="needs 4.0 PB, more than"):
        read_idx(bomb)
    header = io.BytesIO()  # an .npz member that declares 800 GB and holds 10 MB of zeros
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 11,)})
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", header.getvalue() + bytes(10_000_000))
    with pytest.raises(GenmemError, match="bomb.npz needs 800.0 GB"):
        load_dataset(f"npz:{tmp_path / 'bomb.npz'}")


# -- 10. one-line errors instead of tracebacks -----------------------------------------------------------------------

def test_finding_10_a_closed_pipe_ends_quietly(tmp_path):
    out = tmp_path / "big.h5"
    genmem.kfold(KDE(0.5), np.random.default_rng(0).normal(size=(2000, 2)), folds=2, out=out)
    buffered = {key: value for key, value in ENV.items() if key != "PYTHONUNBUFFERED"}  # -u drops short writes
    proc = subprocess.Popen([*GENMEM, "top", str(out), "-n", "2000", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=buffered)  # about 300 kB: more than a pipe holds
    proc.stdout.read(10)
    proc.stdout.close()
    assert proc.wait(timeout=60) == 1
    assert proc.stderr.read() == b""


# -- 13. KDE numbers do not depend on the batch -----------------------------------------------------------------

def test_finding_13_kde_numbers_do_not_depend_on_units_per_batch(digits):
    X = digits[0][:300]
    runs = [genmem.kfold(KDE("scott"), X, folds=5, repeats=2, seed=3, units_per_batch=b).loglik for b in (1, 3, 5, 10)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other, runs[0])


def test_kde_units_where_every_training_kernel_underflows_are_exact():
    X = np.array([[0.0], [0.01], [0.02], [100.0], [100.01], [250.0]])
    masks = np.array([[1, 1, 0, 1, 0, 1], [0, 1, 1, 1, 1, 0], [1, 0, 1, 0, 1, 1]], dtype=bool)
    h = 0.1
    out = KDE(h).fit_units(X, masks, [0, 1, 2])["loglik"]
    for u, mask in enumerate(masks):
        train = X[mask]
        brute = [logsumexp(-((x - train) ** 2).sum(1) / (2 * h * h)) - np.log(len(train))
                 - 0.5 * np.log(2 * np.pi * h * h) for x in X]
        np.testing.assert_allclose(out[u], brute, rtol=1e-12, atol=1e-9)  # d² = |x|² + |t|² − 2x·t at |x| = 250
        np.testing.assert_array_equal(KDE(h).fit_units(X, mask[None], [u])["loglik"][0], out[u])
