"""Benchmark: the reference's one-model-at-a-time VAE loop against genmem's fold-batched trainer.

Both train the reference BinarizedMNIST model (MNIST padded to 32×32, dynamic
binarization, Bernoulli MLP VAE 512-256, latent 16, Adam lr 1e-3, batch 64)
on the same K-fold training sets for the same number of epochs, in one
process, and then estimate log p of every example under every model by
importance sampling. The reference-style loop follows
alan-turing-institute/memorization (``scripts/models.py``, ``trainer.py``):
plain PyTorch, one model after another, a fresh Bernoulli draw of every
minibatch, analytic KL, and ``marginal_batch`` for the importance sampling.

Reported: training examples/s and evaluation (example × sample)/s of both,
their ratio, and the extrapolated wall time of the full reference setting
(100 models × 100 epochs on 54,000 training images each, then IS-256 of all
60,000 images under all 100 models). A small agreement check compares the
per-example scores of the two trainers (Spearman). Results go to
``results/bench_kfold_vae.json``.

Run ``python experiments/bench_kfold_vae.py --help`` for the options; the
defaults finish in a few minutes on two CPU cores.
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genmem.data import load_dataset, prepare  # noqa: E402
from genmem.device import describe_device, resolve_device  # noqa: E402
from genmem.memorization import estimate  # noqa: E402
from genmem.models.vae import PRESETS, VAE  # noqa: E402

PRESET = PRESETS["vdb-bmnist"]
FULL = {"models": PRESET["folds"] * PRESET["repeats"], "epochs": PRESET["model"]["epochs"], "n": 60000,
        "train_per_model": 54000, "num_samples": PRESET["model"]["num_samples"]}


def shared_data_dir():
    return Path(os.environ.get("GENMEM_SHARED_DATA", ROOT.parent / "shared" / "data"))


class ReferenceVAE(torch.nn.Module):
    """The reference's BernoulliMLPVAE: 1024-512-256 encoder, latent 16, mirrored decoder with sigmoid."""

    def __init__(self, n_features, latent_dim, hidden):
        super().__init__()
        layers, width = [], n_features
        for h in hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU(True)]
            width = h
        self.encoder = torch.nn.Sequential(*layers)
        self.mu, self.logvar = torch.nn.Linear(width, latent_dim), torch.nn.Linear(width, latent_dim)
        layers, width = [], latent_dim
        for h in reversed(hidden):
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU(True)]
            width = h
        self.decoder = torch.nn.Sequential(*layers, torch.nn.Linear(width, n_features), torch.nn.Sigmoid())

    def encode(self, x):
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def log_pxz(self, probs, x):
        return -torch.nn.functional.binary_cross_entropy(probs, x, reduction="none").sum(-1)

    def loss(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return -self.log_pxz(self.decoder(z), x).sum() + kld

    @torch.no_grad()
    def marginal_batch(self, x, num_samples):
        """The reference's importance-sampling estimate for a batch ``x`` [B, D]."""
        mu, logvar = self.encode(x)
        q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
        z = q.sample((num_samples,))  # [S, B, L]
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_q = q.log_prob(z).sum(-1)
        probs = self.decoder(z.reshape(-1, z.shape[-1]))
        log_pxz = self.log_pxz(probs, x.repeat(num_samples, 1)).view(num_samples, -1)
        return torch.logsumexp(log_pxz + log_prior - log_q, 0) - np.log(num_samples)


def reference_loop(X, masks, seeds, args, device):
    """One model after another, as the reference code trains them; returns (loglik [U, N], train s, eval s)."""
    model_params = PRESET["model"]
    X_dev = torch.as_tensor(X, dtype=torch.float32, device=device)
    X_eval = (X_dev > 0.5).float()
    loglik = np.empty(masks.shape)
    train_s = eval_s = 0.0
    for u, (mask, seed) in enumerate(zip(masks, seeds)):
        torch.manual_seed(seed)  # the reference seeds torch once per model run
        model = ReferenceVAE(X.shape[1], model_params["latent_dim"], model_params["hidden"]).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=model_params["lr"])
        rows = torch.as_tensor(np.flatnonzero(mask), device=device)
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.epochs):
            order = rows[torch.randperm(len(rows), device=device)]
            for first in range(0, len(order), model_params["batch_size"]):
                batch = torch.bernoulli(X_dev[order[first:first + model_params["batch_size"]]])
                opt.zero_grad()
                model.loss(batch).backward()
                opt.step()
        _sync(device)
        train_s += time.perf_counter() - start
        start = time.perf_counter()
        out = [model.marginal_batch(X_eval[i:i + args.eval_batch], args.num_samples).cpu()
               for i in range(0, len(X_eval), args.eval_batch)]
        _sync(device)
        eval_s += time.perf_counter() - start
        loglik[u] = torch.cat(out).numpy()
    return loglik, train_s, eval_s


def genmem_batched(X, masks, seeds, args, device):
    """genmem's fold-batched trainer; returns (loglik [U, N], train s, eval s)."""
    vae = VAE(**{**PRESET["model"], "epochs": args.epochs, "num_samples": args.num_samples,
                 "device": str(device), "eval_chunk": args.eval_chunk})
    X_checked, likelihood, dev, dtype = vae._setup(X)
    labels = [f"model {u}" for u in range(len(masks))]
    _sync(device)
    start = time.perf_counter()
    units, _, _ = vae._train(X_checked, masks, seeds, labels, likelihood, dev, dtype)
    _sync(device)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    eps = vae._eval_eps(seeds, args.num_samples, dev, dtype)
    result = vae._evaluate(units, vae._eval_data(X_checked, dev, dtype), eps)
    _sync(device)
    return result["loglik"], train_s, time.perf_counter() - start


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memorization(loglik, masks):
    """genmem's reference estimator for one repeat of K-fold units (``masks[k]`` = rows unit k trained on)."""
    assignment = np.argmin(masks, axis=0)[None]  # the fold that holds each example out
    return estimate(loglik[None], assignment, "reference")[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="MNIST training images used (default 1000)")
    parser.add_argument("--models", type=int, default=4, help="K-fold models (units) trained (default 4)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per model (default 2)")
    parser.add_argument("--num-samples", type=int, default=64, help="importance samples S (reference: 256)")
    parser.add_argument("--eval-batch", type=int, default=64, help="reference loop's evaluation batch (its loader's)")
    parser.add_argument("--eval-chunk", type=int, default=2048, help="genmem's examples × samples per chunk")
    parser.add_argument("--agreement-epochs", type=int, default=5, help="epochs of the agreement run (0 skips it)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "results" / "bench_kfold_vae.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    folder = shared_data_dir() / "mnist"
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        print(f"skipped: MNIST not found in {folder} (set GENMEM_SHARED_DATA)", file=sys.stderr)
        return 0
    load = list(os.getloadavg())  # other processes on the machine skew CPU timings
    device = resolve_device(args.device)
    data = prepare(load_dataset("mnist", data_dir=folder), pad_to=32, binarize="dynamic")
    rng = np.random.default_rng(args.seed)
    X = data.X[np.sort(rng.choice(len(data.X), size=args.n, replace=False))]
    folds = rng.permutation(args.n) % args.models
    masks = np.stack([folds != k for k in range(args.models)])
    seeds = [int(s) for s in rng.integers(0, 2**62, size=args.models)]
    print(f"MNIST subset {X.shape}, {args.models} models, {args.epochs} epoch(s), S={args.num_samples}, "
          f"device {describe_device(device)}", file=sys.stderr)

    runs = {}
    for name, fn in (("reference_loop", reference_loop), ("genmem_batched", genmem_batched)):
        warm = min(len(X), 256)  # untimed: first-call allocations and lazy initialisation
        fn(X[:warm], masks[:, :warm], seeds, argparse.Namespace(**{**vars(args), "epochs": 1}), device)
        loglik, train_s, eval_s = fn(X, masks, seeds, args, device)
        train_examples = int(masks.sum()) * args.epochs
        pairs = masks.size * args.num_samples
        full_train = FULL["models"] * FULL["epochs"] * FULL["train_per_model"] / (train_examples / train_s)
        full_eval = FULL["models"] * FULL["n"] * FULL["num_samples"] / (pairs / eval_s)
        runs[name] = {
            "train_seconds": train_s, "eval_seconds": eval_s,
            "train_examples_per_s": train_examples / train_s, "eval_example_samples_per_s": pairs / eval_s,
            "full_setting_seconds": {"train": full_train, "eval": full_eval, "total": full_train + full_eval},
            "mean_loglik": float(loglik.mean()),
        }
        print(f"{name}: train {train_examples / train_s:,.0f} examples/s, eval {pairs / eval_s:,.0f} "
              f"example-samples/s, full setting ≈ {(full_train + full_eval) / 3600:.2f} h", file=sys.stderr)
    ref, ours = runs["reference_loop"], runs["genmem_batched"]
    ratio = {"train": ours["train_examples_per_s"] / ref["train_examples_per_s"],
             "eval": ours["eval_example_samples_per_s"] / ref["eval_example_samples_per_s"],
             "full_setting": ref["full_setting_seconds"]["total"] / ours["full_setting_seconds"]["total"]}
    print(f"speed-up: train {ratio['train']:.2f}x, eval {ratio['eval']:.2f}x, "
          f"full setting {ratio['full_setting']:.2f}x", file=sys.stderr)

    agreement = None
    if args.agreement_epochs:
        small = argparse.Namespace(**{**vars(args), "epochs": args.agreement_epochs})
        ll_ref = reference_loop(X, masks, seeds, small, device)[0]
        ll_ours = genmem_batched(X, masks, seeds, small, device)[0]
        held_ref, held_ours = (np.where(~masks, ll, np.nan) for ll in (ll_ref, ll_ours))
        agreement = {
            "epochs": args.agreement_epochs,
            "spearman_mean_loglik": float(spearmanr(ll_ref.mean(0), ll_ours.mean(0))[0]),
            "spearman_heldout_loglik": float(spearmanr(np.nanmean(held_ref, 0), np.nanmean(held_ours, 0))[0]),
            "spearman_memorization": float(spearmanr(memorization(ll_ref, masks), memorization(ll_ours, masks))[0]),
            "mean_loglik": {"reference_loop": float(ll_ref.mean()), "genmem_batched": float(ll_ours.mean())},
        }
        print(f"agreement after {args.agreement_epochs} epochs: Spearman log p "
              f"{agreement['spearman_mean_loglik']:.3f}, memorization {agreement['spearman_memorization']:.3f}",
              file=sys.stderr)

    import pyro

    report = {
        "benchmark": "bench_kfold_vae",
        "command": " ".join([sys.executable, *sys.argv]) if argv is None else " ".join(["bench_kfold_vae.py", *argv]),
        "device": describe_device(device),
        "torch_threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "pyro-ppl": pyro.__version__,
                     "numpy": np.__version__},
        "load_average_at_start": load,
        "setting": {"n": args.n, "models": args.models, "epochs": args.epochs, "num_samples": args.num_samples,
                    "model": {**{k: list(v) if isinstance(v, tuple) else v for k, v in PRESET["model"].items()},
                              "epochs": args.epochs, "num_samples": args.num_samples},
                    "data": "MNIST train, padded to 32x32, dynamic binarization (log p of X > 0.5)"},
        "full_setting": FULL,
        "runs": runs,
        "speedup": ratio,
        "agreement": agreement,
        "notes": "The reference loop uses the analytic KL, torch's default Adam and torch's global RNG; genmem "
                 "uses Pyro's Trace_ELBO objective (Monte Carlo KL), fused Adam and per-unit random streams. "
                 "Full-setting times are extrapolated linearly from this run's throughputs. On a CPU both are "
                 "bound by the same matrix products, so batching the units gains little; the design targets "
                 "GPUs, where one batched step replaces U small ones. The memorization Spearman of a short "
                 "run is dominated by training noise (each score is a difference of two noisy log p).",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
