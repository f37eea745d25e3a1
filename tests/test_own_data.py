"""Own data in: arrays through prepare(), labels of any hashable type, labels changed on a re-run."""
import numpy as np
import pytest
import torch

import genmem
from genmem.data import encode_labels, load_dataset, prepare
from genmem.errors import GenmemError
from genmem.models import KDE


def test_prepare_takes_a_float_table_an_image_array_and_a_tensor(rng):
    table = rng.normal(size=(12, 3)) * 5 + 2
    p = prepare(table)
    lo, hi = table.min(), table.max()
    np.testing.assert_allclose(p.X, (table - lo) / (hi - lo))
    assert p.info["log_jacobian"] == pytest.approx(-3 * np.log(hi - lo))
    assert p.images.shape == (12, 3) and (p.labels == -1).all() and p.label_names is None
    assert "rows of 3 features" in p.info["units"] and p.info["dataset"] == "array"
    images = rng.integers(0, 256, size=(6, 4, 4), dtype=np.uint8)
    q = prepare(images, dequantize=True, seed=3)
    assert q.info["levels"] == 256 and q.X.shape == (6, 16) and q.images.shape == (6, 4, 4)
    assert ((q.X * 256 - images.reshape(6, -1)) >= 0).all() and ((q.X * 256 - images.reshape(6, -1)) < 1).all()
    np.testing.assert_array_equal(prepare(torch.as_tensor(table)).X, p.X)


def test_labels_of_any_hashable_type_become_codes_with_names():
    codes, names = encode_labels(["moth", "ant", "moth", None, "bee", float("nan")], 6)
    np.testing.assert_array_equal(codes, [2, 0, 2, -1, 1, -1])
    assert names == ["ant", "bee", "moth"]
    codes, names = encode_labels(np.array([3.0, 1.0, 3.0]), 3)  # integral floats are codes
    assert names is None and codes.tolist() == [3, 1, 3] and codes.dtype == np.int64
    codes, names = encode_labels([("a", 1), 2.5, ("a", 1)], 3)  # unsortable mix: order of appearance
    assert codes.tolist() == [0, 1, 0] and names == ["('a', 1)", "2.5"]
    with pytest.raises(GenmemError, match="2 entries but the data have 3 examples"):
        encode_labels(["a", "b"], 3)
    with pytest.raises(GenmemError, match="must be hashable"):
        encode_labels([["a"], ["b"]], 2)


def test_prepare_with_string_labels_and_its_errors(rng):
    p = prepare(rng.normal(size=(4, 2)), labels=np.array(["b", "a", "b", "c"]))
    assert p.labels.tolist() == [1, 0, 1, 2] and p.label_names == ["a", "b", "c"]
    assert p.info["label_names"] == ["a", "b", "c"]
    with pytest.raises(GenmemError, match="a Dataset carries its own labels"):
        prepare(load_dataset("digits"), labels=np.zeros(1797))
    with pytest.raises(GenmemError, match="an array"):
        prepare("digits")


def test_kfold_stores_string_labels_with_their_names(rng, tmp_path):
    X = rng.normal(size=(20, 2))
    labels = ["cat" if i % 3 else "dog" for i in range(20)]
    result = genmem.kfold(KDE(0.5), X, folds=4, labels=labels, out=tmp_path / "run.h5")
    assert result.label_names == ["cat", "dog"]
    back = genmem.read_result(tmp_path / "run.h5")
    assert back.label_names == ["cat", "dog"]
    np.testing.assert_array_equal(np.array(back.label_names)[back.labels], labels)
    with pytest.raises(GenmemError, match="label_names has 1 names"):
        genmem.kfold(KDE(0.5), X, folds=4, labels=np.arange(20) % 2, label_names=["only"])


def test_changed_labels_on_a_rerun_are_written_and_no_labels_keep_them(rng, tmp_path):
    X = rng.normal(size=(20, 2))
    out = tmp_path / "run.h5"
    genmem.kfold(KDE(0.5), X, folds=4, labels=np.zeros(20, int), out=out)
    again = genmem.kfold(KDE(0.5), X, folds=4, labels=np.arange(20) % 4, out=out)
    np.testing.assert_array_equal(again.labels, np.arange(20) % 4)
    np.testing.assert_array_equal(genmem.read_result(out).labels, np.arange(20) % 4)
    named = genmem.kfold(KDE(0.5), X, folds=4, labels=["x"] * 20, out=out)
    assert named.label_names == ["x"] and genmem.read_result(out).label_names == ["x"]
    kept = genmem.kfold(KDE(0.5), X, folds=4, out=out)
    assert kept.label_names == ["x"] and (kept.labels == 0).all()


def test_top_lists_label_names(rng, tmp_path):
    from cli_helpers import run

    X = np.concatenate([rng.normal(size=(19, 2)), [[5.0, 5.0]]])
    genmem.kfold(KDE(0.8), X, folds=4, labels=["ant"] * 19 + ["wasp"], out=tmp_path / "run.h5")
    result = run(["top", tmp_path / "run.h5", "-n", 1])
    assert result.exit_code == 0 and result.output.splitlines()[1].split()[3] == "wasp"
