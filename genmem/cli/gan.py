"""``genmem gan``: train the built-in GAN with memorization rejection and evaluate it, or sweep τ."""
import contextlib
import hashlib
import importlib.util
import json
from pathlib import Path

import click
import numpy as np

from ..device import DEVICES, resolve_device
from ..errors import GenmemError
from ..gan import evaluate_gan, load_gan_data, sweep_tau, train_gan, write_gan
from ..gan.nets import ARCHS
from ..gan.rejection import DEFAULT_MAX_TRIES, MODES
from ..gan.metrics import check_sample_memory
from ..gan.train import LOSSES
from ..neighbours import NeighbourBank
from ..neighbours.copying import DEFAULT_MIN_GENERATED
from ..outputs import check_folder, claim, output_lock, write_json, write_png
from ..plots import plot_tau_sweep
from .figures import save_figure, use_agg
from ..results.provenance import jsonable, provenance


def _seeds(ctx, param, value):
    if value is None:
        return None
    try:
        seeds = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        seeds = [-1]
    if not seeds or min(seeds) < 0:
        raise click.BadParameter(f"expected comma-separated integer seeds >= 0 such as 0,1,2; got {value!r}")
    return seeds


def parse_tau_list(spec):
    """``"0,0.5x,1x,auto,0.12"`` → a list of τ specs (strings; validated against a bank by resolve_tau)."""
    items = [item.strip() for item in str(spec).split(",") if item.strip()]
    if not items:
        raise GenmemError(f"give the thresholds to sweep as a comma-separated list such as 0,0.5x,1x,1.5x; "
                          f"got {spec!r}")
    return items


def _tau(value):
    """None for 'none'/'off', else the spec as given (validated by resolve_tau)."""
    return None if value.strip().lower() in ("none", "off") else value


@click.command()
@click.option("--dataset", default="digits", show_default=True,
              help="digits, mnist, fashion-mnist, cifar10, npz:PATH, npy:PATH or folder:PATH (images).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder holding the dataset's files.")
@click.option("--limit", type=int, help="Train on the first N training images only.")
@click.option("--test-fraction", type=float,
              help="Hold out this share of the training split as the test set [default: 0.2 for datasets "
                   "without a test split (digits, .npy), else the dataset's test split].")
@click.option("--split-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the hold-out test set.")
@click.option("--embed", default="pixels", show_default=True,
              help="Feature map of the neighbour bank (rejection, C_T, FD_f): pixels, pca:D or imagenet:ARCH:WEIGHTS.")
@click.option("--tau", default="auto", show_default=True,
              help="Rejection threshold: auto (mean leave-one-out NN distance), <factor>x, a number in [0, 2), "
                   "or none.")
@click.option("--sweep-tau", help="Train one model per threshold of this list (e.g. 0,0.5x,1x,1.5x) and write the "
                                  "FD_f-vs-C_T table (JSON) and plot (PNG).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the model, its training, its evaluation and the neighbour bank's feature map.")
@click.option("--seeds", callback=_seeds,
              help="Sweep: comma-separated seeds, one model per seed and τ; the first also seeds the neighbour "
                   "bank's feature map [default: --seed].")
@click.option("--mode", type=click.Choice(MODES), default="resample", show_default=True,
              help="resample: refill the batch with accepted samples; mask: drop rejected samples from the loss.")
@click.option("--max-tries", default=DEFAULT_MAX_TRIES, show_default=True,
              help="Batches examined per generator step at most.")
@click.option("--reject-in-discriminator", is_flag=True, help="Also reject the discriminator's fake samples.")
@click.option("--steps", default=2000, show_default=True, help="Generator updates.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--n-dis", default=1, show_default=True, help="Discriminator updates per generator update.")
@click.option("--loss", type=click.Choice(LOSSES), default="ns", show_default=True,
              help="Non-saturating (ns) or hinge GAN loss.")
@click.option("--lr", default=2e-4, show_default=True, help="Adam learning rate (both networks).")
@click.option("--beta1", default=0.5, show_default=True)
@click.option("--beta2", default=0.999, show_default=True)
@click.option("--z-dim", default=64, show_default=True)
@click.option("--width", type=int, help="DCGAN base channels [64] or MLP hidden units [128].")
@click.option("--arch", type=click.Choice(ARCHS), default="auto", show_default=True,
              help="auto: DCGAN for 28x28 and 32x32 images, MLP otherwise.")
@click.option("--n-samples", type=int, help="Generated samples to evaluate [default: as many as test images].")
@click.option("--cells", "n_cells", type=int, help="k-means cells of C_T [default: one per 100 test images, 1..50].")
@click.option("--inception", type=click.Path(dir_okay=False),
              help="Local torchvision inception_v3 weights: also report an Inception FID (needs torchvision).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False),
              help="Output: the run's HDF5 file [gan.h5], or with --sweep-tau the JSON table [gan_tau_sweep.json].")
@click.option("--plot", type=click.Path(dir_okay=False), help="Sweep: the PNG plot [--out with suffix .png].")
@click.option("--log-every", default=0, show_default=True, help="Log training progress every N steps (with -v).")
@click.option("--force", is_flag=True, help="Replace existing output files that hold another run.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def gan(dataset, data_dir, limit, test_fraction, split_seed, embed, tau, sweep_tau, seed, seeds, mode, max_tries,
        reject_in_discriminator, steps, batch_size, n_dis, loss, lr, beta1, beta2, z_dim, width, arch, n_samples,
        n_cells, inception, device, out, plot, log_every, force, as_json):
    """Train a GAN with memorization rejection (Bai et al. 2022), then evaluate the unrejected generator.

    Samples are compared with held-out test images in the neighbour bank's
    feature space: the data-copying test C_T (≪ 0: copying; ≫ 0: too far
    from the training data), the Fréchet distance FD_f, NN-distance
    histograms; the training's rejection-rate curve is stored too. Digits has
    no test split: a seeded 20% of it is held out (--split-seed).
    """
    if inception is not None and not Path(inception).is_file():
        raise GenmemError(f"Inception weights file {inception} does not exist; give a local torchvision "
                          "inception_v3 state dict (genmem never downloads)")
    if inception is not None and importlib.util.find_spec("torchvision") is None:
        raise GenmemError("--inception needs torchvision, which is not installed; pip install torchvision or drop "
                          "--inception")
    if sweep_tau is not None and out is not None and Path(out).suffix.lower() != ".json":
        raise GenmemError(f"with --sweep-tau, --out is the JSON table; give a path ending in .json, not {out}")
    if n_samples is not None and n_samples <= DEFAULT_MIN_GENERATED:
        raise GenmemError(f"--n-samples must be more than {DEFAULT_MIN_GENERATED} (C_T's threshold τ_C = "
                          f"{DEFAULT_MIN_GENERATED}/m); got {n_samples}")
    if n_cells is not None and n_cells < 1:
        raise GenmemError(f"--cells must be a positive integer; got {n_cells}")
    out = Path(out or ("gan.h5" if sweep_tau is None else "gan_tau_sweep.json"))
    plot = None if sweep_tau is None else Path(plot) if plot else out.with_suffix(".png")
    outputs = [(out, "--out", None)] + [(plot, "--plot", (".png",))] * (plot is not None)
    for path, option, _ in outputs:
        check_folder(path, option)
    data = load_gan_data(dataset, data_dir=data_dir, limit=limit, test_fraction=test_fraction,
                         split_seed=split_seed)
    if n_cells is not None and n_cells > len(data.train):
        raise GenmemError(f"--cells {n_cells} exceeds the {len(data.train)} training images; choose fewer cells")
    check_sample_memory(len(data.test) if n_samples is None else n_samples, data.test.shape[1:])
    identity = _identity(click.get_current_context().params, data)
    inputs = [dataset.rpartition(":")[2], inception, embed.rpartition(":")[2]]
    for path, option, suffixes in outputs:
        claim(path, identity, force=force, inputs=inputs, option=option, suffixes=suffixes)
    with output_lock(out), output_lock(plot) if plot is not None else contextlib.nullcontext():
        if data.info["test_source"] == "holdout":
            click.echo(f"{dataset}: no test split used; held out a seeded {data.info['test_fraction']:g} "
                       f"({data.info['n_test']} images, split seed {split_seed}) as the test set", err=True)
        _gan(data, embed, tau, sweep_tau, seed, seeds, steps, n_samples, n_cells, inception, device, out,
             plot, as_json, identity, mode=mode, max_tries=max_tries, apply_to_discriminator=reject_in_discriminator,
             batch_size=batch_size, n_dis=n_dis, loss=loss, lr=lr, betas=(beta1, beta2), z_dim=z_dim, width=width,
             arch=arch, log_every=log_every)


def _identity(params, data):
    """What determines a GAN command's outputs: its options (not where it writes) and the data's bytes."""
    what = {key: value for key, value in params.items() if key not in ("out", "plot", "force", "as_json", "log_every")}
    what["device"] = resolve_device(params["device"]).type
    digest = hashlib.sha256(json.dumps(jsonable(what), sort_keys=True, default=str).encode())
    for images in (data.train, data.test):
        digest.update(np.ascontiguousarray(images).tobytes())
    return f"gan:{digest.hexdigest()}"


def _gan(data, embed, tau, sweep_tau, seed, seeds, steps, n_samples, n_cells, inception, device, out, plot,
         as_json, identity, **train_args):
    dev = resolve_device(device)
    run_seeds = seeds or [seed]
    bank = NeighbourBank(embed, data.train, metric="cosine", device=dev,
                         seed=run_seeds[0] if sweep_tau is not None else seed)
    train_args["steps"] = steps
    if sweep_tau is not None:
        _sweep(data, bank, sweep_tau, run_seeds, train_args, n_samples, n_cells, inception, dev, out, plot,
               as_json, identity)
        return
    run = train_gan(data.train, tau=_tau(tau), bank=bank, seed=seed, device=dev, **train_args)
    ev = evaluate_gan(run.generator, bank, data.test, n_samples=n_samples, n_cells=n_cells, seed=seed,
                      inception=inception)
    write_gan(out, run, ev, data_info=data.info, train_index=data.train_index, test_index=data.test_index,
              identity=identity)
    click.echo(f"wrote {out}", err=True)
    rate = run.history.get("rejection_rate")
    summary = {**ev.metrics, "tau": run.tau, "tau_auto": run.tau_auto, "train_seconds": run.seconds,
               "rejection_rate_mean": None if rate is None else float(rate.mean()), "out": str(out)}
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    tau_text = "none (no rejection)" if run.tau is None else f"{run.tau:.6g}"
    click.echo(f"τ = {tau_text}  (mean leave-one-out NN distance {run.tau_auto:.6g}); {steps} steps, "
               f"{run.seconds:.1f} s")
    if rate is not None:
        click.echo(f"rejection rate: mean {rate.mean():.4f}, last 10% of steps "
                   f"{rate[-max(1, len(rate) // 10):].mean():.4f}")
    click.echo(f"C_T = {ev.metrics['c_t']:.4f}  ({ev.metrics['n_cells_kept']} of {ev.metrics['n_cells']} cells; "
               f"{ev.metrics['n_generated']} generated vs {ev.metrics['n_test']} test)")
    click.echo(f"FD_f = {ev.metrics['fd_f']:.6g}  (test vs train floor {ev.metrics['fd_f_test_train']:.6g})")
    if "fid_inception" in ev.metrics:
        click.echo(f"FID (torchvision inception_v3) = {ev.metrics['fid_inception']:.6g}")
    click.echo(f"NN distance: generated mean {ev.metrics['nn_generated_mean']:.6g}, "
               f"test mean {ev.metrics['nn_test_mean']:.6g}")


def _sweep(data, bank, spec, seeds, train_args, n_samples, n_cells, inception, device, out, plot, as_json, identity):
    table = sweep_tau(data.train, data.test, parse_tau_list(spec), seeds=seeds, bank=bank, n_samples=n_samples,
                      n_cells=n_cells, inception=inception, device=device, **train_args)
    table["data"] = data.info
    table["meta"] = provenance(device)
    write_json(out, jsonable(table), identity)
    use_agg()
    write_png(plot, lambda path: save_figure(plot_tau_sweep(table), path), identity)
    click.echo(f"wrote {out} and {plot}", err=True)
    if as_json:
        click.echo(json.dumps(table["summary"], indent=1))
        return
    click.echo(f"τ auto (mean leave-one-out NN distance) = {table['tau_auto']:.6g}; seeds {seeds}; "
               f"FD_f floor (test vs train) {table['fd_f_test_train']:.4g}")
    click.echo(f"{'tau':>8} {'value':>8} {'C_T mean':>9} {'± sd':>7} {'FD_f mean':>10} {'± sd':>8} {'rejected':>9}")
    for row in table["summary"]:
        click.echo(f"{row['tau_spec']:>8} {row['tau']:>8.4f} {row['c_t_mean']:>9.3f} {_sd(row['c_t_std']):>7} "
                   f"{row['fd_f_mean']:>10.4g} {_sd(row['fd_f_std'], '.3g'):>8} "
                   f"{row['rejection_rate_mean_mean']:>9.3f}")
    for key, value in table["trend"].items():
        click.echo(f"{key}: rho {value['rho']:.3f} (p {value['pvalue']:.3g}, {value['n_runs']} runs)")


def _sd(value, fmt=".3f"):
    return "-" if value is None else format(value, fmt)
