"""Benchmark: TracIn self-influence of MNIST examples over the checkpoints of a VAE, genmem vs captum's TracInCP.

Both sides compute ``Σ_c η_c |∇_θ ℓ(x; θ_c, ε_x)|²`` with ℓ = −ELBO, the same
checkpoints, learning rates η_c and ε draws (``TracIn.noise``, stream 0):

* **genmem**: :func:`genmem.influence.vae_tracin` — per-example gradients from
  ``torch.func.vmap(grad(loss))`` on chunks of examples, loss
  :func:`genmem.influence.vae_negative_elbo`.
* **captum** (``captum.influence.TracInCP``, ``self_influence(...,
  outer_loop_by_checkpoints=True)`` so each checkpoint is loaded once): the
  model is :class:`NegativeElbo`, an ``nn.Module`` holding a copy of the VAE's
  network whose ``forward(x, eps)`` returns the per-example −ELBO [B], written
  here in plain batched torch (independently of genmem's loss); captum's
  ``loss_fn`` passes it through (``reduction="none"``) or sums it
  (``reduction="sum"``); a batch is ``(x, eps, dummy label)``; ``checkpoints``
  are one file per checkpoint and ``checkpoints_load_func`` loads its state and
  returns its η_c. Both of captum's gradient paths are timed:
  ``sample_wise_grads_per_batch=False`` (its default: one
  ``torch.autograd.grad`` per example of a batch) and ``True`` (per-sample
  gradients from hooks on the ``nn.Linear`` layers, which hold all of this
  Bernoulli MLP VAE's parameters). captum scores a seeded random subset of
  ``--captum-max-n`` examples; its times are extrapolated linearly to N
  (flagged in the JSON) and its values are compared with genmem's on that subset.

The VAE is genmem's :class:`~genmem.models.VAE` (MLP 784-512-256, latent 16,
Bernoulli likelihood on fixed-binarized MNIST, about 1.08M parameters), trained
on the first N examples, saving ``--checkpoints`` checkpoints. Needs captum
(``pip install captum``). Run ``python experiments/bench_tracin.py --help``; the
command that produced ``results/bench_tracin.json`` is recorded in it and in
``experiments/README.md``.
"""
import argparse
import copy
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
from torch import nn

from genmem.data import load_dataset, prepare
from genmem.device import describe_device, resolve_device
from genmem.influence import load_vae_checkpoint, vae_tracin
from genmem.influence.tracin import TRAIN_STREAM
from genmem.models.vae import VAE
from genmem.results import library_versions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kde import machine_info  # noqa: E402

log = logging.getLogger("bench_tracin")

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "bench_tracin.json"
GOAL = "self-influence of 60k MNIST examples x 10 checkpoints: genmem >= 50x captum TracInCP on one GPU"
TOLERANCE = 1e-4  # float32 gradients, per-example relative difference
CAPTUM_MODES = {"per_example_loop": False, "sample_wise_grads_per_batch": True}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="first N MNIST training examples (60000 for all)")
    p.add_argument("--checkpoints", type=int, default=10)
    p.add_argument("--epochs", type=int, default=10, help="VAE training epochs (checkpoints evenly spaced)")
    p.add_argument("--draws", type=int, default=1, help="ε draws per example in the −ELBO")
    p.add_argument("--chunk-size", type=int, default=16, help="genmem: examples per vmap chunk (CPU: 16; GPU: 256)")
    p.add_argument("--captum-max-n", type=int, default=400, help="examples captum scores (a seeded random subset)")
    p.add_argument("--captum-batch-size", type=int, default=16, help="captum: examples per DataLoader batch")
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


class NegativeElbo(nn.Module):
    """Per-example −ELBO [B] of a Bernoulli MLP VAE network for rows ``x`` [B, D] and draws ``eps`` [B, S, L].

    ``−(1/S) Σ_s [Σ_d (x_d l_d − softplus(l_d)) + Σ_l (ε²/2 − z²/2 + log σ_l)]``
    with ``z = loc(x) + σ(x)·ε_s`` and decoder logits ``l = decoder(z)``.
    """

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, eps):
        loc, scale = self.net.encoder(x)
        z = loc.unsqueeze(1) + scale.unsqueeze(1) * eps  # [B, S, L]
        logits = self.net.decoder(z)  # [B, S, D]
        log_px = (x.unsqueeze(1) * logits).sum(-1) - nn.functional.softplus(logits).sum(-1)
        latent = 0.5 * (eps.square().sum(-1) - z.square().sum(-1)) + torch.log(scale).sum(-1, keepdim=True)
        return -(log_px + latent).mean(-1)


class PassThrough(nn.Module):
    """captum ``loss_fn`` for per-example losses the model already returns (``reduction="none"``)."""

    reduction = "none"

    def forward(self, out, target):
        return out


class Summed(nn.Module):
    """captum ``loss_fn`` summing the per-example losses the model returns (``reduction="sum"``)."""

    reduction = "sum"

    def forward(self, out, target):
        return out.sum()


def captum_self_influence(path, folder, X, eps, rows, sample_wise, batch_size, device):
    """captum TracInCP self-influence of ``rows`` with the checkpoints of ``path``; (values, seconds, n_batches)."""
    from captum.influence import TracInCP

    vae, checkpoints, _ = load_vae_checkpoint(path, device=str(device))
    files = []
    for c, ck in enumerate(checkpoints):
        files.append(str(Path(folder) / f"captum_checkpoint_{c}.pt"))
        torch.save({"state": ck.params, "lr": ck.lr}, files[-1])
    model = NegativeElbo(copy.deepcopy(vae.net_).requires_grad_(True)).to(device)
    if sample_wise and any(list(m.parameters(recurse=False)) and not isinstance(m, nn.Linear) for m in model.modules()):
        sys.exit("captum's sample_wise_grads_per_batch covers nn.Linear/nn.Conv2d only; this VAE has other parameters")

    def load(module, file):
        record = torch.load(file, weights_only=True, map_location=device)
        module.net.load_state_dict(record["state"])
        return record["lr"]

    data = torch.utils.data.TensorDataset(X[rows].to(device), eps[rows].to(device),
                                          torch.zeros(len(rows), device=device))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    tracin = TracInCP(model, loader, files, checkpoints_load_func=load,
                      loss_fn=Summed() if sample_wise else PassThrough(), batch_size=batch_size,
                      sample_wise_grads_per_batch=sample_wise)
    warm = torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(min(2 * batch_size, len(rows)))),
                                       batch_size=batch_size)
    tracin.self_influence(warm, outer_loop_by_checkpoints=True)  # warm-up (hooks, allocator)
    synchronize(device)
    t0 = time.perf_counter()
    values = tracin.self_influence(loader, outer_loop_by_checkpoints=True)
    synchronize(device)
    return values.double().cpu().numpy(), time.perf_counter() - t0, len(loader)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        import captum
    except ImportError:
        sys.exit("bench_tracin.py compares genmem with captum's TracInCP: install captum (pip install captum)")
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    machine = machine_info(device)
    machine["gpu_note"] = None if machine["gpu"] else (
        "no GPU in this session: both sides ran on the CPU; the GPU goal (" + GOAL + ") was not measured. "
        "Rerun with --device cuda --n 60000 --chunk-size 256 on a GPU machine to measure it.")

    data = prepare(load_dataset("mnist", data_dir=args.data_dir), binarize="fixed")
    X = data.X[: args.n]
    model = VAE(latent_dim=16, hidden=(512, 256), likelihood="bernoulli", epochs=args.epochs, batch_size=64,
                lr=1e-3, checkpoints=args.checkpoints, num_samples=8, device=str(device))
    captum_runs = {}
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

        rows = np.sort(np.random.default_rng(args.seed).choice(len(X), min(args.captum_max_n, len(X)),
                                                               replace=False))
        eps = tr.noise(len(X), TRAIN_STREAM)
        for name, sample_wise in CAPTUM_MODES.items():
            scores, seconds, n_batches = captum_self_influence(path, folder, Xt, eps, rows, sample_wise,
                                                               args.captum_batch_size, device)
            rel = np.abs(values[rows] - scores) / np.abs(scores)
            extrapolated = seconds * len(X) / len(rows)
            captum_runs[name] = {
                "call": (f"TracInCP(NegativeElbo(net), loader, checkpoint_files, checkpoints_load_func=load, "
                         f"loss_fn={'Summed()' if sample_wise else 'PassThrough()'}, "
                         f"sample_wise_grads_per_batch={sample_wise}).self_influence(loader, "
                         "outer_loop_by_checkpoints=True)"),
                "rows_measured": len(rows), "batches": n_batches, "measured_seconds": seconds,
                "seconds": extrapolated, "seconds_is_extrapolated": len(rows) < len(X),
                "examples_per_second": len(rows) / seconds,
                "ratio_captum_over_genmem": extrapolated / genmem_seconds,
                "agreement": {"rows_compared": len(rows), "max_rel_diff": float(rel.max()),
                              "median_rel_diff": float(np.median(rel)), "tolerance": TOLERANCE,
                              "agree": bool(rel.max() < TOLERANCE)},
            }
            log.info("captum %s: %d examples in %.2f s (%.1fx genmem, extrapolated), max rel diff %.2e", name,
                     len(rows), seconds, extrapolated / genmem_seconds, rel.max())

    fastest = min(captum_runs, key=lambda name: captum_runs[name]["seconds"])
    report = {
        "benchmark": "TracIn self-influence, VAE (-ELBO, fixed eps) over checkpoints: genmem vmap vs captum TracInCP",
        "command": "python " + " ".join(shlex.quote(a) for a in ["experiments/bench_tracin.py", *argv]),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine, "loadavg_end": list(os.getloadavg())},
        "versions": {**library_versions(), "captum": captum.__version__},
        "settings": {"n": len(X), "captum_rows": len(rows), "checkpoints": len(tr.checkpoints),
                     "epochs": args.epochs, "draws": args.draws, "chunk_size": args.chunk_size,
                     "captum_batch_size": args.captum_batch_size, "seed": args.seed,
                     "device": describe_device(device), "dtype": str(tr.dtype).replace("torch.", ""),
                     "n_parameters": tr.n_params,
                     "model": "VAE(latent_dim=16, hidden=(512, 256), likelihood='bernoulli', lr=1e-3, batch_size=64)",
                     "data": str(args.data_dir), "preprocessing": "MNIST train, scaled to [0, 1], binarize='fixed'",
                     "checkpoint_epochs": [ck.label for ck in tr.checkpoints],
                     "lrs": [ck.lr for ck in tr.checkpoints]},
        "train_seconds": train_seconds,
        "genmem": {"call": "vae_tracin(path, draws, seed, chunk_size).self_influence(X)", "seconds": genmem_seconds,
                   "examples_per_second": len(X) / genmem_seconds,
                   "self_influence_range": [float(values.min()), float(values.max())]},
        "captum": {
            "expressible": True,
            "how": ("model = NegativeElbo (nn.Module over a copy of the VAE network; forward(x, eps) returns the "
                    "per-example -ELBO [B], Bernoulli likelihood, same eps as genmem); batches (x, eps, dummy label); "
                    "loss_fn passes the per-example losses through (reduction='none') or sums them "
                    "(reduction='sum'); checkpoints = one file per checkpoint, checkpoints_load_func loads the "
                    "state and returns eta_c; all parameters (layers=None)"),
            "modes": captum_runs,
        },
        "ratio_captum_over_genmem": {name: run["ratio_captum_over_genmem"] for name, run in captum_runs.items()},
        "ratio_fastest_captum_over_genmem": {"mode": fastest,
                                             "ratio": captum_runs[fastest]["ratio_captum_over_genmem"]},
        "agree": all(run["agreement"]["agree"] for run in captum_runs.values()),
        "goal": {"goal": GOAL, "measured": device.type == "cuda" and len(X) >= 60000,
                 "note": "no GPU in this session and a subset of MNIST on 2 shared CPU cores; rerun with "
                         "--device cuda --n 60000 --chunk-size 256 on a GPU"},
        "notes": [
            "float32 throughout (the VAE's dtype); agreement is relative, per example, on captum's rows; captum's "
            "loss is an independent batched implementation of the same -ELBO.",
            "captum's times are measured on a seeded random subset and scaled by N/rows (each example costs the same).",
            "Timings exclude data loading, VAE training (train_seconds) and one warm-up call per side; captum's "
            "include loading its checkpoint files (once per checkpoint, outer_loop_by_checkpoints=True).",
            "sample_wise_grads_per_batch=True is exact here because every parameter of this Bernoulli MLP VAE sits "
            "in an nn.Linear (the script checks); captum's hooks would miss a learned decoder scale or "
            "ConvTranspose2d layers.",
            "No hand-written per-example autograd loop: captum's default path (sample_wise_grads_per_batch=False) "
            "is that loop.",
            "2 CPU cores shared with other jobs: see machine.loadavg_start/end; timings are noisy; the recorded run "
            "uses --threads 1 (machine.torch_threads).",
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s: fastest captum (%s) %.1fx genmem; agree %s", args.out, fastest,
             report["ratio_fastest_captum_over_genmem"]["ratio"], report["agree"])


if __name__ == "__main__":
    main()
