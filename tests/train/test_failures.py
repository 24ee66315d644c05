"""Failure injection: a training killed (SIGKILL, as by kill -9 or the OOM killer) in phase 1, in phase 2, during
the export and while a seed is scored resumes with --resume to the report an uninterrupted run gives."""

import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from mcq.train import seed as train_run
from mcq.train.run import run_training
from mcq.train.trainer import RecipeTrainer

POINTS = ("phase1", "phase2", "export", "scoring")


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str, monkeypatch) -> None:
    """Patch the training (in the child only) so that it is killed at `point`."""
    if point in ("phase1", "phase2"):
        original, calls = RecipeTrainer.training_step, {"n": 0}
        at = 2 if point == "phase1" else 2 + 5  # 2 head steps; phase 2 dies after its checkpoint at step 4

        def step(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == at:
                die()
            return original(self, *args, **kwargs)

        monkeypatch.setattr(RecipeTrainer, "training_step", step)
    elif point == "export":
        original_stage = train_run.stage_export

        def stage(*args, **kwargs):
            original_stage(*args, **kwargs)  # the staged copy is half a model folder: then the process dies
            die()

        monkeypatch.setattr(train_run, "stage_export", stage)
    else:
        monkeypatch.setattr(train_run, "score_model", lambda *args, **kwargs: die())


def killed_at(point: str, cfg, monkeypatch) -> int:
    """Train `cfg` in a forked child (the training stack is imported already) killed at `point`; its signal."""
    pid = os.fork()
    if pid == 0:  # the child: one torch thread (a forked OpenMP pool must not be used), then train and die
        try:
            torch.set_num_threads(1)
            arm(point, monkeypatch)
            run_training(cfg)
        finally:
            os._exit(3)  # reached only if the kill point never came
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"the training killed at {point} hung")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_run_killed_anywhere_resumes_to_the_uninterrupted_report(trained_run, tmp_path, monkeypatch):
    cfg, uninterrupted = trained_run
    one_seed = {p: dataclasses.replace(cfg, seeds=[0], output_dir=str(tmp_path / p), save_steps=4) for p in POINTS}
    assert {p: killed_at(p, c, monkeypatch) for p, c in one_seed.items()} == {p: signal.SIGKILL for p in POINTS}

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
