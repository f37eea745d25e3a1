"""The GPU check: genmem's GPU tests and GPU benchmarks in one command, for whoever has a GPU.

Run it first on any machine with a CUDA GPU (≈ 7 minutes on one H200)::

    python experiments/gpu_check.py --data-dir PATH/TO/mnist

(or ``bash experiments/gpu_check.sh`` on the project's lent GPU machine, which
installs the carried wheels first; see experiments/README.md). Sections, most
important first, each time-boxed so that the whole fits in ``--budget`` seconds,
and the JSON rewritten after each so that a cut-short run keeps what it measured:

1. ``vae_full``: the full ``--preset vdb-bmnist`` setting — all 100 units (K=10,
   R=10) on the 60,000 MNIST images, padded to 32×32, dynamically binarized —
   trained for ``--epochs`` epochs (the first includes CUDA-graph capture and
   compilation; the steady-state epoch time comes from the others), then IS-256
   of ``--eval-rows`` rows under all 100 units. Extrapolated to 100 epochs and
   60,000 rows, against the 2-minute goal and against the memory floor (Adam
   reads parameter, gradient and both moments and writes three: 28 B per
   parameter, plus 12 B of weight traffic: read in the forward and backward
   passes, gradient written), with the achieved bytes/s and the bytes the
   step really moves (the CPU-counted ``traffic`` of bench_kfold_vae.json). Once with eager kernels, once with
   ``compile=True``. The reference-style loop (one model at a time, batch-64
   steps, ``experiments/bench_kfold_vae.py``) is timed for a few hundred steps
   and extrapolated the same way.
2. ``gpu_tests``: ``pytest -m gpu`` (every model and view on CUDA against the CPU).
3. ``bench_kde``, ``bench_neighbours``, ``bench_gan_mr``, ``bench_tracin``: the
   existing benchmarks with ``--device cuda`` at sizes that fit, each writing its
   own JSON beside this one; their headline numbers are copied in.

Writes ``results/gpu_check.json`` (``--out``) with the device, versions, command,
and per section its measurements or the error that stopped it. ``--smoke`` runs
every section at toy sizes on whatever device there is, to check the script
(into a temporary folder unless ``--out`` is given; ``tests/test_gpu_check.py``
runs it).
"""
import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from bench_kfold_vae import FLOOR_BYTES_PER_PARAM, FULL, PRESET, ReferenceVAE  # noqa: E402
from genmem.data import load_dataset, prepare  # noqa: E402
from genmem.device import describe_device, resolve_device  # noqa: E402
from genmem.memorization.folds import make_folds, unit_seed  # noqa: E402
from genmem.models.vae import VAE  # noqa: E402
from genmem.models.vae.data import scored_rows  # noqa: E402
from genmem.models.vae.evaluate import evaluate, importance_eps  # noqa: E402
from genmem.philox import key_words  # noqa: E402
from genmem.results import library_versions  # noqa: E402

#: H200 HBM3e bandwidth (datasheet); a device-to-device copy measured about 4.3 TB/s on the lent machine.
PEAK_BYTES_PER_S = 4.8e12
GOAL_SECONDS = 120.0
STEPS_PER_EPOCH = -(-FULL["train_per_model"] // PRESET["model"]["batch_size"])  # 844


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mnist_units(data_dir, n_rows, folds, repeats, seed=0):
    """vdb-bmnist data X [n, 1024] and the masks [R·K, n] and seeds of its K-fold units."""
    data = prepare(load_dataset("mnist", data_dir=data_dir), pad_to=32, binarize="dynamic")
    X = data.X[:n_rows]
    assignment = make_folds(len(X), folds, repeats, seed)
    masks = np.stack([assignment[r] != k for r in range(repeats) for k in range(folds)])
    seeds = [unit_seed(seed, r, k) for r in range(repeats) for k in range(folds)]
    return X, masks, seeds


def counted_traffic(n_units, step_s):
    """The bytes a step moves as counted on the CPU (bench_kfold_vae.json's ``traffic``), and the rate achieved."""
    path = ROOT / "results" / "bench_kfold_vae.json"
    traffic = json.loads(path.read_text()).get("traffic") if path.is_file() else None
    if not traffic:
        return {}
    top = max(traffic["units"], key=int)
    moved = traffic["units"][top]["bytes_per_step"] / int(top) * n_units
    return {"counted_bytes_per_step": moved, "counted_bytes_per_s": moved / step_s,
            "counted_share_of_peak_bandwidth": moved / step_s / PEAK_BYTES_PER_S}


def vae_full(args, device, compile):
    """Train all units for a few epochs, time IS on a share of the rows; extrapolate the full setting."""
    X, masks, seeds = mnist_units(args.data_dir, args.rows, args.folds, args.repeats)
    vae = VAE(**{**PRESET["model"], "epochs": args.epochs, "device": str(device), "eval_chunk": args.eval_chunk,
                 "compile": compile})
    X_checked, likelihood, dev, dtype = vae._setup(X)
    stamps = []

    def on_epoch(epoch, units, trainer):
        sync(device)
        stamps.append(time.perf_counter())

    torch.cuda.reset_peak_memory_stats(device) if device.type == "cuda" else None
    sync(device)
    start = time.perf_counter()
    units, loss = vae._train(X_checked, masks, seeds, [str(s) for s in seeds], likelihood, dev, dtype, on_epoch)
    epoch_s = np.diff([start] + stamps)
    steady = float(np.mean(epoch_s[1:])) if len(epoch_s) > 1 else float(epoch_s[0])
    n_params = units.flat.shape[1]
    n_units = len(masks)
    steps = -(-int(masks.sum(1).max()) // vae.batch_size)
    step_s = steady / steps
    floor_bytes = n_units * n_params * FLOOR_BYTES_PER_PARAM

    rows = X_checked[:args.eval_rows]
    sync(device)
    t0 = time.perf_counter()
    eps = importance_eps(key_words(seeds, dev), vae.num_samples, vae.latent_dim, dtype)
    ll = evaluate(units, scored_rows(rows, vae.binarize, dev, dtype), eps, vae.eval_chunk)["loglik"]
    sync(device)
    eval_s = time.perf_counter() - t0
    scale_units = FULL["models"] / n_units
    full_train = (FULL["epochs"] * steady + (epoch_s[0] - steady)) * scale_units \
        * FULL["train_per_model"] / max(1, int(masks.sum(1).max()))
    full_eval = eval_s * (FULL["n"] / len(rows)) * scale_units
    return {
        "compile": compile, "units": n_units, "rows": len(X), "epochs": args.epochs,
        "parameters_per_unit": int(n_params), "steps_per_epoch": steps,
        "epoch_seconds": [float(e) for e in epoch_s], "steady_epoch_seconds": steady,
        "step_ms": 1e3 * step_s,
        "floor_bytes_per_step": floor_bytes, "floor_step_ms": 1e3 * floor_bytes / PEAK_BYTES_PER_S,
        "achieved_bytes_per_s": floor_bytes / step_s, "share_of_peak_bandwidth": floor_bytes / step_s / PEAK_BYTES_PER_S,
        **counted_traffic(n_units, step_s),
        "eval_rows": len(rows), "eval_seconds": eval_s, "mean_loglik_eval_rows": float(ll.mean()),
        "train_loss_last_epoch_mean": float(loss[:, -1].mean()),
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "extrapolated_full_seconds": {"train": full_train, "eval": full_eval, "total": full_train + full_eval},
        "goal_seconds": GOAL_SECONDS, "meets_goal": bool(full_train + full_eval <= GOAL_SECONDS),
        "floor_full_train_seconds": FULL["epochs"] * STEPS_PER_EPOCH * floor_bytes / PEAK_BYTES_PER_S * scale_units,
    }


def reference_full(args, device):
    """The reference's one-model loop, timed for ``--reference-steps`` steps and an IS batch, extrapolated."""
    X, masks, _ = mnist_units(args.data_dir, args.rows, args.folds, 1)
    params = PRESET["model"]
    X_dev = torch.as_tensor(X[masks[0]], dtype=torch.float32, device=device)
    torch.manual_seed(0)
    model = ReferenceVAE(X.shape[1], params["latent_dim"], params["hidden"]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=params["lr"])
    batch = params["batch_size"]

    def steps(n):
        for i in range(n):
            first = (i * batch) % (len(X_dev) - batch)
            opt.zero_grad()
            model.loss(torch.bernoulli(X_dev[first:first + batch])).backward()
            opt.step()

    steps(20)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    steps(args.reference_steps)
    sync(device)
    step_s = (time.perf_counter() - t0) / args.reference_steps
    rows = (X_dev[:args.reference_eval_rows] > 0.5).float()
    t0 = time.perf_counter()
    for i in range(0, len(rows), 64):  # the reference's evaluation loader batch
        model.marginal_batch(rows[i:i + 64], params["num_samples"])
    sync(device)
    eval_s = time.perf_counter() - t0
    full_train = step_s * STEPS_PER_EPOCH * FULL["epochs"] * FULL["models"]
    full_eval = eval_s * FULL["n"] / len(rows) * FULL["models"]
    return {"step_ms": 1e3 * step_s, "steps_timed": args.reference_steps, "eval_rows": len(rows), "eval_seconds": eval_s,
            "extrapolated_full_seconds": {"train": full_train, "eval": full_eval, "total": full_train + full_eval}}


def gpu_tests(args, timeout):
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-o", "addopts="]
    if args.smoke:
        cmd += ["--co"]  # collect only: the tests need CUDA
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return {"command": shlex.join(cmd[1:]), "returncode": proc.returncode, "summary": lines[-1] if lines else "",
            "failures": [line for line in lines if line.startswith(("FAILED", "ERROR"))]}


def bench_script(name, extra, args, timeout):
    """Run ``experiments/NAME.py`` with ``extra`` arguments; its JSON goes beside ``--out``."""
    out = Path(args.out).with_name(f"gpu_check_{name}.json")
    cmd = [sys.executable, str(ROOT / "experiments" / f"{name}.py"), *extra, "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    result = {"command": shlex.join(cmd[1:]), "returncode": proc.returncode,
              "stderr_tail": (proc.stdout + proc.stderr).strip().splitlines()[-6:]}
    if out.is_file():
        result["json"] = out.name
    return result


def sections(args):
    """(name, share of the budget, function of the seconds it may take) in order of importance."""
    cuda = args.device.type == "cuda"
    dev = ["--device", str(args.device)]
    data = ["--data-dir", str(args.data_dir)]
    small = args.smoke
    yield "vae_full", 0.30, lambda t: {"eager": vae_full(args, args.device, False),
                                       **({"compiled": vae_full(args, args.device, True)} if cuda else {}),
                                       "reference_loop": reference_full(args, args.device)}
    yield "gpu_tests", 0.25, lambda t: gpu_tests(args, t)
    yield "bench_kde", 0.10, lambda t: bench_script("bench_kde", [
        *dev, *data, "--n", "2000" if small else "10000", "--pca", "50", "--baseline-max-n", "100",
        "--genmem-only-n", "3000" if small else "60000", "--genmem-only-pca", "none", "50"], args, t)
    yield "bench_neighbours", 0.10, lambda t: bench_script("bench_neighbours", [
        *dev, *data, "--n-train", "3000" if small else "60000", "--n-test", "500" if small else "10000",
        "--n-gen", "500" if small else "10000", "--cells", "5" if small else "50", "--repeats", "1"], args, t)
    yield "bench_gan_mr", 0.10, lambda t: bench_script("bench_gan_mr", [
        *dev, *data, "--mnist-sizes", "3000" if small else "60000", "--rounds", "5" if small else "20",
        "--threads", str(torch.get_num_threads())], args, t)
    yield "bench_tracin", 0.15, lambda t: bench_script("bench_tracin", [
        *dev, *data, "--n", "300" if small else "6000", "--checkpoints", "2" if small else "10",
        "--epochs", "2" if small else "10", "--chunk-size", "16" if small else "256",
        "--captum-max-n", "20" if small else "200"], args, t)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("GENMEM_SHARED_DATA", ROOT.parent / "shared" / "data")) / "mnist")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for all sections together")
    parser.add_argument("--epochs", type=int, default=3, help="vae_full: epochs trained (the first is warm-up)")
    parser.add_argument("--rows", type=int, default=60000, help="vae_full: MNIST rows (60000: the full setting)")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--eval-rows", type=int, default=6000, help="vae_full: rows scored by IS-256 (extrapolated)")
    parser.add_argument("--eval-chunk", type=int, default=16384, help="vae_full: rows × samples per unit and chunk")
    parser.add_argument("--reference-steps", type=int, default=300)
    parser.add_argument("--reference-eval-rows", type=int, default=640)
    parser.add_argument("--only", default=None, help="comma-separated section names to run")
    parser.add_argument("--smoke", action="store_true", help="toy sizes on any device: checks the script runs")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: results/gpu_check.json; with --smoke a temporary folder (toy numbers "
                             "must not pass for a GPU measurement)")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="gpu_check_smoke_")) / "gpu_check.json" if args.smoke \
            else ROOT / "results" / "gpu_check.json"
    if args.smoke:
        args.device = "auto"
        args.rows, args.folds, args.repeats, args.epochs = 600, 3, 1, 2
        args.eval_rows, args.reference_steps, args.reference_eval_rows = 100, 5, 64
    args.device = resolve_device(args.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "check": "gpu_check", "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(argv),
        "device": describe_device(args.device), "smoke": args.smoke, "versions": library_versions(),
        "python": platform.python_version(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "budget_seconds": args.budget, "sections": {},
    }
    deadline = time.monotonic() + args.budget
    only = None if args.only is None else set(args.only.split(","))
    for name, share, run in sections(args):
        if only is not None and name not in only:
            continue
        left = deadline - time.monotonic()
        if left < 20:
            report["sections"][name] = {"skipped": f"budget spent ({left:.0f} s left)"}
            continue
        t0 = time.monotonic()
        try:
            result = run(max(30.0, min(left, share * args.budget * 1.5)))
        except Exception as err:  # noqa: BLE001 - a failed section is recorded and the next one runs
            result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc().splitlines()[-8:]}
        result["seconds"] = time.monotonic() - t0
        report["sections"][name] = result
        print(f"{name}: {json.dumps(result)[:400]}", file=sys.stderr, flush=True)
        args.out.write_text(json.dumps(report, indent=1, default=float) + "\n")
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    args.out.write_text(json.dumps(report, indent=1, default=float) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
