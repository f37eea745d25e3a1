"""Exact k-nearest-neighbour search by chunked matrix products on a torch device.

Candidates are found in the working precision (``float32`` by default: one
matrix product of the distance kernel, :class:`~genmem.distances.SquaredDistances`,
and a top-k per chunk of queries, on the CPU or a GPU) and then
re-ranked in ``float64`` from the exact distances of the candidates, so the
returned distances are float64-exact and the indices agree with an all-pairs
float64 computation unless more than :data:`EXTRA_CANDIDATES` points lie
within rounding error of the k-th neighbour. Ties are broken by the lower
index. The optional faiss backend (``IndexFlatIP``/``IndexFlatL2``, exact, on
the CPU) only proposes the candidates; the re-ranking is the same.
"""
import importlib.util

import numpy as np
import torch

from ..device import DTYPES, resolve_device
from ..distances import SquaredDistances
from ..errors import GenmemError
from ..validation import check_int

METRICS = ("cosine", "euclidean")
BACKENDS = ("torch", "faiss")

#: Candidates beyond k found in the working precision and re-ranked in float64.
EXTRA_CANDIDATES = 8
#: Largest number of elements of one chunk's score matrix (and of its gathered candidates).
CHUNK_ELEMENTS = 1 << 24


def faiss_available():
    """True when the optional ``faiss`` package can be imported."""
    return importlib.util.find_spec("faiss") is not None


def check_choice(value, allowed, what):
    """Return ``value`` if it is one of ``allowed``, else raise :class:`GenmemError`."""
    if value not in allowed:
        raise GenmemError(f"unknown {what} {value!r}; use one of {', '.join(allowed)}")
    return value


class ExactSearch:
    """A fixed set of points answering exact k-nearest-neighbour queries.

    Parameters
    ----------
    points : float64 ndarray [n, d]
        The points searched. For ``metric="cosine"`` they must already be
        L2-normalised (distance ``1 − <q, p>``).
    metric : {"cosine", "euclidean"}
    device : str or torch.device
    dtype : {"float32", "float64"}
        Precision of the candidate search; re-ranking is always float64.
    backend : {"torch", "faiss"}
    chunk_size : int, optional
        Queries per chunk (default: as many as keep one chunk's score matrix
        under :data:`CHUNK_ELEMENTS` elements).
    """

    def __init__(self, points, *, metric="cosine", device="auto", dtype="float32", backend="torch", chunk_size=None):
        self.metric = check_choice(metric, METRICS, "metric")
        self.backend = check_choice(backend, BACKENDS, "backend")
        self.dtype = DTYPES[check_choice(str(dtype), tuple(DTYPES), "dtype")]
        if chunk_size is not None:
            check_int(chunk_size, "chunk_size")
        self.chunk_size = chunk_size
        self.device = resolve_device(device)
        self.points64 = torch.as_tensor(np.asarray(points, dtype=np.float64), device=self.device)
        self.n, self.dim = self.points64.shape
        if self.backend == "faiss":
            self._index = _faiss_index(self.points64.cpu().numpy(), self.metric)
        else:
            self._kernel = SquaredDistances(self.points64, self.device, self.dtype, chunk_size=self.n)

    def search(self, queries, k=1, *, exclude_self=False):
        """The ``k`` nearest points of every query row.

        Parameters
        ----------
        queries : float64 ndarray [q, d]
            Same space (and, for cosine, the same normalisation) as the points.
        k : int
        exclude_self : bool
            Query row ``i`` is point ``i`` itself (``q == n``) and must not be
            its own neighbour: leave-one-out distances. Other points equal to
            it still count.

        Returns
        -------
        distances : float64 ndarray [q, k]
            Ascending along each row.
        indices : int64 ndarray [q, k]
        """
        queries = np.asarray(queries, dtype=np.float64)
        available = self.n - int(bool(exclude_self))
        if not 1 <= int(k) <= available:
            raise GenmemError(
                f"k must be between 1 and {available} (the {self.n} searchable points"
                f"{' minus the query itself' if exclude_self else ''}); got {k}"
            )
        if exclude_self and len(queries) != self.n:
            raise GenmemError(
                f"exclude_self needs the {self.n} searched points themselves as queries; got {len(queries)} rows"
            )
        k = int(k)
        n_cand = min(k + EXTRA_CANDIDATES, available)
        rows = self.chunk_size or max(1, CHUNK_ELEMENTS // max(self.n, n_cand * self.dim))
        distances = np.empty((len(queries), k))
        indices = np.empty((len(queries), k), dtype=np.int64)
        for start in range(0, len(queries), rows):
            stop = min(start + rows, len(queries))
            q64 = torch.as_tensor(queries[start:stop], device=self.device)
            candidates = self._candidates(q64, start, n_cand, exclude_self)
            dist, idx = self._rerank(q64, candidates)
            distances[start:stop] = dist[:, :k].cpu().numpy()
            indices[start:stop] = idx[:, :k].cpu().numpy()
        return distances, indices

    def _candidates(self, q64, start, n_cand, exclude_self):
        """Indices [c, n_cand] of the best candidates of a chunk of queries, in the working precision."""
        if self.backend == "faiss":
            return self._faiss_candidates(q64, start, n_cand, exclude_self)
        scores = self._kernel.nearness(q64.to(self.dtype))  # larger is nearer, for both metrics
        if exclude_self:
            rows = torch.arange(len(q64), device=self.device)
            scores[rows, rows + start] = -torch.inf
        return scores.topk(n_cand, dim=1).indices

    def _faiss_candidates(self, q64, start, n_cand, exclude_self):
        _, found = self._index.search(np.ascontiguousarray(q64.cpu().numpy(), dtype=np.float32),
                                      n_cand + int(bool(exclude_self)))
        if exclude_self:
            keep = found != np.arange(start, start + len(found))[:, None]
            keep[keep.all(axis=1), -1] = False  # self not among them: drop the last instead
            found = found[keep].reshape(len(found), n_cand)
        return torch.as_tensor(found.astype(np.int64), device=self.device)

    def _rerank(self, q64, candidates):
        """Exact float64 distances of the candidates, sorted ascending (ties: lower index first).

        The cosine distance of unit vectors is computed as ``|q − p|² / 2``
        (equal to ``1 − <q, p>``), which has no cancellation for near
        duplicates and is exactly 0 for identical features.
        """
        candidates, _ = candidates.sort(dim=1)
        cand_points = self.points64[candidates]
        sq = (cand_points - q64[:, None, :]).square_().sum(-1)
        dist = sq.mul_(0.5) if self.metric == "cosine" else sq.sqrt_()
        dist, order = dist.sort(dim=1, stable=True)
        return dist, candidates.gather(1, order)


def _faiss_index(points, metric):
    if not faiss_available():
        raise GenmemError("backend 'faiss' needs the faiss package, which is not installed; "
                          "install faiss-cpu or use backend='torch'")
    import faiss

    index = (faiss.IndexFlatIP if metric == "cosine" else faiss.IndexFlatL2)(points.shape[1])
    index.add(np.ascontiguousarray(points, dtype=np.float32))
    return index
