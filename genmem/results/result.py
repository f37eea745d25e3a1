"""The in-memory result of a K-fold run, as stored in one HDF5 file."""
from dataclasses import dataclass, field

import numpy as np

from ..errors import GenmemError
from .tables import to_dataframe


@dataclass
class KFoldResult:
    """Everything a K-fold memorization run produces.

    Attributes
    ----------
    loglik : ndarray [R, K, N]
        log p of every example under every (repeat, fold) model; NaN for units
        not computed yet (only in a partial result).
    assignment : int ndarray [R, N]
        Fold holding each example out, per repeat.
    done : bool ndarray [R, K]
        Which units have been computed.
    unit_seeds : uint64 ndarray [R, K]
    scores : dict of str to ndarray [N]
        ``memorization``, ``loglik_in``, ``loglik_out``,
        ``memorization_reference``, ``memorization_balanced`` and, when
        ``R > 1``, ``stderr``. Empty until the run is complete.
    extras : dict of str to ndarray [R, K, ...]
        Further per-unit arrays a model returns (e.g. the VAE's ``ess``).
    config : dict
        The full resolved configuration (JSON-serialisable).
    meta : dict
        Provenance: genmem and library versions, device, creation time, argv.
    index, labels : int ndarray [N]
    label_names : list of str or None
        The class of each label code, where the labels were names.
    x : ndarray [N, D] or None
        The exact array the density model saw.
    images : ndarray [N, ...] or None
        The examples as images in [0, 1], for plots.
    views : dict of str to ndarray [N, ...]
        Later analyses of the same examples (``"influence/self"``,
        ``"neighbours/distance"``, ...), see :func:`genmem.results.add_views`.
    """

    loglik: np.ndarray
    assignment: np.ndarray
    done: np.ndarray
    unit_seeds: np.ndarray
    config: dict
    meta: dict
    index: np.ndarray
    labels: np.ndarray
    scores: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
    x: np.ndarray = None
    images: np.ndarray = None
    views: dict = field(default_factory=dict)
    label_names: list = None

    @property
    def complete(self):
        """True when every unit has been computed and the scores exist."""
        return bool(self.done.all()) and "memorization" in self.scores

    @property
    def memorization(self):
        """The default estimator's per-example memorization score [N]."""
        return self.scores["memorization"]

    @property
    def n_examples(self):
        return self.assignment.shape[1]

    def values(self, name):
        """The per-example array ``name``: a score (``"memorization"``, ...) or a view (``"influence/self"``)."""
        found = self.scores.get(name, self.views.get(name))
        if found is None or np.ndim(found) != 1:
            available = ", ".join(key for key, value in {**self.scores, **self.views}.items() if np.ndim(value) == 1)
            what = "no" if found is None else "no per-example (1-D)"
            raise GenmemError(f"the result has {what} score {name!r}; rank by one of: {available or 'none'}")
        return found

    def top(self, n=20, by="memorization"):
        """Indices (into the run's rows) of the ``n`` highest values of ``by``, highest first."""
        values = self.values(by)
        order = np.argsort(-values, kind="stable")
        return order[: min(n, len(order))]

    def to_dataframe(self):
        """Every per-example score and view as a ``pandas.DataFrame`` indexed by row (needs pandas).

        Columns: ``index``, ``label`` (and ``label_name``), ``memorization``,
        ``stderr`` (R > 1), ``loglik_in``, ``loglik_out``, both estimators
        and every view; see :func:`genmem.results.columns`.
        """
        return to_dataframe(self)

    def save(self, path):
        """Write the result to ``path`` atomically (temp file + rename).

        An existing file at ``path`` is replaced, as :func:`numpy.save` does
        (the command line refuses that without ``--force``).
        """
        from .hdf5 import write_result  # hdf5 imports this module: imported here to keep the import one-way

        write_result(path, self)
