"""``genmem kfold``: leave-out memorization scores by K-fold holdout training."""
import dataclasses
import logging
import sys
from pathlib import Path

import click
import numpy as np
from click.core import ParameterSource

from ..data import load_dataset, prepare
from ..device import DEVICES
from ..distributed import parse_shard, shard_path, torchrun_world
from ..errors import GenmemError
from ..memorization import ESTIMATORS, kfold as run_kfold
from ..models import MODELS, make_model
from ..models.vae import PRESETS
from ..results import read_result
from . import interrupted_exit_code


def _bandwidth(value):
    try:
        return float(value)
    except ValueError:
        return value


def _widths(ctx, param, value):
    if value is None or isinstance(value, tuple):
        return value
    try:
        return tuple(int(w) for w in value.split(",") if w.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated layer widths such as 512,256; got {value!r}") from None


#: VAE options passed to the model only when given (the model's defaults live in the VAE class).
VAE_OPTIONS = ("latent_dim", "hidden", "arch", "likelihood", "epochs", "batch_size", "lr", "num_samples",
               "checkpoints", "eval_every", "tf32", "cuda_graph", "compile")
#: Flow options passed to the model only when given.
FLOW_OPTIONS = ("layers", "hidden", "epochs", "batch_size", "lr")


def _units_per_batch(ctx, param, value):
    if value in (None, "auto"):
        return value
    try:
        units = int(value)
    except ValueError:
        units = 0
    if units < 1:
        raise click.BadParameter(f"expected a positive number of units or 'auto'; got {value!r}")
    return units


def model_params(name, options, prepared):
    """The model constructor arguments the command-line options ask for."""
    if name == "kde":
        return {"bandwidth": _bandwidth(options["bandwidth"])}
    if name == "gmm":
        return {"n_components": options["components"], "covariance_type": options["covariance"],
                "n_init": options["n_init"], "reg_covar": options["reg_covar"], "max_iter": options["max_iter"]}
    if name == "flow":
        return {key: options[key] for key in FLOW_OPTIONS if options[key] is not None}
    params = {key: options[key] for key in VAE_OPTIONS if options[key] is not None}
    if prepared.info.get("binarize") == "dynamic":
        params["binarize"] = "dynamic"
    if prepared.info.get("pca") is None and prepared.images.ndim in (3, 4):
        params["image_shape"] = tuple(prepared.images.shape[1:])
    return params


def _apply_preset(ctx, args):
    """Fill the options the user did not give from ``--preset``."""
    preset = PRESETS[args["preset"]]
    values = {"model_name": "vae", "dataset": preset["dataset"], "folds": preset["folds"],
              "repeats": preset["repeats"], **preset["prepare"],
              **{key: preset["model"][key] for key in VAE_OPTIONS if key in preset["model"]}}
    for key, value in values.items():
        if ctx.get_parameter_source(key) in (None, ParameterSource.DEFAULT):
            args[key] = value


@click.command()
@click.option("--model", "model_name", type=click.Choice(sorted(MODELS)), help="Density model.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)),
              help="Published settings (vdb-bmnist: van den Burg & Williams' BinarizedMNIST VAE); "
                   "options given explicitly override it.")
@click.option("--folds", "-k", default=10, show_default=True, help="K: folds per repeat (2 ≤ K ≤ N).")
@click.option("--repeats", "-r", default=1, show_default=True, help="R: independent fold partitions.")
@click.option("--dataset", default="digits", show_default=True,
              help="digits, mnist, fashion-mnist, binarized-mnist, cifar10, npz:PATH, npy:PATH or folder:PATH.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder holding the dataset's files.")
@click.option("--split", default="train", show_default=True, help="Dataset split to score.")
@click.option("--limit", type=int, help="Use only the first N examples of the split.")
@click.option("--pca", type=int, help="Project onto this many principal components first.")
@click.option("--binarize", type=click.Choice(["fixed", "dynamic"]), help="Binarize pixels (dynamic: VAE only).")
@click.option("--dequantize/--no-dequantize", default=None,
              help="Uniform dequantization of discrete pixel values [default: on for the VAE and the flow on "
                   "grey levels].")
@click.option("--pad-to", type=int, help="Zero-pad square images to this size (e.g. 32).")
@click.option("--bandwidth", default="scott", show_default=True, help="KDE: float, scott, silverman or cv.")
@click.option("--components", default=10, show_default=True, help="GMM: mixture components.")
@click.option("--covariance", type=click.Choice(["full", "diag"]), default="full", show_default=True,
              help="GMM: covariance type.")
@click.option("--n-init", default=1, show_default=True, help="GMM: initialisations, best kept.")
@click.option("--reg-covar", default=1e-6, show_default=True, help="GMM: added to covariance diagonals.")
@click.option("--max-iter", default=100, show_default=True, help="GMM: EM iterations at most.")
@click.option("--latent-dim", type=int, help="VAE: latent size.")
@click.option("--hidden", callback=_widths,
              help="VAE: encoder widths, e.g. 512,256 (decoder mirrors); Flow: widths of each coupling MLP.")
@click.option("--arch", type=click.Choice(["mlp", "conv"]), help="VAE: encoder/decoder architecture.")
@click.option("--likelihood", type=click.Choice(["bernoulli", "logit-normal", "gaussian"]),
              help="VAE: p(x|z) [default: from the data].")
@click.option("--epochs", type=int, help="VAE/Flow: training epochs.")
@click.option("--batch-size", type=int, help="VAE/Flow: minibatch size.")
@click.option("--lr", type=float, help="VAE/Flow: Adam learning rate.")
@click.option("--layers", type=int, help="Flow: affine coupling layers.")
@click.option("--num-samples", type=int, help="VAE: importance samples per example for log p.")
@click.option("--checkpoints", type=int, help="VAE: checkpoints saved per unit (for influence).")
@click.option("--eval-every", type=int, help="VAE: also evaluate log p every E epochs (/units/loglik_epochs).")
@click.option("--tf32/--no-tf32", default=None, help="VAE on CUDA: TF32 float32 matrix products [default: on].")
@click.option("--cuda-graph/--no-cuda-graph", default=None,
              help="VAE on CUDA: replay training steps from one captured CUDA graph [default: on].")
@click.option("--compile/--no-compile", default=None,
              help="VAE: torch.compile the Adam update and random draws into fused kernels [default: off].")
@click.option("--estimator", type=click.Choice(ESTIMATORS), default=ESTIMATORS[0], show_default=True,
              help="Estimator stored as /scores/memorization (both are stored).")
@click.option("--units-per-batch", callback=_units_per_batch,
              help="Units fitted together: a number or auto [default: auto: as many as fit in GPU memory "
                   "for the VAE on CUDA, else K].")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Root seed of folds, models and dequantization.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Results file [default: DATASET-MODEL-kK.h5].")
@click.option("--shard", metavar="I/N",
              help="Run only shard I of N of the units (job arrays), into OUT.shard-I-of-N; then genmem merge OUT.")
@click.option("--force", is_flag=True,
              help="Replace an existing results file of another run (a partial of this same run still resumes).")
@click.option("--restart", is_flag=True, help="Discard this run's own saved progress and start over.")
@click.option("--no-store-data", is_flag=True, help="Do not store the data array and images in the file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def kfold(ctx, **args):
    """Train K×R held-out models and score every example's memorization.

    M_i = log p(x_i | D) − log p(x_i | D without x_i), in nats, estimated from
    the models that trained on x_i and those that held it out.
    """
    if args["preset"]:
        _apply_preset(ctx, args)
    if args["model_name"] is None:
        raise GenmemError("no model chosen; pass --model kde, gmm, vae or flow (or a --preset)")
    _run(**args)


def _run(model_name, preset, folds, repeats, dataset, data_dir, split, limit, pca, binarize, dequantize, pad_to,
         estimator, units_per_batch, seed, device, out, force, restart, shard, no_store_data, quiet, **options):
    if binarize == "dynamic" and model_name != "vae":
        raise GenmemError(f"--binarize dynamic draws fresh binary pixels while training, which only the VAE does; "
                          f"use --binarize fixed with --model {model_name}")
    data = load_dataset(dataset, data_dir=data_dir, split=split)
    if limit is not None:
        if limit < 2:
            raise GenmemError(f"--limit must be at least 2; got {limit}")
        data = dataclasses.replace(data, x=data.x[:limit], labels=data.labels[:limit], index=data.index[:limit])
    if dequantize is None:  # the VAE's logit-normal and the flow need continuous values: dequantize grey levels
        dequantize = model_name in ("vae", "flow") and binarize is None and (data.levels or 0) > 2
    prepared = prepare(data, pca=pca, binarize=binarize, dequantize=dequantize, pad_to=pad_to, seed=seed)
    model = make_model(model_name, **model_params(model_name, options, prepared))
    name = dataset.split(":", 1)[-1]
    out = Path(out or f"{Path(name).stem}-{model_name}-k{folds}.h5")
    world = torchrun_world()
    root = world is None or world.root
    if world is not None:  # a line from every rank at its start and end
        logging.getLogger("genmem.memorization.torchrun").setLevel(logging.INFO)
    if shard is not None:
        shard = parse_shard(shard)
    if root:
        part = "" if shard is None else f", shard {shard[0]}/{shard[1]}"
        ranks = "" if world is None else f", {world.size} torchrun processes"
        click.echo(f"genmem kfold: {model_name} on {dataset} ({prepared.X.shape[0]} examples, "
                   f"{prepared.X.shape[1]} features), K={folds}, R={repeats}, seed {seed}{part}{ranks}", err=True)
    try:
        result = run_kfold(model, prepared.X, folds=folds, repeats=repeats, seed=seed, estimator=estimator,
                           device=device, units_per_batch=units_per_batch, labels=prepared.labels,
                           label_names=prepared.label_names,
                           index=prepared.index, images=prepared.images, data_info=prepared.info,
                           store_data=not no_store_data, out=out, force=force, restart=restart, shard=shard,
                           progress=not quiet, argv=sys.argv)
    except KeyboardInterrupt as exc:
        if root:
            _interrupted(out if shard is None else shard_path(out, *shard), restart)
        sys.exit(interrupted_exit_code(exc))
    if shard is not None:
        click.echo(f"wrote {shard_path(out, *shard)}: {int(result.done.sum())} of {result.done.size} units "
                   f"(shard {shard[0]}/{shard[1]})")
        click.echo(f"next: when every shard is done, genmem merge {out}")
    elif result is not None:  # under torchrun: rank 0
        _summary(result, out)


def _interrupted(out, restart):
    """Say what an interruption kept: the units saved in OUT.partial, if any."""
    partial = out.with_name(out.name + ".partial")
    try:
        done = read_result(partial).done if partial.exists() else None
    except GenmemError:
        done = None
    if done is None or not done.any():
        click.echo("\ninterrupted before any unit was saved; nothing to resume", err=True)
        return
    again = "the same command without --restart" if restart else "the same command"
    click.echo(f"\ninterrupted: {int(done.sum())} of {done.size} units are saved in {partial}; run {again} again "
               "to resume", err=True)


def _summary(result, out):
    m = result.memorization
    params = result.config["model"]["params"]
    shown = ", ".join(f"{k}={v}" for k, v in params.items() if k not in ("device", "dtype", "chunk_size"))
    click.echo(f"wrote {out}")
    click.echo(f"model {result.config['model']['name']} ({shown}); estimator {result.config['estimator']}")
    click.echo(f"memorization M (nats): mean {m.mean():.4g}, median {np.median(m):.4g}, "
               f"min {m.min():.4g}, max {m.max():.4g}")
    click.echo(f"log p held out: mean {result.scores['loglik_out'].mean():.6g}; "
               f"in training: mean {result.scores['loglik_in'].mean():.6g}")
    click.echo(f"next: genmem top {out}")
