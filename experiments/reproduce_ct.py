"""Meehan, Chaudhuri & Dasgupta (AISTATS 2020): the data-copying test C_T of a Gaussian KDE generator.

What it reproduces: the paper's sweep of a KDE generator's bandwidth sigma, where samples are training
points plus N(0, sigma^2 I) noise. Small sigma copies the training set (C_T << 0), large sigma
underfits (C_T >> 0), and near the likelihood-optimal sigma C_T is about 0.
What it measures: ``genmem.neighbours.data_copying_test`` (C_T, Euclidean as published, k-means cells)
across sigma = 1e-3 ... 10, with several draws of the generated set per sigma:

* two moons (scikit-learn ``make_moons``, noise 0.2): 2,000 training, 1,000 test, 1,000 generated
  points, 5 cells; the likelihood-optimal sigma is the one that maximises the test log-likelihood of
  the KDE (``genmem.models.KDE``), and the sigma where C_T crosses 0 is interpolated;
* MNIST: the KDE generator in pixel space, C_T in a 64-d embedding with 50 cells, for two embeddings
  (PCA-64 fitted on the training images, and 4x4-averaged pixels of the 32x32-padded images), since
  the curve depends on the embedding (the paper used a learned one); the likelihood-optimal sigma is
  the KDE's leave-one-out choice on the training images.

    python experiments/reproduce_ct.py --scale cpu          # -> results/reproduce_ct.json, .png
    python experiments/reproduce_ct.py --scale full         # prints the expected time; --run runs it
"""
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons

from genmem.data import prepare
from genmem.models import KDE
from genmem.neighbours import PCAEmbedder, data_copying_test

from reproduce_common import (bench, full_scale_notice, load, output_stem, parser, savefig, settings, start, subset,
                              write_record)

SETTINGS = {
    "cpu": {"moons_train": 2000, "moons_test": 1000, "moons_gen": 1000, "moons_cells": 5, "moons_sigmas": 25,
            "mnist_train": 20000, "mnist_test": 5000, "mnist_gen": 5000, "mnist_cells": 50, "mnist_sigmas": 13,
            "draws": 3},
    "full": {"moons_train": 2000, "moons_test": 1000, "moons_gen": 1000, "moons_cells": 5, "moons_sigmas": 41,
             "mnist_train": 60000, "mnist_test": 10000, "mnist_gen": 10000, "mnist_cells": 50, "mnist_sigmas": 25,
             "draws": 5},
}
SIGMA_RANGE = (-3.0, 1.0)  # log10 of the smallest and largest sigma
MOONS_NOISE = 0.2


def kde_samples(train, n, sigma, rng):
    """``n`` draws of the Gaussian KDE generator: random training points plus N(0, sigma^2 I)."""
    return train[rng.integers(len(train), size=n)] + sigma * rng.standard_normal((n, train.shape[1]))


def sweep(train, test, n_gen, sigmas, draws, n_cells, embed, seed):
    """C_T [len(sigmas), draws] of the KDE generator, samples embedded by ``embed`` (train/test too)."""
    f_train, f_test = embed(train), embed(test)
    out = np.empty((len(sigmas), draws))
    for i, sigma in enumerate(sigmas):
        for d in range(draws):
            gen = kde_samples(train, n_gen, sigma, np.random.default_rng([seed, i, d]))
            out[i, d] = data_copying_test(f_train, f_test, embed(gen), n_cells=n_cells, rng=seed,
                                          metric="euclidean", device="cpu").c_t
    return out


def zero_crossing(sigmas, c_t):
    """The sigma where the mean C_T first crosses 0 going up (log-linear interpolation), or None."""
    mean = c_t.mean(1)
    for i in range(len(sigmas) - 1):
        if mean[i] < 0 <= mean[i + 1]:
            t = -mean[i] / (mean[i + 1] - mean[i])
            return float(10 ** (np.log10(sigmas[i]) + t * np.log10(sigmas[i + 1] / sigmas[i])))
    return None


def summary(sigmas, c_t, sigma_opt):
    """The findings of one curve: C_T at the ends and at the likelihood-optimal sigma (interpolated in log sigma
    between grid points), the zero crossing."""
    cross = zero_crossing(sigmas, c_t)
    at_opt = np.interp(np.log(sigma_opt), np.log(sigmas), c_t.mean(1))
    return {"sigmas": sigmas, "c_t_mean": c_t.mean(1), "c_t_std": c_t.std(1, ddof=1), "sigma_opt": sigma_opt,
            "c_t_smallest_sigma": float(c_t[0].mean()), "c_t_largest_sigma": float(c_t[-1].mean()),
            "c_t_at_sigma_opt": float(at_opt), "sigma_zero_crossing": cross,
            "zero_crossing_over_opt": None if cross is None else cross / sigma_opt,
            "monotone_share": float(np.mean(np.diff(c_t.mean(1)) >= 0))}


def pooled(images):
    """4x4-averaged pixels of 32x32 images: a 64-d embedding."""
    x = images.reshape(len(images), 8, 4, 8, 4)
    return x.mean((2, 4)).reshape(len(images), 64)


def main():
    args = parser(__doc__).parse_args()
    s = settings(args, SETTINGS)
    ct = bench("bench_neighbours.json")["c_t"]
    calls = 2 * s["mnist_sigmas"] * s["draws"]
    per_call = ct["genmem_s"] * s["mnist_train"] / bench("bench_neighbours.json")["sizes"]["train"]
    full_scale_notice(args, [
        f"MNIST: {calls} C_T calls ({s['mnist_train']} train, 50 cells) at about {per_call:.1f} s each (from "
        f"results/bench_neighbours.json, linear in the training set): {calls * per_call / 60:.0f} min, plus the KDE's "
        "leave-one-out bandwidth (quadratic in N, a few minutes); the moons take seconds"])
    t0 = start(args)
    record, timing = {"findings": {}}, {}
    mnist_train = prepare(subset(load("mnist", args.data_dir), s["mnist_train"], args.seed), pad_to=32)
    mnist_test = prepare(subset(load("mnist", args.data_dir, "test"), s["mnist_test"], args.seed), pad_to=32)

    tic = time.perf_counter()
    train, _ = make_moons(s["moons_train"], noise=MOONS_NOISE, random_state=args.seed)
    test, _ = make_moons(s["moons_test"], noise=MOONS_NOISE, random_state=args.seed + 1)
    fine = np.logspace(*SIGMA_RANGE, 161)
    test_ll = np.array([KDE(h).fit(train).log_prob(test).mean() for h in fine])
    sigmas = np.logspace(*SIGMA_RANGE, s["moons_sigmas"])
    moons = sweep(train, test, s["moons_gen"], sigmas, s["draws"], s["moons_cells"], lambda x: x, args.seed)
    record["findings"]["moons"] = summary(sigmas, moons, float(fine[np.argmax(test_ll)]))
    record["findings"]["moons"]["sigma_loo_cv"] = KDE("cv").resolve(train).bandwidth
    timing["moons"] = time.perf_counter() - tic

    tic = time.perf_counter()
    X, T = mnist_train.X, mnist_test.X
    best, grid, loo_ll = KDE().cv_bandwidth(X, grid=np.logspace(-2, 0, 41))
    pca = PCAEmbedder.fit(X, 64, seed=args.seed)
    embeddings = {"pca64": pca.embed, "pool4x4": lambda x: pooled(x.reshape(-1, 32, 32))}
    sigmas_mnist = np.logspace(*SIGMA_RANGE, s["mnist_sigmas"])
    curves = {}
    for name, embed in embeddings.items():
        curves[name] = sweep(X, T, s["mnist_gen"], sigmas_mnist, s["draws"], s["mnist_cells"], embed, args.seed)
        record["findings"][f"mnist_{name}"] = summary(sigmas_mnist, curves[name], best)
    record["findings"]["mnist_pca64"]["pca_explained_variance_ratio"] = pca.description["explained_variance_ratio"]
    record["findings"]["mnist_kde_loo"] = {"grid": grid, "mean_loo_loglik": loo_ll, "sigma_opt": best}
    timing["mnist"] = time.perf_counter() - tic
    record["timing_seconds"] = timing

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    for ax, (title, sig, curves_here, opt) in zip(axes[:2], (
            ("two moons, 5 cells", sigmas, {"2-d": moons}, record["findings"]["moons"]["sigma_opt"]),
            ("MNIST, 50 cells, KDE in pixel space", sigmas_mnist, curves, best))):
        for label, c in curves_here.items():
            ax.errorbar(sig, c.mean(1), yerr=c.std(1, ddof=1), fmt="o-", ms=3, label=label)
        ax.axhline(0, color="gray", lw=0.8)
        ax.axvline(opt, color="k", ls="--", label="likelihood-optimal sigma")
        ax.set(xscale="log", xlabel="KDE generator sigma", ylabel="C_T", title=title)
        ax.set_yscale("symlog", linthresh=1)
        ax.legend(fontsize=8)
    rng = np.random.default_rng(args.seed)
    axes[2].scatter(*train.T, s=2, c="k", label="train")
    for sigma, color in ((1e-3, "tab:red"), (record["findings"]["moons"]["sigma_opt"], "tab:green"), (1.0, "tab:blue")):
        axes[2].scatter(*kde_samples(train, 300, sigma, rng).T, s=3, c=color, label=f"sigma={sigma:.3g}")
    axes[2].set(title="moons: KDE samples", xlim=(-2.5, 3.5), ylim=(-2, 2.5))
    axes[2].legend(fontsize=7, markerscale=3)
    stem = output_stem(args, "reproduce_ct")
    savefig(fig, stem.with_suffix(".png"))
    write_record(stem.with_suffix(".json"), record, args, t0, {
        **s, "sigma_range_log10": SIGMA_RANGE, "moons_noise": MOONS_NOISE, "metric": "euclidean",
        "kmeans_seed": args.seed, "generated_draws": "numpy default_rng([seed, sigma index, draw])",
        "mnist_data": "MNIST train/test seeded subsets, padded to 32x32, pixels in [0, 1]",
        "moons_sigma_opt": "argmax of the KDE's mean test log-likelihood over 161 log-spaced sigmas",
        "mnist_sigma_opt": "argmax of the KDE's mean leave-one-out log-likelihood on the training images "
                           "over 41 log-spaced sigmas in [0.01, 1]"})
    for name, f in record["findings"].items():
        if "c_t_mean" in f:
            print(f"{name}: C_T {f['c_t_smallest_sigma']:.1f} at sigma 1e-3, {f['c_t_at_sigma_opt']:.2f} at "
                  f"sigma_opt {f['sigma_opt']:.3g}, {f['c_t_largest_sigma']:.1f} at sigma 10; zero crossing "
                  f"{f['sigma_zero_crossing']}")


if __name__ == "__main__":
    main()
