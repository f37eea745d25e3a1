"""GANs trained with memorization rejection (Bai, Hsieh, Kan & Lin 2022).

:class:`MemorizationRejection` is the adapter for any PyTorch GAN loop: it
drops generated samples whose nearest-neighbour distance to the training set
(in a :class:`~genmem.neighbours.NeighbourBank`) is below τ from the generator
update. :func:`train_gan`, :func:`evaluate_gan` and :func:`sweep_tau` train the
built-in DCGAN/MLP pairs of :mod:`genmem.gan.nets` with it and measure C_T and
FD_f on samples of the unrejected generator; :func:`write_gan` stores a run.

Rooms, one job each: :mod:`.rejection` (the adapter), :mod:`.nets` (the
built-in networks), :mod:`.data` (training and test images), :mod:`.train`
(training and sampling), :mod:`.metrics` (C_T, FD_f, NN distances),
:mod:`.hdf5` (the run's file), :mod:`.sweep` (the τ sweep).
"""
from .nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator, make_gan
from .rejection import MemorizationRejection, RejectionWarning, resolve_tau
from .data import GANData, load_gan_data, to_nchw
from .hdf5 import read_gan, write_gan
from .metrics import GANEvaluation, evaluate_gan, frechet_distance
from .sweep import sweep_tau
from .train import GANRun, sample_images, train_gan

__all__ = ["MemorizationRejection", "RejectionWarning", "resolve_tau", "make_gan", "DCGANGenerator", "DCGANDiscriminator", "MLPGenerator",
           "MLPDiscriminator", "GANData", "GANRun", "GANEvaluation", "load_gan_data", "to_nchw", "train_gan",
           "evaluate_gan", "sample_images", "frechet_distance", "sweep_tau", "write_gan", "read_gan"]
