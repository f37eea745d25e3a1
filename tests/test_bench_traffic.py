"""The byte counter of experiments/bench_kfold_vae.py against hand-counted kernels."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
bench = pytest.importorskip("bench_kfold_vae")


def counted(fn):
    with bench.TrafficCounter() as counter:
        fn()
    return counter.ops, counter.bytes, counter.by_kind


def test_elementwise_inplace_out_and_views():
    a, b = torch.ones(1000), torch.ones(1000)
    assert counted(lambda: a + b)[:2] == (1, 3 * 4000)  # read a, b; write the result
    assert counted(lambda: a.add_(b))[:2] == (1, 3 * 4000)  # read a, b; write a
    out = torch.empty(2000)
    assert counted(lambda: torch.cat([a, b], out=out))[:2] == (1, 2 * 8000)  # read 2 x 4000, write 8000
    assert counted(lambda: a.view(10, 100).t())[:2] == (0, 0)  # views move nothing
    one = torch.ones(1).expand(1000)
    assert counted(lambda: a + one)[1] == 4000 + 4 + 4000  # a broadcast input counts once


def test_matmul_and_fused_adam():
    x, w = torch.ones(3, 8, 16), torch.ones(3, 16, 4)
    ops, moved, kinds = counted(lambda: torch.bmm(x, w))
    assert (ops, moved, kinds) == (1, 4 * 3 * (8 * 16 + 16 * 4 + 8 * 4), {"matmul": moved})
    p, g, m, v = (torch.zeros(100) for _ in range(4))
    step = [torch.zeros(())]
    _, moved, kinds = counted(lambda: torch._fused_adam_([p], [g], [m], [v], [], step, amsgrad=False, lr=1e-3,
                                                          beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
                                                          maximize=False))
    assert moved == 28 * 100 + 4 and list(kinds) == ["adam"]  # 28 B per parameter, plus reading the step count
