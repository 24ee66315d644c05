"""The rules of the house, checked on the code itself: which room imports which, one error base, the
one guard, `--help` without heavy imports, the console scripts, and `make clean` keeping trained runs."""

import ast
import importlib.metadata
import inspect
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

import mcq.errors
from mcq.cli import main_guard
from mcq.errors import DataError, KaggleCommandError, McqError, RehearsalError

PACKAGE = ROOT / "mcq"
COMMANDS = [
    "mcq.train.cli",
    "mcq.infer.cli",
    "mcq.kaggle.cli",
    "mcq.kaggle.rehearse",
    "mcq.generate.cli",
    "mcq.retrieve.cli",
    "mcq.ablate.cli",
    "mcq.infer.blend",
]
# exceptions raised and caught inside one module, never shown to a user
INTERNAL_ERRORS = {"ReplyError", "RequestFailed", "_Retryable", "NetworkBlocked"}


def mcq_imports(path):
    """The mcq modules a file imports (absolute names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return {n for n in names if n == "mcq" or n.startswith("mcq.")}


SHARED = {"mcq", "mcq.errors", "mcq.io", "mcq.table", "mcq.cli", "mcq.config", "mcq.secrets", "mcq.packages"}


def test_core_imports_nothing_but_core_retrieval_and_the_shared_helpers():
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        wrong = {n for n in mcq_imports(path) if n not in SHARED and not n.startswith(("mcq.core", "mcq.retrieve"))}
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}: mcq.core must not depend on other rooms"


def test_inference_stands_on_core_and_retrieval_and_nothing_below_imports_it():
    for path in sorted((PACKAGE / "infer").rglob("*.py")):
        allowed = ("mcq.infer", "mcq.core", "mcq.retrieve")
        wrong = {n for n in mcq_imports(path) if n not in SHARED and not n.startswith(allowed)}
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}: mcq.infer uses core and retrieve only"
    for room in ("core", "retrieve", "train"):
        for path in sorted((PACKAGE / room).rglob("*.py")):
            assert not {n for n in mcq_imports(path) if n.startswith("mcq.infer")}, path


def test_retrieval_imports_only_itself_and_the_shared_helpers():
    # the kernel (mcq.core) retrieves, so retrieval sits below core and must not import it
    for path in sorted((PACKAGE / "retrieve").rglob("*.py")):
        wrong = {n for n in mcq_imports(path) if n not in SHARED and not n.startswith("mcq.retrieve")}
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}: mcq.retrieve imports no other room"


def test_ablations_sit_on_top_of_training_and_nothing_imports_them():
    for path in sorted((PACKAGE / "ablate").rglob("*.py")):
        wrong = {
            n
            for n in mcq_imports(path)
            if n not in SHARED and not n.startswith(("mcq.ablate", "mcq.train", "mcq.core"))
        }
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}: mcq.ablate uses train and core only"
    for path in sorted(PACKAGE.rglob("*.py")):
        if "ablate" not in path.relative_to(PACKAGE).parts:
            assert not {n for n in mcq_imports(path) if n.startswith("mcq.ablate")}, path


def test_no_relative_imports_and_no_module_left_at_the_top_of_the_package():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level], path
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == [
        "__init__.py",
        "cli.py",
        "config.py",
        "errors.py",
        "io.py",
        "packages.py",
        "rehearse.py",
        "secrets.py",
        "table.py",
    ], top


def test_every_error_class_a_user_can_see_derives_from_mcq_error():
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and (b.id.endswith("Error") or b.id == "Exception") for b in node.bases
            ):
                inside = path.name == "errors.py" or node.name in INTERNAL_ERRORS
                assert inside, f"{path.relative_to(ROOT)}: {node.name} is an error class outside mcq/errors.py"
    for _, cls in inspect.getmembers(mcq.errors, inspect.isclass):
        assert issubclass(cls, McqError), cls


def test_the_guard_prints_a_user_error_in_one_line_and_lets_a_bug_through(capsys):
    def user_error():
        raise DataError("q.csv: line 3, column 'prompt' is empty. Fill it in or drop the row.")

    assert main_guard(user_error) == 2
    assert capsys.readouterr().err == "error: q.csv: line 3, column 'prompt' is empty. Fill it in or drop the row.\n"
    assert main_guard(lambda: (_ for _ in ()).throw(KaggleCommandError("kaggle said no"))) == 1
    assert main_guard(lambda: (_ for _ in ()).throw(RehearsalError("no submission"))) == 1
    assert capsys.readouterr().err.splitlines() == ["error: kaggle said no", "rehearsal FAILED: no submission"]

    def bug():
        raise FileNotFoundError("/tmp/a-file-our-code-forgot-to-make")

    with pytest.raises(FileNotFoundError):  # a bug keeps its traceback
        main_guard(bug)


@pytest.mark.parametrize("module", COMMANDS)
def test_help_answers_without_importing_torch(module):
    code = (
        "import sys, importlib\n"
        f"m = importlib.import_module({module!r})\n"
        "parse = getattr(m, 'parse_args', None) or (lambda a: m.build_parser().parse_args(a))\n"
        "try:\n    parse(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(k for k in ('torch', 'transformers', 'datasets', 'sklearn', 'pandas') if k in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]", f"{module} --help imported {proc.stdout.splitlines()[-1]}"


def test_console_scripts_point_at_the_commands():
    scripts = {
        e.name: e for e in importlib.metadata.entry_points(group="console_scripts") if e.name.startswith("mcq-")
    }
    assert set(scripts) == {
        "mcq-train",
        "mcq-infer",
        "mcq-kaggle",
        "mcq-rehearse",
        "mcq-generate",
        "mcq-retrieve",
        "mcq-ablate",
    }
    for entry in scripts.values():
        assert callable(entry.load()), entry
    script = shutil.which("mcq-infer", path=str(ROOT / ".venv" / "bin"))
    if script:  # installed by `make` (pip install -e .)
        proc = subprocess.run([script, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "--batch-tokens" in proc.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_clean_keeps_trained_runs_and_clean_runs_asks_first(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    model = tmp_path / "runs" / "big" / "models" / "seed0" / "model.safetensors"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    (tmp_path / "scratch.egg-info").mkdir()
    make = ["make", "-s", "-C", str(tmp_path)]
    assert subprocess.run([*make, "clean"], capture_output=True).returncode == 0
    assert model.is_file() and not (tmp_path / "scratch.egg-info").exists()
    refused = subprocess.run([*make, "clean-runs"], input="n\n", capture_output=True, text=True)
    assert refused.returncode != 0 and model.is_file() and "kept runs/" in refused.stdout
    assert subprocess.run([*make, "clean-runs", "CONFIRM=yes"], capture_output=True).returncode == 0
    assert not (tmp_path / "runs").exists()
