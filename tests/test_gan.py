"""Memorization rejection, the built-in GAN, its evaluation and ``genmem gan``, against brute force and closed forms."""
import importlib.util
import json

import numpy as np
import pytest
import scipy.linalg
import torch
from click.testing import CliRunner
from sklearn.datasets import load_digits

from genmem import GenmemError
from genmem.cli import main
from genmem.gan import (MemorizationRejection, evaluate_gan, frechet_distance, load_gan_data, make_gan, read_gan,
                        train_gan)
from genmem.gan.train import discriminator_loss, generator_loss, to_image_range, to_unit
from genmem.neighbours import NeighbourBank

E = np.eye(4)


def as_images(rows):
    """Rows [B, 4] as 'images' [B, 1, 2, 2] (the pixel feature map flattens them back)."""
    return np.asarray(rows, dtype=np.float64).reshape(-1, 1, 2, 2)


def brute_cosine_nn(Q, T):
    """Cosine NN distance of every row of Q to the rows of T, all pairs in NumPy float64."""
    Q = np.asarray(Q, dtype=np.float64).reshape(len(Q), -1)
    T = np.asarray(T, dtype=np.float64).reshape(len(T), -1)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    Tn = T / np.linalg.norm(T, axis=1, keepdims=True)
    return (1.0 - Qn @ Tn.T).min(axis=1)


@pytest.fixture
def known_bank():
    """Training set e1, e2, e3: a sample cos θ e1 + sin θ e4 (θ in [0, π/2]) has NN distance 1 − cos θ."""
    return NeighbourBank("pixels", as_images(E[:3]), device="cpu")


def arc(thetas):
    return torch.tensor(as_images(np.cos(thetas)[:, None] * E[0] + np.sin(thetas)[:, None] * E[3]))


def queue_sampler(batches):
    """A sampler that hands out the given batches in turn and counts its calls."""
    batches = list(batches)

    def sampler(n):
        sampler.calls += 1
        batch = batches.pop(0)
        assert len(batch) == n
        return batch

    sampler.calls = 0
    return sampler


def test_adapter_keeps_exactly_the_samples_with_nn_distance_at_least_tau(known_bank):
    thetas = np.array([0.0, 0.3, 0.5, 0.8, 1.0, 1.2, np.pi / 2, 0.1])
    batch = arc(thetas)
    d_true = 1.0 - np.cos(thetas)
    tau = 0.25
    mr = MemorizationRejection(known_bank, tau, mode="mask")
    np.testing.assert_allclose(mr.nn_distance(batch), d_true, atol=1e-12)
    kept = mr(batch)
    np.testing.assert_array_equal(kept.numpy(), batch.numpy()[d_true >= tau])
    assert mr.history["rejection_rate"] == [np.mean(d_true < tau)]
    assert mr.keep_mask(batch).tolist() == (d_true >= tau).tolist()
    # τ = 0 keeps everything, including an exact copy of a training example (d = 0)
    copy = torch.tensor(as_images(E[[1, 0, 2]]))
    everything = MemorizationRejection(known_bank, 0.0, mode="resample")(copy, sampler=queue_sampler([]))
    np.testing.assert_array_equal(everything.numpy(), copy.numpy())


def test_resample_refills_the_batch_with_accepted_samples_in_order(known_bank):
    tau = 0.25
    first = arc(np.array([0.1, 1.0, 0.2, 0.8]))           # kept: rows 1, 3
    second = arc(np.array([1.1, 0.05, 0.9, 1.3]))         # kept: rows 0, 2, 3 -> only two needed
    sampler = queue_sampler([second])
    mr = MemorizationRejection(known_bank, tau, mode="resample")
    out = mr(first, sampler=sampler)
    expected = np.concatenate([first.numpy()[[1, 3]], second.numpy()[[0, 2]]])
    np.testing.assert_array_equal(out.numpy(), expected)
    assert sampler.calls == 1
    assert mr.history["n_examined"] == [8] and mr.history["n_rejected"] == [3] and mr.history["n_fallback"] == [0]
    assert mr.rejection_rate.tolist() == [3 / 8]


@pytest.mark.filterwarnings("ignore::genmem.gan.RejectionWarning")  # synthetic samples off the bank's range
def test_resample_never_returns_an_empty_batch_and_falls_back_to_the_farthest(known_bank):
    gen = torch.Generator().manual_seed(3)
    batches = [torch.randn(6, 1, 2, 2, generator=gen, dtype=torch.float64) for _ in range(4)]
    mr = MemorizationRejection(known_bank, 1.99, mode="resample", max_tries=4)
    out = mr(batches[0], sampler=queue_sampler(batches[1:]))
    assert out.shape == (6, 1, 2, 2)
    pool = torch.cat(batches).numpy()
    d = brute_cosine_nn(pool, as_images(E[:3]))
    assert (d < 1.99).all()
    farthest = pool[np.argsort(-d, kind="stable")[:6]]
    np.testing.assert_array_equal(np.sort(out.numpy().reshape(6, -1), axis=0), np.sort(farthest.reshape(6, -1), axis=0))
    assert mr.history["n_fallback"] == [6] and mr.history["tries"] == [4] and mr.history["rejection_rate"] == [1.0]


def test_resample_with_a_generator_fills_every_batch_with_distances_at_least_tau(digits):
    X, _ = digits
    images = X[:300].reshape(-1, 1, 8, 8)
    bank = NeighbourBank("pixels", images, device="cpu")
    G, _ = make_gan((1, 8, 8), seed=0)
    gen = torch.Generator().manual_seed(0)

    def sampler(n):
        return (G(torch.randn(n, G.z_dim, generator=gen)) + 1) / 2

    tau = float(np.quantile(brute_cosine_nn(sampler(256).detach().numpy(), images), 0.5))
    mr = MemorizationRejection(bank, tau, mode="resample", max_tries=20)
    for _ in range(3):
        out = mr(sampler(32), sampler)
        assert out.shape == (32, 1, 8, 8)
        assert (brute_cosine_nn(out.detach().numpy(), images) >= tau - 1e-12).all()
    assert 0.2 < np.mean(mr.rejection_rate) < 0.8


def test_tau_auto_is_the_mean_leave_one_out_nn_distance(rng):
    X = rng.normal(size=(60, 1, 3, 3))
    bank = NeighbourBank("pixels", X, device="cpu")
    Xf = X.reshape(60, -1)
    Xn = Xf / np.linalg.norm(Xf, axis=1, keepdims=True)
    D = 1.0 - Xn @ Xn.T
    np.fill_diagonal(D, np.inf)
    oracle = D.min(axis=1).mean()
    assert MemorizationRejection(bank, "auto").tau == pytest.approx(oracle, abs=1e-12)
    assert MemorizationRejection(bank, "0.5x").tau == pytest.approx(0.5 * oracle, abs=1e-12)
    assert MemorizationRejection(bank, "0.3").tau == 0.3


def test_gradients_reach_the_generator_through_kept_rows_only_and_never_the_embedding(rng):
    torch.manual_seed(0)  # only for nn.Linear's default init of these throwaway modules
    feature_map = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 4))
    grad_enabled = []
    feature_map.register_forward_hook(lambda *_: grad_enabled.append(torch.is_grad_enabled()))
    train = rng.normal(size=(30, 1, 2, 2))
    bank = NeighbourBank(feature_map, train, device="cpu")
    G = torch.nn.Linear(3, 4).double()
    z = torch.tensor(rng.normal(size=(16, 3)))
    fake = G(z).reshape(16, 1, 2, 2)
    with torch.no_grad():  # the oracle: the same feature map applied by hand, all-pairs distances in NumPy
        d = brute_cosine_nn(feature_map(fake.float()).numpy(), feature_map(torch.tensor(train).float()).numpy())
    tau = float(np.median(d))
    mr = MemorizationRejection(bank, tau, mode="mask")
    kept = mr(fake)
    (kept ** 2).sum().backward()
    assert all(p.grad is None for p in feature_map.parameters())
    assert grad_enabled and not any(grad_enabled)
    G_ref = torch.nn.Linear(3, 4).double()
    G_ref.load_state_dict(G.state_dict())
    (G_ref(z)[torch.as_tensor(d >= tau)] ** 2).sum().backward()
    assert 0 < (d >= tau).sum() < 16
    torch.testing.assert_close(G.weight.grad, G_ref.weight.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(G.bias.grad, G_ref.bias.grad, rtol=0, atol=1e-12)


@pytest.mark.filterwarnings("ignore::genmem.gan.RejectionWarning")  # synthetic samples off the bank's range
def test_resample_gradient_is_the_sum_over_the_accepted_rows_of_every_batch(known_bank, rng):
    G = torch.nn.Linear(3, 4).double()
    zs = [torch.tensor(rng.normal(size=(5, 3))) for _ in range(4)]
    sampler = queue_sampler([G(z).reshape(5, 1, 2, 2) for z in zs[1:]])
    mr = MemorizationRejection(known_bank, 0.7, mode="resample", max_tries=4)
    out = mr(G(zs[0]).reshape(5, 1, 2, 2), sampler)
    out.sum().backward()
    G_ref = torch.nn.Linear(3, 4).double()
    G_ref.load_state_dict(G.state_dict())
    need, total = 5, 0.0
    with torch.no_grad():
        distances = [brute_cosine_nn(G(z).numpy(), as_images(E[:3])) for z in zs[:sampler.calls + 1]]
    for z, d in zip(zs, distances):
        rows = np.flatnonzero(d >= 0.7)[:need]
        need -= len(rows)
        total = total + G_ref(z)[torch.as_tensor(rows)].sum()
    assert need == mr.history["n_fallback"][0]
    if need == 0:
        total.backward()
        torch.testing.assert_close(G.weight.grad, G_ref.weight.grad, rtol=0, atol=1e-12)


def test_mask_loss_is_the_loss_over_kept_samples_and_resamples_only_when_all_are_rejected(known_bank):
    D = torch.nn.Linear(4, 1).double()
    logits = lambda x: D(x.reshape(len(x), 4))[:, 0]  # noqa: E731
    thetas = np.array([0.1, 1.2, 0.9, 0.05, 1.5, 0.4])
    batch = arc(thetas)
    keep = 1.0 - np.cos(thetas) >= 0.3
    sampler = queue_sampler([])
    mr = MemorizationRejection(known_bank, 0.3, mode="mask")
    for kind in ("ns", "hinge"):
        loss = generator_loss(kind, logits(mr(batch, sampler)))
        per_sample = torch.nn.functional.softplus(-logits(batch)) if kind == "ns" else -logits(batch)
        torch.testing.assert_close(loss, per_sample[torch.as_tensor(keep)].mean(), rtol=0, atol=1e-14)
    assert sampler.calls == 0
    rejected_all = arc(np.array([0.1, 0.2, 0.0]))
    second = arc(np.array([0.05, 1.0, 1.4]))
    sampler = queue_sampler([second])
    out = mr(rejected_all, sampler)
    np.testing.assert_array_equal(out.numpy(), second.numpy()[[1, 2]])
    assert sampler.calls == 1
    # all rejected and no sampler: the single farthest sample
    np.testing.assert_array_equal(mr(rejected_all).numpy(), rejected_all.numpy()[[1]])


def test_gan_losses_against_their_formulas(rng):
    real, fake = rng.normal(size=7), rng.normal(size=5)
    softplus = lambda x: np.log1p(np.exp(x))  # noqa: E731
    ns_d = softplus(-real).mean() + softplus(fake).mean()
    hinge_d = np.maximum(0, 1 - real).mean() + np.maximum(0, 1 + fake).mean()
    t = torch.tensor
    assert discriminator_loss("ns", t(real), t(fake)).item() == pytest.approx(ns_d, rel=1e-12)
    assert discriminator_loss("hinge", t(real), t(fake)).item() == pytest.approx(hinge_d, rel=1e-12)
    assert generator_loss("ns", t(fake)).item() == pytest.approx(softplus(-fake).mean(), rel=1e-12)
    assert generator_loss("hinge", t(fake)).item() == pytest.approx(-fake.mean(), rel=1e-12)


def test_discriminator_batch_passes_through_unless_asked(known_bank):
    batch = arc(np.array([0.0, 1.0, 0.1]))
    assert MemorizationRejection(known_bank, 0.3, mode="mask").discriminator_batch(batch) is batch
    mr = MemorizationRejection(known_bank, 0.3, mode="mask", apply_to_discriminator=True)
    np.testing.assert_array_equal(mr.discriminator_batch(batch).numpy(), batch.numpy()[[1]])
    assert mr.history["rejection_rate"] == [] and len(mr.discriminator_history["rejection_rate"]) == 1


@pytest.mark.parametrize("tau", [-0.1, 2.0, 2.5, "3x", "abc", float("nan"), True, None, "-1x"])
def test_bad_tau(known_bank, tau):
    with pytest.raises(GenmemError, match="tau"):
        MemorizationRejection(known_bank, tau)


def test_mismatched_bank_and_bad_arguments(known_bank, digits):
    X, _ = digits
    digit_bank = NeighbourBank("pixels", X[:100].reshape(-1, 1, 8, 8), device="cpu")
    with pytest.raises(GenmemError, match="takes 64"):
        MemorizationRejection(digit_bank, "auto", sample_shape=(1, 28, 28))
    mr = MemorizationRejection(digit_bank, "auto")
    with pytest.raises(GenmemError, match="takes 64"):
        mr.nn_distance(torch.rand(4, 3, 32, 32))
    pca_bank = NeighbourBank("pca:5", X[:100].reshape(-1, 1, 8, 8), device="cpu")
    with pytest.raises(GenmemError, match="takes 64"):
        MemorizationRejection(pca_bank, 0.1).nn_distance(torch.rand(4, 1, 28, 28))
    shifted = MemorizationRejection(digit_bank, 0.1, preprocess=lambda x: x[:, :, :4])  # 8x8 -> 4x8: 32 values
    with pytest.raises(GenmemError, match="do not fit the neighbour bank"):
        shifted.nn_distance(torch.rand(4, 1, 8, 8))
    features_bank = NeighbourBank(np.random.default_rng(0).normal(size=(50, 2048)))
    with pytest.raises(GenmemError, match="takes 2048"):
        MemorizationRejection(features_bank, 0.1, sample_shape=(3, 32, 32))
    with pytest.raises(GenmemError, match="metric='cosine'"):
        MemorizationRejection(NeighbourBank("pixels", X[:50], metric="euclidean"), 0.1)
    with pytest.raises(GenmemError, match="mode"):
        MemorizationRejection(known_bank, 0.1, mode="drop")
    with pytest.raises(GenmemError, match="max_tries"):
        MemorizationRejection(known_bank, 0.1, max_tries=0)
    with pytest.raises(GenmemError, match="sampler"):
        MemorizationRejection(known_bank, 0.1)(arc(np.array([0.1, 0.2])))
    mr = MemorizationRejection(known_bank, 0.1, mode="mask")
    mr(arc(np.array([1.0])))
    with pytest.raises(GenmemError, match="shape"):
        mr(torch.rand(2, 4))
    with pytest.raises(GenmemError, match="NeighbourBank"):
        MemorizationRejection(X, 0.1)


def test_zero_feature_samples_get_distance_one(known_bank):
    mr = MemorizationRejection(known_bank, 0.5, mode="mask")
    batch = torch.tensor(as_images([np.zeros(4), E[0]]))
    np.testing.assert_array_equal(mr.nn_distance(batch), [1.0, 0.0])


def test_frechet_distance_against_scipy_and_closed_forms(rng):
    a, b = rng.normal(size=(300, 5)), rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5)) + 1.0
    mu, ca, cb = a.mean(0) - b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = mu @ mu + np.trace(ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-10)
    x, y = rng.normal(size=(1000, 1)), rng.normal(size=(800, 1))
    sx, sy = x.std(ddof=1), y.std(ddof=1)
    assert frechet_distance(x, y) == pytest.approx((x.mean() - y.mean()) ** 2 + (sx - sy) ** 2, rel=1e-10)
    with pytest.raises(GenmemError, match="Fréchet"):
        frechet_distance(a, b[:, :3])


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
def test_nets_shapes_and_seeding_without_global_state(shape):
    state = torch.random.get_rng_state()
    G, D = make_gan(shape, seed=5)
    G2, _ = make_gan(shape, seed=5)
    G3, _ = make_gan(shape, seed=6)
    assert torch.equal(state, torch.random.get_rng_state())
    z = torch.zeros(3, G.z_dim).normal_(generator=torch.Generator().manual_seed(0))
    x = G(z)
    assert x.shape == (3, *shape) and x.abs().max() <= 1
    assert D(x).shape == (3,)
    assert all(torch.equal(p, q) for p, q in zip(G.parameters(), G2.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(G.parameters(), G3.parameters()))
    with pytest.raises(GenmemError, match="DCGAN"):
        make_gan((1, 20, 20), arch="dcgan")


@pytest.mark.parametrize("kwargs, words", [
    ({"width": 0}, "width must be a positive integer; got 0"),
    ({"width": -1, "arch": "dcgan"}, "width must be a positive integer; got -1"),
    ({"width": 8.0}, "width must be a positive integer"),
    ({"z_dim": 0}, "z_dim must be a positive integer"),
    ({"z_dim": None}, "z_dim must be a positive integer"),
])
def test_make_gan_rejects_non_positive_sizes(kwargs, words):
    with pytest.raises(GenmemError, match=words):
        make_gan((1, 28, 28), **kwargs)


@pytest.fixture(scope="module")
def small_digits():
    return load_gan_data("digits", limit=200)


def test_digits_hold_out_is_seeded_disjoint_and_complete():
    a, b = load_gan_data("digits"), load_gan_data("digits", split_seed=1)
    assert a.info["test_source"] == "holdout" and (len(a.train), len(a.test)) == (1438, 359)
    assert np.union1d(a.train_index, a.test_index).tolist() == list(range(1797))
    assert np.intersect1d(a.train_index, a.test_index).size == 0
    assert not np.array_equal(a.test_index, b.test_index)
    ref = load_digits().images / 16.0
    np.testing.assert_allclose(a.test[:, 0], ref[a.test_index], atol=1e-7)
    np.testing.assert_array_equal(load_gan_data("digits").test_index, a.test_index)


def test_training_is_seeded_and_tau_zero_equals_no_rejection(small_digits):
    state = torch.random.get_rng_state()
    kw = dict(steps=4, batch_size=16, device="cpu", seed=1)
    plain = train_gan(small_digits.train, tau=None, **kw)
    zero = train_gan(small_digits.train, tau=0.0, **kw)
    again = train_gan(small_digits.train, tau=0.0, **kw)
    other = train_gan(small_digits.train, tau=0.0, **{**kw, "seed": 2})
    assert torch.equal(state, torch.random.get_rng_state())
    for run in (zero, again):
        assert all(torch.equal(p, q) for p, q in zip(plain.generator.parameters(), run.generator.parameters()))
        np.testing.assert_array_equal(run.history["loss_g"], plain.history["loss_g"])
    assert not np.array_equal(other.history["loss_g"], plain.history["loss_g"])
    assert zero.history["rejection_rate"].tolist() == [0.0] * 4
    assert zero.tau_auto == pytest.approx(brute_loo_mean(small_digits.train), abs=1e-12)


def test_dcgan_trains_with_rejection_on_28x28_images(rng):
    images = (rng.random((40, 1, 28, 28)) < 0.2).astype(np.float32)
    run = train_gan(images, tau="1x", steps=2, batch_size=8, width=8, device="cpu", n_dis=2, loss="hinge")
    assert type(run.generator).__name__ == "DCGANGenerator" and run.history["tries"].shape == (2,)
    assert np.isfinite(run.history["loss_d"]).all() and np.isfinite(run.history["loss_g"]).all()


def brute_loo_mean(images):
    X = images.reshape(len(images), -1).astype(np.float64)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    D = 1.0 - Xn @ Xn.T
    np.fill_diagonal(D, np.inf)
    return D.min(axis=1).mean()


def test_evaluation_metrics_against_brute_force(small_digits):
    run = train_gan(small_digits.train, tau="1x", steps=3, batch_size=16, device="cpu", mode="mask")
    ev = evaluate_gan(run.generator, run.bank, small_digits.test, n_samples=120, n_cells=2, seed=0)
    gen = ev.samples.reshape(120, -1).astype(np.float64)
    np.testing.assert_allclose(ev.nn_generated, brute_cosine_nn(gen, small_digits.train), atol=1e-12)
    np.testing.assert_allclose(ev.nn_test, brute_cosine_nn(small_digits.test, small_digits.train), atol=1e-12)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    assert ev.metrics["fd_f"] == pytest.approx(frechet_distance(unit(gen), unit(small_digits.test.reshape(359, -1))))
    assert ev.histogram["generated"].sum() == 120 and ev.histogram["test"].sum() == 359
    assert ev.metrics["n_cells"] == 2 and np.isfinite(ev.metrics["c_t"])


def run_cli(args):
    return CliRunner().invoke(main, ["gan", *map(str, args)])


TINY = ["--dataset", "digits", "--limit", "200", "--steps", "3", "--batch-size", "16", "--n-samples", "100",
        "--cells", "2", "--device", "cpu"]


def test_cli_trains_evaluates_and_writes_one_hdf5_file(tmp_path):
    out = tmp_path / "gan.h5"
    res = run_cli([*TINY, "--tau", "auto", "--mode", "mask", "--out", out, "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    f = read_gan(out)
    attrs = f["attrs"]
    assert attrs["format"] == "genmem.gan" and attrs["format_version"] == 1
    assert attrs["config"]["mode"] == "mask" and attrs["config"]["data"]["test_source"] == "holdout"
    assert attrs["seeds"]["seed"] == 0 and "torch" in attrs["versions"] and attrs["device"].startswith("cpu")
    assert attrs["tau"] == pytest.approx(attrs["tau_auto"]) == pytest.approx(summary["tau_auto"])
    assert attrs["metrics"]["c_t"] == pytest.approx(summary["c_t"])
    assert f["samples/images"].shape == (100, 1, 8, 8)
    assert f["train/rejection_rate"].shape == (3,) and f["train/loss_g"].shape == (3,)
    assert f["data/test_index"].shape == (359,) and f["data/train_index"].shape == (200,)
    assert f["eval/nn_distance_test"].shape == (359,)
    assert "held out a seeded 0.2" in res.stderr


def test_cli_tau_sweep_writes_table_and_plot(tmp_path):
    out = tmp_path / "sweep.json"
    res = run_cli([*TINY, "--sweep-tau", "0,1x", "--seeds", "0,1", "--out", out])
    assert res.exit_code == 0, res.output
    table = json.loads(out.read_text())
    assert [(r["tau_spec"], r["seed"]) for r in table["runs"]] == [("0", 0), ("0", 1), ("1x", 0), ("1x", 1)]
    assert table["summary"][1]["tau"] == pytest.approx(table["tau_auto"])
    assert table["summary"][0]["rejection_rate_mean_mean"] == 0.0
    assert "spearman_tau_c_t" in table["trend"]
    assert (tmp_path / "sweep.png").stat().st_size > 0
    assert sorted(f.name for f in tmp_path.iterdir()) == ["sweep.json", "sweep.png"]  # no temporary file left
    assert "C_T mean" in res.stdout


@pytest.mark.parametrize("args, words", [
    (["--tau", "2.5"], "outside [0, 2)"),
    (["--tau", "-1"], "outside [0, 2)"),
    (["--inception", "missing.pth"], "does not exist"),
    (["--sweep-tau", "0,1x", "--out", "x.h5"], ".json"),
    (["--sweep-tau", "0,abc", "--out", "t.json"], "tau must be"),
    (["--loss", "wgan"], "Invalid value"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, words):
    res = run_cli([*TINY, "--out", tmp_path / "o.h5", *args])
    assert res.exit_code != 0
    assert words in res.output
    assert "Traceback" not in res.output
    assert res.output.strip().splitlines()[-1].startswith("Error: ")


@pytest.mark.parametrize("args, words", [
    (["--width", "0"], "width must be a positive integer; got 0"),
    (["--width", "-1"], "width must be a positive integer; got -1"),
    (["--z-dim", "0"], "z_dim must be a positive integer"),
    (["--width", "0", "--sweep-tau", "0,1x", "--out", "{tmp}/t.json"], "width must be a positive integer"),
    (["--n-samples", "20"], "--n-samples must be more than 20"),
    (["--n-samples", "-3"], "--n-samples must be more than 20"),
    (["--cells", "0"], "--cells must be a positive integer"),
    (["--cells", "201"], "exceeds the 200 training images"),
    (["--out", "{tmp}/missing/o.h5"], "output folder"),
    (["--sweep-tau", "0,1x", "--out", "{tmp}/missing/t.json"], "output folder"),
    (["--sweep-tau", "0,1x", "--out", "{tmp}/t.json", "--plot", "{tmp}/missing/t.png"], "output folder"),
    (["--inception", "{tmp}/weights.pth"], "needs torchvision"),
    (["--seed", "-1"], "Invalid value for '--seed'"),
    (["--split-seed", "-2"], "Invalid value for '--split-seed'"),
    (["--sweep-tau", "0,1x", "--seeds", "0,-1", "--out", "{tmp}/t.json"], "seeds >= 0"),
])
def test_cli_cheap_input_errors_come_before_any_training(tmp_path, monkeypatch, args, words):
    def no_training(*args, **kwargs):
        raise AssertionError("training started before the bad input was caught")

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchvision"
                        else find_spec(name, *a))
    monkeypatch.setattr("genmem.gan.train.discriminator_loss", no_training)
    (tmp_path / "weights.pth").write_bytes(b"")
    res = run_cli([*TINY, "--out", tmp_path / "o.h5", *(a.format(tmp=tmp_path) for a in args)])
    assert res.exit_code != 0 and isinstance(res.exception, SystemExit) and "Traceback" not in res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and words in last, res.output
    assert sorted(f.name for f in tmp_path.iterdir()) == ["weights.pth"]


def test_old_name_of_the_image_range_map_still_works_and_warns():
    x = torch.tensor([-1.0, 0.0, 1.0])
    with pytest.warns(DeprecationWarning, match="to_image_range"):
        assert torch.equal(to_unit(x), to_image_range(x))


def test_read_gan_refuses_other_files(tmp_path, rng):
    NeighbourBank("pixels", rng.random((10, 4))).save(tmp_path / "bank.h5")
    with pytest.raises(GenmemError, match=r"bank\.h5 is an HDF5 file but not a genmem GAN file"):
        read_gan(tmp_path / "bank.h5")
    (tmp_path / "text.h5").write_text("no")
    with pytest.raises(GenmemError, match=r"text\.h5 is not a genmem GAN file; give a file written by 'genmem gan'"):
        read_gan(tmp_path / "text.h5")
