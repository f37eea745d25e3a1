"""The top examples of a run by a score: their images, or for tabular rows their place among all rows."""
from ..errors import GenmemError
from ..results.tables import top_rows
from .embedding import plot_embedding
from .grid import plot_examples


def plot_top(result, n=20, by="memorization", *, axes=None):
    """Plot the ``n`` highest-scoring examples of a run.

    Image data (stored images [N, H, W(, C)]): the images in a grid, captioned
    with index, label and score. Tabular data (rows of features): all rows in
    two dimensions (:func:`plot_embedding`), coloured by the score, the top
    ``n`` ringed and labelled with their index.

    Parameters
    ----------
    result : KFoldResult
        A complete run that stores its data or images.
    n : int, default=20
    by : str, default="memorization"
        A score or 1-D view of the run.
    axes : Axes or array of Axes, optional
        Where to draw (a grid of at least ``n`` Axes for images, one Axes for
        tabular rows); default: a new figure.

    Returns
    -------
    ndarray of Axes (images) or Axes (tabular rows)
    """
    rows = top_rows(result, n, by)
    order = [row["row"] for row in rows]
    names = [f" ({row.get('label_name', row['label'])})" if row["label"] >= 0 else "" for row in rows]
    if result.images is not None and result.images.ndim >= 3:
        titles = [f"#{row['index']}{name}\n{by[:3]}={row['score']:.2f}" for row, name in zip(rows, names)]
        return plot_examples(result.images[order], titles, axes=axes)
    X = result.x if result.x is not None else result.images
    if X is None:
        raise GenmemError("the run stores no data or images (made with --no-store-data); re-run without it to plot")
    return plot_embedding(X, result.values(by), highlight=order, score_name=by, ax=axes,
                          annotations=[f"#{row['index']}{name}" for row, name in zip(rows, names)])
