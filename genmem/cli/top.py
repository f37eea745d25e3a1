"""``genmem top``: the most memorized examples of a run."""
import json

import click

from ..outputs import claim, output_lock, write_png
from ..results.tables import top_rows
from ..validation import check_int
from .runs import finished_run


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-n", "count", default=20, show_default=True, help="How many examples.")
@click.option("--by", default="memorization", show_default=True,
              help="Score to rank by: memorization, memorization_reference, memorization_balanced, "
                   "or a view such as influence/self or neighbours/distance.")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Write a PNG: the examples' images with their scores (rows of features: all rows in 2-D, "
                   "the top ones ringed).")
@click.option("--force", is_flag=True, help="Replace an existing --plot file that is not a plot of this run.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def top(file, count, by, plot, force, as_json):
    """List the top-memorized examples of a results FILE (highest score first)."""
    check_int(count, "-n")
    result = finished_run(file)
    if plot:
        claim_plot(plot, result, file, force)
    rows = top_rows(result, count, by)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    else:
        has_se = "stderr" in rows[0]
        click.echo(f"{'rank':>4} {'row':>6} {'index':>6} {'label':>5} {by[:12]:>12} {'logp_in':>11} {'logp_out':>11}"
                   + (f" {'stderr':>8}" if has_se else ""))
        for row in rows:
            label = row.get("label_name", row["label"])
            line = (f"{row['rank']:>4} {row['row']:>6} {row['index']:>6} {label!s:>5} {row['score']:>12.4f} "
                    f"{row['loglik_in']:>11.4f} {row['loglik_out']:>11.4f}")
            click.echo(line + (f" {row['stderr']:>8.4f}" if has_se else ""))
    if plot:
        from ..plots import plot_top
        from .figures import save_figure, use_agg

        use_agg()
        write_plot(plot, result, lambda path: save_figure(plot_top(result, count, by), path))
        click.echo(f"wrote {plot}", err=True)


def claim_plot(plot, result, file, force):
    """Check, before any work, that the PNG ``plot`` of the run in ``result`` (read from ``file``) may be written."""
    claim(plot, _plot_identity(result), force=force, inputs=[file], option="--plot", suffixes=(".png",))


def write_plot(plot, result, draw):
    """Write the PNG ``plot`` of the run in ``result`` atomically; ``draw(path)`` saves the figure."""
    with output_lock(plot):
        write_png(plot, draw, _plot_identity(result))


def _plot_identity(result):
    return f"plot:{result.config['fingerprint']}"
