"""van den Burg & Williams (NeurIPS 2021) on BinarizedMNIST: the leave-out memorization score of a VAE.

What it reproduces: the paper's BinarizedMNIST study with genmem's ``vdb-bmnist`` preset (MNIST padded
to 32x32, dynamic binarization, Bernoulli MLP VAE 512-256, latent 16, Adam 1e-3, batch 64), scored by
``genmem.kfold`` with K folds x R repeats. What it measures, for the VAE and for a Gaussian KDE on the
same images (the sanity anchor, whose exact leave-one-out score is known in closed form):

(a) the distribution of M: quantiles, skewness, how far the 0.95/0.999 quantiles sit above the bulk
    (in MADs), right tail against left tail;
(b) the most and least memorized images (grid), and how atypical they are: the mean distance to their
    10 nearest training images;
(c) M against the held-out log-likelihood log p(x_i | D \\ x_i) (and the in-log-likelihood);
(d) the nearest-neighbour distance ratio of the paper's NN test (distance to the nearest held-out MNIST
    test image / distance to the nearest model sample, on images downscaled to half size as the
    reference script did), with each row's *own* nearest distance (the published script used the
    first row's of each batch): its Spearman correlation with M.
Stability: the Spearman correlation of the score vectors of two independent repeats (fold partitions
and seeds). ``--scale cpu`` uses an MNIST subset, fewer epochs and fewer importance samples than the
paper (see SETTINGS); ``--scale full`` is the paper's setting.

    python experiments/reproduce_vdb.py --scale cpu          # -> results/reproduce_vdb.json, *.png
    python experiments/reproduce_vdb.py --scale full         # prints the expected time; --run runs it
"""
import time

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import skew

import genmem
from genmem.data import prepare
from genmem.memorization import estimate
from genmem.models import KDE, VAE, kde_loo_memorization
from genmem.models.vae import PRESETS
from genmem.neighbours import ExactSearch, nn_ratio_test

from reproduce_common import (bench, full_scale_notice, image_grid, load, output_stem, parser, savefig, settings,
                              spearman, start, subset, vae_samples, vae_seconds, write_record)

PRESET = PRESETS["vdb-bmnist"]
SETTINGS = {
    "cpu": {"n": 6000, "folds": 10, "repeats": 2, "epochs": 30, "num_samples": 64, "n_heldout": 10000},
    "full": {"n": 60000, "folds": PRESET["folds"], "repeats": PRESET["repeats"], "epochs": PRESET["model"]["epochs"],
             "num_samples": PRESET["model"]["num_samples"], "n_heldout": 10000},
}
QUANTILES = (0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999)
KNN = 10
GRID = 30


def tail_stats(m):
    """(a): how heavy the right tail of the scores is."""
    q = dict(zip(QUANTILES, np.quantile(m, QUANTILES)))
    med = q[0.5]
    mad = float(np.median(np.abs(m - med)))
    return {"quantiles": {str(k): float(v) for k, v in q.items()}, "mean": float(m.mean()), "std": float(m.std()),
            "min": float(m.min()), "max": float(m.max()), "mad": mad, "skewness": float(skew(m)),
            "q95_above_median_in_mad": (q[0.95] - med) / mad, "q999_above_median_in_mad": (q[0.999] - med) / mad,
            "max_above_median_in_mad": (m.max() - med) / mad,
            "right_over_left_tail": (q[0.999] - med) / (med - q[0.001]),
            "share_above_median_plus_10mad": float(np.mean(m > med + 10 * mad)),
            "share_below_median_minus_10mad": float(np.mean(m < med - 10 * mad))}


def analyse(m, lin, lout, knn_dist, ratio):
    """(a)-(d) for one model's scores."""
    n = len(m)
    top, bottom = np.argsort(-m)[:max(1, n // 100)], np.argsort(m)[:max(1, n // 100)]
    low_out = lout <= np.quantile(lout, 0.1)
    low_in = lin <= np.quantile(lin, 0.1)
    return {
        "distribution": tail_stats(m),
        "atypical": {"knn": KNN, "mean_knn_distance_top1pct": float(knn_dist[top].mean()),
                     "mean_knn_distance_bottom1pct": float(knn_dist[bottom].mean()),
                     "mean_knn_distance_all": float(knn_dist.mean()),
                     "spearman_m_knn_distance": spearman(m, knn_dist)},
        "heldout": {"spearman_m_loglik_out": spearman(m, lout), "spearman_m_loglik_in": spearman(m, lin),
                    "share_top1pct_in_lowest_decile_loglik_out": float(low_out[top].mean()),
                    "share_top1pct_in_lowest_decile_loglik_in": float(low_in[top].mean()),
                    "median_percentile_loglik_in_of_top1pct": float(np.median(
                        (np.argsort(np.argsort(lin)) / (n - 1))[top]))},
        "nn_ratio": {"spearman_m_ratio": spearman(m, ratio), "mean_ratio_top1pct": float(ratio[top].mean()),
                     "mean_ratio_all": float(ratio.mean()), "share_ratio_above_1": float(np.mean(ratio > 1))},
        "top_index": top.tolist(), "bottom_index": bottom.tolist(),
    }


def half_size(images):
    """Images [n, 32, 32] averaged over 2x2 blocks ([n, 256]): the reference's NN test ran at half size."""
    n, h, w = images.shape
    return images.reshape(n, h // 2, 2, w // 2, 2).mean((2, 4)).reshape(n, -1)


def run_name(s, seed):
    """The K-fold VAE's HDF5 file name: one per setting, so an interrupted run resumes."""
    return f"vdb_vae_n{s['n']}_k{s['folds']}_r{s['repeats']}_e{s['epochs']}_s{s['num_samples']}_seed{seed}.h5"


def repeat_stability(result):
    """Spearman of the balanced scores of repeat 0 and repeat 1 computed alone."""
    per_repeat = [estimate(result.loglik[r:r + 1], result.assignment[r:r + 1])[0] for r in range(2)]
    return spearman(*per_repeat)


def plot_scores(path, views):
    """Distribution, M vs held-out log p, binned NN ratio vs M: one row per model."""
    fig, axes = plt.subplots(len(views), 3, figsize=(13, 3.6 * len(views)), layout="constrained")
    for row, (name, v) in zip(axes, views.items()):
        m = v["m"]
        row[0].hist(m, bins=120, color="tab:blue")
        row[0].set_yscale("log")
        for q, ls in ((0.95, "--"), (0.999, ":")):
            row[0].axvline(np.quantile(m, q), color="k", ls=ls, label=f"q{q}")
        row[0].set(xlabel="M (nats)", ylabel="examples", title=f"{name}: distribution of M")
        row[0].legend(fontsize=8)
        row[1].scatter(v["lout"], m, s=2, alpha=0.3)
        row[1].set(xlabel="held-out log p(x_i | D \\ x_i)", ylabel="M", title=f"{name}: M vs held-out log p")
        edges = np.quantile(m, np.linspace(0, 1, 21))
        bins = np.clip(np.digitize(m, edges[1:-1]), 0, 19)
        mids = [m[bins == b].mean() for b in range(20)]
        means = [v["ratio"][bins == b].mean() for b in range(20)]
        errs = [1.96 * v["ratio"][bins == b].std() / np.sqrt((bins == b).sum()) for b in range(20)]
        row[2].errorbar(mids, means, yerr=errs, fmt="o", ms=3)
        row[2].axhline(1.0, color="gray", ls="--")
        row[2].set(xlabel="M (20 quantile bins)", ylabel="mean NN distance ratio",
                   title=f"{name}: NN ratio vs M")
    savefig(fig, path)


def plot_grids(path, images, views):
    fig, axes = plt.subplots(len(views), 2, figsize=(12, 1.7 * len(views)), layout="constrained")
    for row, (name, v) in zip(axes, views.items()):
        order = np.argsort(-v["m"])
        image_grid(row[0], images[order[:GRID]], 15, f"{name}: {GRID} highest M")
        image_grid(row[1], images[order[::-1][:GRID]], 15, f"{name}: {GRID} lowest M")
    savefig(fig, path)


def main():
    args = parser(__doc__).parse_args()
    s = settings(args, SETTINGS)
    vae_s, source = vae_seconds(s["n"], s["folds"], s["repeats"], s["epochs"], s["num_samples"])
    kde = bench("bench_kde.json")["configs"][0]
    kde_s = kde["genmem"]["seconds"] * (s["n"] / kde["n"]) ** 2 * (s["repeats"] + 1)
    full_scale_notice(args, [
        f"VAE: {s['n']} images, K={s['folds']} x R={s['repeats']}, {s['epochs']} epochs, IS-{s['num_samples']}: "
        f"{vae_s / 3600:.1f} h from {source}",
        f"KDE: K-fold x R + closed-form LOO on {s['n']} x 1024: {kde_s / 60:.0f} min from results/bench_kde.json "
        "(CPU, quadratic in N)"])
    t0 = start(args)
    train = subset(load("mnist", args.data_dir), s["n"], args.seed)
    heldout = subset(load("mnist", args.data_dir, "test"), s["n_heldout"], args.seed)
    data = prepare(train, **PRESET["prepare"])
    X, images = data.X, data.images  # grey levels in [0, 1]; the VAE binarizes dynamically, scores X > 0.5
    binary = (images > 0.5).astype(np.float64)
    timing = {}

    tic = time.perf_counter()
    model = VAE(**{**PRESET["model"], "epochs": s["epochs"], "num_samples": s["num_samples"], "device": args.device})
    vae_run = genmem.kfold(model, X, folds=s["folds"], repeats=s["repeats"], seed=args.seed, labels=data.labels,
                           store_data=False, out=args.work_dir / run_name(s, args.seed), progress=True)
    timing["vae_kfold"] = time.perf_counter() - tic
    tic = time.perf_counter()
    full = model.clone().fit(X, rng=args.seed)  # one model on all N rows, for the NN test
    samples = vae_samples(full, len(heldout), args.seed)
    timing["vae_full_model"] = time.perf_counter() - tic

    tic = time.perf_counter()
    h = KDE("cv", device=args.device).resolve(X).bandwidth
    kde_run = genmem.kfold(KDE(h, device=args.device), X, folds=s["folds"], repeats=s["repeats"], seed=args.seed,
                           store_data=False)
    loo = kde_loo_memorization(X, h, device=args.device)
    rng = np.random.default_rng(args.seed)
    kde_samples = X[rng.integers(len(X), size=len(heldout))] + h * rng.standard_normal((len(heldout), X.shape[1]))
    timing["kde"] = time.perf_counter() - tic

    tic = time.perf_counter()
    knn_dist = ExactSearch(binary.reshape(len(X), -1), metric="euclidean", device=args.device).search(
        binary.reshape(len(X), -1), KNN, exclude_self=True)[0].mean(1)
    held = half_size((prepare(heldout, pad_to=32).images > 0.5).astype(np.float64))
    ratios = {"VAE": nn_ratio_test(half_size(binary), held, half_size(samples.reshape(-1, 32, 32)),
                                   device=args.device).ratio,
              "KDE": nn_ratio_test(half_size(images), half_size(prepare(heldout, pad_to=32).images),
                                   half_size(kde_samples.reshape(-1, 32, 32)), device=args.device).ratio}
    timing["nearest_neighbours"] = time.perf_counter() - tic

    runs = {"VAE": vae_run, "KDE": kde_run}
    views, record = {}, {"findings": {}}
    for name, run in runs.items():
        sc = run.scores
        found = analyse(sc["memorization"], sc["loglik_in"], sc["loglik_out"], knn_dist, ratios[name])
        found["stability_spearman_repeat0_vs_repeat1"] = repeat_stability(run)
        found["spearman_balanced_vs_reference_estimator"] = spearman(sc["memorization_balanced"],
                                                                     sc["memorization_reference"])
        found["mean_loglik_in"], found["mean_loglik_out"] = float(sc["loglik_in"].mean()), float(
            sc["loglik_out"].mean())
        record["findings"][name] = found
        views[name] = {"m": sc["memorization"], "lout": sc["loglik_out"], "ratio": ratios[name]}
    record["findings"]["KDE"]["bandwidth"] = h
    record["findings"]["KDE"]["spearman_kfold_vs_exact_loo"] = spearman(kde_run.scores["memorization"],
                                                                        loo["memorization"])
    record["findings"]["spearman_vae_vs_kde"] = spearman(vae_run.scores["memorization"],
                                                         kde_run.scores["memorization"])
    record["findings"]["VAE"]["median_ess"] = float(np.median(vae_run.extras["ess"]))
    record["findings"]["VAE"]["final_train_loss"] = float(np.mean(vae_run.extras["train_loss"][..., -1]))
    record["timing_seconds"] = timing
    record["data"] = {"train": f"MNIST train, seeded subset of {len(X)} (seed {args.seed})",
                      "heldout": f"MNIST test, {len(heldout)} images", "train_index": train.index.tolist()}
    stem = output_stem(args, "reproduce_vdb")
    plot_scores(stem.with_name(stem.name + "_scores.png"), views)
    plot_grids(stem.with_name(stem.name + "_grids.png"), images, views)
    write_record(stem.with_suffix(".json"), record, args, t0, {
        **s, "vae": model.get_params(), "preset": "vdb-bmnist", "kde_bandwidth": "cv (exact LOO likelihood)",
        "nn_test": "Euclidean on 2x2-averaged (16x16) images; VAE: binarized data (X > 0.5) vs decoder means of "
                   "z ~ N(0, I) thresholded at 0.5, of one VAE trained on all N; KDE: grey data vs x_j + h eps",
        "estimator": "balanced (genmem default); the reference estimator's Spearman with it is recorded"})
    for name in runs:
        f = record["findings"][name]
        print(f"{name}: q95 {f['distribution']['quantiles']['0.95']:.2f}, q999 "
              f"{f['distribution']['quantiles']['0.999']:.2f}, skew {f['distribution']['skewness']:.2f}, "
              f"stability rho {f['stability_spearman_repeat0_vs_repeat1']['rho']:.3f}, "
              f"rho(M, lout) {f['heldout']['spearman_m_loglik_out']['rho']:.3f}, "
              f"rho(M, NN ratio) {f['nn_ratio']['spearman_m_ratio']['rho']:.3f}")


if __name__ == "__main__":
    main()
