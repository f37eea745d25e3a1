"""Training the built-in GAN with memorization rejection, and sampling the trained generator.

:func:`train_gan` trains a generator/discriminator pair (:mod:`genmem.gan.nets`)
with Adam and ``n_dis`` discriminator steps per generator step, the generator
batch passing through :class:`~genmem.gan.MemorizationRejection`;
:func:`sample_images` draws from the *unrejected* generator.

Random streams of a run seeded with ``seed`` (see :func:`genmem.seeds.stream_seed`):
``(seed, 0, ·)`` weight initialisation, ``(seed, 1)`` real-batch indices,
``(seed, 2)`` training latents, ``(seed, 3)`` evaluation latents; the k-means
cells of C_T use ``seed`` itself, and so does a neighbour bank built for the
run (the random numbers of its feature map, e.g. PCA's solver); a τ sweep's
bank, shared by all its runs, uses its first seed — as does ``genmem gan``.
The test hold-out of datasets without a test split uses ``(split_seed, 4)``
(:mod:`genmem.gan.data`).
"""
import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..device import resolve_device
from ..neighbours import NeighbourBank
from ..seeds import stream_seed
from ..validation import Constraint, check_int, check_param, options, real
from .data import check_images
from .nets import make_gan
from .rejection import DEFAULT_MAX_TRIES, MemorizationRejection

logger = logging.getLogger(__name__)

LOSSES = ("ns", "hinge")
DATA_STREAM, LATENT_STREAM, EVAL_STREAM = 1, 2, 3
#: Generator samples per forward pass when sampling for evaluation.
SAMPLE_BATCH = 500
#: Adam's (β₁, β₂) for both networks.
BETAS = Constraint("a pair of floats in [0, 1)", lambda v: isinstance(v, (tuple, list)) and len(v) == 2
                   and all(real(0, 1, closed="left").test(b) for b in v))


def to_image_range(x):
    """Generator outputs in [−1, 1] to images in [0, 1]."""
    return (x + 1.0) / 2.0


def to_unit(x):
    """Deprecated name of :func:`to_image_range`."""
    warnings.warn("genmem.gan.train.to_unit is now to_image_range ('unit' names a K-fold model)",
                  DeprecationWarning, stacklevel=2)
    return to_image_range(x)


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
    X = check_images(train_images, "train_images")
    for name, value, low in (("steps", steps, 1), ("batch_size", batch_size, 1), ("n_dis", n_dis, 1),
                             ("log_every", log_every, 0)):
        check_int(value, name, low)
    check_param(loss, options(*LOSSES), "loss")
    check_param(lr, real(0), "lr")
    check_param(betas, BETAS, "betas")
    device = resolve_device(device)
    G, D = make_gan(X.shape[1:], arch=arch, z_dim=z_dim, width=width, seed=seed)
    if bank is None and tau is not None:
        bank = NeighbourBank(embed, X, metric="cosine", device=device, seed=seed)
    G, D = G.to(device).train(), D.to(device).train()
    mr = None
    if tau is not None:
        mr = MemorizationRejection(bank, tau, mode=mode, max_tries=max_tries,
                                   apply_to_discriminator=apply_to_discriminator, sample_shape=X.shape[1:],
                                   preprocess=to_image_range)
    start = time.perf_counter()
    history = _adversarial_steps(G, D, mr, torch.as_tensor(X, device=device) * 2.0 - 1.0, loss=loss, steps=steps,
                                 batch_size=batch_size, n_dis=n_dis, lr=lr, betas=betas, seed=seed,
                                 log_every=log_every)
    seconds = time.perf_counter() - start
    config = {"tau": None if tau is None else (tau if isinstance(tau, str) else float(tau)),
              "tau_value": None if mr is None else mr.tau, "embed": embed if bank is None else bank.description,
              "mode": mode, "max_tries": int(max_tries), "apply_to_discriminator": bool(apply_to_discriminator),
              "steps": int(steps), "batch_size": int(batch_size), "n_dis": int(n_dis), "loss": loss, "lr": float(lr),
              "betas": [float(b) for b in betas], "z_dim": int(z_dim), "width": width,
              "arch": arch if arch != "auto" else f"auto ({type(G).__name__})",
              "image_shape": list(X.shape[1:]), "n_train": len(X), "seed": int(seed), "device": str(device)}
    return GANRun(G, D, bank, None if mr is None else mr.tau, None if bank is None else bank.mean_nn_distance(),
                  history, config, seconds)


def _adversarial_steps(G, D, mr, real_all, *, loss, steps, batch_size, n_dis, lr, betas, seed, log_every):
    """The training loop of :func:`train_gan` on the real images ``real_all`` (in [−1, 1]); returns the history."""
    device = real_all.device
    opt_g, opt_d = (torch.optim.Adam(net.parameters(), lr=lr, betas=tuple(betas)) for net in (G, D))
    g_data = torch.Generator(device).manual_seed(stream_seed(seed, DATA_STREAM))
    g_latent = torch.Generator(device).manual_seed(stream_seed(seed, LATENT_STREAM))

    def sample(n):
        return G(torch.randn(n, G.z_dim, generator=g_latent, device=device))

    history = {"loss_d": np.empty(steps), "loss_g": np.empty(steps)}
    for step in range(steps):
        loss_d_sum = 0.0
        for _ in range(n_dis):
            real = real_all[torch.randint(len(real_all), (batch_size,), generator=g_data, device=device)]
            with torch.no_grad():
                fake = sample(batch_size)
                if mr is not None:
                    fake = mr.discriminator_batch(fake, sample)
            loss_d_sum += _update(opt_d, discriminator_loss(loss, D(real), D(fake)))
        fake = sample(batch_size)
        if mr is not None:
            fake = mr(fake, sample)
        history["loss_d"][step], history["loss_g"][step] = loss_d_sum / n_dis, _update(
            opt_g, generator_loss(loss, D(fake)))
        if log_every and (step + 1) % log_every == 0:
            rate = f", rejection rate {mr.history['rejection_rate'][-1]:.3f}" if mr is not None else ""
            logger.info("step %d/%d: loss_d %.4f, loss_g %.4f%s", step + 1, steps, history["loss_d"][step],
                        history["loss_g"][step], rate)
    if mr is not None:
        history.update({key: np.asarray(values) for key, values in mr.history.items()})
    return history


def _update(optimizer, loss):
    """One optimizer step on ``loss``; returns its value."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


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
            out.append(to_image_range(generator(z)).clamp_(0.0, 1.0).float().cpu().numpy())
    generator.train(was_training)
    return np.concatenate(out)
