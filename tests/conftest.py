"""Shared fixtures: small real data and the location of ../shared/data."""
import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(os.environ.get("GENMEM_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture
def shared_data():
    """The folder of real data files beside the project; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits scaled to [0, 1]: X [1797, 64], labels [1797]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data / 16.0, d.target


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
