"""The neighbour bank: a training set embedded by a feature map, searched exactly.

``d(x) = min_{x' ∈ train} 1 − cos(f(x), f(x'))`` (Bai et al. 2022, the
memorization-rejection paper's NN distance ``d_f``), by chunked matrix
products and top-k on a torch device (see :mod:`genmem.neighbours.search`).
"""
import json
import logging
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import GenmemError
from ..outputs import IDENTITY
from ..results import atomic_h5
from ..results.provenance import now
from ..results.stamped import read_stamped
from .embedders import RESTORABLE, PrecomputedFeatures, as_embedder, flatten
from .search import METRICS, ExactSearch, check_choice

logger = logging.getLogger(__name__)

FORMAT = "genmem.neighbours"
FORMAT_VERSION = 1
#: Quantiles of the leave-one-out NN distance reported next to the mean.
DEFAULT_QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5)


def normalise_rows(F, name="features"):
    """Rows of ``F`` divided by their L2 norms; GenmemError for all-zero rows (no direction)."""
    norms = np.linalg.norm(F, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0.0)
    if len(zero):
        raise GenmemError(f"{name}: {len(zero)} all-zero row(s) (first: row {zero[0]}) whose cosine distance is "
                          "undefined; use metric='euclidean' or a feature map without zero vectors")
    return F / norms


def value_range(X):
    """``(min, max)`` of an array or tensor, as floats."""
    if isinstance(X, torch.Tensor):
        return float(X.min()), float(X.max())
    X = np.asarray(X)
    return float(X.min()), float(X.max())


def load_features(path):
    """A precomputed feature array [N, d] from a ``.npy`` file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GenmemError(f"feature file {path} does not exist; save the features with numpy.save")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise GenmemError(f"cannot read {path} as a .npy array ({exc}); save it with numpy.save") from None


class NeighbourBank:
    """A training set embedded by a feature map ``f``, answering exact nearest-neighbour queries.

    Parameters
    ----------
    features_or_embedder : str, array, torch module, callable or embedder, default "pixels"
        The feature map: ``"pixels"``, ``"pca:D"`` (fitted on ``train_X``),
        ``"imagenet:ARCH:WEIGHTS"``, another registered spec
        (:func:`genmem.neighbours.register_embedder`), an object with
        ``embed(X)``, a ``torch.nn.Module`` or a callable ``fn(X) -> [N, d]``.
        Or precomputed training features: an array [N, d] or ``"npy:PATH"``
        (then ``train_X`` is not given and queries are feature arrays).
    train_X : array [N, ...], optional
        The training examples (required unless features are given).
    metric : {"cosine", "euclidean"}, default "cosine"
        ``1 − cos`` on L2-normalised features (the paper's ``d_f``), or the
        Euclidean distance of the raw features.
    device : str, default "auto"
        Where the search (and torch feature maps) run.
    dtype : {"float32", "float64"}, default "float32"
        Precision of the candidate search; distances are re-ranked in float64.
    backend : {"torch", "faiss"}, default "torch"
        ``"faiss"`` proposes candidates with faiss (exact flat index, CPU)
        when it is installed.
    chunk_size : int, optional
        Queries per matrix product.
    seed : int, default 0
        Seed of feature maps that draw random numbers (PCA's solver).

    Attributes
    ----------
    features : float64 ndarray [N, d]
        The training features (L2-normalised for the cosine metric).
    embedder : object or None
        The feature map (None for a loaded bank whose map could not be rebuilt).
    embedder_description : dict
        The feature map's JSON-serialisable description (``name``, ``spec``, ...).
    input_range : (float, float) or None
        Smallest and largest value of the training examples the feature map
        embedded (None for precomputed features), to check that queries come
        on the same scale.
    description : dict
        Feature map, metric, normalisation and dimensions (JSON-serialisable).

    Examples
    --------
    >>> import numpy as np
    >>> from genmem.neighbours import NeighbourBank
    >>> bank = NeighbourBank("pixels", np.eye(3), metric="euclidean", device="cpu")
    >>> distances, indices = bank.query(np.array([[0.9, 0.1, 0.0]]), k=2)
    >>> distances.round(4), indices
    (array([[0.1414, 1.2728]]), array([[0, 1]]))
    """

    def __init__(self, features_or_embedder="pixels", train_X=None, *, metric="cosine", device="auto",
                 dtype="float32", backend="torch", chunk_size=None, seed=0):
        check_choice(metric, METRICS, "metric")
        given = features_or_embedder
        if isinstance(given, str) and given.startswith("npy:"):
            given = load_features(given[4:])
            source = features_or_embedder[4:]
        else:
            source = "array"
        if isinstance(given, (np.ndarray, torch.Tensor)):
            if train_X is not None:
                raise GenmemError("give precomputed features alone (NeighbourBank(features)); "
                                  "train_X is only for a feature map that embeds it")
            features = flatten(given, "features")
            embedder = PrecomputedFeatures(features.shape[1], source)
        else:
            if train_X is None:
                raise GenmemError("NeighbourBank needs train_X, the training examples to embed "
                                  "(or precomputed features as its first argument)")
            embedder = as_embedder(given, train_X, device=device, seed=seed)
            features = flatten(embedder.embed(train_X), "embedded training features")
        self._setup(features, embedder, metric, device, dtype, backend, chunk_size)
        self.input_range = None if train_X is None else value_range(train_X)

    def _setup(self, features, embedder, metric, device, dtype, backend, chunk_size, *, normalised=False,
               embedder_description=None):
        if len(features) < 2:
            raise GenmemError(f"a neighbour bank needs at least 2 training examples; got {len(features)}")
        self.metric = metric
        if metric == "cosine" and not normalised:
            features = normalise_rows(features, "the training features")
        self.features = features
        self.embedder = embedder
        self.embedder_description = embedder_description or getattr(embedder, "description", None) or {
            "name": type(embedder).__name__}
        self._search = ExactSearch(self.features, metric=metric, device=device, dtype=dtype, backend=backend,
                                   chunk_size=chunk_size)
        self._loo = None

    @property
    def n_points(self):
        """Number of training examples in the bank."""
        return self.features.shape[0]

    @property
    def dim(self):
        """Dimension of the features."""
        return self.features.shape[1]

    @property
    def device(self):
        """The torch device the search runs on."""
        return self._search.device

    @property
    def description(self):
        """Feature map, metric, normalisation and dimensions, JSON-serialisable."""
        return {"embedder": self.embedder_description, "metric": self.metric,
                "normalised": self.metric == "cosine", "n_points": int(self.n_points), "dim": int(self.dim),
                "backend": self._search.backend, "input_range": self.input_range}

    def embed(self, X):
        """Features of ``X`` [M, ...] in the bank's space (normalised for the cosine metric): float64 [M, d]."""
        if self.embedder is None:
            raise GenmemError("this loaded bank's feature map could not be rebuilt from its file; pass embedder= "
                              "to NeighbourBank.load or query with features (query_features)")
        return self._prepare(self.embedder.embed(X))

    def _prepare(self, F):
        F = flatten(F, "query features")
        if F.shape[1] != self.dim:
            raise GenmemError(f"query features have {F.shape[1]} dimensions but the bank's have {self.dim}; "
                              "embed the queries with the bank's feature map")
        return normalise_rows(F, "the query features") if self.metric == "cosine" else F

    def query(self, Y=None, k=1, *, exclude_self=False):
        """Distances and indices of the ``k`` nearest training examples of each row of ``Y``.

        Parameters
        ----------
        Y : array [M, ...], optional
            Examples in the input space of the feature map; None queries the
            bank's own training examples.
        k : int, default 1
        exclude_self : bool, default False
            The queries are the training examples themselves (``M = N``, row
            ``i`` is example ``i``): each is excluded from its own search,
            giving leave-one-out NN distances. Exact duplicates elsewhere in
            the training set still count (distance 0).

        Returns
        -------
        distances : float64 ndarray [M, k]
            ``1 − cos`` (or Euclidean), ascending along each row.
        indices : int64 ndarray [M, k]
            Rows of the training set; ties go to the lower index.
        """
        F = self.features if Y is None else self.embed(Y)
        return self._search.search(F, k, exclude_self=exclude_self)

    def query_features(self, F, k=1, *, exclude_self=False):
        """:meth:`query` for queries that are already features [M, d] of the bank's feature map."""
        return self._search.search(self._prepare(F), k, exclude_self=exclude_self)

    def loo_distances(self):
        """Leave-one-out NN distance and index of every training example: two arrays [N] (cached)."""
        if self._loo is None:
            dist, idx = self.query(None, 1, exclude_self=True)
            self._loo = dist[:, 0], idx[:, 0]
        return self._loo

    def mean_nn_distance(self):
        """Average leave-one-out NN distance of the training set.

        The memorization-rejection paper's starting point for the rejection
        threshold τ: generated samples closer than this to their nearest
        training example are closer than a typical training example is to
        the rest of the training set.
        """
        return float(self.loo_distances()[0].mean())

    def nn_distance_quantiles(self, qs=DEFAULT_QUANTILES):
        """Quantiles of the leave-one-out NN distance: dict ``{q: value}`` (linear interpolation)."""
        qs = np.atleast_1d(np.asarray(qs, dtype=np.float64))
        if qs.size == 0 or not ((qs >= 0) & (qs <= 1)).all():
            raise GenmemError(f"quantiles must lie in [0, 1]; got {qs.tolist()}")
        values = np.quantile(self.loo_distances()[0], qs)
        return {float(q): float(v) for q, v in zip(qs, values)}

    def save(self, path, *, identity=None):
        """Write the features and metadata to an HDF5 file atomically.

        An existing file at ``path`` is replaced, as :func:`numpy.save` does
        (the command line refuses that without ``--force``).

        The file holds ``/features [N, d]`` (float64, normalised for the
        cosine metric), the feature map's own arrays under ``/embedder``
        (e.g. PCA mean and components) and attributes ``format``,
        ``format_version``, ``genmem_version``, ``created``, ``metric``,
        ``normalised``, ``n_points``, ``dim``, ``embedder`` (JSON), for a bank
        built from examples ``input_range`` and, when given,
        ``genmem_identity`` = ``identity`` (what the bank was made from, see
        :mod:`genmem.outputs`).
        """
        state = self.embedder.state() if hasattr(self.embedder, "state") else {}
        with atomic_h5(path) as f:
            if identity is not None:
                f.attrs[IDENTITY] = identity
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["genmem_version"] = __version__
            f.attrs["created"] = now()
            f.attrs["metric"] = self.metric
            f.attrs["normalised"] = self.metric == "cosine"
            f.attrs["n_points"] = self.n_points
            f.attrs["dim"] = self.dim
            f.attrs["embedder"] = json.dumps(self.embedder_description, sort_keys=True)
            if self.input_range is not None:
                f.attrs["input_range"] = np.asarray(self.input_range)
            f["features"] = self.features
            group = f.create_group("embedder")
            for name, value in state.items():
                group[name] = value

    @classmethod
    def load(cls, path, *, embedder=None, device="auto", dtype="float32", backend="torch", chunk_size=None):
        """A bank saved by :meth:`save`.

        Parameters
        ----------
        path : path-like
        embedder : optional
            The feature map for queries in input space, as for the
            constructor (not ``"pca:D"``: it is fitted on training data). When
            None, pixels, PCA and precomputed feature maps are rebuilt from
            the file; others leave ``embedder`` None (use
            :meth:`query_features`).
        device, dtype, backend, chunk_size
            As for the constructor.
        """
        with read_stamped(path, FORMAT, FORMAT_VERSION, "neighbour-bank", "make one with NeighbourBank.save") as f:
            features = f["features"][()]
            metric = str(f.attrs["metric"])
            description = json.loads(f.attrs["embedder"])
            state = {name: ds[()] for name, ds in f["embedder"].items()}
            input_range = tuple(float(v) for v in f.attrs["input_range"]) if "input_range" in f.attrs else None
        restored = embedder is None
        if not restored:
            embedder = as_embedder(embedder, None, device=device)
        elif description.get("name") in RESTORABLE:
            embedder = RESTORABLE[description["name"]].from_state(description, state)
        else:
            logger.info("%s: feature map %s cannot be rebuilt; queries must be features", path, description)
        bank = cls.__new__(cls)
        bank._setup(features, embedder, metric, device, dtype, backend, chunk_size, normalised=True,
                    embedder_description=description if restored else None)
        bank.input_range = input_range
        return bank
