"""Rehearse the Kaggle run locally: `python -m mcq.rehearse --models runs/demo/models --test data/sample/test.csv`.

Builds a Kaggle-like tree (input/ with the competition's test.csv and the two datasets unpacked as
Kaggle unpacks `--dir-mode zip` uploads, an empty working/), runs kernels/llmse-infer/kernel.py as
Kaggle does (its own `python kernel.py` process, cwd working/, KAGGLE_KERNEL_RUN_TYPE=Batch, no
PYTHONPATH to this repository, no Kaggle credentials in its environment) with the network cut off,
then checks submission.csv against the test ids and projects the runtime to the hidden test's size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mcq.cli import main_guard
from mcq.errors import KaggleSetupError, RehearsalError
from mcq.kaggle.stage import (
    COMPETITION,
    DATASET_METADATA,
    SOURCE_DIR,
    dataset_metadata,
    kaggle_lacks,
    stage_code,
    stage_index,
    stage_models,
    wheel_names,
)

DEFAULT_KERNEL = SOURCE_DIR / "kernels" / "llmse-infer" / "kernel.py"
HIDDEN_TEST_QUESTIONS = 4000
PROBE_ADDRESS = ("1.1.1.1", 53)
NETWORK_ERRORS = (
    "Network is unreachable",
    "network access blocked",
    "Temporary failure in name resolution",
    "Name or service not known",
    "NetworkBlocked",
)

SANDBOX_DIR = Path(__file__).resolve().parent / "sandbox"  # sitecustomize.py (the network cut) and probe.py


@dataclass
class Sandbox:
    """How the kernel's network is cut: its own network namespace (unshare --net) or a sitecustomize hook."""

    name: str
    prefix: list[str]
    pythonpath: Path | None = None

    def describe(self) -> str:
        if self.name == "unshare":
            return "unshare --net (own network namespace, no interface up)"
        return "sitecustomize.py on the kernel's PYTHONPATH (socket connect/look-up to non-loopback raises)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mcq.rehearse", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", type=Path, required=True, help="exported model folders, or folders holding several"
    )
    parser.add_argument(
        "--test", type=Path, required=True, help="a test.csv in the competition layout (id,prompt,A..E)"
    )
    parser.add_argument(
        "--index", type=Path, help="a retrieval index (mcq-retrieve build) to attach as the index dataset"
    )
    parser.add_argument(
        "--extra-wheels",
        nargs="+",
        type=Path,
        default=[],
        help="wheels for the code dataset, as push-code --extra-wheels (e.g. bm25s, which Kaggle's image lacks)",
    )
    parser.add_argument("--kernel", type=Path, default=DEFAULT_KERNEL, help="the kernel script to run")
    parser.add_argument(
        "--root", type=Path, help="build the Kaggle tree here and keep it (default: a temporary folder, removed)"
    )
    parser.add_argument(
        "--layout",
        choices=["ui", "api"],
        default="ui",
        help="mount points: ui = input/<slug>/, api = input/competitions/<slug>/ and input/datasets/<owner>/<slug>/",
    )
    parser.add_argument(
        "--sandbox",
        choices=["auto", "unshare", "sitecustomize"],
        default="auto",
        help="how the kernel's network is cut (auto: unshare --net when it works)",
    )
    parser.add_argument("--timeout", type=float, default=3 * 3600.0, help="seconds before the kernel is stopped")
    parser.add_argument(
        "--target-questions", type=int, default=HIDDEN_TEST_QUESTIONS, help="size to project the runtime to"
    )
    parser.add_argument(
        "--allow-mixed", action="store_true", help="allow models with different tokenizers or max_length"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="mcq-rehearse-"))
    try:
        rehearse(args, root)
        return 0
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)


def rehearse(args: argparse.Namespace, root: Path) -> dict:
    """Build the tree, run the kernel sandboxed, validate its submission; return the kernel's timings report."""
    from mcq.core.data import read_questions

    if args.test.suffix.lower() != ".csv":
        raise KaggleSetupError(f"--test {args.test}: Kaggle's test file is a CSV; pass one.")
    questions = read_questions(args.test, lenient=True)  # as the kernel reads it
    if not args.kernel.is_file():
        raise KaggleSetupError(f"--kernel {args.kernel}: not found.")
    build_tree(
        root, args.models, args.test, args.kernel, args.layout, args.allow_mixed, index=args.index,
        extra_wheels=args.extra_wheels,
    )  # fmt: skip
    if args.index is not None:
        warn_missing_wheels(args.index, args.extra_wheels)
    sandbox = choose_sandbox(args.sandbox, root / "sandbox")
    print(f"network for the kernel: {check_network_blocked(sandbox, root)}", flush=True)

    start = time.perf_counter()
    code, output = run_kernel(root, sandbox, args.timeout)
    wall = time.perf_counter() - start
    if code != 0:
        raise RehearsalError(explain_failure(code, output))
    report = check_outputs(root, questions)
    t = report["timings"]
    projection = project_runtime(t, report["n_questions"], args.target_questions)
    print(f"kernel ran in {wall:.1f}s (exit 0) on {report['n_questions']} questions, {report['n_models']} model(s)")
    print(
        "stages: "
        + ", ".join(
            f"{k[:-2]} {t.get(k, 0.0):.1f}s"
            for k in ("find_s", "load_s", "retrieve_s", "tokenise_s", "predict_s", "write_s")
        )
        + f" (forward passes {t['forward_s']:.1f}s of predict; the rest is paid once per model)"
    )
    print(
        f"submission valid: {root / 'working' / 'submission.csv'} ({len(questions)} ids in test order, "
        "three distinct letters each)"
    )
    print(
        f"projected for {args.target_questions} questions on this machine: {projection['projected_s']:.0f}s "
        f"= fixed {projection['fixed_s']:.1f}s + {args.target_questions} x "
        f"{projection['per_question_s'] * 1000:.1f}ms "
        "(Kaggle's T4s differ from this machine: scale by their speed ratio)"
    )
    if report.get("peak_rss_bytes"):
        memory = project_memory(report["peak_rss_bytes"], report["n_questions"], args.target_questions)
        print(
            f"peak memory of the kernel: {report['peak_rss_bytes'] / 2**30:.2f} GiB; projected for "
            f"{args.target_questions} questions: {memory / 2**30:.2f} GiB (Kaggle: ~13 GiB RAM)"
        )
    working = sum(p.stat().st_size for p in (root / "working").rglob("*") if p.is_file())
    print(f"budget for {args.target_questions} questions, per stage, on this machine (a T4 differs; scale by its "
          "speed), against Kaggle's limits:")  # fmt: skip
    for line in budget_lines(budget(report, working, args.target_questions)):
        print(line)
    return report


def build_tree(
    root: Path,
    models: list[Path],
    test: Path,
    kernel: Path,
    layout: str,
    allow_mixed: bool = False,
    owner: str = "rehearsal",
    index: Path | None = None,
    extra_wheels: list[Path] | None = None,
) -> None:
    """input/ (competition data and the datasets as Kaggle mounts them), empty working/, the kernel in src/."""
    if (root / "input").exists() or (root / "working").exists():
        raise KaggleSetupError(f"--root {root}: already holds input/ or working/; pick an empty folder.")
    staged = root / "staged"
    models_meta = dataset_metadata(owner, "llmse-mcq-models", "LLMSE mcq models")
    code_meta = dataset_metadata(owner, "llmse-mcq-code", "LLMSE mcq inference code", what="code")
    datasets = [
        stage_models(models, staged / "models", models_meta, allow_mixed=allow_mixed),
        stage_code(staged / "code", code_meta, extra_wheels or []),
    ]
    if index is not None:
        index_meta = dataset_metadata(owner, "llmse-mcq-index", "LLMSE mcq retrieval index", what="index")
        datasets.append(stage_index(index, staged / "index", index_meta))
    inp = root / "input"
    comp = inp / ("competitions" if layout == "api" else "") / COMPETITION
    comp.mkdir(parents=True)
    shutil.copyfile(test, comp / "test.csv")
    for ds in datasets:
        owner_slug, slug = ds.ref.split("/")
        dest = inp / "datasets" / owner_slug / slug if layout == "api" else inp / slug
        unpack_like_kaggle(ds.path, dest, root / "zips")
    (root / "working").mkdir()
    (root / "src").mkdir()
    shutil.copyfile(kernel, root / "src" / "kernel.py")
    folders = [str(p.relative_to(root)) for p in sorted(inp.rglob("*")) if p.is_dir()]
    print(f"Kaggle tree ({layout} layout) at {root}: {', '.join(folders)}")


def unpack_like_kaggle(staged: Path, dest: Path, scratch: Path) -> None:
    """What the kaggle CLI uploads from a staged folder and how the dataset then appears: top-level files as they
    are, each sub-folder zipped (as `--dir-mode zip` does) and unpacked by Kaggle into a folder of that name."""
    dest.mkdir(parents=True)
    scratch.mkdir(parents=True, exist_ok=True)
    for entry in sorted(staged.iterdir()):
        if entry.name == DATASET_METADATA:  # read by the CLI, not uploaded
            continue
        if entry.is_file():
            shutil.copy2(entry, dest / entry.name)
        elif entry.is_dir():
            archive = shutil.make_archive(str(scratch / entry.name), "zip", entry)
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(dest / entry.name)
            os.unlink(archive)


def choose_sandbox(kind: str, workdir: Path) -> Sandbox:
    """unshare --net when it works (root, or user namespaces allowed), else a sitecustomize hook."""
    if kind in ("auto", "unshare") and shutil.which("unshare"):
        ok = subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0
        if ok:
            return Sandbox("unshare", ["unshare", "--net"])
    if kind == "unshare":
        raise KaggleSetupError(
            "--sandbox unshare: `unshare --net` does not work here (needs root or user namespaces)."
        )
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SANDBOX_DIR / "sitecustomize.py", workdir / "sitecustomize.py")
    return Sandbox("sitecustomize", [], workdir)


def kernel_env(root: Path, sandbox: Sandbox) -> dict[str, str]:
    """The kernel's whole environment: Kaggle's run variables, offline switches, no credentials, no repo path."""
    (root / "home").mkdir(exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root / "home"),
        "TMPDIR": str(root / "tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "MCQ_KAGGLE_ROOT": str(root),
        "KAGGLE_KERNEL_RUN_TYPE": "Batch",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for name in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if name in os.environ:
            env[name] = os.environ[name]
    if sandbox.pythonpath is not None:
        env["PYTHONPATH"] = str(sandbox.pythonpath)
    return env


def check_network_blocked(sandbox: Sandbox, root: Path) -> str:
    """Run a probe the way the kernel runs and make sure it cannot connect out; say how it was blocked."""
    script = (SANDBOX_DIR / "probe.py").read_text(encoding="utf-8")
    proc = subprocess.run(
        [*sandbox.prefix, sys.executable, "-c", script, *map(str, PROBE_ADDRESS)],
        capture_output=True,
        text=True,
        cwd=root,
        env=kernel_env(root, sandbox),
        timeout=60,
    )
    try:
        probe = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as err:
        raise RehearsalError(
            f"the network probe did not run ({proc.returncode}): {proc.stderr.strip()[-500:]}"
        ) from err
    if probe["error"] is None:
        raise RehearsalError(
            f"the network is NOT blocked for the kernel ({sandbox.describe()}): the probe reached {PROBE_ADDRESS}."
        )
    ours = os.readlink("/proc/self/ns/net") if os.path.exists("/proc/self/ns/net") else None
    own_ns = probe["netns"] is not None and probe["netns"] != ours
    if sandbox.name == "unshare" and not own_ns:
        raise RehearsalError("unshare --net ran but the probe shares this process's network namespace.")
    return (
        f"blocked by {sandbox.describe()}; probe connect to {PROBE_ADDRESS[0]}:{PROBE_ADDRESS[1]} -> {probe['error']}"
    )


def run_kernel(root: Path, sandbox: Sandbox, timeout: float) -> tuple[int, str]:
    """`python kernel.py` in working/, output streamed with a '| ' prefix; (exit code, output)."""
    cmd = [*sandbox.prefix, sys.executable, str(root / "src" / "kernel.py")]
    print(f"$ {' '.join(cmd)}   (cwd {root / 'working'})", flush=True)
    proc = subprocess.Popen(
        cmd,
        cwd=root / "working",
        env=kernel_env(root, sandbox),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            print(f"  | {line.rstrip()}", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
        lines.append(f"(stopped after {timeout:g}s: raise --timeout)\n")
    reader.join(timeout=10)
    return code, "".join(lines)


def explain_failure(code: int, output: str) -> str:
    tail = "\n".join(output.strip().splitlines()[-8:])
    hits = [line.strip() for line in output.splitlines() if any(m in line for m in NETWORK_ERRORS)]
    network = hits[-1] if hits else None  # the exception's own line comes last in a traceback
    if network:
        return (
            f"the kernel tried to use the network (exit {code}), which a Kaggle kernel with internet off "
            f"cannot: {network}\n{tail}"
        )
    return f"the kernel exited {code}:\n{tail}"


def check_outputs(root: Path, questions) -> dict:
    """submission.csv matches the test ids in order with three distinct letters; the staged code was used."""
    import pandas as pd

    from mcq.errors import SubmissionError
    from mcq.infer.submission import validate_submission

    working = root / "working"
    path = working / "submission.csv"
    if not path.is_file():
        raise RehearsalError(f"the kernel exited 0 but wrote no {path}.")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    try:
        validate_submission(frame, questions.ids, questions.letters)
    except SubmissionError as err:
        raise RehearsalError(f"{path}: {err}") from err
    report = json.loads((working / "mcq_timings.json").read_text(encoding="utf-8"))
    if not Path(report["code"]).resolve().is_relative_to((root / "input").resolve()):
        raise RehearsalError(f"the kernel imported mcq from {report['code']}, not from the code dataset under input/.")
    return report


KAGGLE_LIMITS = {"ram_bytes": 13 * 2**30, "disk_bytes": 20 * 2**30, "seconds": 9 * 3600}  # T4 kernels


def budget(report: dict, working_bytes: int, target: int = HIDDEN_TEST_QUESTIONS) -> list[dict]:
    """The kernel's budget for `target` questions, per stage, each against Kaggle's limits: retrieval, evidence
    scores and each model scale with the questions (their measured per-question cost on this index and these
    models), loading is paid once; peak RAM and working disk as measured plus what more questions hold."""
    t, n = report["timings"], report["n_questions"]
    models = max(1, report.get("n_models", 1))
    forward = min(t["forward_s"], t["predict_s"])
    per_model_fixed = (t["predict_s"] - forward) / models
    stages = {
        "retrieval": t.get("retrieve_s", 0.0) / n * target,
        "evidence scores": t.get("evidence_s", 0.0) / n * target,
        "tokenising": t.get("tokenise_s", 0.0) / n * target,
        "each model": forward / models / n * target + per_model_fixed,
    }
    total = t["find_s"] + t["load_s"] + sum(v for k, v in stages.items() if k != "each model")
    total += stages["each model"] * models + t.get("write_s", 0.0) / n * target
    seconds = KAGGLE_LIMITS["seconds"]
    rows = [{"stage": k, "projected_s": v, "fits": v <= seconds, "limit": "9 h"} for k, v in stages.items()]
    rows.append({"stage": "total", "projected_s": total, "fits": total <= seconds, "limit": "the kernel's 9 h"})
    ram = project_memory(report.get("peak_rss_bytes") or 0, n, target)
    rows.append({"stage": "peak RAM", "bytes": ram, "fits": ram <= KAGGLE_LIMITS["ram_bytes"], "limit": "~13 GiB"})
    disk = int(working_bytes * max(1.0, target / n))
    rows.append(
        {"stage": "working disk", "bytes": disk, "fits": disk <= KAGGLE_LIMITS["disk_bytes"], "limit": "20 GB"}
    )
    return rows


def budget_lines(rows: list[dict]) -> list[str]:
    """One line a stage; a stage over its limit starts with DOES NOT FIT."""
    out = []
    for r in rows:
        amount = f"{r['projected_s'] / 60:.1f} min" if "projected_s" in r else f"{r['bytes'] / 2**30:.2f} GiB"
        verdict = "fits" if r["fits"] else "DOES NOT FIT"
        line = f"{r['stage']}: {amount} (limit {r['limit']})"
        out.append(f"{verdict}: {line}" if not r["fits"] else f"  {line}")
    return out


def project_runtime(timings: dict, n_questions: int, target: int = HIDDEN_TEST_QUESTIONS) -> dict:
    """Per-question costs (retrieval, tokenising, forward passes, writing) scaled linearly to `target` questions,
    plus the fixed costs (finding files, imports, reading weights, tokenizers and the index)."""
    forward = min(timings["forward_s"], timings["predict_s"])
    fixed = timings["find_s"] + timings["load_s"] + timings["predict_s"] - forward
    retrieve = timings.get("retrieve_s", 0.0)
    per_question = (retrieve + timings["tokenise_s"] + forward + timings["write_s"]) / n_questions
    return {"fixed_s": fixed, "per_question_s": per_question, "projected_s": fixed + per_question * target}


# Memory that grows with the number of questions: their token ids, masks and contexts (a generous bound)
BYTES_PER_QUESTION = 5 * 512 * 8 * 3 + 8 * 1024


def project_memory(peak: int, n_questions: int, target: int = HIDDEN_TEST_QUESTIONS) -> int:
    """The measured peak plus what `target - n` more questions hold (the index and models do not grow)."""
    return int(peak + max(0, target - n_questions) * BYTES_PER_QUESTION)


def warn_missing_wheels(index: Path, wheels: list[Path]) -> None:
    """The rehearsal's Python has the retriever's library; Kaggle's image may not: say which wheel to ship."""
    manifest = json.loads((index / "mcq_index.json").read_text(encoding="utf-8"))
    shipped = wheel_names(wheels)
    for name in kaggle_lacks(manifest["settings"]["retriever"]):
        if name not in shipped:
            print(
                f"warning: the index needs {name}; this rehearsal's Python has it, Kaggle's image may not. "
                f"Ship its wheel: --extra-wheels here and on push-code (pip download {name} --no-deps -d wheels/)",
                flush=True,
            )


def run() -> None:
    """Console-script entry point (mcq-rehearse, python -m mcq.rehearse)."""
    sys.exit(main_guard(main))
