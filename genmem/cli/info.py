"""``genmem info``: what a results file holds."""
import json

import click
import numpy as np

from ..errors import GenmemError
from ..results import read_result
from ..memorization.verify import verify as verify_result


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--verify", is_flag=True,
              help="Also check the file against its run: data hash, folds, unit seeds, scores recomputed from "
                   "/loglik, the run each view was written for, the per-unit files' hashes.")
def info(file, verify):
    """Show the configuration, provenance and contents of a results FILE."""
    result = read_result(file)
    R, K, N = result.loglik.shape
    click.echo(f"file: {file}")
    click.echo(f"complete: {result.complete} ({int(result.done.sum())} of {result.done.size} units)")
    click.echo(f"examples N={N}, folds K={K}, repeats R={R}, seed {result.config['seed']}")
    click.echo(f"model: {json.dumps(result.config['model'])}")
    click.echo(f"data: {json.dumps(result.config.get('data', {}))}")
    click.echo(f"estimator: {result.config['estimator']}")
    for key in ("created", "genmem_version", "device", "argv", "versions"):
        value = result.meta.get(key, "")
        click.echo(f"{key}: {value if isinstance(value, str) else json.dumps(value)}")
    stored = ["/data/index", "/data/label", "/folds/assignment", "/folds/done", "/loglik"]
    stored += ["/data/x"] * (result.x is not None) + ["/data/images"] * (result.images is not None)
    stored += [f"/scores/{name}" for name in result.scores] + [f"/units/{name}" for name in result.extras]
    stored += [f"/{name}" for name in result.views]
    click.echo("datasets: " + ", ".join(stored))
    if result.complete:
        m = result.memorization
        click.echo(f"memorization: mean {m.mean():.4g}, std {m.std():.4g}, max {m.max():.4g} "
                   f"(row {int(np.argmax(m))})")
    if verify:
        failed = []
        for name, ok, detail in verify_result(result, file):
            click.echo(f"verify {name}: {'ok' if ok else 'n/a' if ok is None else 'FAILED'}{' — ' + detail if detail else ''}")
            if ok is False:
                failed.append(name)
        if failed:
            raise GenmemError(f"{file} failed verification ({', '.join(failed)}); re-run the command that made it")
