"""`python -m mcq.infer.blend`: weights fitted on saved logits, its errors, and its --help without torch (also
under the command's old name, `python -m mcq.core.blend`)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, write_questions

import mcq.infer.blend as blend
from mcq.cli import main_guard
from mcq.core.data import read_questions
from mcq.errors import DataError


def test_blend_command_on_saved_logits(tmp_path, capsys):
    valid_file = write_questions(tmp_path / "valid.csv", 60, seed=8)
    valid = read_questions(valid_file)
    rng = np.random.default_rng(0)
    good = 1.5 * np.eye(5)[valid.answers] + rng.normal(size=(60, 5))
    paths = [tmp_path / "good.npy", tmp_path / "noise.npy"]
    np.save(paths[0], good)
    np.save(paths[1], rng.normal(size=(60, 5)))
    out = tmp_path / "report" / "blend.json"
    argv = ["--logits", *map(str, paths), "--valid", str(valid_file), "--folds", "4", "--out", str(out)]
    assert blend.main(argv) == 0
    printed = capsys.readouterr().out
    assert "fitted weights" in printed and "gain" in printed and f"report: {out.resolve()}" in printed
    report = json.loads(out.read_text())
    assert len(report["folds"]) == 4 and report["fitted"][0] > 0.8 and report["models"] == list(map(str, paths))
    assert report["use_tuned"] and report["gain_low"] > 0 and "beyond the noise of 60 questions" in printed

    np.save(tmp_path / "short.npy", good[:50])
    assert (
        main_guard(
            lambda: blend.main(["--logits", str(paths[0]), str(tmp_path / "short.npy"), "--valid", str(valid_file)])
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"error: --logits {tmp_path / 'short.npy'}: shape (50, 5), but {valid_file} has 60")
    assert main_guard(lambda: blend.main(["--logits", str(paths[0]), "--valid", str(valid_file)])) == 2
    assert "two or more" in capsys.readouterr().err
    assert (
        main_guard(lambda: blend.main(["--logits", *map(str, paths), "--valid", str(valid_file), "--folds", "61"]))
        == 2
    )
    assert "--folds 61" in capsys.readouterr().err
    with pytest.raises(DataError, match="no such file"):
        blend.load_logits([tmp_path / "missing.npy"], 60, 5, "valid.csv")


@pytest.mark.parametrize("module", ["mcq.infer.blend", "mcq.core.blend"])
def test_blend_command_help_imports_no_torch(module):
    code = (
        "import sys, runpy\nsys.argv = ['x', '--help']\ntry:\n"
        f"    runpy.run_module({module!r}, run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(k for k in ('torch', 'transformers', 'pandas') if k in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0 and "--logits" in proc.stdout, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
