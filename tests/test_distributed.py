"""One run in several processes: shards + merge, torchrun ranks, dead workers, influence under torchrun.

The oracle is the single-process run of the same command: every unit draws
its numbers from its own seed, so the files must agree to the bit (on CPU).
torchrun runs use the gloo backend on the CPU (``python -m torch.distributed.run``).
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import genmem
from genmem.distributed import World, parse_shard, rank_device, share, shard_path
from genmem.errors import GenmemError
from genmem.models import KDE

from cli_helpers import assert_one_line_error, run

ROOT = Path(__file__).resolve().parents[1]
COMPARED = ("loglik", "folds/assignment", "folds/done", "folds/unit_seed", "scores/memorization",
            "scores/memorization_reference", "scores/memorization_balanced", "scores/loglik_in",
            "scores/loglik_out", "scores/stderr")


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def genmem_cmd(args, cwd, nproc=None, **kwargs):
    """``python -m genmem ARGS`` in ``cwd``, or under ``torchrun --nproc-per-node NPROC``; returns the process."""
    launcher = [] if nproc is None else ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    cmd = [sys.executable, *launcher, "-m", "genmem", *[str(a) for a in args]]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600, **kwargs)


def assert_same_numbers(a, b):
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for name in COMPARED:
            if name in fa or name in fb:
                np.testing.assert_array_equal(fa[name][()], fb[name][()], err_msg=name)
        for name in fa.get("units", {}):
            np.testing.assert_array_equal(fa["units"][name][()], fb["units"][name][()], err_msg=name)


PROBE = """
import torch.distributed as dist
dist.init_process_group("gloo")
dist.barrier()
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def torchrun_works(tmp_path_factory):
    """Skip when this machine cannot run two gloo processes at all (no loopback rendezvous): not genmem's fault."""
    script = tmp_path_factory.mktemp("probe") / "probe.py"
    script.write_text(PROBE)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)]
    try:
        probe = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.skip("torchrun's rendezvous timed out on this machine")
    if probe.returncode:
        pytest.skip(f"torchrun cannot start two gloo processes here: {probe.stderr.strip().splitlines()[-1:]}")


KDE_RUN = ["kfold", "--model", "kde", "--folds", 4, "--repeats", 3, "--limit", 240, "-q"]
VAE_RUN = ["kfold", "--model", "vae", "--folds", 3, "--repeats", 2, "--limit", 150, "--epochs", 2,
           "--num-samples", 8, "--hidden", "16", "--latent-dim", 2, "--units-per-batch", 1, "-q"]


# -- assignments and bad input ------------------------------------------------------------------


def test_shard_parsing_and_shares():
    assert parse_shard("2/5") == (2, 5) and parse_shard((0, 1)) == (0, 1)
    for bad in ("3/2", "2/2", "a/b", "-1/2", "1", "0/0"):
        with pytest.raises(GenmemError, match="shard"):
            parse_shard(bad)
    units = [(r, k) for r in range(3) for k in range(4)]
    parts = [share(units, i, 5) for i in range(5)]
    assert sorted(u for part in parts for u in part) == units  # every unit once
    assert parts[1] == units[1::5] and share(units, 1, 5) == parts[1]  # depends on the list and N only
    assert shard_path(Path("r.h5"), 1, 5).name == "r.h5.shard-1-of-5"


def test_a_rank_that_cannot_see_its_gpu_is_a_clear_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert rank_device("cuda", World(rank=0, size=2, local_rank=0)) == "cuda:0"
    assert rank_device("cpu", World(rank=1, size=2, local_rank=1)) == "cpu"
    with pytest.raises(GenmemError, match="rank 3 \\(local rank 1\\) cannot see a GPU: 1 visible"):
        rank_device("cuda", World(rank=3, size=4, local_rank=1))


def test_bad_shards_and_shards_under_torchrun_are_one_line_errors(tmp_path, monkeypatch):
    out = tmp_path / "r.h5"
    assert_one_line_error(run([*KDE_RUN, "--out", out, "--shard", "3/2"]), "--shard 3/2", "0..1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert_one_line_error(run([*KDE_RUN, "--out", out, "--shard", "0/2"]), "torchrun", "one or the other")
    assert not list(tmp_path.iterdir())


# -- shards and merge ---------------------------------------------------------------------------


def test_shards_then_merge_equal_the_single_run(tmp_path, rng):
    X = rng.normal(size=(90, 3))
    single = genmem.kfold(KDE(0.6), X, folds=5, repeats=3, seed=4, out=tmp_path / "single.h5")
    out = tmp_path / "r.h5"
    for i in (2, 0, 1):
        shard = genmem.kfold(KDE(0.6), X, folds=5, repeats=3, seed=4, out=out, shard=(i, 3))
        assert shard.done.sum() == 5 and not shard.scores
    merged = genmem.merge(out)
    assert_same_numbers(out, tmp_path / "single.h5")
    np.testing.assert_array_equal(merged.memorization, single.memorization)
    assert merged.meta["processes"] == {"launcher": "shards", "shards": 3}
    assert genmem.read_result(out).config["fingerprint"] == single.config["fingerprint"]
    again = genmem.kfold(KDE(0.6), X, folds=5, repeats=3, seed=4, out=out)  # the merged file is the run
    np.testing.assert_array_equal(again.loglik, single.loglik)


def test_merge_names_missing_units_and_refuses_another_runs_shard(tmp_path, rng):
    X = rng.normal(size=(40, 2))
    out = tmp_path / "r.h5"
    with pytest.raises(GenmemError, match="no shard files"):
        genmem.merge(out)
    genmem.kfold(KDE(0.6), X, folds=4, seed=1, out=out, shard=(0, 2))
    with pytest.raises(GenmemError, match=r"2 unit\(s\) are in no finished shard, e.g. \(repeat 0, fold 1\), "
                                          r"\(repeat 0, fold 3\); finish shard\(s\) 1/2 \(no file\)"):
        genmem.merge(out)
    genmem.kfold(KDE(0.6), X, folds=4, seed=2, out=out, shard=(1, 2))  # another seed: another run
    with pytest.raises(GenmemError, match="shard-1-of-2 holds a shard of another run"):
        genmem.merge(out)
    result = run(["merge", out])
    assert_one_line_error(result, "another run")
    assert not out.exists()


@pytest.mark.slow
def test_merged_vae_shards_carry_their_checkpoints_for_influence(tmp_path):
    for i in range(2):
        assert genmem_cmd([*VAE_RUN, "--checkpoints", 1, "--out", "r.h5", "--shard", f"{i}/2"], tmp_path).returncode == 0
    done = genmem_cmd(["merge", "r.h5"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "r.h5.units").glob("unit_*")) == [
        f"unit_r{r}_k{k}.pt" for r in range(2) for k in range(3)]
    assert genmem_cmd(["influence", "r.h5", "--self"], tmp_path).returncode == 0
    assert genmem_cmd([*VAE_RUN, "--checkpoints", 1, "--out", "single.h5"], tmp_path).returncode == 0
    assert_same_numbers(tmp_path / "r.h5", tmp_path / "single.h5")


# -- torchrun ---------------------------------------------------------------------------------------


def test_torchrun_two_ranks_write_the_single_process_file(tmp_path, torchrun_works):
    ranks = genmem_cmd([*KDE_RUN, "--out", "ranks.h5"], tmp_path, nproc=2)
    assert ranks.returncode == 0, ranks.stderr[-2000:]
    assert ranks.stdout.count("wrote ranks.h5") == 1  # rank 0 alone reports and writes
    assert "rank 0/2" in ranks.stderr and "rank 1/2" in ranks.stderr
    assert genmem_cmd([*KDE_RUN, "--out", "single.h5"], tmp_path).returncode == 0
    assert_same_numbers(tmp_path / "ranks.h5", tmp_path / "single.h5")
    assert genmem.read_result(tmp_path / "ranks.h5").meta["processes"] == {"launcher": "torchrun", "world_size": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ranks.h5", "single.h5"]  # no progress files left
    again = genmem_cmd([*KDE_RUN, "--out", "ranks.h5"], tmp_path, nproc=2)  # finished: nothing to do
    assert again.returncode == 0 and again.stdout.count("wrote ranks.h5") == 1, again.stderr[-2000:]


@pytest.mark.slow
def test_torchrun_three_ranks_vae_and_influence_equal_the_single_process(tmp_path, torchrun_works):
    args = [*VAE_RUN, "--checkpoints", 1]
    assert genmem_cmd([*args, "--out", "single.h5"], tmp_path).returncode == 0
    ranks = genmem_cmd([*args, "--out", "ranks.h5"], tmp_path, nproc=3)
    assert ranks.returncode == 0, ranks.stderr[-2000:]
    assert_same_numbers(tmp_path / "ranks.h5", tmp_path / "single.h5")
    assert genmem_cmd(["influence", "single.h5", "--self"], tmp_path).returncode == 0
    assert genmem_cmd(["influence", "ranks.h5", "--self"], tmp_path, nproc=3).returncode == 0
    with h5py.File(tmp_path / "ranks.h5") as a, h5py.File(tmp_path / "single.h5") as b:
        np.testing.assert_array_equal(a["influence/self"][()], b["influence/self"][()])


def _rank_pid(launcher_pid, rank):
    """PID of the torchrun worker with ``RANK=rank``: a child of the launcher process."""
    for proc in Path("/proc").iterdir():
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher_pid and f"RANK={rank}".encode() in env:
            return int(proc.name)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("again", [2, 3])
def test_a_killed_rank_loses_nothing_and_a_rerun_with_any_world_size_ends_with_the_same_file(tmp_path, again,
                                                                                          torchrun_works):
    args = [*VAE_RUN, "--out", "r.h5"]
    assert genmem_cmd([*VAE_RUN, "--out", "single.h5"], tmp_path).returncode == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "genmem",
           *[str(a) for a in args]]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (tmp_path / "r.h5.rank-1.partial").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = _rank_pid(proc.pid, 1)
    assert victim is not None and proc.poll() is None, "rank 1 finished before it could be killed"
    os.kill(victim, signal.SIGKILL)
    proc.communicate(timeout=300)
    assert proc.returncode != 0 and not (tmp_path / "r.h5").exists()
    saved = genmem.read_result(tmp_path / "r.h5.rank-1.partial").done.sum()
    assert saved >= 1
    rerun = genmem_cmd(args, tmp_path, nproc=again)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert_same_numbers(tmp_path / "r.h5", tmp_path / "single.h5")
    assert not list(tmp_path.glob("r.h5.*partial"))
