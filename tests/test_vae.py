"""Tests of the Pyro VAE: importance sampling, fold-batched training, checkpoints, errors.

Oracles: the closed-form marginal and ELBO of a linear-Gaussian VAE, Pyro's
``Trace_ELBO`` and distributions, ``torch.optim.Adam``, SciPy densities and
quadrature, and the same unit trained alone.
"""
import math
from pathlib import Path
import warnings

import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch
from scipy import integrate, stats
from sklearn.datasets import load_digits

import genmem
from genmem.influence import influence_for, vae_tracin
from genmem.errors import GenmemError
from genmem.models.vae import PRESETS, VAE
from genmem.models.vae.evaluate import warn_collapsed
from genmem.models.vae.nets import Likelihood, VAENet
from genmem.models.vae.train import epoch_order
from genmem.models.vae.units import Units
from genmem.philox import key_words


# briefly trained test models often have a low effective sample size; one test checks the warning itself
pytestmark = pytest.mark.filterwarnings("ignore:importance sampling collapsed")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The tensors here are small: one thread is faster, and immune to contention from other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _clean_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="module")
def digits():
    """sklearn digits, uniformly dequantized to (x + u) / 17 in [0, 1)."""
    x = load_digits().data
    return (x + np.random.default_rng(0).random(x.shape)) / 17.0


SMALL = dict(latent_dim=3, hidden=(16,), epochs=2, batch_size=16, num_samples=32)


# -- importance sampling against a closed form --------------------------------------


def _linear_gaussian(seed=0, n=150, d=5, latent=2, sigma=0.5, orthogonal=False):
    """A VAE whose decoder is x = W z + b + σ·noise; its encoder gives the posterior's mean and marginal variances.

    ``seed`` is the model's: it fixes the importance samples. With
    ``orthogonal`` columns of W the posterior is diagonal, so the encoder is exact.
    """
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(d, latent)), rng.normal(size=d)
    if orthogonal:
        W = np.linalg.qr(W)[0] * [2.0, 0.7]
    X = rng.normal(size=(n, latent)) @ W.T + b + sigma * rng.normal(size=(n, d))
    post_cov = np.linalg.inv(np.eye(latent) + W.T @ W / sigma**2)
    A = post_cov @ W.T / sigma**2  # posterior mean = A (x − b)
    state = {
        "encoder.loc.weight": A, "encoder.loc.bias": -A @ b,
        "encoder.log_var.weight": np.zeros((latent, d)), "encoder.log_var.bias": np.log(np.diag(post_cov)),
        "decoder.net.0.weight": W, "decoder.net.0.bias": b,
    }
    state = {k: torch.tensor(v, dtype=torch.float64) for k, v in state.items()}
    model = VAE.from_state_dict(state, n_features=d, seed=seed, latent_dim=latent, hidden=(),
                                likelihood="gaussian", decoder_scale=sigma, dtype="float64", eval_chunk=1 << 16)
    exact = stats.multivariate_normal(b, W @ W.T + sigma**2 * np.eye(d)).logpdf(X)
    mu, var = (X - b) @ A.T, np.diag(post_cov)
    resid = X - mu @ W.T - b
    exact_elbo = (-0.5 * d * math.log(2 * math.pi * sigma**2)
                  - ((resid**2).sum(1) + (var * (W**2).sum(0)).sum()) / (2 * sigma**2)
                  - 0.5 * (var + mu**2 - 1.0 - np.log(var)).sum(1))
    return model, X, exact, exact_elbo


def test_linear_gaussian_importance_sampling_converges_to_exact_log_p():
    # a unit's S draws are shared by all its examples, so average the error over units (seeds)
    sizes = (1, 16, 256, 4096)
    errors = np.zeros(len(sizes))
    for seed in range(12):
        model, X, exact, exact_elbo = _linear_gaussian(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # S = 1 is degenerate by design
            errors += [np.abs(model.log_prob(X, num_samples=s) - exact).mean() / 12 for s in sizes]
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < min(0.05, errors[0] / 5)
    elbo = model.elbo(X, num_samples=4096)
    np.testing.assert_allclose(elbo, exact_elbo, atol=0.05)  # Monte Carlo ELBO vs its closed form
    assert (exact >= exact_elbo).all()
    for s in (4, 64):
        assert model.log_prob(X, num_samples=s).mean() >= model.elbo(X, num_samples=s).mean()
    log_p, ess = model.log_prob_and_ess(X, num_samples=256)
    assert ((ess >= 1.0) & (ess <= 256.0 + 1e-9)).all()
    np.testing.assert_array_equal(log_p, model.log_prob(X, num_samples=256))


def test_exact_posterior_makes_every_importance_weight_the_marginal():
    model, X, exact, exact_elbo = _linear_gaussian(orthogonal=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(model.log_prob(X, num_samples=1), exact, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.elbo(X, num_samples=3), exact, rtol=0, atol=1e-9)
    np.testing.assert_allclose(exact_elbo, exact, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.log_prob_and_ess(X, num_samples=40)[1], 40.0, rtol=1e-9)


def test_per_example_results_do_not_depend_on_chunking(digits):
    X = digits[:60]
    model = VAE(**SMALL).fit(X, rng=3)
    whole = model.log_prob(X)
    for chunk in (7, 40, 10_000):  # samples split within a row; several rows per chunk; all at once
        model.set_params(eval_chunk=chunk)
        np.testing.assert_allclose(model.log_prob(X), whole, rtol=0, atol=1e-4)
    np.testing.assert_allclose(model.log_prob(X[40:51]), whole[40:51], rtol=0, atol=1e-4)


# -- fold-batched training equals training alone ----------------------------------------


@pytest.mark.parametrize("likelihood, binarize", [("logit-normal", None), ("bernoulli", "dynamic")])
def test_unit_trained_in_a_batch_equals_the_unit_trained_alone(digits, tmp_path, likelihood, binarize):
    X = digits[:260]
    rng = np.random.default_rng(1)
    masks = np.stack([rng.random(len(X)) < p for p in (0.55, 0.8, 1.0)])  # unequal sizes: masked steps
    seeds = [101, 202, 303]
    params = dict(SMALL, epochs=2, batch_size=8, likelihood=likelihood, binarize=binarize, dtype="float64",
                  checkpoints=1)
    vae = VAE(**params)
    together = vae.fit_units(X, masks, seeds, unit_keys=[(0, 0), (0, 1), (0, 2)], artifact_dir=tmp_path / "batch")
    for u in range(3):
        alone = vae.fit_units(X, masks[u:u + 1], seeds[u:u + 1], unit_keys=[(0, u)], artifact_dir=tmp_path / "alone")
        np.testing.assert_allclose(together["loglik"][u], alone["loglik"][0], rtol=1e-9)
        np.testing.assert_allclose(together["ess"][u], alone["ess"][0], rtol=1e-7)
        a = torch.load(tmp_path / "batch" / f"unit_r0_k{u}.pt", weights_only=True)
        b = torch.load(tmp_path / "alone" / f"unit_r0_k{u}.pt", weights_only=True)
        assert a["steps"] == b["steps"] == [2 * math.ceil(masks[u].sum() / 8)]
        for name, tensor in a["states"][-1].items():
            torch.testing.assert_close(tensor, b["states"][-1][name], rtol=1e-9, atol=1e-12)
    # the public one-model API is the same trainer with U = 1, fed the unit's own rows
    single = VAE(**params).fit(X[masks[1]], rng=seeds[1])
    np.testing.assert_allclose(single.log_prob(X), together["loglik"][1], rtol=1e-9)


def test_float32_batched_matches_alone_to_float_tolerance(digits):
    X = digits[:200]
    masks = np.stack([np.arange(len(X)) % 3 != k for k in range(3)])
    vae = VAE(**SMALL)
    together = vae.fit_units(X, masks, [5, 6, 7])["loglik"]
    alone = vae.fit_units(X, masks[2:], [7])["loglik"][0]
    np.testing.assert_allclose(together[2], alone, rtol=1e-5)


def test_epoch_order_is_a_permutation_of_each_units_rows_independent_of_its_batch_mates():
    rng = np.random.default_rng(0)
    member = torch.as_tensor(rng.random((3, 50)) < np.array([[0.3], [0.7], [1.0]]))
    n_rows = member.sum(1)
    keys = key_words([7, 8, 9])
    order, weight = epoch_order(keys, member, n_rows, 4, 64)  # 64 positions > N = 50: padding
    for u in range(3):
        n = int(n_rows[u])
        assert sorted(order[u, :n].tolist()) == torch.nonzero(member[u]).flatten().tolist()
        assert weight[u, :n].all() and not weight[u, n:].any()
        assert (order[u, n:] == order[u, 0]).all()
        alone = epoch_order(keys[u:u + 1], member[u:u + 1], n_rows[u:u + 1], 4, 64)[0][0]
        assert torch.equal(alone, order[u])
        # the unit's rows alone (as VAE.fit sees them) come in the same order
        rows = torch.nonzero(member[u]).flatten()
        sub = epoch_order(keys[u:u + 1], torch.ones(1, n, dtype=torch.bool), n_rows[u:u + 1], 4, n)[0][0]
        assert torch.equal(rows[sub], order[u, :n])
    assert not torch.equal(epoch_order(keys, member, n_rows, 5, 64)[0], order)  # a fresh order each epoch


def test_kfold_vae_numbers_do_not_depend_on_units_per_batch_or_resuming(digits, tmp_path):
    X = digits[:120]
    vae = VAE(**dict(SMALL, epochs=2, batch_size=16), dtype="float64")
    base = genmem.kfold(vae, X, folds=3, repeats=2, seed=4, units_per_batch=6)
    for units in (1, 4):
        other = genmem.kfold(vae, X, folds=3, repeats=2, seed=4, units_per_batch=units)
        np.testing.assert_allclose(other.loglik, base.loglik, rtol=1e-10)

    class Interrupted(VAE):
        def fit_units(self, X, masks, seeds, **kwargs):
            if len(seeds) < 4:  # the second batch (2 of 6 units) never finishes
                raise KeyboardInterrupt
            return super().fit_units(X, masks, seeds, **kwargs)

    out = tmp_path / "run.h5"
    with pytest.raises(KeyboardInterrupt):
        genmem.kfold(Interrupted(**vae.get_params()), X, folds=3, repeats=2, seed=4, units_per_batch=4, out=out)
    assert genmem.read_result(tmp_path / "run.h5.partial").done.sum() == 4
    resumed = genmem.kfold(vae, X, folds=3, repeats=2, seed=4, units_per_batch=3, out=out)
    np.testing.assert_allclose(resumed.loglik, base.loglik, rtol=1e-10)


def _ops_per_step(n_units, rows=512, batch=32):
    """Profiler events and host syncs per training step of ``fit_units`` (3 epochs minus 1 epoch, tiny nets)."""
    X = np.random.default_rng(0).random((rows, 16))
    counts = []
    for epochs in (1, 3):
        vae = VAE(latent_dim=2, hidden=(8,), epochs=epochs, batch_size=batch, num_samples=4, binarize="dynamic")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            vae.fit_units(X, np.ones((n_units, rows), dtype=bool), list(range(1, n_units + 1)))
        events = prof.key_averages()
        syncs = sum(e.count for e in events if e.key in ("aten::item", "aten::_local_scalar_dense"))
        counts.append((sum(e.count for e in events), syncs))
    steps = 2 * rows // batch
    return (counts[1][0] - counts[0][0]) / steps, (counts[1][1] - counts[0][1]) / steps


def test_training_step_work_does_not_grow_with_units_and_never_syncs():
    ops_4, syncs_4 = _ops_per_step(4)
    ops_32, syncs_32 = _ops_per_step(32)
    assert syncs_4 == syncs_32 == 0
    assert ops_32 <= 1.1 * ops_4 and ops_32 <= 600


# -- the hand-written ELBO is Pyro's Trace_ELBO -------------------------------------------


@pytest.mark.parametrize("likelihood, data", [("logit-normal", "grey"), ("bernoulli", "binary"), ("gaussian", "grey")])
def test_vectorized_loss_equals_pyro_trace_elbo(digits, likelihood, data):
    X = digits[:40] if data == "grey" else (digits[:40] > 0.5).astype(float)
    model = VAE(**SMALL, likelihood=likelihood, dtype="float64").fit(X, rng=0)
    pyro_model, pyro_guide = model.pyro_model_guide()
    x = torch.as_tensor(X)
    guide_trace = poutine.trace(pyro_guide).get_trace(x)
    replayed = poutine.replay(pyro_guide, trace=guide_trace)
    pyro_loss = pyro.infer.Trace_ELBO().differentiable_loss(pyro_model, replayed, x)
    assert len(pyro.get_param_store()) == 0  # parameters stay in the modules
    names = [n for n, _ in model.net_.named_parameters()]
    pyro_grads = torch.autograd.grad(pyro_loss, [p for _, p in model.net_.named_parameters()])

    z = guide_trace.nodes["z"]["value"].detach()
    template = model._new_net(X.shape[1], likelihood)
    units = Units.from_states(template, [model.net_.state_dict()], model._likelihood(likelihood), torch.float64, "cpu")
    units.requires_grad_(True)
    xb = x.unsqueeze(0)
    loc, log_sigma = units.encode(xb)
    eps = ((z - loc[0].detach()) / log_sigma[0].detach().exp())[None, :, None, :]
    ours = -units.log_weights(units.likelihood.data_terms(xb), loc, log_sigma, eps).sum()
    torch.testing.assert_close(ours, pyro_loss.detach(), rtol=1e-9, atol=1e-8)
    grads = torch.autograd.grad(ours, units.leaves)
    named = Units(template, torch.cat([g.reshape(1, -1) for g in grads], 1), units.likelihood).unit_states()[0]
    for name, b in zip(names, pyro_grads):
        torch.testing.assert_close(named[name], b, rtol=1e-7, atol=1e-8, msg=name)
    # the Pyro pair is an nn.Module loss whose parameters are exactly this unit's
    loss_module = pyro.infer.Trace_ELBO()(pyro_model, pyro_guide)
    assert {id(p) for p in loss_module.parameters()} == {id(p) for p in model.net_.parameters()}


def test_pyro_svi_trains_the_vae_as_genmems_own_loop_does_on_the_same_eps(digits):
    X = torch.as_tensor(digits[:48])
    model = VAE(**SMALL, dtype="float64").fit(X.numpy(), rng=0)
    template = model._new_net(X.shape[1], model.likelihood_)
    ours = Units.from_states(template, [model.net_.state_dict()], model._likelihood(model.likelihood_),
                             torch.float64, "cpu").requires_grad_(True)
    pyro_model, pyro_guide = model.pyro_model_guide(param_store=True)
    drawn = []

    def recording_guide(x):
        with poutine.trace() as tr:
            pyro_guide(x)
        drawn.append(tr.trace.nodes["z"]["value"].detach())

    svi = pyro.infer.SVI(pyro_model, recording_guide, pyro.optim.Adam({"lr": 0.01}), pyro.infer.Trace_ELBO())
    torch.manual_seed(0)
    losses = [svi.step(X) for _ in range(15)]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert len(pyro.get_param_store()) == len(model.net_.state_dict())

    opt = torch.optim.Adam(ours.leaves, lr=0.01)
    for z in drawn:  # genmem's loss, the ε that Pyro drew, torch's Adam
        loc, log_sigma = ours.encode(X.unsqueeze(0))
        eps = ((z - loc[0].detach()) / log_sigma[0].detach().exp())[None, :, None, :]
        loss = -ours.log_weights(ours.likelihood.data_terms(X.unsqueeze(0)), loc, log_sigma, eps).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    trained = ours.unit_states()[0]
    for name, value in model.net_.state_dict().items():  # SVI trained the model's own modules
        torch.testing.assert_close(value, trained[name], rtol=1e-7, atol=1e-9, msg=name)


def test_fit_keeps_checkpoints_for_tracin_like_the_kfold_units(digits, tmp_path):
    X = digits[:120]
    params = dict(SMALL, epochs=4, dtype="float64")
    model = VAE(**params).fit(X, rng=5, checkpoints=2)
    assert [label for _, _, label in model.checkpoints_] == ["epoch 2", "epoch 4"]
    VAE(**params, checkpoints=2).fit_units(X, np.ones((1, len(X)), dtype=bool), [5], artifact_dir=tmp_path)
    saved = torch.load(tmp_path / "unit_r0_k0.pt", weights_only=True)
    for (state, lr, _), on_disk in zip(model.checkpoints_, saved["states"]):
        assert lr == model.lr
        for name, value in state.items():
            torch.testing.assert_close(value, on_disk[name], rtol=0, atol=0)
    own = influence_for(model, X, rng=0).self_influence()
    np.testing.assert_allclose(own, vae_tracin(tmp_path / "unit_r0_k0.pt", seed=0).self_influence(X), rtol=1e-10)
    with pytest.raises(GenmemError, match="checkpoints=C"):
        influence_for(VAE(**params).fit(X, rng=5), X)


@pytest.mark.parametrize("name", ["bernoulli", "logit-normal", "gaussian"])
def test_fast_likelihood_equals_pyro_distribution(name):
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(2, 5, 3, 7, generator=gen, dtype=torch.float64)  # [U, B, S, D]
    x = torch.rand(2, 5, 7, generator=gen, dtype=torch.float64)
    if name == "bernoulli":
        x = (x > 0.5).to(x.dtype)
    log_scale = 0.3 * torch.randn(2, 7, generator=gen, dtype=torch.float64)
    lik = Likelihood(name, None, 0.05)
    fast = lik.log_prob_rows(out, log_scale, *lik.data_terms(x))
    reference = lik.dist(out, log_scale[:, None, None, :]).log_prob(x.unsqueeze(2))
    torch.testing.assert_close(fast, reference, rtol=1e-10, atol=1e-10)
    fixed = Likelihood(name, 0.7, 0.05)
    torch.testing.assert_close(fixed.log_prob_rows(out, None, *fixed.data_terms(x)),
                               fixed.dist(out).log_prob(x.unsqueeze(2)), rtol=1e-10, atol=1e-10)


def test_logit_normal_density_matches_closed_form_and_integrates_to_one():
    lam, mu, sigma = 0.05, 0.7, 0.9
    lik = Likelihood("logit-normal", sigma, lam)

    def density(y):
        s = lam + (1 - 2 * lam) * y
        t = math.log(s / (1 - s))
        return stats.norm.pdf(t, mu, sigma) * (1 - 2 * lam) / (s * (1 - s))

    ys = np.array([0.0, 0.01, 0.3, 0.77, 1.0])
    ours = lik.dist(torch.full((5, 1), mu, dtype=torch.float64)).log_prob(torch.tensor(ys)[:, None]).numpy()
    np.testing.assert_allclose(ours, np.log([density(y) for y in ys]), rtol=1e-10)
    lo, hi = -lam / (1 - 2 * lam), (1 - lam) / (1 - 2 * lam)
    assert integrate.quad(density, lo, hi, limit=200)[0] == pytest.approx(1.0, abs=1e-8)


# -- behaviour on real data -----------------------------------------------------------------


def test_digits_in_fold_log_p_exceeds_held_out(digits):
    X = digits[:600]
    folds = np.arange(len(X)) % 3
    masks = np.stack([folds != k for k in range(3)])
    out = VAE(latent_dim=4, hidden=(64, 32), epochs=15, num_samples=64).fit_units(X, masks, [1, 2, 3])
    ll = out["loglik"]
    in_fold = np.mean([ll[k, masks[k]].mean() for k in range(3)])
    held_out = np.mean([ll[k, ~masks[k]].mean() for k in range(3)])
    assert in_fold > held_out
    assert out["train_loss"].shape == (3, 15) and out["train_loss"][:, -1].mean() < out["train_loss"][:, 0].mean()


def test_checkpoints_load_with_weights_only_and_reproduce_log_p(digits, tmp_path):
    X = digits[:150]
    masks = np.stack([np.arange(len(X)) % 2 == k for k in range(2)])
    vae = VAE(**dict(SMALL, epochs=4), checkpoints=2, eval_every=2)
    assert vae.checkpoint_epochs() == [2, 4] and vae.eval_epochs() == [2, 4]
    out = vae.fit_units(X, masks, [8, 9], unit_keys=[(3, 0), (3, 1)], artifact_dir=tmp_path)
    assert out["loglik_epochs"].shape == (2, 2, len(X))
    for k in range(2):
        path = tmp_path / f"unit_r3_k{k}.pt"
        ckpt = torch.load(path, weights_only=True)
        n_steps = math.ceil(masks[k].sum() / SMALL["batch_size"])
        assert ckpt["epochs"] == [2, 4] and ckpt["steps"] == [2 * n_steps, 4 * n_steps]
        assert ckpt["lrs"] == [vae.lr, vae.lr] and ckpt["unit"] == [3, k]
        net = VAENet(X.shape[1], SMALL["latent_dim"], SMALL["hidden"], learn_scale=True)
        net.load_state_dict(ckpt["states"][0])  # plain single-model names
        for epoch, t in ((2, 0), (4, 1)):
            single = VAE.from_checkpoint(path, epoch=epoch)
            np.testing.assert_allclose(single.log_prob(X), out["loglik_epochs"][k, t], rtol=1e-6)
        np.testing.assert_allclose(VAE.from_checkpoint(path).log_prob(X), out["loglik"][k], rtol=1e-6)


def test_conv_architecture_trains_and_scores(digits):
    X = digits[:64]
    model = VAE(**dict(SMALL, epochs=1, hidden=(4, 8)), arch="conv", image_shape=(8, 8, 1)).fit(X, rng=0)
    assert np.isfinite(model.log_prob(X)).all()
    masks = np.stack([np.arange(len(X)) % 2 == k for k in range(2)])
    conv = VAE(**dict(SMALL, epochs=1, hidden=(4, 8)), arch="conv", image_shape=(8, 8))
    np.testing.assert_allclose(conv.fit_units(X, masks, [1, 2])["loglik"][1],
                               conv.fit_units(X, masks[1:], [2])["loglik"][0], rtol=1e-5)


def test_sample_shapes_ranges_and_seeding(digits):
    grey = VAE(**SMALL).fit(digits[:100], rng=0)
    draws = grey.sample(7, rng=1)
    assert draws.shape == (7, 64) and draws.dtype == np.float64
    np.testing.assert_array_equal(draws, grey.sample(7, rng=1))
    binary = VAE(**SMALL, binarize="dynamic").fit(digits[:100], rng=0)
    assert binary.likelihood_ == "bernoulli"
    assert set(np.unique(binary.sample(20, rng=2))) <= {0.0, 1.0}


def test_resolve_picks_likelihood_and_device(digits):
    assert VAE().resolve(digits[:10]).likelihood == "logit-normal"
    assert VAE().resolve((digits[:10] > 0.5) * 1.0).likelihood == "bernoulli"
    assert VAE(binarize="dynamic").resolve(digits[:10]).likelihood == "bernoulli"
    assert VAE(device="auto").resolve(digits[:10]).device in ("cpu", "cuda")


def test_preset_holds_the_reference_setting():
    preset = PRESETS["vdb-bmnist"]
    assert preset["folds"] == 10 and preset["repeats"] == 10
    model = VAE(**preset["model"])
    model._validate()
    assert model.hidden == (512, 256) and model.latent_dim == 16 and model.epochs == 100
    assert model.batch_size == 64 and model.lr == 1e-3 and model.num_samples == 256 and model.binarize == "dynamic"


# -- errors ---------------------------------------------------------------------------------


def test_bernoulli_on_non_binary_data_is_refused(digits):
    with pytest.raises(GenmemError, match="binary"):
        VAE(**SMALL, likelihood="bernoulli").fit(digits[:50], rng=0)
    with pytest.raises(GenmemError, match=r"\[0, 1\]"):
        VAE(**SMALL, binarize="dynamic").fit(digits[:50] * 2.0, rng=0)


def test_non_finite_loss_names_the_unit_and_epoch():
    X = np.full((40, 4), 1e30)
    X[::2] = -1e30
    masks = np.ones((2, 40), dtype=bool)
    vae = VAE(**SMALL, likelihood="gaussian", decoder_scale=1.0)
    with pytest.raises(GenmemError, match=r"unit \(4, 1\) at epoch 1"):
        vae.fit_units(X, masks, [1, 2], unit_keys=[(4, 1), (4, 2)])


def test_out_of_memory_becomes_a_clear_error(digits, monkeypatch):
    def boom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(Units, "encode", boom)
    with pytest.raises(GenmemError, match="units-per-batch.*eval_chunk"):
        VAE(**SMALL).fit_units(digits[:30], np.ones((2, 30), dtype=bool), [1, 2])


def test_out_of_memory_in_a_later_batch_keeps_the_completed_units(digits, tmp_path, monkeypatch):
    batches = []
    initialised, encode = Units.initialised.__func__, Units.encode

    def count_batches(cls, *args, **kwargs):
        batches.append(initialised(cls, *args, **kwargs))
        return batches[-1]

    def second_batch_runs_out(self, x):
        if len(batches) > 1 and self is batches[1]:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return encode(self, x)

    monkeypatch.setattr(Units, "initialised", classmethod(count_batches))
    monkeypatch.setattr(Units, "encode", second_batch_runs_out)
    with pytest.raises(GenmemError, match="--units-per-batch, now 2"):
        genmem.kfold(VAE(**SMALL), digits[:60], folds=2, repeats=2, units_per_batch=2, out=tmp_path / "run.h5")
    assert genmem.read_result(tmp_path / "run.h5.partial").done.tolist() == [[True, True], [False, False]]


def test_units_per_batch_auto_fills_the_free_gpu_memory(monkeypatch):
    import genmem.models.vae.estimator as estimator

    vae = VAE(**PRESETS["vdb-bmnist"]["model"])
    assert vae.max_units_per_batch(np.zeros((10, 4))) is None  # on the CPU: the runner's default (K)
    fixed = vae.memory_bytes(60000, 1024, 0)
    per_unit = vae.memory_bytes(60000, 1024, 1) - fixed
    n_params = sum(p.numel() for p in vae._new_net(1024, "bernoulli").parameters())
    assert per_unit > 7 * 4 * n_params  # at least parameters, gradient, two moments and update temporaries
    monkeypatch.setattr(estimator, "resolve_device", lambda device: torch.device("cuda"))
    X = np.zeros((60000, 1024))
    for free in (fixed / 0.85 + 10.5 * per_unit / 0.85, 139 * 2**30):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device, free=free: (int(free), 2**40))
        assert vae.max_units_per_batch(X) == int((0.85 * int(free) - fixed) // per_unit)
    assert vae.max_units_per_batch(X) >= 100  # all vdb-bmnist units fit on one H200
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (2**20, 2**40))
    with pytest.raises(GenmemError, match="one VAE unit needs about"):
        vae.max_units_per_batch(X)


def test_cuda_without_a_gpu_is_a_one_line_error(monkeypatch):
    from cli_helpers import assert_one_line_error, run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run(["kfold", "--model", "vae", "--folds", 2, "--epochs", 1, "--device", "cuda", "--limit", 20,
                  "--out", "unused.h5"])
    assert_one_line_error(result, "no CUDA GPU", "--device cpu")


@pytest.mark.parametrize("params, match", [
    (dict(arch="conv"), "image_shape"),
    (dict(arch="conv", image_shape=(8, 8), hidden=(4, 8, 16, 32)), "divisible"),
    (dict(hidden=(0,)), "hidden"),
    (dict(likelihood="poisson"), "likelihood"),
    (dict(checkpoints=5, epochs=2), "checkpoints"),
    (dict(image_shape=(5, 5)), "features"),
])
def test_bad_parameters_are_refused(digits, params, match):
    with pytest.raises(GenmemError, match=match):
        VAE(**params).fit(digits[:20], rng=0)


def test_collapsed_importance_sampling_in_a_few_rows_of_one_unit_warns_although_the_median_is_fine():
    ess = np.full((3, 200), 150.0)
    ess[1, :10] = 1.0  # 5% of unit 1's rows
    with pytest.warns(UserWarning, match=r"for 10 of 200 rows, in 1 of 3 unit\(s\) \(worst: unit \(0, 1\), 5%"):
        warn_collapsed(ess, 256, ["unit (0, 0)", "unit (0, 1)", "unit (0, 2)"])
    ess[1, 2:10] = 150.0  # 1%: tolerated
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_collapsed(ess, 256, ["a", "b", "c"])


def test_degenerate_importance_sampling_warns(digits):
    model = VAE(**SMALL).fit(digits[:30], rng=0)
    with pytest.warns(UserWarning, match=r"collapsed \(effective sample size < 2 of 1 samples\) for 30 of 30 rows"):
        model.log_prob(digits[:30], num_samples=1)


def test_unfitted_model_refuses_to_score(digits):
    with pytest.raises(GenmemError, match="not fitted"):
        VAE().log_prob(digits[:3])


def test_a_checkpoint_write_that_fails_leaves_no_file(tmp_path, monkeypatch):
    from genmem.models.vae import checkpoints

    def disk_full(obj, path):
        Path(path).write_bytes(b"PK\x03\x04 truncated")
        raise RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(checkpoints.torch, "save", disk_full)
    with pytest.raises(RuntimeError, match="PytorchStreamWriter"):
        checkpoints.save_checkpoint(tmp_path / "unit_r0_k0.pt", {"epochs": []}, {}, 1, (0, 0))
    assert list(tmp_path.iterdir()) == []


def test_numbers_do_not_depend_on_the_number_of_cpu_threads():
    X = (np.random.default_rng(0).random((300, 128)) < 0.3).astype(float)
    masks = np.stack([np.arange(300) % 3 != k for k in range(3)])
    vae = VAE(latent_dim=8, hidden=(256, 64), epochs=2, batch_size=32, num_samples=32)
    runs = []
    for threads in (1, 2):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            runs.append(vae.fit_units(X, masks, [1, 2, 3]))
        finally:
            torch.set_num_threads(before)
    for name in ("loglik", "ess", "train_loss"):
        np.testing.assert_array_equal(runs[0][name], runs[1][name], err_msg=name)
