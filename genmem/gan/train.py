"""Training the built-in GAN with memorization rejection, evaluating it, and sweeping τ.

:func:`train_gan` trains a generator/discriminator pair (:mod:`genmem.gan.nets`)
with Adam and ``n_dis`` discriminator steps per generator step, the generator
batch passing through :class:`~genmem.gan.MemorizationRejection`.
:func:`evaluate_gan` draws samples from the *unrejected* generator and
measures them against held-out data in the neighbour bank's feature space:
the data-copying test C_T, the Fréchet distance FD_f, and the NN-distance
histograms. :func:`sweep_tau` trains one model per (τ, seed) — the analogue
of the paper's Figure 6. :func:`write_gan` stores a run in one HDF5 file.

Random streams of a run seeded with ``seed`` (see :func:`genmem.seeds.stream_seed`):
``(seed, 0, ·)`` weight initialisation, ``(seed, 1)`` real-batch indices,
``(seed, 2)`` training latents, ``(seed, 3)`` evaluation latents; the k-means
cells of C_T use ``seed`` itself, and so does a neighbour bank built for the
run (the random numbers of its feature map, e.g. PCA's solver); a τ sweep's
bank, shared by all its runs, uses its first seed — as does ``genmem gan``.
The test hold-out of datasets without a test split uses ``(split_seed, 4)``.
"""
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from scipy.stats import spearmanr

from ..data import load_dataset, prepare
from ..device import resolve_device
from ..errors import GenmemError
from ..outputs import IDENTITY
from ..results import atomic_h5, provenance
from ..neighbours import NeighbourBank, data_copying_test, imagenet_embedder
from ..seeds import stream_seed
from ..validation import check_allocation, check_int, check_param, options
from .nets import make_gan
from .rejection import DEFAULT_MAX_TRIES, MemorizationRejection, bank_features, resolve_tau

logger = logging.getLogger(__name__)

FORMAT = "genmem.gan"
FORMAT_VERSION = 1
LOSSES = ("ns", "hinge")
DATA_STREAM, LATENT_STREAM, EVAL_STREAM, HOLDOUT_STREAM = 1, 2, 3, 4
#: Share of the examples held out as the test set of datasets without a test split.
DEFAULT_TEST_FRACTION = 0.2
#: Datasets read with a hold-out test set by default (they have no test split).
HOLDOUT_DATASETS = ("digits",)
#: Bins of the stored NN-distance histograms.
HIST_BINS = 30
#: Generator samples per forward pass when sampling for evaluation.
SAMPLE_BATCH = 500
#: Evaluation metrics copied into each row of a τ sweep.
SWEEP_METRICS = ("c_t", "fd_f", "nn_generated_mean", "nn_generated_median", "n_cells_kept", "n_generated_zero_features")
#: The Inception network used for FID when a weights file is given.
INCEPTION_ARCH = "inception_v3"


# -- data --------------------------------------------------------------------------


@dataclass
class GANData:
    """Training and test images for a GAN, ``[N, C, H, W]`` float32 in [0, 1].

    Attributes
    ----------
    train, test : float32 ndarray [N, C, H, W]
    train_index, test_index : int64 ndarray
        Positions in the source split the images come from.
    info : dict
        Dataset, test source (``"split"`` or ``"holdout"``), hold-out share and seed, sizes.
    """

    train: np.ndarray
    test: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray
    info: dict


def to_nchw(images):
    """Images ``[N, H, W]``, ``[N, H, W, C]`` (C in 1, 3) or ``[N, C, H, W]`` as float32 ``[N, C, H, W]``."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    if images.ndim == 4:
        return images
    raise GenmemError(f"a GAN needs images [N, H, W], [N, H, W, C] or [N, C, H, W]; got an array of shape "
                      f"{images.shape}")


def load_gan_data(dataset="digits", *, data_dir=None, limit=None, test_fraction=None, split_seed=0):
    """Training and test images of a dataset, scaled to [0, 1].

    Parameters
    ----------
    dataset : str
        A name or file accepted by :func:`genmem.data.load_dataset`.
    data_dir : path-like, optional
    limit : int, optional
        Keep only the first ``limit`` training images.
    test_fraction : float, optional
        Hold out this share of the training split (a seeded permutation) as
        the test set instead of reading the test split. Default: 0.2 for
        datasets without a test split (digits, ``.npy`` files), else None.
    split_seed : int
        Seed of the hold-out permutation (stream ``(split_seed, 4)``).

    Returns
    -------
    GANData
    """
    name = str(dataset)
    source = load_dataset(name, data_dir=data_dir, split="train")
    if test_fraction is None and (name in HOLDOUT_DATASETS or name.startswith("npy:") or name.endswith(".npy")):
        test_fraction = DEFAULT_TEST_FRACTION
    images = to_nchw(prepare(source).images)
    if test_fraction is not None:
        if not 0.0 < float(test_fraction) < 1.0:
            raise GenmemError(f"test_fraction must lie in (0, 1); got {test_fraction}")
        perm = np.random.default_rng(stream_seed(split_seed, HOLDOUT_STREAM)).permutation(len(images))
        n_test = int(round(float(test_fraction) * len(images)))
        if not 1 <= n_test < len(images):
            raise GenmemError(f"holding out {test_fraction} of {len(images)} examples leaves an empty set; "
                              "choose another test_fraction")
        test_index, train_index = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        train, test = images[train_index], images[test_index]
        train_index, test_index = source.index[train_index], source.index[test_index]
        test_source = "holdout"
    else:
        test_data = load_dataset(name, data_dir=data_dir, split="test")
        train, train_index = images, source.index
        test, test_index = to_nchw(prepare(test_data).images), test_data.index
        test_source = "split"
    if limit is not None:
        check_int(limit, "limit", 2)
        train, train_index = train[:limit], train_index[:limit]
    if test.shape[1:] != train.shape[1:]:
        raise GenmemError(f"test images {test.shape[1:]} and training images {train.shape[1:]} differ in shape")
    info = {"dataset": name, "test_source": test_source, "n_train": len(train), "n_test": len(test),
            "image_shape": list(train.shape[1:]), "limit": limit,
            "test_fraction": None if test_fraction is None else float(test_fraction),
            "split_seed": int(split_seed) if test_fraction is not None else None}
    return GANData(train, test, np.asarray(train_index, np.int64), np.asarray(test_index, np.int64), info)


def _check_images(images, name):
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise GenmemError(f"{name} must be images [N, C, H, W]; got shape {images.shape} (see genmem.gan.to_nchw)")
    if not np.isfinite(images).all() or images.min() < 0.0 or images.max() > 1.0:
        raise GenmemError(f"{name} must be finite and scaled to [0, 1]; got values in "
                          f"[{np.nanmin(images):.3g}, {np.nanmax(images):.3g}]")
    return images


def to_unit(x):
    """Generator outputs in [−1, 1] to images in [0, 1]."""
    return (x + 1.0) / 2.0


# -- training ----------------------------------------------------------------------


def discriminator_loss(kind, real_logits, fake_logits):
    """``ns``: ``softplus(−D(x)) + softplus(D(G(z)))``; ``hinge``: ``relu(1 − D(x)) + relu(1 + D(G(z)))``
    (each term a mean over its batch)."""
    if kind == "hinge":
        return torch.relu(1.0 - real_logits).mean() + torch.relu(1.0 + fake_logits).mean()
    return torch.nn.functional.softplus(-real_logits).mean() + torch.nn.functional.softplus(fake_logits).mean()


def generator_loss(kind, fake_logits):
    """``ns``: mean ``softplus(−D(G(z)))`` (non-saturating); ``hinge``: mean ``−D(G(z))``."""
    if kind == "hinge":
        return -fake_logits.mean()
    return torch.nn.functional.softplus(-fake_logits).mean()


@dataclass
class GANRun:
    """A trained GAN and its training record.

    Attributes
    ----------
    generator, discriminator : torch.nn.Module
    bank : NeighbourBank or None
    tau : float or None
        The rejection threshold (None: trained without rejection).
    tau_auto : float or None
        The bank's mean leave-one-out NN distance.
    history : dict of str to ndarray [steps]
        ``loss_d`` (mean over the step's discriminator updates), ``loss_g``,
        and with rejection ``rejection_rate``, ``n_examined``, ``n_rejected``,
        ``n_fallback``, ``tries``.
    config : dict
        Every training argument (JSON-serialisable).
    seconds : float
        Wall time of the training loop.
    """

    generator: torch.nn.Module
    discriminator: torch.nn.Module
    bank: object
    tau: float | None
    tau_auto: float | None
    history: dict
    config: dict
    seconds: float


def train_gan(train_images, *, tau="auto", bank=None, embed="pixels", mode="resample", max_tries=DEFAULT_MAX_TRIES,
              apply_to_discriminator=False, steps=2000, batch_size=64, n_dis=1, loss="ns", lr=2e-4,
              betas=(0.5, 0.999), z_dim=64, width=None, arch="auto", seed=0, device="auto", log_every=0):
    """Train the built-in GAN on ``train_images`` with memorization rejection in the generator step.

    Parameters
    ----------
    train_images : array [N, C, H, W]
        Training images in [0, 1] (the networks see them scaled to [−1, 1]).
    tau : "auto", "<factor>x", float or None, default "auto"
        Rejection threshold (see :func:`~genmem.gan.rejection.resolve_tau`);
        None trains without rejection.
    bank : NeighbourBank, optional
        A cosine bank of ``train_images`` (in [0, 1]); built from ``embed``,
        seeded with ``seed``, when None and ``tau`` is given.
    embed : str
        Feature map of the bank built here (``pixels``, ``pca:D``, ...).
    mode : {"resample", "mask"}
    max_tries : int
    apply_to_discriminator : bool
        Filter the discriminator's fake batches too.
    steps : int
        Generator updates.
    batch_size : int
    n_dis : int
        Discriminator updates per generator update.
    loss : {"ns", "hinge"}
        Non-saturating (DCGAN) or hinge loss.
    lr : float
    betas : (float, float)
        Adam's β₁, β₂ for both networks.
    z_dim, width, arch
        See :func:`~genmem.gan.nets.make_gan`.
    seed : int
        Seed of all the run's random streams (module documentation).
    device : str
    log_every : int
        Log losses and the rejection rate every this many steps (0: never).

    Returns
    -------
    GANRun
    """
    X = _check_images(train_images, "train_images")
    for name, value, low in (("steps", steps, 1), ("batch_size", batch_size, 1), ("n_dis", n_dis, 1),
                             ("log_every", log_every, 0)):
        check_int(value, name, low)
    check_param(loss, options(*LOSSES), "loss")
    if not (lr > 0 and len(betas) == 2 and all(0 <= b < 1 for b in betas)):
        raise GenmemError(f"Adam needs lr > 0 and betas in [0, 1); got lr={lr}, betas={tuple(betas)}")
    device = resolve_device(device)
    G, D = make_gan(X.shape[1:], arch=arch, z_dim=z_dim, width=width, seed=seed)
    if bank is None and tau is not None:
        bank = NeighbourBank(embed, X, metric="cosine", device=device, seed=seed)
    G, D = G.to(device).train(), D.to(device).train()
    mr = None
    if tau is not None:
        mr = MemorizationRejection(bank, tau, mode=mode, max_tries=max_tries,
                                   apply_to_discriminator=apply_to_discriminator, sample_shape=X.shape[1:],
                                   preprocess=to_unit)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=tuple(betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=tuple(betas))
    g_data = torch.Generator(device).manual_seed(stream_seed(seed, DATA_STREAM))
    g_latent = torch.Generator(device).manual_seed(stream_seed(seed, LATENT_STREAM))
    real_all = torch.as_tensor(X, device=device) * 2.0 - 1.0

    def sample(n):
        return G(torch.randn(n, z_dim, generator=g_latent, device=device))

    loss_d_hist, loss_g_hist = np.empty(steps), np.empty(steps)
    start = time.perf_counter()
    for step in range(steps):
        loss_d_sum = 0.0
        for _ in range(n_dis):
            real = real_all[torch.randint(len(real_all), (batch_size,), generator=g_data, device=device)]
            with torch.no_grad():
                fake = sample(batch_size)
                if mr is not None:
                    fake = mr.discriminator_batch(fake, sample)
            loss_d = discriminator_loss(loss, D(real), D(fake))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            loss_d_sum += loss_d.item()
        fake = sample(batch_size)
        if mr is not None:
            fake = mr(fake, sample)
        loss_g = generator_loss(loss, D(fake))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        loss_d_hist[step], loss_g_hist[step] = loss_d_sum / n_dis, loss_g.item()
        if log_every and (step + 1) % log_every == 0:
            rate = f", rejection rate {mr.history['rejection_rate'][-1]:.3f}" if mr is not None else ""
            logger.info("step %d/%d: loss_d %.4f, loss_g %.4f%s", step + 1, steps, loss_d_hist[step],
                        loss_g_hist[step], rate)
    seconds = time.perf_counter() - start
    history = {"loss_d": loss_d_hist, "loss_g": loss_g_hist}
    if mr is not None:
        history.update({key: np.asarray(values) for key, values in mr.history.items()})
    config = {"tau": None if tau is None else (tau if isinstance(tau, str) else float(tau)),
              "tau_value": None if mr is None else mr.tau, "embed": embed if bank is None else bank.description,
              "mode": mode, "max_tries": int(max_tries), "apply_to_discriminator": bool(apply_to_discriminator),
              "steps": int(steps), "batch_size": int(batch_size), "n_dis": int(n_dis), "loss": loss, "lr": float(lr),
              "betas": [float(b) for b in betas], "z_dim": int(z_dim), "width": width,
              "arch": arch if arch != "auto" else f"auto ({type(G).__name__})",
              "image_shape": list(X.shape[1:]), "n_train": len(X), "seed": int(seed), "device": str(device)}
    return GANRun(G, D, bank, None if mr is None else mr.tau, None if bank is None else bank.mean_nn_distance(),
                  history, config, seconds)


# -- evaluation --------------------------------------------------------------------


def sample_images(generator, n, *, seed=0, device=None, batch_size=SAMPLE_BATCH):
    """``n`` images in [0, 1] from the unrejected generator in eval mode: float32 ndarray [n, C, H, W].

    Latents come from stream ``(seed, 3)``; ``device`` defaults to the generator's.
    """
    check_int(n, "n")
    device = next(generator.parameters()).device if device is None else resolve_device(device)
    z_dim = generator.z_dim
    g = torch.Generator(device).manual_seed(stream_seed(seed, EVAL_STREAM))
    was_training = generator.training
    generator.eval()
    out = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            z = torch.randn(min(batch_size, n - start), z_dim, generator=g, device=device)
            out.append(to_unit(generator(z)).clamp_(0.0, 1.0).float().cpu().numpy())
    generator.train(was_training)
    return np.concatenate(out)


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
    test = _check_images(test_images, "test_images")
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


# -- the results file --------------------------------------------------------------


def write_gan(path, run, evaluation, *, data_info=None, train_index=None, test_index=None, argv=None, identity=None):
    """Write a trained and evaluated GAN run to one HDF5 file, atomically.

    Layout (format ``genmem.gan``, version 1)::

        /                        attrs: format, format_version, genmem_version, created, argv,
                                 config (JSON), seeds (JSON), versions (JSON), device,
                                 metrics (JSON), tau, tau_auto, genmem_identity (when
                                 ``identity`` is given: what determines the run, see
                                 :mod:`genmem.outputs`)
        /samples/images [m, C, H, W]     generated images in [0, 1] (unrejected generator)
        /eval/nn_distance_generated [m'], /eval/nn_distance_test [n]
        /eval/histogram_edges [B + 1], /eval/histogram_generated [B], /eval/histogram_test [B]
        /eval/ct/<column> [cells]        C_T's per-cell table
        /train/<name> [steps]            loss_d, loss_g, rejection_rate, n_examined, n_rejected,
                                         n_fallback, tries
        /data/train_index [N], /data/test_index [n]   (when given)
    """
    seed = run.config["seed"]
    seeds = {"seed": seed, "init": f"({seed}, 0, 0/1)", "real_batches": f"({seed}, {DATA_STREAM})",
             "train_latents": f"({seed}, {LATENT_STREAM})", "eval_latents": f"({evaluation.metrics['seed']}, "
                                                                           f"{EVAL_STREAM})",
             "ct_kmeans": evaluation.metrics["seed"],
             "streams": "numpy SeedSequence(seed, spawn_key=stream) -> 63-bit torch.Generator seed (genmem.seeds)"}
    meta = provenance(run.config["device"], argv)
    with atomic_h5(path) as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        if identity is not None:
            f.attrs[IDENTITY] = identity
        for key, value in meta.items():
            f.attrs[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        f.attrs["config"] = json.dumps({**run.config, "data": data_info or {}}, sort_keys=True)
        f.attrs["seeds"] = json.dumps(seeds, sort_keys=True)
        f.attrs["metrics"] = json.dumps(evaluation.metrics, sort_keys=True)
        f.attrs["tau"] = np.nan if run.tau is None else run.tau
        f.attrs["tau_auto"] = np.nan if run.tau_auto is None else run.tau_auto
        f.create_dataset("samples/images", data=evaluation.samples, compression="gzip", compression_opts=4,
                         shuffle=True)
        f["eval/nn_distance_generated"] = evaluation.nn_generated
        f["eval/nn_distance_test"] = evaluation.nn_test
        for name, value in evaluation.histogram.items():
            f[f"eval/histogram_{name}"] = value
        for name, value in evaluation.ct_cells.items():
            f[f"eval/ct/{name}"] = value
        for name, value in run.history.items():
            f[f"train/{name}"] = value
        for name, value in (("train_index", train_index), ("test_index", test_index)):
            if value is not None:
                f[f"data/{name}"] = value


def read_gan(path):
    """Read a file written by :func:`write_gan`: a dict with ``attrs`` (JSON decoded) and ``"group/name"`` arrays."""
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        raise GenmemError(f"{path} is not an HDF5 file; give a file written by 'genmem gan'")
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise GenmemError(f"{path} is an HDF5 file but not a genmem GAN run (format {FORMAT!r})")
        if int(f.attrs["format_version"]) > FORMAT_VERSION:
            raise GenmemError(f"{path} has GAN format version {int(f.attrs['format_version'])}, newer than this "
                              f"genmem reads ({FORMAT_VERSION}); upgrade genmem")
        attrs = {}
        for key, value in f.attrs.items():
            try:
                attrs[key] = json.loads(value) if isinstance(value, str) else value
            except ValueError:
                attrs[key] = value
        arrays = {}
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return {"attrs": attrs, **arrays}


# -- the τ sweep -------------------------------------------------------------------


def parse_tau_list(spec):
    """``"0,0.5x,1x,auto,0.12"`` → a list of τ specs (strings; validated against a bank by resolve_tau)."""
    items = [item.strip() for item in str(spec).split(",") if item.strip()]
    if not items:
        raise GenmemError(f"give the thresholds to sweep as a comma-separated list such as 0,0.5x,1x,1.5x; "
                          f"got {spec!r}")
    return items


def sweep_tau(train_images, test_images, taus, *, seeds=(0,), bank=None, embed="pixels", n_samples=None,
              n_cells=None, inception=None, device="auto", **train_kwargs):
    """Train and evaluate one GAN per (τ, seed): the quality-vs-memorization trade-off (paper Figure 6).

    Parameters
    ----------
    train_images, test_images : array [N, C, H, W]
        In [0, 1].
    taus : list of (str or float)
        Each ``"auto"``, ``"<factor>x"`` (relative to the bank's mean NN
        distance) or a number in [0, 2). τ = 0 rejects nothing: the
        baseline without memorization rejection.
    seeds : list of int
        One model per seed and τ; the evaluation of a model uses its own seed.
    bank : NeighbourBank, optional
        Built once from ``embed`` when None, seeded with the first of ``seeds``
        (module documentation).
    embed, n_samples, n_cells, inception, device
        As for :func:`train_gan` and :func:`evaluate_gan`.
    **train_kwargs
        Further :func:`train_gan` arguments (steps, mode, loss, ...).

    Returns
    -------
    dict
        ``tau_auto``; ``runs`` (one row per model: tau_spec, tau, seed,
        c_t, fd_f, rejection rates, seconds, ...); ``summary`` (per τ: mean
        and standard deviation over seeds of C_T, FD_f and the rejection
        rate); ``trend`` (Spearman correlation of τ with C_T and with FD_f
        over all runs); ``fd_f_test_train`` (the real-data floor);
        ``feature_space``.
    """
    train = _check_images(train_images, "train_images")
    device = resolve_device(device)
    seeds = [int(s) for s in seeds]
    if not seeds or not len(taus):
        raise GenmemError("give at least one threshold and one seed to sweep")
    if bank is None:
        bank = NeighbourBank(embed, train, metric="cosine", device=device, seed=seeds[0])
    resolved = [(str(spec), resolve_tau(spec, bank)) for spec in taus]
    rows = []
    for spec, tau in resolved:
        for seed in seeds:
            run = train_gan(train, tau=tau, bank=bank, seed=seed, device=device, **train_kwargs)
            ev = evaluate_gan(run.generator, bank, test_images, n_samples=n_samples, n_cells=n_cells, seed=seed,
                              inception=inception)
            rate = run.history["rejection_rate"]
            tail = rate[-max(1, len(rate) // 10):]
            rows.append({"tau_spec": spec, "tau": tau, "seed": seed, **{k: ev.metrics[k] for k in SWEEP_METRICS},
                "fid_inception": ev.metrics.get("fid_inception"), "rejection_rate_mean": float(rate.mean()),
                "rejection_rate_last10pct": float(tail.mean()), "fallback_share": float(
                    run.history["n_fallback"].sum() / (run.config["batch_size"] * run.config["steps"])),
                "seconds": run.seconds})
            logger.info("tau %s (%.4g), seed %d: C_T %.3f, FD_f %.4g, rejection rate %.3f", spec, tau, seed,
                        ev.metrics["c_t"], ev.metrics["fd_f"], rate.mean())
            fd_floor, nn_test_mean, n_cells_used = (ev.metrics["fd_f_test_train"], ev.metrics["nn_test_mean"],
                                                    ev.metrics["n_cells"])
    summary = []
    for spec, tau in resolved:
        group = [r for r in rows if r["tau_spec"] == spec]
        entry = {"tau_spec": spec, "tau": tau, "n_seeds": len(group)}
        for key in ("c_t", "fd_f", "rejection_rate_mean", "rejection_rate_last10pct", "nn_generated_mean"):
            values = np.array([r[key] for r in group])
            entry[f"{key}_mean"] = float(values.mean())
            entry[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
        summary.append(entry)
    trend = {}
    if len({tau for _, tau in resolved}) > 1:
        taus_all = [r["tau"] for r in rows]
        for key in ("c_t", "fd_f"):
            rho, p = spearmanr(taus_all, [r[key] for r in rows])
            trend[f"spearman_tau_{key}"] = {"rho": float(rho), "pvalue": float(p), "n_runs": len(rows)}
    return {"tau_auto": bank.mean_nn_distance(), "taus": [spec for spec, _ in resolved], "seeds": seeds,
            "runs": rows, "summary": summary, "trend": trend, "fd_f_test_train": fd_floor,
            "nn_test_mean": nn_test_mean, "n_cells": n_cells_used, "feature_space": bank.description,
            "train": {k: v for k, v in train_kwargs.items()}, "n_train": len(train), "n_test": len(test_images)}
