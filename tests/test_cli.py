"""The command line through click's CliRunner: the jobs, and one-line errors for bad input."""
import json

import h5py
import numpy as np
import pytest

import genmem
from genmem.errors import GenmemError

from cli_helpers import assert_one_line_error, run


@pytest.fixture(scope="module")
def kde_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run.h5"
    result = run(["kfold", "--model", "kde", "--folds", 5, "--repeats", 2, "--limit", 200, "--out", out, "-q"])
    assert result.exit_code == 0, result.output
    return out, result


def test_kfold_writes_a_complete_file_and_a_summary(kde_run):
    out, result = kde_run
    assert f"wrote {out}" in result.stdout and "memorization M (nats)" in result.stdout
    res = genmem.read_result(out)
    assert res.complete and res.loglik.shape == (2, 5, 200)
    assert res.config["data"]["dataset"] == "digits" and res.config["model"]["name"] == "kde"
    assert isinstance(res.config["model"]["params"]["bandwidth"], float)
    assert res.images.shape == (200, 8, 8) and res.x.shape == (200, 64)
    assert res.meta["argv"] and res.meta["versions"]["torch"]


def test_same_command_again_is_a_no_op_and_another_run_needs_force(kde_run):
    out, _ = kde_run
    before = genmem.read_result(out).loglik
    again = run(["kfold", "--model", "kde", "--folds", 5, "--repeats", 2, "--limit", 200, "--out", out, "-q"])
    assert again.exit_code == 0
    np.testing.assert_array_equal(genmem.read_result(out).loglik, before)
    other = run(["kfold", "--model", "kde", "--folds", 4, "--limit", 200, "--out", out, "-q"])
    assert_one_line_error(other, "different run", "--force")


def test_top_table_json_and_plot(kde_run, tmp_path):
    out, _ = kde_run
    res = genmem.read_result(out)
    table = run(["top", out, "-n", 3])
    assert table.exit_code == 0
    rows = table.stdout.strip().splitlines()
    assert len(rows) == 4 and "stderr" in rows[0]
    best = int(np.argmax(res.memorization))
    assert rows[1].split()[1] == str(best)
    as_json = json.loads(run(["top", out, "-n", 3, "--json"]).stdout)
    assert [r["row"] for r in as_json] == list(np.argsort(-res.memorization)[:3])
    assert as_json[0]["score"] == pytest.approx(res.memorization[best])
    png = tmp_path / "top.png"
    plotted = run(["top", out, "-n", 6, "--plot", png])
    assert plotted.exit_code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_info(kde_run):
    out, _ = kde_run
    result = run(["info", out])
    assert result.exit_code == 0 and "complete: True" in result.stdout and "/scores/stderr" in result.stdout


def test_npy_dataset(tmp_path, rng):
    np.save(tmp_path / "x.npy", rng.normal(size=(30, 3)))
    result = run(["kfold", "--model", "kde", "--folds", 3, "--dataset", f"npy:{tmp_path / 'x.npy'}",
                  "--out", tmp_path / "r.h5", "-q"])
    assert result.exit_code == 0, result.output
    assert genmem.read_result(tmp_path / "r.h5").loglik.shape == (1, 3, 30)


@pytest.mark.parametrize("args,words", [
    (["--folds", 1], ["folds", "at least 2"]),
    (["--folds", 50, "--limit", 20], ["exceeds the number of examples", "--folds 20"]),
    (["--repeats", 0], ["repeats"]),
    (["--dataset", "imagenet"], ["imagenet"]),
    (["--dataset", "mnist", "--data-dir", "/nonexistent/dir"], ["/nonexistent/dir"]),
    (["--bandwidth", "-1"], ["bandwidth"]),
])
def test_bad_kfold_input(tmp_path, args, words):
    result = run(["kfold", "--model", "kde", "--out", tmp_path / "x.h5", "-q", *args])
    assert_one_line_error(result, *words)
    assert not (tmp_path / "x.h5").exists()


def test_unknown_model_is_a_usage_error():
    result = run(["kfold", "--model", "glow"])
    assert result.exit_code == 2 and "glow" in result.output and "flow" in result.output  # the choices are listed


def test_bad_arrays(tmp_path):
    bad = np.ones((10, 3))
    bad[4, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    assert_one_line_error(run(["kfold", "--model", "kde", "--dataset", f"npy:{tmp_path / 'nan.npy'}", "-q",
                               "--out", tmp_path / "o.h5"]), "NaN")
    np.save(tmp_path / "flat.npy", np.ones(10))
    assert_one_line_error(run(["kfold", "--model", "kde", "--dataset", f"npy:{tmp_path / 'flat.npy'}", "-q",
                               "--out", tmp_path / "o.h5"]))


def test_bad_result_files(tmp_path):
    (tmp_path / "text.h5").write_text("not hdf5")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["a"] = [1]
    for cmd in ("top", "info"):
        assert_one_line_error(run([cmd, tmp_path / "text.h5"]), "not an HDF5 file")
        assert_one_line_error(run([cmd, tmp_path / "foreign.h5"]), "not a genmem results file")
        assert_one_line_error(run([cmd, tmp_path / "missing.h5"]), "no such file")


def test_debug_keeps_the_traceback(tmp_path):
    (tmp_path / "text.h5").write_text("not hdf5")
    for flag in ("--debug", "-d"):
        result = run([flag, "info", tmp_path / "text.h5"])
        assert result.exit_code == 1 and isinstance(result.exception, GenmemError)
        assert "not an HDF5 file" in str(result.exception) and result.exc_info[2] is not None
    assert_one_line_error(run(["info", tmp_path / "text.h5"]), "not an HDF5 file")  # without it: one line


def test_more_bad_kfold_input(tmp_path, rng):
    assert_one_line_error(run(["kfold", "--model", "kde", "--binarize", "dynamic", "-q", "--out", tmp_path / "a.h5"]),
                          "only the VAE")
    assert_one_line_error(run(["kfold", "--model", "kde", "--limit", 50, "-q", "--out", tmp_path / "no" / "a.h5"]),
                          "does not exist")
    assert run(["kfold", "--model", "kde", "--seed", -1]).exit_code == 2


def test_vae_on_a_flat_array(tmp_path, rng):
    np.save(tmp_path / "x.npy", rng.random((40, 6)))
    result = run(["kfold", "--model", "vae", "--folds", 2, "--epochs", 1, "--num-samples", 16, "--hidden", "8",
                  "--dataset", f"npy:{tmp_path / 'x.npy'}", "--out", tmp_path / "v.h5", "-q"])
    assert result.exit_code == 0, result.output
    assert genmem.read_result(tmp_path / "v.h5").config["model"]["params"]["image_shape"] is None


def test_top_refuses_a_matrix_view(kde_run, tmp_path):
    import shutil

    from genmem.results import add_views

    out = tmp_path / "copy.h5"
    shutil.copy(kde_run[0], out)
    add_views(out, {"influence/test": np.zeros((200, 3))})
    assert_one_line_error(run(["top", out, "--by", "influence/test"]), "per-example")


def test_threads_option_sets_torch_threads():
    import torch

    before = torch.get_num_threads()
    try:
        assert run(["--threads", 1, "info", "--help"]).exit_code == 0
        assert torch.get_num_threads() == 1
        assert run(["--threads", 0, "info", "--help"]).exit_code == 2
    finally:
        torch.set_num_threads(before)
