"""Failure injection: a training killed (SIGKILL) in phase 1, in phase 2, during the export and while a seed is
scored resumes with --resume to the report an uninterrupted run gives."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mcq.train.run import run_training

HERE = Path(__file__).resolve().parent
POINTS = ("phase1", "phase2", "export", "scoring")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_run_killed_anywhere_resumes_to_the_uninterrupted_report(trained_run, tmp_path):
    cfg, uninterrupted = trained_run
    one_seed = {p: dataclasses.replace(cfg, seeds=[0], output_dir=str(tmp_path / p), save_steps=4) for p in POINTS}
    (tmp_path / "configs.json").write_text(json.dumps({p: dataclasses.asdict(c) for p, c in one_seed.items()}))
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(HERE / "kill_points.py"), str(tmp_path / "configs.json"),
                           str(tmp_path / "ended.json")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "ended.json").read_text()) == {p: signal.SIGKILL for p in POINTS}

    killed = {p: Path(c.output_dir) for p, c in one_seed.items()}
    assert not (killed["phase1"] / "seed0" / "head.safetensors").exists()
    assert list((killed["phase2"] / "seed0" / "phase2").glob("checkpoint-4"))
    assert list((killed["export"] / "models").glob(".seed0.tmp-*")), "the export died half-way"
    assert not (killed["scoring"] / "models" / "seed0").exists(), "a seed that was never scored was committed"

    expected = uninterrupted["seeds"][0]["valid_map3"]
    for point, c in one_seed.items():
        report = run_training(c, resume=True)
        [seed] = report["seeds"]
        assert seed["valid_map3"] == pytest.approx(expected, abs=1e-12), point
        assert report["ensemble_valid_map3"] == pytest.approx(expected, abs=1e-12), point
        leftovers = [p.name for p in Path(c.output_dir).rglob("*") if ".tmp" in p.name or ".old-" in p.name]
        assert not leftovers and not (Path(c.output_dir) / ".lock").exists(), (point, leftovers)
