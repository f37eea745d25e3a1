"""Plots as a library citizen: they draw into the caller's Axes, return them and leave the backend alone."""
import matplotlib
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

import genmem
from genmem.errors import GenmemError
from genmem.models import KDE
from genmem.plots import embed_2d, plot_embedding, plot_examples, plot_report, plot_top

from cli_helpers import run


def test_plots_draw_into_given_axes_and_leave_the_backend(rng):
    backend = matplotlib.get_backend()
    fig = Figure()
    axes = fig.subplots(2, 3)
    drawn = plot_examples(rng.random((4, 5, 5)), ["a", "b", "c", "d"], axes=axes)
    assert [len(ax.images) for ax in drawn] == [1, 1, 1, 1, 0, 0] and drawn[2].get_title() == "c"
    ax = Figure().subplots()
    assert plot_embedding(rng.normal(size=(30, 5)), rng.random(30), highlight=[3, 4], ax=ax) is ax
    assert sum(isinstance(c, PathCollection) for c in ax.collections) == 2
    report_axes = Figure().subplots(1, 2)
    out = plot_report(rng.random(10), {"a": rng.random(10), "b": rng.random(10)}, axes=report_axes)
    assert out[1].get_xlabel() == "b"
    assert matplotlib.get_backend() == backend


def test_rows_of_features_are_not_drawn_as_images(rng):
    with pytest.raises(GenmemError, match="plot_embedding"):
        plot_examples(rng.random((3, 64)))


def test_embedding_is_the_data_in_2d_and_the_first_two_principal_components_above(rng):
    X = rng.normal(size=(40, 2))
    np.testing.assert_array_equal(embed_2d(X), X)
    Y = rng.normal(size=(40, 6)) * [5, 3, 1, 0.1, 0.1, 0.1]
    P = embed_2d(Y)
    centred = Y - Y.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(np.abs(P), np.abs(centred @ vt[:2].T), rtol=1e-8)


def test_top_of_a_tabular_run_is_an_embedding_with_the_top_rows_ringed(rng, tmp_path):
    X = np.concatenate([rng.normal(size=(39, 3)), [[6.0, 6.0, 6.0]]])
    out = tmp_path / "run.h5"
    genmem.kfold(KDE(1.0), X, folds=4, images=X, out=out)
    result = genmem.read_result(out)
    ax = plot_top(result, 3, axes=Figure().subplots())
    ringed = [c for c in ax.collections if isinstance(c, PathCollection)][1]
    assert len(ringed.get_offsets()) == 3 and ax.texts[0].get_text().startswith("#39")
    png = tmp_path / "top.png"
    assert run(["top", out, "-n", 3, "--plot", png]).exit_code == 0 and png.stat().st_size > 0


def test_top_of_an_image_run_is_a_grid(digits, tmp_path):
    X, labels = digits
    out = tmp_path / "run.h5"
    genmem.kfold(KDE(0.5), X[:60], folds=3, images=X[:60].reshape(-1, 8, 8), labels=labels[:60], out=out)
    axes = plot_top(genmem.read_result(out), 4, axes=Figure().subplots(1, 4))
    assert all(len(ax.images) == 1 for ax in axes) and "(" in axes[0].get_title()
