"""The data-copying test C_T against closed forms, the published recipe and the two-moons σ sweep; ``genmem ct``."""
import json

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import mannwhitneyu
from sklearn.cluster import KMeans
from sklearn.datasets import make_moons
from sklearn.neighbors import NearestNeighbors

from genmem import GenmemError
from genmem.neighbours import data_copying_test, mann_whitney_zu

from cli_helpers import run


def moons(n, seed):
    return make_moons(n_samples=n, noise=0.2, random_state=seed)[0]


@pytest.fixture(scope="module")
def moon_sets():
    return moons(2000, 0), moons(1000, 1)


def kde_samples(T, sigma, m, seed):
    """m samples of the Gaussian KDE of T with bandwidth sigma: a random training point plus N(0, σ² I)."""
    rng = np.random.default_rng(seed)
    return T[rng.integers(0, len(T), m)] + rng.normal(scale=sigma, size=(m, T.shape[1]))


def cells_of(T, P, Q, n_cells, seed):
    km = KMeans(n_clusters=n_cells, n_init=1, random_state=seed).fit(T)
    return km.predict(T), km.predict(P), km.predict(Q)


def published_c_t(T, P, Q, n_cells, seed, tau):
    """The published recipe: NearestNeighbors per cell, scipy's U of Q vs P, the published Z and weights."""
    lt, lp, lq = cells_of(T, P, Q, n_cells, seed)
    z, w, keep = [], [], []
    for c in range(n_cells):
        nn = NearestNeighbors(n_neighbors=1).fit(T[lt == c])
        dq = nn.kneighbors(Q[lq == c])[0][:, 0] if (lq == c).any() else None
        dp = nn.kneighbors(P[lp == c])[0][:, 0]
        n, m = len(dp), (lq == c).sum()
        u = mannwhitneyu(dq, dp).statistic if m else 0.0
        z.append((u - (n * m / 2 - 0.5)) / np.sqrt(n * m * (n + m + 1) / 12) if m else 0.0)
        w.append(n / len(P))
        keep.append(m / len(Q) > tau)
    z, w, keep = map(np.array, (z, w, keep))
    return w[keep] @ z[keep] / w[keep].sum()


def test_z_u_matches_scipy_u_and_brute_force_pairs(rng):
    ties = rng.integers(0, 5, 40) * 1.0, rng.integers(0, 5, 30) * 1.0
    for q, p in ((rng.normal(size=37), rng.normal(size=51)), ties):
        u, z = mann_whitney_zu(q, p)
        pairs = (q[:, None] > p[None, :]).sum() + 0.5 * (q[:, None] == p[None, :]).sum()
        assert u == pairs == mannwhitneyu(q, p).statistic
        n, m = len(p), len(q)
        assert z == pytest.approx((u + 0.5 - n * m / 2) / np.sqrt(n * m * (n + m + 1) / 12), rel=1e-14)


def test_exact_copies_give_the_closed_form(moon_sets):
    T, P = moon_sets
    rng = np.random.default_rng(3)
    Q = T[rng.choice(len(T), 1000, replace=False)]
    res = data_copying_test(T, P, Q, n_cells=5, rng=0)
    _, lp, lq = cells_of(T, P, Q, 5, 0)
    n = np.bincount(lp, minlength=5).astype(float)
    m = np.bincount(lq, minlength=5).astype(float)
    w = n / n.sum()
    keep = m / m.sum() > 20 / 1000
    # every L(Q) is 0 and every L(P) > 0, so U = 0 in every cell
    exact = (w[keep] * (0.5 - n * m / 2)[keep] / np.sqrt(n * m * (n + m + 1) / 12)[keep]).sum() / w[keep].sum()
    approx = -(w[keep] * np.sqrt(3 * n * m / (n + m + 1))[keep]).sum() / w[keep].sum()
    assert res.c_t == pytest.approx(exact, rel=1e-12)
    assert res.c_t == pytest.approx(approx, rel=0.01) and res.c_t < -10
    assert (res.cells["u"] == 0).all() and res.n_kept == keep.sum()


def test_fresh_samples_from_the_test_distribution_give_c_t_near_zero(moon_sets):
    T, P = moon_sets
    values = [data_copying_test(T, P, moons(1000, 100 + seed), n_cells=5, rng=seed).c_t for seed in range(5)]
    assert max(abs(v) for v in values) < 2, values


def test_agrees_with_the_published_recipe_including_filtered_cells(moon_sets):
    T, P = moon_sets
    Q = np.vstack([kde_samples(T, 0.05, 400, 7), [[2.0, 1.0]] * 3])
    for n_cells, tau in ((5, None), (12, 0.09)):
        res = data_copying_test(T, P, Q, n_cells=n_cells, min_frac=tau, rng=1)
        ref = published_c_t(T, P, Q, n_cells, 1, 20 / len(Q) if tau is None else tau)
        assert res.c_t == pytest.approx(ref, rel=1e-10)
    assert not res.cells["kept"].all() and np.isfinite(res.cells["z_u"]).all()


def test_cosine_metric_uses_normalised_features(moon_sets):
    T, P = moon_sets
    T, P = T + 3.0, P + 3.0
    Q = kde_samples(T, 0.05, 500, 2)
    normed = [a / np.linalg.norm(a, axis=1, keepdims=True) for a in (T, P, Q)]
    res = data_copying_test(T, P, Q, n_cells=4, rng=0, metric="cosine")
    # on unit vectors the Euclidean NN is the cosine NN and |u−v|²/2 = 1 − cos is monotone in it
    assert res.c_t == pytest.approx(published_c_t(*normed, 4, 0, 20 / 500), rel=1e-10)


def test_two_moons_kde_bandwidth_sweep_reproduces_the_published_trend(moon_sets):
    T, P = moon_sets
    V = moons(500, 2)
    grid = np.logspace(-2, 0, 13)  # the held-out log-likelihood peaks near 0.1
    d2 = ((V[:, None, :] - T[None, :, :]) ** 2).sum(-1)
    loglik = [(logsumexp(-d2 / (2 * s * s), axis=1) - np.log(len(T) * 2 * np.pi * s * s)).mean() for s in grid]
    sigma_opt = grid[np.argmax(loglik)]
    assert 0.01 < sigma_opt < 1
    sigmas = (1e-3, 1e-2, sigma_opt, 1.0, 10.0)
    sweep = {s: data_copying_test(T, P, kde_samples(T, s, 1000, 0), rng=0).c_t for s in sigmas}
    values = list(sweep.values())
    assert values[0] < -10 and values[1] < -5
    assert abs(sweep[sigma_opt]) < 2
    assert values[3] > 5 and values[4] > 10
    assert all(a < b for a, b in zip(values, values[1:]))


def test_bad_input_is_a_clear_error_and_no_nan(moon_sets, rng):
    T, P = moon_sets
    Q = kde_samples(T, 0.1, 300, 0)
    cases = [
        (lambda: data_copying_test(T, P[:, :1], Q), "test has 1 features but train has 2"),
        (lambda: data_copying_test(T, P, np.hstack([Q, Q])), "generated has 4 features"),
        (lambda: data_copying_test(T, P[P[:, 0] < -0.5], Q, n_cells=8), "hold no test points.*fewer cells"),
        (lambda: data_copying_test(np.repeat(T[:3], 10, axis=0), P, Q, n_cells=5), "no training points"),
        (lambda: data_copying_test(T, P, Q[:60], n_cells=5), "no cell holds more than.*fewer cells"),
        (lambda: data_copying_test(T, P, np.where(np.arange(2) == 0, np.nan, Q)), "NaN"),
        (lambda: data_copying_test(T, P, Q, min_frac=1.5), "min_frac"),
        (lambda: data_copying_test(T[:3], P, Q, n_cells=5), "at least 5 rows"),
        (lambda: data_copying_test(T, P, Q, n_cells=0), "n_cells"),
        (lambda: data_copying_test(T, P, Q, metric="l1"), "unknown metric"),
        (lambda: data_copying_test(T, P, Q, rng="x"), "rng"),
    ]
    for call, words in cases:
        with pytest.raises(GenmemError, match=words):
            call()
    # a cell without generated points is reported with U = Z = 0 and not kept; C_T stays finite
    far = Q[Q[:, 0] > 0.5]
    res = data_copying_test(T, P, far, n_cells=6, rng=rng)
    empty = res.cells["n_generated"] == 0
    assert empty.any() and not res.cells["kept"][empty].any() and (res.cells["z_u"][empty] == 0).all()
    assert np.isfinite(res.c_t) and json.dumps(res.to_dict())


def test_cli_ct_table_and_json(moon_sets, tmp_path):
    T, P = moon_sets
    np.savez(tmp_path / "moons.npz", x_train=T, x_test=P)
    np.save(tmp_path / "copies.npy", T[:1000])
    out = run(["ct", "--train", tmp_path / "moons.npz", "--test", tmp_path / "moons.npz",
               "--generated", tmp_path / "copies.npy"])
    assert out.exit_code == 0, out.output
    expected = data_copying_test(T, P, T[:1000], rng=0)
    assert f"C_T = {expected.c_t:.4f}" in out.stdout and len(out.stdout.strip().splitlines()) == 2 + 5
    np.save(tmp_path / "test.npy", P)
    out = run(["ct", "--train", tmp_path / "moons.npz", "--test", tmp_path / "test.npy",
               "--generated", tmp_path / "copies.npy", "--cells", 3, "--metric", "cosine", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["c_t"] == pytest.approx(data_copying_test(T, P, T[:1000], n_cells=3, metric="cosine").c_t)
    assert report["n_cells"] == 3 and len(report["cells"]) == 3 and report["n_test"] == 1000
    np.save(tmp_path / "few.npy", T[:30])
    out = run(["ct", "--train", tmp_path / "moons.npz", "--test", tmp_path / "test.npy",
               "--generated", tmp_path / "few.npy"])
    assert out.exit_code != 0 and isinstance(out.exception, SystemExit)
    lines = [line for line in out.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and "fewer cells" in lines[0]


def test_default_tau_c_needs_more_than_20_generated_samples(rng):
    with pytest.raises(GenmemError, match="more than 20"):
        data_copying_test(rng.normal(size=(50, 2)), rng.normal(size=(30, 2)), rng.normal(size=(20, 2)), n_cells=2)
