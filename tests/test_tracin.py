"""TracIn against brute force: per-example torch.autograd.grad, one example at a time, summed over checkpoints."""
import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from pyro import poutine
from test_cli import assert_one_line_error, run  # the CLI test helpers
from torch import nn

import genmem
import genmem.influence.kfold_tracin as kfold_tracin_module
import genmem.influence.projection as projection_module
from genmem.errors import GenmemError
from genmem.influence import (KFoldTracIn, TopInfluence, TracIn, load_vae_checkpoint, module_loss, vae_negative_elbo,
                              vae_tracin)
from genmem.influence.tracin import TEST_STREAM, TRAIN_STREAM
from genmem.models.vae import VAE
from genmem.models.vae.nets import VAENet


def make_mlp(seed):
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 5)).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(-0.5, 0.5, generator=gen)
    return net


def mse(out, x):
    return ((out[0] - x) ** 2).sum()


@pytest.fixture
def mlp_setup(rng):
    net = make_mlp(0)
    checkpoints = []
    for c, lr in enumerate([0.1, 0.05, 0.01]):
        params = {n: p.detach() + 0.3 * c * torch.as_tensor(rng.normal(size=p.shape)) for n, p in net.named_parameters()}
        checkpoints.append((params, lr))
    X = torch.as_tensor(rng.normal(size=(13, 5)))
    Z = torch.as_tensor(rng.normal(size=(4, 5)))
    return net, checkpoints, X, Z


def brute_force_grads(net, params, rows, loss_of):
    """[n, P]: one torch.autograd.grad call per example."""
    net.load_state_dict(params)
    out = []
    for i in range(len(rows)):
        g = torch.autograd.grad(loss_of(i), list(net.parameters()))
        out.append(torch.cat([t.reshape(-1) for t in g]))
    return torch.stack(out)


def brute_force_mlp(net, checkpoints, X, Z):
    self_inf = torch.zeros(len(X), dtype=torch.float64)
    matrix = torch.zeros((len(Z), len(X)), dtype=torch.float64)
    for params, lr in checkpoints:
        gx = brute_force_grads(net, params, X, lambda i: mse(net(X[i:i + 1]), X[i]))
        gz = brute_force_grads(net, params, Z, lambda i: mse(net(Z[i:i + 1]), Z[i]))
        self_inf += lr * (gx * gx).sum(1)
        matrix += lr * gz @ gx.T
    return self_inf.numpy(), matrix.numpy()


def test_mlp_equals_brute_force(mlp_setup):
    net, checkpoints, X, Z = mlp_setup
    ref_self, ref_matrix = brute_force_mlp(net, checkpoints, X, Z)
    tr = TracIn(module_loss(make_mlp(1), mse), checkpoints, chunk_size=4)
    np.testing.assert_allclose(tr.self_influence(X), ref_self, rtol=1e-5)
    np.testing.assert_allclose(tr.influence(Z, train=X), ref_matrix, rtol=1e-5, atol=1e-5 * np.abs(ref_matrix).max())
    # no noise: the unbiased self-influence is the plain one; chunking does not change values
    np.testing.assert_allclose(tr.self_influence(X, unbiased=True), ref_self, rtol=1e-12)
    other = TracIn(module_loss(make_mlp(1), mse), checkpoints, chunk_size=64)
    np.testing.assert_allclose(other.influence(Z, train=X), tr.influence(Z, train=X), rtol=1e-12, atol=1e-12)


def test_exact_influence_computes_each_training_gradient_once_per_checkpoint(mlp_setup, monkeypatch):
    net, checkpoints, X, Z = mlp_setup
    tr = TracIn(module_loss(make_mlp(1), mse), checkpoints, chunk_size=3)
    rows = []
    original = tr.gradients
    monkeypatch.setattr(tr, "gradients", lambda params, R, eps=None: rows.append(len(R)) or original(params, R, eps))
    matrix = tr.influence(Z, train=X)
    assert sum(rows) == len(checkpoints) * (len(X) + len(Z))  # 4 test rows in 2 chunks, 13 training rows in 5
    np.testing.assert_allclose(matrix, brute_force_mlp(net, checkpoints, X, Z)[1], rtol=1e-5,
                               atol=1e-5 * np.abs(matrix).max())


def test_top_k_and_sign(mlp_setup):
    net, checkpoints, X, Z = mlp_setup
    tr = TracIn(module_loss(net, mse), checkpoints)
    matrix = tr.influence(Z, train=X)
    top = tr.influence(Z, k=3, train=X)
    assert isinstance(top, TopInfluence)
    np.testing.assert_array_equal(top.proponents, np.argsort(-matrix, axis=1)[:, :3])
    np.testing.assert_array_equal(top.opponents, np.argsort(matrix, axis=1)[:, :3])
    np.testing.assert_allclose(top.proponent_scores, np.take_along_axis(matrix, top.proponents, 1))
    # a test point identical to a training row: its TracIn with that row is that row's self-influence
    np.testing.assert_allclose(tr.influence(X[5:6], train=X)[0, 5], tr.self_influence(X)[5], rtol=1e-12)


def test_sign_matches_a_gradient_step(mlp_setup):
    """One SGD step on x with rate η changes ℓ(z) by about −η ∇ℓ(x)·∇ℓ(z): TracIn > 0 means x helped z."""
    net, checkpoints, X, Z = mlp_setup
    params, _ = checkpoints[0]
    lr = 1e-6
    tr = TracIn(module_loss(net, mse), [(params, lr)])
    matrix = tr.influence(Z, train=X)
    loss = module_loss(net, mse)
    g = torch.func.grad(loss)(params, X[2])
    stepped = {n: p - lr * g[n] for n, p in params.items()}
    drop = np.array([(loss(params, z) - loss(stepped, z)).item() for z in Z])
    np.testing.assert_allclose(drop, matrix[:, 2], rtol=1e-3)


# -- projection ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_projection_is_within_the_johnson_lindenstrauss_error(rng, kind):
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 6)).double()  # P = 214
    params = {n: p.detach() for n, p in net.named_parameters()}
    X = torch.as_tensor(rng.normal(size=(30, 6)))
    Z = torch.as_tensor(rng.normal(size=(20, 6)))
    d = 64
    exact = TracIn(module_loss(net, mse), [(params, 1.0)]).influence(Z, train=X)
    proj = TracIn(module_loss(net, mse), [(params, 1.0)], X, projection_dim=d, projection=kind, seed=3).influence(Z)
    nx = np.sqrt(TracIn(module_loss(net, mse), [(params, 1.0)]).self_influence(X))
    nz = np.sqrt(TracIn(module_loss(net, mse), [(params, 1.0)]).self_influence(Z))
    scale = nz[:, None] * nx[None, :]
    err = (proj - exact) / scale
    cos = exact / scale
    expected = np.sqrt(np.mean(1 + cos**2) / d)  # Gaussian R; Rademacher is at most this
    assert np.abs(err).max() < 5 * np.sqrt(2 / d)
    assert err.std() < 1.3 * expected
    if kind == "gaussian":
        assert err.std() > 0.7 * expected
    assert abs(err.mean()) < 3 * expected / np.sqrt(10)  # unbiased (errors of the 600 pairs are correlated)


def test_projection_blocks_cache_and_train_features(mlp_setup, monkeypatch):
    net, checkpoints, X, Z = mlp_setup
    make = lambda: TracIn(module_loss(net, mse), checkpoints, projection_dim=16, seed=5)  # noqa: E731
    cached = make()
    first = cached.influence(Z, train=X)
    assert cached._cache is not None
    np.testing.assert_array_equal(cached.influence(Z, train=X), first)  # the stored training features
    monkeypatch.setattr(projection_module, "PROJECTION_BLOCK", 7)
    monkeypatch.setattr(projection_module, "PROJECTION_CACHE_LIMIT", 0)
    blocked = make()
    assert blocked._project.cache is None and len(blocked._project.blocks) > 4
    small_blocks = blocked.influence(Z, train=X)
    monkeypatch.setattr(projection_module, "PROJECTION_CACHE_LIMIT", 1 << 30)
    np.testing.assert_allclose(make().influence(Z, train=X), small_blocks, rtol=1e-12, atol=1e-12)
    assert not np.allclose(small_blocks, first)  # other blocks, other matrix
    other_seed = TracIn(module_loss(net, mse), checkpoints, projection_dim=16, seed=6).influence(Z, train=X)
    assert not np.allclose(other_seed, small_blocks)


# -- bad input ----------------------------------------------------------------------------------

def test_bad_checkpoints_and_data(mlp_setup):
    net, checkpoints, X, Z = mlp_setup
    loss = module_loss(net, mse)
    with pytest.raises(GenmemError, match="no checkpoints"):
        TracIn(loss, [])
    with pytest.raises(GenmemError, match="learning rate"):
        TracIn(loss, [(checkpoints[0][0], 0.0)])
    other = {n: p.detach() for n, p in nn.Sequential(nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 5)).named_parameters()}
    with pytest.raises(GenmemError, match="different models"):
        TracIn(loss, [checkpoints[0], (other, 0.1)])
    tr = TracIn(loss, checkpoints)
    with pytest.raises(GenmemError, match=r"rows have shape \(4,\)"):
        tr.influence(Z[:, :4], train=X)
    bad = X.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(GenmemError, match="row 3"):
        tr.self_influence(bad)
    with pytest.raises(GenmemError, match="projection"):
        TracIn(loss, checkpoints, projection="sparse")


# -- the VAE: ℓ = −ELBO with fixed ε ------------------------------------------------------------

def random_vae(likelihood, seed, *, n_features=6, latent=2, binarize=None):
    params = dict(latent_dim=latent, hidden=(5,), likelihood=likelihood, dtype="float64", binarize=binarize)
    net = VAENet(n_features, latent, (5,), learn_scale=likelihood != "bernoulli").double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(-0.5, 0.5, generator=gen)
    return VAE.from_state_dict(net.state_dict(), n_features=n_features, seed=seed, **params)


def pyro_negative_elbo(vae, x, eps):
    """−ELBO of one row from Pyro's traces of model and guide, both conditioned on z = loc + scale·ε."""
    model, guide = vae.pyro_model_guide()
    loc, scale = vae.net_.encoder(x[None])
    total = 0.0
    for e in eps:
        z = loc + scale * e
        guide_tr = poutine.trace(poutine.condition(guide, data={"z": z})).get_trace(x[None])
        model_tr = poutine.trace(poutine.condition(model, data={"z": z})).get_trace(x[None])
        total = total + model_tr.log_prob_sum() - guide_tr.log_prob_sum()
    return -total / len(eps)


def brute_force_vae(vae, checkpoints, X, eps_a, eps_b):
    """Σ_c η_c g(x; ε_a)·g(x; ε_b) per row, one autograd.grad per example and draw set."""
    net = vae.net_.requires_grad_(True)
    out = torch.zeros(len(X), dtype=torch.float64)
    for params, lr, *_ in checkpoints:
        ga = brute_force_grads(net, params, X, lambda i: pyro_negative_elbo(vae, X[i], eps_a[i]))
        gb = ga if eps_b is eps_a else brute_force_grads(net, params, X, lambda i: pyro_negative_elbo(vae, X[i], eps_b[i]))
        out += lr * (ga * gb).sum(1)
    net.requires_grad_(False)
    return out.numpy()


@pytest.mark.parametrize("likelihood", ["bernoulli", "logit-normal", "gaussian"])
def test_vae_loss_equals_pyro_elbo(rng, likelihood):
    vae = random_vae(likelihood, 1)
    X = rng.uniform(0.05, 0.95, size=(4, 6))
    if likelihood == "bernoulli":
        X = (X > 0.5).astype(float)
    X = torch.as_tensor(X)
    eps = torch.as_tensor(rng.normal(size=(4, 3, 2)))
    loss = vae_negative_elbo(vae)
    params = dict(vae.net_.named_parameters())
    for i in range(4):
        assert loss(params, X[i], eps[i]).item() == pytest.approx(pyro_negative_elbo(vae, X[i], eps[i]).item(), rel=1e-10)


@pytest.mark.parametrize("likelihood", ["bernoulli", "logit-normal"])
def test_vae_tracin_equals_brute_force(rng, likelihood):
    vae = random_vae(likelihood, 2)
    checkpoints = [(dict(random_vae(likelihood, 10 + c).net_.named_parameters()), lr)
                   for c, lr in enumerate([1e-3, 5e-4])]
    X = rng.uniform(0.05, 0.95, size=(7, 6))
    if likelihood == "bernoulli":
        X = (X > 0.5).astype(float)
    X = torch.as_tensor(X)
    tr = TracIn(vae_negative_elbo(vae), checkpoints, noise_shape=(2, 2), seed=4, chunk_size=3)
    eps0, eps1 = tr.noise(len(X), TRAIN_STREAM), tr.noise(len(X), TEST_STREAM)
    np.testing.assert_allclose(tr.self_influence(X), brute_force_vae(vae, checkpoints, X, eps0, eps0), rtol=1e-5)
    unbiased = tr.self_influence(X, unbiased=True)
    np.testing.assert_allclose(unbiased, brute_force_vae(vae, checkpoints, X, eps0, eps1), rtol=1e-5)
    np.testing.assert_allclose(np.diag(tr.influence(X, train=X)), unbiased, rtol=1e-10)
    # same seed, same draws: reproducible; another seed, other draws
    again = TracIn(vae_negative_elbo(vae), checkpoints, noise_shape=(2, 2), seed=4)
    np.testing.assert_allclose(again.self_influence(X), tr.self_influence(X), rtol=1e-12)
    other = TracIn(vae_negative_elbo(vae), checkpoints, noise_shape=(2, 2), seed=5)
    assert not np.allclose(other.self_influence(X), tr.self_influence(X))


def test_unbiased_self_influence_removes_the_variance_bias(rng):
    """E|g(ε)|² = |E g|² + tr Cov g: the plain self-influence exceeds the unbiased one on average."""
    vae = random_vae("gaussian", 3)
    X = torch.as_tensor(rng.normal(size=(1, 6))).expand(400, 6)  # one example, 400 independent draw pairs
    tr = TracIn(vae_negative_elbo(vae), [(dict(vae.net_.named_parameters()), 1.0)], noise_shape=(1, 2),
                chunk_size=400)
    plain, unbiased = tr.self_influence(X), tr.self_influence(X, unbiased=True)
    per_param = tr.gradients(tr.checkpoints[0].params, X, tr.noise(400, TRAIN_STREAM))
    grads = torch.cat([g.reshape(400, -1) for g in per_param.values()], 1)
    mean_sq = (grads.mean(0) ** 2).sum().item()
    variance = grads.var(0).sum().item()
    assert plain.mean() == pytest.approx(mean_sq + variance, rel=0.01)
    assert unbiased.mean() == pytest.approx(mean_sq, abs=4 * unbiased.std() / np.sqrt(400))
    assert plain.mean() - unbiased.mean() > 0.5 * variance


def test_vae_checkpoint_file(tmp_path, rng):
    X = (rng.uniform(size=(24, 6)) > 0.5).astype(float)
    model = VAE(latent_dim=2, hidden=(5,), epochs=2, batch_size=8, checkpoints=2, num_samples=4, dtype="float64")
    masks = np.ones((1, 24), dtype=bool)
    model.fit_units(X, masks, [11], unit_keys=[(0, 0)], artifact_dir=tmp_path)
    path = tmp_path / "unit_r0_k0.pt"
    vae, checkpoints, info = load_vae_checkpoint(path)
    assert [ck.label for ck in checkpoints] == ["epoch 1", "epoch 2"] and info["seed"] == 11
    assert [ck.lr for ck in checkpoints] == [model.lr, model.lr]
    np.testing.assert_array_equal(vae.log_prob(X), VAE.from_checkpoint(path).log_prob(X))  # the last state
    tr = vae_tracin(path, draws=2, seed=1)
    Xt = torch.as_tensor(X[:5])
    eps = tr.noise(5, TRAIN_STREAM)
    np.testing.assert_allclose(tr.self_influence(Xt), brute_force_vae(vae, checkpoints, Xt, eps, eps), rtol=1e-5)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GenmemError, match="cannot be read"):
        load_vae_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(GenmemError, match="missing"):
        load_vae_checkpoint(tmp_path / "unit_r0_k9.pt")
    torch.save({"states": []}, tmp_path / "foreign.pt")
    with pytest.raises(GenmemError, match="not a genmem VAE checkpoint"):
        load_vae_checkpoint(tmp_path / "foreign.pt")


# -- the command line on a K-fold VAE run -------------------------------------------------------

@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    rng = np.random.default_rng(8)
    X = (rng.uniform(size=(18, 6)) > 0.5).astype(float)
    folder = tmp_path_factory.mktemp("vae")
    model = VAE(latent_dim=2, hidden=(5,), epochs=2, batch_size=8, checkpoints=2, num_samples=4, dtype="float64")
    genmem.kfold(model, X, folds=3, out=folder / "run.h5", seed=1)
    genmem.kfold(model, X, folds=3, out=folder / "other.h5", seed=2)
    genmem.kfold(model.clone(checkpoints=0), X, folds=3, out=folder / "bare.h5")
    return folder, X


def test_cli_vae_self_influence_averages_units(vae_run, tmp_path, monkeypatch):
    folder, X = vae_run
    out = tmp_path / "run.h5"
    shutil.copy(folder / "run.h5", out)
    shutil.copytree(folder / "run.h5.units", tmp_path / "run.h5.units")
    result = run(["influence", out, "--self", "--device", "cpu", "--seed", 3])
    assert result.exit_code == 0, result.output
    res = genmem.read_result(out)
    total, count = np.zeros(len(X)), np.zeros(len(X))
    for r, k in zip(*np.nonzero(res.done)):
        vae, checkpoints, _ = load_vae_checkpoint(tmp_path / "run.h5.units" / f"unit_r{r}_k{k}.pt")
        mask = res.assignment[r] != k
        Xm = torch.as_tensor(X[mask])
        eps = TracIn(vae_negative_elbo(vae), checkpoints, noise_shape=(1, 2), seed=3).noise(len(Xm), TRAIN_STREAM)
        total[mask] += brute_force_vae(vae, checkpoints, Xm, eps, eps)
        count[mask] += 1
    np.testing.assert_allclose(res.values("influence/self"), total / count, rtol=1e-5)
    with h5py.File(out) as f:
        attrs = dict(f["influence/self"].attrs)
    assert attrs["method"] == "tracin" and json.loads(attrs["checkpoints"]) == ["epoch 1", "epoch 2"]
    assert json.loads(attrs["lrs"]) == [2e-3, 2e-3] and attrs["units"] == 3
    # the library object reads each unit's file once, however many computations follow
    reads = []
    monkeypatch.setattr(kfold_tracin_module, "verified_bytes", lambda *a, _read=kfold_tracin_module.verified_bytes: reads.append(a[1]) or _read(*a))
    inf = KFoldTracIn(res, out, seed=3)
    np.testing.assert_allclose(inf.self_influence(), total / count, rtol=1e-5)
    matrix = inf.influence(X[[2]])
    assert sorted(reads) == sorted(path.name for path in inf.files.values())
    test = run(["influence", out, "--test-index", 2, "-k", 3, "--json", "--device", "cpu", "--seed", 3])
    assert test.exit_code == 0, test.output
    np.testing.assert_allclose(genmem.read_result(out).views["influence/test"], matrix.T, rtol=1e-12)


def test_cli_vae_bad_checkpoints(vae_run, tmp_path):
    folder, X = vae_run
    assert_one_line_error(run(["influence", folder / "bare.h5", "--self"]), "no VAE checkpoints", "checkpoints > 0")
    out = tmp_path / "run.h5"
    shutil.copy(folder / "run.h5", out)
    shutil.copytree(folder / "run.h5.units", tmp_path / "run.h5.units")
    shutil.copy(folder / "other.h5.units" / "unit_r0_k1.pt", tmp_path / "run.h5.units" / "unit_r0_k1.pt")
    assert_one_line_error(run(["influence", out, "--self"]), "unit_r0_k1.pt differs from the file the run wrote")
    (tmp_path / "run.h5.units" / "unit_r0_k1.pt").unlink()
    assert_one_line_error(run(["influence", out, "--self"]), "1 of 3 checkpoint files are missing", "unit_r0_k1.pt")
    np.save(tmp_path / "z.npy", np.zeros((2, 3)))
    assert_one_line_error(run(["influence", folder / "run.h5", "--test-data", tmp_path / "z.npy"]), "6 features")
