"""Tables out: columns, DataFrame, CSV/Parquet export, and named HDF5 axes (dimension scales)."""
import csv
import sys

import h5py
import numpy as np
import pytest

import genmem
from genmem.errors import GenmemError
from genmem.models import KDE
from genmem.results import add_views, columns

from cli_helpers import assert_one_line_error, run


@pytest.fixture
def run_file(tmp_path, rng):
    X = rng.normal(size=(30, 2))
    out = tmp_path / "run.h5"
    genmem.kfold(KDE(0.5), X, folds=3, repeats=2, labels=["ant" if i % 2 else "bee" for i in range(30)], out=out)
    add_views(out, {"influence/self": rng.normal(size=30), "neighbours/index": rng.integers(0, 30, (30, 2))})
    return out


def test_columns_hold_every_per_example_array(run_file):
    result = genmem.read_result(run_file)
    table = columns(result)
    assert list(table) == ["row", "index", "label", "label_name", "memorization", "stderr", "loglik_in", "loglik_out",
                           "memorization_reference", "memorization_balanced", "influence/self",
                           "neighbours/index[0]", "neighbours/index[1]"]
    np.testing.assert_array_equal(table["memorization"], result.scores["memorization"])
    np.testing.assert_array_equal(table["stderr"], result.scores["stderr"])
    np.testing.assert_array_equal(table["neighbours/index[1]"], result.views["neighbours/index"][:, 1])
    assert table["label_name"][:3].tolist() == ["bee", "ant", "bee"]


def test_to_dataframe(run_file):
    pd = pytest.importorskip("pandas")
    result = genmem.read_result(run_file)
    frame = result.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and frame.index.name == "row" and len(frame) == 30
    np.testing.assert_array_equal(frame["loglik_out"].to_numpy(), result.scores["loglik_out"])
    assert frame["label_name"].iloc[1] == "ant"


def test_to_dataframe_without_pandas_is_a_clear_error(run_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(GenmemError, match="needs pandas; install it with 'pip install pandas'"):
        genmem.read_result(run_file).to_dataframe()


def test_export_csv_round_trips_at_full_precision(run_file, tmp_path):
    out = tmp_path / "table.csv"
    result = run(["export", run_file, "--csv", out])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    saved = genmem.read_result(run_file)
    assert len(rows) == 30 and rows[4]["label_name"] == "bee"
    np.testing.assert_array_equal([float(r["memorization"]) for r in rows], saved.scores["memorization"])
    np.testing.assert_array_equal([float(r["influence/self"]) for r in rows], saved.views["influence/self"])
    assert [int(r["index"]) for r in rows] == list(range(30))


def test_export_parquet(run_file, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "table.parquet"
    assert run(["export", run_file, "--parquet", out]).exit_code == 0
    table = pq.read_table(out)
    np.testing.assert_array_equal(table.column("loglik_in").to_numpy(), genmem.read_result(run_file).scores["loglik_in"])


def test_export_errors(run_file, tmp_path):
    assert_one_line_error(run(["export", run_file]), "--csv OUT")
    assert_one_line_error(run(["export", tmp_path / "missing.h5", "--csv", tmp_path / "t.csv"]), "no such file")
    assert_one_line_error(run(["export", run_file, "--csv", tmp_path / "no" / "t.csv"]), "does not exist")


def test_axes_are_named_by_dimension_scales(run_file):
    with h5py.File(run_file, "r") as f:
        assert [d.label for d in f["loglik"].dims] == ["repeat", "fold", "example"]
        assert [d[0].name for d in f["loglik"].dims] == ["/repeat", "/fold", "/example"]
        np.testing.assert_array_equal(f["example"][()], np.arange(30))
        assert f["scores/memorization"].dims[0][0].name == "/example"
        assert [d.label for d in f["folds/assignment"].dims] == ["repeat", "example"]
        assert f["influence/self"].dims[0][0].name == "/example"  # a view added later
        assert f["data/label"].dims[0].label == "example"
    add_views(run_file, {"influence/self": np.zeros(30)})  # replacing a view keeps its axis named
    with h5py.File(run_file, "r") as f:
        assert f["influence/self"].dims[0][0].name == "/example"


def test_xarray_sees_named_dimensions(run_file):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    with xr.open_dataset(run_file, engine="h5netcdf", phony_dims="sort") as ds:
        assert ds["loglik"].dims == ("repeat", "fold", "example")
        assert (ds.sizes["repeat"], ds.sizes["fold"], ds.sizes["example"]) == (2, 3, 30)
    with xr.open_dataset(run_file, engine="h5netcdf", group="data", phony_dims="sort") as data:
        assert data["x"].dims == ("example", "feature") and data["label"].dims == ("example",)
    with xr.open_dataset(run_file, engine="h5netcdf", group="neighbours", phony_dims="sort") as view:
        assert view["index"].dims == ("example", "neighbours_index_1")
    with xr.open_dataset(run_file, engine="h5netcdf", group="scores", phony_dims="sort") as scores:
        assert scores["memorization"].dims == ("example",)
