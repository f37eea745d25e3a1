"""What data a VAE takes: the likelihood ``"auto"`` stands for, the values each likelihood needs, the rows it scores."""
import math

import numpy as np
import torch

from ...errors import GenmemError

#: Threshold that turns grey values into the binary images scored by a model
#: trained with ``binarize="dynamic"`` (the same for every unit, so log p is
#: comparable across units).
EVAL_BINARIZE_THRESHOLD = 0.5


def resolve_likelihood(likelihood, binarize, X):
    """The likelihood of data ``X`` [N, D]: ``likelihood`` itself unless it is ``"auto"``.

    ``"auto"`` is ``"bernoulli"`` for binary X or ``binarize="dynamic"``,
    ``"logit-normal"`` for X in [0, 1] and ``"gaussian"`` otherwise.
    """
    if likelihood != "auto":
        return likelihood
    if binarize == "dynamic" or np.isin(X, (0.0, 1.0)).all():
        return "bernoulli"
    return "logit-normal" if X.min() >= 0.0 and X.max() <= 1.0 else "gaussian"


def check_fits(X, likelihood, binarize, image_shape):
    """Raise :class:`GenmemError` unless the rows ``X`` [N, D] fit the (resolved) likelihood, binarization and image shape."""
    d = X.shape[1]
    if image_shape is not None and math.prod(image_shape) != d:
        raise GenmemError(
            f"image_shape {tuple(image_shape)} has {math.prod(image_shape)} pixels but X has {d} "
            "features; pass the shape of the (padded) images X was flattened from"
        )
    if binarize == "dynamic" or likelihood == "logit-normal":
        if X.min() < 0.0 or X.max() > 1.0:
            why = "binarize='dynamic'" if binarize else "likelihood='logit-normal'"
            raise GenmemError(
                f"{why} needs values in [0, 1]; X spans [{X.min():g}, {X.max():g}] "
                "(scale the data, e.g. prepare(..., scale=True))"
            )
    elif likelihood == "bernoulli" and not np.isin(X, (0.0, 1.0)).all():
        raise GenmemError(
            "likelihood='bernoulli' needs binary data but X has values other than 0 and 1; binarize it "
            "(prepare(binarize='fixed')), pass binarize='dynamic', or use likelihood='logit-normal'"
        )


def scored_rows(X, binarize, device, dtype):
    """The rows log p is computed for, as a tensor: ``X``, or its binarization ``X > 0.5`` under ``binarize="dynamic"``."""
    if binarize == "dynamic":
        X = (X > EVAL_BINARIZE_THRESHOLD).astype(np.float64)
    return torch.as_tensor(X, dtype=dtype, device=device)
