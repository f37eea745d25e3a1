"""The reproduction scripts of experiments/: ``--scale full`` prints the expected time read from the
benchmark JSONs and exits, and missing data stop a script with a one-line error, not a traceback.
Both run in-process and train nothing."""
import importlib
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SCRIPTS = ["reproduce_vdb", "reproduce_ct", "reproduce_mrgan", "planted_three_views"]


def run(name, argv, monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    module = importlib.import_module(name)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *argv])
    with pytest.raises(SystemExit) as stop:
        module.main()
    return stop.value.code


@pytest.mark.parametrize("name", SCRIPTS)
def test_full_scale_prints_the_expected_time_and_exits(name, monkeypatch, capsys, tmp_path):
    assert run(name, ["--scale", "full", "--results-dir", str(tmp_path)], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "expected time" in out and "--run" in out
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", SCRIPTS)
def test_missing_data_is_a_one_line_error(name, monkeypatch, capsys, tmp_path):
    argv = ["--data-dir", str(tmp_path / "absent"), "--work-dir", str(tmp_path / "work"),
            "--results-dir", str(tmp_path / "results")]
    assert run(name, argv, monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "mnist" in err and err.count("\n") == 1


def test_unknown_setting_is_refused(monkeypatch, capsys, tmp_path):
    argv = ["--set", "epochz=3", "--work-dir", str(tmp_path), "--results-dir", str(tmp_path)]
    assert run("reproduce_vdb", argv, monkeypatch) == 2
    assert "unknown setting 'epochz'" in capsys.readouterr().err


def test_planted_tracin_views_equal_the_library(monkeypatch, tmp_path, digits):
    """planted_three_views computes three TracIn self-influences in one pass; each equals genmem's own call."""
    import numpy as np

    from genmem.influence import vae_tracin
    from genmem.models import VAE

    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    from planted_three_views import tracin_views

    X = digits[0][:40]
    vae = VAE(hidden=(16,), latent_dim=2, epochs=2, batch_size=16, checkpoints=2, binarize="dynamic")
    vae.fit_units(X, np.ones((1, len(X)), dtype=bool), [3], artifact_dir=tmp_path)
    path = tmp_path / "unit_r0_k0.pt"
    views, _ = tracin_views(path, X, seed=5)
    np.testing.assert_allclose(views["tracin_raw"], vae_tracin(path, seed=5).self_influence(X), rtol=1e-5)
    np.testing.assert_allclose(views["tracin_unbiased"], vae_tracin(path, seed=5).self_influence(X, unbiased=True),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(views["tracin_cos"], vae_tracin(path, seed=5, normalize="cosine").self_influence(
        X, unbiased=True), rtol=1e-5, atol=1e-9)


def test_reproduction_page_is_read_from_the_recorded_jsons(monkeypatch, tmp_path):
    """make_reproduction_md writes one well-formed table row per claim from the committed JSONs (none missing),
    and refuses to write a page when a script's JSON is absent."""
    import shutil

    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import make_reproduction_md as page

    results = EXPERIMENTS.parent / "results"
    for name in page.SCRIPTS:
        shutil.copy(results / f"{name}.json", tmp_path)
    monkeypatch.setattr(page, "RESULTS", tmp_path)
    page.main()
    text = (tmp_path / "REPRODUCTION.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    claims = [row for row in rows if any(row.startswith(f"| {paper} |") for paper in page.PAPERS.values())]
    assert len(claims) == 18
    for row in claims:  # seven cells, a literal | inside a cell escaped
        cells = row.replace("\\|", "").split("|")[1:-1]
        assert len(cells) == 7, row
        assert cells[5].strip() in {"**yes**", "**no**", "—"}
    assert "n/a" not in text
    (tmp_path / "reproduce_ct.json").unlink()
    with pytest.raises(SystemExit, match="reproduce_ct.json"):
        page.main()
