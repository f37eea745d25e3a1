"""A grid of example images with a caption under each."""
import math

import numpy as np


def plot_examples(images, titles, path, *, ncols=10):
    """Save a PNG grid of ``images`` (each [H, W] or [H, W, C] in [0, 1]) captioned with ``titles``.

    Images that are not 2-D/3-D (e.g. flat vectors) are drawn as a square
    when their length is a perfect square, else as one row.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = [_as_image(np.asarray(img, dtype=np.float32)) for img in images]
    ncols = max(1, min(ncols, len(images)))
    nrows = math.ceil(len(images) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.75 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles):
        ax.imshow(np.clip(img, 0, 1), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _as_image(img):
    if img.ndim in (2, 3) and img.shape[-1] in (1, 3, 4) and img.ndim == 3:
        return img[..., 0] if img.shape[-1] == 1 else img
    if img.ndim == 2:
        return img
    flat = img.reshape(-1)
    side = math.isqrt(flat.size)
    return flat.reshape(side, side) if side * side == flat.size else flat[None, :]
