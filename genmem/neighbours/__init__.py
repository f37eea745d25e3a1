"""The nearest-neighbour view: a neighbour bank and the tests built on it.

:class:`NeighbourBank` embeds a training set with a feature map, L2-normalises
it and answers exact cosine k-NN queries; :func:`data_copying_test` is C_T of
Meehan, Chaudhuri & Dasgupta (2020); :func:`nn_ratio_test` is the
nearest-neighbour ratio of van den Burg & Williams (2021);
:func:`compare_with_scores` correlates memorization scores with NN distances.
"""
from .bank import NeighbourBank
from .compare import compare_with_scores
from .copying import DataCopyingResult, data_copying_test, mann_whitney_zu
from .embedders import (EMBEDDERS, CallableEmbedder, PCAEmbedder, PixelEmbedder, PrecomputedFeatures, TorchEmbedder,
                        imagenet_embedder, make_embedder, register_embedder)
from .ratio import NNRatioResult, nn_ratio_test
from .search import ExactSearch, faiss_available

__all__ = ["NeighbourBank", "ExactSearch", "faiss_available", "data_copying_test", "DataCopyingResult",
           "mann_whitney_zu", "nn_ratio_test", "NNRatioResult", "compare_with_scores", "EMBEDDERS",
           "register_embedder", "make_embedder", "imagenet_embedder", "PixelEmbedder", "PCAEmbedder",
           "PrecomputedFeatures", "CallableEmbedder", "TorchEmbedder"]
