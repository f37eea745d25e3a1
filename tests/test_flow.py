"""The RealNVP flow: exact normalisation, the identity flow, the change of variables and the stacked Adam."""

import numpy as np
import pytest
import torch
from scipy.special import logit
from scipy.stats import multivariate_normal, norm
from sklearn.datasets import make_moons

import genmem
from genmem.errors import GenmemError
from genmem.models import Flow

SMALL = dict(layers=4, hidden=(16, 16), batch_size=64, lr=5e-3, dtype="float64")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny matrices: one thread is several times faster than two on a shared CPU (numbers are the same)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_an_untrained_flow_is_its_base_density(rng):
    X = rng.normal(size=(50, 3)) * [1.0, 3.0, 0.2] + [1.0, -2.0, 0.0]
    Z = rng.normal(size=(20, 3)) * 2
    bare = Flow(epochs=0, input_map="identity", standardize=False, **SMALL).fit(X, rng=0)
    np.testing.assert_allclose(bare.log_prob(Z), multivariate_normal(np.zeros(3)).logpdf(Z), rtol=1e-12)
    scaled = Flow(epochs=0, input_map="identity", **SMALL).fit(X, rng=0)
    np.testing.assert_allclose(scaled.log_prob(Z), norm.logpdf(Z, X.mean(0), X.std(0)).sum(1), rtol=1e-12)


def test_an_untrained_logit_flow_is_the_logit_normal_density(rng):
    X = rng.uniform(0.02, 0.98, size=(40, 2))
    lam = 0.05
    bare = Flow(epochs=0, input_map="logit", standardize=False, logit_lambda=lam, **SMALL).fit(X, rng=0)
    y = lam + (1 - 2 * lam) * X
    oracle = (norm.logpdf(logit(y)) + np.log((1 - 2 * lam) / (y * (1 - y)))).sum(1)
    np.testing.assert_allclose(bare.log_prob(X), oracle, rtol=1e-12)


def _bimodal(rng, n):
    return np.where(rng.random(n) < 0.3, rng.normal(-2.0, 0.4, n), rng.normal(1.5, 0.8, n))[:, None]


def test_a_trained_1d_flow_integrates_to_one(rng):
    X = _bimodal(rng, 300) * 3 + 1
    flow = Flow(epochs=40, input_map="identity", **SMALL).fit(X, rng=1)  # in 1-D: affine couplings
    grid = np.linspace(-60, 60, 200_001)
    density = np.exp(flow.log_prob(grid[:, None]))
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-4)


def test_a_trained_1d_logit_flow_integrates_to_one_over_its_support(rng):
    X = 1.0 / (1.0 + np.exp(-_bimodal(rng, 300)))
    lam = 0.05
    flow = Flow(epochs=40, input_map="logit", logit_lambda=lam, **SMALL).fit(X, rng=1)
    edge = lam / (1 - 2 * lam)  # y = λ + (1 − 2λ)x covers (0, 1) for x in (−edge, 1 + edge)
    grid = np.linspace(-edge, 1 + edge, 400_001)[1:-1]
    density = np.exp(flow.log_prob(grid[:, None]))
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)


def test_a_trained_2d_flow_integrates_to_one(rng):
    X, _ = make_moons(400, noise=0.08, random_state=0)
    flow = Flow(epochs=60, input_map="identity", **SMALL).fit(X, rng=2)
    assert flow.train_loss_[-1] < flow.train_loss_[0] - 0.5
    a, b = np.linspace(-5, 6, 701), np.linspace(-5, 5.5, 701)
    A, B = np.meshgrid(a, b, indexing="ij")
    density = np.exp(flow.log_prob(np.column_stack([A.ravel(), B.ravel()]))).reshape(A.shape)
    assert np.trapezoid(np.trapezoid(density, b, axis=1), a) == pytest.approx(1.0, abs=2e-3)


def test_the_log_jacobian_equals_the_brute_force_determinant(rng):
    X = rng.uniform(0.05, 0.95, size=(200, 3)) ** 2
    flow = Flow(epochs=15, **SMALL).fit(X, rng=3)
    assert flow.input_map_ == "logit" and flow.scale_ is not None
    rows = torch.as_tensor(X[:5])
    z, log_det = flow.forward(rows)
    for x, expected in zip(rows, log_det):
        jac = torch.autograd.functional.jacobian(lambda v: flow.forward(v[None])[0][0], x)
        sign, value = torch.linalg.slogdet(jac)
        assert sign > 0 and float(value) == pytest.approx(float(expected), abs=1e-10)
    z_np, log_det_np = flow.forward(X[:5])
    np.testing.assert_allclose(z_np, z.numpy(), rtol=1e-12)
    np.testing.assert_allclose(flow.log_prob(X[:5]), norm.logpdf(z_np).sum(1) + log_det_np, rtol=1e-12)


def test_binary_and_out_of_range_data_are_refused(rng):
    with pytest.raises(GenmemError, match="binary.*dequantize"):
        Flow().fit((rng.random((20, 4)) > 0.5).astype(float))
    with pytest.raises(GenmemError, match=r"input_map='logit' needs values in \[0, 1\]"):
        Flow(input_map="logit").fit(rng.normal(size=(20, 2)))
    with pytest.raises(GenmemError, match="'layers' parameter of Flow must be a positive int"):
        Flow(layers=0).fit(rng.random((20, 2)))


def test_kfold_with_a_flow_memorizes_a_planted_outlier(rng):
    X = np.concatenate([rng.normal(size=(59, 2)), [[3.0, -3.0]]])
    result = genmem.kfold(Flow(epochs=30, **SMALL), X, folds=5, seed=0)
    assert result.config["model"]["params"]["input_map"] == "identity"
    assert np.argmax(result.memorization) == 59
    assert result.scores["loglik_in"].mean() > result.scores["loglik_out"].mean()
    assert result.extras["train_loss"].shape == (1, 5, 30)


def test_cli_kfold_with_the_flow_dequantizes_digits(tmp_path):
    from cli_helpers import run

    out = tmp_path / "flow.h5"
    result = run(["kfold", "--model", "flow", "--folds", 3, "--limit", 120, "--epochs", 2, "--layers", 2,
                  "--hidden", "16", "-q", "--out", out])
    assert result.exit_code == 0, result.output
    saved = genmem.read_result(out)
    assert saved.config["data"]["dequantize"] is True
    assert saved.config["model"]["params"]["layers"] == 2 and saved.config["model"]["params"]["hidden"] == [16]
    assert "model flow" in result.output


@pytest.mark.gpu
def test_cuda_matches_cpu(rng):
    X = rng.uniform(0.05, 0.95, size=(90, 3))
    masks = np.vstack([np.arange(90) % 3 != k for k in range(3)])
    runs = {device: Flow(epochs=5, device=device, **SMALL).fit_units(X, masks, [1, 2, 3])["loglik"]
            for device in ("cpu", "cuda")}
    np.testing.assert_allclose(runs["cuda"], runs["cpu"], rtol=1e-8)


def test_a_diverging_unit_is_named():
    from genmem.models.base import check_finite_loss

    check_finite_loss(np.array([1.0, -2.0]), ["unit a", "unit b"], 3, 0.1)
    with pytest.raises(GenmemError, match=r"non-finite log-likelihood for unit b at epoch 3 \(1 of 2 units.*lr \(now 0.1\)"):
        check_finite_loss(np.array([1.0, np.nan]), ["unit a", "unit b"], 3, 0.1, "log-likelihood")
