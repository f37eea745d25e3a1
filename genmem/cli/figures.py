"""Writing figures from the command line: the Agg backend and a PNG file."""
import numpy as np


def use_agg():
    """Select matplotlib's file-only Agg backend (the command line draws no windows)."""
    import matplotlib

    matplotlib.use("Agg")


def save_figure(axes, path, *, dpi=120):
    """Save the figure that holds ``axes`` (an Axes or array of them) to ``path`` and close it."""
    import matplotlib.pyplot as plt

    fig = np.asarray(axes, dtype=object).reshape(-1)[0].figure
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
