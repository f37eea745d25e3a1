"""Adversarial pass over the genmem command line: every attack of issue 11, rerun against the current code.

Drives ``genmem`` as a careful adversarial user would: crafted data files,
clobbering outputs, colliding names, concurrent writers, interruptions
(SIGINT, SIGTERM, SIGKILL) at many moments, damaged and foreign results files,
degenerate data, memory bombs, bad arguments, closed pipes, a full and a
read-only file system, planted links. Real processes are used wherever
signals, timing, locks or memory matter (peak memory from ``os.wait4``);
the damaged-file matrix runs in-process through click's ``CliRunner``.

Each case records what was expected and what was observed; the table goes to
``results/adversarial.json`` (with machine, versions and the command line)
and ``results/adversarial.md``. A case passes only when the observation
matches the expectation; the script exits 1 if any case fails. About 4
minutes on 2 CPU cores; the full-disk and read-only cases need root (tmpfs
mounts) and are reported as not run otherwise::

    python experiments/adversarial.py
"""
import argparse
import contextlib
import gzip
import io
import json
import os
import pickle
import platform
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402

from genmem.cli import main  # noqa: E402
from genmem.memorization.artifacts import file_sha256, read_manifest  # noqa: E402
from genmem.results import library_versions  # noqa: E402

GENMEM = [sys.executable, "-c", "from genmem.cli import main; main()", "--threads", "1"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ROWS = []


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float


def record(finding, case, expected, observed, ok):
    ROWS.append({"finding": finding, "case": case, "expected": expected, "observed": observed,
                 "pass": None if ok is None else bool(ok)})
    mark = {True: "ok  ", False: "FAIL", None: "skip"}[ROWS[-1]["pass"]]
    print(f"[{mark}] {finding:>3} {case}: {observed}", flush=True)


def _loading_torch(pid):
    """True once process ``pid`` has mapped torch's library: genmem's command is running (it imports torch)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def genmem(args, *, env=None, timeout=300, signal_after=None, sig=signal.SIGINT, when_exists=None, stdout=None,
           after_torch=None):
    """Run ``genmem ARGS`` as a process; optionally send ``sig`` after ``signal_after`` s, once ``when_exists``
    exists, or ``after_torch`` s after the command began to load torch."""
    start = time.perf_counter()
    proc = subprocess.Popen([*GENMEM, *map(str, args)], stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env or ENV)
    if signal_after is not None or when_exists is not None or after_torch is not None:
        deadline, loaded = start + timeout, None
        while proc.poll() is None and time.perf_counter() < deadline:
            if signal_after is not None and time.perf_counter() - start >= signal_after:
                break
            if when_exists is not None and Path(when_exists).exists():
                break
            if after_torch is not None:
                loaded = loaded or (time.perf_counter() if _loading_torch(proc.pid) else None)
                if loaded is not None and time.perf_counter() - loaded >= after_torch:
                    break
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return Run(proc.returncode, (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace"),
               time.perf_counter() - start, 0.0)


def measured(args):
    """Run ``genmem ARGS`` with its own peak memory (``os.wait4``), for the resource cases."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([*GENMEM, *map(str, args)], stdout=subprocess.DEVNULL, stderr=err, env=ENV)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return Run(proc.returncode, "", stderr, time.perf_counter() - start, usage.ru_maxrss / 1024)


def error_lines(text):
    return [line for line in text.strip().splitlines() if line.startswith("Error")]


def one_line_error(run, *words):
    """Observed text and verdict for 'a one-line error containing words, no traceback, exit != 0'."""
    lines = error_lines(run.stderr + run.stdout)
    ok = run.rc not in (0, None) and "Traceback" not in run.stderr and len(lines) == 1 and all(
        w in lines[0] for w in words)
    return f"exit {run.rc}: {lines[0] if lines else (run.stderr.strip().splitlines() or ['(nothing)'])[-1]}"[:300], ok


def cli(args):
    """Run ``genmem ARGS`` in-process; returns a Run (traceback text in stderr when it raised)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    trace = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        trace = "Traceback\n" + "".join(traceback.format_exception(result.exception))
    return Run(result.exit_code, result.stdout, result.stderr + trace, 0.0, 0.0)


def loglik(path):
    with h5py.File(path, "r") as f:
        return f["loglik"][()]


def leftovers(folder):
    """Hidden temporary or lock files genmem may have left in ``folder``."""
    return sorted(p.name for p in Path(folder).iterdir() if ".tmp-" in p.name or p.name.endswith(".lock"))


# -- 1. code execution -----------------------------------------------------------------------------------

class Payload:
    def __init__(self, call, arg):
        self.call, self.arg = call, arg

    def __reduce__(self):
        return self.call, self.arg


def cifar_folder(root, extra=None, replace_data=None):
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": b"batch", b"labels": [int(v) for v in rng.integers(0, 10, 20)],
                 b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"filenames": [b"a.png"] * 20}
        if name == "data_batch_3":
            if extra is not None:
                batch[b"extra"] = extra
            if replace_data is not None:
                batch = replace_data
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


def code_execution(work):
    marker = work / "PWNED"
    payloads = {
        "os.system": Payload(os.system, (f"touch {marker}",)),
        "builtins.exec": Payload(exec, (f"open({str(marker)!r}, 'w').write('x')",)),
        "subprocess.call": Payload(subprocess.call, (["touch", str(marker)],)),
        "numpy.load (a numpy global that is not allowed)": Payload(np.load, (str(marker),)),
        "pathlib.Path.touch via getattr": Payload(getattr, (Path(marker), "touch")),
    }
    for name, payload in payloads.items():
        for where in ("a whole batch", "a key beside valid arrays"):
            root = Path(tempfile.mkdtemp(dir=work))
            folder = cifar_folder(root, extra=payload if where != "a whole batch" else None,
                                  replace_data=payload if where == "a whole batch" else None)
            entries = (("kfold --data-dir", ["kfold", "--model", "kde", "--dataset", "cifar10", "--data-dir", root,
                                             "--out", root / "o.h5"], None),
                       ("kfold GENMEM_DATA_DIR", ["kfold", "--model", "kde", "--dataset", "cifar10", "--out",
                                                  root / "o.h5"], {**ENV, "GENMEM_DATA_DIR": str(root)}),
                       ("gan --data-dir", ["gan", "--dataset", "cifar10", "--data-dir", root, "--out", root / "g.h5",
                                           "--steps", "1"], None))
            for entry, args, env in entries if name == "os.system" and where != "a whole batch" else entries[:1]:
                run = genmem(args, env=env)
                observed, ok = one_line_error(run, str(folder / "data_batch_3"))
                ok = ok and not marker.exists() and not (root / "o.h5").exists()
                record(1, f"CIFAR batch with payload {name} as {where}, via {entry}",
                       "nothing runs; one-line error naming data_batch_3", observed + f"; marker {marker.exists()}",
                       ok)
                marker.unlink(missing_ok=True)
    root = Path(tempfile.mkdtemp(dir=work))
    cifar_folder(root, replace_data={b"data": Payload(np.ndarray, ((10 ** 12, 3072),)), b"labels": [1]})
    run = measured(["kfold", "--model", "kde", "--dataset", "cifar10", "--data-dir", root, "--out", root / "o.h5"])
    observed, ok = one_line_error(run, "data_batch_3")
    record(1, "CIFAR batch calling numpy.ndarray with a 3 TB shape", "refused, no allocation",
           f"{observed}; peak {run.max_rss_mb:.0f} MB", ok and run.max_rss_mb < 2000)
    root = Path(tempfile.mkdtemp(dir=work))
    cifar_folder(root)
    run = genmem(["kfold", "--model", "kde", "--dataset", "cifar10", "--data-dir", root, "--folds", "3", "--out",
                  root / "o.h5", "-q"])
    record(1, "genuine python CIFAR batches (protocol 2)", "loaded and scored", f"exit {run.rc}", run.rc == 0)


# -- 2, 3, 11. outputs -------------------------------------------------------------------------------------

def outputs(work, base, other):
    cases = [
        ("neighbours RUN --save-bank RUN", ["neighbours", base, "--save-bank", base], ["is an input of this command"], base),
        ("neighbours RUN --save-bank OTHER_RUN", ["neighbours", base, "--save-bank", other], ["--force"], other),
        ("gan --out EXISTING_RUN", ["gan", "--steps", "1", "--out", other], ["--force"], other),
        ("top RUN --plot RUN", ["top", base, "--plot", base], ["is an input of this command"], base),
        ("report RUN --plot RUN", ["report", base, "--plot", base], ["is an input of this command"], base),
        ("top RUN --plot x.txt", ["top", base, "--plot", work / "x.txt"], [".png"], base),
        ("top RUN --plot OTHER_RUN", ["top", base, "--plot", other], [".png"], other),
    ]
    user = work / "mine.png"
    user.write_bytes(b"\x89PNG\r\n\x1a\nsomeone's picture")
    cases.append(("top RUN --plot a PNG genmem did not write", ["top", base, "--plot", user], ["--force"], user))
    data = work / "data.npy"
    np.save(data, np.random.default_rng(0).normal(size=(60, 3)))
    cases.append(("kfold --dataset npy:D --out D", ["kfold", "--model", "kde", "--dataset", f"npy:{data}", "--out",
                                                    data], ["is an input of this command"], data))
    cases.append(("kfold --out D --force (D is the input)", ["kfold", "--model", "kde", "--dataset", f"npy:{data}",
                                                             "--out", data, "--force"], ["is an input of this command"], data))
    note = work / "notes.h5"
    note.write_text("my notes")
    cases.append(("kfold --out a file that is not a genmem run", ["kfold", "--model", "kde", "--limit", "50", "--out",
                                                                   note], ["--force"], note))
    for case, args, words, guarded in cases:
        before = guarded.read_bytes()
        run = genmem(args)
        observed, ok = one_line_error(run, *words)
        record(2, case, f"refused ({', '.join(words)}); file unchanged",
               observed + ("" if guarded.read_bytes() == before else "; FILE CHANGED"), ok and
               guarded.read_bytes() == before)
    bank = work / "bank.h5"
    runs = [genmem(["neighbours", base, "--save-bank", bank]) for _ in range(2)]
    record(2, "neighbours --save-bank BANK twice (the same run's bank)", "both succeed",
           f"exits {[r.rc for r in runs]}", all(r.rc == 0 for r in runs))
    run = genmem(["neighbours", base, "--save-bank", other, "--force"])
    with h5py.File(other) as f:
        fmt = f.attrs.get("format")
    record(2, "neighbours --save-bank OTHER_RUN --force", "replaced by a bank", f"exit {run.rc}, format {fmt}",
           run.rc == 0 and fmt == "genmem.neighbours")


def collisions(work):
    X = (np.random.default_rng(8).uniform(size=(40, 6)) > 0.5).astype(np.uint8)
    np.save(work / "bin.npy", X)
    common = ["kfold", "--model", "vae", "--dataset", f"npy:{work / 'bin.npy'}", "--folds", "2", "--epochs", "2",
              "--latent-dim", "2", "--hidden", "5", "--batch-size", "16", "--num-samples", "4", "--checkpoints", "2",
              "-q"]
    a = genmem([*common, "--seed", "1", "--out", work / "r.h5"])
    b = genmem([*common, "--seed", "2", "--out", work / "r.hdf5"])
    folders = sorted(p.name for p in work.iterdir() if p.name.startswith("r.") and p.is_dir())
    record(3, "kfold --out r.h5 and --out r.hdf5 (different seeds)", "separate r.h5.units/ and r.hdf5.units/",
           f"exits {a.rc}, {b.rc}; folders {folders}", a.rc == b.rc == 0 and folders == ["r.h5.units",
                                                                                            "r.hdf5.units"])
    ok = genmem(["influence", work / "r.h5", "--self", "--device", "cpu"])
    record(3, "influence r.h5 --self", "TracIn from r.h5's own checkpoints", f"exit {ok.rc}", ok.rc == 0)
    shutil.rmtree(work / "r.h5.units")
    shutil.copytree(work / "r.hdf5.units", work / "r.h5.units")  # what the old naming did
    run = genmem(["influence", work / "r.h5", "--self"])
    observed, passed = one_line_error(run, "another run")
    record(3, "influence r.h5 with r.hdf5's checkpoints in r.h5.units/", "refused", observed, passed)
    pt = work / "r.hdf5.units" / "unit_r0_k0.pt"
    pt.write_bytes(pt.read_bytes()[:200])
    run = genmem(["influence", work / "r.hdf5", "--self"])
    observed, passed = one_line_error(run, "unit_r0_k0.pt")
    record(10, "influence with a truncated checkpoint .pt", "refused (hash differs)", observed, passed)
    run = genmem([*common, "--seed", "3", "--out", work / "r.h5"])
    observed, passed = one_line_error(run, "--force")
    record(2, "kfold another run onto r.h5 (its .units hold checkpoints)", "refused without --force", observed, passed)
    run = genmem([*common, "--out", work / "r.h5.units"])
    observed, passed = one_line_error(run, "directory")
    record(11, "kfold --out r.h5.units (the checkpoint folder of r.h5)", "refused before any work", observed, passed)
    (work / "q.h5.units").write_text("in the way")
    run = genmem(["kfold", "--model", "kde", "--limit", "60", "--folds", "2", "--out", work / "q.h5"])
    record(11, "kfold --out q.h5 where q.h5.units is a file", "refused before any work",
           *one_line_error(run, "not a folder"))


# -- 4. concurrency ------------------------------------------------------------------------------------------

def concurrency(work, reference):
    for trial in range(2):
        out = work / f"c{trial}.h5"
        args = [["kfold", "--model", "kde", "--limit", "300", "--folds", "10", "--bandwidth", bw, "--units-per-batch",
                 "1", "--out", out, "-q"] for bw in ("0.5", "0.7")]
        procs = [subprocess.Popen([*GENMEM, *map(str, a)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
                 for a in args]
        outs = [p.communicate(timeout=300) for p in procs]
        rcs = [p.returncode for p in procs]
        winners = [i for i, rc in enumerate(rcs) if rc == 0]
        with h5py.File(out) as f:
            bw = json.loads(f.attrs["config"])["model"]["params"]["bandwidth"]
        loser_ok = all(any(w in outs[i][1].decode() for w in ("in use by PID", "holds a different run"))
                       for i in range(2) if rcs[i] != 0)
        ok = len(winners) == 1 and bw == float(("0.5", "0.7")[winners[0]]) and loser_ok
        record(4, f"two kfold runs (bandwidth 0.5 and 0.7) on one --out, started together (trial {trial})",
               "one writes; the other is refused ('in use by PID …', or 'a different run' once the first is done)",
               f"exits {rcs}; file holds bandwidth {bw}", ok)
    for delay in (-1.0, 0.0, 0.5):  # negative: kfold --force starts first
        out = work / f"race{delay}.h5"
        shutil.copy(reference, out)
        commands = [["influence", str(out), "--self"],
                    ["kfold", "--model", "kde", "--limit", "300", "--folds", "3", "--bandwidth", "0.9", "--out",
                     str(out), "--force", "-q"]]
        first, second = commands if delay >= 0 else commands[::-1]
        procs = [subprocess.Popen([*GENMEM, *first], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)]
        time.sleep(abs(delay))
        procs.append(subprocess.Popen([*GENMEM, *second], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV))
        errs = [p.communicate(timeout=300)[1].decode() for p in procs]
        inf, force = procs if delay >= 0 else procs[::-1]
        with h5py.File(out) as f:
            fingerprint = json.loads(f.attrs["config"])["fingerprint"]
            owners = [f[name].attrs.get("run_fingerprint") for name in ("influence/self",) if name in f]
        ok = all(owner == fingerprint for owner in owners) and not any("Traceback" in e for e in errs)
        record(4, f"influence --self racing kfold --force on the same file (kfold {delay:+} s after influence)",
               "no view of the old run on the new run; a refused command says 'in use'",
               f"influence exit {inf.returncode}, kfold exit {force.returncode}; views {len(owners)}, all of this run "
               f"{all(owner == fingerprint for owner in owners)}", ok)
    run = genmem(["report", work / "race0.5.h5"])
    record(4, "report after the race", "consistent report", f"exit {run.rc}", run.rc == 0)


# -- 5, 10, 12. interruptions ----------------------------------------------------------------------------------

def interruptions(work, reference_args, reference):
    for sig, name, code in ((signal.SIGINT, "SIGINT", 130), (signal.SIGTERM, "SIGTERM", 143),
                            (signal.SIGKILL, "SIGKILL", -9)):
        for after in (0.0, 0.5, 1.5, 3.0):  # seconds after the command began to load torch
            folder = Path(tempfile.mkdtemp(dir=work))
            out = folder / "r.h5"
            first = genmem([*reference_args, "--out", out], after_torch=after, sig=sig)
            said_saved = "units are saved in" in first.stderr
            partial = out.with_name("r.h5.partial")
            # a signal that lands in a finaliser is reported by Python ("Exception ignored") and the run goes on
            ignored = first.rc == 0 and "Exception ignored" in first.stderr
            honest = (not said_saved or partial.exists()) and ("Traceback" not in first.stderr or ignored)
            clean = sig == signal.SIGKILL or not leftovers(folder)
            again = genmem([*reference_args, "--out", out])
            same = again.rc == 0 and np.array_equal(loglik(out), loglik(reference))
            # after the command has ended, Python's default handler meets the signal: the file is complete then
            ok = honest and clean and same and (sig == signal.SIGKILL or first.rc in (0, code) or (
                first.rc == -sig and out.exists()))
            record(5 if sig != signal.SIGKILL else 12, f"{name} {after} s after kfold began loading torch, then the "
                   "same command",
                   f"exit {code} (0 or -{int(sig)} once the file is written), true message, no temporaries; "
                   "rerun bit-identical",
                   f"exit {first.rc}{' (Python ignored the signal in a finaliser)' if ignored else ''}, message "
                   f"true {honest}, leftovers {leftovers(folder) or 'none'}, rerun exit {again.rc}, identical {same}",
                   ok)
            if sig == signal.SIGKILL:
                record(12, f"stale files after SIGKILL at {after} s (after torch), after the rerun", "none",
                       f"{leftovers(folder) or 'none'}", not leftovers(folder))
    for attempt in range(3):  # a signal that lands in a finaliser is ignored by Python: the run then just finishes
        folder = Path(tempfile.mkdtemp(dir=work))
        out = folder / "r.h5"
        first = genmem([*reference_args, "--out", out, "--force"], when_exists=out.with_name("r.h5.partial"))
        if first.rc != 0:
            break
    again = genmem(["-v", *reference_args, "--out", out, "--force"])
    resumed = "resuming" in again.stderr
    record(5, "interrupted kfold --force, then the same command with --force", "resumes (does not discard)",
           f"exits {first.rc}, {again.rc}; resumed {resumed}; identical "
           f"{again.rc == 0 and np.array_equal(loglik(out), loglik(reference))}",
           resumed and again.rc == 0 and np.array_equal(loglik(out), loglik(reference)))
    first = genmem([*reference_args, "--out", out, "--restart"], when_exists=out.with_name("r.h5.partial"))
    record(5, "interrupted kfold --restart", "message says to drop --restart to resume",
           first.stderr.strip().splitlines()[-1][:200] if first.stderr.strip() else "(nothing)",
           first.rc == 0 or "without --restart" in first.stderr)


def unsound_partials(work, reference_args, reference):
    for damage in ("nan", "inf", "-inf", "done over a NaN row", "all done, all NaN"):
        for attempt in range(3):  # a signal that lands in a finaliser is ignored: the run then just finishes
            folder = Path(tempfile.mkdtemp(dir=work))
            out = folder / "r.h5"
            genmem([*reference_args, "--out", out], when_exists=out.with_name("r.h5.partial"))
            partial = out.with_name("r.h5.partial")
            if partial.exists():
                break
        if not partial.exists():
            record(6, f"partial with {damage}", "recomputed", "the run finished before it could be interrupted", None)
            continue
        with h5py.File(partial, "r+") as f:
            done = f["folds/done"][()]
            r, k = np.argwhere(done)[0]
            if damage in ("nan", "inf", "-inf"):
                f["loglik"][r, k, 3] = float(damage)
            elif damage == "done over a NaN row":
                done[~done] = True
                f["folds/done"][...] = done
            else:
                f["folds/done"][...] = True
                f["loglik"][...] = np.nan
        run = genmem([*reference_args, "--out", out])
        same = run.rc == 0 and np.array_equal(loglik(out), loglik(reference))
        with h5py.File(out) as f:
            finite = bool(np.isfinite(f["scores/memorization"][()]).all())
        record(6, f"resume from a partial with {damage} in done units", "warning, units recomputed, finite scores",
               f"exit {run.rc}, warned {'recomputing' in run.stderr}, finite {finite}, identical {same}",
               same and finite and "recomputing" in run.stderr)


# -- 7. degenerate data ------------------------------------------------------------------------------------------

def degenerate(work):
    same = np.tile([[0.3, 0.7, 0.1]], (300, 1))
    np.save(work / "same.npy", same)
    np.save(work / "near.npy", same + np.arange(300)[:, None] * np.array([0, 1e-17, 0]))
    np.save(work / "zeros.npy", np.zeros((50, 4)))
    cases = [(["kfold", "--model", m, "--dataset", f"npy:{work / f}", "--folds", "3"], word)
             for m in ("kde", "gmm") for f, word in (("same.npy", "identical"), ("near.npy", "identical"),
                                                     ("zeros.npy", "constant"))]
    cases += [(["kfold", "--model", "kde", "--bandwidth", "cv", "--dataset", f"npy:{work / 'same.npy'}"], "identical"),
              (["kfold", "--model", "kde", "--pca", "2", "--dataset", f"npy:{work / 'same.npy'}"], "identical"),
              (["ct", "--train", work / "same.npy", "--test", work / "near.npy", "--generated", work / "same.npy"],
               "identical")]
    for bw in ("1e-300", "1e-200", "1e-155", "1e200", "1e300", "0", "-1", "nan", "inf"):
        cases.append((["kfold", "--model", "kde", "--bandwidth", bw, "--limit", "100"], "bandwidth"))
    for args, word in cases:
        run = genmem([*args, "--out", work / "deg.h5"] if args[0] == "kfold" else args)
        record(7 if "bandwidth" not in args else 9, " ".join(map(str, args)).replace(str(work) + "/", ""),
               f"one-line error ({word})", *one_line_error(run, word))


# -- 8. integrity ---------------------------------------------------------------------------------------------------

def integrity(work, reference):
    cases = {}

    def replaced_x(f):
        f["data/x"][...] = f["data/x"][()][::-1]

    def external(f):
        with h5py.File(work / "elsewhere.h5", "w") as g:
            g["x"] = np.zeros(f["data/x"].shape)
        del f["data/x"]
        f["data/x"] = h5py.ExternalLink(str(work / "elsewhere.h5"), "/x")

    def other_view(f):
        f["influence/self"] = np.zeros(f["data/index"].shape)
        f["influence/self"].attrs["run_fingerprint"] = "0" * 64

    cases = {"/data/x replaced (rows reversed)": (replaced_x, [["influence", "--self"], ["neighbours"]], "data hash",
                                                  "verification"),
             "/data/x an external link": (external, [["influence", "--self"], ["info"], ["top"]], "external link",
                                          "external link"),
             "a view of another run": (other_view, [], "", "verification")}
    for name, (damage, commands, word, verify_word) in cases.items():
        path = work / "integrity.h5"
        shutil.copy(reference, path)
        with h5py.File(path, "r+") as f:
            damage(f)
        for command in commands:
            run = genmem([command[0], path, *command[1:]])
            record(8, f"{' '.join(command)} on a file with {name}", f"refused ({word})", *one_line_error(run, word))
        run = genmem(["info", path, "--verify"])
        record(8, f"info --verify on a file with {name}", f"refused ({verify_word})",
               *one_line_error(run, verify_word))
    run = genmem(["info", reference, "--verify"])
    record(8, "info --verify on an intact file", "all checks pass", f"exit {run.rc}", run.rc == 0)


# -- 9. resources -----------------------------------------------------------------------------------------------------

def resources(work):
    bomb = work / "bomb" / "train-images-idx3-ubyte.gz"
    bomb.parent.mkdir()
    with gzip.open(bomb, "wb", compresslevel=9) as f:
        f.write(b"\0\0\x08\x03" + struct.pack(">3I", 60000, 28, 28))
        for _ in range(20):
            f.write(bytes(50_000_000))  # 1 GB of zeros in 1 MB
    shutil.copy(bomb, bomb.with_name("train-labels-idx1-ubyte.gz"))
    huge = work / "huge" / "train-images-idx3-ubyte.gz"
    huge.parent.mkdir()
    with gzip.open(huge, "wb") as f:
        f.write(b"\0\0\x08\x03" + struct.pack(">3I", 4_000_000_000, 1000, 1000))
    shutil.copy(huge, huge.with_name("train-labels-idx1-ubyte.gz"))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 11,)})
    with zipfile.ZipFile(work / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", header.getvalue() + bytes(200_000_000))
    cases = [(["gan", "--n-samples", "100000000", "--steps", "1", "--out", work / "g.h5"], "--n-samples"),
             (["gan", "--n-samples", "100000000000", "--steps", "1", "--out", work / "g.h5"], "--n-samples"),
             (["kfold", "--model", "kde", "--dataset", "mnist", "--data-dir", bomb.parent, "--out", work / "b.h5"],
              "more than"),
             (["kfold", "--model", "kde", "--dataset", "mnist", "--data-dir", huge.parent, "--out", work / "b.h5"],
              "memory available"),
             (["kfold", "--model", "kde", "--dataset", f"npz:{work / 'bomb.npz'}", "--out", work / "b.h5"],
              "memory available"),
             (["kfold", "--model", "kde", "--repeats", "1000000000", "--out", work / "b.h5"], "--repeats"),
             (["kfold", "--model", "kde", "--repeats", "300000", "--out", work / "b.h5"], "--repeats"),
             (["kfold", "--model", "kde", "--pad-to", "100000", "--out", work / "b.h5"], "--pad-to"),
             (["kfold", "--model", "kde", "--bandwidth", "1e-300", "--out", work / "b.h5"], "bandwidth")]
    for args, word in cases:
        run = measured(args)
        observed, ok = one_line_error(run, word)
        record(9, " ".join(map(str, args)).replace(str(work) + "/", ""), f"one-line error ({word}), < 2 GB",
               f"{observed}; peak {run.max_rss_mb:.0f} MB, {run.seconds:.1f} s", ok and run.max_rss_mb < 2000)


# -- 10. one-line errors ----------------------------------------------------------------------------------------------

def bad_inputs(work, base, reference):
    np.save(work / "x.npy", np.zeros((10, 3)))
    (work / "empty.npy").write_bytes(b"")
    np.savez(work / "objects.npz", x=np.array([{}, 1], dtype=object))
    np.save(work / "objects.npy", np.array([{}, 1], dtype=object), allow_pickle=True)
    (work / "text.npy").write_text("not numpy")
    import torch

    torch.save({"model": Payload}, work / "notweights.pt")
    (work / "junk.pt").write_bytes(b"PK\x03\x04junk")
    cases = [
        (["kfold", "--model", "kde", "--dataset", f"npz:{work / 'x.npy'}"], "npy:"),
        (["kfold", "--model", "kde", "--dataset", f"npy:{work / 'empty.npy'}"], "empty.npy"),
        (["kfold", "--model", "kde", "--dataset", f"npy:{work / 'objects.npy'}"], "objects.npy"),
        (["kfold", "--model", "kde", "--dataset", f"npz:{work / 'objects.npz'}"], "objects.npz"),
        (["kfold", "--model", "kde", "--dataset", f"npy:{work / 'text.npy'}"], "text.npy"),
        (["kfold", "--model", "kde", "--dataset", f"npy:{work / 'missing.npy'}"], "missing.npy"),
        (["influence", base, "--test-data", work / "objects.npz"], "objects.npz"),
        (["influence", base, "--test-data", work / "empty.npy"], "empty.npy"),
        (["influence", base, "--test-data", work / "text.npy"], "text.npy"),
        (["neighbours", base, "--embed", f"vae:{work / 'notweights.pt'}"], "notweights.pt"),
        (["neighbours", base, "--embed", f"vae:{work / 'junk.pt'}"], "junk.pt"),
        (["neighbours", base, "--embed", f"npy:{work / 'objects.npy'}"], "objects.npy"),
        (["top", base, "--plot", work / "x.txt"], ".png"),
        (["top", base, "--plot", base], "is an input of this command"),
        (["report", base, "--plot", work / "nowhere" / "r.png"], "does not exist"),
        (["top", work / "x.npy"], "not an HDF5 file"),
        (["top", work], "directory"),
        (["info", work / "missing.h5"], "no such file"),
        (["kfold", "--model", "kde", "--folds", "1"], "folds"),
        (["kfold", "--model", "kde", "--limit", "1"], "--limit"),
        (["kfold", "--model", "kde", "--units-per-batch", "0"], "--units-per-batch"),
        (["kfold", "--model", "gmm", "--components", "0", "--limit", "50"], "n_components"),
        (["kfold", "--model", "kde", "--out", work / "nowhere" / "o.h5"], "does not exist"),
        (["ct", "--train", work / "empty.npy", "--test", work / "x.npy", "--generated", work / "x.npy"], "empty.npy"),
        (["gan", "--tau", "3", "--out", work / "g.h5"], "tau"),
    ]
    for args, word in cases:
        run = genmem([*args, "--out", work / "bad.h5"] if args[0] == "kfold" and "--out" not in args else args)
        record(10, " ".join(map(str, args)).replace(str(work) + "/", ""), f"one-line error ({word})",
               *one_line_error(run, word))
    buffered = {k: v for k, v in ENV.items() if k != "PYTHONUNBUFFERED"}  # -u silently drops short writes
    for args in (["info", reference], ["top", reference, "-n", "600", "--json"], ["report", reference, "--json"]):
        proc = subprocess.Popen([*GENMEM, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=buffered)
        proc.stdout.read(20)
        proc.stdout.close()
        rc, err = proc.wait(timeout=120), proc.stderr.read().decode()
        record(10, f"genmem {args[0]} FILE ... | head -c 20", "ends quietly", f"exit {rc}, stderr {err.strip()!r}",
               not err.strip())


def _damages(reference):
    """(name, function(f)) pairs that damage a copy of a complete results file."""
    with h5py.File(reference) as f:
        datasets = []
        f.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)
        config = json.loads(f.attrs["config"])
    out = []

    def replace(key, value):
        def damage(f):
            new = value(f) if callable(value) else value
            del f[key]
            f[key] = new
        return damage

    for key in datasets:
        out.append((f"{key} deleted", lambda f, key=key: f.__delitem__(key)))
        out.append((f"{key} as bytes", replace(key, lambda f, key=key: np.array([b"x"] * max(1, len(f[key]))))))
        out.append((f"{key} cut to 1 row", replace(key, lambda f, key=key: f[key][()][:1])))
        out.append((f"{key} flattened", replace(key, lambda f, key=key: f[key][()].reshape(-1))))
        out.append((f"{key} with an extra axis", replace(key, lambda f, key=key: f[key][()][..., None])))
        out.append((f"{key} a group", lambda f, key=key: (f.__delitem__(key), f.create_group(key))))
        out.append((f"{key} a soft link to itself", replace(key, h5py.SoftLink("/" + key))))
        out.append((f"{key} an external link", replace(key, h5py.ExternalLink("/nonexistent.h5", "/x"))))
        out.append((f"{key} a scalar", replace(key, 1.0)))
    for name, value in [("a JSON list", "[1, 2]"), ("not JSON", "{"), ("a number", "3"), ("empty", "")]:
        out.append((f"config {name}", lambda f, value=value: f.attrs.__setitem__("config", value)))
    for key in config:
        reduced = {k: v for k, v in config.items() if k != key}
        out.append((f"config without {key}", lambda f, r=reduced: f.attrs.__setitem__("config", json.dumps(r))))
        wrong = {**config, key: "abc" if not isinstance(config[key], str) else 7}
        out.append((f"config {key} of the wrong type", lambda f, r=wrong: f.attrs.__setitem__("config", json.dumps(r))))
    for key, value in [("format_version", "abc"), ("format_version", 99), ("format", "other"), ("complete", "x")]:
        out.append((f"attribute {key}={value!r}", lambda f, k=key, v=value: f.attrs.__setitem__(k, v)))
    for attr in ("format", "format_version", "config", "complete"):
        out.append((f"attribute {attr} deleted", lambda f, a=attr: f.attrs.__delitem__(a)))
    return out


def damaged_files(work, reference):
    for name, damage in _damages(reference):
        path = work / "damaged.h5"
        shutil.copy(reference, path)
        with h5py.File(path, "r+") as f:
            damage(f)
        verdicts = []
        for command in (["info"], ["top"], ["influence", "--self"], ["neighbours"], ["info", "--verify"]):
            run = cli([command[0], path, *command[1:]])
            lines = error_lines(run.stdout + run.stderr)
            clean = "Traceback" not in run.stderr and (run.rc == 0 or len(lines) == 1)
            verdicts.append((command[0] + " " + " ".join(command[1:]), run.rc, clean))
        ok = all(v[2] for v in verdicts)
        record(10, f"damaged results file: {name}", "a correct answer or a one-line error; never a traceback",
               ", ".join(f"{c.strip()} {rc}" for c, rc, _ in verdicts), ok)
    raw = Path(reference).read_bytes()
    for share in (0.0, 0.1, 0.5, 0.9, 0.999):
        path = work / "truncated.h5"
        path.write_bytes(raw[:int(len(raw) * share)])
        run = cli(["info", path])
        record(10, f"results file truncated to {share:.1%}", "one-line error", *one_line_error(run, "truncated.h5"))


# -- 5, 11. full and read-only file systems ------------------------------------------------------------------------

@contextlib.contextmanager
def tmpfs(path, size, readonly=False):
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)


def filesystems(work, base, reference_args, reference):
    with tmpfs(work / "full", "2m") as full:
        if full is None:
            record(5, "full disk", "resumable", "not run: mounting a tmpfs needs root", None)
        else:
            (full / "filler").write_bytes(bytes(1_700_000))
            out = full / "r.h5"
            first = genmem([*reference_args, "--out", out])
            observed, ok = one_line_error(first)
            record(10, "kfold on a full disk", "one-line error", observed, ok)
            (full / "filler").unlink()
            again = genmem([*reference_args, "--out", out])
            same = again.rc == 0 and np.array_equal(loglik(out), loglik(reference))
            record(5, "the same command after freeing space", "resumes, bit-identical",
                   f"exit {again.rc}, identical {same}, leftovers {leftovers(full) or 'none'}",
                   same and not leftovers(full))
            for name in list(full.iterdir()):
                shutil.rmtree(name) if name.is_dir() else name.unlink()
            X = (np.random.default_rng(8).uniform(size=(60, 30)) > 0.5).astype(np.uint8)
            np.save(work / "vae.npy", X)
            (full / "filler").write_bytes(bytes(1_900_000))
            vae = genmem(["kfold", "--model", "vae", "--dataset", f"npy:{work / 'vae.npy'}", "--folds", "2",
                          "--epochs", "1", "--hidden", "64", "--checkpoints", "3", "--out", full / "v.h5", "-q"])
            manifest = read_manifest(full / "v.h5.units") or {"files": {}}
            unrecorded = [p.name for p in full.rglob("*.pt") if manifest["files"].get(p.name) != file_sha256(p)]
            observed, ok = one_line_error(vae)
            record(10, "VAE checkpoints on a full disk", "one-line error, no truncated or unrecorded .pt",
                   f"{observed}; unrecorded .pt files {unrecorded or 'none'}", ok and not unrecorded)
    with tmpfs(work / "ro", "2m") as ro:
        if ro is None:
            record(11, "read-only file system", "refused before work", "not run: mounting a tmpfs needs root", None)
            return
        shutil.copy(base, ro / "run.h5")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        cases = [(["kfold", "--model", "kde", "--out", ro / "o.h5"], "cannot write"),
                 (["gan", "--out", ro / "g.h5"], "cannot write"),
                 (["gan", "--sweep-tau", "0,1x", "--out", work / "s.json", "--plot", ro / "s.png"], "cannot write"),
                 (["top", base, "--plot", ro / "t.png"], "cannot write"),
                 (["neighbours", base, "--save-bank", ro / "bank.h5"], "cannot write"),
                 (["influence", ro / "run.h5", "--self"], "cannot write"),
                 (["neighbours", ro / "run.h5"], "cannot write")]
        for args, word in cases:
            run = genmem(args)
            observed, ok = one_line_error(run, word)
            record(11, " ".join(map(str, args)).replace(str(work) + "/", "") + " (read-only)",
                   "refused before any work", f"{observed}; {run.seconds:.1f} s", ok)


# -- 12. temporary files -----------------------------------------------------------------------------------------

def temporaries(work, reference_args):
    folder = work / "links"
    folder.mkdir()
    victim = work / "victim.txt"
    victim.write_text("precious")
    for pid in range(1, 65536, 7):  # every old-style name a writer could pick, in steps of 7 PIDs
        with contextlib.suppress(FileExistsError):
            (folder / f".r.h5.tmp-{pid}").symlink_to(victim)
            (folder / f".r.h5.partial.tmp-{pid}").symlink_to(victim)
    run = genmem([*reference_args, "--out", folder / "r.h5"])
    record(12, "18,700 planted symlinks at the old temporary names", "victim untouched",
           f"exit {run.rc}, victim {victim.read_text()!r}", run.rc == 0 and victim.read_text() == "precious")
    import socket
    import re

    host = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:32]
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    stale = folder / f".x.h5.tmp-{host}-{dead.pid}-abcd1234.h5"
    stale.write_bytes(b"left by a killed process")
    live = folder / f".y.h5.tmp-{host}-{os.getpid()}-abcd1234.h5"
    live.write_bytes(b"still being written")
    run = genmem([*reference_args, "--out", folder / "z.h5"])
    record(12, "temporary of a dead process / of a live one", "the first removed, the second kept",
           f"stale exists {stale.exists()}, live exists {live.exists()}", not stale.exists() and live.exists())
    live.unlink()


# -- 13. batch invariance -----------------------------------------------------------------------------------------

def invariance(work):
    paths = []
    for upb in (1, 3, 7, 10, 20):
        out = work / f"upb{upb}.h5"
        genmem(["kfold", "--model", "kde", "--limit", "500", "--folds", "10", "--repeats", "2", "--units-per-batch",
                upb, "--out", out, "-q"])
        paths.append(out)
    diffs = [float(np.abs(loglik(p) - loglik(paths[0])).max()) for p in paths[1:]]
    record(13, "KDE --units-per-batch 1, 3, 7, 10, 20", "bit-identical log-likelihoods", f"max |Δ| {diffs}",
           all(d == 0 for d in diffs))
    record(13, "VAE --threads 1 vs 2", "(the lead's trainer rewrite)", "not run here", None)


def ctrl_c_early(work):
    for after in (0.01, 0.03):
        run = genmem(["kfold", "--model", "kde", "--out", work / "early.h5"], signal_after=after)
        record(10, f"Ctrl-C {after} s after start (within Python's own start-up)",
               "outside genmem's reach: no genmem code may have run yet",
               f"exit {run.rc}, traceback {'Traceback' in run.stderr}", None)
    for after in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.2, 1.6):
        run = genmem(["kfold", "--model", "kde", "--out", work / "early.h5"], after_torch=after)
        claims = "units are saved in" in run.stderr
        honest = not claims or (work / "early.h5.partial").exists()
        record(10, f"Ctrl-C {after} s after kfold began loading torch", "no traceback; exit 130 (or done); no false claim",
               f"exit {run.rc}, traceback {'Traceback' in run.stderr}, claim true {honest}",
               "Traceback" not in run.stderr and honest and run.rc in (0, 130))
        for p in work.glob("early.h5*"):
            p.unlink()


def machine():
    cpu = None
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), None)
    return {"cpu_model": cpu or platform.machine(), "cpu_cores": os.cpu_count(),
            "cpu_cores_usable": len(os.sched_getaffinity(0)), "torch_threads_per_command": 1,
            "root": os.geteuid() == 0, "platform": platform.platform(), "loadavg_start": list(os.getloadavg())}


def main_(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "results" / "adversarial.json"))
    parser.add_argument("--keep", help="Work in this folder and keep it (default: a temporary folder, removed).")
    args = parser.parse_args(argv)
    info = machine()
    start = time.perf_counter()
    work = Path(args.keep or tempfile.mkdtemp(prefix="genmem-adversarial-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        from genmem import kfold
        from genmem.data import load_dataset, prepare
        from genmem.models import KDE

        data = prepare(load_dataset("digits"))
        base, other, reference = work / "base.h5", work / "other.h5", work / "reference.h5"
        kfold(KDE(0.5), data.X[:300], folds=3, out=base, images=data.images[:300], data_info=data.info)
        kfold(KDE(0.7), data.X[:200], folds=2, out=other)
        reference_args = ["kfold", "--model", "kde", "--limit", "600", "--folds", "60", "--units-per-batch", "1",
                          "-q"]
        genmem([*reference_args, "--out", reference])
        code_execution(work)
        outputs(work, base, other)
        collisions(work)
        concurrency(work, base)
        interruptions(work, reference_args, reference)
        ctrl_c_early(work)
        unsound_partials(work, reference_args, reference)
        degenerate(work)
        integrity(work, base)
        resources(work)
        bad_inputs(work, base, reference)
        damaged_files(work, base)
        filesystems(work, base, reference_args, reference)
        temporaries(work, reference_args)
        invariance(work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    info["loadavg_end"] = list(os.getloadavg())
    totals = {"cases": len(ROWS), "passed": sum(r["pass"] is True for r in ROWS),
              "failed": sum(r["pass"] is False for r in ROWS), "not_run": sum(r["pass"] is None for r in ROWS)}
    by_finding = {}
    for row in ROWS:
        entry = by_finding.setdefault(str(row["finding"]), {"cases": 0, "passed": 0, "failed": 0, "not_run": 0})
        entry["cases"] += 1
        entry[{True: "passed", False: "failed", None: "not_run"}[row["pass"]]] += 1
    report = {"experiment": "adversarial pass over the genmem command line (issue 11)",
              "command": "python experiments/adversarial.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip(),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(time.perf_counter() - start, 1),
              "machine": info, "versions": library_versions(), "totals": totals, "by_finding": by_finding,
              "cases": ROWS}
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=1) + "\n")
    lines = ["# Adversarial pass (issue 11)", "",
             f"`{report['command']}` — {totals['cases']} cases: {totals['passed']} passed, {totals['failed']} failed, "
             f"{totals['not_run']} not run; {report['seconds']} s on {info['cpu_cores_usable']} CPU cores.", "",
             "| finding | cases | passed | failed | not run |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {k} | {v['cases']} | {v['passed']} | {v['failed']} | {v['not_run']} |"
              for k, v in sorted(by_finding.items(), key=lambda kv: int(kv[0]))]
    lines += ["", "| finding | case | expected | observed | pass |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['finding']} | {r['case']} | {r['expected']} | {r['observed'].replace('|', '/')} | "
              f"{ {True: 'yes', False: '**NO**', None: 'not run'}[r['pass']] } |" for r in ROWS]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(json.dumps(totals))
    return 1 if totals["failed"] else 0


if __name__ == "__main__":
    sys.exit(main_())
