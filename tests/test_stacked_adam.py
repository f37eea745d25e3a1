"""The stacked Adam update against ``torch.optim.Adam`` run unit by unit."""
import pytest
import torch

from genmem.models.stacked_adam import StackedAdam


@pytest.mark.parametrize("fused", [True, False])
def test_stacked_adam_equals_torch_adam_per_unit_and_skips_units_that_sit_out(fused):
    gen = torch.Generator().manual_seed(0)
    n_units, size, n_steps = 3, 7, 9
    init = torch.randn(n_units, size, generator=gen, dtype=torch.float64)
    grads = [torch.randn(n_units, size, generator=gen, dtype=torch.float64) for _ in range(n_steps)]
    # unit 1 sits out steps 2 and 5, unit 2 the last three (a smaller fold); unit 0 takes every step
    active = torch.ones(n_steps, n_units, dtype=torch.bool)
    active[[2, 5], 1] = False
    active[6:, 2] = False

    flat = init.clone()
    adam = StackedAdam(flat, lr=0.01, fused=fused)
    assert adam.fused == fused
    for g, on in zip(grads, active):
        before = flat.clone(), adam.exp_avg.clone(), adam.exp_avg_sq.clone()
        adam.grad.copy_(g)
        adam.step(on, tuple(int(u) for u in torch.nonzero(on).flatten()))
        for now, then in zip((flat, adam.exp_avg, adam.exp_avg_sq), before):
            assert torch.equal(now[~on], then[~on])  # bit for bit untouched
    assert adam.steps.tolist() == active.sum(0).tolist()

    for u in range(n_units):
        p = init[u].clone().requires_grad_(True)
        opt = torch.optim.Adam([p], lr=0.01, foreach=False)
        for g, on in zip(grads, active[:, u]):
            if on:
                p.grad = g[u].clone()
                opt.step()
        torch.testing.assert_close(flat[u], p.detach(), rtol=1e-13, atol=1e-15)
        state = opt.state[p]
        torch.testing.assert_close(adam.exp_avg[u], state["exp_avg"], rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(adam.exp_avg_sq[u], state["exp_avg_sq"], rtol=1e-13, atol=1e-15)
        assert adam.steps[u] == state["step"]


@pytest.mark.parametrize("fused", [True, False])
def test_other_betas_and_eps_match_torch_adam(fused):
    gen = torch.Generator().manual_seed(1)
    init = torch.randn(2, 5, generator=gen, dtype=torch.float64)
    grads = [torch.randn(2, 5, generator=gen, dtype=torch.float64) for _ in range(4)]
    flat = init.clone()
    adam = StackedAdam(flat, lr=0.3, betas=(0.5, 0.9), eps=1e-3, fused=fused)
    for g in grads:
        adam.grad.copy_(g)
        adam.step(torch.ones(2, dtype=torch.bool), (0, 1))
    p = init.clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=0.3, betas=(0.5, 0.9), eps=1e-3, foreach=False)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    torch.testing.assert_close(flat, p.detach(), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("fused", [True, False])
def test_gradient_in_pieces_equals_the_gathered_gradient(fused):
    """Pieces of a row ([U, 2, 3] weight, [U, 1, 3] bias, [U, 4]) read where they are give the numbers of
    the same gradient gathered into ``grad``, with units sitting out steps: bit for bit in the elementwise
    update; to the last bit of the second moment in the CPU's fused kernel, whose vectorised body and
    scalar tail round ``beta2 * v + (1 - beta2) * g * g`` differently and split the two layouts differently."""
    gen = torch.Generator().manual_seed(2)
    shapes = [(2, 3), (1, 3), (4,)]
    n_units, size = 3, 13
    init = torch.randn(n_units, size, generator=gen, dtype=torch.float64)
    steps = [(torch.randn(n_units, size, generator=gen, dtype=torch.float64), on)
             for on in ([1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 1])]
    flat_a, flat_b = init.clone(), init.clone()
    gathered = StackedAdam(flat_a, lr=0.05, fused=fused)
    pieces = StackedAdam(flat_b, lr=0.05, fused=fused, shapes=shapes)
    for g, on in steps:
        on = torch.tensor(on, dtype=torch.bool)
        units = tuple(int(u) for u in torch.nonzero(on).flatten())
        gathered.grad.copy_(g)
        gathered.step(on, units)
        split = torch.split(g, [6, 3, 4], dim=1)
        pieces.step(on, units, [part.reshape(n_units, *shape) for part, shape in zip(split, shapes)])
    exact = {} if fused else {"rtol": 0, "atol": 0}
    for a, b in ((flat_a, flat_b), (gathered.exp_avg, pieces.exp_avg), (gathered.exp_avg_sq, pieces.exp_avg_sq)):
        torch.testing.assert_close(a, b, **(exact or {"rtol": 1e-15, "atol": 1e-18}))
    assert torch.equal(gathered.steps, pieces.steps)


def test_pieces_must_make_up_a_row():
    from genmem import GenmemError

    with pytest.raises(GenmemError, match="do not make up rows of 5"):
        StackedAdam(torch.zeros(2, 5), lr=0.1, shapes=[(2, 2)])
