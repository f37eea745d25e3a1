"""The declared parameter checks of genmem.validation: one integer check, one phrasing of errors."""
import numpy as np
import pytest
import torch

from genmem.errors import GenmemError
from genmem.influence import TracIn
from genmem.models import KDE, VAE, Flow
from genmem.validation import (any_of, boolean, check_int, check_param, int_tuple, integer, none_or, options,
                               real)


@pytest.mark.parametrize("value, ok", [(3, True), (np.int64(3), True), (0, False), (True, False),
                                       (np.bool_(True), False), (2.0, False), ("3", False), (None, False)])
def test_one_integer_check_refuses_bools_floats_and_strings(value, ok):
    assert integer(1).test(value) is ok


def test_constraints_say_what_is_allowed():
    assert integer(1).allowed == "a positive integer" and integer(0).allowed == "a non-negative integer"
    assert integer(2).allowed == "an integer of at least 2" and integer(0, 5).allowed == "an integer in [0, 5]"
    assert real(0, closed="left").allowed == "a float in [0, inf)" and real(0, 0.5).allowed == "a float in (0, 0.5)"
    assert options("full", "diag").allowed == "one of 'full', 'diag'"
    assert none_or(integer(1)).allowed == "None or a positive integer"
    assert any_of(options("learned"), real(0)).allowed == "'learned' or a float in (0, inf)"
    assert int_tuple(lengths=(2, 3)).allowed == "a tuple of 2 or 3 positive integers"
    assert boolean().test(np.bool_(False)) and not boolean().test(0)
    assert options(True, False, "auto").test(True) and not options(True, False, "auto").test(1)
    assert not real(0).test(float("nan")) and not real(0).test(True) and real(0).test(np.float32(1e-3))


def test_errors_have_one_phrasing_for_parameters_and_one_for_arguments():
    with pytest.raises(GenmemError, match=r"^The 'tol' parameter of GMM must be a float in \[0, inf\)\. Got -1 instead\.$"):
        check_param(-1, real(0, closed="left"), "tol", "GMM")
    with pytest.raises(GenmemError, match=r"^k must be a positive integer; got 0$"):
        check_int(0, "k")
    assert check_int(np.int64(4), "k") == 4 and type(check_int(np.int64(4), "k")) is int


@pytest.mark.parametrize("model, name", [(KDE(chunk_size=True), "chunk_size"), (KDE(bandwidth=True), "bandwidth"),
                                         (Flow(layers=True), "layers"), (VAE(epochs=True), "epochs"),
                                         (VAE(decoder_scale=0.0), "decoder_scale"), (VAE(eval_every=0), "eval_every")])
def test_models_refuse_bools_for_numbers(model, name):
    with pytest.raises(GenmemError, match=rf"The '{name}' parameter of {type(model).__name__} must be .* Got .* instead"):
        model.fit(np.random.default_rng(0).random((20, 3)), rng=0)


def test_tracin_declares_its_checks():
    checkpoints = [({"w": torch.zeros(2)}, 1.0)]
    loss = lambda p, x: (p["w"] * x).sum()  # noqa: E731
    for kwargs, name in ((dict(chunk_size=True), "chunk_size"), (dict(projection_dim=0), "projection_dim"),
                         (dict(projection="sparse"), "projection"), (dict(seed=1.5), "seed")):
        with pytest.raises(GenmemError, match=rf"The '{name}' parameter of TracIn must be"):
            TracIn(loss, checkpoints, **kwargs)
