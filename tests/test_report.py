"""``genmem report`` through click's CliRunner, checked against scipy and NumPy on the file's own arrays."""
import json
import shutil

import h5py
import numpy as np
import pytest
from scipy.stats import spearmanr

import genmem

from cli_helpers import assert_one_line_error, run


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).normal(size=(60, 2))


@pytest.fixture(scope="module")
def run_file(tmp_path_factory, data):
    """A 3-fold KDE run with the (brute-force) nearest-neighbour distance added as a view."""
    path = tmp_path_factory.mktemp("report") / "run.h5"
    genmem.kfold(genmem.models.KDE(0.5), data, folds=3, out=path)
    d = np.linalg.norm(data[:, None] - data[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    genmem.results.add_views(path, {"neighbours/distance": d.min(axis=1)})
    return path


def arrays(path):
    with h5py.File(path, "r") as f:
        return f["scores/memorization"][()], f["neighbours/distance"][()]


def test_text_report_gives_the_run_summaries_and_scipy_spearman(run_file):
    m, dist = arrays(run_file)
    out = run(["report", run_file])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0] == "run: model kde, dataset array, N=60, K=3, R=1, estimator balanced"
    row = next(line for line in lines if line.startswith("neighbours/distance")).split()
    np.testing.assert_allclose([float(v) for v in row[1:]],
                               [dist.mean(), np.median(dist), dist.min(), dist.max()], rtol=1e-3)
    line = next(line for line in lines if line.startswith("spearman memorization vs neighbours/distance"))
    assert float(line.split(": ")[1].split()[0]) == pytest.approx(spearmanr(m, dist).statistic, abs=5e-5)
    assert not any("standard error" in line for line in lines)  # R = 1


def test_json_report_fields(run_file):
    m, dist = arrays(run_file)
    out = run(["report", run_file, "--json", "-n", 7])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["run"] == {"model": "kde", "dataset": "array", "N": 60, "K": 3, "R": 1, "estimator": "balanced"}
    assert set(doc["summaries"]) == {"memorization", "neighbours/distance"}
    assert doc["summaries"]["memorization"] == pytest.approx(
        {"mean": m.mean(), "median": np.median(m), "min": m.min(), "max": m.max()})
    (pair,) = doc["pairs"]
    rho, p = spearmanr(m, dist)
    assert (pair["a"], pair["b"], pair["n"], pair["top"]) == ("memorization", "neighbours/distance", 60, 7)
    assert pair["spearman"] == pytest.approx(rho) and pair["pvalue"] == pytest.approx(p)
    top_m = set(sorted(range(60), key=lambda i: -m[i])[:7])
    top_d = set(sorted(range(60), key=lambda i: -dist[i])[:7])
    assert pair["top_overlap"] == pytest.approx(len(top_m & top_d) / 7)
    assert doc["mean_stderr"] is None


def test_repeats_report_the_mean_standard_error(tmp_path, data):
    path = tmp_path / "r2.h5"
    genmem.kfold(genmem.models.KDE(0.5), data, folds=3, repeats=2, out=path)
    with h5py.File(path, "r") as f:
        stderr = f["scores/stderr"][()]
    doc = json.loads(run(["report", path, "--json"]).stdout)
    assert doc["run"]["R"] == 2 and doc["pairs"] == []
    assert doc["mean_stderr"] == pytest.approx(stderr.mean())
    assert "mean standard error" in run(["report", path]).stdout


@pytest.mark.parametrize("with_view", [True, False])
def test_plot_writes_a_png(run_file, tmp_path, data, with_view):
    path = run_file
    if not with_view:
        path = tmp_path / "plain.h5"
        genmem.kfold(genmem.models.KDE(0.5), data, folds=3, out=path)
    png = tmp_path / "report.png"
    out = run(["report", path, "--plot", png])
    assert out.exit_code == 0, out.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_files_give_one_line_errors(run_file, tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    assert_one_line_error(run(["report", foreign]), str(foreign))
    assert_one_line_error(run(["report", tmp_path / "missing.h5"]), "missing.h5")
    unfinished = tmp_path / "unfinished.h5"
    shutil.copy(run_file, unfinished)
    with h5py.File(unfinished, "r+") as f:
        f["folds/done"][0, 0] = False
    assert_one_line_error(run(["report", unfinished]), "unfinished", "genmem kfold")
    assert_one_line_error(run(["report", run_file, "-n", 0]), "-n")
