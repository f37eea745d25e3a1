"""Every model and view on CUDA against the same computation on the CPU (skipped without a GPU).

The oracle is the CPU path, itself tested against closed forms and brute
force elsewhere. Random numbers are counter-based (genmem.philox), so the
VAE draws the same minibatches, ε and importance samples on both devices:
only float rounding may differ.
"""
import warnings

import numpy as np
import pytest
import torch

import genmem
from genmem.gan import MemorizationRejection
from genmem.influence import vae_tracin
from genmem.models import GMM, KDE, VAE
from genmem.models.stacked_adam import StackedAdam
from genmem.neighbours import NeighbourBank, data_copying_test
from genmem.philox import bits, key_words, normal, uniform

pytestmark = [pytest.mark.gpu, pytest.mark.filterwarnings("ignore:importance sampling collapsed")]


@pytest.fixture(scope="module")
def grey(digits):
    X, _ = digits
    return (X * 16 + np.random.default_rng(0).random(X.shape)) / 17.0


def test_philox_draws_are_identical_on_cuda():
    keys = key_words([1, 2**63 + 5, 77])
    cpu, gpu = keys, keys.cuda()
    assert torch.equal(bits(cpu, 1001, 3, 4, 5), bits(gpu, 1001, 3, 4, 5).cpu())
    for dtype in (torch.float32, torch.float64):
        assert torch.equal(uniform(cpu, 999, 0, 1, 2, dtype=dtype), uniform(gpu, 999, 0, 1, 2, dtype=dtype).cpu())
        torch.testing.assert_close(normal(gpu, 999, 0, 1, 2, dtype=dtype).cpu(), normal(cpu, 999, 0, 1, 2, dtype=dtype),
                                   rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_stacked_adam_on_cuda_equals_the_cpu(fused):
    gen = torch.Generator().manual_seed(0)
    init = torch.randn(4, 1000, generator=gen, dtype=torch.float64)
    grads = [torch.randn(4, 1000, generator=gen, dtype=torch.float64) for _ in range(5)]
    active = torch.rand(5, 4, generator=gen) > 0.3
    results = []
    for device, use_fused in (("cpu", False), ("cuda", fused)):
        flat = init.to(device)
        adam = StackedAdam(flat, lr=0.01, fused=use_fused)
        assert adam.fused == use_fused
        for g, on in zip(grads, active):
            adam.grad.copy_(g)
            adam.step(on.to(device), tuple(int(u) for u in torch.nonzero(on).flatten()))
        results.append(flat.cpu())
    torch.testing.assert_close(results[1], results[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-7), ("float32", 2e-3)])
@pytest.mark.parametrize("graph", [True, False])
def test_vae_training_and_importance_sampling_on_cuda_match_the_cpu(grey, dtype, rtol, graph):
    X = grey[:300]
    masks = np.stack([np.arange(len(X)) % 3 != k for k in range(3)])
    params = dict(latent_dim=4, hidden=(32, 16), epochs=3, batch_size=32, num_samples=64, dtype=dtype, tf32=False)
    cpu = VAE(**params, device="cpu").fit_units(X, masks, [1, 2, 3])
    gpu = VAE(**params, device="cuda", cuda_graph=graph).fit_units(X, masks, [1, 2, 3])
    np.testing.assert_allclose(gpu["train_loss"], cpu["train_loss"], rtol=rtol)
    np.testing.assert_allclose(gpu["loglik"], cpu["loglik"], rtol=rtol, atol=rtol)


def test_vae_dynamic_binarization_graph_equals_eager_on_cuda_and_tf32_stays_close(grey):
    X = grey[:256]
    masks = np.stack([np.arange(len(X)) % 4 != k for k in range(4)])
    params = dict(latent_dim=4, hidden=(32,), epochs=2, batch_size=16, num_samples=32, binarize="dynamic",
                  device="cuda", tf32=False)
    eager = VAE(**params, cuda_graph=False).fit_units(X, masks, [5, 6, 7, 8])["loglik"]
    graph = VAE(**params, cuda_graph=True).fit_units(X, masks, [5, 6, 7, 8])["loglik"]
    np.testing.assert_allclose(graph, eager, rtol=1e-5, atol=1e-4)
    tf32 = VAE(**{**params, "tf32": True}).fit_units(X, masks, [5, 6, 7, 8])["loglik"]
    np.testing.assert_allclose(tf32, eager, rtol=0.05, atol=0.5)
    alone = VAE(**params).fit_units(X, masks[2:3], [7])["loglik"][0]
    np.testing.assert_allclose(alone, graph[2], rtol=1e-4, atol=1e-3)


def test_kfold_runner_on_cuda_with_auto_units_per_batch(grey):
    X = grey[:200]
    vae = VAE(latent_dim=3, hidden=(16,), epochs=2, batch_size=32, num_samples=16, dtype="float64")
    gpu = genmem.kfold(vae, X, folds=4, repeats=2, seed=3, device="cuda")
    cpu = genmem.kfold(vae, X, folds=4, repeats=2, seed=3, device="cpu")
    assert gpu.config["units_per_batch"] >= 8  # everything fits at once
    np.testing.assert_allclose(gpu.loglik, cpu.loglik, rtol=1e-7)


def test_kde_on_cuda_matches_the_cpu(rng):
    X = rng.normal(size=(300, 5))
    masks = np.stack([np.arange(300) % 3 != k for k in range(3)])
    cpu = KDE("scott", device="cpu").fit_units(X, masks, [0, 1, 2])["loglik"]
    gpu = KDE("scott", device="cuda").fit_units(X, masks, [0, 1, 2])["loglik"]
    np.testing.assert_allclose(gpu, cpu, rtol=1e-10)


def test_gmm_on_cuda_matches_the_cpu(rng):
    X = np.concatenate([rng.normal(size=(150, 3)), rng.normal(loc=4.0, size=(150, 3))])
    cpu = GMM(2, device="cpu").fit(X, rng=0).log_prob(X)
    gpu = GMM(2, device="cuda").fit(X, rng=0).log_prob(X)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-8)


def test_tracin_self_influence_on_cuda_matches_the_cpu(grey, tmp_path):
    X = grey[:120]
    vae = VAE(latent_dim=3, hidden=(16,), epochs=2, batch_size=16, num_samples=8, checkpoints=2, dtype="float64")
    vae.fit_units(X, np.ones((1, len(X)), dtype=bool), [9], unit_keys=[(0, 0)], artifact_dir=tmp_path)
    path = tmp_path / "unit_r0_k0.pt"
    cpu = vae_tracin(path, device="cpu").self_influence(X)
    gpu = vae_tracin(path, device="cuda").self_influence(X)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-8)


def test_neighbour_bank_and_data_copying_test_on_cuda_match_the_cpu(rng):
    train, test, gen = rng.normal(size=(500, 8)), rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    d_cpu, i_cpu = NeighbourBank(train, device="cpu").query_features(test, k=3)
    d_gpu, i_gpu = NeighbourBank(train, device="cuda").query_features(test, k=3)
    np.testing.assert_array_equal(i_gpu, i_cpu)
    np.testing.assert_allclose(d_gpu, d_cpu, rtol=1e-6, atol=1e-9)
    c_cpu = data_copying_test(train, test, gen, n_cells=3, device="cpu")
    c_gpu = data_copying_test(train, test, gen, n_cells=3, device="cuda")
    assert c_gpu.c_t == pytest.approx(c_cpu.c_t, rel=1e-6)


def test_one_memorization_rejection_step_on_cuda_keeps_what_the_cpu_keeps(digits):
    X, _ = digits
    images = torch.as_tensor(X[:400].reshape(-1, 1, 8, 8), dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    batch = torch.cat([images[:32], torch.rand(32, 1, 8, 8, generator=gen)])  # copies (rejected) and noise (kept)
    kept = []
    for device in ("cpu", "cuda"):
        bank = NeighbourBank("pixels", images.numpy(), device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mr = MemorizationRejection(bank, tau="auto", mode="mask")
            kept.append(mr.keep_mask(batch.to(device)).cpu().numpy())
    np.testing.assert_array_equal(kept[1], kept[0])
    assert not kept[0][:32].any() and kept[0][32:].all()
