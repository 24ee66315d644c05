"""Failure injection for tests/train/test_failures.py: `python kill_points.py CONFIG_JSON OUT_JSON`.

Imports the training stack once, then for each kill point forks a child that runs the training and SIGKILLs
itself there (as a kill -9 or an OOM killer would); the parent records how each child ended."""

import json
import os
import signal
import sys
from pathlib import Path

from mcq.train import run as train_run
from mcq.train.config import TrainConfig
from mcq.train.trainer import RecipeTrainer


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    """Patch the training so that it is killed at `point`."""
    if point in ("phase1", "phase2"):
        original, calls = RecipeTrainer.training_step, {"n": 0}
        at = 2 if point == "phase1" else 2 + 5  # 2 head steps; phase 2 dies after its checkpoint at step 4

        def step(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == at:
                die()
            return original(self, *args, **kwargs)

        RecipeTrainer.training_step = step
    elif point == "export":
        original_stage = train_run.stage_export

        def stage(*args, **kwargs):
            original_stage(*args, **kwargs)  # the staged copy is half a model folder: then the process dies
            die()

        train_run.stage_export = stage
    elif point == "scoring":
        train_run.score_model = lambda *args, **kwargs: die()


def main() -> int:
    configs = json.loads(Path(sys.argv[1]).read_text())
    ended = {}
    for point, values in configs.items():
        pid = os.fork()
        if pid == 0:
            arm(point)
            train_run.run_training(TrainConfig(**values))
            os._exit(0)  # not killed: the kill point was never reached
        _, status = os.waitpid(pid, 0)
        ended[point] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)
    Path(sys.argv[2]).write_text(json.dumps(ended))
    return 0


if __name__ == "__main__":
    sys.exit(main())
