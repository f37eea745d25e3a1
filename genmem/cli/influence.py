"""``genmem influence``: influence of training examples, stored as views of a results file."""
import hashlib
import json
import zipfile
from pathlib import Path

import click
import numpy as np
import torch
from scipy.stats import spearmanr

from ..device import DEVICES, resolve_device
from ..distributed import ProcessGroup, rank_device, share, torchrun_world
from ..errors import GenmemError
from ..influence import KFoldTracIn, gather_influence, influence_for
from ..models import KDE, MODELS
from ..models.base import accepts_rng
from ..outputs import check_folder, output_lock
from ..results import add_views
from ..results.provenance import import_qualified, rebuild
from ..memorization.verify import check_stored_data
from ..validation import check_data
from .runs import finished_run

#: Largest influence matrix [N, n_test] stored in a results file.
MAX_STORED = 1 << 27


def influencer(result, file, *, device="auto", seed=0, draws=1, unbiased=False, projection_dim=None, cosine=False,
               chunk_size=16):
    """The object computing influence for the run in ``result``, and a function describing it.

    VAE: TracIn from the units' checkpoints, averaged over the units that
    trained on each example. Any other model is rebuilt from the run's
    configuration (its class imported) and handed to
    :func:`genmem.influence.influence_for`: the KDE's exact closed form on the
    run's data; for the others a model fitted by its own ``fit`` on all of the
    run's data with the run's parameters and root seed, then the GMM's one-step
    approximation, or a custom model's ``influence_estimator`` hook.

    Returns
    -------
    (object with ``self_influence()`` and ``influence(Z)``, callable returning the attributes to store)
    """
    name = result.config["model"]["name"]
    _stored_data(result, file)
    device = str(resolve_device(device))
    if name == "vae":
        inf = KFoldTracIn(result, file, draws=draws, seed=seed, projection_dim=projection_dim,
                          normalize="cosine" if cosine else None, chunk_size=chunk_size, device=device,
                          unbiased=unbiased)
        return inf, inf.attrs
    if unbiased or projection_dim is not None or draws != 1 or cosine:
        raise GenmemError(f"--unbiased, --draws, --cosine and --projection-dim apply to VAE runs; {file} is a {name} run")
    model = _run_model(result)
    if "device" in model.get_params(deep=False):
        model.set_params(device=device)
    fit_seed = int(result.config["seed"])
    described = {}
    if not isinstance(model, KDE):
        model = model.fit(result.x, rng=fit_seed) if accepts_rng(model.fit) else model.fit(result.x)
        described = {"fit": f"{type(model).__name__} fitted on all rows with the run's parameters",
                     "fit_seed": fit_seed}
        if hasattr(model, "converged_"):
            described["converged"] = bool(model.converged_)
    inf = influence_for(model, result.x, rng=fit_seed, device=device)
    method = inf.attrs() if callable(getattr(inf, "attrs", None)) else {"method": type(inf).__name__}
    return inf, lambda: {**method, **described}


def _run_model(result):
    """A new, unfitted model of the run: a registered model from its name, any other from its recorded class."""
    spec = result.config["model"]
    if spec["name"] in MODELS:
        return MODELS[spec["name"]](**spec["params"])
    if "class" not in spec:
        raise GenmemError(f"the run records no class for its model {spec['name']!r}; re-run it with this genmem")
    what = f"the model {spec['name']!r}"
    cls = import_qualified(spec["class"], f"the class of {what}")
    return cls(**rebuild(spec["params"], f"a parameter of {what}"))


def _stored_data(result, file):
    """The run's data [N, D]; an error if the results file does not store it."""
    if result.x is None:
        raise GenmemError(f"{file} stores no data (/data/x); re-run 'genmem kfold' without --no-store-data")
    return result.x


def _test_rows(values, n):
    rows = []
    for value in values:
        for part in str(value).split(","):
            try:
                rows.append(int(part))
            except ValueError:
                raise GenmemError(f"--test-index takes row numbers, e.g. --test-index 3,17; got {part!r}") from None
    bad = [r for r in rows if not 0 <= r < n]
    if bad:
        raise GenmemError(f"--test-index {bad[0]} is out of range; the run has rows 0 to {n - 1}")
    return rows


def _load_test_data(path, n_features):
    path = Path(path)
    if not path.is_file():
        raise GenmemError(f"no such file: {path}; --test-data takes a .npy or .npz array [n, {n_features}]")
    try:
        loaded = np.load(path, allow_pickle=False)
        keys = None
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                keys = list(loaded.keys())
                if len(keys) == 1 or "x" in keys:
                    loaded = loaded["x" if "x" in keys else keys[0]]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise GenmemError(f"{path} cannot be read as .npy or .npz ({exc or 'empty file'}); store a numeric array "
                          "with numpy.save") from None
    if not isinstance(loaded, np.ndarray):
        raise GenmemError(f"{path} holds arrays {keys}; store the test points alone or under the name 'x'")
    if loaded.dtype.kind not in "biuf" or loaded.ndim != 2 or loaded.shape[1] != n_features:
        raise GenmemError(
            f"test data {path} holds {loaded.dtype} {loaded.shape} but the run's data has {n_features} features; "
            f"give a numeric array [n, {n_features}] preprocessed like the run's data"
        )
    return check_data(loaded, name="test data", n_features=n_features)


def _test_points(result, file, test_index, test_data):
    """The checked test points ``Z`` [n_test, D], their source (attributes to store) and run rows (or None)."""
    n, d = _stored_data(result, file).shape
    if test_index:
        rows = _test_rows(test_index, n)
        Z, source = result.x[rows], {"test_rows": rows}
    else:
        rows = None
        Z = _load_test_data(test_data, d)
        source = {"test_data": str(Path(test_data).resolve()),
                  "test_data_sha256": hashlib.sha256(np.ascontiguousarray(Z).tobytes()).hexdigest()}
    if n * len(Z) > MAX_STORED:
        raise GenmemError(f"{len(Z)} test points x {n} examples is too large to store; pass fewer test points")
    return Z, source, rows


def _row_info(result, i, score):
    return {"row": int(i), "index": int(result.index[i]), "label": int(result.labels[i]), "score": float(score)}


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--self", "self_", is_flag=True, help="Self-influence of every example, stored as /influence/self.")
@click.option("--test-index", multiple=True, metavar="I[,I...]",
              help="Rows of the run to use as test points (repeatable, or comma-separated).")
@click.option("--test-data", type=click.Path(dir_okay=False),
              help="Test points: a .npy/.npz array [n, D], preprocessed like the run's data.")
@click.option("-k", "top_k", default=10, show_default=True, help="Proponents and opponents listed per test point.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="VAE: seed of the fixed ε draws.")
@click.option("--draws", default=1, show_default=True, help="VAE: ε draws per example in the −ELBO.")
@click.option("--unbiased", is_flag=True,
              help="VAE: unbiased self-influence (gradients under two independent ε draws).")
@click.option("--cosine", is_flag=True,
              help="VAE: gradient-normalised TracIn (cosine of gradients; self-influence needs --unbiased).")
@click.option("--projection-dim", type=int, help="VAE: random projection of gradients for test influence.")
@click.option("--chunk-size", default=16, show_default=True,
              help="VAE: examples per gradient chunk (larger on a GPU, e.g. 256).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def influence(file, self_, test_index, test_data, top_k, device, seed, draws, unbiased, cosine, projection_dim,
              chunk_size, as_json):
    """Influence of the training examples of a results FILE, stored in it as views.

    IF(x, z) = ℓ(z; D without x) − ℓ(z; D), ℓ = −log p (−ELBO for a VAE):
    positive for proponents. --self writes /influence/self [N] (rank with
    'genmem top FILE --by influence/self'); --test-index/--test-data write
    /influence/test [N, n_test] and list the top proponents and opponents.
    Under torchrun (torchrun --nproc-per-node P -m genmem influence FILE
    --self), a VAE run's units are shared among the processes and rank 0
    writes the same values a single process would.
    """
    if not (self_ or test_index or test_data):
        raise GenmemError("nothing to do: pass --self, --test-index I or --test-data PATH")
    if test_index and test_data:
        raise GenmemError("pass either --test-index or --test-data, not both")
    if top_k < 1:
        raise GenmemError(f"-k must be at least 1; got {top_k}")
    world = torchrun_world()
    if world is not None:
        device = rank_device(str(resolve_device(device)), world)
    args = (file, self_, test_index, test_data, top_k, device, seed, draws, unbiased, cosine, projection_dim,
            chunk_size, as_json, world)
    if world is not None and not world.root:  # under torchrun, ranks > 0 only compute a share of the units
        _influence(*args)
        return
    check_folder(file, "FILE")  # the views are written into FILE: its folder must be writable
    with output_lock(file):
        _influence(*args)


def _self_influence(inf, world, device):
    """Self-influence of every example; under torchrun, the units' shares pooled on rank 0 (None elsewhere)."""
    if world is None or not isinstance(inf, KFoldTracIn):
        return inf.self_influence() if world is None or world.root else None
    with ProcessGroup(world, device) as group:
        parts = group.gather(inf.unit_self_influences(share(list(inf.files), world.rank, world.size)))
    if not world.root:
        return None
    return inf.self_influence(per_unit={key: value for part in parts for key, value in part.items()})


def _influence(file, self_, test_index, test_data, top_k, device, seed, draws, unbiased, cosine, projection_dim,
               chunk_size, as_json, world):
    root = world is None or world.root
    result = finished_run(file)
    check_stored_data(result, file)
    testing = bool(test_index or test_data)
    if testing:  # checked before any computation
        Z, source, rows = _test_points(result, file, test_index, test_data)
    inf, describe = influencer(result, file, device=device, seed=seed, draws=draws, unbiased=unbiased,
                               projection_dim=projection_dim, cosine=cosine, chunk_size=chunk_size)
    report, views, attrs = {}, {}, {}
    if self_:
        values = _self_influence(inf, world, device)
        if not root:
            return
        self_attrs = describe()
        rho = float(spearmanr(values, result.memorization)[0])
        views["influence/self"] = values
        attrs["influence/self"] = {**self_attrs, "spearman_memorization": rho}
        order = np.argsort(-values, kind="stable")[:top_k]
        report["self"] = {"attrs": self_attrs, "spearman_memorization": rho, "mean": float(values.mean()),
                          "max": float(values.max()), "top": [_row_info(result, i, values[i]) for i in order]}
    if not root:
        return
    if testing:
        matrix = inf.influence(Z)
        views["influence/test"] = matrix.T
        attrs["influence/test"] = {**describe(), **source}
        top = gather_influence([(slice(0, len(Z)), torch.as_tensor(matrix))], len(Z), len(result.x), top_k)
        report["test"] = [
            {"test": j if test_data else rows[j],
             "proponents": [_row_info(result, i, s) for i, s in zip(top.proponents[j], top.proponent_scores[j])],
             "opponents": [_row_info(result, i, s) for i, s in zip(top.opponents[j], top.opponent_scores[j])]}
            for j in range(len(Z))]
    add_views(file, views, attrs, fingerprint=result.config["fingerprint"])
    _print(report, file, as_json, bool(test_data))


def _print(report, file, as_json, external):
    if as_json:
        click.echo(json.dumps(report, indent=1))
        return
    if "self" in report:
        s = report["self"]
        click.echo(f"wrote /influence/self to {file} ({s['attrs']['method']}); "
                   f"mean {s['mean']:.4g}, max {s['max']:.4g}")
        click.echo(f"Spearman correlation of self-influence with memorization M: {s['spearman_memorization']:.4f}")
        click.echo(f"{'rank':>4} {'row':>6} {'index':>6} {'label':>5} {'self-inf':>12}")
        for rank, row in enumerate(s["top"], start=1):
            click.echo(f"{rank:>4} {row['row']:>6} {row['index']:>6} {row['label']:>5} {row['score']:>12.5g}")
        click.echo(f"next: genmem top {file} --by influence/self")
    for entry in report.get("test", []):
        what = f"test point {entry['test']} of --test-data" if external else f"test point: row {entry['test']}"
        click.echo(what)
        for side in ("proponents", "opponents"):
            click.echo(f"  {side}:")
            for rank, row in enumerate(entry[side], start=1):
                click.echo(f"  {rank:>4} row {row['row']:>6} index {row['index']:>6} label {row['label']:>3} "
                           f"IF {row['score']:>12.5g}")
    if "test" in report:
        click.echo(f"wrote /influence/test [N, {len(report['test'])}] to {file}")
