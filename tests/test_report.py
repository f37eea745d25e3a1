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


# -- the HTML page ---------------------------------------------------------------------------------


def test_html_page_is_self_contained_and_holds_every_section(run_file, tmp_path, data):
    import matplotlib

    backend = matplotlib.get_backend()
    page = tmp_path / "page.html"
    out = run(["report", run_file, "--html", page, "-n", 5])
    assert out.exit_code == 0, out.output
    text = page.read_text()
    assert matplotlib.get_backend() == backend  # drawn on Agg figures, the caller's backend untouched
    assert text.startswith("<!DOCTYPE html>") and "genmem_identity: report:" in text.splitlines()[1]
    for section in ("Warnings", "Memorization M", "The 5 most memorized examples", "The 5 least memorized examples",
                    "M against the other views", "Agreement", "Configuration", "Provenance"):
        assert f"<h2>{section}</h2>" in text, section
    assert text.count('src="data:image/png;base64,') == 4 and "http" not in text.replace("http-equiv", "")
    m, _ = arrays(run_file)
    top = np.argsort(-m, kind="stable")[:5]
    assert f"<td>{top[0]}</td>" in text and f"{m[top[0]]:.4g}" in text  # the most memorized row and its score
    again = run(["report", run_file, "--html", page])  # the same run's page is replaced
    assert again.exit_code == 0
    other = tmp_path / "other.h5"
    genmem.kfold(genmem.models.KDE(0.7), data, folds=3, out=other)
    assert_one_line_error(run(["report", other, "--html", page]), "--force")
    assert_one_line_error(run(["report", run_file, "--html", tmp_path / "page.txt"]), ".html")


PROBE = """<script>
window.__errors=[];window.addEventListener("error",function(e){window.__errors.push(String(e.message))});
window.addEventListener("load",function(){var imgs=Array.from(document.images);
var ok=imgs.filter(function(i){return i.complete&&i.naturalWidth>0}).length;
document.body.setAttribute("data-probe","images "+ok+"/"+imgs.length+" errors "+window.__errors.length);});
</script>"""


@pytest.mark.slow
def test_html_page_of_a_vae_run_with_views_renders_in_headless_chromium(tmp_path):
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Chromium (Debian's chromium package)")
    path = tmp_path / "vae.h5"
    assert run(["kfold", "--model", "vae", "--folds", 3, "--repeats", 2, "--limit", 300, "--epochs", 3,
                "--num-samples", 32, "--checkpoints", 2, "--out", path, "-q"]).exit_code == 0
    assert run(["influence", path, "--self"]).exit_code == 0
    assert run(["neighbours", path]).exit_code == 0
    page = tmp_path / "vae.html"
    assert run(["report", path, "--html", page]).exit_code == 0
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    images = page.read_text().count("<img ")
    assert images == 4 and f'data-probe="images {images}/{images} errors 0"' in dom.stdout, dom.stdout[:800]
    assert "Uncaught" not in dom.stderr and "CONSOLE" not in dom.stderr
    shot = tmp_path / "vae.png"
    subprocess.run([chromium, *flags, "--window-size=1200,3200", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 50_000
    for name in ("influence/self", "neighbours/distance", "log p out"):
        assert name in page.read_text()
