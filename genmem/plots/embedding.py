"""Rows of features (tabular data) as points in two dimensions, coloured by a score."""
import numpy as np

from ..errors import GenmemError


def embed_2d(X, seed=0):
    """Rows ``X`` [n, D] in two dimensions: themselves for D ≤ 2 (a 1-D row gets y = 0), else their first two
    principal components (scikit-learn ``PCA``, ``random_state=seed``)."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if X.shape[1] == 1:
        return np.column_stack([X[:, 0], np.zeros(len(X))])
    if X.shape[1] == 2:
        return X
    from sklearn.decomposition import PCA

    return PCA(2, random_state=seed).fit_transform(X)


def plot_embedding(X, scores, *, highlight=(), annotations=None, score_name="memorization M (nats)", ax=None,
                   seed=0):
    """Scatter the rows of ``X`` in two dimensions, coloured by ``scores``, with some rows marked.

    Parameters
    ----------
    X : array [n, D]
        The rows (tabular data, or any features); projected by :func:`embed_2d`.
    scores : array [n]
        The colour of each point (e.g. the memorization score).
    highlight : sequence of int
        Rows to mark with a red ring (e.g. the most memorized).
    annotations : sequence of str, optional
        A label per highlighted row.
    score_name : str
        The colour bar's label.
    ax : matplotlib Axes, optional
        Where to draw; default: a new figure.
    seed : int
        Seed of the PCA solver.

    Returns
    -------
    Axes
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(X):
        raise GenmemError(f"scores has {len(scores)} entries but X has {len(X)} rows; give one score per row")
    points = embed_2d(X, seed)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5.5, 4.5))
    shown = ax.scatter(points[:, 0], points[:, 1], c=scores, s=10, cmap="viridis", alpha=0.8)
    ax.figure.colorbar(shown, ax=ax, label=score_name)
    highlight = np.asarray(highlight, dtype=np.int64)
    if len(highlight):
        ax.scatter(points[highlight, 0], points[highlight, 1], s=60, facecolors="none", edgecolors="red",
                   linewidths=1.2)
        for text, (x, y) in zip(annotations or [], points[highlight]):
            ax.annotate(text, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    dims = np.asarray(X).reshape(len(X), -1).shape[1]
    ax.set_xlabel("PC 1" if dims > 2 else "feature 0")
    ax.set_ylabel("PC 2" if dims > 2 else ("feature 1" if dims == 2 else ""))
    return ax
