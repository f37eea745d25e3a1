"""Closed-form influence of training examples on a density estimate: Gaussian KDE, k-NN, GMM.

Sign convention, shared with :class:`~genmem.influence.TracIn`: with the loss
``ℓ(z; D) = −log p(z | D)`` (nats),

    IF(x_i, z) = ℓ(z; D∖x_i) − ℓ(z; D) = log p(z | D) − log p(z | D∖x_i).

Positive: removing ``x_i`` lowers the density at ``z``, so ``x_i`` supports ``z``
(a *proponent*); negative: an *opponent*. TracIn has the same sign: a gradient
step on ``x`` with learning rate η lowers ``ℓ(z)`` by about ``η ∇ℓ(x)·∇ℓ(z)``,
which removing ``x`` would undo. The self-influence ``IF(x_i, x_i)`` is the
exact leave-one-out memorization score ``log p(x_i | D) − log p(x_i | D∖x_i)``.

* **Gaussian KDE** ``p(z) = (1/N) Σ_j K_h(z − x_j)``: removing ``x_i`` gives
  ``p_{−i}(z) = (N p(z) − K_h(z − x_i)) / (N − 1)``, hence exactly
  ``IF(x_i, z) = log((N−1)/N) − log(1 − K_h(z − x_i) / (N p(z)))``.
* **k-NN density** ``p(z) = k / (N V_d R_k(z)^d)`` with ``R_k(z)`` the distance
  from ``z`` to its k-th nearest training point (``z`` itself counts when it is
  a training point): removing ``x_i`` moves the k-th neighbour to the
  (k+1)-th exactly when ``‖z − x_i‖ ≤ R_k(z)``, hence exactly
  ``IF(x_i, z) = log((N−1)/N) + d · 1[‖z − x_i‖ ≤ R_k(z)] · log(R_{k+1}(z) / R_k(z))``
  (``V_d`` cancels).
* **Gaussian mixture**: an approximation, see :class:`GMMInfluence`.
"""
import math
import warnings

import numpy as np
import torch

from ..device import resolve_device, torch_dtype
from ..distances import SquaredDistances
from ..errors import GenmemError
from ..models.em import log_joint, log_normaliser
from ..models.kde import KDE, kde_loo_memorization
from ..validation import check_data, check_int
from .gather import gather_influence

LOG_2PI = math.log(2.0 * math.pi)


class _ClosedForm:
    """Shared by the closed forms: ``influence`` from the subclass's ``_blocks(Z)``.

    ``_blocks`` yields ``(slice of Z's rows, IF block [rows, N])``.
    """

    def influence(self, Z, k=None):
        """``IF(x_i, z)`` of every training example on every row of ``Z``.

        Parameters
        ----------
        Z : array [n_z, D]
            Test points.
        k : int, optional
            Return only the ``k`` strongest proponents and opponents per test point.

        Returns
        -------
        ndarray [n_z, N] (float64), or :class:`~genmem.influence.TopInfluence` when ``k`` is given.
        """
        Z = check_data(Z, name="Z", n_features=self.X.shape[1])
        return gather_influence(self._blocks(Z), Z.shape[0], self.X.shape[0], k)


def _deprecated(old, new):
    warnings.warn(f"{old} is deprecated: build influence objects from (model, training data), {new}",
                  DeprecationWarning, stacklevel=3)


class KDEInfluence(_ClosedForm):
    """Exact influence of each training example on a Gaussian KDE's loss at any point.

    Parameters
    ----------
    model : KDE
        The density model (fitted or not): its bandwidth (``bandwidth_`` once
        fitted, else the rule resolved on ``X``), device, dtype and chunk size.
    X : array [N, D]
        The training data of the KDE.
    device, dtype, chunk_size : optional
        Override the model's (``chunk_size`` query rows at a time; memory
        ``O(chunk_size · N)``).

    Attributes
    ----------
    bandwidth_ : float
        The bandwidth used.

    Notes
    -----
    genmem 0.1's form ``KDEInfluence(X, bandwidth="scott", ...)`` still works
    and warns (``DeprecationWarning``).
    """

    def __init__(self, model, X=None, *, bandwidth=None, device=None, dtype=None, chunk_size=None):
        if not isinstance(model, KDE):  # 0.1: KDEInfluence(X, bandwidth="scott", ...)
            _deprecated("KDEInfluence(X, bandwidth)", "KDEInfluence(KDE(bandwidth), X)")
            legacy_bandwidth = bandwidth if bandwidth is not None else ("scott" if X is None else X)
            model, X = KDE(legacy_bandwidth), model
        elif bandwidth is not None:
            raise GenmemError("give the bandwidth to the KDE, KDEInfluence(KDE(bandwidth), X), not to KDEInfluence")
        if X is None:
            raise GenmemError("KDEInfluence needs the training data: KDEInfluence(model, X)")
        self.X = check_data(X, min_rows=2)
        h = model.bandwidth_ if model.__sklearn_is_fitted__() else model.resolve(self.X).bandwidth
        opts = {key: value if value is not None else getattr(model, key)
                for key, value in (("device", device), ("dtype", dtype), ("chunk_size", chunk_size))}
        self._model = KDE(h, **opts).fit(self.X)
        self.bandwidth_ = self._model.bandwidth_

    def attrs(self):
        """What produced the values, for a results file."""
        return {"method": "kde-closed-form", "bandwidth": self.bandwidth_}

    def self_influence(self):
        """``IF(x_i, x_i)`` for every training example, float64 [N]: the exact leave-one-out memorization score."""
        m = self._model
        return kde_loo_memorization(self.X, self.bandwidth_, device=m.device, dtype=m.dtype,
                                    chunk_size=m.chunk_size)["memorization"]

    def _blocks(self, Z):
        n = self.X.shape[0]
        h, kernel = self.bandwidth_, self._model.distances_
        shift = math.log((n - 1) / n)
        for sl, L in kernel.chunks(Z, scale=0.5 / (h * h)):  # [c, N] log kernel values, up to a constant
            top, arg = L.max(1, keepdim=True)
            s = torch.exp(L - top)
            total = s.sum(1, keepdim=True)
            # i ≠ argmax: 1 − K_i/(N p) = 1 − s_i/total with s_i/total ≤ 1/2, so log1p is accurate
            block = shift - torch.log1p(-s / total)
            # i = argmax: K_i may carry almost all of p(z); sum the other kernels directly
            rest = L.scatter(1, arg, -math.inf)
            lse_rest = torch.logsumexp(rest, 1, keepdim=True)
            block.scatter_(1, arg, shift + top + torch.log(total) - lse_rest)
            yield sl, block


class KNNInfluence(_ClosedForm):
    """Exact influence of each training example on the k-nearest-neighbour density estimate.

    ``p(z) = k / (N · V_d · R_k(z)^d)`` with ``R_k(z)`` the Euclidean distance
    from ``z`` to its k-th nearest training point (a training point is its own
    first neighbour). See the module docstring for the closed form.

    Parameters
    ----------
    n_neighbors : int
        k: the "model".
    X : array [N, D]
        Training data, ``N ≥ n_neighbors + 1``.
    device : str, default="cpu"
    dtype : {"float64", "float32"}, default="float64"
    chunk_size : int, default=1024
        Query rows at a time; memory ``O(chunk_size · N)``.

    Raises
    ------
    GenmemError
        Where ``R_k(z) = 0`` (k or more training points coincide with ``z``):
        the density is infinite there and the influence undefined.

    Notes
    -----
    genmem 0.1's order ``KNNInfluence(X, n_neighbors)`` still works and warns.
    """

    def __init__(self, n_neighbors, X, *, device="cpu", dtype="float64", chunk_size=1024):
        if not isinstance(n_neighbors, (int, np.integer)) and isinstance(X, (int, np.integer)):
            _deprecated("KNNInfluence(X, n_neighbors)", "KNNInfluence(n_neighbors, X)")  # 0.1's order
            n_neighbors, X = X, n_neighbors
        self.n_neighbors = check_int(n_neighbors, "n_neighbors", owner="KNNInfluence")
        self.X = check_data(X, min_rows=self.n_neighbors + 1)
        self._kernel = SquaredDistances(self.X, resolve_device(device), torch_dtype(dtype),
                               check_int(chunk_size, "chunk_size", owner="KNNInfluence"))

    def _radii(self, d2, rows):
        """Squared k-th and (k+1)-th neighbour radii [c, 1] of query rows with squared distances ``d2``."""
        k = self.n_neighbors
        radii = torch.topk(d2, k + 1, dim=1, largest=False).values
        rk2, rk12 = radii[:, k - 1:k], radii[:, k:k + 1]
        zero = rk2[:, 0] <= 0
        if zero.any():
            first = rows.start + int(torch.nonzero(zero)[0, 0])
            raise GenmemError(
                f"the k-NN density is infinite at query row {first}: {k} or more training points coincide with "
                f"it (R_k = 0); use a larger n_neighbors (now {k}) or remove duplicate examples"
            )
        return rk2, rk12

    def attrs(self):
        """What produced the values, for a results file."""
        return {"method": "knn-closed-form", "n_neighbors": self.n_neighbors}

    def _log_ratio(self, rk2, rk12):
        """``d · log(R_{k+1} / R_k)``: the jump of ``−log p`` when a k-nearest neighbour is removed."""
        return 0.5 * self.X.shape[1] * (torch.log(rk12) - torch.log(rk2))

    def self_influence(self):
        """``IF(x_i, x_i)`` for every training example, float64 [N]."""
        n = self.X.shape[0]
        out = np.empty(n)
        for sl, d2 in self._kernel.chunks(self.X):
            idx = torch.arange(d2.shape[0], device=d2.device)
            d2[idx, idx + sl.start] = 0.0  # a point's distance to itself, exactly
            rk2, rk12 = self._radii(d2, sl)
            out[sl] = self._log_ratio(rk2, rk12)[:, 0].cpu().double().numpy()
        return out + math.log((n - 1) / n)

    def _blocks(self, Z):
        n = self.X.shape[0]
        for sl, d2 in self._kernel.chunks(Z):
            rk2, rk12 = self._radii(d2, sl)
            jump = torch.where(d2 <= rk2, self._log_ratio(rk2, rk12), torch.zeros_like(d2))
            yield sl, jump + math.log((n - 1) / n)


class GMMInfluence(_ClosedForm):
    """Approximate influence of each training example on a fitted Gaussian mixture's loss.

    The approximation (derivation). EM's fitted parameters θ̂ are a fixed point
    ``θ̂ = M(E(θ̂; D); D)``. Refitting on ``D∖x_i`` from θ̂ moves them by
    ``Δ = (I − J)⁻¹ Δ₁``, where ``Δ₁ = M(E(θ̂); D∖x_i) − θ̂`` is one EM step and
    ``J`` the Jacobian of the EM map, whose size is the fraction of missing
    information (small when components barely overlap: ``J = 0`` for
    responsibilities that are exactly 0 or 1). We take the one-step model
    ``θ_{−i} = θ̂ + Δ₁``: the M-step without ``x_i`` with responsibilities
    ``r_ik`` frozen at θ̂. With ``W_k = N π_k`` and ``W'_k = W_k − r_ik`` it
    is, per component, a weighted rank-one downdate

        π'_k = W'_k / (N − 1),
        μ'_k = μ_k − (r_ik / W'_k) δ,                      δ = x_i − μ_k,
        Σ'_k = (W_k / W'_k) Σ_k − (r_ik W_k / W'_k²) δ δᵀ   (diag: δ² on the diagonal),

    and ``log p(z; θ_{−i})`` is evaluated *exactly* (not linearised) through
    the Sherman–Morrison formula and the matrix determinant lemma, with
    whitened vectors ``u = P_kᵀ(z − μ_k)``, ``v = P_kᵀ δ`` (``P_k P_kᵀ = Σ_k⁻¹``):
    one ``[n_z, N]`` matrix product per component. Then
    ``IF(x_i, z) = log p(z; θ̂) − log p(z; θ_{−i})``. To first order in
    ``1/N`` this equals the influence function ``∇ℓ(z)ᵀ H⁻¹ ∇ℓ(x_i)`` of the
    log-likelihood Hessian H whenever J = 0.

    Assumptions: θ̂ is a converged EM fit on ``X`` (so that θ̂ is the M-step of
    its own responsibilities, and ``W_k = N π_k``); the refit without ``x_i``
    stays in the same local optimum; components are well separated (J ≈ 0:
    the change of other examples' responsibilities is neglected). The
    regularisation ``reg_covar`` λ is scaled with the covariance
    (``Σ'`` holds ``(W_k/W'_k) λ`` instead of ``λ``, a relative difference of
    ``r_ik / W'_k`` in a term of size λ), which keeps ``Σ'`` positive definite.

    Parameters
    ----------
    gmm : fitted :class:`~genmem.models.GMM` or :class:`sklearn.mixture.GaussianMixture`
        Covariance type ``"full"`` or ``"diag"``; read are ``weights_``,
        ``means_``, ``precisions_cholesky_`` and ``covariance_type``.
    X : array [N, D]
        The data the mixture was fitted on.
    device : str, default="cpu"
    dtype : {"float64", "float32"}, default="float64"
    chunk_size : int, default=1024
        Query rows at a time; memory ``O(chunk_size · N)`` plus ``O(C · N · D)``
        for the whitened training rows.
    """

    def __init__(self, gmm, X, *, device="cpu", dtype="float64", chunk_size=1024):
        ctype = getattr(gmm, "covariance_type", None)
        if ctype not in ("full", "diag") or not hasattr(gmm, "precisions_cholesky_"):
            raise GenmemError(
                "GMMInfluence needs a fitted GMM (genmem or scikit-learn) with covariance_type 'full' or 'diag'; "
                f"got {type(gmm).__name__} with covariance_type {ctype!r}"
            )
        self.covariance_type = ctype
        self.chunk_size = check_int(chunk_size, "chunk_size", owner="GMMInfluence")
        self.device, self.dtype = resolve_device(device), torch_dtype(dtype)
        self.weights, self.means, self.prec = (
            torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=self.dtype, device=self.device)
            for a in (gmm.weights_, gmm.means_, gmm.precisions_cholesky_))
        self.X = check_data(X, min_rows=2, n_features=self.means.shape[1])
        n = self.X.shape[0]
        self.log_norm = log_normaliser(self.weights[None], self.prec[None], ctype)[0]  # [C]
        Xt = torch.as_tensor(self.X, dtype=self.dtype, device=self.device)
        # log π_k N(x_i; μ_k, Σ_k) under θ̂, [C, N]
        self.log_z = torch.cat([self._log_joint(Xt[s:s + self.chunk_size]) for s in range(0, n, self.chunk_size)], 1)
        resp = torch.exp(self.log_z - torch.logsumexp(self.log_z, 0, keepdim=True))  # r_ik, [C, N]
        W = (n * self.weights)[:, None]
        self.w_rest = W - resp  # W'_k, [C, N]
        self.a = W / self.w_rest  # W_k / W'_k
        self.beta = resp / self.w_rest  # r_ik / W'_k
        self.v = self._whiten(Xt)  # [C, N, D]
        self.log_det_prec = (torch.log(torch.diagonal(self.prec, dim1=-2, dim2=-1)) if ctype == "full"
                             else torch.log(self.prec)).sum(-1)  # [C]

    def _log_joint(self, Z):
        """``log π_k N(z; μ_k, Σ_k)`` [C, n] under θ̂."""
        return log_joint(Z, self.means[None], self.prec[None], self.log_norm[None], self.covariance_type)[0][0]

    def _whiten(self, Z):
        """``P_kᵀ (z − μ_k)`` [C, n, D] ('full'), or ``(z − μ_k) / σ_k`` ('diag')."""
        diff = Z[None] - self.means[:, None, :]
        return diff @ self.prec if self.covariance_type == "full" else diff * self.prec[:, None, :]

    def _component(self, k, u):
        """``log π'_k N(z; μ'_k, Σ'_k)`` of the one-step model without ``x_i``, for every i.

        ``u`` [c, D]: whitened test rows ``P_kᵀ(z − μ_k)`` → [c, N]; ``None``:
        ``z = x_i`` (self-influence, ``u = v_i``) → [N]. With ``s = u + β v``
        (whitened ``z − μ'_k``) and ``β = r_ik / W'_k``, ``a = W_k / W'_k``:
        'full': ``Σ' = a (Σ − β δδᵀ)``, quadratic form ``(|s|² + β (s·v)² / (1 − β|v|²)) / a``,
        ``log det Σ' = log det Σ + D log a + log(1 − β|v|²)``;
        'diag': ``σ'²_d = a σ²_d (1 − β v_d²)``, quadratic form ``Σ_d s_d² / (a (1 − β v_d²))``.
        """
        n, d = self.X.shape
        v, a, beta, w_rest = self.v[k], self.a[k], self.beta[k], self.w_rest[k]
        tiny = torch.finfo(self.dtype).tiny
        if self.covariance_type == "full":
            m = (v * v).sum(-1)
            uu, uv = (m, m) if u is None else ((u * u).sum(-1, keepdim=True), u @ v.T)
            one_m = (1.0 - beta * m).clamp_min(tiny)
            t = uv + beta * m
            quad = uu + 2.0 * beta * uv + beta * beta * m + beta * t * t / one_m
            log_det_rel = torch.log(one_m)
        else:
            one_m = (1.0 - beta[:, None] * v * v).clamp_min(tiny)  # [N, D]
            h = 1.0 / one_m
            vvh = (v * v * h).sum(-1)
            uu, uv = (vvh, vvh) if u is None else ((u * u) @ h.T, u @ (v * h).T)
            quad = uu + 2.0 * beta * uv + beta * beta * vvh
            log_det_rel = torch.log(one_m).sum(-1)
        log_det = d * torch.log(a) + log_det_rel - 2.0 * self.log_det_prec[k]
        log_w = torch.log(w_rest.clamp_min(tiny)) - math.log(n - 1)
        term = log_w - 0.5 * (d * LOG_2PI + log_det + quad / a)
        return torch.where(w_rest > 0, term, torch.full_like(term, -math.inf))

    def _log_p_without(self, u_all=None):
        """``log p(z; θ_{−i})`` summed over components: [c, N], or [N] at ``z = x_i`` when ``u_all`` is None."""
        total = None
        for k in range(self.means.shape[0]):
            term = self._component(k, None if u_all is None else u_all[k])
            total = term if total is None else torch.logaddexp(total, term)
        return total

    def attrs(self):
        """What produced the values, for a results file."""
        return {"method": "gmm-one-step", "covariance_type": self.covariance_type}

    def self_influence(self):
        """Approximate ``IF(x_i, x_i)`` for every training example, float64 [N]."""
        log_p = torch.logsumexp(self.log_z, 0)
        return (log_p - self._log_p_without()).cpu().double().numpy()

    def _blocks(self, Z):
        Zt = torch.as_tensor(Z, dtype=self.dtype, device=self.device)
        for start in range(0, Z.shape[0], self.chunk_size):
            zc = Zt[start:start + self.chunk_size]
            log_p = torch.logsumexp(self._log_joint(zc), 0)  # [c]
            yield slice(start, start + zc.shape[0]), log_p[:, None] - self._log_p_without(self._whiten(zc))

