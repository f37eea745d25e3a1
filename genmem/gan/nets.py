"""Built-in generator/discriminator pairs: DCGAN-style for 28×28 and 32×32 images, an MLP pair for small images.

Images are ``[B, C, H, W]``; generators end in ``tanh`` (outputs in [−1, 1]);
discriminators return one logit per image ``[B]``. Weights are initialised as
in DCGAN (Radford et al. 2016): every weight from N(0, 0.02), batch-norm
scales from N(1, 0.02), biases 0 — drawn from a ``torch.Generator`` seeded
by the caller, never from the global random state.
"""
import math

import torch
from torch import nn

from ..errors import GenmemError
from ..seeds import stream_seed
from ..validation import check_int

ARCHS = ("auto", "dcgan", "mlp")
#: DCGAN image side -> (side of the first feature map, number of ×2 upsamplings).
DCGAN_SIDES = {28: (7, 2), 32: (4, 3)}
INIT_STD = 0.02
LEAKY_SLOPE = 0.2
#: First key of the weight-initialisation streams (see :func:`genmem.seeds.stream_seed`).
INIT_STREAM = 0


class MLPGenerator(nn.Module):
    """``z [B, z_dim] → image [B, C, H, W]`` through two ReLU hidden layers of ``width`` units."""

    def __init__(self, image_shape, z_dim=64, width=128):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.z_dim = z_dim
        self.net = nn.Sequential(nn.Linear(z_dim, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, math.prod(self.image_shape)), nn.Tanh())

    def forward(self, z):
        return self.net(z).reshape(len(z), *self.image_shape)


class MLPDiscriminator(nn.Module):
    """``image [B, C, H, W] → logit [B]`` through two LeakyReLU hidden layers of ``width`` units."""

    def __init__(self, image_shape, width=128):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(image_shape), width), nn.LeakyReLU(LEAKY_SLOPE),
                                 nn.Linear(width, width), nn.LeakyReLU(LEAKY_SLOPE), nn.Linear(width, 1))

    def forward(self, x):
        return self.net(x)[:, 0]


class DCGANGenerator(nn.Module):
    """DCGAN generator: a linear layer to ``[2^n·width, s, s]``, then ``n`` transposed convolutions
    (kernel 4, stride 2) with batch norm and ReLU, the last to ``C`` channels with tanh.

    28×28: s = 7, n = 2; 32×32: s = 4, n = 3.
    """

    def __init__(self, image_shape, z_dim=64, width=64):
        super().__init__()
        channels, side, n_up = _dcgan_dims(image_shape)
        self.image_shape = tuple(image_shape)
        self.z_dim = z_dim
        top = width * 2 ** (n_up - 1)
        self.start = (top, side, side)
        self.project = nn.Sequential(nn.Linear(z_dim, top * side * side, bias=False),
                                     nn.BatchNorm1d(top * side * side), nn.ReLU())
        layers = []
        for i in range(n_up - 1):
            c_in = width * 2 ** (n_up - 1 - i)
            layers += [nn.ConvTranspose2d(c_in, c_in // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c_in // 2), nn.ReLU()]
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(self.project(z).reshape(len(z), *self.start))


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: ``n`` strided convolutions (kernel 4, stride 2) with LeakyReLU(0.2),
    doubling the channels from ``width``, then a linear layer to one logit (no batch norm, so
    a sample's logit does not depend on the rest of its batch)."""

    def __init__(self, image_shape, width=64):
        super().__init__()
        channels, side, n_up = _dcgan_dims(image_shape)
        layers, c_in = [], channels
        for i in range(n_up):
            layers += [nn.Conv2d(c_in, width * 2 ** i, 4, 2, 1), nn.LeakyReLU(LEAKY_SLOPE)]
            c_in = width * 2 ** i
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * side * side, 1))

    def forward(self, x):
        return self.net(x)[:, 0]


def _dcgan_dims(image_shape):
    if len(image_shape) != 3 or image_shape[1] != image_shape[2] or image_shape[1] not in DCGAN_SIDES:
        raise GenmemError(f"the DCGAN networks take images (C, 28, 28) or (C, 32, 32); got {tuple(image_shape)}; "
                          "use arch='mlp' for other sizes")
    side, n_up = DCGAN_SIDES[image_shape[1]]
    return image_shape[0], side, n_up


def resolve_arch(arch, image_shape):
    """``"dcgan"`` or ``"mlp"`` for ``arch`` (``"auto"``: DCGAN for 28×28 and 32×32 images, else MLP)."""
    if arch not in ARCHS:
        raise GenmemError(f"unknown GAN architecture {arch!r}; use one of {', '.join(ARCHS)}")
    if arch != "auto":
        return arch
    square = len(image_shape) == 3 and image_shape[1] == image_shape[2]
    return "dcgan" if square and image_shape[1] in DCGAN_SIDES else "mlp"


def init_weights(module, generator):
    """DCGAN initialisation of every layer of ``module`` from ``generator`` (in place)."""
    for layer in module.modules():
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(layer.weight, 1.0, INIT_STD, generator=generator)
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, 0.0, INIT_STD, generator=generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def make_gan(image_shape, *, arch="auto", z_dim=64, width=None, seed=0):
    """A freshly initialised (generator, discriminator) pair for images ``(C, H, W)``.

    Parameters
    ----------
    image_shape : tuple of int
        ``(C, H, W)``.
    arch : {"auto", "dcgan", "mlp"}
        ``"auto"``: DCGAN for 28×28 and 32×32, MLP otherwise (e.g. 8×8 digits).
    z_dim : int
        Latent dimension (positive).
    width : int, optional
        DCGAN base channels (default 64) or MLP hidden units (default 128); positive.
    seed : int
        Seed of the weight initialisation (streams ``(seed, 0, 0)`` for the generator, ``(seed, 0, 1)``
        for the discriminator).

    Returns
    -------
    (torch.nn.Module, torch.nn.Module)
        On the CPU; move them with ``.to(device)``.
    """
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise GenmemError(f"image_shape must be (C, H, W) with positive sizes; got {image_shape}")
    check_int(z_dim, "z_dim")
    if width is not None:
        check_int(width, "width")
    arch = resolve_arch(arch, image_shape)
    with torch.random.fork_rng(devices=[]):  # layers' default init draws from the global stream: leave it as it was
        if arch == "dcgan":
            width = 64 if width is None else width
            G, D = DCGANGenerator(image_shape, z_dim, width), DCGANDiscriminator(image_shape, width)
        else:
            width = 128 if width is None else width
            G, D = MLPGenerator(image_shape, z_dim, width), MLPDiscriminator(image_shape, width)
    for stream, net in enumerate((G, D)):
        init_weights(net, torch.Generator().manual_seed(stream_seed(seed, INIT_STREAM, stream)))
    return G, D
