"""Three views on planted examples: which memorization view finds which kind of planted training row.

No published tool puts these side by side. The training set is an MNIST subset plus planted rows whose
status is known:

* ``ood``: Fashion-MNIST images, out-of-distribution singletons (a view of memorization should flag them);
* ``duplicate``: exact copies of training images (the original stays in the set, so leaving one copy out
  changes little: leave-out memorization should be about 0, while copy detectors flag them);
* ``near_duplicate``: copies with small pixel noise (N(0, 25.5^2) grey levels of 255, clipped).

Views, each a score per training row:

* ``m_vae``: leave-out memorization of the ``vdb-bmnist`` VAE by ``genmem.kfold`` (K folds x R repeats);
* ``m_kde``: the exact leave-one-out memorization of a Gaussian KDE (bandwidth by leave-one-out
  likelihood) on the same images;
* ``tracin_raw``: TracIn self-influence sum_c eta_c |grad l(x; theta_c)|^2 (l = -ELBO, one eps draw) over
  the checkpoints of one VAE trained on all rows (``genmem.influence.vae_tracin``);
* ``tracin_unbiased``: sum_c eta_c grad l(x; eps0) . grad l(x; eps1) over two independent eps draws
  (``TracIn.self_influence(X, unbiased=True)``: the raw value without the noise variance);
* ``tracin_cos``: gradient-normalised TracIn self-influence sum_c eta_c cos(grad l(x; eps0), grad l(x; eps1))
  (``vae_tracin(..., normalize="cosine")``); all three TracIn views are computed here in one pass
  from ``TracIn.gradients`` and ``TracIn.noise`` (public), with the draws ``self_influence`` uses;
* ``nn_distance``: Euclidean distance of each (binarized) row to its nearest other training row;
* ``copies``: C_T-style copying by the VAE's samples: how many of its samples have the row as their
  nearest training neighbour at a distance below the 5% quantile (``COPY_QUANTILE``) of the held-out (MNIST test) rows'
  nearest-training distances.

Reported: the ROC-AUC of every view for every planted kind against the ordinary rows (a score high for
planted rows gives AUC near 1, low gives near 0, 0.5 is blind; originals of planted copies are left
out), and the pairwise Spearman correlations of the views on the ordinary rows.

    python experiments/planted_three_views.py --scale cpu   # -> results/planted_three_views.json, .png
    python experiments/planted_three_views.py --scale full  # prints the expected time; --run runs it
"""
import time
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

import genmem
from genmem.data import prepare
from genmem.influence import vae_tracin
from genmem.memorization import estimate
from genmem.models import KDE, VAE, kde_loo_memorization
from genmem.models.vae import PRESETS
from genmem.neighbours import ExactSearch

from reproduce_common import (bench, full_scale_notice, image_grid, load, output_stem, parser, savefig, settings,
                              spearman, start, subset, vae_samples, vae_seconds, write_record)

PRESET = PRESETS["vdb-bmnist"]
SETTINGS = {
    "cpu": {"n_base": 4000, "n_planted": 40, "folds": 10, "repeats": 2, "epochs": 30, "num_samples": 64,
            "checkpoints": 5, "n_samples": 5000, "n_heldout": 2000},
    "full": {"n_base": 60000, "n_planted": 300, "folds": 10, "repeats": 10, "epochs": 100, "num_samples": 256,
             "checkpoints": 10, "n_samples": 10000, "n_heldout": 10000},
}
KINDS = {"ordinary": 0, "ood": 1, "duplicate": 2, "near_duplicate": 3}
ORIGINAL = -1  # an ordinary row that has a planted copy: neither positive nor negative
NOISE_LEVELS = 25.5  # near-duplicate noise, in grey levels of 255
COPY_QUANTILE = 0.25


def planted_dataset(args, s):
    """MNIST subset + planted rows: (Dataset, kind [N], source row of each copy or -1)."""
    base = subset(load("mnist", args.data_dir), s["n_base"], args.seed)
    fashion = subset(load("fashion-mnist", args.fashion_dir), s["n_planted"], args.seed)
    rng = np.random.default_rng([args.seed, 1])
    dup_src, near_src = np.split(rng.choice(s["n_base"], 2 * s["n_planted"], replace=False), 2)
    near = base.x[near_src].astype(np.float64) + rng.normal(0.0, NOISE_LEVELS, base.x[near_src].shape)
    x = np.concatenate([base.x, fashion.x, base.x[dup_src], np.clip(np.rint(near), 0, 255).astype(np.uint8)])
    kind = np.repeat([0, 1, 2, 3], [s["n_base"]] + [s["n_planted"]] * 3)
    kind[np.concatenate([dup_src, near_src])] = ORIGINAL
    source = np.full(len(x), -1)
    source[kind == 2], source[kind == 3] = dup_src, near_src
    labels = np.concatenate([base.labels, np.full(s["n_planted"], -1), base.labels[dup_src], base.labels[near_src]])
    data = replace(base, x=x, labels=labels, index=np.arange(len(x)), name="mnist+planted")
    return data, kind, source


def tracin_views(path, X, seed):
    """TracIn self-influence of every row: raw (|g|^2, one eps draw), unbiased (g0 . g1, two draws) and
    gradient-normalised (cosine of the two draws' gradients)."""
    tr = vae_tracin(path, seed=seed)
    X = torch.as_tensor(X, dtype=tr.dtype)
    eps0, eps1 = tr.noise(len(X), 0), tr.noise(len(X), 1)  # stream 0 is the one TracIn.self_influence uses
    raw, cos, unbiased = (np.zeros(len(X)) for _ in range(3))
    with torch.no_grad():
        for ck in tr.checkpoints:
            for start_row in range(0, len(X), tr.chunk_size):
                sl = slice(start_row, start_row + tr.chunk_size)
                g0 = tr.gradients(ck.params, X[sl], eps0[sl])
                g1 = tr.gradients(ck.params, X[sl], eps1[sl])
                flat0 = torch.cat([g.reshape(len(g), -1) for g in g0.values()], 1).double()
                flat1 = torch.cat([g.reshape(len(g), -1) for g in g1.values()], 1).double()
                dot, n0, n1 = (flat0 * flat1).sum(1), flat0.norm(dim=1), flat1.norm(dim=1)
                raw[sl] += ck.lr * (n0 ** 2).cpu().numpy()
                unbiased[sl] += ck.lr * dot.cpu().numpy()
                cos[sl] += ck.lr * (dot / (n0 * n1).clamp_min(1e-30)).cpu().numpy()
    return ({"tracin_raw": raw, "tracin_unbiased": unbiased, "tracin_cos": cos},
            {"n_checkpoints": len(tr.checkpoints), "checkpoint_labels": [ck.label for ck in tr.checkpoints]})


def copy_counts(binary, samples, heldout):
    """Per training row: samples whose nearest training row it is, closer than the held-out rows' COPY_QUANTILE."""
    search = ExactSearch(binary, metric="euclidean", device="cpu")
    threshold = np.quantile(search.search(heldout, 1)[0][:, 0], COPY_QUANTILE)
    dist, idx = search.search(samples, 1)
    close = dist[:, 0] < threshold
    return np.bincount(idx[close, 0], minlength=len(binary)).astype(np.float64), float(threshold), float(close.mean())


def auc_table(views, kind):
    """ROC-AUC of every view for every planted kind against the ordinary rows."""
    table = {}
    for name, score in views.items():
        table[name] = {}
        for k in ("ood", "duplicate", "near_duplicate"):
            rows = (kind == KINDS[k]) | (kind == 0)
            table[name][k] = float(roc_auc_score(kind[rows] == KINDS[k], score[rows]))
    return table


def plot(path, aucs, rho, views, kind, images):
    names = list(views)
    kinds = ["ood", "duplicate", "near_duplicate"]
    fig = plt.figure(figsize=(16, 7), layout="constrained")
    grid = fig.add_gridspec(2, 3, height_ratios=[1, 0.3])
    ax = fig.add_subplot(grid[0, 0])
    a = np.array([[aucs[n][k] for k in kinds] for n in names])
    ax.imshow(a, cmap="RdBu_r", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(a):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=9)
    ax.set(xticks=range(3), xticklabels=kinds, yticks=range(len(names)), yticklabels=names,
           title="ROC-AUC vs ordinary rows (1: high score, 0: low)")
    ax.tick_params(axis="x", rotation=30)
    ax = fig.add_subplot(grid[0, 1])
    r = np.array([[rho[a_][b]["rho"] for b in names] for a_ in names])
    ax.imshow(r, cmap="RdBu_r", vmin=-1, vmax=1)
    for (i, j), v in np.ndenumerate(r):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set(xticks=range(len(names)), xticklabels=names, yticks=range(len(names)), yticklabels=names,
           title="Spearman of the views, ordinary rows")
    ax.tick_params(axis="x", rotation=45)
    ax = fig.add_subplot(grid[0, 2])
    for j, k in enumerate(["ordinary"] + kinds):
        rows = kind == KINDS[k]
        pct = {n: (rankdata(v) / len(v))[rows] for n, v in views.items()}
        for i, n in enumerate(names):
            y = i + 0.18 * (j - 1.5) + np.random.default_rng(j).uniform(-0.05, 0.05, rows.sum())
            ax.scatter(pct[n], y, s=2 if k == "ordinary" else 6, alpha=0.2 if k == "ordinary" else 0.8,
                       label=k if i == 0 else None, c=f"C{j}")
    ax.set(yticks=range(len(names)), yticklabels=names, xlabel="percentile of the view's score",
           title="where the planted rows rank")
    ax.legend(fontsize=8, markerscale=3, loc="lower left")
    for j, k in enumerate(kinds):
        order = np.flatnonzero(kind == KINDS[k])
        image_grid(fig.add_subplot(grid[1, j]), images[order[:20]], 10, f"planted: {k}")
    savefig(fig, path)


def main():
    p = parser(__doc__)
    p.add_argument("--fashion-dir", type=str, default=None,
                   help="folder with the Fashion-MNIST IDX files (default: apt-get install dataset-fashion-mnist)")
    args = p.parse_args()
    s = settings(args, SETTINGS)
    n = s["n_base"] + 3 * s["n_planted"]
    vae_s, source = vae_seconds(n, s["folds"], s["repeats"], s["epochs"], s["num_samples"])
    tracin = bench("bench_tracin.json")
    tracin_s = n * 2 * s["checkpoints"] / (tracin["genmem"]["examples_per_second"] * tracin["settings"]["checkpoints"])
    full_scale_notice(args, [
        f"VAE K-fold on {n} rows, K={s['folds']} x R={s['repeats']}, {s['epochs']} epochs, IS-{s['num_samples']}: "
        f"{vae_s / 3600:.1f} h from {source}",
        f"TracIn over {s['checkpoints']} checkpoints, two eps draws: {tracin_s / 3600:.1f} h from "
        "results/bench_tracin.json (CPU, 1 thread)"])
    t0 = start(args)
    dataset, kind, source_row = planted_dataset(args, s)
    data = prepare(dataset, **PRESET["prepare"])
    X, images = data.X, data.images
    binary = (images > 0.5).reshape(len(X), -1).astype(np.float64)
    timing, extra = {}, {}

    tic = time.perf_counter()
    model = VAE(**{**PRESET["model"], "epochs": s["epochs"], "num_samples": s["num_samples"], "device": args.device})
    run = genmem.kfold(model, X, folds=s["folds"], repeats=s["repeats"], seed=args.seed, store_data=False,
                       out=args.work_dir / f"planted_vae_n{n}_e{s['epochs']}_r{s['repeats']}_seed{args.seed}.h5",
                       progress=True)
    timing["vae_kfold"] = time.perf_counter() - tic
    tic = time.perf_counter()
    full = model.clone(checkpoints=s["checkpoints"])
    folder = args.work_dir / f"planted_full_n{n}_e{s['epochs']}_seed{args.seed}"
    full.fit_units(X, np.ones((1, len(X)), dtype=bool), [args.seed], artifact_dir=folder)
    path = folder / "unit_r0_k0.pt"
    timing["vae_full_model"] = time.perf_counter() - tic
    tic = time.perf_counter()
    tracin_scores, extra["tracin"] = tracin_views(path, X, args.seed)
    timing["tracin"] = time.perf_counter() - tic

    tic = time.perf_counter()
    h = KDE("cv", device=args.device).resolve(X).bandwidth
    nn = ExactSearch(binary, metric="euclidean", device="cpu").search(binary, 1, exclude_self=True)[0][:, 0]
    heldout = prepare(subset(load("mnist", args.data_dir, "test"), s["n_heldout"], args.seed), pad_to=32).images
    samples = vae_samples(VAE.from_checkpoint(path), s["n_samples"], args.seed)
    copies, threshold, share_close = copy_counts(binary, samples, (heldout > 0.5).reshape(len(heldout), -1))
    timing["kde_and_neighbours"] = time.perf_counter() - tic

    views = {"m_vae": run.scores["memorization"], "m_kde": kde_loo_memorization(X, h)["memorization"],
             **tracin_scores, "nn_distance": nn, "copies": copies}
    aucs = auc_table(views, kind)
    ordinary = kind == 0
    rho = {a: {b: spearman(views[a][ordinary], views[b][ordinary]) for b in views} for a in views}
    dup = np.flatnonzero(kind == KINDS["duplicate"])
    same_fold = run.assignment[:, dup] == run.assignment[:, source_row[dup]]  # [R, n_dup]
    m_by_repeat = [estimate(run.loglik[r:r + 1], run.assignment[r:r + 1])[0]
                   for r in range(s["repeats"])]
    dup_m = np.array([m_by_repeat[r][dup] for r in range(s["repeats"])])
    findings = {
        "auc": aucs, "spearman_ordinary": {a: {b: v["rho"] for b, v in row.items()} for a, row in rho.items()},
        "median_by_kind": {v: {k: float(np.median(views[v][kind == KINDS[k]])) for k in KINDS} for v in views},
        "duplicates": {"share_pairs_in_same_fold": float(same_fold.mean()),
                       "mean_m_vae_pair_in_same_fold": float(dup_m[same_fold].mean()) if same_fold.any() else None,
                       "mean_m_vae_pair_in_other_folds": float(dup_m[~same_fold].mean()),
                       "note": "per repeat: a copy whose original sits in the same fold is held out together "
                               "with it, so both look like singletons to that repeat's out-model"},
        "kde_bandwidth": h, "copy_threshold": threshold, "share_samples_closer_than_threshold": share_close,
        **extra}
    stem = output_stem(args, "planted_three_views")
    plot(stem.with_suffix(".png"), aucs, rho, views, kind, images)
    write_record(stem.with_suffix(".json"), {"findings": findings, "timing_seconds": timing}, args, t0, {
        **s, "vae": model.get_params(), "preset": "vdb-bmnist", "near_duplicate_noise_levels": NOISE_LEVELS,
        "copy_quantile": COPY_QUANTILE, "planted_rows": "seeded: Fashion-MNIST subset (seed), copy sources "
        "default_rng([seed, 1])", "kde": "exact leave-one-out, bandwidth by LOO likelihood (KDE('cv'))",
        "nn_and_copies": "Euclidean on binarized 32x32 images; VAE samples: decoder means thresholded at 0.5",
        "tracin": "vae_tracin(unit file, seed), one draw per example per stream; eta_c = Adam lr"})
    for name, row in aucs.items():
        print(f"{name:12s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
