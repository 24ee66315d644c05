"""Training under torchrun on CPU (2 processes, gloo): each seed exported once by rank 0, one report,
the LR derived for 2 devices, and nothing left half-written."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from mcq.core.export import META_FILE, check_model_folder


def _torchrun(*flags: str, tiny_deberta, question_files, out) -> subprocess.CompletedProcess:
    """train.py under torchrun with 2 CPU processes on the tiny model, plus `flags`; asserts it exits 0."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train.py"]
    cmd += ["--model", str(tiny_deberta), "--train", str(question_files["train"]), "--output-dir", str(out)]
    cmd += ["--epochs", "1", "--per-device-batch", "2", "--max-length", "48", "--precision", "fp32", *flags]
    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_torchrun_two_processes_train_export_and_report_once(tiny_deberta, question_files, tmp_path):
    out = tmp_path / "run"
    flags = ["--valid", str(question_files["valid"]), "--seeds", "0", "1", "--head-steps", "2", "--head-lr", "1e-2"]
    flags += ["--logging-steps", "1", "--save-steps", "2", "--eval-batch", "4"]
    proc = _torchrun(*flags, tiny_deberta=tiny_deberta, question_files=question_files, out=out)

    assert "effective batch 4 (2 per device x 1 accumulation x 2 device(s))" in proc.stderr
    assert "ensemble of 2 seeds" in proc.stdout and "None" not in proc.stdout  # every rank prints rank 0's report
    assert sorted(p.name for p in (out / "models").iterdir()) == ["seed0", "seed1"]
    for seed in (0, 1):
        meta = check_model_folder(out / "models" / f"seed{seed}")
        assert meta["seed"] == seed and 0.0 <= meta["valid_map3"] <= 1.0
        assert not list((out / f"seed{seed}").glob("phase*/checkpoint-*"))  # removed once exported
    leftovers = [p for p in out.rglob("*") if ".tmp" in p.name or ".old-" in p.name]
    assert not leftovers, leftovers
    assert [p.name for p in out.rglob("report.json")] == ["report.json"]
    report = json.loads((out / "report.json").read_text())
    assert [s["seed"] for s in report["seeds"]] == [0, 1] and "ensemble_valid_map3" in report
    assert len(list(out.rglob(META_FILE))) == 2


def test_torchrun_trains_with_the_flash_attention_switch(tiny_deberta, question_files, tmp_path):
    """DDP over the swapped encoder: every parameter still gets a gradient on every rank (DDP runs with
    find_unused_parameters=False and would fail at the second step otherwise)."""
    pytest.importorskip("disentangled_flash")
    out = tmp_path / "run"
    flags = ["--seeds", "0", "--head-steps", "2", "--save-steps", "100", "--attention", "disentangled-flash"]
    proc = _torchrun(*flags, tiny_deberta=tiny_deberta, question_files=question_files, out=out)
    assert "attention: disentangled-flash, torch backend" in proc.stderr
    assert check_model_folder(out / "models" / "seed0")["seed"] == 0
