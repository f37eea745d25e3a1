"""The K-fold runner end to end with the KDE as oracle."""
import json
import math

import h5py
import numpy as np
import pytest
from scipy.special import logsumexp

import genmem
from genmem.errors import GenmemError
from genmem.memorization import make_folds
from genmem.models import GMM, KDE


def brute_fold_logp(X, assignment, h):
    """log p of every example under every fold's KDE, by explicit loops over pairs."""
    R, N = assignment.shape
    K = assignment.max() + 1
    out = np.empty((R, K, N))
    d = X.shape[1]
    for r in range(R):
        for k in range(K):
            T = X[assignment[r] != k]
            for i in range(N):
                terms = [-np.sum((X[i] - t) ** 2) / (2 * h * h) for t in T]
                out[r, k, i] = logsumexp(terms) - math.log(len(T)) - 0.5 * d * math.log(2 * math.pi * h * h)
    return out


def test_kde_kfold_matches_brute_force(rng):
    X = rng.normal(size=(24, 2))
    res = genmem.kfold(KDE(0.4), X, folds=4, repeats=2, seed=3)
    a = make_folds(24, 4, 2, seed=3)
    np.testing.assert_array_equal(res.assignment, a)
    L = brute_fold_logp(X, a, 0.4)
    np.testing.assert_allclose(res.loglik, L, atol=1e-10)
    # M by hand for the reference estimator, example 5
    i = 5
    ins = [L[r, k, i] for r in range(2) for k in range(4) if k != a[r, i]]
    outs = [L[r, a[r, i], i] for r in range(2)]
    m = (logsumexp(ins) - math.log(6)) - (logsumexp(outs) - math.log(2))
    assert res.scores["memorization_reference"][i] == pytest.approx(m, abs=1e-10)
    assert res.config["model"]["params"]["bandwidth"] == 0.4


def test_outlier_gets_the_highest_score(digits):
    X = digits[0][:300].copy()
    X[17] = 1.0 - X[17]  # an inverted digit: far from everything
    res = genmem.kfold(KDE("scott"), X, folds=5, seed=0)
    assert int(np.argmax(res.memorization)) == 17


def test_duplicate_lowers_the_score_of_its_twin(rng):
    X = np.concatenate([rng.normal(size=(60, 2)), [[3.5, 3.5]]])
    alone = genmem.kfold(KDE(0.3), X, folds=61, seed=0).memorization[-1]
    twin = genmem.kfold(KDE(0.3), np.concatenate([X, [[3.5, 3.5]]]), folds=62, seed=0).memorization
    assert twin[60] < alone - 1.0 and twin[61] < alone - 1.0


def test_folds_equal_n_gives_the_exact_leave_one_out_out_term(rng):
    X = rng.normal(size=(15, 2))
    res = genmem.kfold(KDE(0.5), X, folds=15, seed=0)
    loo = genmem.models.kde_loo_memorization(X, 0.5)
    np.testing.assert_allclose(res.scores["loglik_out"], loo["loglik_out"], atol=1e-10)


def test_batching_does_not_change_numbers(rng):
    X = rng.normal(size=(40, 3))
    a = genmem.kfold(KDE("scott"), X, folds=5, repeats=2, seed=1, units_per_batch=1)
    b = genmem.kfold(KDE("scott"), X, folds=5, repeats=2, seed=1, units_per_batch=10)
    np.testing.assert_allclose(a.loglik, b.loglik, atol=1e-12)


def test_round_trip_through_hdf5(tmp_path, rng):
    X = rng.normal(size=(30, 2))
    res = genmem.kfold(KDE(0.5), X, folds=3, repeats=2, seed=0, labels=np.arange(30) % 3, out=tmp_path / "r.h5")
    back = genmem.read_result(tmp_path / "r.h5")
    np.testing.assert_array_equal(back.loglik, res.loglik)
    np.testing.assert_array_equal(back.x, X)
    np.testing.assert_array_equal(back.labels, np.arange(30) % 3)
    for name, value in res.scores.items():
        np.testing.assert_array_equal(back.scores[name], value)
    assert back.config == res.config and back.complete
    with h5py.File(tmp_path / "r.h5") as f:
        assert f.attrs["format"] == "genmem.kfold"
        assert f["scores/memorization"].attrs["estimator"] == "balanced"
        assert f["loglik"].shape == (2, 3, 30) and f["folds/assignment"].shape == (2, 30)
        assert "stderr" in f["scores"] and "device" in f.attrs and "versions" in f.attrs
    assert not (tmp_path / "r.h5.partial").exists()


class Interrupting(KDE):
    """A KDE that is interrupted (as by Ctrl-C) after ``calls`` batches."""

    calls = 1

    def fit_units(self, *args, **kwargs):
        if Interrupting.calls == 0:
            raise KeyboardInterrupt
        Interrupting.calls -= 1
        return super().fit_units(*args, **kwargs)


def test_resume_after_interruption_gives_identical_results(tmp_path, rng):
    X = rng.normal(size=(40, 2))
    out = tmp_path / "run.h5"
    Interrupting.calls = 2
    with pytest.raises(KeyboardInterrupt):
        genmem.kfold(Interrupting(0.5), X, folds=4, repeats=3, seed=7, out=out)
    assert not out.exists()
    partial = genmem.read_result(tmp_path / "run.h5.partial")
    assert partial.done.sum() == 8 and not partial.complete
    resumed = genmem.kfold(KDE(0.5), X, folds=4, repeats=3, seed=7, out=out)
    fresh = genmem.kfold(KDE(0.5), X, folds=4, repeats=3, seed=7)
    np.testing.assert_array_equal(resumed.loglik, fresh.loglik)
    np.testing.assert_array_equal(resumed.memorization, fresh.memorization)
    assert out.exists() and not (tmp_path / "run.h5.partial").exists()


def test_existing_file_of_another_run_is_refused_without_force(tmp_path, rng):
    X = rng.normal(size=(20, 2))
    out = tmp_path / "run.h5"
    genmem.kfold(KDE(0.5), X, folds=4, out=out)
    again = genmem.kfold(KDE(0.5), X, folds=4, out=out)  # same run: returned as it is
    assert again.complete
    with pytest.raises(GenmemError, match="different run.*--force"):
        genmem.kfold(KDE(0.6), X, folds=4, out=out)
    forced = genmem.kfold(KDE(0.6), X, folds=4, out=out, force=True)
    assert genmem.read_result(out).config["model"]["params"]["bandwidth"] == 0.6 == \
        forced.config["model"]["params"]["bandwidth"]


def test_a_run_of_an_older_model_revision_is_another_run(tmp_path, rng, monkeypatch):
    X = rng.normal(size=(30, 2))
    out = tmp_path / "run.h5"
    new = genmem.kfold(GMM(2), X, folds=3, out=out)
    assert new.config["model"]["revision"] == GMM.revision == 1
    assert "revision" not in genmem.kfold(KDE(0.5), X, folds=3).config["model"]  # revision 0: not recorded
    monkeypatch.setattr(GMM, "revision", 0)  # what a file of genmem 0.1's GMM holds
    with pytest.raises(GenmemError, match="different run.*--force"):
        genmem.kfold(GMM(2), X, folds=3, out=out)


def test_not_hdf5_and_foreign_hdf5_are_clear_errors(tmp_path):
    (tmp_path / "a.h5").write_text("hello")
    with pytest.raises(GenmemError, match="not an HDF5 file"):
        genmem.read_result(tmp_path / "a.h5")
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["x"] = [1, 2]
    with pytest.raises(GenmemError, match="not a genmem results file"):
        genmem.read_result(tmp_path / "b.h5")
    with pytest.raises(GenmemError, match="no such file"):
        genmem.read_result(tmp_path / "missing.h5")


@pytest.mark.parametrize("X,msg", [
    (np.zeros((5,)), "2-D"), (np.array([[0.0, np.nan], [1.0, 2.0]]), "NaN or inf"),
    (np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 1.0]]), "NaN or inf"),
])
def test_bad_data(X, msg):
    with pytest.raises(GenmemError, match=msg):
        genmem.kfold(KDE(0.5), X, folds=2)


def test_unknown_model_name():
    with pytest.raises(GenmemError, match="unknown model"):
        genmem.kfold("glow", np.zeros((4, 2)), folds=2)


def test_views_are_added_atomically_and_rank_in_top(tmp_path, rng):
    from click.testing import CliRunner

    from genmem.cli import main
    from genmem.results import add_views

    X = rng.normal(size=(12, 2))
    out = tmp_path / "r.h5"
    genmem.kfold(KDE(0.5), X, folds=3, out=out)
    values = np.arange(12.0)[::-1]
    add_views(out, {"neighbours/distance": values}, attrs={"neighbours/distance": {"metric": "cosine", "q": [1, 2]}})
    back = genmem.read_result(out)
    np.testing.assert_array_equal(back.views["neighbours/distance"], values)
    assert list(back.top(3, by="neighbours/distance")) == [0, 1, 2]
    with h5py.File(out) as f:
        assert f["neighbours/distance"].attrs["metric"] == "cosine"
    assert "/neighbours/distance" in CliRunner().invoke(main, ["info", str(out)]).stdout
    ranked = CliRunner().invoke(main, ["top", str(out), "-n", "2", "--by", "neighbours/distance", "--json"])
    assert [r["row"] for r in json.loads(ranked.stdout)] == [0, 1]
    with pytest.raises(GenmemError, match="rows"):
        add_views(out, {"neighbours/distance": values[:5]})
    with pytest.raises(GenmemError, match="group/name"):
        add_views(out, {"scores/memorization": values})
