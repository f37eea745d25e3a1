"""What TracIn needs from a VAE: its per-example loss and its checkpoints.

:func:`vae_negative_elbo` is the objective the units are trained on, as a
function of one checkpoint's parameters that ``torch.func`` can transform;
:func:`load_vae_checkpoint` reads a unit's checkpoint file into the fitted
:class:`~genmem.models.VAE` (the template of the loss) and its saved states.
:class:`genmem.influence.TracIn` takes both (captum's ``TracInCP`` takes a
loss and a ``checkpoints_load_func`` the same way).
"""
import torch
from torch.func import functional_call

from ...device import resolve_device
from .checkpoints import checkpoint_states, read_checkpoint
from .data import EVAL_BINARIZE_THRESHOLD
from .estimator import VAE
from .units import latent_log_ratio


def vae_negative_elbo(vae):
    """The per-example loss ``ℓ(params, x, ε) = −ELBO`` of a fitted :class:`~genmem.models.VAE`, for TracIn.

    ``−(1/S) Σ_s [log p(x | z_s) + log p(z_s) − log q(z_s | x)]`` with
    ``z_s = loc(x) + scale(x) · ε_s`` for the S draws ``ε`` [S, L]: the
    objective the VAE is trained on (S = 1 there). ``params`` holds the
    ``encoder.*``/``decoder.*`` weights of one checkpoint. A VAE trained with
    ``binarize="dynamic"`` is scored, as in its ``log_prob``, on the fixed
    binarization ``x > 0.5``.
    """
    vae._check_fitted()
    net = vae.net_
    likelihood = vae.pyro_model_guide()[0].likelihood
    dynamic = vae.binarize == "dynamic"

    def loss(params, x, eps):
        if dynamic:
            x = (x > EVAL_BINARIZE_THRESHOLD).to(x.dtype)
        enc = {n[len("encoder."):]: p for n, p in params.items() if n.startswith("encoder.")}
        dec = {n[len("decoder."):]: p for n, p in params.items() if n.startswith("decoder.")}
        loc, scale = functional_call(net.encoder, enc, (x.unsqueeze(0),))  # [1, L]
        z = torch.addcmul(loc, scale, eps)  # [S, L]
        out = functional_call(net.decoder, dec, (z,))  # [S, D]
        log_scale = dec.get("log_scale")
        y, log_jacobian = likelihood.data_terms(x)
        log_px = likelihood.log_prob_rows(out[None, None], None if log_scale is None else log_scale[None],
                                          y[None, None], log_jacobian[None, None])[0, 0]  # [S]
        return -(log_px + latent_log_ratio(z, eps, torch.log(scale).sum(-1))).mean()

    return loss


def load_vae_checkpoint(path, *, device="cpu", content=None):
    """Read a VAE unit's checkpoint file (``unit_r{r}_k{k}.pt`` of :meth:`VAE.fit_units`).

    Parameters
    ----------
    path : path-like
    device : str, default="cpu"
    content : bytes, optional
        The file's bytes, already read (and checked) by the caller; ``path``
        then only names it in messages.

    Returns
    -------
    vae : VAE
        The unit at its last checkpoint (its network is the template of the loss).
    checkpoints : list of Checkpoint
        One per saved epoch, with the recorded learning rate and label ``"epoch E"``.
    info : dict
        ``seed``, ``unit`` ([repeat, fold]), ``config``, ``epochs``, ``steps`` as recorded.

    Raises
    ------
    GenmemError
        If the file is missing, not a genmem VAE checkpoint, or a state does
        not fit the network its config describes.
    """
    raw = read_checkpoint(path, content)
    vae = VAE.from_checkpoint_dict(raw, device=str(resolve_device(device)), source=path)
    info = {key: raw[key] for key in ("seed", "unit", "config", "epochs", "steps")}
    return vae, checkpoint_states(raw, vae.net_, path), info
