"""``genmem neighbours`` (NN distances of a run's examples) and ``genmem ct`` (the data-copying test)."""
import contextlib
import json
from pathlib import Path

import click
import numpy as np

from ..data import load_dataset, prepare
from ..device import DEVICES
from ..errors import GenmemError
from ..neighbours import NeighbourBank, compare_with_scores, data_copying_test, make_embedder
from ..neighbours.search import METRICS
from ..outputs import check_folder, claim, output_lock
from ..results import add_views
from ..memorization.verify import check_stored_data
from .runs import finished_run

EMBED_HELP = "Feature map: pixels, pca:D, npy:PATH (features of the run's examples, in row order) " \
             "or imagenet:ARCH:WEIGHTS (a local torchvision weights file)."


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--embed", default="pixels", show_default=True, help=EMBED_HELP)
@click.option("--metric", type=click.Choice(METRICS), default="cosine", show_default=True,
              help="NN distance: 1 − cos of L2-normalised features, or Euclidean.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the PCA solver.")
@click.option("--save-bank", type=click.Path(dir_okay=False), help="Also save the neighbour bank to this HDF5 file.")
@click.option("--force", is_flag=True, help="Replace an existing --save-bank file that holds another run's bank.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def neighbours(file, embed, metric, device, seed, save_bank, force, as_json):
    """Leave-one-out NN distance of every example of a results FILE.

    Writes /neighbours/distance [N] and /neighbours/index [N] into FILE and
    prints the threshold guideline τ (mean NN distance) with quantiles and the
    Spearman correlation of the run's scores with the distance.
    """
    check_folder(file, "FILE")  # the views are written into FILE: its folder must be writable
    if save_bank:
        check_folder(save_bank, "--save-bank")
    with output_lock(file), output_lock(save_bank) if save_bank else contextlib.nullcontext():
        _neighbours(file, embed, metric, device, seed, save_bank, force, as_json)


def _neighbours(file, embed, metric, device, seed, save_bank, force, as_json):
    result = finished_run(file)
    check_stored_data(result, file)
    identity = f"neighbour-bank:{result.config['fingerprint']}"
    if save_bank:
        claim(save_bank, identity, force=force, inputs=[file, embed.rpartition(":")[2]], option="--save-bank")
    if embed.startswith("npy:"):
        bank = NeighbourBank(embed, device=device, metric=metric)
        if bank.n_points != result.n_examples:
            raise GenmemError(f"{embed[4:]} has {bank.n_points} rows but {file} has {result.n_examples} examples; "
                              "give one feature row per example, in the run's order")
    else:
        examples = result.images if embed.startswith("imagenet") or result.x is None else result.x
        if examples is None:
            raise GenmemError(f"{file} stores no examples (made with --no-store-data); re-run 'genmem kfold' "
                              "without it or give --embed npy:PATH")
        bank = NeighbourBank(embed, examples, metric=metric, device=device, seed=seed)
    distance, index = bank.loo_distances()
    tau = bank.mean_nn_distance()
    quantiles = bank.nn_distance_quantiles()
    add_views(file, {"neighbours/distance": distance, "neighbours/index": index},
              attrs={"neighbours": {"embedder": bank.embedder_description, "metric": metric, "tau": tau,
                                    "tau_rule": "mean leave-one-out NN distance of the training set",
                                    "quantiles": quantiles, "leave_one_out": True}},
              fingerprint=result.config["fingerprint"])
    if save_bank:
        bank.save(save_bank, identity=identity)
        click.echo(f"wrote {save_bank}", err=True)
    comparison = compare_with_scores(result, distance)
    if as_json:
        click.echo(json.dumps({"file": str(file), "embedder": bank.embedder_description, "metric": metric,
                               "tau": tau, "quantiles": quantiles, "comparison": comparison}, indent=1))
        return
    click.echo(f"wrote /neighbours/distance and /neighbours/index to {file}")
    click.echo(f"feature map {bank.embedder_description.get('spec', bank.embedder_description['name'])} "
               f"({bank.dim} dims), metric {metric}, {bank.n_points} examples")
    click.echo(f"τ guideline (mean leave-one-out NN distance): {tau:.6g}")
    click.echo("quantiles: " + ", ".join(f"{q:g}: {v:.6g}" for q, v in quantiles.items()))
    click.echo(f"{'score':<16} {'spearman':>9} {'p-value':>10} {'top-n overlap':>14}")
    for row in comparison:
        click.echo(f"{row['score']:<16} {row['spearman']:>9.4f} {row['pvalue']:>10.3g} "
                   f"{row['top_overlap']:>9.2f} (n={row['top']})")


def _points(spec, split, data_dir):
    """Flattened float64 points from an array file (as stored) or a named dataset (scaled to [0, 1])."""
    spec = str(spec)
    if spec.startswith(("npy:", "npz:")) or Path(spec).suffix in (".npy", ".npz"):
        try:
            data = load_dataset(spec, split=split)
        except GenmemError:
            if split == "train":
                raise
            data = load_dataset(spec, split="train")  # a file without split arrays holds one set
        return data.x.reshape(len(data.x), -1).astype(np.float64)
    return prepare(load_dataset(spec, data_dir=data_dir, split=split)).X


@click.command()
@click.option("--train", "train_spec", required=True,
              help="Training data: a dataset name (its train split, scaled to [0, 1]) or an .npy/.npz file.")
@click.option("--test", "test_spec", required=True,
              help="Test data: a dataset name (its test split) or an .npy/.npz file (x_test if present).")
@click.option("--generated", required=True, help="Generated samples: an .npy/.npz file, in the training data's space.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder holding named datasets' files.")
@click.option("--embed", default="pixels", show_default=True,
              help="Feature map applied to all three sets: pixels or pca:D (fitted on train).")
@click.option("--cells", "n_cells", default=5, show_default=True, help="k-means cells.")
@click.option("--min-frac", type=float, help="τ_C: keep cells whose generated share exceeds it [default: 20/m].")
@click.option("--metric", type=click.Choice(METRICS), default="euclidean", show_default=True)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of k-means (and PCA).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def ct(train_spec, test_spec, generated, data_dir, embed, n_cells, min_frac, metric, seed, device, as_json):
    """The data-copying test C_T (Meehan, Chaudhuri & Dasgupta 2020).

    C_T ≪ 0: the generated samples are closer to the training data than test
    data are (copying); C_T ≫ 0: farther (underfitting); C_T ≈ 0: neither.
    Arrays are used as stored; named datasets are scaled to [0, 1] like
    'genmem kfold' does, so give generated samples on that scale.
    """
    train = _points(train_spec, "train", data_dir)
    test = _points(test_spec, "test", data_dir)
    gen = _points(generated, "train", data_dir)
    embedder = make_embedder(embed, train, device=device, seed=seed)
    res = data_copying_test(embedder.embed(train), embedder.embed(test), embedder.embed(gen), n_cells=n_cells,
                            min_frac=min_frac, rng=seed, metric=metric, device=device)
    if as_json:
        click.echo(json.dumps({**res.to_dict(), "embedder": embedder.description, "n_train": len(train),
                               "n_test": len(test), "n_generated": len(gen)}, indent=1))
        return
    click.echo(f"C_T = {res.c_t:.4f}  ({res.n_kept} of {n_cells} cells kept: generated share > τ_C = "
               f"{res.min_frac:.4g}; metric {metric}; {len(train)} train, {len(test)} test, {len(gen)} generated)")
    click.echo(f"{'cell':>4} {'n_train':>8} {'n_test':>7} {'n_gen':>7} {'weight':>7} {'gen_share':>9} "
               f"{'U':>12} {'Z_U':>9} {'kept':>5}")
    for row in res.table():
        z = f"{row['z_u']:>9.3f}" if row["n_generated"] else f"{'-':>9}"
        click.echo(f"{row['cell']:>4} {row['n_train']:>8} {row['n_test']:>7} {row['n_generated']:>7} "
                   f"{row['test_share']:>7.3f} {row['generated_share']:>9.4f} {row['u']:>12.1f} {z} "
                   f"{'yes' if row['kept'] else 'no':>5}")
