"""Datasets and their preprocessing for density models.

:func:`load_dataset` reads a split of a dataset in its own dtype and range;
:func:`prepare` turns it into the float matrix a density model sees and records
every step, including the log-Jacobian back to the data's own scale.
"""
from .labels import encode_labels
from .loaders import DATASET_NAMES, Dataset, load_dataset, read_idx
from .preprocess import Prepared, bits_per_dim, prepare

__all__ = ["DATASET_NAMES", "Dataset", "Prepared", "bits_per_dim", "encode_labels", "load_dataset", "prepare",
           "read_idx"]
