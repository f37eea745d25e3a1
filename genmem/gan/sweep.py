"""The τ sweep: one GAN per (τ, seed), C_T against FD_f — the quality-vs-memorization trade-off (paper Figure 6)."""
import logging

import numpy as np
from scipy.stats import spearmanr

from ..device import resolve_device
from ..errors import GenmemError
from ..neighbours import NeighbourBank
from .data import check_images
from .metrics import evaluate_gan
from .rejection import resolve_tau
from .train import train_gan

logger = logging.getLogger(__name__)

#: Evaluation metrics copied into each row of a τ sweep.
SWEEP_METRICS = ("c_t", "fd_f", "nn_generated_mean", "nn_generated_median", "n_cells_kept", "n_generated_zero_features")


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
    train = check_images(train_images, "train_images")
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
