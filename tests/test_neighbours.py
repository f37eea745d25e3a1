"""Neighbour bank, embedders, NN ratio test, score comparison and ``genmem neighbours``, against brute force."""
import importlib.util
import json

import h5py
import numpy as np
import pytest
import torch
from scipy.stats import rankdata

import genmem
from genmem import GenmemError
from genmem.neighbours import (CallableEmbedder, NeighbourBank, compare_with_scores, nn_ratio_test,
                               register_embedder)
from genmem.neighbours.embedders import EMBEDDERS

from cli_helpers import run


def brute_force(Q, X, k, metric="cosine", exclude_self=False):
    """All-pairs distances in NumPy float64 and the k smallest per row (ties: lower index)."""
    if metric == "cosine":
        Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        D = 1.0 - Qn @ Xn.T
    else:
        D = np.sqrt(((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    if exclude_self:
        np.fill_diagonal(D, np.inf)
    idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(D, idx, axis=1), idx


@pytest.fixture
def data(rng):
    return rng.normal(size=(400, 12)), rng.normal(size=(90, 12))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("k", [1, 5])
def test_query_equals_brute_force(data, metric, dtype, k):
    X, Y = data
    bank = NeighbourBank("pixels", X, metric=metric, dtype=dtype, device="cpu", chunk_size=17)
    dist, idx = bank.query(Y, k)
    ref_d, ref_i = brute_force(Y, X, k, metric)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-12, atol=1e-14)
    loo_d, loo_i = bank.query(None, k, exclude_self=True)
    ref_d, ref_i = brute_force(X, X, k, metric, exclude_self=True)
    np.testing.assert_array_equal(loo_i, ref_i)
    np.testing.assert_allclose(loo_d, ref_d, rtol=1e-12, atol=1e-14)
    assert dist.dtype == np.float64 and idx.dtype == np.int64


def test_exclude_self_keeps_duplicates_and_guideline_matches_numpy(data):
    X, _ = data
    X = np.vstack([X, X[7]])  # row 400 duplicates row 7
    bank = NeighbourBank("pixels", X)
    dist, idx = bank.loo_distances()
    assert idx[7] == 400 and idx[400] == 7 and dist[7] == 0.0 and dist[400] == 0.0
    ref, _ = brute_force(X, X, 1, exclude_self=True)
    assert bank.mean_nn_distance() == pytest.approx(ref.mean(), rel=1e-12)
    qs = bank.nn_distance_quantiles([0.1, 0.5, 0.9])
    np.testing.assert_allclose(list(qs.values()), np.quantile(ref[:, 0], [0.1, 0.5, 0.9]), rtol=1e-12)


def test_embedders_pixels_pca_torch_callable_and_precomputed(rng, digits, tmp_path):
    X = digits[0][:300]
    images = X.reshape(-1, 8, 8)
    Y = digits[0][300:340]
    # pixels: flattening images is the same as the flat array
    d, i = NeighbourBank("pixels", images).query(Y.reshape(-1, 8, 8), 2)
    ref_d, ref_i = brute_force(Y, X, 2)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_allclose(d, ref_d, atol=1e-14)
    # PCA-5 against NumPy's SVD of the centred training data (component signs cancel in cos)
    mean = X.mean(0)
    W = np.linalg.svd(X - mean, full_matrices=False)[2][:5]
    bank = NeighbourBank("pca:5", X)
    d, i = bank.query(Y, 3)
    ref_d, ref_i = brute_force((Y - mean) @ W.T, (X - mean) @ W.T, 3)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_allclose(d, ref_d, atol=1e-10)
    assert bank.description["embedder"]["name"] == "pca" and bank.dim == 5
    # a torch module and a plain callable computing the same linear map
    lin = torch.nn.Linear(64, 6).double()
    Wt, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    ref_d, ref_i = brute_force(Y @ Wt.T + b, X @ Wt.T + b, 2)
    for embedder in (lin.float(), lambda A: A @ Wt.T + b, CallableEmbedder(lambda A: A @ Wt.T + b)):
        d, i = NeighbourBank(embedder, X).query(Y, 2)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_allclose(d, ref_d, atol=1e-6)
    # precomputed features: an array or npy:PATH; queries are features
    F, G = X @ Wt.T + b, Y @ Wt.T + b
    np.save(tmp_path / "f.npy", F)
    for bank in (NeighbourBank(F), NeighbourBank(f"npy:{tmp_path / 'f.npy'}")):
        d, i = bank.query(G, 2)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_allclose(bank.query_features(G, 2)[0], ref_d, atol=1e-14)


def test_registered_embedder_is_a_small_function(data):
    X, Y = data

    @register_embedder("square")
    def _square(arg, train_X, *, device, seed):
        return CallableEmbedder(lambda A: np.asarray(A) ** 2, {"name": "square"})

    try:
        d, i = NeighbourBank("square", X).query(Y, 1)
        ref_d, ref_i = brute_force(Y**2, X**2, 1)
        np.testing.assert_array_equal(i, ref_i)
    finally:
        del EMBEDDERS["square"]


def test_save_and_load_round_trip(data, tmp_path):
    X, Y = data
    bank = NeighbourBank("pca:4", X)
    bank.save(tmp_path / "bank.h5")
    loaded = NeighbourBank.load(tmp_path / "bank.h5")
    assert loaded.description == bank.description
    for a, b in zip(loaded.query(Y, 3), bank.query(Y, 3)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.features, bank.features)
    with h5py.File(tmp_path / "bank.h5") as f:
        assert f.attrs["metric"] == "cosine" and f.attrs["normalised"] and f.attrs["dim"] == 4
        assert json.loads(f.attrs["embedder"])["spec"] == "pca:4"
    # a callable feature map cannot be stored: queries must be features, or the map is passed again
    NeighbourBank(lambda A: A[:, :6], X).save(tmp_path / "fn.h5")
    plain = NeighbourBank.load(tmp_path / "fn.h5")
    with pytest.raises(GenmemError, match="query_features"):
        plain.query(Y)
    np.testing.assert_array_equal(plain.query_features(Y[:, :6])[1], brute_force(Y[:, :6], X[:, :6], 1)[1])
    again = NeighbourBank.load(tmp_path / "fn.h5", embedder=lambda A: A[:, :6])
    np.testing.assert_array_equal(again.query(Y)[1], plain.query_features(Y[:, :6])[1])
    with pytest.raises(GenmemError, match="not a neighbour-bank file"):
        NeighbourBank.load(tmp_path / "missing.h5")


@pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss is not installed")
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_faiss_backend_agrees(data, metric):
    X, Y = data
    bank = NeighbourBank("pixels", X, metric=metric, backend="faiss")
    for exclude_self, Q in ((False, Y), (True, None)):
        d, i = bank.query(Q, 4, exclude_self=exclude_self)
        ref_d, ref_i = brute_force(X if Q is None else Q, X, 4, metric, exclude_self=exclude_self)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_allclose(d, ref_d, atol=1e-12)


def test_faiss_backend_missing_is_a_clear_error(data):
    if importlib.util.find_spec("faiss") is not None:
        pytest.skip("faiss is installed")
    with pytest.raises(GenmemError, match="faiss"):
        NeighbourBank("pixels", data[0], backend="faiss")


def test_imagenet_feature_map_never_downloads(tmp_path):
    if importlib.util.find_spec("torchvision") is None:
        with pytest.raises(GenmemError, match="torchvision"):
            NeighbourBank("imagenet:resnet18:/nonexistent.pth", np.zeros((4, 8, 8)))
    else:
        with pytest.raises(GenmemError, match="does not exist"):
            NeighbourBank(f"imagenet:resnet18:{tmp_path / 'missing.pth'}", np.zeros((4, 8, 8)))
    with pytest.raises(GenmemError, match="local weights file"):
        NeighbourBank("imagenet:resnet18", np.zeros((4, 8, 8)))


def test_bad_input_is_a_clear_error(data):
    X, Y = data
    bank = NeighbourBank("pixels", X)
    cases = [
        (lambda: bank.query(Y[:, :5]), "dimensions"),
        (lambda: bank.query_features(np.ones((3, 7))), "dimensions"),
        (lambda: NeighbourBank("pixels", np.where(np.arange(12) == 3, np.nan, X))[0], "NaN"),
        (lambda: bank.query(np.where(np.arange(12) == 3, np.inf, Y)), "NaN or inf"),
        (lambda: NeighbourBank("pixels", np.vstack([X, np.zeros(12)])), "all-zero"),
        (lambda: bank.query(Y, k=401), "k must be between 1 and 400"),
        (lambda: bank.query(None, k=400, exclude_self=True), "minus the query itself"),
        (lambda: bank.query(Y, exclude_self=True), "exclude_self needs"),
        (lambda: NeighbourBank("hog", X), "unknown feature map"),
        (lambda: NeighbourBank("pca", X), "pca:50"),
        (lambda: NeighbourBank("pca:500", X), "fewer components"),
        (lambda: NeighbourBank(X, X), "precomputed features alone"),
        (lambda: NeighbourBank("pixels"), "needs train_X"),
        (lambda: NeighbourBank("pixels", X, metric="manhattan"), "unknown metric"),
        (lambda: NeighbourBank("pixels", X[:1]), "at least 2"),
        (lambda: bank.nn_distance_quantiles([0.5, 2.0]), "quantiles"),
        (lambda: NeighbourBank(object(), X), "feature map"),
    ]
    for call, words in cases:
        with pytest.raises(GenmemError, match=words):
            call()
    assert not np.isnan(bank.query(Y, 3)[0]).any()


def test_nn_ratio_test_uses_each_examples_own_distance(rng):
    train, held, samples = rng.normal(size=(300, 5)), rng.normal(size=(120, 5)), rng.normal(size=(130, 5))
    samples[:3] = train[:3]  # samples copying three training points
    res = nn_ratio_test(train, held, samples)
    d_held, i_held = brute_force(train, held, 1, "euclidean")
    d_sample, i_sample = brute_force(train, samples, 1, "euclidean")
    np.testing.assert_array_equal(res.held_out_index, i_held[:, 0])
    np.testing.assert_array_equal(res.sample_index, i_sample[:, 0])
    np.testing.assert_allclose(res.held_out_distance, d_held[:, 0], rtol=1e-12)
    np.testing.assert_allclose(res.ratio[3:], d_held[3:, 0] / d_sample[3:, 0], rtol=1e-12)
    assert np.isinf(res.ratio[:3]).all() and res.sample_distance[:3].tolist() == [0.0, 0.0, 0.0]
    # the reference code's row-0 bug would give other distances for all but the first row of a batch
    buggy = np.sqrt(((train[0] - samples[i_sample[:256, 0]]) ** 2).sum(-1))
    assert not np.allclose(buggy[1:], res.sample_distance[1:256])
    both = nn_ratio_test(train, train[:10], train[:20])
    assert (both.ratio == 1.0)[:10].all()
    cos = nn_ratio_test(train, held, samples[3:], metric="cosine")
    np.testing.assert_allclose(cos.held_out_distance, brute_force(train, held, 1)[0][:, 0], atol=1e-14)
    with pytest.raises(GenmemError, match="features"):
        nn_ratio_test(train, held[:, :4], samples)


@pytest.fixture
def kfold_file(tmp_path, digits):
    X = digits[0][:240]
    path = tmp_path / "run.h5"
    genmem.kfold(genmem.models.KDE(0.5), X, folds=3, out=path)
    return path, X


def test_compare_with_scores_against_rank_pearson(kfold_file):
    path, X = kfold_file
    result = genmem.read_result(path)
    distance = brute_force(X, X, 1, exclude_self=True)[0][:, 0]
    (row,) = compare_with_scores(result, distance, top=24)
    ref = np.corrcoef(rankdata(result.memorization), rankdata(distance))[0, 1]
    assert row["score"] == "memorization" and row["spearman"] == pytest.approx(ref, rel=1e-12)
    top_m = set(np.argsort(-result.memorization)[:24])
    top_d = set(np.argsort(-distance)[:24])
    assert row["top_overlap"] == len(top_m & top_d) / 24 and row["n"] == 240
    with pytest.raises(GenmemError, match="constant"):
        compare_with_scores(result, np.ones(240))


def test_cli_neighbours_writes_views_and_prints_tau(kfold_file, tmp_path):
    path, X = kfold_file
    out = run(["neighbours", path, "--save-bank", tmp_path / "bank.h5"])
    assert out.exit_code == 0, out.output
    ref_d, ref_i = brute_force(X, X, 1, exclude_self=True)
    res = genmem.read_result(path)
    np.testing.assert_array_equal(res.views["neighbours/index"], ref_i[:, 0])
    np.testing.assert_allclose(res.views["neighbours/distance"], ref_d[:, 0], atol=1e-14)
    with h5py.File(path) as f:
        attrs = f["neighbours"].attrs
        assert attrs["metric"] == "cosine" and attrs["tau"] == pytest.approx(ref_d.mean(), rel=1e-12)
        assert json.loads(attrs["embedder"])["name"] == "pixels" and "0.5" in json.loads(attrs["quantiles"])
    assert f"{ref_d.mean():.6g}" in out.stdout and "memorization" in out.stdout
    assert NeighbourBank.load(tmp_path / "bank.h5").n_points == 240
    # with a self-influence view, both scores are compared; JSON output
    genmem.results.add_views(path, {"influence/self": res.memorization ** 2})
    out = run(["neighbours", path, "--embed", "pca:8", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert [row["score"] for row in report["comparison"]] == ["memorization", "influence/self"]
    assert report["embedder"]["spec"] == "pca:8"


def test_cli_neighbours_errors_are_one_line(kfold_file, tmp_path):
    path, X = kfold_file
    np.save(tmp_path / "f.npy", X[:100])
    for args, words in ((["neighbours", path, "--embed", f"npy:{tmp_path / 'f.npy'}"], "100 rows"),
                        (["neighbours", tmp_path / "none.h5"], "no such file"),
                        (["neighbours", path, "--embed", "pca:x"], "pca:50")):
        out = run(args)
        assert out.exit_code != 0 and isinstance(out.exception, SystemExit), out.output
        lines = [line for line in out.output.splitlines() if line.startswith("Error")]
        assert len(lines) == 1 and words in lines[0], out.output


def test_vae_feature_map_is_the_encoder_mean_of_a_saved_checkpoint(tmp_path, digits):
    from genmem.models import VAE

    X = digits[0][:120]
    vae = VAE(latent_dim=3, hidden=(16,), epochs=2, checkpoints=1, num_samples=32, batch_size=32)
    genmem.kfold(vae, X, folds=2, out=tmp_path / "run.h5")
    ckpt = tmp_path / "run.h5.units" / "unit_r0_k0.pt"
    bank = NeighbourBank(f"vae:{ckpt}", X)
    Z = VAE.from_checkpoint(ckpt).embed(X)
    assert Z.shape == (120, 3)
    U = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    d = 1 - U @ U.T
    np.fill_diagonal(d, np.inf)
    dist, idx = bank.query(X, k=1, exclude_self=True)
    np.testing.assert_array_equal(idx[:, 0], d.argmin(1))
    np.testing.assert_allclose(dist[:, 0], d.min(1), atol=1e-6)
    with pytest.raises(GenmemError, match="checkpoint"):
        NeighbourBank("vae", X)
