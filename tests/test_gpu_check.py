"""experiments/gpu_check.py — the one script a lent GPU runs — at toy sizes on the CPU: its VAE section
runs end to end (a renamed private helper once broke it unnoticed), and a smoke run never writes
results/gpu_check.json, whose numbers the reproduction scripts take for a GPU measurement."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.fixture
def gpu_check(monkeypatch):
    if not MNIST.is_dir():
        pytest.skip(f"MNIST not found at {MNIST}")
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    import gpu_check

    return gpu_check


def test_smoke_vae_section_runs_on_the_cpu(gpu_check, tmp_path):
    out = tmp_path / "gpu_check.json"
    gpu_check.main(["--smoke", "--only", "vae_full", "--data-dir", str(MNIST), "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["smoke"] is True and "cuda" not in report["device"]
    section = report["sections"]["vae_full"]
    assert "error" not in section, section.get("traceback")
    eager = section["eager"]
    assert eager["parameters_per_unit"] == 1325600 and eager["units"] == 3
    assert eager["extrapolated_full_seconds"]["total"] > 0 and eager["mean_loglik_eval_rows"] < 0
    assert eager["counted_bytes_per_step"] > eager["floor_bytes_per_step"]  # the counted traffic is above the floor
    assert section["reference_loop"]["step_ms"] > 0


def test_smoke_output_goes_to_a_temporary_folder(gpu_check, monkeypatch):
    written = []
    monkeypatch.setattr(gpu_check, "sections", lambda args: written.append(args.out) or iter(()))
    gpu_check.main(["--smoke", "--data-dir", str(MNIST)])
    assert written and ROOT / "results" not in written[0].parents


def test_reproduction_estimates_ignore_a_smoke_gpu_check(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    import reproduce_common

    real = reproduce_common.bench
    smoke = {"smoke": True, "device": "cpu (x86_64, 2 threads)",
             "sections": {"vae_full": {"eager": {"extrapolated_full_seconds": {"train": 1.0, "eval": 1.0}}}}}
    monkeypatch.setattr(reproduce_common, "bench", lambda name: smoke if name == "gpu_check.json" else real(name))
    assert "bench_kfold_vae.json" in reproduce_common.vae_throughput()[2]
