"""Issue 11, finding by finding: nothing run from a data file, nothing overwritten, nothing silently wrong.

Each test names the finding it guards. The oracles are independent of the
code under test: arrays written by the test itself, a fresh uninterrupted run,
brute-force log-sum-exps, the bytes of a file before and after a command.
"""
import contextlib
import gzip
import io
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, run
from scipy.special import logsumexp
from test_runner import Interrupting  # a KDE interrupted as by Ctrl-C

import genmem
from genmem.data import load_dataset, read_idx
from genmem.errors import GenmemError
from genmem.models import GMM, KDE, VAE
from genmem.neighbours import data_copying_test
from genmem.outputs import atomic_path, claim, output_lock
from genmem.results import add_views, read_result

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
GENMEM = [sys.executable, "-c", "from genmem.cli import main; main()"]


def tree(folder):
    """Every name below ``folder`` (hidden ones too), sorted."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


@pytest.fixture
def kde_run(tmp_path):
    """A complete 3-fold KDE run of 40 points, and the data."""
    X = np.random.default_rng(1).normal(size=(40, 3))
    out = tmp_path / "run.h5"
    genmem.kfold(KDE(0.6), X, folds=3, out=out, images=1 / (1 + np.exp(-X)))
    return out, X


@contextlib.contextmanager
def held_by_another_process(path):
    """Another process holding genmem's lock on ``path``; yields its PID."""
    code = ("import sys, time\nfrom genmem.outputs import output_lock\nwith output_lock(sys.argv[1]):\n"
            "    print('held', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, env=ENV)
    try:
        assert proc.stdout.readline().strip() == b"held"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


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


# -- 2. clobbers ------------------------------------------------------------------------------------------

def refused_and_unchanged(args, path, *words):
    """``genmem ARGS`` fails with one line holding ``words`` and leaves ``path`` byte for byte as it was."""
    before = Path(path).read_bytes()
    assert_one_line_error(run(args), *words)
    assert Path(path).read_bytes() == before


def test_finding_2_save_bank_never_replaces_its_input_or_another_file(kde_run, tmp_path):
    out, _ = kde_run
    refused_and_unchanged(["neighbours", out, "--save-bank", out], out, "--save-bank", "is an input of this command")
    other = tmp_path / "other.h5"
    genmem.kfold(KDE(0.7), np.random.default_rng(2).normal(size=(20, 3)), folds=2, out=other)
    refused_and_unchanged(["neighbours", out, "--save-bank", other], other, "exists", "--force")
    bank = tmp_path / "bank.h5"
    assert run(["neighbours", out, "--save-bank", bank]).exit_code == 0
    assert run(["neighbours", out, "--save-bank", bank]).exit_code == 0  # the same run's bank is replaced
    assert run(["neighbours", out, "--save-bank", other, "--force"]).exit_code == 0
    with h5py.File(other) as f:
        assert f.attrs["format"] == "genmem.neighbours" and f["features"].shape == (40, 3)
    assert read_result(out).views["neighbours/distance"].shape == (40,)


def test_finding_2_gan_out_is_not_replaced_without_force(kde_run, tmp_path):
    out, _ = kde_run
    tiny = ["gan", "--limit", "200", "--steps", "2", "--batch-size", "16", "--n-samples", "100", "--cells", "2",
            "--device", "cpu"]
    refused_and_unchanged([*tiny, "--out", out], out, str(out), "--force")
    gan = tmp_path / "gan.h5"
    assert run([*tiny, "--out", gan]).exit_code == 0
    assert run([*tiny, "--out", gan]).exit_code == 0  # the same run again
    assert_one_line_error(run([*tiny, "--out", gan, "--seed", "1"]), "another run", "--force")
    assert run([*tiny, "--out", gan, "--seed", "1", "--force"]).exit_code == 0


@pytest.mark.parametrize("plot, words", [("x.txt", ["must end in .png"]), ("{out}", ["is an input of this command"]),
                                         ("{other}", ["--force"])])
def test_plots_never_replace_inputs_or_other_files(kde_run, tmp_path, plot, words):
    out, _ = kde_run
    other = tmp_path / "mine.png"
    other.write_bytes(b"\x89PNG\r\n\x1a\n not genmem's")
    before = {p: p.read_bytes() for p in (out, other)}
    for command in ("top", "report"):
        assert_one_line_error(run([command, out, "--plot", plot.format(out=out, other=other)]), *words)
    assert {p: p.read_bytes() for p in (out, other)} == before
    assert run(["top", out, "--plot", tmp_path / "t.png"]).exit_code == 0
    assert run(["report", out, "--plot", tmp_path / "t.png"]).exit_code == 0  # a plot of the same run


def test_finding_2_export_never_replaces_its_input_or_an_existing_table(kde_run, tmp_path):
    out, _ = kde_run
    refused_and_unchanged(["export", out, "--csv", out], out, "--csv", "is an input of this command")
    table = tmp_path / "t.csv"
    table.write_text("someone's table\n")
    refused_and_unchanged(["export", out, "--csv", table], table, "--force")
    assert run(["export", out, "--csv", table, "--force"]).exit_code == 0
    assert len(table.read_text().splitlines()) == 41 and tree(tmp_path) == ["run.h5", "t.csv"]


# -- 3. one artifact folder per output name ----------------------------------------------------------------

@pytest.fixture(scope="module")
def vae_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vae")
    X = (np.random.default_rng(8).uniform(size=(18, 6)) > 0.5).astype(float)
    model = VAE(latent_dim=2, hidden=(5,), epochs=2, batch_size=8, checkpoints=2, num_samples=4, dtype="float64")
    genmem.kfold(model, X, folds=3, out=folder / "r.h5", seed=1)
    genmem.kfold(model, X, folds=3, out=folder / "r.hdf5", seed=2)
    return folder


def test_finding_3_suffixes_keep_their_own_checkpoints_and_another_runs_are_refused(vae_runs, tmp_path):
    assert (vae_runs / "r.h5.units").is_dir() and (vae_runs / "r.hdf5.units").is_dir()
    assert not (vae_runs / "r.units").exists()
    for name in ("r.h5", "r.hdf5"):
        manifest = json.loads((vae_runs / f"{name}.units" / "manifest.json").read_text())
        assert manifest["fingerprint"] == read_result(vae_runs / name).config["fingerprint"]
        assert sorted(manifest["files"]) == [f"unit_r0_k{k}.pt" for k in range(3)]
    shutil.copy(vae_runs / "r.h5", tmp_path / "r.h5")
    shutil.copytree(vae_runs / "r.hdf5.units", tmp_path / "r.h5.units")  # the collision of old
    assert_one_line_error(run(["influence", tmp_path / "r.h5", "--self"]), "another run")
    shutil.rmtree(tmp_path / "r.h5.units")
    shutil.copytree(vae_runs / "r.h5.units", tmp_path / "r.h5.units")
    assert run(["influence", tmp_path / "r.h5", "--self", "--device", "cpu"]).exit_code == 0
    assert run(["info", tmp_path / "r.h5", "--verify"]).exit_code == 0


def test_finding_3_a_different_run_does_not_reuse_the_unit_folder(vae_runs, tmp_path):
    shutil.copytree(vae_runs / "r.h5.units", tmp_path / "r.h5.units")
    X = (np.random.default_rng(9).uniform(size=(18, 6)) > 0.5).astype(float)
    model = VAE(latent_dim=2, hidden=(5,), epochs=1, batch_size=8, checkpoints=1, num_samples=4, dtype="float64")
    with pytest.raises(GenmemError, match="per-unit files of another run.*--force"):
        genmem.kfold(model, X, folds=3, out=tmp_path / "r.h5")
    genmem.kfold(model, X, folds=3, out=tmp_path / "r.h5", force=True)
    assert run(["influence", tmp_path / "r.h5", "--self", "--device", "cpu"]).exit_code == 0


def test_finding_10_a_checkpoint_write_that_fails_leaves_no_truncated_file(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):  # inside torch.save, after it created the file, as a full disk does
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch.serialization, "_save", full_disk)
    X = (np.random.default_rng(8).uniform(size=(18, 6)) > 0.5).astype(float)
    model = VAE(latent_dim=2, hidden=(5,), epochs=1, batch_size=8, checkpoints=1, num_samples=4)
    with pytest.raises(GenmemError, match="checkpoints.*failed.*free some disk space"):
        genmem.kfold(model, X, folds=3, out=tmp_path / "r.h5")
    assert tree(tmp_path) == []  # no .pt, no temporary folder, no partial, no lock


def test_finding_11_an_output_that_collides_with_the_unit_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(KDE, "fit_units", lambda *a, **kw: pytest.fail("a unit was fitted"))
    (tmp_path / "r.h5.units").write_text("not a folder")
    with pytest.raises(GenmemError, match="r.h5.units exists and is not a folder"):
        genmem.kfold(KDE(0.5), np.eye(4), folds=2, out=tmp_path / "r.h5")
    (tmp_path / "d.h5").mkdir()
    with pytest.raises(GenmemError, match="is a folder"):
        genmem.kfold(KDE(0.5), np.eye(4), folds=2, out=tmp_path / "d.h5")


def test_finding_11_an_unwritable_output_folder_is_refused_before_any_work(monkeypatch):
    try:
        claim("/sys/probe.h5", None)
    except GenmemError:
        pass
    else:  # pragma: no cover - depends on the machine
        pytest.skip("no folder this process cannot write to (/sys is writable here)")
    monkeypatch.setattr(KDE, "fit_units", lambda *a, **kw: pytest.fail("a unit was fitted"))
    with pytest.raises(GenmemError, match="cannot write to the output folder /sys"):
        genmem.kfold(KDE(0.5), np.eye(4), folds=2, out="/sys/r.h5")
    assert_one_line_error(run(["gan", "--out", "/sys/gan.h5", "--steps", "1"]), "cannot write", "/sys")


# -- 4. one writer per output --------------------------------------------------------------------------------

def test_finding_4_a_second_writer_is_refused_with_the_first_ones_pid(tmp_path):
    out = tmp_path / "r.h5"
    X = np.random.default_rng(3).normal(size=(20, 2))
    with held_by_another_process(out) as pid:
        with pytest.raises(GenmemError, match=f"r.h5 is in use by PID {pid}"):
            genmem.kfold(KDE(0.5), X, folds=2, out=out)
        assert_one_line_error(run(["kfold", "--model", "kde", "--out", out]), f"in use by PID {pid}")
    genmem.kfold(KDE(0.5), X, folds=2, out=out)  # free again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]  # the lock file is gone


def test_finding_4_views_of_a_replaced_run_are_not_written(kde_run):
    out, X = kde_run
    old = read_result(out)
    genmem.kfold(KDE(0.9), X, folds=3, out=out, force=True)  # replaced while 'influence' was computing
    with pytest.raises(GenmemError, match="now holds another run"):
        add_views(out, {"influence/self": np.zeros(40)}, fingerprint=old.config["fingerprint"])
    assert read_result(out).views == {}
    with held_by_another_process(out) as pid:  # and while a view is being computed, --force waits its turn
        with pytest.raises(GenmemError, match=f"in use by PID {pid}"):
            genmem.kfold(KDE(0.3), X, folds=3, out=out, force=True)
    add_views(out, {"influence/self": np.arange(40.0)}, fingerprint=read_result(out).config["fingerprint"])
    with h5py.File(out) as f:
        assert f["influence/self"].attrs["run_fingerprint"] == read_result(out).config["fingerprint"]


# -- 5. resume semantics --------------------------------------------------------------------------------------

def _interrupted(out, X, calls=2, **kwargs):
    Interrupting.calls = calls
    with pytest.raises(KeyboardInterrupt):
        genmem.kfold(Interrupting(0.5), X, folds=4, repeats=2, seed=7, units_per_batch=2, out=out, **kwargs)
    return read_result(out.with_name(out.name + ".partial"))


def test_finding_5_force_resumes_the_same_run_and_restart_starts_over(tmp_path, monkeypatch):
    X = np.random.default_rng(4).normal(size=(30, 2))
    out = tmp_path / "r.h5"
    fresh = genmem.kfold(KDE(0.5), X, folds=4, repeats=2, seed=7)
    assert _interrupted(out, X, force=True).done.sum() == 4
    fitted = []
    monkeypatch.setattr(KDE, "fit_units", lambda self, X, masks, *a, _f=KDE.fit_units, **kw:
                        fitted.append(len(masks)) or _f(self, X, masks, *a, **kw))
    resumed = genmem.kfold(KDE(0.5), X, folds=4, repeats=2, seed=7, units_per_batch=2, out=out, force=True)
    assert sum(fitted) == 4  # only the missing units
    np.testing.assert_array_equal(resumed.loglik, fresh.loglik)
    _interrupted(tmp_path / "s.h5", X)
    fitted.clear()
    genmem.kfold(KDE(0.5), X, folds=4, repeats=2, seed=7, units_per_batch=2, out=tmp_path / "s.h5", restart=True)
    assert sum(fitted) == 8


def test_finding_5_the_interruption_message_tells_the_truth(tmp_path, monkeypatch):
    monkeypatch.setattr(KDE, "fit_units", lambda *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt))
    result = run(["kfold", "--model", "kde", "--limit", "50", "--folds", "2", "--out", tmp_path / "r.h5", "-q"])
    assert result.exit_code == 130 and "nothing to resume" in result.output and ".partial" not in result.output


# -- 6. unsound partial units ----------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["nan", "inf", "done-over-nan"])
def test_finding_6_unsound_units_of_a_partial_are_recomputed(tmp_path, damage):
    X = np.random.default_rng(5).normal(size=(30, 2))
    out = tmp_path / "r.h5"
    partial = _interrupted(out, X, calls=3)
    with h5py.File(out.with_name("r.h5.partial"), "r+") as f:
        if damage == "done-over-nan":
            done = f["folds/done"][()]
            done[1, 3] = True  # marked done, but its row was never computed (NaN)
            f["folds/done"][...] = done
        else:
            f["loglik"][0, 1, 5] = np.nan if damage == "nan" else np.inf
    with pytest.warns(UserWarning, match="non-finite log-likelihoods.*recomputing"):
        resumed = genmem.kfold(KDE(0.5), X, folds=4, repeats=2, seed=7, units_per_batch=2, out=out)
    fresh = genmem.kfold(KDE(0.5), X, folds=4, repeats=2, seed=7)
    np.testing.assert_array_equal(read_result(out).loglik, fresh.loglik)
    assert np.isfinite(resumed.memorization).all() and partial.done.sum() == 6


def test_finding_6_a_complete_file_with_unsound_scores_is_recomputed(kde_run):
    out, X = kde_run
    with h5py.File(out, "r+") as f:
        f["scores/memorization"][...] = np.nan
    with pytest.warns(UserWarning, match="stored scores do not follow"):
        again = genmem.kfold(KDE(0.6), X, folds=3, out=out)
    assert np.isfinite(again.memorization).all() and np.isfinite(read_result(out).memorization).all()


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


# -- 8. a results file is checked against its run -----------------------------------------------------------------

def test_finding_8_replaced_data_is_refused_and_verify_says_so(kde_run):
    out, X = kde_run
    assert run(["info", out, "--verify"]).exit_code == 0
    with h5py.File(out, "r+") as f:
        f["data/x"][...] = X + 1.0
    assert_one_line_error(run(["influence", out, "--self"]), "does not match the run's data hash")
    assert_one_line_error(run(["neighbours", out]), "does not match the run's data hash")
    verify = run(["info", out, "--verify"])
    assert "verify data hash: FAILED" in verify.output
    assert_one_line_error(verify, "failed verification", "data hash")


def test_finding_8_verify_checks_scores_and_views(kde_run):
    out, X = kde_run
    add_views(out, {"neighbours/distance": np.ones(40)})
    with h5py.File(out, "r+") as f:
        f["neighbours/distance"].attrs["run_fingerprint"] = "another"
        f["scores/loglik_in"][3] += 1.0
    verify = run(["info", out, "--verify"])
    assert "verify scores: FAILED" in verify.output and "verify view neighbours/distance: FAILED" in verify.output
    assert_one_line_error(verify, "failed verification")


@pytest.mark.parametrize("link", ["external", "soft-self", "soft"])
def test_finding_8_links_inside_a_results_file_are_refused(kde_run, tmp_path, link):
    out, X = kde_run
    with h5py.File(tmp_path / "elsewhere.h5", "w") as f:
        f["x"] = X + 5
    with h5py.File(out, "r+") as f:
        del f["data/x"]
        f["data/x"] = {"external": h5py.ExternalLink(str(tmp_path / "elsewhere.h5"), "/x"),
                       "soft-self": h5py.SoftLink("/data/x"), "soft": h5py.SoftLink("/loglik")}[link]
    for command in (["info"], ["top"], ["influence", "--self"]):
        assert_one_line_error(run([command[0], out, *command[1:]]), "damaged", "link at /data/x")


# -- 9. resources -------------------------------------------------------------------------------------------------

def test_finding_9_large_requests_are_refused_before_they_are_allocated(tmp_path):
    cases = [(["kfold", "--model", "kde", "--repeats", "1000000000"], "--repeats"),
             (["kfold", "--model", "kde", "--pad-to", "100000"], "--pad-to"),
             (["gan", "--n-samples", "100000000000", "--steps", "1"], "--n-samples")]
    for args, option in cases:
        start = time.perf_counter()
        assert_one_line_error(run([*args, "--out", tmp_path / "o.h5"]), option, "memory available")
        assert time.perf_counter() - start < 30
    assert tree(tmp_path) == []


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

def _damage(name):
    def config(f, value):
        f.attrs["config"] = value

    def replace(f, key, value):
        del f[key]
        f[key] = value

    return {
        "config is a JSON list": lambda f: config(f, "[1, 2]"),
        "config without model": lambda f: config(f, json.dumps({k: v for k, v in json.loads(f.attrs["config"]).items()
                                                                if k != "model"})),
        "format_version abc": lambda f: f.attrs.__setitem__("format_version", "abc"),
        "short /data/index": lambda f: replace(f, "data/index", np.arange(5)),
        "no /scores/loglik_in": lambda f: f.__delitem__("scores/loglik_in"),
        "1-D /loglik": lambda f: replace(f, "loglik", np.zeros(40)),
        "bytes scores": lambda f: replace(f, "scores/memorization", np.array([b"x"] * 40)),
        "self soft link": lambda f: replace(f, "scores/memorization", h5py.SoftLink("/scores/memorization")),
        "short /data/x": lambda f: replace(f, "data/x", np.zeros((5, 3))),
        "group for a dataset": lambda f: (f.__delitem__("folds/done"), f.create_group("folds/done")),
        "a view that is a group": lambda f: f.create_group("neighbours/distance"),
        "a replaced /example scale": lambda f: replace(f, "example", np.arange(40)),  # leaves dangling scale links
    }[name]


@pytest.mark.parametrize("damage", ["config is a JSON list", "config without model", "format_version abc",
                                    "short /data/index", "no /scores/loglik_in", "1-D /loglik", "bytes scores",
                                    "self soft link", "short /data/x", "group for a dataset"])
def test_finding_10_damaged_files_are_one_line_errors(kde_run, damage):
    out, _ = kde_run
    with h5py.File(out, "r+") as f:
        _damage(damage)(f)
    for command in (["info"], ["top"], ["report"], ["influence", "--self"], ["neighbours"]):
        assert_one_line_error(run([command[0], out, *command[1:]]), str(out))


@pytest.mark.parametrize("damage", ["a view that is a group", "a replaced /example scale"])
def test_finding_10_a_view_written_into_a_damaged_file_is_a_one_line_error(kde_run, damage):
    out, _ = kde_run
    if damage == "a replaced /example scale":  # the views that are there then point to a scale that is gone
        add_views(out, {"neighbours/distance": np.zeros(40)})
    with h5py.File(out, "r+") as f:
        _damage(damage)(f)
    before = out.read_bytes()
    assert_one_line_error(run(["neighbours", out]), str(out), "damaged")
    assert out.read_bytes() == before


def test_finding_10_inputs_that_gave_tracebacks(kde_run, tmp_path):
    out, _ = kde_run
    np.save(tmp_path / "x.npy", np.zeros((10, 3)))
    (tmp_path / "empty.npy").write_bytes(b"")
    np.savez(tmp_path / "objects.npz", x=np.array([{}, 1], dtype=object))
    torch.save({"model": Interrupting}, tmp_path / "pickle.pt")  # a pickle that is not weights only
    cases = [(["kfold", "--model", "kde", "--dataset", f"npz:{tmp_path / 'x.npy'}"], ["npy:"]),
             (["kfold", "--model", "kde", "--dataset", f"npy:{tmp_path / 'empty.npy'}"], ["empty.npy"]),
             (["influence", out, "--test-data", tmp_path / "objects.npz"], ["objects.npz"]),
             (["neighbours", out, "--embed", f"vae:{tmp_path / 'pickle.pt'}"], ["pickle.pt", "checkpoint"]),
             (["top", out, "--plot", tmp_path / "x.txt"], ["must end in .png"]),
             (["top", out, "--plot", out], ["is an input of this command"])]
    for args, words in cases:
        assert_one_line_error(run([*args]), *words)


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


def test_finding_10_and_12_sigterm_is_handled_like_ctrl_c_and_leaves_no_temporary_file(tmp_path):
    args = ["kfold", "--model", "kde", "--limit", "400", "--folds", "40", "--repeats", "3", "--units-per-batch", "1",
            "--out", str(tmp_path / "r.h5"), "-q"]
    proc = subprocess.Popen([*GENMEM, "--threads", "1", *args], stderr=subprocess.PIPE, env=ENV)
    deadline = time.time() + 60
    while not (tmp_path / "r.h5.partial").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=60)[1].decode()
    if proc.returncode == 0:
        pytest.skip("the run finished before SIGTERM arrived")
    assert proc.returncode == 143 and "Traceback" not in stderr and "units are saved in" in stderr, stderr
    assert tree(tmp_path) == ["r.h5.partial"]
    assert run(["--threads", "1", *args]).exit_code == 0  # resumes
    fresh = run(["--threads", "1", *args[:-3], "--out", tmp_path / "fresh.h5"])
    assert fresh.exit_code == 0
    np.testing.assert_array_equal(read_result(tmp_path / "r.h5").loglik, read_result(tmp_path / "fresh.h5").loglik)


# -- 12. temporary files ---------------------------------------------------------------------------------------------

def test_finding_12_temporary_files_are_never_opened_through_a_planted_link(kde_run, tmp_path):
    out, X = kde_run
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for pid in range(os.getpid() - 5, os.getpid() + 50):  # the old predictable names
        (tmp_path / f".run.h5.tmp-{pid}").symlink_to(victim)
    genmem.kfold(KDE(0.8), X, folds=3, out=out, force=True)
    add_views(out, {"influence/self": np.zeros(40)})
    assert victim.read_text() == "keep me"
    with atomic_path(tmp_path / "x.bin") as tmp:
        assert not tmp.is_symlink() and tmp.stat().st_size == 0 and tmp.name.startswith(".x.bin.tmp-")
        umask = os.umask(0)
        os.umask(umask)
        assert tmp.stat().st_mode & 0o777 == 0o666 & ~umask


def test_finding_12_stale_temporaries_of_dead_processes_are_removed(kde_run, tmp_path):
    out, X = kde_run
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    with atomic_path(tmp_path / "x.h5") as live:
        stale = live.with_name(live.name.replace(f"-{os.getpid()}-", f"-{dead.pid}-"))
        shutil.copy(out, stale)
        (tmp_path / "keep.txt").write_text("not genmem's")
        genmem.kfold(KDE(0.4), X, folds=3, out=tmp_path / "other.h5")
        assert not stale.exists() and live.exists() and (tmp_path / "keep.txt").exists()


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


def test_output_lock_is_reentrant_and_released(tmp_path):
    path = tmp_path / "o.h5"
    with output_lock(path), output_lock(path):
        assert (tmp_path / ".o.h5.lock").read_text().split()[0] == str(os.getpid())
    assert not (tmp_path / ".o.h5.lock").exists()
