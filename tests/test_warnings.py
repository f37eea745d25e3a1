"""Warnings where numbers go wrong: implausible M, rejection stuck above 90 %, samples on another scale."""
import warnings

import numpy as np
import pytest
import torch

import genmem
from genmem.gan import MemorizationRejection, RejectionWarning
from genmem.gan.rejection import HIGH_REJECTION_STEPS
from genmem.memorization import ScoreWarning
from genmem.models import GMM, KDE
from genmem.neighbours import NeighbourBank

from cli_helpers import run


def test_a_gmm_on_raw_pixels_warns_that_m_is_a_numerical_failure(digits):
    X = digits[0][:300]
    with pytest.warns(ScoreWarning, match=r"examples have \|M\| above 640 nats .* features are constant") as record:
        result = genmem.kfold(GMM(3), X, folds=3)
    assert len(record) == 1
    n_bad = int((np.abs(result.memorization) > 640).sum())
    assert n_bad > 0 and str(record[0].message).startswith(f"{n_bad} of 300 examples")


def test_plausible_scores_do_not_warn(digits):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        genmem.kfold(KDE("scott"), digits[0][:300], folds=3)


def test_the_cli_prints_a_warning_once_on_one_line(tmp_path):
    result = run(["kfold", "--model", "gmm", "--components", 3, "--limit", 300, "--folds", 3, "-q",
                  "--out", tmp_path / "gmm.h5"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "nats per feature" in line or "|M| above" in line]
    assert len(lines) == 1 and lines[0].startswith("Warning: ")


@pytest.fixture
def bank(rng):
    return NeighbourBank("pixels", rng.random((40, 1, 4, 4)), device="cpu")


def test_rejection_above_ninety_percent_for_a_window_of_steps_warns_once(bank, rng):
    mr = MemorizationRejection(bank, tau=1.99, mode="mask")  # rejects every sample
    sampler = lambda n: torch.as_tensor(rng.random((n, 1, 4, 4)))  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(HIGH_REJECTION_STEPS - 1):
            mr(sampler(8), sampler)
    with pytest.warns(RejectionWarning, match=r"more than 90% of the candidates in each of the last 20 .*smaller tau"):
        mr(sampler(8), sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mr(sampler(8), sampler)  # the same streak does not warn again


def test_a_batch_outside_the_banks_value_range_warns_once(bank, rng):
    tanh_like = torch.as_tensor(rng.uniform(-1, 1, (16, 1, 4, 4)))
    mr = MemorizationRejection(bank, tau=0.01)
    with pytest.warns(RejectionWarning, match=r"span \[-0\.9.*\] but the bank was built on values in \[0.*preprocess="):
        mr.nn_distance(tanh_like)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mr.nn_distance(tanh_like)
        MemorizationRejection(bank, tau=0.01, preprocess=lambda x: (x + 1) / 2).nn_distance(tanh_like)


def test_the_bank_keeps_its_value_range_through_a_file(bank, tmp_path):
    assert bank.input_range[0] >= 0 and bank.input_range[1] <= 1
    bank.save(tmp_path / "bank.h5")
    assert NeighbourBank.load(tmp_path / "bank.h5").input_range == bank.input_range
