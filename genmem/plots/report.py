"""Memorization against the run's other per-example views (``genmem report --plot``)."""
import numpy as np


def plot_report(memorization, views, *, axes=None):
    """One scatter of memorization (y) against each view (x); a histogram of memorization without views.

    Parameters
    ----------
    memorization : array [N]
        The per-example memorization score.
    views : dict of str to array [N]
        Other per-example arrays of the same examples (e.g. ``"influence/self"``,
        ``"neighbours/distance"``); may be empty.
    axes : sequence of matplotlib Axes, optional
        One per view (one without views); default: a new figure.

    Returns
    -------
    ndarray of Axes
    """
    memorization = np.asarray(memorization, dtype=np.float64)
    panels = max(1, len(views))
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.8), squeeze=False)
    axes = np.asarray(axes, dtype=object).reshape(-1)[:panels]
    if views:
        for ax, (name, values) in zip(axes, views.items()):
            ax.scatter(np.asarray(values, dtype=np.float64), memorization, s=8, alpha=0.6)
            ax.set_xlabel(name)
            ax.set_ylabel("memorization M (nats)")
    else:
        axes[0].hist(memorization, bins=min(50, max(10, len(memorization) // 10)))
        axes[0].set_xlabel("memorization M (nats)")
        axes[0].set_ylabel("examples")
    return axes
