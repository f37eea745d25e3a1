"""Overhead of memorization rejection: the time of one generator step with rejection over without.

A generator step is: draw z, G(z), [memorization rejection], D(fake), generator loss,
backward, Adam step. Measured for the built-in MLP GAN on digits (bank: 8×8 pixels of the
training images) and the built-in DCGAN on MNIST (bank: 784 pixels of 10,000 and of all
60,000 training images), in three variants: ``mask`` (one embedding and NN search per step),
``resample`` at a τ that rejects nothing, and ``resample`` at the median NN distance of the
current generator's samples (about half rejected, so about two generator passes per step).
Steps of all variants are interleaved round by round, so that load from other processes
falls on all alike; the median over rounds is reported. Adam runs with learning rate 0 (same
work per step, but the generator does not change, so the rejected share stays put).
Writes results/bench_gan_mr.json.

Run from the repository root: python experiments/bench_gan_mr.py [--device cuda] [--rounds 30]
MNIST needs its IDX files in ../shared/data/mnist (or --data-dir); without them only digits runs.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genmem.data import load_dataset, prepare
from genmem.device import resolve_device
from genmem.gan import MemorizationRejection, load_gan_data, make_gan, to_nchw
from genmem.gan.train import generator_loss, to_image_range
from genmem.results import provenance
from genmem.neighbours import NeighbourBank

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def setups(data_dir, mnist_sizes):
    yield "digits-mlp", load_gan_data("digits").train
    try:
        mnist = to_nchw(prepare(load_dataset("mnist", data_dir=data_dir)).images)
    except Exception as exc:  # noqa: BLE001 - MNIST is optional here; say why it was skipped
        print(f"skipping MNIST: {exc}", file=sys.stderr)
        return
    for n in mnist_sizes:
        yield f"mnist-dcgan-{n}", mnist[:n]


def bench(name, train, args, device):
    G, D = make_gan(train.shape[1:], seed=0)
    G, D = G.to(device).train(), D.to(device).train()
    # lr 0: the Adam step costs what it always does but G stays as it is, so τ keeps rejecting the same share
    opt = torch.optim.Adam(G.parameters(), lr=0.0, betas=(0.5, 0.999))
    gen = torch.Generator(device).manual_seed(0)

    def sample(n):
        return G(torch.randn(n, G.z_dim, generator=gen, device=device))

    t0 = time.perf_counter()
    bank = NeighbourBank("pixels", train, metric="cosine", device=device)
    bank_seconds = time.perf_counter() - t0
    probe = MemorizationRejection(bank, 0.0, mode="mask", preprocess=to_image_range)
    with torch.no_grad():
        d = probe.nn_distance(sample(512))
    tau_half = float(np.median(d))
    variants = {
        "baseline": None,
        "mask": MemorizationRejection(bank, tau_half, mode="mask", preprocess=to_image_range),
        "resample_none_rejected": MemorizationRejection(bank, 0.0, mode="resample", preprocess=to_image_range),
        "resample_half_rejected": MemorizationRejection(bank, tau_half, mode="resample", preprocess=to_image_range),
    }

    def step(mr):
        sync(device)
        start = time.perf_counter()
        fake = sample(args.batch_size)
        if mr is not None:
            fake = mr(fake, sample)
        loss = generator_loss("ns", D(fake))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        return time.perf_counter() - start

    times = {key: [] for key in variants}
    for r in range(args.warmup + args.rounds):
        for key, mr in variants.items():
            t = step(mr)
            if r >= args.warmup:
                times[key].append(t)
    base = float(np.median(times["baseline"]))
    out = {"n_train": len(train), "image_shape": list(train.shape[1:]), "generator": type(G).__name__,
           "bank_dim": bank.dim, "bank_build_seconds": bank_seconds, "tau_half": tau_half,
           "baseline_step_ms": 1e3 * base, "variants": {}}
    for key, mr in variants.items():
        if key == "baseline":
            continue
        med = float(np.median(times[key]))
        out["variants"][key] = {"step_ms": 1e3 * med, "ratio_to_baseline": med / base,
                                "step_ms_quartiles": [1e3 * float(q) for q in np.quantile(times[key], [0.25, 0.75])],
                                "rejection_rate_mean": float(np.mean(mr.rejection_rate)),
                                "tries_mean": float(np.mean(mr.history["tries"]))}
    print(f"{name}: baseline {1e3 * base:.2f} ms; " + ", ".join(
        f"{k} {v['ratio_to_baseline']:.2f}x" for k, v in out["variants"].items()), flush=True)
    return out


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    parser.add_argument("--mnist-sizes", default="10000,60000")
    parser.add_argument("--data-dir", default=os.environ.get("GENMEM_DATA_DIR", str(SHARED_MNIST)))
    parser.add_argument("--out", default="results/bench_gan_mr.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    results = {name: bench(name, train, args, device)
               for name, train in setups(args.data_dir, [int(n) for n in args.mnist_sizes.split(",")])}
    report = {"meta": {**provenance(device), "threads": args.threads, "load_average": os.getloadavg(),
                       "command": " ".join(sys.argv)},
              "settings": {"batch_size": args.batch_size, "rounds": args.rounds, "warmup": args.warmup,
                           "loss": "ns", "feature_map": "pixels", "search": "exact, float32 candidates + "
                                                                             "float64 re-ranking"},
              "results": results,
              "notes": ["ratio_to_baseline = median step time with rejection / median step time without, "
                        "both on the same device with the same networks",
                        "the issue's goal (<= 1.2x) refers to a GPU; this run's device is recorded in meta.device"
                        + ("" if device.type == "cuda" else "; the GPU figure is unmeasured (no GPU in this session)"),
                        "the bank's NN search is exact (a [batch, N] matrix product per step); on a CPU it dominates "
                        "the overhead for large N"]}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
