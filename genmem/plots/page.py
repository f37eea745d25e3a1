"""One self-contained HTML page of a run (``genmem report FILE --html PAGE``): figures inline, no other files.

The figures are drawn on matplotlib ``Figure`` objects with the Agg canvas
directly (no ``pyplot``, so the caller's backend is untouched) and embedded
as base64 PNG; the page needs no network, script or stylesheet from elsewhere.
"""
import base64
import html
import io
import json

import numpy as np

from ..results.tables import example_rows
from .embedding import plot_embedding
from .grid import plot_examples
from .report import plot_report

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}img{max-width:100%;display:block;margin:.5em 0}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}.warn{color:#8a4b00;background:#fff6e5;
padding:.4em .8em;border-left:4px solid #e0a000;margin:.3em 0}
"""


def _png(draw, shape, size):
    """A PNG (base64 text) of a new Agg figure of ``shape`` (rows, cols) Axes drawn by ``draw(axes)``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    axes = fig.subplots(*shape, squeeze=False).reshape(-1)
    draw(axes)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(data, alt):
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header, rows, left=1):
    """An HTML table: ``header`` names, ``rows`` of cells (the first ``left`` columns left-aligned)."""
    cls = lambda j: ' class="l"' if j < left else ""  # noqa: E731
    head = "".join(f"<th{cls(j)}>{html.escape(str(h))}</th>" for j, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{cls(j)}>{html.escape(_fmt(c))}</td>" for j, c in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _examples(result, rows):
    """Figure of the examples ``rows`` (:func:`example_rows` dicts): an image grid, or their place among all rows."""
    n = len(rows)
    is_images = result.images is not None and result.images.ndim >= 3
    shape = (-(-n // 10), min(n, 10)) if is_images else (1, 1)
    size = (1.3 * shape[1], 1.75 * shape[0]) if is_images else (7, 5)

    def draw(axes):
        if is_images:
            captions = [f"#{r['index']}\nM={r['score']:.1f}" + (f"±{r['stderr']:.1f}" if "stderr" in r else "")
                        for r in rows]
            plot_examples(result.images[[r["row"] for r in rows]], captions, axes=axes)
        else:
            X = result.x if result.x is not None else result.images
            plot_embedding(X, result.memorization, highlight=[r["row"] for r in rows], score_name="memorization",
                           ax=axes[0], annotations=[f"#{r['index']}" for r in rows])

    return _png(draw, shape, size)


def report_page(result, summary, *, source="", count=20, warnings=(), identity=None):
    """The HTML text of the report page of a complete run.

    Parameters
    ----------
    result : KFoldResult
    summary : dict
        What ``genmem report`` prints (:func:`genmem.cli.report.report_dict`:
        run, summaries, pairs, mean_stderr).
    source : str
        The results file's name, for the title.
    count : int, default=20
        Examples shown in the top and bottom grids.
    warnings : sequence of str
        Warnings about the numbers, shown in their own section.
    identity : str, optional
        Recorded in a comment at the top (which run the page shows).

    Returns
    -------
    str
    """
    count = min(count, result.n_examples)
    m = result.memorization
    views = {name: result.values(name) for name in summary["summaries"] if name != "memorization"}
    views["loglik_out (held-out log p)"] = result.scores["loglik_out"]
    run = summary["run"]
    parts = [f"<h1>genmem report: {html.escape(str(source))}</h1>",
             f"<p>model <b>{html.escape(run['model'])}</b> on {html.escape(str(run['dataset']))}: N={run['N']}, "
             f"K={run['K']}, R={run['R']}, estimator {html.escape(run['estimator'])}</p>"]
    parts.append("<h2>Warnings</h2>" + ("".join(f'<p class="warn">{html.escape(w)}</p>' for w in warnings)
                                         if warnings else "<p>none</p>"))
    parts.append("<h2>Memorization M</h2>" + _img(_png(lambda ax: plot_report(m, {}, axes=ax), (1, 1), (6, 3.5)),
                                                  "histogram of M"))
    parts.append(_table(["score", "mean", "median", "min", "max"],
                        [[name, *(s[k] for k in ("mean", "median", "min", "max"))]
                         for name, s in summary["summaries"].items()]))
    if summary["mean_stderr"] is not None:
        parts.append(f"<p>mean standard error of M over R={run['R']} repeats: {summary['mean_stderr']:.4g}</p>")
    top = example_rows(result, result.top(count))
    bottom = example_rows(result, np.argsort(m, kind="stable")[:count])
    for name, rows, what in (("top", top, "most"), ("bottom", bottom, "least")):
        parts.append(f"<h2>The {count} {what} memorized examples</h2>"
                     + _img(_examples(result, rows), f"{name} examples"))
        parts.append(_table(["rank", "row", "index", "label", "M", "SE", "log p in", "log p out"],
                            [[r["rank"], r["row"], r["index"], r.get("label_name", r["label"]), r["score"],
                              r.get("stderr", ""), r["loglik_in"], r["loglik_out"]] for r in rows], left=0))
    panels = len(views)
    parts.append("<h2>M against the other views</h2>" + _img(
        _png(lambda ax: plot_report(m, views, axes=ax), (1, panels), (4.2 * panels, 3.6)), "M against each view"))
    if summary["pairs"]:
        parts.append("<h2>Agreement</h2>" + _table(
            ["score a", "score b", "Spearman", "p", "top overlap"],
            [[p["a"], p["b"], p["spearman"], p["pvalue"], f"{p['top_overlap']:.2f} (top {p['top']})"]
             for p in summary["pairs"]], left=2))
    config = json.dumps(result.config, indent=1, sort_keys=True, default=str)
    meta = json.dumps(result.meta, indent=1, sort_keys=True, default=str)
    parts.append(f"<h2>Configuration</h2><pre>{html.escape(config)}</pre>")
    parts.append(f"<h2>Provenance</h2><pre>{html.escape(meta)}</pre>")
    head = "" if identity is None else f"<!-- genmem_identity: {html.escape(identity)} -->\n"
    return (f"<!DOCTYPE html>\n{head}<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>genmem report: {html.escape(str(source))}</title><style>{_STYLE}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")
