"""τ sweep of memorization rejection on digits: C_T and FD_f of one GAN per (τ, seed) — paper Figure 6.

Writes results/gan_tau_sweep.json (per-run rows, per-τ means and standard deviations,
Spearman trend of τ vs C_T and FD_f, machine, versions, command line) and
results/gan_tau_sweep.png. Equivalent to

    genmem gan --dataset digits --limit 300 --lr 1e-3 --steps 5000 \
        --sweep-tau 0,0.5x,1x,1.5x,2x --seeds 0,1 --out results/gan_tau_sweep.json

Run from the repository root: python experiments/sweep_gan_tau.py [--steps N] [--seeds 0,1,2] ...
"""
import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib
import torch

from genmem.plots import plot_tau_sweep
from genmem.gan import load_gan_data, sweep_tau
from genmem.cli.gan import parse_tau_list  # the command line's parser of τ lists
from genmem.results import provenance
from genmem.neighbours import NeighbourBank


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--limit", type=int, default=300,
                        help="training images (a small set, so that a small GAN copies within minutes on a CPU)")
    parser.add_argument("--taus", default="0,0.5x,1x,1.5x,2x")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="Adam learning rate (the paper's 2e-4 needs far more steps on digits)")
    parser.add_argument("--mode", default="resample")
    parser.add_argument("--cells", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="results/gan_tau_sweep.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_gan_data(args.dataset, limit=args.limit)
    bank = NeighbourBank("pixels", data.train, metric="cosine", device=args.device)
    start = time.perf_counter()
    table = sweep_tau(data.train, data.test, parse_tau_list(args.taus), seeds=[int(s) for s in args.seeds.split(",")],
                      bank=bank, n_cells=args.cells, device=args.device, steps=args.steps, lr=args.lr,
                      mode=args.mode)
    table["data"] = data.info
    table["meta"] = {**provenance(args.device), "threads": args.threads, "seconds": time.perf_counter() - start,
                     "command": " ".join(sys.argv)}
    out = Path(args.out)
    out.write_text(json.dumps(table, indent=1) + "\n")
    matplotlib.use("Agg")
    figure = plot_tau_sweep(table).figure
    figure.tight_layout()
    figure.savefig(out.with_suffix(".png"), dpi=120)
    for row in table["summary"]:
        print(f"tau {row['tau_spec']:>5} ({row['tau']:.4f}): C_T {row['c_t_mean']:7.3f} ± {row['c_t_std'] or 0:.3f}, "
              f"FD_f {row['fd_f_mean']:.4f} ± {row['fd_f_std'] or 0:.4f}, "
              f"rejected {row['rejection_rate_mean_mean']:.3f}")
    print(json.dumps(table["trend"]))


if __name__ == "__main__":
    main()
