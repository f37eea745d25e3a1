"""A GAN run in one HDF5 file: :func:`write_gan` and :func:`read_gan`."""
import json

import h5py
import numpy as np

from ..outputs import IDENTITY
from ..results import atomic_h5, provenance
from ..results.stamped import read_stamped
from .train import DATA_STREAM, EVAL_STREAM, LATENT_STREAM

FORMAT = "genmem.gan"
FORMAT_VERSION = 1


def write_gan(path, run, evaluation, *, data_info=None, train_index=None, test_index=None, argv=None, identity=None):
    """Write a trained and evaluated GAN run to one HDF5 file, atomically.

    An existing file at ``path`` is replaced, as :func:`numpy.save` does (the command line refuses
    that without ``--force``).

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
    with read_stamped(path, FORMAT, FORMAT_VERSION, "genmem GAN", "give a file written by 'genmem gan'") as f:
        attrs = {}
        for key, value in f.attrs.items():
            try:
                attrs[key] = json.loads(value) if isinstance(value, str) else value
            except ValueError:
                attrs[key] = value
        arrays = {}
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return {"attrs": attrs, **arrays}
