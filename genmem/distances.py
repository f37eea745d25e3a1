"""The one pairwise-distance kernel: squared Euclidean distances from query rows to a fixed set of points.

Everything that compares every query with every point goes through
:class:`SquaredDistances` — the KDE's log-kernel and leave-one-out, the
k-NN influence and the candidate search of exact nearest neighbours — as
chunks of one fused matrix product ``|q|² − 2⟨q, x⟩ + |x|²`` on the points'
device.
"""
import warnings

import torch


class SquaredDistances:
    """Exact squared Euclidean distances from chunks of query rows to a fixed set of points, on one device.

    Parameters
    ----------
    X : array or Tensor [n, d]
        The points.
    device : str or torch.device
    dtype : torch.dtype
        Precision of the products.
    chunk_size : int
        Query rows per block of :meth:`chunks`.

    Examples
    --------
    >>> import numpy as np, torch
    >>> kernel = SquaredDistances(np.array([[0.0, 0.0], [3.0, 4.0]]), "cpu", torch.float64, chunk_size=2)
    >>> kernel.sq_dists(torch.tensor([[0.0, 4.0]], dtype=torch.float64))
    tensor([[16.,  9.]], dtype=torch.float64)
    """

    def __init__(self, X, device, dtype, chunk_size):
        with warnings.catch_warnings():  # a read-only array (e.g. a memmap) is only ever read
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            self.X = torch.as_tensor(X, dtype=dtype, device=device)
        self.sq = (self.X * self.X).sum(1)
        self.chunk_size = int(chunk_size)

    def sq_dists(self, Q):
        """Squared distances [c, n] from query rows ``Q`` (a tensor) to the points."""
        d2 = torch.addmm(self.sq[None, :], Q, self.X.T, alpha=-2.0)
        return d2.add_((Q * Q).sum(1, keepdim=True)).clamp_min_(0.0)

    def _cross(self, q, scale):
        """``2·scale·⟨q, x⟩ − scale·|x|²`` [c, n]: ``−scale·d²`` but for the query's own term, in one fused product."""
        return torch.addmm(self.sq[None, :], q, self.X.T, beta=-scale, alpha=2.0 * scale)

    def nearness(self, q):
        """``⟨q, x⟩ − |x|²/2 = (|q|² − d²)/2`` [c, n]: larger is nearer; it orders each query row's points by distance.

        One fused matrix product, without the query's own term (the same for
        a whole row), for ranking candidates.
        """
        return self._cross(q, 0.5)

    def chunks(self, Q, scale=None):
        """Yield ``(slice, block)`` for chunks of the query rows ``Q`` (numpy).

        ``block`` holds the squared distances [c, n]; with ``scale`` it holds
        ``−scale · d²`` (a Gaussian log-kernel for ``scale = 1/(2h²)``),
        computed in one fused matrix product — four times fewer passes over
        the block than scaling the distances afterwards.
        """
        Q = torch.as_tensor(Q, dtype=self.X.dtype, device=self.X.device)
        for start in range(0, Q.shape[0], self.chunk_size):
            sl = slice(start, min(start + self.chunk_size, Q.shape[0]))
            q = Q[sl]
            if scale is None:
                yield sl, self.sq_dists(q)
            else:
                yield sl, self._cross(q, scale).sub_(scale * (q * q).sum(1, keepdim=True))
