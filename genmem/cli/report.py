"""``genmem report``: one run's per-example scores, summarised and compared."""
import json
import warnings
from pathlib import Path

import click
import numpy as np

from ..memorization.checks import warn_implausible_scores
from ..models.vae.evaluate import warn_collapsed
from ..outputs import atomic_path, claim, output_lock
from ..neighbours import compare_with_scores
from ..validation import check_int
from .runs import finished_run
from .top import claim_plot, write_plot


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-n", "count", default=10, show_default=True,
              help="Size of the top sets whose overlap is reported, and of the --html page's top and bottom "
                   "grids (at most the number of examples).")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Write a PNG: memorization against each view (a histogram of it when there are none).")
@click.option("--html", "page", type=click.Path(dir_okay=False),
              help="Write one self-contained HTML page: config and provenance, M histogram, top and bottom "
                   "examples with scores and standard errors, M against every view, agreement, warnings.")
@click.option("--force", is_flag=True, help="Replace an existing --plot/--html file that is not one of this run.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def report(file, count, plot, page, force, as_json):
    """Summarise a results FILE: the run, score summaries, rank agreement between scores."""
    check_int(count, "-n")
    result = finished_run(file)
    if plot:
        claim_plot(plot, result, file, force)
    if page:
        claim(page, _page_identity(result), force=force, inputs=[file], option="--html", suffixes=(".html", ".htm"))
    summary = report_dict(result, count)
    if as_json:
        click.echo(json.dumps({"file": str(file), **summary}, indent=1))
    else:
        run = summary["run"]
        click.echo(f"run: model {run['model']}, dataset {run['dataset']}, N={run['N']}, K={run['K']}, "
                   f"R={run['R']}, estimator {run['estimator']}")
        click.echo(f"{'score':<24} {'mean':>11} {'median':>11} {'min':>11} {'max':>11}")
        for name, stats in summary["summaries"].items():
            click.echo(f"{name:<24} " + " ".join(f"{stats[key]:>11.4g}" for key in ("mean", "median", "min", "max")))
        for pair in summary["pairs"]:
            click.echo(f"spearman {pair['a']} vs {pair['b']}: {pair['spearman']:.4f} (p={pair['pvalue']:.3g}), "
                       f"top-{pair['top']} overlap {pair['top_overlap']:.2f}")
        if summary["mean_stderr"] is not None:
            click.echo(f"mean standard error of memorization over R={run['R']} repeats: {summary['mean_stderr']:.4g}")
    if plot:
        from ..plots import plot_report
        from .figures import save_figure, use_agg

        use_agg()
        views = {name: result.values(name) for name in summary["summaries"] if name != "memorization"}
        write_plot(plot, result, lambda path: save_figure(plot_report(result.memorization, views), path))
        click.echo(f"wrote {plot}", err=True)
    if page:
        _write_page(page, result, summary, file, count)
        click.echo(f"wrote {page}", err=True)


def _page_identity(result):
    return f"report:{result.config['fingerprint']}"


def _write_page(page, result, summary, file, count):
    """The HTML report page, with the warnings the numbers raise (also printed once, as every warning)."""
    from ..plots.page import report_page

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_implausible_scores(result.memorization, result.x, result.assignment)
        if "ess" in result.extras:
            repeats, folds = result.done.shape
            labels = [f"unit (repeat {r}, fold {k})" for r in range(repeats) for k in range(folds)]
            warn_collapsed(result.extras["ess"].reshape(-1, result.n_examples),
                           result.config["model"]["params"].get("num_samples", "?"), labels)
    notes = [str(w.message) for w in caught]
    for note in notes:
        warnings.warn(note, stacklevel=2)
    text = report_page(result, summary, source=Path(file).name, count=count, warnings=notes,
                       identity=_page_identity(result))
    with output_lock(page), atomic_path(page) as tmp:
        tmp.write_text(text, encoding="utf-8")


def report_dict(result, count):
    """What ``genmem report`` prints, as a JSON-ready dict.

    Parameters
    ----------
    result : KFoldResult
        A complete run.
    count : int
        Size of the top sets compared; clipped to the number of examples.

    Returns
    -------
    dict
        ``run`` (model, dataset, N, K, R, estimator), ``summaries`` (name →
        mean/median/min/max of memorization and of every 1-D view), ``pairs``
        (one row of :func:`genmem.neighbours.compare_with_scores` per pair of
        those arrays, with ``a`` and ``b`` naming them) and ``mean_stderr``
        (mean of the per-example standard error when R > 1, else None).
    """
    R, K, N = result.loglik.shape
    config = result.config
    # per-example scores only: 1-D floating views (not e.g. /neighbours/index, which holds row numbers)
    names = ["memorization"] + sorted(name for name, value in result.views.items()
                                      if np.ndim(value) == 1 and np.issubdtype(np.asarray(value).dtype, np.floating))
    summaries = {}
    for name in names:
        values = np.asarray(result.values(name), dtype=np.float64)
        summaries[name] = {"mean": float(values.mean()), "median": float(np.median(values)),
                           "min": float(values.min()), "max": float(values.max())}
    top = min(count, N)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            row = compare_with_scores(result, result.values(b), names=[a], top=top)[0]
            del row["score"]
            pairs.append({"a": a, "b": b, **row})
    stderr = result.scores.get("stderr")
    return {"run": {"model": config["model"]["name"], "dataset": config.get("data", {}).get("dataset", "array"),
                    "N": N, "K": K, "R": R, "estimator": config["estimator"]},
            "summaries": summaries, "pairs": pairs,
            "mean_stderr": float(np.mean(stderr)) if R > 1 and stderr is not None else None}
