"""A grid of example images with a caption under each."""
import math

import numpy as np

from ..errors import GenmemError


def plot_examples(images, titles=None, *, axes=None, ncols=10):
    """Draw example images, one per Axes, captioned with ``titles``.

    Parameters
    ----------
    images : array [n, H, W] or [n, H, W, C]
        Images in [0, 1] (grey or RGB/RGBA; a trailing channel of 1 is grey).
    titles : sequence of str, optional
        One caption per image.
    axes : array of matplotlib Axes, optional
        At least ``n`` Axes to draw into (extra ones are switched off);
        default: a new figure with ``ncols`` columns.
    ncols : int, default=10
        Columns of a new figure.

    Returns
    -------
    ndarray of Axes
        The Axes drawn into, flattened.

    Raises
    ------
    GenmemError
        For rows of features ([n, D]), which are no images: plot them with
        :func:`genmem.plots.plot_embedding`.
    """
    images = [np.asarray(img, dtype=np.float32) for img in images]
    if any(img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (1, 3, 4)) for img in images):
        raise GenmemError("plot_examples draws images [H, W(, C)]; rows of features are no images: plot them with "
                          "genmem.plots.plot_embedding (or reshape them to [n, H, W] if they are images)")
    if axes is None:
        import matplotlib.pyplot as plt

        ncols = max(1, min(ncols, len(images)))
        nrows = math.ceil(len(images) / ncols)
        _, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.75 * nrows), squeeze=False)
    axes = np.asarray(axes, dtype=object).reshape(-1)
    if len(axes) < len(images):
        raise GenmemError(f"{len(images)} images need as many Axes; got {len(axes)}")
    for ax in axes:
        ax.axis("off")
    for i, (ax, img) in enumerate(zip(axes, images)):
        img = img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img
        ax.imshow(np.clip(img, 0, 1), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    return axes
