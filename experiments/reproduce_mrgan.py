"""Bai et al. (2022): memorization rejection (MR) in a DCGAN on MNIST, swept over the threshold tau.

What it reproduces: the paper's tau sweep (its Figures 5-6 on CIFAR-10): rejecting generated samples
whose cosine nearest-neighbour distance to the training set is below tau from the generator update
makes the generator copy less (C_T against held-out data rises with tau), without hurting sample
quality up to the guideline tau = the training set's mean leave-one-out NN distance (paper §5.7),
beyond which quality worsens; the NN-distance histogram of the samples shifts right.
What it measures, with ``genmem.gan.train_gan`` (built-in DCGAN, resample mode, non-saturating loss,
Adam with betas (0.5, 0.999), batch 64) and ``genmem.gan.evaluate_gan`` (samples of the unrejected
generator against MNIST test images, in the bank's feature space: pixels, cosine): C_T, the Fréchet
distance FD_f, the NN-distance histograms and the rejection rate, for tau in {0, 0.5, 1, 1.5, 2} x the
bank's mean NN distance and tau = quantiles of the test->train NN distances, over several seeds; the
training-time overhead of rejection (wall time of each run over the same seed's run without MR).
The quality measure is FD_f in pixel space, not the paper's Inception FID, and C_T uses the same
feature space as the rejection (the paper's §5.5 check with other feature maps is not done here).
``--scale cpu`` trains a narrow DCGAN (width 16) on only 100 training images at lr 1e-3 for 3,000 steps,
examining at most 3 generator batches per step (where all are rejected, the farthest rejected samples
fill the batch; their share is recorded) so that tau = 2x, which rejects most samples, fits the time:
with more images or the paper's lr 2e-4 a CPU-sized run ends far from the data (C_T >> 0, nothing to
reject: in a pilot with 2,000 images and 1,500 steps, no sample came closer than tau). ``--scale full``
uses all 60,000 images, width 64, lr 2e-4, 20,000 steps and 4 seeds.

    python experiments/reproduce_mrgan.py --scale cpu       # -> results/reproduce_mrgan.json, .png
    python experiments/reproduce_mrgan.py --scale full      # prints the expected time; --run runs it
"""
import matplotlib.pyplot as plt
import numpy as np

from genmem import GenmemError
from genmem.gan import evaluate_gan, load_gan_data, resolve_tau, train_gan
from genmem.neighbours import NeighbourBank

from reproduce_common import (bench, die, full_scale_notice, output_stem, parser, savefig, settings, spearman, start,
                              write_record)

SETTINGS = {
    "cpu": {"n_train": 100, "n_test": 2000, "steps": 3000, "width": 16, "lr": 1e-3, "max_tries": 3, "seeds": "0,1",
            "cells": 10, "taus": "0,0.5x,1x,1.5x,2x,q0.1"},
    "full": {"n_train": 60000, "n_test": 10000, "steps": 20000, "width": 64, "lr": 2e-4, "max_tries": 10,
             "seeds": "0,1,2,3", "cells": 50, "taus": "0,0.5x,1x,1.5x,2x,q0.1,q0.5"},
}
TRAIN = {"mode": "resample", "loss": "ns", "betas": (0.5, 0.999), "batch_size": 64, "n_dis": 1}


def thresholds(specs, bank, test_nn):
    """tau specs -> values: "Nx" of the bank's mean NN distance, "qP" the P-quantile of test->train distances."""
    out = []
    for spec in specs.split(","):
        if spec.startswith("q"):
            out.append((spec, float(np.quantile(test_nn, float(spec[1:])))))
        else:
            out.append((spec, resolve_tau(spec, bank)))
    return out


def main():
    args = parser(__doc__).parse_args()
    s = settings(args, SETTINGS)
    seeds = [int(x) for x in s["seeds"].split(",")]
    n_runs = len(s["taus"].split(",")) * len(seeds)
    gan = bench("bench_gan_mr.json")["results"]["mnist-dcgan-60000"]
    base_ms = gan["baseline_step_ms"] * (s["width"] / 64) ** 2
    mr_ratio = gan["variants"]["resample_half_rejected"]["ratio_to_baseline"]
    full_scale_notice(args, [
        f"{n_runs} GANs x {s['steps']} steps, bank of {s['n_train']}: {base_ms:.0f} ms per step without MR and up "
        f"to {mr_ratio:.1f}x that with half the samples rejected (results/bench_gan_mr.json, CPU, 1 thread): "
        f"{n_runs * s['steps'] * base_ms / 1000 / 3600:.1f}-{n_runs * s['steps'] * base_ms * mr_ratio / 1000 / 3600:.1f}"
        " h on this CPU; on a GPU unmeasured (the bench's --device cuda measures the step)"])
    t0 = start(args)
    try:
        data = load_gan_data("mnist", data_dir=args.data_dir, limit=s["n_train"])
    except GenmemError as err:
        die(f"cannot load MNIST from {args.data_dir}: {err}")
    test = data.test[np.random.default_rng(args.seed).permutation(len(data.test))[:s["n_test"]]]
    bank = NeighbourBank("pixels", data.train, metric="cosine", device=args.device, seed=seeds[0])
    test_nn = bank.query(test)[0][:, 0]
    taus = thresholds(s["taus"], bank, test_nn)

    runs, hists = [], {}
    for spec, tau in taus:
        for seed in seeds:
            run = train_gan(data.train, tau=tau if tau > 0 else None, bank=bank, seed=seed, device=args.device,
                            steps=s["steps"], width=s["width"], lr=s["lr"], max_tries=s["max_tries"], **TRAIN)
            ev = evaluate_gan(run.generator, bank, test, n_cells=s["cells"], seed=seed)
            rate = run.history.get("rejection_rate", np.zeros(1))
            runs.append({"tau_spec": spec, "tau": tau, "seed": seed, "c_t": ev.metrics["c_t"],
                         "fd_f": ev.metrics["fd_f"], "nn_generated_mean": ev.metrics["nn_generated_mean"],
                         "nn_generated_median": ev.metrics["nn_generated_median"],
                         "n_cells_kept": ev.metrics["n_cells_kept"], "rejection_rate_mean": float(rate.mean()),
                         "rejection_rate_last10pct": float(rate[-max(1, len(rate) // 10):].mean()),
                         "fallback_share": float(run.history.get("n_fallback", np.zeros(1)).sum()
                                                 / (s["steps"] * TRAIN["batch_size"])),
                         "train_seconds": run.seconds})
            hists.setdefault(spec, []).append(ev.nn_generated)
            print(f"tau {spec} ({tau:.4f}) seed {seed}: C_T {ev.metrics['c_t']:.2f}, FD_f {ev.metrics['fd_f']:.4f}, "
                  f"rejected {rate.mean():.2f}, {run.seconds:.0f} s", flush=True)
            fd_floor = ev.metrics["fd_f_test_train"]

    base = {r["seed"]: r["train_seconds"] for r in runs if r["tau"] == 0}
    for r in runs:
        r["overhead_vs_no_mr"] = r["train_seconds"] / base[r["seed"]]
    summary = []
    for spec, tau in taus:
        group = [r for r in runs if r["tau_spec"] == spec]
        row = {"tau_spec": spec, "tau": tau}
        for key in ("c_t", "fd_f", "nn_generated_mean", "rejection_rate_mean", "overhead_vs_no_mr"):
            values = np.array([r[key] for r in group])
            row[f"{key}_mean"], row[f"{key}_std"] = float(values.mean()), float(values.std(ddof=1))
        summary.append(row)
    by = {row["tau_spec"]: row for row in summary}

    def at(spec, key):
        return by[spec][f"{key}_mean"] if spec in by else None

    findings = {
        "tau_auto": bank.mean_nn_distance(), "test_nn_mean": float(test_nn.mean()), "fd_f_test_train": fd_floor,
        "spearman_tau_c_t": spearman([r["tau"] for r in runs], [r["c_t"] for r in runs]),
        "spearman_tau_fd_f": spearman([r["tau"] for r in runs], [r["fd_f"] for r in runs]),
        **{f"{key}_{name}": at(spec, key) for key in ("c_t", "fd_f", "nn_generated_mean", "overhead_vs_no_mr")
           for name, spec in (("no_mr", "0"), ("guideline", "1x"), ("2x", "2x"))},
        "overhead_max": max(row["overhead_vs_no_mr_mean"] for row in summary)}
    if at("1x", "fd_f") is not None and at("2x", "fd_f") is not None:
        findings["fd_f_guideline_over_no_mr"] = at("1x", "fd_f") / at("0", "fd_f")
        findings["fd_f_2x_over_no_mr"] = at("2x", "fd_f") / at("0", "fd_f")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    order = sorted(summary, key=lambda row: row["tau"])
    for ax, key, label in ((axes[0], "c_t", "C_T vs MNIST test (pixels, cosine)"),
                           (axes[1], "fd_f", "FD_f (pixel features)")):
        ax.scatter([r["tau"] for r in runs], [r[key] for r in runs], s=12, c="gray", label="runs")
        ax.errorbar([r["tau"] for r in order], [r[f"{key}_mean"] for r in order],
                    yerr=[r[f"{key}_std"] for r in order], fmt="o-", label="mean ± sd")
        ax.axvline(findings["tau_auto"], color="k", ls="--", label="guideline tau (mean NN distance)")
        ax.set(xlabel="tau", ylabel=key, title=label)
        ax.legend(fontsize=8)
    axes[1].axhline(fd_floor, color="gray", ls=":", label="test vs train")
    edges = np.histogram_bin_edges(np.concatenate([test_nn] + [np.concatenate(h) for h in hists.values()]), 40)
    axes[2].hist(test_nn, edges, histtype="step", color="k", density=True, label="MNIST test")
    for spec in [spec for spec in ("0", "1x", "2x") if spec in hists]:
        axes[2].hist(np.concatenate(hists[spec]), edges, histtype="step", density=True, label=f"samples, tau {spec}")
    axes[2].set(xlabel="cosine NN distance to the training set", ylabel="density", title="NN-distance histograms")
    axes[2].legend(fontsize=8)
    stem = output_stem(args, "reproduce_mrgan")
    savefig(fig, stem.with_suffix(".png"))
    write_record(stem.with_suffix(".json"), {"findings": findings, "summary": summary, "runs": runs,
                                             "taus": dict(taus), "data": data.info}, args, t0,
                 {**s, "train": TRAIN, "bank": bank.description, "arch": "dcgan",
                  "tau_zero": "trained without MemorizationRejection (the overhead baseline)",
                  "test_subset": f"seeded permutation (seed {args.seed}) of the MNIST test split"})
    print({k: v for k, v in findings.items() if not isinstance(v, dict)})


if __name__ == "__main__":
    main()
