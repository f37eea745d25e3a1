"""Benchmark: one K-fold run in 1, 2 (and more) processes — torchrun ranks and job-array shards.

The same ``genmem kfold`` command (a VAE on digits by default, one torch
thread per process) runs as a single process, under ``torchrun
--nproc-per-node P`` for each P of ``--procs``, and as P shards started
together and then merged. Reported per setting: the wall time, the speed-up
over the single process and the parallel efficiency (speed-up / P), and the
fixed costs that do not shrink with P: torchrun's start (launcher, process
group, rank 0 taking over the progress files) measured as a rerun of the
finished run, which has nothing left to compute, and the merge of the shards.
Every setting's file is checked to hold the single process's numbers.

On a machine with P free cores the honest expectation is a speed-up near P
for runs whose units take much longer than the start (a few seconds); on
the shared 2-core development machine other jobs take cores too: the load
average is recorded. ``--device cuda`` runs each rank on its own GPU
(``cuda:LOCAL_RANK``). Writes ``results/bench_scaleout.json``.
"""
import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genmem.results import library_versions  # noqa: E402

RUN = ["kfold", "--model", "vae", "--folds", "4", "--repeats", "2", "--num-samples", "64",
       "--units-per-batch", "1", "-q"]


def genmem(args, cwd, nproc=None, background=False):
    """Run ``python -m genmem ARGS`` (under torchrun with ``nproc`` processes); returns the process or Popen."""
    launcher = [] if nproc is None else ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    cmd = [sys.executable, *launcher, "-m", "genmem", "--threads", "1", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if background:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return proc


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def same_numbers(a, b):
    with h5py.File(a) as fa, h5py.File(b) as fb:
        return all(np.array_equal(fa[name][()], fb[name][()]) for name in ("loglik", "scores/memorization"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", default="2", help="comma-separated process counts besides 1 (default 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=100,
                        help="VAE epochs per unit (default 100: units long against torchrun's start of a few seconds)")
    parser.add_argument("--limit", type=int, default=1797, help="digits examples used (all: 1797)")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench_scaleout.json"))
    args = parser.parse_args(argv)
    run = [*RUN, "--epochs", str(args.epochs), "--device", args.device, "--limit", str(args.limit)]
    load = list(os.getloadavg())
    report = {"benchmark": "bench_scaleout", "command": shlex.join([sys.executable, *sys.argv]),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "versions": library_versions(),
              "load_average_at_start": load, "run": shlex.join(["genmem", "--threads", "1", *run]), "settings": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        single = timed(lambda: genmem([*run, "--out", "single.h5"], tmp))
        report["settings"]["single"] = {"processes": 1, "seconds": single}
        print(f"single process: {single:.1f} s", file=sys.stderr)
        for procs in [int(p) for p in args.procs.split(",")]:
            name = f"torchrun{procs}.h5"
            wall = timed(lambda: genmem([*run, "--out", name], tmp, nproc=procs))
            start = timed(lambda: genmem([*run, "--out", name], tmp, nproc=procs))  # nothing left: the fixed cost
            report["settings"][f"torchrun_{procs}"] = {
                "processes": procs, "seconds": wall, "speedup": single / wall, "efficiency": single / wall / procs,
                "start_seconds": start, "start_share": start / wall, "same_numbers": same_numbers(tmp / name,
                                                                                              tmp / "single.h5")}
            shards_name = f"shards{procs}.h5"

            def shards():
                jobs = [genmem([*run, "--out", shards_name, "--shard", f"{i}/{procs}"], tmp, background=True)
                        for i in range(procs)]
                for job in jobs:
                    if job.wait():
                        raise RuntimeError(job.stderr.read()[-3000:])

            wall_shards = timed(shards)
            merge = timed(lambda: genmem(["merge", shards_name], tmp))
            total = wall_shards + merge
            report["settings"][f"shards_{procs}"] = {
                "processes": procs, "seconds": total, "speedup": single / total, "efficiency": single / total / procs,
                "merge_seconds": merge, "merge_share": merge / total,
                "same_numbers": same_numbers(tmp / shards_name, tmp / "single.h5")}
            for key in (f"torchrun_{procs}", f"shards_{procs}"):
                r = report["settings"][key]
                print(f"{key}: {r['seconds']:.1f} s, speed-up {r['speedup']:.2f}x, efficiency {r['efficiency']:.2f}, "
                      f"same numbers {r['same_numbers']}", file=sys.stderr)
    report["notes"] = ("Each process uses one torch thread. torchrun's fixed cost (start_seconds) is a rerun of the "
                       "finished run: interpreter and torch import per process, the gloo/NCCL process group, rank 0 "
                       "reading the results file. On the shared 2-core development machine other jobs compete for "
                       "the cores (load_average_at_start).")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
