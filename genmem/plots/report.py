"""Memorization against the run's other per-example views (``genmem report --plot``)."""
import numpy as np


def plot_report(memorization, views, path):
    """Save a PNG with one scatter of memorization (y) against each view (x); a histogram of it without views.

    Parameters
    ----------
    memorization : array [N]
        The per-example memorization score.
    views : dict of str to array [N]
        Other per-example arrays of the same examples (e.g. ``"influence/self"``,
        ``"neighbours/distance"``); may be empty.
    path : path-like
        The PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    memorization = np.asarray(memorization, dtype=np.float64)
    panels = max(1, len(views))
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.8), squeeze=False)
    if views:
        for ax, (name, values) in zip(axes[0], views.items()):
            ax.scatter(np.asarray(values, dtype=np.float64), memorization, s=8, alpha=0.6)
            ax.set_xlabel(name)
            ax.set_ylabel("memorization M (nats)")
    else:
        ax = axes[0, 0]
        ax.hist(memorization, bins=min(50, max(10, len(memorization) // 10)))
        ax.set_xlabel("memorization M (nats)")
        ax.set_ylabel("examples")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
