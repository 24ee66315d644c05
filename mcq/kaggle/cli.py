"""Ship to Kaggle with the kaggle CLI: `python -m mcq.kaggle STEP`, steps in order:

  push-models  the exported seed models as one private dataset (inference files only)
  push-code    a wheel of the mcq package (plus any extra wheels) as a second dataset, installed offline
  push-index   a retrieval index (mcq-retrieve build) as a third dataset, for open-book models
  push-kernel  kernels/llmse-infer with its kernel-metadata.json (internet off, GPU, the datasets and
               the competition attached; --with-index adds the index), then wait for its run to finish
  wait         wait for the kernel's latest run (again)
  submit       submit the kernel's output to the competition and show the submission's status and score
  status       the datasets', the kernel's and the latest submission's status

Every step takes --dry-run: it writes the staged folders and metadata and prints the kaggle commands
without running them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mcq import __version__
from mcq.cli import main_guard
from mcq.errors import KaggleCommandError, KaggleSetupError, McqError
from mcq.kaggle.client import (
    OFFLINE,
    Credentials,
    KaggleCLI,
    check_result,
    display,
    find_credentials,
    newest_submission,
    parse_kernel_status,
    parse_submissions,
    pushed_version,
    require_credentials,
    slug_in_use,
    submission_ref,
    submission_state,
)
from mcq.kaggle.stage import (
    COMPETITION,
    KERNEL_METADATA,
    SOURCE_DIR,
    StagedDataset,
    check_no_secrets,
    check_owner,
    dataset_metadata,
    kaggle_lacks,
    kernel_metadata,
    stage_code,
    stage_index,
    stage_models,
    write_json,
)
from mcq.secrets import redact

DEFAULT_KERNEL_DIR = SOURCE_DIR / "kernels" / "llmse-infer"
STATE_FILE = "state.json"
DATASET_READY = "ready"
DATASET_BROKEN = {"failed", "deleted"}


@dataclass(frozen=True)
class Refs:
    """The Kaggle names of everything we push, validated before anything is staged."""

    owner: str
    models_slug: str
    code_slug: str
    kernel_slug: str
    index_slug: str = "llmse-mcq-index"

    @property
    def models(self) -> str:
        return f"{self.owner}/{self.models_slug}"

    @property
    def code(self) -> str:
        return f"{self.owner}/{self.code_slug}"

    @property
    def index(self) -> str:
        return f"{self.owner}/{self.index_slug}"

    @property
    def kernel(self) -> str:
        return f"{self.owner}/{self.kernel_slug}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("names and places (defaults work for a first push)")
    g.add_argument("--owner", help="Kaggle user name owning the datasets and kernel (default: from the credentials)")
    g.add_argument("--models-slug", default="llmse-mcq-models", help="models dataset slug (6-50 of a-z, 0-9, -)")
    g.add_argument("--models-title", default="LLMSE mcq models", help="models dataset title (6-50 characters)")
    g.add_argument("--code-slug", default="llmse-mcq-code", help="code dataset slug (6-50 of a-z, 0-9, -)")
    g.add_argument("--code-title", default="LLMSE mcq inference code", help="code dataset title (6-50 characters)")
    g.add_argument("--index-slug", default="llmse-mcq-index", help="index dataset slug (6-50 of a-z, 0-9, -)")
    g.add_argument("--index-title", default="LLMSE mcq retrieval index", help="index dataset title (6-50 characters)")
    g.add_argument("--license", default="CC0-1.0", help="the datasets' one licence (Kaggle licence name)")
    g.add_argument("--kernel-dir", type=Path, default=DEFAULT_KERNEL_DIR, help="kernel folder holding kernel.py")
    g.add_argument("--kernel-slug", help="kernel slug (default: the kernel folder's name)")
    g.add_argument("--kernel-title", help="kernel title, at least 5 characters (default: the slug with spaces)")
    g.add_argument("--stage-dir", type=Path, default=Path("runs/kaggle"), help="where staged datasets and state go")
    g.add_argument("--dry-run", action="store_true", help="stage and print the kaggle commands, run none of them")
    poll = argparse.ArgumentParser(add_help=False)
    poll.add_argument("--poll-interval", type=float, default=60.0, help="seconds between status checks")
    poll.add_argument("--max-wait", type=float, default=12 * 3600.0, help="give up waiting after this many seconds")

    parser = argparse.ArgumentParser(
        prog="python -m mcq.kaggle", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    p = steps.add_parser("push-models", parents=[common], help="upload the exported models as a dataset")
    p.add_argument(
        "--models", nargs="+", type=Path, required=True, help="exported model folders, or folders holding several"
    )
    p.add_argument("-m", "--message", help="version notes when the dataset already exists")
    p.add_argument("--allow-mixed", action="store_true", help="allow models with different tokenizers or max_length")
    p = steps.add_parser("push-code", parents=[common], help="upload the mcq wheel (and extra wheels) as a dataset")
    p.add_argument("-m", "--message", help="version notes when the dataset already exists")
    p.add_argument(
        "--extra-wheels",
        nargs="+",
        type=Path,
        default=[],
        help="wheels of dependencies Kaggle's image lacks; the kernel installs them with --no-index",
    )
    p = steps.add_parser("push-index", parents=[common], help="upload a retrieval index as a dataset")
    p.add_argument("--index", type=Path, required=True, help="index folder made by mcq-retrieve build")
    p.add_argument("-m", "--message", help="version notes when the dataset already exists")
    p = steps.add_parser("push-kernel", parents=[common, poll], help="push the kernel and wait for its run")
    p.add_argument("--with-index", action="store_true", help="attach the index dataset (push-index) too")
    p.add_argument("--machine-shape", default="NvidiaTeslaT4", help="Kaggle accelerator, e.g. NvidiaTeslaT4")
    p.add_argument("--no-wait", action="store_true", help="push and return; check later with the wait or status step")
    steps.add_parser(
        "wait",
        parents=[common, poll],
        help="wait for the run of the version push-kernel pushed (else the latest) to finish",
    )
    p = steps.add_parser("submit", parents=[common, poll], help="submit the kernel's output and show the result")
    p.add_argument("-v", "--version", type=int, help="kernel version to submit (default: the one push-kernel pushed)")
    p.add_argument("-m", "--message", help="submission description")
    p.add_argument("-f", "--file", default="submission.csv", help="the kernel's output file to submit")
    p.add_argument("--wait", action="store_true", help="wait until the submission is scored")
    steps.add_parser("status", parents=[common], help="status of the datasets, the kernel and the last submission")
    return parser.parse_args(argv)


def resolve_refs(args: argparse.Namespace, creds: Credentials | None) -> Refs:
    """Owner, slugs and titles checked as Kaggle checks them; the kernel title defaults to the slug."""
    if args.owner:
        owner = check_owner(args.owner)
    else:
        owner = check_owner(creds.username if creds else None, f"the user name in {creds.source if creds else '-'}")
    kernel_slug = args.kernel_slug or args.kernel_dir.resolve().name
    args.kernel_title = args.kernel_title or kernel_slug.replace("-", " ")
    try:
        kernel_metadata(owner, kernel_slug, args.kernel_title, [])  # validates slug and title
    except KaggleSetupError as err:
        if args.kernel_slug:
            raise
        raise KaggleSetupError(
            f"{err} (The slug was taken from the name of --kernel-dir {args.kernel_dir}; "
            "pass --kernel-slug to choose it.)"
        ) from err
    for what in ("models", "code", "index"):
        dataset_metadata(owner, getattr(args, f"{what}_slug"), getattr(args, f"{what}_title"), args.license, what)
    return Refs(owner, args.models_slug, args.code_slug, kernel_slug, args.index_slug)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    creds = find_credentials()
    secrets = creds.secrets if creds else ()
    try:
        if not args.dry_run:
            creds = require_credentials()
        refs = resolve_refs(args, creds)
        cli = KaggleCLI(secrets, dry_run=args.dry_run)
        STEPS[args.step](args, refs, cli, creds)
        return 0
    except McqError as err:
        err.args = (redact(str(err), secrets),)  # a message never shows a credential
        raise


def push_models(args, refs: Refs, cli: KaggleCLI, creds: Credentials | None) -> None:
    meta = dataset_metadata(refs.owner, refs.models_slug, args.models_title, args.license, "models")
    staged = stage_models(
        args.models, args.stage_dir / "models", meta, creds.secrets if creds else (), args.allow_mixed
    )
    cli.say(f"staged {staged.path}: {', '.join(staged.entries)} (inference files only)")
    if staged.skipped:
        cli.say(f"left out: {', '.join(staged.skipped)}")
    upload(cli, staged, args.message or f"mcq {__version__}: {', '.join(staged.entries)}")


def push_code(args, refs: Refs, cli: KaggleCLI, creds: Credentials | None) -> None:
    meta = dataset_metadata(refs.owner, refs.code_slug, args.code_title, args.license, "code")
    staged = stage_code(args.stage_dir / "code", meta, args.extra_wheels, secrets=creds.secrets if creds else ())
    cli.say(f"staged {staged.path}: {', '.join(staged.entries)}")
    upload(cli, staged, args.message or f"mcq {__version__}")


def push_index(args, refs: Refs, cli: KaggleCLI, creds: Credentials | None) -> None:
    meta = dataset_metadata(refs.owner, refs.index_slug, args.index_title, args.license, "index")
    staged = stage_index(args.index, args.stage_dir / "index", meta, creds.secrets if creds else ())
    manifest = json.loads((args.index / "mcq_index.json").read_text(encoding="utf-8"))
    cli.say(
        f"staged {staged.path}: {', '.join(staged.entries)} ({manifest['passages']} passages, "
        f"{manifest['settings']['retriever']}, {manifest['disk_bytes'] / 2**20:.1f} MiB)"
    )
    if staged.skipped:
        cli.say(f"not staged (not part of the index): {', '.join(staged.skipped)}")
    needs = kaggle_lacks(manifest["settings"]["retriever"])
    if needs:
        wheels = " ".join(f"wheels/{name.replace('-', '_')}-*.whl" for name in needs)
        cli.say(
            f"the kernel needs {', '.join(needs)}, which Kaggle's image lacks: push-code --extra-wheels {wheels} "
            f"(pip download {' '.join(needs)} --no-deps -d wheels/)"
        )
    upload(cli, staged, args.message or f"mcq {__version__}: index of {manifest['passages']} passages")


def upload(cli: KaggleCLI, staged: StagedDataset, message: str) -> None:
    """Create the dataset, or add a version when Kaggle says the slug is ours already."""
    create = ["datasets", "create", "-p", str(staged.path), "--dir-mode", "zip"]
    version = ["datasets", "version", "-p", str(staged.path), "-m", message, "--dir-mode", "zip"]
    result = cli.run(create)
    if result is None:
        cli.say(f"(if {staged.ref} exists already:) $ {display(version)}")
        return
    if slug_in_use(result):
        cli.say(f"{staged.ref} exists: uploading a new version")
        result = cli.run(version)
        assert result is not None  # not a dry run: the create above returned a result
    check_result(result)
    cli.say(f"uploaded {staged.ref}; Kaggle unpacks it in a few minutes (python -m mcq.kaggle status)")


def push_kernel(args, refs: Refs, cli: KaggleCLI, creds: Credentials | None) -> None:
    kernel_dir: Path = args.kernel_dir
    if not (kernel_dir / "kernel.py").is_file():
        raise KaggleSetupError(f"{kernel_dir}/kernel.py: not found. Pass --kernel-dir (the folder holding kernel.py).")
    check_no_secrets(kernel_dir, creds.secrets if creds else ())  # kernel.py is uploaded as it is
    sources = [refs.models, refs.code] + ([refs.index] if args.with_index else [])
    meta = kernel_metadata(refs.owner, refs.kernel_slug, args.kernel_title, sources, args.machine_shape)
    write_json(kernel_dir / KERNEL_METADATA, meta)
    cli.say(
        f"wrote {kernel_dir / KERNEL_METADATA}: {meta['id']}, internet off, GPU {meta['machine_shape']}, "
        f"datasets {', '.join(meta['dataset_sources'])}, competition {COMPETITION}"
    )
    for ref in meta["dataset_sources"]:
        wait_dataset(cli, ref, args.poll_interval, args.max_wait)
    result = cli.run(["kernels", "push", "-p", str(kernel_dir)])
    if result is None:
        if not args.no_wait:
            cli.say(f"$ kaggle kernels status {refs.kernel}   (every {args.poll_interval:g}s until it finishes)")
        return
    check_result(result)
    version = pushed_version(result.output)
    write_json(
        args.stage_dir / STATE_FILE,
        {
            "kernel": refs.kernel,
            "version": version,
            "pushed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    cli.say(f"pushed {refs.kernel} version {version}")
    if not args.no_wait:
        wait_kernel(cli, versioned(refs.kernel, version), args.poll_interval, args.max_wait)


# Failures of a status poll worth retrying: Kaggle's 5xx answers and network trouble
# (not a 4xx: a wrong slug stays wrong)
TRANSIENT = re.compile(
    rf"\b5\d\d Server Error|ConnectionError|Connection aborted|timed out|Timeout|{OFFLINE.pattern}", re.I
)
STATUS_RETRIES = 3


def wait(args, refs: Refs, cli: KaggleCLI, creds: Credentials | None) -> None:
    try:
        version = last_pushed_version(args.stage_dir, refs.kernel)
    except KaggleSetupError:
        version = None  # pushed elsewhere: follow the latest version
    wait_kernel(cli, versioned(refs.kernel, version), args.poll_interval, args.max_wait)


def versioned(kernel: str, version: int | None) -> str:
    """OWNER/SLUG/N: `kaggle kernels status` then reports that version's run, not whichever is latest
    (right after a push, the latest can still be the previous version's finished run)."""
    return kernel if version is None else f"{kernel}/{version}"


def wait_dataset(
    cli: KaggleCLI, ref: str, interval: float, max_wait: float, sleep: Callable[[float], None] = time.sleep
) -> None:
    """A kernel pushed before its datasets are ready runs without them: wait for 'ready'."""
    start = time.monotonic()
    while True:
        result = cli.run(["datasets", "status", ref], quiet=True)
        if result is None:
            return
        if result.returncode != 0:
            raise KaggleCommandError(f"dataset {ref}: {dataset_status_failure(result)}")
        state = dataset_state(result.output)
        if state == DATASET_READY:
            return
        if state in DATASET_BROKEN:
            raise KaggleCommandError(f"dataset {ref} is '{state}' on Kaggle; push it again.")
        if time.monotonic() - start > max_wait:
            raise KaggleCommandError(f"dataset {ref} still '{state}' after {max_wait:g}s; try again later.")
        cli.say(f"dataset {ref}: {state}, waiting")
        sleep(interval)


def dataset_status_failure(result) -> str:
    """Why `kaggle datasets status` failed, in words: not found (push it, or fix the slug), or what Kaggle said."""
    tail = " | ".join(result.output.strip().splitlines()[-3:]) or "(no output)"
    if "404" in result.output or "not found" in result.output.lower():
        return (
            f"not found (`{result.command}`: {tail}); push it first (python -m mcq.kaggle push-models / "
            "push-code) or fix the slug."
        )
    return f"could not read its status (`{result.command}` exited {result.returncode}: {tail})."


def dataset_state(output: str) -> str:
    """`kaggle datasets status` prints one word such as 'ready' (its last line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1].lower() if lines else ""


def wait_kernel(
    cli: KaggleCLI, ref: str, interval: float, max_wait: float, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Poll `kaggle kernels status` until the run completes; raise on ERROR/CANCEL or when max_wait passes."""
    if cli.dry_run:
        cli.run(["kernels", "status", ref])
        return
    start, last, failures = time.monotonic(), None, 0
    cli.say(f"$ kaggle kernels status {ref}   (every {interval:g}s, at most {max_wait:g}s)")
    while True:
        result = cli.run(["kernels", "status", ref], quiet=True)
        assert result is not None  # a dry run returned above
        if result.returncode != 0 and TRANSIENT.search(result.output) and failures < STATUS_RETRIES:
            failures += 1  # a long wait should not end on one server or network hiccup
            cli.say(
                f"`{result.command}` failed ({result.output.strip().splitlines()[-1]}); "
                f"retry {failures} of {STATUS_RETRIES}"
            )
            sleep(interval)
            continue
        failures = 0
        check_result(result)
        status = parse_kernel_status(result.output)
        elapsed = time.monotonic() - start
        if status.state != last:
            cli.say(f"kernel {ref}: {status.state} ({elapsed:.0f}s)")
            last = status.state
        if status.done:
            cli.say(f"kernel {ref} finished; submit it with: python -m mcq.kaggle submit")
            return
        if status.failed:
            raise KaggleCommandError(
                f"kernel {ref} ended with {status.state}: {status.message or '(no failure message)'}\n"
                f"Read its log with: kaggle kernels logs {ref}  (rehearse locally first: python -m mcq.rehearse)"
            )
        if elapsed > max_wait:
            raise KaggleCommandError(
                f"kernel {ref} still {status.state} after {max_wait:g}s; check later with: python -m mcq.kaggle wait"
            )
        sleep(interval)


def submit(args, refs: Refs, cli: KaggleCLI, creds: Credentials | None) -> None:
    if args.version is None and cli.dry_run and not (args.stage_dir / STATE_FILE).is_file():
        version: str | int = "N"  # a dry run has pushed nothing: N is the number `kaggle kernels push` prints
    else:
        version = args.version or last_pushed_version(args.stage_dir, refs.kernel)
    message = args.message or f"mcq {refs.kernel} v{version}"
    result = cli.run(
        ["competitions", "submit", COMPETITION, "-k", refs.kernel, "-v", str(version), "-f", args.file, "-m", message]
    )
    ref = submission_ref(check_result(result).output) if result is not None else None
    show_submission(cli, message, args.wait, args.poll_interval, args.max_wait, ref=ref, expected=True)


def last_pushed_version(stage_dir: Path, kernel: str) -> int:
    path = stage_dir / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    if state.get("kernel") != kernel or not isinstance(state.get("version"), int):
        raise KaggleSetupError(
            f"no pushed version of {kernel} recorded in {path}: "
            "pass --version N (the number `kaggle kernels push` printed)."
        )
    return state["version"]


def show_submission(
    cli: KaggleCLI,
    message: str | None,
    wait_scored: bool,
    interval: float,
    max_wait: float,
    sleep: Callable[[float], None] = time.sleep,
    ref: str | None = None,
    expected: bool = False,
) -> dict | None:
    """Print a submission's status and scores (the one `ref` names, else the newest with `message`, else the
    newest); with wait_scored, poll until it is scored."""
    start = time.monotonic()
    while True:
        result = cli.run(["competitions", "submissions", COMPETITION, "--csv"], quiet=not cli.dry_run)
        if result is None:
            return None
        row = newest_submission(parse_submissions(check_result(result).output), message, ref)
        # `expected`: we just submitted it, so a listing without it means 'not listed yet', never 'take an older one'
        if row is None and expected and wait_scored and time.monotonic() - start <= max_wait:
            cli.say(f"submission {ref or repr(message)} is not listed yet, waiting")
            sleep(interval)
            continue
        if row is None:
            cli.say(
                f"submission {ref or repr(message)} is not listed yet; check later: python -m mcq.kaggle status"
                if expected
                else "no submissions yet"
            )
            return None
        state = submission_state(row)
        cli.say(
            f"submission {row['ref']} ({row['date']}, '{row['description']}'): {state}, "
            f"public score {row['publicScore'] or '-'}, private score {row['privateScore'] or '-'}"
        )
        if state == "ERROR":
            raise KaggleCommandError(
                f"submission {row['ref']} failed on Kaggle (status ERROR); see the competition's submissions page."
            )
        if state != "PENDING" or not wait_scored:
            return row
        if time.monotonic() - start > max_wait:
            raise KaggleCommandError(
                f"submission {row['ref']} still PENDING after {max_wait:g}s; check later: python -m mcq.kaggle status"
            )
        sleep(interval)


def status(args, refs: Refs, cli: KaggleCLI, creds: Credentials | None) -> None:
    problems = []
    for what, ref in (("models", refs.models), ("code", refs.code)):
        result = cli.run(["datasets", "status", ref], quiet=True)
        if result is None:
            continue
        state = dataset_state(result.output) if result.returncode == 0 else dataset_status_failure(result)
        cli.say(f"{what} dataset {ref}: {state}")
        if state != DATASET_READY:
            problems.append(f"{what} dataset {ref}: {state}")
    result = cli.run(["kernels", "status", refs.kernel], quiet=True)
    if result is not None:
        kernel = parse_kernel_status(check_result(result).output)
        cli.say(f"kernel {refs.kernel}: {kernel.state}" + (f" ({kernel.message})" if kernel.message else ""))
        if kernel.failed:
            problems.append(
                f"kernel {refs.kernel} ended with {kernel.state}: {kernel.message or '(no failure message)'}"
            )
    show_submission(cli, None, False, 0, 0)
    if problems:
        raise KaggleCommandError("; ".join(problems))


STEPS = {
    "push-models": push_models,
    "push-index": push_index,
    "push-code": push_code,
    "push-kernel": push_kernel,
    "wait": wait,
    "submit": submit,
    "status": status,
}


def run() -> None:
    """Console-script entry point (mcq-kaggle, python -m mcq.kaggle)."""
    sys.exit(main_guard(main))
