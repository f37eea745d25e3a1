"""Benchmark: TracIn self-influence of MNIST examples over the checkpoints of a VAE-sized MLP VAE.

Both sides compute ``Σ_c η_c |∇_θ ℓ(x; θ_c, ε_x)|²`` with ℓ = −ELBO
(:func:`genmem.influence.vae_negative_elbo`), the same checkpoints, learning
rates and ε draws (``TracIn.noise``, stream 0):

* **genmem**: :func:`genmem.influence.vae_tracin` — per-example gradients from
  ``torch.func.vmap(grad(loss))`` on chunks of examples.
* **baseline**: what captum's ``TracInCP`` does for a model whose loss it cannot
  batch per example — one ``torch.autograd.grad`` call per example and
  checkpoint (captum is not installed here and cannot be fetched: no network;
  with captum importable, this script still times the loop, since TracInCP
  needs a model/loss split that a Pyro ELBO with fixed ε does not have).
  The loop runs on a seeded random subset of ``--baseline-max-n`` examples;
  its time is extrapolated linearly to N (flagged in the JSON) and its values
  are compared with genmem's on that subset.

The VAE is genmem's :class:`~genmem.models.VAE` (MLP 784-512-256, latent 16,
Bernoulli likelihood on fixed-binarized MNIST, about 1.07M parameters), trained
on the first N examples, saving ``--checkpoints`` checkpoints. Run
``python experiments/bench_tracin.py --help``; the command that produced
``results/bench_tracin.json`` is recorded in it and in ``experiments/README.md``.
"""
import argparse
import datetime
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genmem.data import load_dataset, prepare
from genmem.device import describe_device, resolve_device
from genmem.influence import load_vae_checkpoint, vae_negative_elbo, vae_tracin
from genmem.influence.tracin import TRAIN_STREAM
from genmem.results import library_versions
from genmem.models.vae import VAE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kde import machine_info  # noqa: E402

log = logging.getLogger("bench_tracin")

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "bench_tracin.json"
GOAL = "self-influence of 60k MNIST examples x 10 checkpoints: genmem >= 50x captum TracInCP on one GPU"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="first N MNIST training examples (60000 for all)")
    p.add_argument("--checkpoints", type=int, default=10)
    p.add_argument("--epochs", type=int, default=10, help="VAE training epochs (checkpoints evenly spaced)")
    p.add_argument("--draws", type=int, default=1, help="ε draws per example in the −ELBO")
    p.add_argument("--chunk-size", type=int, default=16, help="genmem: examples per vmap chunk (CPU: 16; GPU: 256)")
    p.add_argument("--baseline-max-n", type=int, default=200, help="examples the per-example loop scores")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads for both sides (default: torch's); 1 avoids oversubscription on a busy machine")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p.parse_args(argv)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def baseline_loop(path, rows, X, eps, device):
    """Σ_c η_c |g|² by one autograd.grad call per example and checkpoint (captum's per-example path)."""
    vae, checkpoints, _ = load_vae_checkpoint(path, device=str(device))
    loss = vae_negative_elbo(vae)
    out = np.zeros(len(rows))
    for ck in checkpoints:
        params = {n: p.detach().to(device).requires_grad_(True) for n, p in ck.params.items()}
        for j, i in enumerate(rows):
            g = torch.autograd.grad(loss(params, X[i].to(device), eps[i].to(device)), list(params.values()))
            out[j] += ck.lr * float(sum((t * t).sum() for t in g))
    return out


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    machine = machine_info(device)
    try:
        import captum  # noqa: F401

        captum_note = "captum is importable but not used (see the script's docstring)"
    except ImportError:
        captum_note = "captum is not installed and cannot be fetched here (no network); baseline is the per-example autograd loop captum's TracInCP runs"

    data = prepare(load_dataset("mnist", data_dir=args.data_dir), binarize="fixed")
    X = data.X[: args.n]
    model = VAE(latent_dim=16, hidden=(512, 256), likelihood="bernoulli", epochs=args.epochs, batch_size=64,
                lr=1e-3, checkpoints=args.checkpoints, num_samples=8, device=str(device))
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        model.fit_units(X, np.ones((1, len(X)), dtype=bool), [args.seed], unit_keys=[(0, 0)], artifact_dir=folder)
        train_seconds = time.perf_counter() - t0
        path = Path(folder) / "unit_r0_k0.pt"
        tr = vae_tracin(path, draws=args.draws, seed=args.seed, chunk_size=args.chunk_size, device=str(device))
        log.info("VAE trained in %.1f s; %d parameters, %d checkpoints", train_seconds, tr.n_params,
                 len(tr.checkpoints))
        Xt = torch.as_tensor(X, dtype=tr.dtype)
        tr.self_influence(Xt[: 4 * args.chunk_size])  # warm-up (vmap tracing, allocator)
        synchronize(device)
        t0 = time.perf_counter()
        values = tr.self_influence(Xt)
        synchronize(device)
        genmem_seconds = time.perf_counter() - t0
        log.info("genmem: %d examples x %d checkpoints in %.2f s", len(X), len(tr.checkpoints), genmem_seconds)

        rows = np.sort(np.random.default_rng(args.seed).choice(len(X), min(args.baseline_max_n, len(X)),
                                                               replace=False))
        eps = tr.noise(len(X), TRAIN_STREAM)
        t0 = time.perf_counter()
        reference = baseline_loop(path, rows, Xt, eps, device)
        synchronize(device)
        loop_measured = time.perf_counter() - t0
        log.info("per-example loop: %d examples in %.2f s", len(rows), loop_measured)

    loop_seconds = loop_measured * len(X) / len(rows)
    rel = np.abs(values[rows] - reference) / np.abs(reference)
    report = {
        "benchmark": "TracIn self-influence, VAE (-ELBO, fixed eps) over checkpoints: genmem vmap vs per-example autograd loop",
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine, "loadavg_end": list(os.getloadavg())},
        "versions": library_versions(),
        "settings": {"n": len(X), "checkpoints": len(tr.checkpoints), "epochs": args.epochs, "draws": args.draws,
                     "chunk_size": args.chunk_size, "seed": args.seed, "device": describe_device(device),
                     "dtype": str(tr.dtype).replace("torch.", ""), "n_parameters": tr.n_params,
                     "model": "VAE(latent_dim=16, hidden=(512, 256), likelihood='bernoulli', lr=1e-3, batch_size=64)",
                     "data": str(args.data_dir), "preprocessing": "MNIST train, scaled to [0, 1], binarize='fixed'",
                     "checkpoint_epochs": [ck.label for ck in tr.checkpoints],
                     "lrs": [ck.lr for ck in tr.checkpoints]},
        "train_seconds": train_seconds,
        "genmem": {"call": "vae_tracin(path, draws, seed, chunk_size).self_influence(X)", "seconds": genmem_seconds,
                   "examples_per_second": len(X) / genmem_seconds},
        "baseline": {"call": "for c in checkpoints: for x in rows: torch.autograd.grad(vae_negative_elbo(vae)(params_c, x, eps_x), params_c)",
                     "captum": captum_note, "rows_measured": len(rows), "measured_seconds": loop_measured,
                     "seconds": loop_seconds, "seconds_is_extrapolated": len(rows) < len(X),
                     "examples_per_second": len(rows) / loop_measured},
        "ratio_baseline_over_genmem": loop_seconds / genmem_seconds,
        "agreement": {"rows_compared": len(rows), "max_rel_diff": float(rel.max()), "median_rel_diff": float(np.median(rel)),
                      "tolerance": 1e-4, "agree": bool(rel.max() < 1e-4),
                      "self_influence_range": [float(values.min()), float(values.max())]},
        "goal": {"goal": GOAL, "measured": False if device.type != "cuda" or len(X) < 60000 else True,
                 "note": "no GPU in this session and a subset of MNIST on 2 shared CPU cores; rerun with --device cuda --n 60000 on a GPU"},
        "notes": [
            "float32 throughout (the VAE's dtype); agreement is relative, per example, on the loop's rows.",
            "The loop's time is measured on a seeded random subset and scaled by N/rows (each example costs the same).",
            "Timings exclude data loading and VAE training (train_seconds, reported separately).",
            "2 CPU cores shared with other jobs: see machine.loadavg_start/end; timings are noisy. With 2 torch "
            "threads on a busy machine both sides slowed down several-fold (oversubscription); the recorded run "
            "uses --threads 1 (machine.torch_threads).",
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s: ratio %.1fx, max rel diff %.2e", args.out, report["ratio_baseline_over_genmem"],
             report["agreement"]["max_rel_diff"])


if __name__ == "__main__":
    main()
