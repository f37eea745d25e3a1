"""Metrics of a trained generator's samples against held-out data (torch-fidelity keeps one module per metric).

:func:`evaluate_gan` draws samples from the *unrejected* generator and
measures them in the neighbour bank's feature space: the data-copying test
C_T, the Fréchet distance FD_f (:func:`frechet_distance`), and the
NN-distance histograms.
"""
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import GenmemError
from ..neighbours import data_copying_test, imagenet_embedder
from ..validation import check_allocation
from .data import check_images
from .rejection import bank_features
from .train import sample_images

#: Bins of the stored NN-distance histograms.
HIST_BINS = 30
#: The Inception network used for FID when a weights file is given.
INCEPTION_ARCH = "inception_v3"


def frechet_distance(features_a, features_b):
    """Fréchet distance of Gaussians fitted to two feature sets.

    ``‖μ_a − μ_b‖² + tr Σ_a + tr Σ_b − 2 tr (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}`` with
    unbiased covariances (as in FID); the last trace equals
    ``tr (Σ_a Σ_b)^{1/2}`` and is computed from the eigenvalues of the
    symmetric PSD matrix ``Σ_a^{1/2} Σ_b Σ_a^{1/2}``.

    Parameters
    ----------
    features_a, features_b : array [n, d]
        At least 2 rows each, the same ``d``.

    Returns
    -------
    float
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise GenmemError(f"the Fréchet distance needs two feature arrays [n, d] with n >= 2 and the same d; "
                          f"got {a.shape} and {b.shape}")
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0.0, None)).sum()
    diff = a.mean(0) - b.mean(0)
    return float(max(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross, 0.0))


def default_cells(n_test):
    """k-means cells of C_T for ``n_test`` test points: one per 100, between 1 and 50 (MNIST's 10,000: 50)."""
    return int(min(50, max(1, n_test // 100)))


@dataclass
class GANEvaluation:
    """Metrics of samples from the unrejected generator against held-out data.

    Attributes
    ----------
    metrics : dict
        ``c_t``, ``n_cells``, ``n_cells_kept``, ``fd_f`` (generated vs test
        in the bank's L2-normalised feature space), ``fd_f_test_train`` (test
        vs training features: the finite-sample floor), ``fid_inception``
        (when a weights file was given), mean/median NN distances of
        generated and test samples, sample counts.
    samples : float32 ndarray [m, C, H, W]
    nn_generated, nn_test : float64 ndarray
        NN distance to the training set of each generated (non-zero feature) and test sample.
    histogram : dict of str to ndarray
        ``edges`` [bins + 1], ``generated`` [bins], ``test`` [bins] (counts).
    ct_cells : dict of str to ndarray
        The per-cell table of C_T.
    """

    metrics: dict
    samples: np.ndarray
    nn_generated: np.ndarray
    nn_test: np.ndarray
    histogram: dict
    ct_cells: dict = field(repr=False)


def check_sample_memory(n_samples, image_shape):
    """Raise :class:`GenmemError` when ``n_samples`` generated images of ``image_shape`` (float32, with their float64
    features and normalised copy) would not fit in the available memory."""
    per_value = 4 + 8 + 8
    check_allocation(float(n_samples) * math.prod(image_shape) * per_value,
                     f"--n-samples {n_samples} generated {'x'.join(map(str, image_shape))} images and their features",
                     "lower --n-samples")


def evaluate_gan(generator, bank, test_images, *, n_samples=None, n_cells=None, seed=0, inception=None,
                 device=None, bins=HIST_BINS):
    """Evaluate samples of the unrejected generator against held-out test images.

    Parameters
    ----------
    generator : torch.nn.Module
        A built-in generator (has ``z_dim``; outputs in [−1, 1]).
    bank : NeighbourBank
        Cosine bank of the training images in [0, 1].
    test_images : array [n, C, H, W]
        Held-out images in [0, 1].
    n_samples : int, optional
        Generated samples (default: as many as test images).
    n_cells : int, optional
        k-means cells of C_T (default :func:`default_cells`).
    seed : int
        Seed of the evaluation latents and of the k-means cells.
    inception : path-like, optional
        A local torchvision ``inception_v3`` state dict: also report the
        Fréchet distance in its penultimate (2048-d) features at 224×224
        (``fid_inception``; torchvision's network, so not comparable with
        TF-Inception FID numbers). Needs torchvision.
    device : str, optional
        Where the generator samples (default: its own device).
    bins : int
        Bins of the NN-distance histograms.

    Returns
    -------
    GANEvaluation
    """
    test = check_images(test_images, "test_images")
    n_samples = len(test) if n_samples is None else n_samples
    check_sample_memory(n_samples, test.shape[1:])
    n_cells = default_cells(len(test)) if n_cells is None else n_cells
    inception_net = None if inception is None else imagenet_embedder(INCEPTION_ARCH, inception,
                                                                     device=device or "auto")
    samples = sample_images(generator, n_samples, seed=seed, device=device)
    F_gen, zero = bank_features(bank, samples)
    F_test, zero_test = bank_features(bank, test)
    if zero_test.any():
        raise GenmemError(f"{int(zero_test.sum())} test image(s) have all-zero features (first: row "
                          f"{np.flatnonzero(zero_test)[0]}), so their cosine distance is undefined; remove them")
    if zero.any():
        warnings.warn(f"{int(zero.sum())} of {len(zero)} generated samples have all-zero features (no direction "
                      "for the cosine distance); they are left out of C_T, FD_f and the histograms")
        F_gen = F_gen[~zero]
    if len(F_gen) < 2:
        raise GenmemError("fewer than 2 generated samples have non-zero features; the generator has collapsed "
                          "(train longer or with other settings)")
    ct = data_copying_test(bank.features, F_test, F_gen, n_cells=n_cells, rng=seed, metric="cosine",
                           device=bank.device)
    nn_gen = bank.query_features(F_gen, 1)[0][:, 0]
    nn_test = bank.query_features(F_test, 1)[0][:, 0]
    edges = np.histogram_bin_edges(np.concatenate([nn_gen, nn_test]), bins=bins)
    metrics = {"c_t": ct.c_t, "n_cells": int(n_cells), "n_cells_kept": ct.n_kept, "ct_min_frac": ct.min_frac,
               "fd_f": frechet_distance(F_gen, F_test), "fd_f_test_train": frechet_distance(F_test, bank.features),
               "nn_generated_mean": float(nn_gen.mean()), "nn_generated_median": float(np.median(nn_gen)),
               "nn_test_mean": float(nn_test.mean()), "nn_test_median": float(np.median(nn_test)),
               "n_generated": int(n_samples), "n_generated_zero_features": int(zero.sum()), "n_test": len(test),
               "n_train": int(bank.n_points), "feature_space": bank.description, "seed": int(seed)}
    if inception_net is not None:
        metrics["fid_inception"] = frechet_distance(inception_net.embed(samples), inception_net.embed(test))
        metrics["inception"] = inception_net.description
    histogram = {"edges": edges, "generated": np.histogram(nn_gen, edges)[0],
                 "test": np.histogram(nn_test, edges)[0]}
    return GANEvaluation(metrics, samples, nn_gen, nn_test, histogram, ct.cells)
