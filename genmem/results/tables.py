"""A run's per-example results as a table: columns, a pandas DataFrame, CSV and Parquet files, the top rows."""
import csv
from pathlib import Path

import numpy as np

from ..errors import GenmemError

#: Score columns in the order tables show them (those a run has).
SCORE_COLUMNS = ("memorization", "stderr", "loglik_in", "loglik_out", "memorization_reference",
                 "memorization_balanced")


def columns(result):
    """Every per-example array of a complete run as named columns of one table.

    Parameters
    ----------
    result : KFoldResult
        A complete run.

    Returns
    -------
    dict of str to ndarray [N]
        ``row`` (0 … N−1), ``index`` (position in the source), ``label``
        (code, −1 unlabelled), ``label_name`` (where the labels have names),
        the scores (:data:`SCORE_COLUMNS` present: M, its standard error,
        the in and out log-likelihoods, both estimators), then every view
        (``influence/self``, ``neighbours/distance``, …); a view with several
        values per example (``influence/test`` [N, n]) gives one column per
        value, ``name[j]``.
    """
    if not result.complete:
        raise GenmemError("the run is unfinished; finish it with the same 'genmem kfold' command before tabulating it")
    n = result.n_examples
    table = {"row": np.arange(n), "index": np.asarray(result.index), "label": np.asarray(result.labels)}
    if result.label_names is not None:
        names = np.array(list(result.label_names) + [""], dtype=object)
        table["label_name"] = names[np.where(result.labels >= 0, result.labels, len(names) - 1)]
    table.update((name, result.scores[name]) for name in SCORE_COLUMNS if name in result.scores)
    for name in sorted(result.views):
        values = np.asarray(result.views[name])
        if values.ndim == 1:
            table[name] = values
        else:
            flat = values.reshape(n, -1)
            table.update((f"{name}[{j}]", flat[:, j]) for j in range(flat.shape[1]))
    return table


def to_dataframe(result):
    """The table of :func:`columns` as a ``pandas.DataFrame`` indexed by row (needs pandas)."""
    try:
        import pandas as pd
    except ImportError:
        raise GenmemError("to_dataframe needs pandas; install it with 'pip install pandas' "
                          "(or use genmem.results.columns for plain arrays)") from None
    return pd.DataFrame(columns(result)).set_index("row")


def write_csv(result, path):
    """Write the table of :func:`columns` to a CSV file (floats with full precision)."""
    table = columns(result)
    with open(Path(path), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(table)
        for row in zip(*(values.tolist() for values in table.values())):
            writer.writerow(row)


def write_parquet(result, path):
    """Write the table of :func:`columns` to a Parquet file (needs pyarrow)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise GenmemError("Parquet output needs pyarrow; install it with 'pip install pyarrow' or write CSV") from None
    table = {name: (values.astype(str) if values.dtype == object else values) for name, values in columns(result).items()}
    pq.write_table(pa.table(table), str(path))


def top_rows(result, count, by):
    """The ``count`` highest-scoring examples of ``result`` as dicts (rank, row, index, label, scores)."""
    return example_rows(result, result.top(count, by=by), by)


def example_rows(result, order, by="memorization"):
    """The examples at rows ``order`` of ``result``, in that order, as dicts (rank, row, index, label, scores)."""
    rows = []
    for rank, i in enumerate(order, start=1):
        row = {"rank": rank, "row": int(i), "index": int(result.index[i]), "label": int(result.labels[i]),
               "score": float(result.values(by)[i]), "loglik_in": float(result.scores["loglik_in"][i]),
               "loglik_out": float(result.scores["loglik_out"][i])}
        if result.label_names is not None and result.labels[i] >= 0:
            row["label_name"] = result.label_names[result.labels[i]]
        if "stderr" in result.scores:
            row["stderr"] = float(result.scores["stderr"][i])
        rows.append(row)
    return rows
