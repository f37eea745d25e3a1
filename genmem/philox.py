"""Counter-based random numbers: Philox-4×32-10 in integer tensor ops, on any device.

Every number is a pure function of a *key* (two 32-bit words, from a unit's
seed) and a *counter* (four 32-bit words: a position and three tags such as
step, epoch and stream), the design of Salmon et al., "Parallel random
numbers: as easy as 1, 2, 3" (SC 2011) and of JAX's ``jax.random``. Draws
for many units, steps and positions come from one call, and a unit gets the
same numbers whatever it is computed beside, wherever a run is resumed, and
on the CPU and on CUDA alike: the integer part is exact on every device
(32-bit words held in ``int64`` tensors, see :func:`philox4x32`), and only the
final float transforms (log, cos, sin of Box–Muller) may round differently between
devices.

:func:`philox4x32` is the bijection itself (checked against the Random123
known-answer vectors); :func:`uniform` and :func:`normal` turn it into floats
with a fixed counter layout: word 0 counts blocks of outputs along the last
axis, words 1–3 are the caller's tags.
"""
import math

import torch

from .errors import GenmemError

_MASK32 = 0xFFFFFFFF
#: Philox-4×32 multipliers (M0, M1) and Weyl key increments (W0, W1) of Random123.
_MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
_WEYL = (0x9E3779B9, 0xBB67AE85)
ROUNDS = 10


def key_words(seeds, device="cpu"):
    """The Philox key of each 64-bit seed: int64 tensor ``[..., 2]`` of its low and high 32-bit words."""
    seeds = [int(s) for s in seeds]
    if any(s < 0 or s >= 1 << 64 for s in seeds):
        raise GenmemError("Philox keys come from seeds in [0, 2**64)")
    words = [[s & _MASK32, s >> 32] for s in seeds]
    return torch.tensor(words, dtype=torch.int64, device=device)


def philox4x32(c0, c1, c2, c3, k0, k1, rounds=ROUNDS):
    """Philox-4×32 of counter ``(c0, c1, c2, c3)`` under key ``(k0, k1)``.

    Parameters
    ----------
    c0, c1, c2, c3, k0, k1 : int64 tensors (or ints), broadcastable
        32-bit words (values in [0, 2³²)).
    rounds : int, default=10

    Returns
    -------
    tuple of 4 int64 tensors
        The output words, broadcast to one shape.

    Notes
    -----
    A round multiplies two words by 32-bit constants; the 64-bit products
    are formed in ``int64``, whose multiplication wraps around modulo 2⁶⁴ on
    every device PyTorch runs on, so the low word is ``p & 0xFFFFFFFF`` and the
    high word ``(p >> 32) & 0xFFFFFFFF`` exactly (the known-answer and
    scalar-oracle tests check this on the CPU and on CUDA). A low word is
    carried unmasked into the next round, where it is only xor-ed into a
    masked result: ten kernels a round instead of twelve, the same words.
    """
    like = next(t for t in (c0, c1, c2, c3, k0, k1) if torch.is_tensor(t))
    c0, c1, c2, c3, k0, k1 = (torch.as_tensor(w, dtype=torch.int64, device=like.device)
                              for w in (c0, c1, c2, c3, k0, k1))
    for r in range(rounds):
        p0, p1 = c0 * _MULTIPLIERS[0], c2 * _MULTIPLIERS[1]
        r0, r1 = (k0 + r * _WEYL[0]) & _MASK32, (k1 + r * _WEYL[1]) & _MASK32
        # (c0, c1, c2, c3) <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0); the low words stay unmasked
        # products: they only enter the next round's xor, whose mask drops their high bits
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ r0) & _MASK32, p1, ((p0 >> 32) ^ c3 ^ r1) & _MASK32, p0
    return c0, c1 & _MASK32, c2, c3 & _MASK32


def bits(key, n, *tags):
    """``n`` random 32-bit words per key and tag combination, int64 ``[..., n]``.

    Parameters
    ----------
    key : int64 tensor [..., 2]
        Philox keys (:func:`key_words`).
    n : int
        Words along the last axis: word ``i`` is output ``i mod 4`` of the
        counter ``(i // 4, *tags)``.
    *tags : three ints or int64 tensors
        Counter words 1–3, broadcastable with ``key[..., 0]`` (e.g. step,
        epoch, stream).

    Returns
    -------
    Tensor [..., n]
        Shape: the broadcast of ``key[..., 0]`` and the tags, then ``n``.
    """
    if len(tags) != 3:
        raise GenmemError("Philox draws take three counter tags (e.g. step, epoch, stream)")
    device = key.device
    tags = [torch.as_tensor(t, dtype=torch.int64, device=device).unsqueeze(-1) for t in tags]
    position = torch.arange(-(-int(n) // 4), dtype=torch.int64, device=device)
    words = philox4x32(position, *tags, key[..., 0:1], key[..., 1:2])
    return torch.stack(words, -1).flatten(-2)[..., : int(n)]


def uniform(key, n, *tags, dtype=torch.float32):
    """``n`` uniforms in (0, 1) per key and tag combination.

    Arguments as :func:`bits`. float32 values carry 23 random bits (one word
    each), float64 values 52 (two words each); every value is
    ``(k + ½)·2^-bits``, exactly representable, never 0 or 1.
    """
    if dtype == torch.float64:
        w = bits(key, 2 * int(n), *tags) >> 6  # 26 bits of each word
        return ((w[..., 0::2] << 26) + w[..., 1::2]).to(torch.float64).add_(0.5).mul_(2.0**-52)
    if dtype == torch.float32:
        return (bits(key, n, *tags) >> 9).to(torch.float32).add_(0.5).mul_(2.0**-23)
    raise GenmemError(f"uniform draws float32 or float64; got {dtype}")


def normal(key, n, *tags, dtype=torch.float32):
    """``n`` standard normals per key and tag combination (Box–Muller on :func:`uniform`).

    Value ``2i`` and ``2i + 1`` are ``r·cos θ`` and ``r·sin θ`` of the
    uniforms ``2i`` and ``2i + 1``; arguments as :func:`uniform`.
    """
    pairs = -(-int(n) // 2)
    u = uniform(key, 2 * pairs, *tags, dtype=dtype)
    radius = torch.sqrt(-2.0 * torch.log(u[..., 0::2]))
    angle = (2.0 * math.pi) * u[..., 1::2]
    return torch.stack((radius * torch.cos(angle), radius * torch.sin(angle)), -1).flatten(-2)[..., : int(n)]
