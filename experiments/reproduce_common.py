"""Helpers shared by the reproduction scripts (reproduce_vdb.py, reproduce_ct.py, reproduce_mrgan.py,
planted_three_views.py): command-line options, data loading with clear errors, the JSON record with
provenance, full-scale time estimates from the benchmark JSONs, and small plotting helpers.

Every script has ``--scale cpu`` (runs here, one torch thread) and ``--scale full`` (the paper's
settings: prints the expected time from the benchmarks and exits unless ``--run`` is given).
"""
import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from genmem import GenmemError  # noqa: E402
from genmem.data import load_dataset  # noqa: E402
from genmem.results import provenance  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data"


def parser(doc):
    """An argument parser with the options every reproduction script takes."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=("cpu", "full"), default="cpu",
                   help="cpu: the recorded run for 2 CPU cores; full: the paper's settings (prints the expected "
                        "time and exits unless --run)")
    p.add_argument("--run", action="store_true", help="with --scale full: actually run it")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help="folder holding mnist/ (IDX files) (default: ../shared/data)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/genmem-reproduce"),
                   help="scratch folder for run files (HDF5, checkpoints); not committed")
    p.add_argument("--results-dir", type=Path, default=RESULTS, help="where the JSON and PNG files go")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting of the chosen scale (e.g. --set n=2000); recorded in the JSON")
    return p


def settings(args, table):
    """The settings of ``args.scale`` from ``table`` with the ``--set`` overrides (cast to the default's type)."""
    chosen = dict(table[args.scale])
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in chosen:
            die(f"--set {item}: unknown setting {key!r}; known: {', '.join(chosen)}")
        chosen[key] = type(chosen[key])(value)
    return chosen


def output_stem(args, name):
    """``results/NAME`` for the CPU scale, ``results/NAME_full`` for the full one, ``NAME_custom`` with --set."""
    suffix = "" if args.scale == "cpu" else "_full"
    return args.results_dir / (name + suffix + ("_custom" if args.set else ""))


def start(args):
    """Set torch's threads, make the output folders; returns the start time."""
    torch.set_num_threads(args.threads)
    args.load_average_at_start = list(os.getloadavg())
    args.work_dir.mkdir(parents=True, exist_ok=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    return time.perf_counter()


def die(message):
    """Stop with a one-line error on stderr (no traceback)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def load(name, data_dir, split="train"):
    """:func:`genmem.data.load_dataset`, or a clear error naming what is missing and where it was looked for.

    ``data_dir`` None searches genmem's defaults (``$GENMEM_DATA_DIR``; for Fashion-MNIST the Debian
    package's folder).
    """
    try:
        return load_dataset(name, data_dir=data_dir, split=split)
    except GenmemError as err:
        die(f"cannot load {name} ({split}) from {data_dir}: {err}")


def subset(dataset, n, seed):
    """A seeded random subset of ``n`` examples of a Dataset (all of them when ``n`` is None or too large)."""
    if n is None or n >= len(dataset):
        return dataset
    idx = np.sort(np.random.default_rng(seed).choice(len(dataset), n, replace=False))
    return replace(dataset, x=dataset.x[idx], labels=dataset.labels[idx], index=dataset.index[idx])


def machine(args):
    """The machine a result was measured on (load averages: the machine is shared)."""
    return {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count(),
            "load_average_at_start": getattr(args, "load_average_at_start", None),
            "load_average_at_end": list(os.getloadavg()), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _clean(value):
    """JSON-ready: containers walked, NumPy arrays and scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value) if isinstance(value, Path) else value


def write_record(path, record, args, t0, settings):
    """Write the script's JSON: its findings, settings, seeds and provenance (machine, versions, command)."""
    record = {**record, "settings": {**settings, "scale": args.scale, "seed": args.seed, "threads": args.threads,
                                     "device": args.device},
              "meta": {**provenance(args.device), "machine": machine(args), "wall_seconds": time.perf_counter() - t0,
                       "command": " ".join(["python"] + sys.argv)}}
    Path(path).write_text(json.dumps(_clean(record), indent=1) + "\n")
    print(f"wrote {path} ({record['meta']['wall_seconds']:.0f} s)")


def bench(name):
    """A benchmark JSON of results/ (or None when it is absent)."""
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def vae_throughput():
    """Measured VAE throughputs (training examples/s, evaluation example x samples/s) and their source.

    From ``results/gpu_check.json`` (its extrapolated full vdb-bmnist time, turned back into rates)
    when a GPU run is recorded there, else from the CPU figures of ``results/bench_kfold_vae.json``
    (genmem's batched trainer, one thread).
    """
    cpu = bench("bench_kfold_vae.json")
    gpu = bench("gpu_check.json")
    measured = gpu is not None and not gpu.get("smoke") and "cuda" in str(gpu.get("device", "")).lower()
    vae = gpu["sections"].get("vae_full", {}).get("eager", {}) if measured else {}
    if "extrapolated_full_seconds" in vae:
        full, seconds = cpu["full_setting"], vae["extrapolated_full_seconds"]
        return (full["models"] * full["epochs"] * full["train_per_model"] / seconds["train"],
                full["models"] * full["n"] * full["num_samples"] / seconds["eval"], "results/gpu_check.json")
    rates = cpu["runs"]["genmem_batched"]
    return (rates["train_examples_per_s"], rates["eval_example_samples_per_s"],
            "results/bench_kfold_vae.json (CPU, 1 thread; no GPU measurement recorded yet)")


def vae_seconds(n, folds, repeats, epochs, samples, eval_rows=None):
    """Expected seconds of a K-fold VAE run from the measured throughputs: (seconds, source)."""
    train_rate, eval_rate, source = vae_throughput()
    units = folds * repeats
    train = units * n * (folds - 1) / folds * epochs / train_rate
    evaluate = units * (n if eval_rows is None else eval_rows) * samples / eval_rate
    return train + evaluate, source


def full_scale_notice(args, lines):
    """For ``--scale full`` without ``--run``: print the expected time and the command, then exit."""
    if args.scale != "full" or args.run:
        return
    print("--scale full (the paper's settings); expected time from the benchmark JSONs:")
    for line in lines:
        print("  " + line)
    print("add --run to run it (on a GPU: --device cuda)")
    sys.exit(0)


def vae_samples(vae, n, seed):
    """``n`` binary images from a fitted Bernoulli VAE: decoder means of z ~ N(0, I) thresholded at 0.5.

    The mean is what the reference's NN test compared (``push(z)``); thresholding it makes the samples
    binary like the images the model scores (``X > 0.5``), so sample and data distances compare alike.
    Reads the fitted network ``vae.net_`` (its decoder returns Bernoulli logits).
    """
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, int(vae.latent_dim), generator=gen).to(next(vae.net_.parameters()))
    with torch.no_grad():
        return (vae.net_.decoder(z) > 0).cpu().numpy().astype(np.float64)


def spearman(a, b):
    """Spearman's rho of two score vectors: {rho, pvalue, n}."""
    rho, p = spearmanr(a, b)
    return {"rho": float(rho), "pvalue": float(p), "n": int(len(a))}


def image_grid(ax, images, ncols, title):
    """Tile images [n, H, W] (values in [0, 1]) into one greyscale mosaic on ``ax``."""
    images = np.asarray(images, dtype=np.float32)
    n, h, w = images.shape
    nrows = -(-n // ncols)
    mosaic = np.zeros((nrows * (h + 1) + 1, ncols * (w + 1) + 1), dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        mosaic[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = img
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def savefig(fig, path):
    """Save a figure as a modest PNG and close it."""
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")
