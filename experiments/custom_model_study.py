"""Own data, five density models, planted outliers and duplicates: where do the planted rows rank?

The data are a researcher's own table: scikit-learn's breast-cancer measurements
(569 tumours × 30 features, shipped with scikit-learn, string labels
"malignant"/"benign"), z-scored, with rows planted at the end:

* 5 **outliers**: copies of random rows with 3 random features moved by +6
  standard deviations (a measurement gone wrong);
* 5 **duplicates**: exact second copies of 5 random rows (both copies are
  "planted duplicates": each is in the training set when the other is held out).

Every model is scored by ``genmem.kfold`` (K = 10 folds × R = 2 repeats, seed 0):
KDE (cross-validated bandwidth), GMM (4 full-covariance components), VAE
(Gaussian likelihood, small), Flow (RealNVP) and a wrapped scikit-learn
``BayesianGaussianMixture``, on two versions of the table: the 30 z-scored
features (collinear: radius, perimeter and area move together) and their
first 10 principal components. For each, the rank of every planted row by
memorization M (1 = most memorized of 579) is tabulated, with the number of
genmem's implausible-score warnings. Writes ``results/custom_model_study.json``
and ``results/custom_model_study.png``.

Run from the repository root (a few minutes on 2 CPU cores):

    python experiments/custom_model_study.py --threads 1
"""
import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.datasets import load_breast_cancer
from sklearn.mixture import BayesianGaussianMixture

import genmem
from genmem.data import prepare
from genmem.memorization import ScoreWarning
from genmem.models import GMM, KDE, VAE, Flow, SklearnDensity
from genmem.results import provenance

MODELS = {
    "KDE": lambda: KDE("cv"),
    "GMM": lambda: GMM(4, reg_covar=1e-3, n_init=2),
    "VAE": lambda: VAE(latent_dim=4, hidden=(64, 32), likelihood="gaussian", epochs=150, batch_size=64, lr=2e-3,
                       num_samples=128),
    "Flow": lambda: Flow(layers=6, hidden=(64, 64), epochs=40, batch_size=64, input_map="identity"),
    "BayesianGMM": lambda: SklearnDensity(BayesianGaussianMixture(n_components=8, max_iter=500)),
}


def own_data(seed):
    """The z-scored table with planted rows appended; returns (X, labels, outlier rows, duplicate rows)."""
    bunch = load_breast_cancer()
    X = (bunch.data - bunch.data.mean(0)) / bunch.data.std(0)
    labels = list(bunch.target_names[bunch.target])
    rng = np.random.default_rng(seed)
    n = len(X)
    sources = rng.choice(n, size=10, replace=False)
    outliers = X[sources[:5]].copy()
    for row in outliers:
        row[rng.choice(X.shape[1], size=3, replace=False)] += 6.0
    X = np.concatenate([X, outliers, X[sources[5:]]])
    labels += [labels[i] for i in sources]
    outlier_rows = list(range(n, n + 5))
    duplicate_rows = [int(i) for i in sources[5:]] + list(range(n + 5, n + 10))
    return X, labels, outlier_rows, duplicate_rows


def ranks(m):
    """Rank of every row by M, 1 = highest."""
    order = np.argsort(-m, kind="stable")
    out = np.empty(len(m), dtype=np.int64)
    out[order] = np.arange(1, len(m) + 1)
    return out


def plot(scores, outlier_rows, duplicate_rows, path):
    """One panel per (data version, model): M by rank, the planted rows marked."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    versions, models = list(scores), list(next(iter(scores.values())))
    fig, axes = plt.subplots(len(versions), len(models), figsize=(3.2 * len(models), 3.0 * len(versions)),
                             squeeze=False)
    for row, version in zip(axes, versions):
        for ax, name in zip(row, models):
            m = scores[version][name]
            r = ranks(m)
            ax.plot(np.arange(1, len(m) + 1), np.sort(m)[::-1], color="grey", lw=1)
            ax.scatter(r[outlier_rows], m[outlier_rows], color="crimson", s=22, label="planted outliers", zorder=3)
            ax.scatter(r[duplicate_rows], m[duplicate_rows], color="royalblue", s=18, marker="s",
                       label="planted duplicates", zorder=3)
            ax.set_yscale("symlog", linthresh=1.0)
            ax.set_title(f"{name} ({version})", fontsize=9)
            ax.set_xlabel("rank by M", fontsize=8)
        row[0].set_ylabel("memorization M (nats)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def score(make, data, args):
    """One model's run; returns (result, seconds, number of implausible-score warnings)."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ScoreWarning)
        result = genmem.kfold(make(), data.X, folds=args.folds, repeats=args.repeats, seed=args.seed,
                              labels=data.labels, label_names=data.label_names)
    flagged = [w for w in caught if issubclass(w.category, ScoreWarning)]
    for w in caught:
        if w not in flagged:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result, round(time.perf_counter() - start, 1), flagged


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pca", type=int, default=10, help="principal components of the second version")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is often fastest on a busy machine)")
    parser.add_argument("--out", default="results/custom_model_study.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    X, labels, outlier_rows, duplicate_rows = own_data(args.seed)
    versions = {"z-scored": None, f"pca{args.pca}": args.pca}
    table, scores = {}, {}
    for version, pca in versions.items():
        data = prepare(X, labels=labels, scale=False, pca=pca, seed=args.seed)
        table[version], scores[version] = {}, {}
        for name, make in MODELS.items():
            result, seconds, flagged = score(make, data, args)
            m = result.memorization
            r = ranks(m)
            scores[version][name] = m
            entry = {
                "outlier_ranks": r[outlier_rows].tolist(),
                "outliers_in_top_10": int((r[outlier_rows] <= 10).sum()),
                "duplicate_ranks": r[duplicate_rows].tolist(),
                "median_duplicate_rank": float(np.median(r[duplicate_rows])),
                "outlier_M": np.round(m[outlier_rows], 3).tolist(),
                "duplicate_M": np.round(m[duplicate_rows], 3).tolist(),
                "median_M": round(float(np.median(m)), 4),
                "max_M": round(float(m.max()), 3),
                "loglik_in_mean": round(float(result.scores["loglik_in"].mean()), 3),
                "loglik_out_mean": round(float(result.scores["loglik_out"].mean()), 3),
                "score_warnings": [str(w.message) for w in flagged],
                "seconds": seconds,
                "model": result.config["model"],
            }
            table[version][name] = entry
            print(f"{version:>9} {name:>11}: outlier ranks {entry['outlier_ranks']}, median duplicate rank "
                  f"{entry['median_duplicate_rank']:.0f}, median M {entry['median_M']:.3f}, max M {entry['max_M']:.4g}, "
                  f"log p in/out {entry['loglik_in_mean']:.2f}/{entry['loglik_out_mean']:.2f}, "
                  f"{len(flagged)} warning(s), {seconds} s", flush=True)
    spearman = {version: {f"{a} vs {b}": round(float(spearmanr(per[a], per[b])[0]), 4)
                          for i, a in enumerate(per) for b in list(per)[i + 1:]}
                for version, per in scores.items()}
    out = Path(args.out)
    record = {
        "description": __doc__.split("\n\n")[0],
        "data": {"source": "sklearn.datasets.load_breast_cancer, z-scored", "n": int(len(X)),
                 "features": int(X.shape[1]), "label_names": sorted(set(labels)), "outlier_rows": outlier_rows,
                 "duplicate_rows": duplicate_rows, "versions": {k: ("z-scored features" if v is None else
                                                                     f"first {v} principal components")
                                                                 for k, v in versions.items()},
                 "planting": "outliers: copies of 5 random rows with 3 random features +6 sd; duplicates: second "
                             "copies of 5 random rows (both copies listed)"},
        "settings": {"folds": args.folds, "repeats": args.repeats, "seed": args.seed, "threads": args.threads},
        "table": table, "spearman_M": spearman,
        "meta": {**provenance("cpu"), "command": " ".join(sys.argv)},
    }
    out.write_text(json.dumps(record, indent=1) + "\n")
    plot(scores, outlier_rows, duplicate_rows, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
